//! The server side of one bound session: what its client's stanzas are addressed to, dispatch
//! by stanza kind to the files that handle each (RFC 6121 §8), and the end of the session.
//!
//! `from` is always the sender's full JID, stamped here whatever the client wrote; children are
//! forwarded byte-identical ([`Stanza::with_from_to`] rewrites only the opening tag).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use xmpp_proto::csi::Urgency;
use xmpp_proto::errors::StanzaErrorCondition;
use xmpp_proto::{escape_attr, BareJid, FullJid, Jid, QbNode, Stanza, StanzaKind};

use super::hub::{Delivery, SendError, SessionHandle};
use super::pipeline::InFlight;
use super::reply::{parse_stanza, Reply};
use super::XmppContext;
use crate::clock;
use crate::model::{AppId, UserId};

/// Where a stanza is addressed.
pub(super) enum Target {
    /// The server itself (no `to`, or the bare domain).
    Server,
    /// The sender's own bare JID (account-level queries such as roster).
    OwnAccount,
    /// Another user (or the sender) of the same application.
    Local {
        bare: BareJid,
        full: Option<FullJid>,
        user: UserId,
    },
    /// Anything we do not serve: other domains (no federation), other applications, MUC.
    Unreachable(StanzaErrorCondition),
}

/// The server side of one bound session.
pub struct Session {
    pub(super) ctx: Arc<XmppContext>,
    pub(super) app: AppId,
    pub(super) user: UserId,
    handle: SessionHandle,
    /// Full JIDs that received directed presence, told when we go unavailable.
    pub(super) directed: HashSet<FullJid>,
    pub(super) push_counter: u64,
    /// Stored messages remain to be flushed, a page at a time (see `offline.rs`).
    pub(super) offline_backlog: bool,
    /// Saved messages waiting for their commit before they are routed (`pipeline.rs`).
    pub(super) in_flight: InFlight,
}

/// What a session waits for besides its client's input.
pub enum SessionEvent {
    /// A newer session took this one's JID.
    Replaced,
    /// The oldest save in flight is committed: call [`Session::route_settled`].
    SaveSettled,
}

impl Session {
    pub fn new(ctx: Arc<XmppContext>, app: AppId, user: UserId, handle: SessionHandle) -> Session {
        Session {
            ctx,
            app,
            user,
            handle,
            directed: HashSet::new(),
            push_counter: 0,
            offline_backlog: false,
            in_flight: InFlight::default(),
        }
    }

    pub fn handle(&self) -> &SessionHandle {
        &self.handle
    }

    /// Resolves when a newer session takes this one's JID or the oldest save in flight is
    /// committed. Cancel-safe.
    pub async fn next_event(&mut self) -> SessionEvent {
        tokio::select! {
            () = self.handle.shared.replaced.notified() => SessionEvent::Replaced,
            () = self.in_flight.front_settled() => SessionEvent::SaveSettled,
        }
    }

    pub(super) fn me(&self) -> &FullJid {
        &self.handle.shared.jid
    }

    pub(super) fn my_bare(&self) -> &BareJid {
        self.handle.shared.jid.bare()
    }

    /// Handles one stanza from the client; returns what to send back to it.
    pub async fn process(&mut self, stanza: Box<Stanza>) -> Vec<Reply> {
        let started = Instant::now();
        let kind = stanza.envelope().kind();
        // Only a 1:1 message may go past saves in flight (`message` decides which); anything
        // else waits for them to be routed first.
        let mut replies = match kind {
            StanzaKind::Message => Vec::new(),
            _ => self.drain_saves().await,
        };
        let handled = match stanza.envelope().to_jid() {
            Err(_) => self.bounce(&stanza, StanzaErrorCondition::JidMalformed),
            Ok(Some(to)) if self.is_muc(&to) => {
                replies.extend(self.drain_saves().await);
                Box::pin(self.muc_stanza(stanza, to)).await
            }
            Ok(to) => {
                let target = self.target(to.as_ref());
                // Messages are the hot path and their future is kept small; presence and iq
                // handling reach the store in many ways, and their larger futures are boxed
                // so every connection's task does not carry their size while idle.
                match kind {
                    StanzaKind::Message => self.message(stanza, target).await,
                    StanzaKind::Presence => Box::pin(self.presence(stanza, target)).await,
                    StanzaKind::Iq => Box::pin(self.iq(stanza, target)).await,
                    StanzaKind::Other => Vec::new(),
                }
            }
        };
        replies.extend(handled);
        let label = match kind {
            StanzaKind::Message => "message",
            StanzaKind::Presence => "presence",
            StanzaKind::Iq => "iq",
            StanzaKind::Other => "other",
        };
        self.ctx.metrics.stanzas.with_label_values(&[label]).inc();
        self.ctx
            .metrics
            .routing_seconds
            .observe(started.elapsed().as_secs_f64());
        replies
    }

