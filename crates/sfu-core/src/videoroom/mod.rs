//! The VideoRoom plugin: its requests ([`request`]), its errors ([`error`]) and the signalling
//! state of a room ([`room`]).

pub mod error;
pub mod request;
pub mod room;

pub use error::{RoomError, RoomErrorCode};
pub use request::{
    parse, Configure, CreateRoom, Join, ParticipantId, RoomId, RoomRequest, StreamChoice,
};
pub use room::{Ended, HandleKey, Room, RoomEvent, RoomSettings};
