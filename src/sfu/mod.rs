//! The conference SFU's shell: Janus-compatible signalling (WebSocket with subprotocol
//! `janus-protocol` and HTTP long poll, on one port), the gateway task that owns the Janus
//! sessions, and one task per room. The protocol logic is in `crates/sfu-core`; the files here
//! move messages and talk to the store:
//!
//! - `signalling.rs`: the listener, the WebSocket upgrade, the HTTP long-poll routes, the
//!   user's session token from the URL (`ws://host:8188/?token=…`, the only channel the
//!   QuickBlox conference client has);
//! - `gateway.rs`: sessions, handles, transports and the directory of rooms;
//! - `room.rs`: a room (signalling state, its PeerConnections, the QuickBlox dialog check);
//! - `shard.rs`: the media shards (a thread per core owning rooms, a socket of the media port
//!   each) and how a datagram finds its room (source address, then ICE ufrag);
//! - `media.rs`: binding the media port (one `SO_REUSEPORT` socket per shard);
//! - `metrics.rs`: what the SFU reports.

mod gateway;
mod media;
mod metrics;
mod room;
mod shard;
mod signalling;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::chat::Chat;
use crate::config::Config;
use crate::connections::ConnectionBudget;
use crate::metrics::Metrics;

pub use gateway::Principal;
pub use metrics::SfuMetrics;

/// Requests and room messages the gateway holds before senders wait (WebSocket readers) or
/// drop with a metric (rooms).
const GATEWAY_QUEUE: usize = 8192;

/// What the SFU's tasks share.
pub struct SfuContext {
    pub config: Arc<Config>,
    pub auth: Arc<Auth>,
    pub chat: Arc<Chat>,
    pub metrics: SfuMetrics,
    pub gateway: mpsc::Sender<gateway::GatewayInput>,
    /// What every PeerConnection is configured with (the announced address, the DTLS
    /// certificate).
    pub media_config: sfu_core::media::MediaConfig,
    /// The media shards, which own the rooms.
    pub shards: Arc<shard::Shards>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// The server's main runtime: store lookups run there, not on a shard's, so the database
    /// connections they open never depend on a shard's thread (or outlive its runtime).
    pub runtime: tokio::runtime::Handle,
    next_transport: AtomicU64,
}

/// Where the SFU listens.
#[derive(Debug, Clone, Copy)]
pub struct SfuAddrs {
    /// Janus API (WebSocket and HTTP), when `sfu.signalling_listen` is set.
    pub signalling: Option<SocketAddr>,
    /// The media port as bound.
    pub media: SocketAddr,
    /// The media address announced in ICE candidates.
    pub media_announced: SocketAddr,
}

/// Starts the SFU's services.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    config: Arc<Config>,
    auth: Arc<Auth>,
    chat: Arc<Chat>,
    metrics: &Metrics,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    connections: Arc<ConnectionBudget>,
) -> anyhow::Result<(Arc<SfuContext>, SfuAddrs)> {
    let (gateway_tx, gateway_rx) = mpsc::channel(GATEWAY_QUEUE);
    let shard_count = media::shard_count(&config);
    let media = media::bind(&config, shard_count)?;
    let media_addr = media.bound;
    let media_announced = media.config.local_addr;
    let (shards, shard_queues) = shard::Shards::new(media.sockets.len());
    let ctx = Arc::new(SfuContext {
        config: config.clone(),
        auth,
        chat,
        metrics: SfuMetrics::register(metrics.registry()),
        gateway: gateway_tx,
        media_config: media.config,
        shards,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        runtime: tokio::runtime::Handle::current(),
        next_transport: AtomicU64::new(1),
    });
    gateway::spawn(ctx.clone(), gateway_rx);
    shard::spawn(&ctx, media.sockets, shard_queues)?;
    let mut addrs = SfuAddrs {
        signalling: None,
        media: media_addr,
        media_announced,
    };
    if !config.sfu.signalling_listen.is_empty() {
        let tls = if config.sfu.signalling_tls { tls } else { None };
        addrs.signalling = Some(signalling::start(ctx.clone(), tls, connections).await?);
    }
    Ok((ctx, addrs))
}
