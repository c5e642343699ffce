//! RFC 6121 presence subscriptions: the state of one side's roster item for a contact and how
//! the four subscription stanzas change it (RFC 6121 §3 and Appendix A).
//!
//! Driving contract: the shell loads the roster item(s), calls [`outbound`] on the sender's
//! server, [`inbound`] on the recipient's server, or [`between_local`] when both accounts live
//! here, then stores and pushes (RFC 6121 §2.1.6) each item marked changed, delivers what it
//! is told to deliver and sends the presence the result asks for. Nothing here reads a clock
//! or touches storage.
//!
//! "Changed" means the state differs from the one given, pending flags included, so storing
//! exactly the changed items never loses a request. One push is not owed: an item that holds
//! nothing but a pending inbound request is not a roster item (RFC 6121 §3.1.3; RFC 6121
//! dropped `ask='subscribed'`, so the flag shows nowhere) and is stored without a push.
//!
//! Pre-approval (RFC 6121 §3.4, the `approved` flag) is not supported: an outbound
//! `subscribed` with no pending inbound request changes nothing and is not routed.

/// RFC 6121 §2.1.2.5 subscription attribute.
///
/// Complete by definition: two directions, each on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Subscription {
    /// Neither side receives the other's presence.
    #[default]
    None,
    /// The owner receives the contact's presence.
    To,
    /// The contact receives the owner's presence.
    From,
    /// Both receive each other's presence.
    Both,
}

impl Subscription {
    /// The attribute value: `none`, `to`, `from` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    /// The subscription named by an attribute value; `None` for anything else (including
    /// `remove`, which is a roster-set instruction, not a state).
    pub fn parse(text: &str) -> Option<Subscription> {
        Some(match text {
            "none" => Subscription::None,
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            _ => return None,
        })
    }

    /// Whether the owner receives the contact's presence (`to` or `both`).
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// Whether the contact receives the owner's presence (`from` or `both`).
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    /// The same subscription with the `to` direction set to `on`.
    pub fn with_to(self, on: bool) -> Subscription {
        Subscription::from_flags(on, self.has_from())
    }

    /// The same subscription with the `from` direction set to `on`.
    pub fn with_from(self, on: bool) -> Subscription {
        Subscription::from_flags(self.has_to(), on)
    }

    fn from_flags(to: bool, from: bool) -> Subscription {
        match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }
}

/// One side's view of a contact: the nine states of RFC 6121 Appendix A.1.
///
/// `Default` is "None": no subscription and nothing pending, which is also what a missing
/// roster item means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionState {
    /// The subscription both sides agreed on.
    pub subscription: Subscription,
    /// The owner asked to see the contact's presence and has no answer yet
    /// (`ask='subscribe'`).
    pub pending_out: bool,
    /// The contact asked to see the owner's presence and the owner has not answered.
    pub pending_in: bool,
}

impl SubscriptionState {
    /// The nine legal states, in the order RFC 6121 Appendix A.1 lists them.
    pub const ALL: [SubscriptionState; 9] = [
        SubscriptionState::new(Subscription::None, false, false),
        SubscriptionState::new(Subscription::None, true, false),
        SubscriptionState::new(Subscription::None, false, true),
        SubscriptionState::new(Subscription::None, true, true),
        SubscriptionState::new(Subscription::To, false, false),
        SubscriptionState::new(Subscription::To, false, true),
        SubscriptionState::new(Subscription::From, false, false),
        SubscriptionState::new(Subscription::From, true, false),
        SubscriptionState::new(Subscription::Both, false, false),
    ];

    /// A state from its three parts (not checked: see [`SubscriptionState::is_valid`]).
    pub const fn new(
        subscription: Subscription,
        pending_out: bool,
        pending_in: bool,
    ) -> SubscriptionState {
        SubscriptionState {
            subscription,
            pending_out,
            pending_in,
        }
    }

