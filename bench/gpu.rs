//! GPU scheduling benchmark: a class's fortnight of notebook sessions, replayed on a virtual
//! clock through Orrery's real GPU scheduler (`orrery::gpu::scheduler`) and, beside it,
//! simulations of the policies people use instead (a GPU per notebook server culled after 1 h
//! idle; kernels culled after 12 h; kernels culled after 10 min), and a reference that holds a
//! GPU only while computing (the bound on what the trace allows). Orrery runs twice: with the
//! issue's default settings ([`ORRERY`]) and with eager ones an admin can choose
//! ([`ORRERY_EAGER`]), both fixed before running.
//!
//! How it is built:
//! * **Trace** ([`trace`]): seeded (splitmix64, [`SEED`]), drawn once per user from that user's
//!   own stream, so the 40-user trace is the first 40 users of the 80-user one. Times are on the
//!   5 s grid of the replay. Nothing in it depends on a policy.
//! * **Replay** ([`replay`]): a discrete-time loop, one step every [`STEP`] seconds for
//!   [`HORIZON`]. It plays the notebooks (think, want the GPU, compute, think, …, idle tail,
//!   close the tab) and asks an [`Allocator`] — one per policy — whether a kernel holds a GPU.
//!   A burst starts computing only once its kernel holds a GPU and then runs its full length, so
//!   the work is conserved and a wait pushes the rest of that session later.
//! * **Orrery** ([`Orrery`]) calls `expired`, `shortfall` and `reclaims` every step, and
//!   `grants` every step with a unit free, with `now` on the virtual clock, as the gateway does
//!   with the wall clock (which also calls `grants` with none free: that round is timed apart).
//! * **Metrics** ([`Outcome`]): GPU-seconds leased and leased while the holder is not in a
//!   burst, the wait of every burst, take-backs, queue timeouts, and the time the replay and the
//!   scheduler's steps take on this machine.
//! * The 24 replays (4 demands × 6 policies) are independent: they run one per core at a time.
//!
//! Writes `## GPU scheduling: a class's trace replayed` in `docs/benchmarks.md`.
//! Run: `cargo bench --bench gpu`.

#[path = "common.rs"]
mod common;

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use common::{median, sh, write_section};
use orrery::gpu::scheduler::{self, Decision, Holding, Policy, Request, Slot};

/// The trace's seed: the trace is fixed by it and the rules in [`trace`], not tuned.
const SEED: u64 = 20_261_202;
const GPUS: usize = 4;
/// The class of the issue; the sweep scales it.
const USERS: usize = 40;
const SWEEP: [usize; 4] = [20, 40, 60, 80];
const DAYS: i64 = 14;

const MIN: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
/// The virtual clock's tick, in seconds.
const STEP: i64 = 5;
/// The replay runs the 14 days plus one more, so the last evening's sessions can finish; a
/// burst that has not started by then is counted as never run.
const HORIZON: i64 = (DAYS + 1) * DAY;

/// Orrery's settings in the issue (and the config's defaults).
const ORRERY: Policy = Policy {
    idle_after: Duration::from_secs(10 * 60),
    idle_timeout: Duration::from_secs(60 * 60),
    queue_timeout: Duration::from_secs(30 * 60),
    warn_before: Duration::from_secs(5 * 60),
};

/// Eager settings an admin can choose (`gpu.idle_after = "1m"`, `gpu.idle_timeout = "5m"`,
/// `gpu.queue_timeout = "0s"`: wait as long as it takes); `warn_before` is the gateway's fixed
/// 5 min. Fixed in advance, not searched for: the trace is the same.
const ORRERY_EAGER: Policy = Policy {
    idle_after: Duration::from_secs(60),
    idle_timeout: Duration::from_secs(5 * 60),
    queue_timeout: Duration::ZERO,
    warn_before: Duration::from_secs(5 * 60),
};

/// Day 0 of the trace, a Monday; the weekly deadline is Friday 23:59.
fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0)
        .single()
        .expect("a valid date")
}

// ---------------------------------------------------------------------------------------------
// The trace.

/// splitmix64: tiny, seeded and the same on every platform and version (unlike `rand`'s StdRng),
/// so the trace cannot drift under the benchmark.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// A duration or time of day uniform in `lo..=hi` seconds, on the replay's 5 s grid.
    fn secs(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.int(0, ((hi - lo) / STEP) as u64) as i64 * STEP
    }
}

/// One notebook tab with one GPU kernel.
struct Session {
    user: usize,
    /// Seconds from [`epoch`].
    open: i64,
    /// (thinking before it, burst length) for each GPU burst, in order.
    bursts: Vec<(i64, i64)>,
    /// Idle after the last burst ends, until the tab is closed.
    tail: i64,
}

impl Session {
    /// Open to close if no burst ever waited.
    fn undelayed_len(&self) -> i64 {
        self.bursts.iter().map(|(t, b)| t + b).sum::<i64>() + self.tail
    }
}

/// Thursday and Friday, the two days up to the Friday 23:59 deadline.
fn before_deadline(day: i64) -> bool {
    matches!(day % 7, 3 | 4)
}

/// The trace for `users` users, sessions in order of opening. The rules (written out in the
/// document too):
/// * each day, each user opens 0–2 sessions (1–3 on Thursday and Friday), each at a time
///   uniform in 9:00–22:00;
/// * a session draws an active length uniform in 1–3 h, then alternates thinking (2–30 min)
///   and a GPU burst (30 s–5 min), starting with thinking, until the active length is reached
///   (the last burst may end past it);
/// * then an idle tail of 0–60 min, and the tab is closed.
fn trace(users: usize) -> Vec<Session> {
    let mut seeds = SplitMix64(SEED);
    let mut sessions = Vec::new();
    for user in 0..users {
        let mut rng = SplitMix64(seeds.next());
        for day in 0..DAYS {
            let n = if before_deadline(day) {
                rng.int(1, 3)
            } else {
                rng.int(0, 2)
            };
            for _ in 0..n {
                let open = day * DAY + rng.secs(9 * HOUR, 22 * HOUR);
                let active = rng.secs(HOUR, 3 * HOUR);
                let mut bursts = Vec::new();
                let mut used = 0;
                while used < active {
                    let think = rng.secs(2 * MIN, 30 * MIN);
                    let burst = rng.secs(30, 5 * MIN);
                    used += think + burst;
                    bursts.push((think, burst));
                }
                let tail = rng.secs(0, HOUR);
                sessions.push(Session {
                    user,
                    open,
                    bursts,
                    tail,
                });
            }
        }
    }
    sessions.sort_by_key(|s| (s.open, s.user));
    sessions
}

/// How many sessions want a GPU at once, from the trace alone (no waits).
struct Demand {
    /// The clock hour with the most open sessions on average: its start and that average.
    peak_hour: i64,
    peak_hour_open: f64,
    /// Sessions in a burst, averaged over that hour.
    peak_hour_bursting: f64,
    /// The most open sessions averaged over any 5-minute window (on the 5-minute grid).
    peak_5min_open: f64,
}

