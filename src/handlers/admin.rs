//! The admin page (`<hub>/admin`, admins only): every user with their admin flag, server state
//! and last activity; per-user start, stop, make/remove admin and delete (confirmed on a second
//! page); a form to add users; and the groups with their members and who manages them, with
//! forms to add and remove members of the groups the API manages (a config group changes only
//! in the config file). Admins cannot demote or delete themselves.
//!
//! Every POST handler takes an [`AdminForm`] (or an [`AdminTarget`], which adds the user the
//! action names): the session, CSRF and admin checks run before the handler does.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::forms::{self, Fields};
use super::home::{self, Begun, ServerState};
use super::layout::{self, Nav, Notice};
use crate::groups;
use crate::hub::{Hub, Principal};
use crate::session::{self, LoggedIn};
use crate::spawn::{self, StopError};
use crate::state::UserRecord;
use crate::username;

/// Most names one submission of the add-users form may carry.
const MAX_NEW_USERS: usize = 500;

fn forbidden(hub: &Hub, p: &Principal) -> Response {
    layout::error_page(
        hub,
        Some(p),
        StatusCode::FORBIDDEN,
        "Forbidden",
        "Only administrators can use the admin page.",
    )
}

/// The admin behind a page request, or the 403 page.
#[allow(clippy::result_large_err)] // a Response, as axum's own rejections
fn require_admin(hub: &Hub, p: &Principal) -> Result<UserRecord, Response> {
    let user = forms::page_user(hub, p)?;
    if hub.is_admin(&user) {
        Ok(user)
    } else {
        Err(forbidden(hub, p))
    }
}

/// The user an action names, or the 404 page.
#[allow(clippy::result_large_err)] // a Response, as axum's own rejections
fn target(hub: &Hub, p: &Principal, name: &str) -> Result<UserRecord, Response> {
    username::normalize(name)
        .ok()
        .and_then(|n| hub.store.user(&n).ok().flatten())
        .ok_or_else(|| {
            layout::error_page(
                hub,
                Some(p),
                StatusCode::NOT_FOUND,
                "No such user",
                "That user does not exist (any more).",
            )
        })
}

/// A form an admin posted on the admin page. Extracting it checks, in this order, the session
/// (else a redirect to the login page), the CSRF token (else the 403 "Form expired" page) and
/// the admin flag (else the 403 page), so a handler taking it only does its action.
pub struct AdminForm {
    p: Principal,
    /// The admin who posted the form.
    me: UserRecord,
    fields: Fields,
}

impl FromRequest<Arc<Hub>> for AdminForm {
    type Rejection = Response;

    async fn from_request(req: Request, hub: &Arc<Hub>) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, hub)
            .await
            .map_err(IntoResponse::into_response)?;
        let fields = Fields::parse(&body);
        let (p, me) = forms::form_user(hub, &headers, &fields)?;
        if !hub.is_admin(&me) {
            return Err(forbidden(hub, &p));
        }
        Ok(AdminForm { p, me, fields })
    }
}

/// An [`AdminForm`] posted to `<hub>/admin/users/<name>/<action>`, with the user `<name>`
/// names: after the form's checks, a user that does not exist gets the 404 page.
pub struct AdminTarget {
    p: Principal,
    /// The admin who posted the form.
    me: UserRecord,
    fields: Fields,
    /// The user the action is for.
    user: UserRecord,
}

impl FromRequest<Arc<Hub>> for AdminTarget {
    type Rejection = Response;

    async fn from_request(req: Request, hub: &Arc<Hub>) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Path(name) = Path::<String>::from_request_parts(&mut parts, hub)
            .await
            .map_err(IntoResponse::into_response)?;
        let AdminForm { p, me, fields } =
            AdminForm::from_request(Request::from_parts(parts, body), hub).await?;
        let user = target(hub, &p, &name)?;
        Ok(AdminTarget {
            p,
            me,
            fields,
            user,
        })
    }
}

