//! GPU handover benchmark, on the real path: Orrery's gateway, kernels in containers, the
//! user's Jupyter Server and the proxy, with the fake NVML (one GPU; `tests/nvml/fake_nvml.c`)
//! and the engine's no-op NVIDIA hook, as in the tests.
//!
//! * **Handover**: kernel A holds the only unit; kernel B waits with a cell (`1+1`) held and
//!   told its place. A is shut down (its unit released when the DELETE answers, as a reclaim
//!   releases it); measured from that answer to B's `execute_reply`: the scheduler's wake-up,
//!   the grant, B's container start and the held cell's run.
//! * **Plain start**, side by side: a GPU kernel created while the unit is free, from the create
//!   request to its first `execute_reply` (the floor a handover cannot beat: it has to start a
//!   container too).
//!
//! Medians of `ORRERY_BENCH_RUNS` (default 7) rounds after one warm-up. Writes a section of
//! `docs/benchmarks.md`. Run: `cargo bench --bench gpu_handover`.

#[path = "common.rs"]
mod common;
#[path = "hub.rs"]
mod hub;

use std::time::Instant;

use common::{fake_nvml, machine, median, runs, sh, test_image, write_section, BenchDaemon};
use hub::{execute, send_execute, wait_reply, Hub, TOKEN};

const USER: &str = "gpu";

/// One handover: A holds, B waits with a held cell, A goes; seconds from A's unit being
/// released to B's reply.
async fn handover(hub: &Hub, token: &str) -> f64 {
    let a = hub.new_kernel_of(USER, token, "gpu").await;
    let mut wa = hub.channels(USER, token, &a).await;
    execute(&mut wa).await;
    let b = hub.new_kernel_of(USER, token, "gpu").await;
    let mut wb = hub.channels(USER, token, &b).await;
    let cell = send_execute(&mut wb, "1+1").await;
    // Wait until B's cell is told it waits: B is in the queue, its cell held.
    let mut waiting = false;
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while !waiting {
        assert!(Instant::now() < deadline, "B never said it waits");
        let next = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            futures::StreamExt::next(&mut wb),
        )
        .await;
        if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) = next {
            waiting = t.contains("waiting for a GPU");
        }
    }
    let _ = wa.close(None).await;
    hub.delete_kernel(USER, token, &a).await;
    let t0 = Instant::now();
    wait_reply(&mut wb, &cell, |_| {}).await;
    let took = t0.elapsed().as_secs_f64();
    let _ = wb.close(None).await;
    hub.delete_kernel(USER, token, &b).await;
    took
}

/// A GPU kernel started while its unit is free: create → first execute_reply.
async fn plain_start(hub: &Hub, token: &str) -> f64 {
    let t0 = Instant::now();
    let k = hub.new_kernel_of(USER, token, "gpu").await;
    let mut ws = hub.channels(USER, token, &k).await;
    execute(&mut ws).await;
    let took = t0.elapsed().as_secs_f64();
    let _ = ws.close(None).await;
    hub.delete_kernel(USER, token, &k).await;
    took
}

#[tokio::main]
async fn main() {
    let runs = runs(7);
    let image = test_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let nvml_state = dir.path().join("nvml-state");
    std::fs::write(
        &nvml_state,
        "gpu GPU-bench000-0000-0000-0000-000000000001 85899345920 0 0 0 - NVIDIA A100\n",
    )
    .expect("fake NVML state");
    let extra = format!(
        "[kernels]\nremote = true\n[[kernels.specs]]\nname = \"gpu\"\ndisplay_name = \"Python (GPU)\"\ngpus = 1\n\
         [gpu]\nnvml_library = \"{}\"\nidle_after = \"1h\"\n[gpu.quota]\nper_user = 2\n",
        fake_nvml().display()
    );
    let daemon = BenchDaemon::start_with_env(
        "orrery-gbench",
        &image,
        TOKEN,
        "[\"admin:users\", \"admin:servers\", \"tokens\"]",
        &extra,
        &[("FAKE_NVML_STATE", nvml_state.to_str().unwrap_or_default())],
    )
    .await;
    let hub = Hub::of(&daemon);
    let token = hub.user_with_server(USER).await;
    handover(&hub, &token).await; // warm-up
    plain_start(&hub, &token).await;
    let (mut handovers, mut starts) = (Vec::new(), Vec::new());
    for i in 0..runs {
        if i % 2 == 0 {
            handovers.push(handover(&hub, &token).await);
            starts.push(plain_start(&hub, &token).await);
        } else {
            starts.push(plain_start(&hub, &token).await);
            handovers.push(handover(&hub, &token).await);
        }
        eprintln!(
            "round {}: handover {:.3}s, plain start {:.3}s",
            i + 1,
            handovers[i],
            starts[i]
        );
    }
    let _ = hub
        .api(
            reqwest::Method::DELETE,
            &format!("/users/{USER}/server"),
            None,
        )
        .await;
    drop(daemon);
    let (h, s) = (median(&mut handovers.clone()), median(&mut starts.clone()));
    println!("handover {h:.3}s, plain GPU kernel start {s:.3}s");
    let rows: String = handovers
        .iter()
        .zip(&starts)
        .enumerate()
        .map(|(i, (h, s))| format!("| {} | {h:.3} | {s:.3} |\n", i + 1))
        .collect();
    let section = format!(
        "## GPU handover: a waiting kernel's first reply\n\n\
         Measured {date} on {machine}, image `{image}`, on the real path (gateway, kernel containers, the user's \
         Jupyter Server and the proxy) with the fake NVML (one GPU) and the engine's no-op NVIDIA hook; {runs} rounds \
         after one warm-up, alternating which goes first. `cargo bench --bench gpu_handover` regenerates this section.\n\n\
         * **Handover**: kernel A holds the only unit; kernel B waits, its cell (`1+1`) held and told its place. \
         A is shut down, which releases its unit as a reclaim does; timed from the DELETE's answer to B's \
         `execute_reply` (scheduler wake-up, grant, B's container start, the held cell's run).\n\
         * **Plain start**: a GPU kernel created while the unit is free, from the create request to its first \
         `execute_reply`.\n\n\
         | round | handover (s) | plain start (s) |\n| --- | --- | --- |\n{rows}\n\
         **Medians: handover {h:.3} s, plain GPU kernel start {s:.3} s (ratio {:.2}).** A waiting cell runs \
         about one container start after the unit frees.\n",
        h / s,
        date = sh("date -u +%Y-%m-%d"),
        machine = machine(),
    );
    write_section(
        concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks.md"),
        "## GPU handover: a waiting kernel's first reply",
        &section,
    );
    eprintln!("wrote docs/benchmarks.md");
}
