//! The JupyterHub-compatible REST API under `<base_url>hub/api`, one file per resource.
//!
//! * [`root`]: version, info, `GET /user`.
//! * [`users`]: users and their activity. [`servers`]: start/stop/progress.
//! * [`tokens`], [`groups`]: their resources. [`shares`]: sharing servers (JupyterHub 5).
//!   [`oauth2`]: the OAuth provider.
//! * [`orrery`]: Orrery's own admin endpoints (config reload). [`environment`]: the software
//!   environment's record for `orrery env`.
//! * [`base`] and [`models`]: errors, auth extraction, pagination, JSON models.

pub mod base;
pub mod environment;
pub mod groups;
pub mod models;
pub mod oauth2;
pub mod orrery;
pub mod root;
pub mod servers;
pub mod shares;
pub mod tokens;
pub mod users;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::hub::Hub;

/// The JupyterHub API version Orrery implements: the REST API of JupyterHub 6 (single-user
/// servers warn when it differs from their own jupyterhub package; the idle culler needs ≥ 1.3
/// for server-side state filters).
pub const JUPYTERHUB_API_VERSION: &str = "6.1.1";

pub fn router() -> Router<Arc<Hub>> {
    Router::new()
        .route("/", get(root::version))
        .route("/info", get(root::info))
        .route("/user", get(root::whoami))
        .route("/users", get(users::list).post(users::create_many))
        .route(
            "/users/{name}",
            get(users::get)
                .post(users::create_one)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/users/{name}/activity", post(users::activity))
        .route(
            "/users/{name}/server",
            post(servers::start_default).delete(servers::stop_default),
        )
        .route("/users/{name}/server/progress", get(servers::progress))
        .route(
            "/users/{name}/servers/{server}/progress",
            get(servers::progress),
        )
        .route(
            "/users/{name}/servers/{server}",
            post(servers::start_named).delete(servers::stop_named),
        )
        .route(
            "/users/{name}/tokens",
            get(tokens::list).post(tokens::create),
        )
        .route(
            "/users/{name}/tokens/{id}",
            get(tokens::get).delete(tokens::delete),
        )
        .route("/groups", get(groups::list))
        .route(
            "/groups/{name}",
            get(groups::get).post(groups::create).delete(groups::delete),
        )
        .route(
            "/groups/{name}/users",
            post(groups::add_users).delete(groups::remove_users),
        )
        .route("/shares/{owner}", get(shares::list_owner))
        .route(
            "/shares/{owner}/{server}",
            get(shares::list_server)
                .post(shares::grant)
                .patch(shares::revoke)
                .delete(shares::revoke_all),
        )
        // The default server's name is empty: `/shares/alice/` (JupyterHub's form).
        .route(
            "/shares/{owner}/",
            get(shares::list_server)
                .post(shares::grant)
                .patch(shares::revoke)
                .delete(shares::revoke_all),
        )
        .route("/users/{name}/shared", get(shares::list_shared_with))
        .route(
            "/users/{name}/shared/{owner}/{server}",
            get(shares::get_shared_with).delete(shares::leave),
        )
        .route(
            "/users/{name}/shared/{owner}/",
            get(shares::get_shared_with).delete(shares::leave),
        )
        .route("/groups/{name}/shared", get(shares::list_shared_with))
        .route(
            "/groups/{name}/shared/{owner}/{server}",
            get(shares::get_shared_with).delete(shares::leave),
        )
        .route(
            "/groups/{name}/shared/{owner}/",
            get(shares::get_shared_with).delete(shares::leave),
        )
        .route("/share-codes/{owner}", get(shares::list_codes))
        .route(
            "/share-codes/{owner}/{server}",
            get(shares::list_codes)
                .post(shares::issue_code)
                .delete(shares::revoke_code),
        )
        .route(
            "/share-codes/{owner}/",
            get(shares::list_codes)
                .post(shares::issue_code)
                .delete(shares::revoke_code),
        )
        .route("/oauth2/authorize", get(oauth2::authorize))
        .route("/oauth2/token", post(oauth2::token))
        .route("/orrery/reload", post(orrery::reload))
        .route("/orrery/gpus", get(orrery::gpus))
        .route("/orrery/tls", get(orrery::tls))
        .route("/orrery/status", get(orrery::status))
        .route("/orrery/routes", get(orrery::routes))
        .route("/orrery/state", get(orrery::export_state))
        .route(
            "/orrery/environment",
            get(environment::show).post(environment::commit),
        )
        .route("/orrery/environment/pruned", post(environment::pruned))
        .route("/orrery/users/{name}/password", post(orrery::set_password))
        .route("/orrery/users/{name}/purge", post(orrery::purge))
        .fallback(|| async { base::ApiError::not_found("no such API endpoint") })
}
