//! The home page (`<hub>/home`): the user's server (state, open, start, stop) and links to the
//! other pages. Also the start/stop helpers the admin and user pages share.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde_json::json;

use super::forms::{self, Fields};
use super::layout::{self, Nav, Notice};
use crate::config::AuthType;
use crate::hub::{Hub, Principal};
use crate::session::{self, LoggedIn};
use crate::spawn::{self, StartError, StartOutcome, StopError};
use crate::state::UserRecord;

/// What the hub believes about a user's default server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Stopped,
    Starting,
    Stopping,
    Running,
}

impl ServerState {
    pub fn label(self) -> &'static str {
        match self {
            ServerState::Stopped => "not running",
            ServerState::Starting => "starting",
            ServerState::Stopping => "stopping",
            ServerState::Running => "running",
        }
    }
}

pub fn server_state(hub: &Hub, user: &str, server: &str) -> ServerState {
    match hub.store.server(user, server).ok().flatten() {
        None => ServerState::Stopped,
        Some(s) => match s.pending.as_deref() {
            Some("spawn") => ServerState::Starting,
            Some(_) => ServerState::Stopping,
            None if s.ready => ServerState::Running,
            None => ServerState::Starting,
        },
    }
}

/// Where a user lands on their server: `<base_url>user/<name>/[<server>/]` plus the default
/// app (`lab`).
pub fn server_url(hub: &Hub, user: &str, server: &str) -> String {
    let app = hub
        .config()
        .user_environment
        .default_app
        .default_url()
        .trim_start_matches('/')
        .to_string();
    format!("{}{app}", hub.server_location(user, server))
}

/// Where a browser goes once `user`'s server `server` runs, asked to go to `next` (a path in
/// that server, from a course link or a spawn): there if it is one (on the server's own origin
/// with per-user origins), else the server's default URL.
pub fn ready_target(hub: &Hub, user: &str, server: &str, next: &str) -> String {
    let prefix = hub.server_prefix(user, server);
    let safe = next.starts_with(&prefix) && !next.contains('\\') && !next.contains("//");
    if !safe {
        return server_url(hub, user, server);
    }
    match hub.origins() {
        Some(o) => format!("{}{next}", o.server_origin(user, server)),
        None => next.to_string(),
    }
}

pub fn spawn_pending_url(hub: &Hub, user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("{}spawn-pending/{user}", hub.hub_prefix())
    } else {
        format!("{}spawn-pending/{user}/{server}", hub.hub_prefix())
    }
}

/// The message of the last spawn if it failed (kept by the progress stream), while no server runs.
pub fn last_failure(hub: &Hub, user: &str, server: &str) -> Option<String> {
    if hub.store.server(user, server).ok().flatten().is_some() {
        return None;
    }
    let rx = hub.spawns.subscribe(user, server)?;
    let events = rx.borrow();
    events
        .last()
        .filter(|e| e.failed)
        .map(|e| e.message.clone())
}

/// How a start request from a page ended.
pub enum Begun {
    Ready,
    Pending,
}

/// A start or stop that could not be done, with the page status to answer.
pub struct ActionError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ActionError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ActionError {
        ActionError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// Start `user`'s default server (waiting at most `slow_spawn_timeout`) with the options of
/// its last start.
pub async fn start_server(hub: &Arc<Hub>, user: &UserRecord) -> Result<Begun, ActionError> {
    start_with(hub, user, "", json!({})).await
}

/// Start `user`'s server `server` ("" for the default one) with `options` (the spawn form's
/// choice; `{}` reuses the last start's).
pub async fn start_with(
    hub: &Arc<Hub>,
    user: &UserRecord,
    server: &str,
    options: serde_json::Value,
) -> Result<Begun, ActionError> {
    match spawn::start(hub, user, server, options, None).await {
        Ok(StartOutcome::Ready) | Err(StartError::AlreadyRunning(_)) => Ok(Begun::Ready),
        Ok(StartOutcome::Pending) => Ok(Begun::Pending),
        Err(StartError::Pending(_, kind)) if kind == "spawn" => Ok(Begun::Pending),
        Err(e @ StartError::Pending(..)) => {
            Err(ActionError::new(StatusCode::CONFLICT, e.to_string()))
        }
        Err(StartError::TooMany) => Err(ActionError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: StartError::TooMany.to_string(),
            retry_after: Some(5),
        }),
        Err(StartError::NotAvailable(m)) => Err(ActionError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Servers cannot be started on this hub right now: {m}"),
        )),
        Err(StartError::NoGpu(m)) => Err(ActionError::new(
            StatusCode::CONFLICT,
            format!("The server needs a GPU: {m}."),
        )),
        Err(StartError::Refused(m)) => Err(ActionError::new(StatusCode::FORBIDDEN, m)),
        Err(StartError::Failed(m)) => Err(ActionError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("The server failed to start: {m}"),
        )),
        Err(
            e @ (StartError::NamedServers
            | StartError::BadOptions(_)
            | StartError::TooManyNamed(..)),
        ) => Err(ActionError::new(StatusCode::BAD_REQUEST, e.to_string())),
        Err(StartError::State(e)) => {
            tracing::error!(error = %e, "state error while starting a server");
            Err(ActionError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The hub's state database failed; see the hub's log.",
            ))
        }
    }
}

