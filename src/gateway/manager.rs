//! The registry of remote kernels and their lifecycle: start (in the background, so create
//! answers at once with `starting`), interrupt, restart keeping the id, delete, and noticing a
//! container that died (`dead`, with the reason; restartable).
//!
//! One [`KernelClient`] per kernel, shared by all of its WebSockets. A pump task reads what the
//! kernel sends: iopub goes to every socket (and `status` sets the execution state); shell,
//! control and stdin messages go to the socket that sent the request they answer (parent
//! `msg_id` → socket, kept until the shell/control reply; `input_request` has the execute as
//! parent, so it reaches the socket that sent the execute). Unknown parents go to every socket.
//!
//! The registry is in memory, backed by one [`record`] file per kernel: at
//! startup ([`Gateway::adopt`]) kernels whose containers still run are reconnected, kernels
//! whose containers are gone stay listed and get a new container on their next request, and
//! containers or directories without a record (or whose user's server is gone) are removed.
//!
//! Culling: a kernel that is not busy and has had no real traffic (requests from a socket other
//! than `kernel_info`/`comm_info`, outputs on iopub) for its spec's `idle_timeout` (else
//! `kernels.idle_timeout`) loses its container but stays listed under its id, also while
//! WebSockets are connected (Jupyter Server would otherwise drop the notebook's session). The
//! next message from a socket ([`Gateway::ensure_running`]) starts a new container behind the id;
//! for a shell request the sockets first get a stderr stream message saying so.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::containers;
use super::error::GatewayError;
use super::record::{self, KernelRecord};
use super::runtime::KernelRuntime;
use super::state::ExecutionState;
use crate::activity::Activity;
use crate::config::SharedConfig;
use crate::config::{Config, InterruptMode, KernelSpec};
use crate::forward::Forwarder;
use crate::kernels::{Channel, ConnectionInfo, KernelClient, KernelMessage, RawMessage};
use crate::metrics::Metrics;
use crate::state::Store;

/// How long a kernel may take from container start to answering `kernel_info`.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often containers are checked for having died.
const MONITOR_EVERY: Duration = Duration::from_secs(3);
/// A kernel whose heartbeat fails this many times in a row (one check per monitor round) is
/// declared dead: the process is hung or its container frozen.
const HB_MISSES: u32 = 3;
/// How long one heartbeat may take.
const HB_TIMEOUT: Duration = Duration::from_secs(2);
/// More requests than this awaiting replies means replies are not coming (a kernel that ignores
/// a request type): the table is cleared and later replies go to every socket.
const MAX_ROUTES: usize = 4096;
/// Per-socket queue of messages towards a WebSocket.
const SOCKET_QUEUE: usize = 1024;

/// What the gateway needs from the hub's services, handed over when the hub builds it (the
/// gateway never reaches back into the hub).
pub struct Services {
    pub config: SharedConfig,
    /// Users, groups and servers (who owns a gateway token; is a kernel's server up?); its
    /// directory holds the kernel records and connection files.
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Kernel traffic counts as use of the user's server.
    pub activity: Arc<Activity>,
    /// Asks a user's server whether a browser may open a kernel's WebSocket.
    pub forward: Arc<Forwarder>,
    /// What runs the kernels: containers, or processes on this machine.
    pub runtime: Arc<dyn KernelRuntime>,
}

pub struct Gateway {
    /// The hub's services the gateway uses.
    pub services: Services,
    kernels: StdMutex<HashMap<String, Arc<Kernel>>>,
    /// Held while GPU units are granted, so two kernels never pick the same free unit.
    pub(super) gpu_grants: StdMutex<()>,
    /// Kernels waiting for GPU units, in arrival order ([`super::queue`]); mirrored in the
    /// state store.
    pub(super) gpu_queue: StdMutex<Vec<crate::gpu::scheduler::Request>>,
    /// Wakes the GPU scheduler at once (a kernel queued, units released).
    pub(super) schedule_now: tokio::sync::Notify,
}

/// What a socket receives from the pump.
pub type Outgoing = KernelMessage;

#[derive(Default)]
struct Sockets {
    next: u64,
    senders: HashMap<u64, mpsc::Sender<Outgoing>>,
    /// Request `msg_id` → the socket that sent it.
    routes: HashMap<String, u64>,
}

pub struct KernelStatus {
    pub execution_state: ExecutionState,
    pub last_activity: DateTime<Utc>,
    pub container: Option<String>,
    pub ip: Option<String>,
    /// Why the kernel is dead, if it is.
    pub reason: Option<String>,
    /// Heartbeats missed in a row (the monitor declares the kernel dead at `HB_MISSES`).
    pub hb_misses: u32,
    /// Set while the kernel has no container although it is listed: why. Its next request
    /// starts one ([`Gateway::ensure_running`]).
    pub reclaimed: Option<Reclaimed>,
    /// Set while the kernel waits for GPU units: since when (its place in the queue).
    pub queued: Option<DateTime<Utc>>,
}

/// Why a listed kernel has no container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reclaimed {
    /// Culled after this long without activity.
    Idle(Duration),
    /// The container was gone when the hub started again (a reboot, a removed container).
    Lost,
    /// Its GPU units were given to a waiting kernel after this long idle.
    Gpu(Duration),
    /// It waited for a GPU for `gpu.queue_timeout` and stopped waiting; never started.
    WaitEnded,
    /// An admin took its GPU units back (the GPU panel).
    ByAdmin,
}

/// The first 8 characters of a kernel id, as people read it.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// `N minutes`, or `N seconds` under a minute.
pub(super) fn minutes(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{} minutes", secs / 60)
    } else {
        format!("{secs} seconds")
    }
}

impl Reclaimed {
    /// The stderr text the notebook gets before the request that re-creates the kernel.
    pub fn notice(self) -> String {
        match self {
            Reclaimed::Idle(idle) => format!(
                "kernel was reclaimed after {} idle; its state was reset\n",
                minutes(idle)
            ),
            Reclaimed::Gpu(idle) => format!(
                "kernel's GPU was reclaimed after {} idle; its state was reset\n",
                minutes(idle)
            ),
            Reclaimed::WaitEnded => "kernel waits for a GPU again\n".to_string(),
            Reclaimed::ByAdmin => {
                "kernel's GPU was taken back by an admin; its state was reset\n".to_string()
            }
            Reclaimed::Lost => "kernel's container was gone when the hub restarted; \
                                a new one was started and its state was reset\n"
                .to_string(),
        }
    }
}

