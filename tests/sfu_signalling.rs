//! The Janus API of the conference SFU on a real server, over WebSocket (subprotocol
//! `janus-protocol`) and HTTP long poll: the core requests and their errors, QuickBlox mode
//! (string rooms = dialogs, made on first join, the user's session token in the URL, only
//! occupants in, publishing only as oneself), stock mode (numeric rooms made with `create`,
//! pin and secret), the events others see, and sessions ending with their socket or their
//! timeout.

mod common;

use std::time::Duration;

use common::janus::Janus;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

struct Member {
    id: i64,
    token: String,
}

async fn member(t: &TestServer, login: &str) -> Member {
    let password = format!("{login}pass12");
    let node = t.xmpp_user(login, &password).await;
    let id: i64 = node.split('-').next().unwrap().parse().unwrap();
    let token = t.session(Some((login, &password))).await;
    Member { id, token }
}

async fn group_dialog(t: &TestServer, owner: &Member, others: &[&Member]) -> String {
    let occupants: Vec<i64> = others.iter().map(|m| m.id).collect();
    let response = t
        .client
        .request(Method::POST, t.url("/chat/Dialog.json"))
        .header("QB-Token", &owner.token)
        .json(&json!({"type": 2, "name": "Call", "occupants_ids": occupants}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let dialog: Value = response.json().await.unwrap();
    dialog["_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn core_requests_and_their_errors() {
    let t = TestServer::start().await;
    let mut janus = Janus::connect(&t, None).await.unwrap();
    janus.send_raw("{not json").await;
    let reply = janus.recv().await;
    assert_eq!(
        (reply["janus"].as_str(), reply["error"]["code"].as_u64()),
        (Some("error"), Some(454))
    );
    assert!(reply["error"]["reason"].is_string());
    janus.send_raw(r#"{"janus":"create"}"#).await;
    assert_eq!(janus.recv().await["error"]["code"], 456);
    janus
        .send_raw(r#"{"janus":"teleport","transaction":"t1"}"#)
        .await;
    let reply = janus.recv().await;
    assert_eq!(
        (
            reply["error"]["code"].as_u64(),
            reply["transaction"].as_str()
        ),
        (Some(453), Some("t1"))
    );
    janus
        .send_raw(r#"{"janus":"keepalive","transaction":"t2","session_id":424242}"#)
        .await;
    assert_eq!(janus.recv().await["error"]["code"], 458);
    janus
        .send_raw(r#"{"janus":"attach","plugin":"janus.plugin.videoroom","transaction":"t3"}"#)
        .await;
    assert_eq!(janus.recv().await["error"]["code"], 457);

    let session = janus.create().await;
    assert!(session > 0 && session < (1 << 53));
    let tx = janus.send(json!({"janus": "keepalive"}), None).await;
    let ack = janus.reply_to(&tx).await;
    assert_eq!(
        (ack["janus"].as_str(), ack["session_id"].as_u64()),
        (Some("ack"), Some(session))
    );
    let tx = janus
        .send(
            json!({"janus": "attach", "plugin": "janus.plugin.echotest"}),
            None,
        )
        .await;
    assert_eq!(janus.reply_to(&tx).await["error"]["code"], 460);
    let handle = janus.attach().await;
    let tx = janus.send(json!({"janus": "message"}), Some(handle)).await;
    assert_eq!(janus.reply_to(&tx).await["error"]["code"], 456);
    let tx = janus
        .send(json!({"janus": "message", "body": {}}), Some(handle + 1))
        .await;
    assert_eq!(janus.reply_to(&tx).await["error"]["code"], 459);
    // Plugin errors are data inside a synchronous success.
    let error = janus.sync(handle, json!({"request": "fly"})).await;
    assert_eq!(error["error_code"], 423);
    let error = janus
        .sync(handle, json!({"request": "join", "ptype": "publisher"}))
        .await;
    assert_eq!(error["error_code"], 429);
    let tx = janus.send(json!({"janus": "info"}), None).await;
    let info = janus.reply_to(&tx).await;
    assert_eq!(info["error"]["code"], 457, "info takes no session: {info}");
    // hangup without a PeerConnection: nothing to close, the handle stays.
    let tx = janus.send(json!({"janus": "hangup"}), Some(handle)).await;
    assert_eq!(janus.reply_to(&tx).await["janus"], "success");
    let tx = janus
        .send(
            json!({"janus": "trickle", "candidate": {"completed": true}}),
            Some(handle),
        )
        .await;
    assert_eq!(janus.reply_to(&tx).await["janus"], "ack");
    // claim: the session moves to another socket of the same client; its replies go there.
    let mut other = Janus::connect(&t, None).await.unwrap();
    other.session = session;
    let tx = other.send(json!({"janus": "claim"}), None).await;
    let claimed = other.reply_to(&tx).await;
    assert_eq!(
        (claimed["janus"].as_str(), claimed["session_id"].as_u64()),
        (Some("success"), Some(session))
    );
    let tx = other.send(json!({"janus": "detach"}), Some(handle)).await;
    assert_eq!(other.reply_to(&tx).await["janus"], "success");
    // Closing the first socket no longer ends the session: it lives on the second.
    drop(janus);
    let tx = other.send(json!({"janus": "keepalive"}), None).await;
    assert_eq!(other.reply_to(&tx).await["janus"], "ack");
    let mut janus = other;
    let tx = janus.send(json!({"janus": "destroy"}), None).await;
    let reply = janus.reply_to(&tx).await;
    assert_eq!(
        (reply["janus"].as_str(), reply["session_id"].as_u64()),
        (Some("success"), Some(session))
    );
    let tx = janus.send(json!({"janus": "keepalive"}), None).await;
    assert_eq!(janus.reply_to(&tx).await["error"]["code"], 458);
}

#[tokio::test]
async fn quickblox_rooms_are_dialogs_and_let_in_only_their_occupants_as_themselves() {
    let t = TestServer::start().await;
    let alice = member(&t, "confalice").await;
    let bob = member(&t, "confbob").await;
    let carol = member(&t, "confcarol").await;
    let dialog = group_dialog(&t, &alice, &[&bob]).await;

    assert_eq!(
        Janus::connect(&t, Some("not-a-token")).await.err(),
        Some(403)
    );

    let mut a = Janus::connect(&t, Some(&alice.token)).await.unwrap();
    a.create().await;
    let ha = a.attach().await;
    let impostor = a
        .message(ha, json!({"request": "join", "room": dialog, "ptype": "publisher", "id": bob.id, "display": "Bob?"}))
        .await;
    assert_eq!(impostor["error_code"], 433, "{impostor}");
    let joined = a
        .message(ha, json!({"request": "join", "room": dialog, "ptype": "publisher", "id": alice.id, "display": "Alice"}))
        .await;
    assert_eq!(joined["videoroom"], "joined", "{joined}");
    assert_eq!(
        joined["room"],
        dialog.as_str(),
        "string room ids stay strings"
    );
    assert_eq!(joined["id"], alice.id, "participant ids are numbers");
    assert_eq!(joined["publishers"], json!([]));
    assert!(joined["private_id"].is_u64());

    // Bob joins as a receive-only participant (ptype subscriber without a feed on the main
    // handle, as the QuickBlox client sends for role 'subscriber').
    let mut b = Janus::connect(&t, Some(&bob.token)).await.unwrap();
    b.create().await;
    let hb = b.attach().await;
    let passive = b
        .message(hb, json!({"request": "join", "room": dialog, "ptype": "subscriber", "id": bob.id, "display": "Bob"}))
        .await;
    assert_eq!(passive["videoroom"], "joined", "{passive}");
    let listed = b
        .sync(hb, json!({"request": "listparticipants", "room": dialog}))
        .await;
    assert_eq!(listed["videoroom"], "participants");
    let mut ids: Vec<i64> = listed["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![alice.id, bob.id];
    want.sort();
    assert_eq!(ids, want);

    // Carol is no occupant; an anonymous client has no user at all.
    let mut c = Janus::connect(&t, Some(&carol.token)).await.unwrap();
    c.create().await;
    let hc = c.attach().await;
    let refused = c
        .message(
            hc,
            json!({"request": "join", "room": dialog, "ptype": "publisher", "id": carol.id}),
        )
        .await;
    assert_eq!(refused["error_code"], 433, "{refused}");
    let mut anonymous = Janus::connect(&t, None).await.unwrap();
    anonymous.create().await;
    let hn = anonymous.attach().await;
    let refused = anonymous
        .message(
            hn,
            json!({"request": "join", "room": dialog, "ptype": "publisher", "id": 5}),
        )
        .await;
    assert_eq!(refused["error_code"], 433, "{refused}");
    let unknown = c
        .message(
            hc,
            json!({"request": "join", "room": "0123456789abcdef01234567", "ptype": "publisher"}),
        )
        .await;
    assert_eq!(unknown["error_code"], 426, "{unknown}");

    // Alice leaves: Bob hears `leaving` with her id.
    let left = a
        .message(
            ha,
            json!({"request": "leave", "room": dialog, "id": alice.id}),
        )
        .await;
    assert_eq!(left["leaving"], "ok");
    let leaving = b
        .expect("leaving", |m| m["plugindata"]["data"]["leaving"].is_i64())
        .await;
    assert_eq!(leaving["sender"], hb);
    assert_eq!(leaving["plugindata"]["data"]["leaving"], alice.id);
    assert!(
        leaving.get("transaction").is_none(),
        "unsolicited events carry no transaction"
    );

    // Closing Bob's socket without destroy ends his session: the room is freed.
    drop(b);
    let mut again = Janus::connect(&t, Some(&alice.token)).await.unwrap();
    again.create().await;
    let h = again.attach().await;
    let mut participants = Value::Null;
    for _ in 0..100 {
        participants = again
            .sync(h, json!({"request": "exists", "room": dialog}))
            .await;
        if participants["exists"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        participants["exists"], false,
        "an empty dialog room is freed"
    );
}

#[tokio::test]
async fn stock_rooms_with_create_pin_secret_kick_and_destroy() {
    let t = TestServer::start().await;
    let mut admin = Janus::connect(&t, None).await.unwrap();
    admin.create().await;
    let h = admin.attach().await;
    let missing = admin
        .message(
            h,
            json!({"request": "join", "room": 1234, "ptype": "publisher"}),
        )
        .await;
    assert_eq!(missing["error_code"], 426);
    let created = admin
        .sync(h, json!({"request": "create", "room": 1234, "description": "Demo", "pin": "p1", "secret": "s1", "publishers": 6}))
        .await;
    assert_eq!(
        created,
        json!({"videoroom": "created", "room": 1234, "permanent": false})
    );
    let again = admin
        .sync(h, json!({"request": "create", "room": 1234}))
        .await;
    assert_eq!(again["error_code"], 427);
    assert_eq!(
        admin
            .sync(h, json!({"request": "exists", "room": 1234}))
            .await["exists"],
        true
    );
    let list = admin.sync(h, json!({"request": "list"})).await;
    assert_eq!(list["list"][0]["room"], 1234);
    assert_eq!(list["list"][0]["pin_required"], true);
    let bad_pin = admin
        .message(
            h,
            json!({"request": "join", "room": 1234, "ptype": "publisher", "id": 1, "pin": "no"}),
        )
        .await;
    assert_eq!(bad_pin["error_code"], 433);

    let mut one = Janus::connect(&t, None).await.unwrap();
    one.create().await;
    let h1 = one.attach().await;
    let joined = one
        .message(h1, json!({"request": "join", "room": 1234, "ptype": "publisher", "id": 1, "display": "One", "pin": "p1"}))
        .await;
    assert_eq!(joined["videoroom"], "joined");
    // An offer that is not one: a plugin error, the handle still usable.
    let tx = one
        .send(
            json!({"janus": "message", "body": {"request": "configure", "audio": true, "video": true}, "jsep": {"type": "offer", "sdp": "v=0\r\n"}}),
            Some(h1),
        )
        .await;
    assert_eq!(one.reply_to(&tx).await["janus"], "ack");
    let bad = one.reply_to(&tx).await;
    assert_eq!(bad["plugindata"]["data"]["error_code"], 437, "{bad}");
    assert!(bad.get("jsep").is_none());
    let tx = one
        .send(
            json!({"janus": "message", "body": {"request": "configure"}, "jsep": {"type": "answer", "sdp": "v=0\r\n"}}),
            Some(h1),
        )
        .await;
    assert_eq!(one.reply_to(&tx).await["janus"], "ack");
    assert_eq!(
        one.reply_to(&tx).await["plugindata"]["data"]["error_code"],
        431
    );
    let mut two = Janus::connect(&t, None).await.unwrap();
    two.create().await;
    let h2 = two.attach().await;
    let taken = two
        .message(
            h2,
            json!({"request": "join", "room": 1234, "ptype": "publisher", "id": 1, "pin": "p1"}),
        )
        .await;
    assert_eq!(taken["error_code"], 436, "stock rooms do not replace an id");
    let joined = two
        .message(
            h2,
            json!({"request": "join", "room": 1234, "ptype": "publisher", "id": 2, "pin": "p1"}),
        )
        .await;
    assert_eq!(joined["id"], 2);

    let wrong = admin
        .sync(
            h,
            json!({"request": "kick", "room": 1234, "id": 1, "secret": "x"}),
        )
        .await;
    assert_eq!(wrong["error_code"], 433);
    let kicked = admin
        .sync(
            h,
            json!({"request": "kick", "room": 1234, "id": 1, "secret": "s1"}),
        )
        .await;
    assert_eq!(kicked["videoroom"], "success");
    let seen = two
        .expect("kicked", |m| m["plugindata"]["data"]["kicked"] == 1)
        .await;
    assert_eq!(seen["sender"], h2);
    let destroyed = admin
        .sync(
            h,
            json!({"request": "destroy", "room": 1234, "secret": "s1"}),
        )
        .await;
    assert_eq!(destroyed["videoroom"], "destroyed");
    two.expect("destroyed", |m| {
        m["plugindata"]["data"]["videoroom"] == "destroyed"
    })
    .await;
    for _ in 0..100 {
        if admin
            .sync(h, json!({"request": "exists", "room": 1234}))
            .await["exists"]
            == false
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("a destroyed room still exists");
}

/// `sfu.signalling_tls`: the same API over `wss://` with the `[tls]` certificate (a page served
/// over HTTPS may only open `wss://`).
#[tokio::test]
async fn signalling_over_tls() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let t = TestServer::start_with(|config| config.sfu.signalling_tls = true).await;
    let addr = t.server.sfu_addrs.signalling.unwrap();
    let connector = common::xmpp::tls_connector(&t.server.tls.cert, &[b"http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("a TLS handshake");
    let mut request = format!("wss://localhost:{}/", addr.port())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "janus-protocol".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    socket
        .send(Message::Text(
            r#"{"janus":"create","transaction":"t"}"#.into(),
        ))
        .await
        .unwrap();
    let Some(Ok(Message::Text(reply))) = socket.next().await else {
        panic!("a reply over wss")
    };
    let reply: Value = serde_json::from_str(reply.as_str()).unwrap();
    assert_eq!(reply["janus"], "success", "{reply}");
}

#[tokio::test]
async fn rooms_are_capped() {
    let t = TestServer::start_with(|config| config.sfu.max_rooms = 1).await;
    let mut janus = Janus::connect(&t, None).await.unwrap();
    janus.create().await;
    let h = janus.attach().await;
    let first = janus.sync(h, json!({"request": "create", "room": 1})).await;
    assert_eq!(first["videoroom"], "created");
    let second = janus.sync(h, json!({"request": "create", "room": 2})).await;
    assert_eq!(second["error_code"], 499, "{second}");
    assert_eq!(
        janus.sync(h, json!({"request": "exists", "room": 2})).await["exists"],
        false
    );
}

#[tokio::test]
async fn an_idle_session_times_out() {
    let t = TestServer::start_with(|config| config.sfu.session_timeout_s = 1).await;
    let mut janus = Janus::connect(&t, None).await.unwrap();
    let session = janus.create().await;
    let timeout = janus.expect("timeout", |m| m["janus"] == "timeout").await;
    assert_eq!(timeout["session_id"], session);
    let tx = janus.send(json!({"janus": "keepalive"}), None).await;
    assert_eq!(janus.reply_to(&tx).await["error"]["code"], 458);
}

#[tokio::test]
async fn http_long_poll_transport() {
    let t = TestServer::start().await;
    let alice = member(&t, "pollalice").await;
    let bob = member(&t, "pollbob").await;
    let dialog = group_dialog(&t, &alice, &[&bob]).await;
    let addr = t.server.sfu_addrs.signalling.unwrap();
    let http = reqwest::Client::new();
    // janus.js appends the ids to the server URL, which here carries the token.
    let server = format!("http://{addr}/janus?token={}", alice.token);
    let post = |url: String, body: Value| {
        let http = http.clone();
        async move {
            let response = http.post(url).json(&body).send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["access-control-allow-origin"], "*");
            response.json::<Value>().await.unwrap()
        }
    };
    let created = post(
        server.clone(),
        json!({"janus": "create", "transaction": "c"}),
    )
    .await;
    let session = created["data"]["id"].as_u64().unwrap();
    let attached = post(
        format!("{server}/{session}"),
        json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": "a"}),
    )
    .await;
    let handle = attached["data"]["id"].as_u64().unwrap();
    let ack = post(
        format!("{server}/{session}/{handle}"),
        json!({"janus": "message", "transaction": "j", "body": {"request": "join", "room": dialog, "ptype": "publisher", "id": alice.id}}),
    )
    .await;
    assert_eq!(ack["janus"], "ack");
    let events: Value = http
        .get(format!("{server}/{session}?rid=1&maxev=10"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = events.as_array().expect("maxev: an array");
    assert_eq!(
        events[0]["plugindata"]["data"]["videoroom"], "joined",
        "{events:?}"
    );
    assert_eq!(events[0]["transaction"], "j");
    let listed = post(
        format!("{server}/{session}/{handle}"),
        json!({"janus": "message", "transaction": "l", "body": {"request": "listparticipants", "room": dialog}}),
    )
    .await;
    assert_eq!(
        listed["janus"], "success",
        "synchronous over HTTP too: {listed}"
    );
    assert_eq!(
        listed["plugindata"]["data"]["participants"][0]["id"],
        alice.id
    );
    let preflight = http
        .request(Method::OPTIONS, server.clone())
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert!(preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("content-type"));
    let destroyed = post(
        format!("{server}/{session}"),
        json!({"janus": "destroy", "transaction": "d"}),
    )
    .await;
    assert_eq!(destroyed["session_id"], session);
    let gone = post(
        format!("{server}/{session}"),
        json!({"janus": "keepalive", "transaction": "k"}),
    )
    .await;
    assert_eq!(gone["error"]["code"], 458);
}
