//! Media shards: one thread per core, each a current-thread runtime owning some rooms, their
//! PeerConnections and one of the media port's `SO_REUSEPORT` sockets. A room lives on one
//! shard for its whole life, so its state and its routes need no locks; the gateway reaches it
//! through the shard's inbox ([`RoomHandle`]).
//!
//! The kernel picks the socket a datagram arrives on by its source address, not by room, so a
//! shard also receives datagrams for PeerConnections of other shards. Each shard routes what it
//! reads in O(1):
//! - by source address, from its own table: a PeerConnection of its own (learnt from the
//!   addresses a PeerConnection answered, so a stranger cannot claim an address by sending from
//!   it), or the shard that owns that address (told by that shard when it learnt it);
//! - else, for STUN, by the ICE ufrag in its USERNAME: its own ufrags first, then the
//!   server-wide ufrag directory (STUN is a few checks per PeerConnection, never the media).
//!
//! A datagram for another shard is handed over through a bounded queue (dropped with a metric
//! when full, as the network would); since a client address always reaches the same socket,
//! this costs one copy per datagram and nothing on the owning shard's hot path.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use sfu_core::media::stun_ufrag;
use sfu_core::videoroom::{HandleKey, RoomError, RoomId, RoomSettings};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::room::{admit, RoomInput, RoomShared, RoomState};
use super::SfuContext;

/// A room's number, unique in the server's life (room ids may be reused after a room ends).
pub type RoomSlot = u64;

/// Requests a room holds before the gateway answers "busy": a room gets a handful per
/// participant per negotiation, so this is far above any real burst.
const ROOM_QUEUE: usize = 256;
/// Datagrams handed to one shard by the others before more are dropped.
const CROSSING_QUEUE: usize = 4096;
/// Largest datagram read (str0m's own limit is 2000).
const MAX_DATAGRAM: usize = 2048;
/// Datagrams read from the socket before the shard looks at its inbox and timers again.
const READ_BATCH: usize = 64;

/// What a shard is told (besides datagrams).
pub enum ShardInput {
    /// A new room lives here.
    Open {
        slot: RoomSlot,
        id: RoomId,
        settings: RoomSettings,
        shared: Arc<RoomShared>,
    },
    /// An input for one of its rooms, from the gateway.
    Room { slot: RoomSlot, input: RoomInput },
    /// A join whose admission was looked up.
    Admitted {
        slot: RoomSlot,
        input: RoomInput,
        admitted: Result<Option<u64>, RoomError>,
    },
    /// The gateway let the room go.
    Free { slot: RoomSlot },
    /// Another shard's PeerConnection answered this address (claim `claim`: the latest claim
    /// of an address wins, wherever it is read).
    AddressAt {
        addr: SocketAddr,
        shard: usize,
        claim: u64,
    },
    /// ... and that claim has ended.
    AddressGone {
        addr: SocketAddr,
        shard: usize,
        claim: u64,
    },
}

/// A datagram read by another shard.
pub struct Crossing {
    source: SocketAddr,
    data: Vec<u8>,
    received: Instant,
}

/// The shards, as the gateway and the other shards reach them.
pub struct Shards {
    inboxes: Vec<mpsc::UnboundedSender<ShardInput>>,
    crossings: Vec<mpsc::Sender<Crossing>>,
    /// Rooms open on each shard (a new room goes to the emptiest).
    open_rooms: Vec<AtomicUsize>,
    /// Which shard owns each local ICE ufrag.
    ufrags: DashMap<String, usize>,
    next_slot: AtomicU64,
    /// Orders the claims on client addresses across shards.
    next_claim: AtomicU64,
}

/// A shard's receiving ends, until its thread takes them.
pub struct ShardQueues {
    inbox: mpsc::UnboundedReceiver<ShardInput>,
    crossings: mpsc::Receiver<Crossing>,
}

impl Shards {
    /// `count` shards' queues.
    pub fn new(count: usize) -> (Arc<Shards>, Vec<ShardQueues>) {
        let mut inboxes = Vec::with_capacity(count);
        let mut crossings = Vec::with_capacity(count);
        let mut queues = Vec::with_capacity(count);
        for _ in 0..count {
            let (inbox_tx, inbox) = mpsc::unbounded_channel();
            let (crossing_tx, crossing) = mpsc::channel(CROSSING_QUEUE);
            inboxes.push(inbox_tx);
            crossings.push(crossing_tx);
            queues.push(ShardQueues {
                inbox,
                crossings: crossing,
            });
        }
        let shards = Shards {
            inboxes,
            crossings,
            open_rooms: (0..count).map(|_| AtomicUsize::new(0)).collect(),
            ufrags: DashMap::new(),
            next_slot: AtomicU64::new(1),
            next_claim: AtomicU64::new(1),
        };
        (Arc::new(shards), queues)
    }

