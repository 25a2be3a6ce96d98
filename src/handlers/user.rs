//! `<base_url>user/<name>/…` and `<hub>/user/<name>/…` when the hub itself answers them:
//! JupyterHub's "server not running" page with a start button for the owner (404 for anyone
//! else), the spawn-pending page while it starts, and a short note while it runs (requests to a
//! running server are the proxy's to route; this route only answers what reaches the hub).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::forms;
use super::home::{self, ServerState};
use super::layout::{self, Nav};
use crate::hub::Hub;
use crate::session::LoggedIn;
use crate::spawn;
use crate::username;

/// `GET <base_url>user/<name>[/<rest>]` and `GET <hub>/user/<name>[/<rest>]`.
pub async fn page(
    State(hub): State<Arc<Hub>>,
    LoggedIn(p): LoggedIn,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    let viewer = match forms::page_user(&hub, &p) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let name = params.get("name").map(String::as_str).unwrap_or("");
    if username::normalize(name).ok().as_deref() != Some(viewer.name.as_str()) {
        return layout::not_found_page(&hub, Some(&p));
    }
    let rest = params
        .get("rest")
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or("");
    // `<name>/<server>/…` is the named server `<server>` when the user has one of that name.
    let first = rest.split('/').next().unwrap_or("");
    let server = if hub.config().spawner.named_servers.enabled
        && !first.is_empty()
        && super::named_servers::names(&hub, &viewer)
            .iter()
            .any(|n| n == first)
    {
        first
    } else {
        ""
    };
    let prefix = spawn::server_prefix(&hub, &viewer.name, server);
    let rest = if server.is_empty() {
        rest
    } else {
        rest.split_once('/').map(|(_, r)| r).unwrap_or("")
    };
    let target = format!("{prefix}{rest}");
    let hp = hub.hub_prefix();
    let csrf = crate::session::csrf_token(&p);
    match home::server_state(&hub, &viewer.name, server) {
        ServerState::Starting => {
            layout::redirect(&home::spawn_pending_url(&hub, &viewer.name, server))
        }
        ServerState::Stopped => {
            let failure = home::last_failure(&hub, &viewer.name, server);
            let body = html! {
                p.lead {
                    "Your server" @if !server.is_empty() { " " (server) }
                    " is not running. Start it to open " code { (target) } "."
                }
                @if let Some(f) = &failure {
                    div.notice.error role="alert" { p { strong { "The last start failed: " } (f) } }
                }
                div.actions {
                    @if server.is_empty() {
                        (home::start_form(&hub, &p, Some(&target), "Start my server"))
                    } @else {
                        form.inline method="post" action=(format!("{hp}home/servers/{server}/start")) {
                            (forms::xsrf_input(&csrf))
                            button type="submit" { "Start " (server) }
                        }
                    }
                    a.button.secondary href=(format!("{hp}home")) { "Home" }
                }
            };
            // JupyterHub answers 424 (failed dependency) for a server that is not running.
            layout::html_response(
                StatusCode::FAILED_DEPENDENCY,
                layout::page(&hub, Some(&p), Nav::None, "Server not running", body),
            )
        }
        ServerState::Stopping => {
            let body = html! {
                p.lead { "Your server is stopping. Reload this page in a moment to start it again." }
                p { a href=(format!("{hp}home")) { "Home" } }
            };
            layout::html_response(
                StatusCode::SERVICE_UNAVAILABLE,
                layout::page(&hub, Some(&p), Nav::None, "Server stopping", body),
            )
        }
        // With per-user origins the server is on another host, so sending the browser there
        // cannot loop back here.
        ServerState::Running if hub.origins().is_some() => layout::redirect(&format!(
            "{}{rest}",
            hub.server_location(&viewer.name, server)
        )),
        ServerState::Running => {
            let body = html! {
                p.lead { "Your server is running at " code { (prefix) } "." }
                p { "Requests to that address are routed to your server by the hub's proxy; this page is \
                     what the hub answers when a request reaches the hub instead." }
                div.actions { a.button.secondary href=(format!("{hp}home")) { "Home" } }
            };
            layout::html_response(
                StatusCode::OK,
                layout::page(&hub, Some(&p), Nav::None, "Server running", body),
            )
        }
    }
}
