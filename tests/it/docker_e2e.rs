//! End to end with the Docker backend: the real `orrery serve` binary spawns the single-user
//! test image (`tests/images/build.sh`) on this machine's Docker engine, and the tests talk to
//! Jupyter Server through the hub's proxy, inspect the containers with the `docker` CLI and
//! check isolation, persistence, failure reporting, limits and re-adoption after a crash.
//!
//! Needs a running Docker engine and the image (built offline, cached by recipe hash). A missing
//! prerequisite is a failure, never a skip.
//!
//! Every test has its own corner of the engine (`common::docker::Env`): network
//! (`orrery-test-<n>`), home volumes (`orrery-test-<n>-<user>`) and user names (`e<n>…`), removed
//! also when the test fails. The tests of this file run one at a time: each starts containers
//! running a full Jupyter server, and on a small machine several at once make spawn times (and
//! so the tests) erratic.

use std::time::{Duration, Instant};

use crate::common::docker::{
    assert_host_reaches, channels_request, connect_from, container_name, containers_of,
    create_kernel, docker, docker_ok, exec, has_env, image, inspect, ip_address, proxied,
    proxied_json, python, running, server_api, sh, start_server, wait_no_servers, Env,
};
use crate::common::{Daemon, ADMIN_SERVICE_TOKEN as ADMIN};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

// ------------------------------------------------------------------------------------------
// helpers

/// Every test's corner of the engine; its users are `e<n>…`.
async fn env() -> Env {
    Env::new("e").await
}

/// A response header, if it is there and text.
fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The server model of `user` (admin view); Null when no server.
async fn server_model(d: &Daemon, user: &str) -> Value {
    let (s, u, _) = d
        .api("GET", &format!("/users/{user}"), Some(ADMIN), None)
        .await;
    assert_eq!(s, 200, "{u}");
    u["servers"][""].clone()
}

