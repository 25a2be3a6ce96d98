//! Pages of the users list, answered from the sorted keys of the user records and of their
//! indexes (`indexes.rs`), with the total from the counts (`counts.rs`): a page decodes its
//! own records only. JupyterHub's `GET /users` orders (`sort`) and `state` filters each map to
//! one index walked in order; `name_filter` (a name prefix) is a key range in name order. The
//! walk starts at the rank checkpoint before the page (`rank.rs`), so the offset costs less
//! than one gap of keys.
//!
//! What still grows with the number of users: `state=inactive` (all users but the active ones)
//! skips its offset key by key and the active users' keys in its range, and a `name_filter`
//! with a last-activity order walks that index's keys filtering names (keys only, no record
//! decoded).
use super::counts::{self, Counter};
use super::indexes::name_of_activity_key;
use super::rank::{Ranked, View};
use super::{Result, Store, UserRecord};

/// The order of a users list (JupyterHub's `sort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOrder {
    /// By name (`id`, `name`).
    Name,
    /// By name, reversed (`-name`).
    NameDesc,
    /// By last activity, never active first, ties by name (`last_activity`).
    Activity,
    /// The exact reverse of [`UserOrder::Activity`] (`-last_activity`).
    ActivityDesc,
}

impl UserOrder {
    /// The order a `sort` parameter names, if any.
    pub fn parse(sort: &str) -> Option<UserOrder> {
        match sort {
            "id" | "name" => Some(UserOrder::Name),
            "-name" => Some(UserOrder::NameDesc),
            "last_activity" => Some(UserOrder::Activity),
            "-last_activity" => Some(UserOrder::ActivityDesc),
            _ => None,
        }
    }

    fn descending(self) -> bool {
        matches!(self, UserOrder::NameDesc | UserOrder::ActivityDesc)
    }

    fn by_activity(self) -> bool {
        matches!(self, UserOrder::Activity | UserOrder::ActivityDesc)
    }
}

/// Which users a list keeps (JupyterHub's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserState {
    /// Every user (no `state`).
    Any,
    /// Users with a server record, running or in transition (`active`).
    Active,
    /// Users with a ready server that is not stopping (`ready`).
    Ready,
    /// Users with no server record (`inactive`).
    Inactive,
}

impl UserState {
    /// The filter a `state` parameter names ("" for none), if any.
    pub fn parse(state: &str) -> Option<UserState> {
        match state {
            "" => Some(UserState::Any),
            "active" => Some(UserState::Active),
            "ready" => Some(UserState::Ready),
            "inactive" => Some(UserState::Inactive),
            _ => None,
        }
    }
}

/// What a users list asks for.
#[derive(Debug, Clone, Copy)]
pub struct UserQuery<'a> {
    /// Names start with this ("" for all).
    pub prefix: &'a str,
    pub order: UserOrder,
    pub state: UserState,
}

impl Store {
    /// The tree `q` walks, which ranked tree it is, and whether its values are the user
    /// records (else its keys name them).
    fn walked(&self, q: &UserQuery) -> (&sled::Tree, Ranked, bool) {
        match (q.order.by_activity(), q.state) {
            (false, UserState::Any | UserState::Inactive) => (&self.users, Ranked::Users, true),
            (false, UserState::Active) => (&self.users_active, Ranked::UsersActive, false),
            (false, UserState::Ready) => (&self.users_ready, Ranked::UsersReady, false),
            (true, UserState::Any | UserState::Inactive) => {
                (&self.users_by_activity, Ranked::UsersByActivity, false)
            }
            (true, UserState::Active) => {
                (&self.active_by_activity, Ranked::ActiveByActivity, false)
            }
            (true, UserState::Ready) => (&self.ready_by_activity, Ranked::ReadyByActivity, false),
        }
    }

    /// How many users `q` lists. Without a prefix: the kept counts, one read each. With one:
    /// the ranks of the prefix's first and last names in the name-ordered tree (and in the
    /// active set for `inactive`), each a checkpoint and a walk of less than one gap.
    pub fn count_users(&self, q: &UserQuery) -> Result<usize> {
        let kept = |c: Counter| counts::read(&self.meta, c).map(|n| n as usize);
        let matching = |tree: &sled::Tree, ranked: Ranked| -> Result<usize> {
            let view = self.ranks.view(&[(ranked, tree)])?;
            let (lo, hi) = span(&view, ranked, tree, q.prefix.as_bytes())?;
            Ok(hi - lo)
        };
        Ok(match (q.prefix.is_empty(), q.state) {
            (true, UserState::Any) => kept(Counter::Users)?,
            (true, UserState::Active) => kept(Counter::ActiveUsers)?,
            (true, UserState::Ready) => kept(Counter::ReadyUsers)?,
            (true, UserState::Inactive) => {
                kept(Counter::Users)?.saturating_sub(kept(Counter::ActiveUsers)?)
            }
            (false, UserState::Any) => matching(&self.users, Ranked::Users)?,
            (false, UserState::Active) => matching(&self.users_active, Ranked::UsersActive)?,
            (false, UserState::Ready) => matching(&self.users_ready, Ranked::UsersReady)?,
            (false, UserState::Inactive) => matching(&self.users, Ranked::Users)?
                .saturating_sub(matching(&self.users_active, Ranked::UsersActive)?),
        })
    }

