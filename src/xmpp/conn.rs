//! One task per client connection: moves bytes between the socket and the I/O-free
//! [`C2sStream`], answers its requests (TLS, authentication, binding, resumption) and hands
//! bound stanzas to the [`router`](super::router).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;
use xmpp_proto::c2s::{C2sConfig, C2sStream, Input, Output, Transport};
use xmpp_proto::errors::{StanzaErrorCondition, StreamErrorCondition};
use xmpp_proto::sasl::SaslFailure;
use xmpp_proto::sm::SmState;
use xmpp_proto::{BareJid, FullJid, Limits, QbNode};

use super::hub::{Delivery, SessionHandle, SessionShared, Takeover, TakeoverRequest};
use super::router::Session;
use super::XmppContext;
use crate::auth::{secrets, AuthError};
use crate::clock;
use crate::model::{AppId, UserId};
use crate::telemetry::Pii;

const READ_BUFFER: usize = 1024;
/// Deliveries taken per wake-up before writing.
const BATCH: usize = 64;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a listener's connections start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// c2s, plain until STARTTLS.
    Tcp,
    /// c2s with TLS from the first byte (XEP-0368).
    DirectTls,
    /// XMPP over WebSocket (RFC 7395, subprotocol `xmpp`), over TLS when `xmpp.ws_tls`.
    WebSocket,
}

/// Accepts connections until shutdown, each on its own task after the per-IP limit.
pub async fn accept(ctx: Arc<XmppContext>, listener: TcpListener, kind: Listener) {
    let transport = match kind {
        Listener::WebSocket => "websocket",
        _ => "tcp",
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(%error, transport, "xmpp accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = ctx.connection_slot(peer.ip()) else {
            ctx.metrics
                .limits
                .with_label_values(&["connections_per_ip"])
                .inc();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let task_ctx = ctx.clone();
        let span = tracing::info_span!("xmpp", peer = %Pii(peer), transport);
        ctx.tracker.spawn(
            async move {
                let _slot = slot;
                if let Some(io) = open(&task_ctx, stream, kind).await {
                    run(task_ctx, io, peer).await;
                }
            }
            .instrument(span),
        );
    }
}

/// The handshakes before XMPP starts: TLS for direct TLS and `wss://`, the HTTP upgrade for
/// WebSocket. `None` when one fails or times out.
async fn open(ctx: &XmppContext, stream: TcpStream, kind: Listener) -> Option<Io> {
    let tls =
        kind == Listener::DirectTls || (kind == Listener::WebSocket && ctx.config.xmpp.ws_tls);
    let io = if tls {
        let accepted = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, ctx.tls.accept(stream)).await;
        Io::Tls(Box::new(accepted.ok()?.ok()?))
    } else {
        Io::Plain(stream)
    };
    if kind == Listener::WebSocket {
        return websocket_handshake(io)
            .await
            .map(|ws| Io::WebSocket(Box::new(ws)));
    }
    Some(io)
}

async fn websocket_handshake(io: Io) -> Option<WebSocketStream<Io>> {
    // RFC 7395 §3.1: the client must offer the `xmpp` subprotocol and the server must echo it.
    #[allow(clippy::result_large_err)] // the signature is tungstenite's callback contract
    let callback = |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        let offered = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("xmpp"));
        if !offered {
            let mut refusal = ErrorResponse::new(Some("the xmpp subprotocol is required".into()));
            *refusal.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::BAD_REQUEST;
            return Err(refusal);
        }
        response
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("xmpp"));
        Ok(response)
    };
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(1024 * 1024))
        .max_frame_size(Some(1024 * 1024));
    match tokio::time::timeout(
        TLS_HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async_with_config(io, callback, Some(config)),
    )
    .await
    {
        Ok(Ok(ws)) => Some(ws),
        _ => None,
    }
}

/// The socket in its current form.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    WebSocket(Box<WebSocketStream<Io>>),
    /// Only during the STARTTLS swap.
    Swapping,
}

impl tokio::io::AsyncRead for Io {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
            _ => std::task::Poll::Ready(Err(std::io::ErrorKind::Unsupported.into())),
        }
    }
}

impl tokio::io::AsyncWrite for Io {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
            _ => std::task::Poll::Ready(Err(std::io::ErrorKind::Unsupported.into())),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
            _ => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
            _ => std::task::Poll::Ready(Ok(())),
        }
    }
}

impl Io {
    fn transport(&self) -> Transport {
        match self {
            Io::WebSocket(_) => Transport::WebSocket,
            _ => Transport::Tcp,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Io::Plain(_) => "tcp",
            Io::Tls(_) => "tls",
            Io::WebSocket(_) => "websocket",
            Io::Swapping => "none",
        }
    }

