//! The two static files of the pages, embedded in the binary: the stylesheet and the
//! spawn-pending page's progress script. URLs carry a hash of the content, so the files are
//! served with a one-year immutable cache header and a new release is fetched anew.

use std::sync::{Arc, LazyLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::hub::Hub;
use crate::secrets;

pub const STYLE: &str = include_str!("static/style.css");
pub const SPAWN_JS: &str = include_str!("static/spawn.js");

static STYLE_VERSION: LazyLock<String> =
    LazyLock::new(|| secrets::hash_token(STYLE)[..12].to_string());
static SPAWN_JS_VERSION: LazyLock<String> =
    LazyLock::new(|| secrets::hash_token(SPAWN_JS)[..12].to_string());

const CACHE_LONG: &str = "public, max-age=31536000, immutable";

/// `<hub>/static/style.css?v=<hash>`.
pub fn style_url(hub: &Hub) -> String {
    format!("{}static/style.css?v={}", hub.hub_prefix(), *STYLE_VERSION)
}

/// `<hub>/static/spawn.js?v=<hash>`.
pub fn spawn_js_url(hub: &Hub) -> String {
    format!(
        "{}static/spawn.js?v={}",
        hub.hub_prefix(),
        *SPAWN_JS_VERSION
    )
}

pub async fn style(State(_hub): State<Arc<Hub>>) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE_LONG),
        ],
        STYLE,
    )
        .into_response()
}

pub async fn spawn_js(State(_hub): State<Arc<Hub>>) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE_LONG),
        ],
        SPAWN_JS,
    )
        .into_response()
}
