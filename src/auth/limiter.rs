//! Login attempt limits: per user (failures) and per source address (all attempts), counted in
//! fixed windows. Time comes in as an argument so tests step it.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::model::AppId;

/// Counts per key within a window that restarts when it has elapsed.
#[derive(Debug)]
struct WindowCounter<K> {
    window_s: i64,
    entries: Mutex<HashMap<K, (i64, u32)>>,
}

impl<K: Eq + Hash + Clone> WindowCounter<K> {
    fn new(window_s: i64) -> Self {
        WindowCounter {
            window_s,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn count(&self, key: &K, now: i64) -> u32 {
        let entries = self
            .entries
            .lock()
            .expect("limiter lock is never held across a panic");
        match entries.get(key) {
            Some((start, count)) if now - start < self.window_s => *count,
            _ => 0,
        }
    }

    fn add(&self, key: &K, now: i64) {
        let mut entries = self
            .entries
            .lock()
            .expect("limiter lock is never held across a panic");
        let entry = entries.entry(key.clone()).or_insert((now, 0));
        if now - entry.0 >= self.window_s {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    fn clear(&self, key: &K) {
        self.entries
            .lock()
            .expect("limiter lock is never held across a panic")
            .remove(key);
    }

    fn prune(&self, now: i64) {
        let mut entries = self
            .entries
            .lock()
            .expect("limiter lock is never held across a panic");
        entries.retain(|_, (start, _)| now - *start < self.window_s);
    }
}

/// Why a login attempt was refused before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    User,
    Source,
}

/// The per-user and per-source login limits.
#[derive(Debug)]
pub struct LoginLimiter {
    user_failures: WindowCounter<(AppId, String)>,
    source_attempts: WindowCounter<IpAddr>,
    max_user_failures: u32,
    max_source_attempts: u32,
}

impl LoginLimiter {
    pub fn new(window_s: u64, max_user_failures: u32, max_source_attempts: u32) -> Self {
        let window_s = window_s.max(1) as i64;
        LoginLimiter {
            user_failures: WindowCounter::new(window_s),
            source_attempts: WindowCounter::new(window_s),
            max_user_failures,
            max_source_attempts,
        }
    }

    /// Called before checking a password; counts the attempt against the source.
    pub fn begin(
        &self,
        app: AppId,
        login: &str,
        source: Option<IpAddr>,
        now: i64,
    ) -> Result<(), Throttled> {
        if let Some(ip) = source {
            if self.source_attempts.count(&ip, now) >= self.max_source_attempts {
                return Err(Throttled::Source);
            }
            self.source_attempts.add(&ip, now);
        }
        if self.user_failures.count(&(app, login.to_lowercase()), now) >= self.max_user_failures {
            return Err(Throttled::User);
        }
        Ok(())
    }

    /// Records the outcome of a checked password.
    pub fn finish(&self, app: AppId, login: &str, success: bool, now: i64) {
        let key = (app, login.to_lowercase());
        if success {
            self.user_failures.clear(&key);
        } else {
            self.user_failures.add(&key, now);
        }
    }

    /// Forgets windows that have ended; run periodically.
    pub fn prune(&self, now: i64) {
        self.user_failures.prune(now);
        self.source_attempts.prune(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_failures_lock_out_until_window_ends() {
        let limiter = LoginLimiter::new(60, 3, 1000);
        let app = AppId(1);
        for _ in 0..3 {
            assert_eq!(limiter.begin(app, "Bob", None, 100), Ok(()));
            limiter.finish(app, "bob", false, 100);
        }
        assert_eq!(limiter.begin(app, "bob", None, 130), Err(Throttled::User));
        assert_eq!(
            limiter.begin(AppId(2), "bob", None, 130),
            Ok(()),
            "other app unaffected"
        );
        assert_eq!(limiter.begin(app, "bob", None, 160), Ok(()), "window over");
    }

    #[test]
    fn success_resets_failures() {
        let limiter = LoginLimiter::new(60, 2, 1000);
        let app = AppId(1);
        limiter.finish(app, "bob", false, 0);
        limiter.finish(app, "bob", true, 1);
        limiter.finish(app, "bob", false, 2);
        assert_eq!(limiter.begin(app, "bob", None, 3), Ok(()));
    }

    #[test]
    fn source_attempts_are_capped() {
        let limiter = LoginLimiter::new(60, 100, 2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limiter.begin(AppId(1), "a", Some(ip), 0).is_ok());
        assert!(limiter.begin(AppId(1), "b", Some(ip), 1).is_ok());
        assert_eq!(
            limiter.begin(AppId(1), "c", Some(ip), 2),
            Err(Throttled::Source)
        );
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.begin(AppId(1), "c", Some(other), 2).is_ok());
        limiter.prune(61);
        assert!(limiter.begin(AppId(1), "c", Some(ip), 61).is_ok());
    }
}
