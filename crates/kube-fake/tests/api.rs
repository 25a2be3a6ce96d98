//! The API server against kube-rs, an independent client: CRUD of pods, PVCs, secrets and
//! network policies; label and field selectors; the `Status` errors (404, 409, 422, 400, 403,
//! 415) as `kube::Error::Api`; optimistic concurrency; finalizers; patches; status rules.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{api_error, Env};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube_fake::Options;
use serde_json::json;

fn pod(name: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox:1", "command": ["sleep", "60"]}]}
    }))
    .unwrap()
}

fn configmap(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    let mut n: Vec<String> = items
        .iter()
        .map(|i| i.meta().name.clone().unwrap())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn pods_crud() {
    let env = Env::start(Options::default()).await;
    let pods: Api<Pod> = env.api();
    let created = pods
        .create(&PostParams::default(), &pod("p1", json!({"app": "x"})))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some(env.ns.as_str()));
    assert!(
        meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some()
    );
    assert_eq!(meta.generation, Some(1));
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(
        created.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );

    let got = pods.get("p1").await.unwrap();
    assert_eq!(got.metadata.uid, meta.uid);

    let list = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(&list.items), vec!["p1"]);
    let list_rv: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
    let obj_rv: u64 = meta.resource_version.clone().unwrap().parse().unwrap();
    assert!(list_rv >= obj_rv);

    // generateName
    let mut g = pod("", json!({}));
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let g = pods.create(&PostParams::default(), &g).await.unwrap();
    let gname = g.metadata.name.unwrap();
    assert!(gname.starts_with("gen-") && gname.len() == 9, "{gname}");

    // Merge patch: labels; the resourceVersion moves on.
    let patched = pods
        .patch(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "web"}}})),
        )
        .await
        .unwrap();
    let labels = patched.metadata.labels.clone().unwrap();
    assert_eq!(labels.get("app").map(String::as_str), Some("x"));
    assert_eq!(labels.get("tier").map(String::as_str), Some("web"));
    assert_ne!(patched.metadata.resource_version, meta.resource_version);

    // dryRun: nothing stored.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    pods.create(&dry, &pod("dry", json!({}))).await.unwrap();
    assert!(pods.get_opt("dry").await.unwrap().is_none());

    // An unbound pod goes at once: a Status.
    let deleted = pods.delete("p1", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_right(), "{deleted:?}");
    assert_eq!(api_error(pods.get("p1").await).code, 404);

    // Pod spec updates are refused, as the real server does.
    let mut changed = pods.get(&gname).await.unwrap();
    changed.spec.as_mut().unwrap().containers[0].command = Some(vec!["true".into()]);
    let e = api_error(pods.replace(&gname, &PostParams::default(), &changed).await);
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message.contains("pod updates may not change fields"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn pvcs_secrets_network_policies() {
    let env = Env::start(Options::default()).await;
    let pvcs: Api<PersistentVolumeClaim> = env.api();
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "home"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    let c = pvcs.create(&PostParams::default(), &claim).await.unwrap();
    let st = c.status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Bound"));
    assert_eq!(st.capacity.unwrap().get("storage").unwrap().0, "1Gi");
    assert!(c.spec.unwrap().volume_name.unwrap().starts_with("pvc-"));
    // No pod uses it: the protection finalizer comes off and the claim goes.
    pvcs.delete("home", &DeleteParams::default()).await.unwrap();
    common::eventually(5, "the claim to go", || async {
        pvcs.get_opt("home").await.unwrap().is_none().then_some(())
    })
    .await;

    let secrets: Api<Secret> = env.api();
    let s: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"k": "v1"}}))
            .unwrap();
    let s = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(s.data.unwrap().get("k").unwrap().0, b"v1");
    assert!(s.string_data.is_none());
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    // A raw invalid Secret (k8s-openapi cannot even hold invalid base64): 422.
    let raw = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/namespaces/{}/secrets",
            env.cluster.url(),
            env.ns
        ))
        .json(&json!({"metadata": {"name": "bad"}, "data": {"k": "not base64!"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 422);
    let patched = secrets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"k2": "v2"}})),
        )
        .await
        .unwrap();
    let data = patched.data.unwrap();
    assert_eq!(
        (data["k"].0.as_slice(), data["k2"].0.as_slice()),
        (&b"v1"[..], &b"v2"[..])
    );
    assert_eq!(
        names(&secrets.list(&ListParams::default()).await.unwrap().items),
        vec!["s"]
    );
    assert!(secrets
        .delete("s", &DeleteParams::default())
        .await
        .unwrap()
        .is_right());
    assert!(secrets.get_opt("s").await.unwrap().is_none());

    // A claim in use by a pod stays (Terminating) until the pod goes.
    let c2 = pvcs
        .create(&PostParams::default(), &{
            let mut c = claim.clone();
            c.metadata.name = Some("data".into());
            c
        })
        .await
        .unwrap();
    assert_eq!(
        c2.metadata.finalizers,
        Some(vec!["kubernetes.io/pvc-protection".to_string()])
    );
    let pods: Api<Pod> = env.api();
    let user: Pod = serde_json::from_value(json!({
        "metadata": {"name": "user"},
        "spec": {"nodeName": "elsewhere", "containers": [{"name": "c", "image": "busybox:1"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &user).await.unwrap();
    pvcs.delete("data", &DeleteParams::default()).await.unwrap();
    assert!(pvcs
        .get("data")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_some());
    pods.delete(
        "user",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    common::eventually(5, "the released claim to go", || async {
        pvcs.get_opt("data").await.unwrap().is_none().then_some(())
    })
    .await;

    let policies: Api<NetworkPolicy> = env.api();
    let np: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "iso", "labels": {"org.orrery.hub": "i1"}},
        "spec": {"podSelector": {"matchLabels": {"org.orrery.hub": "i1"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [{"port": 8888, "protocol": "TCP"}]}]}
    }))
    .unwrap();
    policies.create(&PostParams::default(), &np).await.unwrap();
    let got = policies.get("iso").await.unwrap();
    assert_eq!(
        got.spec.unwrap().ingress.unwrap()[0]
            .ports
            .as_ref()
            .unwrap()[0]
            .protocol
            .as_deref(),
        Some("TCP")
    );
    let listed = policies
        .list(&ListParams::default().labels("org.orrery.hub=i1"))
        .await
        .unwrap();
    assert_eq!(names(&listed.items), vec!["iso"]);
    policies
        .delete("iso", &DeleteParams::default())
        .await
        .unwrap();
    assert!(policies.get_opt("iso").await.unwrap().is_none());
    let e = api_error(policies.get("iso").await);
    assert_eq!(
        e.message,
        "networkpolicies.networking.k8s.io \"iso\" not found"
    );
}

#[tokio::test]
async fn label_selectors() {
    let env = Env::start(Options::default()).await;
    let cms: Api<ConfigMap> = env.api();
    for (n, l) in [
        ("a", json!({"app": "x", "tier": "web"})),
        ("b", json!({"app": "x", "tier": "db"})),
        ("c", json!({"app": "y"})),
        ("d", json!({})),
    ] {
        cms.create(&PostParams::default(), &configmap(n, l))
            .await
            .unwrap();
    }
    let sel = |s: &'static str| {
        let cms = cms.clone();
        async move {
            names(
                &cms.list(&ListParams::default().labels(s))
                    .await
                    .unwrap()
                    .items,
            )
        }
    };
    assert_eq!(sel("app=x").await, vec!["a", "b"]);
    assert_eq!(sel("app==y").await, vec!["c"]);
    assert_eq!(sel("tier!=db").await, vec!["a", "c", "d"]);
    assert_eq!(sel("tier in (web,db)").await, vec!["a", "b"]);
    assert_eq!(sel("tier notin (web)").await, vec!["b", "c", "d"]);
    assert_eq!(sel("app").await, vec!["a", "b", "c"]);
    assert_eq!(sel("!app").await, vec!["d"]);
    assert_eq!(sel("app=x,tier!=db").await, vec!["a"]);
    let e = api_error(cms.list(&ListParams::default().labels("app in x")).await);
    assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
    assert!(
        e.message.contains("unable to parse requirement"),
        "{}",
        e.message
    );
    // deletecollection by label
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=x"),
    )
    .await
    .unwrap();
    assert_eq!(
        names(&cms.list(&ListParams::default()).await.unwrap().items),
        vec!["c", "d"]
    );
}

