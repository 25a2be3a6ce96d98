//! The Docker engine as Orrery uses it, one module for notebook servers
//! ([`crate::spawner::docker`]) and kernel containers ([`crate::gateway::containers`]): the
//! connection, the labels that mark what Orrery made, the hardening policy every container
//! gets, the refusal to run as root, how an exit is explained (code, OOM, last log lines), and
//! finding a hub's containers again by label.

use std::collections::HashMap;

use bollard::container::{
    Config as ContainerConfig, CreateContainerOptions, ListContainersOptions, LogsOptions,
    NetworkingConfig, RemoveContainerOptions, StartContainerOptions,
};
use bollard::models::{
    ContainerInspectResponse, ContainerState, ContainerSummary, DeviceRequest, EndpointSettings,
    HostConfig, Mount, MountTypeEnum,
};
use bollard::Docker;
use futures::StreamExt;

use crate::config::DockerSpawner;

/// Label keys on everything Orrery creates.
pub const LABEL_KIND: &str = "org.orrery.kind";
pub const LABEL_USER: &str = "org.orrery.user";
pub const LABEL_SERVER: &str = "org.orrery.server";
/// The kernel id of a kernel container.
pub const LABEL_KERNEL: &str = "org.orrery.kernel";
/// The hub instance (state directory) that owns a container.
pub const LABEL_HUB: &str = "org.orrery.hub";

