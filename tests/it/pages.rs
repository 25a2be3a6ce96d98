//! The HTML pages driven in-process through the app router: login (double-submit `_xsrf`,
//! throttling, first use), home, change password, tokens, admin, spawn pending, user pages,
//! CSRF on every form, security headers, and a non-root `base_url`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use orrery::config::{AuthType, BackendKind, Config};
use orrery::hub::Hub;
use orrery::state::Store;
use tower::ServiceExt;

struct TestHub {
    router: Router,
    hub: Arc<Hub>,
    _dir: tempfile::TempDir,
}

fn test_hub(base_url: &str, admins: &[&str], cmd: Vec<String>) -> TestHub {
    // The developer mode's config (open sign-up): these tests are about first use.
    let mut cfg = Config {
        base_url: base_url.to_string(),
        ..Config::developer()
    };
    cfg.auth.kind = AuthType::Firstuse;
    cfg.users.admin = admins.iter().map(|a| a.to_string()).collect();
    test_hub_from(cfg, cmd)
}

/// A hub on `cfg` whose servers are local processes running `cmd`.
fn test_hub_from(mut cfg: Config, cmd: Vec<String>) -> TestHub {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    cfg.spawner.backend = BackendKind::Local;
    cfg.spawner.local.cmd = cmd.clone();
    let backend = Arc::new(orrery::spawner::local::LocalBackend::new(cmd, true));
    let hub = Arc::new(Hub::new(cfg, None, store, backend, "x".into()));
    TestHub {
        router: orrery::app::router(hub.clone()),
        hub,
        _dir: dir,
    }
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    }

    fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value of the first hidden `_xsrf` field of the page.
    fn xsrf(&self) -> String {
        attr_after(&self.body, "name=\"_xsrf\"", "value")
            .unwrap_or_else(|| panic!("no _xsrf in page:\n{}", self.body))
    }
}

/// The value of attribute `attr` in the first tag after `marker`.
fn attr_after(body: &str, marker: &str, attr: &str) -> Option<String> {
    let at = body.find(marker)?;
    let rest = &body[at..];
    let start = rest.find(&format!("{attr}=\""))? + attr.len() + 2;
    let end = rest[start..].find('"')?;
    Some(rest[start..start + end].to_string())
}

