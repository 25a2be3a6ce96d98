//! `<hub>/accept-share?code=…`: a guest redeems a share code (JupyterHub 5's page). GET says
//! whose server the code opens and offers a button; the POST (with the session's CSRF token)
//! grants the share and sends the guest to the server. A code that expired or was revoked
//! gets a page saying so.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::forms::{self, Fields};
use super::layout::{self, Nav};
use crate::hub::Hub;
use crate::secrets;
use crate::session::{self, LoggedIn};

/// `GET <hub>/accept-share?code=…`.
pub async fn page(
    State(hub): State<Arc<Hub>>,
    LoggedIn(p): LoggedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let f = Fields::query(query.as_deref());
    let code = f.get("code");
    let now = chrono::Utc::now();
    let rec = hub
        .store
        .share_code_by_hash(&secrets::hash_token(code))
        .ok()
        .flatten()
        .filter(|c| !code.is_empty() && !c.is_expired(now));
    let Some(rec) = rec else {
        return layout::error_page(
            &hub,
            Some(&p),
            StatusCode::NOT_FOUND,
            "Share code not valid",
            "This share code is not valid: it has expired or was revoked. Ask for a new one.",
        );
    };
    let whose = if rec.server.is_empty() {
        format!("{}'s server", rec.owner)
    } else {
        format!("{}'s server {}", rec.owner, rec.server)
    };
    let body = html! {
        p.lead { "Accept access to " strong { (whose) } "?" }
        p { "You will be able to open it and run code in it while the share lasts. Its owner can revoke it at any time." }
        @if let Some(t) = &rec.expires_at {
            p.hint { "This code can be accepted until " (layout::time(Some(t), "")) "." }
        }
        form.inline method="post" action=(format!("{}accept-share", hub.hub_prefix())) {
            (forms::xsrf_input(&session::csrf_token(&p)))
            input type="hidden" name="code" value=(code);
            button type="submit" { "Accept" }
        }
    };
    layout::html_response(
        StatusCode::OK,
        layout::page(&hub, Some(&p), Nav::None, "Accept a share", body),
    )
}

/// `POST <hub>/accept-share`.
pub async fn accept(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let (p, user) = match forms::form_user(&hub, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match crate::sharing::redeem(&hub.store, &hub.config(), f.get("code"), &user.name) {
        Ok(share) => {
            if let Err(e) = hub.store.flush().await {
                tracing::error!(error = %e, "state flush failed");
            }
            layout::redirect(&hub.server_location(&share.owner, &share.server))
        }
        Err(msg) => layout::error_page(
            &hub,
            Some(&p),
            StatusCode::BAD_REQUEST,
            "Share not accepted",
            &msg,
        ),
    }
}
