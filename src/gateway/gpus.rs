//! GPU units for kernels: a kernel whose spec asks for `gpus = N` holds N units (whole GPUs, or
//! MIG devices) while its container runs, all of them or none, and no other container sees
//! them.
//!
//! A unit is granted at every start of the kernel (create, restart, re-creation after a
//! reclaim) and released whenever its container goes (delete, death, reclaim, a restart that
//! fails). Grants are persisted as leases in the state store, so a restarted daemon hands no
//! unit out twice; [`Gateway::reconcile_leases`] drops the leases of kernels it did not take
//! back. A unit running a process Orrery did not lease (NVML's process list) is not handed out.
//!
//! When no unit is free the kernel waits in a queue ([`super::queue`]); the scheduler loop
//! ([`scheduler_loop`]) carries out what [`crate::gpu::scheduler`] decides each round: grants
//! to waiting kernels, waits that ran out, idle kernels that give their units back (at once
//! when someone waits, after `gpu.idle_timeout` otherwise, with a warning 5 minutes before).
//! A kernel is active on its GPU when NVML shows one of *its* processes (host PIDs, mapped to
//! its container by the runtime) computing; where NVML has no per-process figures (MIG),
//! traffic and execution state decide alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::manager::{lock, Gateway, Kernel, Reclaimed};
use super::state::ExecutionState;
use crate::config::GpuPolicy;
use crate::gpu;
use crate::gpu::scheduler::{self, Decision, Policy, Slot};
use crate::gpu::standing::{self, Standing};
use crate::state::LeaseHolder;

impl Kernel {
    /// The lease holder this kernel is.
    pub fn lease_holder(&self) -> LeaseHolder {
        LeaseHolder::Kernel {
            id: self.id.clone(),
            user: self.user.clone(),
        }
    }
}

impl Gateway {
    /// Give `kernel` the units its spec asks for, all or none. `Ok(true)`: it holds them (or
    /// needs none); `Ok(false)`: it waits in the queue; `Err`: why it can never get them now,
    /// for the user (quota, no such GPUs, no NVML).
    pub(super) fn grant_gpus(&self, kernel: &Kernel) -> Result<bool, String> {
        // A kernel of a server started with a GPU profile sees its server's units and leases
        // none of its own.
        let inherited = self.server_gpus(&kernel.user, &kernel.server);
        let inherits = !inherited.is_empty();
        *lock(&kernel.inherited_gpus) = inherited;
        let wanted = kernel.spec.gpus as usize;
        // A cluster's device plugin places the pod's GPUs: Orrery leases none.
        let cfg = self.services.config.get();
        let plugin_places = cfg.spawner.backend == crate::config::BackendKind::Kubernetes
            && cfg.spawner.kubernetes.gpus == crate::config::KubernetesGpus::DevicePlugin;
        if wanted == 0 || inherits || plugin_places {
            return Ok(true);
        }
        let store = &self.services.store;
        // One grant at a time: two kernels never pick the same free unit.
        let _one_at_a_time = self.gpu_grants.lock().unwrap_or_else(|e| e.into_inner());
        let holder = kernel.lease_holder();
        let leases = store.leases().map_err(|e| e.to_string())?;
        let mine: Vec<String> = leases
            .iter()
            .filter(|l| l.holder == holder)
            .map(|l| l.unit.clone())
            .collect();
        if mine.len() == wanted {
            *kernel.gpus.lock().unwrap_or_else(|e| e.into_inner()) = mine;
            return Ok(true);
        }
        let waiting = self.gpu_waiting();
        if waiting.iter().any(|r| r.kernel == kernel.id) {
            return Ok(false);
        }
        let _ = store.release_leases(&holder);
        let cfg = self.services.config.get();
        self.within_quota(
            &kernel.user,
            &holder,
            &leases,
            &waiting,
            wanted,
            "this kernel",
            "Shut down another GPU kernel first",
        )?;
        let inventory = gpu::probe(&cfg.gpu)
            .map_err(|e| format!("this kernel needs {wanted} GPU(s), but {e}"))?;
        let request = kernel.gpu_request(Utc::now());
        let suitable: Vec<Slot> = inventory
            .schedulable()
            .map(slot)
            .filter(|s| request.fits(s))
            .collect();
        if suitable.len() < wanted {
            let what = match (&kernel.spec.gpu_model, &kernel.spec.mig_profile) {
                (Some(m), _) => format!(" {m}"),
                (None, Some(p)) => format!(" {p}"),
                (None, None) => String::new(),
            };
            return Err(format!(
                "this kernel needs {wanted}{what} GPU unit(s), and this machine has {} that \
                 Orrery schedules: it could never start. Ask for fewer, or change the \
                 kernelspec's gpus / gpu_model / mig_profile",
                suitable.len()
            ));
        }
        // Nobody waits and units are free: take them now; otherwise take a place in line.
        if waiting.is_empty() {
            if let Some(seats) = self.seats_now(&request, &inventory, &leases, &cfg) {
                if store
                    .take_leases(&seats, &holder)
                    .map_err(|e| e.to_string())?
                {
                    tracing::info!(kernel = %kernel.id, user = %kernel.user, seats = ?seats, "GPU units leased");
                    *kernel.gpus.lock().unwrap_or_else(|e| e.into_inner()) = units_of(&seats);
                    return Ok(true);
                }
            }
        }
        self.enqueue(kernel, request.since);
        Ok(false)
    }

