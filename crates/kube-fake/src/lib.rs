//! A fake Kubernetes API server (with watch) and a fake kubelet that runs each scheduled pod
//! as a Docker container: test support for Orrery's Kubernetes backend, on machines where no
//! real API server (k3s, kind) can be installed. See README.md for what it fakes and what it
//! does not.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kube_fake::Error> {
//! let cluster = kube_fake::FakeCluster::start(kube_fake::Options::default()).await?;
//! cluster.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"), "default")?;
//! println!("{}", cluster.url());
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```

mod admission;
mod api;
mod controllers;
mod discovery;
mod events;
pub mod kubelet;
mod patch;
mod resources;
mod selectors;
mod status;
mod store;
mod table;
mod watch;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use kubelet::Kubelet;
use store::Store;

/// What the fake cluster runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The fake node (scheduler and kubelet); `None`: an API server only (pods stay
    /// `Pending`, unbound).
    pub kubelet: Option<KubeletOptions>,
    /// How many watch events are kept for watches that resume from a resourceVersion.
    pub history: usize,
    /// The RuntimeClasses that exist (e.g. `["nvidia"]`); each's handler is its name.
    pub runtime_classes: Vec<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            kubelet: None,
            history: 1000,
            runtime_classes: Vec::new(),
        }
    }
}

/// The fake node.
#[derive(Debug, Clone)]
pub struct KubeletOptions {
    /// The Docker bridge network the pods join (created if missing, and then removed at
    /// shutdown).
    pub network: String,
    pub node_name: String,
    /// Allocatable CPU, in millicores.
    pub cpu_millis: u64,
    /// Allocatable memory, in bytes.
    pub memory_bytes: u64,
    /// Allocatable `nvidia.com/gpu`.
    pub gpus: u32,
    /// The Docker engine (default: `$DOCKER_HOST` or `unix:///var/run/docker.sock`).
    pub docker_socket: Option<String>,
}

/// The host's memory (from /proc/meminfo), or 8 GiB if it cannot be read.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(8 << 30, |kb| kb * 1024)
}

impl Default for KubeletOptions {
    fn default() -> KubeletOptions {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        KubeletOptions {
            network: "kube-fake".into(),
            node_name: "fake-node".into(),
            cpu_millis: u64::try_from(cpus).unwrap_or(1) * 1000,
            memory_bytes: host_memory(),
            gpus: 0,
            docker_socket: None,
        }
    }
}

/// Why the fake cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube-fake: {0}")]
    Io(#[from] std::io::Error),
    #[error("kube-fake: the Docker engine: {0}")]
    Docker(#[from] kubelet::EngineError),
    #[error("kube-fake: {0}")]
    Kubelet(String),
}

/// A running fake cluster: the API server on 127.0.0.1 (plain HTTP, no authentication) and,
/// if asked, one node.
pub struct FakeCluster {
    addr: SocketAddr,
    store: Arc<Store>,
    kubelet: Option<Arc<Kubelet>>,
    stop: CancellationToken,
    server: JoinHandle<()>,
    controllers: JoinHandle<()>,
    /// `shutdown` ran: nothing for `Drop` to do.
    finished: bool,
}

impl FakeCluster {
    /// Start serving on 127.0.0.1 (a free port).
    pub async fn start(opts: Options) -> Result<FakeCluster, Error> {
        FakeCluster::start_on(opts, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Start serving on `addr` (the binary's `--port`).
    pub async fn start_on(opts: Options, addr: SocketAddr) -> Result<FakeCluster, Error> {
        let store = Arc::new(Store::new(opts.history, &opts.runtime_classes));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let kubelet = match opts.kubelet {
            Some(k) => Some(Kubelet::start(store.clone(), k).await?),
            None => None,
        };
        let router = api::router(api::AppState {
            store: store.clone(),
            kubelet: kubelet.clone(),
            address: addr.to_string(),
        });
        let stop = CancellationToken::new();
        let server = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(e) = served {
                    tracing::error!("kube-fake API server: {e}");
                }
            })
        };
        let controllers = tokio::spawn(controllers::run(store.clone()));
        Ok(FakeCluster {
            addr,
            store,
            kubelet,
            stop,
            server,
            controllers,
            finished: false,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Write a kubeconfig for this cluster (server = [`FakeCluster::url`], a context with
    /// `namespace`, a user without credentials), for kubectl and `kube::Config`.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) -> std::io::Result<()> {
        let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: kube-fake\n  cluster:\n    server: {}\n\
             contexts:\n\
             - name: kube-fake\n  context:\n    cluster: kube-fake\n    user: kube-fake\n    namespace: {}\n\
             current-context: kube-fake\n\
             users:\n\
             - name: kube-fake\n  user: {{}}\n\
             preferences: {{}}\n",
            q(&self.url()),
            q(namespace),
        );
        std::fs::write(path, text)
    }

    /// Forget all watch history: watches and lists asking for an older resourceVersion than
    /// the current one get `410 Gone`.
    pub fn compact(&self) {
        self.store.compact();
    }

    /// End every open watch (clients reconnect with their last resourceVersion).
    pub fn close_watches(&self) {
        self.store.close_watches();
    }

    /// The kubelet network's gateway (how pods reach the host), if a kubelet runs.
    pub fn gateway_ip(&self) -> Option<IpAddr> {
        self.kubelet.as_ref().map(|k| k.gateway())
    }

    /// Remove the PVC volumes the kubelet made (those in use go at shutdown).
    pub async fn remove_volumes(&self) {
        if let Some(k) = &self.kubelet {
            k.remove_volumes().await;
        }
    }

    /// Stop serving; the kubelet removes every container it made (and the network, if it
    /// created it). PVC volumes stay unless [`FakeCluster::remove_volumes`] was called.
    pub async fn shutdown(mut self) {
        self.store.shutdown();
        self.stop.cancel();
        if let Some(k) = &self.kubelet {
            k.shutdown().await;
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
        }
        self.controllers.abort();
        self.finished = true;
    }
}

/// A cluster dropped without [`FakeCluster::shutdown`] (a test that panicked) still stops
/// serving and, best effort, removes the kubelet's containers (blocking briefly).
impl Drop for FakeCluster {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.store.shutdown();
        self.stop.cancel();
        self.server.abort();
        self.controllers.abort();
        if let Some(k) = &self.kubelet {
            k.abandon();
        }
    }
}