    pub fn len(&self) -> usize {
        self.inboxes.len()
    }

    /// Opens a room on the shard with the fewest.
    pub fn open_room(self: &Arc<Self>, id: RoomId, settings: RoomSettings) -> RoomHandle {
        let shard = (0..self.len())
            .min_by_key(|i| self.open_rooms[*i].load(Ordering::Relaxed))
            .expect("at least one shard");
        self.open_rooms[shard].fetch_add(1, Ordering::Relaxed);
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(RoomShared::default());
        let _ = self.inboxes[shard].send(ShardInput::Open {
            slot,
            id,
            settings,
            shared: shared.clone(),
        });
        RoomHandle {
            shards: self.clone(),
            shard,
            slot,
            shared,
        }
    }
}

/// The gateway's way to a room. Dropping it frees the room.
pub struct RoomHandle {
    shards: Arc<Shards>,
    shard: usize,
    slot: RoomSlot,
    shared: Arc<RoomShared>,
}

impl RoomHandle {
    /// Hands `input` to the room; false if its request queue is full (or the server is
    /// stopping). Departures are never refused.
    pub fn send(&self, input: RoomInput) -> bool {
        if self.is_closed() {
            return false;
        }
        if !input.is_control() && self.shared.pending.fetch_add(1, Ordering::Relaxed) >= ROOM_QUEUE
        {
            self.shared.pending.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        self.shards.inboxes[self.shard]
            .send(ShardInput::Room {
                slot: self.slot,
                input,
            })
            .is_ok()
    }

    /// Whether its shard ended the room (destroyed, or the server stopping).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }

    /// How many participants the room has (for `list`).
    pub fn participants(&self) -> usize {
        self.shared.participants.load(Ordering::Relaxed)
    }
}

impl Drop for RoomHandle {
    fn drop(&mut self) {
        let _ = self.shards.inboxes[self.shard].send(ShardInput::Free { slot: self.slot });
    }
}

/// Starts a thread per shard, each with its socket and queues.
pub fn spawn(
    ctx: &Arc<SfuContext>,
    sockets: Vec<std::net::UdpSocket>,
    queues: Vec<ShardQueues>,
) -> anyhow::Result<()> {
    for (index, (socket, queues)) in sockets.into_iter().zip(queues).enumerate() {
        let ctx = ctx.clone();
        // Made here, so a shard that cannot start stops the server's start instead of being
        // given rooms it will never run.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("SFU shard {index}: runtime: {e}"))?;
        let socket = {
            let _context = runtime.enter();
            UdpSocket::from_std(socket)
                .map_err(|e| anyhow::anyhow!("SFU shard {index}: socket: {e}"))?
        };
        // Shutdown waits for the shards to end their PeerConnections.
        let token = ctx.tracker.token();
        std::thread::Builder::new()
            .name(format!("sfu-shard-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    ctx.metrics.shards.inc();
                    let shard = Shard::new(ctx.clone(), index, socket);
                    shard.run(queues).await;
                    ctx.metrics.shards.dec();
                });
                drop(token);
            })?;
    }
    Ok(())
}

/// Who a datagram from an address is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    Local(RoomSlot, HandleKey),
    Shard(usize),
}

/// A shard's socket and routes: what a room needs to send and to be found.
pub struct Net {
    index: usize,
    socket: UdpSocket,
    shards: Arc<Shards>,
    ufrags: HashMap<String, (RoomSlot, HandleKey)>,
    /// Looked up for every datagram: foldhash, seeded (only addresses a PeerConnection
    /// answered get in).
    addresses: HashMap<SocketAddr, (Owner, u64), foldhash::fast::RandomState>,
}

impl Net {
    pub fn transmit(&self, to: SocketAddr, data: &[u8]) {
        // A full socket buffer drops the datagram, as the network would.
        let _ = self.socket.try_send_to(data, to);
    }

