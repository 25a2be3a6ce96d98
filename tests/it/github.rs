//! `auth.type = "github"` against a local stand-in for GitHub — the one faked provider here,
//! since github.com cannot be reached from these machines. It follows GitHub's documented
//! endpoints and their quirks: the token endpoint answers form-encoded unless the client asks
//! for JSON (and a bad code is a 200 with an `error` field), the API refuses requests without
//! a `User-Agent` or a bearer token, and `/user/orgs` and `/user/teams` come two items a page
//! with `Link: <…>; rel="next"` headers. It checks PKCE like GitHub does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use sha2::Digest;

use crate::common::{free_port, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};

/// One GitHub account: login, id, organizations, teams (`org`, `slug`).
#[derive(Clone)]
struct Account {
    login: &'static str,
    id: u64,
    orgs: Vec<&'static str>,
    teams: Vec<(&'static str, &'static str)>,
}

struct GitHub {
    url: String,
    /// The account the next authorization logs in.
    next: Account,
    /// code → (account, PKCE challenge)
    codes: HashMap<String, (Account, String)>,
    tokens: HashMap<String, Account>,
    /// Requests to the API that had no User-Agent (GitHub would refuse them: so do we).
    no_user_agent: usize,
}

type Shared = Arc<Mutex<GitHub>>;

async fn authorize(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut gh = s.lock().unwrap();
    let code = format!("gh-code-{}", uuid::Uuid::new_v4().simple());
    let account = gh.next.clone();
    gh.codes.insert(
        code.clone(),
        (
            account,
            q.get("code_challenge").cloned().unwrap_or_default(),
        ),
    );
    Redirect::to(&format!(
        "{}?code={code}&state={}",
        q["redirect_uri"],
        q.get("state").cloned().unwrap_or_default()
    ))
    .into_response()
}

async fn access_token(
    State(s): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let mut gh = s.lock().unwrap();
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let answer = |pairs: Vec<(&str, String)>| -> Response {
        if wants_json {
            let map: serde_json::Map<String, Value> = pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::String(v)))
                .collect();
            Json(Value::Object(map)).into_response()
        } else {
            // GitHub's default: form-encoded, even for errors, with status 200.
            let body = pairs
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                    )
                })
                .collect::<Vec<_>>()
                .join("&");
            (
                [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
                body,
            )
                .into_response()
        }
    };
    let Some((account, challenge)) = f.get("code").and_then(|c| gh.codes.remove(c)) else {
        return answer(vec![("error", "bad_verification_code".into())]);
    };
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    let computed = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        sha2::Sha256::digest(verifier.as_bytes()),
    );
    if computed != challenge {
        return answer(vec![("error", "bad_verification_code".into())]);
    }
    let token = format!("gho_{}", uuid::Uuid::new_v4().simple());
    gh.tokens.insert(token.clone(), account);
    answer(vec![
        ("access_token", token),
        ("scope", "read:org,read:user".into()),
        ("token_type", "bearer".into()),
    ])
}

/// The account a request's token belongs to, or GitHub's refusal.
fn account(s: &Shared, headers: &HeaderMap) -> Result<Account, Box<Response>> {
    let mut gh = s.lock().unwrap();
    if headers.get(header::USER_AGENT).is_none() {
        gh.no_user_agent += 1;
        return Err(Box::new((StatusCode::FORBIDDEN, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header").into_response()));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .unwrap_or("");
    gh.tokens.get(token).cloned().ok_or_else(|| {
        Box::new(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"message": "Bad credentials"})),
            )
                .into_response(),
        )
    })
}

async fn user(State(s): State<Shared>, headers: HeaderMap) -> Response {
    match account(&s, &headers) {
        Ok(a) => Json(json!({"login": a.login, "id": a.id, "type": "User"})).into_response(),
        Err(r) => *r,
    }
}

/// A page of `items`, two per page whatever `per_page` asks, with GitHub's `Link` header.
fn paged(url: &str, q: &HashMap<String, String>, items: Vec<Value>) -> Response {
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let per = 2;
    let last = items.len().div_ceil(per).max(1);
    let body: Vec<Value> = items.into_iter().skip((page - 1) * per).take(per).collect();
    let mut links = Vec::new();
    if page < last {
        links.push(format!(
            "<{url}?per_page=100&page={}>; rel=\"next\"",
            page + 1
        ));
        links.push(format!("<{url}?per_page=100&page={last}>; rel=\"last\""));
    }
    let mut resp = Json(Value::Array(body)).into_response();
    if !links.is_empty() {
        resp.headers_mut()
            .insert("link", links.join(", ").parse().unwrap());
    }
    resp
}

async fn orgs(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match account(&s, &headers) {
        Ok(a) => {
            let url = format!("{}/api/user/orgs", s.lock().unwrap().url);
            paged(
                &url,
                &q,
                a.orgs.iter().map(|o| json!({"login": o})).collect(),
            )
        }
        Err(r) => *r,
    }
}

