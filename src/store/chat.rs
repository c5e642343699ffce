//! Storage of QuickBlox Chat: dialogs and their members, history messages, and per-user
//! delivered/read/hidden marks (migration 0003).
//!
//! History is read by key set on `(dialog_id, date_sent, seq)` (`seq` is arrival order); unread counters live per
//! (dialog, user) and change in the same transaction as the message or mark that moves them.
//! Writes of messages and marks arrive in batches from the chat writer (group commit, see
//! `chat::writer`): [`Store::apply_chat_writes`] runs one batch in one transaction.

use serde_json::{Map, Value as Json};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{AnyQuery, Backend, Store, StoreError, StoreResult};
use crate::chat::model::{
    Dialog, DialogId, DialogType, DialogView, LastMessage, Mark, Message, MessageId, MessageView,
    ObjectId,
};
use crate::chat::query::{
    Condition, DialogField, DialogQuery, MessageField, MessageQuery, Op, Value,
};
use crate::model::{AppId, UserId};

const DIALOG_COLUMNS: &str = "d.id, d.app_id, d.type, d.user_id, d.name, d.photo, \
     d.is_join_required, d.data, d.occupants, d.last_message, d.last_message_date_sent, \
     d.last_message_user_id, d.last_message_id, d.created_at, d.updated_at";

const MESSAGE_COLUMNS: &str = "m.id, m.app_id, m.dialog_id, m.sender_id, m.recipient_id, \
     m.body, m.date_sent, m.attachments, m.custom, m.markable, m.stanza, m.created_at, \
     m.updated_at";

/// One write of the chat writer's batch.
#[derive(Debug, Clone)]
pub enum ChatWrite {
    /// A new history message; bumps the dialog's last message and the others' unread counts,
    /// and shows the dialog again to members who hid it.
    Save(Message),
    /// Delivered or read marks of `user` in `dialog`.
    Mark {
        dialog: DialogId,
        user: UserId,
        mark: Mark,
        /// `None`: every message of the dialog not from `user` (bounded, see below).
        messages: Option<Vec<MessageId>>,
    },
}

/// What became of one [`ChatWrite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Done,
    /// A message with this id already exists; nothing was written for it.
    DuplicateId,
}

/// "Mark all delivered" touches at most this many of the newest messages; older ones were
/// delivered long ago or never will be.
const DELIVERED_ALL_LIMIT: i64 = 1000;

/// A value to bind: the query values, or a typed NULL.
enum Bound {
    Value(Value),
    NullInt,
    NullText,
}

/// Bind placeholders in order: `$1`, `$2`, … for both backends.
#[derive(Default)]
struct Binds(Vec<Bound>);

impl Binds {
    fn push(&mut self, value: Value) -> String {
        self.0.push(Bound::Value(value));
        format!("${}", self.0.len())
    }

    fn push_opt_int(&mut self, value: Option<i64>) -> String {
        self.0
            .push(value.map_or(Bound::NullInt, |v| Bound::Value(Value::Int(v))));
        format!("${}", self.0.len())
    }

    fn push_opt_text(&mut self, value: Option<String>) -> String {
        self.0
            .push(value.map_or(Bound::NullText, |v| Bound::Value(Value::Text(v))));
        format!("${}", self.0.len())
    }

    fn apply<'q>(&self, mut query: AnyQuery<'q>) -> AnyQuery<'q> {
        for value in &self.0 {
            query = match value {
                Bound::Value(Value::Int(v)) => query.bind(*v),
                Bound::Value(Value::Text(v)) => query.bind(v.clone()),
                Bound::Value(Value::Real(v)) => query.bind(*v),
                Bound::NullInt => query.bind(None::<i64>),
                Bound::NullText => query.bind(None::<String>),
            };
        }
        query
    }
}

impl Store {
    // ---- dialogs ----

