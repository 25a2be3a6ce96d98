//! Test harness: runs the real `orrery serve` binary on free loopback ports with a config and
//! state directory of its own, and talks to it over HTTP.

#![allow(dead_code)]

pub mod docker;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of the test venv (the real JupyterHub clients, selenium): built by
/// `tests/python/venv.sh` on first use and cached by the requirements' hash.
pub fn python() -> String {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let out = Command::new("bash")
                .arg(repo().join("tests/python/venv.sh"))
                .stderr(Stdio::inherit())
                .output()
                .expect("run tests/python/venv.sh");
            assert!(
                out.status.success(),
                "tests/python/venv.sh failed: cannot install the Python test clients"
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .clone()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A local backend whose servers never become ready (they sleep a minute): spawns stay
/// pending, for tests of what happens around a spawn in flight. `spawner_extra` adds keys to
/// `[spawner]`.
pub fn sleeping_spawner(spawner_extra: &str) -> String {
    format!(
        "[spawner]\nbackend = \"local\"\nslow_spawn_timeout = \"1s\"\nstart_timeout = \"60s\"\n\
         {spawner_extra}\n[spawner.local]\ncmd = [\"sleep\", \"60\"]\nallow_root = true\n"
    )
}

/// The admin service token every harness daemon declares (scopes: everything an admin has).
pub const ADMIN_SERVICE_TOKEN: &str = "test-admin-service-token-0123456789abcdef";

/// Serve `app` on 127.0.0.1:`port` in the background: the tests' stand-ins for other servers
/// (an OpenID issuer, GitHub).
pub async fn serve_router(port: u16, app: axum::Router) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the stand-in server");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub internal_port: u16,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub http: reqwest::Client,
    /// Extra environment for the daemon process (e.g. the fake NVML's state file).
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// Start a daemon whose config is the harness's base plus `extra` (TOML; must not repeat
    /// the `[http]`, `[internal]` or `[state]` tables).
    pub async fn start(extra: &str) -> Daemon {
        Daemon::start_with_env(extra, &[]).await
    }

    /// As [`Daemon::start`], with `env` added to the daemon's environment.
    pub async fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_full(extra, env, None).await
    }

    /// As [`Daemon::start`], on HTTP port `port` (something else must know it in advance:
    /// an ACME server's validator).
    pub async fn start_on_port(extra: &str, port: u16) -> Daemon {
        Daemon::start_full(extra, &[], Some(port)).await
    }

    /// As [`Daemon::start_on_port`], with extra environment (e.g. `RUST_LOG=trace`).
    pub async fn start_on_port_with_env(extra: &str, port: u16, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_full(extra, env, Some(port)).await
    }

    async fn start_full(extra: &str, env: &[(&str, &str)], port: Option<u16>) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("config.toml");
        let log_path = dir.path().join("orrery.log");
        let mut d = Daemon {
            child: None,
            port: 0,
            internal_port: 0,
            url: String::new(),
            log_path,
            dir,
            config_path,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        // A port found free can be taken by a parallel test before the daemon binds it:
        // then pick new ports and try again.
        for attempt in 1..=5 {
            d.port = port.unwrap_or_else(free_port);
            d.internal_port = free_port();
            d.url = format!("http://127.0.0.1:{}", d.port);
            d.write_config(extra);
            match d.try_spawn().await {
                Ok(()) => return d,
                Err(log) if log.contains("Address already in use") && attempt < 5 => {
                    let _ = std::fs::remove_file(&d.log_path);
                }
                Err(log) => panic!("orrery did not start; log:\n{log}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn write_config(&self, extra: &str) {
        // `{PORT}` in `extra` is the daemon's HTTP port, known only now.
        let extra = extra.replace("{PORT}", &self.port.to_string());
        let extra = extra.as_str();
        // Keys of `[http]` in `extra` join the generated `[http]` table (TOML has one).
        let (http_extra, extra) = match extra.strip_prefix("[http]\n") {
            Some(rest) => match rest.find("\n[") {
                Some(end) => (&rest[..end + 1], &rest[end + 1..]),
                None => (rest, ""),
            },
            None => ("", extra),
        };
        let config = format!(
            "[http]\naddress = \"127.0.0.1\"\nport = {}\n{http_extra}\n[internal]\nport = {}\n\n[state]\npath = \"{}\"\n\n\
             [[services]]\nname = \"test-admin\"\napi_token = \"{ADMIN_SERVICE_TOKEN}\"\n\
             scopes = [\"admin:users\", \"admin:servers\", \"tokens\", \"admin:groups\", \"read:hub\", \"list:users\", \"read:metrics\", \"shares\"]\n\n{extra}\n",
            self.port,
            self.internal_port,
            self.dir.path().join("state").display()
        );
        // Tests that don't say otherwise must not touch the machine's Docker engine.
        let config = if extra.contains("[spawner") {
            config
        } else {
            format!("{config}\n[spawner]\nbackend = \"local\"\n")
        };
        std::fs::write(&self.config_path, config).expect("write config");
    }

    /// (Re)start the process on the same config and state.
    pub async fn spawn(&mut self) {
        if let Err(log) = self.try_spawn().await {
            panic!("orrery did not start; log:\n{log}");
        }
    }

    /// Start the process; Err(log) if it exits or does not answer within 30 s.
    async fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_orrery"))
            .arg("--config")
            .arg(&self.config_path)
            .arg("serve")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start orrery");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Our daemon writes daemon.json (with its pid) once it has bound its port; without
            // that check a parallel test's daemon on a recycled port could answer instead.
            let ours = std::fs::read_to_string(self.state_dir().join("daemon.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["pid"].as_u64() == self.child.as_ref().map(|c| c.id() as u64));
            if ours {
                if let Ok(r) = self.http.get(format!("{}/hub/api/", self.url)).send().await {
                    if r.status().is_success() {
                        return Ok(());
                    }
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return Err(format!("exited early ({status}):\n{}", self.log()));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no answer within 30 s:\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The daemon's process id (for signals).
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Stop with SIGTERM and wait (graceful shutdown).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop with SIGTERM and wait up to 30 s: (its exit status, how long it took).
    pub fn terminate(&mut self) -> (Option<std::process::ExitStatus>, Duration) {
        let began = Instant::now();
        let Some(mut c) = self.child.take() else {
            return (None, Duration::ZERO);
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        while began.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = c.try_wait() {
                return (Some(status), began.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        (None, began.elapsed())
    }

    /// Kill with SIGKILL (crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Call the API: (status, JSON body or Null, headers).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}/hub/api{}", self.url, path));
        if let Some(t) = token {
            req = req.header("Authorization", format!("token {t}"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }

    /// `/hub/metrics` as the admin service (which holds `read:metrics`).
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/hub/metrics", self.url))
            .header("Authorization", format!("token {ADMIN_SERVICE_TOKEN}"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Create users through the admin service token.
    pub async fn create_users(&self, names: &[&str], admin: bool) {
        let (s, body, _) = self
            .api(
                "POST",
                "/users",
                Some(ADMIN_SERVICE_TOKEN),
                Some(serde_json::json!({"usernames": names, "admin": admin})),
            )
            .await;
        assert_eq!(s, 201, "create users: {body}");
    }

    /// A fresh API token for `user` with its full scopes, minted with the admin service token.
    pub async fn token_for(&self, user: &str) -> String {
        let (s, body, _) = self
            .api(
                "POST",
                &format!("/users/{user}/tokens"),
                Some(ADMIN_SERVICE_TOKEN),
                Some(serde_json::json!({"note": "test"})),
            )
            .await;
        assert_eq!(s, 201, "token for {user}: {body}");
        body["token"].as_str().expect("token").to_string()
    }

    /// Run `orrery --config <this config> ARGS…` and return (exit code, stdout, stderr).
    /// (With the daemon's extra environment, e.g. the fake NVML's state.)
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        run_cli_with_env(&self.config_path, args, stdin, &self.env)
    }
}

pub fn run_cli(config: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    run_cli_with_env(config, args, stdin, &[])
}

fn run_cli_with_env(
    config: &Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(String, String)],
) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run orrery");
    if let Some(mut s) = child.stdin.take() {
        if let Some(input) = stdin {
            let _ = s.write_all(input.as_bytes());
        }
    }
    let out = child.wait_with_output().expect("wait orrery");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Log in at the hub whose base URL is `base` (e.g. `http://127.0.0.1:8000`) through the login
/// form, as a browser without JavaScript does (first use sets the password): the session
/// cookie (`name=value`), or the status and page of a refused login.
pub async fn login_at(base: &str, user: &str, password: &str) -> Result<String, (u16, String)> {
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let first_cookie = |r: &reqwest::Response| {
        r.headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_string)
    };
    let r = c
        .get(format!("{base}/hub/login"))
        .send()
        .await
        .expect("login page");
    let xsrf_cookie = first_cookie(&r).expect("the login page sets the _xsrf cookie");
    let xsrf = xsrf_cookie.trim_start_matches("_xsrf=").to_string();
    let r = c
        .post(format!("{base}/hub/login"))
        .header("Cookie", &xsrf_cookie)
        .form(&[
            ("_xsrf", xsrf.as_str()),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .expect("login");
    if r.status().is_redirection() {
        Ok(first_cookie(&r).expect("a login sets the session cookie"))
    } else {
        Err((r.status().as_u16(), r.text().await.unwrap_or_default()))
    }
}

/// The CSRF token (`_xsrf` hidden field) of the first form on an HTML page.
pub fn form_xsrf(page: &str) -> String {
    page.split("name=\"_xsrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no form with an _xsrf field on the page:\n{page}"))
        .to_string()
}

/// A page of the hub at `base` as the holder of the session `cookie` sees it, redirects not
/// followed: (status, body).
pub async fn page_as(base: &str, cookie: &str, path: &str) -> (u16, String) {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{base}{path}"))
        .header("Cookie", cookie)
        .send()
        .await
        .expect("page");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// A response's status, `Location` ("" without one) and body.
pub async fn answered(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, location, r.text().await.unwrap_or_default())
}
