//! Connection limits on a real server: connections per address over the limit are closed at
//! once, an idle connection is closed with `connection-timeout`, and so is one that does not
//! authenticate in time however it trickles bytes; an office behind one address is not refused.

mod common;

use std::time::Duration;

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

#[tokio::test]
async fn a_trickle_before_authentication_is_closed_at_the_deadline() {
    // A byte every 200 ms keeps the connection far from its idle timeout; the authentication
    // deadline is not moved by it.
    let t = TestServer::start_with(|c| c.xmpp.auth_timeout_s = 1).await;
    let stream = tokio::net::TcpStream::connect(t.server.xmpp_addrs.tcp)
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let header = common::xmpp::header("localhost");
        let bytes = header.bytes().chain(std::iter::repeat(b' '));
        for byte in bytes.take(100) {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut transcript = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        use tokio::io::AsyncReadExt;
        reader.read_to_end(&mut transcript).await
    })
    .await;
    trickle.abort();
    let transcript = String::from_utf8_lossy(&transcript);
    assert!(read.is_ok(), "still open after 15 s: {transcript}");
    assert!(transcript.contains("connection-timeout"), "{transcript}");
}

#[tokio::test]
async fn five_hundred_logins_from_one_address_succeed_together() {
    // An office behind one NAT address, with the default limits: before, the 61st login in five
    // minutes was refused and the 201st connection closed at accept.
    let t = TestServer::start().await;
    let node = t.xmpp_user("office", "officepass1").await;
    let (addr, cert) = (t.server.xmpp_addrs.tcp, t.server.tls.cert.clone());
    let logins = (0..500).map(|n| {
        let (node, cert) = (node.clone(), cert.clone());
        async move {
            XmppClient::login(
                addr,
                "localhost",
                &cert,
                &node,
                "officepass1",
                Some(&format!("desk{n}")),
            )
            .await
        }
    });
    let clients = futures_util::future::join_all(logins).await;
    let failed: Vec<&String> = clients.iter().filter_map(|c| c.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
}
