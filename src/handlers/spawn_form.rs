//! The spawn page, `<hub>/spawn[/<user>[/<server>]]`, as JupyterHub has it (JupyterLab's hub menu
//! and "Restart server" link go there): with `[[profiles]]` it is the form where a user picks a
//! profile (plain HTML, radio buttons, no JavaScript needed); without, visiting it starts the
//! server, as JupyterHub does for a spawner without an options form. A running server is
//! simply opened; one starting shows its progress.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use serde_json::json;

use super::forms::{self, Fields};
use super::home::{self, Begun, ServerState};
use super::layout::{self, Nav};
use crate::hub::{Hub, Principal};
use crate::session::{self, LoggedIn};
use crate::state::UserRecord;

/// Whose server a spawn URL means: the path's user (an admin may name anyone else) and server.
#[allow(clippy::result_large_err)] // a Response, as axum's own rejections
fn target(
    hub: &Hub,
    p: &Principal,
    me: &UserRecord,
    path: &[String],
) -> Result<(UserRecord, String), Response> {
    let (name, server) = match path {
        [] => (me.name.clone(), String::new()),
        [user] => (user.clone(), String::new()),
        [user, server, ..] => (user.clone(), server.clone()),
    };
    if !server.is_empty() {
        return Err(layout::error_page(
            hub,
            Some(p),
            StatusCode::BAD_REQUEST,
            "No named servers",
            "Named servers are not enabled on this hub: use your default server.",
        ));
    }
    match super::spawn::visible_owner(hub, me, &name) {
        Some(u) => Ok((u, server)),
        None => Err(layout::error_page(
            hub,
            Some(p),
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such user, or you may not start their server.",
        )),
    }
}

fn path_parts(path: Option<Path<Vec<(String, String)>>>) -> Vec<String> {
    path.map(|Path(pairs)| pairs.into_iter().map(|(_, v)| v).collect())
        .unwrap_or_default()
}

/// Where to send someone once a start has begun (or ended).
fn after_start(hub: &Hub, user: &str, begun: Begun) -> Response {
    match begun {
        Begun::Ready => layout::redirect(&home::server_url(hub, user, "")),
        Begun::Pending => layout::redirect(&home::spawn_pending_url(hub, user, "")),
    }
}

/// `GET <hub>/spawn[/<user>[/<server>]]`.
pub async fn page(
    State(hub): State<Arc<Hub>>,
    LoggedIn(p): LoggedIn,
    path: Option<Path<Vec<(String, String)>>>,
) -> Response {
    let me = match forms::page_user(&hub, &p) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (user, _server) = match target(&hub, &p, &me, &path_parts(path)) {
        Ok(t) => t,
        Err(r) => return r,
    };
    match home::server_state(&hub, &user.name, "") {
        ServerState::Running => return layout::redirect(&home::server_url(&hub, &user.name, "")),
        ServerState::Starting => {
            return layout::redirect(&home::spawn_pending_url(&hub, &user.name, ""))
        }
        ServerState::Stopping | ServerState::Stopped => {}
    }
    let cfg = hub.config();
    if cfg.profiles.is_empty() {
        return match home::start_server(&hub, &user).await {
            Ok(b) => after_start(&hub, &user.name, b),
            Err(e) => layout::error_page(&hub, Some(&p), e.status, "Cannot start", &e.message),
        };
    }
    form(&hub, &p, &user, StatusCode::OK, None)
}

/// The form: one radio button per profile the user may choose.
fn form(
    hub: &Hub,
    p: &Principal,
    user: &UserRecord,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let cfg = hub.config();
    let groups = hub.groups_of(&user.name);
    let open = crate::profiles::open_profiles(&cfg, &user.name, &groups);
    // Preselected: the last start's profile if still open, else the default one.
    let last = user
        .server_options
        .get("")
        .and_then(|o| o.get("profile"))
        .and_then(|v| v.as_str());
    let selected =
        crate::profiles::choose(&cfg, &user.name, &groups, last.map(|l| json!(l)).as_ref())
            .or_else(|_| crate::profiles::choose(&cfg, &user.name, &groups, None))
            .ok()
            .flatten()
            .map(|p| p.name.clone());
    let action = format!("{}spawn/{}", hub.hub_prefix(), user.name);
    let body = html! {
        @if let Some(e) = error {
            div.notice.error role="alert" { p { (e) } }
        }
        @if open.is_empty() {
            div.notice.error role="alert" {
                p { (crate::profiles::ProfileError::NoneOpen.to_string()) }
            }
        } @else {
            form method="post" action=(action) {
                (forms::xsrf_input(&session::csrf_token(p)))
                fieldset {
                    legend { "Server options" }
                    @for prof in &open {
                        @let id = format!("profile-{}", prof.name);
                        div.profile {
                            input type="radio" name="profile" id=(id) value=(prof.name)
                                checked[selected.as_deref() == Some(prof.name.as_str())];
                            label for=(id) {
                                strong { (prof.label()) }
                                @if !prof.description.is_empty() { " — " (prof.description) }
                            }
                            @let (memory, cpu) = crate::profiles::limits(&cfg, &groups, Some(prof));
                            p.hint {
                                @if !prof.image.is_empty() { "image " code { (prof.image) } " " }
                                @if let Some(m) = memory { (format!("memory {} MiB ", m / (1024 * 1024))) }
                                @if let Some(c) = cpu { (format!("cpu {c} ")) }
                            }
                        }
                    }
                }
                button type="submit" { "Start" }
            }
        }
    };
    layout::html_response(
        status,
        layout::page(
            hub,
            Some(p),
            Nav::Spawn,
            &format!("Start {}'s server", user.name),
            body,
        ),
    )
}

/// `POST <hub>/spawn[/<user>[/<server>]]`: start with the chosen profile.
pub async fn submit(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    path: Option<Path<Vec<(String, String)>>>,
    body: Bytes,
) -> Response {
    let f = Fields::parse(&body);
    let (p, me) = match forms::form_user(&hub, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (user, _server) = match target(&hub, &p, &me, &path_parts(path)) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let options = match f.opt("profile").filter(|v| !v.is_empty()) {
        Some(profile) => json!({ "profile": profile }),
        None => json!({}),
    };
    match home::start_with(&hub, &user, "", options).await {
        Ok(b) => after_start(&hub, &user.name, b),
        Err(e) => form(&hub, &p, &user, e.status, Some(&e.message)),
    }
}
