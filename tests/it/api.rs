//! The REST API against a real `orrery serve`: versions and headers, users and isolation,
//! tokens and scopes, groups, activity, pagination, metrics.

use crate::common::{Daemon, ADMIN_SERVICE_TOKEN as ADMIN};
use serde_json::{json, Value};

#[tokio::test]
async fn version_header_and_errors_follow_jupyterhub() {
    let d = Daemon::start("").await;
    let (s, body, h) = d.api("GET", "/", None, None).await;
    assert_eq!(s, 200);
    assert!(
        body["version"].as_str().is_some_and(|v| v.starts_with('6')),
        "{body}"
    );
    assert!(h.contains_key("x-jupyterhub-version"));
    // Errors are JSON {status, message} and carry the header too.
    let (s, body, h) = d.api("GET", "/user", None, None).await;
    assert_eq!(s, 403);
    assert_eq!(body["status"], 403);
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(h.contains_key("x-jupyterhub-version"));
    let (s, _, _) = d.api("GET", "/user", Some("not-a-token"), None).await;
    assert_eq!(s, 403);
    // Bearer and ?token= work as well as "token".
    let r = d
        .http
        .get(format!("{}/hub/api/user", d.url))
        .header("Authorization", format!("Bearer {ADMIN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = d
        .http
        .get(format!("{}/hub/api/user?token={ADMIN}", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, info, _) = d.api("GET", "/info", Some(ADMIN), None).await;
    assert_eq!(s, 200, "{info}");
    assert_eq!(info["spawner"]["class"], "orrery.local");
}

#[tokio::test]
async fn users_cannot_touch_each_other_but_admins_can() {
    let d = Daemon::start("").await;
    d.create_users(&["alice", "bob"], false).await;
    d.create_users(&["root1"], true).await;
    let alice = d.token_for("alice").await;
    let root = d.token_for("root1").await;

    let (s, me, _) = d.api("GET", "/user", Some(&alice), None).await;
    assert_eq!(s, 200);
    assert_eq!(me["name"], "alice");
    assert_eq!(me["kind"], "user");
    let scopes: Vec<&str> = me["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(scopes.contains(&"access:servers!user=alice"), "{scopes:?}");
    assert!(scopes.windows(2).all(|w| w[0] <= w[1]), "scopes sorted");
    assert!(me["token_id"].is_string());

    // Reading or changing bob: alice can't even see him.
    for (m, path, body) in [
        ("GET", "/users/bob", None),
        ("PATCH", "/users/bob", Some(json!({"admin": true}))),
        ("DELETE", "/users/bob", None),
        ("POST", "/users/bob/tokens", Some(json!({}))),
        ("GET", "/users/bob/tokens", None),
        ("POST", "/users/bob/server", None),
        ("DELETE", "/users/bob/server", None),
        (
            "POST",
            "/users/bob/activity",
            Some(json!({"last_activity": "2026-01-01T00:00:00Z"})),
        ),
    ] {
        let (s, b, _) = d.api(m, path, Some(&alice), body).await;
        assert!(s == 404 || s == 403, "{m} {path} as alice gave {s}: {b}");
    }
    // Alice can't make herself admin either.
    let (s, _, _) = d
        .api(
            "PATCH",
            "/users/alice",
            Some(&alice),
            Some(json!({"admin": true})),
        )
        .await;
    assert_eq!(s, 403);
    // Alice's list shows only herself.
    let (s, list, _) = d.api("GET", "/users", Some(&alice), None).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, vec!["alice"]);

    // An admin user can read, change and delete bob.
    let (s, bob, _) = d.api("GET", "/users/bob", Some(&root), None).await;
    assert_eq!(s, 200);
    assert_eq!(bob["admin"], false);
    assert!(bob["created"].as_str().is_some_and(|c| c.ends_with('Z')));
    let (s, bob, _) = d
        .api(
            "PATCH",
            "/users/bob",
            Some(&root),
            Some(json!({"admin": true})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(bob["admin"], true);
    let (s, list, _) = d.api("GET", "/users", Some(&root), None).await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 3);
    let (s, _, _) = d.api("DELETE", "/users/bob", Some(&root), None).await;
    assert_eq!(s, 204);
    let (s, _, _) = d.api("GET", "/users/bob", Some(&root), None).await;
    assert_eq!(s, 404);
    // An admin can't delete themselves.
    let (s, _, _) = d.api("DELETE", "/users/root1", Some(&root), None).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn user_names_are_validated_and_normalised() {
    let d = Daemon::start("").await;
    let (s, b, _) = d
        .api(
            "POST",
            "/users",
            Some(ADMIN),
            Some(json!({"usernames": ["Carol"]})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b[0]["name"], "carol");
    let (s, b, _) = d
        .api(
            "POST",
            "/users",
            Some(ADMIN),
            Some(json!({"usernames": ["../etc"]})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        b["message"].as_str().unwrap().contains("must start with"),
        "{b}"
    );
    let (s, _, _) = d
        .api(
            "POST",
            "/users",
            Some(ADMIN),
            Some(json!({"usernames": ["carol"]})),
        )
        .await;
    assert_eq!(s, 409);
    let (s, b, _) = d
        .api(
            "POST",
            "/users",
            Some(ADMIN),
            Some(json!({"usernames": "x"})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
}

#[tokio::test]
async fn tokens_scopes_expiry_and_revocation() {
    let d = Daemon::start("").await;
    d.create_users(&["alice"], false).await;
    let alice = d.token_for("alice").await;
    // A narrower token works for what it holds and nothing else.
    let (s, t, _) = d
        .api(
            "POST",
            "/users/alice/tokens",
            Some(&alice),
            Some(json!({"scopes": ["read:users:name!user=alice"], "note": "narrow"})),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let narrow = t["token"].as_str().unwrap().to_string();
    assert_eq!(t["prefix"].as_str().unwrap(), &narrow[..4]);
    let (s, me, _) = d.api("GET", "/user", Some(&narrow), None).await;
    assert_eq!(s, 200);
    assert_eq!(me["scopes"], json!(["read:users:name!user=alice"]));
    let (s, _, _) = d
        .api(
            "POST",
            "/users/alice/tokens",
            Some(&narrow),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 403, "narrow token must not mint tokens");
    // Scopes the owner does not hold are refused.
    let (s, b, _) = d
        .api(
            "POST",
            "/users/alice/tokens",
            Some(&alice),
            Some(json!({"scopes": ["admin:users"]})),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    assert!(b["message"].as_str().unwrap().contains("admin:users"));
    let (s, _, _) = d
        .api(
            "POST",
            "/users/alice/tokens",
            Some(&alice),
            Some(json!({"scopes": ["read:userz"]})),
        )
        .await;
    assert_eq!(s, 400);
    // List, get, delete.
    let (s, list, _) = d
        .api("GET", "/users/alice/tokens", Some(&alice), None)
        .await;
    assert_eq!(s, 200);
    let ids: Vec<String> = list["api_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(
        list.to_string().find(&narrow).is_none(),
        "tokens are never shown again"
    );
    let tid = t["id"].as_str().unwrap();
    let (s, got, _) = d
        .api(
            "GET",
            &format!("/users/alice/tokens/{tid}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(got["note"], "narrow");
    let (s, _, _) = d
        .api(
            "DELETE",
            &format!("/users/alice/tokens/{tid}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _, _) = d.api("GET", "/user", Some(&narrow), None).await;
    assert_eq!(s, 403, "revoked token");
    // Expiry.
    let (s, t, _) = d
        .api(
            "POST",
            "/users/alice/tokens",
            Some(&alice),
            Some(json!({"expires_in": 1})),
        )
        .await;
    assert_eq!(s, 201);
    assert!(t["expires_at"].is_string());
    let short = t["token"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (s, _, _) = d.api("GET", "/user", Some(&short), None).await;
    assert_eq!(s, 403, "expired token");
    // Demoting a user weakens their tokens at once.
    d.create_users(&["boss"], true).await;
    let boss = d.token_for("boss").await;
    let (s, _, _) = d.api("GET", "/users/alice", Some(&boss), None).await;
    assert_eq!(s, 200);
    let (s, _, _) = d
        .api(
            "PATCH",
            "/users/boss",
            Some(ADMIN),
            Some(json!({"admin": false})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _, _) = d.api("GET", "/users/alice", Some(&boss), None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn groups_crud_membership_and_group_filters() {
    let d = Daemon::start("").await;
    d.create_users(&["alice", "bob"], false).await;
    let (s, g, _) = d
        .api(
            "POST",
            "/groups/class",
            Some(ADMIN),
            Some(json!({"users": ["alice"]})),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    assert_eq!(g["users"], json!(["alice"]));
    let (s, _, _) = d.api("POST", "/groups/class", Some(ADMIN), None).await;
    assert_eq!(s, 409);
    let (s, g, _) = d
        .api(
            "POST",
            "/groups/class/users",
            Some(ADMIN),
            Some(json!({"users": ["bob"]})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(g["users"], json!(["alice", "bob"]));
    let (s, _, _) = d
        .api(
            "POST",
            "/groups/class/users",
            Some(ADMIN),
            Some(json!({"users": ["nobody"]})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, u, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    assert_eq!(s, 200);
    assert_eq!(u["groups"], json!(["class"]));
    let (s, g, _) = d
        .api(
            "DELETE",
            "/groups/class/users",
            Some(ADMIN),
            Some(json!({"users": ["alice"]})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(g["users"], json!(["bob"]));
    let (s, list, _) = d.api("GET", "/groups", Some(ADMIN), None).await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    // A token scoped to a group reads only its members.
    d.create_users(&["ta"], true).await;
    let ta = d.token_for("ta").await;
    let (s, t, _) = d
        .api(
            "POST",
            "/users/ta/tokens",
            Some(&ta),
            Some(json!({"scopes": ["read:users!group=class"]})),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let gt = t["token"].as_str().unwrap();
    let (s, _, _) = d.api("GET", "/users/bob", Some(gt), None).await;
    assert_eq!(s, 200);
    let (s, _, _) = d.api("GET", "/users/alice", Some(gt), None).await;
    assert_eq!(s, 404);
    let alice = d.token_for("alice").await;
    let (s, _, _) = d.api("DELETE", "/groups/class", Some(&alice), None).await;
    assert!(s == 403 || s == 404);
    let (s, _, _) = d.api("DELETE", "/groups/class", Some(ADMIN), None).await;
    assert_eq!(s, 204);
}

#[tokio::test]
async fn pagination_follows_next_urls() {
    let d = Daemon::start("").await;
    let names: Vec<String> = (0..120).map(|i| format!("u{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    d.create_users(&refs, false).await;
    let mut url = format!("{}/hub/api/users?limit=50", d.url);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = d
            .http
            .get(&url)
            .header("Authorization", format!("token {ADMIN}"))
            .header("Accept", "application/jupyterhub-pagination+json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        pages += 1;
        assert_eq!(body["_pagination"]["total"], 120);
        seen.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["name"].as_str().unwrap().to_string()),
        );
        match body["_pagination"]["next"]["url"].as_str() {
            Some(next) => {
                assert!(
                    next.starts_with("http://127.0.0.1:"),
                    "absolute next url: {next}"
                );
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, names);
    // Without the Accept header: a plain list; state filters and sort.
    let (s, list, _) = d
        .api(
            "GET",
            "/users?limit=5&offset=10&sort=-name",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(list[0]["name"], "u109");
    assert_eq!(list.as_array().unwrap().len(), 5);
    let (s, list, _) = d.api("GET", "/users?state=ready", Some(ADMIN), None).await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 0);
    let (s, _, _) = d.api("GET", "/users?state=bogus", Some(ADMIN), None).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn activity_only_moves_forward_and_checks_servers() {
    let d = Daemon::start("").await;
    d.create_users(&["alice"], false).await;
    let alice = d.token_for("alice").await;
    let (s, _, _) = d
        .api(
            "POST",
            "/users/alice/activity",
            Some(&alice),
            Some(json!({"last_activity": "2026-05-01T10:00:00.000Z"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _, _) = d
        .api(
            "POST",
            "/users/alice/activity",
            Some(&alice),
            Some(json!({"last_activity": "2026-04-01T10:00:00Z"})),
        )
        .await;
    assert_eq!(s, 200);
    let (_, u, _) = d.api("GET", "/users/alice", Some(&alice), None).await;
    assert_eq!(u["last_activity"], "2026-05-01T10:00:00.000000Z");
    let (s, _, _) = d
        .api(
            "POST",
            "/users/alice/activity",
            Some(&alice),
            Some(json!({"servers": {"nope": {"last_activity": "2026-05-01T10:00:00Z"}}})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _, _) = d
        .api(
            "POST",
            "/users/alice/activity",
            Some(&alice),
            Some(json!({"last_activity": "yesterday"})),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn unreachable_docker_is_reported_clearly_and_health_metrics_work() {
    let d = Daemon::start("[spawner.docker]\nsocket = \"unix:///nonexistent/docker.sock\"\n").await;
    d.create_users(&["alice"], false).await;
    let alice = d.token_for("alice").await;
    let (s, b, _) = d
        .api("POST", "/users/alice/server", Some(&alice), None)
        .await;
    assert_eq!(s, 501, "{b}");
    let m = b["message"].as_str().unwrap();
    assert!(
        m.contains("not ready") || m.contains("not reachable"),
        "{m}"
    );
    // Nothing is left half-started.
    let (_, u, _) = d.api("GET", "/users/alice", Some(&alice), None).await;
    assert_eq!(u["server"], Value::Null);
    assert_eq!(u["pending"], Value::Null);
    let r = d
        .http
        .get(format!("{}/hub/health", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = d
        .http
        .get(format!("{}/hub/metrics", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "metrics need read:metrics");
    let m = d.metrics().await;
    assert!(m.contains("orrery_total_users 1"), "{m}");
    // Active users come from the activity index: they agree with the user's model.
    let (_, u, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    let active = usize::from(!u["last_activity"].is_null());
    assert!(
        m.contains(&format!("orrery_active_users {active}"))
            && m.contains(&format!(
                "jupyterhub_active_users{{period=\"24h\"}} {active}"
            )),
        "{m}"
    );
    assert!(
        m.contains("orrery_api_request_duration_seconds_count{method=\"POST\",code=\"5xx\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn spawns_beyond_the_limit_get_429_and_pending_spawns_answer_202() {
    let d = Daemon::start(
        "[spawner]\nbackend = \"local\"\nconcurrent_spawn_limit = 1\nslow_spawn_timeout = \"1s\"\nstart_timeout = \"20s\"\n\
         [spawner.local]\ncmd = [\"sleep\", \"20\"]\nallow_root = true\n",
    )
    .await;
    d.create_users(&["alice", "bob"], false).await;
    let (s, _, _) = d
        .api("POST", "/users/alice/server", Some(ADMIN), None)
        .await;
    assert_eq!(
        s, 202,
        "a server that is not ready within slow_spawn_timeout is pending"
    );
    let (_, u, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    assert_eq!(u["pending"], "spawn");
    assert_eq!(u["servers"][""]["ready"], false);
    let (s, b, h) = d.api("POST", "/users/bob/server", Some(ADMIN), None).await;
    assert_eq!(s, 429, "{b}");
    assert_eq!(
        h.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let (s, b, _) = d
        .api("POST", "/users/alice/server", Some(ADMIN), None)
        .await;
    assert_eq!(s, 400, "already pending: {b}");
    let (s, b, _) = d
        .api("DELETE", "/users/alice/server", Some(ADMIN), None)
        .await;
    assert_eq!(s, 400, "can't stop while starting: {b}");
    // The progress stream reports what is happening so far.
    let r = d
        .http
        .get(format!("{}/hub/api/users/alice/server/progress", d.url))
        .header("Authorization", format!("token {ADMIN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = r.bytes_stream();
    use futures::StreamExt;
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
        .await
        .expect("an event")
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&first);
    assert!(
        text.starts_with("data: ") && text.contains("\"progress\""),
        "{text}"
    );
}

#[tokio::test]
async fn concurrent_starts_of_one_server_start_it_once() {
    let d = Daemon::start(
        "[spawner]\nbackend = \"local\"\nslow_spawn_timeout = \"1s\"\nstart_timeout = \"20s\"\n\
         [spawner.local]\ncmd = [\"sleep\", \"20\"]\nallow_root = true\n",
    )
    .await;
    d.create_users(&["alice"], false).await;
    let (a, b, c) = tokio::join!(
        d.api("POST", "/users/alice/server", Some(ADMIN), None),
        d.api("POST", "/users/alice/server", Some(ADMIN), None),
        d.api("POST", "/users/alice/server", Some(ADMIN), None),
    );
    let mut codes = vec![a.0, b.0, c.0];
    codes.sort();
    assert_eq!(codes, vec![202, 400, 400], "exactly one start wins");
}

/// JupyterHub's OpenAPI spec (`../shared/reference/`, or `$ORRERY_JUPYTERHUB_SPEC`) as JSON,
/// read with PyYAML from the test venv.
fn jupyterhub_spec() -> Value {
    let path = std::env::var("ORRERY_JUPYTERHUB_SPEC").unwrap_or_else(|_| {
        crate::common::repo()
            .join("../shared/reference/jupyterhub-rest-api.yml")
            .display()
            .to_string()
    });
    assert!(
        std::path::Path::new(&path).exists(),
        "JupyterHub's OpenAPI spec is not at {path}: the checkout needs ../shared beside it, or set \
         ORRERY_JUPYTERHUB_SPEC to the file (jupyterhub/docs/source/_static/rest-api.yml)"
    );
    let out = std::process::Command::new(crate::common::python())
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout, default=str)",
            &path,
        ])
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the spec as JSON")
}

/// Follow a `$ref` to `#/components/…`.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => r
            .trim_start_matches("#/")
            .split('/')
            .fold(spec, |v, segment| &v[segment]),
        None => schema,
    }
}

/// For a field of `schema`, bodies that give it a value of the wrong type: the field itself,
/// a list's items, and an object's values (activity's `servers`). With the path of the
/// field, as the error message should name it.
fn wrong_bodies(field: &str, schema: &Value) -> Vec<(Value, String)> {
    let wrong = |s: &Value| -> Option<Value> {
        Some(match s["type"].as_str()? {
            "string" => json!(12345),
            "boolean" => json!("yes"),
            "number" | "integer" => json!("soon"),
            "array" => json!("x"),
            "object" => json!([1]),
            _ => return None,
        })
    };
    let mut out = Vec::new();
    if let Some(v) = wrong(schema) {
        out.push((json!({ field: v }), field.to_string()));
    }
    if let Some(v) = schema.get("items").and_then(wrong) {
        out.push((json!({ field: [v] }), field.to_string()));
    }
    if let Some(props) = schema["additionalProperties"]["properties"].as_object() {
        for (inner, s) in props {
            if let Some(v) = wrong(s) {
                out.push((json!({ field: { "": { inner: v } } }), inner.clone()));
            }
        }
    }
    out
}

/// Every request body of JupyterHub's API that Orrery implements, with a value of the wrong
/// type in each field in turn: always a 400 that names the field, never a 2xx or 5xx. The
/// endpoints Orrery does not implement are listed, so one that stops answering is noticed.
#[tokio::test]
async fn every_request_body_in_the_spec_refuses_wrong_types() {
    let spec = jupyterhub_spec();
    // A server that would start by mistake only sleeps, and goes with the daemon.
    let d = Daemon::start(
        "[spawner]\nbackend = \"local\"\nslow_spawn_timeout = \"1s\"\n\
         [spawner.local]\ncmd = [\"sleep\", \"30\"]\nallow_root = true\n",
    )
    .await;
    d.create_users(&["alice"], false).await;
    let (s, body, _) = d.api("POST", "/groups/class1", Some(ADMIN), None).await;
    assert_eq!(s, 201, "{body}");

    let mut walked = Vec::new();
    let mut not_implemented = Vec::new();
    let paths = spec["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            if schema.is_null() {
                continue;
            }
            let schema = resolve(&spec, schema);
            let url = path
                .replace(
                    "{name}",
                    if path.starts_with("/groups") {
                        "class1"
                    } else {
                        "alice"
                    },
                )
                .replace("{server_name}", "gpu")
                .replace("{owner}", "alice");
            let method = method.to_uppercase();
            // Each field with a wrong value; a body with no fields is sent a list instead.
            let mut cases: Vec<(Value, String)> = Vec::new();
            match schema["properties"].as_object() {
                Some(props) => {
                    for (field, prop) in props {
                        cases.extend(wrong_bodies(field, resolve(&spec, prop)));
                    }
                }
                None => cases.push((json!([1]), "object".to_string())),
            }
            {
                for (body, named) in cases {
                    let (status, reply, _) =
                        d.api(&method, &url, Some(ADMIN), Some(body.clone())).await;
                    if status == 405 || reply["message"] == "no such API endpoint" {
                        not_implemented.push(format!("{method} {path}"));
                        break;
                    }
                    assert_eq!(status, 400, "{method} {url} {body}: {reply}");
                    let message = reply["message"].as_str().unwrap_or("");
                    assert!(
                        message.contains(named.as_str()),
                        "{method} {url} {body}: the message should name {named:?}: {message}"
                    );
                    walked.push(format!("{method} {path} {body}"));
                }
            }
        }
    }
    not_implemented.sort();
    not_implemented.dedup();
    assert_eq!(
        not_implemented,
        [
            "PATCH /proxy",
            "PATCH /users/{name}/servers/{server_name}",
            "POST /authorizations/token",
            "POST /shutdown",
            "PUT /groups/{name}/properties",
            "PUT /users/{name}/servers/{server_name}",
        ]
    );
    assert!(walked.len() >= 20, "too few bodies walked: {walked:#?}");
    // Nothing was started or created by a body that should have been refused.
    let (_, alice, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    assert!(
        alice["servers"].as_object().is_none_or(|s| s.is_empty()),
        "{alice}"
    );

    // `GET /info` fills every field the spec types as a string.
    let (s, info, _) = d.api("GET", "/info", Some(ADMIN), None).await;
    assert_eq!(s, 200, "{info}");
    let schema =
        &spec["paths"]["/info"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    let mut strings = 0;
    for (field, prop) in schema["properties"].as_object().expect("info properties") {
        let nested = prop["properties"].as_object();
        let fields: Vec<(String, &Value, &Value)> = match nested {
            Some(n) => n
                .iter()
                .map(|(k, p)| (format!("{field}.{k}"), p, &info[field][k]))
                .collect(),
            None => vec![(field.clone(), prop, &info[field])],
        };
        for (name, p, value) in fields {
            if p["type"] == "string" {
                strings += 1;
                assert!(
                    value.as_str().is_some_and(|v| !v.is_empty()),
                    "/info {name}: {info}"
                );
            }
        }
    }
    assert!(strings >= 7, "{strings} string fields in /info's spec");
}

/// `POST …/server` takes JupyterHub 6's `{"user_options": {...}, "display_name": ...}` and the
/// older form where the whole body is the options; wrong types are 400s naming the field.
#[tokio::test]
async fn spawn_bodies_in_both_forms_and_wrong_types_refused() {
    let d = Daemon::start(
        "[spawner]\nbackend = \"local\"\nslow_spawn_timeout = \"1s\"\nstart_timeout = \"30s\"\n\
         [spawner.local]\ncmd = [\"sleep\", \"30\"]\nallow_root = true\n",
    )
    .await;
    d.create_users(&["alice", "bob"], false).await;
    for bad in [
        json!({"user_options": [1]}),
        json!({"user_options": "x"}),
        json!({"display_name": 7}),
    ] {
        let (s, body, _) = d
            .api(
                "POST",
                "/users/alice/server",
                Some(ADMIN),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(s, 400, "{bad}: {body}");
    }
    let (s, body, _) = d
        .api(
            "POST",
            "/users/alice/tokens",
            Some(ADMIN),
            Some(json!({"scopes": "x"})),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("scopes"),
        "{body}"
    );

    // JupyterHub 6's form: the options and a display name.
    let (s, body, _) = d
        .api(
            "POST",
            "/users/alice/server",
            Some(ADMIN),
            Some(json!({"user_options": {"profile": "gpu"}, "display_name": "Alice's box"})),
        )
        .await;
    assert_eq!(s, 202, "a sleeping server stays pending: {body}");
    // The older form: the whole body is the options.
    let (s, body, _) = d
        .api(
            "POST",
            "/users/bob/server",
            Some(ADMIN),
            Some(json!({"profile": "cpu"})),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    let (_, alice, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    let server = &alice["servers"][""];
    assert_eq!(server["user_options"], json!({"profile": "gpu"}), "{alice}");
    assert_eq!(server["display_name"], "Alice's box", "{alice}");
    let (_, bob, _) = d.api("GET", "/users/bob", Some(ADMIN), None).await;
    assert_eq!(
        bob["servers"][""]["user_options"],
        json!({"profile": "cpu"}),
        "{bob}"
    );
}

/// The README states the JupyterHub version the API reports.
#[tokio::test]
async fn readme_and_api_agree_on_the_jupyterhub_version() {
    let d = Daemon::start("").await;
    let (_, body, headers) = d.api("GET", "/", None, None).await;
    let version = body["version"].as_str().expect("version").to_string();
    assert_eq!(headers["x-jupyterhub-version"], version.as_str());
    let readme = std::fs::read_to_string(crate::common::repo().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("it reports API version `{version}`")),
        "README.md must say the API reports {version}"
    );
}

/// Reconcile passes during a spawn never touch it: the pending server is left to its spawn
/// task, however many passes run (here every second).
#[tokio::test]
async fn reconcile_leaves_a_spawn_in_flight_alone() {
    let d = Daemon::start(&crate::common::sleeping_spawner(
        "reconcile_interval = \"1s\"",
    ))
    .await;
    d.create_users(&["alice"], false).await;
    let (s, body, _) = d
        .api("POST", "/users/alice/server", Some(ADMIN), None)
        .await;
    assert_eq!(s, 202, "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let (_, alice, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    let server = &alice["servers"][""];
    assert_eq!(
        server["pending"],
        "spawn",
        "still its spawn's: {alice}\n{}",
        d.log()
    );
    let pid = server["state"]["pid"]
        .as_i64()
        .expect("the spawn's process");
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the spawn's process runs"
    );
    assert!(!d.log().contains("forgetting server"), "{}", d.log());
}
