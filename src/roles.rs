//! The config's `[[roles]]` (JupyterHub's `load_roles`): which roles name a user (directly or
//! through one of their groups) or a service, and the scopes those roles add to what they hold
//! already. Pure functions of the config: the hub asks them at every request, so a role changed
//! and applied with `orrery config reload` counts from the next request on.

use crate::config::RoleConfig;
use crate::scopes::ScopeSet;

/// Does `role` name the user `user`, who belongs to `groups`?
fn names_user(role: &RoleConfig, user: &str, groups: &[String]) -> bool {
    role.users.iter().any(|u| u == user) || role.groups.iter().any(|g| groups.contains(g))
}

/// The roles naming `user` (or one of `groups`, the user's groups), in config order.
pub fn of_user<'a>(roles: &'a [RoleConfig], user: &str, groups: &[String]) -> Vec<&'a str> {
    roles
        .iter()
        .filter(|r| names_user(r, user, groups))
        .map(|r| r.name.as_str())
        .collect()
}

/// The roles naming the service `service`, in config order.
pub fn of_service<'a>(roles: &'a [RoleConfig], service: &str) -> Vec<&'a str> {
    roles
        .iter()
        .filter(|r| r.services.iter().any(|s| s == service))
        .map(|r| r.name.as_str())
        .collect()
}

/// The roles naming the group `group`, in config order (the group model's `roles`).
pub fn of_group<'a>(roles: &'a [RoleConfig], group: &str) -> Vec<&'a str> {
    roles
        .iter()
        .filter(|r| r.groups.iter().any(|g| g == group))
        .map(|r| r.name.as_str())
        .collect()
}

/// The scopes `user` (a member of `groups`) gains from the roles naming them. A bare `!user`
/// filter in a role means the user themselves, as in JupyterHub. Scopes were checked when the
/// config was read; one Orrery does not implement grants nothing.
pub fn user_grants(roles: &[RoleConfig], user: &str, groups: &[String]) -> ScopeSet {
    let mut set = ScopeSet::default();
    for role in roles.iter().filter(|r| names_user(r, user, groups)) {
        set.merge(&ScopeSet::granted(&role.scopes, Some(user)));
    }
    set
}

/// The scopes the service `service` gains from the roles naming it.
pub fn service_grants(roles: &[RoleConfig], service: &str) -> ScopeSet {
    let mut set = ScopeSet::default();
    for role in roles
        .iter()
        .filter(|r| r.services.iter().any(|s| s == service))
    {
        set.merge(&ScopeSet::granted(&role.scopes, None));
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scopes::Target;

    fn role(name: &str, scopes: &[&str], users: &[&str], groups: &[&str]) -> RoleConfig {
        RoleConfig {
            name: name.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn ta_roles() -> Vec<RoleConfig> {
        vec![
            role(
                "class-a-ta",
                &[
                    "access:servers!group=class-a",
                    "read:users!group=class-a",
                    "admin:servers!group=class-a",
                ],
                &["tina"],
                &[],
            ),
            role("monitors", &["read:metrics"], &[], &["staff"]),
            RoleConfig {
                services: vec!["grader".into()],
                ..role("grading", &["read:users", "list:users"], &[], &[])
            },
        ]
    }

    #[test]
    fn a_user_named_by_a_role_gains_its_scopes_on_top_of_their_own() {
        let roles = ta_roles();
        let mut tina = ScopeSet::user_role("tina");
        tina.merge(&user_grants(&roles, "tina", &[]));
        let student = vec!["class-a".to_string()];
        assert!(tina.allows("access:servers", &Target::user("sam", &student)));
        assert!(tina.allows("servers", &Target::user("sam", &student)));
        assert!(tina.allows("read:users:name", &Target::user("sam", &student)));
        assert!(!tina.allows("access:servers", &Target::user("bob", &[])));
        assert!(!tina.allows("read:users", &Target::user("bob", &[])));
        assert!(!tina.has_any("admin:users"));
        // Her own scopes are kept.
        assert!(tina.allows("tokens", &Target::user("tina", &[])));
        assert_eq!(of_user(&roles, "tina", &[]), vec!["class-a-ta"]);
        // Someone else gains nothing.
        assert!(user_grants(&roles, "sam", &student).is_empty());
        assert!(of_user(&roles, "sam", &student).is_empty());
    }

    #[test]
    fn a_role_naming_a_group_reaches_its_members() {
        let roles = ta_roles();
        let staff = vec!["staff".to_string()];
        assert!(user_grants(&roles, "paula", &staff).has_unfiltered("read:metrics"));
        assert!(user_grants(&roles, "paula", &[]).is_empty());
        assert_eq!(of_user(&roles, "paula", &staff), vec!["monitors"]);
        assert_eq!(of_group(&roles, "staff"), vec!["monitors"]);
        assert!(of_group(&roles, "class-a").is_empty());
    }

    #[test]
    fn roles_add_up_and_a_bare_user_filter_is_the_user() {
        let roles = vec![
            role("a", &["read:users!user"], &["tina"], &[]),
            role("b", &["read:users!user=zed"], &[], &["ta"]),
        ];
        let got = user_grants(&roles, "tina", &["ta".to_string()]);
        assert!(got.allows("read:users", &Target::user("tina", &[])));
        assert!(got.allows("read:users", &Target::user("zed", &[])));
        assert!(!got.allows("read:users", &Target::user("bob", &[])));
        assert_eq!(of_user(&roles, "tina", &["ta".to_string()]), vec!["a", "b"]);
    }

    #[test]
    fn services_gain_the_scopes_of_roles_naming_them() {
        let roles = ta_roles();
        let got = service_grants(&roles, "grader");
        assert!(got.has_unfiltered("list:users"));
        assert!(got.has_unfiltered("read:users:name"));
        assert!(service_grants(&roles, "other").is_empty());
        assert_eq!(of_service(&roles, "grader"), vec!["grading"]);
    }

    #[test]
    fn an_unimplemented_scope_in_a_role_costs_nothing_else() {
        let roles = vec![role("r", &["start:servers", "read:hub"], &["tina"], &[])];
        let got = user_grants(&roles, "tina", &[]);
        assert!(got.has_unfiltered("read:hub"));
        assert!(!got.has_any("start:servers"));
    }
}
