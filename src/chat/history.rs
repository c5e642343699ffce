//! Server-side history: saving messages (XMPP `save_to_history`, REST injection), marks
//! (read/delivered), edits and deletes, with QuickBlox's rules:
//!
//! - A message is stored under the sender's stanza id when that is a 24-hex id not used yet,
//!   else under a new one (the delivered copy says which, in `extraParams/message_id`).
//! - `date_sent` is the client's when within 5 s of the server's clock, else the server's
//!   (seed 002 "Datetime issue"); REST injection keeps the client's value.
//! - Only occupants write (anyone in a public dialog); only the sender edits; "delete for
//!   me" hides, `force=1` (the sender or the dialog's owner) deletes for everyone.

use super::model::{Dialog, Mark, Message, MessageId, MessageView, ObjectId};
use super::query::MessageQuery;
use super::writer::Pending;
use super::{Chat, ChatError, ChatResult};
use crate::model::UserId;
use crate::store::{ChatWrite, WriteOutcome};

/// How far a client's `date_sent` may be from the server's clock and still be kept.
pub const DATE_SENT_TOLERANCE_S: i64 = 5;

/// The `date_sent` to store for a live message: the client's if close to `now`.
pub fn live_date_sent(client: Option<i64>, now: i64) -> i64 {
    match client {
        Some(date) if (date - now).abs() <= DATE_SENT_TOLERANCE_S => date,
        _ => now,
    }
}

impl Chat {
    /// Whether `user` may post to the dialog.
    pub fn may_write(dialog: &Dialog, user: UserId) -> bool {
        dialog.may_read(user)
    }

    /// Stores `message` (its dialog already checked), durable when this returns. If its id is
    /// taken, a new one is chosen and `render` is asked again for the stanza kept for MAM.
    pub async fn save(
        &self,
        mut message: Message,
        render: impl Fn(&Message) -> Option<String>,
    ) -> ChatResult<Message> {
        message.stanza = render(&message);
        let pending = self.queue_save(message.clone()).await?;
        self.settle_save(pending, message, render).await
    }

    /// Queues `message` (its stanza already rendered) for the next commit and returns at
    /// once; [`settle_save`](Self::settle_save) finishes it.
    pub async fn queue_save(&self, message: Message) -> ChatResult<Pending> {
        Ok(self.writer().submit(ChatWrite::Save(message)).await?)
    }

    /// Waits for a save queued by [`queue_save`](Self::queue_save) and returns the message as
    /// stored: under a new id (its stanza rendered again) if the client's was taken.
    pub async fn settle_save(
        &self,
        mut pending: Pending,
        mut message: Message,
        render: impl Fn(&Message) -> Option<String>,
    ) -> ChatResult<Message> {
        let mut attempts = 1;
        loop {
            match pending.outcome().await? {
                WriteOutcome::Done => return Ok(message),
                WriteOutcome::DuplicateId if attempts < 3 => {
                    attempts += 1;
                    message.id = ObjectId::generate(message.created_at);
                    message.stanza = render(&message);
                    pending = self.queue_save(message.clone()).await?;
                }
                WriteOutcome::DuplicateId => {
                    return Err(ChatError::Invalid(
                        "_id".into(),
                        "could not be assigned; try again".into(),
                    ))
                }
            }
        }
    }

    /// Marks messages of `dialog` delivered or read by `user` (`None`: all of them).
    pub async fn mark(
        &self,
        dialog: &Dialog,
        user: UserId,
        mark: Mark,
        messages: Option<Vec<MessageId>>,
    ) -> ChatResult<()> {
        self.writer()
            .write(ChatWrite::Mark {
                dialog: dialog.id.clone(),
                user,
                mark,
                messages,
            })
            .await?;
        Ok(())
    }

    /// A page of history as `user` sees it; with `mark_as_read`, the listed messages from
    /// others become read (QuickBlox's default for `GET /chat/Message`).
    pub async fn list_messages(
        &self,
        dialog: &Dialog,
        user: UserId,
        query: &MessageQuery,
        mark_as_read: bool,
    ) -> ChatResult<(Vec<MessageView>, u64)> {
        let (mut views, count) = self.store.list_messages(&dialog.id, user, query).await?;
        if mark_as_read && !query.page.count {
            let unread: Vec<MessageId> = views
                .iter()
                .filter(|v| v.message.sender != user && !v.read_ids.contains(&user))
                .map(|v| v.message.id.clone())
                .collect();
            if !unread.is_empty() {
                self.mark(dialog, user, Mark::Read, Some(unread)).await?;
                for view in views.iter_mut().filter(|v| v.message.sender != user) {
                    if !view.read_ids.contains(&user) {
                        view.read_ids.push(user);
                    }
                    if !view.delivered_ids.contains(&user) {
                        view.delivered_ids.push(user);
                    }
                }
            }
        }
        Ok((views, count))
    }

    /// The messages named by `ids` in `dialog` (when given), all of them or a 404 naming the
    /// first missing one: a request with one bad id changes nothing.
    pub async fn messages_by_id(
        &self,
        app: crate::model::AppId,
        ids: &[MessageId],
    ) -> ChatResult<Vec<Message>> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            match self.store.message(app, id).await? {
                Some(message) => found.push(message),
                None => return Err(ChatError::NotFound(format!("Message {id} not found"))),
            }
        }
        Ok(found)
    }

    /// Replaces the text of a message; only its sender may.
    pub async fn edit_message(
        &self,
        message: &Message,
        user: UserId,
        body: &str,
        now: i64,
    ) -> ChatResult<()> {
        if message.sender != user {
            return Err(ChatError::Forbidden(
                "Only the sender can change a message".into(),
            ));
        }
        self.store.edit_message(&message.id, body, now).await?;
        Ok(())
    }

    /// XEP-0308 last message correction: `user`'s own message `original` (in `dialog`, when
    /// given) gets `body`. Anything else (not theirs, unknown, malformed id) changes nothing.
    pub async fn correct(
        &self,
        app: crate::model::AppId,
        user: UserId,
        original: &str,
        body: Option<&str>,
        dialog: Option<&super::model::DialogId>,
        now: i64,
    ) -> ChatResult<()> {
        let (Some(id), Some(body)) = (ObjectId::parse(original), body) else {
            return Ok(());
        };
        if let Some(message) = self.store.message(app, &id).await? {
            if message.sender == user && dialog.is_none_or(|d| *d == message.dialog) {
                self.store.edit_message(&id, body, now).await?;
            }
        }
        Ok(())
    }

    /// Deletes messages for `user`, or for everyone with `force` (the sender or the dialog's
    /// owner only). Checks every message before changing any.
    pub async fn delete_messages(
        &self,
        user: UserId,
        messages: &[(Message, Dialog)],
        force: bool,
    ) -> ChatResult<()> {
        for (message, dialog) in messages {
            let allowed = if force {
                message.sender == user || dialog.owner == user
            } else {
                dialog.may_read(user)
            };
            if !allowed {
                return Err(ChatError::forbidden());
            }
        }
        let list: Vec<Message> = messages.iter().map(|(m, _)| m.clone()).collect();
        if force {
            self.store.delete_messages(&list).await?;
        } else {
            self.store.hide_messages(&list, user).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_date_sent_is_kept_only_near_server_time() {
        assert_eq!(live_date_sent(Some(1000), 1003), 1000);
        assert_eq!(live_date_sent(Some(1008), 1003), 1008);
        assert_eq!(live_date_sent(Some(1009), 1003), 1003);
        assert_eq!(live_date_sent(Some(0), 1003), 1003);
        assert_eq!(live_date_sent(None, 1003), 1003);
    }
}
