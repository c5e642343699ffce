//! XEP-0352: while the client says it is inactive, presences and chat states wait; anything
//! urgent, or the client becoming active, sends them first and in order.

mod common;

use common::*;
use xmpp_proto::c2s::{C2sConfig, Output};
use xmpp_proto::csi::Urgency;
use xmpp_proto::sm::SmState;

const PRESENCE_A1: &str = "<presence from='8-42@chat.example.com/a'><status>1</status></presence>";
const PRESENCE_A2: &str = "<presence from='8-42@chat.example.com/a'><status>2</status></presence>";
const PRESENCE_B: &str = "<presence from='9-42@chat.example.com/b'/>";
const COMPOSING: &str = "<message from='8-42@chat.example.com/a' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>";
const MESSAGE: &str =
    "<message from='8-42@chat.example.com/a' type='chat'><body>wake up</body></message>";

fn inactive() -> String {
    format!("<inactive xmlns='{NS_CSI}'/>")
}

fn active() -> String {
    format!("<active xmlns='{NS_CSI}'/>")
}

fn coalesce(key: &str) -> Urgency {
    Urgency::Coalesce(key.to_string())
}

#[test]
fn inactive_client_gets_held_stanzas_before_an_urgent_one() {
    let mut client = Client::tcp_bound(tcp_config());
    let out = client.send(&inactive());
    assert!(
        matches!(out.as_slice(), [Output::ClientState { active: false }]),
        "{out:?}"
    );

    assert!(client.deliver(PRESENCE_A1, coalesce("a")).is_empty());
    assert!(client.deliver(COMPOSING, Urgency::Defer).is_empty());

    let out = client.deliver(MESSAGE, Urgency::Urgent);
    assert_eq!(sends(&out), [PRESENCE_A1, COMPOSING, MESSAGE]);
}

#[test]
fn becoming_active_flushes_in_order_with_the_latest_presence_per_key() {
    let mut client = Client::tcp_bound(tcp_config());
    client.send(&inactive());
    assert!(client.deliver(PRESENCE_A1, coalesce("a")).is_empty());
    assert!(client.deliver(PRESENCE_B, coalesce("b")).is_empty());
    assert!(client.deliver(COMPOSING, Urgency::Defer).is_empty());
    assert!(client.deliver(PRESENCE_A2, coalesce("a")).is_empty());

    let out = client.send(&active());
    assert_eq!(sends(&out), [PRESENCE_B, COMPOSING, PRESENCE_A2]);
    assert!(
        matches!(out.last(), Some(Output::ClientState { active: true })),
        "{out:?}"
    );

    // Active again: everything goes straight out.
    assert_eq!(
        sends(&client.deliver(PRESENCE_A1, coalesce("a"))),
        [PRESENCE_A1]
    );
}

#[test]
fn held_queue_is_bounded() {
    let mut client = Client::tcp_bound(C2sConfig {
        csi_max_held: 2,
        ..tcp_config()
    });
    client.send(&inactive());
    assert!(client.deliver(COMPOSING, Urgency::Defer).is_empty());
    assert!(client.deliver(PRESENCE_A1, coalesce("a")).is_empty());
    let out = client.deliver(PRESENCE_B, coalesce("b"));
    assert_eq!(sends(&out), [COMPOSING, PRESENCE_A1, PRESENCE_B]);
}

#[test]
fn held_stanzas_are_counted_for_stream_management_when_sent() {
    let mut client = Client::tcp_bound(tcp_config());
    client.enable_sm(false);
    client.send(&inactive());
    client.deliver(PRESENCE_A1, coalesce("a"));
    client.deliver(PRESENCE_A2, coalesce("a"));
    assert_eq!(client.stream.sm().map(SmState::unacked_count), Some(0));
    client.send(&active());
    // The replaced presence was never sent, so it is not counted either.
    assert_eq!(client.stream.sm().map(SmState::unacked_count), Some(1));
}

#[test]
fn websocket_frames_held_stanzas_too() {
    let mut client = Client::ws_bound(ws_config());
    client.send(&format!("<inactive xmlns='{NS_CSI}'/>"));
    client.deliver(PRESENCE_B, coalesce("b"));
    let out = client.send(&format!("<active xmlns='{NS_CSI}'/>"));
    assert_eq!(
        sends(&out),
        ["<presence xmlns='jabber:client' from='9-42@chat.example.com/b'/>"]
    );
}

#[test]
fn overflowing_the_unacked_queue_during_a_flush_closes_once() {
    let mut client = Client::tcp_bound(C2sConfig {
        sm_max_unacked: 2,
        ..tcp_config()
    });
    client.enable_sm(true);
    client.send(&inactive());
    client.deliver(PRESENCE_A1, coalesce("a"));
    client.deliver(PRESENCE_B, coalesce("b"));
    client.deliver(COMPOSING, Urgency::Defer);
    let out = client.deliver(MESSAGE, Urgency::Urgent);
    let texts = sends(&out);
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.starts_with("<stream:error"))
            .count(),
        1,
        "{texts:?}"
    );
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Output::Close { .. }))
            .count(),
        1,
        "{out:?}"
    );
    assert!(!texts.iter().any(|t| t == MESSAGE), "{texts:?}");
    assert_stream_error(
        &client,
        &out,
        xmpp_proto::errors::StreamErrorCondition::ResourceConstraint,
    );
    // Nothing accepted for the client is lost: what was neither written nor counted comes
    // back to the shell, in order, and so does what is routed after the close.
    client.stream.deliver(BODY_AFTER_CLOSE, Urgency::Urgent);
    let written: Vec<&String> = texts
        .iter()
        .filter(|t| {
            !t.starts_with("<stream:error") && !t.starts_with("<r ") && !t.starts_with("</stream")
        })
        .collect();
    let kept: Vec<String> = client
        .stream
        .take_held()
        .into_iter()
        .map(|b| String::from_utf8(b).unwrap())
        .collect();
    let mut all: Vec<String> = written.into_iter().cloned().collect();
    all.extend(kept);
    assert_eq!(
        all,
        [
            PRESENCE_A1,
            PRESENCE_B,
            COMPOSING,
            MESSAGE,
            BODY_AFTER_CLOSE
        ],
        "every delivered stanza is either written or handed back"
    );
}

const BODY_AFTER_CLOSE: &str =
    "<message to='9-42@chat.example.com/b' type='chat'><body>late</body></message>";

#[test]
fn overflowing_the_unacked_queue_when_becoming_active_closes_once() {
    let mut client = Client::tcp_bound(C2sConfig {
        sm_max_unacked: 1,
        ..tcp_config()
    });
    client.enable_sm(true);
    client.send(&inactive());
    client.deliver(PRESENCE_A1, coalesce("a"));
    client.deliver(PRESENCE_B, coalesce("b"));
    client.deliver(COMPOSING, Urgency::Defer);
    let out = client.send(&active());
    assert_stream_error(
        &client,
        &out,
        xmpp_proto::errors::StreamErrorCondition::ResourceConstraint,
    );
}
