//! The admin page (`<hub>/admin`, admins only): every user with their admin flag, server state
//! and last activity; per-user start, stop, make/remove admin and delete (confirmed on a second
//! page); a form to add users; a link to the groups page ([`super::admin_groups`]). Servers can be started or stopped for the
//! selected users (checkboxes tied to one bulk form by `form=`, no JavaScript) or stopped all at
//! once; a running server has an "Open" link (admins hold `access:servers`); with the firstuse
//! or native authenticator an admin sets a user's password. Admins cannot demote or delete
//! themselves.
//!
//! Every POST handler takes an [`AdminForm`] (or an [`AdminTarget`], which adds the user the
//! action names): the session, CSRF and admin checks run before the handler does.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::forms::{self, Fields};
use super::home::{self, Begun, ServerState};
use super::layout::{self, Nav, Notice};
use crate::hub::{Hub, Principal};
use crate::session::{self, LoggedIn};
use crate::spawn::{self, StopError};
use crate::state::{UserOrder, UserQuery, UserRecord, UserState};
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
pub(super) fn require_admin(hub: &Hub, p: &Principal) -> Result<UserRecord, Response> {
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
    pub(super) p: Principal,
    /// The admin who posted the form.
    pub(super) me: UserRecord,
    pub(super) fields: Fields,
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

pub(super) fn admin_url(hub: &Hub) -> String {
    format!("{}admin", hub.hub_prefix())
}

pub(super) fn done(hub: &Hub, what: &str, user: &str) -> Response {
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
        "bulk" => {
            let failed: usize = q.get("failed").parse().unwrap_or(0);
            let verb = if q.get("what") == "stop" {
                "Stopped"
            } else {
                "Started"
            };
            Some(if failed > 0 {
                format!("{verb} {n} server(s); {failed} could not be (see the hub's log).")
            } else {
                format!("{verb} {n} server(s).")
            })
        }
        "password" => Some(format!("{who}'s password has been set.")),
        _ => None,
    };
    let notices: Vec<Notice> = notice.into_iter().map(Notice::Info).collect();
    // An unknown sort or state falls back to the default, as a hand-edited link should.
    let view = UsersView {
        search: q.get("q").trim().to_lowercase(),
        offset: q.get("offset").parse().unwrap_or(0),
        sort: q.get("sort").to_string(),
        state: q.get("state").to_string(),
    };
    render(&hub, &p, &me, StatusCode::OK, notices, "", false, &view)
}

/// Users shown on one page of the admin page's table (the store pages them by name).
const USERS_PER_PAGE: usize = 100;

/// Which page of the users table: the names searched (a prefix), the order and state filter
/// (JupyterHub's `sort` and `state`, kept as given so links carry them) and where the page
/// starts.
#[derive(Default)]
struct UsersView {
    search: String,
    offset: usize,
    sort: String,
    state: String,
}

impl UsersView {
    fn order(&self) -> UserOrder {
        UserOrder::parse(&self.sort).unwrap_or(UserOrder::Name)
    }

    fn filter(&self) -> UserState {
        UserState::parse(&self.state).unwrap_or(UserState::Any)
    }

    /// This view's link with another sort, state or offset.
    fn link(&self, hp: &str, sort: &str, state: &str, offset: usize) -> String {
        let mut url = format!("{hp}admin?q={}", urlencoding::encode(&self.search));
        if !sort.is_empty() {
            url.push_str(&format!("&sort={}", urlencoding::encode(sort)));
        }
        if !state.is_empty() {
            url.push_str(&format!("&state={}", urlencoding::encode(state)));
        }
        if offset > 0 {
            url.push_str(&format!("&offset={offset}"));
        }
        url
    }

    /// A column header's sort link: ascending first, descending when already ascending.
    fn sort_link(&self, hp: &str, key: &str) -> (String, &'static str) {
        let (next, shown) = if self.sort == key || (key == "name" && self.sort.is_empty()) {
            (format!("-{key}"), "ascending")
        } else if self.sort == format!("-{key}") {
            (key.to_string(), "descending")
        } else {
            (key.to_string(), "none")
        };
        (self.link(hp, &next, &self.state, 0), shown)
    }
}

