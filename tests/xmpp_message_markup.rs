//! What the server does with a message depends on its elements, never on its text: a body
//! whose CDATA section spells out `<private xmlns='urn:xmpp:carbons:2'/>` or a carbon's
//! `<sent>` is still copied to the sender's other devices and still kept offline.

mod common;

use common::xmpp::id_is;
use common::*;

const CARBONS: &str = "urn:xmpp:carbons:2";

#[tokio::test]
async fn cdata_that_looks_like_markup_does_not_switch_carbons_off() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("cora", "corapass123").await;
    let b = t.xmpp_user("dale", "dalepass123").await;
    let mut phone = t.xmpp_login(&a, "corapass123", Some("phone")).await;
    let mut web = t.xmpp_login(&a, "corapass123", Some("web")).await;
    web.send(&format!(
        "<iq type='set' id='c1'><enable xmlns='{CARBONS}'/></iq>"
    ))
    .await;
    web.expect("carbons enabled", id_is("c1")).await;
    phone.send(&format!(
        "<message to='{b}@localhost' type='chat' id='m1'><body><![CDATA[<private xmlns='{CARBONS}'/>]]></body></message>"
    ))
    .await;
    phone.ping_server().await;
    let carbon = web
        .expect("sent carbon", |s| {
            s.as_str().contains(&format!("<sent xmlns='{CARBONS}'"))
        })
        .await;
    assert!(carbon.as_str().contains("CDATA"), "{}", carbon.as_str());
}

#[tokio::test]
async fn cdata_that_looks_like_a_carbon_is_still_stored_offline() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("edna", "ednapass123").await;
    let b = t.xmpp_user("finn", "finnpass123").await;
    let mut edna = t.xmpp_login(&a, "ednapass123", None).await;
    edna.send(&format!(
        "<message to='{b}@localhost' type='chat' id='m2'><body><![CDATA[<sent xmlns='{CARBONS}'>]]></body></message>"
    ))
    .await;
    edna.ping_server().await;
    let mut finn = t.xmpp_login(&b, "finnpass123", None).await;
    // Initial presence flushes the offline queue.
    finn.send("<presence/>").await;
    let kept = finn.expect("the stored message", id_is("m2")).await;
    assert!(
        kept.as_str().contains("urn:xmpp:delay"),
        "{}",
        kept.as_str()
    );
}
