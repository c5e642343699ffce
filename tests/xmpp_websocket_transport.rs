//! XMPP over WebSocket (RFC 7395) on a real server: the `xmpp` subprotocol, framing with
//! `<open/>` and `<close/>`, and a session over it.

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use common::*;

#[tokio::test]
async fn websocket_transport_with_rfc7395_framing() {
    let t = TestServer::start().await;
    let a = t.xmpp_user("zoe", "zoepass123").await;
    let ws = t.server.xmpp_addrs.ws.unwrap();
    let mut request = format!("ws://{ws}/").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "xmpp".parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(ws).await.unwrap();
    let (mut socket, response) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "xmpp");
    socket
        .send(Message::text(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
        ))
        .await
        .unwrap();
    let open = recv(&mut socket).await;
    assert!(
        open.starts_with("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'"),
        "{open}"
    );
    let features = recv(&mut socket).await;
    assert!(
        features.contains("PLAIN") && !features.contains("starttls"),
        "{features}"
    );
    socket
        .send(Message::text(format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            common::xmpp::plain(&a, "zoepass123")
        )))
        .await
        .unwrap();
    assert!(recv(&mut socket).await.starts_with("<success"));
    socket
        .send(Message::text(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
        ))
        .await
        .unwrap();
    recv(&mut socket).await;
    assert!(recv(&mut socket).await.contains("xmpp-bind"));
    socket.send(Message::text("<iq type='set' id='b' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")).await.unwrap();
    let bound = recv(&mut socket).await;
    assert!(
        bound.contains("xmlns='jabber:client'") && bound.contains("<jid>"),
        "{bound}"
    );
    socket.send(Message::text("<iq type='get' id='p' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>")).await.unwrap();
    assert!(recv(&mut socket).await.contains("id='p'"));
    socket
        .send(Message::text(
            "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
        ))
        .await
        .unwrap();
    assert!(recv(&mut socket).await.starts_with("<close"));

    // Without the xmpp subprotocol the upgrade is refused.
    let plain = format!("ws://{ws}/").into_client_request().unwrap();
    let tcp = tokio::net::TcpStream::connect(ws).await.unwrap();
    assert!(tokio_tungstenite::client_async(plain, tcp).await.is_err());
}

async fn recv(socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> String {
    match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
        other => panic!("no frame: {other:?}"),
    }
}
