//! The media of one room: a str0m [`Rtc`] per PeerConnection (one per publisher, one per
//! subscriber handle, as the QuickBlox client makes them), in RTP mode (packets are forwarded,
//! never depacketized), ICE-lite on the server's one UDP address, DTLS-SRTP with AEAD-AES-GCM
//! preferred.
//!
//! Driving contract (sans-IO, like str0m itself):
//! - negotiation: [`RoomMedia::publish`] answers a publisher's offer, [`RoomMedia::subscribe`]
//!   makes the offer for a subscriber, [`RoomMedia::subscriber_answer`] takes its answer,
//!   [`RoomMedia::add_candidate`] adds a trickled candidate, [`RoomMedia::end`] ends one;
//! - packets: [`RoomMedia::handle_receive`] for every datagram the shell routed to a peer of
//!   this room (by ufrag or source address, from the `Route*` outputs);
//! - time: [`RoomMedia::poll_timeout`], then [`RoomMedia::handle_timeout`] at that instant;
//! - after any of these, drain [`RoomMedia::poll_output`]: datagrams to send, routes for the
//!   shell's demultiplexer, and events for the signalling (`webrtcup`, `media`, `hangup`,
//!   talking).
//!
//! A publisher's packet is decrypted once by its `Rtc` and written to each subscriber's `Rtc`
//! with that subscriber's payload type, sequence numbers and timestamps ([`rewrite`]), so a
//! `switch` is seamless; str0m keeps a send buffer per subscriber stream and answers NACKs from
//! it. Keyframe requests from subscribers are forwarded to the publisher at most once per
//! [`PLI_INTERVAL`]; a subscriber that connects asks for one.

// This file: the types, the driving API (packets, timers, outputs) and housekeeping state;
// `negotiate.rs`: offers, answers, candidates, the end of a PeerConnection;
// `forward.rs`: draining a PeerConnection and fanning a publisher's packets out.
mod forward;
mod negotiate;
pub mod rewrite;
pub mod sdp;
pub mod simulcast;
pub mod talking;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpPendingOffer;
use str0m::config::DtlsCert;
use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Input, Rtc};

use crate::videoroom::{HandleKey, ParticipantId};
use rewrite::Rewriter;

/// The maps a forwarded packet looks things up in (several lookups per copy): foldhash rather
/// than SipHash, still seeded per map. Their keys are the server's handles and the room's
/// feeds and media sections, few per room.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use talking::TalkingDetector;

/// Keyframe requests reach a publisher at most this often (a burst of subscribers joining, or
/// of lost packets, asks for one keyframe, not dozens).
pub const PLI_INTERVAL: Duration = Duration::from_millis(500);
/// A publisher stream with no packet for this long is reported `receiving: false` (Janus's
/// no-media timer).
pub const NO_MEDIA: Duration = Duration::from_secs(1);
/// Lost packets per second (as NACKed) on one stream that make a `slowlink` event.
pub const SLOWLINK_LOST_PER_S: u64 = 4;
/// At most one `slowlink` event per PeerConnection this often.
pub const SLOWLINK_INTERVAL: Duration = Duration::from_secs(5);
/// Where a subscriber's bandwidth estimate starts: below a typical middle layer, so a
/// subscriber starts on what surely gets through and climbs as the estimate does.
const BWE_START_KBPS: u64 = 300;
/// What each audio track is assumed to take out of a subscriber's estimate.
const AUDIO_BPS: u64 = 64_000;
/// How often the room looks at its streams even when str0m has nothing to do.
const HOUSEKEEPING: Duration = Duration::from_millis(250);

/// What every PeerConnection of the server shares.
#[derive(Clone)]
pub struct MediaConfig {
    /// The address announced in the host candidate (the public address, or the UDP socket's
    /// own); it is also every datagram's destination as str0m sees it.
    pub local_addr: SocketAddr,
    /// One DTLS certificate for every PeerConnection: generating one per peer costs a key
    /// generation each, and the fingerprint is per connection anyway.
    pub dtls_cert: DtlsCert,
}

