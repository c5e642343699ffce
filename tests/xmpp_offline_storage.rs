//! Offline storage (XEP-0160, XEP-0203) on a real server: chat messages to an offline user are
//! kept across a restart and delivered once, in order, with a delay stamp; call signals are not
//! kept; the per-user cap holds for messages left over when a session ends, too.

mod common;

use std::time::Duration;

use common::*;

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
async fn the_offline_cap_holds_for_messages_left_at_session_end() {
    let t = TestServer::start_with(|c| c.xmpp.offline_max_per_user = 3).await;
    let a = t.xmpp_user("sue", "suepass123").await;
    let b = t.xmpp_user("ray", "raypass123").await;
    let mut sue = t.xmpp_login(&a, "suepass123", Some("desk")).await;
    let mut ray = t.xmpp_login(&b, "raypass123", Some("phone")).await;
    ray.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    ray.expect("enabled", |s| s.envelope().name == "enabled")
        .await;
    ray.available().await;
    for n in 0..10 {
        sue.send(&format!(
            "<message to='{b}@localhost/phone' type='chat' id='c{n}'><body>{n}</body></message>"
        ))
        .await;
    }
    // Ray gets all ten but acknowledges none, then logs out: they are his to keep offline.
    for n in 0..10 {
        let id = format!("c{n}");
        ray.expect(&id, |s| s.envelope().id.as_deref() == Some(id.as_str()))
            .await;
    }
    ray.send("</stream:stream>").await;
    ray.read_to_close().await;
    // Three fit under the cap; the sender hears about the seven that did not.
    for _ in 0..7 {
        let bounce = sue
            .expect("resource-constraint", |s| {
                s.envelope().stanza_type.as_deref() == Some("error")
            })
            .await;
        assert!(
            bounce.as_str().contains("resource-constraint"),
            "{}",
            bounce.as_str()
        );
    }
    assert_eq!(
        t.metric("switchboard_xmpp_offline_queue_depth").await,
        Some(3.0)
    );
    let mut ray = t.xmpp_login(&b, "raypass123", Some("phone")).await;
    ray.send("<presence/>").await;
    for id in ["c0", "c1", "c2"] {
        ray.expect("stored message", common::xmpp::id_is(id)).await;
    }
}

#[tokio::test]
async fn a_large_offline_backlog_arrives_in_pages_in_order() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("pia", "piapass123").await;
    let b = t.xmpp_user("quin", "quinpass12").await;
    let mut pia = t.xmpp_login(&a, "piapass123", None).await;
    const STORED: usize = 175;
    for n in 0..STORED {
        pia.send(&format!(
            "<message to='{b}@localhost' type='chat' id='p{n}'><body>{n}</body></message>"
        ))
        .await;
    }
    pia.ping_server().await;
    assert_eq!(
        t.metric("switchboard_xmpp_offline_queue_depth").await,
        Some(STORED as f64)
    );
    let mut quin = t.xmpp_login(&b, "quinpass12", None).await;
    quin.send("<presence/>").await;
    for n in 0..STORED {
        let id = format!("p{n}");
        quin.expect(&id, |s| s.envelope().id.as_deref() == Some(id.as_str()))
            .await;
    }
    quin.ping_server().await;
    assert_eq!(
        t.metric("switchboard_xmpp_offline_queue_depth").await,
        Some(0.0)
    );
}
