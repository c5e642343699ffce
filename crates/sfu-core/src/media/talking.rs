//! Who is talking, from the RFC 6464 audio level each Opus packet carries, the way Janus's
//! VideoRoom decides it: the average level over a window of packets below a threshold means
//! talking (defaults `audio_level_average` 25 dBov over `audio_active_packets` 100, about two
//! seconds of 20 ms packets).

/// A window's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Louder than the threshold on average.
    pub talking: bool,
    /// The window's average level, in -dBov (0 loudest, 127 silence).
    pub level: u8,
}

/// Averages one publisher's audio levels.
#[derive(Debug, Clone)]
pub struct TalkingDetector {
    window: u32,
    threshold: u8,
    sum: u32,
    count: u32,
}

impl TalkingDetector {
    /// Janus's defaults: 100 packets, 25 dBov.
    pub fn new() -> TalkingDetector {
        TalkingDetector::with(100, 25)
    }

    /// A detector over `window` packets with `threshold` dBov.
    pub fn with(window: u32, threshold: u8) -> TalkingDetector {
        TalkingDetector {
            window: window.max(1),
            threshold,
            sum: 0,
            count: 0,
        }
    }

    /// Adds one packet's level (-dBov, 0..=127); a verdict at the end of each window.
    pub fn push(&mut self, level_dbov: u8) -> Option<Verdict> {
        self.sum += u32::from(level_dbov.min(127));
        self.count += 1;
        if self.count < self.window {
            return None;
        }
        let level = (self.sum / self.count) as u8;
        self.sum = 0;
        self.count = 0;
        Some(Verdict {
            talking: level <= self.threshold,
            level,
        })
    }
}

impl Default for TalkingDetector {
    fn default() -> Self {
        TalkingDetector::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loud_windows_talk_quiet_ones_do_not() {
        let mut d = TalkingDetector::with(4, 25);
        assert_eq!(d.push(10), None);
        d.push(20);
        d.push(30);
        assert_eq!(
            d.push(20),
            Some(Verdict {
                talking: true,
                level: 20
            })
        );
        for _ in 0..3 {
            assert_eq!(d.push(127), None);
        }
        assert_eq!(
            d.push(127),
            Some(Verdict {
                talking: false,
                level: 127
            })
        );
    }
}
