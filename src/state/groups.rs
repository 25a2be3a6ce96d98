//! Groups: named sets of users, used in scope filters (`!group=`) and kernelspec access lists.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{all, get, put, Result, Store};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub name: String,
    pub users: BTreeSet<String>,
    /// Free-form properties (JupyterHub's group `properties`).
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

impl Store {
    pub fn group(&self, name: &str) -> Result<Option<GroupRecord>> {
        get(&self.groups, "group", name)
    }

    pub fn groups(&self) -> Result<Vec<GroupRecord>> {
        all(&self.groups, "group")
    }

    pub fn put_group(&self, group: &GroupRecord) -> Result<()> {
        put(&self.groups, &group.name, group)
    }

    pub fn delete_group(&self, name: &str) -> Result<bool> {
        Ok(self.groups.remove(name)?.is_some())
    }

    /// Names of the groups `user` belongs to, sorted.
    pub fn groups_of(&self, user: &str) -> Result<Vec<String>> {
        Ok(self
            .groups()?
            .into_iter()
            .filter(|g| g.users.contains(user))
            .map(|g| g.name)
            .collect())
    }
}