    /// The page of `q` at `offset`, at most `limit` users, decoding the page's records only.
    /// Where the page's positions in the walked tree are known (no `state=inactive`, and no
    /// `name_filter` with a last-activity order), the walk starts at the rank checkpoint before
    /// the page (`rank.rs`): less than one gap of keys is skipped, whatever the offset.
    /// Otherwise the tree is walked in order, keys filtered, `offset` kept keys skipped.
    pub fn users_page(
        &self,
        q: &UserQuery,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<UserRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let by_activity = q.order.by_activity();
        let (tree, ranked, values_are_users) = self.walked(q);
        let positional = q.state != UserState::Inactive && (q.prefix.is_empty() || !by_activity);
        if positional {
            return self.users_at(q, tree, ranked, values_are_users, offset, limit);
        }
        // Name-ordered trees are keyed by name: the prefix is a range. Activity-ordered ones
        // are not: their names are filtered.
        let walk = if by_activity {
            tree.iter()
        } else {
            tree.scan_prefix(q.prefix.as_bytes())
        };
        let walk: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if q.order.descending() {
                Box::new(walk.rev())
            } else {
                Box::new(walk)
            };
        let mut skipped = 0;
        let mut page = Vec::with_capacity(limit.min(256));
        for kv in walk {
            let (key, value) = kv?;
            let name = if by_activity {
                name_of_activity_key(&key)
            } else {
                &key[..]
            };
            if by_activity && !name.starts_with(q.prefix.as_bytes()) {
                continue;
            }
            if q.state == UserState::Inactive && self.users_active.contains_key(name)? {
                continue;
            }
            if skipped < offset {
                skipped += 1;
                continue;
            }
            page.extend(self.user_of(by_activity, values_are_users, &key, &value)?);
            if page.len() == limit {
                break;
            }
        }
        Ok(page)
    }