    /// Waits for input and hands it to `core` (bytes on TCP, one text message's payload on
    /// WebSocket). Returns how many bytes it handed over; 0 at end of stream.
    ///
    /// TLS and WebSocket input goes to the core straight from the buffer it already sits in
    /// (rustls's plaintext, the WebSocket message): no copy, no allocation, and a waiting
    /// connection holds no read buffer of its own. Only plain TCP reads into `buf`. The hand-over
    /// happens within the poll that found the data, so cancelling this future never loses input.
    async fn read_into(
        &mut self,
        core: &mut C2sStream,
        buf: &mut Vec<u8>,
    ) -> std::io::Result<usize> {
        match self {
            Io::WebSocket(ws) => loop {
                match ws.next().await {
                    None => return Ok(0),
                    // An empty message is not the end of the stream.
                    Some(Ok(WsMessage::Text(text))) if text.is_empty() => continue,
                    Some(Ok(WsMessage::Text(text))) => {
                        core.handle_input(Instant::now(), Input::Bytes(text.as_bytes()));
                        return Ok(text.len());
                    }
                    Some(Ok(WsMessage::Binary(_))) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "binary message",
                        ))
                    }
                    Some(Ok(WsMessage::Close(_))) => return Ok(0),
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => return Err(std::io::Error::other(error)),
                }
            },
            Io::Tls(tls) => {
                let data = AsyncBufReadExt::fill_buf(tls.as_mut()).await?;
                let n = data.len();
                if n > 0 {
                    core.handle_input(Instant::now(), Input::Bytes(data));
                }
                AsyncBufReadExt::consume(tls.as_mut(), n);
                Ok(n)
            }
            _ => {
                buf.resize(READ_BUFFER, 0);
                let n = AsyncReadExt::read(self, buf).await?;
                if n > 0 {
                    core.handle_input(Instant::now(), Input::Bytes(&buf[..n]));
                }
                Ok(n)
            }
        }
    }

    async fn write(&mut self, chunks: Vec<String>) -> std::io::Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        match self {
            Io::WebSocket(ws) => {
                for chunk in chunks {
                    ws.feed(WsMessage::text(chunk))
                        .await
                        .map_err(std::io::Error::other)?;
                }
                ws.flush().await.map_err(std::io::Error::other)
            }
            _ => {
                let joined: String = chunks.concat();
                AsyncWriteExt::write_all(self, joined.as_bytes()).await?;
                AsyncWriteExt::flush(self).await
            }
        }
    }

    async fn close(&mut self) {
        match self {
            Io::WebSocket(ws) => {
                let _ = ws.as_mut().close(None).await;
            }
            _ => {
                let _ = AsyncWriteExt::shutdown(self).await;
            }
        }
    }
}

/// What a connection is, between reads.
struct Connection {
    ctx: Arc<XmppContext>,
    core: C2sStream,
    io: Io,
    peer: SocketAddr,
    pending: Vec<String>,
    session: Option<Session>,
    rx: Option<mpsc::Receiver<Delivery>>,
    sm_id: Option<String>,
    app: Option<(AppId, UserId)>,
}