    /// Whether this is one of the nine states of Appendix A.1: a request cannot be pending for
    /// a direction that is already subscribed (no pending out with `to`/`both`, no pending in
    /// with `from`/`both`).
    pub fn is_valid(&self) -> bool {
        let asks_for_granted_to = self.pending_out && self.subscription.has_to();
        let asks_for_granted_from = self.pending_in && self.subscription.has_from();
        !(asks_for_granted_to || asks_for_granted_from)
    }

    /// The nearest valid state: a pending flag for a direction that is already subscribed is
    /// dropped, since the request it records has been granted. [`outbound`] and [`inbound`]
    /// apply this first, so rows written by older code cannot wedge a roster item.
    pub fn normalized(self) -> SubscriptionState {
        SubscriptionState {
            subscription: self.subscription,
            pending_out: self.pending_out && !self.subscription.has_to(),
            pending_in: self.pending_in && !self.subscription.has_from(),
        }
    }
}

/// The four presence types that manage subscriptions (RFC 6121 §3).
///
/// Complete by definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionKind {
    /// Ask to see the recipient's presence.
    Subscribe,
    /// Let the recipient see the sender's presence (approve a request).
    Subscribed,
    /// Stop seeing the recipient's presence.
    Unsubscribe,
    /// Stop letting the recipient see the sender's presence (deny or cancel).
    Unsubscribed,
}

impl SubscriptionKind {
    /// The kind named by a presence `type` attribute; `None` for any other presence type.
    pub fn parse(presence_type: &str) -> Option<SubscriptionKind> {
        Some(match presence_type {
            "subscribe" => SubscriptionKind::Subscribe,
            "subscribed" => SubscriptionKind::Subscribed,
            "unsubscribe" => SubscriptionKind::Unsubscribe,
            "unsubscribed" => SubscriptionKind::Unsubscribed,
            _ => return None,
        })
    }

    /// The presence `type` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionKind::Subscribe => "subscribe",
            SubscriptionKind::Subscribed => "subscribed",
            SubscriptionKind::Unsubscribe => "unsubscribe",
            SubscriptionKind::Unsubscribed => "unsubscribed",
        }
    }
}

/// What the user's server does with a subscription stanza the user sent (RFC 6121 A.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbound {
    /// The new state of the user's item for the contact (store it if it differs).
    pub state: SubscriptionState,
    /// `state` differs from the state given: store it and push it to the user's interested
    /// resources (see the module doc for the one item that gets no push).
    pub changed: bool,
    /// The stanza goes on to the contact's server. Always true for `subscribe` and
    /// `unsubscribe` (A.2: routed "without exception" so the contact's side can
    /// resynchronise); for `subscribed` and `unsubscribed` only when the state changed.
    pub route: bool,
}

/// RFC 6121 A.2: the user's server processing an outbound subscription stanza from the user
/// to contact.
///
/// `user_side` is the user's item for the contact (default: none); it goes through
/// [`SubscriptionState::normalized`] first.
pub fn outbound(user_side: SubscriptionState, kind: SubscriptionKind) -> Outbound {
    let old = user_side.normalized();
    let mut state = old;
    let route = match kind {
        // A.2.1: ask, unless the user already sees the contact; routed either way.
        SubscriptionKind::Subscribe => {
            if !old.subscription.has_to() {
                state.pending_out = true;
            }
            true
        }
        // A.2.2: only an answer to a pending request means anything (no pre-approval).
        SubscriptionKind::Subscribed => {
            if old.pending_in {
                state.subscription = old.subscription.with_from(true);
                state.pending_in = false;
            }
            old.pending_in
        }
        // A.2.3: drop the subscription to the contact and any request for one; routed
        // either way.
        SubscriptionKind::Unsubscribe => {
            state.subscription = old.subscription.with_to(false);
            state.pending_out = false;
            true
        }
        // A.2.4: cancel the contact's subscription or deny their request, if there is one.
        SubscriptionKind::Unsubscribed => {
            let something = old.subscription.has_from() || old.pending_in;
            state.subscription = old.subscription.with_from(false);
            state.pending_in = false;
            something
        }
    };
    Outbound {
        state,
        changed: state != user_side,
        route,
    }
}

