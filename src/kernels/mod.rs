//! Kernels: Orrery's side of talking to Jupyter kernels, the protocol layer under the kernel
//! gateway ([`crate::gateway`]).
//!
//! With remote kernels a user's Jupyter Server runs in gateway mode (`JUPYTER_GATEWAY_URL`
//! pointing at Orrery) and sends all kernel management to the hub; Orrery starts each kernel in
//! its own container (so kernels can be limited, culled and re-created independently of the
//! notebook server) and bridges the kernel WebSocket to the kernel's ZeroMQ sockets. The
//! protocols are Jupyter's messaging spec (5.x) and what Jupyter Server's gateway client
//! (`jupyter_server/gateway/`) and JupyterLab actually send.
//!
//! Self-contained and tested against a real ipykernel (`tests/it/kernel_wire.rs`):
//!
//! * [`channel`]: the five channel names.
//! * [`connection`]: the kernel connection file ([`ConnectionInfo`]): fixed in-container
//!   ports, a fresh key per kernel.
//! * [`wire`]: Jupyter messages on ZeroMQ ([`RawMessage`]): split at `<IDS|MSG>`, HMAC-SHA256
//!   [`sign`]/[`verify`], JSON parts kept as raw bytes and re-signed when forwarded.
//! * [`ws`]: the legacy WebSocket framing (JSON text
//!   frames, binary frames for messages with buffers) and the conversions to and from
//!   [`RawMessage`].
//! * [`client`]: [`KernelClient`], the ZeroMQ connection to one kernel (shell/stdin/control
//!   DEALERs sharing one identity, iopub SUB, heartbeat REQ), with the gateway "nudge"
//!   ([`KernelClient::kernel_info`]).
//!
//! The gateway itself (REST API, kernel containers, the WebSocket handler that ties [`ws`] to
//! [`client`], culling and re-creation) is [`crate::gateway`].
//!
//! A known limit of the other end (read in Jupyter Server 2.21's `gateway/connections.py`): in
//! gateway mode it relays the browser's binary frames to the gateway *as text frames*
//! (`write_message(bytes)` without `binary=True`), and it decodes every frame from the gateway
//! as UTF-8 and passes it on to the browser as *text*, so messages with buffers (widgets) cannot
//! cross it. Orrery's proxy therefore hands the browser's kernel WebSocket straight to the
//! gateway ([`crate::gateway::direct`]); the user's server only authorizes it.

pub mod channel;
pub mod client;
pub mod connection;
pub mod wire;
pub mod ws;

pub use channel::{Channel, UnknownChannel};
pub use client::{KernelClient, KernelError, KernelMessage};
pub use connection::{ConnectionInfo, KernelPorts};
pub use wire::{sign, verify, RawMessage, SigningKey, WireError};
pub use ws::{kernel_to_ws, ws_to_kernel, WsError, WsFrame};
