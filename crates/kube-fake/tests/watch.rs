//! Watches: kube-rs's own `watcher` (list, watch, and the relist after `410 Gone` when the
//! history it resumes from was compacted away), and raw HTTP watches: the `ERROR` event for a
//! too-old resourceVersion, the exact replay of missed events, selector transitions,
//! bookmarks and the streaming list (`sendInitialEvents`).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Env;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube_fake::Options;
use serde_json::{json, Value};

fn configmap(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

fn rv_of(cm: &ConfigMap) -> u64 {
    cm.metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap()
}

/// The next watcher event that is not an error (errors are counted), within 10 s.
async fn next_event<S>(s: &mut S, errors: &mut Vec<String>) -> Event<ConfigMap>
where
    S: Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
{
    loop {
        let got = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("a watcher event within 10 s")
            .expect("the watcher stream does not end");
        match got {
            Ok(e) => return e,
            Err(e) => errors.push(e.to_string()),
        }
    }
}

fn name(cm: &ConfigMap) -> String {
    cm.metadata.name.clone().unwrap()
}

#[tokio::test]
async fn kube_watcher_lists_watches_and_relists_after_gone() {
    let env = Env::start(Options::default()).await;
    let cms: Api<ConfigMap> = env.api();
    cms.create(&PostParams::default(), &configmap("before", json!({})))
        .await
        .unwrap();
    let mut w = watcher::watcher(cms.clone(), watcher::Config::default()).boxed();
    let mut errors = Vec::new();
    assert!(matches!(next_event(&mut w, &mut errors).await, Event::Init));
    match next_event(&mut w, &mut errors).await {
        Event::InitApply(cm) => assert_eq!(name(&cm), "before"),
        other => panic!("expected InitApply(before), got {other:?}"),
    }
    assert!(matches!(
        next_event(&mut w, &mut errors).await,
        Event::InitDone
    ));

    cms.create(&PostParams::default(), &configmap("live", json!({})))
        .await
        .unwrap();
    match next_event(&mut w, &mut errors).await {
        Event::Apply(cm) => assert_eq!(name(&cm), "live"),
        other => panic!("expected Apply(live), got {other:?}"),
    }
    cms.delete("before", &DeleteParams::default())
        .await
        .unwrap();
    match next_event(&mut w, &mut errors).await {
        Event::Delete(cm) => assert_eq!(name(&cm), "before"),
        other => panic!("expected Delete(before), got {other:?}"),
    }
    assert!(errors.is_empty(), "{errors:?}");

    // The watch ends; while the watcher is away, "live" changes, then the history goes: the
    // watcher resumes from its resourceVersion, gets 410 Gone, and lists again.
    env.cluster.close_watches();
    cms.patch(
        "live",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "while-away"}})),
    )
    .await
    .unwrap();
    env.cluster.compact();
    assert!(matches!(next_event(&mut w, &mut errors).await, Event::Init));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("410") || e.contains("too old resource version")),
        "the watcher saw no 410: {errors:?}"
    );
    match next_event(&mut w, &mut errors).await {
        Event::InitApply(cm) => {
            assert_eq!(name(&cm), "live");
            assert_eq!(
                cm.data.unwrap().get("k").map(String::as_str),
                Some("while-away")
            );
        }
        other => panic!("expected InitApply(live), got {other:?}"),
    }
    assert!(matches!(
        next_event(&mut w, &mut errors).await,
        Event::InitDone
    ));
    // And it watches again.
    cms.create(&PostParams::default(), &configmap("after", json!({})))
        .await
        .unwrap();
    match next_event(&mut w, &mut errors).await {
        Event::Apply(cm) => assert_eq!(name(&cm), "after"),
        other => panic!("expected Apply(after), got {other:?}"),
    }
}

