//! The routing table: every bound session by full JID, an index of resources by bare JID, and
//! the sessions kept for stream resumption after their connection dropped.
//!
//! Sharded maps (`DashMap`), no global lock: a message lookup touches one shard. A session's
//! outgoing queue is a bounded channel owned by its connection task; when it is full the
//! stanza is refused and the router falls back (offline storage or an error), so one slow
//! client never blocks another.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};
use xmpp_proto::csi::Urgency;
use xmpp_proto::errors::StreamErrorCondition;
use xmpp_proto::sm::SmState;
use xmpp_proto::{BareJid, FullJid};

/// What a connection task receives for its client.
#[derive(Debug)]
pub enum Delivery {
    /// A stanza to send, already addressed and stamped. Boxed so the channel's slots stay
    /// small: every session's queue keeps a block of them for its whole life.
    Stanza(Box<Queued>),
    /// Close the stream with this error (e.g. `Conflict` when a new session took the resource).
    Close(StreamErrorCondition),
}

/// A stanza waiting in a session's queue, and the bytes it holds of the queue budgets: they
/// are given back when it is dropped, wherever that happens (written, handed to a resumed
/// session, stored offline, or discarded with the session).
#[derive(Debug)]
pub struct Queued {
    pub stanza: Arc<str>,
    pub urgency: Urgency,
    _charge: Charge,
}

/// Bytes queued for clients across the server, bounded: past `max` a stanza is refused (the
/// router then stores it offline) instead of growing memory without limit.
#[derive(Debug)]
pub struct QueueBudget {
    queued: AtomicUsize,
    max: usize,
    gauge: Option<prometheus::IntGauge>,
}

impl QueueBudget {
    /// A budget of `max` bytes, reported on `gauge` if given.
    pub fn new(max: usize, gauge: Option<prometheus::IntGauge>) -> QueueBudget {
        QueueBudget {
            queued: AtomicUsize::new(0),
            max,
            gauge,
        }
    }

    /// Bytes queued now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Takes `len` bytes unless that passes `max`; one stanza always fits an empty budget, so
    /// a large stanza is never refused for its size alone.
    fn take(counter: &AtomicUsize, max: usize, len: usize) -> bool {
        let before = counter.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > max {
            counter.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// The bytes one queued stanza holds of its session's and the server's budgets.
#[derive(Debug)]
struct Charge {
    session: Arc<SessionShared>,
    len: usize,
}

impl Charge {
    fn take(session: &Arc<SessionShared>, len: usize) -> Option<Charge> {
        if !QueueBudget::take(&session.queued_bytes, session.max_queued_bytes, len) {
            return None;
        }
        let server = &session.server_budget;
        if !QueueBudget::take(&server.queued, server.max, len) {
            session.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return None;
        }
        if let Some(gauge) = &server.gauge {
            gauge.add(len as i64);
        }
        Some(Charge {
            session: session.clone(),
            len,
        })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.session
            .queued_bytes
            .fetch_sub(self.len, Ordering::AcqRel);
        let server = &self.session.server_budget;
        server.queued.fetch_sub(self.len, Ordering::AcqRel);
        if let Some(gauge) = &server.gauge {
            gauge.sub(self.len as i64);
        }
    }
}

/// The presence a session last broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub priority: i8,
    /// The `<presence>` as broadcast, without `to` (stamped per recipient).
    pub stanza: String,
}

/// State of one bound session that other tasks read.
#[derive(Debug)]
pub struct SessionShared {
    pub jid: FullJid,
    /// Unique per bind, so a late unbind cannot remove a newer session with the same JID.
    pub generation: u64,
    /// `None` until initial presence, and after unavailable.
    pub presence: Mutex<Option<Presence>>,
    pub carbons: AtomicBool,
    /// Raised when a newer session took this JID but the `Close` could not be queued (the
    /// connection is not draining its queue): the connection waits on it too, so it ends.
    pub replaced: tokio::sync::Notify,
    /// Bytes in this session's queue, at most `max_queued_bytes` (see [`Queued`]).
    queued_bytes: AtomicUsize,
    max_queued_bytes: usize,
    server_budget: Arc<QueueBudget>,
}

impl SessionShared {
    /// A session for `jid` with no presence and carbons off, and no byte budget (tests).
    pub fn new(jid: FullJid, generation: u64) -> SessionShared {
        SessionShared::with_budget(
            jid,
            generation,
            usize::MAX,
            Arc::new(QueueBudget::new(usize::MAX, None)),
        )
    }

    /// A session whose queue holds at most `max_queued_bytes`, within the server's budget.
    pub fn with_budget(
        jid: FullJid,
        generation: u64,
        max_queued_bytes: usize,
        server_budget: Arc<QueueBudget>,
    ) -> SessionShared {
        SessionShared {
            jid,
            generation,
            presence: Mutex::new(None),
            carbons: AtomicBool::new(false),
            replaced: tokio::sync::Notify::new(),
            queued_bytes: AtomicUsize::new(0),
            max_queued_bytes,
            server_budget,
        }
    }

    /// Bytes in this session's queue now.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Acquire)
    }

    /// Tells the connection behind this session that a newer one took its JID (RFC 6120
    /// §7.7.2.2): queued behind what it still has to write, or at once if its queue is full.
    pub fn close_as_replaced(&self, tx: &mpsc::Sender<Delivery>) {
        if tx
            .try_send(Delivery::Close(StreamErrorCondition::Conflict))
            .is_err()
        {
            self.replaced.notify_one();
        }
    }

    pub fn presence(&self) -> Option<Presence> {
        self.presence
            .lock()
            .expect("presence lock is never held across a panic")
            .clone()
    }

    pub fn set_presence(&self, presence: Option<Presence>) {
        *self
            .presence
            .lock()
            .expect("presence lock is never held across a panic") = presence;
    }

    /// The priority of the available session, `None` when unavailable (without copying the
    /// presence stanza: routing reads this per message).
    pub fn priority(&self) -> Option<i8> {
        self.presence
            .lock()
            .expect("presence lock is never held across a panic")
            .as_ref()
            .map(|presence| presence.priority)
    }

    pub fn is_available(&self) -> bool {
        self.presence
            .lock()
            .expect("presence lock is never held across a panic")
            .is_some()
    }
}

/// A handle to a bound session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub tx: mpsc::Sender<Delivery>,
    pub shared: Arc<SessionShared>,
}

