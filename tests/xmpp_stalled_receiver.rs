//! A receiver that stops reading cannot make the server buffer without limit: its queue is
//! bounded in bytes (`xmpp.session_queue_bytes`), and what does not fit waits in offline
//! storage instead of memory. Nothing is lost.

mod common;

use std::collections::BTreeSet;

use common::xmpp::XmppClient;
use common::*;

const QUEUE_BYTES: usize = 256 * 1024;
const MESSAGES: usize = 200;
const BODY: usize = 100 * 1024;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Reads message ids until a ping round trip: everything queued before the ping arrived.
async fn drain_ids(client: &mut XmppClient, into: &mut BTreeSet<String>) {
    for stanza in client.stanzas_before_ping().await {
        if stanza.envelope().name == "message" {
            into.insert(stanza.envelope().id.clone().unwrap());
        }
    }
}

#[tokio::test]
async fn a_stalled_receiver_is_bounded_in_bytes_and_loses_nothing() {
    let t = TestServer::start_with(|c| {
        c.xmpp.session_queue_bytes = QUEUE_BYTES;
        c.xmpp.stanza_rate_per_s = 10_000;
        c.xmpp.stanza_burst = 1_000;
    })
    .await;
    let a = t.xmpp_user("flood", "floodpass1").await;
    let b = t.xmpp_user("stall", "stallpass1").await;
    let mut sender = t.xmpp_login(&a, "floodpass1", None).await;
    let mut stalled = t.xmpp_login(&b, "stallpass1", Some("phone")).await;
    stalled.available().await;
    let before = rss_kb();
    let body = "z".repeat(BODY);
    for n in 0..MESSAGES {
        sender
            .send(&format!(
                "<message to='{b}@localhost/phone' type='chat' id='s{n}'><body>{body}</body></message>"
            ))
            .await;
    }
    // Everything sent has been routed once the server answers this.
    sender.ping_server().await;
    let queued = t.metric("switchboard_xmpp_queued_bytes").await.unwrap();
    let spilled = t
        .metric("switchboard_xmpp_offline_stored_total")
        .await
        .unwrap_or(0.0);
    eprintln!(
        "stalled receiver: {MESSAGES} x {BODY} B sent; queued {queued} B (bound {QUEUE_BYTES} B \
         + one stanza), {spilled} spilled to offline storage, server process RSS {before} -> {} kB",
        rss_kb()
    );
    assert!(
        queued <= (QUEUE_BYTES + BODY + 1024) as f64,
        "queued {queued} B"
    );
    assert!(
        spilled > 0.0,
        "the flood outgrew the socket buffers and the queue"
    );

    // The receiver wakes up: what was queued arrives, then the rest is offline for its next
    // login.
    let mut ids = BTreeSet::new();
    drain_ids(&mut stalled, &mut ids).await;
    stalled.send("</stream:stream>").await;
    // Written after the ping's answer, before the close.
    let tail = stalled.read_to_close().await;
    ids.extend(
        tail.split("id='s")
            .skip(1)
            .filter_map(|rest| rest.split('\'').next())
            .map(|n| format!("s{n}")),
    );
    let mut again = t.xmpp_login(&b, "stallpass1", Some("phone")).await;
    again.send("<presence/>").await;
    while ids.len() < MESSAGES {
        let stanza = again
            .next()
            .await
            .unwrap_or_else(|| panic!("only {} of {MESSAGES} messages arrived", ids.len()));
        if stanza.envelope().name == "message" {
            ids.insert(stanza.envelope().id.clone().unwrap());
        }
    }
    assert_eq!(ids.len(), MESSAGES);
}
