//! Shared by the integration tests: a fake cluster with a kube-rs client built from the
//! kubeconfig it writes, a fresh namespace per test, and waiting with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use kube_fake::{FakeCluster, Options};

/// A name no other test (or run) uses.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..10])
}

/// A running cluster, a client for it, and a namespace of the test's own.
pub struct Env {
    pub cluster: FakeCluster,
    pub client: Client,
    pub ns: String,
    pub kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Env {
    pub async fn start(opts: Options) -> Env {
        let cluster = FakeCluster::start(opts)
            .await
            .expect("the fake cluster starts");
        let ns = unique("t");
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        cluster.write_kubeconfig(&kubeconfig, &ns).unwrap();
        let kc = Kubeconfig::read_from(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        assert_eq!(config.default_namespace, ns);
        let client = Client::try_from(config).unwrap();
        let nss: Api<Namespace> = Api::all(client.clone());
        let mut n = Namespace::default();
        n.metadata.name = Some(ns.clone());
        nss.create(&PostParams::default(), &n).await.unwrap();
        Env {
            cluster,
            client,
            ns,
            kubeconfig,
            _dir: dir,
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }
}

/// `f` until it yields `Some`, for at most `secs` seconds (checking every 100 ms).
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The API error of `r` (panics if `r` is not one).
pub fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}
