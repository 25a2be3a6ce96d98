//! The key tree of [`Config`], derived from the types themselves (so it never drifts from the
//! structs): which keys exist, their shapes for `orrery config`, unknown keys with the nearest
//! known one suggested.

use std::sync::OnceLock;

use super::errors::{ConfigError, Location};
use super::load::{split_path, PathSegment};
use super::Config;

/// Keys accepted as another name for a key (TLJH's spelling), as `(alias, canonical)` paths.
/// They are accepted when reading but not listed by [`known_keys`].
pub const KEY_ALIASES: &[(&str, &str)] = &[("users.banned", "users.blocked")];

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

pub(super) fn join(prefix: &str, name: &str) -> String {
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
pub(super) fn check_unknown_keys(root: &toml::Table) -> Result<(), ConfigError> {
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
// Deriving the key tree from the types
// ---------------------------------------------------------------------------------------------

/// A serde `Deserializer` that answers every request with a plausible empty value and records
/// what was asked for: structs (with their field names), sequences, options, enums (with their
/// variant names) and scalars. Running `Config::deserialize` against it yields the full key
/// tree, including `Option` fields that are `None` by default and empty lists.
pub(super) mod probe {
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