fn demand(sessions: &[Session]) -> Demand {
    let steps = (HORIZON / STEP) as usize;
    // Difference arrays over the grid: +1 where an interval starts, -1 where it ends.
    let mut open = vec![0i32; steps + 1];
    let mut bursting = vec![0i32; steps + 1];
    let mark = |v: &mut [i32], from: i64, to: i64| {
        let (a, b) = ((from / STEP) as usize, ((to / STEP) as usize).min(steps));
        v[a] += 1;
        v[b] -= 1;
    };
    for s in sessions {
        mark(&mut open, s.open, s.open + s.undelayed_len());
        let mut t = s.open;
        for (think, burst) in &s.bursts {
            mark(&mut bursting, t + think, t + think + burst);
            t += think + burst;
        }
    }
    let prefix = |v: &[i32]| -> Vec<f64> {
        let mut level = 0;
        v[..steps]
            .iter()
            .map(|d| {
                level += d;
                f64::from(level)
            })
            .collect()
    };
    let (open, bursting) = (prefix(&open), prefix(&bursting));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let per_hour = (HOUR / STEP) as usize;
    let (peak, peak_hour_open) =
        open.chunks(per_hour)
            .map(mean)
            .enumerate()
            .fold(
                (0, 0.0),
                |best, (i, m)| if m > best.1 { (i, m) } else { best },
            );
    let peak_5min_open = open
        .chunks((5 * MIN / STEP) as usize)
        .map(mean)
        .fold(0.0, f64::max);
    Demand {
        peak_hour: peak as i64 * HOUR,
        peak_hour_open,
        peak_hour_bursting: mean(&bursting[peak * per_hour..(peak + 1) * per_hour]),
        peak_5min_open,
    }
}

// ---------------------------------------------------------------------------------------------
// The policies. The replay tells an allocator what the notebooks do; it decides who holds a
// GPU. `s` is a session (one kernel), `user` its user; times are seconds from the epoch.

trait Allocator {
    fn opened(&mut self, _s: usize, _user: usize, _now: i64) {}
    fn closed(&mut self, _s: usize, _user: usize, _now: i64) {}
    /// Whether the session's kernel can compute now.
    fn has_gpu(&self, s: usize, user: usize) -> bool;
    /// The kernel has a burst to run and no GPU (called every step until it has one).
    fn wants(&mut self, _s: usize, _user: usize, _now: i64) {}
    fn burst_started(&mut self, s: usize, user: usize, now: i64);
    fn burst_ended(&mut self, s: usize, user: usize, now: i64);
    /// Grants from the units free now, then take-backs. A unit taken back is granted from the
    /// next step on (5 s later), standing in for the time it takes to remove the container.
    fn step(&mut self, now: i64);
    /// (units held, units whose holder is not in a burst).
    fn leased(&self) -> (u64, u64);
    /// Whether anyone waits for a unit (after this step's grants).
    fn anyone_waits(&self) -> bool;
    fn tally(&self) -> Tally;
}

#[derive(Default)]
struct Tally {
    /// GPUs taken from idle holders (culls or reclaims): each one loses a kernel's state.
    taken_back: u64,
    /// Orrery only: waits that hit the queue timeout (the user asks again at once).
    timeouts: Option<u64>,
    /// Orrery only: warnings of a coming idle-timeout reclaim.
    warnings: Option<u64>,
    /// Orrery only: reclaims whose session bursts again afterwards, so its next burst runs in
    /// a fresh kernel (the others came after the session's last burst).
    restarts: Option<u64>,
    /// Orrery only: the scheduler's cost per step (µs), on steps with a holder or a request.
    step_us: Vec<f64>,
    /// Orrery only: the longest queue, and what a full round (every call the gateway makes,
    /// `grants` included with no unit free) costs on it, median µs.
    longest_queue: usize,
    full_round_us: f64,
}

/// Who holds each unit.
struct Units(Vec<Option<usize>>);

impl Units {
    fn new() -> Self {
        Units(vec![None; GPUS])
    }
    fn free(&self) -> Option<usize> {
        self.0.iter().position(Option::is_none)
    }
    fn holders(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().flatten().copied()
    }
    fn release(&mut self, holder: usize) {
        for u in self.0.iter_mut().filter(|u| **u == Some(holder)) {
            *u = None;
        }
    }
}

/// Policy 1, DockerSpawner/KubeSpawner GPU profiles: the user's notebook server takes a GPU
/// when a session opens and the server is not up (FIFO wait), and keeps it until no tab is
/// open and an hour has passed since the last activity (the last burst's end, or the server's
/// start). A session opened before the cull reuses the server and its GPU.
struct StaticServers {
    units: Units,
    queue: VecDeque<usize>,
    open: Vec<u32>,
    bursting: Vec<u32>,
    last_activity: Vec<i64>,
    culls: u64,
}

impl StaticServers {
    const CULL_AFTER: i64 = HOUR;

    fn new(users: usize) -> Self {
        StaticServers {
            units: Units::new(),
            queue: VecDeque::new(),
            open: vec![0; users],
            bursting: vec![0; users],
            last_activity: vec![0; users],
            culls: 0,
        }
    }
}

impl Allocator for StaticServers {
    fn opened(&mut self, _s: usize, user: usize, _now: i64) {
        self.open[user] += 1;
        if !self.units.0.contains(&Some(user)) && !self.queue.contains(&user) {
            self.queue.push_back(user);
        }
    }
    fn closed(&mut self, _s: usize, user: usize, _now: i64) {
        self.open[user] -= 1;
    }
    fn has_gpu(&self, _s: usize, user: usize) -> bool {
        self.units.0.contains(&Some(user))
    }
    fn burst_started(&mut self, _s: usize, user: usize, _now: i64) {
        self.bursting[user] += 1;
    }
    fn burst_ended(&mut self, _s: usize, user: usize, now: i64) {
        self.bursting[user] -= 1;
        self.last_activity[user] = now;
    }
    fn step(&mut self, now: i64) {
        while let Some(unit) = self.units.free() {
            let Some(user) = self.queue.pop_front() else {
                break;
            };
            self.units.0[unit] = Some(user);
            self.last_activity[user] = now;
        }
        let culled: Vec<usize> = self
            .units
            .holders()
            .filter(|&u| {
                self.open[u] == 0
                    && self.bursting[u] == 0
                    && now - self.last_activity[u] >= Self::CULL_AFTER
            })
            .collect();
        for u in culled {
            self.units.release(u);
            self.culls += 1;
        }
    }
    fn leased(&self) -> (u64, u64) {
        let held = self.units.holders().count() as u64;
        let idle = self
            .units
            .holders()
            .filter(|&u| self.bursting[u] == 0)
            .count() as u64;
        (held, idle)
    }
    fn anyone_waits(&self) -> bool {
        !self.queue.is_empty()
    }
    fn tally(&self) -> Tally {
        Tally {
            taken_back: self.culls,
            ..Tally::default()
        }
    }
}

