//! XMPP features on a real server: offline storage surviving a restart, roster versioning and
//! pushes, blocking and privacy lists, last activity, client state indication, WebSocket, the
//! abuse limits and the XMPP metrics.

mod common;

use std::time::Duration;

use common::xmpp::XmppClient;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn id_is(id: &'static str) -> impl Fn(&xmpp_proto::Stanza) -> bool {
    move |s| s.envelope().id.as_deref() == Some(id)
}

#[tokio::test]
async fn offline_messages_survive_a_restart_and_arrive_in_order_with_delay() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("olly", "ollypass12").await;
    let b = t.xmpp_user("pam", "pampass123").await;
    let mut olly = t.xmpp_login(&a, "ollypass12", None).await;
    for i in 0..5 {
        olly.send(&format!(
            "<message to='{b}@localhost' type='chat' id='off{i}'><body>n{i}</body></message>"
        ))
        .await;
    }
    // A call signal is never stored: late calls are useless.
    olly.send(&format!("<message to='{b}@localhost' type='headline' id='call'><extraParams xmlns='jabber:client'><moduleIdentifier>WebRTCVideoChat</moduleIdentifier></extraParams></message>")).await;
    olly.ping_server().await;
    drop(olly);

    let TestServer {
        server,
        dir,
        app,
        client,
    } = t;
    let mut config = (*server.config).clone();
    server.shutdown().await;
    config.api.listen = "127.0.0.1:0".into();
    config.xmpp.listen = "127.0.0.1:0".into();
    let server = switchboard::Server::start(config).await.unwrap();
    let t = TestServer {
        server,
        dir,
        app,
        client,
    };

    let mut pam = t.xmpp_login(&b, "pampass123", None).await;
    pam.send("<presence/>").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let m = pam
            .expect("offline message", |s| s.envelope().name == "message")
            .await;
        assert!(
            m.as_str().contains("<delay xmlns='urn:xmpp:delay'"),
            "{}",
            m.as_str()
        );
        assert_eq!(m.envelope().to.as_deref(), Some(pam.jid.as_str()));
        assert!(m
            .envelope()
            .from
            .as_deref()
            .unwrap()
            .starts_with(&format!("{a}@localhost/")));
        ids.push(m.envelope().id.clone().unwrap());
    }
    assert_eq!(ids, vec!["off0", "off1", "off2", "off3", "off4"]);
    pam.expect_nothing(Duration::from_millis(300), |s| {
        s.envelope().name == "message"
    })
    .await;
    // Delivered once: a login after this session has ended gets nothing.
    pam.drop_connection().await;
    let mut again = t.xmpp_login(&b, "pampass123", Some("second")).await;
    again.send("<presence/>").await;
    again
        .expect_nothing(Duration::from_millis(400), |s| {
            s.envelope().name == "message"
        })
        .await;
}

