//! Janus sessions and handles: who owns which, when they expire, and which requests reach the
//! plugin. Sans-IO: the shell passes `now` and fresh random ids in, sends the replies it gets
//! back on the transport the request came from, and forwards plugin calls to the plugin.
//!
//! Driving contract:
//! - [`Sessions::handle_request`] for every parsed request, with the transport it came on;
//! - [`Sessions::poll_timeout`] for the next expiry, then [`Sessions::handle_timeout`] at that
//!   time: each expired session gets a `timeout` event and its handles go to the plugin as gone;
//! - [`Sessions::transport_closed`] when a WebSocket closes: Janus ends the sessions made on
//!   it (the QuickBlox client closes the socket without `destroy` on page unload).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::error::{ErrorCode, JanusError};
use super::reply;
use super::request::{Incoming, Jsep, Request, Scope, TrickleCandidate};

/// Ids janus.js keeps exactly: JavaScript numbers hold integers up to 2^53.
const ID_MASK: u64 = (1 << 53) - 1;

/// A Janus session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// A plugin handle id (unique within the server, as in Janus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandleId(pub u64);

/// A transport connection (one WebSocket, or the HTTP transport's session queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportId(pub u64);

/// Limits of the registry.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// A session without any request for this long expires (Janus's `session_timeout`, 60 s).
    pub timeout: Duration,
    /// Most sessions at once; `create` beyond gets 472.
    pub max_sessions: usize,
    /// Most handles in one session (the QuickBlox client makes one per remote feed, so a
    /// 12-person room needs 12).
    pub max_handles_per_session: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            timeout: Duration::from_secs(60),
            max_sessions: 100_000,
            max_handles_per_session: 64,
        }
    }
}

/// What the plugin must do for a request (the registry has checked session and handle).
#[derive(Debug, Clone, PartialEq)]
pub enum PluginCall {
    /// A `message`: the plugin answers synchronously or with `ack` + event.
    Message {
        /// Its session.
        session: SessionId,
        /// Its handle.
        handle: HandleId,
        /// To echo.
        transaction: String,
        /// The plugin request.
        body: Map<String, Value>,
        /// Its SDP, if any.
        jsep: Option<Jsep>,
    },
    /// Candidates for the handle's PeerConnection (the client already got its `ack`).
    Trickle {
        /// Its session.
        session: SessionId,
        /// Its handle.
        handle: HandleId,
        /// The candidates.
        candidates: Vec<TrickleCandidate>,
    },
    /// The handle's PeerConnection ends (`hangup`), the handle stays.
    Hangup {
        /// Its session.
        session: SessionId,
        /// Its handle.
        handle: HandleId,
    },
    /// The handle is gone (detached, its session destroyed, expired or its transport closed):
    /// the plugin releases everything it held for it.
    Gone {
        /// Its session.
        session: SessionId,
        /// Its handle.
        handle: HandleId,
    },
}

/// The outcome of one request.
#[derive(Debug, Default)]
pub struct Handled {
    /// Sent back on the transport the request came from, if any (a plugin `message` is
    /// answered by the plugin).
    pub reply: Option<Value>,
    /// Work for the plugin, in order.
    pub plugin: Vec<PluginCall>,
}

/// A session that expired.
#[derive(Debug)]
pub struct Expired {
    /// Which.
    pub session: SessionId,
    /// The transport to send its `timeout` event on.
    pub transport: TransportId,
    /// `{"janus":"timeout"}`.
    pub event: Value,
    /// Its handles, gone.
    pub plugin: Vec<PluginCall>,
}

/// The registry. `O` is who owns a session (the authenticated user, or `()` when there is
/// no authentication): a session can only be claimed by its owner.
#[derive(Debug)]
pub struct Sessions<O> {
    config: SessionConfig,
    sessions: HashMap<SessionId, Session<O>>,
    handle_owner: HashMap<HandleId, SessionId>,
    /// The sessions whose events go to each transport (so a closed socket or an HTTP queue
    /// finds its sessions without a walk over all of them).
    by_transport: HashMap<TransportId, HashSet<SessionId>>,
}

