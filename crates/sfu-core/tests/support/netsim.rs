//! A test-only network in virtual time: datagrams between addresses with a latency and a
//! seeded loss rate per link, delivered in order of arrival time, and optionally a bottleneck
//! in front of an address (a rate and a tail-drop queue, as a congested access link).
//! Deterministic: the same seed drops the same packets.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The tests' time zero.
#[allow(clippy::disallowed_methods)]
pub fn epoch() -> Instant {
    Instant::now()
}

/// One direction's latency and loss.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    latency: Duration,
    loss: f64,
}

impl Link {
    pub fn new(latency: Duration, loss: f64) -> Link {
        Link { latency, loss }
    }
}

/// The network.
pub struct Sim {
    rng: u64,
    default: Link,
    from: HashMap<SocketAddr, Link>,
    /// (arrival, sequence) → (from, to, bytes).
    in_flight: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Vec<u8>)>,
    bottlenecks: HashMap<SocketAddr, Bottleneck>,
    sent: u64,
    dropped: u64,
}

impl Sim {
    pub fn new(seed: u64) -> Sim {
        Sim {
            rng: seed.max(1),
            default: Link::new(Duration::from_millis(1), 0.0),
            from: HashMap::new(),
            in_flight: BTreeMap::new(),
            bottlenecks: HashMap::new(),
            sent: 0,
            dropped: 0,
        }
    }

    pub fn set_default(&mut self, link: Link) {
        self.default = link;
    }

    /// Every datagram sent from `addr` uses `link`.
    pub fn set_from(&mut self, addr: SocketAddr, link: Link) {
        self.from.insert(addr, link);
    }

    /// Datagrams to `addr` pass a link of `rate_bps` with a queue holding at most `queue` of
    /// sending time; what does not fit is dropped.
    pub fn set_bottleneck(&mut self, addr: SocketAddr, rate_bps: u64, queue: Duration) {
        self.bottlenecks.insert(
            addr,
            Bottleneck {
                rate_bps,
                queue,
                busy_until: None,
            },
        );
    }

    /// The bottleneck in front of `addr` is gone.
    pub fn clear_bottleneck(&mut self, addr: SocketAddr) {
        self.bottlenecks.remove(&addr);
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        let link = self.from.get(&from).copied().unwrap_or(self.default);
        self.sent += 1;
        if self.random() < link.loss {
            self.dropped += 1;
            return;
        }
        let mut leaves = now;
        if let Some(bottleneck) = self.bottlenecks.get_mut(&to) {
            let start = bottleneck.busy_until.map_or(now, |b| b.max(now));
            if start.saturating_duration_since(now) > bottleneck.queue {
                self.dropped += 1;
                return;
            }
            let bits = (data.len() as u64 + 28) * 8;
            leaves = start + Duration::from_micros(bits * 1_000_000 / bottleneck.rate_bps.max(1));
            bottleneck.busy_until = Some(leaves);
        }
        self.in_flight
            .insert((leaves + link.latency, self.sent), (from, to, data));
    }

    pub fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.keys().next().map(|(at, _)| *at)
    }

    /// Everything that has arrived by `now`, in order.
    pub fn deliver(&mut self, now: Instant) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        let later = self.in_flight.split_off(&(now, u64::MAX));
        std::mem::replace(&mut self.in_flight, later)
            .into_values()
            .collect()
    }

    /// xorshift64*: uniform in [0, 1).
    fn random(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let value = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (value >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A rate-limited queue in front of one address.
#[derive(Debug, Clone, Copy)]
struct Bottleneck {
    rate_bps: u64,
    queue: Duration,
    /// When the last queued datagram has been sent.
    busy_until: Option<Instant>,
}
