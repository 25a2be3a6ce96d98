//! Per-user origins (`http.subdomain_host`): each server on a host of its own, the hub on its
//! host only, and the hub's login cookie never sent to a server's host.
//!
//! The names `hub.test` and `*.hub.test` are resolved to 127.0.0.1 by the client itself
//! (reqwest's `resolve`, Chromium's `--host-resolver-rules`): no DNS is needed. The servers are
//! `tests/python/origin_server.py` through the local backend: they report the Host and Cookie
//! headers that reached them and the environment the hub gave them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::common::{form_xsrf, python, repo, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};

/// The hub's config: per-user origins on `hub.test` at the daemon's port, named servers on, and
/// servers that are `origin_server.py`.
fn config() -> String {
    format!(
        "[http]\nsubdomain_host = \"http://hub.test:{{PORT}}\"\n\n\
         [spawner]\nbackend = \"local\"\n[spawner.named_servers]\nenabled = true\n\
         [spawner.local]\ncmd = [\"python3\", \"{}\"]\nallow_root = true\n",
        repo().join("tests/python/origin_server.py").display()
    )
}

/// A client with a cookie jar (RFC 6265: host-only cookies stay on their host) that resolves
/// the hub's names to the daemon, redirects not followed.
fn browser_like(d: &Daemon, hosts: &[&str]) -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let addr: SocketAddr = format!("127.0.0.1:{}", d.port).parse().expect("addr");
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .resolve("hub.test", addr);
    for h in hosts {
        b = b.resolve(h, addr);
    }
    (b.build().expect("client"), jar)
}

