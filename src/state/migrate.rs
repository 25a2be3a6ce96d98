//! Schema migrations: what changed at each schema version, and the step that brings a state
//! directory written by an older Orrery forward. [`super::Store::open`] runs them in order and
//! keeps the database as it was (`sled.schema-v<N>.backup`) beside the migrated one.
//!
//! | version | change |
//! | --- | --- |
//! | 1 | the first layout |
//! | 2 | `group_members`: a reverse index of group membership (`user NUL group`) |
//! | 3 | the list indexes (`indexes.rs`: users by last activity, with an active or ready server, tokens by owner, sessions and OAuth clients by user) and the counts (`counts.rs`) |
//!
//! Each step is idempotent, and the version is written only after its step is durable: a
//! migration cut short (a crash, a full disk) runs again at the next start.

use std::collections::BTreeMap;

use super::counts::{self, Counter};
use super::indexes::{self, activity_key, pair_key, ServerCounts};
use super::tokens::owner_key;
use super::{Result, StateError, SCHEMA_VERSION};

/// The tree of the membership index added by version 2.
pub(super) const GROUP_MEMBERS: &str = "group_members";

/// Bring `db` from schema `from` to [`SCHEMA_VERSION`].
pub(super) fn forward(db: &sled::Db, meta: &sled::Tree, from: u32) -> Result<()> {
    for version in from..SCHEMA_VERSION {
        match version {
            1 => v1_to_v2(db)?,
            2 => v2_to_v3(db)?,
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

/// Version 3: build the list indexes and the counts from the records. Each index is emptied
/// first, so a migration cut short and run again builds the same thing.
fn v2_to_v3(db: &sled::Db) -> Result<()> {
    let tree = |name: &str| db.open_tree(name);
    for name in indexes::ALL {
        tree(name)?.clear()?;
    }
    let mut servers: BTreeMap<String, ServerCounts> = BTreeMap::new();
    for raw in tree("servers")?.iter().values() {
        let s: super::ServerRecord = super::decode("server", &raw?)?;
        let c = servers.entry(s.user.clone()).or_default();
        c.servers += 1;
        if s.is_ready() {
            c.ready += 1;
        }
    }
    let server_counts = tree(indexes::SERVER_COUNTS)?;
    for (name, c) in &servers {
        server_counts.insert(name.as_bytes(), c.to_bytes().as_slice())?;
    }
    let (by_activity, active, ready) = (
        tree(indexes::USERS_BY_ACTIVITY)?,
        tree(indexes::USERS_ACTIVE)?,
        tree(indexes::USERS_READY)?,
    );
    let (active_by_activity, ready_by_activity) = (
        tree(indexes::ACTIVE_BY_ACTIVITY)?,
        tree(indexes::READY_BY_ACTIVITY)?,
    );
    let (mut n_users, mut n_active, mut n_ready) = (0u64, 0u64, 0u64);
    for raw in tree("users")?.iter().values() {
        let u: super::UserRecord = super::decode("user", &raw?)?;
        let key = activity_key(u.last_activity, &u.name);
        by_activity.insert(key.as_slice(), &[])?;
        n_users += 1;
        let c = servers.get(&u.name).copied().unwrap_or_default();
        if c.servers > 0 {
            active.insert(u.name.as_bytes(), &[])?;
            active_by_activity.insert(key.as_slice(), &[])?;
            n_active += 1;
        }
        if c.ready > 0 {
            ready.insert(u.name.as_bytes(), &[])?;
            ready_by_activity.insert(key.as_slice(), &[])?;
            n_ready += 1;
        }
    }
    let by_owner = tree(indexes::TOKENS_BY_OWNER)?;
    for raw in tree("tokens")?.iter().values() {
        let t: super::TokenRecord = super::decode("token", &raw?)?;
        by_owner.insert(pair_key(&owner_key(&t.owner), &t.hash), &[])?;
    }
    let sessions = tree(indexes::SESSIONS_BY_USER)?;
    for raw in tree("sessions")?.iter().values() {
        let s: super::SessionRecord = super::decode("session", &raw?)?;
        sessions.insert(pair_key(&s.user, &s.hash), &[])?;
    }
    let clients = tree(indexes::CLIENTS_BY_USER)?;
    for raw in tree("oauth_clients")?.iter().values() {
        let c: super::OAuthClientRecord = super::decode("oauth client", &raw?)?;
        if let Some(user) = &c.user {
            clients.insert(pair_key(user, &c.id), &[])?;
        }
    }
    let meta = tree("meta")?;
    counts::set(&meta, Counter::Users, n_users)?;
    counts::set(&meta, Counter::Groups, tree("groups")?.len() as u64)?;
    counts::set(&meta, Counter::ActiveUsers, n_active)?;
    counts::set(&meta, Counter::ReadyUsers, n_ready)?;
    db.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::pages::tests::full_scan;
    use crate::state::{
        GroupRecord, OAuthClientRecord, ServerRecord, SessionRecord, Store, TokenKind, TokenOwner,
        TokenRecord, UserOrder, UserQuery, UserRecord, UserState,
    };

    fn server(user: &str, name: &str, ready: bool) -> ServerRecord {
        ServerRecord {
            user: user.into(),
            name: name.into(),
            url: None,
            started: None,
            last_activity: None,
            pending: None,
            ready,
            user_options: serde_json::Value::Null,
            display_name: None,
            backend_state: serde_json::Value::Null,
            token_id: None,
            environment: None,
        }
    }

    fn token(owner: TokenOwner, hash: &str) -> TokenRecord {
        TokenRecord {
            id: format!("id-{hash}"),
            hash: hash.into(),
            prefix: "abcd".into(),
            owner,
            kind: TokenKind::Api,
            scopes: vec![],
            note: String::new(),
            created: chrono::Utc::now(),
            expires_at: None,
            last_activity: None,
            oauth_client: None,
            server: None,
        }
    }

    /// A database as Orrery wrote it at schema version 2 (no list indexes, no counts): users
    /// with and without activity, servers ready and not, a stale server of a deleted user,
    /// tokens, a session, an OAuth client, groups.
    fn write_v2_state(dir: &std::path::Path) {
        let db = sled::Config::new().path(dir.join("sled")).open().unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema_version", "2").unwrap();
        meta.insert("instance_id", "inst-v2").unwrap();
        meta.insert("signup_default_at_creation", "closed").unwrap();
        let put = |tree: &str, key: &str, value: Vec<u8>| {
            db.open_tree(tree).unwrap().insert(key, value).unwrap();
        };
        let now = chrono::Utc::now();
        for (i, name) in ["alice", "bob", "carol", "dave"].into_iter().enumerate() {
            let mut u = UserRecord::new(name);
            if name != "carol" {
                u.last_activity = Some(now - chrono::Duration::minutes(i as i64));
            }
            put("users", name, super::super::encode(&u));
        }
        for s in [
            server("alice", "", true),
            server("alice", "lab", false),
            server("bob", "", false),
            server("gone", "", true),
        ] {
            put(
                "servers",
                &ServerRecord::key(&s.user, &s.name),
                super::super::encode(&s),
            );
        }
        for t in [
            token(TokenOwner::User("alice".into()), "h1"),
            token(TokenOwner::User("alice".into()), "h2"),
            token(TokenOwner::User("bob".into()), "h3"),
            token(TokenOwner::Service("svc".into()), "h4"),
        ] {
            put("tokens", &t.hash.clone(), super::super::encode(&t));
        }
        let session = SessionRecord {
            hash: "s1".into(),
            user: "alice".into(),
            created: now,
            expires_at: now + chrono::Duration::hours(1),
        };
        put("sessions", "s1", super::super::encode(&session));
        let client = OAuthClientRecord {
            id: "jupyterhub-user-alice".into(),
            secret_hash: "x".into(),
            redirect_uri: "/user/alice/oauth_callback".into(),
            access_scopes: vec![],
            user: Some("alice".into()),
            description: String::new(),
        };
        put(
            "oauth_clients",
            &client.id.clone(),
            super::super::encode(&client),
        );
        for g in ["physics", "ta"] {
            let rec = GroupRecord {
                name: g.into(),
                users: ["alice".to_string()].into(),
                ..Default::default()
            };
            put("groups", g, super::super::encode(&rec));
            db.open_tree(GROUP_MEMBERS)
                .unwrap()
                .insert(member_key("alice", g), &[])
                .unwrap();
        }
        db.flush().unwrap();
    }

    #[test]
    fn a_version_2_state_gets_its_list_indexes_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        write_v2_state(dir.path());
        let store = Store::open(dir.path()).unwrap();
        assert!(dir.path().join("sled.schema-v2.backup").exists());
        assert_eq!(store.user_count(), 4);
        assert_eq!(store.group_count(), 2);
        for order in [
            UserOrder::Name,
            UserOrder::NameDesc,
            UserOrder::Activity,
            UserOrder::ActivityDesc,
        ] {
            for state in [
                UserState::Any,
                UserState::Active,
                UserState::Ready,
                UserState::Inactive,
            ] {
                for prefix in ["", "a", "c"] {
                    let q = UserQuery {
                        prefix,
                        order,
                        state,
                    };
                    let want = full_scan(&store, &q);
                    let got: Vec<String> = store
                        .users_page(&q, 0, 100)
                        .unwrap()
                        .into_iter()
                        .map(|u| u.name)
                        .collect();
                    assert_eq!(got, want, "{q:?}");
                    assert_eq!(store.count_users(&q).unwrap(), want.len(), "{q:?}");
                }
            }
        }
        // "gone" has a server but no record: in no user list; created again, it is active.
        let active = |store: &Store| {
            let q = UserQuery {
                prefix: "",
                order: UserOrder::Name,
                state: UserState::Active,
            };
            let names: Vec<String> = store
                .users_page(&q, 0, 10)
                .unwrap()
                .into_iter()
                .map(|u| u.name)
                .collect();
            names
        };
        assert_eq!(active(&store), vec!["alice", "bob"]);
        assert!(store.create_user(&UserRecord::new("gone")).unwrap());
        assert_eq!(active(&store), vec!["alice", "bob", "gone"]);
        let ids = |owner: TokenOwner| {
            let mut v: Vec<String> = store
                .tokens_of(&owner)
                .unwrap()
                .into_iter()
                .map(|t| t.hash)
                .collect();
            v.sort();
            v
        };
        assert_eq!(ids(TokenOwner::User("alice".into())), vec!["h1", "h2"]);
        assert_eq!(ids(TokenOwner::Service("svc".into())), vec!["h4"]);
        // Deleting alice finds her tokens, session, client and groups through the indexes.
        assert!(store.delete_user("alice").unwrap());
        assert!(ids(TokenOwner::User("alice".into())).is_empty());
        assert_eq!(store.tokens().unwrap().len(), 2);
        assert!(store.session("s1").unwrap().is_none());
        assert!(store
            .oauth_client("jupyterhub-user-alice")
            .unwrap()
            .is_none());
        assert!(store.group("ta").unwrap().unwrap().users.is_empty());
        assert_eq!(store.user_count(), 4);
        drop(store);
        // Opened again: nothing to migrate, the counts as they were left.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.user_count(), 4);
        assert_eq!(store.groups_page(1, 5).unwrap()[0].name, "ta");
    }
}
