//! The Janus core API: requests parsed into types ([`request`]), their errors ([`error`]), the
//! messages the server sends ([`reply`]) and the registry of sessions and handles
//! ([`sessions`]).

pub mod error;
pub mod reply;
pub mod request;
pub mod sessions;

pub use error::{ErrorCode, JanusError};
pub use request::{parse, Incoming, Jsep, JsepKind, Request, TrickleCandidate};
pub use sessions::{HandleId, PluginCall, SessionConfig, SessionId, Sessions, TransportId};
