//! kubectl against the fake, with the kubeconfig `write_kubeconfig` makes: get (json, name
//! with a selector, jsonpath, default table), get --watch, apply (created, unchanged,
//! configured), delete --wait=false. Without kubectl: a failure under CI=true, else skipped.
//! `KUBECTL=/path/to/kubectl` tests another one (e.g. Debian's 1.20 as well as a recent one).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::Env;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, PostParams};
use kube_fake::Options;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

/// `$KUBECTL` if set (to test another kubectl), else /usr/bin/kubectl, else the PATH's.
fn find_kubectl() -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("KUBECTL") {
        return Some(PathBuf::from(k));
    }
    let candidates = std::iter::once(PathBuf::from("/usr/bin/kubectl")).chain(
        std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("kubectl"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    candidates.into_iter().find(|p| p.is_file())
}

fn kubectl_or_skip() -> Option<PathBuf> {
    match find_kubectl() {
        Some(k) => Some(k),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("kubectl is not installed (CI=true: install it, e.g. apt-get install kubernetes-client)")
        }
        None => {
            eprintln!("SKIPPED: kubectl is not installed");
            None
        }
    }
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.bin);
        c.env("KUBECONFIG", &self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// Run to the end; stdout (panics with stderr on failure).
    async fn run(&self, args: &[&str]) -> String {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .expect("kubectl finishes within 60 s")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {stderr}\n{stdout}"
        );
        stdout
    }
}

async fn next_line(out: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(30), out.next_line())
        .await
        .expect("a line from kubectl --watch within 30 s")
        .unwrap()
        .expect("kubectl --watch keeps running")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn kubectl_get_watch_apply_delete() {
    let Some(bin) = kubectl_or_skip() else { return };
    let env = Env::start(Options::default()).await;
    let k = Kubectl {
        bin,
        kubeconfig: env.kubeconfig.clone(),
        cache: tempfile::tempdir().unwrap(),
    };
    let pods: Api<Pod> = env.api();
    for (name, labels) in [
        ("p1", json!({"app": "x", "tier": "web"})),
        ("p2", json!({"app": "x", "tier": "db"})),
        ("p3", json!({"app": "y"})),
    ] {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }

    let list: Value = serde_json::from_str(&k.run(&["get", "pods", "-o", "json"]).await).unwrap();
    let mut names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["p1", "p2", "p3"]);

    assert_eq!(
        k.run(&["get", "pods", "-l", "app=x,tier!=db", "-o", "name"])
            .await
            .trim(),
        "pod/p1"
    );
    assert_eq!(
        k.run(&["get", "pod", "p2", "-o", "jsonpath={.metadata.labels.tier}"])
            .await,
        "db"
    );
    // The default output: the server's Table.
    let table = k.run(&["get", "pods"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("p1 ") && l.contains("0/1") && l.contains("Pending")),
        "{table}"
    );
    // kubectl asks for OpenAPI (to validate and to compute patches): empty documents.
    let v2 = reqwest::get(format!("{}/openapi/v2", env.cluster.url()))
        .await
        .unwrap();
    assert_eq!(v2.status(), 200);
    let v2: Value = v2.json().await.unwrap();
    assert_eq!(v2["swagger"], "2.0");

    // --watch: the current pods, then a new one as it comes.
    let mut watch = k
        .command(&["get", "pods", "--watch", "-o", "name"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut first = vec![
        next_line(&mut out).await,
        next_line(&mut out).await,
        next_line(&mut out).await,
    ];
    first.sort();
    assert_eq!(first, vec!["pod/p1", "pod/p2", "pod/p3"]);
    let p4: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p4"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &p4).await.unwrap();
    assert_eq!(next_line(&mut out).await, "pod/p4");
    watch.kill().await.unwrap();

    // apply: created, unchanged, configured (the label visible through kube-rs).
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.yaml");
    let cm = |tier: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels:\n    tier: {tier}\ndata:\n  greeting: hello\n"
        )
    };
    write(&manifest, &cm("one"));
    let m = manifest.to_str().unwrap();
    assert_eq!(
        k.run(&["apply", "-f", m]).await.trim(),
        "configmap/settings created"
    );
    assert_eq!(
        k.run(&["apply", "-f", m]).await.trim(),
        "configmap/settings unchanged"
    );
    write(&manifest, &cm("two"));
    assert_eq!(
        k.run(&["apply", "-f", m]).await.trim(),
        "configmap/settings configured"
    );
    let cms: Api<ConfigMap> = env.api();
    let got = cms.get("settings").await.unwrap();
    assert_eq!(
        got.metadata.labels.unwrap().get("tier").map(String::as_str),
        Some("two")
    );
    assert_eq!(
        got.data.unwrap().get("greeting").map(String::as_str),
        Some("hello")
    );

    assert_eq!(
        k.run(&["delete", "pod", "p1", "--wait=false"]).await.trim(),
        "pod \"p1\" deleted"
    );
    assert!(pods.get_opt("p1").await.unwrap().is_none());
}
