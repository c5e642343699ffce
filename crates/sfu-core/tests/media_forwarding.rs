//! The room's media engine in virtual time, against str0m clients playing browser: a
//! publisher sends audio and video, subscribers receive them through the room over a seeded
//! lossy link. Nothing here touches a socket or the wall clock after the start instant.

mod netsim;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netsim::{Link, Sim};
use sfu_core::janus::{HandleId, SessionId};
use sfu_core::media::{MediaConfig, MediaOutput, RoomMedia, PLI_INTERVAL};
use sfu_core::videoroom::{HandleKey, ParticipantId};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

const SERVER: &str = "10.0.0.1:10000";

fn key(n: u64) -> HandleKey {
    HandleKey {
        session: SessionId(n),
        handle: HandleId(n * 100),
    }
}

/// A browser-like str0m peer.
struct Client {
    rtc: Rtc,
    addr: SocketAddr,
    key: HandleKey,
    next_timeout: Instant,
    connected: bool,
    received: Vec<(MediaKind, u64, Vec<u8>)>,
    keyframe_requests: usize,
}

impl Client {
    fn new(now: Instant, addr: &str, key: HandleKey) -> Client {
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true)
            .enable_vp8(true)
            .build(now);
        let addr: SocketAddr = addr.parse().unwrap();
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        Client {
            rtc,
            addr,
            key,
            next_timeout: now,
            connected: false,
            received: Vec::new(),
            keyframe_requests: 0,
        }
    }

    /// A send-only offer with one audio and one video section (what the QuickBlox client's
    /// publisher sends).
    fn publisher_offer(&mut self) -> (String, SdpPendingOffer, Mid, Mid) {
        let mut api = self.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        (offer.to_sdp_string(), pending, audio, video)
    }

    fn drain(&mut self, now: Instant, sim: &mut Sim) {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(at) => {
                    self.next_timeout = at.max(now);
                    return;
                }
                Output::Transmit(t) => sim.send(now, t.source, t.destination, t.contents.into()),
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::RtpPacket(packet)) => {
                    let kind = if packet.header.payload_type == 111.into() {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    };
                    self.received
                        .push((kind, *packet.seq_no, packet.payload.to_vec()));
                }
                Output::Event(Event::KeyframeRequest(_)) => self.keyframe_requests += 1,
                Output::Event(_) => {}
            }
        }
    }
}

/// The room under test, with its clients and the network between them.
struct World {
    now: Instant,
    sim: Sim,
    room: RoomMedia,
    clients: Vec<Client>,
    routes: Vec<(SocketAddr, HandleKey)>,
    ufrags: Vec<(String, HandleKey)>,
    events: Vec<MediaOutput>,
}

impl World {
    fn new(loss_to_subscribers: f64, seed: u64) -> World {
        let now = netsim::epoch();
        let server: SocketAddr = SERVER.parse().unwrap();
        let mut sim = Sim::new(seed);
        sim.set_default(Link::new(Duration::from_millis(10), 0.0));
        sim.set_from(
            server,
            Link::new(Duration::from_millis(10), loss_to_subscribers),
        );
        World {
            now,
            sim,
            room: RoomMedia::new(MediaConfig::new(server).unwrap()),
            clients: Vec::new(),
            routes: Vec::new(),
            ufrags: Vec::new(),
            events: Vec::new(),
        }
    }

    fn client(&mut self, key: HandleKey) -> &mut Client {
        self.clients.iter_mut().find(|c| c.key == key).unwrap()
    }

