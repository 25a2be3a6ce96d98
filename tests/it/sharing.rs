//! Sharing (JupyterHub 5's API): a user shares a server with a user or a group, a guest's
//! scopes follow the shares as they are now, share codes are redeemed on the accept page and
//! expire, sharing is refused on a single origin unless allowed, and the proxy refuses a guest
//! whose share was revoked at once. (The real single-user server, a kernel socket closed by a
//! revocation: `sharing_e2e` in this file, with Docker.)

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{form_xsrf, login_at, page_as, repo, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};

fn config(per_user_origins: bool) -> String {
    let http = if per_user_origins {
        "[http]\nsubdomain_host = \"http://hub.test:{PORT}\"\n\n"
    } else {
        ""
    };
    format!(
        "{http}[spawner]\nbackend = \"local\"\n[spawner.local]\ncmd = [\"python3\", \"{}\"]\nallow_root = true\n",
        repo().join("tests/python/origin_server.py").display()
    )
}

async fn as_user(
    d: &Daemon,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (s, b, _) = d.api(method, path, Some(token), body).await;
    (s, b)
}

/// The scopes `GET /hub/api/user` reports for a token.
async fn scopes_of(d: &Daemon, token: &str) -> Vec<String> {
    let (s, me) = as_user(d, token, "GET", "/user", None).await;
    assert_eq!(s, 200, "{me}");
    me["scopes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn on_a_single_origin_sharing_is_refused_unless_allowed() {
    let d = Daemon::start(&config(false)).await;
    d.create_users(&["alice", "bob"], false).await;
    let alice = d.token_for("alice").await;
    let (s, b) = as_user(
        &d,
        &alice,
        "POST",
        "/shares/alice/",
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    let msg = b["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("http.subdomain_host") && msg.contains("sharing.allow_single_origin"),
        "{msg}"
    );
    let (s, _) = as_user(&d, &alice, "POST", "/share-codes/alice/", None).await;
    assert_eq!(s, 403);

    let d = Daemon::start(&format!(
        "{}\n[sharing]\nallow_single_origin = true\n",
        config(false)
    ))
    .await;
    d.create_users(&["alice", "bob"], false).await;
    let alice = d.token_for("alice").await;
    let (s, b) = as_user(
        &d,
        &alice,
        "POST",
        "/shares/alice/",
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!(s, 200, "the operator accepted the risk: {b}");
}

#[tokio::test]
async fn shares_grant_access_to_one_server_and_revocation_takes_it_back() {
    let d = Daemon::start(&config(true)).await;
    d.create_users(&["alice", "bob", "carol"], false).await;
    let alice = d.token_for("alice").await;
    let bob = d.token_for("bob").await;
    let carol = d.token_for("carol").await;
    let access = "access:servers!server=alice/".to_string();
    assert!(!scopes_of(&d, &bob).await.contains(&access));

    // Bad requests say what is wrong.
    for (body, want) in [
        (json!({"user": "bob", "group": "x"}), "exactly one"),
        (json!({}), "exactly one"),
        (json!({"user": "alice"}), "owner"),
        (json!({"user": "nobody"}), "No such user"),
        (
            json!({"user": "bob", "scopes": ["admin:users"]}),
            "cannot be shared",
        ),
    ] {
        let (s, b) = as_user(&d, &alice, "POST", "/shares/alice/", Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {b}");
        assert!(
            b["message"].as_str().unwrap_or("").contains(want),
            "{body}: {b}"
        );
    }
    // Only the owner (or someone holding `shares` on it) shares a server.
    let (s, _) = as_user(
        &d,
        &bob,
        "POST",
        "/shares/alice/",
        Some(json!({"user": "bob"})),
    )
    .await;
    assert!(s == 403 || s == 404, "{s}");

    let (s, share) = as_user(
        &d,
        &alice,
        "POST",
        "/shares/alice/",
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!(s, 200, "{share}");
    assert_eq!(share["scopes"], json!([access]));
    assert_eq!(share["user"]["name"], "bob");
    assert_eq!(share["group"], Value::Null);
    assert_eq!(share["server"]["user"]["name"], "alice");
    assert_eq!(share["server"]["name"], "");
    assert_eq!(
        share["server"]["url"],
        format!("http://alice.hub.test:{}/user/alice/", d.port)
    );
    assert!(
        scopes_of(&d, &bob).await.contains(&access),
        "bob's scopes follow the share"
    );
    assert!(!scopes_of(&d, &carol).await.contains(&access));

    // Lists, paginated as JupyterHub's: by owner, by server, and what bob was given.
    let (s, list) = as_user(&d, &alice, "GET", "/shares/alice", None).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["_pagination"]["total"], 1);
    let (_, list) = as_user(&d, &alice, "GET", "/shares/alice/", None).await;
    assert_eq!(list["items"][0]["user"]["name"], "bob");
    let (s, mine) = as_user(&d, &bob, "GET", "/users/bob/shared", None).await;
    assert_eq!(s, 200, "{mine}");
    assert_eq!(mine["items"][0]["server"]["user"]["name"], "alice");
    let (s, one) = as_user(&d, &bob, "GET", "/users/bob/shared/alice/", None).await;
    assert_eq!((s, &one["user"]["name"]), (200, &json!("bob")));
    let (s, _) = as_user(&d, &carol, "GET", "/users/bob/shared", None).await;
    assert_eq!(s, 404, "carol cannot see what bob was given");
    let (s, _) = as_user(&d, &carol, "GET", "/shares/alice", None).await;
    assert_eq!(s, 404, "nor what alice shared");

    // Revoking: PATCH with the user (all scopes) answers {} and bob loses access at once.
    let (s, b) = as_user(
        &d,
        &alice,
        "PATCH",
        "/shares/alice/",
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!((s, b), (200, json!({})));
    assert!(!scopes_of(&d, &bob).await.contains(&access));
    // Revoking what is not held is not an error.
    let (s, _) = as_user(
        &d,
        &alice,
        "PATCH",
        "/shares/alice/",
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!(s, 200);

    // A group share reaches its members; bob leaving his own share does not end the group's.
    let (s, _, _) = d
        .api(
            "POST",
            "/groups/pair",
            Some(ADMIN),
            Some(json!({"users": ["bob", "carol"]})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, b) = as_user(
        &d,
        &alice,
        "POST",
        "/shares/alice/",
        Some(json!({"group": "pair"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["group"]["name"], "pair");
    assert!(scopes_of(&d, &carol).await.contains(&access));
    let (s, g) = d
        .api("GET", "/groups/pair/shared", Some(ADMIN), None)
        .await
        .into_parts();
    assert_eq!(s, 200, "{g}");
    assert_eq!(g["items"][0]["server"]["user"]["name"], "alice");
    let (s, _) = as_user(&d, &alice, "DELETE", "/shares/alice/", None).await;
    assert_eq!(s, 204);
    assert!(!scopes_of(&d, &carol).await.contains(&access));
    assert_eq!(
        as_user(&d, &alice, "GET", "/shares/alice", None).await.1["items"],
        json!([])
    );

    // Leaving a share: the guest deletes it.
    as_user(
        &d,
        &alice,
        "POST",
        "/shares/alice/",
        Some(json!({"user": "bob"})),
    )
    .await;
    let (s, _) = as_user(&d, &bob, "DELETE", "/users/bob/shared/alice/", None).await;
    assert_eq!(s, 204);
    assert!(!scopes_of(&d, &bob).await.contains(&access));

    // Deleting a grantee (user or group) deletes their shares.
    as_user(
        &d,
        &alice,
        "POST",
        "/shares/alice/",
        Some(json!({"user": "bob"})),
    )
    .await;
    as_user(
        &d,
        &alice,
        "POST",
        "/shares/alice/",
        Some(json!({"group": "pair"})),
    )
    .await;
    let (s, _, _) = d.api("DELETE", "/users/bob", Some(ADMIN), None).await;
    assert_eq!(s, 204);
    let (s, _, _) = d.api("DELETE", "/groups/pair", Some(ADMIN), None).await;
    assert_eq!(s, 204);
    let (_, left) = as_user(&d, &alice, "GET", "/shares/alice", None).await;
    assert_eq!(left["items"], json!([]), "{left}");
}

/// The `(status, body)` of [`Daemon::api`] without its headers.
trait Parts {
    fn into_parts(self) -> (u16, Value);
}
impl Parts for (u16, Value, reqwest::header::HeaderMap) {
    fn into_parts(self) -> (u16, Value) {
        (self.0, self.1)
    }
}

#[tokio::test]
async fn a_share_code_is_redeemed_on_the_accept_page_and_expires() {
    let d = Daemon::start(&config(true)).await;
    d.create_users(&["alice", "bob", "carol"], false).await;
    let alice = d.token_for("alice").await;
    let (s, code) = as_user(
        &d,
        &alice,
        "POST",
        "/share-codes/alice/",
        Some(json!({"expires_in": 3})),
    )
    .await;
    assert_eq!(s, 200, "{code}");
    let accept_url = code["accept_url"].as_str().expect("accept_url").to_string();
    assert!(
        accept_url.starts_with("/hub/accept-share?code="),
        "{accept_url}"
    );
    assert_eq!(
        code["full_accept_url"],
        format!("http://hub.test:{}{accept_url}", d.port)
    );
    let id = code["id"].as_str().expect("id").to_string();
    assert!(code["expires_at"].is_string());
    // The code is shown once; the list has its id only.
    let (_, codes) = as_user(&d, &alice, "GET", "/share-codes/alice", None).await;
    assert_eq!(codes["items"][0]["id"], id);
    assert!(codes["items"][0].get("code").is_none());

    // Bob accepts it through the page (GET shows whose server, POST with the form's token).
    let bob_cookie = login_at(&d.url, "bob", "bob-password-1")
        .await
        .expect("bob logs in");
    let (s, page) = page_as(&d.url, &bob_cookie, &accept_url).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("alice's server"), "{page}");
    let the_code = accept_url.trim_start_matches("/hub/accept-share?code=");
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{}/hub/accept-share", d.url))
        .header("Cookie", &bob_cookie)
        .form(&[("_xsrf", form_xsrf(&page).as_str()), ("code", the_code)])
        .send()
        .await
        .expect("accept");
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(format!("http://alice.hub.test:{}/user/alice/", d.port).as_str())
    );
    let (_, shares) = as_user(&d, &alice, "GET", "/shares/alice/", None).await;
    assert_eq!(shares["items"][0]["user"]["name"], "bob");
    let (_, codes) = as_user(&d, &alice, "GET", "/share-codes/alice/", None).await;
    assert_eq!(codes["items"][0]["exchange_count"], 1);

    // Once expired, nobody can redeem it.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let carol_cookie = login_at(&d.url, "carol", "carol-password-1")
        .await
        .expect("carol");
    let (s, page) = page_as(&d.url, &carol_cookie, &accept_url).await;
    assert_eq!(s, 404, "{page}");
    assert!(page.contains("expired or was revoked"), "{page}");
    let (_, codes) = as_user(&d, &alice, "GET", "/share-codes/alice", None).await;
    assert_eq!(codes["items"], json!([]));

    // A revoked code is refused too.
    let (_, code) = as_user(&d, &alice, "POST", "/share-codes/alice/", None).await;
    let id = code["id"].as_str().expect("id");
    let (s, _) = as_user(
        &d,
        &alice,
        "DELETE",
        &format!("/share-codes/alice/?id={id}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = page_as(
        &d.url,
        &carol_cookie,
        code["accept_url"].as_str().unwrap_or(""),
    )
    .await;
    assert_eq!(s, 404);
}

/// The proxy refuses a revoked guest at once, whatever the server's own cache says: the
/// stand-in server accepts any visitor its fake cookie names, as a caching server would.
#[tokio::test]
async fn the_proxy_refuses_a_revoked_guest_at_once() {
    let d = Daemon::start(&config(true)).await;
    d.create_users(&["alice", "bob"], false).await;
    let (s, b, _) = d
        .api("POST", "/users/alice/server", Some(ADMIN), None)
        .await;
    assert!(s == 201 || s == 202, "{b}");
    for _ in 0..200 {
        let (_, u, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
        if u["servers"][""]["ready"] == json!(true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alice = d.token_for("alice").await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", d.port).parse().expect("addr");
    let c = reqwest::Client::builder()
        .resolve("alice.hub.test", addr)
        .build()
        .expect("client");
    let url = format!("http://alice.hub.test:{}/user/alice/echo", d.port);
    let visit = |who: &'static str| {
        c.get(&url)
            .header("Cookie", format!("jupyterhub-user-alice={who}"))
            .send()
    };
    // Not shared: the proxy does not look (the server decides).
    assert_eq!(visit("bob").await.expect("get").status(), 200);
    as_user(
        &d,
        &alice,
        "POST",
        "/shares/alice/",
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!(
        visit("bob").await.expect("get").status(),
        200,
        "{}",
        d.log()
    );
    assert_eq!(
        visit("alice").await.expect("get").status(),
        200,
        "the owner"
    );
    as_user(
        &d,
        &alice,
        "PATCH",
        "/shares/alice/",
        Some(json!({"user": "bob"})),
    )
    .await;
    // The last share is gone, and bob is still refused (his server-side session may live on).
    let r = visit("bob").await.expect("get");
    assert_eq!(r.status(), 403, "revoked at once");
    assert!(r
        .text()
        .await
        .unwrap_or_default()
        .contains("may not open alice's server"));
    assert_eq!(visit("alice").await.expect("get").status(), 200);
    // A new guest is let in while shared.
    d.create_users(&["carol"], false).await;
    as_user(
        &d,
        &alice,
        "POST",
        "/shares/alice/",
        Some(json!({"user": "carol"})),
    )
    .await;
    assert_eq!(visit("carol").await.expect("get").status(), 200);
    assert_eq!(visit("bob").await.expect("get").status(), 403);
}

/// Sends `1+1` on `ws` and waits for its `execute_result`: its text/plain.
async fn one_plus_one<S>(ws: &mut S) -> String
where
    S: futures::Sink<tokio_tungstenite::tungstenite::Message>
        + futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
    <S as futures::Sink<tokio_tungstenite::tungstenite::Message>>::Error: std::fmt::Debug,
{
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let msg_id = format!("exec-{}", uuid::Uuid::new_v4());
    let request = json!({
        "header": {
            "msg_id": msg_id, "username": "", "session": uuid::Uuid::new_v4().to_string(),
            "msg_type": "execute_request", "version": "5.3",
            "date": chrono::Utc::now().to_rfc3339(),
        },
        "parent_header": {}, "metadata": {},
        "content": {
            "code": "1+1", "silent": false, "store_history": true, "user_expressions": {},
            "allow_stdin": false, "stop_on_error": true,
        },
        "channel": "shell", "buffers": [],
    });
    ws.send(Message::Text(request.to_string().into()))
        .await
        .expect("send execute_request");
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(m) = ws.next().await {
            let Ok(Message::Text(text)) = m else { continue };
            let v: Value = serde_json::from_str(text.as_str()).expect("JSON message");
            let kind = v["msg_type"]
                .as_str()
                .or(v["header"]["msg_type"].as_str())
                .unwrap_or("");
            if kind == "execute_result" && v["parent_header"]["msg_id"] == msg_id.as_str() {
                return v["content"]["data"]["text/plain"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
            }
        }
        String::new()
    })
    .await
    .expect("an execute_result within 60 s")
}

/// With the real `jupyterhub-singleuser` in Docker: alice shares her server with bob, bob
/// (with his own token) creates a kernel in it and runs a cell over its WebSocket; alice
/// revokes the share; bob's open socket is closed at once and his next request is refused by
/// the proxy, although the server's own cache of the hub's answer would still let him in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_runs_a_cell_in_a_shared_server_and_revocation_closes_their_socket() {
    guest_socket_closed_on_revocation("").await;
}

/// The same with remote kernels: the socket is the gateway's own (`gateway/direct.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_remote_kernels_revocation_closes_the_guests_gateway_socket() {
    guest_socket_closed_on_revocation("[kernels]\nremote = true\n").await;
}

async fn guest_socket_closed_on_revocation(extra: &str) {
    use crate::common::docker::{channels_request, proxied, start_server, Env};
    use futures::StreamExt;
    let mut env = Env::new("s").await;
    let owner = env.user("a");
    let guest = env.user("b");
    let d = Daemon::start(&env.config(
        "",
        &format!("[sharing]\nallow_single_origin = true\n{extra}"),
    ))
    .await;
    d.create_users(&[&owner, &guest], false).await;
    start_server(&d, &owner).await;
    let owner_token = d.token_for(&owner).await;
    let guest_token = d.token_for(&guest).await;

    // (Another token of bob's: the server caches the hub's answer for a token it has seen, so
    // a share reaches a token already refused only when that cache expires.)
    let early = d.token_for(&guest).await;
    let r = proxied(&d, "GET", &owner, "api/status", &early, None).await;
    assert_eq!(r.status(), 403, "not shared yet: the server refuses bob");
    let (s, b) = as_user(
        &d,
        &owner_token,
        "POST",
        &format!("/shares/{owner}/"),
        Some(json!({"user": guest})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let r = proxied(&d, "GET", &owner, "api/status", &guest_token, None).await;
    assert_eq!(r.status(), 200, "shared: the server lets bob in");
    let r = proxied(
        &d,
        "POST",
        &owner,
        "api/kernels",
        &guest_token,
        Some(json!({"name": "python3"})),
    )
    .await;
    assert_eq!(r.status(), 201);
    let kid = r.json::<Value>().await.expect("kernel")["id"]
        .as_str()
        .expect("id")
        .to_string();

    let req = channels_request(&d, &owner, &guest_token, &kid, "", &d.url);
    let (mut ws, resp) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("handshake within 30 s")
    .unwrap_or_else(|e| panic!("bob's WebSocket to alice's kernel: {e}\n{}", d.log()));
    assert_eq!(resp.status(), 101);
    assert_eq!(
        one_plus_one(&mut ws).await,
        "2",
        "bob ran a cell in alice's server"
    );

    let (s, _) = as_user(
        &d,
        &owner_token,
        "PATCH",
        &format!("/shares/{owner}/"),
        Some(json!({"user": guest})),
    )
    .await;
    assert_eq!(s, 200);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return true,
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(
        closed,
        Ok(true),
        "bob's socket closed within 5 s of the revocation"
    );
    let closed_by = if extra.is_empty() {
        "a revoked visitor's WebSocket was closed"
    } else {
        "a revoked visitor's kernel WebSocket was closed"
    };
    // The bridge logs the close as it ends, which may be just after the client saw it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !d.log().contains(closed_by) {
        assert!(
            std::time::Instant::now() < deadline,
            "closed by the revocation, not by chance:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = proxied(&d, "GET", &owner, "api/status", &guest_token, None).await;
    assert_eq!(r.status(), 403, "bob's next request is refused at once");
    let r = proxied(&d, "GET", &owner, "api/status", &owner_token, None).await;
    assert_eq!(r.status(), 200, "alice keeps her server");
}

/// Sharing from the home page, without JavaScript: share with a user, the guest's "Shared with
/// me" list, revoke, and a share link shown once. On one origin the section is not offered.
#[tokio::test]
async fn the_home_page_shares_revokes_and_makes_share_links() {
    let d = Daemon::start(&config(true)).await;
    d.create_users(&["alice", "bob"], false).await;
    let alice = login_at(&d.url, "alice", "alice-password-1")
        .await
        .expect("alice");
    let bob = login_at(&d.url, "bob", "bob-password-1")
        .await
        .expect("bob");
    let post = |cookie: String, path: &'static str, fields: Vec<(&'static str, String)>| {
        let url = d.url.clone();
        async move {
            let (_, home) = page_as(&url, &cookie, "/hub/home").await;
            let mut form = vec![("_xsrf", form_xsrf(&home))];
            form.extend(fields);
            let r = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client")
                .post(format!("{url}{path}"))
                .header("Cookie", &cookie)
                .form(&form)
                .send()
                .await
                .expect("post");
            let loc = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (r.status().as_u16(), loc, r.text().await.unwrap_or_default())
        }
    };
    let (_, home) = page_as(&d.url, &alice, "/hub/home").await;
    assert!(home.contains("Share my server"), "{home}");
    let (s, to, _) = post(
        alice.clone(),
        "/hub/home/shares",
        vec![("kind", "user".into()), ("name", "bob".into())],
    )
    .await;
    assert_eq!((s, to.as_str()), (302, "/hub/home?msg=shared"));
    let (s, _, body) = post(
        alice.clone(),
        "/hub/home/shares",
        vec![("kind", "user".into()), ("name", "nobody".into())],
    )
    .await;
    assert_eq!(s, 400);
    assert!(body.contains("No such user: nobody"), "{body}");
    let (_, home) = page_as(&d.url, &bob, "/hub/home").await;
    assert!(
        home.contains("Shared with me") && home.contains("alice's server"),
        "{home}"
    );
    assert!(
        home.contains(&format!(
            "href=\"http://alice.hub.test:{}/user/alice/\"",
            d.port
        )),
        "an Open link on alice's host: {home}"
    );
    let (_, home) = page_as(&d.url, &alice, "/hub/home").await;
    assert!(home.contains("user bob"), "alice sees her share: {home}");
    let (s, to, _) = post(
        alice.clone(),
        "/hub/home/shares/revoke",
        vec![("grantee", "user:bob".into())],
    )
    .await;
    assert_eq!((s, to.as_str()), (302, "/hub/home?msg=revoked"));
    let (_, home) = page_as(&d.url, &bob, "/hub/home").await;
    assert!(!home.contains("Shared with me"), "{home}");
    let (s, _, page) = post(alice.clone(), "/hub/home/share-codes", vec![]).await;
    assert_eq!(s, 200);
    let prefix = format!("http://hub.test:{}/hub/accept-share?code=", d.port);
    assert!(page.contains(&prefix), "{page}");

    // One origin: no sharing section, and the forms refuse.
    let d1 = Daemon::start(&config(false)).await;
    d1.create_users(&["alice", "bob"], false).await;
    let alice1 = login_at(&d1.url, "alice", "alice-password-1")
        .await
        .expect("alice");
    let (_, home) = page_as(&d1.url, &alice1, "/hub/home").await;
    assert!(!home.contains("Share my server"), "{home}");
}
