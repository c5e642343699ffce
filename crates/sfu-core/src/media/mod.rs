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

pub mod rewrite;
pub mod sdp;
pub mod talking;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::format::PayloadParams;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcConfig};

use crate::videoroom::{HandleKey, ParticipantId, RoomError, RoomErrorCode};
use rewrite::Rewriter;
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
    ForgetAddress(SocketAddr),
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
    last_packet: HashMap<Mid, Instant>,
    receiving: HashMap<Mid, bool>,
    last_pli: Option<Instant>,
    pli_wanted: bool,
    talking: TalkingDetector,
    /// The publisher's payload parameters by payload type (for mapping to subscribers').
    params: HashMap<Pt, PayloadParams>,
}

struct OutTrack {
    /// The subscriber's media section for this track.
    mid: Mid,
    /// That section's place in the SDP (`mindex`; closed sections keep theirs).
    index: usize,
    kind: MediaKind,
    rewriter: Rewriter,
    /// Publisher payload type → this subscriber's (None: it cannot take that codec).
    pts: HashMap<Pt, Option<Pt>>,
}

impl OutTrack {
    fn new(mid: Mid, index: usize, kind: MediaKind) -> OutTrack {
        let step = if kind == MediaKind::Audio { 960 } else { 3000 };
        OutTrack {
            mid,
            index,
            kind,
            rewriter: Rewriter::new(random_start(&mid), step),
            pts: HashMap::new(),
        }
    }
}

/// A send-only media section for one of `feed`'s tracks, named after the feed so the
/// browser groups a feed's audio and video into one stream.
fn add_send_media(
    api: &mut str0m::change::SdpApi<'_>,
    feed: ParticipantId,
    kind: MediaKind,
) -> Mid {
    let stream = format!("janus{}", feed.0);
    let track = format!("{stream}{}", kind_name(kind));
    api.add_media(kind, Direction::SendOnly, Some(stream), Some(track), None)
}

struct Subscriber {
    /// The feeds it receives, in the order subscribed (one for the legacy single-feed form).
    feeds: Vec<ParticipantId>,
    /// By (feed, the publisher track's mid).
    tracks: HashMap<(ParticipantId, Mid), OutTrack>,
    pending: Option<SdpPendingOffer>,
    paused: bool,
    /// Media sections made so far (the next one's index).
    sections: usize,
    /// A packet has been forwarded to it.
    flowing: bool,
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
    next_timeout: Instant,
    /// NACK counts per media section at the last stats event, for `slowlink`.
    nacks: HashMap<Mid, u64>,
    last_slowlink: Option<Instant>,
}

/// The media of one room.
pub struct RoomMedia {
    config: MediaConfig,
    peers: HashMap<HandleKey, Peer>,
    /// The publisher handle of each feed.
    feeds: HashMap<ParticipantId, HandleKey>,
    /// The subscriber handles of each feed, so a packet visits its audience, not the room.
    audience: HashMap<ParticipantId, Vec<HandleKey>>,
    outputs: VecDeque<MediaOutput>,
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
}

