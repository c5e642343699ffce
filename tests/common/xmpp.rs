//! A small XMPP client for loopback tests: STARTTLS (trusting the server's generated
//! certificate), SASL PLAIN, binding, and stanza send/receive through the same strict parser
//! the server uses. Third-party clients (slixmpp, the QuickBlox SDK) are exercised in the
//! interop tests; this one exists to poke at the server precisely, bad input included.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use xmpp_proto::{Event, Limits, Stanza, StreamParser};

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub struct XmppClient {
    io: Box<dyn Stream>,
    parser: StreamParser,
    pub jid: String,
    pub domain: String,
    /// Everything received, for assertions on raw bytes.
    pub transcript: String,
}

pub fn header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
}

pub fn plain(node: &str, password: &str) -> String {
    xmpp_proto::sasl::base64_encode(format!("\0{node}\0{password}").as_bytes())
}

/// A TLS client trusting exactly the server's certificate, offering `alpn`.
pub fn tls_connector(cert: &Path, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let pem = std::fs::read(cert).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

impl XmppClient {
    /// Opens a stream, upgrades with STARTTLS, authenticates `node` with `password` (or a session
    /// token) and binds `resource` (server-chosen when `None`).
    pub async fn login(
        addr: std::net::SocketAddr,
        domain: &str,
        cert: &Path,
        node: &str,
        password: &str,
        resource: Option<&str>,
    ) -> Result<XmppClient, String> {
        let mut client = XmppClient::authenticate(addr, domain, cert, node, password).await?;
        client.bind(resource).await?;
        Ok(client)
    }

    /// Like [`login`] but stops after SASL success and the stream restart's features.
    pub async fn authenticate(
        addr: std::net::SocketAddr,
        domain: &str,
        cert: &Path,
        node: &str,
        password: &str,
    ) -> Result<XmppClient, String> {
        Self::authenticate_from(None, addr, domain, cert, node, password).await
    }

    /// [`authenticate`] from a chosen loopback source address (`127.0.0.2` …), as if from
    /// another machine.
    pub async fn authenticate_from(
        source: Option<std::net::IpAddr>,
        addr: std::net::SocketAddr,
        domain: &str,
        cert: &Path,
        node: &str,
        password: &str,
    ) -> Result<XmppClient, String> {
        let tcp = match source {
            None => TcpStream::connect(addr).await.map_err(|e| e.to_string())?,
            Some(source) => {
                let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
                socket
                    .bind(std::net::SocketAddr::new(source, 0))
                    .map_err(|e| e.to_string())?;
                socket.connect(addr).await.map_err(|e| e.to_string())?
            }
        };
        let mut client = XmppClient::over(Box::new(tcp), domain);
        client.send(&header(domain)).await;
        client.expect_open().await?;
        let features = client.next().await.ok_or("no features")?;
        if !features.as_str().contains("starttls") {
            return Err(format!("no STARTTLS offered: {}", features.as_str()));
        }
        client
            .send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        let proceed = client.next().await.ok_or("no proceed")?;
        if proceed.envelope().name != "proceed" {
            return Err(format!("expected proceed, got {}", proceed.as_str()));
        }
        let XmppClient { io, .. } = client;
        let tls = tls_connector(cert, &[])
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                io,
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut client = XmppClient::over(Box::new(tls), domain);
        client.send(&header(domain)).await;
        client.expect_open().await?;
        let features = client.next().await.ok_or("no features after TLS")?;
        if !features.as_str().contains("<mechanism>PLAIN</mechanism>") {
            return Err(format!("no PLAIN offered: {}", features.as_str()));
        }
        client
            .send(&format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
                plain(node, password)
            ))
            .await;
        let answer = client.next().await.ok_or("no SASL answer")?;
        if answer.envelope().name != "success" {
            return Err(answer.as_str().to_string());
        }
        client.parser.restart();
        client.send(&header(domain)).await;
        client.expect_open().await?;
        let features = client.next().await.ok_or("no features after SASL")?;
        if !features
            .as_str()
            .contains("urn:ietf:params:xml:ns:xmpp-bind")
        {
            return Err(format!("no bind offered: {}", features.as_str()));
        }
        Ok(client)
    }

    pub async fn bind(&mut self, resource: Option<&str>) -> Result<(), String> {
        let request = match resource {
            Some(r) => format!("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{r}</resource></bind></iq>"),
            None => "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>".into(),
        };
        self.send(&request).await;
        let result = self.next().await.ok_or("no bind result")?;
        let text = result.as_str();
        let start = text
            .find("<jid>")
            .ok_or_else(|| format!("bind failed: {text}"))?
            + 5;
        let end = text.find("</jid>").unwrap();
        self.jid = text[start..end].to_string();
        self.send(
            "<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
        )
        .await;
        let session = self.next().await.ok_or("no session result")?;
        if session.envelope().stanza_type.as_deref() != Some("result") {
            return Err(format!("session iq failed: {}", session.as_str()));
        }
        Ok(())
    }

    pub fn over(io: Box<dyn Stream>, domain: &str) -> XmppClient {
        XmppClient {
            io,
            parser: StreamParser::new(Limits::default()),
            jid: String::new(),
            domain: domain.into(),
            transcript: String::new(),
        }
    }

    pub async fn send(&mut self, text: &str) {
        let _ = self.io.write_all(text.as_bytes()).await;
        let _ = self.io.flush().await;
    }

    async fn expect_open(&mut self) -> Result<(), String> {
        match self.event(Duration::from_secs(5)).await {
            Some(Event::StreamOpen(_)) => Ok(()),
            Some(other) => Err(format!("expected a stream header, got {other:?}")),
            None => Err(format!("no stream header; received: {}", self.transcript)),
        }
    }

    async fn event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.parser.next_event() {
                Ok(Some(event)) => return Some(event),
                Ok(None) => {}
                Err(_) => return None,
            }
            let mut buf = vec![0u8; 16 * 1024];
            let read = tokio::time::timeout_at(deadline, self.io.read(&mut buf)).await;
            match read {
                Ok(Ok(n)) if n > 0 => {
                    self.transcript
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                    self.parser.feed(&buf[..n]);
                }
                _ => return None,
            }
        }
    }

    /// The next stanza within 5 s.
    pub async fn next(&mut self) -> Option<Stanza> {
        self.next_within(Duration::from_secs(5)).await
    }

    pub async fn next_within(&mut self, timeout: Duration) -> Option<Stanza> {
        loop {
            match self.event(timeout).await? {
                Event::Stanza(stanza) => return Some(stanza),
                Event::Close => return None,
                _ => continue,
            }
        }
    }

    /// The next stanza satisfying `want`, skipping others, within 5 s.
    pub async fn expect(&mut self, what: &str, want: impl Fn(&Stanza) -> bool) -> Stanza {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(stanza) if want(&stanza) => return stanza,
                Some(_) => continue,
                None => panic!(
                    "{}: never received {what}; transcript:\n{}",
                    self.jid, self.transcript
                ),
            }
        }
    }

    /// Asserts nothing matching `want` arrives within `wait`.
    pub async fn expect_nothing(&mut self, wait: Duration, want: impl Fn(&Stanza) -> bool) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_within(left).await {
                Some(stanza) if want(&stanza) => {
                    panic!("{}: unexpected {}", self.jid, stanza.as_str())
                }
                Some(_) => continue,
                None => return,
            }
        }
    }

    /// Sends `<presence/>` and waits for our own presence to come back... servers do not echo
    /// it, so this only sends and gives the server a moment by pinging.
    pub async fn available(&mut self) {
        self.send("<presence/>").await;
        self.ping_server().await;
    }

    /// A round trip to the server: everything sent before has been processed after it.
    pub async fn ping_server(&mut self) -> Stanza {
        let id = format!("ping{}", next_id());
        self.send(&format!(
            "<iq type='get' id='{id}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
            self.domain
        ))
        .await;
        self.expect("ping result", |s| {
            s.envelope().id.as_deref() == Some(id.as_str())
        })
        .await
    }

    /// Sends the stream header on a fresh connection and waits for the server's header and
    /// features: once it returns, the server has accepted the connection (and counted it
    /// against the per-address limit, which happens before the server writes anything).
    pub async fn open_stream(&mut self) -> Stanza {
        self.send(&header(&self.domain.clone())).await;
        if let Err(error) = self.expect_open().await {
            panic!("the server did not open the stream: {error}");
        }
        self.expect("stream features", |s| s.envelope().name == "features")
            .await
    }

    /// A round trip to the server that returns every stanza that arrived before its answer:
    /// all the server wrote in reply to what was sent before (a resumption's resent stanzas,
    /// say), and nothing it had not written yet.
    pub async fn stanzas_before_ping(&mut self) -> Vec<Stanza> {
        let id = format!("ping{}", next_id());
        self.send(&format!(
            "<iq type='get' id='{id}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
            self.domain
        ))
        .await;
        let mut before = Vec::new();
        loop {
            let stanza = self.expect("ping result", |_| true).await;
            if stanza.envelope().id.as_deref() == Some(id.as_str()) {
                return before;
            }
            before.push(stanza);
        }
    }

    /// Reads until the server closes the connection; returns everything received. Fails the
    /// test if the server keeps it open for 5 s.
    pub async fn read_to_close(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match tokio::time::timeout_at(deadline, self.io.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self
                    .transcript
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
                Ok(_) => return self.transcript.clone(),
                Err(_) => panic!(
                    "{}: the server never closed the connection; received:\n{}",
                    self.jid, self.transcript
                ),
            }
        }
    }

    /// Ends the connection the way a killed app does, without `</stream:stream>` (the transport
    /// just ends), and returns once the server has closed its side. The server does that when
    /// it has noticed and is done with the connection, in the same step in which it detaches a
    /// resumable session (XEP-0198) or unbinds any other: by then `<resume/>` finds the
    /// session, and stanzas sent to the JID are queued for it or handled as for an offline
    /// user. What the server does after that in the background (storing what the session never
    /// delivered) is not covered; poll for it with `common::eventually`.
    pub async fn drop_connection(mut self) {
        let _ = self.io.shutdown().await;
        self.read_to_close().await;
    }
}

/// Matches the stanza with this `id` (a reply, or a message the test sent).
pub fn id_is(id: &'static str) -> impl Fn(&Stanza) -> bool {
    move |s| s.envelope().id.as_deref() == Some(id)
}

/// `from` (user `from_node`) asks for `to`'s presence and `to` (user `to_node`) approves; both
/// answers have arrived when this returns.
pub async fn subscribe(from: &mut XmppClient, from_node: &str, to: &mut XmppClient, to_node: &str) {
    let has_type =
        |t: &'static str| move |s: &Stanza| s.envelope().stanza_type.as_deref() == Some(t);
    from.send(&format!(
        "<presence to='{to_node}@{}' type='subscribe'/>",
        to.domain
    ))
    .await;
    to.expect("subscribe", has_type("subscribe")).await;
    to.send(&format!(
        "<presence to='{from_node}@{}' type='subscribed'/>",
        from.domain
    ))
    .await;
    from.expect("subscribed", has_type("subscribed")).await;
}

pub fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
