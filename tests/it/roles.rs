//! `[[roles]]` end to end (JupyterHub's `load_roles`): the teaching-assistant example through
//! the real daemon's API with the TA's own token (read, start and stop the servers of class-a's
//! students, nothing else), role names in the user model, tokens and services narrowed through
//! group filters, a role changed by `orrery config reload` taking effect at once; and, with
//! Docker, the TA running code in a student's server through the hub's proxy and refused in the
//! server of a student outside the class.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::docker::{channels_request, create_kernel, proxied, start_server, Env};
use crate::common::{repo, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};

const TA_ROLE: &str = "[[roles]]\nname = \"class-a-ta\"\ndescription = \"Teaching assistants of class A\"\n\
     scopes = [\"access:servers!group=class-a\", \"read:users!group=class-a\", \"admin:servers!group=class-a\"]\n\
     users = [\"tina\"]\n";

const GRADER: &str = "[[services]]\nname = \"grader\"\napi_token = \"grader-token-0123456789abcdef\"\nscopes = []\n\n\
     [[roles]]\nname = \"grading\"\nscopes = [\"read:users!group=class-a\"]\nservices = [\"grader\"]\n";

/// A local backend whose "server" is the stdlib stand-in of `tests/python/header_server.py`:
/// it answers at once, so starts and stops complete.
fn local_servers() -> String {
    format!(
        "[spawner]\nbackend = \"local\"\n[spawner.local]\ncmd = [\"python3\", \"{}\"]\nallow_root = true\n",
        repo().join("tests/python/header_server.py").display()
    )
}

fn class_a(users: &[&str]) -> String {
    format!("[[groups]]\nname = \"class-a\"\nusers = {}\n", json!(users))
}

