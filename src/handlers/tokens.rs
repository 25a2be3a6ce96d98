//! The token page (`<hub>/token`): the user's API tokens with a revoke button each, and a form
//! to create one. A new token is shown exactly once, on the answer to the creating POST, which
//! is never cached.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use maud::{html, Markup};

use super::forms::{self, Fields};
use super::layout::{self, Nav, Notice};
use crate::hub::{Hub, Principal};
use crate::session::{self, LoggedIn};
use crate::state::{TokenKind, TokenOwner, TokenRecord, UserRecord};

/// The lifetimes offered by the form: (field value, label, seconds).
const EXPIRY_CHOICES: &[(&str, &str, Option<i64>)] = &[
    ("never", "Never", None),
    ("86400", "1 day", Some(86_400)),
    ("604800", "1 week", Some(604_800)),
    ("2592000", "30 days", Some(2_592_000)),
];

const MAX_NOTE: usize = 1000;

/// The user's live API tokens, newest first.
fn api_tokens(hub: &Hub, user: &str) -> Vec<TokenRecord> {
    let now = Utc::now();
    let mut list: Vec<TokenRecord> = hub
        .store
        .tokens_of(&TokenOwner::User(user.to_string()))
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.kind == TokenKind::Api && !t.is_expired(now))
        .collect();
    list.sort_by_key(|t| std::cmp::Reverse(t.created));
    list
}

/// `GET <hub>/token`.
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
    let notices = match q.get("msg") {
        "revoked" => vec![Notice::Info("The token has been revoked.".into())],
        _ => Vec::new(),
    };
    render(&hub, &p, &user, StatusCode::OK, notices, None)
}

