//! `orrery config ...`: show and change the configuration the way `tljh-config` does, and ask
//! the running daemon to apply it.
//!
//! Edits go through [`crate::config::edit`], which validates the result before writing, so a
//! mistyped key or value is refused (exit code 2) and the file is left exactly as it was.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Deserialize;

use super::daemon::DaemonClient;
use crate::config::edit::{self, display_value, Change};
use crate::config::load::{self, ConfigSource};
use crate::config::ConfigError;

/// The `config` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ConfigCommand {
    /// Print the config file (with --effective: every setting, defaults included).
    Show {
        /// Print the configuration in effect, with defaults filled in, instead of the file.
        #[arg(long)]
        effective: bool,
    },
    /// Print the value in effect for KEY (defaults included), e.g. `auth.type`.
    Get {
        /// A dotted key such as `limits.memory`, or a section such as `auth`.
        key: String,
    },
    /// Set KEY to VALUE (numbers, true/false and text are recognised; `none` unsets).
    Set {
        key: String,
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Remove KEY from the file, so its default applies.
    Unset { key: String },
    /// Add VALUE to the list KEY, e.g. `add-item users.admin alice`.
    AddItem {
        key: String,
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Remove VALUE from the list KEY.
    RemoveItem {
        key: String,
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Ask the running daemon to re-read the file and apply what it can without a restart.
    Reload,
}

pub use super::CliError;

impl From<ConfigError> for CliError {
    fn from(err: ConfigError) -> Self {
        let code = if err.is_user_error() {
            CliError::USAGE
        } else {
            CliError::FAILURE
        };
        CliError::new(code, err.to_string())
    }
}

const RELOAD_HINT: &str = "run \"orrery config reload\" to apply";

/// Run one `config` subcommand. `config_path` is the `--config` flag; without it
/// `ORRERY_CONFIG`, then `/etc/orrery/config.toml`, are used (edits create the file).
pub async fn run(cmd: ConfigCommand, config_path: Option<PathBuf>) -> Result<(), CliError> {
    let explicit = config_path.as_deref();
    match cmd {
        ConfigCommand::Show { effective: false } => show_file(explicit),
        ConfigCommand::Show { effective: true } => show_effective(explicit),
        ConfigCommand::Get { key } => get(explicit, &key).await,
        ConfigCommand::Set { key, value } => {
            let change = edit::set_key(&load::edit_path(explicit), &key, &value)?;
            report(&change, false);
            Ok(())
        }
        ConfigCommand::Unset { key } => {
            let change = edit::unset_key(&load::edit_path(explicit), &key)?;
            report(&change, true);
            Ok(())
        }
        ConfigCommand::AddItem { key, value } => {
            let change = edit::add_item_key(&load::edit_path(explicit), &key, &value)?;
            if change.written {
                report(&change, false);
            } else {
                println!("{key} already contains {value:?}");
            }
            Ok(())
        }
        ConfigCommand::RemoveItem { key, value } => {
            let change = edit::remove_item_key(&load::edit_path(explicit), &key, &value)?;
            report(&change, false);
            Ok(())
        }
        ConfigCommand::Reload => reload(explicit).await,
    }
}

/// `auth.type: firstuse -> native` and the reload hint.
fn report(change: &Change, unset: bool) {
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".to_string());
    if !change.written {
        println!("{}: {} (unchanged)", change.key, show(&change.after));
        return;
    }
    let after = match (&change.after, unset) {
        (Some(v), true) => format!("{v} (default)"),
        _ => show(&change.after),
    };
    if change.created {
        println!("created {}", change.path.display());
    }
    println!("{}: {} -> {}", change.key, show(&change.before), after);
    // Accepted, but worth knowing (e.g. a scope Orrery does not implement yet).
    if let Ok(config) = load::load_file(&change.path) {
        for warning in load::warnings(&config) {
            eprintln!("warning: {warning}");
        }
    }
    println!("{RELOAD_HINT}");
}

fn show_file(explicit: Option<&Path>) -> Result<(), CliError> {
    let Some(path) = load::resolve_path(explicit) else {
        eprintln!(
            "no config file at {}; Orrery runs on built-in defaults (see `orrery config show --effective`)",
            crate::config::DEFAULT_CONFIG_PATH
        );
        return Ok(());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            print!("{}", crate::config::redact::redact(&text));
            Ok(())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Err(ConfigError::NotFound { path }.into())
        }
        Err(err) => Err(ConfigError::io("read", &path, err).into()),
    }
}

fn show_effective(explicit: Option<&Path>) -> Result<(), CliError> {
    let loaded = load::discover(explicit)?;
    let text = toml::to_string_pretty(&loaded.config).map_err(|err| {
        CliError::new(
            CliError::FAILURE,
            format!("cannot render the configuration: {err}"),
        )
    })?;
    println!("# Effective configuration from {}", loaded.source);
    print!("{}", crate::config::redact::redact(&text));
    Ok(())
}

async fn get(explicit: Option<&Path>, key: &str) -> Result<(), CliError> {
    // Check the key first, so a typo is reported as such even if the file has a problem.
    load::check_key(key)?;
    let loaded = load::discover(explicit)?;
    let shown = match load::effective_value(&loaded.config, key)? {
        Some(value) if is_section(&value) => {
            crate::config::redact::redact(&render_section(&loaded.config, key)?)
        }
        Some(_) if is_secret_key(key) => format!("\"{}\"\n", crate::config::redact::REDACTED),
        Some(value) => format!("{}\n", display_value(&value)),
        None => {
            eprintln!("{key} is not set");
            return Ok(());
        }
    };
    print!("{shown}");
    environment_notes(&loaded, &shown).await;
    Ok(())
}

/// A key whose value is a secret (`services[0].api_token`, `auth.ldap.bind_password`): `get`
/// never prints it.
fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    let last = last.split('[').next().unwrap_or(last);
    crate::config::redact::SECRET_KEYS.contains(&last)
}

