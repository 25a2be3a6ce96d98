//! Failed-login throttling: a sliding window of failures per key (user name, client IP).
//!
//! After `attempts` failures inside `window`, further attempts for that key are refused until
//! the oldest failure leaves the window. A success clears the user's key (not the IP's: one
//! right password must not unlock guessing other users' passwords from the same address).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct RateLimiter {
    /// Failure times per key, oldest first.
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// `Err(retry_after)` if `key` has used up its attempts.
    pub fn check(&self, key: &str, attempts: u32, window: Duration) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = map.get_mut(key) else {
            return Ok(());
        };
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.is_empty() {
            map.remove(key);
            return Ok(());
        }
        if q.len() as u32 >= attempts.max(1) {
            let oldest = q.front().copied().unwrap_or(now);
            return Err(window
                .saturating_sub(now.duration_since(oldest))
                .max(Duration::from_secs(1)));
        }
        Ok(())
    }

    pub fn record_failure(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let q = map.entry(key.to_string()).or_default();
        q.push_back(Instant::now());
        // Bound memory per key whatever the configured attempts.
        while q.len() > 1000 {
            q.pop_front();
        }
    }

    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_attempts_and_resets() {
        let rl = RateLimiter::default();
        let w = Duration::from_secs(60);
        for _ in 0..3 {
            assert!(rl.check("u:a", 3, w).is_ok());
            rl.record_failure("u:a");
        }
        let retry = rl.check("u:a", 3, w).unwrap_err();
        assert!(retry <= w && retry >= Duration::from_secs(1));
        assert!(rl.check("u:b", 3, w).is_ok());
        rl.reset("u:a");
        assert!(rl.check("u:a", 3, w).is_ok());
    }

    #[test]
    fn window_expires() {
        let rl = RateLimiter::default();
        rl.record_failure("k");
        assert!(
            rl.check("k", 1, Duration::from_millis(1)).is_ok() || {
                std::thread::sleep(Duration::from_millis(5));
                rl.check("k", 1, Duration::from_millis(1)).is_ok()
            }
        );
    }
}
