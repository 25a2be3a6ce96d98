//! Named servers on the home page (with `spawner.named_servers.enabled`): the user's servers
//! besides the default one, each with open, start, stop and delete, and a form for a new one.
//! A named server that ran once is listed until deleted (its options are kept, as JupyterHub
//! keeps a stopped named server); deleting stops it and forgets it, never touching the home.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{html, Markup};
use serde_json::json;

use super::forms::{self, Fields};
use super::home::{self, Begun, ServerState};
use super::layout::{self};
use crate::hub::{Hub, Principal};
use crate::session;
use crate::state::UserRecord;

/// The user's named servers: running or starting ones, and stopped ones they used before.
pub fn names(hub: &Hub, user: &UserRecord) -> Vec<String> {
    let mut names: Vec<String> = user
        .server_options
        .keys()
        .filter(|n| !n.is_empty())
        .cloned()
        .collect();
    for s in hub.store.servers_of(&user.name).unwrap_or_default() {
        if !s.name.is_empty() && !names.contains(&s.name) {
            names.push(s.name);
        }
    }
    names.sort();
    names
}

/// The home page's section; empty when named servers are off.
pub fn section(hub: &Hub, p: &Principal, user: &UserRecord) -> Markup {
    let cfg = hub.config();
    if !cfg.spawner.named_servers.enabled {
        return html! {};
    }
    let hp = hub.hub_prefix();
    let csrf = session::csrf_token(p);
    let action = |server: &str, what: &str| format!("{hp}home/servers/{server}/{what}");
    let limit = cfg.spawner.named_servers.limit_per_user;
    html! {
        section aria-labelledby="named-heading" {
            h2 #named-heading { "Named servers" }
            div.panel {
                @let list = names(hub, user);
                @if list.is_empty() {
                    p { "You have no named servers." }
                } @else {
                    table.named-servers {
                        thead { tr { th { "Server" } th { "State" } th { "Actions" } } }
                        tbody {
                            @for name in &list {
                                @let state = home::server_state(hub, &user.name, name);
                                tr data-server=(name) {
                                    td { code { (name) } }
                                    td {
                                        (state.label())
                                        @if state == ServerState::Running {
                                            @if let Some(note) = home::newer_environment(hub, &user.name, name) {
                                                br; small.environment { (note) }
                                            }
                                        }
                                    }
                                    td.actions {
                                        @match state {
                                            ServerState::Running => {
                                                a.button href=(home::server_url(hub, &user.name, name)) { "Open" }
                                                form.inline method="post" action=(action(name, "stop")) {
                                                    (forms::xsrf_input(&csrf))
                                                    button.secondary type="submit" { "Stop" }
                                                }
                                            }
                                            ServerState::Starting => {
                                                a.button href=(home::spawn_pending_url(hub, &user.name, name)) { "Follow its progress" }
                                            }
                                            ServerState::Stopping => {}
                                            ServerState::Stopped => {
                                                form.inline method="post" action=(action(name, "start")) {
                                                    (forms::xsrf_input(&csrf))
                                                    button type="submit" { "Start" }
                                                }
                                            }
                                        }
                                        form.inline method="post" action=(action(name, "delete")) {
                                            (forms::xsrf_input(&csrf))
                                            button.danger type="submit" { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                form method="post" action=(format!("{hp}home/servers")) {
                    (forms::xsrf_input(&csrf))
                    div.field {
                        label for="server-name" { "New server" }
                        input #server-name type="text" name="server" required
                            pattern="[a-z0-9_][a-z0-9_-]{0,62}" placeholder="e.g. project-x";
                    }
                    button type="submit" { "Start a new server" }
                    @if limit > 0 { p.hint { "At most " (limit) " named servers at once." } }
                }
            }
        }
    }
}

/// After a start from this section: the server, or its progress.
fn after_start(hub: &Hub, user: &str, server: &str, begun: Begun) -> Response {
    match begun {
        Begun::Ready => layout::redirect(&home::server_url(hub, user, server)),
        Begun::Pending => layout::redirect(&home::spawn_pending_url(hub, user, server)),
    }
}

/// `POST <hub>/home/servers`: start a new named server (`server` field).
pub async fn create(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let (p, user) = match forms::form_user(&hub, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let server = f.get("server").trim().to_string();
    if server.is_empty() {
        return home::failed(&hub, &p, &user, "Give the new server a name.".into());
    }
    start(hub, p, user, server).await
}

async fn start(hub: Arc<Hub>, p: Principal, user: UserRecord, server: String) -> Response {
    match home::start_with(&hub, &user, &server, json!({})).await {
        Ok(b) => after_start(&hub, &user.name, &server, b),
        Err(e) => home::failed(&hub, &p, &user, e.message),
    }
}

/// `POST <hub>/home/servers/{server}/{start|stop|delete}`.
pub async fn act(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path((server, what)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let f = Fields::parse(&body);
    let (p, user) = match forms::form_user(&hub, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match what.as_str() {
        "start" => start(hub, p, user, server).await,
        "stop" | "delete" => {
            if let Err(e) = home::stop_server(&hub, &user.name, &server).await {
                return home::failed(&hub, &p, &user, e.message);
            }
            if what == "delete" {
                if let Err(e) = hub.forget_named_server(&user.name, &server) {
                    tracing::error!(error = %e, "state error while deleting a named server");
                }
            }
            layout::redirect(&format!("{}home", hub.hub_prefix()))
        }
        _ => layout::not_found_page(&hub, Some(&p)),
    }
}
