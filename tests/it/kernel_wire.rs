//! The kernel protocol core (`orrery::kernels`) against a real ipykernel: each test starts the
//! single-user test image (`tests/images/build.sh`) as a bare kernel
//! (`python -m ipykernel_launcher -f /conn/kernel.json`) on a Docker bridge network of its own
//! and talks to it from the host over ZeroMQ, as the hub will: nudge, execute, stdin, comms
//! with binary buffers (also through the WebSocket framing), heartbeat, bad signatures.
//!
//! Needs a running Docker engine and the image (built offline, cached by recipe hash). A
//! missing prerequisite is a failure, never a skip. Every test removes its container and
//! network, also when it fails.
//!
//! `cargo test --test it kernel_wire -- --nocapture` prints the timings (start to first reply,
//! execute round trips).

use std::os::unix::fs::PermissionsExt;

use std::time::{Duration, Instant};

use crate::common::docker::{docker, docker_ok, image};
use bytes::Bytes;
use orrery::kernels::ws::binary_frame;
use orrery::kernels::{
    kernel_to_ws, ws_to_kernel, Channel, ConnectionInfo, KernelClient, KernelError, KernelMessage,
    RawMessage, WsFrame,
};
use serde_json::{json, Value};
use tokio::sync::mpsc::Receiver;

/// How long a kernel may take from `docker run` to answering the nudge.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long any one expected message may take.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------------------------------
// prerequisites and the kernel container

/// One ipykernel in a container on a network of its own; both removed on drop.
struct Kernel {
    container: String,
    network: String,
    /// The connection file's directory, mounted read-only at /conn.
    _dir: tempfile::TempDir,
    info: ConnectionInfo,
    /// The container's address on `network` (reachable from the host).
    ip: String,
    started: Instant,
}

impl Kernel {
    fn start() -> Kernel {
        logging();
        let image = image();
        let name = format!(
            "orrery-kwire-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let info = ConnectionInfo::new("0.0.0.0", "python3");
        let file = dir.path().join("kernel.json");
        std::fs::write(&file, info.to_json()).expect("write kernel.json");
        // The image runs as uid 1000: let it into the directory and read the file.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

        docker_ok(&["network", "create", &name]);
        let mut kernel = Kernel {
            container: name.clone(),
            network: name.clone(),
            _dir: dir,
            info,
            ip: String::new(),
            started: Instant::now(),
        };
        let mount = format!("{}:/conn:ro", kernel._dir.path().display());
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &name,
            "-v",
            &mount,
            &image,
            "python",
            "-m",
            "ipykernel_launcher",
            "-f",
            "/conn/kernel.json",
        ]);
        kernel.ip = kernel.container_ip();
        kernel
    }

    /// The container's address on its network.
    fn container_ip(&self) -> String {
        let format = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            self.network
        );
        let ip = docker_ok(&["inspect", "-f", &format, &self.container]);
        assert!(
            ip.parse::<std::net::IpAddr>().is_ok(),
            "no IP for {}: {ip:?}",
            self.container
        );
        ip
    }

    /// The kernel's output so far (for failure messages).
    fn logs(&self) -> String {
        let (_, out, err) = docker(&["logs", "--tail", "40", &self.container]);
        format!("{out}\n{err}")
    }

    /// A client connected to this kernel and nudged until it answers; also its receiver.
    async fn client(&self) -> (KernelClient, Receiver<KernelMessage>) {
        let mut client = KernelClient::connect_with_timeout(&self.info, &self.ip, START_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.logs()));
        let rx = client
            .take_receiver()
            .expect("a fresh client has its receiver");
        let reply = client
            .kernel_info(START_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("kernel_info: {e}\n{}", self.logs()));
        assert_eq!(reply.msg_type().unwrap(), "kernel_info_reply");
        (client, rx)
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.container]);
        let _ = docker(&["network", "rm", &self.network]);
    }
}

