//! The local kernel runtime: every kernel a process on this machine (the local backend's
//! kernels, and the gateway's logic tested without Docker).
//!
//! A kernel is its spec's `argv` with `{connection_file}` → `<state>/kernels/<id>/kernel.json`,
//! started in a process group of its own (so a kill reaches what it started), with its output
//! in `kernel.log` beside the connection file and its pid in `pid`, so a restarted daemon finds
//! the kernels of its earlier run. Kernels share the loopback address, so each gets free ports
//! of its own. Processes run as the daemon's user: like the local backend, this isolates no
//! user from another and is meant for development and tests.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use futures::future::BoxFuture;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use super::manager::Kernel;
use super::runtime::KernelRuntime;
use crate::config::Config;
use crate::kernels::{ConnectionInfo, KernelPorts};

/// The address local kernels bind and are reached at.
const LOOPBACK: &str = "127.0.0.1";

pub struct LocalKernels {
    /// `<state>/kernels`: one directory per kernel (connection file, pid, log).
    root: PathBuf,
    /// The processes this daemon started, by handle, so their exit status can be read.
    children: Mutex<HashMap<String, tokio::process::Child>>,
}

impl LocalKernels {
    pub fn new(state: &Path) -> LocalKernels {
        LocalKernels {
            root: state.join("kernels"),
            children: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio::process::Child>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `local-<pid>` ↔ the pid.
fn handle_of(pid: u32) -> String {
    format!("local-{pid}")
}

fn pid_of(handle: &str) -> Option<Pid> {
    handle
        .strip_prefix("local-")?
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .map(Pid::from_raw)
}

/// Is `pid` a live process (not a zombie)?
fn alive(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn free_port() -> Option<u16> {
    TcpListener::bind((LOOPBACK, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()
}

/// The last `n` lines of a kernel's output.
fn last_lines(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl LocalKernels {
    async fn start_process(&self, kernel: &Kernel) -> Result<(String, String), String> {
        let connection = kernel.dir.join("kernel.json");
        let argv: Vec<String> = kernel
            .spec
            .argv
            .iter()
            .map(|a| a.replace("{connection_file}", &connection.to_string_lossy()))
            .collect();
        let Some((program, args)) = argv.split_first() else {
            return Err(format!(
                "kernelspec {:?} has an empty argv",
                kernel.spec.name
            ));
        };
        let log = std::fs::File::create(kernel.dir.join("kernel.log"))
            .map_err(|e| format!("cannot create the kernel's log: {e}"))?;
        let err_log = log
            .try_clone()
            .map_err(|e| format!("cannot create the kernel's log: {e}"))?;
        let units = kernel.visible_gpus().join(",");
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .envs(kernel.env.iter().cloned())
            .envs(kernel.spec.env.iter())
            .env("JUPYTERHUB_USER", &kernel.user)
            // Only its own GPU units (none: "void", which CUDA and the NVIDIA hook read as none).
            .env(
                "NVIDIA_VISIBLE_DEVICES",
                if units.is_empty() {
                    "void"
                } else {
                    units.as_str()
                },
            )
            .env("CUDA_VISIBLE_DEVICES", &units)
            .current_dir(&kernel.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {program:?}: {e}"))?;
        let pid = child
            .id()
            .ok_or_else(|| "the kernel's process exited at once".to_string())?;
        let handle = handle_of(pid);
        if let Err(e) = crate::files::write_atomically(
            &kernel.dir.join("pid"),
            pid.to_string().as_bytes(),
            0o600,
        ) {
            let reason = format!("cannot record the kernel's pid: {e}");
            self.lock().insert(handle.clone(), child);
            return Err(KernelRuntime::give_up(self, &handle, reason).await);
        }
        self.lock().insert(handle.clone(), child);
        Ok((handle, LOOPBACK.to_string()))
    }

    fn exit_reason(&self, handle: &str) -> Option<String> {
        let mut children = self.lock();
        if let Some(child) = children.get_mut(handle) {
            return match child.try_wait() {
                Ok(None) => None,
                Ok(Some(status)) => Some(match (status.code(), status_signal(&status)) {
                    (Some(code), _) => format!("the kernel's process exited with code {code}"),
                    (None, Some(sig)) => format!("the kernel's process was killed by signal {sig}"),
                    (None, None) => "the kernel's process exited".to_string(),
                }),
                Err(e) => Some(format!("the kernel's process cannot be watched: {e}")),
            };
        }
        drop(children);
        // Started by an earlier run of the daemon: only its liveness can be known.
        match pid_of(handle) {
            Some(pid) if alive(pid) => None,
            _ => Some("the kernel's process is gone".to_string()),
        }
    }

    fn dir_of(&self, handle: &str) -> Option<PathBuf> {
        let pid = pid_of(handle)?.to_string();
        std::fs::read_dir(&self.root)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|d| std::fs::read_to_string(d.join("pid")).is_ok_and(|p| p.trim() == pid))
    }
}

fn status_signal(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

impl KernelRuntime for LocalKernels {
    fn name(&self) -> &'static str {
        "local"
    }

    fn renews_ports(&self) -> bool {
        true
    }

    /// Kernels share the loopback address: free ports of their own.
    fn connection_info(&self, kernel_name: &str) -> ConnectionInfo {
        let port = || free_port().unwrap_or(0);
        let ports = KernelPorts {
            shell: port(),
            iopub: port(),
            stdin: port(),
            control: port(),
            hb: port(),
        };
        ConnectionInfo::with_ports(LOOPBACK, kernel_name, ports)
    }

    fn start<'a>(
        &'a self,
        _cfg: &'a Config,
        kernel: &'a Kernel,
    ) -> BoxFuture<'a, Result<(String, String), String>> {
        Box::pin(self.start_process(kernel))
    }

    fn stopped<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move { self.exit_reason(handle) })
    }

    fn signal<'a>(&'a self, handle: &'a str, name: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let sig: Signal = name
                .parse()
                .map_err(|_| format!("{name:?} is not a signal"))?;
            let pid = pid_of(handle).ok_or_else(|| format!("{handle:?} is not a local kernel"))?;
            signal::kill(pid, sig).map_err(|e| format!("signalling the kernel's process: {e}"))
        })
    }

