//! A real browser through the Docker backend: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven by selenium from `tests/python/browser_flow.py`) logs in, presses
//! Start, lands in JupyterLab in an `orrery-singleuser` container and runs cells.
//!
//! * Local kernels: the spawn-pending page shows on the way, and `print(6*7)` prints `42`.
//!   Screenshots go to `target/test-artifacts/browser/`.
//! * Remote kernels (`kernels.remote = true`): the notebook's code runs in a kernel container of
//!   its own (its hostname), a comm with binary buffers makes the round trip from the page's own
//!   kernel WebSocket byte for byte, and a kernelspec added with `orrery config add-item` +
//!   `config reload` shows in the launcher of the running JupyterLab. Screenshots go to
//!   `target/test-artifacts/browser/remote-kernels/`.
//!
//! Needs a Docker engine, the single-user image (`tests/images/build.sh`, cached), the Python
//! venv (`tests/python/venv.sh`) and `/usr/bin/chromium` + `/usr/bin/chromedriver`. A missing
//! prerequisite fails the test with what to install; it never passes silently. The tests may
//! run in parallel: each has its own user, network and volume.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::docker::{container_name, docker_ok, image, inspect, proxied_json};
use crate::common::{python, repo, Daemon};
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const PASSWORD: &str = "browser-password";

/// Chromium and its driver from Debian; without them the test fails loudly.
pub(crate) fn require_chromium() {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "browser test: {missing:?} not found. .ci/run must install Debian's browser and driver \
             before the tests: `apt-get install -y chromium chromium-driver`"
        );
    }
    panic!(
        "browser test: {missing:?} not found. Install Debian's browser and driver: \
         `apt-get install -y chromium chromium-driver` (the test never passes without them)"
    );
}

/// `docker ARGS…` whose outcome does not matter (cleanup).
fn docker_quiet(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Removes what the Docker backend made for a test, whatever happened: the user's containers
/// (the notebook server and, with remote kernels, every kernel's), its volume, the network.
struct DockerCleanup {
    user: String,
    volume: String,
    network: String,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let label = format!("label=org.orrery.user={}", self.user);
        let labelled = docker_quiet(&["ps", "-aq", "--no-trunc", "--filter", &label]);
        for c in labelled.split_whitespace() {
            docker_quiet(&["rm", "-f", c]);
        }
        docker_quiet(&["rm", "-f", &container_name(&self.user)]);
        docker_quiet(&["volume", "rm", "-f", &self.volume]);
        docker_quiet(&["network", "rm", &self.network]);
    }
}

/// One browser test's prerequisites and its own corner of the Docker engine: a user, a network
/// and a home volume no parallel test shares, removed when this is dropped (declare the
/// `Daemon` after it, so the daemon stops first).
pub(crate) struct BrowserEnv {
    py: String,
    pub(crate) image: String,
    pub(crate) user: String,
    network: String,
    /// `home_volume` template (`…-{username}`).
    volume_tpl: String,
    artifacts: PathBuf,
    _cleanup: DockerCleanup,
}

impl BrowserEnv {
    /// `tag` starts the user, network and volume names (each test its own); screenshots and
    /// logs go to `target/test-artifacts/browser/<artifacts>`.
    pub(crate) fn new(tag: &str, artifacts: &str) -> BrowserEnv {
        require_chromium();
        let image = image();
        let py = python();
        let unique = format!(
            "{}{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() % 100_000)
                .unwrap_or(0)
        );
        let user = format!("{tag}{unique}");
        let network = format!("orrery-{tag}-{unique}");
        let volume_tpl = format!("orrery-{tag}-{unique}-{{username}}");
        let artifacts = repo().join("target/test-artifacts/browser").join(artifacts);
        std::fs::create_dir_all(&artifacts).expect("create the artifact dir");
        BrowserEnv {
            py,
            image,
            _cleanup: DockerCleanup {
                user: user.clone(),
                volume: volume_tpl.replace("{username}", &user),
                network: network.clone(),
            },
            user,
            network,
            volume_tpl,
            artifacts,
        }
    }

