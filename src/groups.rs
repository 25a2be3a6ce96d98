//! Groups as the hub manages them. A group declared in the config (`[[groups]]`) is written
//! into the store at startup and at every reload ([`sync`]), with its members and properties,
//! marked managed by the config: the API, `orrery groups` and the admin page refuse to change
//! it ([`refusal`]). A group that leaves the config goes back to the API's management with its
//! members kept. Membership questions ([`groups_of`], [`members_of`]) answer from the store and
//! the config together, so a config group counts even before it is written.

use std::collections::BTreeSet;

use crate::config::{Config, GroupConfig};
use crate::state::{GroupRecord, ManagedBy, StateError, Store};

/// What [`sync`] changed, for the log.
#[derive(Debug, Default, PartialEq)]
pub struct SyncReport {
    /// Config groups written (new, or with other members or properties).
    pub written: Vec<String>,
    /// Groups that left the config and are the API's again (members kept).
    pub released: Vec<String>,
}

/// Write the config's groups into the store (members and properties as the config says,
/// managed by the config), and hand the groups that left the config back to the API with their
/// members. An API group that the config now declares is taken over; the members the config
/// does not list are named in the log.
pub fn sync(store: &Store, groups: &[GroupConfig]) -> Result<SyncReport, StateError> {
    let mut report = SyncReport::default();
    for g in groups {
        let old = store.group(&g.name)?;
        let users: BTreeSet<String> = g.users.iter().cloned().collect();
        let new = GroupRecord {
            name: g.name.clone(),
            users,
            properties: g.properties.clone(),
            managed_by: ManagedBy::Config,
        };
        if let Some(old) = old.as_ref().filter(|o| o.managed_by != ManagedBy::Config) {
            let dropped: Vec<&String> = old.users.difference(&new.users).collect();
            tracing::warn!(
                group = %g.name,
                ?dropped,
                "the config now manages group {}; members it does not list are no longer members",
                g.name
            );
        }
        if old.as_ref() != Some(&new) {
            store.put_group(&new)?;
            report.written.push(new.name);
        }
    }
    for mut old in store.groups()? {
        if old.managed_by == ManagedBy::Config && !groups.iter().any(|g| g.name == old.name) {
            old.managed_by = ManagedBy::Api;
            store.put_group(&old)?;
            tracing::info!(
                group = %old.name,
                members = old.users.len(),
                "group {} is no longer in the config: the API manages it now, members kept",
                old.name
            );
            report.released.push(old.name);
        }
    }
    Ok(report)
}

/// Is the group `name` managed by the config: marked so in the store, or declared in the
/// config (not written yet)?
pub fn config_managed(record: Option<&GroupRecord>, config: &Config, name: &str) -> bool {
    record.is_some_and(|g| g.managed_by == ManagedBy::Config)
        || config.groups.iter().any(|g| g.name == name)
}

/// Why a change to a config-managed group is refused, and how to make it.
pub fn refusal(name: &str) -> String {
    format!(
        "group {name} is managed by the config file (its [[groups]] entry), so it cannot be \
         changed here; edit its users or properties in the file and run `orrery config reload`, \
         or replace the entry with `orrery config remove-item groups {name}` and \
         `orrery config add-item groups '{{name = \"{name}\", users = [...]}}'`"
    )
}

/// Make `wanted` (a provider's groups) exactly the groups `user` is in, but for groups the
/// config file manages (the config decides those): joins each (creating it, managed by the
/// API), leaves the others. Names the wider rule refuses are skipped with a warning.
pub fn set_member_groups(
    store: &Store,
    config: &Config,
    user: &str,
    wanted: &[String],
) -> Result<(), StateError> {
    let mut keep: BTreeSet<&str> = BTreeSet::new();
    for name in wanted {
        if let Err(why) = crate::username::check_provider_group(name) {
            tracing::warn!(user, group = %name, %why, "provider group skipped");
            continue;
        }
        keep.insert(name);
        let old = store.group(name)?;
        if config_managed(old.as_ref(), config, name) {
            continue;
        }
        let mut group = old.unwrap_or_else(|| GroupRecord {
            name: name.clone(),
            ..Default::default()
        });
        if group.users.insert(user.to_string()) {
            store.put_group(&group)?;
        }
    }
    for name in store.groups_of(user)? {
        if keep.contains(name.as_str()) {
            continue;
        }
        let Some(mut group) = store.group(&name)? else {
            continue;
        };
        if group.managed_by == ManagedBy::Config || config.groups.iter().any(|g| g.name == name) {
            continue;
        }
        if group.users.remove(user) {
            store.put_group(&group)?;
        }
    }
    Ok(())
}