impl std::fmt::Debug for MediaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaConfig")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl MediaConfig {
    /// A config announcing `local_addr`, with a freshly generated certificate.
    pub fn new(local_addr: SocketAddr) -> Option<MediaConfig> {
        let dtls_cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()?;
        Some(MediaConfig {
            local_addr,
            dtls_cert,
        })
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaOutput {
    /// Send a datagram from the media socket.
    Transmit {
        /// Where to.
        to: SocketAddr,
        /// The bytes.
        data: Vec<u8>,
    },
    /// STUN whose USERNAME starts with this ufrag goes to this peer.
    RouteUfrag {
        /// The local ICE ufrag.
        ufrag: String,
        /// The peer.
        key: HandleKey,
    },
    /// Datagrams from this address go to this peer (learnt once ICE answered it).
    RouteAddress {
        /// The remote address.
        addr: SocketAddr,
        /// The peer.
        key: HandleKey,
    },
    /// Forget a ufrag route.
    ForgetUfrag(String),
    /// Forget an address route.
    ForgetAddress {
        /// The remote address.
        addr: SocketAddr,
        /// The peer that had it (another may have it by now).
        key: HandleKey,
    },
    /// ICE and DTLS are up for this peer (Janus `webrtcup`).
    WebrtcUp(HandleKey),
    /// A publisher's stream of `kind` started or stopped arriving (Janus `media`).
    Receiving {
        /// The publisher's handle.
        key: HandleKey,
        /// `"audio"` or `"video"`.
        kind: &'static str,
        /// Whether packets arrive.
        receiving: bool,
    },
    /// The peer's PeerConnection is gone (ICE lost, DTLS failed or closed): Janus `hangup`.
    Hangup {
        /// The peer.
        key: HandleKey,
        /// Why, for the client.
        reason: String,
    },
    /// Packets are being lost on a PeerConnection (Janus `slowlink`): `uplink` from the client
    /// to the server (a publisher's), else from the server to the client (a subscriber's).
    Slowlink {
        /// The peer.
        key: HandleKey,
        /// Which direction loses.
        uplink: bool,
        /// `"audio"` or `"video"`.
        kind: &'static str,
        /// The media section.
        mid: String,
        /// Packets lost (NACKed) in the last second.
        lost: u64,
    },
    /// The first media packet was forwarded to this subscriber (join-to-first-frame).
    Flowing(HandleKey),
    /// A publisher's talking state changed.
    Talking {
        /// The publisher.
        feed: ParticipantId,
        /// Talking or not.
        talking: bool,
        /// Its average level (-dBov).
        level: u8,
    },
}

/// Counters for metrics (the shell reads and resets them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MediaCounters {
    /// RTP packets received from publishers.
    pub ingress_packets: u64,
    /// Their payload bytes.
    pub ingress_bytes: u64,
    /// NACKs: sent to publishers for packets lost on their way in, and received from
    /// subscribers (each answered from str0m's send buffer by a retransmission).
    pub nacks: u64,
    /// RTP packets written to subscribers.
    pub egress_packets: u64,
    /// Their payload bytes.
    pub egress_bytes: u64,
    /// Keyframe requests sent to publishers.
    pub plis: u64,
}

/// One media section a publisher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Track {
    mid: Mid,
    kind: MediaKind,
}

struct Publisher {
    feed: ParticipantId,
    tracks: Vec<Track>,
    last_packet: Map<Mid, Instant>,
    receiving: Map<Mid, bool>,
    last_pli: Option<Instant>,
    pli_wanted: bool,
    talking: TalkingDetector,
    /// The publisher's payload parameters by payload type (for mapping to subscribers').
    params: Map<Pt, PayloadParams>,
    /// The simulcast layers of each video section that has them.
    layers: Map<Mid, simulcast::Layers>,
    /// Its offer sent video in several layers.
    simulcast: bool,
}

