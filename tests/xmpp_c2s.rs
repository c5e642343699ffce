//! XMPP c2s on a real server over loopback: negotiation, authentication with a password or a
//! session token, binding, routing and `from` stamping, server iqs, and errors for bad input.

mod common;

use std::time::Duration;

use common::xmpp::{header, plain, XmppClient};
use common::*;
use tokio::net::TcpStream;

#[tokio::test]
async fn login_with_password_binds_a_server_chosen_resource() {
    let t = TestServer::start().await;
    let node = t.xmpp_user("alice", "alicepass1").await;
    let client = t.xmpp_login(&node, "alicepass1", None).await;
    let (bare, resource) = client.jid.split_once('/').expect("full JID");
    assert_eq!(bare, format!("{node}@localhost"));
    assert!(!resource.is_empty());
}

#[tokio::test]
async fn login_with_a_session_token_as_password() {
    let t = TestServer::start().await;
    let node = t.xmpp_user("bob", "bobpass123").await;
    let token = t.session(Some(("bob", "bobpass123"))).await;
    let client = t.xmpp_login(&node, &token, Some("web")).await;
    assert!(client.jid.ends_with("/web"));
    // Another user's token is not this user's password.
    let other = t.xmpp_user("carl", "carlpass12").await;
    let result = XmppClient::login(
        t.server.xmpp_addrs.tcp,
        "localhost",
        &t.server.tls.cert,
        &other,
        &token,
        None,
    )
    .await;
    assert!(result.is_err_and(|e| e.contains("not-authorized")));
}

#[tokio::test]
async fn wrong_password_fails_and_repeated_failures_close_the_stream() {
    let t = TestServer::start().await;
    let node = t.xmpp_user("dora", "dorapass12").await;
    let error = XmppClient::login(
        t.server.xmpp_addrs.tcp,
        "localhost",
        &t.server.tls.cert,
        &node,
        "nope-nope",
        None,
    )
    .await
    .err()
    .expect("wrong password fails");
    assert!(error.contains("<not-authorized/>"), "{error}");
    let error = XmppClient::login(
        t.server.xmpp_addrs.tcp,
        "localhost",
        &t.server.tls.cert,
        "999-1",
        "whatever1",
        None,
    )
    .await
    .err()
    .expect("unknown user fails");
    assert!(error.contains("not-authorized"), "{error}");
}

#[tokio::test]
async fn messages_route_to_full_and_bare_jids_with_stamped_from() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("amy", "amypass123").await;
    let b = t.xmpp_user("ben", "benpass123").await;
    let c = t.xmpp_user("cat", "catpass123").await;
    let mut amy = t.xmpp_login(&a, "amypass123", Some("phone")).await;
    let mut ben = t.xmpp_login(&b, "benpass123", Some("web")).await;
    amy.available().await;
    ben.available().await;

    // Children byte-identical, no whitespace added, from stamped even when spoofed. (Without
    // save_to_history: a saved message gets dialog_id, message_id and date_sent added to its
    // extraParams, see xmpp_chat.rs.)
    let payload = "<body>hi &lt;&amp;&gt; ü</body><markable xmlns='urn:xmpp:chat-markers:0'/><extraParams xmlns='jabber:client'><custom>1</custom><attachment id='9' type='image'/></extraParams>";
    amy.send(&format!(
        "<message from='{c}@localhost/x' to='{}' type='chat' id='m1'>{payload}</message>",
        ben.jid
    ))
    .await;
    let got = ben
        .expect("m1", |s| s.envelope().id.as_deref() == Some("m1"))
        .await;
    assert_eq!(got.envelope().from.as_deref(), Some(amy.jid.as_str()));
    assert!(got.as_str().contains(payload), "{}", got.as_str());
    assert_eq!(got.envelope().stanza_type.as_deref(), Some("chat"));

    amy.send(&format!(
        "<message to='{b}@localhost' type='chat' id='m2'><body>bare</body></message>"
    ))
    .await;
    let got = ben
        .expect("m2", |s| s.envelope().id.as_deref() == Some("m2"))
        .await;
    assert_eq!(got.envelope().from.as_deref(), Some(amy.jid.as_str()));

    // Headlines without from (QuickBlox system notifications) get it stamped.
    amy.send(&format!("<message to='{b}@localhost' type='headline' id='h1'><extraParams xmlns='jabber:client'><moduleIdentifier>SystemNotifications</moduleIdentifier></extraParams></message>")).await;
    let got = ben
        .expect("h1", |s| s.envelope().id.as_deref() == Some("h1"))
        .await;
    assert_eq!(got.envelope().from.as_deref(), Some(amy.jid.as_str()));
}

