//! Interop with slixmpp (Python), a client nobody here wrote: login over STARTTLS, roster and
//! subscriptions, presence, 1:1 messages, pings, disco, carbons, offline delivery, spoofed
//! `from`, and XEP-0198 resumption after a killed TCP connection; then slixmpp's own live
//! integration tests ("itests") that pass against Prosody 0.12.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

fn python(test: &str) -> Option<(PathBuf, PathBuf)> {
    interop_python(test, "slixmpp")
}

async fn users(t: &TestServer, n: usize) -> String {
    let mut list = Vec::new();
    for i in 0..n {
        let password = format!("slixpass{i}x");
        let node = t.xmpp_user(&format!("slix{i}"), &password).await;
        list.push(serde_json::json!({"jid": format!("{node}@localhost"), "password": password}));
    }
    serde_json::Value::Array(list).to_string()
}

#[tokio::test]
async fn slixmpp_scenario() {
    let Some((python, dir)) = python("slixmpp_scenario") else {
        return;
    };
    let t = TestServer::start().await;
    let env = vec![
        ("SB_XMPP_HOST", "127.0.0.1".to_string()),
        ("SB_XMPP_PORT", t.server.xmpp_addrs.tcp.port().to_string()),
        ("SB_DOMAIN", "localhost".to_string()),
        ("SB_USERS", users(&t, 3).await),
    ];
    let script = dir.join("xmpp_client.py");
    let (ok, out, err) = run_client(
        &python,
        &[script.to_str().unwrap()],
        &dir,
        &env,
        Duration::from_secs(150),
    )
    .await;
    println!("{out}");
    assert!(
        ok && out.contains("ALL OK"),
        "slixmpp scenario failed:\n{out}\n--- stderr ---\n{err}"
    );
}

/// slixmpp in group dialog rooms and the archive (`tests/interop/py/chat_muc_mam.py`): MUC
/// join (QuickBlox handshake and slixmpp's own), disco items, groupchat with history,
/// members-only refusal, a public room, leave; MAM of a 1:1 chat and of a room, with RSM.
#[tokio::test]
async fn slixmpp_rooms_and_archives() {
    let Some((python, dir)) = python("slixmpp_rooms_and_archives") else {
        return;
    };
    let t = TestServer::start().await;
    let users_json = users(&t, 3).await;
    let list: serde_json::Value = serde_json::from_str(&users_json).unwrap();
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for (i, user) in list.as_array().unwrap().iter().enumerate() {
        let node = user["jid"].as_str().unwrap();
        ids.push(node.split('-').next().unwrap().parse::<i64>().unwrap());
        tokens.push(
            t.session(Some((&format!("slix{i}"), &format!("slixpass{i}x"))))
                .await,
        );
    }
    let create = |token: String, body: serde_json::Value| {
        let t = &t;
        async move {
            let response = t
                .client
                .post(t.url("/chat/Dialog.json"))
                .header("QB-Token", token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            let dialog: serde_json::Value = response.json().await.unwrap();
            dialog["xmpp_room_jid"].as_str().unwrap().to_string()
        }
    };
    let group = create(
        tokens[0].clone(),
        serde_json::json!({"type": 2, "name": "slix group", "occupants_ids": [ids[1]]}),
    )
    .await;
    let public = create(
        tokens[0].clone(),
        serde_json::json!({"type": 1, "name": "slix public"}),
    )
    .await;
    let env = vec![
        ("SB_XMPP_HOST", "127.0.0.1".to_string()),
        ("SB_XMPP_PORT", t.server.xmpp_addrs.tcp.port().to_string()),
        ("SB_DOMAIN", "localhost".to_string()),
        ("SB_USERS", users_json),
        (
            "SB_ROOMS",
            serde_json::json!({"group": group, "public": public}).to_string(),
        ),
    ];
    let script = dir.join("chat_muc_mam.py");
    let (ok, out, err) = run_client(
        &python,
        &[script.to_str().unwrap()],
        &dir,
        &env,
        Duration::from_secs(150),
    )
    .await;
    println!("{out}");
    assert!(
        ok && out.contains("ALL OK"),
        "slixmpp rooms and archives failed:\n{out}\n--- stderr ---\n{err}"
    );
}

#[tokio::test]
async fn slixmpp_itests_that_pass_on_prosody_pass_here() {
    let Some((_, dir)) = python("slixmpp_itests_that_pass_on_prosody_pass_here") else {
        return;
    };
    let t = TestServer::start().await;
    let env = vec![
        ("SB_XMPP_HOST", "127.0.0.1".to_string()),
        ("SB_XMPP_PORT", t.server.xmpp_addrs.tcp.port().to_string()),
        ("SB_DOMAIN", "localhost".to_string()),
        ("SB_USERS", users(&t, 2).await),
    ];
    let runner = dir.join("run_itests.sh");
    let baseline = dir.join("itests_prosody_baseline.txt");
    let (ok, out, err) = run_client(
        &runner,
        &["--baseline", baseline.to_str().unwrap()],
        &dir,
        &env,
        Duration::from_secs(600),
    )
    .await;
    println!("{out}");
    assert!(
        ok,
        "itests below the Prosody baseline:\n{out}\n--- stderr ---\n{err}"
    );
    // Beyond Prosody's minimal module set: itests of features this server implements too.
    let (ok, out, err) = run_client(
        &runner,
        &["test_blocking"],
        &dir,
        &env,
        Duration::from_secs(300),
    )
    .await;
    println!("{out}");
    assert!(
        ok && out.contains("PASS test_blocking") && !out.contains("FAIL"),
        "itests of implemented features failed:\n{out}\n--- stderr ---\n{err}"
    );
}