/// Shows the library's warnings (e.g. dropped messages) in the test output; `RUST_LOG` overrides.
fn logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("orrery=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

// ------------------------------------------------------------------------------------------
// message helpers

/// The next message satisfying `want`, skipping others; panics after [`MESSAGE_TIMEOUT`].
async fn wait_for(
    rx: &mut Receiver<KernelMessage>,
    what: &str,
    mut want: impl FnMut(Channel, &RawMessage) -> bool,
) -> RawMessage {
    let deadline = tokio::time::Instant::now() + MESSAGE_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((channel, msg))) if want(channel, &msg) => return msg,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("receiver closed while waiting for {what}"),
            Err(_) => panic!("no {what} within {MESSAGE_TIMEOUT:?}"),
        }
    }
}

fn is(
    channel: Channel,
    msg: &RawMessage,
    want_channel: Channel,
    msg_type: &str,
    parent: &RawMessage,
) -> bool {
    channel == want_channel
        && msg.msg_type().is_ok_and(|t| t == msg_type)
        && msg.parent_msg_id().ok().flatten() == parent.msg_id().ok()
}

/// What one execution produced.
struct Execution {
    reply: Value,
    /// iopub messages answering the request, `(msg_type, content)`, up to `status: idle`.
    iopub: Vec<(String, Value)>,
}

impl Execution {
    fn iopub_of(&self, msg_type: &str) -> Vec<&Value> {
        self.iopub
            .iter()
            .filter(|(t, _)| t == msg_type)
            .map(|(_, c)| c)
            .collect()
    }
}

/// Collects an execution's shell reply and iopub output until both are complete.
async fn finish_execution(rx: &mut Receiver<KernelMessage>, request: &RawMessage) -> Execution {
    let deadline = tokio::time::Instant::now() + MESSAGE_TIMEOUT;
    let (mut reply, mut iopub, mut idle) = (None, Vec::new(), false);
    while reply.is_none() || !idle {
        let (channel, msg) = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => panic!("receiver closed during execution"),
            Err(_) => panic!(
                "execution incomplete after {MESSAGE_TIMEOUT:?} (reply: {}, idle: {idle})",
                reply.is_some()
            ),
        };
        if msg.parent_msg_id().ok().flatten() != request.msg_id().ok() {
            continue;
        }
        let msg_type = msg.msg_type().unwrap();
        let content = msg.content_json().unwrap();
        match channel {
            Channel::Shell if msg_type == "execute_reply" => reply = Some(content),
            Channel::IOPub => {
                idle |= msg_type == "status" && content["execution_state"] == "idle";
                iopub.push((msg_type, content));
            }
            _ => {}
        }
    }
    Execution {
        reply: reply.unwrap(),
        iopub,
    }
}

async fn execute(client: &KernelClient, rx: &mut Receiver<KernelMessage>, code: &str) -> Execution {
    let request = client
        .request(
            Channel::Shell,
            "execute_request",
            &execute_content(code, false),
        )
        .await
        .expect("send execute_request");
    finish_execution(rx, &request).await
}

fn execute_content(code: &str, allow_stdin: bool) -> Value {
    json!({"code": code, "silent": false, "store_history": true, "user_expressions": {},
           "allow_stdin": allow_stdin, "stop_on_error": true})
}

