//! When the store fails, clients get `internal-server-error` (and the log gets the cause), never
//! an answer that reads the failure as "no such user" or "no such item"; and counters follow
//! what is stored, not what was attempted.

mod common;

use common::*;

fn id_is(id: &'static str) -> impl Fn(&xmpp_proto::Stanza) -> bool {
    move |s| s.envelope().id.as_deref() == Some(id)
}

#[tokio::test]
async fn a_store_failure_is_an_internal_server_error_not_item_not_found() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("ruth", "ruthpass123").await;
    let b = t.xmpp_user("saul", "saulpass123").await;
    let mut ruth = t.xmpp_login(&a, "ruthpass123", None).await;
    // Logged in; now the users table disappears from under the server.
    sqlx::query("ALTER TABLE users RENAME TO users_gone")
        .execute(&t.server.store.pool_for_tests())
        .await
        .unwrap();
    ruth.send(&format!(
        "<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='{b}@localhost' name='Saul'/></query></iq>"
    ))
    .await;
    let reply = ruth.expect("roster set answer", id_is("r1")).await;
    assert_eq!(reply.envelope().stanza_type.as_deref(), Some("error"));
    assert!(
        reply.as_str().contains("internal-server-error"),
        "{}",
        reply.as_str()
    );
    // An offline message: the recipient's existence cannot be checked, so the sender hears
    // of a server error rather than of a user who does not exist.
    ruth.send(&format!(
        "<message to='{b}@localhost' type='chat' id='m1'><body>hi</body></message>"
    ))
    .await;
    let bounce = ruth.expect("bounce", id_is("m1")).await;
    assert!(
        bounce.as_str().contains("internal-server-error"),
        "{}",
        bounce.as_str()
    );
}

#[tokio::test]
async fn the_offline_gauge_keeps_messages_whose_delete_failed() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("tess", "tesspass123").await;
    let b = t.xmpp_user("ugo", "ugopass123").await;
    let mut tess = t.xmpp_login(&a, "tesspass123", None).await;
    for id in ["o1", "o2"] {
        tess.send(&format!(
            "<message to='{b}@localhost' type='chat' id='{id}'><body>x</body></message>"
        ))
        .await;
    }
    tess.ping_server().await;
    sqlx::query(
        "CREATE TRIGGER keep_offline BEFORE DELETE ON offline_messages \
         BEGIN SELECT RAISE(ABORT, 'deletes refused by the test'); END",
    )
    .execute(&t.server.store.pool_for_tests())
    .await
    .unwrap();
    let mut ugo = t.xmpp_login(&b, "ugopass123", None).await;
    ugo.send("<presence/>").await;
    ugo.expect("o1", id_is("o1")).await;
    ugo.expect("o2", id_is("o2")).await;
    ugo.ping_server().await;
    // Both rows are still stored (they will be delivered again), so the gauge still counts them.
    assert_eq!(
        t.metric("switchboard_xmpp_offline_queue_depth").await,
        Some(2.0)
    );
}
