//! `orrery serve` as an operator meets it: no config at all, damaged or newer state, unsafe
//! authenticator settings, busy ports, config reload, the users and doctor commands.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, run_cli, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};
use serde_json::json;

/// Run `orrery serve` expecting it to refuse; returns (exit code, stderr).
fn serve_refuses(config: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .args(["--config"])
        .arg(config)
        .arg("serve")
        .stdin(Stdio::null())
        .output()
        .expect("run orrery");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(
        &p,
        format!(
            "[http]\naddress = \"127.0.0.1\"\nport = {}\n[internal]\nport = {}\n[state]\npath = \"{}\"\n{extra}\n",
            free_port(),
            free_port(),
            dir.join("state").display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn runs_with_no_config_file_on_embedded_defaults() {
    if std::path::Path::new("/etc/orrery/config.toml").exists() {
        panic!(
            "/etc/orrery/config.toml exists on this machine; this test needs a machine without one"
        );
    }
    let cwd = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("serve")
        .current_dir(cwd.path())
        .env_remove("ORRERY_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ok = false;
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect("127.0.0.1:8000") {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /hub/api/ HTTP/1.0\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            ok = buf.contains("200 OK") && buf.contains("version");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(ok, "nothing answered on port 8000; stderr:\n{stderr}");
    assert!(
        stderr.contains("listening on http://127.0.0.1:8000/hub/"),
        "{stderr}"
    );
    assert!(
        stderr.contains("first password used becomes"),
        "says how to log in: {stderr}"
    );
    assert!(
        stderr.contains("open sign-up: the no-config developer mode on loopback"),
        "says that sign-up is open, and why: {stderr}"
    );
    assert!(
        cwd.path().join("orrery-state/sled").is_dir(),
        "state in a local directory"
    );
    assert!(
        out.status.success(),
        "graceful shutdown on SIGTERM: {:?}",
        out.status
    );
}

#[test]
fn refuses_newer_or_damaged_state_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    // A state directory written by a "future" Orrery.
    {
        let db = sled::open(dir.path().join("state/sled")).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", "99")
            .unwrap();
        db.flush().unwrap();
    }
    let (code, err) = serve_refuses(&cfg);
    assert_ne!(code, 0);
    assert!(
        err.contains("schema version 99") && err.contains("newer Orrery"),
        "{err}"
    );
    // Damaged: the settings file is garbage.
    std::fs::write(
        dir.path().join("state/sled/conf"),
        b"not a sled settings file at all",
    )
    .unwrap();
    let (code, err) = serve_refuses(&cfg);
    assert_ne!(code, 0);
    assert!(err.contains("damaged"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("state/sled/conf")).unwrap(),
        b"not a sled settings file at all"
    );
}

#[test]
fn refuses_dummy_auth_on_a_public_address_and_names_busy_ports() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.toml");
    std::fs::write(
        &p,
        format!("[http]\naddress = \"0.0.0.0\"\nport = {}\n[state]\npath = \"{}\"\n[auth]\ntype = \"dummy\"\n", free_port(), dir.path().join("state").display()),
    )
    .unwrap();
    let (code, err) = serve_refuses(&p);
    assert_ne!(code, 0);
    assert!(
        err.contains("dummy") && err.contains("allow_non_loopback"),
        "{err}"
    );

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    std::fs::write(
        &p,
        format!("[http]\naddress = \"127.0.0.1\"\nport = {port}\n[internal]\nport = {}\n[state]\npath = \"{}\"\n", free_port(), dir.path().join("state").display()),
    )
    .unwrap();
    let (code, err) = serve_refuses(&p);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("{port}")) && err.contains("http.port"),
        "{err}"
    );
}

#[tokio::test]
async fn config_reload_applies_live_keys_and_reports_restart_keys() {
    let d = Daemon::start("").await;
    d.create_users(&["alice"], false).await;
    let (_, u, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    assert_eq!(u["admin"], false);
    let (code, _, err) = d.cli(&["config", "add-item", "users.admin", "alice"], None);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = d.cli(&["config", "set", "cull.timeout", "5m"], None);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = d.cli(
        &["config", "set", "http.port", &free_port().to_string()],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = d.cli(&["config", "reload"], None);
    assert_eq!(code, 0, "reload failed: {out}{err}\n{}", d.log());
    assert!(
        out.contains("users.admin") && out.contains("cull.timeout"),
        "reports changes: {out}"
    );
    assert!(
        out.contains("http.port") && out.to_lowercase().contains("restart"),
        "reports restart keys: {out}"
    );
    // Applied at once: alice is an admin now; the daemon still answers on the old port.
    let (s, u, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    assert_eq!(s, 200);
    assert_eq!(u["admin"], true);
    // An invalid file is not applied (and the running config is kept).
    let text = std::fs::read_to_string(&d.config_path).unwrap();
    std::fs::write(&d.config_path, format!("{text}\n[bogus]\nx = 1\n")).unwrap();
    let (code, out, err) = d.cli(&["config", "reload"], None);
    assert_ne!(code, 0, "invalid config must not reload: {out}");
    assert!(err.contains("bogus"), "{err}");
    let (s, _, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    assert_eq!(s, 200);
    // SIGHUP reloads too (systemd's ExecReload): alice stops being an admin.
    std::fs::write(
        &d.config_path,
        text.replace("admin = [\"alice\"]", "admin = []"),
    )
    .unwrap();
    let pid = nix::unistd::Pid::from_raw(d.pid().expect("running"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("SIGHUP: configuration reloaded") {
        assert!(
            Instant::now() < deadline,
            "no SIGHUP reload in the log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, u, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    assert_eq!(
        u["admin"],
        false,
        "config after SIGHUP: {}",
        std::fs::read_to_string(&d.config_path).unwrap()
    );
}

#[tokio::test]
async fn users_command_works_with_and_without_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "[auth]\ntype = \"native\"\n");
    // Daemon stopped: edits the state directly.
    let (code, out, err) = run_cli(
        &cfg,
        &["users", "add", "bob", "--password-stdin"],
        Some("bobs-password\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = run_cli(&cfg, &["users", "add", "bob"], None);
    assert_eq!(code, 2, "duplicate refused: {err}");
    let (code, _, err) = run_cli(&cfg, &["users", "add", "Not/Valid"], None);
    assert_eq!(code, 2);
    assert!(err.contains("'/'") || err.contains("\"/\""), "{err}");
    let (code, out, _) = run_cli(&cfg, &["users", "list"], None);
    assert_eq!(code, 0);
    assert!(out.contains("bob"));
    // Daemon running: goes through its API.
    let mut child = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap();
    let port: u16 = text
        .lines()
        .find_map(|l| l.strip_prefix("port = "))
        .unwrap()
        .parse()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http
        .get(format!("http://127.0.0.1:{port}/hub/api/"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "daemon did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, out, err) = run_cli(&cfg, &["users", "make-admin", "bob"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run_cli(&cfg, &["users", "list"], None);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.contains("bob") && l.contains("admin")),
        "{out}"
    );
    let (code, _, err) = run_cli(&cfg, &["users", "set-password", "bob"], Some("short\n"));
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run_cli(
        &cfg,
        &["users", "set-password", "bob"],
        Some("a-new-password\n"),
    );
    assert_eq!(code, 0, "{err}");
    let _ = json!({});
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

#[test]
fn doctor_reports_each_check_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "[spawner]\nbackend = \"local\"\n");
    let (code, out, err) = run_cli(&cfg, &["doctor"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("config") && out.contains("is valid"), "{out}");
    assert!(out.contains("state"), "{out}");
    assert!(out.contains("nvml"), "{out}");
    assert!(out.contains("is free"), "{out}");
    // A busy port is a failure with a fix.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let text = std::fs::read_to_string(&cfg).unwrap();
    let first_port = text
        .lines()
        .find_map(|l| l.strip_prefix("port = "))
        .unwrap()
        .to_string();
    std::fs::write(
        &cfg,
        text.replacen(
            &format!("port = {first_port}"),
            &format!("port = {port}"),
            1,
        ),
    )
    .unwrap();
    let (code, out, _) = run_cli(&cfg, &["doctor"], None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL") && out.contains("fix:"), "{out}");
    // The Docker check names the fix when the engine is unreachable.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("backend = \"local\"", "backend = \"docker\""),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--config")
        .arg(&cfg)
        .arg("doctor")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("docker") && out.contains("apt-get install docker.io"),
        "{out}"
    );
}

const SERVICE_TOKEN: &str = "dashboard-service-token-0123456789";

/// An unknown scope in a `[[services]]` entry stops the daemon from starting, naming the scope
/// and the nearest known one; a JupyterHub scope Orrery does not implement (`shares`) starts
/// with a warning, and the service keeps its other scopes.
#[tokio::test]
async fn config_scopes_are_checked_and_one_odd_scope_costs_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let service = |scopes: &str| {
        format!(
            "[spawner]\nbackend = \"local\"\n[[services]]\nname = \"dashboard\"\n\
             api_token = \"{SERVICE_TOKEN}\"\nscopes = {scopes}\n"
        )
    };
    let cfg = write_config(dir.path(), &service(r#"["admin:users", "nonsense"]"#));
    let (code, err) = serve_refuses(&cfg);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("services[0].scopes[1]") && err.contains("unknown scope \"nonsense\""),
        "names the scope and where it is: {err}"
    );
    assert!(err.contains("the nearest known scope is"), "{err}");
    let typo = write_config(dir.path(), &service(r#"["admin:user"]"#));
    let (_, err) = serve_refuses(&typo);
    assert!(
        err.contains("nearest known scope is \"admin:users\""),
        "{err}"
    );
    // Any `config set` on such a file refuses (the whole result is checked) and changes nothing.
    let before = std::fs::read_to_string(&typo).unwrap();
    let (code, _, err) = run_cli(&typo, &["config", "set", "http.port", "8123"], None);
    assert_eq!(code, 2, "{err}");
    assert_eq!(std::fs::read_to_string(&typo).unwrap(), before);

    let mut d = Daemon::start(
        &service(r#"["admin:users", "start:servers"]"#)
            .replace("[spawner]\nbackend = \"local\"\n", ""),
    )
    .await;
    let (status, me, _) = d.api("GET", "/user", Some(SERVICE_TOKEN), None).await;
    assert_eq!(status, 200, "{me}");
    let scopes: Vec<&str> = me["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(scopes.contains(&"admin:users"), "{scopes:?}");
    assert!(
        !scopes.contains(&"start:servers"),
        "grants nothing: {scopes:?}"
    );
    let (status, users, _) = d.api("GET", "/users", Some(SERVICE_TOKEN), None).await;
    assert_eq!(status, 200, "the service can still list users: {users}");
    let log = d.log();
    assert!(
        log.contains(
            "scope \"start:servers\" is JupyterHub's, but Orrery does not implement it yet"
        ),
        "{log}"
    );
    let (_, out, _) = d.cli(&["doctor"], None);
    assert!(
        out.contains("[warn]") && out.contains("\"start:servers\""),
        "{out}"
    );
    let (code, _, err) = d.cli(&["config", "set", "cull.timeout", "20m"], None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: services[1].scopes[1]"), "{err}");
    d.stop();
}

/// An install whose state was created while sign-up was open, and whose config does not set
/// auth.firstuse.create_users, is told at start (log) and by `orrery doctor` (daemon running
/// or not) which key brings the old behaviour back; setting the key silences it.
#[tokio::test]
async fn an_upgrade_that_closes_sign_up_says_so() {
    let mut d = Daemon::start("").await;
    d.stop();
    assert!(
        !d.log().contains("now defaults to false"),
        "a new install: no notice"
    );
    // Make the state look as an older Orrery left it: no record of the sign-up default.
    {
        let db = sled::open(d.state_dir().join("sled")).unwrap();
        let meta = db.open_tree("meta").unwrap();
        assert!(meta.remove("signup_default_at_creation").unwrap().is_some());
        db.flush().unwrap();
    }
    let (_, out, _) = d.cli(&["doctor"], None);
    assert!(
        out.contains("auth.firstuse.create_users now defaults to false")
            && out.contains("orrery config set auth.firstuse.create_users true"),
        "doctor, daemon stopped: {out}"
    );
    d.spawn().await;
    assert!(
        d.log()
            .contains("orrery config set auth.firstuse.create_users true"),
        "{}",
        d.log()
    );
    let (_, out, _) = d.cli(&["doctor"], None);
    assert!(
        out.contains("now defaults to false"),
        "doctor, daemon running: {out}"
    );
    d.stop();
    let (code, _, err) = d.cli(
        &["config", "set", "auth.firstuse.create_users", "false"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = d.cli(&["doctor"], None);
    assert!(!out.contains("now defaults to false"), "{out}");
}

/// SIGTERM during a spawn: the daemon ends within its 10 s grace with a clean exit, leaving
/// the spawn's process running; the next start's reconcile stops it and forgets the record (a
/// spawn abandoned by the last run can never become ready).
#[tokio::test]
async fn shutdown_abandons_a_spawn_in_flight_to_the_next_start() {
    let mut d = Daemon::start(&crate::common::sleeping_spawner("")).await;
    d.create_users(&["alice"], false).await;
    let (s, body, _) = d
        .api("POST", "/users/alice/server", Some(ADMIN), None)
        .await;
    assert_eq!(s, 202, "{body}");
    let (_, alice, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    let pid = alice["servers"][""]["state"]["pid"].as_i64().expect("pid") as i32;
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    };

    let (status, took) = d.terminate();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        d.log()
    );
    assert!(
        took < std::time::Duration::from_secs(10),
        "shutdown took {took:?}, past its 10 s grace"
    );
    assert!(alive(pid), "the spawn's process is left running");

    d.spawn().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the abandoned spawn still runs\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, alice, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    assert!(
        alice["servers"].as_object().is_some_and(|s| s.is_empty()),
        "the abandoned record is forgotten: {alice}"
    );
}

/// The systemd side of `Type=notify`, spoken to a socket of the test's own (as systemd's
/// `$NOTIFY_SOCKET`): `READY=1` once serving, `WATCHDOG=1` at half of `$WATCHDOG_USEC` from
/// the runtime (none while the process is frozen: systemd would restart it),
/// `RELOADING=1` with `MONOTONIC_USEC` then `READY=1` around a SIGHUP reload, and
/// `STOPPING=1` on SIGTERM.
#[tokio::test]
async fn tells_systemd_ready_reloading_stopping_and_feeds_the_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut seen: Vec<String> = Vec::new();
    // Messages received until `done` holds for one (within `secs`).
    let mut until = |secs: u64, done: &dyn Fn(&str) -> bool| -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                seen.push(m.clone());
                got.push(m.clone());
                if done(&m) {
                    return got;
                }
            }
        }
        got
    };
    let mut d = crate::common::Daemon::start_with_env(
        "",
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    )
    .await;
    let got = until(30, &|m| m.contains("READY=1"));
    let ready = got.last().cloned().unwrap_or_default();
    assert!(
        ready.contains("READY=1") && ready.contains("STATUS=serving on http://127.0.0.1:"),
        "{got:?}"
    );
    // Keep-alives at half of 400 ms.
    let got = until(1, &|_| false);
    let pings = got.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(pings >= 3, "{got:?}");
    // Frozen: no keep-alive (systemd would kill and restart it).
    let pid = nix::unistd::Pid::from_raw(d.pid().unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = until(0, &|_| false);
    let frozen = until(1, &|_| false);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(
        frozen.iter().all(|m| !m.contains("WATCHDOG=1")),
        "{frozen:?}"
    );
    // A reload: RELOADING=1 with the monotonic time, then READY=1 again.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let got = until(10, &|m| m.contains("READY=1"));
    let reloading = got
        .iter()
        .find(|m| m.contains("RELOADING=1"))
        .unwrap_or_else(|| panic!("no RELOADING=1: {got:?}"));
    assert!(
        reloading.lines().any(|l| l
            .strip_prefix("MONOTONIC_USEC=")
            .is_some_and(|v| v.parse::<u64>().is_ok())),
        "{reloading}"
    );
    assert!(
        got.last()
            .is_some_and(|m| m.contains("STATUS=serving; configuration reloaded")),
        "{got:?}"
    );
    // SIGTERM: STOPPING=1.
    let (status, _) = d.terminate();
    assert!(status.is_some_and(|s| s.success()), "{}", d.log());
    let got = until(2, &|m| m.contains("STOPPING=1"));
    assert!(got.iter().any(|m| m.contains("STOPPING=1")), "{got:?}");
    drop(seen);
}

/// Across a real schema change: the daemon finds a state directory as Orrery wrote it at schema
/// version 1 (no membership index), migrates it when it starts, keeps the database as it was,
/// and answers from the new index (a user's groups on their model come from it).
#[tokio::test]
async fn a_schema_1_state_is_migrated_at_start_and_the_old_database_kept() {
    let mut d = Daemon::start("").await;
    d.stop();
    let state = d.state_dir();
    std::fs::remove_dir_all(state.join("sled")).unwrap();
    {
        let db = sled::open(state.join("sled")).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema_version", "1").unwrap();
        meta.insert("instance_id", "hub-from-v1").unwrap();
        meta.insert("signup_default_at_creation", "closed").unwrap();
        let users = db.open_tree("users").unwrap();
        for name in ["alice", "bob"] {
            let rec = serde_json::json!({
                "name": name, "admin": false, "created": "2026-01-01T00:00:00Z",
                "last_activity": null, "password_hash": null,
            });
            users
                .insert(name, serde_json::to_vec(&rec).unwrap())
                .unwrap();
        }
        let group =
            serde_json::json!({"name": "physics", "users": ["alice", "bob"], "properties": {}});
        db.open_tree("groups")
            .unwrap()
            .insert("physics", serde_json::to_vec(&group).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    d.spawn().await;
    let (s, alice, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    assert_eq!(s, 200, "{alice}");
    assert_eq!(alice["groups"], serde_json::json!(["physics"]), "{alice}");
    assert!(
        state.join("sled.schema-v1.backup").is_dir(),
        "the database before the migration is kept"
    );
    assert!(d.log().contains("state migrated"), "{}", d.log());
    // Membership changes after the migration go through the index too.
    let (s, body, _) = d
        .api(
            "DELETE",
            "/groups/physics/users",
            Some(ADMIN),
            Some(serde_json::json!({"users": ["alice"]})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (_, alice, _) = d.api("GET", "/users/alice", Some(ADMIN), None).await;
    assert_eq!(alice["groups"], serde_json::json!([]), "{alice}");
}

/// The home page's named servers: a new one started from its form (the spawn is slow, so the
/// page follows its progress), listed with its state, and deleted (stopped and forgotten).
#[tokio::test]
async fn the_home_page_starts_lists_and_deletes_named_servers() {
    // Servers that never become ready: a start stays pending for 3 s, then fails.
    let d = Daemon::start(
        "[spawner]\nbackend = \"local\"\nslow_spawn_timeout = \"1s\"\nstart_timeout = \"4s\"\n\
         [spawner.local]\ncmd = [\"sleep\", \"60\"]\nallow_root = true\n\
         [spawner.named_servers]\nenabled = true\n",
    )
    .await;
    d.create_users(&["nina"], false).await;
    let cookie = crate::common::login_at(&d.url, "nina", "nina-password")
        .await
        .expect("login");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let home = |c: &reqwest::Client| {
        c.get(format!("{}/hub/home", d.url))
            .header("Cookie", &cookie)
            .send()
    };
    let page = home(&client).await.unwrap().text().await.unwrap();
    assert!(
        page.contains("Named servers") && page.contains("You have no named servers"),
        "{page}"
    );
    let xsrf = crate::common::form_xsrf(&page);
    let post = |path: String, form: Vec<(&'static str, String)>| {
        client
            .post(format!("{}/hub/{path}", d.url))
            .header("Cookie", &cookie)
            .form(&form)
            .send()
    };
    // A name that cannot be a URL segment is refused on the page.
    let r = post(
        "home/servers".into(),
        vec![("_xsrf", xsrf.clone()), ("server", "No Good".into())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("cannot be a server name"));
    let r = post(
        "home/servers".into(),
        vec![("_xsrf", xsrf.clone()), ("server", "project-x".into())],
    )
    .await
    .unwrap();
    assert_eq!(
        r.headers()["location"],
        "/hub/spawn-pending/nina/project-x",
        "a slow start follows its progress"
    );
    let (s, u, _) = d.api("GET", "/users/nina", Some(ADMIN), None).await;
    assert_eq!(s, 200);
    assert_eq!(u["servers"]["project-x"]["pending"], "spawn", "{u}");
    assert_eq!(
        u["servers"]["project-x"]["url"], "/user/nina/project-x/",
        "{u}"
    );
    let page = home(&client).await.unwrap().text().await.unwrap();
    assert!(page.contains("data-server=\"project-x\""), "{page}");
    assert!(page.contains("/hub/spawn-pending/nina/project-x"), "{page}");
    // The pending page of the named server.
    let r = client
        .get(format!("{}/hub/spawn-pending/nina/project-x", d.url))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Your server project-x is starting"));
    // Delete is refused while the server starts; once its start has failed (and forgotten
    // it), the page's delete forgets its name too.
    let (s, _, _) = d
        .api(
            "DELETE",
            "/users/nina/servers/project-x",
            Some(ADMIN),
            Some(json!({"remove": true})),
        )
        .await;
    assert!(s == 400 || s == 204, "{s}");
    let began = Instant::now();
    loop {
        let (_, u, _) = d.api("GET", "/users/nina", Some(ADMIN), None).await;
        if u["servers"]["project-x"].is_null() {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(30), "{u}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = d
            .api(
                "DELETE",
                "/users/nina/servers/project-x",
                Some(ADMIN),
                Some(json!({"remove": true})),
            )
            .await;
    }
    let r = post(
        "home/servers/project-x/delete".into(),
        vec![("_xsrf", xsrf.clone())],
    )
    .await
    .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let page = home(&client).await.unwrap().text().await.unwrap();
    assert!(
        !page.contains("data-server=\"project-x\""),
        "deleted: {page}"
    );
}

/// Profiles change with `orrery config add-item/remove-item` and a reload: the spawn form shows
/// what the config now says, without a restart.
#[tokio::test]
async fn profiles_added_and_removed_with_orrery_config_show_after_a_reload() {
    let d = Daemon::start(
        "[spawner]\nbackend = \"local\"\n\n[[profiles]]\nname = \"small\"\ndisplay_name = \"Small\"\n",
    )
    .await;
    d.create_users(&["pia"], false).await;
    let cookie = crate::common::login_at(&d.url, "pia", "pia-password")
        .await
        .expect("login");
    let form = || async {
        crate::common::page_as(&d.url, &cookie, "/hub/spawn")
            .await
            .1
    };
    let page = form().await;
    assert!(
        page.contains("value=\"small\"") && !page.contains("value=\"gpu\""),
        "{page}"
    );
    let table = "{name = \"gpu\", display_name = \"GPU, 8 GB\", memory = \"8G\"}";
    let (code, out, err) = d.cli(&["config", "add-item", "profiles", table], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = d.cli(&["config", "reload"], None);
    assert_eq!(code, 0, "{out}{err}");
    let page = form().await;
    assert!(
        page.contains("value=\"gpu\"") && page.contains("GPU, 8 GB"),
        "{page}"
    );
    let (code, out, err) = d.cli(&["config", "remove-item", "profiles", table], None);
    assert_eq!(code, 0, "{out}{err}");
    d.cli(&["config", "reload"], None);
    assert!(!form().await.contains("value=\"gpu\""));
    // A group opening a profile that does not exist is refused when set.
    let (code, _, err) = d.cli(
        &[
            "config",
            "add-item",
            "groups",
            "{name = \"x\", profiles = [\"nope\"]}",
        ],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("there is no profile \"nope\""), "{err}");
}

/// The admin page pages its users table (100 a page, in name order, from the store) and finds
/// users by the start of their names, without JavaScript.
#[tokio::test]
async fn the_admin_page_pages_sorts_filters_and_searches_users() {
    let d = Daemon::start(&crate::common::sleeping_spawner("")).await;
    d.create_users(&["boss"], true).await;
    let names: Vec<String> = (0..250).map(|i| format!("u{i:03}")).collect();
    let (s, b, _) = d
        .api(
            "POST",
            "/users",
            Some(ADMIN),
            Some(json!({"usernames": names})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let cookie = crate::common::login_at(&d.url, "boss", "boss-password")
        .await
        .expect("login");
    let admin = |query: &'static str| {
        let (url, cookie) = (d.url.clone(), cookie.clone());
        async move {
            crate::common::page_as(&url, &cookie, &format!("/hub/admin{query}"))
                .await
                .1
        }
    };
    let rows = |page: &str| page.matches("<th scope=\"row\">").count();
    let first = admin("").await;
    assert!(first.contains("251 user(s), 1–100 shown"), "{first}");
    assert_eq!(rows(&first), 100);
    assert!(
        first.contains(">boss") && first.contains(">u000") && !first.contains(">u099<"),
        "name order: boss, u000…u098"
    );
    assert!(first.contains("offset=100\" rel=\"next\""), "{first}");
    let last = admin("?offset=200").await;
    assert!(last.contains("251 user(s), 201–251 shown"), "{last}");
    assert_eq!(rows(&last), 51);
    assert!(last.contains("rel=\"prev\"") && !last.contains("rel=\"next\""));
    let found = admin("?q=U01").await;
    assert!(
        found.contains("10 user(s) whose names start with “u01”"),
        "{found}"
    );
    assert_eq!(rows(&found), 10);

    // Sort by the column headers (JupyterHub's sort), and the state filters.
    assert!(
        first.contains("sort=-name") && first.contains("sort=last_activity"),
        "{first}"
    );
    let reversed = admin("?sort=-name").await;
    assert!(
        reversed.contains("row\">u249<") && !reversed.contains("row\">boss"),
        "-name starts at u249 and leaves boss for the last page"
    );
    let (s, b, _) = d
        .api(
            "POST",
            "/users/u200/activity",
            Some(ADMIN),
            Some(json!({"last_activity": chrono::Utc::now().to_rfc3339()})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let recent = admin("?sort=-last_activity").await;
    let at = |page: &str, name: &str| page.find(&format!(">{name}<")).unwrap_or(usize::MAX);
    assert!(at(&recent, "u200") < at(&recent, "u000"), "{recent}");
    let (s, b, _) = d.api("POST", "/users/u120/server", Some(ADMIN), None).await;
    assert_eq!(s, 202, "{b}");
    let active = admin("?state=active").await;
    assert!(active.contains("1 user(s)"), "{active}");
    assert_eq!(rows(&active), 1);
    assert!(active.contains(">u120<"));
    let inactive = admin("?state=inactive&q=u12").await;
    assert!(
        inactive.contains("9 user(s) whose names start with “u12”"),
        "{inactive}"
    );
    assert!(!inactive.contains(">u120<"));
    // A link keeps the search, the sort and the filter.
    let paged = admin("?sort=-name&state=inactive").await;
    assert!(
        paged.contains("sort=-name&amp;state=inactive&amp;offset=100"),
        "{paged}"
    );
}