/// What the contact's server does with a subscription stanza from the user (RFC 6121 A.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbound {
    /// The new state of the contact's item for the user (store it if it differs).
    pub state: SubscriptionState,
    /// `state` differs from the state given: store it and push it to the contact's interested
    /// resources (see the module doc for the one item that gets no push).
    pub changed: bool,
    /// Deliver the stanza to the contact's available resources. False on every "no state
    /// change" row. A `subscribe` for a contact with no available resource stays on record
    /// as `pending_in` and is delivered when one becomes available (A.3.1 footnote 1).
    pub deliver: bool,
    /// The contact's server answers on the contact's behalf: `Subscribed` to a `subscribe`
    /// when the contact already lets the user see its presence (RFC 6121 §3.1.3, A.3.1), so
    /// the user's side can resynchronise.
    pub auto_reply: Option<SubscriptionKind>,
}

/// RFC 6121 A.3: the contact's server processing the inbound stanza from the user.
///
/// `contact_side` is the contact's item for the user (default: none); it goes through
/// [`SubscriptionState::normalized`] first.
pub fn inbound(contact_side: SubscriptionState, kind: SubscriptionKind) -> Inbound {
    let old = contact_side.normalized();
    let mut state = old;
    let mut auto_reply = None;
    let deliver = match kind {
        // A.3.1: a new request is recorded and delivered; a repeated one is not delivered
        // again (the first is on record); one already granted is answered by the server.
        SubscriptionKind::Subscribe => {
            if old.subscription.has_from() {
                auto_reply = Some(SubscriptionKind::Subscribed);
                false
            } else if old.pending_in {
                false
            } else {
                state.pending_in = true;
                true
            }
        }
        // A.3.2: an approval nobody asked for is dropped.
        SubscriptionKind::Subscribed => {
            if old.pending_out {
                state.subscription = old.subscription.with_to(true);
                state.pending_out = false;
            }
            old.pending_out
        }
        // A.3.3: the user stops seeing the contact, or withdraws the request to.
        SubscriptionKind::Unsubscribe => {
            let something = old.subscription.has_from() || old.pending_in;
            state.subscription = old.subscription.with_from(false);
            state.pending_in = false;
            something
        }
        // A.3.4: the user cancels the contact's subscription or denies the request.
        SubscriptionKind::Unsubscribed => {
            let something = old.subscription.has_to() || old.pending_out;
            state.subscription = old.subscription.with_to(false);
            state.pending_out = false;
            something
        }
    };
    Inbound {
        state,
        changed: state != contact_side,
        deliver,
        auto_reply,
    }
}

/// The presence the shell must send after a [`LocalExchange`]. At most one applies: each kind
/// moves presence visibility in one direction only (`subscribed` grants, `unsubscribed` and
/// `unsubscribe` revoke, and `subscribe` grants only through its auto-reply).
///
/// Complete by definition: two directions, each gained or lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceEffect {
    /// Nothing to send.
    None,
    /// The contact now sees the user: send the current presence of each of the user's
    /// available resources to the contact's resources (RFC 6121 §3.1.5).
    UserToContact,
    /// The user now sees the contact (after the server's auto-reply `subscribed`): send the
    /// current presence of each of the contact's available resources to the user's resources.
    ContactToUser,
    /// The contact no longer sees the user: `unavailable` from each of the user's resources to
    /// the contact's resources (RFC 6121 §3.2.2).
    UserGoneForContact,
    /// The user no longer sees the contact: `unavailable` from each of the contact's
    /// resources to the user's resources (RFC 6121 §3.3.3).
    ContactGoneForUser,
}

