//! The software environment admins install into for everyone (`orrery env`): every generation
//! built so far, what each holds, the images derived for it, and which one new servers and
//! kernels get. One record, replaced whole by a compare-and-swap, so two `orrery env` commands
//! racing can never both win.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{decode, encode, Result, StateError, Store};

/// The one key of the `environment` tree.
const KEY: &str = "record";

/// What an environment holds on top of each base image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvSpec {
    /// pip requirement specifiers (`pyjokes`, `numpy==2.1.0`), one per project.
    #[serde(default)]
    pub pip: BTreeSet<String>,
    /// Requirements files, by file name → their text (kept whole, so a rebuild needs no file).
    #[serde(default)]
    pub requirements: BTreeMap<String, String>,
    /// Debian packages (`hello`, `graphviz=2.42.2-7`).
    #[serde(default)]
    pub apt: BTreeSet<String>,
    /// conda packages (only for images that have conda).
    #[serde(default)]
    pub conda: BTreeSet<String>,
}

impl EnvSpec {
    pub fn is_empty(&self) -> bool {
        self.pip.is_empty()
            && self.requirements.is_empty()
            && self.apt.is_empty()
            && self.conda.is_empty()
    }
}

/// An image derived from a base image for one generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedImage {
    /// The reference new containers are created from (`orrery-env:<base>-<hash>`).
    pub tag: String,
    /// The engine's image id, so what runs can be compared with what was built.
    pub id: String,
}

/// One state of the environment. Generations are never edited once made, but for `pruned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// 1, 2, …: the position in the history.
    pub id: u64,
    pub created: DateTime<Utc>,
    /// What made it, as a person would say it: `install pyjokes`, `rollback to generation 2`.
    pub change: String,
    /// The generation `orrery env rollback` returns to from this one (none: the base images).
    pub previous: Option<u64>,
    pub spec: EnvSpec,
    /// Base image reference (as the config names it) → the image derived from it.
    pub images: BTreeMap<String, DerivedImage>,
    /// Its derived images were removed (only the last `environment.keep` generations keep
    /// theirs): it can no longer be rolled back to.
    #[serde(default)]
    pub pruned: bool,
}

/// Every generation and the one in effect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentRecord {
    /// Oldest first; `generations[i].id == i + 1`.
    pub generations: Vec<Generation>,
    /// The generation new servers and kernels get; none: the base images as configured.
    pub current: Option<u64>,
}

impl EnvironmentRecord {
    pub fn generation(&self, id: u64) -> Option<&Generation> {
        id.checked_sub(1)
            .and_then(|i| self.generations.get(i as usize))
    }

    /// The generation in effect, if any.
    pub fn current_generation(&self) -> Option<&Generation> {
        self.current.and_then(|id| self.generation(id))
    }

    /// Base image → derived image of the generation in effect: what new containers get.
    pub fn effective_images(&self) -> BTreeMap<String, String> {
        self.images_of(self.current)
    }

    /// Base image → derived image of generation `id` (none: the base images).
    pub fn images_of(&self, id: Option<u64>) -> BTreeMap<String, String> {
        id.and_then(|id| self.generation(id))
            .map(|g| {
                g.images
                    .iter()
                    .map(|(base, d)| (base.clone(), d.tag.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What a commit expects to find, so one made by someone else meanwhile is not overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    pub current: Option<u64>,
    pub generations: usize,
}

impl EnvironmentRecord {
    pub fn expected(&self) -> Expected {
        Expected {
            current: self.current,
            generations: self.generations.len(),
        }
    }
}

impl Store {
    /// The environment (empty when none was ever installed).
    pub fn environment(&self) -> Result<EnvironmentRecord> {
        match self.environment.get(KEY)? {
            Some(raw) => decode("environment", &raw),
            None => Ok(EnvironmentRecord::default()),
        }
    }

    /// Append `generation` (its id is assigned here) and put it in effect, if the record is
    /// still as `expected`; returns the new record.
    pub fn commit_generation(
        &self,
        expected: Expected,
        mut generation: Generation,
    ) -> Result<EnvironmentRecord> {
        self.swap_environment(|record| {
            if record.expected() != expected {
                return Err(StateError::Conflict(format!(
                    "the software environment changed while this command ran (it is now at \
                     generation {}); run the command again",
                    record.current.map_or("none".into(), |c| c.to_string())
                )));
            }
            generation.id = record.generations.len() as u64 + 1;
            record.current = Some(generation.id);
            record.generations.push(generation.clone());
            Ok(())
        })
    }

    /// Mark generations whose derived images were removed.
    pub fn mark_pruned(&self, ids: &[u64]) -> Result<EnvironmentRecord> {
        self.swap_environment(|record| {
            for g in record.generations.iter_mut() {
                if ids.contains(&g.id) {
                    g.pruned = true;
                }
            }
            Ok(())
        })
    }

    /// Read, change and write the record atomically (retrying when another writer won).
    fn swap_environment(
        &self,
        mut change: impl FnMut(&mut EnvironmentRecord) -> Result<()>,
    ) -> Result<EnvironmentRecord> {
        loop {
            let old = self.environment.get(KEY)?;
            let mut record: EnvironmentRecord = match &old {
                Some(raw) => decode("environment", raw)?,
                None => EnvironmentRecord::default(),
            };
            change(&mut record)?;
            let new = encode(&record);
            if self
                .environment
                .compare_and_swap(KEY, old, Some(new))?
                .is_ok()
            {
                self.environment.flush()?;
                return Ok(record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(change: &str) -> Generation {
        Generation {
            id: 0,
            created: Utc::now(),
            change: change.into(),
            previous: None,
            spec: EnvSpec::default(),
            images: BTreeMap::from([(
                "base:1".to_string(),
                DerivedImage {
                    tag: format!("orrery-env:{change}"),
                    id: "sha256:x".into(),
                },
            )]),
            pruned: false,
        }
    }

    #[test]
    fn commits_number_generations_and_refuse_a_stale_expectation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let empty = store.environment().unwrap();
        assert_eq!(empty, EnvironmentRecord::default());
        let one = store
            .commit_generation(empty.expected(), generation("a"))
            .unwrap();
        assert_eq!(one.current, Some(1));
        assert_eq!(
            one.effective_images().get("base:1").map(String::as_str),
            Some("orrery-env:a")
        );
        // A second command that read the empty record loses, and changes nothing.
        let stale = store.commit_generation(empty.expected(), generation("b"));
        assert!(
            matches!(stale, Err(StateError::Conflict(ref m)) if m.contains("run the command again")),
            "{stale:?}"
        );
        assert_eq!(store.environment().unwrap(), one);
        let two = store
            .commit_generation(one.expected(), generation("b"))
            .unwrap();
        assert_eq!((two.current, two.generations.len()), (Some(2), 2));
        let pruned = store.mark_pruned(&[1]).unwrap();
        assert!(pruned.generation(1).unwrap().pruned);
        assert!(!pruned.generation(2).unwrap().pruned);
        drop(store);
        // Kept across a reopen.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.environment().unwrap(), pruned);
    }
}
