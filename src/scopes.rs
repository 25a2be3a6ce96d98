//! Scopes: JupyterHub's permission model.
//!
//! A scope is a name (`read:users`) optionally narrowed by filters (`read:users!user=alice`,
//! `access:servers!server=alice/`, `!group=`, `!service=`). Broad scopes imply narrower ones
//! (`SUBSCOPES`); roles (`user`, `admin`, `server`) are fixed bundles of scopes (the config's
//! `[[roles]]` are added by `crate::roles`). A request is allowed when the caller's expanded
//! [`ScopeSet`] holds the needed scope for the target. A `!group=` filter matches a target
//! through the target user's groups ([`Target::groups`]); comparing two sets (a token against
//! its owner) resolves groups through a lookup the caller passes ([`GroupsOf`]).

use std::collections::{BTreeMap, BTreeSet};

/// Scope → the scopes it implies (transitively expanded by [`ScopeSet::from_strings`]).
const SUBSCOPES: &[(&str, &[&str])] = &[
    (
        "admin:users",
        &[
            "admin:auth_state",
            "users",
            "read:roles:users",
            "delete:users",
        ],
    ),
    (
        "users",
        &["read:users", "list:users", "users:activity", "users:shares"],
    ),
    (
        "read:users",
        &[
            "read:users:name",
            "read:users:groups",
            "read:users:activity",
            "read:users:shares",
        ],
    ),
    ("users:shares", &["read:users:shares"]),
    ("shares", &["read:shares"]),
    ("groups:shares", &["read:groups:shares"]),
    ("users:activity", &["read:users:activity"]),
    ("admin:servers", &["admin:server_state", "servers"]),
    ("servers", &["read:servers", "delete:servers"]),
    ("read:servers", &["read:users:name"]),
    ("tokens", &["read:tokens"]),
    ("admin:groups", &["groups", "delete:groups"]),
    ("groups", &["read:groups", "list:groups", "groups:shares"]),
    ("read:groups", &["read:groups:name"]),
    (
        "read:roles",
        &[
            "read:roles:users",
            "read:roles:groups",
            "read:roles:services",
        ],
    ),
    ("services", &["list:services", "read:services"]),
];

/// Scopes with no sub-scopes that are still valid to request.
const LEAF_SCOPES: &[&str] = &[
    "access:servers",
    "access:services",
    "read:hub",
    "proxy",
    "shutdown",
    "admin-ui",
    "read:metrics",
    "list:services",
    "read:services",
    "delete:users",
    "delete:groups",
    "delete:servers",
    "admin:auth_state",
    "admin:server_state",
    "read:users:name",
    "read:users:groups",
    "read:users:activity",
    "list:users",
    "list:groups",
    "read:groups:name",
    "read:tokens",
    "read:roles:users",
    "read:roles:groups",
    "read:roles:services",
    "read:shares",
    "read:users:shares",
    "read:groups:shares",
];

/// The names of JupyterHub's built-in roles: a config `[[roles]]` entry may not take them.
pub const BUILT_IN_ROLES: &[&str] = &["user", "admin", "server", "token"];

/// Scopes held by every user for themselves (JupyterHub's `self`, filtered to the user).
const SELF_SCOPES: &[&str] = &[
    "users",
    "servers",
    "tokens",
    "access:servers",
    "read:users:groups",
    // Sharing their own servers (`shares!user=<me>`) and leaving shares given to them (in
    // `users`).
    "shares",
];

/// Extra, unfiltered scopes of an admin (JupyterHub's `admin` role).
const ADMIN_SCOPES: &[&str] = &[
    "admin-ui",
    "admin:users",
    "admin:servers",
    "tokens",
    "admin:groups",
    "read:hub",
    "access:servers",
    "access:services",
    "proxy",
    "shutdown",
    "services",
    "read:roles",
    "read:metrics",
    "shares",
];

