//! Sharing from the home page, without JavaScript: the servers shared with me (with Open links),
//! and, where sharing is allowed, a form to share my default server with a user or a group,
//! its current shares with Revoke buttons, and a button that makes a share link (shown once).
//! The rules are [`crate::sharing`]'s, the same as the API's.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};

use super::forms::{self, Fields};
use super::home;
use super::layout::{self, Nav, Notice};
use crate::hub::{Hub, Principal};
use crate::session;
use crate::sharing;
use crate::state::{Grantee, ShareRecord, UserRecord};
use crate::username;

/// The home page's sharing section for `user`.
pub fn section(hub: &Hub, p: &Principal, user: &UserRecord) -> Markup {
    let hp = hub.hub_prefix();
    let csrf = session::csrf_token(p);
    let groups = hub.groups_of(&user.name);
    let with_me = sharing::grants_for(&hub.store, &user.name, &groups);
    let allowed = sharing::allowed(&hub.config()).is_ok();
    let mine = hub
        .store
        .shares_of_server(&user.name, "")
        .unwrap_or_default();
    html! {
        @if !with_me.is_empty() {
            section aria-labelledby="shared-heading" {
                h2 #shared-heading { "Shared with me" }
                ul {
                    @for s in &with_me {
                        li {
                            (owner_label(s)) " "
                            a href=(hub.server_location(&s.owner, &s.server)) { "Open" }
                            @if let Grantee::Group(g) = &s.grantee { " " span.muted { "(through group " (g) ")" } }
                        }
                    }
                }
            }
        }
        @if allowed {
            section aria-labelledby="share-heading" {
                h2 #share-heading { "Share my server" }
                p.hint { "Whoever you share with can open your server and run code in it, as you, until you revoke it." }
                form.inline method="post" action=(format!("{hp}home/shares")) {
                    (forms::xsrf_input(&csrf))
                    label for="share-with" { "Share with" }
                    " "
                    select name="kind" aria-label="user or group" {
                        option value="user" { "user" }
                        option value="group" { "group" }
                    }
                    " "
                    input #share-with name="name" required;
                    " "
                    button.small type="submit" { "Share" }
                }
                @if !mine.is_empty() {
                    ul #my-shares {
                        @for s in &mine {
                            li {
                                (grantee_label(&s.grantee)) " "
                                form.inline method="post" action=(format!("{hp}home/shares/revoke")) {
                                    (forms::xsrf_input(&csrf))
                                    input type="hidden" name="grantee" value=(grantee_key(&s.grantee));
                                    button.small.secondary type="submit" aria-label=(format!("Revoke {}", grantee_label(&s.grantee))) { "Revoke" }
                                }
                            }
                        }
                    }
                }
                form.inline method="post" action=(format!("{hp}home/share-codes")) {
                    (forms::xsrf_input(&csrf))
                    button.small.secondary type="submit" { "Make a share link" }
                    " " span.hint { "valid for " (humantime(hub.config().sharing.code_max_age.as_std().as_secs())) }
                }
            }
        }
    }
}

fn owner_label(s: &ShareRecord) -> String {
    if s.server.is_empty() {
        format!("{}'s server", s.owner)
    } else {
        format!("{}'s server {}", s.owner, s.server)
    }
}

fn grantee_label(g: &Grantee) -> String {
    match g {
        Grantee::User(u) => format!("user {u}"),
        Grantee::Group(g) => format!("group {g}"),
    }
}

/// `user:<name>` / `group:<name>`, the Revoke form's value.
fn grantee_key(g: &Grantee) -> String {
    match g {
        Grantee::User(u) => format!("user:{u}"),
        Grantee::Group(g) => format!("group:{g}"),
    }
}

fn humantime(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{} day(s)", s / 86_400),
        s if s % 3_600 == 0 => format!("{} hour(s)", s / 3_600),
        s => format!("{} minute(s)", s.div_ceil(60)),
    }
}

/// The home page with a notice that the state database failed (logged by the caller).
fn db_failed(hub: &Hub, p: &Principal, user: &UserRecord) -> Response {
    home::failed(
        hub,
        p,
        user,
        "The hub's state database failed; see the hub's log.".into(),
    )
}

