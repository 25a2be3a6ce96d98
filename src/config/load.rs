//! Finding, reading and validating the config file.
//!
//! Reading happens in four steps, each with errors that name the key (and, for a file, the file
//! and line) and say how to fix it:
//!
//! 1. TOML syntax (`toml`), reported with line and column.
//! 2. Unknown keys, checked against the key tree of [`Config`] (derived from the types
//!    themselves by [`schema()`], so it can never drift from the structs), with the nearest
//!    valid key suggested: `unknown key "auth.typ"; did you mean "auth.type"?`.
//! 3. Types, through serde with `serde_path_to_error`, reworded for people:
//!    `auth.firstuse.create_users: expected a boolean, found string "yes"`.
//! 4. Meaning ([`validate`]): ports, base_url, user names (normalised here), services, TLS.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use thiserror::Error;

use super::{Config, DEFAULT_CONFIG_PATH, DEFAULT_STATE_PATH, DEV_STATE_PATH};
use crate::{scopes, username};

/// The environment variable that names the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "ORRERY_CONFIG";

/// Keys accepted as another name for a key (TLJH's spelling), as `(alias, canonical)` paths.
/// They are accepted when reading but not listed by [`known_keys`].
pub const KEY_ALIASES: &[(&str, &str)] = &[("users.banned", "users.blocked")];

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
    fn prefix(&self) -> String {
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

    fn loc_mut(&mut self) -> Option<&mut Location> {
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

    fn with_file(mut self, file: Option<&Path>) -> Self {
        if let Some(loc) = self.loc_mut() {
            loc.file = file.map(Path::to_path_buf);
        }
        self
    }
}

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

/// Read, parse and validate one file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => ConfigError::NotFound {
            path: path.to_path_buf(),
        },
        _ => ConfigError::io("read", path, err),
    })?;
    parse_text(&text, Some(path))
}

/// Parse and validate config text (user names come back normalised).
pub fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse_text(text, None)
}

fn parse_text(text: &str, file: Option<&Path>) -> Result<Config, ConfigError> {
    parse_unlocated(text).map_err(|err| locate(err, text).with_file(file))
}

fn parse_unlocated(text: &str) -> Result<Config, ConfigError> {
    let table: toml::Table = text.parse().map_err(|err: toml::de::Error| {
        let (line, column) = match err.span() {
            Some(span) => line_col(text, span.start),
            None => (0, 0),
        };
        ConfigError::Syntax {
            loc: Location {
                file: None,
                line: (line > 0).then_some(line),
                column: (column > 0).then_some(column),
            },
            message: one_line(err.message()),
        }
    })?;
    check_unknown_keys(&table)?;
    let root = toml::Value::Table(table);
    let mut config: Config = serde_path_to_error::deserialize(root.clone()).map_err(|err| {
        let key = err.path().to_string();
        let found = value_at(&root, &key);
        let message = reword_serde_message(&key, err.inner().message(), found);
        ConfigError::invalid(key, message)
    })?;
    normalize_users(&mut config)?;
    validate(&config)?;
    Ok(config)
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The value at a `services[0].name`-style path of a parsed file.
fn value_at<'a>(root: &'a toml::Value, path: &str) -> Option<&'a toml::Value> {
    let mut value = root;
    for segment in split_path(path) {
        value = match segment {
            PathSegment::Key(key) => value.get(key)?,
            PathSegment::Index(index) => value.get(index)?,
        };
    }
    Some(value)
}

/// A TOML value as a type error mentions it: `string "yes"`, `integer 3`, `a list`.
fn describe_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("string {s:?}"),
        toml::Value::Integer(i) => format!("integer {i}"),
        toml::Value::Float(f) => format!("number {f}"),
        toml::Value::Boolean(b) => format!("boolean {b}"),
        toml::Value::Datetime(d) => format!("date {d}"),
        toml::Value::Array(_) => "a list".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

/// serde's names for integer types, as a person would say them.
fn describe_integer_type(expected: &str) -> Option<&'static str> {
    Some(match expected {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 1 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "usize" => "a whole number of at least 0",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        _ => return None,
    })
}

/// serde's messages are written for programmers ("invalid type: string \"yes\", expected a
/// boolean", "unknown variant `x`, expected one of ..."); say the same thing for people.
fn reword_serde_message(key: &str, message: &str, found: Option<&toml::Value>) -> String {
    let choices = match key_shape(key).map(Shape::required) {
        Some(Shape::Leaf(LeafKind::Choice(choices))) => Some(choices.join(", ")),
        _ => None,
    };
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((value, _)) = rest.split_once('`') {
            let choices = choices.unwrap_or_else(|| {
                rest.split_once("expected ")
                    .map_or(String::new(), |(_, e)| e.replace('`', ""))
            });
            return format!("{value:?} is not valid; choose one of: {choices}");
        }
    }
    // A choice given as something other than a string: serde's message is about enums.
    if let (Some(choices), Some(found)) = (&choices, found) {
        return format!(
            "expected one of: {choices} (a string), found {}",
            describe_value(found)
        );
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((serde_found, expected)) = rest.split_once(", expected ") {
            let found = found.map_or_else(|| serde_found.to_string(), describe_value);
            let expected = describe_integer_type(expected).unwrap_or(expected);
            return format!("expected {expected}, found {found}");
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        if let Some((serde_found, expected)) = rest.split_once(", expected ") {
            let found = found.map_or_else(|| serde_found.to_string(), |v| v.to_string());
            return match describe_integer_type(expected) {
                Some(range) => format!("{found} is out of range; expected {range}"),
                None => format!("{found} is not valid; expected {expected}"),
            };
        }
    }
    if let Some(field) = message.strip_prefix("duplicate field `") {
        let field = field.trim_end_matches('`');
        return format!("{field} is set twice (perhaps under another name, such as users.banned)");
    }
    one_line(message)
}

/// Fill in the line of the key an error is about, if the key is written in `text`.
fn locate(mut err: ConfigError, text: &str) -> ConfigError {
    let Some(key) = err.key().map(str::to_string) else {
        return err;
    };
    let Some(offset) = key_offset(text, &key) else {
        return err;
    };
    if let Some(loc) = err.loc_mut() {
        loc.line = Some(line_col(text, offset).0);
    }
    err
}

