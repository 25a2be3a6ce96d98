//! The Docker backend: one container per user on the local engine (bollard).
//!
//! * Each server is a container `orrery-<user>` from the configured (or user-chosen, allowed)
//!   image, run as the image's non-root user with every capability dropped, `no-new-privileges`
//!   and a pids limit; `limits.memory`/`limits.cpu` are enforced by Docker.
//! * The home directory is a named volume per user (or a host directory), mounted at the image's
//!   home; stopping or deleting a server never removes it.
//! * Containers sit on a bridge network Orrery owns with inter-container traffic disabled: the
//!   hub reaches them by IP, they reach the hub's internal listener on the bridge gateway, and
//!   they cannot reach each other.
//! * Labels (`org.orrery.*`) tie containers to users so a restarted daemon can re-adopt them and
//!   stop those whose user is gone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use bollard::container::{
    Config as ContainerConfig, InspectContainerOptions, StopContainerOptions,
};
use bollard::image::CreateImageOptions;
use bollard::models::{Mount, MountTypeEnum};
use bollard::network::{CreateNetworkOptions, InspectNetworkOptions};
use bollard::Docker;
use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::OnceCell;

use super::{Backend, Observed, PollStatus, SpawnError, SpawnSpec, Started};
use crate::config::{DockerSpawner, PullPolicy};
use crate::docker::{
    self, home_source, is_not_found, last_logs, list_owned, EngineError, LABEL_HUB, LABEL_KIND,
    LABEL_SERVER, LABEL_USER,
};

pub struct DockerBackend {
    /// Socket path from config (empty: $DOCKER_HOST or the default socket).
    socket: String,
    /// The connection, made (and its API version negotiated) on first use, so an engine that is
    /// down at startup is retried rather than fatal.
    docker: OnceCell<Docker>,
    /// The bridge's gateway address, learnt in `prepare`.
    gateway: OnceLock<IpAddr>,
    network: String,
    /// This hub's instance id ([`crate::state::Store::instance_id`]): containers are labelled
    /// with it and only those are listed, so hubs sharing an engine leave each other alone.
    instance: String,
}

impl DockerBackend {
    pub fn new(cfg: &DockerSpawner, instance: &str) -> DockerBackend {
        DockerBackend {
            socket: cfg.socket.clone(),
            docker: OnceCell::new(),
            gateway: OnceLock::new(),
            network: cfg.network.clone(),
            instance: instance.to_string(),
        }
    }

    async fn client(&self) -> Result<&Docker, SpawnError> {
        self.docker
            .get_or_try_init(|| async { docker::connect(&self.socket).await.map_err(engine) })
            .await
    }

    fn container_name(user: &str, server: &str) -> String {
        if server.is_empty() {
            format!("orrery-{user}")
        } else {
            format!("orrery-{user}--{server}")
        }
    }

    /// The container a server's saved state names (`container_id`), else the name its container
    /// is created with.
    fn container_id(user: &str, server: &str, state: &serde_json::Value) -> String {
        state
            .get("container_id")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| Self::container_name(user, server))
    }
}

fn failed(what: &str, e: bollard::errors::Error) -> SpawnError {
    engine(EngineError::call(what, e))
}

/// An engine failure as the spawn contract says it: the engine not there (or not answering)
/// is "not available", which Orrery retries; anything else failed this spawn.
fn engine(e: EngineError) -> SpawnError {
    match &e {
        EngineError::Unreachable { socket, source } => SpawnError::NotAvailable(format!(
            "the Docker engine is not reachable at {socket} ({source}); start it (systemctl start docker) — Orrery retries"
        )),
        EngineError::Call {
            what,
            source:
                source @ (bollard::errors::Error::HyperResponseError { .. }
                | bollard::errors::Error::IOError { .. }),
        } => SpawnError::NotAvailable(format!(
            "{what}: the Docker engine did not answer ({source}); Orrery retries"
        )),
        EngineError::Call { .. } => SpawnError::Failed(e.to_string()),
    }
}

