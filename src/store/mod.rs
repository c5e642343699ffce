//! Storage: one [`Store`] over SQLite (embedded default, WAL) or PostgreSQL (clusters).
//!
//! Both backends run the same SQL through sqlx's `Any` driver: statements use `$N` placeholders,
//! which both understand, and only portable types (`BIGINT`, `TEXT`). What differs (id columns)
//! lives in the per-backend migrations under `migrations/{sqlite,postgres}`, applied at start by
//! [`migrate`]. The same test suite (`tests/storage.rs`) runs against both.

mod chat;
mod migrate;
mod xmpp;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::model::{
    App, AppId, FilterOp, FilterValue, Session, User, UserField, UserId, UserQuery,
};

pub use chat::{ChatWrite, HistoryRange, WriteOutcome};
pub use migrate::migrate;
pub use xmpp::OfflineMessage;

/// Storage failures, each knowing whether it is the client's fault (a conflict) or ours.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A unique field already holds this value in the application (`login`, `email`, …).
    #[error("{0} has already been taken")]
    Conflict(&'static str),
    #[error("storage error: {0}")]
    Backend(#[from] sqlx::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Handle to the database; cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// The columns of `users`, in the order [`user_from_row`] reads them.
const USER_COLUMNS: &str =
    "id, app_id, login, email, phone, full_name, website, external_user_id, \
     facebook_id, twitter_id, twitter_digits_id, blob_id, custom_data, tags, password_hash, \
     created_at, updated_at, last_request_at";

const SESSION_COLUMNS: &str =
    "id, token_hash, app_id, user_id, nonce, ts, created_at, updated_at, expires_at";

impl Store {
    /// Opens the store named by `url` (empty: SQLite in `data_dir`) and runs the migrations.
    pub async fn open(url: &str, data_dir: &Path, max_connections: u32) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let url = if url.is_empty() {
            std::fs::create_dir_all(data_dir)?;
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("switchboard.db").display()
            )
        } else {
            url.to_string()
        };
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; busy_timeout makes a second
                        // process (e.g. `switchboard app create` next to a running server) wait
                        // instead of failing with SQLITE_BUSY. Statement journals (every
                        // multi-row or ON CONFLICT statement inside a transaction has one)
                        // stay in memory instead of a temp file written per statement, and
                        // each connection keeps up to 8 MiB of pages (the 2 MiB default sent
                        // the chat writer back to the disk for index pages under load).
                        conn.execute(
                            "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; \
                             PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; \
                             PRAGMA temp_store=MEMORY; PRAGMA cache_size=-8192;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let store = Store { pool, backend };
        migrate(&store).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool, for tests that inspect rows directly.
    #[doc(hidden)]
    pub fn pool_for_tests(&self) -> AnyPool {
        self.pool.clone()
    }

    /// A cheap round trip, for `/ready`.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- applications ----

    pub async fn create_app(
        &self,
        name: &str,
        auth_key: &str,
        auth_secret: &str,
        account_key: &str,
        api_key_hash: &str,
        now: i64,
    ) -> StoreResult<App> {
        let row = sqlx::query(
            "INSERT INTO apps (name, auth_key, auth_secret, account_key, api_key_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(name)
        .bind(auth_key)
        .bind(auth_secret)
        .bind(account_key)
        .bind(api_key_hash)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict_or(e, &[("auth_key", "auth_key"), ("api_key", "api_key")]))?;
        Ok(App {
            id: AppId(row.try_get(0)?),
            name: name.into(),
            auth_key: auth_key.into(),
            auth_secret: auth_secret.into(),
            account_key: account_key.into(),
            created_at: now,
        })
    }

    pub async fn app(&self, id: AppId) -> StoreResult<Option<App>> {
        self.app_where("id = $1", FilterValue::Int(id.0)).await
    }

    pub async fn app_by_auth_key(&self, auth_key: &str) -> StoreResult<Option<App>> {
        self.app_where("auth_key = $1", FilterValue::Text(auth_key.into()))
            .await
    }

    pub async fn app_by_api_key_hash(&self, hash: &str) -> StoreResult<Option<App>> {
        self.app_where("api_key_hash = $1", FilterValue::Text(hash.into()))
            .await
    }

    async fn app_where(&self, condition: &str, value: FilterValue) -> StoreResult<Option<App>> {
        let sql = format!(
            "SELECT id, name, auth_key, auth_secret, account_key, created_at FROM apps WHERE {condition}"
        );
        let row = bind_value(sqlx::query(&sql), &value)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(App {
                id: AppId(row.try_get(0)?),
                name: row.try_get(1)?,
                auth_key: row.try_get(2)?,
                auth_secret: row.try_get(3)?,
                account_key: row.try_get(4)?,
                created_at: row.try_get(5)?,
            })
        })
        .transpose()
    }

    // ---- users ----

    /// Inserts `user` (its `id` is ignored) and returns it with the assigned id.
    pub async fn create_user(&self, user: &User) -> StoreResult<User> {
        let row = sqlx::query(
            "INSERT INTO users (app_id, login, email, phone, full_name, website, external_user_id, \
             facebook_id, twitter_id, twitter_digits_id, blob_id, custom_data, tags, password_hash, \
             created_at, updated_at, last_request_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             RETURNING id",
        )
        .bind(user.app_id.0)
        .bind(user.login.clone())
        .bind(user.email.clone())
        .bind(user.phone.clone())
        .bind(user.full_name.clone())
        .bind(user.website.clone())
        .bind(user.external_user_id.clone())
        .bind(user.facebook_id.clone())
        .bind(user.twitter_id.clone())
        .bind(user.twitter_digits_id.clone())
        .bind(user.blob_id)
        .bind(user.custom_data.clone())
        .bind(encode_tags(&user.tags))
        .bind(user.password_hash.clone())
        .bind(user.created_at)
        .bind(user.updated_at)
        .bind(user.last_request_at)
        .fetch_one(&self.pool)
        .await
        .map_err(user_conflict)?;
        let mut created = user.clone();
        created.id = UserId(row.try_get(0)?);
        Ok(created)
    }

    /// Writes every mutable column of `user` (matched by app and id). Returns false if gone.
    pub async fn update_user(&self, user: &User) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE users SET login = $1, email = $2, phone = $3, full_name = $4, website = $5, \
             external_user_id = $6, facebook_id = $7, twitter_id = $8, twitter_digits_id = $9, \
             blob_id = $10, custom_data = $11, tags = $12, password_hash = $13, updated_at = $14, \
             last_request_at = $15 WHERE app_id = $16 AND id = $17",
        )
        .bind(user.login.clone())
        .bind(user.email.clone())
        .bind(user.phone.clone())
        .bind(user.full_name.clone())
        .bind(user.website.clone())
        .bind(user.external_user_id.clone())
        .bind(user.facebook_id.clone())
        .bind(user.twitter_id.clone())
        .bind(user.twitter_digits_id.clone())
        .bind(user.blob_id)
        .bind(user.custom_data.clone())
        .bind(encode_tags(&user.tags))
        .bind(user.password_hash.clone())
        .bind(user.updated_at)
        .bind(user.last_request_at)
        .bind(user.app_id.0)
        .bind(user.id.0)
        .execute(&self.pool)
        .await
        .map_err(user_conflict)?;
        Ok(result.rows_affected() == 1)
    }

    /// Swaps a user's password hash for an equivalent one (same password, current cost), only if
    /// the stored hash is still `old`: a password change in between wins. True if swapped.
    pub async fn replace_password_hash(
        &self,
        app: AppId,
        id: UserId,
        old: &str,
        new: &str,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE users SET password_hash = $1 WHERE app_id = $2 AND id = $3 \
             AND password_hash = $4",
        )
        .bind(new)
        .bind(app.0)
        .bind(id.0)
        .bind(old)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Records activity; a separate statement so it never races a profile update's columns.
    pub async fn touch_user(&self, app: AppId, id: UserId, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE users SET last_request_at = $1 WHERE app_id = $2 AND id = $3")
            .bind(now)
            .bind(app.0)
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes the user and every session of theirs. Returns false if there was no such user.
    pub async fn delete_user(&self, app: AppId, id: UserId) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let result = sqlx::query("DELETE FROM users WHERE app_id = $1 AND id = $2")
            .bind(app.0)
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE app_id = $1 AND user_id = $2")
            .bind(app.0)
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn user(&self, app: AppId, id: UserId) -> StoreResult<Option<User>> {
        self.user_by(app, UserField::Id, &FilterValue::Int(id.0))
            .await
    }

    /// The first user of `app` whose `field` equals `value`.
    pub async fn user_by(
        &self,
        app: AppId,
        field: UserField,
        value: &FilterValue,
    ) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE app_id = $1 AND {} = $2 ORDER BY id LIMIT 1",
            field.column()
        );
        let row = bind_value(sqlx::query(&sql).bind(app.0), value)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// One page of users matching `query`, and how many match in all.
    pub async fn list_users(&self, app: AppId, query: &UserQuery) -> StoreResult<(Vec<User>, u64)> {
        let mut binds = vec![FilterValue::Int(app.0)];
        let mut conditions = vec!["app_id = $1".to_string()];
        for filter in &query.filters {
            let column = filter.field.column();
            let mut placeholder = |value: &FilterValue| {
                binds.push(value.clone());
                format!("${}", binds.len())
            };
            let condition = match filter.op {
                FilterOp::Between => {
                    let low = placeholder(&filter.values[0]);
                    let high = placeholder(&filter.values[1]);
                    format!("{column} BETWEEN {low} AND {high}")
                }
                FilterOp::In => {
                    let list: Vec<String> = filter.values.iter().map(&mut placeholder).collect();
                    format!("{column} IN ({})", list.join(", "))
                }
                op => {
                    let sign = match op {
                        FilterOp::Gt => ">",
                        FilterOp::Lt => "<",
                        FilterOp::Ge => ">=",
                        FilterOp::Le => "<=",
                        FilterOp::Eq => "=",
                        _ => "<>",
                    };
                    format!("{column} {sign} {}", placeholder(&filter.values[0]))
                }
            };
            conditions.push(condition);
        }
        if !query.any_tags.is_empty() {
            // Tags are stored as ",a,b," so one LIKE per tag finds whole tags only.
            let mut any = Vec::new();
            for tag in &query.any_tags {
                binds.push(FilterValue::Text(format!("%,{},%", escape_like(tag))));
                any.push(format!("tags LIKE ${} ESCAPE '\\'", binds.len()));
            }
            conditions.push(format!("({})", any.join(" OR ")));
        }
        let where_clause = conditions.join(" AND ");
        let order = match query.order {
            Some((field, desc)) => {
                let direction = if desc { "DESC" } else { "ASC" };
                let tiebreak = if field == UserField::Id {
                    ""
                } else {
                    ", id ASC"
                };
                format!("{} {direction}{tiebreak}", field.column())
            }
            None => "id ASC".into(),
        };

        let count_sql = format!("SELECT COUNT(*) FROM users WHERE {where_clause}");
        let mut count = sqlx::query(&count_sql);
        for value in &binds {
            count = bind_value(count, value);
        }
        let total: i64 = count.fetch_one(&self.pool).await?.try_get(0)?;

        let page_sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE {where_clause} ORDER BY {order} LIMIT {} OFFSET {}",
            query.limit, query.offset
        );
        let mut page = sqlx::query(&page_sql);
        for value in &binds {
            page = bind_value(page, value);
        }
        let rows = page.fetch_all(&self.pool).await?;
        let users = rows
            .iter()
            .map(user_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((users, total.max(0) as u64))
    }

    // ---- sessions ----

    pub async fn create_session(&self, session: &Session) -> StoreResult<Session> {
        let row = sqlx::query(
            "INSERT INTO sessions (token_hash, app_id, user_id, nonce, ts, created_at, updated_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(session.token_hash.clone())
        .bind(session.app_id.0)
        .bind(session.user_id.map(|u| u.0))
        .bind(session.nonce)
        .bind(session.ts)
        .bind(session.created_at)
        .bind(session.updated_at)
        .bind(session.expires_at)
        .fetch_one(&self.pool)
        .await?;
        let mut created = session.clone();
        created.id = row.try_get(0)?;
        Ok(created)
    }

    pub async fn session_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<Session>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1");
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Binds (`Some`) or unbinds (`None`) a user; used by `POST/DELETE /login.json`.
    pub async fn set_session_user(
        &self,
        token_hash: &str,
        user: Option<UserId>,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET user_id = $1, updated_at = $2 WHERE token_hash = $3")
            .bind(user.map(|u| u.0))
            .bind(now)
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves the sliding expiry forward.
    pub async fn extend_session(&self, token_hash: &str, expires_at: i64) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET expires_at = $1 WHERE token_hash = $2")
            .bind(expires_at)
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, token_hash: &str) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Token hashes of every session of a user, so caches can drop them too.
    pub async fn session_hashes_of_user(
        &self,
        app: AppId,
        user: UserId,
    ) -> StoreResult<Vec<String>> {
        let rows =
            sqlx::query("SELECT token_hash FROM sessions WHERE app_id = $1 AND user_id = $2")
                .bind(app.0)
                .bind(user.0)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Records a (timestamp, nonce) pair of a session request. False when it was seen before:
    /// the request is a replay. The primary key makes this atomic across nodes.
    pub async fn record_nonce(
        &self,
        app: AppId,
        scope: &str,
        ts: i64,
        nonce: &str,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO session_nonces (app_id, scope, ts, nonce) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(app.0)
        .bind(scope)
        .bind(ts)
        .bind(nonce)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Drops expired sessions and nonces older than `nonce_before`; returns rows removed.
    pub async fn prune(&self, now: i64, nonce_before: i64) -> StoreResult<u64> {
        let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let nonces = sqlx::query("DELETE FROM session_nonces WHERE ts < $1")
            .bind(nonce_before)
            .execute(&self.pool)
            .await?;
        Ok(sessions.rows_affected() + nonces.rows_affected())
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind_value<'q>(query: AnyQuery<'q>, value: &FilterValue) -> AnyQuery<'q> {
    match value {
        FilterValue::Int(v) => query.bind(*v),
        FilterValue::Text(v) => query.bind(v.clone()),
    }
}

/// Tags travel as ",a,b," in the column so a LIKE can match a whole tag.
fn encode_tags(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!(",{},", tags.join(","))
    }
}

fn decode_tags(column: &str) -> Vec<String> {
    column
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn user_from_row(row: &AnyRow) -> StoreResult<User> {
    Ok(User {
        id: UserId(row.try_get(0)?),
        app_id: AppId(row.try_get(1)?),
        login: row.try_get(2)?,
        email: row.try_get(3)?,
        phone: row.try_get(4)?,
        full_name: row.try_get(5)?,
        website: row.try_get(6)?,
        external_user_id: row.try_get(7)?,
        facebook_id: row.try_get(8)?,
        twitter_id: row.try_get(9)?,
        twitter_digits_id: row.try_get(10)?,
        blob_id: row.try_get(11)?,
        custom_data: row.try_get(12)?,
        tags: decode_tags(&row.try_get::<String, _>(13)?),
        password_hash: row.try_get(14)?,
        created_at: row.try_get(15)?,
        updated_at: row.try_get(16)?,
        last_request_at: row.try_get(17)?,
    })
}

fn session_from_row(row: &AnyRow) -> StoreResult<Session> {
    Ok(Session {
        id: row.try_get(0)?,
        token_hash: row.try_get(1)?,
        app_id: AppId(row.try_get(2)?),
        user_id: row.try_get::<Option<i64>, _>(3)?.map(UserId),
        nonce: row.try_get(4)?,
        ts: row.try_get(5)?,
        created_at: row.try_get(6)?,
        updated_at: row.try_get(7)?,
        expires_at: row.try_get(8)?,
    })
}

fn user_conflict(error: sqlx::Error) -> StoreError {
    conflict_or(
        error,
        &[
            ("external", "external_user_id"),
            ("login", "login"),
            ("email", "email"),
        ],
    )
}

/// Maps a unique violation to the field it concerns (SQLite names the column, PostgreSQL the
/// constraint, so the needles match both); anything else stays a backend error.
fn conflict_or(error: sqlx::Error, fields: &[(&str, &'static str)]) -> StoreError {
    if let Some(db) = error.as_database_error() {
        if db.is_unique_violation() {
            let message = format!("{} {}", db.message(), db.constraint().unwrap_or(""));
            for (needle, field) in fields {
                if message.contains(needle) {
                    return StoreError::Conflict(field);
                }
            }
            return StoreError::Conflict("record");
        }
    }
    StoreError::Backend(error)
}
