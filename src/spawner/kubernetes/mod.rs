//! The Kubernetes backend (`spawner.backend = "kubernetes"`): a pod per user server, made
//! with kube-rs, on k3s or any cluster. Kernels get pods too ([`crate::gateway::pods`]).
//!
//! * [`objects`]: the pods, home PVCs, kernel Secrets and the isolation NetworkPolicy, as pure
//!   functions with their security and GPU fields tested one by one.
//! * [`cluster`]: the client and the calls (watches, not polling loops).
//! * [`progress`]: what a pod's status and events mean for a start.
//!
//! Servers use the container settings of `[spawner.docker]` (image, allowed images, command,
//! environment, home mount, port, user) and the cluster settings of `[spawner.kubernetes]`.
//! Pods are labelled with the Docker backend's vocabulary, so reconcile lists this hub's
//! servers by label on both.

pub mod cluster;
#[cfg(test)]
mod mock_tests;
pub mod objects;
pub mod progress;

use std::net::{IpAddr, Ipv4Addr};

use futures::future::BoxFuture;
use serde_json::json;

use self::cluster::{Cluster, ClusterError};
use self::objects::{Gpus, HubPeer, PodPlan};
use super::{Backend, Observed, PollStatus, SpawnError, SpawnSpec, Started};
use crate::config::{Config, KubernetesGpus, KubernetesSpawner};
use crate::docker::{LABEL_SERVER, LABEL_USER};

pub struct KubernetesBackend {
    cluster: std::sync::Arc<Cluster>,
    /// Where pods reach the hub (`spawner.kubernetes.hub_address`, else `internal.address`).
    hub_address: String,
}

/// A cluster failure as the spawn contract says it: an API server that does not answer is
/// "not available" (retried); anything else failed this spawn.
pub fn spawn_error(e: ClusterError) -> SpawnError {
    match e {
        ClusterError::Unreachable(_) => SpawnError::NotAvailable(e.to_string()),
        _ => SpawnError::Failed(e.to_string()),
    }
}

/// `(uid, gid)` pods run as: `spawner.docker.user`, else the home's owner (docker-stacks'
/// 1000:100). The gid is the pods' fsGroup.
pub fn run_as(cfg: &Config) -> (i64, i64) {
    let d = &cfg.spawner.docker;
    let mut parts = d.user.split(':').map(|p| p.parse::<i64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(u), Some(g)) => (u, g),
        (Some(u), None) => (u, i64::from(d.home_gid)),
        _ => (i64::from(d.home_uid), i64::from(d.home_gid)),
    }
}

/// How a pod gets GPUs: the units leased for it (this node), or a count for the device plugin.
pub fn gpus_for(k: &KubernetesSpawner, leased: &[String], count: u32) -> Gpus {
    match k.gpus {
        KubernetesGpus::Node if !leased.is_empty() => Gpus::Leased(leased.to_vec()),
        KubernetesGpus::DevicePlugin if count > 0 => Gpus::DevicePlugin(count),
        _ => Gpus::None,
    }
}

/// Extra volumes (`CLAIM:/target[:ro]`, `{username}` replaced): on Kubernetes the source
/// names a PVC in the namespace.
pub fn extra_claims(volumes: &[String], user: &str) -> Vec<(String, String, bool)> {
    volumes
        .iter()
        .filter_map(|v| {
            let v = v.replace("{username}", user);
            let mut parts = v.splitn(3, ':');
            let source = parts.next()?.to_string();
            let target = parts.next()?.to_string();
            let read_only = parts.next() == Some("ro");
            Some((source, target, read_only))
        })
        .collect()
}

impl KubernetesBackend {
    pub fn new(cfg: &Config, instance: &str) -> KubernetesBackend {
        KubernetesBackend::with_cluster(
            cfg,
            std::sync::Arc::new(Cluster::new(&cfg.spawner.kubernetes, instance)),
        )
    }