/// The state filters offered, with their labels.
const STATE_FILTERS: [(&str, &str); 4] = [
    ("", "All users"),
    ("active", "With a server"),
    ("ready", "Running"),
    ("inactive", "Without a server"),
];

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
    // One page, in the order and state asked, paged by the store's indexes: the page costs
    // its users, not all users.
    let query = UserQuery {
        prefix: &view.search,
        order: view.order(),
        state: view.filter(),
    };
    let total = hub.store.count_users(&query).unwrap_or(0);
    let users = hub
        .store
        .users_page(&query, view.offset, USERS_PER_PAGE)
        .unwrap_or_default();
    // Admins set passwords where the hub keeps them (firstuse, native).
    let passwords = cfg.auth.kind != crate::config::AuthType::Dummy;
    let page_link = |offset: usize| view.link(&hp, &view.sort, &view.state, offset);
    let sortable = |key: &str, label: &str| {
        let (href, shown) = view.sort_link(&hp, key);
        html! {
            th scope="col" aria-sort=(shown) {
                a href=(href) { (label) }
                @match shown { "ascending" => " ▲", "descending" => " ▼", _ => "" }
            }
        }
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
        p { a href=(format!("{hp}admin/groups")) { "Groups →" } " · " a href=(format!("{hp}admin/gpus")) { "GPUs →" } }
        section aria-labelledby="users-heading" {
            h2 #users-heading { "Users" }
            form.inline method="get" action=(format!("{hp}admin")) role="search" {
                label for="user-search" { "Find users" }
                input #user-search type="search" name="q" value=(view.search) placeholder="name starts with…";
                @if !view.sort.is_empty() { input type="hidden" name="sort" value=(view.sort); }
                @if !view.state.is_empty() { input type="hidden" name="state" value=(view.state); }
                button.secondary type="submit" { "Search" }
            }
            nav.actions aria-label="Show users" {
                @for (state, label) in STATE_FILTERS {
                    @if view.filter() == UserState::parse(state).unwrap_or(UserState::Any) {
                        strong aria-current="true" { (label) }
                    } @else {
                        a href=(view.link(&hp, &view.sort, state, 0)) { (label) }
                    }
                }
            }
            form #bulk .inline method="post" action=(format!("{hp}admin/servers")) {
                (forms::xsrf_input(&csrf))
                "Selected users: "
                button.small type="submit" name="action" value="start" { "Start servers" }
                " "
                button.small.secondary type="submit" name="action" value="stop" { "Stop servers" }
                " · "
                button.small.danger type="submit" name="action" value="stop-all" { "Stop every running server" }
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
                            th scope="col" { span.visually-hidden { "Select" } }
                            (sortable("name", "Name"))
                            th scope="col" { "Admin" }
                            th scope="col" { "Server" }
                            (sortable("last_activity", "Last activity"))
                            th scope="col" { "Actions" }
                        }
                    }
                    tbody {
                        @for u in &users {
                            @let state = home::server_state(hub, &u.name, "");
                            @let by_config = cfg.users.admin.iter().any(|a| a == &u.name);
                            @let is_me = u.name == me.name;
                            tr {
                                td {
                                    input type="checkbox" form="bulk" name="user" value=(u.name)
                                        aria-label=(format!("Select {}", u.name));
                                }
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
                                    @if state == ServerState::Running {
                                        " "
                                        a href=(hub.server_location(&u.name, ""))
                                            aria-label=(format!("Open {}'s server", u.name)) { "Open" }
                                    }
                                    // Named servers that run or start, each with its stop button.
                                    @for s in hub.store.servers_of(&u.name).unwrap_or_default().iter().filter(|s| !s.name.is_empty()) {
                                        @let named = home::server_state(hub, &u.name, &s.name);
                                        div.named-server {
                                            code { (s.name) } ": " (named.label())
                                            @if named == ServerState::Running {
                                                " "
                                                a href=(hub.server_location(&u.name, &s.name))
                                                    aria-label=(format!("Open {}'s server {}", u.name, s.name)) { "Open" }
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
                                        @if passwords {
                                            details {
                                                summary { "Set password…" }
                                                form.inline method="post" action=(format!("{hp}admin/users/{}/password", u.name)) {
                                                    (forms::xsrf_input(&csrf))
                                                    label for=(format!("pw-{}", u.name)) { "New password" }
                                                    " "
                                                    input id=(format!("pw-{}", u.name)) type="password" name="password"
                                                        required minlength=(cfg.auth.firstuse.min_password_length) autocomplete="new-password";
                                                    " "
                                                    button.small type="submit" { "Set" }
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
        }
        (super::admin_environment::section(hub))
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

pub(super) fn failed(
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
pub(super) fn db_failed(hub: &Hub, p: &Principal, me: &UserRecord) -> Response {
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
pub(super) async fn flush(hub: &Hub) {
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

/// Most servers one bulk action starts or stops at once (the rest wait for the next batch).
const BULK_BATCH: usize = 16;

/// `POST <hub>/admin/servers`: `action=start|stop` for the checked `user`s, or `stop-all` for
/// every running or starting server of every user (the end of a class). Starts and stops run
/// in batches; a failure is counted and logged, and the rest go on.
pub async fn bulk(
    State(hub): State<Arc<Hub>>,
    AdminForm { p, me, fields: f }: AdminForm,
) -> Response {
    let action = f.get("action");
    let mut targets: Vec<(String, String)> = Vec::new();
    match action {
        "start" | "stop" => {
            for raw in f.all("user") {
                if let Ok(name) = username::normalize(raw) {
                    targets.push((name, String::new()));
                }
            }
            if targets.is_empty() {
                let m = "Select at least one user (the boxes in the first column).".to_string();
                return failed(&hub, &p, &me, StatusCode::BAD_REQUEST, m);
            }
        }
        "stop-all" => match hub.store.servers() {
            Ok(servers) => targets = servers.into_iter().map(|s| (s.user, s.name)).collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot list servers");
                return db_failed(&hub, &p, &me);
            }
        },
        other => {
            let m = format!("Unknown action {other:?}: use the buttons above the users table.");
            return failed(&hub, &p, &me, StatusCode::BAD_REQUEST, m);
        }
    }
    let start = action == "start";
    let (mut n, mut failures) = (0usize, 0usize);
    for batch in targets.chunks(BULK_BATCH) {
        let results = futures::future::join_all(batch.iter().map(|(user, server)| {
            let hub = hub.clone();
            async move {
                if start {
                    match hub.store.user(user) {
                        Ok(Some(u)) => match home::server_state(&hub, user, "") {
                            ServerState::Stopped => home::start_server(&hub, &u).await.map(|_| ()),
                            _ => Ok(()),
                        },
                        _ => Err(home::ActionError::new(
                            StatusCode::NOT_FOUND,
                            format!("no user {user}"),
                        )),
                    }
                } else {
                    match home::server_state(&hub, user, server) {
                        ServerState::Running => home::stop_server(&hub, user, server).await,
                        _ => Ok(()),
                    }
                }
                .map_err(|e| format!("{user}: {}", e.message))
            }
        }))
        .await;
        for r in results {
            match r {
                Ok(()) => n += 1,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(admin = %me.name, error = %e, "bulk server action failed");
                }
            }
        }
    }
    tracing::info!(admin = %me.name, action, n, failures, "bulk server action on the admin page");
    layout::redirect(&format!(
        "{}?done=bulk&what={}&n={n}&failed={failures}",
        admin_url(&hub),
        if start { "start" } else { "stop" }
    ))
}

/// `POST <hub>/admin/users/<name>/password` (field `password`): set a user's password (the
/// firstuse and native authenticators; the length rule is the authenticator's).
pub async fn reset_password(
    State(hub): State<Arc<Hub>>,
    AdminTarget {
        p,
        me,
        fields,
        user,
    }: AdminTarget,
) -> Response {
    if hub.config().auth.kind == crate::config::AuthType::Dummy {
        let m = "The dummy authenticator keeps no passwords.".to_string();
        return failed(&hub, &p, &me, StatusCode::BAD_REQUEST, m);
    }
    match crate::auth::set_password(&hub, &user.name, fields.get("password")).await {
        Ok(()) => {
            tracing::info!(admin = %me.name, user = %user.name, "password set on the admin page");
            done(&hub, "password", &user.name)
        }
        Err(e) => failed(
            &hub,
            &p,
            &me,
            StatusCode::BAD_REQUEST,
            format!("{}: {e}", user.name),
        ),
    }
}
