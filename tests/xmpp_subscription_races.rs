//! Subscription changes touch two rosters; they are written in one transaction, so two users
//! subscribing to each other at the same moment both end up with a complete, matching roster
//! (before, each change read both rosters and wrote them separately, and one update was lost).

mod common;

use common::xmpp::{id_is, XmppClient};
use common::*;

async fn roster(client: &mut XmppClient, id: &'static str) -> String {
    client
        .send(&format!(
            "<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'/></iq>"
        ))
        .await;
    client
        .expect("roster", id_is(id))
        .await
        .as_str()
        .to_string()
}

#[tokio::test]
async fn simultaneous_mutual_subscriptions_lose_no_update() {
    let t = TestServer::start().await;
    let has_type = |t: &'static str| {
        move |s: &xmpp_proto::Stanza| s.envelope().stanza_type.as_deref() == Some(t)
    };
    // Several pairs race at once, so an interleaving that loses an update is all but certain
    // to happen somewhere if the writes are not atomic.
    let mut pairs = Vec::new();
    for n in 0..6 {
        let a = t.xmpp_user(&format!("ann{n}"), "annpass123").await;
        let b = t.xmpp_user(&format!("bob{n}"), "bobpass123").await;
        let mut ann = t.xmpp_login(&a, "annpass123", None).await;
        let mut bob = t.xmpp_login(&b, "bobpass123", None).await;
        ann.available().await;
        bob.available().await;
        pairs.push((a, b, ann, bob));
    }
    for (a, b, ann, bob) in &mut pairs {
        ann.send(&format!("<presence to='{b}@localhost' type='subscribe'/>"))
            .await;
        bob.send(&format!("<presence to='{a}@localhost' type='subscribe'/>"))
            .await;
    }
    for (a, b, ann, bob) in &mut pairs {
        ann.expect("bob's request", has_type("subscribe")).await;
        bob.expect("ann's request", has_type("subscribe")).await;
        // Each side's own request is pending: ask='subscribe' on both rosters.
        let ann_roster = roster(ann, "r1").await;
        let bob_roster = roster(bob, "r2").await;
        assert!(
            ann_roster.contains(&format!(
                "jid='{b}@localhost' subscription='none' ask='subscribe'"
            )),
            "{ann_roster}"
        );
        assert!(
            bob_roster.contains(&format!(
                "jid='{a}@localhost' subscription='none' ask='subscribe'"
            )),
            "{bob_roster}"
        );
        // Both approve: the requests each side received are still pending, so both become
        // mutual subscriptions.
        ann.send(&format!("<presence to='{b}@localhost' type='subscribed'/>"))
            .await;
        bob.send(&format!("<presence to='{a}@localhost' type='subscribed'/>"))
            .await;
        ann.expect("bob's approval", has_type("subscribed")).await;
        bob.expect("ann's approval", has_type("subscribed")).await;
        let ann_roster = roster(ann, "r3").await;
        let bob_roster = roster(bob, "r4").await;
        assert!(
            ann_roster.contains(&format!("jid='{b}@localhost' subscription='both'/>")),
            "{ann_roster}"
        );
        assert!(
            bob_roster.contains(&format!("jid='{a}@localhost' subscription='both'/>")),
            "{bob_roster}"
        );
    }
}