fn render(
    hub: &Hub,
    p: &Principal,
    user: &UserRecord,
    status: StatusCode,
    notices: Vec<Notice>,
    created: Option<Markup>,
) -> Response {
    let hp = hub.hub_prefix();
    let csrf = session::csrf_token(p);
    let tokens = api_tokens(hub, &user.name);
    let body = html! {
        (layout::notices(&notices))
        @if let Some(c) = created { (c) }
        section aria-labelledby="new-heading" {
            h2 #new-heading { "Request a new API token" }
            p { "An API token lets scripts and tools act as you on this hub's REST API. Send it as "
                code { "Authorization: token <token>" } "." }
            form.stack method="post" action=(format!("{hp}token")) {
                (forms::xsrf_input(&csrf))
                div.field {
                    label for="note" { "Note" }
                    input #note type="text" name="note" maxlength=(MAX_NOTE) aria-describedby="note-hint";
                    p.hint #note-hint { "What the token is for, so you recognise it later." }
                }
                div.field {
                    label for="expires_in" { "Expires in" }
                    select #expires_in name="expires_in" {
                        @for (value, label, _) in EXPIRY_CHOICES {
                            option value=(value) { (label) }
                        }
                    }
                }
                div { button type="submit" { "Request new API token" } }
            }
        }
        section aria-labelledby="list-heading" {
            h2 #list-heading { "Your API tokens" }
            @if tokens.is_empty() {
                p { "You have no API tokens." }
            } @else {
                div.table-wrap {
                    table {
                        thead {
                            tr {
                                th scope="col" { "Note" }
                                th scope="col" { "Starts with" }
                                th scope="col" { "Created" }
                                th scope="col" { "Expires" }
                                th scope="col" { "Last used" }
                                th scope="col" { span.visually-hidden { "Actions" } }
                            }
                        }
                        tbody {
                            @for t in &tokens {
                                tr {
                                    td { @if t.note.is_empty() { span.muted { "(no note)" } } @else { (t.note) } }
                                    td { code { (t.prefix) "…" } }
                                    td { (layout::time(Some(&t.created), "")) }
                                    td { (layout::time(t.expires_at.as_ref(), "never")) }
                                    td { (layout::time(t.last_activity.as_ref(), "never")) }
                                    td {
                                        form.inline method="post" action=(format!("{hp}token/{}/revoke", t.id)) {
                                            (forms::xsrf_input(&csrf))
                                            button.danger.small type="submit"
                                                aria-label=(format!("Revoke token {} ({}…)", t.note, t.prefix)) { "Revoke" }
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
    let page = layout::page(hub, Some(p), Nav::Token, "API tokens", body);
    layout::no_store(layout::html_response(status, page))
}

/// `POST <hub>/token`: create a token and show it once.
pub async fn create(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let (p, user) = match forms::form_user(&hub, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let choice = f
        .opt("expires_in")
        .filter(|v| !v.is_empty())
        .unwrap_or("never");
    let Some((_, label, seconds)) = EXPIRY_CHOICES.iter().find(|(v, _, _)| *v == choice) else {
        let n = Notice::Error("Choose one of the offered lifetimes for the token.".into());
        return render(&hub, &p, &user, StatusCode::BAD_REQUEST, vec![n], None);
    };
    let note = f.get("note").trim();
    if note.chars().count() > MAX_NOTE {
        let n = Notice::Error(format!("The note is longer than {MAX_NOTE} characters."));
        return render(&hub, &p, &user, StatusCode::BAD_REQUEST, vec![n], None);
    }
    let note = if note.is_empty() {
        "Requested via the token page"
    } else {
        note
    };
    let expires = seconds.map(|s| Utc::now() + chrono::Duration::seconds(s));
    let issued = hub.issue_token(
        TokenOwner::User(user.name.clone()),
        TokenKind::Api,
        vec!["inherit".into()],
        note,
        expires,
    );
    let (token, rec) = match issued {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "cannot issue a token");
            let n = Notice::Error("The hub could not store the token; see the hub's log.".into());
            return render(
                &hub,
                &p,
                &user,
                StatusCode::INTERNAL_SERVER_ERROR,
                vec![n],
                None,
            );
        }
    };
    if let Err(e) = hub.store.flush().await {
        tracing::error!(error = %e, "cannot flush the state database");
    }
    tracing::info!(user = %user.name, token = %rec.id, "API token created on the token page");
    let shown = html! {
        section.panel aria-labelledby="created-heading" {
            h2 #created-heading { "Your new API token" }
            div.notice.info role="status" {
                p { strong { "Copy this token now: it will not be shown again." }
                    " It expires: " (if seconds.is_some() { format!("in {}", label.to_lowercase()) } else { "never".to_string() }) "." }
            }
            div.field {
                label for="new-token" { "Token" }
                input #new-token.token type="text" readonly value=(token) autocomplete="off" spellcheck="false";
            }
            p.hint { "Note: " (rec.note) }
        }
    };
    render(&hub, &p, &user, StatusCode::OK, Vec::new(), Some(shown))
}

/// `POST <hub>/token/<id>/revoke`.
pub async fn revoke(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let f = Fields::parse(&body);
    let (p, user) = match forms::form_user(&hub, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let owner = TokenOwner::User(user.name.clone());
    let found = hub
        .store
        .token_by_id(&owner, &id)
        .ok()
        .flatten()
        .filter(|t| t.kind == TokenKind::Api);
    let Some(t) = found else {
        let n = Notice::Error(
            "No such token: it may have been revoked or have expired already.".into(),
        );
        return render(&hub, &p, &user, StatusCode::NOT_FOUND, vec![n], None);
    };
    let removed = hub.store.delete_token(&t.hash);
    let flushed = hub.store.flush().await;
    if let Err(e) = removed.and(flushed) {
        tracing::error!(error = %e, "cannot revoke a token");
        let n = Notice::Error("The hub could not revoke the token; see the hub's log.".into());
        return render(
            &hub,
            &p,
            &user,
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![n],
            None,
        );
    }
    tracing::info!(user = %user.name, token = %t.id, "API token revoked on the token page");
    layout::redirect(&format!("{}token?msg=revoked", hub.hub_prefix()))
}
