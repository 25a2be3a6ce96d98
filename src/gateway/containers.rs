//! Kernel containers (bollard): one per kernel, `orrery-kernel-<id>`.
//!
//! * Image: the spec's, else `spawner.docker.image` (or the image the software environment
//!   derived from it, chosen by the manager at each start); the command is the spec's `argv` with
//!   `{connection_file}` → [`CONNECTION_FILE`]. The image's entrypoint (tini) is kept, so a
//!   SIGINT to the container reaches the kernel.
//! * Orrery writes the connection file (fresh key, `0.0.0.0`, fixed ports) into
//!   `<state>/kernels/<id>/` and bind-mounts that directory read-only: the key never reaches the
//!   notebook container.
//! * The user's home (volume or host directory, named as for notebook containers) at
//!   `spawner.docker.home_mount`; the working directory from `KERNEL_WORKING_DIR`, kept inside
//!   the home.
//! * The notebook containers' hardening: non-root, every capability dropped,
//!   `no-new-privileges`, pids limit; the spec's cpu/memory; the isolated Orrery network.
//! * Labels `org.orrery.kind=kernel`, `org.orrery.user`, `org.orrery.kernel`, `org.orrery.hub`.

use std::path::{Component, Path};

use bollard::container::{
    Config as ContainerConfig, InspectContainerOptions, KillContainerOptions,
};
use bollard::models::{Mount, MountTypeEnum};
use bollard::Docker;
use tokio::sync::OnceCell;

use futures::future::BoxFuture;

use super::manager::{lock, Kernel};
use super::runtime::KernelRuntime;
use crate::config::Config;
use crate::docker::{self, is_not_found, LABEL_KERNEL, LABEL_SERVER};
use crate::kernels::ConnectionInfo;
/// Where the connection directory is mounted inside a kernel container.
pub const CONNECTION_DIR: &str = "/var/run/orrery-kernel";
/// The connection file inside a kernel container.
pub const CONNECTION_FILE: &str = "/var/run/orrery-kernel/kernel.json";

pub struct Containers {
    socket: String,
    docker: OnceCell<Docker>,
    instance: String,
}

/// Writes `<dir>/kernel.json`, readable by the kernel's (non-root) user; the directory is in the
/// state directory, which only root can enter on the host.
pub fn write_connection_file(dir: &Path, info: &ConnectionInfo) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    crate::files::write_atomically(&dir.join("kernel.json"), info.to_json().as_bytes(), 0o644)
}

/// The kernel's working directory inside its container: `KERNEL_WORKING_DIR` (absolute, as
/// Jupyter Server sends it, or relative to the home), which must stay inside `home`.
pub fn working_dir(home: &str, requested: Option<&str>) -> Result<String, String> {
    let Some(req) = requested.filter(|r| !r.is_empty()) else {
        return Ok(home.to_string());
    };
    let path = Path::new(req);
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "KERNEL_WORKING_DIR {req:?} must not contain \"..\""
        ));
    }
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        Path::new(home).join(path)
    };
    if !joined.starts_with(home) {
        return Err(format!(
            "KERNEL_WORKING_DIR {req:?} is outside the home directory {home}"
        ));
    }
    Ok(joined.to_string_lossy().into_owned())
}

impl Containers {
    pub fn new(socket: &str, instance: String) -> Containers {
        Containers {
            socket: socket.to_string(),
            docker: OnceCell::new(),
            instance,
        }
    }