#[tokio::test]
async fn kube_streaming_list_watcher() {
    let env = Env::start(Options::default()).await;
    let cms: Api<ConfigMap> = env.api();
    cms.create(&PostParams::default(), &configmap("a", json!({})))
        .await
        .unwrap();
    let mut w = watcher::watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut errors = Vec::new();
    assert!(matches!(next_event(&mut w, &mut errors).await, Event::Init));
    assert!(
        matches!(next_event(&mut w, &mut errors).await, Event::InitApply(cm) if name(&cm) == "a")
    );
    assert!(matches!(
        next_event(&mut w, &mut errors).await,
        Event::InitDone
    ));
    cms.create(&PostParams::default(), &configmap("b", json!({})))
        .await
        .unwrap();
    assert!(matches!(next_event(&mut w, &mut errors).await, Event::Apply(cm) if name(&cm) == "b"));
    assert!(errors.is_empty(), "{errors:?}");
}

/// A raw watch's lines.
struct Lines {
    stream: futures::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    buf: Vec<u8>,
}

impl Lines {
    /// The response's status and headers, and its lines.
    async fn open(url: String) -> (Head, Lines) {
        let resp = reqwest::get(url).await.unwrap();
        let head = Head {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
        };
        (
            head,
            Lines {
                stream: resp.bytes_stream().boxed(),
                buf: Vec::new(),
            },
        )
    }

    /// The next event, or `None` when the stream ends; panics after 10 s.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("a watch event within 10 s");
            match chunk {
                Some(c) => self.buf.extend_from_slice(&c.unwrap()),
                None => {
                    assert!(self.buf.is_empty(), "a partial line at the end");
                    return None;
                }
            }
        }
    }

    /// The next non-bookmark event as (type, name).
    async fn next_change(&mut self) -> Option<(String, String)> {
        loop {
            let e = self.next().await?;
            let t = e["type"].as_str().unwrap().to_string();
            if t == "BOOKMARK" {
                continue;
            }
            return Some((
                t,
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            ));
        }
    }
}

struct Head {
    status: u16,
    headers: reqwest::header::HeaderMap,
}

fn pair(t: &str, n: &str) -> Option<(String, String)> {
    Some((t.to_string(), n.to_string()))
}