    /// A backend over a cluster connection made elsewhere (shared with the kernel runtime,
    /// or a test's mock).
    pub fn with_cluster(cfg: &Config, cluster: std::sync::Arc<Cluster>) -> KubernetesBackend {
        let k = &cfg.spawner.kubernetes;
        KubernetesBackend {
            cluster,
            hub_address: if k.hub_address.is_empty() {
                cfg.internal.address.clone()
            } else {
                k.hub_address.clone()
            },
        }
    }

    pub fn cluster(&self) -> std::sync::Arc<Cluster> {
        self.cluster.clone()
    }

    fn pod_name(user: &str, server: &str, state: &serde_json::Value) -> String {
        state
            .get("pod")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| objects::server_pod_name(user, server))
    }

    /// Who may connect to users' pods: Orrery's own pods (in the cluster) or its address.
    fn hub_peer(&self) -> Option<HubPeer> {
        let k = self.cluster.settings();
        if !k.hub_pod_labels.is_empty() {
            return Some(HubPeer::Pods(k.hub_pod_labels.clone()));
        }
        if !k.hub_cidr.is_empty() {
            return Some(HubPeer::Address(k.hub_cidr.clone()));
        }
        match self.hub_address.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => Some(HubPeer::Address(format!("{ip}/32"))),
            Ok(IpAddr::V6(ip)) => Some(HubPeer::Address(format!("{ip}/128"))),
            Err(_) => None,
        }
    }
}

