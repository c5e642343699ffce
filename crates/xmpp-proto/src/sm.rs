//! XEP-0198 stream management counters and the unacknowledged-stanza queue.
//!
//! Driving contract: after `<enable/>` create an [`SmState`]; call
//! [`SmState::handled_inbound`] for every stanza the client sent (its `<a h>` is
//! [`SmState::inbound_h`]), [`SmState::sent`] for every stanza sent to the client, and
//! [`SmState::ack`] for every `<a h='…'/>` received. On resumption, [`SmState::resume`] takes
//! the client's `h` and returns what must be sent again.
//!
//! Only resumable streams keep copies of sent stanzas. The QuickBlox SDK enables stream
//! management without resumption and under-counts its `h` when the server sends `<r/>` (it
//! leaves out incoming messages), so for such streams a low `h` must never mean loss.

use std::collections::VecDeque;

/// The stream management namespace.
pub const NS_SM: &str = "urn:xmpp:sm:3";

/// Misuse of the protocol by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SmError {
    /// The client acknowledged more stanzas than were sent (XEP-0198 `handled-count-too-high`).
    #[error("handled count too high: acknowledged {acked}, sent {sent}")]
    HandledCountTooHigh {
        /// What the client claimed.
        acked: u32,
        /// What was sent.
        sent: u32,
    },
    /// More unacknowledged stanzas than the configured bound.
    #[error("too many unacknowledged stanzas")]
    QueueFull,
}

/// Counters and, for resumable streams, the stanzas not yet acknowledged.
#[derive(Debug, Clone)]
pub struct SmState {
    resumable: bool,
    inbound: u32,
    sent: u32,
    acked: u32,
    unacked: VecDeque<Vec<u8>>,
    max_unacked: usize,
    /// Bytes held in `unacked`, at most `max_unacked_bytes` (one stanza always fits).
    unacked_bytes: usize,
    max_unacked_bytes: usize,
}

impl SmState {
    /// State right after `<enabled/>`.
    pub fn new(resumable: bool, max_unacked: usize) -> SmState {
        SmState {
            resumable,
            inbound: 0,
            sent: 0,
            acked: 0,
            unacked: VecDeque::new(),
            max_unacked,
            unacked_bytes: 0,
            max_unacked_bytes: usize::MAX,
        }
    }

    /// Bounds the copies kept for resumption in bytes too: a client that reads but never
    /// acknowledges cannot make the server keep `max_unacked` of the largest stanzas.
    pub fn with_max_unacked_bytes(mut self, max: usize) -> SmState {
        self.max_unacked_bytes = max;
        self
    }

    /// Whether the stream may be resumed.
    pub fn resumable(&self) -> bool {
        self.resumable
    }

    /// Makes the stream non-resumable (the client closed it cleanly, XEP-0198 §5); the
    /// stanzas it still holds stay unacknowledged, for offline storage.
    pub fn forbid_resumption(&mut self) {
        self.resumable = false;
    }

    /// Whether `stanzas` more can be sent with room to spare: never a question without
    /// resumption; with it, the kept copies stay under half their count and byte bounds (a
    /// sender of many stanzas waits for acknowledgements instead of overflowing the queue).
    pub fn has_headroom(&self, stanzas: usize) -> bool {
        !self.resumable
            || (self.unacked.len() + stanzas <= self.max_unacked / 2
                && self.unacked_bytes <= self.max_unacked_bytes / 2)
    }

    /// Counts one stanza received from the client.
    pub fn handled_inbound(&mut self) {
        self.inbound = self.inbound.wrapping_add(1);
    }

    /// The `h` to put in `<a h='…'/>`.
    pub fn inbound_h(&self) -> u32 {
        self.inbound
    }

    /// Stanzas sent and not yet acknowledged.
    pub fn unacked_count(&self) -> u32 {
        self.sent.wrapping_sub(self.acked)
    }

    /// Records a stanza sent to the client. A full queue on a resumable stream is an error:
    /// the shell should request an ack earlier, and close the stream if the client never acks.
    pub fn sent(&mut self, stanza: &[u8]) -> Result<(), SmError> {
        if self.resumable {
            let over_bytes = !self.unacked.is_empty()
                && self.unacked_bytes + stanza.len() > self.max_unacked_bytes;
            if self.unacked.len() >= self.max_unacked || over_bytes {
                return Err(SmError::QueueFull);
            }
            self.unacked_bytes += stanza.len();
            self.unacked.push_back(stanza.to_vec());
        }
        self.sent = self.sent.wrapping_add(1);
        Ok(())
    }

