//! The SFU's one UDP media port, shared by every room: one socket per media shard, all bound
//! to the same address with `SO_REUSEPORT`, so the kernel spreads datagrams over the shards by
//! their source (a given client address always reaches the same socket) and each shard reads
//! and writes its own socket without sharing it. A datagram that reaches a shard not owning
//! its PeerConnection is handed over (`shard.rs`).

use std::net::{IpAddr, SocketAddr};

use sfu_core::media::MediaConfig;
use socket2::{Domain, Protocol, Socket, Type};

/// Socket buffers asked for (the kernel caps them at `net.core.[rw]mem_max`): a room's burst
/// of copies, a keyframe to a dozen subscribers, must not overflow the send buffer.
const SOCKET_BUFFER: usize = 8 << 20;

/// The media port's sockets (one per shard) and what every PeerConnection announces.
pub struct MediaSockets {
    pub sockets: Vec<std::net::UdpSocket>,
    /// The address as bound (the port is the real one when `sfu.media_listen` said 0).
    pub bound: SocketAddr,
    /// What PeerConnections announce and are configured with.
    pub config: MediaConfig,
}

/// How many shards `sfu.shards` asks for: 0 is one per core the process may run on (its CPU
/// affinity, so a server pinned to one core gets one shard).
pub fn shard_count(config: &crate::config::Config) -> usize {
    match config.sfu.shards {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Binds `sfu.media_listen` once per shard and works out the address to announce:
/// `sfu.public_ip` if set, else the bound address if it is a concrete one, else the address
/// the host would use to reach other hosts (read from the routing table; nothing is sent).
pub fn bind(config: &crate::config::Config, shards: usize) -> anyhow::Result<MediaSockets> {
    let listen = &config.sfu.media_listen;
    let mut addr: SocketAddr = listen
        .parse()
        .map_err(|e| anyhow::anyhow!("sfu.media_listen {listen:?}: {e}"))?;
    let mut sockets = Vec::with_capacity(shards);
    for _ in 0..shards.max(1) {
        let socket = reuseport_socket(addr)
            .map_err(|e| anyhow::anyhow!("binding sfu.media_listen {listen}: {e}"))?;
        // Port 0: the first socket picks the port, the others join it.
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    let bound = addr;
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
    Ok(MediaSockets {
        sockets,
        bound,
        config,
    })
}

fn reuseport_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Best effort: the defaults still work, with more drops under bursts.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
