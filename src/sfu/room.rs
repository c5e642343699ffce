//! One room, one task: the signalling state ([`sfu_core::videoroom::Room`]) and, for
//! QuickBlox rooms, the check that the user may enter that dialog's conference (reference
//! §6.1: the room id is the dialog id, the publisher id is the user's own id). Requests come
//! from the gateway in order; answers and events go back to it for the sessions' transports.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::Rng;
use serde_json::Value;
use sfu_core::janus::{reply, Jsep, TrickleCandidate};
use sfu_core::videoroom::{
    Ended, HandleKey, Join, ParticipantId, Room, RoomError, RoomErrorCode, RoomId, RoomRequest,
    RoomSettings,
};
use tokio::sync::mpsc;

use super::gateway::{GatewayInput, Principal};
use super::SfuContext;
use crate::chat::model::ObjectId;
use crate::chat::ChatError;

/// Requests a room holds before the gateway answers "busy": a room gets a handful per
/// participant per negotiation, so this is far above any real burst.
const ROOM_QUEUE: usize = 256;

/// What a room task is told.
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

/// The gateway's way to a room task.
pub struct RoomHandle {
    requests: mpsc::Sender<RoomInput>,
    /// Departures and hang-ups: never refused (one per handle at most), so a full request
    /// queue cannot leave a ghost participant behind.
    control: mpsc::UnboundedSender<RoomInput>,
    participants: Arc<AtomicUsize>,
}

impl RoomHandle {
    /// Queues `input`; false if the room's request queue is full (or it ended).
    pub fn send(&self, input: RoomInput) -> bool {
        match input {
            RoomInput::Gone { .. } | RoomInput::Hangup { .. } => self.control.send(input).is_ok(),
            input => self.requests.try_send(input).is_ok(),
        }
    }

    /// How many participants the room has (for `list`).
    pub fn participants(&self) -> usize {
        self.participants.load(Ordering::Relaxed)
    }
}

/// Starts a room's task.
pub fn spawn(ctx: Arc<SfuContext>, id: RoomId, settings: RoomSettings) -> RoomHandle {
    let (requests, requests_rx) = mpsc::channel(ROOM_QUEUE);
    let (control, control_rx) = mpsc::unbounded_channel();
    let participants = Arc::new(AtomicUsize::new(0));
    let task = RoomTask {
        ctx: ctx.clone(),
        room: Room::new(id, settings),
        participants: participants.clone(),
    };
    ctx.metrics.rooms.inc();
    ctx.tracker.spawn(task.run(requests_rx, control_rx));
    RoomHandle {
        requests,
        control,
        participants,
    }
}

struct RoomTask {
    ctx: Arc<SfuContext>,
    room: Room,
    participants: Arc<AtomicUsize>,
}

