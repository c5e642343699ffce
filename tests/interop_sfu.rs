//! The conference SFU with WebRTC stacks nobody here wrote: aiortc (Python) publishers and
//! subscribers in a QuickBlox dialog's room through the Janus API, each decoding the others'
//! audio and video; a user who is not an occupant is refused.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn python(test: &str) -> Option<(PathBuf, PathBuf)> {
    let python = std::env::var("SWITCHBOARD_PYTHON").map(PathBuf::from).ok();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/py");
    let present = python.as_ref().is_some_and(|p| p.exists());
    if !interop_requirement(
        test,
        present,
        "SWITCHBOARD_PYTHON (a venv with aiortc) is not set",
    ) {
        return None;
    }
    Some((python.unwrap(), dir))
}

async fn member(t: &TestServer, login: &str) -> Value {
    let password = format!("{login}pass12");
    let node = t.xmpp_user(login, &password).await;
    let id: i64 = node.split('-').next().unwrap().parse().unwrap();
    let token = t.session(Some((login, &password))).await;
    json!({"id": id, "token": token, "name": login})
}

#[tokio::test]
async fn aiortc_peers_see_and_hear_each_other_through_the_sfu() {
    let Some((python, dir)) = python("aiortc_peers_see_and_hear_each_other_through_the_sfu") else {
        return;
    };
    let t = TestServer::start().await;
    let mut users = Vec::new();
    for login in ["sfuann", "sfuben", "sfucid"] {
        users.push(member(&t, login).await);
    }
    let outsider = member(&t, "sfuout").await;
    let response = t
        .client
        .request(Method::POST, t.url("/chat/Dialog.json"))
        .header("QB-Token", users[0]["token"].as_str().unwrap())
        .json(&json!({"type": 2, "name": "Conference", "occupants_ids": [users[1]["id"], users[2]["id"]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let dialog: Value = response.json().await.unwrap();
    let addr = t.server.sfu_addrs.signalling.unwrap();
    let env = vec![
        ("SB_JANUS_URL", format!("ws://{addr}/")),
        ("SB_ROOM", dialog["_id"].as_str().unwrap().to_string()),
        ("SB_USERS", Value::Array(users).to_string()),
        ("SB_OUTSIDER", outsider.to_string()),
    ];
    let script = dir.join("sfu_aiortc.py");
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
        "aiortc conference failed:\n{out}\n--- stderr ---\n{err}"
    );
    let metrics = t.metrics_text().await;
    assert!(metrics.contains("switchboard_sfu_rtp_packets_total{direction=\"egress\"}"));
}
