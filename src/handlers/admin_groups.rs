//! The admin's groups page (`<hub>/admin/groups`, as JupyterHub's admin panel has one): the
//! groups 100 a page in name order (paged by the store), each with who manages it, its first
//! 50 members and its roles, and the forms that create and delete groups the API manages and
//! change their members. Groups the config manages (`[[groups]]`) are shown, and changing them
//! is refused saying how. Kept off the users page so that page costs a page of users: a group
//! record holds its members, and 20 classes of 2,500 would make every users page decode 50,000
//! names.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::admin::{flush, require_admin, AdminForm};
use super::forms::{self, Fields};
use super::layout::{self, Nav, Notice};
use crate::groups;
use crate::hub::{Hub, Principal};
use crate::session::{self, LoggedIn};
use crate::state::{GroupRecord, ManagedBy, UserRecord};
use crate::username;

/// Groups on one page (the store pages them by name).
const GROUPS_PER_PAGE: usize = 100;
/// Members shown per group (the first, by name); `orrery groups show NAME` and the API list
/// them all.
const MEMBERS_SHOWN: usize = 50;

/// `<hub>/admin/groups`.
fn groups_url(hub: &Hub) -> String {
    format!("{}admin/groups", hub.hub_prefix())
}

/// `GET <hub>/admin/groups[?offset=N]`.
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
    // Only fixed messages, naming a user or group only when the name is valid.
    let who = username::normalize(q.get("user")).unwrap_or_default();
    let group = username::group_name(q.get("group")).unwrap_or_default();
    let notice = match q.get("done") {
        "group-created" => Some(format!("Group {group} has been created.")),
        "group-deleted" => Some(format!("Group {group} has been deleted.")),
        "member-added" => Some(format!("{who} is now a member of group {group}.")),
        "member-removed" => Some(format!("{who} is no longer a member of group {group}.")),
        _ => None,
    };
    let notices = notice.into_iter().map(Notice::Info).collect();
    let offset = q.get("offset").parse().unwrap_or(0);
    render(&hub, &p, &me, StatusCode::OK, notices, offset)
}

/// The groups page with an error notice (the first page).
fn failed(
    hub: &Hub,
    p: &Principal,
    me: &UserRecord,
    status: StatusCode,
    message: String,
) -> Response {
    render(hub, p, me, status, vec![Notice::Error(message)], 0)
}

/// The groups page with a 500 notice, after a state database error (logged by the caller).
fn db_failed(hub: &Hub, p: &Principal, me: &UserRecord) -> Response {
    failed(
        hub,
        p,
        me,
        StatusCode::INTERNAL_SERVER_ERROR,
        "The hub's state database failed; see the hub's log.".into(),
    )
}

