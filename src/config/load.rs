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
//!
//! The steps live in their own files: [`super::discover`] (finding the file),
//! [`super::errors`], [`super::schema`] (the key tree, unknown keys), [`super::validate`]
//! (meaning, one function per section). This file is the pipeline from text to [`Config`] and
//! the rewording of serde's messages; it re-exports the others, so `load::X` names them all.

use std::io;
use std::path::Path;

pub use super::discover::*;
pub use super::errors::*;
pub use super::schema::*;
pub use super::validate::*;
use super::Config;

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
    read_secret_files(&mut config)?;
    validate(&config)?;
    Ok(config)
}

/// Secrets kept in files (`*_file` keys, readable by root only) read into their keys, so the
/// config file itself need hold none. Giving both the value and the file is a mistake.
fn read_secret_files(config: &mut Config) -> Result<(), ConfigError> {
    let mut pairs: Vec<(String, &mut String, &String)> = Vec::new();
    for (i, s) in config.services.iter_mut().enumerate() {
        pairs.push((
            format!("services[{i}].api_token"),
            &mut s.api_token,
            &s.api_token_file,
        ));
    }
    let ldap = &mut config.auth.ldap;
    pairs.push((
        "auth.ldap.bind_password".into(),
        &mut ldap.bind_password,
        &ldap.bind_password_file,
    ));
    let oidc = &mut config.auth.oidc;
    pairs.push((
        "auth.oidc.client_secret".into(),
        &mut oidc.client_secret,
        &oidc.client_secret_file,
    ));
    let github = &mut config.auth.github;
    pairs.push((
        "auth.github.client_secret".into(),
        &mut github.client_secret,
        &github.client_secret_file,
    ));
    for (key, value, file) in pairs {
        if file.is_empty() {
            continue;
        }
        let file_key = format!("{key}_file");
        if !value.is_empty() {
            return Err(ConfigError::invalid(
                file_key,
                format!("give {key} or {key}_file, not both (the file keeps the secret out of the config)"),
            ));
        }
        let path = Path::new(file.as_str());
        if !path.is_absolute() {
            return Err(ConfigError::invalid(
                file_key,
                format!("{file:?} must be an absolute path, e.g. \"/etc/orrery/secret\""),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid(
                file_key.clone(),
                format!("cannot read {file}: {e} (it must exist and be readable by the user orrery runs as)"),
            )
        })?;
        *value = text.trim_end_matches(['\n', '\r']).to_string();
    }
    Ok(())
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
pub(super) fn key_offset(text: &str, path: &str) -> Option<usize> {
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
pub(super) enum PathSegment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `services[0].name` → `[Key("services"), Index(0), Key("name")]`.
pub(super) fn split_path(path: &str) -> Vec<PathSegment<'_>> {
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::schema::{join, probe};
    use crate::config::{AuthType, Service, Size, DEFAULT_STATE_PATH, DEV_STATE_PATH};

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
                "firstuse", "native", "dummy", "ldap", "oidc", "github"
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
            "line 2: auth.type: \"nonsense\" is not valid; choose one of: firstuse, native, dummy, ldap, oidc, github"
        );
        assert_eq!(
            err_of("[spawner]\nbackend = \"k8s\"\n"),
            "line 2: spawner.backend: \"k8s\" is not valid; choose one of: docker, local, kubernetes"
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
                "{}:2: auth.type: expected one of: firstuse, native, dummy, ldap, oidc, github (a string), found integer 3",
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
            ("[https]\nenabled = true", "https.enabled: https.enabled is true, which needs a certificate"),
            (
                "[https]\nenabled = true\ntls.cert = \"/c.pem\"",
                "https.tls.key: a certificate needs both",
            ),
            (
                "[https]\nenabled = true\nletsencrypt.domains = [\"bad domain\"]",
                "https.letsencrypt.domains: \"bad domain\" is not a DNS name",
            ),
            (
                "[http]\ntrusted_proxies = [\"nginx\"]",
                "http.trusted_proxies: \"nginx\" is not an address or CIDR",
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
            ("[[kernels.specs]]\ngpus = 100", "kernels.specs[0].gpus: 100 is more GPUs than one kernel can use"),
            ("[[kernels.specs]]\ngpu_model = \"H200\"", "kernels.specs[0].gpus: is 0, so gpu_model"),
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
    fn secrets_come_from_files_named_by_their_file_keys() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("culler.token");
        std::fs::write(&token, "token-from-a-file-0123456789\n").unwrap();
        let service = |extra: &str| {
            format!(
                "[[services]]\nname = \"culler\"\napi_token_file = \"{}\"\n{extra}",
                token.display()
            )
        };
        let cfg = parse_str(&service("")).unwrap();
        assert_eq!(cfg.services[0].api_token, "token-from-a-file-0123456789");
        let both = parse_str(&service("api_token = \"0123456789abcdef0123\"\n")).unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
        let missing =
            parse_str("[[services]]\nname = \"c\"\napi_token_file = \"/nonexistent/t\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            missing.contains("services[0].api_token_file") && missing.contains("cannot read"),
            "{missing}"
        );
        let relative = parse_str("[auth.ldap]\nbind_password_file = \"pw.txt\"\n").unwrap_err();
        assert!(relative.to_string().contains("absolute"), "{relative}");
    }

    #[test]
    fn semantic_errors_point_at_the_line_when_written() {
        let msg = err_of("# c\n[cull]\nenabled = true\nevery = \"0s\"\n");
        assert_eq!(
            msg,
            "line 4: cull.every: must be more than 0s when cull.enabled is true, e.g. \"1m\""
        );
        // The error is on https.enabled, line 2.
        let msg = err_of("[https]\nenabled = true\n");
        assert!(msg.starts_with("line 2: https.enabled: "), "{msg}");
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