impl RoomMedia {
    /// A room with no PeerConnections.
    pub fn new(config: MediaConfig) -> RoomMedia {
        RoomMedia {
            config,
            peers: HashMap::new(),
            feeds: HashMap::new(),
            audience: HashMap::new(),
            outputs: VecDeque::new(),
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

    /// RTP packets written to subscribers since the room began (for the shell's latency
    /// measurement around one datagram).
    pub fn egress_total(&self) -> u64 {
        self.egress_total
    }

    /// Takes the counters since the last call.
    pub fn take_counters(&mut self) -> MediaCounters {
        std::mem::take(&mut self.counters)
    }

    /// A publisher's offer (first or renegotiated): returns the SDP answer.
    pub fn publish(
        &mut self,
        now: Instant,
        key: HandleKey,
        feed: ParticipantId,
        offer_sdp: &str,
    ) -> Result<String, RoomError> {
        let offer = SdpOffer::from_sdp_string(offer_sdp)
            .map_err(|e| RoomError::new(RoomErrorCode::InvalidSdp, format!("Invalid SDP: {e}")))?;
        let tracks: Vec<Track> = sdp::sections(offer_sdp)
            .into_iter()
            .filter(|s| s.sends)
            .filter_map(|s| {
                let kind = match s.kind.as_str() {
                    "audio" => MediaKind::Audio,
                    "video" => MediaKind::Video,
                    _ => return None,
                };
                Some(Track {
                    mid: Mid::from(s.mid?.as_str()),
                    kind,
                })
            })
            .collect();
        if tracks.is_empty() {
            return Err(RoomError::new(
                RoomErrorCode::InvalidSdp,
                "The offer sends no audio or video",
            ));
        }
        let created = !self.peers.contains_key(&key);
        if created {
            let peer = self.new_peer(
                now,
                Role::Publisher(Publisher {
                    feed,
                    tracks: Vec::new(),
                    last_packet: HashMap::new(),
                    receiving: HashMap::new(),
                    last_pli: None,
                    pli_wanted: false,
                    talking: TalkingDetector::new(),
                    params: HashMap::new(),
                }),
            );
            self.insert_peer(key, peer);
        }
        let peer = self.peers.get_mut(&key).expect("inserted above");
        let Role::Publisher(publisher) = &mut peer.role else {
            return Err(RoomError::new(
                RoomErrorCode::InvalidRequest,
                "This handle subscribes; it cannot publish",
            ));
        };
        let answer = match peer.rtc.sdp_api().accept_offer(offer) {
            Ok(answer) => answer,
            Err(error) => {
                // A first offer that cannot be answered leaves no PeerConnection behind.
                if created {
                    self.peers.remove(&key);
                }
                return Err(RoomError::new(
                    RoomErrorCode::InvalidSdp,
                    format!("Cannot answer the offer: {error}"),
                ));
            }
        };
        publisher.tracks = tracks;
        publisher.params = peer
            .rtc
            .codec_config()
            .params()
            .iter()
            .map(|p| (p.pt(), *p))
            .collect();
        self.feeds.insert(feed, key);
        self.refresh_ufrag(key);
        self.drain(now, key);
        Ok(answer.to_sdp_string())
    }

    /// The media kinds a feed sends (for the subscriber's offer), if it is published here.
    pub fn feed_kinds(&self, feed: ParticipantId) -> Option<Vec<&'static str>> {
        let key = self.feeds.get(&feed)?;
        let Role::Publisher(publisher) = &self.peers.get(key)?.role else {
            return None;
        };
        Some(publisher.tracks.iter().map(|t| kind_name(t.kind)).collect())
    }

    /// Makes the offer for a subscriber handle to receive `feeds` besides what it receives (a
    /// new PeerConnection, more feeds for a multistream one, or an ICE restart of an existing
    /// one); `None` when nothing needs negotiating.
    pub fn subscribe(
        &mut self,
        now: Instant,
        key: HandleKey,
        feeds: &[ParticipantId],
        ice_restart: bool,
    ) -> Result<Option<String>, RoomError> {
        let mut wanted: Vec<(ParticipantId, Vec<Track>)> = Vec::new();
        for feed in feeds {
            wanted.push((*feed, self.publisher_tracks(*feed)?));
        }
        self.ensure_subscriber(now, key)?;
        let peer = self.peers.get_mut(&key).expect("ensured above");
        let Role::Subscriber(subscriber) = &mut peer.role else {
            unreachable!("ensure_subscriber checked the role");
        };
        let mut api = peer.rtc.sdp_api();
        if ice_restart {
            api.ice_restart(true);
        }
        for (feed, tracks) in &wanted {
            if !subscriber.feeds.contains(feed) {
                subscriber.feeds.push(*feed);
                let audience = self.audience.entry(*feed).or_default();
                if !audience.contains(&key) {
                    audience.push(key);
                }
            }
            for track in tracks {
                if subscriber.tracks.contains_key(&(*feed, track.mid)) {
                    continue;
                }
                let mid = add_send_media(&mut api, *feed, track.kind);
                let index = subscriber.sections;
                subscriber.sections += 1;
                subscriber
                    .tracks
                    .insert((*feed, track.mid), OutTrack::new(mid, index, track.kind));
            }
        }
        let offer = match api.apply() {
            Some((offer, pending)) => {
                subscriber.pending = Some(pending);
                Some(offer.to_sdp_string())
            }
            None => None,
        };
        self.refresh_ufrag(key);
        self.drain(now, key);
        for (feed, _) in &wanted {
            self.want_keyframe(*feed);
        }
        Ok(offer)
    }

    /// Stops receiving `feeds` (their media sections are closed); the offer that says so.
    pub fn unsubscribe(
        &mut self,
        now: Instant,
        key: HandleKey,
        feeds: &[ParticipantId],
    ) -> Result<Option<String>, RoomError> {
        let Some(Peer {
            rtc,
            role: Role::Subscriber(subscriber),
            ..
        }) = self.peers.get_mut(&key)
        else {
            return Err(RoomError::new(RoomErrorCode::JoinFirst, "Not a subscriber"));
        };
        let mut api = rtc.sdp_api();
        subscriber.feeds.retain(|f| !feeds.contains(f));
        for feed in feeds {
            if let Some(audience) = self.audience.get_mut(feed) {
                audience.retain(|k| *k != key);
            }
        }
        let gone: Vec<(ParticipantId, Mid)> = subscriber
            .tracks
            .keys()
            .filter(|(feed, _)| feeds.contains(feed))
            .copied()
            .collect();
        for at in gone {
            if let Some(track) = subscriber.tracks.remove(&at) {
                api.stop_media(track.mid);
            }
        }
        let offer = match api.apply() {
            Some((offer, pending)) => {
                subscriber.pending = Some(pending);
                Some(offer.to_sdp_string())
            }
            None => None,
        };
        self.drain(now, key);
        Ok(offer)
    }

    /// A single-feed subscription moves to `feed`: the same media sections carry the new
    /// feed's tracks (numbering continues), and a section is added for a kind the old feed
    /// did not send; `None` when nothing needs negotiating.
    pub fn switch(
        &mut self,
        now: Instant,
        key: HandleKey,
        feed: ParticipantId,
    ) -> Result<Option<String>, RoomError> {
        let tracks = self.publisher_tracks(feed)?;
        let Some(Peer {
            rtc,
            role: Role::Subscriber(subscriber),
            ..
        }) = self.peers.get_mut(&key)
        else {
            return Err(RoomError::new(RoomErrorCode::JoinFirst, "Not a subscriber"));
        };
        let mut by_kind: HashMap<MediaKind, OutTrack> = HashMap::new();
        for (_, mut track) in subscriber.tracks.drain() {
            track.rewriter.switch_source();
            track.pts.clear();
            by_kind.entry(track.kind).or_insert(track);
        }
        let old = std::mem::replace(&mut subscriber.feeds, vec![feed]);
        for previous in old {
            if let Some(audience) = self.audience.get_mut(&previous) {
                audience.retain(|k| *k != key);
            }
        }
        let audience = self.audience.entry(feed).or_default();
        if !audience.contains(&key) {
            audience.push(key);
        }
        let mut api = rtc.sdp_api();
        for track in &tracks {
            let out = match by_kind.remove(&track.kind) {
                Some(out) => out,
                None => {
                    let index = subscriber.sections;
                    subscriber.sections += 1;
                    OutTrack::new(
                        add_send_media(&mut api, feed, track.kind),
                        index,
                        track.kind,
                    )
                }
            };
            subscriber.tracks.insert((feed, track.mid), out);
        }
        let offer = match api.apply() {
            Some((offer, pending)) => {
                subscriber.pending = Some(pending);
                Some(offer.to_sdp_string())
            }
            None => None,
        };
        self.drain(now, key);
        self.want_keyframe(feed);
        Ok(offer)
    }

    /// What a subscriber's media sections carry: (its mid, its index in the SDP, kind, feed,
    /// the feed's mid), in SDP order — the `streams` of Janus's `attached`/`updated` events.
    pub fn streams(
        &self,
        key: HandleKey,
    ) -> Vec<(String, usize, &'static str, ParticipantId, String)> {
        let Some(Peer {
            role: Role::Subscriber(subscriber),
            ..
        }) = self.peers.get(&key)
        else {
            return Vec::new();
        };
        let mut streams: Vec<(String, usize, &'static str, ParticipantId, String)> = subscriber
            .tracks
            .iter()
            .map(|((feed, feed_mid), track)| {
                (
                    track.mid.to_string(),
                    track.index,
                    kind_name(track.kind),
                    *feed,
                    feed_mid.to_string(),
                )
            })
            .collect();
        streams.sort_by_key(|s| s.1);
        streams
    }

    /// The tracks `feed` publishes here.
    fn publisher_tracks(&self, feed: ParticipantId) -> Result<Vec<Track>, RoomError> {
        let no_feed = || {
            RoomError::new(
                RoomErrorCode::NoSuchFeed,
                format!("No such feed ({})", feed.0),
            )
        };
        let publisher_key = self.feeds.get(&feed).ok_or_else(no_feed)?;
        match &self.peers.get(publisher_key).ok_or_else(no_feed)?.role {
            Role::Publisher(publisher) => Ok(publisher.tracks.clone()),
            Role::Subscriber(_) => Err(no_feed()),
        }
    }

    /// A subscriber PeerConnection for `key`, made if it has none.
    fn ensure_subscriber(&mut self, now: Instant, key: HandleKey) -> Result<(), RoomError> {
        match self.peers.get(&key).map(|p| &p.role) {
            Some(Role::Subscriber(_)) => Ok(()),
            Some(Role::Publisher(_)) => Err(RoomError::new(
                RoomErrorCode::AlreadyJoined,
                "This handle publishes; subscribe on another handle",
            )),
            None => {
                let peer = self.new_peer(
                    now,
                    Role::Subscriber(Subscriber {
                        feeds: Vec::new(),
                        tracks: HashMap::new(),
                        pending: None,
                        paused: false,
                        sections: 0,
                        flowing: false,
                    }),
                );
                self.insert_peer(key, peer);
                Ok(())
            }
        }
    }

    /// A subscriber's answer to the last offer.
    pub fn subscriber_answer(
        &mut self,
        now: Instant,
        key: HandleKey,
        answer_sdp: &str,
    ) -> Result<(), RoomError> {
        let answer = SdpAnswer::from_sdp_string(answer_sdp)
            .map_err(|e| RoomError::new(RoomErrorCode::InvalidSdp, format!("Invalid SDP: {e}")))?;
        let peer = self.peers.get_mut(&key).ok_or_else(|| {
            RoomError::new(RoomErrorCode::JoinFirst, "No offer was made on this handle")
        })?;
        let Role::Subscriber(subscriber) = &mut peer.role else {
            return Err(RoomError::new(
                RoomErrorCode::InvalidSdpType,
                "A publisher sends offers, not answers",
            ));
        };
        let Some(pending) = subscriber.pending.take() else {
            // janus.js answers every offer once; an answer with no offer out is stale.
            return Err(RoomError::new(
                RoomErrorCode::InvalidSdpType,
                "No offer is waiting for an answer",
            ));
        };
        peer.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| {
                RoomError::new(
                    RoomErrorCode::InvalidSdp,
                    format!("Cannot use the answer: {e}"),
                )
            })?;
        self.refresh_ufrag(key);
        self.drain(now, key);
        Ok(())
    }

    /// Pauses or resumes forwarding to a subscriber.
    pub fn set_paused(&mut self, key: HandleKey, paused: bool) {
        if let Some(Peer {
            role: Role::Subscriber(subscriber),
            ..
        }) = self.peers.get_mut(&key)
        {
            subscriber.paused = paused;
        }
        if !paused {
            for feed in self.feeds_of_subscriber(key) {
                self.want_keyframe(feed);
            }
        }
    }

    /// A trickled remote candidate (mDNS `.local` candidates cannot be used by an ICE-lite
    /// server and are ignored, as are ones that do not parse).
    pub fn add_candidate(&mut self, now: Instant, key: HandleKey, candidate: &str) {
        let line = candidate.trim().trim_start_matches("a=");
        let Ok(candidate) = Candidate::from_sdp_string(line) else {
            return;
        };
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.rtc.add_remote_candidate(candidate);
        }
        self.drain(now, key);
    }

