//! Schema migrations: what changed at each schema version, and the step that brings a state
//! directory written by an older Orrery forward. [`super::Store::open`] runs them in order and
//! keeps the database as it was (`sled.schema-v<N>.backup`) beside the migrated one.
//!
//! | version | change |
//! | --- | --- |
//! | 1 | the first layout |
//! | 2 | `group_members`: a reverse index of group membership (`user NUL group`) |
//!
//! Each step is idempotent, and the version is written only after its step is durable: a
//! migration cut short (a crash, a full disk) runs again at the next start.

use super::{Result, StateError, SCHEMA_VERSION};

/// The tree of the membership index added by version 2.
pub(super) const GROUP_MEMBERS: &str = "group_members";

/// Bring `db` from schema `from` to [`SCHEMA_VERSION`].
pub(super) fn forward(db: &sled::Db, meta: &sled::Tree, from: u32) -> Result<()> {
    for version in from..SCHEMA_VERSION {
        match version {
            1 => v1_to_v2(db)?,
            other => {
                return Err(StateError::Corrupt {
                    path: std::path::PathBuf::new(),
                    detail: format!("no migration from schema version {other}"),
                })
            }
        }
        meta.insert("schema_version", (version + 1).to_string().as_bytes())?;
        db.flush()?;
    }
    Ok(())
}

/// The key of one membership in the index.
pub(super) fn member_key(user: &str, group: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(user.len() + group.len() + 1);
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key.extend_from_slice(group.as_bytes());
    key
}

/// Version 2: index every group's members by user.
fn v1_to_v2(db: &sled::Db) -> Result<()> {
    let groups = db.open_tree("groups")?;
    let index = db.open_tree(GROUP_MEMBERS)?;
    for raw in groups.iter().values() {
        let group: super::GroupRecord = super::decode("group", &raw?)?;
        for user in &group.users {
            index.insert(member_key(user, &group.name), &[])?;
        }
    }
    index.flush()?;
    Ok(())
}
