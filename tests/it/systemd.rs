//! The appliance's whole life under a real systemd (issue 12): a Debian 12 container with
//! systemd as PID 1 (`tests/images/systemd.sh`, built offline and cached), the host's Docker
//! socket mounted in and the host's network (the hub's internal listener binds the host's Orrery
//! bridge, which only the host namespace has). Inside it, as an administrator would:
//!
//! * `curl … | sh -s -- --admin A --binary URL --no-docker` installs and starts the service
//!   (Type=notify); the admin logs in and starts a server; an unknown name cannot sign up;
//! * `systemctl restart` keeps the server, `systemctl reload` applies a config change through
//!   the `reload` state, the journal carries the structured fields, `kill -9` and a frozen
//!   runtime (`kill -STOP`, found by the watchdog) are restarted and the server re-adopted;
//! * re-running the installer with a newer binary upgrades and keeps config, state, the server
//!   and a file in the home; an older binary is refused;
//! * `orrery backup --homes` on the running hub, `orrery restore` into an empty state
//!   directory on the stopped daemon brings back users, tokens, groups and the home's file;
//! * `--uninstall`, `--purge`, `--purge-homes` remove exactly what they say; the `.deb`
//!   installs, removes and purges; a non-root run and an unsupported OS are refused.
//!
//! The "newer" and "older" binaries are this build with another version stamped in
//! (`packaging/stamp-version.sh`). The watchdog check shortens `WatchdogSec` to 5 s with a
//! drop-in, so the test waits seconds rather than the unit's 30.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::docker::{build_image, docker, docker_ok, exec_as, image, serial};
use crate::common::{form_xsrf, free_port, login_at, repo, ADMIN_SERVICE_TOKEN as ADMIN};

/// The systemd image, built (or found in the cache) once per test process.
fn systemd_image() -> String {
    build_image("systemd.sh", "orrery-systemd")
}

/// Files served over HTTP to the machine (`python3 -m http.server` on the host's loopback,
/// which the container shares): the installer, binaries, the `.deb`.
struct FileServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl FileServer {
    fn start() -> FileServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let began = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "the file server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        FileServer { dir, port, child }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The orrery binary, stripped (smaller to serve), stamped with `version` when given.
fn binary(files: &FileServer, name: &str, version: Option<&str>) -> String {
    let out = files.path(name);
    let st = Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(env!("CARGO_BIN_EXE_orrery"))
        .status()
        .expect("strip");
    assert!(st.success(), "strip failed");
    if let Some(v) = version {
        let st = Command::new("sh")
            .arg(repo().join("packaging/stamp-version.sh"))
            .arg(&out)
            .arg(v)
            .arg(&out)
            .status()
            .expect("stamp-version.sh");
        assert!(st.success(), "stamp-version.sh {v} failed");
    }
    let said = Command::new(&out).arg("version").output().expect("version");
    let said = String::from_utf8_lossy(&said.stdout).trim().to_string();
    if let Some(v) = version {
        assert_eq!(
            said,
            format!("orrery {v}"),
            "the stamped binary says its version"
        );
    }
    name.to_string()
}

/// The versions around this build's: (current, newer, older).
fn versions() -> (String, String, String) {
    let current = env!("CARGO_PKG_VERSION").to_string();
    let parts: Vec<u64> = current
        .split(['.', '-', '+'])
        .take(3)
        .map(|p| p.parse().expect("numeric version"))
        .collect();
    let (major, minor, patch) = (parts[0], parts[1], parts[2]);
    let newer = format!("{major}.{minor}.{}", patch + 1);
    let older = match (major, minor, patch) {
        (_, _, p) if p > 0 => format!("{major}.{minor}.{}", p - 1),
        (_, m, _) if m > 0 => format!("{major}.{}.99", m - 1),
        _ => "0.0.0".to_string(),
    };
    (current, newer, older)
}

/// The machine: a container with systemd as PID 1, removed (with whatever Orrery made on the
/// engine for this test) on drop, also when the test fails.
struct Machine {
    name: String,
    /// The hub's port and base URL on the host's loopback.
    port: u16,
    url: String,
    /// This test's prefix for networks, volumes and users.
    tag: String,
    http: reqwest::Client,
}

impl Machine {
    fn boot(image: &str) -> Machine {
        let port = free_port();
        let name = format!("orrery-sdtest-{port}");
        let machine = Machine {
            name: name.clone(),
            port,
            url: format!("http://127.0.0.1:{port}"),
            tag: format!("sd{port}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .expect("client"),
        };
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            image,
            "/lib/systemd/systemd",
        ]);
        let (_, state, _) = machine.sh("timeout 90 systemctl is-system-running --wait");
        assert!(
            state == "running" || state == "degraded",
            "systemd did not boot: {state}\n{}",
            machine.sh("systemctl --failed --no-pager").1
        );
        machine
    }