/// Why a delivery did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No such session.
    Gone,
    /// Its queue is full.
    Full,
}

impl SessionHandle {
    /// Queues a stanza for this session; `Full` when its queue has no slot or no byte budget
    /// left (or the server's byte budget is spent).
    pub fn send(&self, stanza: Arc<str>, urgency: Urgency) -> Result<(), SendError> {
        let charge = Charge::take(&self.shared, stanza.len()).ok_or(SendError::Full)?;
        let queued = Queued {
            stanza,
            urgency,
            _charge: charge,
        };
        self.tx
            .try_send(Delivery::Stanza(Box::new(queued)))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => SendError::Full,
                mpsc::error::TrySendError::Closed(_) => SendError::Gone,
            })
    }
}

/// What a detached (resumable) session hands to the connection that resumes it.
#[derive(Debug)]
pub struct Takeover {
    pub jid: FullJid,
    pub sm: SmState,
    pub handle: SessionHandle,
    pub rx: mpsc::Receiver<Delivery>,
}

/// A request to take a detached session over; the detached task answers on `reply`.
pub type TakeoverRequest = oneshot::Sender<Takeover>;

/// The routing table.
#[derive(Debug, Default)]
pub struct Hub {
    sessions: DashMap<FullJid, SessionHandle>,
    /// The same handles by user, so delivery to a bare JID needs one lookup.
    resources: DashMap<BareJid, Vec<SessionHandle>>,
    detached: DashMap<String, (BareJid, mpsc::Sender<TakeoverRequest>)>,
    generation: AtomicU64,
}

impl Hub {
    pub fn new() -> Hub {
        Hub::default()
    }

    pub fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a bound session; returns the one it replaced (same full JID), which the
    /// caller must close with `conflict` (RFC 6120 §7.7.2.2).
    pub fn bind(&self, handle: SessionHandle) -> Option<SessionHandle> {
        let jid = handle.shared.jid.clone();
        let previous = self.sessions.insert(jid.clone(), handle.clone());
        let mut resources = self.resources.entry(jid.bare().clone()).or_default();
        match resources.iter().position(|h| h.shared.jid == jid) {
            Some(index) => resources[index] = handle,
            None => resources.push(handle),
        }
        previous
    }

    /// Removes a session if it is still the one of `generation`.
    pub fn unbind(&self, jid: &FullJid, generation: u64) -> bool {
        let removed = self
            .sessions
            .remove_if(jid, |_, handle| handle.shared.generation == generation)
            .is_some();
        if removed {
            let bare = jid.bare().clone();
            if let dashmap::mapref::entry::Entry::Occupied(mut entry) = self.resources.entry(bare) {
                entry
                    .get_mut()
                    .retain(|h| h.shared.generation != generation);
                if entry.get().is_empty() {
                    entry.remove();
                }
            }
        }
        removed
    }

    pub fn session(&self, jid: &FullJid) -> Option<SessionHandle> {
        self.sessions.get(jid).map(|h| h.clone())
    }

    /// Every bound session of a user.
    pub fn sessions_of(&self, bare: &BareJid) -> Vec<SessionHandle> {
        self.resources
            .get(bare)
            .map(|handles| handles.clone())
            .unwrap_or_default()
    }

