//! GPUs: what this machine has, read through NVML.
//!
//! * [`inventory`]: the GPUs and their schedulable units (MIG devices when MIG is on, else
//!   whole GPUs), memory, utilization and the compute processes on them (host PIDs).
//! * [`process`]: host PIDs (what NVML reports) → the container or process tree they run in.
//! * [`scheduler`]: the queue's order, grants, wait expiry and idle reclaim, as pure
//!   functions of what is seen and the time (the gateway and the benchmark run the same code).
//! * [`standing`]: a user's priority and quota from the `[[gpu.groups]]` they belong to.
//!
//! Orrery only reads: it never changes a GPU setting (MIG mode, persistence, clocks). Without
//! NVML or without GPUs the GPU features are off, and `orrery gpus` and `orrery doctor` say why.

pub mod inventory;
pub mod process;
pub mod scheduler;
pub mod standing;

pub use inventory::{probe, probe_off_thread, GpuError, Inventory, Unit};
