//! `orrery backup` and `orrery restore`: one `.tar.gz` that holds a hub, and reading it back.
//!
//! The archive holds, in this order:
//! * `orrery-backup.json`: the [`Manifest`] (what is inside, from which hub and version, and
//!   which servers were running while the homes were copied);
//! * `state.json`: the whole state as a [`StateExport`] (users, groups, tokens and sessions
//!   as hashes, OAuth clients, servers, GPU leases, the instance id);
//! * `config.toml`: the config file, byte for byte, if the hub had one;
//! * `homes/<user>.tar`: with `--homes`, each user's home (volume or directory) as a tar of
//!   `orrery-home/…`, copied through a helper container ([`homes`]).
//!
//! The file is written as `FILE.partial` (mode 0600: it holds password and token hashes) and
//! renamed when complete, so a cut-short backup never looks like a good one.

pub mod homes;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::state::StateExport;

/// The archive layout version this binary writes and reads.
pub const FORMAT: u32 = 1;
pub const MANIFEST: &str = "orrery-backup.json";
pub const STATE: &str = "state.json";
pub const CONFIG: &str = "config.toml";
pub const HOMES: &str = "homes/";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The Orrery that wrote it.
    pub orrery_version: String,
    pub created: DateTime<Utc>,
    pub instance_id: String,
    pub schema_version: u32,
    /// Where the config and the state were on the machine it came from (for the record).
    pub config_path: Option<String>,
    pub state_path: String,
    /// Whether the state came through the running daemon or from the directory directly.
    pub taken_from: String,
    pub users: usize,
    pub groups: usize,
    pub tokens: usize,
    /// Users whose home is in the archive.
    pub homes: Vec<String>,
    /// Servers (`user` or `user/name`) that were running while the homes were copied: a file
    /// written meanwhile may be caught half-written.
    pub running_servers: Vec<String>,
    /// Servers stopped for the backup (`--stop-servers`); their users start them again.
    pub stopped_servers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Format(String),
    #[error("{0}")]
    Engine(String),
}

impl BackupError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
        let what = what.into();
        move |source| BackupError::Io { what, source }
    }
}

pub type Result<T> = std::result::Result<T, BackupError>;

/// An archive being written.
pub struct Writer {
    /// `None` once finished.
    tar: Option<tar::Builder<GzEncoder<File>>>,
    partial: PathBuf,
    dest: PathBuf,
}

