//! Waiting for a GPU, where the user is: a GPU kernel that finds no free unit joins the queue
//! ([`crate::gpu::scheduler`] orders it) and Orrery stands in for it until it runs.
//!
//! While a kernel waits (and while it starts after its grant), messages from its sockets are
//! *held* instead of sent:
//! * `kernel_info_request` and `comm_info_request` are answered here, from the spec, so
//!   JupyterLab shows a usable kernel rather than a failed start;
//! * an `execute_request` (any shell request) is held in order; the cell shows `busy` and
//!   "waiting for a GPU: N ahead of you", again whenever N changes; once the kernel runs,
//!   the held requests are sent to it in order and answered by it;
//! * an interrupt cancels the held cells (each gets an `aborted` reply saying so); the kernel
//!   keeps its place;
//! * a wait longer than `gpu.queue_timeout` ends the same way, with a message saying why.
//!
//! The queue is in the state store with the headers of the held cells: after a restart the
//! kernel waits on in its place, and its held cells are answered with a request to run them
//! again (their content is not kept: it may hold anything the user typed).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::manager::{lock, Gateway, Kernel};
use crate::gpu::scheduler::Request;
use crate::kernels::{Channel, RawMessage};
use crate::state::QueueEntry;

/// What a kernel waiting for a GPU keeps.
#[derive(Default)]
pub struct Wait {
    /// Messages are held rather than sent: the kernel waits, or starts after its grant.
    pub holding: bool,
    /// Held messages in arrival order, with the socket each came from.
    pub held: Vec<(u64, Channel, RawMessage)>,
    /// The place last told to the notebooks (told again when it changes).
    pub told: Option<usize>,
    /// Headers of held cells lost to a restart of the daemon, answered on the next socket.
    pub lost: Vec<Value>,
}

impl Kernel {
    /// The waiting request this kernel makes for its units.
    pub fn gpu_request(&self, since: DateTime<Utc>) -> Request {
        Request {
            kernel: self.id.clone(),
            user: self.user.clone(),
            units: self.spec.gpus,
            gpu_model: self.spec.gpu_model.clone(),
            mig_profile: self.spec.mig_profile.clone(),
            since,
            // Set from the user's groups whenever the queue is read (`gpu_waiting`).
            priority: 0,
        }
    }

    /// Whether messages to this kernel are held (it waits for a GPU, or starts after one).
    pub fn is_holding(&self) -> bool {
        lock(&self.wait).holding
    }

    /// `status` on iopub, as the child of `parent`.
    fn status(&self, state: &str, parent: &RawMessage) {
        let msg = RawMessage::new("status", &self.id, &json!({"execution_state": state}))
            .with_parent(parent);
        self.dispatch_iopub(msg);
    }

    /// The `kernel_info_reply` a waiting kernel gives: from its spec.
    fn kernel_info_reply(&self) -> Value {
        json!({
            "status": "ok",
            "protocol_version": crate::kernels::wire::PROTOCOL_VERSION,
            "implementation": "orrery-gpu-queue",
            "implementation_version": crate::version::version(),
            "language_info": {"name": self.spec.language},
            "banner": format!("{}: waiting for a GPU; the kernel starts when one is free", self.spec.display_name),
            "help_links": [],
        })
    }

    /// Answer every held cell with `text` (stderr, under the cell) and an `aborted` reply;
    /// the other held messages are dropped. Returns how many cells were answered.
    pub fn cancel_held(&self, text: &str) -> usize {
        let held = std::mem::take(&mut lock(&self.wait).held);
        let mut cells = 0;
        for (socket, channel, msg) in held {
            if channel != Channel::Shell || !msg.msg_type().is_ok_and(|t| t == "execute_request") {
                continue;
            }
            cells += 1;
            self.notify(text, Some(&msg));
            let reply = RawMessage::new(
                "execute_reply",
                &self.id,
                &json!({"status": "aborted", "execution_count": null}),
            )
            .with_parent(&msg);
            self.send_to_socket(socket, Channel::Shell, reply);
            self.status("idle", &msg);
        }
        lock(&self.wait).told = None;
        cells
    }

    /// Answer the cells a restart of the daemon lost while they were held: a request to run
    /// them again, an `aborted` reply and `idle`, to every socket (the one that sent them is
    /// gone). Called when a socket connects.
    pub fn answer_lost_cells(&self) {
        let lost = std::mem::take(&mut lock(&self.wait).lost);
        for header in lost {
            let text = "The hub restarted while this cell waited for a GPU, and the cell was \
                        not kept: run it again.\n";
            let stream =
                RawMessage::new("stream", &self.id, &json!({"name": "stderr", "text": text}))
                    .with_parent_header(&header);
            self.dispatch_iopub(stream);
            let reply = RawMessage::new(
                "execute_reply",
                &self.id,
                &json!({"status": "aborted", "execution_count": null}),
            )
            .with_parent_header(&header);
            self.dispatch_all(Channel::Shell, reply);
            let idle = RawMessage::new("status", &self.id, &json!({"execution_state": "idle"}))
                .with_parent_header(&header);
            self.dispatch_iopub(idle);
        }
    }
}

