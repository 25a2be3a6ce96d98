//! Kernel pods: the kernel runtime of the Kubernetes backend, one pod per kernel start.
//!
//! * The pod is named `orrery-kernel-<id>-<suffix>`: a reclaimed kernel is re-created under a
//!   new pod while the old one may still be terminating, behind the same kernel id.
//! * Its connection file (fresh key) is a Secret of the same name, mounted read-only at
//!   [`objects::CONNECTION_DIR`] in that pod only: the key never reaches the notebook pod. The
//!   Secret goes with the pod.
//! * The user's home PVC at `spawner.docker.home_mount`, the working directory from
//!   `KERNEL_WORKING_DIR`, the spec's image (or its derived one), argv, env and limits, and the
//!   notebook pods' lock-down ([`objects::pod`]).
//! * GPUs: the units Orrery leased (`gpus = "node"`), or the spec's count for the device
//!   plugin. NVML's host PIDs map to a kernel through its container id in the process's cgroup.
//! * The hub reaches the kernel's ports at the pod's IP, so Orrery must run on a node or in the
//!   cluster; `orrery doctor` says so when it cannot.
//! * Pods cannot be signalled through the API: kernels are interrupted by message
//!   ([`KernelRuntime::can_signal`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use rand::Rng;

use super::manager::{lock, Kernel};
use super::runtime::KernelRuntime;
use crate::config::Config;
use crate::docker::LABEL_KERNEL;
use crate::kernels::ConnectionInfo;
use crate::spawner::kubernetes::cluster::Cluster;
use crate::spawner::kubernetes::objects::{self, PodPlan};
use crate::spawner::kubernetes::{extra_claims, gpus_for, progress, run_as};

pub struct Pods {
    cluster: Arc<Cluster>,
    /// Pod name → its container's id (from the pod's status), for [`KernelRuntime::owns_pid`].
    containers: Mutex<HashMap<String, String>>,
}

