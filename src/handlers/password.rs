//! Changing one's own password (`<hub>/auth/change-password`): current password, new password
//! and its confirmation, through [`crate::auth::change_password`]. Wrong current passwords count
//! against the same throttle as failed logins.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use maud::html;

use super::forms::{self, Fields};
use super::layout::{self, Nav, Notice};
use crate::auth::{self, LoginError};
use crate::config::AuthType;
use crate::hub::{Hub, Principal};
use crate::session::{self, LoggedIn};

/// `GET <hub>/auth/change-password`.
pub async fn form(State(hub): State<Arc<Hub>>, LoggedIn(p): LoggedIn) -> Response {
    render(&hub, &p, StatusCode::OK, None)
}

fn render(hub: &Hub, p: &Principal, status: StatusCode, notice: Option<Notice>) -> Response {
    let cfg = hub.config();
    let min = cfg.auth.firstuse.min_password_length;
    let body = if cfg.auth.kind == AuthType::Dummy {
        html! {
            p.lead { "This hub uses the dummy authenticator, which does not check passwords, so there is no password to change." }
        }
    } else {
        html! {
            @if let Some(n) = &notice { (n.render()) }
            form.stack method="post" action=(format!("{}auth/change-password", hub.hub_prefix())) {
                (forms::xsrf_input(&session::csrf_token(p)))
                div.field {
                    label for="current" { "Current password" }
                    input #current type="password" name="current_password" required autocomplete="current-password";
                }
                div.field {
                    label for="new" { "New password" }
                    input #new type="password" name="new_password" required minlength=(min)
                        autocomplete="new-password" aria-describedby="new-hint";
                    p.hint #new-hint { "At least " (min) " characters." }
                }
                div.field {
                    label for="confirm" { "Confirm new password" }
                    input #confirm type="password" name="confirm_password" required minlength=(min) autocomplete="new-password";
                }
                div { button type="submit" { "Change password" } }
            }
        }
    };
    layout::html_response(
        status,
        layout::page(hub, Some(p), Nav::Password, "Change password", body),
    )
}

/// `POST <hub>/auth/change-password`.
pub async fn submit(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let (p, user) = match forms::form_user(&hub, &headers, &f) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let cfg = hub.config();
    if cfg.auth.kind == AuthType::Dummy {
        return render(&hub, &p, StatusCode::BAD_REQUEST, None);
    }
    let (new, confirm) = (f.get("new_password"), f.get("confirm_password"));
    if new != confirm {
        let n = Notice::Error(
            "The new password and its confirmation differ; nothing was changed.".into(),
        );
        return render(&hub, &p, StatusCode::BAD_REQUEST, Some(n));
    }
    // Guessing the current password through this form is throttled like guessing it at login.
    let key = format!("user:{}", user.name);
    let (attempts, window) = (
        cfg.auth.rate_limit.attempts,
        cfg.auth.rate_limit.window.as_std(),
    );
    if let Err(wait) = hub.limiter.check(&key, attempts, window) {
        let e = LoginError::RateLimited(wait);
        let mut resp = render(
            &hub,
            &p,
            StatusCode::TOO_MANY_REQUESTS,
            Some(Notice::Error(e.to_string())),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    match auth::change_password(&hub, &user.name, f.get("current_password"), new).await {
        Ok(()) => {
            tracing::info!(user = %user.name, "password changed");
            render(
                &hub,
                &p,
                StatusCode::OK,
                Some(Notice::Info("Your password has been changed.".into())),
            )
        }
        Err(LoginError::BadCredentials) => {
            hub.limiter.record_failure(&key);
            let n = Notice::Error("The current password is wrong; nothing was changed.".into());
            render(&hub, &p, StatusCode::FORBIDDEN, Some(n))
        }
        Err(e @ LoginError::PasswordTooShort(_)) => render(
            &hub,
            &p,
            StatusCode::BAD_REQUEST,
            Some(Notice::Error(format!("{e}; nothing was changed."))),
        ),
        Err(e) => {
            tracing::error!(error = %e, "changing a password failed");
            let n =
                Notice::Error("The hub could not change the password; see the hub's log.".into());
            render(&hub, &p, StatusCode::INTERNAL_SERVER_ERROR, Some(n))
        }
    }
}
