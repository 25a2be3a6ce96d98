//! Prometheus metrics at `/hub/metrics`, kept and rendered by `prometheus-client` (the
//! Prometheus project's Rust client) in the OpenMetrics text format.
//!
//! Orrery's own series: login and spawn counters, spawn and API latency histograms, remote
//! kernels by state and the kernel containers reclaimed, and gauges read from the store and the
//! gateway at scrape time. Next to them, JupyterHub's standard names where one exists
//! (`jupyterhub_total_users`, `jupyterhub_active_users{period="24h"}`,
//! `jupyterhub_running_servers`, `jupyterhub_server_spawn_duration_seconds{status}`), so
//! dashboards made for JupyterHub work unchanged. GPUs: per unit utilization, memory and
//! whether it is leased; reclaims of GPU kernels; and the unit-seconds leased to idle kernels.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Histogram bucket bounds in seconds (JupyterHub's request-duration buckets, trimmed).
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of spawn durations: a container start takes seconds, a slow image minutes.
const SPAWN_BUCKETS: &[f64] = &[0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiRequest {
    method: String,
    /// The status class, `2xx`…`5xx`: few series however many statuses occur.
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KernelState {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Period {
    period: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GpuUnit {
    unit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GpuGroupLabel {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpawnStatus {
    status: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn api_histogram() -> Histogram {
    Histogram::new(BUCKETS.iter().copied())
}

fn spawn_histogram() -> Histogram {
    Histogram::new(SPAWN_BUCKETS.iter().copied())
}

/// Gauges read from the store at scrape time.
pub struct Gauges {
    pub users: usize,
    pub active_users: usize,
    pub running_servers: usize,
    pub pending_spawns: usize,
    /// Remote kernels by state: `running` (a container answers), `reclaimed` (listed, no
    /// container), `starting` (starting or restarting), `dead`.
    pub kernels: KernelCounts,
    /// Every GPU unit NVML reports (none without NVML).
    pub gpus: Vec<GpuGauge>,
    /// Each `[[gpu.groups]]` entry: units its members hold and wait for.
    pub gpu_groups: Vec<GpuGroupGauge>,
}

/// One `[[gpu.groups]]` entry at scrape time (a user in several groups counts in each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuGroupGauge {
    pub group: String,
    /// Units (seats under the shared policy) its members' kernels hold.
    pub leased: u32,
    /// Units its members' waiting kernels ask for.
    pub queued: u32,
}

/// One GPU unit at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuGauge {
    pub unit: String,
    /// Percent; None where NVML cannot say (MIG devices).
    pub utilization: Option<u32>,
    pub memory_used: u64,
    pub memory_total: u64,
    /// Kernels holding it (at most 1 under the exclusive policy).
    pub leased: u32,
}

/// Remote kernels by state (see [`Gauges::kernels`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KernelCounts {
    pub running: usize,
    pub reclaimed: usize,
    pub starting: usize,
    pub dead: usize,
}

pub struct Metrics {
    /// Every series below, registered once; rendering encodes it.
    registry: Registry,
    logins: Family<Outcome, Counter>,
    spawns: Family<Outcome, Counter>,
    /// Kernel containers taken from idle kernels (each one memory, CPU or a GPU given back).
    kernels_reclaimed: Counter,
    api: HistogramFamily<ApiRequest>,
    spawn_seconds: Histogram,
    jupyterhub_spawn_seconds: HistogramFamily<SpawnStatus>,
    // Set from [`Gauges`] when scraped.
    total_users: Gauge,
    active_users: Gauge,
    running_servers: Gauge,
    pending_spawns: Gauge,
    kernels: Family<KernelState, Gauge>,
    jupyterhub_total_users: Gauge,
    jupyterhub_active_users: Family<Period, Gauge>,
    jupyterhub_running_servers: Gauge,
    gpu_utilization: Family<GpuUnit, Gauge>,
    gpu_memory_used: Family<GpuUnit, Gauge>,
    gpu_memory_total: Family<GpuUnit, Gauge>,
    gpu_leased: Family<GpuUnit, Gauge>,
    gpu_group_leased: Family<GpuGroupLabel, Gauge>,
    gpu_group_queued: Family<GpuGroupLabel, Gauge>,
    /// Unit-seconds held by idle kernels of each `[[gpu.groups]]` entry's members.
    gpu_group_idle_leased_seconds:
        Family<GpuGroupLabel, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// GPU kernels whose container (and units) were taken back for idleness.
    gpu_reclaims: Counter,
    /// Kernels stopped for staying over their GPU memory budget on a shared unit.
    gpu_over_budget_stops: Counter,
    /// Unit-seconds held by kernels that were idle: the waste GPU scheduling exists to shrink.
    gpu_idle_leased_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    /// Kernels waiting for GPU units now.
    gpu_queue_length: Gauge,
    /// How long kernels waited for their units (observed at each grant).
    gpu_wait_seconds: Histogram,
    /// Waits that ran out (`gpu.queue_timeout`).
    gpu_waits_ended: Counter,
}

fn outcome(ok: bool) -> Outcome {
    Outcome {
        outcome: if ok { "success" } else { "failure" }.into(),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            logins: Family::default(),
            spawns: Family::default(),
            kernels_reclaimed: Counter::default(),
            api: Family::new_with_constructor(api_histogram as fn() -> Histogram),
            spawn_seconds: spawn_histogram(),
            jupyterhub_spawn_seconds: Family::new_with_constructor(
                spawn_histogram as fn() -> Histogram,
            ),
            total_users: Gauge::default(),
            active_users: Gauge::default(),
            running_servers: Gauge::default(),
            pending_spawns: Gauge::default(),
            kernels: Family::default(),
            jupyterhub_total_users: Gauge::default(),
            jupyterhub_active_users: Family::default(),
            jupyterhub_running_servers: Gauge::default(),
            gpu_utilization: Family::default(),
            gpu_memory_used: Family::default(),
            gpu_memory_total: Family::default(),
            gpu_leased: Family::default(),
            gpu_group_leased: Family::default(),
            gpu_group_queued: Family::default(),
            gpu_group_idle_leased_seconds: Family::default(),
            gpu_reclaims: Counter::default(),
            gpu_over_budget_stops: Counter::default(),
            gpu_idle_leased_seconds: Counter::default(),
            gpu_queue_length: Gauge::default(),
            gpu_wait_seconds: Histogram::new([
                1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
            ]),
            gpu_waits_ended: Counter::default(),
        };
        m.register()
    }
}

impl Metrics {
    /// Register every series, and create the labelled ones that are always shown (a
    /// dashboard's `0` is better than a missing series).
    fn register(mut self) -> Metrics {
        for ok in [true, false] {
            let _ = self.logins.get_or_create(&outcome(ok));
            let _ = self.spawns.get_or_create(&outcome(ok));
        }
        for state in ["running", "reclaimed", "starting", "dead"] {
            let _ = self.kernels.get_or_create(&KernelState {
                state: state.into(),
            });
        }
        let r = &mut self.registry;
        r.register(
            "orrery_total_users",
            "Users in the state database",
            self.total_users.clone(),
        );
        r.register(
            "orrery_active_users",
            "Users active in the last 24 hours",
            self.active_users.clone(),
        );
        r.register(
            "orrery_running_servers",
            "Servers that are ready",
            self.running_servers.clone(),
        );
        r.register(
            "orrery_pending_spawns",
            "Spawns in progress",
            self.pending_spawns.clone(),
        );
        r.register(
            "orrery_kernels",
            "Remote kernels by state",
            self.kernels.clone(),
        );
        r.register(
            "orrery_kernels_reclaimed",
            "Kernel containers reclaimed from idle kernels",
            self.kernels_reclaimed.clone(),
        );
        r.register(
            "orrery_logins",
            "Login attempts by outcome",
            self.logins.clone(),
        );
        r.register(
            "orrery_spawns",
            "Server spawns by outcome",
            self.spawns.clone(),
        );
        r.register(
            "orrery_spawn_duration_seconds",
            "Time from spawn request to ready server",
            self.spawn_seconds.clone(),
        );
        r.register(
            "orrery_api_request_duration_seconds",
            "Hub API request latency",
            self.api.clone(),
        );
        r.register(
            "orrery_gpu_utilization_percent",
            "GPU utilization by unit, in NVML's last sample period (not for MIG devices)",
            self.gpu_utilization.clone(),
        );
        r.register(
            "orrery_gpu_memory_used_bytes",
            "GPU memory used, by unit",
            self.gpu_memory_used.clone(),
        );
        r.register(
            "orrery_gpu_memory_total_bytes",
            "GPU memory, by unit",
            self.gpu_memory_total.clone(),
        );
        r.register(
            "orrery_gpu_leased",
            "Kernels holding the unit (at most 1 under the exclusive policy)",
            self.gpu_leased.clone(),
        );
        r.register(
            "orrery_gpu_group_leased",
            "GPU units held by the members of each [[gpu.groups]] entry",
            self.gpu_group_leased.clone(),
        );
        r.register(
            "orrery_gpu_group_queued",
            "GPU units the waiting kernels of each [[gpu.groups]] entry's members ask for",
            self.gpu_group_queued.clone(),
        );
        r.register(
            "orrery_gpu_group_idle_leased_seconds",
            "Unit-seconds held by idle kernels of each [[gpu.groups]] entry's members",
            self.gpu_group_idle_leased_seconds.clone(),
        );
        r.register(
            "orrery_gpu_reclaims",
            "GPU kernels whose units were taken back for idleness",
            self.gpu_reclaims.clone(),
        );
        r.register(
            "orrery_gpu_over_budget_stops",
            "GPU kernels stopped for staying over their GPU memory budget on a shared unit",
            self.gpu_over_budget_stops.clone(),
        );
        r.register(
            "orrery_gpu_idle_leased_seconds",
            "Unit-seconds held by idle kernels (the waste GPU scheduling shrinks)",
            self.gpu_idle_leased_seconds.clone(),
        );
        r.register(
            "orrery_gpu_queue_length",
            "Kernels waiting for GPU units",
            self.gpu_queue_length.clone(),
        );
        r.register(
            "orrery_gpu_wait_seconds",
            "How long kernels waited for their GPU units",
            self.gpu_wait_seconds.clone(),
        );
        r.register(
            "orrery_gpu_waits_ended",
            "Waits for a GPU that ran out (gpu.queue_timeout)",
            self.gpu_waits_ended.clone(),
        );
        r.register(
            "jupyterhub_total_users",
            "Total number of users (JupyterHub's name)",
            self.jupyterhub_total_users.clone(),
        );
        r.register(
            "jupyterhub_active_users",
            "Number of users who were active in the given time period (JupyterHub's name)",
            self.jupyterhub_active_users.clone(),
        );
        r.register(
            "jupyterhub_running_servers",
            "The number of user servers currently running (JupyterHub's name)",
            self.jupyterhub_running_servers.clone(),
        );
        r.register(
            "jupyterhub_server_spawn_duration_seconds",
            "Time taken for server spawning operation (JupyterHub's name)",
            self.jupyterhub_spawn_seconds.clone(),
        );
        self
    }

    pub fn login(&self, ok: bool) {
        self.logins.get_or_create(&outcome(ok)).inc();
    }

    pub fn spawn(&self, ok: bool, took: Duration) {
        self.spawns.get_or_create(&outcome(ok)).inc();
        if ok {
            self.spawn_seconds.observe(took.as_secs_f64());
        }
        self.jupyterhub_spawn_seconds
            .get_or_create(&SpawnStatus {
                status: outcome(ok).outcome,
            })
            .observe(took.as_secs_f64());
    }

    pub fn kernel_reclaimed(&self) {
        self.kernels_reclaimed.inc();
    }

    /// A GPU kernel's units were taken back for idleness.
    pub fn gpu_reclaimed(&self) {
        self.gpu_reclaims.inc();
    }

    /// A kernel was stopped for staying over its GPU memory budget (shared policy).
    pub fn gpu_over_budget_stopped(&self) {
        self.gpu_over_budget_stops.inc();
    }

    /// `unit_seconds` more of GPU units held by idle kernels of `group`'s members.
    pub fn gpu_group_idle_leased(&self, group: &str, unit_seconds: f64) {
        self.gpu_group_idle_leased_seconds
            .get_or_create(&GpuGroupLabel {
                group: group.to_string(),
            })
            .inc_by(unit_seconds);
    }

    /// `unit_seconds` more of GPU units held by idle kernels.
    pub fn gpu_idle_leased(&self, unit_seconds: f64) {
        self.gpu_idle_leased_seconds.inc_by(unit_seconds);
    }

    /// How many kernels wait for GPU units now.
    pub fn gpu_queue_length(&self, n: usize) {
        self.gpu_queue_length.set(n as i64);
    }

    /// A waiting kernel got its units after `waited`.
    pub fn gpu_waited(&self, waited: Duration) {
        self.gpu_wait_seconds.observe(waited.as_secs_f64());
    }

    /// A wait for a GPU ran out.
    pub fn gpu_wait_ended(&self) {
        self.gpu_waits_ended.inc();
    }

    pub fn api_request(&self, method: &str, status: u16, took: Duration) {
        self.api
            .get_or_create(&ApiRequest {
                method: method.to_string(),
                code: format!("{}xx", status / 100),
            })
            .observe(took.as_secs_f64());
    }

    /// The metrics text, with the gauges set from `g`.
    pub fn render(&self, g: &Gauges) -> String {
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.total_users.set(n(g.users));
        self.active_users.set(n(g.active_users));
        self.running_servers.set(n(g.running_servers));
        self.pending_spawns.set(n(g.pending_spawns));
        for (state, v) in [
            ("running", g.kernels.running),
            ("reclaimed", g.kernels.reclaimed),
            ("starting", g.kernels.starting),
            ("dead", g.kernels.dead),
        ] {
            self.kernels
                .get_or_create(&KernelState {
                    state: state.into(),
                })
                .set(n(v));
        }
        self.jupyterhub_total_users.set(n(g.users));
        self.jupyterhub_active_users
            .get_or_create(&Period {
                period: "24h".into(),
            })
            .set(n(g.active_users));
        self.jupyterhub_running_servers.set(n(g.running_servers));
        // Units come and go (MIG reconfigured, a GPU lost): only today's are shown.
        for family in [
            &self.gpu_utilization,
            &self.gpu_memory_used,
            &self.gpu_memory_total,
            &self.gpu_leased,
        ] {
            family.clear();
        }
        for gpu in &g.gpus {
            let unit = GpuUnit {
                unit: gpu.unit.clone(),
            };
            if let Some(u) = gpu.utilization {
                self.gpu_utilization.get_or_create(&unit).set(i64::from(u));
            }
            let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
            self.gpu_memory_used
                .get_or_create(&unit)
                .set(bytes(gpu.memory_used));
            self.gpu_memory_total
                .get_or_create(&unit)
                .set(bytes(gpu.memory_total));
            self.gpu_leased
                .get_or_create(&unit)
                .set(i64::from(gpu.leased));
        }
        // Groups leave the config at a reload: only today's are shown.
        self.gpu_group_leased.clear();
        self.gpu_group_queued.clear();
        for g in &g.gpu_groups {
            let label = GpuGroupLabel {
                group: g.group.clone(),
            };
            self.gpu_group_leased
                .get_or_create(&label)
                .set(i64::from(g.leased));
            self.gpu_group_queued
                .get_or_create(&label)
                .set(i64::from(g.queued));
        }
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot render metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample name `/hub/metrics` shows. The `orrery_*` names are those of the
    /// hand-written renderer this replaced (a dashboard built on them keeps working); the
    /// `jupyterhub_*` ones are JupyterHub's standard names.
    const GOLDEN: &[&str] = &[
        "jupyterhub_active_users",
        "jupyterhub_running_servers",
        "jupyterhub_server_spawn_duration_seconds_bucket",
        "jupyterhub_server_spawn_duration_seconds_count",
        "jupyterhub_server_spawn_duration_seconds_sum",
        "jupyterhub_total_users",
        "orrery_active_users",
        "orrery_api_request_duration_seconds_bucket",
        "orrery_api_request_duration_seconds_count",
        "orrery_api_request_duration_seconds_sum",
        "orrery_gpu_group_idle_leased_seconds_total",
        "orrery_gpu_group_leased",
        "orrery_gpu_group_queued",
        "orrery_gpu_idle_leased_seconds_total",
        "orrery_gpu_leased",
        "orrery_gpu_memory_total_bytes",
        "orrery_gpu_memory_used_bytes",
        "orrery_gpu_over_budget_stops_total",
        "orrery_gpu_queue_length",
        "orrery_gpu_reclaims_total",
        "orrery_gpu_utilization_percent",
        "orrery_gpu_wait_seconds_bucket",
        "orrery_gpu_wait_seconds_count",
        "orrery_gpu_wait_seconds_sum",
        "orrery_gpu_waits_ended_total",
        "orrery_kernels",
        "orrery_kernels_reclaimed_total",
        "orrery_logins_total",
        "orrery_pending_spawns",
        "orrery_running_servers",
        "orrery_spawn_duration_seconds_bucket",
        "orrery_spawn_duration_seconds_count",
        "orrery_spawn_duration_seconds_sum",
        "orrery_spawns_total",
        "orrery_total_users",
    ];

    fn gauges() -> Gauges {
        Gauges {
            users: 3,
            active_users: 1,
            running_servers: 0,
            pending_spawns: 0,
            kernels: KernelCounts {
                running: 2,
                reclaimed: 1,
                ..Default::default()
            },
            gpus: vec![GpuGauge {
                unit: "GPU-aaaa".into(),
                utilization: Some(35),
                memory_used: 1 << 30,
                memory_total: 80 << 30,
                leased: 1,
            }],
            gpu_groups: vec![GpuGroupGauge {
                group: "tas".into(),
                leased: 2,
                queued: 1,
            }],
        }
    }

    #[test]
    fn the_metric_names_are_the_golden_list() {
        let m = Metrics::default();
        m.api_request("GET", 200, Duration::from_millis(3));
        m.spawn(true, Duration::from_secs(2));
        m.gpu_group_idle_leased("tas", 2.0);
        let text = m.render(&gauges());
        let mut names: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names, GOLDEN, "{text}");
        assert!(text.ends_with("# EOF\n"), "OpenMetrics text: {text}");
    }

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let m = Metrics::default();
        m.login(true);
        m.login(false);
        m.login(false);
        m.kernel_reclaimed();
        m.gpu_idle_leased(1.5);
        m.gpu_idle_leased(3.0);
        m.api_request("GET", 200, Duration::from_millis(3));
        let text = m.render(&gauges());
        for line in [
            "orrery_kernels{state=\"running\"} 2",
            "orrery_kernels{state=\"reclaimed\"} 1",
            "orrery_kernels{state=\"dead\"} 0",
            "orrery_kernels_reclaimed_total 1",
            "orrery_logins_total{outcome=\"failure\"} 2",
            "orrery_logins_total{outcome=\"success\"} 1",
            "orrery_spawns_total{outcome=\"failure\"} 0",
            "orrery_total_users 3",
            "jupyterhub_total_users 3",
            "jupyterhub_active_users{period=\"24h\"} 1",
            "orrery_api_request_duration_seconds_bucket{le=\"0.005\",method=\"GET\",code=\"2xx\"} 1",
            "orrery_api_request_duration_seconds_count{method=\"GET\",code=\"2xx\"} 1",
            "orrery_gpu_utilization_percent{unit=\"GPU-aaaa\"} 35",
            "orrery_gpu_leased{unit=\"GPU-aaaa\"} 1",
            "orrery_gpu_group_leased{group=\"tas\"} 2",
            "orrery_gpu_group_queued{group=\"tas\"} 1",
            "orrery_gpu_memory_total_bytes{unit=\"GPU-aaaa\"} 85899345920",
            "orrery_gpu_idle_leased_seconds_total 4.5",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
