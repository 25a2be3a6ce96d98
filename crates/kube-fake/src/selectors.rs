//! Label selectors (`labelSelector=`: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`,
//! `k`, `!k`, `k>1`, `k<1`; a comma is AND) and field selectors (`fieldSelector=`: `=`, `==`,
//! `!=` on the fields the real server indexes for each kind), parsed with the real server's
//! rules and error wording, and matched against stored objects.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::resources::ResourceInfo;

#[derive(Debug, Clone, PartialEq)]
enum LabelOp {
    Eq(String),
    NotEq(String),
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    NotExists,
    Gt(i64),
    Lt(i64),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<(String, LabelOp)>,
}

fn is_value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

fn is_key_char(c: char) -> bool {
    is_value_char(c) || c == '/'
}

/// A label value: empty, or at most 63 of `[A-Za-z0-9_.-]`, starting and ending alphanumeric.
pub(crate) fn check_label_value(v: &str) -> Result<(), String> {
    let ok = v.is_empty()
        || (v.len() <= 63
            && v.chars().all(is_value_char)
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "values[0]: Invalid value: \"{v}\": a valid label must be an empty string or consist \
             of alphanumeric characters, '-', '_' or '.', and must start and end with an \
             alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for \
             validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        ))
    }
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name like a value (not empty).
pub(crate) fn check_label_key(k: &str) -> Result<(), String> {
    let name = k.rsplit('/').next().unwrap_or(k);
    let prefix_ok = match k.rsplit_once('/') {
        Some((p, _)) => {
            !p.is_empty()
                && p.len() <= 253
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        }
        None => true,
    };
    if !name.is_empty()
        && prefix_ok
        && check_label_value(name).is_ok()
        && k.matches('/').count() <= 1
    {
        Ok(())
    } else {
        Err(format!(
            "key: Invalid value: \"{k}\": name part must consist of alphanumeric characters, \
             '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
             'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
             '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        ))
    }
}

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Comma,
    Open,
    Close,
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    End,
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::Comma => ",".into(),
            Tok::Open => "(".into(),
            Tok::Close => ")".into(),
            Tok::Not => "!".into(),
            Tok::Eq => "=".into(),
            Tok::DoubleEq => "==".into(),
            Tok::NotEq => "!=".into(),
            Tok::Gt => ">".into(),
            Tok::Lt => "<".into(),
            Tok::End => "EOS".into(),
        }
    }
}

impl Lexer<'_> {
    fn next(&mut self) -> Tok {
        let rest = &self.s[self.pos..];
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
        let mut chars = trimmed.chars();
        let Some(c) = chars.next() else {
            return Tok::End;
        };
        let two = trimmed.get(..2).unwrap_or("");
        let (tok, len) = match (c, two) {
            (_, "==") => (Tok::DoubleEq, 2),
            (_, "!=") => (Tok::NotEq, 2),
            ('=', _) => (Tok::Eq, 1),
            ('!', _) => (Tok::Not, 1),
            (',', _) => (Tok::Comma, 1),
            ('(', _) => (Tok::Open, 1),
            (')', _) => (Tok::Close, 1),
            ('>', _) => (Tok::Gt, 1),
            ('<', _) => (Tok::Lt, 1),
            _ => {
                let len = trimmed
                    .find(|c: char| !(is_key_char(c)))
                    .unwrap_or(trimmed.len());
                if len == 0 {
                    // A character no token starts with: an identifier of it, rejected later.
                    (Tok::Ident(c.to_string()), c.len_utf8())
                } else {
                    (Tok::Ident(trimmed[..len].to_string()), len)
                }
            }
        };
        self.pos += len;
        tok
    }

    fn peek(&mut self) -> Tok {
        let save = self.pos;
        let t = self.next();
        self.pos = save;
        t
    }
}

fn unexpected(found: &Tok, expected: &str) -> String {
    format!(
        "unable to parse requirement: found '{}', expected: {expected}",
        found.text()
    )
}

