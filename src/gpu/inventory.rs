//! The GPU inventory: one NVML pass over the machine's GPUs.
//!
//! NVML is loaded at run time from `gpu.nvml_library` (nvml-wrapper, libloading), so the binary
//! runs on machines without the NVIDIA driver. For each GPU: index, UUID, name, memory,
//! utilization, MIG mode and the compute processes NVML reports (host PIDs). With MIG on, the
//! schedulable units are the MIG devices (`MIG-…` UUIDs, profiles such as `1g.18gb`), whose
//! utilization NVML cannot give per process; otherwise each GPU is one unit. `gpu.devices`
//! limits which units Orrery may hand out.

use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use serde::Serialize;

use crate::config;

/// Why GPUs cannot be read; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "cannot load the NVML library {library:?} ({source}): no GPUs will be offered. On a GPU \
         machine install the NVIDIA driver (it brings libnvidia-ml.so.1), or set gpu.nvml_library \
         to where the library is"
    )]
    NoLibrary {
        library: String,
        #[source]
        source: NvmlError,
    },
    #[error(
        "NVML ({library}) is there but cannot reach the driver ({source}): is the NVIDIA kernel \
         module loaded (nvidia-smi says)? No GPUs will be offered"
    )]
    NoDriver {
        library: String,
        #[source]
        source: NvmlError,
    },
    #[error("NVML could not {what}: {source}")]
    Nvml {
        what: String,
        #[source]
        source: NvmlError,
    },
}

/// A compute process on a GPU or MIG device, as NVML reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuProcess {
    /// The host PID (NVML reports host PIDs, also for processes in containers).
    pub pid: u32,
    /// Bytes of GPU memory it uses, when NVML can tell.
    pub used_memory: Option<u64>,
    /// Its SM utilization (%) in NVML's latest sample; `None` where NVML has no per-process
    /// figures (MIG devices, or no sample since the process last ran on the GPU).
    pub sm_util: Option<u32>,
}

/// One schedulable unit: a whole GPU, or a MIG device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unit {
    /// `GPU-…` or `MIG-…`: what a container is given.
    pub uuid: String,
    /// The GPU's model, e.g. `NVIDIA H200`.
    pub model: String,
    /// The index of the (parent) GPU.
    pub gpu_index: u32,
    /// The MIG profile (`1g.18gb`), for a MIG device.
    pub mig_profile: Option<String>,
    pub memory_total: u64,
    pub memory_used: u64,
    /// Percent of time a kernel ran on the GPU in NVML's last sample period; None where NVML
    /// cannot say (MIG devices).
    pub utilization: Option<u32>,
    pub processes: Vec<GpuProcess>,
    /// False when `gpu.devices` leaves this unit alone.
    pub scheduled: bool,
}

/// What one NVML pass found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inventory {
    pub driver_version: String,
    /// `12.4`, from NVML's CUDA driver version.
    pub cuda_version: Option<String>,
    /// Every unit of every GPU, in GPU order.
    pub units: Vec<Unit>,
    /// GPUs with MIG on (their units are MIG devices).
    pub mig_gpus: Vec<u32>,
}

impl Inventory {
    /// The units Orrery may hand out.
    pub fn schedulable(&self) -> impl Iterator<Item = &Unit> {
        self.units.iter().filter(|u| u.scheduled)
    }
}

fn failed(what: &str) -> impl FnOnce(NvmlError) -> GpuError + '_ {
    move |source| GpuError::Nvml {
        what: what.to_string(),
        source,
    }
}

