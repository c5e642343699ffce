//! Blocking (XEP-0191) and privacy lists (XEP-0016) on a real server: the block list and
//! QuickBlox-style privacy lists, and refusal of messages, iqs and presence both ways.

mod common;

use std::time::Duration;

use common::xmpp::{id_is, subscribe, XmppClient};
use common::*;

#[tokio::test]
async fn blocking_command_and_privacy_lists() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("vic", "vicpass123").await;
    let b = t.xmpp_user("wes", "wespass123").await;
    let mut vic = t.xmpp_login(&a, "vicpass123", None).await;
    let mut wes = t.xmpp_login(&b, "wespass123", None).await;
    vic.available().await;
    wes.available().await;
    vic.send(&format!("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='{b}@localhost'/></block></iq>")).await;
    vic.expect("block result", id_is("b1")).await;
    vic.send("<iq type='get' id='b2'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        .await;
    let list = vic.expect("blocklist", id_is("b2")).await;
    assert!(list.as_str().contains(&format!("jid='{b}@localhost'")));
    wes.send(&format!(
        "<message to='{a}@localhost' type='chat' id='blk'><body>hi</body></message>"
    ))
    .await;
    let bounce = wes.expect("bounce", id_is("blk")).await;
    assert_eq!(bounce.envelope().stanza_type.as_deref(), Some("error"));
    // An unblock naming only a malformed JID is an error, not "unblock everyone".
    vic.send("<iq type='set' id='b9'><unblock xmlns='urn:xmpp:blocking'><item jid='@bad'/></unblock></iq>").await;
    let malformed = vic.expect("bad unblock", id_is("b9")).await;
    assert!(
        malformed.as_str().contains("jid-malformed"),
        "{}",
        malformed.as_str()
    );
    vic.send("<iq type='get' id='b10'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        .await;
    let list = vic.expect("blocklist kept", id_is("b10")).await;
    assert!(
        list.as_str().contains(&format!("jid='{b}@localhost'")),
        "{}",
        list.as_str()
    );
    vic.expect_nothing(Duration::from_millis(300), id_is("blk"))
        .await;
    vic.send("<iq type='set' id='b3'><unblock xmlns='urn:xmpp:blocking'/></iq>")
        .await;
    vic.expect("unblock", id_is("b3")).await;

    // QuickBlox-style privacy list: two items per user, order kept, set as default.
    let items = format!("<item type='jid' value='{b}@localhost' action='deny' order='1'/><item type='jid' value='muc.localhost/{}' action='deny' order='2'/>", b.split('-').next().unwrap());
    vic.send(&format!("<iq type='set' id='p1'><query xmlns='jabber:iq:privacy'><list name='blocked'>{items}</list></query></iq>")).await;
    vic.expect("list set", id_is("p1")).await;
    vic.send("<iq type='set' id='p2'><query xmlns='jabber:iq:privacy'><default name='blocked'/></query></iq>").await;
    vic.expect("default set", id_is("p2")).await;
    vic.send("<iq type='get' id='p3'><query xmlns='jabber:iq:privacy'><list name='blocked'/></query></iq>").await;
    let got = vic.expect("list", id_is("p3")).await;
    let first = got.as_str().find("order='1'").unwrap();
    let second = got.as_str().find("order='2'").unwrap();
    assert!(first < second, "{}", got.as_str());
    wes.send(&format!(
        "<message to='{a}@localhost' type='chat' id='blk2'><body>hi</body></message>"
    ))
    .await;
    wes.expect("bounce", id_is("blk2")).await;
    vic.send(
        "<iq type='get' id='p4'><query xmlns='jabber:iq:privacy'><list name='nope'/></query></iq>",
    )
    .await;
    let missing = vic.expect("missing", id_is("p4")).await;
    assert!(missing.as_str().contains("item-not-found"));
}

/// XEP-0191 and XEP-0016 cover every kind of traffic, both ways, and take effect at once even
/// when the blocker's rules were already cached by earlier traffic.
#[tokio::test]
async fn blocking_covers_messages_iqs_and_presence_both_ways() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("abe", "abepass123").await;
    let b = t.xmpp_user("bea", "beapass123").await;
    let mut abe = t.xmpp_login(&a, "abepass123", Some("phone")).await;
    let mut bea = t.xmpp_login(&b, "beapass123", Some("web")).await;
    abe.available().await;
    bea.available().await;
    // Mutual presence subscription.
    subscribe(&mut bea, &b, &mut abe, &a).await;
    subscribe(&mut abe, &a, &mut bea, &b).await;
    // Traffic before the block caches Abe's (empty) rules.
    bea.send(&format!(
        "<message to='{a}@localhost' type='chat' id='m0'><body>hi</body></message>"
    ))
    .await;
    abe.expect("before the block", id_is("m0")).await;

    abe.send(&format!("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='{b}@localhost'/></block></iq>")).await;
    abe.expect("block result", id_is("b1")).await;
    // Bea saw Abe online: she is told he is gone (XEP-0191 §3.3).
    bea.expect("unavailable on block", |s| {
        s.envelope().stanza_type.as_deref() == Some("unavailable")
            && s.envelope().from.as_deref() == Some(abe.jid.as_str())
    })
    .await;
    // Inbound message and iq: refused as if Abe did not exist.
    bea.send(&format!(
        "<message to='{a}@localhost' type='chat' id='m1'><body>hi</body></message>"
    ))
    .await;
    bea.expect("message bounce", is_error_with("service-unavailable"))
        .await;
    bea.send(&format!(
        "<iq type='get' id='q1' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
        abe.jid
    ))
    .await;
    expect_unavailable(&mut bea, "iq bounce", "q1").await;
    bea.send(&format!(
        "<iq type='get' id='q2' to='{a}@localhost'><query xmlns='jabber:iq:last'/></iq>"
    ))
    .await;
    expect_unavailable(&mut bea, "bare iq bounce", "q2").await;
    // Outbound from the blocker: not-acceptable with <blocked/> (XEP-0191 §3.4).
    abe.send(&format!(
        "<message to='{b}@localhost' type='chat' id='m2'><body>yo</body></message>"
    ))
    .await;
    let own = abe.expect("outbound refused", id_is("m2")).await;
    assert!(
        own.as_str().contains("not-acceptable")
            && own
                .as_str()
                .contains("<blocked xmlns='urn:xmpp:blocking:errors'/>"),
        "{}",
        own.as_str()
    );
    // Presence: Abe's updates no longer reach Bea, and Bea's no longer reach Abe.
    abe.send("<presence><show>away</show></presence>").await;
    bea.send("<presence><show>dnd</show></presence>").await;
    bea.ping_server().await;
    abe.ping_server().await;
    bea.expect_nothing(Duration::from_millis(300), |s| {
        s.as_str().contains("<show>away</show>")
    })
    .await;
    abe.expect_nothing(Duration::from_millis(100), |s| {
        s.as_str().contains("<show>dnd</show>")
    })
    .await;
    abe.expect_nothing(Duration::from_millis(100), id_is("m1"))
        .await;

    // Unblocking sends Abe's current presence to Bea again, and traffic flows.
    abe.send(&format!("<iq type='set' id='b2'><unblock xmlns='urn:xmpp:blocking'><item jid='{b}@localhost'/></unblock></iq>")).await;
    abe.expect("unblock result", id_is("b2")).await;
    bea.expect("presence after unblock", |s| {
        s.as_str().contains("<show>away</show>")
    })
    .await;
    bea.send(&format!(
        "<message to='{a}@localhost' type='chat' id='m3'><body>back</body></message>"
    ))
    .await;
    abe.expect("after unblock", id_is("m3")).await;

    // A default privacy list naming only <iq/>: iqs refused, messages through.
    abe.send(&format!("<iq type='set' id='p1'><query xmlns='jabber:iq:privacy'><list name='noiq'><item type='jid' value='{b}@localhost' action='deny' order='1'><iq/></item></list></query></iq>")).await;
    abe.expect("list", id_is("p1")).await;
    abe.send("<iq type='set' id='p2'><query xmlns='jabber:iq:privacy'><default name='noiq'/></query></iq>").await;
    abe.expect("default", id_is("p2")).await;
    bea.send(&format!(
        "<iq type='get' id='q3' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
        abe.jid
    ))
    .await;
    expect_unavailable(&mut bea, "iq refused by the list", "q3").await;
    bea.send(&format!(
        "<message to='{a}@localhost' type='chat' id='m4'><body>ok</body></message>"
    ))
    .await;
    abe.expect("message allowed by the list", id_is("m4")).await;
}

/// Matches an error stanza that names `condition`.
fn is_error_with(condition: &'static str) -> impl Fn(&xmpp_proto::Stanza) -> bool {
    move |s| s.envelope().stanza_type.as_deref() == Some("error") && s.as_str().contains(condition)
}

/// Waits for the reply with `id` and checks it is a `service-unavailable` error.
async fn expect_unavailable(client: &mut XmppClient, what: &str, id: &'static str) {
    let reply = client.expect(what, id_is(id)).await;
    assert!(
        is_error_with("service-unavailable")(&reply),
        "{}",
        reply.as_str()
    );
}
