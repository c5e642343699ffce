//! Applications, sessions, credentials and who may do what.
//!
//! [`Auth`] turns a request's credentials (a `QB-Token`, or `Authorization: ApiKey …` for
//! server-to-server calls) into a [`Caller`], creates sessions from signed requests, and checks
//! user passwords with per-user and per-source limits. Sessions are cached in memory by token
//! hash; the cache re-reads the store at least every [`REVALIDATE_S`] seconds so a session
//! destroyed elsewhere (another node, the CLI) stops working within that bound.

pub mod hasher;
pub mod limiter;
pub mod secrets;
pub mod signature;

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;

use crate::config::ApiConfig;
use crate::model::{App, AppId, FilterValue, Session, User, UserField, UserId};
use crate::store::{Store, StoreError};
use limiter::{LoginLimiter, Throttled};

/// How often a cached session is checked against the store.
pub const REVALIDATE_S: i64 = 30;
/// The sliding expiry is written to the store only when it moved at least this far, so a busy
/// client does not cost a write per request. A restart can thus shorten a session by this much.
const PERSIST_EXPIRY_STEP_S: i64 = 60;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An application session: read-only, may sign a user up or log one in.
    Application,
    /// A user session: read everything, write what the user owns.
    User(UserId),
    /// The account owner, via an API key: may manage every user of the application.
    AccountOwner,
}

/// An authenticated request's identity.
#[derive(Debug, Clone)]
pub struct Caller {
    pub app: Arc<App>,
    pub principal: Principal,
    /// The session used, when the caller came with a token.
    pub session: Option<Session>,
}

impl Caller {
    pub fn user_id(&self) -> Option<UserId> {
        match self.principal {
            Principal::User(id) => Some(id),
            _ => None,
        }
    }

    pub fn is_owner(&self) -> bool {
        self.principal == Principal::AccountOwner
    }

    /// The session's current expiry, for `QB-Token-ExpirationDate`.
    pub fn expires_at(&self) -> Option<i64> {
        self.session.as_ref().map(|s| s.expires_at)
    }
}

/// Why a credential check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("Required session does not exist")]
    NoSession,
    #[error("Unauthorized")]
    BadCredentials,
    #[error("too many login attempts")]
    Throttled(Throttled),
    /// The password hashing pool is saturated: the check did not run (not a wrong password).
    #[error("password checks are overloaded")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a user names themselves when logging in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginName {
    Login(String),
    Email(String),
}

#[derive(Debug, Clone)]
struct CachedSession {
    session: Session,
    app: Arc<App>,
    checked_at: i64,
    persisted_expires_at: i64,
}

/// Sessions, credentials and limits; shared by the REST API and (later) XMPP SASL.
#[derive(Debug)]
pub struct Auth {
    store: Store,
    sessions: DashMap<String, CachedSession>,
    limiter: LoginLimiter,
    token_ttl_s: i64,
    /// Password checks that succeeded, see [`Auth::verify_password`].
    verified: DashMap<UserId, [u8; 32]>,
    process_key: ProcessKey,
    passwords: hasher::PasswordPool,
}

/// A random key that never leaves this process (and never appears in `Debug` output).
struct ProcessKey([u8; 32]);

impl std::fmt::Debug for ProcessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcessKey(..)")
    }
}

/// Entries kept in the verified-password cache before it is cleared.
const VERIFIED_CACHE_MAX: usize = 200_000;

impl Auth {
    pub fn new(store: Store, config: &ApiConfig) -> Auth {
        Auth {
            store,
            sessions: DashMap::new(),
            limiter: LoginLimiter::new(
                config.login_window_s,
                config.login_failures_per_user,
                config.login_attempts_per_source,
            ),
            token_ttl_s: config.token_ttl_s as i64,
            verified: DashMap::new(),
            process_key: {
                let mut key = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
                ProcessKey(key)
            },
            passwords: hasher::PasswordPool::for_this_machine(
                hasher::params(config.password_hash_memory_kib, config.password_hash_passes)
                    .expect("validated with the configuration"),
            ),
        }
    }

    pub fn token_ttl_s(&self) -> i64 {
        self.token_ttl_s
    }

    /// Resolves a session token and slides its expiry forward.
    pub async fn authenticate_token(&self, token: &str, now: i64) -> Result<Caller, AuthError> {
        let hash = secrets::credential_hash(token);
        let mut cached = self.cached_session(&hash, now).await?;
        if cached.session.expires_at < now {
            self.sessions.remove(&hash);
            return Err(AuthError::NoSession);
        }
        cached.session.expires_at = now + self.token_ttl_s;
        if cached.session.expires_at - cached.persisted_expires_at >= PERSIST_EXPIRY_STEP_S {
            self.store
                .extend_session(&hash, cached.session.expires_at)
                .await?;
            cached.persisted_expires_at = cached.session.expires_at;
            if let Some(user) = cached.session.user_id {
                self.store.touch_user(cached.app.id, user, now).await?;
            }
        }
        self.sessions.insert(hash, cached.clone());
        let principal = match cached.session.user_id {
            Some(user) => Principal::User(user),
            None => Principal::Application,
        };
        Ok(Caller {
            app: cached.app,
            principal,
            session: Some(cached.session),
        })
    }

