//! Recording core/v1 Events for the fake's own components (the scheduler, the kubelet), as
//! client-go's event recorder does: named `<object>.<hex nanoseconds>` (so listing them in
//! name order is time order), with `involvedObject`, `source`, `reportingComponent`,
//! `firstTimestamp`/`lastTimestamp`, and repeats of the same event folded into one whose
//! `count` grows.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::resources;
use crate::store::{now, Store};

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Records events as one component (`default-scheduler`, `kubelet`) on one host.
#[derive(Clone)]
pub struct Recorder {
    store: Arc<Store>,
    component: &'static str,
    host: Option<String>,
}

impl Recorder {
    pub fn new(store: Arc<Store>, component: &'static str, host: Option<String>) -> Recorder {
        Recorder {
            store,
            component,
            host,
        }
    }

    /// Record an event about `obj` (a stored object); `field_path` names a container
    /// (`spec.containers{name}`) for container events.
    pub fn record(
        &self,
        obj: &Value,
        field_path: Option<&str>,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let meta = |f: &str| {
            obj.pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (name, uid) = (meta("name"), meta("uid"));
        let ns = match meta("namespace") {
            n if n.is_empty() => "default".to_string(),
            n => n,
        };
        let mut involved = json!({
            "kind": obj.get("kind").cloned().unwrap_or(json!("")),
            "namespace": meta("namespace"),
            "name": name,
            "uid": uid,
            "apiVersion": obj.get("apiVersion").cloned().unwrap_or(json!("v1")),
            "resourceVersion": meta("resourceVersion"),
        });
        if let Some(fp) = field_path {
            involved["fieldPath"] = json!(fp);
        }
        let mut source = json!({ "component": self.component });
        if let Some(h) = &self.host {
            source["host"] = json!(h);
        }
        // The same event again: count it on the existing one.
        let same = |e: &Value| {
            e.pointer("/involvedObject/uid") == Some(&json!(uid))
                && e.pointer("/involvedObject/fieldPath")
                    .and_then(Value::as_str)
                    == field_path
                && e.get("reason") == Some(&json!(reason))
                && e.get("message") == Some(&json!(message))
                && e.get("type") == Some(&json!(kind.as_str()))
                && e.pointer("/source/component") == Some(&json!(self.component))
        };
        let existing = self
            .store
            .list(
                &resources::EVENTS,
                Some(&ns),
                &Default::default(),
                crate::store::ListRv::Latest,
            )
            .ok()
            .and_then(|(items, _)| items.into_iter().find(|e| same(e)));
        let stamp = now();
        if let Some(e) = existing {
            let ename = e
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            self.store.modify(&resources::EVENTS, &ns, &ename, |e| {
                let count = e.get("count").and_then(Value::as_i64).unwrap_or(1);
                e["count"] = json!(count + 1);
                e["lastTimestamp"] = json!(stamp);
            });
            return;
        }
        let nanos = chrono::Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .max(0);
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": { "name": format!("{}.{:x}", involved["name"].as_str().unwrap_or("object"), nanos), "namespace": ns },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": kind.as_str(),
            "source": source,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.host.clone().unwrap_or_default(),
        });
        if let Err(e) = self.store.create(&resources::EVENTS, &ns, event, false) {
            tracing::debug!(
                "recording event {reason} for {ns}/{}: {e}",
                involved["name"]
            );
        }
    }
}
