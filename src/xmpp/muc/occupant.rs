//! What a session's stanzas to `muc.{domain}` mean: presence to `room/nick` joins or leaves,
//! groupchat to the room goes through the room task (stored, then reflected), a headline to
//! the room is a QuickBlox system notification for every occupant of the dialog, and iqs ask
//! the room (disco, MAM) or the service (disco).

use tokio::sync::oneshot;
use xmpp_proto::delivery::MessageType;
use xmpp_proto::errors::StanzaErrorCondition;
use xmpp_proto::{escape_attr, Jid, Stanza, StanzaKind};

use super::room::NS_MUC;
use super::{Command, Muc, RoomKey};
use crate::chat::model::ObjectId;
use crate::xmpp::classify::MessageTraits;
use crate::xmpp::mam::NS_MAM;
use crate::xmpp::reply::{parse, parse_stanza, retarget, Reply};
use crate::xmpp::session::{Session, Target};

const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

impl Session {
    /// Whether `to` is on the MUC service.
    pub(crate) fn is_muc(&self, to: &Jid) -> bool {
        to.domain()
            .strip_prefix("muc.")
            .is_some_and(|rest| rest == self.ctx.domain())
    }

    /// The room a MUC JID names, if it is one of this application's dialogs.
    pub(crate) fn room_key(&self, to: &Jid) -> Option<RoomKey> {
        let (app, dialog) = to.node()?.split_once('_')?;
        let dialog = ObjectId::parse(dialog)?;
        (app.parse::<i64>().ok()? == self.app.0).then_some((self.app, dialog))
    }

    /// Handles a stanza addressed to the MUC service or one of its rooms.
    pub(crate) async fn muc_stanza(&mut self, stanza: Box<Stanza>, to: Jid) -> Vec<Reply> {
        let kind = stanza.envelope().kind();
        let key = match (to.node(), self.room_key(&to)) {
            (None, _) => None,
            (Some(_), Some(key)) => Some(key),
            (Some(_), None) => {
                return self.bounce_kind(&stanza, kind, StanzaErrorCondition::ItemNotFound);
            }
        };
        match (kind, key) {
            (StanzaKind::Presence, Some(key)) => {
                self.room_presence(&stanza, key, to.resource()).await
            }
            (StanzaKind::Message, Some(key)) if to.resource().is_none() => {
                self.room_message(stanza, key).await
            }
            (StanzaKind::Iq, Some(key)) if to.resource().is_none() => {
                self.room_iq(&stanza, key).await
            }
            (StanzaKind::Iq, None) if to.resource().is_none() => self.muc_service_iq(&stanza),
            (StanzaKind::Presence, None) => Vec::new(),
            _ => self.bounce_kind(&stanza, kind, StanzaErrorCondition::FeatureNotImplemented),
        }
    }

    /// Errors answer requests and messages; presence errors go back only for joins.
    fn bounce_kind(
        &self,
        stanza: &Stanza,
        kind: StanzaKind,
        condition: StanzaErrorCondition,
    ) -> Vec<Reply> {
        match kind {
            StanzaKind::Iq if !stanza.envelope().iq_type().is_some_and(|t| t.is_request()) => {
                Vec::new()
            }
            _ if stanza.envelope().is_error() => Vec::new(),
            _ => self.bounce(stanza, condition),
        }
    }

    async fn room_presence(
        &mut self,
        stanza: &Stanza,
        key: RoomKey,
        nick: Option<&str>,
    ) -> Vec<Reply> {
        let session = self.me().clone();
        let id = stanza.envelope().id.clone();
        let command = match stanza.envelope().presence_type() {
            Some(xmpp_proto::PresenceType::Unavailable) => Command::Leave { session, id },
            Some(xmpp_proto::PresenceType::Available) => {
                let Some(nick) = nick else {
                    // XEP-0045 §7.2.1: a join needs a nickname.
                    return self.bounce(stanza, StanzaErrorCondition::JidMalformed);
                };
                Command::Join {
                    session,
                    user: self.user,
                    nick: nick.to_string(),
                    quickblox: id.as_deref().is_some_and(|id| id.ends_with(":join")),
                    id,
                }
            }
            _ => return Vec::new(),
        };
        Muc::send(&self.ctx, key, command).await;
        Vec::new()
    }

    async fn room_message(&mut self, stanza: Box<Stanza>, key: RoomKey) -> Vec<Reply> {
        let traits = MessageTraits::of(&stanza);
        match traits.message_type {
            MessageType::Groupchat => {
                let (done, outcome) = oneshot::channel();
                let command = Command::Message {
                    session: self.me().clone(),
                    stanza: stanza.clone(),
                    traits,
                    done,
                };
                Muc::send(&self.ctx, key, command).await;
                match outcome.await {
                    Ok(Ok(())) => Vec::new(),
                    Ok(Err(error)) => self.error_reply(&stanza, error).into_iter().collect(),
                    Err(_) => self.bounce(&stanza, StanzaErrorCondition::ServiceUnavailable),
                }
            }
            MessageType::Headline => Box::pin(self.system_notification(stanza, key)).await,
            _ if stanza.envelope().is_error() => Vec::new(),
            _ => self.bounce(&stanza, StanzaErrorCondition::NotAcceptable),
        }
    }

