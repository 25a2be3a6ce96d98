//! Groups: named sets of users, used in scope filters (`!group=`), roles and kernelspec access
//! lists. Membership is also indexed by user (`group_members`, written in the same
//! transaction). Each group says who manages it ([`ManagedBy`]): the API (and the CLI and admin
//! page), or the config file's `[[groups]]`, whose groups only the config changes.

use std::collections::BTreeSet;

use super::counts::{self, Counter};
use super::indexes::{decode_tx, Tx, TxResult};
use super::migrate::member_key;
use super::rank::{Change, Ranked};
use super::{all, get, Result, Store};
use serde::{Deserialize, Serialize};

/// Who manages a group's membership and properties.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagedBy {
    /// The REST API, `orrery groups` and the admin page (groups stored before this field
    /// existed are the API's).
    #[default]
    Api,
    /// A `[[groups]]` entry of the config file, written here at startup and at every reload.
    Config,
}

impl ManagedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ManagedBy::Api => "api",
            ManagedBy::Config => "config",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub name: String,
    pub users: BTreeSet<String>,
    /// Free-form properties (JupyterHub's group `properties`).
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub managed_by: ManagedBy,
}

impl Store {
    pub fn group(&self, name: &str) -> Result<Option<GroupRecord>> {
        get(&self.groups, "group", name)
    }

    pub fn groups(&self) -> Result<Vec<GroupRecord>> {
        all(&self.groups, "group")
    }

    /// Store `group` (new or changed) and its memberships in the index, in one transaction.
    pub fn put_group(&self, group: &GroupRecord) -> Result<()> {
        self.replace_group(&group.name, Some(group)).map(|_| ())
    }

    /// Delete a group, and the shares granted to it.
    pub fn delete_group(&self, name: &str) -> Result<bool> {
        self.delete_shares_for(&super::Grantee::Group(name.to_string()))?;
        self.replace_group(name, None)
    }
}

/// Write (or with `None` delete) the group `name` inside a transaction, with its membership
/// index and the groups count; returns whether a group of that name existed.
pub(super) fn replace_group_in(tx: &Tx, name: &str, new: Option<&GroupRecord>) -> TxResult<bool> {
    let old = tx.groups.get(name.as_bytes())?;
    let old_users: BTreeSet<String> = match &old {
        Some(raw) => decode_tx::<GroupRecord>("group", raw)?.users,
        None => BTreeSet::new(),
    };
    let new_users = new.map(|g| g.users.clone()).unwrap_or_default();
    for gone in old_users.difference(&new_users) {
        tx.group_members.remove(member_key(gone, name))?;
    }
    for added in new_users.difference(&old_users) {
        tx.group_members.insert(member_key(added, name), &[])?;
    }
    match new {
        Some(g) => {
            tx.groups.insert(name.as_bytes(), super::encode(g))?;
        }
        None => {
            tx.groups.remove(name.as_bytes())?;
        }
    }
    match (old.is_some(), new.is_some()) {
        (false, true) => counts::add(tx, Counter::Groups, 1)?,
        (true, false) => counts::add(tx, Counter::Groups, -1)?,
        _ => {}
    }
    if old.is_some() != new.is_some() {
        tx.changes.borrow_mut().push(Change {
            tree: Ranked::Groups,
            key: name.as_bytes().to_vec(),
            added: new.is_some(),
        });
    }
    Ok(old.is_some())
}

impl Store {
    /// Write (or with `None` delete) the group `name` and bring the index and the count
    /// along, in one transaction; returns whether a group of that name existed.
    fn replace_group(&self, name: &str, new: Option<&GroupRecord>) -> Result<bool> {
        self.transact(|tx| replace_group_in(tx, name, new))
    }

    /// How many groups there are: the count kept beside the records, one read.
    pub fn group_count(&self) -> usize {
        counts::read(&self.meta, Counter::Groups).unwrap_or(0) as usize
    }

    /// One page of the groups in name order: the walk starts at the rank checkpoint before
    /// `offset` (`rank.rs`) and only the page's records are decoded.
    pub fn groups_page(&self, offset: usize, limit: usize) -> Result<Vec<GroupRecord>> {
        let view = self.ranks.view(&[(Ranked::Groups, &self.groups)])?;
        let (from, skip) = view.seek(Ranked::Groups, offset);
        let walk = match from {
            Some(k) => self.groups.range(k..),
            None => self.groups.iter(),
        };
        walk.values()
            .skip(skip)
            .take(limit)
            .map(|v| super::decode("group", &v?))
            .collect()
    }

    /// Names of the groups `user` belongs to, sorted (from the index: the user's groups only).
    pub fn groups_of(&self, user: &str) -> Result<Vec<String>> {
        let mut prefix = user.as_bytes().to_vec();
        prefix.push(0);
        self.group_members
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                let k = k?;
                Ok(String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::UserRecord;

    #[test]
    fn a_group_stored_before_managed_by_existed_is_the_apis() {
        let old = r#"{"name": "ta", "users": ["alice"], "properties": {}}"#;
        let g: GroupRecord = serde_json::from_str(old).unwrap();
        assert_eq!(g.managed_by, ManagedBy::Api);
        let config = GroupRecord {
            managed_by: ManagedBy::Config,
            ..g
        };
        let text = serde_json::to_string(&config).unwrap();
        assert!(text.contains(r#""managed_by":"config""#), "{text}");
    }

    #[test]
    fn deleting_a_user_keeps_their_name_in_config_managed_groups_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_user(&UserRecord::new("sam")).unwrap();
        for (name, managed_by) in [("class-a", ManagedBy::Config), ("club", ManagedBy::Api)] {
            store
                .put_group(&GroupRecord {
                    name: name.into(),
                    users: ["sam".to_string()].into(),
                    managed_by,
                    ..Default::default()
                })
                .unwrap();
        }
        store.delete_user("sam").unwrap();
        assert_eq!(store.groups_of("sam").unwrap(), vec!["class-a"]);
        assert!(store.group("club").unwrap().unwrap().users.is_empty());
    }
}
