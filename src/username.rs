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

#[cfg(test)]
mod tests {
    use super::*;

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