/// Stop `user`'s server `server` ("" for the default one); stopping one that is not running
/// is not an error.
pub async fn stop_server(hub: &Hub, user: &str, server: &str) -> Result<(), ActionError> {
    if server_state(hub, user, server) == ServerState::Starting {
        return Err(ActionError::new(
            StatusCode::CONFLICT,
            format!("{user}'s server is still starting; stop it once the start has finished."),
        ));
    }
    match spawn::stop(hub, user, server).await {
        Ok(()) | Err(StopError::NotRunning(_)) => Ok(()),
        Err(StopError::Backend(m)) => Err(ActionError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("The backend reported an error while stopping the server (it is forgotten anyway): {m}"),
        )),
        Err(StopError::State(e)) => {
            tracing::error!(error = %e, "state error while stopping a server");
            Err(ActionError::new(StatusCode::INTERNAL_SERVER_ERROR, "The hub's state database failed; see the hub's log."))
        }
    }
}

/// How many profiles `user` may choose between (the home page offers the spawn form from two).
fn choices(hub: &Hub, user: &UserRecord) -> usize {
    let cfg = hub.config();
    crate::profiles::open_profiles(&cfg, &user.name, &hub.groups_of(&user.name)).len()
}

/// The start button of a user's own server (optionally going to `next` once ready).
pub fn start_form(hub: &Hub, who: &Principal, next: Option<&str>, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(format!("{}home/start", hub.hub_prefix())) {
            (forms::xsrf_input(&session::csrf_token(who)))
            @if let Some(n) = next { input type="hidden" name="next" value=(n); }
            button type="submit" { (label) }
        }
    }
}

/// `GET <hub>/home`.
pub async fn page(
    State(hub): State<Arc<Hub>>,
    LoggedIn(p): LoggedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let user = match forms::page_user(&hub, &p) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let q = Fields::query(query.as_deref());
    let mut notices = Vec::new();
    match q.get("msg") {
        "stopped" => notices.push(Notice::Info("Your server has been stopped.".into())),
        "shared" => notices.push(Notice::Info("Your server is shared.".into())),
        "revoked" => notices.push(Notice::Info(
            "The share is revoked: its open connections were closed.".into(),
        )),
        _ => {}
    }
    render(&hub, &p, &user, StatusCode::OK, notices)
}

fn render(
    hub: &Hub,
    p: &Principal,
    user: &UserRecord,
    status: StatusCode,
    notices: Vec<Notice>,
) -> Response {
    let hp = hub.hub_prefix();
    let state = server_state(hub, &user.name, "");
    let url = server_url(hub, &user.name, "");
    let prefix = spawn::server_prefix(hub, &user.name, "");
    let csrf = session::csrf_token(p);
    // A start that just failed is already reported by a notice.
    let failure = if notices.is_empty() {
        last_failure(hub, &user.name, "")
    } else {
        None
    };
    let body = html! {
        (layout::notices(&notices))
        section aria-labelledby="server-heading" {
            h2 #server-heading { "My server" }
            div.panel {
                @match state {
                    ServerState::Running => {
                        p { "Your server is " strong { "running" } " at " a href=(url) { code { (prefix) } } "." }
                        @if let Some(note) = newer_environment(hub, &user.name, "") {
                            p.notice.info.environment role="status" { (note) }
                        }
                        div.actions {
                            a.button href=(url) { "Open my server" }
                            form.inline method="post" action=(format!("{hp}home/stop")) {
                                (forms::xsrf_input(&csrf))
                                button.secondary type="submit" { "Stop my server" }
                            }
                        }
                    }
                    ServerState::Starting => {
                        p { "Your server is " strong { "starting" } "." }
                        div.actions { a.button href=(spawn_pending_url(hub, &user.name, "")) { "Follow its progress" } }
                    }
                    ServerState::Stopping => {
                        p { "Your server is " strong { "stopping" } ". Reload this page in a moment." }
                    }
                    ServerState::Stopped => {
                        p { "Your server is " strong { "not running" } "." }
                        @if let Some(f) = &failure {
                            div.notice.error role="alert" { p { strong { "The last start failed: " } (f) } }
                        }
                        div.actions {
                            @if choices(hub, user) > 1 {
                                a.button href=(format!("{hp}spawn/{}", user.name)) { "Start my server…" }
                            } @else {
                                (start_form(hub, p, None, "Start my server"))
                            }
                        }
                    }
                }
            }
        }
        (super::named_servers::section(hub, p, user))
        (gpu_section(hub, &user.name))
        (super::home_shares::section(hub, p, user))
        section aria-labelledby="account-heading" {
            h2 #account-heading { "My account" }
            ul {
                li { a href=(format!("{hp}token")) { "API tokens" } " — create and revoke tokens for scripts and tools." }
                @if hub.config().auth.kind != AuthType::Dummy {
                    li { a href=(format!("{hp}auth/change-password")) { "Change password" } }
                }
                @if hub.is_admin(user) {
                    li { a href=(format!("{hp}admin")) { "Administration" } " — users and their servers." }
                }
            }
        }
    };
    layout::html_response(
        status,
        layout::page(
            hub,
            Some(p),
            Nav::Home,
            &format!("Home of {}", user.name),
            body,
        ),
    )
}

