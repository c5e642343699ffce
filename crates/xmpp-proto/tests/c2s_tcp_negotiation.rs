//! A TCP client negotiates the whole stream (RFC 6120 §4–§7): STARTTLS, SASL PLAIN, resource
//! binding, the legacy session iq, and then its stanzas are routed.

mod common;

use common::*;
use xmpp_proto::c2s::{Input, Output};
use xmpp_proto::csi::Urgency;
use xmpp_proto::StanzaKind;

#[test]
fn starttls_plain_bind_session_then_stanzas_flow() {
    let mut client = Client::new(tcp_config());

    // Header: ours first, then STARTTLS as the only (and required) feature.
    let out = client.send(&tcp_header());
    assert_eq!(
        sends(&out),
        [
            server_tcp_header(1),
            format!("<stream:features><starttls xmlns='{NS_TLS}'><required/></starttls></stream:features>"),
        ]
    );
    assert!(!client.stream.is_secure());

    // STARTTLS: <proceed/> is written before the shell starts the handshake.
    let out = client.send(&format!("<starttls xmlns='{NS_TLS}'/>"));
    assert!(
        matches!(out.as_slice(), [Output::Send(proceed), Output::StartTls] if *proceed == format!("<proceed xmlns='{NS_TLS}'/>")),
        "{out:?}"
    );
    assert!(client.input(Input::TlsEstablished).is_empty());
    assert!(client.stream.is_secure());

    // The restarted stream offers PLAIN and no longer STARTTLS.
    let out = client.send(&tcp_header());
    assert_eq!(
        sends(&out),
        [
            server_tcp_header(2),
            format!("<stream:features>{}</stream:features>", plain_mechanisms()),
        ]
    );

    // PLAIN: the core decodes and the shell checks.
    let out = client.send(&plain_auth("", USER, PASSWORD));
    match out.as_slice() {
        [Output::Authenticate(credentials)] => {
            assert_eq!(credentials.authzid, "");
            assert_eq!(credentials.authcid, USER);
            assert_eq!(credentials.password, PASSWORD);
        }
        other => panic!("expected Authenticate, got {other:?}"),
    }
    let out = client.input(Input::AuthResult(Ok(bare())));
    assert_eq!(sends(&out), [format!("<success xmlns='{NS_SASL}'/>")]);
    assert_eq!(out.len(), 1);

    // The post-authentication stream offers bind, session, sm, csi and roster versioning.
    let out = client.send(&tcp_header());
    assert_eq!(
        sends(&out),
        [
            server_tcp_header(3),
            format!(
                "<stream:features>{}</stream:features>",
                post_auth_features()
            ),
        ]
    );

    // Bind: the server picks the resource.
    let out = client.send(&bind_iq("b1", None, false));
    assert!(matches!(out.as_slice(), [Output::Bind(None)]), "{out:?}");
    assert_eq!(client.stream.jid(), None);
    let out = client.input(Input::BindResult(Ok(full("a1b2"))));
    assert_eq!(
        sends(&out),
        [format!(
            "<iq type='result' id='b1'><bind xmlns='{NS_BIND}'><jid>{USER}@{DOMAIN}/a1b2</jid></bind></iq>"
        )]
    );
    assert_eq!(client.stream.jid(), Some(&full("a1b2")));

    // The legacy session iq is answered by the core itself and never routed.
    let out = client.send(&session_iq("s1"));
    assert_eq!(sends(&out), ["<iq type='result' id='s1'/>"]);
    assert_eq!(out.len(), 1);

    // From now on stanzas are routed byte for byte.
    let message = "<message to='8-42@chat.example.com' type='chat' id='m1'><body>hi &amp; bye</body><extraParams><save_to_history>1</save_to_history></extraParams></message>";
    let out = client.send(message);
    match out.as_slice() {
        [Output::Stanza(stanza)] => {
            assert_eq!(stanza.as_str(), message);
            assert_eq!(stanza.envelope().kind(), StanzaKind::Message);
            assert_eq!(
                stanza.envelope().to.as_deref(),
                Some("8-42@chat.example.com")
            );
        }
        other => panic!("expected a routed stanza, got {other:?}"),
    }
    assert!(!client.stream.is_closed());
}

#[test]
fn bind_passes_the_requested_resource_and_a_failed_bind_can_be_retried() {
    let mut client = Client::tcp_authenticated(tcp_config());
    let out = client.send(&bind_iq("b1", Some(" phone "), false));
    assert!(
        matches!(out.as_slice(), [Output::Bind(Some(r))] if r == "phone"),
        "{out:?}"
    );
    let out = client.input(Input::BindResult(Err(
        xmpp_proto::errors::StanzaErrorCondition::Conflict,
    )));
    let texts = sends(&out);
    assert_eq!(texts.len(), 1);
    assert!(
        texts[0].starts_with("<iq type='error' id='b1'>"),
        "{texts:?}"
    );
    assert!(texts[0].contains("<conflict "), "{texts:?}");
    assert_eq!(client.stream.jid(), None);

    let out = client.send(&bind_iq("b2", None, false));
    assert!(matches!(out.as_slice(), [Output::Bind(None)]), "{out:?}");
}