impl RoomTask {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<RoomInput>,
        mut control: mpsc::UnboundedReceiver<RoomInput>,
    ) {
        loop {
            let input = tokio::select! {
                biased;
                input = control.recv() => input,
                input = requests.recv() => input,
            };
            // Both senders live in the gateway's directory: when it frees the room, they go.
            let Some(input) = input else { break };
            let destroyed = self.handle(input).await;
            self.flush();
            if destroyed {
                break;
            }
            if self.room.is_empty() {
                self.to_gateway(GatewayInput::RoomEmpty {
                    room: self.room.id().clone(),
                });
            }
        }
        self.ctx.metrics.rooms.dec();
    }

    /// Handles one input; true if the room was destroyed.
    async fn handle(&mut self, input: RoomInput) -> bool {
        match input {
            RoomInput::Gone { key } => {
                self.room.handle_gone(key);
                false
            }
            RoomInput::Hangup { key } => {
                // The PeerConnection ends; a publisher's feed stops (its subscribers learn
                // `unpublished`), the participant stays.
                if self.room.participant_of(key).is_some() {
                    let _ = self.room.unpublish(key);
                }
                false
            }
            RoomInput::Trickle { key, candidates } => {
                // No PeerConnection to add them to until the media engine lands.
                let _ = (key, candidates);
                false
            }
            RoomInput::Message {
                key,
                owner,
                transaction,
                request,
                jsep,
            } => self.message(key, &owner, &transaction, request, jsep).await,
        }
    }

    async fn message(
        &mut self,
        key: HandleKey,
        owner: &Principal,
        transaction: &str,
        request: RoomRequest,
        jsep: Option<Jsep>,
    ) -> bool {
        let sync = request.is_synchronous();
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
                        let data = serde_json::json!({"videoroom": "destroyed", "room": self.room.id().to_json()});
                        self.answer(key, transaction, true, Ok(data));
                        self.to_gateway(GatewayInput::RoomDestroyed {
                            room: self.room.id().clone(),
                        });
                        return true;
                    }
                    Err(error) => Err(error),
                }
            }
            RoomRequest::Join(join) => self.join(key, owner, join).await,
            RoomRequest::JoinAndConfigure(join, _) => self.join(key, owner, join).await,
            RoomRequest::Unpublish => self.room.unpublish(key),
            RoomRequest::Pause => self.room.set_paused(key, true),
            RoomRequest::Start if jsep.is_none() => self.room.set_paused(key, false),
            RoomRequest::Switch { feed } => self.room.switch(key, feed),
            RoomRequest::Leave => self.room.leave(key),
            _ => Err(RoomError::new(
                RoomErrorCode::Unknown,
                "Media negotiation is not available on this server yet",
            )),
        };
        self.answer(key, transaction, sync, result);
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

    async fn join(
        &mut self,
        key: HandleKey,
        owner: &Principal,
        join: Join,
    ) -> Result<Value, RoomError> {
        let user = self.admit(owner).await?;
        let private_id = rand::thread_rng().gen_range(1..(1u64 << 53));
        let (id, display, pin, publisher) = match join {
            Join::Publisher {
                id, display, pin, ..
            } => (id, display, pin, true),
            Join::Passive {
                id, display, pin, ..
            } => (id, display, pin, false),
            Join::Subscriber { .. } => {
                return Err(RoomError::new(
                    RoomErrorCode::Unknown,
                    "Media negotiation is not available on this server yet",
                ))
            }
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

    /// For a QuickBlox room: the user joining, if they may read the dialog. For a numeric
    /// room: anyone (`None`).
    async fn admit(&self, owner: &Principal) -> Result<Option<u64>, RoomError> {
        let RoomId::Str(dialog) = self.room.id() else {
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
        match self.ctx.chat.existing_dialog(*app, &id).await {
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

    /// Sends a request's answer: `success` + plugindata for a synchronous request, an event
    /// with the transaction for an asynchronous one.
    fn answer(
        &self,
        key: HandleKey,
        transaction: &str,
        sync: bool,
        result: Result<Value, RoomError>,
    ) {
        let data = match result {
            Ok(data) => data,
            Err(error) => error.to_data(),
        };
        let message = if sync {
            reply::plugin_success(transaction, key.session.0, key.handle.0, data)
        } else {
            reply::event(key.session.0, key.handle.0, Some(transaction), data, None)
        };
        self.to_gateway(GatewayInput::Deliver {
            session: key.session,
            message,
        });
    }

    /// Sends the room's queued events and acts on ended PeerConnections.
    fn flush(&mut self) {
        while let Some(event) = self.room.poll_event() {
            let message = reply::event(
                event.to.session.0,
                event.to.handle.0,
                None,
                event.data,
                None,
            );
            self.to_gateway(GatewayInput::Deliver {
                session: event.to.session,
                message,
            });
        }
        while let Some(ended) = self.room.poll_ended() {
            // Media: the PeerConnection of this handle ends (`media.rs`).
            let _: Ended = ended;
        }
        while let Some(key) = self.room.poll_left() {
            self.to_gateway(GatewayInput::LeftRoom {
                room: self.room.id().clone(),
                key,
            });
        }
        self.participants
            .store(self.room.participant_count(), Ordering::Relaxed);
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
