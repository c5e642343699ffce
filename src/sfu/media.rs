//! The SFU's one UDP media port, shared by every room: a receive task that hands each
//! datagram to the room owning its PeerConnection, in O(1) — STUN by the ICE ufrag in its
//! USERNAME, everything else by source address (learnt from the addresses a PeerConnection
//! answered, so a stranger cannot claim an address by sending from it) — and the send side the
//! room tasks write to directly.
//!
//! Queues are bounded: a room that falls behind loses datagrams (counted), which RTP expects
//! and NACK repairs, rather than slowing the socket for every other room.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use dashmap::DashMap;
use sfu_core::media::{stun_ufrag, MediaConfig};
use sfu_core::videoroom::HandleKey;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::SfuContext;

/// Datagrams queued for one room before they are dropped.
pub const ROOM_MEDIA_QUEUE: usize = 4096;
/// Largest datagram read (str0m's own limit is 2000).
const MAX_DATAGRAM: usize = 2048;

/// A datagram for a room.
pub struct Datagram {
    pub key: HandleKey,
    pub source: SocketAddr,
    pub data: Vec<u8>,
    /// When the socket gave it to us (the start of its forwarding time).
    pub received: std::time::Instant,
}

/// Where datagrams for one PeerConnection go.
#[derive(Clone)]
pub struct Route {
    pub room: mpsc::Sender<Datagram>,
    pub key: HandleKey,
}

/// The demultiplexer's tables, written by the rooms, read by the receive task.
#[derive(Default)]
pub struct Routes {
    ufrags: DashMap<String, Route>,
    addresses: DashMap<SocketAddr, Route>,
}

impl Routes {
    pub fn route_ufrag(&self, ufrag: String, route: Route) {
        self.ufrags.insert(ufrag, route);
    }

    pub fn route_address(&self, addr: SocketAddr, route: Route) {
        self.addresses.insert(addr, route);
    }

    pub fn forget_ufrag(&self, ufrag: &str) {
        self.ufrags.remove(ufrag);
    }

    pub fn forget_address(&self, addr: &SocketAddr) {
        self.addresses.remove(addr);
    }

    fn find(&self, source: &SocketAddr, data: &[u8]) -> Option<Route> {
        if let Some(route) = self.addresses.get(source) {
            return Some(route.clone());
        }
        let ufrag = stun_ufrag(data)?;
        self.ufrags.get(&ufrag).map(|r| r.clone())
    }
}

/// The media port.
pub struct MediaSocket {
    pub socket: Arc<UdpSocket>,
    pub routes: Arc<Routes>,
    /// What PeerConnections announce and are configured with.
    pub config: MediaConfig,
}

/// Binds `sfu.media_listen` and works out the address to announce: `sfu.public_ip` if set,
/// else the bound address if it is a concrete one, else the address the host would use to
/// reach other hosts (read from the routing table; nothing is sent).
pub async fn bind(config: &crate::config::Config) -> anyhow::Result<MediaSocket> {
    let listen = &config.sfu.media_listen;
    let socket = UdpSocket::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding sfu.media_listen {listen}: {e}"))?;
    let bound = socket.local_addr()?;
    let ip: IpAddr = if !config.sfu.public_ip.is_empty() {
        config
            .sfu
            .public_ip
            .parse()
            .map_err(|e| anyhow::anyhow!("sfu.public_ip {:?}: {e}", config.sfu.public_ip))?
    } else if !bound.ip().is_unspecified() {
        bound.ip()
    } else {
        let probe = std::net::UdpSocket::bind("0.0.0.0:0")?;
        // connect() on UDP only picks a route; no packet leaves.
        probe.connect("192.0.2.1:9")?;
        let ip = probe.local_addr()?.ip();
        tracing::warn!(%ip, "sfu.public_ip is not set; announcing the default route's address");
        ip
    };
    let announced = SocketAddr::new(ip, bound.port());
    let config = MediaConfig::new(announced)
        .ok_or_else(|| anyhow::anyhow!("cannot generate the SFU's DTLS certificate"))?;
    Ok(MediaSocket {
        socket: Arc::new(socket),
        routes: Arc::new(Routes::default()),
        config,
    })
}

/// Reads the media port until shutdown, handing each datagram to its room.
pub async fn receive_loop(ctx: Arc<SfuContext>, socket: Arc<UdpSocket>, routes: Arc<Routes>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, source) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                // ICMP errors surface here on some systems (a peer's port closed): not ours.
                Err(_) => continue,
            },
            () = ctx.shutdown.cancelled() => return,
        };
        let data = &buf[..len];
        let Some(route) = routes.find(&source, data) else {
            ctx.metrics.media_unrouted.inc();
            continue;
        };
        let datagram = Datagram {
            key: route.key,
            source,
            data: data.to_vec(),
            received: std::time::Instant::now(),
        };
        if route.room.try_send(datagram).is_err() {
            ctx.metrics.media_dropped.inc();
        }
    }
}