/// An image shown that the software environment replaces for new servers and kernels: say
/// so (on stderr, so the value on stdout stays what the file says).
async fn environment_notes(loaded: &load::LoadedConfig, shown: &str) {
    let Some((generation, images)) = super::env_cmd::effective(loaded).await else {
        return;
    };
    for (base, derived) in images {
        let named = shown.trim() == base || shown.contains(&format!("\"{base}\""));
        if named {
            eprintln!(
                "note: new servers and kernels get {derived} instead of {base} (software \
                 environment generation {generation}; `orrery env list`)"
            );
        }
    }
}

/// The section at `key` as the file would hold it: under its full name, keys in the order of
/// `orrery.example.toml`.
fn render_section(config: &crate::config::Config, key: &str) -> Result<String, CliError> {
    let failed = |err: &dyn std::fmt::Display| {
        CliError::new(CliError::FAILURE, format!("cannot render {key}: {err}"))
    };
    let text = toml::to_string_pretty(config).map_err(|e| failed(&e))?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| failed(&e))?;
    let canonical = load::canonical_key(key);
    let parts: Vec<&str> = canonical.split('.').collect();
    let mut table = doc.as_table_mut();
    for (i, part) in parts.iter().enumerate() {
        table.retain(|k, _| k == *part);
        if i + 1 == parts.len() {
            break;
        }
        match table.get_mut(part).and_then(toml_edit::Item::as_table_mut) {
            Some(next) => {
                // Only the header of the section asked for is printed, not its parents'.
                next.set_implicit(true);
                table = next;
            }
            None => break,
        }
    }
    Ok(doc.to_string().trim_start().to_string())
}