    /// Ends a PeerConnection (hangup, detach, leave, its feed gone).
    pub fn end(&mut self, key: HandleKey) {
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        peer.rtc.disconnect();
        self.outputs.push_back(MediaOutput::ForgetUfrag(peer.ufrag));
        for addr in peer.addresses {
            self.outputs.push_back(MediaOutput::ForgetAddress(addr));
        }
        match peer.role {
            Role::Publisher(publisher) => {
                if self.feeds.get(&publisher.feed) == Some(&key) {
                    self.feeds.remove(&publisher.feed);
                }
            }
            Role::Subscriber(subscriber) => {
                for feed in subscriber.feeds {
                    self.leave_audience(feed, key);
                }
            }
        }
    }

    fn leave_audience(&mut self, feed: ParticipantId, key: HandleKey) {
        if let Some(audience) = self.audience.get_mut(&feed) {
            audience.retain(|k| *k != key);
            if audience.is_empty() {
                self.audience.remove(&feed);
            }
        }
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
        if let Err(error) = peer.rtc.handle_input(Input::Receive(now, receive)) {
            // Garbage from the network ends nothing by itself; a broken session shows up as a
            // dead Rtc below.
            let _ = error;
        }
        self.drain(now, key);
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let peers = self.peers.values().map(|p| p.next_timeout).min();
        match (peers, self.next_housekeeping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lets every due PeerConnection's timers run, and checks the streams.
    pub fn handle_timeout(&mut self, now: Instant) {
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

    /// The next thing for the shell.
    pub fn poll_output(&mut self) -> Option<MediaOutput> {
        self.outputs.pop_front()
    }

    fn new_peer(&self, now: Instant, role: Role) -> Peer {
        let rtc = RtcConfig::new()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_dtls_cert(self.config.dtls_cert.clone())
            .set_local_ice_credentials(IceCreds::new())
            .clear_codecs()
            .enable_opus(true)
            .enable_vp8(true)
            // Once a second: the NACK counts `slowlink` is judged on.
            .set_stats_interval(Some(Duration::from_secs(1)))
            .build(now);
        let mut peer = Peer {
            rtc,
            role,
            ufrag: String::new(),
            addresses: Vec::new(),
            connected: false,
            next_timeout: now,
            nacks: HashMap::new(),
            last_slowlink: None,
        };
        match Candidate::host(self.config.local_addr, "udp") {
            Ok(candidate) => {
                peer.rtc.add_local_candidate(candidate);
            }
            Err(_) => {
                // An unusable announced address (0.0.0.0): the shell refuses to start with one.
            }
        }
        peer
    }

    fn insert_peer(&mut self, key: HandleKey, peer: Peer) {
        self.peers.insert(key, peer);
        if self.next_housekeeping.is_none() {
            self.next_housekeeping = Some(self.peers[&key].next_timeout + HOUSEKEEPING);
        }
    }

    /// After a negotiation: the local ufrag may be new (an ICE restart).
    fn refresh_ufrag(&mut self, key: HandleKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let ufrag = peer.rtc.direct_api().local_ice_credentials().ufrag;
        if ufrag == peer.ufrag {
            return;
        }
        let old = std::mem::replace(&mut peer.ufrag, ufrag.clone());
        if !old.is_empty() {
            self.outputs.push_back(MediaOutput::ForgetUfrag(old));
        }
        self.outputs
            .push_back(MediaOutput::RouteUfrag { ufrag, key });
    }

    /// Drains `key`'s outputs, then forwards what it received.
    fn drain(&mut self, now: Instant, key: HandleKey) {
        let mut forwards: Vec<Forward> = Vec::new();
        let mut keyframe_for: Vec<ParticipantId> = Vec::new();
        let mut dead: Option<String> = None;
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
                let pt = *track.pts.entry(forward.pt).or_insert_with(|| {
                    params.and_then(|p| peer.rtc.codec_config().match_params(p).map(|m| m.pt()))
                });
                let Some(pt) = pt else { continue };
                let Some((seq, timestamp)) =
                    track.rewriter.rewrite(*forward.seq, forward.timestamp)
                else {
                    continue;
                };
                let out_mid = track.mid;
                let video = track.kind == MediaKind::Video;
                let ext = ExtensionValues {
                    audio_level: forward.audio_level,
                    voice_activity: forward.voice_activity,
                    ..ExtensionValues::default()
                };
                let mut api = peer.rtc.direct_api();
                let Some(stream) = api.stream_tx_by_mid(out_mid, None) else {
                    continue;
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
                true
            };
            if written {
                self.egress_total += 1;
                self.counters.egress_packets += 1;
                self.counters.egress_bytes += forward.payload.len() as u64;
                self.drain(now, key);
            }
        }
    }

    fn feeds_of_subscriber(&self, key: HandleKey) -> Vec<ParticipantId> {
        match self.peers.get(&key).map(|p| &p.role) {
            Some(Role::Subscriber(subscriber)) => subscriber.feeds.clone(),
            _ => Vec::new(),
        }
    }

    fn want_keyframe(&mut self, feed: ParticipantId) {
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
    fn send_keyframe_requests(&mut self, now: Instant) {
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
                    if let Some(stream) = peer.rtc.direct_api().stream_rx_by_mid(mid, None) {
                        stream.request_keyframe(KeyframeRequestKind::Pli);
                        sent = true;
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

    fn housekeeping(&mut self, now: Instant) {
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
        self.send_keyframe_requests(now);
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

struct Slow {
    uplink: bool,
    kind: &'static str,
    mid: Mid,
    lost: u64,
}

impl Slow {
    fn into_output(self, key: HandleKey) -> MediaOutput {
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
    let mid = peer.rtc.direct_api().stream_rx(&packet.header.ssrc)?.mid();
    Some(Forward {
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
