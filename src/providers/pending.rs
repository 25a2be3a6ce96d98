//! Logins sent to a provider and waiting for its callback, by their `state`: what the callback
//! needs (the PKCE verifier, the nonce, where to go afterwards). Taking one removes it, so a
//! callback replayed with the same state finds nothing; old ones expire after [`PENDING_FOR`],
//! and at most [`MAX_PENDING`] are kept (the oldest go first).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a login may take at the provider.
pub const PENDING_FOR: Duration = Duration::from_secs(600);
/// At most this many logins in progress are remembered.
const MAX_PENDING: usize = 10_000;

pub struct Pending<T> {
    waiting: Mutex<HashMap<String, (Instant, T)>>,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Pending {
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Pending<T> {
    /// Remember `what` under `state`.
    pub fn put(&self, state: &str, what: T) {
        let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        w.retain(|_, (began, _)| began.elapsed() < PENDING_FOR);
        if w.len() >= MAX_PENDING {
            if let Some(oldest) = w
                .iter()
                .min_by_key(|(_, (began, _))| *began)
                .map(|(k, _)| k.clone())
            {
                w.remove(&oldest);
            }
        }
        w.insert(state.to_string(), (Instant::now(), what));
    }

    /// Take what waits under `state`, if it is there and not expired (once).
    pub fn take(&self, state: &str) -> Option<T> {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(state)
            .filter(|(began, _)| began.elapsed() < PENDING_FOR)
            .map(|(_, what)| what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_taken_once() {
        let p = Pending::default();
        p.put("s1", 1);
        p.put("s2", 2);
        assert_eq!(p.take("s1"), Some(1));
        assert_eq!(p.take("s1"), None, "replayed");
        assert_eq!(p.take("nope"), None);
        assert_eq!(p.take("s2"), Some(2));
    }
}
