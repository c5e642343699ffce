//! Routing of iqs (RFC 6120 §8.2.3, RFC 6121 §8.5): requests to the server go to
//! [`server_iq`](super::server_iq), to a user's full JID to that resource, and to a user's
//! bare JID are answered by the server on the user's behalf (last activity, ping).

use std::sync::Arc;

use xmpp_proto::csi::Urgency;
use xmpp_proto::errors::StanzaErrorCondition;
use xmpp_proto::{escape_attr, escape_text, BareJid, IqType, Stanza};

use super::block_rules::Kind;
use super::reply::{parse, Handled, Reply};
use super::server_iq::{NS_LAST, NS_PING};
use super::session::{Session, Target};
use crate::clock;
use crate::model::UserId;

impl Session {
    pub(super) async fn iq(&mut self, stanza: Box<Stanza>, target: Target) -> Vec<Reply> {
        let (Some(iq_type), Some(_)) = (stanza.envelope().iq_type(), &stanza.envelope().id) else {
            return self.bounce(&stanza, StanzaErrorCondition::BadRequest);
        };
        let is_request = iq_type.is_request();
        match target {
            Target::Server | Target::OwnAccount => {
                if !is_request {
                    return Vec::new();
                }
                let handled = self.server_iq(&stanza, iq_type).await;
                self.answer(&stanza, handled)
            }
            Target::Local {
                full: Some(full),
                bare,
                user,
            } => {
                if let Some(refusal) = self.refusal(&stanza, user, &bare, Kind::IqIn).await {
                    return if is_request { refusal } else { Vec::new() };
                }
                match self.ctx.hub.session(&full) {
                    Some(session) => {
                        let stamped = stanza.with_from_to(Some(&self.me().to_string()), None);
                        if !self.hand_over(&session, Arc::from(stamped), Urgency::Urgent)
                            && is_request
                        {
                            return self.bounce(&stanza, StanzaErrorCondition::ResourceConstraint);
                        }
                        Vec::new()
                    }
                    // RFC 6121 §8.5.3.1: no such resource.
                    None if is_request => {
                        self.bounce(&stanza, StanzaErrorCondition::ServiceUnavailable)
                    }
                    None => Vec::new(),
                }
            }
            Target::Local { bare, user, .. } => {
                if !is_request {
                    return Vec::new();
                }
                if let Some(refusal) = self.refusal(&stanza, user, &bare, Kind::IqIn).await {
                    return refusal;
                }
                let handled = self.account_iq(&stanza, iq_type, &bare, user).await;
                self.answer(&stanza, handled)
            }
            Target::Unreachable(condition) => {
                if is_request {
                    self.bounce(&stanza, condition)
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// An iq to another user's bare JID, answered by the server on their behalf.
    async fn account_iq(
        &mut self,
        stanza: &Stanza,
        iq_type: IqType,
        bare: &BareJid,
        user: UserId,
    ) -> Handled {
        let iq = parse(stanza)?;
        let Some(payload) = iq.first_child() else {
            return Err(StanzaErrorCondition::BadRequest.into());
        };
        match (payload.namespace(), iq_type) {
            (Some(NS_LAST), IqType::Get) => {
                let (seconds, status) = if self.ctx.hub.is_online(bare) {
                    (0, None)
                } else {
                    match self.ctx.store.last_logout(self.app, user).await? {
                        Some((at, status)) => ((clock::unix_now() - at).max(0), status),
                        None => return Err(StanzaErrorCondition::ItemNotFound.into()),
                    }
                };
                let text = status
                    .map(|s| escape_text(&s).into_owned())
                    .unwrap_or_default();
                // `from` must be the queried user: the SDK reads the user id from it.
                Ok(vec![(
                    format!(
                        "<iq type='result' id='{}' from='{}' to='{}'><query xmlns='{NS_LAST}' seconds='{seconds}'>{text}</query></iq>",
                        escape_attr(iq.attr("id").unwrap_or_default()),
                        escape_attr(&bare.to_string()),
                        escape_attr(&self.me().to_string())
                    ),
                    Urgency::Urgent,
                )])
            }
            (Some(NS_PING), IqType::Get) => Ok(self.result(&iq, Some(&bare.to_string()), "")),
            _ => Err(StanzaErrorCondition::ServiceUnavailable.into()),
        }
    }
}