/// Policies 2 and 3, kernel culling (Enterprise Gateway: 12 h; elastic-jupyter-operator:
/// 10 min): a kernel takes a GPU at its first burst (FIFO wait) and keeps it until it has
/// been idle (since its last burst's end, or its grant) for `cull_after`, tab open or not.
/// A culled kernel whose session bursts again is restarted and waits again.
struct KernelCulling {
    cull_after: i64,
    units: Units,
    queue: VecDeque<usize>,
    queued: Vec<bool>,
    busy: Vec<bool>,
    last_activity: Vec<i64>,
    culls: u64,
}

impl KernelCulling {
    fn new(sessions: usize, cull_after: i64) -> Self {
        KernelCulling {
            cull_after,
            units: Units::new(),
            queue: VecDeque::new(),
            queued: vec![false; sessions],
            busy: vec![false; sessions],
            last_activity: vec![0; sessions],
            culls: 0,
        }
    }
}

impl Allocator for KernelCulling {
    fn has_gpu(&self, s: usize, _user: usize) -> bool {
        self.units.0.contains(&Some(s))
    }
    fn wants(&mut self, s: usize, _user: usize, _now: i64) {
        if !self.queued[s] {
            self.queued[s] = true;
            self.queue.push_back(s);
        }
    }
    fn burst_started(&mut self, s: usize, _user: usize, _now: i64) {
        self.busy[s] = true;
    }
    fn burst_ended(&mut self, s: usize, _user: usize, now: i64) {
        self.busy[s] = false;
        self.last_activity[s] = now;
    }
    fn step(&mut self, now: i64) {
        while let Some(unit) = self.units.free() {
            let Some(s) = self.queue.pop_front() else {
                break;
            };
            self.queued[s] = false;
            self.units.0[unit] = Some(s);
            // Granted because it wants to compute: its burst starts in this step.
            self.busy[s] = true;
            self.last_activity[s] = now;
        }
        let culled: Vec<usize> = self
            .units
            .holders()
            .filter(|&s| !self.busy[s] && now - self.last_activity[s] >= self.cull_after)
            .collect();
        for s in culled {
            self.units.release(s);
            self.culls += 1;
        }
    }
    fn leased(&self) -> (u64, u64) {
        let held = self.units.holders().count() as u64;
        let idle = self.units.holders().filter(|&s| !self.busy[s]).count() as u64;
        (held, idle)
    }
    fn anyone_waits(&self) -> bool {
        !self.queue.is_empty()
    }
    fn tally(&self) -> Tally {
        Tally {
            taken_back: self.culls,
            ..Tally::default()
        }
    }
}

/// Policies 4 and 5, Orrery with its `policy`: a kernel asks for a GPU when it has a burst to run and holds none; each
/// step the real scheduler expires, grants and reclaims. A wait that times out is asked again
/// at once (a new place at the back of the line; the burst's wait keeps counting).
struct Orrery {
    policy: Policy,
    units: Units,
    waiting: Vec<Request>,
    queued: Vec<bool>,
    busy: Vec<bool>,
    idle_since: Vec<i64>,
    warned: Vec<bool>,
    /// Its GPU was taken back and it has not asked for one since.
    reclaimed: Vec<bool>,
    /// Names as the scheduler sees them: kernel `k<session>`, user `u<user>`, unit `GPU-<i>`.
    kernel: Vec<String>,
    user_of: Vec<usize>,
    user: Vec<String>,
    slot: Vec<Slot>,
    index: HashMap<String, usize>,
    tally: Tally,
    /// The scheduler's inputs at the step with the longest queue (for [`Orrery::full_round`]).
    longest: Option<Round>,
}

/// One round's inputs, as the gateway hands them to the scheduler.
struct Round {
    waiting: Vec<Request>,
    held: HashMap<String, u32>,
    holdings: Vec<Holding>,
    at: DateTime<Utc>,
}

impl Orrery {
    fn new(sessions: &[Session], users: usize, policy: Policy) -> Self {
        let kernel: Vec<String> = (0..sessions.len()).map(|s| format!("k{s}")).collect();
        let index = kernel.iter().cloned().zip(0..).collect();
        Orrery {
            policy,
            units: Units::new(),
            waiting: Vec::new(),
            queued: vec![false; sessions.len()],
            busy: vec![false; sessions.len()],
            idle_since: vec![0; sessions.len()],
            warned: vec![false; sessions.len()],
            reclaimed: vec![false; sessions.len()],
            kernel,
            user_of: sessions.iter().map(|s| s.user).collect(),
            user: (0..users).map(|u| format!("u{u}")).collect(),
            slot: (0..GPUS)
                .map(|i| Slot {
                    uuid: format!("GPU-{i}"),
                    model: "NVIDIA H200".into(),
                    mig_profile: None,
                })
                .collect(),
            index,
            tally: Tally {
                timeouts: Some(0),
                warnings: Some(0),
                restarts: Some(0),
                ..Tally::default()
            },
            longest: None,
        }
    }

    fn session(&self, kernel: &str) -> usize {
        *self.index.get(kernel).expect("a kernel of the trace")
    }

    fn release(&mut self, kernel: &str) {
        let s = self.session(kernel);
        self.units.release(s);
        self.reclaimed[s] = true;
        self.tally.taken_back += 1;
    }

