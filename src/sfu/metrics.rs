//! SFU metrics, registered on the server's registry. Labels are bounded (transport names),
//! never room or user ids.

use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

/// Every SFU metric.
#[derive(Clone)]
pub struct SfuMetrics {
    pub rooms: IntGauge,
    pub signalling_connections: IntGaugeVec,
    pub dropped_events: IntCounter,
}

impl SfuMetrics {
    pub fn register(registry: &Registry) -> SfuMetrics {
        let metrics = SfuMetrics {
            rooms: IntGauge::new("switchboard_sfu_rooms", "Conference rooms open")
                .expect("static metric options"),
            signalling_connections: IntGaugeVec::new(
                Opts::new(
                    "switchboard_sfu_signalling_connections",
                    "Open Janus API connections by transport",
                ),
                &["transport"],
            )
            .expect("static metric options"),
            dropped_events: IntCounter::new(
                "switchboard_sfu_dropped_events_total",
                "Janus events dropped because a client's queue (or the gateway's) was full",
            )
            .expect("static metric options"),
        };
        for collector in [
            Box::new(metrics.rooms.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.signalling_connections.clone()),
            Box::new(metrics.dropped_events.clone()),
        ] {
            registry
                .register(collector)
                .expect("each metric is registered once");
        }
        metrics
    }
}
