//! Simulcast: a publisher sends its video as several encodings at once (RTP stream ids, rids,
//! RFC 8851/8853); each subscriber is forwarded one of them, the best its link takes, or the
//! one it pinned with Janus's `substream` (0 the lowest). A subscriber moves to another layer
//! only at that layer's keyframe, so its decoder never sees a frame it has no reference for;
//! until then it keeps the layer it has.
//!
//! Layers are ranked by the bitrate they arrive at, not by their names: browsers and SDKs name
//! them `h/m/l`, `f/h/q`, `0/1/2` and order them either way.

use std::time::{Duration, Instant};

use str0m::media::Rid;

/// How often each layer's rate is measured.
pub const RATE_WINDOW: Duration = Duration::from_millis(500);
/// A layer is taken up only when the estimate exceeds its rate by this factor (and a layer is
/// left as soon as the estimate falls below its rate): the choice does not flap around one
/// value.
const UP_HEADROOM: f64 = 1.25;

/// Whether a VP8 RTP payload (RFC 7741) starts a keyframe: the payload descriptor marks the
/// start of partition 0, and the frame header's P bit (inverse keyframe flag) is clear.
pub fn vp8_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let start = first & 0x10 != 0;
    let partition = first & 0x07;
    if !start || partition != 0 {
        return false;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        // X: an extension byte follows, saying which optional fields are present.
        let Some(&ext) = payload.get(at) else {
            return false;
        };
        at += 1;
        if ext & 0x80 != 0 {
            // I: PictureID, 7 or 15 bits.
            let Some(&pid) = payload.get(at) else {
                return false;
            };
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            // L: TL0PICIDX.
            at += 1;
        }
        if ext & 0x30 != 0 {
            // T or K: TID/Y/KEYIDX.
            at += 1;
        }
    }
    payload.get(at).is_some_and(|header| header & 0x01 == 0)
}

/// The layers of one simulcast video track of a publisher, as they arrive.
#[derive(Debug, Default)]
pub struct Layers {
    layers: Vec<Layer>,
}

#[derive(Debug)]
struct Layer {
    rid: Rid,
    /// Bytes since the window began.
    bytes: u64,
    window_start: Option<Instant>,
    /// Bits per second over the last full window.
    rate: u64,
    last_packet: Instant,
}

impl Layers {
    /// A packet of `bytes` on layer `rid`.
    pub fn on_packet(&mut self, now: Instant, rid: Rid, bytes: usize) {
        let index = match self.layers.iter().position(|l| l.rid == rid) {
            Some(index) => index,
            None => {
                self.layers.push(Layer {
                    rid,
                    bytes: 0,
                    window_start: None,
                    rate: 0,
                    last_packet: now,
                });
                self.layers.len() - 1
            }
        };
        let layer = &mut self.layers[index];
        layer.last_packet = now;
        let start = *layer.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= RATE_WINDOW {
            layer.rate = (layer.bytes * 8 * 1000) / (elapsed.as_millis().max(1) as u64);
            layer.bytes = 0;
            layer.window_start = Some(now);
        }
        layer.bytes += bytes as u64;
    }

    /// The layers seen, every one.
    pub fn rids(&self) -> impl Iterator<Item = Rid> + '_ {
        self.layers.iter().map(|l| l.rid)
    }

    /// The layers still arriving (a packet within `quiet`) whose rate is measured (a full
    /// window), lowest rate first; empty until then, so no choice is made on no knowledge.
    pub fn ranked(&self, now: Instant, quiet: Duration) -> Vec<(Rid, u64)> {
        let mut live: Vec<(Rid, u64)> = self
            .layers
            .iter()
            .filter(|l| now.saturating_duration_since(l.last_packet) < quiet && l.rate > 0)
            .map(|l| (l.rid, l.rate))
            .collect();
        live.sort_by_key(|(_, rate)| *rate);
        live
    }
}

/// The layer a subscriber should get, from the live layers (lowest rate first): the pinned
/// `substream` (clamped to what exists) if any; else the best whose rate the `estimate`
/// (bits/s, for this track) allows: a layer above `current` only with headroom, the lowest
/// when none fits. Without an estimate, the best.
pub fn choose(
    ranked: &[(Rid, u64)],
    pinned: Option<u8>,
    estimate: Option<u64>,
    current: Option<Rid>,
) -> Option<Rid> {
    if ranked.is_empty() {
        return None;
    }
    if let Some(pinned) = pinned {
        let index = usize::from(pinned).min(ranked.len() - 1);
        return Some(ranked[index].0);
    }
    let Some(estimate) = estimate else {
        return ranked.last().map(|(rid, _)| *rid);
    };
    let current_index = current.and_then(|c| ranked.iter().position(|(rid, _)| *rid == c));
    let mut best = 0;
    for (index, (_, rate)) in ranked.iter().enumerate() {
        let needed = if current_index.is_some_and(|c| index <= c) {
            *rate as f64
        } else {
            *rate as f64 * UP_HEADROOM
        };
        if needed <= estimate as f64 {
            best = index;
        }
    }
    Some(ranked[best].0)
}

/// One subscriber track's place in a simulcast feed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Selection {
    /// The layer being forwarded.
    pub current: Option<Rid>,
    /// The layer wanted: taken at its next keyframe.
    pub target: Option<Rid>,
}

