//! XEP-0198 on a real server: a client's TCP connection is killed mid-conversation; messages
//! sent to it meanwhile are kept, and after `<resume/>` every message is delivered exactly once
//! (acknowledged ones are not repeated). Without resumption, unacknowledged messages go to
//! offline storage instead of being lost.

mod common;

use std::time::Duration;

use common::xmpp::XmppClient;
use common::*;

async fn sm_client(t: &TestServer, node: &str, password: &str) -> (XmppClient, String) {
    let mut client = t.xmpp_login(node, password, Some("mobile")).await;
    client
        .send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let enabled = client
        .expect("enabled", |s| s.envelope().name == "enabled")
        .await;
    let id = enabled
        .as_str()
        .split("id='")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    assert!(
        enabled.as_str().contains("resume='true'"),
        "{}",
        enabled.as_str()
    );
    client.send("<presence/>").await;
    (client, id)
}

/// Authenticates `node` on a new connection and resumes stream `sm_id` with `h`; asserts it
/// was resumed.
async fn resume(t: &TestServer, node: &str, password: &str, sm_id: &str, h: u32) -> XmppClient {
    let mut client = XmppClient::authenticate(
        t.server.xmpp_addrs.tcp,
        "localhost",
        &t.server.tls.cert,
        node,
        password,
    )
    .await
    .unwrap();
    client
        .send(&format!(
            "<resume xmlns='urn:xmpp:sm:3' previd='{sm_id}' h='{h}'/>"
        ))
        .await;
    let answer = client
        .expect("resumed", |s| {
            s.envelope().name == "resumed" || s.envelope().name == "failed"
        })
        .await;
    assert_eq!(answer.envelope().name, "resumed", "{}", answer.as_str());
    client
}

fn body_ids(stanzas: &[xmpp_proto::Stanza]) -> Vec<String> {
    stanzas
        .iter()
        .filter(|s| s.envelope().name == "message")
        .filter_map(|s| s.envelope().id.clone())
        .collect()
}

