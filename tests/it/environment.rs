//! `orrery env`: the software environment admins install into for everyone, end to end on the
//! real engine and the single-user test image. A small pure-Python package from the package
//! index (`pyjokes`) and a small Debian package (`hello`) are built into derived images; a new
//! notebook server and a new remote kernel run them; a failing install changes nothing and
//! shows pip's error; a rollback gives new servers the previous image again.
//!
//! Needs Docker, the image (`tests/images/build.sh`) and the package registries (PyPI and
//! Debian), which these machines reach.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::docker::{
    docker, docker_ok, exec, image, inspect, server_api, start_server, wait_no_servers, Env,
};
use crate::common::{login_at, page_as, run_cli, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};
use crate::gateway_e2e::{kernel_container, new_kernel, open_channels, run, REMOTE};

/// Derived images of the test image, removed when the test starts and ends, so each run
/// builds them (a leftover would be found by its content hash and reused).
pub(crate) struct DerivedImages(String);

impl DerivedImages {
    pub(crate) fn of(base: &str) -> DerivedImages {
        let d = DerivedImages(base.to_string());
        d.remove();
        d
    }

    fn remove(&self) {
        let ids = docker_ok(&[
            "images",
            "-q",
            "--filter",
            &format!("label=org.orrery.env.base={}", self.0),
        ]);
        for id in ids.lines().collect::<std::collections::BTreeSet<_>>() {
            let _ = docker(&["rmi", "-f", id]);
        }
    }
}

impl Drop for DerivedImages {
    fn drop(&mut self) {
        self.remove();
    }
}