struct OutTrack {
    /// The subscriber's media section for this track.
    mid: Mid,
    /// That section's place in the SDP (`mindex`; closed sections keep theirs).
    index: usize,
    kind: MediaKind,
    rewriter: Rewriter,
    /// Publisher payload type → this subscriber's (None: it cannot take that codec).
    pts: Map<Pt, Option<Pt>>,
    /// Which layer it gets, when the publisher's track is simulcast.
    selection: simulcast::Selection,
}

impl OutTrack {
    fn new(mid: Mid, index: usize, kind: MediaKind) -> OutTrack {
        let step = if kind == MediaKind::Audio { 960 } else { 3000 };
        OutTrack {
            mid,
            index,
            kind,
            rewriter: Rewriter::new(random_start(&mid), step),
            pts: Map::default(),
            selection: simulcast::Selection::default(),
        }
    }
}

struct Subscriber {
    /// The feeds it receives, in the order subscribed (one for the legacy single-feed form).
    feeds: Vec<ParticipantId>,
    /// By (feed, the publisher track's mid).
    tracks: Map<(ParticipantId, Mid), OutTrack>,
    pending: Option<SdpPendingOffer>,
    paused: bool,
    /// Media sections made so far (the next one's index).
    sections: usize,
    /// A packet has been forwarded to it.
    flowing: bool,
    /// The simulcast layer it pinned (Janus `substream`, 0 the lowest); `None`: the best its
    /// link takes.
    substream: Option<u8>,
}

enum Role {
    Publisher(Publisher),
    Subscriber(Subscriber),
}

struct Peer {
    rtc: Rtc,
    role: Role,
    ufrag: String,
    addresses: Vec<SocketAddr>,
    connected: bool,
    /// Packets were written to it that it has not yet been drained of ([`RoomMedia::written`]).
    written: bool,
    next_timeout: Instant,
    /// A subscriber's bandwidth estimate (bits/s), when it has one (simulcast feeds only).
    estimate: Option<u64>,
    /// NACK counts per media section at the last stats event, for `slowlink`.
    nacks: Map<Mid, u64>,
    last_slowlink: Option<Instant>,
}

/// The media of one room.
pub struct RoomMedia {
    config: MediaConfig,
    peers: Map<HandleKey, Peer>,
    /// The publisher handle of each feed.
    feeds: Map<ParticipantId, HandleKey>,
    /// The subscriber handles of each feed, so a packet visits its audience, not the room.
    audience: Map<ParticipantId, Vec<HandleKey>>,
    outputs: VecDeque<MediaOutput>,
    /// Subscribers written to since they were last drained: drained once when the shell next
    /// polls, so a burst of packets (a batch the socket read at once, a keyframe's fragments)
    /// costs each subscriber's `Rtc` one round of polling, not one per packet.
    written: Vec<HandleKey>,
    /// The time of the last input (what the drains of written subscribers use).
    last_now: Option<Instant>,
    counters: MediaCounters,
    egress_total: u64,
    next_housekeeping: Option<Instant>,
    /// Some publisher has a keyframe request waiting: only then are they looked for (every
    /// drain would otherwise walk every peer, for each packet written).
    keyframes_wanted: bool,
    /// No wanted request may go before this (they are all throttled until then).
    keyframe_not_before: Option<Instant>,
}