fn admin_url(hub: &Hub) -> String {
    format!("{}admin", hub.hub_prefix())
}

fn done(hub: &Hub, what: &str, user: &str) -> Response {
    layout::redirect(&format!(
        "{}?done={what}&user={}",
        admin_url(hub),
        urlencoding::encode(user)
    ))
}

/// `GET <hub>/admin`.
pub async fn page(
    State(hub): State<Arc<Hub>>,
    LoggedIn(p): LoggedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let me = match require_admin(&hub, &p) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let q = Fields::query(query.as_deref());
    // Only fixed messages, naming a user only when the name is valid: nothing is reflected.
    let who = username::normalize(q.get("user")).unwrap_or_default();
    let n: usize = q.get("n").parse().unwrap_or(0);
    let existing: usize = q.get("existing").parse().unwrap_or(0);
    let notice = match q.get("done") {
        "started" => Some(format!("{who}'s server has started.")),
        "pending" => Some(format!("{who}'s server is starting.")),
        "stopped" => Some(format!("{who}'s server has been stopped.")),
        "promoted" => Some(format!("{who} is now an admin.")),
        "demoted" => Some(format!("{who} is no longer an admin.")),
        "deleted" => Some(format!("User {who} has been deleted.")),
        "created" if existing > 0 => {
            Some(format!("Added {n} user(s); {existing} already existed."))
        }
        "created" => Some(format!("Added {n} user(s).")),
        "member-added" | "member-removed" => {
            let group = username::normalize(q.get("group")).unwrap_or_default();
            Some(if q.get("done") == "member-added" {
                format!("{who} is now a member of group {group}.")
            } else {
                format!("{who} is no longer a member of group {group}.")
            })
        }
        _ => None,
    };
    let notices: Vec<Notice> = notice.into_iter().map(Notice::Info).collect();
    let view = UsersView {
        search: q.get("q").trim().to_lowercase(),
        offset: q.get("offset").parse().unwrap_or(0),
    };
    render(&hub, &p, &me, StatusCode::OK, notices, "", false, &view)
}

/// Users shown on one page of the admin page's table (the store pages them by name).
const USERS_PER_PAGE: usize = 100;

/// Which page of the users table: the names searched (a prefix) and where the page starts.
#[derive(Default)]
struct UsersView {
    search: String,
    offset: usize,
}

