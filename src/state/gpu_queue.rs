//! The GPU queue: kernels waiting for units, in the state store so that a restarted daemon
//! (even after `kill -9`) keeps every waiting kernel's place in line. Each entry also keeps
//! the headers of the cells held while it waits, so that after a restart they are answered
//! (with a request to run them again) instead of spinning forever.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{all, encode, Result, Store};
use crate::gpu::scheduler::Request;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub request: Request,
    /// Headers of the execute requests held for the kernel (their replies' parents).
    #[serde(default)]
    pub held: Vec<Value>,
}

impl Store {
    /// Every waiting request, in arrival order.
    pub fn gpu_queue(&self) -> Result<Vec<QueueEntry>> {
        let mut v: Vec<QueueEntry> = all(&self.gpu_queue, "GPU queue entry")?;
        v.sort_by(|a, b| {
            (a.request.since, &a.request.kernel).cmp(&(b.request.since, &b.request.kernel))
        });
        Ok(v)
    }

    /// Add or update the entry of `entry.request.kernel`; on disk when this returns.
    pub fn put_gpu_wait(&self, entry: &QueueEntry) -> Result<()> {
        self.gpu_queue
            .insert(entry.request.kernel.as_bytes(), encode(entry))?;
        self.db.flush()?;
        Ok(())
    }

    /// Take `kernel` out of the queue (granted, timed out, deleted); on disk when this returns.
    pub fn remove_gpu_wait(&self, kernel: &str) -> Result<()> {
        if self.gpu_queue.remove(kernel.as_bytes())?.is_some() {
            self.db.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_survives_reopening_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let at = |s: i64| chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let entry = |k: &str, s| QueueEntry {
            request: Request {
                kernel: k.into(),
                user: "u".into(),
                units: 1,
                gpu_model: None,
                mig_profile: None,
                since: at(s),
                priority: 0,
            },
            held: vec![serde_json::json!({"msg_id": "m"})],
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_gpu_wait(&entry("zz-first", 1)).unwrap();
            store.put_gpu_wait(&entry("aa-second", 2)).unwrap();
            store.put_gpu_wait(&entry("gone", 3)).unwrap();
            store.remove_gpu_wait("gone").unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let q = store.gpu_queue().unwrap();
        let kernels: Vec<&str> = q.iter().map(|e| e.request.kernel.as_str()).collect();
        assert_eq!(kernels, ["zz-first", "aa-second"]);
        assert_eq!(q[0].held[0]["msg_id"], "m");
    }
}
