//! Chat over XMPP on a real server: `save_to_history` (stored before routing, ids injected, a
//! private dialog made by the first message), markers setting read/delivered, corrections,
//! the MUC rooms of group dialogs (the QuickBlox join handshake, members-only, reflection,
//! history, leave, removal over REST with 301), REST `send_to_chat`, and MAM with RSM.

mod common;

use std::time::Duration;

use common::xmpp::XmppClient;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

struct Person {
    node: String,
    id: i64,
    token: String,
    client: XmppClient,
}

async fn person(t: &TestServer, login: &str) -> Person {
    let password = format!("{login}pass12");
    let node = t.xmpp_user(login, &password).await;
    let id: i64 = node.split('-').next().unwrap().parse().unwrap();
    let token = t.session(Some((login, &password))).await;
    let mut client = t.xmpp_login(&node, &password, Some("r1")).await;
    client.available().await;
    Person {
        node,
        id,
        token,
        client,
    }
}

async fn rest(
    t: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = t
        .client
        .request(method, t.url(path))
        .header("QB-Token", token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn extra(stanza: &str, field: &str) -> Option<String> {
    let open = format!("<{field}>");
    let start = stanza.find(&open)? + open.len();
    let end = stanza[start..].find(&format!("</{field}>"))? + start;
    Some(stanza[start..end].to_string())
}

const SAVE: &str =
    "<extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams>";

#[tokio::test]
async fn one_to_one_history_markers_and_corrections() {
    let t = TestServer::start().await;
    let mut a = person(&t, "hista").await;
    let mut b = person(&t, "histb").await;
    let now = unix_now();
    // The first saved message creates the private dialog; the client's id is the history id.
    a.client
        .send(&format!(
            "<message to='{}@localhost' type='chat' id='6b025096a701016781000001'><body>first</body>\
             <markable xmlns='urn:xmpp:chat-markers:0'/><extraParams xmlns='jabber:client'><save_to_history>1</save_to_history>\
             <date_sent>{}</date_sent><attachment id='UID9' type='image'/><mood>fine</mood></extraParams></message>",
            b.node,
            now - 2
        ))
        .await;
    let got = b
        .client
        .expect("the saved message", |s| s.envelope().name == "message")
        .await;
    let text = got.as_str().to_string();
    let dialog = extra(&text, "dialog_id").expect("dialog_id injected");
    assert_eq!(dialog.len(), 24);
    assert_eq!(
        extra(&text, "message_id").as_deref(),
        Some("6b025096a701016781000001")
    );
    assert_eq!(
        extra(&text, "date_sent"),
        Some((now - 2).to_string()),
        "the client's date within 5 s is kept"
    );
    assert!(
        text.contains("<mood>fine</mood>") && text.contains("<attachment id='UID9' type='image'/>")
    );
    // A client date far off is replaced by the server's.
    a.client
        .send(&format!(
            "<message to='{}@localhost' type='chat' id='6b025096a701016781000002'><body>second</body>\
             <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history><date_sent>1000</date_sent>\
             <dialog_id>{dialog}</dialog_id></extraParams></message>",
            b.node
        ))
        .await;
    let got = b
        .client
        .expect("second", |s| s.envelope().name == "message")
        .await;
    let date: i64 = extra(got.as_str(), "date_sent").unwrap().parse().unwrap();
    assert!(
        (date - unix_now()).abs() < 60,
        "server time, not 1000: {date}"
    );
    assert_eq!(
        extra(got.as_str(), "dialog_id").as_deref(),
        Some(dialog.as_str())
    );
    // Without save_to_history nothing is stored.
    a.client
        .send(&format!(
            "<message to='{}@localhost' type='chat' id='nosave'><body>ephemeral</body></message>",
            b.node
        ))
        .await;
    b.client
        .expect("ephemeral", |s| {
            s.envelope().id.as_deref() == Some("nosave")
        })
        .await;

    let (status, page) = rest(
        &t,
        Method::GET,
        &format!("/chat/Message.json?chat_dialog_id={dialog}&mark_as_read=0"),
        &b.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page}");
    assert_eq!(items[0]["_id"], "6b025096a701016781000001");
    assert_eq!(items[0]["message"], "first");
    assert_eq!(items[0]["sender_id"], a.id);
    assert_eq!(items[0]["recipient_id"], b.id);
    assert_eq!(items[0]["markable"], 1);
    assert_eq!(items[0]["mood"], "fine");
    assert_eq!(
        items[0]["attachments"],
        json!([{"id": "UID9", "type": "image"}])
    );
    let (_, dialogs) = rest(&t, Method::GET, "/chat/Dialog.json", &b.token, None).await;
    assert_eq!(dialogs["items"][0]["_id"], dialog);
    assert_eq!(dialogs["items"][0]["type"], 3);
    assert_eq!(dialogs["items"][0]["unread_messages_count"], 2);
    assert_eq!(dialogs["items"][0]["last_message"], "second");

    // Markers: received, then displayed, for the first; routed to a and recorded.
    b.client
        .send(&format!(
            "<message to='{}@localhost' type='chat' id='mk1'><received xmlns='urn:xmpp:chat-markers:0' id='6b025096a701016781000001'/>\
             <extraParams xmlns='jabber:client'><dialog_id>{dialog}</dialog_id></extraParams></message>",
            a.node
        ))
        .await;
    b.client
        .send(&format!(
            "<message to='{}@localhost' type='chat' id='mk2'><displayed xmlns='urn:xmpp:chat-markers:0' id='6b025096a701016781000001'/></message>",
            a.node
        ))
        .await;
    a.client
        .expect("displayed marker", |s| {
            s.envelope().id.as_deref() == Some("mk2")
        })
        .await;
    let (_, page) = rest(
        &t,
        Method::GET,
        &format!("/chat/Message.json?chat_dialog_id={dialog}&mark_as_read=0"),
        &a.token,
        None,
    )
    .await;
    assert_eq!(page["items"][0]["read_ids"], json!([a.id, b.id]));
    assert_eq!(page["items"][0]["delivered_ids"], json!([a.id, b.id]));
    assert_eq!(page["items"][0]["read"], 1);
    assert_eq!(page["items"][1]["read_ids"], json!([a.id]));
    let (_, unread) = rest(&t, Method::GET, "/chat/Message/unread.json", &b.token, None).await;
    assert_eq!(unread["total"], 1);

    // A correction replaces the stored text (only the sender's own message).
    a.client
        .send(&format!(
            "<message to='{}@localhost' type='chat' id='fix1'><body>second, fixed</body>\
             <replace xmlns='urn:xmpp:message-correct:0' id='6b025096a701016781000002'/>{SAVE}</message>",
            b.node
        ))
        .await;
    b.client
        .expect("correction", |s| s.envelope().id.as_deref() == Some("fix1"))
        .await;
    b.client
        .send(&format!(
            "<message to='{}@localhost' type='chat' id='fix2'><body>hijack</body>\
             <replace xmlns='urn:xmpp:message-correct:0' id='6b025096a701016781000001'/>{SAVE}</message>",
            a.node
        ))
        .await;
    a.client
        .expect("b's attempt", |s| {
            s.envelope().id.as_deref() == Some("fix2")
        })
        .await;
    let (_, page) = rest(
        &t,
        Method::GET,
        &format!("/chat/Message.json?chat_dialog_id={dialog}&mark_as_read=0"),
        &a.token,
        None,
    )
    .await;
    let texts: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["first", "second, fixed"],
        "corrections are not new messages"
    );

    // An offline recipient: stored offline (with the ids) and counted unread.
    drop(b.client);
    a.client
        .send(&format!(
            "<message to='{}@localhost' type='chat' id='6b025096a701016781000003'><body>while away</body>{SAVE}</message>",
            b.node
        ))
        .await;
    a.client.ping_server().await;
    let mut b2 = t.xmpp_login(&b.node, "histbpass12", Some("r2")).await;
    b2.send("<presence/>").await;
    let late = b2
        .expect("offline copy", |s| {
            s.envelope().id.as_deref() == Some("6b025096a701016781000003")
        })
        .await;
    assert!(late.as_str().contains("urn:xmpp:delay"));
    assert_eq!(
        extra(late.as_str(), "dialog_id").as_deref(),
        Some(dialog.as_str())
    );
}

/// A client writing a burst does not wait for each save's commit before the next stanza is
/// read (saves are pipelined), yet what it sees is what a serial server gives: recipients get
/// the messages in the order sent, an unsaved message in the middle stays in its place, an
/// `<a h/>` comes only when every message it counts is in history, and a query after the
/// burst sees all of it.
#[tokio::test]
async fn a_burst_of_saved_messages_keeps_order_and_is_stored_before_its_ack() {
    let t = TestServer::start().await;
    let mut a = person(&t, "bursta").await;
    let mut b = person(&t, "burstb").await;
    a.client.send("<enable xmlns='urn:xmpp:sm:3'/>").await;
    a.client
        .expect("enabled", |s| s.envelope().name == "enabled")
        .await;
    // The private dialog first, so the burst is about ordering only.
    a.client
        .send(&format!(
            "<message to='{}@localhost' type='chat' id='first'><body>hi</body>{SAVE}</message>",
            b.node
        ))
        .await;
    let got = b
        .client
        .expect("first", |s| s.envelope().name == "message")
        .await;
    let dialog = extra(got.as_str(), "dialog_id").unwrap();
    // One write: 40 saved messages, an unsaved one after the 20th, and a request for an ack.
    let mut burst = String::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        burst.push_str(&format!(
            "<message to='{}@localhost' type='chat' id='m{i}'><body>n{i}</body>{SAVE}</message>",
            b.node
        ));
        expected.push(format!("m{i}"));
        if i == 19 {
            burst.push_str(&format!(
                "<message to='{}@localhost' type='chat' id='plain'><body>unsaved</body></message>",
                b.node
            ));
            expected.push("plain".into());
        }
    }
    burst.push_str("<r xmlns='urn:xmpp:sm:3'/>");
    a.client.send(&burst).await;
    let ack = a
        .client
        .expect("the ack", |s| s.envelope().name == "a")
        .await;
    // The first message and the 41 of the burst.
    assert!(ack.as_str().contains("h='42'"), "{}", ack.as_str());
    // Acknowledged, so stored: all of it is in history now.
    let (status, page) = rest(
        &t,
        Method::GET,
        &format!("/chat/Message.json?chat_dialog_id={dialog}&mark_as_read=0&limit=100"),
        &b.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let stored: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(stored.len(), 41, "{page}");
    assert!(stored.iter().skip(1).all(|m| m.starts_with('n')));
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let message = b
            .client
            .expect("the burst", |s| s.envelope().name == "message")
            .await;
        got.push(message.envelope().id.clone().unwrap_or_default());
    }
    assert_eq!(got, expected, "delivered in the order sent");
}

