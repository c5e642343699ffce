//! The room's media engine in virtual time, against str0m clients playing browser: a
//! publisher sends audio and video, subscribers receive them through the room over a seeded
//! lossy link. Nothing here touches a socket or the wall clock after the start instant.

#[path = "support/netsim.rs"]
mod netsim;
#[path = "support/world.rs"]
mod world;

use std::time::Duration;

use sfu_core::media::{MediaOutput, PLI_INTERVAL};
use sfu_core::videoroom::ParticipantId;
use str0m::change::SdpOffer;
use str0m::media::MediaKind;
use world::{key, Client, World};

#[test]
fn subscribers_get_the_publishers_media_byte_for_byte() {
    let mut world = World::new(0.0, 1);
    let (audio, video) = world.publish(key(1), 7, "10.0.0.7:5000");
    world.subscribe(key(2), 7, "10.0.0.8:5000");
    world.subscribe(key(3), 7, "10.0.0.9:5000");
    world.send_media(key(1), audio, video, 0, 50);
    world.run(Duration::from_millis(500));
    for subscriber in [key(2), key(3)] {
        let video = world.video_payloads(subscriber);
        assert_eq!(video.len(), 50, "every video packet arrives");
        assert_eq!(
            &video[10][5..13],
            &10u64.to_be_bytes(),
            "payloads are forwarded unchanged"
        );
        let audio = world
            .client(subscriber)
            .received
            .iter()
            .filter(|(k, _, _)| *k == MediaKind::Audio)
            .count();
        assert_eq!(audio, 50);
    }
    assert!(world.events.contains(&MediaOutput::Receiving {
        key: key(1),
        kind: "video",
        receiving: true
    }));
    let counters = world.room.take_counters();
    assert_eq!(counters.ingress_packets, 100);
    assert_eq!(counters.egress_packets, 200);
}

#[test]
fn packets_lost_on_the_way_to_a_subscriber_come_back_by_nack() {
    // One in ten datagrams from the server is lost.
    let mut world = World::new(0.10, 42);
    let (audio, video) = world.publish(key(1), 7, "10.0.0.7:5000");
    world.subscribe(key(2), 7, "10.0.0.8:5000");
    // The last packets of a stream cannot be recovered until a later one shows the gap, so
    // the check is on the first 100 of 120.
    world.send_media(key(1), audio, video, 0, 120);
    world.run(Duration::from_secs(2));
    assert!(
        world.sim.dropped() > 10,
        "the link did lose packets: {}",
        world.sim.dropped()
    );
    let video = world.video_payloads(key(2));
    let indexes: std::collections::BTreeSet<u64> = video
        .iter()
        .map(|p| u64::from_be_bytes(p[5..13].try_into().unwrap()))
        .collect();
    let missing: Vec<u64> = (0..100).filter(|i| !indexes.contains(i)).collect();
    assert!(
        world.events.iter().any(
            |e| matches!(e, MediaOutput::Slowlink { key: k, uplink: false, .. } if *k == key(2))
        ),
        "the lossy subscriber is reported slow: {:?}",
        world.events
    );
    assert!(
        missing.is_empty(),
        "lost video packets were resent; still missing {missing:?}"
    );
}