    pub fn route_ufrag(&mut self, ufrag: String, slot: RoomSlot, key: HandleKey) {
        self.shards.ufrags.insert(ufrag.clone(), self.index);
        self.ufrags.insert(ufrag, (slot, key));
    }

    pub fn forget_ufrag(&mut self, ufrag: &str) {
        self.ufrags.remove(ufrag);
        self.shards
            .ufrags
            .remove_if(ufrag, |_, shard| *shard == self.index);
    }

    pub fn route_address(&mut self, addr: SocketAddr, slot: RoomSlot, key: HandleKey) {
        let claim = self.shards.next_claim.fetch_add(1, Ordering::Relaxed);
        self.addresses
            .insert(addr, (Owner::Local(slot, key), claim));
        // The kernel may give this address's datagrams to any shard's socket: every other
        // shard learns where they go (rare: once per PeerConnection and address).
        self.tell_others(|shard| ShardInput::AddressAt { addr, shard, claim });
    }

    /// `key` no longer answers `addr`; if it still held the address, it is free.
    pub fn forget_address(&mut self, addr: SocketAddr, key: HandleKey) {
        if let Some((Owner::Local(_, holder), claim)) = self.addresses.get(&addr).copied() {
            if holder == key {
                self.addresses.remove(&addr);
                self.tell_others(|shard| ShardInput::AddressGone { addr, shard, claim });
            }
        }
    }

    fn tell_others(&self, input: impl Fn(usize) -> ShardInput) {
        for (index, inbox) in self.shards.inboxes.iter().enumerate() {
            if index != self.index {
                let _ = inbox.send(input(self.index));
            }
        }
    }
}

struct RoomEntry {
    state: RoomState,
    shared: Arc<RoomShared>,
    /// Its entry in the shard's timer set.
    deadline: Option<Instant>,
    /// A join is being admitted: later inputs wait behind it, in order.
    admitting: bool,
    held: VecDeque<RoomInput>,
}

struct Shard {
    ctx: Arc<SfuContext>,
    net: Net,
    rooms: HashMap<RoomSlot, RoomEntry>,
    /// Each room's next timer.
    deadlines: BTreeSet<(Instant, RoomSlot)>,
    /// Rooms whose timers may have moved since they were last looked at.
    touched: Vec<RoomSlot>,
    /// Rooms given datagrams in this batch, to settle at its end.
    received: Vec<RoomSlot>,
}

impl Shard {
    fn new(ctx: Arc<SfuContext>, index: usize, socket: UdpSocket) -> Shard {
        let shards = ctx.shards.clone();
        Shard {
            ctx,
            net: Net {
                index,
                socket,
                shards,
                ufrags: HashMap::new(),
                addresses: HashMap::default(),
            },
            rooms: HashMap::new(),
            deadlines: BTreeSet::new(),
            touched: Vec::new(),
            received: Vec::new(),
        }
    }

    async fn run(mut self, queues: ShardQueues) {
        let ShardQueues {
            mut inbox,
            mut crossings,
        } = queues;
        let shutdown = self.ctx.shutdown.clone();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let far = Duration::from_secs(3600);
        let timer = tokio::time::sleep(far);
        tokio::pin!(timer);
        loop {
            // Timers first: under a steady stream of datagrams the socket is ready at every
            // turn, and the select below (biased, the timer last) would never reach them.
            self.reschedule();
            self.timeouts(Instant::now());
            self.reschedule();
            let next = self
                .deadlines
                .first()
                .map(|(at, _)| tokio::time::Instant::from_std(*at))
                .unwrap_or_else(|| tokio::time::Instant::now() + far);
            if timer.deadline() != next {
                timer.as_mut().reset(next);
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                input = inbox.recv() => {
                    let Some(input) = input else { break };
                    self.control(input);
                    while let Ok(input) = inbox.try_recv() {
                        self.control(input);
                    }
                }
                // Either source wakes the shard, and each turn reads a batch from both, so a
                // steady flow on one cannot starve the other.
                crossing = crossings.recv() => {
                    let Some(crossing) = crossing else { break };
                    self.dispatch(crossing.source, &crossing.data, crossing.received, true);
                    self.read_crossings(&mut crossings);
                    self.read_socket(&mut buf);
                    self.settle_received();
                }
                ready = self.net.socket.readable() => {
                    if ready.is_err() {
                        continue;
                    }
                    self.read_socket(&mut buf);
                    self.read_crossings(&mut crossings);
                    self.settle_received();
                }
                () = &mut timer => self.timeouts(Instant::now()),
            }
        }
        let slots: Vec<RoomSlot> = self.rooms.keys().copied().collect();
        for slot in slots {
            self.close(slot);
        }
    }

