//! The browser's kernel WebSocket, answered by the gateway itself.
//!
//! With remote kernels, a kernel's channels WebSocket would otherwise go browser → proxy →
//! the user's Jupyter Server → gateway. Jupyter Server 2.x cannot relay messages with binary
//! buffers on that last hop (it sends the browser's binary frames to the gateway as *text*
//! frames and decodes the gateway's frames as UTF-8, see [`crate::kernels::ws`]), so widgets
//! with binary state break, and every message pays a second hop. Orrery is both the proxy and
//! the gateway, so the proxy hands `<base_url>user/<name>/api/kernels/<id>/channels` upgrades to
//! this module, which bridges them to the kernel like [`super::channels`] does.
//!
//! Who may connect is still decided by the user's server, exactly as if it had answered the
//! upgrade: the browser's credentials (cookies, `Authorization`, `?token=`) are replayed on
//! `GET …/api/kernels/<id>` to that server, which checks them through the hub's OAuth (and,
//! in gateway mode, asks the gateway, with its owner's gateway token, for that kernel). Only a
//! `200` lets the socket through, and only to a kernel that `<name>` owns. Like Jupyter
//! Server's `check_origin`, a browser `Origin` that is not the request's `Host` is refused, so
//! another site cannot open a user's kernel with their cookies.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::manager::Kernel;
use super::{channels, Gateway, GatewayError};

/// The kernel id of `rest` (the path under `user/<name>/`) when it is a kernel channels
/// WebSocket path: `api/kernels/<id>/channels`.
pub fn channels_kernel_id(rest: &str) -> Option<&str> {
    let id = rest
        .strip_prefix("api/kernels/")?
        .strip_suffix("/channels")?;
    let valid = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid.then_some(id)
}

/// Whether a browser's `Origin` may open a socket on `Host` (Jupyter Server's default rule:
/// no `Origin` means a script, not a browser page, and is allowed).
pub fn origin_allowed(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let netloc = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("");
    netloc.eq_ignore_ascii_case(host)
}

/// Answer the browser's upgrade for `kernel` of user `name`; `server` is the running server's
/// address (`http://host:port`) that authorizes it.
pub async fn handle(
    gw: Arc<Gateway>,
    kernel: Arc<Kernel>,
    name: &str,
    server: &str,
    req: Request,
) -> Response {
    let kernel_id = kernel.id.clone();
    if !origin_allowed(req.headers()) {
        tracing::warn!(user = %name, kernel = %kernel_id, "cross-origin kernel WebSocket refused");
        return GatewayError::CrossOrigin.into_response();
    }
    let path = req.uri().path();
    let check_path = path.strip_suffix("/channels").unwrap_or(path);
    let (headers, query) = crate::forward::replayed_credentials(&req);
    let url = format!("{server}{check_path}{query}");
    match gw.services.forward.status_of_get(&url, headers).await {
        Ok(StatusCode::OK) => channels::accept(gw, kernel, req),
        Ok(status) => {
            tracing::info!(user = %name, kernel = %kernel_id, %status, "kernel WebSocket not authorized by the user's server");
            GatewayError::NotAuthorized {
                user: name.to_string(),
                status,
            }
            .into_response()
        }
        Err(e) => GatewayError::ServerUnreachable {
            user: name.to_string(),
            cause: e.to_string(),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_channels_paths_with_plain_ids_are_taken() {
        let id = "0f8c3f6e-3a3c-4f5e-9d55-0a1b2c3d4e5f";
        assert_eq!(
            channels_kernel_id(&format!("api/kernels/{id}/channels")),
            Some(id)
        );
        assert_eq!(channels_kernel_id(&format!("api/kernels/{id}")), None);
        assert_eq!(channels_kernel_id("api/kernels//channels"), None);
        assert_eq!(channels_kernel_id("api/kernels/../x/channels"), None);
        assert_eq!(channels_kernel_id("api/kernels/a/b/channels"), None);
        assert_eq!(channels_kernel_id("lab/api/kernels/a/channels"), None);
    }

    fn headers(origin: Option<&str>, host: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        if let Some(host) = host {
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        h
    }

    #[test]
    fn origin_must_match_host() {
        assert!(origin_allowed(&headers(
            Some("http://hub.example:8000"),
            Some("hub.example:8000")
        )));
        assert!(origin_allowed(&headers(
            Some("https://HUB.example"),
            Some("hub.example")
        )));
        assert!(!origin_allowed(&headers(
            Some("https://evil.example"),
            Some("hub.example")
        )));
        assert!(!origin_allowed(&headers(
            Some("http://hub.example:9999"),
            Some("hub.example:8000")
        )));
        assert!(!origin_allowed(&headers(Some("null"), Some("hub.example"))));
        assert!(origin_allowed(&headers(None, Some("hub.example"))));
    }
}
