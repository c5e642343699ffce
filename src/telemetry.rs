//! Logging set-up and the [`Pii`] wrapper for personal data in logs.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

use crate::config::ServerConfig;

static REDACT: AtomicBool = AtomicBool::new(false);

/// Installs the global subscriber: `RUST_LOG` if set, else `server.log_level`.
pub fn init(config: &ServerConfig) {
    REDACT.store(config.log_redact_pii, Ordering::Relaxed);
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(config.log_level.clone()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if config.log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests embedding several servers) keeps the first subscriber.
    let _ = result;
}

/// Personal data (JIDs, logins, addresses) in a log field; shown as `[redacted]` when
/// `server.log_redact_pii` is on.
pub struct Pii<T>(pub T);

impl<T: fmt::Display> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if REDACT.load(Ordering::Relaxed) {
            f.write_str("[redacted]")
        } else {
            self.0.fmt(f)
        }
    }
}
