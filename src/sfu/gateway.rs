//! The gateway: one task that owns the Janus sessions and handles ([`Sessions`]), the
//! transports their events go to, and the directory of rooms. Every request passes through it;
//! it answers what is its own (`create`, `attach`, `keepalive`, `list`, `exists`, `create`
//! of a room, …) and forwards the rest to the room task that owns the handle's room, after
//! sending the `ack` (so an ack always precedes its event on the transport: the QuickBlox
//! client records the room only when `join`'s ack arrives).
//!
//! Rooms are tasks of their own (`room.rs`); this task never waits on them or on the store,
//! so a busy room cannot slow the signalling of another.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;
use serde_json::{json, Value};
use sfu_core::janus::reply;
use sfu_core::janus::{
    parse, ErrorCode, HandleId, JanusError, PluginCall, SessionConfig, SessionId, Sessions,
    TransportId,
};
use sfu_core::videoroom::{
    self, HandleKey, RoomError, RoomErrorCode, RoomId, RoomRequest, RoomSettings,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::room::RoomInput;
use super::shard::RoomHandle;
use super::SfuContext;

/// Who is on the other end of a transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A QuickBlox user, by their session token.
    User {
        /// Their application.
        app: crate::model::AppId,
        /// Who.
        user: crate::model::UserId,
    },
    /// No token: stock Janus clients, numeric rooms only.
    Anonymous,
}

/// Events queued for one HTTP long-poll session at most; beyond, the oldest are dropped (a
/// client that stops polling loses events rather than the server's memory).
const HTTP_QUEUE: usize = 256;

/// What the gateway task is told.
pub enum GatewayInput {
    /// A WebSocket opened; its events go to `out`.
    Open {
        transport: TransportId,
        out: mpsc::Sender<Arc<str>>,
    },
    /// A WebSocket closed: its sessions end.
    Closed { transport: TransportId },
    /// A request over WebSocket.
    Request {
        transport: TransportId,
        owner: Principal,
        text: String,
    },
    /// A request over HTTP: the path's ids override the body's; the reply goes to `reply`.
    HttpRequest {
        owner: Principal,
        session: Option<u64>,
        handle: Option<u64>,
        text: String,
        reply: oneshot::Sender<Value>,
    },
    /// An HTTP long poll for a session's events.
    HttpPoll {
        owner: Principal,
        session: u64,
        max_events: usize,
        reply: PollReply,
    },
    /// A room's message for a handle's session (reply or event).
    Deliver { session: SessionId, message: Value },
    /// A handle is no longer in the room.
    LeftRoom { room: RoomId, key: HandleKey },
    /// A room has nobody left.
    RoomEmpty { room: RoomId },
    /// A room was destroyed (its task has ended).
    RoomDestroyed { room: RoomId },
}

/// Where a long poll's answer goes: its events, or an error reply.
pub type PollReply = oneshot::Sender<Result<Vec<Value>, Value>>;

enum Sink {
    Ws(mpsc::Sender<Arc<str>>),
    Http(HttpQueue),
}

#[derive(Default)]
struct HttpQueue {
    events: VecDeque<Value>,
    waiter: Option<(usize, PollReply)>,
}

struct RoomEntry {
    handle: RoomHandle,
    settings: RoomSettings,
    /// Handles joined to it (in `handle_room`), so freeing an empty room needs no scan.
    handles: usize,
}

/// The gateway's state.
pub struct Gateway {
    ctx: Arc<SfuContext>,
    sessions: Sessions<Principal>,
    sinks: HashMap<TransportId, Sink>,
    rooms: HashMap<RoomId, RoomEntry>,
    /// Which room each handle joined (the source of truth for freeing rooms).
    handle_room: HashMap<HandleId, RoomId>,
    /// HTTP POSTs waiting for a room's synchronous answer, by transport and transaction.
    pending_http: HashMap<(TransportId, String), oneshot::Sender<Value>>,
    next_transport: u64,
}

