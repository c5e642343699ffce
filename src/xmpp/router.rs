//! What a bound client's stanzas mean: routing of messages, presence and iqs (RFC 6121 §8),
//! rosters and subscriptions (RFC 6121 §2–§4), offline storage (XEP-0160, XEP-0203), carbons
//! (XEP-0280), blocking (XEP-0191), privacy lists (XEP-0016), and the server's own iqs: ping
//! (XEP-0199), disco (XEP-0030), entity time (XEP-0202), last activity (XEP-0012), version.
//!
//! `from` is always the sender's full JID, stamped here whatever the client wrote; children are
//! forwarded byte-identical ([`Stanza::with_from_to`] rewrites only the opening tag).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use xmpp_proto::c2s::with_client_namespace;
use xmpp_proto::csi::Urgency;
use xmpp_proto::errors::{StanzaError, StanzaErrorCondition};
use xmpp_proto::xml::ns;
use xmpp_proto::{
    escape_attr, escape_text, BareJid, Element, FullJid, Jid, QbNode, Stanza, StanzaKind,
};

use super::hub::{Delivery, Presence, SendError, SessionHandle};
use super::privacy::{BlockRules, Kind};
use super::XmppContext;
use crate::clock;
use crate::model::{AppId, RosterItem, Subscription, UserId};

const NS_ROSTER: &str = "jabber:iq:roster";
const NS_PING: &str = "urn:xmpp:ping";
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const NS_TIME: &str = "urn:xmpp:time";
const NS_LAST: &str = "jabber:iq:last";
const NS_VERSION: &str = "jabber:iq:version";
const NS_CARBONS: &str = "urn:xmpp:carbons:2";
const NS_FORWARD: &str = "urn:xmpp:forward:0";
const NS_DELAY: &str = "urn:xmpp:delay";
const NS_PRIVACY: &str = "jabber:iq:privacy";
const NS_BLOCKING: &str = "urn:xmpp:blocking";

/// Features announced in disco#info of the server.
const FEATURES: &[&str] = &[
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_PING,
    NS_TIME,
    NS_LAST,
    NS_VERSION,
    NS_ROSTER,
    NS_CARBONS,
    NS_PRIVACY,
    NS_BLOCKING,
    "urn:xmpp:sm:3",
    "urn:xmpp:csi:0",
    "msgoffline",
    "urn:xmpp:chat-markers:0",
    "http://jabber.org/protocol/chatstates",
    "urn:xmpp:message-correct:0",
];

/// A reply to the session's own client.
pub type Reply = (String, Urgency);

