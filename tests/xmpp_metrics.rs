//! The XMPP metrics on a real server: connections, authentications, routed stanzas and the
//! offline queue are exported, with no JIDs in labels.

mod common;

use common::xmpp::XmppClient;
use common::*;

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