    pub fn is_online(&self, bare: &BareJid) -> bool {
        self.resources.contains_key(bare)
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Records a detached resumable session under its stream-management id.
    pub fn detach(&self, id: String, owner: BareJid, takeover: mpsc::Sender<TakeoverRequest>) {
        self.detached.insert(id, (owner, takeover));
    }

    /// Forgets a detached session (resumed or expired).
    pub fn forget_detached(&self, id: &str) {
        self.detached.remove(id);
    }

    /// Asks the detached session `id` owned by `owner` to hand itself over.
    pub async fn take_over(&self, id: &str, owner: &BareJid) -> Option<Takeover> {
        let sender = {
            let entry = self.detached.get(id)?;
            if &entry.0 != owner {
                return None;
            }
            entry.1.clone()
        };
        let (reply, answer) = oneshot::channel();
        sender.send(reply).await.ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_replaced_session_with_a_full_queue_is_still_told() {
        let hub = Hub::new();
        let (old, mut rx) = handle(&hub, "1-1@d/r");
        // Room left: the Close waits behind what is queued.
        old.shared.close_as_replaced(&old.tx);
        assert!(matches!(
            rx.try_recv(),
            Ok(Delivery::Close(StreamErrorCondition::Conflict))
        ));
        // Full queue: the connection is signalled directly, and the signal is kept until it
        // looks (no waiter needs to exist at the time).
        while old
            .tx
            .try_send(Delivery::Close(StreamErrorCondition::Conflict))
            .is_ok()
        {}
        old.shared.close_as_replaced(&old.tx);
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            old.shared.replaced.notified(),
        )
        .await
        .expect("the replaced signal was raised");
    }

    fn handle(hub: &Hub, jid: &str) -> (SessionHandle, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(2);
        let shared = SessionShared::new(FullJid::parse(jid).unwrap(), hub.next_generation());
        (
            SessionHandle {
                tx,
                shared: Arc::new(shared),
            },
            rx,
        )
    }

    #[test]
    fn bind_index_and_unbind_by_generation() {
        let hub = Hub::new();
        let (a1, _r1) = handle(&hub, "1-1@d/a");
        let (a2, _r2) = handle(&hub, "1-1@d/b");
        assert!(hub.bind(a1.clone()).is_none());
        assert!(hub.bind(a2.clone()).is_none());
        let bare = BareJid::parse("1-1@d").unwrap();
        assert_eq!(hub.sessions_of(&bare).len(), 2);
        let (a1_new, _r3) = handle(&hub, "1-1@d/a");
        let replaced = hub.bind(a1_new.clone()).unwrap();
        assert_eq!(replaced.shared.generation, a1.shared.generation);
        assert_eq!(hub.sessions_of(&bare).len(), 2, "no duplicate index entry");
        assert!(
            !hub.unbind(&a1.shared.jid, a1.shared.generation),
            "stale unbind is ignored"
        );
        assert!(hub.unbind(&a1.shared.jid, a1_new.shared.generation));
        assert!(hub.unbind(&a2.shared.jid, a2.shared.generation));
        assert!(!hub.is_online(&bare));
    }

    #[test]
    fn full_queue_is_reported() {
        let hub = Hub::new();
        let (h, _rx) = handle(&hub, "1-1@d/a");
        let text: Arc<str> = Arc::from("<message/>");
        assert_eq!(h.send(text.clone(), Urgency::Urgent), Ok(()));
        assert_eq!(h.send(text.clone(), Urgency::Urgent), Ok(()));
        assert_eq!(h.send(text, Urgency::Urgent), Err(SendError::Full));
    }

    #[test]
    fn queues_are_bounded_in_bytes_per_session_and_server_wide() {
        let hub = Hub::new();
        let server = Arc::new(QueueBudget::new(250, None));
        let session = |jid: &str| {
            let (tx, rx) = mpsc::channel(100);
            let shared = SessionShared::with_budget(
                FullJid::parse(jid).unwrap(),
                hub.next_generation(),
                100,
                server.clone(),
            );
            (
                SessionHandle {
                    tx,
                    shared: Arc::new(shared),
                },
                rx,
            )
        };
        let (a, mut a_rx) = session("1-1@d/a");
        let (b, _b_rx) = session("2-1@d/b");
        let forty: Arc<str> = Arc::from("x".repeat(40));
        assert_eq!(a.send(forty.clone(), Urgency::Urgent), Ok(()));
        assert_eq!(a.send(forty.clone(), Urgency::Urgent), Ok(()));
        assert_eq!(
            a.send(forty.clone(), Urgency::Urgent),
            Err(SendError::Full),
            "120 > 100"
        );
        assert_eq!(a.shared.queued_bytes(), 80);
        // A stanza larger than the whole budget still goes to an empty queue.
        let huge: Arc<str> = Arc::from("y".repeat(150));
        assert_eq!(b.send(huge, Urgency::Urgent), Ok(()));
        assert_eq!(server.queued(), 230);
        assert_eq!(b.send(forty.clone(), Urgency::Urgent), Err(SendError::Full));
        // Taking a stanza off the queue gives its bytes back to both budgets.
        drop(a_rx.try_recv().unwrap());
        assert_eq!((a.shared.queued_bytes(), server.queued()), (40, 190));
        // A session that goes away gives back what it still held, and a refused send holds
        // nothing.
        drop(a_rx);
        assert_eq!((a.shared.queued_bytes(), server.queued()), (0, 150));
        assert_eq!(a.send(forty, Urgency::Urgent), Err(SendError::Gone));
        assert_eq!(server.queued(), 150);
    }
}
