//! The hub's ZeroMQ connection to one kernel: the client half of Jupyter's five channels.
//!
//! | channel | client socket | kernel socket |
//! | --- | --- | --- |
//! | shell | DEALER, identity = session id | ROUTER |
//! | stdin | DEALER, **same** identity | ROUTER |
//! | control | DEALER, same identity | ROUTER |
//! | iopub | SUB, subscribed to everything | PUB / XPUB |
//! | hb | REQ | REP |
//!
//! Shell and stdin must share one identity: the kernel sends `input_request` on stdin to the
//! identity that sent the `execute_request` on shell, so with two identities `input()` has
//! nobody to ask. The `zeromq` crate sets a socket's identity with
//! [`SocketOptions::peer_identity`] (sent in the ZMTP READY handshake), as `jupyter_client`
//! does with `zmq.IDENTITY = session id`.
//!
//! Everything received on shell, control, stdin and iopub comes out of one channel
//! ([`KernelClient::take_receiver`]) as `(Channel, RawMessage)`, in arrival order per socket,
//! after its signature has been checked (a bad one is dropped with a warning). Messages go in
//! with [`KernelClient::send`], which re-signs them with the kernel's key.
//!
//! [`KernelClient::kernel_info`] is the gateway "nudge" (`ZMQChannelsWebsocketConnection.nudge`
//! in Jupyter Server): a fresh SUB socket misses what the kernel publishes until its subscription
//! has travelled to the kernel, and nobody can tell when that happened except by seeing a
//! message arrive. So `kernel_info_request` is sent every 0.5 s on transient shell and control
//! sockets (their replies do not leak into the receiver) until a reply *and* an iopub message
//! have arrived.
//!
//! Reconnection (zeromq 0.7): the SUB socket reconnects by itself and re-subscribes; DEALER and
//! REQ sockets do not. After the kernel process restarts, [`KernelClient::send`] fails with
//! [`KernelError::Disconnected`] and nothing more arrives on shell/control/stdin: connect a new
//! `KernelClient`. [`KernelClient::heartbeat`] and [`KernelClient::kernel_info`] open their
//! own sockets when needed, so they succeed against a restarted kernel even when this client's
//! shell is dead: they say the kernel is alive, not that this client can reach it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zeromq::util::PeerIdentity;
use zeromq::{
    DealerSendHalf, DealerSocket, ReqSocket, Socket, SocketOptions, SocketRecv, SocketSend,
    SubSocket, ZmqError, ZmqMessage,
};

use super::channel::Channel;
use super::connection::{ConnectionInfo, SIGNATURE_SCHEME, TRANSPORT_TCP};
use super::wire::{RawMessage, SigningKey};

/// How long [`KernelClient::connect`] waits for the kernel's ports to accept connections.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`KernelClient::kernel_info`] repeats its `kernel_info_request` (Jupyter Server's).
pub const NUDGE_INTERVAL: Duration = Duration::from_millis(500);
/// Messages buffered between the socket readers and the receiver; when full, reading stops
/// and ZeroMQ's own queues fill up (iopub then drops at the kernel's high-water mark).
pub const RECEIVE_QUEUE: usize = 1024;
/// Pause after a socket read error before reading again.
const READ_RETRY: Duration = Duration::from_millis(100);

/// A message received from the kernel and the channel it came on.
pub type KernelMessage = (Channel, RawMessage);

