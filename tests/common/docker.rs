//! Docker helpers shared by the tests that need an engine and the single-user image.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Daemon, ADMIN_SERVICE_TOKEN as ADMIN};

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
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/images/build.sh");
            let out = Command::new("bash")
                .arg(script)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .expect("run tests/images/build.sh");
            assert!(
                out.status.success(),
                "tests/images/build.sh failed ({}); the Docker tests need the single-user image",
                out.status
            );
            let image = String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            assert!(
                image.starts_with("orrery-singleuser:"),
                "tests/images/build.sh printed no image reference: {image:?}"
            );
            docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
            image
        })
        .clone()
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

/// The last lines of a container's log, for failure messages.
pub fn container_logs(name: &str) -> String {
    let (_, out, err) = docker(&["logs", "--tail", "40", name]);
    format!("{out}\n{err}")
}

/// `docker exec CONTAINER ARGS…`: (exit code, stdout, stderr).
pub fn exec(container: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("docker")
        .arg("exec")
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

// ------------------------------------------------------------------------------------------
// hub and proxy helpers

/// Start `user`'s server through the API and wait until the hub calls it ready; returns the
/// container id the hub recorded (checked against the engine's).
pub async fn start_server(d: &Daemon, user: &str) -> String {
    let began = Instant::now();
    let (s, b, _) = d
        .api("POST", &format!("/users/{user}/server"), Some(ADMIN), None)
        .await;
    assert!(
        s == 201 || s == 202,
        "spawn {user}: {s} {b}\nlog:\n{}\ncontainer log:\n{}",
        d.log(),
        container_logs(&container_name(user))
    );
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
            s == 202 && !srv.is_null(),
            "{user}'s server is neither ready nor pending after {s}: {u}\nlog:\n{}",
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
    assert_eq!(srv["url"], format!("/user/{user}/"), "{model}");
    assert_eq!(model["server"], format!("/user/{user}/"), "{model}");
    assert_eq!(srv["pending"], Value::Null, "{model}");
    let id = srv["state"]["container_id"]
        .as_str()
        .unwrap_or_else(|| panic!("container_id in the server state: {model}"))
        .to_string();
    let engine_id = docker_ok(&["inspect", "-f", "{{.Id}}", &container_name(user)]);
    assert_eq!(id, engine_id, "the hub's container is orrery-{user}");
    eprintln!(
        "[docker] {user}'s server ready in {:?} ({s})",
        began.elapsed()
    );
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
