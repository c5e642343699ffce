//! I/O-free XMPP core for Switchboard.
//!
//! Like `quinn-proto` or `str0m`, nothing in here touches a socket, a clock or a random number
//! generator: the shell feeds received bytes in and gets typed events out, so every scenario
//! can be driven and replayed by tests.
//!
//! The modules, one job each:
//! - [`jid`]: XMPP addresses (RFC 7622, pragmatic subset) as types that cannot be wrong
//!   ([`BareJid`], [`FullJid`], [`Jid`]) and the QuickBlox node form `{userId}-{appId}`
//!   ([`QbNode`]);
//! - [`xml`]: a strict, incremental, zero-DOM tokenizer for XMPP streams over TCP (RFC 6120)
//!   and WebSocket (RFC 7395) that hands out each stanza as its exact received bytes plus a
//!   typed envelope ([`StreamParser`], [`Stanza`]), with errors that name their stream error
//!   condition ([`XmlError`]), and a minimal tree ([`Element`]) for payloads a handler claims;
//! - [`c2s`]: the client stream state machine (headers, STARTTLS, SASL, binding, stream
//!   management, client state, rate limit, idle timeout), driven with `handle_*`/`poll_*`;
//! - [`shaper`]: the stanza budget that slows a client before it closes it;
//! - [`sasl`]: SASL PLAIN; [`sm`]: XEP-0198 counters and the unacknowledged queue;
//!   [`csi`]: XEP-0352 holding of stanzas for an inactive client;
//! - [`errors`]: stream and stanza error conditions with their wire form;
//! - [`subscription`]: the RFC 6121 presence subscription state machine (Appendix A, both
//!   sides, plus both local rosters at once: [`subscription::between_local`]);
//! - [`delivery`]: where a message for a local account goes among its resources
//!   (RFC 6121 §8.5, with the QuickBlox choices marked: [`delivery::route_message`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod c2s;
pub mod csi;
pub mod delivery;
pub mod errors;
pub mod jid;
pub mod sasl;
pub mod shaper;
pub mod sm;
pub mod subscription;
pub mod xml;

pub use jid::{BareJid, FullJid, Jid, JidError, JidPart, QbNode, QbNodeError};
pub use xml::{
    escape_attr, escape_text, unescape, Element, Envelope, Event, Framing, IqType, Limits, Node,
    PresenceType, Stanza, StanzaKind, StreamHeader, StreamParser, XmlError,
};
