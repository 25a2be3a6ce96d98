//! `GET /api/kernels/{id}/channels`: the WebSocket ↔ ZeroMQ bridge, in the legacy framing
//! Jupyter Server uses towards a gateway ([`crate::kernels::ws`]).
//!
//! The upgrade is done by hand (hyper upgrade + tokio-tungstenite) rather than with axum's
//! `ws` feature. Known limit on the Jupyter Server link: tungstenite rejects text frames that
//! are not UTF-8, and Jupyter Server relays binary messages (widget buffers) as such frames.
//! Browsers therefore do not come this way: the proxy gives their kernel WebSockets to
//! [`super::direct`], which ends in the same bridge.
//!
//! Each socket registers with its [`Kernel`]: iopub reaches every
//! socket, replies go to the socket that sent the request. Messages from the socket are
//! re-signed with the kernel's key by the shared [`KernelClient`](crate::kernels::KernelClient).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::auth::GatewayUser;
use super::manager::{Kernel, START_TIMEOUT};
use super::{Gateway, GatewayError};
use crate::kernels::{kernel_to_ws, ws_to_kernel, Channel, RawMessage, WsFrame};

pub async fn handle(
    State(gw): State<Arc<Gateway>>,
    user: GatewayUser,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let Some(kernel) = gw
        .kernel_of(&user.name, &id)
        .filter(|k| k.server == user.server)
    else {
        return GatewayError::NoSuchKernel(id).into_response();
    };
    accept(gw, kernel, req)
}

/// Answer a WebSocket upgrade for `kernel` (no subprotocol: the legacy framing) and bridge it.
/// Used by [`handle`] (Jupyter Server's gateway client) and by [`super::direct`] (the browser).
pub fn accept(gw: Arc<Gateway>, kernel: Arc<Kernel>, mut req: Request) -> Response {
    let headers = req.headers();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return GatewayError::BadRequest("a WebSocket upgrade is required".into()).into_response();
    };
    if !is_upgrade {
        return GatewayError::BadRequest("a WebSocket upgrade is required".into()).into_response();
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    // A visitor's socket to a shared server ends when their access is revoked.
    let revocable = req.extensions().get::<crate::forward::Revocable>().cloned();
    let id = kernel.id.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                match revocable {
                    Some(r) => {
                        tokio::select! {
                            _ = bridge(gw, kernel, ws) => {}
                            _ = r.cancel.cancelled() => {
                                tracing::info!(kernel = %id, "a revoked visitor's kernel WebSocket was closed");
                            }
                        }
                        drop(r.on_end);
                    }
                    None => bridge(gw, kernel, ws).await,
                }
            }
            Err(e) => tracing::warn!(kernel = %id, error = %e, "kernel WebSocket upgrade failed"),
        }
    });
    let accept = derive_accept_key(key.as_bytes());
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// How often an idle socket is pinged; one that has not answered for three of these is gone
/// (a browser that vanished without closing, a proxy that cut the connection).
const PING_EVERY: Duration = Duration::from_secs(30);

/// Unregisters the socket from its kernel however the bridge ends.
struct Registered {
    kernel: Arc<Kernel>,
    socket: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.kernel.remove_socket(self.socket);
        tracing::debug!(kernel = %self.kernel.id, socket = self.socket, "kernel WebSocket closed");
    }
}

