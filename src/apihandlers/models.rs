//! JSON models of users, servers, groups and tokens, filtered by what the caller may read
//! (JupyterHub's model-by-scope rules).

use serde_json::{json, Map, Value};

use super::base::{iso, iso_opt};
use crate::hub::{Hub, Principal};
use crate::scopes::Target;
use crate::state::{GroupRecord, ServerRecord, TokenRecord, UserRecord};

/// Which user-model fields each read scope reveals.
const USER_FIELDS: &[(&str, &[&str])] = &[
    (
        "read:users",
        &[
            "kind",
            "name",
            "admin",
            "roles",
            "groups",
            "server",
            "pending",
            "created",
            "last_activity",
        ],
    ),
    ("read:users:name", &["kind", "name", "admin"]),
    ("read:users:groups", &["kind", "name", "groups"]),
    ("read:users:activity", &["kind", "name", "last_activity"]),
    ("read:servers", &["kind", "name", "servers"]),
    ("read:roles:users", &["kind", "name", "roles", "admin"]),
];

pub fn server_model(hub: &Hub, s: &ServerRecord, with_state: bool) -> Value {
    // With per-user origins the URL is absolute (JupyterHub's `user.url` has the host then).
    let url = hub.server_location(&s.user, &s.name);
    let origins = hub.origins();
    let progress_url = if s.name.is_empty() {
        format!("{}api/users/{}/server/progress", hub.hub_prefix(), s.user)
    } else {
        format!(
            "{}api/users/{}/servers/{}/progress",
            hub.hub_prefix(),
            s.user,
            s.name
        )
    };
    let (full_url, full_progress_url) = match &origins {
        Some(o) => (
            Value::from(url.clone()),
            Value::from(format!("{}{progress_url}", o.hub_origin())),
        ),
        None => (Value::Null, Value::Null),
    };
    let mut m = json!({
        "name": s.name,
        "full_name": format!("{}/{}", s.user, s.name),
        "last_activity": iso_opt(&s.last_activity),
        "started": iso_opt(&s.started),
        "pending": s.pending,
        "ready": s.ready,
        "stopped": false,
        "url": url,
        "user_options": s.user_options,
        "display_name": s.display_name.clone().unwrap_or_else(|| s.name.clone()),
        "progress_url": progress_url,
        "full_url": full_url,
        "full_progress_url": full_progress_url,
    });
    if with_state {
        m["state"] = s.backend_state.clone();
    }
    m
}

/// The complete user model, before filtering.
fn full_user_model(hub: &Hub, u: &UserRecord, groups: Vec<String>, servers: Servers) -> Value {
    let records = hub.store.servers_of(&u.name).unwrap_or_default();
    let default = records.iter().find(|s| s.name.is_empty());
    let server_url = default
        .filter(|s| s.ready)
        .map(|_| hub.server_location(&u.name, ""));
    let pending = default.and_then(|s| s.pending.clone());
    let admin = hub.is_admin(u);
    let roles = hub.user_role_names_in(u, &groups);
    let mut m = json!({
        "kind": "user",
        "name": u.name,
        "admin": admin,
        "roles": roles,
        "groups": groups,
        "server": server_url,
        "pending": pending,
        "created": iso(&u.created),
        "last_activity": iso_opt(&u.last_activity),
    });
    if servers != Servers::Left {
        let map: Map<String, Value> = records
            .into_iter()
            .map(|s| {
                let model = server_model(hub, &s, servers == Servers::WithState);
                (s.name, model)
            })
            .collect();
        m["servers"] = Value::Object(map);
    }
    m
}

/// Whether a user model has its `servers`, and with their backend `state`.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Servers {
    Left,
    Listed,
    WithState,
}

/// The user model as `who` may see it. None: nothing at all is visible. The user's groups
/// and server records are read once each (a users page builds 200 of these).
pub fn user_model_for(hub: &Hub, who: &Principal, u: &UserRecord) -> Option<Value> {
    let groups = hub.groups_of(&u.name);
    let target = Target::user(&u.name, &groups);
    let mut allowed: Vec<&str> = Vec::new();
    for (scope, fields) in USER_FIELDS {
        if who.scopes.allows(scope, &target) {
            allowed.extend(fields.iter());
        }
    }
    if allowed.is_empty() {
        return None;
    }
    let servers = match (
        allowed.contains(&"servers"),
        who.scopes.allows("admin:server_state", &target),
    ) {
        (false, _) => Servers::Left,
        (true, false) => Servers::Listed,
        (true, true) => Servers::WithState,
    };
    let full = full_user_model(hub, u, groups, servers);
    let Value::Object(map) = full else {
        return None;
    };
    Some(Value::Object(
        map.into_iter()
            .filter(|(k, _)| allowed.contains(&k.as_str()))
            .collect(),
    ))
}

/// A group: JupyterHub's fields (`roles`: the config's roles naming it) and who manages it
/// (`managed_by`: `"config"` or `"api"`, Orrery's own field).
pub fn group_model(hub: &Hub, g: &GroupRecord) -> Value {
    json!({
        "kind": "group",
        "name": g.name,
        "users": g.users.iter().collect::<Vec<_>>(),
        "roles": crate::roles::of_group(&hub.config().roles, &g.name),
        "properties": g.properties,
        "managed_by": g.managed_by.as_str(),
    })
}

pub fn token_model(t: &TokenRecord) -> Value {
    let user = match &t.owner {
        crate::state::TokenOwner::User(u) => Value::String(u.clone()),
        _ => Value::Null,
    };
    let service = match &t.owner {
        crate::state::TokenOwner::Service(s) => Value::String(s.clone()),
        _ => Value::Null,
    };
    json!({
        "id": t.id,
        "kind": "api_token",
        "user": user,
        "service": service,
        "roles": [],
        "scopes": t.scopes,
        "note": t.note,
        "prefix": t.prefix,
        "created": iso(&t.created),
        "expires_at": iso_opt(&t.expires_at),
        "last_activity": iso_opt(&t.last_activity),
        "session_id": Value::Null,
        "oauth_client": t.oauth_client.clone().unwrap_or_else(|| "JupyterHub".into()),
    })
}
