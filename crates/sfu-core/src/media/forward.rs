//! Forwarding: a PeerConnection's outputs drained (datagrams, routes, events), a publisher's
//! packets written to its audience with each subscriber's numbering, keyframe requests
//! throttled, `media` and `slowlink` judged.

use std::time::Instant;

use str0m::bwe::{Bitrate, BweKind};
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};
use str0m::{Event, IceConnectionState, Output};

use super::simulcast::{self, Admit};
use super::{
    kind_name, Map, MediaOutput, Peer, Role, RoomMedia, AUDIO_BPS, NO_MEDIA, PLI_INTERVAL,
    SLOWLINK_INTERVAL, SLOWLINK_LOST_PER_S,
};
use crate::videoroom::{HandleKey, ParticipantId};

/// A packet read from a publisher, to forward once the publisher's outputs are drained.
struct Forward {
    feed: ParticipantId,
    mid: Mid,
    pt: Pt,
    seq: SeqNo,
    timestamp: u32,
    marker: bool,
    audio_level: Option<i8>,
    voice_activity: Option<bool>,
    payload: std::sync::Arc<[u8]>,
    received: Instant,
    /// The simulcast layer (RTP stream id) it came on, if the track has layers.
    rid: Option<Rid>,
    /// It starts a VP8 keyframe (looked at for simulcast packets only).
    keyframe: bool,
}