fn join(room: &str, nick: i64, id: &str) -> String {
    format!("<presence to='{room}/{nick}' id='{id}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>")
}

#[tokio::test]
async fn group_dialog_rooms_follow_the_quickblox_rules() {
    let t = TestServer::start().await;
    let mut a = person(&t, "muca").await;
    let mut b = person(&t, "mucb").await;
    let mut c = person(&t, "mucc").await;
    let (status, dialog) = rest(
        &t,
        Method::POST,
        "/chat/Dialog.json",
        &a.token,
        Some(json!({"type": 2, "name": "Room", "occupants_ids": [b.id]})),
    )
    .await;
    assert_eq!(status, 201);
    let id = dialog["_id"].as_str().unwrap().to_string();
    let room = dialog["xmpp_room_jid"].as_str().unwrap().to_string();

    a.client.send(&join(&room, a.id, "j1:join")).await;
    let own = a
        .client
        .expect("self-presence", |s| s.envelope().name == "presence")
        .await;
    assert_eq!(own.envelope().id.as_deref(), Some("j1:join"));
    assert_eq!(
        own.envelope().from.as_deref(),
        Some(format!("{room}/{}", a.id).as_str())
    );
    assert!(own.as_str().contains(
        "<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' role='moderator'"
    ));
    assert!(own.as_str().contains("<status code='110'/></x>"));

    b.client.send(&join(&room, b.id, "j2:join")).await;
    let first = b
        .client
        .expect("a's presence", |s| s.envelope().name == "presence")
        .await;
    assert_eq!(
        first.envelope().from.as_deref(),
        Some(format!("{room}/{}", a.id).as_str())
    );
    assert!(first.envelope().id.is_none() && !first.as_str().contains("<status"));
    let second = b
        .client
        .expect("self-presence", |s| s.envelope().name == "presence")
        .await;
    assert_eq!(second.envelope().id.as_deref(), Some("j2:join"));
    assert!(second.as_str().contains("<status code='110'/>"));
    let joined = a
        .client
        .expect("b joined", |s| s.envelope().name == "presence")
        .await;
    assert_eq!(
        joined.envelope().from.as_deref(),
        Some(format!("{room}/{}", b.id).as_str())
    );
    assert!(!joined.as_str().contains("<status"));

    // Members only: c is refused, with the join id and the muc <x/>.
    c.client.send(&join(&room, c.id, "j3:join")).await;
    let refused = c
        .client
        .expect("refusal", |s| s.envelope().name == "presence")
        .await;
    assert_eq!(refused.envelope().stanza_type.as_deref(), Some("error"));
    assert_eq!(refused.envelope().id.as_deref(), Some("j3:join"));
    assert!(
        refused.as_str().contains("registration-required")
            && refused.as_str().contains("http://jabber.org/protocol/muc")
    );
    c.client
        .send(&format!(
            "<message to='{room}' type='groupchat' id='cx'><body>let me in</body>{SAVE}</message>"
        ))
        .await;
    let bounced = c
        .client
        .expect("groupchat refused", |s| {
            s.envelope().id.as_deref() == Some("cx")
        })
        .await;
    assert_eq!(bounced.envelope().stanza_type.as_deref(), Some("error"));

    // Disco items: the occupants by user id.
    a.client
        .send(&format!("<iq type='get' to='{room}' id='items'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"))
        .await;
    let items = a
        .client
        .expect("items", |s| s.envelope().id.as_deref() == Some("items"))
        .await;
    assert!(
        items.as_str().contains(&format!("jid='{room}/{}'", a.id))
            && items.as_str().contains(&format!("jid='{room}/{}'", b.id))
    );

    // Groupchat: stored, ids injected, reflected to everyone (the sender too).
    a.client
        .send(&format!(
            "<message to='{room}' type='groupchat' id='6b025096a701016781000010'><body>hello room</body>{SAVE}</message>"
        ))
        .await;
    for client in [&mut a.client, &mut b.client] {
        let got = client
            .expect("groupchat", |s| {
                s.envelope().id.as_deref() == Some("6b025096a701016781000010")
            })
            .await;
        assert_eq!(
            got.envelope().from.as_deref(),
            Some(format!("{room}/{}", a.id).as_str())
        );
        assert_eq!(
            extra(got.as_str(), "dialog_id").as_deref(),
            Some(id.as_str())
        );
        assert!(extra(got.as_str(), "date_sent").is_some());
    }
    // Typing is reflected, not stored.
    b.client.send(&format!("<message to='{room}' type='groupchat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")).await;
    a.client
        .expect("typing", |s| s.as_str().contains("composing"))
        .await;
    let (_, page) = rest(
        &t,
        Method::GET,
        &format!("/chat/Message.json?chat_dialog_id={id}&mark_as_read=0"),
        &b.token,
        None,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["items"][0]["_id"], "6b025096a701016781000010");
    assert_eq!(page["items"][0]["recipient_id"], Value::Null);
    let (_, unread) = rest(
        &t,
        Method::GET,
        &format!("/chat/Message/unread.json?chat_dialog_ids={id}"),
        &b.token,
        None,
    )
    .await;
    assert_eq!(unread["total"], 1);

    // REST send_to_chat reaches the room.
    let (status, _) = rest(
        &t,
        Method::POST,
        "/chat/Message.json",
        &b.token,
        Some(json!({"chat_dialog_id": id, "message": "from rest", "send_to_chat": 1})),
    )
    .await;
    assert_eq!(status, 201);
    let pushed = a
        .client
        .expect("send_to_chat", |s| s.as_str().contains("from rest"))
        .await;
    assert_eq!(
        pushed.envelope().from.as_deref(),
        Some(format!("{room}/{}", b.id).as_str())
    );
    assert_eq!(pushed.envelope().stanza_type.as_deref(), Some("groupchat"));

    // Leave: 110 to the leaver, a plain unavailable to the others.
    b.client
        .send(&format!(
            "<presence to='{room}/{}' type='unavailable'/>",
            b.id
        ))
        .await;
    let bye = b
        .client
        .expect("leave confirmation", |s| s.envelope().name == "presence")
        .await;
    assert_eq!(bye.envelope().stanza_type.as_deref(), Some("unavailable"));
    assert!(bye.as_str().contains("<status code='110'/>"));
    let left = a
        .client
        .expect("b left", |s| s.envelope().name == "presence")
        .await;
    assert_eq!(left.envelope().stanza_type.as_deref(), Some("unavailable"));
    assert!(!left.as_str().contains("<status"));

    // Removal over REST: 301 with the actor to the removed user only.
    b.client.send(&join(&room, b.id, "j4:join")).await;
    b.client
        .expect("rejoined", |s| {
            s.envelope().id.as_deref() == Some("j4:join")
        })
        .await;
    a.client
        .expect("b back", |s| s.envelope().name == "presence")
        .await;
    let (status, _) = rest(
        &t,
        Method::PUT,
        &format!("/chat/Dialog/{id}.json"),
        &a.token,
        Some(json!({"pull_all": {"occupants_ids": [b.id]}})),
    )
    .await;
    assert_eq!(status, 200);
    let kicked = b
        .client
        .expect("301", |s| s.envelope().name == "presence")
        .await;
    assert!(
        kicked.as_str().contains("<status code='301'/>"),
        "{}",
        kicked.as_str()
    );
    assert!(kicked
        .as_str()
        .contains(&format!("<actor jid='{}@localhost'/>", a.node)));
    let gone = a
        .client
        .expect("b removed", |s| s.envelope().name == "presence")
        .await;
    assert_eq!(gone.envelope().stanza_type.as_deref(), Some("unavailable"));
    assert!(!gone.as_str().contains("301"));
    b.client
        .send(&format!(
            "<message to='{room}' type='groupchat' id='late'><body>still here?</body></message>"
        ))
        .await;
    let refused = b
        .client
        .expect("not an occupant", |s| {
            s.envelope().id.as_deref() == Some("late")
        })
        .await;
    assert_eq!(refused.envelope().stanza_type.as_deref(), Some("error"));

    // A session that ends leaves its rooms.
    c.client.ping_server().await;
    let live = t.server.xmpp.muc.live_rooms();
    assert_eq!(live, 1);
    drop(a.client);
    eventually("the empty room unloads", || async {
        t.server.xmpp.muc.live_rooms() == 0
    })
    .await;
}

