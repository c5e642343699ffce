//! XEP-0198 on a client stream: enabling, acking both ways, the server's ack requests, and
//! resuming a stream with exactly the stanzas the client never acknowledged.

mod common;

use common::*;
use xmpp_proto::c2s::{C2sConfig, Input, Output};
use xmpp_proto::csi::Urgency;
use xmpp_proto::errors::StreamErrorCondition;
use xmpp_proto::sm::SmState;
use xmpp_proto::Element;

fn r() -> String {
    format!("<r xmlns='{NS_SM}'/>")
}

fn a(h: u32) -> String {
    format!("<a xmlns='{NS_SM}' h='{h}'/>")
}

fn message(n: u32) -> String {
    format!("<message from='8-42@chat.example.com/x' id='m{n}'><body>{n}</body></message>")
}

fn enable_output(out: &[Output]) -> (bool, String) {
    out.iter()
        .find_map(|o| match o {
            Output::EnableSm { resumable, id } => Some((*resumable, id.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no EnableSm in {out:?}"))
}

#[test]
fn enable_without_resumption() {
    let mut client = Client::tcp_bound(tcp_config());
    let out = client.enable_sm(false);
    assert_eq!(sends(&out), [format!("<enabled xmlns='{NS_SM}'/>")]);
    assert!(!enable_output(&out).0);
    assert!(client.stream.sm().is_some_and(|sm| !sm.resumable()));
}

#[test]
fn enable_with_resumption() {
    let mut client = Client::tcp_bound(tcp_config());
    let out = client.enable_sm(true);
    let (resumable, id) = enable_output(&out);
    assert!(resumable);
    // The third stream of the connection (initial, after TLS, after SASL).
    assert_eq!(id, "seedsm3");
    assert_eq!(
        sends(&out),
        [format!(
            "<enabled xmlns='{NS_SM}' id='seedsm3' resume='true'/>"
        )]
    );
    assert!(client.stream.sm().is_some_and(SmState::resumable));
}

#[test]
fn resumption_disabled_in_config_enables_without_resume() {
    let mut client = Client::tcp_bound(C2sConfig {
        sm_resumption: false,
        ..tcp_config()
    });
    let out = client.enable_sm(true);
    assert_eq!(sends(&out), [format!("<enabled xmlns='{NS_SM}'/>")]);
    assert!(!enable_output(&out).0);
}

#[test]
fn enable_before_bind_or_twice_fails_without_closing() {
    let mut client = Client::tcp_authenticated(tcp_config());
    let out = client.enable_sm(false);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(sends(&out)[0].starts_with(&format!("<failed xmlns='{NS_SM}'>")));
    assert!(client.stream.sm().is_none());

    client.bind(false);
    client.enable_sm(false);
    let out = client.enable_sm(true);
    assert!(sends(&out)[0].starts_with(&format!("<failed xmlns='{NS_SM}'>")));
    assert!(!client.stream.is_closed());
}

#[test]
fn r_is_answered_with_every_stanza_since_enable() {
    let mut client = Client::tcp_bound(tcp_config());
    // Stanzas before <enable/> are not counted (XEP-0198 §4: counters start at enable).
    client.send("<presence/>");

    client.enable_sm(false);
    assert_eq!(sends(&client.send(&r())), [a(0)]);

    // Messages, presences and iqs all count, including the session iq the core answers itself;
    // nonzas (<r/>, <a/>, CSI) do not.
    client.send(&session_iq("s1"));
    client.send("<message to='8-42@chat.example.com'><body>x</body></message>");
    client.send(&format!("<inactive xmlns='{NS_CSI}'/>"));
    client.send(&format!("<active xmlns='{NS_CSI}'/>"));
    client.send("<presence/><iq type='get' id='q1' to='chat.example.com'><query xmlns='jabber:iq:roster'/></iq>");
    assert_eq!(sends(&client.send(&r())), [a(4)]);
    assert_eq!(sends(&client.send(&r())), [a(4)]);
}

#[test]
fn r_without_stream_management_fails_politely() {
    let mut client = Client::tcp_bound(tcp_config());
    let out = client.send(&r());
    assert!(sends(&out)[0].starts_with(&format!("<failed xmlns='{NS_SM}'>")));
    assert!(!client.stream.is_closed());
}

#[test]
fn acks_release_sent_stanzas() {
    let mut client = Client::tcp_bound(tcp_config());
    client.enable_sm(true);
    for n in 1..=3 {
        client.deliver(&message(n), Urgency::Urgent);
    }
    assert_eq!(client.stream.sm().map(SmState::unacked_count), Some(3));
    assert!(client.send(&a(2)).is_empty());
    assert_eq!(client.stream.sm().map(SmState::unacked_count), Some(1));
    // A stale ack is harmless.
    assert!(client.send(&a(1)).is_empty());
    assert!(client.send(&a(3)).is_empty());
    assert_eq!(client.stream.sm().map(SmState::unacked_count), Some(0));
    assert_eq!(
        client.take_sm_unacked(),
        Vec::<String>::new(),
        "everything was acknowledged"
    );
}

#[test]
fn ack_higher_than_sent_is_handled_count_too_high() {
    let mut client = Client::tcp_bound(tcp_config());
    client.enable_sm(false);
    for n in 1..=3 {
        client.deliver(&message(n), Urgency::Urgent);
    }
    client.send(&a(2));
    let out = client.send(&a(5));
    let texts = sends(&out);
    // XEP-0198 §6: h as received, send-count the number of stanzas the server sent (3), not
    // the number still unacknowledged (1).
    assert_eq!(
        texts[0],
        format!(
            "<stream:error><undefined-condition xmlns='{NS_STREAMS}'/>\
             <handled-count-too-high xmlns='{NS_SM}' h='5' send-count='3'/></stream:error>"
        )
    );
    assert_stream_error(&client, &out, StreamErrorCondition::UndefinedCondition);
}

#[test]
fn handled_count_too_high_on_websocket_is_a_well_formed_message() {
    let mut client = Client::ws_bound(ws_config());
    client.send(&format!("<enable xmlns='{NS_SM}'/>"));
    client.deliver(&message(1), Urgency::Urgent);
    let out = client.send(&a(2));
    let texts = sends(&out);
    let error = Element::parse(&texts[0], None).expect("the stream prefix is declared");
    assert_eq!(error.name(), "error");
    assert!(error.child("handled-count-too-high", NS_SM).is_some());
    assert_stream_error(&client, &out, StreamErrorCondition::UndefinedCondition);
}

#[test]
fn a_without_numeric_h_is_bad_format() {
    let mut client = Client::tcp_bound(tcp_config());
    client.enable_sm(false);
    let out = client.send(&format!("<a xmlns='{NS_SM}' h='many'/>"));
    assert_stream_error(&client, &out, StreamErrorCondition::BadFormat);
}

#[test]
fn server_requests_an_ack_every_five_unacked_stanzas_on_resumable_streams() {
    let mut client = Client::tcp_bound(tcp_config());
    client.enable_sm(true);
    let mut texts = Vec::new();
    for n in 1..=10 {
        texts.extend(sends(&client.deliver(&message(n), Urgency::Urgent)));
    }
    let mut expected: Vec<String> = (1..=5).map(message).collect();
    expected.push(r());
    expected.extend((6..=10).map(message));
    expected.push(r());
    assert_eq!(texts, expected);

    // The count is of unacknowledged stanzas: after an ack it starts again.
    client.send(&a(10));
    let mut texts = Vec::new();
    for n in 11..=15 {
        texts.extend(sends(&client.deliver(&message(n), Urgency::Urgent)));
    }
    assert_eq!(texts.last(), Some(&r()));
    assert_eq!(texts.len(), 6);
}

#[test]
fn no_ack_requests_without_resumption() {
    // The QuickBlox SDK under-counts when asked; non-resumable streams never ask.
    let mut client = Client::tcp_bound(tcp_config());
    client.enable_sm(false);
    for n in 1..=10 {
        let out = client.deliver(&message(n), Urgency::Urgent);
        assert_eq!(sends(&out), [message(n)]);
    }
}

#[test]
fn unacked_queue_overflow_closes_with_resource_constraint() {
    let mut client = Client::tcp_bound(C2sConfig {
        sm_max_unacked: 3,
        ..tcp_config()
    });
    client.enable_sm(true);
    for n in 1..=3 {
        client.deliver(&message(n), Urgency::Urgent);
    }
    let out = client.deliver(&message(4), Urgency::Urgent);
    assert!(!sends(&out).contains(&message(4)));
    assert_stream_error(&client, &out, StreamErrorCondition::ResourceConstraint);
}

/// A first connection that enabled resumption, received `m1..m5`, acked `m1..m2`, sent two
/// stanzas, and then dropped. Returns its stream-management state, as the shell keeps it.
fn dropped_session() -> SmState {
    let mut client = Client::tcp_bound(tcp_config());
    client.enable_sm(true);
    client.send("<presence/>");
    client.send("<message to='8-42@chat.example.com'><body>x</body></message>");
    for n in 1..=5 {
        client.deliver(&message(n), Urgency::Urgent);
    }
    client.send(&a(2));
    client.input(Input::Eof);
    client
        .stream
        .take_sm()
        .expect("stream management was enabled")
}

#[test]
fn resume_resends_exactly_the_unacked_stanzas_in_order() {
    let old = dropped_session();
    assert_eq!(old.unacked_count(), 3);

    let mut client = Client::tcp_authenticated(tcp_config());
    // The client got m3 before the connection dropped but could not ack it.
    let out = client.send(&format!("<resume xmlns='{NS_SM}' previd='seedsm3' h='3'/>"));
    assert!(
        matches!(out.as_slice(), [Output::Resume { previd, h: 3 }] if previd == "seedsm3"),
        "{out:?}"
    );
    let out = client.input(Input::ResumeResult(Some((full("phone"), old))));
    assert_eq!(
        sends(&out),
        [
            format!("<resumed xmlns='{NS_SM}' h='2' previd='seedsm3'/>"),
            message(4),
            message(5),
        ]
    );
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(client.stream.jid(), Some(&full("phone")));

    // The counters carry on: inbound from 2, outbound with m4 and m5 awaiting an ack.
    client.send("<presence/>");
    assert_eq!(sends(&client.send(&r())), [a(3)]);
    assert_eq!(client.stream.sm().map(SmState::unacked_count), Some(2));
    assert!(client.send(&a(5)).is_empty());
    assert_eq!(client.stream.sm().map(SmState::unacked_count), Some(0));
    // And stanzas flow again.
    let out = client.send("<message to='8-42@chat.example.com'><body>y</body></message>");
    assert!(matches!(out.as_slice(), [Output::Stanza(_)]), "{out:?}");
}

#[test]
fn resume_onto_websocket_frames_the_resent_stanzas() {
    let old = dropped_session();
    let mut client = Client::ws_authenticated(ws_config());
    client.send(&format!("<resume xmlns='{NS_SM}' previd='seedsm3' h='4'/>"));
    let out = client.input(Input::ResumeResult(Some((full("phone"), old))));
    assert_eq!(
        sends(&out)[1..],
        [message(5).replacen("<message", "<message xmlns='jabber:client'", 1)]
    );
}

#[test]
fn failed_resume_leaves_bind_open() {
    let mut client = Client::tcp_authenticated(tcp_config());
    let out = client.send(&format!("<resume xmlns='{NS_SM}' previd='gone' h='0'/>"));
    assert!(matches!(out.as_slice(), [Output::Resume { .. }]), "{out:?}");
    let out = client.input(Input::ResumeResult(None));
    assert_eq!(
        sends(&out),
        [format!(
            "<failed xmlns='{NS_SM}'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
        )]
    );
    assert_eq!(client.stream.jid(), None);
    client.bind(false);
    let (resumable, id) = enable_output(&client.enable_sm(true));
    assert!(resumable);
    assert_eq!(id, "seedsm3");
}

#[test]
fn resume_without_previd_or_h_fails_without_asking_the_shell() {
    let mut client = Client::tcp_authenticated(tcp_config());
    let out = client.send(&format!("<resume xmlns='{NS_SM}' h='1'/>"));
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(sends(&out)[0].starts_with(&format!("<failed xmlns='{NS_SM}'>")));
    client.bind(false);
}

#[test]
fn resume_with_h_higher_than_sent_is_handled_count_too_high_and_not_resumed() {
    let old = dropped_session(); // 5 sent
    let mut client = Client::tcp_authenticated(tcp_config());
    client.send(&format!("<resume xmlns='{NS_SM}' previd='seedsm3' h='9'/>"));
    let out = client.input(Input::ResumeResult(Some((full("phone"), old))));
    let texts = sends(&out);
    assert!(
        !texts.iter().any(|t| t.starts_with("<resumed")),
        "a stream that is about to fail must not be announced as resumed: {texts:?}"
    );
    assert!(
        texts[0].contains(&format!(
            "<handled-count-too-high xmlns='{NS_SM}' h='9' send-count='5'/>"
        )),
        "{texts:?}"
    );
    assert_stream_error(&client, &out, StreamErrorCondition::UndefinedCondition);
}

trait TakeUnacked {
    fn take_sm_unacked(&mut self) -> Vec<String>;
}

impl TakeUnacked for Client {
    fn take_sm_unacked(&mut self) -> Vec<String> {
        self.stream
            .take_sm()
            .map(SmState::into_unacked)
            .unwrap_or_default()
            .into_iter()
            .map(|s| String::from_utf8(s).expect("UTF-8"))
            .collect()
    }
}

#[test]
fn a_clean_close_ends_resumability_but_keeps_the_unacknowledged() {
    let mut client = Client::tcp_bound(tcp_config());
    client.enable_sm(true);
    client.deliver(&message(1), Urgency::Urgent);
    // XEP-0198 §5: `</stream:stream>` from the client is a logout, not a dropped connection.
    let out = client.send("</stream:stream>");
    assert_eq!(close(&out), Some(None));
    let sm = client.stream.take_sm().expect("stream management was on");
    assert!(!sm.resumable());
    assert_eq!(sm.into_unacked(), [message(1).into_bytes()]);
}

#[test]
fn a_broken_connection_stays_resumable() {
    let mut client = Client::tcp_bound(tcp_config());
    client.enable_sm(true);
    let out = client.input(Input::Eof);
    assert_eq!(close(&out), Some(None));
    assert!(client.stream.take_sm().is_some_and(|sm| sm.resumable()));
}
