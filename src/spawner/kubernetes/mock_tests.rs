//! Request-shape tests: the Kubernetes backend over a `kube::Client` whose transport is a
//! tower-test mock. Each test answers the calls as an API server would and asserts the exact
//! calls and objects the backend sends (the security and GPU fields one by one), through a
//! start that goes pending → running → stop, a pod that cannot be scheduled, an image that
//! cannot be pulled, and reconcile after a restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Request, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::cluster::Cluster;
use super::KubernetesBackend;
use crate::config::{Config, KubernetesGpus};
use crate::spawner::{Backend, PollStatus, SpawnSpec};

/// One call the backend made.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    body: Value,
}

impl Call {
    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
    fn watch(&self) -> bool {
        self.query.contains("watch=true")
    }
    fn query_has(&self, part: &str) -> bool {
        urlencoding::decode(&self.query)
            .map(|q| q.contains(part))
            .unwrap_or(false)
    }
}

/// An answer: status and JSON body, or `None` to leave the call open (a watch with nothing
/// more to say).
type Answer = Option<(u16, Value)>;

/// Serve the mock's calls with `answer` until the test ends; every call is recorded.
fn serve(
    mut handle: tower_test::mock::Handle<Request<kube::client::Body>, Response<Full<Bytes>>>,
    answer: impl Fn(&Call) -> Answer + Send + 'static,
) -> Arc<Mutex<Vec<Call>>> {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let call = Call {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or("").to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            seen.lock().unwrap().push(call.clone());
            match answer(&call) {
                Some((status, body)) => {
                    let text = if body.is_string() {
                        body.as_str().unwrap().to_string()
                    } else {
                        body.to_string()
                    };
                    send.send_response(
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(text)))
                            .unwrap(),
                    );
                }
                None => open.push(send),
            }
        }
    });
    calls
}

fn not_found(what: &str, name: &str) -> Answer {
    Some((
        404,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("{what} \"{name}\" not found"), "reason": "NotFound",
               "details": {"name": name, "kind": what}, "code": 404}),
    ))
}

fn list(kind: &str, items: Vec<Value>) -> Answer {
    Some((
        200,
        json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "10"}, "items": items}),
    ))
}

/// A watch that says `events` (`(type, object)`) and ends.
fn watch_body(events: &[(&str, Value)]) -> Answer {
    let lines: Vec<String> = events
        .iter()
        .map(|(t, o)| json!({"type": t, "object": o}).to_string())
        .collect();
    Some((200, Value::String(lines.join("\n") + "\n")))
}

fn config(gpus: KubernetesGpus) -> Config {
    let mut cfg = Config::default();
    cfg.spawner.backend = crate::config::BackendKind::Kubernetes;
    cfg.spawner.kubernetes.namespace = "classes".into();
    cfg.spawner.kubernetes.hub_address = "10.0.0.5".into();
    cfg.spawner.kubernetes.gpus = gpus;
    cfg.spawner.kubernetes.image_pull_secrets = vec!["registry-creds".into()];
    cfg.spawner.docker.image = "registry.example/notebook:1".into();
    cfg.spawner.start_timeout = crate::config::Duration::from_secs(3);
    cfg
}

fn backend(
    cfg: &Config,
    answer: impl Fn(&Call) -> Answer + Send + 'static,
) -> (KubernetesBackend, Arc<Mutex<Vec<Call>>>) {
    let (service, handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    let client = kube::Client::new(service, "classes");
    let calls = serve(handle, answer);
    let cluster = Cluster::with_client(&cfg.spawner.kubernetes, "inst-1", client);
    (
        KubernetesBackend::with_cluster(cfg, Arc::new(cluster)),
        calls,
    )
}

fn spec(
    cfg: &Config,
    gpus: Vec<String>,
    gpu_count: u32,
) -> (SpawnSpec, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        SpawnSpec {
            user: "alice".into(),
            server_name: String::new(),
            env: [("JUPYTERHUB_API_TOKEN".to_string(), "t0k".to_string())].into(),
            prefix: "/user/alice/".into(),
            user_options: json!({}),
            image: None,
            volumes: Vec::new(),
            memory_limit: Some(1 << 30),
            cpu_limit: Some(0.5),
            gpus,
            gpu_count,
            derived_images: Default::default(),
            progress: tx,
            config: Arc::new(cfg.clone()),
        },
        rx,
    )
}

/// The pod as the API server returns it from create, with status `status`.
fn served_pod(sent: &Value, status: Value) -> Value {
    let mut pod = sent.clone();
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    pod["metadata"]["uid"] = json!("uid-1");
    pod["metadata"]["namespace"] = json!("classes");
    pod["metadata"]["resourceVersion"] = json!("11");
    pod["status"] = status;
    pod
}

