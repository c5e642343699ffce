//! The Janus API listener: WebSocket (subprotocol `janus-protocol`, one JSON object per text
//! frame) and the HTTP long-poll transport (`POST /janus`, `POST /janus/{session}`,
//! `POST /janus/{session}/{handle}`, `GET /janus/{session}?maxev=N`) on the same port, the way
//! janus.js reaches them (janus-videoroom reference §2).
//!
//! The user is named by their QuickBlox session token in the URL's `token` parameter (the
//! QuickBlox conference client can pass nothing else). A request without a token is anonymous
//! and may use numeric rooms only (stock Janus clients, the load tool); a bad or expired token
//! is refused before the upgrade with 403.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sfu_core::janus::{reply, ErrorCode, JanusError, TransportId};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use super::gateway::{GatewayInput, Principal};
use super::SfuContext;
use crate::clock;
use crate::connections::{ConnectionBudget, PerAddressLimit};

/// The WebSocket subprotocol janus.js asks for.
const SUBPROTOCOL: &str = "janus-protocol";
/// Events queued for one WebSocket before they are dropped (a client that does not read).
const OUT_QUEUE: usize = 1024;
/// A write that takes longer than this closes the WebSocket (a stalled client).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP long poll with nothing to report answers `keepalive` after this (Janus: 30 s).
const LONG_POLL: Duration = Duration::from_secs(30);
/// Largest request body over HTTP (an SDP with every candidate fits many times).
const MAX_BODY: usize = 256 * 1024;

/// Binds the signalling listener and serves it.
pub async fn start(
    ctx: Arc<SfuContext>,
    tls: Option<TlsAcceptor>,
    connections: Arc<ConnectionBudget>,
) -> anyhow::Result<SocketAddr> {
    let listen = &ctx.config.sfu.signalling_listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding sfu.signalling_listen {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let router = Router::new().fallback(entry).with_state(ctx.clone());
    let limits = crate::server::HttpLimits {
        connections,
        per_address: Arc::new(PerAddressLimit::new(ctx.config.api.max_connections_per_ip)),
    };
    let drain = Duration::from_secs(ctx.config.server.drain_timeout_s);
    ctx.tracker.spawn(crate::server::serve_http(
        listener,
        router,
        tls,
        Some(limits),
        ctx.shutdown.clone(),
        ctx.tracker.clone(),
        drain,
    ));
    Ok(addr)
}

/// Every path: a WebSocket upgrade, a CORS preflight, or an HTTP long-poll request.
async fn entry(
    State(ctx): State<Arc<SfuContext>>,
    ConnectInfo(_peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response {
    let url = JanusUrl::parse(request.uri().path(), request.uri().query());
    let owner = match principal(&ctx, url.token.as_deref()).await {
        Ok(owner) => owner,
        Err(response) => return response,
    };
    if is_websocket_upgrade(&request) {
        return upgrade(ctx, request, owner);
    }
    let response = match *request.method() {
        Method::OPTIONS => StatusCode::NO_CONTENT.into_response(),
        Method::POST => post(ctx, request, owner, &url).await,
        Method::GET => poll(ctx, owner, &url).await,
        _ => json_response(reply::error(
            None,
            None,
            &JanusError::new(ErrorCode::TransportSpecific, "Use POST or GET"),
        )),
    };
    with_cors(response)
}

/// The user a token names, or anonymous without one; a bad token is refused.
async fn principal(ctx: &SfuContext, token: Option<&str>) -> Result<Principal, Response> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(Principal::Anonymous);
    };
    match ctx.auth.token_user(token, clock::unix_now()).await {
        Ok((app, user)) => Ok(Principal::User { app, user }),
        Err(_) => Err(with_cors(
            (
                StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "application/json")],
                json!({"janus": "error", "error": {"code": 403, "reason": "Unauthorized request (wrong or expired token)"}})
                    .to_string(),
            )
                .into_response(),
        )),
    }
}

