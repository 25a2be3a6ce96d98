//! The lists (users in every sort and state filter, with and without a name filter; groups; a
//! user's tokens) against a full scan, through random sequences of what changes them and
//! `kill -9` restarts of the daemon on the same state directory.
//!
//! The lists come from the store's indexes and counts; what they are compared with never does:
//! each candidate user's and group's record read by name (`GET /users/{name}`,
//! `GET /groups/{name}`), the tokens the test made, and, after each `kill -9` and at the end,
//! the store itself opened by the test (`Store::open`) with every record read and sorted here.
//!
//! Seeded: the seed is printed, and `ORRERY_MODEL_SEED=<n>` replays a run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use orrery::state::{Store, TokenOwner, UserOrder, UserQuery, UserRecord, UserState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::common::{repo, Daemon, ADMIN_SERVICE_TOKEN as ADMIN};

/// Candidate user names: several share a start, for the name filters.
const NAMES: [&str; 10] = [
    "ann", "anna", "annie", "bob", "bobby", "carl", "cara", "dan", "dora", "eve",
];
const GROUPS: [&str; 4] = ["physics", "chem", "ta", "club"];
/// `name_filter`s asked ("" for none).
const PREFIXES: [&str; 3] = ["", "an", "bo"];
const SORTS: [&str; 4] = ["name", "-name", "last_activity", "-last_activity"];
const STATES: [&str; 4] = ["", "active", "ready", "inactive"];
const LIMITS: [usize; 3] = [1, 3, 50];
/// Steps of one run.
const STEPS: usize = 140;

/// What the test knows for sure: every write it made was acknowledged after a flush, so it
/// survives a `kill -9`. (Activity is not flushed when recorded: it is read back, never
/// modelled.)
#[derive(Default)]
struct Model {
    /// name → admin
    users: BTreeMap<String, bool>,
    groups: BTreeMap<String, BTreeSet<String>>,
    /// user → ids of the API tokens made for them
    tokens: BTreeMap<String, BTreeSet<String>>,
}

/// One user as its own record says (read by name).
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    admin: bool,
    /// ISO text as the API writes it (fixed width, so text order is time order).
    last_activity: Option<String>,
    active: bool,
    ready: bool,
}

