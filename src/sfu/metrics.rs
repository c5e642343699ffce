//! SFU metrics, registered on the server's registry. Labels are bounded (transport names,
//! directions), never room or user ids.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every SFU metric.
#[derive(Clone)]
pub struct SfuMetrics {
    pub rooms: IntGauge,
    /// PeerConnections by role (`publisher`, `subscriber`).
    pub peers: IntGaugeVec,
    pub signalling_connections: IntGaugeVec,
    pub dropped_events: IntCounter,
    /// RTP packets by direction (`ingress` from publishers, `egress` to subscribers).
    pub packets: IntCounterVec,
    /// RTP payload bytes by direction.
    pub bytes: IntCounterVec,
    /// The children of `packets` and `bytes`, resolved once: rooms count per datagram.
    pub ingress_packets: IntCounter,
    pub egress_packets: IntCounter,
    pub ingress_bytes: IntCounter,
    pub egress_bytes: IntCounter,
    pub keyframe_requests: IntCounter,
    pub nacks: IntCounter,
    /// Participants (publishers and passive ones) in all rooms.
    pub participants: IntGauge,
    pub media_unrouted: IntCounter,
    pub media_dropped: IntCounter,
    /// Datagrams the kernel gave to one shard's socket for a PeerConnection of another.
    pub media_crossed: IntCounter,
    /// Media shards running.
    pub shards: IntGauge,
    /// From a publisher's datagram leaving the socket to its copies written to subscribers.
    pub forwarding_seconds: Histogram,
    /// From a subscriber's join to the first packet forwarded to it.
    pub first_frame_seconds: Histogram,
}

impl SfuMetrics {
    pub fn register(registry: &Registry) -> SfuMetrics {
        let counter =
            |name: &str, help: &str| IntCounter::new(name, help).expect("static metric options");
        let packets = IntCounterVec::new(
            Opts::new(
                "switchboard_sfu_rtp_packets_total",
                "RTP packets by direction",
            ),
            &["direction"],
        )
        .expect("static metric options");
        let bytes = IntCounterVec::new(
            Opts::new(
                "switchboard_sfu_rtp_bytes_total",
                "RTP payload bytes by direction",
            ),
            &["direction"],
        )
        .expect("static metric options");
        let metrics = SfuMetrics {
            ingress_packets: packets.with_label_values(&["ingress"]),
            egress_packets: packets.with_label_values(&["egress"]),
            ingress_bytes: bytes.with_label_values(&["ingress"]),
            egress_bytes: bytes.with_label_values(&["egress"]),
            packets,
            bytes,
            rooms: IntGauge::new("switchboard_sfu_rooms", "Conference rooms open")
                .expect("static metric options"),
            peers: IntGaugeVec::new(
                Opts::new(
                    "switchboard_sfu_peer_connections",
                    "PeerConnections by role",
                ),
                &["role"],
            )
            .expect("static metric options"),
            signalling_connections: IntGaugeVec::new(
                Opts::new(
                    "switchboard_sfu_signalling_connections",
                    "Open Janus API connections by transport",
                ),
                &["transport"],
            )
            .expect("static metric options"),
            dropped_events: counter(
                "switchboard_sfu_dropped_events_total",
                "Janus events dropped because a client's queue (or the gateway's) was full",
            ),
            keyframe_requests: counter(
                "switchboard_sfu_keyframe_requests_total",
                "Keyframe requests (PLI) sent to publishers",
            ),
            nacks: counter(
                "switchboard_sfu_nacks_total",
                "NACKs sent to publishers and received from subscribers (retransmissions)",
            ),
            participants: IntGauge::new(
                "switchboard_sfu_participants",
                "Participants in conference rooms",
            )
            .expect("static metric options"),
            media_unrouted: counter(
                "switchboard_sfu_unrouted_datagrams_total",
                "Datagrams on the media port that belong to no PeerConnection",
            ),
            media_dropped: counter(
                "switchboard_sfu_dropped_datagrams_total",
                "Datagrams dropped because the shard they were handed to was full",
            ),
            media_crossed: counter(
                "switchboard_sfu_crossed_datagrams_total",
                "Datagrams received by one media shard and handed to the shard owning their room",
            ),
            shards: IntGauge::new("switchboard_sfu_shards", "Media shards running")
                .expect("static metric options"),
            forwarding_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_sfu_forwarding_seconds",
                    "Time from a publisher's datagram arriving to its copies leaving for subscribers",
                )
                .buckets(vec![
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                ]),
            )
            .expect("static metric options"),
            first_frame_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_sfu_join_to_first_frame_seconds",
                    "Time from a subscriber's join to the first media packet forwarded to it",
                )
                .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            )
            .expect("static metric options"),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.rooms.clone()),
            Box::new(metrics.peers.clone()),
            Box::new(metrics.signalling_connections.clone()),
            Box::new(metrics.dropped_events.clone()),
            Box::new(metrics.packets.clone()),
            Box::new(metrics.bytes.clone()),
            Box::new(metrics.keyframe_requests.clone()),
            Box::new(metrics.nacks.clone()),
            Box::new(metrics.participants.clone()),
            Box::new(metrics.media_unrouted.clone()),
            Box::new(metrics.media_dropped.clone()),
            Box::new(metrics.media_crossed.clone()),
            Box::new(metrics.shards.clone()),
            Box::new(metrics.forwarding_seconds.clone()),
            Box::new(metrics.first_frame_seconds.clone()),
        ];
        for collector in collectors {
            registry
                .register(collector)
                .expect("each metric is registered once");
        }
        metrics
    }
}