/// The outcome of a subscription stanza between two local accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalExchange {
    /// The new state of the user's item for the contact (store it if it differs).
    pub user_side: SubscriptionState,
    /// The new state of the contact's item for the user (store it if it differs).
    pub contact_side: SubscriptionState,
    /// `user_side` differs from the state given: store it and push it to the user's
    /// interested resources (see the module doc for the one item that gets no push).
    pub user_changed: bool,
    /// `contact_side` differs from the state given: store it and push it to the contact's
    /// interested resources (see the module doc for the one item that gets no push).
    pub contact_changed: bool,
    /// The original stanza (this kind, from the user's bare JID) to deliver to the contact's
    /// resources.
    pub deliver_to_contact: Option<SubscriptionKind>,
    /// The server's auto-reply (from the contact's bare JID) to deliver to the user's
    /// resources.
    pub deliver_to_user: Option<SubscriptionKind>,
    /// The presence to send afterwards.
    pub presence: PresenceEffect,
}

/// A subscription stanza from `user` to `contact` when both accounts are local: the outbound
/// rules on the user's item for the contact, then (if routed) the inbound rules on the
/// contact's item for the user, then any auto-reply processed the same way in the other
/// direction (contact -> user, outbound on contact's side then inbound on user's side).
///
/// The auto-reply comes from the contact's server, not from the contact, so it skips the
/// contact's outbound rules: the contact's item already holds the subscription the reply
/// announces, and A.2.2 would otherwise refuse to route a `subscribed` with nothing pending,
/// defeating the resynchronisation the reply exists for. It goes through the user's inbound
/// rules like any `subscribed`.
///
/// Both inputs are [normalized](SubscriptionState::normalized) first; the shell runs this
/// inside one store transaction and writes back both sides.
pub fn between_local(
    user_side: SubscriptionState,
    contact_side: SubscriptionState,
    kind: SubscriptionKind,
) -> LocalExchange {
    let out = outbound(user_side, kind);
    let mut exchange = LocalExchange {
        user_side: out.state,
        contact_side: contact_side.normalized(),
        user_changed: out.changed,
        contact_changed: contact_side.normalized() != contact_side,
        deliver_to_contact: None,
        deliver_to_user: None,
        presence: PresenceEffect::None,
    };
    if out.route {
        let arrived = inbound(contact_side, kind);
        exchange.contact_side = arrived.state;
        exchange.contact_changed = arrived.changed;
        if arrived.deliver {
            exchange.deliver_to_contact = Some(kind);
        }
        if let Some(reply) = arrived.auto_reply {
            // Only `subscribed` is ever auto-sent, and an inbound `subscribed` never answers
            // back, so this cannot loop.
            let back = inbound(exchange.user_side, reply);
            exchange.user_side = back.state;
            exchange.user_changed = back.state != user_side;
            if back.deliver {
                exchange.deliver_to_user = Some(reply);
            }
        }
    }
    exchange.presence = presence_effect(
        kind,
        (user_side.normalized(), contact_side.normalized()),
        (exchange.user_side, exchange.contact_side),
    );
    exchange
}

/// Which presence follows. Each kind moves one direction of visibility one way only
/// (`subscribe` via its auto-reply and `subscribed` grant, the other two revoke), so it is
/// enough to see whether either roster's record of that direction moved. Either record counts
/// so that when the two rosters disagree a client is never left showing a contact online.
fn presence_effect(
    kind: SubscriptionKind,
    (user_before, contact_before): (SubscriptionState, SubscriptionState),
    (user_after, contact_after): (SubscriptionState, SubscriptionState),
) -> PresenceEffect {
    let user_view_moved = user_before.subscription.has_to() != user_after.subscription.has_to()
        || contact_before.subscription.has_from() != contact_after.subscription.has_from();
    let contact_view_moved = user_before.subscription.has_from()
        != user_after.subscription.has_from()
        || contact_before.subscription.has_to() != contact_after.subscription.has_to();
    match (kind, user_view_moved, contact_view_moved) {
        (SubscriptionKind::Subscribe, true, _) => PresenceEffect::ContactToUser,
        (SubscriptionKind::Unsubscribe, true, _) => PresenceEffect::ContactGoneForUser,
        (SubscriptionKind::Subscribed, _, true) => PresenceEffect::UserToContact,
        (SubscriptionKind::Unsubscribed, _, true) => PresenceEffect::UserGoneForContact,
        _ => PresenceEffect::None,
    }
}
