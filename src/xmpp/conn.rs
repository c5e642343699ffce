//! One task per client connection: the drive loop that moves bytes between the socket
//! ([`Io`]) and the I/O-free [`C2sStream`], acts on the core's outputs (TLS, login in
//! [`login`](super::login), resumption in [`resume`](super::resume)) and hands bound stanzas
//! to the [`Session`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use xmpp_proto::c2s::{C2sConfig, C2sStream, Input, Output, Transport};
use xmpp_proto::errors::StreamErrorCondition;
use xmpp_proto::Limits;

use super::hub::{Delivery, Queued};
use super::io::Io;
use super::listener::HANDSHAKE_TIMEOUT;
use super::session::{Session, SessionEvent};
use super::XmppContext;
use crate::auth::secrets;
use crate::model::{AppId, UserId};

/// Deliveries taken per wake-up before writing.
const BATCH: usize = 64;
/// Bytes of deliveries taken per wake-up before writing (large stanzas make smaller batches).
const BATCH_BYTES: usize = 64 * 1024;

/// What a connection is, between reads.
pub(super) struct Connection {
    pub(super) ctx: Arc<XmppContext>,
    pub(super) core: C2sStream,
    pub(super) io: Io,
    pub(super) peer: SocketAddr,
    pending: Vec<String>,
    pub(super) session: Option<Session>,
    pub(super) rx: Option<mpsc::Receiver<Delivery>>,
    pub(super) sm_id: Option<String>,
    /// The application and user that authenticated, once SASL succeeded.
    pub(super) app: Option<(AppId, UserId)>,
}

/// Runs one connection from its first byte to its end.
pub(super) async fn run(ctx: Arc<XmppContext>, io: Io, peer: SocketAddr) {
    let transport = io.transport();
    let label = io.label();
    ctx.metrics.connections.with_label_values(&[label]).inc();
    let secure =
        matches!(io, Io::Tls(_)) || (transport == Transport::WebSocket && ctx.config.xmpp.ws_tls);
    let xmpp = &ctx.config.xmpp;
    let mut limits = Limits::default();
    limits.max_stanza_bytes = xmpp.max_stanza_bytes;
    let config = C2sConfig {
        domain: ctx.domain().to_string(),
        transport,
        secure,
        tls_available: transport == Transport::Tcp,
        tls_required: xmpp.require_tls,
        plain_without_tls: xmpp.allow_plain_on_loopback && peer.ip().is_loopback(),
        limits,
        max_auth_failures: xmpp.max_auth_failures.max(1),
        stanza_rate_per_s: xmpp.stanza_rate_per_s,
        stanza_burst: xmpp.stanza_burst,
        idle_timeout: Duration::from_secs(xmpp.idle_timeout_s.max(1)),
        auth_timeout: Duration::from_secs(xmpp.auth_timeout_s.max(1)),
        sustained_overload: Duration::from_secs(xmpp.stanza_overload_close_s.max(1)),
        sm_max_unacked: xmpp.sm_max_unacked as usize,
        sm_max_unacked_bytes: xmpp.sm_max_unacked_bytes,
        csi_max_held: xmpp.csi_max_held as usize,
        sm_resumption: xmpp.sm_resume_timeout_s > 0,
        id_seed: secrets::random_hex(8),
    };
    let mut conn = Connection {
        ctx: ctx.clone(),
        core: C2sStream::new(config),
        io,
        peer,
        pending: Vec::new(),
        session: None,
        rx: None,
        sm_id: None,
        app: None,
    };
    conn.core.handle_input(Instant::now(), Input::Bytes(b""));
    conn.drive().await;
    ctx.metrics.connections.with_label_values(&[label]).dec();
}

