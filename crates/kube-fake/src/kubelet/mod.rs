//! The fake node: a scheduler that binds pods to it and a kubelet that runs each bound pod as
//! Docker containers on one bridge network. The kubelet registers its Node, reacts to the
//! store's changes (one worker task per pod, see [`worker`]), removes containers whose pod
//! is gone, and at shutdown removes every container it made (and, if asked, the PVC
//! volumes).

mod docker;
mod pod_status;
mod quantity;
mod scheduler;
mod volumes;
mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bollard::Docker;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::resources::{NODES, PODS};
use crate::selectors::Selector;
use crate::status::ApiError;
use crate::store::{now, ListRv, Store};
use crate::{Error, KubeletOptions};

pub use docker::{
    container_name, EngineError, LogRequest, LABEL_NETWORK, LABEL_POD_NAME, LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
};

/// The running kubelet (and scheduler).
pub(crate) struct Kubelet {
    docker: Docker,
    opts: KubeletOptions,
    store: Arc<Store>,
    gateway: IpAddr,
    created_network: bool,
    /// Per-pod directories (secret, configMap, emptyDir files).
    pod_dirs: Mutex<Option<tempfile::TempDir>>,
    /// One worker per pod uid.
    workers: Mutex<HashMap<String, Arc<Notify>>>,
    /// The engine's runtimes (a RuntimeClass handler is used if it is one of them).
    runtimes: HashSet<String>,
    remove_volumes_at_shutdown: AtomicBool,
    /// Shut down (or abandoned): nothing left to clean.
    shut_down: AtomicBool,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Kubelet {
    /// Connect to Docker, make the network, register the node and start working.
    pub async fn start(store: Arc<Store>, opts: KubeletOptions) -> Result<Arc<Kubelet>, Error> {
        let d = docker::connect(opts.docker_socket.as_deref()).await?;
        let (gateway, created_network) = docker::ensure_network(&d, &opts.network).await?;
        let runtimes = d
            .info()
            .await
            .map_err(docker::engine("docker info"))?
            .runtimes
            .map(|r| r.into_keys().collect())
            .unwrap_or_default();
        let pod_dirs = tempfile::Builder::new()
            .prefix("kube-fake-pods-")
            .tempdir()
            .map_err(Error::Io)?;
        let k = Arc::new(Kubelet {
            docker: d,
            opts,
            store,
            gateway,
            created_network,
            pod_dirs: Mutex::new(Some(pod_dirs)),
            workers: Mutex::new(HashMap::new()),
            runtimes,
            remove_volumes_at_shutdown: AtomicBool::new(false),
            shut_down: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        // Leftovers of an earlier run on this network.
        k.collect_orphans().await;
        k.register_node()?;
        k.tasks.spawn(k.clone().run());
        Ok(k)
    }

    /// The network's gateway: the node's address, how pods reach the host.
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    fn node_labels(&self) -> BTreeMap<String, String> {
        let n = self.opts.node_name.clone();
        BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), n),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            (
                "kubernetes.io/arch".to_string(),
                std::env::consts::ARCH
                    .replace("x86_64", "amd64")
                    .replace("aarch64", "arm64"),
            ),
            ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
            (
                "beta.kubernetes.io/arch".to_string(),
                std::env::consts::ARCH
                    .replace("x86_64", "amd64")
                    .replace("aarch64", "arm64"),
            ),
        ])
    }

    fn register_node(&self) -> Result<(), Error> {
        let o = &self.opts;
        let resources = json!({
            "cpu": quantity::format_cpu(o.cpu_millis),
            "memory": quantity::format_memory(o.memory_bytes),
            "pods": "110",
            "ephemeral-storage": "100Gi",
            scheduler::GPU: o.gpus.to_string(),
        });
        let stamp = now();
        let cond = |t: &str, s: &str, reason: &str, msg: &str| {
            json!({"type": t, "status": s, "reason": reason, "message": msg,
                   "lastHeartbeatTime": stamp, "lastTransitionTime": stamp})
        };
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": { "name": o.node_name, "labels": self.node_labels() },
            "spec": {},
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": [
                    cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                    cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ],
                "addresses": [
                    { "type": "InternalIP", "address": self.gateway.to_string() },
                    { "type": "Hostname", "address": o.node_name },
                ],
                "daemonEndpoints": { "kubeletEndpoint": { "Port": 10250 } },
                "nodeInfo": {
                    "machineID": "", "systemUUID": "", "bootID": "",
                    "kernelVersion": "", "osImage": "kube-fake",
                    "containerRuntimeVersion": "docker://",
                    "kubeletVersion": crate::discovery::GIT_VERSION,
                    "kubeProxyVersion": crate::discovery::GIT_VERSION,
                    "operatingSystem": "linux",
                    "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                },
            },
        });
        self.store
            .create(&NODES, "", node, false)
            .map(|_| ())
            .map_err(|e| Error::Kubelet(format!("registering node {}: {e}", o.node_name)))
    }

    /// React to every change: schedule, give each bound pod a worker, wake the workers; and
    /// every few seconds collect orphaned containers.
    async fn run(self: Arc<Self>) {
        let mut changes = self.store.changes();
        let mut sched = scheduler::Scheduler::new(
            self.store.clone(),
            scheduler::NodeCapacity {
                name: self.opts.node_name.clone(),
                labels: self.node_labels(),
                cpu_millis: self.opts.cpu_millis,
                memory_bytes: self.opts.memory_bytes,
                gpus: u64::from(self.opts.gpus),
                pods: 110,
            },
        );
        let mut gc = tokio::time::interval(Duration::from_secs(5));
        loop {
            sched.schedule();
            self.sync_workers();
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                r = changes.changed() => if r.is_err() { return },
                _ = gc.tick() => self.collect_orphans().await,
            }
        }
    }

    fn sync_workers(self: &Arc<Self>) {
        let Ok((pods, _)) = self
            .store
            .list(&PODS, None, &Selector::default(), ListRv::Latest)
        else {
            return;
        };
        let mut workers = lock(&self.workers);
        for p in pods {
            if p.pointer("/spec/nodeName").and_then(Value::as_str) != Some(&self.opts.node_name) {
                continue;
            }
            let uid = p
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if let std::collections::hash_map::Entry::Vacant(e) = workers.entry(uid) {
                let notify = Arc::new(Notify::new());
                e.insert(notify.clone());
                self.tasks.spawn(worker::run(self.clone(), p, notify));
            }
        }
        for n in workers.values() {
            n.notify_one();
        }
    }

    fn forget_worker(&self, uid: &str) {
        lock(&self.workers).remove(uid);
    }

    /// Remove the containers of this node whose pod has no worker (its object is gone).
    async fn collect_orphans(&self) {
        let Ok(containers) = docker::list_ours(&self.docker, &self.opts.network).await else {
            return;
        };
        let live: HashSet<String> = lock(&self.workers).keys().cloned().collect();
        for c in containers {
            let uid = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_POD_UID))
                .cloned()
                .unwrap_or_default();
            if live.contains(&uid) {
                continue;
            }
            if let Some(id) = c.id {
                if let Err(e) = docker::remove(&self.docker, &id).await {
                    tracing::warn!("removing orphaned container {id}: {e}");
                }
            }
        }
    }

    /// Stop working and remove every container of this node (and the network if the kubelet
    /// made it; and the PVC volumes if [`Kubelet::remove_volumes`] was called).
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(30), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("kubelet workers did not stop in 30 s");
        }
        tear_down(
            &self.docker,
            &self.opts.network,
            self.created_network,
            self.remove_volumes_at_shutdown.load(Ordering::SeqCst),
        )
        .await;
        self.remove_pod_dirs();
        self.shut_down.store(true, Ordering::SeqCst);
    }

    /// [`Kubelet::shutdown`] for when there is no async context left (a cluster dropped
    /// without `shutdown`): best effort, from a thread and a runtime of its own.
    pub fn abandon(&self) {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        self.cancel.cancel();
        let network = self.opts.network.clone();
        let socket = self.opts.docker_socket.clone();
        let created = self.created_network;
        let volumes = self.remove_volumes_at_shutdown.load(Ordering::SeqCst);
        let cleaner = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                match docker::connect(socket.as_deref()).await {
                    Ok(d) => tear_down(&d, &network, created, volumes).await,
                    Err(e) => tracing::warn!("cleaning up after kube-fake: {e}"),
                }
            });
        });
        if cleaner.join().is_err() {
            tracing::warn!("cleaning up after kube-fake failed");
        }
        self.remove_pod_dirs();
    }

    fn remove_pod_dirs(&self) {
        if let Some(d) = lock(&self.pod_dirs).take() {
            if let Err(e) = d.close() {
                tracing::warn!("removing the pod directories: {e}");
            }
        }
    }

    /// Remove the PVC volumes this node made: those not in use now, and the rest at shutdown.
    pub async fn remove_volumes(&self) {
        self.remove_volumes_at_shutdown
            .store(true, Ordering::SeqCst);
        remove_volumes(&self.docker, &self.opts.network).await;
    }

    fn pod_dir(&self, uid: &str) -> Option<std::path::PathBuf> {
        lock(&self.pod_dirs).as_ref().map(|d| d.path().join(uid))
    }
}