#[tokio::test]
async fn roster_set_push_versioning_and_remove() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("rob", "robpass123").await;
    let b = t.xmpp_user("sue", "suepass123").await;
    let mut rob = t.xmpp_login(&a, "robpass123", Some("one")).await;
    let mut rob2 = t.xmpp_login(&a, "robpass123", Some("two")).await;
    rob.send(&format!("<iq type='set' id='rs1'><query xmlns='jabber:iq:roster'><item jid='{b}@localhost' name='Sue &amp; co'><group>Friends</group></item></query></iq>")).await;
    rob.expect("result", id_is("rs1")).await;
    let push = rob2
        .expect("push", |s| {
            s.envelope().stanza_type.as_deref() == Some("set")
                && s.as_str().contains("jabber:iq:roster")
        })
        .await;
    assert!(
        push.as_str().contains("name='Sue &amp; co'")
            && push.as_str().contains("<group>Friends</group>"),
        "{}",
        push.as_str()
    );
    assert!(push.as_str().contains("ver='1'"), "{}", push.as_str());

    rob.send("<iq type='get' id='rg1'><query xmlns='jabber:iq:roster' ver='1'/></iq>")
        .await;
    let unchanged = rob.expect("empty result", id_is("rg1")).await;
    assert!(
        !unchanged.as_str().contains("<item"),
        "up-to-date roster is not re-sent: {}",
        unchanged.as_str()
    );
    rob.send("<iq type='get' id='rg2'><query xmlns='jabber:iq:roster' ver='0'/></iq>")
        .await;
    let full = rob.expect("roster", id_is("rg2")).await;
    assert!(
        full.as_str().contains(&format!("jid='{b}@localhost'"))
            && full.as_str().contains("subscription='none'")
    );

    rob.send(&format!("<iq type='set' id='rs2'><query xmlns='jabber:iq:roster'><item jid='{b}@localhost' subscription='remove'/></query></iq>")).await;
    rob.expect("remove result", id_is("rs2")).await;
    rob2.expect("remove push", |s| {
        s.as_str().contains("subscription='remove'")
    })
    .await;
    rob.send("<iq type='set' id='rs3'><query xmlns='jabber:iq:roster'><item jid='nobody@elsewhere.example'/></query></iq>").await;
    let error = rob.expect("error", id_is("rs3")).await;
    assert_eq!(error.envelope().stanza_type.as_deref(), Some("error"));
}

#[tokio::test]
async fn subscriptions_and_presence_broadcast_and_unavailable_on_disconnect() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("tom", "tompass123").await;
    let b = t.xmpp_user("uma", "umapass123").await;
    let mut tom = t.xmpp_login(&a, "tompass123", None).await;
    let mut uma = t.xmpp_login(&b, "umapass123", None).await;
    tom.available().await;
    uma.available().await;
    tom.send(&format!("<presence to='{b}@localhost' type='subscribe'/>"))
        .await;
    uma.expect("subscribe", |s| {
        s.envelope().stanza_type.as_deref() == Some("subscribe")
    })
    .await;
    uma.send(&format!("<presence to='{a}@localhost' type='subscribed'/>"))
        .await;
    tom.expect("subscribed", |s| {
        s.envelope().stanza_type.as_deref() == Some("subscribed")
    })
    .await;
    // Tom now sees Uma's presence.
    tom.expect("uma's presence", |s| {
        s.envelope().name == "presence"
            && s.envelope().stanza_type.is_none()
            && s.envelope().from.as_deref() == Some(uma.jid.as_str())
    })
    .await;
    uma.send("<presence><show>away</show></presence>").await;
    let away = tom
        .expect("update", |s| s.as_str().contains("<show>away</show>"))
        .await;
    assert_eq!(away.envelope().from.as_deref(), Some(uma.jid.as_str()));
    drop(uma);
    let gone = tom
        .expect("unavailable", |s| {
            s.envelope().stanza_type.as_deref() == Some("unavailable")
        })
        .await;
    assert!(gone
        .envelope()
        .from
        .as_deref()
        .unwrap()
        .starts_with(&format!("{b}@localhost/")));
    // Last activity of an offline user: seconds since logout, from = the user.
    tom.send(&format!(
        "<iq type='get' id='la1' to='{b}@localhost'><query xmlns='jabber:iq:last'/></iq>"
    ))
    .await;
    let last = tom.expect("last activity", id_is("la1")).await;
    assert_eq!(
        last.envelope().stanza_type.as_deref(),
        Some("result"),
        "{}",
        last.as_str()
    );
    assert_eq!(
        last.envelope().from.as_deref(),
        Some(format!("{b}@localhost").as_str())
    );
    assert!(last.as_str().contains("seconds='"));
}

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

fn is_error_with(condition: &'static str) -> impl Fn(&xmpp_proto::Stanza) -> bool {
    move |s| s.envelope().stanza_type.as_deref() == Some("error") && s.as_str().contains(condition)
}

