//! End to end for remote kernels (`kernels.remote = true`): the real `orrery serve` binary, the
//! single-user test image with the real Jupyter Server in gateway mode, and every kernel in its
//! own container. Through the hub's proxy the tests create kernels with Jupyter Server's API,
//! execute code over its channels WebSocket, interrupt, restart and use `input()`; directly on
//! the internal listener they check that one user's gateway token cannot see another's kernels,
//! and from inside kernel containers that kernels cannot reach each other.
//!
//! Needs Docker and the image (`tests/images/build.sh`); like `docker_e2e.rs`, each test has its
//! own corner of the engine (`common::docker::Env`: network, volumes and user names `g<n>…`),
//! cleaned up also when it fails (kernel containers included), and runs one at a time.

use std::time::{Duration, Instant};

use crate::common::docker::{
    assert_host_reaches, channels_request, connect_from, containers_of, create_kernel, docker_ok,
    exec, has_env, inspect, ip_address, proxied, proxied_json, running, server_api, start_server,
    Env,
};
use crate::common::{Daemon, ADMIN_SERVICE_TOKEN as ADMIN};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

// ------------------------------------------------------------------------------------------
// remote-kernel helpers

/// Every test's corner of the engine; its users are `g<n>…`.
async fn env() -> Env {
    Env::new("g").await
}

pub(crate) const REMOTE: &str = "[kernels]\nremote = true\n";

/// The kernel container of kernel `kid` (by label), if any.
pub(crate) fn kernel_container(kid: &str) -> Option<String> {
    let out = docker_ok(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label=org.orrery.kernel={kid}"),
        "--format",
        "{{.ID}}",
    ]);
    out.lines().next().map(str::to_string)
}

/// A variable of a container's environment.
fn container_env(container: &str, var: &str) -> String {
    let (code, out, err) = exec(container, &["env"]);
    assert_eq!(code, 0, "env in {container}: {err}");
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{var}=")))
        .unwrap_or_else(|| panic!("{var} not in {container}'s environment:\n{out}"))
        .to_string()
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The kernel's channels WebSocket through the proxy, as a browser opens it.
pub(crate) async fn open_channels(d: &Daemon, user: &str, token: &str, kid: &str) -> Socket {
    let session = format!("&session_id={}", uuid::Uuid::new_v4());
    let req = channels_request(d, user, token, kid, &session, &d.url);
    let (ws, resp) = tokio::time::timeout(
        Duration::from_secs(60),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("WebSocket handshake within 60 s")
    .unwrap_or_else(|e| panic!("kernel WebSocket through the proxy: {e}\n{}", d.log()));
    assert_eq!(resp.status(), 101);
    ws
}

/// The status a kernel channels WebSocket handshake through the proxy gets (101 when it opens).
async fn channels_status(d: &Daemon, user: &str, token: &str, kid: &str, origin: &str) -> u16 {
    let req = channels_request(d, user, token, kid, "", origin);
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, resp)) => {
            let _ = ws.close(None).await;
            resp.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("kernel WebSocket handshake: {e}"),
    }
}

fn message(msg_type: &str, channel: &str, content: Value, parent: Value) -> (String, Value) {
    let msg_id = format!("{msg_type}-{}", uuid::Uuid::new_v4());
    let msg = json!({
        "header": {
            "msg_id": msg_id,
            "username": "test",
            "session": "gateway-e2e",
            "msg_type": msg_type,
            "version": "5.3",
            "date": chrono::Utc::now().to_rfc3339(),
        },
        "parent_header": parent,
        "metadata": {},
        "content": content,
        "channel": channel,
        "buffers": [],
    });
    (msg_id, msg)
}

