//! The Kubernetes backend end to end: the real `orrery serve` with `spawner.backend =
//! "kubernetes"`, its kube-rs client talking to an API server, notebook servers and remote
//! kernels as pods.
//!
//! No API server can be installed on the development and CI machines, so in CI the cluster is
//! `crates/kube-fake`: an in-repo fake API server (watches, resourceVersions, 410 Gone, label
//! and field selectors, graceful deletion) with a fake kubelet that runs each scheduled pod as
//! a Docker container of the test image. It cannot enforce NetworkPolicy (the policy is checked
//! as an object). The same journey runs against a real cluster with `tests/k8s/e2e.sh`
//! (`real_cluster_journey`, ignored unless asked for; CI does not run it).
//!
//! The journey: Chromium logs in, the server pod starts, JupyterLab runs a cell in a remote
//! kernel pod (not in the notebook pod; the kernel's key only in the kernel's pod); the idle
//! kernel's pod is reclaimed and re-created behind the same kernel id; the daemon restarts and
//! takes back the server and the kernel pod with its state; stopping the server removes its
//! pods and keeps the home PVC.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::browser::BrowserEnv;
use crate::common::docker::{docker, proxied_json, server_api};
use crate::common::{Daemon, ADMIN_SERVICE_TOKEN as ADMIN};
use crate::gateway_e2e::{interrupt_a_sleep, open_channels, run, wait_idle};