/// A table, or a non-empty list of tables (`services`), is printed as TOML sections.
fn is_section(value: &toml::Value) -> bool {
    match value {
        toml::Value::Table(_) => true,
        toml::Value::Array(items) => !items.is_empty() && items.iter().all(toml::Value::is_table),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// reload
// ---------------------------------------------------------------------------------------------

/// The daemon's answer to a reload.
#[derive(Debug, Default, Deserialize)]
struct ReloadReply {
    #[serde(default)]
    changed: Vec<String>,
    #[serde(default)]
    needs_restart: Vec<String>,
    #[serde(default = "yes")]
    applied: bool,
    #[serde(default)]
    warnings: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The daemon's error body: `{"status": n, "message": "..."}`.
#[derive(Debug, Deserialize)]
struct ErrorReply {
    message: String,
}

async fn reload(explicit: Option<&Path>) -> Result<(), CliError> {
    // Validate first: an invalid file is reported here and nothing is sent.
    let loaded = load::discover(explicit)?;
    if loaded.source == ConfigSource::Defaults {
        eprintln!(
            "note: no config file at {}; the daemon runs on built-in defaults",
            crate::config::DEFAULT_CONFIG_PATH
        );
    }
    let client =
        DaemonClient::new(&loaded).map_err(|e| CliError::new(CliError::FAILURE, e.to_string()))?;
    let (status, body) = client
        .request(reqwest::Method::POST, "/orrery/reload", None)
        .await
        .map_err(|e| CliError::new(CliError::FAILURE, e.to_string()))?;
    if !(200..300).contains(&status) {
        let message = serde_json::from_value::<ErrorReply>(body.clone())
            .map(|reply| reply.message)
            .unwrap_or_else(|_| body.to_string().chars().take(300).collect());
        let (code, hint) = match status {
            400 | 422 => (CliError::USAGE, ""),
            401 | 403 => (
                CliError::FAILURE,
                "; the control token was refused: is the daemon using the same state directory?",
            ),
            404 => (
                CliError::FAILURE,
                "; is the daemon an Orrery, and base_url right?",
            ),
            _ => (CliError::FAILURE, ""),
        };
        return Err(CliError::new(
            code,
            format!("reload failed (HTTP {status}): {message}{hint}"),
        ));
    }
    let reply: ReloadReply = serde_json::from_value(body).map_err(|err| {
        CliError::new(
            CliError::FAILURE,
            format!("unexpected answer from {}: {err}", client.api),
        )
    })?;
    print_reload(&reply);
    Ok(())
}

fn print_reload(reply: &ReloadReply) {
    let applied: Vec<&String> = reply
        .changed
        .iter()
        .filter(|k| !reply.needs_restart.contains(k))
        .collect();
    if reply.changed.is_empty() && reply.needs_restart.is_empty() {
        println!("reloaded: nothing changed");
    } else if !applied.is_empty() {
        let verb = if reply.applied {
            "applied"
        } else {
            "changed (not applied)"
        };
        println!(
            "{verb}: {}",
            applied
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !reply.needs_restart.is_empty() {
        println!(
            "needs a restart: {} (run `systemctl restart orrery`)",
            reply.needs_restart.join(", ")
        );
    }
    for warning in &reply.warnings {
        eprintln!("warning: {warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Top {
        #[command(subcommand)]
        cmd: ConfigCommand,
    }

    fn parse(args: &[&str]) -> ConfigCommand {
        let mut full = vec!["config"];
        full.extend_from_slice(args);
        Top::try_parse_from(full)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .cmd
    }

    #[test]
    fn command_line_shape() {
        assert_eq!(parse(&["show"]), ConfigCommand::Show { effective: false });
        assert_eq!(
            parse(&["show", "--effective"]),
            ConfigCommand::Show { effective: true }
        );
        assert_eq!(
            parse(&["get", "auth.type"]),
            ConfigCommand::Get {
                key: "auth.type".into()
            }
        );
        assert_eq!(
            parse(&["set", "limits.cpu", "-1"]),
            ConfigCommand::Set {
                key: "limits.cpu".into(),
                value: "-1".into()
            }
        );
        assert_eq!(
            parse(&["add-item", "users.admin", "alice"]),
            ConfigCommand::AddItem {
                key: "users.admin".into(),
                value: "alice".into()
            }
        );
        assert_eq!(
            parse(&["remove-item", "users.admin", "alice"]),
            ConfigCommand::RemoveItem {
                key: "users.admin".into(),
                value: "alice".into()
            }
        );
        assert_eq!(
            parse(&["unset", "x"]),
            ConfigCommand::Unset { key: "x".into() }
        );
        assert_eq!(parse(&["reload"]), ConfigCommand::Reload);
    }

    #[test]
    fn errors_map_to_exit_codes() {
        let err: CliError = ConfigError::invalid("auth.type", "bad").into();
        assert_eq!(err.code, 2);
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let err: CliError = ConfigError::io("read", Path::new("/x"), io).into();
        assert_eq!(err.code, 1);
        assert!(err.message.contains("permission denied"), "{}", err.message);
    }

    #[tokio::test]
    async fn reload_without_a_daemon_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::write(state.join("control.token"), "secret\n").unwrap();
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nport = {port}\n[state]\npath = {:?}\n",
                state.display().to_string()
            ),
        )
        .unwrap();
        let err = run(ConfigCommand::Reload, Some(config.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.code, 1);
        assert!(
            err.message.contains("orrery is not running"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("systemctl start orrery"),
            "{}",
            err.message
        );

        // An invalid file: code 2, nothing sent.
        std::fs::write(&config, "[auth]\ntype = \"nonsense\"\n").unwrap();
        let err = run(ConfigCommand::Reload, Some(config)).await.unwrap_err();
        assert_eq!(err.code, 2);
        assert!(
            err.message
                .contains("choose one of: firstuse, native, dummy"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn reload_talks_to_the_daemon() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("control.token"), "tok123\n").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!("base_url = \"/j/\"\n[http]\nport = {port}\n[state]\npath = \".\"\n"),
        )
        .unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&request).contains("\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"changed":["auth.type","http.port"],"needs_restart":["http.port"],"applied":true}"#;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        run(ConfigCommand::Reload, Some(config)).await.unwrap();
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /j/hub/api/orrery/reload HTTP/1.1"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("authorization: token tok123\r\n"),
            "{request}"
        );
    }
}
