//! Janus core requests, parsed from one JSON text into types (Janus API, "RESTful, WebSockets,
//! RabbitMQ, MQTT, Nanomsg and UnixSockets API" page of janus-gateway's `mainpage.dox`).
//!
//! The checks run in Janus's order so a client sees the same error code for the same mistake:
//! the JSON itself (454/455), `transaction` (456/467), `janus` (456/467), then the fields of the
//! verb. Whether a session or handle exists, and whether the verb is allowed at its path (457),
//! is the registry's business ([`crate::janus::sessions`]).

use serde_json::{Map, Value};

use super::error::{ErrorCode, JanusError};

/// The largest JSON text a client may send: an SDP with many candidates is a few KiB; this
/// leaves room for any real one while bounding what one request can cost.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// One parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// Echoed on every reply.
    pub transaction: String,
    /// The session it addresses (from the body over WebSocket, from the path over HTTP).
    pub session_id: Option<u64>,
    /// The handle it addresses.
    pub handle_id: Option<u64>,
    /// What it asks for.
    pub request: Request,
}

/// The core verbs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Request {
    /// A new session, with the id the client chose if it chose one.
    Create {
        /// The client's choice of session id.
        id: Option<u64>,
    },
    /// A new handle on a plugin.
    Attach {
        /// The plugin's package name, e.g. `janus.plugin.videoroom`.
        plugin: String,
        /// An opaque id the client groups its handles by.
        opaque_id: Option<String>,
    },
    /// A message for the handle's plugin.
    Message {
        /// The plugin request (a JSON object, parsed by the plugin).
        body: Map<String, Value>,
        /// An SDP offer or answer.
        jsep: Option<Jsep>,
    },
    /// ICE candidates for the handle's PeerConnection.
    Trickle(Vec<TrickleCandidate>),
    /// Keeps the session alive.
    Keepalive,
    /// Ends a handle.
    Detach,
    /// Ends a handle's PeerConnection, keeps the handle.
    Hangup,
    /// Ends a session and its handles.
    Destroy,
    /// Moves a session to this transport.
    Claim,
    /// The server's description.
    Info,
    /// Answered with `pong`.
    Ping,
}

impl Request {
    /// The verb, as on the wire.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Create { .. } => "create",
            Request::Attach { .. } => "attach",
            Request::Message { .. } => "message",
            Request::Trickle(_) => "trickle",
            Request::Keepalive => "keepalive",
            Request::Detach => "detach",
            Request::Hangup => "hangup",
            Request::Destroy => "destroy",
            Request::Claim => "claim",
            Request::Info => "info",
            Request::Ping => "ping",
        }
    }

    /// What the request must address.
    pub fn scope(&self) -> Scope {
        match self {
            Request::Create { .. } | Request::Info | Request::Ping => Scope::Server,
            Request::Attach { .. } | Request::Keepalive | Request::Destroy | Request::Claim => {
                Scope::Session
            }
            Request::Message { .. } | Request::Trickle(_) | Request::Detach | Request::Hangup => {
                Scope::Handle
            }
        }
    }
}

/// Where a verb is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The server itself (no session).
    Server,
    /// A session.
    Session,
    /// A handle of a session.
    Handle,
}

/// An SDP offer or answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jsep {
    /// Offer or answer.
    pub kind: JsepKind,
    /// The SDP text.
    pub sdp: String,
    /// Janus's `trickle:false`: the SDP already holds every candidate.
    pub trickle: bool,
    /// The client restarts ICE with this offer.
    pub restart: bool,
}

/// The `type` of a JSEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsepKind {
    /// `offer`.
    Offer,
    /// `answer`.
    Answer,
}

impl JsepKind {
    /// As on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            JsepKind::Offer => "offer",
            JsepKind::Answer => "answer",
        }
    }
}

