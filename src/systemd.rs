//! The daemon's side of systemd's `Type=notify` protocol, through the sd-notify crate:
//! `READY=1` once it serves, `RELOADING=1` with `MONOTONIC_USEC` while a SIGHUP reload runs
//! (then `READY=1` again), `STOPPING=1` at shutdown, and `WATCHDOG=1` keep-alives sent from
//! the async runtime itself, so a daemon whose runtime is frozen or wedged misses them and is
//! restarted by systemd (`WatchdogSec` in the unit). Without `$NOTIFY_SOCKET` (not run by
//! systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

/// Serving: listeners bound, earlier servers taken back.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins (systemd ≥ 253 wants the monotonic time with it).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// The watchdog interval systemd asked for, as libsystemd's `sd_watchdog_enabled` reads it:
/// `$WATCHDOG_USEC`, for this process when `$WATCHDOG_PID` names it or is not set (the
/// sd-notify crate's own check insists on the PID).
fn watchdog_usec() -> Option<u64> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    let for_us = std::env::var("WATCHDOG_PID")
        .ok()
        .is_none_or(|p| p.parse::<u32>().ok() == Some(std::process::id()));
    (usec > 0 && for_us).then_some(usec)
}

/// Send `WATCHDOG=1` at half of `$WATCHDOG_USEC` until `stop`; nothing when systemd set no
/// watchdog.
pub async fn watchdog(stop: CancellationToken) {
    let Some(usec) = watchdog_usec() else {
        return;
    };
    let every = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    tracing::debug!(?every, "systemd watchdog keep-alives");
    loop {
        send(&[NotifyState::Watchdog]);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}
