//! Server-rendered HTML pages under `<base_url>hub/`: login, logout, home, spawn pending,
//! change password, tokens, admin. Usable without JavaScript; one small stylesheet.

pub mod session;

use std::sync::Arc;

use axum::Router;

use crate::hub::Hub;

/// Routes for the pages; `hub_prefix` is `<base_url>hub` (no trailing slash).
pub fn router(_hub_prefix: &str) -> Router<Arc<Hub>> {
    Router::new()
}
