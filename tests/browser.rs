//! A real browser through the Docker backend: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven by selenium from `tests/python/browser_flow.py`) logs in, presses
//! Start, sees the spawn-pending page, lands in JupyterLab in an `orrery-singleuser` container,
//! runs a cell and sees its output. Screenshots go to `target/test-artifacts/browser/`.
//!
//! Needs a Docker engine, the single-user image (`tests/images/build.sh`, cached), the Python
//! venv (`tests/python/venv.sh`) and `/usr/bin/chromium` + `/usr/bin/chromedriver`. A missing
//! prerequisite fails the test with what to install; it never passes silently.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Daemon;
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The whole browser journey (login, spawn, JupyterLab, kernel, cell) must fit in this.
const FLOW_TIMEOUT: Duration = Duration::from_secs(360);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn artifact_dir() -> PathBuf {
    repo().join("target/test-artifacts/browser")
}

/// Chromium and its driver from Debian; without them the test fails loudly.
fn require_chromium() {
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

fn require_docker() {
    let ok = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "browser test: cannot talk to the Docker engine (`docker info` failed); start it, e.g. \
         `dockerd >/var/log/dockerd.log 2>&1 &`"
    );
}

/// The single-user image's reference (built once, cached by its recipe hash).
fn image() -> String {
    let out = Command::new("bash")
        .arg(repo().join("tests/images/build.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/images/build.sh");
    assert!(
        out.status.success(),
        "tests/images/build.sh failed: cannot build the single-user image"
    );
    let image = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        image.starts_with("orrery-singleuser:"),
        "unexpected image ref {image:?}"
    );
    image
}

/// The venv's python (with selenium), built on first use and cached.
fn python() -> String {
    let out = Command::new("bash")
        .arg(repo().join("tests/python/venv.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run venv.sh");
    assert!(
        out.status.success(),
        "tests/python/venv.sh failed: cannot install the Python test clients"
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes what the Docker backend made for this test, whatever happened.
struct DockerCleanup {
    container: String,
    volume: String,
    network: String,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let docker = |args: &[&str]| {
            let _ = Command::new("docker")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        docker(&["rm", "-f", &self.container]);
        docker(&["volume", "rm", "-f", &self.volume]);
        docker(&["network", "rm", &self.network]);
    }
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path)
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

/// Run browser_flow.py with a deadline; returns (success, stdout, stderr).
fn run_flow(
    py: &str,
    hub: &str,
    user: &str,
    password: &str,
    artifacts: &Path,
) -> (bool, String, String) {
    let mut child = Command::new(py)
        .arg(repo().join("tests/python/browser_flow.py"))
        .args([hub, user, password])
        .arg(artifacts)
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
    let deadline = Instant::now() + FLOW_TIMEOUT;
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
        stderr.push_str(&format!(
            "\nbrowser_flow.py killed after {FLOW_TIMEOUT:?}\n"
        ));
    }
    (status.is_some_and(|s| s.success()), stdout, stderr)
}

#[tokio::test]
async fn browser_logs_in_starts_a_docker_server_and_runs_a_cell_in_jupyterlab() {
    require_chromium();
    require_docker();
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
    let user = format!("browser{unique}");
    let password = "browser-password";
    let network = format!("orrery-browser-{unique}");
    let volume_tpl = format!("orrery-browser-{unique}-{{username}}");
    let _cleanup = DockerCleanup {
        container: format!("orrery-{user}"),
        volume: volume_tpl.replace("{username}", &user),
        network: network.clone(),
    };
    // Declared after the cleanup guard, so the daemon is stopped before the guard runs.
    // A container start takes 2-4 s here; the 1 s slow_spawn_timeout makes Start answer with the
    // spawn-pending page, and the server's command waits 2 s more before the image's own start
    // script, so the page is on screen long enough to be seen and photographed on any machine.
    let d = Daemon::start(&format!(
        "[spawner]\nbackend = \"docker\"\nslow_spawn_timeout = \"1s\"\nstart_timeout = \"120s\"\n\
         [spawner.docker]\nimage = \"{image}\"\npull_policy = \"never\"\nnetwork = \"{network}\"\n\
         home_volume = \"{volume_tpl}\"\ncmd = [\"sh\", \"-c\", \"sleep 2; exec start-singleuser.sh\"]\n"
    ))
    .await;

    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("create the artifact dir");
    let started = Instant::now();
    let (ok, stdout, stderr) = run_flow(&py, &d.url, &user, password, &artifacts);
    let elapsed = started.elapsed();
    let _ = std::fs::write(artifacts.join("browser_flow.log"), &stderr);
    let _ = std::fs::write(artifacts.join("orrery.log"), d.log());
    assert!(
        ok,
        "browser_flow.py failed after {elapsed:.1?} (artifacts: {}):\nstdout:\n{stdout}\nstderr:\n{stderr}\nhub log:\n{}",
        artifacts.display(),
        d.log()
    );
    let summary: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
        .unwrap_or_else(|| panic!("no JSON summary from browser_flow.py:\n{stdout}\n{stderr}"));
    eprintln!("browser flow in {elapsed:.1?}: {summary}");
    assert_eq!(summary["spawn_pending_seen"], true, "{summary}");
    assert_eq!(summary["output"], "42", "{summary}");
    let lab_url = summary["lab_url"].as_str().unwrap_or_default();
    assert!(
        lab_url.starts_with(&format!("{}/user/{user}/lab", d.url)),
        "landed in JupyterLab through the hub: {summary}"
    );
    assert_png(&artifacts.join("spawn-pending.png"));
    assert_png(&artifacts.join("jupyterlab.png"));
}
