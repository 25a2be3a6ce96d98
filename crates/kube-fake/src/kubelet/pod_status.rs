//! The pod status the kubelet reports, computed from what it knows of each container: the
//! phase by the real kubelet's rules (with every restart policy treated as `Never`), the
//! conditions (`PodReadyToStartContainers`, `Initialized`, `Ready`, `ContainersReady`,
//! `PodScheduled`, keeping `lastTransitionTime` while a condition's status holds), the pod
//! and host IPs, and one `containerStatuses` entry per container (waiting, running or
//! terminated).

use serde_json::{json, Value};

use super::scheduler::set_condition;

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminated {
    pub exit_code: i64,
    /// `Completed`, `Error`, `OOMKilled`, `StartError`, `ContainerStatusUnknown`.
    pub reason: String,
    pub message: Option<String>,
    pub started_at: String,
    pub finished_at: String,
}

/// What the kubelet knows of one container of a pod.
#[derive(Debug, Clone)]
pub struct Run {
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// The Docker container, once created.
    pub id: Option<String>,
    /// Why it is not running yet (`ContainerCreating`, `ErrImagePull`, ...) and a message.
    pub waiting: (String, Option<String>),
    pub started_at: Option<String>,
    pub terminated: Option<Terminated>,
}

impl Run {
    pub fn new(name: &str, image: &str) -> Run {
        Run {
            name: name.to_string(),
            image: image.to_string(),
            image_id: String::new(),
            id: None,
            waiting: ("ContainerCreating".into(), None),
            started_at: None,
            terminated: None,
        }
    }

    pub fn running(&self) -> bool {
        self.id.is_some() && self.started_at.is_some() && self.terminated.is_none()
    }

    fn status(&self) -> Value {
        let mut s = json!({
            "name": self.name,
            "image": self.image,
            "imageID": if self.image_id.is_empty() { String::new() } else { format!("docker://{}", self.image_id) },
            "ready": self.running(),
            "started": self.running(),
            "restartCount": 0,
            "lastState": {},
        });
        if let Some(id) = &self.id {
            s["containerID"] = json!(format!("docker://{id}"));
        }
        s["state"] = match (&self.terminated, &self.started_at) {
            (Some(t), _) => {
                let mut t2 = json!({
                    "exitCode": t.exit_code,
                    "reason": t.reason,
                    "startedAt": t.started_at,
                    "finishedAt": t.finished_at,
                });
                if let Some(id) = &self.id {
                    t2["containerID"] = json!(format!("docker://{id}"));
                }
                if let Some(m) = &t.message {
                    t2["message"] = json!(m);
                }
                json!({ "terminated": t2 })
            }
            (None, Some(at)) if self.id.is_some() => json!({ "running": { "startedAt": at } }),
            _ => {
                let mut w = json!({ "reason": self.waiting.0 });
                if let Some(m) = &self.waiting.1 {
                    w["message"] = json!(m);
                }
                json!({ "waiting": w })
            }
        };
        s
    }
}

/// The phase of a pod with these containers (restart policy `Never`).
pub fn phase(runs: &[Run]) -> &'static str {
    if !runs.is_empty() && runs.iter().all(|r| r.terminated.is_some()) {
        if runs
            .iter()
            .all(|r| r.terminated.as_ref().is_some_and(|t| t.exit_code == 0))
        {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if runs.iter().any(|r| r.terminated.is_none() && !r.running()) {
        "Pending"
    } else {
        "Running"
    }
}

/// Write the status of `pod` from `runs`.
pub fn apply(
    pod: &mut Value,
    runs: &[Run],
    pod_ip: Option<&str>,
    host_ip: &str,
    start_time: &str,
    stamp: &str,
) {
    let phase = phase(runs);
    let sandbox = runs.iter().any(|r| r.id.is_some());
    let unready: Vec<&str> = runs
        .iter()
        .filter(|r| !r.running())
        .map(|r| r.name.as_str())
        .collect();
    let scheduled = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type") == Some(&json!("PodScheduled")))
                .cloned()
        });
    set_condition(
        pod,
        "PodReadyToStartContainers",
        if sandbox { "True" } else { "False" },
        None,
        None,
        stamp,
    );
    set_condition(pod, "Initialized", "True", None, None, stamp);
    let (ready, reason, message) = if unready.is_empty() {
        ("True", None, None)
    } else if phase == "Succeeded" {
        ("False", Some("PodCompleted"), None)
    } else {
        (
            "False",
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    set_condition(pod, "Ready", ready, reason, message.as_deref(), stamp);
    set_condition(
        pod,
        "ContainersReady",
        ready,
        reason,
        message.as_deref(),
        stamp,
    );
    match scheduled {
        Some(c) => {
            // Keep the scheduler's condition as it is, last in the list.
            let mut conds: Vec<Value> = pod["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|x| x.get("type") != Some(&json!("PodScheduled")))
                .collect();
            conds.push(c);
            pod["status"]["conditions"] = json!(conds);
        }
        None => set_condition(pod, "PodScheduled", "True", None, None, stamp),
    }
    let st = &mut pod["status"];
    st["phase"] = json!(phase);
    st["hostIP"] = json!(host_ip);
    st["hostIPs"] = json!([{ "ip": host_ip }]);
    st["startTime"] = json!(start_time);
    if let Some(ip) = pod_ip {
        st["podIP"] = json!(ip);
        st["podIPs"] = json!([{ "ip": ip }]);
    }
    st["containerStatuses"] = json!(runs.iter().map(Run::status).collect::<Vec<_>>());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(code: i64) -> Option<Terminated> {
        Some(Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: "t".into(),
            finished_at: "t".into(),
        })
    }

    #[test]
    fn phases() {
        let mut a = Run::new("a", "i");
        assert_eq!(phase(&[a.clone()]), "Pending");
        a.id = Some("x".into());
        a.started_at = Some("t".into());
        assert_eq!(phase(&[a.clone()]), "Running");
        let mut b = a.clone();
        b.terminated = term(0);
        assert_eq!(phase(&[b.clone()]), "Succeeded");
        assert_eq!(phase(&[a.clone(), b.clone()]), "Running");
        let mut c = a.clone();
        c.terminated = term(3);
        assert_eq!(phase(&[b, c]), "Failed");
        assert_eq!(phase(&[a, Run::new("w", "i")]), "Pending");
    }

    #[test]
    fn status_keeps_transition_times() {
        let mut pod = json!({"status": {"phase": "Pending", "qosClass": "BestEffort"}});
        let mut r = Run::new("c", "img");
        apply(
            &mut pod,
            std::slice::from_ref(&r),
            None,
            "10.0.0.1",
            "t0",
            "t0",
        );
        assert_eq!(
            pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        r.id = Some("abc".into());
        r.started_at = Some("t1".into());
        apply(
            &mut pod,
            std::slice::from_ref(&r),
            Some("10.0.0.2"),
            "10.0.0.1",
            "t0",
            "t1",
        );
        let s = &pod["status"];
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["qosClass"], "BestEffort");
        assert_eq!(s["podIP"], "10.0.0.2");
        assert_eq!(
            s["containerStatuses"][0]["state"]["running"]["startedAt"],
            "t1"
        );
        let cond = |t: &str| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()
                .clone()
        };
        assert_eq!(cond("Ready")["status"], "True");
        assert_eq!(cond("Ready")["lastTransitionTime"], "t1");
        assert_eq!(cond("Initialized")["lastTransitionTime"], "t0");
        assert_eq!(cond("PodScheduled")["status"], "True");
    }
}