/// Byte offset of the key named by `path` (`services[0].name` form) in `text`.
fn key_offset(text: &str, path: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let segments = split_path(path);
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut iter = segments.iter().peekable();
    while let Some(segment) = iter.next() {
        let PathSegment::Key(name) = segment else {
            return None;
        };
        let (key, item) = table.get_key_value(name)?;
        match iter.peek() {
            None => return key.span().or_else(|| item.span()).map(|s| s.start),
            Some(PathSegment::Index(index)) => {
                iter.next();
                let element = match item {
                    toml_edit::Item::ArrayOfTables(tables) => tables.get(*index)?,
                    toml_edit::Item::Value(toml_edit::Value::Array(array)) => {
                        let value = array.get(*index)?;
                        if iter.peek().is_none() {
                            return value.span().map(|s| s.start);
                        }
                        match value {
                            toml_edit::Value::InlineTable(t) => {
                                table = t;
                                continue;
                            }
                            _ => return None,
                        }
                    }
                    _ => return None,
                };
                if iter.peek().is_none() {
                    return element.span().map(|s| s.start);
                }
                table = element;
            }
            Some(PathSegment::Key(_)) => table = item.as_table_like()?,
        }
    }
    None
}

#[derive(Debug, PartialEq)]
enum PathSegment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `services[0].name` → `[Key("services"), Index(0), Key("name")]`.
fn split_path(path: &str) -> Vec<PathSegment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            out.push(PathSegment::Key(&rest[..open]));
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(index) = stripped[..close].parse() {
                    out.push(PathSegment::Index(index));
                }
                rest = &stripped[close + 1..];
            }
        } else {
            out.push(PathSegment::Key(rest));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The key tree
// ---------------------------------------------------------------------------------------------

/// The shape of a config value, as far as the file is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A struct: a `[section]` with these keys, in declaration order.
    Table(Vec<(&'static str, Shape)>),
    /// A `Vec`: a TOML array (or, of tables, `[[name]]` entries).
    List(Box<Shape>),
    /// An `Option`: the key may be left out, meaning "not set".
    Optional(Box<Shape>),
    Leaf(LeafKind),
}

/// What a single value is, so edit commands can store `"1234"` as a string where a string is
/// wanted, and error messages can list an enum's choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKind {
    Bool,
    Integer,
    Float,
    /// Strings and paths.
    String,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A number or a string with a unit ([`super::Duration`], [`super::Size`]).
    NumberOrString,
    Other,
}

impl Shape {
    /// The shape without `Optional` wrappers.
    pub fn required(&self) -> &Shape {
        match self {
            Shape::Optional(inner) => inner.required(),
            other => other,
        }
    }
}

/// The key tree of [`Config`], derived once from the serde `Deserialize` implementations.
pub fn schema() -> &'static Shape {
    static SCHEMA: OnceLock<Shape> = OnceLock::new();
    SCHEMA.get_or_init(|| match probe::shape_of::<Config>() {
        Ok(shape) => shape,
        // Only reachable if a struct in mod.rs gains a field type the probe cannot walk; the
        // unit test `schema_is_derivable` fails first.
        Err(err) => panic!("cannot derive the config key tree: {err}"),
    })
}