    async fn client(&self) -> Result<&Docker, String> {
        self.docker
            .get_or_try_init(|| async {
                docker::connect(&self.socket)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
    }

    /// Create and start the kernel's container; returns its id and address on the network.
    pub async fn start(&self, cfg: &Config, kernel: &Kernel) -> Result<(String, String), String> {
        let docker = self.client().await?;
        let dcfg = &cfg.spawner.docker;
        let image = lock(&kernel.image).clone();
        docker::run_as(docker, &image, dcfg).await?;
        // The same home the user's notebook server mounts (created there at spawn).
        let (source, typ) = docker::home_source(dcfg, &kernel.user);
        let home = Mount {
            target: Some(dcfg.home_mount.clone()),
            source: Some(source),
            typ: Some(typ),
            ..Default::default()
        };
        let connection = Mount {
            target: Some(CONNECTION_DIR.into()),
            source: Some(kernel.dir.to_string_lossy().into_owned()),
            typ: Some(MountTypeEnum::BIND),
            read_only: Some(true),
            ..Default::default()
        };
        // The shared volumes its user gets, as in their notebook server.
        let shared: Vec<Mount> = lock(&kernel.shared_volumes)
            .iter()
            .map(|v| docker::volume_mount(v, &kernel.user))
            .collect();
        let cmd: Vec<String> = kernel
            .spec
            .argv
            .iter()
            .map(|a| a.replace("{connection_file}", CONNECTION_FILE))
            .collect();
        let mut env: Vec<String> = kernel.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.extend(kernel.spec.env.iter().map(|(k, v)| format!("{k}={v}")));
        env.push(format!("JUPYTERHUB_USER={}", kernel.user));
        let units = kernel.visible_gpus();
        let (visible, device_requests) = docker::gpu_access(&units);
        env.push(visible);
        let labels = docker::labels(
            "kernel",
            &kernel.user,
            &self.instance,
            &[(LABEL_KERNEL, &kernel.id), (LABEL_SERVER, &kernel.server)],
        );
        // The spec's limits, else the per-user ones notebook servers get.
        let memory = kernel
            .spec
            .memory
            .or(cfg.limits.memory)
            .map(|m| m.bytes() as i64);
        let cpu = kernel.spec.cpu.or(cfg.limits.cpu);
        let mut host_config = docker::hardened_host_config(
            dcfg,
            [home, connection].into_iter().chain(shared).collect(),
            memory,
            cpu,
            &[],
        );
        host_config.device_requests = device_requests;
        let name = format!("orrery-kernel-{}", kernel.id);
        let container = ContainerConfig {
            image: Some(image.clone()),
            cmd: Some(cmd),
            env: Some(env),
            labels: Some(labels),
            working_dir: Some(kernel.working_dir.clone()),
            user: if dcfg.user.is_empty() {
                None
            } else {
                Some(dcfg.user.clone())
            },
            host_config: Some(host_config),
            networking_config: Some(docker::networking(&dcfg.network)),
            ..Default::default()
        };
        // A container left by a failed earlier attempt would block the name.
        self.remove(&name).await;
        let id = docker::create_and_start(docker, &name, container)
            .await
            .map_err(|e| docker::explain(&e))?;
        match self.address(&id, &dcfg.network).await {
            Some(ip) => Ok((id, ip)),
            None => {
                let reason = self
                    .stopped(&id)
                    .await
                    .unwrap_or_else(|| format!("container {name} got no address"));
                Err(self.give_up(&id, reason).await)
            }
        }
    }

    /// A kernel container that will not be used: `reason` with the last lines it wrote (the
    /// traceback of a kernel that crashed is the useful part), and the container removed.
    pub async fn give_up(&self, container: &str, reason: String) -> String {
        let logs = match self.client().await {
            Ok(docker) => docker::last_logs(docker, container, 5).await,
            Err(_) => String::new(),
        };
        self.remove(container).await;
        if logs.is_empty() {
            reason
        } else {
            format!("{reason}; it wrote:\n{logs}")
        }
    }

    /// The container's address on `network`, if it has one.
    pub async fn address(&self, container: &str, network: &str) -> Option<String> {
        let docker = self.client().await.ok()?;
        let info = docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .ok()?;
        docker::address(&info, network)
    }

    /// Send `signal` to the container's main process (tini forwards it to the kernel).
    pub async fn signal(&self, container: &str, signal: &str) -> Result<(), String> {
        let docker = self.client().await?;
        docker
            .kill_container(container, Some(KillContainerOptions { signal }))
            .await
            .map_err(|e| format!("signalling the kernel's container: {e}"))
    }

    /// Remove the container (force); a missing one is fine.
    pub async fn remove(&self, container: &str) {
        let Ok(docker) = self.client().await else {
            return;
        };
        if let Err(e) = docker::remove(docker, container).await {
            tracing::warn!(container, error = %e, "cannot remove kernel container");
        }
    }

    /// This hub's kernel containers: (container id, kernel id).
    pub async fn list(&self) -> Result<Vec<(String, String)>, String> {
        let docker = self.client().await?;
        let list = docker::list_owned(docker, "kernel", &self.instance)
            .await
            .map_err(|e| e.to_string())?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let kernel = c.labels.unwrap_or_default().get(LABEL_KERNEL)?.clone();
                Some((c.id?, kernel))
            })
            .collect())
    }

    /// `Some(reason)` if the container is no longer running (or is gone).
    pub async fn stopped(&self, container: &str) -> Option<String> {
        let docker = self.client().await.ok()?;
        let info = match docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
        {
            Ok(i) => i,
            Err(e) if is_not_found(&e) => return Some("the kernel's container is gone".into()),
            Err(_) => return None,
        };
        let st = info.state.unwrap_or_default();
        if st.running == Some(true) {
            return None;
        }
        Some(docker::exit_reason("the kernel's container", &st))
    }
}