/// The text under a held cell while it waits.
pub fn waiting_text(ahead: usize, units: u32) -> String {
    let what = if units == 1 {
        "a GPU".to_string()
    } else {
        format!("{units} GPUs")
    };
    format!("waiting for {what}: {ahead} ahead of you; the cell runs when it is free\n")
}

impl Gateway {
    /// The waiting requests, in arrival order.
    pub fn gpu_waiting(&self) -> Vec<Request> {
        let mut waiting = lock(&self.gpu_queue).clone();
        // Priorities as the config and the groups say now (one lookup per user).
        let mut seen: std::collections::HashMap<String, i32> = Default::default();
        for r in &mut waiting {
            r.priority = *seen
                .entry(r.user.clone())
                .or_insert_with(|| self.gpu_standing(&r.user).priority);
        }
        waiting
    }

    /// Put `kernel` in the queue (waiting since `since`: its place, kept by a restart) and
    /// hold its messages. Caller holds the grant lock.
    pub(super) fn enqueue(&self, kernel: &Kernel, since: DateTime<Utc>) {
        let request = kernel.gpu_request(since);
        {
            let mut q = lock(&self.gpu_queue);
            q.retain(|r| r.kernel != kernel.id);
            q.push(request.clone());
            q.sort_by(|a, b| (a.since, &a.kernel).cmp(&(b.since, &b.kernel)));
        }
        lock(&kernel.wait).holding = true;
        lock(&kernel.status).queued = Some(since);
        self.persist_wait(kernel);
        self.services
            .metrics
            .gpu_queue_length(lock(&self.gpu_queue).len());
        tracing::info!(kernel = %kernel.id, user = %kernel.user, units = kernel.spec.gpus, since = %since, "kernel waits for a GPU");
        self.schedule_now.notify_one();
    }

    /// Take `kernel` out of the queue (granted, timed out, deleted).
    pub(super) fn dequeue(&self, kernel: &Kernel) {
        lock(&self.gpu_queue).retain(|r| r.kernel != kernel.id);
        lock(&kernel.status).queued = None;
        if let Err(e) = self.services.store.remove_gpu_wait(&kernel.id) {
            tracing::error!(kernel = %kernel.id, error = %e, "cannot remove the kernel from the stored GPU queue");
        }
        self.services
            .metrics
            .gpu_queue_length(lock(&self.gpu_queue).len());
    }

    /// Write `kernel`'s place and held cells to the state store.
    fn persist_wait(&self, kernel: &Kernel) {
        let Some(since) = lock(&kernel.status).queued else {
            return;
        };
        let held = lock(&kernel.wait)
            .held
            .iter()
            .filter(|(_, c, m)| {
                *c == Channel::Shell && m.msg_type().is_ok_and(|t| t == "execute_request")
            })
            .filter_map(|(_, _, m)| m.header_json().ok())
            .collect();
        let entry = QueueEntry {
            request: kernel.gpu_request(since),
            held,
        };
        if let Err(e) = self.services.store.put_gpu_wait(&entry) {
            tracing::error!(kernel = %kernel.id, error = %e, "cannot store the GPU queue");
        }
    }

    /// How many are served before `kernel` (`None`: it does not wait).
    pub fn ahead_of(&self, kernel: &str) -> Option<usize> {
        let waiting = self.gpu_waiting();
        let held = self.units_held_by_user();
        crate::gpu::scheduler::ahead_of(&waiting, &held, kernel)
    }