    /// Runs the network and every timer for `duration` of virtual time.
    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        loop {
            self.take_room_outputs();
            let mut next = end;
            if let Some(at) = self.sim.next_delivery() {
                next = next.min(at);
            }
            if let Some(at) = self.room.poll_timeout() {
                next = next.min(at);
            }
            for client in &self.clients {
                next = next.min(client.next_timeout);
            }
            self.now = next.max(self.now);
            for (at_from, to, data) in self.sim.deliver(self.now) {
                let server: SocketAddr = SERVER.parse().unwrap();
                if to == server {
                    if let Some(key) = self.route(at_from, &data) {
                        self.room.handle_receive(self.now, key, at_from, &data);
                    }
                } else if let Some(client) = self.clients.iter_mut().find(|c| c.addr == to) {
                    let receive =
                        str0m::net::Receive::new(str0m::net::Protocol::Udp, at_from, to, &data)
                            .unwrap();
                    client
                        .rtc
                        .handle_input(Input::Receive(self.now, receive))
                        .unwrap();
                    client.drain(self.now, &mut self.sim);
                }
            }
            self.room.handle_timeout(self.now);
            let now = self.now;
            for client in &mut self.clients {
                if client.next_timeout <= now {
                    client.rtc.handle_input(Input::Timeout(now)).unwrap();
                    client.drain(now, &mut self.sim);
                }
            }
            if self.now >= end {
                self.take_room_outputs();
                return;
            }
        }
    }

    /// The shell's demultiplexer: STUN by ufrag, the rest by source address.
    fn route(&self, from: SocketAddr, data: &[u8]) -> Option<HandleKey> {
        if let Some((_, key)) = self.routes.iter().find(|(a, _)| *a == from) {
            return Some(*key);
        }
        let stun = str0m::ice::StunMessage::parse(data).ok()?;
        let (ours, _) = stun.split_username()?;
        self.ufrags.iter().find(|(u, _)| u == ours).map(|(_, k)| *k)
    }

    fn take_room_outputs(&mut self) {
        let server: SocketAddr = SERVER.parse().unwrap();
        while let Some(output) = self.room.poll_output() {
            match output {
                MediaOutput::Transmit { to, data } => self.sim.send(self.now, server, to, data),
                MediaOutput::RouteUfrag { ufrag, key } => self.ufrags.push((ufrag, key)),
                MediaOutput::ForgetUfrag(ufrag) => self.ufrags.retain(|(u, _)| *u != ufrag),
                MediaOutput::RouteAddress { addr, key } => self.routes.push((addr, key)),
                MediaOutput::ForgetAddress(addr) => self.routes.retain(|(a, _)| *a != addr),
                other => self.events.push(other),
            }
        }
    }

    /// A publisher joins and connects; returns its audio and video mids.
    fn publish(&mut self, key: HandleKey, feed: u64, addr: &str) -> (Mid, Mid) {
        let mut client = Client::new(self.now, addr, key);
        let (offer, pending, audio, video) = client.publisher_offer();
        let answer = self
            .room
            .publish(self.now, key, ParticipantId(feed), &offer)
            .unwrap();
        client
            .rtc
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        client.drain(self.now, &mut self.sim);
        self.clients.push(client);
        self.run(Duration::from_secs(2));
        assert!(self.client(key).connected, "the publisher connects");
        assert!(self.events.contains(&MediaOutput::WebrtcUp(key)));
        (audio, video)
    }

    fn subscribe(&mut self, key: HandleKey, feed: u64, addr: &str) {
        self.subscribe_many(key, &[feed], addr);
    }

    fn subscribe_many(&mut self, key: HandleKey, feeds: &[u64], addr: &str) {
        let feeds: Vec<ParticipantId> = feeds.iter().map(|f| ParticipantId(*f)).collect();
        let mut client = Client::new(self.now, addr, key);
        let offer = self
            .room
            .subscribe(self.now, key, &feeds, false)
            .unwrap()
            .expect("an offer");
        let answer = client
            .rtc
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
            .unwrap();
        client.drain(self.now, &mut self.sim);
        self.clients.push(client);
        self.room
            .subscriber_answer(self.now, key, &answer.to_sdp_string())
            .unwrap();
        self.run(Duration::from_secs(2));
        assert!(self.client(key).connected, "the subscriber connects");
    }

    /// The publisher sends `frames` video packets (the first a VP8 keyframe) and as many
    /// audio packets, 20 ms apart.
    fn send_media(&mut self, key: HandleKey, audio: Mid, video: Mid, first: u64, frames: u64) {
        for i in first..first + frames {
            let now = self.now;
            let index = self.clients.iter().position(|c| c.key == key).unwrap();
            let client = &mut self.clients[index];
            let mut api = client.rtc.direct_api();
            // A VP8 payload descriptor + a keyframe header for the first, deltas after.
            let keyframe = i == 0;
            let mut payload = vec![0x10, if keyframe { 0x00 } else { 0x01 }, 0x9d, 0x01, 0x2a];
            payload.extend_from_slice(&i.to_be_bytes());
            payload.resize(200, i as u8);
            api.stream_tx_by_mid(video, None).unwrap().write_rtp(
                RtpWrite::new(96.into(), SeqNo::from(i), (i * 1800) as u32, now, payload)
                    .marker(true)
                    .nackable(true),
            );
            let mut opus = i.to_be_bytes().to_vec();
            opus.resize(60, 7);
            api.stream_tx_by_mid(audio, None)
                .unwrap()
                .write_rtp(RtpWrite::new(
                    111.into(),
                    SeqNo::from(i),
                    (i * 960) as u32,
                    now,
                    opus,
                ));
            client.drain(now, &mut self.sim);
            self.run(Duration::from_millis(20));
        }
    }

    fn video_payloads(&mut self, key: HandleKey) -> Vec<Vec<u8>> {
        let mut video: Vec<(u64, Vec<u8>)> = self
            .client(key)
            .received
            .iter()
            .filter(|(k, _, _)| *k == MediaKind::Video)
            .map(|(_, seq, payload)| (*seq, payload.clone()))
            .collect();
        video.sort();
        video.dedup_by_key(|(seq, _)| *seq);
        video.into_iter().map(|(_, p)| p).collect()
    }
}

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
