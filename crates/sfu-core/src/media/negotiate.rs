//! Negotiation: a publisher's offer answered, a subscriber's offer made (new, more feeds, an
//! ICE restart, a switch) and its answer taken, trickled candidates, the end of a
//! PeerConnection, and the ufrag routes each of these changes.

use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid, Rids};
use str0m::{Candidate, IceCreds, RtcConfig};

use super::talking::TalkingDetector;
use super::{
    kind_name, sdp, Map, MediaOutput, OutTrack, Peer, Publisher, Role, RoomMedia, Subscriber,
    Track, BWE_START_KBPS, HOUSEKEEPING,
};
use crate::videoroom::{HandleKey, ParticipantId, RoomError, RoomErrorCode};

impl RoomMedia {
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
                false,
                Role::Publisher(Publisher {
                    feed,
                    tracks: Vec::new(),
                    last_packet: Map::default(),
                    receiving: Map::default(),
                    last_pli: None,
                    pli_wanted: false,
                    talking: TalkingDetector::new(),
                    params: Map::default(),
                    layers: Map::default(),
                    simulcast: false,
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
        publisher.simulcast = tracks.iter().any(|t| {
            t.kind == MediaKind::Video
                && peer
                    .rtc
                    .media(t.mid)
                    .is_some_and(|m| matches!(m.rids_rx(), Rids::Specific(r) if r.len() > 1))
        });
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
        // A simulcast feed is worth a bandwidth estimate (str0m's GoogCC over the subscriber's
        // TWCC feedback) to choose its layer by; other subscribers skip its pacer.
        let bwe = feeds.iter().any(|feed| self.feed_is_simulcast(*feed));
        self.ensure_subscriber(now, key, bwe)?;
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
        let mut by_kind: std::collections::HashMap<MediaKind, OutTrack> =
            std::collections::HashMap::new();
        for (_, mut track) in subscriber.tracks.drain() {
            track.rewriter.switch_source();
            track.pts.clear();
            // Another feed's layers: chosen afresh, taken at their keyframe.
            track.selection = super::simulcast::Selection::default();
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

    /// Whether `feed` sends simulcast video here.
    pub(super) fn feed_is_simulcast(&self, feed: ParticipantId) -> bool {
        self.feeds
            .get(&feed)
            .and_then(|key| self.peers.get(key))
            .is_some_and(|peer| matches!(&peer.role, Role::Publisher(p) if p.simulcast))
    }

    /// The tracks `feed` publishes here.
    pub(super) fn publisher_tracks(&self, feed: ParticipantId) -> Result<Vec<Track>, RoomError> {
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
    pub(super) fn ensure_subscriber(
        &mut self,
        now: Instant,
        key: HandleKey,
        bwe: bool,
    ) -> Result<(), RoomError> {
        match self.peers.get(&key).map(|p| &p.role) {
            Some(Role::Subscriber(_)) => Ok(()),
            Some(Role::Publisher(_)) => Err(RoomError::new(
                RoomErrorCode::AlreadyJoined,
                "This handle publishes; subscribe on another handle",
            )),
            None => {
                let peer = self.new_peer(
                    now,
                    bwe,
                    Role::Subscriber(Subscriber {
                        feeds: Vec::new(),
                        tracks: Map::default(),
                        pending: None,
                        paused: false,
                        sections: 0,
                        flowing: false,
                        substream: None,
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

    /// Pins the simulcast layer a subscriber gets (Janus `substream`: 0 the lowest, clamped to
    /// the layers there are), or lets it follow its link again (`None`).
    pub fn set_substream(&mut self, now: Instant, key: HandleKey, substream: Option<u8>) {
        if let Some(Peer {
            role: Role::Subscriber(subscriber),
            ..
        }) = self.peers.get_mut(&key)
        {
            subscriber.substream = substream;
        }
        self.choose_layers(now);
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
            self.outputs
                .push_back(MediaOutput::ForgetAddress { addr, key });
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

    pub(super) fn leave_audience(&mut self, feed: ParticipantId, key: HandleKey) {
        if let Some(audience) = self.audience.get_mut(&feed) {
            audience.retain(|k| *k != key);
            if audience.is_empty() {
                self.audience.remove(&feed);
            }
        }
    }

    pub(super) fn new_peer(&self, now: Instant, bwe: bool, role: Role) -> Peer {
        let config = RtcConfig::new()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_dtls_cert(self.config.dtls_cert.clone())
            .set_local_ice_credentials(IceCreds::new())
            .clear_codecs()
            .enable_opus(true)
            .enable_vp8(true)
            // Once a second: the NACK counts `slowlink` is judged on.
            .set_stats_interval(Some(Duration::from_secs(1)));
        let config = if bwe {
            config.enable_bwe(Some(Bitrate::kbps(BWE_START_KBPS)))
        } else {
            config
        };
        let rtc = config.build(now);
        let mut peer = Peer {
            rtc,
            role,
            ufrag: String::new(),
            addresses: Vec::new(),
            connected: false,
            written: false,
            next_timeout: now,
            estimate: None,
            nacks: Map::default(),
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

    pub(super) fn insert_peer(&mut self, key: HandleKey, peer: Peer) {
        self.peers.insert(key, peer);
        if self.next_housekeeping.is_none() {
            self.next_housekeeping = Some(self.peers[&key].next_timeout + HOUSEKEEPING);
        }
    }

    /// After a negotiation: the local ufrag may be new (an ICE restart).
    pub(super) fn refresh_ufrag(&mut self, key: HandleKey) {
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