/// Why talking to a kernel failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("kernel connection info uses transport {0:?}; Orrery only speaks tcp")]
    UnsupportedTransport(String),
    #[error("kernel connection info uses signature scheme {0:?}; Orrery only speaks hmac-sha256")]
    UnsupportedSignatureScheme(String),
    #[error("connecting the kernel's {channel} socket at {endpoint}: {source}")]
    Connect {
        channel: Channel,
        endpoint: String,
        #[source]
        source: Box<ZmqError>,
    },
    #[error("subscribing to the kernel's iopub at {endpoint}: {source}")]
    Subscribe {
        endpoint: String,
        #[source]
        source: Box<ZmqError>,
    },
    #[error("sending a {msg_type} message to the kernel at {ip} on {channel}: {source}")]
    Send {
        ip: String,
        channel: Channel,
        msg_type: String,
        #[source]
        source: Box<ZmqError>,
    },
    /// The kernel's end of this socket is gone (the kernel died or restarted): the DEALER
    /// sockets of zeromq 0.7 do not reconnect, so connect a new [`KernelClient`].
    #[error("the kernel at {ip} is not connected on {channel} (it stopped or restarted)")]
    Disconnected { ip: String, channel: Channel },
    #[error("messages are not sent on the {0} channel")]
    NotSendable(Channel),
    #[error("no {waiting_for} from the kernel at {ip} within {after:?}")]
    Timeout {
        waiting_for: &'static str,
        ip: String,
        after: Duration,
    },
}

/// A connection to one kernel's five sockets. Cheap to share behind an `Arc` (all methods take
/// `&self` except [`KernelClient::take_receiver`]); dropping it closes the sockets.
pub struct KernelClient {
    ip: String,
    info: ConnectionInfo,
    key: SigningKey,
    session: String,
    shell: Mutex<DealerSendHalf>,
    control: Mutex<DealerSendHalf>,
    stdin: Mutex<DealerSendHalf>,
    hb: Mutex<Option<ReqSocket>>,
    iopub_seen: watch::Receiver<u64>,
    receiver: Option<mpsc::Receiver<KernelMessage>>,
    readers: Vec<JoinHandle<()>>,
}

impl KernelClient {
    /// Connects to the kernel described by `info`, reachable at `ip` (its container's address;
    /// `info.ip` is where the kernel binds). Waits up to [`DEFAULT_CONNECT_TIMEOUT`] per socket
    /// for the kernel's ports to open.
    pub async fn connect(info: &ConnectionInfo, ip: &str) -> Result<KernelClient, KernelError> {
        Self::connect_with_timeout(info, ip, DEFAULT_CONNECT_TIMEOUT).await
    }

    /// [`KernelClient::connect`] with another wait for the ports.
    pub async fn connect_with_timeout(
        info: &ConnectionInfo,
        ip: &str,
        connect_timeout: Duration,
    ) -> Result<KernelClient, KernelError> {
        if info.transport != TRANSPORT_TCP {
            return Err(KernelError::UnsupportedTransport(info.transport.clone()));
        }
        if !info.key.is_empty() && info.signature_scheme != SIGNATURE_SCHEME {
            return Err(KernelError::UnsupportedSignatureScheme(
                info.signature_scheme.clone(),
            ));
        }
        let key = info.signing_key();
        let session = uuid::Uuid::new_v4().to_string();
        let identity = PeerIdentity::try_from(session.as_bytes())
            .expect("a 36-byte session id is a valid identity");

        let (shell, control, stdin, iopub) = tokio::try_join!(
            dealer(info, ip, Channel::Shell, Some(&identity), connect_timeout),
            dealer(info, ip, Channel::Control, Some(&identity), connect_timeout),
            dealer(info, ip, Channel::Stdin, Some(&identity), connect_timeout),
            subscriber(info, ip, connect_timeout),
        )?;

        let (tx, rx) = mpsc::channel(RECEIVE_QUEUE);
        let (seen_tx, seen_rx) = watch::channel(0u64);
        let peer: Arc<str> = Arc::from(ip);
        let (shell_tx, shell_rx) = shell.split();
        let (control_tx, control_rx) = control.split();
        let (stdin_tx, stdin_rx) = stdin.split();
        let readers = vec![
            spawn_reader(Channel::Shell, shell_rx, &key, &tx, None, &peer),
            spawn_reader(Channel::Control, control_rx, &key, &tx, None, &peer),
            spawn_reader(Channel::Stdin, stdin_rx, &key, &tx, None, &peer),
            spawn_reader(Channel::IOPub, iopub, &key, &tx, Some(seen_tx), &peer),
        ];
        tracing::debug!(kernel = ip, session = %session, "connected to kernel");
        Ok(KernelClient {
            ip: ip.to_string(),
            info: info.clone(),
            key,
            session,
            shell: Mutex::new(shell_tx),
            control: Mutex::new(control_tx),
            stdin: Mutex::new(stdin_tx),
            hb: Mutex::new(None),
            iopub_seen: seen_rx,
            receiver: Some(rx),
            readers,
        })
    }

