//! Messages from the client (RFC 6121 §8.5): the core's [`route_message`] decides where one
//! goes (a bound full JID, the bare JID's resources by priority, every resource for a
//! headline, offline storage, an error); this file carries the decision out, with carbons
//! (XEP-0280) on the way.

use std::sync::Arc;

use xmpp_proto::delivery::{route_message, MessageType, Resource, Route};
use xmpp_proto::errors::{StanzaError, StanzaErrorCondition};
use xmpp_proto::{BareJid, FullJid, Stanza};

use super::block_rules::Kind;
use super::classify::{Marker, MessageTraits};
use super::history::Saving;
use super::hub::SessionHandle;
use super::pipeline::InFlightSave;
use super::reply::{Failure, Reply};
use super::session::{Session, Target};
use crate::chat::model::Message;
use crate::chat::ChatError;
use crate::model::UserId;

impl Session {
    pub(super) async fn message(&mut self, stanza: Box<Stanza>, target: Target) -> Vec<Reply> {
        let (bare, full, user) = match target {
            Target::Local { bare, full, user } => (bare, full, user),
            Target::OwnAccount => (self.my_bare().clone(), None, self.user),
            Target::Server => return Vec::new(),
            Target::Unreachable(condition) => return self.bounce(&stanza, condition),
        };
        if let Some(refusal) = self.refusal(&stanza, user, &bare, Kind::MessageIn).await {
            return refusal;
        }
        let traits = MessageTraits::of(&stanza);
        if matches!(traits.marker, Some(m) if m != Marker::Markable) {
            self.record_marker(&stanza, &traits).await;
        }
        let stamped = stanza.with_from_to(Some(&self.me().to_string()), None);
        // Stored first, routed after: a message the sender sees acknowledged is in history.
        // A new message is queued for the history writer and routed once its commit is done
        // (`pipeline.rs`), so this connection reads its next stanza meanwhile.
        if traits.asks_for_history() && traits.message_type == MessageType::Chat {
            return match Box::pin(self.save_chat(&stanza, stamped, user)).await {
                Ok(Saving::Queued(queued)) => {
                    let replies = self.make_room_for_save().await;
                    self.queue_save(Box::new(InFlightSave {
                        stanza,
                        traits,
                        to: Addressee { bare, full, user },
                        queued: *queued,
                    }));
                    replies
                }
                Ok(Saving::Nothing(stamped)) => {
                    let mut replies = self.drain_saves().await;
                    replies.extend(
                        self.route_chat(
                            &stanza,
                            &traits,
                            Addressee { bare, full, user },
                            stamped,
                            None,
                        )
                        .await,
                    );
                    replies
                }
                Err(error) => self.answer(&stanza, Err(chat_failure(error))),
            };
        }
        let mut replies = self.drain_saves().await;
        replies.extend(
            self.route_chat(
                &stanza,
                &traits,
                Addressee { bare, full, user },
                stamped,
                None,
            )
            .await,
        );
        replies
    }

    /// Routes a message from this session (stored first if it asked to be): to the bound
    /// resource, the bare JID's resources, or offline storage; carbons on the way.
    pub(super) async fn route_chat(
        &mut self,
        stanza: &Stanza,
        traits: &MessageTraits,
        to: Addressee,
        stamped: String,
        saved: Option<Message>,
    ) -> Vec<Reply> {
        let Addressee { bare, full, user } = to;
        let stamped: Arc<str> = Arc::from(stamped);
        let urgency = traits.urgency();
        if traits.carbon_eligible() {
            self.sent_carbons(&stamped, stanza.envelope().id.as_deref());
        }
        // A bound full JID needs one lookup and no look at the other resources; only if its
        // queue is full do the bare JID's rules choose among all of them (RFC 6121 §8.5.3.2
        // treats an unreachable resource like the bare JID), and then offline storage.
        let bound = full.as_ref().and_then(|full| self.ctx.hub.session(full));
        let mut all_resources = bound.is_none();
        let mut sessions = match bound {
            Some(session) => vec![session],
            None => self.ctx.hub.sessions_of(&bare),
        };
        loop {
            let resources: Vec<Resource> = sessions
                .iter()
                .map(|session| Resource {
                    priority: session.shared.priority(),
                })
                .collect();
            let bound = (!all_resources).then_some(0);
            match route_message(traits.message_type, full.is_some(), bound, &resources) {
                Route::Resources(chosen) => {
                    let delivered: Vec<&SessionHandle> = chosen
                        .iter()
                        .map(|&index| &sessions[index])
                        .filter(|session| self.hand_over(session, stamped.clone(), urgency.clone()))
                        .collect();
                    if !delivered.is_empty() {
                        if traits.carbon_eligible() {
                            let everyone;
                            let recipients = if all_resources {
                                &sessions
                            } else {
                                everyone = self.ctx.hub.sessions_of(&bare);
                                &everyone
                            };
                            self.received_carbons(&bare, recipients, &delivered, &stamped);
                        }
                        return Vec::new();
                    }
                }
                Route::Offline => break,
                Route::Bounce(condition) => return self.bounce(stanza, condition),
                Route::Ignore => return Vec::new(),
            }
            if all_resources {
                break;
            }
            all_resources = true;
            sessions = self.ctx.hub.sessions_of(&bare);
        }
        let replies = Box::pin(self.store_offline(stanza, &stamped, traits, user)).await;
        if let Some(message) = &saved {
            // Counted unread in the same commit as the save; the push hook learns of it.
            self.ctx.chat.alert_offline(user, message);
        }
        replies
    }
}

/// Where a 1:1 message goes: the bare JID, the full JID if it named one, and their user.
pub(super) struct Addressee {
    pub bare: BareJid,
    pub full: Option<FullJid>,
    pub user: UserId,
}

/// A chat refusal as the stanza error the sender sees.
pub(super) fn chat_failure(error: ChatError) -> Failure {
    let condition = match error {
        ChatError::Store(error) => return Failure::Store(error),
        ChatError::Invalid(..) => StanzaErrorCondition::BadRequest,
        ChatError::NotFound(_) => StanzaErrorCondition::ItemNotFound,
        ChatError::Forbidden(_) => StanzaErrorCondition::Forbidden,
        ChatError::Unavailable => StanzaErrorCondition::ServiceUnavailable,
    };
    Failure::Refused(StanzaError::new(condition).with_text(error.to_string()))
}
