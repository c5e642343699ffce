//! A WebRTC peer for the SFU tests: a str0m `Rtc` (full ICE, as a browser) on its own UDP
//! socket on 127.0.0.1, driven in real time against the server's media port.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;

pub struct Peer {
    pub rtc: Rtc,
    socket: UdpSocket,
    addr: SocketAddr,
    next_timeout: Instant,
    pub connected: bool,
    pub video_packets: usize,
    pub audio_packets: usize,
}

impl Peer {
    pub async fn new() -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let now = Instant::now();
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true)
            .enable_vp8(true)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        Peer {
            rtc,
            socket,
            addr,
            next_timeout: now,
            connected: false,
            video_packets: 0,
            audio_packets: 0,
        }
    }

    /// A send-only audio + video offer (a publisher's).
    pub fn publisher_offer(&mut self) -> (String, SdpPendingOffer, Mid, Mid) {
        let mut api = self.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        (offer.to_sdp_string(), pending, audio, video)
    }

    pub fn accept_answer(&mut self, pending: SdpPendingOffer, sdp: &str) {
        let answer = SdpAnswer::from_sdp_string(sdp).unwrap();
        self.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    }

    pub fn accept_offer(&mut self, sdp: &str) -> String {
        let offer = SdpOffer::from_sdp_string(sdp).unwrap();
        self.rtc
            .sdp_api()
            .accept_offer(offer)
            .unwrap()
            .to_sdp_string()
    }

    /// Writes one VP8 packet (a keyframe header on the first) and one Opus packet.
    pub fn send(&mut self, audio: Mid, video: Mid, i: u64) {
        let now = Instant::now();
        let mut api = self.rtc.direct_api();
        let mut payload = vec![0x10, if i == 0 { 0x00 } else { 0x01 }, 0x9d, 0x01, 0x2a];
        payload.resize(300, i as u8);
        if let Some(stream) = api.stream_tx_by_mid(video, None) {
            stream.write_rtp(
                RtpWrite::new(96.into(), SeqNo::from(i), (i * 3000) as u32, now, payload)
                    .marker(true)
                    .nackable(true),
            );
        }
        if let Some(stream) = api.stream_tx_by_mid(audio, None) {
            stream.write_rtp(RtpWrite::new(
                111.into(),
                SeqNo::from(i),
                (i * 960) as u32,
                now,
                vec![7u8; 80],
            ));
        }
    }

    /// Runs the peer (its timers and its socket) until `done` holds or `limit` passes;
    /// returns whether `done` held.
    pub async fn drive_until(&mut self, limit: Duration, done: impl Fn(&Peer) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 2048];
        loop {
            self.drain().await;
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = self
                .next_timeout
                .min(deadline)
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
                Ok(Ok((n, source))) => {
                    if let Ok(receive) = Receive::new(Protocol::Udp, source, self.addr, &buf[..n]) {
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
                Ok(Output::Event(Event::RtpPacket(packet))) => {
                    if packet.header.payload_type == 111.into() {
                        self.audio_packets += 1;
                    } else {
                        self.video_packets += 1;
                    }
                }
                Ok(Output::Event(_)) => {}
                Err(_) => return,
            }
        }
    }
}
