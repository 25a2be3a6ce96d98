//! The GPU scheduler's decisions, without I/O: who is served next from the queue, whose wait
//! has run out, and which idle kernels give their units back.
//!
//! The gateway feeds it what it sees (leases, NVML, kernel traffic) and carries out what it
//! decides; the benchmark (`bench/gpu.rs`) replays a trace through the same functions on a
//! virtual clock. Time is always passed in (`now`), never read here.
//!
//! Rules:
//! * **Order**: the higher priority first (`[[gpu.groups]]`, 0 outside them), then the user
//!   holding fewer units, then arrival, so one user's many requests cannot starve a class.
//! * **All or none**: a request for N units is granted N at once or waits.
//! * **No starvation of big requests**: once a request has waited `queue_timeout / 2`, no
//!   request of its priority or lower that arrived after it is served before it.
//! * **Reclaim**: a holder is idle when it is not executing and has had neither traffic nor
//!   GPU utilization since `idle_since`. While someone waits, holders idle for `idle_after`
//!   are reclaimed at once, longest idle first, as many as the waiting need; when nobody
//!   waits, a holder idle for `idle_timeout` is reclaimed, with a warning `warn_before` that.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The knobs of the scheduler (`[gpu]` in the config).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Idle this long, a holder is reclaimed when someone waits.
    pub idle_after: Duration,
    /// Idle this long, a holder is reclaimed even when nobody waits (zero: never).
    pub idle_timeout: Duration,
    /// A wait ends (with a message) after this long (zero: never).
    pub queue_timeout: Duration,
    /// How long before an `idle_timeout` reclaim the holder is warned.
    pub warn_before: Duration,
}

/// One waiting request: a kernel that needs `units` units to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub kernel: String,
    pub user: String,
    pub units: u32,
    /// Only units whose model contains this.
    #[serde(default)]
    pub gpu_model: Option<String>,
    /// Only MIG devices of this profile.
    #[serde(default)]
    pub mig_profile: Option<String>,
    /// When it joined the queue: its place in line, kept across restarts of the daemon.
    pub since: DateTime<Utc>,
    /// Its user's priority (the highest of their `[[gpu.groups]]`, else 0): read from the
    /// config each round, so a reload applies to those already waiting.
    #[serde(default)]
    pub priority: i32,
}

/// A unit that is free to hand out.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub uuid: String,
    pub model: String,
    pub mig_profile: Option<String>,
}

impl Request {
    /// Whether `slot` is a unit this request may get.
    pub fn fits(&self, slot: &Slot) -> bool {
        self.gpu_model
            .as_deref()
            .is_none_or(|m| slot.model.contains(m))
            && self
                .mig_profile
                .as_deref()
                .is_none_or(|p| slot.mig_profile.as_deref() == Some(p))
    }
}

/// The waiting requests in the order they are served; `held`: units each user holds now.
pub fn order<'a>(waiting: &'a [Request], held: &HashMap<String, u32>) -> Vec<&'a Request> {
    let mut v: Vec<&Request> = waiting.iter().collect();
    v.sort_by(|a, b| {
        let ha = held.get(&a.user).copied().unwrap_or(0);
        let hb = held.get(&b.user).copied().unwrap_or(0);
        (std::cmp::Reverse(a.priority), ha, a.since, &a.kernel).cmp(&(
            std::cmp::Reverse(b.priority),
            hb,
            b.since,
            &b.kernel,
        ))
    });
    v
}

