//! Finding the config file (`--config` > `ORRERY_CONFIG` > `/etc/orrery/config.toml` > the
//! embedded developer defaults) and where the state directory is.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::errors::ConfigError;
use super::load::{key_offset, load_file};
use super::{Config, DEFAULT_CONFIG_PATH, DEFAULT_STATE_PATH, DEV_STATE_PATH};

/// The environment variable that names the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "ORRERY_CONFIG";

// ---------------------------------------------------------------------------------------------
// Finding the file
// ---------------------------------------------------------------------------------------------

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    /// No file: built-in defaults for a developer machine.
    Defaults,
}

/// A validated configuration and where it came from (which decides the default state path).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    pub config: Config,
    pub source: ConfigSource,
}

impl LoadedConfig {
    /// The state directory: `state.path` if set (a relative one is taken relative to the
    /// config file's directory, since the daemon's working directory is `/`), else
    /// [`DEFAULT_STATE_PATH`] for an installed Orrery, or `./orrery-state` made absolute when
    /// running on defaults.
    pub fn state_path(&self) -> PathBuf {
        let configured = &self.config.state.path;
        match &self.source {
            ConfigSource::File(file) => {
                if configured.as_os_str().is_empty() {
                    PathBuf::from(DEFAULT_STATE_PATH)
                } else if configured.is_relative() {
                    let dir = file.parent().unwrap_or(Path::new(""));
                    absolute(&dir.join(configured))
                } else {
                    configured.clone()
                }
            }
            ConfigSource::Defaults => {
                if configured.as_os_str().is_empty() {
                    absolute(Path::new(DEV_STATE_PATH))
                } else {
                    absolute(configured)
                }
            }
        }
    }

    /// The config file, if there is one.
    pub fn file(&self) -> Option<&Path> {
        match &self.source {
            ConfigSource::File(path) => Some(path),
            ConfigSource::Defaults => None,
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    match std::env::current_dir() {
        Ok(cwd) => cwd.join(path),
        Err(_) => path.to_path_buf(),
    }
}

/// The file named by the flag or, failing that, by `ORRERY_CONFIG` (an empty variable counts
/// as unset). Such a file must exist when reading.
pub fn named_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    match std::env::var_os(CONFIG_ENV) {
        Some(value) if !value.is_empty() => Some(PathBuf::from(value)),
        _ => None,
    }
}

/// The config file to read: `--config` > `ORRERY_CONFIG` > `/etc/orrery/config.toml` if it
/// exists > `None` (run on embedded defaults). A named file is returned even if it is missing,
/// so that reading it reports the mistake.
pub fn resolve_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = named_path(explicit) {
        return Some(path);
    }
    let default = Path::new(DEFAULT_CONFIG_PATH);
    // Only "no such file" means defaults; a file that is there but unreadable (not root?) is
    // returned so that reading it reports the problem instead of silently using defaults.
    match std::fs::metadata(default) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        _ => Some(default.to_path_buf()),
    }
}

/// The file that `orrery config set` and friends write: like [`resolve_path`], but the
/// default path is used even if it does not exist yet (it is then created).
pub fn edit_path(explicit: Option<&Path>) -> PathBuf {
    named_path(explicit).unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

/// Find and load the configuration (see [`resolve_path`]). A named file that does not exist is
/// an error; a missing default file means built-in defaults.
pub fn discover(explicit: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    match resolve_path(explicit) {
        Some(path) => {
            let config = load_file(&path)?;
            Ok(LoadedConfig {
                config,
                source: ConfigSource::File(path),
            })
        }
        None => Ok(LoadedConfig {
            config: Config::developer(),
            source: ConfigSource::Defaults,
        }),
    }
}

/// Does the file write `key` (e.g. `auth.firstuse.create_users`) itself, rather than leave it
/// at its default? Unreadable files and keys inside lists count as not written.
pub fn file_sets_key(path: &Path, key: &str) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .is_some_and(|text| key_offset(&text, key).is_some())
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Defaults => f.write_str("built-in defaults"),
        }
    }
}
