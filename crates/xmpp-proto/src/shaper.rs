//! The stanza budget of one client stream: a token bucket that slows a client over its rate
//! instead of closing it, and closes only one that stays over it for a long window (the way
//! ejabberd's shapers and Prosody's limits do).
//!
//! Driving contract: before taking each element of a bound client call [`Shaper::admit`]; on
//! [`Admit::Go`] take it and call [`Shaper::spend`]; on [`Admit::Wait`] take no more input
//! until [`Shaper::paused_until`] (the shell stops reading its socket, so TCP slows the
//! client); on [`Admit::Overloaded`] close the stream.

use std::time::{Duration, Instant};

/// What the client may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Take the next element.
    Go,
    /// Out of tokens: take nothing until [`Shaper::paused_until`].
    Wait,
    /// Over the budget for longer than the sustained-overload window.
    Overloaded,
}

/// A token bucket with a pause and an overload window.
#[derive(Debug, Clone)]
pub struct Shaper {
    rate: f64,
    burst: f64,
    sustained_overload: Duration,
    tokens: f64,
    last_refill: Option<Instant>,
    paused_until: Option<Instant>,
    /// When the client went over its budget and has not come back under it since (its bucket
    /// refilled to half).
    overloaded_since: Option<Instant>,
}

impl Shaper {
    /// `rate` tokens a second, at most `burst` saved up (both at least 1); a client over its
    /// budget for `sustained_overload` is [`Admit::Overloaded`].
    pub fn new(rate: u32, burst: u32, sustained_overload: Duration) -> Shaper {
        let burst = f64::from(burst.max(1));
        Shaper {
            rate: f64::from(rate.max(1)),
            burst,
            sustained_overload,
            tokens: burst,
            last_refill: None,
            paused_until: None,
            overloaded_since: None,
        }
    }

    /// Whether the next element may be taken at `now`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.paused_until {
            Some(until) if now < until => return Admit::Wait,
            Some(_) => self.paused_until = None,
            None => {}
        }
        if let Some(last) = self.last_refill {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last_refill = Some(now);
        if self.tokens >= self.burst / 2.0 {
            // Back under the budget for a while: earlier overload is forgiven.
            self.overloaded_since = None;
        }
        if self.tokens >= 1.0 {
            return Admit::Go;
        }
        let since = *self.overloaded_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.sustained_overload {
            return Admit::Overloaded;
        }
        let wait = ((1.0 - self.tokens) / self.rate).max(0.001);
        self.paused_until = Some(now + Duration::from_secs_f64(wait));
        Admit::Wait
    }

    /// Takes the token [`admit`](Self::admit) found.
    pub fn spend(&mut self) {
        self.tokens -= 1.0;
    }

    /// The end of the current pause, if the client is paused.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Ends a pause that is over at `now`; true if one ended (input may be taken again).
    pub fn resume_if_due(&mut self, now: Instant) -> bool {
        if self.paused_until.is_some_and(|until| now >= until) {
            self.paused_until = None;
            return true;
        }
        false
    }
}