/// Remove the containers of `network`'s node, then (if asked) its volumes and the network.
async fn tear_down(d: &Docker, network: &str, remove_network: bool, volumes: bool) {
    let containers = docker::list_ours(d, network).await.unwrap_or_default();
    let removals = containers
        .into_iter()
        .filter_map(|c| c.id)
        .map(|id| async move {
            if let Err(e) = docker::remove(d, &id).await {
                tracing::warn!("removing container {id}: {e}");
            }
        });
    futures::future::join_all(removals).await;
    if volumes {
        remove_volumes(d, network).await;
    }
    if remove_network {
        if let Err(e) = d.remove_network(network).await {
            tracing::warn!("removing network {network}: {e}");
        }
    }
}

/// Remove the volumes labelled with `network` (those in use stay).
async fn remove_volumes(d: &Docker, network: &str) {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_NETWORK}={network}")],
    )]);
    let Ok(list) = d
        .list_volumes(Some(bollard::volume::ListVolumesOptions { filters }))
        .await
    else {
        return;
    };
    for v in list.volumes.unwrap_or_default() {
        match d
            .remove_volume(
                &v.name,
                Some(bollard::volume::RemoveVolumeOptions { force: true }),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if docker::is_not_found(&e) => {}
            Err(e) => tracing::debug!("volume {} not removed now: {e}", v.name),
        }
    }
}

