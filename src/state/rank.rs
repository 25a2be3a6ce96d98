//! Rank checkpoints: where a list's `offset` starts, without walking the keys before it. sled
//! keeps keys sorted but cannot say which key is the 25,000th; walking to it costs about a
//! third of a microsecond per key. So for each ordered tree a list pages (the users by name,
//! the user indexes, the groups) the store keeps, in memory, every [`SPACING`]th key with its
//! rank (how many keys sort before it). A page at offset `o` starts at the checkpoint at or
//! before `o` and walks fewer than [`SPACING`] keys (a gap that inserts have grown past
//! [`REBUILD_GAP`] triggers a rebuild), whatever the number of users.
//!
//! The checkpoints are derived data, built from the tree at first use, never stored. They are
//! kept exact: [`super::Store::transact`] holds the write lock while its transaction commits
//! and applies the transaction's key insertions and removals ([`Change`]) before releasing it,
//! and a page holds the read lock while it walks.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A checkpoint every this many keys when built.
pub(super) const SPACING: usize = 128;
/// A gap between checkpoints grown to this many keys makes the tree's checkpoints be rebuilt.
const REBUILD_GAP: usize = 4 * SPACING;

/// The trees that lists page with offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ranked {
    Users,
    UsersByActivity,
    UsersActive,
    UsersReady,
    ActiveByActivity,
    ReadyByActivity,
    Groups,
}

const RANKED: usize = 7;

/// A key that entered or left a ranked tree in a transaction.
#[derive(Debug, Clone)]
pub(super) struct Change {
    pub tree: Ranked,
    pub key: Vec<u8>,
    /// True: inserted (it was absent); false: removed (it was present).
    pub added: bool,
}

/// One tree's checkpoints.
#[derive(Debug, Default)]
struct Checkpoints {
    /// (key, how many keys of the tree sort before it), in key order. The key need not be in
    /// the tree any more: removing it leaves the boundary where it was.
    marks: Vec<(Vec<u8>, usize)>,
    /// Keys between each mark and the next (the last: to the end); the gap before the first
    /// mark is `marks[0].1`.
    gaps: Vec<usize>,
    /// Keys in the tree.
    len: usize,
    /// A gap grew past [`REBUILD_GAP`]: rebuild before the next use.
    stale: bool,
}

impl Checkpoints {
    fn build(tree: &sled::Tree) -> sled::Result<Checkpoints> {
        let mut c = Checkpoints::default();
        for (i, key) in tree.iter().keys().enumerate() {
            let key = key?;
            if i % SPACING == 0 {
                c.marks.push((key.to_vec(), i));
                c.gaps.push(0);
            }
            if let Some(g) = c.gaps.last_mut() {
                *g += 1;
            }
            c.len = i + 1;
        }
        Ok(c)
    }

    fn apply(&mut self, key: &[u8], added: bool) {
        // Marks after the key move by one; the gap holding the key grows or shrinks.
        let after = self.marks.partition_point(|(k, _)| k.as_slice() <= key);
        for (_, rank) in &mut self.marks[after..] {
            *rank = if added {
                *rank + 1
            } else {
                rank.saturating_sub(1)
            };
        }
        self.len = if added {
            self.len + 1
        } else {
            self.len.saturating_sub(1)
        };
        if after > 0 {
            let g = &mut self.gaps[after - 1];
            *g = if added { *g + 1 } else { g.saturating_sub(1) };
            if *g > REBUILD_GAP {
                self.stale = true;
            }
        } else if self.marks.first().map_or(self.len, |(_, r)| *r) > REBUILD_GAP {
            // The keys before the first mark (all of them, with no mark yet) grew too many.
            self.stale = true;
        }
    }

    /// Where the key at `position` is found: start at this key (None: the tree's first) and
    /// skip this many keys.
    fn seek(&self, position: usize) -> (Option<&[u8]>, usize) {
        let at = self.marks.partition_point(|(_, rank)| *rank <= position);
        match at.checked_sub(1).map(|i| &self.marks[i]) {
            Some((key, rank)) => (Some(key.as_slice()), position - rank),
            None => (None, position),
        }
    }

    /// How many keys sort before `key`: the mark at or before it, then a walk of its gap.
    fn rank_of(&self, tree: &sled::Tree, key: &[u8]) -> sled::Result<usize> {
        let at = self.marks.partition_point(|(k, _)| k.as_slice() <= key);
        let (from, base): (&[u8], usize) = match at.checked_sub(1).map(|i| &self.marks[i]) {
            Some((k, rank)) => (k.as_slice(), *rank),
            None => (&[], 0),
        };
        let mut n = base;
        for k in tree.range(from..key).keys() {
            k?;
            n += 1;
        }
        Ok(n)
    }
}

/// The checkpoints of every ranked tree, shared by every clone of the store.
#[derive(Debug, Default)]
pub(super) struct Ranks {
    trees: RwLock<[Option<Checkpoints>; RANKED]>,
}

