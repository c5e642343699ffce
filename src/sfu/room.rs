//! One room: the signalling state ([`sfu_core::videoroom::Room`]), its PeerConnections
//! ([`sfu_core::media::RoomMedia`]), and for QuickBlox rooms the check that the user may enter
//! that dialog's conference (reference §6.1: the room id is the dialog id, the publisher id is
//! the user's own id). A room lives on one media shard (`shard.rs`), which calls it with the
//! gateway's requests in order, with the datagrams of its PeerConnections and at its timers;
//! answers and events go back through the gateway to the sessions' transports, datagrams
//! straight out of the shard's socket. Nothing here waits: the one lookup that does (may this
//! user enter the dialog?) runs beside the shard before the join is handed in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;
use serde_json::{json, Value};
use sfu_core::janus::{reply, Jsep, JsepKind, TrickleCandidate};
use sfu_core::media::{MediaOutput, RoomMedia};
use sfu_core::videoroom::{
    Configure, Ended, HandleKey, Join, ParticipantId, Room, RoomError, RoomErrorCode, RoomId,
    RoomRequest, RoomSettings, StreamChoice,
};

use super::gateway::{GatewayInput, Principal};
use super::shard::{Net, RoomSlot};
use super::SfuContext;
use crate::chat::model::ObjectId;
use crate::chat::ChatError;

/// What a room is told.
pub enum RoomInput {
    /// A VideoRoom request on a handle.
    Message {
        key: HandleKey,
        owner: Principal,
        transaction: String,
        request: RoomRequest,
        jsep: Option<Jsep>,
    },
    /// ICE candidates for a handle's PeerConnection.
    Trickle {
        key: HandleKey,
        candidates: Vec<TrickleCandidate>,
    },
    /// The handle's PeerConnection ends.
    Hangup { key: HandleKey },
    /// The handle is gone.
    Gone { key: HandleKey },
}

impl RoomInput {
    /// Departures and hang-ups: never refused (one per handle at most), so a full request
    /// queue cannot leave a ghost participant behind.
    pub fn is_control(&self) -> bool {
        matches!(self, RoomInput::Gone { .. } | RoomInput::Hangup { .. })
    }
}

/// What a room shares with the gateway's handle on it.
#[derive(Default)]
pub struct RoomShared {
    /// Requests handed to the shard and not yet taken (the gateway answers "busy" beyond a
    /// bound).
    pub pending: AtomicUsize,
    /// How many participants the room has (for `list`).
    pub participants: AtomicUsize,
    /// The shard ended the room.
    pub closed: std::sync::atomic::AtomicBool,
}

/// Whether the user may enter the room, for a join: the QuickBlox dialog check, answered with
/// the user's id (their publisher id), or `None` for a numeric room anyone may join.
pub async fn admit(
    ctx: &SfuContext,
    room: &RoomId,
    owner: &Principal,
) -> Result<Option<u64>, RoomError> {
    let RoomId::Str(dialog) = room else {
        return Ok(None);
    };
    let Principal::User { app, user } = owner else {
        return Err(RoomError::new(
            RoomErrorCode::Unauthorized,
            "Unauthorized: a QuickBlox session token is needed (?token= on the server URL)",
        ));
    };
    let no_room = || {
        RoomError::new(
            RoomErrorCode::NoSuchRoom,
            format!("No such room ({dialog})"),
        )
    };
    let Some(id) = ObjectId::parse(dialog) else {
        return Err(no_room());
    };
    match ctx.chat.existing_dialog(*app, &id).await {
        Ok(found) if found.may_read(*user) => Ok(Some(user.0 as u64)),
        Ok(_) => Err(RoomError::new(
            RoomErrorCode::Unauthorized,
            "Unauthorized: not an occupant of this dialog",
        )),
        Err(ChatError::NotFound(_)) => Err(no_room()),
        Err(error) => {
            tracing::error!(%error, "looking up a conference's dialog failed");
            Err(RoomError::new(
                RoomErrorCode::Unknown,
                "Internal error; try again",
            ))
        }
    }
}

