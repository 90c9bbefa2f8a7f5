//! A deterministic harness for the sans-IO core: the [`Sfu`] and str0m client peers exchange
//! datagrams through a simulated network whose clock only moves to the next pending event.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};
use veche_proto::{ClientMessage, PROTOCOL_VERSION, ParticipantId, ServerMessage, TrackKind};
use veche_sfu::{JoinGrant, JoinRequest, Limits, Output, Sfu, SfuConfig, SfuEvent};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LATENCY: Duration = Duration::from_millis(2);
const AUDIO_EVERY: Duration = Duration::from_millis(20);
const VIDEO_EVERY: Duration = Duration::from_millis(33);

pub fn server_addr() -> SocketAddr {
    SocketAddr::new(LOCALHOST, 7882)
}

enum Hop {
    ToSfu { from: SocketAddr, data: Vec<u8> },
    ToClient { to: SocketAddr, data: Vec<u8> },
}

/// What one client received from one remote track.
#[derive(Debug, Default, Clone)]
pub struct TrackStats {
    pub packets: u64,
    /// Packets whose payload counter was not exactly one more than the previous one.
    pub out_of_order: u64,
    /// Packets whose payload named another sender or kind than the mid they came on.
    pub misattributed: u64,
    last_counter: Option<u64>,
}

pub struct Client {
    pub id: ParticipantId,
    pub name: String,
    /// Where its datagrams come from, as the SFU sees them.
    pub addr: SocketAddr,
    /// Its own socket address (its host candidate): differs from `addr` behind a NAT.
    local: SocketAddr,
    rtc: Rtc,
    /// Every signalling message received, in order.
    pub inbox: Vec<ServerMessage>,
    /// Our publish slots, from the first offer's send-only m-lines.
    publish: Vec<(TrackKind, Mid)>,
    /// Remote tracks by the mid they arrive on, from `track_published`.
    mids: HashMap<Mid, (ParticipantId, TrackKind)>,
    pub received: HashMap<(ParticipantId, TrackKind), TrackStats>,
    pub keyframe_requests: u64,
    pub sending: bool,
    pub sharing_screen: bool,
    answered_first_offer: bool,
    counters: [u64; 3],
    next_audio: Instant,
    next_video: Instant,
    next_timeout: Instant,
    outbox: Vec<ClientMessage>,
    pub connected: bool,
}

impl Client {
    pub fn stats(&self, from: ParticipantId, kind: TrackKind) -> TrackStats {
        self.received
            .get(&(from, kind))
            .cloned()
            .unwrap_or_default()
    }

    pub fn saw(&self, pred: impl Fn(&ServerMessage) -> bool) -> bool {
        self.inbox.iter().any(pred)
    }

    fn handle_signal(&mut self, now: Instant, msg: ServerMessage) {
        match &msg {
            ServerMessage::TrackPublished {
                participant_id,
                kind,
                mid,
            } => {
                self.mids
                    .insert(Mid::from(mid.as_str()), (*participant_id, *kind));
            }
            ServerMessage::Offer { sdp } => {
                let offer = SdpOffer::from_sdp_string(sdp).expect("server offer parses");
                let answer = self
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .expect("client accepts offer");
                self.outbox.push(ClientMessage::Answer {
                    sdp: answer.to_sdp_string(),
                });
                if !self.answered_first_offer {
                    self.answered_first_offer = true;
                    self.outbox.push(ClientMessage::SetMedia {
                        kind: TrackKind::Audio,
                        enabled: true,
                    });
                    self.outbox.push(ClientMessage::SetMedia {
                        kind: TrackKind::Video,
                        enabled: true,
                    });
                    self.sending = true;
                    self.next_audio = now;
                    self.next_video = now;
                }
            }
            _ => {}
        }
        self.inbox.push(msg);
    }

    fn send_media(&mut self, now: Instant) {
        if !self.sending {
            return;
        }
        if now >= self.next_audio {
            self.next_audio = now + AUDIO_EVERY;
            self.write(now, TrackKind::Audio, 1);
        }
        if now >= self.next_video {
            self.next_video = now + VIDEO_EVERY;
            self.write(now, TrackKind::Video, 3);
            if self.sharing_screen {
                self.write(now, TrackKind::Screen, 2);
            }
        }
    }