/// A lookup by name: a user's groups, or a group's members.
pub type GroupsOf<'a> = &'a dyn Fn(&str) -> Vec<String>;

/// One filter on a scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FilterItem {
    User(String),
    /// `user/servername`, e.g. `alice/` for the default server.
    Server(String),
    Group(String),
    Service(String),
}

impl FilterItem {
    fn render(&self) -> String {
        match self {
            FilterItem::User(u) => format!("user={u}"),
            FilterItem::Server(s) => format!("server={s}"),
            FilterItem::Group(g) => format!("group={g}"),
            FilterItem::Service(s) => format!("service={s}"),
        }
    }
}

/// What a scope applies to: everything, or only the listed filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    Only(BTreeSet<FilterItem>),
}

/// The thing a request acts on, for filter matching.
#[derive(Debug, Clone, Default)]
pub struct Target<'a> {
    pub user: Option<&'a str>,
    /// `user/name` of a server.
    pub server: Option<&'a str>,
    /// Groups of the target user, or the target group itself.
    pub groups: &'a [String],
    pub service: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub fn user(name: &'a str, groups: &'a [String]) -> Target<'a> {
        Target {
            user: Some(name),
            groups,
            ..Default::default()
        }
    }
}

/// JupyterHub scopes that Orrery knows but does not implement yet: accepted in config with a
/// warning ([`check`]), they grant nothing: JupyterHub 6's `start:servers` and the
/// dynamic-services ones.
const NOT_IMPLEMENTED: &[&str] = &["start:servers", "admin:services", "read:services:name"];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScopeError {
    #[error("unknown scope {scope:?}{hint}", scope = .0, hint = nearest_hint(.0))]
    Unknown(String),
    #[error("scope {0:?} is JupyterHub's, but Orrery does not implement it yet")]
    NotImplemented(String),
    #[error("bad filter in scope {0:?}: use !user=NAME, !server=USER/NAME, !group=NAME or !service=NAME")]
    BadFilter(String),
}

/// An expanded set of scopes with their filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeSet {
    map: BTreeMap<String, Filter>,
}

fn is_known(name: &str) -> bool {
    SUBSCOPES.iter().any(|(n, _)| *n == name) || LEAF_SCOPES.contains(&name)
}

/// Every scope name Orrery knows, implemented or not.
fn all_names() -> impl Iterator<Item = &'static str> {
    SUBSCOPES
        .iter()
        .map(|(n, _)| *n)
        .chain(LEAF_SCOPES.iter().copied())
        .chain(NOT_IMPLEMENTED.iter().copied())
}

/// The known scope whose name is nearest to the name part of `raw` (`name!filter`).
pub fn nearest_known(raw: &str) -> Option<&'static str> {
    let name = raw.split('!').next().unwrap_or(raw);
    all_names()
        .map(|known| (strsim::jaro_winkler(name, known), known))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, known)| known)
}

fn nearest_hint(raw: &str) -> String {
    match nearest_known(raw) {
        Some(n) => format!(" (the nearest known scope is {n:?})"),
        None => String::new(),
    }
}

/// What a scope written in config amounts to.
#[derive(Debug, PartialEq)]
pub enum Checked {
    /// Orrery implements it.
    Implemented,
    /// JupyterHub has it and Orrery does not implement it yet: accepted, grants nothing; the
    /// string is the warning to show.
    NotImplemented(String),
}

/// Check one scope from config (services, later roles): an unknown scope is an error naming
/// the nearest known one; a JupyterHub scope Orrery does not implement is accepted with a
/// warning. `owner` is the user `self`/`!user` refer to (none for services).
pub fn check(raw: &str, owner: Option<&str>) -> Result<Checked, ScopeError> {
    match ScopeSet::from_strings(&[raw], owner) {
        Ok(_) => Ok(Checked::Implemented),
        Err(e @ ScopeError::NotImplemented(_)) => Ok(Checked::NotImplemented(format!(
            "{e}; it grants nothing until it is"
        ))),
        Err(e) => Err(e),
    }
}

