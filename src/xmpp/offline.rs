//! Offline storage (XEP-0160) with delayed-delivery stamps (XEP-0203): messages for a user
//! nobody can take now wait in the store, up to `xmpp.offline_max_per_user`, and are flushed
//! to the user's first available resource with a non-negative priority.

use std::sync::Arc;

use xmpp_proto::csi::Urgency;
use xmpp_proto::errors::{StanzaError, StanzaErrorCondition};
use xmpp_proto::{escape_attr, Stanza};

use super::classify::{MessageTraits, NS_DELAY};
use super::reply::{bounce_text, parse_stanza, retarget, Failure, Handled, Reply};
use super::session::Session;
use crate::clock;
use crate::model::UserId;

impl Session {
    /// Stores a message for `user`, who is offline, if it is worth keeping; bounces it when
    /// the user does not exist or their offline queue is full.
    pub(super) async fn store_offline(
        &self,
        original: &Stanza,
        stamped: &str,
        traits: &MessageTraits,
        user: UserId,
    ) -> Vec<Reply> {
        if !traits.worth_storing() {
            return Vec::new();
        }
        let handled = self.try_store_offline(stamped, user).await;
        self.answer(original, handled)
    }

    async fn try_store_offline(&self, stamped: &str, user: UserId) -> Handled {
        let store = &self.ctx.store;
        if store.user(self.app, user).await?.is_none() {
            return Err(StanzaErrorCondition::ServiceUnavailable.into());
        }
        let limit = i64::from(self.ctx.config.xmpp.offline_max_per_user);
        if store.offline_count(user).await? >= limit {
            self.ctx
                .metrics
                .limits
                .with_label_values(&["offline_queue"])
                .inc();
            return Err(Failure::from(StanzaErrorCondition::ResourceConstraint));
        }
        let now = clock::unix_now();
        let delayed = add_delay(stamped, self.ctx.domain(), now);
        store.push_offline(self.app, user, &delayed, now).await?;
        self.ctx.metrics.offline_stored.inc();
        self.ctx.metrics.offline_queue.inc();
        Ok(Vec::new())
    }

    /// The next page of the user's stored messages, addressed to this session, and their
    /// removal from the store. Delivered to the connection first, deleted after: a crash
    /// between the two delivers again (at least once), never loses. A full page leaves
    /// [`has_offline_backlog`](Self::has_offline_backlog) set: the connection asks for the next
    /// page once it has written this one, so a login with a thousand stored messages holds a
    /// page in memory at a time, not all of them.
    pub(super) async fn offline_messages(&mut self) -> Vec<Reply> {
        self.offline_backlog = false;
        let messages = match self
            .ctx
            .store
            .offline_messages(self.user, OFFLINE_PAGE as i64)
            .await
        {
            Ok(messages) => messages,
            Err(error) => {
                tracing::error!(%error, "reading offline messages failed");
                return Vec::new();
            }
        };
        self.offline_backlog = messages.len() == OFFLINE_PAGE;
        let Some(last) = messages.last().map(|m| m.id) else {
            return Vec::new();
        };
        let me = self.me().to_string();
        let replies: Vec<Reply> = messages
            .iter()
            .map(|m| (retarget(&m.stanza, &me), Urgency::Urgent))
            .collect();
        match self.ctx.store.delete_offline(self.user, last).await {
            // The gauge follows the rows: what stays is still counted, and what two logins of
            // the same user flushed together is subtracted once.
            Ok(deleted) => self
                .ctx
                .metrics
                .offline_queue
                .sub(i64::try_from(deleted).unwrap_or(i64::MAX)),
            Err(error) => {
                // The same page would come back: stop here, the rest waits for the next login.
                self.offline_backlog = false;
                tracing::error!(%error, "deleting delivered offline messages failed");
            }
        }
        replies
    }

