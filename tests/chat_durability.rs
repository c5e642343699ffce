//! No loss: the real `switchboard serve` process is killed with SIGKILL in the middle of a
//! burst of `save_to_history` messages; after a restart on the same data directory, every
//! message the sender saw acknowledged (XEP-0198 `<a h>`) is in the history.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::xmpp::XmppClient;
use switchboard::model::AppId;
use switchboard::store::Store;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct Running {
    child: Child,
    xmpp: std::net::SocketAddr,
    cert: PathBuf,
}

/// Starts `switchboard serve` and reads the listeners it reports.
async fn serve(config: &std::path::Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("switchboard starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut xmpp = None;
    let mut cert = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while xmpp.is_none() || cert.is_none() {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("the banner within a minute")
            .unwrap()
            .expect("the banner before stdout closes");
        if let Some(rest) = line.trim().strip_prefix("XMPP c2s (STARTTLS)") {
            xmpp = rest.split_whitespace().next().map(|a| a.parse().unwrap());
        }
        if let Some((_, path)) = line.split_once("certificate: ") {
            cert = Some(PathBuf::from(path.trim()));
        }
    }
    // Keep draining stdout so the server never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Running {
        child,
        xmpp: xmpp.unwrap(),
        cert: cert.unwrap(),
    }
}

fn acked(text: &str) -> Option<u32> {
    let at = text.find("<a xmlns='urn:xmpp:sm:3' h='")? + "<a xmlns='urn:xmpp:sm:3' h='".len();
    text[at..].split('\'').next()?.parse().ok()
}

#[tokio::test]
async fn acknowledged_saved_messages_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = {data:?}\n[api]\nlisten = \"127.0.0.1:0\"\n\
             [xmpp]\nlisten = \"127.0.0.1:0\"\nws_listen = \"\"\nstanza_rate_per_s = 100000\nstanza_burst = 100000\n\
             [metrics]\nlisten = \"\"\n"
        ),
    )
    .unwrap();
    let (app, sender, recipient) = {
        let store = Store::open("", &data, 2).await.unwrap();
        let app = switchboard::admin::create_app(&store, "durable")
            .await
            .unwrap();
        let id = AppId(app.application_id);
        let a = switchboard::admin::create_user(&store, id, "dura", "durapass12", None, &[])
            .await
            .unwrap();
        let b = switchboard::admin::create_user(&store, id, "durb", "durbpass12", None, &[])
            .await
            .unwrap();
        store.close().await;
        (id, a.id, b.id)
    };
    let node = format!("{}-{}", sender.0, app.0);
    let to = format!("{}-{}@localhost", recipient.0, app.0);

    let mut server = serve(&config).await;
    let mut client = XmppClient::login(
        server.xmpp,
        "localhost",
        &server.cert,
        &node,
        "durapass12",
        Some("r"),
    )
    .await
    .expect("login");
    client.send("<enable xmlns='urn:xmpp:sm:3'/>").await;
    client
        .expect("enabled", |s| s.as_str().contains("enabled"))
        .await;
    let message = |i: u32| {
        format!(
            "<message to='{to}' type='chat' id='{:024x}'><body>burst {i}</body>\
             <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history></extraParams></message>",
            0x6b00_0000_0000_0000_0000_0000u128 + u128::from(i)
        )
    };
    // Acknowledged in steps first, so there is a known floor...
    let mut sent = 0u32;
    let mut best = 0u32;
    for _ in 0..10 {
        for _ in 0..20 {
            client.send(&message(sent)).await;
            sent += 1;
        }
        client.send("<r xmlns='urn:xmpp:sm:3'/>").await;
        let answer = client.expect("ack", |s| acked(s.as_str()).is_some()).await;
        best = best.max(acked(answer.as_str()).unwrap());
    }
    assert_eq!(best, 200);
    // ...then a burst with ack requests in flight, and the process dies under it.
    for _ in 0..30 {
        for _ in 0..10 {
            client.send(&message(sent)).await;
            sent += 1;
        }
        client.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    }
    // Let some of the burst be handled (and acknowledged), not all of it.
    while let Some(stanza) = client.next_within(Duration::from_secs(5)).await {
        if let Some(h) = acked(stanza.as_str()) {
            best = best.max(h);
            if best >= 260 {
                break;
            }
        }
    }
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    // Every ack that made it out before the kill counts.
    while let Some(stanza) = client.next_within(Duration::from_millis(500)).await {
        if let Some(h) = acked(stanza.as_str()) {
            best = best.max(h);
        }
    }
    println!("sent {sent}, acknowledged {best}");
    assert!(best >= 200 && best <= sent);

    let _restarted = serve(&config).await;
    let store = Store::open("", &data, 2).await.unwrap();
    let dialog = store
        .private_dialog(app, sender, recipient)
        .await
        .unwrap()
        .expect("the private dialog");
    let ids: std::collections::HashSet<String> = {
        use sqlx::Row;
        sqlx::query("SELECT id FROM messages WHERE dialog_id = $1")
            .bind(dialog.id.as_str().to_string())
            .fetch_all(&store.pool_for_tests())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect()
    };
    for i in 0..best {
        let id = format!(
            "{:024x}",
            0x6b00_0000_0000_0000_0000_0000u128 + u128::from(i)
        );
        assert!(
            ids.contains(&id),
            "message {i} was acknowledged (h={best}) but is not in history"
        );
    }
}
