//! Subscription requests and answers between two users of this server (RFC 6121 §3). The
//! core's [`between_local`] decides both rosters' new states, what is delivered to whom and
//! which presence follows; this file reads and writes both rosters in one store transaction
//! and carries the decision out.

use std::sync::Arc;

use xmpp_proto::csi::Urgency;
use xmpp_proto::subscription::{
    between_local, PresenceEffect, SubscriptionKind, SubscriptionState,
};
use xmpp_proto::{escape_attr, BareJid};

use super::hub::SessionHandle;
use super::reply::{retarget, Handled};
use super::roster::empty_item;
use super::session::Session;
use crate::model::{RosterItem, UserId};

impl Session {
    /// A subscription stanza of `kind` from this session's user to `contact`. Answers on
    /// the contact's behalf come back as pushes and presence, not as replies.
    pub(super) async fn subscription(
        &mut self,
        kind: SubscriptionKind,
        contact_bare: &BareJid,
        contact: UserId,
    ) -> Handled {
        if contact == self.user || self.ctx.store.user(self.app, contact).await?.is_none() {
            return Ok(Vec::new());
        }
        let me = self.user;
        let (mine, theirs, exchange) = self
            .ctx
            .store
            .update_roster_pair(self.app, me, contact, |mine, theirs| {
                let mine = mine.unwrap_or_else(|| empty_item(contact));
                let theirs = theirs.unwrap_or_else(|| empty_item(me));
                let exchange = between_local(state_of(&mine), state_of(&theirs), kind);
                (
                    exchange
                        .user_changed
                        .then(|| with_state(mine, exchange.user_side)),
                    exchange
                        .contact_changed
                        .then(|| with_state(theirs, exchange.contact_side)),
                    exchange,
                )
            })
            .await?;
        let my_bare = self.my_bare().clone();
        if let Some(item) = &mine {
            self.push_roster(&my_bare, item, None);
        }
        if let Some(item) = &theirs {
            self.push_roster(contact_bare, item, None);
        }
        let mine_sessions = self.ctx.hub.sessions_of(&my_bare);
        let their_sessions = self.ctx.hub.sessions_of(contact_bare);
        if let Some(kind) = exchange.deliver_to_contact {
            // Nobody online: the request waits as `pending_in` and is shown at their next login.
            self.tell(&their_sessions, &my_bare, contact_bare, kind);
        }
        if let Some(reply) = exchange.deliver_to_user {
            self.tell(&mine_sessions, contact_bare, &my_bare, reply);
        }
        match exchange.presence {
            PresenceEffect::None => {}
            PresenceEffect::UserToContact => self.show_presence(&mine_sessions, &their_sessions),
            PresenceEffect::ContactToUser => self.show_presence(&their_sessions, &mine_sessions),
            PresenceEffect::UserGoneForContact => {
                self.hide_presence(&mine_sessions, &their_sessions)
            }
            PresenceEffect::ContactGoneForUser => {
                self.hide_presence(&their_sessions, &mine_sessions)
            }
        }
        Ok(Vec::new())
    }

    /// Delivers a subscription stanza of `kind` from `from` to `to`'s resources.
    fn tell(
        &self,
        sessions: &[SessionHandle],
        from: &BareJid,
        to: &BareJid,
        kind: SubscriptionKind,
    ) {
        let presence: Arc<str> = Arc::from(format!(
            "<presence from='{}' to='{}' type='{}'/>",
            escape_attr(&from.to_string()),
            escape_attr(&to.to_string()),
            kind.as_str()
        ));
        for session in sessions {
            self.hand_over(session, presence.clone(), Urgency::Urgent);
        }
    }

    /// The current presence of each available session in `from` to each of `to`.
    fn show_presence(&self, from: &[SessionHandle], to: &[SessionHandle]) {
        for receiver in to {
            let addressee = receiver.shared.jid.to_string();
            for sender in from {
                if let Some(presence) = sender.shared.presence() {
                    let addressed = retarget(&presence.stanza, &addressee);
                    self.hand_over(receiver, Arc::from(addressed), Urgency::Urgent);
                }
            }
        }
    }

    /// `unavailable` from each session in `from` to each of `to`.
    fn hide_presence(&self, from: &[SessionHandle], to: &[SessionHandle]) {
        for receiver in to {
            for sender in from {
                let unavailable = format!(
                    "<presence from='{}' to='{}' type='unavailable'/>",
                    escape_attr(&sender.shared.jid.to_string()),
                    escape_attr(&receiver.shared.jid.to_string())
                );
                self.hand_over(receiver, Arc::from(unavailable), Urgency::Urgent);
            }
        }
    }
}

fn state_of(item: &RosterItem) -> SubscriptionState {
    SubscriptionState {
        subscription: item.subscription,
        pending_out: item.ask_out,
        pending_in: item.pending_in,
    }
}

fn with_state(item: RosterItem, state: SubscriptionState) -> RosterItem {
    RosterItem {
        subscription: state.subscription,
        ask_out: state.pending_out,
        pending_in: state.pending_in,
        ..item
    }
}