#[test]
fn plain_without_tls_is_offered_next_to_starttls_and_works_in_the_clear() {
    let mut client = Client::new(xmpp_proto::c2s::C2sConfig {
        plain_without_tls: true,
        ..tcp_config()
    });
    let out = client.send(&tcp_header());
    assert_eq!(
        sends(&out)[1],
        format!(
            "<stream:features><starttls xmlns='{NS_TLS}'><required/></starttls>{}</stream:features>",
            plain_mechanisms()
        )
    );
    client.authenticate();
    let out = client.send(&tcp_header());
    assert_eq!(sends(&out)[0], server_tcp_header(2));
    assert!(!client.stream.is_secure());
}

#[test]
fn byte_at_a_time_negotiation_gives_the_same_outputs_as_whole_reads() {
    let script = [
        tcp_header(),
        format!("<starttls xmlns='{NS_TLS}'/>"),
        tcp_header(),
        plain_auth(&format!("{USER}@{DOMAIN}"), USER, PASSWORD),
        tcp_header(),
        bind_iq("b1", Some("phone"), false),
        session_iq("s1"),
        "<presence/>".to_string(),
        "<message to='8-42@chat.example.com'><body>é😀</body></message>".to_string(),
        "</stream:stream>".to_string(),
    ];
    let run = |chunk: usize| -> Vec<String> {
        let mut client = Client::new(tcp_config());
        let mut log = Vec::new();
        for step in &script {
            for piece in step.as_bytes().chunks(chunk) {
                for output in client.send_bytes(piece) {
                    log.push(format!("{output:?}"));
                    let answer = match output {
                        Output::StartTls => Some(Input::TlsEstablished),
                        Output::Authenticate(_) => Some(Input::AuthResult(Ok(bare()))),
                        Output::Bind(_) => Some(Input::BindResult(Ok(full("phone")))),
                        _ => None,
                    };
                    if let Some(answer) = answer {
                        log.extend(client.input(answer).iter().map(|o| format!("{o:?}")));
                    }
                }
            }
        }
        log
    };
    let whole = run(usize::MAX);
    assert!(
        whole.last().is_some_and(|l| l.contains("Close")),
        "{whole:?}"
    );
    assert_eq!(run(1), whole);
    assert_eq!(run(7), whole);
}

#[test]
fn client_closing_the_stream_is_answered_with_our_closing_tag() {
    let mut client = Client::tcp_bound(tcp_config());
    let out = client.send("</stream:stream>");
    assert_eq!(sends(&out), ["</stream:stream>"]);
    assert_eq!(close(&out), Some(None));
    assert!(client.stream.is_closed());
    // Everything after Close is ignored.
    assert!(client.send("<presence/>").is_empty());
    assert!(client
        .deliver("<message/>", xmpp_proto::csi::Urgency::Urgent)
        .is_empty());
}

#[test]
fn eof_closes_without_writing() {
    let mut client = Client::tcp_bound(tcp_config());
    let out = client.input(Input::Eof);
    assert!(
        matches!(out.as_slice(), [Output::Close { error: None }]),
        "{out:?}"
    );
}

#[test]
fn server_side_close_sends_the_given_condition() {
    let mut client = Client::tcp_bound(tcp_config());
    client.stream.close_with(
        xmpp_proto::errors::StreamErrorCondition::SystemShutdown,
        None,
    );
    let out = client.drain();
    assert_stream_error(
        &client,
        &out,
        xmpp_proto::errors::StreamErrorCondition::SystemShutdown,
    );
}

#[test]
fn only_a_real_session_iq_is_answered_by_the_core() {
    let mut client = Client::tcp_bound(tcp_config());
    // Addressed to the server and mentioning the session namespace, but a private-storage set:
    // it must be routed, not swallowed with an empty result.
    let private = "<iq type='set' id='p1' to='chat.example.com'><query xmlns='jabber:iq:private'><note xmlns='urn:example'>urn:ietf:params:xml:ns:xmpp-session</note></query></iq>";
    let out = client.send(private);
    assert!(
        matches!(out.as_slice(), [Output::Stanza(s)] if s.as_str() == private),
        "{out:?}"
    );
    // The session iq addressed to the domain explicitly is still answered.
    let out = client.send(&format!(
        "<iq type='set' id='s2' to='{DOMAIN}'><session xmlns='{NS_SESSION}'/></iq>"
    ));
    assert_eq!(sends(&out), ["<iq type='result' id='s2'/>"]);
}

#[test]
fn stanzas_routed_while_binding_are_written_after_the_bind_result() {
    let mut client = Client::tcp_authenticated(tcp_config());
    let out = client.send(&bind_iq("bind1", None, false));
    assert!(matches!(out.as_slice(), [Output::Bind(None)]), "{out:?}");
    // Routed to the session between its registration and the bind answer: held, not lost.
    let out = client.deliver("<message id='early'/>", Urgency::Defer);
    assert!(out.is_empty(), "{out:?}");
    let out = client.input(Input::BindResult(Ok(full("phone"))));
    let sent = sends(&out);
    assert_eq!(sent.len(), 2, "{out:?}");
    assert!(sent[0].contains("<bind"), "{}", sent[0]);
    assert_eq!(sent[1], "<message id='early'/>");
}