impl DockerBackend {
    /// Make sure the image is here, honouring the pull policy; progress goes to the spawn page.
    async fn ensure_image(
        &self,
        docker: &Docker,
        image: &str,
        policy: PullPolicy,
        spec: &SpawnSpec,
    ) -> Result<(), SpawnError> {
        let present = docker.inspect_image(image).await.is_ok();
        let pull = match policy {
            PullPolicy::Always => true,
            PullPolicy::IfNotPresent => !present,
            PullPolicy::Never => {
                if !present {
                    return Err(SpawnError::Failed(format!(
                        "image {image} is not on this machine and spawner.docker.pull_policy is \"never\"; build or load it (docker load / docker build), or allow pulling"
                    )));
                }
                false
            }
        };
        if !pull {
            return Ok(());
        }
        let _ = spec.progress.send(format!("Pulling image {image}"));
        let mut stream = docker.create_image(
            Some(CreateImageOptions {
                from_image: image,
                ..Default::default()
            }),
            None,
            None,
        );
        let mut last = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    let line = [
                        info.status.unwrap_or_default(),
                        info.progress.unwrap_or_default(),
                    ]
                    .join(" ")
                    .trim()
                    .to_string();
                    // Report layer-level milestones, not every byte counter tick.
                    if !line.is_empty()
                        && !line.starts_with("Downloading")
                        && !line.starts_with("Extracting")
                        && line != last
                    {
                        let _ = spec.progress.send(format!("Pull: {line}"));
                        last = line;
                    }
                }
                Err(e) => {
                    if present && policy == PullPolicy::Always {
                        let _ = spec
                            .progress
                            .send(format!("Pull failed ({e}); using the image already here"));
                        return Ok(());
                    }
                    return Err(SpawnError::Failed(format!(
                        "pulling image {image} failed: {e}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The home mount: a named volume (created with labels) or a host directory.
    async fn home_mount(
        &self,
        docker: &Docker,
        cfg: &DockerSpawner,
        user: &str,
    ) -> Result<Mount, SpawnError> {
        let (source, typ) = home_source(cfg, user);
        if typ == MountTypeEnum::BIND {
            let path = source.clone();
            if !std::path::Path::new(&path).exists() {
                std::fs::create_dir_all(&path).map_err(|e| {
                    SpawnError::Failed(format!("cannot create home directory {path}: {e}"))
                })?;
                nix::unistd::chown(
                    std::path::Path::new(&path),
                    Some(nix::unistd::Uid::from_raw(cfg.home_uid)),
                    Some(nix::unistd::Gid::from_raw(cfg.home_gid)),
                )
                .map_err(|e| {
                    SpawnError::Failed(format!(
                        "cannot give {path} to {}:{}: {e}",
                        cfg.home_uid, cfg.home_gid
                    ))
                })?;
            }
        } else {
            docker::ensure_home_volume(docker, &source, user, &self.instance)
                .await
                .map_err(engine)?;
        }
        Ok(Mount {
            target: Some(cfg.home_mount.clone()),
            source: Some(source),
            typ: Some(typ),
            ..Default::default()
        })
    }

    async fn dedupe_network(&self, docker: &Docker) {
        let filters = HashMap::from([("name".to_string(), vec![self.network.clone()])]);
        let Ok(mut nets) = docker
            .list_networks(Some(bollard::network::ListNetworksOptions { filters }))
            .await
        else {
            return;
        };
        nets.retain(|n| n.name.as_deref() == Some(self.network.as_str()));
        nets.sort_by(|a, b| a.created.cmp(&b.created));
        for n in nets.iter().skip(1) {
            if let Some(id) = &n.id {
                let _ = docker.remove_network(id).await;
            }
        }
    }
}

impl Backend for DockerBackend {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn prepare(&self) -> BoxFuture<'_, Result<IpAddr, SpawnError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let net = match docker
                .inspect_network(&self.network, None::<InspectNetworkOptions<String>>)
                .await
            {
                Ok(n) => n,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 400,
                    message,
                }) if message.contains("ambiguous") => {
                    // Two daemons raced to create it (Docker's duplicate check is best effort):
                    // keep the oldest, remove the rest, and look again next time.
                    self.dedupe_network(docker).await;
                    return Err(SpawnError::NotAvailable(format!(
                        "network {} existed twice; removed the duplicate, retrying",
                        self.network
                    )));
                }
                Err(e) if is_not_found(&e) => {
                    let options =
                        HashMap::from([("com.docker.network.bridge.enable_icc", "false")]);
                    let labels = HashMap::from([(LABEL_KIND, "network")]);
                    docker
                        .create_network(CreateNetworkOptions {
                            name: self.network.as_str(),
                            driver: "bridge",
                            options,
                            labels,
                            check_duplicate: true,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| failed(&format!("creating network {}", self.network), e))?;
                    docker
                        .inspect_network(&self.network, None::<InspectNetworkOptions<String>>)
                        .await
                        .map_err(|e| failed("inspecting the network", e))?
                }
                Err(e) => return Err(failed("inspecting the network", e)),
            };
            let icc = net
                .options
                .as_ref()
                .and_then(|o| o.get("com.docker.network.bridge.enable_icc"))
                .cloned();
            if icc.as_deref() != Some("false") {
                return Err(SpawnError::Failed(format!(
                    "network {} lets containers talk to each other (enable_icc is not false); remove it (docker network rm {}) and Orrery recreates it isolated",
                    self.network, self.network
                )));
            }
            let gateway = net
                .ipam
                .and_then(|i| i.config)
                .and_then(|c| c.into_iter().find_map(|c| c.gateway))
                .and_then(|g| g.parse::<IpAddr>().ok())
                .ok_or_else(|| {
                    SpawnError::Failed(format!("network {} has no gateway address", self.network))
                })?;
            let _ = self.gateway.set(gateway);
            Ok(gateway)
        })
    }

