//! The REST Chat API on a real server, on SQLite and PostgreSQL: dialogs (create, the search
//! operators, custom parameters, update rules, delete for me / force, notifications) and
//! messages (injection, pages and filters, read/delivered, unread counts, edits, deletes),
//! with every permission rule and bad input that must change nothing.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// Runs one case on a server backed by SQLite and by PostgreSQL.
macro_rules! chat_case {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let t = super::TestServer::start().await;
                super::$name(&t).await;
            }

            #[tokio::test]
            async fn postgres() {
                let test = concat!("rest_chat::", stringify!($name));
                let Some(admin) = super::postgres_admin_url(test) else {
                    return;
                };
                let url = super::fresh_postgres_db(&admin).await;
                let t = super::TestServer::start_with(|c| c.store.url = url).await;
                super::$name(&t).await;
            }
        }
    };
}

chat_case!(dialogs_are_created_listed_and_filtered);
chat_case!(dialog_update_and_delete_rules);
chat_case!(bad_dialog_input_changes_nothing);
chat_case!(messages_history_marks_and_unread);
chat_case!(message_edits_and_deletes);

struct Users {
    a: (i64, String),
    b: (i64, String),
    c: (i64, String),
}

async fn users(t: &TestServer) -> Users {
    let mut out = Vec::new();
    for login in ["chata", "chatb", "chatc"] {
        let password = format!("{login}pass1");
        let id = t.create_user(login, &password, &[]).await;
        let token = t.session(Some((login, &password))).await;
        out.push((id, token));
    }
    let c = out.pop().unwrap();
    let b = out.pop().unwrap();
    let a = out.pop().unwrap();
    Users { a, b, c }
}

fn form(pairs: &[(&str, &str)]) -> String {
    encode_form(
        &pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
    )
}