pub struct Kernel {
    pub id: String,
    pub user: String,
    /// The user's server it belongs to ("" for the default one): deleted with that server.
    pub server: String,
    pub spec: KernelSpec,
    /// Where its ports are, and its signing key (renewed at each start by runtimes whose
    /// kernels share an address: a port freed by a reclaimed kernel may be taken meanwhile).
    pub info: StdMutex<ConnectionInfo>,
    /// `<state>/kernels/<id>`: holds `kernel.json`, bind-mounted read-only.
    pub dir: PathBuf,
    /// The kernel's working directory inside its container.
    pub working_dir: String,
    /// `KERNEL_*` variables from the create request.
    pub env: Vec<(String, String)>,
    pub created: DateTime<Utc>,
    pub status: StdMutex<KernelStatus>,
    /// The last shell request from a socket: notices about the kernel's death are its children,
    /// so the notebook shows them under the cell that was running.
    last_shell: StdMutex<Option<RawMessage>>,
    /// A reclaim notice not yet shown: the kernel was re-created for a message no cell shows
    /// (a `kernel_info` probe on reconnect), so the next `execute_request` gets it.
    pending_notice: StdMutex<Option<String>>,
    /// Held (shared) by a socket while it delivers a message, so that reclaiming (exclusive,
    /// never waited for) cannot take the container from under a message in flight.
    in_use: RwLock<()>,
    /// Set by delete: a kernel object still held elsewhere must not be saved or started again.
    deleted: std::sync::atomic::AtomicBool,
    client: RwLock<Option<Arc<KernelClient>>>,
    sockets: StdMutex<Sockets>,
    /// Serialises start, restart and delete.
    pub(super) lifecycle: Mutex<()>,
    /// The GPU units (UUIDs) the kernel holds while its container runs ([`super::gpus`]).
    pub gpus: StdMutex<Vec<String>>,
    /// The units its server holds (a GPU profile), which its container sees instead of
    /// leasing its own; set at every start.
    pub(super) inherited_gpus: StdMutex<Vec<String>>,
    /// The `[[shared_volumes]]` its user gets (volume lines), set at every start.
    pub(super) shared_volumes: StdMutex<Vec<String>>,
    /// The image its container is created from, set at every start: the spec's (else the
    /// server image), or what the software environment in effect derived from it.
    pub(super) image: StdMutex<String>,
    /// Messages held while it waits for a GPU ([`super::queue`]).
    pub(super) wait: StdMutex<super::queue::Wait>,
    /// Its notebooks were told that its GPU goes soon (told once per idle period).
    pub(super) gpu_warned: std::sync::atomic::AtomicBool,
    /// Under the shared policy: since when it has been over its GPU memory budget (told
    /// then; stopped after `gpu.shared.grace`).
    pub(super) gpu_over_since: StdMutex<Option<DateTime<Utc>>>,
}

pub(super) fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `%Y-%m-%dT%H:%M:%S.ffffffZ`: always fractional seconds and `Z` (Jupyter Server parses it so).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl KernelStatus {
    /// A kernel in `state` with no container yet (`reclaimed`: why it has none).
    fn new(state: ExecutionState, reclaimed: Option<Reclaimed>) -> KernelStatus {
        KernelStatus {
            execution_state: state,
            last_activity: Utc::now(),
            container: None,
            ip: None,
            reason: None,
            hb_misses: 0,
            reclaimed,
            queued: None,
        }
    }
}

impl Kernel {
    /// A kernel as its record describes it (a new one, or one taken back at startup), with its
    /// connection info, its connection directory and its current status.
    fn from_record(
        record: KernelRecord,
        info: ConnectionInfo,
        dir: PathBuf,
        status: KernelStatus,
    ) -> Kernel {
        Kernel {
            id: record.id,
            user: record.user,
            server: record.server,
            spec: record.spec,
            info: StdMutex::new(info),
            dir,
            working_dir: record.working_dir,
            env: record.env,
            created: record.created,
            status: StdMutex::new(status),
            last_shell: StdMutex::new(None),
            pending_notice: StdMutex::new(None),
            in_use: RwLock::new(()),
            deleted: Default::default(),
            client: RwLock::new(None),
            sockets: StdMutex::new(Sockets::default()),
            lifecycle: Mutex::new(()),
            gpus: StdMutex::new(Vec::new()),
            inherited_gpus: StdMutex::new(Vec::new()),
            shared_volumes: StdMutex::new(Vec::new()),
            image: StdMutex::new(String::new()),
            wait: StdMutex::new(Default::default()),
            gpu_warned: Default::default(),
            gpu_over_since: Default::default(),
        }
    }

    /// The kernel model: `{"id", "name", "last_activity", "execution_state", "connections"}`.
    pub fn model(&self) -> Value {
        let st = lock(&self.status);
        let connections = lock(&self.sockets).senders.len();
        let mut model = json!({
            "id": self.id,
            "name": self.spec.name,
            "last_activity": timestamp(st.last_activity),
            "execution_state": st.execution_state,
            "connections": connections,
        });
        // As Jupyter Server's own model: why a dead kernel died (JupyterLab shows it).
        if let (Some(reason), ExecutionState::Dead) = (&st.reason, st.execution_state) {
            model["reason"] = json!(reason);
        }
        model
    }

    /// What is saved of this kernel so that it outlives a restart of the daemon.
    pub fn record(&self) -> KernelRecord {
        let reclaimed_after_s = match lock(&self.status).reclaimed {
            Some(Reclaimed::Idle(d) | Reclaimed::Gpu(d)) => Some(d.as_secs()),
            _ => None,
        };
        KernelRecord {
            id: self.id.clone(),
            user: self.user.clone(),
            server: self.server.clone(),
            spec: self.spec.clone(),
            working_dir: self.working_dir.clone(),
            env: self.env.clone(),
            created: self.created,
            reclaimed_after_s,
        }
    }

    /// Remember the last shell request (the parent of notices about the kernel's death).
    pub fn remember_shell_request(&self, msg: &RawMessage) {
        *lock(&self.last_shell) = Some(msg.clone());
    }