    /// The receiver of everything the kernel sends on shell, control, stdin and iopub (signature
    /// checked). `None` once taken. It must be drained: when it is full, reading stops.
    /// If it is dropped, messages are read and discarded.
    pub fn take_receiver(&mut self) -> Option<mpsc::Receiver<KernelMessage>> {
        self.receiver.take()
    }

    /// Sends `msg` on shell, control or stdin, signed afresh with the kernel's key. The JSON
    /// parts and buffers go out as they are.
    pub async fn send(&self, channel: Channel, msg: RawMessage) -> Result<(), KernelError> {
        let socket = match channel {
            Channel::Shell => &self.shell,
            Channel::Control => &self.control,
            Channel::Stdin => &self.stdin,
            Channel::IOPub | Channel::Heartbeat => return Err(KernelError::NotSendable(channel)),
        };
        let frames = ZmqMessage::try_from(msg.to_frames(&self.key))
            .expect("a Jupyter message has at least six frames");
        let sent = socket.lock().await.send(frames).await;
        sent.map_err(|source| match source {
            ZmqError::ReturnToSender { .. } => KernelError::Disconnected {
                ip: self.ip.clone(),
                channel,
            },
            source => KernelError::Send {
                ip: self.ip.clone(),
                channel,
                msg_type: msg.msg_type().unwrap_or_else(|_| "<unreadable>".into()),
                source: Box::new(source),
            },
        })
    }

    /// Builds a message from this client's session ([`RawMessage::new`]), sends it and returns
    /// it (to match replies by `parent_header.msg_id`).
    pub async fn request(
        &self,
        channel: Channel,
        msg_type: &str,
        content: &Value,
    ) -> Result<RawMessage, KernelError> {
        let msg = RawMessage::new(msg_type, &self.session, content);
        self.send(channel, msg.clone()).await?;
        Ok(msg)
    }

