//! The in-process proxy: `<base_url>user/<name>/…` → that user's running server, and
//! `<base_url>user/<name>/<server>/…` → their named server `<server>` while it runs (as
//! JupyterHub's proxy routes by the longest prefix: a named server that runs takes its path
//! from the default server's).
//!
//! It replaces configurable-http-proxy: this route finds the user's server in the route table
//! (in memory, kept with the server records: [`crate::state::Route`]) and hands the request to
//! [`crate::forward`], which streams it through. The proxy does not authenticate:
//! the single-user server checks the user via OAuth, as behind CHP. Each request records
//! activity for the server (throttled, [`crate::activity`]). These routes sit outside the hub's
//! own middleware, so a server's responses reach the browser with their headers as sent.
//!
//! One exception with remote kernels: a kernel channels WebSocket
//! (`user/<name>/api/kernels/<id>/channels`) is answered by the gateway itself
//! ([`crate::gateway::direct`]), after the user's server has authorized the same credentials.
//!
//! With per-user origins (`http.subdomain_host`, [`crate::origins`]) a server's path is served
//! on its own host only: from the hub's host the browser is redirected there, and on another
//! server's host it is not found.
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
use crate::origins::{HostKind, Origins};
use crate::state::Route;

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
    let origins = hub.origins();
    if let Some(o) = &origins {
        if let Some(refused) = wrong_host(o, &req, &name, &server_name) {
            return refused;
        }
    }
    // The route table, not the record: no store read or JSON decode per request.
    let target = match hub.store.route(&name, &server_name) {
        Route::Ready(url) => Some(url),
        Route::Absent | Route::NotReady => None,
    };
    let Some(target) = target else {
        // Not running (or still starting): the hub's page for it offers to start or shows progress.
        // Built from the raw (still percent-encoded) path, not the decoded parameters, so
        // `x%3Fy` stays a file name and never becomes a query.
        let base = hub.config().base_url.clone();
        let path_q = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("");
        let under_base = path_q.strip_prefix(base.as_str()).unwrap_or(path_q);
        let hub_origin = origins.map(|o| o.hub_origin()).unwrap_or_default();
        let to = format!("{hub_origin}{}{under_base}", hub.hub_prefix());
        return Redirect::temporary(&to).into_response();
    };
    // A shared server: the visitor must still have access (a revoked guest is refused here,
    // whatever the server's own cache of the hub's answers says), and their sockets can be
    // closed by a revocation.
    let mut req = req;
    if hub.store.server_is_shared(&name, &server_name) || hub.visits.is_watched(&name, &server_name)
    {
        if let Err(refused) = check_visitor(&hub, &name, &server_name, &target, &mut req).await {
            return refused;
        }
    }
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

/// The credential a request to `owner`'s server carries: the server's own login cookie (named
/// after its OAuth client, `__Host-` prefixed under HTTPS), else its `Authorization` header or
/// `?token=`. Hashed: the registry never holds a credential.
fn credential_hash(req: &Request, owner: &str, server: &str) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let cookie_name = crate::spawn::client_id(owner, server);
    let headers = req.headers();
    let cookie = crate::session::cookie(headers, &cookie_name)
        .or_else(|| crate::session::cookie(headers, &format!("__Host-{cookie_name}")));
    let credential = cookie
        .map(|c| format!("cookie:{c}"))
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(|a| format!("authorization:{a}"))
        })
        .or_else(|| crate::forward::request_token(req).map(|t| format!("token:{t}")))?;
    Some(Sha256::digest(credential.as_bytes()).into())
}

/// Who the server says the request's credentials belong to: `GET <prefix>api/me` (Jupyter
/// Server's identity API) with them, asked once per credential.
async fn visitor_of(
    hub: &Hub,
    owner: &str,
    server: &str,
    target: &str,
    req: &mut Request,
    credential: [u8; 32],
) -> Option<String> {
    if let Some(v) = hub.visits.identity(&credential) {
        return Some(v);
    }
    let (headers, query) = crate::forward::replayed_credentials(req);
    let url = format!("{target}{}api/me{query}", hub.server_prefix(owner, server));
    let (status, body) = hub.forward.get_small(&url, headers).await.ok()?;
    if status != StatusCode::OK {
        return None;
    }
    let me: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let visitor = me["identity"]["username"].as_str()?.to_string();
    hub.visits.remember(credential, &visitor);
    Some(visitor)
}

/// For a shared server: refuse a visitor who may not open it (any more); register a visitor's
/// WebSocket so a revocation closes it. A request whose credentials the server does not know
/// passes: the server itself sends it to log in.
async fn check_visitor(
    hub: &Hub,
    owner: &str,
    server: &str,
    target: &str,
    req: &mut Request,
) -> Result<(), Response> {
    let Some(credential) = credential_hash(req, owner, server) else {
        return Ok(());
    };
    let Some(visitor) = visitor_of(hub, owner, server, target, req, credential).await else {
        return Ok(());
    };
    if visitor == owner {
        return Ok(());
    }
    if !hub.visitor_may_access(&visitor, owner, server) {
        tracing::info!(owner, server, visitor = %visitor, "refused a visitor without access");
        let msg = format!(
            "Forbidden: {visitor} may not open {owner}'s server (a share was revoked, or never              granted). Ask {owner} to share it again, or go to {}home",
            hub.hub_prefix()
        );
        return Err((
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            msg,
        )
            .into_response());
    }
    if is_websocket(req) {
        let reg = hub.visits.open_socket(owner, server, &visitor);
        let guard = hub.visits.guard(reg.id);
        req.extensions_mut().insert(crate::forward::Revocable {
            cancel: reg.cancel,
            on_end: Arc::new(guard),
        });
    }
    Ok(())
}

/// With per-user origins, a server's path is served on its own host only: from the hub's host
/// (or an address) the browser is sent there; on another server's host it does not exist.
fn wrong_host(o: &Origins, req: &Request, name: &str, server: &str) -> Option<Response> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if o.is_server_host(host, name, server) {
        return None;
    }
    Some(match o.classify(host) {
        HostKind::Server(_) => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "This host does not serve that server: each server is served on its own host.",
        )
            .into_response(),
        HostKind::Hub | HostKind::Other => {
            let path_q = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("");
            let to = format!("{}{path_q}", o.server_origin(name, server));
            Redirect::temporary(&to).into_response()
        }
    })
}

/// The named server `/user/<name>/<rest>` is for: the first segment of `rest`, when named
/// servers are on and `name` has a server of that name (running or starting).
fn named_server_of(hub: &Hub, name: &str, rest: &str) -> Option<String> {
    if !hub.config().spawner.named_servers.enabled {
        return None;
    }
    let first = rest.split('/').next().filter(|s| !s.is_empty())?;
    (hub.store.route(name, first) != Route::Absent).then(|| first.to_string())
}
