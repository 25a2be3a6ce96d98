//! The engine behind `orrery config set/unset/add-item/remove-item`, in the manner of TLJH's
//! `tljh-config`.
//!
//! Edits work on a [`toml_edit::DocumentMut`], so comments, blank lines and key order in the
//! file survive. [`apply_edit`] wraps an edit in the safety an administrator expects from a
//! tool that rewrites `/etc/orrery/config.toml`: an exclusive lock, validation of the result
//! (an invalid result leaves the file untouched, byte for byte), and an atomic replace that
//! keeps the file's mode (new files are 0600, since `[[services]]` hold tokens).

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, Item, Table, TableLike, Value};

use super::load::{
    self, canonical_key, check_key, effective_value, in_list_of_tables, parse_str, ConfigError,
    LeafKind, Location, Shape, KEY_ALIASES,
};
use super::Config;

// ---------------------------------------------------------------------------------------------
// Values typed on the command line
// ---------------------------------------------------------------------------------------------

/// Interpret a value typed on the command line the way `tljh-config` does: `none`/`null` mean
/// "unset" (returned as `None`), digits are an integer, digits with a `.` a float, `true` and
/// `false` booleans, and anything else a string.
pub fn parse_value(raw: &str) -> Option<Value> {
    if raw == "none" || raw == "null" {
        return None;
    }
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = raw.parse::<i64>() {
            return Some(Value::from(n));
        }
    }
    if let Some((int, frac)) = digits.split_once('.') {
        if !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit())
        {
            if let Ok(f) = raw.parse::<f64>() {
                return Some(Value::from(f));
            }
        }
    }
    match raw {
        "true" => Some(Value::from(true)),
        "false" => Some(Value::from(false)),
        _ => Some(Value::from(raw)),
    }
}

/// Like [`parse_value`], but where the key (or, for a list, its elements) holds text, the raw
/// text is kept as a string: `set auth.dummy.password 1234` stores `"1234"`, not `1234`.
pub fn parse_value_for_key(key: &str, raw: &str) -> Option<Value> {
    let parsed = parse_value(raw)?;
    let shape = load::key_shape(key).map(Shape::required);
    let shape = match shape {
        Some(Shape::List(element)) => Some(element.required()),
        other => other,
    };
    match shape {
        Some(Shape::Leaf(LeafKind::String | LeafKind::Choice(_))) => Some(Value::from(raw)),
        _ => Some(parsed),
    }
}

// ---------------------------------------------------------------------------------------------
// Document operations (no schema, no I/O)
// ---------------------------------------------------------------------------------------------

fn split_key(key: &str) -> Result<Vec<&str>, ConfigError> {
    let parts: Vec<&str> = key.split('.').collect();
    if key.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::invalid(
            key,
            "not a key; write keys as section.key, e.g. auth.type",
        ));
    }
    Ok(parts)
}

fn list_of_tables_error(key: &str) -> ConfigError {
    ConfigError::invalid(
        key,
        format!(
            "a list of [[{key}]] tables, which these commands cannot edit; \
             edit the file with a text editor"
        ),
    )
}

/// The item at a dotted key, if present in the document.
pub fn get<'a>(doc: &'a DocumentMut, key: &str) -> Option<&'a Item> {
    let mut table: &dyn TableLike = doc.as_table();
    let parts: Vec<&str> = key.split('.').collect();
    let (last, parents) = parts.split_last()?;
    for part in parents {
        table = table.get(part)?.as_table_like()?;
    }
    table.get(last).filter(|item| !item.is_none())
}

/// The table that holds the last part of `parts`, creating missing sections (as `[section]`
/// tables) when `create` is set.
fn parent_mut<'a>(
    doc: &'a mut DocumentMut,
    parts: &[&str],
    create: bool,
) -> Result<Option<&'a mut dyn TableLike>, ConfigError> {
    let mut table: &mut dyn TableLike = doc.as_table_mut();
    let parents = &parts[..parts.len().saturating_sub(1)];
    for (i, part) in parents.iter().enumerate() {
        let here = parts[..=i].join(".");
        if table.get(part).is_none_or(Item::is_none) {
            if !create {
                return Ok(None);
            }
            let mut new = Table::new();
            // Shown only if it ends up holding values: `[auth.firstuse]` without `[auth]`.
            new.set_implicit(true);
            table.insert(part, Item::Table(new));
        }
        table = match table.get_mut(part) {
            Some(Item::Table(t)) => t,
            Some(Item::Value(Value::InlineTable(t))) => t,
            Some(Item::ArrayOfTables(_)) => return Err(list_of_tables_error(&here)),
            _ => {
                return Err(ConfigError::invalid(
                    &here,
                    "a value, not a section, so it has no keys".to_string(),
                ))
            }
        };
    }
    Ok(Some(table))
}