    /// The daemon's config: the Docker backend on this test's network and volume; `spawner`
    /// and `docker` are more lines for `[spawner]` and `[spawner.docker]`, `extra` more tables.
    fn config(&self, spawner: &str, docker: &str, extra: &str) -> String {
        format!(
            "[spawner]\nbackend = \"docker\"\nstart_timeout = \"120s\"\n{spawner}\n\
             [spawner.docker]\nimage = \"{}\"\npull_policy = \"never\"\nnetwork = \"{}\"\n\
             home_volume = \"{}\"\n{docker}\n{extra}",
            self.image, self.network, self.volume_tpl
        )
    }

    /// Runs browser_flow.py against `d` (with `args` after the usual ones) within `timeout`,
    /// keeps its log and the hub's next to the screenshots, and returns its JSON summary;
    /// panics with both logs when the flow fails.
    pub(crate) fn flow(&self, d: &Daemon, args: &[OsString], timeout: Duration) -> Value {
        self.flow_at(d, &d.url, args, timeout)
    }

    /// As [`BrowserEnv::flow`], with the browser going to `hub` (e.g. the HTTPS address).
    fn flow_at(&self, d: &Daemon, hub: &str, args: &[OsString], timeout: Duration) -> Value {
        let started = Instant::now();
        let (ok, stdout, stderr) = run_flow(
            &self.py,
            &[
                hub.into(),
                self.user.clone().into(),
                PASSWORD.into(),
                self.artifacts.clone().into(),
            ],
            args,
            timeout,
        );
        let elapsed = started.elapsed();
        let _ = std::fs::write(self.artifacts.join("browser_flow.log"), &stderr);
        let _ = std::fs::write(self.artifacts.join("orrery.log"), d.log());
        assert!(
            ok,
            "browser_flow.py failed after {elapsed:.1?} (artifacts: {}):\nstdout:\n{stdout}\nstderr:\n{stderr}\nhub log:\n{}",
            self.artifacts.display(),
            d.log()
        );
        let summary: Value = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l.trim()).ok())
            .unwrap_or_else(|| panic!("no JSON summary from browser_flow.py:\n{stdout}\n{stderr}"));
        eprintln!("browser flow in {elapsed:.1?}: {summary}");
        let lab_url = summary["lab_url"].as_str().unwrap_or_default();
        assert!(
            lab_url.starts_with(&format!("{hub}/user/{}/lab", self.user)),
            "landed in JupyterLab through the hub: {summary}"
        );
        summary
    }

    pub(crate) fn assert_png(&self, name: &str) {
        let path = self.artifacts.join(name);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("screenshot {} missing: {e}", path.display()));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            path.display()
        );
        assert!(
            bytes.len() > 5 * 1024,
            "{} is only {} bytes: a blank page?",
            path.display(),
            bytes.len()
        );
    }
}

/// Run browser_flow.py with a deadline; returns (success, stdout, stderr).
fn run_flow(
    py: &str,
    positional: &[OsString],
    options: &[OsString],
    timeout: Duration,
) -> (bool, String, String) {
    let mut child = Command::new(py)
        .arg(repo().join("tests/python/browser_flow.py"))
        .args(positional)
        .args(options)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start browser_flow.py");
    // Drain both pipes on threads so a chatty child never blocks.
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait browser_flow.py") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = out_t.join().unwrap_or_default();
    let mut stderr = err_t.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\nbrowser_flow.py killed after {timeout:?}\n"));
    }
    (status.is_some_and(|s| s.success()), stdout, stderr)
}

