//! The shared page frame (head, skip link, header with navigation, main landmark, footer),
//! the response helpers every page uses (HTML, redirects, error pages, the 404 page), and the
//! security headers set on every hub page.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::{assets, forms};
use crate::config::AuthType;
use crate::hub::{Hub, Principal};
use crate::session;

/// `Content-Security-Policy` of every hub page: no inline script or style at all, only this
/// origin's stylesheet and script, no framing. (No `form-action`: browsers apply it to the
/// redirects after a form, and a login may end at an OAuth client on another origin.)
pub const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Which navigation entry a page belongs to (rendered with `aria-current="page"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    None,
    /// The login page (no navigation; its own announcement).
    Login,
    /// The spawn form and progress pages (their own announcement).
    Spawn,
    Home,
    Token,
    Password,
    Admin,
}

/// A status message shown at the top of a page.
#[derive(Debug, Clone)]
pub enum Notice {
    Info(String),
    Error(String),
    /// Something the reader should know before going on (not an error of theirs).
    Warning(String),
    /// An error with a list of the individual problems.
    Errors(String, Vec<String>),
}

impl Notice {
    pub fn render(&self) -> Markup {
        match self {
            Notice::Info(m) => html! { div.notice.info role="status" { p { (m) } } },
            Notice::Error(m) => html! {
                div.notice.error role="alert" { p { strong { "Error: " } (m) } }
            },
            Notice::Warning(m) => html! {
                div.notice.warning role="note" { p { strong { "Warning: " } (m) } }
            },
            Notice::Errors(m, list) => html! {
                div.notice.error role="alert" {
                    p { strong { "Error: " } (m) }
                    ul { @for e in list { li { (e) } } }
                }
            },
        }
    }
}

/// Render notices (none, one or several).
pub fn notices(list: &[Notice]) -> Markup {
    html! { @for n in list { (n.render()) } }
}

/// The README section that explains how to put HTTPS in front of Orrery.
pub const HTTPS_HELP: &str = "the README's \"HTTPS\" section";

/// On a plain-HTTP listener that other machines can reach, passwords and session cookies cross
/// the network unencrypted: the login page and the admin page say so, and how to fix it.
/// Loopback listeners (a developer machine, or a TLS reverse proxy on the same machine, as the
/// README recommends) get no warning.
pub fn plain_http_notice(hub: &Hub, secure: bool) -> Option<Notice> {
    let cfg = hub.config();
    if secure {
        return None;
    }
    if cfg.https.enabled {
        // The HTTP port of a hub with HTTPS: it redirects once a certificate is served.
        if hub.tls.ready() {
            return None;
        }
        let why = hub
            .tls
            .status()
            .error
            .unwrap_or_else(|| "the first certificate is being obtained".into());
        return Some(Notice::Warning(format!(
            "HTTPS is not up yet: {why}. Until it is, this page and passwords travel \
             unencrypted over plain HTTP."
        )));
    }
    if cfg.http.is_loopback() {
        return None;
    }
    Some(Notice::Warning(format!(
        "This hub is served over plain HTTP on a network address, so passwords and login \
         cookies travel unencrypted. Turn on HTTPS (https.enabled with \
         https.letsencrypt.domains), or put a TLS reverse proxy in front and listen on 127.0.0.1 \
         only (see {HTTPS_HELP})."
    )))
}

/// A whole page: `title` is both the `<title>` and the `<h1>`.
pub fn page(hub: &Hub, who: Option<&Principal>, nav: Nav, title: &str, body: Markup) -> Markup {
    page_with_head(hub, who, nav, title, html! {}, body)
}

/// A whole page with extra elements in `<head>` (scripts, refresh).
pub fn page_with_head(
    hub: &Hub,
    who: Option<&Principal>,
    nav: Nav,
    title: &str,
    head: Markup,
    body: Markup,
) -> Markup {
    let hp = hub.hub_prefix();
    let cfg = hub.config();
    let user = who.and_then(|p| p.user());
    let admin = user.is_some_and(|u| hub.is_admin(u));
    let has_passwords = hub.config().auth.kind != AuthType::Dummy;
    let csrf = who.map(session::csrf_token).unwrap_or_default();
    let current = |n: Nav| if n == nav { Some("page") } else { None };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " — " (cfg.branding.name) }
                link rel="stylesheet" href=(assets::style_url(hub));
                (head)
            }
            body {
                a.skip href="#main" { "Skip to main content" }
                header.site {
                    a.brand href=(format!("{hp}home")) {
                        @if cfg.branding.logo.is_empty() {
                            (cfg.branding.name)
                        } @else {
                            img.logo src=(format!("{hp}logo")) alt=(cfg.branding.name);
                        }
                    }
                    @if let Some(u) = user {
                        nav aria-label="Main" {
                            ul {
                                li { a href=(format!("{hp}home")) aria-current=[current(Nav::Home)] { "Home" } }
                                li { a href=(format!("{hp}token")) aria-current=[current(Nav::Token)] { "Token" } }
                                @if has_passwords {
                                    li { a href=(format!("{hp}auth/change-password")) aria-current=[current(Nav::Password)] { "Change password" } }
                                }
                                @if admin {
                                    li { a href=(format!("{hp}admin")) aria-current=[current(Nav::Admin)] { "Admin" } }
                                }
                            }
                        }
                        div.whoami {
                            span { "Signed in as " strong { (u.name) } }
                            form.inline method="post" action=(format!("{hp}logout")) {
                                (forms::xsrf_input(&csrf))
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    @if let Some(text) = announcement(&cfg.announcement, nav) {
                        aside.announcement role="note" aria-label="Announcement" { p { (text) } }
                    }
                    h1 { (title) }
                    (body)
                }
                footer.site {
                    p { "Orrery " (crate::version::version()) ", a JupyterHub-compatible hub." }
                }
            }
        }
    }
}

/// An HTML response.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// A `302 Found` to `location` (a path under this origin). An unrepresentable location (it
/// cannot happen with the paths built here) falls back to the hub's root.
pub fn redirect(location: &str) -> Response {
    let value = HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/"));
    (StatusCode::FOUND, [(header::LOCATION, value)]).into_response()
}

/// A friendly error page with a way back.
pub fn error_page(
    hub: &Hub,
    who: Option<&Principal>,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    let hp = hub.hub_prefix();
    let body = html! {
        p.lead { (message) }
        p {
            @if who.is_some() {
                a href=(format!("{hp}home")) { "Go to your home page" }
            } @else {
                a href=(format!("{hp}login")) { "Go to the login page" }
            }
        }
    };
    html_response(status, page(hub, who, Nav::None, title, body))
}

/// The 404 page for any unknown path under the hub prefix. The catch-all route this serves
/// also matches unknown API paths before the API router's own fallback could, so those get the
/// API's JSON 404 here.
pub async fn not_found(State(hub): State<Arc<Hub>>, uri: Uri, headers: HeaderMap) -> Response {
    let api = format!("{}api", hub.hub_prefix());
    let path = uri.path();
    if path == api || path.starts_with(&format!("{api}/")) {
        // The API's own 404, in JupyterHub's error shape.
        let body = serde_json::json!({"status": 404, "message": "no such API endpoint"});
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    let who = session::principal(&hub, &headers);
    not_found_page(&hub, who.as_ref())
}

pub fn not_found_page(hub: &Hub, who: Option<&Principal>) -> Response {
    error_page(
        hub,
        who,
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing at this address.",
    )
}

/// Adds the security headers of hub pages (kept if a handler set its own).
pub async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("same-origin"));
    resp
}

/// Mark a response as not to be stored anywhere (pages that show tokens).
pub fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The announcement `nav`'s page shows: its own text, else the general one; none if empty.
fn announcement(a: &crate::config::Announcement, nav: Nav) -> Option<&str> {
    let own = match nav {
        Nav::Login => &a.login,
        Nav::Home => &a.home,
        Nav::Spawn => &a.spawn,
        Nav::Admin => &a.admin,
        Nav::None | Nav::Token | Nav::Password => "",
    };
    [own, a.text.as_str()]
        .into_iter()
        .map(str::trim)
        .find(|t| !t.is_empty())
}

/// `GET <hub>/logo`: `branding.logo`, read at each request (a reload may change it).
pub async fn logo(State(hub): State<Arc<Hub>>) -> Response {
    let path = hub.config().branding.logo.clone();
    let ext = std::path::Path::new(&path)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let Some((_, mime)) = crate::config::validate::LOGO_TYPES
        .iter()
        .find(|(e, _)| *e == ext)
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("max-age=300"),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(logo = %path, error = %e, "cannot read branding.logo");
            StatusCode::NOT_FOUND.into_response()
        }
    }
}

/// A span of seconds as people read it: `1 h 5 min`, `4 min`, `12 s`.
pub fn span(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// A timestamp for people, inside a `<time>` element; "never" for None.
pub fn time(t: Option<&DateTime<Utc>>, never: &str) -> Markup {
    match t {
        Some(t) => html! {
            time datetime=(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) { (t.format("%Y-%m-%d %H:%M UTC")) }
        },
        None => html! { (never) },
    }
}