/// The grants that can be made now, in order: (kernel, the units it gets). `held` and
/// `free` are what is held and free before them; each grant counts for the next.
pub fn grants(
    waiting: &[Request],
    held: &HashMap<String, u32>,
    free: &[Slot],
    now: DateTime<Utc>,
    policy: &Policy,
) -> Vec<(String, Vec<String>)> {
    if free.is_empty() || waiting.is_empty() {
        return Vec::new();
    }
    let mut held = held.clone();
    let mut free: Vec<Slot> = free.to_vec();
    let mut left: Vec<Request> = waiting.to_vec();
    let mut out = Vec::new();
    let starving_after = policy.queue_timeout / 2;
    'next: loop {
        // A request that has waited long enough reserves its place: nobody of its priority
        // or lower who came after it is served before it (the order puts higher priorities
        // before it anyway).
        let mut reserved_since: Option<DateTime<Utc>> = None;
        for r in order(&left, &held) {
            if reserved_since.is_some_and(|s| r.since > s) {
                continue;
            }
            let fitting: Vec<usize> = free
                .iter()
                .enumerate()
                .filter(|(_, s)| r.fits(s))
                .map(|(i, _)| i)
                .take(r.units as usize)
                .collect();
            if fitting.len() == r.units as usize {
                let units: Vec<String> = fitting.iter().map(|&i| free[i].uuid.clone()).collect();
                free = free
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| !fitting.contains(i))
                    .map(|(_, s)| s)
                    .collect();
                *held.entry(r.user.clone()).or_default() += r.units;
                let kernel = r.kernel.clone();
                left.retain(|x| x.kernel != kernel);
                out.push((kernel, units));
                continue 'next;
            }
            let waited = (now - r.since).to_std().unwrap_or_default();
            if !starving_after.is_zero() && waited >= starving_after {
                reserved_since = Some(reserved_since.map_or(r.since, |s| s.min(r.since)));
            }
        }
        return out;
    }
}

/// The 0-based place of `kernel` in the order of service (how many are ahead of it).
pub fn ahead_of(waiting: &[Request], held: &HashMap<String, u32>, kernel: &str) -> Option<usize> {
    order(waiting, held).iter().position(|r| r.kernel == kernel)
}

/// The requests whose wait has run out (`queue_timeout`).
pub fn expired(waiting: &[Request], now: DateTime<Utc>, policy: &Policy) -> Vec<String> {
    if policy.queue_timeout.is_zero() {
        return Vec::new();
    }
    waiting
        .iter()
        .filter(|r| (now - r.since).to_std().unwrap_or_default() >= policy.queue_timeout)
        .map(|r| r.kernel.clone())
        .collect()
}

/// A kernel holding units, as the reclaimer sees it.
#[derive(Debug, Clone)]
pub struct Holding {
    pub kernel: String,
    pub units: u32,
    /// Executing (`busy`): never idle.
    pub busy: bool,
    /// Since when it has had no traffic and no GPU utilization.
    pub idle_since: DateTime<Utc>,
    /// Already warned of the coming `idle_timeout` reclaim in this idle period.
    pub warned: bool,
}

/// What the reclaimer decides for one holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Take its units now: someone waits and it has been idle for `idle_after`.
    ReclaimForWaiting { kernel: String, idle: Duration },
    /// Take its units now: idle for `idle_timeout`.
    ReclaimIdle { kernel: String, idle: Duration },
    /// Tell its notebooks that it will be reclaimed in `in_` unless used.
    Warn { kernel: String, in_: Duration },
}

