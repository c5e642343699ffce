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
    // Pinned to the highest (2): h from its first keyframe on, whatever the estimate says.
    world.room.set_substream(world.now, key(2), Some(2));
    let mut frame = 0;
    world.send_simulcast(key(1), audio, video, frame, 100);
    frame += 100;
    let received = world.video_received(key(2));
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
    assert!(received.len() - first_high > 50);

    // Pinned to the lowest: the switch waits for a keyframe of l, which the room asks for.
    let before = received.len();
    let requests = world.client(key(1)).keyframe_requests;
    world.room.set_substream(world.now, key(2), Some(0));
    world.send_simulcast(key(1), audio, video, frame, 100);
    frame += 100;
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
    assert_eq!(audio_packets as u64, frame);

    // Unpinned: the estimate chooses again (see the congestion test), still only at keyframes.
    world.room.set_substream(world.now, key(2), None);
    world.send_simulcast(key(1), audio, video, frame, 100);
    assert_switches_on_keyframes(&world.video_received(key(2)));
}

/// Where each change of layer happened in a subscriber's stream, in its sequence-number
/// order (a packet repaired by NACK arrives late): (sequence number, layer), the first
/// included.
fn layer_changes(received: &[(u64, Vec<u8>)]) -> Vec<(u64, u8)> {
    let mut in_order: Vec<&(u64, Vec<u8>)> = received.iter().collect();
    in_order.sort_by_key(|(seq, _)| *seq);
    in_order.dedup_by_key(|(seq, _)| *seq);
    let mut changes: Vec<(u64, u8)> = Vec::new();
    for (seq, payload) in in_order {
        if changes.last().map(|(_, l)| *l) != Some(layer(payload)) {
            changes.push((*seq, layer(payload)));
        }
    }
    changes
}

/// Every change of layer in a subscriber's stream starts with a keyframe of the new layer.
fn assert_switches_on_keyframes(received: &[(u64, Vec<u8>)]) {
    for (seq, _) in layer_changes(received).into_iter().skip(1) {
        // Where the packet before was lost for good, the switch's first packet may have been
        // too: nothing to tell there.
        if !received.iter().any(|(s, _)| *s + 1 == seq) {
            continue;
        }
        let (_, payload) = received.iter().find(|(s, _)| *s == seq).expect("received");
        assert_eq!(
            payload[1] & 0x01,
            0,
            "a switch at sequence number {seq} without a keyframe"
        );
    }
}

#[test]
fn a_congested_subscriber_drops_a_layer_and_climbs_back_when_the_link_recovers() {
    let mut world = World::new(0.0, 5);
    let (audio, video) = world.publish_simulcast(key(1), 7, "10.0.0.7:5000");
    world.subscribe(key(2), 7, "10.0.0.8:5000");
    let subscriber: std::net::SocketAddr = "10.0.0.8:5000".parse().unwrap();
    let audio_of = |world: &mut World| {
        world
            .client(key(2))
            .received
            .iter()
            .filter(|(k, _, _)| *k == MediaKind::Audio)
            .count()
    };
    // The estimate climbs (probing) until the best layer, h (400 kbit/s), fits.
    // (Past the first second: until the layers' rates are known it has the first layer seen.)
    let mut frame = 0;
    let mut on_high = false;
    for _ in 0..20 {
        world.send_simulcast(key(1), audio, video, frame, 25);
        frame += 25;
        let received = world.video_received(key(2));
        on_high = frame >= 75
            && received.len() > 25
            && received[received.len() - 25..]
                .iter()
                .all(|(_, p)| layer(p) == b'h');
        if on_high {
            break;
        }
    }
    assert!(
        on_high,
        "the subscriber reaches h within 10 s: estimate {:?}",
        world.room.estimate(key(2))
    );
    world.send_simulcast(key(1), audio, video, frame, 25);
    frame += 25;

    // The subscriber's link narrows to 250 kbit/s: within 2 s it gets a lower layer.
    world
        .sim
        .set_bottleneck(subscriber, 250_000, Duration::from_millis(300));
    let congested_at = world.video_received(key(2)).len();
    let start = world.now;
    let mut dropped_after = None;
    while world.now.duration_since(start) < Duration::from_secs(3) {
        world.send_simulcast(key(1), audio, video, frame, 5);
        frame += 5;
        let received = world.video_received(key(2));
        if dropped_after.is_none()
            && received[congested_at..]
                .iter()
                .any(|(_, p)| layer(p) != b'h')
        {
            dropped_after = Some(world.now.duration_since(start));
        }
    }
    let received = world.video_received(key(2));
    let dropped_after = dropped_after.unwrap_or_else(|| {
        panic!(
            "never off h: estimate {:?}, layers {:?}",
            world.room.estimate(key(2)),
            layer_changes(&received)
        )
    });
    assert!(
        dropped_after <= Duration::from_secs(2),
        "off h only after {dropped_after:?}: layers {:?}",
        layer_changes(&received)
    );
    let audio_before = audio_of(&mut world);
    world.send_simulcast(key(1), audio, video, frame, 50);
    frame += 50;
    let received = world.video_received(key(2));
    assert!(
        received[received.len() - 20..]
            .iter()
            .all(|(_, p)| layer(p) != b'h'),
        "still off h: {:?}",
        layer_changes(&received)
    );
    // Audio kept flowing through it.
    let audio_during = audio_of(&mut world) - audio_before;
    assert!(
        audio_during >= 45,
        "{audio_during} of 50 audio packets in the last second"
    );

    // The link recovers: back to h. (Sending only the low layer, the estimate cannot grow
    // past 1.5 times what is sent; str0m's estimator probes for more when it has been stuck
    // for a while, as GoogCC does, so this can take about 20 s; a minute is allowed.)
    world.sim.clear_bottleneck(subscriber);
    let mut back = false;
    for _ in 0..120 {
        world.send_simulcast(key(1), audio, video, frame, 25);
        frame += 25;
        back = world
            .video_received(key(2))
            .last()
            .is_some_and(|(_, p)| layer(p) == b'h');
        if back {
            break;
        }
    }
    let received = world.video_received(key(2));
    assert!(
        back,
        "back on h after the link recovered: {:?}",
        layer_changes(&received)
    );
    assert_switches_on_keyframes(&received);
}
