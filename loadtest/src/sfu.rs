//! `switchboard-loadtest sfu`: conference rooms over the Janus API, the way the QuickBlox
//! client uses them: every participant publishes one audio and one video stream and subscribes
//! to every other feed with a PeerConnection of its own (the legacy single-feed form). Clients
//! are str0m peers in RTP mode sending synthetic VP8 and Opus packets (nothing is encoded), each
//! carrying its send time, so the receivers measure forwarding latency and loss.
//!
//! `--mode janus`: numeric rooms made with `create` (works against stock Janus).
//! `--mode quickblox`: dialog rooms; `--users-file` lists `dialog_id user_id token` per line
//! (participants in file order, `--participants` per room).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::procfs::Process;
use crate::report::{new_histogram, percentiles_ms};

/// Audio packets per second per publisher (20 ms Opus frames).
const AUDIO_PPS: u64 = 50;
const VIDEO_BYTES: usize = 1000;
/// Bytes of VP8 before a video packet's send time: the payload descriptor (start of partition
/// 0) and a frame header (RFC 7741 / RFC 6386 §9.1): a keyframe's carries the start code and a
/// 640x480 size, which servers that look for keyframes (Janus, for simulcast) check.
const VP8_PREFIX: usize = 11;

fn vp8_prefix(keyframe: bool) -> [u8; VP8_PREFIX] {
    if keyframe {
        [
            0x10, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01,
        ]
    } else {
        [0x10, 0x11, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0]
    }
}

/// Simulcast layers, top first; layer `i` sends every `4^i`-th video packet.
const LAYERS: [&str; 3] = ["h", "m", "l"];
const AUDIO_BYTES: usize = 100;

/// What one run is.
pub struct SfuOptions {
    pub janus: String,
    pub quickblox: bool,
    pub rooms: usize,
    pub participants: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub users_file: Option<PathBuf>,
    pub token: Option<String>,
    pub server_pid: Option<u32>,
    /// The local address the clients bind and announce (loopback or a test host's).
    pub bind_ip: std::net::IpAddr,
    /// Video bitrate per publisher, in 1,000-byte packets (500 kbit/s: 62 packets/s).
    pub video_kbps: u64,
    /// Publishers send their video as three simulcast layers (rids h, m, l: the full rate, a
    /// quarter, a sixteenth) and subscribers pin the top one (`substream` 2, Janus's default),
    /// so both servers forward the same packets; `sent` counts the top layer's.
    pub simulcast: bool,
}

const WARMUP: u8 = 0;
const MEASURING: u8 = 1;
const DRAINING: u8 = 2;
const DONE: u8 = 3;

/// What every client task shares.
struct Shared {
    epoch: Instant,
    phase: AtomicU8,
    window: Mutex<Option<(u64, u64)>>,
    sent: AtomicU64,
    delivered: AtomicU64,
    egress_now: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    join: Mutex<Histogram<u64>>,
    first_frame: Mutex<Histogram<u64>>,
    bind_ip: std::net::IpAddr,
    video_pps: u64,
    simulcast: bool,
}

impl Shared {
    fn micros_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    fn micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn in_window(&self, sent_at: u64) -> bool {
        matches!(*self.window.lock().expect("not poisoned"), Some((from, to)) if sent_at >= from && sent_at < to)
    }
}

/// One participant's identity in its room.
#[derive(Clone)]
struct Seat {
    room: Value,
    id: u64,
    token: Option<String>,
}

