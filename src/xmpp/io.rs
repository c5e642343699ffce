//! The socket of one connection in its current form (plain TCP, TLS, WebSocket), and moving
//! bytes between it and the stream core: reads hand input to the core without a copy where
//! the transport already buffers it, writes batch what the core produced.

use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use xmpp_proto::c2s::{C2sStream, Input, Transport};

/// Bytes read per call on plain TCP (TLS and WebSocket read from their own buffers).
const READ_BUFFER: usize = 1024;

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
    pub(super) fn transport(&self) -> Transport {
        match self {
            Io::WebSocket(_) => Transport::WebSocket,
            _ => Transport::Tcp,
        }
    }

    pub(super) fn label(&self) -> &'static str {
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
    pub(super) async fn read_into(
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

    pub(super) async fn write(&mut self, chunks: Vec<String>) -> std::io::Result<()> {
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

    pub(super) async fn close(&mut self) {
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
