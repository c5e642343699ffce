//! Storage of XMPP state: rosters with versions (RFC 6121, XEP-0237), offline messages
//! (XEP-0160), privacy lists (XEP-0016), block lists (XEP-0191) and last activity (XEP-0012).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError, StoreResult};
use crate::model::{AppId, RosterItem, Subscription, UserId};

/// A stored offline message: its row id (delivery order) and the stanza as it will be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineMessage {
    pub id: i64,
    pub stanza: String,
    pub created_at: i64,
}

impl Store {
    /// The roster of `user` and its current version (0 when it never changed).
    pub async fn roster(&self, user: UserId) -> StoreResult<(i64, Vec<RosterItem>)> {
        let version = self.roster_version(user).await?;
        let rows = sqlx::query(
            "SELECT contact_id, name, subscription, ask_out, pending_in, groups, version \
             FROM roster_items WHERE user_id = $1 ORDER BY contact_id",
        )
        .bind(user.0)
        .fetch_all(self.pool())
        .await?;
        let items = rows
            .iter()
            .map(roster_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((version, items))
    }

    pub async fn roster_version(&self, user: UserId) -> StoreResult<i64> {
        let row = sqlx::query("SELECT version FROM roster_versions WHERE user_id = $1")
            .bind(user.0)
            .fetch_optional(self.pool())
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0))
    }

    pub async fn roster_item(
        &self,
        user: UserId,
        contact: UserId,
    ) -> StoreResult<Option<RosterItem>> {
        read_item(self.pool(), user, contact).await
    }

    /// Inserts or replaces `item` in `user`'s roster, bumping the roster version; returns the
    /// item as stored (with its new version).
    pub async fn put_roster_item(
        &self,
        app: AppId,
        user: UserId,
        item: &RosterItem,
    ) -> StoreResult<RosterItem> {
        let mut tx = self.pool().begin().await?;
        let stored = write_item(&mut tx, app, user, item).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Changes `user`'s item for `contact` and `contact`'s item for `user` together, in one
    /// transaction, as a subscription exchange between two local users must (RFC 6121 §3):
    /// `decide` gets both current items (`None` when absent) and returns the ones to write
    /// (`None`: unchanged) plus a value passed through. Returns the written items with their
    /// new versions.
    ///
    /// Both users' roster versions are locked first, in user id order, before anything is
    /// read: two exchanges between the same pair (A subscribes to B while B subscribes to A)
    /// run one after the other and the second sees what the first wrote, on SQLite (the first
    /// write takes the database's write lock) and PostgreSQL (row locks) alike.
    pub async fn update_roster_pair<T>(
        &self,
        app: AppId,
        user: UserId,
        contact: UserId,
        decide: impl FnOnce(
            Option<RosterItem>,
            Option<RosterItem>,
        ) -> (Option<RosterItem>, Option<RosterItem>, T),
    ) -> StoreResult<(Option<RosterItem>, Option<RosterItem>, T)> {
        let mut tx = self.pool().begin().await?;
        let (first, second) = if user.0 <= contact.0 {
            (user, contact)
        } else {
            (contact, user)
        };
        for owner in [first, second] {
            sqlx::query(
                "INSERT INTO roster_versions (user_id, version) VALUES ($1, 0) \
                 ON CONFLICT (user_id) DO UPDATE SET version = roster_versions.version",
            )
            .bind(owner.0)
            .execute(&mut *tx)
            .await?;
        }
        let mine = read_item(&mut *tx, user, contact).await?;
        let theirs = read_item(&mut *tx, contact, user).await?;
        let (mine, theirs, decided) = decide(mine, theirs);
        let mine = match mine {
            Some(item) => Some(write_item(&mut tx, app, user, &item).await?),
            None => None,
        };
        let theirs = match theirs {
            Some(item) => Some(write_item(&mut tx, app, contact, &item).await?),
            None => None,
        };
        tx.commit().await?;
        Ok((mine, theirs, decided))
    }

    /// Removes a contact; returns the new roster version, or `None` if it was not there.
    pub async fn remove_roster_item(
        &self,
        user: UserId,
        contact: UserId,
    ) -> StoreResult<Option<i64>> {
        let mut tx = self.pool().begin().await?;
        // The version row first, as every roster write takes it: the same lock order as
        // `update_roster_pair`, so the two never wait on each other (PostgreSQL deadlock).
        let version = bump_version(&mut tx, user).await?;
        let removed =
            sqlx::query("DELETE FROM roster_items WHERE user_id = $1 AND contact_id = $2")
                .bind(user.0)
                .bind(contact.0)
                .execute(&mut *tx)
                .await?;
        if removed.rows_affected() == 0 {
            // Nothing removed: the rollback keeps the version as it was.
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(version))
    }

    /// Sets the name and groups `user` gives `contact` (RFC 6121 §2.1.2), creating the item
    /// without a subscription if there is none, and leaves the subscription state alone: a
    /// subscription change committed meanwhile by the contact is not overwritten.
    pub async fn set_roster_details(
        &self,
        app: AppId,
        user: UserId,
        contact: UserId,
        name: Option<&str>,
        groups: &[String],
    ) -> StoreResult<RosterItem> {
        let mut tx = self.pool().begin().await?;
        let version = bump_version(&mut tx, user).await?;
        sqlx::query(
            "INSERT INTO roster_items (app_id, user_id, contact_id, name, subscription, ask_out, \
             pending_in, groups, version) VALUES ($1, $2, $3, $4, 'none', 0, 0, $5, $6) \
             ON CONFLICT (user_id, contact_id) DO UPDATE SET name = excluded.name, \
             groups = excluded.groups, version = excluded.version",
        )
        .bind(app.0)
        .bind(user.0)
        .bind(contact.0)
        .bind(name.map(str::to_string))
        .bind(groups.join("\n"))
        .bind(version)
        .execute(&mut *tx)
        .await?;
        let stored = read_item(&mut *tx, user, contact)
            .await?
            .ok_or(StoreError::Backend(sqlx::Error::RowNotFound))?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Queues a stanza for a user who is offline. Returns the queue length after the insert.
    pub async fn push_offline(
        &self,
        app: AppId,
        user: UserId,
        stanza: &str,
        now: i64,
    ) -> StoreResult<i64> {
        sqlx::query("INSERT INTO offline_messages (app_id, user_id, stanza, created_at) VALUES ($1, $2, $3, $4)")
            .bind(app.0)
            .bind(user.0)
            .bind(stanza)
            .bind(now)
            .execute(self.pool())
            .await?;
        self.offline_count(user).await
    }

    pub async fn offline_count(&self, user: UserId) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM offline_messages WHERE user_id = $1")
            .bind(user.0)
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Offline messages stored for everyone, for the queue-depth gauge at start.
    pub async fn offline_total(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM offline_messages")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The oldest `limit` queued messages of `user`, in arrival order.
    pub async fn offline_messages(
        &self,
        user: UserId,
        limit: i64,
    ) -> StoreResult<Vec<OfflineMessage>> {
        let rows = sqlx::query(
            "SELECT id, stanza, created_at FROM offline_messages WHERE user_id = $1 ORDER BY id LIMIT $2",
        )
        .bind(user.0)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OfflineMessage {
                    id: r.try_get(0)?,
                    stanza: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Deletes `user`'s offline messages up to `last_id`; returns how many went (another
    /// session of the user may have deleted some of them already).
    pub async fn delete_offline(&self, user: UserId, last_id: i64) -> StoreResult<u64> {
        let deleted = sqlx::query("DELETE FROM offline_messages WHERE user_id = $1 AND id <= $2")
            .bind(user.0)
            .bind(last_id)
            .execute(self.pool())
            .await?;
        Ok(deleted.rows_affected())
    }

    pub async fn privacy_list_names(
        &self,
        user: UserId,
    ) -> StoreResult<(Vec<String>, Option<String>)> {
        let rows = sqlx::query("SELECT name FROM privacy_lists WHERE user_id = $1 ORDER BY name")
            .bind(user.0)
            .fetch_all(self.pool())
            .await?;
        let names = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<Vec<String>, _>>()?;
        let default = sqlx::query("SELECT name FROM privacy_defaults WHERE user_id = $1")
            .bind(user.0)
            .fetch_optional(self.pool())
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        Ok((names, default))
    }

    /// The `<item/>` elements of a privacy list, exactly as they were set.
    pub async fn privacy_list(&self, user: UserId, name: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT items FROM privacy_lists WHERE user_id = $1 AND name = $2")
            .bind(user.0)
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub async fn put_privacy_list(&self, user: UserId, name: &str, items: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO privacy_lists (user_id, name, items) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, name) DO UPDATE SET items = excluded.items",
        )
        .bind(user.0)
        .bind(name)
        .bind(items)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Deletes a list (and the default pointing at it); false if there was none.
    pub async fn delete_privacy_list(&self, user: UserId, name: &str) -> StoreResult<bool> {
        let mut tx = self.pool().begin().await?;
        let removed = sqlx::query("DELETE FROM privacy_lists WHERE user_id = $1 AND name = $2")
            .bind(user.0)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM privacy_defaults WHERE user_id = $1 AND name = $2")
            .bind(user.0)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(removed.rows_affected() == 1)
    }

    pub async fn set_default_privacy_list(
        &self,
        user: UserId,
        name: Option<&str>,
    ) -> StoreResult<()> {
        match name {
            Some(name) => {
                sqlx::query(
                    "INSERT INTO privacy_defaults (user_id, name) VALUES ($1, $2) \
                     ON CONFLICT (user_id) DO UPDATE SET name = excluded.name",
                )
                .bind(user.0)
                .bind(name)
                .execute(self.pool())
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM privacy_defaults WHERE user_id = $1")
                    .bind(user.0)
                    .execute(self.pool())
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn block_list(&self, user: UserId) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT jid FROM block_list WHERE user_id = $1 ORDER BY jid")
            .bind(user.0)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    pub async fn block(&self, user: UserId, jids: &[String]) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        for jid in jids {
            sqlx::query(
                "INSERT INTO block_list (user_id, jid) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(user.0)
            .bind(jid)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Unblocks `jids`, or everything when `jids` is empty (XEP-0191 §3.4).
    pub async fn unblock(&self, user: UserId, jids: &[String]) -> StoreResult<()> {
        if jids.is_empty() {
            sqlx::query("DELETE FROM block_list WHERE user_id = $1")
                .bind(user.0)
                .execute(self.pool())
                .await?;
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        for jid in jids {
            sqlx::query("DELETE FROM block_list WHERE user_id = $1 AND jid = $2")
                .bind(user.0)
                .bind(jid)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records the end of a user's last session, for XEP-0012 queries while they are offline.
    pub async fn set_last_logout(
        &self,
        app: AppId,
        user: UserId,
        at: i64,
        status: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE users SET last_logout_at = $1, last_status = $2 WHERE app_id = $3 AND id = $4",
        )
        .bind(at)
        .bind(status)
        .bind(app.0)
        .bind(user.0)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// When the user last logged out, and the status they left with.
    pub async fn last_logout(
        &self,
        app: AppId,
        user: UserId,
    ) -> StoreResult<Option<(i64, Option<String>)>> {
        let row = sqlx::query(
            "SELECT last_logout_at, last_status FROM users WHERE app_id = $1 AND id = $2",
        )
        .bind(app.0)
        .bind(user.0)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let at: Option<i64> = row.try_get(0)?;
        Ok(at
            .map(|at| row.try_get(1).map(|status| (at, status)))
            .transpose()?)
    }
}

async fn bump_version(tx: &mut sqlx::Transaction<'_, sqlx::Any>, user: UserId) -> StoreResult<i64> {
    let row = sqlx::query(
        "INSERT INTO roster_versions (user_id, version) VALUES ($1, 1) \
         ON CONFLICT (user_id) DO UPDATE SET version = roster_versions.version + 1 RETURNING version",
    )
    .bind(user.0)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get(0)?)
}

async fn read_item<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    user: UserId,
    contact: UserId,
) -> StoreResult<Option<RosterItem>> {
    let row = sqlx::query(
        "SELECT contact_id, name, subscription, ask_out, pending_in, groups, version \
         FROM roster_items WHERE user_id = $1 AND contact_id = $2",
    )
    .bind(user.0)
    .bind(contact.0)
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(roster_from_row).transpose()
}

/// Upserts `item` in `user`'s roster inside `tx`, bumping the version; returns it as stored.
async fn write_item(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    app: AppId,
    user: UserId,
    item: &RosterItem,
) -> StoreResult<RosterItem> {
    let version = bump_version(tx, user).await?;
    sqlx::query(
        "INSERT INTO roster_items (app_id, user_id, contact_id, name, subscription, ask_out, \
         pending_in, groups, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (user_id, contact_id) DO UPDATE SET name = excluded.name, \
         subscription = excluded.subscription, ask_out = excluded.ask_out, \
         pending_in = excluded.pending_in, groups = excluded.groups, version = excluded.version",
    )
    .bind(app.0)
    .bind(user.0)
    .bind(item.contact.0)
    .bind(item.name.clone())
    .bind(item.subscription.as_str())
    .bind(i64::from(item.ask_out))
    .bind(i64::from(item.pending_in))
    .bind(item.groups.join("\n"))
    .bind(version)
    .execute(&mut **tx)
    .await?;
    Ok(RosterItem {
        version,
        ..item.clone()
    })
}

fn roster_from_row(row: &AnyRow) -> StoreResult<RosterItem> {
    let subscription: String = row.try_get(2)?;
    let groups: String = row.try_get(5)?;
    Ok(RosterItem {
        contact: UserId(row.try_get(0)?),
        name: row.try_get(1)?,
        subscription: Subscription::parse(&subscription).unwrap_or(Subscription::None),
        ask_out: row.try_get::<i64, _>(3)? != 0,
        pending_in: row.try_get::<i64, _>(4)? != 0,
        groups: groups
            .split('\n')
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        version: row.try_get(6)?,
    })
}
