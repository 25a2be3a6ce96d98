//! The HTTP application: the API, the pages, health and metrics under `base_url` (with the
//! hub's headers, `X-JupyterHub-Version` among them, and API latency recorded), and the proxy
//! routes to users' servers, outside that middleware.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use axum::Router;
use chrono::Utc;

use crate::apihandlers::base::{ApiError, Auth};
use crate::apihandlers::{self, JUPYTERHUB_API_VERSION};
use crate::handlers;
use crate::hub::Hub;
use crate::metrics::Gauges;
use crate::origins::HostKind;
use crate::proxy;

pub fn router(hub: Arc<Hub>) -> Router {
    let base = hub.config().base_url.clone();
    let hub_prefix = format!("{base}hub");
    let mut own = Router::new()
        // Clients call `<api>/` for the version; a nested "/" route only matches without the slash.
        .route(
            &format!("{hub_prefix}/api/"),
            get(apihandlers::root::version),
        )
        .nest(&format!("{hub_prefix}/api"), apihandlers::router())
        .route(&format!("{hub_prefix}/health"), get(health))
        .route(&format!("{hub_prefix}/metrics"), get(metrics))
        .merge(handlers::router(&hub_prefix));
    let root_target = format!("{hub_prefix}/");
    own = own.route(
        &base,
        get(move || async move { Redirect::to(&root_target) }),
    );
    if base != "/" {
        let t = format!("{hub_prefix}/");
        own = own.route(
            base.trim_end_matches('/'),
            get(move || async move { Redirect::to(&t) }),
        );
    }
    // The hub's own responses get its headers and count in its metrics; users' servers'
    // responses (the proxy routes, merged after the layer) pass through as their servers sent
    // them.
    let own = own
        .layer(middleware::from_fn_with_state(hub.clone(), common_headers))
        .layer(middleware::from_fn_with_state(hub.clone(), hub_host_only));
    let proxied = Router::new()
        .route(&format!("{base}user/{{name}}"), any(proxy::handle))
        .route(&format!("{base}user/{{name}}/"), any(proxy::handle))
        .route(
            &format!("{base}user/{{name}}/{{*rest}}"),
            any(proxy::handle),
        );
    own.merge(proxied).with_state(hub)
}

/// With per-user origins, the hub answers on its own host only: a user's server cannot have
/// the hub's pages (its login form, `/hub/token`) or API on its origin. And a page form posted
/// from a server's origin is refused, whatever cookies came with it (a server's JavaScript can
/// set cookies for the parent domain, so cookies alone would not show where a form came from).
async fn hub_host_only(State(hub): State<Arc<Hub>>, req: Request, next: Next) -> Response {
    let Some(o) = hub.origins() else {
        return next.run(req).await;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if let HostKind::Server(_) = o.classify(host) {
        let msg = format!(
            "Not found: this host serves a user's server. The hub is at {}{}",
            o.hub_origin(),
            hub.hub_prefix()
        );
        return (StatusCode::NOT_FOUND, msg).into_response();
    }
    let unsafe_method = !matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS");
    let api = format!("{}api", hub.hub_prefix());
    if unsafe_method && !req.uri().path().starts_with(&api) {
        let from_server = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once("://").map(|(_, h)| h))
            .is_some_and(|h| matches!(o.classify(Some(h)), HostKind::Server(_)));
        if from_server {
            return (
                StatusCode::FORBIDDEN,
                "Forbidden: a form on a user's server cannot post to the hub.",
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// The hub's own headers on its pages and API responses (never on proxied ones), and the API's
/// latency metric.
async fn common_headers(State(hub): State<Arc<Hub>>, req: Request, next: Next) -> Response {
    let api = format!("{}api", hub.hub_prefix());
    let is_api = req.uri().path().starts_with(&api);
    let method = req.method().as_str().to_string();
    let began = Instant::now();
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        "x-jupyterhub-version",
        HeaderValue::from_static(JUPYTERHUB_API_VERSION),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if is_api {
        hub.metrics
            .api_request(&method, resp.status().as_u16(), began.elapsed());
    }
    resp
}

/// Every GPU unit NVML reports, and whether a kernel holds it (none without NVML).
async fn gpu_gauges(hub: &Hub) -> Vec<crate::metrics::GpuGauge> {
    let Ok(inventory) = crate::gpu::probe_off_thread(hub.config().gpu.clone()).await else {
        return Vec::new();
    };
    let mut leased: std::collections::HashMap<String, u32> = Default::default();
    for l in hub.store.leases().unwrap_or_default() {
        *leased.entry(l.unit).or_default() += 1;
    }
    inventory
        .units
        .into_iter()
        .map(|u| crate::metrics::GpuGauge {
            leased: leased.get(&u.uuid).copied().unwrap_or(0),
            unit: u.uuid,
            utilization: u.utilization,
            memory_used: u.memory_used,
            memory_total: u.memory_total,
        })
        .collect()
}

async fn health() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Prometheus metrics; like JupyterHub, they need a token with `read:metrics`.
async fn metrics(State(hub): State<Arc<Hub>>, auth: Option<Auth>) -> Response {
    if !auth.is_some_and(|a| a.0.scopes.has_unfiltered("read:metrics")) {
        return ApiError::forbidden("metrics need a token with the read:metrics scope")
            .into_response();
    }
    let now = Utc::now();
    // Counts from the store's kept count and activity index: a scrape costs the active users'
    // keys and the server records (servers that run or start), not every user.
    let servers = hub.store.servers().unwrap_or_default();
    let gauges = Gauges {
        users: hub.store.user_count(),
        active_users: hub
            .store
            .count_active_since(now - chrono::Duration::hours(24))
            .unwrap_or(0),
        running_servers: servers.iter().filter(|s| s.ready).count(),
        pending_spawns: hub.spawns.in_flight(),
        kernels: hub.gateway.counts(),
        gpus: gpu_gauges(&hub).await,
        gpu_groups: hub.gateway.gpu_group_gauges(),
    };
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        hub.metrics.render(&gauges),
    )
        .into_response()
}
