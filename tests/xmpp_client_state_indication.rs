//! Client state indication (XEP-0352) on a real server: an inactive client's presence and chat
//! states are held until something urgent arrives, and held stanzas outlive its connection.

mod common;

use std::time::Duration;

use common::xmpp::id_is;
use common::*;

#[tokio::test]
async fn client_state_indication_holds_presence_but_not_messages() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("xia", "xiapass123").await;
    let b = t.xmpp_user("yan", "yanpass123").await;
    let mut xia = t.xmpp_login(&a, "xiapass123", None).await;
    let mut yan = t.xmpp_login(&b, "yanpass123", None).await;
    xia.available().await;
    xia.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    xia.ping_server().await;
    yan.send(&format!("<presence to='{a}@localhost'/>")).await;
    yan.send(&format!("<message to='{a}@localhost' type='chat' id='typing'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")).await;
    yan.ping_server().await;
    xia.expect_nothing(Duration::from_millis(300), |s| {
        s.envelope().name == "presence" || s.envelope().id.as_deref() == Some("typing")
    })
    .await;
    yan.send(&format!(
        "<message to='{a}@localhost' type='chat' id='urgent'><body>now</body></message>"
    ))
    .await;
    // The held stanzas come first, in order, then the message.
    let first = xia.expect("held presence", |_| true).await;
    assert_eq!(first.envelope().name, "presence");
    xia.expect("held typing", id_is("typing")).await;
    xia.expect("message", id_is("urgent")).await;
}

/// Stanzas held back while a client is inactive (XEP-0352) belong to the session: when its
/// connection dies they are stored like unacknowledged ones, not dropped.
#[tokio::test]
async fn stanzas_held_for_an_inactive_client_survive_its_disconnect() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("cal", "calpass123").await;
    let b = t.xmpp_user("dee", "deepass123").await;
    let mut cal = t.xmpp_login(&a, "calpass123", None).await;
    let mut dee = t.xmpp_login(&b, "deepass123", None).await;
    cal.available().await;
    cal.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    cal.ping_server().await;
    // A read marker can wait while the phone sleeps, but it must not be lost.
    dee.send(&format!("<message to='{a}@localhost' type='chat' id='seen'><displayed xmlns='urn:xmpp:chat-markers:0' id='m9'/></message>")).await;
    dee.ping_server().await;
    cal.expect_nothing(Duration::from_millis(300), id_is("seen"))
        .await;
    drop(cal);
    // The session ends in the background; wait until the marker is stored.
    t.wait_for_metric("switchboard_xmpp_offline_queue_depth", 1.0)
        .await;
    let mut cal = t.xmpp_login(&a, "calpass123", None).await;
    cal.send("<presence/>").await;
    let marker = cal
        .expect("held marker, delivered offline", id_is("seen"))
        .await;
    assert!(
        marker.as_str().contains("urn:xmpp:delay"),
        "{}",
        marker.as_str()
    );
}