    /// Send every socket a stderr `stream` message on iopub, as the child of `parent` (else of
    /// the last shell request), so that it appears under the cell that caused it.
    pub fn notify(&self, text: &str, parent: Option<&RawMessage>) {
        let mut notice =
            RawMessage::new("stream", &self.id, &json!({"name": "stderr", "text": text}));
        let last = lock(&self.last_shell).clone();
        if let Some(p) = parent.or(last.as_ref()) {
            notice = notice.with_parent(p);
        }
        self.dispatch(Channel::IOPub, notice);
    }

    /// Why the kernel is dead, if it is.
    pub fn dead_reason(&self) -> Option<String> {
        let st = lock(&self.status);
        (st.execution_state == ExecutionState::Dead).then(|| st.reason.clone().unwrap_or_default())
    }

    /// Hold while delivering a message: reclaiming never takes the container from under it.
    pub async fn use_guard(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.in_use.read().await
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn execution_state(&self) -> ExecutionState {
        lock(&self.status).execution_state
    }

    /// Whether a container (or process) runs for the kernel now.
    pub fn has_container(&self) -> bool {
        lock(&self.status).container.is_some()
    }

    fn set_state(&self, state: ExecutionState) {
        lock(&self.status).execution_state = state;
    }

    /// The units its container sees: its own, else those its server holds.
    pub fn visible_gpus(&self) -> Vec<String> {
        let own = lock(&self.gpus).clone();
        if own.is_empty() {
            lock(&self.inherited_gpus).clone()
        } else {
            own
        }
    }

    pub fn touch(&self) {
        lock(&self.status).last_activity = Utc::now();
        self.gpu_warned
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// The current ZeroMQ client, waiting up to `wait` while the kernel starts or restarts.
    pub async fn client(&self, wait: Duration) -> Option<Arc<KernelClient>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(c) = self.client.read().await.clone() {
                return Some(c);
            }
            let (state, reclaimed) = {
                let st = lock(&self.status);
                (st.execution_state, st.reclaimed.is_some())
            };
            if state == ExecutionState::Dead || reclaimed || tokio::time::Instant::now() >= deadline
            {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Register a WebSocket: its id and the receiver of what the kernel sends it.
    pub fn add_socket(&self) -> (u64, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let mut s = lock(&self.sockets);
        s.next += 1;
        let id = s.next;
        s.senders.insert(id, tx);
        (id, rx)
    }

    pub fn remove_socket(&self, socket: u64) {
        let mut s = lock(&self.sockets);
        s.senders.remove(&socket);
        s.routes.retain(|_, v| *v != socket);
    }

    /// Remember that `socket` sent request `msg_id` (its replies go back there).
    pub fn route(&self, msg_id: String, socket: u64) {
        let mut s = lock(&self.sockets);
        if s.routes.len() >= MAX_ROUTES {
            tracing::warn!(kernel = %self.id, "too many requests without replies; forgetting where replies go");
            s.routes.clear();
        }
        s.routes.insert(msg_id, socket);
    }

    /// Forget the route of a request that never reached the kernel.
    pub fn unroute(&self, msg_id: &str) {
        lock(&self.sockets).routes.remove(msg_id);
    }

    /// Deliver `msg` to socket `socket` only.
    pub(super) fn send_to_socket(&self, socket: u64, channel: Channel, msg: RawMessage) {
        let tx = lock(&self.sockets).senders.get(&socket).cloned();
        if let Some(tx) = tx {
            let _ = tx.try_send((channel, msg));
        }
    }

    /// Deliver an iopub message (every socket).
    pub(super) fn dispatch_iopub(&self, msg: RawMessage) {
        self.dispatch(Channel::IOPub, msg);
    }

    /// Deliver `msg` to every socket, whatever its parent.
    pub(super) fn dispatch_all(&self, channel: Channel, msg: RawMessage) {
        let targets: Vec<mpsc::Sender<Outgoing>> =
            lock(&self.sockets).senders.values().cloned().collect();
        for tx in targets {
            let _ = tx.try_send((channel, msg.clone()));
        }
    }

    /// Deliver one message from the kernel to the sockets it is for.
    fn dispatch(&self, channel: Channel, msg: RawMessage) {
        let targets: Vec<(u64, mpsc::Sender<Outgoing>)> = {
            let mut s = lock(&self.sockets);
            let routed = if channel == Channel::IOPub {
                None
            } else {
                let parent = msg.parent_msg_id().ok().flatten();
                let is_reply = msg.msg_type().is_ok_and(|t| t.ends_with("_reply"));
                parent.and_then(|p| {
                    let target = s.routes.get(&p).copied();
                    if is_reply && channel != Channel::Stdin {
                        s.routes.remove(&p);
                    }
                    target
                })
            };
            match routed.and_then(|id| s.senders.get_key_value(&id).map(|(k, v)| (*k, v.clone()))) {
                Some(one) => vec![one],
                None => s.senders.iter().map(|(k, v)| (*k, v.clone())).collect(),
            }
        };
        // Outputs may be lost by a socket that does not keep up (as Jupyter Server's iopub rate
        // limit drops them); anything else lost would leave a cell running forever, so such a
        // socket is closed instead and its client reconnects.
        let droppable = channel == Channel::IOPub
            && msg.msg_type().is_ok_and(|t| {
                matches!(
                    t.as_str(),
                    "stream" | "display_data" | "update_display_data" | "execute_result"
                )
            });
        for (socket, tx) in targets {
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send((channel, msg.clone())) {
                if !droppable {
                    tracing::warn!(kernel = %self.id, socket, "a WebSocket does not keep up; closing it");
                    self.remove_socket(socket);
                }
            }
        }
    }

    /// Forget where replies go: the requests in flight will never be answered (the kernel
    /// died or is being restarted).
    fn forget_routes(&self) {
        lock(&self.sockets).routes.clear();
    }

    /// Close every WebSocket of this kernel.
    fn close_sockets(&self) {
        let mut s = lock(&self.sockets);
        s.senders.clear();
        s.routes.clear();
    }
}

impl Gateway {
    /// A gateway with no kernels yet; [`Gateway::run_loops`] starts its monitor and culler.
    pub fn new(services: Services) -> Arc<Gateway> {
        Arc::new(Gateway {
            services,
            kernels: StdMutex::new(HashMap::new()),
            gpu_grants: StdMutex::new(()),
            gpu_queue: StdMutex::new(Vec::new()),
            schedule_now: tokio::sync::Notify::new(),
        })
    }

    /// Start the loops that watch kernels (death, heartbeat) and reclaim idle ones, on
    /// `tasks`; they end when `stop` is cancelled.
    pub fn run_loops(self: &Arc<Self>, tasks: &TaskTracker, stop: &CancellationToken) {
        tasks.spawn(monitor(Arc::downgrade(self), stop.clone()));
        tasks.spawn(cull(Arc::downgrade(self), stop.clone()));
        tasks.spawn(reconcile_loop(Arc::downgrade(self), stop.clone()));
        tasks.spawn(super::gpus::scheduler_loop(
            Arc::downgrade(self),
            stop.clone(),
        ));
    }

    /// One reconcile pass over the runtime: a kernel it runs for this hub that the registry
    /// does not know (a crash between start and record, one started by hand with Orrery's
    /// labels) is removed once seen so in two passes in a row. A kernel is registered before
    /// its runtime starts it, so one being created is never taken. `seen` carries the
    /// unknown handles from the last pass. The registry's own kernels are watched by the
    /// monitor (death) and [`Gateway::adopt`] (startup).
    pub async fn reconcile(&self, seen: &mut std::collections::HashSet<String>) {
        let listed = match self.services.runtime.list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list kernels; reconciling later");
                return;
            }
        };
        let mut unknown = std::collections::HashSet::new();
        for (handle, kernel_id) in listed {
            if lock(&self.kernels).contains_key(&kernel_id) {
                continue;
            }
            if seen.contains(&handle) {
                tracing::info!(kernel = %kernel_id, %handle, "removing a kernel the gateway has no record of");
                self.services.runtime.remove(&handle).await;
                let dir = self.services.store.path().join("kernels").join(&kernel_id);
                if !lock(&self.kernels).contains_key(&kernel_id) {
                    let _ = std::fs::remove_dir_all(dir);
                }
            } else {
                unknown.insert(handle);
            }
        }
        *seen = unknown;
    }

    /// Every kernel (for the gateway's own bookkeeping).
    pub(super) fn all_kernels(&self) -> Vec<Arc<Kernel>> {
        lock(&self.kernels).values().cloned().collect()
    }

    /// Kernel `id`, whoever's it is (for the gateway's own bookkeeping, never for a request).
    pub(super) fn kernel_by_id(&self, id: &str) -> Option<Arc<Kernel>> {
        lock(&self.kernels).get(id).cloned()
    }

    /// `user`'s kernel `id`; another user's kernel is as missing as an unknown one.
    pub fn kernel_of(&self, user: &str, id: &str) -> Option<Arc<Kernel>> {
        lock(&self.kernels)
            .get(id)
            .filter(|k| k.user == user)
            .cloned()
    }

    /// How many kernels are in each state (for `/hub/metrics`).
    pub fn counts(&self) -> crate::metrics::KernelCounts {
        let mut c = crate::metrics::KernelCounts::default();
        for k in lock(&self.kernels).values() {
            let st = lock(&k.status);
            match st.execution_state {
                ExecutionState::Dead => c.dead += 1,
                ExecutionState::Starting | ExecutionState::Restarting => c.starting += 1,
                _ if st.reclaimed.is_some() => c.reclaimed += 1,
                _ => c.running += 1,
            }
        }
        c
    }

    pub fn kernels_of(&self, user: &str) -> Vec<Arc<Kernel>> {
        let mut v: Vec<_> = lock(&self.kernels)
            .values()
            .filter(|k| k.user == user)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Register a new kernel and start its container in the background.
    pub fn create(
        self: &Arc<Self>,
        user: &str,
        server: &str,
        spec: KernelSpec,
        request_env: &serde_json::Map<String, Value>,
    ) -> Result<Arc<Kernel>, GatewayError> {
        let cfg = self.services.config.get();
        let id = uuid::Uuid::new_v4().to_string();
        let home = cfg.spawner.docker.home_mount.clone();
        let working_dir = containers::working_dir(
            &home,
            request_env
                .get("KERNEL_WORKING_DIR")
                .and_then(|v| v.as_str()),
        )
        .map_err(GatewayError::BadRequest)?;
        let env = request_env
            .iter()
            .filter(|(k, _)| k.starts_with("KERNEL_"))
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
        let info = self.services.runtime.connection_info(&spec.name);
        let dir = self.services.store.path().join("kernels").join(&id);
        containers::write_connection_file(&dir, &info).map_err(|source| GatewayError::Io {
            what: "writing the kernel's connection file",
            source,
        })?;
        let record = KernelRecord {
            id: id.clone(),
            user: user.to_string(),
            server: server.to_string(),
            spec,
            working_dir,
            env,
            created: Utc::now(),
            reclaimed_after_s: None,
        };
        let kernel = Arc::new(Kernel::from_record(
            record,
            info,
            dir,
            KernelStatus::new(ExecutionState::Starting, None),
        ));
        if let Err(source) = record::save(self.services.store.path(), &kernel.record()) {
            let _ = std::fs::remove_dir_all(&kernel.dir);
            return Err(GatewayError::Io {
                what: "saving the kernel's record",
                source,
            });
        }
        lock(&self.kernels).insert(id.clone(), kernel.clone());
        let gw = self.clone();
        let k = kernel.clone();
        tokio::spawn(async move {
            let _guard = k.lifecycle.lock().await;
            gw.start(&k).await;
        });
        Ok(kernel)
    }

    /// The image a kernel of `spec` starts from now: the spec's, else the server image, as
    /// derived by the software environment in effect (`orrery env`), if it was.
    fn image_for(&self, cfg: &Config, spec: &KernelSpec) -> String {
        let base = if spec.image.is_empty() {
            cfg.spawner.docker.image.clone()
        } else {
            spec.image.clone()
        };
        match self.services.store.environment() {
            Ok(env) => env.effective_images().remove(&base).unwrap_or(base),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the software environment; the kernel gets its base image");
                base
            }
        }
    }

    /// Create and start the kernel's container, connect, nudge. Caller holds `lifecycle`.
    pub(super) async fn start(&self, kernel: &Arc<Kernel>) {
        kernel.set_state(ExecutionState::Starting);
        let cfg = self.services.config.get();
        let began = std::time::Instant::now();
        let result = async {
            *lock(&kernel.shared_volumes) = if cfg.shared_volumes.is_empty() {
                Vec::new()
            } else {
                let groups = crate::groups::groups_of(&self.services.store, &cfg, &kernel.user);
                crate::config::shared_volumes_for(&cfg.shared_volumes, &kernel.user, &groups)
            };
            *lock(&kernel.image) = self.image_for(&cfg, &kernel.spec);
            if !self.grant_gpus(kernel)? {
                // Waiting for a GPU: Orrery answers for the kernel until it runs.
                kernel.set_state(ExecutionState::Idle);
                return Ok(false);
            }
            if self.services.runtime.renews_ports() {
                let info = self.services.runtime.connection_info(&kernel.spec.name);
                containers::write_connection_file(&kernel.dir, &info)
                    .map_err(|e| format!("cannot write the kernel's connection file: {e}"))?;
                *lock(&kernel.info) = info;
            }
            let (container, ip) = self.services.runtime.start(&cfg, kernel).await?;
            {
                let mut st = lock(&kernel.status);
                st.container = Some(container.clone());
                st.ip = Some(ip.clone());
                st.reason = None;
                st.hb_misses = 0;
            }
            // A kernel that crashes while starting (a bad argv, a broken package) is reported
            // as soon as its container exits, not after the whole start timeout.
            let exited = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if let Some(reason) = self.services.runtime.stopped(&container).await {
                        return reason;
                    }
                }
            };
            tokio::select! {
                connected = self.connect(kernel, &ip) => connected.map(|()| true),
                reason = exited => Err(reason),
            }
        }
        .await;
        match result {
            Ok(false) => {}
            Ok(true) => {
                // A (re)started kernel is fresh: its idle time starts now, or a kernel re-created
                // for a probe (which is not activity) would be reclaimed again at once.
                kernel.touch();
                tracing::info!(kernel = %kernel.id, user = %kernel.user, took_ms = began.elapsed().as_millis() as u64, "kernel ready");
                // Cells held while it waited for its GPU run now, in order.
                self.flush_held(kernel).await;
            }
            Err(e) => {
                tracing::warn!(kernel = %kernel.id, user = %kernel.user, error = %e, "kernel failed to start");
                self.kernel_died(kernel, e.clone()).await;
                if kernel.is_holding() {
                    kernel.cancel_held(&dead_notice(&e));
                    lock(&kernel.wait).holding = false;
                }
            }
        }
    }

    /// Connect a fresh client to the kernel at `ip`, start its pump and nudge it.
    async fn connect(&self, kernel: &Arc<Kernel>, ip: &str) -> Result<(), String> {
        let info = lock(&kernel.info).clone();
        let mut client = KernelClient::connect_with_timeout(&info, ip, START_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let rx = client
            .take_receiver()
            .expect("a new client has its receiver");
        let client = Arc::new(client);
        tokio::spawn(pump(Arc::downgrade(kernel), rx));
        client
            .kernel_info(START_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        *kernel.client.write().await = Some(client);
        kernel.set_state(ExecutionState::Idle);
        Ok(())
    }

    pub async fn interrupt(&self, kernel: &Arc<Kernel>) -> Result<(), String> {
        if lock(&kernel.status).queued.is_some() {
            self.interrupt_waiting(kernel);
            return Ok(());
        }
        if lock(&kernel.status).reclaimed.is_some() {
            // Nothing runs in a reclaimed kernel.
            return Ok(());
        }
        kernel.touch();
        match kernel.spec.interrupt_mode {
            InterruptMode::Signal if self.services.runtime.can_signal() => {
                let container = lock(&kernel.status).container.clone();
                let Some(container) = container else {
                    return Err("the kernel has no running container".into());
                };
                self.services.runtime.signal(&container, "SIGINT").await
            }
            InterruptMode::Signal | InterruptMode::Message => {
                let client = kernel
                    .client(Duration::from_secs(5))
                    .await
                    .ok_or("the kernel is not connected")?;
                client
                    .request(Channel::Control, "interrupt_request", &json!({}))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Restart keeping the id and the connection info: the container is recreated and a fresh
    /// client connected (zeromq's DEALERs do not reconnect). Returns once the kernel answers.
    pub async fn restart(&self, kernel: &Arc<Kernel>) -> Result<(), String> {
        if lock(&kernel.status).queued.is_some() {
            // Nothing runs yet: a restart clears the held cells, the kernel keeps its place.
            self.interrupt_waiting(kernel);
            return Ok(());
        }
        let _guard = kernel.lifecycle.lock().await;
        kernel.touch();
        kernel.set_state(ExecutionState::Restarting);
        kernel.forget_routes();
        if lock(&kernel.status).reclaimed.take().is_some() {
            self.save_record(kernel);
        }
        *kernel.client.write().await = None;
        let container = lock(&kernel.status).container.take();
        if let Some(c) = container {
            self.services.runtime.remove(&c).await;
        }
        self.start(kernel).await;
        match kernel.execution_state() {
            ExecutionState::Dead => Err(lock(&kernel.status)
                .reason
                .clone()
                .unwrap_or_else(|| "the kernel did not start".into())),
            _ => Ok(()),
        }
    }

    /// Delete every kernel of `user` (their server stopped: nobody can reach them any more).
    /// Delete the kernels of `user`'s server `server` (when it stops), not those of their
    /// other servers.
    pub async fn delete_all_of(&self, user: &str, server: &str) {
        for k in self.kernels_of(user) {
            if k.server == server {
                self.delete(&k).await;
            }
        }
    }

    /// The kernels of one of `user`'s servers.
    pub fn kernels_of_server(&self, user: &str, server: &str) -> Vec<Arc<Kernel>> {
        let mut v = self.kernels_of(user);
        v.retain(|k| k.server == server);
        v
    }

    /// Remove the kernel: container, connection directory, registry entry, WebSockets.
    pub async fn delete(&self, kernel: &Arc<Kernel>) {
        kernel
            .deleted
            .store(true, std::sync::atomic::Ordering::SeqCst);
        lock(&self.kernels).remove(&kernel.id);
        if lock(&kernel.status).queued.is_some() {
            // Shutting down leaves the queue.
            self.dequeue(kernel);
        }
        lock(&kernel.wait).held.clear();
        let _guard = kernel.lifecycle.lock().await;
        *kernel.client.write().await = None;
        kernel.close_sockets();
        let container = lock(&kernel.status).container.take();
        if let Some(c) = container {
            self.services.runtime.remove(&c).await;
        }
        self.release_gpus(kernel);
        let _ = std::fs::remove_dir_all(&kernel.dir);
        record::remove(self.services.store.path(), &kernel.id);
        tracing::info!(kernel = %kernel.id, user = %kernel.user, "kernel deleted");
    }
}

impl Gateway {
    /// Takes the container of a kernel idle for more than `timeout`; the kernel stays listed,
    /// `idle`, and `why` (given how long it was idle) is what its next cell is told.
    pub(super) async fn reclaim(
        &self,
        kernel: &Arc<Kernel>,
        timeout: Duration,
        why: fn(Duration) -> Reclaimed,
    ) {
        // Never waits: a message being delivered, or a start, restart or delete, wins.
        let Ok(_in_use) = kernel.in_use.try_write() else {
            return;
        };
        let Ok(_guard) = kernel.lifecycle.try_lock() else {
            return;
        };
        let container = {
            let mut st = lock(&kernel.status);
            let idle = (Utc::now() - st.last_activity).to_std().unwrap_or_default();
            if st.execution_state != ExecutionState::Idle
                || st.reclaimed.is_some()
                || idle <= timeout
            {
                return;
            }
            // Marked first, so a socket waiting for the client looks again (ensure_running).
            st.reclaimed = Some(why(idle));
            st.ip = None;
            st.container.take()
        };
        self.drop_container(kernel, container).await;
        tracing::info!(kernel = %kernel.id, user = %kernel.user, "kernel container reclaimed for idleness");
    }

    /// The rest of a reclaim, once the kernel is marked: its client, container and units go.
    async fn drop_container(&self, kernel: &Arc<Kernel>, container: Option<String>) {
        *kernel.client.write().await = None;
        self.save_record(kernel);
        if let Some(c) = container {
            self.services.runtime.remove(&c).await;
        }
        if kernel.spec.gpus > 0 {
            self.services.metrics.gpu_reclaimed();
        }
        self.release_gpus(kernel);
        self.services.metrics.kernel_reclaimed();
    }

    /// An admin takes the GPU units of kernel `id` back now, busy or not (the GPU panel):
    /// its container goes, and its state with it; its units go to the next in line; its
    /// notebooks are told who did it, and its next cell re-creates it, waiting its turn.
    /// Returns the kernel's user.
    pub async fn reclaim_gpus_by_admin(&self, id: &str, admin: &str) -> Result<String, String> {
        let Some(kernel) = self.kernel_by_id(id) else {
            return Err("That kernel does not exist (any more).".into());
        };
        if lock(&kernel.gpus).is_empty() {
            return Err(format!(
                "{}'s kernel {} holds no GPU now.",
                kernel.user,
                short_id(id)
            ));
        }
        let wait = Duration::from_secs(5);
        let busy = || {
            format!(
                "{}'s kernel {} is starting or restarting; try again in a moment.",
                kernel.user,
                short_id(id)
            )
        };
        let Ok(_in_use) = tokio::time::timeout(wait, kernel.in_use.write()).await else {
            return Err(busy());
        };
        let Ok(_guard) = tokio::time::timeout(wait, kernel.lifecycle.lock()).await else {
            return Err(busy());
        };
        let container = {
            let mut st = lock(&kernel.status);
            st.reclaimed = Some(Reclaimed::ByAdmin);
            st.ip = None;
            st.execution_state = ExecutionState::Idle;
            st.container.take()
        };
        kernel.notify(
            &format!(
                "An admin ({admin}) took this kernel's GPU back; its state is lost. Your next \
                 cell starts it again, waiting its turn for a GPU.\n"
            ),
            None,
        );
        self.drop_container(&kernel, container).await;
        tracing::info!(kernel = %kernel.id, user = %kernel.user, %admin, "an admin took a kernel's GPU back");
        Ok(kernel.user.clone())
    }

    /// The kernel cannot run code any more (its container exited or failed to start, or its
    /// heartbeat stopped): the container goes (its last lines are kept in the reason), the
    /// kernel stays listed as `dead` with the reason, the sockets get a notice under the running
    /// cell. A restart brings it back.
    pub(super) async fn kernel_died(&self, kernel: &Kernel, reason: String) {
        *kernel.client.write().await = None;
        kernel.forget_routes();
        let container = {
            let mut st = lock(&kernel.status);
            st.ip = None;
            st.container.take()
        };
        let reason = match container {
            Some(c) => self.services.runtime.give_up(&c, reason).await,
            None => reason,
        };
        self.release_gpus(kernel);
        {
            let mut st = lock(&kernel.status);
            st.execution_state = ExecutionState::Dead;
            st.reason = Some(reason.clone());
            st.hb_misses = 0;
        }
        tracing::warn!(kernel = %kernel.id, user = %kernel.user, %reason, "kernel died");
        kernel.notify(&dead_notice(&reason), None);
    }

    /// Before a message from a socket reaches `kernel`: if its container was reclaimed, start a
    /// new one behind the same id. For a shell request the sockets first get a stderr stream
    /// message (parent: `trigger`) saying the kernel's state was reset.
    pub async fn ensure_running(
        &self,
        kernel: &Arc<Kernel>,
        channel: Channel,
        trigger: &RawMessage,
    ) {
        let is_execute =
            channel == Channel::Shell && trigger.msg_type().is_ok_and(|t| t == "execute_request");
        if is_execute {
            let pending = lock(&kernel.pending_notice).take();
            if let Some(text) = pending {
                kernel.notify(&text, Some(trigger));
            }
        }
        if lock(&kernel.status).reclaimed.is_none() {
            return;
        }
        let _guard = kernel.lifecycle.lock().await;
        if kernel.is_deleted() {
            return;
        }
        let Some(why) = lock(&kernel.status).reclaimed.take() else {
            return;
        };
        self.save_record(kernel);
        if is_execute {
            kernel.notify(&why.notice(), Some(trigger));
        } else {
            *lock(&kernel.pending_notice) = Some(why.notice());
        }
        tracing::info!(kernel = %kernel.id, user = %kernel.user, "re-creating a reclaimed kernel");
        self.start(kernel).await;
    }
}

impl Gateway {
    /// Write the kernel's record again (its reclaim state changed). A failure is logged: the
    /// kernel works on, only its survival of a daemon restart is at stake.
    fn save_record(&self, kernel: &Kernel) {
        if kernel.is_deleted() {
            return;
        }
        if let Err(e) = record::save(self.services.store.path(), &kernel.record()) {
            tracing::warn!(kernel = %kernel.id, error = %e, "cannot save the kernel's record");
        }
    }

    /// At startup, after user servers are reconciled and before the gateway serves: take back
    /// the kernels an earlier run of this hub left (see the module docs) and remove what cannot
    /// be reached any more.
    /// Done also with `kernels.remote` now off: servers started in gateway mode still use their
    /// kernels, and a container nobody manages would run forever.
    pub async fn adopt(self: &Arc<Self>) {
        self.adopt_kernels().await;
        // Leases follow the kernels: only those taken back running keep theirs.
        self.reconcile_leases();
    }

    async fn adopt_kernels(self: &Arc<Self>) {
        let state = self.services.store.path().to_path_buf();
        let records = record::load_all(&state);
        if records.is_empty() && !self.services.config.get().kernels.remote {
            return;
        }
        // Without the list (the engine not answering yet) kernels are still taken back, as
        // without containers: their next request starts a new one (the old one, if it runs,
        // is replaced by name), which beats Jupyter Server dropping every notebook's session.
        let (containers, listed) = match self.services.runtime.list().await {
            Ok(c) => (c, true),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list kernel containers; kernels of an earlier run get new containers on their next request");
                (Vec::new(), false)
            }
        };
        let cfg = self.services.config.get();
        let mut adopted = 0;
        // Kernels that waited for a GPU wait on in their place.
        let mut waits: HashMap<String, crate::state::QueueEntry> = self
            .services
            .store
            .gpu_queue()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.request.kernel.clone(), e))
            .collect();
        for found in records {
            let rec = match found {
                Ok(r) => r,
                Err((path, e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable kernel record; its kernel is removed");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            let mine: Vec<String> = containers
                .iter()
                .filter(|(_, k)| *k == rec.id)
                .map(|(c, _)| c.clone())
                .collect();
            let dir = state.join("kernels").join(&rec.id);
            let info = std::fs::read(dir.join("kernel.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<ConnectionInfo>(&b).ok());
            let server_up = self
                .services
                .store
                .server(&rec.user, &rec.server)
                .ok()
                .flatten()
                .is_some_and(|s| s.ready);
            let Some(info) = info.filter(|_| server_up) else {
                tracing::info!(kernel = %rec.id, user = %rec.user, "removing a kernel of an earlier run (its server is gone or its connection file is)");
                for c in &mine {
                    self.services.runtime.remove(c).await;
                }
                let _ = std::fs::remove_dir_all(&dir);
                record::remove(&state, &rec.id);
                continue;
            };
            let mut live = None;
            for c in mine {
                if live.is_none() && self.services.runtime.stopped(&c).await.is_none() {
                    live = Some(c);
                } else {
                    self.services.runtime.remove(&c).await;
                }
            }
            let ip = match &live {
                Some(c) => self.services.runtime.address(&cfg, c).await,
                None => None,
            };
            let wait = waits.remove(&rec.id).filter(|_| live.is_none());
            let reclaimed = match (&live, ip.is_some(), rec.reclaimed_after_s) {
                _ if wait.is_some() => None,
                (Some(_), true, _) => None,
                (_, _, Some(s)) => Some(Reclaimed::Idle(Duration::from_secs(s))),
                _ => Some(Reclaimed::Lost),
            };
            if reclaimed.is_some() {
                if let Some(c) = &live {
                    self.services.runtime.remove(c).await;
                }
            }
            let status = match reclaimed {
                Some(why) => KernelStatus::new(ExecutionState::Idle, Some(why)),
                None if wait.is_some() => KernelStatus::new(ExecutionState::Idle, None),
                None => {
                    let mut st = KernelStatus::new(ExecutionState::Starting, None);
                    st.container = live;
                    st.ip = ip.clone();
                    st
                }
            };
            let kernel = Arc::new(Kernel::from_record(rec, info, dir, status));
            lock(&self.kernels).insert(kernel.id.clone(), kernel.clone());
            adopted += 1;
            if let Some(entry) = wait {
                lock(&kernel.wait).lost = entry.held;
                self.enqueue(&kernel, entry.request.since);
                continue;
            }
            tracing::info!(kernel = %kernel.id, user = %kernel.user, running = reclaimed.is_none(), "kernel of an earlier run taken back");
            if let (None, Some(ip)) = (reclaimed, ip) {
                let gw = self.clone();
                tokio::spawn(async move {
                    let _guard = kernel.lifecycle.lock().await;
                    if let Err(e) = gw.connect(&kernel, &ip).await {
                        tracing::warn!(kernel = %kernel.id, error = %e, "cannot reconnect to a kernel of an earlier run");
                        let mut st = lock(&kernel.status);
                        st.execution_state = ExecutionState::Dead;
                        st.reason =
                            Some(format!("reconnecting after the hub restarted failed: {e}"));
                    }
                });
            }
        }
        for kernel in waits.keys() {
            let _ = self.services.store.remove_gpu_wait(kernel);
        }
        // What no record accounts for cannot be reached again.
        for (container, kernel) in containers.iter().filter(|_| listed) {
            if !lock(&self.kernels).contains_key(kernel) {
                tracing::info!(kernel = %kernel, "removing a kernel container without a record");
                self.services.runtime.remove(container).await;
            }
        }
        if let Ok(entries) = std::fs::read_dir(state.join("kernels")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !lock(&self.kernels).contains_key(&name) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        if adopted > 0 {
            tracing::info!(kernels = adopted, "kernels of an earlier run taken back");
        }
    }
}

/// The kernel reconcile loop: [`Gateway::reconcile`] every `spawner.reconcile_interval`.
async fn reconcile_loop(gw: std::sync::Weak<Gateway>, stop: CancellationToken) {
    let mut seen = std::collections::HashSet::new();
    loop {
        let every = match gw.upgrade() {
            Some(gw) => gw.services.config.get().spawner.reconcile_interval.as_std(),
            None => return,
        };
        tokio::select! {
            _ = tokio::time::sleep(every.max(Duration::from_secs(1))) => {}
            _ = stop.cancelled() => return,
        }
        let Some(gw) = gw.upgrade() else { return };
        gw.reconcile(&mut seen).await;
    }
}

/// Reclaims the containers of kernels idle past their timeout.
async fn cull(gw: std::sync::Weak<Gateway>, stop: CancellationToken) {
    loop {
        let every = match gw.upgrade() {
            Some(gw) => gw.services.config.get().kernels.cull_interval.as_std(),
            None => return,
        };
        tokio::select! {
            _ = tokio::time::sleep(every.max(Duration::from_secs(1))) => {}
            _ = stop.cancelled() => return,
        }
        let Some(gw) = gw.upgrade() else { return };
        // Also with `kernels.remote` now off: kernels of servers started before still idle.
        let cfg = gw.services.config.get();
        let kernels: Vec<Arc<Kernel>> = lock(&gw.kernels).values().cloned().collect();
        for k in kernels {
            let timeout = idle_timeout(&cfg, &k);
            if timeout.is_zero() {
                continue;
            }
            let idle = {
                let st = lock(&k.status);
                if st.execution_state != ExecutionState::Idle || st.container.is_none() {
                    continue;
                }
                (Utc::now() - st.last_activity).to_std().unwrap_or_default()
            };
            if idle <= timeout {
                continue;
            }
            // A kernel computing on its GPU without messages is kept busy (touched) by the
            // GPU scheduler's rounds.
            gw.reclaim(&k, timeout, Reclaimed::Idle).await;
        }
    }
}

/// How long `kernel` may sit idle before its container is reclaimed (zero: never): the spec's
/// `idle_timeout`, else `kernels.idle_timeout`. (A GPU kernel's units are also taken back by
/// the GPU scheduler, after `gpu.idle_after` or `gpu.idle_timeout`: [`super::gpus`].)
fn idle_timeout(cfg: &crate::config::Config, kernel: &Kernel) -> Duration {
    kernel
        .spec
        .idle_timeout
        .unwrap_or(cfg.kernels.idle_timeout)
        .as_std()
}

/// Reads everything the kernel sends and hands it to the kernel's sockets.
async fn pump(kernel: std::sync::Weak<Kernel>, mut rx: mpsc::Receiver<KernelMessage>) {
    while let Some((channel, msg)) = rx.recv().await {
        let Some(kernel) = kernel.upgrade() else {
            return;
        };
        if channel == Channel::IOPub {
            match msg.msg_type().as_deref() {
                Ok("status") => {
                    if let Some(state) = msg.content_json().ok().and_then(|c| {
                        c["execution_state"]
                            .as_str()
                            .and_then(ExecutionState::from_status)
                    }) {
                        let mut st = lock(&kernel.status);
                        if !matches!(
                            st.execution_state,
                            ExecutionState::Restarting | ExecutionState::Dead
                        ) {
                            st.execution_state = state;
                        }
                    }
                }
                Ok("stream" | "execute_result" | "display_data" | "error" | "execute_input") => {
                    kernel.touch()
                }
                _ => {}
            }
        }
        kernel.dispatch(channel, msg);
    }
}

/// The text a notebook gets when its kernel died.
pub fn dead_notice(reason: &str) -> String {
    format!("Kernel died: {reason}\nRestart the kernel to go on.\n")
}

/// Marks kernels `dead`, with the reason, when their container stopped or their heartbeat
/// failed [`HB_MISSES`] times in a row.
async fn monitor(gw: std::sync::Weak<Gateway>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(MONITOR_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        let Some(gw) = gw.upgrade() else { return };
        let kernels: Vec<Arc<Kernel>> = lock(&gw.kernels).values().cloned().collect();
        // GPU units held by idle kernels: the waste GPU scheduling exists to shrink.
        let idle_units: usize = kernels
            .iter()
            .filter(|k| k.execution_state() == ExecutionState::Idle)
            .map(|k| lock(&k.gpus).len())
            .sum();
        if idle_units > 0 {
            gw.services
                .metrics
                .gpu_idle_leased(idle_units as f64 * MONITOR_EVERY.as_secs_f64());
            // …and by `[[gpu.groups]]` entry of their users.
            for k in kernels
                .iter()
                .filter(|k| k.execution_state() == ExecutionState::Idle)
            {
                let units = lock(&k.gpus).len();
                if units == 0 {
                    continue;
                }
                for group in gw.gpu_groups_of(&k.user) {
                    gw.services
                        .metrics
                        .gpu_group_idle_leased(&group, units as f64 * MONITOR_EVERY.as_secs_f64());
                }
            }
        }
        for k in kernels {
            let (state, container) = {
                let st = lock(&k.status);
                (st.execution_state, st.container.clone())
            };
            if state.is_starting() || state == ExecutionState::Dead {
                continue;
            }
            let Some(container) = container else { continue };
            // A restart or reclaim in progress owns the kernel; look again next round.
            let Ok(_guard) = k.lifecycle.try_lock() else {
                continue;
            };
            if let Some(reason) = gw.services.runtime.stopped(&container).await {
                gw.kernel_died(&k, reason).await;
                continue;
            }
            let Some(client) = k.client.read().await.clone() else {
                continue;
            };
            let misses = if client.heartbeat(HB_TIMEOUT).await {
                0
            } else {
                lock(&k.status).hb_misses + 1
            };
            lock(&k.status).hb_misses = misses;
            if misses >= HB_MISSES {
                let secs = (MONITOR_EVERY + HB_TIMEOUT).as_secs() * u64::from(misses);
                gw.kernel_died(&k, format!(
                    "it stopped answering its heartbeat for about {secs} s (hung, or its container is frozen)"
                ))
                .await;
            }
        }
    }
}
