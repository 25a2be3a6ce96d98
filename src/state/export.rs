//! A logical copy of the whole state, for `orrery backup` and `orrery restore`: every tree with
//! every key and value (base64, since keys and values are bytes), and the schema version it was
//! written in. A copy from an older Orrery is migrated when restored; one from a newer Orrery is
//! refused. Secrets stay what they are in the store: hashes.

use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{Result, StateError, Store, DB_DIR, SCHEMA_VERSION};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateExport {
    /// The schema the trees are in.
    pub schema_version: u32,
    /// The instance id (also in the `meta` tree): restore keeps it, so the restored hub
    /// re-adopts its own containers and volumes and no other hub's.
    pub instance_id: String,
    /// Tree name → `[key, value]` pairs, base64.
    pub trees: BTreeMap<String, Vec<[String; 2]>>,
}

impl StateExport {
    /// How many records of `tree` the copy holds.
    pub fn count(&self, tree: &str) -> usize {
        self.trees.get(tree).map(Vec::len).unwrap_or(0)
    }
}

impl Store {
    /// Everything in the store, consistent per tree (sled has no cross-tree snapshot; the daemon
    /// serves this between requests, and a backup taken while users log in may miss a session
    /// made meanwhile, never half a record).
    pub fn export(&self) -> Result<StateExport> {
        let mut trees = BTreeMap::new();
        for name in self.db.tree_names() {
            if name.as_ref() == b"__sled__default" {
                continue;
            }
            let tree = self.db.open_tree(&name)?;
            let mut pairs = Vec::new();
            for item in tree.iter() {
                let (k, v) = item?;
                pairs.push([B64.encode(k), B64.encode(v)]);
            }
            trees.insert(String::from_utf8_lossy(&name).into_owned(), pairs);
        }
        Ok(StateExport {
            schema_version: SCHEMA_VERSION,
            instance_id: self.instance_id()?,
            trees,
        })
    }

    /// Write `copy` into the state directory `dir`, which must hold no database yet, then open
    /// it (migrating a copy from an older Orrery forward).
    pub fn import(dir: &Path, copy: &StateExport) -> Result<Store> {
        if copy.schema_version > SCHEMA_VERSION {
            return Err(StateError::FutureSchema {
                path: dir.to_path_buf(),
                found: copy.schema_version,
            });
        }
        let db_path = dir.join(DB_DIR);
        if db_path.exists() {
            return Err(StateError::Conflict(format!(
                "{} already holds a database; move it aside first",
                db_path.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|source| StateError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let corrupt = |detail: String| StateError::Corrupt {
            path: dir.to_path_buf(),
            detail,
        };
        {
            let db = sled::Config::new()
                .path(&db_path)
                .open()
                .map_err(|source| StateError::Open {
                    path: dir.to_path_buf(),
                    source,
                })?;
            for (name, pairs) in &copy.trees {
                let tree = db.open_tree(name.as_bytes())?;
                for [k, v] in pairs {
                    let k = B64
                        .decode(k)
                        .map_err(|e| corrupt(format!("a key in {name} is not base64: {e}")))?;
                    let v = B64
                        .decode(v)
                        .map_err(|e| corrupt(format!("a value in {name} is not base64: {e}")))?;
                    tree.insert(k, v)?;
                }
            }
            let meta = db.open_tree("meta")?;
            meta.insert("schema_version", copy.schema_version.to_string().as_bytes())?;
            meta.insert("instance_id", copy.instance_id.as_bytes())?;
            db.flush()?;
        }
        Store::open(dir)
    }
}