#[allow(clippy::too_many_arguments)] // the page's parts, each from a different handler
fn render(
    hub: &Hub,
    p: &Principal,
    me: &UserRecord,
    status: StatusCode,
    notices: Vec<Notice>,
    names_input: &str,
    admin_checked: bool,
    view: &UsersView,
) -> Response {
    let hp = hub.hub_prefix();
    let csrf = session::csrf_token(p);
    let cfg = hub.config();
    // One page, in name order, paged by the store: the page costs its users, not all users.
    let total = hub.store.count_users_with_prefix(&view.search);
    let users = hub
        .store
        .users_page_by_name(&view.search, false, view.offset, USERS_PER_PAGE)
        .unwrap_or_default();
    let page_link = |offset: usize| {
        format!(
            "{hp}admin?q={}&offset={offset}",
            urlencoding::encode(&view.search)
        )
    };
    let action = |u: &UserRecord, what: &str, label: &str, class: &str| {
        html! {
            form.inline method="post" action=(format!("{hp}admin/users/{}/{what}", u.name)) {
                (forms::xsrf_input(&csrf))
                button class=(format!("small {class}").trim_end()) type="submit" aria-label=(format!("{label} for {}", u.name)) { (label) }
            }
        }
    };
    let body = html! {
        (layout::notices(&notices))
        @if let Some(w) = layout::plain_http_notice(hub, false) { (w.render()) }
        @if let Some(e) = hub.tls.status().error.filter(|_| hub.config().https.enabled) {
            (Notice::Error(format!("HTTPS certificate: {e}")).render())
        }
        section aria-labelledby="users-heading" {
            h2 #users-heading { "Users" }
            form.inline method="get" action=(format!("{hp}admin")) role="search" {
                label for="user-search" { "Find users" }
                input #user-search type="search" name="q" value=(view.search) placeholder="name starts with…";
                button.secondary type="submit" { "Search" }
            }
            div.actions {
                @if view.offset > 0 {
                    a href=(page_link(view.offset.saturating_sub(USERS_PER_PAGE))) rel="prev" { "← Previous" }
                }
                @if view.offset + users.len() < total {
                    a href=(page_link(view.offset + USERS_PER_PAGE)) rel="next" { "Next →" }
                }
            }
            div.table-wrap {
                table {
                    caption {
                        (total) " user(s)"
                        @if !view.search.is_empty() { " whose names start with “" (view.search) "”" }
                        @if total > users.len() {
                            ", " (view.offset + 1) "–" (view.offset + users.len()) " shown"
                        }
                    }
                    thead {
                        tr {
                            th scope="col" { "Name" }
                            th scope="col" { "Admin" }
                            th scope="col" { "Server" }
                            th scope="col" { "Last activity" }
                            th scope="col" { "Actions" }
                        }
                    }
                    tbody {
                        @for u in &users {
                            @let state = home::server_state(hub, &u.name, "");
                            @let by_config = cfg.users.admin.iter().any(|a| a == &u.name);
                            @let is_me = u.name == me.name;
                            tr {
                                th scope="row" { (u.name) @if is_me { " " span.muted { "(you)" } } }
                                td {
                                    @if by_config { "yes (config)" } @else if u.admin { "yes" } @else { "no" }
                                }
                                td {
                                    @if state == ServerState::Starting {
                                        a href=(home::spawn_pending_url(hub, &u.name, "")) { (state.label()) }
                                    } @else {
                                        (state.label())
                                    }
                                    // Named servers that run or start, each with its stop button.
                                    @for s in hub.store.servers_of(&u.name).unwrap_or_default().iter().filter(|s| !s.name.is_empty()) {
                                        @let named = home::server_state(hub, &u.name, &s.name);
                                        div.named-server {
                                            code { (s.name) } ": " (named.label())
                                            @if named == ServerState::Running {
                                                form.inline method="post" action=(format!("{hp}admin/users/{}/servers/{}/stop", u.name, s.name)) {
                                                    (forms::xsrf_input(&csrf))
                                                    button.small.secondary type="submit" aria-label=(format!("Stop {}'s server {}", u.name, s.name)) { "Stop" }
                                                }
                                            }
                                        }
                                    }
                                }
                                td { (layout::time(u.last_activity.as_ref(), "never")) }
                                td {
                                    div.actions {
                                        @match state {
                                            ServerState::Stopped => { (action(u, "start", "Start server", "")) }
                                            ServerState::Running => { (action(u, "stop", "Stop server", "secondary")) }
                                            _ => {}
                                        }
                                        @if !is_me {
                                            @if u.admin && !by_config {
                                                (action(u, "remove-admin", "Remove admin", "secondary"))
                                            } @else if !u.admin && !by_config {
                                                (action(u, "make-admin", "Make admin", "secondary"))
                                            }
                                            a href=(format!("{hp}admin/users/{}/delete", u.name))
                                                aria-label=(format!("Delete user {}", u.name)) { "Delete…" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (groups_section(hub, &csrf))
        section aria-labelledby="add-heading" {
            h2 #add-heading { "Add users" }
            form.stack method="post" action=(format!("{hp}admin/users")) {
                (forms::xsrf_input(&csrf))
                div.field {
                    label for="names" { "User names" }
                    textarea #names name="names" required aria-describedby="names-hint" { (names_input) }
                    p.hint #names-hint {
                        "One or more names, separated by spaces, commas or new lines. Names use lowercase \
                         letters, digits, '.', '_' and '-' and start with a letter or digit."
                    }
                }
                div.field.check {
                    input #admin type="checkbox" name="admin" value="1" checked[admin_checked];
                    label for="admin" { "Make them admins" }
                }
                div { button type="submit" { "Add users" } }
            }
        }
    };
    layout::html_response(
        status,
        layout::page(hub, Some(p), Nav::Admin, "Administration", body),
    )
}

/// Groups shown on the admin page (the first, by name; `orrery groups` lists them all).
const GROUPS_SHOWN: usize = 100;
/// Members shown per group (the first, by name): a class of thousands would make the page
/// cost its members.
const MEMBERS_SHOWN: usize = 50;

/// The groups, their managers and members; member forms for the groups the API manages.
fn groups_section(hub: &Hub, csrf: &str) -> Markup {
    let hp = hub.hub_prefix();
    let cfg = hub.config();
    let total = hub.store.group_count();
    let list = hub.store.groups_page(0, GROUPS_SHOWN).unwrap_or_default();
    html! {
        section aria-labelledby="groups-heading" {
            h2 #groups-heading { "Groups" }
            @if list.is_empty() {
                p.muted { "No groups. Declare them in the config file ([[groups]]), or create them with "
                    code { "orrery groups add NAME" } " or the API." }
            } @else {
                div.table-wrap {
                    table #groups {
                        caption {
                            (total) " group(s)"
                            @if total > list.len() { ", the first " (list.len()) " shown (all: " code { "orrery groups list" } ")" }
                        }
                        thead {
                            tr {
                                th scope="col" { "Group" }
                                th scope="col" { "Managed by" }
                                th scope="col" { "Members" }
                                th scope="col" { "Roles" }
                            }
                        }
                        tbody {
                            @for g in &list {
                                @let by_config = groups::config_managed(Some(g), &cfg, &g.name);
                                @let roles = crate::roles::of_group(&cfg.roles, &g.name);
                                tr data-group=(g.name) {
                                    th scope="row" { (g.name) }
                                    td {
                                        @if by_config {
                                            "config file"
                                            p.hint { "Change its members in the config file ([[groups]]) and run "
                                                code { "orrery config reload" } "." }
                                        } @else { "API" }
                                    }
                                    td {
                                        @if g.users.is_empty() { span.muted { "none" } }
                                        ul.members {
                                            @for u in g.users.iter().take(MEMBERS_SHOWN) {
                                                li {
                                                    (u)
                                                    @if !by_config {
                                                        " "
                                                        form.inline method="post" action=(format!("{hp}admin/groups/{}/remove-user", g.name)) {
                                                            (forms::xsrf_input(csrf))
                                                            input type="hidden" name="user" value=(u);
                                                            button.small.secondary type="submit" aria-label=(format!("Remove {u} from {}", g.name)) { "Remove" }
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                        @if g.users.len() > MEMBERS_SHOWN {
                                            p.hint { "… and " (g.users.len() - MEMBERS_SHOWN) " more (all: " code { "orrery groups list" } ")" }
                                        }
                                        @if !by_config {
                                            form.inline method="post" action=(format!("{hp}admin/groups/{}/add-user", g.name)) {
                                                (forms::xsrf_input(csrf))
                                                label for=(format!("add-{}", g.name)) { "Add member" }
                                                " "
                                                input id=(format!("add-{}", g.name)) name="user" required;
                                                " "
                                                button.small type="submit" { "Add" }
                                            }
                                        }
                                    }
                                    td {
                                        @if roles.is_empty() { span.muted { "none" } } @else { (roles.join(", ")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn failed(
    hub: &Hub,
    p: &Principal,
    me: &UserRecord,
    status: StatusCode,
    message: String,
) -> Response {
    render(
        hub,
        p,
        me,
        status,
        vec![Notice::Error(message)],
        "",
        false,
        &UsersView::default(),
    )
}

/// The admin page with a 500 notice, after a state database error (logged by the caller).
fn db_failed(hub: &Hub, p: &Principal, me: &UserRecord) -> Response {
    failed(
        hub,
        p,
        me,
        StatusCode::INTERNAL_SERVER_ERROR,
        "The hub's state database failed; see the hub's log.".into(),
    )
}

/// The admin page with a 400 notice: an admin cannot delete their own account.
fn self_delete(hub: &Hub, p: &Principal, me: &UserRecord) -> Response {
    failed(
        hub,
        p,
        me,
        StatusCode::BAD_REQUEST,
        "You cannot delete yourself.".into(),
    )
}

/// Make the changes durable; a failure is logged, the change itself has been made.
async fn flush(hub: &Hub) {
    if let Err(e) = hub.store.flush().await {
        tracing::error!(error = %e, "cannot flush the state database");
    }
}

/// `POST <hub>/admin/users`: add one or more users.
pub async fn add_users(
    State(hub): State<Arc<Hub>>,
    AdminForm { p, me, fields: f }: AdminForm,
) -> Response {
    let raw = f.get("names");
    let make_admin = f.checked("admin");
    let words: Vec<&str> = raw
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let mut errors = Vec::new();
    let mut names: Vec<String> = Vec::new();
    if words.is_empty() {
        errors.push("Enter at least one user name.".to_string());
    }
    if words.len() > MAX_NEW_USERS {
        errors.push(format!("Add at most {MAX_NEW_USERS} users at once."));
    }
    for w in words.iter().take(MAX_NEW_USERS) {
        match username::normalize(w) {
            Ok(n) if !names.contains(&n) => names.push(n),
            Ok(_) => {}
            Err(e) => errors.push(format!("{e}.")),
        }
    }
    if !errors.is_empty() {
        let n = Notice::Errors("No users were added.".into(), errors);
        return render(
            &hub,
            &p,
            &me,
            StatusCode::BAD_REQUEST,
            vec![n],
            raw,
            make_admin,
            &UsersView::default(),
        );
    }
    let (mut created, mut existing) = (0usize, 0usize);
    for n in &names {
        let mut rec = UserRecord::new(n);
        rec.admin = make_admin;
        match hub.store.create_user(&rec) {
            Ok(true) => created += 1,
            Ok(false) => existing += 1,
            Err(e) => {
                tracing::error!(error = %e, "cannot create a user");
                return db_failed(&hub, &p, &me);
            }
        }
    }
    flush(&hub).await;
    tracing::info!(admin = %me.name, created, existing, "users added on the admin page");
    layout::redirect(&format!(
        "{}?done=created&n={created}&existing={existing}",
        admin_url(&hub)
    ))
}

/// `POST <hub>/admin/users/<name>/start`.
pub async fn start(
    State(hub): State<Arc<Hub>>,
    AdminTarget { p, me, user, .. }: AdminTarget,
) -> Response {
    match home::start_server(&hub, &user).await {
        Ok(Begun::Ready) => done(&hub, "started", &user.name),
        Ok(Begun::Pending) => done(&hub, "pending", &user.name),
        Err(e) => {
            let mut resp = failed(
                &hub,
                &p,
                &me,
                e.status,
                format!("{}: {}", user.name, e.message),
            );
            if let Some(s) = e.retry_after {
                if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            resp
        }
    }
}

/// `POST <hub>/admin/users/<name>/stop`.
pub async fn stop(
    State(hub): State<Arc<Hub>>,
    AdminTarget { p, me, user, .. }: AdminTarget,
) -> Response {
    match home::stop_server(&hub, &user.name, "").await {
        Ok(()) => done(&hub, "stopped", &user.name),
        Err(e) => failed(&hub, &p, &me, e.status, e.message),
    }
}

/// `POST <hub>/admin/users/<name>/servers/<server>/stop`: stop one of a user's named servers.
pub async fn stop_named(
    State(hub): State<Arc<Hub>>,
    Path((name, server)): Path<(String, String)>,
    AdminForm { p, me, .. }: AdminForm,
) -> Response {
    let user = match target(&hub, &p, &name) {
        Ok(u) => u,
        Err(r) => return r,
    };
    match home::stop_server(&hub, &user.name, &server).await {
        Ok(()) => done(&hub, "stopped", &user.name),
        Err(e) => failed(&hub, &p, &me, e.status, e.message),
    }
}

async fn set_admin(
    hub: Arc<Hub>,
    AdminTarget { p, me, user, .. }: AdminTarget,
    admin: bool,
) -> Response {
    if user.name == me.name && !admin {
        return failed(
            &hub,
            &p,
            &me,
            StatusCode::BAD_REQUEST,
            "You cannot remove your own admin rights.".into(),
        );
    }
    if !admin && hub.config().users.admin.iter().any(|a| a == &user.name) {
        let m = format!(
            "{} is an admin through the configuration (users.admin); remove them there.",
            user.name
        );
        return failed(&hub, &p, &me, StatusCode::BAD_REQUEST, m);
    }
    if let Err(e) = hub.store.update_user(&user.name, |u| u.admin = admin) {
        tracing::error!(error = %e, "cannot update a user");
        return db_failed(&hub, &p, &me);
    }
    flush(&hub).await;
    tracing::info!(admin = %me.name, user = %user.name, to = admin, "admin flag changed on the admin page");
    done(&hub, if admin { "promoted" } else { "demoted" }, &user.name)
}

/// `POST <hub>/admin/users/<name>/make-admin`.
pub async fn make_admin(State(hub): State<Arc<Hub>>, a: AdminTarget) -> Response {
    set_admin(hub, a, true).await
}

/// `POST <hub>/admin/users/<name>/remove-admin`.
pub async fn remove_admin(State(hub): State<Arc<Hub>>, a: AdminTarget) -> Response {
    set_admin(hub, a, false).await
}

fn confirm_page(
    hub: &Hub,
    p: &Principal,
    user: &UserRecord,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let hp = hub.hub_prefix();
    let running = home::server_state(hub, &user.name, "") != ServerState::Stopped;
    let body = html! {
        @if let Some(n) = &notice { (n.render()) }
        p.lead {
            "Deleting " strong { (user.name) } " removes the user with their API tokens, browser sessions and \
             group memberships."
            @if running { " Their running server is stopped first." }
            " They can no longer log in unless they are created again."
        }
        form.stack method="post" action=(format!("{hp}admin/users/{}/delete", user.name)) {
            (forms::xsrf_input(&session::csrf_token(p)))
            div.field.check {
                input #confirm type="checkbox" name="confirm" value="yes" required;
                label for="confirm" { "Yes, delete " (user.name) }
            }
            div.actions {
                button.danger type="submit" { "Delete user" }
                a.button.secondary href=(format!("{hp}admin")) { "Cancel" }
            }
        }
    };
    layout::html_response(
        status,
        layout::page(
            hub,
            Some(p),
            Nav::Admin,
            &format!("Delete user {}?", user.name),
            body,
        ),
    )
}

/// `GET <hub>/admin/users/<name>/delete`: the confirmation step.
pub async fn delete_confirm(
    State(hub): State<Arc<Hub>>,
    LoggedIn(p): LoggedIn,
    Path(name): Path<String>,
) -> Response {
    let me = match require_admin(&hub, &p) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let user = match target(&hub, &p, &name) {
        Ok(u) => u,
        Err(r) => return r,
    };
    if user.name == me.name {
        return self_delete(&hub, &p, &me);
    }
    confirm_page(&hub, &p, &user, StatusCode::OK, None)
}

/// `POST <hub>/admin/users/<name>/delete`: needs the confirmation checkbox.
pub async fn delete(
    State(hub): State<Arc<Hub>>,
    AdminTarget {
        p,
        me,
        fields: f,
        user,
    }: AdminTarget,
) -> Response {
    if user.name == me.name {
        return self_delete(&hub, &p, &me);
    }
    if f.get("confirm") != "yes" {
        let n = Notice::Error("Tick the confirmation box to delete the user.".into());
        return confirm_page(&hub, &p, &user, StatusCode::BAD_REQUEST, Some(n));
    }
    if home::server_state(&hub, &user.name, "") == ServerState::Starting {
        let m = format!(
            "{}'s server is still starting; delete the user once the start has finished.",
            user.name
        );
        return failed(&hub, &p, &me, StatusCode::CONFLICT, m);
    }
    match spawn::stop(&hub, &user.name, "").await {
        Ok(()) | Err(StopError::NotRunning(_)) => {}
        // The server record is forgotten even when the backend complains; go on deleting.
        Err(StopError::Backend(m)) => {
            tracing::warn!(user = %user.name, error = %m, "backend error stopping a deleted user's server")
        }
        Err(StopError::State(e)) => {
            tracing::error!(error = %e, "cannot stop a server");
            return db_failed(&hub, &p, &me);
        }
    }
    if let Err(e) = hub.store.delete_user(&user.name) {
        tracing::error!(error = %e, "cannot delete a user");
        return db_failed(&hub, &p, &me);
    }
    flush(&hub).await;
    tracing::info!(admin = %me.name, user = %user.name, "user deleted on the admin page");
    done(&hub, "deleted", &user.name)
}

/// A member change on a group the API manages: the group must exist and not be the config's.
async fn change_member(hub: Arc<Hub>, name: String, form: AdminForm, add: bool) -> Response {
    let AdminForm { p, me, fields: f } = form;
    let not_found = |hub: &Hub| {
        failed(
            hub,
            &p,
            &me,
            StatusCode::NOT_FOUND,
            "That group does not exist (any more).".into(),
        )
    };
    let Ok(name) = username::normalize(&name) else {
        return not_found(&hub);
    };
    let mut group = match hub.store.group(&name) {
        Ok(Some(g)) => g,
        Ok(None) => return not_found(&hub),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a group");
            return db_failed(&hub, &p, &me);
        }
    };
    if groups::config_managed(Some(&group), &hub.config(), &name) {
        return failed(&hub, &p, &me, StatusCode::CONFLICT, groups::refusal(&name));
    }
    let user = match username::normalize(f.get("user")) {
        Ok(u) => u,
        Err(e) => return failed(&hub, &p, &me, StatusCode::BAD_REQUEST, format!("{e}.")),
    };
    if add {
        match hub.store.user(&user) {
            Ok(Some(_)) => {}
            Ok(None) => {
                let m = format!("No such user: {user}. Add the user first.");
                return failed(&hub, &p, &me, StatusCode::BAD_REQUEST, m);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read a user");
                return db_failed(&hub, &p, &me);
            }
        }
        group.users.insert(user.clone());
    } else {
        group.users.remove(&user);
    }
    if let Err(e) = hub.store.put_group(&group) {
        tracing::error!(error = %e, "cannot update a group");
        return db_failed(&hub, &p, &me);
    }
    flush(&hub).await;
    tracing::info!(admin = %me.name, group = %name, user = %user, add, "group membership changed on the admin page");
    layout::redirect(&format!(
        "{}?done={}&user={}&group={}",
        admin_url(&hub),
        if add {
            "member-added"
        } else {
            "member-removed"
        },
        urlencoding::encode(&user),
        urlencoding::encode(&name)
    ))
}

/// `POST <hub>/admin/groups/<name>/add-user` (field `user`).
pub async fn add_group_user(
    State(hub): State<Arc<Hub>>,
    Path(name): Path<String>,
    form: AdminForm,
) -> Response {
    change_member(hub, name, form, true).await
}

/// `POST <hub>/admin/groups/<name>/remove-user` (field `user`).
pub async fn remove_group_user(
    State(hub): State<Arc<Hub>>,
    Path(name): Path<String>,
    form: AdminForm,
) -> Response {
    change_member(hub, name, form, false).await
}