fn render(
    hub: &Hub,
    p: &Principal,
    _me: &UserRecord,
    status: StatusCode,
    notices: Vec<Notice>,
    offset: usize,
) -> Response {
    let hp = hub.hub_prefix();
    let csrf = session::csrf_token(p);
    let cfg = hub.config();
    let total = hub.store.group_count();
    let list = hub
        .store
        .groups_page(offset, GROUPS_PER_PAGE)
        .unwrap_or_default();
    let csrf = csrf.as_str();
    let body = html! {
        (layout::notices(&notices))
        p { a href=(format!("{hp}admin")) { "← Users" } }
        section aria-labelledby="groups-heading" {
            h2 #groups-heading { "Groups" }
            form.inline method="post" action=(format!("{hp}admin/groups")) {
                (forms::xsrf_input(csrf))
                label for="new-group" { "New group" }
                " "
                input #new-group name="name" required;
                " "
                button.small type="submit" { "Create group" }
            }
            @if list.is_empty() {
                p.muted { "No groups. Declare them in the config file ([[groups]]), or create them with "
                    code { "orrery groups add NAME" } " or the API." }
            } @else {
                div.actions {
                    @if offset > 0 {
                        a href=(format!("{hp}admin/groups?offset={}", offset.saturating_sub(GROUPS_PER_PAGE))) rel="prev" { "← Previous" }
                    }
                    @if offset + list.len() < total {
                        a href=(format!("{hp}admin/groups?offset={}", offset + GROUPS_PER_PAGE)) rel="next" { "Next →" }
                    }
                }
                div.table-wrap {
                    table #groups {
                        caption {
                            (total) " group(s)"
                            @if total > list.len() { ", " (offset + 1) "–" (offset + list.len()) " shown" }
                        }
                        thead {
                            tr {
                                th scope="col" { "Group" }
                                th scope="col" { "Managed by" }
                                th scope="col" { "Members" }
                                th scope="col" { "Roles" }
                                th scope="col" { "Actions" }
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
                                                        form.inline method="post" action=(format!("{hp}admin/groups/{}/remove-user", urlencoding::encode(&g.name))) {
                                                            (forms::xsrf_input(csrf))
                                                            input type="hidden" name="user" value=(u);
                                                            button.small.secondary type="submit" aria-label=(format!("Remove {u} from {}", g.name)) { "Remove" }
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                        @if g.users.len() > MEMBERS_SHOWN {
                                            p.hint { "… and " (g.users.len() - MEMBERS_SHOWN) " more (all: " code { "orrery groups show " (g.name) } ")" }
                                        }
                                        @if !by_config {
                                            form.inline method="post" action=(format!("{hp}admin/groups/{}/add-user", urlencoding::encode(&g.name))) {
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
                                    td {
                                        @if !by_config {
                                            form.inline method="post" action=(format!("{hp}admin/groups/{}/delete", urlencoding::encode(&g.name))) {
                                                (forms::xsrf_input(csrf))
                                                button.small.danger type="submit" aria-label=(format!("Delete group {}", g.name)) { "Delete group" }
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
    };
    layout::html_response(
        status,
        layout::page(hub, Some(p), Nav::Admin, "Groups", body),
    )
}

/// The group `name` names, if it exists and the API manages it; else the page saying why
/// (404, or 409 with how to change a config group).
#[allow(clippy::result_large_err)] // a Response, as axum's own rejections
fn api_group(
    hub: &Hub,
    p: &Principal,
    me: &UserRecord,
    name: &str,
) -> Result<GroupRecord, Response> {
    let not_found = || {
        failed(
            hub,
            p,
            me,
            StatusCode::NOT_FOUND,
            "That group does not exist (any more).".into(),
        )
    };
    let Ok(name) = username::group_name(name) else {
        return Err(not_found());
    };
    let group = match hub.store.group(&name) {
        Ok(Some(g)) => g,
        Ok(None) => return Err(not_found()),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a group");
            return Err(db_failed(hub, p, me));
        }
    };
    if groups::config_managed(Some(&group), &hub.config(), &name) {
        return Err(failed(
            hub,
            p,
            me,
            StatusCode::CONFLICT,
            groups::refusal(&name),
        ));
    }
    Ok(group)
}

/// A member change on a group the API manages: the group must exist and not be the config's.
async fn change_member(hub: Arc<Hub>, name: String, form: AdminForm, add: bool) -> Response {
    let AdminForm { p, me, fields: f } = form;
    let mut group = match api_group(&hub, &p, &me, &name) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let name = group.name.clone();
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
        groups_url(&hub),
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

/// `POST <hub>/admin/groups` (field `name`): create a group the API manages.
pub async fn create_group(State(hub): State<Arc<Hub>>, form: AdminForm) -> Response {
    let AdminForm { p, me, fields: f } = form;
    let name = match username::group_name(f.get("name")) {
        Ok(n) => n,
        Err(e) => return failed(&hub, &p, &me, StatusCode::BAD_REQUEST, format!("{e}.")),
    };
    match hub.store.group(&name) {
        Ok(Some(_)) => {
            let m = format!("A group named {name} exists already.");
            return failed(&hub, &p, &me, StatusCode::CONFLICT, m);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot read a group");
            return db_failed(&hub, &p, &me);
        }
    }
    let group = GroupRecord {
        name: name.clone(),
        managed_by: ManagedBy::Api,
        ..Default::default()
    };
    if let Err(e) = hub.store.put_group(&group) {
        tracing::error!(error = %e, "cannot create a group");
        return db_failed(&hub, &p, &me);
    }
    flush(&hub).await;
    tracing::info!(admin = %me.name, group = %name, "group created on the admin page");
    layout::redirect(&format!(
        "{}?done=group-created&group={}",
        groups_url(&hub),
        urlencoding::encode(&name)
    ))
}

/// `POST <hub>/admin/groups/<name>/delete`: delete a group the API manages (its members keep
/// their accounts; shares granted to the group go).
pub async fn delete_group(
    State(hub): State<Arc<Hub>>,
    Path(name): Path<String>,
    form: AdminForm,
) -> Response {
    let AdminForm { p, me, .. } = form;
    let name = match api_group(&hub, &p, &me, &name) {
        Ok(g) => g.name,
        Err(r) => return r,
    };
    if let Err(e) = hub.store.delete_group(&name) {
        tracing::error!(error = %e, "cannot delete a group");
        return db_failed(&hub, &p, &me);
    }
    flush(&hub).await;
    tracing::info!(admin = %me.name, group = %name, "group deleted on the admin page");
    layout::redirect(&format!(
        "{}?done=group-deleted&group={}",
        groups_url(&hub),
        urlencoding::encode(&name)
    ))
}
