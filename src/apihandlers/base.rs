//! What every API handler shares: JSON errors in JupyterHub's shape, the token extractor,
//! scope checks, and pagination.

use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::hub::{Hub, Principal};
use crate::scopes::Target;
use crate::state::StateError;

/// An API error, rendered as `{"status": N, "message": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, m)
    }
    pub fn forbidden(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, m)
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, m)
    }
    pub fn conflict(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, m)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"status": self.status.as_u16(), "message": self.message})),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        tracing::error!(error = %e, "state error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error: the state database failed; see the hub's log",
        )
    }
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

/// The token a request carries: `Authorization: token|bearer X`, or `?token=X`.
pub fn request_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let mut parts = v.trim().splitn(2, char::is_whitespace);
        let scheme = parts.next().unwrap_or("");
        let value = parts.next().unwrap_or("").trim();
        if (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
            && !value.is_empty()
        {
            return Some(value.to_string());
        }
    }
    query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    })
}

/// The authenticated caller of an API request. Missing or bad credentials: 403, as JupyterHub.
pub struct Auth(pub Principal);

impl FromRequestParts<Arc<Hub>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        hub: &Arc<Hub>,
    ) -> Result<Self, Self::Rejection> {
        let token = request_token(&parts.headers, parts.uri.query()).ok_or_else(|| {
            ApiError::forbidden(
                "Missing or invalid credentials: send 'Authorization: token <api token>'",
            )
        })?;
        match hub.principal_for_token(&token)? {
            Some(p) => Ok(Auth(p)),
            None => Err(ApiError::forbidden("Invalid or expired token")),
        }
    }
}

impl OptionalFromRequestParts<Arc<Hub>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        hub: &Arc<Hub>,
    ) -> Result<Option<Self>, Self::Rejection> {
        match request_token(&parts.headers, parts.uri.query()) {
            None => Ok(None),
            Some(t) => Ok(hub.principal_for_token(&t)?.map(Auth)),
        }
    }
}

impl Auth {
    /// Require `scope` on a user. Without even read access the user is reported missing (404),
    /// so names can't be probed; with read access but not `scope`, 403.
    pub fn require_on_user(&self, hub: &Hub, scope: &str, user: &str) -> ApiResult<()> {
        let groups = hub.groups_of(user);
        let target = Target::user(user, &groups);
        if self.0.scopes.allows(scope, &target) {
            return Ok(());
        }
        if self.0.scopes.allows("read:users:name", &target) {
            return Err(ApiError::forbidden(format!(
                "Action is not authorized with current scopes; requires {scope}"
            )));
        }
        Err(ApiError::not_found(format!("No such user: {user}")))
    }

    /// Require an unfiltered-or-filtered hold of a scope, for endpoints without a target.
    pub fn require_any(&self, scope: &str) -> ApiResult<()> {
        if self.0.scopes.has_any(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "Action is not authorized with current scopes; requires {scope}"
            )))
        }
    }

    pub fn require_unfiltered(&self, scope: &str) -> ApiResult<()> {
        if self.0.scopes.has_unfiltered(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "Action is not authorized with current scopes; requires {scope}"
            )))
        }
    }
}

/// `offset` / `limit` query parameters.
#[derive(Debug, Deserialize, Default)]
pub struct PageParams {
    pub offset: Option<usize>,
    pub limit: Option<usize>,
}

pub const PAGE_DEFAULT: usize = 50;
pub const PAGE_MAX: usize = 200;

/// Does the client want JupyterHub's paginated envelope?
pub fn wants_pagination(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/jupyterhub-pagination+json"))
}

