//! Where kernels run: the kernel runtime contract, as [`crate::spawner::Backend`] is for
//! notebook servers.
//!
//! The gateway's logic (registry, routing, reclaim, restart, death, adoption) sits above this
//! trait and is the same whatever runs the kernel:
//! * [`super::containers::Containers`]: one Docker container per kernel (production).
//! * [`super::local::LocalKernels`]: one process per kernel on this machine, for the local
//!   backend and for tests of the gateway's logic without Docker.
//! * [`super::pods::Pods`]: one pod per kernel (the Kubernetes backend).
//!
//! A kernel is named by the runtime's *handle* (a container id, a process id), which the
//! gateway keeps while the kernel runs. GPU scheduling and the Kubernetes backend add to this
//! trait (device requests, placement) rather than fork it.

use futures::future::BoxFuture;

use super::manager::Kernel;
use crate::config::Config;
use crate::kernels::ConnectionInfo;

pub trait KernelRuntime: Send + Sync {
    /// For logs and messages: `docker`, `local`.
    fn name(&self) -> &'static str;

    /// The connection file of a new kernel named `kernel_name`: where it binds and on which
    /// ports (a fresh key each time).
    fn connection_info(&self, kernel_name: &str) -> ConnectionInfo;

    /// Whether each start needs fresh ports ([`KernelRuntime::connection_info`] again): kernels
    /// sharing one address (local processes) may find a port taken while they were stopped.
    fn renews_ports(&self) -> bool {
        false
    }

    /// Whether [`KernelRuntime::signal`] works; without it (pods), kernels whose spec says
    /// `interrupt_mode = "signal"` are interrupted by message instead.
    fn can_signal(&self) -> bool {
        true
    }

    /// Start `kernel` (its connection file is written); returns its handle and the address
    /// the hub reaches its ports at. On failure, nothing is left running and the error says
    /// why, with the kernel's last output if it wrote any.
    fn start<'a>(
        &'a self,
        cfg: &'a Config,
        kernel: &'a Kernel,
    ) -> BoxFuture<'a, Result<(String, String), String>>;

    /// `Some(reason)` once the kernel is no longer running (or is gone).
    fn stopped<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, Option<String>>;

    /// Send `signal` (e.g. `SIGINT`) to the kernel's process.
    fn signal<'a>(&'a self, handle: &'a str, signal: &'a str) -> BoxFuture<'a, Result<(), String>>;

    /// Stop and remove the kernel; one already gone is fine.
    fn remove<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, ()>;

    /// A kernel that will not be used: `reason` with the last lines it wrote (a crash's
    /// traceback is the useful part), and the kernel removed.
    fn give_up<'a>(&'a self, handle: &'a str, reason: String) -> BoxFuture<'a, String>;

    /// Where a running kernel's ports are reached, if it is running.
    fn address<'a>(&'a self, cfg: &'a Config, handle: &'a str) -> BoxFuture<'a, Option<String>>;

    /// Whether host process `pid` belongs to the kernel `handle` names (NVML reports host
    /// PIDs; this maps them to kernels).
    fn owns_pid(&self, handle: &str, pid: u32) -> bool;

    /// The kernels this hub's runtime runs: (handle, kernel id). Used at startup to take back
    /// the kernels of an earlier run and to remove those without a record.
    fn list(&self) -> BoxFuture<'_, Result<Vec<(String, String)>, String>>;
}
