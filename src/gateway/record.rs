//! A kernel's durable record, so that kernels outlive a restart of the daemon (an upgrade, a
//! `systemctl restart`), as user servers do.
//!
//! One JSON file per kernel in `<state>/kernel-records/<id>.json` (mode 0600, written to a
//! temporary file and renamed): who owns it, the spec it was started from (kept as it was, so
//! editing or removing the spec in the config does not change a running kernel), its working
//! directory and `KERNEL_*` variables, and whether its container was reclaimed. The connection
//! file (key, ports) stays where the container mounts it, `<state>/kernels/<id>/kernel.json`.
//! Records live outside that directory so that the kernel's container cannot read them.
//!
//! At startup the gateway reads every record ([`super::Gateway::adopt`]): a kernel whose
//! container still runs is reconnected; one whose container is gone stays listed and gets a new
//! container on its next request, like a reclaimed kernel.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::KernelSpec;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelRecord {
    pub id: String,
    pub user: String,
    /// The user's server it belongs to ("" for the default server; records from before named
    /// servers have none).
    #[serde(default)]
    pub server: String,
    /// The spec the kernel was created from, frozen at creation.
    pub spec: KernelSpec,
    pub working_dir: String,
    /// `KERNEL_*` variables from the create request, given again to re-created containers.
    pub env: Vec<(String, String)>,
    pub created: DateTime<Utc>,
    /// Set while the container is reclaimed for idleness: how long it had been idle (seconds),
    /// for the notice the notebook gets when the kernel is re-created.
    #[serde(default)]
    pub reclaimed_after_s: Option<u64>,
}

/// `<state>/kernel-records`.
pub fn records_dir(state: &Path) -> PathBuf {
    state.join("kernel-records")
}

fn path_of(state: &Path, id: &str) -> PathBuf {
    records_dir(state).join(format!("{id}.json"))
}

/// Write (or replace) the record, atomically.
pub fn save(state: &Path, record: &KernelRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(records_dir(state))?;
    let body = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    crate::files::write_atomically(&path_of(state, &record.id), &body, 0o600)
}

pub fn remove(state: &Path, id: &str) {
    let _ = std::fs::remove_file(path_of(state, id));
}

/// Every record; a file that cannot be read is returned as its path and the reason.
pub fn load_all(state: &Path) -> Vec<Result<KernelRecord, (PathBuf, String)>> {
    let Ok(entries) = std::fs::read_dir(records_dir(state)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".json") {
            // A temporary file from an interrupted write: the record it replaced is intact.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<KernelRecord>(&b).map_err(|e| e.to_string()))
            .and_then(|r| {
                if format!("{}.json", r.id) == name {
                    Ok(r)
                } else {
                    Err(format!(
                        "the record names kernel {} but the file is {name}",
                        r.id
                    ))
                }
            });
        out.push(parsed.map_err(|e| (path, e)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> KernelRecord {
        let spec: KernelSpec = toml::from_str(
            "name = \"py-small\"\nmemory = \"512M\"\nidle_timeout = \"15m\"\nenv = {A = \"1\"}",
        )
        .unwrap();
        KernelRecord {
            id: id.into(),
            user: "alice".into(),
            server: String::new(),
            spec,
            working_dir: "/home/jovyan/work".into(),
            env: vec![("KERNEL_USERNAME".into(), "alice".into())],
            created: Utc::now(),
            reclaimed_after_s: Some(600),
        }
    }

    #[test]
    fn records_round_trip_and_bad_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let a = record("a1");
        save(dir.path(), &a).unwrap();
        save(dir.path(), &record("b2")).unwrap();
        std::fs::write(records_dir(dir.path()).join("c3.json"), "{not json").unwrap();
        std::fs::write(records_dir(dir.path()).join(".d4.json.tmp"), "partial").unwrap();
        let mut ok: Vec<KernelRecord> = Vec::new();
        let mut bad = Vec::new();
        for r in load_all(dir.path()) {
            match r {
                Ok(r) => ok.push(r),
                Err((p, e)) => bad.push((p, e)),
            }
        }
        ok.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0], a, "the spec, env and reclaim state survive");
        assert_eq!(bad.len(), 1);
        assert!(bad[0].0.ends_with("c3.json"), "{bad:?}");
        assert!(!records_dir(dir.path()).join(".d4.json.tmp").exists());
        remove(dir.path(), "a1");
        assert_eq!(load_all(dir.path()).len(), 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path_of(dir.path(), "b2"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