/// Talking to the engine failed; the engine's own error is kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the Docker engine is not reachable at {socket}: {source}")]
    Unreachable {
        socket: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{what}: {source}")]
    Call {
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
}

impl EngineError {
    pub fn call(what: impl Into<String>, source: bollard::errors::Error) -> EngineError {
        EngineError::Call {
            what: what.into(),
            source,
        }
    }
}

/// Connect to the engine at `socket` (empty: $DOCKER_HOST or the default socket) and agree on
/// an API version.
pub async fn connect(socket: &str) -> Result<Docker, EngineError> {
    let socket = if !socket.is_empty() {
        socket.to_string()
    } else {
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
    };
    let unreachable = |source| EngineError::Unreachable {
        socket: socket.clone(),
        source,
    };
    let d = Docker::connect_with_socket(&socket, 120, bollard::API_DEFAULT_VERSION)
        .map_err(unreachable)?;
    d.negotiate_version().await.map_err(unreachable)
}

pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Where `user`'s home lives: a host directory (bind mount) or a named volume, per config.
/// The one rule for naming it, so notebook servers and kernels mount the same files.
pub fn home_source(cfg: &DockerSpawner, user: &str) -> (String, MountTypeEnum) {
    match &cfg.home_host_path {
        Some(tpl) => (tpl.replace("{username}", user), MountTypeEnum::BIND),
        None => (
            cfg.home_volume.replace("{username}", user),
            MountTypeEnum::VOLUME,
        ),
    }
}

/// Is `user` (`name`, `uid` or `uid:gid`; empty is the image's default, root) root?
pub fn is_root_user(user: &str) -> bool {
    let u = user.split(':').next().unwrap_or("");
    u.is_empty() || u == "0" || u == "root"
}

/// The user a container of `image` runs as (the configured one, else the image's), refused if
/// it is root and root is not explicitly allowed: Orrery's containers run unprivileged.
pub async fn run_as(docker: &Docker, image: &str, cfg: &DockerSpawner) -> Result<String, String> {
    let inspected = docker.inspect_image(image).await.map_err(|e| {
        if is_local_derived(image) {
            format!(
                "image {image}, the software environment's, is not on this machine (removed by \
                 hand, or the state came from another machine): run `sudo orrery env rebuild` \
                 to build it again"
            )
        } else {
            format!("image {image} is not available on this machine: {e}")
        }
    })?;
    let run_as = if cfg.user.is_empty() {
        inspected.config.and_then(|c| c.user).unwrap_or_default()
    } else {
        cfg.user.clone()
    };
    if is_root_user(&run_as) && !cfg.allow_root {
        return Err(format!(
            "image {image} runs as root (USER {:?}); Orrery runs containers unprivileged. Use a docker-stacks image, set spawner.docker.user = \"1000:100\", or (not recommended) spawner.docker.allow_root = true",
            if run_as.is_empty() { "root" } else { &run_as }
        ));
    }
    Ok(run_as)
}

/// The repository of the software environment's derived images (`orrery env`) when they stay
/// on this machine; with `user_environment.registry` they are `<registry>/orrery-env:…`.
pub const DERIVED_REPOSITORY: &str = "orrery-env";

/// A derived image that exists only on this machine: nothing to pull it from.
pub fn is_local_derived(image: &str) -> bool {
    image
        .strip_prefix(DERIVED_REPOSITORY)
        .is_some_and(|rest| rest.starts_with(':'))
}

/// The hardening every Orrery container gets: every capability dropped (but `cap_add`),
/// `no-new-privileges`, the pids limit, memory (swap included) and CPU limits, and the
/// isolated Orrery network.
pub fn hardened_host_config(
    cfg: &DockerSpawner,
    mounts: Vec<Mount>,
    memory: Option<i64>,
    cpu: Option<f64>,
    cap_add: &[String],
) -> HostConfig {
    HostConfig {
        mounts: Some(mounts),
        memory,
        memory_swap: memory,
        nano_cpus: cpu.map(|c| (c * 1e9) as i64),
        pids_limit: Some(cfg.pids_limit),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: (!cap_add.is_empty()).then(|| cap_add.to_vec()),
        security_opt: Some(vec!["no-new-privileges".into()]),
        network_mode: Some(cfg.network.clone()),
        ..Default::default()
    }
}

/// The mount a volume line (`SOURCE:/target[:ro]`, `{username}` in the source replaced by
/// `user`) asks for: a bind mount for an absolute source, else a named volume.
pub fn volume_mount(line: &str, user: &str) -> Mount {
    let parts: Vec<&str> = line.split(':').collect();
    let source = parts
        .first()
        .copied()
        .unwrap_or("")
        .replace("{username}", user);
    let typ = if source.starts_with('/') {
        MountTypeEnum::BIND
    } else {
        MountTypeEnum::VOLUME
    };
    Mount {
        source: Some(source),
        target: parts.get(1).map(|t| t.to_string()),
        read_only: Some(parts.get(2) == Some(&"ro")),
        typ: Some(typ),
        ..Default::default()
    }
}

/// What a container sees of the GPUs: exactly `units` (UUIDs), through a device request to
/// the NVIDIA driver with `NVIDIA_VISIBLE_DEVICES` to match; with none,
/// `NVIDIA_VISIBLE_DEVICES=void`, so that an image that sets `all`, or an engine whose default
/// runtime is nvidia, shows no GPU behind the scheduler's back. Returns the environment entry
/// and the device requests for the host config.
pub fn gpu_access(units: &[String]) -> (String, Option<Vec<DeviceRequest>>) {
    if units.is_empty() {
        return ("NVIDIA_VISIBLE_DEVICES=void".into(), None);
    }
    let request = DeviceRequest {
        driver: Some("nvidia".into()),
        device_ids: Some(units.to_vec()),
        capabilities: Some(vec![vec!["gpu".into()]]),
        ..Default::default()
    };
    (
        format!("NVIDIA_VISIBLE_DEVICES={}", units.join(",")),
        Some(vec![request]),
    )
}

/// An engine error said for people: a GPU request to an engine without the NVIDIA runtime
/// names what to install.
pub fn explain(e: &EngineError) -> String {
    let text = e.to_string();
    if text.contains("could not select device driver") {
        format!(
            "{text}. This Docker engine has no NVIDIA runtime: install nvidia-container-toolkit \
             (from NVIDIA's apt repository) and restart Docker (systemctl restart docker)"
        )
    } else {
        text
    }
}

/// Attach a container to the Orrery network (and nothing else).
pub fn networking(network: &str) -> NetworkingConfig<String> {
    NetworkingConfig {
        endpoints_config: HashMap::from([(network.to_string(), EndpointSettings::default())]),
    }
}

/// The labels of a container of `kind` made by hub `instance` for `user`, plus `extra`.
pub fn labels(
    kind: &str,
    user: &str,
    instance: &str,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (LABEL_KIND.to_string(), kind.to_string()),
        (LABEL_USER.to_string(), user.to_string()),
        (LABEL_HUB.to_string(), instance.to_string()),
    ]);
    labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    labels
}

/// Create the container `name` and start it; returns its id. A container that was created but
/// would not start is removed again.
pub async fn create_and_start(
    docker: &Docker,
    name: &str,
    config: ContainerConfig<String>,
) -> Result<String, EngineError> {
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: name.to_string(),
                platform: None,
            }),
            config,
        )
        .await
        .map_err(|e| EngineError::call(format!("creating container {name}"), e))?;
    if let Err(e) = docker
        .start_container(&created.id, None::<StartContainerOptions<String>>)
        .await
    {
        let _ = remove(docker, &created.id).await;
        return Err(EngineError::call(format!("starting container {name}"), e));
    }
    Ok(created.id)
}

/// Create `user`'s home volume `name` unless it exists, labelled as this hub's.
pub async fn ensure_home_volume(
    docker: &Docker,
    name: &str,
    user: &str,
    instance: &str,
) -> Result<(), EngineError> {
    if docker.inspect_volume(name).await.is_ok() {
        return Ok(());
    }
    let labels = HashMap::from([
        (LABEL_KIND, "home"),
        (LABEL_USER, user),
        (LABEL_HUB, instance),
    ]);
    docker
        .create_volume(bollard::volume::CreateVolumeOptions {
            name,
            labels,
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|e| EngineError::call(format!("creating volume {name}"), e))
}

/// Remove a container, running or not; one that is gone (or already being removed) is fine.
/// Volumes are never removed with it: a home volume holds a user's files.
pub async fn remove(docker: &Docker, id: &str) -> Result<(), EngineError> {
    match docker
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                force: true,
                v: false,
                link: false,
            }),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(EngineError::call(format!("removing container {id}"), e)),
    }
}

