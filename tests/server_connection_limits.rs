//! Connections that cannot pin the server's resources: a server-wide connection budget (below
//! the descriptor limit) refused at accept with `/ready` saying so, and REST request bodies
//! that must arrive in time.

mod common;

use std::time::Duration;

use common::xmpp::XmppClient;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn ready_status(t: &TestServer) -> u16 {
    reqwest::get(format!("http://{}/ready", t.server.metrics_addr.unwrap()))
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn past_the_connection_budget_new_connections_are_refused_and_ready_says_so() {
    let t = TestServer::start_with(|c| c.server.max_connections = 3).await;
    assert_eq!(ready_status(&t).await, 200);
    let addr = t.server.xmpp_addrs.tcp;
    let connect = || async {
        XmppClient::over(
            Box::new(tokio::net::TcpStream::connect(addr).await.unwrap()),
            "localhost",
        )
    };
    // The server answers a stream header only on a connection it has counted.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut client = connect().await;
        client.open_stream().await;
        held.push(client);
    }
    assert_eq!(ready_status(&t).await, 503, "the budget is spent");
    let mut refused = connect().await;
    refused.send(&common::xmpp::header("localhost")).await;
    assert_eq!(refused.read_to_close().await, "", "closed at accept");
    // REST shares the budget.
    let mut http = tokio::net::TcpStream::connect(t.server.api_http_addr.unwrap())
        .await
        .unwrap();
    let _ = http
        .write_all(b"GET /session.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), http.read_to_end(&mut answer)).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // A connection ends: there is room again.
    held.pop().unwrap().drop_connection().await;
    eventually("ready again", || async { ready_status(&t).await == 200 }).await;
}

#[tokio::test]
async fn a_request_body_that_trickles_is_cut_off() {
    let t = TestServer::start_with(|c| c.api.body_read_timeout_s = 1).await;
    let mut http = tokio::net::TcpStream::connect(t.server.api_http_addr.unwrap())
        .await
        .unwrap();
    http.write_all(
        b"POST /session.json HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\napp",
    )
    .await
    .unwrap();
    // The rest of the body never comes; before, the connection stayed open for minutes.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), http.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "still open after 10 s: {answer}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}