async fn call(
    t: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    body: Option<String>,
) -> (u16, Value) {
    let response = t.send(method, path, Some(token), body).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn call_json(
    t: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let response = t
        .client
        .request(method, t.url(path))
        .header("QB-Token", token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(t: &TestServer, path: &str, token: &str) -> (u16, Value) {
    call(t, Method::GET, path, token, None).await
}

async fn create_dialog(t: &TestServer, token: &str, pairs: &[(&str, &str)]) -> Value {
    let (status, dialog) = call(
        t,
        Method::POST,
        "/chat/Dialog.json",
        token,
        Some(form(pairs)),
    )
    .await;
    assert_eq!(status, 201, "{dialog}");
    dialog
}

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_string())
        .collect()
}

async fn dialogs_are_created_listed_and_filtered(t: &TestServer) {
    let u = users(t).await;
    let (a, b, c) = (u.a.0, u.b.0, u.c.0);
    let app = t.app.application_id;
    let group = create_dialog(
        t,
        &u.a.1,
        &[
            ("type", "2"),
            ("name", "Team chat"),
            ("occupants_ids", &format!("{b}, {c}")),
            ("photo", "4242"),
            ("data[class_name]", "CoolDialog"),
            ("data[category]", "friends"),
            ("data[rating]", "7"),
        ],
    )
    .await;
    let group_id = group["_id"].as_str().unwrap().to_string();
    assert_eq!(group_id.len(), 24);
    assert!(!group_id.contains('_'));
    assert_eq!(group["type"], 2);
    assert_eq!(group["user_id"], a);
    assert_eq!(group["occupants_ids"], json!([a, b, c]));
    assert_eq!(
        group["xmpp_room_jid"],
        format!("{app}_{group_id}@muc.localhost")
    );
    assert_eq!(group["unread_messages_count"], 0);
    assert_eq!(group["last_message"], Value::Null);
    assert_eq!(group["photo"], "4242");
    assert_eq!(
        group["data"],
        json!({"class_name": "CoolDialog", "category": "friends", "rating": "7"})
    );
    assert!(group["created_at"].as_str().unwrap().ends_with('Z'));

    // A private dialog is one per pair, whoever asks.
    let private = create_dialog(
        t,
        &u.a.1,
        &[("type", "3"), ("occupants_ids", &b.to_string())],
    )
    .await;
    assert_eq!(private["xmpp_room_jid"], Value::Null);
    assert_eq!(private["name"], Value::Null);
    let again = create_dialog(
        t,
        &u.b.1,
        &[("type", "3"), ("occupants_ids", &a.to_string())],
    )
    .await;
    assert_eq!(again["_id"], private["_id"]);
    let private_id = private["_id"].as_str().unwrap().to_string();

    // JSON bodies work too; a public dialog is visible to everyone in the application.
    let (status, public) = call_json(
        t,
        Method::POST,
        "/chat/Dialog.json",
        &u.b.1,
        json!({"type": 1, "name": "Lobby", "data": {"class_name": "CoolDialog", "category": "work", "rating": 3}}),
    )
    .await;
    assert_eq!(status, 201, "{public}");
    let public_id = public["_id"].as_str().unwrap().to_string();
    assert_eq!(public["data"]["rating"], 3);

    let (status, list) = get(t, "/chat/Dialog.json", &u.a.1).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total_entries"], 3);
    assert_eq!(list["limit"], 100);
    assert_eq!(list["skip"], 0);
    let (_, list) = get(t, "/chat/Dialog.json", &u.c.1).await;
    let mut seen = ids(&list);
    seen.sort();
    let mut want = vec![group_id.clone(), public_id.clone()];
    want.sort();
    assert_eq!(seen, want, "c sees the group it is in and the public one");

    let cases: Vec<(String, Vec<String>)> = vec![
        ("type=3".into(), vec![private_id.clone()]),
        (
            "type%5Bin%5D=1%2C3".into(),
            vec![private_id.clone(), public_id.clone()],
        ),
        ("type%5Bnin%5D=1%2C3".into(), vec![group_id.clone()]),
        (
            "type%5Bne%5D=2".into(),
            vec![private_id.clone(), public_id.clone()],
        ),
        ("name%5Bctn%5D=team".into(), vec![group_id.clone()]),
        ("name=Lobby".into(), vec![public_id.clone()]),
        (format!("_id={group_id}"), vec![group_id.clone()]),
        (
            format!("_id%5Bin%5D={group_id}%2C{public_id}"),
            vec![group_id.clone(), public_id.clone()],
        ),
        (
            format!("occupants_ids%5Ball%5D={a}%2C{c}"),
            vec![group_id.clone()],
        ),
        (format!("occupants_ids%5Bin%5D={c}"), vec![group_id.clone()]),
        (
            format!("occupants_ids%5Bnin%5D={c}"),
            vec![private_id.clone(), public_id.clone()],
        ),
        (
            "data%5Bclass_name%5D=CoolDialog&data%5Bcategory%5D=friends".into(),
            vec![group_id.clone()],
        ),
        ("data%5Brating%5D%5Bgt%5D=5".into(), vec![group_id.clone()]),
        (
            "data%5Brating%5D%5Blte%5D=5".into(),
            vec![public_id.clone()],
        ),
        (
            "data%5Bcategory%5D%5Bin%5D=work%2Cplay".into(),
            vec![public_id.clone()],
        ),
        (
            "created_at%5Bgt%5D=2000-01-01T00:00:00Z".into(),
            vec![group_id.clone(), private_id.clone(), public_id.clone()],
        ),
        ("created_at%5Blt%5D=946684800".into(), vec![]),
        ("last_message_date_sent%5Bgt%5D=0".into(), vec![]),
    ];
    for (query, mut want) in cases {
        let (status, list) = get(t, &format!("/chat/Dialog.json?{query}"), &u.a.1).await;
        assert_eq!(status, 200, "{query}: {list}");
        let mut got = ids(&list);
        got.sort();
        want.sort();
        assert_eq!(got, want, "{query}");
        assert_eq!(list["total_entries"], want.len(), "{query}");
    }

    let (_, count) = get(t, "/chat/Dialog.json?count=1", &u.a.1).await;
    assert_eq!(count, json!({"items": {"count": 3}}));
    let (_, first) = get(t, "/chat/Dialog.json?sort_asc=created_at&limit=2", &u.a.1).await;
    let (_, rest) = get(
        t,
        "/chat/Dialog.json?sort_asc=created_at&limit=2&skip=2",
        &u.a.1,
    )
    .await;
    assert_eq!(ids(&first).len(), 2);
    assert_eq!(ids(&rest).len(), 1);
    assert_eq!(first["total_entries"], 3);
    let mut all = ids(&first);
    all.extend(ids(&rest));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 3, "pages do not overlap");

    // Notifications: on by default, per user.
    let path = format!("/chat/Dialog/{group_id}/notifications.json");
    assert_eq!(
        get(t, &path, &u.b.1).await,
        (200, json!({"notifications": {"enabled": 1}}))
    );
    let (status, body) = call(
        t,
        Method::PUT,
        &path,
        &u.b.1,
        Some(form(&[("enabled", "0")])),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"notifications": {"enabled": 0}}))
    );
    assert_eq!(
        get(t, &path, &u.b.1).await.1,
        json!({"notifications": {"enabled": 0}})
    );
    assert_eq!(
        get(t, &path, &u.a.1).await.1,
        json!({"notifications": {"enabled": 1}})
    );
    let (status, _) = get(
        t,
        &format!("/chat/Dialog/{private_id}/notifications.json"),
        &u.c.1,
    )
    .await;
    assert_eq!(status, 403, "not c's dialog");
}

