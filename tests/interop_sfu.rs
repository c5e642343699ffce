//! The conference SFU with WebRTC stacks nobody here wrote: aiortc (Python) publishers and
//! subscribers, and three Chromium pages running Meetecho's janus.js, in a QuickBlox dialog's
//! room through the Janus API, each decoding the others' audio and video; a user who is not an
//! occupant is refused.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn python(test: &str) -> Option<(PathBuf, PathBuf)> {
    interop_python(test, "aiortc")
}

async fn member(t: &TestServer, login: &str) -> Value {
    let password = format!("{login}pass12");
    let node = t.xmpp_user(login, &password).await;
    let id: i64 = node.split('-').next().unwrap().parse().unwrap();
    let token = t.session(Some((login, &password))).await;
    json!({"id": id, "token": token, "name": login})
}

/// Three occupants of a group dialog and one outsider, as the scripts take them.
async fn conference(t: &TestServer, prefix: &str) -> Vec<(&'static str, String)> {
    let mut users = Vec::new();
    for n in 0..3 {
        users.push(member(t, &format!("{prefix}{n}")).await);
    }
    let outsider = member(t, &format!("{prefix}out")).await;
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
    vec![
        ("SB_JANUS_URL", format!("ws://{addr}/")),
        ("SB_ROOM", dialog["_id"].as_str().unwrap().to_string()),
        ("SB_USERS", Value::Array(users).to_string()),
        ("SB_OUTSIDER", outsider.to_string()),
    ]
}

#[tokio::test]
async fn janus_js_in_three_chromium_pages_decodes_each_others_video() {
    browser_conference(
        "janus_js_in_three_chromium_pages_decodes_each_others_video",
        false,
    )
    .await;
}

/// The same over janus.js's HTTP long-poll transport (the QuickBlox client's choice when its
/// server URL is not `ws…`): the token rides in the server URL, janus.js appends the ids.
#[tokio::test]
async fn janus_js_over_http_long_poll_decodes_each_others_video() {
    browser_conference(
        "janus_js_over_http_long_poll_decodes_each_others_video",
        true,
    )
    .await;
}

/// The real QuickBlox conference client (0.8.8, vendored unmodified) in three Chromium pages,
/// used as QuickBlox's sample uses it.
#[tokio::test]
async fn quickblox_conference_client_in_three_chromium_pages() {
    browser_script(
        "quickblox_conference_client_in_three_chromium_pages",
        "qb_conference_browser.js",
        false,
    )
    .await;
}

/// A janus.js publisher sending simulcast (rids h/m/l) and a subscriber pinning layers with
/// `configure` `substream`: smaller frames on the bottom layer, larger on the top.
#[tokio::test]
async fn chromium_simulcast_layers_follow_the_pinned_substream() {
    browser_script(
        "chromium_simulcast_layers_follow_the_pinned_substream",
        "sfu_simulcast_browser.js",
        false,
    )
    .await;
}

async fn browser_conference(test: &str, http: bool) {
    browser_script(test, "sfu_browser.js", http).await;
}

async fn browser_script(test: &str, script: &str, http: bool) {
    let Some((dir, chromium)) = interop_browser(test, "janus-gateway") else {
        return;
    };
    let t = TestServer::start().await;
    let prefix = match (script, http) {
        ("qb_conference_browser.js", _) => "qbc",
        ("sfu_simulcast_browser.js", _) => "simul",
        (_, true) => "poll",
        (_, false) => "web",
    };
    let mut env = conference(&t, prefix).await;
    if http {
        let addr = t.server.sfu_addrs.signalling.unwrap();
        for (key, value) in env.iter_mut() {
            if *key == "SB_JANUS_URL" {
                *value = format!("http://{addr}/janus");
            }
        }
    }
    env.push(("SWITCHBOARD_CHROMIUM", chromium));
    let script_path = dir.join(script);
    let (ok, out, err) = run_client(
        std::path::Path::new("node"),
        &[script_path.to_str().unwrap()],
        &dir,
        &env,
        Duration::from_secs(150),
    )
    .await;
    println!("{out}");
    assert!(
        ok && out.contains("ALL OK"),
        "{script} in Chromium failed:\n{out}\n--- stderr ---\n{err}"
    );
}

#[tokio::test]
async fn aiortc_peers_see_and_hear_each_other_through_the_sfu() {
    let Some((python, dir)) = python("aiortc_peers_see_and_hear_each_other_through_the_sfu") else {
        return;
    };
    let t = TestServer::start().await;
    let env = conference(&t, "sfu").await;
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