    /// Resolves an API key to the account owner of its application.
    pub async fn authenticate_api_key(&self, key: &str) -> Result<Caller, AuthError> {
        let hash = secrets::credential_hash(key);
        let app = self
            .store
            .app_by_api_key_hash(&hash)
            .await?
            .ok_or(AuthError::NoSession)?;
        Ok(Caller {
            app: Arc::new(app),
            principal: Principal::AccountOwner,
            session: None,
        })
    }

    /// The user a token belongs to, without sliding it (XMPP SASL accepts tokens as passwords).
    pub async fn token_user(&self, token: &str, now: i64) -> Result<(AppId, UserId), AuthError> {
        let hash = secrets::credential_hash(token);
        let cached = self.cached_session(&hash, now).await?;
        match cached.session.user_id {
            Some(user) if cached.session.expires_at >= now => Ok((cached.app.id, user)),
            _ => Err(AuthError::NoSession),
        }
    }

    async fn cached_session(&self, hash: &str, now: i64) -> Result<CachedSession, AuthError> {
        if let Some(entry) = self.sessions.get(hash) {
            if now - entry.checked_at < REVALIDATE_S {
                return Ok(entry.clone());
            }
        }
        let Some(stored) = self.store.session_by_token_hash(hash).await? else {
            self.sessions.remove(hash);
            return Err(AuthError::NoSession);
        };
        let Some(app) = self.store.app(stored.app_id).await? else {
            return Err(AuthError::NoSession);
        };
        // Keep a newer in-memory expiry than the store's (it is written lazily).
        let expires_at = self.sessions.get(hash).map_or(stored.expires_at, |e| {
            e.session.expires_at.max(stored.expires_at)
        });
        let persisted_expires_at = stored.expires_at;
        let mut session = stored;
        session.expires_at = expires_at;
        Ok(CachedSession {
            session,
            app: Arc::new(app),
            checked_at: now,
            persisted_expires_at,
        })
    }

    /// Creates a session for `app` (already signature-checked), optionally bound to `user`.
    /// Returns the session and its token; the token exists only in this return value.
    pub async fn open_session(
        &self,
        app: &App,
        user: Option<UserId>,
        nonce: i64,
        ts: i64,
        now: i64,
    ) -> Result<(Session, String), AuthError> {
        let token = secrets::new_token();
        let session = Session {
            id: 0,
            token_hash: secrets::credential_hash(&token),
            app_id: app.id,
            user_id: user,
            nonce,
            ts,
            created_at: now,
            updated_at: now,
            expires_at: now + self.token_ttl_s,
        };
        let session = self.store.create_session(&session).await?;
        if let Some(user) = user {
            self.store.touch_user(app.id, user, now).await?;
        }
        self.sessions.insert(
            session.token_hash.clone(),
            CachedSession {
                session: session.clone(),
                app: Arc::new(app.clone()),
                checked_at: now,
                persisted_expires_at: session.expires_at,
            },
        );
        Ok((session, token))
    }

    /// Checks a user's password, applying the login limits.
    pub async fn check_password(
        &self,
        app: AppId,
        name: &LoginName,
        password: &str,
        source: Option<IpAddr>,
        now: i64,
    ) -> Result<User, AuthError> {
        // Refused before the lookup: a source that failed too often learns nothing more.
        self.limiter
            .check_source(source, now)
            .map_err(AuthError::Throttled)?;
        let (field, value) = match name {
            LoginName::Login(login) => (UserField::Login, login),
            LoginName::Email(email) => (UserField::Email, email),
        };
        let user = self
            .store
            .user_by(app, field, &FilterValue::Text(value.clone()))
            .await?;
        self.checked_password(app, user, password, source, now)
            .await
    }

    /// Checks an XMPP login: `secret` may be a live session token of the user (QuickBlox apps
    /// pass the REST token) or the user's password. A valid token always logs in; passwords
    /// go through the same limits as REST logins.
    pub async fn check_user_secret(
        &self,
        app: AppId,
        user: UserId,
        secret: &str,
        source: Option<IpAddr>,
        now: i64,
    ) -> Result<User, AuthError> {
        let stored = self.store.user(app, user).await?;
        if let Some(user_row) = &stored {
            if secret.len() == 40
                && matches!(self.token_user(secret, now).await, Ok(owner) if owner == (app, user))
            {
                return Ok(user_row.clone());
            }
        }
        self.checked_password(app, stored, secret, source, now)
            .await
    }