async fn dialog_update_and_delete_rules(t: &TestServer) {
    let u = users(t).await;
    let (a, b, c) = (u.a.0, u.b.0, u.c.0);
    let group = create_dialog(
        t,
        &u.a.1,
        &[
            ("type", "2"),
            ("name", "G"),
            ("occupants_ids", &b.to_string()),
        ],
    )
    .await;
    let id = group["_id"].as_str().unwrap().to_string();
    let path = format!("/chat/Dialog/{id}.json");

    // A non-occupant may not change it.
    let (status, _) = call_json(t, Method::PUT, &path, &u.c.1, json!({"name": "mine"})).await;
    assert_eq!(status, 403);
    // An occupant may add users and rename.
    let (status, updated) = call_json(
        t,
        Method::PUT,
        &path,
        &u.b.1,
        json!({"push_all": {"occupants_ids": [c]}, "name": "Renamed"}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["occupants_ids"], json!([a, b, c]));
    assert_eq!(updated["name"], "Renamed");
    // ...but not remove others (and then nothing changes, the name included).
    let (status, _) = call_json(
        t,
        Method::PUT,
        &path,
        &u.b.1,
        json!({"pull_all": {"occupants_ids": [a]}, "name": "Coup"}),
    )
    .await;
    assert_eq!(status, 403);
    let (_, list) = get(t, &format!("/chat/Dialog.json?_id={id}"), &u.a.1).await;
    assert_eq!(list["items"][0]["name"], "Renamed");
    assert_eq!(list["items"][0]["occupants_ids"], json!([a, b, c]));
    // The owner removes anyone (form encoding as the docs show it).
    let (status, updated) = call(
        t,
        Method::PUT,
        &path,
        &u.a.1,
        Some(form(&[("pull_all[occupants_ids][]", &c.to_string())])),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["occupants_ids"], json!([a, b]));
    let (_, list) = get(t, "/chat/Dialog.json", &u.c.1).await;
    assert!(!ids(&list).contains(&id), "c no longer sees it");

    // Force delete: only the owner. Delete for me: an occupant leaves.
    let (status, _) = call(
        t,
        Method::DELETE,
        &path,
        &u.b.1,
        Some(form(&[("force", "1")])),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(t, Method::DELETE, &path, &u.b.1, None).await;
    assert_eq!(status, 200);
    let (_, list) = get(t, &format!("/chat/Dialog.json?_id={id}"), &u.a.1).await;
    assert_eq!(list["items"][0]["occupants_ids"], json!([a]));

    // Private: delete for me hides it until the next message.
    let private = create_dialog(
        t,
        &u.a.1,
        &[("type", "3"), ("occupants_ids", &b.to_string())],
    )
    .await;
    let private_id = private["_id"].as_str().unwrap().to_string();
    let (status, _) = call(
        t,
        Method::DELETE,
        &format!("/chat/Dialog/{private_id}.json"),
        &u.b.1,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(!ids(&get(t, "/chat/Dialog.json", &u.b.1).await.1).contains(&private_id));
    assert!(ids(&get(t, "/chat/Dialog.json", &u.a.1).await.1).contains(&private_id));
    let (status, _) = call_json(
        t,
        Method::POST,
        "/chat/Message.json",
        &u.a.1,
        json!({"chat_dialog_id": private_id, "message": "back?"}),
    )
    .await;
    assert_eq!(status, 201);
    assert!(ids(&get(t, "/chat/Dialog.json", &u.b.1).await.1).contains(&private_id));
    // Private occupants are fixed.
    let (status, _) = call_json(
        t,
        Method::PUT,
        &format!("/chat/Dialog/{private_id}.json"),
        &u.a.1,
        json!({"push_all": {"occupants_ids": [c]}}),
    )
    .await;
    assert_eq!(status, 422);

    // Several ids: the multi-result shape.
    let other = create_dialog(
        t,
        &u.b.1,
        &[
            ("type", "2"),
            ("name", "B's"),
            ("occupants_ids", &a.to_string()),
        ],
    )
    .await;
    let other_id = other["_id"].as_str().unwrap().to_string();
    let missing = "5f0000000000000000000000";
    let (status, report) = call(
        t,
        Method::DELETE,
        &format!("/chat/Dialog/{id},{other_id},{missing}.json"),
        &u.a.1,
        Some(form(&[("force", "1")])),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        report,
        json!({
            "SuccessfullyDeleted": {"ids": [id]},
            "WrongPermissions": {"ids": [other_id]},
            "NotFound": {"ids": [missing]},
        })
    );
    let (status, _) = get(
        t,
        &format!("/chat/Message.json?chat_dialog_id={id}"),
        &u.a.1,
    )
    .await;
    assert_eq!(status, 404, "deleted for everyone");
}

async fn bad_dialog_input_changes_nothing(t: &TestServer) {
    let u = users(t).await;
    let b = u.b.0;
    let bad_creates: Vec<(Vec<(&str, String)>, u16)> = vec![
        (vec![("name", "x".into())], 422),
        (vec![("type", "9".into()), ("name", "x".into())], 422),
        (vec![("type", "two".into()), ("name", "x".into())], 422),
        (
            vec![("type", "2".into()), ("occupants_ids", b.to_string())],
            422,
        ),
        (
            vec![
                ("type", "2".into()),
                ("name", "x".into()),
                ("occupants_ids", "99999".into()),
            ],
            422,
        ),
        (
            vec![
                ("type", "2".into()),
                ("name", "x".into()),
                ("occupants_ids", "1,abc".into()),
            ],
            422,
        ),
        (
            vec![
                ("type", "3".into()),
                ("occupants_ids", format!("{b},99998")),
            ],
            422,
        ),
        (
            vec![
                ("type", "2".into()),
                ("name", "x".into()),
                ("occupants_ids", b.to_string()),
                ("data[category]", "no class".into()),
            ],
            422,
        ),
    ];
    for (pairs, want) in bad_creates {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = call(
            t,
            Method::POST,
            "/chat/Dialog.json",
            &u.a.1,
            Some(form(&pairs)),
        )
        .await;
        assert_eq!(status, want, "{pairs:?}: {body}");
        assert!(body["errors"].is_object(), "{pairs:?}: {body}");
    }
    assert_eq!(
        get(t, "/chat/Dialog.json?count=1", &u.a.1).await.1,
        json!({"items": {"count": 0}})
    );
    for query in [
        "type=x",
        "type%5Blike%5D=2",
        "limit=0",
        "limit=5000",
        "skip=-4",
        "_id=zz",
        "sort_desc=secret",
    ] {
        let (status, body) = get(t, &format!("/chat/Dialog.json?{query}"), &u.a.1).await;
        assert_eq!(status, 422, "{query}: {body}");
    }
    let (status, _) = call_json(
        t,
        Method::PUT,
        "/chat/Dialog/nothex.json",
        &u.a.1,
        json!({"name": "x"}),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = call_json(
        t,
        Method::PUT,
        "/chat/Dialog/5f0000000000000000000000.json",
        &u.a.1,
        json!({"name": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        t,
        Method::DELETE,
        "/chat/Dialog/5f0000000000000000000000,bad.json",
        &u.a.1,
        None,
    )
    .await;
    assert_eq!(status, 422);
    // Chat needs a user: an application session is refused.
    let app_token = t.session(None).await;
    let (status, _) = get(t, "/chat/Dialog.json", &app_token).await;
    assert_eq!(status, 403);
}

/// The texts of a dialog's history page as `token`'s user sees it (not marking read).
async fn texts(t: &TestServer, token: &str, dialog: &str, query: String) -> Vec<String> {
    let path = format!("/chat/Message.json?chat_dialog_id={dialog}&mark_as_read=0&{query}");
    let (status, page) = get(t, &path, token).await;
    assert_eq!(status, 200, "{query}: {page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_string())
        .collect()
}

async fn post_message(t: &TestServer, token: &str, body: Value) -> Value {
    let (status, message) = call_json(t, Method::POST, "/chat/Message.json", token, body).await;
    assert_eq!(status, 201, "{message}");
    message
}

async fn messages_history_marks_and_unread(t: &TestServer) {
    let u = users(t).await;
    let (a, b, c) = (u.a.0, u.b.0, u.c.0);
    let group = create_dialog(
        t,
        &u.a.1,
        &[
            ("type", "2"),
            ("name", "G"),
            ("occupants_ids", &format!("{b},{c}")),
        ],
    )
    .await;
    let gid = group["_id"].as_str().unwrap().to_string();
    let now = unix_now();
    let first = post_message(
        t,
        &u.b.1,
        json!({
            "chat_dialog_id": gid, "message": "hello", "date_sent": now - 100, "markable": 1,
            "attachments": {"0": {"type": "image", "id": "47863"}, "1": {"type": "audio", "url": "http://x/a.wav"}},
            "age": "25", "level": 3,
        }),
    )
    .await;
    assert_eq!(first["sender_id"], b);
    assert_eq!(first["date_sent"], now - 100);
    assert_eq!(first["recipient_id"], Value::Null);
    assert_eq!(
        first["attachments"],
        json!([{"type": "image", "id": "47863"}, {"type": "audio", "url": "http://x/a.wav"}])
    );
    assert_eq!(first["age"], "25");
    assert_eq!(first["level"], 3);
    assert_eq!(first["read_ids"], json!([b]));
    // Form-encoded, as the docs show, with attachments[n][field].
    let (status, second) = call(
        t,
        Method::POST,
        "/chat/Message.json",
        &u.c.1,
        Some(form(&[
            ("chat_dialog_id", &gid),
            ("message", "second"),
            ("date_sent", &(now - 50).to_string()),
            ("attachments[0][type]", "video"),
            ("attachments[0][id]", "9"),
        ])),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["attachments"], json!([{"type": "video", "id": "9"}]));
    let third = post_message(
        t,
        &u.b.1,
        json!({"chat_dialog_id": gid, "message": "third", "date_sent": now - 10}),
    )
    .await;
    // Injected older message: history order by date_sent, last message unchanged.
    let old = post_message(
        t,
        &u.b.1,
        json!({"chat_dialog_id": gid, "message": "from the past", "date_sent": now - 1000}),
    )
    .await;

    let (_, list) = get(t, &format!("/chat/Dialog.json?_id={gid}"), &u.a.1).await;
    let dialog = &list["items"][0];
    assert_eq!(dialog["last_message"], "third");
    assert_eq!(dialog["last_message_user_id"], b);
    assert_eq!(dialog["last_message_date_sent"], now - 10);
    assert_eq!(dialog["last_message_id"], third["_id"]);
    assert_eq!(dialog["unread_messages_count"], 4);
    let (_, list) = get(t, &format!("/chat/Dialog.json?_id={gid}"), &u.b.1).await;
    assert_eq!(
        list["items"][0]["unread_messages_count"], 1,
        "only c's message is unread for b"
    );

    let unread_path = format!("/chat/Message/unread.json?chat_dialog_ids={gid}");
    assert_eq!(
        get(t, &unread_path, &u.a.1).await.1,
        json!({"total": 4, gid.clone(): 4})
    );

    // A page without marking read.
    let path = format!("/chat/Message.json?chat_dialog_id={gid}&mark_as_read=0");
    let (status, page) = get(t, &path, &u.a.1).await;
    assert_eq!(status, 200, "{page}");
    let in_order: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(in_order, ["from the past", "hello", "second", "third"]);
    assert_eq!(get(t, &unread_path, &u.a.1).await.1["total"], 4);

    // Filters, sort, pages, count.
    let filtered = |query: String| texts(t, &u.a.1, &gid, query);
    assert_eq!(filtered(format!("sender_id={c}")).await, ["second"]);
    assert_eq!(
        filtered(format!("sender_id%5Bin%5D={c}%2C{a}")).await,
        ["second"]
    );
    assert_eq!(
        filtered(format!("date_sent%5Blt%5D={}", now - 50)).await,
        ["from the past", "hello"]
    );
    assert_eq!(
        filtered("sort_desc=date_sent&limit=2".into()).await,
        ["third", "second"]
    );
    assert_eq!(
        filtered("sort_desc=date_sent&limit=2&skip=2".into()).await,
        ["hello", "from the past"]
    );
    assert_eq!(filtered("message%5Bctn%5D=ECON".into()).await, ["second"]);
    assert_eq!(filtered("attachments.type=image".into()).await, ["hello"]);
    assert_eq!(
        filtered(format!("_id={}", first["_id"].as_str().unwrap())).await,
        ["hello"]
    );
    let (_, count) = get(
        t,
        &format!("/chat/Message.json?chat_dialog_id={gid}&count=1"),
        &u.a.1,
    )
    .await;
    assert_eq!(count, json!({"items": {"count": 4}}));

    // Marks over REST: one message read, then all delivered, then listing marks the rest read.
    let (status, _) = call(
        t,
        Method::PUT,
        &format!("/chat/Message/{}.json", first["_id"].as_str().unwrap()),
        &u.a.1,
        Some(form(&[("chat_dialog_id", &gid), ("read", "1")])),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(get(t, &unread_path, &u.a.1).await.1["total"], 3);
    let (status, _) = call(
        t,
        Method::PUT,
        "/chat/Message.json",
        &u.a.1,
        Some(form(&[("chat_dialog_id", &gid), ("delivered", "1")])),
    )
    .await;
    assert_eq!(status, 200);
    let (_, page) = get(t, &path, &u.c.1).await;
    for message in page["items"].as_array().unwrap() {
        if message["sender_id"] != a {
            assert!(
                message["delivered_ids"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(a)),
                "{message}"
            );
        }
        let read_by_a = message["read_ids"].as_array().unwrap().contains(&json!(a));
        assert_eq!(read_by_a, message["_id"] == first["_id"], "{message}");
    }
    let (_, _) = get(
        t,
        &format!("/chat/Message.json?chat_dialog_id={gid}"),
        &u.a.1,
    )
    .await;
    assert_eq!(
        get(t, &unread_path, &u.a.1).await.1,
        json!({"total": 0, gid.clone(): 0})
    );
    // Mark all read for c.
    let (status, _) = call(
        t,
        Method::PUT,
        "/chat/Message.json",
        &u.c.1,
        Some(form(&[("chat_dialog_id", &gid), ("read", "1")])),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(get(t, &unread_path, &u.c.1).await.1["total"], 0);
    let _ = old;

    // recipient_id creates the private dialog; its messages carry recipient_id and `read`.
    let private = post_message(t, &u.a.1, json!({"recipient_id": c, "message": "psst"})).await;
    assert_eq!(private["recipient_id"], c);
    assert_eq!(private["read"], 0);
    let pid = private["chat_dialog_id"].as_str().unwrap().to_string();
    let (_, list) = get(t, "/chat/Dialog.json?type=3", &u.c.1).await;
    assert_eq!(ids(&list), vec![pid.clone()]);
    assert_eq!(list["items"][0]["occupants_ids"], json!([a, c]));
    assert_eq!(list["items"][0]["last_message"], "psst");
    let (_, page) = get(
        t,
        &format!("/chat/Message.json?chat_dialog_id={pid}"),
        &u.c.1,
    )
    .await;
    assert_eq!(
        page["items"][0]["read"], 1,
        "listing marked it read for the recipient"
    );
    let (_, all) = get(t, "/chat/Message/unread.json", &u.c.1).await;
    assert_eq!(all["total"], 0);

    // Non-occupants: no reading, no posting, no marking.
    let outsider = t.create_user("chatd", "chatdpass1", &[]).await;
    let d_token = t.session(Some(("chatd", "chatdpass1"))).await;
    let _ = outsider;
    assert_eq!(
        get(
            t,
            &format!("/chat/Message.json?chat_dialog_id={gid}"),
            &d_token
        )
        .await
        .0,
        403
    );
    let (status, _) = call_json(
        t,
        Method::POST,
        "/chat/Message.json",
        &d_token,
        json!({"chat_dialog_id": gid, "message": "hi"}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        t,
        Method::PUT,
        "/chat/Message.json",
        &d_token,
        Some(form(&[("chat_dialog_id", &gid), ("read", "1")])),
    )
    .await;
    assert_eq!(status, 403);
    // Bad input.
    for (query, want) in [
        ("", 422),
        ("chat_dialog_id=xyz", 422),
        ("chat_dialog_id=5f0000000000000000000000", 404),
    ] {
        assert_eq!(
            get(t, &format!("/chat/Message.json?{query}"), &u.a.1)
                .await
                .0,
            want,
            "{query}"
        );
    }
    for bad in [
        json!({"message": "no dialog"}),
        json!({"chat_dialog_id": "nothex", "message": "x"}),
        json!({"recipient_id": "abc", "message": "x"}),
        json!({"recipient_id": a, "message": "to myself"}),
        json!({"recipient_id": 999_999, "message": "nobody"}),
        json!({"chat_dialog_id": gid, "date_sent": "soon"}),
        json!({"chat_dialog_id": gid, "attachments": "nope"}),
    ] {
        let (status, body) =
            call_json(t, Method::POST, "/chat/Message.json", &u.a.1, bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    let (_, count) = get(
        t,
        &format!("/chat/Message.json?chat_dialog_id={gid}&count=1"),
        &u.a.1,
    )
    .await;
    assert_eq!(count["items"]["count"], 4, "nothing was added");
}

async fn message_edits_and_deletes(t: &TestServer) {
    let u = users(t).await;
    let (a, b) = (u.a.0, u.b.0);
    let group = create_dialog(
        t,
        &u.a.1,
        &[
            ("type", "2"),
            ("name", "G"),
            ("occupants_ids", &b.to_string()),
        ],
    )
    .await;
    let gid = group["_id"].as_str().unwrap().to_string();
    let m1 = post_message(t, &u.b.1, json!({"chat_dialog_id": gid, "message": "tpyo"})).await;
    let m2 = post_message(t, &u.b.1, json!({"chat_dialog_id": gid, "message": "two"})).await;
    let m3 = post_message(
        t,
        &u.a.1,
        json!({"chat_dialog_id": gid, "message": "three"}),
    )
    .await;
    let id = |m: &Value| m["_id"].as_str().unwrap().to_string();
    let list = |token: String| {
        let gid = gid.clone();
        async move { texts(t, &token, &gid, String::new()).await }
    };

    // Only the sender edits.
    let edit = |who: String, body: Vec<(&'static str, String)>, target: String| async move {
        let pairs: Vec<(&str, &str)> = body.iter().map(|(k, v)| (*k, v.as_str())).collect();
        call(
            t,
            Method::PUT,
            &format!("/chat/Message/{target}.json"),
            &who,
            Some(form(&pairs)),
        )
        .await
        .0
    };
    assert_eq!(
        edit(
            u.a.1.clone(),
            vec![
                ("chat_dialog_id", gid.clone()),
                ("message", "hacked".into())
            ],
            id(&m1)
        )
        .await,
        403
    );
    assert_eq!(
        edit(
            u.b.1.clone(),
            vec![("chat_dialog_id", gid.clone()), ("message", "typo".into())],
            id(&m1)
        )
        .await,
        200
    );
    assert_eq!(list(u.a.1.clone()).await, ["typo", "two", "three"]);
    // A message of another dialog, a malformed id, an unknown id: 404/422, nothing changes.
    let other = create_dialog(
        t,
        &u.a.1,
        &[
            ("type", "2"),
            ("name", "O"),
            ("occupants_ids", &b.to_string()),
        ],
    )
    .await;
    let oid = other["_id"].as_str().unwrap().to_string();
    assert_eq!(
        edit(
            u.b.1.clone(),
            vec![("chat_dialog_id", oid), ("message", "x".into())],
            id(&m2)
        )
        .await,
        404
    );
    assert_eq!(
        edit(
            u.b.1.clone(),
            vec![("chat_dialog_id", gid.clone()), ("message", "x".into())],
            format!("{},zz", id(&m2))
        )
        .await,
        422
    );
    assert_eq!(
        edit(
            u.b.1.clone(),
            vec![("chat_dialog_id", gid.clone()), ("message", "x".into())],
            format!("{},5f0000000000000000000000", id(&m2))
        )
        .await,
        404
    );
    assert_eq!(list(u.a.1.clone()).await, ["typo", "two", "three"]);

    // Delete for me: gone for a only; unread drops with it.
    let unread = |token: String| async move {
        get(t, "/chat/Message/unread.json", &token).await.1["total"].clone()
    };
    assert_eq!(unread(u.a.1.clone()).await, 2);
    let (status, _) = call(
        t,
        Method::DELETE,
        &format!("/chat/Message/{}.json", id(&m2)),
        &u.a.1,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list(u.a.1.clone()).await, ["typo", "three"]);
    assert_eq!(list(u.b.1.clone()).await, ["typo", "two", "three"]);
    assert_eq!(unread(u.a.1.clone()).await, 1);
    // Force: not for a message of someone else unless you own the dialog; b does not.
    let (status, _) = call(
        t,
        Method::DELETE,
        &format!("/chat/Message/{}.json", id(&m3)),
        &u.b.1,
        Some(form(&[("force", "1")])),
    )
    .await;
    assert_eq!(status, 403);
    // The owner (a) force-deletes b's message and its own last one: gone for everyone, and
    // the dialog's last message falls back.
    let (status, _) = call(
        t,
        Method::DELETE,
        &format!("/chat/Message/{},{}.json", id(&m1), id(&m3)),
        &u.a.1,
        Some(form(&[("force", "1")])),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list(u.b.1.clone()).await, ["two"]);
    let (_, dialogs) = get(t, &format!("/chat/Dialog.json?_id={gid}"), &u.b.1).await;
    assert_eq!(dialogs["items"][0]["last_message"], "two");
    assert_eq!(dialogs["items"][0]["last_message_user_id"], b);
    assert_eq!(unread(u.a.1.clone()).await, 0);
    let _ = a;
    let (status, _) = call(
        t,
        Method::DELETE,
        "/chat/Message/5f0000000000000000000000.json",
        &u.a.1,
        None,
    )
    .await;
    assert_eq!(status, 404);
}
