//! The kernel gateway's logic, in-process and without Docker: errors keep their kind (the
//! client's mistakes are 4xx, Orrery's own failures 5xx with the cause), and, with the local
//! kernel runtime (ipykernel processes from the test venv), execute, interrupt, restart, death,
//! idle reclaim and re-creation, and adoption by the next run. The Docker tests
//! (`gateway_e2e.rs`) cover the same logic on the container runtime.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use orrery::config::{BackendKind, Config};
use orrery::hub::Hub;
use orrery::state::{Store, TokenKind, TokenOwner, UserRecord};
use serde_json::{json, Value};
use tower::ServiceExt;

/// A hub with remote kernels on, user `alice`, and alice's gateway token.
fn gateway_hub() -> (Arc<Hub>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut cfg = Config::default();
    cfg.kernels.remote = true;
    cfg.spawner.backend = BackendKind::Local;
    let backend = Arc::new(orrery::spawner::local::LocalBackend::new(vec![], false));
    let hub = Arc::new(Hub::new(cfg, None, store, backend, "x".into()));
    assert!(hub
        .store
        .create_user(&UserRecord::new("alice"))
        .expect("user"));
    let (token, _) = hub
        .issue_token(
            TokenOwner::User("alice".into()),
            TokenKind::Gateway,
            vec![],
            "gateway",
            None,
        )
        .expect("token");
    (hub, token, dir)
}