    /// A headline to a room (QuickBlox `SystemNotifications`): to every occupant of the
    /// dialog but the sender, each as a headline to their bare JID (every resource, offline
    /// storage when none), from the sender.
    async fn system_notification(&mut self, stanza: Box<Stanza>, key: RoomKey) -> Vec<Reply> {
        let dialog = match self
            .ctx
            .chat
            .readable_dialog(self.app, self.user, &key.1)
            .await
        {
            Ok(dialog) => dialog,
            Err(error) => {
                return self.answer(&stanza, Err(crate::xmpp::message::chat_failure(error)))
            }
        };
        let me = self.user;
        for user in dialog.occupants.iter().copied().filter(|&u| u != me) {
            let Ok(bare) = self.user_bare(user) else {
                continue;
            };
            let Ok(copy) = parse_stanza(&retarget(stanza.as_str(), &bare.to_string())) else {
                continue;
            };
            let target = Target::Local {
                bare,
                full: None,
                user,
            };
            let replies = Box::pin(self.message(Box::new(copy), target)).await;
            drop(replies);
        }
        Vec::new()
    }

    async fn room_iq(&mut self, stanza: &Stanza, key: RoomKey) -> Vec<Reply> {
        if !stanza.envelope().iq_type().is_some_and(|t| t.is_request()) {
            return Vec::new();
        }
        let Ok(iq) = parse(stanza) else {
            return self.bounce(stanza, StanzaErrorCondition::BadRequest);
        };
        let room = format!("{}_{}@muc.{}", key.0 .0, key.1, self.ctx.domain());
        let Some(payload) = iq.first_child() else {
            return self.bounce(stanza, StanzaErrorCondition::BadRequest);
        };
        match (payload.namespace(), payload.name()) {
            (Some(NS_DISCO_ITEMS), "query") => {
                let (reply, users) = oneshot::channel();
                Muc::send(
                    &self.ctx,
                    key.clone(),
                    Command::Items {
                        user: self.user,
                        reply,
                    },
                )
                .await;
                match users.await.ok().flatten() {
                    Some(users) => {
                        let items: String = users
                            .iter()
                            .map(|u| {
                                format!(
                                    "<item jid='{}/{}' name='{}'/>",
                                    escape_attr(&room),
                                    u.0,
                                    u.0
                                )
                            })
                            .collect();
                        self.result(
                            &iq,
                            Some(&room),
                            &format!("<query xmlns='{NS_DISCO_ITEMS}'>{items}</query>"),
                        )
                    }
                    None => self.bounce(stanza, StanzaErrorCondition::Forbidden),
                }
            }
            (Some(NS_DISCO_INFO), "query") => {
                let dialog = match self.ctx.chat.existing_dialog(self.app, &key.1).await {
                    Ok(dialog) if dialog.kind.has_room() => dialog,
                    _ => return self.bounce(stanza, StanzaErrorCondition::ItemNotFound),
                };
                let access = if dialog.kind == crate::chat::model::DialogType::Group {
                    "muc_membersonly"
                } else {
                    "muc_public"
                };
                let name = escape_attr(dialog.name.as_deref().unwrap_or("")).into_owned();
                let body = format!(
                    "<query xmlns='{NS_DISCO_INFO}'><identity category='conference' type='text' name='{name}'/>\
                     <feature var='{NS_MUC}'/><feature var='{access}'/><feature var='muc_persistent'/>\
                     <feature var='muc_nonanonymous'/><feature var='muc_unmoderated'/>\
                     <feature var='{NS_MAM}'/></query>"
                );
                self.result(&iq, Some(&room), &body)
            }
            (Some(NS_MAM), "query") => {
                let handled = Box::pin(self.room_archive(&iq, key)).await;
                self.answer(stanza, handled)
            }
            _ => self.bounce(stanza, StanzaErrorCondition::ServiceUnavailable),
        }
    }

    /// Disco of `muc.{domain}` itself.
    fn muc_service_iq(&self, stanza: &Stanza) -> Vec<Reply> {
        if !stanza.envelope().iq_type().is_some_and(|t| t.is_request()) {
            return Vec::new();
        }
        let Ok(iq) = parse(stanza) else {
            return self.bounce(stanza, StanzaErrorCondition::BadRequest);
        };
        let service = format!("muc.{}", self.ctx.domain());
        match iq.first_child().map(|p| (p.namespace(), p.name())) {
            Some((Some(NS_DISCO_INFO), "query")) => self.result(
                &iq,
                Some(&service),
                &format!(
                    "<query xmlns='{NS_DISCO_INFO}'><identity category='conference' type='text' name='Dialog rooms'/>\
                     <feature var='{NS_MUC}'/><feature var='{NS_DISCO_INFO}'/><feature var='{NS_DISCO_ITEMS}'/></query>"
                ),
            ),
            // Rooms are dialogs, listed over REST; the service lists none.
            Some((Some(NS_DISCO_ITEMS), "query")) => {
                self.result(&iq, Some(&service), &format!("<query xmlns='{NS_DISCO_ITEMS}'/>"))
            }
            _ => self.bounce(stanza, StanzaErrorCondition::ServiceUnavailable),
        }
    }
}
