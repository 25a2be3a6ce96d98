//! The fake scheduler for the one node: binds each unbound pod whose requests (CPU, memory,
//! `nvidia.com/gpu`, pod count) fit what the node has left, whose node selector matches, and
//! whose PVCs exist, in creation order. A pod that does not fit stays `Pending` with
//! `PodScheduled=False` (`Unschedulable`) and a `FailedScheduling` event worded as the real
//! scheduler's; it is tried again when a pod goes away or finishes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};

use super::quantity;
use crate::events::{EventType, Recorder};
use crate::resources::{PODS, PVCS};
use crate::selectors::Selector;
use crate::store::{now, ListRv, Store};

pub const GPU: &str = "nvidia.com/gpu";

/// What the node offers.
#[derive(Debug, Clone)]
pub struct NodeCapacity {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u64,
    pub pods: u64,
}

/// A pod's requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u64,
}

/// The sum of a pod's containers' requests (a resource with a limit but no request counts
/// its limit, as the API server's defaulting does).
pub fn requests(pod: &Value) -> Requests {
    let mut r = Requests::default();
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in containers {
        let get = |name: &str| -> Option<String> {
            let v = c
                .pointer("/resources/requests")
                .and_then(|q| q.get(name))
                .or_else(|| c.pointer("/resources/limits").and_then(|q| q.get(name)))?;
            match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        r.cpu_millis += get("cpu")
            .and_then(|q| quantity::cpu_millis(&q))
            .unwrap_or(0);
        r.memory_bytes += get("memory").and_then(|q| quantity::units(&q)).unwrap_or(0);
        r.gpus += get(GPU).and_then(|q| quantity::units(&q)).unwrap_or(0);
    }
    r
}

fn is_terminal(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

fn node_name(pod: &Value) -> &str {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn meta<'a>(pod: &'a Value, f: &str) -> &'a str {
    pod.get("metadata")
        .and_then(|m| m.get(f))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The scheduler's memory between passes.
pub struct Scheduler {
    store: Arc<Store>,
    node: NodeCapacity,
    events: Recorder,
    /// Pods holding resources at the last pass.
    holding: HashSet<String>,
    /// Unschedulable pods: uid -> the message last reported.
    reported: HashMap<String, String>,
}

impl Scheduler {
    pub fn new(store: Arc<Store>, node: NodeCapacity) -> Scheduler {
        let events = Recorder::new(store.clone(), "default-scheduler", None);
        Scheduler {
            store,
            node,
            events,
            holding: HashSet::new(),
            reported: HashMap::new(),
        }
    }

    /// One pass: bind what fits.
    pub fn schedule(&mut self) {
        let Ok((pods, _)) = self
            .store
            .list(&PODS, None, &Selector::default(), ListRv::Latest)
        else {
            return;
        };
        let mut used = Requests::default();
        let mut count = 0u64;
        let mut holding = HashSet::new();
        for p in pods
            .iter()
            .filter(|p| node_name(p) == self.node.name && !is_terminal(p))
        {
            let r = requests(p);
            used.cpu_millis += r.cpu_millis;
            used.memory_bytes += r.memory_bytes;
            used.gpus += r.gpus;
            count += 1;
            holding.insert(meta(p, "uid").to_string());
        }
        // Resources were freed: every unschedulable pod is worth another try (and report).
        if self.holding.iter().any(|u| !holding.contains(u)) {
            self.reported.clear();
        }
        self.holding = holding;
        let mut pending: Vec<_> = pods
            .iter()
            .filter(|p| {
                node_name(p).is_empty()
                    && p.pointer("/metadata/deletionTimestamp").is_none()
                    && p.pointer("/spec/schedulerName")
                        .and_then(Value::as_str)
                        .unwrap_or("default-scheduler")
                        == "default-scheduler"
            })
            .collect();
        pending.sort_by_key(|p| meta(p, "resourceVersion").parse::<u64>().unwrap_or(0));
        let live: HashSet<&str> = pods.iter().map(|p| meta(p, "uid")).collect();
        self.reported.retain(|u, _| live.contains(u.as_str()));
        for pod in pending {
            match self.fits(pod, &used, count) {
                Ok(()) => {
                    let r = requests(pod);
                    used.cpu_millis += r.cpu_millis;
                    used.memory_bytes += r.memory_bytes;
                    used.gpus += r.gpus;
                    count += 1;
                    self.bind(pod);
                }
                Err(message) => self.unschedulable(pod, &message),
            }
        }
    }

    /// Does `pod` fit next to `used` and `count` pods? `Err`: the scheduler's message.
    fn fits(&self, pod: &Value, used: &Requests, count: u64) -> Result<(), String> {
        let not_helpful =
            "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
        let ns = meta(pod, "namespace");
        let claims = pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for v in claims {
            if let Some(claim) = v
                .pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
            {
                match self.store.get(&PVCS, ns, claim) {
                    Err(_) => {
                        return Err(format!(
                            "0/1 nodes are available: persistentvolumeclaim \"{claim}\" not found. {not_helpful}"
                        ))
                    }
                    Ok(pvc) if pvc.pointer("/metadata/deletionTimestamp").is_some() => {
                        return Err(format!(
                            "0/1 nodes are available: persistentvolumeclaim \"{claim}\" is being deleted. {not_helpful}"
                        ))
                    }
                    Ok(_) => {}
                }
            }
        }
        if let Some(Value::Object(sel)) = pod.pointer("/spec/nodeSelector") {
            let matches = sel
                .iter()
                .all(|(k, v)| self.node.labels.get(k).map(String::as_str) == v.as_str());
            if !matches {
                return Err(format!(
                    "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. {not_helpful}"
                ));
            }
        }
        let r = requests(pod);
        let mut reasons = Vec::new();
        if used.cpu_millis + r.cpu_millis > self.node.cpu_millis {
            reasons.push("1 Insufficient cpu".to_string());
        }
        if used.memory_bytes + r.memory_bytes > self.node.memory_bytes {
            reasons.push("1 Insufficient memory".to_string());
        }
        if used.gpus + r.gpus > self.node.gpus {
            reasons.push(format!("1 Insufficient {GPU}"));
        }
        if count + 1 > self.node.pods {
            reasons.push("1 Too many pods".to_string());
        }
        if reasons.is_empty() {
            return Ok(());
        }
        reasons.sort();
        Err(format!(
            "0/1 nodes are available: {}. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
            reasons.join(", ")
        ))
    }

    fn bind(&mut self, pod: &Value) {
        let (ns, name, uid) = (meta(pod, "namespace"), meta(pod, "name"), meta(pod, "uid"));
        let node = self.node.name.clone();
        let stamp = now();
        let bound = self.store.modify(&PODS, ns, name, |p| {
            if meta(p, "uid") != uid || !node_name(p).is_empty() {
                return;
            }
            p["spec"]["nodeName"] = json!(node);
            set_condition(p, "PodScheduled", "True", None, None, &stamp);
        });
        if let Some(p) = bound {
            self.reported.remove(uid);
            self.events.record(
                &p,
                None,
                EventType::Normal,
                "Scheduled",
                &format!("Successfully assigned {ns}/{name} to {}", self.node.name),
            );
        }
    }

    fn unschedulable(&mut self, pod: &Value, message: &str) {
        let (ns, name, uid) = (meta(pod, "namespace"), meta(pod, "name"), meta(pod, "uid"));
        if self.reported.get(uid).map(String::as_str) == Some(message) {
            return;
        }
        self.reported.insert(uid.to_string(), message.to_string());
        let stamp = now();
        let updated = self.store.modify(&PODS, ns, name, |p| {
            if meta(p, "uid") != uid {
                return;
            }
            set_condition(
                p,
                "PodScheduled",
                "False",
                Some("Unschedulable"),
                Some(message),
                &stamp,
            );
        });
        if let Some(p) = updated {
            self.events
                .record(&p, None, EventType::Warning, "FailedScheduling", message);
        }
    }
}

/// Set condition `kind` of a pod's status (keeping its lastTransitionTime if its status did
/// not change).
pub fn set_condition(
    pod: &mut Value,
    kind: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
    stamp: &str,
) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let conds = pod["status"]
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let old = conds.iter().find(|c| c.get("type") == Some(&json!(kind)));
    let since = match old {
        Some(o) if o.get("status") == Some(&json!(status)) => {
            o.get("lastTransitionTime").cloned().unwrap_or(json!(stamp))
        }
        _ => json!(stamp),
    };
    let mut c = json!({
        "type": kind,
        "status": status,
        "lastProbeTime": null,
        "lastTransitionTime": since,
    });
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    let mut out: Vec<Value> = conds
        .into_iter()
        .filter(|x| x.get("type") != Some(&json!(kind)))
        .collect();
    out.push(c);
    pod["status"]["conditions"] = json!(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fall_back_to_limits() {
        let p = json!({"spec": {"containers": [
            {"resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}}},
            {"resources": {"requests": {"memory": "512Mi"}}},
        ]}});
        assert_eq!(
            requests(&p),
            Requests {
                cpu_millis: 500,
                memory_bytes: (1 << 30) + (512 << 20),
                gpus: 1
            }
        );
    }
}