pub async fn run(options: SfuOptions) -> anyhow::Result<Value> {
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        phase: AtomicU8::new(WARMUP),
        window: Mutex::new(None),
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        egress_now: AtomicU64::new(0),
        latency: Mutex::new(new_histogram()),
        join: Mutex::new(new_histogram()),
        first_frame: Mutex::new(new_histogram()),
        bind_ip: options.bind_ip,
        video_pps: (options.video_kbps * 1000 / 8 / VIDEO_BYTES as u64).max(1),
        simulcast: options.simulcast,
    });
    let seats = seats(&options).await?;
    let total = seats.len();
    let (ready_tx, mut ready_rx) = mpsc::channel::<anyhow::Result<()>>(total.max(1));
    let mut tasks = Vec::new();
    for (index, seat) in seats.iter().enumerate() {
        let others: Vec<u64> = seats
            .iter()
            .filter(|s| s.room == seat.room && s.id != seat.id)
            .map(|s| s.id)
            .collect();
        let shared = shared.clone();
        let url = options.janus.clone();
        let seat = seat.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = participant(shared, url, seat, others, ready.clone()).await {
                let _ = ready
                    .send(Err(error.context(format!("participant {index}"))))
                    .await;
            }
        }));
    }
    drop(ready_tx);
    // Every participant connected and subscribed to every other feed.
    for _ in 0..total {
        match tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(error))) => return Err(error),
            Ok(None) => bail!("a participant ended before it was ready"),
            Err(_) => bail!("participants not ready within 60 s"),
        }
    }
    eprintln!(
        "sfu: {total} participants in {} rooms ready; warming up",
        options.rooms
    );
    tokio::time::sleep(options.warmup).await;
    let process = options.server_pid.map(Process::new).transpose()?;
    let cpu_before = process.as_ref().map(|p| p.sample()).transpose()?;
    let from = shared.micros();
    *shared.window.lock().expect("not poisoned") = Some((from, u64::MAX));
    shared.phase.store(MEASURING, Ordering::Relaxed);
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < options.duration {
        tokio::time::sleep(
            Duration::from_secs(1).min(options.duration.saturating_sub(started.elapsed())),
        )
        .await;
        let egress = shared.egress_now.load(Ordering::Relaxed);
        eprintln!(
            "sfu: {:>5.1} s  egress {:>8} pkt/s",
            started.elapsed().as_secs_f64(),
            egress - last
        );
        last = egress;
    }
    let to = shared.micros();
    *shared.window.lock().expect("not poisoned") = Some((from, to));
    shared.phase.store(DRAINING, Ordering::Relaxed);
    let cpu_after = process.as_ref().map(|p| p.sample()).transpose()?;
    // Late packets of the window still count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    shared.phase.store(DONE, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let duration_s = (to - from) as f64 / 1e6;
    let sent = shared.sent.load(Ordering::Relaxed);
    let delivered = shared.delivered.load(Ordering::Relaxed);
    let expected: u64 = sent;
    let loss_pct = if expected == 0 {
        0.0
    } else {
        100.0 * (1.0 - delivered as f64 / expected as f64).max(0.0)
    };
    let mut report = json!({
        "scenario": "sfu",
        "rooms": options.rooms,
        "participants": options.participants,
        "video_kbps": options.video_kbps,
        "duration_s": duration_s,
        "sent": sent,
        "delivered": delivered,
        "loss_pct": loss_pct,
        "rate_per_s": delivered as f64 / duration_s,
        "latency_ms": percentiles_ms(&shared.latency.lock().expect("not poisoned"), &[("p50", 50.0), ("p99", 99.0), ("max", 100.0)]),
        "join_ms": percentiles_ms(&shared.join.lock().expect("not poisoned"), &[("p50", 50.0), ("p95", 95.0)]),
        "first_frame_ms": percentiles_ms(&shared.first_frame.lock().expect("not poisoned"), &[("p50", 50.0), ("p95", 95.0)]),
    });
    if let (Some(process), Some(before), Some(after)) = (&process, cpu_before, cpu_after) {
        let cpu_s = process.cpu_between(before, after).as_secs_f64();
        report["server_cpu_s"] = json!(cpu_s);
        report["server_cpu_us_per_unit"] = json!(if delivered == 0 {
            0.0
        } else {
            cpu_s * 1e6 / delivered as f64
        });
        report["server_rss_mb"] = json!(after.rss_kb as f64 / 1024.0);
    }
    Ok(report)
}