    fn hub_api_base(&self, internal_port: u16) -> Option<String> {
        self.gateway.get().map(|g| match g {
            IpAddr::V6(v6) => format!("http://[{v6}]:{internal_port}"),
            IpAddr::V4(v4) => format!("http://{v4}:{internal_port}"),
        })
    }

    fn start(&self, spec: SpawnSpec) -> BoxFuture<'_, Result<Started, SpawnError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let cfg = &spec.config.spawner.docker;
            // The software environment's image for that base, if one was built. One that stays
            // on this machine is never pulled (there is nowhere to pull it from): `run_as` says
            // how to build it again if it is missing.
            let image = super::choose_image(&spec)?;
            if !docker::is_local_derived(&image) {
                self.ensure_image(docker, &image, cfg.pull_policy, &spec)
                    .await?;
            }
            docker::run_as(docker, &image, cfg)
                .await
                .map_err(SpawnError::Failed)?;

            let name = Self::container_name(&spec.user, &spec.server_name);
            // A container of this name with no server record is a leftover of ours: replace it.
            // One that another hub (or a person) made is not ours to remove.
            if let Ok(existing) = docker
                .inspect_container(&name, None::<InspectContainerOptions>)
                .await
            {
                let owner = existing
                    .config
                    .and_then(|c| c.labels)
                    .and_then(|l| l.get(LABEL_HUB).cloned());
                if owner.as_deref() != Some(self.instance.as_str()) {
                    return Err(SpawnError::Failed(format!(
                        "a container named {name} already exists and was not made by this Orrery; remove or rename it (docker rm -f {name})"
                    )));
                }
                let _ = docker::remove(docker, &name).await;
            }
            let _ = spec
                .progress
                .send("Preparing the home directory".to_string());
            let mut mounts = vec![self.home_mount(docker, cfg, &spec.user).await?];
            for v in cfg.volumes.iter().chain(&spec.volumes) {
                mounts.push(docker::volume_mount(v, &spec.user));
            }

