//! A scripted client for driving [`C2sStream`] in virtual time (STYLE §7): the test plays the
//! client's bytes in, answers the shell's requests itself, and reads back every [`Output`].
//!
//! The clock is one real `Instant` taken when the harness is built, moved only by
//! [`Client::advance`], so every run sees the same timeline.

// Each test file uses a different part of the harness.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use xmpp_proto::c2s::{C2sConfig, C2sStream, Input, Output, Transport};
use xmpp_proto::csi::Urgency;
use xmpp_proto::errors::StreamErrorCondition;
use xmpp_proto::sasl::base64_encode;
use xmpp_proto::{BareJid, FullJid, Limits};

/// The domain the stream serves.
pub const DOMAIN: &str = "chat.example.com";
/// The user every scenario logs in as (a QuickBlox node: user 7 of app 42).
pub const USER: &str = "7-42";
pub const PASSWORD: &str = "secret";

pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
pub const NS_SM: &str = "urn:xmpp:sm:3";
pub const NS_CSI: &str = "urn:xmpp:csi:0";
pub const NS_STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// The client's TCP stream header.
pub fn tcp_header() -> String {
    tcp_header_with(&format!("to='{DOMAIN}' version='1.0'"))
}

/// A TCP stream header with the given `to`/`version` attributes.
pub fn tcp_header_with(attributes: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' {attributes} xml:lang='en'>"
    )
}

/// The client's WebSocket `<open/>`.
pub fn ws_open() -> String {
    format!("<open xmlns='{NS_FRAMING}' to='{DOMAIN}' version='1.0'/>")
}

/// The server's TCP stream header for the `n`th stream of a connection seeded with `seed`.
pub fn server_tcp_header(n: u32) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' id='seed{n}' from='{DOMAIN}' \
         version='1.0' xml:lang='en'>"
    )
}

/// The server's WebSocket `<open/>` for the `n`th stream.
pub fn server_ws_open(n: u32) -> String {
    format!("<open xmlns='{NS_FRAMING}' id='seed{n}' from='{DOMAIN}' version='1.0' xml:lang='en'/>")
}

/// The features offered after authentication, without the `<stream:features>` wrapper.
pub fn post_auth_features() -> String {
    format!(
        "<bind xmlns='{NS_BIND}'/><session xmlns='{NS_SESSION}'><optional/></session>\
         <sm xmlns='{NS_SM}'/><csi xmlns='urn:xmpp:csi:0'/><ver xmlns='urn:xmpp:features:rosterver'/>"
    )
}

/// The PLAIN mechanism list.
pub fn plain_mechanisms() -> String {
    format!("<mechanisms xmlns='{NS_SASL}'><mechanism>PLAIN</mechanism></mechanisms>")
}

/// `<auth mechanism='PLAIN'>` carrying `authzid NUL authcid NUL password`.
pub fn plain_auth(authzid: &str, authcid: &str, password: &str) -> String {
    let payload = base64_encode(format!("{authzid}\0{authcid}\0{password}").as_bytes());
    format!("<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>")
}

/// The bind request; `xmlns` is needed on WebSocket, where nothing is inherited.
pub fn bind_iq(id: &str, resource: Option<&str>, xmlns: bool) -> String {
    let resource = resource
        .map(|r| format!("<resource>{r}</resource>"))
        .unwrap_or_default();
    let xmlns = if xmlns { " xmlns='jabber:client'" } else { "" };
    format!("<iq{xmlns} type='set' id='{id}'><bind xmlns='{NS_BIND}'>{resource}</bind></iq>")
}

/// The legacy session request (RFC 3921).
pub fn session_iq(id: &str) -> String {
    format!("<iq type='set' id='{id}'><session xmlns='{NS_SESSION}'/></iq>")
}

pub fn bare() -> BareJid {
    BareJid::parse(&format!("{USER}@{DOMAIN}")).expect("valid bare JID")
}

pub fn full(resource: &str) -> FullJid {
    FullJid::parse(&format!("{USER}@{DOMAIN}/{resource}")).expect("valid full JID")
}

/// `<stream:error>` as the core writes it on TCP.
pub fn stream_error(condition: &str) -> String {
    format!("<stream:error><{condition} xmlns='{NS_STREAMS}'/>")
}

/// TCP, STARTTLS offered and required, no PLAIN in the clear: the production default for
/// remote peers.
pub fn tcp_config() -> C2sConfig {
    C2sConfig {
        domain: DOMAIN.to_string(),
        transport: Transport::Tcp,
        secure: false,
        tls_available: true,
        tls_required: true,
        plain_without_tls: false,
        limits: Limits::default(),
        max_auth_failures: 3,
        stanza_rate_per_s: 10,
        stanza_burst: 20,
        idle_timeout: Duration::from_secs(300),
        auth_timeout: Duration::from_secs(60),
        sm_max_unacked_bytes: 1 << 20,
        sustained_overload: Duration::from_secs(60),
        sm_max_unacked: 100,
        csi_max_held: 10,
        sm_resumption: true,
        id_seed: "seed".to_string(),
    }
}

/// WebSocket over an already encrypted connection (`wss://`).
pub fn ws_config() -> C2sConfig {
    C2sConfig {
        transport: Transport::WebSocket,
        secure: true,
        tls_available: false,
        ..tcp_config()
    }
}

/// One client connection and the virtual clock it lives on.
pub struct Client {
    pub stream: C2sStream,
    pub epoch: Instant,
    pub now: Instant,
}