impl Connection {
    async fn drive(&mut self) {
        let mut buf = Vec::new();
        // One timer and one shutdown waiter for the whole connection: creating them per loop
        // turn registered and removed a timer-wheel entry and a waiter on the shared shutdown
        // list for every stanza. The timer is armed lazily: the idle deadline moves with every
        // read, so it is only reset when the deadline comes earlier than the armed one; firing
        // early is harmless (the core checks the deadline itself) and re-arms it.
        let timer = tokio::time::sleep(Duration::from_secs(0));
        tokio::pin!(timer);
        let mut armed: Option<tokio::time::Instant> = None;
        let shutdown = self.ctx.shutdown.clone().cancelled_owned();
        tokio::pin!(shutdown);
        let mut shutting_down = false;
        let mut was_paused = false;
        loop {
            if !self.process_outputs().await {
                break;
            }
            let flushed = std::mem::take(&mut self.pending);
            if self.write_out(flushed).await.is_err() {
                self.core.handle_input(Instant::now(), Input::Eof);
                let _ = self.process_outputs().await;
                break;
            }
            // A login's stored messages stream a page per written page: the write above
            // returned once the client's socket took the last one. On a resumable stream the
            // next page also waits until the client has acknowledged enough (its <a/> is read
            // below), so a large backlog never overflows the unacknowledged queue.
            if let Some(session) = &mut self.session {
                let headroom = self
                    .core
                    .sm()
                    .is_none_or(|sm| sm.has_headroom(super::offline::OFFLINE_PAGE));
                if session.has_offline_backlog() && headroom && !self.core.is_closed() {
                    for (text, urgency) in Box::pin(session.next_offline_page()).await {
                        self.core.deliver(&text, urgency);
                    }
                    continue;
                }
            }
            let deadline = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            if let Some(deadline) = deadline {
                if armed.is_none_or(|at| deadline < at) {
                    timer.as_mut().reset(deadline);
                    armed = Some(deadline);
                }
            }
            // Over its stanza budget: the client's socket is not read until tokens refill, so
            // TCP slows it down instead of the server cutting it off.
            let paused = self.core.is_read_paused();
            if paused && !was_paused {
                self.ctx
                    .metrics
                    .limits
                    .with_label_values(&["stanza_rate"])
                    .inc();
            }
            was_paused = paused;
            let rx = &mut self.rx;
            tokio::select! {
                read = self.io.read_into(&mut self.core, &mut buf), if !paused => {
                    if !matches!(read, Ok(n) if n > 0) {
                        self.core.handle_input(Instant::now(), Input::Eof);
                    }
                }
                delivery = recv(rx) => match delivery {
                    Some(Delivery::Stanza(queued)) => {
                        let Queued { stanza, urgency, .. } = *queued;
                        self.core.deliver(&stanza, urgency)
                    }
                    Some(Delivery::Close(condition)) => self.core.close_with(condition, None),
                    None => self.core.close_with(StreamErrorCondition::UndefinedCondition, None),
                },
                _ = &mut timer, if armed.is_some() => {
                    armed = None;
                    self.core.handle_timeout(Instant::now());
                }
                event = session_event(&mut self.session) => match event {
                    SessionEvent::Replaced => {
                        self.core.close_with(StreamErrorCondition::Conflict, None);
                    }
                    SessionEvent::SaveSettled => {
                        if let Some(session) = &mut self.session {
                            for (text, urgency) in Box::pin(session.route_settled()).await {
                                self.core.deliver(&text, urgency);
                            }
                        }
                    }
                },
                _ = &mut shutdown, if !shutting_down => {
                    shutting_down = true;
                    self.core.close_with(StreamErrorCondition::SystemShutdown, None);
                }
            }
            // Take whatever else is already queued for the client, so one write carries many
            // stanzas under load instead of one syscall each; a stanza leaves its queue's byte
            // budget here, so a batch stops at BATCH_BYTES.
            let mut batch_bytes = 0;
            for _ in 0..BATCH {
                if batch_bytes > BATCH_BYTES {
                    break;
                }
                let Some(rx) = &mut self.rx else { break };
                match rx.try_recv() {
                    Ok(Delivery::Stanza(queued)) => {
                        let Queued {
                            stanza, urgency, ..
                        } = *queued;
                        batch_bytes += stanza.len();
                        self.core.deliver(&stanza, urgency)
                    }
                    Ok(Delivery::Close(condition)) => self.core.close_with(condition, None),
                    Err(_) => break,
                }
            }
        }
        Box::pin(self.finish()).await;
    }