/// Removing a contact with subscriptions both ways cancels them and leaves the contact
/// removed: the "remove" push is the last one and the roster no longer lists it.
#[tokio::test]
async fn removing_a_subscribed_contact_leaves_it_removed() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("gus", "guspass123").await;
    let b = t.xmpp_user("hal", "halpass123").await;
    let mut gus = t.xmpp_login(&a, "guspass123", None).await;
    let mut hal = t.xmpp_login(&b, "halpass123", None).await;
    gus.available().await;
    hal.available().await;
    subscribe(&mut gus, &a, &mut hal, &b).await;
    subscribe(&mut hal, &b, &mut gus, &a).await;
    // Roster pushes go to resources that asked for the roster (RFC 6121 §2.1.6).
    gus.send("<iq type='get' id='rg0'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    gus.expect("roster", id_is("rg0")).await;
    while gus.next_within(Duration::from_millis(200)).await.is_some() {}
    gus.send(&format!("<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='{b}@localhost' subscription='remove'/></query></iq>")).await;
    // Pushes to the own session travel through its queue, so they may follow the result.
    let mut pushes = Vec::new();
    let mut answered = false;
    while let Some(s) = gus.next_within(Duration::from_millis(500)).await {
        if s.envelope().id.as_deref() == Some("rm") {
            assert_eq!(
                s.envelope().stanza_type.as_deref(),
                Some("result"),
                "{}",
                s.as_str()
            );
            answered = true;
        } else if s.as_str().contains("jabber:iq:roster") {
            pushes.push(s.as_str().to_string());
        }
    }
    assert!(answered, "no result for the removal");
    let last = pushes.last().expect("a roster push");
    assert!(last.contains("subscription='remove'"), "{pushes:?}");
    gus.send("<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let roster = gus.expect("roster", id_is("rg")).await;
    assert!(
        !roster.as_str().contains(&format!("{b}@localhost")),
        "{}",
        roster.as_str()
    );
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

/// `from` asks for `to`'s presence and `to` approves.
async fn subscribe(from: &mut XmppClient, from_node: &str, to: &mut XmppClient, to_node: &str) {
    let has_type = |t: &'static str| {
        move |s: &xmpp_proto::Stanza| s.envelope().stanza_type.as_deref() == Some(t)
    };
    from.send(&format!(
        "<presence to='{to_node}@localhost' type='subscribe'/>"
    ))
    .await;
    to.expect("subscribe", has_type("subscribe")).await;
    to.send(&format!(
        "<presence to='{from_node}@localhost' type='subscribed'/>"
    ))
    .await;
    from.expect("subscribed", has_type("subscribed")).await;
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

#[tokio::test]
async fn websocket_transport_with_rfc7395_framing() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("zoe", "zoepass123").await;
    let ws = t.server.xmpp_addrs.ws.unwrap();
    let mut request = format!("ws://{ws}/").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "xmpp".parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(ws).await.unwrap();
    let (mut socket, response) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "xmpp");
    socket
        .send(Message::text(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
        ))
        .await
        .unwrap();
    let open = recv(&mut socket).await;
    assert!(
        open.starts_with("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'"),
        "{open}"
    );
    let features = recv(&mut socket).await;
    assert!(
        features.contains("PLAIN") && !features.contains("starttls"),
        "{features}"
    );
    socket
        .send(Message::text(format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            common::xmpp::plain(&a, "zoepass123")
        )))
        .await
        .unwrap();
    assert!(recv(&mut socket).await.starts_with("<success"));
    socket
        .send(Message::text(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
        ))
        .await
        .unwrap();
    recv(&mut socket).await;
    assert!(recv(&mut socket).await.contains("xmpp-bind"));
    socket.send(Message::text("<iq type='set' id='b' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")).await.unwrap();
    let bound = recv(&mut socket).await;
    assert!(
        bound.contains("xmlns='jabber:client'") && bound.contains("<jid>"),
        "{bound}"
    );
    socket.send(Message::text("<iq type='get' id='p' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>")).await.unwrap();
    assert!(recv(&mut socket).await.contains("id='p'"));
    socket
        .send(Message::text(
            "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
        ))
        .await
        .unwrap();
    assert!(recv(&mut socket).await.starts_with("<close"));

    // Without the xmpp subprotocol the upgrade is refused.
    let plain = format!("ws://{ws}/").into_client_request().unwrap();
    let tcp = tokio::net::TcpStream::connect(ws).await.unwrap();
    assert!(tokio_tungstenite::client_async(plain, tcp).await.is_err());
}