/// The participants: numeric rooms made now (janus), or dialog seats from the users file.
async fn seats(options: &SfuOptions) -> anyhow::Result<Vec<Seat>> {
    if options.quickblox {
        let path = options.users_file.as_ref().ok_or_else(|| {
            anyhow!("--mode quickblox needs --users-file (dialog_id user_id token per line)")
        })?;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut seats = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.split_whitespace();
            let (Some(room), Some(id), Some(token)) = (parts.next(), parts.next(), parts.next())
            else {
                bail!("bad users-file line {line:?}: want `dialog_id user_id token`");
            };
            seats.push(Seat {
                room: Value::from(room),
                id: id.parse().context("user id")?,
                token: Some(token.to_string()),
            });
        }
        let wanted = options.rooms * options.participants;
        if seats.len() < wanted {
            bail!(
                "the users file has {} seats; {wanted} are needed",
                seats.len()
            );
        }
        seats.truncate(wanted);
        return Ok(seats);
    }
    let mut admin = Janus::connect(&options.janus, options.token.as_deref()).await?;
    admin.create_session().await?;
    let handle = admin.attach().await?;
    let mut seats = Vec::new();
    for r in 0..options.rooms {
        let room = 900_000 + r as u64 + (std::process::id() as u64 % 1000) * 1000;
        let reply = admin
            .request(
                json!({"janus": "message", "body": {"request": "create", "room": room, "publishers": options.participants, "bitrate": 0}}),
                Some(handle),
            )
            .await?;
        let data = &reply["plugindata"]["data"];
        if data["videoroom"] != "created" && data["error_code"] != 427 {
            bail!("creating room {room}: {reply}");
        }
        for p in 0..options.participants {
            seats.push(Seat {
                room: Value::from(room),
                id: (r * options.participants + p + 1) as u64,
                token: options.token.clone(),
            });
        }
    }
    Ok(seats)
}

async fn participant(
    shared: Arc<Shared>,
    url: String,
    seat: Seat,
    others: Vec<u64>,
    ready: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let mut janus = Janus::connect(&url, seat.token.as_deref()).await?;
    janus.create_session().await?;
    let main = janus.attach().await?;
    let asked = Instant::now();
    let joined = janus
        .message(main, json!({"request": "join", "room": seat.room, "ptype": "publisher", "id": seat.id, "display": format!("load{}", seat.id)}), None)
        .await?;
    if joined.0["videoroom"] != "joined" {
        bail!("join: {}", joined.0);
    }
    record(&shared.join, asked.elapsed());
    let mut publisher = Client::new(shared.bind_ip).await?;
    let (offer, pending, audio, video) = {
        let mut api = publisher.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let layers = shared.simulcast.then(|| {
            let mut simulcast = Simulcast::new();
            for rid in LAYERS {
                simulcast.add_send_layer(SimulcastLayer::new(rid));
            }
            simulcast
        });
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, layers);
        let (offer, pending) = api.apply().ok_or_else(|| anyhow!("no offer"))?;
        (offer, pending, audio, video)
    };
    let (_, jsep) = janus
        .message(
            main,
            json!({"request": "configure", "audio": true, "video": true}),
            Some(json!({"type": "offer", "sdp": offer.to_sdp_string()})),
        )
        .await?;
    let answer = jsep.ok_or_else(|| anyhow!("configure: no answer"))?;
    let answer = SdpAnswer::from_sdp_string(answer["sdp"].as_str().unwrap_or_default())?;
    publisher.rtc.sdp_api().accept_answer(pending, answer)?;
    // The publisher sends from its own task from now on.
    let publishing = tokio::spawn(publish(shared.clone(), publisher, audio, video));
    let mut subscribers = Vec::new();
    for feed in others {
        // A feed is announced after its publisher's media is up: retry "no such feed".
        let started = Instant::now();
        let (handle, offer) = loop {
            let handle = janus.attach().await?;
            let (data, jsep) = janus
                .message(handle, json!({"request": "join", "room": seat.room, "ptype": "subscriber", "feed": feed}), None)
                .await?;
            match jsep {
                Some(jsep) => break (handle, jsep),
                None if data["error_code"] == 428
                    && started.elapsed() < Duration::from_secs(30) =>
                {
                    let _ = janus
                        .request(json!({"janus": "detach"}), Some(handle))
                        .await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => bail!("subscribe to {feed}: {data}"),
            }
        };
        let mut client = Client::new(shared.bind_ip).await?;
        let answer = client
            .rtc
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(
                offer["sdp"].as_str().unwrap_or_default(),
            )?)?;
        let (data, _) = janus
            .message(
                handle,
                json!({"request": "start", "room": seat.room}),
                Some(json!({"type": "answer", "sdp": answer.to_sdp_string()})),
            )
            .await?;
        if data["started"] != "ok" {
            bail!("start {feed}: {data}");
        }
        if shared.simulcast {
            // The top layer, as Janus gives by default: both servers forward the same.
            let (data, _) = janus
                .message(
                    handle,
                    json!({"request": "configure", "substream": 2}),
                    None,
                )
                .await?;
            if data["configured"] != "ok" {
                bail!("configure substream {feed}: {data}");
            }
        }
        subscribers.push(tokio::spawn(subscribe(
            shared.clone(),
            client,
            Instant::now(),
        )));
    }
    let _ = ready.send(Ok(())).await;
    // Keepalives until the run is over (janus.js sends one every 25 s).
    while shared.phase.load(Ordering::Relaxed) != DONE {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if janus.last_keepalive.elapsed() > Duration::from_secs(25) {
            janus.request(json!({"janus": "keepalive"}), None).await?;
            janus.last_keepalive = Instant::now();
        }
    }
    let _ = publishing.await;
    for subscriber in subscribers {
        let _ = subscriber.await;
    }
    Ok(())
}