/// Parse a `labelSelector=` string (the real server's syntax and messages).
pub fn parse_label_selector(s: &str) -> Result<LabelSelector, String> {
    let mut lx = Lexer { s, pos: 0 };
    let mut requirements = Vec::new();
    if lx.peek() == Tok::End {
        return Ok(LabelSelector::default());
    }
    loop {
        let (key, op) = parse_requirement(&mut lx)?;
        check_label_key(&key).map_err(|e| format!("unable to parse requirement: {e}"))?;
        requirements.push((key, op));
        match lx.next() {
            Tok::End => break,
            Tok::Comma => {
                if lx.peek() == Tok::End {
                    return Err("found ',', expected: !, identifier, or 'end of string'".into());
                }
            }
            t => return Err(unexpected(&t, "',' or 'end of string'")),
        }
    }
    Ok(LabelSelector { requirements })
}

fn parse_requirement(lx: &mut Lexer) -> Result<(String, LabelOp), String> {
    let first = lx.next();
    if first == Tok::Not {
        return match lx.next() {
            Tok::Ident(k) => Ok((k, LabelOp::NotExists)),
            t => Err(unexpected(&t, "identifier after '!'")),
        };
    }
    let Tok::Ident(key) = first else {
        return Err(unexpected(&first, "!, identifier, or 'end of string'"));
    };
    let op = lx.peek();
    match op {
        Tok::End | Tok::Comma => return Ok((key, LabelOp::Exists)),
        _ => {
            lx.next();
        }
    }
    let single = |lx: &mut Lexer| -> Result<String, String> {
        match lx.peek() {
            Tok::Ident(v) => {
                lx.next();
                check_label_value(&v).map_err(|e| format!("unable to parse requirement: {e}"))?;
                Ok(v)
            }
            Tok::End | Tok::Comma => Ok(String::new()),
            t => Err(unexpected(&t, "identifier")),
        }
    };
    let int = |lx: &mut Lexer| -> Result<i64, String> {
        match lx.next() {
            Tok::Ident(v) => v.parse::<i64>().map_err(|_| {
                format!(
                    "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an \
                     integer: \"{v}\""
                )
            }),
            t => Err(unexpected(&t, "identifier")),
        }
    };
    let op = match op {
        Tok::Eq | Tok::DoubleEq => LabelOp::Eq(single(lx)?),
        Tok::NotEq => LabelOp::NotEq(single(lx)?),
        Tok::Gt => LabelOp::Gt(int(lx)?),
        Tok::Lt => LabelOp::Lt(int(lx)?),
        Tok::Ident(ref w) if w == "in" || w == "notin" => {
            let set = parse_set(lx)?;
            if w == "in" {
                LabelOp::In(set)
            } else {
                LabelOp::NotIn(set)
            }
        }
        t => return Err(unexpected(&t, "'=', '!=', '==', 'in', notin'")),
    };
    Ok((key, op))
}

fn parse_set(lx: &mut Lexer) -> Result<BTreeSet<String>, String> {
    let t = lx.next();
    if t != Tok::Open {
        return Err(unexpected(&t, "'('"));
    }
    let mut set = BTreeSet::new();
    loop {
        match lx.next() {
            Tok::Ident(v) => {
                check_label_value(&v).map_err(|e| format!("unable to parse requirement: {e}"))?;
                set.insert(v);
                match lx.next() {
                    Tok::Comma => {}
                    Tok::Close => break,
                    t => return Err(unexpected(&t, "',' or ')'")),
                }
            }
            Tok::Close if set.is_empty() => {
                set.insert(String::new());
                break;
            }
            Tok::Comma => {
                set.insert(String::new());
            }
            t => return Err(unexpected(&t, "',', ')' or identifier")),
        }
    }
    Ok(set)
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Does an object with `labels` (its `metadata.labels`, maybe absent) match?
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.requirements.iter().all(|(k, op)| match op {
            LabelOp::Eq(v) => get(k) == Some(v.as_str()),
            LabelOp::NotEq(v) => get(k) != Some(v.as_str()),
            LabelOp::In(set) => get(k).is_some_and(|v| set.contains(v)),
            LabelOp::NotIn(set) => get(k).is_none_or(|v| !set.contains(v)),
            LabelOp::Exists => get(k).is_some(),
            LabelOp::NotExists => get(k).is_none(),
            LabelOp::Gt(n) => get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            LabelOp::Lt(n) => get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        })
    }

    /// Does `obj` (a stored object) match?
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.is_empty() || self.matches(obj.pointer("/metadata/labels"))
    }
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    /// (field, equal?, value)
    terms: Vec<(String, bool, String)>,
}