#[test]
fn a_new_subscriber_gets_a_keyframe_and_requests_are_throttled() {
    let mut world = World::new(0.0, 7);
    let (audio, video) = world.publish(key(1), 7, "10.0.0.7:5000");
    world.send_media(key(1), audio, video, 0, 5);
    let before = world.client(key(1)).keyframe_requests;
    // Three subscribers connect at nearly the same time: one request reaches the publisher
    // within PLI_INTERVAL, and one more after it.
    world.subscribe(key(2), 7, "10.0.0.8:5000");
    let after_first = world.client(key(1)).keyframe_requests;
    assert!(after_first > before, "a new subscriber asks for a keyframe");
    let mut offers = Vec::new();
    for (n, addr) in [(3, "10.0.0.9:5000"), (4, "10.0.0.10:5000")] {
        let mut client = Client::new(world.now, addr, key(n));
        let offer = world
            .room
            .subscribe(world.now, key(n), &[ParticipantId(7)], false)
            .unwrap()
            .expect("an offer");
        let answer = client
            .rtc
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
            .unwrap();
        client.drain(world.now, &mut world.sim);
        world.clients.push(client);
        offers.push((key(n), answer.to_sdp_string()));
    }
    for (k, answer) in offers {
        world.room.subscriber_answer(world.now, k, &answer).unwrap();
    }
    world.run(PLI_INTERVAL / 2);
    let within = world.client(key(1)).keyframe_requests - after_first;
    assert!(
        within <= 1,
        "at most one request per interval, got {within}"
    );
    world.run(PLI_INTERVAL * 4);
    assert!(
        world.client(key(1)).keyframe_requests > after_first,
        "the deferred request goes out"
    );
}

#[test]
fn a_publisher_leaving_ends_its_routes_and_forwarding() {
    let mut world = World::new(0.0, 3);
    let (audio, video) = world.publish(key(1), 7, "10.0.0.7:5000");
    world.subscribe(key(2), 7, "10.0.0.8:5000");
    world.send_media(key(1), audio, video, 0, 5);
    world.room.end(key(1));
    world.take_room_outputs();
    assert!(
        world.ufrags.iter().all(|(_, k)| *k != key(1)),
        "its ufrag route is gone"
    );
    assert!(
        world.routes.iter().all(|(_, k)| *k != key(1)),
        "its address route is gone"
    );
    assert!(world.room.feed_kinds(ParticipantId(7)).is_none());
    assert!(world
        .room
        .subscribe(world.now, key(5), &[ParticipantId(7)], false)
        .is_err());
    world.room.end(key(2));
    assert!(world.room.is_empty());
}

#[test]
fn one_subscriber_connection_carries_several_feeds_and_switches() {
    let mut world = World::new(0.0, 11);
    let (audio_a, video_a) = world.publish(key(1), 7, "10.0.0.7:5000");
    let (audio_b, video_b) = world.publish(key(2), 8, "10.0.0.8:5000");
    // Janus 1.x multistream: one PeerConnection for both feeds.
    world.subscribe_many(key(3), &[7, 8], "10.0.0.9:5000");
    let streams = world.room.streams(key(3));
    assert_eq!(
        streams.len(),
        4,
        "audio and video of each feed: {streams:?}"
    );
    world.send_media(key(1), audio_a, video_a, 0, 10);
    world.send_media(key(2), audio_b, video_b, 100, 10);
    world.run(Duration::from_millis(500));
    let video = world.video_payloads(key(3));
    assert_eq!(video.len(), 20, "both feeds' video arrives");

    // A single-feed subscriber switches from 7 to 8 without renegotiating: same kinds.
    world.subscribe(key(4), 7, "10.0.0.10:5000");
    world.send_media(key(1), audio_a, video_a, 10, 5);
    let offer = world
        .room
        .switch(world.now, key(4), ParticipantId(8))
        .unwrap();
    assert!(offer.is_none(), "the media sections are reused");
    world.send_media(key(2), audio_b, video_b, 110, 5);
    world.run(Duration::from_millis(500));
    let seqs: Vec<u64> = {
        let mut seqs: Vec<u64> = world
            .client(key(4))
            .received
            .iter()
            .filter(|(k, _, _)| *k == MediaKind::Video)
            .map(|(_, seq, _)| *seq)
            .collect();
        seqs.sort();
        seqs
    };
    assert_eq!(seqs.len(), 10, "five from each feed: {seqs:?}");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "numbering is continuous across the switch: {seqs:?}"
    );
    let last = world.video_payloads(key(4)).pop().unwrap();
    assert_eq!(
        &last[5..13],
        &114u64.to_be_bytes(),
        "the last packets are feed 8's"
    );

    // Unsubscribing one feed of the multistream subscription renegotiates.
    let offer = world
        .room
        .unsubscribe(world.now, key(3), &[ParticipantId(7)])
        .unwrap();
    assert!(offer.is_some());
    assert_eq!(world.room.streams(key(3)).len(), 2);
}