    /// Whether `user` may ask for `wanted` more units: what they hold (apart from `holder`'s
    /// own, which it is about to give up) and wait for, plus `wanted`, within their quota.
    /// `Err` names the quota that applied and `fix`; `what` is who asks.
    #[allow(clippy::too_many_arguments)] // the facts of one check, each from the caller
    fn within_quota(
        &self,
        user: &str,
        holder: &LeaseHolder,
        leases: &[crate::state::LeaseRecord],
        waiting: &[scheduler::Request],
        wanted: usize,
        what: &str,
        fix: &str,
    ) -> Result<(), String> {
        let standing = self.gpu_standing(user);
        let quota = standing.quota as usize;
        let held = leases
            .iter()
            .filter(|l| &l.holder != holder && l.holder.user() == user)
            .count();
        let queued: usize = waiting
            .iter()
            .filter(|r| r.user == user)
            .map(|r| r.units as usize)
            .sum();
        if held + queued + wanted <= quota {
            return Ok(());
        }
        let whose = if standing.from_group {
            "the quota of their [[gpu.groups]]"
        } else {
            "gpu.quota.per_user"
        };
        Err(format!(
            "GPU quota: {user} holds {held} GPU unit(s) and waits for {queued}, and {what} asks \
             for {wanted}, but {whose} is {quota}. {fix}"
        ))
    }