/// Runs a long sleep in the kernel, interrupts it through the user's server (JupyterLab's
/// button) and checks it ends with KeyboardInterrupt within `within`; how long that took.
pub(crate) async fn interrupt_a_sleep(
    d: &Daemon,
    user: &str,
    token: &str,
    kid: &str,
    ws: &mut Socket,
    within: Duration,
) -> Duration {
    let id = execute(ws, "import time; time.sleep(100)", false).await;
    wait_for(ws, &id, Duration::from_secs(30), |v| {
        v["header"]["msg_type"] == "status" && v["content"]["execution_state"] == "busy"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let r = proxied(
        d,
        "POST",
        user,
        &format!("api/kernels/{kid}/interrupt"),
        token,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        r.status(),
        204,
        "interrupt: {}",
        r.text().await.unwrap_or_default()
    );
    let reply = wait_for(ws, &id, within, is("execute_reply")).await;
    assert_eq!(reply["content"]["status"], "error", "{reply}");
    assert_eq!(reply["content"]["ename"], "KeyboardInterrupt", "{reply}");
    t.elapsed()
}

/// Sends an execute_request; returns its msg_id.
pub(crate) async fn execute(ws: &mut Socket, code: &str, allow_stdin: bool) -> String {
    let (id, msg) = message(
        "execute_request",
        "shell",
        json!({"code": code, "silent": false, "store_history": true,
               "user_expressions": {}, "allow_stdin": allow_stdin, "stop_on_error": true}),
        json!({}),
    );
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .expect("send execute_request");
    id
}

/// The next message (JSON) whose parent is `parent` and that `want` accepts, within `within`.
pub(crate) async fn wait_for(
    ws: &mut Socket,
    parent: &str,
    within: Duration,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let mut seen = Vec::new();
    let got = tokio::time::timeout(within, async {
        while let Some(m) = ws.next().await {
            let v = match m {
                Ok(Message::Text(text)) => {
                    serde_json::from_str(text.as_str()).expect("JSON message")
                }
                // A message with buffers: the buffers become arrays of byte values.
                Ok(Message::Binary(b)) => {
                    let (mut v, buffers) = decode_binary(&b);
                    v["buffers"] = json!(buffers);
                    v
                }
                _ => continue,
            };
            seen.push(format!(
                "{}:{}",
                v["channel"].as_str().unwrap_or("?"),
                v["header"]["msg_type"].as_str().unwrap_or("?")
            ));
            if v["parent_header"]["msg_id"] == parent && want(&v) {
                return Some(v);
            }
        }
        None
    })
    .await;
    match got {
        Ok(Some(v)) => v,
        Ok(None) => panic!("WebSocket closed; saw {seen:?}"),
        Err(_) => panic!("nothing wanted within {within:?}; saw {seen:?}"),
    }
}

/// Jupyter's legacy binary WebSocket frame (as JupyterLab sends and reads it): u32 BE count
/// `n` = 1 + buffers, `n` u32 BE offsets, the JSON message, the buffers.
fn encode_binary(msg: &Value, buffers: &[Vec<u8>]) -> Vec<u8> {
    let mut msg = msg.clone();
    if let Some(m) = msg.as_object_mut() {
        m.remove("buffers");
    }
    let json = msg.to_string().into_bytes();
    let n = 1 + buffers.len();
    let mut offsets = vec![4 * (n as u32 + 1)];
    let mut at = offsets[0] + json.len() as u32;
    for b in buffers {
        offsets.push(at);
        at += b.len() as u32;
    }
    let mut out = (n as u32).to_be_bytes().to_vec();
    for o in offsets {
        out.extend_from_slice(&o.to_be_bytes());
    }
    out.extend_from_slice(&json);
    for b in buffers {
        out.extend_from_slice(b);
    }
    out
}

fn decode_binary(frame: &[u8]) -> (Value, Vec<Vec<u8>>) {
    let word = |i: usize| u32::from_be_bytes(frame[4 * i..4 * i + 4].try_into().unwrap()) as usize;
    let n = word(0);
    let offsets: Vec<usize> = (1..=n).map(word).collect();
    let end = |i: usize| offsets.get(i + 1).copied().unwrap_or(frame.len());
    let msg: Value = serde_json::from_slice(&frame[offsets[0]..end(0)]).expect("JSON part");
    let buffers = (1..n).map(|i| frame[offsets[i]..end(i)].to_vec()).collect();
    (msg, buffers)
}

/// The bytes of a decoded message's buffer `i`.
fn buffer(v: &Value, i: usize) -> Vec<u8> {
    v["buffers"][i]
        .as_array()
        .unwrap_or_else(|| panic!("no buffer {i} in {v}"))
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect()
}

/// An ipywidgets-style comm with binary buffers both ways through proxy and gateway: the
/// kernel's comm target sends back what it got (reversed), the bytes include ones that are not
/// UTF-8 and NULs.
async fn comm_round_trip(ws: &mut Socket) {
    run(
        ws,
        "import comm\n\
         def _echo(c, open_msg):\n\
         \x20   c.on_msg(lambda m: c.send({'got': len(m['buffers'])}, buffers=[bytes(b)[::-1] for b in m['buffers']]))\n\
         \x20   c.send({'opened': len(open_msg['buffers'])}, buffers=[bytes(b) for b in open_msg['buffers']])\n\
         comm.get_comm_manager().register_target('echo', _echo)",
    )
    .await;
    let comm_id = uuid::Uuid::new_v4().to_string();
    let blob: Vec<u8> = (0..=255u8).rev().chain([0, 0xff, 0xfe, 0xc3]).collect();
    let (open_id, open) = message(
        "comm_open",
        "shell",
        json!({"comm_id": comm_id, "target_name": "echo", "data": {}}),
        json!({}),
    );
    ws.send(Message::Binary(
        encode_binary(&open, &[blob.clone(), b"second".to_vec()]).into(),
    ))
    .await
    .expect("send comm_open");
    let opened = wait_for(ws, &open_id, Duration::from_secs(30), is("comm_msg")).await;
    assert_eq!(opened["content"]["data"]["opened"], 2, "{opened}");
    assert_eq!(buffer(&opened, 0), blob, "buffer 0 came back intact");
    assert_eq!(buffer(&opened, 1), b"second", "buffer 1 came back intact");

    let (msg_id, msg) = message(
        "comm_msg",
        "shell",
        json!({"comm_id": comm_id, "data": {"method": "custom"}}),
        json!({}),
    );
    ws.send(Message::Binary(
        encode_binary(&msg, &[vec![1, 2, 0xff, 0]]).into(),
    ))
    .await
    .expect("send comm_msg");
    let reply = wait_for(ws, &msg_id, Duration::from_secs(30), is("comm_msg")).await;
    assert_eq!(reply["content"]["data"]["got"], 1, "{reply}");
    assert_eq!(
        buffer(&reply, 0),
        vec![0, 0xff, 2, 1],
        "reversed by the kernel"
    );
}

/// Every JSON message arriving within `within`.
async fn collect(ws: &mut Socket, within: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Message::Text(t) = m {
            out.push(serde_json::from_str(t.as_str()).expect("JSON message"));
        }
    }
    out
}

pub(crate) fn is(msg_type: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["header"]["msg_type"] == msg_type
}

/// Runs `code` and returns everything it printed to stdout.
pub(crate) async fn run(ws: &mut Socket, code: &str) -> String {
    let id = execute(ws, code, false).await;
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = wait_for(ws, &id, left, |_| true).await;
        match v["header"]["msg_type"].as_str().unwrap_or("") {
            "stream" => out.push_str(v["content"]["text"].as_str().unwrap_or("")),
            "error" => panic!("{code:?} failed: {}", v["content"]),
            "status" if v["content"]["execution_state"] == "idle" => return out,
            _ => {}
        }
    }
}

/// Waits until the gateway reports the kernel idle (its container answered).
pub(crate) async fn wait_idle(d: &Daemon, user: &str, token: &str, kid: &str) -> Value {
    wait_state(d, user, token, kid, "idle", Duration::from_secs(90)).await
}

