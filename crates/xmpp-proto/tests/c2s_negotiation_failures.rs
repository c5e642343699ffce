//! Every way a client can get negotiation wrong, and what it is told: SASL `<failure/>`s it can
//! retry, and stream errors that end the stream (always after our header).

mod common;

use common::*;
use xmpp_proto::c2s::{C2sConfig, Input, Output};
use xmpp_proto::errors::StreamErrorCondition;
use xmpp_proto::sasl::SaslFailure;

/// TCP, STARTTLS done, PLAIN offered.
fn secure_pre_auth() -> Client {
    let mut client = Client::new(tcp_config());
    client.send(&tcp_header());
    client.send(&format!("<starttls xmlns='{NS_TLS}'/>"));
    client.input(Input::TlsEstablished);
    client.send(&tcp_header());
    client
}

fn sasl_failure(condition: &str) -> String {
    format!("<failure xmlns='{NS_SASL}'><{condition}/></failure>")
}

fn assert_sasl_failure(client: &Client, out: &[Output], condition: &str) {
    assert_eq!(sends(out), [sasl_failure(condition)], "{out:?}");
    assert_eq!(out.len(), 1, "no Authenticate, no Close: {out:?}");
    assert!(!client.stream.is_closed());
}

#[test]
fn authzid_of_another_user_is_invalid() {
    let mut client = secure_pre_auth();
    let out = client.send(&plain_auth(&format!("8-42@{DOMAIN}"), USER, PASSWORD));
    assert_sasl_failure(&client, &out, "invalid-authzid");
    // The SDKs' own forms are fine: empty, or the user's bare JID in any case.
    let out = client.send(&plain_auth(
        &format!("{USER}@CHAT.example.com"),
        USER,
        PASSWORD,
    ));
    assert!(
        matches!(out.as_slice(), [Output::Authenticate(_)]),
        "{out:?}"
    );
}

#[test]
fn bad_base64_is_incorrect_encoding() {
    let mut client = secure_pre_auth();
    let out = client.send(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>!!!!</auth>"
    ));
    assert_sasl_failure(&client, &out, "incorrect-encoding");
}

#[test]
fn plain_payload_of_the_wrong_shape_is_malformed() {
    let mut client = secure_pre_auth();
    let payload = xmpp_proto::sasl::base64_encode(b"no-separators");
    let out = client.send(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>"
    ));
    assert_sasl_failure(&client, &out, "malformed-request");
}

#[test]
fn unknown_mechanism_is_invalid() {
    let mut client = secure_pre_auth();
    let out = client.send(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-1'>biws</auth>"
    ));
    assert_sasl_failure(&client, &out, "invalid-mechanism");
}

#[test]
fn abort_is_answered_with_aborted() {
    let mut client = secure_pre_auth();
    let out = client.send(&format!("<abort xmlns='{NS_SASL}'/>"));
    assert_eq!(sends(&out), [sasl_failure("aborted")]);
    // Aborts count like failures, so a client cannot ask for answers without end.
    client.send(&format!("<abort xmlns='{NS_SASL}'/>"));
    let out = client.send(&format!("<abort xmlns='{NS_SASL}'/>"));
    assert_stream_error(
        &client,
        &out,
        xmpp_proto::errors::StreamErrorCondition::PolicyViolation,
    );
}

#[test]
fn third_rejected_password_closes_the_stream() {
    let mut client = secure_pre_auth();
    for attempt in 1..=3 {
        let out = client.send(&plain_auth("", USER, "wrong"));
        assert!(
            matches!(out.as_slice(), [Output::Authenticate(_)]),
            "{out:?}"
        );
        let out = client.input(Input::AuthResult(Err(SaslFailure::NotAuthorized)));
        let texts = sends(&out);
        assert_eq!(texts[0], sasl_failure("not-authorized"));
        if attempt < 3 {
            assert_eq!(texts.len(), 1, "attempt {attempt}: {out:?}");
            assert!(!client.stream.is_closed());
        } else {
            assert_stream_error(&client, &out, StreamErrorCondition::PolicyViolation);
        }
    }
}

#[test]
fn malformed_attempts_count_towards_the_limit_too() {
    let mut client = secure_pre_auth();
    client.send(&format!("<auth xmlns='{NS_SASL}' mechanism='X'/>"));
    client.send(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>!!!!</auth>"
    ));
    let out = client.send(&plain_auth("", USER, "wrong"));
    client.input(Input::AuthResult(Err(SaslFailure::NotAuthorized)));
    assert!(matches!(out.as_slice(), [Output::Authenticate(_)]));
    assert!(client.stream.is_closed());
}

