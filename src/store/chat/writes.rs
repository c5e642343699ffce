//! Writes: the chat writer's batches ([`Store::apply_chat_writes`], one transaction per
//! batch; a run of saves is three statements whatever its length), read/delivered marks,
//! edits, "delete for me" and delete for everyone, each keeping unread counters right.

use serde_json::Value as Json;
use sqlx::Row;

use super::{encode_list, Binds, Tx};
use crate::chat::model::{DialogId, Mark, Message, MessageId};
use crate::chat::query::Value;
use crate::model::UserId;
use crate::store::{Backend, Store, StoreResult};

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

impl Store {
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
                for range in repeatable_chunks(run.len(), SAVES_PER_STATEMENT) {
                    outcomes.extend(save_messages(&mut tx, self.backend(), &run[range]).await?);
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

/// Most saves per INSERT (13 values each). Binding used to cost the square of a statement's
/// parameter count (sqlx looks up each parameter's name, and SQLite walks the list of numbered
/// names to answer); the writer's statements now use anonymous `?` on SQLite
/// ([`Binds::in_order`]), and 16 measured as fast as 64 with shorter statements to prepare.
const SAVES_PER_STATEMENT: usize = 16;

/// Splits `0..len` into ranges whose lengths are powers of two of at most `max` (a power of
/// two): the multi-row statements built for them come in a handful of shapes, each prepared
/// once and then found in the connection's statement cache, instead of a new statement for
/// every batch length.
fn repeatable_chunks(len: usize, max: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    debug_assert!(max.is_power_of_two());
    let mut start = 0;
    std::iter::from_fn(move || {
        let left = len - start;
        if left == 0 {
            return None;
        }
        let size = if left >= max {
            max
        } else {
            1 << (usize::BITS - 1 - left.leading_zeros())
        };
        start += size;
        Some(start - size..start)
    })
}

/// Inserts messages with one statement, then moves each dialog's last message and the
/// members' unread counts with a statement or two each for the whole group: a batch of N
/// messages costs a handful of statements, not 3 × N. A message whose id exists is skipped (`DuplicateId`).
async fn save_messages(
    tx: &mut Tx<'_>,
    backend: Backend,
    messages: &[&Message],
) -> StoreResult<Vec<WriteOutcome>> {
    let mut binds = Binds::in_order(backend);
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
    for range in repeatable_chunks(newest.len(), SAVES_PER_STATEMENT) {
        let mut binds = Binds::in_order(backend);
        let rows: Vec<String> = newest[range]
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
    }

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
    // A (dialog, sender) pair split over two statements adds its parts: the sum is the same.
    for range in repeatable_chunks(counts.len(), SAVES_PER_STATEMENT) {
        let mut binds = Binds::in_order(backend);
        let rows: Vec<String> = counts[range]
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
    }
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

#[cfg(test)]
mod tests {
    use super::repeatable_chunks;

    #[test]
    fn chunks_are_powers_of_two_covering_everything_in_order() {
        for len in 0..200 {
            let chunks: Vec<_> = repeatable_chunks(len, 32).collect();
            let mut next = 0;
            for chunk in &chunks {
                assert_eq!(chunk.start, next);
                assert!(chunk.len().is_power_of_two() && chunk.len() <= 32);
                next = chunk.end;
            }
            assert_eq!(next, len);
        }
        assert_eq!(
            repeatable_chunks(45, 32)
                .map(|r| r.len())
                .collect::<Vec<_>>(),
            [32, 8, 4, 1]
        );
    }
}