    /// A stanza left over when the session ended (queued, held or unacknowledged): a message
    /// worth keeping is stored for the user's next login, stamped with when it was kept unless
    /// it carries a stamp already. The offline cap holds here too: over it, the sender (if
    /// still online) gets the `resource-constraint` bounce a new message would have got.
    pub(super) async fn keep_leftover(&self, text: &str) {
        let parsed = match parse_stanza(text) {
            Ok(parsed) if parsed.envelope().name == "message" => parsed,
            _ => return,
        };
        let traits = MessageTraits::of(&parsed);
        if !traits.worth_storing() {
            return;
        }
        let limit = i64::from(self.ctx.config.xmpp.offline_max_per_user);
        match self.ctx.store.offline_count(self.user).await {
            Ok(count) if count < limit => {}
            Ok(_) => {
                self.ctx
                    .metrics
                    .limits
                    .with_label_values(&["offline_queue"])
                    .inc();
                return self.bounce_to_sender(&parsed, StanzaErrorCondition::ResourceConstraint);
            }
            Err(error) => {
                tracing::error!(%error, "counting offline messages failed");
                return self.bounce_to_sender(&parsed, StanzaErrorCondition::InternalServerError);
            }
        }
        let now = clock::unix_now();
        let delayed = if traits.delayed {
            text.to_string()
        } else {
            add_delay(text, self.ctx.domain(), now)
        };
        match self
            .ctx
            .store
            .push_offline(self.app, self.user, &delayed, now)
            .await
        {
            Ok(_) => {
                self.ctx.metrics.offline_stored.inc();
                self.ctx.metrics.offline_queue.inc();
            }
            Err(error) => tracing::error!(%error, "storing a message left at session end failed"),
        }
    }
}

impl Session {
    /// Whether stored messages remain to be flushed to this session after the last page.
    pub fn has_offline_backlog(&self) -> bool {
        self.offline_backlog
    }

    /// The next page of the flush begun by the initial presence (empty when none is left).
    pub async fn next_offline_page(&mut self) -> Vec<Reply> {
        if !self.offline_backlog {
            return Vec::new();
        }
        self.offline_messages().await
    }

    /// Returns `message`, which was for this session's user, to its sender as an error, if the
    /// sender is a session of this server that is still bound.
    fn bounce_to_sender(&self, message: &Stanza, condition: StanzaErrorCondition) {
        let Some(sender) = message
            .envelope()
            .from_jid()
            .ok()
            .flatten()
            .and_then(|from| from.as_full().cloned())
            .and_then(|from| self.ctx.hub.session(&from))
        else {
            return;
        };
        let error = bounce_text(
            message,
            &self.my_bare().to_string(),
            &sender.shared.jid.to_string(),
            &StanzaError::new(condition),
        );
        self.hand_over(&sender, Arc::from(error), Urgency::Urgent);
    }
}

/// Stored messages read and written per page of a login's flush.
pub(super) const OFFLINE_PAGE: usize = 50;

/// Appends a XEP-0203 `<delay>` as the last child of a message.
pub(super) fn add_delay(stanza: &str, domain: &str, now: i64) -> String {
    let delay = format!(
        "<delay xmlns='{NS_DELAY}' from='{}' stamp='{}'/>",
        escape_attr(domain),
        clock::iso8601(now)
    );
    if let Some(stripped) = stanza.strip_suffix("</message>") {
        return format!("{stripped}{delay}</message>");
    }
    if let Some(stripped) = stanza.strip_suffix("/>") {
        return format!("{stripped}>{delay}</message>");
    }
    stanza.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_goes_last() {
        let out = add_delay("<message to='a@b'><body>x</body></message>", "d", 0);
        assert_eq!(out, "<message to='a@b'><body>x</body><delay xmlns='urn:xmpp:delay' from='d' stamp='1970-01-01T00:00:00Z'/></message>");
        let out = add_delay("<message to='a@b'/>", "d", 0);
        assert!(out.starts_with("<message to='a@b'><delay") && out.ends_with("</message>"));
    }
}
