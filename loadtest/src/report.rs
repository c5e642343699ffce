//! The result of a run: one JSON object (its keys are stable: see docs/architecture.md,
//! `loadtest/`) or a readable summary.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// Histograms hold microseconds; this is the largest value tracked (larger ones saturate).
pub const MAX_TRACKED_US: u64 = 600_000_000;

/// An empty microsecond histogram with 0.1 % precision.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3)
        .expect("the bounds are constants that hdrhistogram accepts")
}

/// Resources of the server over the run, from `--server-pid`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerUsage {
    /// CPU seconds over the measured window.
    pub cpu_s: f64,
    /// RSS at the end of the run, in KiB.
    pub rss_kb: u64,
    /// CPU seconds over the login phase.
    pub login_cpu_s: f64,
    /// RSS before the first login and after the last one, in KiB.
    pub rss_before_login_kb: u64,
    /// See `rss_before_login_kb`.
    pub rss_after_login_kb: u64,
}

/// Everything an `xmpp` run measured.
#[derive(Debug, Clone)]
pub struct XmppReport {
    /// Logged-in users (= senders = receivers).
    pub users: usize,
    /// The measured window.
    pub duration_s: f64,
    /// Load before the window that is not counted.
    pub warmup_s: f64,
    /// `--rate`.
    pub target_rate_per_s: f64,
    /// Messages sent in the window.
    pub sent: u64,
    /// Of those, delivered (once) by the end of the drain.
    pub delivered: u64,
    /// Messages received with a sequence number already seen.
    pub duplicates: u64,
    /// Messages that reached a user they were not sent to.
    pub misrouted: u64,
    /// `type='error'` messages bounced back.
    pub bounced: u64,
    /// Load messages received while the window was open (whenever sent): the throughput.
    pub received_in_window: u64,
    /// Send-to-receive latency of delivered window messages, microseconds.
    pub latency_us: Histogram<u64>,
    /// Time from TCP connect to bound resource, microseconds.
    pub login_us: Histogram<u64>,
    /// Wall time of the whole login phase.
    pub login_wall_s: f64,
    /// Server resources, with `--server-pid`.
    pub server: Option<ServerUsage>,
    /// CPU seconds the tool itself used over the window.
    pub client_cpu_s: f64,
    /// Stream errors received after login.
    pub stream_errors: u64,
    /// Connections closed by the server after login (stream errors included).
    pub disconnects: u64,
    /// Failed writes after login.
    pub write_errors: u64,
    /// The first few error texts (stream errors, bounces, closes), for the reader.
    pub error_samples: Vec<String>,
}

impl XmppReport {
    /// The contract's JSON object.
    pub fn to_json(&self) -> Value {
        let loss_pct = if self.sent == 0 {
            0.0
        } else {
            self.sent.saturating_sub(self.delivered) as f64 * 100.0 / self.sent as f64
        };
        let rate = self.received_in_window as f64 / self.duration_s.max(f64::EPSILON);
        let server = self.server.as_ref();
        let per_unit =
            |cpu_s: f64, units: u64| (units > 0).then(|| round(cpu_s * 1e6 / units as f64, 3));
        let mut out = Map::new();
        out.insert("scenario".into(), json!("xmpp"));
        out.insert("duration_s".into(), json!(self.duration_s));
        out.insert("warmup_s".into(), json!(self.warmup_s));
        out.insert("users".into(), json!(self.users));
        out.insert("target_rate_per_s".into(), json!(self.target_rate_per_s));
        out.insert("sent".into(), json!(self.sent));
        out.insert("delivered".into(), json!(self.delivered));
        out.insert("loss_pct".into(), json!(round(loss_pct, 4)));
        out.insert("duplicates".into(), json!(self.duplicates));
        out.insert("rate_per_s".into(), json!(round(rate, 1)));
        out.insert(
            "latency_ms".into(),
            percentiles_ms(&self.latency_us, &[("p50", 50.0), ("p99", 99.0)]),
        );
        out.insert(
            "server_cpu_s".into(),
            json!(server.map(|s| round(s.cpu_s, 3))),
        );
        out.insert(
            "server_cpu_us_per_unit".into(),
            json!(server.and_then(|s| per_unit(s.cpu_s, self.delivered))),
        );
        out.insert(
            "server_rss_mb".into(),
            json!(server.map(|s| round(s.rss_kb as f64 / 1024.0, 1))),
        );
        out.insert(
            "login_ms".into(),
            percentiles_ms(&self.login_us, &[("p50", 50.0), ("p99", 99.0)]),
        );
        out.insert("login_wall_s".into(), json!(round(self.login_wall_s, 3)));
        out.insert(
            "server_cpu_us_per_login".into(),
            json!(server.and_then(|s| per_unit(s.login_cpu_s, self.users as u64))),
        );
        out.insert(
            "server_rss_kb_per_session".into(),
            json!(server.and_then(|s| {
                (self.users > 0).then(|| {
                    let grown = s.rss_after_login_kb as f64 - s.rss_before_login_kb as f64;
                    round(grown / self.users as f64, 1)
                })
            })),
        );
        out.insert("client_cpu_s".into(), json!(round(self.client_cpu_s, 3)));
        out.insert(
            "errors".into(),
            json!({
                "stream_errors": self.stream_errors,
                "disconnects": self.disconnects,
                "write_errors": self.write_errors,
                "bounced": self.bounced,
                "misrouted": self.misrouted,
                "samples": self.error_samples,
            }),
        );
        Value::Object(out)
    }

