//! Server-rendered HTML pages under `<base_url>hub/`: login, logout, home, spawn pending,
//! change password, tokens, admin. Usable without JavaScript; one small stylesheet.
//!
//! * [`crate::session`] (beside this module, shared with the OAuth provider): the login cookie, the logged-in extractor, CSRF tokens.
//! * [`layout`]: the page frame, navigation, error and 404 pages, security headers.
//! * [`forms`]: form parsing and the checks every POST handler runs first.
//! * [`accept_share`]: redeeming a share code.
//! * [`login`], [`home`] (with [`named_servers`] and [`home_shares`]), [`spawn_form`] (the profile choice), [`spawn`] (progress), [`password`], [`tokens`], [`admin`] (with [`admin_groups`] and [`admin_gpus`]), [`user`]: one page
//!   (or a few closely related ones) each. [`assets`]: the stylesheet and the progress script.

pub mod accept_share;
pub mod admin;
mod admin_environment;
pub mod admin_gpus;
pub mod admin_groups;
pub mod assets;
pub mod forms;
pub mod home;
pub mod home_shares;
pub mod layout;
pub mod login;
pub mod named_servers;
pub mod oauth;
pub mod password;
pub mod spawn;
pub mod spawn_form;
pub mod tokens;
pub mod user;
pub mod user_redirect;

use std::sync::Arc;

use axum::middleware;
use axum::routing::{any, get, post};
use axum::Router;

use crate::hub::Hub;

/// Routes for the pages; `hub_prefix` is `<base_url>hub` (no trailing slash). The routes are
/// absolute, under `hub_prefix`. (`<base_url>user/<name>/…` belongs to [`crate::proxy`], which
/// redirects here, to `<hub>/user/<name>/…`, when the server is not running.)
pub fn router(hub_prefix: &str) -> Router<Arc<Hub>> {
    let hp = hub_prefix.trim_end_matches('/');
    let at = |p: &str| format!("{hp}{p}");
    Router::new()
        .route(&at(""), get(login::root))
        .route(&at("/"), get(login::root))
        .route(&at("/login"), get(login::form).post(login::submit))
        .route(&at("/oauth_login"), get(oauth::login))
        .route(&at("/oauth_callback"), get(oauth::callback))
        .route(
            &at("/logout"),
            get(login::logout_get).post(login::logout_post),
        )
        .route(&at("/home"), get(home::page))
        .route(
            &at("/accept-share"),
            get(accept_share::page).post(accept_share::accept),
        )
        .route(&at("/home/start"), post(home::start))
        .route(&at("/home/stop"), post(home::stop))
        .route(&at("/home/servers"), post(named_servers::create))
        .route(&at("/home/shares"), post(home_shares::share))
        .route(&at("/home/shares/revoke"), post(home_shares::revoke))
        .route(&at("/home/share-codes"), post(home_shares::make_code))
        .route(
            &at("/home/servers/{server}/{what}"),
            post(named_servers::act),
        )
        .route(
            &at("/spawn"),
            get(spawn_form::page).post(spawn_form::submit),
        )
        .route(
            &at("/spawn/{user}"),
            get(spawn_form::page).post(spawn_form::submit),
        )
        .route(
            &at("/spawn/{user}/"),
            get(spawn_form::page).post(spawn_form::submit),
        )
        .route(
            &at("/spawn/{user}/{server}"),
            get(spawn_form::page).post(spawn_form::submit),
        )
        .route(&at("/spawn-pending/{name}"), get(spawn::page))
        .route(&at("/spawn-pending/{name}/progress"), get(spawn::progress))
        .route(&at("/spawn-pending/{name}/{server}"), get(spawn::page))
        .route(
            &at("/spawn-pending/{name}/{server}/progress"),
            get(spawn::progress),
        )
        .route(
            &at("/auth/change-password"),
            get(password::form).post(password::submit),
        )
        .route(&at("/token"), get(tokens::page).post(tokens::create))
        .route(&at("/token/{id}/revoke"), post(tokens::revoke))
        .route(&at("/admin"), get(admin::page))
        .route(&at("/admin/users"), post(admin::add_users))
        .route(&at("/admin/users/{name}/start"), post(admin::start))
        .route(&at("/admin/users/{name}/stop"), post(admin::stop))
        .route(
            &at("/admin/users/{name}/servers/{server}/stop"),
            post(admin::stop_named),
        )
        .route(
            &at("/admin/users/{name}/make-admin"),
            post(admin::make_admin),
        )
        .route(
            &at("/admin/users/{name}/remove-admin"),
            post(admin::remove_admin),
        )
        .route(
            &at("/admin/users/{name}/delete"),
            get(admin::delete_confirm).post(admin::delete),
        )
        .route(
            &at("/admin/groups"),
            get(admin_groups::page).post(admin_groups::create_group),
        )
        .route(
            &at("/admin/groups/{name}/delete"),
            post(admin_groups::delete_group),
        )
        .route(&at("/admin/servers"), post(admin::bulk))
        .route(&at("/admin/gpus"), get(admin_gpus::page))
        .route(&at("/admin/gpus/reclaim"), post(admin_gpus::reclaim))
        .route(
            &at("/admin/users/{name}/password"),
            post(admin::reset_password),
        )
        .route(
            &at("/admin/groups/{name}/add-user"),
            post(admin_groups::add_group_user),
        )
        .route(
            &at("/admin/groups/{name}/remove-user"),
            post(admin_groups::remove_group_user),
        )
        .route(&at("/user/{name}"), get(user::page))
        .route(&at("/user/{name}/"), get(user::page))
        .route(&at("/user/{name}/{*rest}"), get(user::page))
        .route(&at("/static/style.css"), get(assets::style))
        .route(&at("/logo"), get(layout::logo))
        .route(&at("/user-redirect/{*path}"), get(user_redirect::redirect))
        .route(&at("/user-redirect/"), get(user_redirect::redirect))
        .route(&at("/static/spawn.js"), get(assets::spawn_js))
        .route(&at("/{*rest}"), any(layout::not_found))
        .layer(middleware::map_response(layout::security_headers))
}
