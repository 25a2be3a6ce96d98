//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and strategic merge
//! patch, which this fake treats as a merge patch: lists are replaced whole, not merged by
//! their patch merge key, and the `$patch`, `$retainKeys`, `$setElementOrder/...` and
//! `$deleteFromPrimitiveList/...` directives are dropped. Server-side apply
//! (`application/apply-patch+yaml`) is refused with 415.

use serde_json::{Map, Value};

use crate::status::ApiError;

/// The patch types of the `Content-Type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Strategic,
    Json,
}

impl PatchType {
    /// The patch type of a request's `Content-Type`.
    pub fn from_content_type(ct: &str) -> Result<PatchType, ApiError> {
        let media = ct.split(';').next().unwrap_or("").trim();
        match media {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Err(ApiError::unsupported_media_type(
                    media,
                    "server-side apply is not supported by kube-fake; use a merge patch or \
                     client-side kubectl apply",
                ))
            }
            other => Err(ApiError::unsupported_media_type(other, "not a patch type")),
        }
    }
}

/// Apply `patch` of `kind` to `target`.
pub fn apply(kind: PatchType, target: &Value, patch: &Value) -> Result<Value, ApiError> {
    match kind {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut out = target.clone();
            merge(&mut out, patch);
            Ok(out)
        }
        PatchType::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            let mut out = target.clone();
            merge(&mut out, &strip_directives(patch));
            Ok(out)
        }
        PatchType::Json => json_patch(target, patch),
    }
}

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The patch without strategic merge directives (keys starting with `$`).
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(422, "Invalid", msg)
}

/// The reference tokens of a JSON pointer (RFC 6901).
fn tokens(path: &str) -> Result<Vec<String>, ApiError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(invalid(format!(
            "JSON pointer must start with '/': {path:?}"
        )));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn index(tok: &str, len: usize, allow_end: bool) -> Result<usize, ApiError> {
    if allow_end && tok == "-" {
        return Ok(len);
    }
    let i: usize = tok
        .parse()
        .map_err(|_| invalid(format!("invalid array index {tok:?}")))?;
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i > max || (!allow_end && len == 0) {
        return Err(invalid(format!("array index {i} out of bounds")));
    }
    Ok(i)
}

/// The parent container of the pointed-to location and the last token.
fn parent<'a>(doc: &'a mut Value, toks: &[String]) -> Result<(&'a mut Value, String), ApiError> {
    let Some((last, init)) = toks.split_last() else {
        return Err(invalid("the root cannot be the target of this operation"));
    };
    let mut cur = doc;
    for t in init {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| invalid(format!("doc is missing path: {t:?}")))?,
            Value::Array(a) => {
                let i = index(t, a.len(), false)?;
                &mut a[i]
            }
            _ => return Err(invalid(format!("doc is missing path: {t:?}"))),
        };
    }
    Ok((cur, last.clone()))
}

fn get<'a>(doc: &'a Value, path: &str) -> Result<&'a Value, ApiError> {
    let mut cur = doc;
    for t in tokens(path)? {
        cur = match cur {
            Value::Object(m) => m
                .get(&t)
                .ok_or_else(|| invalid(format!("doc is missing key: {path}")))?,
            Value::Array(a) => {
                let i = index(&t, a.len(), false)?;
                &a[i]
            }
            _ => return Err(invalid(format!("doc is missing key: {path}"))),
        };
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), ApiError> {
    let toks = tokens(path)?;
    if toks.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (p, last) = parent(doc, &toks)?;
    match p {
        Value::Object(m) => {
            m.insert(last, value);
        }
        Value::Array(a) => {
            let i = index(&last, a.len(), true)?;
            a.insert(i, value);
        }
        _ => {
            return Err(invalid(format!(
                "add operation does not apply: doc is missing path: {path}"
            )))
        }
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, ApiError> {
    let toks = tokens(path)?;
    let (p, last) = parent(doc, &toks)?;
    match p {
        Value::Object(m) => m.remove(&last).ok_or_else(|| {
            invalid(format!(
                "remove operation does not apply: doc is missing path: \"{path}\": missing value"
            ))
        }),
        Value::Array(a) => {
            let i = index(&last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(invalid(format!(
            "remove operation does not apply: doc is missing path: \"{path}\""
        ))),
    }
}

/// RFC 6902: add, remove, replace, move, copy, test.
fn json_patch(target: &Value, patch: &Value) -> Result<Value, ApiError> {
    let Value::Array(ops) = patch else {
        return Err(ApiError::bad_request(
            "a JSON patch must be an array of operations",
        ));
    };
    let mut doc = target.clone();
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("operation {op} has no path")))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| invalid(format!("operation {op} has no value")))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("operation {op} has no from")))
        };
        match name {
            "add" => add(&mut doc, path, value()?)?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                get(&doc, path).map_err(|_| {
                    invalid(format!(
                        "replace operation does not apply: doc is missing key: {path}: missing value"
                    ))
                })?;
                if tokens(path)?.is_empty() {
                    doc = value()?;
                } else {
                    remove(&mut doc, path)?;
                    add(&mut doc, path, value()?)?;
                }
            }
            "move" => {
                let v = remove(&mut doc, from()?)?;
                add(&mut doc, path, v)?;
            }
            "copy" => {
                let v = get(&doc, from()?)?.clone();
                add(&mut doc, path, v)?;
            }
            "test" => {
                let want = value()?;
                if *get(&doc, path)? != want {
                    return Err(invalid(format!("testing value {path} failed: test failed")));
                }
            }
            other => return Err(invalid(format!("Unexpected kind: {other}"))),
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        let p = json!({"a": "z", "c": {"f": null}, "l": [3]});
        let out = apply(PatchType::Merge, &t, &p).unwrap();
        assert_eq!(out, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn strategic_drops_directives() {
        let t = json!({"spec": {"containers": [{"name": "a"}]}});
        let p = json!({"$setElementOrder/containers": [{"name": "a"}], "spec": {"x": 1, "$retainKeys": ["x"]}});
        let out = apply(PatchType::Strategic, &t, &p).unwrap();
        assert_eq!(
            out,
            json!({"spec": {"containers": [{"name": "a"}], "x": 1}})
        );
    }

    #[test]
    fn json_patch_rfc6902() {
        let t = json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["x", "y"]}});
        let p = json!([
            {"op": "test", "path": "/metadata/labels/a", "value": "1"},
            {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
            {"op": "replace", "path": "/metadata/labels/a", "value": "3"},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "z"},
            {"op": "copy", "from": "/metadata/labels/a", "path": "/metadata/labels/d"},
            {"op": "move", "from": "/metadata/labels/d", "path": "/metadata/labels/e"},
        ]);
        let out = apply(PatchType::Json, &t, &p).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"a": "3", "b/c": "2", "e": "3"}, "finalizers": ["y", "z"]}})
        );
        let bad = json!([{"op": "test", "path": "/metadata/labels/a", "value": "9"}]);
        assert_eq!(apply(PatchType::Json, &t, &bad).unwrap_err().code, 422);
        let missing = json!([{"op": "remove", "path": "/metadata/labels/zz"}]);
        assert_eq!(apply(PatchType::Json, &t, &missing).unwrap_err().code, 422);
    }

    #[test]
    fn apply_patch_is_refused() {
        let e = PatchType::from_content_type("application/apply-patch+yaml").unwrap_err();
        assert_eq!(e.code, 415);
    }
}