pub struct RoomState {
    ctx: Arc<SfuContext>,
    slot: RoomSlot,
    room: Room,
    media: RoomMedia,
    shared: Arc<RoomShared>,
    /// When each subscriber joined, until its first packet (join-to-first-frame).
    joined_at: std::collections::HashMap<HandleKey, Instant>,
    /// When the publisher datagrams received since the last settle arrived, for the
    /// forwarding time once their copies are out.
    forwarded: Vec<Instant>,
}

impl RoomState {
    pub fn new(
        ctx: Arc<SfuContext>,
        slot: RoomSlot,
        id: RoomId,
        settings: RoomSettings,
        shared: Arc<RoomShared>,
    ) -> RoomState {
        ctx.metrics.rooms.inc();
        let media = RoomMedia::new(ctx.media_config.clone());
        RoomState {
            ctx,
            slot,
            room: Room::new(id, settings),
            media,
            shared,
            joined_at: std::collections::HashMap::new(),
            forwarded: Vec::new(),
        }
    }

    pub fn id(&self) -> &RoomId {
        self.room.id()
    }

    /// The owner of a join that needs [`admit`] before it is handed in.
    pub fn admission(&self, input: &RoomInput) -> Option<Principal> {
        let RoomInput::Message { owner, request, .. } = input else {
            return None;
        };
        let joins = matches!(
            request,
            RoomRequest::Join(_) | RoomRequest::JoinAndConfigure(..)
        );
        (joins && matches!(self.room.id(), RoomId::Str(_))).then(|| owner.clone())
    }

