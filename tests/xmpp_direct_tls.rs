//! Direct TLS (XEP-0368) on a real server: a listener that starts with TLS offers SASL PLAIN
//! without STARTTLS.

mod common;

use common::xmpp::XmppClient;
use common::*;

#[tokio::test]
async fn direct_tls_listener_offers_plain_without_starttls() {
    let t = TestServer::start_with(|c| c.xmpp.direct_tls_listen = "127.0.0.1:0".into()).await;
    let node = t.xmpp_user("dtl", "dtlpass123").await;
    let addr = t.server.xmpp_addrs.direct_tls.expect("direct TLS listener");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = common::xmpp::tls_connector(&t.server.tls.cert, &[b"xmpp-client"])
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let mut client = XmppClient::over(Box::new(tls), "localhost");
    client.send(&common::xmpp::header("localhost")).await;
    let features = client
        .expect("features", |s| s.envelope().name == "features")
        .await;
    assert!(
        features.as_str().contains("PLAIN") && !features.as_str().contains("starttls"),
        "{}",
        features.as_str()
    );
    client
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            common::xmpp::plain(&node, "dtlpass123")
        ))
        .await;
    client
        .expect("success", |s| s.envelope().name == "success")
        .await;
}