/// A read view of the checkpoints, held while a page walks.
pub(super) struct View<'a> {
    guard: RwLockReadGuard<'a, [Option<Checkpoints>; RANKED]>,
}

/// The write lock, held by a transaction while it commits and its changes are applied.
pub(super) struct Writer<'a> {
    guard: RwLockWriteGuard<'a, [Option<Checkpoints>; RANKED]>,
}

impl Ranks {
    /// The checkpoints of `wanted`, built (or rebuilt) from `trees` where needed.
    pub(super) fn view(&self, wanted: &[(Ranked, &sled::Tree)]) -> sled::Result<View<'_>> {
        loop {
            {
                let guard = self.trees.read().unwrap_or_else(|e| e.into_inner());
                if wanted
                    .iter()
                    .all(|(r, _)| guard[*r as usize].as_ref().is_some_and(|c| !c.stale))
                {
                    return Ok(View { guard });
                }
            }
            let mut guard = self.trees.write().unwrap_or_else(|e| e.into_inner());
            for (r, tree) in wanted {
                let slot = &mut guard[*r as usize];
                if slot.as_ref().is_none_or(|c| c.stale) {
                    *slot = Some(Checkpoints::build(tree)?);
                }
            }
        }
    }

    /// Take the write lock (for a transaction's commit and its changes).
    pub(super) fn writer(&self) -> Writer<'_> {
        Writer {
            guard: self.trees.write().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

impl Writer<'_> {
    /// Apply a committed transaction's changes (a tree whose checkpoints are not built yet
    /// will be built from the tree as it is then).
    pub(super) fn apply(&mut self, changes: &[Change]) {
        for c in changes {
            if let Some(cp) = self.guard[c.tree as usize].as_mut() {
                cp.apply(&c.key, c.added);
            }
        }
    }
}

impl View<'_> {
    fn of(&self, tree: Ranked) -> Option<&Checkpoints> {
        self.guard[tree as usize].as_ref()
    }

    /// Keys in `tree`.
    pub(super) fn len(&self, tree: Ranked) -> usize {
        self.of(tree).map(|c| c.len).unwrap_or(0)
    }

    /// Where the key at `position` of `tree` is: a key to start at and how many to skip.
    pub(super) fn seek(&self, tree: Ranked, position: usize) -> (Option<Vec<u8>>, usize) {
        match self.of(tree) {
            Some(c) => {
                let (k, skip) = c.seek(position);
                (k.map(<[u8]>::to_vec), skip)
            }
            None => (None, position),
        }
    }

    /// How many keys of `sled_tree` (which is `tree`) sort before `key`.
    pub(super) fn rank_of(
        &self,
        tree: Ranked,
        sled_tree: &sled::Tree,
        key: &[u8],
    ) -> sled::Result<usize> {
        match self.of(tree) {
            Some(c) => c.rank_of(sled_tree, key),
            None => Ok(sled_tree.range(..key).keys().count()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Through random inserts and removals, every position seeks to the key a walk finds, every
    /// rank equals a count, and a grown gap is rebuilt.
    #[test]
    fn checkpoints_stay_exact_through_changes() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let ranks = Ranks::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for step in 0..3000 {
            let key = format!("k{:05}", rng.gen_range(0..2000)).into_bytes();
            let present = tree.contains_key(&key).unwrap();
            let mut w = ranks.writer();
            if present && rng.gen_bool(0.4) {
                tree.remove(&key).unwrap();
                w.apply(&[Change {
                    tree: Ranked::Users,
                    key,
                    added: false,
                }]);
            } else if !present {
                tree.insert(&key, &[]).unwrap();
                w.apply(&[Change {
                    tree: Ranked::Users,
                    key,
                    added: true,
                }]);
            }
            drop(w);
            if step % 100 != 0 {
                continue;
            }
            let view = ranks.view(&[(Ranked::Users, &tree)]).unwrap();
            let all: Vec<Vec<u8>> = tree.iter().keys().map(|k| k.unwrap().to_vec()).collect();
            assert_eq!(view.len(Ranked::Users), all.len());
            for position in (0..all.len()).step_by(37) {
                let (start, skip) = view.seek(Ranked::Users, position);
                let walk = match start {
                    Some(s) => tree.range(s..),
                    None => tree.iter(),
                };
                let found = walk.keys().nth(skip).unwrap().unwrap();
                assert_eq!(found.to_vec(), all[position], "position {position}");
                assert!(skip < REBUILD_GAP + SPACING, "skip {skip}");
                let probe = format!("k{:05}", rng.gen_range(0..2100)).into_bytes();
                let want = all.iter().filter(|k| **k < probe).count();
                assert_eq!(view.rank_of(Ranked::Users, &tree, &probe).unwrap(), want);
            }
        }
    }
}
