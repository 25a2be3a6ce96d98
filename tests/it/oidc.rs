//! `auth.type = "oidc"`: Orrery's own checks of an OpenID provider's answers. A test issuer
//! (below) serves discovery, its JWKS, an authorization endpoint that answers at once, a token
//! endpoint and userinfo, and signs ID tokens with its own RSA keys (made by `openssl`) through
//! openidconnect's own token builder — so it can issue what a certified provider never would:
//! a tampered signature, an expired token, another audience, another nonce, another issuer.
//! Each is refused; a good one logs in (so the refusals are Orrery's checks, not a broken
//! issuer), as does one signed after the issuer rotated its keys. The same code and state
//! replayed at Orrery's callback, and a state this browser was not given, are refused too.
//!
//! The login through a real, certified provider in a browser is `oidc_provider.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openidconnect::core::{
    CoreIdToken, CoreIdTokenClaims, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
};
use openidconnect::{
    AccessToken, Audience, EmptyAdditionalClaims, EndUserUsername, IssuerUrl, JsonWebKeyId, Nonce,
    PrivateSigningKey, StandardClaims, SubjectIdentifier,
};
use serde_json::{json, Value};
use sha2::Digest;

use crate::common::{free_port, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};

/// What the test issuer puts in its next ID token.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Good,
    TamperedSignature,
    Expired,
    WrongAudience,
    WrongNonce,
    WrongIssuer,
}

struct Issuer {
    url: String,
    keys: Vec<(String, String)>, // (kid, PEM), the first signs
    mode: Mode,
    /// code → (nonce, PKCE challenge)
    codes: HashMap<String, (String, String)>,
    /// (sub, preferred_username, groups) of the next login.
    who: (String, String, Vec<String>),
    /// Refresh tokens issued (to look for them in the state directory).
    refresh_tokens: Vec<String>,
    /// Refuse refresh tokens, as a provider does once a login was revoked.
    refuse_refresh: bool,
}

type Shared = Arc<Mutex<Issuer>>;

fn rsa_key() -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl genpkey");
    assert!(out.status.success());
    // openidconnect reads PKCS#1 ("RSA PRIVATE KEY") PEM.
    let mut rsa = std::process::Command::new("openssl")
        .args(["rsa", "-traditional"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl rsa");
    use std::io::Write;
    rsa.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let out = rsa.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

fn signing_key(kid: &str, pem: &str) -> CoreRsaPrivateSigningKey {
    CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new(kid.into()))).unwrap()
}