/// When the software environment changed since `server` started (`orrery env`), what to say:
/// new servers get the one in effect, this one keeps its own until restarted.
pub fn newer_environment(hub: &Hub, user: &str, server: &str) -> Option<String> {
    let record = hub.store.server(user, server).ok()??;
    let env = hub.store.environment().ok()?;
    if record.environment == env.current {
        return None;
    }
    let what = env
        .current_generation()
        .map(|g| format!(" ({})", g.change))
        .unwrap_or_default();
    Some(format!(
        "The software environment changed since this server started{what}: stop and start it \
         to use the new one. Files in your home directory are kept."
    ))
}

/// The home page with an error notice (a 400): for the named servers' actions.
pub fn failed(hub: &Hub, p: &Principal, user: &UserRecord, message: String) -> Response {
    render(
        hub,
        p,
        user,
        StatusCode::BAD_REQUEST,
        vec![Notice::Error(message)],
    )
}

pub(super) fn action_failed(
    hub: &Hub,
    p: &Principal,
    user: &UserRecord,
    e: ActionError,
) -> Response {
    let mut resp = render(hub, p, user, e.status, vec![Notice::Error(e.message)]);
    if let Some(s) = e.retry_after {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// `POST <hub>/home/start`: start the user's own server.
pub async fn start(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let (p, user) = match forms::form_user(&hub, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match start_server(&hub, &user).await {
        Ok(Begun::Ready) => match f.opt("next").filter(|n| !n.is_empty()) {
            Some(n) => layout::redirect(&session::safe_next(&hub, Some(n))),
            None => layout::redirect(&server_url(&hub, &user.name, "")),
        },
        Ok(Begun::Pending) => match f.opt("next").filter(|n| !n.is_empty()) {
            Some(n) => layout::redirect(&format!(
                "{}?next={}",
                spawn_pending_url(&hub, &user.name, ""),
                urlencoding::encode(n)
            )),
            None => layout::redirect(&spawn_pending_url(&hub, &user.name, "")),
        },
        Err(e) => action_failed(&hub, &p, &user, e),
    }
}

/// `POST <hub>/home/stop`: stop the user's own server.
pub async fn stop(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let (p, user) = match forms::form_user(&hub, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match stop_server(&hub, &user.name, "").await {
        Ok(()) => layout::redirect(&format!("{}home?msg=stopped", hub.hub_prefix())),
        Err(e) => action_failed(&hub, &p, &user, e),
    }
}

/// The user's GPU kernels: which hold a unit (and how long they have been idle, since idle
/// ones give it back), and which wait, at what place. Nothing when they have none.
fn gpu_section(hub: &Hub, user: &str) -> maud::Markup {
    let (holders, queue) = hub.gateway.gpu_view();
    let mine: Vec<_> = holders.iter().filter(|h| h.user == user).collect();
    let waiting: Vec<_> = queue.iter().filter(|w| w.user == user).collect();
    if mine.is_empty() && waiting.is_empty() {
        return maud::html! {};
    }
    let cfg = hub.config();
    let short = crate::gateway::manager::short_id;
    maud::html! {
        section aria-labelledby="gpu-heading" #my-gpus {
            h2 #gpu-heading { "My GPU kernels" }
            ul {
                @for h in &mine {
                    @if let Some(server) = &h.server {
                        li data-server=(server) {
                            @if server.is_empty() { "My server" } @else { "My server " code { (server) } }
                            " holds GPU " code { (h.unit) } " while it runs; its kernels use it."
                        }
                    } @else {
                        li data-kernel=(h.kernel) {
                            "Kernel " code { (short(&h.kernel)) } " holds GPU " code { (h.unit) } ": "
                            @match h.idle_s {
                                Some(s) => { "idle for " (layout::span(s)) }
                                None => { "running a cell" }
                            }
                        }
                    }
                }
                @for w in &waiting {
                    li data-kernel=(w.kernel) {
                        "Kernel " code { (short(&w.kernel)) } " waits for a GPU: "
                        @if w.ahead == 0 { "next in line" } @else { (w.ahead) " ahead of it" }
                        ", waiting " (layout::span(w.waiting_s))
                    }
                }
            }
            p.hint {
                "An idle kernel gives its GPU back after " (layout::span(cfg.gpu.idle_after.as_std().as_secs()))
                " when someone waits (its variables are lost; its next cell starts it again)."
            }
        }
    }
}
