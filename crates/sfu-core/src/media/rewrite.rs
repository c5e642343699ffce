//! Per-subscriber RTP numbering. Each outgoing stream gets its own sequence numbers and
//! timestamps, continuous across a change of source (`switch`, a publisher that renegotiates
//! and restarts its numbering): the browser sees one stream that never jumps, so it neither
//! drops packets as duplicates nor waits for ones that will never come.
//!
//! Sequence numbers start below 2^16 on purpose: SRTP's rollover counter is derived from
//! them, and a browser assumes it starts at 0.

/// Rewrites one source's (extended) sequence numbers and timestamps into one output stream.
#[derive(Debug, Clone)]
pub struct Rewriter {
    /// Output sequence number of the next new packet when a source starts.
    next_out: u64,
    /// Input → output offset for the current source's sequence numbers.
    source: Option<Source>,
    /// Last output timestamp, to continue from on a source change.
    last_timestamp: Option<u32>,
    /// How far the first timestamp of a new source is placed after the last one.
    timestamp_step: u32,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    /// The source's first extended sequence number, and the output number it got.
    first_in: u64,
    first_out: u64,
    /// Added to the source's timestamps.
    timestamp_offset: u32,
    highest_out: u64,
}

impl Rewriter {
    /// A stream whose first packet gets `start` (below 2^15 so the first packets cannot wrap)
    /// and whose sources are placed `timestamp_step` ticks apart (one frame or one packet).
    pub fn new(start: u16, timestamp_step: u32) -> Rewriter {
        Rewriter {
            next_out: u64::from(start & 0x7fff),
            source: None,
            last_timestamp: None,
            timestamp_step,
        }
    }

    /// The next packet comes from a different source (or a restarted one).
    pub fn switch_source(&mut self) {
        if let Some(source) = self.source.take() {
            self.next_out = source.highest_out + 1;
        }
    }

    /// The output (sequence number, timestamp) of a packet with extended sequence number
    /// `seq` and timestamp `timestamp`; `None` for a packet older than the source's first
    /// (it has no place in this stream).
    pub fn rewrite(&mut self, seq: u64, timestamp: u32) -> Option<(u64, u32)> {
        let source = match self.source {
            Some(source) => source,
            None => {
                let timestamp_offset = match self.last_timestamp {
                    Some(last) => last
                        .wrapping_add(self.timestamp_step)
                        .wrapping_sub(timestamp),
                    None => 0,
                };
                let source = Source {
                    first_in: seq,
                    first_out: self.next_out,
                    timestamp_offset,
                    highest_out: self.next_out,
                };
                self.source = Some(source);
                source
            }
        };
        if seq < source.first_in {
            return None;
        }
        let out = source.first_out + (seq - source.first_in);
        let out_timestamp = timestamp.wrapping_add(source.timestamp_offset);
        let current = self.source.as_mut().expect("set above");
        if out >= current.highest_out {
            current.highest_out = out;
            self.last_timestamp = Some(out_timestamp);
        }
        Some((out, out_timestamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_is_continuous_across_sources() {
        let mut r = Rewriter::new(1000, 3000);
        assert_eq!(r.rewrite(50_000, 90_000), Some((1000, 90_000)));
        assert_eq!(r.rewrite(50_001, 93_000), Some((1001, 93_000)));
        // Reordered and repeated packets keep their place.
        assert_eq!(r.rewrite(50_003, 99_000), Some((1003, 99_000)));
        assert_eq!(r.rewrite(50_002, 96_000), Some((1002, 96_000)));
        assert_eq!(r.rewrite(49_999, 87_000), None, "before the source's first");
        r.switch_source();
        // Another publisher, numbered from scratch: the stream goes on from 1004.
        assert_eq!(r.rewrite(7, 5), Some((1004, 102_000)));
        assert_eq!(r.rewrite(8, 3005), Some((1005, 105_000)));
    }

    #[test]
    fn starts_below_the_rollover() {
        let mut r = Rewriter::new(u16::MAX, 960);
        let (seq, _) = r.rewrite(123_456, 0).unwrap();
        assert!(seq < 1 << 15);
    }
}
