//! Offline storage (XEP-0160, XEP-0203) on a real server: chat messages to an offline user are
//! kept across a restart and delivered once, in order, with a delay stamp; call signals are not
//! kept.

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
