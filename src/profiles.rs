//! Which server profile a user gets, and with which limits: the rules behind the spawn form and
//! the API's `user_options.profile`, as pure functions of the config and the user's groups.
//!
//! * A profile is open to everyone unless it names users or groups, or a `[[groups]]` entry
//!   lists it in its `profiles`; then it is open to those users and members only.
//! * With nothing chosen, the user gets the `default = true` profile if they may choose it, else
//!   the first profile they may choose; with no `[[profiles]]` at all, the spawner's image.
//! * Limits: a profile's own `cpu`/`memory` win; else the largest value any of the user's
//!   `[[groups]]` sets; else `[limits]`.

use crate::config::{Config, Profile};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    #[error("there is no profile {name:?}; choose one of: {}", allowed.join(", "))]
    Unknown { name: String, allowed: Vec<String> },
    #[error("the profile {name:?} is not open to you; choose one of: {}", allowed.join(", "))]
    Forbidden { name: String, allowed: Vec<String> },
    #[error("no server profile is open to you; ask an administrator to add you to a profile's users or groups")]
    NoneOpen,
    #[error("user_options.profile must be a string naming a profile, not {0}")]
    NotAString(String),
}

/// May `user` (a member of `groups`) choose `profile`?
fn open_to(cfg: &Config, profile: &Profile, user: &str, groups: &[String]) -> bool {
    let listed_by: Vec<&str> = cfg
        .groups
        .iter()
        .filter(|g| g.profiles.iter().any(|p| p == &profile.name))
        .map(|g| g.name.as_str())
        .collect();
    let restricted =
        !profile.users.is_empty() || !profile.groups.is_empty() || !listed_by.is_empty();
    !restricted
        || profile.users.iter().any(|u| u == user)
        || groups
            .iter()
            .any(|g| profile.groups.contains(g) || listed_by.contains(&g.as_str()))
}

/// The profiles `user` may choose, in config order.
pub fn open_profiles<'a>(cfg: &'a Config, user: &str, groups: &[String]) -> Vec<&'a Profile> {
    cfg.profiles
        .iter()
        .filter(|p| open_to(cfg, p, user, groups))
        .collect()
}

/// The profile a start uses: the one `requested` (from `user_options.profile`) or the default.
/// `Ok(None)` when no profiles are configured.
pub fn choose<'a>(
    cfg: &'a Config,
    user: &str,
    groups: &[String],
    requested: Option<&serde_json::Value>,
) -> Result<Option<&'a Profile>, ProfileError> {
    if cfg.profiles.is_empty() {
        return Ok(None);
    }
    let open = open_profiles(cfg, user, groups);
    let names = || open.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    match requested {
        Some(serde_json::Value::String(name)) => {
            if let Some(p) = open.iter().find(|p| &p.name == name) {
                Ok(Some(p))
            } else if cfg.profiles.iter().any(|p| &p.name == name) {
                Err(ProfileError::Forbidden {
                    name: name.clone(),
                    allowed: names(),
                })
            } else {
                Err(ProfileError::Unknown {
                    name: name.clone(),
                    allowed: names(),
                })
            }
        }
        Some(serde_json::Value::Null) | None => open
            .iter()
            .find(|p| p.default)
            .or_else(|| open.first())
            .copied()
            .map(Some)
            .ok_or(ProfileError::NoneOpen),
        Some(other) => Err(ProfileError::NotAString(other.to_string())),
    }
}

