//! Kernel benchmark: remote kernels (each in its own container, through Orrery's gateway)
//! against kernels local to the notebook server, both driven through the hub's proxy the way
//! JupyterLab drives them.
//!
//! Two users on one hub: `local` gets a server with `kernels.remote = false`, `remote` one with
//! `kernels.remote = true` (set with `orrery config set` + `config reload` between the spawns).
//! For each: **kernel start** = `POST /user/<u>/api/kernels` → channels WebSocket → the first
//! `execute_reply` of `1+1`; **execute round trip** = `execute_request` → `execute_reply` on an
//! open WebSocket. Medians; rounds alternate which side goes first. Writes a section of
//! `docs/benchmarks.md`. Run: `cargo bench --bench kernels` (ORRERY_BENCH_RUNS, default 5 starts
//! and 30 round trips each).

#[path = "common.rs"]
mod common;
#[path = "hub.rs"]
mod hub;

use std::time::Instant;

use common::{machine, median, runs, sh, test_image, write_section, BenchDaemon};
use hub::{execute, Hub, TOKEN};

struct Side {
    starts: Vec<f64>,
    rtts: Vec<f64>,
}

async fn measure_start(hub: &Hub, user: &str, token: &str) -> f64 {
    let t0 = Instant::now();
    let id = hub.new_kernel(user, token).await;
    let mut ws = hub.channels(user, token, &id).await;
    execute(&mut ws).await;
    let took = t0.elapsed().as_secs_f64();
    let _ = ws.close(None).await;
    hub.delete_kernel(user, token, &id).await;
    took
}

async fn measure_rtts(hub: &Hub, user: &str, token: &str, n: usize) -> Vec<f64> {
    let id = hub.new_kernel(user, token).await;
    let mut ws = hub.channels(user, token, &id).await;
    for _ in 0..3 {
        execute(&mut ws).await; // warm-up
    }
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(execute(&mut ws).await);
    }
    let _ = ws.close(None).await;
    hub.delete_kernel(user, token, &id).await;
    out
}

#[tokio::main]
async fn main() {
    let runs = runs(5);
    let image = test_image();
    let daemon = BenchDaemon::start(
        "orrery-kbench",
        &image,
        TOKEN,
        "[\"admin:users\", \"admin:servers\", \"tokens\"]",
        "[kernels]\nremote = false\n",
    )
    .await;
    let hub = Hub::of(&daemon);
    let local_token = hub.user_with_server("local").await;
    hub.cli(&["config", "set", "kernels.remote", "true"]);
    hub.cli(&["config", "reload"]);
    let remote_token = hub.user_with_server("remote").await;

    let mut local = Side {
        starts: Vec::new(),
        rtts: Vec::new(),
    };
    let mut remote = Side {
        starts: Vec::new(),
        rtts: Vec::new(),
    };
    // One warm-up start each (first use of the image for kernels, Python imports cached).
    measure_start(&hub, "local", &local_token).await;
    measure_start(&hub, "remote", &remote_token).await;
    for i in 0..runs {
        if i % 2 == 0 {
            local
                .starts
                .push(measure_start(&hub, "local", &local_token).await);
            remote
                .starts
                .push(measure_start(&hub, "remote", &remote_token).await);
        } else {
            remote
                .starts
                .push(measure_start(&hub, "remote", &remote_token).await);
            local
                .starts
                .push(measure_start(&hub, "local", &local_token).await);
        }
        eprintln!(
            "start {}: local {:.3}s, remote {:.3}s",
            i + 1,
            local.starts[i],
            remote.starts[i]
        );
    }
    local.rtts = measure_rtts(&hub, "local", &local_token, 30).await;
    remote.rtts = measure_rtts(&hub, "remote", &remote_token, 30).await;

    let _ = hub
        .api(reqwest::Method::DELETE, "/users/local/server", None)
        .await;
    let _ = hub
        .api(reqwest::Method::DELETE, "/users/remote/server", None)
        .await;
    drop(daemon);

    let (ls, rs) = (
        median(&mut local.starts.clone()),
        median(&mut remote.starts.clone()),
    );
    let (lr, rr) = (
        median(&mut local.rtts.clone()) * 1000.0,
        median(&mut remote.rtts.clone()) * 1000.0,
    );
    println!("kernel start: local {ls:.3}s, remote {rs:.3}s; execute round trip: local {lr:.1} ms, remote {rr:.1} ms");
    let machine = machine();
    let section = format!(
        "## Remote kernels through the gateway\n\n\
         Measured {date} on {machine}, image `{image}`, through the hub's proxy as JupyterLab drives them \
         (kernel REST calls through the user's Jupyter Server, the channels WebSocket as the browser opens it); {runs} kernel starts per side after one warm-up, rounds \
         alternating which side goes first, and 30 execute round trips per side after 3 warm-ups. \
         `cargo bench --bench kernels` regenerates this section.\n\n\
         * **Local**: the kernel runs inside the user's notebook container (`kernels.remote = false`).\n\
         * **Remote**: Jupyter Server in gateway mode; Orrery starts the kernel in its own container; the \
         proxy hands the browser's WebSocket to the gateway (after the user's server authorized it), which \
         bridges it to the kernel's ZeroMQ sockets.\n\n\
         | | local | remote | remote − local |\n| --- | --- | --- | --- |\n\
         | kernel start (create → first `execute_reply`), median | {ls:.3} s | {rs:.3} s | {:+.0} ms |\n\
         | execute round trip (`1+1`), median | {lr:.1} ms | {rr:.1} ms | {:+.1} ms |\n",
        (rs - ls) * 1000.0,
        rr - lr,
        date = sh("date -u +%Y-%m-%d"),
    );
    write_section(
        concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks.md"),
        "## Remote kernels through the gateway",
        &section,
    );
    eprintln!("wrote docs/benchmarks.md");
}
