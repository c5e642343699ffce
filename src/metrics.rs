//! Prometheus metrics with bounded labels: route templates, methods and status codes, never
//! user ids, tokens or addresses.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the server exports, registered in one registry per server instance (so tests
/// running several servers in one process do not collide).
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "switchboard_http_requests_total",
                "REST requests by route template, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("metric options are static and valid");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "switchboard_http_request_duration_seconds",
                "REST request latency by route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )
        .expect("metric options are static and valid");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "switchboard_build_info",
                "Build information; the value is always 1",
            ),
            &["version"],
        )
        .expect("metric options are static and valid");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(build_info),
        ] {
            registry
                .register(collector)
                .expect("each metric is registered once");
        }
        Metrics {
            registry,
            http_requests,
            http_duration,
        }
    }

    /// The registry, for services that add their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn observe_http(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        self.http_requests
            .with_label_values(&[route, method, &status])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding gathered metrics into memory cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
