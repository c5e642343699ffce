//! A client that closes its stream cleanly (`</stream:stream>`) has logged out, even with
//! resumable stream management on (XEP-0198 §5): its contacts see it go at once and iqs to the
//! old resource are refused, instead of the session lingering for `sm_resume_timeout_s`.

mod common;

use common::*;

#[tokio::test]
async fn a_clean_close_ends_a_resumable_session_at_once() {
    // A long resumption window: before the fix the session stayed online for all of it.
    let t = TestServer::start_with(|config| config.xmpp.sm_resume_timeout_s = 3600).await;
    let a = t.xmpp_user("leaver", "leaverpass1").await;
    let b = t.xmpp_user("watcher", "watcherpass1").await;
    let mut leaver = t.xmpp_login(&a, "leaverpass1", Some("phone")).await;
    let mut watcher = t.xmpp_login(&b, "watcherpass1", Some("web")).await;
    leaver
        .send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let enabled = leaver
        .expect("enabled", |s| s.envelope().name == "enabled")
        .await;
    assert!(enabled.as_str().contains("resume='true'"));
    // Directed presence: the watcher is told when the leaver goes unavailable.
    leaver.available().await;
    leaver
        .send(&format!("<presence to='{b}@localhost/web'/>"))
        .await;
    watcher
        .expect("presence", |s| {
            s.envelope().name == "presence" && s.envelope().stanza_type.is_none()
        })
        .await;

    leaver.send("</stream:stream>").await;
    let closing = leaver.read_to_close().await;
    assert!(closing.contains("</stream:stream>"), "{closing}");

    let gone = watcher
        .expect("unavailable", |s| {
            s.envelope().stanza_type.as_deref() == Some("unavailable")
        })
        .await;
    assert_eq!(
        gone.envelope().from.as_deref(),
        Some(format!("{a}@localhost/phone").as_str())
    );
    watcher
        .send(&format!(
            "<iq type='get' id='v1' to='{a}@localhost/phone'><query xmlns='jabber:iq:version'/></iq>"
        ))
        .await;
    let reply = watcher
        .expect("answer", |s| s.envelope().id.as_deref() == Some("v1"))
        .await;
    assert!(
        reply.as_str().contains("service-unavailable"),
        "{}",
        reply.as_str()
    );
}
