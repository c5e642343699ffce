//! I/O-free conference SFU core for Switchboard.
//!
//! Like `xmpp-proto`, nothing in here touches a socket, a clock or a random number generator:
//! the shell (`src/sfu` of the server) feeds parsed requests, received packets and the time in,
//! and sends what comes out.
//!
//! The modules, one job each:
//! - [`janus`]: the Janus core API (requests parsed into types with Janus's error codes, the
//!   replies and events, the registry of sessions and handles with their timeouts);
//! - [`videoroom`]: the VideoRoom plugin's requests and errors, and the signalling state of a
//!   room (participants, publishers, subscriptions, the events each change sends);
//! - [`media`]: the PeerConnections of a room on str0m (RTP-mode forwarding, keyframe
//!   requests, talking detection, per-subscriber numbering).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod janus;
pub mod media;
pub mod videoroom;