/// The memory (bytes) and CPU limits of a server of `profile` for a member of `groups`.
pub fn limits(
    cfg: &Config,
    groups: &[String],
    profile: Option<&Profile>,
) -> (Option<u64>, Option<f64>) {
    let mine = || cfg.groups.iter().filter(|g| groups.contains(&g.name));
    let group_memory = mine()
        .filter_map(|g| g.limits.memory.map(|m| m.bytes()))
        .max();
    let group_cpu = mine()
        .filter_map(|g| g.limits.cpu)
        .fold(None, |acc: Option<f64>, c| {
            Some(acc.map_or(c, |a| a.max(c)))
        });
    let memory = profile
        .and_then(|p| p.memory.map(|m| m.bytes()))
        .or(group_memory)
        .or(cfg.limits.memory.map(|m| m.bytes()));
    let cpu = profile.and_then(|p| p.cpu).or(group_cpu).or(cfg.limits.cpu);
    (memory, cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GroupConfig, Limits, Size};
    use serde_json::json;

    fn cfg() -> Config {
        let mut c = Config::default();
        c.limits.memory = Some("1G".parse::<Size>().unwrap());
        c.profiles = vec![
            Profile {
                name: "small".into(),
                ..Default::default()
            },
            Profile {
                name: "big".into(),
                groups: vec!["class-a".into()],
                memory: Some("8G".parse::<Size>().unwrap()),
                default: true,
                ..Default::default()
            },
            Profile {
                name: "gpu".into(),
                ..Default::default()
            },
        ];
        c.groups = vec![
            GroupConfig {
                name: "ml".into(),
                profiles: vec!["gpu".into()],
                limits: Limits {
                    memory: Some("2G".parse::<Size>().unwrap()),
                    cpu: Some(1.0),
                },
                ..Default::default()
            },
            GroupConfig {
                name: "staff".into(),
                limits: Limits {
                    memory: Some("4G".parse::<Size>().unwrap()),
                    cpu: None,
                },
                ..Default::default()
            },
        ];
        c
    }

    fn names(v: &[&Profile]) -> Vec<String> {
        v.iter().map(|p| p.name.clone()).collect()
    }

    #[test]
    fn who_may_choose_what() {
        let c = cfg();
        assert_eq!(names(&open_profiles(&c, "ann", &[])), ["small"]);
        assert_eq!(
            names(&open_profiles(&c, "bo", &["class-a".into()])),
            ["small", "big"]
        );
        // A group's `profiles` opens a profile to its members only.
        assert_eq!(
            names(&open_profiles(&c, "cy", &["ml".into()])),
            ["small", "gpu"]
        );
        let mut c = cfg();
        c.profiles[0].users = vec!["ann".into()];
        assert_eq!(names(&open_profiles(&c, "ann", &[])), ["small"]);
        assert!(open_profiles(&c, "dee", &[]).is_empty());
    }

    #[test]
    fn choosing_names_the_allowed_ones_when_refused() {
        let c = cfg();
        let got = choose(&c, "ann", &[], Some(&json!("big"))).unwrap_err();
        assert_eq!(
            got.to_string(),
            "the profile \"big\" is not open to you; choose one of: small"
        );
        let got = choose(&c, "ann", &[], Some(&json!("huge"))).unwrap_err();
        assert!(matches!(got, ProfileError::Unknown { .. }), "{got}");
        assert!(matches!(
            choose(&c, "ann", &[], Some(&json!(3))),
            Err(ProfileError::NotAString(_))
        ));
        // The default when open, else the first open one.
        let member = ["class-a".to_string()];
        assert_eq!(
            choose(&c, "bo", &member, None).unwrap().unwrap().name,
            "big"
        );
        assert_eq!(choose(&c, "ann", &[], None).unwrap().unwrap().name, "small");
        assert_eq!(choose(&Config::default(), "ann", &[], None), Ok(None));
    }

    #[test]
    fn limits_profile_then_largest_group_then_global() {
        let c = cfg();
        let g = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let gib = 1024 * 1024 * 1024;
        assert_eq!(limits(&c, &[], None), (Some(gib), None));
        assert_eq!(limits(&c, &g(&["ml"]), None), (Some(2 * gib), Some(1.0)));
        assert_eq!(
            limits(&c, &g(&["ml", "staff"]), None),
            (Some(4 * gib), Some(1.0))
        );
        let big = &c.profiles[1];
        assert_eq!(
            limits(&c, &g(&["ml"]), Some(big)),
            (Some(8 * gib), Some(1.0))
        );
    }
}
