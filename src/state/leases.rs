//! GPU leases: which seat of which GPU unit (a `GPU-…` or `MIG-…` UUID) is held by whom.
//! Persisted, so a restarted daemon (even after `kill -9`) knows what it handed out and never
//! hands a seat out twice; the gateway reconciles them against the kernels it takes back.
//!
//! A unit has one seat under the exclusive policy and `gpu.shared.max_per_unit` under the
//! shared one. A seat is named by its key: the unit's UUID for seat 0 (so exclusive leases
//! keep the keys they always had), `UUID#n` for the others.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{all, encode, Result, Store};

/// Who holds a unit: a kernel, or a notebook server started with a GPU profile (for its
/// whole life; its kernels use its units).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LeaseHolder {
    Kernel { id: String, user: String },
    Server { user: String, server: String },
}

impl LeaseHolder {
    pub fn user(&self) -> &str {
        match self {
            LeaseHolder::Kernel { user, .. } | LeaseHolder::Server { user, .. } => user,
        }
    }

    /// The kernel's id, for a kernel.
    pub fn kernel(&self) -> Option<&str> {
        match self {
            LeaseHolder::Kernel { id, .. } => Some(id),
            LeaseHolder::Server { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The unit's UUID, as its container is given it.
    pub unit: String,
    /// Which of the unit's seats (0, the only one under the exclusive policy).
    #[serde(default)]
    pub seat: u32,
    pub holder: LeaseHolder,
    pub since: DateTime<Utc>,
}

/// The key of seat `seat` of `unit`.
pub fn seat_key(unit: &str, seat: u32) -> String {
    if seat == 0 {
        unit.to_string()
    } else {
        format!("{unit}#{seat}")
    }
}

/// The unit and seat a seat key names (UUIDs hold no `#`).
pub fn parse_seat(key: &str) -> (&str, u32) {
    match key.rsplit_once('#') {
        Some((unit, n)) => match n.parse() {
            Ok(seat) => (unit, seat),
            Err(_) => (key, 0),
        },
        None => (key, 0),
    }
}

impl Store {
    pub fn leases(&self) -> Result<Vec<LeaseRecord>> {
        all(&self.leases, "lease")
    }

    /// Take every seat of `seats` (seat keys) for `holder`: all of them, or (if any is held
    /// already) none. Returns whether they were taken.
    pub fn take_leases(&self, seats: &[String], holder: &LeaseHolder) -> Result<bool> {
        let since = Utc::now();
        let mut taken: Vec<&String> = Vec::new();
        for key in seats {
            let (unit, seat) = parse_seat(key);
            let rec = LeaseRecord {
                unit: unit.to_string(),
                seat,
                holder: holder.clone(),
                since,
            };
            let swapped = self.leases.compare_and_swap(
                key.as_bytes(),
                None as Option<&[u8]>,
                Some(encode(&rec)),
            )?;
            if swapped.is_err() {
                for t in taken {
                    self.leases.remove(t.as_bytes())?;
                }
                return Ok(false);
            }
            taken.push(key);
        }
        // On disk before the kernel gets them: after a `kill -9` a running GPU container
        // always has its lease, so its units are never handed out twice.
        self.db.flush()?;
        Ok(true)
    }

    /// Release every seat `holder` holds; returns their units.
    pub fn release_leases(&self, holder: &LeaseHolder) -> Result<Vec<String>> {
        let mut released = Vec::new();
        for lease in self.leases()? {
            if &lease.holder == holder {
                self.leases
                    .remove(seat_key(&lease.unit, lease.seat).as_bytes())?;
                released.push(lease.unit);
            }
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seats_of_one_unit_are_leased_apart_and_released_by_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let holder = |id: &str| LeaseHolder::Kernel {
            id: id.into(),
            user: "alice".into(),
        };
        assert_eq!(parse_seat("GPU-1"), ("GPU-1", 0));
        assert_eq!(parse_seat("GPU-1#1"), ("GPU-1", 1));
        assert_eq!(seat_key("GPU-1", 1), "GPU-1#1");
        assert!(store.take_leases(&["GPU-1".into()], &holder("k1")).unwrap());
        assert!(store
            .take_leases(&["GPU-1#1".into()], &holder("k2"))
            .unwrap());
        assert!(!store
            .take_leases(&["GPU-1#1".into()], &holder("k3"))
            .unwrap());
        let mut seen: Vec<(String, u32)> = store
            .leases()
            .unwrap()
            .into_iter()
            .map(|l| (l.unit, l.seat))
            .collect();
        seen.sort();
        assert_eq!(seen, [("GPU-1".into(), 0), ("GPU-1".into(), 1)]);
        assert_eq!(store.release_leases(&holder("k2")).unwrap(), ["GPU-1"]);
        assert!(store
            .take_leases(&["GPU-1#1".into()], &holder("k3"))
            .unwrap());
        assert_eq!(store.leases().unwrap().len(), 2);
    }

    #[test]
    fn units_are_taken_all_or_none_and_released_by_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = LeaseHolder::Kernel {
            id: "k1".into(),
            user: "alice".into(),
        };
        let b = LeaseHolder::Kernel {
            id: "k2".into(),
            user: "bob".into(),
        };
        let units = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(store.take_leases(&units(&["GPU-1", "GPU-2"]), &a).unwrap());
        assert!(
            !store.take_leases(&units(&["GPU-3", "GPU-2"]), &b).unwrap(),
            "GPU-2 is held"
        );
        let held: Vec<String> = store
            .leases()
            .unwrap()
            .into_iter()
            .map(|l| l.unit)
            .collect();
        assert_eq!(
            held,
            ["GPU-1", "GPU-2"],
            "nothing of the refused request is kept"
        );
        assert_eq!(store.release_leases(&a).unwrap(), ["GPU-1", "GPU-2"]);
        assert!(store.take_leases(&units(&["GPU-3", "GPU-2"]), &b).unwrap());
    }
}
