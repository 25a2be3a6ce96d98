//! A remote kernel's execution state, as the kernel model reports it (`execution_state`).

use serde::Serialize;

/// What a kernel is doing. Jupyter's kernel protocol reports `starting`, `idle` and `busy` on
/// iopub; the gateway adds `restarting` (a restart in progress) and `dead` (its container
/// exited or its heartbeat stopped; see the kernel's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionState {
    Starting,
    Idle,
    Busy,
    Restarting,
    Dead,
}

impl ExecutionState {
    /// The state a kernel's iopub `status` message reports; None for anything else.
    pub fn from_status(status: &str) -> Option<ExecutionState> {
        match status {
            "starting" => Some(ExecutionState::Starting),
            "idle" => Some(ExecutionState::Idle),
            "busy" => Some(ExecutionState::Busy),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionState::Starting => "starting",
            ExecutionState::Idle => "idle",
            ExecutionState::Busy => "busy",
            ExecutionState::Restarting => "restarting",
            ExecutionState::Dead => "dead",
        }
    }

    /// Starting or restarting: the kernel has no client to talk to yet.
    pub fn is_starting(self) -> bool {
        matches!(self, ExecutionState::Starting | ExecutionState::Restarting)
    }
}

impl std::fmt::Display for ExecutionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