/// One trickled candidate, or the end of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrickleCandidate {
    /// A candidate line (`candidate:…`, with or without the `a=` prefix).
    Candidate {
        /// The SDP attribute value.
        candidate: String,
        /// The media section's mid, if given.
        sdp_mid: Option<String>,
        /// The media section's index, if given.
        sdp_mline_index: Option<u32>,
    },
    /// `{"completed":true}` or `null`: no more candidates.
    Completed,
}

/// Parses one request. On failure, the transaction (when it could be read) comes back with the
/// error so the reply can echo it.
pub fn parse(text: &str) -> Result<Incoming, (Option<String>, JanusError)> {
    if text.len() > MAX_REQUEST_BYTES {
        return Err((
            None,
            JanusError::new(ErrorCode::InvalidJson, "JSON error: request too large"),
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|error| {
        (
            None,
            JanusError::new(
                ErrorCode::InvalidJson,
                format!("JSON error: on line {}: {error}", error.line()),
            ),
        )
    })?;
    let Value::Object(mut root) = value else {
        return Err((
            None,
            JanusError::new(ErrorCode::InvalidJsonObject, "JSON error: not an object"),
        ));
    };
    let transaction = match root.remove("transaction") {
        None => return Err((None, JanusError::missing("transaction"))),
        Some(Value::String(t)) => t,
        Some(_) => return Err((None, JanusError::wrong_type("transaction", "a string"))),
    };
    parse_fields(&mut root)
        .map(|(session_id, handle_id, request)| Incoming {
            transaction: transaction.clone(),
            session_id,
            handle_id,
            request,
        })
        .map_err(|error| (Some(transaction), error))
}

type Fields = (Option<u64>, Option<u64>, Request);

fn parse_fields(root: &mut Map<String, Value>) -> Result<Fields, JanusError> {
    let verb = match root.remove("janus") {
        None => return Err(JanusError::missing("janus")),
        Some(Value::String(v)) => v,
        Some(_) => return Err(JanusError::wrong_type("janus", "a string")),
    };
    let session_id = id_field(root, "session_id")?;
    let handle_id = id_field(root, "handle_id")?;
    let request = match verb.as_str() {
        "create" => Request::Create {
            id: id_field(root, "id")?,
        },
        "attach" => Request::Attach {
            plugin: match root.remove("plugin") {
                None => return Err(JanusError::missing("plugin")),
                Some(Value::String(p)) => p,
                Some(_) => return Err(JanusError::wrong_type("plugin", "a string")),
            },
            opaque_id: match root.remove("opaque_id") {
                None | Some(Value::Null) => None,
                Some(Value::String(o)) => Some(o),
                Some(_) => return Err(JanusError::wrong_type("opaque_id", "a string")),
            },
        },
        "message" => {
            let body = match root.remove("body") {
                None => return Err(JanusError::missing("body")),
                Some(Value::Object(body)) => body,
                Some(_) => return Err(JanusError::wrong_type("body", "an object")),
            };
            let jsep = match root.remove("jsep") {
                None | Some(Value::Null) => None,
                Some(Value::Object(jsep)) => Some(parse_jsep(jsep)?),
                Some(_) => return Err(JanusError::wrong_type("jsep", "an object")),
            };
            Request::Message { body, jsep }
        }
        "trickle" => Request::Trickle(parse_trickle(root)?),
        "keepalive" => Request::Keepalive,
        "detach" => Request::Detach,
        "hangup" => Request::Hangup,
        "destroy" => Request::Destroy,
        "claim" => Request::Claim,
        "info" => Request::Info,
        "ping" => Request::Ping,
        other => {
            return Err(JanusError::new(
                ErrorCode::UnknownRequest,
                format!("Unknown request '{}'", truncate(other)),
            ))
        }
    };
    Ok((session_id, handle_id, request))
}

/// A session or handle id: a JSON integer (janus.js sends numbers; ids stay below 2^53).
fn id_field(root: &mut Map<String, Value>, name: &str) -> Result<Option<u64>, JanusError> {
    match root.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(id) => Ok(Some(id)),
            None => Err(JanusError::wrong_type(name, "a positive integer")),
        },
        Some(_) => Err(JanusError::wrong_type(name, "a positive integer")),
    }
}

