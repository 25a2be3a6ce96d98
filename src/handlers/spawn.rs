//! The spawn-pending page (`<hub>/spawn-pending/<name>`): a progress bar and the spawn's
//! messages while a server starts. Without JavaScript it refreshes itself every two seconds;
//! with it, `spawn.js` follows the cookie-authenticated event stream at
//! `<hub>/spawn-pending/<name>/progress` and opens the server as soon as it is ready.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::assets;
use super::forms;
use super::home::{self, ServerState};
use super::layout::{self, Nav};
use crate::hub::Hub;
use crate::progress::ProgressEvent;
use crate::session::{self, LoggedIn};
use crate::state::UserRecord;
use crate::username;

/// The user whose spawn `viewer` asks about, if the viewer may see it (themself or an admin).
pub(super) fn visible_owner(hub: &Hub, viewer: &UserRecord, name: &str) -> Option<UserRecord> {
    let name = username::normalize(name).ok()?;
    if name != viewer.name && !hub.is_admin(viewer) {
        return None;
    }
    hub.store.user(&name).ok().flatten()
}

/// The user and server of a `spawn-pending/<name>[/<server>]` path.
fn name_and_server(params: Vec<(String, String)>) -> (String, String) {
    let mut values = params.into_iter().map(|(_, v)| v);
    let name = values.next().unwrap_or_default();
    (name, values.next().unwrap_or_default())
}

/// `GET <hub>/spawn-pending/<name>[/<server>]`.
pub async fn page(
    State(hub): State<Arc<Hub>>,
    LoggedIn(p): LoggedIn,
    Path(params): Path<Vec<(String, String)>>,
    RawQuery(query): RawQuery,
) -> Response {
    let (name, server) = name_and_server(params);
    let viewer = match forms::page_user(&hub, &p) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Some(owner) = visible_owner(&hub, &viewer, &name) else {
        return layout::not_found_page(&hub, Some(&p));
    };
    let own = owner.name == viewer.name;
    let state = home::server_state(&hub, &owner.name, &server);
    // `next`: where to go once it runs (a course link's path), if it is in that server.
    let next = super::forms::Fields::query(query.as_deref())
        .get("next")
        .to_string();
    let url = if next.is_empty() {
        home::server_url(&hub, &owner.name, &server)
    } else {
        home::ready_target(&hub, &owner.name, &server, &next)
    };
    if state == ServerState::Running && own {
        return layout::redirect(&url);
    }
    let events: Vec<ProgressEvent> = hub
        .spawns
        .subscribe(&owner.name, &server)
        .map(|rx| rx.borrow().clone())
        .unwrap_or_default();
    let failed = state == ServerState::Stopped && events.last().is_some_and(|e| e.failed);
    let failure = if failed {
        events.last().map(|e| e.message.clone())
    } else {
        None
    };
    let pct = events.last().map(|e| e.progress).unwrap_or(0).min(100);
    let in_progress = matches!(state, ServerState::Starting | ServerState::Stopping);
    let whose = match (own, server.is_empty()) {
        (true, true) => "Your server".to_string(),
        (true, false) => format!("Your server {server}"),
        (false, true) => format!("{}'s server", owner.name),
        (false, false) => format!("{}'s server {server}", owner.name),
    };
    let progress_url = format!(
        "{}/progress",
        home::spawn_pending_url(&hub, &owner.name, &server)
    );
    // The start forms here start the default server; a named one is started from home.
    let own = own && server.is_empty();
    let hp = hub.hub_prefix();

    let head = if state == ServerState::Starting {
        html! {
            noscript { meta http-equiv="refresh" content="2"; }
            script src=(assets::spawn_js_url(&hub)) defer {}
        }
    } else if in_progress {
        html! { meta http-equiv="refresh" content="2"; }
    } else {
        html! {}
    };
    let retry = html! {
        div.actions {
            @if own {
                (home::start_form(&hub, &p, None, "Try again"))
            }
            a.button.secondary href=(format!("{hp}home")) { "Back to home" }
        }
    };
    let body = html! {
        div #spawn-progress data-progress-url=(progress_url) data-ready-url=(url) {
            p #progress-status role="status" {
                @match state {
                    ServerState::Starting => { (whose) " is starting. This page follows its progress and opens it when it is ready." }
                    ServerState::Stopping => { (whose) " is stopping." }
                    ServerState::Running => { (whose) " is running at " a href=(url) { code { (url) } } "." }
                    ServerState::Stopped if failed => { (whose) " failed to start." }
                    ServerState::Stopped => { (whose) " is not running." }
                }
            }
            @if in_progress || failed {
                div.field {
                    label for="progress-bar" { "Progress" }
                    progress #progress-bar max="100" value=(pct) { (pct) "%" }
                }
            }
            @if let Some(msg) = &failure {
                div.notice.error role="alert" { p { strong { "Error: " } (msg) } }
                (retry)
            } @else if state == ServerState::Stopped {
                div.actions {
                    @if own { (home::start_form(&hub, &p, None, "Start my server")) }
                    a.button.secondary href=(format!("{hp}home")) { "Back to home" }
                }
            } @else if state == ServerState::Starting {
                div #spawn-failed hidden {
                    div.notice.error role="alert" { p { strong { "Error: " } span #spawn-failed-message {} } }
                    (retry)
                }
            }
            @if !events.is_empty() {
                h2 #log-heading { "Messages" }
                ol #progress-log.log role="log" aria-labelledby="log-heading" {
                    @for e in &events { li { (e.message) } }
                }
            } @else if state == ServerState::Starting {
                h2 #log-heading { "Messages" }
                ol #progress-log.log role="log" aria-labelledby="log-heading" {}
            }
        }
    };
    let title = match (own, state) {
        (true, ServerState::Starting) => "Starting your server".to_string(),
        (true, _) => "Your server".to_string(),
        (false, _) => format!("Server of {}", owner.name),
    };
    layout::html_response(
        StatusCode::OK,
        layout::page_with_head(&hub, Some(&p), Nav::Spawn, &title, head, body),
    )
}

/// `GET <hub>/spawn-pending/<name>/progress`: the spawn's server-sent events for the page's
/// script, authenticated by the login cookie (the API's stream needs a token).
pub async fn progress(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(params): Path<Vec<(String, String)>>,
) -> Response {
    let (name, server) = name_and_server(params);
    let Some(p) = session::principal(&hub, &headers) else {
        return (StatusCode::FORBIDDEN, "not logged in").into_response();
    };
    let Some(viewer) = p.user() else {
        return (StatusCode::FORBIDDEN, "not a user").into_response();
    };
    let Some(owner) = visible_owner(&hub, viewer, &name) else {
        return (StatusCode::NOT_FOUND, "no such user").into_response();
    };
    crate::spawn::progress_stream(&hub, &owner.name, &server).into_response()
}
