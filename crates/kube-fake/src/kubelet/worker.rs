//! One pod's life on the fake node, as the kubelet's pod worker: set up its volumes, check
//! each container's image is in the local engine (no registry: absent is `ErrImagePull`,
//! then `ImagePullBackOff`), check the security policy (`runAsNonRoot`), create and start
//! the containers (the first owns the pod's network namespace, the others join it), report
//! status and events (`Pulled`, `Created`, `Started`, `Failed`, `BackOff`, `FailedMount`,
//! `Killing`), notice exits (a short poll of the engine), and when the pod is deleted stop
//! its containers within the grace period, remove them and its files, and finish the
//! deletion. No container is restarted (every restart policy acts as `Never`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::container::StopContainerOptions;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::docker::{self, ConfigError, Plan};
use super::pod_status::{self, Run, Terminated};
use super::volumes::{self, Prepared};
use super::Kubelet;
use crate::events::{EventType, Recorder};
use crate::resources::{PODS, RUNTIME_CLASSES};
use crate::store::{now, timestamp, DeleteOptions};

/// How long a failed step waits before it is tried again.
const RETRY: Duration = Duration::from_secs(10);
/// How often running containers are checked for exits.
const POLL: Duration = Duration::from_millis(500);

struct Worker {
    k: Arc<Kubelet>,
    uid: String,
    ns: String,
    name: String,
    dir: Option<PathBuf>,
    runs: Vec<Run>,
    volumes: Option<HashMap<String, Prepared>>,
    pod_ip: Option<String>,
    start_time: String,
    retry_at: Option<Instant>,
    events: Recorder,
}

