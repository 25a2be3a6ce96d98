//! Proxy benchmark: Orrery's in-process proxy side by side with nginx serving directly (the
//! floor), nginx as a reverse proxy (the fair bar: upstream keep-alive, as Orrery reuses its
//! connections) and configurable-http-proxy (JupyterHub's default proxy, from the npm registry,
//! `bench/proxy/install-chp.sh`), all in front of the same backend, driven by the same load
//! generator (`wrk`, two threads; one for one connection) at 1 and 32 connections, for a tiny response (2 bytes) and a
//! 1 MiB one.
//!
//! The backend is the user's "single-user server" as Orrery starts it: its local backend runs
//! `bench/proxy/backend.sh`, an nginx with one worker serving the files; the other proxies are
//! pointed at the address Orrery's route table holds for it. Each configuration is measured in
//! `ORRERY_BENCH_RUNS` rounds (default 3) of `ORRERY_BENCH_SECS` seconds (default 5), the
//! configurations interleaved within a round; the medians are reported, with the median p99.
//! Writes a section of `docs/benchmarks.md`. Needs `wrk`, `nginx` and `npm`.
//! Run: `cargo bench --bench proxy`.

#[path = "common.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, machine, median, runs, sh, wait_until_answers, write_section};

const TOKEN: &str = "bench-proxy-token-0123456789abcdef";
const USER: &str = "bench";

/// One load run's figures.
#[derive(Debug, Clone, Copy)]
struct Load {
    rps: f64,
    /// Bytes per second of response bodies and headers, as wrk counts them.
    bytes_per_s: f64,
    p99_ms: f64,
}

/// `2.50ms`, `13.1us`, `1.02s` → milliseconds.
fn millis(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => return None,
    })
}

/// `1.17GB`, `305.12MB`, `12.5KB`, `900.00B` → bytes.
fn bytes(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "B" => v,
        "KB" => v * 1024.0,
        "MB" => v * 1024.0 * 1024.0,
        "GB" => v * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    })
}

/// `wrk -t2 -c<conns> -d<secs>s --latency URL` (one thread for one connection), parsed; panics (with wrk's output) on errors
/// or non-2xx answers, so a broken proxy is never measured as a fast one.
fn wrk(url: &str, conns: u32, secs: u64) -> Load {
    let out = Command::new("wrk")
        .args([
            // wrk needs at least one connection per thread.
            &format!("-t{}", conns.min(2)),
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx or 3xx responses") && !text.contains("Socket errors"),
        "errors while loading {url}:\n{text}"
    );
    let field = |label: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label).map(str::trim))
    };
    let rps: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in:\n{text}"));
    let bytes_per_s = field("Transfer/sec:")
        .and_then(bytes)
        .unwrap_or_else(|| panic!("no Transfer/sec in:\n{text}"));
    let p99_ms = field("99%")
        .and_then(millis)
        .unwrap_or_else(|| panic!("no 99% latency in:\n{text}"));
    Load {
        rps,
        bytes_per_s,
        p99_ms,
    }
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx as a reverse proxy to `backend` (`127.0.0.1:port`) on `port`, with upstream
/// keep-alive, two workers (one per core, as nginx's `auto` would pick here).
fn nginx_proxy(dir: &std::path::Path, port: u16, backend: &str) -> Proc {
    let run = dir.join("nginx-proxy");
    std::fs::create_dir_all(&run).expect("dir");
    let r = run.display();
    let conf = format!(
        "worker_processes 2;\npid {r}/nginx.pid;\nerror_log {r}/error.log;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {r}/body;\n  proxy_temp_path {r}/proxy;\n\
           fastcgi_temp_path {r}/fastcgi;\n  uwsgi_temp_path {r}/uwsgi;\n  scgi_temp_path {r}/scgi;\n\
           keepalive_requests 1000000;\n\
           upstream backend {{ server {backend}; keepalive 64; }}\n\
           server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://backend;\n\
               proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering on;\n    }}\n  }}\n}}\n"
    );
    std::fs::write(run.join("nginx.conf"), conf).expect("nginx.conf");
    Proc(
        Command::new("nginx")
            .arg("-c")
            .arg(run.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .spawn()
            .expect("nginx (apt-get install nginx-light)"),
    )
}

/// configurable-http-proxy on `port`, its default route to `backend`'s URL.
fn chp(port: u16, api_port: u16, backend_url: &str) -> Proc {
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/bench/proxy/install-chp.sh"
        ))
        .stderr(Stdio::inherit())
        .output()
        .expect("install configurable-http-proxy");
    assert!(out.status.success(), "bench/proxy/install-chp.sh failed");
    let bin = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Proc(
        Command::new(bin)
            .args([
                "--ip",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--api-ip",
                "127.0.0.1",
                "--api-port",
                &api_port.to_string(),
                "--default-target",
                backend_url,
                "--log-level",
                "error",
            ])
            .env("CONFIGPROXY_AUTH_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .spawn()
            .expect("configurable-http-proxy"),
    )
}

