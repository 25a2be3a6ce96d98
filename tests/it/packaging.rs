//! The installer and packages ship copies of the unit and production config: they must stay
//! identical to the files in the repo, and the production config must be valid. The
//! installer's `--backend k3s` steps run against stubs (tests/bootstrap/), and the manifests in
//! packaging/kubernetes/ are read into Kubernetes' own types and checked.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;

fn repo(p: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn bootstrap(arg: &str) -> String {
    let out = Command::new("sh")
        .arg(repo("bootstrap/bootstrap.sh"))
        .arg(arg)
        .output()
        .expect("run bootstrap.sh");
    assert!(
        out.status.success(),
        "bootstrap.sh {arg}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bootstrap_embeds_the_repo_unit_and_config() {
    let unit = std::fs::read_to_string(repo("systemd/orrery.service")).unwrap();
    assert_eq!(
        bootstrap("--print-unit").trim_end(),
        unit.trim_end(),
        "bootstrap.sh's unit differs from systemd/orrery.service"
    );
    let config = std::fs::read_to_string(repo("packaging/config.toml")).unwrap();
    assert_eq!(
        bootstrap("--print-config").trim_end(),
        config.trim_end(),
        "bootstrap.sh's config differs from packaging/config.toml"
    );
}

#[test]
fn production_config_is_valid_and_public() {
    let cfg = orrery::config::load_file(&repo("packaging/config.toml"))
        .expect("packaging/config.toml is valid");
    assert_eq!(cfg.http.port, 80);
    assert_eq!(cfg.spawner.backend, orrery::config::BackendKind::Docker);
    assert_eq!(cfg.auth.kind, orrery::config::AuthType::Firstuse);
}

// ---- bootstrap.sh --backend k3s -------------------------------------------------------------
//
// k3s cannot be downloaded (the development and CI machines reach package registries only) nor
// run here, so these tests run the script's k3s steps with stand-ins first on PATH
// (tests/bootstrap/README.md): a fake k3s installer, k3s printing one node, an orrery that
// records `config set`, and curl, apt-get, dpkg-query and systemctl that only record calls.
// tests/bootstrap/k3s-steps.sh sources the script without running main
// (ORRERY_BOOTSTRAP_SOURCE_ONLY=1) and runs the k3s steps and the config step; --dry-run runs
// the whole script.

/// The stubs in a temporary directory (`$STUB_DIR`), with `$STUB_DIR/bin` for PATH.
struct K3sRig {
    dir: tempfile::TempDir,
}

/// The address the stub k3s gives its node.
const STUB_NODE_IP: &str = "10.1.2.3";

impl K3sRig {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let rig = K3sRig { dir };
        for (stub, to) in [
            ("curl.sh", "bin/curl"),
            ("orrery.sh", "bin/orrery"),
            ("logged.sh", "bin/apt-get"),
            ("logged.sh", "bin/dpkg-query"),
            ("logged.sh", "bin/systemctl"),
            ("k3s.sh", "k3s.sh"),
            ("k3s-install.sh", "k3s-install.sh"),
        ] {
            rig.install_stub(stub, to);
        }
        rig
    }

    fn install_stub(&self, stub: &str, to: &str) {
        let to = self.path(to);
        std::fs::copy(repo(&format!("tests/bootstrap/{stub}")), &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A file the stubs write ("" if they did not).
    fn read(&self, p: &str) -> String {
        std::fs::read_to_string(self.path(p)).unwrap_or_default()
    }

    fn write(&self, p: &str, text: &str) {
        std::fs::write(self.path(p), text).unwrap();
    }

    /// `sh` with the stubs first on PATH and none of the caller's ORRERY_* or k3s settings.
    fn sh(&self) -> Command {
        let mut cmd = Command::new("sh");
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("ORRERY_")
                || key.starts_with("INSTALL_K3S_")
                || key.starts_with("K3S_")
            {
                cmd.env_remove(key);
            }
        }
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        cmd.env("STUB_DIR", self.dir.path())
            .env("PATH", format!("{}:{path}", self.path("bin").display()))
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// tests/bootstrap/k3s-steps.sh: install k3s, wait for the node, the config step.
    fn steps(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.sh()
            .arg(repo("tests/bootstrap/k3s-steps.sh"))
            .arg(repo("bootstrap/bootstrap.sh"))
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// The whole script.
    fn bootstrap(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.sh()
            .arg(repo("bootstrap/bootstrap.sh"))
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// An installed hub with the default (docker) config, as before `--backend k3s`.
    fn existing_docker_config(&self) {
        self.write("etc/config.toml", &bootstrap("--print-config"));
        self.write("orrery-store", "spawner.backend=docker\n");
    }

    fn calls(&self) -> Vec<String> {
        self.read("calls.log").lines().map(str::to_owned).collect()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

fn assert_failure(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should fail with 1:\n{}\n{}",
        stdout(out),
        stderr(out)
    );
}

#[test]
fn bootstrap_k3s_installs_k3s_once_and_sets_exactly_the_kubernetes_keys() {
    let rig = K3sRig::new();
    rig.existing_docker_config();
    let mirror = "https://mirror.example.org/k3s/install.sh";
    let env = [("ORRERY_K3S_INSTALLER_URL", mirror)];

    let out = rig.steps(&["--backend", "k3s"], &env);
    assert_success(&out, "the k3s steps");
    assert_eq!(
        rig.read("installer.log"),
        "installer ran INSTALL_K3S_SKIP_DOWNLOAD=\n",
        "the downloaded installer runs once, downloading k3s itself"
    );
    let downloads: Vec<_> = rig
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("curl "))
        .collect();
    assert_eq!(downloads.len(), 1, "{downloads:?}");
    assert!(
        downloads[0].ends_with(&format!(" {mirror}")),
        "{downloads:?}"
    );
    // The backend's settings first, then the switch; exactly these three, with the node's IP.
    let kubeconfig = rig.path("k3s.yaml");
    let expected_sets = format!(
        "spawner.kubernetes.kubeconfig {}\nspawner.kubernetes.hub_address {STUB_NODE_IP}\nspawner.backend kubernetes\n",
        kubeconfig.display()
    );
    assert_eq!(rig.read("config-set.log"), expected_sets);
    let text = stdout(&out);
    assert!(text.contains("==> Installing k3s"), "{text}");
    assert!(
        text.contains("==> Waiting for the k3s node to be Ready"),
        "{text}"
    );
    assert!(
        text.contains(&format!("its InternalIP is {STUB_NODE_IP}")),
        "{text}"
    );

    // A re-run: k3s is there (command and unit), so no installer; the keys are set already.
    let out = rig.steps(&["--backend", "k3s"], &env);
    assert_success(&out, "the k3s steps, again");
    assert_eq!(
        rig.read("installer.log"),
        "installer ran INSTALL_K3S_SKIP_DOWNLOAD=\n"
    );
    assert_eq!(
        rig.calls()
            .iter()
            .filter(|c| c.starts_with("curl "))
            .count(),
        1,
        "no second download"
    );
    assert_eq!(
        rig.read("config-set.log"),
        expected_sets,
        "nothing set again"
    );
    let text = stdout(&out);
    assert!(text.contains("already installed"), "{text}");
    assert!(
        text.contains("spawner.backend is already kubernetes"),
        "{text}"
    );
}

#[test]
fn bootstrap_k3s_writes_a_new_config_with_the_kubernetes_keys() {
    let rig = K3sRig::new();
    let out = rig.steps(&["--backend", "k3s"], &[]);
    assert_success(&out, "the k3s steps");
    // A first install writes the keys into the new file (as --backend local writes its
    // backend), so there is nothing left to `config set`.
    assert_eq!(rig.read("config-set.log"), "");
    let config: toml::Table = rig
        .read("etc/config.toml")
        .parse()
        .expect("the new config is TOML");
    let spawner = config["spawner"].as_table().unwrap();
    assert_eq!(spawner["backend"].as_str(), Some("kubernetes"));
    let kube = spawner["kubernetes"].as_table().unwrap();
    assert_eq!(kube["hub_address"].as_str(), Some(STUB_NODE_IP));
    assert_eq!(
        kube["kubeconfig"].as_str(),
        Some(rig.path("k3s.yaml").to_str().unwrap())
    );
    assert_eq!(kube.len(), 2, "{kube:?}");
    orrery::config::load::parse_str(&rig.read("etc/config.toml"))
        .unwrap_or_else(|e| panic!("the new k3s config: {e}"));
    // Everything else is the file a docker install writes.
    let docker: toml::Table = bootstrap("--print-config").parse().unwrap();
    for (key, value) in &docker {
        if key != "spawner" {
            assert_eq!(config.get(key), Some(value), "{key}");
        }
    }
}

#[test]
fn bootstrap_k3s_keys_are_ones_the_real_orrery_accepts_in_that_order() {
    // The real binary in place of the stub: the keys exist, take these values, and the backend
    // is switched last (Orrery refuses the kubernetes backend before hub_address is set).
    let rig = K3sRig::new();
    std::fs::remove_file(rig.path("bin/orrery")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_orrery"), rig.path("bin/orrery")).unwrap();
    rig.write("etc/config.toml", &bootstrap("--print-config"));
    let out = rig.steps(&["--backend", "k3s"], &[]);
    assert_success(&out, "the k3s steps with the real orrery");
    let cfg = orrery::config::load_file(&rig.path("etc/config.toml")).expect("a valid config");
    assert_eq!(cfg.spawner.backend, orrery::config::BackendKind::Kubernetes);
    assert_eq!(cfg.spawner.kubernetes.hub_address, STUB_NODE_IP);
    assert_eq!(
        std::path::Path::new(&cfg.spawner.kubernetes.kubeconfig),
        rig.path("k3s.yaml")
    );
    // Run again: everything is in place, nothing changes.
    let before = rig.read("etc/config.toml");
    let out = rig.steps(&["--backend", "k3s"], &[]);
    assert_success(&out, "the k3s steps with the real orrery, again");
    assert_eq!(rig.read("etc/config.toml"), before);
}

#[test]
fn bootstrap_k3s_air_gapped_runs_the_local_installer_without_download() {
    let rig = K3sRig::new();
    rig.existing_docker_config();
    let installer = rig.path("k3s-install.sh");
    let env = [("ORRERY_K3S_INSTALLER", installer.to_str().unwrap())];

    // Without the k3s binary in place: refused before the installer runs, saying what goes where.
    let out = rig.steps(&["--backend", "k3s"], &env);
    assert_failure(&out, "an air-gapped install without the k3s binary");
    let err = stderr(&out);
    assert!(err.contains("ERROR in step 'Installing k3s'"), "{err}");
    assert!(
        err.contains(&rig.path("bin/k3s").display().to_string()),
        "{err}"
    );
    assert!(err.contains("k3s-airgap-images"), "{err}");
    assert_eq!(rig.read("installer.log"), "");

    // The binary and the images where k3s's air-gap instructions put them.
    rig.install_stub("k3s.sh", "bin/k3s");
    std::fs::create_dir_all(rig.path("images")).unwrap();
    rig.write("images/k3s-airgap-images-amd64.tar.zst", "");
    let out = rig.steps(&["--backend", "k3s"], &env);
    assert_success(&out, "an air-gapped install");
    assert_eq!(
        rig.read("installer.log"),
        "installer ran INSTALL_K3S_SKIP_DOWNLOAD=true\n"
    );
    assert!(
        !rig.calls().iter().any(|c| c.starts_with("curl ")),
        "{:?}",
        rig.calls()
    );
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "env INSTALL_K3S_SKIP_DOWNLOAD=true sh {}",
            installer.display()
        )),
        "{text}"
    );
    assert!(
        !stderr(&out).contains("no images tarball"),
        "{}",
        stderr(&out)
    );
    assert!(rig
        .read("config-set.log")
        .contains(&format!("spawner.kubernetes.hub_address {STUB_NODE_IP}\n")));
}

#[test]
fn bootstrap_k3s_fails_naming_the_step_when_the_node_never_gets_ready() {
    let rig = K3sRig::new();
    rig.existing_docker_config();
    rig.write("node-ready", "False\n");
    let started = Instant::now();
    let out = rig.steps(&["--backend", "k3s"], &[("ORRERY_K3S_READY_TIMEOUT", "2")]);
    assert_failure(&out, "waiting for a node that is never Ready");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the timeout bounds the wait"
    );
    let err = stderr(&out);
    assert!(
        err.contains("ERROR in step 'Waiting for the k3s node to be Ready'"),
        "{err}"
    );
    assert!(err.contains("not Ready after 2s"), "{err}");
    assert!(
        err.contains("stubnode False"),
        "the last answer is shown: {err}"
    );
    assert!(err.contains("journalctl -u k3s"), "{err}");
    assert_eq!(rig.read("config-set.log"), "", "the config is left alone");
}

#[test]
fn bootstrap_dry_run_with_k3s_prints_the_steps_and_changes_nothing() {
    for (args, env) in [
        (vec!["--backend", "k3s"], vec![]),
        (vec![], vec![("ORRERY_BACKEND", "k3s")]),
    ] {
        let rig = K3sRig::new();
        let orrery = rig.path("bin/orrery");
        let mut all = vec![
            "--dry-run",
            "--skip-os-check",
            "--binary",
            orrery.to_str().unwrap(),
        ];
        all.extend(args.iter().copied());
        let out = rig.bootstrap(&all, &env);
        assert_success(&out, "bootstrap.sh --dry-run with k3s");
        let text = stdout(&out);
        let mut last = 0;
        for line in [
            "==> Installing system packages",
            "==> Installing k3s",
            "$ curl -sfL --retry 3 -o /tmp/k3s-install.sh https://get.k3s.io",
            "$ sh /tmp/k3s-install.sh",
            "==> Waiting for the k3s node to be Ready",
            "==> Getting the orrery binary",
            "config set spawner.kubernetes.kubeconfig /etc/rancher/k3s/k3s.yaml",
            "config set spawner.kubernetes.hub_address NODE-IP",
            "config set spawner.backend kubernetes",
            "==> Starting orrery",
            "(dry run: nothing was changed)",
        ] {
            let at = text[last..].find(line).unwrap_or_else(|| {
                panic!("{line:?} missing or out of order ({args:?} {env:?}):\n{text}")
            });
            last += at + line.len();
        }
        assert!(
            !text.contains("docker.io"),
            "k3s needs no Docker engine:\n{text}"
        );
        // Only reads: the stubs saw no download, no k3s, no apt-get or systemctl, no config set.
        for call in rig.calls() {
            let read_only = call.starts_with("dpkg-query ")
                || (call.starts_with("orrery ") && call.contains(" config get "));
            assert!(read_only, "a dry run ran {call:?}");
        }
        assert_eq!(rig.read("installer.log"), "");
        assert!(!rig.path("bin/k3s").exists());
    }
}

#[test]
fn bootstrap_dry_run_without_k3s_has_no_k3s_steps() {
    let rig = K3sRig::new();
    let orrery = rig.path("bin/orrery");
    for (backend, docker) in [("docker", true), ("local", false)] {
        let out = rig.bootstrap(
            &[
                "--dry-run",
                "--skip-os-check",
                "--binary",
                orrery.to_str().unwrap(),
                "--backend",
                backend,
            ],
            &[],
        );
        assert_success(&out, &format!("bootstrap.sh --dry-run --backend {backend}"));
        let text = stdout(&out);
        assert!(!text.to_lowercase().contains("k3s"), "{backend}:\n{text}");
        assert_eq!(text.contains("docker.io"), docker, "{backend}:\n{text}");
        assert!(
            text.contains(&format!("config set spawner.backend {backend}")),
            "{text}"
        );
    }
}

/// Options, environment, and the error message expected.
type RefusalCase = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn bootstrap_refuses_an_unknown_backend_naming_the_valid_ones() {
    let rig = K3sRig::new();
    let cases: [RefusalCase; 5] = [
        (
            &["--backend", "k3x"],
            &[],
            "--backend k3x: the backend is docker, local or k3s",
        ),
        (
            &[],
            &[("ORRERY_BACKEND", "k3x")],
            "--backend k3x: the backend is docker, local or k3s",
        ),
        (&["--backend"], &[], "--backend needs docker, local or k3s"),
        (
            &["--backend", "k3s"],
            &[("ORRERY_K3S_READY_TIMEOUT", "soon")],
            "ORRERY_K3S_READY_TIMEOUT=soon: give a number of seconds",
        ),
        (
            &[
                "--backend",
                "k3s",
                "--user-requirements-txt-url",
                "https://example.org/r.txt",
            ],
            &[],
            "--user-requirements-txt-url builds images with the Docker engine",
        ),
    ];
    for (args, env, message) in cases {
        let out = rig.bootstrap(args, env);
        assert_failure(&out, &format!("bootstrap.sh {args:?} {env:?}"));
        assert!(
            stderr(&out).contains(message),
            "{args:?} {env:?}: {}",
            stderr(&out)
        );
        assert!(
            !stdout(&out).contains("==>"),
            "no step ran: {}",
            stdout(&out)
        );
    }
    assert!(rig.calls().is_empty(), "{:?}", rig.calls());
}

#[test]
fn bootstrap_help_names_the_k3s_backend_and_its_settings() {
    let help = bootstrap("--help");
    for needle in [
        "--backend docker|local|k3s",
        "ORRERY_K3S_INSTALLER_URL",
        "ORRERY_K3S_INSTALLER=PATH",
        "INSTALL_K3S_SKIP_DOWNLOAD=true",
        "/var/lib/rancher/k3s/agent/images/",
        "ORRERY_K3S_READY_TIMEOUT",
        "k3s ctr images import",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

// ---- packaging/kubernetes/ ------------------------------------------------------------------

/// What Orrery's Kubernetes backend does in its namespace: (API group, resource, verbs).
const BACKEND_NEEDS: &[(&str, &str, &[&str])] = &[
    (
        "",
        "pods",
        &["get", "list", "watch", "create", "delete", "patch"],
    ),
    ("", "pods/log", &["get"]),
    (
        "",
        "persistentvolumeclaims",
        &["get", "list", "create", "delete"],
    ),
    (
        "",
        "secrets",
        &["get", "list", "create", "update", "delete"],
    ),
    ("", "events", &["get", "list", "watch"]),
    ("", "services", &["get", "list", "create", "delete"]),
    (
        "networking.k8s.io",
        "networkpolicies",
        &["get", "create", "patch", "update"],
    ),
];

const NAMESPACE: &str = "orrery";

/// Every document of packaging/kubernetes/*.yaml, read into k8s-openapi's types (which check
/// apiVersion and kind), with the file it came from.
#[derive(Default)]
struct Manifests {
    namespaces: Vec<(String, Namespace)>,
    service_accounts: Vec<(String, ServiceAccount)>,
    roles: Vec<(String, Role)>,
    role_bindings: Vec<(String, RoleBinding)>,
    cluster_roles: Vec<(String, ClusterRole)>,
    cluster_role_bindings: Vec<(String, ClusterRoleBinding)>,
    pvcs: Vec<(String, PersistentVolumeClaim)>,
    config_maps: Vec<(String, ConfigMap)>,
    deployments: Vec<(String, Deployment)>,
    services: Vec<(String, Service)>,
    /// (file, kind, namespace) of every namespaced object.
    namespaced: Vec<(String, String, Option<String>)>,
}

fn typed<T: serde::de::DeserializeOwned>(file: &str, kind: &str, value: serde_yaml::Value) -> T {
    serde_yaml::from_value(value)
        .unwrap_or_else(|e| panic!("{file}: a {kind} that does not read: {e}"))
}

fn manifests() -> Manifests {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("packaging/kubernetes"))
        .expect("packaging/kubernetes/")
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML in packaging/kubernetes/");
    let mut m = Manifests::default();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{file}: not YAML: {e}"));
            if value.is_null() {
                continue;
            }
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_else(|| panic!("{file}: a document without kind"))
                .to_string();
            let namespace = value
                .get("metadata")
                .and_then(|md| md.get("namespace"))
                .and_then(|ns| ns.as_str())
                .map(str::to_owned);
            if !matches!(
                kind.as_str(),
                "Namespace" | "ClusterRole" | "ClusterRoleBinding"
            ) {
                m.namespaced.push((file.clone(), kind.clone(), namespace));
            }
            let f = file.clone();
            match kind.as_str() {
                "Namespace" => m.namespaces.push((f, typed(&file, &kind, value))),
                "ServiceAccount" => m.service_accounts.push((f, typed(&file, &kind, value))),
                "Role" => m.roles.push((f, typed(&file, &kind, value))),
                "RoleBinding" => m.role_bindings.push((f, typed(&file, &kind, value))),
                "ClusterRole" => m.cluster_roles.push((f, typed(&file, &kind, value))),
                "ClusterRoleBinding" => m
                    .cluster_role_bindings
                    .push((f, typed(&file, &kind, value))),
                "PersistentVolumeClaim" => m.pvcs.push((f, typed(&file, &kind, value))),
                "ConfigMap" => m.config_maps.push((f, typed(&file, &kind, value))),
                "Deployment" => m.deployments.push((f, typed(&file, &kind, value))),
                "Service" => m.services.push((f, typed(&file, &kind, value))),
                other => {
                    panic!("{file}: {other} is not checked by tests/it/packaging.rs: add it there")
                }
            }
        }
    }
    m
}

fn name_of(md: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    md.name.as_deref().unwrap_or("")
}

/// The (group, resource, verb) triples rules grant; wildcards and non-resource URLs refused.
fn granted(what: &str, rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules {
        assert!(
            rule.non_resource_urls.is_none(),
            "{what}: non-resource URLs {rule:?}"
        );
        let groups = rule.api_groups.clone().unwrap_or_default();
        let resources = rule.resources.clone().unwrap_or_default();
        for word in groups.iter().chain(&resources).chain(&rule.verbs) {
            assert!(!word.contains('*'), "{what}: a wildcard in {rule:?}");
        }
        for g in &groups {
            for r in &resources {
                for v in &rule.verbs {
                    out.insert((g.clone(), r.clone(), v.clone()));
                }
            }
        }
    }
    out
}

fn triples(needs: &[(&str, &str, &[&str])]) -> BTreeSet<(String, String, String)> {
    needs
        .iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn kubernetes_rbac_grants_exactly_what_the_backend_needs_in_its_namespace() {
    let m = manifests();
    assert_eq!(m.service_accounts.len(), 1);
    let (sa_file, sa) = &m.service_accounts[0];
    assert_eq!(sa_file, "rbac.yaml");
    assert_eq!(name_of(&sa.metadata), "orrery");

    assert_eq!(m.roles.len(), 1, "one Role");
    let (role_file, role) = &m.roles[0];
    assert_eq!(role_file, "rbac.yaml");
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE));
    let got = granted("the Role", role.rules.as_deref().unwrap_or_default());
    let want = triples(BACKEND_NEEDS);
    assert_eq!(
        got.difference(&want).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "the Role grants more than the backend needs"
    );
    assert_eq!(
        want.difference(&got).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "the Role lacks what the backend needs"
    );

    assert_eq!(m.role_bindings.len(), 1);
    let (_, binding) = &m.role_bindings[0];
    assert_eq!(binding.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(
        binding.role_ref.kind, "Role",
        "bound as a Role, not a ClusterRole"
    );
    assert_eq!(binding.role_ref.name, name_of(&role.metadata));
    let subjects = binding.subjects.clone().unwrap_or_default();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, "orrery");
    assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));

    // The one cluster-wide grant: reading nodes (orrery doctor), in its own optional file.
    assert_eq!(m.cluster_roles.len(), 1);
    let (cr_file, cluster_role) = &m.cluster_roles[0];
    assert_eq!(cr_file, "rbac-nodes.yaml");
    assert!(cluster_role.aggregation_rule.is_none());
    assert_eq!(
        granted(
            "the ClusterRole",
            cluster_role.rules.as_deref().unwrap_or_default()
        ),
        triples(&[("", "nodes", &["get", "list"])])
    );
    assert_eq!(m.cluster_role_bindings.len(), 1);
    let (crb_file, crb) = &m.cluster_role_bindings[0];
    assert_eq!(crb_file, "rbac-nodes.yaml");
    assert_eq!(crb.role_ref.kind, "ClusterRole");
    assert_eq!(crb.role_ref.name, name_of(&cluster_role.metadata));
    let subjects = crb.subjects.clone().unwrap_or_default();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert_eq!(
        (
            subjects[0].kind.as_str(),
            subjects[0].name.as_str(),
            subjects[0].namespace.as_deref()
        ),
        ("ServiceAccount", "orrery", Some(NAMESPACE))
    );

    // Everything else lives in the namespace the manifests create.
    assert_eq!(m.namespaces.len(), 1);
    assert_eq!(name_of(&m.namespaces[0].1.metadata), NAMESPACE);
    for (file, kind, ns) in &m.namespaced {
        assert_eq!(
            ns.as_deref(),
            Some(NAMESPACE),
            "{file}: a {kind} outside {NAMESPACE}"
        );
    }
}

