//! The XMPP listeners: accepting connections under the per-IP limit, and the handshakes
//! before XMPP starts (TLS for direct TLS, XEP-0368, and `wss://`; the RFC 7395 WebSocket
//! upgrade with the `xmpp` subprotocol).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use super::conn;
use super::io::Io;
use super::XmppContext;
use crate::telemetry::Pii;

/// How long a TLS handshake or WebSocket upgrade may take.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
        let Some(server_slot) = ctx.connections.try_acquire() else {
            // Past the server-wide budget: refused at once, before it can hold anything.
            ctx.metrics
                .limits
                .with_label_values(&["connections_total"])
                .inc();
            continue;
        };
        let Some(slot) = ctx.per_address.try_acquire(peer.ip()) else {
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
                let _slots = (server_slot, slot);
                if let Some(io) = open(&task_ctx, stream, kind).await {
                    conn::run(task_ctx, io, peer).await;
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
        let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, ctx.tls.accept(stream)).await;
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
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async_with_config(io, callback, Some(config)),
    )
    .await
    {
        Ok(Ok(ws)) => Some(ws),
        _ => None,
    }
}
