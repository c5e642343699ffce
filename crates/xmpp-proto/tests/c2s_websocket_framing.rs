//! RFC 7395: one element per WebSocket message, `<open/>`/`<close/>` instead of the stream
//! element, and nothing inherited, so every element names its namespace.

mod common;

use common::*;
use xmpp_proto::c2s::{C2sConfig, Input, Output};
use xmpp_proto::csi::Urgency;
use xmpp_proto::Element;

const STREAM_FEATURES_OPEN: &str =
    "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>";

#[test]
fn open_authenticate_reopen_bind_close() {
    let mut client = Client::new(ws_config());

    let out = client.send(&ws_open());
    assert_eq!(
        sends(&out),
        [
            server_ws_open(1),
            format!(
                "{STREAM_FEATURES_OPEN}{}</stream:features>",
                plain_mechanisms()
            ),
        ]
    );

    client.authenticate();

    // The restart after SASL is a new <open/>, answered with a new id and the bound features.
    let out = client.send(&ws_open());
    assert_eq!(
        sends(&out),
        [
            server_ws_open(2),
            format!(
                "{STREAM_FEATURES_OPEN}{}</stream:features>",
                post_auth_features()
            ),
        ]
    );

    let out = client.send(&bind_iq("b1", Some("web"), true));
    assert!(
        matches!(out.as_slice(), [Output::Bind(Some(r))] if r == "web"),
        "{out:?}"
    );
    let out = client.input(Input::BindResult(Ok(full("web"))));
    assert_eq!(
        sends(&out),
        [format!(
            "<iq xmlns='jabber:client' type='result' id='b1'><bind xmlns='{NS_BIND}'><jid>{USER}@{DOMAIN}/web</jid></bind></iq>"
        )]
    );

    let message =
        "<message xmlns='jabber:client' to='8-42@chat.example.com'><body>x</body></message>";
    let out = client.send(message);
    assert!(
        matches!(out.as_slice(), [Output::Stanza(s)] if s.as_str() == message),
        "{out:?}"
    );

    let out = client.send(&format!("<close xmlns='{NS_FRAMING}'/>"));
    assert_eq!(sends(&out), [format!("<close xmlns='{NS_FRAMING}'/>")]);
    assert_eq!(close(&out), Some(None));
    assert!(client.stream.is_closed());
}

#[test]
fn starttls_is_never_offered_on_websocket() {
    // Even an unencrypted ws:// connection with a certificate configured: RFC 7395 §3.6 leaves
    // encryption to the WebSocket layer.
    let mut client = Client::new(C2sConfig {
        secure: false,
        tls_available: true,
        tls_required: false,
        ..ws_config()
    });
    let out = client.send(&ws_open());
    let texts = sends(&out);
    assert!(!texts.concat().contains("starttls"), "{texts:?}");
    assert!(texts[1].starts_with(STREAM_FEATURES_OPEN), "{texts:?}");
}

#[test]
fn delivered_stanzas_get_the_client_namespace_once() {
    let mut client = Client::ws_bound(ws_config());

    let out = client.deliver(
        "<message from='8-42@chat.example.com/x' type='chat'><body>a</body></message>",
        Urgency::Urgent,
    );
    assert_eq!(
        sends(&out),
        ["<message xmlns='jabber:client' from='8-42@chat.example.com/x' type='chat'><body>a</body></message>"]
    );

    let out = client.deliver("<presence/>", Urgency::Urgent);
    assert_eq!(sends(&out), ["<presence xmlns='jabber:client'/>"]);

    let already = "<iq xmlns='jabber:client' type='result' id='1'/>";
    assert_eq!(sends(&client.deliver(already, Urgency::Urgent)), [already]);

    // A quoted '>' or "xmlns=" inside another attribute's value is not the namespace.
    let out = client.deliver("<message id='a>b' x=\"y xmlns='z'\"/>", Urgency::Urgent);
    assert_eq!(
        sends(&out),
        ["<message xmlns='jabber:client' id='a>b' x=\"y xmlns='z'\"/>"]
    );

    // A prefixed declaration does not declare the default namespace.
    let out = client.deliver("<message xmlns:q='urn:q'><q:x/></message>", Urgency::Urgent);
    assert_eq!(
        sends(&out),
        ["<message xmlns='jabber:client' xmlns:q='urn:q'><q:x/></message>"]
    );
}

#[test]
fn websocket_stanzas_without_a_namespace_are_rejected() {
    let mut client = Client::ws_bound(ws_config());
    let out = client.send("<message to='8-42@chat.example.com'><body>x</body></message>");
    assert_stream_error(
        &client,
        &out,
        xmpp_proto::errors::StreamErrorCondition::InvalidNamespace,
    );
}

#[test]
fn websocket_stream_errors_declare_the_stream_prefix() {
    // Each WebSocket message is a document of its own: `stream:` must be declared in it.
    let mut client = Client::ws_bound(ws_config());
    let out = client.send("<iq type='get'/>");
    let texts = sends(&out);
    assert_eq!(texts.len(), 2, "{texts:?}");
    let error = Element::parse(&texts[0], None).expect("a well-formed WebSocket message");
    assert_eq!(error.name(), "error");
    assert_eq!(error.namespace(), Some("http://etherx.jabber.org/streams"));
    assert_eq!(texts[1], format!("<close xmlns='{NS_FRAMING}'/>"));
}

#[test]
fn a_namespace_declared_with_spaces_around_the_equals_sign_is_not_duplicated() {
    // XML allows `xmlns = '…'` (XML 1.0 §2.3 `Eq`); a TCP client may send it and the router
    // forwards its bytes as they are. Adding a second xmlns would make the message
    // not-well-formed for the WebSocket recipient.
    let mut client = Client::ws_bound(ws_config());
    for stanza in [
        "<message xmlns = 'jabber:client' to='x@y'/>",
        "<message\txmlns\n=\"jabber:client\"/>",
    ] {
        let out = client.deliver(stanza, Urgency::Urgent);
        assert_eq!(sends(&out), [stanza]);
    }
    // …while an attribute that merely starts with "xmlns" is not a declaration.
    let out = client.deliver("<message xmlnsfoo='1'/>", Urgency::Urgent);
    assert_eq!(
        sends(&out),
        ["<message xmlns='jabber:client' xmlnsfoo='1'/>"]
    );
}
