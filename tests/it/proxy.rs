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