#[tokio::test]
async fn killed_connection_resumes_and_gets_every_message_exactly_once() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("sender", "senderpass").await;
    let b = t.xmpp_user("mobile", "mobilepass").await;
    let mut sender = t.xmpp_login(&a, "senderpass", None).await;
    let (mut mobile, sm_id) = sm_client(&t, &b, "mobilepass").await;
    let full = mobile.jid.clone();

    // 10 messages arrive; the client acknowledges the first 4 of them.
    for i in 0..10 {
        sender
            .send(&format!(
                "<message to='{full}' type='chat' id='m{i}'><body>{i}</body></message>"
            ))
            .await;
    }
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let s = mobile
            .expect("message", |s| s.envelope().name == "message")
            .await;
        seen.push(s);
    }
    assert_eq!(
        body_ids(&seen),
        (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    // Nothing was sent to us between <enabled/> and the messages (presence has no subscribers,
    // the server does not echo it), so h='4' acknowledges exactly m0..m3.
    mobile.send("<a xmlns='urn:xmpp:sm:3' h='4'/>").await;
    mobile.ping_server().await;
    // The connection dies without </stream:stream>; once the server has closed its side, the
    // session is detached and what follows is queued for it.
    mobile.drop_connection().await;

    for i in 10..15 {
        sender
            .send(&format!(
                "<message to='{full}' type='chat' id='m{i}'><body>{i}</body></message>"
            ))
            .await;
    }
    sender.ping_server().await;

    // A stale h (lower than the 4 already acknowledged) must not cause a re-send of m0..m3.
    let mut resumed = resume(&t, &b, "mobilepass", &sm_id, 2).await;
    // The server resends on resumption, before it reads anything else from the new stream.
    let after = resumed.stanzas_before_ping().await;
    let ids = body_ids(&after);
    // Everything not acknowledged (m4..m9, which the dead connection may or may not have
    // written, and m10..m14 that arrived while detached), once each, in order.
    assert_eq!(
        ids,
        (4..15).map(|i| format!("m{i}")).collect::<Vec<_>>(),
        "{ids:?}"
    );
    // The resumed session keeps its JID: routing to it works without a new bind.
    sender
        .send(&format!(
            "<message to='{full}' type='chat' id='after'><body>x</body></message>"
        ))
        .await;
    resumed
        .expect("after resume", |s| {
            s.envelope().id.as_deref() == Some("after")
        })
        .await;
}

#[tokio::test]
async fn resuming_an_unknown_session_fails_cleanly_and_binding_still_works() {
    let t = TestServer::start().await;
    let b = t.xmpp_user("nores", "norespass1").await;
    let mut client = XmppClient::authenticate(
        t.server.xmpp_addrs.tcp,
        "localhost",
        &t.server.tls.cert,
        &b,
        "norespass1",
    )
    .await
    .unwrap();
    client
        .send("<resume xmlns='urn:xmpp:sm:3' previd='nope' h='0'/>")
        .await;
    let failed = client
        .expect("failed", |s| s.envelope().name == "failed")
        .await;
    assert!(failed.as_str().contains("item-not-found"));
    client.bind(None).await.unwrap();
    // Another user cannot steal a session by its id.
    let a = t.xmpp_user("owner", "ownerpass1").await;
    let (_owner, id) = sm_client(&t, &a, "ownerpass1").await;
    let mut thief = XmppClient::authenticate(
        t.server.xmpp_addrs.tcp,
        "localhost",
        &t.server.tls.cert,
        &b,
        "norespass1",
    )
    .await
    .unwrap();
    thief
        .send(&format!(
            "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='0'/>"
        ))
        .await;
    thief
        .expect("failed", |s| s.envelope().name == "failed")
        .await;
}

#[tokio::test]
async fn without_resumption_unacknowledged_messages_go_offline() {
    let t = TestServer::start_with(|c| c.xmpp.sm_resume_timeout_s = 1).await;
    let a = t.xmpp_user("snd", "sndpass123").await;
    let b = t.xmpp_user("rcv", "rcvpass123").await;
    let mut sender = t.xmpp_login(&a, "sndpass123", None).await;
    let (mobile, _) = sm_client(&t, &b, "rcvpass123").await;
    let full = mobile.jid.clone();
    mobile.drop_connection().await;
    for i in 0..3 {
        sender
            .send(&format!(
                "<message to='{full}' type='chat' id='q{i}'><body>{i}</body></message>"
            ))
            .await;
    }
    sender.ping_server().await;
    // The resumption window (1 s) passes with no <resume/>; the kept messages are stored.
    t.wait_for_metric("switchboard_xmpp_offline_queue_depth", 3.0)
        .await;
    let mut back = t.xmpp_login(&b, "rcvpass123", None).await;
    back.send("<presence/>").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let m = back
            .expect("offline", |s| s.envelope().name == "message")
            .await;
        assert!(m.as_str().contains("urn:xmpp:delay"));
        ids.push(m.envelope().id.clone().unwrap());
    }
    assert_eq!(ids, vec!["q0", "q1", "q2"]);
}

/// Stanzas held back for an inactive client (XEP-0352) were never written, so they travel
/// with the session: a resumed stream gets them.
#[tokio::test]
async fn stanzas_held_by_csi_are_delivered_after_resumption() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("typist", "typistpass").await;
    let b = t.xmpp_user("sleeper", "sleeperpass").await;
    let mut typist = t.xmpp_login(&a, "typistpass", None).await;
    let (mut sleeper, sm_id) = sm_client(&t, &b, "sleeperpass").await;
    let full = sleeper.jid.clone();
    sleeper.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    sleeper.ping_server().await;
    typist
        .send(&format!(
            "<message to='{full}' type='chat' id='typing'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
        ))
        .await;
    typist.ping_server().await;
    sleeper
        .expect_nothing(Duration::from_millis(300), |s| {
            s.envelope().id.as_deref() == Some("typing")
        })
        .await;
    sleeper.drop_connection().await;

    let mut resumed = resume(&t, &b, "sleeperpass", &sm_id, 0).await;
    resumed
        .expect("the held chat state", |s| {
            s.envelope().id.as_deref() == Some("typing")
        })
        .await;
}