/// Set `key` to `value`, creating sections as needed; returns the previous item. A value
/// that replaces another keeps its comment (`port = 80  # public`).
pub fn set(
    doc: &mut DocumentMut,
    key: &str,
    mut value: Value,
) -> Result<Option<Item>, ConfigError> {
    let parts = split_key(key)?;
    let last = parts[parts.len() - 1];
    let table = parent_mut(doc, &parts, true)?
        .ok_or_else(|| ConfigError::invalid(key, "cannot create its section"))?;
    match table.get_mut(last) {
        Some(Item::Value(old)) => {
            *value.decor_mut() = old.decor().clone();
            Ok(Some(Item::Value(std::mem::replace(old, value))))
        }
        Some(Item::Table(_)) => Err(ConfigError::invalid(
            key,
            "a section, not a single value; set one of its keys instead".to_string(),
        )),
        Some(Item::ArrayOfTables(_)) => Err(list_of_tables_error(key)),
        Some(Item::None) | None => {
            table.insert(last, Item::Value(value));
            if parts.len() == 1 {
                keep_header_comment_first(doc, last);
            }
            Ok(None)
        }
    }
}

/// A file's opening comment block is, to `toml_edit`, part of the first section's prefix, so a
/// key added at the top level would be written above it. When the new key is the first
/// top-level value, move the comment block (up to its last blank line) onto the key.
fn keep_header_comment_first(doc: &mut DocumentMut, new_key: &str) {
    let root = doc.as_table_mut();
    if root.iter().filter(|(_, item)| item.is_value()).count() != 1 {
        return;
    }
    let first_table = root
        .iter_mut()
        .filter_map(|(_, item)| match item {
            Item::Table(t) => Some(t),
            Item::ArrayOfTables(a) => a.iter_mut().next(),
            _ => None,
        })
        .filter(|t| t.position().is_some())
        .min_by_key(|t| t.position());
    let Some(first_table) = first_table else {
        return;
    };
    let Some(prefix) = first_table
        .decor()
        .prefix()
        .and_then(|p| p.as_str())
        .map(str::to_string)
    else {
        return;
    };
    let Some(blank) = prefix.rfind("\n\n") else {
        return;
    };
    let (header, rest) = prefix.split_at(blank + 2);
    first_table.decor_mut().set_prefix(format!("\n{rest}"));
    if let Some(mut key) = root.key_mut(new_key) {
        key.leaf_decor_mut().set_prefix(header);
    }
}

/// Remove `key` (a value or a whole section); returns what was removed. Sections left empty
/// and uncommented are removed too, so `set x.y 1` followed by `unset x.y` leaves no `[x]`.
pub fn unset(doc: &mut DocumentMut, key: &str) -> Result<Option<Item>, ConfigError> {
    fn remove_in(
        table: &mut dyn TableLike,
        parts: &[&str],
        done: usize,
        all: &[&str],
    ) -> Result<Option<Item>, ConfigError> {
        let Some((first, rest)) = parts.split_first() else {
            return Ok(None);
        };
        if rest.is_empty() {
            return Ok(table.remove(first).filter(|item| !item.is_none()));
        }
        let here = all[..=done].join(".");
        let child: &mut dyn TableLike = match table.get_mut(first) {
            None | Some(Item::None) => return Ok(None),
            Some(Item::Table(t)) => t,
            Some(Item::Value(Value::InlineTable(t))) => t,
            Some(Item::ArrayOfTables(_)) => return Err(list_of_tables_error(&here)),
            Some(Item::Value(_)) => {
                return Err(ConfigError::invalid(
                    &here,
                    "a value, not a section, so it has no keys".to_string(),
                ))
            }
        };
        let removed = remove_in(child, rest, done + 1, all)?;
        let prune = removed.is_some()
            && match table.get(first) {
                Some(Item::Table(t)) => t.is_empty() && !has_comment(t.decor()),
                _ => false,
            };
        if prune {
            table.remove(first);
        }
        Ok(removed)
    }
    let parts = split_key(key)?;
    remove_in(doc.as_table_mut(), &parts, 0, &parts)
}

fn has_comment(decor: &toml_edit::Decor) -> bool {
    let text = |raw: Option<&toml_edit::RawString>| {
        raw.and_then(|r| r.as_str())
            .is_some_and(|s| s.contains('#'))
    };
    text(decor.prefix()) || text(decor.suffix())
}

/// Two values are the same item if they have the same type and content (formatting aside).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.value() == y.value(),
        (Value::Integer(x), Value::Integer(y)) => x.value() == y.value(),
        (Value::Float(x), Value::Float(y)) => x.value() == y.value(),
        (Value::Boolean(x), Value::Boolean(y)) => x.value() == y.value(),
        _ => a.clone().decorated("", "").to_string() == b.clone().decorated("", "").to_string(),
    }
}

