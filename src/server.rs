//! Starting, running and stopping every service of one Switchboard process.
//!
//! [`Server::start`] binds every listener (port 0 works; the real ports are reported), spawns
//! their accept loops on a shared [`TaskTracker`], and returns. [`Server::shutdown`] stops
//! accepting, lets open connections finish within `server.drain_timeout_s`, then closes the
//! store. [`run`] is what `switchboard serve` does: start, print, wait for a signal, shut down.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::api::{self, AppState};
use crate::auth::Auth;
use crate::chat::Chat;
use crate::clock;
use crate::config::Config;
use crate::connections::{ConnectionBudget, PerAddressLimit};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tls::{self, TlsFiles};

/// How long a client may take to send request headers (slow-loris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often expired sessions and nonces are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// A running server.
pub struct Server {
    /// HTTPS REST API.
    pub api_addr: SocketAddr,
    /// Plain-HTTP REST API, when `api.http_listen` is set.
    pub api_http_addr: Option<SocketAddr>,
    /// `/metrics`, `/health`, `/ready`, when `metrics.listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub tls: TlsFiles,
    /// XMPP c2s (TCP), WebSocket and direct-TLS listeners.
    pub xmpp_addrs: crate::xmpp::XmppAddrs,
    /// The conference SFU's listeners.
    pub sfu_addrs: crate::sfu::SfuAddrs,
    /// The SFU's shared state, for tests and embedding.
    pub sfu: Arc<crate::sfu::SfuContext>,
    /// The XMPP service's shared state (routing table), for tests and embedding.
    pub xmpp: Arc<crate::xmpp::XmppContext>,
    /// Dialogs and history, shared by REST and XMPP.
    pub chat: Arc<Chat>,
    pub store: Store,
    pub auth: Arc<Auth>,
    pub config: Arc<Config>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    ready: Arc<AtomicBool>,
}

impl Server {
    /// Opens the store, binds every listener and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        config.validate()?;
        let config = Arc::new(config);
        let store = Store::open(
            &config.store.url,
            &config.server.data_dir,
            config.store.max_connections,
        )
        .await
        .context("opening the store")?;
        let (tls_config, tls_files) = tls::server_config(&config, &[b"http/1.1"])?;
        // XMPP: no ALPN for STARTTLS; direct TLS clients (XEP-0368) offer `xmpp-client`.
        let (xmpp_tls, _) = tls::server_config(&config, &[b"xmpp-client"])?;
        let auth = Arc::new(Auth::new(store.clone(), &config.api));
        let metrics = Arc::new(Metrics::new());
        let metrics_for_xmpp = metrics.clone();
        let metrics_for_sfu = metrics.clone();
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let chat = Arc::new(Chat::new(
            store.clone(),
            &config.xmpp.domain,
            config.chat.writer_queue,
            &tracker,
            shutdown.clone(),
        ));
        let state = AppState {
            config: config.clone(),
            store: store.clone(),
            auth: auth.clone(),
            metrics: metrics.clone(),
            chat: chat.clone(),
        };
        let drain = Duration::from_secs(config.server.drain_timeout_s);
        let ready = Arc::new(AtomicBool::new(false));
        let router = api::router(state);
        let connections = Arc::new(ConnectionBudget::new(config.server.max_connections));
        // REST clients share the server-wide budget and have a cap per address; the
        // operations listener has neither, so /ready can say when the budget is spent.
        let limits = Some(HttpLimits {
            connections: connections.clone(),
            per_address: Arc::new(PerAddressLimit::new(config.api.max_connections_per_ip)),
        });

        let api_listener = bind("api.listen", &config.api.listen).await?;
        let api_addr = api_listener.local_addr()?;
        let acceptor = TlsAcceptor::from(tls_config);
        tracker.spawn(serve_http(
            api_listener,
            router.clone(),
            Some(acceptor),
            limits.clone(),
            shutdown.clone(),
            tracker.clone(),
            drain,
        ));

        let mut api_http_addr = None;
        if !config.api.http_listen.is_empty() {
            let listener = bind("api.http_listen", &config.api.http_listen).await?;
            api_http_addr = Some(listener.local_addr()?);
            tracker.spawn(serve_http(
                listener,
                router,
                None,
                limits,
                shutdown.clone(),
                tracker.clone(),
                drain,
            ));
        }

        let mut metrics_addr = None;
        if !config.metrics.listen.is_empty() {
            let listener = bind("metrics.listen", &config.metrics.listen).await?;
            metrics_addr = Some(listener.local_addr()?);
            let ops = ops_router(OpsState {
                metrics,
                store: store.clone(),
                ready: ready.clone(),
                connections: connections.clone(),
            });
            tracker.spawn(serve_http(
                listener,
                ops,
                None,
                None,
                shutdown.clone(),
                tracker.clone(),
                drain,
            ));
        }

        let (xmpp, xmpp_addrs) = crate::xmpp::start(
            config.clone(),
            store.clone(),
            auth.clone(),
            &metrics_for_xmpp,
            TlsAcceptor::from(xmpp_tls),
            shutdown.clone(),
            tracker.clone(),
            connections.clone(),
            chat.clone(),
        )
        .await?;
        let connections_for_sfu = connections;

        let (sfu_tls, _) = tls::server_config(&config, &[b"http/1.1"])?;
        let (sfu, sfu_addrs) = crate::sfu::start(
            config.clone(),
            auth.clone(),
            chat.clone(),
            &metrics_for_sfu,
            Some(TlsAcceptor::from(sfu_tls)),
            shutdown.clone(),
            tracker.clone(),
            connections_for_sfu,
        )
        .await?;