/// A `GET pods/{name}/log` request.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogParams {
    pub container: Option<String>,
    pub previous: bool,
    pub limit_bytes: Option<i64>,
    pub docker: docker::LogRequest,
}

/// A pod's log: all of it, or (`follow`) a stream that ends when the container does.
pub(crate) enum Logs {
    Text(String),
    Stream(futures::stream::BoxStream<'static, Result<axum::body::Bytes, std::io::Error>>),
}

/// `GET pods/{name}/log`: the container's output, or the real server's 400 while it has none.
pub(crate) async fn logs(
    kubelet: Option<&Kubelet>,
    pod: &Value,
    p: &LogParams,
) -> Result<Logs, ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let names: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let container = match p.container.as_deref() {
        Some(c) if !c.is_empty() => {
            if !names.contains(&c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            c
        }
        _ => match names.as_slice() {
            [one] => one,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                )))
            }
        },
    };
    if p.previous {
        // Containers are never restarted here: there is no previous one.
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        )));
    }
    let cs = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|s| {
            s.iter()
                .find(|x| x.get("name").and_then(Value::as_str) == Some(container))
        })
        .cloned();
    let id = cs
        .as_ref()
        .and_then(|s| s.get("containerID"))
        .and_then(Value::as_str)
        .and_then(|i| i.strip_prefix("docker://"))
        .map(String::from);
    let waiting = |reason: &str| {
        let why = match reason {
            "ErrImagePull" | "ImagePullBackOff" => "trying and failing to pull image".to_string(),
            r => r.to_string(),
        };
        ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {why}"
        ))
    };
    let (Some(k), Some(id)) = (kubelet, id) else {
        let reason = cs
            .as_ref()
            .and_then(|s| s.pointer("/state/waiting/reason"))
            .and_then(Value::as_str)
            .unwrap_or("ContainerCreating")
            .to_string();
        return Err(waiting(&reason));
    };
    let limit = p.limit_bytes.and_then(|l| usize::try_from(l).ok());
    if p.docker.follow {
        let stream = docker::log_stream(&k.docker, &id, &p.docker);
        let stream = match limit {
            None => stream,
            Some(limit) => {
                use futures::StreamExt;
                stream
                    .scan(0usize, move |sent, chunk| {
                        let out = match chunk {
                            Ok(_) if *sent >= limit => return futures::future::ready(None),
                            Ok(c) => {
                                let take = c.len().min(limit - *sent);
                                *sent += take;
                                Ok(c.slice(..take))
                            }
                            Err(e) => Err(e),
                        };
                        futures::future::ready(Some(out))
                    })
                    .boxed()
            }
        };
        return Ok(Logs::Stream(stream));
    }
    let mut text = docker::logs(&k.docker, &id, &p.docker)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(limit) = limit {
        if text.len() > limit {
            let mut cut = limit;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
    }
    Ok(Logs::Text(text))
}