    /// Applies `<a h='…'/>`; returns how many stanzas it newly acknowledged. A stale (lower)
    /// `h` acknowledges nothing and is not an error.
    pub fn ack(&mut self, h: u32) -> Result<u32, SmError> {
        let newly = h.wrapping_sub(self.acked);
        let outstanding = self.unacked_count();
        if newly > outstanding {
            // Wrapping distance larger than what is in flight: either too high, or an old
            // (lower) value. Values within 2^31 below are old acks.
            if self.acked.wrapping_sub(h) < (1 << 31) {
                return Ok(0);
            }
            return Err(SmError::HandledCountTooHigh {
                acked: h,
                sent: self.sent,
            });
        }
        self.acked = h;
        if self.resumable {
            for _ in 0..newly {
                if let Some(acked) = self.unacked.pop_front() {
                    self.unacked_bytes -= acked.len();
                }
            }
        }
        Ok(newly)
    }

    /// Resumes with the client's `h`: acknowledges it and returns the stanzas to send again, in
    /// order. The counters continue from where they were.
    pub fn resume(&mut self, client_h: u32) -> Result<Vec<Vec<u8>>, SmError> {
        self.ack(client_h)?;
        let resend: Vec<Vec<u8>> = self.unacked.drain(..).collect();
        self.unacked_bytes = 0;
        // Re-sent stanzas count as sent again and await a new ack.
        self.sent = self.acked;
        for stanza in &resend {
            self.sent(stanza)?;
        }
        Ok(resend)
    }

    /// The stanzas never acknowledged, for offline storage when the session ends for good.
    pub fn into_unacked(self) -> Vec<Vec<u8>> {
        self.unacked.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_acks() {
        let mut sm = SmState::new(true, 10);
        for i in 0..3u8 {
            sm.sent(&[i]).unwrap();
        }
        sm.handled_inbound();
        assert_eq!(sm.inbound_h(), 1);
        assert_eq!(sm.ack(2).unwrap(), 2);
        assert_eq!(sm.unacked_count(), 1);
        assert_eq!(sm.ack(1).unwrap(), 0, "stale ack is ignored");
        assert_eq!(
            sm.ack(5),
            Err(SmError::HandledCountTooHigh { acked: 5, sent: 3 })
        );
        assert_eq!(sm.into_unacked(), vec![vec![2u8]]);
    }

    #[test]
    fn resume_resends_exactly_the_unacked() {
        let mut sm = SmState::new(true, 10);
        for i in 0..5u8 {
            sm.sent(&[i]).unwrap();
        }
        sm.ack(1).unwrap();
        let resend = sm.resume(3).unwrap();
        assert_eq!(resend, vec![vec![3u8], vec![4u8]]);
        assert_eq!(sm.unacked_count(), 2);
        assert_eq!(sm.ack(5).unwrap(), 2);
        assert!(sm.into_unacked().is_empty());
    }

    #[test]
    fn counters_wrap() {
        let mut sm = SmState::new(true, 10);
        sm.sent = u32::MAX - 1;
        sm.acked = u32::MAX - 1;
        sm.sent(b"a").unwrap();
        sm.sent(b"b").unwrap();
        sm.sent(b"c").unwrap();
        assert_eq!(sm.ack(0).unwrap(), 2);
        assert_eq!(sm.ack(1).unwrap(), 1);
        for _ in 0..3 {
            sm.handled_inbound();
        }
    }

    #[test]
    fn non_resumable_streams_keep_no_copies_and_tolerate_low_h() {
        let mut sm = SmState::new(false, 1);
        for _ in 0..100 {
            sm.sent(b"x").unwrap();
        }
        assert_eq!(sm.ack(40).unwrap(), 40);
        assert_eq!(sm.ack(10).unwrap(), 0);
        assert!(sm.into_unacked().is_empty());
    }

    #[test]
    fn resumable_copies_are_bounded_in_bytes_too() {
        let mut sm = SmState::new(true, 100).with_max_unacked_bytes(10);
        // One stanza always fits, however large.
        assert_eq!(sm.sent(&[b'x'; 25]), Ok(()));
        assert_eq!(sm.sent(b"y"), Err(SmError::QueueFull));
        assert_eq!(sm.ack(1), Ok(1));
        assert_eq!(sm.sent(&[b'a'; 6]), Ok(()));
        assert_eq!(sm.sent(&[b'b'; 4]), Ok(()));
        assert_eq!(sm.sent(b"c"), Err(SmError::QueueFull), "11 bytes > 10");
        assert_eq!(sm.ack(2), Ok(1));
        assert_eq!(sm.sent(b"c"), Ok(()), "the ack freed 6 bytes");
    }

    #[test]
    fn resumable_queue_is_bounded() {
        let mut sm = SmState::new(true, 2);
        sm.sent(b"1").unwrap();
        sm.sent(b"2").unwrap();
        assert_eq!(sm.sent(b"3"), Err(SmError::QueueFull));
    }
}