/// Kills the local servers' process groups when the test ends, however it ends.
struct Reaper(Arc<Mutex<BTreeSet<i32>>>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in self.0.lock().unwrap().iter() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(-pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[tokio::test]
async fn every_list_equals_a_full_scan_through_random_changes_and_kill_9() {
    let seed: u64 = std::env::var("ORRERY_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("lists model seed: {seed} (replay with ORRERY_MODEL_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let pids = Arc::new(Mutex::new(BTreeSet::new()));
    let _reaper = Reaper(pids.clone());
    let server = repo().join("tests/python/header_server.py");
    let mut d = Daemon::start(&format!(
        "[cull]\nenabled = false\n[spawner]\nbackend = \"local\"\nslow_spawn_timeout = \"10s\"\n\
         reconcile_interval = \"1h\"\n[spawner.local]\ncmd = [\"python3\", \"{}\"]\nallow_root = true\n",
        server.display()
    ))
    .await;
    let mut m = Model::default();
    let base = chrono::DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut restarts = 0;
    for step in 0..STEPS {
        let name = NAMES[rng.gen_range(0..NAMES.len())];
        let exists = m.users.contains_key(name);
        match rng.gen_range(0..100) {
            0..=14 => {
                let names: Vec<&str> = (0..rng.gen_range(1..4))
                    .map(|_| NAMES[rng.gen_range(0..NAMES.len())])
                    .collect();
                let admin = rng.gen_bool(0.3);
                let (s, b, _) = d
                    .api(
                        "POST",
                        "/users",
                        Some(ADMIN),
                        Some(json!({"usernames": names, "admin": admin})),
                    )
                    .await;
                assert!(s == 201 || s == 409, "create {names:?}: {s} {b}");
                for n in names {
                    m.users.entry(n.to_string()).or_insert(admin);
                }
            }
            15..=21 if exists => {
                let (s, b, _) = d
                    .api("DELETE", &format!("/users/{name}"), Some(ADMIN), None)
                    .await;
                // 400: the server is still starting or stopping; nothing changed.
                assert!(s == 204 || s == 400, "delete {name}: {s} {b}");
                if s == 400 {
                    continue;
                }
                m.users.remove(name);
                m.tokens.remove(name);
                for members in m.groups.values_mut() {
                    members.remove(name);
                }
            }
            22..=29 if exists => {
                let admin = rng.gen_bool(0.5);
                let (s, b, _) = d
                    .api(
                        "PATCH",
                        &format!("/users/{name}"),
                        Some(ADMIN),
                        Some(json!({ "admin": admin })),
                    )
                    .await;
                assert_eq!(s, 200, "admin {name}: {b}");
                m.users.insert(name.to_string(), admin);
            }
            30..=33 if exists => {
                // Renames are refused (containers, volumes and tokens are named after the
                // user); a refused rename must leave every list as it was.
                let to = NAMES[rng.gen_range(0..NAMES.len())];
                let (s, b, _) = d
                    .api(
                        "PATCH",
                        &format!("/users/{name}"),
                        Some(ADMIN),
                        Some(json!({ "name": to })),
                    )
                    .await;
                assert!(s == 400 || (s == 200 && to == name), "rename: {s} {b}");
            }
            34..=46 if exists => {
                // A few distinct minutes, so ties (broken by name) are common.
                let when = base + chrono::Duration::minutes(rng.gen_range(0..6));
                let (s, b, _) = d
                    .api(
                        "POST",
                        &format!("/users/{name}/activity"),
                        Some(ADMIN),
                        Some(json!({"last_activity": when.to_rfc3339()})),
                    )
                    .await;
                assert_eq!(s, 200, "activity {name}: {b}");
            }
            47..=56 if exists => {
                let (s, b, _) = d
                    .api("POST", &format!("/users/{name}/server"), Some(ADMIN), None)
                    .await;
                assert!(
                    s == 201 || s == 202 || s == 400,
                    "start {name}: {s} {b}\n{}",
                    d.log()
                );
                let (_, u, _) = d
                    .api("GET", &format!("/users/{name}"), Some(ADMIN), None)
                    .await;
                if let Some(pid) = u["servers"][""]["state"]["pid"].as_i64() {
                    pids.lock().unwrap().insert(pid as i32);
                }
            }
            57..=63 if exists => {
                let (s, b, _) = d
                    .api(
                        "DELETE",
                        &format!("/users/{name}/server"),
                        Some(ADMIN),
                        None,
                    )
                    .await;
                assert!(s == 204 || s == 202 || s == 400, "stop {name}: {s} {b}");
            }
            64..=69 => {
                let g = GROUPS[rng.gen_range(0..GROUPS.len())];
                if m.groups.contains_key(g) {
                    let (s, b, _) = d
                        .api("DELETE", &format!("/groups/{g}"), Some(ADMIN), None)
                        .await;
                    assert_eq!(s, 204, "delete group {g}: {b}");
                    m.groups.remove(g);
                } else {
                    let members: BTreeSet<String> = m
                        .users
                        .keys()
                        .filter(|_| rng.gen_bool(0.4))
                        .cloned()
                        .collect();
                    let (s, b, _) = d
                        .api(
                            "POST",
                            &format!("/groups/{g}"),
                            Some(ADMIN),
                            Some(json!({ "users": members })),
                        )
                        .await;
                    assert_eq!(s, 201, "create group {g}: {b}");
                    m.groups.insert(g.to_string(), members);
                }
            }
            70..=77 if exists && !m.groups.is_empty() => {
                let groups: Vec<String> = m.groups.keys().cloned().collect();
                let g = &groups[rng.gen_range(0..groups.len())];
                let add = rng.gen_bool(0.5);
                let (s, b, _) = d
                    .api(
                        if add { "POST" } else { "DELETE" },
                        &format!("/groups/{g}/users"),
                        Some(ADMIN),
                        Some(json!({ "users": [name] })),
                    )
                    .await;
                assert_eq!(s, 200, "members of {g}: {b}");
                let members = m.groups.entry(g.clone()).or_default();
                if add {
                    members.insert(name.to_string());
                } else {
                    members.remove(name);
                }
            }
            78..=85 if exists => {
                let (s, b, _) = d
                    .api(
                        "POST",
                        &format!("/users/{name}/tokens"),
                        Some(ADMIN),
                        Some(json!({"note": format!("step {step}")})),
                    )
                    .await;
                assert_eq!(s, 201, "token for {name}: {b}");
                let id = b["id"].as_str().unwrap().to_string();
                m.tokens.entry(name.to_string()).or_default().insert(id);
            }
            86..=91 if exists && m.tokens.get(name).is_some_and(|t| !t.is_empty()) => {
                let ids: Vec<String> = m.tokens[name].iter().cloned().collect();
                let id = &ids[rng.gen_range(0..ids.len())];
                let (s, b, _) = d
                    .api(
                        "DELETE",
                        &format!("/users/{name}/tokens/{id}"),
                        Some(ADMIN),
                        None,
                    )
                    .await;
                assert_eq!(s, 204, "delete token {id} of {name}: {b}");
                m.tokens.get_mut(name).unwrap().remove(id);
            }
            92..=95 => {
                // A crash: no shutdown, nothing flushed but what the writes flushed.
                d.kill();
                restarts += 1;
                check_store(&d.state_dir(), &format!("after kill -9 #{restarts}"));
                d.spawn().await;
                check_api(&d, &m, &format!("after restart #{restarts} (step {step})")).await;
            }
            _ => {}
        }
        if step % 40 == 39 {
            check_api(&d, &m, &format!("at step {step}")).await;
        }
    }
    check_api(&d, &m, "at the end").await;
    // Stop the servers, then read the store as the daemon left it.
    for name in m.users.keys() {
        let _ = d
            .api(
                "DELETE",
                &format!("/users/{name}/server"),
                Some(ADMIN),
                None,
            )
            .await;
    }
    d.stop();
    check_store(&d.state_dir(), "after a clean stop");
    eprintln!("lists model: {STEPS} steps, {restarts} kill -9 restarts, seed {seed}");
}

/// Every user of [`NAMES`] as its record says, read by name (no index involved).
async fn seen_users(d: &Daemon) -> Vec<Seen> {
    let mut out = Vec::new();
    for name in NAMES {
        let (s, u, _) = d
            .api("GET", &format!("/users/{name}"), Some(ADMIN), None)
            .await;
        if s == 404 {
            continue;
        }
        assert_eq!(s, 200, "GET /users/{name}: {u}");
        let servers = u["servers"].as_object().cloned().unwrap_or_default();
        out.push(Seen {
            name: name.to_string(),
            admin: u["admin"].as_bool().unwrap_or(false),
            last_activity: u["last_activity"].as_str().map(str::to_string),
            active: !servers.is_empty(),
            ready: servers
                .values()
                .any(|s| s["ready"] == json!(true) && s["pending"].is_null()),
        });
    }
    out
}

/// The names a users list should give, from the users as read by name.
fn expected(users: &[Seen], sort: &str, state: &str, prefix: &str) -> Vec<String> {
    let mut keep: Vec<&Seen> = users
        .iter()
        .filter(|u| u.name.starts_with(prefix))
        .filter(|u| match state {
            "active" => u.active,
            "ready" => u.ready,
            "inactive" => !u.active,
            _ => true,
        })
        .collect();
    if sort.ends_with("last_activity") {
        keep.sort_by(|a, b| (&a.last_activity, &a.name).cmp(&(&b.last_activity, &b.name)));
    } else {
        keep.sort_by(|a, b| a.name.cmp(&b.name));
    }
    if sort.starts_with('-') {
        keep.reverse();
    }
    keep.into_iter().map(|u| u.name.clone()).collect()
}

/// `GET <path>` with JupyterHub's pagination: (names of the items, the total, next is null).
async fn page(d: &Daemon, path: &str) -> (Vec<Value>, usize, bool) {
    let r = d
        .http
        .get(format!("{}/hub/api{path}", d.url))
        .header("Authorization", format!("token {ADMIN}"))
        .header("Accept", "application/jupyterhub-pagination+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{path}");
    let v: Value = r.json().await.unwrap();
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let total = v["_pagination"]["total"].as_u64().unwrap() as usize;
    (items, total, v["_pagination"]["next"].is_null())
}

/// Page through every list over the API and compare each page and total with the records.
async fn check_api(d: &Daemon, m: &Model, when: &str) {
    let users = seen_users(d).await;
    // Creations, deletions and admin changes were flushed before they were acknowledged.
    let names: BTreeMap<String, bool> = users.iter().map(|u| (u.name.clone(), u.admin)).collect();
    assert_eq!(
        names, m.users,
        "{when}: users and admin flags as acknowledged"
    );
    eprintln!(
        "lists model {when}: {} users, {} active, {} ready, {} with activity, {} groups",
        users.len(),
        users.iter().filter(|u| u.active).count(),
        users.iter().filter(|u| u.ready).count(),
        users.iter().filter(|u| u.last_activity.is_some()).count(),
        m.groups.len()
    );
    for sort in SORTS {
        for state in STATES {
            for prefix in PREFIXES {
                let want = expected(&users, sort, state, prefix);
                for limit in LIMITS {
                    let mut offset = 0;
                    loop {
                        let path = format!(
                            "/users?sort={sort}&state={state}&name_filter={prefix}&offset={offset}&limit={limit}"
                        );
                        let (items, total, last) = page(d, &path).await;
                        let got: Vec<String> = items
                            .iter()
                            .map(|u| u["name"].as_str().unwrap().to_string())
                            .collect();
                        let slice: Vec<String> =
                            want.iter().skip(offset).take(limit).cloned().collect();
                        assert_eq!(got, slice, "{when}: {path} (all: {want:?})");
                        assert_eq!(total, want.len(), "{when}: total of {path}");
                        offset += limit;
                        assert_eq!(last, offset >= want.len(), "{when}: next of {path}");
                        if offset >= want.len() {
                            break;
                        }
                    }
                }
            }
        }
    }
    // Groups: each read by name, and as the test made them.
    let mut groups = BTreeMap::new();
    for g in GROUPS {
        let (s, v, _) = d
            .api("GET", &format!("/groups/{g}"), Some(ADMIN), None)
            .await;
        if s == 200 {
            let members: BTreeSet<String> = v["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap().to_string())
                .collect();
            groups.insert(g.to_string(), members);
        }
    }
    assert_eq!(groups, m.groups, "{when}: groups as acknowledged");
    for limit in [1, 2, 50] {
        let mut offset = 0;
        let mut listed = BTreeMap::new();
        loop {
            let (items, total, _) =
                page(d, &format!("/groups?offset={offset}&limit={limit}")).await;
            assert_eq!(total, groups.len(), "{when}: groups total");
            for g in &items {
                let members: BTreeSet<String> = g["users"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_str().unwrap().to_string())
                    .collect();
                listed.insert(g["name"].as_str().unwrap().to_string(), members);
            }
            let want: Vec<&String> = groups.keys().skip(offset).take(limit).collect();
            let got: Vec<&str> = items.iter().map(|g| g["name"].as_str().unwrap()).collect();
            assert_eq!(got, want, "{when}: groups page {offset}+{limit}");
            offset += limit;
            if offset >= groups.len() {
                break;
            }
        }
        assert_eq!(listed, groups, "{when}: groups listed with limit {limit}");
    }
    // Each user's API tokens.
    for name in m.users.keys() {
        let (s, v, _) = d
            .api("GET", &format!("/users/{name}/tokens"), Some(ADMIN), None)
            .await;
        assert_eq!(s, 200, "{when}: tokens of {name}: {v}");
        let ids: BTreeSet<String> = v["api_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            ids,
            m.tokens.get(name).cloned().unwrap_or_default(),
            "{when}: tokens of {name}"
        );
    }
}

/// Open the stopped daemon's store and compare every page and count the store answers with
/// the same list made here from every record.
fn check_store(state: &std::path::Path, when: &str) {
    let store = Store::open(state).unwrap_or_else(|e| panic!("{when}: open the store: {e}"));
    let users: Vec<UserRecord> = store.users().unwrap();
    let servers = store.servers().unwrap();
    let has = |name: &str, ready: bool| {
        servers
            .iter()
            .any(|s| s.user == name && (!ready || s.is_ready()))
    };
    assert_eq!(store.user_count(), users.len(), "{when}: users count");
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
            for prefix in PREFIXES {
                let mut want: Vec<&UserRecord> = users
                    .iter()
                    .filter(|u| u.name.starts_with(prefix))
                    .filter(|u| match state {
                        UserState::Any => true,
                        UserState::Active => has(&u.name, false),
                        UserState::Ready => has(&u.name, true),
                        UserState::Inactive => !has(&u.name, false),
                    })
                    .collect();
                if matches!(order, UserOrder::Activity | UserOrder::ActivityDesc) {
                    want.sort_by(|a, b| {
                        (a.last_activity, &a.name).cmp(&(b.last_activity, &b.name))
                    });
                }
                if matches!(order, UserOrder::NameDesc | UserOrder::ActivityDesc) {
                    want.reverse();
                }
                let want: Vec<&str> = want.iter().map(|u| u.name.as_str()).collect();
                let q = UserQuery {
                    prefix,
                    order,
                    state,
                };
                assert_eq!(
                    store.count_users(&q).unwrap(),
                    want.len(),
                    "{when}: count {q:?}"
                );
                for limit in [2, 100] {
                    let mut got = Vec::new();
                    let mut offset = 0;
                    while offset < want.len() {
                        got.extend(
                            store
                                .users_page(&q, offset, limit)
                                .unwrap()
                                .into_iter()
                                .map(|u| u.name),
                        );
                        offset += limit;
                    }
                    assert_eq!(got, want, "{when}: pages of {q:?} by {limit}");
                }
            }
        }
    }
    let tokens = store.tokens().unwrap();
    for u in &users {
        let owner = TokenOwner::User(u.name.clone());
        let mut want: Vec<String> = tokens
            .iter()
            .filter(|t| t.owner == owner)
            .map(|t| t.hash.clone())
            .collect();
        let mut got: Vec<String> = store
            .tokens_of(&owner)
            .unwrap()
            .into_iter()
            .map(|t| t.hash)
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{when}: tokens of {}", u.name);
    }
    let groups = store.groups().unwrap();
    assert_eq!(store.group_count(), groups.len(), "{when}: groups count");
    assert_eq!(
        store.groups_page(0, 100).unwrap(),
        groups,
        "{when}: groups page"
    );
}
