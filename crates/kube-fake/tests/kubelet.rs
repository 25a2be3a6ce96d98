//! The fake scheduler and kubelet with a real Docker engine and the project's single-user
//! test image (`tests/images/build.sh`): a pod's whole journey (PVC, Secret, security
//! context, limits, events, logs, graceful deletion, the PVC's files kept for the next pod),
//! an unschedulable GPU request, a missing image, a failing command, and the non-root policy.
//! Without a Docker engine (or the image): a failure under CI=true, else skipped.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{eventually, unique, Env};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, WatchEvent, WatchParams};
use kube_fake::{KubeletOptions, Options};
use serde_json::{json, Value};

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skip (or, under CI, fail) with `why`.
fn unavailable(why: &str) -> Option<String> {
    if ci() {
        panic!("{why} (CI=true: this test must run)");
    }
    eprintln!("SKIPPED: {why}");
    None
}

fn docker_up() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Docker engine (started if installed but not running), and the test image's reference.
fn image() -> Option<String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    let got = IMAGE.get_or_init(|| {
        if !docker_up() {
            let started = Command::new("sh")
                .arg("-c")
                .arg("command -v dockerd >/dev/null && (dockerd >/var/log/orrery-dockerd.log 2>&1 &)")
                .status()
                .is_ok_and(|s| s.success());
            if started {
                for _ in 0..60 {
                    if docker_up() {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        if !docker_up() {
            return Err("no Docker engine (docker info fails)".into());
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = Command::new("bash")
            .arg("tests/images/build.sh")
            .current_dir(&root)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("running tests/images/build.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!("tests/images/build.sh failed ({})", out.status));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .ok_or_else(|| "tests/images/build.sh printed no image".to_string())
    });
    match got {
        Ok(i) => Some(i.clone()),
        Err(e) => unavailable(e),
    }
}

/// Removes what a test made in Docker (containers, volumes, the network) even if it fails.
struct DockerGuard {
    network: String,
}

impl Drop for DockerGuard {
    fn drop(&mut self) {
        let label = format!("label=io.kube-fake.network={}", self.network);
        let sh = format!(
            "docker ps -aq --filter {label} | xargs -r docker rm -f >/dev/null 2>&1; \
             docker volume ls -q --filter {label} | xargs -r docker volume rm -f >/dev/null 2>&1; \
             docker network rm {} >/dev/null 2>&1; true",
            self.network
        );
        let _ = Command::new("sh").arg("-c").arg(sh).status();
    }
}

/// A cluster with a kubelet on a fresh network (and the guard that cleans it up).
async fn env_with_kubelet(gpus: u32) -> (Env, DockerGuard) {
    let network = unique("kf-test");
    let guard = DockerGuard {
        network: network.clone(),
    };
    let opts = Options {
        kubelet: Some(KubeletOptions {
            network,
            gpus,
            ..Default::default()
        }),
        ..Default::default()
    };
    (Env::start(opts).await, guard)
}

async fn finish(env: Env) {
    env.cluster.remove_volumes().await;
    env.cluster.shutdown().await;
}

fn pod(v: Value) -> Pod {
    serde_json::from_value(v).unwrap()
}

/// Wait (watching) until `cond` holds for pod `name`; the pod then.
async fn await_pod(
    pods: &Api<Pod>,
    name: &str,
    secs: u64,
    what: &str,
    cond: impl Fn(&Pod) -> bool,
) -> Pod {
    let c = kube::runtime::wait::await_condition(pods.clone(), name, move |p: Option<&Pod>| {
        p.is_some_and(&cond)
    });
    match tokio::time::timeout(Duration::from_secs(secs), c).await {
        Ok(Ok(Some(p))) => p,
        Ok(other) => panic!("waiting for {what}: {other:?}"),
        Err(_) => {
            let now = pods.get(name).await.ok().map(|p| p.status);
            panic!("timed out after {secs} s waiting for {what}; status: {now:#?}")
        }
    }
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn waiting_reason(p: &Pod) -> Option<(String, String)> {
    let s = p.status.as_ref()?.container_statuses.as_ref()?.first()?;
    let w = s.state.as_ref()?.waiting.as_ref()?;
    Some((
        w.reason.clone().unwrap_or_default(),
        w.message.clone().unwrap_or_default(),
    ))
}

/// The events about pod `name`, oldest first.
async fn events_of(env: &Env, name: &str) -> Vec<Event> {
    let events: Api<Event> = env.api();
    let mut list = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap()
        .items;
    list.sort_by_key(|e| {
        e.metadata
            .resource_version
            .clone()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    });
    list
}

#[tokio::test]
async fn pod_journey() {
    let Some(image) = image() else { return };
    let (env, _guard) = env_with_kubelet(0).await;
    let pvcs: Api<PersistentVolumeClaim> = env.api();
    let secrets: Api<Secret> = env.api();
    let pods: Api<Pod> = env.api();
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "home"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    pvcs.create(&PostParams::default(), &claim).await.unwrap();
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "conn"}, "stringData": {"k": "s3cret-value"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let nb = pod(json!({
        "metadata": {"name": "nb", "labels": {"app": "nb"}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100, "runAsNonRoot": true},
            "containers": [{
                "name": "notebook",
                "image": image,
                "command": ["sh", "-c", "id -u; cat /etc/conn/k; echo; echo hi > /home/jovyan/f; sleep 300"],
                "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [
                    {"name": "home", "mountPath": "/home/jovyan"},
                    {"name": "conn", "mountPath": "/etc/conn", "readOnly": true}
                ]
            }],
            "volumes": [
                {"name": "home", "persistentVolumeClaim": {"claimName": "home"}},
                {"name": "conn", "secret": {"secretName": "conn", "defaultMode": 0o400}}
            ]
        }
    }));
    let created = pods.create(&PostParams::default(), &nb).await.unwrap();
    let uid = created.metadata.uid.clone().unwrap();

    let running = await_pod(&pods, "nb", 60, "nb Running with an IP", |p| {
        phase(p) == "Running" && p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some()
    })
    .await;
    let st = running.status.clone().unwrap();
    assert_eq!(
        running.spec.as_ref().unwrap().node_name.as_deref(),
        Some("fake-node")
    );
    assert_eq!(
        st.host_ip.as_deref(),
        Some(env.cluster.gateway_ip().unwrap().to_string().as_str())
    );
    let cs = &st.container_statuses.unwrap()[0];
    assert!(cs.ready && cs.started == Some(true), "{cs:?}");
    assert!(cs
        .state
        .as_ref()
        .unwrap()
        .running
        .as_ref()
        .unwrap()
        .started_at
        .is_some());
    let conds = st.conditions.unwrap();
    for t in ["Initialized", "ContainersReady", "Ready", "PodScheduled"] {
        let c = conds
            .iter()
            .find(|c| c.type_ == t)
            .unwrap_or_else(|| panic!("no {t} condition"));
        assert_eq!(c.status, "True", "{t}");
    }

    let reasons: Vec<String> = events_of(&env, "nb")
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    let wanted = ["Scheduled", "Pulled", "Created", "Started"];
    let order: Vec<&String> = reasons
        .iter()
        .filter(|r| wanted.contains(&r.as_str()))
        .collect();
    assert_eq!(
        order,
        wanted
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>(),
        "{reasons:?}"
    );

    // The container as Docker runs it.
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let cname = kube_fake::kubelet::container_name("notebook", "nb", &env.ns, &uid);
    let info = docker.inspect_container(&cname, None).await.unwrap();
    let config = info.config.unwrap();
    assert_eq!(config.user.as_deref(), Some("1000:100"));
    let labels = config.labels.unwrap();
    assert_eq!(labels.get(kube_fake::kubelet::LABEL_POD_UID), Some(&uid));
    let hc = info.host_config.unwrap();
    assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
    assert!(hc
        .security_opt
        .unwrap_or_default()
        .iter()
        .any(|o| o.starts_with("no-new-privileges")));
    assert_eq!(hc.memory, Some(256 << 20));
    assert_eq!(hc.nano_cpus, Some(500_000_000));
    assert!(hc
        .group_add
        .unwrap_or_default()
        .contains(&"100".to_string()));

    let logs = eventually(20, "the pod's output", || async {
        let l = pods.logs("nb", &LogParams::default()).await.ok()?;
        (l.contains("s3cret-value")).then_some(l)
    })
    .await;
    assert!(logs.lines().next() == Some("1000"), "{logs}");
    let tail = pods
        .logs(
            "nb",
            &LogParams {
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail.trim(), "s3cret-value");

    // Graceful deletion: MODIFIED with a deletionTimestamp, then DELETED; the container goes.
    let rv = pods
        .get("nb")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut watch = pods
        .watch(
            &WatchParams::default()
                .fields("metadata.name=nb")
                .timeout(60),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let dp = DeleteParams {
        grace_period_seconds: Some(2),
        ..Default::default()
    };
    let pending = pods.delete("nb", &dp).await.unwrap();
    let pending = pending
        .left()
        .expect("a bound pod is deleted gracefully: the pod comes back");
    assert_eq!(pending.metadata.deletion_grace_period_seconds, Some(2));
    let mut first_modified = None;
    let mut deleted = false;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(30), watch.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        match ev {
            WatchEvent::Modified(p) => {
                first_modified.get_or_insert(p);
            }
            WatchEvent::Deleted(_) => {
                deleted = true;
                break;
            }
            WatchEvent::Added(p) => panic!("unexpected ADDED {:?}", p.metadata.name),
            _ => {}
        }
    }
    assert!(deleted, "no DELETED event");
    assert!(first_modified
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_some());
    assert!(events_of(&env, "nb")
        .await
        .iter()
        .any(|e| e.reason.as_deref() == Some("Killing")));
    let gone = docker.inspect_container(&cname, None).await;
    assert!(
        matches!(
            gone,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })
        ),
        "{gone:?}"
    );

    // The PVC keeps the files: a second pod sees them.
    let reader = pod(json!({
        "metadata": {"name": "reader"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 100},
            "containers": [{"name": "r", "image": image, "command": ["cat", "/home/jovyan/f"],
                            "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}]}],
            "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "home"}}]
        }
    }));
    pods.create(&PostParams::default(), &reader).await.unwrap();
    let done = await_pod(&pods, "reader", 60, "reader Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let term = done.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert_eq!(
        pods.logs("reader", &LogParams::default())
            .await
            .unwrap()
            .trim(),
        "hi"
    );
    finish(env).await;
}

#[tokio::test]
async fn gpu_request_stays_pending() {
    let Some(_) = image() else { return };
    let (env, _guard) = env_with_kubelet(0).await;
    let pods: Api<Pod> = env.api();
    let p = pod(json!({
        "metadata": {"name": "gpu"},
        "spec": {"containers": [{"name": "c", "image": "kube-fake-test/none:1",
                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}
    }));
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = await_pod(&pods, "gpu", 20, "PodScheduled=False", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                })
            })
    })
    .await;
    assert_eq!(phase(&p), "Pending");
    assert!(p.spec.unwrap().node_name.is_none());
    // The node the kubelet registered.
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(env.client.clone());
    let node = nodes.get("fake-node").await.unwrap();
    let ns = node.status.unwrap();
    let ready = ns
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    let alloc = ns.allocatable.unwrap();
    assert_eq!(alloc.get("nvidia.com/gpu").map(|q| q.0.as_str()), Some("0"));
    for r in ["cpu", "memory", "pods"] {
        assert!(alloc.contains_key(r), "no allocatable {r}");
    }
    let wanted = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";
    let events = eventually(10, "FailedScheduling", || async {
        let ev = events_of(&env, "gpu").await;
        ev.iter()
            .any(|e| e.reason.as_deref() == Some("FailedScheduling"))
            .then_some(ev)
    })
    .await;
    let failed = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
        .unwrap();
    assert_eq!(failed.message.as_deref(), Some(wanted));
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert_eq!(
        failed.source.as_ref().unwrap().component.as_deref(),
        Some("default-scheduler")
    );
    finish(env).await;
}

#[tokio::test]
async fn missing_image_backs_off() {
    let Some(_) = image() else { return };
    let (env, _guard) = env_with_kubelet(0).await;
    let pods: Api<Pod> = env.api();
    let missing = format!("kube-fake-test/{}:1", unique("absent"));
    let p = pod(
        json!({"metadata": {"name": "nopull"}, "spec": {"containers": [{"name": "c", "image": missing}]}}),
    );
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = await_pod(&pods, "nopull", 20, "ErrImagePull", |p| {
        waiting_reason(p).is_some_and(|(r, _)| r == "ErrImagePull" || r == "ImagePullBackOff")
    })
    .await;
    assert_eq!(phase(&p), "Pending");
    await_pod(&pods, "nopull", 20, "ImagePullBackOff", |p| {
        waiting_reason(p).is_some_and(|(r, _)| r == "ImagePullBackOff")
    })
    .await;
    let events = events_of(&env, "nopull").await;
    let has = |reason: &str, text: &str| {
        events.iter().any(|e| {
            e.reason.as_deref() == Some(reason) && e.message.as_deref().unwrap_or("").contains(text)
        })
    };
    assert!(
        has("Failed", &format!("Failed to pull image \"{missing}\"")),
        "{events:#?}"
    );
    assert!(has("Failed", "Error: ErrImagePull"));
    assert!(has(
        "BackOff",
        &format!("Back-off pulling image \"{missing}\"")
    ));
    let e = common::api_error(pods.logs("nopull", &LogParams::default()).await);
    assert_eq!(e.code, 400);
    assert!(e.message.contains("is waiting to start"), "{}", e.message);
    finish(env).await;
}

#[tokio::test]
async fn failing_command_fails_the_pod() {
    let Some(image) = image() else { return };
    let (env, _guard) = env_with_kubelet(0).await;
    let pods: Api<Pod> = env.api();
    let p = pod(json!({
        "metadata": {"name": "three"},
        "spec": {"restartPolicy": "Never", "securityContext": {"runAsUser": 1000},
                 "containers": [{"name": "c", "image": image, "command": ["sh", "-c", "echo bye; exit 3"]}]}
    }));
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = await_pod(&pods, "three", 60, "Failed", |p| phase(p) == "Failed").await;
    let cs = &p.status.unwrap().container_statuses.unwrap()[0];
    let t = cs.state.clone().unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    assert!(!cs.ready);
    assert_eq!(
        pods.logs("three", &LogParams::default())
            .await
            .unwrap()
            .trim(),
        "bye"
    );
    // A finished pod is deleted at once, even though it is bound.
    assert!(pods
        .delete("three", &DeleteParams::default())
        .await
        .unwrap()
        .is_right());

    // Over its memory limit: OOMKilled.
    let p = pod(json!({
        "metadata": {"name": "oom"},
        "spec": {"restartPolicy": "Never", "securityContext": {"runAsUser": 1000},
                 "containers": [{"name": "c", "image": image,
                                 "command": ["python3", "-c", "a = bytearray(512 * 1024 * 1024); print(len(a))"],
                                 "resources": {"limits": {"memory": "64Mi"}}}]}
    }));
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = await_pod(&pods, "oom", 60, "oom Failed", |p| phase(p) == "Failed").await;
    let t = p.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(t.reason.as_deref(), Some("OOMKilled"), "{t:?}");
    assert_ne!(t.exit_code, 0);
    finish(env).await;
}

#[tokio::test]
async fn non_root_policy() {
    let Some(image) = image() else { return };
    // An image whose user is root: an empty one, imported (nothing to pull, nothing to run).
    let root_image = "kube-fake-test-root:1";
    let imported = Command::new("sh")
        .arg("-c")
        .arg(format!("docker image inspect {root_image} >/dev/null 2>&1 || tar cf - --files-from /dev/null | docker import - {root_image} >/dev/null"))
        .status()
        .unwrap();
    assert!(imported.success());
    let (env, _guard) = env_with_kubelet(0).await;
    let pods: Api<Pod> = env.api();
    let spec = |name: &str, image: &str, user: Value| {
        pod(json!({
            "metadata": {"name": name},
            "spec": {"securityContext": {"runAsNonRoot": true, "runAsUser": user},
                     "containers": [{"name": "c", "image": image, "command": ["sleep", "60"]}]}
        }))
    };
    pods.create(&PostParams::default(), &spec("uid0", &image, json!(0)))
        .await
        .unwrap();
    pods.create(
        &PostParams::default(),
        &spec("rootimage", root_image, Value::Null),
    )
    .await
    .unwrap();
    for (name, text) in [
        ("uid0", "container's runAsUser breaks non-root policy"),
        (
            "rootimage",
            "container has runAsNonRoot and image will run as root",
        ),
    ] {
        let p = await_pod(&pods, name, 30, "CreateContainerConfigError", |p| {
            waiting_reason(p).is_some_and(|(r, _)| r == "CreateContainerConfigError")
        })
        .await;
        let (_, message) = waiting_reason(&p).unwrap();
        assert!(message.starts_with(text), "{name}: {message}");
        assert_eq!(phase(&p), "Pending");
        let events = events_of(&env, name).await;
        assert!(events.iter().any(|e| e.reason.as_deref() == Some("Failed")
            && e.message.as_deref().unwrap_or("").contains(text)));
    }
    finish(env).await;
}

#[tokio::test]
async fn containers_share_the_pod_network() {
    let Some(image) = image() else { return };
    let (env, _guard) = env_with_kubelet(0).await;
    let pods: Api<Pod> = env.api();
    let client = "import time, urllib.request as u\nfor _ in range(100):\n    try:\n        print(u.urlopen('http://localhost:8000/').status); break\n    except OSError:\n        time.sleep(0.2)";
    let p = pod(json!({
        "metadata": {"name": "two"},
        "spec": {"restartPolicy": "Never", "securityContext": {"runAsUser": 1000}, "containers": [
            {"name": "server", "image": image, "command": ["python3", "-m", "http.server", "8000"]},
            {"name": "client", "image": image, "command": ["python3", "-c", client]}
        ]}
    }));
    pods.create(&PostParams::default(), &p).await.unwrap();
    let done = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.name == "client"
                        && c.state
                            .as_ref()
                            .and_then(|s| s.terminated.as_ref())
                            .is_some()
                })
            })
    };
    let p = await_pod(&pods, "two", 60, "the client container to finish", done).await;
    assert_eq!(phase(&p), "Running", "the server still runs");
    let lp = LogParams {
        container: Some("client".into()),
        ..Default::default()
    };
    assert_eq!(pods.logs("two", &lp).await.unwrap().trim(), "200");
    let e = common::api_error(pods.logs("two", &LogParams::default()).await);
    assert!(
        e.message.contains("a container name must be specified"),
        "{}",
        e.message
    );
    finish(env).await;
}

#[tokio::test]
async fn dropped_cluster_removes_its_containers() {
    let Some(image) = image() else { return };
    let (env, _guard) = env_with_kubelet(0).await;
    let pods: Api<Pod> = env.api();
    let p = pod(json!({
        "metadata": {"name": "left"},
        "spec": {"securityContext": {"runAsUser": 1000},
                 "containers": [{"name": "c", "image": image, "command": ["sleep", "300"]}]}
    }));
    let uid = pods
        .create(&PostParams::default(), &p)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    await_pod(&pods, "left", 60, "left Running", |p| phase(p) == "Running").await;
    let cname = kube_fake::kubelet::container_name("c", "left", &env.ns, &uid);
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    assert!(docker.inspect_container(&cname, None).await.is_ok());
    // No shutdown: dropping the cluster cleans up.
    drop(env);
    let gone = docker.inspect_container(&cname, None).await;
    assert!(
        matches!(
            gone,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })
        ),
        "{gone:?}"
    );
}
