//! `xmpp.domain` may be configured in any case: JIDs are compared lowercased everywhere
//! (before, blocking compared a lowercased JID with the configured spelling and never told a
//! blocked contact that the user went away).

mod common;

use common::xmpp::{id_is, subscribe};
use common::*;

#[tokio::test]
async fn a_mixed_case_domain_works_for_login_routing_and_blocking() {
    let t = TestServer::start_with(|config| config.xmpp.domain = "Chat.Example".into()).await;
    let a = t.xmpp_user("gail", "gailpass123").await;
    let b = t.xmpp_user("hank", "hankpass123").await;
    let mut gail = t.xmpp_login(&a, "gailpass123", Some("phone")).await;
    let mut hank = t.xmpp_login(&b, "hankpass123", Some("web")).await;
    gail.available().await;
    hank.available().await;
    // Hank sees Gail's presence.
    subscribe(&mut hank, &b, &mut gail, &a).await;
    gail.send(&format!(
        "<message to='{b}@chat.example' type='chat' id='m1'><body>hi</body></message>"
    ))
    .await;
    hank.expect("message", id_is("m1")).await;
    gail.send(&format!(
        "<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='{b}@Chat.Example'/></block></iq>"
    ))
    .await;
    gail.expect("block result", id_is("b1")).await;
    let gone = hank
        .expect("unavailable", |s| {
            s.envelope().stanza_type.as_deref() == Some("unavailable")
        })
        .await;
    assert_eq!(
        gone.envelope().from.as_deref(),
        Some(format!("{a}@chat.example/phone").as_str())
    );
}