#[tokio::test]
async fn headlines_reach_every_resource_and_chat_the_highest_priority() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("ann", "annpass123").await;
    let b = t.xmpp_user("bea", "beapass123").await;
    let mut ann = t.xmpp_login(&a, "annpass123", None).await;
    let mut bea1 = t.xmpp_login(&b, "beapass123", Some("one")).await;
    let mut bea2 = t.xmpp_login(&b, "beapass123", Some("two")).await;
    bea1.send("<presence><priority>5</priority></presence>")
        .await;
    bea1.ping_server().await;
    bea2.send("<presence><priority>1</priority></presence>")
        .await;
    bea2.ping_server().await;
    ann.available().await;

    ann.send(&format!("<message to='{b}@localhost' type='headline' id='call'><extraParams xmlns='jabber:client'><moduleIdentifier>WebRTCVideoChat</moduleIdentifier></extraParams></message>")).await;
    bea1.expect("headline on one", |s| {
        s.envelope().id.as_deref() == Some("call")
    })
    .await;
    bea2.expect("headline on two", |s| {
        s.envelope().id.as_deref() == Some("call")
    })
    .await;

    ann.send(&format!(
        "<message to='{b}@localhost' type='chat' id='c1'><body>x</body></message>"
    ))
    .await;
    bea1.expect("chat on the priority-5 resource", |s| {
        s.envelope().id.as_deref() == Some("c1")
    })
    .await;
    bea2.expect_nothing(Duration::from_millis(300), |s| {
        s.envelope().id.as_deref() == Some("c1")
    })
    .await;
}

