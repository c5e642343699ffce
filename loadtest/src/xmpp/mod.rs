//! The `xmpp` scenario: N users log in (STARTTLS, SASL PLAIN, bind, presence), then send 1:1
//! chat messages to each other at an aggregate rate for a warm-up and a measured window.
//!
//! Shape, chosen so the tool is not what saturates:
//! - one reader task per connection (the minimum tokio needs to wait on each socket); it
//!   parses with the strict `StreamParser` and records into shared atomics and a few sharded
//!   histograms;
//! - one pacer task per runtime worker, each owning a fixed share of the senders and their
//!   write halves; every tick it formats all messages that came due into per-connection
//!   buffers (reused, so no allocation per message) and writes each touched connection once.
//!
//! Messages go to a random other user's full JID (learnt from bind), so delivery does not
//! depend on a server's bare-JID or presence rules. Accounting: `sent` counts messages sent
//! in the window; `delivered` counts those received once before the drain ends; latency is
//! recorded for them; `rate_per_s` counts messages received while the window was open.

pub mod body;
pub mod login;
mod rooms;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use xmpp_proto::xml::ns;
use xmpp_proto::{escape_attr, Event, Stanza, StreamParser};

use crate::pacing::{split_rate, Pacing, Rng};
use crate::procfs::{Process, Sample};
use crate::report::{new_histogram, ServerUsage, XmppReport};
use crate::users::User;
use body::{parse_payload, write_message, Payload};
use login::{Session, Target, Tls, READ_BUFFER};

/// Histogram shards (readers pick one by connection index); a few keep lock contention away.
const LATENCY_SHARDS: usize = 8;
/// Error texts kept for the report.
const MAX_ERROR_SAMPLES: usize = 5;
/// Idle time after the logins before measuring RSS, so presence and TLS buffers settle.
const SETTLE: Duration = Duration::from_secs(1);

/// How to run the scenario.
pub struct Options {
    /// Where to connect.
    pub target: Target,
    /// Aggregate messages per second.
    pub rate: f64,
    /// Measured window.
    pub duration: Duration,
    /// Unmeasured load before the window.
    pub warmup: Duration,
    /// Longest wait for in-flight messages after sending stops.
    pub drain: Duration,
    /// Logins in flight at once.
    pub login_concurrency: usize,
    /// The server process, for CPU and RSS.
    pub server: Option<Process>,
    /// Ask for server-side history (QuickBlox `extraParams/save_to_history`).
    pub save_history: bool,
    /// Group chat in rooms instead of 1:1 messages.
    pub rooms: Option<Rooms>,
    /// Fixed contacts per user (0: anyone).
    pub contacts: usize,
}

/// Rooms for group chat: user `i` is in room `i / size`.
#[derive(Debug, Clone)]
pub struct Rooms {
    /// Room bare JIDs.
    pub jids: Vec<String>,
    /// Occupants per room.
    pub size: usize,
}

