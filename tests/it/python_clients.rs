//! Real JupyterHub clients against `orrery serve`: `jupyterhub-idle-culler` and
//! `jupyterhub.services.auth.HubOAuth`, from PyPI in a venv `tests/python/venv.sh` makes.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{python, repo, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};
use serde_json::{json, Value};

/// A daemon whose local backend runs `singleuser_app.py` (HubOAuth) as each user's server,
/// reached through the hub's proxy at `/user/<name>/`.
async fn daemon_with_app(py: &str, extra: &str) -> Daemon {
    let app = repo().join("tests/python/singleuser_app.py");
    Daemon::start(&format!(
        "[spawner]\nbackend = \"local\"\nslow_spawn_timeout = \"30s\"\n[spawner.local]\ncmd = [\"{py}\", \"{}\"]\nallow_root = true\n\n{extra}",
        app.display()
    ))
    .await
}

async fn start_server(d: &Daemon, user: &str) -> String {
    let (s, b, _) = d
        .api("POST", &format!("/users/{user}/server"), Some(ADMIN), None)
        .await;
    assert_eq!(s, 201, "spawn {user}: {b}\n{}", d.log());
    let (_, u, _) = d
        .api("GET", &format!("/users/{user}"), Some(ADMIN), None)
        .await;
    assert_eq!(u["servers"][""]["ready"], true, "{u}");
    // The local backend's port, from the server state (admin:server_state).
    let port = u["servers"][""]["state"]["port"]
        .as_u64()
        .expect("port in state");
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn hub_oauth_resolves_the_right_user_with_access_scopes() {
    let py = python();
    let d = daemon_with_app(&py, "").await;
    // Added by an admin (sign-up is closed), alice and bob set these passwords at first login.
    d.create_users(&["alice", "bob"], false).await;
    let login = |u: &str, p: &str| {
        let u = u.to_string();
        let p = p.to_string();
        let url = d.url.clone();
        async move { reqwest_login(&url, &u, &p).await }
    };
    login("alice", "alice-password").await;
    login("bob", "bob-password").await;
    start_server(&d, "alice").await;

    let flow = repo().join("tests/python/oauth_flow.py");
    let run = |user: &str, pw: &str| {
        let out = Command::new(&py)
            .arg(&flow)
            .args([d.url.as_str(), user, pw, "alice"])
            .output()
            .expect("oauth_flow.py");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "oauth_flow.py failed:\n{stdout}\n{stderr}"
        );
        (
            serde_json::from_str::<Value>(stdout.trim()).unwrap_or(Value::Null),
            stderr,
        )
    };
    // Alice reaches her server: HubOAuth completed the code flow and resolved her.
    let (model, trace) = run("alice", "alice-password");
    assert_eq!(model["name"], "alice", "{model}\n{trace}\n{}", d.log());
    assert_eq!(model["kind"], "user");
    let scopes: Vec<&str> = model["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        scopes.contains(&"access:servers!server=alice/"),
        "{scopes:?}"
    );
    assert!(scopes.contains(&"access:servers!user=alice"), "{scopes:?}");
    assert!(
        trace.contains("/hub/api/oauth2/authorize") && trace.contains("oauth_callback"),
        "went through OAuth: {trace}"
    );
    // Bob logs in fine but gets no access to alice's server.
    let (model, trace) = run("bob", "bob-password");
    assert_eq!(model, json!({"status": 403}), "{trace}");
    // The code cannot be replayed and the token endpoint rejects wrong secrets.
    let r = d
        .http
        .post(format!("{}/hub/api/oauth2/token", d.url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "nope"),
            ("client_id", "jupyterhub-user-alice"),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Stopping the server revokes its OAuth client.
    let (s, _, _) = d
        .api("DELETE", "/users/alice/server", Some(ADMIN), None)
        .await;
    assert_eq!(s, 204);
    let r = d
        .http
        .get(format!(
            "{}/hub/api/oauth2/authorize?client_id=jupyterhub-user-alice&response_type=code",
            d.url
        ))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_redirection(),
        "anonymous authorize goes to login first"
    );
}

/// Log in through the hub's login form (first use creates the user).
async fn reqwest_login(hub: &str, user: &str, password: &str) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(format!("{hub}/hub/login")).send().await.unwrap();
    let xsrf = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.strip_prefix("_xsrf=")
                .map(|v| v.split(';').next().unwrap_or("").to_string())
        })
        .expect("_xsrf cookie");
    let r = http
        .post(format!("{hub}/hub/login"))
        .header("Cookie", format!("_xsrf={xsrf}"))
        .form(&[("username", user), ("password", password), ("_xsrf", &xsrf)])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "login {user}: {}", r.status());
}

