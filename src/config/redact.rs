//! Secrets out of what `orrery config show` and `config get` print: the values of keys that
//! hold one (services' `api_token`, `auth.ldap.bind_password`, …) become `"<redacted>"`, in
//! the file as written (comments kept) and in the effective configuration alike.

use toml_edit::{DocumentMut, Item, Table, Value};

/// Keys whose values are secrets, wherever they appear.
pub const SECRET_KEYS: [&str; 3] = ["api_token", "bind_password", "client_secret"];

/// What is printed instead of a secret.
pub const REDACTED: &str = "<redacted>";

fn redact_table(table: &mut Table) {
    for (key, item) in table.iter_mut() {
        let secret = SECRET_KEYS.contains(&key.get());
        redact_item(item, secret);
    }
}

fn redact_item(item: &mut Item, secret: bool) {
    match item {
        Item::Value(v) if secret && v.as_str().is_some_and(|s| !s.is_empty()) => {
            let decor = v.decor().clone();
            *v = Value::from(REDACTED);
            *v.decor_mut() = decor;
        }
        Item::Value(Value::InlineTable(t)) => {
            for (key, v) in t.iter_mut() {
                let secret = SECRET_KEYS.contains(&key.get());
                if secret && v.as_str().is_some_and(|s| !s.is_empty()) {
                    *v = Value::from(REDACTED);
                }
            }
        }
        Item::Table(t) => redact_table(t),
        Item::ArrayOfTables(a) => a.iter_mut().for_each(redact_table),
        _ => {}
    }
}

/// `text` (TOML) with every secret's value replaced; text that does not parse is returned
/// with the lines that name a secret replaced whole.
pub fn redact(text: &str) -> String {
    match text.parse::<DocumentMut>() {
        Ok(mut doc) => {
            redact_table(doc.as_table_mut());
            doc.to_string()
        }
        Err(_) => text
            .split_inclusive('\n')
            .map(|l| {
                let key = l.split('=').next().unwrap_or("").trim();
                if SECRET_KEYS.contains(&key) {
                    let end = if l.ends_with('\n') { "\n" } else { "" };
                    format!("{key} = \"{REDACTED}\"{end}")
                } else {
                    l.to_string()
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_and_everything_else_kept() {
        let text = "# the culler\n[[services]]\nname = \"cull\"\napi_token = \"s3cret-token-0123456789\" # keep me\n\n\
                    [auth.ldap]\nbind_password = \"hunter2-directory\"\nbind_dn = \"cn=svc\"\n\
                    [x]\ny = { client_secret = \"inline-secret\" }\n";
        let out = redact(text);
        for secret in [
            "s3cret-token-0123456789",
            "hunter2-directory",
            "inline-secret",
        ] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(
            out.contains("# the culler") && out.contains("# keep me"),
            "{out}"
        );
        assert!(out.contains("bind_dn = \"cn=svc\""), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 3, "{out}");
        // Broken TOML still loses its secrets.
        let broken = redact("api_token = \"abc\"\n[[[\n");
        assert_eq!(
            broken, "api_token = \"<redacted>\"\n[[[\n",
            "lines kept as they were"
        );
        // An empty value says nothing and stays as it is.
        assert!(redact("bind_password = \"\"\n").contains("bind_password = \"\""));
    }
}