    /// A message from `socket` to a kernel whose messages are held: answered here, held, or
    /// dropped. Returns false when the kernel is not holding (send it as usual).
    pub fn hold_if_waiting(
        &self,
        kernel: &Arc<Kernel>,
        socket: u64,
        channel: Channel,
        msg: &RawMessage,
    ) -> bool {
        let msg_type = msg.msg_type().unwrap_or_default();
        {
            let mut wait = lock(&kernel.wait);
            if !wait.holding {
                return false;
            }
            if channel == Channel::Shell
                && !matches!(
                    msg_type.as_str(),
                    "kernel_info_request" | "comm_info_request"
                )
            {
                wait.held.push((socket, channel, msg.clone()));
                wait.told = None;
            }
        }
        match (channel, msg_type.as_str()) {
            (Channel::Shell, "kernel_info_request") => {
                kernel.status("busy", msg);
                let reply =
                    RawMessage::new("kernel_info_reply", &kernel.id, &kernel.kernel_info_reply())
                        .with_parent(msg);
                kernel.send_to_socket(socket, Channel::Shell, reply);
                kernel.status("idle", msg);
            }
            (Channel::Shell, "comm_info_request") => {
                let reply = RawMessage::new(
                    "comm_info_reply",
                    &kernel.id,
                    &json!({"status": "ok", "comms": {}}),
                )
                .with_parent(msg);
                kernel.send_to_socket(socket, Channel::Shell, reply);
            }
            (Channel::Shell, "execute_request") => {
                kernel.status("busy", msg);
                self.persist_wait(kernel);
                self.tell_places();
            }
            (Channel::Control, "interrupt_request") => {
                self.interrupt_waiting(kernel);
                let reply =
                    RawMessage::new("interrupt_reply", &kernel.id, &json!({"status": "ok"}))
                        .with_parent(msg);
                kernel.send_to_socket(socket, Channel::Control, reply);
            }
            // Held (other shell requests), or nothing to do for a kernel that does not run.
            _ => {}
        }
        true
    }

    /// An interrupt while the kernel waits: its held cells are cancelled, its place kept.
    pub fn interrupt_waiting(&self, kernel: &Kernel) {
        let n = kernel.cancel_held(
            "Interrupted while waiting for a GPU: the cell did not run. The kernel keeps its \
             place in the queue.\n",
        );
        self.persist_wait(kernel);
        tracing::info!(kernel = %kernel.id, cells = n, "held cells cancelled by an interrupt");
    }

    /// Tell each waiting kernel's held cells their place, when it changed since last told.
    pub(super) fn tell_places(&self) {
        let waiting = self.gpu_waiting();
        let held = self.units_held_by_user();
        let order = crate::gpu::scheduler::order(&waiting, &held);
        for (ahead, r) in order.iter().enumerate() {
            let Some(kernel) = self.kernel_by_id(&r.kernel) else {
                continue;
            };
            let cells: Vec<RawMessage> = {
                let mut wait = lock(&kernel.wait);
                if wait.told == Some(ahead) {
                    continue;
                }
                let cells: Vec<RawMessage> = wait
                    .held
                    .iter()
                    .filter(|(_, c, m)| {
                        *c == Channel::Shell && m.msg_type().is_ok_and(|t| t == "execute_request")
                    })
                    .map(|(_, _, m)| m.clone())
                    .collect();
                if !cells.is_empty() {
                    wait.told = Some(ahead);
                }
                cells
            };
            // Under the first held cell: the one that runs first.
            if let Some(first) = cells.first() {
                kernel.notify(&waiting_text(ahead, r.units), Some(first));
            }
        }
    }

    /// Send the held messages to the kernel that now runs, in order, and stop holding.
    pub(super) async fn flush_held(&self, kernel: &Arc<Kernel>) {
        loop {
            let batch = {
                let mut wait = lock(&kernel.wait);
                if wait.held.is_empty() {
                    wait.holding = false;
                    wait.told = None;
                    return;
                }
                std::mem::take(&mut wait.held)
            };
            let Some(client) = kernel.client(Duration::from_secs(5)).await else {
                kernel
                    .cancel_held("The kernel stopped before this cell could run: run it again.\n");
                lock(&kernel.wait).holding = false;
                return;
            };
            for (socket, channel, msg) in batch {
                super::channels::send_routed(kernel, &client, socket, channel, msg).await;
            }
        }
    }

    /// A wait that ran out (`gpu.queue_timeout`): out of the queue, held cells answered; the
    /// kernel's next cell queues again.
    pub(super) fn wait_expired(&self, kernel: &Kernel, after: Duration) {
        self.dequeue(kernel);
        kernel.cancel_held(&format!(
            "No GPU became free within {} (gpu.queue_timeout), so this cell did not run. Run \
             it again to wait again, or ask your instructor about GPU time.\n",
            super::manager::minutes(after)
        ));
        lock(&kernel.wait).holding = false;
        lock(&kernel.status).reclaimed = Some(super::manager::Reclaimed::WaitEnded);
        self.services.metrics.gpu_wait_ended();
        tracing::info!(kernel = %kernel.id, user = %kernel.user, "kernel's wait for a GPU ran out");
    }
}

/// Who holds a unit, as `orrery gpus` and the admin API show it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HolderView {
    pub unit: String,
    pub user: String,
    pub kernel: String,
    /// Seconds since the kernel's last traffic or GPU use (`None`: it is executing).
    pub idle_s: Option<u64>,
    /// When it got the unit (its lease).
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// Its SM utilization on the unit (its own processes' highest, else the unit's), in
    /// NVML's last sample; `None` without NVML's figures.
    #[serde(default)]
    pub utilization: Option<u32>,
    /// Set when a notebook server holds the unit (a GPU profile; `kernel` is then empty): the
    /// server's name ("" for the default one).
    #[serde(default)]
    pub server: Option<String>,
}