/// How often idle sessions are looked for.
const EXPIRY_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// HTTP transports get ids from the top of the range, WebSocket ones from the bottom.
const HTTP_TRANSPORTS: u64 = 1 << 62;

impl Gateway {
    pub fn new(ctx: Arc<SfuContext>) -> Gateway {
        let config = SessionConfig {
            timeout: std::time::Duration::from_secs(ctx.config.sfu.session_timeout_s.max(1)),
            ..SessionConfig::default()
        };
        Gateway {
            ctx,
            sessions: Sessions::new(config),
            sinks: HashMap::new(),
            rooms: HashMap::new(),
            handle_room: HashMap::new(),
            pending_http: HashMap::new(),
            next_transport: HTTP_TRANSPORTS,
        }
    }

    /// Runs until shutdown or until every sender is gone.
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<GatewayInput>,
        shutdown: CancellationToken,
    ) {
        // Expiry is checked once a second: a session timeout is a minute, and finding the
        // next deadline after every request would walk every session each time.
        let mut tick = tokio::time::interval(EXPIRY_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
                _ = tick.tick() => self.expire(Instant::now()),
                () = shutdown.cancelled() => break,
            }
        }
        // Rooms end with their senders; transports with theirs.
        self.rooms.clear();
        self.sinks.clear();
    }

    fn handle(&mut self, input: GatewayInput) {
        match input {
            GatewayInput::Open { transport, out } => {
                self.sinks.insert(transport, Sink::Ws(out));
            }
            GatewayInput::Closed { transport } => {
                self.sinks.remove(&transport);
                let calls = self.sessions.transport_closed(transport);
                self.plugin_calls(calls);
            }
            GatewayInput::Request {
                transport,
                owner,
                text,
            } => {
                let (reply, _) = self.request(transport, &owner, &text, None, None);
                if let Some(reply) = reply {
                    self.send(transport, reply);
                }
            }
            GatewayInput::HttpRequest {
                owner,
                session,
                handle,
                text,
                reply,
            } => {
                // A new session over HTTP gets its own event queue as its transport; any other
                // request uses the session's.
                let transport =
                    match session.and_then(|s| self.sessions.session_transport(SessionId(s))) {
                        Some(transport) => transport,
                        None => {
                            self.next_transport += 1;
                            TransportId(self.next_transport)
                        }
                    };
                // The queue exists before the request runs, so an event the request causes
                // (an `ack`-then-event failure) has somewhere to go.
                self.sinks
                    .entry(transport)
                    .or_insert_with(|| Sink::Http(HttpQueue::default()));
                let (answer, transaction) = self.request(transport, &owner, &text, session, handle);
                // Over HTTP the POST's response is the reply. A failure before a room (ack,
                // then the error event) left its ack in the queue: take it from there. A room
                // answering synchronously answers later: the POST waits for it.
                let answer = answer.or_else(|| self.take_ack(transport));
                match (answer, transaction) {
                    (Some(answer), _) => {
                        let _ = reply.send(answer);
                    }
                    (None, Some(transaction)) => {
                        self.pending_http.insert((transport, transaction), reply);
                    }
                    (None, None) => {}
                }
                self.pending_http.retain(|_, waiting| !waiting.is_closed());
                self.forget_http_transport(transport);
            }
            GatewayInput::HttpPoll {
                owner,
                session,
                max_events,
                reply,
            } => self.poll(owner, SessionId(session), max_events, reply),
            GatewayInput::Deliver { session, message } => {
                let Some(transport) = self.sessions.session_transport(session) else {
                    return;
                };
                // A room's synchronous answer to an HTTP request is that POST's response.
                if message["janus"] == "success" {
                    if let Some(transaction) = message["transaction"].as_str() {
                        if let Some(waiting) = self
                            .pending_http
                            .remove(&(transport, transaction.to_string()))
                        {
                            let _ = waiting.send(message);
                            return;
                        }
                    }
                }
                self.send(transport, message);
            }
            GatewayInput::LeftRoom { room, key } => {
                if self.handle_room.get(&key.handle) == Some(&room) {
                    self.unbind_handle(key.handle);
                }
            }
            GatewayInput::RoomEmpty { room } => self.maybe_free(&room),
            GatewayInput::RoomDestroyed { room } => {
                self.rooms.remove(&room);
                self.handle_room.retain(|_, r| *r != room);
            }
        }
    }

    /// Handles one request; returns the reply for the requesting transport, if any, and the
    /// request's transaction.
    fn request(
        &mut self,
        transport: TransportId,
        owner: &Principal,
        text: &str,
        path_session: Option<u64>,
        path_handle: Option<u64>,
    ) -> (Option<Value>, Option<String>) {
        let mut incoming = match parse(text) {
            Ok(incoming) => incoming,
            Err((transaction, error)) => {
                return (
                    Some(reply::error(transaction.as_deref(), path_session, &error)),
                    transaction,
                )
            }
        };
        if path_session.is_some() {
            incoming.session_id = path_session;
        }
        if path_handle.is_some() {
            incoming.handle_id = path_handle;
        }
        let transaction = incoming.transaction.clone();
        let mut rng = rand::thread_rng();
        let handled =
            self.sessions
                .handle_request(Instant::now(), transport, owner, incoming, || rng.gen());
        let mut reply = handled.reply;
        for call in handled.plugin {
            match call {
                PluginCall::Message {
                    session,
                    handle,
                    transaction,
                    body,
                    jsep,
                } => {
                    reply = self.plugin_message(owner, session, handle, transaction, body, jsep);
                }
                other => self.plugin_calls(vec![other]),
            }
        }
        (reply, Some(transaction))
    }

    /// Over HTTP, an asynchronous request that failed before reaching a room queued its `ack`
    /// with its error event: the ack is the POST's response, the event stays for the poll.
    fn take_ack(&mut self, transport: TransportId) -> Option<Value> {
        let Some(Sink::Http(queue)) = self.sinks.get_mut(&transport) else {
            return None;
        };
        let at = queue.events.iter().rposition(|e| e["janus"] == "ack")?;
        queue.events.remove(at)
    }

    /// A VideoRoom request on a handle: answered here (room directory) or forwarded.
    fn plugin_message(
        &mut self,
        owner: &Principal,
        session: SessionId,
        handle: HandleId,
        transaction: String,
        body: serde_json::Map<String, Value>,
        jsep: Option<sfu_core::janus::Jsep>,
    ) -> Option<Value> {
        let key = HandleKey { session, handle };
        let request = match videoroom::parse(&body) {
            Ok(request) => request,
            // Janus answers an invalid plugin request synchronously, even an asynchronous one.
            Err(error) => {
                return Some(reply::plugin_success(
                    &transaction,
                    session.0,
                    handle.0,
                    error.to_data(),
                ))
            }
        };
        let sync = request.is_synchronous();
        let answer = |data: Value| {
            Some(reply::plugin_success(
                &transaction,
                session.0,
                handle.0,
                data,
            ))
        };
        match &request {
            RoomRequest::List => {
                let mut list: Vec<Value> = self
                    .rooms
                    .iter()
                    .filter(|(_, entry)| !entry.settings.is_private)
                    .map(|(id, entry)| {
                        json!({
                            "room": id.to_json(),
                            "description": entry.settings.description,
                            "pin_required": entry.settings.pin.is_some(),
                            "max_publishers": entry.settings.max_publishers,
                            "num_participants": entry.handle.participants(),
                        })
                    })
                    .collect();
                list.sort_by(|a, b| a["room"].to_string().cmp(&b["room"].to_string()));
                return answer(json!({"videoroom": "success", "list": list}));
            }
            RoomRequest::Exists { room } => {
                return answer(
                    json!({"videoroom": "success", "room": room.to_json(), "exists": self.rooms.contains_key(room)}),
                );
            }
            RoomRequest::Create(create) => {
                if let Err(error) = self.may_create(create.room.as_ref()) {
                    return answer(error.to_data());
                }
                let room = match &create.room {
                    Some(room) if self.rooms.contains_key(room) => {
                        return answer(
                            RoomError::new(
                                RoomErrorCode::RoomExists,
                                format!("Room {room} already exists"),
                            )
                            .to_data(),
                        );
                    }
                    Some(room) => room.clone(),
                    None => loop {
                        let candidate = RoomId::Num(rand::thread_rng().gen_range(1..(1u64 << 53)));
                        if !self.rooms.contains_key(&candidate) {
                            break candidate;
                        }
                    },
                };
                if let Err(error) = self.room_capacity() {
                    return answer(error.to_data());
                }
                let settings = RoomSettings::from_create(create);
                self.spawn_room(room.clone(), settings);
                return answer(
                    json!({"videoroom": "created", "room": room.to_json(), "permanent": false}),
                );
            }
            _ => {}
        }
        // The room this request is about: the one it names, else the handle's.
        let room = match request
            .room()
            .cloned()
            .or_else(|| self.handle_room.get(&handle).cloned())
        {
            Some(room) => room,
            None => {
                let error = RoomError::new(RoomErrorCode::JoinFirst, "Join a room first");
                return if sync {
                    answer(error.to_data())
                } else {
                    self.ack_then_event(session, handle, &transaction, error.to_data())
                };
            }
        };
        if self.rooms.get(&room).is_some_and(|e| e.handle.is_closed()) {
            // Destroyed (its message saying so is on its way, or was dropped under load): the
            // room is gone, and a join makes a new one.
            self.rooms.remove(&room);
            self.handle_room.retain(|_, r| *r != room);
        }
        if let RoomRequest::Join(join) | RoomRequest::JoinAndConfigure(join, _) = &request {
            if let Some(current) = self.handle_room.get(&handle) {
                if current != join.room() {
                    let error = RoomError::new(
                        RoomErrorCode::AlreadyJoined,
                        "Already in a room on this handle",
                    );
                    return self.ack_then_event(session, handle, &transaction, error.to_data());
                }
            }
            if !self.rooms.contains_key(&room) {
                match &room {
                    // QuickBlox: a dialog's conference room is made by its first join; the
                    // room task checks the dialog before letting anyone in.
                    RoomId::Str(_) => {
                        if let Err(error) = self.room_capacity() {
                            return self.ack_then_event(
                                session,
                                handle,
                                &transaction,
                                error.to_data(),
                            );
                        }
                        let settings = RoomSettings::on_demand(
                            String::new(),
                            self.ctx.config.sfu.max_publishers,
                        );
                        self.spawn_room(room.clone(), settings);
                    }
                    RoomId::Num(n) => {
                        let error = RoomError::new(
                            RoomErrorCode::NoSuchRoom,
                            format!("No such room ({n})"),
                        );
                        return self.ack_then_event(session, handle, &transaction, error.to_data());
                    }
                }
            }
            self.bind_handle(handle, &room);
        }
        let Some(entry) = self.rooms.get(&room) else {
            let error = RoomError::new(RoomErrorCode::NoSuchRoom, format!("No such room ({room})"));
            return if sync {
                answer(error.to_data())
            } else {
                self.ack_then_event(session, handle, &transaction, error.to_data())
            };
        };
        let input = RoomInput::Message {
            key,
            owner: owner.clone(),
            transaction: transaction.clone(),
            request,
            jsep,
        };
        if !entry.handle.send(input) {
            let error = RoomError::new(RoomErrorCode::Unknown, "The room is busy; try again");
            return if sync {
                answer(error.to_data())
            } else {
                self.ack_then_event(session, handle, &transaction, error.to_data())
            };
        }
        if sync {
            None
        } else {
            Some(reply::ack(&transaction, Some(session.0)))
        }
    }

    /// A room more may be opened, under `sfu.max_rooms`.
    fn room_capacity(&mut self) -> Result<(), RoomError> {
        // Rooms their shard ended no longer count.
        self.rooms.retain(|_, e| !e.handle.is_closed());
        if self.rooms.len() >= self.ctx.config.sfu.max_rooms {
            return Err(RoomError::new(
                RoomErrorCode::Unknown,
                "Too many rooms on this server; try again later",
            ));
        }
        Ok(())
    }

    /// Who may create a room: anyone for numeric rooms (stock Janus); string rooms are
    /// QuickBlox dialogs, made by their first join.
    fn may_create(&self, room: Option<&RoomId>) -> Result<(), RoomError> {
        match room {
            Some(RoomId::Str(_)) => Err(RoomError::new(
                RoomErrorCode::Unauthorized,
                "String rooms are QuickBlox dialogs: join one to open its conference",
            )),
            _ => Ok(()),
        }
    }

    /// An asynchronous request that fails before reaching a room: `ack`, then the error event.
    fn ack_then_event(
        &mut self,
        session: SessionId,
        handle: HandleId,
        transaction: &str,
        data: Value,
    ) -> Option<Value> {
        if let Some(transport) = self.sessions.session_transport(session) {
            self.send(transport, reply::ack(transaction, Some(session.0)));
            self.send(
                transport,
                reply::event(session.0, handle.0, Some(transaction), data, None),
            );
        }
        None
    }

    fn plugin_calls(&mut self, calls: Vec<PluginCall>) {
        for call in calls {
            let (key, input) = match call {
                PluginCall::Gone { session, handle } => {
                    let key = HandleKey { session, handle };
                    (key, RoomInput::Gone { key })
                }
                PluginCall::Hangup { session, handle } => {
                    let key = HandleKey { session, handle };
                    (key, RoomInput::Hangup { key })
                }
                PluginCall::Trickle {
                    session,
                    handle,
                    candidates,
                } => {
                    let key = HandleKey { session, handle };
                    (key, RoomInput::Trickle { key, candidates })
                }
                PluginCall::Message { .. } => continue,
            };
            let Some(room) = self.handle_room.get(&key.handle).cloned() else {
                continue;
            };
            if matches!(input, RoomInput::Gone { .. }) {
                self.unbind_handle(key.handle);
            }
            if let Some(entry) = self.rooms.get(&room) {
                // A full queue must not lose a departure: it is retried by the room's own
                // sweep of handles whose sessions are gone.
                entry.handle.send(input);
            }
        }
    }

    fn poll(
        &mut self,
        owner: Principal,
        session: SessionId,
        max_events: usize,
        reply: oneshot::Sender<Result<Vec<Value>, Value>>,
    ) {
        let known = self.sessions.owner(session) == Some(&owner);
        if !known || !self.sessions.touch(Instant::now(), session) {
            let error = JanusError::new(
                ErrorCode::SessionNotFound,
                format!("No such session {}", session.0),
            );
            let _ = reply.send(Err(reply::error(None, Some(session.0), &error)));
            return;
        }
        let Some(transport) = self.sessions.session_transport(session) else {
            return;
        };
        let Some(Sink::Http(queue)) = self.sinks.get_mut(&transport) else {
            let error = JanusError::new(
                ErrorCode::TransportSpecific,
                "This session's events go to its WebSocket",
            );
            let _ = reply.send(Err(reply::error(None, Some(session.0), &error)));
            return;
        };
        if queue.events.is_empty() {
            queue.waiter = Some((max_events.max(1), reply));
            return;
        }
        let take = max_events.max(1).min(queue.events.len());
        let events: Vec<Value> = queue.events.drain(..take).collect();
        if let Err(Ok(events)) = reply.send(Ok(events)) {
            // The poller went away: keep them for the next poll.
            for event in events.into_iter().rev() {
                queue.events.push_front(event);
            }
        }
    }

    fn send(&mut self, transport: TransportId, message: Value) {
        match self.sinks.get_mut(&transport) {
            Some(Sink::Ws(out)) => {
                let text: Arc<str> = Arc::from(message.to_string());
                if let Err(mpsc::error::TrySendError::Full(_)) = out.try_send(text) {
                    // A client that does not read its socket loses events, not the server's
                    // memory; its connection task closes it when the queue stays full. (A
                    // socket already closed is no loss: its sessions are on their way out.)
                    self.ctx.metrics.dropped_events.inc();
                }
            }
            Some(Sink::Http(queue)) => {
                if let Some((max, waiter)) = queue.waiter.take() {
                    if !waiter.is_closed() {
                        let mut batch = vec![message];
                        let more = max.saturating_sub(1).min(queue.events.len());
                        batch.extend(queue.events.drain(..more));
                        match waiter.send(Ok(batch)) {
                            Ok(()) => return,
                            Err(Ok(batch)) => {
                                for event in batch.into_iter().rev() {
                                    queue.events.push_front(event);
                                }
                                return;
                            }
                            Err(Err(_)) => return,
                        }
                    }
                }
                if queue.events.len() >= HTTP_QUEUE {
                    queue.events.pop_front();
                    self.ctx.metrics.dropped_events.inc();
                }
                queue.events.push_back(message);
            }
            None => {}
        }
    }

    fn expire(&mut self, now: Instant) {
        if self.sessions.poll_timeout().is_none_or(|at| at > now) {
            return;
        }
        for expired in self.sessions.handle_timeout(now) {
            self.send(expired.transport, expired.event);
            self.plugin_calls(expired.plugin);
            self.forget_http_transport(expired.transport);
        }
    }

    /// Drops an HTTP transport's event queue (and POSTs waiting on it) once no session uses it.
    fn forget_http_transport(&mut self, transport: TransportId) {
        if transport.0 <= HTTP_TRANSPORTS || self.sessions.any_on(transport) {
            return;
        }
        self.sinks.remove(&transport);
        self.pending_http.retain(|(t, _), _| *t != transport);
    }

    fn spawn_room(&mut self, room: RoomId, settings: RoomSettings) {
        let handle = self.ctx.shards.open_room(room.clone(), settings.clone());
        self.rooms.insert(
            room,
            RoomEntry {
                handle,
                settings,
                handles: 0,
            },
        );
    }

    /// `handle` is in `room` now.
    fn bind_handle(&mut self, handle: HandleId, room: &RoomId) {
        match self.handle_room.insert(handle, room.clone()) {
            Some(previous) if previous == *room => return,
            Some(previous) => self.room_lost_handle(&previous),
            None => {}
        }
        if let Some(entry) = self.rooms.get_mut(room) {
            entry.handles += 1;
        }
    }

    /// `handle` is in no room any more.
    fn unbind_handle(&mut self, handle: HandleId) {
        if let Some(room) = self.handle_room.remove(&handle) {
            self.room_lost_handle(&room);
        }
    }

    fn room_lost_handle(&mut self, room: &RoomId) {
        if let Some(entry) = self.rooms.get_mut(room) {
            entry.handles = entry.handles.saturating_sub(1);
        }
    }

    /// Frees a room nobody is in, unless it was created explicitly or a join is on its way.
    fn maybe_free(&mut self, room: &RoomId) {
        let Some(entry) = self.rooms.get(room) else {
            return;
        };
        if entry.settings.explicit || entry.handles > 0 {
            return;
        }
        self.rooms.remove(room);
    }
}

/// Starts the gateway task.
pub fn spawn(ctx: Arc<SfuContext>, inputs: mpsc::Receiver<GatewayInput>) {
    let shutdown = ctx.shutdown.clone();
    let gateway = Gateway::new(ctx.clone());
    ctx.tracker.spawn(gateway.run(inputs, shutdown));
}
