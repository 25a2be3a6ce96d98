//! The connection to the cluster (kube-rs) and the calls both pod kinds make: homes, pods and
//! their Secrets, watching a pod until it runs (with its events as progress), stopping, logs,
//! listing by label. The server backend ([`super::KubernetesBackend`]) and the kernel runtime
//! ([`crate::gateway::pods`]) share one [`Cluster`].
//!
//! Waiting is done with watches, never polling loops: kube-runtime's `watcher` on the pod (by
//! name) and on its events (by the pod's uid), which re-lists after `410 Gone` and resumes from
//! the last resourceVersion otherwise.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::Client;
use thiserror::Error;
use tokio::sync::OnceCell;

use super::progress::{self, Verdict};
use crate::config::KubernetesSpawner;
use crate::docker::{LABEL_HUB, LABEL_KIND};

/// What went wrong talking to the cluster.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// No API server answers (or no kubeconfig): retried, like a Docker engine that is down.
    #[error("the Kubernetes API server is not reachable ({0}); check spawner.kubernetes.kubeconfig and that the cluster runs — Orrery retries")]
    Unreachable(String),
    /// The API server answered no.
    #[error("{what}: {message} ({code}{reason}){fix}")]
    Api {
        what: String,
        code: u16,
        reason: String,
        message: String,
        fix: &'static str,
    },
    /// A pod that will not run, or another failure with its own words.
    #[error("{0}")]
    Failed(String),
}

impl ClusterError {
    fn call(what: impl Into<String>, e: kube::Error) -> ClusterError {
        match e {
            kube::Error::Api(s) => {
                let fix = match s.code {
                    403 => ": give Orrery's account the rules in packaging/kubernetes/rbac.yaml",
                    _ if s.message.contains("namespaces") && s.code == 404 => {
                        ": create it (kubectl create namespace NAME) or set spawner.kubernetes.namespace"
                    }
                    _ => "",
                };
                ClusterError::Api {
                    what: what.into(),
                    code: s.code,
                    reason: if s.reason.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", s.reason)
                    },
                    message: s.message.clone(),
                    fix,
                }
            }
            other => ClusterError::Unreachable(format!("{}: {other}", what.into())),
        }
    }
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

pub struct Cluster {
    settings: KubernetesSpawner,
    /// Made on first use, so an API server that is down at startup is retried, not fatal.
    client: OnceCell<Client>,
    /// This hub's instance id: only objects labelled with it are listed or touched.
    instance: String,
}

impl Cluster {
    pub fn new(settings: &KubernetesSpawner, instance: &str) -> Cluster {
        Cluster {
            settings: settings.clone(),
            client: OnceCell::new(),
            instance: instance.to_string(),
        }
    }