impl Writer {
    /// Start `dest` (as `dest.partial`, mode 0600); refuses to overwrite an existing file.
    pub fn create(dest: &Path) -> Result<Writer> {
        if dest.exists() {
            return Err(BackupError::Format(format!(
                "{} exists; give a new file name (a backup never overwrites one)",
                dest.display()
            )));
        }
        let partial = PathBuf::from(format!("{}.partial", dest.display()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let file = opts.open(&partial).map_err(BackupError::io(format!(
            "cannot write {}",
            partial.display()
        )))?;
        Ok(Writer {
            tar: Some(tar::Builder::new(GzEncoder::new(
                file,
                flate2::Compression::fast(),
            ))),
            partial,
            dest: dest.to_path_buf(),
        })
    }

    /// Add `bytes` as the file `name`.
    pub fn add_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(Utc::now().timestamp().max(0) as u64);
        header.set_cksum();
        self.builder()?
            .append_data(&mut header, name, bytes)
            .map_err(BackupError::io(format!("cannot add {name} to the backup")))
    }

    /// Add the file at `path` as `name` (a home's tar, streamed rather than held in memory).
    pub fn add_file(&mut self, name: &str, path: &Path) -> Result<()> {
        let mut file =
            File::open(path).map_err(BackupError::io(format!("cannot read {}", path.display())))?;
        self.builder()?
            .append_file(name, &mut file)
            .map_err(BackupError::io(format!("cannot add {name} to the backup")))
    }

    fn builder(&mut self) -> Result<&mut tar::Builder<GzEncoder<File>>> {
        self.tar
            .as_mut()
            .ok_or_else(|| BackupError::Format("the backup is already finished".into()))
    }

    /// Finish the archive and give it its name.
    pub fn finish(mut self) -> Result<PathBuf> {
        let what = format!("cannot finish {}", self.partial.display());
        let tar = self.builder()?;
        tar.finish().map_err(BackupError::io(&what))?;
        let gz = self
            .tar
            .take()
            .ok_or_else(|| BackupError::Format("the backup is already finished".into()))?
            .into_inner()
            .map_err(BackupError::io(&what))?;
        let file = gz.finish().map_err(BackupError::io(&what))?;
        file.sync_all().map_err(BackupError::io(&what))?;
        std::fs::rename(&self.partial, &self.dest).map_err(BackupError::io(format!(
            "cannot rename {} to {}",
            self.partial.display(),
            self.dest.display()
        )))?;
        Ok(self.dest.clone())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Not finished (an error on the way): no half archive is left behind.
        if !self.dest.exists() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// What an archive holds, read back; homes are unpacked into files under a scratch directory.
pub struct Contents {
    pub manifest: Manifest,
    pub state: StateExport,
    pub config: Option<Vec<u8>>,
    /// User → their home's tar in the scratch directory.
    pub homes: Vec<(String, PathBuf)>,
}

/// Read the archive at `path`, writing home tars into `scratch`.
pub fn read(path: &Path, scratch: &Path) -> Result<Contents> {
    let not_ours = |why: String| {
        BackupError::Format(format!(
            "{} is not an Orrery backup ({why})",
            path.display()
        ))
    };
    let file =
        File::open(path).map_err(BackupError::io(format!("cannot read {}", path.display())))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let mut manifest: Option<Manifest> = None;
    let mut state: Option<StateExport> = None;
    let mut config = None;
    let mut homes = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| not_ours(format!("not a .tar.gz: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| not_ours(format!("damaged: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| not_ours(format!("a bad file name: {e}")))?
            .to_string_lossy()
            .into_owned();
        if let Some(user) = name
            .strip_prefix(HOMES)
            .and_then(|n| n.strip_suffix(".tar"))
        {
            let user =
                crate::username::normalize(user).map_err(|e| not_ours(format!("{name}: {e}")))?;
            let out = scratch.join(format!("{user}.tar"));
            let mut f = File::create(&out)
                .map_err(BackupError::io(format!("cannot write {}", out.display())))?;
            std::io::copy(&mut entry, &mut f)
                .map_err(|e| not_ours(format!("{name} is cut short: {e}")))?;
            f.flush()
                .map_err(BackupError::io(format!("cannot write {}", out.display())))?;
            homes.push((user, out));
            continue;
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| not_ours(format!("{name} is cut short: {e}")))?;
        match name.as_str() {
            MANIFEST => {
                let m: Manifest = serde_json::from_slice(&bytes)
                    .map_err(|e| not_ours(format!("{MANIFEST}: {e}")))?;
                if m.format > FORMAT {
                    return Err(BackupError::Format(format!(
                        "{} was written by Orrery {} in backup format {}; this orrery reads format {FORMAT} and older: restore it with that version or newer",
                        path.display(),
                        m.orrery_version,
                        m.format
                    )));
                }
                manifest = Some(m);
            }
            STATE => {
                state = Some(
                    serde_json::from_slice(&bytes)
                        .map_err(|e| not_ours(format!("{STATE}: {e}")))?,
                )
            }
            CONFIG => config = Some(bytes),
            _ => {}
        }
    }
    let manifest = manifest.ok_or_else(|| not_ours(format!("no {MANIFEST}")))?;
    let state = state.ok_or_else(|| not_ours(format!("no {STATE}")))?;
    Ok(Contents {
        manifest,
        state,
        config,
        homes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            orrery_version: "0.1.0".into(),
            created: Utc::now(),
            instance_id: "inst".into(),
            schema_version: 2,
            config_path: None,
            state_path: "/var/lib/orrery/state".into(),
            taken_from: "state directory".into(),
            users: 0,
            groups: 0,
            tokens: 0,
            homes: vec!["alice".into()],
            running_servers: vec![],
            stopped_servers: vec![],
        }
    }

    #[test]
    fn an_archive_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("b.tar.gz");
        let home = dir.path().join("alice-home.tar");
        std::fs::write(&home, b"not really a tar, but bytes are bytes").unwrap();
        let state = StateExport {
            schema_version: 2,
            instance_id: "inst".into(),
            trees: Default::default(),
        };
        let mut w = Writer::create(&dest).unwrap();
        w.add_bytes(MANIFEST, &serde_json::to_vec(&manifest()).unwrap())
            .unwrap();
        w.add_bytes(STATE, &serde_json::to_vec(&state).unwrap())
            .unwrap();
        w.add_bytes(CONFIG, b"[http]\nport = 8000\n").unwrap();
        w.add_file("homes/alice.tar", &home).unwrap();
        w.finish().unwrap();
        assert!(!dir.path().join("b.tar.gz.partial").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "hashes inside: root only");
        }
        assert!(
            Writer::create(&dest).is_err(),
            "an existing backup is never overwritten"
        );

        let scratch = tempfile::tempdir().unwrap();
        let c = read(&dest, scratch.path()).unwrap();
        assert_eq!(c.manifest.instance_id, "inst");
        assert_eq!(c.state.schema_version, 2);
        assert_eq!(c.config.as_deref(), Some(&b"[http]\nport = 8000\n"[..]));
        assert_eq!(c.homes.len(), 1);
        assert_eq!(
            std::fs::read(&c.homes[0].1).unwrap(),
            b"not really a tar, but bytes are bytes"
        );
    }

    #[test]
    fn a_file_that_is_not_a_backup_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.tar.gz");
        std::fs::write(&f, b"hello").unwrap();
        let err = read(&f, dir.path()).err().unwrap().to_string();
        assert!(err.contains("is not an Orrery backup"), "{err}");
        // A newer format is refused with the version that wrote it.
        let newer = dir.path().join("n.tar.gz");
        let mut w = Writer::create(&newer).unwrap();
        let mut m = manifest();
        m.format = FORMAT + 1;
        m.orrery_version = "9.0.0".into();
        w.add_bytes(MANIFEST, &serde_json::to_vec(&m).unwrap())
            .unwrap();
        w.finish().unwrap();
        let err = read(&newer, dir.path()).err().unwrap().to_string();
        assert!(err.contains("Orrery 9.0.0"), "{err}");
    }

    #[test]
    fn a_backup_cut_short_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("b.tar.gz");
        {
            let mut w = Writer::create(&dest).unwrap();
            w.add_bytes(MANIFEST, b"{}").unwrap();
            // dropped without finish()
        }
        assert!(!dest.exists());
        assert!(!dir.path().join("b.tar.gz.partial").exists());
    }
}