fn record(histogram: &Mutex<Histogram<u64>>, elapsed: Duration) {
    let _ = histogram
        .lock()
        .expect("not poisoned")
        .record((elapsed.as_micros() as u64).max(1));
}

/// Sends video and audio packets at their rates; a keyframe when asked.
async fn publish(shared: Arc<Shared>, mut client: Client, audio: Mid, video: Mid) {
    let start = Instant::now();
    let (mut video_seq, mut audio_seq) = (0u64, 0u64);
    // Per layer (one without simulcast): its next sequence number, and whether its next
    // packet is a keyframe.
    let layers: Vec<Option<Rid>> = if shared.simulcast {
        LAYERS.iter().map(|rid| Some(Rid::from(*rid))).collect()
    } else {
        vec![None]
    };
    let mut layer_seq = vec![0u64; layers.len()];
    let mut keyframe = vec![true; layers.len()];
    while shared.phase.load(Ordering::Relaxed) != DONE {
        let elapsed = start.elapsed().as_micros() as u64;
        let due_video = elapsed * shared.video_pps / 1_000_000;
        let due_audio = elapsed * AUDIO_PPS / 1_000_000;
        if client.connected {
            while video_seq < due_video {
                for (index, rid) in layers.iter().enumerate() {
                    // Layer i sends every 4^i-th packet: a quarter of the rate of the one above.
                    if video_seq % 4u64.pow(index as u32) != 0 {
                        continue;
                    }
                    let key = std::mem::take(&mut keyframe[index]);
                    let mut payload = vp8_prefix(key).to_vec();
                    payload.extend_from_slice(&shared.micros().to_be_bytes());
                    payload.resize(VIDEO_BYTES, 0);
                    client.write(
                        video,
                        *rid,
                        96,
                        layer_seq[index],
                        (video_seq * 3000) as u32,
                        payload,
                        true,
                    );
                    layer_seq[index] += 1;
                    if index == 0 {
                        // Subscribers get the top layer (or the only one).
                        count_sent(&shared);
                    }
                }
                video_seq += 1;
            }
            while audio_seq < due_audio {
                let mut payload = shared.micros().to_be_bytes().to_vec();
                payload.resize(AUDIO_BYTES, 0);
                client.write(
                    audio,
                    None,
                    111,
                    audio_seq,
                    (audio_seq * 960) as u32,
                    payload,
                    false,
                );
                audio_seq += 1;
                count_sent(&shared);
            }
        } else {
            video_seq = due_video;
            audio_seq = due_audio;
        }
        client.drive(Duration::from_millis(5)).await;
        if client.keyframe_requests > 0 {
            client.keyframe_requests = 0;
            keyframe.iter_mut().for_each(|k| *k = true);
        }
    }
}

