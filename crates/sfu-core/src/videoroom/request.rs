//! VideoRoom requests (the `body` of a Janus `message`), parsed into types. Janus's checks and
//! wording: 429 for a missing element, 430 for a wrong type, 423 for an unknown request.
//!
//! Room ids may be numbers (stock Janus) or strings (QuickBlox: the dialog id) in the same
//! server; participant ids are always numbers (the QuickBlox user id), which stock Janus's
//! all-or-nothing `string_ids` cannot do.

use std::fmt;

use serde_json::{Map, Value};

use super::error::{RoomError, RoomErrorCode};

/// A room id: a number or a string, answered in the type it was given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoomId {
    /// A numeric room (stock Janus).
    Num(u64),
    /// A string room (QuickBlox: the dialog id).
    Str(String),
}

impl RoomId {
    /// As JSON, in its own type.
    pub fn to_json(&self) -> Value {
        match self {
            RoomId::Num(n) => Value::from(*n),
            RoomId::Str(s) => Value::from(s.as_str()),
        }
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomId::Num(n) => write!(f, "{n}"),
            RoomId::Str(s) => f.write_str(s),
        }
    }
}

/// A participant (publisher) id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

/// Longest string element kept (displays, descriptions, secrets): enough for any real one.
const MAX_TEXT: usize = 256;

/// A VideoRoom request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RoomRequest {
    /// Makes a room.
    Create(CreateRoom),
    /// Ends a room and tells its participants.
    Destroy {
        /// Which.
        room: RoomId,
        /// The room's secret, if it has one.
        secret: Option<String>,
    },
    /// Whether a room exists.
    Exists {
        /// Which.
        room: RoomId,
    },
    /// The public rooms.
    List,
    /// The participants of a room.
    ListParticipants {
        /// Which.
        room: RoomId,
    },
    /// Removes a participant.
    Kick {
        /// Which room.
        room: RoomId,
        /// Whom.
        id: ParticipantId,
        /// The room's secret, if it has one.
        secret: Option<String>,
    },
    /// Joins as a publisher, a subscriber to one or more feeds, or a passive participant.
    Join(Join),
    /// Joins as a publisher and configures at once (with an offer).
    JoinAndConfigure(Join, Configure),
    /// Changes what a publisher sends or a subscriber receives; with an offer, (re)negotiates.
    Configure(Configure),
    /// Starts publishing (with an offer).
    Publish(Configure),
    /// Stops publishing.
    Unpublish,
    /// A subscriber's answer (with a JSEP) or the end of a pause.
    Start,
    /// Stops forwarding to a subscriber.
    Pause,
    /// Moves a single-feed subscription to another feed.
    Switch {
        /// The new feed.
        feed: ParticipantId,
    },
    /// Leaves the room (publisher) or ends the subscription.
    Leave,
    /// Adds feeds to a multistream subscription.
    Subscribe {
        /// The feeds.
        streams: Vec<StreamChoice>,
    },
    /// Removes feeds from a multistream subscription.
    Unsubscribe {
        /// The feeds.
        streams: Vec<StreamChoice>,
    },
    /// Adds and removes feeds in one renegotiation.
    Update {
        /// Added.
        subscribe: Vec<StreamChoice>,
        /// Removed.
        unsubscribe: Vec<StreamChoice>,
    },
}

impl RoomRequest {
    /// Whether Janus answers it in the same transaction (`success` + `plugindata`) rather
    /// than `ack` + event.
    pub fn is_synchronous(&self) -> bool {
        matches!(
            self,
            RoomRequest::Create(_)
                | RoomRequest::Destroy { .. }
                | RoomRequest::Exists { .. }
                | RoomRequest::List
                | RoomRequest::ListParticipants { .. }
                | RoomRequest::Kick { .. }
        )
    }

    /// The room it names, if any.
    pub fn room(&self) -> Option<&RoomId> {
        match self {
            RoomRequest::Create(create) => create.room.as_ref(),
            RoomRequest::Destroy { room, .. }
            | RoomRequest::Exists { room }
            | RoomRequest::ListParticipants { room }
            | RoomRequest::Kick { room, .. } => Some(room),
            RoomRequest::Join(join) | RoomRequest::JoinAndConfigure(join, _) => Some(join.room()),
            _ => None,
        }
    }
}

/// `create`'s settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateRoom {
    /// The id wanted; the server picks a number if absent.
    pub room: Option<RoomId>,
    /// Shown in `list`.
    pub description: Option<String>,
    /// Needed to destroy, edit or kick.
    pub secret: Option<String>,
    /// Needed to join.
    pub pin: Option<String>,
    /// Left out of `list`.
    pub is_private: bool,
    /// Most publishers at once.
    pub publishers: Option<u32>,
    /// Announce joins (`attendees`, `joining`).
    pub notify_joining: bool,
}