fn parse_jsep(mut jsep: Map<String, Value>) -> Result<Jsep, JanusError> {
    let kind = match jsep.remove("type") {
        None => return Err(JanusError::missing("type")),
        Some(Value::String(t)) => match t.as_str() {
            "offer" => JsepKind::Offer,
            "answer" => JsepKind::Answer,
            other => {
                return Err(JanusError::new(
                    ErrorCode::JsepUnknownType,
                    format!("JSEP error: unknown message type '{}'", truncate(other)),
                ))
            }
        },
        Some(_) => return Err(JanusError::wrong_type("type", "a string")),
    };
    let sdp = match jsep.remove("sdp") {
        None => return Err(JanusError::missing("sdp")),
        Some(Value::String(sdp)) => sdp,
        Some(_) => return Err(JanusError::wrong_type("sdp", "a string")),
    };
    let flag = |jsep: &mut Map<String, Value>, name: &str, default: bool| match jsep.remove(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(b),
        Some(_) => Err(JanusError::wrong_type(name, "a boolean")),
    };
    let trickle = flag(&mut jsep, "trickle", true)?;
    let restart = flag(&mut jsep, "restart", false)?;
    Ok(Jsep {
        kind,
        sdp,
        trickle,
        restart,
    })
}

fn parse_trickle(root: &mut Map<String, Value>) -> Result<Vec<TrickleCandidate>, JanusError> {
    if let Some(candidate) = root.remove("candidate") {
        return Ok(vec![parse_candidate(candidate)?]);
    }
    match root.remove("candidates") {
        None => Err(JanusError::missing("candidate|candidates")),
        Some(Value::Array(list)) => list.into_iter().map(parse_candidate).collect(),
        Some(_) => Err(JanusError::wrong_type("candidates", "an array")),
    }
}

fn parse_candidate(value: Value) -> Result<TrickleCandidate, JanusError> {
    let mut fields = match value {
        Value::Null => return Ok(TrickleCandidate::Completed),
        Value::Object(fields) => fields,
        _ => return Err(JanusError::wrong_type("candidate", "an object")),
    };
    if let Some(Value::Bool(true)) = fields.get("completed") {
        return Ok(TrickleCandidate::Completed);
    }
    let candidate = match fields.remove("candidate") {
        None => return Err(JanusError::missing("candidate")),
        Some(Value::String(c)) => c,
        Some(_) => return Err(JanusError::wrong_type("candidate", "a string")),
    };
    let sdp_mid = match fields.remove("sdpMid") {
        None | Some(Value::Null) => None,
        Some(Value::String(mid)) => Some(mid),
        Some(_) => return Err(JanusError::wrong_type("sdpMid", "a string")),
    };
    let sdp_mline_index = match fields.remove("sdpMLineIndex") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(index) => Some(index),
            None => return Err(JanusError::wrong_type("sdpMLineIndex", "an integer")),
        },
        Some(_) => return Err(JanusError::wrong_type("sdpMLineIndex", "an integer")),
    };
    Ok(TrickleCandidate::Candidate {
        candidate,
        sdp_mid,
        sdp_mline_index,
    })
}