#[tokio::test]
async fn browser_logs_in_starts_a_docker_server_and_runs_a_cell_in_jupyterlab() {
    let _serial = crate::common::docker::serial().await;
    let env = BrowserEnv::new("browser", "");
    // Declared after the environment, so the daemon is stopped before its cleanup runs.
    // A container start takes 2-4 s here; the 1 s slow_spawn_timeout makes Start answer with the
    // spawn-pending page, and the server's command waits 2 s more before the image's own start
    // script, so the page is on screen long enough to be seen and photographed on any machine.
    let d = Daemon::start(&env.config(
        "slow_spawn_timeout = \"1s\"",
        "cmd = [\"sh\", \"-c\", \"sleep 2; exec start-singleuser.sh\"]",
        "",
    ))
    .await;

    // Sign-up is closed: an admin adds the user, who sets a password at first login.
    d.create_users(&[env.user.as_str()], false).await;
    // The whole journey (login, spawn, JupyterLab, kernel, cell) must fit in this.
    let summary = env.flow(&d, &[], Duration::from_secs(360));
    assert_eq!(summary["spawn_pending_seen"], true, "{summary}");
    assert_eq!(summary["output"], "42", "{summary}");
    env.assert_png("spawn-pending.png");
    env.assert_png("jupyterlab.png");
    // JupyterLab's hub menu: the control panel is the hub's home page with the server running,
    // and Restart Server's URL (JupyterHub's /hub/spawn) leads back into JupyterLab.
    let menu = &summary["hub_menu"];
    assert!(
        menu["control_panel"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/hub/home")),
        "{summary}"
    );
    assert_eq!(menu["control_panel"]["running"], true, "{summary}");
    assert_eq!(menu["restart_url"], "/hub/spawn", "{summary}");
    assert!(
        menu["after_restart"]
            .as_str()
            .is_some_and(|u| u.contains(&format!("/user/{}/lab", env.user))),
        "{summary}"
    );
}

/// The same journey over HTTPS served by the daemon itself: a certificate from a test CA,
/// trusted by this Chromium profile only; login, the server's JupyterLab and its kernel
/// WebSocket all go through the TLS listener and the proxy behind it.
#[tokio::test]
async fn browser_logs_in_over_https_and_runs_a_cell_through_the_tls_proxy_path() {
    let _serial = crate::common::docker::serial().await;
    let env = BrowserEnv::new("https", "https");
    let certs = tempfile::tempdir().unwrap();
    let (_, ca) = crate::https::test_ca();
    let (cert, key, spki) = crate::https::leaf_with_spki(certs.path(), &ca, "browser");
    let https_port = crate::common::free_port();
    let d = Daemon::start(&env.config(
        "slow_spawn_timeout = \"1s\"",
        "cmd = [\"sh\", \"-c\", \"sleep 2; exec start-singleuser.sh\"]",
        &format!(
            "[https]\nenabled = true\nport = {https_port}\n[https.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    ))
    .await;
    d.create_users(&[env.user.as_str()], false).await;
    let hub = format!("https://127.0.0.1:{https_port}");
    // Between two cells the certificate files are replaced and the config reloaded: the
    // kernel's WebSocket, opened before, must carry the second cell without reconnecting.
    let second = certs.path().join("second.crt");
    std::fs::write(
        &second,
        crate::https::reissue(&ca, &key, "second.localhost"),
    )
    .unwrap();
    let swap = format!(
        "cp {} {} && {} --config {} config reload",
        second.display(),
        cert.display(),
        env!("CARGO_BIN_EXE_orrery"),
        d.config_path.display()
    );
    let summary = env.flow_at(
        &d,
        &hub,
        &[
            "--trust-spki".into(),
            spki.into(),
            "--between-cells".into(),
            swap.into(),
        ],
        Duration::from_secs(360),
    );
    assert_eq!(summary["output"], "42", "{summary}");
    assert_eq!(summary["second_output"], "48", "{summary}");
    assert_eq!(
        summary["kernel_ws_starts_after_command"], 0,
        "the kernel WebSocket stayed up across the certificate swap: {summary}"
    );
    let status = crate::https::tls_status(&d).await;
    assert!(
        status["certificate"]["names"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n == "second.localhost")),
        "the new certificate is served: {status}"
    );
    env.assert_png("jupyterlab.png");
}

#[tokio::test]
async fn jupyterlab_runs_cells_in_remote_kernels_with_binary_comms() {
    let _serial = crate::common::docker::serial().await;
    let env = BrowserEnv::new("remote", "remote-kernels");
    // After the environment, as above. No spawn-pending page needed here: Start may go straight
    // to the server.
    let d = Daemon::start(&env.config(
        "slow_spawn_timeout = \"60s\"",
        "",
        "[kernels]\nremote = true\n",
    ))
    .await;
    let user = env.user.as_str();
    d.create_users(&[user], false).await;

    // Login, JupyterLab, hostname cell, comm round trip, and a kernelspec added at runtime.
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

    // The cell ran in the user's one kernel container, not in the notebook server's.
    let kernels = docker_ok(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label=org.orrery.user={user}"),
        "--filter",
        "label=org.orrery.kind=kernel",
        "--format",
        "{{.ID}}",
    ]);
    let kernels: Vec<&str> = kernels.split_whitespace().collect();
    assert_eq!(
        kernels.len(),
        1,
        "one kernel container for {user}: {kernels:?}\n{summary}"
    );
    let kernel = inspect(kernels[0]);
    let kernel_host = kernel["Config"]["Hostname"].as_str().unwrap_or_default();
    let notebook_host = inspect(&container_name(user))["Config"]["Hostname"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!kernel_host.is_empty(), "{kernel}");
    assert_eq!(
        summary["output"], kernel_host,
        "the cell printed its kernel container's hostname: {summary}"
    );
    assert_ne!(
        summary["output"], notebook_host,
        "the cell did not run in the notebook container: {summary}"
    );

    // That container is the kernel the user's server lists (and the page talked to).
    let kid = kernel["Config"]["Labels"]["org.orrery.kernel"]
        .as_str()
        .unwrap_or_else(|| panic!("no org.orrery.kernel label: {kernel}"));
    let token = d.token_for(user).await;
    let listed = proxied_json(&d, "GET", user, "api/kernels", &token, None, 200).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap_or_else(|| panic!("a kernel list: {listed}"))
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    assert!(
        ids.contains(&kid),
        "the server lists kernel {kid}: {listed}"
    );
    assert_eq!(summary["kernel_id"], kid, "{summary}");

    // Buffers survived both ways, in binary frames, byte for byte.
    let comm = &summary["comm"];
    assert_eq!(comm["opened_ok"], true, "{comm}");
    assert_eq!(comm["reversed_ok"], true, "{comm}");
    assert_eq!(comm["opened"]["frame"], "binary", "{comm}");
    assert_eq!(comm["opened"]["buffers"][0]["length"], 260, "{comm}");
    assert_eq!(comm["reply"]["frame"], "binary", "{comm}");

    // The kernelspec added while JupyterLab ran is in its launcher after a reload.
    let before = summary["launcher_before"].to_string();
    assert!(
        !before.contains("Python (extra)"),
        "no extra spec before it was added: {summary}"
    );
    assert_eq!(summary["extra_spec_in_launcher"], true, "{summary}");

    env.assert_png("jupyterlab-remote.png");
    env.assert_png("launcher-remote.png");
}

/// A course link as TLJH users post them: an nbgitpuller link through
/// `/hub/user-redirect/git-pull?repo=…&urlpath=…`, the repository served by `git daemon` on the
/// Docker network's gateway (containers cannot reach the host's loopback). A logged-out
/// student opening it in headless Chromium logs in, their server starts, the course is cloned
/// into their home and JupyterLab opens the file; after a new commit upstream and an edit of
/// their own, the same link pulls the commit and keeps the edit (nbgitpuller's merge).
/// Screenshots: `target/test-artifacts/browser/course-link/`.
#[tokio::test]
async fn a_course_link_logs_in_starts_the_server_and_pulls_the_course() {
    let _serial = crate::common::docker::serial().await;
    let env = BrowserEnv::new("course", "course-link");
    let d = Daemon::start(&env.config("", "", "")).await;
    d.create_users(&[env.user.as_str()], false).await;

    // The course repository: a bare repository and a working copy to push from.
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=Teacher",
                "-c",
                "user.email=teacher@example.org",
            ])
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let served = tempfile::tempdir().unwrap();
    let work = served.path().join("work");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("week1.md"), "# Week 1\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "week 1"]);
    git(
        served.path(),
        &["clone", "-q", "--bare", "work", "course.git"],
    );

    // git daemon on the gateway of the test's network (made when the daemon prepared Docker).
    let deadline = Instant::now() + Duration::from_secs(60);
    let gateway = loop {
        let out = Command::new("docker")
            .args([
                "network",
                "inspect",
                &env.network,
                "-f",
                "{{(index .IPAM.Config 0).Gateway}}",
            ])
            .output()
            .expect("docker");
        let gw = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !gw.is_empty() {
            break gw;
        }
        assert!(Instant::now() < deadline, "no network {}", env.network);
        std::thread::sleep(Duration::from_millis(200));
    };
    let port = crate::common::free_port();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _git_daemon = Killed(
        Command::new("git")
            .arg("daemon")
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg(format!("--base-path={}", served.path().display()))
            .arg(format!("--listen={gateway}"))
            .arg(format!("--port={port}"))
            .arg(served.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon"),
    );
    let repo_url = format!("git://{gateway}:{port}/course.git");
    let link = format!(
        "{}/hub/user-redirect/git-pull?repo={}&targetpath=course&urlpath={}&branch=main",
        d.url,
        urlencoding::encode(&repo_url),
        urlencoding::encode("lab/tree/course/week1.md")
    );
    let visit = |tag: &str| {
        let out = Command::new(&env.py)
            .arg(repo().join("tests/python/course_link_browser.py"))
            .args([
                link.as_str(),
                env.user.as_str(),
                PASSWORD,
                &env.artifacts.display().to_string(),
                tag,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("course_link_browser.py");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let _ = std::fs::write(
            env.artifacts.join(format!("course-link-{tag}.log")),
            &stderr,
        );
        assert!(
            out.status.success(),
            "course_link_browser.py ({tag}) failed:\n{stdout}\n{stderr}\nhub log:\n{}",
            d.log()
        );
        let v: Value = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l.trim()).ok())
            .unwrap_or_else(|| panic!("no JSON:\n{stdout}\n{stderr}"));
        v["url"].as_str().unwrap_or_default().to_string()
    };
    let server = container_name(&env.user);
    let read = |path: &str| {
        let (code, out, err) = crate::common::docker::exec(&server, &["cat", path]);
        if code != 0 {
            let (_, ls, _) = crate::common::docker::exec(&server, &["ls", "-laR", "/home/jovyan"]);
            panic!(
                "cat {path}: {err}\nthe home:\n{ls}\nthe server's log:\n{}",
                docker_quiet(&["logs", "--tail", "60", &server])
            );
        }
        out
    };

    let landed = visit("first");
    assert!(
        landed.contains(&format!("/user/{}/lab/tree/course/week1.md", env.user)),
        "{landed}"
    );
    env.assert_png("course-link-first.png");
    assert_eq!(read("/home/jovyan/course/week1.md").trim(), "# Week 1");

    // The student writes in week 1; the teacher adds week 2.
    let (code, _, err) = crate::common::docker::exec(
        &server,
        &[
            "sh",
            "-c",
            "echo 'my notes' >> /home/jovyan/course/week1.md",
        ],
    );
    assert_eq!(code, 0, "{err}");
    std::fs::write(work.join("week2.md"), "# Week 2\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "week 2"]);
    git(&work, &["push", "-q", "../course.git", "main"]);

    let landed = visit("second");
    assert!(landed.contains("/lab/tree/course/week1.md"), "{landed}");
    assert_eq!(read("/home/jovyan/course/week2.md").trim(), "# Week 2");
    let week1 = read("/home/jovyan/course/week1.md");
    assert!(
        week1.contains("# Week 1") && week1.contains("my notes"),
        "the student's edit is kept: {week1:?}"
    );
}