#[derive(Debug)]
struct Session<O> {
    owner: O,
    transport: TransportId,
    last_seen: Instant,
    handles: HashMap<HandleId, Handle>,
}

/// What the registry keeps for a handle.
#[derive(Debug, Clone)]
pub struct Handle {
    /// The plugin it is attached to.
    pub plugin: String,
    /// The client's grouping id.
    pub opaque_id: Option<String>,
}

impl<O: Clone + PartialEq> Sessions<O> {
    /// An empty registry.
    pub fn new(config: SessionConfig) -> Sessions<O> {
        Sessions {
            config,
            sessions: HashMap::new(),
            handle_owner: HashMap::new(),
            by_transport: HashMap::new(),
        }
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Whether `session` exists and is owned by `transport`.
    pub fn session_transport(&self, session: SessionId) -> Option<TransportId> {
        self.sessions.get(&session).map(|s| s.transport)
    }

    /// The owner of a session.
    pub fn owner(&self, session: SessionId) -> Option<&O> {
        self.sessions.get(&session).map(|s| &s.owner)
    }

    /// Handles one request from `transport`, authenticated as `owner`. `fresh_id` gives
    /// random numbers for new ids (called until one is free).
    pub fn handle_request(
        &mut self,
        now: Instant,
        transport: TransportId,
        owner: &O,
        incoming: Incoming,
        mut fresh_id: impl FnMut() -> u64,
    ) -> Handled {
        let Incoming {
            transaction,
            session_id,
            handle_id,
            request,
        } = incoming;
        let fail = |error: JanusError| Handled {
            reply: Some(reply::error(Some(&transaction), session_id, &error)),
            plugin: Vec::new(),
        };
        let verb = request.verb();
        let misplaced = || {
            JanusError::new(
                ErrorCode::InvalidRequestPath,
                format!("Unhandled request '{verb}' at this path"),
            )
        };
        // Server-level verbs take no session; the others need theirs (and a handle for
        // handle-level ones) to exist.
        let session = match (request.scope(), session_id) {
            (Scope::Server, Some(_)) => return fail(misplaced()),
            (Scope::Server, None) => None,
            (_, None) => return fail(misplaced()),
            (_, Some(id)) => {
                let id = SessionId(id);
                if !self.sessions.contains_key(&id) {
                    return fail(JanusError::new(
                        ErrorCode::SessionNotFound,
                        format!("No such session {}", id.0),
                    ));
                }
                Some(id)
            }
        };
        if let Some(id) = session {
            let state = self.sessions.get_mut(&id).expect("checked above");
            if state.owner != *owner {
                // Someone else's session: as if it did not exist.
                return fail(JanusError::new(
                    ErrorCode::SessionNotFound,
                    format!("No such session {}", id.0),
                ));
            }
            state.last_seen = now;
        }
        let handle = match (request.scope(), handle_id) {
            (Scope::Handle, None) => return fail(misplaced()),
            (Scope::Handle, Some(h)) => {
                let session = session.expect("handle scope has a session");
                let known = self.sessions[&session].handles.contains_key(&HandleId(h));
                if !known {
                    return fail(JanusError::new(
                        ErrorCode::HandleNotFound,
                        format!("No such handle {h} in session {}", session.0),
                    ));
                }
                Some(HandleId(h))
            }
            (_, Some(_)) => return fail(misplaced()),
            (_, None) => None,
        };
        match request {
            Request::Create { id } => {
                self.create(now, transport, owner, &transaction, id, &mut fresh_id)
            }
            Request::Info => Handled {
                reply: Some(reply::server_info(
                    &transaction,
                    self.config.timeout.as_secs(),
                )),
                plugin: Vec::new(),
            },
            Request::Ping => Handled {
                reply: Some(json!({"janus": "pong", "transaction": transaction})),
                plugin: Vec::new(),
            },
            Request::Attach { plugin, opaque_id } => {
                let session = session.expect("session scope");
                self.attach(session, &transaction, plugin, opaque_id, &mut fresh_id)
            }
            Request::Keepalive => Handled {
                reply: Some(reply::ack(&transaction, session.map(|s| s.0))),
                plugin: Vec::new(),
            },
            Request::Claim => {
                let session = session.expect("session scope");
                let state = self.sessions.get_mut(&session).expect("checked above");
                let previous = std::mem::replace(&mut state.transport, transport);
                self.unindex(previous, session);
                self.by_transport
                    .entry(transport)
                    .or_default()
                    .insert(session);
                Handled {
                    reply: Some(reply::success(&transaction, Some(session.0), None)),
                    plugin: Vec::new(),
                }
            }
            Request::Destroy => {
                let session = session.expect("session scope");
                let plugin = self.remove_session(session);
                Handled {
                    reply: Some(reply::success(&transaction, Some(session.0), None)),
                    plugin,
                }
            }
            Request::Detach => {
                let (session, handle) = (session.expect("scope"), handle.expect("scope"));
                self.sessions
                    .get_mut(&session)
                    .expect("checked above")
                    .handles
                    .remove(&handle);
                self.handle_owner.remove(&handle);
                Handled {
                    reply: Some(reply::success(&transaction, Some(session.0), None)),
                    plugin: vec![PluginCall::Gone { session, handle }],
                }
            }
            Request::Hangup => {
                let (session, handle) = (session.expect("scope"), handle.expect("scope"));
                Handled {
                    reply: Some(reply::success(&transaction, Some(session.0), None)),
                    plugin: vec![PluginCall::Hangup { session, handle }],
                }
            }
            Request::Trickle(candidates) => {
                let (session, handle) = (session.expect("scope"), handle.expect("scope"));
                Handled {
                    reply: Some(reply::ack(&transaction, Some(session.0))),
                    plugin: vec![PluginCall::Trickle {
                        session,
                        handle,
                        candidates,
                    }],
                }
            }
            Request::Message { body, jsep } => Handled {
                reply: None,
                plugin: vec![PluginCall::Message {
                    session: session.expect("scope"),
                    handle: handle.expect("scope"),
                    transaction,
                    body,
                    jsep,
                }],
            },
        }
    }

    /// When the next session may expire.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions
            .values()
            .map(|s| s.last_seen + self.config.timeout)
            .min()
    }