    /// The password check shared by every login path: limits first (per source, and per user
    /// and source), then the hash.
    async fn checked_password(
        &self,
        app: AppId,
        user: Option<User>,
        password: &str,
        source: Option<IpAddr>,
        now: i64,
    ) -> Result<User, AuthError> {
        let id = user.as_ref().map(|user| user.id);
        let _turn = match id {
            Some(id) => Some(self.limiter.turn(app, id, source).await),
            None => None,
        };
        self.limiter
            .begin(app, id, source, now)
            .map_err(AuthError::Throttled)?;
        let ok = match self.verify_password(user.as_ref(), password).await {
            Ok(ok) => ok,
            // Not a verdict on the password: the attempt is neither a failure nor a success
            // (a success would clear the user's failure count).
            Err(hasher::Overloaded) => {
                self.limiter.finish(app, id, source, None, now);
                return Err(AuthError::Busy);
            }
        };
        self.limiter.finish(app, id, source, Some(ok), now);
        match user {
            Some(user) if ok => Ok(user),
            _ => Err(AuthError::BadCredentials),
        }
    }

    /// Checks `password` against `user`'s argon2 hash. An unknown user (`None`) still costs a
    /// hash, so timing does not tell which logins exist.
    ///
    /// A successful check is remembered as HMAC(process key, stored hash, password), so a
    /// client that reconnects with the same password skips argon2. The key lives only in this
    /// process's memory and the stored hash is part of the input, so a password change or a
    /// restart invalidates every entry.
    async fn verify_password(
        &self,
        user: Option<&User>,
        password: &str,
    ) -> Result<bool, hasher::Overloaded> {
        let fingerprint = user.map(|u| self.password_fingerprint(&u.password_hash, password));
        if let (Some(user), Some(fingerprint)) = (user, &fingerprint) {
            if let Some(known) = self.verified.get(&user.id) {
                if bool::from(subtle::ConstantTimeEq::ct_eq(&known[..], &fingerprint[..])) {
                    return Ok(true);
                }
            }
        }
        let phc = user.map(|u| u.password_hash.clone());
        let matches = self.passwords.verify(password.to_string(), phc).await?;
        let (true, Some(user), Some(mut fingerprint)) = (matches, user, fingerprint) else {
            return Ok(false);
        };
        if let Some(current) = self.rehash_if_stale(user, password).await {
            fingerprint = self.password_fingerprint(&current, password);
        }
        if self.verified.len() >= VERIFIED_CACHE_MAX {
            self.verified.clear();
        }
        self.verified.insert(user.id, fingerprint);
        Ok(true)
    }

    /// After a successful check: if the stored hash was made with another cost than the
    /// configured one, stores a fresh hash of the same password. Returns the hash now stored.
    /// Failures only leave the old (still valid) hash in place.
    async fn rehash_if_stale(&self, user: &User, password: &str) -> Option<String> {
        if self.passwords.is_current(&user.password_hash) {
            return None;
        }
        let fresh = self.passwords.hash(password.to_string()).await.ok()?;
        match self
            .store
            .replace_password_hash(user.app_id, user.id, &user.password_hash, &fresh)
            .await
        {
            Ok(true) => {
                tracing::debug!(
                    user = user.id.0,
                    "password rehashed with the configured cost"
                );
                Some(fresh)
            }
            Ok(false) => None,
            Err(error) => {
                tracing::warn!(%error, "could not store a rehashed password");
                None
            }
        }
    }

    fn password_fingerprint(&self, phc: &str, password: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.process_key.0)
            .expect("HMAC accepts keys of any length");
        mac.update(phc.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// An argon2id hash of a new password, computed on the hashing pool.
    pub async fn hash_password(&self, password: &str) -> Result<String, hasher::Overloaded> {
        self.passwords.hash(password.to_string()).await
    }

    /// Checks a password against a stored hash on the hashing pool, without the cache (for
    /// confirming an old password before changing it).
    pub async fn password_matches(&self, password: &str, phc: &str) -> bool {
        self.passwords
            .verify(password.to_string(), Some(phc.to_string()))
            .await
            .unwrap_or(false)
    }

    /// Binds (`Some`) or unbinds (`None`) the session's user (`POST`/`DELETE /login.json`).
    pub async fn set_session_user(
        &self,
        session: &Session,
        user: Option<UserId>,
        now: i64,
    ) -> Result<(), AuthError> {
        self.store
            .set_session_user(&session.token_hash, user, now)
            .await?;
        if let Some(mut entry) = self.sessions.get_mut(&session.token_hash) {
            entry.session.user_id = user;
        }
        Ok(())
    }

    pub async fn destroy_session(&self, session: &Session) -> Result<(), AuthError> {
        self.sessions.remove(&session.token_hash);
        self.store.delete_session(&session.token_hash).await?;
        Ok(())
    }

    /// Deletes a user with every session of theirs, from the store and the cache.
    pub async fn delete_user(&self, app: AppId, user: UserId) -> Result<bool, AuthError> {
        for hash in self.store.session_hashes_of_user(app, user).await? {
            self.sessions.remove(&hash);
        }
        Ok(self.store.delete_user(app, user).await?)
    }

    /// Periodic housekeeping: expired sessions, old nonces, ended limiter windows.
    pub async fn prune(&self, now: i64, nonce_window_s: i64) -> Result<u64, AuthError> {
        self.sessions
            .retain(|_, cached| cached.session.expires_at >= now);
        self.limiter.prune(now);
        Ok(self.store.prune(now, now - 2 * nonce_window_s).await?)
    }
}
