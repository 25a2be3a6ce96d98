//! User names: normalisation and validation at the boundary.
//!
//! A name becomes part of container, volume and URL names, so only a safe subset is accepted:
//! lowercase ASCII letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most
//! 32 characters. Input is trimmed and lowercased first (JupyterHub's default normalisation).

use thiserror::Error;

/// Longest accepted name; Docker and Kubernetes names built from it must stay short.
pub const MAX_LEN: usize = 32;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UsernameError {
    #[error("user name is empty")]
    Empty,
    #[error("user name {0:?} is longer than {MAX_LEN} characters")]
    TooLong(String),
    #[error("user name {0:?} must start with a letter or digit")]
    BadStart(String),
    #[error("user name {0:?} contains {1:?}; use only a-z, 0-9, '.', '_' and '-'")]
    BadChar(String, char),
}

/// Lowercase and trim `raw`, then check it against the allowed pattern
/// `[a-z0-9][a-z0-9._-]{0,31}`.
pub fn normalize(raw: &str) -> Result<String, UsernameError> {
    let name = raw.trim().to_lowercase();
    if name.is_empty() {
        return Err(UsernameError::Empty);
    }
    if name.chars().count() > MAX_LEN {
        return Err(UsernameError::TooLong(name));
    }
    let first = name.chars().next().unwrap_or('-');
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(UsernameError::BadStart(name));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Err(UsernameError::BadChar(name, c));
    }
    Ok(name)
}

/// A group name from an identity provider (Entra ID's GUIDs, Keycloak's `/staff/tas`,
/// GitHub's `org:team`, an LDAP `cn` with spaces): a wider rule than user names, since groups
/// never name containers. At most 256 characters, none of them control characters or
/// `!,?#%"<>{}|^\` (they would be read as scope filters, URL or markup syntax), and no space
/// at either end.
pub fn check_provider_group(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().count() <= 256
        && name.trim() == name
        && !name
            .chars()
            .any(|c| c.is_control() || "!,?#%\"<>{}|^\\`".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a group name Orrery can use: at most 256 characters, without              control characters, spaces at either end, or any of !,?#%\"<>{{}}|^\\`"
        ))
    }
}

/// A group name as the API and the CLI take it: a user-name-like name (normalised, as before),
/// or else a name from an identity provider ([`check_provider_group`]), kept as it is.
pub fn group_name(raw: &str) -> Result<String, String> {
    match normalize(raw) {
        Ok(name) => Ok(name),
        Err(e) => check_provider_group(raw)
            .map(|()| raw.to_string())
            .map_err(|_| e.to_string().replace("user name", "group name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_group_names_are_wider_than_user_names_but_not_syntax() {
        for ok in [
            "Physics TAs",
            "/staff/tas",
            "org:team",
            "3f2a9c1e-0000-4000-8000-00000000000a",
        ] {
            check_provider_group(ok).unwrap();
            assert_eq!(group_name(ok).unwrap(), ok, "kept as it is");
        }
        assert_eq!(
            group_name(" Class-A ").unwrap(),
            "class-a",
            "user-like names as before"
        );
        for bad in [
            "",
            " lead",
            "trail ",
            "a!b",
            "a,b",
            "a\nb",
            "a%2F",
            "<x>",
            &"x".repeat(257),
        ] {
            assert!(check_provider_group(bad).is_err(), "{bad:?}");
        }
        assert!(group_name("a!b").unwrap_err().contains("group name"));
    }

    #[test]
    fn lowercases_and_trims() {
        assert_eq!(normalize("  Alice ").unwrap(), "alice");
    }

    #[test]
    fn rejects_unsafe_names() {
        assert_eq!(normalize(""), Err(UsernameError::Empty));
        assert!(matches!(normalize("-rf"), Err(UsernameError::BadStart(_))));
        assert!(matches!(
            normalize("a/b"),
            Err(UsernameError::BadChar(_, '/'))
        ));
        assert!(matches!(
            normalize("ali ce"),
            Err(UsernameError::BadChar(_, ' '))
        ));
        assert!(matches!(
            normalize(&"a".repeat(33)),
            Err(UsernameError::TooLong(_))
        ));
        assert_eq!(normalize(&"a".repeat(32)).unwrap().len(), 32);
        assert_eq!(normalize("j.doe_2-x").unwrap(), "j.doe_2-x");
    }
}
