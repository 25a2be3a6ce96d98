//! Server-side printing: when a client asks for `as=Table` (kubectl's default output), lists,
//! gets and watch events are answered as `meta.k8s.io/v1` Tables with the real printers'
//! columns (pods: NAME, READY, STATUS, RESTARTS, AGE, and IP/NODE with `-o wide`; and the
//! usual columns of the other kinds).

use serde_json::{json, Value};

use crate::resources::ResourceInfo;

/// Does this `Accept` header ask for a Table?
pub fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// How much of each object a row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn from_param(p: Option<&str>) -> Include {
        match p {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

fn s<'a>(o: &'a Value, path: &str) -> &'a str {
    o.pointer(path).and_then(Value::as_str).unwrap_or("")
}

/// "5s", "3m10s", "2h", "4d" as kubectl prints ages.
fn human(secs: i64) -> String {
    let secs = secs.max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        format!("{m}m{}s", secs % 60)
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        format!("{h}h{}m", m % 60)
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        format!("{d}d{}h", h % 24)
    } else {
        format!("{d}d")
    }
}

fn age(ts: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => human((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()),
        Err(_) => "<unknown>".into(),
    }
}

fn created(o: &Value) -> String {
    age(s(o, "/metadata/creationTimestamp"))
}

fn count(o: &Value, path: &str) -> usize {
    match o.pointer(path) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn pod_status(p: &Value) -> String {
    if p.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let mut reason = s(p, "/status/phase").to_string();
    for cs in p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        if let Some(r) = cs.pointer("/state/waiting/reason").and_then(Value::as_str) {
            reason = r.to_string();
        } else if let Some(t) = cs.pointer("/state/terminated") {
            if let Some(r) = t.get("reason").and_then(Value::as_str) {
                reason = r.to_string();
            }
        }
    }
    if reason.is_empty() {
        "Pending".into()
    } else {
        reason
    }
}

