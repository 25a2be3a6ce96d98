//! The cluster's own controllers that run with or without a kubelet: PVC protection (the
//! `kubernetes.io/pvc-protection` finalizer comes off a deleted claim once no running pod
//! uses it, and then the claim goes).

use std::sync::Arc;

use serde_json::{json, Value};

use crate::patch::PatchType;
use crate::resources::{PODS, PVCS};
use crate::selectors::Selector;
use crate::store::{ListRv, Store, Write};

const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";

/// Run until the store shuts down.
pub async fn run(store: Arc<Store>) {
    let mut changes = store.changes();
    let stop = store.shutdown_token();
    loop {
        release_claims(&store);
        tokio::select! {
            _ = stop.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
        }
    }
}

/// Is a non-terminated pod in `ns` using claim `name`?
fn in_use(pods: &[Arc<Value>], ns: &str, name: &str) -> bool {
    pods.iter().any(|p| {
        p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
            && !matches!(
                p.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            )
            && p.pointer("/spec/volumes")
                .and_then(Value::as_array)
                .is_some_and(|vs| {
                    vs.iter().any(|v| {
                        v.pointer("/persistentVolumeClaim/claimName")
                            .and_then(Value::as_str)
                            == Some(name)
                    })
                })
    })
}

fn release_claims(store: &Store) {
    let all = Selector::default();
    let Ok((claims, _)) = store.list(&PVCS, None, &all, ListRv::Latest) else {
        return;
    };
    let deleting: Vec<_> = claims
        .into_iter()
        .filter(|c| c.pointer("/metadata/deletionTimestamp").is_some())
        .filter(|c| {
            c.pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|x| x == PVC_PROTECTION))
        })
        .collect();
    if deleting.is_empty() {
        return;
    }
    let Ok((pods, _)) = store.list(&PODS, None, &all, ListRv::Latest) else {
        return;
    };
    for c in deleting {
        let ns = c
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        let name = c
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if in_use(&pods, ns, name) {
            continue;
        }
        let rest: Vec<Value> = c
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|f| f.iter().filter(|x| *x != PVC_PROTECTION).cloned().collect())
            .unwrap_or_default();
        let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": c.pointer("/metadata/resourceVersion")}});
        if let Err(e) = store.patch(
            &PVCS,
            ns,
            name,
            PatchType::Merge,
            &patch,
            Write::Main,
            false,
        ) {
            tracing::debug!("releasing claim {ns}/{name}: {e}");
        }
    }
}