fn event(reason: &str, message: &str, warning: bool) -> Value {
    serde_json::to_value(Event {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(format!("orrery-alice.{reason}")),
            uid: Some(format!("ev-{reason}")),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".into()),
            name: Some("orrery-alice".into()),
            uid: Some("uid-1".into()),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        ..Default::default()
    })
    .unwrap()
}

const PODS: &str = "/api/v1/namespaces/classes/pods";
const POD: &str = "/api/v1/namespaces/classes/pods/orrery-alice";

/// Answers for the home PVC, the first look for a leftover pod, the pod's creation, its
/// events and its deletion; the pod watch and list say what `pod_states` say.
fn api(pod_states: Vec<Value>, events: Vec<Value>) -> impl Fn(&Call) -> Answer + Send + 'static {
    let created: Arc<Mutex<Option<Value>>> = Arc::default();
    move |c: &Call| {
        if c.is("POST", "/api/v1/namespaces/classes/persistentvolumeclaims") {
            return Some((201, c.body.clone()));
        }
        if c.is("GET", POD) {
            return not_found("pods", "orrery-alice");
        }
        if c.is("POST", PODS) {
            let pod = served_pod(&c.body, json!({"phase": "Pending"}));
            *created.lock().unwrap() = Some(pod.clone());
            return Some((201, pod));
        }
        if c.is("DELETE", POD) {
            return Some((200, created.lock().unwrap().clone().unwrap_or(Value::Null)));
        }
        if c.is("GET", &format!("{POD}/log")) {
            return Some((200, Value::String("Traceback: the server broke\n".into())));
        }
        let base = created.lock().unwrap().clone()?;
        let states: Vec<Value> = pod_states
            .iter()
            .map(|s| {
                let mut p = base.clone();
                p["status"] = s.clone();
                p
            })
            .collect();
        if c.is("GET", PODS) && !c.watch() {
            return list(
                "PodList",
                vec![states.first().cloned().unwrap_or(base.clone())],
            );
        }
        if c.is("GET", PODS) && c.watch() {
            if c.query.contains("resourceVersion=10") {
                let evs: Vec<(&str, Value)> = states
                    .iter()
                    .skip(1)
                    .map(|p| ("MODIFIED", p.clone()))
                    .collect();
                return watch_body(&evs);
            }
            return None;
        }
        if c.path == "/api/v1/namespaces/classes/events" && !c.watch() {
            return list("EventList", events.clone());
        }
        if c.path == "/api/v1/namespaces/classes/events" {
            return None;
        }
        Some((
            500,
            json!({"kind": "Status", "code": 500, "message": format!("unexpected {} {}", c.method, c.path)}),
        ))
    }
}

fn running() -> Value {
    json!({"phase": "Running", "podIP": "10.42.0.7",
           "containerStatuses": [{"name": "notebook", "image": "registry.example/notebook:1", "imageID": "", "ready": true, "restartCount": 0,
                                  "state": {"running": {"startedAt": "2026-12-07T10:00:00Z"}}}]})
}

fn waiting(reason: &str, message: &str) -> Value {
    json!({"phase": "Pending",
           "containerStatuses": [{"name": "notebook", "image": "registry.example/notebook:1", "imageID": "", "ready": false, "restartCount": 0,
                                  "state": {"waiting": {"reason": reason, "message": message}}}]})
}

fn sent_pod(calls: &[Call]) -> Pod {
    let c = calls
        .iter()
        .find(|c| c.is("POST", PODS))
        .expect("a pod was created");
    serde_json::from_value(c.body.clone()).unwrap()
}