#[tokio::test]
async fn server_iqs_ping_disco_roster_carbons_and_unknown() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("ida", "idapass123").await;
    let mut ida = t.xmpp_login(&a, "idapass123", None).await;
    let pong = ida.ping_server().await;
    assert_eq!(pong.envelope().stanza_type.as_deref(), Some("result"));

    ida.send("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let info = ida
        .expect("disco", |s| s.envelope().id.as_deref() == Some("d1"))
        .await;
    assert!(
        info.as_str().contains("category='server'")
            && info.as_str().contains("var='urn:xmpp:ping'"),
        "{}",
        info.as_str()
    );

    ida.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let roster = ida
        .expect("roster", |s| s.envelope().id.as_deref() == Some("r1"))
        .await;
    assert!(
        roster.as_str().contains("jabber:iq:roster")
            && roster.envelope().stanza_type.as_deref() == Some("result")
    );

    ida.send("<iq type='set' id='cb1'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
        .await;
    let carbons = ida
        .expect("carbons", |s| s.envelope().id.as_deref() == Some("cb1"))
        .await;
    assert_eq!(carbons.envelope().stanza_type.as_deref(), Some("result"));

    ida.send("<iq type='get' id='u1' to='localhost'><query xmlns='urn:example:nothing'/></iq>")
        .await;
    let unknown = ida
        .expect("error", |s| s.envelope().id.as_deref() == Some("u1"))
        .await;
    assert!(
        unknown.as_str().contains("service-unavailable") && unknown.as_str().contains("code='503'"),
        "{}",
        unknown.as_str()
    );

    ida.send("<iq type='get' id='t1' to='localhost'><time xmlns='urn:xmpp:time'/></iq>")
        .await;
    let time = ida
        .expect("time", |s| s.envelope().id.as_deref() == Some("t1"))
        .await;
    assert!(time.as_str().contains("<utc>"));
}

#[tokio::test]
async fn iq_to_an_unavailable_resource_gets_service_unavailable() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("joe", "joepass123").await;
    let b = t.xmpp_user("kim", "kimpass123").await;
    let mut joe = t.xmpp_login(&a, "joepass123", None).await;
    joe.send(&format!(
        "<iq type='get' id='q1' to='{b}@localhost/gone'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await;
    let error = joe
        .expect("error", |s| s.envelope().id.as_deref() == Some("q1"))
        .await;
    assert_eq!(error.envelope().stanza_type.as_deref(), Some("error"));
    assert!(
        error.as_str().contains("service-unavailable"),
        "{}",
        error.as_str()
    );

    // An iq between two online resources is routed with from stamped, and the answer comes back.
    let mut kim = t.xmpp_login(&b, "kimpass123", Some("r")).await;
    joe.send(&format!(
        "<iq type='get' id='q2' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
        kim.jid
    ))
    .await;
    let ping = kim
        .expect("ping", |s| s.envelope().id.as_deref() == Some("q2"))
        .await;
    assert_eq!(ping.envelope().from.as_deref(), Some(joe.jid.as_str()));
    kim.send(&format!("<iq type='result' id='q2' to='{}'/>", joe.jid))
        .await;
    let pong = joe
        .expect("pong", |s| s.envelope().id.as_deref() == Some("q2"))
        .await;
    assert_eq!(pong.envelope().from.as_deref(), Some(kim.jid.as_str()));
}

#[tokio::test]
async fn other_applications_are_unreachable() {
    let t = TestServer::start().await;
    let other = switchboard::admin::create_app(&t.server.store, "other")
        .await
        .unwrap();
    let stranger = switchboard::admin::create_user(
        &t.server.store,
        switchboard::model::AppId(other.application_id),
        "zed",
        "zedpass123",
        None,
        &[],
    )
    .await
    .unwrap();
    let a = t.xmpp_user("lia", "liapass123").await;
    let mut lia = t.xmpp_login(&a, "liapass123", None).await;
    let stranger_node = format!("{}-{}", stranger.id.0, other.application_id);
    let mut zed = t.xmpp_login(&stranger_node, "zedpass123", None).await;
    zed.available().await;
    lia.send(&format!(
        "<message to='{stranger_node}@localhost' type='chat' id='x1'><body>hello</body></message>"
    ))
    .await;
    let bounce = lia
        .expect("bounce", |s| s.envelope().id.as_deref() == Some("x1"))
        .await;
    assert_eq!(bounce.envelope().stanza_type.as_deref(), Some("error"));
    zed.expect_nothing(Duration::from_millis(300), |s| {
        s.envelope().id.as_deref() == Some("x1")
    })
    .await;
}

#[tokio::test]
async fn a_new_session_with_the_same_resource_replaces_the_old_one() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("max", "maxpass123").await;
    let b = t.xmpp_user("nia", "niapass123").await;
    let mut first = t.xmpp_login(&a, "maxpass123", Some("dup")).await;
    let mut second = t.xmpp_login(&a, "maxpass123", Some("dup")).await;
    let transcript = first.read_to_close().await;
    assert!(
        transcript.contains("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{transcript}"
    );
    // The JID now belongs to the second session: messages to it arrive there.
    let mut nia = t.xmpp_login(&b, "niapass123", None).await;
    nia.send(&format!(
        "<message to='{a}@localhost/dup' type='chat' id='d1'><body>x</body></message>"
    ))
    .await;
    second
        .expect("message to the replaced JID", |s| {
            s.envelope().id.as_deref() == Some("d1")
        })
        .await;
}

async fn raw(t: &TestServer) -> XmppClient {
    let tcp = TcpStream::connect(t.server.xmpp_addrs.tcp).await.unwrap();
    XmppClient::over(Box::new(tcp), "localhost")
}

#[tokio::test]
async fn bad_input_gets_stream_errors() {
    let t = TestServer::start().await;
    let cases: Vec<(String, &str)> = vec![
        (format!("{}<message><body>unclosed</message>", header("localhost")), "not-well-formed"),
        (format!("{}<!DOCTYPE x [<!ENTITY a 'b'>]>", header("localhost")), "restricted-xml"),
        (format!("{}<message><body>&lol;</body></message>", header("localhost")), "restricted-xml"),
        (format!("{}<!-- hi -->", header("localhost")), "restricted-xml"),
        (format!("{}<message to='x@localhost'><body>early</body></message>", header("localhost")), "not-authorized"),
        ("<?xml version='1.0'?><stream:stream to='elsewhere.example' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>".to_string(), "host-unknown"),
        ("<stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='urn:wrong'>".to_string(), "invalid-namespace"),
        (format!("{}<message><body>{}</body></message>", header("localhost"), "a".repeat(300 * 1024)), "policy-violation"),
    ];
    for (input, condition) in cases {
        let mut client = raw(&t).await;
        client.send(&input).await;
        let transcript = client.read_to_close().await;
        assert!(
            transcript.contains(&format!("<{condition} ")),
            "{condition}: {}",
            &transcript[..transcript.len().min(600)]
        );
        assert!(
            transcript.ends_with("</stream:stream>"),
            "closed cleanly: {}",
            &transcript[transcript.len().saturating_sub(200)..]
        );
    }
}

#[tokio::test]
async fn a_burst_over_the_budget_is_slowed_not_cut_off() {
    // Before, a client over its burst was closed with policy-violation (at ~400 stanzas with
    // the defaults); now its socket is not read until tokens refill.
    let t = TestServer::start_with(|c| {
        c.xmpp.stanza_rate_per_s = 2000;
        c.xmpp.stanza_burst = 200;
    })
    .await;
    let a = t.xmpp_user("fay", "faypass123").await;
    let b = t.xmpp_user("gus", "guspass123").await;
    let mut fay = t.xmpp_login(&a, "faypass123", None).await;
    let mut gus = t.xmpp_login(&b, "guspass123", None).await;
    gus.available().await;
    const BURST: usize = 5000;
    let flood: String = (0..BURST)
        .map(|i| {
            format!("<message to='{b}@localhost' type='chat' id='f{i}'><body>{i}</body></message>")
        })
        .collect();
    let receive = async {
        let mut ids = Vec::new();
        while ids.len() < BURST {
            let stanza = gus.next().await.expect("the burst keeps coming");
            if stanza.envelope().name == "message" {
                ids.push(stanza.envelope().id.clone().unwrap());
            }
        }
        ids
    };
    let ((), ids) = tokio::join!(fay.send(&flood), receive);
    let want: Vec<String> = (0..BURST).map(|i| format!("f{i}")).collect();
    assert_eq!(ids, want, "every message, in order");
    let pong = fay.ping_server().await;
    assert_eq!(pong.envelope().stanza_type.as_deref(), Some("result"));
    assert!(
        t.metric("switchboard_xmpp_limit_hits_total{limit=\"stanza_rate\"}")
            .await
            >= Some(1.0)
    );
    assert_eq!(
        t.metric("switchboard_xmpp_stream_errors_total{condition=\"policy-violation\"}")
            .await,
        None
    );
}

#[tokio::test]
async fn sasl_plain_needs_tls_from_non_loopback_and_auth_before_bind() {
    let t = TestServer::start().await;
    let node = t.xmpp_user("hal", "halpass123").await;
    // Loopback may use PLAIN without TLS (allow_plain_on_loopback), exercised here raw.
    let mut client = raw(&t).await;
    client.send(&header("localhost")).await;
    client
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            plain(&node, "halpass123")
        ))
        .await;
    let answer = client
        .expect("success", |s| s.envelope().name == "success")
        .await;
    assert_eq!(answer.envelope().name, "success");
    // An unknown mechanism is refused.
    let mut client = raw(&t).await;
    client.send(&header("localhost")).await;
    client
        .send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>eA==</auth>")
        .await;
    let answer = client
        .expect("failure", |s| s.envelope().name == "failure")
        .await;
    assert!(answer.as_str().contains("invalid-mechanism"));
}