/// Append `value` to the list at `key`, creating the list (and sections) if needed. Returns
/// false, changing nothing, if the list already holds the value.
pub fn add_item(doc: &mut DocumentMut, key: &str, value: Value) -> Result<bool, ConfigError> {
    add_item_by(doc, key, value, same_value)
}

fn add_item_by(
    doc: &mut DocumentMut,
    key: &str,
    value: Value,
    same: SameItem,
) -> Result<bool, ConfigError> {
    let parts = split_key(key)?;
    let last = parts[parts.len() - 1];
    let table = parent_mut(doc, &parts, true)?
        .ok_or_else(|| ConfigError::invalid(key, "cannot create its section"))?;
    match table.get_mut(last) {
        None | Some(Item::None) if value.is_inline_table() => {
            let mut aot = toml_edit::ArrayOfTables::new();
            if let Value::InlineTable(t) = value {
                aot.push(t.into_table());
            }
            table.insert(last, Item::ArrayOfTables(aot));
            Ok(true)
        }
        None | Some(Item::None) => {
            let mut array = Array::new();
            array.push(value);
            table.insert(last, Item::Value(Value::Array(array)));
            Ok(true)
        }
        Some(Item::ArrayOfTables(aot)) if value.is_inline_table() => {
            let exists = aot
                .iter()
                .any(|t| same(&Value::InlineTable(t.clone().into_inline_table()), &value));
            if exists {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "already has an entry named {}; remove-item it first to replace it",
                        value
                            .as_inline_table()
                            .and_then(|t| t.get("name"))
                            .map(|n| n.to_string())
                            .unwrap_or_default()
                            .trim()
                    ),
                ));
            }
            if let Value::InlineTable(t) = value {
                aot.push(t.into_table());
            }
            Ok(true)
        }
        Some(Item::Value(Value::Array(array))) => {
            if array.iter().any(|v| same(v, &value)) {
                return Ok(false);
            }
            // In a list written one item per line, put the new item on a line of its own.
            let multiline_prefix = array
                .iter()
                .last()
                .and_then(|v| v.decor().prefix())
                .and_then(|p| p.as_str())
                .filter(|p| p.contains('\n'))
                .map(str::to_string);
            match multiline_prefix {
                Some(prefix) => array.push_formatted(value.decorated(prefix, "")),
                None => array.push(value),
            }
            Ok(true)
        }
        Some(Item::ArrayOfTables(_)) => Err(list_of_tables_error(key)),
        Some(_) => Err(ConfigError::invalid(
            key,
            format!("not a list; use `orrery config set {key} VALUE`"),
        )),
    }
}

/// Remove `value` from the list at `key`; an error if it is not there.
pub fn remove_item(doc: &mut DocumentMut, key: &str, value: &Value) -> Result<(), ConfigError> {
    remove_item_by(doc, key, value, same_value)
}

