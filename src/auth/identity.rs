//! People an identity provider vouches for (LDAP today): what Orrery name they get, whether
//! they may log in, whether they are admins, and which groups they are in — the same rules for
//! every provider.
//!
//! * **Names.** Orrery names become container and volume names, so they follow
//!   [`crate::username`]'s rule. A provider's name maps by `auth.username_map` if listed there,
//!   else by [`map_username`]: the local part of an e-mail address, lowercased, every other
//!   character replaced by `-`, at most 32 characters. The first login through the provider
//!   binds the name to the provider's account; another account mapping to the same name is
//!   refused (and logged), never merged.
//! * **Who may log in.** `users.blocked` always wins. Otherwise: `allow_all`, or listed in
//!   `users.allowed` or `users.admin`, or in an `allowed_groups` or `admin_groups` group, or —
//!   only while no `allowed_groups` are set — already a user of the hub (added by an admin).
//! * **Admins.** `users.admin`, or (when `admin_groups` are set) membership of one, checked at
//!   every login: leaving the group ends admin rights.
//! * **Groups.** With `manage_groups`, the provider's groups become the user's Orrery groups
//!   at every login ([`crate::groups::set_member_groups`]).

use super::LoginError;
use crate::config::providers::UsernameMap;
use crate::hub::Hub;
pub use crate::providers::ExternalIdentity;
use crate::state::UserRecord;
use crate::username;

/// The provider's admission rules (its config section's keys).
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub allowed_groups: &'a [String],
    pub admin_groups: &'a [String],
    pub manage_groups: bool,
    pub allow_all: bool,
}