/// Which holders give their units back now. `needed`: units the waiting requests need beyond
/// the free ones (zero when nobody waits or all of them fit).
pub fn reclaims(
    holdings: &[Holding],
    needed: u32,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Vec<Decision> {
    let idle_for = |h: &Holding| (now - h.idle_since).to_std().unwrap_or_default();
    let mut idle: Vec<&Holding> = holdings.iter().filter(|h| !h.busy).collect();
    // Longest idle first.
    idle.sort_by_key(|h| (h.idle_since, h.kernel.clone()));
    let mut out = Vec::new();
    let mut still_needed = needed;
    for h in &idle {
        let d = idle_for(h);
        if still_needed > 0 && d >= policy.idle_after {
            still_needed = still_needed.saturating_sub(h.units);
            out.push(Decision::ReclaimForWaiting {
                kernel: h.kernel.clone(),
                idle: d,
            });
            continue;
        }
        if policy.idle_timeout.is_zero() {
            continue;
        }
        if d >= policy.idle_timeout {
            out.push(Decision::ReclaimIdle {
                kernel: h.kernel.clone(),
                idle: d,
            });
        } else if !h.warned && d + policy.warn_before >= policy.idle_timeout {
            out.push(Decision::Warn {
                kernel: h.kernel.clone(),
                in_: policy.idle_timeout - d,
            });
        }
    }
    out
}

/// Units the waiting requests need beyond the `free` ones (ignoring model filters: a filter
/// only makes fewer units fit, and reclaiming one more idle kernel than needed is the safe
/// side of the error).
pub fn shortfall(waiting: &[Request], free: usize) -> u32 {
    let demand: u32 = waiting.iter().map(|r| r.units).sum();
    demand.saturating_sub(free as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn req(kernel: &str, user: &str, units: u32, since: i64) -> Request {
        Request {
            kernel: kernel.into(),
            user: user.into(),
            units,
            gpu_model: None,
            mig_profile: None,
            since: t(since),
            priority: 0,
        }
    }

    fn slots(n: usize) -> Vec<Slot> {
        (0..n)
            .map(|i| Slot {
                uuid: format!("GPU-{i}"),
                model: "NVIDIA H200".into(),
                mig_profile: None,
            })
            .collect()
    }

    const POLICY: Policy = Policy {
        idle_after: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(3600),
        queue_timeout: Duration::from_secs(1800),
        warn_before: Duration::from_secs(300),
    };

    #[test]
    fn users_holding_fewer_units_go_first_then_arrival() {
        let waiting = [
            req("a2", "alice", 1, 0),
            req("b1", "bob", 1, 10),
            req("c1", "carol", 1, 5),
        ];
        let held = HashMap::from([("alice".to_string(), 1)]);
        let order: Vec<&str> = order(&waiting, &held)
            .iter()
            .map(|r| r.kernel.as_str())
            .collect();
        assert_eq!(order, ["c1", "b1", "a2"]);
        assert_eq!(ahead_of(&waiting, &held, "a2"), Some(2));
        let g = grants(&waiting, &held, &slots(1), t(20), &POLICY);
        assert_eq!(g, [("c1".to_string(), vec!["GPU-0".to_string()])]);
    }

    #[test]
    fn a_higher_priority_goes_ahead_of_earlier_arrivals_and_fewer_units() {
        let mut ta = req("t1", "tina", 1, 50);
        ta.priority = 10;
        let waiting = [req("a1", "alice", 1, 0), req("c1", "carol", 1, 5), ta];
        // Tina already holds more than the others: priority comes before that rule.
        let held = HashMap::from([("tina".to_string(), 1)]);
        let order: Vec<&str> = order(&waiting, &held)
            .iter()
            .map(|r| r.kernel.as_str())
            .collect();
        assert_eq!(order, ["t1", "a1", "c1"]);
        assert_eq!(ahead_of(&waiting, &held, "a1"), Some(1));
        let g = grants(&waiting, &held, &slots(1), t(60), &POLICY);
        assert_eq!(g, [("t1".to_string(), vec!["GPU-0".to_string()])]);
        // A low-priority request starving for half the timeout does not hold back a higher
        // priority that came later.
        let mut late = req("t2", "tina", 1, 1000);
        late.priority = 10;
        let waiting = [req("big", "bob", 2, 0), late];
        let g = grants(&waiting, &HashMap::new(), &slots(1), t(1001), &POLICY);
        assert_eq!(g.len(), 1, "{g:?}");
        assert_eq!(g[0].0, "t2");
    }

    #[test]
    fn grants_count_towards_the_next_and_are_all_or_none() {
        let waiting = [
            req("a1", "alice", 1, 0),
            req("a2", "alice", 1, 1),
            req("b1", "bob", 2, 2),
        ];
        // Two free: alice's first, then bob (holding none) is ahead of alice's second but
        // needs 2 of the 1 left, so alice's second backfills.
        let g = grants(&waiting, &HashMap::new(), &slots(2), t(10), &POLICY);
        let kernels: Vec<&str> = g.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kernels, ["a1", "a2"]);
        assert!(g.iter().all(|(_, u)| u.len() == 1));
    }

    #[test]
    fn a_big_request_waiting_half_the_timeout_is_not_overtaken() {
        let waiting = [req("big", "bob", 2, 0), req("small", "carol", 1, 100)];
        let early = grants(&waiting, &HashMap::new(), &slots(1), t(200), &POLICY);
        assert_eq!(early.len(), 1, "backfill while the big one is young");
        assert_eq!(early[0].0, "small");
        let late = grants(&waiting, &HashMap::new(), &slots(1), t(901), &POLICY);
        assert!(late.is_empty(), "{late:?}");
        let both = grants(&waiting, &HashMap::new(), &slots(3), t(901), &POLICY);
        assert_eq!(both.len(), 2);
    }

    #[test]
    fn filters_pick_matching_units() {
        let mut r = req("k", "u", 1, 0);
        r.mig_profile = Some("1g.18gb".into());
        let free = vec![
            Slot {
                uuid: "MIG-a".into(),
                model: "NVIDIA H200".into(),
                mig_profile: Some("3g.71gb".into()),
            },
            Slot {
                uuid: "MIG-b".into(),
                model: "NVIDIA H200".into(),
                mig_profile: Some("1g.18gb".into()),
            },
        ];
        let g = grants(&[r], &HashMap::new(), &free, t(0), &POLICY);
        assert_eq!(g[0].1, ["MIG-b"]);
    }

    #[test]
    fn waits_expire_after_the_queue_timeout() {
        let waiting = [req("old", "a", 1, 0), req("new", "b", 1, 1000)];
        assert_eq!(expired(&waiting, t(1800), &POLICY), ["old"]);
        let never = Policy {
            queue_timeout: Duration::ZERO,
            ..POLICY
        };
        assert!(expired(&waiting, t(99_999), &never).is_empty());
    }

    fn holding(kernel: &str, idle_since: i64, busy: bool) -> Holding {
        Holding {
            kernel: kernel.into(),
            units: 1,
            busy,
            idle_since: t(idle_since),
            warned: false,
        }
    }

    #[test]
    fn waiting_reclaims_the_longest_idle_first_and_only_as_many_as_needed() {
        let h = [
            holding("recent", 500, false),
            holding("oldest", 0, false),
            holding("older", 100, false),
            holding("busy", 0, true),
        ];
        let d = reclaims(&h, 1, t(1200), &POLICY);
        assert_eq!(
            d,
            [Decision::ReclaimForWaiting {
                kernel: "oldest".into(),
                idle: Duration::from_secs(1200)
            }]
        );
        let d = reclaims(&h, 5, t(1200), &POLICY);
        let kernels: Vec<_> = d
            .iter()
            .map(|d| match d {
                Decision::ReclaimForWaiting { kernel, .. } => kernel.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        // "recent" is idle 700 s ≥ 600; "busy" never.
        assert_eq!(kernels, ["oldest", "older", "recent"]);
    }

    #[test]
    fn nobody_waiting_warns_then_reclaims_after_the_idle_timeout() {
        let h = [holding("k", 0, false)];
        assert!(reclaims(&h, 0, t(3000), &POLICY).is_empty());
        assert_eq!(
            reclaims(&h, 0, t(3400), &POLICY),
            [Decision::Warn {
                kernel: "k".into(),
                in_: Duration::from_secs(200)
            }]
        );
        let warned = [Holding {
            warned: true,
            ..h[0].clone()
        }];
        assert!(reclaims(&warned, 0, t(3400), &POLICY).is_empty());
        assert!(matches!(
            reclaims(&warned, 0, t(3600), &POLICY)[..],
            [Decision::ReclaimIdle { .. }]
        ));
        assert!(reclaims(&[holding("b", 0, true)], 0, t(9999), &POLICY).is_empty());
    }

    #[test]
    fn shortfall_counts_demand_beyond_free_units() {
        let waiting = [req("a", "a", 2, 0), req("b", "b", 1, 0)];
        assert_eq!(shortfall(&waiting, 1), 2);
        assert_eq!(shortfall(&waiting, 5), 0);
        assert_eq!(shortfall(&[], 0), 0);
    }
}
