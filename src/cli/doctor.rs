//! `orrery doctor`: checks that this machine can run Orrery, each failure with its fix.
//!
//! Checks: the config file is valid; the state directory opens (or is held by a running
//! daemon); the Docker engine answers (when the Docker backend is configured); NVML can be
//! loaded (GPUs; a warning only); the listen ports are free or held by Orrery itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::config::{self, BackendKind};
use crate::state::{StateError, Store};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    /// What to do about it (empty when fine).
    pub fix: String,
}

fn check(
    name: &'static str,
    level: Level,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        name,
        level,
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// Run every check; the caller prints them and exits non-zero on any failure.
pub fn run_checks(explicit: Option<&std::path::Path>) -> Vec<Check> {
    let mut out = Vec::new();
    let loaded = match config::load::discover(explicit) {
        Ok(l) => {
            let what = match &l.source {
                config::ConfigSource::File(p) => format!("{} is valid", p.display()),
                config::ConfigSource::Defaults => {
                    "no config file; embedded defaults are used".to_string()
                }
            };
            out.push(check("config", Level::Ok, what, ""));
            l
        }
        Err(e) => {
            out.push(check(
                "config",
                Level::Fail,
                e.to_string(),
                "fix the key named above with `orrery config set KEY VALUE` or edit the file",
            ));
            return out;
        }
    };
    let cfg = &loaded.config;
    let state_path = loaded.state_path();
    match Store::open(&state_path) {
        Ok(_) => out.push(check(
            "state",
            Level::Ok,
            format!(
                "{} opens (schema {})",
                state_path.display(),
                crate::state::SCHEMA_VERSION
            ),
            "",
        )),
        Err(StateError::Open { source, .. })
            if source.to_string().contains("lock") || source.to_string().contains("WouldBlock") =>
        {
            out.push(check(
                "state",
                Level::Ok,
                format!("{} is in use by a running orrery", state_path.display()),
                "",
            ))
        }
        Err(e) => out.push(check(
            "state",
            Level::Fail,
            e.to_string(),
            "see the message; `orrery serve` will refuse to start until this is fixed",
        )),
    }
    if cfg.spawner.backend == BackendKind::Docker {
        out.push(docker_check());
    }
    out.push(nvml_check());
    let host = if cfg.http.address.is_empty() {
        "0.0.0.0"
    } else {
        cfg.http.address.as_str()
    };
    // With the Docker backend and no internal.address, the internal listener binds the
    // bridge's gateway (not known until Docker answers), so only the public port is checked.
    let mut ports = vec![("http.port", cfg.http.port)];
    if !(cfg.spawner.backend == BackendKind::Docker && cfg.internal.address.is_empty()) {
        ports.push(("internal.port", cfg.internal.port));
    }
    for (key, port) in ports {
        if port == 0 {
            continue;
        }
        let addr: Option<SocketAddr> = format!("{host}:{port}")
            .parse()
            .ok()
            .or_else(|| format!("[{host}]:{port}").parse().ok());
        let Some(addr) = addr else {
            out.push(check(
                "ports",
                Level::Fail,
                format!("http.address {host:?} is not an IP address"),
                "orrery config set http.address 0.0.0.0",
            ));
            continue;
        };
        match TcpListener::bind(addr) {
            Ok(_) => out.push(check("ports", Level::Ok, format!("{key} {port} is free"), "")),
            Err(_) if orrery_answers(port) => out.push(check("ports", Level::Ok, format!("{key} {port} is served by a running orrery"), "")),
            Err(e) => out.push(check("ports", Level::Fail, format!("{key} {port} is not available: {e}"), format!("stop what uses it (ss -ltnp 'sport = :{port}') or `orrery config set {key} OTHER_PORT`"))),
        }
    }
    out
}

fn orrery_answers(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /hub/api/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.to_ascii_lowercase().contains("x-jupyterhub-version")
}

fn docker_check() -> Check {
    let sock = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let ping = || -> std::io::Result<String> {
        let mut s = UnixStream::connect(&sock)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        Ok(buf)
    };
    match ping() {
        Ok(r) if r.ends_with("OK") => check(
            "docker",
            Level::Ok,
            format!("the Docker engine answers at {sock}"),
            "",
        ),
        Ok(r) => check(
            "docker",
            Level::Fail,
            format!(
                "unexpected answer from {sock}: {}",
                r.lines().next().unwrap_or("")
            ),
            "restart the engine: systemctl restart docker",
        ),
        Err(e) => check(
            "docker",
            Level::Fail,
            format!("cannot reach the Docker engine at {sock}: {e}"),
            "install and start it: apt-get install docker.io && systemctl enable --now docker",
        ),
    }
}

fn nvml_check() -> Check {
    // dlopen the library NVML-using code would load; absence only means "no GPUs to share".
    let name = c"libnvidia-ml.so.1";
    // SAFETY: dlopen with a valid NUL-terminated name; the handle is closed right away.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
    if handle.is_null() {
        check("nvml", Level::Warn, "libnvidia-ml.so.1 not found: no GPUs will be offered", "on a GPU machine install the NVIDIA driver (and nvidia-container-toolkit for containers)")
    } else {
        // SAFETY: handle came from dlopen above and is not used afterwards.
        unsafe { libc::dlclose(handle) };
        check("nvml", Level::Ok, "libnvidia-ml.so.1 loads", "")
    }
}

/// Print the checks; returns the exit code (1 if anything failed).
pub fn print(checks: &[Check]) -> i32 {
    let mut failed = false;
    for c in checks {
        let tag = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => {
                failed = true;
                "FAIL"
            }
        };
        println!("[{tag}] {:<8} {}", c.name, c.detail);
        if !c.fix.is_empty() && c.level != Level::Ok {
            println!("       fix: {}", c.fix);
        }
    }
    i32::from(failed)
}
