//! Docker helpers shared by the tests that need an engine and the single-user image: the
//! `docker` CLI, the image, a user's server reached through the hub, and (for `docker_e2e.rs`
//! and `gateway_e2e.rs`) [`Env`], a test's own corner of the engine that is cleaned up after it
//! and held by one test of the binary at a time.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;

use super::{free_port, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};

/// Run `docker ARGS…`: (success, stdout, stderr).
pub fn docker(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI ({e}); these tests need Docker"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// `docker ARGS…` that must succeed; its stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let (ok, out, err) = docker(args);
    assert!(ok, "docker {args:?} failed:\n{out}\n{err}");
    out
}

/// The single-user image, built (or found in the cache) once per test process.
pub fn image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            let (ok, _, err) = docker(&["info", "--format", "{{.ServerVersion}}"]);
            assert!(
                ok,
                "no Docker engine answers (CI={ci}); start one (dockerd >/var/log/dockerd.log 2>&1 &):\n{err}"
            );
            build_image("build.sh", "orrery-singleuser")
        })
        .clone()
}

/// Build (or find in the cache) the image `tests/images/<script>` makes; its reference
/// (`<repo>:<recipe hash>`, the script's last line of output), checked to exist.
pub fn build_image(script: &str, repo: &str) -> String {
    let path = crate::common::repo().join("tests/images").join(script);
    let out = Command::new("bash")
        .arg(&path)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run tests/images/{script}: {e}"));
    assert!(
        out.status.success(),
        "tests/images/{script} failed ({}): the tests need the {repo} image",
        out.status
    );
    let image = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string();
    assert!(
        image.starts_with(&format!("{repo}:")),
        "tests/images/{script} printed no image reference: {image:?}"
    );
    docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
    image
}

// ------------------------------------------------------------------------------------------
// a test's own corner of the engine

/// One Docker test at a time (the Docker, gateway and browser tests all take it): every such test
/// starts containers running a full Jupyter server, and on a small machine several at once make
/// spawn times (and so the tests) erratic. A failed test does not block the others (an async
/// mutex is not poisoned).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// What a test created on the engine; removed on drop, also when the test panics.
struct Cleanup {
    began: Instant,
    /// Users whose labelled containers (notebook and kernels) are removed.
    users: Vec<String>,
    containers: Vec<String>,
    volumes: Vec<String>,
    network: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for u in &self.users {
            for c in containers_of(u) {
                let _ = docker(&["rm", "-f", &c]);
            }
        }
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        for v in &self.volumes {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
        let _ = docker(&["network", "rm", &self.network]);
        eprintln!(
            "[{}] {} took {:?} (cleanup included)",
            env!("CARGO_CRATE_NAME"),
            std::thread::current().name().unwrap_or("test"),
            self.began.elapsed()
        );
    }
}

/// A test's own corner of the engine: network (`orrery-test-<n>`), home volumes
/// (`orrery-test-<n>-<user>`) and user names (`<prefix><n>…`), removed when it is dropped (also
/// when the test fails). While it lives no other test of the binary holds one (see `serial`).
pub struct Env {
    n: u16,
    user_prefix: &'static str,
    image: String,
    pub network: String,
    cleanup: Cleanup,
    /// Declared last, so released after the cleanup.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Env {
    /// Waits for the other tests of the binary, then builds (or finds) the image. User names
    /// start with `user_prefix`, which tells the test files' leftovers apart.
    pub async fn new(user_prefix: &'static str) -> Env {
        let serial = serial().await;
        let image = image();
        let n = free_port();
        let network = format!("orrery-test-{n}");
        Env {
            n,
            user_prefix,
            image,
            network: network.clone(),
            cleanup: Cleanup {
                began: Instant::now(),
                users: Vec::new(),
                containers: Vec::new(),
                volumes: Vec::new(),
                network,
            },
            _serial: serial,
        }
    }

    /// A user name unique to this test; its containers and volume are cleaned up.
    pub fn user(&mut self, tag: &str) -> String {
        let u = format!("{}{}{tag}", self.user_prefix, self.n);
        self.cleanup.users.push(u.clone());
        self.cleanup.containers.push(container_name(&u));
        self.cleanup.volumes.push(self.volume(&u));
        u
    }

    pub fn volume(&self, user: &str) -> String {
        format!("orrery-test-{}-{user}", self.n)
    }

    /// The daemon config: Docker backend on this test's network and volumes, plus `extra`
    /// (lines for `[spawner.docker]` first, then other tables).
    pub fn config(&self, docker_extra: &str, extra: &str) -> String {
        // The culler is off unless `extra` configures it.
        let cull = if extra.contains("[cull]") {
            ""
        } else {
            "[cull]\nenabled = false\n"
        };
        format!(
            "[spawner]\nbackend = \"docker\"\nslow_spawn_timeout = \"60s\"\nstart_timeout = \"90s\"\n\n\
             [spawner.docker]\nimage = \"{}\"\npull_policy = \"never\"\nnetwork = \"{}\"\n\
             home_volume = \"orrery-test-{}-{{username}}\"\n{docker_extra}\n\n{cull}\n{extra}\n",
            self.image, self.network, self.n
        )
    }

