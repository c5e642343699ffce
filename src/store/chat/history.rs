//! Reading history: REST pages (filters, sort, `skip`), MAM ranges by key set on
//! `(date_sent, seq)`, and the delivered/read ids of a page. A user's "deleted for me"
//! messages are left out everywhere.

use sqlx::Row;

use super::{compare, message_from_row, Binds, MESSAGE_COLUMNS};
use crate::chat::model::{DialogId, Message, MessageId, MessageView};
use crate::chat::query::{Condition, MessageField, MessageQuery, Op, Value};
use crate::model::{AppId, UserId};
use crate::store::{Backend, Store, StoreResult};

impl Store {
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
}

pub(super) fn history_conditions(
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

pub(super) fn message_column(field: MessageField) -> &'static str {
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