/// Split `name!kind=value` into the name and an optional filter. `owner` fills a bare `!user`.
fn parse_one(raw: &str, owner: Option<&str>) -> Result<(String, Option<FilterItem>), ScopeError> {
    let (name, filter) = match raw.split_once('!') {
        Some((n, f)) => (n, Some(f)),
        None => (raw, None),
    };
    if !is_known(name) {
        if NOT_IMPLEMENTED.contains(&name) {
            return Err(ScopeError::NotImplemented(raw.to_string()));
        }
        return Err(ScopeError::Unknown(raw.to_string()));
    }
    let item = match filter {
        None => None,
        Some(f) => {
            let (kind, value) = match f.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (f, None),
            };
            let value = match (value, owner) {
                (Some(v), _) if !v.is_empty() => v.to_string(),
                (None, Some(o)) if kind == "user" => o.to_string(),
                _ => return Err(ScopeError::BadFilter(raw.to_string())),
            };
            Some(match kind {
                "user" => FilterItem::User(value),
                "server" => FilterItem::Server(value),
                "group" => FilterItem::Group(value),
                "service" => FilterItem::Service(value),
                _ => return Err(ScopeError::BadFilter(raw.to_string())),
            })
        }
    };
    Ok((name.to_string(), item))
}

fn subscopes(name: &str) -> &'static [&'static str] {
    SUBSCOPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .unwrap_or(&[])
}

impl ScopeSet {
    /// Parse and expand scope strings. `owner` is the user a bare `self` or `!user` refers to.
    pub fn from_strings<S: AsRef<str>>(
        scopes: &[S],
        owner: Option<&str>,
    ) -> Result<ScopeSet, ScopeError> {
        let mut set = ScopeSet::default();
        for raw in scopes {
            let raw = raw.as_ref().trim();
            if raw == "self" || raw == "inherit" {
                match owner {
                    Some(o) => set.merge(&ScopeSet::user_role(o)),
                    None => return Err(ScopeError::Unknown(raw.to_string())),
                }
                continue;
            }
            let (name, item) = parse_one(raw, owner)?;
            set.add_expanded(&name, item);
        }
        Ok(set)
    }

    /// The scopes a credential was granted (config services, stored tokens), which were
    /// checked when they were written: each scope that does not parse (one Orrery does not
    /// implement) grants nothing, and the others keep their effect. One odd scope must never
    /// cost a service all of its scopes.
    pub fn granted<S: AsRef<str>>(scopes: &[S], owner: Option<&str>) -> ScopeSet {
        let mut set = ScopeSet::default();
        for raw in scopes {
            match ScopeSet::from_strings(std::slice::from_ref(raw), owner) {
                Ok(one) => set.merge(&one),
                Err(e) => tracing::debug!(error = %e, "scope grants nothing"),
            }
        }
        set
    }

    fn add_expanded(&mut self, name: &str, item: Option<FilterItem>) {
        let mut stack = vec![name.to_string()];
        while let Some(n) = stack.pop() {
            self.add(&n, item.clone());
            stack.extend(subscopes(&n).iter().map(|s| s.to_string()));
        }
    }

    fn add(&mut self, name: &str, item: Option<FilterItem>) {
        match (self.map.get_mut(name), item) {
            (Some(Filter::All), _) => {}
            (Some(f), None) => *f = Filter::All,
            (Some(Filter::Only(items)), Some(i)) => {
                items.insert(i);
            }
            (None, None) => {
                self.map.insert(name.to_string(), Filter::All);
            }
            (None, Some(i)) => {
                self.map.insert(name.to_string(), Filter::Only([i].into()));
            }
        }
    }

    pub fn merge(&mut self, other: &ScopeSet) {
        for (name, filter) in &other.map {
            match filter {
                Filter::All => self.add(name, None),
                Filter::Only(items) => {
                    for i in items {
                        self.add(name, Some(i.clone()));
                    }
                }
            }
        }
    }