    fn write(&mut self, now: Instant, kind: TrackKind, packets: usize) {
        let Some(&(_, mid)) = self.publish.iter().find(|(k, _)| *k == kind) else {
            return;
        };
        let Some(pt) = self
            .rtc
            .media(mid)
            .and_then(|m| m.remote_pts().first().copied())
        else {
            return;
        };
        let slot = kind_index(kind);
        for i in 0..packets {
            self.counters[slot] += 1;
            let counter = self.counters[slot];
            let mut payload = Vec::with_capacity(64);
            payload.extend_from_slice(&self.id.to_le_bytes());
            payload.push(slot as u8);
            payload.extend_from_slice(&counter.to_le_bytes());
            payload.resize(if kind == TrackKind::Audio { 60 } else { 900 }, 0xab);
            let rtp_time = (counter * if kind == TrackKind::Audio { 960 } else { 1000 }) as u32;
            let mut api = self.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else {
                return;
            };
            tx.write_rtp(
                RtpWrite::new(pt, counter.into(), rtp_time, now, payload)
                    .marker(i + 1 == packets)
                    .nackable(kind.is_video()),
            );
        }
    }

    fn on_rtp(&mut self, mid: Option<Mid>, payload: &[u8]) {
        let Some(mid) = mid else { return };
        let Some(&(from, kind)) = self.mids.get(&mid) else {
            return;
        };
        let stats = self.received.entry((from, kind)).or_default();
        stats.packets += 1;
        if payload.len() < 17 {
            stats.misattributed += 1;
            return;
        }
        let sender = u64::from_le_bytes(payload[0..8].try_into().unwrap());
        let slot = payload[8] as usize;
        let counter = u64::from_le_bytes(payload[9..17].try_into().unwrap());
        if sender != from || slot != kind_index(kind) {
            stats.misattributed += 1;
        }
        if let Some(last) = stats.last_counter
            && counter != last + 1
        {
            stats.out_of_order += 1;
        }
        stats.last_counter = Some(counter);
    }
}

fn kind_index(kind: TrackKind) -> usize {
    match kind {
        TrackKind::Audio => 0,
        TrackKind::Video => 1,
        TrackKind::Screen => 2,
    }
}

pub struct Sim {
    pub now: Instant,
    start: Instant,
    pub sfu: Sfu,
    pub clients: Vec<Client>,
    in_flight: Vec<(Instant, Hop)>,
    sfu_timeout: Instant,
    next_id: ParticipantId,
    /// What the core reported for the server to store.
    pub events: Vec<SfuEvent>,
    /// Participants whose signalling connection the core closed, in order.
    pub closed: Vec<ParticipantId>,
}

impl Sim {
    pub fn new(limits: Limits) -> Sim {
        let now = Instant::now();
        let config = SfuConfig {
            media_bind: server_addr(),
            ice_tcp_port: None,
            public_ips: vec![LOCALHOST],
            limits,
        };
        Sim {
            now,
            start: now,
            sfu: Sfu::new(config, now),
            clients: Vec::new(),
            in_flight: Vec::new(),
            sfu_timeout: now,
            next_id: 1,
            events: Vec::new(),
            closed: Vec::new(),
        }
    }

    /// Adds a client and sends its join. Returns its index in `clients`.
    pub fn join(&mut self, room: &str, name: &str) -> usize {
        let idx = self.add_client(name);
        self.send(
            idx,
            ClientMessage::Join {
                version: PROTOCOL_VERSION,
                room: room.into(),
                name: name.into(),
                passcode: None,
            },
        );
        idx
    }

    /// Adds a client whose join the server authorised with `grant`.
    pub fn join_with(&mut self, room: &str, name: &str, grant: JoinGrant) -> usize {
        let idx = self.add_client(name);
        let id = self.clients[idx].id;
        let ms = self.unix_ms();
        self.sfu.handle_join(
            self.now,
            ms,
            id,
            JoinRequest {
                version: PROTOCOL_VERSION,
                room: room.into(),
                name: name.into(),
                grant,
            },
        );
        self.settle();
        idx
    }

    /// The simulated wall clock.
    pub fn unix_ms(&self) -> u64 {
        1_700_000_000_000 + self.now.duration_since(self.start).as_millis() as u64
    }