/// Runs the scenario; errors only when setup fails (a user cannot log in).
pub async fn run(users: Vec<User>, options: Options) -> anyhow::Result<XmppReport> {
    anyhow::ensure!(
        users.len() >= 2,
        "need at least 2 users, the users file has {}",
        users.len()
    );
    let me = Process::current()?;
    let server = options.server.clone();
    let sample = |process: &Option<Process>| -> anyhow::Result<Option<Sample>> {
        process.as_ref().map(Process::sample).transpose()
    };

    // Login phase.
    let before_login = sample(&server)?;
    let login_started = Instant::now();
    let (mut sessions, login_us) = login_all(&users, &options).await?;
    if let Some(rooms) = &options.rooms {
        rooms::join_all(&mut sessions, &users, rooms).await?;
    }
    let login_wall_s = login_started.elapsed().as_secs_f64();
    let after_login = sample(&server)?;
    tokio::time::sleep(SETTLE).await;
    let settled = sample(&server)?;

    // Load phase.
    let n = sessions.len();
    let warmup_us = options.warmup.as_micros() as u64;
    let span = options.warmup + options.duration;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let groups: Vec<Vec<usize>> = (0..workers.min(n))
        .map(|group| (group..n).step_by(workers.min(n)).collect())
        .collect();
    let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
    let pacings: Vec<Pacing> = split_rate(options.rate, &sizes)
        .into_iter()
        .map(|rate| Pacing::new(rate, span))
        .collect();
    let capacity = pacings.iter().map(Pacing::total).sum::<u64>() as usize + 64;
    let shared = Arc::new(Shared {
        // A moment ahead, so every task is waiting when the first message is due.
        epoch: Instant::now() + Duration::from_millis(20),
        warmup_us,
        end_us: span.as_micros() as u64,
        seen: (0..capacity.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect(),
        next_seq: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        received_in_window: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        misrouted: AtomicU64::new(0),
        bounced: AtomicU64::new(0),
        stream_errors: AtomicU64::new(0),
        disconnects: AtomicU64::new(0),
        write_errors: AtomicU64::new(0),
        latency: (0..LATENCY_SHARDS)
            .map(|_| Mutex::new(new_histogram()))
            .collect(),
        error_samples: Mutex::new(Vec::new()),
        closing: AtomicBool::new(false),
        save_history: options.save_history,
        contacts: options.contacts.min(n - 1),
        rooms: options.rooms.as_ref().map(|r| {
            (
                r.jids.iter().map(|j| escape_attr(j).into_owned()).collect(),
                r.size,
            )
        }),
    });
    let cancel = CancellationToken::new();
    let mut conns = Vec::with_capacity(n);
    let mut jids = Vec::with_capacity(n);
    let mut readers = JoinSet::new();
    for (index, session) in sessions.into_iter().enumerate() {
        let Session { io, parser, jid } = session;
        let (read, write) = tokio::io::split(io);
        let conn = Arc::new(Conn {
            writer: tokio::sync::Mutex::new(write),
            dead: AtomicBool::new(false),
        });
        jids.push(escape_attr(&jid).into_owned());
        readers.spawn(reader(
            index,
            read,
            parser,
            shared.clone(),
            conn.clone(),
            cancel.clone(),
        ));
        conns.push(conn);
    }
    let conns = Arc::new(conns);
    let jids = Arc::new(jids);

    let mut pacers = JoinSet::new();
    for (group, (senders, pacing)) in groups.into_iter().zip(pacings).enumerate() {
        let seed = seed() ^ (group as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        pacers.spawn(pacer(
            shared.clone(),
            conns.clone(),
            jids.clone(),
            senders,
            pacing,
            Rng::new(seed),
        ));
    }

    tokio::time::sleep_until((shared.epoch + options.warmup).into()).await;
    let window_server = sample(&server)?;
    let window_me = me.sample()?;
    let mut sent = 0;
    while let Some(joined) = pacers.join_next().await {
        sent += joined.context("pacer task")?;
    }
    // Group chat: what is expected is a copy per occupant.
    if let Some(rooms) = &options.rooms {
        sent *= rooms.size as u64;
    }
    let drain_until = Instant::now() + options.drain;
    while shared.delivered.load(Ordering::Relaxed) < sent && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let end_server = sample(&server)?;
    let end_me = me.sample()?;

    // Tear down politely, so the server logs ordinary closes.
    shared.closing.store(true, Ordering::Relaxed);
    cancel.cancel();
    while readers.join_next().await.is_some() {}
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        for conn in conns.iter() {
            let mut writer = conn.writer.lock().await;
            let _ = writer.write_all(b"</stream:stream>").await;
            let _ = writer.shutdown().await;
        }
    })
    .await;

    let mut latency_us = new_histogram();
    for shard in &shared.latency {
        let shard = shard
            .lock()
            .expect("histogram lock is never held across a panic");
        latency_us
            .add(&*shard)
            .expect("histograms with the same bounds always merge");
    }
    let server_usage = match (
        &server,
        before_login,
        after_login,
        settled,
        window_server,
        end_server,
    ) {
        (Some(process), Some(before), Some(after), Some(settled), Some(start), Some(end)) => {
            Some(ServerUsage {
                cpu_s: process.cpu_between(start, end).as_secs_f64(),
                rss_kb: end.rss_kb,
                login_cpu_s: process.cpu_between(before, after).as_secs_f64(),
                rss_before_login_kb: before.rss_kb,
                rss_after_login_kb: settled.rss_kb,
            })
        }
        _ => None,
    };
    let samples = shared
        .error_samples
        .lock()
        .expect("sample lock is never held across a panic")
        .clone();
    for text in &samples {
        eprintln!("server error sample: {text}");
    }
    Ok(XmppReport {
        users: n,
        duration_s: options.duration.as_secs_f64(),
        warmup_s: options.warmup.as_secs_f64(),
        target_rate_per_s: options.rate,
        sent,
        delivered: shared.delivered.load(Ordering::Relaxed),
        duplicates: shared.duplicates.load(Ordering::Relaxed),
        misrouted: shared.misrouted.load(Ordering::Relaxed),
        bounced: shared.bounced.load(Ordering::Relaxed),
        received_in_window: shared.received_in_window.load(Ordering::Relaxed),
        latency_us,
        login_us,
        login_wall_s,
        server: server_usage,
        client_cpu_s: me.cpu_between(window_me, end_me).as_secs_f64(),
        stream_errors: shared.stream_errors.load(Ordering::Relaxed),
        disconnects: shared.disconnects.load(Ordering::Relaxed),
        write_errors: shared.write_errors.load(Ordering::Relaxed),
        error_samples: samples,
    })
}