fn processes(device: &Device<'_>) -> Vec<GpuProcess> {
    // The latest sample of each process that ran recently (NotFound: none did, so 0 %; a
    // MIG device answers NotSupported: no per-process figures).
    let samples = match device.process_utilization_stats(None) {
        Ok(s) => Some(s),
        Err(NvmlError::NotFound) => Some(Vec::new()),
        Err(_) => None,
    };
    let sm_util = |pid: u32| {
        samples.as_ref().map(|s| {
            s.iter()
                .filter(|x| x.pid == pid)
                .max_by_key(|x| x.timestamp)
                .map_or(0, |x| x.sm_util)
        })
    };
    match device.running_compute_processes() {
        Ok(list) => list
            .into_iter()
            .map(|p| GpuProcess {
                pid: p.pid,
                used_memory: match p.used_gpu_memory {
                    UsedGpuMemory::Used(b) => Some(b),
                    UsedGpuMemory::Unavailable => None,
                },
                sm_util: sm_util(p.pid),
            })
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "NVML gave no process list");
            Vec::new()
        }
    }
}

/// The MIG profile in a MIG device's name: `NVIDIA H200 MIG 1g.18gb` → `1g.18gb`.
fn mig_profile(name: &str) -> Option<String> {
    name.rsplit_once(" MIG ")
        .map(|(_, p)| p.trim().to_string())
        .filter(|p| !p.is_empty())
}

/// Read the machine's GPUs through the NVML library `cfg.nvml_library`.
pub fn probe(cfg: &config::Gpu) -> Result<Inventory, GpuError> {
    let library = std::ffi::OsStr::new(&cfg.nvml_library);
    let nvml = Nvml::builder().lib_path(library).init().map_err(|source| {
        let library = cfg.nvml_library.clone();
        match source {
            NvmlError::LibloadingError(_) | NvmlError::FailedToLoadSymbol(_) => {
                GpuError::NoLibrary { library, source }
            }
            source => GpuError::NoDriver { library, source },
        }
    })?;
    let driver_version = nvml
        .sys_driver_version()
        .map_err(failed("read the driver version"))?;
    let cuda_version = nvml.sys_cuda_driver_version().ok().map(|v| {
        format!(
            "{}.{}",
            nvml_wrapper::cuda_driver_version_major(v),
            nvml_wrapper::cuda_driver_version_minor(v)
        )
    });
    let count = nvml.device_count().map_err(failed("count the GPUs"))?;
    let allowed = |uuid: &str, index: u32| {
        cfg.devices.is_empty()
            || cfg
                .devices
                .iter()
                .any(|d| d == uuid || d == &index.to_string())
    };
    let mut units = Vec::new();
    let mut mig_gpus = Vec::new();
    for index in 0..count {
        let gpu = nvml.device_by_index(index).map_err(failed("open a GPU"))?;
        let uuid = gpu.uuid().map_err(failed("read a GPU's UUID"))?;
        let model = gpu.name().map_err(failed("read a GPU's name"))?;
        // A GPU that does not support MIG answers NotSupported: whole-GPU scheduling.
        let mig_on = gpu.mig_mode().is_ok_and(|m| m.current == 1);
        if mig_on {
            mig_gpus.push(index);
            let max = gpu.mig_device_count().unwrap_or(0);
            for i in 0..max {
                let mig = match gpu.mig_device_by_index(i) {
                    Ok(d) => d,
                    // No MIG device at this index: the slots are sparse.
                    Err(NvmlError::NotFound) => continue,
                    Err(e) => return Err(failed("open a MIG device")(e)),
                };
                let mig_uuid = mig.uuid().map_err(failed("read a MIG device's UUID"))?;
                let name = mig.name().unwrap_or_default();
                let memory = mig
                    .memory_info()
                    .map_err(failed("read a MIG device's memory"))?;
                units.push(Unit {
                    scheduled: allowed(&mig_uuid, index),
                    uuid: mig_uuid,
                    model: model.clone(),
                    gpu_index: index,
                    mig_profile: mig_profile(&name),
                    memory_total: memory.total,
                    memory_used: memory.used,
                    utilization: None,
                    processes: processes(&mig),
                });
            }
            continue;
        }
        let memory = gpu.memory_info().map_err(failed("read a GPU's memory"))?;
        units.push(Unit {
            scheduled: allowed(&uuid, index),
            uuid,
            model,
            gpu_index: index,
            mig_profile: None,
            memory_total: memory.total,
            memory_used: memory.used,
            utilization: gpu.utilization_rates().ok().map(|u| u.gpu),
            processes: processes(&gpu),
        });
    }
    Ok(Inventory {
        driver_version,
        cuda_version,
        units,
        mig_gpus,
    })
}