async fn call(
    hub: &Arc<Hub>,
    method: Method,
    path: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    let router = orrery::gateway::router(hub.gateway.clone());
    let req = Request::builder()
        .method(method)
        .uri(format!("/hub/gateway{path}"))
        .header(header::AUTHORIZATION, format!("token {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = router.oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_failing_state_directory_is_a_500_with_its_cause_not_the_clients_fault() {
    let (hub, token, dir) = gateway_hub();
    // Where kernel connection directories go, a file: Orrery cannot write there.
    std::fs::write(dir.path().join("kernels"), b"not a directory").expect("block kernels/");
    let (status, body) = call(&hub, Method::POST, "/api/kernels", &token, json!({})).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let message = body["message"].as_str().unwrap_or("");
    assert!(
        message.contains("writing the kernel's connection file"),
        "names what failed: {body}"
    );
    assert!(
        message.len() > "writing the kernel's connection file: ".len(),
        "and why: {body}"
    );
    assert!(
        hub.gateway.kernels_of("alice").is_empty(),
        "no kernel is left registered"
    );

    // The client's mistakes stay 4xx.
    let (status, body) = call(
        &hub,
        Method::POST,
        "/api/kernels",
        &token,
        json!({"env": {"KERNEL_WORKING_DIR": "../../etc"}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = call(
        &hub,
        Method::POST,
        "/api/kernels",
        &token,
        json!({"name": "nope"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = call(
        &hub,
        Method::GET,
        "/api/kernels/some-id",
        &token,
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(
        &hub,
        Method::GET,
        "/api/kernels",
        "not-a-token",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "Forbidden");
}

// ---------------------------------------------------------------------------------------------
// The gateway's logic with the local kernel runtime: real ipykernel processes, no Docker.
// ---------------------------------------------------------------------------------------------

/// A user with a running server (kernels are taken back at a restart only while their
/// user's server runs) and a gateway token, which this returns.
fn add_user(hub: &Hub, name: &str) -> String {
    assert!(hub.store.create_user(&UserRecord::new(name)).unwrap());
    hub.store
        .put_server(&orrery::state::ServerRecord {
            user: name.into(),
            name: String::new(),
            url: Some("http://127.0.0.1:9".into()),
            started: Some(chrono::Utc::now()),
            last_activity: None,
            pending: None,
            ready: true,
            user_options: json!({}),
            display_name: None,
            backend_state: Value::Null,
            token_id: None,
            environment: None,
        })
        .unwrap();
    hub.issue_token(
        TokenOwner::User(name.into()),
        TokenKind::Gateway,
        vec![],
        "gateway",
        None,
    )
    .unwrap()
    .0
}

/// A hub whose kernels are ipykernel processes from the test venv, with the gateway served on
/// a loopback port and its loops running: (hub, gateway URL, alice's gateway token, stop).
struct LocalGateway {
    hub: Arc<Hub>,
    url: String,
    token: String,
    stop: tokio_util::sync::CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl LocalGateway {
    async fn start(state: &std::path::Path, token: Option<String>) -> LocalGateway {
        let python = crate::common::python();
        let mut cfg = Config::default();
        cfg.kernels.remote = true;
        cfg.kernels.cull_interval = orrery::config::Duration::from_secs(1);
        cfg.spawner.backend = BackendKind::Local;
        let argv: Vec<String> = [
            python.as_str(),
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
        ]
        .map(String::from)
        .to_vec();
        cfg.kernels.specs = vec![
            orrery::config::KernelSpec {
                name: "py".into(),
                display_name: "Python (local)".into(),
                argv: argv.clone(),
                ..Default::default()
            },
            orrery::config::KernelSpec {
                name: "gpu".into(),
                display_name: "Python with a GPU (local)".into(),
                argv,
                gpus: 1,
                ..Default::default()
            },
        ];
        // GPUs come from the fake NVML; only the GPU test gives it any (FAKE_NVML_STATE).
        cfg.gpu.nvml_library = crate::gpu::fake_nvml().display().to_string();
        let store = Store::open(state).expect("store");
        let backend = Arc::new(orrery::spawner::local::LocalBackend::new(vec![], false));
        let hub = Arc::new(Hub::new(cfg, None, store, backend, "x".into()));
        assert_eq!(hub.gateway.services.runtime.name(), "local");
        let token = match token {
            Some(t) => t,
            None => add_user(&hub, "alice"),
        };
        hub.gateway.adopt().await;
        let stop = tokio_util::sync::CancellationToken::new();
        let tasks = tokio_util::task::TaskTracker::new();
        hub.gateway.run_loops(&tasks, &stop);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hub/gateway", listener.local_addr().unwrap());
        let router = orrery::gateway::router(hub.gateway.clone());
        let until = stop.clone();
        tasks.spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await
                .unwrap();
        });
        LocalGateway {
            hub,
            url,
            token,
            stop,
            tasks,
        }
    }

    /// Stop the loops and the listener and drop the hub, as a daemon's shutdown does; the
    /// kernel processes keep running.
    async fn shut_down(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        // WebSocket bridges end on their own once their clients are gone; the state database
        // is free once nothing but the hub holds the gateway.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&self.hub.gateway) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway is still in use"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        drop(self.hub);
    }

    async fn http(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.http_as(&self.token, method, path, body).await
    }

    /// A request with another user's gateway token.
    async fn http_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .header("Authorization", format!("token {token}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn model(&self, id: &str) -> Value {
        self.model_as(&self.token, id).await
    }

    async fn model_as(&self, token: &str, id: &str) -> Value {
        let (status, model) = self
            .http_as(
                token,
                reqwest::Method::GET,
                &format!("/api/kernels/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{model}");
        model
    }

    /// Wait until the kernel's model says `state` (within `secs`); returns the model.
    async fn wait_state(&self, id: &str, state: &str, secs: u64) -> Value {
        self.wait_state_as(&self.token, id, state, secs).await
    }

    /// [`Self::wait_state`] for another user's kernel.
    async fn wait_state_as(&self, token: &str, id: &str, state: &str, secs: u64) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let m = self.model_as(token, id).await;
            if m["execution_state"] == state {
                return m;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "kernel never {state}: {m}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    async fn create(&self) -> String {
        let id = self.create_spec("py").await;
        self.wait_state(&id, "idle", 60).await;
        id
    }

    /// Ask for a kernel of spec `name`; returns its id at once (it starts in the background).
    async fn create_spec(&self, name: &str) -> String {
        self.create_spec_as(&self.token, name).await
    }

    /// [`Self::create_spec`] with another user's gateway token.
    async fn create_spec_as(&self, token: &str, name: &str) -> String {
        let (status, model) = self
            .http_as(
                token,
                reqwest::Method::POST,
                "/api/kernels",
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(status, 201, "{model}");
        model["id"].as_str().unwrap().to_string()
    }

    /// Shut kernel `id` down (as Jupyter Server does), expecting 204.
    async fn delete(&self, id: &str) {
        let (status, body) = self
            .http(reqwest::Method::DELETE, &format!("/api/kernels/{id}"), None)
            .await;
        assert_eq!(status, 204, "delete {id}: {body}");
    }

    /// The GPU units leased to kernels, as (unit, kernel id), sorted.
    fn leases(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .hub
            .store
            .leases()
            .unwrap()
            .into_iter()
            .filter_map(|l| Some((l.unit.clone(), l.holder.kernel()?.to_string())))
            .collect();
        v.sort();
        v
    }

    /// Run `code` over the channels WebSocket; returns what it printed (stdout and stderr, in
    /// order) and the reply's status.
    async fn execute(&self, id: &str, code: &str) -> (String, String) {
        self.execute_within(id, code, 60).await
    }

    /// As [`LocalGateway::execute`], giving up on the reply after `secs` (a kernel that exits
    /// sends none).
    async fn execute_within(&self, id: &str, code: &str, secs: u64) -> (String, String) {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::Message;
        let ws_url = format!(
            "{}/api/kernels/{id}/channels",
            self.url.replacen("http", "ws", 1)
        );
        let mut req = ws_url.into_client_request().unwrap();
        req.headers_mut().insert(
            "Authorization",
            format!("token {}", self.token).parse().unwrap(),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let msg_id = uuid::Uuid::new_v4().to_string();
        let request = json!({
            "header": {"msg_id": msg_id, "username": "alice", "session": "s", "msg_type": "execute_request",
                       "version": "5.3", "date": chrono::Utc::now().to_rfc3339()},
            "parent_header": {}, "metadata": {}, "buffers": [], "channel": "shell",
            "content": {"code": code, "silent": false, "store_history": true, "user_expressions": {},
                        "allow_stdin": false, "stop_on_error": true},
        });
        ws.send(Message::Text(request.to_string().into()))
            .await
            .unwrap();
        let mut output = String::new();
        let reply = tokio::time::timeout(std::time::Duration::from_secs(secs), async {
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(text) = m else { continue };
                let v: Value = serde_json::from_str(text.as_str()).unwrap();
                if v["parent_header"]["msg_id"] != msg_id.as_str() {
                    continue;
                }
                match v["header"]["msg_type"].as_str().unwrap_or("") {
                    "stream" => output.push_str(v["content"]["text"].as_str().unwrap_or("")),
                    "error" => output.push_str(v["content"]["ename"].as_str().unwrap_or("")),
                    "execute_reply" => {
                        return v["content"]["status"].as_str().unwrap_or("").to_string()
                    }
                    _ => {}
                }
            }
            String::new()
        })
        .await
        .unwrap_or_default();
        (output, reply)
    }
}

/// The kernel's process id, from its pid file.
fn kernel_pid(state: &std::path::Path, id: &str) -> i32 {
    std::fs::read_to_string(state.join("kernels").join(id).join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

/// A process with a pid file in `<state>/kernels/<name>/`, as a kernel without a record looks.
fn start_stray(state: &std::path::Path, name: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let dir = state.join("kernels").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let child = std::process::Command::new("sleep")
        .arg("300")
        .process_group(0)
        .spawn()
        .unwrap();
    std::fs::write(dir.join("pid"), child.id().to_string()).unwrap();
    child
}

/// Wait (at most `secs`) until process `pid` is gone; `what` names it if it is not.
async fn wait_gone(pid: i32, secs: u64, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while process_alive(pid) {
        assert!(std::time::Instant::now() < deadline, "{what} still runs");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn local_kernels_execute_interrupt_restart_die_and_are_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let gw = LocalGateway::start(dir.path(), None).await;
    let id = gw.create().await;
    let (out, status) = gw.execute(&id, "x = 41\nprint(x + 1)").await;
    assert_eq!((out.as_str(), status.as_str()), ("42\n", "ok"));

    // Interrupt: SIGINT reaches the kernel's process.
    let slow = {
        let gw_url = gw.url.clone();
        let token = gw.token.clone();
        let id = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            reqwest::Client::new()
                .post(format!("{gw_url}/api/kernels/{id}/interrupt"))
                .header("Authorization", format!("token {token}"))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let (out, status) = gw.execute(&id, "import time\ntime.sleep(60)").await;
    assert_eq!(slow.await.unwrap(), 204);
    assert_eq!(status, "error", "{out}");
    assert!(out.contains("KeyboardInterrupt"), "{out}");

    // Restart: the same id, a new process, the state reset.
    let before = kernel_pid(dir.path(), &id);
    let (status, model) = gw
        .http(
            reqwest::Method::POST,
            &format!("/api/kernels/{id}/restart"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{model}");
    gw.wait_state(&id, "idle", 60).await;
    let after = kernel_pid(dir.path(), &id);
    assert_ne!(before, after, "a new process");
    assert!(!process_alive(before), "the old process is gone");
    let (out, _) = gw.execute(&id, "print('x' in dir())").await;
    assert_eq!(out, "False\n");

    // Death: the process exits; the monitor reports it with the reason; a restart brings it back.
    let _ = gw.execute_within(&id, "import os\nos._exit(3)", 2).await;
    let dead = gw.wait_state(&id, "dead", 30).await;
    assert!(
        dead["reason"]
            .as_str()
            .unwrap_or("")
            .contains("exited with code 3"),
        "{dead}"
    );
    let (status, _) = gw
        .http(
            reqwest::Method::POST,
            &format!("/api/kernels/{id}/restart"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    gw.wait_state(&id, "idle", 60).await;
    let (out, _) = gw.execute(&id, "y = 7\nprint(y)").await;
    assert_eq!(out, "7\n");

    // Reclaim: idle past its timeout, the kernel loses its process but stays listed; the next
    // execute starts a new one behind the same id and says the state was reset.
    let pid = kernel_pid(dir.path(), &id);
    let mut cfg = gw.hub.config().as_ref().clone();
    cfg.kernels.idle_timeout = orrery::config::Duration::from_secs(1);
    gw.hub.set_config(cfg);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while process_alive(pid) {
        assert!(std::time::Instant::now() < deadline, "never reclaimed");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (status, list) = gw.http(reqwest::Method::GET, "/api/kernels", None).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["id"], id.as_str(), "still listed: {list}");
    assert_eq!(gw.hub.gateway.counts().reclaimed, 1);
    let mut cfg = gw.hub.config().as_ref().clone();
    cfg.kernels.idle_timeout = orrery::config::Duration::from_secs(0);
    gw.hub.set_config(cfg);
    let (out, status) = gw.execute(&id, "print('y' in dir())").await;
    assert_eq!(status, "ok");
    assert!(out.contains("kernel was reclaimed after"), "{out}");
    assert!(out.ends_with("False\n"), "{out}");
    assert_ne!(
        kernel_pid(dir.path(), &id),
        pid,
        "a new process behind the same id"
    );

    gw.delete(&id).await;
    gw.shut_down().await;
}

#[tokio::test]
async fn local_kernels_are_adopted_with_their_state_and_strays_removed() {
    let dir = tempfile::tempdir().unwrap();
    let gw = LocalGateway::start(dir.path(), None).await;
    let id = gw.create().await;
    let (out, _) = gw.execute(&id, "x = 41\nprint('set')").await;
    assert_eq!(out, "set\n");
    let pid = kernel_pid(dir.path(), &id);
    let token = gw.token.clone();
    gw.shut_down().await;
    assert!(process_alive(pid), "kernels outlive the daemon");

    // A process in the kernels directory without a record: a stray to remove.
    let mut stray = start_stray(dir.path(), "stray");
    let stray_dir = dir.path().join("kernels").join("stray");

    // The next run takes the kernel back, state and all.
    let gw = LocalGateway::start(dir.path(), Some(token)).await;
    let model = gw.wait_state(&id, "idle", 30).await;
    assert_eq!(model["id"], id.as_str());
    let (out, status) = gw.execute(&id, "print(x)").await;
    assert_eq!((out.as_str(), status.as_str()), ("41\n", "ok"));
    assert_eq!(kernel_pid(dir.path(), &id), pid, "the same process");
    wait_gone(
        stray.id() as i32,
        10,
        "the stray kernel process is still running",
    )
    .await;
    assert!(!stray_dir.exists(), "and its directory is gone");
    let _ = stray.wait();
    gw.delete(&id).await;
    gw.shut_down().await;
    wait_gone(pid, 10, "deleting the kernel ends its process").await;
}

/// The kernel reconcile loop: a kernel process the gateway has no record of is removed within
/// two passes (here one a second), and a kernel of the gateway's own is left alone.
#[tokio::test]
async fn a_kernel_without_a_record_is_removed_by_the_reconcile_loop() {
    let dir = tempfile::tempdir().unwrap();
    let gw = LocalGateway::start(dir.path(), None).await;
    let mut cfg = gw.hub.config().as_ref().clone();
    cfg.spawner.reconcile_interval = orrery::config::Duration::from_secs(1);
    gw.hub.set_config(cfg);
    let id = gw.create().await;
    let mut stray = start_stray(dir.path(), "no-record");
    let stray_dir = dir.path().join("kernels").join("no-record");
    wait_gone(stray.id() as i32, 15, "the unrecorded kernel still runs").await;
    let _ = stray.wait();
    assert!(!stray_dir.exists());
    assert!(
        process_alive(kernel_pid(dir.path(), &id)),
        "the gateway's own kernel runs on"
    );
    gw.wait_state(&id, "idle", 5).await;
    gw.delete(&id).await;
    gw.shut_down().await;
}

/// The fake NVML's state file is named by a variable of this process: one GPU test at a time.
static NVML_ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A test directory with the fake NVML's state file showing `gpus` (its lines), and this
/// process's turn at the fake: (dir, state file, the guard to hold for the whole test).
async fn fake_gpus(
    gpus: &str,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    tokio::sync::MutexGuard<'static, ()>,
) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nvml-state");
    std::fs::write(&state, gpus).unwrap();
    let guard = NVML_ENV.lock().await;
    std::env::set_var("FAKE_NVML_STATE", &state);
    (dir, state, guard)
}

/// GPU kernels on the fake NVML: each holds its own unit and sees only it, a non-GPU kernel
/// sees none ("void"), a unit busy with a process Orrery did not start is never handed out,
/// a kernel that cannot get a unit is dead with the reason, units come back when a kernel is
/// deleted or dies, and the leases survive a restart of the gateway matching the kernels that
/// still run.
#[tokio::test]
async fn gpu_kernels_hold_their_own_units_and_give_them_back() {
    // GPU-cccc runs a live process Orrery did not start (this test's own).
    let (dir, _state, _nvml) = fake_gpus(&format!(
        "gpu GPU-aaaa 85899345920 0 0 0 - NVIDIA A100\n\
         gpu GPU-bbbb 85899345920 0 0 0 - NVIDIA A100\n\
         gpu GPU-cccc 85899345920 1073741824 90 10 - NVIDIA A100\n\
         proc GPU-cccc {} 1073741824\n",
        std::process::id()
    ))
    .await;
    let hub_state = dir.path().join("hub");
    let gw = LocalGateway::start(&hub_state, None).await;
    let set_quota = |gw: &LocalGateway, n: u32| {
        let mut cfg = gw.hub.config().as_ref().clone();
        cfg.gpu.quota.per_user = n;
        gw.hub.set_config(cfg);
    };
    set_quota(&gw, 3);
    let visible = "import os\nprint(os.environ['NVIDIA_VISIBLE_DEVICES'], repr(os.environ.get('CUDA_VISIBLE_DEVICES')))";

    let k1 = gw.create_spec("gpu").await;
    gw.wait_state(&k1, "idle", 60).await;
    let (out, _) = gw.execute(&k1, visible).await;
    assert_eq!(out, "GPU-aaaa 'GPU-aaaa'\n");
    let k2 = gw.create_spec("gpu").await;
    gw.wait_state(&k2, "idle", 60).await;
    let (out, _) = gw.execute(&k2, visible).await;
    assert_eq!(out, "GPU-bbbb 'GPU-bbbb'\n");
    let plain = gw.create().await;
    let (out, _) = gw.execute(&plain, visible).await;
    assert_eq!(out, "void ''\n", "a kernel without GPUs sees none");
    assert_eq!(
        gw.leases(),
        [
            ("GPU-aaaa".to_string(), k1.clone()),
            ("GPU-bbbb".to_string(), k2.clone())
        ]
    );

    // GPU-cccc runs someone else's process: it is not handed out, so k3 waits.
    let k3 = gw.create_spec("gpu").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gw.hub.gateway.ahead_of(&k3).is_none() {
        assert!(std::time::Instant::now() < deadline, "k3 never queued");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(gw.model(&k3).await["execution_state"], "idle");

    // Deleting k1 gives GPU-aaaa back; the waiting k3 gets it.
    gw.delete(&k1).await;
    let (out, status) = gw.execute(&k3, visible).await;
    assert_eq!(status, "ok", "{out}");
    assert!(out.ends_with("GPU-aaaa 'GPU-aaaa'\n"), "{out}");

    // An admin sees the units and who holds them.
    let body: Value = serde_json::from_str(&gw.admin_get("/hub/api/orrery/gpus").await).unwrap();
    assert_eq!(
        body["inventory"]["units"].as_array().map(Vec::len),
        Some(3),
        "{body}"
    );
    let held: Vec<(&str, &str)> = body["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["unit"].as_str().unwrap(),
                l["holder"]["id"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(held.contains(&("GPU-aaaa", k3.as_str())), "{body}");

    // The metrics show the units and the unit-seconds held by idle kernels (the monitor adds
    // them every 3 s; k2 and k3 sit idle).
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let metrics = gw.admin_get("/hub/metrics").await;
    for line in [
        "orrery_gpu_leased{unit=\"GPU-aaaa\"} 1",
        "orrery_gpu_leased{unit=\"GPU-bbbb\"} 1",
        "orrery_gpu_leased{unit=\"GPU-cccc\"} 0",
        "orrery_gpu_utilization_percent{unit=\"GPU-cccc\"} 90",
        "orrery_gpu_memory_total_bytes{unit=\"GPU-cccc\"} 85899345920",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    let idle: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("orrery_gpu_idle_leased_seconds_total "))
        .and_then(|v| v.parse().ok())
        .expect("the idle-leased counter");
    assert!(idle >= 3.0, "idle GPU-seconds: {idle}");

    // The quota counts what the user holds: with 1, a second GPU kernel is refused.
    set_quota(&gw, 1);
    let over = gw.create_spec("gpu").await;
    let dead = gw.wait_state(&over, "dead", 30).await;
    let reason = dead["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("GPU quota")
            && reason.contains("alice holds 2 GPU unit(s) and waits for 0")
            && reason.contains("gpu.quota.per_user is 1"),
        "{dead}"
    );
    gw.delete(&over).await;

    // A kernel that dies gives its unit back.
    let _ = gw.execute_within(&k2, "import os\nos._exit(3)", 2).await;
    gw.wait_state(&k2, "dead", 30).await;
    assert_eq!(gw.leases(), [("GPU-aaaa".to_string(), k3.clone())]);

    // After a restart of the gateway the leases match the kernels still running.
    let token = gw.token.clone();
    gw.shut_down().await;
    let gw = LocalGateway::start(&hub_state, Some(token)).await;
    assert_eq!(gw.leases(), [("GPU-aaaa".to_string(), k3.clone())]);
    gw.wait_state(&k3, "idle", 30).await;
    for id in [&k2, &k3, &plain] {
        gw.delete(id).await;
    }
    assert!(gw.leases().is_empty(), "every unit is back");
    gw.shut_down().await;
}

/// `[[gpu.groups]]`: a member of a group with priority 10 goes ahead of kernels that came
/// earlier (and stays ahead while holding more units than they do), the group's quota of 2
/// lets its member hold two units while others are held to `gpu.quota.per_user` = 1, and each
/// refusal names the quota that applied.
#[tokio::test]
async fn a_priority_group_goes_first_and_its_quota_lets_a_member_hold_two() {
    let (dir, _state, _nvml) = fake_gpus(
        "gpu GPU-p1 85899345920 0 0 0 - NVIDIA A100\ngpu GPU-p2 85899345920 0 0 0 - NVIDIA A100\n",
    )
    .await;
    let gw = LocalGateway::start(&dir.path().join("hub"), None).await;
    gw.configure(|cfg| {
        cfg.gpu.quota.per_user = 1;
        cfg.groups = vec![orrery::config::GroupConfig {
            name: "tas".into(),
            users: vec!["tina".into()],
            ..Default::default()
        }];
        cfg.gpu.groups = vec![orrery::config::GpuGroup {
            name: "tas".into(),
            priority: 10,
            quota: Some(2),
        }];
    });
    let carol = add_user(&gw.hub, "carol");
    let dave = add_user(&gw.hub, "dave");
    let tina = add_user(&gw.hub, "tina");
    let unit_of = |gw: &LocalGateway, kernel: &str| {
        gw.leases()
            .into_iter()
            .find(|(_, k)| k == kernel)
            .map(|(u, _)| u)
    };

    // Both units held by users outside the group; dave then tina wait.
    let a1 = gw.create_spec("gpu").await;
    gw.wait_state(&a1, "idle", 60).await;
    let c1 = gw.create_spec_as(&carol, "gpu").await;
    gw.wait_state_as(&carol, &c1, "idle", 60).await;
    let d1 = gw.create_spec_as(&dave, "gpu").await;
    gw.wait_queued(&d1, 0).await;
    let t1 = gw.create_spec_as(&tina, "gpu").await;
    gw.wait_queued(&t1, 0).await;
    gw.wait_queued(&d1, 1).await;
    // Her second kernel waits too (quota 2), behind her first, still ahead of dave.
    let t2 = gw.create_spec_as(&tina, "gpu").await;
    gw.wait_queued(&t2, 1).await;
    gw.wait_queued(&d1, 2).await;
    let (_, queue) = gw.hub.gateway.gpu_view();
    let seen: Vec<(&str, i32)> = queue
        .iter()
        .map(|w| (w.kernel.as_str(), w.priority))
        .collect();
    assert_eq!(
        seen,
        [(t1.as_str(), 10), (t2.as_str(), 10), (d1.as_str(), 0)]
    );
    let metrics = gw.admin_get("/hub/metrics").await;
    for line in [
        "orrery_gpu_group_leased{group=\"tas\"} 0",
        "orrery_gpu_group_queued{group=\"tas\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }

    // A non-member's second GPU kernel is refused by gpu.quota.per_user.
    let a2 = gw.create_spec("gpu").await;
    let dead = gw.wait_state(&a2, "dead", 30).await;
    let reason = dead["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("alice holds 1 GPU unit(s)") && reason.contains("gpu.quota.per_user is 1"),
        "{dead}"
    );
    gw.delete(&a2).await;

    // Units freed go to tina first, the second one too although she then holds one and
    // dave none: priority comes before the fewer-units rule.
    gw.delete(&a1).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while unit_of(&gw, &t1).is_none() {
        assert!(std::time::Instant::now() < deadline, "t1 never got a unit");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(unit_of(&gw, &t1).as_deref(), Some("GPU-p1"));
    gw.wait_queued(&d1, 1).await;
    let (s, _) = gw
        .http_as(
            &carol,
            reqwest::Method::DELETE,
            &format!("/api/kernels/{c1}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while unit_of(&gw, &t2).is_none() {
        assert!(std::time::Instant::now() < deadline, "t2 never got a unit");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(unit_of(&gw, &t2).as_deref(), Some("GPU-p2"));
    gw.wait_queued(&d1, 0).await;
    // Per-group metrics: the two units tina holds, nothing queued, and once her kernels have
    // sat idle through a monitor round (every 3 s), idle-leased unit-seconds.
    let mut metrics = gw.admin_get("/hub/metrics").await;
    let idle = |m: &str| -> f64 {
        m.lines()
            .find_map(|l| {
                l.strip_prefix("orrery_gpu_group_idle_leased_seconds_total{group=\"tas\"} ")
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while idle(&metrics) == 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no idle unit-seconds for tas:\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        metrics = gw.admin_get("/hub/metrics").await;
    }
    for line in [
        "orrery_gpu_group_leased{group=\"tas\"} 2",
        "orrery_gpu_group_queued{group=\"tas\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }

    // Tina holds two, her group's quota: a third is refused naming it.
    let t3 = gw.create_spec_as(&tina, "gpu").await;
    let dead = gw.wait_state_as(&tina, &t3, "dead", 30).await;
    let reason = dead["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("tina holds 2 GPU unit(s)")
            && reason.contains("the quota of their [[gpu.groups]] is 2"),
        "{dead}"
    );
    for (token, id) in [(&tina, &t1), (&tina, &t2), (&tina, &t3), (&dave, &d1)] {
        let (s, b) = gw
            .http_as(
                token,
                reqwest::Method::DELETE,
                &format!("/api/kernels/{id}"),
                None,
            )
            .await;
        assert_eq!(s, 204, "{id}: {b}");
    }
    assert!(gw.leases().is_empty(), "every unit is back");
    gw.shut_down().await;
}

/// `gpu.policy = "shared"`: two kernels hold one unit (both see it) and a third waits for a
/// seat; NVML (the fake) shows one over its `gpu_memory` budget: its running cell gets the
/// notice, and after `gpu.shared.grace` it is stopped (dead, with the reason) and its seat goes
/// to the waiting kernel, while the kernel within its budget keeps running.
#[tokio::test]
async fn shared_gpu_kernels_share_a_unit_and_one_over_its_budget_is_stopped() {
    let (dir, state, _nvml) = fake_gpus("gpu GPU-sh 85899345920 0 0 0 - NVIDIA A100\n").await;
    let hub_state = dir.path().join("hub");
    let gw = LocalGateway::start(&hub_state, None).await;
    gw.configure(|cfg| {
        cfg.gpu.quota.per_user = 3;
        cfg.gpu.policy = orrery::config::GpuPolicy::Shared;
        cfg.gpu.shared.max_per_unit = 2;
        cfg.gpu.shared.grace = orrery::config::Duration::from_secs(4);
        let mut small = cfg.kernels.specs[1].clone();
        small.name = "gpu-10g".into();
        small.gpu_memory = Some(orrery::config::Size::from_bytes(10 << 30));
        cfg.kernels.specs.push(small);
    });
    let visible = "import os\nprint(os.environ['NVIDIA_VISIBLE_DEVICES'])";
    let k1 = gw.create_spec("gpu-10g").await;
    gw.wait_state(&k1, "idle", 60).await;
    let k2 = gw.create_spec("gpu-10g").await;
    gw.wait_state(&k2, "idle", 60).await;
    for k in [&k1, &k2] {
        let (out, status) = gw.execute(k, visible).await;
        assert_eq!((out.as_str(), status.as_str()), ("GPU-sh\n", "ok"), "{k}");
    }
    assert_eq!(
        gw.leases(),
        [
            ("GPU-sh".to_string(), k1.clone().min(k2.clone())),
            ("GPU-sh".to_string(), k1.clone().max(k2.clone()))
        ]
    );
    // Both seats are taken: a third kernel waits.
    let k3 = gw.create_spec("gpu-10g").await;
    gw.wait_queued(&k3, 0).await;

    // k1 uses 2 GiB, k2 15 GiB of its 10 GiB budget.
    let (p1, p2) = (kernel_pid(&hub_state, &k1), kernel_pid(&hub_state, &k2));
    let mut ch = Channels::open(&gw, &k2).await;
    let cell = ch.execute("import time\ntime.sleep(60)").await;
    std::fs::write(
        &state,
        format!(
            "gpu GPU-sh 85899345920 18253611008 60 10 - NVIDIA A100\n\
             proc GPU-sh {p1} 2147483648\n\
             proc GPU-sh {p2} 16106127360\n"
        ),
    )
    .unwrap();
    let notice = ch.text(&cell, "over its budget", 20).await;
    assert!(
        notice.contains("uses 15.0 GiB of GPU memory, over its budget of 10.0 GiB on a shared GPU")
            && notice.contains("within 4 seconds"),
        "{notice}"
    );
    let dead = gw.wait_state(&k2, "dead", 30).await;
    let reason = dead["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("it used 15.0 GiB of GPU memory for more than 4 seconds")
            && reason.contains("over its budget of 10.0 GiB"),
        "{dead}"
    );
    wait_gone(p2, 20, "the stopped kernel's process").await;
    // Its seat goes to the waiting kernel; the kernel within budget was never touched.
    let (out, status) = gw.execute(&k3, visible).await;
    assert_eq!(status, "ok", "{out}");
    assert!(out.ends_with("GPU-sh\n"), "{out}");
    assert!(process_alive(p1));
    let (out, status) = gw.execute(&k1, "print('still here')").await;
    assert_eq!((out.as_str(), status.as_str()), ("still here\n", "ok"));
    let mut holders: Vec<String> = gw.leases().into_iter().map(|(_, k)| k).collect();
    holders.sort();
    let mut expected = vec![k1.clone(), k3.clone()];
    expected.sort();
    assert_eq!(holders, expected);
    for k in [&k1, &k2, &k3] {
        gw.delete(k).await;
    }
    assert!(gw.leases().is_empty(), "every seat is back");
    gw.shut_down().await;
}

/// The admin's GPU panel, in headless Chromium (screenshots in
/// `target/test-artifacts/browser/gpu-panel/`): the holders, the queue and the processes
/// Orrery did not start, with the values `GET /hub/api/orrery/gpus` gives; the home pages show
/// each user their GPU kernels; an admin takes alice's GPU back: her notebook is told who did
/// it, the unit goes to bob's waiting kernel, and alice's next cell waits its turn.
#[tokio::test]
async fn the_gpu_panel_shows_holders_and_queue_and_an_admin_takes_a_gpu_back() {
    crate::browser::require_chromium();
    // GPU-pb runs a process Orrery did not start (this test's own).
    let (dir, _state, _nvml) = fake_gpus(&format!(
        "gpu GPU-pa 85899345920 0 0 0 - NVIDIA A100\n\
         gpu GPU-pb 85899345920 1073741824 40 5 - NVIDIA A100\n\
         proc GPU-pb {} 1073741824\n",
        std::process::id()
    ))
    .await;
    let gw = LocalGateway::start(&dir.path().join("hub"), None).await;
    let bob = add_user(&gw.hub, "bob");
    let k1 = gw.create_spec("gpu").await;
    gw.wait_state(&k1, "idle", 60).await;
    let k2 = gw.create_spec_as(&bob, "gpu").await;
    gw.wait_queued(&k2, 0).await;

    // The hub's pages, served as the daemon serves them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_url = format!("http://{}", listener.local_addr().unwrap());
    let app = orrery::app::router(gw.hub.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let api: Value = serde_json::from_str(&gw.admin_get("/hub/api/orrery/gpus").await).unwrap();
    assert_eq!(api["holders"][0]["kernel"], k1.as_str(), "{api}");
    assert_eq!(api["holders"][0]["unit"], "GPU-pa", "{api}");
    assert_eq!(api["queue"][0]["kernel"], k2.as_str(), "{api}");
    assert_eq!(api["foreign"][0]["unit"], "GPU-pb", "{api}");
    assert_eq!(api["foreign"][0]["pid"], std::process::id(), "{api}");

    // Each user's home page: alice holds a GPU, bob is next in line (first logins set the
    // passwords: the firstuse authenticator).
    let home = |user: &'static str| {
        let url = hub_url.clone();
        async move {
            let cookie = crate::common::login_at(&url, user, &format!("{user}-password-1"))
                .await
                .expect("login");
            crate::common::page_as(&url, &cookie, "/hub/home").await.1
        }
    };
    let alice_home = home("alice").await;
    let mine = &alice_home[alice_home
        .find("id=\"my-gpus\"")
        .expect("alice's GPU kernels")..];
    assert!(
        mine.contains(&format!("data-kernel=\"{k1}\""))
            && mine.contains("holds GPU <code>GPU-pa</code>"),
        "{mine}"
    );
    let bob_home = home("bob").await;
    assert!(
        bob_home.contains(&format!("data-kernel=\"{k2}\""))
            && bob_home.contains("waits for a GPU: next in line"),
        "{bob_home}"
    );

    // alice's notebook is open on k1.
    let mut ch = Channels::open(&gw, &k1).await;
    let cell = ch.execute("print('before')").await;
    ch.reply(&cell, "execute_reply", 30).await;

    // root1 (an admin; admin_get made it) reads the panel in Chromium and takes k1's GPU back.
    let root_cookie = crate::common::login_at(&hub_url, "root1", "root1-password-1")
        .await
        .expect("root1 sets a password");
    drop(root_cookie);
    let artifacts = crate::common::repo().join("target/test-artifacts/browser/gpu-panel");
    std::fs::create_dir_all(&artifacts).unwrap();
    // Run off the test's one runtime thread, which serves the hub meanwhile.
    let out = tokio::process::Command::new(crate::common::python())
        .arg(crate::common::repo().join("tests/python/gpu_panel_browser.py"))
        .args([
            hub_url.as_str(),
            "root1",
            "root1-password-1",
            k1.as_str(),
            &artifacts.display().to_string(),
        ])
        .output()
        .await
        .expect("run gpu_panel_browser.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "gpu_panel_browser.py failed:\n{stdout}\n{stderr}"
    );
    let seen: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON from gpu_panel_browser.py:\n{stdout}\n{stderr}"));
    // The panel shows what the API gave.
    let holders = seen["holders"].as_array().expect("holders");
    assert_eq!(
        holders.len(),
        api["holders"].as_array().map_or(0, Vec::len),
        "{seen}"
    );
    assert_eq!(holders[0]["kernel"], api["holders"][0]["kernel"], "{seen}");
    assert_eq!(holders[0]["unit"], api["holders"][0]["unit"], "{seen}");
    assert_eq!(holders[0]["user"], "alice", "{seen}");
    let queue = seen["queue"].as_array().expect("queue");
    assert_eq!(queue.len(), 1, "{seen}");
    assert_eq!(queue[0]["kernel"], api["queue"][0]["kernel"], "{seen}");
    assert_eq!(queue[0]["position"], "1", "{seen}");
    assert_eq!(queue[0]["user"], "bob", "{seen}");
    assert_eq!(
        seen["foreign"][0]["pid"],
        std::process::id().to_string(),
        "{seen}"
    );
    assert!(
        seen["notice"]
            .as_str()
            .is_some_and(|n| n.contains("alice's kernel gave its GPU back")),
        "{seen}"
    );

    // alice's notebook is told who took it; the unit goes to bob's kernel.
    let told = ch.text(&cell, "took this kernel's GPU back", 20).await;
    assert!(told.contains("An admin (root1)"), "{told}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while gw.leases() != [("GPU-pa".to_string(), k2.clone())] {
        assert!(
            std::time::Instant::now() < deadline,
            "bob's kernel never got GPU-pa: {:?}",
            gw.leases()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let bob_sees = gw.wait_state_as(&bob, &k2, "idle", 60).await;
    assert_eq!(bob_sees["execution_state"], "idle");
    drop(ch);
    // alice's next cell starts k1 again, which now waits its turn.
    let mut ch = Channels::open(&gw, &k1).await;
    let again = ch.execute("print('after')").await;
    let waiting = ch.text(&again, "waiting for a GPU", 30).await;
    assert!(
        waiting.contains("taken back by an admin")
            || ch.all_text(&again).contains("taken back by an admin"),
        "{waiting}"
    );
    drop(ch);

    server.abort();
    for (token, id) in [(&gw.token, &k1), (&bob, &k2)] {
        let (s, b) = gw
            .http_as(
                token,
                reqwest::Method::DELETE,
                &format!("/api/kernels/{id}"),
                None,
            )
            .await;
        assert_eq!(s, 204, "{id}: {b}");
    }
    gw.shut_down().await;
}

/// A server started with a GPU profile holds its units; its kernels see them and lease none
/// of their own (a GPU kernelspec as well as a plain one), so they neither count twice against
/// the quota nor queue; another user's GPU kernel gets the other unit.
#[tokio::test]
async fn kernels_of_a_gpu_server_use_its_units_and_lease_none() {
    let (dir, _state, _nvml) = fake_gpus(
        "gpu GPU-s1 85899345920 0 0 0 - NVIDIA A100\ngpu GPU-s2 85899345920 0 0 0 - NVIDIA A100\n",
    )
    .await;
    let gw = LocalGateway::start(&dir.path().join("hub"), None).await;
    let units = gw
        .hub
        .gateway
        .lease_for_server("alice", "", 1, None)
        .expect("a unit for alice's server");
    assert_eq!(units, ["GPU-s1"]);
    // The quota (1) is spent by the server: nothing more for alice's server elsewhere.
    let again = gw.hub.gateway.lease_for_server("alice", "lab", 1, None);
    assert!(
        again
            .as_ref()
            .is_err_and(|e| e.contains("alice holds 1 GPU unit(s)")),
        "{again:?}"
    );
    let visible = "import os\nprint(os.environ['NVIDIA_VISIBLE_DEVICES'])";
    let k_gpu = gw.create_spec("gpu").await;
    gw.wait_state(&k_gpu, "idle", 60).await;
    let k_plain = gw.create().await;
    for k in [&k_gpu, &k_plain] {
        let (out, status) = gw.execute(k, visible).await;
        assert_eq!((out.as_str(), status.as_str()), ("GPU-s1\n", "ok"), "{k}");
    }
    let leases = gw.hub.store.leases().unwrap();
    assert_eq!(leases.len(), 1, "only the server's lease: {leases:?}");
    assert_eq!(
        leases[0].holder,
        orrery::state::LeaseHolder::Server {
            user: "alice".into(),
            server: String::new()
        }
    );
    // bob's GPU kernel gets the other unit.
    let bob = add_user(&gw.hub, "bob");
    let kb = gw.create_spec_as(&bob, "gpu").await;
    gw.wait_state_as(&bob, &kb, "idle", 60).await;
    assert_eq!(gw.leases(), [("GPU-s2".to_string(), kb.clone())]);
    // The server's units go when it does.
    gw.hub.gateway.release_server_gpus("alice", "");
    assert_eq!(gw.hub.store.leases().unwrap().len(), 1);
    for k in [&k_gpu, &k_plain] {
        gw.delete(k).await;
    }
    let (s, _) = gw
        .http_as(
            &bob,
            reqwest::Method::DELETE,
            &format!("/api/kernels/{kb}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    gw.shut_down().await;
}

/// `gpu.idle_timeout`: a GPU kernel quiet on its channels but computing on its GPU (95 % in
/// NVML) keeps its unit, and is not warned; once its GPU is idle too, its notebook is warned
/// under the last cell, then the unit is taken back (container reclaimed, lease released,
/// counted), and the next execute re-creates the kernel with its unit and the notice.
#[tokio::test]
async fn an_idle_gpu_kernel_is_warned_then_gives_its_unit_back_a_busy_one_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nvml-state");
    let gpu_at = |util: u32| {
        std::fs::write(
            &state,
            format!("gpu GPU-dddd 85899345920 1073741824 {util} 10 - NVIDIA A100\n"),
        )
        .unwrap()
    };
    gpu_at(95);
    let _nvml = NVML_ENV.lock().await;
    std::env::set_var("FAKE_NVML_STATE", &state);
    let gw = LocalGateway::start(&dir.path().join("hub"), None).await;
    // Warned half-way (5 s), reclaimed at 10 s.
    gw.configure(|c| c.gpu.idle_timeout = orrery::config::Duration::from_secs(10));
    let k = gw.create_spec("gpu").await;
    gw.wait_state(&k, "idle", 60).await;
    let mut ch = Channels::open(&gw, &k).await;
    let cell = ch.execute("x = 1\nprint('ready')").await;
    ch.reply(&cell, "execute_reply", 30).await;
    assert_eq!(ch.all_text(&cell), "ready\n");
    let pid = kernel_pid(&dir.path().join("hub"), &k);

    // No messages for 12 s, but the GPU computes: nothing is taken, nobody is warned.
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    assert!(process_alive(pid), "a kernel busy on its GPU keeps it");
    assert_eq!(gw.leases().len(), 1);
    assert_eq!(ch.all_text(&cell), "ready\n", "no warning while computing");

    // Its GPU goes quiet too: a warning under the last cell, then the unit comes back.
    gpu_at(0);
    let warning = ch.text(&cell, "will be given back in", 20).await;
    assert!(
        warning.contains("unless the kernel runs something (its state would then be reset)"),
        "{warning}"
    );
    assert!(process_alive(pid), "warned before, not at, the reclaim");
    wait_gone(pid, 20, "an idle GPU kernel's process").await;
    // The lease goes right after the process (the reclaim removes, then releases).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !gw.leases().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the unit is not back");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        gw.hub.gateway.counts().reclaimed,
        1,
        "still listed, as reclaimed"
    );
    drop(ch);

    // The next execute re-creates it, with its unit again and the notice.
    let (out, status) = gw
        .execute(
            &k,
            "import os\nprint('x' in dir(), os.environ['NVIDIA_VISIBLE_DEVICES'])",
        )
        .await;
    assert_eq!(status, "ok", "{out}");
    assert!(out.contains("kernel's GPU was reclaimed after"), "{out}");
    assert!(out.ends_with("False GPU-dddd\n"), "{out}");
    assert_eq!(gw.leases(), [("GPU-dddd".to_string(), k.clone())]);
    gw.delete(&k).await;
    gw.shut_down().await;
}

/// MIG on, three MIG devices: the units are the `MIG-…` devices, each GPU kernel gets its own
/// (the profile filter picks among them), and without NVML a GPU kernel fails saying why.
#[tokio::test]
async fn mig_devices_are_the_units_kernels_get_and_no_nvml_says_why() {
    let (dir, _state, _nvml) = fake_gpus(
        "gpu GPU-mmmm 150323855360 0 0 0 1 NVIDIA H200\n\
         mig 0 0 MIG-aaaa 19327352832 0 NVIDIA H200 MIG 1g.18gb\n\
         mig 0 1 MIG-bbbb 19327352832 0 NVIDIA H200 MIG 1g.18gb\n\
         mig 0 2 MIG-cccc 76235669504 0 NVIDIA H200 MIG 3g.71gb\n",
    )
    .await;
    let hub_state = dir.path().join("hub");
    let gw = LocalGateway::start(&hub_state, None).await;
    gw.configure(|c| {
        c.gpu.quota.per_user = 3;
        let mut big = c.kernels.specs[1].clone();
        big.name = "big".into();
        big.mig_profile = Some("3g.71gb".into());
        c.kernels.specs.push(big);
    });
    let visible = "import os\nprint(os.environ['NVIDIA_VISIBLE_DEVICES'])";
    let big = gw.create_spec("big").await;
    gw.wait_state(&big, "idle", 60).await;
    let (out, _) = gw.execute(&big, visible).await;
    assert_eq!(out, "MIG-cccc\n", "the 3g.71gb device");
    let mut small = Vec::new();
    for _ in 0..2 {
        let k = gw.create_spec("gpu").await;
        gw.wait_state(&k, "idle", 60).await;
        let (out, _) = gw.execute(&k, visible).await;
        small.push(out);
    }
    small.sort();
    assert_eq!(small, ["MIG-aaaa\n", "MIG-bbbb\n"]);
    for (_, id) in gw.leases() {
        gw.delete(&id).await;
    }

    // No NVML: a GPU kernel fails with the reason and the fix.
    gw.configure(|c| c.gpu.nvml_library = "/nonexistent/libnvidia-ml.so.1".into());
    let k = gw.create_spec("gpu").await;
    let dead = gw.wait_state(&k, "dead", 30).await;
    let reason = dead["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("this kernel needs 1 GPU(s), but")
            && reason.contains("install the NVIDIA driver"),
        "{dead}"
    );
    gw.delete(&k).await;
    gw.shut_down().await;
}

/// A kernel's channels WebSocket, as Jupyter Server's gateway client opens it.
struct Channels {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// Everything received so far.
    seen: Vec<Value>,
}

impl Channels {
    async fn open(gw: &LocalGateway, id: &str) -> Channels {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!(
            "{}/api/kernels/{id}/channels",
            gw.url.replacen("http", "ws", 1)
        );
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "Authorization",
            format!("token {}", gw.token).parse().unwrap(),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        Channels {
            ws,
            seen: Vec::new(),
        }
    }

    /// Send a request; returns its msg_id.
    async fn send(&mut self, channel: &str, msg_type: &str, content: Value) -> String {
        use futures::SinkExt;
        let msg_id = uuid::Uuid::new_v4().to_string();
        let msg = json!({
            "header": {"msg_id": msg_id, "username": "alice", "session": "s", "msg_type": msg_type,
                       "version": "5.3", "date": chrono::Utc::now().to_rfc3339()},
            "parent_header": {}, "metadata": {}, "buffers": [], "channel": channel,
            "content": content,
        });
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(
                msg.to_string().into(),
            ))
            .await
            .unwrap();
        msg_id
    }

    async fn execute(&mut self, code: &str) -> String {
        self.send(
            "shell",
            "execute_request",
            json!({"code": code, "silent": false, "store_history": true, "user_expressions": {},
                   "allow_stdin": false, "stop_on_error": true}),
        )
        .await
    }

    /// Read until a message satisfies `done` (within `secs`); returns it.
    async fn until(
        &mut self,
        secs: u64,
        what: &str,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Value {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next()).await;
            let Ok(Some(Ok(m))) = next else {
                panic!("{what}: not seen within {secs} s; got {:#?}", self.seen);
            };
            let tokio_tungstenite::tungstenite::Message::Text(text) = m else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            self.seen.push(v.clone());
            if done(&v) {
                return v;
            }
        }
    }

    /// The reply of type `reply_type` to request `msg_id`.
    async fn reply(&mut self, msg_id: &str, reply_type: &str, secs: u64) -> Value {
        self.until(secs, reply_type, |v| {
            v["parent_header"]["msg_id"] == msg_id && v["header"]["msg_type"] == reply_type
        })
        .await
    }

    /// Wait for stream text containing `needle` under request `msg_id`.
    async fn text(&mut self, msg_id: &str, needle: &str, secs: u64) -> String {
        let v = self
            .until(secs, needle, |v| {
                v["parent_header"]["msg_id"] == msg_id
                    && v["header"]["msg_type"] == "stream"
                    && v["content"]["text"]
                        .as_str()
                        .is_some_and(|t| t.contains(needle))
            })
            .await;
        v["content"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// All stream text seen so far under request `msg_id`.
    fn all_text(&self, msg_id: &str) -> String {
        self.seen
            .iter()
            .filter(|v| {
                v["parent_header"]["msg_id"] == msg_id && v["header"]["msg_type"] == "stream"
            })
            .filter_map(|v| v["content"]["text"].as_str())
            .collect()
    }
}

impl LocalGateway {
    /// `GET path` on the hub's router as an admin (created at the first call), expecting 200.
    async fn admin_get(&self, path: &str) -> String {
        if self.hub.store.user("root1").unwrap().is_none() {
            let mut u = UserRecord::new("root1");
            u.admin = true;
            assert!(self.hub.store.create_user(&u).unwrap());
        }
        let (token, _) = self
            .hub
            .issue_token(
                TokenOwner::User("root1".into()),
                TokenKind::Api,
                vec!["inherit".into()],
                "test",
                None,
            )
            .unwrap();
        let req = Request::builder()
            .uri(path)
            .header(header::AUTHORIZATION, format!("token {token}"))
            .body(Body::empty())
            .unwrap();
        let resp = orrery::app::router(self.hub.clone())
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        String::from_utf8(
            axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    }

    fn configure(&self, change: impl FnOnce(&mut Config)) {
        let mut cfg = self.hub.config().as_ref().clone();
        change(&mut cfg);
        self.hub.set_config(cfg);
    }

    /// Wait until kernel `id` waits for a GPU with `ahead` kernels before it.
    async fn wait_queued(&self, id: &str, ahead: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while self.hub.gateway.ahead_of(id) != Some(ahead) {
            assert!(
                std::time::Instant::now() < deadline,
                "{id} never had {ahead} ahead of it (has {:?})",
                self.hub.gateway.ahead_of(id)
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

const RAN_ON: &str = "import os\nprint('ran on', os.environ['NVIDIA_VISIBLE_DEVICES'])";

/// The GPU queue where the user is, on one fake GPU: a waiting kernel answers `kernel_info`
/// (a usable kernel, not a failed start), its cell says it waits and its place; an interrupt
/// cancels the held cell with an `aborted` reply and keeps the place; a cell held when a unit
/// frees runs on it; a wait longer than `gpu.queue_timeout` ends with a message; someone
/// waiting reclaims an idle holder at once (and the reclaimed one waits its turn, then gets
/// the notice); a restart keeps the queue in order and answers the cells it lost.
#[tokio::test]
async fn gpu_kernels_wait_in_line_visibly_and_run_when_a_unit_frees() {
    let (dir, _state, _nvml) = fake_gpus("gpu GPU-q1 85899345920 0 0 0 - NVIDIA A100\n").await;
    let hub_state = dir.path().join("hub");
    let gw = LocalGateway::start(&hub_state, None).await;
    gw.configure(|c| {
        c.gpu.quota.per_user = 3;
        c.gpu.idle_after = orrery::config::Duration::from_secs(3600);
    });
    let k1 = gw.create_spec("gpu").await;
    gw.wait_state(&k1, "idle", 60).await;
    assert_eq!(gw.leases(), [("GPU-q1".to_string(), k1.clone())]);

    // k2 waits, and looks like a usable kernel meanwhile.
    let k2 = gw.create_spec("gpu").await;
    gw.wait_queued(&k2, 0).await;
    assert_eq!(gw.model(&k2).await["execution_state"], "idle");
    let mut ch = Channels::open(&gw, &k2).await;
    let info = ch.send("shell", "kernel_info_request", json!({})).await;
    let reply = ch.reply(&info, "kernel_info_reply", 10).await;
    assert_eq!(reply["content"]["status"], "ok", "{reply}");
    assert_eq!(reply["content"]["implementation"], "orrery-gpu-queue");
    assert_eq!(reply["content"]["language_info"]["name"], "python");

    // A cell sent meanwhile says it waits, and where.
    let a = ch.execute(RAN_ON).await;
    let text = ch.text(&a, "waiting for a GPU", 10).await;
    assert_eq!(
        text,
        "waiting for a GPU: 0 ahead of you; the cell runs when it is free\n"
    );
    // An interrupt cancels it (aborted, with why); the kernel keeps its place.
    let (status, _) = gw
        .http(
            reqwest::Method::POST,
            &format!("/api/kernels/{k2}/interrupt"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let reply = ch.reply(&a, "execute_reply", 10).await;
    assert_eq!(reply["content"]["status"], "aborted", "{reply}");
    assert!(
        ch.all_text(&a)
            .contains("Interrupted while waiting for a GPU: the cell did not run"),
        "{}",
        ch.all_text(&a)
    );
    assert_eq!(gw.hub.gateway.ahead_of(&k2), Some(0));

    // A cell held when the unit frees runs on it.
    let b = ch.execute(RAN_ON).await;
    ch.text(&b, "waiting for a GPU: 0 ahead", 10).await;
    gw.delete(&k1).await;
    let reply = ch.reply(&b, "execute_reply", 60).await;
    assert_eq!(
        reply["content"]["status"],
        "ok",
        "{reply}\n{}",
        ch.all_text(&b)
    );
    let out = ch.all_text(&b);
    assert!(out.contains("got a GPU after waiting"), "{out}");
    assert!(out.ends_with("ran on GPU-q1\n"), "{out}");
    assert_eq!(gw.leases(), [("GPU-q1".to_string(), k2.clone())]);

    // A wait longer than gpu.queue_timeout ends with a message under the cell.
    gw.configure(|c| c.gpu.queue_timeout = orrery::config::Duration::from_secs(2));
    let k3 = gw.create_spec("gpu").await;
    gw.wait_queued(&k3, 0).await;
    let mut ch3 = Channels::open(&gw, &k3).await;
    let c = ch3.execute(RAN_ON).await;
    let reply = ch3.reply(&c, "execute_reply", 20).await;
    assert_eq!(reply["content"]["status"], "aborted", "{reply}");
    let out = ch3.all_text(&c);
    assert!(
        out.contains(
            "No GPU became free within 2 seconds (gpu.queue_timeout), so this cell did not run"
        ),
        "{out}"
    );
    assert_eq!(gw.hub.gateway.ahead_of(&k3), None, "out of the queue");

    // Someone waiting takes the unit of an idle holder at once: k3's next cell waits, k2 (idle
    // for more than gpu.idle_after) is reclaimed, and the cell runs on its unit.
    gw.configure(|c| {
        c.gpu.queue_timeout = orrery::config::Duration::from_secs(3600);
        c.gpu.idle_after = orrery::config::Duration::from_secs(1);
    });
    let d = ch3.execute(RAN_ON).await;
    let reply = ch3.reply(&d, "execute_reply", 60).await;
    assert_eq!(
        reply["content"]["status"],
        "ok",
        "{reply}\n{}",
        ch3.all_text(&d)
    );
    assert!(
        ch3.all_text(&d).ends_with("ran on GPU-q1\n"),
        "{}",
        ch3.all_text(&d)
    );
    assert_eq!(gw.leases(), [("GPU-q1".to_string(), k3.clone())]);
    // k2's next cell waits its turn (k3 is now the idle holder), then runs with the notice.
    let e = ch.execute(RAN_ON).await;
    let reply = ch.reply(&e, "execute_reply", 60).await;
    assert_eq!(
        reply["content"]["status"],
        "ok",
        "{reply}\n{}",
        ch.all_text(&e)
    );
    let out = ch.all_text(&e);
    assert!(out.contains("kernel's GPU was reclaimed after"), "{out}");
    assert!(out.ends_with("ran on GPU-q1\n"), "{out}");

    // Places move: k5's cell waits with 1 ahead, then 0 once k4 leaves the queue.
    gw.configure(|c| c.gpu.idle_after = orrery::config::Duration::from_secs(3600));
    let k4 = gw.create_spec("gpu").await;
    gw.wait_queued(&k4, 0).await;
    let k5 = gw.create_spec("gpu").await;
    gw.wait_queued(&k5, 1).await;
    let mut ch5 = Channels::open(&gw, &k5).await;
    let f = ch5.execute(RAN_ON).await;
    ch5.text(&f, "waiting for a GPU: 1 ahead of you", 10).await;
    gw.delete(&k4).await;
    ch5.text(&f, "waiting for a GPU: 0 ahead of you", 10).await;

    // Two waiting kernels and a held cell: a restart keeps their order and answers the cell.
    let k6 = gw.create_spec("gpu").await;
    gw.wait_queued(&k6, 1).await;
    drop((ch, ch3, ch5));
    let token = gw.token.clone();
    gw.shut_down().await;
    let gw = LocalGateway::start(&hub_state, Some(token)).await;
    assert_eq!(gw.hub.gateway.ahead_of(&k5), Some(0));
    assert_eq!(gw.hub.gateway.ahead_of(&k6), Some(1));
    assert_eq!(gw.leases(), [("GPU-q1".to_string(), k2.clone())]);
    let mut ch5 = Channels::open(&gw, &k5).await;
    let reply = ch5.reply(&f, "execute_reply", 10).await;
    assert_eq!(reply["content"]["status"], "aborted", "{reply}");
    assert!(
        ch5.all_text(&f)
            .contains("The hub restarted while this cell waited for a GPU"),
        "{}",
        ch5.all_text(&f)
    );
    drop(ch5);
    for id in [&k2, &k3, &k5, &k6] {
        gw.delete(id).await;
    }
    assert!(gw.leases().is_empty());
    assert_eq!(
        gw.hub.gateway.ahead_of(&k6),
        None,
        "shutdown leaves the queue"
    );
    assert!(gw.hub.store.gpu_queue().unwrap().is_empty());
    gw.shut_down().await;
}