    /// [`Store::users_page`] by positions: the page is the keys at positions
    /// `[start, start + count)` of the walked tree (reversed for a descending order), reached
    /// from the rank checkpoint before `start`. The checkpoints' read lock is held while the
    /// page is read, so no write moves it meanwhile.
    fn users_at(
        &self,
        q: &UserQuery,
        tree: &sled::Tree,
        ranked: Ranked,
        values_are_users: bool,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<UserRecord>> {
        let view = self.ranks.view(&[(ranked, tree)])?;
        let (lo, hi) = span(&view, ranked, tree, q.prefix.as_bytes())?;
        let n = hi.saturating_sub(lo);
        if offset >= n {
            return Ok(Vec::new());
        }
        let count = limit.min(n - offset);
        let start = if q.order.descending() {
            lo + n - offset - count
        } else {
            lo + offset
        };
        let (from, skip) = view.seek(ranked, start);
        let walk = match from {
            Some(k) => tree.range(k..),
            None => tree.iter(),
        };
        let mut page = Vec::with_capacity(count);
        for kv in walk.skip(skip).take(count) {
            let (key, value) = kv?;
            page.extend(self.user_of(q.order.by_activity(), values_are_users, &key, &value)?);
        }
        drop(view);
        if q.order.descending() {
            page.reverse();
        }
        Ok(page)
    }

    /// The user a walked tree's entry stands for: its value, or the record its key names.
    fn user_of(
        &self,
        by_activity: bool,
        values_are_users: bool,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<UserRecord>> {
        if values_are_users {
            return super::decode("user", value).map(Some);
        }
        let name = if by_activity {
            name_of_activity_key(key)
        } else {
            key
        };
        self.users
            .get(name)?
            .map(|raw| super::decode::<UserRecord>("user", &raw))
            .transpose()
    }
}

/// The positions `[lo, hi)` of the keys of `tree` that start with `prefix` (all: "").
fn span(view: &View, ranked: Ranked, tree: &sled::Tree, prefix: &[u8]) -> Result<(usize, usize)> {
    if prefix.is_empty() {
        return Ok((0, view.len(ranked)));
    }
    let lo = view.rank_of(ranked, tree, prefix)?;
    let hi = match prefix_end(prefix) {
        Some(end) => view.rank_of(ranked, tree, &end)?,
        None => view.len(ranked),
    };
    Ok((lo, hi.max(lo)))
}

/// The first key after every key starting with `prefix` (None: there is none).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Store {
    /// How many users were active at `since` or later: the keys of the last-activity index
    /// from there on (no record decoded), for the metrics' active users.
    pub fn count_active_since(&self, since: chrono::DateTime<chrono::Utc>) -> Result<usize> {
        let from = super::indexes::activity_key(Some(since), "");
        let mut n = 0;
        for k in self.users_by_activity.range(from..).keys() {
            k?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn active_users_since_a_time_are_counted_from_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = chrono::Utc::now();
        for (i, hours) in [Some(1), Some(23), Some(25), None, Some(48)]
            .into_iter()
            .enumerate()
        {
            let mut u = UserRecord::new(&format!("u{i}"));
            u.last_activity = hours.map(|h| now - chrono::Duration::hours(h));
            store.put_user(&u).unwrap();
        }
        let day = now - chrono::Duration::hours(24);
        assert_eq!(store.count_active_since(day).unwrap(), 2);
        // The answer follows updates (the index moves with the record).
        store
            .update_user("u3", |u| u.last_activity = Some(now))
            .unwrap();
        assert_eq!(store.count_active_since(day).unwrap(), 3);
        // Further back: every user who has been active at all (u3 now too).
        let week = now - chrono::Duration::hours(100);
        assert_eq!(store.count_active_since(week).unwrap(), 5);
    }
    use crate::state::{ServerRecord, StateError};
    use rand::{Rng, SeedableRng};

    /// The users `q` lists, by a full scan of the records sorted and filtered in memory: what
    /// every page must agree with.
    pub(crate) fn full_scan(store: &Store, q: &UserQuery) -> Vec<String> {
        let servers = store.servers().unwrap();
        let has = |name: &str, ready: bool| {
            servers
                .iter()
                .any(|s| s.user == name && (!ready || s.is_ready()))
        };
        let mut users: Vec<UserRecord> = store
            .users()
            .unwrap()
            .into_iter()
            .filter(|u| u.name.starts_with(q.prefix))
            .filter(|u| match q.state {
                UserState::Any => true,
                UserState::Active => has(&u.name, false),
                UserState::Ready => has(&u.name, true),
                UserState::Inactive => !has(&u.name, false),
            })
            .collect();
        users.sort_by(|a, b| (a.last_activity, &a.name).cmp(&(b.last_activity, &b.name)));
        if !q.order.by_activity() {
            users.sort_by(|a, b| a.name.cmp(&b.name));
        }
        if q.order.descending() {
            users.reverse();
        }
        users.into_iter().map(|u| u.name).collect()
    }

    /// Every page and total of every order and state equals the full scan's, through random
    /// writes to users, their activity and their servers.
    #[test]
    fn every_page_equals_the_same_page_of_a_full_scan() -> std::result::Result<(), StateError> {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path())?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        let name = |rng: &mut rand::rngs::StdRng| {
            let len = rng.gen_range(1..4);
            (0..len)
                .map(|_| ['a', 'b', 'c'][rng.gen_range(0..3)])
                .collect::<String>()
        };
        let base = chrono::Utc::now();
        for step in 0..600 {
            let n = name(&mut rng);
            match rng.gen_range(0..7) {
                0 | 1 => {
                    store.create_user(&UserRecord::new(&n))?;
                }
                2 => {
                    store.delete_user(&n)?;
                }
                3 => {
                    let when = base + chrono::Duration::seconds(rng.gen_range(-5..5));
                    store.update_user(&n, |u| u.last_activity = Some(when))?;
                }
                4 | 5 => {
                    let server = ["", "x"][rng.gen_range(0..2)];
                    store.put_server(&ServerRecord {
                        user: n.clone(),
                        name: server.into(),
                        url: None,
                        started: None,
                        last_activity: None,
                        pending: rng.gen_bool(0.3).then(|| "spawn".to_string()),
                        ready: rng.gen_bool(0.6),
                        user_options: serde_json::Value::Null,
                        display_name: None,
                        backend_state: serde_json::Value::Null,
                        token_id: None,
                        environment: None,
                    })?;
                }
                _ => {
                    store.delete_server(&n, ["", "x"][rng.gen_range(0..2)])?;
                }
            }
            if step % 20 != 0 {
                continue;
            }
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
                    for prefix in ["", "a", "ab", "c"] {
                        let q = UserQuery {
                            prefix,
                            order,
                            state,
                        };
                        let all = full_scan(&store, &q);
                        assert_eq!(store.count_users(&q)?, all.len(), "{q:?}");
                        let (offset, limit) = (rng.gen_range(0..8), rng.gen_range(1..6));
                        let got: Vec<String> = store
                            .users_page(&q, offset, limit)?
                            .into_iter()
                            .map(|u| u.name)
                            .collect();
                        let want: Vec<String> = all.into_iter().skip(offset).take(limit).collect();
                        assert_eq!(got, want, "{q:?} offset {offset} limit {limit}");
                    }
                }
            }
        }
        Ok(())
    }
}