/// [`probe`] on a blocking thread: NVML calls block, and async callers (the API, metrics, the
/// gateway's culler) must not stall a runtime worker on them.
pub async fn probe_off_thread(cfg: config::Gpu) -> Result<Inventory, GpuError> {
    tokio::task::spawn_blocking(move || probe(&cfg))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "the NVML probe panicked");
            Err(GpuError::Nvml {
                what: "finish reading the GPUs".into(),
                source: NvmlError::Unknown,
            })
        })
}

/// Bytes as GiB with one decimal.
fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1u64 << 30) as f64)
}

impl Inventory {
    /// The table `orrery gpus` prints; `holders` names who holds a unit (UUID → text).
    pub fn render(&self, holders: &std::collections::HashMap<String, String>) -> String {
        let mut out = format!(
            "NVIDIA driver {}{}\n",
            self.driver_version,
            self.cuda_version
                .as_ref()
                .map(|c| format!(", CUDA {c}"))
                .unwrap_or_default()
        );
        if self.units.is_empty() {
            out.push_str("no GPUs: nothing to schedule\n");
            return out;
        }
        out.push_str(&format!(
            "{:<4} {:<44} {:<22} {:>15} {:>6}  {:<38} {}\n",
            "GPU", "UNIT", "MODEL", "MEMORY GiB", "UTIL", "HOLDER", "PROCESSES"
        ));
        for u in &self.units {
            let model = match &u.mig_profile {
                Some(p) => format!("{} {p}", u.model),
                None => u.model.clone(),
            };
            let util = u
                .utilization
                .map(|p| format!("{p} %"))
                .unwrap_or_else(|| "n/a".into());
            let procs = if u.processes.is_empty() {
                "-".to_string()
            } else {
                u.processes
                    .iter()
                    .map(|p| match p.used_memory {
                        Some(b) => format!("pid {} ({} GiB)", p.pid, gib(b)),
                        None => format!("pid {}", p.pid),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let holder = holders.get(&u.uuid).map(String::as_str).unwrap_or("-");
            let note = match (u.scheduled, holder == "-" && !u.processes.is_empty()) {
                (false, _) => "  [left alone: not in gpu.devices]",
                (true, true) => "  [busy with processes Orrery did not start: not handed out]",
                (true, false) => "",
            };
            out.push_str(&format!(
                "{:<4} {:<44} {:<22} {:>15} {:>6}  {holder:<38} {procs}{note}\n",
                u.gpu_index,
                u.uuid,
                model,
                format!("{}/{}", gib(u.memory_used), gib(u.memory_total)),
                util
            ));
        }
        if !self.mig_gpus.is_empty() {
            out.push_str("MIG is on for GPU(s) ");
            out.push_str(
                &self
                    .mig_gpus
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            out.push_str(
                ": their units are the MIG devices; NVML gives no per-process utilization on MIG, \
                 so idleness there is judged by kernel traffic only\n",
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mig_profiles_come_from_the_device_name() {
        assert_eq!(
            mig_profile("NVIDIA H200 MIG 1g.18gb").as_deref(),
            Some("1g.18gb")
        );
        assert_eq!(mig_profile("NVIDIA H200"), None);
    }

    #[test]
    fn a_missing_library_says_how_to_fix_it() {
        let cfg = config::Gpu {
            nvml_library: "/nonexistent/libnvidia-ml.so.1".into(),
            ..Default::default()
        };
        let err = probe(&cfg).expect_err("no library");
        let text = err.to_string();
        assert!(matches!(err, GpuError::NoLibrary { .. }), "{text}");
        assert!(text.contains("install the NVIDIA driver"), "{text}");
    }
}