/// The columns of `res`: (name, type, description, priority).
fn columns(res: &ResourceInfo) -> Vec<(&'static str, &'static str, u8)> {
    let name = ("Name", "string", 0);
    let age = ("Age", "string", 0);
    match res.plural {
        "pods" => vec![
            name,
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            age,
            ("IP", "string", 1),
            ("Node", "string", 1),
        ],
        "persistentvolumeclaims" => vec![
            name,
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            age,
        ],
        "namespaces" => vec![name, ("Status", "string", 0), age],
        "nodes" => vec![
            name,
            ("Status", "string", 0),
            ("Roles", "string", 0),
            age,
            ("Version", "string", 0),
        ],
        "configmaps" => vec![name, ("Data", "string", 0), age],
        "secrets" => vec![name, ("Type", "string", 0), ("Data", "string", 0), age],
        "services" => vec![
            name,
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            age,
        ],
        "events" => vec![
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        "networkpolicies" => vec![name, ("Pod-Selector", "string", 0), age],
        "runtimeclasses" => vec![name, ("Handler", "string", 0), age],
        _ => vec![name, age],
    }
}

fn cells(res: &ResourceInfo, o: &Value) -> Vec<Value> {
    let name = json!(s(o, "/metadata/name"));
    match res.plural {
        "pods" => {
            let statuses = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ready = statuses
                .iter()
                .filter(|c| c.get("ready") == Some(&json!(true)))
                .count();
            let total = count(o, "/spec/containers");
            let restarts: i64 = statuses
                .iter()
                .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                .sum();
            let ip = match s(o, "/status/podIP") {
                "" => "<none>",
                ip => ip,
            };
            let node = match s(o, "/spec/nodeName") {
                "" => "<none>",
                n => n,
            };
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts.to_string()),
                json!(created(o)),
                json!(ip),
                json!(node),
            ]
        }
        "persistentvolumeclaims" => {
            let modes: Vec<String> = o
                .pointer("/status/accessModes")
                .and_then(Value::as_array)
                .map(|m| {
                    m.iter()
                        .filter_map(Value::as_str)
                        .map(|m| match m {
                            "ReadWriteOnce" => "RWO".into(),
                            "ReadOnlyMany" => "ROX".into(),
                            "ReadWriteMany" => "RWX".into(),
                            "ReadWriteOncePod" => "RWOP".into(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![
                name,
                json!(s(o, "/status/phase")),
                json!(s(o, "/spec/volumeName")),
                json!(s(o, "/status/capacity/storage")),
                json!(modes.join(",")),
                json!(s(o, "/spec/storageClassName")),
                json!(created(o)),
            ]
        }
        "namespaces" => vec![name, json!(s(o, "/status/phase")), json!(created(o))],
        "nodes" => {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c.get("type") == Some(&json!("Ready"))))
                .and_then(|c| c.get("status"))
                == Some(&json!("True"));
            vec![
                name,
                json!(if ready { "Ready" } else { "NotReady" }),
                json!("<none>"),
                json!(created(o)),
                json!(s(o, "/status/nodeInfo/kubeletVersion")),
            ]
        }
        "configmaps" => vec![
            name,
            json!(count(o, "/data") + count(o, "/binaryData")),
            json!(created(o)),
        ],
        "secrets" => vec![
            name,
            json!(s(o, "/type")),
            json!(count(o, "/data")),
            json!(created(o)),
        ],
        "services" => {
            let ports: Vec<String> = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            format!(
                                "{}/{}",
                                p.get("port").cloned().unwrap_or(json!("")),
                                s(p, "/protocol")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![
                name,
                json!(s(o, "/spec/type")),
                json!(s(o, "/spec/clusterIP")),
                json!("<none>"),
                json!(if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                }),
                json!(created(o)),
            ]
        }
        "events" => {
            let last = match s(o, "/lastTimestamp") {
                "" => s(o, "/metadata/creationTimestamp"),
                t => t,
            };
            vec![
                json!(age(last)),
                json!(s(o, "/type")),
                json!(s(o, "/reason")),
                json!(format!(
                    "{}/{}",
                    s(o, "/involvedObject/kind").to_lowercase(),
                    s(o, "/involvedObject/name")
                )),
                json!(s(o, "/message")),
            ]
        }
        "networkpolicies" => {
            let sel: Vec<String> = o
                .pointer("/spec/podSelector/matchLabels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            vec![
                name,
                json!(if sel.is_empty() {
                    "<none>".to_string()
                } else {
                    sel.join(",")
                }),
                json!(created(o)),
            ]
        }
        "runtimeclasses" => vec![name, json!(s(o, "/handler")), json!(created(o))],
        _ => vec![name, json!(created(o))],
    }
}

fn row(res: &ResourceInfo, o: &Value, include: Include) -> Value {
    let mut r = json!({ "cells": cells(res, o) });
    match include {
        Include::None => {}
        Include::Metadata => {
            r["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
            });
        }
        Include::Object => r["object"] = o.clone(),
    }
    r
}

/// A Table of `objects` at resourceVersion `rv`.
pub fn table<'a>(
    res: &ResourceInfo,
    objects: impl IntoIterator<Item = &'a Value>,
    rv: Option<&str>,
    include: Include,
) -> Value {
    let defs: Vec<Value> = columns(res)
        .into_iter()
        .map(|(name, kind, priority)| {
            json!({
                "name": name,
                "type": kind,
                "format": if name == "Name" { "name" } else { "" },
                "description": name,
                "priority": priority,
            })
        })
        .collect();
    let mut meta = json!({});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": defs,
        "rows": objects.into_iter().map(|o| row(res, o, include)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(human(5), "5s");
        assert_eq!(human(190), "3m10s");
        assert_eq!(human(3600 * 5 + 120), "5h2m");
        assert_eq!(human(86400 * 10), "10d");
    }

    #[test]
    fn pod_rows() {
        let p = json!({"metadata": {"name": "p", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
        let t = table(&crate::resources::PODS, [&p], Some("5"), Include::Metadata);
        assert_eq!(t["rows"][0]["cells"][1], "0/1");
        assert_eq!(t["rows"][0]["cells"][2], "ImagePullBackOff");
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
    }
}
