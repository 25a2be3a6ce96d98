//! Spawn progress and spawn slots: what the hub knows of the spawns in flight.
//!
//! Each server's latest spawn keeps its events in a `watch` channel, so the progress API and
//! the spawn-pending page can replay what happened and then follow along. A spawn holds a
//! [`SpawnSlot`] while it runs; `spawner.concurrent_spawn_limit` bounds the slots, and a slot
//! is given back when it is dropped, on every path out of a spawn.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

/// One event of the progress stream, in JupyterHub's shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProgressEvent {
    pub progress: u8,
    pub message: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ready: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Spawns in flight and the progress of the latest spawn of each server.
#[derive(Default)]
pub struct Spawns {
    /// `user/server` → all events so far of its latest spawn.
    progress: Mutex<HashMap<String, watch::Sender<Vec<ProgressEvent>>>>,
    /// Slots in use; shared with the [`SpawnSlot`]s, which give theirs back when dropped.
    in_flight: Arc<AtomicUsize>,
}

/// A spawn slot: held by a spawn from its start to its end, given back on drop.
#[derive(Debug)]
pub struct SpawnSlot {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for SpawnSlot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn key(user: &str, server: &str) -> String {
    format!("{user}/{server}")
}

impl Spawns {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Take a spawn slot if fewer than `limit` are in use (atomically: concurrent requests
    /// can't both take the last one).
    pub fn try_reserve(&self, limit: usize) -> Option<SpawnSlot> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| SpawnSlot {
                in_flight: self.in_flight.clone(),
            })
    }

    /// Subscribe to a server's progress; None if it never spawned since the daemon started.
    pub fn subscribe(
        &self,
        user: &str,
        server: &str,
    ) -> Option<watch::Receiver<Vec<ProgressEvent>>> {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key(user, server))
            .map(|s| s.subscribe())
    }

    /// Start a new progress stream for a server (replacing the one of its last spawn).
    pub fn begin(&self, user: &str, server: &str) -> watch::Sender<Vec<ProgressEvent>> {
        let (tx, _) = watch::channel(Vec::new());
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key(user, server), tx.clone());
        tx
    }
}

/// Add an event to a progress stream.
pub fn push(tx: &watch::Sender<Vec<ProgressEvent>>, ev: ProgressEvent) {
    tx.send_modify(|v| v.push(ev));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back_on_drop() {
        let spawns = Spawns::default();
        let a = spawns.try_reserve(2).expect("first");
        let b = spawns.try_reserve(2).expect("second");
        assert!(spawns.try_reserve(2).is_none(), "the limit holds");
        assert_eq!(spawns.in_flight(), 2);
        drop(a);
        assert_eq!(spawns.in_flight(), 1);
        let c = spawns.try_reserve(2).expect("a slot came back");
        drop((b, c));
        assert_eq!(spawns.in_flight(), 0);
    }
}
