//! Logging: to the systemd journal when started by systemd (`JOURNAL_STREAM` is set), else
//! human-readable lines on stderr. `RUST_LOG` overrides `logging.level`.
//!
//! In the journal an event's fields are journal fields of their own, named `ORRERY_<FIELD>`:
//! `journalctl -u orrery ORRERY_USER=alice` shows one user's servers and kernels
//! (`ORRERY_USER`, `ORRERY_SERVER`, `ORRERY_KERNEL`, `ORRERY_TOOK_MS`, …).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            let _ = registry
                .with(
                    journald
                        .with_syslog_identifier("orrery".into())
                        .with_field_prefix(Some("ORRERY".into())),
                )
                .try_init();
            return;
        }
    }
    let _ = registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init();
}