async fn start_server(d: &Daemon, path: &str) {
    let (s, body, _) = d.api("POST", path, Some(ADMIN), None).await;
    assert!(
        s == 201 || s == 202,
        "start {path}: {s} {body}\n{}",
        d.log()
    );
    for _ in 0..200 {
        let (_, u, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
        let name = path.rsplit('/').next().unwrap_or("");
        let key = if path.ends_with("/server") { "" } else { name };
        if u["servers"][key]["ready"] == Value::Bool(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never became ready:\n{}", d.log());
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, String, String) {
    let r = c.get(url).send().await.expect("request");
    crate::common::answered(r).await
}

#[tokio::test]
async fn each_server_has_its_own_origin_and_the_hub_cookie_stays_on_the_hub() {
    let d = Daemon::start(&config()).await;
    let p = d.port;
    let hub = format!("http://hub.test:{p}");
    let alice = format!("http://alice.hub.test:{p}");
    d.create_users(&["alice", "bob"], false).await;
    start_server(&d, "/users/alice/server").await;
    start_server(&d, "/users/alice/servers/lab").await;
    let (c, _jar) = browser_like(
        &d,
        &["alice.hub.test", "bob.hub.test", "lab--alice.hub.test"],
    );

    // Bob logs in on the hub's host through the form (first use sets his password).
    let (s, _, page) = get(&c, &format!("{hub}/hub/login")).await;
    assert_eq!(s, 200);
    let r = c
        .post(format!("{hub}/hub/login"))
        .form(&[
            ("_xsrf", form_xsrf(&page).as_str()),
            ("username", "bob"),
            ("password", "bob-password-1"),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status().as_u16(), 302, "{}", d.log());
    let set_cookie: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let login_cookie = set_cookie
        .iter()
        .find(|c| c.starts_with("jupyterhub-hub-login="))
        .expect("a session cookie");
    assert!(
        !login_cookie.to_ascii_lowercase().contains("domain="),
        "the login cookie is host-only: {login_cookie}"
    );
    let (s, _, home) = get(&c, &format!("{hub}/hub/home")).await;
    assert_eq!(s, 200, "bob is logged in on the hub's host");
    assert!(home.contains("bob"));

    // Alice's server, on its own host, never receives the hub's cookies.
    let (s, _, echo) = get(&c, &format!("{alice}/user/alice/echo")).await;
    assert_eq!(s, 200, "{echo}");
    let echo: Value = serde_json::from_str(&echo).expect("echo JSON");
    assert_eq!(echo["host"], format!("alice.hub.test:{p}"));
    let cookies = echo["cookie"].as_str().unwrap_or("");
    assert!(
        !cookies.contains("jupyterhub-hub-login") && !cookies.contains("_xsrf"),
        "the hub's cookies reached alice's server: {cookies:?}"
    );
    // The environment of the cross-origin OAuth flow.
    let env = &echo["env"];
    assert_eq!(env["JUPYTERHUB_HOST"], hub);
    assert_eq!(
        env["JUPYTERHUB_OAUTH_CALLBACK_URL"],
        format!("{alice}/user/alice/oauth_callback")
    );
    assert_eq!(env["JUPYTERHUB_PUBLIC_URL"], format!("{alice}/user/alice/"));
    assert_eq!(env["JUPYTERHUB_SERVICE_PREFIX"], "/user/alice/");

    // Her named server has a host of its own too; the default server's host does not serve it.
    let lab = format!("http://lab--alice.hub.test:{p}");
    let (s, _, echo) = get(&c, &format!("{lab}/user/alice/lab/echo")).await;
    assert_eq!(s, 200, "{echo}");
    let echo: Value = serde_json::from_str(&echo).expect("echo JSON");
    assert_eq!(
        echo["env"]["JUPYTERHUB_OAUTH_CALLBACK_URL"],
        format!("{lab}/user/alice/lab/oauth_callback")
    );
    let (s, _, _) = get(&c, &format!("{alice}/user/alice/lab/echo")).await;
    assert_eq!(
        s, 404,
        "a named server is not served on the default server's host"
    );

    // From the hub's host (or an address) a server's path redirects to its origin; another
    // server's host does not serve it.
    let (s, to, _) = get(&c, &format!("{hub}/user/alice/echo?x=1")).await;
    assert_eq!(
        (s, to.as_str()),
        (307, format!("{alice}/user/alice/echo?x=1").as_str())
    );
    let (s, to, _) = get(&c, &format!("http://127.0.0.1:{p}/user/alice/echo")).await;
    assert_eq!(
        (s, to.as_str()),
        (307, format!("{alice}/user/alice/echo").as_str())
    );
    let (s, _, _) = get(&c, &format!("http://bob.hub.test:{p}/user/alice/echo")).await;
    assert_eq!(s, 404, "bob's host does not serve alice's server");

    // The hub is not on a server's host: no login form, no token page, no API there.
    for path in [
        "/hub/token",
        "/hub/login",
        "/hub/home",
        "/hub/api/",
        "/hub/api/user",
    ] {
        let (s, _, body) = get(&c, &format!("{alice}{path}")).await;
        assert_eq!(s, 404, "{path} on alice's host: {body}");
        assert!(
            body.contains(&format!("The hub is at {hub}/hub/")),
            "{body}"
        );
    }
    // A form posted from a server's origin is refused, whatever its cookies.
    let r = c
        .post(format!("{hub}/hub/login"))
        .header("Origin", alice.as_str())
        .form(&[("username", "bob"), ("password", "bob-password-1")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 403);

    // A login cookie planted next to the real one (a server's script can set cookies for the
    // parent domain) is not believed, and neither is the real one then.
    let real = login_cookie.split(';').next().unwrap_or("");
    for (cookies, want) in [
        (real.to_string(), true),
        (format!("jupyterhub-hub-login=planted; {real}"), false),
        (format!("{real}; jupyterhub-hub-login=planted"), false),
    ] {
        let r = c
            .get(format!("{hub}/hub/home"))
            .header("Cookie", cookies.as_str())
            .send()
            .await
            .expect("home");
        // Logged out: sent to the login page.
        assert_eq!(r.status().as_u16() == 200, want, "cookies {cookies}");
    }

    // The API gives absolute URLs on the servers' hosts.
    let (_, u, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    assert_eq!(u["server"], format!("{alice}/user/alice/"));
    assert_eq!(u["servers"][""]["url"], format!("{alice}/user/alice/"));
    assert_eq!(u["servers"][""]["full_url"], format!("{alice}/user/alice/"));
    assert_eq!(u["servers"]["lab"]["url"], format!("{lab}/user/alice/lab/"));
    assert_eq!(
        u["servers"][""]["full_progress_url"],
        format!("{hub}/hub/api/users/alice/server/progress")
    );

    // A stopped server's host sends the browser to the hub's page for it, on the hub's host.
    let (s, body, _) = d
        .api("DELETE", "/users/alice/server", Some(ADMIN), None)
        .await;
    assert!(s == 204 || s == 202, "{s} {body}");
    for _ in 0..100 {
        let (_, u, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
        if u["servers"].get("").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, to, _) = get(&c, &format!("{alice}/user/alice/tree")).await;
    assert_eq!(
        (s, to.as_str()),
        (307, format!("{hub}/hub/user/alice/tree").as_str())
    );
}

#[tokio::test]
async fn a_value_that_is_not_a_host_is_refused_naming_the_key() {
    let d = Daemon::start("").await;
    let (code, _, err) = d.cli(
        &[
            "config",
            "set",
            "http.subdomain_host",
            "hub.example.org/jupyter",
        ],
        None,
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("http.subdomain_host") && err.contains("has a path"),
        "{err}"
    );
}

/// Bob, logged in on the hub, opens a page alice's server serves: its script cannot read the
/// hub's token page or API with bob's credentials, and bob's hub cookie never reaches it.
#[tokio::test]
async fn in_a_browser_a_page_on_a_servers_origin_cannot_read_the_hub_as_its_visitor() {
    crate::browser::require_chromium();
    let py = python();
    let d = Daemon::start(&config()).await;
    let p = d.port;
    d.create_users(&["alice", "bob"], false).await;
    start_server(&d, "/users/alice/server").await;
    let artifacts = tempfile::tempdir().expect("artifacts");
    let out = std::process::Command::new(&py)
        .arg(repo().join("tests/python/origin_browser.py"))
        .args([
            format!("http://hub.test:{p}"),
            "bob".into(),
            "bob-password-1".into(),
            format!("http://alice.hub.test:{p}/user/alice/page"),
            format!("http://alice.hub.test:{p}/user/alice/echo"),
            artifacts.path().display().to_string(),
        ])
        .output()
        .expect("run origin_browser.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "origin_browser.py failed:\n{stdout}\n{stderr}\nhub log:\n{}",
        d.log()
    );
    let summary: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON from origin_browser.py:\n{stdout}\n{stderr}"));
    let result = summary["result"].as_str().expect("result");
    let line = |key: &str| {
        result
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {result}"))
            .to_string()
    };
    // Cross-origin reads of the hub, with bob's cookie sent or not, are blocked (no CORS).
    assert!(line("token-page:").contains("BLOCKED"), "{result}");
    assert!(line("api-user:").contains("BLOCKED"), "{result}");
    // On its own origin there is no hub to read.
    assert!(line("same-origin-token:").contains("READ 404"), "{result}");
    // The page's origin holds none of the hub's cookies.
    let cookies = line("cookies:");
    assert!(
        !cookies.contains("_xsrf") && !cookies.contains("hub-login"),
        "{cookies}"
    );
    let echoed = summary["echo"]["cookie"].as_str().unwrap_or("");
    assert!(
        !echoed.contains("jupyterhub-hub-login") && !echoed.contains("_xsrf"),
        "bob's hub cookies reached alice's server: {echoed:?}"
    );
    assert_eq!(summary["echo"]["host"], format!("alice.hub.test:{p}"));
}

/// The real `jupyterhub-singleuser` in Docker, on its own origin: a logged-in browser opening
/// `<user>.hub.test/user/<user>/lab` is sent to the hub's host to authorize, comes back to the
/// server's host with a code, and gets JupyterLab; the server's cookie then works for its API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterhub_singleuser_completes_its_oauth_flow_across_origins() {
    use crate::common::docker::{start_server as start_docker_server, Env};
    let mut env = Env::new("o").await;
    let user = env.user("x");
    let config = format!(
        "[http]\nsubdomain_host = \"http://hub.test:{{PORT}}\"\n{}",
        env.config("", "")
    );
    let d = Daemon::start(&config).await;
    d.create_users(&[&user], false).await;
    start_docker_server(&d, &user).await;
    let p = d.port;
    let hub = format!("http://hub.test:{p}");
    let own = format!("http://{user}.hub.test:{p}");
    let host = format!("{user}.hub.test");
    let (c, _jar) = browser_like(&d, &[host.as_str()]);

    let (_, _, page) = get(&c, &format!("{hub}/hub/login")).await;
    let r = c
        .post(format!("{hub}/hub/login"))
        .form(&[
            ("_xsrf", form_xsrf(&page).as_str()),
            ("username", user.as_str()),
            ("password", "lab-password-1"),
        ])
        .send()
        .await
        .expect("login");
    assert!(r.status().is_redirection(), "{}", d.log());

    let (status, url, trail, body) = follow(&c, &format!("{own}/user/{user}/lab")).await;
    assert_eq!(status, 200, "{trail}\n{}", d.log());
    assert!(body.contains("JupyterLab"), "{trail}");
    assert!(
        url.starts_with(&format!("{own}/user/{user}/lab")),
        "ends on the server's own host: {trail}"
    );
    assert!(
        trail.contains(&format!("{hub}/hub/api/oauth2/authorize")),
        "authorized on the hub's host: {trail}"
    );
    assert!(
        trail.contains(&format!("{own}/user/{user}/oauth_callback?code=")),
        "the code came back to the server's host: {trail}"
    );
    // The server's own cookie, on its host, now lets the browser use its API.
    let (s, _, status) = get(&c, &format!("{own}/user/{user}/api/status")).await;
    assert_eq!(s, 200, "{status}");

    // A guest: refused by the server's own OAuth check until the server is shared with a
    // group of theirs, then let in through the same flow. (The server caches the hub's answer
    // per token, so the guest comes back in a fresh browser: a new login, a new token.)
    let guest = env.user("g");
    d.create_users(&[&guest], false).await;
    let (status, _, trail, _) = guest_visit(&d, &hub, &guest, &host, &own, &user).await;
    assert_eq!(status, 403, "not shared: {trail}");
    let (s, _, _) = d
        .api(
            "POST",
            "/groups/pair",
            Some(ADMIN),
            Some(serde_json::json!({"users": [guest]})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, b, _) = d
        .api(
            "POST",
            &format!("/shares/{user}/"),
            Some(ADMIN),
            Some(serde_json::json!({"group": "pair"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (status, url, trail, body) = guest_visit(&d, &hub, &guest, &host, &own, &user).await;
    assert_eq!(
        status,
        200,
        "shared with the guest's group: {trail}\n{}",
        d.log()
    );
    assert!(
        body.contains("JupyterLab") && url.contains(&format!("/user/{user}/lab")),
        "{trail}"
    );
}

/// `guest` logs in on the hub's host in a fresh browser and opens `owner`'s JupyterLab on its
/// host `own`: as [`follow`].
async fn guest_visit(
    d: &Daemon,
    hub: &str,
    guest: &str,
    host: &str,
    own: &str,
    owner: &str,
) -> (u16, String, String, String) {
    let (c, _) = browser_like(d, &[host]);
    let (_, _, page) = get(&c, &format!("{hub}/hub/login")).await;
    let r = c
        .post(format!("{hub}/hub/login"))
        .form(&[
            ("_xsrf", form_xsrf(&page).as_str()),
            ("username", guest),
            ("password", "guest-password-1"),
        ])
        .send()
        .await
        .expect("guest login");
    assert!(r.status().is_redirection(), "{}", d.log());
    follow(&c, &format!("{own}/user/{owner}/lab")).await
}

/// GET `url` and follow its redirects as a browser does: the last status, the last URL, the
/// trail (`status url` per hop) and the last body.
async fn follow(c: &reqwest::Client, url: &str) -> (u16, String, String, String) {
    let mut url = url.to_string();
    let mut visited = Vec::new();
    loop {
        let r = c.get(&url).send().await.expect("request");
        visited.push(format!("{} {url}", r.status().as_u16()));
        let Some(loc) = r.headers().get("location").and_then(|v| v.to_str().ok()) else {
            let s = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            return (s, url, visited.join("\n"), body);
        };
        let next = reqwest::Url::parse(&url)
            .and_then(|base| base.join(loc))
            .expect("redirect target");
        url = next.to_string();
        assert!(visited.len() < 12, "too many redirects: {visited:#?}");
    }
}