    /// A cluster behind a client made elsewhere (tests: a tower-test mock service).
    pub fn with_client(settings: &KubernetesSpawner, instance: &str, client: Client) -> Cluster {
        Cluster {
            settings: settings.clone(),
            client: OnceCell::new_with(Some(client)),
            instance: instance.to_string(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.settings.namespace
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn settings(&self) -> &KubernetesSpawner {
        &self.settings
    }

    pub async fn client(&self) -> Result<&Client, ClusterError> {
        self.client
            .get_or_try_init(|| async {
                let config = connect_config(&self.settings).await?;
                Client::try_from(config).map_err(|e| ClusterError::Unreachable(e.to_string()))
            })
            .await
    }

    async fn api<K>(&self) -> Result<Api<K>, ClusterError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Ok(Api::namespaced(
            self.client().await?.clone(),
            &self.settings.namespace,
        ))
    }

    /// The selector of this hub's objects of `kind`.
    pub fn selector(&self, kind: &str) -> String {
        format!(
            "{LABEL_KIND}={kind},{LABEL_HUB}={}",
            super::objects::label_value(&self.instance)
        )
    }

    /// Whether Orrery may work in the namespace: a cheap list, whose failure says what to fix.
    pub async fn check_access(&self) -> Result<(), ClusterError> {
        let pods: Api<Pod> = self.api().await?;
        pods.list(
            &ListParams::default()
                .labels(&self.selector("notebook"))
                .limit(1),
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            ClusterError::call(format!("listing pods in namespace {}", self.namespace()), e)
        })
    }

    /// Create the isolation policy, or bring an existing one to what it must say.
    pub async fn apply_policy(&self, policy: NetworkPolicy) -> Result<(), ClusterError> {
        let api: Api<NetworkPolicy> = self.api().await?;
        let name = policy.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), &policy).await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(409) => {
                let mut current = api
                    .get(&name)
                    .await
                    .map_err(|e| ClusterError::call(format!("reading NetworkPolicy {name}"), e))?;
                if current.spec == policy.spec {
                    return Ok(());
                }
                current.spec = policy.spec;
                api.replace(&name, &PostParams::default(), &current)
                    .await
                    .map(|_| ())
                    .map_err(|e| ClusterError::call(format!("updating NetworkPolicy {name}"), e))
            }
            Err(e) => Err(ClusterError::call(
                format!("creating NetworkPolicy {name}"),
                e,
            )),
        }
    }

    /// The user's home PVC, made if it does not exist (an existing one is never changed).
    pub async fn ensure_home(&self, pvc: PersistentVolumeClaim) -> Result<(), ClusterError> {
        let api: Api<PersistentVolumeClaim> = self.api().await?;
        let name = pvc.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), &pvc).await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(409) => Ok(()),
            Err(e) => Err(ClusterError::call(format!("creating home PVC {name}"), e)),
        }
    }

    /// Delete a PVC; one already gone is fine. Its answer says which.
    pub async fn delete_pvc(&self, name: &str) -> Result<bool, ClusterError> {
        let api: Api<PersistentVolumeClaim> = self.api().await?;
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some(404) => Ok(false),
            Err(e) => Err(ClusterError::call(format!("deleting PVC {name}"), e)),
        }
    }

    pub async fn create_secret(&self, secret: Secret) -> Result<(), ClusterError> {
        let api: Api<Secret> = self.api().await?;
        let name = secret.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(409) => {
                // A leftover of a start that failed half-way: ours (same name, same labels).
                api.replace(&name, &PostParams::default(), &secret)
                    .await
                    .map(|_| ())
                    .map_err(|e| ClusterError::call(format!("replacing Secret {name}"), e))
            }
            Err(e) => Err(ClusterError::call(format!("creating Secret {name}"), e)),
        }
    }

    pub async fn delete_secret(&self, name: &str) {
        if let Ok(api) = self.api::<Secret>().await {
            if let Err(e) = api.delete(name, &DeleteParams::default()).await {
                if code(&e) != Some(404) {
                    tracing::warn!(secret = name, error = %e, "cannot delete a kernel's Secret");
                }
            }
        }
    }

    pub async fn pod(&self, name: &str) -> Result<Option<Pod>, ClusterError> {
        let api: Api<Pod> = self.api().await?;
        api.get_opt(name)
            .await
            .map_err(|e| ClusterError::call(format!("reading pod {name}"), e))
    }

    /// Create `pod`. One of the same name that this hub made (a leftover, or one still
    /// terminating after a stop) is deleted and waited for first; one another hub or a person
    /// made is refused.
    pub async fn create_pod(
        &self,
        pod: Pod,
        deadline: tokio::time::Instant,
    ) -> Result<Pod, ClusterError> {
        let api: Api<Pod> = self.api().await?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Some(existing) = self.pod(&name).await? {
            let owner = existing
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_HUB).cloned());
            if owner.as_deref() != Some(super::objects::label_value(&self.instance).as_str()) {
                return Err(ClusterError::Failed(format!(
                    "a pod named {name} already exists in namespace {} and was not made by this Orrery; remove it (kubectl delete pod {name})",
                    self.namespace()
                )));
            }
            self.delete_pod(&name, Some(0)).await?;
            self.wait_gone(&name, deadline).await?;
        }
        api.create(&PostParams::default(), &pod)
            .await
            .map_err(|e| ClusterError::call(format!("creating pod {name}"), e))
    }

    /// Ask for a pod's deletion (`grace` seconds to stop; `None`: the pod's own); one already
    /// gone is fine. Does not wait.
    pub async fn delete_pod(&self, name: &str, grace: Option<u32>) -> Result<(), ClusterError> {
        let api: Api<Pod> = self.api().await?;
        let dp = DeleteParams {
            grace_period_seconds: grace,
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(404) => Ok(()),
            Err(e) => Err(ClusterError::call(format!("deleting pod {name}"), e)),
        }
    }

    /// Wait until pod `name` no longer exists.
    pub async fn wait_gone(
        &self,
        name: &str,
        deadline: tokio::time::Instant,
    ) -> Result<(), ClusterError> {
        let api: Api<Pod> = self.api().await?;
        let stream = watcher(
            api,
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut present = false;
        loop {
            let next = tokio::time::timeout_at(deadline, stream.next()).await;
            match next {
                Err(_) => {
                    return Err(ClusterError::Failed(format!(
                        "pod {name} is still being deleted; try again shortly"
                    )))
                }
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => tracing::debug!(pod = name, error = %e, "watch error"),
                Ok(Some(Ok(ev))) => match ev {
                    watcher::Event::Init => present = false,
                    watcher::Event::InitApply(_) => present = true,
                    watcher::Event::InitDone if !present => return Ok(()),
                    watcher::Event::InitDone | watcher::Event::Apply(_) => {}
                    watcher::Event::Delete(_) => return Ok(()),
                },
            }
        }
    }

    /// Watch the new pod until it runs (its IP), fails, or `deadline` passes; its events and
    /// status changes go to `progress` as they come. A pod that will not run is deleted.
    pub async fn wait_running(
        &self,
        pod: &Pod,
        deadline: tokio::time::Instant,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<String, ClusterError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let pods: Api<Pod> = self.api().await?;
        let events: Api<Event> = self.api().await?;
        let pod_stream = watcher(
            pods,
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .default_backoff()
        .map_ok(|e| Seen::Pod(Box::new(e)));
        let event_stream = watcher(
            events,
            watcher::Config::default().fields(&format!("involvedObject.uid={uid}")),
        )
        .default_backoff()
        .map_ok(|e| Seen::Event(Box::new(e)));
        let mut merged = std::pin::pin!(futures::stream::select(pod_stream, event_stream));
        let mut shown = std::collections::HashSet::new();
        let mut last_warning: Option<String> = None;
        let mut last_status: Option<String> = None;
        let verdict = loop {
            let next = match tokio::time::timeout_at(deadline, merged.next()).await {
                Err(_) => {
                    let why = last_warning
                        .clone()
                        .or(last_status.clone())
                        .map(|w| format!(" (last: {w})"))
                        .unwrap_or_default();
                    break Err(ClusterError::Failed(format!(
                        "pod {name} was not running within spawner.start_timeout{why}"
                    )));
                }
                Ok(None) => {
                    break Err(ClusterError::Failed(format!(
                        "the watch of pod {name} ended"
                    )))
                }
                Ok(Some(n)) => n,
            };
            let seen = match next {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(pod = %name, error = %e, "watch error; the watcher resumes");
                    continue;
                }
            };
            match seen {
                Seen::Event(event) => {
                    let (watcher::Event::Apply(e) | watcher::Event::InitApply(e)) = *event else {
                        continue;
                    };
                    // An event counted again (`count`) is the same line: shown once.
                    let key = (e.metadata.uid.clone(), e.reason.clone(), e.message.clone());
                    if shown.insert(key) {
                        let line = progress::event_line(&e);
                        if progress::is_warning(&e) {
                            last_warning = Some(line.clone());
                        }
                        progress(line);
                    }
                }
                Seen::Pod(event) => {
                    let p = match *event {
                        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => p,
                        watcher::Event::Delete(p)
                            if p.metadata.uid.as_deref() == Some(uid.as_str()) =>
                        {
                            break Err(ClusterError::Failed(format!(
                                "pod {name} was deleted while it started"
                            )));
                        }
                        _ => continue,
                    };
                    if p.metadata.uid.as_deref() != Some(uid.as_str()) {
                        continue;
                    }
                    match progress::judge(&p) {
                        Verdict::Running(ip) => break Ok(ip),
                        Verdict::Failed(why) => {
                            break Err(ClusterError::Failed(self.with_logs(&name, why).await))
                        }
                        Verdict::Waiting(Some(line)) => {
                            if last_status.as_ref() != Some(&line) {
                                progress(line.clone());
                                last_status = Some(line);
                            }
                        }
                        Verdict::Waiting(None) => {}
                    }
                }
            }
        };
        if verdict.is_err() {
            let _ = self.delete_pod(&name, Some(0)).await;
        }
        verdict
    }

    /// `why`, with the pod's last log lines if it wrote any.
    pub async fn with_logs(&self, name: &str, why: String) -> String {
        why + &crate::spawner::log_note(&self.logs(name, 20).await)
    }

    /// The pod's last `lines` log lines ("" when there are none or they cannot be read).
    pub async fn logs(&self, name: &str, lines: i64) -> String {
        let Ok(api) = self.api::<Pod>().await else {
            return String::new();
        };
        let lp = LogParams {
            tail_lines: Some(lines),
            ..Default::default()
        };
        match tokio::time::timeout(Duration::from_secs(5), api.logs(name, &lp)).await {
            Ok(Ok(text)) => text.trim_end().to_string(),
            _ => String::new(),
        }
    }

    /// Remove everything this hub made in the namespace (an uninstall): pods, kernel Secrets,
    /// the isolation policy and, with `homes`, the home PVCs. Says what it removed.
    pub async fn remove_all(&self, homes: bool) -> Result<Vec<String>, ClusterError> {
        let mut done = Vec::new();
        for kind in ["notebook", "kernel"] {
            for pod in self.list(kind).await? {
                let name = pod.metadata.name.unwrap_or_default();
                self.delete_pod(&name, Some(0)).await?;
                if kind == "kernel" {
                    self.delete_secret(&name).await;
                }
                done.push(format!("removed {kind} pod {name}"));
            }
        }
        let secrets: Api<Secret> = self.api().await?;
        let left = secrets
            .list(&ListParams::default().labels(&self.selector("kernel")))
            .await
            .map_err(|e| ClusterError::call("listing kernel Secrets", e))?;
        for s in left.items {
            let name = s.metadata.name.unwrap_or_default();
            self.delete_secret(&name).await;
            done.push(format!("removed Secret {name}"));
        }
        let policies: Api<NetworkPolicy> = self.api().await?;
        let name = format!("orrery-isolation-{}", self.instance);
        match policies.delete(&name, &DeleteParams::default()).await {
            Ok(_) => done.push(format!("removed NetworkPolicy {name}")),
            Err(e) if code(&e) == Some(404) => {}
            Err(e) => {
                return Err(ClusterError::call(
                    format!("deleting NetworkPolicy {name}"),
                    e,
                ))
            }
        }
        if homes {
            let pvcs: Api<PersistentVolumeClaim> = self.api().await?;
            let list = pvcs
                .list(&ListParams::default().labels(&self.selector("home")))
                .await
                .map_err(|e| ClusterError::call("listing home PVCs", e))?;
            for pvc in list.items {
                let name = pvc.metadata.name.unwrap_or_default();
                self.delete_pvc(&name).await?;
                done.push(format!("removed home PVC {name}"));
            }
        } else {
            done.push("home PVCs kept (--homes removes them)".into());
        }
        Ok(done)
    }

    /// This hub's pods of `kind` (`notebook`, `kernel`).
    pub async fn list(&self, kind: &str) -> Result<Vec<Pod>, ClusterError> {
        let api: Api<Pod> = self.api().await?;
        api.list(&ListParams::default().labels(&self.selector(kind)))
            .await
            .map(|l| l.items)
            .map_err(|e| ClusterError::call(format!("listing {kind} pods"), e))
    }
}