fn env_list(d: &Daemon) -> Value {
    let (code, out, err) = d.cli(&["env", "list", "--json"], None);
    assert_eq!(code, 0, "env list: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("env list --json: {e}: {out}"))
}

/// `orrery env …`, which must succeed; its stdout.
fn env_ok(d: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["env"];
    all.extend_from_slice(args);
    let began = Instant::now();
    let (code, out, err) = d.cli(&all, None);
    assert_eq!(code, 0, "orrery {all:?}:\n{out}\n{err}\n{}", d.log());
    eprintln!("[env] orrery {all:?} took {:?}", began.elapsed());
    out
}

async fn stop_server(d: &Daemon, user: &str) {
    let (s, b) = server_api(d, "DELETE", user, ADMIN).await;
    assert!(s == 202 || s == 204, "stop {user}: {s} {b}");
    wait_no_servers(d, user, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_packages_reach_new_servers_and_kernels_and_a_rollback_takes_them_back() {
    let mut env = Env::new("e").await;
    let base = image();
    let _derived = DerivedImages::of(&base);
    let user = env.user("env");
    // Two generations keep their images: the last change below removes an old one.
    let d = env
        .daemon(
            &[&user],
            "",
            &format!("{REMOTE}\n[user_environment]\nkeep = 2\n"),
        )
        .await;
    d.create_users(&["envadmin"], true).await;
    let sh = |c: &str, script: &str| exec(c, &["sh", "-c", script]);

    // Nothing installed yet: the base image is what runs.
    let none = env_list(&d);
    assert!(none["current"].is_null(), "{none}");
    assert_eq!(none["effective"][&base], base.as_str());

    // A pip package, then a Debian package: each a new generation, the build shown.
    let out = env_ok(&d, &["install", "pyjokes"]);
    assert!(
        out.contains("-m pip install 'pyjokes'"),
        "the build's steps are shown:\n{out}"
    );
    assert!(
        out.contains("Generation 1 is in effect (install pyjokes)"),
        "{out}"
    );
    let first = env_list(&d)["effective"][&base]
        .as_str()
        .unwrap()
        .to_string();
    let out = env_ok(&d, &["install", "--apt", "hello"]);
    assert!(
        out.contains("apt-get install -y --no-install-recommends 'hello'"),
        "{out}"
    );
    let listed = env_list(&d);
    assert_eq!(listed["current"]["id"], 2, "{listed}");
    let second = listed["effective"][&base].as_str().unwrap().to_string();
    assert!(
        second.starts_with("orrery-env:") && second != first,
        "{listed}"
    );
    let spec = &listed["current"]["spec"];
    assert_eq!(
        (spec["pip"][0].as_str(), spec["apt"][0].as_str()),
        (Some("pyjokes"), Some("hello"))
    );

    // `config get` says which image the configured one stands for now.
    let (code, out, err) = d.cli(&["config", "get", "spawner.docker.image"], None);
    assert_eq!(
        (code, out.trim()),
        (0, base.as_str()),
        "the file's value on stdout"
    );
    assert!(
        err.contains(&second) && err.contains("generation 2"),
        "{err}"
    );

    // A new server runs the derived image, as its user, with both packages.
    let server = start_server(&d, &user).await;
    assert_eq!(inspect(&server)["Config"]["Image"], second.as_str());
    let (code, out, err) = sh(
        &server,
        "id -u; python3 -c 'import pyjokes; print(bool(pyjokes.get_joke()))'; hello",
    );
    assert_eq!(
        (code, out.trim()),
        (0, "1000\nTrue\nHello, world!"),
        "the server imports and runs what was installed: {err}"
    );

    // A new remote kernel too: the code runs in the kernel's own container.
    let token = d.token_for(&user).await;
    let kid = new_kernel(&d, &user, &token, "python3").await;
    let kc = kernel_container(&kid).expect("the kernel's container");
    assert_eq!(inspect(&kc)["Config"]["Image"], second.as_str());
    let mut ws = open_channels(&d, &user, &token, &kid).await;
    let printed = run(
        &mut ws,
        "import pyjokes, subprocess\nprint(pyjokes.__name__, subprocess.run(['hello'], capture_output=True, text=True).stdout)",
    )
    .await;
    assert_eq!(printed.trim(), "pyjokes Hello, world!");

    // The admin page shows what new servers get.
    let cookie = login_at(&d.url, "envadmin", "envadmin-password-1")
        .await
        .expect("the admin logs in");
    let (s, page) = page_as(&d.url, &cookie, "/hub/admin").await;
    assert_eq!(s, 200);
    assert!(
        page.contains("Software environment")
            && page.contains(&second)
            && page.contains("install --apt hello"),
        "{page}"
    );

    // Only `orrery env` on the hub's machine (the control token) changes what every container
    // runs; an admin's API token may read it, not write it.
    let (s, body, _) = d
        .api(
            "POST",
            "/orrery/environment",
            Some(ADMIN),
            Some(serde_json::json!({"expected": {"current": 2, "generations": 2}, "generation": listed["current"]})),
        )
        .await;
    assert_eq!(s, 403, "{body}");
    let (s, _, _) = d.api("GET", "/orrery/environment", Some(ADMIN), None).await;
    assert_eq!(s, 200);

    // A package that does not exist: the build fails with pip's error, nothing changes.
    let (code, out, err) = d.cli(&["env", "install", "orrery-no-such-package-e2e"], None);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("No matching distribution found for orrery-no-such-package-e2e")
            && err
                .contains("Nothing changed: generation 2 (install --apt hello) is still in effect"),
        "{err}"
    );
    let after = env_list(&d);
    assert_eq!(
        after["current"], listed["current"],
        "the environment is as it was"
    );
    assert_eq!(after["effective"][&base], second.as_str());

    // Roll back: new servers get the first image again (pyjokes, no hello); the running
    // server keeps its image, and its owner's home page says a different one is in effect.
    let out = env_ok(&d, &["rollback"]);
    assert!(
        out.contains("Generation 3 is in effect (rollback to generation 1)"),
        "{out}"
    );
    assert_eq!(env_list(&d)["effective"][&base], first.as_str());
    assert_eq!(inspect(&server)["Config"]["Image"], second.as_str());
    let owner = login_at(&d.url, &user, "env-user-password-1")
        .await
        .expect("the user logs in");
    let (_, home) = page_as(&d.url, &owner, "/hub/home").await;
    assert!(
        home.contains(
            "The software environment changed since this server started (rollback to generation 1)"
        ),
        "{home}"
    );
    stop_server(&d, &user).await;
    let server = start_server(&d, &user).await;
    assert_eq!(inspect(&server)["Config"]["Image"], first.as_str());
    let (code, out, _) = sh(
        &server,
        "python3 -c 'import pyjokes; print(1)'; command -v hello || echo no-hello",
    );
    assert_eq!((code, out.trim()), (0, "1\nno-hello"));
    let (_, home) = page_as(&d.url, &owner, "/hub/home").await;
    assert!(!home.contains("The software environment changed"), "{home}");

    // Removing the last package: the base images again (nothing to build), and generation 2's
    // image, beyond the last two generations and used by nothing now, is removed from the
    // engine; it can no longer be rolled back to.
    let out = env_ok(&d, &["remove", "pyjokes"]);
    assert!(
        out.contains("Generation 4 is in effect (remove pyjokes)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("Removed the old image {second}")),
        "{out}"
    );
    assert!(
        !docker(&["image", "inspect", &second]).0,
        "{second} is gone"
    );
    assert!(
        docker(&["image", "inspect", &first]).0,
        "{first} is kept (generation 3 uses it)"
    );
    assert_eq!(env_list(&d)["effective"][&base], base.as_str());
    let (code, _, err) = d.cli(&["env", "rollback", "--to", "2"], None);
    assert_eq!(code, 2);
    assert!(err.contains("its images were removed"), "{err}");

    // A derived image lost from the engine (removed by hand, a state restored on another
    // machine): the spawn says how to build it again, and `rebuild` does.
    let out = env_ok(&d, &["rollback"]);
    assert!(
        out.contains("Generation 5 is in effect (rollback to generation 3)"),
        "{out}"
    );
    stop_server(&d, &user).await;
    docker_ok(&["rmi", "-f", &first]);
    let (s, b) = server_api(&d, "POST", &user, ADMIN).await;
    assert!(
        s >= 400 && b.to_string().contains("sudo orrery env rebuild"),
        "{s} {b}"
    );
    let out = env_ok(&d, &["rebuild"]);
    assert!(
        out.contains("-m pip install 'pyjokes'"),
        "built again:\n{out}"
    );
    let server = start_server(&d, &user).await;
    assert_eq!(
        inspect(&server)["Config"]["Image"],
        first.as_str(),
        "the same content, the same tag"
    );

    let (code, out, _) = d.cli(&["env", "history"], None);
    assert_eq!(code, 0);
    for line in [
        "install pyjokes",
        "install --apt hello  (images removed)",
        "rollback to generation 1",
        "remove pyjokes",
    ] {
        assert!(out.contains(line), "{line:?} in the history:\n{out}");
    }
}

/// Mistakes are refused before anything is built, each with what to do instead, and leave the
/// environment as it was (here with no daemon: the CLI reads the state directory).
#[test]
fn bad_packages_and_impossible_changes_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let write = |backend: &str| {
        std::fs::write(
            &config,
            format!(
                "[state]\npath = \"{}\"\n[spawner]\nbackend = \"{backend}\"\n",
                dir.path().join("state").display()
            ),
        )
        .unwrap()
    };
    write("docker");
    let refused = |args: &[&str], says: &str| {
        let mut all = vec!["env"];
        all.extend_from_slice(args);
        let (code, out, err) = run_cli(&config, &all, None);
        assert_eq!(code, 2, "orrery {all:?}: {out}{err}");
        assert!(err.contains(says), "orrery {all:?} says {says:?}: {err}");
    };
    refused(&["install"], "name at least one package");
    refused(
        &["install", "numpy; rm -rf /"],
        "put URLs, paths and pip options in a requirements file",
    );
    refused(
        &["install", "--apt", "Hello"],
        "is not a Debian package name",
    );
    refused(
        &["install", "--conda", "r base"],
        "is not a conda package spec",
    );
    refused(
        &["install", "-r", "/nonexistent/requirements.txt"],
        "cannot read the requirements file",
    );
    refused(
        &["remove", "numpy"],
        "numpy is not installed with pip in the environment",
    );
    refused(&["rollback"], "nothing to roll back");
    let (code, out, _) = run_cli(&config, &["env", "list"], None);
    assert_eq!(code, 0);
    assert!(
        out.contains("No software environment is installed"),
        "{out}"
    );
    let (code, out, _) = run_cli(&config, &["env", "history", "--json"], None);
    assert_eq!(code, 0);
    let record: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        record["generations"],
        serde_json::json!([]),
        "nothing was recorded"
    );
    write("local");
    refused(
        &["install", "pyjokes"],
        "needs spawner.backend = \"docker\"",
    );
}