async fn recv(socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> String {
    match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
        other => panic!("no frame: {other:?}"),
    }
}

#[tokio::test]
async fn connection_limit_per_ip_and_idle_timeout() {
    let t = TestServer::start_with(|c| {
        c.xmpp.max_connections_per_ip = 2;
        c.xmpp.idle_timeout_s = 1;
    })
    .await;
    let addr = t.server.xmpp_addrs.tcp;
    let connect = || async {
        XmppClient::over(
            Box::new(tokio::net::TcpStream::connect(addr).await.unwrap()),
            "localhost",
        )
    };
    // The server answers a stream header only on a connection it has counted.
    let mut first = connect().await;
    first.open_stream().await;
    let mut second = connect().await;
    second.open_stream().await;
    let mut third = connect().await;
    third.send(&common::xmpp::header("localhost")).await;
    let refused = third.read_to_close().await;
    assert!(
        refused.is_empty(),
        "over the limit the connection is closed at once: {refused}"
    );
    // The idle one is closed with connection-timeout.
    let transcript = first.read_to_close().await;
    assert!(transcript.contains("connection-timeout"), "{transcript}");
}

#[tokio::test]
async fn xmpp_metrics_are_exported() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("met", "metpass123").await;
    let b = t.xmpp_user("ric", "ricpass123").await;
    let mut met = t.xmpp_login(&a, "metpass123", None).await;
    met.send(&format!(
        "<message to='{b}@localhost' type='chat' id='o1'><body>x</body></message>"
    ))
    .await;
    met.ping_server().await;
    let _ = XmppClient::login(
        t.server.xmpp_addrs.tcp,
        "localhost",
        &t.server.tls.cert,
        &a,
        "wrong-pass",
        None,
    )
    .await;
    let text = reqwest::get(format!("http://{}/metrics", t.server.metrics_addr.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "switchboard_xmpp_connections{transport=\"tcp\"} 1",
        "switchboard_xmpp_auth_total{result=\"success\"} 1",
        "switchboard_xmpp_auth_total{result=\"failure\"} 1",
        "switchboard_xmpp_stanzas_routed_total{kind=\"message\"} 1",
        "switchboard_xmpp_routing_seconds_count",
        "switchboard_xmpp_offline_queue_depth 1",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
    assert!(!text.contains(&a), "no JIDs in labels");
}

#[tokio::test]
async fn direct_tls_listener_offers_plain_without_starttls() {
    let t = TestServer::start_with(|c| c.xmpp.direct_tls_listen = "127.0.0.1:0".into()).await;
    let node = t.xmpp_user("dtl", "dtlpass123").await;
    let addr = t.server.xmpp_addrs.direct_tls.expect("direct TLS listener");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = common::xmpp::tls_connector(&t.server.tls.cert, &[b"xmpp-client"])
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let mut client = XmppClient::over(Box::new(tls), "localhost");
    client.send(&common::xmpp::header("localhost")).await;
    let features = client
        .expect("features", |s| s.envelope().name == "features")
        .await;
    assert!(
        features.as_str().contains("PLAIN") && !features.as_str().contains("starttls"),
        "{}",
        features.as_str()
    );
    client
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            common::xmpp::plain(&node, "dtlpass123")
        ))
        .await;
    client
        .expect("success", |s| s.envelope().name == "success")
        .await;
}
