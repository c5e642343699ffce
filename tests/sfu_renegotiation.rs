//! Renegotiation in a conference: a publisher's new offer with an ICE restart (what the
//! QuickBlox client sends when it switches camera or shares its screen: `configure` with
//! `restart: true` and an offer) is answered and media keeps flowing over the new ICE
//! credentials; a subscriber's ICE restart (`configure` with `restart: true` on its handle)
//! gets a new offer, answered with `start`, and media keeps flowing too; `pause` stops
//! forwarding to a subscriber and `start` resumes it.

mod common;

use std::time::Duration;

use common::janus::Janus;
use common::webrtc::Peer;
use common::*;
use serde_json::json;

/// Runs `peer` (sending if `send` names its mids) until `done` or 10 s.
async fn run_until(peer: &mut Peer, done: impl Fn(&Peer) -> bool) -> bool {
    peer.drive_until(Duration::from_secs(10), done).await
}

/// The publisher sends a packet pair every 20 ms for a second while both peers run.
async fn exchange(
    publisher: &mut Peer,
    subscriber: &mut Peer,
    audio: str0m::media::Mid,
    video: str0m::media::Mid,
    sent: &mut u64,
) {
    for _ in 0..50 {
        publisher.send(audio, video, *sent);
        *sent += 1;
        publisher
            .drive_until(Duration::from_millis(15), |_| false)
            .await;
        subscriber
            .drive_until(Duration::from_millis(5), |_| false)
            .await;
    }
}

fn ufrag(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restarts_on_both_sides_keep_media_flowing() {
    let t = TestServer::start().await;
    let mut admin = Janus::connect(&t, None).await.unwrap();
    admin.create().await;
    let h = admin.attach().await;
    let created = admin
        .sync(h, json!({"request": "create", "room": 4242}))
        .await;
    assert_eq!(created["videoroom"], "created");

    // A publisher, connected.
    let mut janus = Janus::connect(&t, None).await.unwrap();
    janus.create().await;
    let main = janus.attach().await;
    let joined = janus
        .message(
            main,
            json!({"request": "join", "room": 4242, "ptype": "publisher", "id": 1}),
        )
        .await;
    assert_eq!(joined["videoroom"], "joined");
    let mut publisher = Peer::new().await;
    let (offer, pending, audio, video) = publisher.publisher_offer();
    let event = janus.message_event(main, json!({"janus": "message", "body": {"request": "configure", "audio": true, "video": true}, "jsep": {"type": "offer", "sdp": offer}})).await;
    let first_answer = event["jsep"]["sdp"].as_str().unwrap().to_string();
    publisher.accept_answer(pending, &first_answer);
    assert!(run_until(&mut publisher, |p| p.connected).await);

    // A subscriber, connected and receiving.
    let mut viewer = Janus::connect(&t, None).await.unwrap();
    viewer.create().await;
    let sub = viewer.attach().await;
    let attached = viewer.message_event(sub, json!({"janus": "message", "body": {"request": "join", "room": 4242, "ptype": "subscriber", "feed": 1}})).await;
    let first_offer = attached["jsep"]["sdp"].as_str().unwrap().to_string();
    let mut subscriber = Peer::new().await;
    let answer = subscriber.accept_offer(&first_offer);
    assert_eq!(
        viewer.message_event(sub, json!({"janus": "message", "body": {"request": "start", "room": 4242}, "jsep": {"type": "answer", "sdp": answer}})).await["plugindata"]["data"]["started"],
        "ok"
    );

    assert!(run_until(&mut subscriber, |p| p.connected).await);
    let mut sent = 0;
    exchange(&mut publisher, &mut subscriber, audio, video, &mut sent).await;
    assert!(subscriber.video_packets >= 5, "media flows");

    // pause stops forwarding to this subscriber; start (without a JSEP) resumes it.
    assert_eq!(
        viewer
            .message_event(
                sub,
                json!({"janus": "message", "body": {"request": "pause"}})
            )
            .await["plugindata"]["data"]["paused"],
        "ok"
    );
    // Let what was in flight arrive, then count.
    subscriber
        .drive_until(Duration::from_millis(100), |_| false)
        .await;
    let paused_at = subscriber.video_packets;
    exchange(&mut publisher, &mut subscriber, audio, video, &mut sent).await;
    assert_eq!(subscriber.video_packets, paused_at, "nothing while paused");
    assert_eq!(
        viewer
            .message_event(
                sub,
                json!({"janus": "message", "body": {"request": "start"}})
            )
            .await["plugindata"]["data"]["started"],
        "ok"
    );
    exchange(&mut publisher, &mut subscriber, audio, video, &mut sent).await;
    assert!(
        subscriber.video_packets >= paused_at + 5,
        "forwarding resumes"
    );

    // The subscriber's ICE restart: a new offer with new credentials, answered with start.
    let configured = viewer
        .message_event(
            sub,
            json!({"janus": "message", "body": {"request": "configure", "restart": true}}),
        )
        .await;
    assert_eq!(
        configured["plugindata"]["data"]["configured"], "ok",
        "{configured}"
    );
    assert_eq!(configured["jsep"]["type"], "offer");
    let restart_offer = configured["jsep"]["sdp"].as_str().unwrap().to_string();
    assert_ne!(
        ufrag(&restart_offer),
        ufrag(&first_offer),
        "new ICE credentials"
    );
    let answer = subscriber.accept_offer(&restart_offer);
    assert_eq!(
        viewer.message_event(sub, json!({"janus": "message", "body": {"request": "start", "room": 4242}, "jsep": {"type": "answer", "sdp": answer}})).await["plugindata"]["data"]["started"],
        "ok"
    );
    let before = subscriber.video_packets;
    exchange(&mut publisher, &mut subscriber, audio, video, &mut sent).await;
    assert!(
        subscriber.video_packets >= before + 5,
        "media flows after the subscriber's ICE restart: {before} -> {}",
        subscriber.video_packets
    );

    // The publisher's renegotiation with an ICE restart (a camera switch in the QuickBlox
    // client): answered, and media goes on.
    let (offer, pending) = {
        let mut api = publisher.rtc.sdp_api();
        api.ice_restart(true);
        api.apply().expect("a restart offer")
    };
    let event = janus.message_event(main, json!({"janus": "message", "body": {"request": "configure", "audio": true, "video": true, "restart": true}, "jsep": {"type": "offer", "sdp": offer.to_sdp_string()}})).await;
    assert_eq!(event["plugindata"]["data"]["configured"], "ok", "{event}");
    let second_answer = event["jsep"]["sdp"].as_str().unwrap().to_string();
    assert_ne!(
        ufrag(&second_answer),
        ufrag(&first_answer),
        "the server's credentials change too"
    );
    publisher.accept_answer(pending, &second_answer);
    let before = subscriber.video_packets;
    exchange(&mut publisher, &mut subscriber, audio, video, &mut sent).await;
    assert!(
        subscriber.video_packets >= before + 5,
        "media flows after the publisher's ICE restart: {before} -> {}",
        subscriber.video_packets
    );
}