#[tokio::test]
async fn public_rooms_and_system_notifications() {
    let t = TestServer::start().await;
    let mut a = person(&t, "puba").await;
    let mut b = person(&t, "pubb").await;
    let mut c = person(&t, "pubc").await;
    let (_, public) = rest(
        &t,
        Method::POST,
        "/chat/Dialog.json",
        &a.token,
        Some(json!({"type": 1, "name": "Lobby"})),
    )
    .await;
    let room = public["xmpp_room_jid"].as_str().unwrap().to_string();
    c.client.send(&join(&room, c.id, "p:join")).await;
    c.client
        .expect("anyone may join a public room", |s| {
            s.envelope().id.as_deref() == Some("p:join") && s.envelope().stanza_type.is_none()
        })
        .await;
    // A wrong nickname is refused.
    b.client.send(&join(&room, 12345, "n:join")).await;
    let wrong = b
        .client
        .expect("nick refused", |s| {
            s.envelope().id.as_deref() == Some("n:join")
        })
        .await;
    assert_eq!(wrong.envelope().stanza_type.as_deref(), Some("error"));

    // A headline to a group dialog's room reaches every occupant but the sender.
    let (_, group) = rest(
        &t,
        Method::POST,
        "/chat/Dialog.json",
        &a.token,
        Some(json!({"type": 2, "name": "G", "occupants_ids": [b.id, c.id]})),
    )
    .await;
    let group_room = group["xmpp_room_jid"].as_str().unwrap().to_string();
    a.client
        .send(&format!(
            "<message to='{group_room}' type='headline' id='sys1'><extraParams xmlns='jabber:client'>\
             <moduleIdentifier>SystemNotifications</moduleIdentifier><kind>renamed</kind></extraParams></message>"
        ))
        .await;
    for client in [&mut b.client, &mut c.client] {
        let got = client
            .expect("system notification", |s| {
                s.envelope().id.as_deref() == Some("sys1")
            })
            .await;
        assert_eq!(got.envelope().stanza_type.as_deref(), Some("headline"));
        assert!(got.envelope().from.as_deref().unwrap().starts_with(&a.node));
    }
    a.client
        .expect_nothing(Duration::from_millis(200), |s| {
            s.envelope().id.as_deref() == Some("sys1")
        })
        .await;
}