#[tokio::test]
async fn a_start_goes_pending_then_running_and_a_stop_deletes_the_pod_not_the_home() {
    let cfg = config(KubernetesGpus::Node);
    let (b, calls) = backend(
        &cfg,
        api(
            vec![
                json!({"phase": "Pending"}),
                waiting("ContainerCreating", ""),
                running(),
            ],
            vec![event(
                "Scheduled",
                "Successfully assigned classes/orrery-alice to node-1",
                false,
            )],
        ),
    );
    let (spec, mut progress) = spec(&cfg, vec!["GPU-aaaa".into()], 1);
    let started = b.start(spec).await.expect("the pod runs");
    assert_eq!(started.url, "http://10.42.0.7:8888");
    assert_eq!(started.state["pod"], "orrery-alice");

    let log = calls;
    let calls = log.lock().unwrap().clone();
    // The home first, then a look for a leftover, then the pod.
    let order: Vec<(String, String)> = calls
        .iter()
        .filter(|c| !(c.path.ends_with("/events") || (c.path == PODS && c.method == "GET")))
        .map(|c| (c.method.clone(), c.path.clone()))
        .collect();
    assert_eq!(
        order[..3],
        [
            (
                "POST".to_string(),
                "/api/v1/namespaces/classes/persistentvolumeclaims".to_string()
            ),
            ("GET".to_string(), POD.to_string()),
            ("POST".to_string(), PODS.to_string()),
        ]
    );
    let pvc = &calls[0].body;
    assert_eq!(pvc["metadata"]["name"], "orrery-home-alice");
    assert_eq!(pvc["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "10Gi");

    let pod = sent_pod(&calls);
    let spec = pod.spec.as_ref().unwrap();
    let psc = spec.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        (psc.run_as_user, psc.run_as_group, psc.fs_group),
        (Some(1000), Some(100), Some(100))
    );
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert_eq!(
        spec.runtime_class_name.as_deref(),
        Some("nvidia"),
        "a leased GPU"
    );
    assert_eq!(
        spec.image_pull_secrets.as_ref().unwrap()[0].name,
        "registry-creds"
    );
    let c = &spec.containers[0];
    assert_eq!(c.image.as_deref(), Some("registry.example/notebook:1"));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop,
        Some(vec!["ALL".to_string()])
    );
    let env = |name: &str| {
        c.env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(env("NVIDIA_VISIBLE_DEVICES").as_deref(), Some("GPU-aaaa"));
    assert_eq!(env("JUPYTERHUB_API_TOKEN").as_deref(), Some("t0k"));
    assert_eq!(
        env("JUPYTERHUB_SERVICE_URL").as_deref(),
        Some("http://0.0.0.0:8888/user/alice/")
    );
    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"].0, "1073741824");
    assert_eq!(limits["cpu"].0, "500m");
    assert!(!limits.contains_key("nvidia.com/gpu"), "Orrery leased it");
    // Watches: the pod by name and its events by the pod's uid.
    assert!(calls.iter().any(|c| c.path == PODS
        && c.watch()
        && c.query_has("fieldSelector=metadata.name=orrery-alice")));
    assert!(calls
        .iter()
        .any(|c| c.path.ends_with("/events")
            && c.query_has("fieldSelector=involvedObject.uid=uid-1")));
    let mut lines = Vec::new();
    while let Ok(l) = progress.try_recv() {
        lines.push(l);
    }
    assert!(
        lines
            .iter()
            .any(|l| l == "Scheduled: Successfully assigned classes/orrery-alice to node-1"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "Container: ContainerCreating"),
        "{lines:?}"
    );

    assert!(
        !calls.iter().any(|c| c.method == "DELETE"),
        "nothing deleted while it runs"
    );
    b.stop("alice", "", &started.state).await.unwrap();
    let calls = log.lock().unwrap().clone();
    let delete = calls
        .iter()
        .find(|c| c.method == "DELETE")
        .expect("stop deletes");
    assert_eq!(delete.path, POD, "the pod, not the home");
}

#[tokio::test]
async fn stop_deletes_the_pod_only_and_poll_reads_the_phase() {
    let cfg = config(KubernetesGpus::Node);
    let (b, calls) = backend(&cfg, |c: &Call| {
        if c.is("DELETE", POD) {
            return Some((
                200,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
            ));
        }
        if c.is("GET", POD) {
            let mut pod = served_pod(&json!({"metadata": {"name": "orrery-alice"}}), json!({}));
            pod["status"] = json!({"phase": "Failed", "containerStatuses": [{"name": "notebook", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]});
            return Some((200, pod));
        }
        if c.is("GET", &format!("{POD}/log")) {
            return Some((200, Value::String("allocating\n".into())));
        }
        None
    });
    let state = json!({"pod": "orrery-alice"});
    b.stop("alice", "", &state).await.unwrap();
    let PollStatus::Stopped(why) = b.poll("alice", "", &state).await.unwrap() else {
        panic!("a failed pod is stopped")
    };
    assert!(
        why.contains("ran out of memory") && why.contains("allocating"),
        "{why}"
    );
    let calls = calls.lock().unwrap().clone();
    assert!(
        calls
            .iter()
            .all(|c| !c.path.contains("persistentvolumeclaims")),
        "the home stays"
    );
    assert!(calls.iter().any(|c| c.is("DELETE", POD)));
}

#[tokio::test]
async fn a_pod_that_cannot_be_scheduled_fails_at_the_timeout_with_the_schedulers_words() {
    let mut cfg = config(KubernetesGpus::DevicePlugin);
    cfg.spawner.start_timeout = crate::config::Duration::from_secs(2);
    let unschedulable = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]});
    let (b, calls) = backend(
        &cfg,
        api(
            vec![unschedulable],
            vec![event(
                "FailedScheduling",
                "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
                true,
            )],
        ),
    );
    let (spec, mut progress) = spec(&cfg, Vec::new(), 2);
    let err = b
        .start(spec)
        .await
        .expect_err("never scheduled")
        .to_string();
    assert!(
        err.contains("not running within spawner.start_timeout")
            && err.contains(
                "FailedScheduling: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
            ),
        "{err}"
    );
    let mut lines = Vec::new();
    while let Ok(l) = progress.try_recv() {
        lines.push(l);
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Insufficient nvidia.com/gpu")),
        "{lines:?}"
    );
    let calls = calls.lock().unwrap().clone();
    let pod = sent_pod(&calls);
    let spec = pod.spec.as_ref().unwrap();
    let limits = spec.containers[0]
        .resources
        .as_ref()
        .unwrap()
        .limits
        .clone()
        .unwrap();
    assert_eq!(
        limits["nvidia.com/gpu"].0, "2",
        "the device plugin places them"
    );
    assert_eq!(spec.runtime_class_name, None);
    // The pod that will not run is removed at once.
    let delete = calls.iter().find(|c| c.is("DELETE", POD)).expect("deleted");
    assert_eq!(delete.body["gracePeriodSeconds"], 0);
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_at_once_with_the_fix() {
    let cfg = config(KubernetesGpus::Node);
    let (b, calls) = backend(
        &cfg,
        api(
            vec![
                json!({"phase": "Pending"}),
                waiting("ErrImagePull", "rpc error: not found"),
                waiting(
                    "ImagePullBackOff",
                    "Back-off pulling image \"registry.example/notebook:1\"",
                ),
            ],
            vec![event(
                "Failed",
                "Failed to pull image \"registry.example/notebook:1\": not found",
                true,
            )],
        ),
    );
    let (spec, _progress) = spec(&cfg, Vec::new(), 0);
    let began = std::time::Instant::now();
    let err = b.start(spec).await.expect_err("no image").to_string();
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "not waiting for the timeout"
    );
    assert!(
        err.contains("ImagePullBackOff")
            && err.contains("registry.example/notebook:1")
            && err.contains("image_pull_secrets"),
        "{err}"
    );
    let calls = calls.lock().unwrap().clone();
    assert!(calls.iter().any(|c| c.is("DELETE", POD)));
    let pod = sent_pod(&calls);
    let c = &pod.spec.as_ref().unwrap().containers[0];
    let visible = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "NVIDIA_VISIBLE_DEVICES")
        .unwrap();
    assert_eq!(visible.value.as_deref(), Some("void"), "no lease, no GPU");
}

