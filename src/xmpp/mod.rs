//! The XMPP service: c2s over TCP with STARTTLS (RFC 6120), XMPP over WebSocket (RFC 7395),
//! routing (RFC 6121), rosters and presence, and the XEPs QuickBlox clients use.
//!
//! Each connection is one task ([`conn`]) that owns its socket and drives an I/O-free
//! [`xmpp_proto::c2s::C2sStream`]; bound sessions meet in the [`hub::Hub`] routing table.
//! What a stanza means to the server (routing, roster, presence, server iqs) is in
//! [`router`].

pub mod conn;
pub mod hub;
pub mod metrics;
pub mod privacy;
pub mod router;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use dashmap::DashMap;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;
use hub::Hub;
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
    connections_per_ip: DashMap<IpAddr, u32>,
    /// What each user refuses (XEP-0191 list plus the default privacy list's jid items),
    /// loaded on first use and dropped when the user changes either list, so the routing path
    /// does no storage reads.
    pub blocks: DashMap<crate::model::UserId, Arc<privacy::BlockRules>>,
    /// Bumped by every change to any user's lists, so a load that raced a change never leaves
    /// stale rules cached (see `router::Session::rules_of`).
    pub blocks_epoch: std::sync::atomic::AtomicU64,
    /// Unix seconds the service started (XEP-0012 uptime of the server).
    pub started_at: i64,
}

impl std::fmt::Debug for XmppContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmppContext")
            .field("domain", &self.config.xmpp.domain)
            .finish()
    }
}

/// Counts a connection from `ip` while alive; refuses one over the per-IP limit.
pub struct ConnectionSlot {
    ctx: Arc<XmppContext>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let dashmap::mapref::entry::Entry::Occupied(mut entry) =
            self.ctx.connections_per_ip.entry(self.ip)
        {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }
}

impl XmppContext {
    /// Takes a per-IP connection slot, or `None` when the limit is reached.
    pub fn connection_slot(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut count = self.connections_per_ip.entry(ip).or_insert(0);
        if *count >= self.config.xmpp.max_connections_per_ip {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            ctx: self.clone(),
            ip,
        })
    }

    pub fn domain(&self) -> &str {
        &self.config.xmpp.domain
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
) -> anyhow::Result<(Arc<XmppContext>, XmppAddrs)> {
    let ctx = Arc::new(XmppContext {
        config: config.clone(),
        store,
        auth,
        hub: Hub::new(),
        metrics: XmppMetrics::register(metrics.registry()),
        tls,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        connections_per_ip: DashMap::new(),
        blocks: DashMap::new(),
        blocks_epoch: std::sync::atomic::AtomicU64::new(0),
        started_at: crate::clock::unix_now(),
    });
    ctx.metrics.offline_queue.set(
        ctx.store
            .offline_total()
            .await
            .context("counting offline messages")?,
    );
    let listen = |addr: &str, key: &'static str, kind: conn::Listener| {
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
            tracker.spawn(conn::accept(ctx, listener, kind));
            anyhow::Ok(Some(bound))
        }
    };
    // `xmpp.listen` is required (the config check rejects it empty); the others are optional.
    let tcp_addr = listen(&config.xmpp.listen, "xmpp.listen", conn::Listener::Tcp)
        .await?
        .context("xmpp.listen is empty")?;
    let direct_tls = listen(
        &config.xmpp.direct_tls_listen,
        "xmpp.direct_tls_listen",
        conn::Listener::DirectTls,
    )
    .await?;
    let ws = listen(
        &config.xmpp.ws_listen,
        "xmpp.ws_listen",
        conn::Listener::WebSocket,
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
