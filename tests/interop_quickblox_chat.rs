//! Interop: the real QuickBlox JS SDK (2.23.0) in headless Chromium, over XMPP-over-WebSocket:
//! REST session, `QB.chat.connect` with the session token, 1:1 messages both ways, delivery
//! markers, typing, system notifications (server-stamped `from`), the 5 s ping keep-alive,
//! stream management acks and last activity (`tests/interop/js/chat_browser.js`).

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn quickblox_sdk_chat_in_chromium() {
    run_browser_script("quickblox_sdk_chat_in_chromium", "chat_browser.js").await;
}

/// Dialogs, group rooms, history, read status and unread counts through the SDK
/// (`tests/interop/js/dialogs_browser.js`): a group dialog created over REST, both users in
/// its room, saved groupchat read back over REST, markers, a private dialog made by the
/// first 1:1 message, occupant join/leave/removal listeners, force delete.
#[tokio::test]
async fn quickblox_sdk_dialogs_rooms_and_history_in_chromium() {
    run_browser_script(
        "quickblox_sdk_dialogs_rooms_and_history_in_chromium",
        "dialogs_browser.js",
    )
    .await;
}

async fn run_browser_script(test: &str, script: &str) {
    let Some((dir, chromium)) = interop_browser(test, "puppeteer-core") else {
        return;
    };
    let t = TestServer::start().await;
    let mut users = Vec::new();
    let mut ids = Vec::new();
    for (login, password) in [("qba", "qbapass123"), ("qbb", "qbbpass123")] {
        let node = t.xmpp_user(login, password).await;
        let id: i64 = node.split('-').next().unwrap().parse().unwrap();
        ids.push(id);
        users.push(serde_json::json!({"id": id, "login": login, "password": password}));
    }
    // The private dialog of the two, as an app would have it before chatting: the messages
    // chat_browser.js saves carry its id (an unknown id would be replaced by the real one).
    let token = t.session(Some(("qba", "qbapass123"))).await;
    let dialog: serde_json::Value = t
        .client
        .post(t.url("/chat/Dialog.json"))
        .header("QB-Token", token)
        .json(&serde_json::json!({"type": 3, "occupants_ids": [ids[1]]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dialog_id = dialog["_id"]
        .as_str()
        .expect("a private dialog")
        .to_string();
    let ws = t.server.xmpp_addrs.ws.expect("websocket listener");
    let env = vec![
        ("SB_API", t.server.api_addr.to_string()),
        ("SB_DOMAIN", "localhost".to_string()),
        ("SB_WS_URL", format!("ws://{ws}/")),
        ("SB_APP_ID", t.app.application_id.to_string()),
        ("SB_AUTH_KEY", t.app.auth_key.clone()),
        ("SB_AUTH_SECRET", t.app.auth_secret.clone()),
        ("SB_ACCOUNT_KEY", t.app.account_key.clone()),
        ("SB_USERS", serde_json::Value::Array(users).to_string()),
        ("SWITCHBOARD_CHROMIUM", chromium),
        ("SB_DIALOG_ID", dialog_id),
    ];
    let script_path = dir.join(script);
    let (ok, out, err) = run_client(
        std::path::Path::new("node"),
        &[script_path.to_str().unwrap()],
        &dir,
        &env,
        Duration::from_secs(180),
    )
    .await;
    println!("{out}");
    assert!(
        ok && out.contains("ALL OK"),
        "{script} in Chromium failed:\n{out}\n--- stderr ---\n{err}"
    );
}