impl Pods {
    pub fn new(cluster: Arc<Cluster>) -> Pods {
        Pods {
            cluster,
            containers: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, pod: &Pod) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let id = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.container_id.clone())
            .map(|id| id.rsplit("://").next().unwrap_or_default().to_string());
        if let Some(id) = id {
            lock(&self.containers).insert(name, id);
        }
    }

    async fn start(&self, cfg: &Config, kernel: &Kernel) -> Result<(String, String), String> {
        let d = &cfg.spawner.docker;
        let k = &cfg.spawner.kubernetes;
        let deadline = tokio::time::Instant::now() + cfg.spawner.start_timeout.as_std();
        let suffix: String = {
            let mut rng = rand::thread_rng();
            (0..5)
                .map(|_| {
                    let n = rng.gen_range(0..36u8);
                    char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
                })
                .collect()
        };
        let name = objects::kernel_pod_name(&kernel.id, &suffix);
        let connection = lock(&kernel.info).to_json();
        self.cluster
            .create_secret(objects::connection_secret(
                &name,
                &kernel.id,
                &kernel.user,
                &kernel.server,
                self.cluster.instance(),
                &connection,
            ))
            .await
            .map_err(|e| e.to_string())?;
        let file = format!("{}/{}", objects::CONNECTION_DIR, objects::CONNECTION_KEY);
        let args: Vec<String> = kernel
            .spec
            .argv
            .iter()
            .map(|a| a.replace("{connection_file}", &file))
            .collect();
        let mut env: std::collections::BTreeMap<String, String> =
            kernel.env.iter().cloned().collect();
        env.extend(kernel.spec.env.clone());
        env.insert("JUPYTERHUB_USER".into(), kernel.user.clone());
        let volumes = lock(&kernel.shared_volumes).clone();
        let plan = PodPlan {
            kind: "kernel",
            user: kernel.user.clone(),
            server: kernel.server.clone(),
            kernel: Some(kernel.id.clone()),
            name_suffix: suffix,
            instance: self.cluster.instance().to_string(),
            image: lock(&kernel.image).clone(),
            args,
            working_dir: Some(kernel.working_dir.clone()),
            env,
            port: 0,
            home_mount: d.home_mount.clone(),
            extra_claims: extra_claims(&volumes, &kernel.user),
            // The spec's limits, else the per-user ones notebook servers get.
            memory_limit: kernel.spec.memory.or(cfg.limits.memory).map(|m| m.bytes()),
            cpu_limit: kernel.spec.cpu.or(cfg.limits.cpu),
            gpus: gpus_for(k, &kernel.visible_gpus(), kernel.spec.gpus),
            run_as: Some(run_as(cfg)),
            image_pull_secrets: k.image_pull_secrets.clone(),
            runtime_class: k.runtime_class.clone(),
        };
        let created = match self.cluster.create_pod(objects::pod(&plan), deadline).await {
            Ok(p) => p,
            Err(e) => {
                self.cluster.delete_secret(&name).await;
                return Err(e.to_string());
            }
        };
        let kernel_id = kernel.id.clone();
        let result = self
            .cluster
            .wait_running(&created, deadline, &move |line| {
                tracing::debug!(kernel = %kernel_id, "{line}");
            })
            .await;
        match result {
            Ok(ip) => {
                if let Ok(Some(pod)) = self.cluster.pod(&name).await {
                    self.remember(&pod);
                }
                Ok((name, ip))
            }
            Err(e) => {
                self.cluster.delete_secret(&name).await;
                Err(e.to_string())
            }
        }
    }

    async fn stopped(&self, handle: &str) -> Option<String> {
        let pod = match self.cluster.pod(handle).await {
            Ok(Some(p)) => p,
            Ok(None) => return Some("the kernel's pod is gone".into()),
            Err(_) => return None,
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return Some("the kernel's pod is being deleted".into());
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        match phase.as_deref() {
            Some("Failed" | "Succeeded") => Some(format!(
                "the kernel's pod stopped: {}",
                progress::termination(&pod).unwrap_or_else(|| "it ended".into())
            )),
            _ => None,
        }
    }

    async fn remove(&self, handle: &str) {
        if let Err(e) = self.cluster.delete_pod(handle, Some(1)).await {
            tracing::warn!(pod = handle, error = %e, "cannot delete a kernel's pod");
        }
        self.cluster.delete_secret(handle).await;
        lock(&self.containers).remove(handle);
    }

    async fn give_up(&self, handle: &str, reason: String) -> String {
        let logs = self.cluster.logs(handle, 5).await;
        self.remove(handle).await;
        if logs.is_empty() {
            reason
        } else {
            format!("{reason}; it wrote:\n{logs}")
        }
    }

    async fn address(&self, handle: &str) -> Option<String> {
        let pod = self.cluster.pod(handle).await.ok()??;
        if pod.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let status = pod.status.as_ref()?;
        if status.phase.as_deref() != Some("Running") {
            return None;
        }
        self.remember(&pod);
        status.pod_ip.clone().filter(|ip| !ip.is_empty())
    }

    async fn list(&self) -> Result<Vec<(String, String)>, String> {
        let pods = self
            .cluster
            .list("kernel")
            .await
            .map_err(|e| e.to_string())?;
        Ok(pods
            .into_iter()
            .filter_map(|p| {
                self.remember(&p);
                // The exact id from the annotation (a label may hold a hashed form).
                let kernel = p
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(LABEL_KERNEL))
                    .or(p.metadata.labels.as_ref()?.get(LABEL_KERNEL))?
                    .clone();
                Some((p.metadata.name?, kernel))
            })
            .collect())
    }
}

impl KernelRuntime for Pods {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    /// Each pod has its own address: every kernel binds the same fixed ports.
    fn connection_info(&self, kernel_name: &str) -> ConnectionInfo {
        ConnectionInfo::new("0.0.0.0", kernel_name)
    }

    fn can_signal(&self) -> bool {
        false
    }

    fn start<'a>(
        &'a self,
        cfg: &'a Config,
        kernel: &'a Kernel,
    ) -> BoxFuture<'a, Result<(String, String), String>> {
        Box::pin(Pods::start(self, cfg, kernel))
    }

    fn stopped<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(Pods::stopped(self, handle))
    }

    fn signal<'a>(
        &'a self,
        _handle: &'a str,
        signal: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            Err(format!(
                "a kernel pod cannot be sent {signal} through the Kubernetes API; it is interrupted by message"
            ))
        })
    }

    fn remove<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(Pods::remove(self, handle))
    }

    fn give_up<'a>(&'a self, handle: &'a str, reason: String) -> BoxFuture<'a, String> {
        Box::pin(Pods::give_up(self, handle, reason))
    }

    fn address<'a>(&'a self, _cfg: &'a Config, handle: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(Pods::address(self, handle))
    }

    /// The container id in the process's cgroup path is the kernel pod's container.
    fn owns_pid(&self, handle: &str, pid: u32) -> bool {
        let Some(id) = lock(&self.containers).get(handle).cloned() else {
            return false;
        };
        crate::gpu::process::container_of(pid).is_some_and(|c| c == id)
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<(String, String)>, String>> {
        Box::pin(Pods::list(self))
    }
}