#[tokio::test]
async fn field_selectors() {
    let env = Env::start(Options::default()).await;
    let pods: Api<Pod> = env.api();
    for n in ["p1", "p2"] {
        pods.create(&PostParams::default(), &pod(n, json!({})))
            .await
            .unwrap();
    }
    let f = |s: String| {
        let pods = pods.clone();
        async move {
            names(
                &pods
                    .list(&ListParams::default().fields(&s))
                    .await
                    .unwrap()
                    .items,
            )
        }
    };
    assert_eq!(f("metadata.name=p2".into()).await, vec!["p2"]);
    assert_eq!(
        f(format!("metadata.namespace={}", env.ns)).await,
        vec!["p1", "p2"]
    );
    assert_eq!(
        f("status.phase=Pending,metadata.name!=p1".into()).await,
        vec!["p2"]
    );
    assert_eq!(f("spec.nodeName=".into()).await, vec!["p1", "p2"]);
    assert_eq!(
        f("status.phase==Running".into()).await,
        Vec::<String>::new()
    );
    let e = api_error(
        pods.list(&ListParams::default().fields("spec.image=x"))
            .await,
    );
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (400, "BadRequest", "field label not supported: spec.image")
    );

    let events: Api<Event> = env.api();
    let p1 = pods.get("p1").await.unwrap();
    let ev: Event = serde_json::from_value(json!({
        "metadata": {"name": "p1.1"},
        "involvedObject": {"kind": "Pod", "namespace": env.ns, "name": "p1", "uid": p1.metadata.uid},
        "reason": "Testing", "message": "hello", "type": "Warning",
        "source": {"component": "tests"}, "count": 1,
    }))
    .unwrap();
    events.create(&PostParams::default(), &ev).await.unwrap();
    let ef = |s: String| {
        let events = events.clone();
        async move {
            names(
                &events
                    .list(&ListParams::default().fields(&s))
                    .await
                    .unwrap()
                    .items,
            )
        }
    };
    assert_eq!(
        ef("involvedObject.name=p1,involvedObject.kind=Pod,reason=Testing,type=Warning".into())
            .await,
        vec!["p1.1"]
    );
    assert_eq!(
        ef(format!("involvedObject.uid={}", p1.metadata.uid.unwrap())).await,
        vec!["p1.1"]
    );
    assert_eq!(
        ef(format!("involvedObject.namespace={}", env.ns)).await,
        vec!["p1.1"]
    );
    assert!(ef("involvedObject.name=p2".into()).await.is_empty());
    assert!(ef("type!=Warning".into()).await.is_empty());
}