/// Where a stanza is addressed.
enum Target {
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
    ctx: Arc<XmppContext>,
    app: AppId,
    user: UserId,
    handle: SessionHandle,
    /// Full JIDs that received directed presence, told when we go unavailable.
    directed: HashSet<String>,
    push_counter: u64,
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
        }
    }

    pub fn handle(&self) -> &SessionHandle {
        &self.handle
    }

    fn me(&self) -> &FullJid {
        &self.handle.shared.jid
    }

    fn my_bare(&self) -> &BareJid {
        self.handle.shared.jid.bare()
    }

    /// Handles one stanza from the client; returns what to send back to it.
    pub async fn process(&mut self, stanza: Box<Stanza>) -> Vec<Reply> {
        let started = Instant::now();
        let kind = stanza.envelope().kind();
        let to = stanza.envelope().to_jid();
        let replies = match to {
            Err(_) => self.bounce(&stanza, StanzaErrorCondition::JidMalformed),
            Ok(to) => {
                let target = self.classify(to.as_ref());
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

    fn classify(&self, to: Option<&Jid>) -> Target {
        let Some(to) = to else { return Target::Server };
        let domain = self.ctx.domain();
        if !to.domain().eq_ignore_ascii_case(domain) {
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

    // ---- messages ----

    async fn message(&mut self, stanza: Box<Stanza>, target: Target) -> Vec<Reply> {
        let message_type = stanza
            .envelope()
            .stanza_type
            .clone()
            .unwrap_or_else(|| "normal".into());
        let (bare, full, user) = match target {
            Target::Local { bare, full, user } => (bare, full, user),
            Target::OwnAccount => (self.my_bare().clone(), None, self.user),
            Target::Server => return Vec::new(),
            Target::Unreachable(condition) => return self.bounce(&stanza, condition),
        };
        if message_type == "groupchat" {
            return self.bounce(&stanza, StanzaErrorCondition::ServiceUnavailable);
        }
        if let Some(refusal) = self.refusal(&stanza, user, &bare, Kind::MessageIn).await {
            return refusal;
        }
        let stamped: Arc<str> = Arc::from(stanza.with_from_to(Some(&self.me().to_string()), None));
        let urgency = message_urgency(&stamped);
        let is_chat = message_type == "chat" && !has_no_copy(&stamped);
        if is_chat {
            self.sent_carbons(&stamped, stanza.envelope().id.as_deref());
        }
        // A full JID that is online gets it; otherwise the bare-JID rules apply (RFC 6121 §8.5.3.2).
        if let Some(full) = &full {
            if let Some(session) = self.ctx.hub.session(full) {
                if self.hand_over(&session, stamped.clone(), urgency.clone()) {
                    if is_chat {
                        self.received_carbons(&bare, std::slice::from_ref(full), &stamped);
                    }
                    return Vec::new();
                }
            }
        }
        let sessions = self.ctx.hub.sessions_of(&bare);
        let targets: Vec<SessionHandle> = match message_type.as_str() {
            // Call signals and system notifications must reach every device (QuickBlox).
            "headline" => sessions,
            "error" => return Vec::new(),
            _ => highest_priority(sessions),
        };
        let mut delivered = Vec::new();
        for session in &targets {
            if self.hand_over(session, stamped.clone(), urgency.clone()) {
                delivered.push(session.shared.jid.clone());
            }
        }
        if !delivered.is_empty() {
            if is_chat {
                self.received_carbons(&bare, &delivered, &stamped);
            }
            return Vec::new();
        }
        Box::pin(self.store_offline(&stanza, &stamped, &message_type, user)).await
    }

    fn hand_over(&self, session: &SessionHandle, stanza: Arc<str>, urgency: Urgency) -> bool {
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

    async fn store_offline(
        &self,
        original: &Stanza,
        stamped: &str,
        message_type: &str,
        user: UserId,
    ) -> Vec<Reply> {
        if !worth_storing(message_type, stamped) {
            return Vec::new();
        }
        let store = &self.ctx.store;
        match store.user(self.app, user).await {
            Ok(Some(_)) => {}
            Ok(None) => return self.bounce(original, StanzaErrorCondition::ServiceUnavailable),
            Err(error) => {
                tracing::error!(%error, "offline lookup failed");
                return self.bounce(original, StanzaErrorCondition::InternalServerError);
            }
        }
        let limit = i64::from(self.ctx.config.xmpp.offline_max_per_user);
        if store.offline_count(user).await.unwrap_or(limit) >= limit {
            self.ctx
                .metrics
                .limits
                .with_label_values(&["offline_queue"])
                .inc();
            return self.bounce(original, StanzaErrorCondition::ResourceConstraint);
        }
        let now = clock::unix_now();
        let delayed = add_delay(stamped, self.ctx.domain(), now);
        match store.push_offline(self.app, user, &delayed, now).await {
            Ok(_) => {
                self.ctx.metrics.offline_stored.inc();
                self.ctx.metrics.offline_queue.inc();
                Vec::new()
            }
            Err(error) => {
                tracing::error!(%error, "storing an offline message failed");
                self.bounce(original, StanzaErrorCondition::InternalServerError)
            }
        }
    }

    /// XEP-0280 `sent` carbons to the sender's other resources that enabled carbons.
    fn sent_carbons(&self, stamped: &str, id: Option<&str>) {
        // Built once, for the first copy: most senders have no other carbon-enabled device.
        let mut parts: Option<(String, String, String)> = None;
        for session in self.ctx.hub.sessions_of(self.my_bare()) {
            if session.shared.jid == *self.me() || !session.shared.carbons.load(Ordering::Relaxed) {
                continue;
            }
            let (id, from, inner) = parts.get_or_insert_with(|| {
                (
                    // The outer id equals the inner one: the QuickBlox SDK reads the outer id.
                    id.map(|id| format!(" id='{}'", escape_attr(id)))
                        .unwrap_or_default(),
                    escape_attr(&self.my_bare().to_string()).into_owned(),
                    with_client_namespace(stamped),
                )
            });
            let carbon = format!(
                "<message from='{from}' to='{}' type='chat'{id}><sent xmlns='{NS_CARBONS}'><forwarded xmlns='{NS_FORWARD}'>{inner}</forwarded></sent></message>",
                escape_attr(&session.shared.jid.to_string()),
            );
            self.hand_over(&session, Arc::from(carbon), Urgency::Defer);
        }
    }

    /// XEP-0280 `received` carbons to the recipient's carbon-enabled resources that did not get
    /// the message itself. The wrapper has no id of its own: a client must not take it for the
    /// message.
    fn received_carbons(&self, bare: &BareJid, delivered: &[FullJid], stamped: &str) {
        for session in self.ctx.hub.sessions_of(bare) {
            if delivered.contains(&session.shared.jid)
                || !session.shared.carbons.load(Ordering::Relaxed)
            {
                continue;
            }
            let carbon = format!(
                "<message from='{}' to='{}' type='chat'><received xmlns='{NS_CARBONS}'><forwarded xmlns='{NS_FORWARD}'>{}</forwarded></received></message>",
                escape_attr(&bare.to_string()),
                escape_attr(&session.shared.jid.to_string()),
                with_client_namespace(stamped)
            );
            self.hand_over(&session, Arc::from(carbon), Urgency::Defer);
        }
    }

    /// What `user` refuses (XEP-0191 list and default privacy list), from the per-user cache.
    async fn rules_of(&self, user: UserId) -> Arc<BlockRules> {
        if let Some(rules) = self.ctx.blocks.get(&user) {
            return rules.clone();
        }
        Box::pin(self.load_rules(user)).await
    }

    /// Reads `user`'s rules from the store into the cache.
    async fn load_rules(&self, user: UserId) -> Arc<BlockRules> {
        let epoch = self.ctx.blocks_epoch.load(Ordering::Acquire);
        let blocked = match self.ctx.store.block_list(user).await {
            Ok(list) => list,
            Err(error) => {
                tracing::warn!(%error, "block list lookup failed");
                Vec::new()
            }
        };
        let mut default_list = None;
        if let Ok((_, Some(default))) = self.ctx.store.privacy_list_names(user).await {
            default_list = self
                .ctx
                .store
                .privacy_list(user, &default)
                .await
                .ok()
                .flatten();
        }
        let rules = Arc::new(BlockRules::new(blocked, default_list.as_deref()));
        self.ctx.blocks.insert(user, rules.clone());
        // A change that landed while we read the store may have been cleared from the cache
        // before we inserted: then what we read may be stale, and must not stay cached.
        if self.ctx.blocks_epoch.load(Ordering::Acquire) != epoch {
            self.ctx.blocks.remove(&user);
        }
        rules
    }

    /// The bounce for a stanza of `kind` to `user` that either side refuses, if refused:
    /// our own XEP-0191 block gives `not-acceptable` with `<blocked/>` (XEP-0191 §3.4), our own
    /// QuickBlox mutual block (a privacy item without children) plain `not-acceptable`, the
    /// recipient's rules `service-unavailable` (as if they were not there, XEP-0016 §2.2) or,
    /// for presence, silence.
    async fn refusal(
        &self,
        stanza: &Stanza,
        user: UserId,
        bare: &BareJid,
        kind: Kind,
    ) -> Option<Vec<Reply>> {
        if user == self.user {
            return None;
        }
        // Most users block nobody: then no JID is even formatted.
        let mine = self.rules_of(self.user).await;
        let outbound = if mine.is_empty() {
            None
        } else {
            mine.refuses_outbound(kind, &bare.to_string())
        };
        if let Some(blocking_command) = outbound {
            let mut error = StanzaError::new(StanzaErrorCondition::NotAcceptable);
            if blocking_command {
                error = error.with_app_specific("<blocked xmlns='urn:xmpp:blocking:errors'/>");
            }
            return Some(self.error_reply(stanza, error).into_iter().collect());
        }
        let theirs = self.rules_of(user).await;
        if !theirs.is_empty() && theirs.denies(kind, &self.my_bare().to_string()) {
            // Presence from someone refused vanishes; it is never answered.
            if stanza.envelope().name == "presence" {
                return Some(Vec::new());
            }
            return Some(self.bounce(stanza, StanzaErrorCondition::ServiceUnavailable));
        }
        None
    }

    /// Whether presence may flow from `from` (bare, user id) to `to`: the sender's
    /// `presence-out` and the recipient's `presence-in` rules (and either's block list).
    async fn presence_allowed(&self, from: (UserId, &BareJid), to: (UserId, &BareJid)) -> bool {
        if from.0 == to.0 {
            return true;
        }
        !self
            .rules_of(from.0)
            .await
            .denies(Kind::PresenceOut, &to.1.to_string())
            && !self
                .rules_of(to.0)
                .await
                .denies(Kind::PresenceIn, &from.1.to_string())
    }

    /// Forgets the cached block rules of this session's user after they changed.
    fn blocks_changed(&self) {
        self.ctx.blocks_epoch.fetch_add(1, Ordering::AcqRel);
        self.ctx.blocks.remove(&self.user);
    }

    // ---- presence ----

    async fn presence(&mut self, stanza: Box<Stanza>, target: Target) -> Vec<Reply> {
        let presence_type = stanza.envelope().stanza_type.clone();
        match (target, presence_type.as_deref()) {
            (Target::Server | Target::OwnAccount, None | Some("unavailable")) => {
                self.broadcast(&stanza, presence_type.is_none()).await
            }
            (Target::Local { bare, full, user }, None | Some("unavailable")) => {
                let stamped: Arc<str> =
                    Arc::from(stanza.with_from_to(Some(&self.me().to_string()), None));
                let me = (self.user, self.my_bare());
                if !self.presence_allowed(me, (user, &bare)).await {
                    return Vec::new();
                }
                let targets = match &full {
                    Some(full) => self.ctx.hub.session(full).into_iter().collect(),
                    None => self.ctx.hub.sessions_of(&bare),
                };
                for session in targets {
                    if presence_type.is_none() {
                        self.directed.insert(session.shared.jid.to_string());
                    } else {
                        self.directed.remove(&session.shared.jid.to_string());
                    }
                    self.hand_over(
                        &session,
                        stamped.clone(),
                        Urgency::Coalesce(self.me().to_string()),
                    );
                }
                Vec::new()
            }
            (
                Target::Local { bare, user, .. },
                Some(kind @ ("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")),
            ) => match self.refusal(&stanza, user, &bare, Kind::Unlisted).await {
                Some(refusal) => refusal,
                None => self.subscription(kind, bare, user).await,
            },
            (Target::Local { bare, user, .. }, Some("probe")) => self.probe(&bare, user).await,
            (
                Target::Local {
                    full: Some(full), ..
                },
                Some("error"),
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

    /// Broadcast presence (RFC 6121 §4.2, §4.4, §4.5).
    async fn broadcast(&mut self, stanza: &Stanza, available: bool) -> Vec<Reply> {
        let mut replies = Vec::new();
        let me = self.me().to_string();
        let priority = presence_priority(stanza);
        let first = available && !self.handle.shared.is_available();
        let stamped = stanza.with_from_to(Some(&me), None);
        self.handle.shared.set_presence(available.then(|| Presence {
            priority,
            stanza: stamped.clone(),
        }));
        if !available {
            let _ = self
                .ctx
                .store
                .set_last_logout(
                    self.app,
                    self.user,
                    clock::unix_now(),
                    presence_status(stanza).as_deref(),
                )
                .await;
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
                        .presence_allowed((self.user, &my_bare), (item.contact, &bare))
                        .await
                {
                    recipients.extend(sessions);
                }
            }
        }
        recipients.extend(
            self.ctx
                .hub
                .sessions_of(self.my_bare())
                .into_iter()
                .filter(|s| s.shared.jid.to_string() != me),
        );
        if !available {
            for jid in self.directed.drain() {
                if let Ok(full) = FullJid::parse(&jid) {
                    recipients.extend(self.ctx.hub.session(&full));
                }
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
                            .presence_allowed((item.contact, &bare), (self.user, &my_bare))
                            .await
                    {
                        replies.extend(presences);
                    }
                }
            }
            replies.extend(self.presences_of(&self.my_bare().clone()));
            // Subscription requests that arrived while we were offline.
            for item in roster.iter().filter(|i| i.pending_in) {
                if let Ok(bare) = self.user_bare(item.contact) {
                    replies.push((
                        format!(
                            "<presence from='{}' to='{}' type='subscribe'/>",
                            escape_attr(&bare.to_string()),
                            escape_attr(&self.my_bare().to_string())
                        ),
                        Urgency::Urgent,
                    ));
                }
            }
            if priority >= 0 {
                replies.extend(self.offline_messages().await);
            }
        }
        replies
    }

    /// The current presence of every available resource of `bare` other than this session,
    /// addressed to us.
    fn presences_of(&self, bare: &BareJid) -> Vec<Reply> {
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

    async fn probe(&self, bare: &BareJid, user: UserId) -> Vec<Reply> {
        let my_bare = self.my_bare().clone();
        match self.ctx.store.roster_item(user, self.user).await {
            Ok(Some(item))
                if item.subscription.has_from()
                    && self
                        .presence_allowed((user, bare), (self.user, &my_bare))
                        .await =>
            {
                self.presences_of(bare)
            }
            _ => Vec::new(),
        }
    }

    async fn offline_messages(&self) -> Vec<Reply> {
        let limit = i64::from(self.ctx.config.xmpp.offline_max_per_user);
        let messages = match self.ctx.store.offline_messages(self.user, limit).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::error!(%error, "reading offline messages failed");
                return Vec::new();
            }
        };
        let Some(last) = messages.last().map(|m| m.id) else {
            return Vec::new();
        };
        let me = self.me().to_string();
        let replies: Vec<Reply> = messages
            .iter()
            .map(|m| (retarget(&m.stanza, &me), Urgency::Urgent))
            .collect();
        // Delivered to the connection's queue; deleted now. A crash between the two re-delivers
        // (at least once), never loses.
        if let Err(error) = self.ctx.store.delete_offline(self.user, last).await {
            tracing::error!(%error, "deleting delivered offline messages failed");
        }
        self.ctx.metrics.offline_queue.sub(replies.len() as i64);
        replies
    }

    /// RFC 6121 §3: subscription requests and answers, updating both rosters.
    async fn subscription(
        &mut self,
        kind: &str,
        contact_bare: BareJid,
        contact: UserId,
    ) -> Vec<Reply> {
        if contact == self.user {
            return Vec::new();
        }
        let store = self.ctx.store.clone();
        if !matches!(store.user(self.app, contact).await, Ok(Some(_))) {
            return Vec::new();
        }
        let mine = store.roster_item(self.user, contact).await.ok().flatten();
        let theirs = store.roster_item(contact, self.user).await.ok().flatten();
        let mut mine = mine.unwrap_or_else(|| empty_item(contact));
        let mut theirs = theirs.unwrap_or_else(|| empty_item(self.user));
        let my_bare = self.my_bare().clone();
        let mut notify_contact = true;
        let mut presences_to_contact = false;
        match kind {
            "subscribe" => {
                if mine.subscription.has_to() {
                    return Vec::new();
                }
                mine.ask_out = true;
                if theirs.subscription.has_from() {
                    notify_contact = false;
                } else {
                    theirs.pending_in = true;
                }
            }
            "subscribed" => {
                if !theirs.ask_out && !mine.pending_in {
                    return Vec::new();
                }
                mine.subscription = mine.subscription.with_from(true);
                mine.pending_in = false;
                theirs.subscription = theirs.subscription.with_to(true);
                theirs.ask_out = false;
                presences_to_contact = true;
            }
            "unsubscribe" => {
                mine.subscription = mine.subscription.with_to(false);
                mine.ask_out = false;
                theirs.subscription = theirs.subscription.with_from(false);
                theirs.pending_in = false;
            }
            _ => {
                mine.subscription = mine.subscription.with_from(false);
                mine.pending_in = false;
                theirs.subscription = theirs.subscription.with_to(false);
                theirs.ask_out = false;
            }
        }
        let (Ok(mine), Ok(theirs)) = (
            store.put_roster_item(self.app, self.user, &mine).await,
            store.put_roster_item(self.app, contact, &theirs).await,
        ) else {
            return Vec::new();
        };
        self.push_roster(&my_bare, &mine, None);
        self.push_roster(&contact_bare, &theirs, None);
        if notify_contact {
            let presence = format!(
                "<presence from='{}' to='{}' type='{kind}'/>",
                escape_attr(&my_bare.to_string()),
                escape_attr(&contact_bare.to_string())
            );
            for session in self.ctx.hub.sessions_of(&contact_bare) {
                self.hand_over(&session, Arc::from(presence.as_str()), Urgency::Urgent);
            }
        } else {
            // The contact already lets us see them: answer on their behalf (RFC 6121 §3.1.3).
            let mut mine = mine;
            mine.subscription = mine.subscription.with_to(true);
            mine.ask_out = false;
            let mut theirs = theirs;
            theirs.subscription = theirs.subscription.with_from(true);
            if let (Ok(mine), Ok(_)) = (
                store.put_roster_item(self.app, self.user, &mine).await,
                store.put_roster_item(self.app, contact, &theirs).await,
            ) {
                self.push_roster(&my_bare, &mine, None);
            }
            return vec![(
                format!(
                    "<presence from='{}' to='{}' type='subscribed'/>",
                    escape_attr(&contact_bare.to_string()),
                    escape_attr(&my_bare.to_string())
                ),
                Urgency::Urgent,
            )];
        }
        if presences_to_contact {
            for session in self.ctx.hub.sessions_of(&contact_bare) {
                for own in self.ctx.hub.sessions_of(&my_bare) {
                    if let Some(presence) = own.shared.presence() {
                        let addressed = retarget(&presence.stanza, &session.shared.jid.to_string());
                        self.hand_over(&session, Arc::from(addressed), Urgency::Urgent);
                    }
                }
            }
        }
        if kind == "unsubscribed" || kind == "unsubscribe" {
            let (from_bare, to_bare) = if kind == "unsubscribed" {
                (&my_bare, &contact_bare)
            } else {
                (&contact_bare, &my_bare)
            };
            for sender in self.ctx.hub.sessions_of(from_bare) {
                for receiver in self.ctx.hub.sessions_of(to_bare) {
                    let unavailable = format!(
                        "<presence from='{}' to='{}' type='unavailable'/>",
                        escape_attr(&sender.shared.jid.to_string()),
                        escape_attr(&receiver.shared.jid.to_string())
                    );
                    self.hand_over(&receiver, Arc::from(unavailable), Urgency::Urgent);
                }
            }
        }
        Vec::new()
    }

    /// Sends a roster push for `item` to every session of `owner` (RFC 6121 §2.1.6).
    fn push_roster(&mut self, owner: &BareJid, item: &RosterItem, removed: Option<UserId>) {
        let item_xml = match removed {
            Some(contact) => match self.user_bare(contact) {
                Ok(bare) => format!(
                    "<item jid='{}' subscription='remove'/>",
                    escape_attr(&bare.to_string())
                ),
                Err(_) => return,
            },
            None => match self.roster_item_xml(item) {
                Some(xml) => xml,
                None => return,
            },
        };
        for session in self.ctx.hub.sessions_of(owner) {
            self.push_counter += 1;
            let push = format!(
                "<iq type='set' id='push{}' to='{}'><query xmlns='{NS_ROSTER}' ver='{}'>{item_xml}</query></iq>",
                self.push_counter,
                escape_attr(&session.shared.jid.to_string()),
                item.version
            );
            self.hand_over(&session, Arc::from(push), Urgency::Urgent);
        }
    }

    fn roster_item_xml(&self, item: &RosterItem) -> Option<String> {
        let bare = self.user_bare(item.contact).ok()?;
        let mut xml = format!(
            "<item jid='{}' subscription='{}'",
            escape_attr(&bare.to_string()),
            item.subscription.as_str()
        );
        if item.ask_out {
            xml.push_str(" ask='subscribe'");
        }
        if let Some(name) = &item.name {
            xml.push_str(&format!(" name='{}'", escape_attr(name)));
        }
        if item.groups.is_empty() {
            xml.push_str("/>");
        } else {
            xml.push('>');
            for group in &item.groups {
                xml.push_str(&format!("<group>{}</group>", escape_text(group)));
            }
            xml.push_str("</item>");
        }
        Some(xml)
    }

    fn user_bare(&self, user: UserId) -> Result<BareJid, xmpp_proto::JidError> {
        BareJid::new(
            Some(&format!("{}-{}", user.0, self.app.0)),
            self.ctx.domain(),
        )
    }

    // ---- iq ----

    async fn iq(&mut self, stanza: Box<Stanza>, target: Target) -> Vec<Reply> {
        let iq_type = stanza.envelope().stanza_type.clone().unwrap_or_default();
        if !matches!(iq_type.as_str(), "get" | "set" | "result" | "error")
            || stanza.envelope().id.is_none()
        {
            return self.bounce(&stanza, StanzaErrorCondition::BadRequest);
        }
        let is_request = iq_type == "get" || iq_type == "set";
        match target {
            Target::Server | Target::OwnAccount => {
                if !is_request {
                    return Vec::new();
                }
                self.server_iq(&stanza, &iq_type).await
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
                self.account_iq(&stanza, &bare, user).await
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
    async fn account_iq(&mut self, stanza: &Stanza, bare: &BareJid, user: UserId) -> Vec<Reply> {
        let Some(iq) = self.parse(stanza) else {
            return Vec::new();
        };
        let Some(payload) = iq.first_child() else {
            return self.bounce(stanza, StanzaErrorCondition::BadRequest);
        };
        match (payload.namespace(), iq.attr("type")) {
            (Some(NS_LAST), Some("get")) => {
                let seconds = if self.ctx.hub.is_online(bare) {
                    Some((0, None))
                } else {
                    match self.ctx.store.last_logout(self.app, user).await {
                        Ok(Some((at, status))) => Some(((clock::unix_now() - at).max(0), status)),
                        _ => None,
                    }
                };
                let Some((seconds, status)) = seconds else {
                    return self.bounce(stanza, StanzaErrorCondition::ItemNotFound);
                };
                let text = status
                    .map(|s| escape_text(&s).into_owned())
                    .unwrap_or_default();
                // `from` must be the queried user: the SDK reads the user id from it.
                vec![(
                    format!(
                        "<iq type='result' id='{}' from='{}' to='{}'><query xmlns='{NS_LAST}' seconds='{seconds}'>{text}</query></iq>",
                        escape_attr(iq.attr("id").unwrap_or_default()),
                        escape_attr(&bare.to_string()),
                        escape_attr(&self.me().to_string())
                    ),
                    Urgency::Urgent,
                )]
            }
            (Some(NS_PING), Some("get")) => {
                vec![(
                    self.result(&iq, Some(&bare.to_string()), ""),
                    Urgency::Urgent,
                )]
            }
            _ => self.bounce(stanza, StanzaErrorCondition::ServiceUnavailable),
        }
    }

    async fn server_iq(&mut self, stanza: &Stanza, iq_type: &str) -> Vec<Reply> {
        let Some(iq) = self.parse(stanza) else {
            return Vec::new();
        };
        let Some(payload) = iq.first_child().cloned() else {
            return self.bounce(stanza, StanzaErrorCondition::BadRequest);
        };
        let domain = self.ctx.domain().to_string();
        let from = iq.attr("to").map(str::to_string);
        let reply = |body: String| vec![(body, Urgency::Urgent)];
        match (
            payload.namespace().unwrap_or_default(),
            payload.name(),
            iq_type,
        ) {
            (NS_PING, "ping", "get") => reply(self.result(&iq, from.as_deref(), "")),
            (NS_DISCO_INFO, "query", "get") => {
                let mut body = format!("<query xmlns='{NS_DISCO_INFO}'>");
                if from.is_none() || from.as_deref() == Some(domain.as_str()) {
                    body.push_str("<identity category='server' type='im' name='Switchboard'/>");
                    for feature in FEATURES {
                        body.push_str(&format!("<feature var='{feature}'/>"));
                    }
                } else {
                    body.push_str("<identity category='account' type='registered'/>");
                }
                body.push_str("</query>");
                reply(self.result(&iq, from.as_deref(), &body))
            }
            (NS_DISCO_ITEMS, "query", "get") => reply(self.result(
                &iq,
                from.as_deref(),
                &format!("<query xmlns='{NS_DISCO_ITEMS}'/>"),
            )),
            (NS_TIME, "time", "get") => {
                let body = format!(
                    "<time xmlns='{NS_TIME}'><tzo>+00:00</tzo><utc>{}</utc></time>",
                    clock::iso8601(clock::unix_now())
                );
                reply(self.result(&iq, from.as_deref(), &body))
            }
            (NS_VERSION, "query", "get") => {
                let body = format!("<query xmlns='{NS_VERSION}'><name>Switchboard</name><version>{}</version></query>", env!("CARGO_PKG_VERSION"));
                reply(self.result(&iq, from.as_deref(), &body))
            }
            (NS_LAST, "query", "get") => {
                let uptime = (clock::unix_now() - self.ctx.started_at).max(0);
                reply(self.result(
                    &iq,
                    from.as_deref(),
                    &format!("<query xmlns='{NS_LAST}' seconds='{uptime}'/>"),
                ))
            }
            (NS_CARBONS, "enable" | "disable", "set") => {
                self.handle
                    .shared
                    .carbons
                    .store(payload.name() == "enable", Ordering::Relaxed);
                reply(self.result(&iq, from.as_deref(), ""))
            }
            (NS_ROSTER, "query", "get") => self.roster_get(&iq, &payload).await,
            (NS_ROSTER, "query", "set") => self.roster_set(stanza, &iq, &payload).await,
            (NS_BLOCKING, "blocklist", "get") => match self.ctx.store.block_list(self.user).await {
                Ok(list) => {
                    let items: String = list
                        .iter()
                        .map(|jid| format!("<item jid='{}'/>", escape_attr(jid)))
                        .collect();
                    reply(self.result(
                        &iq,
                        from.as_deref(),
                        &format!("<blocklist xmlns='{NS_BLOCKING}'>{items}</blocklist>"),
                    ))
                }
                Err(_) => self.bounce(stanza, StanzaErrorCondition::InternalServerError),
            },
            (NS_BLOCKING, "block" | "unblock", "set") => self.block(stanza, &iq, &payload).await,
            (NS_PRIVACY, "query", _) => self.privacy(stanza, &iq, &payload, iq_type).await,
            _ => self.bounce(stanza, StanzaErrorCondition::ServiceUnavailable),
        }
    }

    async fn roster_get(&mut self, iq: &Element, query: &Element) -> Vec<Reply> {
        let (version, items) = match self.ctx.store.roster(self.user).await {
            Ok(roster) => roster,
            Err(_) => {
                return vec![(
                    self.iq_error(iq, StanzaErrorCondition::InternalServerError),
                    Urgency::Urgent,
                )]
            }
        };
        // XEP-0237: an up-to-date client gets an empty result and relies on pushes.
        if query.attr("ver") == Some(version.to_string().as_str()) {
            return vec![(self.result(iq, None, ""), Urgency::Urgent)];
        }
        let mut body = format!("<query xmlns='{NS_ROSTER}' ver='{version}'>");
        for item in items.iter().filter(|i| is_visible(i)) {
            if let Some(xml) = self.roster_item_xml(item) {
                body.push_str(&xml);
            }
        }
        body.push_str("</query>");
        vec![(self.result(iq, None, &body), Urgency::Urgent)]
    }

    async fn roster_set(&mut self, stanza: &Stanza, iq: &Element, query: &Element) -> Vec<Reply> {
        let items: Vec<&Element> = query.children().collect();
        let [item] = items.as_slice() else {
            return self.bounce(stanza, StanzaErrorCondition::BadRequest);
        };
        let contact = item
            .attr("jid")
            .and_then(|j| BareJid::parse(j).ok())
            .and_then(|bare| {
                let node = QbNode::parse(bare.node()?).ok()?;
                (bare.domain().eq_ignore_ascii_case(self.ctx.domain()) && node.app() == self.app.0)
                    .then_some(UserId(node.user()))
            });
        let Some(contact) = contact else {
            return self.bounce(stanza, StanzaErrorCondition::ItemNotFound);
        };
        if contact == self.user {
            return self.bounce(stanza, StanzaErrorCondition::NotAllowed);
        }
        let store = self.ctx.store.clone();
        if item.attr("subscription") == Some("remove") {
            let existing = match store.roster_item(self.user, contact).await {
                Ok(Some(existing)) => existing,
                Ok(None) => return self.bounce(stanza, StanzaErrorCondition::ItemNotFound),
                Err(_) => return self.bounce(stanza, StanzaErrorCondition::InternalServerError),
            };
            // Cancel subscriptions both ways first (RFC 6121 §2.5.2): they rewrite the item, so
            // removing it afterwards leaves the "remove" push as the last word on it.
            if let Ok(contact_bare) = self.user_bare(contact) {
                if existing.subscription.has_to() || existing.ask_out {
                    self.subscription("unsubscribe", contact_bare.clone(), contact)
                        .await;
                }
                if existing.subscription.has_from() {
                    self.subscription("unsubscribed", contact_bare, contact)
                        .await;
                }
            }
            return match store.remove_roster_item(self.user, contact).await {
                Ok(Some(version)) => {
                    let removed = RosterItem {
                        version,
                        ..empty_item(contact)
                    };
                    let owner = self.my_bare().clone();
                    self.push_roster(&owner, &removed, Some(contact));
                    vec![(self.result(iq, None, ""), Urgency::Urgent)]
                }
                Ok(None) => self.bounce(stanza, StanzaErrorCondition::ItemNotFound),
                Err(_) => self.bounce(stanza, StanzaErrorCondition::InternalServerError),
            };
        }
        if !matches!(store.user(self.app, contact).await, Ok(Some(_))) {
            return self.bounce(stanza, StanzaErrorCondition::ItemNotFound);
        }
        let mut updated = store
            .roster_item(self.user, contact)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| empty_item(contact));
        updated.name = item
            .attr("name")
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let groups: Vec<String> = item
            .children()
            .filter(|c| c.name() == "group")
            .map(|c| c.text())
            .filter(|g| !g.is_empty() && !g.contains('\n'))
            .collect();
        updated.groups = groups;
        match store.put_roster_item(self.app, self.user, &updated).await {
            Ok(stored) => {
                let owner = self.my_bare().clone();
                self.push_roster(&owner, &stored, None);
                vec![(self.result(iq, None, ""), Urgency::Urgent)]
            }
            Err(_) => self.bounce(stanza, StanzaErrorCondition::InternalServerError),
        }
    }

    async fn block(&mut self, stanza: &Stanza, iq: &Element, payload: &Element) -> Vec<Reply> {
        // Every item must name a valid JID: dropping a bad one would turn `<unblock>` with only
        // bad items into "unblock everyone" (XEP-0191 §3.4 wants jid-malformed).
        let jids: Option<Vec<String>> = payload
            .children()
            .filter(|i| i.name() == "item")
            .map(|i| {
                i.attr("jid")
                    .and_then(|j| Jid::parse(j).ok())
                    .map(|j| j.to_string())
            })
            .collect();
        let Some(jids) = jids else {
            return self.bounce(stanza, StanzaErrorCondition::JidMalformed);
        };
        let blocking = payload.name() == "block";
        if blocking && jids.is_empty() {
            return self.bounce(stanza, StanzaErrorCondition::BadRequest);
        }
        let result = if blocking {
            self.ctx.store.block(self.user, &jids).await
        } else {
            self.ctx.store.unblock(self.user, &jids).await
        };
        if result.is_err() {
            return self.bounce(stanza, StanzaErrorCondition::InternalServerError);
        }
        self.blocks_changed();
        self.presence_after_block(&jids, blocking).await;
        // XEP-0191 §3.3: push the change to every resource.
        let items: String = jids
            .iter()
            .map(|j| format!("<item jid='{}'/>", escape_attr(j)))
            .collect();
        for session in self.ctx.hub.sessions_of(self.my_bare()) {
            self.push_counter += 1;
            let push = format!(
                "<iq type='set' id='push{}' to='{}'><{} xmlns='{NS_BLOCKING}'>{items}</{}></iq>",
                self.push_counter,
                escape_attr(&session.shared.jid.to_string()),
                payload.name(),
                payload.name()
            );
            self.hand_over(&session, Arc::from(push), Urgency::Urgent);
        }
        vec![(self.result(iq, None, ""), Urgency::Urgent)]
    }

    /// XEP-0191 §3.3 and §3.4: a newly blocked contact that could see this user's presence gets
    /// `unavailable` from each of their available resources; an unblocked one gets their
    /// current presence again. An empty unblock (everything) has no single contact to tell.
    async fn presence_after_block(&mut self, jids: &[String], blocking: bool) {
        let mine: Vec<(String, String)> = self
            .ctx
            .hub
            .sessions_of(self.my_bare())
            .into_iter()
            .filter_map(|s| {
                s.shared
                    .presence()
                    .map(|p| (s.shared.jid.to_string(), p.stanza))
            })
            .collect();
        if mine.is_empty() {
            return;
        }
        for jid in jids {
            let Ok(Jid::Bare(bare)) = Jid::parse(jid) else {
                continue;
            };
            let Some(contact) = bare
                .node()
                .and_then(|n| QbNode::parse(n).ok())
                .filter(|qb| qb.app() == self.app.0 && bare.domain() == self.ctx.domain())
                .map(|qb| UserId(qb.user()))
            else {
                continue;
            };
            let subscribed = matches!(
                self.ctx.store.roster_item(self.user, contact).await,
                Ok(Some(item)) if item.subscription.has_from()
            );
            for session in self.ctx.hub.sessions_of(&bare) {
                let theirs = session.shared.jid.to_string();
                let saw_us = subscribed || self.directed.contains(&theirs);
                if !saw_us {
                    continue;
                }
                if blocking {
                    self.directed.remove(&theirs);
                }
                if !blocking && !subscribed {
                    continue;
                }
                for (my_jid, presence) in &mine {
                    let stanza = if blocking {
                        format!(
                            "<presence type='unavailable' from='{}' to='{}'/>",
                            escape_attr(my_jid),
                            escape_attr(&theirs)
                        )
                    } else {
                        retarget(presence, &theirs)
                    };
                    self.hand_over(
                        &session,
                        Arc::from(stanza),
                        Urgency::Coalesce(my_jid.clone()),
                    );
                }
            }
        }
    }

    /// XEP-0016: lists are stored with their items in the order set (the QuickBlox SDK reads
    /// every second item).
    async fn privacy(
        &mut self,
        stanza: &Stanza,
        iq: &Element,
        query: &Element,
        iq_type: &str,
    ) -> Vec<Reply> {
        let store = self.ctx.store.clone();
        let children: Vec<&Element> = query.children().collect();
        if iq_type == "get" {
            match children.as_slice() {
                [] => {
                    let Ok((names, default)) = store.privacy_list_names(self.user).await else {
                        return self.bounce(stanza, StanzaErrorCondition::InternalServerError);
                    };
                    let mut body = format!("<query xmlns='{NS_PRIVACY}'>");
                    if let Some(default) = default {
                        body.push_str(&format!("<default name='{}'/>", escape_attr(&default)));
                    }
                    for name in names {
                        body.push_str(&format!("<list name='{}'/>", escape_attr(&name)));
                    }
                    body.push_str("</query>");
                    vec![(self.result(iq, None, &body), Urgency::Urgent)]
                }
                [list] if list.name() == "list" => {
                    let name = list.attr("name").unwrap_or_default();
                    match store.privacy_list(self.user, name).await {
                        Ok(Some(items)) => {
                            let body = format!("<query xmlns='{NS_PRIVACY}'><list name='{}'>{items}</list></query>", escape_attr(name));
                            vec![(self.result(iq, None, &body), Urgency::Urgent)]
                        }
                        Ok(None) => self.bounce(stanza, StanzaErrorCondition::ItemNotFound),
                        Err(_) => self.bounce(stanza, StanzaErrorCondition::InternalServerError),
                    }
                }
                _ => self.bounce(stanza, StanzaErrorCondition::BadRequest),
            }
        } else {
            let [child] = children.as_slice() else {
                return self.bounce(stanza, StanzaErrorCondition::BadRequest);
            };
            let name = child.attr("name");
            let outcome = match (child.name(), name) {
                ("list", Some(name)) => {
                    let items: Vec<&Element> = child.children().collect();
                    if items.is_empty() {
                        store.delete_privacy_list(self.user, name).await.map(|_| ())
                    } else {
                        let mut serialized = String::new();
                        for item in items {
                            item.write_xml(Some(NS_PRIVACY), &mut serialized);
                        }
                        store.put_privacy_list(self.user, name, &serialized).await
                    }
                }
                ("default", name) => {
                    if let Some(name) = name {
                        if !matches!(store.privacy_list(self.user, name).await, Ok(Some(_))) {
                            return self.bounce(stanza, StanzaErrorCondition::ItemNotFound);
                        }
                    }
                    store.set_default_privacy_list(self.user, name).await
                }
                ("active", name) => {
                    // Active lists are per session; this server applies the default list.
                    if let Some(name) = name {
                        if !matches!(store.privacy_list(self.user, name).await, Ok(Some(_))) {
                            return self.bounce(stanza, StanzaErrorCondition::ItemNotFound);
                        }
                    }
                    Ok(())
                }
                _ => return self.bounce(stanza, StanzaErrorCondition::BadRequest),
            };
            self.blocks_changed();
            match outcome {
                Ok(()) => vec![(self.result(iq, None, ""), Urgency::Urgent)],
                Err(_) => self.bounce(stanza, StanzaErrorCondition::InternalServerError),
            }
        }
    }

    // ---- helpers ----

    fn parse(&self, stanza: &Stanza) -> Option<Element> {
        Element::parse(stanza.as_str(), Some(ns::CLIENT)).ok()
    }

    /// `<iq type='result'>` answering `iq`, from `from` (default: the server), with `body`.
    fn result(&self, iq: &Element, from: Option<&str>, body: &str) -> String {
        let id = escape_attr(iq.attr("id").unwrap_or_default()).into_owned();
        let from = from
            .map(|f| format!(" from='{}'", escape_attr(f)))
            .unwrap_or_default();
        let to = escape_attr(&self.me().to_string()).into_owned();
        if body.is_empty() {
            format!("<iq type='result' id='{id}'{from} to='{to}'/>")
        } else {
            format!("<iq type='result' id='{id}'{from} to='{to}'>{body}</iq>")
        }
    }

    fn iq_error(&self, iq: &Element, condition: StanzaErrorCondition) -> String {
        format!(
            "<iq type='error' id='{}' to='{}'>{}</iq>",
            escape_attr(iq.attr("id").unwrap_or_default()),
            escape_attr(&self.me().to_string()),
            StanzaError::new(condition).to_xml()
        )
    }

    /// [`error_reply`](Self::error_reply) as the reply list handlers return.
    fn bounce(&self, stanza: &Stanza, condition: StanzaErrorCondition) -> Vec<Reply> {
        self.error_reply(stanza, condition.into())
            .into_iter()
            .collect()
    }

    /// A `type='error'` bounce of `stanza` back to the client, keeping its id (the SDK matches
    /// errors to messages by id). Errors are never answered with errors.
    fn error_reply(&self, stanza: &Stanza, error: StanzaError) -> Option<Reply> {
        let envelope = stanza.envelope();
        if envelope.stanza_type.as_deref() == Some("error") {
            return None;
        }
        let name = &envelope.name;
        let id = envelope
            .id
            .as_deref()
            .map(|id| format!(" id='{}'", escape_attr(id)))
            .unwrap_or_default();
        let from = envelope
            .to
            .as_deref()
            .map(|f| format!(" from='{}'", escape_attr(f)))
            .unwrap_or_default();
        Some((
            format!(
                "<{name} type='error'{id}{from} to='{}'>{}</{name}>",
                escape_attr(&self.me().to_string()),
                error.to_xml()
            ),
            Urgency::Urgent,
        ))
    }

    /// Ends the session: unbinding, unavailable presence if it was available, and the chat
    /// messages it never acknowledged or never got handed to the newer session that replaced
    /// it (same JID) or else stored offline.
    pub async fn end(mut self, unacked: Vec<Vec<u8>>, rx: Option<mpsc::Receiver<Delivery>>) {
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
            } else {
                let _ = self
                    .ctx
                    .store
                    .set_last_logout(self.app, self.user, clock::unix_now(), None)
                    .await;
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
                if let Delivery::Stanza(stanza) = delivery {
                    leftovers.push(stanza.0.to_string());
                }
            }
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
            let message_type = match parse_stanza(&text) {
                Ok(parsed) if parsed.envelope().name == "message" => parsed
                    .envelope()
                    .stanza_type
                    .clone()
                    .unwrap_or_else(|| "normal".into()),
                _ => continue,
            };
            if !worth_storing(&message_type, &text) {
                continue;
            }
            let now = clock::unix_now();
            let delayed = if text.contains(NS_DELAY) {
                text.clone()
            } else {
                add_delay(&text, self.ctx.domain(), now)
            };
            if self
                .ctx
                .store
                .push_offline(self.app, self.user, &delayed, now)
                .await
                .is_ok()
            {
                self.ctx.metrics.offline_stored.inc();
                self.ctx.metrics.offline_queue.inc();
            }
        }
    }
}

fn empty_item(contact: UserId) -> RosterItem {
    RosterItem {
        contact,
        name: None,
        subscription: Subscription::None,
        ask_out: false,
        pending_in: false,
        groups: Vec::new(),
        version: 0,
    }
}

/// Pending-in-only entries are not roster items (RFC 6121 §3.1.3).
fn is_visible(item: &RosterItem) -> bool {
    !(item.pending_in
        && item.subscription == Subscription::None
        && !item.ask_out
        && item.name.is_none()
        && item.groups.is_empty())
}

/// The available sessions with the highest non-negative priority (RFC 6121 §8.5.2.1.1).
fn highest_priority(sessions: Vec<SessionHandle>) -> Vec<SessionHandle> {
    let with_priority: Vec<(i8, SessionHandle)> = sessions
        .into_iter()
        .filter_map(|s| s.shared.presence().map(|p| (p.priority, s)))
        .filter(|(p, _)| *p >= 0)
        .collect();
    let Some(max) = with_priority.iter().map(|(p, _)| *p).max() else {
        return Vec::new();
    };
    with_priority
        .into_iter()
        .filter(|(p, _)| *p == max)
        .map(|(_, s)| s)
        .collect()
}

/// Chat states and markers may wait for an inactive client; anything with content may not.
fn message_urgency(stanza: &str) -> Urgency {
    if stanza.contains("<body")
        || stanza.contains("extraParams")
        || stanza.contains("type='headline'")
        || stanza.contains("type=\"headline\"")
    {
        Urgency::Urgent
    } else {
        Urgency::Defer
    }
}

/// XEP-0280 §6 `<private/>` or XEP-0334 `<no-copy/>`: the sender wants no carbons. (Other
/// hints such as `<store/>` do not opt out; `<` in text is always escaped, so these are markup.)
fn has_no_copy(stanza: &str) -> bool {
    (stanza.contains("<private") && stanza.contains(NS_CARBONS))
        || (stanza.contains("<no-copy") && stanza.contains("urn:xmpp:hints"))
}

/// Whether a message of `message_type` waits in offline storage (XEP-0160): chat, normal and
/// headline messages, except QuickBlox call signals (late ones are useless and the SDK ignores
/// signals carrying `<delay>`) and carbon copies (the user's other device had the original).
/// The markup checks cannot be fooled by text: a body's `<` is always escaped.
fn worth_storing(message_type: &str, stanza: &str) -> bool {
    let call_signal = message_type == "headline"
        && stanza.contains("<moduleIdentifier>WebRTCVideoChat</moduleIdentifier>");
    let carbon = stanza.contains(&format!("<sent xmlns='{NS_CARBONS}'"))
        || stanza.contains(&format!("<received xmlns='{NS_CARBONS}'"));
    matches!(message_type, "chat" | "normal" | "headline") && !call_signal && !carbon
}

/// Parses one serialized stanza we built or stored ourselves.
fn parse_stanza(text: &str) -> Result<Stanza, xmpp_proto::XmlError> {
    let mut parser = xmpp_proto::StreamParser::new(xmpp_proto::Limits::default());
    parser.feed(
        format!(
            "<stream:stream xmlns='{}' xmlns:stream='{}' to='x' version='1.0'>",
            ns::CLIENT,
            ns::STREAMS
        )
        .as_bytes(),
    );
    parser.feed(text.as_bytes());
    loop {
        match parser.next_event()? {
            Some(xmpp_proto::Event::Stanza(stanza)) => return Ok(stanza),
            Some(_) => continue,
            None => return Err(xmpp_proto::XmlError::NotOneElement("no stanza")),
        }
    }
}

/// The same stanza addressed `to` someone else (stored presences and offline messages).
fn retarget(stanza: &str, to: &str) -> String {
    match parse_stanza(stanza) {
        Ok(parsed) => parsed.with_from_to(None, Some(to)),
        Err(_) => stanza.to_string(),
    }
}

/// Appends a XEP-0203 `<delay>` as the last child of a message.
fn add_delay(stanza: &str, domain: &str, now: i64) -> String {
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

fn presence_priority(stanza: &Stanza) -> i8 {
    Element::parse(stanza.as_str(), Some(ns::CLIENT))
        .ok()
        .and_then(|p| p.child("priority", ns::CLIENT).map(|c| c.text()))
        .and_then(|text| text.trim().parse::<i8>().ok())
        .unwrap_or(0)
}

fn presence_status(stanza: &Stanza) -> Option<String> {
    Element::parse(stanza.as_str(), Some(ns::CLIENT))
        .ok()
        .and_then(|p| p.child("status", ns::CLIENT).map(|c| c.text()))
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

    #[test]
    fn what_waits_offline_is_decided_by_markup_not_text() {
        let body = |text: &str| format!("<message type='chat'><body>{text}</body></message>");
        assert!(worth_storing("chat", &body("type='error' WebRTCVideoChat")));
        assert!(worth_storing("normal", "<message/>"));
        assert!(worth_storing(
            "headline",
            "<message type='headline'><body>news</body></message>"
        ));
        let signal = "<message type='headline'><extraParams xmlns='jabber:client'>\
            <moduleIdentifier>WebRTCVideoChat</moduleIdentifier></extraParams></message>";
        assert!(!worth_storing("headline", signal));
        assert!(!worth_storing("error", &body("x")));
        assert!(!worth_storing("groupchat", &body("x")));
        let carbon = format!(
            "<message type='chat'><sent xmlns='{NS_CARBONS}'><forwarded xmlns='{NS_FORWARD}'/></sent></message>"
        );
        assert!(!worth_storing("chat", &carbon));
        assert!(has_no_copy(
            "<message><no-copy xmlns='urn:xmpp:hints'/></message>"
        ));
        assert!(!has_no_copy(
            "<message><store xmlns='urn:xmpp:hints'/></message>"
        ));
        assert!(!has_no_copy(&body("urn:xmpp:hints")));
    }

    #[test]
    fn retarget_keeps_children() {
        let out = retarget(
            "<presence from='a@b/c'><show>away</show></presence>",
            "x@y/z",
        );
        assert_eq!(
            out,
            "<presence to='x@y/z' from='a@b/c'><show>away</show></presence>"
        );
    }
}