impl RoomMedia {
    /// Drains `key`'s outputs, then forwards what it received.
    pub(super) fn drain(&mut self, now: Instant, key: HandleKey) {
        let mut forwards: Vec<Forward> = Vec::new();
        let mut keyframe_for: Vec<ParticipantId> = Vec::new();
        let mut dead: Option<String> = None;
        let mut estimate_fell = false;
        {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            loop {
                let output = match peer.rtc.poll_output() {
                    Ok(output) => output,
                    Err(error) => {
                        dead = Some(format!("{error}"));
                        break;
                    }
                };
                match output {
                    Output::Timeout(at) => {
                        peer.next_timeout = at.max(now);
                        break;
                    }
                    Output::Transmit(transmit) => {
                        if !peer.addresses.contains(&transmit.destination) {
                            // str0m answers only checks that passed MESSAGE-INTEGRITY, so an
                            // address it talks to is this peer's.
                            peer.addresses.push(transmit.destination);
                            self.outputs.push_back(MediaOutput::RouteAddress {
                                addr: transmit.destination,
                                key,
                            });
                        }
                        self.outputs.push_back(MediaOutput::Transmit {
                            to: transmit.destination,
                            data: transmit.contents.into(),
                        });
                    }
                    Output::Event(event) => match event {
                        Event::Connected => {
                            peer.connected = true;
                            self.outputs.push_back(MediaOutput::WebrtcUp(key));
                            if let Role::Subscriber(subscriber) = &peer.role {
                                keyframe_for.extend(subscriber.feeds.iter().copied());
                            }
                        }
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                            dead = Some("ICE failed".into());
                        }
                        Event::RtpPacket(packet) => {
                            if let Some(forward) = read_packet(peer, packet) {
                                forwards.push(forward);
                            }
                        }
                        Event::EgressBitrateEstimate(BweKind::Twcc(bitrate)) => {
                            let estimate = bitrate.as_u64();
                            // A falling estimate is congestion: the layers are chosen again
                            // at once, not at the next housekeeping.
                            estimate_fell |= peer.estimate.is_some_and(|e| estimate < e - e / 8);
                            peer.estimate = Some(estimate);
                        }
                        Event::MediaEgressStats(stats) => {
                            // NACKs from a subscriber: packets it lost on the way from us.
                            self.counters.nacks += new_nacks(peer, stats.mid, stats.nacks);
                            if let Some(slow) = slowlink(peer, now, stats.mid, stats.nacks, false) {
                                self.outputs.push_back(slow.into_output(key));
                            }
                        }
                        Event::MediaIngressStats(stats) => {
                            // NACKs we sent a publisher: packets lost on its way to us.
                            self.counters.nacks += new_nacks(peer, stats.mid, stats.nacks);
                            if let Some(slow) = slowlink(peer, now, stats.mid, stats.nacks, true) {
                                self.outputs.push_back(slow.into_output(key));
                            }
                        }
                        Event::KeyframeRequest(request) => {
                            if let Role::Subscriber(subscriber) = &peer.role {
                                // The feed whose track that media section carries.
                                keyframe_for.extend(
                                    subscriber
                                        .tracks
                                        .iter()
                                        .filter(|(_, t)| t.mid == request.mid)
                                        .map(|((feed, _), _)| *feed),
                                );
                            }
                        }
                        _ => {}
                    },
                }
            }
            if !peer.rtc.is_alive() && dead.is_none() {
                dead = Some("DTLS alert".into());
            }
        }
        for forward in forwards {
            self.on_publisher_packet(now, key, forward);
        }
        for feed in keyframe_for {
            self.want_keyframe(feed);
        }
        if estimate_fell {
            self.choose_layers(now);
        }
        self.send_keyframe_requests(now);
        if let Some(reason) = dead {
            self.end(key);
            self.outputs.push_back(MediaOutput::Hangup { key, reason });
        }
    }

    fn on_publisher_packet(&mut self, now: Instant, publisher_key: HandleKey, forward: Forward) {
        self.counters.ingress_packets += 1;
        self.counters.ingress_bytes += forward.payload.len() as u64;
        let Some(Peer {
            role: Role::Publisher(publisher),
            ..
        }) = self.peers.get_mut(&publisher_key)
        else {
            return;
        };
        publisher.last_packet.insert(forward.mid, now);
        if let Some(rid) = forward.rid {
            publisher.layers.entry(forward.mid).or_default().on_packet(
                now,
                rid,
                forward.payload.len(),
            );
        }
        if publisher.receiving.insert(forward.mid, true) != Some(true) {
            let kind = publisher
                .tracks
                .iter()
                .find(|t| t.mid == forward.mid)
                .map_or("video", |t| kind_name(t.kind));
            self.outputs.push_back(MediaOutput::Receiving {
                key: publisher_key,
                kind,
                receiving: true,
            });
        }
        if let Some(level) = forward.audio_level {
            let dbov = level.unsigned_abs().min(127);
            if let Some(verdict) = publisher.talking.push(dbov) {
                self.outputs.push_back(MediaOutput::Talking {
                    feed: forward.feed,
                    talking: verdict.talking,
                    level: verdict.level,
                });
            }
        }
        let params = publisher.params.get(&forward.pt).copied();
        // By index: a drain below may end a peer and shorten the list (then one copy is skipped,
        // as a lost packet would be).
        let count = self.audience.get(&forward.feed).map_or(0, Vec::len);
        for index in 0..count {
            let Some(key) = self
                .audience
                .get(&forward.feed)
                .and_then(|a| a.get(index))
                .copied()
            else {
                break;
            };
            let written = {
                let Some(peer) = self.peers.get_mut(&key) else {
                    continue;
                };
                if !peer.connected {
                    continue;
                }
                let Role::Subscriber(subscriber) = &mut peer.role else {
                    continue;
                };
                if subscriber.paused {
                    continue;
                }
                let Some(track) = subscriber.tracks.get_mut(&(forward.feed, forward.mid)) else {
                    continue;
                };
                // A simulcast packet: is it this subscriber's layer? The choice is kept only
                // once the packet goes out (a switch whose keyframe cannot be sent has not
                // happened).
                let mut selection = track.selection;
                let switched = match forward
                    .rid
                    .map(|rid| selection.admit(rid, forward.keyframe))
                {
                    None | Some(Admit::Forward) => false,
                    Some(Admit::Switched) => true,
                    Some(Admit::Drop) => {
                        track.selection = selection;
                        continue;
                    }
                };
                let pt = *track.pts.entry(forward.pt).or_insert_with(|| {
                    params.and_then(|p| peer.rtc.codec_config().match_params(p).map(|m| m.pt()))
                });
                let Some(pt) = pt else { continue };
                let out_mid = track.mid;
                let mut api = peer.rtc.direct_api();
                let Some(stream) = api.stream_tx_by_mid(out_mid, None) else {
                    continue;
                };
                if switched {
                    // A new layer: its numbering continues the old one's.
                    track.rewriter.switch_source();
                }
                track.selection = selection;
                let Some((seq, timestamp)) =
                    track.rewriter.rewrite(*forward.seq, forward.timestamp)
                else {
                    continue;
                };
                let video = track.kind == MediaKind::Video;
                let ext = ExtensionValues {
                    audio_level: forward.audio_level,
                    voice_activity: forward.voice_activity,
                    ..ExtensionValues::default()
                };
                if !subscriber.flowing {
                    subscriber.flowing = true;
                    self.outputs.push_back(MediaOutput::Flowing(key));
                }
                stream.write_rtp(
                    RtpWrite::new(
                        pt,
                        SeqNo::from(seq),
                        timestamp,
                        forward.received,
                        forward.payload.clone(),
                    )
                    .marker(forward.marker)
                    .ext_vals(ext)
                    .nackable(video),
                );
                // Drained when the shell next polls (see `RoomMedia::written`).
                if !peer.written {
                    peer.written = true;
                    self.written.push(key);
                }
                true
            };
            if written {
                self.egress_total += 1;
                self.counters.egress_packets += 1;
                self.counters.egress_bytes += forward.payload.len() as u64;
            }
        }
    }

    pub(super) fn feeds_of_subscriber(&self, key: HandleKey) -> Vec<ParticipantId> {
        match self.peers.get(&key).map(|p| &p.role) {
            Some(Role::Subscriber(subscriber)) => subscriber.feeds.clone(),
            _ => Vec::new(),
        }
    }

    pub(super) fn want_keyframe(&mut self, feed: ParticipantId) {
        let Some(key) = self.feeds.get(&feed).copied() else {
            return;
        };
        if let Some(Peer {
            role: Role::Publisher(publisher),
            ..
        }) = self.peers.get_mut(&key)
        {
            publisher.pli_wanted = true;
            self.keyframes_wanted = true;
            // Look at the next drain: this one may be allowed at once. (Requests are rare: a
            // scan per request, not per packet.)
            self.keyframe_not_before = None;
        }
    }

    /// Sends the keyframe requests that are wanted and allowed by [`PLI_INTERVAL`]; the rest
    /// wait for housekeeping.
    pub(super) fn send_keyframe_requests(&mut self, now: Instant) {
        if !self.keyframes_wanted || self.keyframe_not_before.is_some_and(|at| now < at) {
            return;
        }
        // Nested drains below must not scan again.
        self.keyframes_wanted = false;
        let wanting: Vec<HandleKey> = self
            .peers
            .iter()
            .filter(|(_, p)| matches!(&p.role, Role::Publisher(pb) if pb.pli_wanted && pb.last_pli.is_none_or(|at| now.duration_since(at) >= PLI_INTERVAL)))
            .map(|(k, _)| *k)
            .collect();
        for key in wanting {
            let sent = {
                let peer = self.peers.get_mut(&key).expect("listed above");
                let Role::Publisher(publisher) = &mut peer.role else {
                    continue;
                };
                if !peer.connected {
                    continue;
                }
                publisher.pli_wanted = false;
                publisher.last_pli = Some(now);
                let videos: Vec<Mid> = publisher
                    .tracks
                    .iter()
                    .filter(|t| t.kind == MediaKind::Video)
                    .map(|t| t.mid)
                    .collect();
                let mut sent = false;
                for mid in videos {
                    // A simulcast track: every layer (a subscriber may be waiting for any).
                    let rids: Vec<Option<Rid>> = std::iter::once(None)
                        .chain(
                            publisher
                                .layers
                                .get(&mid)
                                .into_iter()
                                .flat_map(|l| l.rids().map(Some)),
                        )
                        .collect();
                    let mut api = peer.rtc.direct_api();
                    for rid in rids {
                        if let Some(stream) = api.stream_rx_by_mid(mid, rid) {
                            stream.request_keyframe(KeyframeRequestKind::Pli);
                            sent = true;
                        }
                    }
                }
                sent
            };
            if sent {
                self.counters.plis += 1;
                self.drain(now, key);
            }
        }
        // What is still wanted waits for its interval (or for its publisher to connect: the
        // housekeeping tick looks again).
        let mut not_before: Option<Instant> = None;
        let mut wanted = false;
        for peer in self.peers.values() {
            if let Role::Publisher(publisher) = &peer.role {
                if publisher.pli_wanted {
                    wanted = true;
                    let at = publisher
                        .last_pli
                        .map_or(now, |last| last + PLI_INTERVAL)
                        .max(now);
                    not_before = Some(not_before.map_or(at, |n| n.min(at)));
                }
            }
        }
        self.keyframes_wanted |= wanted;
        self.keyframe_not_before = not_before.filter(|at| *at > now);
    }

    pub(super) fn housekeeping(&mut self, now: Instant) {
        let mut stopped: Vec<(HandleKey, &'static str)> = Vec::new();
        for (key, peer) in &mut self.peers {
            let Role::Publisher(publisher) = &mut peer.role else {
                continue;
            };
            for track in &publisher.tracks {
                let last = publisher.last_packet.get(&track.mid);
                let quiet = last.is_some_and(|at| now.duration_since(*at) >= NO_MEDIA);
                if quiet && publisher.receiving.insert(track.mid, false) == Some(true) {
                    stopped.push((*key, kind_name(track.kind)));
                }
            }
        }
        for (key, kind) in stopped {
            self.outputs.push_back(MediaOutput::Receiving {
                key,
                kind,
                receiving: false,
            });
        }
        self.choose_layers(now);
        self.send_keyframe_requests(now);
    }

    /// Picks each subscriber's simulcast layer from the layers arriving (see `simulcast.rs`);
    /// a subscriber that must move to another asks for a keyframe on it.
    pub(super) fn choose_layers(&mut self, now: Instant) {
        let mut ranked: Map<(ParticipantId, Mid), Vec<(Rid, u64)>> = Map::default();
        for peer in self.peers.values() {
            if let Role::Publisher(publisher) = &peer.role {
                for (mid, layers) in &publisher.layers {
                    // Only layers with a measured rate: the first bitrate a subscriber's
                    // estimator is told to reach decides its first probes.
                    let live = layers.ranked(now, NO_MEDIA);
                    if !live.is_empty() {
                        ranked.insert((publisher.feed, *mid), live);
                    }
                }
            }
        }
        if ranked.is_empty() {
            return;
        }
        let mut keyframe_for: Vec<ParticipantId> = Vec::new();
        for peer in self.peers.values_mut() {
            let Role::Subscriber(subscriber) = &mut peer.role else {
                continue;
            };
            // The estimate shared by the subscriber's simulcast video tracks, after its audio
            // (audio is never what gives way).
            let audio = subscriber
                .tracks
                .values()
                .filter(|t| t.kind == MediaKind::Audio)
                .count() as u64;
            let layered = subscriber
                .tracks
                .keys()
                .filter(|k| ranked.contains_key(k))
                .count() as u64;
            let share = peer
                .estimate
                .map(|e| e.saturating_sub(audio * AUDIO_BPS) / layered.max(1));
            let mut desired = audio * AUDIO_BPS;
            for ((feed, mid), track) in &mut subscriber.tracks {
                let Some(layers) = ranked.get(&(*feed, *mid)) else {
                    continue;
                };
                desired += layers.last().map_or(0, |(_, rate)| *rate);
                let selection = &mut track.selection;
                let target =
                    simulcast::choose(layers, subscriber.substream, share, selection.current);
                if target.is_some() && target != selection.target {
                    selection.target = target;
                }
                if selection.switching() {
                    keyframe_for.push(*feed);
                }
            }
            if peer.estimate.is_some() && layered > 0 {
                // The estimator probes (with padding) up to what the best layers need.
                peer.rtc
                    .bwe()
                    .set_desired_bitrate(Bitrate::bps(desired + desired / 10));
            }
        }
        keyframe_for.sort_unstable();
        keyframe_for.dedup();
        for feed in keyframe_for {
            self.want_keyframe(feed);
        }
    }
}