    /// One round of the scheduler, as the gateway runs it.
    fn schedule(&mut self, at: DateTime<Utc>, now: i64) {
        for kernel in scheduler::expired(&self.waiting, at, &self.policy) {
            *self.tally.timeouts.get_or_insert(0) += 1;
            if let Some(r) = self.waiting.iter_mut().find(|r| r.kernel == kernel) {
                r.since = at;
            }
        }
        let mut held: HashMap<String, u32> = HashMap::new();
        for s in self.units.holders() {
            *held.entry(self.user[self.user_of[s]].clone()).or_default() += 1;
        }
        let free: Vec<Slot> = (0..GPUS)
            .filter(|&i| self.units.0[i].is_none())
            .map(|i| self.slot[i].clone())
            .collect();
        // With no unit free, `grants` grants nothing (every request needs a unit), so it is
        // called only when one is. The gateway calls it every round regardless; at 2× demand
        // the queue grows to hundreds and that call dominates, so its cost is measured apart
        // ([`Orrery::full_round`]) rather than paid 259 200 times per replay.
        let granted = if free.is_empty() {
            Vec::new()
        } else {
            scheduler::grants(&self.waiting, &held, &free, at, &self.policy)
        };
        for (kernel, units) in granted {
            let s = self.session(&kernel);
            for uuid in &units {
                let i = self
                    .slot
                    .iter()
                    .position(|x| &x.uuid == uuid)
                    .expect("a unit of ours");
                self.units.0[i] = Some(s);
            }
            self.waiting.retain(|r| r.kernel != kernel);
            self.queued[s] = false;
            // Granted because it wants to compute: its burst starts in this step.
            self.busy[s] = true;
            self.idle_since[s] = now;
            self.warned[s] = false;
        }
        let free = self.units.0.iter().filter(|u| u.is_none()).count();
        let holdings: Vec<Holding> = self
            .units
            .holders()
            .map(|s| Holding {
                kernel: self.kernel[s].clone(),
                units: 1,
                busy: self.busy[s],
                idle_since: at + chrono::Duration::seconds(self.idle_since[s] - now),
                warned: self.warned[s],
            })
            .collect();
        let needed = scheduler::shortfall(&self.waiting, free);
        let decisions = scheduler::reclaims(&holdings, needed, at, &self.policy);
        if self.waiting.len() > self.longest.as_ref().map_or(0, |r| r.waiting.len()) {
            self.longest = Some(Round {
                waiting: self.waiting.clone(),
                held: held.clone(),
                holdings,
                at,
            });
        }
        for decision in decisions {
            match decision {
                Decision::ReclaimForWaiting { kernel, .. }
                | Decision::ReclaimIdle { kernel, .. } => self.release(&kernel),
                Decision::Warn { kernel, .. } => {
                    let s = self.session(&kernel);
                    self.warned[s] = true;
                    *self.tally.warnings.get_or_insert(0) += 1;
                }
            }
        }
    }
}

