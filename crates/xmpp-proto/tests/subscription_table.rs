//! RFC 6121 Appendix A, row by row: every one of the nine states against every subscription
//! stanza, on the sending side (A.2) and the receiving side (A.3), then whole exchanges
//! between two local accounts.

use xmpp_proto::subscription::{
    between_local, inbound, outbound, PresenceEffect, Subscription, SubscriptionKind,
    SubscriptionState,
};

use SubscriptionKind::{Subscribe, Subscribed, Unsubscribe, Unsubscribed};

// The nine states under the names Appendix A.1 gives them.
const NONE: SubscriptionState = SubscriptionState::new(Subscription::None, false, false);
const NONE_OUT: SubscriptionState = SubscriptionState::new(Subscription::None, true, false);
const NONE_IN: SubscriptionState = SubscriptionState::new(Subscription::None, false, true);
const NONE_OUT_IN: SubscriptionState = SubscriptionState::new(Subscription::None, true, true);
const TO: SubscriptionState = SubscriptionState::new(Subscription::To, false, false);
const TO_IN: SubscriptionState = SubscriptionState::new(Subscription::To, false, true);
const FROM: SubscriptionState = SubscriptionState::new(Subscription::From, false, false);
const FROM_OUT: SubscriptionState = SubscriptionState::new(Subscription::From, true, false);
const BOTH: SubscriptionState = SubscriptionState::new(Subscription::Both, false, false);

/// "no state change" in the RFC's tables.
const SAME: Option<SubscriptionState> = None;

const fn to(state: SubscriptionState) -> Option<SubscriptionState> {
    Some(state)
}

const MUST: bool = true;
const MUST_NOT: bool = false;
/// A.3.1's "SHOULD NOT" rows: we do not.
const SHOULD_NOT: bool = false;

/// One row of A.2: existing state, stanza, ROUTE?, new state.
type OutboundRow = (
    SubscriptionState,
    SubscriptionKind,
    bool,
    Option<SubscriptionState>,
);

/// A.2. Every state change is stored and pushed to the user's resources.
#[rustfmt::skip]
const OUTBOUND: [OutboundRow; 36] = [
    // A.2.1 subscribe: routed without exception.
    (NONE,        Subscribe,    MUST,     to(NONE_OUT)),
    (NONE_OUT,    Subscribe,    MUST,     SAME),
    (NONE_IN,     Subscribe,    MUST,     to(NONE_OUT_IN)),
    (NONE_OUT_IN, Subscribe,    MUST,     SAME),
    (TO,          Subscribe,    MUST,     SAME),
    (TO_IN,       Subscribe,    MUST,     SAME),
    (FROM,        Subscribe,    MUST,     to(FROM_OUT)),
    (FROM_OUT,    Subscribe,    MUST,     SAME),
    (BOTH,        Subscribe,    MUST,     SAME),
    // A.2.2 subscribed (no pre-approval: the "pre-approval" rows are plain "no change").
    (NONE,        Subscribed,   MUST_NOT, SAME),
    (NONE_OUT,    Subscribed,   MUST_NOT, SAME),
    (NONE_IN,     Subscribed,   MUST,     to(FROM)),
    (NONE_OUT_IN, Subscribed,   MUST,     to(FROM_OUT)),
    (TO,          Subscribed,   MUST_NOT, SAME),
    (TO_IN,       Subscribed,   MUST,     to(BOTH)),
    (FROM,        Subscribed,   MUST_NOT, SAME),
    (FROM_OUT,    Subscribed,   MUST_NOT, SAME),
    (BOTH,        Subscribed,   MUST_NOT, SAME),
    // A.2.3 unsubscribe: routed without exception.
    (NONE,        Unsubscribe,  MUST,     SAME),
    (NONE_OUT,    Unsubscribe,  MUST,     to(NONE)),
    (NONE_IN,     Unsubscribe,  MUST,     SAME),
    (NONE_OUT_IN, Unsubscribe,  MUST,     to(NONE_IN)),
    (TO,          Unsubscribe,  MUST,     to(NONE)),
    (TO_IN,       Unsubscribe,  MUST,     to(NONE_IN)),
    (FROM,        Unsubscribe,  MUST,     SAME),
    (FROM_OUT,    Unsubscribe,  MUST,     to(FROM)),
    (BOTH,        Unsubscribe,  MUST,     to(FROM)),
    // A.2.4 unsubscribed.
    (NONE,        Unsubscribed, MUST_NOT, SAME),
    (NONE_OUT,    Unsubscribed, MUST_NOT, SAME),
    (NONE_IN,     Unsubscribed, MUST,     to(NONE)),
    (NONE_OUT_IN, Unsubscribed, MUST,     to(NONE_OUT)),
    (TO,          Unsubscribed, MUST_NOT, SAME),
    (TO_IN,       Unsubscribed, MUST,     to(TO)),
    (FROM,        Unsubscribed, MUST,     to(NONE)),
    (FROM_OUT,    Unsubscribed, MUST,     to(NONE_OUT)),
    (BOTH,        Unsubscribed, MUST,     to(TO)),
];