fn meta(pod: &Value, f: &str) -> String {
    pod.pointer(&format!("/metadata/{f}"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Docker's timestamp (nanoseconds) as the API's (seconds); `None` for Docker's zero time.
fn docker_time(t: Option<&str>) -> Option<String> {
    let t = t?;
    let parsed = chrono::DateTime::parse_from_rfc3339(t).ok()?;
    if parsed.timestamp() <= 0 {
        return None;
    }
    Some(timestamp(parsed.with_timezone(&chrono::Utc)))
}

/// Run the worker of `pod` until the pod is gone (or the kubelet stops).
pub async fn run(k: Arc<Kubelet>, pod: Arc<Value>, notify: Arc<Notify>) {
    let uid = meta(&pod, "uid");
    let runs = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    Run::new(
                        c.get("name").and_then(Value::as_str).unwrap_or(""),
                        c.get("image").and_then(Value::as_str).unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut w = Worker {
        events: Recorder::new(k.store.clone(), "kubelet", Some(k.opts.node_name.clone())),
        dir: k.pod_dir(&uid),
        k: k.clone(),
        uid: uid.clone(),
        ns: meta(&pod, "namespace"),
        name: meta(&pod, "name"),
        runs,
        volumes: None,
        pod_ip: None,
        start_time: now(),
        retry_at: None,
    };
    let mut first = true;
    loop {
        if k.cancel.is_cancelled() {
            return;
        }
        let pod = match k.store.get(&PODS, &w.ns, &w.name) {
            Ok(p) if meta(&p, "uid") == w.uid => p,
            _ => {
                w.clean_up().await;
                break;
            }
        };
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            w.terminate(&pod).await;
            break;
        }
        let terminal = matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        if !terminal {
            if first {
                w.write_status();
                first = false;
            }
            w.step(&pod).await;
            w.write_status();
        }
        let wait = if w.runs.iter().any(Run::running) {
            POLL
        } else if let Some(at) = w.retry_at {
            at.saturating_duration_since(Instant::now())
        } else {
            Duration::from_secs(60)
        };
        tokio::select! {
            _ = k.cancel.cancelled() => return,
            _ = notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    k.forget_worker(&uid);
}

impl Worker {
    fn container_event(&self, pod: &Value, c: &str, kind: EventType, reason: &str, msg: &str) {
        self.events.record(
            pod,
            Some(&format!("spec.containers{{{c}}}")),
            kind,
            reason,
            msg,
        );
    }

    fn write_status(&self) {
        let stamp = now();
        let uid = self.uid.clone();
        let host = self.k.gateway.to_string();
        self.k.store.modify(&PODS, &self.ns, &self.name, |p| {
            if meta(p, "uid") != uid {
                return;
            }
            pod_status::apply(
                p,
                &self.runs,
                self.pod_ip.as_deref(),
                &host,
                &self.start_time,
                &stamp,
            );
        });
    }

    /// Move the pod on: volumes, then each container not started yet, then exits.
    async fn step(&mut self, pod: &Value) {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            self.poll().await;
            return;
        }
        self.retry_at = None;
        if self.volumes.is_none() {
            let Some(dir) = self.dir.clone() else { return };
            match volumes::prepare(
                &self.k.store,
                &self.k.docker,
                &self.k.opts.network,
                pod,
                &dir,
            )
            .await
            {
                Ok(v) => self.volumes = Some(v),
                Err(e) => {
                    self.events.record(
                        pod,
                        None,
                        EventType::Warning,
                        "FailedMount",
                        &e.event_message(),
                    );
                    self.retry_at = Some(Instant::now() + RETRY);
                    return;
                }
            }
        }
        for i in 0..self.runs.len() {
            if self.runs[i].id.is_some() || self.runs[i].terminated.is_some() {
                continue;
            }
            // The first container holds the pod's network: the others wait for it.
            if i > 0 && self.runs[0].id.is_none() {
                break;
            }
            self.start(pod, i).await;
        }
        self.poll().await;
    }

    fn retry_in(&mut self, d: Duration) {
        let at = Instant::now() + d;
        self.retry_at = Some(self.retry_at.map_or(at, |t| t.min(at)));
    }

    fn config_error(&mut self, pod: &Value, i: usize, msg: &str) {
        let name = self.runs[i].name.clone();
        self.container_event(
            pod,
            &name,
            EventType::Warning,
            "Failed",
            &format!("Error: {msg}"),
        );
        self.runs[i].waiting = ("CreateContainerConfigError".into(), Some(msg.to_string()));
        self.retry_in(RETRY);
    }

    /// Create and start container `i` (or say why not).
    async fn start(&mut self, pod: &Value, i: usize) {
        let spec = pod
            .pointer(&format!("/spec/containers/{i}"))
            .cloned()
            .unwrap_or(Value::Null);
        let name = self.runs[i].name.clone();
        let image = self.runs[i].image.clone();
        let img = match docker::image(&self.k.docker, &image).await {
            Ok(img) => img,
            Err(e) => {
                self.container_event(
                    pod,
                    &name,
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {e}"),
                );
                self.runs[i].waiting = ("CreateContainerError".into(), Some(e.to_string()));
                self.retry_in(RETRY);
                return;
            }
        };
        let Some(img) = img else {
            let failure = format!(
                "Failed to pull image \"{image}\": rpc error: code = NotFound desc = image \
                 \"{image}\" not found: kube-fake has no registry, the image must be in the \
                 local Docker engine"
            );
            if self.runs[i].waiting.0 == "ErrImagePull" {
                self.container_event(
                    pod,
                    &name,
                    EventType::Normal,
                    "BackOff",
                    &format!("Back-off pulling image \"{image}\""),
                );
                self.container_event(
                    pod,
                    &name,
                    EventType::Warning,
                    "Failed",
                    "Error: ImagePullBackOff",
                );
                self.runs[i].waiting = (
                    "ImagePullBackOff".into(),
                    Some(format!(
                        "Back-off pulling image \"{image}\": ErrImagePull: {failure}"
                    )),
                );
                self.retry_in(RETRY);
            } else {
                self.container_event(
                    pod,
                    &name,
                    EventType::Normal,
                    "Pulling",
                    &format!("Pulling image \"{image}\""),
                );
                self.container_event(pod, &name, EventType::Warning, "Failed", &failure);
                self.container_event(
                    pod,
                    &name,
                    EventType::Warning,
                    "Failed",
                    "Error: ErrImagePull",
                );
                self.runs[i].waiting = ("ErrImagePull".into(), Some(failure));
                self.retry_in(Duration::from_secs(1));
            }
            return;
        };
        self.runs[i].image_id = img.id.clone();
        self.container_event(
            pod,
            &name,
            EventType::Normal,
            "Pulled",
            &format!("Container image \"{image}\" already present on machine"),
        );
        let sec = docker::security(pod, &spec);
        let pod_desc = format!("{}_{}({})", self.name, self.ns, self.uid);
        if let Err(ConfigError(msg)) = docker::check_non_root(&sec, &img.user, &pod_desc, &name) {
            self.config_error(pod, i, &msg);
            return;
        }
        let Some(vols) = &self.volumes else { return };
        let mounts = match volumes::mounts(&spec, vols) {
            Ok(m) => m,
            Err(msg) => {
                self.config_error(pod, i, &msg);
                return;
            }
        };
        let runtime = pod
            .pointer("/spec/runtimeClassName")
            .and_then(Value::as_str)
            .and_then(|rc| self.k.store.get(&RUNTIME_CLASSES, "", rc).ok())
            .and_then(|rc| rc.get("handler").and_then(Value::as_str).map(String::from))
            .filter(|h| self.k.runtimes.contains(h));
        let join = if i == 0 {
            None
        } else {
            self.runs[0].id.clone()
        };
        let plan = Plan {
            pod,
            container: &spec,
            image_user: &img.user,
            network: &self.k.opts.network,
            join: join.as_deref(),
            mounts,
            runtime,
            labels: HashMap::from([
                (docker::LABEL_POD_NAME.to_string(), self.name.clone()),
                (docker::LABEL_POD_NAMESPACE.to_string(), self.ns.clone()),
                (docker::LABEL_POD_UID.to_string(), self.uid.clone()),
            ]),
        };
        let config = match docker::container_config(&plan) {
            Ok(c) => c,
            Err(ConfigError(msg)) => {
                self.config_error(pod, i, &msg);
                return;
            }
        };
        let cname = docker::container_name(&name, &self.name, &self.ns, &self.uid);
        // A container of an earlier attempt with this name: gone first.
        if let Err(e) = docker::remove(&self.k.docker, &cname).await {
            tracing::debug!("{e}");
        }
        let id = match docker::create(&self.k.docker, &cname, config).await {
            Ok(id) => id,
            Err(e) => {
                let msg = e.source.to_string();
                self.container_event(
                    pod,
                    &name,
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {msg}"),
                );
                self.runs[i].waiting = ("CreateContainerError".into(), Some(msg));
                self.retry_in(RETRY);
                return;
            }
        };
        self.runs[i].id = Some(id.clone());
        self.container_event(
            pod,
            &name,
            EventType::Normal,
            "Created",
            &format!("Created container: {name}"),
        );
        if let Err(e) = self
            .k
            .docker
            .start_container(
                &id,
                None::<bollard::container::StartContainerOptions<String>>,
            )
            .await
        {
            let msg = format!("failed to start container \"{id}\": {e}");
            self.container_event(
                pod,
                &name,
                EventType::Warning,
                "Failed",
                &format!("Error: {msg}"),
            );
            let t = now();
            self.runs[i].terminated = Some(Terminated {
                exit_code: 128,
                reason: "StartError".into(),
                message: Some(msg),
                started_at: t.clone(),
                finished_at: t,
            });
            return;
        }
        self.container_event(
            pod,
            &name,
            EventType::Normal,
            "Started",
            &format!("Started container {name}"),
        );
        match self.k.docker.inspect_container(&id, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                self.runs[i].started_at =
                    Some(docker_time(state.started_at.as_deref()).unwrap_or_else(now));
                let host_network =
                    pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true);
                if i == 0 && host_network {
                    self.pod_ip = Some(self.k.gateway.to_string());
                } else if i == 0 {
                    self.pod_ip = info
                        .network_settings
                        .and_then(|n| n.networks)
                        .and_then(|n| n.get(&self.k.opts.network).cloned())
                        .and_then(|e| e.ip_address)
                        .filter(|ip| !ip.is_empty());
                }
            }
            Err(e) => {
                tracing::warn!("inspecting container {id}: {e}");
                self.runs[i].started_at = Some(now());
            }
        }
    }

    /// Notice the containers that stopped.
    async fn poll(&mut self) {
        for i in 0..self.runs.len() {
            let Some(id) = self.runs[i].id.clone() else {
                continue;
            };
            if self.runs[i].terminated.is_some() {
                continue;
            }
            match self.k.docker.inspect_container(&id, None).await {
                Ok(info) => {
                    let s = info.state.unwrap_or_default();
                    if s.running == Some(true) {
                        continue;
                    }
                    let code = s.exit_code.unwrap_or(0);
                    let reason = if s.oom_killed == Some(true) {
                        "OOMKilled"
                    } else if code == 0 {
                        "Completed"
                    } else {
                        "Error"
                    };
                    let started = docker_time(s.started_at.as_deref())
                        .or_else(|| self.runs[i].started_at.clone())
                        .unwrap_or_else(now);
                    self.runs[i].started_at.get_or_insert(started.clone());
                    self.runs[i].terminated = Some(Terminated {
                        exit_code: code,
                        reason: reason.into(),
                        message: s.error.filter(|e| !e.is_empty()),
                        started_at: started,
                        finished_at: docker_time(s.finished_at.as_deref()).unwrap_or_else(now),
                    });
                }
                Err(e) if docker::is_not_found(&e) => {
                    let t = now();
                    self.runs[i].terminated = Some(Terminated {
                        exit_code: 137,
                        reason: "ContainerStatusUnknown".into(),
                        message: Some(
                            "The container could not be located when the pod was terminated".into(),
                        ),
                        started_at: self.runs[i].started_at.clone().unwrap_or_else(|| t.clone()),
                        finished_at: t,
                    });
                }
                Err(e) => tracing::warn!("inspecting container {id}: {e}"),
            }
        }
    }

    /// The pod is being deleted: stop its containers within the grace period, remove them,
    /// and finish the deletion.
    async fn terminate(&mut self, pod: &Value) {
        let grace = pod
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
            .max(0);
        self.poll().await;
        let running: Vec<(String, String)> = self
            .runs
            .iter()
            .filter(|r| r.running())
            .filter_map(|r| r.id.clone().map(|id| (r.name.clone(), id)))
            .collect();
        for (name, _) in &running {
            self.container_event(
                pod,
                name,
                EventType::Normal,
                "Killing",
                &format!("Stopping container {name}"),
            );
        }
        let docker = &self.k.docker;
        let stops = running.iter().map(|(_, id)| async move {
            match docker
                .stop_container(id, Some(StopContainerOptions { t: grace }))
                .await
            {
                Ok(()) => {}
                Err(e) if docker::is_not_found(&e) => {}
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 304, ..
                }) => {}
                Err(e) => tracing::warn!("stopping container {id}: {e}"),
            }
        });
        futures::future::join_all(stops).await;
        self.poll().await;
        self.write_status();
        self.clean_up().await;
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            precondition_uid: Some(self.uid.clone()),
            ..Default::default()
        };
        if let Err(e) = self.k.store.delete(&PODS, &self.ns, &self.name, &opts) {
            tracing::debug!(
                "finishing the deletion of pod {}/{}: {e}",
                self.ns,
                self.name
            );
        }
    }

    /// Remove the pod's containers and files.
    async fn clean_up(&mut self) {
        let ids: Vec<String> = match docker::list_ours(&self.k.docker, &self.k.opts.network).await {
            Ok(cs) => cs
                .into_iter()
                .filter(|c| {
                    c.labels
                        .as_ref()
                        .and_then(|l| l.get(docker::LABEL_POD_UID))
                        .is_some_and(|u| *u == self.uid)
                })
                .filter_map(|c| c.id)
                .collect(),
            Err(_) => self.runs.iter().filter_map(|r| r.id.clone()).collect(),
        };
        for id in ids {
            if let Err(e) = docker::remove(&self.k.docker, &id).await {
                tracing::warn!("{e}");
            }
        }
        if let Some(dir) = &self.dir {
            if dir.exists() {
                if let Err(e) = std::fs::remove_dir_all(dir) {
                    tracing::warn!("removing {}: {e}", dir.display());
                }
            }
        }
    }
}
