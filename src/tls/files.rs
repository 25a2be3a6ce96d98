//! Certificate files (`https.tls.cert`, `https.tls.key`): loaded at start, and again whenever
//! they change (checked every few seconds, and at once after `orrery config reload`, which may
//! name other files). A bad new pair is refused with the reason and the old certificate stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::{certified_key, Certs, TlsError};
use crate::config::SharedConfig;

/// How often the files are looked at.
const WATCH_EVERY: Duration = Duration::from_secs(2);

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Load the pair into `certs`; Err: why not (the served certificate is kept).
pub fn load(certs: &Certs, cert: &Path, key: &Path) -> Result<(), TlsError> {
    let (ck, info) = certified_key(&read(cert)?, &read(key)?)?;
    certs.install(ck, info);
    Ok(())
}

fn stamp(paths: &(PathBuf, PathBuf)) -> Option<(SystemTime, SystemTime, u64, u64)> {
    let a = std::fs::metadata(&paths.0).ok()?;
    let b = std::fs::metadata(&paths.1).ok()?;
    Some((a.modified().ok()?, b.modified().ok()?, a.len(), b.len()))
}

/// Reload the pair whenever the configured paths or the files change.
pub async fn watch(certs: Arc<Certs>, config: SharedConfig, stop: CancellationToken) {
    let paths = |c: &SharedConfig| {
        let t = c.get().https.tls.clone();
        t.cert.zip(t.key)
    };
    let mut seen = paths(&config).map(|p| (stamp(&p), p));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(WATCH_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        let Some(now) = paths(&config) else { continue };
        let stamp_now = stamp(&now);
        if seen.as_ref() == Some(&(stamp_now, now.clone())) {
            continue;
        }
        match load(&certs, &now.0, &now.1) {
            Ok(()) => {
                tracing::info!(cert = %now.0.display(), "certificate files changed: reloaded")
            }
            Err(e) => certs.fail(format!(
                "the new certificate files were not loaded ({e}); still serving the previous one"
            )),
        }
        seen = Some((stamp_now, now));
    }
}