/// One sent packet counts once per subscriber that should get it; the receivers' count is the
/// delivered side. (`sent` is multiplied by the audience in `count_sent`.)
fn count_sent(shared: &Shared) {
    if shared.phase.load(Ordering::Relaxed) == MEASURING {
        shared
            .sent
            .fetch_add(AUDIENCE.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Subscribers per feed (participants per room − 1), set before the run.
pub static AUDIENCE: AtomicU64 = AtomicU64::new(0);

async fn subscribe(shared: Arc<Shared>, mut client: Client, joined: Instant) {
    let mut first = true;
    while shared.phase.load(Ordering::Relaxed) != DONE {
        client.drive(Duration::from_millis(20)).await;
        if first && client.received > 0 {
            first = false;
            record(&shared.first_frame, joined.elapsed());
        }
        // Each packet's latency runs to when its datagram was read, not to now: the driving
        // loop above may have waited up to 20 ms since.
        for (sent_at, received) in client.sent_times.drain(..) {
            let now = shared.micros_at(received);
            shared.egress_now.fetch_add(1, Ordering::Relaxed);
            if shared.in_window(sent_at) {
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                let _ = shared
                    .latency
                    .lock()
                    .expect("not poisoned")
                    .record(now.saturating_sub(sent_at).max(1));
            }
        }
    }
}

/// A str0m peer on its own UDP socket.
struct Client {
    rtc: Rtc,
    socket: UdpSocket,
    addr: SocketAddr,
    next_timeout: Instant,
    connected: bool,
    received: u64,
    /// Send times carried by the packets received, with when each datagram was read.
    sent_times: Vec<(u64, Instant)>,
    keyframe_requests: u32,
    buf: Vec<u8>,
}

impl Client {
    async fn new(ip: std::net::IpAddr) -> anyhow::Result<Client> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let addr = socket.local_addr()?;
        let now = Instant::now();
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true)
            .enable_vp8(true)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp")?);
        Ok(Client {
            rtc,
            socket,
            addr,
            next_timeout: now,
            connected: false,
            received: 0,
            sent_times: Vec::new(),
            keyframe_requests: 0,
            buf: vec![0; 2048],
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        mid: Mid,
        rid: Option<Rid>,
        pt: u8,
        seq: u64,
        timestamp: u32,
        payload: Vec<u8>,
        video: bool,
    ) {
        let mut api = self.rtc.direct_api();
        if let Some(stream) = api.stream_tx_by_mid(mid, rid) {
            stream.write_rtp(
                RtpWrite::new(
                    pt.into(),
                    SeqNo::from(seq),
                    timestamp,
                    Instant::now(),
                    payload,
                )
                .marker(video)
                .nackable(video),
            );
        }
    }

    /// Runs timers and the socket for up to `limit`.
    async fn drive(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            self.drain().await;
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let wait = self
                .next_timeout
                .min(deadline)
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            match tokio::time::timeout(wait, self.socket.recv_from(&mut self.buf)).await {
                Ok(Ok((n, source))) => {
                    if let Ok(receive) =
                        Receive::new(Protocol::Udp, source, self.addr, &self.buf[..n])
                    {
                        let _ = self
                            .rtc
                            .handle_input(Input::Receive(Instant::now(), receive));
                    }
                }
                Ok(Err(_)) => {}
                Err(_) => {
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                }
            }
        }
    }

    async fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    self.next_timeout = at;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(Event::Connected)) => self.connected = true,
                Ok(Output::Event(Event::KeyframeRequest(_))) => self.keyframe_requests += 1,
                Ok(Output::Event(Event::RtpPacket(packet))) => {
                    self.received += 1;
                    let payload = &packet.payload;
                    // Video carries a VP8 prefix before the send time.
                    let at = if packet.header.payload_type == 111.into() {
                        0
                    } else {
                        VP8_PREFIX
                    };
                    if let Some(bytes) = payload.get(at..at + 8) {
                        self.sent_times.push((
                            u64::from_be_bytes(bytes.try_into().expect("8 bytes")),
                            packet.timestamp,
                        ));
                    }
                }
                Ok(Output::Event(_)) => {}
                Err(_) => return,
            }
        }
    }
}

/// A Janus API client over WebSocket: replies by transaction.
struct Janus {
    out: mpsc::Sender<String>,
    waiting: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Value>>>>,
    session: Option<u64>,
    next: u64,
    last_keepalive: Instant,
}

