//! `<hub>/user-redirect/<path>`: JupyterHub's form of links that name a place in whoever opens
//! them's server, which is what course links are (an nbgitpuller `git-pull?repo=…` link, a
//! notebook to open). The visitor logs in if needed; a server that is not running is started
//! (with the profile a start that chooses nothing gets); then the browser goes to
//! `/user/<me>/<path>` (with the query), through the spawn-pending page while it starts.

use std::sync::Arc;

use axum::extract::{OriginalUri, State};
use axum::response::Response;

use super::forms;
use super::home::{self, Begun, ServerState};
use super::layout;
use crate::hub::Hub;
use crate::session::LoggedIn;

/// `GET <hub>/user-redirect/<path>[?query]`.
pub async fn redirect(
    State(hub): State<Arc<Hub>>,
    LoggedIn(p): LoggedIn,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let user = match forms::page_user(&hub, &p) {
        Ok(u) => u,
        Err(r) => return r,
    };
    // The path as sent (still percent-encoded), so it reaches the server as the link wrote it.
    let base = format!("{}user-redirect", hub.hub_prefix());
    let rest = uri
        .path()
        .strip_prefix(&base)
        .unwrap_or("")
        .trim_start_matches('/');
    // No way out of the user's own server, written plainly or percent-encoded.
    let climbs = |seg: &str| {
        let seg = urlencoding::decode(seg)
            .map(|s| s.into_owned())
            .unwrap_or_default();
        seg == ".." || seg == "." || seg.contains('/')
    };
    if rest.split('/').any(climbs) {
        return layout::not_found_page(&hub, Some(&p));
    }
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let next = format!("{}{rest}{query}", hub.server_prefix(&user.name, ""));
    let pending = || {
        layout::redirect(&format!(
            "{}?next={}",
            home::spawn_pending_url(&hub, &user.name, ""),
            urlencoding::encode(&next)
        ))
    };
    match home::server_state(&hub, &user.name, "") {
        ServerState::Running => layout::redirect(&home::ready_target(&hub, &user.name, "", &next)),
        ServerState::Starting => pending(),
        // The hub's own page for a server that stops: it says to come back.
        ServerState::Stopping => {
            layout::redirect(&format!("{}user/{}/{rest}", hub.hub_prefix(), user.name))
        }
        ServerState::Stopped => match home::start_server(&hub, &user).await {
            Ok(Begun::Ready) => layout::redirect(&home::ready_target(&hub, &user.name, "", &next)),
            Ok(Begun::Pending) => pending(),
            Err(e) => home::action_failed(&hub, &p, &user, e),
        },
    }
}