/// The cluster a journey runs on.
struct Cluster {
    /// The fake, when it is one (dropped last: it removes its containers).
    fake: Option<kube_fake::FakeCluster>,
    kubeconfig: PathBuf,
    namespace: String,
    /// Where pods reach the hub.
    hub_address: String,
    client: kube::Client,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// The fake API server with its kubelet on a Docker network of this test's own.
    async fn fake(tag: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let network = format!("orrery-k8s-{tag}-{}", std::process::id());
        let fake = kube_fake::FakeCluster::start(kube_fake::Options {
            kubelet: Some(kube_fake::KubeletOptions {
                network,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("the fake API server starts");
        let kubeconfig = dir.path().join("kubeconfig");
        fake.write_kubeconfig(&kubeconfig, "default").unwrap();
        let hub_address = fake
            .gateway_ip()
            .expect("the kubelet's network has a gateway")
            .to_string();
        let client = client(&kubeconfig).await;
        Cluster {
            fake: Some(fake),
            kubeconfig,
            namespace: "default".into(),
            hub_address,
            client,
            _dir: dir,
        }
    }

    /// The cluster `KUBECONFIG` names (`tests/k8s/e2e.sh` sets the rest).
    async fn real() -> Cluster {
        let need = |k: &str| {
            std::env::var(k).unwrap_or_else(|_| panic!("{k} must be set (see tests/k8s/e2e.sh)"))
        };
        let kubeconfig = PathBuf::from(need("KUBECONFIG"));
        Cluster {
            fake: None,
            client: client(&kubeconfig).await,
            kubeconfig,
            namespace: need("ORRERY_K8S_NAMESPACE"),
            hub_address: need("ORRERY_K8S_HUB_ADDRESS"),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The daemon's config on this cluster: `image`, remote kernels, and `extra` tables.
    fn config(&self, image: &str, extra: &str) -> String {
        format!(
            "[spawner]\nbackend = \"kubernetes\"\nstart_timeout = \"180s\"\nslow_spawn_timeout = \"60s\"\n\n\
             [spawner.docker]\nimage = \"{image}\"\n\n\
             [spawner.kubernetes]\nkubeconfig = \"{}\"\nnamespace = \"{}\"\nhub_address = \"{}\"\n\
             home_size = \"1Gi\"\n\n[cull]\nenabled = false\n\n{extra}\n",
            self.kubeconfig.display(),
            self.namespace,
            self.hub_address
        )
    }

    /// This namespace's pods of `kind` for `user` (by the labels Orrery puts on them).
    async fn pods(&self, user: &str, kind: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        api.list(
            &ListParams::default()
                .labels(&format!("org.orrery.kind={kind},org.orrery.user={user}")),
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
    }

    /// The name of kernel `kid`'s live pod, if it has one.
    async fn kernel_pod(&self, user: &str, kid: &str) -> Option<String> {
        self.pods(user, "kernel")
            .await
            .into_iter()
            .find(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("org.orrery.kernel"))
                    .is_some_and(|k| k == kid)
            })
            .and_then(|p| p.metadata.name)
    }

    /// The Docker container the fake kubelet runs pod `name` in.
    fn container_of(&self, name: &str) -> Option<String> {
        self.fake.as_ref()?;
        let (_, out, _) = docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=io.kubernetes.pod.name={name}"),
        ]);
        out.lines().next().map(str::to_string)
    }
}

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// `orrery ARGS…` on the daemon's config, which must succeed.
fn cli(d: &Daemon, args: &[&str]) {
    let (code, out, err) = d.cli(args, None);
    assert_eq!(code, 0, "orrery {args:?}: {out}{err}");
}

/// Starts `user`'s default server through the API and waits until the hub says it is ready.
async fn start_server(d: &Daemon, user: &str) {
    let (s, b) = server_api(d, "POST", user, ADMIN).await;
    assert!(s == 201 || s == 202, "spawn {user}: {s} {b}\n{}", d.log());
    wait_ready(d, user).await;
}

/// Waits until the hub says `user`'s default server is ready.
async fn wait_ready(d: &Daemon, user: &str) {
    until(
        "the server is ready",
        Duration::from_secs(300),
        d,
        || async {
            let (_, u, _) = d
                .api("GET", &format!("/users/{user}"), Some(ADMIN), None)
                .await;
            assert!(
                !u["servers"][""].is_null(),
                "the spawn failed: {u}\n{}",
                d.log()
            );
            u["servers"][""]["ready"] == true
        },
    )
    .await;
}

/// Waits until `cond` holds, checking every 250 ms.
async fn until<F, Fut>(what: &str, within: Duration, d: &Daemon, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while !cond().await {
        assert!(
            t.elapsed() < within,
            "{what}: not within {within:?}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Everything after the server runs: a kernel pod, reclaim and re-creation, a daemon restart.
async fn kernels_reclaim_and_restart(c: &Cluster, d: &mut Daemon, user: &str, kid: &str) {
    let token = d.token_for(user).await;
    wait_idle(d, user, &token, kid).await;
    let first = c.kernel_pod(user, kid).await.expect("the kernel's pod");
    let mut ws = open_channels(d, user, &token, kid).await;
    assert_eq!(run(&mut ws, "print(6 * 7)").await, "42\n");
    // Interrupt: a pod cannot be signalled through the API, so the kernel is interrupted by
    // message (`interrupt_request` on its control channel), as the kernel's spec allows.
    interrupt_a_sleep(d, user, &token, kid, &mut ws, Duration::from_secs(5)).await;
    let _ = ws.close(None).await;

    // Idle past the timeout (set by a live reload): the pod goes, the kernel stays listed.
    cli(d, &["config", "set", "kernels.idle_timeout", "3s"]);
    cli(d, &["config", "set", "kernels.cull_interval", "1s"]);
    cli(d, &["config", "reload"]);
    until(
        "the idle kernel's pod is reclaimed",
        Duration::from_secs(60),
        d,
        || async { c.kernel_pod(user, kid).await.is_none() },
    )
    .await;
    let listed = wait_idle(d, user, &token, kid).await;
    assert_eq!(listed["id"], kid);

    // The next execute re-creates it behind the same id, in a new pod.
    let mut ws = open_channels(d, user, &token, kid).await;
    let printed = run(&mut ws, "x = 41; print('x' in dir())").await;
    assert!(printed.ends_with("True\n"), "{printed}");
    let second = c
        .kernel_pod(user, kid)
        .await
        .expect("a new pod behind the same id");
    assert_ne!(first, second);
    let _ = ws.close(None).await;
    cli(d, &["config", "set", "kernels.idle_timeout", "0s"]);
    cli(d, &["config", "reload"]);

    // The daemon restarts (an upgrade): the server and the kernel pod are taken back, state kept.
    d.stop();
    d.spawn().await;
    wait_idle(d, user, &token, kid).await;
    assert_eq!(
        c.kernel_pod(user, kid).await.as_deref(),
        Some(second.as_str())
    );
    let mut ws = open_channels(d, user, &token, kid).await;
    assert_eq!(run(&mut ws, "print(x + 1)").await, "42\n");
    let _ = ws.close(None).await;
    assert_eq!(c.pods(user, "notebook").await.len(), 1, "one server pod");

    // Stopping the server removes its pods; the home PVC stays.
    let (status, _) = server_api(d, "DELETE", user, &token).await;
    assert!(status == 202 || status == 204, "stop: {status}");
    until(
        "the server's pods are gone",
        Duration::from_secs(60),
        d,
        || async {
            c.pods(user, "notebook").await.is_empty() && c.pods(user, "kernel").await.is_empty()
        },
    )
    .await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), &c.namespace);
    let homes = pvcs
        .list(&ListParams::default().labels(&format!("org.orrery.user={user}")))
        .await
        .unwrap();
    assert_eq!(homes.items.len(), 1, "the home PVC stays");
}

impl Cluster {
    /// Stop the fake (its containers, network and the volumes of its PVCs go).
    async fn finish(mut self) {
        if let Some(fake) = self.fake.take() {
            fake.remove_volumes().await;
            fake.shutdown().await;
        }
    }
}

/// The isolation policy: only the hub may connect to this hub's pods.
async fn assert_isolation(c: &Cluster) {
    let policies: Api<NetworkPolicy> = Api::namespaced(c.client.clone(), &c.namespace);
    let list = policies.list(&ListParams::default()).await.unwrap().items;
    let ours = list
        .iter()
        .find(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("orrery-isolation-"))
        })
        .expect("the isolation NetworkPolicy exists");
    let spec = ours.spec.as_ref().unwrap();
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
    let from = spec.ingress.as_ref().unwrap()[0].from.as_ref().unwrap();
    assert_eq!(
        from[0].ip_block.as_ref().unwrap().cidr,
        format!("{}/32", c.hub_address),
        "only the hub's address may connect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_runs_on_the_kubernetes_backend_from_browser_to_restart() {
    let _serial = crate::common::docker::serial().await;
    let env = BrowserEnv::new("k8s", "kubernetes");
    let c = Cluster::fake("journey").await;
    let mut d = Daemon::start(&c.config(&env.image, "[kernels]\nremote = true\n")).await;
    let user = env.user.clone();
    d.create_users(&[user.as_str()], false).await;

    // Chromium: login, the server pod, JupyterLab, a cell in a remote kernel pod.
    let summary = env.flow(
        &d,
        &[
            "--remote-kernels".into(),
            "--orrery".into(),
            env!("CARGO_BIN_EXE_orrery").into(),
            "--config".into(),
            d.config_path.clone().into(),
        ],
        Duration::from_secs(480),
    );
    env.assert_png("jupyterlab-remote.png");
    let kid = summary["kernel_id"]
        .as_str()
        .expect("the kernel's id")
        .to_string();
    let kernel_pod = c
        .kernel_pod(&user, &kid)
        .await
        .expect("the kernel runs in a pod");
    let server_pod = c.pods(&user, "notebook").await;
    assert_eq!(server_pod.len(), 1, "one server pod");
    let server_pod = server_pod[0].metadata.name.clone().unwrap();
    // The cell ran in the kernel's pod (its hostname is the pod's name), not the server's.
    assert_eq!(summary["output"], kernel_pod.as_str(), "{summary}");
    assert_ne!(summary["output"], server_pod.as_str(), "{summary}");

    // The kernel's connection file is in the kernel's pod only.
    let kernel_c = c
        .container_of(&kernel_pod)
        .expect("the kernel pod's container");
    let server_c = c
        .container_of(&server_pod)
        .expect("the server pod's container");
    let (ok, conn, err) = docker(&[
        "exec",
        &kernel_c,
        "cat",
        "/etc/orrery-kernel/connection.json",
    ]);
    assert!(ok, "{err}");
    let conn: Value = serde_json::from_str(&conn).unwrap();
    assert_eq!(conn["key"].as_str().map(str::len), Some(64), "{conn}");
    let (ok, _, _) = docker(&["exec", &server_c, "ls", "/etc/orrery-kernel"]);
    assert!(!ok, "the server pod has no kernel connection files");
    let (_, id, _) = docker(&["exec", &kernel_c, "id", "-u"]);
    assert_eq!(id, "1000", "not root");
    assert_isolation(&c).await;

    // The home is the user's PVC in both pods.
    let token = d.token_for(&user).await;
    proxied_json(
        &d,
        "PUT",
        &user,
        "api/contents/from-lab.txt",
        &token,
        Some(serde_json::json!({"type": "file", "format": "text", "content": "hello"})),
        201,
    )
    .await;
    let (ok, text, err) = docker(&["exec", &kernel_c, "cat", "/home/jovyan/from-lab.txt"]);
    assert!(
        ok && text == "hello",
        "the kernel sees the server's home: {text} {err}"
    );

    kernels_reclaim_and_restart(&c, &mut d, &user, &kid).await;
    drop(d);
    c.finish().await;
}

/// The same journey against the cluster `KUBECONFIG` names (without the browser): run by
/// `tests/k8s/e2e.sh`, which also sets ORRERY_K8S_NAMESPACE, ORRERY_K8S_HUB_ADDRESS (where pods
/// reach this machine) and ORRERY_K8S_IMAGE (an image the cluster can pull that runs
/// `jupyterhub-singleuser`, e.g. the test image pushed to a registry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real cluster: tests/k8s/e2e.sh"]
async fn real_cluster_journey() {
    let c = Cluster::real().await;
    let image = std::env::var("ORRERY_K8S_IMAGE").expect("ORRERY_K8S_IMAGE (see tests/k8s/e2e.sh)");
    let mut d = Daemon::start(&c.config(&image, "[kernels]\nremote = true\n")).await;
    let user = format!("k8s{}", std::process::id());
    d.create_users(&[user.as_str()], false).await;
    let token = d.token_for(&user).await;
    start_server(&d, &user).await;
    assert_isolation(&c).await;
    let kid = crate::common::docker::create_kernel(&d, &user, &token, "python3").await;
    kernels_reclaim_and_restart(&c, &mut d, &user, &kid).await;
}

/// POST `user`'s server with `options`; the API's answer (the spawn waits up to its
/// `slow_spawn_timeout`, so a failure comes back as a 500 with the reason).
async fn spawn(d: &Daemon, user: &str, options: Value) -> (u16, Value) {
    let (s, b, _) = d
        .api(
            "POST",
            &format!("/users/{user}/server"),
            Some(ADMIN),
            Some(options),
        )
        .await;
    (s, b)
}

/// Starts that fail say why (through the daemon and the fake cluster's scheduler and kubelet,
/// not a mock), `orrery doctor` checks the cluster, and `orrery cleanup --homes` removes what
/// the hub made there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_starts_say_why_and_doctor_and_cleanup_know_the_cluster() {
    let _serial = crate::common::docker::serial().await;
    let image = crate::common::docker::image();
    let c = Cluster::fake("fail").await;
    // Device-plugin GPUs on a node that has none: a GPU profile can never be scheduled.
    let config = c
        .config(
            &image,
            "[[profiles]]\nname = \"cpu\"\ndefault = true\n\n\
         [[profiles]]\nname = \"missing\"\nimage = \"orrery-no-such-image:1\"\n\n\
         [[profiles]]\nname = \"gpu\"\ngpus = 1\n",
        )
        .replace("start_timeout = \"180s\"", "start_timeout = \"8s\"")
        .replace(
            "home_size = \"1Gi\"",
            "home_size = \"1Gi\"\ngpus = \"device-plugin\"",
        );
    let mut d = Daemon::start(&config).await;
    let user = format!("kf{}", std::process::id());
    d.create_users(&[user.as_str()], false).await;

    // An image the cluster cannot get: refused at once with the fix, the pod removed.
    let t = Instant::now();
    let (s, b) = spawn(&d, &user, serde_json::json!({"profile": "missing"})).await;
    let msg = b["message"].as_str().unwrap_or_default();
    assert_eq!(s, 500, "{b}\n{}", d.log());
    assert!(
        msg.contains("ImagePullBackOff")
            && msg.contains("orrery-no-such-image:1")
            && msg.contains("registry"),
        "{msg}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "not the start timeout: {:?}",
        t.elapsed()
    );
    until(
        "the failed pod is removed",
        Duration::from_secs(30),
        &d,
        || async { c.pods(&user, "notebook").await.is_empty() },
    )
    .await;

    // A GPU nobody has: the scheduler's words, at spawner.start_timeout.
    let (s, b) = spawn(&d, &user, serde_json::json!({"profile": "gpu"})).await;
    let msg = b["message"].as_str().unwrap_or_default();
    assert_eq!(s, 500, "{b}\n{}", d.log());
    assert!(
        msg.contains("start_timeout")
            && msg.contains("FailedScheduling")
            && msg.contains("Insufficient nvidia.com/gpu"),
        "{msg}"
    );

    // A server that runs; doctor sees the API server, the node and the pod's address.
    let (s, b) = spawn(&d, &user, serde_json::json!({"profile": "cpu"})).await;
    assert!(s == 201 || s == 202, "{s} {b}\n{}", d.log());
    wait_ready(&d, &user).await;
    let (code, out, err) = d.cli(&["doctor"], None);
    for want in [
        "the API server answers; namespace default has 1 Orrery pod(s)",
        "1 node(s) Ready",
        "this machine reaches the 1 running pod(s) at their pod IPs",
    ] {
        assert!(
            out.contains(want),
            "doctor ({code}) lacks {want:?}:\n{out}{err}"
        );
    }

    // Uninstall: with the daemon stopped, cleanup removes pods, policy and homes.
    d.stop();
    let (code, out, err) = d.cli(&["cleanup", "--homes"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("removed notebook pod") && out.contains("removed home PVC"),
        "{out}"
    );
    until("the pods are gone", Duration::from_secs(30), &d, || async {
        c.pods(&user, "notebook").await.is_empty()
    })
    .await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), &c.namespace);
    let left = pvcs.list(&ListParams::default()).await.unwrap().items;
    assert!(left.is_empty(), "{left:?}");
    let policies: Api<NetworkPolicy> = Api::namespaced(c.client.clone(), &c.namespace);
    assert!(policies
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    drop(d);
    c.finish().await;
}