    /// Inserts a dialog with its occupants. A second private dialog for the same pair is a
    /// `Conflict("pair")`; the caller then reads the existing one.
    pub async fn create_dialog(&self, dialog: &Dialog) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        let pair = (dialog.kind == DialogType::Private && dialog.occupants.len() == 2)
            .then(|| Dialog::pair_key(dialog.occupants[0], dialog.occupants[1]));
        sqlx::query(
            "INSERT INTO dialogs (id, app_id, type, user_id, name, photo, is_join_required, data, \
             pair, occupants, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(dialog.id.as_str().to_string())
        .bind(dialog.app.0)
        .bind(dialog.kind.code())
        .bind(dialog.owner.0)
        .bind(dialog.name.clone())
        .bind(dialog.photo.clone())
        .bind(i64::from(dialog.is_join_required))
        .bind(encode_map(dialog.data.as_ref()))
        .bind(pair)
        .bind(encode_users(&dialog.occupants))
        .bind(dialog.created_at)
        .bind(dialog.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| super::conflict_or(e, &[("pair", "pair"), ("id", "_id")]))?;
        for user in &dialog.occupants {
            sqlx::query("INSERT INTO dialog_members (dialog_id, user_id) VALUES ($1, $2)")
                .bind(dialog.id.as_str().to_string())
                .bind(user.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn dialog(&self, app: AppId, id: &DialogId) -> StoreResult<Option<Dialog>> {
        let sql =
            format!("SELECT {DIALOG_COLUMNS} FROM dialogs d WHERE d.id = $1 AND d.app_id = $2");
        let row = sqlx::query(&sql)
            .bind(id.as_str().to_string())
            .bind(app.0)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(dialog_from_row).transpose()
    }

    /// The private dialog of two users, if there is one.
    pub async fn private_dialog(
        &self,
        app: AppId,
        a: UserId,
        b: UserId,
    ) -> StoreResult<Option<Dialog>> {
        let sql =
            format!("SELECT {DIALOG_COLUMNS} FROM dialogs d WHERE d.app_id = $1 AND d.pair = $2");
        let row = sqlx::query(&sql)
            .bind(app.0)
            .bind(Dialog::pair_key(a, b))
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(dialog_from_row).transpose()
    }

    /// `user`'s unread count in a dialog (0 when not a member).
    pub async fn unread_in(&self, dialog: &DialogId, user: UserId) -> StoreResult<i64> {
        let row =
            sqlx::query("SELECT unread FROM dialog_members WHERE dialog_id = $1 AND user_id = $2")
                .bind(dialog.as_str().to_string())
                .bind(user.0)
                .fetch_optional(self.pool())
                .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0)
            .max(0))
    }

    /// The dialogs `user` sees (occupant of, or public, and not hidden), filtered and paged,
    /// and how many match in all.
    pub async fn list_dialogs(
        &self,
        app: AppId,
        user: UserId,
        query: &DialogQuery,
    ) -> StoreResult<(Vec<DialogView>, u64)> {
        let mut binds = Binds::default();
        let app_bind = binds.push(Value::Int(app.0));
        let user_bind = binds.push(Value::Int(user.0));
        let mut conditions = vec![
            format!("d.app_id = {app_bind}"),
            format!("(d.type = 1 OR k.occupant = 1)"),
            "COALESCE(k.hidden, 0) = 0".to_string(),
        ];
        for condition in &query.conditions {
            conditions.push(self.dialog_condition(condition, &mut binds));
        }
        let from = format!(
            "FROM dialogs d LEFT JOIN dialog_members k ON k.dialog_id = d.id AND k.user_id = {user_bind} \
             WHERE {}",
            conditions.join(" AND ")
        );
        let count_sql = format!("SELECT COUNT(*) {from}");
        let total: i64 = binds
            .apply(sqlx::query(&count_sql))
            .fetch_one(self.pool())
            .await?
            .try_get(0)?;
        if query.page.count {
            return Ok((Vec::new(), total.max(0) as u64));
        }
        let order = match &query.page.sort {
            Some((field, desc)) => {
                let direction = if *desc { "DESC" } else { "ASC" };
                let column = match field {
                    DialogField::Id => "d.id",
                    DialogField::Type => "d.type",
                    DialogField::Name => "d.name",
                    DialogField::LastMessageDateSent => "d.last_message_date_sent",
                    DialogField::UpdatedAt => "d.updated_at",
                    _ => "d.created_at",
                };
                // NULLs (no message yet) last either way, on both backends.
                format!("CASE WHEN {column} IS NULL THEN 1 ELSE 0 END, {column} {direction}, d.id {direction}")
            }
            None => "COALESCE(d.last_message_date_sent, d.created_at) DESC, d.id DESC".into(),
        };
        let page_sql = format!(
            "SELECT {DIALOG_COLUMNS}, COALESCE(k.unread, 0) {from} ORDER BY {order} LIMIT {} OFFSET {}",
            query.page.limit, query.page.skip
        );
        let rows = binds
            .apply(sqlx::query(&page_sql))
            .fetch_all(self.pool())
            .await?;
        let views = rows
            .iter()
            .map(|row| {
                Ok(DialogView {
                    dialog: dialog_from_row(row)?,
                    unread: row.try_get::<i64, _>(15)?.max(0),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((views, total.max(0) as u64))
    }

    fn dialog_condition(&self, condition: &Condition<DialogField>, binds: &mut Binds) -> String {
        let column = match &condition.field {
            DialogField::Id => "d.id",
            DialogField::Type => "d.type",
            DialogField::Name => "d.name",
            DialogField::LastMessageDateSent => "d.last_message_date_sent",
            DialogField::CreatedAt => "d.created_at",
            DialogField::UpdatedAt => "d.updated_at",
            DialogField::Occupants => {
                return membership(condition.op, &condition.values, binds, |list| {
                    format!(
                        "SELECT COUNT(*) FROM dialog_members o WHERE o.dialog_id = d.id \
                         AND o.occupant = 1 AND o.user_id IN ({list})"
                    )
                })
            }
            DialogField::Data(name) => {
                return self.custom_condition(name, condition.op, &condition.values, binds)
            }
        };
        compare(column, condition.op, &condition.values, binds)
    }

    /// A condition on a custom parameter in the `data` JSON column: numbers compare as numbers,
    /// anything else as text. The parameter name is bound, never spliced.
    fn custom_condition(&self, name: &str, op: Op, values: &[Value], binds: &mut Binds) -> String {
        let path = match self.backend() {
            Backend::Sqlite => binds.push(Value::Text(format!("$.\"{}\"", name.replace('"', "")))),
            Backend::Postgres => binds.push(Value::Text(name.to_string())),
        };
        let (text, number) = match self.backend() {
            Backend::Sqlite => (
                format!("CAST(json_extract(d.data, {path}) AS TEXT)"),
                format!("CAST(json_extract(d.data, {path}) AS REAL)"),
            ),
            Backend::Postgres => (
                format!("(d.data::jsonb ->> {path})"),
                format!(
                    "(CASE WHEN (d.data::jsonb ->> {path}) ~ '^\\s*-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?\\s*$' \
                     THEN (d.data::jsonb ->> {path})::double precision END)"
                ),
            ),
        };
        let exists = format!("{text} IS NOT NULL");
        let one = |value: &Value, op: Op, binds: &mut Binds| {
            let expr = if matches!(value, Value::Real(_)) {
                &number
            } else {
                &text
            };
            compare(expr, op, std::slice::from_ref(value), binds)
        };
        match op {
            Op::In => {
                let any: Vec<String> = values.iter().map(|v| one(v, Op::Eq, binds)).collect();
                format!("({})", any.join(" OR "))
            }
            Op::Nin => {
                let any: Vec<String> = values.iter().map(|v| one(v, Op::Eq, binds)).collect();
                format!("({exists} AND NOT ({}))", any.join(" OR "))
            }
            Op::All => {
                let all: Vec<String> = values.iter().map(|v| one(v, Op::Eq, binds)).collect();
                format!("({})", all.join(" AND "))
            }
            Op::Ne => format!("({exists} AND NOT ({}))", one(&values[0], Op::Eq, binds)),
            op => one(&values[0], op, binds),
        }
    }

    /// Writes a dialog's mutable fields and its occupant changes in one transaction.
    pub async fn update_dialog(
        &self,
        dialog: &Dialog,
        added: &[UserId],
        removed: &[UserId],
    ) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE dialogs SET name = $1, photo = $2, data = $3, occupants = $4, updated_at = $5, \
             is_join_required = $6 WHERE id = $7",
        )
        .bind(dialog.name.clone())
        .bind(dialog.photo.clone())
        .bind(encode_map(dialog.data.as_ref()))
        .bind(encode_users(&dialog.occupants))
        .bind(dialog.updated_at)
        .bind(i64::from(dialog.is_join_required))
        .bind(dialog.id.as_str().to_string())
        .execute(&mut *tx)
        .await?;
        let id = dialog.id.as_str().to_string();
        for user in added {
            sqlx::query(
                "INSERT INTO dialog_members (dialog_id, user_id, occupant, hidden) \
                 VALUES ($1, $2, 1, 0) \
                 ON CONFLICT (dialog_id, user_id) DO UPDATE SET occupant = 1, hidden = 0",
            )
            .bind(id.clone())
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        }
        for user in removed {
            sqlx::query(
                "UPDATE dialog_members SET occupant = 0, unread = 0 \
                 WHERE dialog_id = $1 AND user_id = $2",
            )
            .bind(id.clone())
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// "Delete for me" of a dialog the user stays in (private, public): hidden from their list
    /// until the next message.
    pub async fn hide_dialog(&self, dialog: &DialogId, user: UserId) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO dialog_members (dialog_id, user_id, occupant, hidden) VALUES ($1, $2, 0, 1) \
             ON CONFLICT (dialog_id, user_id) DO UPDATE SET hidden = 1, unread = 0",
        )
        .bind(dialog.as_str().to_string())
        .bind(user.0)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Deletes a dialog with its history and every mark.
    pub async fn delete_dialog(&self, dialog: &DialogId) -> StoreResult<()> {
        let id = dialog.as_str().to_string();
        let mut tx = self.pool().begin().await?;
        for sql in [
            "DELETE FROM message_marks WHERE dialog_id = $1",
            "DELETE FROM messages WHERE dialog_id = $1",
            "DELETE FROM dialog_members WHERE dialog_id = $1",
            "DELETE FROM dialogs WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id.clone()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether `user` gets offline alerts for the dialog (default yes).
    pub async fn dialog_notifications(&self, dialog: &DialogId, user: UserId) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT notifications FROM dialog_members WHERE dialog_id = $1 AND user_id = $2",
        )
        .bind(dialog.as_str().to_string())
        .bind(user.0)
        .fetch_optional(self.pool())
        .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(1)
            != 0)
    }

    pub async fn set_dialog_notifications(
        &self,
        dialog: &DialogId,
        user: UserId,
        enabled: bool,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO dialog_members (dialog_id, user_id, occupant, notifications) \
             VALUES ($1, $2, 0, $3) \
             ON CONFLICT (dialog_id, user_id) DO UPDATE SET notifications = $3",
        )
        .bind(dialog.as_str().to_string())
        .bind(user.0)
        .bind(i64::from(enabled))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Unread counts of `user`: per dialog (all of theirs, or the ones named) and the total.
    pub async fn unread_counts(
        &self,
        app: AppId,
        user: UserId,
        dialogs: Option<&[DialogId]>,
    ) -> StoreResult<Vec<(DialogId, i64)>> {
        let mut binds = Binds::default();
        let app_bind = binds.push(Value::Int(app.0));
        let user_bind = binds.push(Value::Int(user.0));
        let mut sql = format!(
            "SELECT k.dialog_id, k.unread FROM dialog_members k JOIN dialogs d ON d.id = k.dialog_id \
             WHERE d.app_id = {app_bind} AND k.user_id = {user_bind} AND k.occupant = 1"
        );
        if let Some(ids) = dialogs {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let list: Vec<String> = ids
                .iter()
                .map(|id| binds.push(Value::Text(id.as_str().to_string())))
                .collect();
            sql.push_str(&format!(" AND k.dialog_id IN ({})", list.join(", ")));
        }
        let rows = binds
            .apply(sqlx::query(&sql))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                Ok((object_id(&id)?, row.try_get::<i64, _>(1)?.max(0)))
            })
            .collect()
    }

    // ---- messages ----

    /// Runs one batch of the chat writer in one transaction; an outcome per write.
    pub async fn apply_chat_writes(&self, writes: &[ChatWrite]) -> StoreResult<Vec<WriteOutcome>> {
        let mut tx = self.pool().begin().await?;
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut index = 0;
        while index < writes.len() {
            // A run of saves is written with a few statements for the whole run; marks one by
            // one, in order (a mark may name a message saved just before it).
            let run: Vec<&Message> = writes[index..]
                .iter()
                .map_while(|write| match write {
                    ChatWrite::Save(message) => Some(message),
                    ChatWrite::Mark { .. } => None,
                })
                .collect();
            if !run.is_empty() {
                for chunk in run.chunks(SAVES_PER_STATEMENT) {
                    outcomes.extend(save_messages(&mut tx, chunk).await?);
                }
                index += run.len();
                continue;
            }
            if let ChatWrite::Mark {
                dialog,
                user,
                mark,
                messages,
            } = &writes[index]
            {
                apply_mark(&mut tx, dialog, *user, *mark, messages.as_deref()).await?;
                outcomes.push(WriteOutcome::Done);
            }
            index += 1;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    pub async fn message(&self, app: AppId, id: &MessageId) -> StoreResult<Option<Message>> {
        let sql =
            format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = $1 AND m.app_id = $2");
        let row = sqlx::query(&sql)
            .bind(id.as_str().to_string())
            .bind(app.0)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(message_from_row).transpose()
    }

    /// One page of a dialog's history as `user` sees it (their "deleted for me" left out), and
    /// the number of matches when the query asks for a count.
    pub async fn list_messages(
        &self,
        dialog: &DialogId,
        user: UserId,
        query: &MessageQuery,
    ) -> StoreResult<(Vec<MessageView>, u64)> {
        let mut binds = Binds::default();
        let dialog_bind = binds.push(Value::Text(dialog.as_str().to_string()));
        let user_bind = binds.push(Value::Int(user.0));
        let mut conditions = vec![
            format!("m.dialog_id = {dialog_bind}"),
            format!(
                "NOT EXISTS (SELECT 1 FROM message_marks h WHERE h.message_id = m.id \
                 AND h.user_id = {user_bind} AND h.is_hidden = 1)"
            ),
        ];
        for condition in &query.conditions {
            conditions.push(self.message_condition(condition, &mut binds));
        }
        let from = format!("FROM messages m WHERE {}", conditions.join(" AND "));
        if query.page.count {
            let total: i64 = binds
                .apply(sqlx::query(&format!("SELECT COUNT(*) {from}")))
                .fetch_one(self.pool())
                .await?
                .try_get(0)?;
            return Ok((Vec::new(), total.max(0) as u64));
        }
        let order = match query.page.sort {
            Some((field, desc)) => {
                let direction = if desc { "DESC" } else { "ASC" };
                match field {
                    MessageField::DateSent => format!("m.date_sent {direction}, m.seq {direction}"),
                    other => {
                        let column = message_column(other);
                        format!(
                            "CASE WHEN {column} IS NULL THEN 1 ELSE 0 END, {column} {direction}, \
                             m.date_sent {direction}, m.seq {direction}"
                        )
                    }
                }
            }
            None => "m.date_sent ASC, m.seq ASC".into(),
        };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} {from} ORDER BY {order} LIMIT {} OFFSET {}",
            query.page.limit, query.page.skip
        );
        let rows = binds
            .apply(sqlx::query(&sql))
            .fetch_all(self.pool())
            .await?;
        let messages = rows
            .iter()
            .map(message_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let views = self.with_marks(messages).await?;
        let count = views.len() as u64;
        Ok((views, count))
    }

    /// Messages of some dialogs in a key-set range (MAM with RSM), oldest first, as `user`
    /// sees them (their "deleted for me" left out).
    pub async fn history_page(
        &self,
        dialogs: &[DialogId],
        user: UserId,
        range: &HistoryRange,
    ) -> StoreResult<Vec<Message>> {
        if dialogs.is_empty() {
            return Ok(Vec::new());
        }
        let mut binds = Binds::default();
        let conditions = history_conditions(dialogs, user, range, &mut binds, true);
        // The newest page when paging backwards (`<before/>`), then put back in order.
        let direction = if range.from_end { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE {conditions} \
             ORDER BY m.date_sent {direction}, m.seq {direction} LIMIT {}",
            range.limit
        );
        let rows = binds
            .apply(sqlx::query(&sql))
            .fetch_all(self.pool())
            .await?;
        let mut messages = rows
            .iter()
            .map(message_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        if range.from_end {
            messages.reverse();
        }
        Ok(messages)
    }

    /// How many messages the range holds, paging keys left out (RSM `<count/>`).
    pub async fn history_count(
        &self,
        dialogs: &[DialogId],
        user: UserId,
        range: &HistoryRange,
    ) -> StoreResult<u64> {
        if dialogs.is_empty() {
            return Ok(0);
        }
        let mut binds = Binds::default();
        let conditions = history_conditions(dialogs, user, range, &mut binds, false);
        let row = binds
            .apply(sqlx::query(&format!(
                "SELECT COUNT(*) FROM messages m WHERE {conditions}"
            )))
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get::<i64, _>(0)?.max(0) as u64)
    }

    /// The (date_sent, seq) key of a message in one of `dialogs`, for key-set paging.
    pub async fn history_key(
        &self,
        dialogs: &[DialogId],
        id: &MessageId,
    ) -> StoreResult<Option<(i64, i64)>> {
        let row = sqlx::query("SELECT date_sent, seq, dialog_id FROM messages WHERE id = $1")
            .bind(id.as_str().to_string())
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let dialog: String = row.try_get(2)?;
        if !dialogs.iter().any(|d| d.as_str() == dialog) {
            return Ok(None);
        }
        Ok(Some((row.try_get(0)?, row.try_get(1)?)))
    }

    /// The private dialogs `user` is in (their 1:1 archive).
    pub async fn private_dialogs_of(&self, app: AppId, user: UserId) -> StoreResult<Vec<DialogId>> {
        let rows = sqlx::query(
            "SELECT d.id FROM dialogs d JOIN dialog_members k ON k.dialog_id = d.id \
             WHERE d.app_id = $1 AND d.type = 3 AND k.user_id = $2 AND k.occupant = 1",
        )
        .bind(app.0)
        .bind(user.0)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| object_id(&row.try_get::<String, _>(0)?))
            .collect()
    }

    /// Adds `delivered_ids`/`read_ids` (the sender counts as both).
    pub async fn with_marks(&self, messages: Vec<Message>) -> StoreResult<Vec<MessageView>> {
        let mut views: Vec<MessageView> = messages
            .into_iter()
            .map(|message| MessageView {
                delivered_ids: vec![message.sender],
                read_ids: vec![message.sender],
                message,
            })
            .collect();
        if views.is_empty() {
            return Ok(views);
        }
        let mut binds = Binds::default();
        let list: Vec<String> = views
            .iter()
            .map(|v| binds.push(Value::Text(v.message.id.as_str().to_string())))
            .collect();
        let sql = format!(
            "SELECT message_id, user_id, is_delivered, is_read FROM message_marks \
             WHERE message_id IN ({}) ORDER BY user_id",
            list.join(", ")
        );
        let rows = binds
            .apply(sqlx::query(&sql))
            .fetch_all(self.pool())
            .await?;
        for row in &rows {
            let id: String = row.try_get(0)?;
            let user = UserId(row.try_get(1)?);
            let delivered: i64 = row.try_get(2)?;
            let read: i64 = row.try_get(3)?;
            for view in views.iter_mut().filter(|v| v.message.id.as_str() == id) {
                if delivered != 0 && !view.delivered_ids.contains(&user) {
                    view.delivered_ids.push(user);
                }
                if read != 0 && !view.read_ids.contains(&user) {
                    view.read_ids.push(user);
                }
            }
        }
        Ok(views)
    }

    fn message_condition(&self, condition: &Condition<MessageField>, binds: &mut Binds) -> String {
        if condition.field == MessageField::AttachmentType {
            let element = match self.backend() {
                Backend::Sqlite => "json_extract(a.value, '$.type')",
                Backend::Postgres => "(a ->> 'type')",
            };
            let source = match self.backend() {
                Backend::Sqlite => "json_each(COALESCE(m.attachments, '[]')) a",
                Backend::Postgres => "jsonb_array_elements(COALESCE(m.attachments, '[]')::jsonb) a",
            };
            let (negate, op) = match condition.op {
                Op::Ne => (true, Op::Eq),
                Op::Nin => (true, Op::In),
                op => (false, op),
            };
            let inner = compare(element, op, &condition.values, binds);
            let exists = format!("EXISTS (SELECT 1 FROM {source} WHERE {inner})");
            return if negate {
                format!("NOT {exists}")
            } else {
                exists
            };
        }
        compare(
            message_column(condition.field),
            condition.op,
            &condition.values,
            binds,
        )
    }

    /// Replaces a message's text (REST `PUT … message=`, XEP-0308 correction).
    pub async fn edit_message(&self, id: &MessageId, body: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.pool().begin().await?;
        let result = sqlx::query("UPDATE messages SET body = $1, updated_at = $2 WHERE id = $3")
            .bind(body.to_string())
            .bind(now)
            .bind(id.as_str().to_string())
            .execute(&mut *tx)
            .await?;
        // The dialog list shows the new text if it was the last message.
        sqlx::query("UPDATE dialogs SET last_message = $1 WHERE last_message_id = $2")
            .bind(body.to_string())
            .bind(id.as_str().to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(result.rows_affected() == 1)
    }

    /// "Delete for me": the messages disappear from `user`'s history only.
    pub async fn hide_messages(&self, messages: &[Message], user: UserId) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        for message in messages {
            unread_down_if_unread(&mut tx, message, user).await?;
            sqlx::query(
                "INSERT INTO message_marks (message_id, user_id, dialog_id, is_hidden) \
                 VALUES ($1, $2, $3, 1) \
                 ON CONFLICT (message_id, user_id) DO UPDATE SET is_hidden = 1",
            )
            .bind(message.id.as_str().to_string())
            .bind(user.0)
            .bind(message.dialog.as_str().to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes messages for everyone; unread counts drop for those who had not read them.
    pub async fn delete_messages(&self, messages: &[Message]) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        for message in messages {
            let id = message.id.as_str().to_string();
            sqlx::query(
                "UPDATE dialog_members SET unread = unread - 1 WHERE dialog_id = $1 \
                 AND user_id <> $2 AND occupant = 1 AND unread > 0 AND NOT EXISTS \
                 (SELECT 1 FROM message_marks k WHERE k.message_id = $3 \
                 AND k.user_id = dialog_members.user_id AND (k.is_read = 1 OR k.is_hidden = 1))",
            )
            .bind(message.dialog.as_str().to_string())
            .bind(message.sender.0)
            .bind(id.clone())
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM message_marks WHERE message_id = $1")
                .bind(id.clone())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM messages WHERE id = $1")
                .bind(id.clone())
                .execute(&mut *tx)
                .await?;
            // A deleted last message leaves the dialog showing the newest one left.
            sqlx::query(
                "UPDATE dialogs SET last_message = n.body, last_message_date_sent = n.date_sent, \
                 last_message_user_id = n.sender_id, last_message_id = n.id \
                 FROM (SELECT body, date_sent, sender_id, id FROM messages WHERE dialog_id = $1 \
                 ORDER BY date_sent DESC, seq DESC LIMIT 1) n \
                 WHERE dialogs.id = $1 AND dialogs.last_message_id = $2",
            )
            .bind(message.dialog.as_str().to_string())
            .bind(id.clone())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE dialogs SET last_message = NULL, last_message_date_sent = NULL, \
                 last_message_user_id = NULL, last_message_id = NULL \
                 WHERE id = $1 AND last_message_id = $2",
            )
            .bind(message.dialog.as_str().to_string())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn history_conditions(
    dialogs: &[DialogId],
    user: UserId,
    range: &HistoryRange,
    binds: &mut Binds,
    with_keys: bool,
) -> String {
    let list: Vec<String> = dialogs
        .iter()
        .map(|d| binds.push(Value::Text(d.as_str().to_string())))
        .collect();
    let user_bind = binds.push(Value::Int(user.0));
    let mut conditions = vec![
        format!("m.dialog_id IN ({})", list.join(", ")),
        format!(
            "NOT EXISTS (SELECT 1 FROM message_marks h WHERE h.message_id = m.id \
             AND h.user_id = {user_bind} AND h.is_hidden = 1)"
        ),
    ];
    if let Some(start) = range.start {
        conditions.push(format!("m.date_sent >= {}", binds.push(Value::Int(start))));
    }
    if let Some(end) = range.end {
        conditions.push(format!("m.date_sent <= {}", binds.push(Value::Int(end))));
    }
    if let Some(sender) = range.sender {
        conditions.push(format!(
            "m.sender_id = {}",
            binds.push(Value::Int(sender.0))
        ));
    }
    if with_keys {
        for (key, sign) in [(range.after, ">"), (range.before, "<")] {
            if let Some((date, seq)) = key {
                let d = binds.push(Value::Int(date));
                let d2 = binds.push(Value::Int(date));
                let s = binds.push(Value::Int(seq));
                conditions.push(format!(
                    "(m.date_sent {sign} {d} OR (m.date_sent = {d2} AND m.seq {sign} {s}))"
                ));
            }
        }
    }
    conditions.join(" AND ")
}

/// A key-set range over dialog history (MAM with RSM).
#[derive(Debug, Clone, Default)]
pub struct HistoryRange {
    /// Only messages from this user.
    pub sender: Option<UserId>,
    /// `date_sent` bounds, inclusive.
    pub start: Option<i64>,
    pub end: Option<i64>,
    /// Strictly after / before this (date_sent, seq) key (see [`Store::history_key`]).
    pub after: Option<(i64, i64)>,
    pub before: Option<(i64, i64)>,
    /// Take the newest `limit` of the range instead of the oldest.
    pub from_end: bool,
    pub limit: u32,
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Saves per INSERT: 13 values each, well under both backends' bind limits.
const SAVES_PER_STATEMENT: usize = 200;

/// Inserts messages with one statement, then moves each dialog's last message and the
/// members' unread counts with one statement each for the whole group: a batch of N messages
/// costs three statements, not 3 × N. A message whose id exists is skipped (`DuplicateId`).
async fn save_messages(tx: &mut Tx<'_>, messages: &[&Message]) -> StoreResult<Vec<WriteOutcome>> {
    let mut binds = Binds::default();
    let mut rows = Vec::with_capacity(messages.len());
    for message in messages {
        let values = [
            Value::Text(message.id.as_str().to_string()),
            Value::Int(message.app.0),
            Value::Text(message.dialog.as_str().to_string()),
            Value::Int(message.sender.0),
        ];
        let mut row: Vec<String> = values.into_iter().map(|v| binds.push(v)).collect();
        row.push(binds.push_opt_int(message.recipient.map(|r| r.0)));
        row.push(binds.push_opt_text(message.body.clone()));
        row.push(binds.push(Value::Int(message.date_sent)));
        row.push(binds.push_opt_text(encode_list(&message.attachments)));
        row.push(binds.push_opt_text(
            (!message.custom.is_empty()).then(|| Json::Object(message.custom.clone()).to_string()),
        ));
        row.push(binds.push(Value::Int(i64::from(message.markable))));
        row.push(binds.push_opt_text(message.stanza.clone()));
        row.push(binds.push(Value::Int(message.created_at)));
        row.push(binds.push(Value::Int(message.updated_at)));
        rows.push(format!("({})", row.join(", ")));
    }
    let sql = format!(
        "INSERT INTO messages (id, app_id, dialog_id, sender_id, recipient_id, body, date_sent, \
         attachments, custom, markable, stanza, created_at, updated_at) VALUES {} \
         ON CONFLICT (id) DO NOTHING RETURNING id",
        rows.join(", ")
    );
    let inserted: Vec<String> = binds
        .apply(sqlx::query(&sql))
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    let mut fresh: std::collections::HashSet<&str> = inserted.iter().map(String::as_str).collect();
    let mut outcomes = Vec::with_capacity(messages.len());
    let mut saved: Vec<&Message> = Vec::with_capacity(messages.len());
    for message in messages {
        // An id that appears twice in the batch is inserted once: the first one.
        if fresh.remove(message.id.as_str()) {
            outcomes.push(WriteOutcome::Done);
            saved.push(message);
        } else {
            outcomes.push(WriteOutcome::DuplicateId);
        }
    }
    if saved.is_empty() {
        return Ok(outcomes);
    }

    // Each dialog's newest saved message (by date_sent, then arrival) becomes its last one,
    // unless the dialog already shows a newer one (an injected old message).
    let mut newest: Vec<&Message> = Vec::new();
    for message in &saved {
        match newest.iter_mut().find(|m| m.dialog == message.dialog) {
            Some(current) if current.date_sent <= message.date_sent => *current = message,
            Some(_) => {}
            None => newest.push(message),
        }
    }
    let mut binds = Binds::default();
    let rows: Vec<String> = newest
        .iter()
        .map(|m| {
            let row = [
                binds.push(Value::Text(m.dialog.as_str().to_string())),
                binds.push_opt_text(m.body.clone()),
                binds.push(Value::Int(m.date_sent)),
                binds.push(Value::Int(m.sender.0)),
                binds.push(Value::Text(m.id.as_str().to_string())),
                binds.push(Value::Int(m.created_at)),
            ];
            format!("({})", row.join(", "))
        })
        .collect();
    let sql = format!(
        "WITH v (dialog_id, body, date_sent, sender_id, message_id, at) AS (VALUES {}) \
         UPDATE dialogs SET last_message = v.body, last_message_date_sent = v.date_sent, \
         last_message_user_id = v.sender_id, last_message_id = v.message_id, updated_at = v.at \
         FROM v WHERE dialogs.id = v.dialog_id \
         AND (dialogs.last_message_date_sent IS NULL OR dialogs.last_message_date_sent <= v.date_sent)",
        rows.join(", ")
    );
    binds.apply(sqlx::query(&sql)).execute(&mut **tx).await?;

    // Unread: every occupant gains the messages of others; everyone sees the dialog again.
    let mut counts: Vec<(&DialogId, UserId, i64)> = Vec::new();
    for message in &saved {
        match counts
            .iter_mut()
            .find(|(d, s, _)| **d == message.dialog && *s == message.sender)
        {
            Some((_, _, n)) => *n += 1,
            None => counts.push((&message.dialog, message.sender, 1)),
        }
    }
    let mut binds = Binds::default();
    let rows: Vec<String> = counts
        .iter()
        .map(|(dialog, sender, n)| {
            let row = [
                binds.push(Value::Text(dialog.as_str().to_string())),
                binds.push(Value::Int(sender.0)),
                binds.push(Value::Int(*n)),
            ];
            format!("({})", row.join(", "))
        })
        .collect();
    let sql = format!(
        "WITH v (dialog_id, sender_id, n) AS (VALUES {}) \
         UPDATE dialog_members SET hidden = 0, unread = unread + CASE WHEN occupant = 1 THEN \
         (SELECT COALESCE(SUM(v.n), 0) FROM v WHERE v.dialog_id = dialog_members.dialog_id \
         AND v.sender_id <> dialog_members.user_id) ELSE 0 END \
         WHERE dialog_id IN (SELECT dialog_id FROM v)",
        rows.join(", ")
    );
    binds.apply(sqlx::query(&sql)).execute(&mut **tx).await?;
    Ok(outcomes)
}

async fn apply_mark(
    tx: &mut Tx<'_>,
    dialog: &DialogId,
    user: UserId,
    mark: Mark,
    messages: Option<&[MessageId]>,
) -> StoreResult<()> {
    let read = i64::from(mark == Mark::Read);
    let dialog_id = dialog.as_str().to_string();
    let upsert = "ON CONFLICT (message_id, user_id) DO UPDATE SET is_delivered = 1, \
                  is_read = CASE WHEN excluded.is_read = 1 THEN 1 ELSE message_marks.is_read END";
    match messages {
        Some(ids) => {
            for id in ids {
                let id = id.as_str().to_string();
                if mark == Mark::Read {
                    sqlx::query(
                        "UPDATE dialog_members SET unread = unread - 1 \
                         WHERE dialog_id = $1 AND user_id = $2 AND unread > 0 \
                         AND EXISTS (SELECT 1 FROM messages m WHERE m.id = $3 AND m.dialog_id = $1 \
                         AND m.sender_id <> $2) \
                         AND NOT EXISTS (SELECT 1 FROM message_marks k WHERE k.message_id = $3 \
                         AND k.user_id = $2 AND (k.is_read = 1 OR k.is_hidden = 1))",
                    )
                    .bind(dialog_id.clone())
                    .bind(user.0)
                    .bind(id.clone())
                    .execute(&mut **tx)
                    .await?;
                }
                sqlx::query(&format!(
                    "INSERT INTO message_marks (message_id, user_id, dialog_id, is_delivered, is_read) \
                     SELECT m.id, $1, m.dialog_id, 1, $2 FROM messages m \
                     WHERE m.id = $3 AND m.dialog_id = $4 AND m.sender_id <> $1 {upsert}"
                ))
                .bind(user.0)
                .bind(read)
                .bind(id)
                .bind(dialog_id.clone())
                .execute(&mut **tx)
                .await?;
            }
        }
        None => {
            // Every unread message is among the newest `unread` messages from others, so
            // marking all read touches only those; delivered-all the newest few.
            let limit = if mark == Mark::Read {
                let row = sqlx::query(
                    "SELECT unread FROM dialog_members WHERE dialog_id = $1 AND user_id = $2",
                )
                .bind(dialog_id.clone())
                .bind(user.0)
                .fetch_optional(&mut **tx)
                .await?;
                row.map(|r| r.try_get::<i64, _>(0))
                    .transpose()?
                    .unwrap_or(0)
                    .max(0)
            } else {
                DELIVERED_ALL_LIMIT
            };
            if limit > 0 {
                sqlx::query(&format!(
                    "INSERT INTO message_marks (message_id, user_id, dialog_id, is_delivered, is_read) \
                     SELECT id, $1, dialog_id, 1, $2 FROM (SELECT id, dialog_id FROM messages \
                     WHERE dialog_id = $3 AND sender_id <> $1 \
                     ORDER BY date_sent DESC, seq DESC LIMIT {limit}) newest WHERE true {upsert}"
                ))
                .bind(user.0)
                .bind(read)
                .bind(dialog_id.clone())
                .execute(&mut **tx)
                .await?;
            }
            if mark == Mark::Read {
                sqlx::query(
                    "UPDATE dialog_members SET unread = 0 WHERE dialog_id = $1 AND user_id = $2",
                )
                .bind(dialog_id)
                .bind(user.0)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(())
}

/// Lowers `user`'s unread count for `message` if it counted there (not theirs, not read).
async fn unread_down_if_unread(
    tx: &mut Tx<'_>,
    message: &Message,
    user: UserId,
) -> StoreResult<()> {
    if message.sender == user {
        return Ok(());
    }
    sqlx::query(
        "UPDATE dialog_members SET unread = unread - 1 \
         WHERE dialog_id = $1 AND user_id = $2 AND unread > 0 AND occupant = 1 \
         AND NOT EXISTS (SELECT 1 FROM message_marks k WHERE k.message_id = $3 \
         AND k.user_id = $2 AND (k.is_read = 1 OR k.is_hidden = 1))",
    )
    .bind(message.dialog.as_str().to_string())
    .bind(user.0)
    .bind(message.id.as_str().to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn message_column(field: MessageField) -> &'static str {
    match field {
        MessageField::Id => "m.id",
        MessageField::Message => "m.body",
        MessageField::DateSent => "m.date_sent",
        MessageField::SenderId => "m.sender_id",
        MessageField::RecipientId => "m.recipient_id",
        MessageField::UpdatedAt => "m.updated_at",
        MessageField::CreatedAt => "m.created_at",
        // Handled by `message_condition`; never sorted by.
        MessageField::AttachmentType => "m.attachments",
    }
}

/// `expr op values` for a scalar expression.
fn compare(expr: &str, op: Op, values: &[Value], binds: &mut Binds) -> String {
    let mut one = |value: &Value| binds.push(value.clone());
    match op {
        Op::Eq => format!("{expr} = {}", one(&values[0])),
        Op::Ne => format!("({expr} IS NULL OR {expr} <> {})", one(&values[0])),
        Op::Lt => format!("{expr} < {}", one(&values[0])),
        Op::Lte => format!("{expr} <= {}", one(&values[0])),
        Op::Gt => format!("{expr} > {}", one(&values[0])),
        Op::Gte => format!("{expr} >= {}", one(&values[0])),
        Op::In => {
            let list: Vec<String> = values.iter().map(&mut one).collect();
            format!("{expr} IN ({})", list.join(", "))
        }
        Op::Nin => {
            let list: Vec<String> = values.iter().map(&mut one).collect();
            format!("({expr} IS NULL OR {expr} NOT IN ({}))", list.join(", "))
        }
        Op::All => {
            let all: Vec<String> = values
                .iter()
                .map(|v| format!("{expr} = {}", one(v)))
                .collect();
            format!("({})", all.join(" AND "))
        }
        Op::Ctn => {
            let text = match &values[0] {
                Value::Text(t) => t.clone(),
                Value::Int(i) => i.to_string(),
                Value::Real(r) => r.to_string(),
            };
            let pattern = format!("%{}%", super::escape_like(&text.to_lowercase()));
            format!(
                "LOWER({expr}) LIKE {} ESCAPE '\\'",
                one(&Value::Text(pattern))
            )
        }
    }
}

/// A membership test on a list of users; `count_sql(list)` counts how many of `list` match.
fn membership(
    op: Op,
    values: &[Value],
    binds: &mut Binds,
    count_sql: impl Fn(&str) -> String,
) -> String {
    let mut distinct: Vec<i64> = values
        .iter()
        .filter_map(|v| match v {
            Value::Int(i) => Some(*i),
            _ => None,
        })
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    let list: Vec<String> = distinct
        .iter()
        .map(|v| binds.push(Value::Int(*v)))
        .collect();
    let count = count_sql(&list.join(", "));
    match op {
        Op::All => format!("({count}) = {}", distinct.len()),
        Op::Ne | Op::Nin => format!("({count}) = 0"),
        _ => format!("({count}) > 0"),
    }
}

fn encode_users(users: &[UserId]) -> String {
    users
        .iter()
        .map(|u| u.0.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_users(text: &str) -> Vec<UserId> {
    text.split(',')
        .filter_map(|t| t.trim().parse().ok())
        .map(UserId)
        .collect()
}

fn encode_map(map: Option<&Map<String, Json>>) -> Option<String> {
    map.map(|m| Json::Object(m.clone()).to_string())
}

fn encode_list(list: &[Map<String, Json>]) -> Option<String> {
    (!list.is_empty())
        .then(|| Json::Array(list.iter().cloned().map(Json::Object).collect()).to_string())
}

fn decode_map(text: Option<String>) -> Option<Map<String, Json>> {
    match serde_json::from_str(&text?) {
        Ok(Json::Object(map)) => Some(map),
        _ => None,
    }
}

fn object_id(text: &str) -> StoreResult<ObjectId> {
    ObjectId::parse(text).ok_or_else(|| {
        StoreError::Backend(sqlx::Error::Decode(
            format!("stored id {text:?} is not a 24-hex id").into(),
        ))
    })
}

fn dialog_from_row(row: &AnyRow) -> StoreResult<Dialog> {
    let id: String = row.try_get(0)?;
    let kind: i64 = row.try_get(2)?;
    let last_id: Option<String> = row.try_get(12)?;
    let last_message = match (last_id, row.try_get::<Option<i64>, _>(10)?) {
        (Some(id), Some(date_sent)) => Some(LastMessage {
            id: object_id(&id)?,
            text: row.try_get(9)?,
            date_sent,
            user: UserId(row.try_get::<Option<i64>, _>(11)?.unwrap_or(0)),
        }),
        _ => None,
    };
    Ok(Dialog {
        id: object_id(&id)?,
        app: AppId(row.try_get(1)?),
        kind: DialogType::from_code(kind).unwrap_or(DialogType::Group),
        owner: UserId(row.try_get(3)?),
        name: row.try_get(4)?,
        photo: row.try_get(5)?,
        is_join_required: row.try_get::<i64, _>(6)? != 0,
        data: decode_map(row.try_get(7)?),
        occupants: decode_users(&row.try_get::<String, _>(8)?),
        last_message,
        created_at: row.try_get(13)?,
        updated_at: row.try_get(14)?,
    })
}

fn message_from_row(row: &AnyRow) -> StoreResult<Message> {
    let id: String = row.try_get(0)?;
    let dialog: String = row.try_get(2)?;
    let attachments = match row.try_get::<Option<String>, _>(7)? {
        Some(text) => match serde_json::from_str(&text) {
            Ok(Json::Array(items)) => items
                .into_iter()
                .filter_map(|item| match item {
                    Json::Object(map) => Some(map),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    Ok(Message {
        id: object_id(&id)?,
        app: AppId(row.try_get(1)?),
        dialog: object_id(&dialog)?,
        sender: UserId(row.try_get(3)?),
        recipient: row.try_get::<Option<i64>, _>(4)?.map(UserId),
        body: row.try_get(5)?,
        date_sent: row.try_get(6)?,
        attachments,
        custom: decode_map(row.try_get(8)?).unwrap_or_default(),
        markable: row.try_get::<i64, _>(9)? != 0,
        stanza: row.try_get(10)?,
        created_at: row.try_get(11)?,
        updated_at: row.try_get(12)?,
    })
}

impl Store {
    /// Which of `users` exist in `app`.
    pub async fn existing_users(&self, app: AppId, users: &[UserId]) -> StoreResult<Vec<UserId>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut binds = Binds::default();
        let app_bind = binds.push(Value::Int(app.0));
        let list: Vec<String> = users.iter().map(|u| binds.push(Value::Int(u.0))).collect();
        let sql = format!(
            "SELECT id FROM users WHERE app_id = {app_bind} AND id IN ({})",
            list.join(", ")
        );
        let rows = binds
            .apply(sqlx::query(&sql))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok(UserId(r.try_get(0)?))).collect()
    }
}