impl std::fmt::Debug for RoomMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomMedia")
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl RoomMedia {
    /// A room with no PeerConnections.
    pub fn new(config: MediaConfig) -> RoomMedia {
        RoomMedia {
            config,
            peers: Map::default(),
            feeds: Map::default(),
            audience: Map::default(),
            outputs: VecDeque::new(),
            written: Vec::new(),
            last_now: None,
            counters: MediaCounters::default(),
            egress_total: 0,
            next_housekeeping: None,
            keyframes_wanted: false,
            keyframe_not_before: None,
        }
    }

    /// How many PeerConnections the room holds.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether the room holds none.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Whether `key` has a PeerConnection here.
    pub fn has_peer(&self, key: HandleKey) -> bool {
        self.peers.contains_key(&key)
    }

    /// The handles with a PeerConnection here.
    pub fn keys(&self) -> Vec<HandleKey> {
        let mut keys: Vec<HandleKey> = self.peers.keys().copied().collect();
        keys.sort();
        keys
    }

    /// Whether `key`'s PeerConnection publishes.
    pub fn is_publisher(&self, key: HandleKey) -> bool {
        self.peers
            .get(&key)
            .is_some_and(|p| matches!(p.role, Role::Publisher(_)))
    }

    /// Whether `key`'s PeerConnection is up.
    pub fn is_connected(&self, key: HandleKey) -> bool {
        self.peers.get(&key).is_some_and(|p| p.connected)
    }

    /// A subscriber's bandwidth estimate in bits/s (subscribers of simulcast feeds only).
    pub fn estimate(&self, key: HandleKey) -> Option<u64> {
        self.peers.get(&key).and_then(|p| p.estimate)
    }

    /// RTP packets written to subscribers since the room began (for the shell's latency
    /// measurement around one datagram).
    pub fn egress_total(&self) -> u64 {
        self.egress_total
    }

    /// Takes the counters since the last call.
    pub fn take_counters(&mut self) -> MediaCounters {
        std::mem::take(&mut self.counters)
    }

    /// A datagram for `key` from `source`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        key: HandleKey,
        source: SocketAddr,
        data: &[u8],
    ) {
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.config.local_addr, data) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        self.last_now = Some(now);
        if let Err(error) = peer.rtc.handle_input(Input::Receive(now, receive)) {
            // Garbage from the network ends nothing by itself; a broken session shows up as a
            // dead Rtc below.
            let _ = error;
        }
        self.drain(now, key);
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.written.is_empty() {
            // Writes wait for a drain: at once.
            return self.last_now;
        }
        let peers = self.peers.values().map(|p| p.next_timeout).min();
        match (peers, self.next_housekeeping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lets every due PeerConnection's timers run, and checks the streams.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = Some(now);
        self.drain_written(now);
        let due: Vec<HandleKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.next_timeout <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(peer) = self.peers.get_mut(&key) {
                let _ = peer.rtc.handle_input(Input::Timeout(now));
            }
            self.drain(now, key);
        }
        if self.next_housekeeping.is_none_or(|at| at <= now) {
            self.housekeeping(now);
            self.next_housekeeping = (!self.peers.is_empty()).then(|| now + HOUSEKEEPING);
        }
    }

    /// The next thing for the shell. Feeding several datagrams before polling lets the
    /// subscribers they were forwarded to be drained once for all of them.
    pub fn poll_output(&mut self) -> Option<MediaOutput> {
        if let Some(now) = self.last_now {
            self.drain_written(now);
        }
        self.outputs.pop_front()
    }

    /// Drains the subscribers written to since their last drain.
    fn drain_written(&mut self, now: Instant) {
        while let Some(key) = self.written.pop() {
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.written = false;
            }
            self.drain(now, key);
        }
    }
}

/// The local ufrag a STUN message is addressed to (the first half of its `USERNAME`,
/// "ours:theirs"), so the shell can hand it to the right PeerConnection before any address is
/// known. `None` for anything that is not a STUN message with a username.
pub fn stun_ufrag(data: &[u8]) -> Option<String> {
    // RFC 7983: STUN starts with 0..=3 (RTP/RTCP 128..=191, DTLS 20..=63).
    if data.first().is_none_or(|b| *b > 3) {
        return None;
    }
    let message = str0m::ice::StunMessage::parse(data).ok()?;
    let (ours, _) = message.split_username()?;
    Some(ours.to_string())
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

/// A starting sequence number that differs per stream (from the mid's text and the stream's
/// place), below 2^15.
fn random_start(mid: &Mid) -> u16 {
    let mut hash: u32 = 2_166_136_261;
    for byte in mid.to_string().bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(16_777_619);
    }
    (hash & 0x7fff) as u16
}
