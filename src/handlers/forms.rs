//! Request plumbing shared by the pages: form and query parsing that never fails, the client
//! address, the CSRF field of logged-in forms, and the checks every POST handler runs first.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};

use super::layout;
use crate::hub::{Hub, Principal};
use crate::session;
use crate::state::UserRecord;

/// The name of the hidden CSRF field every POST form carries (JupyterHub's name).
pub const XSRF_FIELD: &str = "_xsrf";

/// Decoded `application/x-www-form-urlencoded` pairs (a form body or a query string).
/// Malformed input decodes leniently; a missing field reads as "".
#[derive(Debug, Default, Clone)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn parse(raw: &[u8]) -> Fields {
        Fields(url::form_urlencoded::parse(raw).into_owned().collect())
    }

    pub fn query(query: Option<&str>) -> Fields {
        Fields::parse(query.unwrap_or("").as_bytes())
    }

    /// The first value of `key`, or "" when absent.
    pub fn get(&self, key: &str) -> &str {
        self.opt(key).unwrap_or("")
    }

    /// The first value of `key`, if present.
    pub fn opt(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order (checkboxes sharing a name).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Is a checkbox (or any field) named `key` present with a non-empty value?
    pub fn checked(&self, key: &str) -> bool {
        self.opt(key).is_some_and(|v| !v.is_empty())
    }
}

/// The client's address when the server was started with connect info; None otherwise (tests
/// driving the router directly). Never rejects.
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    /// The peer, or what a trusted proxy appended to `X-Forwarded-For` (the header only
    /// survives from proxies in `http.trusted_proxies`: [`crate::scheme`]).
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        Ok(ClientIp(forwarded.or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        })))
    }
}

/// The hidden CSRF input of a form.
pub fn xsrf_input(token: &str) -> Markup {
    html! { input type="hidden" name=(XSRF_FIELD) value=(token); }
}

/// The user behind a logged-in page request, or the response to send instead.
#[allow(clippy::result_large_err)] // a Response, as axum's own rejections
pub fn page_user(hub: &Hub, p: &Principal) -> Result<UserRecord, Response> {
    p.user().cloned().ok_or_else(|| {
        layout::error_page(
            hub,
            None,
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Only users can use these pages.",
        )
    })
}

/// The first checks of every logged-in POST handler: a session (else back to the login page)
/// and the session's CSRF token in the `_xsrf` field (else a 403 page).
#[allow(clippy::result_large_err)] // a Response, as axum's own rejections
pub fn form_user(
    hub: &Hub,
    headers: &HeaderMap,
    fields: &Fields,
) -> Result<(Principal, UserRecord), Response> {
    let Some(p) = session::principal(hub, headers) else {
        return Err(layout::redirect(&format!("{}login", hub.hub_prefix())));
    };
    let user = page_user(hub, &p)?;
    if !session::csrf_ok(&p, fields.get(XSRF_FIELD)) {
        return Err(xsrf_failed(hub, Some(&p)));
    }
    Ok((p, user))
}

/// The 403 page for a form whose CSRF token is missing or wrong.
pub fn xsrf_failed(hub: &Hub, who: Option<&Principal>) -> Response {
    layout::error_page(
        hub,
        who,
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form's security token (_xsrf) is missing or does not match your session, so nothing \
         was changed. Go back, reload the page and try again.",
    )
}