fn remove_item_by(
    doc: &mut DocumentMut,
    key: &str,
    value: &Value,
    same: SameItem,
) -> Result<(), ConfigError> {
    let parts = split_key(key)?;
    let last = parts[parts.len() - 1];
    let shown = value.clone().decorated("", "").to_string();
    let not_there = || ConfigError::invalid(key, format!("does not contain {shown}"));
    let Some(table) = parent_mut(doc, &parts, false)? else {
        return Err(not_there());
    };
    match table.get_mut(last) {
        Some(Item::Value(Value::Array(array))) => {
            let index = array
                .iter()
                .position(|v| same(v, value))
                .ok_or_else(not_there)?;
            array.remove(index);
            if array.is_empty() {
                array.set_trailing("");
                array.set_trailing_comma(false);
            } else if index == 0 {
                // `["a", "b"]` minus "a" is `["b"]`, not `[ "b"]`.
                if let Some(first) = array.get_mut(0) {
                    let inline = first
                        .decor()
                        .prefix()
                        .and_then(|p| p.as_str())
                        .is_some_and(|p| !p.contains('\n'));
                    if inline {
                        first.decor_mut().set_prefix("");
                    }
                }
            }
            Ok(())
        }
        Some(Item::ArrayOfTables(aot)) if value.is_inline_table() => {
            let index = aot
                .iter()
                .position(|t| same(&Value::InlineTable(t.clone().into_inline_table()), value))
                .ok_or_else(not_there)?;
            aot.remove(index);
            Ok(())
        }
        Some(Item::ArrayOfTables(_)) => Err(list_of_tables_error(key)),
        None | Some(Item::None) => Err(not_there()),
        Some(_) => Err(ConfigError::invalid(
            key,
            format!("not a list; use `orrery config unset {key}`"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Editing the file
// ---------------------------------------------------------------------------------------------

/// The result of [`apply_edit`].
#[derive(Debug)]
pub struct EditOutcome<T> {
    /// What the edit operation returned.
    pub result: T,
    /// The configuration before the edit, `None` if the file was invalid (the edit may have
    /// been the fix).
    pub before: Option<Config>,
    /// The configuration after the edit, validated.
    pub after: Config,
    /// False when the edit changed nothing, in which case the file was not rewritten.
    pub written: bool,
    /// True when the file did not exist and was created.
    pub created: bool,
    /// The file actually written (symbolic links resolved).
    pub path: PathBuf,
}

/// Lock `path`, apply `op` to its document (a missing file is an empty document), validate
/// the result, and replace the file atomically. If `op` fails or the result is invalid, the
/// file is left exactly as it was.
pub fn apply_edit<T>(
    path: &Path,
    op: impl FnOnce(&mut DocumentMut) -> Result<T, ConfigError>,
) -> Result<EditOutcome<T>, ConfigError> {
    let path = resolve_link(path);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|err| ConfigError::io("create directory", &dir, err))?;
    let _lock = lock(&path)?;

    let (old_text, old_meta) = match fs::read_to_string(&path) {
        Ok(text) => {
            let meta = fs::metadata(&path).map_err(|err| ConfigError::io("read", &path, err))?;
            (text, Some(meta))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => (String::new(), None),
        Err(err) => return Err(ConfigError::io("read", &path, err)),
    };
    let mut doc: DocumentMut = old_text.parse().map_err(|err: toml_edit::TomlError| {
        let (line, column) = err.span().map_or((None, None), |span| {
            let before = old_text.get(..span.start).unwrap_or(&old_text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (Some(line), Some(column))
        });
        ConfigError::Syntax {
            loc: Location {
                file: Some(path.clone()),
                line,
                column,
            },
            message: err.message().lines().collect::<Vec<_>>().join("; "),
        }
    })?;
    let before = parse_str(&old_text).map_err(ConfigError::without_location);

    let result = op(&mut doc)?;
    let new_text = doc.to_string();
    let after = match parse_str(&new_text) {
        Ok(config) => config,
        Err(new_err) => {
            let new_err = new_err.without_location();
            // A mistake that was already in the file, not made by this edit: point at it there.
            if let Err(old_err) = &before {
                if old_err.to_string() == new_err.to_string() {
                    return Err(load::load_file(&path).err().unwrap_or(new_err));
                }
            }
            return Err(new_err);
        }
    };
    let written = new_text != old_text;
    if written {
        write_atomically(&path, &dir, &new_text, old_meta.as_ref())?;
    }
    Ok(EditOutcome {
        result,
        before: before.ok(),
        after,
        written,
        created: written && old_meta.is_none(),
        path,
    })
}

/// Edit the file a symbolic link points to rather than replacing the link.
fn resolve_link(path: &Path) -> PathBuf {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}

/// `config.toml` → `config.toml<suffix>` in the same directory.
fn sidecar(path: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "config.toml".into(), |n| n.to_string_lossy());
    path.with_file_name(format!("{prefix}{name}{suffix}"))
}

/// An exclusive `flock` on `<file>.lock`, held until dropped, so that two edits (or an edit
/// and an installer) do not interleave their read-modify-write.
fn lock(path: &Path) -> Result<nix::fcntl::Flock<File>, ConfigError> {
    let lock_path = sidecar(path, "", ".lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|err| ConfigError::io("lock", &lock_path, err))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, errno)| {
        ConfigError::io(
            "lock",
            &lock_path,
            io::Error::from_raw_os_error(errno as i32),
        )
    })
}

fn write_atomically(
    path: &Path,
    dir: &Path,
    text: &str,
    old_meta: Option<&fs::Metadata>,
) -> Result<(), ConfigError> {
    // The lock makes this name ours; a leftover from a crash is simply replaced.
    let tmp = sidecar(path, ".", ".tmp");
    let _ = fs::remove_file(&tmp);
    let mode = old_meta.map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode given to open().
        file.set_permissions(Permissions::from_mode(mode))?;
        if let Some(meta) = old_meta {
            let ours = file.metadata()?;
            if (ours.uid(), ours.gid()) != (meta.uid(), meta.gid()) {
                // Keep the owner when root edits someone else's file; otherwise not possible
                // and not needed.
                let _ = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()));
            }
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        Ok(())
    };
    if let Err(err) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(ConfigError::io("write", &tmp, err));
    }
    if let Err(err) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(ConfigError::io("replace", path, err));
    }
    // Make the rename itself durable; some filesystems cannot sync a directory, which is fine.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The commands
// ---------------------------------------------------------------------------------------------

/// What a command changed, for the CLI to print (`auth.type: firstuse -> native`).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: String,
    /// The effective value before (defaults included), as it would be typed; `None` if not set.
    pub before: Option<String>,
    /// The effective value after.
    pub after: Option<String>,
    /// False when there was nothing to change and the file was left alone.
    pub written: bool,
    /// True when the file was created by this command.
    pub created: bool,
    /// The file edited.
    pub path: PathBuf,
}