/// The fields the real server lets `kind` be selected by, besides `metadata.name` and
/// `metadata.namespace`.
fn supported_fields(res: &ResourceInfo) -> &'static [&'static str] {
    match res.plural {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "secrets" => &["type"],
        "namespaces" => &["status.phase"],
        "nodes" => &["spec.unschedulable"],
        "persistentvolumeclaims" => &[],
        _ => &[],
    }
}

/// Split `s` at unescaped `sep`, unescaping `\x` to `x`.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(last)) = (chars.next(), out.last_mut()) {
                    last.push('\\');
                    last.push(n);
                }
            }
            c if c == sep => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parse a `fieldSelector=` string for `res` (unknown fields are refused as the real server
/// does: `field label not supported: x`).
pub fn parse_field_selector(s: &str, res: &ResourceInfo) -> Result<FieldSelector, String> {
    let mut terms = Vec::new();
    if s.trim().is_empty() {
        return Ok(FieldSelector::default());
    }
    for part in split_unescaped(s, ',') {
        let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
            (f, false, v)
        } else if let Some((f, v)) = part.split_once("==") {
            (f, true, v)
        } else if let Some((f, v)) = part.split_once('=') {
            (f, true, v)
        } else {
            return Err(format!(
                "invalid selector: '{s}'; can't understand '{part}'"
            ));
        };
        let field = field.trim();
        if field != "metadata.name"
            && field != "metadata.namespace"
            && !supported_fields(res).contains(&field)
        {
            return Err(format!("field label not supported: {field}"));
        }
        terms.push((field.to_string(), eq, unescape(value)));
    }
    Ok(FieldSelector { terms })
}

/// The value of `field` of `obj` as the real server's field index renders it.
fn field_value(obj: &Value, field: &str) -> String {
    let path = match field {
        "source" => "/source/component".to_string(),
        "status.podIPs" => "/status/podIP".to_string(),
        f => format!("/{}", f.replace('.', "/")),
    };
    match obj.pointer(&path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Null) | None => match field {
            "spec.hostNetwork" | "spec.unschedulable" => "false".into(),
            _ => String::new(),
        },
        Some(v) => v.to_string(),
    }
}

impl FieldSelector {
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms
            .iter()
            .all(|(f, eq, v)| (field_value(obj, f) == *v) == *eq)
    }
}

/// A label and a field selector together: what a list or a watch asks for.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selector {
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(s: &str) -> LabelSelector {
        parse_label_selector(s).unwrap()
    }

    #[test]
    fn label_operators() {
        let l = json!({"app": "x", "tier": "web", "n": "5"});
        let m = |s: &str| sel(s).matches(Some(&l));
        assert!(m("app=x"));
        assert!(m("app==x"));
        assert!(!m("app!=x"));
        assert!(m("tier!=db"));
        assert!(m("missing!=db"));
        assert!(m("tier in (web,db)"));
        assert!(!m("tier in (db)"));
        assert!(m("tier notin (db, cache)"));
        assert!(m("missing notin (db)"));
        assert!(m("app"));
        assert!(!m("!app"));
        assert!(m("!missing"));
        assert!(m("app=x,tier!=db,!missing"));
        assert!(!m("app=x,tier=db"));
        assert!(m("n>4"));
        assert!(!m("n<4"));
        assert!(m(""));
        assert!(m("app in (x),tier"));
    }

    #[test]
    fn label_syntax_errors() {
        for bad in [
            "app=x,",
            "app in x",
            "app in (x",
            "a b",
            "=x",
            "app=x y",
            "a=$",
            "n>x",
        ] {
            assert!(parse_label_selector(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let f = |s: &str| parse_field_selector(s, &crate::resources::PODS).unwrap();
        assert!(f("metadata.name=p").matches(&pod));
        assert!(f("status.phase==Running,spec.nodeName=n1").matches(&pod));
        assert!(!f("status.phase!=Running").matches(&pod));
        assert!(f("spec.nodeName!=").matches(&pod));
        assert!(parse_field_selector("spec.foo=x", &crate::resources::PODS).is_err());
        assert!(parse_field_selector("reason=x", &crate::resources::EVENTS).is_ok());
        assert!(parse_field_selector("reason=x", &crate::resources::PODS).is_err());
    }
}
