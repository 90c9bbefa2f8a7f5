//! The SFU core's datagram path (`Sfu::handle_datagram`: the address/ufrag demux, then str0m)
//! with two participants that really joined and connected (ICE, DTLS-SRTP, media flowing
//! from the first to the second), and their signalling beside it.
//!
//! Built from the crate's public API only, sans-IO: the network is a queue delivered
//! immediately, the clock moves in fixed steps.
//!
//! # Input format
//! A sequence of records `kind: u8, len: u16 (big-endian), payload: [u8; len]` (a short last
//! record takes what is left). By `kind % 6`:
//!
//! | kind | what happens |
//! | --- | --- |
//! | 0 | `payload` arrives from a stranger (a new address each time) |
//! | 1 | `payload` arrives from participant `payload[0] % 2`'s own address (spoofed), the rest as the datagram |
//! | 2 | a STUN binding request from a new address whose USERNAME names participant `payload[0] % 2`'s ufrag; `payload[1..]` follows it as the remote ufrag and further attributes |
//! | 3 | replay of a genuine datagram a participant sent while connecting (`payload[0]` picks it), from its own address (`payload[1]` even) or a new one, XOR `payload[4]` at position `payload[2..4]` |
//! | 4 | `payload` as a signalling text frame from participant 0 (parsed; sent to the core if valid) |
//! | 5 | time passes: `payload[0]` × 10 ms (at most 20 s per input) |
//!
//! At the end both participants disconnect, and the core must then hold no participant and
//! no room: hostile input must not leave state behind.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};
use veche_proto::{ClientMessage, PROTOCOL_VERSION, ParticipantId, ServerMessage, TrackKind};
use veche_sfu::{Limits, Output, Sfu, SfuConfig};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const STEP: Duration = Duration::from_millis(10);
/// Upper bound on datagrams and messages exchanged while settling after one input: the
/// exchange is finite, this only stops a livelock from hanging the fuzzer.
const SETTLE_LIMIT: usize = 10_000;
/// Records taken from one input: keeps one iteration short.
const MAX_RECORDS: usize = 64;
/// Clock steps one input may ask for (kind 5): 20 s of simulated time.
const MAX_STEPS: u32 = 2_000;

fn server_addr() -> SocketAddr {
    SocketAddr::new(LOCALHOST, 7882)
}

struct Client {
    id: ParticipantId,
    addr: SocketAddr,
    rtc: Rtc,
    /// Our send-only m-lines, from the offers.
    publish: Vec<(TrackKind, Mid)>,
    /// The ufrag the SFU put in its offer to us.
    server_ufrag: Option<String>,
    answered: bool,
    connected: bool,
    outbox: Vec<ClientMessage>,
    seq: u64,
}

/// A core with two connected participants in one room.
pub struct Harness {
    start: Instant,
    now: Instant,
    sfu: Sfu,
    clients: Vec<Client>,
    /// Genuine datagrams the clients sent, by client index.
    sent: Vec<(usize, Vec<u8>)>,
    next_port: u16,
    /// Clock steps left for this input.
    steps_left: u32,
}

impl Harness {
    /// Joins two participants and runs until both are connected and the first one's media
    /// has reached the SFU.
    pub fn connected() -> Harness {
        let now = Instant::now();
        let config = SfuConfig {
            media_bind: server_addr(),
            ice_tcp_port: None,
            public_ips: vec![LOCALHOST],
            limits: Limits::default(),
            resume_key: veche_sfu::ResumeKey::random(),
        };
        let mut h = Harness {
            start: now,
            now,
            sfu: Sfu::new(config, now),
            clients: Vec::new(),
            sent: Vec::new(),
            next_port: 50_000,
            steps_left: MAX_STEPS,
        };
        for id in 1..=2 {
            let addr = SocketAddr::new(LOCALHOST, 40_000 + id as u16);
            let mut rtc = Rtc::builder()
                .set_rtp_mode(true)
                .clear_codecs()
                .enable_opus(true, false)
                .enable_vp8(true)
                .build(now);
            // The address is a valid host candidate: cannot fail.
            rtc.add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"));
            h.clients.push(Client {
                id,
                addr,
                rtc,
                publish: Vec::new(),
                server_ufrag: None,
                answered: false,
                connected: false,
                outbox: Vec::new(),
                seq: 0,
            });
            let join = ClientMessage::Join {
                version: PROTOCOL_VERSION,
                room: "fuzz".into(),
                name: format!("p{id}"),
                passcode: None,
                resume: None,
                e2ee: false,
                require_e2ee: false,
            };
            h.signal(id, join);
        }
        for _ in 0..500 {
            if h.clients.iter().all(|c| c.connected) {
                break;
            }
            h.step();
        }
        assert!(
            h.clients.iter().all(|c| c.connected),
            "harness: participants did not connect"
        );
        for _ in 0..10 {
            h.write_media(0);
            h.step();
        }
        assert!(
            h.sfu.counters().forwarded_packets > 0,
            "harness: no media forwarded from the first participant to the second"
        );
        h
    }