/// Logs every user in, at most `login_concurrency` at once; the first failure aborts.
async fn login_all(
    users: &[User],
    options: &Options,
) -> anyhow::Result<(Vec<Session>, Histogram<u64>)> {
    let limit = Arc::new(Semaphore::new(options.login_concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (index, user) in users.iter().cloned().enumerate() {
        let (limit, target) = (limit.clone(), options.target.clone());
        tasks.spawn(async move {
            let _permit = limit
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let started = Instant::now();
            let result = login::login(&target, &user, &format!("lt{index}"))
                .await
                .with_context(|| format!("login of {} failed", user.jid));
            (index, started.elapsed(), result)
        });
    }
    let mut sessions: Vec<Option<Session>> = (0..users.len()).map(|_| None).collect();
    let mut histogram = new_histogram();
    while let Some(joined) = tasks.join_next().await {
        let (index, took, result) = joined.context("login task")?;
        match result {
            Ok(session) => sessions[index] = Some(session),
            Err(error) => {
                tasks.abort_all();
                return Err(error);
            }
        }
        histogram.saturating_record(took.as_micros() as u64);
    }
    Ok((sessions.into_iter().flatten().collect(), histogram))
}

/// State every task of a run shares.
struct Shared {
    epoch: Instant,
    warmup_us: u64,
    end_us: u64,
    /// One bit per sequence number: received yet?
    seen: Vec<AtomicU64>,
    next_seq: AtomicU64,
    delivered: AtomicU64,
    received_in_window: AtomicU64,
    duplicates: AtomicU64,
    misrouted: AtomicU64,
    bounced: AtomicU64,
    stream_errors: AtomicU64,
    disconnects: AtomicU64,
    write_errors: AtomicU64,
    latency: Vec<Mutex<Histogram<u64>>>,
    error_samples: Mutex<Vec<String>>,
    /// Set when we start closing, so our own closes are not counted as disconnects.
    closing: AtomicBool,
    /// Messages carry `save_to_history`.
    save_history: bool,
    /// Group chat: escaped room JIDs and the room size.
    rooms: Option<(Vec<String>, usize)>,
    /// Fixed contacts per user (0: anyone).
    contacts: usize,
}

impl Shared {
    fn now_us(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_micros() as u64
    }

    /// Marks `seq` received; false if it already was.
    fn first_sight(&self, seq: u64) -> bool {
        let Some(word) = self.seen.get((seq / 64) as usize) else {
            // Cannot happen (pacers stop at the schedule's total); count it as new.
            return true;
        };
        let bit = 1u64 << (seq % 64);
        word.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    fn error_sample(&self, text: &str) {
        let mut samples = self
            .error_samples
            .lock()
            .expect("sample lock is never held across a panic");
        if samples.len() < MAX_ERROR_SAMPLES {
            samples.push(text.chars().take(300).collect());
        }
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }
}

/// One user's write side.
struct Conn {
    writer: tokio::sync::Mutex<WriteHalf<Tls>>,
    /// A write failed; the pacer skips this sender.
    dead: AtomicBool,
}

/// Sends the messages of `senders` on `pacing`'s schedule; returns how many it sent in the
/// measured window.
async fn pacer(
    shared: Arc<Shared>,
    conns: Arc<Vec<Arc<Conn>>>,
    jids: Arc<Vec<String>>,
    senders: Vec<usize>,
    pacing: Pacing,
    mut rng: Rng,
) -> u64 {
    let n = conns.len();
    let mut buffers: Vec<Vec<u8>> = senders.iter().map(|_| Vec::with_capacity(512)).collect();
    let mut dirty: Vec<usize> = Vec::with_capacity(senders.len());
    let (mut next, mut sent_window, mut round_robin) = (0u64, 0u64, 0usize);
    tokio::time::sleep_until(shared.epoch.into()).await;
    loop {
        let elapsed = Instant::now().saturating_duration_since(shared.epoch);
        let due = pacing.due(elapsed);
        let sent_us = elapsed.as_micros() as u64;
        while next < due {
            next += 1;
            let local = round_robin;
            round_robin = (round_robin + 1) % senders.len();
            let from = senders[local];
            if conns[from].dead.load(Ordering::Relaxed) {
                continue;
            }
            let (to, to_jid, groupchat) = match &shared.rooms {
                Some((rooms, size)) => (from / size, &rooms[from / size], true),
                None => {
                    let to = if shared.contacts > 0 {
                        // One of the next `contacts` users, wrapping around.
                        let step = rng.other_than(0, shared.contacts + 1);
                        (from + step) % n
                    } else {
                        rng.other_than(from, n)
                    };
                    (to, &jids[to], false)
                }
            };
            let payload = Payload {
                seq: shared.next_seq.fetch_add(1, Ordering::Relaxed),
                sent_us,
                to_index: to as u32,
            };
            if buffers[local].is_empty() {
                dirty.push(local);
            }
            write_message(
                &mut buffers[local],
                to_jid,
                payload,
                shared.save_history,
                groupchat,
            );
            if sent_us >= shared.warmup_us {
                sent_window += 1;
            }
        }
        for local in dirty.drain(..) {
            let conn = &conns[senders[local]];
            let mut writer = conn.writer.lock().await;
            let written = match writer.write_all(&buffers[local]).await {
                Ok(()) => writer.flush().await,
                Err(error) => Err(error),
            };
            if let Err(error) = written {
                if !conn.dead.swap(true, Ordering::Relaxed) {
                    shared.write_errors.fetch_add(1, Ordering::Relaxed);
                    shared.error_sample(&format!("write to user {}: {error}", senders[local]));
                }
            }
            buffers[local].clear();
        }
        match pacing.deadline(next) {
            Some(at) => tokio::time::sleep_until((shared.epoch + at).into()).await,
            None => return sent_window,
        }
    }
}

/// Reads one user's stream until the run ends or the server closes it.
async fn reader(
    index: usize,
    mut io: ReadHalf<Tls>,
    mut parser: StreamParser,
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    cancel: CancellationToken,
) {
    let mut buf = vec![0u8; READ_BUFFER];
    let shard = &shared.latency[index % LATENCY_SHARDS];
    loop {
        loop {
            match parser.next_event() {
                Ok(Some(Event::Stanza(stanza))) => {
                    if !handle_stanza(index, stanza, &shared, shard, &conn).await {
                        return;
                    }
                }
                Ok(Some(Event::Close)) => {
                    if !shared.closing() {
                        shared.disconnects.fetch_add(1, Ordering::Relaxed);
                        shared.error_sample(&format!("user {index}: server closed the stream"));
                    }
                    return;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => {
                    shared.disconnects.fetch_add(1, Ordering::Relaxed);
                    shared.error_sample(&format!("user {index}: malformed XML: {error}"));
                    return;
                }
            }
        }
        let read = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            read = io.read(&mut buf) => read,
        };
        match read {
            Ok(0) | Err(_) if shared.closing() => return,
            Ok(0) => {
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
                shared.error_sample(&format!("user {index}: connection closed"));
                return;
            }
            Err(error) => {
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
                shared.error_sample(&format!("user {index}: read error: {error}"));
                return;
            }
            Ok(n) => parser.feed(&buf[..n]),
        }
    }
}

/// Accounts for one received stanza; false when the stream is over.
async fn handle_stanza(
    index: usize,
    stanza: Stanza,
    shared: &Shared,
    shard: &Mutex<Histogram<u64>>,
    conn: &Conn,
) -> bool {
    let envelope = stanza.envelope();
    match envelope.name.as_str() {
        "message" => {
            if envelope.stanza_type.as_deref() == Some("error") {
                shared.bounced.fetch_add(1, Ordering::Relaxed);
                shared.error_sample(stanza.as_str());
                return true;
            }
            let Some(payload) = parse_payload(stanza.as_str()) else {
                return true;
            };
            let now_us = shared.now_us();
            let (expected, copies) = match &shared.rooms {
                Some((_, size)) => (index / size, true),
                None => (index, false),
            };
            if payload.to_index as usize != expected {
                shared.misrouted.fetch_add(1, Ordering::Relaxed);
            }
            // In rooms every occupant gets a copy of each message: count copies, not messages.
            if !copies && !shared.first_sight(payload.seq) {
                shared.duplicates.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            if now_us >= shared.warmup_us && now_us < shared.end_us {
                shared.received_in_window.fetch_add(1, Ordering::Relaxed);
            }
            if payload.sent_us >= shared.warmup_us {
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                shard
                    .lock()
                    .expect("histogram lock is never held across a panic")
                    .saturating_record(now_us.saturating_sub(payload.sent_us).max(1));
            }
            true
        }
        "iq" if matches!(envelope.stanza_type.as_deref(), Some("get" | "set")) => {
            // Answer server pings (XEP-0199) so no server drops us as dead; refuse the rest.
            let id = escape_attr(envelope.id.as_deref().unwrap_or_default()).into_owned();
            let to = envelope
                .from
                .as_deref()
                .map(|from| format!(" to='{}'", escape_attr(from)))
                .unwrap_or_default();
            let reply = if stanza.as_str().contains("urn:xmpp:ping") {
                format!("<iq type='result' id='{id}'{to}/>")
            } else {
                format!(
                    "<iq type='error' id='{id}'{to}><error type='cancel'>\
                     <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
                     </error></iq>"
                )
            };
            let mut writer = conn.writer.lock().await;
            let _ = writer.write_all(reply.as_bytes()).await;
            let _ = writer.flush().await;
            true
        }
        "error" if envelope.namespace.as_deref() == Some(ns::STREAMS) => {
            shared.stream_errors.fetch_add(1, Ordering::Relaxed);
            shared.disconnects.fetch_add(1, Ordering::Relaxed);
            shared.error_sample(stanza.as_str());
            false
        }
        _ => true,
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}