/// A container's address on `network`, if it has one.
pub fn address(info: &ContainerInspectResponse, network: &str) -> Option<String> {
    info.network_settings
        .as_ref()?
        .networks
        .as_ref()?
        .get(network)?
        .ip_address
        .clone()
        .filter(|ip| !ip.is_empty())
}

/// Why a container that is not running stopped, as `<what> exited with code N`, with the
/// memory limit named when the kernel killed it for that.
pub fn exit_reason(what: &str, st: &ContainerState) -> String {
    let mut reason = format!("{what} exited with code {}", st.exit_code.unwrap_or(-1));
    if st.oom_killed == Some(true) {
        reason.push_str(" (killed for using more than its memory limit, limits.memory)");
    }
    if let Some(err) = st.error.as_deref().filter(|e| !e.is_empty()) {
        reason.push_str(&format!(": {err}"));
    }
    reason
}

/// The last `lines` lines a container wrote (stdout and stderr), for error messages.
pub async fn last_logs(docker: &Docker, id: &str, lines: usize) -> String {
    let mut stream = docker.logs::<String>(
        id,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        }),
    );
    let mut out = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        out.push_str(&chunk.to_string());
    }
    out.trim_end().to_string()
}

/// Every container (running or not) labelled `org.orrery.kind=<kind>` that this hub instance
/// owns (`org.orrery.hub=<instance>`): how notebook servers and kernel containers are both found
/// again after a restart.
pub async fn list_owned(
    docker: &Docker,
    kind: &str,
    instance: &str,
) -> Result<Vec<ContainerSummary>, EngineError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_KIND}={kind}"),
            format!("{LABEL_HUB}={instance}"),
        ],
    )]);
    docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters,
            ..Default::default()
        }))
        .await
        .map_err(|e| EngineError::call(format!("listing {kind} containers"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_refused_whatever_it_is_called() {
        for root in ["", "0", "root", "0:0", "root:100"] {
            assert!(is_root_user(root), "{root:?}");
        }
        for user in ["1000", "jovyan", "1000:100"] {
            assert!(!is_root_user(user), "{user:?}");
        }
    }

    #[test]
    fn exits_are_explained() {
        let st = ContainerState {
            exit_code: Some(137),
            oom_killed: Some(true),
            ..Default::default()
        };
        assert_eq!(
            exit_reason("the container", &st),
            "the container exited with code 137 (killed for using more than its memory limit, limits.memory)"
        );
    }

    #[test]
    fn gpus_are_given_exactly_or_not_at_all() {
        let (env, requests) = gpu_access(&[]);
        assert_eq!(env, "NVIDIA_VISIBLE_DEVICES=void");
        assert_eq!(requests, None);
        let units = vec!["GPU-aaaa".to_string(), "MIG-bbbb".to_string()];
        let (env, requests) = gpu_access(&units);
        assert_eq!(env, "NVIDIA_VISIBLE_DEVICES=GPU-aaaa,MIG-bbbb");
        let r = &requests.expect("a device request")[0];
        assert_eq!(r.driver.as_deref(), Some("nvidia"));
        assert_eq!(r.device_ids.as_ref(), Some(&units));
        assert_eq!(r.count, None, "ids and a count exclude each other");
        assert_eq!(r.capabilities, Some(vec![vec!["gpu".to_string()]]));
    }

    #[test]
    fn an_engine_without_the_nvidia_runtime_names_the_toolkit() {
        let e = EngineError::call(
            "starting container orrery-kernel-1",
            bollard::errors::Error::DockerResponseServerError {
                status_code: 500,
                message: "could not select device driver \"nvidia\" with capabilities: [[gpu]]"
                    .into(),
            },
        );
        let text = explain(&e);
        assert!(text.contains("install nvidia-container-toolkit"), "{text}");
    }

    #[test]
    fn the_hardening_policy() {
        let cfg = DockerSpawner::default();
        let h = hardened_host_config(&cfg, vec![], Some(1 << 30), Some(0.5), &[]);
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(h.cap_add, None);
        assert_eq!(h.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(h.memory, h.memory_swap, "no swap beyond the limit");
        assert_eq!(h.nano_cpus, Some(500_000_000));
        assert_eq!(h.pids_limit, Some(cfg.pids_limit));
        assert_eq!(h.network_mode.as_deref(), Some(cfg.network.as_str()));
    }
}