async fn bridge<S>(gw: Arc<Gateway>, kernel: Arc<Kernel>, ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (socket, mut from_kernel) = kernel.add_socket();
    let _registered = Registered {
        kernel: kernel.clone(),
        socket,
    };
    let (mut sink, mut stream) = ws.split();
    tracing::debug!(kernel = %kernel.id, socket, "kernel WebSocket opened");
    // Cells a restart of the daemon lost while they waited for a GPU get their answer.
    kernel.answer_lost_cells();
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            incoming = stream.next() => {
                heard = tokio::time::Instant::now();
                let payload = match incoming {
                    Some(Ok(Message::Text(t))) => bytes::Bytes::from(t),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        tracing::debug!(kernel = %kernel.id, error = %e, "kernel WebSocket read failed");
                        break;
                    }
                };
                match ws_to_kernel(&payload) {
                    Ok((channel, msg)) => deliver(&gw, &kernel, socket, channel, msg).await,
                    Err(e) => {
                        tracing::warn!(kernel = %kernel.id, error = %e, "dropping a WebSocket message");
                    }
                }
            }
            out = from_kernel.recv() => {
                let Some((channel, msg)) = out else { break };
                let frame = match kernel_to_ws(channel, &msg) {
                    Ok(WsFrame::Text(t)) => Message::Text(t.into()),
                    Ok(WsFrame::Binary(b)) => Message::Binary(b),
                    Err(e) => {
                        tracing::warn!(kernel = %kernel.id, error = %e, "dropping a kernel message");
                        continue;
                    }
                };
                if sink.send(frame).await.is_err() {
                    break;
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > 3 * PING_EVERY {
                    tracing::debug!(kernel = %kernel.id, socket, "kernel WebSocket silent; closing it");
                    break;
                }
                if sink.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

/// One message from a socket to the kernel: activity, re-creation of a reclaimed kernel, the
/// reply route, the send. Holds the kernel's use guard throughout, so the container cannot be
/// reclaimed under it.
async fn deliver(
    gw: &Gateway,
    kernel: &Arc<Kernel>,
    socket: u64,
    channel: Channel,
    msg: RawMessage,
) {
    let _in_use = kernel.use_guard().await;
    let msg_type = msg.msg_type().unwrap_or_default();
    // Only real traffic counts as activity (not the clients' periodic probes).
    if msg_type != "kernel_info_request" && msg_type != "comm_info_request" {
        kernel.touch();
        // Kernel work is work on the user's server too (its culler must not stop a server
        // whose kernels are in use; the browser bypasses the server).
        gw.services.activity.traffic(&kernel.user, &kernel.server);
    }
    if channel == Channel::Shell {
        kernel.remember_shell_request(&msg);
    }
    gw.ensure_running(kernel, channel, &msg).await;
    // Waiting for a GPU: Orrery answers or holds it until the kernel runs.
    if gw.hold_if_waiting(kernel, socket, channel, &msg) {
        return;
    }
    let Some(client) = kernel.client(START_TIMEOUT).await else {
        tracing::warn!(kernel = %kernel.id, "kernel not running; dropping a message");
        // Tell the notebook why nothing happens (a probe gets no answer at all).
        if let Some(reason) = kernel.dead_reason() {
            if channel == Channel::Shell && msg_type == "execute_request" {
                kernel.notify(&super::manager::dead_notice(&reason), Some(&msg));
            }
        }
        return;
    };
    send_routed(kernel, &client, socket, channel, msg).await;
}

/// Send `msg` from `socket` to the kernel. Requests get replies (and `input_request`s) routed
/// back to that socket. Other shell messages (comm_open/comm_msg/comm_close) get none:
/// remembering them would grow the routing table with every widget message.
pub async fn send_routed(
    kernel: &Kernel,
    client: &crate::kernels::KernelClient,
    socket: u64,
    channel: Channel,
    msg: RawMessage,
) {
    let is_request = msg.msg_type().is_ok_and(|t| t.ends_with("_request"));
    let route = (is_request && matches!(channel, Channel::Shell | Channel::Control))
        .then(|| msg.msg_id().ok())
        .flatten();
    if let Some(id) = &route {
        kernel.route(id.clone(), socket);
    }
    if let Err(e) = client.send(channel, msg).await {
        tracing::warn!(kernel = %kernel.id, error = %e, "sending to the kernel failed");
        if let Some(id) = &route {
            kernel.unroute(id);
        }
    }
}