impl Client {
    pub fn new(config: C2sConfig) -> Client {
        // The only real clock reading of a scenario; everything else is `epoch + offset`.
        #[allow(clippy::disallowed_methods)]
        let epoch = Instant::now();
        Client {
            stream: C2sStream::new(config),
            epoch,
            now: epoch,
        }
    }

    /// Moves the virtual clock forward.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Plays client bytes in (one WebSocket message, or one TCP read) and drains the outputs.
    pub fn send(&mut self, text: &str) -> Vec<Output> {
        self.send_bytes(text.as_bytes())
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> Vec<Output> {
        self.input(Input::Bytes(bytes))
    }

    /// Feeds any input and drains the outputs.
    pub fn input(&mut self, input: Input<'_>) -> Vec<Output> {
        self.stream.handle_input(self.now, input);
        self.drain()
    }

    /// Delivers a stanza to the client and drains the outputs.
    pub fn deliver(&mut self, stanza: &str, urgency: Urgency) -> Vec<Output> {
        self.stream.deliver(stanza, urgency);
        self.drain()
    }

    /// Fires the timer at the current virtual time and drains the outputs.
    pub fn timeout(&mut self) -> Vec<Output> {
        self.stream.handle_timeout(self.now);
        self.drain()
    }

    pub fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.stream.poll_output()).collect()
    }

    /// TCP: header, STARTTLS, TLS, header, PLAIN, success, header; ends before bind.
    pub fn tcp_authenticated(config: C2sConfig) -> Client {
        let mut client = Client::new(config);
        client.send(&tcp_header());
        let out = client.send(&format!("<starttls xmlns='{NS_TLS}'/>"));
        assert!(out.iter().any(|o| matches!(o, Output::StartTls)), "{out:?}");
        client.input(Input::TlsEstablished);
        client.send(&tcp_header());
        client.authenticate();
        let out = client.send(&tcp_header());
        assert!(sends(&out).concat().contains("<bind "), "{out:?}");
        client
    }

    /// WebSocket: open, PLAIN, success, open; ends before bind.
    pub fn ws_authenticated(config: C2sConfig) -> Client {
        let mut client = Client::new(config);
        client.send(&ws_open());
        client.authenticate();
        let out = client.send(&ws_open());
        assert!(sends(&out).concat().contains("<bind "), "{out:?}");
        client
    }

    /// TCP, bound as `7-42@chat.example.com/phone`.
    pub fn tcp_bound(config: C2sConfig) -> Client {
        let mut client = Client::tcp_authenticated(config);
        client.bind(false);
        client
    }

    /// WebSocket, bound as `7-42@chat.example.com/phone`.
    pub fn ws_bound(config: C2sConfig) -> Client {
        let mut client = Client::ws_authenticated(config);
        client.bind(true);
        client
    }

    /// Sends valid PLAIN credentials and answers the authentication request with success.
    pub fn authenticate(&mut self) {
        let out = self.send(&plain_auth("", USER, PASSWORD));
        assert!(
            matches!(out.as_slice(), [Output::Authenticate(_)]),
            "{out:?}"
        );
        let out = self.input(Input::AuthResult(Ok(bare())));
        assert_eq!(sends(&out), [format!("<success xmlns='{NS_SASL}'/>")]);
    }

    /// Sends the bind iq and answers the bind request with `…/phone`.
    pub fn bind(&mut self, xmlns: bool) {
        let out = self.send(&bind_iq("bind1", None, xmlns));
        assert!(matches!(out.as_slice(), [Output::Bind(None)]), "{out:?}");
        let out = self.input(Input::BindResult(Ok(full("phone"))));
        assert_eq!(sends(&out).len(), 1, "{out:?}");
        assert!(self.stream.jid().is_some());
    }

    /// Enables stream management, optionally asking for resumption.
    pub fn enable_sm(&mut self, resume: bool) -> Vec<Output> {
        let resume = if resume { " resume='true'" } else { "" };
        self.send(&format!("<enable xmlns='{NS_SM}'{resume}/>"))
    }
}

/// The texts of the `Send` outputs, in order.
pub fn sends(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(text) | Output::Ack(text) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// The condition of the `Close` output, if there is one: `Some(None)` for a clean close.
pub fn close(outputs: &[Output]) -> Option<Option<StreamErrorCondition>> {
    outputs.iter().find_map(|o| match o {
        Output::Close { error } => Some(*error),
        _ => None,
    })
}

/// Asserts the outputs end the stream with `condition`: the error, then the closing tag, then
/// `Close`, and nothing after it.
pub fn assert_stream_error(client: &Client, outputs: &[Output], condition: StreamErrorCondition) {
    let texts = sends(outputs);
    let error = texts
        .iter()
        .find(|t| t.starts_with("<stream:error"))
        .unwrap_or_else(|| panic!("no stream error in {outputs:?}"));
    assert!(
        error.contains(&format!("<{} xmlns='{NS_STREAMS}'/>", condition.name())),
        "expected {}, got {error}",
        condition.name()
    );
    let closing = texts.last().expect("a closing tag");
    assert!(
        closing == "</stream:stream>" || closing == &format!("<close xmlns='{NS_FRAMING}'/>"),
        "{closing}"
    );
    assert!(
        matches!(outputs.last(), Some(Output::Close { error: Some(c) }) if *c == condition),
        "{outputs:?}"
    );
    assert!(client.stream.is_closed());
    assert_eq!(client.stream.poll_timeout(), None);
}
