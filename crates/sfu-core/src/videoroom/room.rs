//! The signalling state of one VideoRoom room: who is in it, who publishes, who subscribes to
//! whom, and the events each change sends (janus-videoroom reference §4, §6). Media is not
//! here: the shell tells the room when a publisher's media is up ([`Room::publisher_up`]), and
//! builds the SDP itself.
//!
//! Driving contract: call the `join_*`/`leave`/… methods as requests arrive; each returns the
//! plugin data answering the request (or a [`RoomError`]) and queues the events for other
//! handles, which [`Room::poll_event`] hands out in order. A room with no participants and no
//! subscribers reports [`Room::is_empty`]; the shell frees it unless it was created
//! explicitly.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{json, Value};

use super::error::{RoomError, RoomErrorCode};
use super::request::{CreateRoom, ParticipantId, RoomId};
use crate::janus::{HandleId, SessionId};

/// A plugin handle, as the room knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandleKey {
    /// Its session.
    pub session: SessionId,
    /// The handle.
    pub handle: HandleId,
}

/// A room's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSettings {
    /// Shown in `list`.
    pub description: String,
    /// Needed to destroy or kick.
    pub secret: Option<String>,
    /// Needed to join.
    pub pin: Option<String>,
    /// Left out of `list`.
    pub is_private: bool,
    /// Most publishers at once.
    pub max_publishers: usize,
    /// Joins are announced (`attendees` in `joined`, `joining` events).
    pub notify_joining: bool,
    /// A join with an id already in the room replaces the old participant instead of getting
    /// 436 (QuickBlox: the id is the user's, and a user who reconnects before their old
    /// session timed out is the same person).
    pub replace_same_id: bool,
    /// Created by `create` (kept when empty) rather than by a first join.
    pub explicit: bool,
}

impl RoomSettings {
    /// Settings from a `create` request.
    pub fn from_create(create: &CreateRoom) -> RoomSettings {
        RoomSettings {
            description: create.description.clone().unwrap_or_default(),
            secret: create.secret.clone(),
            pin: create.pin.clone(),
            is_private: create.is_private,
            max_publishers: create.publishers.map_or(3, |n| n as usize).clamp(1, 64),
            notify_joining: create.notify_joining,
            replace_same_id: false,
            explicit: true,
        }
    }

    /// A room made by its first join (QuickBlox: a dialog's conference).
    pub fn on_demand(description: String, max_publishers: usize) -> RoomSettings {
        RoomSettings {
            description,
            secret: None,
            pin: None,
            is_private: true,
            max_publishers,
            notify_joining: false,
            replace_same_id: true,
            explicit: false,
        }
    }
}

/// An event for a handle of this room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomEvent {
    /// To whom.
    pub to: HandleKey,
    /// The plugin data.
    pub data: Value,
}

/// What the shell must do besides sending events.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ended {
    /// The handle's publisher PeerConnection ends.
    Publisher(HandleKey),
    /// The handle's subscription ends (its feed went away, it left, or it was kicked).
    Subscription(HandleKey),
}

#[derive(Debug, Clone)]
struct Participant {
    handle: HandleKey,
    display: Option<String>,
    /// Joined as a publisher (false: passive).
    publisher: bool,
    /// Media up and announced.
    published: bool,
    talking: bool,
    private_id: u64,
}

#[derive(Debug, Clone)]
struct Subscriber {
    feeds: Vec<ParticipantId>,
    paused: bool,
}

/// One room.
#[derive(Debug)]
pub struct Room {
    id: RoomId,
    settings: RoomSettings,
    participants: BTreeMap<ParticipantId, Participant>,
    by_handle: HashMap<HandleKey, ParticipantId>,
    subscribers: HashMap<HandleKey, Subscriber>,
    events: VecDeque<RoomEvent>,
    ended: VecDeque<Ended>,
    left: VecDeque<HandleKey>,
}

