//! The local backend: each server is a process on this machine, run as the daemon's own user.
//!
//! This is JupyterHub's LocalProcessSpawner without the user switching: every server shares the
//! daemon's Unix account, so it is meant for development and tests. As root it refuses to start
//! anything unless `spawner.local.allow_root = true`.
//!
//! Each server gets a free loopback port, runs in its own process group (so stop reaches its
//! children), and is remembered by pid so a restarted daemon can still poll and stop it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::json;
use tokio::process::{Child, Command};

use super::{Backend, PollStatus, SpawnError, SpawnSpec, Started};

pub struct LocalBackend {
    /// The command line that starts a single-user server.
    cmd: Vec<String>,
    allow_root: bool,
    /// Children this daemon started, by `user/server`, so they can be reaped.
    children: Mutex<HashMap<String, Child>>,
}

impl LocalBackend {
    pub fn new(cmd: Vec<String>, allow_root: bool) -> LocalBackend {
        let cmd = if cmd.is_empty() {
            vec!["jupyterhub-singleuser".to_string()]
        } else {
            cmd
        };
        LocalBackend {
            cmd,
            allow_root,
            children: Mutex::new(HashMap::new()),
        }
    }

    fn key(user: &str, server: &str) -> String {
        format!("{user}/{server}")
    }
}

fn free_port() -> Result<u16, SpawnError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| SpawnError::Failed(format!("no free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| SpawnError::Failed(e.to_string()))
}

fn pid_of(state: &serde_json::Value) -> Option<i32> {
    state
        .get("pid")
        .and_then(|p| p.as_i64())
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 1)
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
}

impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    fn prepare(&self) -> BoxFuture<'_, Result<std::net::IpAddr, SpawnError>> {
        Box::pin(async { Ok(std::net::IpAddr::from([127, 0, 0, 1])) })
    }

    fn hub_api_base(&self, internal_port: u16) -> Option<String> {
        Some(format!("http://127.0.0.1:{internal_port}"))
    }

    fn start(&self, spec: SpawnSpec) -> BoxFuture<'_, Result<Started, SpawnError>> {
        Box::pin(async move {
            if nix::unistd::geteuid().is_root() && !self.allow_root {
                return Err(SpawnError::NotAvailable(
                    "the local backend would run every user's server as root; use the docker backend, \
                     run orrery as an unprivileged user, or (tests only) set spawner.local.allow_root = true"
                        .into(),
                ));
            }
            let port = free_port()?;
            let mut env = spec.env.clone();
            // Only the units leased for it (none: "void", which CUDA reads as none).
            let units = if spec.gpus.is_empty() {
                "void".to_string()
            } else {
                spec.gpus.join(",")
            };
            env.insert("NVIDIA_VISIBLE_DEVICES".into(), units.clone());
            env.insert(
                "CUDA_VISIBLE_DEVICES".into(),
                if spec.gpus.is_empty() {
                    String::new()
                } else {
                    units
                },
            );
            env.insert(
                "JUPYTERHUB_SERVICE_URL".into(),
                format!("http://127.0.0.1:{port}{}", spec.prefix),
            );
            let Some((program, args)) = self.cmd.split_first() else {
                return Err(SpawnError::Failed("spawner.local.cmd is empty".into()));
            };
            let _ = spec.progress.send(format!("starting {program}"));
            let mut command = Command::new(program);
            command
                .args(args)
                .envs(&env)
                .stdin(std::process::Stdio::null())
                .process_group(0)
                .kill_on_drop(false);
            let child = command
                .spawn()
                .map_err(|e| SpawnError::Failed(format!("cannot run {program}: {e}")))?;
            let pid = child.id().unwrap_or(0);
            self.children
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(Self::key(&spec.user, &spec.server_name), child);
            Ok(Started {
                url: format!("http://127.0.0.1:{port}"),
                state: json!({"pid": pid, "port": port}),
            })
        })
    }

    fn stop<'a>(
        &'a self,
        user: &'a str,
        server: &'a str,
        state: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), SpawnError>> {
        Box::pin(async move {
            let child = self
                .children
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&Self::key(user, server));
            let Some(pid) = pid_of(state) else {
                return Ok(());
            };
            let group = Pid::from_raw(pid);
            let _ = killpg(group, Signal::SIGTERM);
            match child {
                Some(mut child) => {
                    if tokio::time::timeout(Duration::from_secs(5), child.wait())
                        .await
                        .is_err()
                    {
                        let _ = killpg(group, Signal::SIGKILL);
                        let _ = child.wait().await;
                    }
                }
                None => {
                    // Adopted after a restart: not our child, so poll until it is gone.
                    for _ in 0..50 {
                        if !alive(pid) {
                            return Ok(());
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    let _ = killpg(group, Signal::SIGKILL);
                }
            }
            Ok(())
        })
    }

    fn poll<'a>(
        &'a self,
        user: &'a str,
        server: &'a str,
        state: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<PollStatus, SpawnError>> {
        Box::pin(async move {
            let key = Self::key(user, server);
            let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(child) = children.get_mut(&key) {
                return Ok(match child.try_wait() {
                    Ok(None) => PollStatus::Running,
                    Ok(Some(status)) => {
                        children.remove(&key);
                        PollStatus::Stopped(format!("the server process exited ({status})"))
                    }
                    Err(e) => PollStatus::Stopped(format!("cannot check the server process: {e}")),
                });
            }
            Ok(match pid_of(state) {
                Some(pid) if alive(pid) => PollStatus::Running,
                _ => PollStatus::Stopped("the server process is gone".into()),
            })
        })
    }
}
