//! Open-loop pacing: message `k` (0-based) of a stream at `rate` per second is due at `k / rate`
//! seconds after the start, whatever happened to earlier ones. A pacer that falls behind
//! (the machine stalled, a socket pushed back) catches up in one batch instead of silently
//! lowering the offered load; what it could not send shows up as `sent` below the target.

use std::time::Duration;

/// The schedule of one sender group at a fixed rate over a fixed span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    rate: f64,
    total: u64,
}

impl Pacing {
    /// `rate` messages per second for `span`; the last message is due strictly before `span`
    /// ends.
    pub fn new(rate: f64, span: Duration) -> Pacing {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            0.0
        };
        let total = (span.as_secs_f64() * rate).ceil() as u64;
        Pacing { rate, total }
    }

    /// Messages due by `elapsed` (those with `k / rate <= elapsed`), at most the total.
    pub fn due(&self, elapsed: Duration) -> u64 {
        if self.rate == 0.0 {
            return 0;
        }
        // The epsilon absorbs rounding, so a message is always due at its own deadline.
        let due = (elapsed.as_secs_f64() * self.rate + 1e-6).floor() as u64 + 1;
        due.min(self.total)
    }

    /// When message `k` is due, or `None` past the last one.
    pub fn deadline(&self, k: u64) -> Option<Duration> {
        if k >= self.total {
            return None;
        }
        Some(Duration::from_nanos(
            (k as f64 * 1e9 / self.rate).ceil() as u64
        ))
    }

    /// Messages in the whole span.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Splits `rate` over groups of senders in proportion to their sizes, so every sender sends
/// at `rate / senders`.
pub fn split_rate(rate: f64, group_sizes: &[usize]) -> Vec<f64> {
    let senders: usize = group_sizes.iter().sum();
    if senders == 0 {
        return vec![0.0; group_sizes.len()];
    }
    group_sizes
        .iter()
        .map(|&size| rate * size as f64 / senders as f64)
        .collect()
}

/// A small, fast generator for picking recipients (xorshift64*); statistical quality is
/// plenty for spreading load, and it allocates nothing.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from any seed (zero is remapped: xorshift would stay at zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniformly chosen index in `0..n` other than `not` (`n >= 2`, `not < n`).
    pub fn other_than(&mut self, not: usize, n: usize) -> usize {
        debug_assert!(n >= 2 && not < n);
        // Multiply-shift instead of `%`: no division, negligible bias for small `n`.
        let pick = ((self.next_u64() >> 32) * (n as u64 - 1)) >> 32;
        let pick = pick as usize;
        if pick >= not {
            pick + 1
        } else {
            pick
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_counts_messages_whose_time_has_come() {
        let pacing = Pacing::new(1000.0, Duration::from_secs(2));
        assert_eq!(pacing.total(), 2000);
        assert_eq!(pacing.due(Duration::ZERO), 1, "message 0 is due at once");
        assert_eq!(pacing.due(Duration::from_micros(999)), 1);
        assert_eq!(pacing.due(Duration::from_millis(1)), 2);
        assert_eq!(pacing.due(Duration::from_millis(1500)), 1501);
        assert_eq!(pacing.due(Duration::from_secs(10)), 2000, "capped at total");
    }

    #[test]
    fn deadlines_match_due() {
        let pacing = Pacing::new(300.0, Duration::from_secs(1));
        for k in 0..pacing.total() {
            let at = pacing.deadline(k).unwrap();
            assert!(pacing.due(at) > k, "message {k} due at its own deadline");
        }
        assert_eq!(pacing.deadline(pacing.total()), None);
    }

    #[test]
    fn fractional_rates_and_zero() {
        let pacing = Pacing::new(2.5, Duration::from_secs(2));
        assert_eq!(pacing.total(), 5);
        assert_eq!(pacing.deadline(4), Some(Duration::from_millis(1600)));
        let idle = Pacing::new(0.0, Duration::from_secs(5));
        assert_eq!((idle.total(), idle.due(Duration::from_secs(1))), (0, 0));
        assert_eq!(Pacing::new(f64::NAN, Duration::from_secs(1)).total(), 0);
    }

    #[test]
    fn rate_is_split_by_group_size() {
        assert_eq!(split_rate(1000.0, &[3, 1]), [750.0, 250.0]);
        assert_eq!(split_rate(10.0, &[0, 0]), [0.0, 0.0]);
        let parts = split_rate(999.0, &[100, 100, 1]);
        assert!((parts.iter().sum::<f64>() - 999.0).abs() < 1e-9);
    }

    #[test]
    fn other_than_never_picks_the_sender_and_covers_the_rest() {
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            let pick = rng.other_than(2, 5);
            assert_ne!(pick, 2);
            seen[pick] += 1;
        }
        for (index, count) in seen.iter().enumerate() {
            if index != 2 {
                assert!((2000..3000).contains(count), "{seen:?}");
            }
        }
        assert_eq!(Rng::new(0).other_than(0, 2), 1);
    }
}