/// The production runtime: every kernel in its own container.
impl KernelRuntime for Containers {
    fn name(&self) -> &'static str {
        "docker"
    }

    /// Each container has its own address, so every kernel binds the same fixed ports.
    fn connection_info(&self, kernel_name: &str) -> ConnectionInfo {
        ConnectionInfo::new("0.0.0.0", kernel_name)
    }

    fn start<'a>(
        &'a self,
        cfg: &'a Config,
        kernel: &'a Kernel,
    ) -> BoxFuture<'a, Result<(String, String), String>> {
        Box::pin(Containers::start(self, cfg, kernel))
    }

    fn stopped<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(Containers::stopped(self, handle))
    }

    fn signal<'a>(&'a self, handle: &'a str, signal: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(Containers::signal(self, handle, signal))
    }

    fn remove<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(Containers::remove(self, handle))
    }

    fn give_up<'a>(&'a self, handle: &'a str, reason: String) -> BoxFuture<'a, String> {
        Box::pin(Containers::give_up(self, handle, reason))
    }

    fn address<'a>(&'a self, cfg: &'a Config, handle: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(Containers::address(
            self,
            handle,
            &cfg.spawner.docker.network,
        ))
    }

    /// The container id in the process's cgroup path is the kernel's container.
    fn owns_pid(&self, handle: &str, pid: u32) -> bool {
        crate::gpu::process::container_of(pid).is_some_and(|c| c == handle)
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<(String, String)>, String>> {
        Box::pin(Containers::list(self))
    }
}

#[cfg(test)]
mod tests {
    use super::working_dir;

    #[test]
    fn working_dir_stays_in_home() {
        let home = "/home/jovyan";
        assert_eq!(working_dir(home, None).unwrap(), home);
        assert_eq!(working_dir(home, Some("")).unwrap(), home);
        assert_eq!(
            working_dir(home, Some("/home/jovyan/a/b")).unwrap(),
            "/home/jovyan/a/b"
        );
        assert_eq!(working_dir(home, Some("sub")).unwrap(), "/home/jovyan/sub");
        assert!(working_dir(home, Some("/etc")).is_err());
        assert!(working_dir(home, Some("/home/jovyan/../root")).is_err());
        assert!(working_dir(home, Some("/home/jovyanother")).is_err());
    }
}