fn is_websocket_upgrade(request: &Request<Body>) -> bool {
    let has = |name: header::HeaderName, value: &str| {
        request
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(value))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// The RFC 6455 handshake on hyper's upgrade: 101 with the accept key and the subprotocol,
/// then the connection is a WebSocket served by [`websocket`].
fn upgrade(ctx: Arc<SfuContext>, mut request: Request<Body>, owner: Principal) -> Response {
    let offered = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    let key = request.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let (Some(key), true) = (key, offered) else {
        return (
            StatusCode::BAD_REQUEST,
            "a WebSocket here needs Sec-WebSocket-Key and the janus-protocol subprotocol",
        )
            .into_response();
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let task_ctx = ctx.clone();
    ctx.tracker.spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_BODY))
            .max_frame_size(Some(MAX_BODY));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        websocket(task_ctx, ws, owner).await;
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .expect("base64 is a header value"),
    );
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    response
}

/// One WebSocket: text frames to the gateway as requests, the gateway's messages back. When
/// it closes, its sessions end (Janus semantics; the client relies on it).
async fn websocket<S>(ctx: Arc<SfuContext>, ws: WebSocketStream<S>, owner: Principal)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let transport = TransportId(ctx.next_transport.fetch_add(1, Ordering::Relaxed));
    let (out_tx, mut out_rx) = mpsc::channel::<Arc<str>>(OUT_QUEUE);
    let gauge = ctx
        .metrics
        .signalling_connections
        .with_label_values(&["websocket"]);
    gauge.inc();
    if ctx
        .gateway
        .send(GatewayInput::Open {
            transport,
            out: out_tx,
        })
        .await
        .is_err()
    {
        gauge.dec();
        return;
    }
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(WsMessage::Text(text))) => text.as_str().to_string(),
                    Some(Ok(WsMessage::Binary(bytes))) => match String::from_utf8(bytes.to_vec()) {
                        Ok(text) => text,
                        Err(_) => {
                            let error = JanusError::new(ErrorCode::InvalidJson, "JSON error: not UTF-8");
                            let text = reply::error(None, None, &error).to_string();
                            if send(&mut sink, text).await.is_err() {
                                break;
                            }
                            continue;
                        }
                    },
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => continue,
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                };
                let request = GatewayInput::Request { transport, owner: owner.clone(), text };
                if ctx.gateway.send(request).await.is_err() {
                    break;
                }
            }
            out = out_rx.recv() => match out {
                Some(text) => {
                    if send(&mut sink, text.to_string()).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            () = ctx.shutdown.cancelled() => {
                let _ = sink.send(WsMessage::Close(None)).await;
                break;
            }
        }
    }
    let _ = ctx.gateway.send(GatewayInput::Closed { transport }).await;
    gauge.dec();
}