const AUTO_SUBSCRIBED: Option<SubscriptionKind> = Some(Subscribed);

/// One row of A.3: existing state, stanza, DELIVER?, new state, the server's auto-reply.
type InboundRow = (
    SubscriptionState,
    SubscriptionKind,
    bool,
    Option<SubscriptionState>,
    Option<SubscriptionKind>,
);

/// A.3. Every state change is stored and pushed to the contact's resources.
#[rustfmt::skip]
const INBOUND: [InboundRow; 36] = [
    // A.3.1 subscribe.
    (NONE,        Subscribe,    MUST,       to(NONE_IN),     None),
    (NONE_OUT,    Subscribe,    MUST,       to(NONE_OUT_IN), None),
    (NONE_IN,     Subscribe,    SHOULD_NOT, SAME,            None),
    (NONE_OUT_IN, Subscribe,    SHOULD_NOT, SAME,            None),
    (TO,          Subscribe,    MUST,       to(TO_IN),       None),
    (TO_IN,       Subscribe,    SHOULD_NOT, SAME,            None),
    (FROM,        Subscribe,    SHOULD_NOT, SAME,            AUTO_SUBSCRIBED),
    (FROM_OUT,    Subscribe,    SHOULD_NOT, SAME,            AUTO_SUBSCRIBED),
    (BOTH,        Subscribe,    SHOULD_NOT, SAME,            AUTO_SUBSCRIBED),
    // A.3.2 subscribed.
    (NONE,        Subscribed,   MUST_NOT,   SAME,            None),
    (NONE_OUT,    Subscribed,   MUST,       to(TO),          None),
    (NONE_IN,     Subscribed,   MUST_NOT,   SAME,            None),
    (NONE_OUT_IN, Subscribed,   MUST,       to(TO_IN),       None),
    (TO,          Subscribed,   MUST_NOT,   SAME,            None),
    (TO_IN,       Subscribed,   MUST_NOT,   SAME,            None),
    (FROM,        Subscribed,   MUST_NOT,   SAME,            None),
    (FROM_OUT,    Subscribed,   MUST,       to(BOTH),        None),
    (BOTH,        Subscribed,   MUST_NOT,   SAME,            None),
    // A.3.3 unsubscribe.
    (NONE,        Unsubscribe,  MUST_NOT,   SAME,            None),
    (NONE_OUT,    Unsubscribe,  MUST_NOT,   SAME,            None),
    (NONE_IN,     Unsubscribe,  MUST,       to(NONE),        None),
    (NONE_OUT_IN, Unsubscribe,  MUST,       to(NONE_OUT),    None),
    (TO,          Unsubscribe,  MUST_NOT,   SAME,            None),
    (TO_IN,       Unsubscribe,  MUST,       to(TO),          None),
    (FROM,        Unsubscribe,  MUST,       to(NONE),        None),
    (FROM_OUT,    Unsubscribe,  MUST,       to(NONE_OUT),    None),
    (BOTH,        Unsubscribe,  MUST,       to(TO),          None),
    // A.3.4 unsubscribed.
    (NONE,        Unsubscribed, MUST_NOT,   SAME,            None),
    (NONE_OUT,    Unsubscribed, MUST,       to(NONE),        None),
    (NONE_IN,     Unsubscribed, MUST_NOT,   SAME,            None),
    (NONE_OUT_IN, Unsubscribed, MUST,       to(NONE_IN),     None),
    (TO,          Unsubscribed, MUST,       to(NONE),        None),
    (TO_IN,       Unsubscribed, MUST,       to(NONE_IN),     None),
    (FROM,        Unsubscribed, MUST_NOT,   SAME,            None),
    (FROM_OUT,    Unsubscribed, MUST,       to(FROM),        None),
    (BOTH,        Unsubscribed, MUST,       to(FROM),        None),
];

const KINDS: [SubscriptionKind; 4] = [Subscribe, Subscribed, Unsubscribe, Unsubscribed];