/// A browser without JavaScript: keeps cookies by hand (name → value).
struct Browser<'a> {
    t: &'a TestHub,
    cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(t: &'a TestHub) -> Browser<'a> {
        Browser {
            t,
            cookies: BTreeMap::new(),
        }
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        form: Option<&[(&str, &str)]>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header(header::COOKIE, c.join("; "));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let body = match form {
            Some(fields) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(
                    url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(fields)
                        .finish(),
                )
            }
            None => Body::empty(),
        };
        let resp = self
            .t
            .router
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        let r = Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        for c in r.set_cookies() {
            let first = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = first.split_once('=') {
                if c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        r
    }

    async fn get(&mut self, path: &str) -> Resp {
        self.send(Method::GET, path, None, &[]).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Resp {
        self.send(Method::POST, path, Some(form), &[]).await
    }

    /// Load the login page, then submit it.
    async fn login(&mut self, prefix: &str, name: &str, password: &str) -> Resp {
        let page = self.get(&format!("{prefix}login")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let xsrf = page.xsrf();
        self.post(
            &format!("{prefix}login"),
            &[("_xsrf", &xsrf), ("username", name), ("password", password)],
        )
        .await
    }

    /// GET a page and return its CSRF token.
    async fn csrf(&mut self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        page.xsrf()
    }
}

async fn api_user(t: &TestHub, token: &str) -> (StatusCode, serde_json::Value) {
    let req = Request::builder()
        .uri("/hub/api/user")
        .header(header::AUTHORIZATION, format!("token {token}"))
        .body(Body::empty())
        .expect("request");
    let resp = t.router.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn login_page_sets_xsrf_cookie_and_headers() {
    let t = test_hub("/", &[], vec![]);
    let mut b = Browser::new(&t);
    let r = b.get("/hub/login").await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = r.set_cookie("_xsrf").expect("_xsrf cookie");
    assert!(cookie.contains("Path=/hub/"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let value = cookie
        .split(';')
        .next()
        .unwrap_or("")
        .trim_start_matches("_xsrf=")
        .to_string();
    assert_eq!(r.xsrf(), value, "the form carries the cookie's value");
    assert!(r.body.contains("action=\"/hub/login\""));
    assert!(r.body.contains("first password"), "explains first use");
    assert!(r.body.contains("at least 7 characters"));
    assert!(r.body.contains("<label for=\"username\""));
    assert!(r
        .header("content-security-policy")
        .contains("frame-ancestors 'none'"));
    assert_eq!(r.header("x-frame-options"), "DENY");
    assert!(r.header("content-type").starts_with("text/html"));
    // A second load keeps the same cookie.
    let again = b.get("/hub/login").await;
    assert!(again.set_cookie("_xsrf").is_none());
    assert_eq!(again.xsrf(), value);
}

#[tokio::test]
async fn first_login_creates_user_and_session() {
    let t = test_hub("/", &[], vec![]);
    let mut b = Browser::new(&t);
    let r = b.login("/hub/", "Alice", "correct horse").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert_eq!(r.header("location"), "/hub/home");
    let c = r.set_cookie("jupyterhub-hub-login").expect("login cookie");
    assert!(
        c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Path=/hub/"),
        "{c}"
    );
    assert!(t.hub.store.user("alice").unwrap().is_some());

    let home = b.get("/hub/home").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("alice"));
    assert!(home.body.contains("not running"));
    assert!(
        !home.body.contains("href=\"/hub/admin\""),
        "no admin link for a user"
    );

    // Logged in: the root and the login page go home, `next` is honoured when safe.
    assert_eq!(b.get("/hub/").await.header("location"), "/hub/home");
    assert_eq!(
        b.get("/hub/login?next=%2Fhub%2Ftoken")
            .await
            .header("location"),
        "/hub/token"
    );
    assert_eq!(
        b.get("/hub/login?next=https%3A%2F%2Fevil.example%2F")
            .await
            .header("location"),
        "/hub/home"
    );

    // Logging out clears the session.
    let out = b.get("/hub/logout").await;
    assert_eq!(out.status, StatusCode::FOUND);
    assert!(out.header("location").starts_with("/hub/login"));
    let home = b.get("/hub/home").await;
    assert!(home.status.is_redirection());
    assert!(home.header("location").starts_with("/hub/login?next="));
    assert!(b
        .get("/hub/login?logged_out=1")
        .await
        .body
        .contains("You have logged out"));
}

#[tokio::test]
async fn login_failures() {
    let t = test_hub("/", &[], vec![]);
    let mut b = Browser::new(&t);
    assert_eq!(
        b.login("/hub/", "carol", "right password").await.status,
        StatusCode::FOUND
    );
    let mut b = Browser::new(&t);

    // Wrong password: 403, the name stays filled in, no session.
    let r = b.login("/hub/", "carol", "wrong password").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.set_cookie("jupyterhub-hub-login").is_none());
    assert!(r.body.contains("value=\"carol\""));
    assert!(r.body.contains("Invalid user name or password"));

    // No _xsrf field (cookie present), and no cookie at all: 403 before anything is checked.
    let r = b
        .post(
            "/hub/login",
            &[("username", "carol"), ("password", "right password")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.set_cookie("jupyterhub-hub-login").is_none());
    let mut fresh = Browser::new(&t);
    let r = fresh
        .post(
            "/hub/login",
            &[
                ("_xsrf", "0123456789abcdef0123456789abcdef"),
                ("username", "carol"),
                ("password", "right password"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.set_cookie("jupyterhub-hub-login").is_none());

    // Too short a first password, and an invalid name: 400.
    let r = b.login("/hub/", "dave", "abc").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("at least 7 characters"));
    assert!(t.hub.store.user("dave").unwrap().is_none());
    assert_eq!(
        b.login("/hub/", "no/slash", "long enough").await.status,
        StatusCode::BAD_REQUEST
    );

    // Four more failures make five: the next attempt is throttled, even with the right password.
    for _ in 0..4 {
        assert_eq!(
            b.login("/hub/", "carol", "wrong again").await.status,
            StatusCode::FORBIDDEN
        );
    }
    let r = b.login("/hub/", "carol", "right password").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.header("retry-after").parse().expect("Retry-After");
    assert!(retry >= 1);
    assert!(r.body.contains("too many failed logins") || r.body.contains("Too many failed logins"));
}

#[tokio::test]
async fn change_password() {
    let t = test_hub("/", &[], vec![]);
    let mut b = Browser::new(&t);
    assert_eq!(
        b.login("/hub/", "erin", "first password").await.status,
        StatusCode::FOUND
    );
    let xsrf = b.csrf("/hub/auth/change-password").await;

    let r = b
        .post(
            "/hub/auth/change-password",
            &[
                ("_xsrf", &xsrf),
                ("current_password", "first password"),
                ("new_password", "second password"),
                ("confirm_password", "different"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = b
        .post(
            "/hub/auth/change-password",
            &[
                ("_xsrf", &xsrf),
                ("current_password", "not it"),
                ("new_password", "second password"),
                ("confirm_password", "second password"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b
        .post(
            "/hub/auth/change-password",
            &[
                ("current_password", "first password"),
                ("new_password", "second password"),
                ("confirm_password", "second password"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no CSRF token");
    let r = b
        .post(
            "/hub/auth/change-password",
            &[
                ("_xsrf", &xsrf),
                ("current_password", "first password"),
                ("new_password", "short"),
                ("confirm_password", "short"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = b
        .post(
            "/hub/auth/change-password",
            &[
                ("_xsrf", &xsrf),
                ("current_password", "first password"),
                ("new_password", "second password"),
                ("confirm_password", "second password"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("has been changed"));

    let mut other = Browser::new(&t);
    assert_eq!(
        other.login("/hub/", "erin", "first password").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        other.login("/hub/", "erin", "second password").await.status,
        StatusCode::FOUND
    );
}

#[tokio::test]
async fn forms_need_the_session_csrf_token() {
    let t = test_hub("/", &["boss"], vec![]);
    let mut b = Browser::new(&t);
    assert_eq!(
        b.login("/hub/", "boss", "boss password").await.status,
        StatusCode::FOUND
    );
    let xsrf = b.csrf("/hub/home").await;
    for path in [
        "/hub/home/start",
        "/hub/home/stop",
        "/hub/token",
        "/hub/admin/users",
        "/hub/logout",
    ] {
        let r = b.post(path, &[("names", "mallory"), ("note", "x")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} without _xsrf");
        let r = b
            .post(path, &[("_xsrf", "0000"), ("names", "mallory")])
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} with a wrong _xsrf");
    }
    assert!(t.hub.store.user("mallory").unwrap().is_none());
    // Another session's token is wrong for this one.
    let mut other = Browser::new(&t);
    assert_eq!(
        other.login("/hub/", "zed", "zed password").await.status,
        StatusCode::FOUND
    );
    let r = other.post("/hub/token", &[("_xsrf", &xsrf)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Not logged in at all: back to the login page.
    let mut anon = Browser::new(&t);
    let r = anon.post("/hub/home/start", &[("_xsrf", &xsrf)]).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.header("location").starts_with("/hub/login"));
}

#[tokio::test]
async fn tokens_page_creates_and_revokes() {
    let t = test_hub("/", &[], vec![]);
    let mut b = Browser::new(&t);
    assert_eq!(
        b.login("/hub/", "frank", "frank password").await.status,
        StatusCode::FOUND
    );
    let page = b.get("/hub/token").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.header("cache-control").contains("no-store"));
    assert!(page.body.contains("You have no API tokens"));
    let xsrf = page.xsrf();

    let r = b
        .post(
            "/hub/token",
            &[
                ("_xsrf", &xsrf),
                ("note", "my <script> notebook"),
                ("expires_in", "86400"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.header("cache-control").contains("no-store"));
    assert!(r.body.contains("will not be shown again"));
    assert!(
        r.body.contains("my &lt;script&gt; notebook"),
        "notes are escaped"
    );
    assert!(!r.body.contains("<script>"));
    let token = attr_after(&r.body, "id=\"new-token\"", "value").expect("token shown");
    assert_eq!(token.len(), 64);

    let (status, model) = api_user(&t, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(model["name"], "frank");

    let bad = b
        .post("/hub/token", &[("_xsrf", &xsrf), ("expires_in", "99")])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // The list shows it (without the token), with a revoke form; other kinds of tokens are not listed.
    t.hub
        .issue_token(
            orrery::state::TokenOwner::User("frank".into()),
            orrery::state::TokenKind::Server,
            vec![],
            "server token",
            None,
        )
        .unwrap();
    let page = b.get("/hub/token").await;
    assert!(!page.body.contains(&token));
    assert!(page.body.contains(&token[..4]));
    let action = attr_after(
        &page.body,
        "<form class=\"inline\" method=\"post\" action=\"/hub/token/",
        "action",
    )
    .expect("revoke form");
    assert!(action.ends_with("/revoke"), "{action}");
    assert!(!page.body.contains("server token"));
    assert_eq!(page.body.matches("/revoke\"").count(), 1);

    let r = b.post(&action, &[]).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "revoke needs the CSRF token"
    );
    assert_eq!(api_user(&t, &token).await.0, StatusCode::OK);
    let r = b.post(&action, &[("_xsrf", &xsrf)]).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.header("location"), "/hub/token?msg=revoked");
    assert_eq!(api_user(&t, &token).await.0, StatusCode::FORBIDDEN);
    assert!(b
        .get("/hub/token")
        .await
        .body
        .contains("You have no API tokens"));

    // Someone else's token id is not found for this user.
    let (_, other) = t
        .hub
        .issue_token(
            orrery::state::TokenOwner::User("someone".into()),
            orrery::state::TokenKind::Api,
            vec![],
            "",
            None,
        )
        .unwrap();
    let r = b
        .post(
            &format!("/hub/token/{}/revoke", other.id),
            &[("_xsrf", &xsrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(t.hub.store.token_by_hash(&other.hash).unwrap().is_some());
}

/// The config the installer writes (`bootstrap.sh --print-config`, what a first install puts
/// in /etc/orrery/config.toml), plus an admin as `bootstrap.sh --admin boss` adds one: nobody
/// can sign up; the admin and the users the admin adds set their password at first login; the
/// login and admin pages warn that plain HTTP on a public address sends passwords in clear.
#[tokio::test]
async fn installer_config_closes_sign_up_and_warns_about_plain_http() {
    let out = std::process::Command::new("sh")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/bootstrap/bootstrap.sh"
        ))
        .arg("--print-config")
        .output()
        .expect("run bootstrap.sh");
    assert!(out.status.success());
    let mut cfg = orrery::config::parse_str(&String::from_utf8_lossy(&out.stdout))
        .expect("the installer's config is valid");
    assert!(!cfg.auth.firstuse.create_users);
    assert_eq!(cfg.http.address, "", "every interface: not loopback");
    cfg.users.admin.push("boss".into());
    let t = test_hub_from(cfg, vec![]);

    let mut stranger = Browser::new(&t);
    let page = stranger.get("/hub/login").await;
    for needle in [
        "travel unencrypted",
        "Turn on HTTPS (https.enabled",
        "administrator added",
    ] {
        assert!(
            page.body.contains(needle),
            "login page lacks {needle:?}:\n{}",
            page.body
        );
    }
    let r = stranger.login("/hub/", "stranger", "a long password").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.body.contains("an administrator must add you first"),
        "the page says why: {}",
        r.body
    );
    assert!(t.hub.store.user("stranger").unwrap().is_none());

    let mut admin = Browser::new(&t);
    let r = admin.login("/hub/", "boss", "boss password").await;
    assert_eq!(
        r.status,
        StatusCode::FOUND,
        "users.admin counts as added: {}",
        r.body
    );
    let page = admin.get("/hub/admin").await;
    assert!(page.body.contains("travel unencrypted"), "{}", page.body);
    let r = admin
        .post(
            "/hub/admin/users",
            &[("_xsrf", &page.xsrf()), ("names", "carol")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    let mut carol = Browser::new(&t);
    let r = carol.login("/hub/", "carol", "carol password").await;
    assert_eq!(
        r.status,
        StatusCode::FOUND,
        "an added user sets a password: {}",
        r.body
    );

    // A wrong password gets the same words as an unknown name: nothing is revealed.
    let mut again = Browser::new(&t);
    let r = again.login("/hub/", "carol", "not carols password").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("an administrator must add you first"));

    // A name listed in users.allowed counts as added too.
    let mut cfg = t.hub.config().as_ref().clone();
    cfg.users.allowed = vec!["dana".into()];
    t.hub.set_config(cfg);
    let r = Browser::new(&t)
        .login("/hub/", "dana", "dana password")
        .await;
    assert_eq!(
        r.status,
        StatusCode::FOUND,
        "users.allowed counts as added: {}",
        r.body
    );

    // On loopback (a TLS proxy in front, as the README says) there is no warning.
    let mut cfg = t.hub.config().as_ref().clone();
    cfg.http.address = "127.0.0.1".into();
    t.hub.set_config(cfg);
    assert!(!Browser::new(&t)
        .get("/hub/login")
        .await
        .body
        .contains("travel unencrypted"));
}

#[tokio::test]
async fn admin_page() {
    let t = test_hub("/", &["boss"], vec![]);
    let mut user = Browser::new(&t);
    assert_eq!(
        user.login("/hub/", "gina", "gina password").await.status,
        StatusCode::FOUND
    );
    assert_eq!(user.get("/hub/admin").await.status, StatusCode::FORBIDDEN);
    let gx = user.csrf("/hub/home").await;
    assert_eq!(
        user.post("/hub/admin/users", &[("_xsrf", &gx), ("names", "sneaky")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert!(t.hub.store.user("sneaky").unwrap().is_none());

    let mut admin = Browser::new(&t);
    assert_eq!(
        admin.login("/hub/", "boss", "boss password").await.status,
        StatusCode::FOUND
    );
    assert!(admin
        .get("/hub/home")
        .await
        .body
        .contains("href=\"/hub/admin\""));
    let page = admin.get("/hub/admin").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("gina") && page.body.contains("boss"));
    assert!(page.body.contains("yes (config)"));
    let xsrf = page.xsrf();

    // Adding users: invalid names add nothing and keep the input.
    let r = admin
        .post(
            "/hub/admin/users",
            &[("_xsrf", &xsrf), ("names", "hal Bad/Name")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("No users were added"));
    assert!(r.body.contains("hal Bad/Name"));
    assert!(t.hub.store.user("hal").unwrap().is_none());
    let r = admin
        .post(
            "/hub/admin/users",
            &[
                ("_xsrf", &xsrf),
                ("names", "Hal\nivy, gina"),
                ("admin", "1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(admin
        .get(r.header("location"))
        .await
        .body
        .contains("Added 2 user(s); 1 already existed."));
    assert!(t.hub.store.user("hal").unwrap().is_some_and(|u| u.admin));
    assert!(t.hub.store.user("gina").unwrap().is_some_and(|u| !u.admin));

    // Make and remove admin.
    let r = admin
        .post("/hub/admin/users/gina/make-admin", &[("_xsrf", &xsrf)])
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(t.hub.store.user("gina").unwrap().is_some_and(|u| u.admin));
    assert_eq!(
        user.get("/hub/admin").await.status,
        StatusCode::OK,
        "gina is an admin now"
    );
    let r = admin
        .post("/hub/admin/users/gina/remove-admin", &[("_xsrf", &xsrf)])
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(user.get("/hub/admin").await.status, StatusCode::FORBIDDEN);

    // No demoting or deleting oneself.
    assert_eq!(
        admin
            .post("/hub/admin/users/boss/remove-admin", &[("_xsrf", &xsrf)])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        admin.get("/hub/admin/users/boss/delete").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        admin
            .post(
                "/hub/admin/users/boss/delete",
                &[("_xsrf", &xsrf), ("confirm", "yes")]
            )
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // Deleting needs the confirmation step.
    let confirm = admin.get("/hub/admin/users/gina/delete").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("name=\"confirm\""));
    assert_eq!(
        admin
            .post("/hub/admin/users/gina/delete", &[("_xsrf", &xsrf)])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert!(t.hub.store.user("gina").unwrap().is_some());
    let r = admin
        .post(
            "/hub/admin/users/gina/delete",
            &[("_xsrf", &xsrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(t.hub.store.user("gina").unwrap().is_none());
    // Her session is gone with her.
    assert!(user.get("/hub/home").await.status.is_redirection());
    assert_eq!(
        admin
            .post("/hub/admin/users/nobody/stop", &[("_xsrf", &xsrf)])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn start_failure_spawn_pending_and_user_pages() {
    // A "server" that exits at once: the spawn fails fast.
    let t = test_hub("/", &[], vec!["false".into()]);
    t.hub.set_internal_api_base("http://127.0.0.1:9".into());
    let mut b = Browser::new(&t);
    assert_eq!(
        b.login("/hub/", "iris", "iris password").await.status,
        StatusCode::FOUND
    );

    // The proxy sends a request for a stopped server to the hub's page for it.
    let r = b.get("/user/iris/lab").await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::TEMPORARY_REDIRECT, "/hub/user/iris/lab")
    );
    let r = b.get("/hub/user/iris/lab").await;
    assert_eq!(r.status, StatusCode::FAILED_DEPENDENCY);
    assert!(r.body.contains("Server not running"));
    assert!(r.body.contains("action=\"/hub/home/start\""));
    assert_eq!(
        b.get("/hub/user/iris/").await.status,
        StatusCode::FAILED_DEPENDENCY
    );

    let xsrf = b.csrf("/hub/home").await;
    let r = b.post("/hub/home/start", &[("_xsrf", &xsrf)]).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    assert!(r.body.contains("failed to start"));

    let r = b.get("/hub/spawn-pending/iris").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("<progress"));
    assert!(r.body.contains("Spawn failed"));
    assert!(r.body.contains("Server requested"));

    // Others see neither the spawn page nor the user page.
    let mut other = Browser::new(&t);
    assert_eq!(
        other.login("/hub/", "jack", "jack password").await.status,
        StatusCode::FOUND
    );
    assert_eq!(
        other.get("/hub/spawn-pending/iris").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        other.get("/hub/spawn-pending/iris/progress").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        other.get("/hub/user/iris/lab").await.status,
        StatusCode::NOT_FOUND
    );
    // The owner's progress stream replays the failure.
    let r = b.get("/hub/spawn-pending/iris/progress").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").starts_with("text/event-stream"));
    assert!(r.body.contains("\"failed\":true"));
    // Not logged in: the user page sends to login with `next`.
    let mut anon = Browser::new(&t);
    let r = anon.get("/hub/user/iris/tree").await;
    assert!(r.status.is_redirection());
    assert_eq!(
        r.header("location"),
        "/hub/login?next=%2Fhub%2Fuser%2Firis%2Ftree"
    );
}

#[tokio::test]
async fn start_without_backend_shows_error() {
    let t = test_hub("/", &[], vec![]);
    let mut b = Browser::new(&t);
    assert_eq!(
        b.login("/hub/", "kim", "kim password").await.status,
        StatusCode::FOUND
    );
    let xsrf = b.csrf("/hub/home").await;
    let r = b.post("/hub/home/start", &[("_xsrf", &xsrf)]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.contains("role=\"alert\""));
    // Stopping a server that is not running is fine.
    let r = b.post("/hub/home/stop", &[("_xsrf", &xsrf)]).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.header("location"), "/hub/home?msg=stopped");
}

#[tokio::test]
async fn not_found_static_and_root() {
    let t = test_hub("/", &[], vec![]);
    let mut b = Browser::new(&t);
    let r = b.get("/hub/no/such/page").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("Page not found"));
    assert_eq!(r.header("x-frame-options"), "DENY");
    let r = b.get("/hub").await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::FOUND, "/hub/login")
    );
    let r = b.get("/hub/").await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::FOUND, "/hub/login")
    );
    let login = b.get("/hub/login").await;
    let css = attr_after(&login.body, "rel=\"stylesheet\"", "href").expect("stylesheet link");
    assert!(css.starts_with("/hub/static/style.css?v="));
    let r = b.get(&css).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").starts_with("text/css"));
    assert!(r.header("cache-control").contains("max-age=31536000"));
    assert!(r.body.contains(":focus-visible"));
    assert_eq!(b.get("/hub/static/spawn.js").await.status, StatusCode::OK);
    // The API keeps its own JSON 404.
    let r = b.get("/hub/api/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.header("content-type").starts_with("application/json"));
}

#[tokio::test]
async fn base_url_prefixes_everything() {
    let t = test_hub("/jupyter/", &[], vec![]);
    let mut b = Browser::new(&t);
    let r = b.get("/jupyter/hub/login").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("action=\"/jupyter/hub/login\""));
    assert!(r.body.contains("href=\"/jupyter/hub/static/style.css"));
    assert!(r
        .set_cookie("_xsrf")
        .is_some_and(|c| c.contains("Path=/jupyter/hub/")));
    assert_eq!(b.get("/hub/login").await.status, StatusCode::NOT_FOUND);

    let r = b.login("/jupyter/hub/", "lena", "lena password").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.header("location"), "/jupyter/hub/home");
    assert!(r
        .set_cookie("jupyterhub-hub-login")
        .is_some_and(|c| c.contains("Path=/jupyter/hub/")));
    let home = b.get("/jupyter/hub/home").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("action=\"/jupyter/hub/home/start\""));
    assert!(home.body.contains("action=\"/jupyter/hub/logout\""));
    assert!(home.body.contains("href=\"/jupyter/hub/token\""));
    assert_eq!(
        b.get("/jupyter/user/lena/").await.header("location"),
        "/jupyter/hub/user/lena/"
    );
    // The raw path is kept: an encoded `?` stays part of the file name.
    assert_eq!(
        b.get("/jupyter/user/lena/files/x%3Fy.txt?download=1")
            .await
            .header("location"),
        "/jupyter/hub/user/lena/files/x%3Fy.txt?download=1"
    );
    assert_eq!(
        b.get("/jupyter/hub/user/lena/").await.status,
        StatusCode::FAILED_DEPENDENCY
    );
    assert_eq!(
        b.get("/jupyter/hub/nothing").await.status,
        StatusCode::NOT_FOUND
    );
    let out = b.get("/jupyter/hub/logout").await;
    assert!(out.header("location").starts_with("/jupyter/hub/login"));
}

fn server_record(user: &str, pending: Option<&str>, ready: bool) -> orrery::state::ServerRecord {
    orrery::state::ServerRecord {
        user: user.into(),
        name: String::new(),
        url: Some("http://127.0.0.1:9".into()),
        started: None,
        last_activity: None,
        pending: pending.map(str::to_string),
        ready,
        user_options: serde_json::json!({}),
        display_name: None,
        backend_state: serde_json::Value::Null,
        token_id: None,
        environment: None,
    }
}

#[tokio::test]
async fn starting_and_running_servers() {
    let t = test_hub("/", &[], vec![]);
    let mut b = Browser::new(&t);
    assert_eq!(
        b.login("/hub/", "mia", "mia password").await.status,
        StatusCode::FOUND
    );

    // Starting: the pending page refreshes without JavaScript and loads the progress script.
    t.hub
        .store
        .put_server(&server_record("mia", Some("spawn"), false))
        .unwrap();
    let r = b.get("/hub/spawn-pending/mia").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body
            .contains("<noscript><meta http-equiv=\"refresh\" content=\"2\"></noscript>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<script src=\"/hub/static/spawn.js?v="));
    assert!(r
        .body
        .contains("data-progress-url=\"/hub/spawn-pending/mia/progress\""));
    assert!(r.body.contains("<progress"));
    assert!(b
        .get("/hub/home")
        .await
        .body
        .contains("href=\"/hub/spawn-pending/mia\""));
    let r = b.get("/user/mia/lab").await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::TEMPORARY_REDIRECT, "/hub/user/mia/lab")
    );
    let r = b.get("/hub/user/mia/lab").await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::FOUND, "/hub/spawn-pending/mia")
    );
    let xsrf = b.csrf("/hub/home").await;
    assert_eq!(
        b.post("/hub/home/stop", &[("_xsrf", &xsrf)]).await.status,
        StatusCode::CONFLICT
    );
    let r = b.post("/hub/home/start", &[("_xsrf", &xsrf)]).await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::FOUND, "/hub/spawn-pending/mia")
    );

    // Running: home links to it, the pending page and a start go straight there.
    t.hub
        .store
        .put_server(&server_record("mia", None, true))
        .unwrap();
    let home = b.get("/hub/home").await;
    assert!(home.body.contains("href=\"/user/mia/lab\""));
    assert!(home.body.contains("action=\"/hub/home/stop\""));
    let r = b.get("/hub/spawn-pending/mia").await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::FOUND, "/user/mia/lab")
    );
    let r = b.post("/hub/home/start", &[("_xsrf", &xsrf)]).await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::FOUND, "/user/mia/lab")
    );
    let r = b.get("/hub/user/mia/lab").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("/user/mia/"));
    // The proxy forwards to the recorded address; nothing listens there in this test.
    let r = b.get("/user/mia/lab").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);

    // Stopping forgets it.
    let r = b.post("/hub/home/stop", &[("_xsrf", &xsrf)]).await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::FOUND, "/hub/home?msg=stopped")
    );
    assert!(t.hub.store.server("mia", "").unwrap().is_none());
    assert!(b
        .get("/hub/home?msg=stopped")
        .await
        .body
        .contains("has been stopped"));
}

/// `[announcement]` and `[branding]`: the general text on every page without its own, each
/// page's own text where set (login, home, spawn form, admin), escaped as plain text; the
/// name in the header and the titles; the logo served at `/hub/logo` and shown instead of the
/// name; a reload applies at once.
#[tokio::test]
async fn announcements_and_branding_appear_on_the_pages() {
    let logo_dir = tempfile::tempdir().unwrap();
    let logo = logo_dir.path().join("logo.png");
    let png: &[u8] = b"\x89PNG\r\n\x1a\n not a real image, served as is";
    std::fs::write(&logo, png).unwrap();
    let mut cfg = Config {
        ..Config::developer()
    };
    cfg.auth.kind = AuthType::Firstuse;
    cfg.users.admin = vec!["boss".into()];
    cfg.announcement.text = "Exam on Friday <b>room 2</b>".into();
    cfg.announcement.login = "Welcome to PHYS 101".into();
    cfg.announcement.admin = "Grades due Monday".into();
    cfg.branding.name = "Physics Hub".into();
    cfg.profiles = vec![
        orrery::config::Profile {
            name: "small".into(),
            ..Default::default()
        },
        orrery::config::Profile {
            name: "big".into(),
            ..Default::default()
        },
    ];
    orrery::config::validate::validate(&cfg).expect("a valid config");
    let t = test_hub_from(cfg, vec![]);
    let mut b = Browser::new(&t);
    let note = |body: &str| {
        let at = body
            .find("class=\"announcement\"")
            .unwrap_or_else(|| panic!("no announcement in:\n{body}"));
        let rest = &body[at..];
        rest[..rest.find("</aside>").unwrap_or(rest.len())].to_string()
    };
    let login = b.get("/hub/login").await;
    assert!(
        note(&login.body).contains("Welcome to PHYS 101"),
        "{}",
        login.body
    );
    assert!(login.body.contains("<title>Log in — Physics Hub</title>"));
    assert!(login
        .body
        .contains("class=\"brand\" href=\"/hub/home\">Physics Hub</a>"));
    assert_eq!(
        b.login("/hub/", "boss", "boss password").await.status,
        StatusCode::FOUND
    );
    let home = b.get("/hub/home").await;
    let text = note(&home.body);
    assert!(
        text.contains("Exam on Friday &lt;b&gt;room 2&lt;/b&gt;"),
        "plain text, escaped: {text}"
    );
    let spawn = b.get("/hub/spawn").await;
    assert!(
        note(&spawn.body).contains("Exam on Friday"),
        "{}",
        spawn.body
    );
    let admin = b.get("/hub/admin").await;
    assert!(
        note(&admin.body).contains("Grades due Monday"),
        "{}",
        admin.body
    );
    let token = b.get("/hub/token").await;
    assert!(note(&token.body).contains("Exam on Friday"));

    // No logo yet: /hub/logo is 404. With one, the header shows it and it is served.
    assert_eq!(b.get("/hub/logo").await.status, StatusCode::NOT_FOUND);
    let mut cfg = t.hub.config().as_ref().clone();
    cfg.branding.logo = logo.display().to_string();
    cfg.announcement = Default::default();
    orrery::config::validate::validate(&cfg).expect("a valid logo");
    t.hub.set_config(cfg);
    let home = b.get("/hub/home").await;
    assert!(
        home.body
            .contains("<img class=\"logo\" src=\"/hub/logo\" alt=\"Physics Hub\">"),
        "{}",
        home.body
    );
    assert!(!home.body.contains("class=\"announcement\""), "cleared");
    let served = b.get("/hub/logo").await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.header("content-type"), "image/png");
    assert_eq!(
        served.body.as_bytes(),
        String::from_utf8_lossy(png).as_bytes()
    );

    // Bad logos are refused at load, naming the key and the fix.
    let mut bad = t.hub.config().as_ref().clone();
    bad.branding.logo = "logo.png".into();
    let e = orrery::config::validate::validate(&bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("branding.logo") && e.contains("absolute path"),
        "{e}"
    );
    bad.branding.logo = "/nonexistent/logo.png".into();
    let e = orrery::config::validate::validate(&bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a file"), "{e}");
}
