//! The XMPP service: c2s over TCP with STARTTLS (RFC 6120), XMPP over WebSocket (RFC 7395),
//! routing (RFC 6121), rosters and presence, and the XEPs QuickBlox clients use.
//!
//! Protocol decisions live in the I/O-free `xmpp-proto` crate (stream negotiation, the
//! subscription state machine, where a message goes); the files here carry them out, one job
//! each:
//!
//! Connections
//! - [`listener`]: accept loops, per-IP limit, TLS and WebSocket handshakes.
//! - [`io`]: the socket (TCP, TLS, WebSocket) and moving bytes to and from the stream core.
//! - [`conn`]: the drive loop of one connection: reads, deliveries, timers, core outputs.
//! - [`login`]: SASL (password or session token) and resource binding.
//! - [`resume`]: the end of a connection; detaching and resuming sessions (XEP-0198).
//! - [`hub`]: the routing table of bound sessions and detached ones.
//!
//! Sessions (what a bound client's stanzas mean)
//! - [`session`]: the bound session, where a stanza is addressed, dispatch by kind, `end`.
//! - [`classify`]: one pass over a message for its traits (urgency, carbons, call signal, …).
//! - [`message`]: message delivery (RFC 6121 §8.5) as the core decides it.
//! - [`history`]: `save_to_history` (store, then route with the ids injected), chat markers and
//!   corrections updating history.
//! - [`carbons`]: XEP-0280 copies to the user's other resources.
//! - [`offline`]: offline storage and its flush at login (XEP-0160, XEP-0203).
//! - [`presence`]: broadcast, probes, directed presence (RFC 6121 §4).
//! - [`roster`]: roster get/set/remove and pushes (RFC 6121 §2, XEP-0237).
//! - [`subscription`]: subscription requests and answers between two local users (RFC 6121 §3).
//! - [`blocking`]: XEP-0191 block list; [`privacy`]: XEP-0016 lists;
//!   [`block_rules`]: what each user refuses, cached, and where routing asks.
//! - [`iq`]: iq routing; [`server_iq`]: the server's own iqs, one table.
//! - [`muc`]: the MUC service backing group dialogs (one task per room).
//! - [`mam`]: XEP-0313 archive queries over the chat history.
//! - [`realtime`]: what REST changes to chat (send_to_chat, removed occupants) does live.
//! - [`reply`]: results, errors and bounces; the one place a failure becomes a stanza error.
//! - [`metrics`]: the service's Prometheus metrics.

pub mod block_rules;
mod blocking;
mod carbons;
pub mod classify;
pub mod conn;
pub mod history;
pub mod hub;
mod io;
mod iq;
pub mod listener;
mod login;
mod mam;
mod message;
pub mod metrics;
pub mod muc;
mod offline;
mod pipeline;
mod presence;
mod privacy;
mod realtime;
pub mod reply;
mod resume;
mod roster;
mod server_iq;
pub mod session;
mod subscription;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::chat::Chat;
use crate::config::Config;
use crate::connections::{ConnectionBudget, PerAddressLimit};
use crate::metrics::Metrics;
use crate::store::Store;
use block_rules::BlockCache;
use hub::{Hub, QueueBudget};
use metrics::XmppMetrics;

/// What every connection task shares.
pub struct XmppContext {
    pub config: Arc<Config>,
    pub store: Store,
    pub auth: Arc<Auth>,
    pub hub: Hub,
    pub metrics: XmppMetrics,
    pub tls: TlsAcceptor,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// Connections across the server (shared with the REST listeners).
    pub connections: Arc<ConnectionBudget>,
    /// Connections per source address (`xmpp.max_connections_per_ip`).
    pub per_address: Arc<PerAddressLimit>,
    /// What each user refuses (XEP-0191 list plus the default privacy list's jid items).
    pub blocks: BlockCache,
    /// Bytes queued for all sessions, bounded by `xmpp.queued_bytes_total`.
    pub queue_budget: Arc<QueueBudget>,
    /// `xmpp.domain`, lowercased once here as JIDs are, so comparisons are plain equality.
    domain: String,
    /// Unix seconds the service started (XEP-0012 uptime of the server).
    pub started_at: i64,
    /// Dialogs and history (shared with REST).
    pub chat: Arc<Chat>,
    /// The MUC service's live rooms.
    pub muc: muc::Muc,
}

impl std::fmt::Debug for XmppContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmppContext")
            .field("domain", &self.domain)
            .finish()
    }
}

impl XmppContext {
    /// The domain we serve, lowercased.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

/// The bound addresses of the XMPP listeners.
#[derive(Debug, Clone, Copy)]
pub struct XmppAddrs {
    pub tcp: SocketAddr,
    pub ws: Option<SocketAddr>,
    pub direct_tls: Option<SocketAddr>,
}

/// Binds the XMPP listeners and spawns their accept loops.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    config: Arc<Config>,
    store: Store,
    auth: Arc<Auth>,
    metrics: &Metrics,
    tls: TlsAcceptor,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    connections: Arc<ConnectionBudget>,
    chat: Arc<Chat>,
) -> anyhow::Result<(Arc<XmppContext>, XmppAddrs)> {
    let xmpp_metrics = XmppMetrics::register(metrics.registry());
    let ctx = Arc::new(XmppContext {
        config: config.clone(),
        store,
        auth,
        hub: Hub::new(),
        tls,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        connections,
        per_address: Arc::new(PerAddressLimit::new(config.xmpp.max_connections_per_ip)),
        blocks: BlockCache::new(config.xmpp.block_rules_cache),
        queue_budget: Arc::new(QueueBudget::new(
            config.xmpp.queued_bytes_total,
            Some(xmpp_metrics.queued_bytes.clone()),
        )),
        domain: config.xmpp.domain.to_ascii_lowercase(),
        metrics: xmpp_metrics,
        started_at: crate::clock::unix_now(),
        chat,
        muc: muc::Muc::new(),
    });
    ctx.chat
        .set_realtime(Arc::new(realtime::XmppRealtime::new(&ctx)));
    ctx.metrics.offline_queue.set(
        ctx.store
            .offline_total()
            .await
            .context("counting offline messages")?,
    );
    let listen = |addr: &str, key: &'static str, kind: listener::Listener| {
        let ctx = ctx.clone();
        let tracker = tracker.clone();
        let addr = addr.to_string();
        async move {
            if addr.is_empty() {
                return Ok(None);
            }
            let listener = TcpListener::bind(&addr)
                .await
                .with_context(|| format!("cannot listen on {addr} ({key})"))?;
            let bound = listener.local_addr()?;
            tracker.spawn(listener::accept(ctx, listener, kind));
            anyhow::Ok(Some(bound))
        }
    };
    // `xmpp.listen` is required (the config check rejects it empty); the others are optional.
    let tcp_addr = listen(&config.xmpp.listen, "xmpp.listen", listener::Listener::Tcp)
        .await?
        .context("xmpp.listen is empty")?;
    let direct_tls = listen(
        &config.xmpp.direct_tls_listen,
        "xmpp.direct_tls_listen",
        listener::Listener::DirectTls,
    )
    .await?;
    let ws = listen(
        &config.xmpp.ws_listen,
        "xmpp.ws_listen",
        listener::Listener::WebSocket,
    )
    .await?;
    Ok((
        ctx,
        XmppAddrs {
            tcp: tcp_addr,
            ws,
            direct_tls,
        },
    ))
}
