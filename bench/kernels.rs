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

use std::process::Command;
use std::time::{Duration, Instant};

use common::{machine, median, runs, sh, test_image, write_section, BenchDaemon};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "bench-admin-token-0123456789abcdef";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Hub {
    http: reqwest::Client,
    port: u16,
    config: std::path::PathBuf,
}

impl Hub {
    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .request(
                method,
                format!("http://127.0.0.1:{}/hub/api{path}", self.port),
            )
            .header("Authorization", format!("token {TOKEN}"));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("hub request");
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    fn cli(&self, args: &[&str]) {
        let ok = Command::new(env!("CARGO_BIN_EXE_orrery"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .status()
            .expect("orrery cli")
            .success();
        assert!(ok, "orrery {args:?} failed");
    }

    /// A user with a ready server; returns an API token of theirs.
    async fn user_with_server(&self, user: &str) -> String {
        let (s, b) = self
            .api(
                reqwest::Method::POST,
                &format!("/users/{user}"),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let (s, t) = self
            .api(
                reqwest::Method::POST,
                &format!("/users/{user}/tokens"),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, 201, "{t}");
        let (s, b) = self
            .api(
                reqwest::Method::POST,
                &format!("/users/{user}/server"),
                None,
            )
            .await;
        assert_eq!(s, 201, "spawn {user}: {b}");
        t["token"].as_str().expect("token").to_string()
    }

    async fn new_kernel(&self, user: &str, token: &str) -> String {
        let r = self
            .http
            .post(format!(
                "http://127.0.0.1:{}/user/{user}/api/kernels",
                self.port
            ))
            .header("Authorization", format!("token {token}"))
            .json(&json!({"name": "python3"}))
            .send()
            .await
            .expect("create kernel");
        assert_eq!(r.status().as_u16(), 201);
        let k: Value = r.json().await.expect("kernel model");
        k["id"].as_str().expect("kernel id").to_string()
    }

    async fn delete_kernel(&self, user: &str, token: &str, id: &str) {
        let _ = self
            .http
            .delete(format!(
                "http://127.0.0.1:{}/user/{user}/api/kernels/{id}",
                self.port
            ))
            .header("Authorization", format!("token {token}"))
            .send()
            .await;
    }

    async fn channels(&self, user: &str, token: &str, id: &str) -> Socket {
        let url = format!(
            "ws://127.0.0.1:{}/user/{user}/api/kernels/{id}/channels?token={token}&session_id={}",
            self.port,
            uuid::Uuid::new_v4()
        );
        let mut req = url.as_str().into_client_request().expect("ws request");
        req.headers_mut()
            .insert("sec-fetch-mode", "websocket".parse().expect("header"));
        req.headers_mut().insert(
            "origin",
            format!("http://127.0.0.1:{}", self.port)
                .parse()
                .expect("header"),
        );
        tokio_tungstenite::connect_async(req)
            .await
            .expect("kernel websocket")
            .0
    }
}

/// Send `1+1` and wait for its execute_reply; seconds taken.
async fn execute(ws: &mut Socket) -> f64 {
    let msg_id = uuid::Uuid::new_v4().to_string();
    let msg = json!({
        "header": {"msg_id": msg_id, "username": "bench", "session": "bench", "msg_type": "execute_request", "version": "5.3", "date": chrono::Utc::now().to_rfc3339()},
        "parent_header": {}, "metadata": {},
        "content": {"code": "1+1", "silent": false, "store_history": false, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true},
        "channel": "shell", "buffers": [],
    });
    let t0 = Instant::now();
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .expect("send execute");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let next = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            ws.next(),
        )
        .await
        .expect("execute_reply within 120 s");
        let Some(Ok(frame)) = next else {
            panic!("kernel websocket closed")
        };
        let text = match frame {
            Message::Text(t) => t.to_string(),
            _ => continue,
        };
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (v["msg_type"] == "execute_reply" || v["header"]["msg_type"] == "execute_reply")
            && v["parent_header"]["msg_id"] == msg_id.as_str()
        {
            return t0.elapsed().as_secs_f64();
        }
    }
}

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
    let hub = Hub {
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        port: daemon.port,
        config: daemon.config.clone(),
    };
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