    fn unix_ms(&self) -> u64 {
        1_800_000_000_000 + self.now.duration_since(self.start).as_millis() as u64
    }

    fn signal(&mut self, id: ParticipantId, msg: ClientMessage) {
        let ms = self.unix_ms();
        self.sfu.handle_command(self.now, ms, id, msg.into());
        self.settle();
    }

    fn stranger(&mut self) -> SocketAddr {
        self.next_port = self.next_port.wrapping_add(1).max(1024);
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)), self.next_port)
    }

    fn datagram(&mut self, from: SocketAddr, data: &[u8]) {
        self.sfu
            .handle_datagram(self.now, from, server_addr(), data);
        self.settle();
    }

    /// Moves the clock one step and runs everyone's timers.
    fn step(&mut self) {
        self.now += STEP;
        self.sfu.handle_timeout(self.now);
        for c in &mut self.clients {
            let _ = c.rtc.handle_input(Input::Timeout(self.now));
        }
        self.settle();
    }

    /// Client `idx` writes one audio and one video packet (if it publishes them yet).
    fn write_media(&mut self, idx: usize) {
        let now = self.now;
        let c = &mut self.clients[idx];
        for (kind, mid) in c.publish.clone() {
            let Some(pt) = c
                .rtc
                .media(mid)
                .and_then(|m| m.remote_pts().first().copied())
            else {
                continue;
            };
            c.seq += 1;
            let mut payload = vec![0xab; if kind == TrackKind::Audio { 60 } else { 600 }];
            payload[0] = 0x10; // VP8 payload descriptor: start of partition.
            let mut api = c.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else {
                continue;
            };
            tx.write_rtp(
                RtpWrite::new(pt, c.seq.into(), (c.seq * 960) as u32, now, payload)
                    .marker(true)
                    .nackable(kind.is_video()),
            );
        }
        let _ = c.rtc.handle_input(Input::Timeout(now));
        self.settle();
    }

    /// Delivers everything in flight, in rounds, until nobody has anything to say.
    fn settle(&mut self) {
        let mut budget = SETTLE_LIMIT;
        loop {
            let mut to_clients = Vec::new();
            loop {
                match self.sfu.poll_output() {
                    Output::Timeout(_) => break,
                    Output::Transmit(d) => to_clients.push((d.destination, d.contents)),
                    Output::Signal(id, msg) => {
                        if let Some(c) = self.clients.iter_mut().find(|c| c.id == id) {
                            c.handle_signal(msg);
                        }
                    }
                    Output::Close(_) | Output::Event(_) => {}
                }
                budget = budget.saturating_sub(1);
                if budget == 0 {
                    return;
                }
            }
            for (to, data) in &to_clients {
                if let Some(c) = self.clients.iter_mut().find(|c| c.addr == *to)
                    && let Ok(contents) = DatagramRecv::try_from(data.as_slice())
                {
                    let input = Input::Receive(
                        self.now,
                        Receive {
                            proto: Protocol::Udp,
                            source: server_addr(),
                            destination: c.addr,
                            contents,
                        },
                    );
                    let _ = c.rtc.handle_input(input);
                }
            }
            let mut to_sfu = Vec::new();
            let mut messages = Vec::new();
            for (idx, c) in self.clients.iter_mut().enumerate() {
                c.drain(&mut to_sfu, idx);
                messages.extend(c.outbox.drain(..).map(|m| (c.id, m)));
            }
            if to_sfu.is_empty() && messages.is_empty() && to_clients.is_empty() {
                return;
            }
            for (idx, data) in to_sfu {
                let from = self.clients[idx].addr;
                self.sfu
                    .handle_datagram(self.now, from, server_addr(), &data);
                if self.sent.len() < 256 {
                    self.sent.push((idx, data));
                }
                budget = budget.saturating_sub(1);
            }
            for (id, msg) in messages {
                let ms = self.unix_ms();
                self.sfu.handle_command(self.now, ms, id, msg.into());
            }
            if budget == 0 {
                return;
            }
        }
    }

    /// Applies one record (see the module docs).
    fn apply(&mut self, kind: u8, payload: &[u8]) {
        let arg = payload.first().copied().unwrap_or(0);
        let rest = payload.get(1..).unwrap_or(&[]);
        match kind % 6 {
            0 => {
                let from = self.stranger();
                self.datagram(from, payload);
            }
            1 => {
                let from = self.clients[usize::from(arg % 2)].addr;
                self.datagram(from, rest);
            }
            2 => {
                let idx = usize::from(arg % 2);
                let ufrag = self.clients[idx].server_ufrag.clone().unwrap_or_default();
                let from = self.stranger();
                self.datagram(from, &binding_request(&ufrag, rest));
            }
            3 => {
                if self.sent.is_empty() {
                    return;
                }
                let (idx, mut data) = self.sent[usize::from(arg) % self.sent.len()].clone();
                let at = payload
                    .get(2..4)
                    .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
                if let (Some(x), Some(byte)) = (payload.get(4), data.get_mut(usize::from(at))) {
                    *byte ^= x;
                }
                let from = if payload.get(1).is_none_or(|b| b % 2 == 0) {
                    self.clients[idx].addr
                } else {
                    self.stranger()
                };
                self.datagram(from, &data);
            }
            4 => {
                if let Ok(text) = std::str::from_utf8(payload)
                    && let Ok(msg) = veche_proto::ClientMessage::parse(text)
                {
                    let id = self.clients[0].id;
                    self.signal(id, msg);
                }
            }
            _ => {
                let steps = u32::from(arg).min(self.steps_left);
                self.steps_left -= steps;
                for _ in 0..steps {
                    self.step();
                }
            }
        }
    }

    /// Both participants leave; the core must forget them and their room.
    fn finish(mut self) {
        for id in self.clients.iter().map(|c| c.id).collect::<Vec<_>>() {
            self.sfu.handle_disconnect(self.now, id);
            self.settle();
            assert!(
                !self.sfu.has_participant(id),
                "participant {id} outlived its disconnect"
            );
        }
        assert_eq!(self.sfu.participant_count(), 0, "participants left behind");
        assert_eq!(self.sfu.room_count(), 0, "a room outlived everyone in it");
    }
}