    fn remove<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(pid) = pid_of(handle) {
                // The whole process group: the kernel and anything it started.
                let _ = signal::killpg(pid, Signal::SIGKILL);
            }
            let child = self.lock().remove(handle);
            if let Some(mut child) = child {
                let _ = child.wait().await;
            }
        })
    }

    fn give_up<'a>(&'a self, handle: &'a str, reason: String) -> BoxFuture<'a, String> {
        Box::pin(async move {
            let dir = self.dir_of(handle);
            KernelRuntime::remove(self, handle).await;
            let logs = dir
                .map(|d| last_lines(&d.join("kernel.log"), 5))
                .unwrap_or_default();
            if logs.is_empty() {
                reason
            } else {
                format!("{reason}; it wrote:\n{logs}")
            }
        })
    }

    fn address<'a>(&'a self, _cfg: &'a Config, handle: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            self.exit_reason(handle)
                .is_none()
                .then(|| LOOPBACK.to_string())
        })
    }

    /// The kernel's process or one of its children.
    fn owns_pid(&self, handle: &str, pid: u32) -> bool {
        pid_of(handle).is_some_and(|kernel| {
            u32::try_from(kernel.as_raw())
                .is_ok_and(|kernel| crate::gpu::process::descends_from(pid, kernel))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<(String, String)>, String>> {
        Box::pin(async move {
            let Ok(entries) = std::fs::read_dir(&self.root) else {
                return Ok(Vec::new());
            };
            Ok(entries
                .flatten()
                .filter_map(|e| {
                    let pid: i32 = std::fs::read_to_string(e.path().join("pid"))
                        .ok()?
                        .trim()
                        .parse()
                        .ok()?;
                    let handle = handle_of(u32::try_from(pid).ok()?);
                    let running = self.lock().contains_key(&handle) || alive(Pid::from_raw(pid));
                    running.then(|| (handle, e.file_name().to_string_lossy().into_owned()))
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_name_pids() {
        assert_eq!(pid_of(&handle_of(42)), Some(Pid::from_raw(42)));
        assert_eq!(pid_of("container-id"), None);
        assert_eq!(pid_of("local-0"), None);
        assert!(alive(Pid::from_raw(std::process::id() as i32)));
    }
}
