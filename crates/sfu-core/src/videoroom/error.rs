//! VideoRoom plugin errors: data inside a `success` or an `event`
//! (`{"videoroom":"event","error_code":426,"error":"No such room (1234)"}`), not core errors.

use serde_json::{json, Value};

/// A VideoRoom error code (`janus_videoroom.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RoomErrorCode {
    /// 421: no message.
    NoMessage,
    /// 422: invalid JSON.
    InvalidJson,
    /// 423: unknown or invalid request.
    InvalidRequest,
    /// 424: join first.
    JoinFirst,
    /// 425: already joined.
    AlreadyJoined,
    /// 426: no such room.
    NoSuchRoom,
    /// 427: the room exists.
    RoomExists,
    /// 428: no such feed.
    NoSuchFeed,
    /// 429: a missing element.
    MissingElement,
    /// 430: an element of the wrong type or value.
    InvalidElement,
    /// 431: an SDP of the wrong type.
    InvalidSdpType,
    /// 432: the room has as many publishers as it takes.
    PublishersFull,
    /// 433: not allowed (wrong secret, pin or token; publishing as someone else).
    Unauthorized,
    /// 434: already publishing.
    AlreadyPublished,
    /// 435: not publishing.
    NotPublished,
    /// 436: the participant id is taken.
    IdExists,
    /// 437: an SDP that cannot be used.
    InvalidSdp,
    /// 499: anything else.
    Unknown,
}

impl RoomErrorCode {
    /// The number on the wire.
    pub fn code(self) -> u16 {
        match self {
            RoomErrorCode::NoMessage => 421,
            RoomErrorCode::InvalidJson => 422,
            RoomErrorCode::InvalidRequest => 423,
            RoomErrorCode::JoinFirst => 424,
            RoomErrorCode::AlreadyJoined => 425,
            RoomErrorCode::NoSuchRoom => 426,
            RoomErrorCode::RoomExists => 427,
            RoomErrorCode::NoSuchFeed => 428,
            RoomErrorCode::MissingElement => 429,
            RoomErrorCode::InvalidElement => 430,
            RoomErrorCode::InvalidSdpType => 431,
            RoomErrorCode::PublishersFull => 432,
            RoomErrorCode::Unauthorized => 433,
            RoomErrorCode::AlreadyPublished => 434,
            RoomErrorCode::NotPublished => 435,
            RoomErrorCode::IdExists => 436,
            RoomErrorCode::InvalidSdp => 437,
            RoomErrorCode::Unknown => 499,
        }
    }
}

/// A VideoRoom request's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {reason}", code.code())]
pub struct RoomError {
    /// The code.
    pub code: RoomErrorCode,
    /// Shown to the client (the QuickBlox client emits it as its `error` event).
    pub reason: String,
}

impl RoomError {
    /// An error with this code and reason.
    pub fn new(code: RoomErrorCode, reason: impl Into<String>) -> RoomError {
        RoomError {
            code,
            reason: reason.into(),
        }
    }

    /// 429 naming the element.
    pub fn missing(element: &str) -> RoomError {
        RoomError::new(
            RoomErrorCode::MissingElement,
            format!("Missing element ({element})"),
        )
    }

    /// 430 naming the element and what it should be.
    pub fn invalid(element: &str, should_be: &str) -> RoomError {
        RoomError::new(
            RoomErrorCode::InvalidElement,
            format!("Invalid element type ({element} should be {should_be})"),
        )
    }

    /// The plugin data object carrying this error.
    pub fn to_data(&self) -> Value {
        json!({ "videoroom": "event", "error_code": self.code.code(), "error": self.reason })
    }
}