    /// The units server `server` of `user` holds (a GPU profile), if any.
    pub fn server_gpus(&self, user: &str, server: &str) -> Vec<String> {
        let holder = LeaseHolder::Server {
            user: user.to_string(),
            server: server.to_string(),
        };
        self.services
            .store
            .leases()
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l.holder == holder)
            .map(|l| l.unit)
            .collect()
    }

    /// Lease `wanted` units (whose model contains `gpu_model`, if given) for a notebook server
    /// started with a GPU profile, for its whole life: counted against the user's quota like
    /// kernels' units, all or none, now or never (a server does not queue: it would hold its
    /// spawn open). Kernels already waiting go first, so a server gets units only when nobody
    /// waits. Returns the units; `Err`: why not, for the user.
    pub fn lease_for_server(
        &self,
        user: &str,
        server: &str,
        wanted: u32,
        gpu_model: Option<String>,
    ) -> Result<Vec<String>, String> {
        let store = &self.services.store;
        let _one_at_a_time = self.gpu_grants.lock().unwrap_or_else(|e| e.into_inner());
        let holder = LeaseHolder::Server {
            user: user.to_string(),
            server: server.to_string(),
        };
        // Leases a crashed spawn of this server left behind are its own.
        store.release_leases(&holder).map_err(|e| e.to_string())?;
        let cfg = self.services.config.get();
        let standing = self.gpu_standing(user);
        let leases = store.leases().map_err(|e| e.to_string())?;
        let waiting = self.gpu_waiting();
        self.within_quota(
            user,
            &holder,
            &leases,
            &waiting,
            wanted as usize,
            "this profile",
            "Stop a GPU server or shut down a GPU kernel first",
        )?;
        let inventory = gpu::probe(&cfg.gpu)
            .map_err(|e| format!("this profile needs {wanted} GPU(s), but {e}"))?;
        if !waiting.is_empty() {
            return Err(format!(
                "{} kernel(s) already wait for a GPU and go first; try again when the queue is \
                 empty, or choose a profile without a GPU",
                waiting.len()
            ));
        }
        let request = scheduler::Request {
            kernel: format!("server {user}/{server}"),
            user: user.to_string(),
            units: wanted,
            gpu_model: gpu_model.clone(),
            mig_profile: None,
            since: Utc::now(),
            priority: standing.priority,
        };
        let Some(seats) = self.seats_now(&request, &inventory, &leases, &cfg) else {
            let what = gpu_model.map(|m| format!(" {m}")).unwrap_or_default();
            let free = self.free_slots(&inventory, &leases, &cfg);
            return Err(format!(
                "no{what} GPU is free now ({} of {wanted} needed); try again later, or \
                 choose a profile without a GPU",
                free.iter().filter(|s| request.fits(s)).count()
            ));
        };
        if !store
            .take_leases(&seats, &holder)
            .map_err(|e| e.to_string())?
        {
            return Err("another start took that GPU a moment ago; try again".into());
        }
        let units = units_of(&seats);
        tracing::info!(%user, %server, units = ?units, "GPU units leased for a server");
        Ok(units)
    }

    /// The seats `request` would get now from the free ones, all or none (not leased yet).
    fn seats_now(
        &self,
        request: &scheduler::Request,
        inventory: &gpu::Inventory,
        leases: &[crate::state::LeaseRecord],
        cfg: &crate::config::Config,
    ) -> Option<Vec<String>> {
        let free = self.free_slots(inventory, leases, cfg);
        scheduler::grants(
            std::slice::from_ref(request),
            &HashMap::new(),
            &free,
            Utc::now(),
            &policy(cfg),
        )
        .into_iter()
        .next()
        .map(|(_, seats)| seats)
    }

    /// Give back what server `server` of `user` holds (it stopped, was culled or failed).
    pub fn release_server_gpus(&self, user: &str, server: &str) {
        let holder = LeaseHolder::Server {
            user: user.to_string(),
            server: server.to_string(),
        };
        match self.services.store.release_leases(&holder) {
            Ok(units) if !units.is_empty() => {
                tracing::info!(%user, %server, units = ?units, "a server's GPU units released");
                self.schedule_now.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::error!(%user, %server, error = %e, "cannot release GPU leases"),
        }
    }

    /// `user`'s priority and quota for GPUs, from the config's `[[gpu.groups]]` and the
    /// user's groups now (a reload or a membership change applies at once).
    pub(super) fn gpu_standing(&self, user: &str) -> Standing {
        let cfg = self.services.config.get();
        if cfg.gpu.groups.is_empty() {
            return standing::of(&cfg.gpu, &[]);
        }
        let groups = crate::groups::groups_of(&self.services.store, &cfg, user);
        standing::of(&cfg.gpu, &groups)
    }

    /// The `[[gpu.groups]]` entries `user` belongs to (what per-group metrics count them in).
    pub(super) fn gpu_groups_of(&self, user: &str) -> Vec<String> {
        let cfg = self.services.config.get();
        if cfg.gpu.groups.is_empty() {
            return Vec::new();
        }
        let groups = crate::groups::groups_of(&self.services.store, &cfg, user);
        cfg.gpu
            .groups
            .iter()
            .filter(|g| groups.contains(&g.name))
            .map(|g| g.name.clone())
            .collect()
    }

    /// Each `[[gpu.groups]]` entry with the units its members hold and wait for now (a user
    /// in several groups counts in each), for the metrics.
    pub fn gpu_group_gauges(&self) -> Vec<crate::metrics::GpuGroupGauge> {
        let cfg = self.services.config.get();
        let mut out: Vec<crate::metrics::GpuGroupGauge> = cfg
            .gpu
            .groups
            .iter()
            .map(|g| crate::metrics::GpuGroupGauge {
                group: g.name.clone(),
                leased: 0,
                queued: 0,
            })
            .collect();
        if out.is_empty() {
            return out;
        }
        let mut add = |user: &str, leased: u32, queued: u32| {
            for name in self.gpu_groups_of(user) {
                if let Some(g) = out.iter_mut().find(|g| g.group == name) {
                    g.leased += leased;
                    g.queued += queued;
                }
            }
        };
        for (user, units) in self.units_held_by_user() {
            add(&user, units, 0);
        }
        for r in self.gpu_waiting() {
            add(&r.user, 0, r.units);
        }
        out
    }

    /// GPU units each user holds now.
    pub(super) fn units_held_by_user(&self) -> HashMap<String, u32> {
        let mut held = HashMap::new();
        for l in self.services.store.leases().unwrap_or_default() {
            *held.entry(l.holder.user().to_string()).or_default() += 1;
        }
        held
    }

    /// One round of the GPU scheduler: mark kernels computing on their GPU as active, end
    /// waits that ran out, grant what can be granted, reclaim or warn idle holders, tell the
    /// waiting their places.
    pub async fn schedule(self: &Arc<Self>) {
        let cfg = self.services.config.get();
        let policy = policy(&cfg);
        let gpu_kernels: Vec<Arc<Kernel>> = self
            .all_kernels()
            .into_iter()
            .filter(|k| !lock(&k.gpus).is_empty())
            .collect();
        let waiting = self.gpu_waiting();
        if gpu_kernels.is_empty() && waiting.is_empty() {
            return;
        }
        let Ok(inventory) = gpu::probe_off_thread(cfg.gpu.clone()).await else {
            return;
        };
        for k in &gpu_kernels {
            if self.active_on_gpu(k, &inventory) {
                k.touch();
            }
        }
        if cfg.gpu.policy == GpuPolicy::Shared {
            for k in &gpu_kernels {
                if k.has_container() {
                    self.watch_memory(k, &inventory, &cfg).await;
                }
            }
        }
        let now = Utc::now();
        for id in scheduler::expired(&waiting, now, &policy) {
            if let Some(k) = self.kernel_by_id(&id) {
                self.wait_expired(&k, policy.queue_timeout);
            }
        }
        let (granted, free_left) = self.grant_waiting(&inventory, &policy);
        for (kernel, waited) in granted {
            self.services.metrics.gpu_waited(waited);
            kernel.notify(
                &format!(
                    "got a GPU after waiting {} s; starting the kernel\n",
                    waited.as_secs()
                ),
                lock(&kernel.wait)
                    .held
                    .iter()
                    .find(|(_, c, _)| *c == crate::kernels::Channel::Shell)
                    .map(|(_, _, m)| m),
            );
            let gw = self.clone();
            tokio::spawn(async move {
                let _guard = kernel.lifecycle.lock().await;
                if !kernel.is_deleted() {
                    gw.start(&kernel).await;
                }
            });
        }
        let waiting = self.gpu_waiting();
        let needed = scheduler::shortfall(&waiting, free_left);
        let holdings: Vec<scheduler::Holding> = gpu_kernels
            .iter()
            .filter(|k| k.has_container())
            .filter_map(|k| {
                let st = lock(&k.status);
                if st.execution_state.is_starting() || st.execution_state == ExecutionState::Dead {
                    return None;
                }
                Some(scheduler::Holding {
                    kernel: k.id.clone(),
                    units: lock(&k.gpus).len() as u32,
                    busy: st.execution_state == ExecutionState::Busy,
                    idle_since: st.last_activity,
                    warned: k.gpu_warned.load(std::sync::atomic::Ordering::Relaxed),
                })
            })
            .collect();
        for decision in scheduler::reclaims(&holdings, needed, now, &policy) {
            match decision {
                Decision::ReclaimForWaiting { kernel, .. } => {
                    if let Some(k) = self.kernel_by_id(&kernel) {
                        tracing::info!(kernel = %k.id, user = %k.user, "reclaiming an idle GPU kernel for a waiting one");
                        self.reclaim(&k, policy.idle_after, Reclaimed::Gpu).await;
                    }
                }
                Decision::ReclaimIdle { kernel, .. } => {
                    if let Some(k) = self.kernel_by_id(&kernel) {
                        self.reclaim(&k, policy.idle_timeout, Reclaimed::Gpu).await;
                    }
                }
                Decision::Warn { kernel, in_ } => {
                    if let Some(k) = self.kernel_by_id(&kernel) {
                        k.gpu_warned
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        k.notify(
                            &format!(
                                "This kernel has not used its GPU for a while: the GPU will be \
                                 given back in {} unless the kernel runs something (its state \
                                 would then be reset).\n",
                                super::manager::minutes(in_)
                            ),
                            None,
                        );
                    }
                }
            }
        }
        self.tell_places();
    }

    /// Grant the units free now to the waiting, in the scheduler's order. Returns the kernels
    /// granted (with how long they waited) and how many units are still free.
    fn grant_waiting(
        &self,
        inventory: &gpu::Inventory,
        policy: &Policy,
    ) -> (Vec<(Arc<Kernel>, Duration)>, usize) {
        let _one_at_a_time = self.gpu_grants.lock().unwrap_or_else(|e| e.into_inner());
        let leases = self.services.store.leases().unwrap_or_default();
        let free = self.free_slots(inventory, &leases, &self.services.config.get());
        let waiting = self.gpu_waiting();
        let held = self.units_held_by_user();
        let mut granted = Vec::new();
        let mut used = 0;
        for (id, seats) in scheduler::grants(&waiting, &held, &free, Utc::now(), policy) {
            let Some(kernel) = self.kernel_by_id(&id) else {
                continue;
            };
            let holder = kernel.lease_holder();
            let units = units_of(&seats);
            match self.services.store.take_leases(&seats, &holder) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(kernel = %id, error = %e, "cannot store GPU leases");
                    continue;
                }
            }
            used += units.len();
            let since = lock(&kernel.status).queued.unwrap_or_else(Utc::now);
            tracing::info!(kernel = %id, user = %kernel.user, units = ?units, "GPU units granted to a waiting kernel");
            *lock(&kernel.gpus) = units;
            self.dequeue(&kernel);
            granted.push((kernel, (Utc::now() - since).to_std().unwrap_or_default()));
        }
        (granted, free.len().saturating_sub(used))
    }

    /// Whether NVML shows `kernel` computing: one of its own processes with SM utilization
    /// above 0 %, or, where NVML gives no per-process figures, its units busy.
    fn active_on_gpu(&self, kernel: &Kernel, inventory: &gpu::Inventory) -> bool {
        let units = lock(&kernel.gpus).clone();
        let Some(handle) = lock(&kernel.status).container.clone() else {
            return false;
        };
        inventory
            .units
            .iter()
            .filter(|u| units.contains(&u.uuid))
            .any(|u| {
                let own: Vec<&gpu::inventory::GpuProcess> = u
                    .processes
                    .iter()
                    .filter(|p| self.services.runtime.owns_pid(&handle, p.pid))
                    .collect();
                if own.iter().any(|p| p.sm_util.is_some()) {
                    own.iter().any(|p| p.sm_util.is_some_and(|s| s > 0))
                } else {
                    u.utilization.is_some_and(|p| p > 0)
                }
            })
    }

    /// The seats free to hand out, one per unit (its lowest free seat): schedulable units
    /// with a seat left (one under the exclusive policy, `gpu.shared.max_per_unit` under the
    /// shared one) and no live process but those of the kernels seated there (a process
    /// Orrery did not start keeps its unit out of the pool while it runs; one of a kernel
    /// container just removed may linger in NVML's list for a moment).
    fn free_slots(
        &self,
        inventory: &gpu::Inventory,
        leases: &[crate::state::LeaseRecord],
        cfg: &crate::config::Config,
    ) -> Vec<Slot> {
        let seats = match cfg.gpu.policy {
            GpuPolicy::Exclusive => 1,
            GpuPolicy::Shared => cfg.gpu.shared.max_per_unit.max(1),
        };
        inventory
            .schedulable()
            .filter_map(|u| {
                let here: Vec<&crate::state::LeaseRecord> =
                    leases.iter().filter(|l| l.unit == u.uuid).collect();
                let seat = (0..seats).find(|n| here.iter().all(|l| l.seat != *n))?;
                let seated: Vec<Arc<Kernel>> = here
                    .iter()
                    .filter_map(|l| self.kernel_by_id(l.holder.kernel()?))
                    .collect();
                if !self.foreign_on(u, &seated).is_empty() {
                    return None;
                }
                let mut s = slot(u);
                s.uuid = crate::state::seat_key(&u.uuid, seat);
                Some(s)
            })
            .collect()
    }

    /// The live processes on `unit` that none of `seated` (the kernels holding it) runs.
    fn foreign_on<'a>(
        &self,
        unit: &'a gpu::Unit,
        seated: &[Arc<Kernel>],
    ) -> Vec<&'a gpu::inventory::GpuProcess> {
        unit.processes
            .iter()
            .filter(|p| {
                gpu::process::alive(p.pid) && !seated.iter().any(|k| self.owns_pid(k, p.pid))
            })
            .collect()
    }

    /// Processes on the units that no kernel holding them runs: started outside Orrery (or a
    /// removed kernel's, lingering in NVML's list for a moment). For the admin's GPU panel.
    pub fn foreign_processes(
        &self,
        inventory: &gpu::Inventory,
    ) -> Vec<super::queue::ForeignProcess> {
        let leases = self.services.store.leases().unwrap_or_default();
        let mut out = Vec::new();
        for u in &inventory.units {
            let seated: Vec<Arc<Kernel>> = leases
                .iter()
                .filter(|l| l.unit == u.uuid)
                .filter_map(|l| self.kernel_by_id(l.holder.kernel()?))
                .collect();
            for p in self.foreign_on(u, &seated) {
                out.push(super::queue::ForeignProcess {
                    unit: u.uuid.clone(),
                    pid: p.pid,
                    used_memory: p.used_memory,
                });
            }
        }
        out
    }

    /// Whether host process `pid` runs in `kernel`'s container (or process tree).
    pub(super) fn owns_pid(&self, kernel: &Kernel, pid: u32) -> bool {
        lock(&kernel.status)
            .container
            .as_ref()
            .is_some_and(|h| self.services.runtime.owns_pid(h, pid))
    }

    /// Under the shared policy: GPU memory `kernel`'s processes use on each of its units
    /// against its budget there. `Some((used, budget))` for the unit most over budget, if any.
    fn over_budget(
        &self,
        kernel: &Kernel,
        inventory: &gpu::Inventory,
        cfg: &crate::config::Config,
    ) -> Option<(u64, u64)> {
        let units = lock(&kernel.gpus).clone();
        inventory
            .units
            .iter()
            .filter(|u| units.contains(&u.uuid))
            .filter_map(|u| {
                let used: u64 = u
                    .processes
                    .iter()
                    .filter(|p| self.owns_pid(kernel, p.pid))
                    .filter_map(|p| p.used_memory)
                    .sum();
                let budget = kernel.spec.gpu_memory.map_or_else(
                    || u.memory_total / u64::from(cfg.gpu.shared.max_per_unit.max(1)),
                    |m| m.bytes(),
                );
                (used > budget).then_some((used, budget))
            })
            .max_by_key(|(used, budget)| used - budget)
    }

    /// Under the shared policy, one round of the memory watch for `kernel`: over its budget,
    /// its notebooks are told under the running cell; still over after `gpu.shared.grace`, it
    /// is stopped (dead, with the reason; a restart brings it back); back under, told so.
    async fn watch_memory(
        &self,
        kernel: &Kernel,
        inventory: &gpu::Inventory,
        cfg: &crate::config::Config,
    ) {
        let over = self.over_budget(kernel, inventory, cfg);
        let since = *lock(&kernel.gpu_over_since);
        let grace = cfg.gpu.shared.grace.as_std();
        match (over, since) {
            (Some((used, budget)), None) => {
                *lock(&kernel.gpu_over_since) = Some(Utc::now());
                tracing::warn!(kernel = %kernel.id, user = %kernel.user, used, budget, "GPU kernel over its memory budget on a shared unit");
                kernel.notify(
                    &format!(
                        "This kernel uses {} of GPU memory, over its budget of {} on a shared \
                         GPU. Free some (del the tensors you no longer need, then \
                         torch.cuda.empty_cache()) within {}, or the kernel will be stopped.\n",
                        gib(used),
                        gib(budget),
                        super::manager::minutes(grace)
                    ),
                    None,
                );
            }
            (Some((used, budget)), Some(at)) => {
                if (Utc::now() - at).to_std().unwrap_or_default() < grace {
                    return;
                }
                // A restart or delete in progress owns the kernel; look again next round.
                let Ok(_guard) = kernel.lifecycle.try_lock() else {
                    return;
                };
                *lock(&kernel.gpu_over_since) = None;
                self.services.metrics.gpu_over_budget_stopped();
                let reason = format!(
                    "it used {} of GPU memory for more than {}, over its budget of {} on a \
                     shared GPU (gpu_memory in its kernelspec; gpu.policy = \"shared\")",
                    gib(used),
                    super::manager::minutes(grace),
                    gib(budget)
                );
                // Its container goes with it (kernel_died gives it up), and so do its units.
                self.kernel_died(kernel, reason).await;
            }
            (None, Some(_)) => {
                *lock(&kernel.gpu_over_since) = None;
                kernel.notify("This kernel is within its GPU memory budget again.\n", None);
            }
            (None, None) => {}
        }
    }

    /// Give back the units `kernel` holds (its container is gone).
    pub(super) fn release_gpus(&self, kernel: &Kernel) {
        if kernel.spec.gpus == 0 {
            return;
        }
        kernel
            .gpus
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        match self.services.store.release_leases(&kernel.lease_holder()) {
            Ok(units) if !units.is_empty() => {
                tracing::info!(kernel = %kernel.id, units = ?units, "GPU units released");
                // Someone may be waiting for them.
                self.schedule_now.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::error!(kernel = %kernel.id, error = %e, "cannot release GPU leases"),
        }
    }

    /// After adoption: each lease belongs to a kernel that was taken back with its container
    /// running (which keeps it), or it is dropped. Nothing leaks, nothing is held twice.
    pub(super) fn reconcile_leases(&self) {
        let Ok(leases) = self.services.store.leases() else {
            return;
        };
        for lease in leases {
            let id = match &lease.holder {
                LeaseHolder::Kernel { id, .. } => id,
                // A server's units are its own while its record lives; forgetting the server
                // (stopped, culled, gone at a restart) releases them.
                LeaseHolder::Server { user, server } => {
                    if !matches!(self.services.store.server(user, server), Ok(Some(_))) {
                        tracing::info!(unit = %lease.unit, %user, %server, "dropping the GPU lease of a server that no longer runs");
                        let _ = self.services.store.release_leases(&lease.holder);
                    }
                    continue;
                }
            };
            let kernel = self.kernel_by_id(id);
            let running = kernel.as_ref().is_some_and(|k| k.has_container());
            match kernel {
                Some(k) if running => {
                    let mut gpus = k.gpus.lock().unwrap_or_else(|e| e.into_inner());
                    if !gpus.contains(&lease.unit) {
                        gpus.push(lease.unit.clone());
                    }
                }
                // Granted while waiting, and starting when the daemon stopped: it starts again.
                Some(k) if k.is_holding() => {}
                _ => {
                    tracing::info!(unit = %lease.unit, kernel = %id, "dropping the GPU lease of a kernel that no longer runs");
                    let _ = self.services.store.release_leases(&lease.holder);
                }
            }
        }
    }
}

