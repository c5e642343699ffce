//! The bodies of Switchboard's fuzz targets (STYLE §8), as plain functions so that a stable
//! `cargo test` can run them over the seed corpus and generated inputs, and `cargo fuzz` can run
//! them under libFuzzer (`fuzz_targets/*.rs` are one-line wrappers).
//!
//! Each function must never panic on any input; a panic is either a crash in `xmpp-proto` or a
//! broken property, and the input that caused it belongs in `crates/xmpp-proto/tests/data/`.
//!
//! The first byte of the `stream_parser` and `c2s_stream` inputs selects a configuration (see
//! [`c2s_config`]); the rest is what the client sends.
//!
//! A long libFuzzer run writes every new input into the first corpus directory it is given:
//! give it a scratch one so `corpus/` keeps only the curated seeds, e.g.
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run stream_parser /tmp/sp corpus/stream_parser -- -max_total_time=120`.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use xmpp_proto::c2s::{with_client_namespace, C2sConfig, C2sStream, Input, Output, Transport};
use xmpp_proto::csi::Urgency;
use xmpp_proto::errors::StanzaErrorCondition;
use xmpp_proto::sasl::{self, SaslFailure};
use xmpp_proto::sm::SmState;
use xmpp_proto::xml::{children, ns};
use xmpp_proto::{BareJid, Element, Event, Framing, Limits, StreamParser, XmlError};

/// The domain the fuzzed server serves.
pub const DOMAIN: &str = "chat.example.com";

/// The `previd` the fuzzed shell knows how to resume.
pub const KNOWN_PREVID: &str = "known";

/// Target `stream_parser`: the tokenizer never panics, and feeding the same bytes whole or in
/// arbitrary chunks gives the same events and the same error. TCP stream restarts happen where
/// the state machine would call them (right after `<starttls/>` and `<auth/>`).
pub fn stream_parser(data: &[u8]) {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let limits = limits(mode & 1 == 1);
    let whole = parse_all(&limits, std::iter::once(input));
    let mut rng = XorShift::new(hash(data));
    let chunked = parse_all(&limits, chunks(input, &mut rng));
    assert_eq!(whole, chunked, "whole and chunked feeding differ");
    // Per byte, the slowest and most boundary-rich split.
    let bytewise = parse_all(&limits, input.chunks(1));
    assert_eq!(whole, bytewise, "whole and byte-at-a-time feeding differ");

    // Routing rewrites `from`/`to` without touching anything else, and the result must still
    // parse as the same element with the new addresses.
    for event in &whole.0 {
        let Event::Stanza(stanza) = event else {
            continue;
        };
        let inherited = stanza.envelope().namespace.as_deref();
        let Ok(original) = Element::parse(stanza.as_str(), inherited) else {
            continue;
        };
        // Routing reads a message's traits by walking its children without a tree: the walk
        // sees exactly the children the tree builder sees, with the same namespaces.
        let walked: Vec<(String, String)> = children(stanza.as_str(), inherited.unwrap_or(""))
            .map(|child| (child.name.to_string(), child.namespace.into_owned()))
            .collect();
        let built: Vec<(String, String)> = original
            .children()
            .map(|child| {
                let namespace = child.namespace().unwrap_or("").to_string();
                (child.name().to_string(), namespace)
            })
            .collect();
        assert_eq!(
            walked,
            built,
            "children walk disagrees on {:?}",
            stanza.as_str()
        );
        let rewritten = stanza.with_from_to(Some("7-42@chat.example.com/r&'"), Some("x@y"));
        let mut parsed = Element::parse(&rewritten, inherited)
            .unwrap_or_else(|e| panic!("rewritten stanza {rewritten:?} does not parse: {e}"));
        assert_eq!(parsed.attr("from"), Some("7-42@chat.example.com/r&'"));
        assert_eq!(parsed.attr("to"), Some("x@y"));
        let mut expected = original;
        for name in ["from", "to"] {
            expected.remove_attr(name);
            parsed.remove_attr(name);
        }
        assert_eq!(parsed, expected, "rewriting from/to changed {rewritten:?}");
    }
}

/// Target `c2s_stream`: arbitrary client bytes, in arbitrary reads, through a [`C2sStream`]
/// whose shell says yes to everything reasonable. The core must never panic, never emit
/// anything after `Close`, and everything it writes must be well-formed for the client: each
/// WebSocket message a complete element, the TCP byte stream a well-formed XMPP stream.
pub fn c2s_stream(data: &[u8]) {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let mut rng = XorShift::new(hash(data));
    let mut shell = Shell::new(c2s_config(mode));
    shell.input(Input::Bytes(b""));
    for chunk in chunks(input, &mut rng) {
        shell.now += Duration::from_millis(rng.below(3_000) as u64);
        if shell
            .stream
            .poll_timeout()
            .is_some_and(|at| shell.now >= at)
        {
            shell.stream.handle_timeout(shell.now);
            shell.drain(&mut rng);
        }
        shell.input(Input::Bytes(chunk));
    }
    shell.input(Input::Eof);
    assert!(shell.stream.is_closed());
    assert_eq!(shell.stream.poll_timeout(), None);
}

/// Target `element_parse`: [`Element::parse`] never panics, and what it accepts serialises to
/// text that parses back to an equal element (and serialises identically). Also checks that
/// [`with_client_namespace`] keeps a parseable element parseable.
pub fn element_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for inherited in [None, Some(ns::CLIENT)] {
        let Ok(element) = Element::parse(text, inherited) else {
            continue;
        };
        let xml = element.to_xml(inherited);
        let again = Element::parse(&xml, inherited)
            .unwrap_or_else(|e| panic!("{text:?} serialised as {xml:?}, which fails: {e}"));
        assert_eq!(again, element, "{text:?} → {xml:?} changed the element");
        assert_eq!(again.to_xml(inherited), xml, "serialisation is not stable");

        if inherited.is_none() && text.starts_with('<') {
            let framed = with_client_namespace(text);
            let framed_element = Element::parse(&framed, None)
                .unwrap_or_else(|e| panic!("{text:?} framed as {framed:?}, which fails: {e}"));
            match element.namespace() {
                Some(namespace) => assert_eq!(framed_element.namespace(), Some(namespace)),
                // `xmlns=''` declares "no namespace" and is left alone; otherwise the element
                // lands in jabber:client.
                None if framed == text => assert!(text.contains("xmlns"), "{text:?}"),
                None => assert_eq!(framed_element.namespace(), Some(ns::CLIENT)),
            }
        }
    }
}

/// Target `sasl_plain`: [`sasl::decode_plain`] never panics; what it accepts re-encodes to the
/// same credentials; base64 round-trips.
pub fn sasl_plain(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(credentials) = sasl::decode_plain(&text) {
        assert!(!credentials.authcid.is_empty() && !credentials.password.is_empty());
        for part in [
            &credentials.authzid,
            &credentials.authcid,
            &credentials.password,
        ] {
            assert!(!part.contains('\0'));
        }
        let encoded = sasl::base64_encode(
            format!(
                "{}\0{}\0{}",
                credentials.authzid, credentials.authcid, credentials.password
            )
            .as_bytes(),
        );
        assert_eq!(sasl::decode_plain(&encoded), Ok(credentials));
    }
    if let Some(bytes) = sasl::base64_decode(&text) {
        let encoded = sasl::base64_encode(&bytes);
        assert_eq!(sasl::base64_decode(&encoded), Some(bytes));
    }
    assert_eq!(
        sasl::base64_decode(&sasl::base64_encode(data)),
        Some(data.to_vec())
    );
}

/// The stream configuration selected by a mode byte. Lowercase ASCII letters give the default
/// parser limits, uppercase ones small limits; bit 0 WebSocket, bit 1 already encrypted, bit 2
/// TLS required, bit 3 PLAIN allowed in the clear, bit 4 resumption off, bit 7 a tiny
/// unacknowledged queue.
pub fn c2s_config(mode: u8) -> C2sConfig {
    let bit = |n: u8| mode & (1 << n) != 0;
    C2sConfig {
        domain: DOMAIN.to_string(),
        transport: if bit(0) {
            Transport::WebSocket
        } else {
            Transport::Tcp
        },
        secure: bit(1),
        tls_available: true,
        tls_required: bit(2),
        plain_without_tls: bit(3),
        limits: limits(!bit(5)),
        max_auth_failures: 3,
        stanza_rate_per_s: 20,
        stanza_burst: 40,
        idle_timeout: Duration::from_secs(30),
        auth_timeout: Duration::from_secs(20),
        sm_max_unacked_bytes: 64 * 1024,
        sustained_overload: Duration::from_secs(10),
        sm_max_unacked: if bit(7) { 3 } else { 100 },
        csi_max_held: 4,
        sm_resumption: !bit(4),
        id_seed: "fuzz".to_string(),
    }
}

/// Default limits, or small ones that inputs of a few hundred bytes can hit.
pub fn limits(small: bool) -> Limits {
    let mut limits = Limits::default();
    if small {
        limits.max_depth = 4;
        limits.max_stanza_bytes = 300;
        limits.max_header_bytes = 200;
        limits.max_attributes = 6;
    }
    limits
}

type Parsed = (Vec<Event>, Option<XmlError>);

fn parse_all<'a>(limits: &Limits, chunks: impl Iterator<Item = &'a [u8]>) -> Parsed {
    let mut parser = StreamParser::new(limits.clone());
    let mut events = Vec::new();
    for chunk in chunks {
        parser.feed(chunk);
        loop {
            match parser.next_event() {
                Ok(Some(event)) => {
                    let restart = parser.framing() == Some(Framing::Tcp)
                        && matches!(&event, Event::Stanza(s)
                            if matches!(s.envelope().name.as_str(), "starttls" | "auth"));
                    events.push(event);
                    if restart {
                        parser.restart();
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    assert_eq!(
                        parser.next_event(),
                        Err(error.clone()),
                        "a failed parser repeats its error"
                    );
                    return (events, Some(error));
                }
            }
        }
    }
    (events, None)
}

/// A shell that answers the core's requests at once, the way `src/xmpp/conn.rs` does, and
/// checks what the core writes.
struct Shell {
    stream: C2sStream,
    transport: Transport,
    now: Instant,
    user: Option<BareJid>,
    closed: bool,
    /// TCP: the client's view of what we write.
    client_view: StreamParser,
    /// Everything written, for failure messages.
    transcript: Vec<String>,
}

impl Shell {
    fn new(config: C2sConfig) -> Shell {
        let transport = config.transport;
        // The only clock reading; the fuzzer moves `now` itself.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        Shell {
            stream: C2sStream::new(config),
            transport,
            now,
            user: None,
            closed: false,
            client_view: client_parser(),
            transcript: Vec::new(),
        }
    }

    fn input(&mut self, input: Input<'_>) {
        self.stream.handle_input(self.now, input);
        let mut rng = XorShift::new(self.transcript.len() as u64);
        self.drain(&mut rng);
    }

    fn drain(&mut self, rng: &mut XorShift) {
        while let Some(output) = self.stream.poll_output() {
            assert!(
                !self.closed,
                "{output:?} after Close; wrote {:?}",
                self.transcript
            );
            match output {
                Output::Send(text) | Output::Ack(text) => self.check_written(text),
                Output::StartTls => self.stream.handle_input(self.now, Input::TlsEstablished),
                Output::Authenticate(credentials) => {
                    let result = if credentials.password.starts_with("bad") {
                        Err(SaslFailure::NotAuthorized)
                    } else {
                        BareJid::new(Some(&credentials.authcid), DOMAIN)
                            .map_err(|_| SaslFailure::NotAuthorized)
                    };
                    self.user = result.clone().ok();
                    self.stream
                        .handle_input(self.now, Input::AuthResult(result));
                }
                Output::Bind(resource) => {
                    let user = self
                        .user
                        .clone()
                        .expect("Bind only after a successful auth");
                    let result = user
                        .with_resource(resource.as_deref().unwrap_or("fuzz"))
                        .map_err(|_| StanzaErrorCondition::BadRequest);
                    self.stream
                        .handle_input(self.now, Input::BindResult(result));
                }
                Output::Resume { previd, .. } => {
                    let user = self
                        .user
                        .clone()
                        .expect("Resume only after a successful auth");
                    let result = (previd == KNOWN_PREVID).then(|| {
                        let mut sm = SmState::new(true, 10);
                        for n in 0..3 {
                            sm.sent(
                                format!("<message id='old{n}'><body>{n}</body></message>")
                                    .as_bytes(),
                            )
                            .expect("room for three");
                        }
                        sm.handled_inbound();
                        (user.with_resource("old").expect("valid resource"), sm)
                    });
                    self.stream
                        .handle_input(self.now, Input::ResumeResult(result));
                }
                Output::Stanza(stanza) => {
                    // Echo what the client sent, as a router would forward it to another
                    // session, when it can stand alone (no prefixes from the stream header).
                    let inherited = match self.transport {
                        Transport::Tcp => Some(ns::CLIENT),
                        Transport::WebSocket => None,
                    };
                    if Element::parse(stanza.as_str(), inherited).is_ok() {
                        let urgency = match rng.below(3) {
                            0 => Urgency::Urgent,
                            1 => Urgency::Defer,
                            _ => Urgency::Coalesce(stanza.envelope().name.clone()),
                        };
                        let echo = stanza.with_from_to(Some("8-42@chat.example.com/x"), None);
                        self.stream.deliver(&echo, urgency);
                    }
                }
                Output::Close { .. } => self.closed = true,
                _ => {}
            }
        }
    }

    fn check_written(&mut self, text: String) {
        self.transcript.push(text.clone());
        match self.transport {
            Transport::WebSocket => {
                // RFC 7395: each message is one complete element on its own.
                if let Err(error) = Element::parse(&text, None) {
                    panic!(
                        "WebSocket message {text:?} is not well-formed ({error}); wrote {:?}",
                        self.transcript
                    );
                }
            }
            Transport::Tcp => {
                self.client_view.feed(text.as_bytes());
                loop {
                    match self.client_view.next_event() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(error) => panic!(
                            "the TCP stream we wrote is not well-formed ({error}); wrote {:?}",
                            self.transcript
                        ),
                    }
                }
                // The client restarts its parser where RFC 6120 says the stream restarts.
                if text.starts_with("<proceed ") {
                    self.client_view = client_parser();
                } else if text.starts_with("<success ") {
                    self.client_view.restart();
                }
            }
        }
    }
}

fn client_parser() -> StreamParser {
    let mut limits = Limits::default();
    limits.max_stanza_bytes = usize::MAX;
    limits.max_depth = usize::MAX;
    limits.max_attributes = usize::MAX;
    StreamParser::new(limits)
}

/// Splits `input` into reads of mostly small, sometimes large sizes.
fn chunks<'a>(input: &'a [u8], rng: &mut XorShift) -> impl Iterator<Item = &'a [u8]> {
    let mut sizes = Vec::new();
    let mut left = input.len();
    while left > 0 {
        let size = match rng.below(4) {
            0 => 1,
            1 => 1 + rng.below(8),
            2 => 1 + rng.below(64),
            _ => 1 + rng.below(input.len()),
        }
        .min(left);
        sizes.push(size);
        left -= size;
    }
    let mut rest = input;
    sizes.into_iter().map(move |size| {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        chunk
    })
}

/// FNV-1a, to derive a per-input seed for the chunking.
pub fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// xorshift64*: deterministic, seedable, good enough to pick sizes and mutations.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator; any seed works (zero is remapped).
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }
}

/// Target `rest_params`: a REST form body or query string (what `GET /users.json` and
/// `POST /session.json` receive). Decoding never panics; a list query that decodes has a
/// positive limit within the cap and an offset the database takes; the signature timestamp
/// check never panics, whatever the number.
pub fn rest_params(data: &[u8]) {
    use switchboard::api::params::Params;
    use switchboard::api::session::timestamp_within;
    use switchboard::api::users::list_query;

    let Ok(params) = Params::from_urlencoded(data) else {
        return;
    };
    if let Ok(query) = list_query(&params, 100) {
        assert!((1..=100).contains(&query.limit), "limit {}", query.limit);
        assert!(
            i64::try_from(query.offset).is_ok(),
            "offset {}",
            query.offset
        );
    }
    if let Some(timestamp) = params.get("timestamp").and_then(|t| t.parse::<i64>().ok()) {
        for now in [0, 1_700_000_000, i64::MAX, i64::MIN] {
            let within = timestamp_within(now, timestamp, 3);
            assert!(
                !within || now.abs_diff(timestamp) <= 3,
                "{now} vs {timestamp}"
            );
        }
    }
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = Params::from_json(json);
    }
}

/// A Janus API text as a stranger sends it over the signalling WebSocket: the core parser, the
/// VideoRoom parser for a `message` body, and the session registry, which must answer every
/// request (a reply or a plugin call) and keep its ids below 2^53.
pub fn janus_request(data: &[u8]) {
    use sfu_core::janus::{parse, Request, SessionConfig, Sessions, TransportId};
    let text = String::from_utf8_lossy(data);
    // Several requests per input (one per line), so sessions made by one are used by the next.
    let mut sessions: Sessions<u8> = Sessions::new(SessionConfig::default());
    let now = Instant::now();
    let mut ids = XorShift::new(hash(data));
    for line in text.lines().take(64) {
        let incoming = match parse(line) {
            Ok(incoming) => incoming,
            Err((_, error)) => {
                assert!(!error.reason.is_empty());
                continue;
            }
        };
        if let Request::Message { body, .. } = &incoming.request {
            let _ = sfu_core::videoroom::parse(body);
        }
        let handled = sessions.handle_request(now, TransportId(1), &0, incoming, || ids.next_u64());
        assert!(handled.reply.is_some() || !handled.plugin.is_empty());
        if let Some(reply) = &handled.reply {
            if let Some(id) = reply["data"]["id"].as_u64() {
                assert!(id < 1 << 53, "ids stay exact in JavaScript");
            }
        }
    }
    let _ = sessions.handle_timeout(now + Duration::from_secs(3600));
    assert!(sessions.is_empty());
}

/// A datagram on the SFU's media port: the demultiplexer's STUN reading, then a room's
/// PeerConnection (a publisher that has answered an offer) taking it. Nothing may panic, and
/// garbage must not produce anything to send.
/// A publisher's VP8 RTP payload, as the simulcast layer switch reads it (is this the start
/// of a keyframe?): any bytes, never a panic.
pub fn vp8_payload(data: &[u8]) {
    let keyframe = sfu_core::media::simulcast::vp8_keyframe(data);
    // A keyframe start needs at least the descriptor and the frame header's first byte.
    assert!(!keyframe || data.len() >= 2);
}

pub fn media_demux(data: &[u8]) {
    use sfu_core::media::{stun_ufrag, MediaOutput};
    let _ = stun_ufrag(data);
    MEDIA_ROOM.with(|room| {
        let mut room = room.borrow_mut();
        let (media, key) = &mut *room;
        let source = "127.0.0.1:5000".parse().expect("an address");
        media.handle_receive(Instant::now(), *key, source, data);
        while let Some(output) = media.poll_output() {
            if let MediaOutput::Transmit { data: sent, .. } = output {
                assert!(!sent.is_empty());
            }
        }
    });
}

thread_local! {
    /// One room with one publisher, negotiated once per thread: its offer comes from a str0m
    /// client, as a browser's would.
    static MEDIA_ROOM: std::cell::RefCell<(sfu_core::media::RoomMedia, sfu_core::videoroom::HandleKey)> =
        std::cell::RefCell::new(media_room());
}

fn media_room() -> (sfu_core::media::RoomMedia, sfu_core::videoroom::HandleKey) {
    use sfu_core::janus::{HandleId, SessionId};
    use sfu_core::media::{MediaConfig, RoomMedia};
    use sfu_core::videoroom::{HandleKey, ParticipantId};
    use str0m::media::{Direction, MediaKind};
    let now = Instant::now();
    let mut client = str0m::RtcConfig::new().set_rtp_mode(true).build(now);
    let addr = "127.0.0.1:5000".parse().expect("an address");
    client.add_local_candidate(str0m::Candidate::host(addr, "udp").expect("a host candidate"));
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _pending) = api.apply().expect("an offer");
    let config =
        MediaConfig::new("127.0.0.1:10000".parse().expect("an address")).expect("a certificate");
    let mut room = RoomMedia::new(config);
    let key = HandleKey {
        session: SessionId(1),
        handle: HandleId(2),
    };
    room.publish(now, key, ParticipantId(7), &offer.to_sdp_string())
        .expect("the room answers a str0m offer");
    while room.poll_output().is_some() {}
    (room, key)
}
