//! The plain-HTTP port when HTTPS is on: the ACME HTTP-01 challenge path is answered here;
//! once a certificate is served, everything else is redirected to HTTPS (308, keeping method
//! and body), except the API from loopback (the local CLI). Until then the hub is served on
//! HTTP as before, with the reason HTTPS is not up.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::acme::Challenges;
use super::Certs;
use crate::config::SharedConfig;

/// What the HTTP listener needs to decide.
#[derive(Clone)]
pub struct HttpSide {
    pub config: SharedConfig,
    pub certs: Arc<Certs>,
    pub challenges: Arc<Challenges>,
}

pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

pub async fn middleware(State(side): State<HttpSide>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) {
        return match side.challenges.answer(token) {
            Some(key_auth) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/octet-stream")],
                key_auth,
            )
                .into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let cfg = side.config.get();
    if !cfg.https.enabled || !side.certs.ready() {
        return next.run(req).await;
    }
    // The local CLI talks to the API on the HTTP port (the certificate names the public host,
    // not 127.0.0.1); loopback traffic never leaves the machine.
    let local = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback());
    if local && path.starts_with(&format!("{}hub/api/", cfg.base_url)) {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name).to_string())
        .unwrap_or_else(|| "localhost".into());
    let port = match cfg.https.port {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let target = format!(
        "https://{host}{port}{}",
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    let mut resp = StatusCode::PERMANENT_REDIRECT.into_response();
    if let Ok(v) = HeaderValue::from_str(&target) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// On the TLS listener: `Strict-Transport-Security` (one year), so browsers stay on HTTPS.
pub async fn hsts(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    resp
}