/// The daemon: local backend running `backend.sh`, the culler off, a service token.
fn orrery(dir: &std::path::Path, port: u16) -> Proc {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\naddress = \"127.0.0.1\"\nport = {port}\n[internal]\nport = {}\n[state]\npath = \"{}\"\n\
             [cull]\nenabled = false\n[spawner]\nbackend = \"local\"\nslow_spawn_timeout = \"30s\"\n\
             [spawner.local]\ncmd = [\"sh\", \"{}\", \"{}\"]\nallow_root = true\n\
             [[services]]\nname = \"bench\"\napi_token = \"{TOKEN}\"\nscopes = [\"admin:users\", \"admin:servers\"]\n\
             [users]\nallowed = [\"{USER}\"]\n",
            free_port(),
            dir.join("state").display(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/bench/proxy/backend.sh"),
            dir.display()
        ),
    )
    .expect("config");
    Proc(
        Command::new(env!("CARGO_BIN_EXE_orrery"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("start orrery"),
    )
}

#[tokio::main]
async fn main() {
    let rounds = runs(3);
    let secs: u64 = std::env::var("ORRERY_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let www = dir.path().join("www/user").join(USER);
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("tiny"), b"ok").expect("tiny");
    std::fs::write(www.join("big"), vec![b'x'; 1 << 20]).expect("big");

    // Orrery starts the backend as the user's server; its route table says where it is.
    let hub_port = free_port();
    let _hub = orrery(dir.path(), hub_port);
    let api = format!("http://127.0.0.1:{hub_port}/hub/api");
    wait_until_answers(&format!("{api}/"), 30).await;
    let http = reqwest::Client::new();
    let auth = format!("token {TOKEN}");
    let r = http
        .post(format!("{api}/users/{USER}"))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("create the user");
    assert!(
        r.status().is_success() || r.status().as_u16() == 409,
        "{r:?}"
    );
    let r = http
        .post(format!("{api}/users/{USER}/server"))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("start the server");
    assert!(matches!(r.status().as_u16(), 201 | 202), "{r:?}");
    let mut backend = None;
    for _ in 0..200 {
        let routes: serde_json::Value = http
            .get(format!("{api}/orrery/routes"))
            .header("Authorization", &auth)
            .send()
            .await
            .expect("routes")
            .json()
            .await
            .expect("routes JSON");
        if let Some(t) = routes[0]["target"].as_str() {
            backend = Some(t.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let backend_url = backend.expect("the server became ready");
    let backend_addr = backend_url.trim_start_matches("http://").to_string();

    let nginx_port = free_port();
    let _nginx = nginx_proxy(dir.path(), nginx_port, &backend_addr);
    let chp_port = free_port();
    let _chp = chp(chp_port, free_port(), &backend_url);
    let path = format!("/user/{USER}/");
    let targets = [
        ("nginx serving directly", format!("{backend_url}{path}")),
        (
            "nginx as a reverse proxy",
            format!("http://127.0.0.1:{nginx_port}{path}"),
        ),
        (
            "configurable-http-proxy 5.3.0",
            format!("http://127.0.0.1:{chp_port}{path}"),
        ),
        ("Orrery", format!("http://127.0.0.1:{hub_port}{path}")),
    ];
    for (_, base) in &targets {
        wait_until_answers(&format!("{base}tiny"), 30).await;
        let body = http
            .get(format!("{base}big"))
            .send()
            .await
            .expect("big")
            .bytes()
            .await
            .expect("big body");
        assert_eq!(body.len(), 1 << 20, "{base}big is the whole MiB");
    }

    let cases = [("tiny", 1u32), ("tiny", 32), ("big", 1), ("big", 32)];
    // [case][target] → runs
    let mut results: Vec<Vec<Vec<Load>>> = vec![vec![Vec::new(); targets.len()]; cases.len()];
    for round in 0..rounds {
        for (ci, (file, conns)) in cases.iter().enumerate() {
            for (ti, (name, base)) in targets.iter().enumerate() {
                // Warm-up: connections open, caches hot.
                let _ = wrk(&format!("{base}{file}"), *conns, 1);
                let l = wrk(&format!("{base}{file}"), *conns, secs);
                eprintln!(
                    "round {round} {file} c={conns} {name}: {:.0} req/s, {:.0} MB/s, p99 {:.2} ms",
                    l.rps,
                    l.bytes_per_s / 1e6,
                    l.p99_ms
                );
                results[ci][ti].push(l);
            }
        }
    }
    let med = |v: &[Load], f: fn(&Load) -> f64| median(&mut v.iter().map(f).collect::<Vec<_>>());

    let mut table = String::from(
        "| case | nginx serving directly | nginx as a reverse proxy | configurable-http-proxy | Orrery | Orrery / CHP | Orrery / nginx proxy |\n| --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut summary = Vec::new();
    for (ci, (file, conns)) in cases.iter().enumerate() {
        let r = &results[ci];
        let (label, unit, value): (&str, &str, fn(&Load) -> f64) = if *file == "tiny" {
            ("tiny (2 B)", "req/s", |l| l.rps)
        } else {
            ("1 MiB", "MB/s", |l| l.bytes_per_s / 1e6)
        };
        let v: Vec<f64> = r.iter().map(|runs| med(runs, value)).collect();
        let p99: Vec<f64> = r.iter().map(|runs| med(runs, |l| l.p99_ms)).collect();
        let cell = |i: usize| format!("{:.0} {unit} (p99 {:.2} ms)", v[i], p99[i]);
        table.push_str(&format!(
            "| {label}, c={conns} | {} | {} | {} | {} | {:.1}× | {:.2}× |\n",
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            v[3] / v[2],
            v[3] / v[1]
        ));
        summary.push((label, *conns, v[3] / v[2], v[3] / v[1]));
    }
    let section = format!(
        "## Proxy: Orrery, nginx and configurable-http-proxy side by side\n\n\
         `cargo bench --bench proxy`, {}. Machine: {}. One backend for all — the user's server as \
         Orrery starts it (local backend, `bench/proxy/backend.sh`: nginx, one worker) — and one \
         load generator (`wrk -t2`, on the same machine, so it competes with the proxy for the two \
         cores), {rounds} rounds of {secs} s per configuration, interleaved; medians, with the \
         median p99 latency. nginx as a reverse proxy keeps upstream connections alive (two \
         workers) and buffers as it does by default (a 1 MiB response goes through its temporary \
         file, which is why it trails Orrery there); configurable-http-proxy {} from the npm \
         registry on Node.js {}.\n\n{table}\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        machine(),
        "5.3.0",
        sh("node --version"),
    );
    write_section(
        concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks.md"),
        "## Proxy: Orrery, nginx and configurable-http-proxy side by side",
        &section,
    );
    for (label, conns, vs_chp, vs_nginx) in summary {
        println!("{label} c={conns}: Orrery {vs_chp:.1}× CHP, {vs_nginx:.2}× nginx as a proxy");
    }
}
