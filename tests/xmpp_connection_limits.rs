//! Connection limits on a real server: connections per address over the limit are closed at
//! once, and an idle connection is closed with `connection-timeout`.

mod common;

use common::xmpp::XmppClient;
use common::*;

#[tokio::test]
async fn connection_limit_per_ip_and_idle_timeout() {
    let t = TestServer::start_with(|c| {
        c.xmpp.max_connections_per_ip = 2;
        c.xmpp.idle_timeout_s = 1;
    })
    .await;
    let addr = t.server.xmpp_addrs.tcp;
    let connect = || async {
        XmppClient::over(
            Box::new(tokio::net::TcpStream::connect(addr).await.unwrap()),
            "localhost",
        )
    };
    // The server answers a stream header only on a connection it has counted.
    let mut first = connect().await;
    first.open_stream().await;
    let mut second = connect().await;
    second.open_stream().await;
    let mut third = connect().await;
    third.send(&common::xmpp::header("localhost")).await;
    let refused = third.read_to_close().await;
    assert!(
        refused.is_empty(),
        "over the limit the connection is closed at once: {refused}"
    );
    // The idle one is closed with connection-timeout.
    let transcript = first.read_to_close().await;
    assert!(transcript.contains("connection-timeout"), "{transcript}");
}
