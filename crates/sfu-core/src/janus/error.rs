//! The Janus core error codes (`src/apierror.h` of janus-gateway) and the error a request gets.
//!
//! janus.js reads `error.code` and `error.reason` on every reply that is not a success, so an
//! error always carries both.

use std::fmt;

/// A Janus core error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 403: the request is not authorised (bad or missing token).
    Unauthorized,
    /// 405: the session may not use this plugin.
    UnauthorizedPlugin,
    /// 450: an error of the transport.
    TransportSpecific,
    /// 452: no request at all.
    MissingRequest,
    /// 453: a `janus` verb this server does not know.
    UnknownRequest,
    /// 454: the text is not JSON.
    InvalidJson,
    /// 455: the JSON is not an object.
    InvalidJsonObject,
    /// 456: a mandatory element is missing.
    MissingMandatoryElement,
    /// 457: an HTTP path that names nothing.
    InvalidRequestPath,
    /// 458: no such session.
    SessionNotFound,
    /// 459: no such handle.
    HandleNotFound,
    /// 460: no such plugin.
    PluginNotFound,
    /// 461: attaching to the plugin failed.
    PluginAttach,
    /// 462: the plugin refused the message.
    PluginMessage,
    /// 463: detaching from the plugin failed.
    PluginDetach,
    /// 464: a JSEP whose `type` is neither `offer` nor `answer`.
    JsepUnknownType,
    /// 465: a JSEP whose SDP cannot be used.
    JsepInvalidSdp,
    /// 466: a trickle candidate for a stream that does not exist.
    TrickleInvalidStream,
    /// 467: an element of the wrong JSON type.
    InvalidElementType,
    /// 468: a session id that is taken.
    SessionConflict,
    /// 469: an answer to an offer never made.
    UnexpectedAnswer,
    /// 470: the token is unknown.
    TokenNotFound,
    /// 471: the request does not fit the PeerConnection's state.
    WebrtcState,
    /// 472: the server takes no new sessions (shutting down, or at its limit).
    NotAcceptingSessions,
    /// 490: anything else.
    Unknown,
}

impl ErrorCode {
    /// The number on the wire.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 403,
            ErrorCode::UnauthorizedPlugin => 405,
            ErrorCode::TransportSpecific => 450,
            ErrorCode::MissingRequest => 452,
            ErrorCode::UnknownRequest => 453,
            ErrorCode::InvalidJson => 454,
            ErrorCode::InvalidJsonObject => 455,
            ErrorCode::MissingMandatoryElement => 456,
            ErrorCode::InvalidRequestPath => 457,
            ErrorCode::SessionNotFound => 458,
            ErrorCode::HandleNotFound => 459,
            ErrorCode::PluginNotFound => 460,
            ErrorCode::PluginAttach => 461,
            ErrorCode::PluginMessage => 462,
            ErrorCode::PluginDetach => 463,
            ErrorCode::JsepUnknownType => 464,
            ErrorCode::JsepInvalidSdp => 465,
            ErrorCode::TrickleInvalidStream => 466,
            ErrorCode::InvalidElementType => 467,
            ErrorCode::SessionConflict => 468,
            ErrorCode::UnexpectedAnswer => 469,
            ErrorCode::TokenNotFound => 470,
            ErrorCode::WebrtcState => 471,
            ErrorCode::NotAcceptingSessions => 472,
            ErrorCode::Unknown => 490,
        }
    }
}

/// A request's failure: its code and the reason shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct JanusError {
    /// The code.
    pub code: ErrorCode,
    /// Human-readable, in Janus's wording where there is one.
    pub reason: String,
}

impl JanusError {
    /// An error with this code and reason.
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> JanusError {
        JanusError {
            code,
            reason: reason.into(),
        }
    }

    /// 456 naming the missing element, as Janus words it.
    pub fn missing(element: &str) -> JanusError {
        JanusError::new(
            ErrorCode::MissingMandatoryElement,
            format!("Missing mandatory element ({element})"),
        )
    }

    /// 467 naming the element and the type it should have.
    pub fn wrong_type(element: &str, should_be: &str) -> JanusError {
        JanusError::new(
            ErrorCode::InvalidElementType,
            format!("Invalid element type ({element} should be {should_be})"),
        )
    }
}

impl fmt::Display for JanusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code.code(), self.reason)
    }
}