fn stdout(exec: &Execution) -> String {
    exec.iopub_of("stream")
        .iter()
        .filter(|c| c["name"] == "stdout")
        .map(|c| c["text"].as_str().unwrap_or_default())
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

// ------------------------------------------------------------------------------------------
// tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nudge_execute_and_heartbeat() {
    let kernel = Kernel::start();
    let (client, mut rx) = kernel.client().await;
    let up = kernel.started.elapsed();
    eprintln!("kernel_wire: docker run → kernel_info_reply + iopub in {up:.2?}");
    assert!(up < START_TIMEOUT);

    // Once nudged, a second kernel_info is quick (sockets and subscription already live).
    let t = Instant::now();
    client.kernel_info(MESSAGE_TIMEOUT).await.unwrap();
    eprintln!("kernel_wire: second nudge in {:.2?}", t.elapsed());

    let exec = execute(&client, &mut rx, "1+1").await;
    assert_eq!(exec.reply["status"], "ok", "{}", exec.reply);
    let results = exec.iopub_of("execute_result");
    assert_eq!(results.len(), 1, "{:?}", exec.iopub);
    assert_eq!(results[0]["data"]["text/plain"], "2");
    assert!(!exec.iopub_of("execute_input").is_empty());

    // Round trips: request → shell execute_reply, and → iopub idle (all output delivered).
    let (mut to_reply, mut to_idle) = (Vec::new(), Vec::new());
    for i in 0..50 {
        let t = Instant::now();
        let request = client
            .request(
                Channel::Shell,
                "execute_request",
                &execute_content(&format!("{i}*2"), false),
            )
            .await
            .unwrap();
        // Reply and idle come on different sockets, in either order.
        let (mut reply_at, mut idle_at) = (None, None);
        while reply_at.is_none() || idle_at.is_none() {
            wait_for(&mut rx, "execute_reply and status idle", |c, m| {
                if is(c, m, Channel::Shell, "execute_reply", &request) {
                    reply_at = Some(t.elapsed());
                    true
                } else if is(c, m, Channel::IOPub, "status", &request)
                    && m.content_json().unwrap()["execution_state"] == "idle"
                {
                    idle_at = Some(t.elapsed());
                    true
                } else {
                    false
                }
            })
            .await;
        }
        to_reply.push(reply_at.unwrap());
        to_idle.push(idle_at.unwrap());
    }
    to_reply.sort();
    to_idle.sort();
    eprintln!(
        "kernel_wire: execute round trip over {} runs: execute_reply median {:.2?} p95 {:.2?}; \
         iopub idle median {:.2?} p95 {:.2?}",
        to_reply.len(),
        percentile(&to_reply, 0.5),
        percentile(&to_reply, 0.95),
        percentile(&to_idle, 0.5),
        percentile(&to_idle, 0.95),
    );

    let t = Instant::now();
    assert!(client.heartbeat(Duration::from_secs(5)).await, "heartbeat");
    eprintln!(
        "kernel_wire: first heartbeat (connect + echo) {:.2?}",
        t.elapsed()
    );
    let t = Instant::now();
    assert!(
        client.heartbeat(Duration::from_secs(5)).await,
        "second heartbeat"
    );
    eprintln!("kernel_wire: heartbeat {:.2?}", t.elapsed());

    // A dead kernel misses its heartbeat, and sends to it fail or go nowhere.
    docker_ok(&["kill", &kernel.container]);
    let t = Instant::now();
    assert!(
        !client.heartbeat(Duration::from_secs(2)).await,
        "heartbeat of a killed kernel"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(!client.heartbeat(Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_input_request_round_trip() {
    let kernel = Kernel::start();
    let (client, mut rx) = kernel.client().await;

    let request = client
        .request(
            Channel::Shell,
            "execute_request",
            &execute_content("print('got', input('x? '))", true),
        )
        .await
        .unwrap();
    // Shell and stdin share the identity: the kernel's question reaches us on stdin.
    let question = wait_for(&mut rx, "stdin input_request", |c, m| {
        is(c, m, Channel::Stdin, "input_request", &request)
    })
    .await;
    let content = question.content_json().unwrap();
    assert_eq!(content["prompt"], "x? ");
    assert_eq!(content["password"], false);

    let answer = RawMessage::new("input_reply", client.session(), &json!({"value": "42"}))
        .with_parent(&question);
    client.send(Channel::Stdin, answer).await.unwrap();

    let exec = finish_execution(&mut rx, &request).await;
    assert_eq!(exec.reply["status"], "ok", "{}", exec.reply);
    assert_eq!(stdout(&exec), "got 42\n", "{:?}", exec.iopub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comm_echo_with_binary_buffers_through_the_websocket_framing() {
    let kernel = Kernel::start();
    let (client, mut rx) = kernel.client().await;

    let register = "get_ipython().kernel.comm_manager.register_target('echo', \
        lambda comm, msg: comm.on_msg(lambda m: comm.send(m['content']['data'], buffers=m['buffers'])))";
    let exec = execute(&client, &mut rx, register).await;
    assert_eq!(
        exec.reply["status"], "ok",
        "{} {:?}",
        exec.reply, exec.iopub
    );

    let comm_id = uuid::Uuid::new_v4().simple().to_string();
    let open = client
        .request(
            Channel::Shell,
            "comm_open",
            &json!({"comm_id": comm_id, "target_name": "echo", "data": {}}),
        )
        .await
        .unwrap();
    wait_for(&mut rx, "comm_open handled (status idle)", |c, m| {
        is(c, m, Channel::IOPub, "status", &open)
            && m.content_json().unwrap()["execution_state"] == "idle"
    })
    .await;

    // The comm_msg arrives as a browser would send it: a binary WebSocket frame, here built
    // with the legacy layout and read back with `ws_to_kernel`.
    let buffer: &[u8] = b"\x00\x01binary";
    let browser = RawMessage::new(
        "comm_msg",
        "browser-session",
        &json!({"comm_id": comm_id, "data": {"hello": "world", "n": 7}}),
    );
    let envelope = json!({
        "header": browser.header_json().unwrap(),
        "parent_header": {},
        "metadata": {},
        "content": browser.content_json().unwrap(),
        "channel": "shell",
    });
    let frame = binary_frame(
        &serde_json::to_vec(&envelope).unwrap(),
        &[Bytes::from_static(buffer)],
    )
    .expect("a small frame");
    let (channel, msg) = ws_to_kernel(&frame).unwrap();
    assert_eq!(channel, Channel::Shell);
    assert_eq!(msg.buffers, vec![Bytes::from_static(buffer)]);
    client.send(channel, msg.clone()).await.unwrap();

    let echo = wait_for(&mut rx, "comm_msg echo on iopub", |c, m| {
        is(c, m, Channel::IOPub, "comm_msg", &msg)
    })
    .await;
    assert_eq!(
        echo.buffers,
        vec![Bytes::from_static(buffer)],
        "the buffer comes back as sent"
    );
    let content = echo.content_json().unwrap();
    assert_eq!(content["comm_id"], comm_id.as_str());
    assert_eq!(content["data"], json!({"hello": "world", "n": 7}));

    // And towards the browser: a binary frame that reads back to the same message.
    let WsFrame::Binary(out) = kernel_to_ws(Channel::IOPub, &echo).unwrap() else {
        panic!("a message with buffers must be a binary frame");
    };
    let (channel, back) = ws_to_kernel(&out).unwrap();
    assert_eq!(channel, Channel::IOPub);
    assert_eq!(back.buffers, echo.buffers);
    assert_eq!(back.header_json().unwrap(), echo.header_json().unwrap());
    assert_eq!(back.content_json().unwrap(), content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_are_dropped_both_ways() {
    let kernel = Kernel::start();
    let (client, mut rx) = kernel.client().await;

    // A client with the wrong key: the kernel must ignore what it sends, and it must drop what
    // the kernel publishes (signed with the real key).
    let mut wrong = kernel.info.clone();
    wrong.key = ConnectionInfo::new("0.0.0.0", "python3").key;
    let mut impostor = KernelClient::connect(&wrong, &kernel.ip).await.unwrap();
    let mut impostor_rx = impostor.take_receiver().unwrap();
    let forged = impostor
        .request(
            Channel::Shell,
            "execute_request",
            &execute_content("forged = True", false),
        )
        .await
        .unwrap();

    // While the good client makes the kernel publish, the impostor nudges: the kernel ignores
    // its kernel_info_requests, and its subscriber drops every iopub message (bad signature to
    // its key), so it sees neither a reply nor iopub traffic.
    let nudge = impostor.kernel_info(Duration::from_secs(4));
    let traffic = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut last = None;
        for _ in 0..3 {
            last = Some(execute(&client, &mut rx, "print('forged' in globals())").await);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        last.unwrap()
    };
    let (nudged, exec) = tokio::join!(nudge, traffic);
    let err = nudged.expect_err("the kernel answered a badly signed kernel_info_request");
    assert!(
        err.to_string()
            .contains("kernel_info_reply (nor any iopub message)"),
        "{err}"
    );
    assert_eq!(exec.reply["status"], "ok");
    assert_eq!(stdout(&exec), "False\n", "the kernel ran a forged request");
    while let Ok((channel, msg)) = rx.try_recv() {
        assert_ne!(
            msg.parent_msg_id().ok().flatten(),
            forged.msg_id().ok(),
            "the kernel answered a forged request on {channel}"
        );
    }
    let leaked = tokio::time::timeout(Duration::from_millis(200), impostor_rx.recv()).await;
    assert!(
        leaked.is_err(),
        "a message with a bad signature was delivered: {:?}",
        leaked.unwrap().map(|(c, m)| (c, m.msg_type()))
    );
}

/// What a kernel restart does to a client (zeromq 0.7): iopub reconnects by itself, shell does
/// not (sends fail with `Disconnected`), and a new client works. If this starts failing because
/// DEALER sockets learned to reconnect, update the docs of `orrery::kernels::client`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_restart_needs_a_new_client() {
    let mut kernel = Kernel::start();
    let (client, mut rx) = kernel.client().await;
    assert_eq!(execute(&client, &mut rx, "1+1").await.reply["status"], "ok");

    docker_ok(&["restart", "-t", "1", &kernel.container]);
    let ip = kernel.ip.clone();
    kernel.ip = kernel.container_ip();
    assert_eq!(kernel.ip, ip, "the restarted container changed its address");

    let (fresh, mut fresh_rx) = kernel.client().await;
    assert_eq!(
        execute(&fresh, &mut fresh_rx, "1+1").await.reply["status"],
        "ok"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sent = client
            .request(
                Channel::Shell,
                "execute_request",
                &execute_content("2+2", false),
            )
            .await;
        match sent {
            Err(KernelError::Disconnected {
                channel: Channel::Shell,
                ..
            }) => break,
            other => assert!(
                Instant::now() < deadline,
                "the old client's shell still sends after the restart: {:?}",
                other.map(|m| m.msg_id().unwrap())
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // (Whether the old client's SUB socket reconnects in time to see the new kernel's iopub
    // is up to zeromq's reconnect timing; the gateway never relies on it: it connects a new
    // client after every restart, as above.)
    drop(rx);
}

/// A second connection (a reconnecting WebSocket) while a cell runs: control answers
/// kernel_info even though shell is busy, so the nudge does not wait for the cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nudge_answers_while_the_kernel_is_busy() {
    let kernel = Kernel::start();
    let (client, mut rx) = kernel.client().await;
    let request = client
        .request(
            Channel::Shell,
            "execute_request",
            &execute_content("import time; time.sleep(4)", false),
        )
        .await
        .unwrap();
    wait_for(&mut rx, "status busy", |c, m| {
        is(c, m, Channel::IOPub, "status", &request)
            && m.content_json().unwrap()["execution_state"] == "busy"
    })
    .await;
    let t = Instant::now();
    let (_second, _second_rx) = kernel.client().await;
    let took = t.elapsed();
    eprintln!("kernel_wire: nudge of a busy kernel in {took:.2?}");
    assert!(
        took < Duration::from_secs(3),
        "the nudge waited for the cell ({took:?})"
    );
    let exec = finish_execution(&mut rx, &request).await;
    assert_eq!(exec.reply["status"], "ok");
}