    /// The daemon on `config(docker_extra, extra)`, with `users` created (not admins).
    pub async fn daemon(&self, users: &[&str], docker_extra: &str, extra: &str) -> Daemon {
        let d = Daemon::start(&self.config(docker_extra, extra)).await;
        d.create_users(users, false).await;
        d
    }

    /// The daemon on `config(docker_extra, extra)` with one user (`user(tag)`) whose server is
    /// started (`start_server`): (daemon, the user's name, their API token, the id of their
    /// server's container).
    pub async fn one_user(
        &mut self,
        tag: &str,
        docker_extra: &str,
        extra: &str,
    ) -> (Daemon, String, String, String) {
        let user = self.user(tag);
        let d = self.daemon(&[&user], docker_extra, extra).await;
        let token = d.token_for(&user).await;
        let server = start_server(&d, &user).await;
        (d, user, token, server)
    }
}

// ------------------------------------------------------------------------------------------
// A user's server in Docker, reached through the hub

pub fn container_name(user: &str) -> String {
    format!("orrery-{user}")
}

/// `docker inspect` of one object, as JSON.
pub fn inspect(what: &str) -> Value {
    let out = docker_ok(&["inspect", what]);
    let v: Value = serde_json::from_str(&out).expect("docker inspect JSON");
    v[0].clone()
}

/// Whether `docker inspect` output `c` has `entry` (`NAME=value`) in its configured
/// environment.
pub fn has_env(c: &Value, entry: &str) -> bool {
    c["Config"]["Env"]
        .as_array()
        .is_some_and(|e| e.iter().any(|v| v == entry))
}

/// The last lines of a container's log, for failure messages.
pub fn container_logs(name: &str) -> String {
    let (_, out, err) = docker(&["logs", "--tail", "40", name]);
    format!("{out}\n{err}")
}

/// `docker exec CONTAINER ARGS…`: (exit code, stdout, stderr).
pub fn exec(container: &str, args: &[&str]) -> (i32, String, String) {
    exec_as(container, None, args)
}

/// `docker exec [-u USER] CONTAINER ARGS…`: (exit code, stdout, stderr).
pub fn exec_as(container: &str, user: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new("docker");
    cmd.arg("exec");
    if let Some(u) = user {
        cmd.args(["-u", u]);
    }
    let out = cmd
        .arg(container)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker exec");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// `sh -c SCRIPT` in `container`: (exit code, stdout, stderr).
pub fn sh(container: &str, script: &str) -> (i32, String, String) {
    exec(container, &["sh", "-c", script])
}

/// `python3 -c CODE` in `container`: (exit code, stdout, stderr).
pub fn python(container: &str, code: &str) -> (i32, String, String) {
    exec(container, &["python3", "-c", code])
}

/// Whether a container runs, as `docker inspect` says it: `"true"` or `"false"`.
pub fn running(container: &str) -> String {
    docker_ok(&["inspect", "-f", "{{.State.Running}}", container])
}

/// A container's IPv4 address on its network.
pub fn ip_address(container: &str) -> String {
    let ip = docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        container,
    ]);
    assert!(
        ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "container IP {ip:?}"
    );
    ip
}

/// From inside `container`, a TCP connection to `ip:port` (3 s timeout) that prints `connected`
/// when it opens: (exit code, stdout, stderr).
pub fn connect_from(container: &str, ip: &str, port: u16) -> (i32, String, String) {
    python(
        container,
        &format!("import socket; socket.create_connection(('{ip}', {port}), timeout=3); print('connected')"),
    )
}

/// The control for `connect_from`: the host (where the hub runs) connects to `ip:port` within
/// 5 s; `what` listens there.
pub async fn assert_host_reaches(ip: &str, port: u16, what: &str) {
    let direct = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((ip, port)),
    )
    .await;
    assert!(
        matches!(direct, Ok(Ok(_))),
        "{what} is reachable from the host at {ip}:{port}: {direct:?}"
    );
}

// ------------------------------------------------------------------------------------------
// hub and proxy helpers

/// `METHOD /hub/api/users/<user>/server` (start or stop the server) with `token`: (status, body).
pub async fn server_api(d: &Daemon, method: &str, user: &str, token: &str) -> (u16, Value) {
    let (s, body, _) = d
        .api(method, &format!("/users/{user}/server"), Some(token), None)
        .await;
    (s, body)
}

