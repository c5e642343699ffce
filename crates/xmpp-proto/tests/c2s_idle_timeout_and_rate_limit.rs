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
    // (The authentication deadline is pushed out of the way: it has tests of its own.)
    let mut client = Client::new(C2sConfig {
        auth_timeout: Duration::from_secs(3600),
        ..tcp_config()
    });
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

/// Whether the outputs route exactly these stanza numbers, in order.
fn routed(out: &[Output]) -> Vec<u32> {
    out.iter()
        .filter_map(|o| match o {
            Output::Stanza(stanza) => stanza.envelope().id.as_deref()?[1..].parse().ok(),
            _ => None,
        })
        .collect()
}

#[test]
fn over_the_burst_a_client_waits_for_tokens_instead_of_being_closed() {
    let mut client = Client::tcp_bound(tcp_config()); // 10/s, burst 20
    for n in 1..=20 {
        assert_eq!(routed(&client.send(&chat(n))), [n]);
    }
    let out = client.send(&chat(21));
    assert!(routed(&out).is_empty(), "{out:?}");
    assert!(client.stream.is_read_paused() && !client.stream.is_closed());
    // The shell sleeps until a token is back, then the stanza goes on.
    let wake = client.stream.poll_timeout().expect("a pause deadline");
    assert_eq!(wake, client.now + Duration::from_millis(100));
    client.now = wake;
    assert_eq!(routed(&client.timeout()), [21]);
}

#[test]
fn a_burst_in_one_read_is_taken_at_the_budgets_pace_in_order() {
    let mut client = Client::tcp_bound(C2sConfig {
        stanza_rate_per_s: 200,
        stanza_burst: 400,
        ..tcp_config()
    });
    // What a client flushes after a reconnect, or the SDK marking a page read.
    let burst: String = (1..=5000).map(chat).collect();
    let mut seen = routed(&client.send(&burst));
    assert_eq!(seen.len(), 400, "the burst at once");
    while seen.len() < 5000 {
        assert!(client.stream.is_read_paused(), "paused while input waits");
        client.now = client.stream.poll_timeout().expect("a pause deadline");
        seen.extend(routed(&client.timeout()));
        assert!(!client.stream.is_closed(), "closed after {}", seen.len());
    }
    assert_eq!(seen, (1..=5000).collect::<Vec<_>>());
}

#[test]
fn a_client_over_its_budget_for_too_long_is_closed() {
    let mut client = Client::tcp_bound(C2sConfig {
        sustained_overload: Duration::from_secs(30),
        ..tcp_config()
    });
    // Twice the sustained rate, every second: slowed at first, closed after 30 s of it.
    let mut n = 0;
    for second in 0..40 {
        let batch: String = (0..20)
            .map(|_| {
                n += 1;
                chat(n)
            })
            .collect();
        let mut out = client.send(&batch);
        while client.stream.is_read_paused() {
            let wake = client.stream.poll_timeout().expect("a deadline");
            if wake > client.epoch + Duration::from_secs(second + 1) {
                break;
            }
            client.now = wake;
            out.extend(client.timeout());
        }
        if client.stream.is_closed() {
            assert!(second >= 29, "closed after only {second} s");
            assert_stream_error(&client, &out, StreamErrorCondition::PolicyViolation);
            return;
        }
        client.now = client.epoch + Duration::from_secs(second + 1);
    }
    panic!("a client sending twice its budget for 40 s was never closed");
}

#[test]
fn a_trickle_of_bytes_does_not_extend_the_authentication_deadline() {
    let mut client = Client::new(tcp_config()); // auth_timeout 60 s
    client.send("");
    let header = tcp_header();
    // One byte every 4 s keeps the connection active but never authenticates.
    for byte in header.as_bytes().iter().take(15) {
        client.advance(Duration::from_secs(4));
        client.send_bytes(&[*byte]);
    }
    assert_eq!(
        client.stream.poll_timeout(),
        Some(client.epoch + Duration::from_secs(60))
    );
    client.now = client.epoch + Duration::from_secs(60);
    let out = client.timeout();
    assert_stream_error(&client, &out, StreamErrorCondition::ConnectionTimeout);
}

#[test]
fn a_bound_session_has_no_authentication_deadline() {
    let mut client = Client::tcp_bound(tcp_config());
    client.advance(Duration::from_secs(200));
    client.send(" ");
    client.advance(Duration::from_secs(200));
    assert!(client.timeout().is_empty());
    assert!(!client.stream.is_closed());
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
    // One second buys ten more; the eleventh waits.
    client.advance(Duration::from_secs(1));
    for n in 1..=10 {
        let out = client.send(&chat(n));
        assert!(
            matches!(out.as_slice(), [Output::Stanza(_)]),
            "stanza {n}: {out:?}"
        );
    }
    assert!(routed(&client.send(&chat(11))).is_empty());
    assert!(client.stream.is_read_paused());
}

#[test]
fn the_session_iq_spends_a_token_like_any_stanza() {
    let mut client = Client::tcp_bound(C2sConfig {
        stanza_burst: 1,
        stanza_rate_per_s: 1,
        ..tcp_config()
    });
    client.advance(Duration::from_secs(1));
    client.send(&session_iq("s1"));
    assert!(routed(&client.send(&chat(1))).is_empty());
    client.advance(Duration::from_secs(1));
    assert_eq!(routed(&client.timeout()), [1]);
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
    // <enable/> already took a token: 19 of 40 <r/> are answered now, the rest as tokens come.
    let flood: String = "<r xmlns='urn:xmpp:sm:3'/>".repeat(40);
    let answers = |out: &[Output]| sends(out).iter().filter(|s| s.starts_with("<a ")).count();
    assert_eq!(answers(&client.send(&flood)), 19);
    assert!(client.stream.is_read_paused());
    let mut answered = 19;
    while answered < 40 {
        client.now = client.stream.poll_timeout().expect("a pause deadline");
        answered += answers(&client.timeout());
        assert!(!client.stream.is_closed());
    }
    assert_eq!(answered, 40);
}