    /// Expires the sessions idle for the timeout at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Expired> {
        let timeout = self.config.timeout;
        let mut expired: Vec<(SessionId, TransportId)> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_seen) >= timeout)
            .map(|(id, s)| (*id, s.transport))
            .collect();
        expired.sort();
        expired
            .into_iter()
            .map(|(session, transport)| Expired {
                session,
                transport,
                event: reply::timeout(session.0),
                plugin: self.remove_session(session),
            })
            .collect()
    }

    /// Records activity on `session` that is not a request (an HTTP long poll).
    pub fn touch(&mut self, now: Instant, session: SessionId) -> bool {
        match self.sessions.get_mut(&session) {
            Some(state) => {
                state.last_seen = now;
                true
            }
            None => false,
        }
    }

    /// Ends the sessions whose transport closed; their handles go to the plugin as gone.
    pub fn transport_closed(&mut self, transport: TransportId) -> Vec<PluginCall> {
        let mut closed: Vec<SessionId> = self
            .by_transport
            .remove(&transport)
            .map(|sessions| sessions.into_iter().collect())
            .unwrap_or_default();
        closed.sort();
        closed
            .into_iter()
            .flat_map(|session| self.remove_session(session))
            .collect()
    }

    /// Whether any session's events go to `transport`.
    pub fn any_on(&self, transport: TransportId) -> bool {
        self.by_transport.contains_key(&transport)
    }

    fn unindex(&mut self, transport: TransportId, session: SessionId) {
        if let Some(sessions) = self.by_transport.get_mut(&transport) {
            sessions.remove(&session);
            if sessions.is_empty() {
                self.by_transport.remove(&transport);
            }
        }
    }

    /// The session a handle belongs to.
    pub fn session_of(&self, handle: HandleId) -> Option<SessionId> {
        self.handle_owner.get(&handle).copied()
    }

    fn create(
        &mut self,
        now: Instant,
        transport: TransportId,
        owner: &O,
        transaction: &str,
        requested: Option<u64>,
        fresh_id: &mut impl FnMut() -> u64,
    ) -> Handled {
        if self.sessions.len() >= self.config.max_sessions {
            let error = JanusError::new(ErrorCode::NotAcceptingSessions, "Too many sessions");
            return Handled {
                reply: Some(reply::error(Some(transaction), None, &error)),
                plugin: Vec::new(),
            };
        }
        let id = match requested {
            Some(id) if id == 0 || id > ID_MASK => {
                let error = JanusError::wrong_type("id", "a positive integer below 2^53");
                return Handled {
                    reply: Some(reply::error(Some(transaction), None, &error)),
                    plugin: Vec::new(),
                };
            }
            Some(id) if self.sessions.contains_key(&SessionId(id)) => {
                let error = JanusError::new(
                    ErrorCode::SessionConflict,
                    format!("Session ID already in use: {id}"),
                );
                return Handled {
                    reply: Some(reply::error(Some(transaction), None, &error)),
                    plugin: Vec::new(),
                };
            }
            Some(id) => SessionId(id),
            None => {
                SessionId(self.free_id(fresh_id, |s, id| s.sessions.contains_key(&SessionId(id))))
            }
        };
        self.sessions.insert(
            id,
            Session {
                owner: owner.clone(),
                transport,
                last_seen: now,
                handles: HashMap::new(),
            },
        );
        self.by_transport.entry(transport).or_default().insert(id);
        Handled {
            reply: Some(reply::success(
                transaction,
                None,
                Some(json!({ "id": id.0 })),
            )),
            plugin: Vec::new(),
        }
    }

    fn attach(
        &mut self,
        session: SessionId,
        transaction: &str,
        plugin: String,
        opaque_id: Option<String>,
        fresh_id: &mut impl FnMut() -> u64,
    ) -> Handled {
        if plugin != reply::VIDEOROOM {
            let error = JanusError::new(
                ErrorCode::PluginNotFound,
                format!(
                    "No such plugin '{}'",
                    plugin.chars().take(64).collect::<String>()
                ),
            );
            return Handled {
                reply: Some(reply::error(Some(transaction), Some(session.0), &error)),
                plugin: Vec::new(),
            };
        }
        if self.sessions[&session].handles.len() >= self.config.max_handles_per_session {
            let error =
                JanusError::new(ErrorCode::PluginAttach, "Too many handles in this session");
            return Handled {
                reply: Some(reply::error(Some(transaction), Some(session.0), &error)),
                plugin: Vec::new(),
            };
        }
        let id =
            HandleId(self.free_id(fresh_id, |s, id| s.handle_owner.contains_key(&HandleId(id))));
        self.handle_owner.insert(id, session);
        self.sessions
            .get_mut(&session)
            .expect("checked by the caller")
            .handles
            .insert(id, Handle { plugin, opaque_id });
        Handled {
            reply: Some(reply::success(
                transaction,
                Some(session.0),
                Some(json!({ "id": id.0 })),
            )),
            plugin: Vec::new(),
        }
    }

    fn free_id(
        &self,
        fresh_id: &mut impl FnMut() -> u64,
        taken: impl Fn(&Self, u64) -> bool,
    ) -> u64 {
        loop {
            let id = fresh_id() & ID_MASK;
            if id != 0 && !taken(self, id) {
                return id;
            }
        }
    }

    fn remove_session(&mut self, session: SessionId) -> Vec<PluginCall> {
        let Some(state) = self.sessions.remove(&session) else {
            return Vec::new();
        };
        self.unindex(state.transport, session);
        let mut handles: Vec<HandleId> = state.handles.into_keys().collect();
        handles.sort();
        handles
            .into_iter()
            .map(|handle| {
                self.handle_owner.remove(&handle);
                PluginCall::Gone { session, handle }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::parse;
    use super::*;

    /// The tests' time zero: any instant will do, time only moves by adding to it.
    #[allow(clippy::disallowed_methods)]
    fn epoch() -> Instant {
        Instant::now()
    }

    struct Ids(u64);
    impl Ids {
        fn next(&mut self) -> u64 {
            self.0 += 1;
            self.0
        }
    }

    fn request(
        sessions: &mut Sessions<u32>,
        now: Instant,
        owner: u32,
        text: &str,
        ids: &mut Ids,
    ) -> Handled {
        let incoming = parse(text).expect("valid request");
        sessions.handle_request(now, TransportId(1), &owner, incoming, || ids.next())
    }

    fn code(handled: &Handled) -> Option<u64> {
        handled.reply.as_ref()?["error"]["code"].as_u64()
    }

    #[test]
    fn create_attach_message_detach_destroy() {
        let mut s = Sessions::new(SessionConfig::default());
        let mut ids = Ids(100);
        let now = epoch();
        let created = request(
            &mut s,
            now,
            7,
            r#"{"janus":"create","transaction":"a"}"#,
            &mut ids,
        );
        let reply = created.reply.unwrap();
        assert_eq!(reply["janus"], "success");
        assert_eq!(reply["transaction"], "a");
        let sid = reply["data"]["id"].as_u64().unwrap();
        let attached = request(
            &mut s,
            now,
            7,
            &format!(
                r#"{{"janus":"attach","plugin":"janus.plugin.videoroom","transaction":"b","session_id":{sid}}}"#
            ),
            &mut ids,
        );
        let reply = attached.reply.unwrap();
        assert_eq!(reply["session_id"], sid);
        let hid = reply["data"]["id"].as_u64().unwrap();
        let message = request(
            &mut s,
            now,
            7,
            &format!(
                r#"{{"janus":"message","body":{{"request":"list"}},"transaction":"c","session_id":{sid},"handle_id":{hid}}}"#
            ),
            &mut ids,
        );
        assert!(message.reply.is_none());
        assert!(
            matches!(&message.plugin[..], [PluginCall::Message { transaction, .. }] if transaction == "c")
        );
        let detached = request(
            &mut s,
            now,
            7,
            &format!(
                r#"{{"janus":"detach","transaction":"d","session_id":{sid},"handle_id":{hid}}}"#
            ),
            &mut ids,
        );
        assert_eq!(
            detached.plugin,
            vec![PluginCall::Gone {
                session: SessionId(sid),
                handle: HandleId(hid)
            }]
        );
        let again = request(
            &mut s,
            now,
            7,
            &format!(
                r#"{{"janus":"detach","transaction":"e","session_id":{sid},"handle_id":{hid}}}"#
            ),
            &mut ids,
        );
        assert_eq!(code(&again), Some(459));
        let destroyed = request(
            &mut s,
            now,
            7,
            &format!(r#"{{"janus":"destroy","transaction":"f","session_id":{sid}}}"#),
            &mut ids,
        );
        let reply = destroyed.reply.unwrap();
        assert_eq!(
            (reply["session_id"].as_u64(), reply["transaction"].as_str()),
            (Some(sid), Some("f"))
        );
        assert!(s.is_empty());
    }

    #[test]
    fn wrong_paths_unknown_ids_and_other_owners() {
        let mut s = Sessions::new(SessionConfig::default());
        let mut ids = Ids(0);
        let now = epoch();
        let attach_nowhere = request(
            &mut s,
            now,
            1,
            r#"{"janus":"attach","plugin":"janus.plugin.videoroom","transaction":"t"}"#,
            &mut ids,
        );
        assert_eq!(code(&attach_nowhere), Some(457));
        let unknown = request(
            &mut s,
            now,
            1,
            r#"{"janus":"keepalive","transaction":"t","session_id":99}"#,
            &mut ids,
        );
        assert_eq!(code(&unknown), Some(458));
        let sid = request(
            &mut s,
            now,
            1,
            r#"{"janus":"create","transaction":"t"}"#,
            &mut ids,
        )
        .reply
        .unwrap()["data"]["id"]
            .as_u64()
            .unwrap();
        let stolen = request(
            &mut s,
            now,
            2,
            &format!(r#"{{"janus":"keepalive","transaction":"t","session_id":{sid}}}"#),
            &mut ids,
        );
        assert_eq!(
            code(&stolen),
            Some(458),
            "another user's session does not exist for them"
        );
        let no_plugin = request(
            &mut s,
            now,
            1,
            &format!(
                r#"{{"janus":"attach","plugin":"janus.plugin.echotest","transaction":"t","session_id":{sid}}}"#
            ),
            &mut ids,
        );
        assert_eq!(code(&no_plugin), Some(460));
        let no_handle = request(
            &mut s,
            now,
            1,
            &format!(r#"{{"janus":"message","body":{{}},"transaction":"t","session_id":{sid}}}"#),
            &mut ids,
        );
        assert_eq!(code(&no_handle), Some(457));
        let taken = request(
            &mut s,
            now,
            1,
            &format!(r#"{{"janus":"create","id":{sid},"transaction":"t"}}"#),
            &mut ids,
        );
        assert_eq!(code(&taken), Some(468));
    }

    #[test]
    fn idle_sessions_expire_and_keepalives_keep_them() {
        let config = SessionConfig {
            timeout: Duration::from_secs(60),
            ..SessionConfig::default()
        };
        let mut s = Sessions::new(config);
        let mut ids = Ids(0);
        let start = epoch();
        let a = request(
            &mut s,
            start,
            1,
            r#"{"janus":"create","transaction":"t"}"#,
            &mut ids,
        )
        .reply
        .unwrap()["data"]["id"]
            .as_u64()
            .unwrap();
        let b = request(
            &mut s,
            start,
            1,
            r#"{"janus":"create","transaction":"t"}"#,
            &mut ids,
        )
        .reply
        .unwrap()["data"]["id"]
            .as_u64()
            .unwrap();
        let h = request(&mut s, start, 1, &format!(r#"{{"janus":"attach","plugin":"janus.plugin.videoroom","transaction":"t","session_id":{b}}}"#), &mut ids).reply.unwrap()["data"]["id"].as_u64().unwrap();
        let later = start + Duration::from_secs(40);
        let kept = request(
            &mut s,
            later,
            1,
            &format!(r#"{{"janus":"keepalive","transaction":"k","session_id":{a}}}"#),
            &mut ids,
        );
        assert_eq!(kept.reply.unwrap()["janus"], "ack");
        assert_eq!(s.poll_timeout(), Some(start + Duration::from_secs(60)));
        assert!(s.handle_timeout(start + Duration::from_secs(59)).is_empty());
        let expired = s.handle_timeout(start + Duration::from_secs(60));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].session, SessionId(b));
        assert_eq!(expired[0].event["janus"], "timeout");
        assert_eq!(
            expired[0].plugin,
            vec![PluginCall::Gone {
                session: SessionId(b),
                handle: HandleId(h)
            }]
        );
        assert_eq!(s.poll_timeout(), Some(later + Duration::from_secs(60)));
    }

    #[test]
    fn a_closed_transport_ends_its_sessions() {
        let mut s: Sessions<()> = Sessions::new(SessionConfig::default());
        let mut ids = Ids(0);
        let now = epoch();
        for transport in [1, 2] {
            let create = parse(r#"{"janus":"create","transaction":"t"}"#).unwrap();
            s.handle_request(now, TransportId(transport), &(), create, || ids.next());
        }
        assert_eq!(s.len(), 2);
        s.transport_closed(TransportId(1));
        assert_eq!(s.len(), 1);
        assert!(!s.any_on(TransportId(1)) && s.any_on(TransportId(2)));
    }
}