    /// When [`timeout`](Self::timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.media.poll_timeout()
    }

    /// The room's timers.
    pub fn timeout(&mut self, net: &mut Net, now: Instant) {
        self.media.handle_timeout(now);
        self.settle(net);
    }

    /// Freed or destroyed: every PeerConnection ends and its routes go.
    pub fn close(&mut self, net: &mut Net) {
        for key in self.media.keys() {
            self.end_media(key);
        }
        self.settle(net);
        let left = self.shared.participants.swap(0, Ordering::Relaxed);
        self.ctx.metrics.participants.sub(left as i64);
        self.ctx.metrics.rooms.dec();
    }

    /// One datagram for a PeerConnection. What it causes goes out at [`settle`](Self::settle),
    /// which the shard calls once for all the datagrams of a batch.
    pub fn receive(
        &mut self,
        key: HandleKey,
        source: std::net::SocketAddr,
        data: &[u8],
        received: Instant,
    ) {
        let before = self.media.egress_total();
        // str0m's clock only moves forward: the receive time it gets is now, not the
        // socket's (a handed-over datagram's would be earlier than the last timer's).
        self.media.handle_receive(Instant::now(), key, source, data);
        if self.media.egress_total() != before {
            self.forwarded.push(received);
        }
    }

    /// Handles one request or departure (with the [`admit`] verdict, for a join that needed
    /// one); true if the room was destroyed.
    pub fn input(
        &mut self,
        net: &mut Net,
        input: RoomInput,
        admitted: Option<Result<Option<u64>, RoomError>>,
    ) -> bool {
        let destroyed = self.handle(input, admitted);
        self.settle(net);
        if !destroyed && self.room.is_empty() {
            self.to_gateway(GatewayInput::RoomEmpty {
                room: self.room.id().clone(),
            });
        }
        destroyed
    }

    fn handle(
        &mut self,
        input: RoomInput,
        admitted: Option<Result<Option<u64>, RoomError>>,
    ) -> bool {
        match input {
            RoomInput::Gone { key } => {
                self.room.handle_gone(key);
                self.end_media(key);
                false
            }
            RoomInput::Hangup { key } => {
                self.hung_up(key);
                false
            }
            RoomInput::Trickle { key, candidates } => {
                let now = Instant::now();
                for candidate in candidates {
                    if let TrickleCandidate::Candidate { candidate, .. } = candidate {
                        self.media.add_candidate(now, key, &candidate);
                    }
                }
                false
            }
            RoomInput::Message {
                key,
                owner: _,
                transaction,
                request,
                jsep,
            } => self.message(key, &transaction, request, jsep, admitted),
        }
    }

    fn message(
        &mut self,
        key: HandleKey,
        transaction: &str,
        request: RoomRequest,
        jsep: Option<Jsep>,
        admitted: Option<Result<Option<u64>, RoomError>>,
    ) -> bool {
        // Numeric rooms need no admission: anyone may join.
        let admitted = admitted.unwrap_or(Ok(None));
        let sync = request.is_synchronous();
        let mut answer_jsep: Option<(JsepKind, String, bool)> = None;
        let result = match request {
            RoomRequest::ListParticipants { .. } => Ok(self.room.participants_json()),
            RoomRequest::Kick { id, secret, .. } => self
                .room
                .check_secret(secret.as_deref())
                .and_then(|()| self.room.kick(id)),
            RoomRequest::Destroy { secret, .. } => {
                match self.room.check_secret(secret.as_deref()) {
                    Ok(()) => {
                        self.room.destroy();
                        self.flush();
                        let data =
                            json!({"videoroom": "destroyed", "room": self.room.id().to_json()});
                        self.answer(key, transaction, true, Ok(data), None);
                        self.to_gateway(GatewayInput::RoomDestroyed {
                            room: self.room.id().clone(),
                        });
                        return true;
                    }
                    Err(error) => Err(error),
                }
            }
            RoomRequest::Join(join) => self.join(key, admitted, join, &mut answer_jsep),
            RoomRequest::JoinAndConfigure(join, configure) => {
                match self.join(key, admitted, join, &mut answer_jsep) {
                    Ok(joined) if jsep.is_some() => self
                        .configure(key, configure, jsep, &mut answer_jsep)
                        .map(|_| joined),
                    other => other,
                }
            }
            RoomRequest::Configure(configure) | RoomRequest::Publish(configure) => {
                self.configure(key, configure, jsep, &mut answer_jsep)
            }
            RoomRequest::Unpublish => self.room.unpublish(key),
            RoomRequest::Start => self.start(key, jsep),
            RoomRequest::Pause => {
                self.media.set_paused(key, true);
                self.room.set_paused(key, true)
            }
            RoomRequest::Switch { feed } => self.switch(key, feed, &mut answer_jsep),
            RoomRequest::Leave => self.room.leave(key),
            RoomRequest::Subscribe { streams } => self.update(key, &streams, &[], &mut answer_jsep),
            RoomRequest::Unsubscribe { streams } => {
                self.update(key, &[], &streams, &mut answer_jsep)
            }
            RoomRequest::Update {
                subscribe,
                unsubscribe,
            } => self.update(key, &subscribe, &unsubscribe, &mut answer_jsep),
            _ => Err(RoomError::new(
                RoomErrorCode::InvalidRequest,
                "Not a room request",
            )),
        };
        self.answer(key, transaction, sync, result, answer_jsep);
        if self.room.participant_of(key).is_none() && !self.room.is_subscriber(key) {
            // A failed join (or any request from a handle that is not in) leaves the handle
            // outside the room.
            self.to_gateway(GatewayInput::LeftRoom {
                room: self.room.id().clone(),
                key,
            });
        }
        false
    }

    fn join(
        &mut self,
        key: HandleKey,
        admitted: Result<Option<u64>, RoomError>,
        join: Join,
        answer_jsep: &mut Option<(JsepKind, String, bool)>,
    ) -> Result<Value, RoomError> {
        let user = admitted?;
        let private_id = rand::thread_rng().gen_range(1..(1u64 << 53));
        let (id, display, pin, publisher) = match join {
            Join::Publisher {
                id, display, pin, ..
            } => (id, display, pin, true),
            Join::Passive {
                id, display, pin, ..
            } => (id, display, pin, false),
            Join::Subscriber {
                streams,
                pin,
                multistream,
                ..
            } => return self.subscribe(key, &streams, multistream, pin.as_deref(), answer_jsep),
        };
        let id = match (user, id) {
            (Some(user), Some(id)) if id.0 != user => {
                return Err(RoomError::new(
                    RoomErrorCode::Unauthorized,
                    format!(
                        "Unauthorized: you can join only as yourself ({user}), not as {}",
                        id.0
                    ),
                ))
            }
            (Some(user), _) => ParticipantId(user),
            (None, Some(id)) => id,
            (None, None) => ParticipantId(rand::thread_rng().gen_range(1..(1u64 << 53))),
        };
        self.room
            .join(key, id, display, pin.as_deref(), publisher, private_id)
    }

    /// A subscriber join: the legacy single-feed form (the QuickBlox model: one handle per
    /// remote feed, answered `attached` with the feed's id) or Janus 1.x multistream
    /// (`streams`, answered with the `streams` the PeerConnection carries). The server's offer
    /// goes with it.
    fn subscribe(
        &mut self,
        key: HandleKey,
        streams: &[StreamChoice],
        multistream: bool,
        pin: Option<&str>,
        answer_jsep: &mut Option<(JsepKind, String, bool)>,
    ) -> Result<Value, RoomError> {
        let feeds = distinct_feeds(streams);
        let mut attached = self.room.subscribe(key, &feeds, pin)?;
        match self.media.subscribe(Instant::now(), key, &feeds, false) {
            Ok(offer) => {
                if let Some(offer) = offer {
                    *answer_jsep = Some((JsepKind::Offer, offer, false));
                }
                self.ctx
                    .metrics
                    .peers
                    .with_label_values(&["subscriber"])
                    .inc();
                self.joined_at.insert(key, Instant::now());
                if multistream {
                    attached = json!({
                        "videoroom": "attached",
                        "room": self.room.id().to_json(),
                        "streams": self.streams_json(key),
                    });
                }
                Ok(attached)
            }
            Err(error) => {
                let _ = self.room.leave(key);
                while self.room.poll_left().is_some() {}
                while self.room.poll_ended().is_some() {}
                Err(error)
            }
        }
    }

    /// Janus 1.x `subscribe`, `unsubscribe` and `update` on a multistream subscription:
    /// `updated` with its streams, and the offer that renegotiates it.
    fn update(
        &mut self,
        key: HandleKey,
        add: &[StreamChoice],
        remove: &[StreamChoice],
        answer_jsep: &mut Option<(JsepKind, String, bool)>,
    ) -> Result<Value, RoomError> {
        if !self.room.is_subscriber(key) {
            return Err(RoomError::new(RoomErrorCode::JoinFirst, "Subscribe first"));
        }
        let now = Instant::now();
        let remove = distinct_feeds(remove);
        if !remove.is_empty() {
            self.room.unsubscribe(key, &remove);
            if let Some(offer) = self.media.unsubscribe(now, key, &remove)? {
                *answer_jsep = Some((JsepKind::Offer, offer, false));
            }
        }
        let add = distinct_feeds(add);
        if !add.is_empty() {
            self.room.subscribe(key, &add, None)?;
            if let Some(offer) = self.media.subscribe(now, key, &add, false)? {
                *answer_jsep = Some((JsepKind::Offer, offer, false));
            }
        }
        Ok(json!({
            "videoroom": "updated",
            "room": self.room.id().to_json(),
            "streams": self.streams_json(key),
        }))
    }

    /// A subscription's `streams`, as Janus 1.x describes them.
    fn streams_json(&self, key: HandleKey) -> Vec<Value> {
        self.media
            .streams(key)
            .into_iter()
            .map(|(mid, index, kind, feed, feed_mid)| {
                let mut stream = json!({
                    "type": kind,
                    "active": true,
                    "mid": mid,
                    "mindex": index,
                    "ready": false,
                    "send": true,
                    "feed_id": feed.0,
                    "feed_mid": feed_mid,
                });
                if let Some(display) = self.room.display_of(feed) {
                    stream["feed_display"] = display.into();
                }
                stream
            })
            .collect()
    }

    /// A publisher's `configure`/`publish` (an offer to answer, or settings only), or a
    /// subscriber's `configure` (an ICE restart asks for a new offer).
    fn configure(
        &mut self,
        key: HandleKey,
        configure: Configure,
        jsep: Option<Jsep>,
        answer_jsep: &mut Option<(JsepKind, String, bool)>,
    ) -> Result<Value, RoomError> {
        let now = Instant::now();
        if self.room.is_subscriber(key) {
            if let Some(paused) = configure
                .media
                .video
                .or(configure.media.audio)
                .map(|on| !on)
            {
                self.media.set_paused(key, paused);
            }
            if let Some(substream) = configure.substream {
                // Janus: 0 the lowest simulcast layer; the layer changes at its next keyframe.
                self.media.set_substream(now, key, Some(substream));
            }
            if configure.restart {
                let feeds: Vec<ParticipantId> = self
                    .room
                    .feeds_of(key)
                    .map(<[_]>::to_vec)
                    .unwrap_or_default();
                if feeds.is_empty() {
                    return Err(RoomError::new(
                        RoomErrorCode::NoSuchFeed,
                        "The feed is gone",
                    ));
                }
                if let Some(offer) = self.media.subscribe(now, key, &feeds, true)? {
                    *answer_jsep = Some((JsepKind::Offer, offer, true));
                }
            }
            return Ok(
                json!({"videoroom": "event", "room": self.room.id().to_json(), "configured": "ok"}),
            );
        }
        let feed = self.room.may_publish(key)?;
        match jsep {
            Some(jsep) if jsep.kind == JsepKind::Offer => {
                let first = !self.media.has_peer(key);
                let answer = self.media.publish(now, key, feed, &jsep.sdp)?;
                if first {
                    self.ctx
                        .metrics
                        .peers
                        .with_label_values(&["publisher"])
                        .inc();
                }
                *answer_jsep = Some((JsepKind::Answer, answer, false));
            }
            Some(_) => {
                return Err(RoomError::new(
                    RoomErrorCode::InvalidSdpType,
                    "A publisher sends an offer; the server answers it",
                ))
            }
            None => {}
        }
        if let Some(display) = configure.display {
            self.room.set_display(key, display);
        }
        Ok(json!({"videoroom": "event", "room": self.room.id().to_json(), "configured": "ok"}))
    }

    /// A subscriber's `start`: its answer (to any offer the server made, first or later), or
    /// the end of a pause.
    fn start(&mut self, key: HandleKey, jsep: Option<Jsep>) -> Result<Value, RoomError> {
        if !self.room.is_subscriber(key) {
            return Err(RoomError::new(
                RoomErrorCode::JoinFirst,
                "Can't start: not a subscriber",
            ));
        }
        if let Some(jsep) = jsep {
            if jsep.kind != JsepKind::Answer {
                return Err(RoomError::new(
                    RoomErrorCode::InvalidSdpType,
                    "start takes the answer to the server's offer",
                ));
            }
            self.media
                .subscriber_answer(Instant::now(), key, &jsep.sdp)?;
        }
        self.media.set_paused(key, false);
        self.room.set_paused(key, false)
    }

    fn switch(
        &mut self,
        key: HandleKey,
        feed: ParticipantId,
        answer_jsep: &mut Option<(JsepKind, String, bool)>,
    ) -> Result<Value, RoomError> {
        let switched = self.room.switch(key, feed)?;
        if let Some(offer) = self.media.switch(Instant::now(), key, feed)? {
            // The new feed has a kind the old one did not: the subscriber answers as usual.
            *answer_jsep = Some((JsepKind::Offer, offer, false));
        }
        Ok(switched)
    }

    /// The handle's PeerConnection ended (`hangup` request or lost): a publisher's feed stops
    /// (its subscribers learn `unpublished`), a subscription ends.
    fn hung_up(&mut self, key: HandleKey) {
        if self.room.participant_of(key).is_some() {
            let _ = self.room.unpublish(key);
        } else if self.room.is_subscriber(key) {
            let _ = self.room.leave(key);
        }
        self.end_media(key);
    }

    /// Sends a request's answer: `success` + plugindata for a synchronous request, an event
    /// with the transaction (and the JSEP, if any) for an asynchronous one.
    fn answer(
        &self,
        key: HandleKey,
        transaction: &str,
        sync: bool,
        result: Result<Value, RoomError>,
        jsep: Option<(JsepKind, String, bool)>,
    ) {
        let (data, jsep) = match result {
            Ok(data) => (data, jsep),
            Err(error) => (error.to_data(), None),
        };
        let message = if sync {
            reply::plugin_success(transaction, key.session.0, key.handle.0, data)
        } else {
            let jsep = jsep
                .as_ref()
                .map(|(kind, sdp, restart)| (*kind, sdp.as_str(), *restart));
            reply::event(key.session.0, key.handle.0, Some(transaction), data, jsep)
        };
        self.deliver(key, message);
    }

    fn deliver(&self, key: HandleKey, message: Value) {
        self.to_gateway(GatewayInput::Deliver {
            session: key.session,
            message,
        });
    }

    /// Sends the room's queued events and ends the PeerConnections whose role ended.
    fn flush(&mut self) {
        while let Some(event) = self.room.poll_event() {
            let message = reply::event(
                event.to.session.0,
                event.to.handle.0,
                None,
                event.data,
                None,
            );
            self.deliver(event.to, message);
        }
        while let Some(ended) = self.room.poll_ended() {
            let key = match ended {
                Ended::Publisher(key) | Ended::Subscription(key) => key,
                _ => continue,
            };
            if self.media.has_peer(key) {
                self.end_media(key);
                // janus.js closes the PeerConnection on `hangup`; the handle stays usable.
                self.deliver(
                    key,
                    reply::handle_event(
                        "hangup",
                        key.session.0,
                        key.handle.0,
                        json!({"reason": "Feed ended"}),
                    ),
                );
            }
        }
        while let Some(key) = self.room.poll_left() {
            self.to_gateway(GatewayInput::LeftRoom {
                room: self.room.id().clone(),
                key,
            });
        }
        let count = self.room.participant_count();
        let before = self.shared.participants.swap(count, Ordering::Relaxed);
        self.ctx
            .metrics
            .participants
            .add(count as i64 - before as i64);
    }

    fn end_media(&mut self, key: HandleKey) {
        if !self.media.has_peer(key) {
            return;
        }
        let role = if self.room.participant_of(key).is_some() || self.media.is_publisher(key) {
            "publisher"
        } else {
            "subscriber"
        };
        self.ctx.metrics.peers.with_label_values(&[role]).dec();
        self.joined_at.remove(&key);
        self.media.end(key);
    }

    /// Acts on what the PeerConnections produced; true if any of it was for the signalling.
    fn media_outputs(&mut self, net: &mut Net) -> bool {
        let mut signalling = Vec::new();
        while let Some(output) = self.media.poll_output() {
            match output {
                MediaOutput::Transmit { to, data } => net.transmit(to, &data),
                MediaOutput::RouteUfrag { ufrag, key } => net.route_ufrag(ufrag, self.slot, key),
                MediaOutput::RouteAddress { addr, key } => net.route_address(addr, self.slot, key),
                MediaOutput::ForgetUfrag(ufrag) => net.forget_ufrag(&ufrag),
                MediaOutput::ForgetAddress { addr, key } => net.forget_address(addr, key),
                other => signalling.push(other),
            }
        }
        for output in signalling.iter().cloned() {
            match output {
                MediaOutput::WebrtcUp(key) => {
                    self.deliver(
                        key,
                        reply::handle_event("webrtcup", key.session.0, key.handle.0, json!({})),
                    );
                    // Janus announces a publisher once its media is up, so subscribers can
                    // build their offers from it.
                    self.room.publisher_up(key);
                }
                MediaOutput::Receiving {
                    key,
                    kind,
                    receiving,
                } => self.deliver(
                    key,
                    reply::handle_event(
                        "media",
                        key.session.0,
                        key.handle.0,
                        json!({"type": kind, "receiving": receiving}),
                    ),
                ),
                MediaOutput::Hangup { key, reason } => {
                    self.deliver(
                        key,
                        reply::handle_event(
                            "hangup",
                            key.session.0,
                            key.handle.0,
                            json!({"reason": reason}),
                        ),
                    );
                    self.hung_up(key);
                }
                MediaOutput::Slowlink {
                    key,
                    uplink,
                    kind,
                    mid,
                    lost,
                } => self.deliver(
                    key,
                    reply::handle_event(
                        "slowlink",
                        key.session.0,
                        key.handle.0,
                        json!({"uplink": uplink, "media": kind, "mid": mid, "lost": lost}),
                    ),
                ),
                MediaOutput::Flowing(key) => {
                    if let Some(at) = self.joined_at.remove(&key) {
                        self.ctx
                            .metrics
                            .first_frame_seconds
                            .observe(at.elapsed().as_secs_f64());
                    }
                }
                MediaOutput::Talking {
                    feed,
                    talking,
                    level,
                } => self.room.talking(feed, talking, level),
                _ => {}
            }
        }
        let counters = self.media.take_counters();
        // Label children resolved once (SfuMetrics::register): this runs for every datagram.
        let metrics = &self.ctx.metrics;
        metrics.ingress_packets.inc_by(counters.ingress_packets);
        metrics.egress_packets.inc_by(counters.egress_packets);
        metrics.ingress_bytes.inc_by(counters.ingress_bytes);
        metrics.egress_bytes.inc_by(counters.egress_bytes);
        metrics.keyframe_requests.inc_by(counters.plis);
        metrics.nacks.inc_by(counters.nacks);
        !signalling.is_empty()
    }

    /// Runs the room and its media to a standstill: room events out, ended PeerConnections
    /// closed, media outputs acted on, which may change the room again (a publisher announced,
    /// a hangup). Each round settles what the last one caused; a few rounds always suffice.
    pub fn settle(&mut self, net: &mut Net) {
        for _ in 0..8 {
            self.flush();
            if !self.media_outputs(net) {
                break;
            }
        }
        self.flush();
        self.media_outputs(net);
        if !self.forwarded.is_empty() {
            let now = Instant::now();
            for received in self.forwarded.drain(..) {
                self.ctx
                    .metrics
                    .forwarding_seconds
                    .observe(now.saturating_duration_since(received).as_secs_f64());
            }
        }
    }

    fn to_gateway(&self, input: GatewayInput) {
        // The gateway's queue is the one place every room reports to; if it is full the
        // server is overloaded and the message (an event) is dropped with a metric rather
        // than this room stalling.
        if self.ctx.gateway.try_send(input).is_err() {
            self.ctx.metrics.dropped_events.inc();
        }
    }
}

/// The feeds named by `streams`, each once, in order.
fn distinct_feeds(streams: &[StreamChoice]) -> Vec<ParticipantId> {
    let mut feeds: Vec<ParticipantId> = Vec::new();
    for stream in streams {
        if !feeds.contains(&stream.feed) {
            feeds.push(stream.feed);
        }
    }
    feeds
}