    fn add_client(&mut self, name: &str) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        let addr = SocketAddr::new(LOCALHOST, 40_000 + id as u16);
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"));
        self.clients.push(Client {
            id,
            name: name.into(),
            addr,
            local: addr,
            rtc,
            inbox: Vec::new(),
            publish: Vec::new(),
            mids: HashMap::new(),
            received: HashMap::new(),
            keyframe_requests: 0,
            sending: false,
            sharing_screen: false,
            answered_first_offer: false,
            counters: [0; 3],
            next_audio: self.now,
            next_video: self.now,
            next_timeout: self.now,
            outbox: Vec::new(),
            connected: false,
        });
        self.clients.len() - 1
    }

    /// Sends a signalling message from client `idx` right now.
    pub fn send(&mut self, idx: usize, msg: ClientMessage) {
        let id = self.clients[idx].id;
        let ms = self.unix_ms();
        self.sfu.handle_command(self.now, ms, id, msg.into());
        self.settle();
    }

    /// Client `idx` starts or stops sharing its screen.
    pub fn share_screen(&mut self, idx: usize, on: bool) {
        self.clients[idx].sharing_screen = on;
        self.send(
            idx,
            ClientMessage::SetMedia {
                kind: TrackKind::Screen,
                enabled: on,
            },
        );
    }

    /// Client `idx`'s datagrams come from `addr` from now on, and the network delivers to it
    /// there (a NAT rebinding: the client itself does not know).
    pub fn relocate(&mut self, idx: usize, addr: SocketAddr) {
        let old = self.clients[idx].addr;
        self.clients[idx].addr = addr;
        for (_, hop) in &mut self.in_flight {
            if let Hop::ToClient { to, .. } = hop
                && *to == old
            {
                *to = addr;
            }
        }
    }

    /// Moves the clock without running anyone (benchmarks: time passes, nobody is polled).
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Stops every client's own media clock (benchmarks drive packets by hand).
    pub fn quiet(&mut self) {
        for c in &mut self.clients {
            c.sending = false;
        }
    }

    /// Has client `idx` write `n` video packets and returns the datagrams it sends, without
    /// delivering them.
    pub fn capture_video(&mut self, idx: usize, n: usize) -> Vec<Vec<u8>> {
        let now = self.now;
        let c = &mut self.clients[idx];
        let mut hops = Vec::new();
        for _ in 0..n {
            c.write(now, TrackKind::Video, 1);
            let _ = c.rtc.handle_input(Input::Timeout(now));
            drain_client(now, c, &mut hops);
        }
        hops.into_iter()
            .filter_map(|(_, hop)| match hop {
                Hop::ToSfu { data, .. } => Some(data),
                Hop::ToClient { .. } => None,
            })
            .collect()
    }

    /// Delivers datagrams from client `idx` to the SFU in batches of `batch` (as the driver
    /// does with what one socket wake-up reads), draining and dropping what it sends after
    /// each batch. Returns the number of datagrams the SFU sent. Never inlined: the
    /// `forward_instructions` bench counts instructions inside it by name.
    #[inline(never)]
    pub fn feed_sfu(&mut self, idx: usize, datagrams: &[Vec<u8>], batch: usize) -> usize {
        let from = self.clients[idx].addr;
        let mut sent = 0;
        for chunk in datagrams.chunks(batch.max(1)) {
            for d in chunk {
                self.sfu.handle_datagram(self.now, from, server_addr(), d);
            }
            loop {
                match self.sfu.poll_output() {
                    Output::Timeout(_) => break,
                    Output::Transmit(_) => sent += 1,
                    _ => {}
                }
            }
        }
        sent
    }

    /// The client's signalling connection drops.
    pub fn disconnect(&mut self, idx: usize) {
        let id = self.clients[idx].id;
        self.clients[idx].sending = false;
        self.sfu.handle_disconnect(self.now, id);
        self.settle();
    }

    /// Advances simulated time by `d`, processing every event on the way in time order.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = self.next_event().min(end);
            self.now = self.now.max(next);
            self.step();
            if self.now >= end {
                return;
            }
        }
    }

    fn next_event(&self) -> Instant {
        let mut t = self.sfu_timeout;
        for (at, _) in &self.in_flight {
            t = t.min(*at);
        }
        for c in &self.clients {
            t = t.min(c.next_timeout);
            if c.sending {
                t = t.min(c.next_audio).min(c.next_video);
            }
        }
        // Never stand still: a timeout in the past is handled in this step.
        t.max(self.now)
    }

    fn step(&mut self) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.in_flight = later;
        for (_, hop) in due {
            match hop {
                Hop::ToSfu { from, data } => {
                    self.sfu.handle_datagram(now, from, server_addr(), &data);
                }
                Hop::ToClient { to, data } => {
                    if let Some(c) = self.clients.iter_mut().find(|c| c.addr == to)
                        && let Ok(contents) = DatagramRecv::try_from(data.as_slice())
                    {
                        let input = Input::Receive(
                            now,
                            Receive {
                                proto: Protocol::Udp,
                                source: server_addr(),
                                destination: c.local,
                                contents,
                            },
                        );
                        let _ = c.rtc.handle_input(input);
                        // str0m holds one received RTP packet for the next poll: drain
                        // before feeding the next datagram or packets are lost.
                        drain_client(now, c, &mut self.in_flight);
                    }
                }
            }
        }
        if self.sfu_timeout <= now {
            self.sfu.handle_timeout(now);
        }
        for c in &mut self.clients {
            c.send_media(now);
            if c.next_timeout <= now || c.sending {
                let _ = c.rtc.handle_input(Input::Timeout(now));
            }
        }
        self.settle();
    }

    /// Drains every output until nothing happens without time passing.
    fn settle(&mut self) {
        loop {
            let mut progressed = false;
            loop {
                match self.sfu.poll_output() {
                    Output::Timeout(t) => {
                        self.sfu_timeout = t;
                        break;
                    }
                    Output::Transmit(d) => self.in_flight.push((
                        self.now + LATENCY,
                        Hop::ToClient {
                            to: d.destination,
                            data: d.contents,
                        },
                    )),
                    Output::Signal(id, msg) => {
                        if let Some(c) = self.clients.iter_mut().find(|c| c.id == id) {
                            c.handle_signal(self.now, msg);
                            progressed = true;
                        }
                    }
                    Output::Close(id) => self.closed.push(id),
                    Output::Event(e) => self.events.push(e),
                }
            }
            for c in &mut self.clients {
                drain_client(self.now, c, &mut self.in_flight);
            }
            let mut pending = Vec::new();
            for c in &mut self.clients {
                for msg in c.outbox.drain(..) {
                    pending.push((c.id, msg));
                }
            }
            if !pending.is_empty() {
                progressed = true;
            }
            for (id, msg) in pending {
                let ms = self.now.duration_since(self.start).as_millis() as u64;
                self.sfu.handle_command(self.now, ms, id, msg.into());
            }
            if !progressed {
                return;
            }
        }
    }
}

