//! Login attempt limits: failures per user and source, and per source address, counted in
//! fixed windows. Time comes in as an argument so tests step it.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::model::{AppId, UserId};

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
    /// This source failed too often for this user: it backs off from that user only.
    User,
    /// This source failed too often, whoever it tried.
    Source,
}

/// Login limits that slow guessing without locking anyone out.
///
/// Only failures count, never successes (a whole office behind one NAT logs in from one
/// address), and a user's failures are counted per source: an attacker who guesses a user's
/// password from some addresses backs off from that user on those addresses, while the real
/// user's logins from elsewhere go on (before, ten wrong passwords from anywhere locked the
/// user out everywhere). Users are keyed by id, so REST logins by login or e-mail and XMPP
/// logins share one count, and two logins that differ in case are two users, as they are in
/// the store. A valid session token never reaches the limiter.
#[derive(Debug)]
pub struct LoginLimiter {
    user_failures: WindowCounter<(AppId, UserId, Option<IpAddr>)>,
    source_failures: WindowCounter<IpAddr>,
    max_user_failures: u32,
    max_source_failures: u32,
}

impl LoginLimiter {
    pub fn new(window_s: u64, max_user_failures: u32, max_source_failures: u32) -> Self {
        let window_s = window_s.max(1) as i64;
        LoginLimiter {
            user_failures: WindowCounter::new(window_s),
            source_failures: WindowCounter::new(window_s),
            max_user_failures,
            max_source_failures,
        }
    }

    /// Called before checking a password for `user` (`None`: no such user) from `source`.
    pub fn begin(
        &self,
        app: AppId,
        user: Option<UserId>,
        source: Option<IpAddr>,
        now: i64,
    ) -> Result<(), Throttled> {
        if let Some(ip) = source {
            if self.source_failures.count(&ip, now) >= self.max_source_failures {
                return Err(Throttled::Source);
            }
        }
        if let Some(user) = user {
            if self.user_failures.count(&(app, user, source), now) >= self.max_user_failures {
                return Err(Throttled::User);
            }
        }
        Ok(())
    }

    /// Records the outcome of a checked password.
    pub fn finish(
        &self,
        app: AppId,
        user: Option<UserId>,
        source: Option<IpAddr>,
        success: bool,
        now: i64,
    ) {
        if success {
            if let Some(user) = user {
                self.user_failures.clear(&(app, user, source));
            }
            return;
        }
        if let Some(ip) = source {
            self.source_failures.add(&ip, now);
        }
        if let Some(user) = user {
            self.user_failures.add(&(app, user, source), now);
        }
    }

    /// Forgets windows that have ended; run periodically.
    pub fn prune(&self, now: i64) {
        self.user_failures.prune(now);
        self.source_failures.prune(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_users_failures_slow_the_guessing_source_not_the_user() {
        let limiter = LoginLimiter::new(60, 3, 1000);
        let (app, bob) = (AppId(1), Some(UserId(7)));
        let attacker = ip("192.0.2.66");
        for _ in 0..3 {
            assert_eq!(limiter.begin(app, bob, attacker, 100), Ok(()));
            limiter.finish(app, bob, attacker, false, 100);
        }
        assert_eq!(limiter.begin(app, bob, attacker, 130), Err(Throttled::User));
        // Bob himself, from his own address, is not locked out.
        assert_eq!(limiter.begin(app, bob, ip("198.51.100.1"), 130), Ok(()));
        assert_eq!(
            limiter.begin(AppId(2), bob, attacker, 130),
            Ok(()),
            "other app"
        );
        assert_eq!(
            limiter.begin(app, bob, attacker, 160),
            Ok(()),
            "window over"
        );
    }

    #[test]
    fn success_resets_failures() {
        let limiter = LoginLimiter::new(60, 2, 1000);
        let (app, bob, from) = (AppId(1), Some(UserId(7)), ip("192.0.2.1"));
        limiter.finish(app, bob, from, false, 0);
        limiter.finish(app, bob, from, true, 1);
        limiter.finish(app, bob, from, false, 2);
        assert_eq!(limiter.begin(app, bob, from, 3), Ok(()));
    }

    #[test]
    fn sources_are_capped_by_failures_and_never_by_successes() {
        let limiter = LoginLimiter::new(60, 100, 2);
        let office = ip("192.0.2.1");
        // A thousand colleagues behind one NAT log in.
        for user in 0..1000 {
            assert!(limiter
                .begin(AppId(1), Some(UserId(user)), office, 0)
                .is_ok());
            limiter.finish(AppId(1), Some(UserId(user)), office, true, 0);
        }
        // Failures, even for users that do not exist, count against the source.
        limiter.finish(AppId(1), None, office, false, 1);
        limiter.finish(AppId(1), Some(UserId(5)), office, false, 1);
        assert_eq!(
            limiter.begin(AppId(1), Some(UserId(6)), office, 2),
            Err(Throttled::Source)
        );
        assert!(limiter
            .begin(AppId(1), Some(UserId(6)), ip("192.0.2.2"), 2)
            .is_ok());
        limiter.prune(61);
        assert!(limiter.begin(AppId(1), Some(UserId(6)), office, 61).is_ok());
    }
}
