//! The two clocks of a client stream: the idle timeout, moved by whatever the client sends,
//! and the token bucket that limits its stanza rate.

mod common;

use std::time::Duration;

use common::*;
use xmpp_proto::c2s::{C2sConfig, Input, Output};
use xmpp_proto::csi::Urgency;
use xmpp_proto::errors::StreamErrorCondition;

const IDLE: Duration = Duration::from_secs(300);

fn chat(n: u32) -> String {
    format!("<message to='8-42@chat.example.com' id='m{n}'><body>{n}</body></message>")
}

#[test]
fn the_deadline_is_armed_by_the_first_input_and_moved_by_activity() {
    let mut client = Client::new(tcp_config());
    // Nothing fed yet, so no deadline; the shell arms it by feeding empty bytes on accept.
    assert_eq!(client.stream.poll_timeout(), None);
    assert!(client.send("").is_empty());
    assert_eq!(client.stream.poll_timeout(), Some(client.epoch + IDLE));

    // Whitespace keep-alives count as activity.
    client.advance(Duration::from_secs(200));
    client.send(&tcp_header());
    client.advance(Duration::from_secs(200));
    assert!(client.send(" ").is_empty());
    let deadline = client.epoch + Duration::from_secs(400) + IDLE;
    assert_eq!(client.stream.poll_timeout(), Some(deadline));

    // Delivering to the client is not client activity.
    client.advance(Duration::from_secs(100));
    client.deliver("<message/>", Urgency::Urgent);
    assert_eq!(client.stream.poll_timeout(), Some(deadline));

    // Waking early (the old deadline, or just before the new one) does nothing.
    client.now = client.epoch + IDLE;
    assert!(client.timeout().is_empty());
    client.now = deadline - Duration::from_millis(1);
    assert!(client.timeout().is_empty());
    assert!(!client.stream.is_closed());
}

#[test]
fn silence_past_the_deadline_closes_with_connection_timeout() {
    let mut client = Client::tcp_bound(tcp_config());
    let deadline = client.stream.poll_timeout().expect("armed");
    assert_eq!(deadline, client.now + IDLE);
    client.now = deadline;
    let out = client.timeout();
    assert_stream_error(&client, &out, StreamErrorCondition::ConnectionTimeout);
    // Late timers after Close are ignored.
    client.advance(IDLE);
    assert!(client.timeout().is_empty());
}

#[test]
fn timeout_before_the_header_still_sends_our_header_first() {
    let mut client = Client::new(tcp_config());
    client.send("");
    client.advance(IDLE);
    let out = client.timeout();
    assert_eq!(sends(&out)[0], server_tcp_header(1));
    assert_stream_error(&client, &out, StreamErrorCondition::ConnectionTimeout);
}

#[test]
fn burst_then_the_next_stanza_at_the_same_instant_is_a_policy_violation() {
    let mut client = Client::tcp_bound(tcp_config()); // 10/s, burst 20
    for n in 1..=20 {
        let out = client.send(&chat(n));
        assert!(
            matches!(out.as_slice(), [Output::Stanza(_)]),
            "stanza {n}: {out:?}"
        );
    }
    let out = client.send(&chat(21));
    assert!(!out.iter().any(|o| matches!(o, Output::Stanza(_))));
    assert_stream_error(&client, &out, StreamErrorCondition::PolicyViolation);
}

#[test]
fn burst_in_one_read_is_limited_too() {
    let mut client = Client::tcp_bound(tcp_config());
    let burst: String = (1..=21).map(chat).collect();
    let out = client.send(&burst);
    let routed = out
        .iter()
        .filter(|o| matches!(o, Output::Stanza(_)))
        .count();
    assert_eq!(routed, 20);
    assert_stream_error(&client, &out, StreamErrorCondition::PolicyViolation);
}

#[test]
fn the_sustained_rate_is_fine_forever() {
    let mut client = Client::tcp_bound(tcp_config());
    for n in 1..=500 {
        client.advance(Duration::from_millis(100));
        let out = client.send(&chat(n));
        assert!(
            matches!(out.as_slice(), [Output::Stanza(_)]),
            "stanza {n}: {out:?}"
        );
    }
}

#[test]
fn tokens_refill_at_the_configured_rate_up_to_the_burst() {
    let mut client = Client::tcp_bound(tcp_config());
    for n in 1..=20 {
        client.send(&chat(n));
    }
    // A long pause refills to the burst, not beyond it.
    client.advance(Duration::from_secs(60));
    for n in 1..=20 {
        let out = client.send(&chat(n));
        assert!(
            matches!(out.as_slice(), [Output::Stanza(_)]),
            "stanza {n}: {out:?}"
        );
    }
    // One second buys ten more.
    client.advance(Duration::from_secs(1));
    for n in 1..=10 {
        let out = client.send(&chat(n));
        assert!(
            matches!(out.as_slice(), [Output::Stanza(_)]),
            "stanza {n}: {out:?}"
        );
    }
    let out = client.send(&chat(11));
    assert_stream_error(&client, &out, StreamErrorCondition::PolicyViolation);
}

#[test]
fn the_session_iq_spends_a_token_like_any_stanza() {
    let mut client = Client::tcp_bound(C2sConfig {
        stanza_burst: 1,
        stanza_rate_per_s: 1,
        ..tcp_config()
    });
    client.send(&session_iq("s1"));
    let out = client.send(&chat(1));
    assert_stream_error(&client, &out, StreamErrorCondition::PolicyViolation);
}

#[test]
fn shell_answers_count_as_activity_only_while_the_stream_lives() {
    let mut client = Client::tcp_bound(tcp_config());
    client.advance(Duration::from_secs(10));
    client.input(Input::Eof);
    assert_eq!(client.stream.poll_timeout(), None);
}

#[test]
fn nonzas_share_the_stanza_budget() {
    let mut config = tcp_config();
    config.stanza_rate_per_s = 10;
    config.stanza_burst = 20;
    let mut client = Client::tcp_bound(config);
    client.enable_sm(false);
    // The bind and session iqs and <enable/> already took three tokens.
    let flood: String = "<r xmlns='urn:xmpp:sm:3'/>".repeat(40);
    let out = client.send(&flood);
    assert_stream_error(&client, &out, StreamErrorCondition::PolicyViolation);
}