#[tokio::test]
async fn mam_pages_over_the_same_history() {
    let t = TestServer::start().await;
    let mut a = person(&t, "mama").await;
    let mut b = person(&t, "mamb").await;
    for i in 0..5 {
        a.client
            .send(&format!(
                "<message to='{}@localhost' type='chat' id='6b02509600000000000000{i:02}'><body>m{i}</body>{SAVE}</message>",
                b.node
            ))
            .await;
    }
    for i in 0..5 {
        b.client
            .expect("chat", |s| {
                s.envelope().id.as_deref() == Some(format!("6b02509600000000000000{i:02}").as_str())
            })
            .await;
    }
    let query = |id: &str, rsm: &str| {
        format!(
            "<iq type='set' id='{id}'><query xmlns='urn:xmpp:mam:2' queryid='q-{id}'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
             <field var='with'><value>{}@localhost</value></field></x>\
             <set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></query></iq>",
            b.node
        )
    };
    async fn page(client: &mut XmppClient, id: &str) -> (Vec<String>, String) {
        let mut bodies = Vec::new();
        loop {
            let s = client
                .expect("mam", |s| {
                    s.envelope().name == "message" || s.envelope().id.as_deref() == Some(id)
                })
                .await;
            if s.envelope().name == "iq" {
                return (bodies, s.as_str().to_string());
            }
            assert!(
                s.as_str().contains(&format!("queryid='q-{id}'")),
                "{}",
                s.as_str()
            );
            assert!(s.as_str().contains(
                "<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='"
            ));
            assert!(
                s.as_str().contains("<message xmlns='jabber:client'"),
                "{}",
                s.as_str()
            );
            bodies.push(extra(s.as_str(), "body").unwrap());
        }
    }
    a.client.send(&query("p1", "<max>2</max>")).await;
    let (bodies, fin) = page(&mut a.client, "p1").await;
    assert_eq!(bodies, ["m0", "m1"]);
    assert!(
        fin.contains("<count>5</count>") && !fin.contains("complete='true'"),
        "{fin}"
    );
    let last = extra(&fin, "last").unwrap();
    a.client
        .send(&query("p2", &format!("<max>2</max><after>{last}</after>")))
        .await;
    let (bodies, fin) = page(&mut a.client, "p2").await;
    assert_eq!(bodies, ["m2", "m3"]);
    let last = extra(&fin, "last").unwrap();
    a.client
        .send(&query("p3", &format!("<max>2</max><after>{last}</after>")))
        .await;
    let (bodies, fin) = page(&mut a.client, "p3").await;
    assert_eq!(bodies, ["m4"]);
    assert!(fin.contains("complete='true'"), "{fin}");
    a.client.send(&query("p4", "<max>2</max><before/>")).await;
    let (bodies, fin) = page(&mut a.client, "p4").await;
    assert_eq!(bodies, ["m3", "m4"]);
    assert!(!fin.contains("complete='true'"), "{fin}");
    a.client
        .send(&query(
            "p5",
            "<max>2</max><after>5f0000000000000000000000</after>",
        ))
        .await;
    let (_, fin) = page(&mut a.client, "p5").await;
    assert!(
        fin.contains("type='error'") && fin.contains("item-not-found"),
        "{fin}"
    );
    // b sees the same archive from its side.
    b.client
        .send(&query("p6", "<max>10</max>").replace(
            &format!("{}@localhost", b.node),
            &format!("{}@localhost", a.node),
        ))
        .await;
    let (bodies, _) = page(&mut b.client, "p6").await;
    assert_eq!(bodies.len(), 5);
}