#[test]
fn late_auth_result_is_ignored() {
    let mut client = secure_pre_auth();
    assert!(client.input(Input::AuthResult(Ok(bare()))).is_empty());
    assert!(client.input(Input::BindResult(Ok(full("x")))).is_empty());
    assert!(client.input(Input::ResumeResult(None)).is_empty());
    assert_eq!(client.stream.jid(), None);
}

#[test]
fn stanza_before_authentication_is_not_authorized() {
    let mut client = secure_pre_auth();
    let out = client.send("<message to='8-42@chat.example.com'><body>x</body></message>");
    assert_stream_error(&client, &out, StreamErrorCondition::NotAuthorized);
}

#[test]
fn stanza_before_bind_is_not_authorized() {
    let mut client = Client::tcp_authenticated(tcp_config());
    let out = client.send("<message to='8-42@chat.example.com'><body>x</body></message>");
    assert_stream_error(&client, &out, StreamErrorCondition::NotAuthorized);

    // An iq other than bind too (RFC 6120 §7.1).
    let mut client = Client::tcp_authenticated(tcp_config());
    let out = client.send(&session_iq("s1"));
    assert_stream_error(&client, &out, StreamErrorCondition::NotAuthorized);
}

#[test]
fn wrong_domain_is_host_unknown_after_our_header() {
    let mut client = Client::new(tcp_config());
    let out = client.send(&tcp_header_with("to='other.example.com' version='1.0'"));
    assert_eq!(sends(&out)[0], server_tcp_header(1));
    assert!(sends(&out)[1].starts_with(&stream_error("host-unknown")));
    assert_stream_error(&client, &out, StreamErrorCondition::HostUnknown);

    let mut client = Client::new(tcp_config());
    let out = client.send(&tcp_header_with("version='1.0'"));
    assert_stream_error(&client, &out, StreamErrorCondition::HostUnknown);
}

#[test]
fn domain_is_matched_case_insensitively() {
    let mut client = Client::new(tcp_config());
    let out = client.send(&tcp_header_with("to='Chat.Example.COM' version='1.0'"));
    assert!(sends(&out)[1].starts_with("<stream:features>"), "{out:?}");
}

#[test]
fn missing_or_old_version_is_unsupported() {
    for attributes in [
        format!("to='{DOMAIN}'"),
        format!("to='{DOMAIN}' version='0.9'"),
    ] {
        let mut client = Client::new(tcp_config());
        let out = client.send(&tcp_header_with(&attributes));
        assert_eq!(sends(&out)[0], server_tcp_header(1));
        assert_stream_error(&client, &out, StreamErrorCondition::UnsupportedVersion);
    }
}

#[test]
fn malformed_xml_is_not_well_formed_and_our_header_comes_first() {
    let mut client = Client::new(tcp_config());
    let out = client.send("<stream:stream to='x' <oops>");
    let texts = sends(&out);
    assert_eq!(texts[0], server_tcp_header(1), "{texts:?}");
    assert!(
        texts[1].starts_with(&stream_error("not-well-formed")),
        "{texts:?}"
    );
    assert_stream_error(&client, &out, StreamErrorCondition::NotWellFormed);

    // Mid-stream: the header is not repeated.
    let mut client = Client::tcp_bound(tcp_config());
    let out = client.send("<message><body>x</message>");
    let texts = sends(&out);
    assert!(
        texts[0].starts_with(&stream_error("not-well-formed")),
        "{texts:?}"
    );
    assert_stream_error(&client, &out, StreamErrorCondition::NotWellFormed);
}

#[test]
fn input_that_is_not_utf8_is_an_unsupported_encoding() {
    // RFC 6120 §4.9.3.22 (it was not-well-formed before).
    let mut client = Client::tcp_bound(tcp_config());
    let out = client.send_bytes(b"<message><body>caf\xe9</body></message>");
    let texts = sends(&out);
    assert!(
        texts[0].starts_with(&stream_error("unsupported-encoding")),
        "{texts:?}"
    );
    assert_stream_error(&client, &out, StreamErrorCondition::UnsupportedEncoding);
}

#[test]
fn restricted_xml_is_refused() {
    let mut client = Client::tcp_bound(tcp_config());
    let out = client.send("<!-- hello -->");
    assert_stream_error(&client, &out, StreamErrorCondition::RestrictedXml);
}

#[test]
fn starttls_on_websocket_is_a_policy_violation() {
    let mut client = Client::new(ws_config());
    client.send(&ws_open());
    let out = client.send(&format!("<starttls xmlns='{NS_TLS}'/>"));
    assert!(!out.iter().any(|o| matches!(o, Output::StartTls)));
    assert_stream_error(&client, &out, StreamErrorCondition::PolicyViolation);
}

#[test]
fn starttls_twice_is_a_policy_violation() {
    let mut client = secure_pre_auth();
    let out = client.send(&format!("<starttls xmlns='{NS_TLS}'/>"));
    assert_stream_error(&client, &out, StreamErrorCondition::PolicyViolation);
}

