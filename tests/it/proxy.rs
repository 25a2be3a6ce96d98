//! The proxy as a user's server sees it: responses pass with their headers as the server sent
//! them (only hop-by-hop headers, and those named by `Connection`, are dropped), the hub's own
//! pages keep the hub's headers, and proxied traffic never counts as hub API traffic.

use crate::common::{repo, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};

/// Headers as (lowercase name, value bytes), in the order they came.
fn header_list(h: &reqwest::header::HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// The sum of the hub's API request counts in `/hub/metrics`.
async fn api_requests_counted(d: &Daemon) -> u64 {
    let text = d.metrics().await;
    text.lines()
        .filter(|l| l.starts_with("orrery_api_request_duration_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn proxied_headers_arrive_as_the_server_sent_them() {
    let script = repo().join("tests/python/header_server.py");
    let d = Daemon::start(&format!(
        "[spawner]\nbackend = \"local\"\n[spawner.local]\ncmd = [\"python3\", \"{}\"]\nallow_root = true\n",
        script.display()
    ))
    .await;
    d.create_users(&["alice"], false).await;
    let (s, body, _) = d
        .api("POST", "/users/alice/server", Some(ADMIN), None)
        .await;
    assert_eq!(s, 201, "{body}\n{}", d.log());
    let (_, alice, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    let port = alice["servers"][""]["state"]["port"]
        .as_u64()
        .expect("port");

    let path = "/user/alice/hub/api/files?x=1";
    let direct = d
        .http
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap();
    let sent = header_list(direct.headers());
    let before = api_requests_counted(&d).await;
    let mut proxied = Vec::new();
    for _ in 0..3 {
        let r = d.http.get(format!("{}{path}", d.url)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        proxied = header_list(r.headers());
    }
    assert_eq!(
        api_requests_counted(&d).await,
        before,
        "proxied paths with /hub/api in them are not hub API requests"
    );

    // What the server sent, less what describes only its hop.
    let hop = [
        "connection",
        "keep-alive",
        "x-hop",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
    ];
    let expected: Vec<(String, Vec<u8>)> = sent
        .iter()
        .filter(|(k, _)| !hop.contains(&k.as_str()))
        .cloned()
        .collect();
    assert!(
        sent.iter().any(|(k, _)| k == "x-hop"),
        "the server sent X-Hop: {sent:?}"
    );
    // A recipient that forwards a response without Date adds one (RFC 9110 §6.6.1): the
    // only header the proxied response may have that the server did not send.
    let got: Vec<(String, Vec<u8>)> = proxied.into_iter().filter(|(k, _)| k != "date").collect();
    assert_eq!(got, expected, "byte-identical but for hop-by-hop headers");
    for hub_header in [
        "x-jupyterhub-version",
        "x-content-type-options",
        "x-frame-options",
    ] {
        assert!(
            !got.iter().any(|(k, _)| k == hub_header),
            "{hub_header} added"
        );
    }

    // The hub's own pages and API still carry its headers.
    let login = d
        .http
        .get(format!("{}/hub/login", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(login.headers()["x-content-type-options"], "nosniff");
    assert_eq!(login.headers()["cache-control"], "no-store");
    let (_, _, h) = d.api("GET", "/", None, None).await;
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h.contains_key("x-jupyterhub-version"));
}

/// The proxy's route table (`GET /hub/api/orrery/routes`) against the servers the API lists:
/// one entry per server, with a target exactly when the server is ready; and the proxy
/// answering accordingly (the server's own answer, or the hub's page for it).
async fn assert_routes_match(d: &Daemon, users: &[&str], step: &str) {
    let (s, routes, _) = d.api("GET", "/orrery/routes", Some(ADMIN), None).await;
    assert_eq!(s, 200, "{routes}");
    let mut got: Vec<(String, String, bool)> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap().to_string(),
                r["server"].as_str().unwrap().to_string(),
                !r["target"].is_null(),
            )
        })
        .filter(|(u, _, _)| users.contains(&u.as_str()))
        .collect();
    got.sort();
    let mut want = Vec::new();
    for user in users {
        let (_, u, _) = d
            .api("GET", &format!("/users/{user}"), Some(ADMIN), None)
            .await;
        for (name, model) in u["servers"].as_object().into_iter().flatten() {
            let ready = model["ready"] == true && model["pending"].is_null();
            want.push((user.to_string(), name.clone(), ready));
        }
    }
    want.sort();
    assert_eq!(
        got, want,
        "after {step}: route table vs the servers the API lists"
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (user, name, ready) in &want {
        let path = if name.is_empty() {
            format!("/user/{user}/x")
        } else {
            format!("/user/{user}/{name}/x")
        };
        let r = client.get(format!("{}{path}", d.url)).send().await.unwrap();
        let status = r.status().as_u16();
        if *ready {
            assert_eq!(status, 200, "after {step}: {path} reaches the server");
        } else {
            assert_eq!(status, 307, "after {step}: {path} goes to the hub's page");
        }
    }
}

async fn wait_ready(d: &Daemon, user: &str, name: &str) {
    for _ in 0..400 {
        let (_, u, _) = d
            .api("GET", &format!("/users/{user}"), Some(ADMIN), None)
            .await;
        if u["servers"][name]["ready"] == true {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{user}/{name} never became ready:\n{}", d.log());
}

/// The route table the proxy reads (in memory, no store read per request) stays what the
/// server records say through starts, stops, deletes, named servers, a user's deletion and a
/// `kill -9` with restart.
#[tokio::test]
async fn the_route_table_follows_the_servers_through_kill_9_and_restart() {
    let mut d = Daemon::start(&format!(
        "[spawner]\nbackend = \"local\"\n[spawner.named_servers]\nenabled = true\n\
         [spawner.local]\ncmd = [\"python3\", \"{}\"]\nallow_root = true\n",
        repo().join("tests/python/origin_server.py").display()
    ))
    .await;
    let users = ["rt-ann", "rt-bob"];
    d.create_users(&users, false).await;
    assert_routes_match(&d, &users, "nothing started").await;
    for (path, user, name) in [
        ("/users/rt-ann/server", "rt-ann", ""),
        ("/users/rt-ann/servers/lab", "rt-ann", "lab"),
        ("/users/rt-bob/server", "rt-bob", ""),
    ] {
        let (s, b, _) = d.api("POST", path, Some(ADMIN), None).await;
        assert!(s == 201 || s == 202, "{path}: {s} {b}");
        wait_ready(&d, user, name).await;
        assert_routes_match(&d, &users, path).await;
    }
    let (s, _, _) = d
        .api("DELETE", "/users/rt-ann/server", Some(ADMIN), None)
        .await;
    assert!(s == 202 || s == 204, "stop: {s}");
    for _ in 0..200 {
        let (_, u, _) = d.api("GET", "/users/rt-ann", Some(ADMIN), None).await;
        if u["servers"][""].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_routes_match(&d, &users, "stopping ann's default server").await;

    // kill -9: the next start builds the table from the records.
    d.kill();
    d.spawn().await;
    assert_routes_match(&d, &users, "kill -9 and restart").await;

    let (s, _, _) = d
        .api(
            "DELETE",
            "/users/rt-ann/servers/lab",
            Some(ADMIN),
            Some(serde_json::json!({"remove": true})),
        )
        .await;
    assert!(s == 202 || s == 204, "delete lab: {s}");
    for _ in 0..200 {
        let (_, u, _) = d.api("GET", "/users/rt-ann", Some(ADMIN), None).await;
        if u["servers"]["lab"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_routes_match(&d, &users, "deleting the named server").await;
    let (s, _, _) = d.api("DELETE", "/users/rt-bob", Some(ADMIN), None).await;
    assert!(s == 204 || s == 202, "delete bob: {s}");
    assert_routes_match(&d, &["rt-ann"], "deleting bob").await;
    let (_, routes, _) = d.api("GET", "/orrery/routes", Some(ADMIN), None).await;
    assert!(
        !routes.to_string().contains("rt-bob"),
        "a deleted user's routes go: {routes}"
    );
}