#[tokio::test]
async fn after_a_restart_reconcile_lists_this_hubs_pods_by_label_with_their_exact_names() {
    let cfg = config(KubernetesGpus::Node);
    let (b, calls) = backend(&cfg, |c: &Call| {
        if c.is("GET", PODS) {
            let pod = |name: &str, user: &str, server: &str| {
                json!({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "uid": format!("u-{name}"), "creationTimestamp": "2026-12-07T10:00:00Z",
                                    "labels": {"org.orrery.kind": "notebook", "org.orrery.hub": "inst-1"},
                                    "annotations": {"org.orrery.user": user, "org.orrery.server": server}}})
            };
            return list(
                "PodList",
                vec![
                    pod("orrery-alice", "alice", ""),
                    pod("orrery-lab--bob", "bob", "lab"),
                    pod("orrery-x", "Zoë.M", ""),
                ],
            );
        }
        None
    });
    let found = b.list().await.unwrap();
    let names: Vec<(String, String)> = found
        .iter()
        .map(|o| (o.user.clone(), o.server.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("alice".to_string(), String::new()),
            ("bob".to_string(), "lab".to_string()),
            ("Zoë.M".to_string(), String::new())
        ]
    );
    assert_eq!(found[1].state["pod"], "orrery-lab--bob");
    assert!(found[0].created.is_some());
    let calls = calls.lock().unwrap().clone();
    assert!(
        calls[0].query_has("labelSelector=org.orrery.kind=notebook,org.orrery.hub=inst-1"),
        "{:?}",
        calls[0]
    );
}