#[tokio::test]
async fn error_statuses() {
    let env = Env::start(Options {
        runtime_classes: vec!["nvidia".into()],
        ..Default::default()
    })
    .await;
    let pods: Api<Pod> = env.api();
    let e = api_error(pods.get("missing").await);
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (404, "NotFound", "pods \"missing\" not found")
    );
    let d = e.details.unwrap();
    assert_eq!((d.name.as_str(), d.kind.as_str()), ("missing", "pods"));

    pods.create(&PostParams::default(), &pod("p", json!({})))
        .await
        .unwrap();
    let e = api_error(
        pods.create(&PostParams::default(), &pod("p", json!({})))
            .await,
    );
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (409, "AlreadyExists", "pods \"p\" already exists")
    );

    let e = api_error(
        pods.create(&PostParams::default(), &pod("Bad_Name", json!({})))
            .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message
            .starts_with("Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""),
        "{}",
        e.message
    );
    let mut nameless = pod("x", json!({}));
    nameless.metadata.name = None;
    let e = api_error(pods.create(&PostParams::default(), &nameless).await);
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("name or generateName is required"),
        "{}",
        e.message
    );

    let elsewhere: Api<Pod> = Api::namespaced(env.client.clone(), "no-such-ns");
    let e = api_error(
        elsewhere
            .create(&PostParams::default(), &pod("p", json!({})))
            .await,
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "namespaces \"no-such-ns\" not found")
    );

    // Optimistic concurrency: a stale resourceVersion is a Conflict.
    let cms: Api<ConfigMap> = env.api();
    let first = cms
        .create(&PostParams::default(), &configmap("cm", json!({})))
        .await
        .unwrap();
    let mut newer = first.clone();
    newer.data = Some(BTreeMap::from([("k".into(), "v2".into())]));
    cms.replace("cm", &PostParams::default(), &newer)
        .await
        .unwrap();
    let mut stale = first.clone();
    stale.data = Some(BTreeMap::from([("k".into(), "v3".into())]));
    let e = api_error(cms.replace("cm", &PostParams::default(), &stale).await);
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains("the object has been modified"),
        "{}",
        e.message
    );
    let rv_patch = json!({"metadata": {"resourceVersion": first.metadata.resource_version}, "data": {"k": "v4"}});
    let e = api_error(
        cms.patch("cm", &PatchParams::default(), &Patch::Merge(rv_patch))
            .await,
    );
    assert_eq!(e.code, 409);

    // Server-side apply is not supported: 415.
    let e = api_error(
        cms.patch(
            "cm",
            &PatchParams::apply("tests"),
            &Patch::Apply(configmap("cm", json!({}))),
        )
        .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (415, "UnsupportedMediaType"));

    // Admission: the RuntimeClass must exist.
    let mut gpu = pod("gpu", json!({}));
    gpu.spec.as_mut().unwrap().runtime_class_name = Some("missing-class".into());
    let e = api_error(pods.create(&PostParams::default(), &gpu).await);
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (
            403,
            "Forbidden",
            "pod rejected: RuntimeClass \"missing-class\" not found"
        )
    );
    gpu.spec.as_mut().unwrap().runtime_class_name = Some("nvidia".into());
    pods.create(&PostParams::default(), &gpu).await.unwrap();
}

