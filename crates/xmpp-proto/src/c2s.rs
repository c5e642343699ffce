//! The client-to-server stream state machine (RFC 6120 §4–§7, RFC 7395 framing): stream
//! headers, STARTTLS, SASL PLAIN, resource binding, the legacy session iq, XEP-0198 stream
//! management nonzas, XEP-0352 client state, stanza rate limiting and the idle timeout.
//!
//! Driving contract (the same shape as `quinn-proto`):
//! 1. Feed what arrives with [`C2sStream::handle_input`]`(now, Input::Bytes(..))` — on WebSocket,
//!    one message's payload per call.
//! 2. Drain [`C2sStream::poll_output`] until `None` and act on each [`Output`]:
//!    `Send` → write (one WebSocket message each); `StartTls` → write what was already drained,
//!    run the TLS handshake, then feed [`Input::TlsEstablished`]; `Authenticate` → check the
//!    credentials and feed [`Input::AuthResult`]; `Bind` → register the session and feed
//!    [`Input::BindResult`]; `EnableSm`/`Resume` → see their docs; `Stanza` → route it;
//!    `Close` → write what was drained, then close the connection.
//! 3. Stanzas for the client go through [`C2sStream::deliver`], which applies client-state
//!    holding, counts them for stream management and frames them for the transport.
//! 4. Sleep until [`C2sStream::poll_timeout`] and then call [`C2sStream::handle_timeout`].
//!
//! After `Close` every further input is ignored.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::csi::{CsiQueue, Urgency, NS_CSI};
use crate::errors::{StanzaError, StanzaErrorCondition, StreamErrorCondition};
use crate::jid::{BareJid, FullJid};
use crate::sasl::{self, PlainCredentials, SaslFailure, NS_SASL};
use crate::shaper::{Admit, Shaper};
use crate::sm::{SmError, SmState, NS_SM};
use crate::xml::{ns, Element, Event, Limits, Stanza, StreamHeader, StreamParser, XmlError};

/// STARTTLS namespace.
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// Resource binding namespace.
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// Legacy session establishment namespace (RFC 3921).
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// Roster versioning stream feature (XEP-0237).
pub const NS_ROSTER_VER: &str = "urn:xmpp:features:rosterver";

/// How the stream is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One `<stream:stream>` over TCP, optionally upgraded with STARTTLS.
    Tcp,
    /// RFC 7395: one element per WebSocket message.
    WebSocket,
}

/// Fixed settings of one stream.
#[derive(Debug, Clone)]
pub struct C2sConfig {
    /// The domain we serve; stream headers must be addressed to it.
    pub domain: String,
    /// TCP or WebSocket.
    pub transport: Transport,
    /// The connection is already encrypted (direct TLS, `wss://`).
    pub secure: bool,
    /// STARTTLS can be offered (TCP with a certificate, not yet secure).
    pub tls_available: bool,
    /// Authentication is refused until the stream is encrypted.
    pub tls_required: bool,
    /// PLAIN may be used without encryption (loopback peers).
    pub plain_without_tls: bool,
    /// Parser limits.
    pub limits: Limits,
    /// Failed SASL attempts before the stream is closed.
    pub max_auth_failures: u32,
    /// Sustained client stanzas per second.
    pub stanza_rate_per_s: u32,
    /// Burst above the sustained rate.
    pub stanza_burst: u32,
    /// Silence after which the stream is closed.
    pub idle_timeout: Duration,
    /// Time from the first byte to a bound (or resumed) session. Bytes do not extend it, so a
    /// client trickling one byte at a time cannot hold a connection unauthenticated.
    pub auth_timeout: Duration,
    /// How long a client may keep sending faster than its stanza budget before it is closed.
    /// Until then it is only slowed: its input is not read while it has no tokens.
    pub sustained_overload: Duration,
    /// Unacknowledged stanzas kept for resumption.
    pub sm_max_unacked: usize,
    /// Bytes of unacknowledged stanzas kept for resumption.
    pub sm_max_unacked_bytes: usize,
    /// Stanzas held for an inactive client.
    pub csi_max_held: usize,
    /// Whether stream resumption is offered.
    pub sm_resumption: bool,
    /// Seed for stream ids (the core has no randomness of its own).
    pub id_seed: String,
}