async fn run(ctx: Arc<XmppContext>, io: Io, peer: SocketAddr) {
    let transport = io.transport();
    let label = io.label();
    ctx.metrics.connections.with_label_values(&[label]).inc();
    let secure =
        matches!(io, Io::Tls(_)) || (transport == Transport::WebSocket && ctx.config.xmpp.ws_tls);
    let xmpp = &ctx.config.xmpp;
    let mut limits = Limits::default();
    limits.max_stanza_bytes = xmpp.max_stanza_bytes;
    let config = C2sConfig {
        domain: xmpp.domain.to_ascii_lowercase(),
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
        sm_max_unacked: xmpp.sm_max_unacked as usize,
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
        loop {
            if !self.process_outputs().await {
                break;
            }
            let flushed = std::mem::take(&mut self.pending);
            if self.io.write(flushed).await.is_err() {
                self.core.handle_input(Instant::now(), Input::Eof);
                let _ = self.process_outputs().await;
                break;
            }
            let deadline = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            if let Some(deadline) = deadline {
                if armed.is_none_or(|at| deadline < at) {
                    timer.as_mut().reset(deadline);
                    armed = Some(deadline);
                }
            }
            let rx = &mut self.rx;
            tokio::select! {
                read = self.io.read_into(&mut self.core, &mut buf) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        self.core.handle_input(Instant::now(), Input::Eof);
                    }
                }
                delivery = recv(rx) => match delivery {
                    Some(Delivery::Stanza(stanza)) => {
                        let (text, urgency) = *stanza;
                        self.core.deliver(&text, urgency)
                    }
                    Some(Delivery::Close(condition)) => self.core.close_with(condition, None),
                    None => self.core.close_with(StreamErrorCondition::UndefinedCondition, None),
                },
                _ = &mut timer, if armed.is_some() => {
                    armed = None;
                    self.core.handle_timeout(Instant::now());
                }
                _ = replaced(&self.session) => {
                    self.core.close_with(StreamErrorCondition::Conflict, None);
                }
                _ = &mut shutdown, if !shutting_down => {
                    shutting_down = true;
                    self.core.close_with(StreamErrorCondition::SystemShutdown, None);
                }
            }
            // Take whatever else is already queued for the client, so one write carries many
            // stanzas under load instead of one syscall each.
            for _ in 0..BATCH {
                let Some(rx) = &mut self.rx else { break };
                match rx.try_recv() {
                    Ok(Delivery::Stanza(stanza)) => {
                        let (text, urgency) = *stanza;
                        self.core.deliver(&text, urgency)
                    }
                    Ok(Delivery::Close(condition)) => self.core.close_with(condition, None),
                    Err(_) => break,
                }
            }
        }
        Box::pin(self.finish()).await;
    }

    /// Acts on every output; false once the connection must close.
    async fn process_outputs(&mut self) -> bool {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Send(text) => self.pending.push(text),
                Output::StartTls => {
                    let flushed = std::mem::take(&mut self.pending);
                    if self.io.write(flushed).await.is_err() {
                        return false;
                    }
                    let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Swapping) else {
                        return false;
                    };
                    let accept = self.ctx.tls.accept(tcp);
                    match Box::pin(tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept)).await {
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
                    let _ = self.io.write(flushed).await;
                    return false;
                }
                _ => {}
            }
        }
        true
    }

    async fn authenticate(&mut self, authcid: &str, secret: &str) -> Result<BareJid, SaslFailure> {
        let Ok(node) = QbNode::parse(authcid) else {
            self.ctx
                .metrics
                .auth
                .with_label_values(&["malformed"])
                .inc();
            return Err(SaslFailure::NotAuthorized);
        };
        let (app, user) = (AppId(node.app()), UserId(node.user()));
        let now = clock::unix_now();
        match self
            .ctx
            .auth
            .check_user_secret(app, user, secret, Some(self.peer.ip()), now)
            .await
        {
            Ok(_) => {
                self.ctx.metrics.auth.with_label_values(&["success"]).inc();
                self.app = Some((app, user));
                BareJid::new(Some(authcid), self.ctx.domain())
                    .map_err(|_| SaslFailure::NotAuthorized)
            }
            Err(AuthError::Throttled(_)) => {
                self.ctx
                    .metrics
                    .auth
                    .with_label_values(&["throttled"])
                    .inc();
                self.ctx
                    .metrics
                    .limits
                    .with_label_values(&["auth_failures"])
                    .inc();
                Err(SaslFailure::TemporaryAuthFailure)
            }
            Err(AuthError::Store(error)) => {
                tracing::error!(%error, "authentication lookup failed");
                Err(SaslFailure::TemporaryAuthFailure)
            }
            Err(AuthError::Busy) => {
                self.ctx.metrics.auth.with_label_values(&["busy"]).inc();
                Err(SaslFailure::TemporaryAuthFailure)
            }
            Err(_) => {
                self.ctx.metrics.auth.with_label_values(&["failure"]).inc();
                // Slow down password guessing on this connection.
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err(SaslFailure::NotAuthorized)
            }
        }
    }

    fn bind(&mut self, resource: Option<String>) -> Result<FullJid, StanzaErrorCondition> {
        let (Some((app, user)), Some(bare)) = (self.app, self.authenticated_bare()) else {
            return Err(StanzaErrorCondition::NotAllowed);
        };
        let resource = resource.unwrap_or_else(|| secrets::random_hex(6));
        let jid = bare
            .with_resource(&resource)
            .map_err(|_| StanzaErrorCondition::BadRequest)?;
        let (tx, rx) = mpsc::channel(self.ctx.config.xmpp.session_queue);
        let shared = Arc::new(SessionShared::new(
            jid.clone(),
            self.ctx.hub.next_generation(),
        ));
        let handle = SessionHandle {
            tx,
            shared: shared.clone(),
        };
        if let Some(old) = self.ctx.hub.bind(handle.clone()) {
            // RFC 6120 §7.7.2.2: the newer session wins, the older one is told why it ends.
            old.shared.close_as_replaced(&old.tx);
        }
        tracing::debug!(jid = %Pii(&jid), "bound");
        self.rx = Some(rx);
        self.session = Some(Session::new(self.ctx.clone(), app, user, handle));
        Ok(jid)
    }

    fn authenticated_bare(&self) -> Option<BareJid> {
        let (app, user) = self.app?;
        BareJid::new(Some(&format!("{}-{}", user.0, app.0)), self.ctx.domain()).ok()
    }

    async fn resume(&mut self, previd: &str) -> Option<(FullJid, SmState)> {
        let owner = self.authenticated_bare()?;
        let Some(Takeover {
            jid,
            sm,
            handle,
            rx,
        }) = self.ctx.hub.take_over(previd, &owner).await
        else {
            self.ctx
                .metrics
                .sm_resumptions
                .with_label_values(&["failed"])
                .inc();
            return None;
        };
        let (app, user) = self.app?;
        self.ctx
            .metrics
            .sm_resumptions
            .with_label_values(&["resumed"])
            .inc();
        self.rx = Some(rx);
        self.sm_id = Some(previd.to_string());
        self.session = Some(Session::new(self.ctx.clone(), app, user, handle));
        Some((jid, sm))
    }

    /// After the stream ends: keep a resumable session for a while, else end it.
    async fn finish(&mut self) {
        self.io.close().await;
        let Some(session) = self.session.take() else {
            return;
        };
        // Held back by CSI: never written, so after the unacknowledged ones in order.
        let held = self.core.take_held();
        let sm = self.core.take_sm();
        let rx = self.rx.take();
        match (sm, rx, self.sm_id.take()) {
            (Some(mut sm), Some(rx), Some(id))
                if sm.resumable() && !self.ctx.shutdown.is_cancelled() =>
            {
                let mut overflow = Vec::new();
                for stanza in held {
                    if sm.sent(&stanza).is_err() {
                        overflow.push(stanza);
                    }
                }
                if overflow.is_empty() {
                    self.detach(session, sm, rx, id).await;
                } else {
                    // Too many to keep for resumption: end now, storing what can be stored.
                    let mut unacked = sm.into_unacked();
                    unacked.extend(overflow);
                    session.end(unacked, Some(rx)).await;
                }
            }
            (sm, rx, _) => {
                let mut unacked = sm.map(SmState::into_unacked).unwrap_or_default();
                unacked.extend(held);
                session.end(unacked, rx).await;
            }
        }
    }

    /// Waits for a resumption (XEP-0198 §5) while queueing what arrives for the session.
    async fn detach(
        &mut self,
        session: Session,
        mut sm: SmState,
        mut rx: mpsc::Receiver<Delivery>,
        id: String,
    ) {
        let owner = session.handle().shared.jid.bare().clone();
        let (takeover_tx, mut takeover_rx) = mpsc::channel::<TakeoverRequest>(1);
        self.ctx.hub.detach(id.clone(), owner, takeover_tx);
        let timeout = tokio::time::sleep(Duration::from_secs(
            self.ctx.config.xmpp.sm_resume_timeout_s,
        ));
        tokio::pin!(timeout);
        tracing::debug!("session detached, waiting for resumption");
        // A stanza the resumption queue had no room for: it ends the wait, and is stored
        // with the unacknowledged ones rather than lost.
        let mut overflow: Option<Vec<u8>> = None;
        loop {
            tokio::select! {
                request = takeover_rx.recv() => {
                    let Some(reply) = request else { break };
                    self.ctx.hub.forget_detached(&id);
                    let handle = session.handle().clone();
                    let takeover = Takeover { jid: handle.shared.jid.clone(), sm, handle, rx };
                    let _ = reply.send(takeover);
                    return;
                }
                delivery = rx.recv() => match delivery {
                    Some(Delivery::Stanza(stanza)) => {
                        let text = stanza.0.as_bytes();
                        if sm.sent(text).is_err() {
                            overflow = Some(text.to_vec());
                            break;
                        }
                    }
                    Some(Delivery::Close(_)) | None => break,
                },
                _ = &mut timeout => break,
                _ = self.ctx.shutdown.cancelled() => break,
            }
        }
        self.ctx.hub.forget_detached(&id);
        let mut unacked = sm.into_unacked();
        unacked.extend(overflow);
        session.end(unacked, Some(rx)).await;
    }
}

/// Resolves when a newer session took this one's JID and its `Close` could not be queued.
async fn replaced(session: &Option<Session>) {
    match session {
        Some(session) => session.handle().shared.replaced.notified().await,
        None => std::future::pending().await,
    }
}

async fn recv(rx: &mut Option<mpsc::Receiver<Delivery>>) -> Option<Delivery> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