/// Client text echoed in an error, cut so an error cannot be made arbitrarily large.
fn truncate(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> (Option<String>, u16) {
        let (transaction, error) = parse(text).expect_err("an error");
        (transaction, error.code.code())
    }

    #[test]
    fn the_quickblox_client_requests_parse() {
        let create = parse(r#"{"janus":"create","transaction":"abc"}"#).unwrap();
        assert_eq!(create.request, Request::Create { id: None });
        assert_eq!(create.transaction, "abc");
        let attach = parse(
            r#"{"janus":"attach","plugin":"janus.plugin.videoroom","transaction":"t","session_id":12}"#,
        )
        .unwrap();
        assert_eq!(attach.session_id, Some(12));
        assert_eq!(attach.request.scope(), Scope::Session);
        let message = parse(
            r#"{"janus":"message","body":{"request":"configure","audio":true},"jsep":{"type":"offer","sdp":"v=0\r\n"},"transaction":"t","session_id":1,"handle_id":2}"#,
        )
        .unwrap();
        let Request::Message { body, jsep } = message.request else {
            panic!("a message")
        };
        assert_eq!(body["request"], "configure");
        let jsep = jsep.unwrap();
        assert_eq!(jsep.kind, JsepKind::Offer);
        assert!(jsep.trickle && !jsep.restart);
        let trickle = parse(
            r#"{"janus":"trickle","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0},"transaction":"t","session_id":1,"handle_id":2}"#,
        )
        .unwrap();
        assert!(
            matches!(&trickle.request, Request::Trickle(c) if matches!(&c[0], TrickleCandidate::Candidate { sdp_mline_index: Some(0), .. }))
        );
        let done = parse(
            r#"{"janus":"trickle","candidate":{"completed":true},"transaction":"t","session_id":1,"handle_id":2}"#,
        )
        .unwrap();
        assert_eq!(
            done.request,
            Request::Trickle(vec![TrickleCandidate::Completed])
        );
    }

    #[test]
    fn mistakes_get_the_codes_janus_gives() {
        assert_eq!(error_of("{not json"), (None, 454));
        assert_eq!(error_of("[1,2]"), (None, 455));
        assert_eq!(error_of(r#"{"janus":"create"}"#), (None, 456));
        assert_eq!(
            error_of(r#"{"janus":"create","transaction":5}"#),
            (None, 467)
        );
        assert_eq!(error_of(r#"{"transaction":"t"}"#), (Some("t".into()), 456));
        assert_eq!(
            error_of(r#"{"janus":7,"transaction":"t"}"#),
            (Some("t".into()), 467)
        );
        assert_eq!(
            error_of(r#"{"janus":"fly","transaction":"t"}"#),
            (Some("t".into()), 453)
        );
        assert_eq!(
            error_of(r#"{"janus":"attach","transaction":"t","session_id":1}"#).1,
            456
        );
        assert_eq!(
            error_of(r#"{"janus":"keepalive","transaction":"t","session_id":"1"}"#).1,
            467
        );
        assert_eq!(
            error_of(r#"{"janus":"keepalive","transaction":"t","session_id":-1}"#).1,
            467
        );
        assert_eq!(error_of(r#"{"janus":"message","transaction":"t"}"#).1, 456);
        assert_eq!(
            error_of(r#"{"janus":"message","body":[],"transaction":"t"}"#).1,
            467
        );
        assert_eq!(
            error_of(r#"{"janus":"message","body":{},"jsep":{"type":"pranswer","sdp":""},"transaction":"t"}"#).1,
            464
        );
        assert_eq!(
            error_of(r#"{"janus":"message","body":{},"jsep":{"type":"offer"},"transaction":"t"}"#)
                .1,
            456
        );
        assert_eq!(error_of(r#"{"janus":"trickle","transaction":"t"}"#).1, 456);
    }

    #[test]
    fn echoed_client_text_is_bounded() {
        let verb = "x".repeat(10_000);
        let (_, error) = parse(&format!(r#"{{"janus":"{verb}","transaction":"t"}}"#)).unwrap_err();
        assert!(error.reason.len() < 100);
        let huge = format!(
            r#"{{"janus":"create","transaction":"{}"}}"#,
            "t".repeat(MAX_REQUEST_BYTES)
        );
        assert_eq!(parse(&huge).unwrap_err().1.code, ErrorCode::InvalidJson);
    }
}