/// A `join`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// `ptype: publisher`.
    Publisher {
        /// The room.
        room: RoomId,
        /// The id wanted (QuickBlox: the user id).
        id: Option<ParticipantId>,
        /// The display name.
        display: Option<String>,
        /// The room's pin.
        pin: Option<String>,
    },
    /// `ptype: subscriber` with `feed` (legacy single-feed) or `streams` (multistream).
    Subscriber {
        /// The room.
        room: RoomId,
        /// The feeds.
        streams: Vec<StreamChoice>,
        /// Given as `streams` (Janus 1.x multistream) rather than the legacy `feed`.
        multistream: bool,
        /// The publisher `private_id` of the same user, if sent.
        private_id: Option<u64>,
        /// The room's pin.
        pin: Option<String>,
        /// Legacy `audio`/`video` switches.
        media: MediaSwitches,
    },
    /// `ptype: subscriber` without a feed on the main handle: the QuickBlox client's
    /// receive-only participant, which publishes nothing but gets the room's events.
    Passive {
        /// The room.
        room: RoomId,
        /// The id (QuickBlox: the user id).
        id: Option<ParticipantId>,
        /// The display name.
        display: Option<String>,
        /// The room's pin.
        pin: Option<String>,
    },
}

impl Join {
    /// The room joined.
    pub fn room(&self) -> &RoomId {
        match self {
            Join::Publisher { room, .. }
            | Join::Subscriber { room, .. }
            | Join::Passive { room, .. } => room,
        }
    }
}

/// One feed of a subscription (and optionally one of its streams).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamChoice {
    /// The publisher.
    pub feed: ParticipantId,
    /// One of its streams by mid; all of them if absent.
    pub mid: Option<String>,
}

/// Legacy `audio`/`video`/`data` switches of a subscription or a publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MediaSwitches {
    /// `audio`, if given.
    pub audio: Option<bool>,
    /// `video`, if given.
    pub video: Option<bool>,
}

/// `configure` / `publish` / the configure half of `joinandconfigure`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Configure {
    /// What to send or receive.
    pub media: MediaSwitches,
    /// A new display name.
    pub display: Option<String>,
    /// A bitrate cap (bits/s).
    pub bitrate: Option<u64>,
    /// A subscriber asks for an ICE restart (a new offer); on a publisher, only a hint.
    pub restart: bool,
    /// A pinned simulcast layer.
    pub substream: Option<u8>,
    /// A pinned temporal layer.
    pub temporal: Option<u8>,
}

/// Parses a `message` body.
pub fn parse(body: &Map<String, Value>) -> Result<RoomRequest, RoomError> {
    let request = match body.get("request") {
        None => return Err(RoomError::missing("request")),
        Some(Value::String(r)) => r.as_str(),
        Some(_) => return Err(RoomError::invalid("request", "a string")),
    };
    let fields = Fields(body);
    Ok(match request {
        "create" => RoomRequest::Create(CreateRoom {
            room: fields.room_opt()?,
            description: fields.text("description")?,
            secret: fields.text("secret")?,
            pin: fields.text("pin")?,
            is_private: fields.flag("is_private")?.unwrap_or(false),
            publishers: fields
                .uint("publishers")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            notify_joining: fields.flag("notify_joining")?.unwrap_or(false),
        }),
        "destroy" => RoomRequest::Destroy {
            room: fields.room()?,
            secret: fields.text("secret")?,
        },
        "exists" => RoomRequest::Exists {
            room: fields.room()?,
        },
        "list" => RoomRequest::List,
        "listparticipants" => RoomRequest::ListParticipants {
            room: fields.room()?,
        },
        "kick" => RoomRequest::Kick {
            room: fields.room()?,
            id: fields
                .participant("id")?
                .ok_or_else(|| RoomError::missing("id"))?,
            secret: fields.text("secret")?,
        },
        "join" => RoomRequest::Join(fields.join()?),
        "joinandconfigure" => {
            let join = fields.join()?;
            if !matches!(join, Join::Publisher { .. }) {
                return Err(RoomError::invalid("ptype", "publisher"));
            }
            RoomRequest::JoinAndConfigure(join, fields.configure()?)
        }
        "configure" => RoomRequest::Configure(fields.configure()?),
        "publish" => RoomRequest::Publish(fields.configure()?),
        "unpublish" => RoomRequest::Unpublish,
        "start" => RoomRequest::Start,
        "pause" => RoomRequest::Pause,
        "switch" => RoomRequest::Switch {
            feed: fields
                .participant("feed")?
                .ok_or_else(|| RoomError::missing("feed"))?,
        },
        "leave" => RoomRequest::Leave,
        "subscribe" => RoomRequest::Subscribe {
            streams: fields
                .streams("streams")?
                .ok_or_else(|| RoomError::missing("streams"))?,
        },
        "unsubscribe" => RoomRequest::Unsubscribe {
            streams: fields
                .streams("streams")?
                .ok_or_else(|| RoomError::missing("streams"))?,
        },
        "update" => {
            let subscribe = fields.streams("subscribe")?;
            let unsubscribe = fields.streams("unsubscribe")?;
            if subscribe.is_none() && unsubscribe.is_none() {
                return Err(RoomError::missing("subscribe|unsubscribe"));
            }
            RoomRequest::Update {
                subscribe: subscribe.unwrap_or_default(),
                unsubscribe: unsubscribe.unwrap_or_default(),
            }
        }
        other => {
            return Err(RoomError::new(
                RoomErrorCode::InvalidRequest,
                format!(
                    "Unknown request '{}'",
                    other.chars().take(64).collect::<String>()
                ),
            ))
        }
    })
}

struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn room(&self) -> Result<RoomId, RoomError> {
        self.room_opt()?.ok_or_else(|| RoomError::missing("room"))
    }

    fn room_opt(&self) -> Result<Option<RoomId>, RoomError> {
        match self.get("room") {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(id) if id > 0 => Ok(Some(RoomId::Num(id))),
                _ => Err(RoomError::invalid("room", "a positive integer or a string")),
            },
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_TEXT => {
                Ok(Some(RoomId::Str(s.clone())))
            }
            Some(_) => Err(RoomError::invalid("room", "a positive integer or a string")),
        }
    }

    fn participant(&self, name: &str) -> Result<Option<ParticipantId>, RoomError> {
        match self.uint(name)? {
            Some(0) => Err(RoomError::invalid(name, "a positive integer")),
            other => Ok(other.map(ParticipantId)),
        }
    }

    fn uint(&self, name: &str) -> Result<Option<u64>, RoomError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| RoomError::invalid(name, "a positive integer")),
            Some(_) => Err(RoomError::invalid(name, "a positive integer")),
        }
    }

    fn flag(&self, name: &str) -> Result<Option<bool>, RoomError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(RoomError::invalid(name, "a boolean")),
        }
    }

    fn text(&self, name: &str) -> Result<Option<String>, RoomError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.len() <= MAX_TEXT => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(RoomError::invalid(name, "a shorter string")),
            Some(_) => Err(RoomError::invalid(name, "a string")),
        }
    }

    fn layer(&self, name: &str) -> Result<Option<u8>, RoomError> {
        match self.uint(name)? {
            None => Ok(None),
            Some(n) if n <= 2 => Ok(Some(n as u8)),
            Some(_) => Err(RoomError::invalid(name, "0, 1 or 2")),
        }
    }

    fn media(&self) -> Result<MediaSwitches, RoomError> {
        Ok(MediaSwitches {
            audio: self.flag("audio")?,
            video: self.flag("video")?,
        })
    }

    fn streams(&self, name: &str) -> Result<Option<Vec<StreamChoice>>, RoomError> {
        let list = match self.get(name) {
            None => return Ok(None),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(RoomError::invalid(name, "an array")),
        };
        if list.len() > 64 {
            return Err(RoomError::invalid(name, "an array of at most 64 streams"));
        }
        list.iter()
            .map(|item| {
                let Value::Object(item) = item else {
                    return Err(RoomError::invalid(name, "an array of objects"));
                };
                let item = Fields(item);
                Ok(StreamChoice {
                    feed: item
                        .participant("feed")?
                        .ok_or_else(|| RoomError::missing("feed"))?,
                    mid: item.text("mid")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn join(&self) -> Result<Join, RoomError> {
        let room = self.room()?;
        let ptype = match self.get("ptype") {
            None => return Err(RoomError::missing("ptype")),
            Some(Value::String(p)) => p.as_str(),
            Some(_) => return Err(RoomError::invalid("ptype", "a string")),
        };
        let pin = self.text("pin")?;
        match ptype {
            "publisher" => Ok(Join::Publisher {
                room,
                id: self.participant("id")?,
                display: self.text("display")?,
                pin,
            }),
            "subscriber" | "listener" => {
                let (streams, multistream) =
                    match (self.participant("feed")?, self.streams("streams")?) {
                        (Some(feed), _) => (vec![StreamChoice { feed, mid: None }], false),
                        (None, Some(streams)) if !streams.is_empty() => (streams, true),
                        (None, _) => {
                            return Ok(Join::Passive {
                                room,
                                id: self.participant("id")?,
                                display: self.text("display")?,
                                pin,
                            })
                        }
                    };
                Ok(Join::Subscriber {
                    room,
                    streams,
                    multistream,
                    private_id: self.uint("private_id")?,
                    pin,
                    media: self.media()?,
                })
            }
            _ => Err(RoomError::invalid("ptype", "publisher or subscriber")),
        }
    }

    fn configure(&self) -> Result<Configure, RoomError> {
        Ok(Configure {
            media: self.media()?,
            display: self.text("display")?,
            bitrate: self.uint("bitrate")?,
            restart: self.flag("restart")?.unwrap_or(false),
            substream: self.layer("substream")?,
            temporal: self.layer("temporal")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_json(value: Value) -> Result<RoomRequest, RoomError> {
        let Value::Object(body) = value else {
            panic!("an object")
        };
        parse(&body)
    }

    #[test]
    fn the_quickblox_client_requests() {
        let join = parse_json(json!({"request":"join","room":"5f1e0c5a2b4d3e0012345678","ptype":"publisher","id":7,"display":"Alice"})).unwrap();
        assert_eq!(
            join,
            RoomRequest::Join(Join::Publisher {
                room: RoomId::Str("5f1e0c5a2b4d3e0012345678".into()),
                id: Some(ParticipantId(7)),
                display: Some("Alice".into()),
                pin: None
            })
        );
        let sub = parse_json(
            json!({"request":"join","room":"r","ptype":"subscriber","feed":99,"display":"Alice"}),
        )
        .unwrap();
        assert!(
            matches!(sub, RoomRequest::Join(Join::Subscriber { ref streams, .. }) if streams == &[StreamChoice { feed: ParticipantId(99), mid: None }])
        );
        let passive = parse_json(
            json!({"request":"join","room":"r","ptype":"subscriber","id":7,"display":"Bob"}),
        )
        .unwrap();
        assert!(matches!(
            passive,
            RoomRequest::Join(Join::Passive {
                id: Some(ParticipantId(7)),
                ..
            })
        ));
        let configure =
            parse_json(json!({"request":"configure","audio":true,"video":false,"restart":true}))
                .unwrap();
        assert_eq!(
            configure,
            RoomRequest::Configure(Configure {
                media: MediaSwitches {
                    audio: Some(true),
                    video: Some(false)
                },
                restart: true,
                ..Configure::default()
            })
        );
        assert!(parse_json(json!({"request":"listparticipants","room":"r"}))
            .unwrap()
            .is_synchronous());
        assert!(!parse_json(json!({"request":"start","room":"r"}))
            .unwrap()
            .is_synchronous());
        let numeric = parse_json(json!({"request":"exists","room":1234})).unwrap();
        assert_eq!(
            numeric,
            RoomRequest::Exists {
                room: RoomId::Num(1234)
            }
        );
    }

    #[test]
    fn mistakes_get_janus_codes() {
        let code = |v: Value| parse_json(v).unwrap_err().code.code();
        assert_eq!(code(json!({})), 429);
        assert_eq!(code(json!({"request": 5})), 430);
        assert_eq!(code(json!({"request": "rtp_dance"})), 423);
        assert_eq!(code(json!({"request": "join", "ptype": "publisher"})), 429);
        assert_eq!(code(json!({"request": "join", "room": 1})), 429);
        assert_eq!(
            code(json!({"request": "join", "room": 1, "ptype": "admin"})),
            430
        );
        assert_eq!(
            code(json!({"request": "join", "room": [1], "ptype": "publisher"})),
            430
        );
        assert_eq!(
            code(json!({"request": "join", "room": -3, "ptype": "publisher"})),
            430
        );
        assert_eq!(
            code(json!({"request": "join", "room": 1, "ptype": "publisher", "id": "7"})),
            430
        );
        assert_eq!(code(json!({"request": "configure", "substream": 3})), 430);
        assert_eq!(code(json!({"request": "switch"})), 429);
        assert_eq!(code(json!({"request": "kick", "room": 1})), 429);
        assert_eq!(code(json!({"request": "update"})), 429);
        assert_eq!(
            code(
                json!({"request": "join", "room": 1, "ptype": "publisher", "display": "x".repeat(1000)})
            ),
            430
        );
    }
}