/// A value as a person would type it: strings bare, everything else as TOML.
pub fn display_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Which spelling of `key` the document uses, if it uses an alias (`users.banned`).
fn key_in_doc(doc: &DocumentMut, key: &str) -> String {
    let canonical = canonical_key(key);
    for (alias, target) in KEY_ALIASES {
        if *target == canonical && get(doc, alias).is_some() && get(doc, target).is_none() {
            return alias.to_string();
        }
    }
    canonical
}

fn effective_string(config: Option<&Config>, key: &str) -> Option<String> {
    effective_value(config?, key)
        .ok()
        .flatten()
        .map(|v| display_value(&v))
}

fn change<T>(key: &str, outcome: &EditOutcome<T>) -> Change {
    Change {
        key: key.to_string(),
        before: effective_string(outcome.before.as_ref(), key),
        after: effective_string(Some(&outcome.after), key),
        written: outcome.written,
        created: outcome.created,
        path: outcome.path.clone(),
    }
}

/// Check `key` for a command that edits one value or list: it must exist, and not be inside a
/// `[[services]]` entry.
fn check_editable(key: &str) -> Result<&'static Shape, ConfigError> {
    let shape = check_key(key)?;
    if let Some(list) = in_list_of_tables(&canonical_key(key)) {
        return Err(list_of_tables_error(&list));
    }
    Ok(shape)
}

/// `orrery config set KEY VALUE`; `none`/`null` as the value unsets the key.
pub fn set_key(path: &Path, key: &str, raw: &str) -> Result<Change, ConfigError> {
    let shape = check_editable(key)?.required();
    let Some(value) = parse_value_for_key(key, raw) else {
        return unset_key(path, key);
    };
    match shape {
        Shape::Table(_) => {
            return Err(ConfigError::invalid(
                key,
                format!("a section, not a single value; set one of its keys, e.g. `orrery config set {key}.KEY VALUE`"),
            ))
        }
        Shape::List(element) if matches!(element.required(), Shape::Table(_)) => {
            return Err(list_of_tables_error(key))
        }
        Shape::List(_) => {
            return Err(ConfigError::invalid(
                key,
                format!("a list; change it with `orrery config add-item {key} VALUE` and `orrery config remove-item {key} VALUE`"),
            ))
        }
        _ => {}
    }
    let outcome = apply_edit(path, |doc| {
        let target = key_in_doc(doc, key);
        set(doc, &target, value)
    })?;
    Ok(change(key, &outcome))
}

/// `orrery config unset KEY`: back to the default.
/// A key Orrery does not know may still be unset if it is in the file: that is how a mistake
/// such as `auth.typ` is removed.
pub fn unset_key(path: &Path, key: &str) -> Result<Change, ConfigError> {
    let known = match check_editable(key) {
        Err(err @ ConfigError::UnknownKey { .. }) => Err(err),
        Err(err) => return Err(err),
        Ok(_) => Ok(()),
    };
    let outcome = apply_edit(path, |doc| {
        let target = key_in_doc(doc, key);
        if let Err(err) = known {
            if get(doc, &target).is_none() {
                return Err(err);
            }
        }
        unset(doc, &target)
    })?;
    Ok(change(key, &outcome))
}

fn check_list(key: &str) -> Result<(), ConfigError> {
    match check_editable(key)?.required() {
        Shape::List(_) => Ok(()),
        _ => Err(ConfigError::invalid(
            key,
            format!("not a list; use `orrery config set {key} VALUE`"),
        )),
    }
}

/// The lists of user names, whose items are compared (and written) normalised.
const USER_LISTS: [&str; 3] = ["users.admin", "users.allowed", "users.blocked"];

/// User names match whatever their case in the file (`Alice` is `alice`).
fn same_user(a: &Value, b: &Value) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(x), Some(y)) => x.trim().to_lowercase() == y.trim().to_lowercase(),
        _ => same_value(a, b),
    }
}

/// How list items are compared: [`same_value`] or [`same_user`].
type SameItem = fn(&Value, &Value) -> bool;

/// The typed list item, and how to compare it with the items in the file.
fn list_item(key: &str, raw: &str) -> Result<(Value, SameItem), ConfigError> {
    check_list(key)?;
    if USER_LISTS.contains(&canonical_key(key).as_str()) {
        let name = crate::username::normalize(raw).map_err(|err| {
            ConfigError::invalid(key, format!("{raw:?} is not a valid user name: {err}"))
        })?;
        return Ok((Value::from(name), same_user));
    }
    if is_list_of_tables(key) {
        return Ok((table_item(key, raw)?, same_name));
    }
    let value = parse_value_for_key(key, raw)
        .ok_or_else(|| ConfigError::invalid(key, format!("{raw:?} cannot be a list item")))?;
    Ok((value, same_value))
}

