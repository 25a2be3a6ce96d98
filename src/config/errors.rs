//! Everything that can go wrong reading or editing the config: [`ConfigError`], one line for
//! a person, naming the file, line, key and the fix.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Where in a file an error was found; empty for a config that did not come from a file (or for
/// the result of an edit command, where the line is of no interest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// The file read, so a message about `/etc/orrery/config.toml` says so.
    pub file: Option<PathBuf>,
    /// 1-based line of the offending key or value, when it is in the file at all (a semantic
    /// error can be about a default that is not written anywhere).
    pub line: Option<usize>,
    /// 1-based column, for syntax errors.
    pub column: Option<usize>,
}

impl Location {
    /// `"file:line:column: "`, or as much of it as is known.
    pub(super) fn prefix(&self) -> String {
        let mut out = String::new();
        if let Some(file) = &self.file {
            out.push_str(&file.display().to_string());
            if let Some(line) = self.line {
                out.push_str(&format!(":{line}"));
                if let Some(column) = self.column {
                    out.push_str(&format!(":{column}"));
                }
            }
            out.push_str(": ");
        } else if let Some(line) = self.line {
            out.push_str(&format!("line {line}"));
            if let Some(column) = self.column {
                out.push_str(&format!(", column {column}"));
            }
            out.push_str(": ");
        }
        out
    }
}

/// Everything that can go wrong reading or editing the config. `Display` is one line, meant to
/// be shown to a person as is.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A file named explicitly (`--config`, `ORRERY_CONFIG`) does not exist.
    #[error(
        "config file {} does not exist; create it with `orrery --config {} config set KEY VALUE`, \
         or name no file to run on built-in defaults",
        path.display(),
        path.display()
    )]
    NotFound { path: PathBuf },

    /// The file (or its directory, lock or temporary file) could not be read or written.
    #[error("cannot {action} {}: {}", path.display(), describe_io(source))]
    Io {
        /// What was being done, e.g. "read", "write", "lock".
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The text is not TOML.
    #[error("{}TOML syntax error: {message}", loc.prefix())]
    Syntax { loc: Location, message: String },

    /// A key that Orrery does not know, with the nearest known key if one is close.
    #[error("{}unknown key {key:?}{}", loc.prefix(), did_you_mean(suggestion))]
    UnknownKey {
        loc: Location,
        key: String,
        suggestion: Option<String>,
    },

    /// A known key with a value of the wrong type or meaning.
    #[error("{}{key}: {message}", loc.prefix())]
    Invalid {
        loc: Location,
        key: String,
        message: String,
    },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean {s:?}?"),
        None => String::new(),
    }
}

fn describe_io(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::PermissionDenied => {
            "permission denied (run the command as root, e.g. with sudo)".to_string()
        }
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        _ => err.to_string(),
    }
}

impl ConfigError {
    /// An error about the value of `key` (no location yet).
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            loc: Location::default(),
            key: key.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        ConfigError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    /// True for errors in what a person wrote (file contents, command arguments), as opposed
    /// to the system failing to read or write a file. The CLI exits 2 for these, 1 otherwise.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, ConfigError::Io { .. })
    }

    pub(super) fn loc_mut(&mut self) -> Option<&mut Location> {
        match self {
            ConfigError::Syntax { loc, .. }
            | ConfigError::UnknownKey { loc, .. }
            | ConfigError::Invalid { loc, .. } => Some(loc),
            _ => None,
        }
    }

    /// The same error without file and line: for the result of an edit command, where the
    /// person typed a key and value and the line of the rewritten file means nothing to them.
    pub fn without_location(mut self) -> Self {
        if let Some(loc) = self.loc_mut() {
            *loc = Location::default();
        }
        self
    }

    pub(super) fn with_file(mut self, file: Option<&Path>) -> Self {
        if let Some(loc) = self.loc_mut() {
            loc.file = file.map(Path::to_path_buf);
        }
        self
    }
}