async fn teams(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match account(&s, &headers) {
        Ok(a) => {
            let url = format!("{}/api/user/teams", s.lock().unwrap().url);
            let items = a
                .teams
                .iter()
                .map(|(org, slug)| json!({"slug": slug, "name": slug, "organization": {"login": org}}))
                .collect();
            paged(&url, &q, items)
        }
        Err(r) => *r,
    }
}

async fn start_github(first: Account) -> Shared {
    let port = free_port();
    let state = Arc::new(Mutex::new(GitHub {
        url: format!("http://127.0.0.1:{port}"),
        next: first,
        codes: HashMap::new(),
        tokens: HashMap::new(),
        no_user_agent: 0,
    }));
    let app = Router::new()
        .route("/login/oauth/authorize", get(authorize))
        .route("/login/oauth/access_token", post(access_token))
        .route(
            "/api",
            get(|| async { Json(json!({"current_user_url": "/api/user"})) }),
        )
        .route("/api/user", get(user))
        .route("/api/user/orgs", get(orgs))
        .route("/api/user/teams", get(teams))
        .with_state(state.clone());
    crate::common::serve_router(port, app).await;
    state
}

/// A browser's whole login: the callback's (status, location, page).
async fn login(d: &Daemon) -> (u16, String, String) {
    let (back, browser, at_github) = crate::oidc::to_provider_and_back(d, "").await;
    assert!(
        at_github.contains("scope=read%3Auser+read%3Aorg") && at_github.contains("code_challenge="),
        "{at_github}"
    );
    crate::oidc::callback(&browser, &back).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_accounts_log_in_by_organization_and_team() {
    let octo = Account {
        login: "Octo-Cat",
        id: 583231,
        orgs: vec!["acme", "physics", "zoo"],
        // The admin team is on the second page.
        teams: vec![("acme", "builders"), ("acme", "ops"), ("physics", "tas")],
    };
    let gh = start_github(octo.clone()).await;
    let url = gh.lock().unwrap().url.clone();
    let port = free_port();
    let d = Daemon::start_on_port(
        &format!(
            "[auth]\ntype = \"github\"\n\n[auth.github]\nclient_id = \"Iv1.orrery\"\n\
             client_secret = \"github-client-secret-8080\"\n\
             redirect_url = \"http://127.0.0.1:{port}/hub/oauth_callback\"\n\
             github_url = \"{url}\"\napi_url = \"{url}/api\"\n\
             allowed_organizations = [\"physics\"]\nadmin_teams = [\"physics:tas\"]\nmanage_groups = true\n"
        ),
        port,
    )
    .await;

    let page = d
        .http
        .get(format!("{}/hub/login", d.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sign in with GitHub"), "{page}");

    // Octo-Cat (physics, and its tas team on the teams' second page): in, an admin, named
    // by the mapping rule, with every organization and team as groups.
    let (status, to, page) = login(&d).await;
    assert_eq!(
        (status, to.as_str()),
        (302, "/hub/home"),
        "{page}\n{}",
        d.log()
    );
    let (s, u, _) = d.api("GET", "/users/octo-cat", Some(ADMIN), None).await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["admin"], true, "{u}");
    let mut groups: Vec<String> = serde_json::from_value(u["groups"].clone()).unwrap();
    groups.sort();
    assert_eq!(
        groups,
        [
            "acme",
            "acme:builders",
            "acme:ops",
            "physics",
            "physics:tas",
            "zoo"
        ],
        "both pages of organizations and teams"
    );
    assert_eq!(
        gh.lock().unwrap().no_user_agent,
        0,
        "every API request named its User-Agent"
    );

    // Someone in no allowed organization: refused, no account.
    gh.lock().unwrap().next = Account {
        login: "outsider",
        id: 42,
        orgs: vec!["acme"],
        teams: vec![],
    };
    let (status, _, page) = login(&d).await;
    assert_eq!(status, 403);
    assert!(page.contains("This hub is not open to outsider"), "{page}");
    let (s, _, _) = d.api("GET", "/users/outsider", Some(ADMIN), None).await;
    assert_eq!(s, 404);

    // A different GitHub account that maps onto an existing name (octo-cat, renamed by case):
    // refused, never merged.
    gh.lock().unwrap().next = Account {
        login: "octo-cat",
        id: 999,
        orgs: vec!["physics"],
        teams: vec![],
    };
    let (status, _, page) = login(&d).await;
    assert_eq!(status, 403);
    assert!(
        page.contains("already belongs to another account"),
        "{page}"
    );

    assert!(!d.log().contains("github-client-secret-8080"));
    let (_, out, _) = d.cli(&["doctor"], None);
    assert!(out.contains(&format!("{url}/api answers")), "{out}");
}
