//! A room's media engine in virtual time with str0m clients playing browsers around it, over
//! the simulated network of `netsim.rs`: shared by the forwarding tests and the forwarding
//! bench.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::netsim::{self, Link, Sim};
use sfu_core::janus::{HandleId, SessionId};
use sfu_core::media::{MediaConfig, MediaOutput, RoomMedia};
use sfu_core::videoroom::{HandleKey, ParticipantId};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

pub const SERVER: &str = "10.0.0.1:10000";

pub fn key(n: u64) -> HandleKey {
    HandleKey {
        session: SessionId(n),
        handle: HandleId(n * 100),
    }
}

/// A browser-like str0m peer.
pub struct Client {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub key: HandleKey,
    pub next_timeout: Instant,
    pub connected: bool,
    pub received: Vec<(MediaKind, u64, Vec<u8>)>,
    pub keyframe_requests: usize,
    /// Keyframe requests answered so far (a simulcast sender answers at its next frame).
    pub keyframes_sent: usize,
}

impl Client {
    pub fn new(now: Instant, addr: &str, key: HandleKey) -> Client {
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
            keyframes_sent: 0,
        }
    }

    /// A send-only offer with one audio and one video section (what the QuickBlox client's
    /// publisher sends).
    pub fn publisher_offer(&mut self) -> (String, SdpPendingOffer, Mid, Mid) {
        let mut api = self.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        (offer.to_sdp_string(), pending, audio, video)
    }

    /// An offer whose video is simulcast in three layers (rids `h`, `m`, `l`, as janus.js
    /// names them).
    pub fn simulcast_publisher_offer(&mut self) -> (String, SdpPendingOffer, Mid, Mid) {
        let mut simulcast = Simulcast::new();
        for rid in ["h", "m", "l"] {
            simulcast.add_send_layer(SimulcastLayer::new(rid));
        }
        let mut api = self.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            None,
            None,
            Some(simulcast),
        );
        let (offer, pending) = api.apply().unwrap();
        (offer.to_sdp_string(), pending, audio, video)
    }

    pub fn drain(&mut self, now: Instant, sim: &mut Sim) {
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
pub struct World {
    pub now: Instant,
    pub sim: Sim,
    pub room: RoomMedia,
    pub clients: Vec<Client>,
    pub routes: Vec<(SocketAddr, HandleKey)>,
    pub ufrags: Vec<(String, HandleKey)>,
    pub events: Vec<MediaOutput>,
    /// Called around the room's own work (a bench counts time and allocations there).
    pub meter: Meter,
}

/// Marks where the server's work starts and stops.
pub struct Meter {
    pub start: fn(),
    pub stop: fn(),
}

impl Default for Meter {
    fn default() -> Meter {
        Meter {
            start: || {},
            stop: || {},
        }
    }
}

impl World {
    pub fn new(loss_to_subscribers: f64, seed: u64) -> World {
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
            meter: Meter::default(),
        }
    }

    pub fn client(&mut self, key: HandleKey) -> &mut Client {
        self.clients.iter_mut().find(|c| c.key == key).unwrap()
    }

    /// Runs the network and every timer for `duration` of virtual time.
    pub fn run(&mut self, duration: Duration) {
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
                        (self.meter.start)();
                        self.room.handle_receive(self.now, key, at_from, &data);
                        (self.meter.stop)();
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
            (self.meter.start)();
            self.room.handle_timeout(self.now);
            (self.meter.stop)();
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
    pub fn route(&self, from: SocketAddr, data: &[u8]) -> Option<HandleKey> {
        if let Some((_, key)) = self.routes.iter().find(|(a, _)| *a == from) {
            return Some(*key);
        }
        let stun = str0m::ice::StunMessage::parse(data).ok()?;
        let (ours, _) = stun.split_username()?;
        self.ufrags.iter().find(|(u, _)| u == ours).map(|(_, k)| *k)
    }

    pub fn take_room_outputs(&mut self) {
        let server: SocketAddr = SERVER.parse().unwrap();
        loop {
            // The room's draining is server work; the simulated network's is not.
            (self.meter.start)();
            let output = self.room.poll_output();
            (self.meter.stop)();
            let Some(output) = output else { break };
            match output {
                MediaOutput::Transmit { to, data } => self.sim.send(self.now, server, to, data),
                MediaOutput::RouteUfrag { ufrag, key } => self.ufrags.push((ufrag, key)),
                MediaOutput::ForgetUfrag(ufrag) => self.ufrags.retain(|(u, _)| *u != ufrag),
                MediaOutput::RouteAddress { addr, key } => self.routes.push((addr, key)),
                MediaOutput::ForgetAddress { addr, key } => {
                    self.routes.retain(|(a, k)| *a != addr || *k != key)
                }
                other => self.events.push(other),
            }
        }
    }

    /// A publisher joins and connects; returns its audio and video mids.
    pub fn publish(&mut self, key: HandleKey, feed: u64, addr: &str) -> (Mid, Mid) {
        self.publish_with(key, feed, addr, false)
    }

    /// A publisher whose video is simulcast (see [`Client::simulcast_publisher_offer`]).
    pub fn publish_simulcast(&mut self, key: HandleKey, feed: u64, addr: &str) -> (Mid, Mid) {
        self.publish_with(key, feed, addr, true)
    }

    fn publish_with(
        &mut self,
        key: HandleKey,
        feed: u64,
        addr: &str,
        simulcast: bool,
    ) -> (Mid, Mid) {
        let mut client = Client::new(self.now, addr, key);
        let (offer, pending, audio, video) = if simulcast {
            client.simulcast_publisher_offer()
        } else {
            client.publisher_offer()
        };
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

    pub fn subscribe(&mut self, key: HandleKey, feed: u64, addr: &str) {
        self.subscribe_many(key, &[feed], addr);
    }

    pub fn subscribe_many(&mut self, key: HandleKey, feeds: &[u64], addr: &str) {
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
    pub fn send_media(&mut self, key: HandleKey, audio: Mid, video: Mid, first: u64, frames: u64) {
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

    /// A simulcast publisher sends `frames` frames, 20 ms apart: on each layer one VP8 packet
    /// (`h` 1,000 bytes, `m` 400, `l` 100) whose byte 5 names the layer (b'h', b'm', b'l') and
    /// bytes 6..14 the frame number; keyframes on every layer first and after each keyframe
    /// request; and one Opus packet.
    pub fn send_simulcast(
        &mut self,
        key: HandleKey,
        audio: Mid,
        video: Mid,
        first: u64,
        frames: u64,
    ) {
        for i in first..first + frames {
            let now = self.now;
            let index = self.clients.iter().position(|c| c.key == key).unwrap();
            let client = &mut self.clients[index];
            let keyframe = i == 0 || client.keyframe_requests > client.keyframes_sent;
            if keyframe {
                client.keyframes_sent = client.keyframe_requests;
            }
            let mut api = client.rtc.direct_api();
            for (rid, size) in [("h", 1000), ("m", 400), ("l", 100)] {
                let mut payload = vec![0x10, if keyframe { 0x00 } else { 0x01 }, 0x9d, 0x01, 0x2a];
                payload.push(rid.as_bytes()[0]);
                payload.extend_from_slice(&i.to_be_bytes());
                payload.resize(size, i as u8);
                api.stream_tx_by_mid(video, Some(Rid::from(rid)))
                    .expect("a stream per layer")
                    .write_rtp(
                        RtpWrite::new(96.into(), SeqNo::from(i), (i * 1800) as u32, now, payload)
                            .marker(true)
                            .nackable(true),
                    );
            }
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

    /// The video a subscriber received, as (its sequence number, the packet's payload), in the
    /// order they arrived.
    pub fn video_received(&mut self, key: HandleKey) -> Vec<(u64, Vec<u8>)> {
        self.client(key)
            .received
            .iter()
            .filter(|(k, _, _)| *k == MediaKind::Video)
            .map(|(_, seq, payload)| (*seq, payload.clone()))
            .collect()
    }

    pub fn video_payloads(&mut self, key: HandleKey) -> Vec<Vec<u8>> {
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