impl Client {
    fn handle_signal(&mut self, msg: ServerMessage) {
        if let ServerMessage::Offer { sdp } = msg {
            if let Some(ufrag) = sdp.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")) {
                self.server_ufrag = Some(ufrag.trim().to_owned());
            }
            let Ok(offer) = SdpOffer::from_sdp_string(&sdp) else {
                return;
            };
            let Ok(answer) = self.rtc.sdp_api().accept_offer(offer) else {
                return;
            };
            self.outbox.push(ClientMessage::Answer {
                sdp: answer.to_sdp_string(),
            });
            if !self.answered && self.id == 1 {
                self.answered = true;
                for kind in [TrackKind::Audio, TrackKind::Video] {
                    self.outbox.push(ClientMessage::SetMedia {
                        kind,
                        enabled: true,
                    });
                }
            }
        }
    }

    fn drain(&mut self, to_sfu: &mut Vec<(usize, Vec<u8>)>, idx: usize) {
        while let Ok(out) = self.rtc.poll_output() {
            match out {
                RtcOutput::Timeout(_) => return,
                RtcOutput::Transmit(t) => to_sfu.push((idx, t.contents.into())),
                RtcOutput::Event(Event::Connected) => self.connected = true,
                RtcOutput::Event(Event::MediaAdded(m)) if m.direction == Direction::SendOnly => {
                    let kind = match m.kind {
                        MediaKind::Audio => TrackKind::Audio,
                        MediaKind::Video => TrackKind::Video,
                    };
                    if !self.publish.iter().any(|(k, _)| *k == kind) {
                        self.publish.push((kind, m.mid));
                    }
                }
                RtcOutput::Event(_) => {}
            }
        }
    }
}

/// A STUN binding request (RFC 8489) whose USERNAME is `local:` followed by `rest` up to its
/// first zero byte; what follows the zero byte is appended as further (raw) attributes.
pub fn binding_request(local: &str, rest: &[u8]) -> Vec<u8> {
    let (remote, extra) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let mut username = format!("{local}:").into_bytes();
    username.extend_from_slice(remote);
    username.truncate(512);
    let mut body = Vec::new();
    body.extend_from_slice(&0x0006u16.to_be_bytes());
    body.extend_from_slice(&(username.len() as u16).to_be_bytes());
    body.extend_from_slice(&username);
    body.resize(body.len().div_ceil(4) * 4, 0);
    body.extend_from_slice(&extra[..extra.len().min(1024)]);
    let mut d = vec![0x00, 0x01];
    d.extend_from_slice(&(body.len() as u16).to_be_bytes());
    d.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    d.extend_from_slice(b"veche-fuzz-t");
    d.extend_from_slice(&body);
    d
}

/// Splits `data` into records (see the module docs).
pub fn records(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&kind, after) = rest.split_first()?;
        let len = match after {
            [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
            _ => 0,
        };
        let body = after.get(2..).unwrap_or(&[]);
        let len = len.min(body.len());
        rest = &body[len..];
        Some((kind, &body[..len]))
    })
    .take(MAX_RECORDS)
}

/// Encodes one record (for the corpus generator).
pub fn record(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut r = vec![kind];
    r.extend_from_slice(&len.to_be_bytes());
    r.extend_from_slice(&payload[..usize::from(len)]);
    r
}

pub fn run(data: &[u8]) {
    let mut h = Harness::connected();
    for (kind, payload) in records(data) {
        h.apply(kind, payload);
    }
    h.finish();
}