#[test]
fn outbound_follows_appendix_a2() {
    for (existing, kind, route, new) in OUTBOUND {
        let result = outbound(existing, kind);
        let row = format!("outbound {} from {existing:?}", kind.as_str());
        assert_eq!(result.state, new.unwrap_or(existing), "{row}: new state");
        assert_eq!(result.route, route, "{row}: route");
        assert_eq!(result.changed, new.is_some(), "{row}: changed");
    }
}

#[test]
fn inbound_follows_appendix_a3() {
    for (existing, kind, deliver, new, auto_reply) in INBOUND {
        let result = inbound(existing, kind);
        let row = format!("inbound {} to {existing:?}", kind.as_str());
        assert_eq!(result.state, new.unwrap_or(existing), "{row}: new state");
        assert_eq!(result.deliver, deliver, "{row}: deliver");
        assert_eq!(result.changed, new.is_some(), "{row}: changed");
        assert_eq!(result.auto_reply, auto_reply, "{row}: auto-reply");
    }
}

#[test]
fn the_tables_cover_every_state_and_kind_once() {
    for kind in KINDS {
        for state in SubscriptionState::ALL {
            let outbound_rows = OUTBOUND
                .iter()
                .filter(|row| row.0 == state && row.1 == kind)
                .count();
            let inbound_rows = INBOUND
                .iter()
                .filter(|row| row.0 == state && row.1 == kind)
                .count();
            assert_eq!((outbound_rows, inbound_rows), (1, 1), "{kind:?} {state:?}");
        }
    }
}

#[test]
fn the_nine_states_are_exactly_the_valid_ones() {
    let subscriptions = [
        Subscription::None,
        Subscription::To,
        Subscription::From,
        Subscription::Both,
    ];
    let mut valid = Vec::new();
    for subscription in subscriptions {
        for pending_out in [false, true] {
            for pending_in in [false, true] {
                let state = SubscriptionState::new(subscription, pending_out, pending_in);
                if state.is_valid() {
                    valid.push(state);
                }
            }
        }
    }
    assert_eq!(valid.len(), 9);
    assert!(valid
        .iter()
        .all(|state| SubscriptionState::ALL.contains(state)));
    assert_eq!(
        SubscriptionState::ALL,
        [
            NONE,
            NONE_OUT,
            NONE_IN,
            NONE_OUT_IN,
            TO,
            TO_IN,
            FROM,
            FROM_OUT,
            BOTH
        ]
    );
    assert_eq!(SubscriptionState::default(), NONE);
}

#[test]
fn every_transition_from_a_valid_state_is_valid() {
    for kind in KINDS {
        for state in SubscriptionState::ALL {
            assert!(outbound(state, kind).state.is_valid(), "{kind:?} {state:?}");
            assert!(inbound(state, kind).state.is_valid(), "{kind:?} {state:?}");
            for other in SubscriptionState::ALL {
                let exchange = between_local(state, other, kind);
                assert!(
                    exchange.user_side.is_valid(),
                    "{kind:?} {state:?} {other:?}"
                );
                assert!(
                    exchange.contact_side.is_valid(),
                    "{kind:?} {state:?} {other:?}"
                );
                // "Changed" is exactly "must be stored": no pending flag is ever lost.
                assert_eq!(exchange.user_changed, exchange.user_side != state);
                assert_eq!(exchange.contact_changed, exchange.contact_side != other);
            }
        }
    }
}

#[test]
fn invalid_stored_states_are_normalized_not_kept() {
    // To + pending out cannot happen: the request was granted. Older rows may hold it.
    let stale = SubscriptionState::new(Subscription::To, true, false);
    assert!(!stale.is_valid());
    assert_eq!(stale.normalized(), TO);
    let result = outbound(stale, Subscribe);
    assert_eq!(result.state, TO);
    assert!(
        result.changed,
        "the stale ask='subscribe' must leave the client's roster"
    );
    for kind in KINDS {
        for subscription in [Subscription::To, Subscription::From, Subscription::Both] {
            let odd = SubscriptionState::new(subscription, true, true);
            assert!(outbound(odd, kind).state.is_valid());
            assert!(inbound(odd, kind).state.is_valid());
        }
    }
}