impl Room {
    /// An empty room.
    pub fn new(id: RoomId, settings: RoomSettings) -> Room {
        Room {
            id,
            settings,
            participants: BTreeMap::new(),
            by_handle: HashMap::new(),
            subscribers: HashMap::new(),
            events: VecDeque::new(),
            ended: VecDeque::new(),
            left: VecDeque::new(),
        }
    }

    /// Its id.
    pub fn id(&self) -> &RoomId {
        &self.id
    }

    /// Its settings.
    pub fn settings(&self) -> &RoomSettings {
        &self.settings
    }

    /// No participants and no subscribers.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty() && self.subscribers.is_empty()
    }

    /// The next event to send.
    pub fn poll_event(&mut self) -> Option<RoomEvent> {
        self.events.pop_front()
    }

    /// The next PeerConnection to end.
    pub fn poll_ended(&mut self) -> Option<Ended> {
        self.ended.pop_front()
    }

    /// The next handle that stopped being in the room (left, kicked, replaced, its feed or
    /// room gone), so the shell can forget which room it was in.
    pub fn poll_left(&mut self) -> Option<HandleKey> {
        self.left.pop_front()
    }

    /// How many participants (publishers and passive ones) are in the room.
    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// The participant a handle joined as, if any.
    pub fn participant_of(&self, handle: HandleKey) -> Option<ParticipantId> {
        self.by_handle.get(&handle).copied()
    }

    /// The participant whose `private_id` this is (a subscriber join may name it to say whose
    /// subscription it is).
    pub fn by_private_id(&self, private_id: u64) -> Option<ParticipantId> {
        self.participants
            .iter()
            .find(|(_, p)| p.private_id == private_id)
            .map(|(id, _)| *id)
    }

    /// A participant's display name.
    pub fn display_of(&self, id: ParticipantId) -> Option<&str> {
        self.participants.get(&id)?.display.as_deref()
    }

    /// Whether `handle` is a subscriber here.
    pub fn is_subscriber(&self, handle: HandleKey) -> bool {
        self.subscribers.contains_key(&handle)
    }

    /// The feeds a subscriber handle receives.
    pub fn feeds_of(&self, handle: HandleKey) -> Option<&[ParticipantId]> {
        self.subscribers.get(&handle).map(|s| s.feeds.as_slice())
    }

    /// The handle publishing `feed`, if it is published.
    pub fn publisher_handle(&self, feed: ParticipantId) -> Option<HandleKey> {
        self.participants
            .get(&feed)
            .filter(|p| p.published)
            .map(|p| p.handle)
    }

    /// Checks the room's secret for destroy, kick and edit.
    pub fn check_secret(&self, secret: Option<&str>) -> Result<(), RoomError> {
        match &self.settings.secret {
            Some(wanted) if secret != Some(wanted.as_str()) => Err(RoomError::new(
                RoomErrorCode::Unauthorized,
                "Unauthorized (wrong secret)",
            )),
            _ => Ok(()),
        }
    }

    /// A publisher (or, with `publisher == false`, passive) join. `id` is the id to use
    /// (chosen by the client or the shell), `private_id` a fresh random number.
    pub fn join(
        &mut self,
        handle: HandleKey,
        id: ParticipantId,
        display: Option<String>,
        pin: Option<&str>,
        publisher: bool,
        private_id: u64,
    ) -> Result<Value, RoomError> {
        if let Some(wanted) = &self.settings.pin {
            if pin != Some(wanted.as_str()) {
                return Err(RoomError::new(
                    RoomErrorCode::Unauthorized,
                    "Unauthorized (wrong pin)",
                ));
            }
        }
        if self.by_handle.contains_key(&handle) || self.subscribers.contains_key(&handle) {
            return Err(RoomError::new(
                RoomErrorCode::AlreadyJoined,
                "Already in as a publisher on this handle",
            ));
        }
        if self.participants.contains_key(&id) {
            if !self.settings.replace_same_id {
                return Err(RoomError::new(
                    RoomErrorCode::IdExists,
                    format!("User ID {} already exists", id.0),
                ));
            }
            self.remove_participant(id, Departure::Replaced);
        }
        let attendees: Vec<Value> = self
            .participants
            .iter()
            .filter(|(_, p)| !p.published)
            .map(|(id, p)| participant_json(*id, p.display.as_deref()))
            .collect();
        if self.settings.notify_joining {
            let joining = json!({
                "videoroom": "event",
                "room": self.id.to_json(),
                "joining": participant_json(id, display.as_deref()),
            });
            self.broadcast(None, joining);
        }
        self.participants.insert(
            id,
            Participant {
                handle,
                display: display.clone(),
                publisher,
                published: false,
                talking: false,
                private_id,
            },
        );
        self.by_handle.insert(handle, id);
        let mut joined = json!({
            "videoroom": "joined",
            "room": self.id.to_json(),
            "description": self.settings.description,
            "id": id.0,
            "private_id": private_id,
            "publishers": self.publishers_json(Some(id)),
        });
        if self.settings.notify_joining {
            joined["attendees"] = Value::Array(attendees);
        }
        Ok(joined)
    }

    /// Checks a publisher may start publishing (before its offer is answered).
    pub fn may_publish(&self, handle: HandleKey) -> Result<ParticipantId, RoomError> {
        let id = self.participant_of(handle).ok_or_else(|| {
            RoomError::new(RoomErrorCode::JoinFirst, "Can't handle non-joined user")
        })?;
        let participant = &self.participants[&id];
        if !participant.publisher {
            return Err(RoomError::new(
                RoomErrorCode::InvalidRequest,
                "A passive participant cannot publish",
            ));
        }
        if !participant.published {
            let publishing = self.participants.values().filter(|p| p.published).count();
            if publishing >= self.settings.max_publishers {
                return Err(RoomError::new(
                    RoomErrorCode::PublishersFull,
                    format!(
                        "Maximum number of publishers ({}) reached",
                        self.settings.max_publishers
                    ),
                ));
            }
        }
        Ok(id)
    }

    /// A participant's new display name; the others learn it (Janus: `id` and `display`).
    pub fn set_display(&mut self, handle: HandleKey, display: String) {
        let Some(id) = self.participant_of(handle) else {
            return;
        };
        let participant = self.participants.get_mut(&id).expect("indexed");
        if participant.display.as_deref() == Some(display.as_str()) {
            return;
        }
        participant.display = Some(display.clone());
        let event = json!({
            "videoroom": "event",
            "room": self.id.to_json(),
            "id": id.0,
            "display": display,
        });
        self.broadcast(Some(id), event);
    }

    /// The publisher's media is up: everyone else learns of the new feed (Janus announces it
    /// after `webrtcup`, so subscribers can build their offers from its SDP).
    pub fn publisher_up(&mut self, handle: HandleKey) -> bool {
        let Some(id) = self.participant_of(handle) else {
            return false;
        };
        let participant = self.participants.get_mut(&id).expect("indexed");
        if participant.published {
            return false;
        }
        participant.published = true;
        let announce = json!({
            "videoroom": "event",
            "room": self.id.to_json(),
            "publishers": [self.publisher_json(id)],
        });
        self.broadcast(Some(id), announce);
        true
    }

    /// Stops publishing; the others learn `unpublished`.
    pub fn unpublish(&mut self, handle: HandleKey) -> Result<Value, RoomError> {
        let id = self.participant_of(handle).ok_or_else(|| {
            RoomError::new(RoomErrorCode::JoinFirst, "Can't unpublish, not joined")
        })?;
        if !self.participants[&id].published {
            return Err(RoomError::new(
                RoomErrorCode::NotPublished,
                "Can't unpublish, not published",
            ));
        }
        self.end_feed(id);
        self.ended.push_back(Ended::Publisher(handle));
        Ok(json!({ "videoroom": "event", "room": self.id.to_json(), "unpublished": "ok" }))
    }

    /// A participant's audio level crossed the talking threshold (RFC 6464, averaged by the
    /// shell): everyone learns `talking` or `stopped-talking`.
    pub fn talking(&mut self, id: ParticipantId, talking: bool, level_dbov: u8) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        if participant.talking == talking {
            return;
        }
        participant.talking = talking;
        let event = json!({
            "videoroom": if talking { "talking" } else { "stopped-talking" },
            "room": self.id.to_json(),
            "id": id.0,
            "audio-level-dBov-avg": level_dbov,
        });
        self.broadcast(None, event);
    }

    /// A subscriber join (or `subscribe`) for `feeds`, all of which must be published.
    pub fn subscribe(
        &mut self,
        handle: HandleKey,
        feeds: &[ParticipantId],
        pin: Option<&str>,
    ) -> Result<Value, RoomError> {
        if let Some(wanted) = &self.settings.pin {
            if !self.subscribers.contains_key(&handle) && pin != Some(wanted.as_str()) {
                return Err(RoomError::new(
                    RoomErrorCode::Unauthorized,
                    "Unauthorized (wrong pin)",
                ));
            }
        }
        if self.by_handle.contains_key(&handle) {
            return Err(RoomError::new(
                RoomErrorCode::AlreadyJoined,
                "Already in as a publisher on this handle",
            ));
        }
        for feed in feeds {
            if self.publisher_handle(*feed).is_none() {
                return Err(RoomError::new(
                    RoomErrorCode::NoSuchFeed,
                    format!("No such feed ({})", feed.0),
                ));
            }
        }
        let subscriber = self.subscribers.entry(handle).or_insert(Subscriber {
            feeds: Vec::new(),
            paused: false,
        });
        for feed in feeds {
            if !subscriber.feeds.contains(feed) {
                subscriber.feeds.push(*feed);
            }
        }
        let first = feeds.first().copied().expect("a subscription names a feed");
        let display = self.participants[&first].display.clone();
        let mut attached = json!({
            "videoroom": "attached",
            "room": self.id.to_json(),
            "id": first.0,
        });
        if let Some(display) = display {
            attached["display"] = display.into();
        }
        Ok(attached)
    }

    /// Removes feeds from a subscription; true if it still has some.
    pub fn unsubscribe(&mut self, handle: HandleKey, feeds: &[ParticipantId]) -> bool {
        let Some(subscriber) = self.subscribers.get_mut(&handle) else {
            return false;
        };
        subscriber.feeds.retain(|f| !feeds.contains(f));
        !subscriber.feeds.is_empty()
    }

    /// A single-feed subscription moves to another published feed.
    pub fn switch(&mut self, handle: HandleKey, feed: ParticipantId) -> Result<Value, RoomError> {
        if self.publisher_handle(feed).is_none() {
            return Err(RoomError::new(
                RoomErrorCode::NoSuchFeed,
                format!("No such feed ({})", feed.0),
            ));
        }
        let subscriber = self.subscribers.get_mut(&handle).ok_or_else(|| {
            RoomError::new(RoomErrorCode::JoinFirst, "Can't switch: not a subscriber")
        })?;
        subscriber.feeds = vec![feed];
        Ok(
            json!({ "videoroom": "event", "room": self.id.to_json(), "switched": "ok", "id": feed.0 }),
        )
    }

    /// Pauses or resumes forwarding to a subscriber.
    pub fn set_paused(&mut self, handle: HandleKey, paused: bool) -> Result<Value, RoomError> {
        let subscriber = self.subscribers.get_mut(&handle).ok_or_else(|| {
            RoomError::new(
                RoomErrorCode::JoinFirst,
                "Can't pause or start: not a subscriber",
            )
        })?;
        subscriber.paused = paused;
        let key = if paused { "paused" } else { "started" };
        Ok(json!({ "videoroom": "event", "room": self.id.to_json(), key: "ok" }))
    }

    /// Whether forwarding to a subscriber is paused.
    pub fn is_paused(&self, handle: HandleKey) -> bool {
        self.subscribers.get(&handle).is_some_and(|s| s.paused)
    }

    /// `leave` on a handle: a participant leaves (the others learn `unpublished` if it
    /// published, then `leaving`); a subscriber's subscription ends.
    pub fn leave(&mut self, handle: HandleKey) -> Result<Value, RoomError> {
        if let Some(id) = self.participant_of(handle) {
            self.remove_participant(id, Departure::Left);
            return Ok(json!({ "videoroom": "event", "leaving": "ok" }));
        }
        if self.subscribers.remove(&handle).is_some() {
            self.ended.push_back(Ended::Subscription(handle));
            self.left.push_back(handle);
            return Ok(json!({ "videoroom": "event", "left": "ok" }));
        }
        Err(RoomError::new(
            RoomErrorCode::JoinFirst,
            "Can't leave: not in the room",
        ))
    }

    /// The handle is gone (detached, its session ended): like `leave`, without an answer.
    pub fn handle_gone(&mut self, handle: HandleKey) {
        if let Some(id) = self.participant_of(handle) {
            self.remove_participant(id, Departure::Gone);
        } else if self.subscribers.remove(&handle).is_some() {
            self.ended.push_back(Ended::Subscription(handle));
            self.left.push_back(handle);
        }
    }

    /// Removes a participant by id (the secret checked by the caller).
    pub fn kick(&mut self, id: ParticipantId) -> Result<Value, RoomError> {
        if !self.participants.contains_key(&id) {
            return Err(RoomError::new(
                RoomErrorCode::NoSuchFeed,
                format!("No such user {} in room {}", id.0, self.id),
            ));
        }
        self.remove_participant(id, Departure::Kicked);
        Ok(json!({ "videoroom": "success" }))
    }

    /// Ends the room: everyone learns `destroyed`, every PeerConnection ends.
    pub fn destroy(&mut self) {
        let event = json!({ "videoroom": "destroyed", "room": self.id.to_json() });
        self.broadcast(None, event);
        let participants: Vec<Participant> = std::mem::take(&mut self.participants)
            .into_values()
            .collect();
        for participant in participants {
            if participant.published {
                self.ended.push_back(Ended::Publisher(participant.handle));
            }
        }
        self.by_handle.clear();
        let mut subscribers: Vec<HandleKey> = self.subscribers.drain().map(|(h, _)| h).collect();
        subscribers.sort();
        for handle in subscribers {
            self.ended.push_back(Ended::Subscription(handle));
            self.left.push_back(handle);
        }
    }

    /// `listparticipants`.
    pub fn participants_json(&self) -> Value {
        let participants: Vec<Value> = self
            .participants
            .iter()
            .map(|(id, p)| {
                let mut entry =
                    json!({ "id": id.0, "publisher": p.published, "talking": p.talking });
                if let Some(display) = &p.display {
                    entry["display"] = display.as_str().into();
                }
                entry
            })
            .collect();
        json!({ "videoroom": "participants", "room": self.id.to_json(), "participants": participants })
    }

    /// One entry of `list`.
    pub fn summary_json(&self) -> Value {
        json!({
            "room": self.id.to_json(),
            "description": self.settings.description,
            "pin_required": self.settings.pin.is_some(),
            "is_private": self.settings.is_private,
            "max_publishers": self.settings.max_publishers,
            "num_participants": self.participants.len(),
            "audiocodec": "opus",
            "videocodec": "vp8",
        })
    }

    fn publishers_json(&self, except: Option<ParticipantId>) -> Vec<Value> {
        self.participants
            .iter()
            .filter(|(id, p)| p.published && Some(**id) != except)
            .map(|(id, _)| self.publisher_json(*id))
            .collect()
    }

    fn publisher_json(&self, id: ParticipantId) -> Value {
        let participant = &self.participants[&id];
        let mut entry = json!({
            "id": id.0,
            "audio_codec": "opus",
            "video_codec": "vp8",
            "simulcast": false,
            "talking": participant.talking,
        });
        if let Some(display) = &participant.display {
            entry["display"] = display.as_str().into();
        }
        entry
    }

    /// A feed stops: its subscribers' subscriptions lose it (and end if it was their only
    /// one), the others learn `unpublished`.
    fn end_feed(&mut self, id: ParticipantId) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        if !participant.published {
            return;
        }
        participant.published = false;
        participant.talking = false;
        let mut emptied: Vec<HandleKey> = Vec::new();
        for (handle, subscriber) in self.subscribers.iter_mut() {
            if subscriber.feeds.contains(&id) {
                subscriber.feeds.retain(|f| *f != id);
                if subscriber.feeds.is_empty() {
                    emptied.push(*handle);
                }
            }
        }
        emptied.sort();
        for handle in emptied {
            self.subscribers.remove(&handle);
            self.ended.push_back(Ended::Subscription(handle));
            self.left.push_back(handle);
        }
        let event = json!({ "videoroom": "event", "room": self.id.to_json(), "unpublished": id.0 });
        self.broadcast(Some(id), event);
    }

    fn remove_participant(&mut self, id: ParticipantId, why: Departure) {
        let Some(participant) = self.participants.get(&id) else {
            return;
        };
        let handle = participant.handle;
        if participant.published {
            self.end_feed(id);
            self.ended.push_back(Ended::Publisher(handle));
        }
        let participant = self.participants.remove(&id).expect("present");
        self.by_handle.remove(&handle);
        self.left.push_back(handle);
        let mut event = json!({ "videoroom": "event", "room": self.id.to_json() });
        match why {
            Departure::Kicked => event["kicked"] = id.0.into(),
            Departure::Left | Departure::Gone | Departure::Replaced => {
                event["leaving"] = id.0.into();
                if let Some(display) = &participant.display {
                    event["display"] = display.as_str().into();
                }
            }
        }
        self.broadcast(None, event);
        // The one who goes is told why, unless its handle is already gone.
        let told = match why {
            Departure::Kicked => Some(
                json!({ "videoroom": "event", "room": self.id.to_json(), "leaving": "ok", "reason": "kicked" }),
            ),
            Departure::Replaced => Some(
                json!({ "videoroom": "event", "room": self.id.to_json(), "leaving": "ok", "reason": "replaced" }),
            ),
            Departure::Left | Departure::Gone => None,
        };
        if let Some(data) = told {
            self.events.push_back(RoomEvent { to: handle, data });
        }
    }

    /// Queues `data` for every participant's handle except `except`'s, in id order.
    fn broadcast(&mut self, except: Option<ParticipantId>, data: Value) {
        for (id, participant) in &self.participants {
            if Some(*id) == except {
                continue;
            }
            self.events.push_back(RoomEvent {
                to: participant.handle,
                data: data.clone(),
            });
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Departure {
    Left,
    Gone,
    Kicked,
    Replaced,
}

fn participant_json(id: ParticipantId, display: Option<&str>) -> Value {
    let mut entry = json!({ "id": id.0 });
    if let Some(display) = display {
        entry["display"] = display.into();
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> HandleKey {
        HandleKey {
            session: SessionId(n),
            handle: HandleId(n * 10),
        }
    }

    fn events(room: &mut Room) -> Vec<(HandleKey, Value)> {
        std::iter::from_fn(|| room.poll_event())
            .map(|e| (e.to, e.data))
            .collect()
    }

    fn quickblox_room() -> Room {
        Room::new(
            RoomId::Str("dialog".into()),
            RoomSettings::on_demand(String::new(), 12),
        )
    }

    #[test]
    fn joined_lists_only_the_other_active_publishers() {
        let mut room = quickblox_room();
        room.join(
            key(1),
            ParticipantId(7),
            Some("Alice".into()),
            None,
            true,
            1,
        )
        .unwrap();
        room.join(
            key(2),
            ParticipantId(99),
            Some("Other".into()),
            None,
            true,
            2,
        )
        .unwrap();
        assert!(room.publisher_up(key(2)));
        // Alice hears of 99's feed; 99 does not hear of itself.
        assert_eq!(
            events(&mut room),
            vec![(
                key(1),
                json!({"videoroom":"event","room":"dialog","publishers":[{"id":99,"display":"Other","audio_codec":"opus","video_codec":"vp8","simulcast":false,"talking":false}]})
            )]
        );
        let joined = room
            .join(key(3), ParticipantId(5), None, None, true, 3)
            .unwrap();
        let publishers = joined["publishers"].as_array().unwrap();
        assert_eq!(publishers.len(), 1, "Alice has not published: only 99");
        assert_eq!(publishers[0]["id"], 99);
        assert_eq!(joined["room"], "dialog");
        assert_eq!(joined["id"], 5);
    }

    #[test]
    fn a_publisher_leaving_ends_its_subscriptions_and_tells_everyone() {
        let mut room = quickblox_room();
        room.join(key(1), ParticipantId(7), None, None, true, 1)
            .unwrap();
        room.join(
            key(2),
            ParticipantId(99),
            Some("Other".into()),
            None,
            true,
            2,
        )
        .unwrap();
        room.publisher_up(key(2));
        events(&mut room);
        let attached = room.subscribe(key(4), &[ParticipantId(99)], None).unwrap();
        assert_eq!(
            attached,
            json!({"videoroom":"attached","room":"dialog","id":99,"display":"Other"})
        );
        assert_eq!(
            room.leave(key(2)).unwrap(),
            json!({"videoroom":"event","leaving":"ok"})
        );
        assert_eq!(
            events(&mut room),
            vec![
                (
                    key(1),
                    json!({"videoroom":"event","room":"dialog","unpublished":99})
                ),
                (
                    key(1),
                    json!({"videoroom":"event","room":"dialog","leaving":99,"display":"Other"})
                ),
            ]
        );
        let ended: Vec<Ended> = std::iter::from_fn(|| room.poll_ended()).collect();
        assert_eq!(
            ended,
            vec![Ended::Subscription(key(4)), Ended::Publisher(key(2))]
        );
        assert!(!room.is_subscriber(key(4)));
        room.handle_gone(key(1));
        assert!(room.is_empty());
    }

    #[test]
    fn refusals() {
        let mut room = Room::new(
            RoomId::Num(1234),
            RoomSettings::from_create(&CreateRoom {
                pin: Some("p".into()),
                publishers: Some(1),
                ..CreateRoom::default()
            }),
        );
        assert_eq!(
            room.join(key(1), ParticipantId(1), None, None, true, 1)
                .unwrap_err()
                .code,
            RoomErrorCode::Unauthorized
        );
        room.join(key(1), ParticipantId(1), None, Some("p"), true, 1)
            .unwrap();
        assert_eq!(
            room.join(key(1), ParticipantId(2), None, Some("p"), true, 1)
                .unwrap_err()
                .code,
            RoomErrorCode::AlreadyJoined
        );
        assert_eq!(
            room.join(key(2), ParticipantId(1), None, Some("p"), true, 1)
                .unwrap_err()
                .code,
            RoomErrorCode::IdExists
        );
        room.join(key(2), ParticipantId(2), None, Some("p"), true, 2)
            .unwrap();
        room.may_publish(key(1)).unwrap();
        room.publisher_up(key(1));
        assert_eq!(
            room.may_publish(key(2)).unwrap_err().code,
            RoomErrorCode::PublishersFull
        );
        assert_eq!(
            room.subscribe(key(5), &[ParticipantId(2)], Some("p"))
                .unwrap_err()
                .code,
            RoomErrorCode::NoSuchFeed
        );
        assert_eq!(
            room.unpublish(key(2)).unwrap_err().code,
            RoomErrorCode::NotPublished
        );
        assert_eq!(
            room.may_publish(key(9)).unwrap_err().code,
            RoomErrorCode::JoinFirst
        );
        assert!(room.check_secret(None).is_ok());
    }

    #[test]
    fn the_same_user_joining_again_replaces_the_stale_one() {
        let mut room = quickblox_room();
        room.join(key(1), ParticipantId(7), None, None, true, 1)
            .unwrap();
        room.join(key(2), ParticipantId(8), None, None, true, 2)
            .unwrap();
        room.publisher_up(key(1));
        events(&mut room);
        room.join(key(3), ParticipantId(7), None, None, true, 3)
            .unwrap();
        let sent = events(&mut room);
        assert!(sent.contains(&(
            key(2),
            json!({"videoroom":"event","room":"dialog","unpublished":7})
        )));
        assert!(sent.contains(&(
            key(1),
            json!({"videoroom":"event","room":"dialog","leaving":"ok","reason":"replaced"})
        )));
        assert_eq!(room.participant_of(key(3)), Some(ParticipantId(7)));
        assert_eq!(room.participant_of(key(1)), None);
    }

    #[test]
    fn talking_is_announced_on_changes_only() {
        let mut room = quickblox_room();
        room.join(key(1), ParticipantId(7), None, None, true, 1)
            .unwrap();
        room.join(key(2), ParticipantId(8), None, None, false, 2)
            .unwrap();
        room.talking(ParticipantId(7), true, 20);
        room.talking(ParticipantId(7), true, 18);
        room.talking(ParticipantId(7), false, 90);
        let sent = events(&mut room);
        let kinds: Vec<&str> = sent
            .iter()
            .filter(|(to, _)| *to == key(2))
            .map(|(_, e)| e["videoroom"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["talking", "stopped-talking"]);
        assert_eq!(sent[0].1["audio-level-dBov-avg"], 20);
    }

    #[test]
    fn a_new_display_name_is_announced() {
        let mut room = quickblox_room();
        room.join(key(1), ParticipantId(7), Some("A".into()), None, true, 1)
            .unwrap();
        room.join(key(2), ParticipantId(8), None, None, true, 2)
            .unwrap();
        room.set_display(key(1), "Alice".into());
        assert_eq!(
            events(&mut room),
            vec![(
                key(2),
                json!({"videoroom":"event","room":"dialog","id":7,"display":"Alice"})
            )]
        );
        let listed = room.participants_json();
        assert_eq!(listed["participants"][0]["display"], "Alice");
    }

    #[test]
    fn kick_and_destroy() {
        let mut room = Room::new(
            RoomId::Num(1),
            RoomSettings::from_create(&CreateRoom {
                secret: Some("s".into()),
                ..CreateRoom::default()
            }),
        );
        room.join(key(1), ParticipantId(1), None, None, true, 1)
            .unwrap();
        room.join(key(2), ParticipantId(2), None, None, false, 2)
            .unwrap();
        assert!(room.check_secret(Some("x")).is_err());
        room.kick(ParticipantId(1)).unwrap();
        let sent = events(&mut room);
        assert_eq!(
            sent[0],
            (key(2), json!({"videoroom":"event","room":1,"kicked":1}))
        );
        assert_eq!(sent[1].0, key(1));
        room.destroy();
        assert_eq!(
            events(&mut room),
            vec![(key(2), json!({"videoroom":"destroyed","room":1}))]
        );
        assert!(room.is_empty());
    }
}