impl<'a> Policy<'a> {
    /// The rules of the provider `auth.type` names (`[auth.ldap]`, `[auth.oidc]`,
    /// `[auth.github]`); `None` for the password authenticators.
    pub fn of(auth: &'a crate::config::Auth) -> Option<Policy<'a>> {
        use crate::config::AuthType;
        let (allowed_groups, admin_groups, manage_groups, allow_all) = match auth.kind {
            AuthType::Ldap => {
                let l = &auth.ldap;
                (
                    &l.allowed_groups,
                    &l.admin_groups,
                    l.manage_groups,
                    l.allow_all,
                )
            }
            AuthType::Oidc => {
                let o = &auth.oidc;
                (
                    &o.allowed_groups,
                    &o.admin_groups,
                    o.manage_groups,
                    o.allow_all,
                )
            }
            AuthType::Github => {
                let g = &auth.github;
                (
                    &g.allowed_organizations,
                    &g.admin_teams,
                    g.manage_groups,
                    g.allow_all,
                )
            }
            AuthType::Firstuse | AuthType::Native | AuthType::Dummy => return None,
        };
        Some(Policy {
            allowed_groups,
            admin_groups,
            manage_groups,
            allow_all,
        })
    }
}

/// The Orrery name for a provider's name: `username_map` first, else the documented rule.
pub fn map_username(external: &str, map: &UsernameMap) -> Result<String, LoginError> {
    let listed = map
        .get(external)
        .or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(external))
                .map(|(_, v)| v)
        })
        .cloned();
    let candidate = match listed {
        Some(name) => name,
        None => {
            let local = external.split('@').next().unwrap_or(external);
            let mut out: String = local
                .to_lowercase()
                .chars()
                .map(|c| {
                    if c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            out = out
                .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string();
            out.truncate(32);
            out
        }
    };
    username::normalize(&candidate).map_err(|_| {
        LoginError::NotAllowed(format!(
            "the account {external:?} has no name Orrery can use; an admin can give it one in \
             auth.username_map"
        ))
    })
}

/// The key refresh tokens are sealed with: `provider-tokens.key` in the state directory.
fn sealing_key(hub: &Hub) -> Result<[u8; 32], LoginError> {
    crate::secrets::sealing_key(&hub.store.path().join("provider-tokens.key"))
        .map_err(|e| LoginError::Internal(format!("the key for refresh tokens: {e}")))
}

fn seal(hub: &Hub, token: &str) -> Result<String, LoginError> {
    crate::secrets::seal(&sealing_key(hub)?, token).map_err(LoginError::Internal)
}

/// Before `user`'s server starts: ask the OpenID provider again who they are, through the
/// refresh token kept from their login, and apply its answer (groups, admin rights, whether
/// they may still use the hub). A token the provider refuses means they must log in again; a
/// provider that cannot be reached lets the spawn go on with what is known (and says so in the
/// log). Without a kept token (other providers, or one that gave none) nothing is asked.
pub async fn refresh_before_spawn(hub: &Hub, user: &UserRecord) -> Result<(), LoginError> {
    let cfg = hub.config();
    if cfg.auth.kind != crate::config::AuthType::Oidc {
        return Ok(());
    }
    let (Some(sealed), Some(id)) = (&user.provider_refresh, &user.identity) else {
        return Ok(());
    };
    let Some(token) = crate::secrets::open(&sealing_key(hub)?, sealed) else {
        tracing::warn!(user = %user.name, "the kept refresh token does not open with the state directory's key; not refreshed");
        return Ok(());
    };
    match hub.oidc.refresh(&cfg.auth.oidc, &token, id).await {
        Ok(who) => match Policy::of(&cfg.auth) {
            Some(policy) => admit(hub, &who, policy).await.map(drop),
            None => Ok(()),
        },
        Err(crate::providers::ProviderError::Rejected) => {
            hub.store
                .update_user(&user.name, |u| u.provider_refresh = None)?;
            tracing::info!(user = %user.name, "the provider no longer accepts the refresh token");
            Err(LoginError::NotAllowed(
                "Your login has expired at the identity provider: log out and log in again to start your server.".into(),
            ))
        }
        Err(crate::providers::ProviderError::Unavailable(why)) => {
            tracing::warn!(user = %user.name, error = %why, "could not refresh the user's groups before the spawn; going on with the last known");
            Ok(())
        }
        Err(crate::providers::ProviderError::Invalid(why)) => Err(LoginError::Unverified(why)),
    }
}

fn any_in(groups: &[String], wanted: &[String]) -> bool {
    groups.iter().any(|g| wanted.contains(g))
}

/// Admit `who`: check the rules, bind the name to the account, set admin rights and groups;
/// the user's record (created at their first login).
pub async fn admit(
    hub: &Hub,
    who: &ExternalIdentity,
    policy: Policy<'_>,
) -> Result<UserRecord, LoginError> {
    let cfg = hub.config();
    let name = map_username(&who.name, &cfg.auth.username_map)?;
    let refused = || {
        LoginError::NotAllowed(format!(
            "This hub is not open to {name}. If it should be, ask its admins to add you."
        ))
    };
    if cfg.users.blocked.contains(&name) {
        return Err(refused());
    }
    let existing = hub.store.user(&name)?;
    if let Some(bound) = existing.as_ref().and_then(|u| u.identity.as_ref()) {
        if *bound != who.id {
            tracing::warn!(user = %name, account = %who.id, bound = %bound,
                "login refused: the name belongs to another account of the provider");
            return Err(LoginError::IdentityConflict(format!(
                "The name {name} already belongs to another account. Ask an admin to give yours \
                 another name (auth.username_map)."
            )));
        }
    }
    let admin_by_group =
        !policy.admin_groups.is_empty() && any_in(&who.groups, policy.admin_groups);
    let allowed = policy.allow_all
        || cfg.users.allowed.contains(&name)
        || cfg.users.admin.contains(&name)
        || admin_by_group
        || any_in(&who.groups, policy.allowed_groups)
        || (existing.is_some() && policy.allowed_groups.is_empty());
    if !allowed {
        tracing::info!(user = %name, account = %who.id, "login refused: not allowed");
        return Err(refused());
    }
    let manages_admins = !policy.admin_groups.is_empty();
    let sealed = match &who.refresh_token {
        Some(token) => Some(seal(hub, &token.0)?),
        None => None,
    };
    let user = match existing {
        None => {
            let mut user = UserRecord::new(&name);
            user.identity = Some(who.id.clone());
            user.admin = admin_by_group;
            user.provider_refresh = sealed.clone();
            if !hub.store.create_user(&user)? {
                // Created meanwhile by a concurrent login: check against that record.
                return Box::pin(admit(hub, who, policy)).await;
            }
            user
        }
        Some(_) => hub
            .store
            .update_user(&name, |u| {
                u.identity.get_or_insert_with(|| who.id.clone());
                if manages_admins {
                    u.admin = admin_by_group;
                }
                if let Some(s) = &sealed {
                    u.provider_refresh = Some(s.clone());
                }
            })?
            .ok_or_else(refused)?,
    };
    if policy.manage_groups {
        crate::groups::set_member_groups(&hub.store, &cfg, &name, &who.groups)?;
    }
    hub.store.flush().await?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_map_by_the_table_then_by_the_rule() {
        let map: UsernameMap = [("Alice.Smith@example.org".to_string(), "asmith".to_string())]
            .into_iter()
            .collect();
        let m = |n: &str| map_username(n, &map);
        assert_eq!(m("Alice.Smith@example.org").unwrap(), "asmith");
        assert_eq!(
            m("alice.smith@EXAMPLE.org").unwrap(),
            "asmith",
            "case-insensitive"
        );
        assert_eq!(m("Bob.Jones@example.org").unwrap(), "bob.jones");
        assert_eq!(m("carol").unwrap(), "carol");
        assert_eq!(m("Dan O'Neil").unwrap(), "dan-o-neil");
        assert_eq!(m("_x_y").unwrap(), "x_y", "starts with a letter or digit");
        assert_eq!(m(&"e".repeat(40)).unwrap().len(), 32);
        assert!(matches!(m("@example.org"), Err(LoginError::NotAllowed(_))));
        assert!(matches!(m("日本"), Err(LoginError::NotAllowed(_))));
    }
}