#[test]
fn a_subscribes_to_b_and_b_approves_so_a_sees_b() {
    // A sends subscribe: A asks, B gets the request.
    let first = between_local(NONE, NONE, Subscribe);
    assert_eq!((first.user_side, first.contact_side), (NONE_OUT, NONE_IN));
    assert!(first.user_changed);
    assert!(first.contact_changed, "B's side must store the request");
    assert_eq!(first.deliver_to_contact, Some(Subscribe));
    assert_eq!(first.deliver_to_user, None);
    assert_eq!(first.presence, PresenceEffect::None);

    // B approves: B is the sender now, A the contact.
    let second = between_local(first.contact_side, first.user_side, Subscribed);
    assert_eq!((second.user_side, second.contact_side), (FROM, TO));
    assert!(second.user_changed && second.contact_changed);
    assert_eq!(second.deliver_to_contact, Some(Subscribed));
    assert_eq!(second.deliver_to_user, None);
    assert_eq!(
        second.presence,
        PresenceEffect::UserToContact,
        "B's presence goes to A"
    );

    // A asking again changes nothing: A already sees B.
    let third = between_local(second.contact_side, second.user_side, Subscribe);
    assert_eq!((third.user_side, third.contact_side), (TO, FROM));
    assert_eq!(
        (third.deliver_to_contact, third.deliver_to_user),
        (None, None)
    );

    // B asks in turn and A approves, completing "both".
    let fourth = between_local(second.user_side, second.contact_side, Subscribe);
    assert_eq!((fourth.user_side, fourth.contact_side), (FROM_OUT, TO_IN));
    assert_eq!(fourth.deliver_to_contact, Some(Subscribe));
    let fifth = between_local(fourth.contact_side, fourth.user_side, Subscribed);
    assert_eq!((fifth.user_side, fifth.contact_side), (BOTH, BOTH));
    assert_eq!(fifth.presence, PresenceEffect::UserToContact);
}

#[test]
fn b_denies_the_request_and_nothing_is_left_pending() {
    let asked = between_local(NONE, NONE, Subscribe);
    let denied = between_local(asked.contact_side, asked.user_side, Unsubscribed);
    assert_eq!((denied.user_side, denied.contact_side), (NONE, NONE));
    assert!(denied.user_changed, "B's stored request goes away");
    assert!(denied.contact_changed, "A's ask='subscribe' goes away");
    assert_eq!(denied.deliver_to_contact, Some(Unsubscribed));
    assert_eq!(denied.presence, PresenceEffect::None, "A never saw B");
}

#[test]
fn simultaneous_requests_end_in_both() {
    let a_asks = between_local(NONE, NONE, Subscribe);
    let (a, b) = (a_asks.user_side, a_asks.contact_side);
    // B asks before answering: both sides now have a request each way.
    let b_asks = between_local(b, a, Subscribe);
    assert_eq!(
        (b_asks.user_side, b_asks.contact_side),
        (NONE_OUT_IN, NONE_OUT_IN)
    );
    assert_eq!(b_asks.deliver_to_contact, Some(Subscribe));
    assert!(b_asks.user_changed && b_asks.contact_changed);
    let (b, a) = (b_asks.user_side, b_asks.contact_side);

    let a_approves = between_local(a, b, Subscribed);
    assert_eq!(
        (a_approves.user_side, a_approves.contact_side),
        (FROM_OUT, TO_IN)
    );
    assert_eq!(a_approves.presence, PresenceEffect::UserToContact);
    let (a, b) = (a_approves.user_side, a_approves.contact_side);

    let b_approves = between_local(b, a, Subscribed);
    assert_eq!(
        (b_approves.user_side, b_approves.contact_side),
        (BOTH, BOTH)
    );
    assert!(b_approves.user_changed && b_approves.contact_changed);
    assert_eq!(b_approves.deliver_to_contact, Some(Subscribed));
    assert_eq!(b_approves.presence, PresenceEffect::UserToContact);
}

#[test]
fn unsubscribe_then_unsubscribed_from_both_ends_in_none() {
    // A stops watching B: B's presence goes away for A.
    let stop = between_local(BOTH, BOTH, Unsubscribe);
    assert_eq!((stop.user_side, stop.contact_side), (FROM, TO));
    assert!(stop.user_changed && stop.contact_changed);
    assert_eq!(stop.deliver_to_contact, Some(Unsubscribe));
    assert_eq!(stop.presence, PresenceEffect::ContactGoneForUser);

    // A then stops B from watching A: A's presence goes away for B.
    let cancel = between_local(stop.user_side, stop.contact_side, Unsubscribed);
    assert_eq!((cancel.user_side, cancel.contact_side), (NONE, NONE));
    assert!(cancel.user_changed && cancel.contact_changed);
    assert_eq!(cancel.deliver_to_contact, Some(Unsubscribed));
    assert_eq!(cancel.presence, PresenceEffect::UserGoneForContact);

    // Once more changes nothing and delivers nothing.
    for kind in [Unsubscribe, Unsubscribed] {
        let again = between_local(NONE, NONE, kind);
        assert_eq!((again.user_side, again.contact_side), (NONE, NONE));
        assert!(!again.user_changed && !again.contact_changed);
        assert_eq!(again.deliver_to_contact, None);
        assert_eq!(again.presence, PresenceEffect::None);
    }
}

