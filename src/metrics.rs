//! Prometheus metrics, rendered by hand in the text exposition format at `/hub/metrics`.
//!
//! Few enough series that a crate would be more code than this: login counters, an API latency
//! histogram, spawn outcomes, remote kernels by state and reclaims, and gauges computed from the
//! store and the gateway when scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket bounds in seconds (JupyterHub's request-duration buckets, trimmed).
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    spawns_ok: AtomicU64,
    spawns_failed: AtomicU64,
    /// Kernel containers taken from idle kernels (each one memory, CPU or a GPU given back).
    kernels_reclaimed: AtomicU64,
    /// (method, status class) → latency histogram of API requests.
    api: Mutex<BTreeMap<(String, String), Histogram>>,
    spawn_seconds: Mutex<Histogram>,
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
}

/// Remote kernels by state (see [`Gauges::kernels`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KernelCounts {
    pub running: usize,
    pub reclaimed: usize,
    pub starting: usize,
    pub dead: usize,
}

impl Metrics {
    pub fn login(&self, ok: bool) {
        let c = if ok {
            &self.logins_ok
        } else {
            &self.logins_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn spawn(&self, ok: bool, took: Duration) {
        let c = if ok {
            &self.spawns_ok
        } else {
            &self.spawns_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
        if ok {
            observe(
                &mut self.spawn_seconds.lock().unwrap_or_else(|e| e.into_inner()),
                took.as_secs_f64(),
            );
        }
    }

    pub fn kernel_reclaimed(&self) {
        self.kernels_reclaimed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn api_request(&self, method: &str, status: u16, took: Duration) {
        let class = format!("{}xx", status / 100);
        let mut map = self.api.lock().unwrap_or_else(|e| e.into_inner());
        observe(
            map.entry((method.to_string(), class)).or_default(),
            took.as_secs_f64(),
        );
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, v: usize| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "orrery_total_users",
            "Users known to the hub.",
            g.users,
        );
        gauge(
            &mut out,
            "orrery_active_users",
            "Users active in the last 24 hours.",
            g.active_users,
        );
        gauge(
            &mut out,
            "orrery_running_servers",
            "Single-user servers running.",
            g.running_servers,
        );
        gauge(
            &mut out,
            "orrery_pending_spawns",
            "Spawns in progress.",
            g.pending_spawns,
        );
        let k = &g.kernels;
        let _ = writeln!(
            out,
            "# HELP orrery_kernels Remote kernels by state.\n# TYPE orrery_kernels gauge"
        );
        for (state, n) in [
            ("running", k.running),
            ("reclaimed", k.reclaimed),
            ("starting", k.starting),
            ("dead", k.dead),
        ] {
            let _ = writeln!(out, "orrery_kernels{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP orrery_kernels_reclaimed_total Idle kernels whose container was reclaimed.\n\
             # TYPE orrery_kernels_reclaimed_total counter\norrery_kernels_reclaimed_total {}",
            self.kernels_reclaimed.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP orrery_logins_total Login attempts by outcome.\n# TYPE orrery_logins_total counter");
        let _ = writeln!(
            out,
            "orrery_logins_total{{outcome=\"success\"}} {}",
            self.logins_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "orrery_logins_total{{outcome=\"failure\"}} {}",
            self.logins_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP orrery_spawns_total Server spawns by outcome.\n# TYPE orrery_spawns_total counter");
        let _ = writeln!(
            out,
            "orrery_spawns_total{{outcome=\"success\"}} {}",
            self.spawns_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "orrery_spawns_total{{outcome=\"failure\"}} {}",
            self.spawns_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP orrery_spawn_duration_seconds Time from spawn request to ready server.\n# TYPE orrery_spawn_duration_seconds histogram");
        render_hist(
            &mut out,
            "orrery_spawn_duration_seconds",
            "",
            &self.spawn_seconds.lock().unwrap_or_else(|e| e.into_inner()),
        );
        let _ = writeln!(out, "# HELP orrery_api_request_duration_seconds Hub API request latency.\n# TYPE orrery_api_request_duration_seconds histogram");
        for ((method, code), h) in self.api.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            render_hist(
                &mut out,
                "orrery_api_request_duration_seconds",
                &format!("method=\"{method}\",code=\"{code}\","),
                h,
            );
        }
        out
    }
}

fn observe(h: &mut Histogram, v: f64) {
    if h.counts.is_empty() {
        h.counts = vec![0; BUCKETS.len()];
    }
    for (i, b) in BUCKETS.iter().enumerate() {
        if v <= *b {
            h.counts[i] += 1;
        }
    }
    h.sum += v;
    h.count += 1;
}

fn render_hist(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    for (i, b) in BUCKETS.iter().enumerate() {
        let c = h.counts.get(i).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", h.count);
    let trimmed = labels.trim_end_matches(',');
    let lb = if trimmed.is_empty() {
        String::new()
    } else {
        format!("{{{trimmed}}}")
    };
    let _ = writeln!(out, "{name}_sum{lb} {}", h.sum);
    let _ = writeln!(out, "{name}_count{lb} {}", h.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.login(true);
        m.login(false);
        m.login(false);
        m.api_request("GET", 200, Duration::from_millis(3));
        let text = m.render(&Gauges {
            users: 3,
            active_users: 1,
            running_servers: 0,
            pending_spawns: 0,
            kernels: KernelCounts {
                running: 2,
                reclaimed: 1,
                ..Default::default()
            },
        });
        assert!(text.contains("orrery_kernels{state=\"running\"} 2"));
        assert!(text.contains("orrery_kernels{state=\"reclaimed\"} 1"));
        assert!(text.contains("orrery_kernels{state=\"dead\"} 0"));
        assert!(text.contains("orrery_kernels_reclaimed_total 0"));
        assert!(text.contains("orrery_logins_total{outcome=\"failure\"} 2"));
        assert!(text.contains("orrery_total_users 3"));
        assert!(text.contains("orrery_api_request_duration_seconds_bucket{method=\"GET\",code=\"2xx\",le=\"0.005\"} 1"));
        assert!(text
            .contains("orrery_api_request_duration_seconds_count{method=\"GET\",code=\"2xx\"} 1"));
    }
}