#[test]
fn an_offer_that_cannot_be_answered_leaves_nothing_behind() {
    let mut world = World::new(0.0, 5);
    // Parses as SDP, sends video, but has no fingerprint or ICE credentials.
    let bad = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n";
    let refused = world.room.publish(world.now, key(1), ParticipantId(7), bad);
    assert!(refused.is_err());
    assert!(
        world.room.is_empty(),
        "no PeerConnection is kept for a refused offer"
    );
    assert!(world
        .room
        .publish(world.now, key(1), ParticipantId(7), "garbage")
        .is_err());
    assert!(world.room.is_empty());
}

/// The layer tag of a simulcast test packet (see `World::send_simulcast`).
fn layer(payload: &[u8]) -> u8 {
    payload[5]
}

#[test]
fn a_simulcast_subscriber_gets_the_best_layer_or_the_pinned_one_switching_on_keyframes() {
    let mut world = World::new(0.0, 3);
    let (audio, video) = world.publish_simulcast(key(1), 7, "10.0.0.7:5000");
    world.subscribe(key(2), 7, "10.0.0.8:5000");
    world.send_simulcast(key(1), audio, video, 0, 100);
    let received = world.video_received(key(2));
    assert!(received.len() > 80, "{} video packets", received.len());
    // Until the layers' rates are known it gets the first layer seen; then the best, h,
    // from a keyframe of h on.
    let first_high = received
        .iter()
        .position(|(_, p)| layer(p) == b'h')
        .expect("the subscriber gets h");
    assert_eq!(
        received[first_high].1[1] & 0x01,
        0,
        "h starts with a keyframe"
    );
    assert!(received[first_high..].iter().all(|(_, p)| layer(p) == b'h'));
    assert!(first_high < 60, "h within the first 1.2 s: {first_high}");

    // Pinned to the lowest: the switch waits for a keyframe of l, which the room asks for.
    let before = received.len();
    let requests = world.client(key(1)).keyframe_requests;
    world.room.set_substream(world.now, key(2), Some(0));
    world.send_simulcast(key(1), audio, video, 100, 100);
    assert!(
        world.client(key(1)).keyframe_requests > requests,
        "the publisher is asked for a keyframe"
    );
    let received = world.video_received(key(2));
    let after = &received[before..];
    let first_low = after
        .iter()
        .position(|(_, p)| layer(p) == b'l')
        .expect("the subscriber moved to l");
    assert_eq!(after[first_low].1[1] & 0x01, 0, "l starts with a keyframe");
    assert!(after[..first_low].iter().all(|(_, p)| layer(p) == b'h'));
    assert!(after[first_low..].iter().all(|(_, p)| layer(p) == b'l'));
    assert!(
        after.len() > 90,
        "{} video packets after the pin",
        after.len()
    );
    // One stream for the subscriber: its sequence numbers run on across the switch.
    for pair in received.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].0 + 1,
            "no gap or jump in the sequence numbers"
        );
    }
    // Audio never stopped.
    let audio_packets = world
        .client(key(2))
        .received
        .iter()
        .filter(|(k, _, _)| *k == MediaKind::Audio)
        .count();
    assert_eq!(audio_packets, 200);

    // Unpinned: back to the best at its keyframe.
    world.room.set_substream(world.now, key(2), None);
    world.send_simulcast(key(1), audio, video, 200, 50);
    let received = world.video_received(key(2));
    assert_eq!(layer(&received.last().unwrap().1), b'h');
}