/// What the merged watches saw (boxed: the objects are large).
enum Seen {
    Pod(Box<watcher::Event<Pod>>),
    Event(Box<watcher::Event<Event>>),
}

/// The client configuration: the kubeconfig (and context) named, else kube's own inference
/// (`$KUBECONFIG`, `~/.kube/config`, the in-cluster service account).
async fn connect_config(s: &KubernetesSpawner) -> Result<kube::Config, ClusterError> {
    let options = kube::config::KubeConfigOptions {
        context: (!s.context.is_empty()).then(|| s.context.clone()),
        ..Default::default()
    };
    let unreachable = |e: String| ClusterError::Unreachable(e);
    if !s.kubeconfig.is_empty() {
        let kc = kube::config::Kubeconfig::read_from(&s.kubeconfig).map_err(|e| {
            unreachable(format!(
                "cannot read spawner.kubernetes.kubeconfig {}: {e}",
                s.kubeconfig
            ))
        })?;
        return kube::Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|e| unreachable(format!("kubeconfig {}: {e}", s.kubeconfig)));
    }
    if options.context.is_some() {
        return kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| unreachable(e.to_string()));
    }
    kube::Config::infer()
        .await
        .map_err(|e| unreachable(format!("no kubeconfig and not in a cluster: {e}")))
}