#[tokio::test]
async fn idle_culler_completes_a_paginated_pass() {
    let py = python();
    let culler_token = "culler-service-token-0123456789abcdef";
    let d = daemon_with_app(
        &py,
        &format!(
            "[cull]\nenabled = false\n\n[[services]]\nname = \"idle-culler\"\napi_token = \"{culler_token}\"\n\
             scopes = [\"list:users\", \"read:users:activity\", \"read:servers\", \"delete:servers\", \"admin:users\"]\n"
        ),
    )
    .await;
    d.create_users(&["alice", "bob", "carol", "dave", "erin"], false)
        .await;
    d.create_users(&["root1"], true).await;
    start_server(&d, "alice").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let culler = PathBuf::from(&py).with_file_name("jupyterhub-idle-culler");
    let log_path = d.dir.path().join("culler.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(&culler)
        .args([
            &format!("--url={}/hub/api", d.url),
            "--timeout=1",
            "--cull-every=600",
            "--cull-users=true",
            "--cull-admin-users=false",
            "--api-page-size=2",
        ])
        .env("JUPYTERHUB_API_TOKEN", culler_token)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start jupyterhub-idle-culler");
    // One pass: every idle non-admin user and alice's idle server are culled.
    let deadline = Instant::now() + Duration::from_secs(60);
    let remaining = loop {
        let (_, users, _) = d.api("GET", "/users", Some(ADMIN), None).await;
        let names: Vec<String> = users
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|u| u["name"].as_str().map(str::to_string))
            .collect();
        if names == vec!["root1".to_string()] || Instant::now() > deadline {
            break names;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(
        remaining,
        vec!["root1".to_string()],
        "culler log:\n{log}\nhub log:\n{}",
        d.log()
    );
    assert!(log.contains("Culling server alice"), "{log}");
    assert!(
        log.contains("Fetching page 2"),
        "listed users through the paginated API: {log}"
    );
    assert!(
        !log.contains("Traceback") && !log.contains("[E "),
        "errors in the culler log:\n{log}"
    );
    assert!(d.log().contains("server stopped"), "{}", d.log());
}

#[tokio::test]
async fn builtin_culler_stops_idle_servers_but_keeps_users() {
    let py = python();
    let d = daemon_with_app(
        &py,
        "[cull]\nenabled = true\ntimeout = \"2s\"\nevery = \"1s\"\n",
    )
    .await;
    d.create_users(&["alice"], false).await;
    start_server(&d, "alice").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, u, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
        if u["server"].is_null() && u["servers"].as_object().is_some_and(|s| s.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle server was not culled: {u}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(d.log().contains("culling server"), "{}", d.log());
    let (s, _, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    assert_eq!(s, 200, "users are never culled unless cull.users is set");
}

/// `/hub/user-redirect/<path>` (course links): a logged-out visitor is sent to log in and back;
/// a logged-in one whose server is stopped has it started and lands on `/user/<me>/<path>` with
/// the query; a running server is gone to at once; `..` is refused. A server still starting
/// goes through the spawn-pending page, which then opens the link's path.
#[tokio::test]
async fn user_redirect_logs_in_starts_the_server_and_lands_on_the_path() {
    let py = python();
    let d = daemon_with_app(&py, "").await;
    d.create_users(&["alice"], false).await;
    let link =
        "/hub/user-redirect/git-pull?repo=https%3A%2F%2Fexample.org%2Fcourse&urlpath=tree%2Fcourse";
    let get = |cookie: Option<String>, path: &str| {
        let req = d.http.get(format!("{}{path}", d.url));
        let req = match cookie {
            Some(c) => req.header("Cookie", c),
            None => req,
        };
        async move { crate::common::answered(req.send().await.unwrap()).await }
    };
    let (s, to, _) = get(None, link).await;
    assert!((300..400).contains(&s), "{s}");
    assert!(
        to.starts_with("/hub/login?next=") && to.contains("user-redirect"),
        "{to}"
    );
    let cookie = crate::common::login_at(&d.url, "alice", "alice-password")
        .await
        .expect("alice logs in");
    let (s, to, body) = get(Some(cookie.clone()), link).await;
    assert!((300..400).contains(&s), "{s} {body}\n{}", d.log());
    assert_eq!(
        to,
        "/user/alice/git-pull?repo=https%3A%2F%2Fexample.org%2Fcourse&urlpath=tree%2Fcourse"
    );
    let (_, u, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    assert_eq!(u["servers"][""]["ready"], true, "started by the link: {u}");
    let (s, again, _) = get(Some(cookie.clone()), link).await;
    assert!((300..400).contains(&s), "{s}");
    assert_eq!(again, to, "running: straight there");
    // A way out of the user's server hidden in an encoded slash (clients fold plain and
    // encoded dot segments themselves): refused.
    let (s, to, _) = get(Some(cookie), "/hub/user-redirect/x%2F..%2F..%2Fhub%2Fadmin").await;
    assert_eq!(s, 404, "{to}");
}

/// While a server starts, `user-redirect` goes through the spawn-pending page, which opens the
/// link's path (not the default URL) once the server is ready.
#[tokio::test]
async fn user_redirect_waits_on_the_spawn_pending_page_for_a_slow_start() {
    let d = Daemon::start(&crate::common::sleeping_spawner("")).await;
    d.create_users(&["bob"], false).await;
    let cookie = crate::common::login_at(&d.url, "bob", "bob-password")
        .await
        .expect("bob logs in");
    let r = d
        .http
        .get(format!("{}/hub/user-redirect/lab/tree/week1.ipynb", d.url))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        to,
        "/hub/spawn-pending/bob?next=%2Fuser%2Fbob%2Flab%2Ftree%2Fweek1.ipynb"
    );
    let (s, page) = crate::common::page_as(&d.url, &cookie, &to).await;
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains("data-ready-url=\"/user/bob/lab/tree/week1.ipynb\""),
        "{page}"
    );
    // A `next` outside the user's server is not followed.
    let (_, page) = crate::common::page_as(
        &d.url,
        &cookie,
        "/hub/spawn-pending/bob?next=%2Fuser%2Falice%2Flab",
    )
    .await;
    assert!(!page.contains("data-ready-url=\"/user/alice"), "{page}");
}