    /// A user's own scopes (role `user`).
    pub fn user_role(name: &str) -> ScopeSet {
        let mut set = ScopeSet::default();
        for s in SELF_SCOPES {
            set.add_expanded(s, Some(FilterItem::User(name.to_string())));
        }
        set
    }

    /// An admin's scopes: their own plus the admin role's.
    pub fn admin_role(name: &str) -> ScopeSet {
        let mut set = ScopeSet::user_role(name);
        for s in ADMIN_SCOPES {
            set.add_expanded(s, None);
        }
        set
    }

    /// The scopes of a single-user server's own token.
    pub fn server_role(user: &str, server: &str) -> Vec<String> {
        vec![
            format!("users:activity!user={user}"),
            format!("access:servers!server={user}/{server}"),
        ]
    }

    /// What a token may do: the scopes it asked for, but never more than its owner holds now.
    /// `!group=` filters are compared by name only; [`ScopeSet::intersect_resolving`] also
    /// matches them against users and servers.
    pub fn intersect(&self, owner: &ScopeSet) -> ScopeSet {
        self.intersect_resolving(owner, &|_: &str| Vec::new())
    }

    /// [`ScopeSet::intersect`], resolving `!group=` filters through `groups_of` (a user's
    /// groups): `access:servers!server=bob/` asked of an owner holding
    /// `access:servers!group=class-a` is kept when bob is in class-a, as JupyterHub resolves it.
    pub fn intersect_resolving(&self, owner: &ScopeSet, groups_of: GroupsOf<'_>) -> ScopeSet {
        let mut out = ScopeSet::default();
        for (name, mine) in &self.map {
            let Some(theirs) = owner.map.get(name) else {
                continue;
            };
            let f = match (mine, theirs) {
                (Filter::All, f) | (f, Filter::All) => f.clone(),
                (Filter::Only(a), Filter::Only(b)) => {
                    let keep: BTreeSet<FilterItem> = a
                        .iter()
                        .filter(|i| b.iter().any(|j| covers(j, i, groups_of)))
                        .chain(
                            b.iter()
                                .filter(|j| a.iter().any(|i| covers(i, j, groups_of))),
                        )
                        .cloned()
                        .collect();
                    if keep.is_empty() {
                        continue;
                    }
                    Filter::Only(keep)
                }
            };
            out.map.insert(name.clone(), f);
        }
        out
    }

    /// A copy where each `scope` narrowed by `!group=G` also names G's members (`!user=M`,
    /// from `members_of`). For the single-user server's access check, which (as JupyterHub's
    /// `HubAuth.check_scopes`) cannot resolve a group to its users.
    pub fn with_group_members(&self, scope: &str, members_of: GroupsOf<'_>) -> ScopeSet {
        let mut out = self.clone();
        if let Some(Filter::Only(items)) = self.map.get(scope) {
            for item in items {
                if let FilterItem::Group(g) = item {
                    for m in members_of(g) {
                        out.add(scope, Some(FilterItem::User(m)));
                    }
                }
            }
        }
        out
    }

    /// Does this set hold `scope` (any filter)? Used for "may list at all" checks.
    pub fn has_any(&self, scope: &str) -> bool {
        self.map.contains_key(scope)
    }

    /// Does this set hold `scope` without filters?
    pub fn has_unfiltered(&self, scope: &str) -> bool {
        matches!(self.map.get(scope), Some(Filter::All))
    }

    /// Does this set allow `scope` on `target`?
    pub fn allows(&self, scope: &str, target: &Target<'_>) -> bool {
        match self.map.get(scope) {
            None => false,
            Some(Filter::All) => true,
            Some(Filter::Only(items)) => items.iter().any(|i| matches_target(i, target)),
        }
    }