#[tokio::test]
async fn raw_watch_from_a_compacted_version_gets_an_error_event() {
    let env = Env::start(Options::default()).await;
    let cms: Api<ConfigMap> = env.api();
    let old = rv_of(
        &cms.create(&PostParams::default(), &configmap("a", json!({})))
            .await
            .unwrap(),
    );
    cms.create(&PostParams::default(), &configmap("b", json!({})))
        .await
        .unwrap();
    env.cluster.compact();
    let url = format!(
        "{}/api/v1/namespaces/{}/configmaps?watch=true&resourceVersion={old}",
        env.cluster.url(),
        env.ns
    );
    let (resp, mut lines) = Lines::open(url).await;
    assert_eq!(resp.status, 200);
    let e = lines.next().await.expect("one event");
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["kind"], "Status");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(e["object"]["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!("too old resource version: {old} (")));
    assert!(
        lines.next().await.is_none(),
        "the stream ends after the error"
    );

    // A list at an exact, compacted resourceVersion is 410 too; one too new is 504.
    let list = |rv: u64| {
        format!(
            "{}/api/v1/namespaces/{}/configmaps?resourceVersion={rv}&resourceVersionMatch=Exact",
            env.cluster.url(),
            env.ns
        )
    };
    let r = reqwest::get(list(old)).await.unwrap();
    assert_eq!(r.status(), 410);
    let r = reqwest::get(list(old + 1_000_000)).await.unwrap();
    assert_eq!(r.status(), 504);
}

#[tokio::test]
async fn raw_watch_replays_exactly_the_missed_events() {
    let env = Env::start(Options::default()).await;
    let cms: Api<ConfigMap> = env.api();
    cms.create(&PostParams::default(), &configmap("b", json!({})))
        .await
        .unwrap();
    let from = env.cluster.url();
    let before: Value = reqwest::get(format!("{from}/api/v1/namespaces/{}/configmaps", env.ns))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rv = before["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    // Missed: a create, a modify, a delete (and a change in another namespace, not ours).
    cms.create(&PostParams::default(), &configmap("a", json!({})))
        .await
        .unwrap();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("b", &DeleteParams::default()).await.unwrap();
    let other: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    other
        .create(
            &PostParams::default(),
            &configmap(&common::unique("elsewhere"), json!({})),
        )
        .await
        .unwrap();
    let (resp, mut lines) = Lines::open(format!(
        "{from}/api/v1/namespaces/{}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=2",
        env.ns
    ))
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.headers
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("chunked")
    );
    assert_eq!(lines.next_change().await, pair("ADDED", "a"));
    assert_eq!(lines.next_change().await, pair("MODIFIED", "a"));
    assert_eq!(lines.next_change().await, pair("DELETED", "b"));
    // Then nothing until timeoutSeconds ends the stream.
    assert_eq!(lines.next_change().await, None);
}

#[tokio::test]
async fn raw_selector_watch_sees_labels_come_and_go() {
    let env = Env::start(Options::default()).await;
    let cms: Api<ConfigMap> = env.api();
    cms.create(&PostParams::default(), &configmap("x", json!({})))
        .await
        .unwrap();
    let (_, mut lines) = Lines::open(format!(
        "{}/api/v1/namespaces/{}/configmaps?watch=true&labelSelector=sel%3Dyes",
        env.cluster.url(),
        env.ns
    ))
    .await;
    let label = |v: Value| Patch::Merge(json!({"metadata": {"labels": {"sel": v}}}));
    cms.patch("x", &PatchParams::default(), &label(json!("yes")))
        .await
        .unwrap();
    cms.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    cms.patch("x", &PatchParams::default(), &label(json!("no")))
        .await
        .unwrap();
    cms.delete("x", &DeleteParams::default()).await.unwrap();
    // A sentinel: everything before it has been delivered.
    cms.create(
        &PostParams::default(),
        &configmap("sentinel", json!({"sel": "yes"})),
    )
    .await
    .unwrap();
    assert_eq!(lines.next_change().await, pair("ADDED", "x"));
    assert_eq!(lines.next_change().await, pair("MODIFIED", "x"));
    assert_eq!(lines.next_change().await, pair("DELETED", "x"));
    assert_eq!(lines.next_change().await, pair("ADDED", "sentinel"));
}

#[tokio::test]
async fn raw_streaming_list_and_bookmarks() {
    let env = Env::start(Options::default()).await;
    let cms: Api<ConfigMap> = env.api();
    cms.create(&PostParams::default(), &configmap("a", json!({})))
        .await
        .unwrap();
    let base = format!(
        "{}/api/v1/namespaces/{}/configmaps",
        env.cluster.url(),
        env.ns
    );
    let (_, mut lines) = Lines::open(format!(
        "{base}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    ))
    .await;
    let e = lines.next().await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("a"))
    );
    let b = lines.next().await.unwrap();
    assert_eq!(b["type"], "BOOKMARK");
    assert_eq!(
        b["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(b["object"]["kind"], "ConfigMap");
    // A periodic bookmark carries the latest resourceVersion (the watch saw everything to it).
    let latest = rv_of(
        &cms.create(&PostParams::default(), &configmap("b", json!({})))
            .await
            .unwrap(),
    );
    assert_eq!(lines.next_change().await, pair("ADDED", "b"));
    let mut bookmark = lines.next().await.unwrap();
    while bookmark["type"] != "BOOKMARK" {
        bookmark = lines.next().await.unwrap();
    }
    let brv: u64 = bookmark["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(brv >= latest, "{brv} < {latest}");

    // sendInitialEvents without NotOlderThan is invalid.
    let r = reqwest::get(format!(
        "{base}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
}
