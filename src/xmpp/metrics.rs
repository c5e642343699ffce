//! XMPP metrics, registered on the server's registry. Labels are bounded: transports, results,
//! stanza kinds and limit names, never JIDs or addresses.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every XMPP metric.
#[derive(Clone)]
pub struct XmppMetrics {
    pub connections: IntGaugeVec,
    pub auth: IntCounterVec,
    pub stanzas: IntCounterVec,
    pub routing_seconds: Histogram,
    pub offline_queue: IntGauge,
    pub queued_bytes: IntGauge,
    pub offline_stored: IntCounter,
    pub sm_resumptions: IntCounterVec,
    pub limits: IntCounterVec,
    pub dropped: IntCounterVec,
    pub stream_errors: IntCounterVec,
}

impl std::fmt::Debug for XmppMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XmppMetrics")
    }
}

impl XmppMetrics {
    pub fn register(registry: &Registry) -> XmppMetrics {
        let metrics = XmppMetrics {
            connections: IntGaugeVec::new(
                Opts::new(
                    "switchboard_xmpp_connections",
                    "Open XMPP connections by transport",
                ),
                &["transport"],
            )
            .expect("static metric options"),
            auth: IntCounterVec::new(
                Opts::new(
                    "switchboard_xmpp_auth_total",
                    "SASL authentications by result",
                ),
                &["result"],
            )
            .expect("static metric options"),
            stanzas: IntCounterVec::new(
                Opts::new(
                    "switchboard_xmpp_stanzas_routed_total",
                    "Stanzas routed by kind",
                ),
                &["kind"],
            )
            .expect("static metric options"),
            routing_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_xmpp_routing_seconds",
                    "Time from a stanza's arrival to its hand-off",
                )
                .buckets(vec![
                    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                    0.01, 0.05,
                ]),
            )
            .expect("static metric options"),
            offline_queue: IntGauge::new(
                "switchboard_xmpp_offline_queue_depth",
                "Offline messages stored and not yet delivered",
            )
            .expect("static metric options"),
            queued_bytes: IntGauge::new(
                "switchboard_xmpp_queued_bytes",
                "Bytes of stanzas waiting in sessions' queues (bounded by xmpp.queued_bytes_total)",
            )
            .expect("static metric options"),
            offline_stored: IntCounter::new(
                "switchboard_xmpp_offline_stored_total",
                "Messages stored for offline users",
            )
            .expect("static metric options"),
            sm_resumptions: IntCounterVec::new(
                Opts::new(
                    "switchboard_xmpp_sm_resumptions_total",
                    "XEP-0198 resumption attempts by result",
                ),
                &["result"],
            )
            .expect("static metric options"),
            limits: IntCounterVec::new(
                Opts::new(
                    "switchboard_xmpp_limit_hits_total",
                    "Abuse limits that triggered, by limit",
                ),
                &["limit"],
            )
            .expect("static metric options"),
            stream_errors: IntCounterVec::new(
                Opts::new(
                    "switchboard_xmpp_stream_errors_total",
                    "Streams closed with an error, by condition (policy-violation: rate or size limits; connection-timeout: idle)",
                ),
                &["condition"],
            )
            .expect("static metric options"),
            dropped: IntCounterVec::new(
                Opts::new(
                    "switchboard_xmpp_deliveries_failed_total",
                    "Deliveries that could not be queued, by reason",
                ),
                &["reason"],
            )
            .expect("static metric options"),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.connections.clone()),
            Box::new(metrics.auth.clone()),
            Box::new(metrics.stanzas.clone()),
            Box::new(metrics.routing_seconds.clone()),
            Box::new(metrics.offline_queue.clone()),
            Box::new(metrics.queued_bytes.clone()),
            Box::new(metrics.offline_stored.clone()),
            Box::new(metrics.sm_resumptions.clone()),
            Box::new(metrics.limits.clone()),
            Box::new(metrics.dropped.clone()),
            Box::new(metrics.stream_errors.clone()),
        ];
        for collector in collectors {
            registry
                .register(collector)
                .expect("each metric is registered once");
        }
        metrics
    }
}