async fn discovery(State(s): State<Shared>) -> Json<Value> {
    let url = s.lock().unwrap().url.clone();
    Json(json!({
        "issuer": url,
        "authorization_endpoint": format!("{url}/authorize"),
        "token_endpoint": format!("{url}/token"),
        "userinfo_endpoint": format!("{url}/userinfo"),
        "jwks_uri": format!("{url}/jwks"),
        "end_session_endpoint": format!("{url}/session/end"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks(State(s): State<Shared>) -> Json<Value> {
    let keys: Vec<Value> = s
        .lock()
        .unwrap()
        .keys
        .iter()
        .map(|(kid, pem)| {
            serde_json::to_value(signing_key(kid, pem).as_verification_key()).unwrap()
        })
        .collect();
    Json(json!({ "keys": keys }))
}

async fn authorize(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let code = format!("code-{}", uuid::Uuid::new_v4());
    s.lock().unwrap().codes.insert(
        code.clone(),
        (
            q.get("nonce").cloned().unwrap_or_default(),
            q.get("code_challenge").cloned().unwrap_or_default(),
        ),
    );
    let to = format!(
        "{}?code={code}&state={}",
        q["redirect_uri"],
        q.get("state").cloned().unwrap_or_default()
    );
    Redirect::to(&to).into_response()
}

/// The token endpoint: checks PKCE, then issues the ID token the mode says. Codes are not
/// single-use here, so a replay reaching Orrery's callback shows Orrery's own refusal.
async fn token(State(s): State<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
    let mut s = s.lock().unwrap();
    if f.get("grant_type").map(String::as_str) == Some("refresh_token") {
        let known = f
            .get("refresh_token")
            .is_some_and(|t| s.refresh_tokens.contains(t));
        if s.refuse_refresh || !known {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_grant"})),
            )
                .into_response();
        }
        let refresh = format!("refresh-{}", uuid::Uuid::new_v4());
        s.refresh_tokens.push(refresh.clone());
        return Json(json!({
            "access_token": format!("access-{}", s.who.0),
            "token_type": "Bearer",
            "expires_in": 600,
            "refresh_token": refresh,
        }))
        .into_response();
    }
    let Some((nonce, challenge)) = s
        .codes
        .get(f.get("code").map(String::as_str).unwrap_or(""))
        .cloned()
    else {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    };
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    let computed = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        sha2::Sha256::digest(verifier.as_bytes()),
    );
    if computed != challenge {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "PKCE"})),
        )
            .into_response();
    }
    let now = chrono::Utc::now();
    let (sub, username, _) = s.who.clone();
    let issuer = match s.mode {
        Mode::WrongIssuer => "http://127.0.0.1:1/elsewhere".to_string(),
        _ => s.url.clone(),
    };
    let audience = match s.mode {
        Mode::WrongAudience => "another-client",
        _ => "orrery",
    };
    let exp = match s.mode {
        Mode::Expired => now - chrono::Duration::minutes(10),
        _ => now + chrono::Duration::minutes(10),
    };
    let nonce = match s.mode {
        Mode::WrongNonce => "not-the-nonce-orrery-sent".to_string(),
        _ => nonce,
    };
    let access = AccessToken::new(format!("access-{sub}"));
    let claims = CoreIdTokenClaims::new(
        IssuerUrl::new(issuer).unwrap(),
        vec![Audience::new(audience.into())],
        exp,
        now - chrono::Duration::minutes(11),
        StandardClaims::new(SubjectIdentifier::new(sub))
            .set_preferred_username(Some(EndUserUsername::new(username))),
        EmptyAdditionalClaims {},
    )
    .set_nonce(Some(Nonce::new(nonce)));
    let (kid, pem) = &s.keys[0];
    let mut jwt = serde_json::to_value(
        CoreIdToken::new(
            claims,
            &signing_key(kid, pem),
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            Some(&access),
            None,
        )
        .unwrap(),
    )
    .unwrap()
    .as_str()
    .unwrap()
    .to_string();
    if s.mode == Mode::TamperedSignature {
        // Another signature of the same length: the token reads the same, and is forged.
        let cut = jwt.len() - 8;
        jwt.replace_range(cut.., "AAAAAAAA");
    }
    let refresh = format!("refresh-{}", uuid::Uuid::new_v4());
    s.refresh_tokens.push(refresh.clone());
    Json(json!({
        "access_token": access.secret(),
        "token_type": "Bearer",
        "expires_in": 600,
        "id_token": jwt,
        "refresh_token": refresh,
    }))
    .into_response()
}

async fn userinfo(State(s): State<Shared>) -> Json<Value> {
    let (sub, username, groups) = s.lock().unwrap().who.clone();
    Json(json!({ "sub": sub, "preferred_username": username, "groups": groups }))
}

async fn start_issuer() -> Shared {
    let port = free_port();
    let state = Arc::new(Mutex::new(Issuer {
        url: format!("http://127.0.0.1:{port}"),
        keys: vec![("key-1".into(), rsa_key())],
        mode: Mode::Good,
        codes: HashMap::new(),
        who: (
            "subject-ann".into(),
            "Ann".into(),
            vec!["course:physics".into()],
        ),
        refresh_tokens: Vec::new(),
        refuse_refresh: false,
    }));
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .with_state(state.clone());
    crate::common::serve_router(port, app).await;
    state
}