/// What the shell feeds in.
#[derive(Debug)]
#[non_exhaustive]
pub enum Input<'a> {
    /// Received bytes (on WebSocket: one message).
    Bytes(&'a [u8]),
    /// The TLS handshake requested by [`Output::StartTls`] finished.
    TlsEstablished,
    /// The answer to [`Output::Authenticate`]: the authenticated bare JID, or why not.
    AuthResult(Result<BareJid, SaslFailure>),
    /// The answer to [`Output::Bind`]: the bound full JID, or a stanza error.
    BindResult(Result<FullJid, StanzaErrorCondition>),
    /// The answer to [`Output::Resume`]: the resumed session's JID and stream-management
    /// state, or `None` if there is no such session (the client then binds normally).
    ResumeResult(Option<(FullJid, SmState)>),
    /// The transport closed (EOF or error).
    Eof,
}

/// What the shell must do. Large payloads are boxed: the output queue keeps its capacity for
/// the life of the connection, so its element size is per-session memory.
#[derive(Debug)]
#[non_exhaustive]
pub enum Output {
    /// Write these bytes (on WebSocket: as one text message).
    Send(String),
    /// Start the TLS handshake now, then feed [`Input::TlsEstablished`].
    StartTls,
    /// Check these credentials, then feed [`Input::AuthResult`].
    Authenticate(Box<PlainCredentials>),
    /// Bind a resource (`None`: the server picks one), then feed [`Input::BindResult`].
    Bind(Option<String>),
    /// The client enabled stream management; `resumable` when it asked for resumption. The
    /// shell records the stream id it will be resumed under (given here).
    EnableSm {
        /// Resumption requested and granted.
        resumable: bool,
        /// The id to resume with (`previd`).
        id: String,
    },
    /// The client asks to resume `previd` having handled `h` stanzas; feed
    /// [`Input::ResumeResult`].
    Resume {
        /// The previous stream's id.
        previd: String,
        /// Stanzas the client handled.
        h: u32,
    },
    /// Write this `<a h='…'/>` (XEP-0198) once every stanza before it is handled: `h` counts
    /// the stanzas already output, and a shell that finishes some later (a message waiting
    /// for its history commit) must not acknowledge them before then.
    Ack(String),
    /// A stanza from the bound client, `from` not yet stamped.
    Stanza(Box<Stanza>),
    /// The client sent `<inactive/>` or `<active/>` (for metrics; holding is done here).
    ClientState {
        /// Whether the client is now active.
        active: bool,
    },
    /// Close the connection after writing what was drained. `error` says why, if not a clean
    /// close (for logs and metrics).
    Close {
        /// The stream error sent, if any.
        error: Option<StreamErrorCondition>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a stream header (first, after TLS, after SASL).
    AwaitHeader,
    /// Features sent; waiting for `<starttls/>` or `<auth/>`.
    PreAuth,
    /// `<proceed/>` sent; waiting for the shell's handshake.
    TlsHandshake,
    /// Credentials handed to the shell.
    Authenticating,
    /// Authenticated; waiting for bind or resume.
    PreBind,
    /// Bind handed to the shell.
    Binding,
    /// Resume handed to the shell.
    Resuming,
    /// Bound: stanzas flow.
    Ready,
    /// Finished.
    Closed,
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct C2sStream {
    config: C2sConfig,
    state: State,
    parser: StreamParser,
    out: VecDeque<Output>,
    secure: bool,
    header_sent: bool,
    streams_opened: u32,
    auth_failures: u32,
    user: Option<BareJid>,
    jid: Option<FullJid>,
    bind_id: Option<String>,
    sm: Option<SmState>,
    sm_id: Option<String>,
    resume_h: u32,
    csi: CsiQueue,
    /// Stanzas routed to this session that could not be written because the stream closed
    /// (or the close was caused by them): returned by [`take_held`](Self::take_held).
    undelivered: Vec<Vec<u8>>,
    /// The stanza budget of a bound client.
    shaper: Shaper,
    last_activity: Option<Instant>,
    /// When the stream must be bound by (set by the first input, cleared when bound).
    auth_deadline: Option<Instant>,
}

impl C2sStream {
    /// A new stream, waiting for the client's header.
    pub fn new(config: C2sConfig) -> C2sStream {
        let parser = StreamParser::new(config.limits.clone());
        let csi = CsiQueue::new(config.csi_max_held);
        let shaper = Shaper::new(
            config.stanza_rate_per_s,
            config.stanza_burst,
            config.sustained_overload,
        );
        C2sStream {
            secure: config.secure,
            config,
            state: State::AwaitHeader,
            parser,
            out: VecDeque::new(),
            header_sent: false,
            streams_opened: 0,
            auth_failures: 0,
            user: None,
            jid: None,
            bind_id: None,
            sm: None,
            sm_id: None,
            resume_h: 0,
            csi,
            undelivered: Vec::new(),
            shaper,
            last_activity: None,
            auth_deadline: None,
        }
    }

    /// The bound JID, once bound.
    pub fn jid(&self) -> Option<&FullJid> {
        self.jid.as_ref()
    }

    /// Whether the stream is encrypted.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Whether `Close` was emitted.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The stream-management state, when enabled.
    pub fn sm(&self) -> Option<&SmState> {
        self.sm.as_ref()
    }

    /// Takes the stream-management state (when the connection is gone and the session is kept
    /// for resumption or its unacknowledged stanzas are stored offline).
    pub fn take_sm(&mut self) -> Option<SmState> {
        self.sm.take()
    }

    /// Takes the stanzas accepted for the client but never written, in order: those held
    /// back for an inactive client (XEP-0352) and those that arrived after, or caused, the
    /// close. When the connection is gone the shell must treat them like unacknowledged ones
    /// (re-send on resumption, else store or hand over), not drop them.
    pub fn take_held(&mut self) -> Vec<Vec<u8>> {
        // Held ones were queued before anything that could close the stream.
        let mut held = self.csi.take_held();
        held.append(&mut self.undelivered);
        held
    }

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next: the idle deadline,
    /// the authentication deadline, or the end of a rate-limit pause.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        [
            self.last_activity.map(|at| at + self.config.idle_timeout),
            self.auth_deadline,
            self.shaper.paused_until(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether the shell must stop reading the client's input for now: the client spent its
    /// stanza budget, and what it already sent waits in the parser until tokens refill. Not
    /// reading lets TCP push back on the client (it is slowed, not cut off). Reading resumes
    /// after [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout).
    pub fn is_read_paused(&self) -> bool {
        self.shaper.paused_until().is_some() && self.state != State::Closed
    }

    /// Ends a rate-limit pause that is over (and handles the input it held back), and closes a
    /// stream that stayed idle or unauthenticated past its deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.auth_deadline.is_some_and(|deadline| now >= deadline) {
            return self.fail(
                StreamErrorCondition::ConnectionTimeout,
                Some("authentication took too long"),
            );
        }
        if self
            .last_activity
            .is_some_and(|at| now >= at + self.config.idle_timeout)
        {
            return self.fail(StreamErrorCondition::ConnectionTimeout, None);
        }
        if self.shaper.resume_if_due(now) {
            self.drain_parser(now);
        }
    }

    /// Closes the stream from the server side, e.g. on shutdown (`SystemShutdown`) or when a
    /// newer session took the resource (`Conflict`).
    pub fn close_with(&mut self, condition: StreamErrorCondition, text: Option<&str>) {
        if self.state != State::Closed {
            self.fail(condition, text);
        }
    }

    /// Feeds one input.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        if self.state == State::Closed {
            return;
        }
        self.last_activity = Some(now);
        if self.auth_deadline.is_none() && self.state != State::Ready {
            self.auth_deadline = Some(now + self.config.auth_timeout);
        }
        match input {
            Input::Bytes(bytes) => {
                self.parser.feed(bytes);
                self.drain_parser(now);
            }
            Input::TlsEstablished => {
                if self.state != State::TlsHandshake {
                    return self.fail(StreamErrorCondition::UndefinedCondition, None);
                }
                // Nothing sent in the clear after <starttls/> may be used (RFC 6120 §5.4.3.3).
                self.parser = StreamParser::new(self.config.limits.clone());
                self.secure = true;
                self.header_sent = false;
                self.state = State::AwaitHeader;
            }
            Input::AuthResult(result) => self.auth_result(result),
            Input::BindResult(result) => self.bind_result(result),
            Input::ResumeResult(result) => self.resume_result(result),
            Input::Eof => {
                self.state = State::Closed;
                self.out.push_back(Output::Close { error: None });
            }
        }
    }

    /// Frames a stanza for the client: holds it while the client is inactive (unless urgent),
    /// counts it for stream management, and queues it as [`Output::Send`]. Before the stream
    /// is bound it is held and written once it is; after the close it is kept for
    /// [`take_held`](Self::take_held).
    pub fn deliver(&mut self, stanza: &str, urgency: Urgency) {
        if self.state != State::Ready {
            // Closed: routed here but never written, so the shell gets it back from
            // `take_held`. Not bound yet (a resumption or bind in flight): held until the
            // stream is ready, then written in order.
            self.undelivered.push(stanza.as_bytes().to_vec());
            return;
        }
        let framed = match self.config.transport {
            // RFC 7395 §3.3: nothing is inherited, so each stanza names jabber:client.
            Transport::WebSocket => with_client_namespace(stanza),
            Transport::Tcp => stanza.to_string(),
        };
        for ready in self.csi.push(framed.into_bytes(), urgency) {
            self.send_counted(ready);
        }
    }

    /// Writes what [`deliver`](Self::deliver) held while the stream was not yet bound.
    fn deliver_early(&mut self) {
        for stanza in std::mem::take(&mut self.undelivered) {
            let text = String::from_utf8(stanza).expect("stanzas are built from str");
            self.deliver(&text, Urgency::Urgent);
        }
    }

    fn send_counted(&mut self, stanza: Vec<u8>) {
        // A flush of several held stanzas may have overflowed the unacknowledged queue
        // part-way: nothing may follow the Close that caused, and what was not written is
        // kept for the shell.
        if self.state == State::Closed {
            self.undelivered.push(stanza);
            return;
        }
        if let Some(sm) = &mut self.sm {
            if let Err(SmError::QueueFull) = sm.sent(&stanza) {
                self.undelivered.push(stanza);
                return self.fail(
                    StreamErrorCondition::ResourceConstraint,
                    Some("too many unacknowledged stanzas"),
                );
            }
        }
        let text = String::from_utf8(stanza).expect("stanzas are built from str");
        self.out.push_back(Output::Send(text));
        if self
            .sm
            .as_ref()
            .is_some_and(|sm| sm.resumable() && sm.unacked_count() % 5 == 0)
        {
            // Ask for an ack every few stanzas so the resumable queue stays short.
            self.send_raw(format!("<r xmlns='{NS_SM}'/>"));
        }
    }

    fn send_raw(&mut self, text: String) {
        self.out.push_back(Output::Send(text));
    }

    fn drain_parser(&mut self, now: Instant) {
        // After <starttls/>, whatever else came in the clear stays unparsed and is dropped with
        // the parser once TLS is up (RFC 6120 §5.4.3.3): acting on it would let a
        // man-in-the-middle inject commands into the encrypted session (the STARTTLS command
        // injection of CVE-2011-0411), and answering it would put a stream error without a
        // stream header into the new TLS stream.
        while !matches!(self.state, State::Closed | State::TlsHandshake) {
            // Every element of a bound client spends a token, nonzas too (an <r/> is answered).
            let bound = self.state == State::Ready;
            if bound {
                match self.shaper.admit(now) {
                    Admit::Go => {}
                    Admit::Wait => return,
                    Admit::Overloaded => {
                        return self.fail(
                            StreamErrorCondition::PolicyViolation,
                            Some("stanza rate limit exceeded for too long"),
                        )
                    }
                }
            }
            match self.parser.next_event() {
                Ok(None) => return,
                Ok(Some(event)) => {
                    // Input taken now counts as activity now (it may have waited out a pause).
                    self.last_activity = Some(now);
                    if bound && matches!(event, Event::Stanza(_)) {
                        self.shaper.spend();
                    }
                    self.handle_event(event)
                }
                Err(error) => return self.fail_xml(&error),
            }
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::StreamOpen(header) | Event::Open(header) => self.stream_header(header),
            Event::Close => {
                // XEP-0198 §5: a stream the client closed cleanly is over for good; only a
                // broken connection leaves the session resumable. The shell then ends the
                // session (unavailable presence, unacknowledged stanzas stored offline).
                if let Some(sm) = &mut self.sm {
                    sm.forbid_resumption();
                }
                let closing = match self.config.transport {
                    Transport::Tcp => "</stream:stream>".to_string(),
                    Transport::WebSocket => format!("<close xmlns='{}'/>", ns::FRAMING),
                };
                self.send_raw(closing);
                self.state = State::Closed;
                self.out.push_back(Output::Close { error: None });
            }
            Event::Stanza(stanza) => self.element(stanza),
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    fn stream_header(&mut self, header: StreamHeader) {
        if self.state != State::AwaitHeader {
            // A WebSocket client re-sending <open/> mid-stream, or a TCP restart at the wrong
            // moment.
            return self.fail(
                StreamErrorCondition::BadFormat,
                Some("unexpected stream header"),
            );
        }
        self.send_header();
        if header.to.as_deref().map(str::to_ascii_lowercase).as_deref()
            != Some(self.config.domain.as_str())
        {
            return self.fail(StreamErrorCondition::HostUnknown, None);
        }
        if !header
            .version
            .as_deref()
            .is_some_and(|v| v.starts_with("1."))
        {
            return self.fail(StreamErrorCondition::UnsupportedVersion, None);
        }
        // RFC 6120 §4.8.2: a client stream's content namespace is jabber:client (WebSocket
        // <open/> carries none; each stanza names it instead).
        if self.config.transport == Transport::Tcp
            && header.default_ns.as_deref() != Some(ns::CLIENT)
        {
            return self.fail(
                StreamErrorCondition::InvalidNamespace,
                Some("the content namespace must be jabber:client"),
            );
        }
        let features = self.features();
        self.send_raw(features);
        self.state = if self.user.is_some() {
            State::PreBind
        } else {
            State::PreAuth
        };
    }

    fn send_header(&mut self) {
        if self.header_sent {
            return;
        }
        self.header_sent = true;
        self.streams_opened += 1;
        let id = format!("{}{}", self.config.id_seed, self.streams_opened);
        let domain = crate::xml::escape_attr(&self.config.domain);
        let header = match self.config.transport {
            Transport::Tcp => format!(
                "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' id='{id}' from='{domain}' version='1.0' xml:lang='en'>",
                ns::CLIENT,
                ns::STREAMS
            ),
            Transport::WebSocket => format!(
                "<open xmlns='{}' id='{id}' from='{domain}' version='1.0' xml:lang='en'/>",
                ns::FRAMING
            ),
        };
        self.send_raw(header);
    }

    fn features(&self) -> String {
        let mut features = String::new();
        if self.user.is_none() {
            let tls_offer = self.config.transport == Transport::Tcp
                && !self.secure
                && self.config.tls_available;
            if tls_offer {
                let required = if self.config.tls_required {
                    "<required/>"
                } else {
                    ""
                };
                features.push_str(&format!("<starttls xmlns='{NS_TLS}'>{required}</starttls>"));
            }
            if self.plain_allowed() {
                features.push_str(&format!(
                    "<mechanisms xmlns='{NS_SASL}'><mechanism>PLAIN</mechanism></mechanisms>"
                ));
            }
        } else {
            features.push_str(&format!(
                "<bind xmlns='{NS_BIND}'/><session xmlns='{NS_SESSION}'><optional/></session>\
                 <sm xmlns='{NS_SM}'/><csi xmlns='{NS_CSI}'/><ver xmlns='{NS_ROSTER_VER}'/>"
            ));
        }
        match self.config.transport {
            Transport::Tcp => format!("<stream:features>{features}</stream:features>"),
            Transport::WebSocket => {
                format!(
                    "<stream:features xmlns:stream='{}'>{features}</stream:features>",
                    ns::STREAMS
                )
            }
        }
    }

    fn plain_allowed(&self) -> bool {
        self.secure || self.config.plain_without_tls || !self.config.tls_required
    }

    fn element(&mut self, stanza: Stanza) {
        let envelope = stanza.envelope();
        let namespace = envelope.namespace.clone().unwrap_or_default();
        let name = envelope.name.clone();
        match (self.state, name.as_str(), namespace.as_str()) {
            (State::PreAuth, "starttls", NS_TLS) => {
                if self.config.transport != Transport::Tcp
                    || self.secure
                    || !self.config.tls_available
                {
                    return self.fail(
                        StreamErrorCondition::PolicyViolation,
                        Some("STARTTLS is not available"),
                    );
                }
                self.send_raw(format!("<proceed xmlns='{NS_TLS}'/>"));
                self.state = State::TlsHandshake;
                self.out.push_back(Output::StartTls);
            }
            (State::PreAuth, "auth", NS_SASL) => self.auth(&stanza),
            // An abort counts like a failed attempt: before authentication nothing else
            // limits how many answers a client can ask for.
            (State::PreAuth, "abort", NS_SASL) => self.auth_failed(SaslFailure::Aborted),
            (State::PreBind, "iq", ns::CLIENT) => self.bind_request(&stanza),
            (State::PreBind, "resume", NS_SM) => self.resume_request(&stanza),
            (State::PreBind | State::Ready, "enable", NS_SM) => self.enable_sm(&stanza),
            (State::Ready, "r", NS_SM) => {
                let h = self.sm.as_ref().map(SmState::inbound_h);
                match h {
                    Some(h) => self
                        .out
                        .push_back(Output::Ack(format!("<a xmlns='{NS_SM}' h='{h}'/>"))),
                    None => self.sm_failed("stream management is not enabled"),
                }
            }
            (State::Ready, "a", NS_SM) => self.ack(&stanza),
            (State::Ready, "active" | "inactive", NS_CSI) => {
                let active = name == "active";
                for ready in self.csi.set_active(active) {
                    self.send_counted(ready);
                }
                if self.state == State::Closed {
                    return;
                }
                self.out.push_back(Output::ClientState { active });
            }
            (State::Ready, "message" | "presence" | "iq", ns::CLIENT) => {
                if let Some(sm) = &mut self.sm {
                    sm.handled_inbound();
                }
                if name == "iq" && self.is_session_iq(&stanza) {
                    let id = crate::xml::escape_attr(
                        stanza.envelope().id.as_deref().unwrap_or_default(),
                    )
                    .into_owned();
                    self.deliver(&format!("<iq type='result' id='{id}'/>"), Urgency::Urgent);
                    return;
                }
                self.out.push_back(Output::Stanza(Box::new(stanza)));
            }
            (
                State::PreAuth | State::PreBind | State::AwaitHeader,
                "message" | "presence" | "iq",
                _,
            ) => self.fail(StreamErrorCondition::NotAuthorized, None),
            (
                State::Authenticating | State::Binding | State::Resuming | State::TlsHandshake,
                _,
                _,
            ) => {
                // A pipelining client: RFC 6120 does not allow sending before the answer.
                self.fail(
                    StreamErrorCondition::PolicyViolation,
                    Some("wait for the server's answer"),
                )
            }
            (_, "message" | "presence" | "iq", _) => {
                self.fail(StreamErrorCondition::InvalidNamespace, None)
            }
            _ => self.fail(StreamErrorCondition::UnsupportedStanzaType, None),
        }
    }

    fn parse(&mut self, stanza: &Stanza) -> Option<Element> {
        let inherited = match self.config.transport {
            Transport::Tcp => Some(ns::CLIENT),
            Transport::WebSocket => None,
        };
        match Element::parse(stanza.as_str(), inherited) {
            Ok(element) => Some(element),
            Err(error) => {
                self.fail_xml(&error);
                None
            }
        }
    }

    fn auth(&mut self, stanza: &Stanza) {
        let Some(auth) = self.parse(stanza) else {
            return;
        };
        if !self.plain_allowed() {
            self.send_raw(SaslFailure::EncryptionRequired.to_xml());
            return self.fail(
                StreamErrorCondition::PolicyViolation,
                Some("STARTTLS first"),
            );
        }
        if auth.attr("mechanism") != Some("PLAIN") {
            return self.auth_failed(SaslFailure::InvalidMechanism);
        }
        let credentials = match sasl::decode_plain(&auth.text()) {
            Ok(credentials) => credentials,
            Err(failure) => return self.auth_failed(failure),
        };
        // Browsers send an empty authzid, Node the user's bare JID; nothing else may be asked for.
        let own = format!("{}@{}", credentials.authcid, self.config.domain);
        if !credentials.authzid.is_empty() && !credentials.authzid.eq_ignore_ascii_case(&own) {
            return self.auth_failed(SaslFailure::InvalidAuthzid);
        }
        self.state = State::Authenticating;
        self.out
            .push_back(Output::Authenticate(Box::new(credentials)));
    }

    fn auth_result(&mut self, result: Result<BareJid, SaslFailure>) {
        if self.state != State::Authenticating {
            return;
        }
        match result {
            Ok(user) => {
                self.send_raw(format!("<success xmlns='{NS_SASL}'/>"));
                self.user = Some(user);
                self.state = State::AwaitHeader;
                self.header_sent = false;
                self.parser.restart();
            }
            Err(failure) => {
                self.state = State::PreAuth;
                self.auth_failed(failure);
            }
        }
    }

    fn auth_failed(&mut self, failure: SaslFailure) {
        self.send_raw(failure.to_xml());
        self.auth_failures += 1;
        if self.auth_failures >= self.config.max_auth_failures {
            self.fail(
                StreamErrorCondition::PolicyViolation,
                Some("too many failed authentication attempts"),
            );
        }
    }

    fn bind_request(&mut self, stanza: &Stanza) {
        let Some(iq) = self.parse(stanza) else { return };
        let id = iq.attr("id").unwrap_or_default().to_string();
        if iq.attr("type") == Some("set") {
            if let Some(bind) = iq.child("bind", NS_BIND) {
                let resource = bind
                    .child("resource", NS_BIND)
                    .map(Element::text)
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty());
                self.bind_id = Some(id);
                self.state = State::Binding;
                self.out.push_back(Output::Bind(resource));
                return;
            }
        }
        // RFC 6120 §7.1: before binding, only the bind iq is allowed.
        self.fail(
            StreamErrorCondition::NotAuthorized,
            Some("bind a resource first"),
        )
    }

    fn bind_result(&mut self, result: Result<FullJid, StanzaErrorCondition>) {
        if self.state != State::Binding {
            return;
        }
        let id = crate::xml::escape_attr(self.bind_id.as_deref().unwrap_or_default()).into_owned();
        match result {
            Ok(jid) => {
                let jid_text = crate::xml::escape_text(&jid.to_string()).into_owned();
                self.jid = Some(jid);
                self.state = State::Ready;
                self.auth_deadline = None;
                self.deliver(
                    &format!("<iq type='result' id='{id}'><bind xmlns='{NS_BIND}'><jid>{jid_text}</jid></bind></iq>"),
                    Urgency::Urgent,
                );
                self.deliver_early();
            }
            Err(condition) => {
                self.state = State::PreBind;
                let error = StanzaError::new(condition).to_xml();
                self.send_raw(self.frame(&format!("<iq type='error' id='{id}'>{error}</iq>")));
            }
        }
    }

    fn frame(&self, stanza: &str) -> String {
        match self.config.transport {
            Transport::WebSocket => with_client_namespace(stanza),
            Transport::Tcp => stanza.to_string(),
        }
    }

    fn is_session_iq(&self, stanza: &Stanza) -> bool {
        let envelope = stanza.envelope();
        let to_server = envelope
            .to
            .as_deref()
            .is_none_or(|to| to.eq_ignore_ascii_case(&self.config.domain));
        // Cheap pre-check before parsing: only a set iq with a session child qualifies.
        if !(to_server
            && envelope.stanza_type.as_deref() == Some("set")
            && stanza.as_str().contains(NS_SESSION))
        {
            return false;
        }
        // The namespace may also just appear in some other payload's text or attributes; such
        // an iq is routed, not answered with an empty result.
        let inherited = match self.config.transport {
            Transport::Tcp => Some(ns::CLIENT),
            Transport::WebSocket => None,
        };
        Element::parse(stanza.as_str(), inherited)
            .is_ok_and(|iq| iq.child("session", NS_SESSION).is_some())
    }

    fn enable_sm(&mut self, stanza: &Stanza) {
        let Some(enable) = self.parse(stanza) else {
            return;
        };
        if self.sm.is_some() {
            return self.sm_failed("stream management is already enabled");
        }
        if self.state != State::Ready {
            return self.sm_failed("bind a resource first");
        }
        let wants_resume = matches!(enable.attr("resume"), Some("true" | "1"));
        let resumable = wants_resume && self.config.sm_resumption;
        let id = format!("{}sm{}", self.config.id_seed, self.streams_opened);
        self.sm = Some(
            SmState::new(resumable, self.config.sm_max_unacked)
                .with_max_unacked_bytes(self.config.sm_max_unacked_bytes),
        );
        let reply = if resumable {
            self.sm_id = Some(id.clone());
            format!("<enabled xmlns='{NS_SM}' id='{id}' resume='true'/>")
        } else {
            format!("<enabled xmlns='{NS_SM}'/>")
        };
        self.send_raw(reply);
        self.out.push_back(Output::EnableSm { resumable, id });
    }

    fn sm_failed(&mut self, text: &str) {
        let text = crate::xml::escape_text(text);
        self.send_raw(format!(
            "<failed xmlns='{NS_SM}'><unexpected-request xmlns='{}'/><text xmlns='{}'>{text}</text></failed>",
            crate::errors::NS_STANZAS,
            crate::errors::NS_STANZAS
        ));
    }

    fn ack(&mut self, stanza: &Stanza) {
        let Some(a) = self.parse(stanza) else { return };
        let Some(h) = a.attr("h").and_then(|h| h.parse::<u32>().ok()) else {
            return self.fail(
                StreamErrorCondition::BadFormat,
                Some("<a/> needs a numeric h"),
            );
        };
        let result = match &mut self.sm {
            Some(sm) => sm.ack(h),
            None => return,
        };
        if let Err(SmError::HandledCountTooHigh { acked, sent }) = result {
            self.handled_count_too_high(acked, sent);
        }
    }

    /// XEP-0198 §6: an `h` above what was sent ends the stream. `send-count` is the number of
    /// stanzas sent (what `h` may be at most), not the number still unacknowledged.
    fn handled_count_too_high(&mut self, h: u32, sent: u32) {
        let error = format!(
            "<stream:error><undefined-condition xmlns='{}'/><handled-count-too-high xmlns='{NS_SM}' h='{h}' send-count='{sent}'/></stream:error>",
            crate::errors::NS_STREAMS,
        );
        let error = self.frame_stream_error(error);
        self.send_raw(error);
        self.close_after_error(StreamErrorCondition::UndefinedCondition);
    }

    fn resume_request(&mut self, stanza: &Stanza) {
        let Some(resume) = self.parse(stanza) else {
            return;
        };
        let previd = resume.attr("previd").map(str::to_string);
        let h = resume.attr("h").and_then(|h| h.parse::<u32>().ok());
        let (Some(previd), Some(h)) = (previd, h) else {
            return self.sm_failed("resume needs previd and h");
        };
        self.state = State::Resuming;
        // A resumed session keeps its id, so it can be resumed again under the same previd.
        self.sm_id = Some(previd.clone());
        self.resume_h = h;
        self.out.push_back(Output::Resume { previd, h });
    }

    fn resume_result(&mut self, result: Option<(FullJid, SmState)>) {
        if self.state != State::Resuming {
            return;
        }
        let Some((jid, sm)) = result else {
            self.state = State::PreBind;
            self.sm_id = None;
            self.send_raw(format!(
                "<failed xmlns='{NS_SM}'><item-not-found xmlns='{}'/></failed>",
                crate::errors::NS_STANZAS
            ));
            return;
        };
        let mut sm = sm;
        // Check the client's h before saying <resumed/>: a stream that fails right after
        // being announced as resumed would leave the client believing it was.
        let resend = match sm.resume(self.resume_h) {
            Ok(resend) => resend,
            Err(SmError::HandledCountTooHigh { acked, sent }) => {
                return self.handled_count_too_high(acked, sent)
            }
            Err(_) => return self.fail(StreamErrorCondition::UndefinedCondition, None),
        };
        let previd =
            crate::xml::escape_attr(self.sm_id.as_deref().unwrap_or_default()).into_owned();
        self.jid = Some(jid);
        self.state = State::Ready;
        self.auth_deadline = None;
        self.send_raw(format!(
            "<resumed xmlns='{NS_SM}' h='{}' previd='{previd}'/>",
            sm.inbound_h()
        ));
        for stanza in resend {
            let text = String::from_utf8(stanza).expect("stanzas are built from str");
            let framed = self.frame(&text);
            self.send_raw(framed);
        }
        self.sm = Some(sm);
        self.deliver_early();
    }

    fn fail_xml(&mut self, error: &XmlError) {
        self.fail(error.stream_error_condition(), Some(&error.to_string()));
    }

    fn fail(&mut self, condition: StreamErrorCondition, text: Option<&str>) {
        // RFC 6120 §4.9.1.1: an error before our header still needs the header first.
        self.send_header();
        let error = self.frame_stream_error(condition.to_xml(text));
        self.send_raw(error);
        self.close_after_error(condition);
    }

    /// On WebSocket every message is a document of its own (RFC 7395 §3.3), so the `stream:`
    /// prefix of `<stream:error>` must be declared on it.
    fn frame_stream_error(&self, error: String) -> String {
        match self.config.transport {
            Transport::WebSocket => error.replacen(
                "<stream:error>",
                &format!("<stream:error xmlns:stream='{}'>", ns::STREAMS),
                1,
            ),
            Transport::Tcp => error,
        }
    }

    fn close_after_error(&mut self, condition: StreamErrorCondition) {
        let closing = match self.config.transport {
            Transport::Tcp => "</stream:stream>".to_string(),
            Transport::WebSocket => format!("<close xmlns='{}'/>", ns::FRAMING),
        };
        self.send_raw(closing);
        self.state = State::Closed;
        self.out.push_back(Output::Close {
            error: Some(condition),
        });
    }
}

/// Adds `xmlns='jabber:client'` to a stanza's opening tag unless it declares a default
/// namespace already; everything else stays byte-identical.
pub fn with_client_namespace(stanza: &str) -> String {
    let bytes = stanza.as_bytes();
    let name_end = bytes
        .iter()
        .skip(1)
        .position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')
        .map_or(bytes.len(), |i| i + 1);
    // Scan the opening tag's attributes, skipping quoted values (which may contain '>').
    let mut i = name_end;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b'>' => break,
            None if bytes[i - 1].is_ascii_whitespace()
                && declares_default_namespace(&bytes[i..]) =>
            {
                return stanza.to_string();
            }
            None => {}
        }
        i += 1;
    }
    format!(
        "{} xmlns='{}'{}",
        &stanza[..name_end],
        ns::CLIENT,
        &stanza[name_end..]
    )
}

/// Whether `attribute` (the rest of an opening tag from an attribute name on) is `xmlns`
/// followed by `=`, with the white space XML allows around it (XML 1.0 §2.3 `Eq`).
fn declares_default_namespace(attribute: &[u8]) -> bool {
    attribute.strip_prefix(b"xmlns").is_some_and(|rest| {
        rest.iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'=')
    })
}