// ------------------------------------------------------------------------------------------
// tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_spawn_proxy_and_kernel_execute() {
    let mut env = env().await;
    let (d, user, token, id) = env.one_user("k", "", "").await;

    // Jupyter Server's own API answers through the hub's proxy, with its own headers.
    let r = proxied(&d, "GET", &user, "api/status", &token, None).await;
    assert_eq!(r.status(), 200, "{:?}", r.headers());
    assert!(
        header(&r, "server").is_some_and(|v| v.starts_with("TornadoServer/")),
        "Server header from Jupyter: {:?}",
        r.headers()
    );
    assert!(
        header(&r, "content-security-policy").is_some_and(|v| v.contains("frame-ancestors")),
        "Jupyter's CSP header came through: {:?}",
        r.headers()
    );
    assert!(
        header(&r, "content-type").is_some_and(|v| v.starts_with("application/json")),
        "{:?}",
        r.headers()
    );
    let status: Value = r.json().await.expect("status JSON");
    assert_eq!(status["kernels"], 0, "{status}");
    assert!(status["started"].is_string(), "{status}");
    // Without a token the API refuses (the proxy does not authenticate; the server does).
    let anon = d
        .http
        .get(format!("{}/user/{user}/api/status", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 403, "anonymous API request");

    // A kernel, and code executed in it over the channels WebSocket through the proxy.
    let kid = create_kernel(&d, &user, &token, "python3").await;
    // As a browser sends it, with a same-origin Origin.
    let ws_req = channels_request(&d, &user, &token, &kid, "", &d.url);
    let (mut ws, resp) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(ws_req),
    )
    .await
    .expect("WebSocket handshake within 30 s")
    .unwrap_or_else(|e| {
        panic!(
            "WebSocket to the kernel through the proxy: {e}\n{}",
            d.log()
        )
    });
    assert_eq!(resp.status(), 101);
    let msg_id = format!("exec-{}", uuid::Uuid::new_v4());
    let request = json!({
        "header": {
            "msg_id": msg_id,
            "username": user,
            "session": uuid::Uuid::new_v4().to_string(),
            "msg_type": "execute_request",
            "version": "5.3",
            "date": chrono::Utc::now().to_rfc3339(),
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": "1+1",
            "silent": false,
            "store_history": true,
            "user_expressions": {},
            "allow_stdin": false,
            "stop_on_error": true,
        },
        "channel": "shell",
        "buffers": [],
    });
    ws.send(Message::Text(request.to_string().into()))
        .await
        .expect("send execute_request");
    let mut seen = Vec::new();
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(m) = ws.next().await {
            let m = m.expect("WebSocket message");
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(text.as_str()).expect("JSON message");
            let kind = v["msg_type"]
                .as_str()
                .or(v["header"]["msg_type"].as_str())
                .unwrap_or("")
                .to_string();
            seen.push(format!("{}:{kind}", v["channel"].as_str().unwrap_or("?")));
            if kind == "execute_result" && v["parent_header"]["msg_id"] == msg_id.as_str() {
                return Some(v);
            }
        }
        None
    })
    .await;
    let result = match result {
        Ok(Some(v)) => v,
        Ok(None) => panic!("the WebSocket closed before execute_result; saw {seen:?}"),
        Err(_) => panic!("no execute_result within 60 s; saw {seen:?}"),
    };
    assert_eq!(result["channel"], "iopub", "{result}");
    assert_eq!(result["content"]["data"]["text/plain"], "2", "{result}");
    let _ = ws.close(None).await;
    let status = proxied_json(&d, "GET", &user, "api/status", &token, None, 200).await;
    assert_eq!(status["kernels"], 1, "{status}");

    // The container: labels, unprivileged user, hardening.
    let c = inspect(&id);
    assert_eq!(c["Name"], format!("/orrery-{user}"));
    assert_eq!(
        c["Config"]["Labels"]["org.orrery.user"],
        user.as_str(),
        "{}",
        c["Config"]["Labels"]
    );
    assert_eq!(c["Config"]["Labels"]["org.orrery.kind"], "notebook");
    assert_eq!(c["Config"]["Labels"]["org.orrery.server"], "");
    assert_eq!(c["State"]["Running"], true);
    // GPUs go to kernels: a notebook container sees none, whatever its image or engine says.
    assert!(
        has_env(&c, "NVIDIA_VISIBLE_DEVICES=void"),
        "{}",
        c["Config"]["Env"]
    );
    assert_eq!(c["HostConfig"]["DeviceRequests"], Value::Null);
    assert_eq!(
        c["HostConfig"]["CapDrop"],
        json!(["ALL"]),
        "{}",
        c["HostConfig"]
    );
    assert_eq!(c["HostConfig"]["SecurityOpt"], json!(["no-new-privileges"]));
    assert_eq!(c["HostConfig"]["PidsLimit"], 1024);
    assert_eq!(c["HostConfig"]["Privileged"], false);
    assert_eq!(c["HostConfig"]["NetworkMode"], env.network.as_str());
    assert_eq!(
        c["Mounts"][0]["Name"],
        env.volume(&user).as_str(),
        "home volume: {}",
        c["Mounts"]
    );
    assert_eq!(c["Mounts"][0]["Destination"], "/home/jovyan");
    assert_eq!(exec(&id, &["id", "-u"]).1, "1000");
    let (_, caps, _) = sh(&id, "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status");
    assert!(caps.contains("CapEff:\t0000000000000000"), "{caps}");
    assert!(caps.contains("NoNewPrivs:\t1"), "{caps}");
    // The server environment the hub gave it.
    let (_, envs, _) = sh(&id, "env | sort");
    assert!(
        envs.contains(&format!("JUPYTERHUB_USER={user}\n")),
        "{envs}"
    );
    assert!(
        envs.contains(&format!("JUPYTERHUB_SERVICE_PREFIX=/user/{user}/\n")),
        "{envs}"
    );
    assert!(
        envs.contains("JUPYTERHUB_API_URL=http://")
            && envs.contains(&format!(":{}/hub/api\n", d.internal_port)),
        "{envs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_readopts_the_same_server() {
    let mut env = env().await;
    let (mut d, user, token, id) = env.one_user("r", "", "").await;
    proxied_json(&d, "GET", &user, "api/status", &token, None, 200).await;

    d.kill();
    // The server outlives the hub.
    assert_eq!(running(&id), "true");
    let began = Instant::now();
    d.spawn().await;
    eprintln!("[docker_e2e] restart answered in {:?}", began.elapsed());

    let status = proxied_json(&d, "GET", &user, "api/status", &token, None, 200).await;
    assert!(status["started"].is_string(), "{status}");
    assert_eq!(
        containers_of(&user),
        vec![id.clone()],
        "exactly the same container"
    );
    assert_eq!(running(&id), "true");
    let srv = server_model(&d, &user).await;
    assert_eq!(srv["ready"], true, "{srv}");
    assert_eq!(srv["pending"], Value::Null, "{srv}");
    assert_eq!(srv["state"]["container_id"], id.as_str(), "{srv}");
    assert!(d.log().contains("re-adopted running server"), "{}", d.log());
    // The server still reaches the restarted hub with its own token.
    let (code, out, err) = python(
        &id,
        "import json,os,urllib.request as u; r=u.Request(os.environ['JUPYTERHUB_API_URL']+'/user', headers={'Authorization':'token '+os.environ['JUPYTERHUB_API_TOKEN']}); print(json.load(u.urlopen(r, timeout=10))['name'])",
    );
    assert_eq!(
        (code, out.as_str()),
        (0, user.as_str()),
        "{err}\n{}",
        d.log()
    );
    // Starting again is refused (no second container).
    let (s, b) = server_api(&d, "POST", &user, ADMIN).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(containers_of(&user), vec![id.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_containers_cannot_reach_each_other() {
    let mut env = env().await;
    let a = env.user("a");
    let b = env.user("b");
    let d = env.daemon(&[&a, &b], "", "").await;
    let token_a = d.token_for(&a).await;
    let token_b = d.token_for(&b).await;
    let id_a = start_server(&d, &a).await;
    let id_b = start_server(&d, &b).await;

    let ip_b = ip_address(&id_b);
    // Control: B's server listens there (the hub, on the host, reaches it).
    assert_host_reaches(&ip_b, 8888, "B's server").await;
    // A cannot open a connection to B.
    let (code, out, err) = connect_from(&id_a, &ip_b, 8888);
    assert_ne!(code, 0, "A reached B's server at {ip_b}:8888: {out} {err}");
    assert!(!out.contains("connected"), "{out}");
    assert!(
        err.contains("timed out") || err.contains("refused") || err.contains("unreachable"),
        "A's connection to B failed for a network reason: {err}"
    );
    // …but reaches the hub's internal API.
    let (code, out, err) = python(
        &id_a,
        "import urllib.request,os; print(urllib.request.urlopen(os.environ['JUPYTERHUB_API_URL'] + '/', timeout=10).status)",
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "200"),
        "A reaches the hub API: {err}\n{}",
        d.log()
    );

    // A's token can neither start nor stop B's server, nor use it.
    let (s, body) = server_api(&d, "DELETE", &b, &token_a).await;
    assert!(s == 403 || s == 404, "A stops B's server: {s} {body}");
    let (s, body) = server_api(&d, "POST", &b, &token_a).await;
    assert!(s == 403 || s == 404, "A starts B's server: {s} {body}");
    let r = proxied(&d, "GET", &b, "api/status", &token_a, None).await;
    assert_eq!(r.status(), 403, "A's token on B's server");
    let r = proxied(&d, "GET", &b, "api/contents", &token_a, None).await;
    assert_eq!(r.status(), 403, "A's token on B's files");
    // B's server is untouched.
    let srv = server_model(&d, &b).await;
    assert_eq!(srv["ready"], true, "{srv}");
    assert_eq!(srv["state"]["container_id"], id_b.as_str());
    assert_eq!(running(&id_b), "true");
    proxied_json(&d, "GET", &b, "api/status", &token_b, None, 200).await;
    proxied_json(&d, "GET", &a, "api/status", &token_a, None, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_directory_survives_stop_and_start() {
    let mut env = env().await;
    let (d, user, token, first) = env.one_user("h", "", "").await;
    let content = format!("hello-from-{user}\n");
    let saved = proxied_json(
        &d,
        "PUT",
        &user,
        "api/contents/persist.txt",
        &token,
        Some(json!({"type": "file", "format": "text", "content": content})),
        201,
    )
    .await;
    assert_eq!(saved["path"], "persist.txt", "{saved}");
    // It is a file in the home volume, owned by the notebook user.
    let (_, ls, _) = exec(&first, &["stat", "-c", "%u %s", "/home/jovyan/persist.txt"]);
    assert_eq!(ls, format!("1000 {}", content.len()));

    let (s, b) = server_api(&d, "DELETE", &user, ADMIN).await;
    assert_eq!(s, 204, "{b}");
    assert_eq!(server_model(&d, &user).await, Value::Null);
    assert_eq!(
        containers_of(&user),
        Vec::<String>::new(),
        "the container is gone"
    );
    let (ok, _, err) = docker(&["inspect", &first]);
    assert!(!ok, "the container is removed: {err}");
    let vol = inspect(&env.volume(&user));
    assert_eq!(
        vol["Name"],
        env.volume(&user).as_str(),
        "the home volume is kept"
    );
    assert_eq!(vol["Labels"]["org.orrery.user"], user.as_str(), "{vol}");
    assert_eq!(vol["Labels"]["org.orrery.kind"], "home", "{vol}");
    // Through the proxy, a stopped server sends the browser to the hub's page for it.
    let r = proxied(&d, "GET", &user, "api/contents/persist.txt", &token, None).await;
    assert_eq!(r.status(), 307);
    assert_eq!(
        header(&r, "location"),
        Some(format!("/hub/user/{user}/api/contents/persist.txt").as_str())
    );

    let second = start_server(&d, &user).await;
    assert_ne!(first, second, "a new container");
    let file = proxied_json(
        &d,
        "GET",
        &user,
        "api/contents/persist.txt?type=file&format=text",
        &token,
        None,
        200,
    )
    .await;
    assert_eq!(file["content"], content.as_str(), "{file}");
    assert_eq!(file["type"], "file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_spawn_shows_why() {
    let mut env = env().await;
    let user = env.user("f");
    let d = env
        .daemon(
            &[&user],
            "cmd = [\"sh\", \"-c\", \"echo boom-before-ready >&2; exit 3\"]",
            "",
        )
        .await;
    // Every expectation is checked and the failures reported together, so one run shows all
    // that is wrong with a failed spawn.
    let mut problems: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };

    let began = Instant::now();
    let (s, b) = server_api(&d, "POST", &user, ADMIN).await;
    eprintln!(
        "[docker_e2e] failed spawn answered {s} in {:?}: {b}",
        began.elapsed()
    );
    assert_eq!(s, 500, "{b}\n{}", d.log());
    assert_eq!(b["status"], 500, "{b}");
    let msg = b["message"].as_str().unwrap_or_default().to_string();
    check(
        msg.contains("boom-before-ready"),
        format!("the server's output is not in the API error: {msg:?}"),
    );
    check(
        msg.contains("exited with code 3"),
        format!("the exit code is not in the API error: {msg:?}"),
    );

    // The progress stream ends with the reason.
    let r = d
        .http
        .get(format!("{}/hub/api/users/{user}/server/progress", d.url))
        .header("Authorization", format!("token {ADMIN}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("progress");
    assert_eq!(r.status(), 200);
    assert!(
        header(&r, "content-type").is_some_and(|v| v.starts_with("text/event-stream")),
        "{:?}",
        r.headers()
    );
    let text = r
        .text()
        .await
        .expect("progress stream ends after the failure");
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|l| serde_json::from_str(l.trim()).expect("event JSON"))
        .collect();
    let last = events.last().unwrap_or_else(|| panic!("no events: {text}"));
    assert_eq!(events[0]["message"], "Server requested", "{text}");
    assert_eq!(last["failed"], true, "{text}");
    assert_eq!(last["progress"], 100, "{text}");
    let last_msg = last["message"].as_str().unwrap_or_default();
    assert!(last_msg.starts_with("Spawn failed: "), "{text}");
    check(
        last_msg.contains("boom-before-ready") && last_msg.contains("exited with code 3"),
        format!("the last progress event does not say why: {last_msg:?}"),
    );

    // Nothing is left: no server record, no container.
    let (_, u, _) = d
        .api("GET", &format!("/users/{user}"), Some(ADMIN), None)
        .await;
    assert_eq!(u["servers"], json!({}), "{u}");
    assert_eq!(u["server"], Value::Null, "{u}");
    assert_eq!(u["pending"], Value::Null, "{u}");
    let left: Vec<String> = containers_of(&user)
        .iter()
        .map(|id| {
            docker_ok(&[
                "inspect",
                "-f",
                "{{.Name}} {{.State.Status}} (exit {{.State.ExitCode}})",
                id,
            ])
        })
        .collect();
    check(
        left.is_empty(),
        format!("containers are left behind after the failed spawn: {left:?}"),
    );
    assert!(
        problems.is_empty(),
        "failed spawn:\n  {}\nhub log:\n{}",
        problems.join("\n  "),
        d.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_is_enforced_and_exported() {
    let mut env = env().await;
    let (d, user, token, id) = env
        .one_user("m", "", "[limits]\nmemory = \"256M\"\ncpu = 0.5\n")
        .await;

    let c = inspect(&id);
    assert_eq!(
        c["HostConfig"]["Memory"], 268435456u64,
        "{}",
        c["HostConfig"]
    );
    assert_eq!(
        c["HostConfig"]["MemorySwap"], 268435456u64,
        "no swap beyond the limit"
    );
    assert_eq!(
        c["HostConfig"]["NanoCpus"], 500000000u64,
        "{}",
        c["HostConfig"]
    );
    assert_eq!(exec(&id, &["printenv", "MEM_LIMIT"]).1, "268435456");
    assert_eq!(exec(&id, &["printenv", "CPU_LIMIT"]).1, "0.5");
    // The kernel's cgroup carries the limit (v1 or v2)…
    let (_, limit, _) = sh(
        &id,
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    );
    assert_eq!(limit, "268435456");
    // …and enforces it: 400 MiB cannot be touched inside the container.
    let (code, out, err) = python(
        &id,
        "b = bytearray(400 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('allocated')",
    );
    assert!(
        code != 0 && !out.contains("allocated"),
        "allocated 400 MiB under a 256 MiB limit: {code} {out} {err}"
    );
    // The server itself survived and still answers.
    let status = proxied_json(&d, "GET", &user, "api/status", &token, None, 200).await;
    assert!(status["started"].is_string(), "{status}");
}

#[tokio::test]
async fn deleting_a_user_keeps_their_home_unless_purged() {
    let mut env = env().await;
    let user = env.user("p");
    let volume = env.volume(&user);
    let d = env.daemon(&[&user], "", "").await;
    start_server(&d, &user).await;
    // Deleting the user stops the server, removes the container, keeps the home volume.
    let (s, b, _) = d
        .api("DELETE", &format!("/users/{user}"), Some(ADMIN), None)
        .await;
    assert_eq!(s, 204, "{b}");
    assert_eq!(
        containers_of(&user),
        Vec::<String>::new(),
        "the container is gone"
    );
    let (ok, _, err) = docker(&["volume", "inspect", &volume]);
    assert!(ok, "the home volume survives deleting the user: {err}");
    // The purge endpoint refuses while the user exists.
    d.create_users(&[&user], false).await;
    let (s, b, _) = d
        .api(
            "POST",
            &format!("/orrery/users/{user}/purge"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, 400, "{b}");
    // `orrery users remove NAME --purge` deletes the user and then the volume.
    let (code, out, err) = d.cli(&["users", "remove", &user, "--purge"], None);
    assert_eq!(code, 0, "{out}{err}\n{}", d.log());
    assert!(out.contains(&format!("removed volume {volume}")), "{out}");
    let (ok, _, _) = docker(&["volume", "inspect", &volume]);
    assert!(!ok, "the volume is purged");
}

/// Forward a unix socket at `path` to the Docker engine's socket, from now on.
fn engine_proxy(path: std::path::PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let listener = tokio::net::UnixListener::bind(&path).expect("bind the proxy socket");
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut engine) =
                    tokio::net::UnixStream::connect("/var/run/docker.sock").await
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_comes_late_is_picked_up_without_a_restart() {
    let mut env = env().await;
    let user = env.user("late");
    let sockdir = tempfile::tempdir().unwrap();
    let sock = sockdir.path().join("docker.sock");
    let d = env
        .daemon(
            &[&user],
            &format!("socket = \"unix://{}\"", sock.display()),
            "",
        )
        .await;
    // No engine yet: the hub serves, and a spawn says why it can't start.
    let (s, b) = server_api(&d, "POST", &user, ADMIN).await;
    assert_eq!(s, 501, "{b}");
    assert!(
        b["message"].as_str().unwrap_or("").contains("not ready"),
        "{b}"
    );
    let (s, _, _) = d
        .api("GET", &format!("/users/{user}"), Some(ADMIN), None)
        .await;
    assert_eq!(s, 200, "the hub keeps serving");
    // The engine appears; the hub's background retry picks it up (backoff ≤ 30 s).
    let proxy = engine_proxy(sock.clone());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (s, b) = server_api(&d, "POST", &user, ADMIN).await;
        if s == 201 || s == 202 {
            break;
        }
        assert_eq!(s, 501, "{b}");
        assert!(
            Instant::now() < deadline,
            "the engine was never picked up:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(d.log().contains("backend ready"), "{}", d.log());
    let _ = server_api(&d, "DELETE", &user, ADMIN).await;
    proxy.abort();
}

/// The reconcile loop against the engine: a container started behind the daemon's back with
/// this hub's labels and no record is removed within a reconcile period or two; the user's
/// running server and another hub's container are left alone; a record whose container is
/// removed behind the daemon's back is forgotten.
#[tokio::test]
async fn reconcile_removes_unrecorded_containers_and_forgets_vanished_servers() {
    let mut env = env().await;
    let user = env.user("rec");
    let ghost = env.user("ghost");
    let config =
        env.config("", "")
            .replacen("[spawner]\n", "[spawner]\nreconcile_interval = \"2s\"\n", 1);
    let d = Daemon::start(&config).await;
    d.create_users(&[&user], false).await;
    let server = start_server(&d, &user).await;
    let hub_label = inspect(&server)["Config"]["Labels"]["org.orrery.hub"]
        .as_str()
        .expect("the hub label")
        .to_string();

    let stray = |name: &str, hub: &str| {
        docker_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--label",
            "org.orrery.kind=notebook",
            "--label",
            &format!("org.orrery.user={ghost}"),
            "--label",
            "org.orrery.server=",
            "--label",
            &format!("org.orrery.hub={hub}"),
            &image(),
            "sleep",
            "300",
        ])
    };
    let ours = format!("orrery-{ghost}");
    let theirs = format!("orrery-{ghost}-other-hub");
    stray(&ours, &hub_label);
    stray(&theirs, "another-hub");
    // Seen by the next pass, removed by the one after: at most two periods (2 s each) and the
    // time a pass takes.
    let began = Instant::now();
    while docker(&["inspect", &ours]).0 {
        assert!(
            began.elapsed() < Duration::from_secs(7),
            "the unrecorded container is still there after {:?}\n{}",
            began.elapsed(),
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("unrecorded container removed after {:?}", began.elapsed());
    assert_eq!(
        running(&theirs),
        "true",
        "another hub's container is not ours to remove"
    );
    let _ = docker(&["rm", "-f", &theirs]);
    assert_eq!(running(&server), "true", "the user's server keeps running");
    assert_eq!(server_model(&d, &user).await["ready"], true);

    // The user's container removed behind the daemon's back: its record goes too.
    docker_ok(&["rm", "-f", &server]);
    wait_no_servers(&d, &user, Duration::from_secs(15)).await;
}

/// `orrery backup --homes --stop-servers` stops the running server before copying its home and
/// says so; `orrery restore` refuses while this hub's containers run (another copy of the hub
/// may be using them) and goes ahead with `--force`, moving the state it replaces aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_stops_servers_when_asked_and_restore_refuses_running_containers() {
    let mut env = env().await;
    let (mut d, user, _token, id) = env.one_user("b", "", "").await;
    let (code, _, err) = exec(&id, &["sh", "-c", "echo kept > ~/kept.txt"]);
    assert_eq!(code, 0, "{err}");
    let archive = d.state_dir().with_file_name("hub.tar.gz");
    let archive = archive.to_str().expect("path");
    let (code, out, err) = d.cli(&["backup", archive, "--homes", "--stop-servers"], None);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("stopped for the backup: {user}")),
        "{out}"
    );
    assert!(
        containers_of(&user).is_empty(),
        "the server was stopped first"
    );
    assert_eq!(server_model(&d, &user).await, Value::Null);

    // The server runs again; the daemon stops (its servers keep running).
    let again = start_server(&d, &user).await;
    d.stop();
    assert_eq!(running(&again), "true");
    let (code, out, err) = d.cli(&["restore", archive], None);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("are running")
            && err.contains(&container_name(&user))
            && err.contains("--force"),
        "{err}"
    );
    assert!(
        !std::fs::read_dir(d.state_dir())
            .expect("state dir")
            .flatten()
            .any(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with("sled.pre-restore")),
        "a refused restore changes nothing"
    );
    let (code, out, err) = d.cli(&["restore", archive, "--force"], None);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("sled.pre-restore-"), "{out}");
    assert!(out.contains(&format!("restored {user}'s home")), "{out}");
    d.spawn().await;
    // The restored state remembers no server (it was stopped for the backup); the running
    // container is unrecorded, so the hub removes it, and the user starts a fresh one.
    let began = Instant::now();
    while containers_of(&user).contains(&again) {
        assert!(began.elapsed() < Duration::from_secs(30), "{}", d.log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let fresh = start_server(&d, &user).await;
    let (code, out, _) = exec(&fresh, &["cat", "/home/jovyan/kept.txt"]);
    assert_eq!((code, out.as_str()), (0, "kept"));
}

/// A page of the hub as the holder of `cookie` sees it: (status, body).
async fn page_as(d: &Daemon, cookie: &str, path: &str) -> (u16, String) {
    crate::common::page_as(&d.url, cookie, path).await
}

/// Two profiles with another image tag and memory: the spawn form offers both to a member of
/// the group the big one is for and only the small one to others; choosing one starts a
/// container with that image and memory limit; the next start that chooses nothing reuses it;
/// a profile the user may not choose is refused naming the ones they may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_on_the_spawn_form_pick_image_and_memory() {
    let mut env = env().await;
    let member = env.user("pm");
    let other = env.user("po");
    let big_image = "orrery-singleuser:profile-big";
    docker_ok(&["tag", &image(), big_image]);
    let profiles = format!(
        "[[profiles]]\nname = \"small\"\ndisplay_name = \"Small\"\ndescription = \"For the exercises\"\nmemory = \"512M\"\n\n\
         [[profiles]]\nname = \"big\"\ndisplay_name = \"Big\"\nimage = \"{big_image}\"\nmemory = \"1G\"\ngroups = [\"class-a\"]\n"
    );
    let d = env.daemon(&[&member, &other], "", &profiles).await;
    let (s, b, _) = d
        .api(
            "POST",
            "/groups/class-a",
            Some(ADMIN),
            Some(json!({"users": [member]})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let member_cookie = crate::common::login_at(&d.url, &member, "member-password")
        .await
        .expect("member logs in");
    let other_cookie = crate::common::login_at(&d.url, &other, "other-password")
        .await
        .expect("other logs in");

    // The form: both profiles for the member, the small one for the other user.
    let (s, form) = page_as(&d, &member_cookie, "/hub/spawn").await;
    assert_eq!(s, 200, "{form}");
    assert!(
        form.contains("value=\"small\"") && form.contains("value=\"big\""),
        "{form}"
    );
    assert!(
        form.contains("For the exercises") && form.contains(big_image),
        "{form}"
    );
    let (_, form_other) = page_as(&d, &other_cookie, "/hub/spawn").await;
    assert!(
        form_other.contains("value=\"small\"") && !form_other.contains("value=\"big\""),
        "{form_other}"
    );
    // The home page leads the member to the form (a choice to make), the other straight on.
    let (_, home) = page_as(&d, &member_cookie, "/hub/home").await;
    assert!(home.contains(&format!("/hub/spawn/{member}")), "{home}");
    let (_, home_other) = page_as(&d, &other_cookie, "/hub/home").await;
    assert!(!home_other.contains("/hub/spawn/"), "{home_other}");

    // The member chooses "big" on the form.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{}/hub/spawn/{member}", d.url))
        .header("Cookie", &member_cookie)
        .form(&[
            ("_xsrf", crate::common::form_xsrf(&form).as_str()),
            ("profile", "big"),
        ])
        .send()
        .await
        .expect("submit");
    assert!(r.status().is_redirection(), "{}", r.status());
    let id = crate::common::docker::wait_ready(&d, &member).await;
    let c = inspect(&id);
    assert_eq!(c["Config"]["Image"], big_image, "the profile's image");
    assert_eq!(
        c["HostConfig"]["Memory"],
        1024u64 * 1024 * 1024,
        "the profile's memory"
    );
    assert_eq!(
        server_model(&d, &member).await["user_options"],
        json!({"profile": "big"})
    );

    // Stopped and started again choosing nothing: the same profile.
    let (s, _) = server_api(&d, "DELETE", &member, ADMIN).await;
    assert!(s == 204 || s == 202, "{s}");
    let id = start_server(&d, &member).await;
    assert_eq!(
        inspect(&id)["Config"]["Image"],
        big_image,
        "the choice is reused"
    );

    // A profile the user may not choose: 400 naming the ones they may.
    let token = d.token_for(&other).await;
    let (s, b, _) = d
        .api(
            "POST",
            &format!("/users/{other}/server"),
            Some(&token),
            Some(json!({"user_options": {"profile": "big"}})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"big\"") && m.contains("choose one of: small")),
        "{b}"
    );
    let id = start_server(&d, &other).await;
    let c = inspect(&id);
    assert_eq!(
        c["Config"]["Image"],
        image(),
        "the small profile keeps the usual image"
    );
    assert_eq!(c["HostConfig"]["Memory"], 512u64 * 1024 * 1024);
}

/// The model of `user`'s server `server` ("" for the default one); Null when none.
async fn named_model(d: &Daemon, user: &str, server: &str) -> Value {
    let (s, u, _) = d
        .api("GET", &format!("/users/{user}"), Some(ADMIN), None)
        .await;
    assert_eq!(s, 200, "{u}");
    u["servers"][server].clone()
}

/// Ask for `user`'s named server `server` to start (as an admin).
async fn start_named(d: &Daemon, user: &str, server: &str) {
    let (s, b, _) = d
        .api(
            "POST",
            &format!("/users/{user}/servers/{server}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert!(s == 201 || s == 202, "{s} {b}\n{}", d.log());
}

/// Wait until `user`'s named server `server` is ready; its container id.
async fn named_ready(d: &Daemon, user: &str, server: &str) -> String {
    let began = Instant::now();
    loop {
        let m = named_model(d, user, server).await;
        if m["ready"] == true {
            return m["state"]["container_id"]
                .as_str()
                .expect("container id")
                .to_string();
        }
        assert!(!m.is_null(), "{user}/{server} is gone:\n{}", d.log());
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "{m}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Where a server sends a browser with no login: its OAuth client id at the hub's authorize
/// endpoint (following the server's own redirects).
async fn oauth_client_of(d: &Daemon, path: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut url = format!("{}{path}", d.url);
    for _ in 0..5 {
        let r = client.get(&url).send().await.expect("request");
        let Some(loc) = r.headers().get("location").and_then(|v| v.to_str().ok()) else {
            panic!("{url} answered {} without a redirect", r.status());
        };
        let next = if loc.starts_with("http") {
            loc.to_string()
        } else {
            format!("{}{loc}", d.url)
        };
        if next.contains("/hub/api/oauth2/authorize") {
            let parsed = reqwest::Url::parse(&next).expect("url");
            return parsed
                .query_pairs()
                .find(|(k, _)| k == "client_id")
                .map(|(_, v)| v.into_owned())
                .expect("client_id");
        }
        url = next;
    }
    panic!("no OAuth redirect from {path}");
}

/// Named servers: a user's default server and a named one run side by side in their own
/// containers, each behind the proxy at its own prefix with its own OAuth client; the culler
/// stops each on its own idleness; both are re-adopted after `kill -9` of the daemon; deleting
/// the named one removes its kernel and leaves the default server's kernel alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_servers_run_side_by_side_and_live_apart() {
    let mut env = env().await;
    let user = env.user("n");
    let extra = "[spawner.named_servers]\nenabled = true\nlimit_per_user = 1\n\n\
                 [kernels]\nremote = true\n\n[cull]\nenabled = true\ntimeout = \"8s\"\nevery = \"1s\"\n";
    let mut d = env.daemon(&[&user], "", extra).await;
    let token = d.token_for(&user).await;
    let default_id = start_server(&d, &user).await;
    start_named(&d, &user, "lab2").await;
    let named_id = named_ready(&d, &user, "lab2").await;
    assert_ne!(default_id, named_id, "two containers");
    assert_eq!(
        inspect(&named_id)["Name"],
        format!("/{}--lab2", container_name(&user)),
        "the named server's container"
    );
    // A second named server is over the limit.
    let (s, b, _) = d
        .api(
            "POST",
            &format!("/users/{user}/servers/third"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["message"]
            .as_str()
            .is_some_and(|m| m.contains("limit_per_user")),
        "{b}"
    );

    // Each behind the proxy at its own prefix, with its own OAuth client.
    let st = proxied_json(&d, "GET", &user, "api/status", &token, None, 200).await;
    assert!(st["started"].is_string(), "{st}");
    proxied_json(&d, "GET", &user, "lab2/api/status", &token, None, 200).await;
    assert_eq!(
        oauth_client_of(&d, &format!("/user/{user}/lab")).await,
        format!("jupyterhub-user-{user}")
    );
    assert_eq!(
        oauth_client_of(&d, &format!("/user/{user}/lab2/lab")).await,
        format!("jupyterhub-user-{user}-lab2")
    );
    assert!(has_env(
        &inspect(&named_id),
        &format!("JUPYTERHUB_SERVICE_PREFIX=/user/{user}/lab2/")
    ));

    // A kernel in each (remote kernels: containers of their own, labelled with the server).
    let k_default = proxied_json(
        &d,
        "POST",
        &user,
        "api/kernels",
        &token,
        Some(json!({})),
        201,
    )
    .await;
    let k_named = proxied_json(
        &d,
        "POST",
        &user,
        "lab2/api/kernels",
        &token,
        Some(json!({})),
        201,
    )
    .await;
    let (k_default, k_named) = (
        k_default["id"].as_str().expect("id").to_string(),
        k_named["id"].as_str().expect("id").to_string(),
    );
    let listed = proxied_json(&d, "GET", &user, "lab2/api/kernels", &token, None, 200).await;
    assert_eq!(
        listed.as_array().map(|a| a.len()),
        Some(1),
        "a server lists its own kernels: {listed}"
    );

    // The admin page lists the running named server with its own stop button.
    let admin = env.user("na");
    d.create_users(&[&admin], true).await;
    let admin_cookie = crate::common::login_at(&d.url, &admin, "admin-password")
        .await
        .expect("admin logs in");
    let (_, page) = page_as(&d, &admin_cookie, "/hub/admin").await;
    assert!(
        page.contains(&format!("/hub/admin/users/{user}/servers/lab2/stop")),
        "{page}"
    );

    // kill -9: both servers (and both kernels) are re-adopted.
    d.kill();
    d.spawn().await;
    assert_eq!(named_ready(&d, &user, "lab2").await, named_id);
    assert_eq!(named_ready(&d, &user, "").await, default_id);
    proxied_json(&d, "GET", &user, "lab2/api/status", &token, None, 200).await;

    // Deleting the named server removes its kernel, not the default server's.
    let (s, b, _) = d
        .api(
            "DELETE",
            &format!("/users/{user}/servers/lab2"),
            Some(ADMIN),
            Some(json!({"remove": true})),
        )
        .await;
    assert!(s == 204 || s == 202, "{s} {b}");
    let began = Instant::now();
    while docker(&["inspect", &named_id]).0 {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "the named server's container is still there"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let kernel_containers = |kid: &str| {
        docker_ok(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=org.orrery.kernel={kid}"),
        ])
    };
    assert!(
        kernel_containers(&k_named).is_empty(),
        "the named server's kernel is gone"
    );
    assert!(
        !kernel_containers(&k_default).is_empty(),
        "the default server's kernel is kept"
    );
    let k = proxied_json(
        &d,
        "GET",
        &user,
        &format!("api/kernels/{k_default}"),
        &token,
        None,
        200,
    )
    .await;
    assert_eq!(k["id"], k_default.as_str());

    // The culler stops each server on its own idleness: the named one kept busy (activity
    // reports, as its server sends them) outlives the idle default one.
    start_named(&d, &user, "lab2").await;
    named_ready(&d, &user, "lab2").await;
    let began = Instant::now();
    while !named_model(&d, &user, "").await.is_null() {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let (s, b, _) = d
            .api(
                "POST",
                &format!("/users/{user}/activity"),
                Some(ADMIN),
                Some(json!({"servers": {"lab2": {"last_activity": now}}})),
            )
            .await;
        assert!(s == 200 || s == 204, "{s} {b}");
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "the idle default server was not culled\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        named_model(&d, &user, "lab2").await["ready"],
        true,
        "the busy named server is kept"
    );
    let began = Instant::now();
    while !named_model(&d, &user, "lab2").await.is_null() {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "the named server was not culled once idle"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Its address now reaches the hub, which offers to start that server (not the default one).
    let cookie = crate::common::login_at(&d.url, &user, "user-password")
        .await
        .expect("user logs in");
    let (s, page) = page_as(&d, &cookie, &format!("/hub/user/{user}/lab2/lab")).await;
    assert_eq!(s, 424, "{page}");
    assert!(
        page.contains("/hub/home/servers/lab2/start")
            && page.contains(&format!("/user/{user}/lab2/lab")),
        "{page}"
    );
}