impl Janus {
    async fn connect(url: &str, token: Option<&str>) -> anyhow::Result<Janus> {
        let full = match token {
            // `ws://h:p/?token=…`: the path stays (without it the request target is not a URI).
            Some(token) => {
                let (base, query) = url.split_once('?').unwrap_or((url, ""));
                let authority_only = base
                    .split_once("://")
                    .is_some_and(|(_, rest)| !rest.contains('/'));
                let slash = if authority_only { "/" } else { "" };
                let query = if query.is_empty() {
                    String::new()
                } else {
                    format!("{query}&")
                };
                format!("{base}{slash}?{query}token={token}")
            }
            None => url.to_string(),
        };
        let mut request = full.as_str().into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let host = request
            .uri()
            .authority()
            .ok_or_else(|| anyhow!("no host in {url}"))?
            .to_string();
        let tcp = tokio::net::TcpStream::connect(&host)
            .await
            .with_context(|| format!("connecting to {host}"))?;
        let (socket, _) = match tokio_tungstenite::client_async(request, tcp).await {
            Ok(connected) => connected,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                bail!("{url}: HTTP {}: {body}", response.status());
            }
            Err(error) => return Err(error.into()),
        };
        let (mut sink, mut stream) = socket.split();
        let (out, mut out_rx) = mpsc::channel::<String>(256);
        tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
        });
        let waiting: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Value>>>> = Arc::default();
        let routes = waiting.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Message::Text(text) = frame else { continue };
                let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if let Some(tx) = message["transaction"].as_str() {
                    if let Some(route) = routes.lock().expect("not poisoned").get(tx) {
                        let _ = route.send(message);
                    }
                }
            }
        });
        Ok(Janus {
            out,
            waiting,
            session: None,
            next: 0,
            last_keepalive: Instant::now(),
        })
    }

    async fn send(
        &mut self,
        mut body: Value,
        handle: Option<u64>,
    ) -> anyhow::Result<mpsc::UnboundedReceiver<Value>> {
        self.next += 1;
        let transaction = format!("lt{}", self.next);
        body["transaction"] = transaction.clone().into();
        if let Some(session) = self.session {
            body["session_id"] = session.into();
        }
        if let Some(handle) = handle {
            body["handle_id"] = handle.into();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.waiting
            .lock()
            .expect("not poisoned")
            .insert(transaction, tx);
        self.out
            .send(body.to_string())
            .await
            .map_err(|_| anyhow!("the WebSocket closed"))?;
        Ok(rx)
    }

    /// A request's first reply.
    async fn request(&mut self, body: Value, handle: Option<u64>) -> anyhow::Result<Value> {
        let mut replies = self.send(body, handle).await?;
        tokio::time::timeout(Duration::from_secs(30), replies.recv())
            .await
            .map_err(|_| anyhow!("no reply in 30 s"))?
            .ok_or_else(|| anyhow!("the WebSocket closed"))
    }

    async fn create_session(&mut self) -> anyhow::Result<()> {
        let reply = self.request(json!({"janus": "create"}), None).await?;
        self.session = Some(
            reply["data"]["id"]
                .as_u64()
                .ok_or_else(|| anyhow!("create: {reply}"))?,
        );
        Ok(())
    }

    async fn attach(&mut self) -> anyhow::Result<u64> {
        let reply = self
            .request(
                json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
                None,
            )
            .await?;
        reply["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("attach: {reply}"))
    }

    /// An asynchronous plugin request: its ack, then its event (data and JSEP).
    async fn message(
        &mut self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<(Value, Option<Value>)> {
        let mut request = json!({"janus": "message", "body": body});
        if let Some(jsep) = jsep {
            request["jsep"] = jsep;
        }
        let mut replies = self.send(request, Some(handle)).await?;
        loop {
            let reply = tokio::time::timeout(Duration::from_secs(30), replies.recv())
                .await
                .map_err(|_| anyhow!("no event in 30 s"))?
                .ok_or_else(|| anyhow!("the WebSocket closed"))?;
            match reply["janus"].as_str() {
                Some("ack") => continue,
                Some("event") => {
                    let jsep = reply.get("jsep").cloned();
                    return Ok((reply["plugindata"]["data"].clone(), jsep));
                }
                Some("success") => return Ok((reply["plugindata"]["data"].clone(), None)),
                _ => bail!("{reply}"),
            }
        }
    }
}
