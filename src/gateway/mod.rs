//! The kernel gateway: Orrery answers the calls Jupyter Server's gateway client makes
//! (`JUPYTER_GATEWAY_URL` = `<internal api><base_url>hub/gateway`) and runs every kernel in its
//! own container next to the user's notebook container.
//!
//! * [`error`]: [`GatewayError`], a status for each kind of failure.
//! * [`auth`]: the per-user gateway token (`TokenKind::Gateway`) → the user.
//! * [`kernelspecs`]: `GET /api/kernelspecs[/{name}]` from `[[kernels.specs]]`.
//! * [`kernels`]: the `/api/kernels` handlers (create, list, get, delete, interrupt, restart).
//! * [`manager`]: the registry of kernels and their lifecycle.
//! * [`state`]: a kernel's execution state.
//! * [`gpus`]: GPU units for kernels that ask for them, leased while their container runs;
//!   the scheduler loop (grants, reclaims, waits that run out).
//! * [`queue`]: a kernel waiting for a GPU: Orrery answers for it and holds its cells.
//! * [`record`]: one file per kernel, so kernels outlive a restart of the daemon.
//! * [`runtime`]: the kernel runtime contract; [`containers`] (a container per kernel,
//!   bollard) and [`local`] (a process per kernel on this machine) implement it.
//! * [`channels`]: the WebSocket ↔ ZeroMQ bridge (`/api/kernels/{id}/channels`).
//! * [`direct`]: the browser's kernel WebSocket, handed over by the proxy and bridged here
//!   without the user's Jupyter Server in the middle (it still authorizes it).
//!
//! Mounted on the internal listener only (see `serve.rs`). Nothing here is reachable unless
//! `kernels.remote = true`, because only then are gateway tokens minted.

pub mod auth;
pub mod channels;
pub mod containers;
pub mod direct;
pub mod error;
pub mod gpus;
pub mod kernels;
pub mod kernelspecs;
pub mod local;
pub mod manager;
pub mod pods;
pub mod queue;
pub mod record;
pub mod runtime;
pub mod state;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

pub use error::GatewayError;
pub use manager::{Gateway, Services};
pub use runtime::KernelRuntime;

/// The gateway's routes under `<base_url>hub/gateway`.
pub fn router(gw: Arc<Gateway>) -> Router {
    let prefix = format!("{}hub/gateway", gw.services.config.get().base_url);
    Router::new()
        .route(&format!("{prefix}/api/kernelspecs"), get(kernelspecs::list))
        .route(
            &format!("{prefix}/api/kernelspecs/{{name}}"),
            get(kernelspecs::one),
        )
        .route(
            &format!("{prefix}/kernelspecs/{{name}}/{{*resource}}"),
            get(kernelspecs::resource),
        )
        .route(
            &format!("{prefix}/api/kernels"),
            get(kernels::list).post(kernels::create),
        )
        .route(
            &format!("{prefix}/api/kernels/{{id}}"),
            get(kernels::get_one).delete(kernels::delete),
        )
        .route(
            &format!("{prefix}/api/kernels/{{id}}/interrupt"),
            post(kernels::interrupt),
        )
        .route(
            &format!("{prefix}/api/kernels/{{id}}/restart"),
            post(kernels::restart),
        )
        .route(
            &format!("{prefix}/api/kernels/{{id}}/channels"),
            get(channels::handle),
        )
        .with_state(gw)
}
