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
//! When no unit is free the start fails with a message that says so; waiting in a fair queue
//! for one is the next step of GPU scheduling.

use std::collections::HashSet;

use super::manager::{Gateway, Kernel};
use crate::gpu;
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
    /// Give `kernel` the units its spec asks for, all or none (Err: why not, for the user).
    pub(super) fn grant_gpus(&self, kernel: &Kernel) -> Result<(), String> {
        let wanted = kernel.spec.gpus as usize;
        if wanted == 0 {
            return Ok(());
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
            return Ok(());
        }
        let _ = store.release_leases(&holder);
        let quota = self.services.config.get().gpu.quota.per_user as usize;
        let held = leases
            .iter()
            .filter(|l| l.holder != holder && l.holder.user() == kernel.user)
            .count();
        if held + wanted > quota {
            return Err(format!(
                "GPU quota: {} holds {held} GPU unit(s) and this kernel asks for {wanted}, but \
                 gpu.quota.per_user is {quota}. Shut down another GPU kernel first",
                kernel.user
            ));
        }
        let inventory = gpu::probe(&self.services.config.get().gpu)
            .map_err(|e| format!("this kernel needs {wanted} GPU(s), but {e}"))?;
        let leased: HashSet<&str> = leases
            .iter()
            .filter(|l| l.holder != holder)
            .map(|l| l.unit.as_str())
            .collect();
        let fits = |u: &&gpu::Unit| {
            kernel
                .spec
                .gpu_model
                .as_deref()
                .is_none_or(|m| u.model.contains(m))
                && kernel
                    .spec
                    .mig_profile
                    .as_deref()
                    .is_none_or(|p| u.mig_profile.as_deref() == Some(p))
        };
        let suitable: Vec<&gpu::Unit> = inventory.schedulable().filter(fits).collect();
        // Free: not leased, and not running a process someone else started.
        let free: Vec<&gpu::Unit> = suitable
            .iter()
            .copied()
            .filter(|u| !leased.contains(u.uuid.as_str()) && u.processes.is_empty())
            .collect();
        if free.len() < wanted {
            let what = match (&kernel.spec.gpu_model, &kernel.spec.mig_profile) {
                (Some(m), _) => format!(" {m}"),
                (None, Some(p)) => format!(" {p}"),
                (None, None) => String::new(),
            };
            return Err(format!(
                "no GPU free for this kernel: it needs {wanted}{what} unit(s), and {} of the {} \
                 there are free (the others are held by other kernels or busy). Shut down a GPU \
                 kernel you do not use, or try again later",
                free.len(),
                suitable.len()
            ));
        }
        let units: Vec<String> = free[..wanted].iter().map(|u| u.uuid.clone()).collect();
        if !store
            .take_leases(&units, &holder)
            .map_err(|e| e.to_string())?
        {
            return Err("the GPU was taken by another kernel at the same moment; try again".into());
        }
        tracing::info!(kernel = %kernel.id, user = %kernel.user, units = ?units, "GPU units leased");
        *kernel.gpus.lock().unwrap_or_else(|e| e.into_inner()) = units;
        Ok(())
    }

    /// Whether NVML shows `kernel`'s units computing (utilization above 0 % in its last
    /// sample). A unit is leased to one kernel only, so its utilization is the kernel's. MIG
    /// devices report none: there only traffic and execution state count.
    pub(super) async fn busy_on_gpu(&self, kernel: &Kernel) -> bool {
        let units = kernel
            .gpus
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if units.is_empty() {
            return false;
        }
        let Ok(inventory) = gpu::probe_off_thread(self.services.config.get().gpu.clone()).await
        else {
            return false;
        };
        inventory
            .units
            .iter()
            .any(|u| units.contains(&u.uuid) && u.utilization.is_some_and(|p| p > 0))
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
                tracing::info!(kernel = %kernel.id, units = ?units, "GPU units released")
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
            let LeaseHolder::Kernel { id, .. } = &lease.holder;
            let kernel = self.kernel_by_id(id);
            let running = kernel.as_ref().is_some_and(|k| k.has_container());
            match kernel {
                Some(k) if running => {
                    let mut gpus = k.gpus.lock().unwrap_or_else(|e| e.into_inner());
                    if !gpus.contains(&lease.unit) {
                        gpus.push(lease.unit.clone());
                    }
                }
                _ => {
                    tracing::info!(unit = %lease.unit, kernel = %id, "dropping the GPU lease of a kernel that no longer runs");
                    let _ = self.services.store.release_leases(&lease.holder);
                }
            }
        }
    }
}
