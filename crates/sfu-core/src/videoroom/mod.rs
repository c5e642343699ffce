//! The VideoRoom plugin: its requests ([`request`]), its errors ([`error`]).

pub mod error;
pub mod request;

pub use error::{RoomError, RoomErrorCode};
pub use request::{
    parse, Configure, CreateRoom, Join, ParticipantId, RoomId, RoomRequest, StreamChoice,
};