/// Every leaf key a config file may contain, in declaration order, as dotted paths. Keys of
/// `[[services]]` entries are listed as `services.name` etc.
pub fn known_keys() -> Vec<String> {
    fn walk(prefix: &str, shape: &Shape, out: &mut Vec<String>) {
        match shape.required() {
            Shape::Table(fields) => {
                for (name, sub) in fields {
                    walk(&join(prefix, name), sub, out);
                }
            }
            Shape::List(element) if matches!(element.required(), Shape::Table(_)) => {
                walk(prefix, element, out)
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut out = Vec::new();
    walk("", schema(), &mut out);
    out
}

/// Every section path (`auth`, `auth.firstuse`, `services`, ...).
pub fn known_sections() -> Vec<String> {
    fn walk(prefix: &str, shape: &Shape, out: &mut Vec<String>) {
        match shape.required() {
            Shape::Table(fields) => {
                if !prefix.is_empty() {
                    out.push(prefix.to_string());
                }
                for (name, sub) in fields {
                    walk(&join(prefix, name), sub, out);
                }
            }
            Shape::List(element) if matches!(element.required(), Shape::Table(_)) => {
                out.push(prefix.to_string());
                if let Shape::Table(fields) = element.required() {
                    for (name, sub) in fields {
                        walk(&join(prefix, name), sub, out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", schema(), &mut out);
    out
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The shape at a dotted key (`auth.type`, `services.name`, `services[0].name`), following
/// aliases; `None` if there is no such key or section.
pub fn key_shape(key: &str) -> Option<&'static Shape> {
    let key = canonical_key(key);
    let mut shape = schema();
    for segment in split_path(&key) {
        match segment {
            PathSegment::Index(_) => match shape.required() {
                Shape::List(element) => shape = element,
                _ => return None,
            },
            PathSegment::Key(name) => {
                // Keys of list-of-tables elements may be given without an index.
                if let Shape::List(element) = shape.required() {
                    shape = element;
                }
                let Shape::Table(fields) = shape.required() else {
                    return None;
                };
                shape = &fields.iter().find(|(field, _)| *field == name)?.1;
            }
        }
    }
    Some(shape)
}

/// `users.banned` → `users.blocked`; other keys unchanged.
pub fn canonical_key(key: &str) -> String {
    KEY_ALIASES
        .iter()
        .find(|(alias, _)| *alias == key)
        .map_or_else(|| key.to_string(), |(_, canonical)| canonical.to_string())
}

/// The nearest of `candidates` to `key`, if any is close enough to be a likely typo.
/// Compares whole dotted paths and, failing that, the last segment.
pub fn nearest<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let last = key.rsplit('.').next().unwrap_or(key);
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        let candidate_last = candidate.rsplit('.').next().unwrap_or(candidate);
        let score = strsim::jaro_winkler(key, candidate)
            .max(strsim::jaro_winkler(last, candidate_last) - 0.02);
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.filter(|(score, _)| *score >= 0.8)
        .map(|(_, c)| c.to_string())
}

/// The nearest known key or section to an unknown `key`, for "did you mean".
pub fn suggest_key(key: &str) -> Option<String> {
    let mut candidates = known_keys();
    candidates.extend(known_sections());
    nearest(key, candidates.iter().map(String::as_str))
}

/// Check that `key` names a key or section of the config; the error suggests the nearest one.
pub fn check_key(key: &str) -> Result<&'static Shape, ConfigError> {
    let valid_syntax = !key.is_empty() && key.split('.').all(|s| !s.is_empty());
    match key_shape(key).filter(|_| valid_syntax && !key.contains('[')) {
        Some(shape) => Ok(shape),
        None => Err(ConfigError::UnknownKey {
            loc: Location::default(),
            key: key.to_string(),
            suggestion: suggest_key(key),
        }),
    }
}

/// The effective value of `key` (defaults included) as TOML; `Ok(None)` for an optional key
/// that is not set. Keys inside `[[services]]` entries are refused with a pointer to `services`.
pub fn effective_value(config: &Config, key: &str) -> Result<Option<toml::Value>, ConfigError> {
    check_key(key)?;
    let canonical = canonical_key(key);
    if let Some(list) = in_list_of_tables(&canonical) {
        return Err(ConfigError::invalid(
            key,
            format!(
                "a key of each [[{list}]] entry; show them all with `orrery config get {list}`"
            ),
        ));
    }
    let root = toml::Value::try_from(config).map_err(|err| {
        ConfigError::invalid(key, format!("cannot render the configuration: {err}"))
    })?;
    let mut value = &root;
    for part in canonical.split('.') {
        match value.get(part) {
            Some(v) => value = v,
            None => return Ok(None),
        }
    }
    Ok(Some(value.clone()))
}

/// If `key` is inside an array of tables (`services.name`), the array's key (`services`).
pub fn in_list_of_tables(key: &str) -> Option<String> {
    let mut shape = schema();
    let mut prefix = String::new();
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Shape::Table(fields) = shape.required() else {
            return None;
        };
        shape = &fields.iter().find(|(field, _)| field == part)?.1;
        prefix = join(&prefix, part);
        if let Shape::List(element) = shape.required() {
            if matches!(element.required(), Shape::Table(_)) && i + 1 < parts.len() {
                return Some(prefix);
            }
        }
    }
    None
}

/// Reject keys that are not in the key tree, before serde sees them, so the message can name
/// the whole path and suggest a sibling.
fn check_unknown_keys(root: &toml::Table) -> Result<(), ConfigError> {
    fn walk(
        table: &toml::Table,
        fields: &[(&'static str, Shape)],
        path: &str,
        canonical_prefix: &str,
    ) -> Result<(), ConfigError> {
        for (name, value) in table {
            let canonical = join(canonical_prefix, name);
            let lookup = canonical_key(&canonical);
            let lookup_name = lookup.rsplit('.').next().unwrap_or(&lookup);
            let here = join(path, name);
            let Some((_, shape)) = fields.iter().find(|(field, _)| *field == lookup_name) else {
                let siblings: Vec<String> = fields
                    .iter()
                    .map(|(field, _)| join(canonical_prefix, field))
                    .collect();
                let suggestion = nearest(&canonical, siblings.iter().map(String::as_str))
                    .or_else(|| suggest_key(&canonical))
                    .map(|s| rebase(&s, canonical_prefix, path));
                return Err(ConfigError::UnknownKey {
                    loc: Location::default(),
                    key: here,
                    suggestion,
                });
            };
            match (shape.required(), value) {
                (Shape::Table(sub), toml::Value::Table(t)) => walk(t, sub, &here, &canonical)?,
                (Shape::List(element), toml::Value::Array(items)) => {
                    if let Shape::Table(sub) = element.required() {
                        for (i, item) in items.iter().enumerate() {
                            if let toml::Value::Table(t) = item {
                                walk(t, sub, &format!("{here}[{i}]"), &canonical)?;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
    match schema() {
        Shape::Table(fields) => walk(root, fields, "", ""),
        _ => Ok(()),
    }
}

/// Turn a suggestion in canonical form (`services.name`) into the form of the path the user
/// wrote (`services[0].name`).
fn rebase(suggestion: &str, canonical_prefix: &str, path: &str) -> String {
    match suggestion.strip_prefix(canonical_prefix) {
        Some(rest) if !canonical_prefix.is_empty() => format!("{path}{rest}"),
        _ => suggestion.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Minimum length of a service's `api_token`.
pub const MIN_TOKEN_LEN: usize = 16;

/// Lowercase and check the names in `users.admin`, `users.allowed` and `users.blocked`
/// (dropping duplicates that differ only in case).
pub fn normalize_users(config: &mut Config) -> Result<(), ConfigError> {
    let users = &mut config.users;
    for (key, names) in [
        ("users.admin", &mut users.admin),
        ("users.allowed", &mut users.allowed),
        ("users.blocked", &mut users.blocked),
    ] {
        let mut normalized: Vec<String> = Vec::with_capacity(names.len());
        for name in names.iter() {
            let name = normalize_user(key, name)?;
            if !normalized.contains(&name) {
                normalized.push(name);
            }
        }
        *names = normalized;
    }
    Ok(())
}

fn normalize_user(key: &str, name: &str) -> Result<String, ConfigError> {
    username::normalize(name).map_err(|err| {
        ConfigError::invalid(key, format!("{name:?} is not a valid user name: {err}"))
    })
}

/// What is accepted but worth saying whenever the config is read or set: scopes that
/// JupyterHub has and Orrery does not implement yet (they grant nothing), each with its key.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (i, service) in config.services.iter().enumerate() {
        for (pos, scope) in service.scopes.iter().enumerate() {
            if let Ok(scopes::Checked::NotImplemented(w)) = scopes::check(scope, None) {
                out.push(format!(
                    "services[{i}].scopes[{pos}] (service {:?}): {w}",
                    service.name
                ));
            }
        }
    }
    out
}

/// Check what types alone cannot: each error names the key and says how to fix it.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    let err = |key: &str, message: String| Err(ConfigError::invalid(key, message));

    let base_url = &config.base_url;
    if !base_url.starts_with('/') || !base_url.ends_with('/') {
        return err(
            "base_url",
            format!("{base_url:?} must start and end with \"/\", e.g. \"/\" or \"/jupyter/\""),
        );
    }
    if base_url.contains(char::is_whitespace) || base_url.contains("//") {
        return err(
            "base_url",
            format!("{base_url:?} must be a plain path such as \"/jupyter/\""),
        );
    }

    for (key, address) in [
        ("http.address", &config.http.address),
        ("internal.address", &config.internal.address),
    ] {
        if !address.is_empty() && address.parse::<std::net::IpAddr>().is_err() {
            return err(
                key,
                format!(
                    "{address:?} is not an IP address; use e.g. \"0.0.0.0\" (every interface), \
                     \"127.0.0.1\" (this machine only), or \"\" for the default"
                ),
            );
        }
    }
    if config.http.port == 0 {
        return err(
            "http.port",
            "0 is not a port to listen on; use e.g. 80 or 8000".into(),
        );
    }
    let https = &config.https;
    if https.enabled {
        for (key, value) in [
            ("https.tls.cert", &https.tls.cert),
            ("https.tls.key", &https.tls.key),
        ] {
            if value.as_ref().is_none_or(|p| p.as_os_str().is_empty()) {
                return err(
                    key,
                    "https.enabled is true, which needs a PEM certificate and key; set \
                     https.tls.cert and https.tls.key, or set https.enabled to false"
                        .into(),
                );
            }
        }
        if https.port == 0 {
            return err(
                "https.port",
                "0 is not a port to listen on; use e.g. 443".into(),
            );
        }
        if https.port == config.http.port {
            return err(
                "https.port",
                format!(
                    "{} is also http.port; HTTP and HTTPS need different ports",
                    https.port
                ),
            );
        }
    }

    let users = &config.users;
    let mut admins = Vec::new();
    for (key, names) in [
        ("users.admin", &users.admin),
        ("users.allowed", &users.allowed),
        ("users.blocked", &users.blocked),
    ] {
        for name in names {
            let name = normalize_user(key, name)?;
            if key == "users.admin" {
                admins.push(name);
            } else if key == "users.blocked" && admins.contains(&name) {
                return err(
                    "users.blocked",
                    format!("{name:?} is also in users.admin; remove it from one of the two lists"),
                );
            }
        }
    }

    let mut seen: Vec<&str> = Vec::new();
    for (i, service) in config.services.iter().enumerate() {
        let at = |field: &str| format!("services[{i}].{field}");
        let name = &service.name;
        if name.is_empty() {
            return err(
                &at("name"),
                "every [[services]] entry needs a name, e.g. name = \"idle-culler\"".into(),
            );
        }
        if username::normalize(name).ok().as_deref() != Some(name.as_str()) {
            return err(
                &at("name"),
                format!(
                    "{name:?} is not a valid service name; use lowercase letters, digits, '.', \
                     '_' and '-', starting with a letter or digit"
                ),
            );
        }
        if let Some(first) = seen.iter().position(|n| *n == name) {
            return err(
                &at("name"),
                format!("{name:?} is already the name of services[{first}]"),
            );
        }
        seen.push(name);
        if service.api_token.trim().chars().count() < MIN_TOKEN_LEN {
            return err(
                &at("api_token"),
                format!(
                    "service {name:?} needs an api_token of at least {MIN_TOKEN_LEN} characters; \
                     generate one with `openssl rand -hex 32`"
                ),
            );
        }
        for (pos, scope) in service.scopes.iter().enumerate() {
            if scope.trim().is_empty() {
                return err(
                    &format!("services[{i}].scopes[{pos}]"),
                    "a scope must not be empty".into(),
                );
            }
            // A scope Orrery does not implement is only a warning (see `warnings`).
            if let Err(e) = scopes::check(scope, None) {
                return err(
                    &format!("services[{i}].scopes[{pos}]"),
                    format!("{e}; see the README's list of scopes"),
                );
            }
        }
        if let Some(uri) = &service.oauth_redirect_uri {
            if uri.trim().is_empty() {
                return err(
                    &at("oauth_redirect_uri"),
                    "must not be empty; leave the key out if the service does not log users in"
                        .into(),
                );
            }
        }
    }

    if config.spawner.reconcile_interval.is_zero() {
        return err(
            "spawner.reconcile_interval",
            "must be more than 0s, e.g. \"30s\"".into(),
        );
    }

    let kernels = &config.kernels;
    if kernels.remote && kernels.cull_interval.is_zero() {
        return err(
            "kernels.cull_interval",
            "must be more than 0s, e.g. \"1m\"".into(),
        );
    }
    let mut spec_names: Vec<&str> = Vec::new();
    for (i, spec) in kernels.specs.iter().enumerate() {
        let at = |field: &str| format!("kernels.specs[{i}].{field}");
        let name = &spec.name;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return err(
                &at("name"),
                format!("{name:?} is not a kernelspec name; use letters, digits, '-', '_' or '.', e.g. \"python3\""),
            );
        }
        if let Some(first) = spec_names.iter().position(|n| *n == name.as_str()) {
            return err(
                &at("name"),
                format!("{name:?} is already the name of kernels.specs[{first}]"),
            );
        }
        spec_names.push(name);
        if spec.argv.is_empty() {
            return err(
                &at("argv"),
                "must name the kernel's command, e.g. [\"python\", \"-m\", \"ipykernel_launcher\", \"-f\", \"{connection_file}\"]".into(),
            );
        }
        if !spec.argv.iter().any(|a| a.contains("{connection_file}")) {
            return err(
                &at("argv"),
                "must contain {connection_file}, where the kernel reads its connection file".into(),
            );
        }
        if let Some(cpu) = spec.cpu {
            if !(cpu.is_finite() && cpu > 0.0) {
                return err(
                    &at("cpu"),
                    format!("{cpu} is not a number of cores; use e.g. 0.5 or 2, or unset it"),
                );
            }
        }
        if spec.memory.is_some_and(|m| m.bytes() == 0) {
            return err(
                &at("memory"),
                "must be more than 0; unset it for no limit".into(),
            );
        }
        if spec.gpus > 0 {
            return err(
                &at("gpus"),
                "GPU kernels are not supported yet; use 0".into(),
            );
        }
        for (pos, user) in spec.allowed_users.iter().enumerate() {
            normalize_user(&at(&format!("allowed_users[{pos}]")), user)?;
        }
    }

    let cull = &config.cull;
    if cull.enabled {
        if cull.every.is_zero() {
            return err(
                "cull.every",
                "must be more than 0s when cull.enabled is true, e.g. \"1m\"".into(),
            );
        }
        if cull.timeout.is_zero() {
            return err(
                "cull.timeout",
                "must be more than 0s when cull.enabled is true, e.g. \"10m\"".into(),
            );
        }
        if cull.concurrency == 0 {
            return err(
                "cull.concurrency",
                "must be at least 1 when cull.enabled is true".into(),
            );
        }
    }

    if let Some(cpu) = config.limits.cpu {
        if !(cpu.is_finite() && cpu > 0.0) {
            return err(
                "limits.cpu",
                format!(
                    "{cpu} is not a number of cores; use e.g. 0.5 or 2, or unset it for no limit"
                ),
            );
        }
    }
    if config.limits.memory.is_some_and(|m| m.bytes() == 0) {
        return err(
            "limits.memory",
            "0 leaves no memory at all; use e.g. \"2G\", or unset it for no limit".into(),
        );
    }

    if config.spawner.concurrent_spawn_limit == 0 {
        return err(
            "spawner.concurrent_spawn_limit",
            "must be at least 1 (spawns allowed at once); the default is 100".into(),
        );
    }
    let docker = &config.spawner.docker;
    if docker.image.trim().is_empty() {
        return err(
            "spawner.docker.image",
            "must name an image, e.g. \"quay.io/jupyter/base-notebook:latest\"".into(),
        );
    }
    // Without {username} every user would share one home: refuse rather than mix files.
    if !docker.home_volume.contains("{username}") {
        return err(
            "spawner.docker.home_volume",
            format!("{:?} must contain {{username}} so each user gets their own volume, e.g. \"orrery-home-{{username}}\"", docker.home_volume),
        );
    }
    if let Some(p) = &docker.home_host_path {
        if !p.contains("{username}") || !p.starts_with('/') {
            return err(
                "spawner.docker.home_host_path",
                format!("{p:?} must be an absolute path containing {{username}}, e.g. \"/srv/orrery/homes/{{username}}\""),
            );
        }
    }
    if !docker.home_mount.starts_with('/') {
        return err(
            "spawner.docker.home_mount",
            format!(
                "{:?} must be an absolute path such as \"/home/jovyan\"",
                docker.home_mount
            ),
        );
    }
    if docker.port == 0 {
        return err(
            "spawner.docker.port",
            "must be the port the server listens on inside the container, e.g. 8888".into(),
        );
    }
    if docker.network.is_empty()
        || !docker
            .network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return err(
            "spawner.docker.network",
            format!(
                "{:?} is not a valid network name; use letters, digits, '-', '_' or '.'",
                docker.network
            ),
        );
    }
    if !docker.user.is_empty()
        && !docker
            .user
            .split(':')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        return err(
            "spawner.docker.user",
            format!(
                "{:?} must be numeric \"uid\" or \"uid:gid\", e.g. \"1000:100\"",
                docker.user
            ),
        );
    }
    for v in &docker.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let ok = (parts.len() == 2 || (parts.len() == 3 && matches!(parts[2], "ro" | "rw")))
            && parts[1].starts_with('/')
            && !parts[0].is_empty();
        if !ok {
            return err(
                "spawner.docker.volumes",
                format!("{v:?} must be \"SOURCE:/target\" or \"SOURCE:/target:ro\""),
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Deriving the key tree from the types
// ---------------------------------------------------------------------------------------------

/// A serde `Deserializer` that answers every request with a plausible empty value and records
/// what was asked for: structs (with their field names), sequences, options, enums (with their
/// variant names) and scalars. Running `Config::deserialize` against it yields the full key
/// tree, including `Option` fields that are `None` by default and empty lists.
mod probe {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
    use serde::Deserialize;

    use super::{join, LeafKind, Shape, KEY_ALIASES};

    #[derive(Debug)]
    pub struct ProbeError(String);

    impl fmt::Display for ProbeError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for ProbeError {}

    impl de::Error for ProbeError {
        fn custom<T: fmt::Display>(msg: T) -> Self {
            ProbeError(msg.to_string())
        }
    }

    pub fn shape_of<'de, T: Deserialize<'de>>() -> Result<Shape, ProbeError> {
        let mut shape = Shape::Leaf(LeafKind::Other);
        T::deserialize(Probe {
            path: String::new(),
            out: &mut shape,
        })?;
        Ok(shape)
    }

    struct Probe<'a> {
        /// Dotted path of the value being probed, to recognise aliases.
        path: String,
        out: &'a mut Shape,
    }

    impl Probe<'_> {
        fn leaf(self, kind: LeafKind) {
            *self.out = Shape::Leaf(kind);
        }
    }

    macro_rules! leaf {
        ($($method:ident => $kind:expr, $visit:ident($($value:expr)?);)*) => {$(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
                self.leaf($kind);
                visitor.$visit($($value)?)
            }
        )*};
    }

    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = ProbeError;

        leaf! {
            deserialize_any => LeafKind::NumberOrString, visit_u64(0);
            deserialize_bool => LeafKind::Bool, visit_bool(false);
            deserialize_i8 => LeafKind::Integer, visit_i8(0);
            deserialize_i16 => LeafKind::Integer, visit_i16(0);
            deserialize_i32 => LeafKind::Integer, visit_i32(0);
            deserialize_i64 => LeafKind::Integer, visit_i64(0);
            deserialize_u8 => LeafKind::Integer, visit_u8(0);
            deserialize_u16 => LeafKind::Integer, visit_u16(0);
            deserialize_u32 => LeafKind::Integer, visit_u32(0);
            deserialize_u64 => LeafKind::Integer, visit_u64(0);
            deserialize_f32 => LeafKind::Float, visit_f32(0.0);
            deserialize_f64 => LeafKind::Float, visit_f64(0.0);
            deserialize_char => LeafKind::String, visit_char('a');
            deserialize_str => LeafKind::String, visit_str("");
            deserialize_string => LeafKind::String, visit_str("");
            deserialize_bytes => LeafKind::Other, visit_bytes(b"");
            deserialize_byte_buf => LeafKind::Other, visit_bytes(b"");
            deserialize_unit => LeafKind::Other, visit_unit();
            deserialize_identifier => LeafKind::String, visit_str("");
            deserialize_ignored_any => LeafKind::Other, visit_unit();
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
            let mut inner = Shape::Leaf(LeafKind::Other);
            let value = visitor.visit_some(Probe {
                path: self.path,
                out: &mut inner,
            })?;
            *self.out = Shape::Optional(Box::new(inner));
            Ok(value)
        }

        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, ProbeError> {
            self.leaf(LeafKind::Other);
            visitor.visit_unit()
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, ProbeError> {
            visitor.visit_newtype_struct(self)
        }

        fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
            let mut element = Shape::Leaf(LeafKind::Other);
            let value = visitor.visit_seq(OneElement {
                path: self.path,
                out: &mut element,
                done: false,
            })?;
            *self.out = Shape::List(Box::new(element));
            Ok(value)
        }

        fn deserialize_tuple<V: Visitor<'de>>(
            self,
            _len: usize,
            visitor: V,
        ) -> Result<V::Value, ProbeError> {
            self.deserialize_seq(visitor)
        }

        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _len: usize,
            visitor: V,
        ) -> Result<V::Value, ProbeError> {
            self.deserialize_seq(visitor)
        }

        fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
            self.leaf(LeafKind::Other);
            visitor.visit_map(de::value::MapDeserializer::new(std::iter::empty::<(
                &str,
                &str,
            )>()))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, ProbeError> {
            // serde lists aliases among the fields; feeding both names would be a duplicate.
            let fields: Vec<&'static str> = fields
                .iter()
                .copied()
                .filter(|f| {
                    !KEY_ALIASES
                        .iter()
                        .any(|(alias, _)| *alias == join(&self.path, f))
                })
                .collect();
            let mut access = StructFields {
                path: self.path,
                fields,
                next: 0,
                shapes: Vec::new(),
            };
            let value = visitor.visit_map(&mut access)?;
            *self.out = Shape::Table(access.shapes);
            Ok(value)
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, ProbeError> {
            let first = variants
                .first()
                .copied()
                .ok_or_else(|| ProbeError("empty enum".into()))?;
            self.leaf(LeafKind::Choice(variants));
            visitor.visit_enum(first.into_deserializer())
        }
    }

    struct StructFields {
        path: String,
        fields: Vec<&'static str>,
        next: usize,
        shapes: Vec<(&'static str, Shape)>,
    }

    impl<'de> de::MapAccess<'de> for &mut StructFields {
        type Error = ProbeError;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, ProbeError> {
            let Some(field) = self.fields.get(self.next).copied() else {
                return Ok(None);
            };
            self.next += 1;
            self.shapes.push((field, Shape::Leaf(LeafKind::Other)));
            seed.deserialize(field.into_deserializer()).map(Some)
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(
            &mut self,
            seed: V,
        ) -> Result<V::Value, ProbeError> {
            let path = self.path.clone();
            let (field, out) = self
                .shapes
                .last_mut()
                .ok_or_else(|| ProbeError("value before key".into()))?;
            seed.deserialize(Probe {
                path: join(&path, field),
                out,
            })
        }
    }

    struct OneElement<'a> {
        path: String,
        out: &'a mut Shape,
        done: bool,
    }

    impl<'de> de::SeqAccess<'de> for OneElement<'_> {
        type Error = ProbeError;

        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, ProbeError> {
            if self.done {
                return Ok(None);
            }
            self.done = true;
            seed.deserialize(Probe {
                path: self.path.clone(),
                out: &mut *self.out,
            })
            .map(Some)
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Defaults => f.write_str("built-in defaults"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthType, Service, Size};

    fn err_of(text: &str) -> String {
        match parse_str(text) {
            Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn schema_is_derivable() {
        let shape = probe::shape_of::<Config>().expect("probe");
        let Shape::Table(fields) = &shape else {
            panic!("not a table: {shape:?}")
        };
        assert_eq!(fields[0].0, "base_url");
        assert_eq!(
            key_shape("auth.type"),
            Some(&Shape::Leaf(LeafKind::Choice(&[
                "firstuse", "native", "dummy"
            ])))
        );
        assert_eq!(
            key_shape("limits.memory").map(Shape::required),
            Some(&Shape::Leaf(LeafKind::NumberOrString))
        );
        assert_eq!(
            key_shape("limits.cpu").map(Shape::required),
            Some(&Shape::Leaf(LeafKind::Float))
        );
        assert_eq!(
            key_shape("https.tls.cert").map(Shape::required),
            Some(&Shape::Leaf(LeafKind::String))
        );
        assert_eq!(key_shape("users.banned"), key_shape("users.blocked"));
        assert_eq!(
            key_shape("services[3].api_token"),
            key_shape("services.api_token")
        );
        assert!(key_shape("auth.typ").is_none());
    }

    #[test]
    fn known_keys_cover_options_and_lists() {
        let keys = known_keys();
        for key in [
            "base_url",
            "http.port",
            "https.tls.cert",
            "auth.type",
            "auth.dummy.password",
            "users.admin",
            "users.blocked",
            "limits.memory",
            "limits.cpu",
            "services.name",
            "services.oauth_redirect_uri",
            "spawner.local.cmd",
            "logging.level",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
        }
        assert!(!keys.iter().any(|k| k == "users.banned"));
        assert!(!keys.iter().any(|k| k == "services"));
        let sections = known_sections();
        assert!(sections.iter().any(|s| s == "auth.firstuse"));
        assert!(sections.iter().any(|s| s == "services"));
    }

    /// Every documented key is known and every known key documented: the example file is the
    /// reference, so a field added to `Config` must be added there too.
    #[test]
    fn example_file_documents_every_key() {
        let example = include_str!("../../config/orrery.example.toml");
        // As shipped, the example parses to exactly the defaults.
        let parsed = parse_str(example).unwrap_or_else(|e| panic!("example: {e}"));
        assert_eq!(parsed, Config::default());
        // With the commented-out keys switched on it is still valid, and names every key.
        let uncommented = uncomment_examples(example);
        let full = parse_str(&uncommented).unwrap_or_else(|e| panic!("uncommented example: {e}"));
        assert_eq!(full.services.len(), 1);
        let table: toml::Table = uncommented.parse().expect("toml");
        let mut documented = Vec::new();
        collect_leaves("", &toml::Value::Table(table), &mut documented);
        let mut known = known_keys();
        documented.sort();
        documented.dedup();
        known.sort();
        let missing: Vec<_> = known.iter().filter(|k| !documented.contains(k)).collect();
        let extra: Vec<_> = documented.iter().filter(|k| !known.contains(k)).collect();
        assert!(
            missing.is_empty(),
            "keys not documented in config/orrery.example.toml: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "documented keys that do not exist: {extra:?}"
        );
    }

    /// Turn `# key = value` and `# [[services]]` lines into real TOML.
    fn uncomment_examples(text: &str) -> String {
        text.lines()
            .map(|line| {
                let Some(rest) = line.strip_prefix("# ") else {
                    return line.to_string();
                };
                let is_key = rest.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                });
                if is_key || rest.starts_with("[[") {
                    rest.to_string()
                } else {
                    line.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn collect_leaves(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
        match value {
            // An empty table is a free-form map key (e.g. spawner.docker.env = {}).
            toml::Value::Table(t) if t.is_empty() && !prefix.is_empty() => {
                out.push(prefix.to_string())
            }
            toml::Value::Table(t) => {
                for (k, v) in t {
                    collect_leaves(&join(prefix, k), v, out);
                }
            }
            toml::Value::Array(items)
                if items.iter().all(|i| i.is_table()) && !items.is_empty() =>
            {
                for item in items {
                    collect_leaves(prefix, item, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(parse_str("").unwrap(), Config::default());
        assert_eq!(parse_str("# nothing\n").unwrap(), Config::default());
    }

    #[test]
    fn reads_a_typical_file() {
        let config = parse_str(
            r#"
            base_url = "/jupyter/"
            [http]
            address = ""
            port = 80
            [auth]
            type = "native"
            session_max_age = "7d"
            [users]
            admin = ["Alice", "bob", "alice"]
            banned = ["mallory"]
            [limits]
            memory = "2G"
            cpu = 1
            [cull]
            timeout = 3600
            [[services]]
            name = "idle-culler"
            api_token = "0123456789abcdef0123"
            scopes = ["list:users", "read:servers"]
            "#,
        )
        .unwrap();
        assert_eq!(config.base_url, "/jupyter/");
        assert_eq!(config.http.port, 80);
        assert_eq!(config.auth.kind, AuthType::Native);
        assert_eq!(config.auth.session_max_age.as_secs(), 7 * 86400);
        assert_eq!(config.users.admin, vec!["alice", "bob"]);
        assert_eq!(config.users.blocked, vec!["mallory"]);
        assert_eq!(config.limits.memory, Some(Size::from_bytes(2 << 30)));
        assert_eq!(config.limits.cpu, Some(1.0));
        assert_eq!(config.cull.timeout.as_secs(), 3600);
        assert_eq!(config.services.len(), 1);
    }

    #[test]
    fn unknown_keys_suggest_the_nearest() {
        assert_eq!(
            err_of("[auth]\ntyp = \"native\"\n"),
            "line 2: unknown key \"auth.typ\"; did you mean \"auth.type\"?"
        );
        assert_eq!(
            err_of("[cull]\ntimout = 5\n"),
            "line 2: unknown key \"cull.timout\"; did you mean \"cull.timeout\"?"
        );
        assert_eq!(
            err_of("[[services]]\nnme = \"x\"\n"),
            "line 2: unknown key \"services[0].nme\"; did you mean \"services[0].name\"?"
        );
        assert_eq!(
            err_of("[auht]\ntype = \"native\"\n"),
            "line 1: unknown key \"auht\"; did you mean \"auth\"?"
        );
        assert_eq!(err_of("zzzzzz = 1\n"), "line 1: unknown key \"zzzzzz\"");
        assert_eq!(
            err_of("auth.firstuse.create_user = true\n"),
            "line 1: unknown key \"auth.firstuse.create_user\"; did you mean \"auth.firstuse.create_users\"?"
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        assert_eq!(
            err_of("[auth.firstuse]\ncreate_users = \"yes\"\n"),
            "line 2: auth.firstuse.create_users: expected a boolean, found string \"yes\""
        );
        assert_eq!(
            err_of("[auth]\ntype = \"nonsense\"\n"),
            "line 2: auth.type: \"nonsense\" is not valid; choose one of: firstuse, native, dummy"
        );
        assert_eq!(
            err_of("[spawner]\nbackend = \"k8s\"\n"),
            "line 2: spawner.backend: \"k8s\" is not valid; choose one of: docker, local"
        );
        assert_eq!(
            err_of("[http]\nport = 70000\n"),
            "line 2: http.port: 70000 is out of range; expected a whole number from 1 to 65535"
        );
        assert_eq!(
            err_of("[cull]\ntimeout = \"10x\"\n"),
            "line 2: cull.timeout: invalid duration \"10x\": use a number of seconds or a number \
             with s, m, h or d, e.g. \"10m\" or \"1h30m\""
        );
        assert_eq!(
            err_of("[users]\nadmin = [\"a\", 3]\n"),
            "line 2: users.admin[1]: expected a string, found integer 3"
        );
        assert!(err_of("[limits]\nmemory = \"lots\"\n")
            .starts_with("line 2: limits.memory: invalid size \"lots\""));
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let msg = err_of("[auth]\ntype = \n");
        assert!(
            msg.starts_with("line 2, column 8: TOML syntax error: "),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[auth]\ntype = 3\n").unwrap();
        let msg = load_file(&path).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "{}:2: auth.type: expected one of: firstuse, native, dummy (a string), found integer 3",
                path.display()
            )
        );
        let missing = dir.path().join("nope.toml");
        let err = load_file(&missing).unwrap_err();
        assert!(matches!(err, ConfigError::NotFound { .. }));
        assert!(err.to_string().contains("config set"), "{err}");
        let err = discover(Some(&missing)).unwrap_err();
        assert!(matches!(err, ConfigError::NotFound { .. }));
    }

    #[test]
    fn validation_rules() {
        let cases: &[(&str, &str)] = &[
            ("base_url = \"jupyter\"", "base_url: \"jupyter\" must start and end with \"/\""),
            ("base_url = \"/jupyter\"", "base_url: \"/jupyter\" must start and end with \"/\""),
            ("[http]\nport = 0", "http.port: 0 is not a port"),
            ("[http]\naddress = \"localhost\"", "http.address: \"localhost\" is not an IP address"),
            ("[internal]\naddress = \"10\"", "internal.address: \"10\" is not an IP address"),
            ("[https]\nenabled = true", "https.tls.cert: https.enabled is true"),
            (
                "[https]\nenabled = true\ntls.cert = \"/c.pem\"",
                "https.tls.key: https.enabled is true",
            ),
            ("[users]\nadmin = [\"bad name\"]", "users.admin: \"bad name\" is not a valid user name"),
            (
                "[users]\nadmin = [\"Alice\"]\nblocked = [\"alice\"]",
                "users.blocked: \"alice\" is also in users.admin",
            ),
            ("[cull]\nevery = 0", "cull.every: must be more than 0s"),
            (
                "[[kernels.specs]]\nname = \"a b\"",
                "kernels.specs[0].name: \"a b\" is not a kernelspec name",
            ),
            (
                "[[kernels.specs]]\nname = \"py\"\n[[kernels.specs]]\nname = \"py\"",
                "kernels.specs[1].name: \"py\" is already the name of kernels.specs[0]",
            ),
            (
                "[[kernels.specs]]\nargv = [\"python\", \"-m\", \"ipykernel_launcher\"]",
                "kernels.specs[0].argv: must contain {connection_file}",
            ),
            (
                "[[kernels.specs]]\ninterrupt_mode = \"loud\"",
                "kernels.specs[0].interrupt_mode",
            ),
            ("[[kernels.specs]]\ngpus = 1", "kernels.specs[0].gpus: GPU kernels are not supported yet"),
            ("[limits]\ncpu = 0", "limits.cpu: 0 is not a number of cores"),
            ("[limits]\ncpu = -1.5", "limits.cpu: -1.5 is not a number of cores"),
            ("[spawner]\nconcurrent_spawn_limit = 0", "spawner.concurrent_spawn_limit: must be at least 1"),
            ("[[services]]\napi_token = \"0123456789abcdef\"", "services[0].name: every [[services]] entry needs a name"),
            (
                "[[services]]\nname = \"Culler\"\napi_token = \"0123456789abcdef\"",
                "services[0].name: \"Culler\" is not a valid service name",
            ),
            (
                "[[services]]\nname = \"c\"\napi_token = \"short\"",
                "services[0].api_token: service \"c\" needs an api_token of at least 16 characters; generate one with `openssl rand -hex 32`",
            ),
            (
                "[[services]]\nname = \"c\"\napi_token = \"0123456789abcdef\"\n[[services]]\nname = \"c\"\napi_token = \"0123456789abcdef\"",
                "services[1].name: \"c\" is already the name of services[0]",
            ),
            (
                "[[services]]\nname = \"c\"\napi_token = \"0123456789abcdef\"\nscopes = [\"read:users\", \"\"]",
                "services[0].scopes[1]: a scope must not be empty",
            ),
        ];
        for (text, want) in cases {
            let got = parse_str(text)
                .map(|_| ())
                .unwrap_err()
                .without_location()
                .to_string();
            assert!(
                got.starts_with(want),
                "for {text:?}:\n got  {got}\n want {want}..."
            );
        }
        // Culling off: its durations are not checked.
        parse_str("[cull]\nenabled = false\nevery = 0").unwrap();
        // validate() alone (for configs built in code) checks names without changing them.
        let mut config = Config::default();
        config.users.admin.push("Alice".into());
        validate(&config).unwrap();
        config.services.push(Service {
            name: "ok".into(),
            api_token: "x".repeat(16),
            ..Default::default()
        });
        validate(&config).unwrap();
    }

    #[test]
    fn semantic_errors_point_at_the_line_when_written() {
        let msg = err_of("# c\n[cull]\nenabled = true\nevery = \"0s\"\n");
        assert_eq!(
            msg,
            "line 4: cull.every: must be more than 0s when cull.enabled is true, e.g. \"1m\""
        );
        // https.tls.cert is not in the file: no line.
        let msg = err_of("[https]\nenabled = true\n");
        assert!(msg.starts_with("https.tls.cert: "), "{msg}");
    }

    #[test]
    fn nearest_key_matching() {
        assert_eq!(suggest_key("auth.typ").as_deref(), Some("auth.type"));
        assert_eq!(suggest_key("limits.mem").as_deref(), Some("limits.memory"));
        assert_eq!(suggest_key("users.admins").as_deref(), Some("users.admin"));
        assert_eq!(suggest_key("cull.timeuot").as_deref(), Some("cull.timeout"));
        assert_eq!(suggest_key("qqqq.zzzz"), None);
        assert!(check_key("auth.type").is_ok());
        assert!(check_key("auth").is_ok());
        assert!(check_key("users.banned").is_ok());
        assert!(check_key("auth..type").is_err());
        let err = check_key("auth.typ").unwrap_err().to_string();
        assert_eq!(err, "unknown key \"auth.typ\"; did you mean \"auth.type\"?");
    }

    #[test]
    fn effective_values() {
        let config = parse_str("[limits]\nmemory = \"2048M\"\n").unwrap();
        assert_eq!(
            effective_value(&config, "limits.memory").unwrap(),
            Some(toml::Value::from("2G"))
        );
        assert_eq!(effective_value(&config, "limits.cpu").unwrap(), None);
        assert_eq!(
            effective_value(&config, "auth.type").unwrap(),
            Some(toml::Value::from("firstuse"))
        );
        assert_eq!(
            effective_value(&config, "cull.timeout").unwrap(),
            Some(toml::Value::from("10m"))
        );
        assert_eq!(
            effective_value(&config, "http.port").unwrap(),
            Some(toml::Value::from(8000))
        );
        assert!(effective_value(&config, "auth")
            .unwrap()
            .is_some_and(|v| v.is_table()));
        assert!(effective_value(&config, "users.banned")
            .unwrap()
            .is_some_and(|v| v.is_array()));
        assert!(effective_value(&config, "services.name").is_err());
        assert!(effective_value(&config, "auth.typ").is_err());
    }

    #[test]
    fn state_path_rules() {
        let loaded = LoadedConfig {
            config: Config::default(),
            source: ConfigSource::Defaults,
        };
        assert!(loaded.state_path().is_absolute());
        assert!(loaded.state_path().ends_with(DEV_STATE_PATH));
        let file = ConfigSource::File(PathBuf::from("/etc/orrery/config.toml"));
        let loaded = LoadedConfig {
            config: Config::default(),
            source: file.clone(),
        };
        assert_eq!(loaded.state_path(), PathBuf::from(DEFAULT_STATE_PATH));
        let mut config = Config::default();
        config.state.path = PathBuf::from("/srv/state");
        let loaded = LoadedConfig {
            config: config.clone(),
            source: file.clone(),
        };
        assert_eq!(loaded.state_path(), PathBuf::from("/srv/state"));
        config.state.path = PathBuf::from("state");
        let loaded = LoadedConfig {
            config,
            source: file,
        };
        assert_eq!(loaded.state_path(), PathBuf::from("/etc/orrery/state"));
    }

    #[test]
    fn split_paths() {
        assert_eq!(
            split_path("services[0].name"),
            vec![
                PathSegment::Key("services"),
                PathSegment::Index(0),
                PathSegment::Key("name")
            ]
        );
        assert_eq!(
            split_path("a.b"),
            vec![PathSegment::Key("a"), PathSegment::Key("b")]
        );
    }
}
