//! A hub as the kernel benchmarks drive it: the admin API with the benchmark's service token,
//! the CLI, users with servers, kernels created through the user's Jupyter Server and their
//! channels WebSocket through the proxy, as JupyterLab opens it.

#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub const TOKEN: &str = "bench-admin-token-0123456789abcdef";

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Hub {
    pub http: reqwest::Client,
    pub port: u16,
    pub config: std::path::PathBuf,
}

impl Hub {
    /// The hub `daemon` runs.
    pub fn of(daemon: &super::common::BenchDaemon) -> Hub {
        Hub {
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            port: daemon.port,
            config: daemon.config.clone(),
        }
    }

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
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

    pub fn cli(&self, args: &[&str]) {
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
    pub async fn user_with_server(&self, user: &str) -> String {
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

    pub async fn new_kernel(&self, user: &str, token: &str) -> String {
        self.new_kernel_of(user, token, "python3").await
    }

    /// A kernel of spec `spec`, through the user's server: its id (it may still be starting).
    pub async fn new_kernel_of(&self, user: &str, token: &str, spec: &str) -> String {
        let r = self
            .http
            .post(format!(
                "http://127.0.0.1:{}/user/{user}/api/kernels",
                self.port
            ))
            .header("Authorization", format!("token {token}"))
            .json(&json!({"name": spec}))
            .send()
            .await
            .expect("create kernel");
        assert_eq!(r.status().as_u16(), 201);
        let k: Value = r.json().await.expect("kernel model");
        k["id"].as_str().expect("kernel id").to_string()
    }

    pub async fn delete_kernel(&self, user: &str, token: &str, id: &str) {
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

    pub async fn channels(&self, user: &str, token: &str, id: &str) -> Socket {
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
pub async fn execute(ws: &mut Socket) -> f64 {
    let t0 = Instant::now();
    let msg_id = send_execute(ws, "1+1").await;
    wait_reply(ws, &msg_id, |_| {}).await;
    t0.elapsed().as_secs_f64()
}

/// Send an execute_request for `code`; its msg_id.
pub async fn send_execute(ws: &mut Socket, code: &str) -> String {
    let msg_id = uuid::Uuid::new_v4().to_string();
    let msg = json!({
        "header": {"msg_id": msg_id, "username": "bench", "session": "bench", "msg_type": "execute_request", "version": "5.3", "date": chrono::Utc::now().to_rfc3339()},
        "parent_header": {}, "metadata": {},
        "content": {"code": code, "silent": false, "store_history": false, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true},
        "channel": "shell", "buffers": [],
    });
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .expect("send execute");
    msg_id
}

/// Read until the execute_reply to `msg_id` (within 120 s), showing `seen` every message
/// on the way.
pub async fn wait_reply(ws: &mut Socket, msg_id: &str, mut seen: impl FnMut(&Value)) {
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
        seen(&v);
        if (v["msg_type"] == "execute_reply" || v["header"]["msg_type"] == "execute_reply")
            && v["parent_header"]["msg_id"] == msg_id
        {
            return;
        }
    }
}