fn back(hub: &Hub, msg: &str) -> Response {
    layout::redirect(&format!("{}home?msg={msg}", hub.hub_prefix()))
}

/// `POST <hub>/home/shares` (fields `kind` = user|group, `name`): share my default server.
pub async fn share(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let f = Fields::parse(&body);
    let (p, user) = match forms::form_user(&hub, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(e) = sharing::allowed(&hub.config()) {
        return home::failed(&hub, &p, &user, e.to_string());
    }
    let name = f.get("name").trim();
    let grantee = match f.get("kind") {
        "group" => match hub.store.group(name) {
            Ok(Some(_)) => Grantee::Group(name.to_string()),
            _ => return home::failed(&hub, &p, &user, format!("No such group: {name}.")),
        },
        _ => match username::normalize(name) {
            Ok(n) if n == user.name => {
                return home::failed(
                    &hub,
                    &p,
                    &user,
                    "This is your own server: you need no share to open it.".into(),
                )
            }
            Ok(n) if matches!(hub.store.user(&n), Ok(Some(_))) => Grantee::User(n),
            _ => return home::failed(&hub, &p, &user, format!("No such user: {name}.")),
        },
    };
    let existing = hub.store.share(&user.name, "", &grantee).ok().flatten();
    let scopes = sharing::default_scopes(&user.name, "");
    let share = sharing::widened(existing, &user.name, "", grantee, &scopes);
    if let Err(e) = hub.store.put_share(&share) {
        tracing::error!(error = %e, "cannot store a share");
        return db_failed(&hub, &p, &user);
    }
    let _ = hub.store.flush().await;
    tracing::info!(owner = %user.name, grantee = ?share.grantee, "server shared from the home page");
    back(&hub, "shared")
}

/// `POST <hub>/home/shares/revoke` (field `grantee` = `user:<name>` | `group:<name>`).
pub async fn revoke(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let f = Fields::parse(&body);
    let (p, user) = match forms::form_user(&hub, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let grantee = match f.get("grantee").split_once(':') {
        Some(("user", n)) => Grantee::User(n.to_string()),
        Some(("group", n)) => Grantee::Group(n.to_string()),
        _ => return home::failed(&hub, &p, &user, "Say whose share to revoke.".into()),
    };
    if let Err(e) = hub.store.delete_share(&user.name, "", &grantee) {
        tracing::error!(error = %e, "cannot delete a share");
        return db_failed(&hub, &p, &user);
    }
    let _ = hub.store.flush().await;
    hub.enforce_access(&user.name, "");
    tracing::info!(owner = %user.name, grantee = ?grantee, "share revoked from the home page");
    back(&hub, "revoked")
}

/// `POST <hub>/home/share-codes`: a share link for my default server, shown once.
pub async fn make_code(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let f = Fields::parse(&body);
    let (p, user) = match forms::form_user(&hub, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let cfg = hub.config();
    if let Err(e) = sharing::allowed(&cfg) {
        return home::failed(&hub, &p, &user, e.to_string());
    }
    let secs = cfg.sharing.code_max_age.as_std().as_secs() as i64;
    let scopes = sharing::default_scopes(&user.name, "");
    let (code, rec) = sharing::new_code(&user.name, "", scopes, secs);
    if let Err(e) = hub.store.put_share_code(&rec) {
        tracing::error!(error = %e, "cannot store a share code");
        return db_failed(&hub, &p, &user);
    }
    let _ = hub.store.flush().await;
    let path = format!("{}accept-share?code={code}", hub.hub_prefix());
    let link = match hub.origins() {
        Some(o) => format!("{}{path}", o.hub_origin()),
        None => path,
    };
    let body = html! {
        (Notice::Info("Your share link is below. It is shown only this once: copy it now.".into()).render())
        p { code #share-link { (link) } }
        p { "Whoever opens it while logged in can accept access to your server until "
            (layout::time(rec.expires_at.as_ref(), "")) ". Revoke accepted shares on your home page." }
        p { a href=(format!("{}home", hub.hub_prefix())) { "Back to your home page" } }
    };
    layout::html_response(
        StatusCode::OK,
        layout::page(&hub, Some(&p), Nav::Home, "Share link", body),
    )
}