impl Orrery {
    /// A round as the gateway runs it (`expired`, `grants` with no unit free, `shortfall`,
    /// `reclaims`) on the inputs of the step with the longest queue: median µs of 200.
    fn full_round(&self) -> f64 {
        let Some(r) = &self.longest else {
            return 0.0;
        };
        let mut us: Vec<f64> = (0..200)
            .map(|_| {
                let began = Instant::now();
                let expired = scheduler::expired(&r.waiting, r.at, &self.policy);
                let granted = scheduler::grants(&r.waiting, &r.held, &[], r.at, &self.policy);
                let needed = scheduler::shortfall(&r.waiting, 0);
                let decisions = scheduler::reclaims(&r.holdings, needed, r.at, &self.policy);
                std::hint::black_box((expired, granted, decisions));
                began.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        median(&mut us)
    }
}

impl Allocator for Orrery {
    fn has_gpu(&self, s: usize, _user: usize) -> bool {
        self.units.0.contains(&Some(s))
    }
    fn wants(&mut self, s: usize, user: usize, now: i64) {
        if !self.queued[s] {
            if std::mem::take(&mut self.reclaimed[s]) {
                *self.tally.restarts.get_or_insert(0) += 1;
            }
            self.queued[s] = true;
            self.waiting.push(Request {
                kernel: self.kernel[s].clone(),
                user: self.user[user].clone(),
                units: 1,
                gpu_model: None,
                mig_profile: None,
                since: epoch() + chrono::Duration::seconds(now),
                priority: 0,
            });
        }
    }
    fn burst_started(&mut self, s: usize, _user: usize, _now: i64) {
        self.busy[s] = true;
        self.warned[s] = false;
    }
    fn burst_ended(&mut self, s: usize, _user: usize, now: i64) {
        self.busy[s] = false;
        self.idle_since[s] = now;
    }
    fn step(&mut self, now: i64) {
        if self.waiting.is_empty() && self.units.holders().next().is_none() {
            return; // nothing to decide
        }
        let started = Instant::now();
        self.schedule(epoch() + chrono::Duration::seconds(now), now);
        self.tally
            .step_us
            .push(started.elapsed().as_secs_f64() * 1e6);
    }
    fn leased(&self) -> (u64, u64) {
        let held = self.units.holders().count() as u64;
        let idle = self.units.holders().filter(|&s| !self.busy[s]).count() as u64;
        (held, idle)
    }
    fn anyone_waits(&self) -> bool {
        !self.waiting.is_empty()
    }
    fn tally(&self) -> Tally {
        Tally {
            taken_back: self.tally.taken_back,
            timeouts: self.tally.timeouts,
            warnings: self.tally.warnings,
            restarts: self.tally.restarts,
            step_us: self.tally.step_us.clone(),
            longest_queue: self.longest.as_ref().map_or(0, |r| r.waiting.len()),
            full_round_us: self.full_round(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The replay.

enum Phase {
    NotOpen,
    Thinking {
        until: i64,
    },
    /// A burst is due and its kernel has no GPU yet.
    Wanting {
        since: i64,
    },
    Bursting {
        until: i64,
    },
    Tail {
        until: i64,
    },
    Closed,
}

struct Live {
    phase: Phase,
    /// The burst running or coming next.
    next: usize,
    started: usize,
}

struct Outcome {
    leased_s: u64,
    idle_s: u64,
    /// Of `idle_s`, while someone waited for a unit: the idle lease that cost someone a wait.
    idle_contended_s: u64,
    /// The wait of every burst that ran, in seconds.
    waits: Vec<i64>,
    bursts: usize,
    bursts_run: usize,
    users: usize,
    users_served: usize,
    tally: Tally,
    wall: Duration,
}

/// Moves a session along its timeline up to `now` (burst ends, bursts coming due, tab close).
fn advance(s: usize, session: &Session, live: &mut Live, now: i64, alloc: &mut dyn Allocator) {
    loop {
        live.phase = match live.phase {
            Phase::Thinking { until } if now >= until => Phase::Wanting { since: now },
            Phase::Bursting { until } if now >= until => {
                alloc.burst_ended(s, session.user, now);
                live.next += 1;
                match session.bursts.get(live.next) {
                    // Thinking starts when the burst ends, however late it started.
                    Some((think, _)) => Phase::Thinking { until: now + think },
                    None => Phase::Tail {
                        until: now + session.tail,
                    },
                }
            }
            Phase::Tail { until } if now >= until => {
                alloc.closed(s, session.user, now);
                Phase::Closed
            }
            _ => return,
        };
    }
}

/// Starts the due bursts whose kernel holds a GPU; the others ask for one if `ask`.
fn start_bursts(
    active: &[usize],
    sessions: &[Session],
    live: &mut [Live],
    now: i64,
    alloc: &mut dyn Allocator,
    waits: &mut Vec<i64>,
    ask: bool,
) {
    for &s in active {
        let Phase::Wanting { since } = live[s].phase else {
            continue;
        };
        let user = sessions[s].user;
        if alloc.has_gpu(s, user) {
            waits.push(now - since);
            alloc.burst_started(s, user, now);
            live[s].started += 1;
            live[s].phase = Phase::Bursting {
                until: now + sessions[s].bursts[live[s].next].1,
            };
        } else if ask {
            alloc.wants(s, user, now);
        }
    }
}

fn replay(sessions: &[Session], users: usize, alloc: &mut dyn Allocator) -> Outcome {
    let began = Instant::now();
    let mut live: Vec<Live> = sessions
        .iter()
        .map(|_| Live {
            phase: Phase::NotOpen,
            next: 0,
            started: 0,
        })
        .collect();
    let mut active: Vec<usize> = Vec::new();
    let mut opening = 0;
    let mut waits = Vec::new();
    let (mut leased_s, mut idle_s, mut idle_contended_s) = (0, 0, 0);
    for now in (0..HORIZON).step_by(STEP as usize) {
        while opening < sessions.len() && sessions[opening].open <= now {
            live[opening].phase = Phase::Thinking {
                until: now + sessions[opening].bursts[0].0,
            };
            alloc.opened(opening, sessions[opening].user, now);
            active.push(opening);
            opening += 1;
        }
        for &s in &active {
            advance(s, &sessions[s], &mut live[s], now, alloc);
        }
        start_bursts(&active, sessions, &mut live, now, alloc, &mut waits, true);
        alloc.step(now);
        // Kernels granted a GPU in this step start computing in it.
        start_bursts(&active, sessions, &mut live, now, alloc, &mut waits, false);
        active.retain(|&s| !matches!(live[s].phase, Phase::Closed));
        let (held, idle) = alloc.leased();
        leased_s += held * STEP as u64;
        idle_s += idle * STEP as u64;
        if alloc.anyone_waits() {
            idle_contended_s += idle * STEP as u64;
        }
    }
    let served = (0..users)
        .filter(|&u| {
            sessions
                .iter()
                .zip(&live)
                .filter(|(s, _)| s.user == u)
                .all(|(s, l)| l.started == s.bursts.len())
        })
        .count();
    Outcome {
        leased_s,
        idle_s,
        idle_contended_s,
        waits,
        bursts: sessions.iter().map(|s| s.bursts.len()).sum(),
        bursts_run: live.iter().map(|l| l.started).sum(),
        users,
        users_served: served,
        tally: alloc.tally(),
        wall: began.elapsed(),
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics and the document.

const POLICIES: [&str; 6] = [
    "Static GPU per notebook server, culled after 1 h idle",
    "Kernel culling after 12 h",
    "Kernel culling after 10 min",
    "Orrery",
    "Orrery, eager settings",
    "*Reference: a GPU only while computing*",
];
/// Where Orrery's rows are in [`POLICIES`]: the default settings ([`ORRERY`]) and the eager
/// ones ([`ORRERY_EAGER`]).
const ORRERY_ROW: usize = 3;
const EAGER_ROW: usize = 4;

/// Replays one policy (an index into [`POLICIES`]).
fn run(policy: usize, sessions: &[Session], users: usize) -> Outcome {
    match policy {
        0 => replay(sessions, users, &mut StaticServers::new(users)),
        1 => replay(
            sessions,
            users,
            &mut KernelCulling::new(sessions.len(), 12 * HOUR),
        ),
        2 => replay(
            sessions,
            users,
            &mut KernelCulling::new(sessions.len(), 10 * MIN),
        ),
        ORRERY_ROW => replay(sessions, users, &mut Orrery::new(sessions, users, ORRERY)),
        EAGER_ROW => replay(
            sessions,
            users,
            &mut Orrery::new(sessions, users, ORRERY_EAGER),
        ),
        // Not a policy anyone can run (every burst would restart its kernel): the bound on
        // what any policy can do with this trace and these GPUs, no idle lease at all.
        _ => replay(sessions, users, &mut KernelCulling::new(sessions.len(), 0)),
    }
}

/// Every policy on every trace, one replay per core at a time: the replays are independent
/// and single-threaded, and the sweep's largest Orrery replay alone takes most of the time.
/// Returns, per trace, the outcomes in the order of [`POLICIES`].
fn run_all(traces: &[(usize, Vec<Session>)]) -> Vec<Vec<Outcome>> {
    // Largest traces first, so the long replays do not start last.
    let jobs: Vec<(usize, usize)> = (0..traces.len())
        .rev()
        .flat_map(|t| (0..POLICIES.len()).map(move |p| (t, p)))
        .collect();
    let next = AtomicUsize::new(0);
    let done: Mutex<HashMap<(usize, usize), Outcome>> = Mutex::new(HashMap::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads.min(jobs.len()) {
            scope.spawn(|| {
                while let Some(&(t, p)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let (users, sessions) = &traces[t];
                    let outcome = run(p, sessions, *users);
                    done.lock()
                        .expect("no replay panicked")
                        .insert((t, p), outcome);
                }
            });
        }
    });
    let mut done = done.into_inner().expect("no replay panicked");
    (0..traces.len())
        .map(|t| {
            (0..POLICIES.len())
                .map(|p| done.remove(&(t, p)).expect("every job ran"))
                .collect()
        })
        .collect()
}

/// The nearest-rank `p` percentile of the wait over every burst of the trace, a burst that
/// did not run within the replay counting as longer than any that did: `None` when the
/// percentile falls among those.
fn percentile(o: &Outcome, p: f64) -> Option<i64> {
    let mut w = o.waits.clone();
    w.sort_unstable();
    let rank = ((p * o.bursts as f64).ceil() as usize).saturating_sub(1);
    w.get(rank).copied()
}

fn wait(p: Option<i64>) -> String {
    let Some(v) = p else {
        return "not run".into();
    };
    let human = if v >= 2 * DAY {
        format!(" ({:.1} d)", v as f64 / DAY as f64)
    } else if v >= HOUR {
        format!(" ({:.1} h)", v as f64 / HOUR as f64)
    } else if v >= 2 * MIN {
        format!(" ({:.0} min)", v as f64 / MIN as f64)
    } else {
        String::new()
    };
    format!("{v} s{human}")
}

fn gpu_hours(s: u64) -> String {
    format!("{:.1}", s as f64 / HOUR as f64)
}

fn or_dash(v: Option<u64>) -> String {
    v.map_or("—".into(), |v| v.to_string())
}

fn main_table(outcomes: &[Outcome]) -> String {
    let mut t = String::from(
        "| policy | GPU-h leased | GPU-h leased while idle | of which while someone waited | bursts run / in trace | users served | wait p50 | wait p95 | taken back (culls, reclaims) | queue timeouts | replay wall time |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (name, o) in POLICIES.iter().zip(outcomes) {
        let _ = writeln!(
            t,
            "| {name} | {} | {} ({:.0} %) | {} | {} / {} | {} / {} | {} | {} | {} | {} | {:.2} s |",
            gpu_hours(o.leased_s),
            gpu_hours(o.idle_s),
            100.0 * o.idle_s as f64 / o.leased_s.max(1) as f64,
            gpu_hours(o.idle_contended_s),
            o.bursts_run,
            o.bursts,
            o.users_served,
            o.users,
            wait(percentile(o, 0.5)),
            wait(percentile(o, 0.95)),
            o.tally.taken_back,
            or_dash(o.tally.timeouts),
            o.wall.as_secs_f64(),
        );
    }
    t
}

fn sweep_table(rows: &[(usize, Demand, Vec<Outcome>)]) -> String {
    let mut t = String::from(
        "| users | peak open sessions (hour avg) | policy | GPU-h idle / leased | bursts run | users served | wait p50 / p95 | taken back | queue timeouts | replay wall time |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (users, d, outcomes) in rows {
        for (name, o) in POLICIES.iter().zip(outcomes) {
            let _ = writeln!(
                t,
                "| {users} | {:.1} | {name} | {} / {} | {} / {} | {} / {} | {} / {} | {} | {} | {:.2} s |",
                d.peak_hour_open,
                gpu_hours(o.idle_s),
                gpu_hours(o.leased_s),
                o.bursts_run,
                o.bursts,
                o.users_served,
                o.users,
                wait(percentile(o, 0.5)),
                wait(percentile(o, 0.95)),
                o.tally.taken_back,
                or_dash(o.tally.timeouts),
                o.wall.as_secs_f64(),
            );
        }
    }
    t
}

/// What Orrery's scheduler cost on each trace of the sweep.
fn cost_table(rows: &[(usize, Demand, Vec<Outcome>)]) -> String {
    let mut t = String::from(
        "| users | Orrery replay wall time | steps with a holder or a request | per step: median (p99) | longest queue | a full round at the longest queue (median) |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for (users, _, outcomes) in rows {
        let o = &outcomes[ORRERY_ROW];
        let mut us = o.tally.step_us.clone();
        let (med, p99) = (
            median(&mut us),
            us[((us.len() as f64 * 0.99) as usize).min(us.len() - 1)],
        );
        let _ = writeln!(
            t,
            "| {users} | {:.2} s | {} | {med:.1} µs ({p99:.1} µs) | {} | {:.1} µs |",
            o.wall.as_secs_f64(),
            us.len(),
            o.tally.longest_queue,
            o.tally.full_round_us,
        );
    }
    t
}

/// The mean idle hold after a burst while someone waits (the gap to the session's next burst,
/// at most `policy.idle_after`; after the last burst the kernel stays idle, so all of it), and
/// the mean burst, in minutes.
fn hold_per_burst(sessions: &[Session], policy: &Policy) -> (f64, f64) {
    let idle_after = policy.idle_after.as_secs() as i64;
    let (mut hold, mut burst, mut n) = (0, 0, 0);
    for s in sessions {
        for (i, (_, b)) in s.bursts.iter().enumerate() {
            let gap = s.bursts.get(i + 1).map_or(idle_after, |next| next.0);
            hold += gap.min(idle_after);
            burst += b;
            n += 1;
        }
    }
    let per_burst_min = |total: i64| total as f64 / n.max(1) as f64 / MIN as f64;
    (per_burst_min(hold), per_burst_min(burst))
}

/// A setting as the text quotes it: `10 min`, `0 (never)`.
fn minutes(d: Duration) -> String {
    match d.as_secs() {
        0 => "0 (never)".into(),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// A setting as the config spells it: `"1m"`, `"1h"`, `"0s"`.
fn config_value(d: Duration) -> String {
    match d.as_secs() {
        s if s > 0 && s % HOUR as u64 == 0 => format!("\"{}h\"", s / HOUR as u64),
        s if s > 0 && s % MIN as u64 == 0 => format!("\"{}m\"", s / MIN as u64),
        s => format!("\"{s}s\""),
    }
}

/// An Orrery row's settings, as the policies' list quotes them.
fn settings(p: &Policy) -> String {
    format!(
        "`idle_after` {}, `idle_timeout` {}, `queue_timeout` {}, `warn_before` {}",
        minutes(p.idle_after),
        minutes(p.idle_timeout),
        minutes(p.queue_timeout),
        minutes(p.warn_before),
    )
}

/// The config lines an admin writes for `p` (`warn_before` is not one: the gateway fixes it).
fn config_lines(p: &Policy) -> String {
    format!(
        "`gpu.idle_after = {}`, `gpu.idle_timeout = {}`, `gpu.queue_timeout = {}`",
        config_value(p.idle_after),
        config_value(p.idle_timeout),
        config_value(p.queue_timeout),
    )
}

/// Per user per day of the trace.
fn per_user_day(n: u64) -> f64 {
    n as f64 / (USERS as i64 * DAYS) as f64
}

fn met(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**not met**"
    }
}

fn main() {
    let began = Instant::now();
    let traces: Vec<(usize, Vec<Session>)> = SWEEP.iter().map(|&u| (u, trace(u))).collect();
    let rows: Vec<(usize, Demand, Vec<Outcome>)> = traces
        .iter()
        .zip(run_all(&traces))
        .map(|((users, sessions), outcomes)| (*users, demand(sessions), outcomes))
        .collect();
    for (users, d, outcomes) in &rows {
        eprintln!(
            "{users} users: peak {:.1} open sessions (hour average); replays {:?}",
            d.peak_hour_open,
            outcomes.iter().map(|o| o.wall).collect::<Vec<_>>()
        );
    }
    let (i, (_, d, main)) = rows
        .iter()
        .enumerate()
        .find(|r| r.1 .0 == USERS)
        .expect("the sweep includes the class");
    let sessions = &traces[i].1;
    let bursts: usize = sessions.iter().map(|s| s.bursts.len()).sum();
    let gpu_busy_h: f64 = sessions
        .iter()
        .flat_map(|s| &s.bursts)
        .map(|b| b.1 as f64 / HOUR as f64)
        .sum();
    let (stat, orrery, eager, reference) = (
        &main[0],
        &main[ORRERY_ROW],
        &main[EAGER_ROW],
        &main[POLICIES.len() - 1],
    );
    let idle_ratio = orrery.idle_s as f64 / stat.idle_s.max(1) as f64;
    let e_idle_ratio = eager.idle_s as f64 / stat.idle_s.max(1) as f64;
    let p95 = percentile(orrery, 0.95);
    let e_p95 = percentile(eager, 0.95);
    let (hold_min, burst_min) = hold_per_burst(sessions, &ORRERY);
    let share = burst_min / (burst_min + hold_min);
    let (e_hold_min, _) = hold_per_burst(sessions, &ORRERY_EAGER);
    let e_share = burst_min / (burst_min + e_hold_min);
    let restarts = |o: &Outcome| o.tally.restarts.unwrap_or(0);
    let peak_at = epoch() + chrono::Duration::seconds(d.peak_hour);
    let demand_ok = d.peak_hour_open >= 1.5 * GPUS as f64;

    let mut section = String::new();
    let _ = write!(
        section,
        "## GPU scheduling: a class's trace replayed\n\n\
         Measured {date} on {cores} cores ({cpu}), {mem} memory, kernel {kernel}. \
         A fortnight of a class's notebook sessions, replayed on a virtual clock (a step every {STEP} s) \
         through Orrery's real GPU scheduler (`orrery::gpu::scheduler`: `expired`, `grants`, `shortfall`, \
         `reclaims`, called with the virtual `now`) and through simulations of three common \
         policies. `cargo bench --bench gpu` regenerates this section (the whole bench took {total:.1} s, the {replays} replays running \
         {threads} at a time, one per core; each one's wall time is in the tables).\n\n\
         ### The trace (seed {SEED}, fixed before looking at results)\n\n\
         * {USERS} users, {GPUS} GPUs, {DAYS} days from Monday {epoch} (UTC); the weekly deadline is Friday 23:59.\n\
         * Each day each user opens 0–2 sessions (uniform), 1–3 on Thursday and Friday (the two days up to \
           the deadline); each session opens at a time uniform in 9:00–22:00.\n\
         * A session is one notebook with one GPU kernel (1 unit). It draws an active length uniform in \
           1–3 h, then alternates thinking (uniform 2–30 min) and a GPU burst (uniform 30 s–5 min), \
           starting with thinking, until the active length is reached (the last burst may end past it); \
           then an idle tail uniform in 0–60 min, then the tab is closed. All draws on the 5 s grid.\n\
         * A burst computes only once its kernel holds a GPU (the wait before that is the *wait for a \
           GPU*), then runs its full length; thinking starts when it ends, so waits push the rest of \
           the session later and the work is conserved. Closing a tab does not shut the kernel down \
           (as in JupyterLab); only the policy takes its GPU back. A kernel's (re)start after a \
           grant is not modelled: it computes in the step it is granted.\n\
         * Random numbers: splitmix64; user *u* draws from its own stream (the *u*-th output of \
           splitmix64({SEED})), so the 40-user trace is the first 40 users of the 60- and 80-user ones.\n\
         * This trace: {n} sessions, {bursts} bursts, {gpu_busy_h:.0} GPU-hours of bursts.\n\
         * **Peak concurrent demand**, from the trace without waits: {peak:.1} open sessions (each \
           wanting its GPU) averaged over the busiest clock hour ({peak_at}), {peak5:.1} over the busiest \
           5-minute window; of them {peak_b:.1} in a burst at once on average in that hour. \
           Target ≥ 1.5 × {GPUS} = {need:.0} (hour average): {demand_met}.\n\n\
         ### The policies\n\n\
         1. **Static GPU per notebook server, culled after 1 h idle** (DockerSpawner/KubeSpawner GPU \
            profiles + the idle culler): when a session opens and the user's server is not up, the \
            server asks for a GPU (FIFO wait) and keeps it until no tab of the user is open and an hour \
            has passed since the last activity (the last burst's end, or the server's start); a \
            session opened before the cull reuses it, and a user's sessions open at once share it.\n\
         2. **Kernel culling after 12 h** (Enterprise Gateway's recommendation): a kernel takes a GPU \
            at its first burst (FIFO wait) and keeps it until idle for 12 h (since its last burst's end).\n\
         3. **Kernel culling after 10 min** (elastic-jupyter-operator): the same with 10 min; a culled \
            kernel that bursts again is restarted and waits again.\n\
         4. **Orrery**: a kernel asks for a GPU when a burst is due and it holds none; every step \
            `expired` (a wait that reaches the queue timeout is counted and asked again at once, \
            at the back of the line; the burst's wait keeps counting), `grants` (order: fewer units held \
            first, then arrival; called when a unit is free, as with none free it grants nothing: \
            see the scheduler's cost below), then `reclaims(holdings, shortfall(waiting, free), now)`, with \
            the issue's settings (the config's defaults): {o_settings}. \
            A holder is busy during a burst; its `idle_since` is its last burst's end (or its grant).\n\
         5. **Orrery, eager settings**: the same scheduler and replay with {e_settings}. These are \
            settings an admin chooses in Orrery's config ({e_config}), not changes to the trace: the \
            sessions, bursts, seed and the other policies are the same, and the settings were fixed \
            before this replay was first run, not searched for. With `queue_timeout` 0 no wait ever \
            ends, and so the rule that nobody is served before a request that has waited half of \
            it is off too. `warn_before` changes only when warnings come, never who holds a GPU; \
            equal to `idle_timeout` here, it warns an idle holder as soon as it goes idle (the \
            gateway itself caps it at half of `gpu.idle_timeout`, {e_gateway_warn} with these settings).\n\
         6. *Reference: a GPU only while computing* — not a policy anyone can run (each burst would \
            restart its kernel): a kernel gets a GPU for each burst (FIFO) and gives it back when the \
            burst ends. No idle lease at all: a yardstick for what this trace and {GPUS} GPUs allow.\n\n\
         In every policy, each step grants from the units free at its start, then takes back \
         (culls or reclaims); a unit taken back is granted from the next step on, 5 s later, \
         standing in for the time removing the container takes.\n\n\
         The replay runs the {DAYS} days plus one more ({horizon_days} days in all) so the last evening's \
         sessions finish. *GPU-h leased while idle*: a unit held while its holder is not in a burst; *of which while \
         someone waited*: the part of it during which a request (policy 1: a server) waited for a \
         unit, the idle lease that cost someone a wait. \
         *Wait*: from the moment a burst is due to the moment it computes, over every burst of the \
         trace, zero waits included, nearest-rank percentiles; a burst that had not started when \
         the replay ended counts as longer than any that did, and a percentile that falls among \
         those reads *not run*. *Users served*: users every burst of whom ran. *Taken back*: culls (policies 1–3) or \
         reclaims (policies 4–5); each loses a kernel's state.\n\n\
         ### {USERS} users, {GPUS} GPUs\n\n{table}\n\
         Orrery warned {warnings} times of a coming idle-timeout reclaim with its default settings, \
         {e_warnings} times with the eager ones.\n\n\
         **The eager settings' price: reclaims.** Each reclaim removes the kernel's container, so \
         the kernel's state is reset (variables, loaded data and models are gone) and its next cell \
         runs in a fresh kernel. Over the {DAYS} days and {USERS} users, Orrery reclaimed {o_taken} \
         times with its default settings, {o_pud:.1} reclaims per user per day, and {e_taken} times \
         with the eager ones, **{e_pud:.1} reclaims per user per day**. Of those, the ones in a session \
         that computed again afterwards (so its next burst ran in a fresh kernel; the others came \
         after a session's last burst): {o_restarts} ({o_rpud:.1} per user per day, {o_rshare:.0} % of \
         the trace's {bursts} bursts) with the default settings, {e_restarts} ({e_rpud:.1} per user \
         per day, {e_rshare:.0} % of the bursts) with the eager ones.\n\n\
         ### Targets (fixed trace)\n\n\
         The targets: GPU-hours leased while idle ≤ 1/10 of static allocation's ({s_idle} GPU-h, so \
         ≤ {s_tenth} GPU-h), and a p95 wait for a GPU ≤ 30 s.\n\n\
         * **Orrery** (default settings): idle lease {o_idle} GPU-h, 1/{inv:.1} of static allocation's: \
           {idle_met}; p95 wait {p95s}: {p95_met}.\n\
         * **Orrery, eager settings**: idle lease {e_idle} GPU-h, 1/{e_inv:.1} of static allocation's: \
           {e_idle_met}; p95 wait {e_p95s}: {e_p95_met}.\n\n\
         Why the default settings' idle lease stays high under contention: while anyone waits, a holder keeps its GPU \
         through up to `idle_after` ({o_idle_after}) of thinking after each burst. On this trace that is \
         {hold_min:.1} min idle per burst of {burst_min:.1} min on average, so a GPU held this way computes \
         {share:.0} % of the time, and the peak hour's {peak_b:.1} bursting sessions would need about \
         {need_gpus:.1} GPUs held to run without a queue. The 10-minute kernel cull has the same \
         arithmetic; only a hold shorter than the bursts' gaps lowers it. Of Orrery's idle lease, \
         {o_contended} GPU-h fell while someone waited; the other {o_quiet} GPU-h while nobody did, \
         which `idle_timeout` ({o_idle_timeout}) allows by design.\n\n\
         With the eager settings a holder keeps its GPU through at most `idle_after` ({e_idle_after}) \
         of thinking while someone waits: {e_hold_min:.1} min idle per burst on average, so a GPU held \
         this way computes {e_share:.0} % of the time, and the peak hour's {peak_b:.1} bursting \
         sessions would need about {e_need_gpus:.1} GPUs held (there are {GPUS}). Of its idle lease, \
         {e_contended} GPU-h fell while someone waited and {e_quiet} GPU-h while nobody did (a holder \
         keeps its GPU up to `idle_timeout`, {e_idle_timeout}, when nobody waits; it cost no one a wait, but the target counts it). As for the wait: \
         the reference, which never holds a GPU idle, waits {r_p95s} at p95 on this trace; under the \
         eager settings a waiter can also sit out up to `idle_after` ({e_idle_after}) of a holder's \
         thinking before that holder can be reclaimed.\n\n\
         ### Sweep: 0.5×, 1×, 1.5×, 2× the demand (20, 40, 60, 80 users; same {GPUS} GPUs, same seed)\n\n{sweep}\n\
         ### The scheduler's cost\n\n\
         Orrery's replays with its default settings time each step's calls (`expired`, `grants` when a unit is free, \
         `shortfall`, `reclaims`, and building their inputs). The gateway runs a round every 2 s or \
         when woken and calls `grants` in every round, free unit or not; a full round of calls on \
         the inputs of the step with the longest queue, `grants` included with no unit free, is \
         timed apart (200 times). On this machine:\n\n{cost}",
        date = sh("date -u +%Y-%m-%d"),
        cores = sh("nproc"),
        cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'"),
        mem = sh("free -h | awk '/Mem:/ {print $2}'"),
        kernel = sh("uname -r"),
        total = began.elapsed().as_secs_f64(),
        replays = SWEEP.len() * POLICIES.len(),
        threads = std::thread::available_parallelism().map_or(1, |n| n.get()),
        horizon_days = HORIZON / DAY,
        epoch = epoch().format("%-d %B %Y"),
        n = sessions.len(),
        peak = d.peak_hour_open,
        peak_at = peak_at.format("%A %-d %B, %H:00–%H:59"),
        peak5 = d.peak_5min_open,
        peak_b = d.peak_hour_bursting,
        need = 1.5 * GPUS as f64,
        demand_met = met(demand_ok),
        table = main_table(main),
        warnings = or_dash(orrery.tally.warnings),
        e_warnings = or_dash(eager.tally.warnings),
        o_settings = settings(&ORRERY),
        e_settings = settings(&ORRERY_EAGER),
        e_config = config_lines(&ORRERY_EAGER),
        e_gateway_warn = minutes(ORRERY_EAGER.warn_before.min(ORRERY_EAGER.idle_timeout / 2)),
        o_taken = orrery.tally.taken_back,
        e_taken = eager.tally.taken_back,
        o_pud = per_user_day(orrery.tally.taken_back),
        e_pud = per_user_day(eager.tally.taken_back),
        o_restarts = restarts(orrery),
        e_restarts = restarts(eager),
        o_rpud = per_user_day(restarts(orrery)),
        e_rpud = per_user_day(restarts(eager)),
        o_rshare = 100.0 * restarts(orrery) as f64 / bursts.max(1) as f64,
        e_rshare = 100.0 * restarts(eager) as f64 / bursts.max(1) as f64,
        s_tenth = gpu_hours(stat.idle_s / 10),
        e_idle = gpu_hours(eager.idle_s),
        e_inv = 1.0 / e_idle_ratio.max(f64::MIN_POSITIVE),
        e_idle_met = met(e_idle_ratio <= 0.1),
        e_p95s = wait(e_p95),
        e_p95_met = met(e_p95.is_some_and(|w| w <= 30)),
        e_contended = gpu_hours(eager.idle_contended_s),
        e_quiet = gpu_hours(eager.idle_s - eager.idle_contended_s),
        e_hold_min = e_hold_min,
        e_share = 100.0 * e_share,
        e_need_gpus = d.peak_hour_bursting / e_share,
        r_p95s = wait(percentile(reference, 0.95)),
        o_idle_after = minutes(ORRERY.idle_after),
        o_idle_timeout = minutes(ORRERY.idle_timeout),
        e_idle_after = minutes(ORRERY_EAGER.idle_after),
        e_idle_timeout = minutes(ORRERY_EAGER.idle_timeout),
        o_idle = gpu_hours(orrery.idle_s),
        o_contended = gpu_hours(orrery.idle_contended_s),
        o_quiet = gpu_hours(orrery.idle_s - orrery.idle_contended_s),
        s_idle = gpu_hours(stat.idle_s),
        inv = 1.0 / idle_ratio.max(f64::MIN_POSITIVE),
        idle_met = met(idle_ratio <= 0.1),
        p95s = wait(p95),
        p95_met = met(p95.is_some_and(|w| w <= 30)),
        sweep = sweep_table(&rows),
        cost = cost_table(&rows),
        hold_min = hold_min,
        burst_min = burst_min,
        share = 100.0 * share,
        need_gpus = d.peak_hour_bursting / share,
    );
    write_section(
        "docs/benchmarks.md",
        "## GPU scheduling: a class's trace replayed",
        &section,
    );
    println!("{section}");
}
