//! GPU leases: which GPU unit (a `GPU-…` or `MIG-…` UUID) is held by whom. Persisted, so a
//! restarted daemon (even after `kill -9`) knows what it handed out and never hands a unit out
//! twice; the gateway reconciles them against the kernels it takes back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{all, encode, Result, Store};

/// Who holds a unit. A kernel today; the record has room for a notebook server (GPU profiles).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LeaseHolder {
    Kernel { id: String, user: String },
}

impl LeaseHolder {
    pub fn user(&self) -> &str {
        match self {
            LeaseHolder::Kernel { user, .. } => user,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The unit's UUID, as its container is given it.
    pub unit: String,
    pub holder: LeaseHolder,
    pub since: DateTime<Utc>,
}

impl Store {
    pub fn leases(&self) -> Result<Vec<LeaseRecord>> {
        all(&self.leases, "lease")
    }

    /// Take every unit of `units` for `holder`: all of them, or (if any is held already) none.
    /// Returns whether they were taken.
    pub fn take_leases(&self, units: &[String], holder: &LeaseHolder) -> Result<bool> {
        let since = Utc::now();
        let mut taken: Vec<&String> = Vec::new();
        for unit in units {
            let rec = LeaseRecord {
                unit: unit.clone(),
                holder: holder.clone(),
                since,
            };
            let swapped = self.leases.compare_and_swap(
                unit.as_bytes(),
                None as Option<&[u8]>,
                Some(encode(&rec)),
            )?;
            if swapped.is_err() {
                for t in taken {
                    self.leases.remove(t.as_bytes())?;
                }
                return Ok(false);
            }
            taken.push(unit);
        }
        // On disk before the kernel gets them: after a `kill -9` a running GPU container
        // always has its lease, so its units are never handed out twice.
        self.db.flush()?;
        Ok(true)
    }

    /// Release every unit `holder` holds; returns them.
    pub fn release_leases(&self, holder: &LeaseHolder) -> Result<Vec<String>> {
        let mut released = Vec::new();
        for lease in self.leases()? {
            if &lease.holder == holder {
                self.leases.remove(lease.unit.as_bytes())?;
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
