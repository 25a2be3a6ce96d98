//! Groups: named sets of users, used in scope filters (`!group=`), roles and kernelspec access
//! lists. Membership is also indexed by user (`group_members`, written in the same
//! transaction). Each group says who manages it ([`ManagedBy`]): the API (and the CLI and admin
//! page), or the config file's `[[groups]]`, whose groups only the config changes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::migrate::member_key;
use super::{all, get, Result, StateError, Store};

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

    /// Write (or with `None` delete) the group `name` and bring the index along; returns
    /// whether a group of that name existed.
    fn replace_group(&self, name: &str, new: Option<&GroupRecord>) -> Result<bool> {
        let encoded = new.map(super::encode);
        let outcome = (&self.groups, &self.group_members).transaction(|(groups, index)| {
            let old = groups.get(name.as_bytes())?;
            let old_users: BTreeSet<String> = match &old {
                Some(raw) => {
                    super::decode::<GroupRecord>("group", raw)
                        .map_err(ConflictableTransactionError::Abort)?
                        .users
                }
                None => BTreeSet::new(),
            };
            let new_users = new.map(|g| g.users.clone()).unwrap_or_default();
            for gone in old_users.difference(&new_users) {
                index.remove(member_key(gone, name))?;
            }
            for added in new_users.difference(&old_users) {
                index.insert(member_key(added, name), &[])?;
            }
            match &encoded {
                Some(bytes) => {
                    groups.insert(name.as_bytes(), bytes.as_slice())?;
                }
                None => {
                    groups.remove(name.as_bytes())?;
                }
            }
            Ok(old.is_some())
        });
        match outcome {
            Ok(existed) => Ok(existed),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(StateError::Db(e)),
        }
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