    /// Is every scope of `self` (with its filters) also in `owner`? For "don't grant more than
    /// you hold" when creating tokens. Returns the scopes that are not held.
    pub fn not_held_by(&self, owner: &ScopeSet) -> Vec<String> {
        self.not_held_by_resolving(owner, &|_: &str| Vec::new())
    }

    /// [`ScopeSet::not_held_by`], resolving `!group=` filters as
    /// [`ScopeSet::intersect_resolving`] does.
    pub fn not_held_by_resolving(&self, owner: &ScopeSet, groups_of: GroupsOf<'_>) -> Vec<String> {
        let inter = self.intersect_resolving(owner, groups_of);
        self.to_strings()
            .into_iter()
            .filter(|s| !inter.to_strings().contains(s))
            .collect()
    }

    /// Sorted strings, as `GET /hub/api/user` reports them.
    pub fn to_strings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, filter) in &self.map {
            match filter {
                Filter::All => out.push(name.clone()),
                Filter::Only(items) => {
                    out.extend(items.iter().map(|i| format!("{name}!{}", i.render())))
                }
            }
        }
        out.sort();
        out
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Does filter `a` include everything filter `b` names? A group includes its members and
/// their servers (as `groups_of` says now).
fn covers(a: &FilterItem, b: &FilterItem, groups_of: GroupsOf<'_>) -> bool {
    let server_user = |s: &str| s.split_once('/').map(|(u, _)| u.to_string());
    match (a, b) {
        (x, y) if x == y => true,
        (FilterItem::User(u), FilterItem::Server(s)) => server_user(s).as_deref() == Some(u),
        (FilterItem::Group(g), FilterItem::User(u)) => groups_of(u).contains(g),
        (FilterItem::Group(g), FilterItem::Server(s)) => {
            server_user(s).is_some_and(|u| groups_of(&u).contains(g))
        }
        _ => false,
    }
}

fn matches_target(item: &FilterItem, t: &Target<'_>) -> bool {
    match item {
        FilterItem::User(u) => t.user == Some(u.as_str()),
        FilterItem::Server(s) => t.server == Some(s.as_str()),
        FilterItem::Group(g) => t.groups.iter().any(|x| x == g),
        FilterItem::Service(s) => t.service == Some(s.as_str()),
    }
}