#[tokio::test]
async fn a_teaching_assistant_reads_starts_and_stops_only_her_class_servers() {
    let d = Daemon::start(&format!(
        "{}\n{}\n{TA_ROLE}\n{GRADER}",
        local_servers(),
        class_a(&["sam"])
    ))
    .await;
    d.create_users(&["tina", "sam", "bob"], false).await;
    let tina = d.token_for("tina").await;

    // Her own model lists the role; her scopes name the group and, for single-user servers
    // that cannot resolve groups, its members.
    let (s, me, _) = d.api("GET", "/user", Some(&tina), None).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["roles"], json!(["user", "class-a-ta"]), "{me}");
    let scopes = me["scopes"].as_array().expect("scopes");
    for want in [
        "access:servers!group=class-a",
        "access:servers!user=sam",
        "admin:servers!group=class-a",
        "read:users!group=class-a",
        "servers!group=class-a",
    ] {
        assert!(scopes.contains(&json!(want)), "{want} in {me}");
    }
    assert!(!scopes.contains(&json!("access:servers!user=bob")), "{me}");
    let (_, as_admin, _) = d.api("GET", "/users/tina", Some(ADMIN), None).await;
    assert_eq!(as_admin["roles"], json!(["user", "class-a-ta"]));
    let (_, sam_model, _) = d.api("GET", "/users/sam", Some(ADMIN), None).await;
    assert_eq!(sam_model["roles"], json!(["user"]));
    assert_eq!(sam_model["groups"], json!(["class-a"]));

    // A class-a student: read, start, stop.
    let (s, sam, _) = d.api("GET", "/users/sam", Some(&tina), None).await;
    assert_eq!(s, 200, "{sam}");
    assert_eq!(sam["name"], "sam");
    assert_eq!(sam["groups"], json!(["class-a"]));
    let (s, body, _) = d.api("POST", "/users/sam/server", Some(&tina), None).await;
    assert_eq!(s, 201, "tina starts sam's server: {body}\n{}", d.log());
    let (_, sam, _) = d.api("GET", "/users/sam", Some(&tina), None).await;
    assert_eq!(sam["servers"][""]["ready"], true, "{sam}");
    let (s, body, _) = d
        .api("DELETE", "/users/sam/server", Some(&tina), None)
        .await;
    assert_eq!(s, 204, "tina stops sam's server: {body}");
    let (_, sam, _) = d.api("GET", "/users/sam", Some(ADMIN), None).await;
    assert_eq!(sam["server"], Value::Null, "{sam}");

    // A student outside class-a does not exist for her; nor can she create users or list them.
    let (s, _, _) = d.api("GET", "/users/bob", Some(&tina), None).await;
    assert_eq!(s, 404);
    let (s, _, _) = d.api("POST", "/users/bob/server", Some(&tina), None).await;
    assert_eq!(s, 404);
    let (s, _, _) = d
        .api("DELETE", "/users/bob/server", Some(&tina), None)
        .await;
    assert_eq!(s, 404);
    let (_, bob, _) = d.api("GET", "/users/bob", Some(ADMIN), None).await;
    assert_eq!(bob["server"], Value::Null, "{bob}");
    let (s, _, _) = d.api("POST", "/users/newbie", Some(&tina), None).await;
    assert_eq!(s, 403);
    // Listing shows only herself: the role reads class-a's users but does not list them.
    let (s, list, _) = d.api("GET", "/users", Some(&tina), None).await;
    assert_eq!(s, 200, "{list}");
    let names: Vec<&str> = list
        .as_array()
        .map(|l| l.iter().filter_map(|u| u["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["tina"], "{list}");
    // Reading is not managing: no tokens of sam's, no deleting him.
    let (s, _, _) = d.api("GET", "/users/sam/tokens", Some(&tina), None).await;
    assert_eq!(s, 403);
    let (s, _, _) = d.api("DELETE", "/users/sam", Some(&tina), None).await;
    assert_eq!(s, 403);

    // A narrower token: sam's server through the group filter, never bob's.
    let (s, body, _) = d
        .api(
            "POST",
            "/users/tina/tokens",
            Some(&tina),
            Some(json!({"scopes": ["access:servers!server=sam/", "read:users!user=sam"]})),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let narrow = body["token"].as_str().expect("token").to_string();
    let (_, me, _) = d.api("GET", "/user", Some(&narrow), None).await;
    assert!(
        me["scopes"]
            .as_array()
            .is_some_and(|s| s.contains(&json!("access:servers!server=sam/"))),
        "{me}"
    );
    let (s, body, _) = d
        .api(
            "POST",
            "/users/tina/tokens",
            Some(&tina),
            Some(json!({"scopes": ["access:servers!server=bob/"]})),
        )
        .await;
    assert_eq!(s, 403, "{body}");

    // A service gains its role's scopes.
    let grader = "grader-token-0123456789abcdef";
    let (s, _, _) = d.api("GET", "/users/sam", Some(grader), None).await;
    assert_eq!(s, 200);
    let (s, _, _) = d.api("GET", "/users/bob", Some(grader), None).await;
    assert_eq!(s, 404);

    // A reload changes the role and the group at once: no more start/stop, and bob is in.
    let text = std::fs::read_to_string(&d.config_path).unwrap();
    let text = text
        .replace(", \"admin:servers!group=class-a\"]", "]")
        .replace("users = [\"sam\"]", "users = [\"sam\",\"bob\"]");
    std::fs::write(&d.config_path, text).unwrap();
    let (code, out, err) = d.cli(&["config", "reload"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("roles") && out.contains("groups"), "{out}");
    let (s, body, _) = d.api("POST", "/users/sam/server", Some(&tina), None).await;
    assert_eq!(s, 403, "admin:servers left the role: {body}");
    let (s, bob, _) = d.api("GET", "/users/bob", Some(&tina), None).await;
    assert_eq!(s, 200, "bob joined class-a: {bob}");
    let (s, _, _) = d.api("GET", "/users/bob", Some(grader), None).await;
    assert_eq!(s, 200);
}

/// What `code` evaluates to, executed in kernel `kid` of `user`'s server over the channels
/// WebSocket through the hub's proxy, authenticated with `token`.
async fn execute(d: &Daemon, user: &str, token: &str, kid: &str, code: &str) -> Value {
    let req = channels_request(d, user, token, kid, "", &d.url);
    let (mut ws, resp) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("WebSocket handshake within 30 s")
    .unwrap_or_else(|e| panic!("WebSocket to {user}'s kernel: {e}\n{}", d.log()));
    assert_eq!(resp.status(), 101);
    let msg_id = format!("exec-{}", uuid::Uuid::new_v4());
    let request = json!({
        "header": {
            "msg_id": msg_id, "username": "", "session": uuid::Uuid::new_v4().to_string(),
            "msg_type": "execute_request", "version": "5.3",
            "date": chrono::Utc::now().to_rfc3339(),
        },
        "parent_header": {}, "metadata": {},
        "content": {
            "code": code, "silent": false, "store_history": true, "user_expressions": {},
            "allow_stdin": false, "stop_on_error": true,
        },
        "channel": "shell", "buffers": [],
    });
    ws.send(Message::Text(request.to_string().into()))
        .await
        .expect("send execute_request");
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(m) = ws.next().await {
            let Message::Text(text) = m.expect("WebSocket message") else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).expect("JSON message");
            let kind = v["msg_type"]
                .as_str()
                .or(v["header"]["msg_type"].as_str())
                .unwrap_or("");
            if kind == "execute_result" && v["parent_header"]["msg_id"] == msg_id.as_str() {
                return Some(v);
            }
        }
        None
    })
    .await
    .expect("an execute_result within 60 s")
    .expect("the WebSocket stayed open until the result");
    let _ = ws.close(None).await;
    result["content"]["data"]["text/plain"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teaching_assistant_runs_code_in_her_class_servers_through_the_proxy() {
    let mut env = Env::new("r").await;
    let (tina, sam, bob) = (env.user("tina"), env.user("sam"), env.user("bob"));
    let extra = format!(
        "{}\n{}",
        class_a(&[&sam]),
        TA_ROLE.replace("\"tina\"", &format!("{tina:?}"))
    );
    let d = env.daemon(&[&tina, &sam, &bob], "", &extra).await;
    start_server(&d, &sam).await;
    start_server(&d, &bob).await;
    let token = d.token_for(&tina).await;

    // In sam's server (class-a): a kernel, and a cell run over the WebSocket, with her token.
    let kid = create_kernel(&d, &sam, &token, "python3").await;
    assert_eq!(execute(&d, &sam, &token, &kid, "1+1").await, "2");

    // Bob's server (not in class-a) refuses her, through the API and the kernel WebSocket.
    let r = proxied(&d, "GET", &bob, "api/status", &token, None).await;
    assert_eq!(r.status(), 403, "tina in bob's server");
    let r = proxied(
        &d,
        "POST",
        &bob,
        "api/kernels",
        &token,
        Some(json!({"name": "python3"})),
    )
    .await;
    assert_eq!(r.status(), 403, "tina starting a kernel in bob's server");
    let bob_token = d.token_for(&bob).await;
    let bob_kid = create_kernel(&d, &bob, &bob_token, "python3").await;
    let refused =
        tokio_tungstenite::connect_async(channels_request(&d, &bob, &token, &bob_kid, "", &d.url))
            .await;
    assert!(
        refused.is_err(),
        "tina's WebSocket to bob's kernel must be refused"
    );
    // The control: bob's own token runs the cell.
    assert_eq!(execute(&d, &bob, &bob_token, &bob_kid, "2+3").await, "5");
}