impl Selection {
    /// Whether a packet of layer `rid` (a keyframe start or not) goes to this subscriber; a
    /// keyframe of the target layer completes a switch (`true` is returned with `switched`).
    pub fn admit(&mut self, rid: Rid, keyframe: bool) -> Admit {
        if self.target.is_none() {
            // Nothing chosen yet (the layers' rates are not known): the first layer seen.
            self.target = Some(rid);
        }
        if self.current == Some(rid) {
            return Admit::Forward;
        }
        if self.target == Some(rid) && keyframe {
            self.current = Some(rid);
            return Admit::Switched;
        }
        Admit::Drop
    }

    /// Whether a keyframe is awaited on the target layer.
    pub fn switching(&self) -> bool {
        self.target.is_some() && self.target != self.current
    }
}

/// What to do with a simulcast packet for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Forward it.
    Forward,
    /// Forward it: the first of a new layer (the subscriber's numbering moves on).
    Switched,
    /// Not for this subscriber.
    Drop,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(s: &str) -> Rid {
        Rid::from(s)
    }

    #[test]
    fn vp8_keyframes_are_told_from_delta_frames() {
        // Short descriptor, start of partition 0, keyframe header.
        assert!(vp8_keyframe(&[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        assert!(!vp8_keyframe(&[0x10, 0x01, 0x9d]));
        // Not the start of the frame.
        assert!(!vp8_keyframe(&[0x00, 0x00]));
        // Extended: 15-bit picture id, TL0PICIDX and TID, then the keyframe header.
        assert!(vp8_keyframe(&[0x90, 0xe0, 0x80, 0x01, 0x05, 0x40, 0x00]));
        assert!(!vp8_keyframe(&[0x90, 0xe0, 0x80, 0x01, 0x05, 0x40, 0x01]));
        // Truncated.
        assert!(!vp8_keyframe(&[0x90, 0x80]));
        assert!(!vp8_keyframe(&[]));
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // A starting instant; the test's time is virtual.
    fn layers_are_ranked_by_the_rate_they_arrive_at() {
        let start = Instant::now();
        let mut layers = Layers::default();
        for i in 0..=30u64 {
            let now = start + Duration::from_millis(i * 20);
            layers.on_packet(now, rid("h"), 1000);
            layers.on_packet(now, rid("l"), 100);
            layers.on_packet(now, rid("m"), 400);
        }
        let now = start + Duration::from_millis(600);
        let ranked = layers.ranked(now, Duration::from_secs(1));
        let order: Vec<Rid> = ranked.iter().map(|(r, _)| *r).collect();
        assert_eq!(order, vec![rid("l"), rid("m"), rid("h")]);
        // 1000 bytes every 20 ms: 400 kbit/s.
        assert!((390_000..=410_000).contains(&ranked[2].1), "{ranked:?}");
        // A layer that stopped is not offered.
        let later = now + Duration::from_secs(2);
        layers.on_packet(later, rid("l"), 100);
        assert_eq!(layers.ranked(later, Duration::from_secs(1)).len(), 1);
    }

    #[test]
    fn the_choice_follows_the_estimate_with_headroom_to_climb() {
        let ranked = [
            (rid("l"), 100_000),
            (rid("m"), 400_000),
            (rid("h"), 1_500_000),
        ];
        assert_eq!(choose(&ranked, None, None, None), Some(rid("h")));
        assert_eq!(choose(&ranked, Some(0), None, None), Some(rid("l")));
        assert_eq!(choose(&ranked, Some(9), Some(1), None), Some(rid("h")));
        // 450 kbit/s holds m once there, but does not climb to it from l.
        assert_eq!(
            choose(&ranked, None, Some(450_000), Some(rid("m"))),
            Some(rid("m"))
        );
        assert_eq!(
            choose(&ranked, None, Some(450_000), Some(rid("l"))),
            Some(rid("l"))
        );
        assert_eq!(
            choose(&ranked, None, Some(600_000), Some(rid("l"))),
            Some(rid("m"))
        );
        // Below everything: the lowest.
        assert_eq!(
            choose(&ranked, None, Some(10_000), Some(rid("h"))),
            Some(rid("l"))
        );
        assert_eq!(choose(&[], None, None, None), None);
    }

    #[test]
    fn a_switch_waits_for_a_keyframe_of_the_target() {
        let mut selection = Selection::default();
        // The first layer seen is taken at its first keyframe.
        assert_eq!(selection.admit(rid("h"), false), Admit::Drop);
        assert_eq!(selection.admit(rid("h"), true), Admit::Switched);
        assert_eq!(selection.admit(rid("h"), false), Admit::Forward);
        assert_eq!(selection.admit(rid("l"), true), Admit::Drop);
        selection.target = Some(rid("l"));
        assert!(selection.switching());
        assert_eq!(selection.admit(rid("l"), false), Admit::Drop);
        assert_eq!(selection.admit(rid("h"), false), Admit::Forward);
        assert_eq!(selection.admit(rid("l"), true), Admit::Switched);
        assert_eq!(selection.admit(rid("h"), true), Admit::Drop);
        assert!(!selection.switching());
    }
}