            let mut env: Vec<String> = cfg.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            for (k, v) in &spec.env {
                env.push(format!("{k}={v}"));
            }
            env.push(format!(
                "JUPYTERHUB_SERVICE_URL=http://0.0.0.0:{}{}",
                cfg.port, spec.prefix
            ));
            // Notebook servers get no GPU (GPUs go to kernels, through the gateway) unless
            // started with a GPU profile: then exactly the units leased for them.
            let (visible, device_requests) = docker::gpu_access(&spec.gpus);
            env.push(visible);
            let labels = docker::labels(
                "notebook",
                &spec.user,
                &self.instance,
                &[(LABEL_SERVER, &spec.server_name)],
            );
            let mut host_config = docker::hardened_host_config(
                cfg,
                mounts,
                spec.memory_limit.map(|m| m as i64),
                spec.cpu_limit,
                &cfg.cap_add,
            );
            host_config.device_requests = device_requests;
            let container = ContainerConfig {
                image: Some(image.clone()),
                cmd: if cfg.cmd.is_empty() {
                    None
                } else {
                    Some(cfg.cmd.clone())
                },
                env: Some(env),
                labels: Some(labels),
                user: if cfg.user.is_empty() {
                    None
                } else {
                    Some(cfg.user.clone())
                },
                host_config: Some(host_config),
                networking_config: Some(docker::networking(&self.network)),
                ..Default::default()
            };
            let _ = spec.progress.send(format!("Creating container {name}"));
            let id = docker::create_and_start(docker, &name, container)
                .await
                .map_err(engine)?;
            let info = docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                .map_err(|e| failed("inspecting the new container", e))?;
            let Some(ip) = docker::address(&info, &self.network) else {
                // Most often the server exited at once (the network endpoint goes with it):
                // say why, and don't leave the dead container behind.
                let st = info.state.unwrap_or_default();
                let mut reason = if st.running == Some(true) {
                    format!(
                        "container {name} got no address on network {}",
                        self.network
                    )
                } else {
                    docker::exit_reason("the container", &st)
                };
                reason.push_str(&super::log_note(&last_logs(docker, &id, 20).await));
                let _ = docker::remove(docker, &id).await;
                return Err(SpawnError::Failed(format!(
                    "the server stopped before it was ready: {reason}"
                )));
            };
            let _ = spec.progress.send(format!("Container {name} started"));
            Ok(Started {
                url: format!("http://{ip}:{}", cfg.port),
                state: json!({"container_id": id, "name": name, "image": image}),
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
            let docker = self.client().await?;
            let id = Self::container_id(user, server, state);
            match docker
                .stop_container(&id, Some(StopContainerOptions { t: 10 }))
                .await
            {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 304, ..
                }) => {}
                Err(e) => return Err(failed(&format!("stopping container {id}"), e)),
            }
            // Remove the container, never its volumes: the home volume holds the user's files.
            docker::remove(docker, &id).await.map_err(engine)
        })
    }

    fn poll<'a>(
        &'a self,
        user: &'a str,
        server: &'a str,
        state: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<PollStatus, SpawnError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let id = Self::container_id(user, server, state);
            let info = match docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
            {
                Ok(i) => i,
                Err(e) if is_not_found(&e) => {
                    return Ok(PollStatus::Stopped("the container is gone".into()))
                }
                Err(e) => return Err(failed("inspecting the container", e)),
            };
            let st = info.state.unwrap_or_default();
            if st.running == Some(true) {
                return Ok(PollStatus::Running);
            }
            let mut reason = docker::exit_reason("the container", &st);
            reason.push_str(&super::log_note(&last_logs(docker, &id, 20).await));
            Ok(PollStatus::Stopped(reason))
        })
    }

    fn describe_failure<'a>(
        &'a self,
        user: &'a str,
        server: &'a str,
        state: &'a serde_json::Value,
    ) -> BoxFuture<'a, String> {
        Box::pin(async move {
            let Ok(docker) = self.client().await else {
                return String::new();
            };
            let id = Self::container_id(user, server, state);
            super::log_note(&last_logs(docker, &id, 20).await)
        })
    }

    fn purge_user_data<'a>(
        &'a self,
        user: &'a str,
        config: &'a crate::config::Config,
    ) -> BoxFuture<'a, Result<String, SpawnError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let cfg = &config.spawner.docker;
            let (name, typ) = home_source(cfg, user);
            if typ == MountTypeEnum::BIND {
                let path = name;
                return match std::fs::remove_dir_all(&path) {
                    Ok(()) => Ok(format!("removed home directory {path}")),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Ok(format!("no home directory at {path}"))
                    }
                    Err(e) => Err(SpawnError::Failed(format!("cannot remove {path}: {e}"))),
                };
            }
            match docker.remove_volume(&name, None).await {
                Ok(()) => Ok(format!("removed volume {name}")),
                Err(e) if is_not_found(&e) => Ok(format!("no volume {name}")),
                Err(e) => Err(failed(
                    &format!("removing volume {name} (is a container still using it?)"),
                    e,
                )),
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Observed>, SpawnError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let list = list_owned(docker, "notebook", &self.instance)
                .await
                .map_err(engine)?;
            Ok(list
                .into_iter()
                .filter_map(|c| {
                    let labels = c.labels.unwrap_or_default();
                    Some(Observed {
                        user: labels.get(LABEL_USER)?.clone(),
                        server: labels.get(LABEL_SERVER).cloned().unwrap_or_default(),
                        state: json!({"container_id": c.id.unwrap_or_default()}),
                        created: c
                            .created
                            .and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
                    })
                })
                .collect())
        })
    }
}