    /// Up to a batch of datagrams from the socket, without waiting.
    fn read_socket(&mut self, buf: &mut [u8]) {
        for _ in 0..READ_BATCH {
            match self.net.socket.try_recv_from(buf) {
                Ok((len, source)) => self.dispatch(source, &buf[..len], Instant::now(), false),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                // ICMP errors surface here on some systems (a peer's port closed): not ours.
                Err(_) => {}
            }
        }
    }

    /// Up to a batch of the datagrams other shards handed over, without waiting.
    fn read_crossings(&mut self, crossings: &mut mpsc::Receiver<Crossing>) {
        for _ in 0..READ_BATCH {
            let Ok(crossing) = crossings.try_recv() else {
                break;
            };
            self.dispatch(crossing.source, &crossing.data, crossing.received, true);
        }
    }

    /// Routes one datagram (see the module's comment); `crossed` if another shard read it
    /// (then it is not handed on again).
    fn dispatch(&mut self, source: SocketAddr, data: &[u8], received: Instant, crossed: bool) {
        match self.net.addresses.get(&source).map(|(owner, _)| *owner) {
            Some(Owner::Local(slot, key)) => {
                return self.deliver(slot, key, source, data, received)
            }
            Some(Owner::Shard(shard)) if !crossed => {
                return self.hand_over(shard, source, data, received)
            }
            _ => {}
        }
        let Some(ufrag) = stun_ufrag(data) else {
            self.ctx.metrics.media_unrouted.inc();
            return;
        };
        if let Some((slot, key)) = self.net.ufrags.get(&ufrag).copied() {
            return self.deliver(slot, key, source, data, received);
        }
        let owner = self.net.shards.ufrags.get(&ufrag).map(|shard| *shard);
        match owner {
            Some(shard) if shard != self.net.index && !crossed => {
                self.hand_over(shard, source, data, received)
            }
            _ => self.ctx.metrics.media_unrouted.inc(),
        }
    }

    fn deliver(
        &mut self,
        slot: RoomSlot,
        key: HandleKey,
        source: SocketAddr,
        data: &[u8],
        received: Instant,
    ) {
        let Some(entry) = self.rooms.get_mut(&slot) else {
            self.ctx.metrics.media_unrouted.inc();
            return;
        };
        entry.state.receive(key, source, data, received);
        if self.received.last() != Some(&slot) {
            self.received.push(slot);
        }
    }

    /// Sends what the datagrams of a batch caused, once per room.
    fn settle_received(&mut self) {
        self.received.sort_unstable();
        self.received.dedup();
        for slot in self.received.drain(..) {
            if let Some(entry) = self.rooms.get_mut(&slot) {
                entry.state.settle(&mut self.net);
                self.touched.push(slot);
            }
        }
    }

    fn hand_over(&self, shard: usize, source: SocketAddr, data: &[u8], received: Instant) {
        let crossing = Crossing {
            source,
            data: data.to_vec(),
            received,
        };
        if self.net.shards.crossings[shard].try_send(crossing).is_ok() {
            self.ctx.metrics.media_crossed.inc();
        } else {
            self.ctx.metrics.media_dropped.inc();
        }
    }