/// The groups `user` belongs to, sorted: those of the store and those of the config. A store
/// error counts as none (fails closed).
pub fn groups_of(store: &Store, config: &Config, user: &str) -> Vec<String> {
    let mut out: BTreeSet<String> = store
        .groups_of(user)
        .unwrap_or_default()
        .into_iter()
        .collect();
    out.extend(
        config
            .groups
            .iter()
            .filter(|g| g.users.iter().any(|u| u == user))
            .map(|g| g.name.clone()),
    );
    out.into_iter().collect()
}

/// The members of `group`, sorted: the store's and the config's.
pub fn members_of(store: &Store, config: &Config, group: &str) -> Vec<String> {
    let mut out: BTreeSet<String> = store
        .group(group)
        .ok()
        .flatten()
        .map(|g| g.users)
        .unwrap_or_default();
    if let Some(g) = config.groups.iter().find(|g| g.name == group) {
        out.extend(g.users.iter().cloned());
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, users: &[&str]) -> GroupConfig {
        GroupConfig {
            name: name.into(),
            users: users.iter().map(|u| u.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_providers_groups_become_the_users_groups_but_config_groups_stay_the_configs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config = Config {
            groups: vec![group("staff", &["tina"])],
            ..Default::default()
        };
        sync(&store, &config.groups).unwrap();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Joins the provider's groups (created as the API's), skips a name no group may have,
        // and leaves the config's group alone even though the provider names it.
        set_member_groups(
            &store,
            &config,
            "ann",
            &names(&["Physics TAs", "students", "bad!name", "staff"]),
        )
        .unwrap();
        assert_eq!(store.groups_of("ann").unwrap(), ["Physics TAs", "students"]);
        assert_eq!(
            store.group("students").unwrap().unwrap().managed_by,
            ManagedBy::Api
        );
        assert!(!store.group("staff").unwrap().unwrap().users.contains("ann"));
        // Next login: the provider dropped one group; the config's group keeps tina.
        set_member_groups(&store, &config, "ann", &names(&["students"])).unwrap();
        assert_eq!(store.groups_of("ann").unwrap(), ["students"]);
        set_member_groups(&store, &config, "tina", &[]).unwrap();
        assert_eq!(store.groups_of("tina").unwrap(), ["staff"]);
    }

    #[test]
    fn config_groups_are_written_taken_over_and_released_with_members_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .put_group(&GroupRecord {
                name: "class-a".into(),
                users: ["old".to_string()].into(),
                ..Default::default()
            })
            .unwrap();
        let mut cfg = vec![group("class-a", &["sam", "sue"]), group("staff", &["tina"])];
        cfg[1].properties.insert("room".into(), "b12".into());
        let r = sync(&store, &cfg).unwrap();
        assert_eq!(r.written, vec!["class-a", "staff"]);
        let a = store.group("class-a").unwrap().unwrap();
        assert_eq!(a.managed_by, ManagedBy::Config);
        assert_eq!(a.users, ["sam".to_string(), "sue".to_string()].into());
        assert!(store.groups_of("old").unwrap().is_empty());
        assert_eq!(
            store.group("staff").unwrap().unwrap().properties["room"],
            "b12"
        );
        // Nothing changed: nothing written.
        assert_eq!(sync(&store, &cfg).unwrap(), SyncReport::default());
        // A member added in the config; staff leaves the config and keeps its members.
        let cfg = vec![group("class-a", &["sam", "sue", "sid"])];
        let r = sync(&store, &cfg).unwrap();
        assert_eq!(r.written, vec!["class-a"]);
        assert_eq!(r.released, vec!["staff"]);
        assert_eq!(store.groups_of("sid").unwrap(), vec!["class-a"]);
        let staff = store.group("staff").unwrap().unwrap();
        assert_eq!(staff.managed_by, ManagedBy::Api);
        assert_eq!(staff.users, ["tina".to_string()].into());
    }

    #[test]
    fn membership_answers_from_store_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .put_group(&GroupRecord {
                name: "club".into(),
                users: ["sam".to_string()].into(),
                ..Default::default()
            })
            .unwrap();
        let config = Config {
            groups: vec![group("class-a", &["sam", "sue"])],
            ..Config::default()
        };
        assert_eq!(groups_of(&store, &config, "sam"), vec!["class-a", "club"]);
        assert_eq!(groups_of(&store, &config, "bob"), Vec::<String>::new());
        assert_eq!(members_of(&store, &config, "class-a"), vec!["sam", "sue"]);
        assert_eq!(members_of(&store, &config, "club"), vec!["sam"]);
        assert!(config_managed(None, &config, "class-a"));
        assert!(!config_managed(
            store.group("club").unwrap().as_ref(),
            &config,
            "club"
        ));
        assert!(refusal("class-a").contains("orrery config reload"));
    }
}
