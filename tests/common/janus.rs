//! A janus.js-like client over WebSocket for the SFU tests: replies matched by transaction,
//! an `ack` checked before every asynchronous plugin event.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use super::TestServer;

pub type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A janus.js-like client over WebSocket.
pub struct Janus {
    pub socket: Socket,
    pub next: u64,
    pub session: u64,
}

impl Janus {
    pub async fn connect(t: &TestServer, token: Option<&str>) -> Result<Janus, u16> {
        let addr = t.server.sfu_addrs.signalling.expect("signalling listener");
        let url = match token {
            Some(token) => format!("ws://{addr}/?token={token}"),
            None => format!("ws://{addr}/"),
        };
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        match tokio_tungstenite::client_async(request, tcp).await {
            Ok((socket, response)) => {
                assert_eq!(
                    response.headers().get("sec-websocket-protocol").unwrap(),
                    "janus-protocol"
                );
                Ok(Janus {
                    socket,
                    next: 0,
                    session: 0,
                })
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(other) => panic!("{other}"),
        }
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.socket.send(Message::Text(text.into())).await.unwrap();
    }

    /// Sends `request` with a fresh transaction (and the session, when there is one).
    pub async fn send(&mut self, mut request: Value, handle: Option<u64>) -> String {
        self.next += 1;
        let transaction = format!("tx{}", self.next);
        request["transaction"] = transaction.clone().into();
        if self.session != 0 {
            request["session_id"] = self.session.into();
        }
        if let Some(handle) = handle {
            request["handle_id"] = handle.into();
        }
        self.send_raw(&request.to_string()).await;
        transaction
    }

    pub async fn recv(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("a message within 10 s")
                .expect("open")
                .unwrap();
            if let Message::Text(text) = frame {
                return serde_json::from_str(text.as_str()).unwrap();
            }
        }
    }

    /// The next message satisfying `want` (others are skipped).
    pub async fn expect(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..50 {
            let message = self.recv().await;
            if want(&message) {
                return message;
            }
        }
        panic!("no {what}");
    }

    pub async fn reply_to(&mut self, transaction: &str) -> Value {
        let transaction = transaction.to_string();
        self.expect("the reply", move |m| {
            m["transaction"] == transaction.as_str()
        })
        .await
    }

    pub async fn create(&mut self) -> u64 {
        let tx = self.send(json!({"janus": "create"}), None).await;
        let reply = self.reply_to(&tx).await;
        assert_eq!(reply["janus"], "success", "{reply}");
        self.session = reply["data"]["id"].as_u64().unwrap();
        self.session
    }

    pub async fn attach(&mut self) -> u64 {
        let tx = self
            .send(
                json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
                None,
            )
            .await;
        let reply = self.reply_to(&tx).await;
        assert_eq!(reply["janus"], "success", "{reply}");
        assert_eq!(reply["session_id"], self.session);
        reply["data"]["id"].as_u64().unwrap()
    }

    /// An asynchronous plugin request: its ack, then its event (ack first, always).
    pub async fn message(&mut self, handle: u64, body: Value) -> Value {
        let event = self
            .message_event(handle, json!({"janus": "message", "body": body}))
            .await;
        event["plugindata"]["data"].clone()
    }

    /// Sends a `message` request (body and, if any, jsep) and returns its whole event, after
    /// checking that its ack came first.
    pub async fn message_event(&mut self, handle: u64, request: Value) -> Value {
        let tx = self.send(request, Some(handle)).await;
        let ack = self.reply_to(&tx).await;
        assert_eq!(ack["janus"], "ack", "the ack comes before the event: {ack}");
        let event = self.reply_to(&tx).await;
        assert_eq!(event["janus"], "event", "{event}");
        assert_eq!(event["sender"], handle);
        event
    }

    /// A synchronous plugin request: `success` with plugindata.
    pub async fn sync(&mut self, handle: u64, body: Value) -> Value {
        let tx = self
            .send(json!({"janus": "message", "body": body}), Some(handle))
            .await;
        let reply = self.reply_to(&tx).await;
        assert_eq!(reply["janus"], "success", "{reply}");
        assert_eq!(reply["plugindata"]["plugin"], "janus.plugin.videoroom");
        reply["plugindata"]["data"].clone()
    }
}