    /// Whether the kernel echoes a heartbeat within `timeout` (including connecting the
    /// heartbeat socket the first time, or again after a failed beat).
    pub async fn heartbeat(&self, timeout: Duration) -> bool {
        let mut slot = self.hb.lock().await;
        let beat = tokio::time::timeout(timeout, beat(&mut slot, &self.info, &self.ip, timeout));
        match beat.await {
            Ok(Ok(())) => true,
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e,
                    _ => format!("no echo within {timeout:?}"),
                };
                tracing::debug!(kernel = %self.ip, "heartbeat failed: {why}");
                // A REQ socket waiting for a reply can send nothing more: start over next time.
                *slot = None;
                false
            }
        }
    }

    /// The gateway nudge: sends `kernel_info_request` on transient shell and control sockets
    /// every [`NUDGE_INTERVAL`] until a `kernel_info_reply` (on either) *and* any iopub message
    /// on this client's subscriber have arrived, and returns the reply. After it returns,
    /// the iopub subscription is known to be live. Control is served while a cell runs, so a
    /// busy kernel answers at once. The iopub messages the requests cause (`status`
    /// busy/idle) go to the receiver like any other.
    pub async fn kernel_info(&self, timeout: Duration) -> Result<RawMessage, KernelError> {
        let mut iopub = self.iopub_seen.clone();
        iopub.mark_unchanged();
        let mut progress = Nudge::default();
        let deadline = Instant::now() + timeout;
        let outcome =
            tokio::time::timeout_at(deadline, self.nudge(&mut iopub, &mut progress, timeout)).await;
        match outcome {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(KernelError::Timeout {
                waiting_for: match (&progress.reply, progress.iopub) {
                    (None, false) => "kernel_info_reply (nor any iopub message)",
                    (None, true) => "kernel_info_reply",
                    (Some(_), _) => "iopub message",
                },
                ip: self.ip.clone(),
                after: timeout,
            }),
        }
    }

    async fn nudge(
        &self,
        iopub: &mut watch::Receiver<u64>,
        progress: &mut Nudge,
        connect_timeout: Duration,
    ) -> Result<RawMessage, KernelError> {
        let (shell, control) = tokio::try_join!(
            dealer(&self.info, &self.ip, Channel::Shell, None, connect_timeout),
            dealer(
                &self.info,
                &self.ip,
                Channel::Control,
                None,
                connect_timeout
            ),
        )?;
        let (mut shell_tx, mut shell_rx) = shell.split();
        let (mut control_tx, mut control_rx) = control.split();
        let (mut shell_open, mut control_open) = (true, true);
        let mut tick = tokio::time::interval(NUDGE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut attempts = 0u32;
        loop {
            if progress.iopub {
                if let Some(reply) = progress.reply.take() {
                    tracing::debug!(kernel = %self.ip, attempts, "kernel answered the nudge");
                    return Ok(reply);
                }
            }
            tokio::select! {
                _ = tick.tick() => {
                    attempts += 1;
                    for (channel, socket) in [
                        (Channel::Shell, &mut shell_tx),
                        (Channel::Control, &mut control_tx),
                    ] {
                        let msg = RawMessage::new("kernel_info_request", &self.session, &json!({}));
                        let frames = ZmqMessage::try_from(msg.to_frames(&self.key))
                            .expect("a Jupyter message has at least six frames");
                        socket.send(frames).await.map_err(|source| KernelError::Send {
                            ip: self.ip.clone(),
                            channel,
                            msg_type: "kernel_info_request".into(),
                            source: Box::new(source),
                        })?;
                    }
                }
                got = shell_rx.recv(), if shell_open => {
                    shell_open = self.nudge_reply(Channel::Shell, got, progress);
                }
                got = control_rx.recv(), if control_open => {
                    control_open = self.nudge_reply(Channel::Control, got, progress);
                }
                changed = iopub.changed(), if !progress.iopub => {
                    // An error means the client is being dropped; then the deadline ends this.
                    progress.iopub = changed.is_ok();
                }
            }
        }
    }

    /// Handles what a transient nudge socket received; false if the socket is unusable.
    fn nudge_reply(
        &self,
        channel: Channel,
        got: Result<ZmqMessage, ZmqError>,
        progress: &mut Nudge,
    ) -> bool {
        let frames = match got {
            Ok(frames) => frames,
            Err(e) => {
                tracing::debug!(kernel = %self.ip, %channel, "nudge socket failed: {e}");
                return false;
            }
        };
        match RawMessage::from_frames(frames.into_vec())
            .and_then(|m| m.verify(&self.key).map(|()| m))
        {
            Ok(msg) if msg.msg_type().is_ok_and(|t| t == "kernel_info_reply") => {
                progress.reply.get_or_insert(msg);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(kernel = %self.ip, %channel, "dropping kernel message: {e}"),
        }
        true
    }

    /// The session id of messages this client originates; also its shell/stdin/control identity.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The address this client connected to.
    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// The kernel's signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl Drop for KernelClient {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// What the nudge has seen so far.
#[derive(Default)]
struct Nudge {
    reply: Option<RawMessage>,
    iopub: bool,
}

fn options(connect_timeout: Duration, identity: Option<&PeerIdentity>) -> SocketOptions {
    let mut options = SocketOptions::default();
    options.connect_timeout(connect_timeout);
    if let Some(identity) = identity {
        options.peer_identity(identity.clone());
    }
    options
}

async fn dealer(
    info: &ConnectionInfo,
    ip: &str,
    channel: Channel,
    identity: Option<&PeerIdentity>,
    connect_timeout: Duration,
) -> Result<DealerSocket, KernelError> {
    let endpoint = info.endpoint(ip, channel);
    let mut socket = DealerSocket::with_options(options(connect_timeout, identity));
    socket
        .connect(&endpoint)
        .await
        .map_err(|source| KernelError::Connect {
            channel,
            endpoint,
            source: Box::new(source),
        })?;
    Ok(socket)
}

async fn subscriber(
    info: &ConnectionInfo,
    ip: &str,
    connect_timeout: Duration,
) -> Result<SubSocket, KernelError> {
    let endpoint = info.endpoint(ip, Channel::IOPub);
    let mut socket = SubSocket::with_options(options(connect_timeout, None));
    // Subscribing first: the subscription is sent as part of connecting (and reconnecting).
    socket
        .subscribe("")
        .await
        .map_err(|source| KernelError::Subscribe {
            endpoint: endpoint.clone(),
            source: Box::new(source),
        })?;
    socket
        .connect(&endpoint)
        .await
        .map_err(|source| KernelError::Connect {
            channel: Channel::IOPub,
            endpoint,
            source: Box::new(source),
        })?;
    Ok(socket)
}

/// One heartbeat on the REQ socket in `slot` (connected first if there is none).
async fn beat(
    slot: &mut Option<ReqSocket>,
    info: &ConnectionInfo,
    ip: &str,
    connect_timeout: Duration,
) -> Result<(), String> {
    if slot.is_none() {
        let endpoint = info.endpoint(ip, Channel::Heartbeat);
        let mut socket = ReqSocket::with_options(options(connect_timeout, None));
        socket
            .connect(&endpoint)
            .await
            .map_err(|e| format!("connecting {endpoint}: {e}"))?;
        *slot = Some(socket);
    }
    let socket = slot.as_mut().expect("connected above");
    let ping = Bytes::from(uuid::Uuid::new_v4().to_string());
    socket
        .send(ZmqMessage::from(ping.clone()))
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let echo = socket.recv().await.map_err(|e| format!("receiving: {e}"))?;
    if echo.len() == 1 && echo.get(0) == Some(&ping) {
        Ok(())
    } else {
        Err(format!("unexpected echo ({} frames)", echo.len()))
    }
}

/// Reads one socket until the client is dropped: parse, check the signature, count iopub
/// arrivals for the nudge, forward (or discard once the receiver is gone).
fn spawn_reader<S>(
    channel: Channel,
    mut socket: S,
    key: &SigningKey,
    tx: &mpsc::Sender<KernelMessage>,
    iopub_seen: Option<watch::Sender<u64>>,
    ip: &Arc<str>,
) -> JoinHandle<()>
where
    S: SocketRecv + Send + 'static,
{
    let (key, tx, ip) = (key.clone(), tx.clone(), ip.clone());
    tokio::spawn(async move {
        let mut forwarding = true;
        loop {
            let frames = match socket.recv().await {
                Ok(frames) => frames,
                Err(e) => {
                    tracing::debug!(kernel = %ip, %channel, "read failed: {e}");
                    tokio::time::sleep(READ_RETRY).await;
                    continue;
                }
            };
            let msg = match RawMessage::from_frames(frames.into_vec()) {
                Ok(msg) => msg,
                Err(e) => {
                    tracing::warn!(kernel = %ip, %channel, "dropping malformed kernel message: {e}");
                    continue;
                }
            };
            if let Err(e) = msg.verify(&key) {
                tracing::warn!(kernel = %ip, %channel, "dropping kernel message: {e}");
                continue;
            }
            if let Some(seen) = &iopub_seen {
                seen.send_modify(|n| *n += 1);
            }
            if forwarding && tx.send((channel, msg)).await.is_err() {
                tracing::debug!(kernel = %ip, %channel, "receiver dropped; discarding from now on");
                forwarding = false;
            }
        }
    })
}
