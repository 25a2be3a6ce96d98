//! Logging in and out: `<hub>/` (sends people to the right place), the login form and its
//! submission (double-submit `_xsrf` cookie, throttled by [`crate::auth::login`]), and logout.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::Utc;
use maud::html;

use super::forms::{self, ClientIp, Fields, XSRF_FIELD};
use super::layout::{self, Nav, Notice};
use crate::auth::{self, LoginError};
use crate::config::AuthType;
use crate::hub::Hub;
use crate::secrets;
use crate::session;

/// `GET <hub>/`: the home page when logged in, else the login page.
pub async fn root(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    let hp = hub.hub_prefix();
    match session::principal(&hub, &headers) {
        Some(_) => layout::redirect(&format!("{hp}home")),
        None => layout::redirect(&format!("{hp}login")),
    }
}

/// `GET <hub>/login?next=`: the form (or straight on when already logged in).
pub async fn form(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = Fields::query(query.as_deref());
    let next = q.opt("next").filter(|n| !n.is_empty());
    if session::principal(&hub, &headers).is_some() {
        return layout::redirect(&session::safe_next(&hub, next));
    }
    let (xsrf, new) = session::login_xsrf(&headers);
    let notice = (q.get("logged_out") == "1").then(|| Notice::Info("You have logged out.".into()));
    let secure = session::is_secure(&headers);
    render(&hub, StatusCode::OK, &xsrf, new, "", next, notice, secure)
}

/// `POST <hub>/login`: check the double-submit token, then the credentials.
pub async fn submit(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    body: Bytes,
) -> Response {
    let f = Fields::parse(&body);
    let next = f.opt("next").filter(|n| !n.is_empty());
    let username = f.get("username");
    let (xsrf, new) = session::login_xsrf(&headers);
    if new || !secrets::constant_time_eq(&xsrf, f.get(XSRF_FIELD)) {
        let msg = "The login form had expired or lacked its security token (_xsrf), so nothing was checked. \
                   Please enter your password again.";
        return render(
            &hub,
            StatusCode::FORBIDDEN,
            &xsrf,
            new,
            username,
            next,
            Some(Notice::Error(msg.into())),
            session::is_secure(&headers),
        );
    }
    match auth::login(&hub, username, f.get("password"), ip).await {
        Ok(user) => logged_in(&hub, &user.name, session::is_secure(&headers), next).await,
        Err(e) => {
            let status = match &e {
                LoginError::InvalidName(_) | LoginError::PasswordTooShort(_) => {
                    StatusCode::BAD_REQUEST
                }
                LoginError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
                LoginError::BadCredentials
                | LoginError::NotAllowed(_)
                | LoginError::IdentityConflict(_) => StatusCode::FORBIDDEN,
                LoginError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
                LoginError::Provider(_) => StatusCode::SERVICE_UNAVAILABLE,
                LoginError::Unverified(_) => StatusCode::FORBIDDEN,
            };
            let message = match &e {
                LoginError::Internal(m) => {
                    tracing::error!(error = %m, "login failed internally");
                    "The hub could not check your login; see the hub's log.".to_string()
                }
                LoginError::BadCredentials => match closed_signup_hint(&hub) {
                    // Said for wrong passwords too, so it reveals nothing about which names exist.
                    Some(hint) => format!("Invalid user name or password. {hint}"),
                    None => capitalize(&e.to_string()),
                },
                other => capitalize(&other.to_string()),
            };
            let mut resp = render(
                &hub,
                status,
                &xsrf,
                false,
                username,
                next,
                Some(Notice::Error(message)),
                session::is_secure(&headers),
            );
            if let LoginError::RateLimited(wait) = e {
                if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            resp
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => {
            f.to_uppercase().chain(c).collect::<String>() + if s.ends_with('.') { "" } else { "." }
        }
        None => String::new(),
    }
}

/// A login succeeded (with a password or at an identity provider): a new session, its
/// cookie, and on to `next`.
pub(super) async fn logged_in(hub: &Hub, name: &str, secure: bool, next: Option<&str>) -> Response {
    let cookie = match session::create(hub, name, secure).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot create a session");
            return layout::error_page(
                hub,
                None,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Login failed",
                "The hub could not record your login; see the hub's log.",
            );
        }
    };
    let _ = hub.record_activity(name, None, Utc::now());
    tracing::info!(user = %name, "logged in");
    let mut resp = layout::redirect(&session::safe_next(hub, next));
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            resp.headers_mut().append(header::SET_COOKIE, v);
            resp
        }
        Err(_) => layout::error_page(
            hub,
            None,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Login failed",
            "Bad session cookie.",
        ),
    }
}

/// On a hub where people cannot sign themselves up: what to do without an account.
fn closed_signup_hint(hub: &Hub) -> Option<&'static str> {
    let cfg = hub.config();
    match cfg.auth.kind {
        AuthType::Firstuse if cfg.auth.firstuse.create_users => None,
        AuthType::Firstuse | AuthType::Native => Some(
            "If you have no account on this hub yet, an administrator must add you first: \
             new names cannot sign themselves up here.",
        ),
        AuthType::Dummy | AuthType::Ldap | AuthType::Oidc | AuthType::Github => None,
    }
}