    fn target(&self, to: Option<&Jid>) -> Target {
        let Some(to) = to else { return Target::Server };
        if to.domain() != self.ctx.domain() {
            return Target::Unreachable(StanzaErrorCondition::ServiceUnavailable);
        }
        let Some(node) = to.node() else {
            return match to.resource() {
                None => Target::Server,
                Some(_) => Target::Unreachable(StanzaErrorCondition::ServiceUnavailable),
            };
        };
        let Ok(qb) = QbNode::parse(node) else {
            return Target::Unreachable(StanzaErrorCondition::ItemNotFound);
        };
        if qb.app() != self.app.0 {
            // Applications never see each other.
            return Target::Unreachable(StanzaErrorCondition::ServiceUnavailable);
        }
        let bare = to.bare().clone();
        if bare == *self.my_bare() && to.resource().is_none() {
            return Target::OwnAccount;
        }
        Target::Local {
            full: to.as_full().cloned(),
            bare,
            user: UserId(qb.user()),
        }
    }

    /// The user of this application that `jid` names, if it is a bare JID of ours.
    pub(super) fn local_user(&self, jid: &BareJid) -> Option<UserId> {
        let qb = QbNode::parse(jid.node()?).ok()?;
        (jid.domain() == self.ctx.domain() && qb.app() == self.app.0).then_some(UserId(qb.user()))
    }

    /// The bare JID of a user of this session's application.
    pub(super) fn user_bare(&self, user: UserId) -> Result<BareJid, xmpp_proto::JidError> {
        BareJid::new(
            Some(&format!("{}-{}", user.0, self.app.0)),
            self.ctx.domain(),
        )
    }

    /// Queues `stanza` for another session; false if it is gone or its queue is full.
    pub(super) fn hand_over(
        &self,
        session: &SessionHandle,
        stanza: Arc<str>,
        urgency: Urgency,
    ) -> bool {
        match session.send(stanza, urgency) {
            Ok(()) => true,
            Err(SendError::Full) => {
                self.ctx
                    .metrics
                    .dropped
                    .with_label_values(&["queue_full"])
                    .inc();
                false
            }
            Err(SendError::Gone) => false,
        }
    }

    /// Ends the session: unbinding, unavailable presence if it was available, and the chat
    /// messages it never acknowledged or never got handed to the newer session that replaced
    /// it (same JID) or else stored offline.
    pub async fn end(mut self, unacked: Vec<Vec<u8>>, rx: Option<mpsc::Receiver<Delivery>>) {
        // Saves still in flight are routed (their replies have no one to go to).
        let _ = self.drain_saves().await;
        let jid = self.me().clone();
        // A session replaced by a newer one with the same JID (conflict) must not announce that
        // JID as gone: the newer session is the one contacts see now.
        let was_current = self.ctx.hub.unbind(&jid, self.handle.shared.generation);
        if was_current {
            if self.handle.shared.is_available() {
                let unavailable = format!(
                    "<presence type='unavailable' from='{}'/>",
                    escape_attr(&jid.to_string())
                );
                if let Ok(stanza) = parse_stanza(&unavailable) {
                    self.broadcast(&stanza, false).await;
                }
            } else if let Err(error) = self
                .ctx
                .store
                .set_last_logout(self.app, self.user, clock::unix_now(), None)
                .await
            {
                tracing::error!(%error, "recording the logout time failed");
            }
        }
        // Messages queued for this session and never written, or written but never acked on a
        // resumable stream: keep chat messages for the next login rather than lose them.
        let mut leftovers: Vec<String> = unacked
            .into_iter()
            .filter_map(|b| String::from_utf8(b).ok())
            .collect();
        if let Some(mut rx) = rx {
            rx.close();
            while let Ok(delivery) = rx.try_recv() {
                if let Delivery::Stanza(queued) = delivery {
                    leftovers.push(queued.stanza.to_string());
                }
            }
        }
        if was_current {
            // A session replaced by one with the same JID leaves its rooms to the newer one.
            super::muc::Muc::session_ended(&self.ctx, &jid).await;
        }
        let successor = if was_current {
            None
        } else {
            self.ctx.hub.session(&jid)
        };
        for text in leftovers {
            if let Some(successor) = &successor {
                if self.hand_over(successor, Arc::from(text.as_str()), Urgency::Urgent) {
                    continue;
                }
            }
            self.keep_leftover(&text).await;
        }
    }
}