        tracker.spawn(prune_loop(
            auth.clone(),
            config.api.signature_window_s as i64,
            shutdown.clone(),
        ));
        ready.store(true, Ordering::Release);
        tracing::info!(%api_addr, ?api_http_addr, ?metrics_addr, xmpp = ?xmpp_addrs, "switchboard started");
        Ok(Server {
            api_addr,
            api_http_addr,
            metrics_addr,
            tls: tls_files,
            xmpp_addrs,
            xmpp,
            sfu_addrs,
            sfu,
            chat,
            store,
            auth,
            config,
            shutdown,
            tracker,
            ready,
        })
    }

    /// A token that is cancelled when the server begins shutting down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, drains open connections within the deadline, closes the store.
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Release);
        self.shutdown.cancel();
        self.tracker.close();
        let deadline =
            Duration::from_secs(self.config.server.drain_timeout_s) + Duration::from_secs(1);
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("drain deadline passed with connections still open; closing them");
        }
        self.store.close().await;
    }

    /// What `serve` prints: every listener with its real port, and what to do next.
    pub fn banner(&self) -> String {
        let mut lines = vec![format!(
            "Switchboard {} is running.",
            env!("CARGO_PKG_VERSION")
        )];
        lines.push(format!(
            "  REST API (HTTPS)     https://{}/   certificate: {}",
            self.api_addr,
            self.tls.cert.display()
        ));
        if let Some(addr) = self.api_http_addr {
            lines.push(format!("  REST API (HTTP)      http://{addr}/"));
        }
        lines.push(format!(
            "  XMPP c2s (STARTTLS)  {}   domain: {}",
            self.xmpp_addrs.tcp, self.config.xmpp.domain
        ));
        if let Some(addr) = self.xmpp_addrs.ws {
            let scheme = if self.config.xmpp.ws_tls { "wss" } else { "ws" };
            lines.push(format!(
                "  XMPP WebSocket       {scheme}://{addr}/   subprotocol xmpp"
            ));
        }
        if let Some(addr) = self.xmpp_addrs.direct_tls {
            lines.push(format!("  XMPP direct TLS      {addr}"));
        }
        if let Some(addr) = self.sfu_addrs.signalling {
            let (ws, http) = if self.config.sfu.signalling_tls {
                ("wss", "https")
            } else {
                ("ws", "http")
            };
            lines.push(format!(
                "  Conferences (Janus)  {ws}://{addr}/?token=<session token>   {http}://{addr}/janus"
            ));
            lines.push(format!(
                "  Conference media     udp {}   announced as {} (sfu.public_ip)",
                self.sfu_addrs.media, self.sfu_addrs.media_announced
            ));
        }
        if let Some(addr) = self.metrics_addr {
            lines.push(format!(
                "  Metrics and health   http://{addr}/metrics  /health  /ready"
            ));
        }
        let store = if self.config.store.url.is_empty() {
            format!("SQLite in {}", self.config.server.data_dir.display())
        } else {
            match self.store.backend() {
                crate::store::Backend::Sqlite => "SQLite".to_string(),
                crate::store::Backend::Postgres => "PostgreSQL".to_string(),
            }
        };
        lines.push(format!("  Store                {store}"));
        lines.push(String::new());
        lines.push("Create an application (prints its credentials):".into());
        lines.push("  switchboard app create --name myapp        (or: cargo run --release -- app create --name myapp)".into());
        lines.join("\n")
    }
}

/// `switchboard serve`: start, print the banner, run until SIGTERM/SIGINT, drain, exit.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let server = Server::start(config).await?;
    println!("{}", server.banner());
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn bind(key: &str, addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({key})"))
}

/// The connection caps of a client-facing HTTP listener.
#[derive(Clone)]
pub(crate) struct HttpLimits {
    pub(crate) connections: Arc<ConnectionBudget>,
    pub(crate) per_address: Arc<PerAddressLimit>,
}

/// Accepts connections until cancelled; each one is served on its own task, and on shutdown
/// finishes its in-flight request (or is dropped after `drain`). Over a cap of `limits`, a
/// connection is closed at accept.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_http(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: Option<HttpLimits>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    drain: Duration,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let permits = match &limits {
            None => None,
            Some(limits) => {
                let Some(server) = limits.connections.try_acquire() else {
                    tracing::debug!("connection refused: the server's connection budget is spent");
                    continue;
                };
                let Some(address) = limits.per_address.try_acquire(peer.ip()) else {
                    tracing::debug!("connection refused: too many from one address");
                    continue;
                };
                Some((server, address))
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permits = permits;
            match tls {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, router, shutdown, drain).await
                        }
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
                None => serve_connection(stream, peer, router, shutdown, drain).await,
            }
        });
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
    drain: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    // Upgrades: the SFU's signalling port takes WebSockets on the same listener.
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(drain, connection).await;
        }
    }
}

async fn prune_loop(auth: Arc<Auth>, nonce_window_s: i64, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        match auth.prune(clock::unix_now(), nonce_window_s).await {
            Ok(removed) if removed > 0 => {
                tracing::debug!(removed, "pruned expired sessions and nonces")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "pruning failed"),
        }
    }
}

#[derive(Clone)]
struct OpsState {
    metrics: Arc<Metrics>,
    store: Store,
    ready: Arc<AtomicBool>,
    connections: Arc<ConnectionBudget>,
}

fn ops_router(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .with_state(state)
}

async fn metrics_text(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Ready when started, not draining, and the store answers.
async fn ready(State(state): State<OpsState>) -> impl IntoResponse {
    if !state.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    if state.connections.is_exhausted() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "connection limit reached\n",
        );
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n"),
    }
}
