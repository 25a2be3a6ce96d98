//! The in-process proxy: `<base_url>user/<name>/…` → that user's running server, and
//! `<base_url>user/<name>/<server>/…` → their named server `<server>` while it runs (as
//! JupyterHub's proxy routes by the longest prefix: a named server that runs takes its path
//! from the default server's).
//!
//! It replaces configurable-http-proxy: this route finds the user's server and hands the
//! request to [`crate::forward`], which streams it through. The proxy does not authenticate:
//! the single-user server checks the user via OAuth, as behind CHP. Each request records
//! activity for the server (throttled, [`crate::activity`]). These routes sit outside the hub's
//! own middleware, so a server's responses reach the browser with their headers as sent.
//!
//! One exception with remote kernels: a kernel channels WebSocket
//! (`user/<name>/api/kernels/<id>/channels`) is answered by the gateway itself
//! ([`crate::gateway::direct`]), after the user's server has authorized the same credentials.
//!
//! A request for a server that is not running is redirected to the hub's page for it
//! (`<hub>/user/<name>/…`), which offers to start it — never to a stale address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::forward::{add_forwarded, forward, is_websocket};
use crate::hub::Hub;

/// `ANY <base_url>user/{name}` and `<base_url>user/{name}/{*rest}`.
pub async fn handle(
    State(hub): State<Arc<Hub>>,
    Path(params): Path<HashMap<String, String>>,
    req: Request,
) -> Response {
    let connect = req.extensions().get::<ConnectInfo<SocketAddr>>().cloned();
    let Some(name) = params.get("name").cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let rest = params.get("rest").map(String::as_str).unwrap_or("");
    let server_name = named_server_of(&hub, &name, rest).unwrap_or_default();
    let server = hub.store.server(&name, &server_name).ok().flatten();
    let target = match &server {
        Some(s) if s.ready && s.pending.is_none() => s.url.clone(),
        _ => None,
    };
    let Some(target) = target else {
        // Not running (or still starting): the hub's page for it offers to start or shows progress.
        // Built from the raw (still percent-encoded) path, not the decoded parameters, so
        // `x%3Fy` stays a file name and never becomes a query.
        let base = hub.config().base_url.clone();
        let path_q = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("");
        let under_base = path_q.strip_prefix(base.as_str()).unwrap_or(path_q);
        let to = format!("{}{under_base}", hub.hub_prefix());
        return Redirect::temporary(&to).into_response();
    };
    hub.activity.traffic(&name, &server_name);
    let client_ip = connect.map(|c| c.0.ip());
    // The WebSocket of a kernel the gateway runs goes to the gateway directly (binary buffers
    // survive, one hop less); the user's server still decides who may open it. Kernels the
    // gateway does not know (a server started before `kernels.remote` was turned on runs its
    // own) are proxied as usual.
    if is_websocket(&req) {
        // The path inside the server: a named server's prefix is one segment longer.
        let rest = if server_name.is_empty() {
            rest
        } else {
            rest.split_once('/').map(|(_, r)| r).unwrap_or("")
        };
        let kernel = crate::gateway::direct::channels_kernel_id(rest)
            .and_then(|kid| hub.gateway.kernel_of(&name, kid));
        if let Some(kernel) = kernel {
            let gw = hub.gateway.clone();
            let mut req = req;
            let https = crate::session::is_secure(req.headers());
            add_forwarded(req.headers_mut(), client_ip, https);
            return crate::gateway::direct::handle(gw, kernel, &name, &target, req).await;
        }
    }
    let https = crate::session::is_secure(req.headers());
    match forward(&hub.forward, req, &target, client_ip, https).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(user = %name, target = %target, error = %e, "proxy error");
            let msg = format!(
                "{name}'s server at {target} did not answer ({e}). It may have stopped; the hub will notice within a minute. Go to {}home",
                hub.hub_prefix()
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                msg,
            )
                .into_response()
        }
    }
}

/// The named server `/user/<name>/<rest>` is for: the first segment of `rest`, when named
/// servers are on and `name` has a server of that name (running or starting).
fn named_server_of(hub: &Hub, name: &str, rest: &str) -> Option<String> {
    if !hub.config().spawner.named_servers.enabled {
        return None;
    }
    let first = rest.split('/').next().filter(|s| !s.is_empty())?;
    hub.store.server(name, first).ok().flatten().map(|s| s.name)
}
