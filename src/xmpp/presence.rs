//! Presence (RFC 6121 §4): broadcast to subscribed contacts and the user's other resources,
//! the initial-presence probes on the user's behalf, directed presence, presence errors; and
//! routing subscription stanzas to [`subscription`](super::subscription).

use std::sync::Arc;

use xmpp_proto::csi::Urgency;
use xmpp_proto::subscription::SubscriptionKind;
use xmpp_proto::xml::ns;
use xmpp_proto::{escape_attr, BareJid, Element, PresenceType, Stanza};

use super::block_rules::Kind;
use super::hub::{Presence, SessionHandle};
use super::reply::{retarget, Reply};
use super::session::{Session, Target};
use crate::clock;
use crate::model::UserId;

impl Session {
    pub(super) async fn presence(&mut self, stanza: Box<Stanza>, target: Target) -> Vec<Reply> {
        let Some(presence_type) = stanza.envelope().presence_type() else {
            // RFC 6121 §4.7.1 defines no other type; such a presence is not routed.
            return Vec::new();
        };
        match (target, presence_type) {
            (
                Target::Server | Target::OwnAccount,
                PresenceType::Available | PresenceType::Unavailable,
            ) => {
                self.broadcast(&stanza, presence_type == PresenceType::Available)
                    .await
            }
            (
                Target::Local { bare, full, user },
                PresenceType::Available | PresenceType::Unavailable,
            ) => {
                self.directed_presence(&stanza, bare, full, user, presence_type)
                    .await
            }
            (
                Target::Local { bare, user, .. },
                PresenceType::Subscribe
                | PresenceType::Subscribed
                | PresenceType::Unsubscribe
                | PresenceType::Unsubscribed,
            ) => {
                let kind = match presence_type {
                    PresenceType::Subscribe => SubscriptionKind::Subscribe,
                    PresenceType::Subscribed => SubscriptionKind::Subscribed,
                    PresenceType::Unsubscribe => SubscriptionKind::Unsubscribe,
                    _ => SubscriptionKind::Unsubscribed,
                };
                match self.refusal(&stanza, user, &bare, Kind::Unlisted).await {
                    Some(refusal) => refusal,
                    None => {
                        let handled = self.subscription(kind, &bare, user).await;
                        self.answer(&stanza, handled)
                    }
                }
            }
            (Target::Local { bare, user, .. }, PresenceType::Probe) => {
                self.probe(&bare, user).await
            }
            (
                Target::Local {
                    full: Some(full), ..
                },
                PresenceType::Error,
            ) => {
                if let Some(session) = self.ctx.hub.session(&full) {
                    let stamped = stanza.with_from_to(Some(&self.me().to_string()), None);
                    self.hand_over(&session, Arc::from(stamped), Urgency::Defer);
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Directed presence (RFC 6121 §4.6): to one contact's resource or all of them, who are
    /// then told when this session goes unavailable.
    async fn directed_presence(
        &mut self,
        stanza: &Stanza,
        bare: BareJid,
        full: Option<xmpp_proto::FullJid>,
        user: UserId,
        presence_type: PresenceType,
    ) -> Vec<Reply> {
        let me = (self.user, self.my_bare().clone());
        if !self
            .presence_allowed(
                (me.0, &me.1),
                (user, &bare),
                presence_type == PresenceType::Available,
            )
            .await
        {
            return Vec::new();
        }
        let stamped: Arc<str> = Arc::from(stanza.with_from_to(Some(&self.me().to_string()), None));
        let targets = match &full {
            Some(full) => self.ctx.hub.session(full).into_iter().collect(),
            None => self.ctx.hub.sessions_of(&bare),
        };
        let key = self.me().to_string();
        for session in targets {
            if presence_type == PresenceType::Available {
                self.directed.insert(session.shared.jid.clone());
            } else {
                self.directed.remove(&session.shared.jid);
            }
            self.hand_over(&session, stamped.clone(), Urgency::Coalesce(key.clone()));
        }
        Vec::new()
    }

    /// Broadcast presence (RFC 6121 §4.2, §4.4, §4.5).
    pub(super) async fn broadcast(&mut self, stanza: &Stanza, available: bool) -> Vec<Reply> {
        let mut replies = Vec::new();
        let me = self.me().to_string();
        let details = PresenceDetails::of(stanza);
        let first = available && !self.handle().shared.is_available();
        let stamped = stanza.with_from_to(Some(&me), None);
        self.handle()
            .shared
            .set_presence(available.then(|| Presence {
                priority: details.priority,
                stanza: stamped.clone(),
            }));
        if !available {
            if let Err(error) = self
                .ctx
                .store
                .set_last_logout(
                    self.app,
                    self.user,
                    clock::unix_now(),
                    details.status.as_deref(),
                )
                .await
            {
                tracing::error!(%error, "recording the logout time failed");
            }
        }
        let roster = match self.ctx.store.roster(self.user).await {
            Ok((_, items)) => items,
            Err(error) => {
                tracing::error!(%error, "roster lookup failed");
                Vec::new()
            }
        };
        // To contacts subscribed to us, and to our own other resources.
        let mut recipients: Vec<SessionHandle> = Vec::new();
        let my_bare = self.my_bare().clone();
        for item in roster.iter().filter(|i| i.subscription.has_from()) {
            if let Ok(bare) = self.user_bare(item.contact) {
                let sessions = self.ctx.hub.sessions_of(&bare);
                if !sessions.is_empty()
                    && self
                        .presence_allowed((self.user, &my_bare), (item.contact, &bare), available)
                        .await
                {
                    recipients.extend(sessions);
                }
            }
        }
        recipients.extend(
            self.ctx
                .hub
                .sessions_of(&my_bare)
                .into_iter()
                .filter(|s| s.shared.jid != *self.me()),
        );
        if !available {
            for jid in std::mem::take(&mut self.directed) {
                recipients.extend(self.ctx.hub.session(&jid));
            }
        }
        for session in recipients {
            let addressed = stanza.with_from_to(Some(&me), Some(&session.shared.jid.to_string()));
            self.hand_over(
                &session,
                Arc::from(addressed),
                Urgency::Coalesce(me.clone()),
            );
        }
        if first {
            // Probes on the user's behalf: the presence of every available contact we see.
            for item in roster.iter().filter(|i| i.subscription.has_to()) {
                if let Ok(bare) = self.user_bare(item.contact) {
                    let presences = self.presences_of(&bare);
                    if !presences.is_empty()
                        && self
                            .presence_allowed((item.contact, &bare), (self.user, &my_bare), true)
                            .await
                    {
                        replies.extend(presences);
                    }
                }
            }
            replies.extend(self.presences_of(&my_bare));
            // Subscription requests that arrived while we were offline.
            for item in roster.iter().filter(|i| i.pending_in) {
                if let Ok(bare) = self.user_bare(item.contact) {
                    replies.push((
                        format!(
                            "<presence from='{}' to='{}' type='subscribe'/>",
                            escape_attr(&bare.to_string()),
                            escape_attr(&my_bare.to_string())
                        ),
                        Urgency::Urgent,
                    ));
                }
            }
            if details.priority >= 0 {
                replies.extend(self.offline_messages().await);
            }
        }
        replies
    }

    /// The current presence of every available resource of `bare` other than this session,
    /// addressed to us.
    pub(super) fn presences_of(&self, bare: &BareJid) -> Vec<Reply> {
        let me = self.me().to_string();
        self.ctx
            .hub
            .sessions_of(bare)
            .into_iter()
            .filter(|session| session.shared.jid != *self.me())
            .filter_map(|session| session.shared.presence())
            .map(|presence| {
                let addressed = retarget(&presence.stanza, &me);
                (addressed, Urgency::Coalesce(me.clone()))
            })
            .collect()
    }

    /// A probe (RFC 6121 §4.3): the contact's presence if we may see it.
    async fn probe(&self, bare: &BareJid, user: UserId) -> Vec<Reply> {
        let my_bare = self.my_bare().clone();
        match self.ctx.store.roster_item(user, self.user).await {
            Ok(Some(item))
                if item.subscription.has_from()
                    && self
                        .presence_allowed((user, bare), (self.user, &my_bare), true)
                        .await =>
            {
                self.presences_of(bare)
            }
            Ok(_) => Vec::new(),
            Err(error) => {
                tracing::error!(%error, "roster lookup for a probe failed");
                Vec::new()
            }
        }
    }
}

/// What the server reads inside a broadcast presence.
struct PresenceDetails {
    /// RFC 6121 §4.7.2.3; 0 when absent or not a number in -128..=127.
    priority: i8,
    status: Option<String>,
}

impl PresenceDetails {
    fn of(stanza: &Stanza) -> PresenceDetails {
        let parsed = Element::parse(stanza.as_str(), Some(ns::CLIENT)).ok();
        let child = |name: &str| {
            parsed
                .as_ref()
                .and_then(|p| p.child(name, ns::CLIENT).map(|c| c.text()))
        };
        PresenceDetails {
            priority: child("priority")
                .and_then(|text| text.trim().parse::<i8>().ok())
                .unwrap_or(0),
            status: child("status"),
        }
    }
}