#[tokio::test]
async fn finalizers_hold_deletion() {
    let env = Env::start(Options::default()).await;
    let cms: Api<ConfigMap> = env.api();
    let mut cm = configmap("held", json!({}));
    cm.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let d = cms.delete("held", &DeleteParams::default()).await.unwrap();
    let held = d.left().expect("a held object comes back, not a Status");
    assert!(held.metadata.deletion_timestamp.is_some());
    let still = cms.get("held").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());
    // No new finalizers once deleting.
    let e = api_error(
        cms.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "x/y"]}})),
        )
        .await,
    );
    assert_eq!(e.code, 422);
    // A JSON patch removes the finalizer: the object goes.
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::<()>::Json(
            serde_json::from_value(json!([{"op": "remove", "path": "/metadata/finalizers/0"}]))
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(api_error(cms.get("held").await).code, 404);
}

#[tokio::test]
async fn status_subresource_and_patches() {
    let env = Env::start(Options::default()).await;
    let pods: Api<Pod> = env.api();
    pods.create(&PostParams::default(), &pod("p", json!({"a": "1"})))
        .await
        .unwrap();
    // The main resource does not change the status...
    let mut p = pods.get("p").await.unwrap();
    p.status.as_mut().unwrap().phase = Some("Running".into());
    p.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("b".into(), "2".into());
    let p = pods.replace("p", &PostParams::default(), &p).await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    assert_eq!(
        p.metadata.labels.unwrap().get("b").map(String::as_str),
        Some("2")
    );
    // ...and /status changes nothing else.
    let s = pods
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"phase": "Running"}, "metadata": {"labels": {"c": "3"}}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(s.status.unwrap().phase.as_deref(), Some("Running"));
    assert!(!s.metadata.labels.unwrap().contains_key("c"));
    // Strategic merge patch: treated as a merge patch.
    let s = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"a": null, "d": "4"}}})),
        )
        .await
        .unwrap();
    let l = s.metadata.labels.unwrap();
    assert!(!l.contains_key("a") && l.contains_key("d"));
    // Cluster-scoped: nodes (none without a kubelet) and namespaces.
    let nodes: Api<Node> = Api::all(env.client.clone());
    assert!(nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn namespaces_empty_themselves() {
    let env = Env::start(Options::default()).await;
    let cms: Api<ConfigMap> = env.api();
    cms.create(&PostParams::default(), &configmap("a", json!({})))
        .await
        .unwrap();
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client.clone());
    nss.delete(&env.ns, &DeleteParams::default()).await.unwrap();
    assert!(nss.get_opt(&env.ns).await.unwrap().is_none());
    assert_eq!(api_error(cms.get("a").await).code, 404);
    let e = api_error(nss.delete("default", &DeleteParams::default()).await);
    assert_eq!(e.code, 403);
}
