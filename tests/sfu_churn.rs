//! Churn and isolation in conference rooms: a participant joins, publishes, subscribes to
//! another feed, gets media and leaves by closing its socket (as the QuickBlox client does on
//! page unload), 1,000 times, while garbage is thrown at the media port; meanwhile a steady
//! publisher in that room and two more in other rooms keep their watchers fed, on a server with
//! two media shards. Afterwards the server holds no more descriptors, PeerConnections or memory
//! than before, and the steady pairs lost nothing.

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

/// Waits until the server holds only the steady pairs' PeerConnections.
async fn settled(t: &TestServer, pairs: usize) -> bool {
    let pairs = Some(pairs as f64);
    for _ in 0..200 {
        let publishers = gauge(t, "switchboard_sfu_peer_connections{role=\"publisher\"}").await;
        let subscribers = gauge(t, "switchboard_sfu_peer_connections{role=\"subscriber\"}").await;
        if publishers == pairs && subscribers == pairs {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// A publisher sending a packet pair every 20 ms from its own task, and a watcher subscribed
/// to it counting the video packets that arrive.
struct Steady {
    sent: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    stop_sending: Arc<AtomicBool>,
    stop_receiving: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The signalling connections stay open while the pair runs.
    _janus: (Janus, Janus),
}

impl Steady {
    async fn start(t: &TestServer, publisher: &Member, watcher: &Member, room: &str) -> Steady {
        let (publisher_janus, _, mut publisher_peer, audio, video) =
            publish(t, publisher, room).await;
        let mut watcher_janus = Janus::connect(t, Some(&watcher.token)).await.unwrap();
        watcher_janus.create().await;
        let mut watcher_peer = subscribe(&mut watcher_janus, room, publisher.id).await;
        assert!(
            watcher_peer
                .drive_until(Duration::from_secs(10), |p| p.connected)
                .await,
            "the watcher connects"
        );
        let sent = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let stop_sending = Arc::new(AtomicBool::new(false));
        let stop_receiving = Arc::new(AtomicBool::new(false));
        let sender = {
            let (stop, sent) = (stop_sending.clone(), sent.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    publisher_peer.send(audio, video, i);
                    i += 1;
                    sent.store(i as usize, Ordering::Relaxed);
                    publisher_peer
                        .drive_until(Duration::from_millis(20), |_| false)
                        .await;
                }
            })
        };
        let receiver = {
            let (stop, received) = (stop_receiving.clone(), received.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    watcher_peer
                        .drive_until(Duration::from_millis(50), |_| false)
                        .await;
                    received.store(watcher_peer.video_packets, Ordering::Relaxed);
                }
            })
        };
        Steady {
            sent,
            received,
            stop_sending,
            stop_receiving,
            tasks: vec![sender, receiver],
            _janus: (publisher_janus, watcher_janus),
        }
    }

    /// (sent, received) so far.
    fn counts(&self) -> (usize, usize) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }

    /// Stops sending, lets what is in flight (and its repairs) arrive, and stops.
    async fn stop(mut self) -> (usize, usize) {
        self.stop_sending.store(true, Ordering::Relaxed);
        let sender = self.tasks.remove(0);
        let _ = sender.await;
        let sent = self.sent.load(Ordering::Relaxed);
        for _ in 0..100 {
            if self.received.load(Ordering::Relaxed) >= sent {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop_receiving.store(true, Ordering::Relaxed);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        (sent, self.received.load(Ordering::Relaxed))
    }
}

/// A group dialog of `owner` and `others`: its id is the conference room's.
async fn dialog(t: &TestServer, owner: &Member, others: &[&Member], name: &str) -> String {
    let occupants: Vec<i64> = others.iter().map(|m| m.id).collect();
    let response = t
        .client
        .request(Method::POST, t.url("/chat/Dialog.json"))
        .header("QB-Token", &owner.token)
        .json(&json!({"type": 2, "name": name, "occupants_ids": occupants}))
        .send()
        .await
        .unwrap();
    let dialog: Value = response.json().await.unwrap();
    dialog["_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_leave_descriptors_and_memory_at_baseline() {
    let cycles: usize = std::env::var("SB_CHURN_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    // Two shards, so rooms and the kernel's choice of socket for each client address differ.
    let t = TestServer::start_with(|config| config.sfu.shards = 2).await;
    let steady = member(&t, "churnsteady").await;
    let watcher = member(&t, "churnwatch").await;
    let visitor = member(&t, "churnvisit").await;
    let room = dialog(&t, &steady, &[&watcher, &visitor], "Churn").await;
    let mut pairs = vec![Steady::start(&t, &steady, &watcher, &room).await];
    // Other rooms forwarding meanwhile.
    for n in 0..2 {
        let publisher = member(&t, &format!("otherpub{n}")).await;
        let watcher = member(&t, &format!("otherwatch{n}")).await;
        let room = dialog(&t, &publisher, &[&watcher], &format!("Other {n}")).await;
        pairs.push(Steady::start(&t, &publisher, &watcher, &room).await);
    }
    let media = t.server.sfu_addrs.media;
    let garbage = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();

    for n in 0..10 {
        visit(&t, &visitor, &room, steady.id, &garbage, media, n).await;
    }
    assert!(
        settled(&t, pairs.len()).await,
        "after the warm-up only the steady pairs are left"
    );
    let descriptors = open_descriptors();
    let memory = resident_kib();
    let before: Vec<(usize, usize)> = pairs.iter().map(Steady::counts).collect();
    for n in 10..10 + cycles {
        visit(&t, &visitor, &room, steady.id, &garbage, media, n).await;
    }
    assert!(
        settled(&t, pairs.len()).await,
        "after {cycles} visits only the steady pairs are left"
    );
    let rooms = gauge(&t, "switchboard_sfu_rooms").await;
    assert_eq!(rooms, Some(3.0));
    let participants = gauge(&t, "switchboard_sfu_participants").await;
    assert_eq!(
        participants,
        Some(3.0),
        "the steady publishers (their watchers only subscribe)"
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
    // The steady pairs went on all along and lost nothing (a packet in flight when the
    // first count was taken may be counted as received but not as sent: one of slack).
    for (n, (pair, (sent_before, received_before))) in pairs.into_iter().zip(before).enumerate() {
        let (sent, received) = pair.stop().await;
        let sent = sent - sent_before;
        let received = received - received_before;
        println!("steady pair {n}: {sent} sent, {received} received during the churn");
        assert!(sent > 0, "pair {n} sent during the churn");
        assert!(
            received + 1 >= sent,
            "pair {n} lost packets: {sent} sent, {received} received"
        );
    }
}