    fn control(&mut self, input: ShardInput) {
        match input {
            ShardInput::Open {
                slot,
                id,
                settings,
                shared,
            } => {
                let state = RoomState::new(self.ctx.clone(), slot, id, settings, shared.clone());
                self.rooms.insert(
                    slot,
                    RoomEntry {
                        state,
                        shared,
                        deadline: None,
                        admitting: false,
                        held: VecDeque::new(),
                    },
                );
            }
            ShardInput::Room { slot, input } => {
                let Some(entry) = self.rooms.get_mut(&slot) else {
                    return;
                };
                if entry.admitting {
                    // Still counted as pending: a slow lookup makes the gateway answer "busy"
                    // rather than let this queue grow.
                    entry.held.push_back(input);
                } else {
                    self.room_input(slot, input);
                }
            }
            ShardInput::Admitted {
                slot,
                input,
                admitted,
            } => {
                let Some(entry) = self.rooms.get_mut(&slot) else {
                    return;
                };
                entry.admitting = false;
                if self.apply(slot, input, Some(admitted)) {
                    return;
                }
                // What waited behind the join, until the next join that needs a lookup.
                while let Some(entry) = self.rooms.get_mut(&slot) {
                    if entry.admitting {
                        break;
                    }
                    let Some(input) = entry.held.pop_front() else {
                        break;
                    };
                    self.room_input(slot, input);
                }
            }
            ShardInput::Free { slot } => self.close(slot),
            ShardInput::AddressAt { addr, shard, claim } => {
                // The latest claim on an address wins, here as within a shard: a client
                // address reused (a NAT binding handed to someone else) while an older
                // PeerConnection from it waits for its ICE timeout must not keep the new
                // client's media, and two shards learning an address at once agree.
                let newer = self
                    .net
                    .addresses
                    .get(&addr)
                    .is_none_or(|(_, held)| *held < claim);
                if newer {
                    self.net
                        .addresses
                        .insert(addr, (Owner::Shard(shard), claim));
                }
            }
            ShardInput::AddressGone { addr, shard, claim } => {
                if self.net.addresses.get(&addr) == Some(&(Owner::Shard(shard), claim)) {
                    self.net.addresses.remove(&addr);
                }
            }
        }
    }

    /// Hands an input to its room, first looking up the admission of a join that needs one
    /// (beside the shard: the room and its media go on meanwhile, and the room's later
    /// inputs wait).
    fn room_input(&mut self, slot: RoomSlot, input: RoomInput) {
        let Some(entry) = self.rooms.get_mut(&slot) else {
            return;
        };
        if !input.is_control() {
            entry.shared.pending.fetch_sub(1, Ordering::Relaxed);
        }
        let Some(owner) = entry.state.admission(&input) else {
            self.apply(slot, input, None);
            return;
        };
        entry.admitting = true;
        let ctx = self.ctx.clone();
        let room = entry.state.id().clone();
        let inbox = self.net.shards.inboxes[self.net.index].clone();
        let lookup = self.ctx.tracker.track_future(async move {
            let admitted = admit(&ctx, &room, &owner).await;
            let _ = inbox.send(ShardInput::Admitted {
                slot,
                input,
                admitted,
            });
        });
        self.ctx.runtime.spawn(lookup);
    }

    /// Runs an input on its room; true if that destroyed it.
    fn apply(
        &mut self,
        slot: RoomSlot,
        input: RoomInput,
        admitted: Option<Result<Option<u64>, RoomError>>,
    ) -> bool {
        let Some(entry) = self.rooms.get_mut(&slot) else {
            return true;
        };
        let destroyed = entry.state.input(&mut self.net, input, admitted);
        self.touched.push(slot);
        if destroyed {
            self.close(slot);
        }
        destroyed
    }

    fn close(&mut self, slot: RoomSlot) {
        let Some(mut entry) = self.rooms.remove(&slot) else {
            return;
        };
        // The gateway's handle refuses from now on (its entry may outlive this a little, or,
        // if the room's last message to it was lost, until it looks).
        entry.shared.closed.store(true, Ordering::Relaxed);
        entry.state.close(&mut self.net);
        if let Some(at) = entry.deadline {
            self.deadlines.remove(&(at, slot));
        }
        self.net.shards.open_rooms[self.net.index].fetch_sub(1, Ordering::Relaxed);
    }

    /// Runs the timers of the rooms that are due.
    fn timeouts(&mut self, now: Instant) {
        while let Some((at, slot)) = self.deadlines.first().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(entry) = self.rooms.get_mut(&slot) {
                entry.deadline = None;
                entry.state.timeout(&mut self.net, now);
                self.touched.push(slot);
            }
        }
    }

    /// Moves the timers of the rooms touched since the last look.
    fn reschedule(&mut self) {
        if self.touched.is_empty() {
            return;
        }
        self.touched.sort_unstable();
        self.touched.dedup();
        for slot in self.touched.drain(..) {
            let Some(entry) = self.rooms.get_mut(&slot) else {
                continue;
            };
            let next = entry.state.poll_timeout();
            if next == entry.deadline {
                continue;
            }
            if let Some(at) = entry.deadline {
                self.deadlines.remove(&(at, slot));
            }
            if let Some(at) = next {
                self.deadlines.insert((at, slot));
            }
            entry.deadline = next;
        }
    }
}