#[test]
fn plain_in_the_clear_when_tls_is_required_is_refused() {
    let mut client = Client::new(tcp_config());
    client.send(&tcp_header());
    let out = client.send(&plain_auth("", USER, PASSWORD));
    assert!(!out.iter().any(|o| matches!(o, Output::Authenticate(_))));
    assert_eq!(sends(&out)[0], sasl_failure("encryption-required"));
    assert_stream_error(&client, &out, StreamErrorCondition::PolicyViolation);
}

#[test]
fn plain_in_the_clear_is_fine_when_tls_is_optional() {
    let mut client = Client::new(C2sConfig {
        tls_required: false,
        ..tcp_config()
    });
    let out = client.send(&tcp_header());
    assert_eq!(
        sends(&out)[1],
        format!(
            "<stream:features><starttls xmlns='{NS_TLS}'></starttls>{}</stream:features>",
            plain_mechanisms()
        )
    );
    let out = client.send(&plain_auth("", USER, PASSWORD));
    assert!(
        matches!(out.as_slice(), [Output::Authenticate(_)]),
        "{out:?}"
    );
}

#[test]
fn sending_while_authenticating_is_a_policy_violation() {
    // In a later read…
    let mut client = secure_pre_auth();
    let out = client.send(&plain_auth("", USER, PASSWORD));
    assert!(matches!(out.as_slice(), [Output::Authenticate(_)]));
    let out = client.send("<presence/>");
    assert_stream_error(&client, &out, StreamErrorCondition::PolicyViolation);
    // …and the answer that arrives afterwards changes nothing.
    assert!(client.input(Input::AuthResult(Ok(bare()))).is_empty());

    // …or in the same read as the <auth/>.
    let mut client = secure_pre_auth();
    let out = client.send(&format!("{}<presence/>", plain_auth("", USER, PASSWORD)));
    assert!(
        matches!(out.first(), Some(Output::Authenticate(_))),
        "{out:?}"
    );
    assert_stream_error(&client, &out, StreamErrorCondition::PolicyViolation);
}

#[test]
fn sending_while_binding_is_a_policy_violation() {
    let mut client = Client::tcp_authenticated(tcp_config());
    client.send(&bind_iq("b1", None, false));
    let out = client.send(&session_iq("s1"));
    assert_stream_error(&client, &out, StreamErrorCondition::PolicyViolation);
}

#[test]
fn unknown_top_level_element_is_an_unsupported_stanza_type() {
    let mut client = Client::tcp_bound(tcp_config());
    let out = client.send("<foo xmlns='urn:example'/>");
    assert_stream_error(&client, &out, StreamErrorCondition::UnsupportedStanzaType);
}

#[test]
fn second_stream_header_mid_stream_is_bad_format() {
    let mut client = Client::tcp_bound(tcp_config());
    let out = client.send(&format!("<close xmlns='{NS_FRAMING}'/>"));
    // On TCP <close/> is just an unknown element.
    assert_stream_error(&client, &out, StreamErrorCondition::UnsupportedStanzaType);

    let mut client = Client::ws_bound(ws_config());
    let out = client.send(&ws_open());
    assert_stream_error(&client, &out, StreamErrorCondition::BadFormat);
}

#[test]
fn plaintext_after_starttls_is_discarded_not_acted_on() {
    // A man-in-the-middle appends <auth/> to the client's <starttls/> in the same TCP segment.
    let mut client = Client::new(tcp_config());
    client.send(&tcp_header());
    let out = client.send(&format!(
        "<starttls xmlns='{NS_TLS}'/>{}<presence/>",
        plain_auth("", "1-42", "attacker")
    ));
    assert!(
        matches!(out.as_slice(), [Output::Send(_), Output::StartTls]),
        "nothing after <starttls/> is answered: {out:?}"
    );
    // Bytes that arrive in the clear while the handshake runs are dropped too.
    assert!(client.send("<message/>").is_empty());
    assert!(client.input(Input::TlsEstablished).is_empty());

    // The encrypted stream starts from scratch.
    let out = client.send(&tcp_header());
    assert_eq!(sends(&out)[0], server_tcp_header(2));
    let out = client.send(&plain_auth("", USER, PASSWORD));
    assert!(
        matches!(out.as_slice(), [Output::Authenticate(c)] if c.authcid == USER),
        "{out:?}"
    );
}

#[test]
fn a_tcp_stream_must_use_the_jabber_client_namespace() {
    let mut client = Client::new(tcp_config());
    let header = "<stream:stream to='chat.example.com' version='1.0' xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>";
    let out = client.send(header);
    assert_stream_error(&client, &out, StreamErrorCondition::InvalidNamespace);
}