struct Slow {
    uplink: bool,
    kind: &'static str,
    mid: Mid,
    lost: u64,
}

impl Slow {
    pub(super) fn into_output(self, key: HandleKey) -> MediaOutput {
        MediaOutput::Slowlink {
            key,
            uplink: self.uplink,
            kind: self.kind,
            mid: self.mid.to_string(),
            lost: self.lost,
        }
    }
}

/// NACKs on `mid` since the last stats event (the counts are cumulative).
fn new_nacks(peer: &Peer, mid: Mid, nacks: u64) -> u64 {
    nacks.saturating_sub(peer.nacks.get(&mid).copied().unwrap_or(0))
}

/// Whether the NACKs counted on `mid` since the last stats event (a second ago) make a
/// `slowlink`, at most one per [`SLOWLINK_INTERVAL`].
fn slowlink(peer: &mut Peer, now: Instant, mid: Mid, nacks: u64, uplink: bool) -> Option<Slow> {
    let before = peer.nacks.insert(mid, nacks).unwrap_or(0);
    let lost = nacks.saturating_sub(before);
    if lost < SLOWLINK_LOST_PER_S {
        return None;
    }
    if peer
        .last_slowlink
        .is_some_and(|at| now.duration_since(at) < SLOWLINK_INTERVAL)
    {
        return None;
    }
    peer.last_slowlink = Some(now);
    let kind = peer.rtc.media(mid).map_or("video", |m| kind_name(m.kind()));
    Some(Slow {
        uplink,
        kind,
        mid,
        lost,
    })
}

/// The forwarding facts of a publisher's packet.
fn read_packet(peer: &mut Peer, packet: RtpPacket) -> Option<Forward> {
    let Role::Publisher(publisher) = &peer.role else {
        return None;
    };
    let feed = publisher.feed;
    let (mid, rid) = {
        let mut api = peer.rtc.direct_api();
        let stream = api.stream_rx(&packet.header.ssrc)?;
        (stream.mid(), stream.rid())
    };
    let keyframe = rid.is_some() && simulcast::vp8_keyframe(&packet.payload);
    Some(Forward {
        rid,
        keyframe,
        feed,
        mid,
        pt: packet.header.payload_type,
        seq: packet.seq_no,
        timestamp: packet.header.timestamp,
        marker: packet.header.marker,
        audio_level: packet.header.ext_vals.audio_level,
        voice_activity: packet.header.ext_vals.voice_activity,
        payload: packet.payload,
        received: packet.timestamp,
    })
}