/// Validate scope strings a client asked for (token creation, config services).
pub fn validate<S: AsRef<str>>(scopes: &[S]) -> Result<(), ScopeError> {
    ScopeSet::from_strings(scopes, Some("placeholder")).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_role_is_limited_to_self() {
        let s = ScopeSet::user_role("alice");
        assert!(s.allows("read:users", &Target::user("alice", &[])));
        assert!(!s.allows("read:users", &Target::user("bob", &[])));
        assert!(s.allows("delete:servers", &Target::user("alice", &[])));
        assert!(!s.has_unfiltered("list:users"));
    }

    #[test]
    fn admin_sees_everyone() {
        let s = ScopeSet::admin_role("root");
        assert!(s.allows("admin:users", &Target::user("bob", &[])));
        assert!(s.has_unfiltered("list:users"));
    }

    #[test]
    fn expansion_and_filters() {
        let s = ScopeSet::from_strings(&["users!user=alice", "access:servers!server=alice/"], None)
            .unwrap();
        assert!(s.allows("read:users:activity", &Target::user("alice", &[])));
        let t = Target {
            server: Some("alice/"),
            ..Default::default()
        };
        assert!(s.allows("access:servers", &t));
        let t = Target {
            server: Some("bob/"),
            ..Default::default()
        };
        assert!(!s.allows("access:servers", &t));
        let g = vec!["class".to_string()];
        let s = ScopeSet::from_strings(&["read:users!group=class"], None).unwrap();
        assert!(s.allows("read:users:name", &Target::user("zed", &g)));
        assert!(!s.allows("read:users:name", &Target::user("zed", &[])));
    }

    #[test]
    fn tokens_never_exceed_owner() {
        let owner = ScopeSet::user_role("alice");
        let asked = ScopeSet::from_strings(
            &[
                "admin:users",
                "read:users!user=alice",
                "read:users!user=bob",
            ],
            None,
        )
        .unwrap();
        let got = asked.intersect(&owner);
        assert!(!got.has_any("admin:users"));
        assert!(got.allows("read:users", &Target::user("alice", &[])));
        assert!(!got.allows("read:users", &Target::user("bob", &[])));
        assert!(!asked.not_held_by(&owner).is_empty());
        let server = ScopeSet::from_strings(&["access:servers!server=alice/"], None).unwrap();
        assert!(
            server.not_held_by(&owner).is_empty(),
            "user filter covers own server"
        );
    }

    #[test]
    fn unknown_and_bad_scopes_rejected() {
        assert_eq!(
            validate(&["read:userz"]),
            Err(ScopeError::Unknown("read:userz".into()))
        );
        assert!(matches!(
            validate(&["read:users!planet=x"]),
            Err(ScopeError::BadFilter(_))
        ));
        assert!(validate(&[
            "list:users",
            "read:users:activity",
            "read:servers",
            "delete:servers"
        ])
        .is_ok());
        assert!(validate(&["self"]).is_ok());
    }

    #[test]
    fn rendering_is_sorted() {
        let s = ScopeSet::from_strings(&["users:activity!user=a"], None).unwrap();
        assert_eq!(
            s.to_strings(),
            vec!["read:users:activity!user=a", "users:activity!user=a"]
        );
    }

    fn class_a(user: &str) -> Vec<String> {
        match user {
            "sam" | "sue" => vec!["class-a".to_string()],
            _ => Vec::new(),
        }
    }

    #[test]
    fn group_filters_resolve_against_members_when_intersecting() {
        let ta = ScopeSet::from_strings(&["access:servers!group=class-a"], None).unwrap();
        let asked = ScopeSet::from_strings(
            &["access:servers!server=sam/", "access:servers!server=bob/"],
            None,
        )
        .unwrap();
        let got = asked.intersect_resolving(&ta, &class_a);
        assert_eq!(got.to_strings(), vec!["access:servers!server=sam/"]);
        // Without the lookup a group matches only itself.
        assert!(asked.intersect(&ta).is_empty());
        // Asking for the group itself keeps the group; a user filter is checked by membership.
        let asked = ScopeSet::from_strings(
            &["access:servers!group=class-a", "access:servers!user=sue"],
            None,
        )
        .unwrap();
        assert_eq!(
            asked.intersect_resolving(&ta, &class_a).to_strings(),
            vec!["access:servers!group=class-a", "access:servers!user=sue"]
        );
        let outside = ScopeSet::from_strings(&["access:servers!user=bob"], None).unwrap();
        assert_eq!(
            outside.not_held_by_resolving(&ta, &class_a),
            vec!["access:servers!user=bob"]
        );
        assert!(asked.not_held_by_resolving(&ta, &class_a).is_empty());
    }

    #[test]
    fn group_members_are_named_for_single_user_servers() {
        let ta = ScopeSet::from_strings(
            &["access:servers!group=class-a", "read:users!group=class-a"],
            None,
        )
        .unwrap();
        let members = |g: &str| match g {
            "class-a" => vec!["sam".to_string(), "sue".to_string()],
            _ => Vec::new(),
        };
        let out = ta.with_group_members("access:servers", &members);
        let strings = out.to_strings();
        assert!(strings.contains(&"access:servers!group=class-a".to_string()));
        assert!(strings.contains(&"access:servers!user=sam".to_string()));
        assert!(strings.contains(&"access:servers!user=sue".to_string()));
        // Only the scope asked for is widened.
        assert!(!strings.contains(&"read:users!user=sam".to_string()));
        assert!(out.allows("access:servers", &Target::user("sam", &[])));
        assert!(!out.allows("access:servers", &Target::user("bob", &[])));
    }
}