    /// Writes to the client, for at most `xmpp.write_timeout_s`: a client that stops reading
    /// (a zero TCP window) must not hold its connection and session forever.
    async fn write_out(&mut self, chunks: Vec<String>) -> std::io::Result<()> {
        let limit = Duration::from_secs(self.ctx.config.xmpp.write_timeout_s.max(1));
        match tokio::time::timeout(limit, self.io.write(chunks)).await {
            Ok(written) => written,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// Acts on every output; false once the connection must close.
    async fn process_outputs(&mut self) -> bool {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Send(text) => self.pending.push(text),
                Output::Ack(text) => {
                    // `h` counts stanzas whose saves may still be in flight: route them first.
                    if let Some(session) = &mut self.session {
                        if session.has_saves_in_flight() {
                            for (reply, urgency) in Box::pin(session.drain_saves()).await {
                                self.core.deliver(&reply, urgency);
                            }
                        }
                    }
                    self.pending.push(text);
                }
                Output::StartTls => {
                    let flushed = std::mem::take(&mut self.pending);
                    if self.write_out(flushed).await.is_err() {
                        return false;
                    }
                    let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Swapping) else {
                        return false;
                    };
                    let accept = self.ctx.tls.accept(tcp);
                    match Box::pin(tokio::time::timeout(HANDSHAKE_TIMEOUT, accept)).await {
                        Ok(Ok(tls)) => {
                            self.io = Io::Tls(Box::new(tls));
                            self.core
                                .handle_input(Instant::now(), Input::TlsEstablished);
                        }
                        _ => return false,
                    }
                }
                Output::Authenticate(credentials) => {
                    // Rare and large futures are boxed (here and below): the task of every
                    // idle connection would otherwise reserve room for them.
                    let result =
                        Box::pin(self.authenticate(&credentials.authcid, &credentials.password))
                            .await;
                    self.core
                        .handle_input(Instant::now(), Input::AuthResult(result));
                }
                Output::Bind(resource) => {
                    let result = self.bind(resource);
                    self.core
                        .handle_input(Instant::now(), Input::BindResult(result));
                }
                Output::EnableSm {
                    resumable: true,
                    id,
                } => self.sm_id = Some(id),
                Output::EnableSm { .. } => {}
                Output::Resume { previd, h: _ } => {
                    let result = Box::pin(self.resume(&previd)).await;
                    self.core
                        .handle_input(Instant::now(), Input::ResumeResult(result));
                }
                Output::Stanza(stanza) => {
                    if let Some(session) = &mut self.session {
                        // Boxed: one allocation per stanza is cheaper than every idle
                        // connection reserving the routing future's room in its task.
                        for (text, urgency) in Box::pin(session.process(stanza)).await {
                            self.core.deliver(&text, urgency);
                        }
                    }
                }
                Output::ClientState { .. } => {}
                Output::Close { error } => {
                    if let Some(condition) = error {
                        tracing::debug!(
                            condition = condition.name(),
                            "stream closed with an error"
                        );
                        self.ctx
                            .metrics
                            .stream_errors
                            .with_label_values(&[condition.name()])
                            .inc();
                    }
                    let flushed = std::mem::take(&mut self.pending);
                    let _ = self.write_out(flushed).await;
                    return false;
                }
                _ => {}
            }
        }
        true
    }
}

/// Resolves when a newer session took this one's JID and its `Close` could not be queued,
/// or a save in flight is committed.
async fn session_event(session: &mut Option<Session>) -> SessionEvent {
    match session {
        Some(session) => session.next_event().await,
        None => std::future::pending().await,
    }
}

async fn recv(rx: &mut Option<mpsc::Receiver<Delivery>>) -> Option<Delivery> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