/// What the active authenticator means for the person at the form.
fn explanation(hub: &Hub) -> String {
    let cfg = hub.config();
    let min = cfg.auth.firstuse.min_password_length;
    match cfg.auth.kind {
        AuthType::Firstuse if cfg.auth.firstuse.create_users => format!(
            "This hub uses first-use passwords: the first password you use for a new user name \
             becomes that name's password. Choose one of at least {min} characters and remember it."
        ),
        AuthType::Firstuse => format!(
            "This hub uses first-use passwords for accounts an administrator added: the first \
             password you log in with becomes your password (at least {min} characters). \
             Anyone else needs an administrator to add them first."
        ),
        AuthType::Native => {
            "Log in with the user name and password an administrator gave you.".into()
        }
        AuthType::Dummy => match cfg.auth.dummy.password {
            Some(_) => "Test hub: log in with any user name and the shared password.".into(),
            None => "Test hub: any user name and any password are accepted.".into(),
        },
        AuthType::Oidc | AuthType::Github => {
            let admins = if cfg.auth.local_admins {
                " Admins may also log in below with the password this hub keeps for them."
            } else {
                ""
            };
            format!(
                "Log in with your account at {}.{admins}",
                provider_name(hub)
            )
        }
        AuthType::Ldap => {
            let admins = if cfg.auth.local_admins {
                " Admins may also use the password this hub keeps for them, if the directory is \
                 down."
            } else {
                ""
            };
            format!(
                "Log in with your organization's account (its directory's user name and \
                 password).{admins}"
            )
        }
    }
}

/// What the login page calls the identity provider.
fn provider_name(hub: &Hub) -> String {
    let cfg = hub.config();
    match cfg.auth.kind {
        AuthType::Github => "GitHub".into(),
        _ => cfg.auth.oidc.display_name.clone(),
    }
}

/// The provider's login: `<hub>/oauth_login`, carrying `next` along.
fn provider_link(hub: &Hub, next: Option<&str>) -> String {
    let hp = hub.hub_prefix();
    match next {
        Some(n) => format!(
            "{hp}oauth_login?next={}",
            url::form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>()
        ),
        None => format!("{hp}oauth_login"),
    }
}

/// The login page; `set_cookie` sets the `_xsrf` cookie the form's hidden field matches.
#[allow(clippy::too_many_arguments)]
fn render(
    hub: &Hub,
    status: StatusCode,
    xsrf: &str,
    set_cookie: bool,
    username: &str,
    next: Option<&str>,
    notice: Option<Notice>,
    secure: bool,
) -> Response {
    let hp = hub.hub_prefix();
    let body = html! {
        @if let Some(n) = &notice { (n.render()) }
        @if let Some(w) = layout::plain_http_notice(hub, secure) { (w.render()) }
        p.lead #auth-help { (explanation(hub)) }
        @if hub.config().auth.kind.is_redirect() {
            p.provider {
                a.button.provider #provider-login href=(provider_link(hub, next)) {
                    "Sign in with " (provider_name(hub))
                }
            }
        }
        @if !hub.config().auth.kind.is_redirect() || hub.config().auth.local_admins {
        form.stack method="post" action=(format!("{hp}login")) aria-describedby="auth-help" {
            (forms::xsrf_input(xsrf))
            @if let Some(n) = next { input type="hidden" name="next" value=(n); }
            div.field {
                label for="username" { "User name" }
                input #username type="text" name="username" value=(username) required
                    autocomplete="username" autocapitalize="none" spellcheck="false" autofocus[username.is_empty()];
            }
            div.field {
                label for="password" { "Password" }
                input #password type="password" name="password" required autocomplete="current-password"
                    autofocus[!username.is_empty()];
            }
            div { button type="submit" { "Log in" } }
        }
        }
    };
    let mut resp =
        layout::html_response(status, layout::page(hub, None, Nav::Login, "Log in", body));
    if set_cookie {
        if let Ok(v) = HeaderValue::from_str(&session::xsrf_set_cookie(hub, xsrf, secure)) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// `GET <hub>/logout`: end the session and go to the login page.
pub async fn logout_get(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    logout(&hub, &headers).await
}

/// `POST <hub>/logout`: as GET, but a logged-in form must carry its CSRF token.
pub async fn logout_post(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    if let Some(p) = session::principal(&hub, &headers) {
        if !session::csrf_ok(&p, f.get(XSRF_FIELD)) {
            return forms::xsrf_failed(&hub, Some(&p));
        }
    }
    logout(&hub, &headers).await
}

async fn logout(hub: &Hub, headers: &HeaderMap) -> Response {
    // With an OpenID provider that can end its own session, log out there too (otherwise the
    // next "Sign in" would log the same person straight back in).
    let cfg = hub.config();
    let provider = if cfg.auth.kind == AuthType::Oidc {
        hub.oidc.logout_url(&cfg.auth.oidc).await
    } else {
        None
    };
    let to = provider.unwrap_or_else(|| format!("{}login?logged_out=1", hub.hub_prefix()));
    let mut resp = layout::redirect(&to);
    match session::destroy(hub, headers).await {
        Ok(cookie) => {
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot end a session"),
    }
    resp
}
