//! Spawn benchmark: how long `POST /hub/api/users/{name}/server` takes until the server is
//! ready, and how much of that is the hub's own overhead.
//!
//! For each run the hub spawns a server (timed from the request to the 201). Then the *same*
//! image is started directly through the Docker API with the *same* command, environment,
//! network and security options as the hub's container (copied from it), and timed from create
//! to the same readiness check (`GET <prefix>api` below 500, polled every 25 ms). The hub's
//! overhead is the difference of the medians. Runs alternate which goes first so that drift on a
//! noisy machine does not favour either.
//!
//! Needs a Docker engine and the test image (`tests/images/build.sh`). Writes
//! `docs/benchmarks.md`. Run: `cargo bench --bench spawn` (ORRERY_BENCH_RUNS, default 7).

#[path = "common.rs"]
mod common;

use std::time::{Duration, Instant};

use bollard::container::{
    Config, CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions,
    StartContainerOptions,
};
use bollard::models::HostConfig;
use bollard::Docker;
use common::{machine, median, runs, sh, test_image, write_section, BenchDaemon};

const TOKEN: &str = "bench-admin-token-0123456789abcdef";

async fn wait_ready(http: &reqwest::Client, url: &str, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(url).send().await {
            if r.status().as_u16() < 500 {
                return Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

/// Start the hub's container's twin directly through Docker; returns seconds to ready.
async fn baseline(
    docker: &Docker,
    http: &reqwest::Client,
    hub_container: &str,
    network: &str,
    tag: &str,
) -> f64 {
    let info = docker
        .inspect_container(hub_container, None::<InspectContainerOptions>)
        .await
        .expect("inspect hub container");
    let cfg = info.config.expect("config");
    let hc = info.host_config.expect("host config");
    let env = cfg.env.clone().unwrap_or_default();
    let prefix = env
        .iter()
        .find_map(|e| e.strip_prefix("JUPYTERHUB_SERVICE_PREFIX="))
        .unwrap_or("/")
        .to_string();
    let name = format!("orrery-bench-baseline-{tag}");
    let _ = docker
        .remove_container(
            &name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    let t0 = Instant::now();
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: name.clone(),
                platform: None,
            }),
            Config {
                image: cfg.image.clone(),
                cmd: cfg.cmd.clone(),
                env: Some(env),
                user: cfg.user.clone(),
                host_config: Some(HostConfig {
                    cap_drop: hc.cap_drop.clone(),
                    security_opt: hc.security_opt.clone(),
                    pids_limit: hc.pids_limit,
                    network_mode: Some(network.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create baseline");
    docker
        .start_container(&created.id, None::<StartContainerOptions<String>>)
        .await
        .expect("start baseline");
    let ip = docker
        .inspect_container(&created.id, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|i| i.network_settings)
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(network))
        .and_then(|e| e.ip_address)
        .expect("baseline ip");
    let ready = wait_ready(
        http,
        &format!("http://{ip}:8888{prefix}api"),
        Duration::from_secs(120),
    )
    .await
    .expect("baseline never ready");
    let secs = ready.duration_since(t0).as_secs_f64();
    let _ = docker
        .remove_container(
            &created.id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    secs
}

#[tokio::main]
async fn main() {
    let runs = runs(7);
    let image = test_image();
    let daemon = BenchDaemon::start(
        "orrery-bench",
        &image,
        TOKEN,
        "[\"admin:users\", \"admin:servers\"]",
        "",
    )
    .await;
    let (network, tag) = (daemon.network.clone(), daemon.port.to_string());
    let api = daemon.api();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let docker = Docker::connect_with_local_defaults()
        .expect("docker")
        .negotiate_version()
        .await
        .expect("docker version");

    // One warm-up spawn: first use of the image and network pays one-off costs.
    let mut hub_runs = Vec::new();
    let mut base_runs = Vec::new();
    for i in 0..=runs {
        let user = format!("bench{i}");
        let r = http
            .post(format!("{api}/users/{user}"))
            .header("Authorization", format!("token {TOKEN}"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("create user");
        assert!(r.status().is_success(), "create user: {}", r.status());
        let spawn = |http: reqwest::Client, api: String, user: String| async move {
            let t0 = Instant::now();
            let r = http
                .post(format!("{api}/users/{user}/server"))
                .header("Authorization", format!("token {TOKEN}"))
                .send()
                .await
                .expect("spawn");
            assert_eq!(
                r.status().as_u16(),
                201,
                "spawn {user}: {}",
                r.text().await.unwrap_or_default()
            );
            t0.elapsed().as_secs_f64()
        };
        let container = format!("orrery-{user}");
        let (h, b) = if i % 2 == 0 {
            let h = spawn(http.clone(), api.clone(), user.clone()).await;
            let b = baseline(&docker, &http, &container, &network, &tag).await;
            (h, b)
        } else {
            // Baseline first needs the hub's container's settings: spawn, copy, stop, then time
            // the baseline, then time a fresh hub spawn.
            let _ = spawn(http.clone(), api.clone(), user.clone()).await;
            let b = baseline(&docker, &http, &container, &network, &tag).await;
            let _ = http
                .delete(format!("{api}/users/{user}/server"))
                .header("Authorization", format!("token {TOKEN}"))
                .send()
                .await;
            let h = spawn(http.clone(), api.clone(), user.clone()).await;
            (h, b)
        };
        let _ = http
            .delete(format!("{api}/users/{user}/server"))
            .header("Authorization", format!("token {TOKEN}"))
            .send()
            .await;
        if i == 0 {
            eprintln!("warm-up: hub {h:.3}s, direct {b:.3}s");
            continue;
        }
        eprintln!(
            "run {i}: hub spawn {h:.3}s, direct container {b:.3}s, difference {:+.0} ms",
            (h - b) * 1000.0
        );
        hub_runs.push(h);
        base_runs.push(b);
    }
    drop(daemon);

    let (mut h, mut b) = (hub_runs.clone(), base_runs.clone());
    let (mh, mb) = (median(&mut h), median(&mut b));
    let overhead_ms = (mh - mb) * 1000.0;
    let mut diffs: Vec<f64> = hub_runs
        .iter()
        .zip(&base_runs)
        .map(|(h, b)| (h - b) * 1000.0)
        .collect();
    let median_pair = median(&mut diffs);
    println!("spawn latency median {mh:.3}s; direct container median {mb:.3}s; hub overhead {overhead_ms:.0} ms (median of paired differences {median_pair:.0} ms); ratio {:.3}", mh / mb);

    let machine = machine();
    let mut rows = String::new();
    for (i, (h, b)) in hub_runs.iter().zip(&base_runs).enumerate() {
        rows.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:+.0} |\n",
            i + 1,
            h,
            b,
            (h - b) * 1000.0
        ));
    }
    let section = format!(
        "## Spawn latency and hub overhead\n\n\
         Measured {date} on {machine}, image `{image}`, {runs} runs after one warm-up, \
         alternating which side goes first. `cargo bench --bench spawn` regenerates this section.\n\n\
         * **Hub spawn**: `POST /hub/api/users/{{name}}/server` until it answers 201 (server ready: \
         `GET <prefix>api` below 500). Includes token and OAuth client creation, the home volume, \
         image inspection, container create/start and the readiness poll.\n\
         * **Direct container**: the same image, command, environment, network and security options, \
         created and started through the Docker API by the benchmark itself, until the same readiness check.\n\n\
         | run | hub spawn (s) | direct container (s) | difference (ms) |\n| --- | --- | --- | --- |\n{rows}\n\
         **Medians: hub spawn {mh:.3} s, direct container {mb:.3} s: the hub's overhead is {overhead_ms:.0} ms \
         (median of the paired differences: {median_pair:.0} ms; ratio {:.3}).** Target: under 100 ms.\n",
        mh / mb,
        date = sh("date -u +%Y-%m-%d"),
    );
    write_section(
        concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks.md"),
        "## Spawn latency and hub overhead",
        &section,
    );
    eprintln!("wrote docs/benchmarks.md");
}