fn is_list_of_tables(key: &str) -> bool {
    matches!(load::key_shape(key).map(Shape::required), Some(Shape::List(e)) if matches!(e.required(), Shape::Table(_)))
}

/// An entry of a list of tables (`[[kernels.specs]]`, `[[services]]`), written as a TOML inline
/// table: `{name = "gpu", image = "…"}`. A bare word stands for `{name = "WORD"}` (enough for
/// remove-item). Entries are identified by their `name`.
fn table_item(key: &str, raw: &str) -> Result<Value, ConfigError> {
    let text = raw.trim();
    let value = if text.starts_with('{') {
        text.parse::<Value>().map_err(|e| {
            ConfigError::invalid(key, format!("{raw:?} is not a TOML inline table ({e}); write e.g. '{{name = \"gpu\", display_name = \"GPU\"}}'"))
        })?
    } else {
        let mut t = toml_edit::InlineTable::new();
        t.insert("name", Value::from(text));
        Value::InlineTable(t)
    };
    match &value {
        Value::InlineTable(t) if t.get("name").and_then(|n| n.as_str()).is_some_and(|n| !n.is_empty()) => Ok(value),
        _ => Err(ConfigError::invalid(key, format!("{raw:?} needs a name: each [[{key}]] entry is identified by its name, e.g. '{{name = \"gpu\", …}}'"))),
    }
}

/// Two entries of a list of tables are the same entry if their names are equal.
fn same_name(a: &Value, b: &Value) -> bool {
    let name = |v: &Value| {
        v.as_inline_table()
            .and_then(|t| t.get("name"))
            .and_then(|n| n.as_str().map(str::to_string))
    };
    name(a).is_some() && name(a) == name(b)
}

/// `orrery config add-item KEY VALUE`. Adding a value already present changes nothing. User
/// names are written lowercased.
pub fn add_item_key(path: &Path, key: &str, raw: &str) -> Result<Change, ConfigError> {
    let (value, same) = list_item(key, raw)?;
    let outcome = apply_edit(path, |doc| {
        let target = key_in_doc(doc, key);
        add_item_by(doc, &target, value, same)
    })?;
    Ok(change(key, &outcome))
}