    /// A few readable lines with the same numbers.
    pub fn summary(&self) -> String {
        let json = self.to_json();
        let num = |path: &[&str]| {
            let mut value = &json;
            for key in path {
                value = &value[*key];
            }
            match value {
                Value::Null => "n/a".to_string(),
                other => other.to_string(),
            }
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "xmpp: {} users, {} s window after {} s warm-up, target {} msg/s",
            self.users, self.duration_s, self.warmup_s, self.target_rate_per_s
        );
        let _ = writeln!(
            out,
            "  messages  sent {}  delivered {}  loss {} %  duplicates {}  rate {} msg/s",
            self.sent,
            self.delivered,
            num(&["loss_pct"]),
            self.duplicates,
            num(&["rate_per_s"])
        );
        let _ = writeln!(
            out,
            "  latency   p50 {} ms  p99 {} ms  max {} ms",
            num(&["latency_ms", "p50"]),
            num(&["latency_ms", "p99"]),
            num(&["latency_ms", "max"])
        );
        let _ = writeln!(
            out,
            "  login     p50 {} ms  p99 {} ms  ({} s for all)",
            num(&["login_ms", "p50"]),
            num(&["login_ms", "p99"]),
            num(&["login_wall_s"])
        );
        let _ = writeln!(
            out,
            "  server    cpu {} s  {} us/msg  {} us/login  rss {} MB  {} KB/session",
            num(&["server_cpu_s"]),
            num(&["server_cpu_us_per_unit"]),
            num(&["server_cpu_us_per_login"]),
            num(&["server_rss_mb"]),
            num(&["server_rss_kb_per_session"])
        );
        let _ = writeln!(out, "  tool      cpu {} s", num(&["client_cpu_s"]));
        let _ = writeln!(
            out,
            "  errors    stream {}  disconnects {}  write {}  bounced {}  misrouted {}",
            self.stream_errors, self.disconnects, self.write_errors, self.bounced, self.misrouted
        );
        out
    }
}

/// `{name: ms, …, "max": ms}` from a microsecond histogram; nulls when it is empty.
pub fn percentiles_ms(histogram: &Histogram<u64>, quantiles: &[(&str, f64)]) -> Value {
    let mut out = Map::new();
    let empty = histogram.is_empty();
    let ms = |us: u64| json!(round(us as f64 / 1000.0, 3));
    for (name, percentile) in quantiles {
        let value = if empty {
            Value::Null
        } else {
            ms(histogram.value_at_percentile(*percentile))
        };
        out.insert((*name).to_string(), value);
    }
    let max = if empty {
        Value::Null
    } else {
        ms(histogram.max())
    };
    out.insert("max".into(), max);
    Value::Object(out)
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> XmppReport {
        let mut latency_us = new_histogram();
        for us in 1..=1000u64 {
            latency_us.record(us * 10).unwrap();
        }
        let mut login_us = new_histogram();
        login_us.record(25_000).unwrap();
        XmppReport {
            users: 100,
            duration_s: 10.0,
            warmup_s: 2.0,
            target_rate_per_s: 100.0,
            sent: 1000,
            delivered: 990,
            duplicates: 1,
            misrouted: 0,
            bounced: 0,
            received_in_window: 995,
            latency_us,
            login_us,
            login_wall_s: 1.5,
            server: Some(ServerUsage {
                cpu_s: 0.5,
                rss_kb: 20480,
                login_cpu_s: 2.0,
                rss_before_login_kb: 10000,
                rss_after_login_kb: 12000,
            }),
            client_cpu_s: 0.25,
            stream_errors: 0,
            disconnects: 0,
            write_errors: 0,
            error_samples: Vec::new(),
        }
    }

    #[test]
    fn json_has_the_contract_keys_and_derived_values() {
        let json = report().to_json();
        for key in [
            "scenario",
            "duration_s",
            "sent",
            "delivered",
            "loss_pct",
            "duplicates",
            "rate_per_s",
            "latency_ms",
            "server_cpu_s",
            "server_cpu_us_per_unit",
            "server_rss_mb",
            "users",
            "login_ms",
            "server_cpu_us_per_login",
            "server_rss_kb_per_session",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["scenario"], "xmpp");
        assert_eq!(json["loss_pct"], 1.0);
        assert_eq!(json["rate_per_s"], 99.5);
        assert_eq!(json["server_cpu_us_per_unit"], 505.051);
        assert_eq!(json["server_cpu_us_per_login"], 20000.0);
        assert_eq!(json["server_rss_kb_per_session"], 20.0);
        assert_eq!(json["server_rss_mb"], 20.0);
        // 0.1 % precision: values come back as the top of their bucket.
        assert_eq!(json["latency_ms"]["p50"], 5.003);
        assert_eq!(json["latency_ms"]["p99"], 9.903);
        assert_eq!(json["latency_ms"]["max"], 10.007);
        assert_eq!(json["login_ms"]["p50"], 25.007);
    }

    #[test]
    fn empty_histograms_and_no_server_give_nulls() {
        let mut report = report();
        report.latency_us = new_histogram();
        report.server = None;
        report.sent = 0;
        report.delivered = 0;
        let json = report.to_json();
        assert_eq!(
            json["latency_ms"],
            json!({"p50": null, "p99": null, "max": null})
        );
        assert_eq!(json["server_cpu_s"], Value::Null);
        assert_eq!(json["server_cpu_us_per_unit"], Value::Null);
        assert_eq!(json["loss_pct"], 0.0);
        assert!(report.summary().contains("n/a"));
    }
}