fn drain_client(now: Instant, c: &mut Client, in_flight: &mut Vec<(Instant, Hop)>) {
    loop {
        let Ok(out) = c.rtc.poll_output() else {
            return;
        };
        match out {
            RtcOutput::Timeout(t) => {
                c.next_timeout = t;
                return;
            }
            RtcOutput::Transmit(t) => in_flight.push((
                now + LATENCY,
                Hop::ToSfu {
                    from: c.addr,
                    data: t.contents.into(),
                },
            )),
            RtcOutput::Event(e) => match e {
                Event::Connected => c.connected = true,
                Event::MediaAdded(m) if m.direction == Direction::SendOnly => {
                    let taken = |k| c.publish.iter().any(|(pk, _)| *pk == k);
                    let kind = match m.kind {
                        MediaKind::Audio => TrackKind::Audio,
                        MediaKind::Video if !taken(TrackKind::Video) => TrackKind::Video,
                        MediaKind::Video => TrackKind::Screen,
                    };
                    c.publish.push((kind, m.mid));
                }
                Event::RtpPacket(p) => {
                    let mid = c
                        .rtc
                        .direct_api()
                        .stream_rx(&p.header.ssrc)
                        .map(|s| s.mid());
                    c.on_rtp(mid, &p.payload);
                }
                Event::KeyframeRequest(_) => c.keyframe_requests += 1,
                _ => {}
            },
        }
    }
}
