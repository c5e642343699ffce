//! The messages the server sends: replies to requests (`success`, `ack`, `error`,
//! `server_info`, `pong`) and events (`event`, `webrtcup`, `media`, `slowlink`, `hangup`,
//! `detached`, `trickle`, `timeout`). janus.js routes events by `sender` (the handle id) and
//! matches replies by `transaction`, so both are always present where Janus puts them.

use serde_json::{json, Map, Value};

use super::error::JanusError;
use super::request::JsepKind;

/// The VideoRoom plugin's package name.
pub const VIDEOROOM: &str = "janus.plugin.videoroom";

/// `{"janus":"success"}` for a session-scoped request, with `data` if any.
pub fn success(transaction: &str, session_id: Option<u64>, data: Option<Value>) -> Value {
    let mut reply = Map::new();
    reply.insert("janus".into(), "success".into());
    if let Some(session) = session_id {
        reply.insert("session_id".into(), session.into());
    }
    reply.insert("transaction".into(), transaction.into());
    if let Some(data) = data {
        reply.insert("data".into(), data);
    }
    Value::Object(reply)
}

/// `{"janus":"success"}` carrying a plugin's synchronous answer.
pub fn plugin_success(transaction: &str, session_id: u64, handle_id: u64, data: Value) -> Value {
    json!({
        "janus": "success",
        "session_id": session_id,
        "sender": handle_id,
        "transaction": transaction,
        "plugindata": { "plugin": VIDEOROOM, "data": data },
    })
}

/// `{"janus":"ack"}`: accepted, the answer follows as an event.
pub fn ack(transaction: &str, session_id: Option<u64>) -> Value {
    let mut reply = Map::new();
    reply.insert("janus".into(), "ack".into());
    if let Some(session) = session_id {
        reply.insert("session_id".into(), session.into());
    }
    reply.insert("transaction".into(), transaction.into());
    Value::Object(reply)
}

/// `{"janus":"error"}` with `code` and `reason`.
pub fn error(transaction: Option<&str>, session_id: Option<u64>, error: &JanusError) -> Value {
    let mut reply = Map::new();
    reply.insert("janus".into(), "error".into());
    if let Some(session) = session_id {
        reply.insert("session_id".into(), session.into());
    }
    if let Some(transaction) = transaction {
        reply.insert("transaction".into(), transaction.into());
    }
    reply.insert(
        "error".into(),
        json!({ "code": error.code.code(), "reason": error.reason }),
    );
    Value::Object(reply)
}

/// A plugin event for a handle; `transaction` when it answers a request.
pub fn event(
    session_id: u64,
    handle_id: u64,
    transaction: Option<&str>,
    data: Value,
    jsep: Option<(JsepKind, &str, bool)>,
) -> Value {
    let mut reply = Map::new();
    reply.insert("janus".into(), "event".into());
    reply.insert("session_id".into(), session_id.into());
    reply.insert("sender".into(), handle_id.into());
    if let Some(transaction) = transaction {
        reply.insert("transaction".into(), transaction.into());
    }
    reply.insert(
        "plugindata".into(),
        json!({ "plugin": VIDEOROOM, "data": data }),
    );
    if let Some((kind, sdp, restart)) = jsep {
        let mut jsep = json!({ "type": kind.as_str(), "sdp": sdp });
        if restart {
            jsep["restart"] = true.into();
        }
        reply.insert("jsep".into(), jsep);
    }
    Value::Object(reply)
}

/// A core event about a handle (`webrtcup`, `hangup`, `detached`, `media`, `slowlink`, …),
/// with its extra fields.
pub fn handle_event(kind: &str, session_id: u64, handle_id: u64, extra: Value) -> Value {
    let mut reply = Map::new();
    reply.insert("janus".into(), kind.into());
    reply.insert("session_id".into(), session_id.into());
    reply.insert("sender".into(), handle_id.into());
    if let Value::Object(extra) = extra {
        reply.extend(extra);
    }
    Value::Object(reply)
}

/// `{"janus":"timeout"}`: the session expired.
pub fn timeout(session_id: u64) -> Value {
    json!({ "janus": "timeout", "session_id": session_id })
}

/// `{"janus":"server_info"}` for `info`.
pub fn server_info(transaction: &str, session_timeout_s: u64) -> Value {
    json!({
        "janus": "server_info",
        "transaction": transaction,
        "name": "Switchboard",
        "version": 1102,
        "version_string": "1.1.2",
        "author": "Switchboard",
        "data_channels": false,
        "ipv6": false,
        "ice-lite": true,
        "ice-tcp": false,
        "full-trickle": true,
        "session-timeout": session_timeout_s,
        "transports": {
            "janus.transport.websockets": { "name": "JANUS WebSockets transport" },
            "janus.transport.http": { "name": "JANUS REST (HTTP/HTTPS) transport" },
        },
        "plugins": {
            VIDEOROOM: { "name": "JANUS VideoRoom plugin", "version": 9, "version_string": "0.0.9" },
        },
    })
}