/// A container port by name (or number).
fn resolve_port(ports: &BTreeMap<String, i32>, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => *ports
            .get(name)
            .unwrap_or_else(|| panic!("no container port {name}")),
    }
}

#[test]
fn kubernetes_deployment_is_one_locked_down_hub_with_its_state_config_and_services() {
    let m = manifests();
    assert_eq!(m.deployments.len(), 1);
    let (_, deployment) = &m.deployments[0];
    let spec = &deployment.spec;
    assert_eq!(spec.replicas, Some(1), "sled has one writer: one hub");
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("Recreate"),
        "never two hubs on the state, not even during a rollout"
    );
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
        assert_eq!(
            template_labels.get(k),
            Some(v),
            "the selector matches the pods"
        );
    }
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("orrery"));
    assert_ne!(
        pod.automount_service_account_token,
        Some(false),
        "the hub needs its token"
    );
    assert_eq!(
        pod.enable_service_links,
        Some(false),
        "no ORRERY_* variables from Services"
    );
    assert_ne!(pod.host_network, Some(true));
    assert_ne!(pod.host_pid, Some(true));
    let psc = pod
        .security_context
        .as_ref()
        .expect("a pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert!(psc.run_as_user.is_some_and(|u| u != 0), "{psc:?}");
    assert!(
        psc.fs_group.is_some(),
        "the state volume is writable for the hub's group"
    );
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    let sc = c
        .security_context
        .as_ref()
        .expect("a container securityContext");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_ne!(sc.privileged, Some(true));
    assert_ne!(sc.run_as_user, Some(0));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    assert!(sc
        .capabilities
        .as_ref()
        .and_then(|c| c.add.as_ref())
        .is_none_or(Vec::is_empty));
    assert!(c.image.as_deref().is_some_and(|i| !i.is_empty()));
    let mut argv: Vec<String> = c.command.clone().unwrap_or_default();
    argv.extend(c.args.clone().unwrap_or_default());
    assert_eq!(
        argv,
        [
            "/usr/local/bin/orrery",
            "--config",
            "/etc/orrery/config.toml",
            "serve"
        ],
        "the daemon, as the systemd unit starts it"
    );

    // Volumes: the state PVC at /var/lib/orrery, the ConfigMap at /etc/orrery.
    let volumes = pod.volumes.clone().unwrap_or_default();
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    let mount_of = |path: &str| {
        let mount = mounts
            .iter()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        volumes
            .iter()
            .find(|v| v.name == mount.name)
            .unwrap_or_else(|| panic!("no volume {}", mount.name))
            .clone()
    };
    let state = mount_of("/var/lib/orrery");
    let claim = state
        .persistent_volume_claim
        .expect("the state is a PVC")
        .claim_name;
    assert_eq!(m.pvcs.len(), 1);
    assert_eq!(name_of(&m.pvcs[0].1.metadata), claim);
    let config_volume = mount_of("/etc/orrery");
    let config_map_name = config_volume
        .config_map
        .expect("the config is a ConfigMap")
        .name;
    assert!(mounts
        .iter()
        .any(|m| m.mount_path == "/etc/orrery" && m.read_only == Some(true)));

    // The config: TOML, the kubernetes backend in this namespace, ports matching the pod.
    let (_, config_map) = m
        .config_maps
        .iter()
        .find(|(_, cm)| name_of(&cm.metadata) == config_map_name)
        .expect("the ConfigMap the Deployment mounts");
    let text = &config_map.data.as_ref().unwrap()["config.toml"];
    let config: toml::Table = text.parse().expect("config.toml in the ConfigMap is TOML");
    let spawner = config["spawner"].as_table().unwrap();
    assert_eq!(spawner["backend"].as_str(), Some("kubernetes"));
    let kube = spawner["kubernetes"].as_table().unwrap();
    assert_eq!(kube["namespace"].as_str(), Some(NAMESPACE));
    assert!(
        kube.get("kubeconfig").is_none(),
        "in the cluster: the service account"
    );
    assert!(config["state"]["path"]
        .as_str()
        .unwrap()
        .starts_with("/var/lib/orrery/"));
    assert_eq!(config["http"]["address"].as_str(), Some(""));
    // Orrery's own loader accepts the whole file.
    let cfg = orrery::config::load::parse_str(text)
        .unwrap_or_else(|e| panic!("config.toml in the ConfigMap: {e}"));
    // The NetworkPolicy admits the hub's pod by these labels: the pod must carry them.
    let hub_labels = kube["hub_pod_labels"]
        .as_table()
        .expect("spawner.kubernetes.hub_pod_labels");
    assert!(!hub_labels.is_empty());
    for (k, v) in hub_labels {
        assert_eq!(
            template_labels.get(k).map(String::as_str),
            v.as_str(),
            "hub_pod_labels.{k} is a label of the hub's pod"
        );
    }

    let ports: BTreeMap<String, i32> = c
        .ports
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name.unwrap_or_default(), p.container_port))
        .collect();
    assert_eq!(ports.get("http"), Some(&i32::from(cfg.http.port)));
    assert_eq!(ports.get("internal"), Some(&i32::from(cfg.internal.port)));
    let probe = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("an HTTP readiness probe");
    assert_eq!(probe.path.as_deref(), Some("/hub/api/"));
    assert_eq!(resolve_port(&ports, &probe.port), i32::from(cfg.http.port));

    // Services: the public one on port 80, the internal one where hub_address points.
    let service = |name: &str| {
        let (_, svc) = m
            .services
            .iter()
            .find(|(_, s)| name_of(&s.metadata) == name)
            .unwrap_or_else(|| panic!("no Service {name}"));
        let spec = svc.spec.clone().unwrap();
        for (k, v) in spec.selector.as_ref().unwrap() {
            assert_eq!(
                template_labels.get(k),
                Some(v),
                "Service {name} selects the hub"
            );
        }
        spec.ports.unwrap()
    };
    let public = service("orrery");
    assert_eq!(public.len(), 1);
    assert_eq!(public[0].port, 80);
    assert_eq!(
        resolve_port(&ports, public[0].target_port.as_ref().unwrap()),
        i32::from(cfg.http.port)
    );
    let hub_address = kube["hub_address"].as_str().unwrap();
    let (svc_name, svc_ns) = hub_address
        .strip_suffix(".svc")
        .and_then(|s| s.split_once('.'))
        .unwrap_or_else(|| panic!("hub_address {hub_address:?} is not SERVICE.NAMESPACE.svc"));
    assert_eq!(svc_ns, NAMESPACE);
    let internal = service(svc_name);
    assert_eq!(internal.len(), 1);
    assert_eq!(
        internal[0].port,
        i32::from(cfg.internal.port),
        "pods use internal.port"
    );
    assert_eq!(
        resolve_port(&ports, internal[0].target_port.as_ref().unwrap()),
        i32::from(cfg.internal.port)
    );
    let internal_type = m
        .services
        .iter()
        .find(|(_, s)| name_of(&s.metadata) == svc_name)
        .and_then(|(_, s)| s.spec.as_ref().and_then(|sp| sp.type_.clone()));
    assert!(
        matches!(internal_type.as_deref(), None | Some("ClusterIP")),
        "the internal listener stays inside"
    );
}
