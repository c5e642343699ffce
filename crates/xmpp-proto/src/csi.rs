//! XEP-0352 client state indication: while a client says it is inactive, stanzas that can wait
//! are held back and flushed together, saving a mobile radio from waking for each presence.
//!
//! Driving contract: the shell classifies each outgoing stanza with an [`Urgency`] and calls
//! [`CsiQueue::push`]; whatever it returns is sent now, in order. [`CsiQueue::set_active`]
//! returns the held stanzas when the client becomes active. Order between the stanzas that are
//! sent is always preserved: an urgent stanza flushes everything held before it.

use std::collections::VecDeque;

/// The CSI namespace.
pub const NS_CSI: &str = "urn:xmpp:csi:0";

/// How an outgoing stanza may be treated while the client is inactive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urgency {
    /// Send now (messages with a body, iqs, call signals, errors).
    Urgent,
    /// May wait; a later stanza with the same key replaces it (presence of one full JID).
    Coalesce(String),
    /// May wait (chat states, markers).
    Defer,
}

/// The held-back queue of one session.
#[derive(Debug, Clone)]
pub struct CsiQueue {
    active: bool,
    held: VecDeque<(Option<String>, Vec<u8>)>,
    max_held: usize,
}

impl CsiQueue {
    /// A queue for an active client; at most `max_held` stanzas are held before a flush.
    pub fn new(max_held: usize) -> CsiQueue {
        CsiQueue {
            active: true,
            held: VecDeque::new(),
            max_held: max_held.max(1),
        }
    }

    /// Whether the client is active.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Number of stanzas held back.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Offers a stanza; returns the stanzas to send now, in order.
    pub fn push(&mut self, stanza: Vec<u8>, urgency: Urgency) -> Vec<Vec<u8>> {
        if self.active {
            return vec![stanza];
        }
        match urgency {
            Urgency::Urgent => {
                let mut out = self.drain();
                out.push(stanza);
                out
            }
            Urgency::Coalesce(key) => {
                self.held
                    .retain(|(k, _)| k.as_deref() != Some(key.as_str()));
                self.held.push_back((Some(key), stanza));
                self.flush_if_full()
            }
            Urgency::Defer => {
                self.held.push_back((None, stanza));
                self.flush_if_full()
            }
        }
    }

    /// `<active/>` or `<inactive/>`; becoming active returns the held stanzas.
    pub fn set_active(&mut self, active: bool) -> Vec<Vec<u8>> {
        self.active = active;
        if active {
            self.drain()
        } else {
            Vec::new()
        }
    }

    /// Takes everything held without changing the state: the connection is gone, the held
    /// stanzas still belong to the session (re-sent on resumption or stored).
    pub fn take_held(&mut self) -> Vec<Vec<u8>> {
        self.drain()
    }

    fn flush_if_full(&mut self) -> Vec<Vec<u8>> {
        if self.held.len() > self.max_held {
            self.drain()
        } else {
            Vec::new()
        }
    }

    fn drain(&mut self) -> Vec<Vec<u8>> {
        self.held.drain(..).map(|(_, stanza)| stanza).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    #[test]
    fn active_sends_everything_at_once() {
        let mut q = CsiQueue::new(10);
        assert_eq!(q.push(s("p"), Urgency::Coalesce("a".into())), vec![s("p")]);
    }

    #[test]
    fn inactive_holds_coalesces_and_flushes_in_order() {
        let mut q = CsiQueue::new(10);
        assert!(q.set_active(false).is_empty());
        assert!(q.push(s("p1-a"), Urgency::Coalesce("a".into())).is_empty());
        assert!(q.push(s("typing"), Urgency::Defer).is_empty());
        assert!(q.push(s("p2-a"), Urgency::Coalesce("a".into())).is_empty());
        assert_eq!(
            q.held(),
            2,
            "the newer presence of a replaced the older one"
        );
        assert_eq!(
            q.push(s("msg"), Urgency::Urgent),
            vec![s("typing"), s("p2-a"), s("msg")]
        );
        assert!(q.push(s("p-b"), Urgency::Coalesce("b".into())).is_empty());
        assert_eq!(q.set_active(true), vec![s("p-b")]);
    }

    #[test]
    fn a_full_queue_flushes() {
        let mut q = CsiQueue::new(2);
        q.set_active(false);
        assert!(q.push(s("1"), Urgency::Defer).is_empty());
        assert!(q.push(s("2"), Urgency::Defer).is_empty());
        assert_eq!(q.push(s("3"), Urgency::Defer), vec![s("1"), s("2"), s("3")]);
    }
}