    /// `sh -c SCRIPT` in the machine as root: (exit code, stdout, stderr).
    fn sh(&self, script: &str) -> (i32, String, String) {
        self.sh_as("root", script)
    }

    fn sh_as(&self, user: &str, script: &str) -> (i32, String, String) {
        exec_as(&self.name, Some(user), &["sh", "-c", script])
    }

    /// `sh -c SCRIPT` that must succeed; its stdout.
    fn ok(&self, script: &str) -> String {
        let (code, out, err) = self.sh(script);
        assert_eq!(
            code,
            0,
            "`{script}` failed:\n{out}\n{err}\n{}",
            self.journal_tail()
        );
        out
    }

    fn journal_tail(&self) -> String {
        self.sh("journalctl -u orrery -n 40 --no-pager 2>&1").1
    }

    fn write(&self, path: &str, text: &str) {
        let mut child = Command::new("docker")
            .args(["exec", "-i", &self.name, "sh", "-c"])
            .arg(format!("mkdir -p \"$(dirname {path})\" && cat > {path}"))
            .stdin(Stdio::piped())
            .spawn()
            .expect("docker exec");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), text.as_bytes())
            .expect("write");
        drop(child.stdin.take());
        assert!(child.wait().expect("wait").success(), "writing {path}");
    }

    fn user(&self, who: &str) -> String {
        format!("{who}{}", self.tag)
    }

    fn volume(&self, user: &str) -> String {
        format!("orrery-{}-{user}", self.tag)
    }

    /// The test's config: the hub on free loopback ports, the Docker backend on this test's
    /// network and volumes, the test admin service.
    fn config(&self) -> String {
        format!(
            "[http]\naddress = \"127.0.0.1\"\nport = {}\n\n[internal]\nport = {}\n\n\
             [state]\npath = \"/var/lib/orrery/state\"\n\n\
             [spawner]\nbackend = \"docker\"\nslow_spawn_timeout = \"60s\"\nstart_timeout = \"90s\"\n\n\
             [spawner.docker]\nimage = \"{}\"\npull_policy = \"never\"\nnetwork = \"orrery-{}\"\n\
             home_volume = \"orrery-{}-{{username}}\"\n\n[cull]\nenabled = false\n\n\
             [auth.firstuse]\ncreate_users = false\n\n\
             [[services]]\nname = \"test-admin\"\napi_token = \"{ADMIN}\"\n\
             scopes = [\"admin:users\", \"admin:servers\", \"tokens\", \"admin:groups\", \"read:hub\", \"list:users\"]\n",
            self.port,
            free_port(),
            image(),
            self.tag,
            self.tag
        )
    }

    fn systemctl(&self, args: &str) -> String {
        self.sh(&format!("systemctl {args}")).1
    }

    fn main_pid(&self) -> String {
        self.systemctl("show -p MainPID --value orrery")
    }

    /// Wait until the unit is active with a main process other than `old_pid` and the hub
    /// answers.
    async fn wait_restarted(&self, old_pid: &str, within: Duration) {
        let began = Instant::now();
        loop {
            let pid = self.main_pid();
            if pid != old_pid && pid != "0" && self.systemctl("is-active orrery") == "active" {
                break;
            }
            assert!(
                began.elapsed() < within,
                "orrery was not restarted within {within:?} (MainPID {pid})\n{}",
                self.journal_tail()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.wait_answers().await;
    }

    async fn wait_answers(&self) {
        let began = Instant::now();
        while self
            .http
            .get(format!("{}/hub/api/", self.url))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "the hub does not answer\n{}",
                self.journal_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(
                method.parse().expect("method"),
                format!("{}/hub/api{path}", self.url),
            )
            .header("Authorization", format!("token {token}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("api request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Start `user`'s server as they would without JavaScript: the home page's start button
    /// (with the CSRF token from the page), then wait until the hub says it is ready; its
    /// container id.
    async fn start_from_home_page(&self, user: &str, cookie: &str) -> String {
        let page = self
            .http
            .get(format!("{}/hub/home", self.url))
            .header("Cookie", cookie)
            .send()
            .await
            .expect("home")
            .text()
            .await
            .expect("home page");
        let xsrf = form_xsrf(&page);
        let r = self
            .http
            .post(format!("{}/hub/home/start", self.url))
            .header("Cookie", cookie)
            .form(&[("_xsrf", xsrf.as_str())])
            .send()
            .await
            .expect("start");
        assert!(r.status().is_redirection(), "start: {}", r.status());
        self.wait_ready(user).await
    }

    /// Wait until `user`'s server is ready; its container id.
    async fn wait_ready(&self, user: &str) -> String {
        let began = Instant::now();
        loop {
            let (s, u) = self
                .api("GET", &format!("/users/{user}"), ADMIN, None)
                .await;
            assert_eq!(s, 200, "{u}");
            let srv = &u["servers"][""];
            if srv["ready"] == true {
                return srv["state"]["container_id"]
                    .as_str()
                    .expect("container id")
                    .to_string();
            }
            assert!(
                began.elapsed() < Duration::from_secs(120),
                "{user}'s server is not ready: {u}\n{}",
                self.journal_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Run the installer as the README says: `curl -fsSL URL | sh -s -- ARGS`.
    fn bootstrap(&self, files: &FileServer, args: &str) -> (i32, String, String) {
        self.sh(&format!(
            "curl -fsSL {} | sh -s -- {args}",
            files.url("bootstrap.sh")
        ))
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
        let (_, out, _) = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("name=orrery-.*{}", self.tag),
        ]);
        for c in out.split_whitespace() {
            let _ = docker(&["rm", "-f", c]);
        }
        let (_, out, _) = docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name=orrery-{}", self.tag),
        ]);
        for v in out.split_whitespace() {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
        let _ = docker(&["network", "rm", &format!("orrery-{}", self.tag)]);
    }
}

/// `docker exec` into a user's server container: (exit code, stdout).
fn in_server(container: &str, script: &str) -> (i32, String) {
    let (ok, out, err) = docker(&["exec", container, "sh", "-c", script]);
    (if ok { 0 } else { 1 }, format!("{out}{err}"))
}

fn exists(m: &Machine, path: &str) -> bool {
    m.sh(&format!("test -e {path}")).0 == 0
}

fn volume_exists(name: &str) -> bool {
    docker(&["volume", "inspect", name]).0
}

// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_appliance_lives_its_whole_life_under_systemd() {
    let _serial = serial().await;
    image();
    let sd_image = systemd_image();
    let (current, newer, older) = versions();
    let files = FileServer::start();
    std::fs::copy(
        repo().join("bootstrap/bootstrap.sh"),
        files.path("bootstrap.sh"),
    )
    .expect("copy bootstrap.sh");
    binary(&files, "orrery", None);
    binary(&files, "orrery-newer", Some(&newer));
    binary(&files, "orrery-older", Some(&older));

    // ---- refusals: an unsupported OS, a non-root run ----
    std::fs::write(
        files.path("os-release"),
        "ID=fedora\nVERSION_ID=40\nPRETTY_NAME=\"Fedora Linux 40\"\n",
    )
    .expect("os-release");
    let (ok, out, err) = docker(&[
        "run",
        "--rm",
        "--network",
        "host",
        "-v",
        &format!("{}:/etc/os-release:ro", files.path("os-release").display()),
        "-v",
        &format!("{}:/bootstrap.sh:ro", files.path("bootstrap.sh").display()),
        &sd_image,
        "sh",
        "/bootstrap.sh",
        "--binary",
        "/nowhere",
    ]);
    assert!(!ok, "an unsupported OS must be refused:\n{out}\n{err}");
    assert!(
        err.contains("Fedora Linux 40") && err.contains("not supported"),
        "{err}"
    );

    let m = Machine::boot(&sd_image);
    let (code, out, err) = m.sh_as(
        "nobody",
        &format!(
            "curl -fsSL {} | sh -s -- --binary {}",
            files.url("bootstrap.sh"),
            files.url("orrery")
        ),
    );
    assert_ne!(code, 0, "a non-root run must be refused:\n{out}\n{err}");
    assert!(err.contains("root"), "{err}");
    assert!(
        !exists(&m, "/usr/local/bin/orrery"),
        "nothing was installed"
    );

    // ---- install: curl | sh ----
    let alice = m.user("alice");
    m.write("/etc/orrery/config.toml", &m.config());
    // TLJH's option: a requirements file every user gets (the software environment).
    let _derived = crate::environment::DerivedImages::of(&image());
    std::fs::write(files.path("user-requirements.txt"), "pyjokes\n").expect("requirements");
    let requirements = format!(
        "--user-requirements-txt-url {}",
        files.url("user-requirements.txt")
    );
    let (code, out, err) = m.bootstrap(
        &files,
        &format!(
            "--admin {alice} --binary {} --no-docker {requirements}",
            files.url("orrery")
        ),
    );
    assert_eq!(
        code,
        0,
        "install failed:\n{out}\n{err}\n{}",
        m.journal_tail()
    );
    assert!(out.contains("==> "), "every step is logged:\n{out}");
    assert_eq!(m.systemctl("is-active orrery"), "active");
    assert_eq!(m.systemctl("show -p Type orrery"), "Type=notify");
    assert_eq!(m.systemctl("show -p WatchdogUSec --value orrery"), "30s");
    assert_eq!(m.ok("orrery version"), format!("orrery {current}"));
    let status = m.ok("orrery status");
    assert!(
        status.contains(&format!("orrery {current}: running")),
        "{status}"
    );

    // The admin logs in (first use sets the password) and starts a server; an unknown name
    // cannot sign up.
    let cookie = login_at(&m.url, &alice, "alice-first-pw")
        .await
        .unwrap_or_else(|(s, p)| panic!("{alice} cannot log in: {s}\n{p}"));
    let container = m.start_from_home_page(&alice, &cookie).await;
    assert!(
        out.contains("Generation 1 is in effect (install -r user-requirements.txt)"),
        "the installer seeded the environment:\n{out}"
    );
    assert_eq!(
        in_server(
            &container,
            "python3 -c 'import pyjokes; print(pyjokes.__name__)'"
        ),
        (0, "pyjokes".to_string()),
        "the first server has the user requirements"
    );
    let mallory = m.user("mallory");
    let refused = login_at(&m.url, &mallory, "mallory-pw-123").await;
    assert!(refused.is_err(), "an unknown name signed up");
    let (s, _) = m
        .api("GET", &format!("/users/{mallory}"), ADMIN, None)
        .await;
    assert_eq!(s, 404, "no account was made for {mallory}");

    // A file in the home, a group and a token: what must survive everything below.
    let (code, out) = in_server(
        &container,
        "echo 'the proof' > ~/proof.txt && cat ~/proof.txt",
    );
    assert_eq!((code, out.trim()), (0, "the proof"));
    let (s, b) = m
        .api("POST", "/groups/ta", ADMIN, Some(json!({"users": [alice]})))
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = m
        .api(
            "POST",
            &format!("/users/{alice}/tokens"),
            ADMIN,
            Some(json!({"note": "kept"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let alice_token = b["token"].as_str().expect("token").to_string();

    // ---- systemctl restart keeps the server ----
    let pid = m.main_pid();
    m.ok("systemctl restart orrery");
    m.wait_restarted(&pid, Duration::from_secs(60)).await;
    assert_eq!(
        m.wait_ready(&alice).await,
        container,
        "the same container after a restart"
    );

    // ---- systemctl reload applies a change; the daemon's RELOADING=1 puts the unit in the
    // reload state (systemd's debug log names every state change) ----
    let pid = m.main_pid();
    m.ok("systemd-analyze log-level debug");
    m.ok("orrery config set auth.firstuse.create_users true");
    m.ok("systemctl reload orrery");
    let reloads = |m: &Machine| {
        m.ok("journalctl -u orrery --no-pager -o cat")
            .matches("Changed running -> reload")
            .count()
    };
    let by_systemctl = reloads(&m);
    assert!(by_systemctl >= 1, "{}", m.journal_tail());
    // A SIGHUP that does not come through systemctl: only the daemon's own RELOADING=1 can
    // tell systemd, and READY=1 brings the unit back to running.
    m.ok(&format!("kill -HUP {pid}"));
    let began = Instant::now();
    while reloads(&m) == by_systemctl {
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "the unit never entered reload on SIGHUP\n{}",
            m.journal_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    m.ok("systemd-analyze log-level info");
    assert!(m
        .ok("journalctl -u orrery --no-pager -o cat")
        .contains("Changed reload -> running"));
    assert_eq!(m.systemctl("is-active orrery"), "active");
    assert_eq!(m.main_pid(), pid, "a reload is not a restart");
    let bob = m.user("bob");
    login_at(&m.url, &bob, "bob-signs-up")
        .await
        .unwrap_or_else(|(s, p)| panic!("sign-up was opened by the reload, yet: {s}\n{p}"));

    // ---- the journal has the structured fields ----
    let json_lines = m.ok("journalctl -u orrery -o json --no-pager");
    let ready = json_lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["MESSAGE"] == "server ready" && e["ORRERY_USER"] == alice.as_str())
        .unwrap_or_else(|| {
            panic!("no 'server ready' entry with ORRERY_USER={alice}:\n{json_lines}")
        });
    assert_eq!(ready["ORRERY_SERVER"], "", "{ready}");
    assert!(ready["ORRERY_TOOK_MS"].is_string(), "{ready}");
    assert_eq!(ready["SYSLOG_IDENTIFIER"], "orrery", "{ready}");

    // ---- kill -9: systemd restarts it and the server is re-adopted ----
    let pid = m.main_pid();
    m.ok(&format!("kill -9 {pid}"));
    m.wait_restarted(&pid, Duration::from_secs(60)).await;
    assert_eq!(
        m.wait_ready(&alice).await,
        container,
        "re-adopted after kill -9"
    );

    // ---- a frozen runtime: the watchdog restarts it ----
    m.write(
        "/etc/systemd/system/orrery.service.d/test-watchdog.conf",
        "[Service]\nWatchdogSec=5s\n",
    );
    m.ok("systemctl daemon-reload && systemctl restart orrery");
    let pid = m.main_pid();
    m.wait_answers().await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(m.main_pid(), pid, "a healthy daemon keeps the watchdog fed");
    m.ok(&format!("kill -STOP {pid}"));
    m.wait_restarted(&pid, Duration::from_secs(60)).await;
    let journal = m.ok("journalctl -u orrery --no-pager -o cat");
    assert!(journal.contains("Watchdog timeout"), "{journal}");
    assert_eq!(m.wait_ready(&alice).await, container);
    m.ok("rm /etc/systemd/system/orrery.service.d/test-watchdog.conf && systemctl daemon-reload");

    // ---- upgrade: re-running the installer with a newer binary keeps everything ----
    let config_before = m.ok("cat /etc/orrery/config.toml");
    let (code, out, err) = m.bootstrap(
        &files,
        &format!(
            "--binary {} --no-docker {requirements}",
            files.url("orrery-newer")
        ),
    );
    assert_eq!(code, 0, "upgrade failed:\n{out}\n{err}");
    assert!(
        out.contains("Nothing changed: generation 1"),
        "the same requirements again change nothing:\n{out}"
    );
    m.wait_answers().await;
    assert_eq!(m.ok("orrery version"), format!("orrery {newer}"));
    let (_, info) = m.api("GET", "/info", ADMIN, None).await;
    assert_eq!(
        info["orrery"],
        newer.as_str(),
        "the new binary runs: {info}"
    );
    assert_eq!(
        m.ok("cat /etc/orrery/config.toml"),
        config_before,
        "config kept"
    );
    assert_eq!(m.wait_ready(&alice).await, container, "the server kept");
    assert_eq!(
        in_server(&container, "cat ~/proof.txt").1.trim(),
        "the proof"
    );
    let (s, who) = m.api("GET", "/user", &alice_token, None).await;
    assert_eq!(
        (s, who["name"].as_str()),
        (200, Some(alice.as_str())),
        "state kept"
    );

    // An older binary is refused, and nothing changes.
    let (code, out, err) = m.bootstrap(
        &files,
        &format!("--binary {} --no-docker", files.url("orrery-older")),
    );
    assert_ne!(code, 0, "a downgrade must be refused:\n{out}\n{err}");
    assert!(
        err.contains(&older) && err.contains(&newer) && err.contains("--allow-downgrade"),
        "{err}"
    );
    assert_eq!(m.ok("orrery version"), format!("orrery {newer}"));
    assert_eq!(m.systemctl("is-active orrery"), "active");

    // A failing step is named, and leaves the machine as it was (re-runnable).
    let (code, out, err) = m.bootstrap(
        &files,
        &format!("--binary {} --no-docker", files.url("no-such-binary")),
    );
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("ERROR in step 'Getting the orrery binary'") && err.contains("re-run"),
        "{err}"
    );
    assert_eq!(m.ok("orrery version"), format!("orrery {newer}"));
    assert_eq!(m.systemctl("is-active orrery"), "active");

    // ---- backup on the running hub, restore into an empty state on a stopped daemon ----
    let out = m.ok("orrery backup /root/hub.tar.gz --homes");
    assert!(out.contains("from the running daemon"), "{out}");
    assert!(
        out.contains(&alice) && out.contains("were running"),
        "{out}"
    );
    let (s, _) = m
        .api("DELETE", &format!("/users/{alice}/server"), ADMIN, None)
        .await;
    assert!(s == 204 || s == 202, "stop: {s}");
    m.ok("systemctl stop orrery");
    // The machine loses its state and alice's home.
    m.ok("mv /var/lib/orrery/state /root/lost-state");
    let started = Instant::now();
    while docker(&["inspect", &container]).0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server container is still there"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    docker_ok(&["volume", "rm", &m.volume(&alice)]);
    let out = m.ok("orrery restore /root/hub.tar.gz");
    assert!(
        out.contains("restored the state") && out.contains("2 users"),
        "{out}"
    );
    assert!(volume_exists(&m.volume(&alice)), "{out}");
    m.ok("systemctl start orrery");
    m.wait_answers().await;
    let (s, who) = m.api("GET", "/user", &alice_token, None).await;
    assert_eq!(
        (s, who["name"].as_str()),
        (200, Some(alice.as_str())),
        "the token is back"
    );
    assert!(
        who["groups"]
            .as_array()
            .is_some_and(|g| g.contains(&json!("ta"))),
        "{who}"
    );
    let (s, _) = m.api("GET", &format!("/users/{bob}"), ADMIN, None).await;
    assert_eq!(s, 200, "bob is back");
    let cookie = login_at(&m.url, &alice, "alice-first-pw")
        .await
        .unwrap_or_else(|(s, p)| panic!("{alice}'s password did not come back: {s}\n{p}"));
    let restored = m.start_from_home_page(&alice, &cookie).await;
    assert_eq!(
        in_server(&restored, "cat ~/proof.txt").1.trim(),
        "the proof"
    );
    let (_, uid) = in_server(&restored, "stat -c %u ~/proof.txt");
    assert_eq!(uid.trim(), "1000", "the restored file is still the user's");

    // ---- uninstall, purge, purge-homes ----
    let (code, out, err) = m.bootstrap(&files, "--uninstall");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        !exists(&m, "/usr/local/bin/orrery") && !exists(&m, "/etc/systemd/system/orrery.service")
    );
    assert!(
        exists(&m, "/etc/orrery/config.toml") && exists(&m, "/var/lib/orrery/state"),
        "kept"
    );
    assert!(
        !docker(&["inspect", &restored]).0,
        "the server container is removed"
    );
    assert!(volume_exists(&m.volume(&alice)), "the home is kept");
    assert_eq!(m.systemctl("is-active orrery"), "inactive");

    let (code, out, err) = m.bootstrap(
        &files,
        &format!("--binary {} --no-docker", files.url("orrery")),
    );
    assert_eq!(code, 0, "reinstall:\n{out}\n{err}");
    let (code, out, err) = m.bootstrap(&files, "--purge");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        !exists(&m, "/etc/orrery") && !exists(&m, "/var/lib/orrery"),
        "purged:\n{out}"
    );
    assert!(volume_exists(&m.volume(&alice)), "--purge keeps the homes");

    m.write("/etc/orrery/config.toml", &m.config());
    let (code, out, err) = m.bootstrap(
        &files,
        &format!(
            "--admin {alice}:alice-second-pw --binary {} --no-docker",
            files.url("orrery")
        ),
    );
    assert_eq!(code, 0, "reinstall:\n{out}\n{err}");
    let cookie = login_at(&m.url, &alice, "alice-second-pw")
        .await
        .unwrap_or_else(|(s, p)| panic!("--admin NAME:PASSWORD: {s}\n{p}"));
    let again = m.start_from_home_page(&alice, &cookie).await;
    assert_eq!(
        in_server(&again, "cat ~/proof.txt").1.trim(),
        "the proof",
        "the kept home"
    );
    let (code, _, err) = m.bootstrap(&files, "--purge-homes");
    assert_ne!(code, 0, "--purge-homes without a terminal needs --yes");
    assert!(err.contains("--yes"), "{err}");
    assert!(volume_exists(&m.volume(&alice)));
    let (code, out, err) = m.bootstrap(&files, "--purge-homes --yes");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        !volume_exists(&m.volume(&alice)),
        "--purge-homes removes the homes:\n{out}"
    );
    assert!(!docker(&["inspect", &again]).0);
    assert!(
        !exists(&m, "/etc/orrery")
            && !exists(&m, "/var/lib/orrery")
            && !exists(&m, "/usr/local/bin/orrery")
    );

    // ---- the .deb: install, remove (keeps config and state), purge (removes them) ----
    let deb = build_deb(&files);
    m.write("/etc/orrery/config.toml", &m.config());
    m.ok(&format!(
        "curl -fsSL -o /root/orrery.deb {}",
        files.url(&deb)
    ));
    m.ok("dpkg -i --force-confold /root/orrery.deb");
    m.wait_answers().await;
    assert_eq!(m.systemctl("is-active orrery"), "active");
    assert_eq!(m.systemctl("show -p Type orrery"), "Type=notify");
    m.ok("dpkg -r orrery");
    assert_eq!(m.systemctl("is-active orrery"), "inactive");
    assert!(!exists(&m, "/usr/bin/orrery"));
    assert!(
        exists(&m, "/etc/orrery/config.toml") && exists(&m, "/var/lib/orrery/state"),
        "remove keeps config and state"
    );
    m.ok("dpkg -P orrery");
    assert!(
        !exists(&m, "/etc/orrery") && !exists(&m, "/var/lib/orrery"),
        "purge removes config and state"
    );
}

/// Build the `.deb` from this build (stripped) into the file server's directory; its name.
fn build_deb(files: &FileServer) -> String {
    let out = Command::new("sh")
        .arg(repo().join("packaging/build-deb.sh"))
        .env("ORRERY_BINARY", files.path("orrery"))
        .env("ORRERY_DEB_COMPRESSION", "gzip")
        .env("ORRERY_DEB_OUT", files.dir.path())
        .output()
        .expect("build-deb.sh");
    assert!(
        out.status.success(),
        "build-deb.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = std::fs::read_dir(files.dir.path())
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".deb"))
        .expect("a .deb was built");
    deb
}
