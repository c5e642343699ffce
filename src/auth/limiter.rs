//! Login attempt limits: failures per user and source, and per source address, counted in
//! fixed windows. Time comes in as an argument so tests step it.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

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

type TurnKey = (AppId, UserId, Option<IpAddr>);

/// An attempt's turn for its user and source; the next attempt waits until this is dropped.
pub struct LoginTurn<'a> {
    limiter: &'a LoginLimiter,
    key: TurnKey,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for LoginTurn<'_> {
    fn drop(&mut self) {
        // The entry goes when nobody else waits on it (the map and this turn hold the only
        // references), so the map holds attempts under way, not every user ever tried.
        self.limiter.turns.remove_if(&self.key, |_, lock| {
            Arc::ptr_eq(lock, &self.lock) && Arc::strong_count(lock) <= 3
        });
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
    /// One lock per (user, source) with an attempt under way; see [`LoginLimiter::turn`].
    turns: DashMap<TurnKey, Arc<tokio::sync::Mutex<()>>>,
    source_failures: WindowCounter<IpAddr>,
    max_user_failures: u32,
    max_source_failures: u32,
}

impl LoginLimiter {
    pub fn new(window_s: u64, max_user_failures: u32, max_source_failures: u32) -> Self {
        let window_s = window_s.max(1) as i64;
        LoginLimiter {
            user_failures: WindowCounter::new(window_s),
            turns: DashMap::new(),
            source_failures: WindowCounter::new(window_s),
            max_user_failures,
            max_source_failures,
        }
    }

    /// Whether `source` may try at all (a cheap check before looking the user up).
    pub fn check_source(&self, source: Option<IpAddr>, now: i64) -> Result<(), Throttled> {
        match source {
            Some(ip) if self.source_failures.count(&ip, now) >= self.max_source_failures => {
                Err(Throttled::Source)
            }
            _ => Ok(()),
        }
    }

    /// Waits for this attempt's turn: attempts for one user from one source run one at a time,
    /// so guesses sent in parallel are each checked against the failures before them (they
    /// cannot all pass the same check), while a legitimate burst of logins of different users,
    /// or of one user whose password was just verified, goes through at once.
    pub async fn turn(&self, app: AppId, user: UserId, source: Option<IpAddr>) -> LoginTurn<'_> {
        let key = (app, user, source);
        let lock = self.turns.entry(key).or_default().clone();
        let guard = lock.clone().lock_owned().await;
        LoginTurn {
            limiter: self,
            key,
            lock,
            _guard: guard,
        }
    }

    /// Called (in its turn) before checking a password for `user` (`None`: no such user)
    /// from `source`.
    pub fn begin(
        &self,
        app: AppId,
        user: Option<UserId>,
        source: Option<IpAddr>,
        now: i64,
    ) -> Result<(), Throttled> {
        self.check_source(source, now)?;
        if let Some(user) = user {
            if self.user_failures.count(&(app, user, source), now) >= self.max_user_failures {
                return Err(Throttled::User);
            }
        }
        Ok(())
    }

    /// Records the outcome of an attempt: `Some(true)` a correct password, `Some(false)` a
    /// wrong one, `None` no verdict (the hashing pool was busy). Only a wrong password counts.
    pub fn finish(
        &self,
        app: AppId,
        user: Option<UserId>,
        source: Option<IpAddr>,
        verdict: Option<bool>,
        now: i64,
    ) {
        match verdict {
            Some(false) => {
                if let Some(ip) = source {
                    self.source_failures.add(&ip, now);
                }
                if let Some(user) = user {
                    self.user_failures.add(&(app, user, source), now);
                }
            }
            Some(true) => {
                if let Some(user) = user {
                    self.user_failures.clear(&(app, user, source));
                }
            }
            None => {}
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

    /// One attempt through the limiter with its verdict.
    fn attempt(
        limiter: &LoginLimiter,
        user: Option<UserId>,
        source: Option<IpAddr>,
        verdict: Option<bool>,
        now: i64,
    ) -> Result<(), Throttled> {
        limiter.begin(AppId(1), user, source, now)?;
        limiter.finish(AppId(1), user, source, verdict, now);
        Ok(())
    }

    #[test]
    fn a_users_failures_slow_the_guessing_source_not_the_user() {
        let limiter = LoginLimiter::new(60, 3, 1000);
        let bob = Some(UserId(7));
        let attacker = ip("192.0.2.66");
        for _ in 0..3 {
            assert_eq!(attempt(&limiter, bob, attacker, Some(false), 100), Ok(()));
        }
        assert_eq!(
            limiter.begin(AppId(1), bob, attacker, 130),
            Err(Throttled::User)
        );
        // Bob himself, from his own address, is not locked out.
        assert_eq!(
            attempt(&limiter, bob, ip("198.51.100.1"), Some(true), 130),
            Ok(())
        );
        assert_eq!(
            limiter.begin(AppId(2), bob, attacker, 130),
            Ok(()),
            "other app"
        );
        assert_eq!(
            limiter.begin(AppId(1), bob, attacker, 160),
            Ok(()),
            "window over"
        );
    }

    #[tokio::test]
    async fn attempts_for_one_user_and_source_take_turns() {
        let limiter = LoginLimiter::new(60, 3, 1000);
        let (bob, from) = (UserId(7), ip("192.0.2.66"));
        let first = limiter.turn(AppId(1), bob, from).await;
        // A second guess for bob from the same address waits for the first to finish…
        let second = limiter.turn(AppId(1), bob, from);
        tokio::pin!(second);
        assert!(futures_util::poll!(second.as_mut()).is_pending());
        // …while another user, or bob from elsewhere, goes at once.
        drop(limiter.turn(AppId(1), UserId(8), from).await);
        drop(limiter.turn(AppId(1), bob, ip("192.0.2.67")).await);
        drop(first);
        drop(second.await);
        assert!(limiter.turns.is_empty(), "finished turns are forgotten");
    }

    #[test]
    fn success_resets_failures() {
        let limiter = LoginLimiter::new(60, 2, 1000);
        let (bob, from) = (Some(UserId(7)), ip("192.0.2.1"));
        attempt(&limiter, bob, from, Some(false), 0).unwrap();
        attempt(&limiter, bob, from, Some(true), 1).unwrap();
        attempt(&limiter, bob, from, Some(false), 2).unwrap();
        assert_eq!(limiter.begin(AppId(1), bob, from, 3), Ok(()));
    }

    #[test]
    fn sources_are_capped_by_failures_and_never_by_successes() {
        let limiter = LoginLimiter::new(60, 100, 2);
        let office = ip("192.0.2.1");
        // A thousand colleagues behind one NAT log in.
        for user in 0..1000 {
            assert!(attempt(&limiter, Some(UserId(user)), office, Some(true), 0).is_ok());
        }
        // Failures, even for users that do not exist, count against the source.
        attempt(&limiter, None, office, Some(false), 1).unwrap();
        attempt(&limiter, Some(UserId(5)), office, Some(false), 1).unwrap();
        assert_eq!(
            limiter.begin(AppId(1), Some(UserId(6)), office, 2),
            Err(Throttled::Source)
        );
        assert_eq!(limiter.check_source(office, 2), Err(Throttled::Source));
        assert!(limiter
            .begin(AppId(1), Some(UserId(6)), ip("192.0.2.2"), 2)
            .is_ok());
        limiter.prune(61);
        assert!(limiter.begin(AppId(1), Some(UserId(6)), office, 61).is_ok());
    }
}
