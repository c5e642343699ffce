//! Client side of c2s negotiation as a plain sequence (RFC 6120 §4–§7): stream header,
//! STARTTLS, SASL PLAIN, resource binding, the legacy session iq when a server still requires
//! it, and initial presence. Anything unexpected is an error naming what arrived, because a
//! load run with half its users logged in measures nothing.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use xmpp_proto::c2s::{NS_BIND, NS_SESSION, NS_TLS};
use xmpp_proto::sasl::{base64_encode, NS_SASL};
use xmpp_proto::xml::ns;
use xmpp_proto::{escape_attr, escape_text, Element, Event, Limits, Stanza, StreamParser};

use crate::users::User;

/// The connection type of a logged-in user.
pub type Tls = TlsStream<TcpStream>;

/// Read buffer per connection.
pub const READ_BUFFER: usize = 16 * 1024;

/// A logged-in, bound, available user.
pub struct Session {
    /// The TLS stream.
    pub io: Tls,
    /// The parser, possibly holding bytes already received after the bind result.
    pub parser: StreamParser,
    /// The bound full JID.
    pub jid: String,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// `host:port` of the c2s listener.
    pub address: String,
    /// The domain in stream headers (and the TLS server name); `None`: each user's own.
    pub domain: Option<String>,
    /// TLS client settings.
    pub tls: TlsConnector,
    /// Give up on one login after this long.
    pub timeout: Duration,
}

/// Logs `user` in with resource `resource`.
pub async fn login(target: &Target, user: &User, resource: &str) -> anyhow::Result<Session> {
    tokio::time::timeout(target.timeout, login_steps(target, user, resource))
        .await
        .map_err(|_| anyhow!("login timed out after {:?}", target.timeout))?
}

async fn login_steps(target: &Target, user: &User, resource: &str) -> anyhow::Result<Session> {
    let domain = target.domain.as_deref().unwrap_or(user.domain());
    let tcp = TcpStream::connect(&target.address)
        .await
        .with_context(|| format!("cannot connect to {}", target.address))?;
    tcp.set_nodelay(true)?;

    let mut wire = Wire::new(tcp);
    let features = wire.open(domain).await.context("opening the stream")?;
    if !features.as_str().contains("<starttls") {
        bail!("the server does not offer STARTTLS: {}", features.as_str());
    }
    wire.send(&format!("<starttls xmlns='{NS_TLS}'/>")).await?;
    let reply = wire.stanza().await.context("waiting for <proceed/>")?;
    if reply.envelope().name != "proceed" {
        bail!("STARTTLS refused: {}", reply.as_str());
    }

    let server_name = ServerName::try_from(domain.to_owned())
        .with_context(|| format!("{domain:?} is not a valid TLS server name"))?;
    let tls = target
        .tls
        .connect(server_name, wire.io)
        .await
        .context("TLS handshake")?;
    let mut wire = Wire::new(tls);
    let features = wire.open(domain).await.context("opening the TLS stream")?;
    if !features.as_str().contains(">PLAIN<") {
        bail!(
            "the server does not offer SASL PLAIN: {}",
            features.as_str()
        );
    }

    let credentials = format!("\0{}\0{}", user.node(), user.password);
    let auth = base64_encode(credentials.as_bytes());
    wire.send(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{auth}</auth>"
    ))
    .await?;
    let reply = wire.stanza().await.context("waiting for the SASL result")?;
    if reply.envelope().name != "success" {
        bail!("authentication failed for {}: {}", user.jid, reply.as_str());
    }
    wire.parser.restart();
    let features = wire
        .open(domain)
        .await
        .context("opening the authenticated stream")?;
    if !features.as_str().contains(NS_BIND) {
        bail!("the server does not offer binding: {}", features.as_str());
    }
    let session_required =
        features.as_str().contains(NS_SESSION) && !features.as_str().contains("<optional");

    wire.send(&format!(
        "<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'><resource>{}</resource></bind></iq>",
        escape_text(resource)
    ))
    .await?;
    let reply = wire.iq_reply("bind1").await.context("binding a resource")?;
    let jid = bound_jid(reply.as_str())?;
    if session_required {
        wire.send(&format!(
            "<iq type='set' id='sess1' to='{}'><session xmlns='{NS_SESSION}'/></iq>",
            escape_attr(domain)
        ))
        .await?;
        let reply = wire
            .iq_reply("sess1")
            .await
            .context("establishing a session")?;
        if reply.envelope().stanza_type.as_deref() != Some("result") {
            bail!("session iq failed: {}", reply.as_str());
        }
    }
    wire.send("<presence/>").await?;
    Ok(Session {
        io: wire.io,
        parser: wire.parser,
        jid,
    })
}