/// Slice `items` per `offset`/`limit` and wrap them as JupyterHub does when asked; the `next`
/// URL is absolute (clients such as the idle culler fetch it as is).
pub fn paginate(
    items: Vec<Value>,
    page: &PageParams,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Response {
    paginate_with(items, page, headers, uri, Some)
}

/// [`paginate`] for records whose models are built only for the page (`model`; `None` drops
/// an item): a list of thousands costs the models of one page.
pub fn paginate_with<T>(
    items: Vec<T>,
    page: &PageParams,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    model: impl FnMut(T) -> Option<Value>,
) -> Response {
    let total = items.len();
    let (offset, limit) = page_bounds(page, headers, total);
    let slice: Vec<Value> = items
        .into_iter()
        .skip(offset)
        .take(limit)
        .filter_map(model)
        .collect();
    page_response(slice, total, offset, limit, headers, uri)
}

/// The offset and limit a request asks for, of `total` items (without pagination and a
/// limit, JupyterHub answers everything).
pub fn page_bounds(page: &PageParams, headers: &HeaderMap, total: usize) -> (usize, usize) {
    let offset = page.offset.unwrap_or(0);
    let limit = match page.limit {
        Some(l) => l.clamp(1, PAGE_MAX),
        None if wants_pagination(headers) => PAGE_DEFAULT,
        None => PAGE_MAX.max(total),
    };
    (offset, limit)
}

/// The answer for one page (`slice`, already cut at `offset`/`limit`) of `total` items: the
/// bare list, or JupyterHub's paginated form with the absolute `next` URL.
pub fn page_response(
    slice: Vec<Value>,
    total: usize,
    offset: usize,
    limit: usize,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Response {
    if !wants_pagination(headers) {
        return Json(slice).into_response();
    }
    let next = if offset + limit < total {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let proto = headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("http");
        let mut pairs: Vec<(String, String)> = uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        pairs.retain(|(k, _)| k != "offset" && k != "limit");
        pairs.push(("offset".into(), (offset + limit).to_string()));
        pairs.push(("limit".into(), limit.to_string()));
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        json!({"offset": offset + limit, "limit": limit, "url": format!("{proto}://{host}{}?{query}", uri.path())})
    } else {
        Value::Null
    };
    Json(json!({
        "items": slice,
        "_pagination": {"offset": offset, "limit": limit, "total": total, "next": next}
    }))
    .into_response()
}

/// ISO 8601 UTC with microseconds and `Z`, as JupyterHub emits.
pub fn iso(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn iso_opt(t: &Option<chrono::DateTime<chrono::Utc>>) -> Value {
    t.as_ref()
        .map(|t| Value::String(iso(t)))
        .unwrap_or(Value::Null)
}

/// Parse a JSON body (none at all counts as `{}`), turning serde's errors into a 400 that
/// names the field: `invalid request body: scopes: expected a list of strings, found string "x"`.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let body = if body.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}".as_slice()
    } else {
        body
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let message = reword_json_error(e.inner());
        match field.as_str() {
            "." => ApiError::bad_request(format!("invalid request body: {message}")),
            _ => ApiError::bad_request(format!("invalid request body: {field}: {message}")),
        }
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request(format!("invalid request body: {}", reword_json_error(&e)))
    })?;
    Ok(value)
}

/// serde_json's message without its position, in the words API users know: `sequence` is a
/// list, `map` and `struct …` an object.
fn reword_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) if e.line() > 0 => text[..at].to_string(),
        _ => text,
    };
    let text = text
        .replace("a sequence", "a list")
        .replace("invalid type: ", "wrong type: found ")
        .replace("sequence,", "list,")
        .replace("map,", "object,");
    match text.find("expected struct ") {
        Some(at) => format!("{}expected a JSON object", &text[..at]),
        None => text,
    }
}

/// Parse an ISO 8601 timestamp from a client.
pub fn parse_time(s: &str) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc())
        })
        .map_err(|_| {
            ApiError::bad_request(format!(
                "invalid timestamp {s:?}: use ISO 8601, e.g. 2026-01-31T12:00:00.000Z"
            ))
        })
}

/// The user a path names, or 404 (also for names that could not exist).
pub fn load_user(hub: &Hub, name: &str) -> ApiResult<crate::state::UserRecord> {
    let n = crate::username::normalize(name)
        .map_err(|_| ApiError::not_found(format!("No such user: {name}")))?;
    hub.store
        .user(&n)?
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))
}