/// `orrery config remove-item KEY VALUE`: an error if the list does not hold the value.
pub fn remove_item_key(path: &Path, key: &str, raw: &str) -> Result<Change, ConfigError> {
    let (value, same) = list_item(key, raw)?;
    let outcome = apply_edit(path, |doc| {
        let target = key_in_doc(doc, key);
        remove_item_by(doc, &target, &value, same)
    })?;
    Ok(change(key, &outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> DocumentMut {
        text.parse().unwrap()
    }

    #[test]
    fn values_parse_like_tljh_config() {
        assert!(parse_value("none").is_none());
        assert!(parse_value("null").is_none());
        assert_eq!(parse_value("42").unwrap().as_integer(), Some(42));
        assert_eq!(parse_value("-3").unwrap().as_integer(), Some(-3));
        assert_eq!(parse_value("1.5").unwrap().as_float(), Some(1.5));
        assert_eq!(parse_value("2.").unwrap().as_float(), Some(2.0));
        assert_eq!(parse_value("true").unwrap().as_bool(), Some(true));
        assert_eq!(parse_value("false").unwrap().as_bool(), Some(false));
        for s in [
            "2G",
            "firstuse",
            "1.2.3",
            "True",
            "",
            "99999999999999999999",
            ".5",
        ] {
            assert_eq!(parse_value(s).unwrap().as_str(), Some(s), "{s:?}");
        }
        // Text keys keep text.
        assert_eq!(
            parse_value_for_key("auth.dummy.password", "1234")
                .unwrap()
                .as_str(),
            Some("1234")
        );
        assert_eq!(
            parse_value_for_key("users.admin", "007").unwrap().as_str(),
            Some("007")
        );
        assert_eq!(
            parse_value_for_key("http.port", "80").unwrap().as_integer(),
            Some(80)
        );
        assert_eq!(
            parse_value_for_key("cull.timeout", "600")
                .unwrap()
                .as_integer(),
            Some(600)
        );
        assert!(parse_value_for_key("auth.dummy.password", "none").is_none());
    }

    #[test]
    fn set_keeps_comments_and_order() {
        let mut d = doc("# Top\nbase_url = \"/\"\n\n[http]\n# public\nport = 80  # keep me\naddress = \"\"\n\n[users]\nadmin = []\n");
        let old = set(&mut d, "http.port", Value::from(8080)).unwrap();
        assert_eq!(old.and_then(|i| i.as_integer()), Some(80));
        set(&mut d, "http.address", Value::from("0.0.0.0")).unwrap();
        set(&mut d, "limits.memory", Value::from("2G")).unwrap();
        set(&mut d, "auth.firstuse.create_users", Value::from(false)).unwrap();
        set(&mut d, "http.new_key", Value::from(1)).unwrap();
        assert_eq!(
            d.to_string(),
            "# Top\nbase_url = \"/\"\n\n[http]\n# public\nport = 8080  # keep me\naddress = \"0.0.0.0\"\nnew_key = 1\n\n[users]\nadmin = []\n\n[limits]\nmemory = \"2G\"\n\n[auth.firstuse]\ncreate_users = false\n"
        );
        assert_eq!(get(&d, "limits.memory").and_then(Item::as_str), Some("2G"));
        assert!(get(&d, "auth.type").is_none());
        let err = set(&mut d, "http", Value::from(1)).unwrap_err().to_string();
        assert!(err.contains("a section"), "{err}");
        let err = set(&mut d, "http.port.x", Value::from(1))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "http.port: a value, not a section, so it has no keys");
    }

    #[test]
    fn top_level_keys_go_below_the_opening_comment() {
        let mut d = doc("# My hub\n# second line\n\n# HTTP\n[http]\nport = 80\n");
        set(&mut d, "base_url", Value::from("/j/")).unwrap();
        assert_eq!(
            d.to_string(),
            "# My hub\n# second line\n\nbase_url = \"/j/\"\n\n# HTTP\n[http]\nport = 80\n"
        );
        // Without a blank line the comment belongs to the section and stays with it.
        let mut d = doc("# HTTP\n[http]\nport = 80\n");
        set(&mut d, "base_url", Value::from("/j/")).unwrap();
        assert_eq!(
            d.to_string(),
            "base_url = \"/j/\"\n# HTTP\n[http]\nport = 80\n"
        );
    }

    #[test]
    fn set_into_dotted_and_inline_tables() {
        let mut d = doc("[https]\ntls.cert = \"/a\"\n[auth]\nrate_limit = { attempts = 3 }\n");
        set(&mut d, "https.tls.key", Value::from("/b")).unwrap();
        set(&mut d, "auth.rate_limit.window", Value::from("1m")).unwrap();
        assert_eq!(
            d.to_string(),
            "[https]\ntls.cert = \"/a\"\ntls.key = \"/b\"\n[auth]\nrate_limit = { attempts = 3 , window = \"1m\" }\n"
        );
    }

    #[test]
    fn services_cannot_be_edited_generically() {
        let mut d = doc("[[services]]\nname = \"a\"\n");
        let err = set(&mut d, "services.name", Value::from("b"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[[services]]"), "{err}");
        let err = add_item(&mut d, "services", Value::from("b"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[[services]]"), "{err}");
        assert!(check_editable("services.name").is_err());
    }

    #[test]
    fn unset_removes_and_prunes() {
        let mut d = doc(
            "[http]\nport = 80\n\n[limits]\nmemory = \"2G\"\n\n# keep\n[cull]\nenabled = false\n",
        );
        assert!(unset(&mut d, "limits.memory").unwrap().is_some());
        assert!(unset(&mut d, "cull.enabled").unwrap().is_some());
        assert!(unset(&mut d, "auth.type").unwrap().is_none());
        assert!(unset(&mut d, "http.nothing").unwrap().is_none());
        assert_eq!(d.to_string(), "[http]\nport = 80\n\n# keep\n[cull]\n");
        let err = unset(&mut d, "http.port.x").unwrap_err().to_string();
        assert!(err.contains("a value, not a section"), "{err}");
    }

    #[test]
    fn list_items() {
        let mut d = doc("[users]\nadmin = [\"alice\"]  # admins\n");
        assert!(add_item(&mut d, "users.admin", Value::from("bob")).unwrap());
        assert!(!add_item(&mut d, "users.admin", Value::from("bob")).unwrap());
        assert!(add_item(&mut d, "users.allowed", Value::from("carol")).unwrap());
        assert_eq!(
            d.to_string(),
            "[users]\nadmin = [\"alice\", \"bob\"]  # admins\nallowed = [\"carol\"]\n"
        );
        remove_item(&mut d, "users.admin", &Value::from("alice")).unwrap();
        let err = remove_item(&mut d, "users.admin", &Value::from("zed"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "users.admin: does not contain \"zed\"");
        let err = remove_item(&mut d, "users.blocked", &Value::from("zed")).unwrap_err();
        assert!(err.to_string().contains("does not contain"));
        remove_item(&mut d, "users.allowed", &Value::from("carol")).unwrap();
        assert_eq!(
            d.to_string(),
            "[users]\nadmin = [\"bob\"]  # admins\nallowed = []\n"
        );
        let err = add_item(&mut d, "users", Value::from("x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a list"), "{err}");
    }

    #[test]
    fn list_items_on_their_own_lines() {
        let mut d = doc("[users]\nadmin = [\n    \"alice\",\n    \"bob\",\n]\n");
        add_item(&mut d, "users.admin", Value::from("carol")).unwrap();
        assert_eq!(
            d.to_string(),
            "[users]\nadmin = [\n    \"alice\",\n    \"bob\",\n    \"carol\",\n]\n"
        );
        remove_item(&mut d, "users.admin", &Value::from("alice")).unwrap();
        assert_eq!(
            d.to_string(),
            "[users]\nadmin = [\n    \"bob\",\n    \"carol\",\n]\n"
        );
    }

    #[test]
    fn apply_edit_validates_and_writes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.toml");

        // A new file is created with mode 0600.
        let change = set_key(&path, "auth.type", "native").unwrap();
        assert_eq!(change.before.as_deref(), Some("firstuse"));
        assert_eq!(change.after.as_deref(), Some("native"));
        assert!(change.written && change.created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "[auth]\ntype = \"native\"\n"
        );

        // An existing file keeps its mode.
        fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        set_key(&path, "limits.memory", "2G").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );

        // Invalid results leave the file byte-identical.
        let before = fs::read(&path).unwrap();
        for (key, value, want) in [
            (
                "auth.type",
                "nonsense",
                "auth.type: \"nonsense\" is not valid; choose one of: firstuse, native, dummy",
            ),
            (
                "auth.typ",
                "native",
                "unknown key \"auth.typ\"; did you mean \"auth.type\"?",
            ),
            ("http.port", "0", "http.port: 0 is not a port"),
            (
                "limits.memory",
                "lots",
                "limits.memory: invalid size \"lots\"",
            ),
            (
                "auth.firstuse.create_users",
                "yes",
                "auth.firstuse.create_users: expected a boolean, found string \"yes\"",
            ),
            (
                "users.admin",
                "alice",
                "users.admin: a list; change it with",
            ),
            ("auth", "x", "auth: a section"),
        ] {
            let err = set_key(&path, key, value).unwrap_err().to_string();
            assert!(
                err.starts_with(want),
                "set {key} {value}:\n got  {err}\n want {want}"
            );
            assert_eq!(
                fs::read(&path).unwrap(),
                before,
                "file changed by set {key} {value}"
            );
        }
        let err = add_item_key(&path, "users.admin", "Bad Name")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid user name"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);

        // No-op edits do not rewrite.
        let change = set_key(&path, "auth.type", "native").unwrap();
        assert!(!change.written);

        // Unset goes back to the default.
        let change = unset_key(&path, "auth.type").unwrap();
        assert_eq!(
            (change.before.as_deref(), change.after.as_deref()),
            (Some("native"), Some("firstuse"))
        );
        let change = set_key(&path, "limits.memory", "none").unwrap();
        assert_eq!((change.before.as_deref(), change.after), (Some("2G"), None));
        assert_eq!(fs::read_to_string(&path).unwrap(), "");

        // Lists, user names normalised in the effective value.
        let change = add_item_key(&path, "users.admin", "Alice").unwrap();
        assert_eq!(change.after.as_deref(), Some("[\"alice\"]"));
        remove_item_key(&path, "users.admin", "Alice").unwrap();
        assert!(remove_item_key(&path, "users.admin", "bob").is_err());
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn apply_edit_keeps_comments_and_reports_old_mistakes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(
            &path,
            "# my hub\n[users]\nbanned = [\"eve\"]\n\n[auth]\ntyp = \"native\"\n",
        )
        .unwrap();
        let before = fs::read(&path).unwrap();
        // The file already has an unknown key: say where.
        let err = set_key(&path, "http.port", "80").unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}:6: unknown key \"auth.typ\"; did you mean \"auth.type\"?",
                path.display()
            )
        );
        assert_eq!(fs::read(&path).unwrap(), before);
        // Removing the bad key is allowed (it is the fix); unknown keys not in the file are not.
        let err = unset_key(&path, "auth.tpe").unwrap_err().to_string();
        assert_eq!(err, "unknown key \"auth.tpe\"; did you mean \"auth.type\"?");
        let change = unset_key(&path, "auth.typ").unwrap();
        assert!(change.written);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "# my hub\n[users]\nbanned = [\"eve\"]\n"
        );
        // The alias is edited in place rather than adding a second spelling.
        add_item_key(&path, "users.blocked", "mallory").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "# my hub\n[users]\nbanned = [\"eve\", \"mallory\"]\n"
        );
    }

    #[test]
    fn concurrent_edits_are_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    add_item_key(&path, "users.allowed", &format!("user{i}"))
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let config = load::load_file(&path).unwrap();
        let mut names = config.users.allowed.clone();
        names.sort();
        assert_eq!(
            names,
            (0..8).map(|i| format!("user{i}")).collect::<Vec<_>>()
        );
    }

    #[test]
    fn follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        let link = dir.path().join("config.toml");
        fs::write(&real, "").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        set_key(&link, "http.port", "9000").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "[http]\nport = 9000\n");
    }
}