/// Waits until Jupyter Server (asking the gateway) reports the kernel in `state`; returns its
/// model. Waiting for anything but `dead`, a dead kernel fails at once.
async fn wait_state(
    d: &Daemon,
    user: &str,
    token: &str,
    kid: &str,
    state: &str,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        // The list, not the single model: Jupyter Server refreshes the list from the gateway.
        let list = proxied_json(d, "GET", user, "api/kernels", token, None, 200).await;
        let k = list
            .as_array()
            .and_then(|l| l.iter().find(|k| k["id"] == kid))
            .unwrap_or_else(|| panic!("kernel {kid} not listed: {list}"))
            .clone();
        if k["execution_state"] == state {
            return k;
        }
        assert!(
            k["execution_state"] != "dead",
            "kernel died: {k}\nhub log:\n{}",
            d.log()
        );
        assert!(
            Instant::now() < deadline,
            "kernel not {state} within {within:?}: {k}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Restarts the kernel through the user's server (JupyterLab's button) and waits for idle; the
/// model the restart answered with.
async fn restart(d: &Daemon, user: &str, token: &str, kid: &str) -> Value {
    let restarted = proxied_json(
        d,
        "POST",
        user,
        &format!("api/kernels/{kid}/restart"),
        token,
        Some(json!({})),
        200,
    )
    .await;
    wait_idle(d, user, token, kid).await;
    restarted
}

/// Deletes the kernel through the user's server.
async fn delete_kernel(d: &Daemon, user: &str, token: &str, kid: &str) {
    let r = proxied(
        d,
        "DELETE",
        user,
        &format!("api/kernels/{kid}"),
        token,
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
}

/// A new kernel of `spec` through the user's server, once it is idle: its id.
pub(crate) async fn new_kernel(d: &Daemon, user: &str, token: &str, spec: &str) -> String {
    let kid = create_kernel(d, user, token, spec).await;
    wait_idle(d, user, token, &kid).await;
    kid
}

// ------------------------------------------------------------------------------------------
// tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyter_server_in_gateway_mode_runs_kernels_in_their_own_containers() {
    let mut env = env().await;
    let (d, user, token, server) = env.one_user("k", "", REMOTE).await;
    let gateway_url = container_env(&server, "JUPYTER_GATEWAY_URL");
    assert!(
        gateway_url.ends_with(&format!(":{}/hub/gateway", d.internal_port)),
        "{gateway_url}"
    );

    // Jupyter Server lists the gateway's kernelspecs.
    let specs = proxied_json(&d, "GET", &user, "api/kernelspecs", &token, None, 200).await;
    assert_eq!(specs["default"], "python3", "{specs}");
    assert_eq!(
        specs["kernelspecs"]["python3"]["spec"]["display_name"], "Python 3",
        "{specs}"
    );

    // A kernel: Jupyter Server forwards the create to the gateway, which answers at once.
    let began = Instant::now();
    let kid = create_kernel(&d, &user, &token, "python3").await;
    let model = wait_idle(&d, &user, &token, &kid).await;
    let last = model["last_activity"].as_str().unwrap_or("");
    assert!(last.ends_with('Z') && last.contains('.'), "{model}");
    eprintln!(
        "[gateway_e2e] kernel idle {:?} after create",
        began.elapsed()
    );

    // The kernel container: its own, labelled, hardened, on the isolated network.
    let kc = kernel_container(&kid).expect("a container labelled with the kernel id");
    let c = inspect(&kc);
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels["org.orrery.kind"], "kernel", "{labels}");
    assert_eq!(labels["org.orrery.user"], user.as_str(), "{labels}");
    assert_eq!(labels["org.orrery.kernel"], kid.as_str(), "{labels}");
    assert!(
        labels["org.orrery.hub"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{labels}"
    );
    assert_eq!(c["HostConfig"]["CapDrop"], json!(["ALL"]));
    assert_eq!(c["HostConfig"]["SecurityOpt"], json!(["no-new-privileges"]));
    assert_eq!(c["HostConfig"]["NetworkMode"], env.network.as_str());
    // A kernel that asked for no GPU sees none.
    assert!(
        has_env(&c, "NVIDIA_VISIBLE_DEVICES=void"),
        "{}",
        c["Config"]["Env"]
    );
    assert_eq!(exec(&kc, &["id", "-u"]).1, "1000");
    // The key is in the kernel's container, never in the notebook container.
    let (_, server_env, _) = exec(&server, &["env"]);
    let key: Value =
        serde_json::from_str(&exec(&kc, &["cat", "/var/run/orrery-kernel/kernel.json"]).1)
            .expect("connection file");
    let key = key["key"].as_str().expect("key").to_string();
    assert_eq!(key.len(), 64);
    assert!(!server_env.contains(&key));
    let (code, _, _) = exec(&server, &["ls", "/var/run/orrery-kernel"]);
    assert_ne!(code, 0, "no connection directory in the notebook container");

    // Code runs in the kernel's container: another hostname, the same home.
    let mut ws = open_channels(&d, &user, &token, &kid).await;
    let t = Instant::now();
    let host = run(&mut ws, "import socket; print(socket.gethostname())").await;
    eprintln!(
        "[gateway_e2e] first execute through proxy + gateway: {:?}",
        t.elapsed()
    );
    let server_host = c["Config"]["Hostname"].as_str().unwrap_or("").to_string();
    let notebook_host = inspect(&server)["Config"]["Hostname"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(
        host.trim(),
        server_host,
        "the kernel's hostname is its container's"
    );
    assert_ne!(
        host.trim(),
        notebook_host,
        "the kernel does not run in the notebook container"
    );
    let t = Instant::now();
    run(
        &mut ws,
        "open('/home/jovyan/from-kernel.txt','w').write('hi')",
    )
    .await;
    eprintln!("[gateway_e2e] execute round trip: {:?}", t.elapsed());
    comm_round_trip(&mut ws).await;

    // Two tabs on one kernel: both see the output, only the tab that asked gets the reply.
    let mut ws2 = open_channels(&d, &user, &token, &kid).await;
    let id = execute(&mut ws, "print('to both')", false).await;
    let reply = wait_for(&mut ws, &id, Duration::from_secs(30), is("execute_reply")).await;
    assert_eq!(reply["content"]["status"], "ok", "{reply}");
    let seen = collect(&mut ws2, Duration::from_secs(2)).await;
    let of_it: Vec<&Value> = seen
        .iter()
        .filter(|v| v["parent_header"]["msg_id"] == id.as_str())
        .collect();
    assert!(
        of_it
            .iter()
            .any(|v| v["header"]["msg_type"] == "stream" && v["content"]["text"] == "to both\n"),
        "the second tab sees the output: {of_it:?}"
    );
    assert!(
        !of_it
            .iter()
            .any(|v| v["header"]["msg_type"] == "execute_reply"),
        "the reply went to the tab that asked only: {of_it:?}"
    );
    let _ = ws2.close(None).await;
    let file = proxied_json(
        &d,
        "GET",
        &user,
        "api/contents/from-kernel.txt",
        &token,
        None,
        200,
    )
    .await;
    assert_eq!(file["content"], "hi", "{file}");
    let cwd = run(&mut ws, "import os; print(os.getcwd())").await;
    assert_eq!(cwd.trim(), "/home/jovyan");

    // Interrupt: a long sleep ends with KeyboardInterrupt within 2 s.
    let t = interrupt_a_sleep(&d, &user, &token, &kid, &mut ws, Duration::from_secs(2)).await;
    eprintln!("[gateway_e2e] interrupt → KeyboardInterrupt in {t:?}");

    // input(): input_request on stdin, input_reply back, the value arrives.
    let id = execute(&mut ws, "x = input('name? '); print('got', x)", true).await;
    let req = wait_for(&mut ws, &id, Duration::from_secs(30), is("input_request")).await;
    assert_eq!(req["channel"], "stdin", "{req}");
    assert_eq!(req["content"]["prompt"], "name? ", "{req}");
    let (_, reply) = message(
        "input_reply",
        "stdin",
        json!({"value": "orrery"}),
        req["header"].clone(),
    );
    ws.send(Message::Text(reply.to_string().into()))
        .await
        .expect("send input_reply");
    let out = wait_for(&mut ws, &id, Duration::from_secs(30), is("stream")).await;
    assert_eq!(out["content"]["text"], "got orrery\n", "{out}");
    run(&mut ws, "pass").await;
    let _ = ws.close(None).await;

    // Restart keeps the id; the kernel's state is fresh; the container is new.
    run_check_restart(&d, &user, &token, &kid, &kc).await;

    // Delete removes the container.
    delete_kernel(&d, &user, &token, &kid).await;
    assert_eq!(
        kernel_container(&kid),
        None,
        "the kernel's container is removed"
    );
    let list = proxied_json(&d, "GET", &user, "api/kernels", &token, None, 200).await;
    assert_eq!(list, json!([]), "{list}");
}

async fn run_check_restart(d: &Daemon, user: &str, token: &str, kid: &str, old_container: &str) {
    let mut ws = open_channels(d, user, token, kid).await;
    run(&mut ws, "marker = 42").await;
    let _ = ws.close(None).await;
    let t = Instant::now();
    let restarted = restart(d, user, token, kid).await;
    eprintln!("[gateway_e2e] restart until idle took {:?}", t.elapsed());
    assert_eq!(restarted["id"], kid, "{restarted}");
    let new_container = kernel_container(kid).expect("a kernel container after restart");
    assert_ne!(
        new_container, old_container,
        "restart recreates the container"
    );
    let mut ws = open_channels(d, user, token, kid).await;
    let out = run(&mut ws, "print('marker' in dir())").await;
    assert_eq!(out.trim(), "False", "restart resets the kernel's state");
    let _ = ws.close(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_tokens_and_kernel_containers_are_isolated_between_users() {
    let mut env = env().await;
    let a = env.user("a");
    let b = env.user("b");
    // Per-user limits apply to kernels whose spec sets none.
    let d = env
        .daemon(
            &[&a, &b],
            "",
            &format!("{REMOTE}[limits]\nmemory = \"768M\"\n"),
        )
        .await;
    let token_a = d.token_for(&a).await;
    let server_a = start_server(&d, &a).await;
    let server_b = start_server(&d, &b).await;
    let url = container_env(&server_b, "JUPYTER_GATEWAY_URL");
    let token_gb = container_env(&server_b, "JUPYTER_GATEWAY_AUTH_TOKEN");
    let token_ga = container_env(&server_a, "JUPYTER_GATEWAY_AUTH_TOKEN");
    assert_ne!(token_ga, token_gb);

    let gw = |method: &str, path: &str, token: Option<&str>| {
        let mut r = d
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{url}{path}"),
            )
            .timeout(Duration::from_secs(30));
        if let Some(t) = token {
            r = r.header("Authorization", format!("token {t}"));
        }
        if method == "POST" {
            r = r.json(&json!({}));
        }
        r.send()
    };
    // Kernelspecs come from the config as it is now: a reload changes the list the running
    // Jupyter Server shows, filtered per user.
    // Added the operator's way: `orrery config add-item` + `orrery config reload`.
    for spec in [
        "{name = \"python3\", display_name = \"Python 3\"}".to_string(),
        format!("{{name = \"py-small\", display_name = \"Python (small)\", memory = \"512M\", allowed_users = [\"{a}\"]}}"),
    ] {
        let (code, out, err) = d.cli(&["config", "add-item", "kernels.specs", &spec], None);
        assert_eq!(code, 0, "add-item {spec}: {out}{err}");
    }
    let (code, out, err) = d.cli(&["config", "reload"], None);
    assert_eq!(code, 0, "reload: {out}{err}\n{}", d.log());
    let specs = proxied_json(&d, "GET", &a, "api/kernelspecs", &token_a, None, 200).await;
    let names: Vec<&String> = specs["kernelspecs"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["py-small", "python3"], "{specs}");
    let r = gw("GET", "/api/kernelspecs", Some(&token_gb))
        .await
        .unwrap();
    let specs_b: Value = r.json().await.unwrap();
    assert!(
        specs_b["kernelspecs"]["py-small"].is_null(),
        "B may not use A's spec: {specs_b}"
    );
    let r = gw("GET", "/api/kernelspecs/py-small", Some(&token_gb))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A kernel of the restricted spec gets the spec's limits; B cannot start one.
    let small_id = new_kernel(&d, &a, &token_a, "py-small").await;
    let small_c = inspect(&kernel_container(&small_id).expect("py-small container"));
    assert_eq!(small_c["HostConfig"]["Memory"], 512 * 1024 * 1024);
    let r = d
        .http
        .post(format!("{url}/api/kernels"))
        .header("Authorization", format!("token {token_gb}"))
        .json(&json!({"name": "py-small"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "B may not start A's spec");

    // Changing and removing specs the operator's way affects new kernels only: the running
    // py-small kernel keeps its container and limits.
    for args in [
        vec!["config", "remove-item", "kernels.specs", "py-small"],
        vec![
            "config",
            "add-item",
            "kernels.specs",
            "{name = \"py-big\", display_name = \"Python (big)\", memory = \"1G\"}",
        ],
        vec!["config", "reload"],
    ] {
        let (code, out, err) = d.cli(&args, None);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
    let specs = proxied_json(&d, "GET", &a, "api/kernelspecs", &token_a, None, 200).await;
    let names: Vec<&String> = specs["kernelspecs"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["py-big", "python3"], "{specs}");
    assert_eq!(
        specs["kernelspecs"]["py-big"]["spec"]["display_name"], "Python (big)",
        "{specs}"
    );
    let listed = wait_idle(&d, &a, &token_a, &small_id).await;
    assert_eq!(listed["name"], "py-small", "{listed}");
    delete_kernel(&d, &a, &token_a, &small_id).await;

    // A's kernel, through A's server.
    let kid = new_kernel(&d, &a, &token_a, "python3").await;
    let c = inspect(&kernel_container(&kid).expect("A's kernel container"));
    assert_eq!(
        c["HostConfig"]["Memory"],
        768 * 1024 * 1024,
        "limits.memory"
    );

    // At most kernels.max_per_user kernels each (set live).
    for args in [
        vec!["config", "set", "kernels.max_per_user", "2"],
        vec!["config", "reload"],
    ] {
        let (code, out, err) = d.cli(&args, None);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
    let r = gw("POST", "/api/kernels", Some(&token_ga)).await.unwrap();
    assert_eq!(r.status(), 201, "A's second kernel");
    let second: Value = r.json().await.unwrap();
    let r = gw("POST", "/api/kernels", Some(&token_ga)).await.unwrap();
    assert_eq!(r.status(), 429, "A's third kernel");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("kernels.max_per_user = 2")),
        "{body}"
    );
    let r = gw(
        "DELETE",
        &format!("/api/kernels/{}", second["id"].as_str().unwrap()),
        Some(&token_ga),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 204);

    // Without a token, or with an ordinary API token, the gateway refuses.
    let r = gw("GET", "/api/kernels", None).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = gw("GET", "/api/kernels", Some(&token_a)).await.unwrap();
    assert_eq!(r.status(), 403, "a hub API token is not a gateway token");
    // A's gateway token sees the kernel; B's sees nothing of it.
    let r = gw("GET", &format!("/api/kernels/{kid}"), Some(&token_ga))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = gw("GET", "/api/kernels", Some(&token_gb)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    for (method, path) in [
        ("GET", format!("/api/kernels/{kid}")),
        ("POST", format!("/api/kernels/{kid}/interrupt")),
        ("POST", format!("/api/kernels/{kid}/restart")),
        ("GET", format!("/api/kernels/{kid}/channels")),
        ("DELETE", format!("/api/kernels/{kid}")),
    ] {
        let r = gw(method, &path, Some(&token_gb)).await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 404, "B's token: {method} {path}: {body}");
        assert!(
            body["reason"].is_string() && body["message"].is_string(),
            "{body}"
        );
    }
    assert_eq!(
        running(&kernel_container(&kid).unwrap()),
        "true",
        "A's kernel is untouched"
    );
    // Through the proxy, the browser's kernel WebSocket: A's server decides who may open it.
    let token_b = d.token_for(&b).await;
    assert_eq!(channels_status(&d, &a, &token_a, &kid, &d.url).await, 101);
    assert_eq!(
        channels_status(&d, &a, &token_b, &kid, &d.url).await,
        403,
        "B's credentials open A's kernel"
    );
    assert_eq!(
        channels_status(&d, &a, &token_a, &kid, "http://evil.example").await,
        403,
        "a page of another site opens A's kernel with A's credentials"
    );
    // A kernel of A's is not reachable under B's server either.
    assert_eq!(channels_status(&d, &b, &token_b, &kid, &d.url).await, 404);

    // B's kernel (straight through the gateway with B's token) cannot reach A's kernel.
    let r = gw("POST", "/api/kernels", Some(&token_gb)).await.unwrap();
    assert_eq!(r.status(), 201);
    let kb: Value = r.json().await.unwrap();
    let kid_b = kb["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let m: Value = gw("GET", &format!("/api/kernels/{kid_b}"), Some(&token_gb))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if m["execution_state"] == "idle" {
            break;
        }
        assert!(
            Instant::now() < deadline && m["execution_state"] != "dead",
            "{m}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ka = kernel_container(&kid).unwrap();
    let kbc = kernel_container(&kid_b).unwrap();
    let ip_a = ip_address(&ka);
    // Control: the hub (on the host) reaches A's shell port.
    assert_host_reaches(&ip_a, 52000, "A's kernel's shell port").await;
    let (code, out, err) = connect_from(&kbc, &ip_a, 52000);
    assert_ne!(
        code, 0,
        "B's kernel reached A's kernel at {ip_a}:52000: {out} {err}"
    );
    assert!(!out.contains("connected"), "{out}");
    let r = gw("DELETE", &format!("/api/kernels/{kid_b}"), Some(&token_gb))
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // Stopping A's server deletes A's kernels and revokes A's gateway token.
    let (s, body) = server_api(&d, "DELETE", &a, ADMIN).await;
    assert!(s == 204 || s == 202, "stop {a}: {s} {body}");
    let t = Instant::now();
    while kernel_container(&kid).is_some() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "A's kernel outlived A's server"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let r = gw("GET", "/api/kernels", Some(&token_ga)).await.unwrap();
    assert_eq!(
        r.status(),
        403,
        "A's gateway token is revoked with the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kernel_is_reclaimed_and_recreated_behind_the_same_id() {
    let mut env = env().await;
    let (d, user, token, _) = env
        .one_user(
            "c",
            "",
            "[kernels]\nremote = true\nidle_timeout = \"3s\"\ncull_interval = \"1s\"\n",
        )
        .await;

    // A notebook session with a kernel, as JupyterLab opens one, for a notebook in a folder.
    proxied_json(
        &d,
        "PUT",
        &user,
        "api/contents/work",
        &token,
        Some(json!({"type": "directory"})),
        201,
    )
    .await;
    let session = proxied_json(
        &d,
        "POST",
        &user,
        "api/sessions",
        &token,
        Some(
            json!({"path": "work/nb.ipynb", "name": "nb.ipynb", "type": "notebook",
                    "kernel": {"name": "python3"}}),
        ),
        201,
    )
    .await;
    let kid = session["kernel"]["id"]
        .as_str()
        .expect("kernel id")
        .to_string();
    wait_idle(&d, &user, &token, &kid).await;
    let first = kernel_container(&kid).expect("kernel container");
    let mut ws = open_channels(&d, &user, &token, &kid).await;
    run(&mut ws, "x = 1").await;
    // The kernel starts in the notebook's folder (KERNEL_WORKING_DIR from Jupyter Server).
    let cwd = "import os; print(os.getcwd())";
    assert_eq!(run(&mut ws, cwd).await, "/home/jovyan/work\n");

    // Idle past the timeout: the container goes, the kernel and the session stay.
    let t = Instant::now();
    while kernel_container(&kid).is_some() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the idle kernel's container was not reclaimed in 30 s\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "[gateway_e2e] idle kernel reclaimed {:?} after its last execute",
        t.elapsed()
    );
    let listed = wait_idle(&d, &user, &token, &kid).await;
    assert_eq!(listed["id"], kid.as_str());
    let sessions = proxied_json(&d, "GET", &user, "api/sessions", &token, None, 200).await;
    assert_eq!(sessions[0]["id"], session["id"], "{sessions}");
    assert_eq!(sessions[0]["kernel"]["id"], kid.as_str(), "{sessions}");
    // The operator sees it in the metrics.
    let metrics = d.metrics().await;
    for line in [
        "orrery_kernels{state=\"reclaimed\"} 1",
        "orrery_kernels{state=\"running\"} 0",
        "orrery_kernels_reclaimed_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }

    // The tab reconnects (as after a laptop sleeps): JupyterLab's kernel_info probe re-creates
    // the kernel, but the notice waits for the next execute, where the user sees it.
    let _ = ws.close(None).await;
    let mut ws = open_channels(&d, &user, &token, &kid).await;
    let t = Instant::now();
    let (probe, info) = message("kernel_info_request", "shell", json!({}), json!({}));
    ws.send(Message::Text(info.to_string().into()))
        .await
        .expect("send kernel_info_request");
    wait_for(
        &mut ws,
        &probe,
        Duration::from_secs(60),
        is("kernel_info_reply"),
    )
    .await;
    eprintln!(
        "[gateway_e2e] reclaimed kernel re-created by a probe in {:?}",
        t.elapsed()
    );
    // Its idle time starts afresh (probes are not activity, but the new container is new):
    // after more than one cull pass it is still there.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        kernel_container(&kid).is_some(),
        "a kernel re-created a moment ago was reclaimed again\n{}",
        d.log()
    );
    let id = execute(&mut ws, "print('x' in dir())", false).await;
    let notice = wait_for(&mut ws, &id, Duration::from_secs(60), is("stream")).await;
    assert_eq!(notice["content"]["name"], "stderr", "{notice}");
    let text = notice["content"]["text"].as_str().unwrap_or("");
    assert!(
        text.starts_with("kernel was reclaimed after ") && text.contains("its state was reset"),
        "{notice}"
    );
    let out = wait_for(&mut ws, &id, Duration::from_secs(60), is("stream")).await;
    assert_eq!(out["content"]["name"], "stdout", "{out}");
    assert_eq!(out["content"]["text"], "False\n", "state was reset: {out}");
    eprintln!(
        "[gateway_e2e] execute on a reclaimed kernel answered in {:?}",
        t.elapsed()
    );
    let second = kernel_container(&kid).expect("a new kernel container behind the same id");
    assert_ne!(first, second);
    assert_eq!(
        run(&mut ws, cwd).await,
        "/home/jovyan/work\n",
        "the same folder again"
    );
    let _ = ws.close(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernels_outlive_a_restart_of_the_daemon() {
    let mut env = env().await;
    let (mut d, user, token, server) = env.one_user("r", "", REMOTE).await;

    // Two kernels with state; the second one's container will not survive.
    let mut kids = Vec::new();
    for value in ["41", "7"] {
        let kid = new_kernel(&d, &user, &token, "python3").await;
        let mut ws = open_channels(&d, &user, &token, &kid).await;
        run(&mut ws, &format!("x = {value}")).await;
        let _ = ws.close(None).await;
        kids.push(kid);
    }
    let kept = kernel_container(&kids[0]).expect("first kernel's container");
    let lost = kernel_container(&kids[1]).expect("second kernel's container");

    // The daemon stops (as for an upgrade); meanwhile the second kernel's container goes.
    d.stop();
    docker_ok(&["rm", "-f", &lost]);
    d.spawn().await;

    // Both kernels are still listed under their ids by the user's (same) server.
    assert_eq!(
        containers_of(&user)
            .iter()
            .filter(|c| inspect(c)["Id"] == inspect(&server)["Id"])
            .count(),
        1,
        "the notebook server was kept"
    );
    let first = wait_idle(&d, &user, &token, &kids[0]).await;
    assert_eq!(first["id"], kids[0].as_str());
    wait_idle(&d, &user, &token, &kids[1]).await;

    // The first kept its container and its state.
    assert_eq!(kernel_container(&kids[0]).as_deref(), Some(kept.as_str()));
    let mut ws = open_channels(&d, &user, &token, &kids[0]).await;
    assert_eq!(run(&mut ws, "print(x + 1)").await, "42\n");
    let _ = ws.close(None).await;

    // The second gets a new container on its next execute, after a notice saying why.
    let mut ws = open_channels(&d, &user, &token, &kids[1]).await;
    let id = execute(&mut ws, "print('x' in dir())", false).await;
    let notice = wait_for(&mut ws, &id, Duration::from_secs(60), is("stream")).await;
    assert_eq!(notice["content"]["name"], "stderr", "{notice}");
    assert!(
        notice["content"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("container was gone") && t.contains("state was reset")),
        "{notice}"
    );
    let out = wait_for(&mut ws, &id, Duration::from_secs(60), is("stream")).await;
    assert_eq!(out["content"]["text"], "False\n", "{out}");
    let renewed = kernel_container(&kids[1]).expect("a new container behind the same id");
    assert_ne!(renewed, lost);
    let _ = ws.close(None).await;

    // Deleting a kernel removes its record: after another restart only the first is listed.
    delete_kernel(&d, &user, &token, &kids[1]).await;
    d.stop();
    d.spawn().await;
    wait_idle(&d, &user, &token, &kids[0]).await;
    let list = proxied_json(&d, "GET", &user, "api/kernels", &token, None, 200).await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    assert_eq!(ids, [kids[0].as_str()], "{list}");
    assert_eq!(kernel_container(&kids[1]), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_that_dies_or_hangs_is_reported_dead_with_the_reason_and_restarts() {
    let mut env = env().await;
    let (d, user, token, _) = env.one_user("d", "", REMOTE).await;
    let kid = new_kernel(&d, &user, &token, "python3").await;
    let mut ws = open_channels(&d, &user, &token, &kid).await;

    // The kernel process exits: the cell that was running gets the reason, the model says dead.
    let id = execute(
        &mut ws,
        "import os, time; time.sleep(0.5); os._exit(3)",
        false,
    )
    .await;
    let notice = wait_for(&mut ws, &id, Duration::from_secs(30), is("stream")).await;
    let text = notice["content"]["text"].as_str().unwrap_or("");
    assert_eq!(notice["content"]["name"], "stderr", "{notice}");
    assert!(
        text.starts_with("Kernel died: ") && text.contains("exited with code 3"),
        "{notice}"
    );
    let model = wait_state(&d, &user, &token, &kid, "dead", Duration::from_secs(15)).await;
    assert!(
        model["reason"]
            .as_str()
            .is_some_and(|r| r.contains("exited with code 3")),
        "the model carries the reason: {model}"
    );
    // Code sent to the dead kernel gets the same explanation instead of silence.
    let id = execute(&mut ws, "1", false).await;
    let again = wait_for(&mut ws, &id, Duration::from_secs(10), is("stream")).await;
    assert!(
        again["content"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Kernel died: ")),
        "{again}"
    );

    // Restart (as JupyterLab's button does) brings it back behind the same id.
    restart(&d, &user, &token, &kid).await;
    assert_eq!(run(&mut ws, "print(6 * 7)").await, "42\n");

    // A hung kernel (its container frozen) misses heartbeats and is declared dead too.
    let frozen = kernel_container(&kid).expect("kernel container");
    docker_ok(&["pause", &frozen]);
    let t = Instant::now();
    let model = wait_state(&d, &user, &token, &kid, "dead", Duration::from_secs(40)).await;
    eprintln!(
        "[gateway_e2e] frozen kernel declared dead after {:?}",
        t.elapsed()
    );
    assert!(
        model["reason"]
            .as_str()
            .is_some_and(|r| r.contains("heartbeat")),
        "{model}"
    );
    restart(&d, &user, &token, &kid).await;
    assert_ne!(kernel_container(&kid).as_deref(), Some(frozen.as_str()));
    assert_eq!(run(&mut ws, "print('back')").await, "back\n");
    let _ = ws.close(None).await;

    // A kernel that cannot start: dead with the exit code and what it wrote, no container
    // left behind, and a restart fails the same way (not on a leftover container's name).
    let spec = "{name = \"broken\", argv = [\"python\", \"-c\", \"import sys; sys.stderr.write('no module named frobnicate'); sys.exit(4)\", \"{connection_file}\"]}";
    for args in [
        vec![
            "config",
            "add-item",
            "kernels.specs",
            "{name = \"python3\"}",
        ],
        vec!["config", "add-item", "kernels.specs", spec],
        vec!["config", "reload"],
    ] {
        let (code, out, err) = d.cli(&args, None);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
    let k = proxied_json(
        &d,
        "POST",
        &user,
        "api/kernels",
        &token,
        Some(json!({"name": "broken"})),
        201,
    )
    .await;
    let broken = k["id"].as_str().expect("kernel id").to_string();
    for attempt in ["start", "restart"] {
        let model = wait_state(&d, &user, &token, &broken, "dead", Duration::from_secs(60)).await;
        let reason = model["reason"].as_str().unwrap_or("");
        assert!(
            reason.contains("exited with code 4") && reason.contains("no module named frobnicate"),
            "{attempt}: {model}"
        );
        assert_eq!(
            kernel_container(&broken),
            None,
            "{attempt}: no container left"
        );
        if attempt == "start" {
            let r = proxied(
                &d,
                "POST",
                &user,
                &format!("api/kernels/{broken}/restart"),
                &token,
                Some(json!({})),
            )
            .await;
            assert!(!r.status().is_success(), "restarting a broken kernel fails");
        }
    }
}

/// The device request of a kernel's container: the unit UUIDs it asks for (checking the driver
/// and capability) and its `NVIDIA_VISIBLE_DEVICES`.
fn gpu_request_of(container: &str) -> (Vec<String>, String) {
    let c = inspect(container);
    let request = &c["HostConfig"]["DeviceRequests"][0];
    assert_eq!(request["Driver"], "nvidia", "{c}");
    assert_eq!(request["Capabilities"], json!([["gpu"]]), "{c}");
    let ids = request["DeviceIDs"]
        .as_array()
        .unwrap_or_else(|| panic!("no device IDs: {c}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    (ids, container_env(container, "NVIDIA_VISIBLE_DEVICES"))
}

/// The host PID of a container's main process (what NVML would report for it).
fn host_pid(container: &str) -> u32 {
    inspect(container)["State"]["Pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid for {container}")) as u32
}

const GPU_A: &str = "GPU-e2e00000-0000-0000-0000-000000000001";
const GPU_B: &str = "GPU-e2e00000-0000-0000-0000-000000000002";
const RAN_ON: &str = "import os\nprint('ran on', os.environ['NVIDIA_VISIBLE_DEVICES'])";

/// A daemon for one user with remote kernels, a `gpu` spec of one unit and the fake NVML
/// reading `state`; `gpu_extra` goes into `[gpu]`.
async fn gpu_daemon(
    env: &mut Env,
    tag: &str,
    state: &std::path::Path,
    gpu_extra: &str,
) -> (Daemon, String, String, String) {
    let user = env.user(tag);
    let extra = format!(
        "{REMOTE}\n[[kernels.specs]]\nname = \"gpu\"\ndisplay_name = \"Python (GPU)\"\ngpus = 1\n\n\
         [gpu]\nnvml_library = \"{}\"\n{gpu_extra}\n[gpu.quota]\nper_user = 3\n",
        crate::gpu::fake_nvml().display()
    );
    let d = Daemon::start_with_env(
        &env.config("", &extra),
        &[("FAKE_NVML_STATE", state.to_str().unwrap_or_default())],
    )
    .await;
    d.create_users(&[&user], false).await;
    let token = d.token_for(&user).await;
    let server = start_server(&d, &user).await;
    (d, user, token, server)
}

/// Text of every stream message under request `parent` in `msgs`.
fn stream_text(msgs: &[Value], parent: &str) -> String {
    msgs.iter()
        .filter(|v| v["parent_header"]["msg_id"] == parent && v["header"]["msg_type"] == "stream")
        .filter_map(|v| v["content"]["text"].as_str())
        .collect()
}

/// Every message until the `execute_reply` to `parent` (included), within `within`.
async fn until_reply(d: &Daemon, ws: &mut Socket, parent: &str, within: Duration) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next()).await;
        let Ok(Some(Ok(m))) = next else {
            panic!(
                "no execute_reply to {parent} within {within:?}; got {seen:#?}\nhub log:\n{}",
                d.log()
            );
        };
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(t.as_str()).expect("JSON message");
        let done =
            v["parent_header"]["msg_id"] == parent && v["header"]["msg_type"] == "execute_reply";
        seen.push(v);
        if done {
            return seen;
        }
    }
}

/// The acceptance run of GPU scheduling, through the user's real Jupyter Server and the proxy,
/// on the fake NVML (2 GPUs) and an engine with the (no-op) NVIDIA hook as `.ci/run` starts
/// it. Two kernels hold a unit each (device request for exactly it, `NVIDIA_VISIBLE_DEVICES`
/// to match; the notebook container sees `void`). The third waits, and its cell says so with
/// its place. The second kernel sends no messages but NVML shows its process (its container's
/// real host PID, mapped through `/proc/<pid>/cgroup`) at 95 %: it keeps its unit. The first is
/// busy in a cell, so it keeps its unit too; once it is idle for `gpu.idle_after` it is
/// reclaimed at once for the waiter, which runs on the freed unit. The first's next cell waits
/// its turn, then runs with the notice that its GPU was reclaimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_kernels_queue_and_an_idle_holder_is_reclaimed_for_a_waiter() {
    let mut env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nvml-state");
    let gpus = format!(
        "gpu {GPU_A} 85899345920 0 0 0 - NVIDIA A100\ngpu {GPU_B} 85899345920 0 0 0 - NVIDIA A100\n"
    );
    std::fs::write(&state, &gpus).unwrap();
    let (d, user, token, server) =
        gpu_daemon(&mut env, "gq", &state, "idle_after = \"4s\"\n").await;
    assert_eq!(container_env(&server, "NVIDIA_VISIBLE_DEVICES"), "void");

    let k1 = new_kernel(&d, &user, &token, "gpu").await;
    let k2 = new_kernel(&d, &user, &token, "gpu").await;
    let c1 = kernel_container(&k1).expect("k1's container");
    let c2 = kernel_container(&k2).expect("k2's container");
    let (u1, visible1) = gpu_request_of(&c1);
    let (u2, visible2) = gpu_request_of(&c2);
    assert_eq!(u1.len(), 1);
    assert_eq!(visible1, u1[0]);
    assert_eq!(visible2, u2[0]);
    assert_ne!(u1, u2, "each kernel its own unit");
    // NVML: k1's process at 0 %, k2's at 95 % (k2 computes without sending anything).
    std::fs::write(
        &state,
        format!(
            "{gpus}proc {} {} 1073741824 0\nproc {} {} 1073741824 95\n",
            u1[0],
            host_pid(&c1),
            u2[0],
            host_pid(&c2)
        ),
    )
    .unwrap();

    // k1 is busy in a cell for a while.
    let mut ws1 = open_channels(&d, &user, &token, &k1).await;
    let busy = execute(
        &mut ws1,
        "import time\ntime.sleep(10)\nprint('slept')",
        false,
    )
    .await;

    // k3 waits; its cell says so and where.
    let k3 = create_kernel(&d, &user, &token, "gpu").await;
    let mut ws3 = open_channels(&d, &user, &token, &k3).await;
    let cell = execute(&mut ws3, RAN_ON, false).await;
    let waiting = wait_for(&mut ws3, &cell, Duration::from_secs(30), is("stream")).await;
    assert_eq!(
        waiting["content"]["text"],
        "waiting for a GPU: 0 ahead of you; the cell runs when it is free\n",
        "{waiting}"
    );
    assert_eq!(waiting["content"]["name"], "stderr");

    // k1's cell completes: a busy kernel was not reclaimed.
    let seen = until_reply(&d, &mut ws1, &busy, Duration::from_secs(60)).await;
    assert_eq!(stream_text(&seen, &busy), "slept\n");
    assert_eq!(seen.last().unwrap()["content"]["status"], "ok");

    // Then k1 is idle for gpu.idle_after and is reclaimed for k3, which runs on its unit.
    let seen = until_reply(&d, &mut ws3, &cell, Duration::from_secs(90)).await;
    assert_eq!(seen.last().unwrap()["content"]["status"], "ok", "{seen:#?}");
    let out = stream_text(&seen, &cell);
    assert!(out.contains("got a GPU after waiting"), "{out}");
    assert!(out.ends_with(&format!("ran on {}\n", u1[0])), "{out}");
    assert_eq!(kernel_container(&k1), None, "k1's container was reclaimed");
    let c3 = kernel_container(&k3).expect("k3's container");
    assert_eq!(gpu_request_of(&c3), (u1.clone(), u1[0].clone()));
    // k2, quiet on its channels far longer than gpu.idle_after but computing, kept its unit.
    assert_eq!(kernel_container(&k2).as_deref(), Some(c2.as_str()));

    // k1's next cell waits its turn (k3 is now the idle holder), then runs with the notice.
    let again = execute(&mut ws1, RAN_ON, false).await;
    let seen = until_reply(&d, &mut ws1, &again, Duration::from_secs(120)).await;
    assert_eq!(seen.last().unwrap()["content"]["status"], "ok", "{seen:#?}");
    let out = stream_text(&seen, &again);
    assert!(out.contains("waiting for a GPU"), "{out}");
    assert!(out.contains("kernel's GPU was reclaimed after"), "{out}");
    assert!(out.contains("its state was reset"), "{out}");
    assert!(out.ends_with(&format!("ran on {}\n", u1[0])), "{out}");
    let metrics = d.metrics().await;
    for name in ["orrery_gpu_reclaims_total 2", "orrery_gpu_queue_length 0"] {
        assert!(
            metrics.lines().any(|l| l == name),
            "{name} in\n{metrics}\n{}",
            d.log()
        );
    }
    assert!(
        metrics
            .lines()
            .any(|l| l == "orrery_gpu_wait_seconds_count 2"),
        "{metrics}\n{}",
        d.log()
    );
}

/// The admin API's view of the GPUs: inventory, leases, holders, queue.
async fn gpus(d: &Daemon) -> Value {
    let (status, body, _) = d.api("GET", "/orrery/gpus", Some(ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `kill -9` of the daemon while a kernel holds the only unit and two wait (one with a held
/// cell): after the restart the holder keeps its container and its lease, nothing is leased
/// twice, the two wait on in their order, the lost cell is answered with a request to run it
/// again, and the next unit to free goes to the first in line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gpu_queue_and_leases_survive_kill_9() {
    let mut env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nvml-state");
    std::fs::write(
        &state,
        format!("gpu {GPU_A} 85899345920 0 0 0 - NVIDIA A100\n"),
    )
    .unwrap();
    let (mut d, user, token, _server) =
        gpu_daemon(&mut env, "gk", &state, "idle_after = \"1h\"\n").await;
    let k1 = new_kernel(&d, &user, &token, "gpu").await;
    let c1 = kernel_container(&k1).expect("k1's container");
    let k2 = create_kernel(&d, &user, &token, "gpu").await;
    let k3 = create_kernel(&d, &user, &token, "gpu").await;
    let mut ws2 = open_channels(&d, &user, &token, &k2).await;
    let held = execute(&mut ws2, RAN_ON, false).await;
    wait_for(&mut ws2, &held, Duration::from_secs(30), is("stream")).await;
    let before = gpus(&d).await;
    let queue: Vec<&str> = before["queue"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["kernel"].as_str())
        .collect();
    assert_eq!(queue, [k2.as_str(), k3.as_str()], "{before}");

    d.kill();
    drop(ws2);
    d.spawn().await;
    let after = gpus(&d).await;
    let leases: Vec<(&str, &str)> = after["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["unit"].as_str().unwrap_or(""),
                l["holder"]["id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(leases, [(GPU_A, k1.as_str())], "{after}");
    assert_eq!(kernel_container(&k1).as_deref(), Some(c1.as_str()));
    let queue: Vec<(u64, &str)> = after["queue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["ahead"].as_u64().unwrap_or(99),
                w["kernel"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(queue, [(0, k2.as_str()), (1, k3.as_str())], "{after}");
    // `orrery gpus` shows the holder (and how long it has been idle) and the queue in order.
    let (code, table, err) = d.cli(&["gpus"], None);
    assert_eq!(code, 0, "{err}");
    eprintln!("$ orrery gpus\n{table}");
    let short = |k: &str| k.chars().take(8).collect::<String>();
    let unit_line = table
        .lines()
        .find(|l| l.contains(GPU_A))
        .unwrap_or_default();
    assert!(
        unit_line.contains(&format!("{user} (kernel {}, idle ", short(&k1))),
        "{table}"
    );
    let queue_lines: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("QUEUE"))
        .collect();
    assert!(
        queue_lines[0].starts_with("QUEUE: 2 kernel(s) waiting"),
        "{table}"
    );
    assert!(
        queue_lines[1].contains(&format!("1. {user}")) && queue_lines[1].contains(&short(&k2)),
        "{table}"
    );
    assert!(queue_lines[2].contains(&short(&k3)), "{table}");

    // The cell held when the daemon died is answered on the next connection.
    let mut ws2 = open_channels(&d, &user, &token, &k2).await;
    let seen = until_reply(&d, &mut ws2, &held, Duration::from_secs(30)).await;
    assert_eq!(seen.last().unwrap()["content"]["status"], "aborted");
    assert!(
        stream_text(&seen, &held).contains("The hub restarted while this cell waited for a GPU"),
        "{seen:#?}"
    );

    // The unit k1 gives back goes to k2, first in line.
    delete_kernel(&d, &user, &token, &k1).await;
    let cell = execute(&mut ws2, RAN_ON, false).await;
    let seen = until_reply(&d, &mut ws2, &cell, Duration::from_secs(90)).await;
    assert!(
        stream_text(&seen, &cell).ends_with(&format!("ran on {GPU_A}\n")),
        "{}\nhub log:\n{}",
        stream_text(&seen, &cell),
        d.log()
    );
    let c2 = kernel_container(&k2).expect("k2's container");
    assert_eq!(
        gpu_request_of(&c2),
        (vec![GPU_A.to_string()], GPU_A.to_string())
    );
    let now = gpus(&d).await;
    assert_eq!(now["queue"][0]["kernel"], k3.as_str(), "{now}");
    assert_eq!(now["leases"].as_array().map(Vec::len), Some(1), "{now}");
}

/// A GPU profile (`gpus = 1`) with remote kernels, on Docker: the server's container gets a
/// device request for exactly its unit, and its kernels get that same unit and lease none
/// (two GPU kernels, where leasing would have given one the other unit); stopping the server
/// gives the unit back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_profiles_server_and_its_kernels_get_its_unit() {
    let mut env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nvml-state");
    std::fs::write(
        &state,
        format!(
            "gpu {GPU_A} 85899345920 0 0 0 - NVIDIA A100\ngpu {GPU_B} 85899345920 0 0 0 - NVIDIA A100\n"
        ),
    )
    .unwrap();
    let (d, user, token, server) = gpu_daemon(
        &mut env,
        "gs",
        &state,
        "\n[[profiles]]\nname = \"gpu-server\"\ngpus = 1\n",
    )
    .await;
    let (units, visible) = gpu_request_of(&server);
    assert_eq!(units.len(), 1, "one unit for the server");
    assert_eq!(visible, units[0]);
    // Two GPU kernels: leasing, they would get the other unit for one of them; they inherit.
    for _ in 0..2 {
        let kid = new_kernel(&d, &user, &token, "gpu").await;
        let c = kernel_container(&kid).expect("the kernel's container");
        assert_eq!(
            gpu_request_of(&c),
            (units.clone(), units[0].clone()),
            "{kid}"
        );
    }
    let view = gpus(&d).await;
    let leases = view["leases"].as_array().expect("leases");
    assert_eq!(leases.len(), 1, "only the server's: {view}");
    assert_eq!(leases[0]["holder"]["kind"], "server", "{view}");
    assert_eq!(leases[0]["unit"], units[0].as_str(), "{view}");
    let (s, b, _) = d
        .api(
            "DELETE",
            &format!("/users/{user}/server"),
            Some(ADMIN),
            None,
        )
        .await;
    assert!(s == 202 || s == 204, "{s}: {b}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while gpus(&d).await["leases"] != json!([]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the stopped server kept its unit"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// `[[shared_volumes]]`: course data read-only for everyone, a group's read-write share for its
/// members only, mounted into the notebook servers and the remote kernels alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_volumes_reach_servers_and_kernels_of_the_users_they_are_for() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = env().await;
    let member = env.user("svm");
    let other = env.user("svo");
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("readme.txt"), "course data\n").unwrap();
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let share = tempfile::tempdir().unwrap();
    // Every user is uid 1000 in the containers: the host directory must let them write.
    std::fs::set_permissions(share.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let extra = format!(
        "{REMOTE}\n[[groups]]\nname = \"lab\"\nusers = [\"{member}\"]\n\n\
         [[shared_volumes]]\nsource = \"{}\"\ntarget = \"/srv/data\"\n\n\
         [[shared_volumes]]\nsource = \"{}\"\ntarget = \"/srv/shared/lab\"\nread_only = false\ngroups = [\"lab\"]\n",
        data.path().display(),
        share.path().display()
    );
    let d = env.daemon(&[&member, &other], "", &extra).await;
    let member_server = start_server(&d, &member).await;
    let other_server = start_server(&d, &other).await;
    let sh = |c: &str, script: &str| exec(c, &["sh", "-c", script]);

    for c in [&member_server, &other_server] {
        let (code, out, err) = sh(c, "cat /srv/data/readme.txt");
        assert_eq!((code, out.trim()), (0, "course data"), "{c}: {err}");
        let (code, _, _) = sh(c, "touch /srv/data/mine");
        assert_ne!(code, 0, "{c}: /srv/data is read-only");
    }
    let (code, _, err) = sh(
        &member_server,
        "echo from-server > /srv/shared/lab/server.txt",
    );
    assert_eq!(code, 0, "the member writes the group's share: {err}");
    let (code, _, _) = sh(&other_server, "test -e /srv/shared/lab");
    assert_ne!(code, 0, "no group share for a non-member");

    // The member's remote kernel gets the same mounts.
    let token = d.token_for(&member).await;
    let kid = new_kernel(&d, &member, &token, "python3").await;
    let kc = kernel_container(&kid).expect("the kernel's container");
    let (code, out, err) = sh(&kc, "cat /srv/data/readme.txt /srv/shared/lab/server.txt");
    assert_eq!((code, out.trim()), (0, "course data\nfrom-server"), "{err}");
    let (code, _, _) = sh(&kc, "touch /srv/data/mine");
    assert_ne!(code, 0, "read-only in the kernel too");
    let (code, _, err) = sh(&kc, "echo from-kernel > /srv/shared/lab/kernel.txt");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(share.path().join("kernel.txt")).unwrap(),
        "from-kernel\n"
    );
}
