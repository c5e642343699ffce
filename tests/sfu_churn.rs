//! Churn and isolation in a conference room: a participant joins, publishes, subscribes to
//! another feed, gets media and leaves by closing its socket (as the QuickBlox client does on
//! page unload), 200 times, while garbage is thrown at the media port; meanwhile a steady
//! publisher keeps its one subscriber fed. Afterwards the server holds no more descriptors,
//! PeerConnections or memory than before, and the steady pair never noticed.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::janus::Janus;
use common::webrtc::Peer;
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

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Joins `room` as a publisher and connects; returns the client, its handle and the peer.
async fn publish(
    t: &TestServer,
    who: &Member,
    room: &str,
) -> (Janus, u64, Peer, str0m::media::Mid, str0m::media::Mid) {
    let mut janus = Janus::connect(t, Some(&who.token)).await.unwrap();
    janus.create().await;
    let handle = janus.attach().await;
    let joined = janus
        .message(
            handle,
            json!({"request": "join", "room": room, "ptype": "publisher", "id": who.id}),
        )
        .await;
    assert_eq!(joined["videoroom"], "joined", "{joined}");
    let mut peer = Peer::new().await;
    let (offer, pending, audio, video) = peer.publisher_offer();
    let event = janus.message_event(handle, json!({"janus": "message", "body": {"request": "configure", "audio": true, "video": true}, "jsep": {"type": "offer", "sdp": offer}})).await;
    peer.accept_answer(pending, event["jsep"]["sdp"].as_str().expect("an answer"));
    assert!(
        peer.drive_until(Duration::from_secs(10), |p| p.connected)
            .await,
        "the publisher connects"
    );
    (janus, handle, peer, audio, video)
}

/// Subscribes to `feed` on a new handle and connects.
async fn subscribe(janus: &mut Janus, room: &str, feed: i64) -> Peer {
    let handle = janus.attach().await;
    let attached = janus.message_event(handle, json!({"janus": "message", "body": {"request": "join", "room": room, "ptype": "subscriber", "feed": feed}})).await;
    assert_eq!(
        attached["plugindata"]["data"]["videoroom"], "attached",
        "{attached}"
    );
    let mut peer = Peer::new().await;
    let answer = peer.accept_offer(attached["jsep"]["sdp"].as_str().unwrap());
    assert_eq!(
        janus.message_event(handle, json!({"janus": "message", "body": {"request": "start", "room": room}, "jsep": {"type": "answer", "sdp": answer}})).await["plugindata"]["data"]["started"],
        "ok"
    );
    peer
}

async fn gauge(t: &TestServer, line: &str) -> Option<f64> {
    let text = t.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|v| v.trim().parse().ok())
}