/// A unit as the scheduler sees it.
fn slot(u: &gpu::Unit) -> Slot {
    Slot {
        uuid: u.uuid.clone(),
        model: u.model.clone(),
        mig_profile: u.mig_profile.clone(),
    }
}

/// The units of seat keys, as the kernel's container is given them.
fn units_of(seats: &[String]) -> Vec<String> {
    seats
        .iter()
        .map(|s| crate::state::parse_seat(s).0.to_string())
        .collect()
}

/// The scheduler's knobs from `[gpu]`.
fn policy(cfg: &crate::config::Config) -> Policy {
    Policy {
        idle_after: cfg.gpu.idle_after.as_std(),
        idle_timeout: cfg.gpu.idle_timeout.as_std(),
        queue_timeout: cfg.gpu.queue_timeout.as_std(),
        // Never more than half the timeout: a short one (tests, eager settings) still
        // warns once, not every round.
        warn_before: WARN_BEFORE.min(cfg.gpu.idle_timeout.as_std() / 2),
    }
}

/// How long before an `idle_timeout` reclaim the notebooks are told.
const WARN_BEFORE: Duration = Duration::from_secs(300);
/// How often the scheduler looks when nothing wakes it.
const SCHEDULE_EVERY: Duration = Duration::from_secs(2);

/// Runs [`Gateway::schedule`] every [`SCHEDULE_EVERY`], or at once when woken (a kernel
/// queued, units released).
pub async fn scheduler_loop(gw: std::sync::Weak<Gateway>, stop: CancellationToken) {
    loop {
        let Some(g) = gw.upgrade() else { return };
        tokio::select! {
            _ = tokio::time::sleep(SCHEDULE_EVERY) => {}
            _ = g.schedule_now.notified() => {}
            _ = stop.cancelled() => return,
        }
        g.schedule().await;
    }
}

/// Bytes as GiB with one decimal.
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}
