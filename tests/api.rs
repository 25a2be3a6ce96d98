//! The REST API against a real `orrery serve`: versions and headers, users and isolation,
//! tokens and scopes, groups, activity, pagination, metrics.

mod common;

use common::{Daemon, ADMIN_SERVICE_TOKEN as ADMIN};
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
    let m = d
        .http
        .get(format!("{}/hub/metrics", d.url))
        .header("Authorization", format!("token {ADMIN}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("orrery_total_users 1"), "{m}");
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
