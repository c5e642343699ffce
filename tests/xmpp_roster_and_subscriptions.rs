//! Rosters and presence subscriptions (RFC 6121 §2–§4) on a real server: roster sets, pushes
//! and versioning, subscription handshakes with presence broadcast, unavailable presence and
//! last activity (XEP-0012) when a contact disconnects, and removing a subscribed contact.

mod common;

use std::time::Duration;

use common::xmpp::{id_is, subscribe};
use common::*;

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