async fn send<S>(
    sink: &mut futures_util::stream::SplitSink<WebSocketStream<S>, WsMessage>,
    text: String,
) -> Result<(), ()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(WRITE_TIMEOUT, sink.send(WsMessage::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// An HTTP request: its ids come from the path (janus.js appends them to the server URL).
async fn post(
    ctx: Arc<SfuContext>,
    request: Request<Body>,
    owner: Principal,
    url: &JanusUrl,
) -> Response {
    let Some((session, handle)) = url.ids() else {
        return json_response(reply::error(
            None,
            None,
            &JanusError::new(ErrorCode::InvalidRequestPath, "Invalid path"),
        ));
    };
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            return json_response(reply::error(
                None,
                None,
                &JanusError::new(
                    ErrorCode::InvalidJson,
                    "JSON error: body too large or unreadable",
                ),
            ))
        }
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    let (reply_tx, reply_rx) = oneshot::channel();
    let input = GatewayInput::HttpRequest {
        owner,
        session,
        handle,
        text,
        reply: reply_tx,
    };
    if ctx.gateway.send(input).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match tokio::time::timeout(LONG_POLL, reply_rx).await {
        Ok(Ok(answer)) => json_response(answer),
        _ => json_response(reply::error(
            None,
            session,
            &JanusError::new(ErrorCode::Unknown, "No answer in time"),
        )),
    }
}

/// A long poll: the session's next events, or `keepalive` after 30 s of nothing.
async fn poll(ctx: Arc<SfuContext>, owner: Principal, url: &JanusUrl) -> Response {
    let Some((Some(session), None)) = url.ids() else {
        return json_response(reply::error(
            None,
            None,
            &JanusError::new(
                ErrorCode::InvalidRequestPath,
                "Poll a session: GET /janus/{session}",
            ),
        ));
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    let input = GatewayInput::HttpPoll {
        owner,
        session,
        max_events: url.max_events.unwrap_or(1).clamp(1, 100),
        reply: reply_tx,
    };
    if ctx.gateway.send(input).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match tokio::time::timeout(LONG_POLL, reply_rx).await {
        Ok(Ok(Ok(events))) if url.max_events.is_some() => json_response(Value::Array(events)),
        Ok(Ok(Ok(mut events))) => json_response(
            events
                .pop()
                .unwrap_or_else(|| json!({"janus": "keepalive"})),
        ),
        Ok(Ok(Err(error))) => json_response(error),
        _ => json_response(json!({"janus": "keepalive"})),
    }
}

fn json_response(value: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// janus.js calls cross-origin with `Content-Type: application/json` (a preflight) and no
/// credentials, so any origin may.
fn with_cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, accept"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// The parts of a Janus URL: the token and the ids after the server's base path. janus.js
/// builds HTTP URLs as `server + "/" + session (+ "/" + handle)`, so with
/// `server = http://h:8188/janus?token=T` the ids land inside the query
/// (`/janus?token=T/123/456?rid=…&maxev=10`): both forms are read.
#[derive(Debug, Default, PartialEq, Eq)]
struct JanusUrl {
    token: Option<String>,
    segments: Vec<String>,
    max_events: Option<usize>,
}

impl JanusUrl {
    fn parse(path: &str, query: Option<&str>) -> JanusUrl {
        let mut url = JanusUrl {
            segments: path
                .split('/')
                .filter(|s| !s.is_empty() && *s != "janus")
                .map(str::to_string)
                .collect(),
            ..JanusUrl::default()
        };
        let Some(query) = query else { return url };
        // A second `?` starts janus.js's own parameters after the ids.
        let (own, appended) = match query.find("/") {
            Some(slash) => {
                let (before, after) = query.split_at(slash);
                match after.find('?') {
                    Some(q) => (
                        format!("{before}&{}", &after[q + 1..]),
                        Some(after[..q].to_string()),
                    ),
                    None => (before.to_string(), Some(after.to_string())),
                }
            }
            None => (query.to_string(), None),
        };
        for (key, value) in form_urlencoded::parse(own.as_bytes()) {
            match key.as_ref() {
                "token" => url.token = Some(value.into_owned()),
                "maxev" => url.max_events = value.parse().ok(),
                _ => {}
            }
        }
        if let Some(appended) = appended {
            url.segments.extend(
                appended
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        }
        url
    }

    /// The session and handle ids named by the path, or `None` for a path that is not one.
    fn ids(&self) -> Option<(Option<u64>, Option<u64>)> {
        let mut ids = self.segments.iter().map(|s| s.parse::<u64>().ok());
        let session = match ids.next() {
            None => return Some((None, None)),
            Some(id) => Some(id?),
        };
        let handle = match ids.next() {
            None => None,
            Some(id) => Some(id?),
        };
        if ids.next().is_some() {
            return None;
        }
        Some((session, handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn janus_urls_with_the_token_before_the_ids() {
        let plain = JanusUrl::parse("/janus/12/34", Some("token=abc&maxev=10"));
        assert_eq!(plain.token.as_deref(), Some("abc"));
        assert_eq!(plain.ids(), Some((Some(12), Some(34))));
        assert_eq!(plain.max_events, Some(10));
        // janus.js appends "/{session}" and "?rid=…&maxev=…" to a server URL with a query.
        let appended = JanusUrl::parse("/janus", Some("token=abc/12?rid=1700000000000&maxev=10"));
        assert_eq!(appended.token.as_deref(), Some("abc"));
        assert_eq!(appended.ids(), Some((Some(12), None)));
        assert_eq!(appended.max_events, Some(10));
        let both = JanusUrl::parse("/", Some("token=abc/12/34"));
        assert_eq!(both.ids(), Some((Some(12), Some(34))));
        assert_eq!(JanusUrl::parse("/janus/x", None).ids(), None);
        assert_eq!(JanusUrl::parse("/janus/1/2/3", None).ids(), None);
        assert_eq!(JanusUrl::parse("/", None).ids(), Some((None, None)));
    }
}