/// A browser's login as far as the callback: (the callback URL the provider sent it to, the
/// browser, the provider URL it was sent to first). Nothing follows redirects by itself.
pub(crate) async fn to_provider_and_back(
    d: &Daemon,
    query: &str,
) -> (String, reqwest::Client, String) {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = browser
        .get(format!("{}/hub/oauth_login{query}", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{}", d.log());
    let at_provider = r.headers()["location"].to_str().unwrap().to_string();
    let r = browser.get(&at_provider).send().await.unwrap();
    assert_eq!(r.status(), 303, "the provider sends the browser back");
    let back = r.headers()["location"].to_str().unwrap().to_string();
    (back, browser, at_provider)
}

/// [`to_provider_and_back`] for the test issuer: it was asked for PKCE and given a nonce.
async fn to_callback(d: &Daemon) -> (String, reqwest::Client) {
    let (back, browser, at_issuer) = to_provider_and_back(d, "?next=/hub/token").await;
    assert!(
        at_issuer.contains("code_challenge_method=S256") && at_issuer.contains("nonce="),
        "{at_issuer}"
    );
    (back, browser)
}

/// The callback's answer: (status, where it sends the browser, page).
pub(crate) async fn callback(browser: &reqwest::Client, url: &str) -> (u16, String, String) {
    let r = browser.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let to = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, to, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_misaddressed_and_replayed_logins_are_refused() {
    let issuer = start_issuer().await;
    let port = free_port();
    let issuer_url = issuer.lock().unwrap().url.clone();
    let d = Daemon::start_on_port_with_env(
        &format!(
            "[auth]\ntype = \"oidc\"\n\n[auth.oidc]\nissuer = \"{issuer_url}\"\nclient_id = \"orrery\"\n\
             client_secret = \"oidc-client-secret-9876\"\n\
             redirect_url = \"http://127.0.0.1:{port}/hub/oauth_callback\"\n\
             allowed_groups = [\"course:physics\"]\nmanage_groups = true\n"
        ),
        port,
        &[("RUST_LOG", "trace")],
    )
    .await;

    // The login page offers the provider, and no password form (no local admins).
    let page = d
        .http
        .get(format!("{}/hub/login", d.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Sign in with your organization") && !page.contains("type=\"password\""),
        "{page}"
    );

    // Each token a certified provider would never issue is refused, and makes no session.
    for mode in [
        Mode::TamperedSignature,
        Mode::Expired,
        Mode::WrongAudience,
        Mode::WrongNonce,
        Mode::WrongIssuer,
    ] {
        issuer.lock().unwrap().mode = mode;
        let (url, browser) = to_callback(&d).await;
        let (status, _, page) = callback(&browser, &url).await;
        assert_eq!(status, 403, "{mode:?}: {page}");
        assert!(page.contains("could not be verified"), "{mode:?}: {page}");
        let home = browser
            .get(format!("{}/hub/home", d.url))
            .send()
            .await
            .unwrap();
        let to = home
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            to.as_deref().is_some_and(|l| l.contains("/hub/login")),
            "{mode:?}: no session ({to:?})"
        );
    }
    let log = d.log();
    for why in ["Signature", "expired", "audience", "nonce", "issuer"] {
        assert!(
            log.to_lowercase().contains(&why.to_lowercase()),
            "{why} in the log:\n{log}"
        );
    }

    // A good token: logged in, sent where the login began, named and grouped by the claims.
    issuer.lock().unwrap().mode = Mode::Good;
    let (url, browser) = to_callback(&d).await;
    let (status, to, page) = callback(&browser, &url).await;
    assert_eq!(
        (status, to.as_str()),
        (302, "/hub/token"),
        "{page}\n{}",
        d.log()
    );
    let (s, ann, _) = d.api("GET", "/users/ann", Some(ADMIN), None).await;
    assert_eq!(
        (s, ann["groups"].clone()),
        (200, json!(["course:physics"])),
        "{ann}"
    );

    // The same code and state replayed at the callback: refused by Orrery itself (this
    // issuer would accept the code again).
    let (status, _, page) = callback(&browser, &url).await;
    assert_eq!(status, 403, "{page}");

    // Logging out ends the session here and sends the browser to the provider's
    // end_session_endpoint, so the next "Sign in" asks again.
    let r = browser
        .get(format!("{}/hub/token", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "logged in before logging out");
    let r = browser
        .get(format!("{}/hub/logout", d.url))
        .send()
        .await
        .unwrap();
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(to, format!("{issuer_url}/session/end?client_id=orrery"));
    let r = browser
        .get(format!("{}/hub/token", d.url))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200, "the session is gone");
    // A state this browser was not given (another login's), and a made-up one.
    let (other_url, _other_browser) = to_callback(&d).await;
    let (status, _, _) = callback(&browser, &other_url).await;
    assert_eq!(status, 403, "another browser's state");
    let (status, _, _) = callback(
        &browser,
        &format!("{}/hub/oauth_callback?code=x&state=made-up", d.url),
    )
    .await;
    assert_eq!(status, 403);

    // The issuer rotates its keys: a new key signs, the old one is still published. Orrery
    // fetches the keys again (not sooner than REFETCH_AFTER after the last time) and the login
    // works.
    tokio::time::sleep(orrery::providers::oidc::REFETCH_AFTER).await;
    {
        let mut s = issuer.lock().unwrap();
        let new_key = ("key-2".to_string(), rsa_key());
        s.keys.insert(0, new_key);
    }
    let (url, browser) = to_callback(&d).await;
    let (status, _, page) = callback(&browser, &url).await;
    assert_eq!(status, 302, "after key rotation: {page}\n{}", d.log());

    // Someone the provider knows but outside the allowed groups: a clear refusal.
    issuer.lock().unwrap().who = (
        "subject-zed".into(),
        "zed".into(),
        vec!["course:other".into()],
    );
    let (url, browser) = to_callback(&d).await;
    let (status, _, page) = callback(&browser, &url).await;
    assert_eq!(status, 403);
    assert!(page.contains("This hub is not open to zed"), "{page}");

    // The client secret is in no log (at trace level, failures included) and not in
    // `config show`.
    assert!(!d.log().contains("oidc-client-secret-9876"));
    let (_, out, _) = d.cli(&["config", "show"], None);
    assert!(
        !out.contains("oidc-client-secret-9876") && out.contains("<redacted>"),
        "{out}"
    );
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.extend(bytes);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_refreshed_before_a_spawn_and_a_revoked_login_must_log_in_again() {
    let issuer = start_issuer().await;
    let port = free_port();
    let issuer_url = issuer.lock().unwrap().url.clone();
    let d = Daemon::start_on_port(
        &format!(
            "{}\n[auth]\ntype = \"oidc\"\n\n[auth.oidc]\nissuer = \"{issuer_url}\"\nclient_id = \"orrery\"\n\
             client_secret = \"oidc-client-secret-9876\"\n\
             redirect_url = \"http://127.0.0.1:{port}/hub/oauth_callback\"\n\
             allowed_groups = [\"course:physics\"]\nmanage_groups = true\n",
            crate::common::sleeping_spawner("")
        ),
        port,
    )
    .await;
    let (url, browser) = to_callback(&d).await;
    let (status, _, page) = callback(&browser, &url).await;
    assert_eq!(status, 302, "{page}");

    // The refresh token is kept, sealed: not in the state directory in the clear.
    let issued = issuer.lock().unwrap().refresh_tokens.clone();
    assert_eq!(issued.len(), 1);
    let key = d.state_dir().join("provider-tokens.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let bytes = all_bytes(&d.state_dir());
    assert!(
        !bytes
            .windows(issued[0].len())
            .any(|w| w == issued[0].as_bytes()),
        "the refresh token is in the state directory in the clear"
    );

    // The provider revokes the login: a spawn is refused until ann logs in again.
    issuer.lock().unwrap().refuse_refresh = true;
    let (s, b, _) = d.api("POST", "/users/ann/server", Some(ADMIN), None).await;
    assert_eq!(s, 403, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("log in again"),
        "{b}"
    );
    issuer.lock().unwrap().refuse_refresh = false;
    let (url, browser) = to_callback(&d).await;
    assert_eq!(callback(&browser, &url).await.0, 302);

    // The provider adds a group: the spawn refreshes the user's groups first.
    issuer.lock().unwrap().who.2.push("course:lab".into());
    let before = issuer.lock().unwrap().refresh_tokens.len();
    let (s, b, _) = d.api("POST", "/users/ann/server", Some(ADMIN), None).await;
    assert!(s == 201 || s == 202, "{s} {b}\n{}", d.log());
    let (_, ann, _) = d.api("GET", "/users/ann", Some(ADMIN), None).await;
    assert_eq!(
        ann["groups"],
        json!(["course:lab", "course:physics"]),
        "{ann}"
    );
    assert_eq!(
        issuer.lock().unwrap().refresh_tokens.len(),
        before + 1,
        "refreshed once, the new token kept"
    );
    assert!(
        !d.log().contains(&issued[0]),
        "a refresh token is in the log"
    );
}