impl Backend for KubernetesBackend {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    /// Checks Orrery may work in the namespace and makes the isolation policy. The internal
    /// listener binds `hub_address` when it is an IP of this machine's, else every address
    /// (in the cluster, the Service in front of the pod decides who reaches it).
    fn prepare(&self) -> BoxFuture<'_, Result<IpAddr, SpawnError>> {
        Box::pin(async move {
            self.cluster.check_access().await.map_err(spawn_error)?;
            match self.hub_peer() {
                Some(peer) => {
                    let policy = objects::isolation_policy(
                        self.cluster.instance(),
                        &peer,
                        &[],
                    );
                    self.cluster.apply_policy(policy).await.map_err(spawn_error)?;
                }
                None => tracing::warn!(
                    "spawner.kubernetes: no hub_cidr or hub_pod_labels, and hub_address is not an IP: users' pods are not isolated by a NetworkPolicy"
                ),
            }
            Ok(match self.hub_address.parse::<IpAddr>() {
                Ok(ip) if std::net::TcpListener::bind((ip, 0)).is_ok() => ip,
                _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            })
        })
    }

    fn hub_api_base(&self, internal_port: u16) -> Option<String> {
        if self.hub_address.is_empty() {
            return None;
        }
        Some(match self.hub_address.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("http://[{v6}]:{internal_port}"),
            _ => format!("http://{}:{internal_port}", self.hub_address),
        })
    }

    fn start(&self, spec: SpawnSpec) -> BoxFuture<'_, Result<Started, SpawnError>> {
        Box::pin(async move {
            let cfg = &spec.config;
            let d = &cfg.spawner.docker;
            let k = &cfg.spawner.kubernetes;
            let deadline = tokio::time::Instant::now() + cfg.spawner.start_timeout.as_std();
            let image = super::choose_image(&spec)?;
            let _ = spec.progress.send("Preparing the home volume".to_string());
            self.cluster
                .ensure_home(objects::home_pvc(
                    &spec.user,
                    self.cluster.instance(),
                    &k.storage_class,
                    &k.home_size,
                    k.home_access_mode == "ReadWriteMany",
                ))
                .await
                .map_err(spawn_error)?;
            let mut env = d.env.clone();
            env.extend(spec.env.clone());
            env.insert(
                "JUPYTERHUB_SERVICE_URL".into(),
                format!("http://0.0.0.0:{}{}", d.port, spec.prefix),
            );
            let volumes: Vec<String> = d.volumes.iter().chain(&spec.volumes).cloned().collect();
            let plan = PodPlan {
                kind: "notebook",
                user: spec.user.clone(),
                server: spec.server_name.clone(),
                kernel: None,
                name_suffix: String::new(),
                instance: self.cluster.instance().to_string(),
                image: image.clone(),
                args: d.cmd.clone(),
                working_dir: None,
                env,
                port: d.port,
                home_mount: d.home_mount.clone(),
                extra_claims: extra_claims(&volumes, &spec.user),
                memory_limit: spec.memory_limit,
                cpu_limit: spec.cpu_limit,
                gpus: gpus_for(k, &spec.gpus, spec.gpu_count),
                run_as: Some(run_as(cfg)),
                image_pull_secrets: k.image_pull_secrets.clone(),
                runtime_class: k.runtime_class.clone(),
            };
            let name = objects::server_pod_name(&spec.user, &spec.server_name);
            let _ = spec.progress.send(format!("Creating pod {name}"));
            let pod = self
                .cluster
                .create_pod(objects::pod(&plan), deadline)
                .await
                .map_err(spawn_error)?;
            let progress = spec.progress.clone();
            let ip = self
                .cluster
                .wait_running(&pod, deadline, &move |line| {
                    let _ = progress.send(line);
                })
                .await
                .map_err(spawn_error)?;
            let _ = spec.progress.send(format!("Pod {name} is running"));
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip
            };
            Ok(Started {
                url: format!("http://{host}:{}", d.port),
                state: json!({"pod": name, "uid": pod.metadata.uid, "image": image}),
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
            // The pod goes; its home PVC stays (it holds the user's files).
            let name = Self::pod_name(user, server, state);
            self.cluster
                .delete_pod(&name, None)
                .await
                .map_err(spawn_error)
        })
    }

    fn poll<'a>(
        &'a self,
        user: &'a str,
        server: &'a str,
        state: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<PollStatus, SpawnError>> {
        Box::pin(async move {
            let name = Self::pod_name(user, server, state);
            let Some(pod) = self.cluster.pod(&name).await.map_err(spawn_error)? else {
                return Ok(PollStatus::Stopped(format!("pod {name} is gone")));
            };
            if pod.metadata.deletion_timestamp.is_some() {
                return Ok(PollStatus::Stopped(format!("pod {name} is being deleted")));
            }
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            if matches!(phase.as_str(), "Failed" | "Succeeded") {
                let why =
                    progress::termination(&pod).unwrap_or_else(|| format!("its phase is {phase}"));
                let why = self
                    .cluster
                    .with_logs(&name, format!("pod {name} stopped: {why}"))
                    .await;
                return Ok(PollStatus::Stopped(why));
            }
            Ok(PollStatus::Running)
        })
    }

    fn describe_failure<'a>(
        &'a self,
        user: &'a str,
        server: &'a str,
        state: &'a serde_json::Value,
    ) -> BoxFuture<'a, String> {
        Box::pin(async move {
            let name = Self::pod_name(user, server, state);
            super::log_note(&self.cluster.logs(&name, 20).await)
        })
    }

    fn purge_user_data<'a>(
        &'a self,
        user: &'a str,
        _config: &'a Config,
    ) -> BoxFuture<'a, Result<String, SpawnError>> {
        Box::pin(async move {
            let name = objects::home_pvc_name(user);
            match self.cluster.delete_pvc(&name).await.map_err(spawn_error)? {
                true => Ok(format!("removed PVC {name}")),
                false => Ok(format!("no PVC {name}")),
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Observed>, SpawnError>> {
        Box::pin(async move {
            let pods = self.cluster.list("notebook").await.map_err(spawn_error)?;
            Ok(pods
                .into_iter()
                .filter_map(|p| {
                    // Exact names from the annotations (labels may hold hashed forms).
                    let notes = p.metadata.annotations.clone().unwrap_or_default();
                    Some(Observed {
                        user: notes.get(LABEL_USER)?.clone(),
                        server: notes.get(LABEL_SERVER).cloned().unwrap_or_default(),
                        state: json!({"pod": p.metadata.name, "uid": p.metadata.uid}),
                        created: p
                            .metadata
                            .creation_timestamp
                            .as_ref()
                            .and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), 0)),
                    })
                })
                .collect())
        })
    }
}
