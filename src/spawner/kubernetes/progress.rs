//! What a pod's status and events mean for a start: still coming (with a line for the progress
//! stream), running at an address, or failed with a message a person can act on. Pure
//! functions over k8s-openapi's types, so the rules are tested without any cluster.
//!
//! The failures are the ones Docker's backend reports in its own words: an image that cannot be
//! pulled (`ImagePullBackOff`, `ErrImageNeverPull`, `InvalidImageName`), a container the node
//! cannot create (`CreateContainerConfigError`, e.g. a root image under `runAsNonRoot`), a
//! server that exited (`OOMKilled` said plainly), a pod being deleted. `FailedScheduling` is
//! not final (a cluster may free room, or an autoscaler add a node): it is reported and the
//! start waits until `spawner.start_timeout`, whose message repeats it.

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};

/// Where a starting pod stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not running yet; the line says why, when the status says something new.
    Waiting(Option<String>),
    /// Running, reachable at this pod IP.
    Running(String),
    /// It will not run: why.
    Failed(String),
}

/// Waiting reasons that do not resolve by waiting.
const FATAL_WAITING: [&str; 7] = [
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
];

fn first_container(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
}

/// Why a container that ended ended: `exited with code 3`, or `was killed: it ran out of
/// memory (OOMKilled)`.
pub fn termination(pod: &Pod) -> Option<String> {
    let t = first_container(pod)?.state.as_ref()?.terminated.as_ref()?;
    let reason = t.reason.as_deref().unwrap_or("");
    Some(if reason == "OOMKilled" {
        "it ran out of memory and was killed (OOMKilled): raise limits.memory or use less"
            .to_string()
    } else if let Some(m) = t.message.as_deref().filter(|m| !m.is_empty()) {
        format!("it exited with code {} ({reason}: {m})", t.exit_code)
    } else {
        format!("it exited with code {}", t.exit_code)
    })
}

/// Judge a pod the start is waiting for.
pub fn judge(pod: &Pod) -> Verdict {
    let name = pod.metadata.name.as_deref().unwrap_or("the pod");
    if pod.metadata.deletion_timestamp.is_some() {
        return Verdict::Failed(format!("pod {name} is being deleted"));
    }
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.as_deref().unwrap_or("Pending");
    if matches!(phase, "Failed" | "Succeeded") {
        let why = termination(pod)
            .or(status.message.clone())
            .unwrap_or_else(|| format!("its phase is {phase}"));
        return Verdict::Failed(format!("pod {name} stopped before it was ready: {why}"));
    }
    if let Some(c) = first_container(pod) {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.as_deref().unwrap_or("");
            let message = w.message.as_deref().unwrap_or("");
            if FATAL_WAITING.contains(&reason) {
                let image = c.image.as_str();
                let fix = match reason {
                    "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName" => format!(
                        ": the cluster cannot get image {image}; push it to a registry the nodes can pull from (user_environment.registry, spawner.kubernetes.image_pull_secrets) or import it on the node (k3s ctr images import)"
                    ),
                    "CreateContainerConfigError" => {
                        ": set spawner.docker.user to a non-root \"uid:gid\" (e.g. \"1000:100\") or use an image whose user is not root".to_string()
                    }
                    _ => String::new(),
                };
                let detail = if message.is_empty() {
                    String::new()
                } else {
                    format!(" ({message})")
                };
                return Verdict::Failed(format!("pod {name} cannot start: {reason}{detail}{fix}"));
            }
            if !reason.is_empty() {
                return Verdict::Waiting(Some(if message.is_empty() {
                    format!("Container: {reason}")
                } else {
                    format!("Container: {reason}: {message}")
                }));
            }
        }
    }
    let running = first_container(pod)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some());
    match status.pod_ip.filter(|ip| !ip.is_empty()) {
        Some(ip) if phase == "Running" && running => Verdict::Running(ip),
        _ => Verdict::Waiting(None),
    }
}

/// An event about the pod as a progress line: `Scheduled: Successfully assigned …`.
pub fn event_line(event: &Event) -> String {
    let reason = event.reason.as_deref().unwrap_or("Event");
    let message = event.message.as_deref().unwrap_or("").trim();
    let warning = event.type_.as_deref() == Some("Warning");
    format!(
        "{}{reason}: {message}",
        if warning { "Warning: " } else { "" }
    )
}

/// Whether an event is a warning worth repeating when the start gives up.
pub fn is_warning(event: &Event) -> bool {
    event.type_.as_deref() == Some("Warning")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        PodStatus,
    };

    fn pod(phase: &str, state: ContainerState, ip: Option<&str>) -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("orrery-alice".into()),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                pod_ip: ip.map(str::to_string),
                container_statuses: Some(vec![ContainerStatus {
                    name: "notebook".into(),
                    image: "img:1".into(),
                    state: Some(state),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn waiting(reason: &str, message: &str) -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some(message.into()),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_running_pod_with_an_address_is_running_and_not_before() {
        let running = ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        };
        assert_eq!(
            judge(&pod("Running", running.clone(), Some("10.42.0.7"))),
            Verdict::Running("10.42.0.7".into())
        );
        assert_eq!(
            judge(&pod("Running", running, None)),
            Verdict::Waiting(None)
        );
        assert_eq!(
            judge(&pod("Pending", waiting("ContainerCreating", ""), None)),
            Verdict::Waiting(Some("Container: ContainerCreating".into()))
        );
    }

    #[test]
    fn pull_failures_bad_users_and_deaths_fail_with_the_fix() {
        let Verdict::Failed(m) = judge(&pod(
            "Pending",
            waiting("ImagePullBackOff", "Back-off pulling image \"img:1\""),
            None,
        )) else {
            panic!("an image that cannot be pulled is final")
        };
        assert!(
            m.contains("ImagePullBackOff") && m.contains("registry"),
            "{m}"
        );
        // A first pull error may pass (a registry hiccup): reported, not final.
        assert!(matches!(
            judge(&pod("Pending", waiting("ErrImagePull", "not found"), None)),
            Verdict::Waiting(Some(_))
        ));
        let Verdict::Failed(m) = judge(&pod(
            "Pending",
            waiting(
                "CreateContainerConfigError",
                "container has runAsNonRoot and image will run as root",
            ),
            None,
        )) else {
            panic!("a root image under runAsNonRoot is final")
        };
        assert!(m.contains("spawner.docker.user"), "{m}");
        let oom = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 137,
                reason: Some("OOMKilled".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let Verdict::Failed(m) = judge(&pod("Failed", oom, None)) else {
            panic!("a dead pod is final")
        };
        assert!(m.contains("ran out of memory"), "{m}");
        let mut deleting = pod("Running", waiting("ContainerCreating", ""), None);
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        assert!(matches!(judge(&deleting), Verdict::Failed(_)));
    }

    #[test]
    fn events_read_as_progress_lines() {
        let e = Event {
            reason: Some("FailedScheduling".into()),
            message: Some("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.".into()),
            type_: Some("Warning".into()),
            ..Default::default()
        };
        assert_eq!(
            event_line(&e),
            "Warning: FailedScheduling: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
        );
        assert!(is_warning(&e));
    }
}