#[test]
fn unsubscribed_from_both_is_the_mirror_image() {
    let cancel = between_local(BOTH, BOTH, Unsubscribed);
    assert_eq!((cancel.user_side, cancel.contact_side), (TO, FROM));
    assert_eq!(cancel.presence, PresenceEffect::UserGoneForContact);
    let stop = between_local(cancel.user_side, cancel.contact_side, Unsubscribe);
    assert_eq!((stop.user_side, stop.contact_side), (NONE, NONE));
    assert_eq!(stop.presence, PresenceEffect::ContactGoneForUser);
}

#[test]
fn subscribe_when_the_contact_already_allows_it_is_answered_by_the_server() {
    // The rosters disagree: B lets A see B, A's roster lost it. A asks again.
    let exchange = between_local(NONE, FROM, Subscribe);
    assert_eq!((exchange.user_side, exchange.contact_side), (TO, FROM));
    assert!(exchange.user_changed && !exchange.contact_changed);
    assert_eq!(exchange.deliver_to_contact, None, "B is not asked again");
    assert_eq!(exchange.deliver_to_user, Some(Subscribed));
    assert_eq!(exchange.presence, PresenceEffect::ContactToUser);

    // A already had the request out: same answer.
    let exchange = between_local(NONE_OUT, FROM, Subscribe);
    assert_eq!((exchange.user_side, exchange.contact_side), (TO, FROM));
    assert_eq!(exchange.deliver_to_user, Some(Subscribed));

    // In sync and already subscribed: routed, answered, but nothing to deliver or push.
    let exchange = between_local(BOTH, BOTH, Subscribe);
    assert_eq!((exchange.user_side, exchange.contact_side), (BOTH, BOTH));
    assert!(!exchange.user_changed && !exchange.contact_changed);
    assert_eq!(exchange.deliver_to_contact, None);
    assert_eq!(exchange.deliver_to_user, None);
    assert_eq!(exchange.presence, PresenceEffect::None);
}

#[test]
fn a_repeated_request_is_not_delivered_again() {
    let exchange = between_local(NONE_OUT, NONE_IN, Subscribe);
    assert_eq!(
        (exchange.user_side, exchange.contact_side),
        (NONE_OUT, NONE_IN)
    );
    assert!(!exchange.user_changed && !exchange.contact_changed);
    assert_eq!(exchange.deliver_to_contact, None);
}

#[test]
fn an_approval_nobody_asked_for_goes_nowhere() {
    // B approves although A has no request on record on either side.
    let exchange = between_local(NONE, NONE, Subscribed);
    assert_eq!((exchange.user_side, exchange.contact_side), (NONE, NONE));
    assert_eq!(exchange.deliver_to_contact, None);
    assert_eq!(exchange.presence, PresenceEffect::None);
    // A thinks it asked, B has no request: not routed (no pre-approval), A keeps asking.
    let exchange = between_local(NONE, NONE_OUT, Subscribed);
    assert_eq!(
        (exchange.user_side, exchange.contact_side),
        (NONE, NONE_OUT)
    );
    assert_eq!(exchange.deliver_to_contact, None);
}

#[test]
fn kinds_and_subscriptions_round_trip_their_names() {
    for kind in KINDS {
        assert_eq!(SubscriptionKind::parse(kind.as_str()), Some(kind));
    }
    for other in ["", "probe", "unavailable", "error", "Subscribe"] {
        assert_eq!(SubscriptionKind::parse(other), None, "{other}");
    }
    for subscription in [
        Subscription::None,
        Subscription::To,
        Subscription::From,
        Subscription::Both,
    ] {
        assert_eq!(
            Subscription::parse(subscription.as_str()),
            Some(subscription)
        );
        assert_eq!(
            subscription.with_to(subscription.has_to()),
            subscription,
            "with_to keeps what is there"
        );
        assert_eq!(
            subscription.with_to(true).has_from(),
            subscription.has_from()
        );
        assert_eq!(
            subscription.with_from(false).has_to(),
            subscription.has_to()
        );
    }
    assert_eq!(Subscription::parse("remove"), None);
}