/// The GPUs as the admin's panel and `GET /hub/api/orrery/gpus` show them, read once.
pub struct GpuSnapshot {
    /// What NVML shows now, or why it shows nothing.
    pub inventory: Result<crate::gpu::Inventory, crate::gpu::GpuError>,
    pub holders: Vec<HolderView>,
    pub queue: Vec<WaitView>,
    pub foreign: Vec<ForeignProcess>,
}

/// A process on a GPU unit that no kernel holding the unit runs: started outside Orrery.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ForeignProcess {
    pub unit: String,
    pub pid: u32,
    pub used_memory: Option<u64>,
}

/// One waiting kernel, in the order of service.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WaitView {
    /// How many are served before it.
    pub ahead: usize,
    pub kernel: String,
    pub user: String,
    pub units: u32,
    pub waiting_s: u64,
    /// Its user's GPU priority (`[[gpu.groups]]`; 0 outside them).
    #[serde(default)]
    pub priority: i32,
}

impl Gateway {
    /// The holders of units and the queue in its order, for `orrery gpus` and the admin API.
    pub fn gpu_view(&self) -> (Vec<HolderView>, Vec<WaitView>) {
        self.gpu_view_seen(None)
    }

    /// NVML read now, the holders (with utilization), the queue and the processes Orrery did
    /// not start: what the GPU panel and the admin API show.
    pub async fn gpu_snapshot(&self) -> GpuSnapshot {
        let inventory = crate::gpu::probe_off_thread(self.services.config.get().gpu.clone()).await;
        let (holders, queue) = self.gpu_view_seen(inventory.as_ref().ok());
        let foreign = inventory
            .as_ref()
            .map(|inv| self.foreign_processes(inv))
            .unwrap_or_default();
        GpuSnapshot {
            inventory,
            holders,
            queue,
            foreign,
        }
    }

    /// [`Gateway::gpu_view`] with what NVML shows: each holder's utilization.
    pub fn gpu_view_seen(
        &self,
        inventory: Option<&crate::gpu::Inventory>,
    ) -> (Vec<HolderView>, Vec<WaitView>) {
        let now = Utc::now();
        let leases = self.services.store.leases().unwrap_or_default();
        let mut holders = Vec::new();
        for k in self.all_kernels() {
            let units = lock(&k.gpus).clone();
            let (state, last) = {
                let st = lock(&k.status);
                (st.execution_state, st.last_activity)
            };
            for unit in units {
                let since = leases
                    .iter()
                    .find(|l| l.unit == unit && l.holder.kernel() == Some(k.id.as_str()))
                    .map(|l| l.since);
                let utilization = inventory
                    .and_then(|inv| inv.units.iter().find(|u| u.uuid == unit))
                    .and_then(|u| {
                        let own = u
                            .processes
                            .iter()
                            .filter(|p| self.owns_pid(&k, p.pid))
                            .filter_map(|p| p.sm_util)
                            .max();
                        own.or(u.utilization)
                    });
                holders.push(HolderView {
                    unit,
                    user: k.user.clone(),
                    kernel: k.id.clone(),
                    idle_s: (state != super::state::ExecutionState::Busy)
                        .then(|| (now - last).num_seconds().max(0) as u64),
                    since,
                    utilization,
                    server: None,
                });
            }
        }
        // Servers started with a GPU profile hold their units for their life.
        for l in &leases {
            if let crate::state::LeaseHolder::Server { user, server } = &l.holder {
                let utilization = inventory
                    .and_then(|inv| inv.units.iter().find(|u| u.uuid == l.unit))
                    .and_then(|u| u.utilization);
                holders.push(HolderView {
                    unit: l.unit.clone(),
                    user: user.clone(),
                    kernel: String::new(),
                    idle_s: None,
                    since: Some(l.since),
                    utilization,
                    server: Some(server.clone()),
                });
            }
        }
        holders.sort_by(|a, b| a.unit.cmp(&b.unit));
        (
            holders,
            wait_views(&self.gpu_waiting(), &self.units_held_by_user(), now),
        )
    }
}

/// The queue in its order of service.
pub fn wait_views(
    waiting: &[Request],
    held: &std::collections::HashMap<String, u32>,
    now: DateTime<Utc>,
) -> Vec<WaitView> {
    crate::gpu::scheduler::order(waiting, held)
        .into_iter()
        .enumerate()
        .map(|(ahead, r)| WaitView {
            ahead,
            kernel: r.kernel.clone(),
            user: r.user.clone(),
            units: r.units,
            waiting_s: (now - r.since).num_seconds().max(0) as u64,
            priority: r.priority,
        })
        .collect()
}