/// The JID in a bind result.
fn bound_jid(reply: &str) -> anyhow::Result<String> {
    let iq = Element::parse(reply, Some(ns::CLIENT)).context("malformed bind result")?;
    if iq.attr("type") != Some("result") {
        bail!("binding refused: {reply}");
    }
    let jid = iq
        .child("bind", NS_BIND)
        .and_then(|bind| bind.child("jid", NS_BIND))
        .map(Element::text)
        .filter(|jid| !jid.is_empty())
        .ok_or_else(|| anyhow!("no JID in the bind result: {reply}"))?;
    Ok(jid)
}

/// A stream being negotiated: the socket, the parser and a read buffer.
struct Wire<S> {
    io: S,
    parser: StreamParser,
    buf: Box<[u8]>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    fn new(io: S) -> Wire<S> {
        Wire {
            io,
            parser: StreamParser::new(Limits::default()),
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
        }
    }

    async fn send(&mut self, text: &str) -> anyhow::Result<()> {
        self.io.write_all(text.as_bytes()).await.context("write")?;
        self.io.flush().await.context("write")?;
        Ok(())
    }

    /// Sends our stream header and returns the server's `<stream:features/>`.
    async fn open(&mut self, domain: &str) -> anyhow::Result<Stanza> {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='{}' \
             version='1.0' xml:lang='en'>",
            ns::CLIENT,
            ns::STREAMS,
            escape_attr(domain)
        ))
        .await?;
        match self.event().await? {
            Event::StreamOpen(_) => {}
            other => bail!("expected a stream header, got {other:?}"),
        }
        let features = self.stanza().await?;
        if features.envelope().name != "features" {
            bail!("expected stream features, got {}", features.as_str());
        }
        Ok(features)
    }

    /// The next stanza or nonza; a stream error or the end of the stream is an error.
    async fn stanza(&mut self) -> anyhow::Result<Stanza> {
        match self.event().await? {
            Event::Stanza(stanza) => {
                let envelope = stanza.envelope();
                if envelope.name == "error" && envelope.namespace.as_deref() == Some(ns::STREAMS) {
                    bail!("stream error: {}", stanza.as_str());
                }
                Ok(stanza)
            }
            Event::Close => bail!("the server closed the stream"),
            other => bail!("unexpected {other:?}"),
        }
    }

    /// The iq answering `id`, skipping anything else the server pushes meanwhile.
    async fn iq_reply(&mut self, id: &str) -> anyhow::Result<Stanza> {
        loop {
            let stanza = self.stanza().await?;
            let envelope = stanza.envelope();
            if envelope.name == "iq" && envelope.id.as_deref() == Some(id) {
                return Ok(stanza);
            }
        }
    }

    async fn event(&mut self) -> anyhow::Result<Event> {
        loop {
            if let Some(event) = self
                .parser
                .next_event()
                .context("malformed XML from server")?
            {
                return Ok(event);
            }
            let n = self.io.read(&mut self.buf).await.context("read")?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            self.parser.feed(&self.buf[..n]);
        }
    }
}

/// A shared TLS connector.
pub fn connector(config: Arc<rustls::ClientConfig>) -> TlsConnector {
    TlsConnector::from(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_jid_from_results_and_errors() {
        let ok = "<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                  <jid>7-42@localhost/lt7</jid></bind></iq>";
        assert_eq!(bound_jid(ok).unwrap(), "7-42@localhost/lt7");
        let refused = "<iq type='error' id='bind1'><error type='cancel'/></iq>";
        assert!(bound_jid(refused).is_err());
        let empty = "<iq type='result' id='bind1'/>";
        assert!(bound_jid(empty).is_err());
    }
}