/// Start `user`'s server through the API and wait until the hub calls it ready; returns the
/// container id the hub recorded (checked against the engine's).
pub async fn start_server(d: &Daemon, user: &str) -> String {
    let began = Instant::now();
    let (s, b) = server_api(d, "POST", user, ADMIN).await;
    assert!(
        s == 201 || s == 202,
        "spawn {user}: {s} {b}\nlog:\n{}\ncontainer log:\n{}",
        d.log(),
        container_logs(&container_name(user))
    );
    let id = wait_ready(d, user).await;
    eprintln!(
        "[docker] {user}'s server ready in {:?} ({s})",
        began.elapsed()
    );
    id
}

/// Wait until the hub lists no server of `user` (stopped, or its record forgotten).
pub async fn wait_no_servers(d: &Daemon, user: &str, within: Duration) {
    let began = Instant::now();
    loop {
        let (_, u, _) = d
            .api("GET", &format!("/users/{user}"), Some(ADMIN), None)
            .await;
        if u["servers"].as_object().is_some_and(|s| s.is_empty()) {
            return;
        }
        assert!(
            began.elapsed() < within,
            "{user}'s server still listed: {u}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until `user`'s default server (started or starting) is ready; its container id, checked
/// against the engine's `orrery-<user>`.
pub async fn wait_ready(d: &Daemon, user: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    let model = loop {
        let (_, u, _) = d
            .api("GET", &format!("/users/{user}"), Some(ADMIN), None)
            .await;
        let srv = &u["servers"][""];
        if srv["ready"] == true {
            break u;
        }
        assert!(
            !srv.is_null(),
            "{user}'s server is neither ready nor pending: {u}\nlog:\n{}",
            d.log()
        );
        assert!(
            Instant::now() < deadline,
            "{user}'s server not ready in 120 s: {u}\nlog:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let srv = &model["servers"][""];
    // A path, or an absolute URL on the server's own host with per-user origins.
    let path = format!("/user/{user}/");
    for url in [&srv["url"], &model["server"]] {
        assert!(url.as_str().is_some_and(|u| u.ends_with(&path)), "{model}");
    }
    assert_eq!(srv["pending"], Value::Null, "{model}");
    let id = srv["state"]["container_id"]
        .as_str()
        .unwrap_or_else(|| panic!("container_id in the server state: {model}"))
        .to_string();
    let engine_id = docker_ok(&["inspect", "-f", "{{.Id}}", &container_name(user)]);
    assert_eq!(id, engine_id, "the hub's container is orrery-{user}");
    id
}

/// A request through the hub's proxy to `/user/<user>/<rest>` with `token`.
pub async fn proxied(
    d: &Daemon,
    method: &str,
    user: &str,
    rest: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = d
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}/user/{user}/{rest}", d.url),
        )
        .header("Authorization", format!("token {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} /user/{user}/{rest}: {e}"))
}

/// `proxied`, expecting `status`; the JSON body.
pub async fn proxied_json(
    d: &Daemon,
    method: &str,
    user: &str,
    rest: &str,
    token: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let r = proxied(d, method, user, rest, token, body).await;
    let got = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(
        got,
        status,
        "{method} /user/{user}/{rest}: {text}\nhub log:\n{}\ncontainer log:\n{}",
        d.log(),
        container_logs(&container_name(user))
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON from {rest} ({e}): {text}"))
}

/// The handshake of kernel `kid`'s channels WebSocket through the proxy, as a browser sends it:
/// the token in the URL (JupyterHub honours that only with `Sec-Fetch-Mode: websocket`) and
/// `origin` as the Origin, which Jupyter Server checks against the Host header the proxy must
/// keep. `query` is more of the URL's query (`&name=value…`).
pub fn channels_request(
    d: &Daemon,
    user: &str,
    token: &str,
    kid: &str,
    query: &str,
    origin: &str,
) -> Request {
    let url = format!(
        "ws://127.0.0.1:{}/user/{user}/api/kernels/{kid}/channels?token={token}{query}",
        d.port
    );
    let mut req = url.as_str().into_client_request().expect("ws request");
    req.headers_mut()
        .insert("sec-fetch-mode", "websocket".parse().unwrap());
    req.headers_mut().insert("origin", origin.parse().unwrap());
    req
}

/// A new kernel of `spec` through the user's server (Jupyter Server's API): its id.
pub async fn create_kernel(d: &Daemon, user: &str, token: &str, spec: &str) -> String {
    let k = proxied_json(
        d,
        "POST",
        user,
        "api/kernels",
        token,
        Some(serde_json::json!({"name": spec})),
        201,
    )
    .await;
    let kid = k["id"].as_str().expect("kernel id").to_string();
    assert_eq!(k["name"], spec, "{k}");
    kid
}

/// Ids of every container (running or not) labelled for `user`.
pub fn containers_of(user: &str) -> Vec<String> {
    let out = docker_ok(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label=org.orrery.user={user}"),
        "--format",
        "{{.ID}}",
    ]);
    out.lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}