/// One visitor's stay: publish, subscribe to the steady feed and receive it, throw garbage at
/// the media port, leave by closing the socket.
async fn visit(
    t: &TestServer,
    visitor: &Member,
    room: &str,
    steady: i64,
    garbage: &tokio::net::UdpSocket,
    media: std::net::SocketAddr,
    n: usize,
) {
    let (mut janus, _, mut peer, _, _) = publish(t, visitor, room).await;
    let mut sub = subscribe(&mut janus, room, steady).await;
    assert!(
        sub.drive_until(Duration::from_secs(10), |p| p.video_packets > 0)
            .await,
        "visit {n}: the visitor receives the steady feed"
    );
    // Garbage of every kind at the media port: STUN-, RTP- and DTLS-looking.
    for first in [0u8, 1, 0x80, 0x90, 0x16, 0xff] {
        let mut junk = vec![first; 64 + n % 100];
        junk[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        let _ = garbage.send_to(&junk, media).await;
    }
    peer.drive_until(Duration::from_millis(1), |_| false).await;
    // Page unload: the socket closes without `destroy`.
    drop(janus);
}

/// Waits until the server holds only the steady pair's PeerConnections.
async fn settled(t: &TestServer) -> bool {
    for _ in 0..200 {
        let publishers = gauge(t, "switchboard_sfu_peer_connections{role=\"publisher\"}").await;
        let subscribers = gauge(t, "switchboard_sfu_peer_connections{role=\"subscriber\"}").await;
        if publishers == Some(1.0) && subscribers == Some(1.0) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_leave_descriptors_and_memory_at_baseline() {
    let cycles: usize = std::env::var("SB_CHURN_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let t = TestServer::start().await;
    let steady = member(&t, "churnsteady").await;
    let watcher = member(&t, "churnwatch").await;
    let visitor = member(&t, "churnvisit").await;
    let response = t
        .client
        .request(Method::POST, t.url("/chat/Dialog.json"))
        .header("QB-Token", &steady.token)
        .json(&json!({"type": 2, "name": "Churn", "occupants_ids": [watcher.id, visitor.id]}))
        .send()
        .await
        .unwrap();
    let dialog: Value = response.json().await.unwrap();
    let room = dialog["_id"].as_str().unwrap().to_string();

    // The steady publisher sends a packet pair every 20 ms from its own task; the watcher's
    // subscription counts what arrives.
    let (_steady_janus, _, mut steady_peer, audio, video) = publish(&t, &steady, &room).await;
    let mut watcher_janus = Janus::connect(&t, Some(&watcher.token)).await.unwrap();
    watcher_janus.create().await;
    let mut watcher_peer = subscribe(&mut watcher_janus, &room, steady.id).await;
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicUsize::new(0));
    let sender = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                steady_peer.send(audio, video, i);
                i += 1;
                steady_peer
                    .drive_until(Duration::from_millis(20), |_| false)
                    .await;
            }
        })
    };
    let receiver = {
        let stop = stop.clone();
        let received = received.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                watcher_peer
                    .drive_until(Duration::from_millis(50), |_| false)
                    .await;
                received.store(watcher_peer.video_packets, Ordering::Relaxed);
            }
        })
    };
    let media = t.server.sfu_addrs.media;
    let garbage = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();

    for n in 0..10 {
        visit(&t, &visitor, &room, steady.id, &garbage, media, n).await;
    }
    assert!(
        settled(&t).await,
        "after the warm-up only the steady pair is left"
    );
    let descriptors = open_descriptors();
    let memory = resident_kib();
    let before = received.load(Ordering::Relaxed);
    for n in 10..10 + cycles {
        visit(&t, &visitor, &room, steady.id, &garbage, media, n).await;
    }
    assert!(
        settled(&t).await,
        "after {cycles} visits only the steady pair is left"
    );
    let rooms = gauge(&t, "switchboard_sfu_rooms").await;
    assert_eq!(rooms, Some(1.0));
    let participants = gauge(&t, "switchboard_sfu_participants").await;
    assert_eq!(
        participants,
        Some(1.0),
        "the steady publisher (its watcher only subscribes)"
    );
    // Every visitor's subscription got its first frame, and forwarding was timed.
    let first_frames = gauge(&t, "switchboard_sfu_join_to_first_frame_seconds_count").await;
    assert!(
        first_frames.unwrap_or(0.0) >= (10 + cycles) as f64,
        "{first_frames:?}"
    );
    let forwarded = gauge(&t, "switchboard_sfu_forwarding_seconds_count").await;
    assert!(forwarded.unwrap_or(0.0) > 0.0);
    let after_descriptors = open_descriptors();
    let after_memory = resident_kib();
    println!(
        "descriptors {descriptors} -> {after_descriptors}, RSS {memory} -> {after_memory} KiB over {cycles} visits"
    );
    assert!(
        after_descriptors <= descriptors + 2,
        "descriptors grew: {descriptors} -> {after_descriptors}"
    );
    assert!(
        after_memory <= memory + 32 * 1024,
        "memory grew by more than 32 MiB: {memory} -> {after_memory} KiB"
    );
    // The steady pair went on all along.
    let after = received.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        received.load(Ordering::Relaxed) > after,
        "the steady subscription still receives"
    );
    assert!(after > before, "and received during the churn");
    stop.store(true, Ordering::Relaxed);
    let _ = sender.await;
    let _ = receiver.await;
}
