//! `orrery doctor`: checks that this machine can run Orrery, each failure with its fix.
//!
//! Checks: the config file is valid; the state directory opens (or is held by a running
//! daemon); with `auth.type = "ldap"` the directory answers and its service account binds,
//! with `oidc` the provider's discovery document, with `github` GitHub's API;
//! the Docker engine answers (when the Docker backend is configured), or the Kubernetes API
//! server, its nodes and the pods' network ([`super::doctor_kubernetes`]); NVML answers
//! and which GPUs it finds (a warning only); the listen ports are free or held by Orrery itself.

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

pub(super) fn check(
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
pub async fn run_checks(explicit: Option<&std::path::Path>) -> Vec<Check> {
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
            for warning in config::load::warnings(&l.config) {
                out.push(check(
                    "config",
                    Level::Warn,
                    warning,
                    "remove the scope, or keep it for when Orrery implements it",
                ));
            }
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
    // Upgrade notices: worked out from the state when it opens, else (a daemon holds it) the
    // ones the running daemon logged at start.
    let mut notices = Vec::new();
    match Store::open(&state_path) {
        Ok(store) => {
            out.push(check(
                "state",
                Level::Ok,
                format!(
                    "{} opens (schema {})",
                    state_path.display(),
                    crate::state::SCHEMA_VERSION
                ),
                "",
            ));
            let open_era = store.created_with_open_signup().unwrap_or(false);
            notices.extend(crate::auth::signup::upgrade_notice(&loaded, open_era));
        }
        Err(StateError::Open { source, .. })
            if source.to_string().contains("lock") || source.to_string().contains("WouldBlock") =>
        {
            out.push(check(
                "state",
                Level::Ok,
                format!("{} is in use by a running orrery", state_path.display()),
                "",
            ));
            notices.extend(running_daemon_notices(&state_path));
        }
        Err(e) => out.push(check(
            "state",
            Level::Fail,
            e.to_string(),
            "see the message; `orrery serve` will refuse to start until this is fixed",
        )),
    }
    for notice in notices {
        out.push(check(
            "upgrade",
            Level::Warn,
            notice,
            format!("set {} explicitly", crate::auth::signup::CREATE_USERS_KEY),
        ));
    }
    out.push(signup_check(cfg));
    if cfg.auth.kind == config::AuthType::Ldap {
        out.push(ldap_check(&cfg.auth.ldap).await);
    }
    if cfg.auth.kind == config::AuthType::Github {
        let client = crate::providers::github::GithubClient::new();
        out.push(match client.check(&cfg.auth.github).await {
            Ok(what) => check("github", Level::Ok, what, ""),
            Err(why) => check(
                "github",
                Level::Fail,
                why,
                "check auth.github.api_url (GitHub Enterprise: https://HOST/api/v3) and that this machine reaches it",
            ),
        });
    }
    if cfg.auth.kind == config::AuthType::Oidc {
        let client = crate::providers::oidc::OidcClient::new();
        out.push(match client.check(&cfg.auth.oidc).await {
            Ok(what) => check("oidc", Level::Ok, what, ""),
            Err(why) => check(
                "oidc",
                Level::Fail,
                why,
                "check auth.oidc.issuer (its /.well-known/openid-configuration must answer) and that this machine reaches it",
            ),
        });
    }
    if let Some(c) = https_check(cfg, &loaded.state_path()) {
        out.push(c);
    }
    if cfg.spawner.backend == BackendKind::Docker {
        out.push(docker_check());
    }
    if cfg.spawner.backend == BackendKind::Kubernetes {
        out.extend(super::doctor_kubernetes::checks(cfg).await);
    }
    out.push(nvml_check(&cfg.gpu));
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

/// The notices a running daemon wrote into its `daemon.json` when it started.
fn running_daemon_notices(state: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(crate::serve::daemon_info_path(state))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| serde_json::from_value(v["notices"].clone()).ok())
        .unwrap_or_default()
}

/// The HTTPS certificate: its names, issuer and expiry, or why there is none and the fix.
fn https_check(cfg: &config::Config, state: &std::path::Path) -> Option<Check> {
    if !cfg.https.enabled {
        return None;
    }
    let pair = match (&cfg.https.tls.cert, &cfg.https.tls.key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ => None,
    };
    let from_files = pair.is_some();
    let (cert, key) = pair.unwrap_or_else(|| crate::tls::acme::stored_paths(state));
    let loaded = std::fs::read(&cert)
        .and_then(|c| std::fs::read(&key).map(|k| (c, k)))
        .map_err(|e| e.to_string())
        .and_then(|(c, k)| crate::tls::certified_key(&c, &k).map_err(|e| e.to_string()));
    Some(match (loaded, from_files) {
        (Ok((_, info)), _) => {
            let days = (info.not_after - chrono::Utc::now()).num_days();
            let level = if days < 14 { Level::Warn } else { Level::Ok };
            let fix = if days < 14 && from_files {
                "replace https.tls.cert and https.tls.key with a renewed certificate"
            } else if days < 14 {
                "renewal is failing: see the last error in `orrery doctor` and the log"
            } else {
                ""
            };
            check("https", level, info.describe(), fix)
        }
        (Err(e), true) => check(
            "https",
            Level::Fail,
            format!("the certificate files do not work: {e}"),
            "point https.tls.cert and https.tls.key at a readable PEM certificate chain and its key",
        ),
        (Err(_), false) => {
            let last = crate::tls::acme::last_error(state)
                .unwrap_or_else(|| "none yet: the daemon gets it after it starts".into());
            check(
                "https",
                Level::Warn,
                format!("no certificate from the ACME server yet; last error: {last}"),
                "check that https.letsencrypt.domains point at this machine and that port 80 is reachable",
            )
        }
    })
}

/// The directory answers (over TLS when configured) and the service account binds.
async fn ldap_check(cfg: &config::providers::Ldap) -> Check {
    let within = cfg.timeout.as_std();
    match tokio::time::timeout(within, crate::providers::ldap::check(cfg)).await {
        Ok(Ok(what)) => check("ldap", Level::Ok, what, ""),
        Ok(Err(why)) => check("ldap", Level::Fail, why, "fix the auth.ldap keys named above, then `orrery config reload`"),
        Err(_) => check(
            "ldap",
            Level::Fail,
            format!("{} did not answer within {}", cfg.url, cfg.timeout),
            "check auth.ldap.url and that this machine reaches the directory (firewall, port 389 or 636)",
        ),
    }
}

/// Who can get in, and whether passwords cross the network in clear text.
fn signup_check(cfg: &config::Config) -> Check {
    let open = match cfg.auth.kind {
        config::AuthType::Firstuse => cfg.auth.firstuse.create_users,
        config::AuthType::Dummy => true,
        config::AuthType::Native
        | config::AuthType::Ldap
        | config::AuthType::Oidc
        | config::AuthType::Github => false,
    };
    let plain = !cfg.https.enabled && !cfg.http.is_loopback();
    match (open, plain) {
        (true, true) => check(
            "sign-up",
            Level::Warn,
            "anyone who can reach this hub can log in with a new name (auth.type dummy, or auth.firstuse.create_users true), and passwords travel unencrypted over plain HTTP",
            "orrery config set auth.firstuse.create_users false (and auth.type firstuse), add users with `orrery users add NAME`; turn on HTTPS: https.enabled true with https.letsencrypt.domains, or a TLS reverse proxy (README: \"HTTPS\")",
        ),
        (false, true) => check(
            "sign-up",
            Level::Warn,
            "passwords travel unencrypted: plain HTTP on a network address",
            "orrery config set https.enabled true and orrery config add-item https.letsencrypt.domains hub.example.edu, or put a TLS reverse proxy in front and `orrery config set http.address 127.0.0.1` (README: \"HTTPS\")",
        ),
        (true, false) => check("sign-up", Level::Ok, "open: any new name may log in (on loopback or HTTPS)", ""),
        (false, false) => check("sign-up", Level::Ok, "closed: only admins and users an admin added may log in", ""),
    }
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

/// What NVML says about this machine's GPUs: a warning only, since GPUs are optional.
fn nvml_check(cfg: &config::Gpu) -> Check {
    match crate::gpu::probe(cfg) {
        Ok(inv) => {
            let units = inv.schedulable().count();
            check(
                "gpus",
                Level::Ok,
                format!(
                    "NVML answers (driver {}): {} unit(s) to schedule; see `orrery gpus`",
                    inv.driver_version, units
                ),
                "",
            )
        }
        Err(e) => check(
            "gpus",
            Level::Warn,
            e.to_string(),
            "GPUs are optional; `orrery gpus` shows what NVML finds once the driver is there",
        ),
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
