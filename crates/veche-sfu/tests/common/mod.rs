//! A deterministic harness for the sans-IO core: the [`Sfu`] and str0m client peers exchange
//! datagrams through a simulated network whose clock only moves to the next pending event.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};
use veche_proto::{
    ClientMessage, PROTOCOL_VERSION, ParticipantId, ServerMessage, TrackKind, VideoSize,
};
use veche_sfu::{JoinGrant, JoinRequest, Limits, Output, Sfu, SfuConfig, SfuEvent};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LATENCY: Duration = Duration::from_millis(2);

/// libwebrtc's sender honours at most one keyframe request per video send stream this often
/// (`EncoderRtcpFeedback`, 300 ms), whatever the layer asked for.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);
const AUDIO_EVERY: Duration = Duration::from_millis(20);
/// How often an Opus encoder in DTX sends while its microphone hears silence.
const DTX_EVERY: Duration = Duration::from_millis(400);
const VIDEO_EVERY: Duration = Duration::from_millis(33);

/// The simulcast layers a client sends its camera in (the SFU's RIDs), and how many
/// packets of what size each layer's frames take (~100, ~290 and ~580 kbit/s at 30 fps).
pub const RIDS: [&str; 3] = ["q", "h", "f"];
const LAYER_PACKETS: [usize; 3] = [2, 3, 4];
const LAYER_PAYLOAD: [usize; 3] = [200, 400, 600];
/// The frame size each layer's keyframes announce.
const LAYER_SIZE: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];

/// Every payload starts like a VP8 one: a 4-byte payload descriptor (X, S on a frame's
/// first packet, a 15-bit picture id), then 10 bytes that on a keyframe's first packet are
/// the keyframe header (frame tag, start code, size); then the test's own fields.
const PREFIX: usize = 14;

/// A `video_sizes` that renders only `of`'s camera, `width` × `height`.
pub fn camera_tile(of: ParticipantId, width: u32, height: u32) -> ClientMessage {
    ClientMessage::VideoSizes {
        sizes: vec![VideoSize {
            participant_id: of,
            kind: TrackKind::Video,
            width,
            height,
        }],
    }
}

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
    /// Packets whose payload counter was not exactly one more than the previous one of the
    /// same layer.
    pub out_of_order: u64,
    /// Packets whose payload named another sender or kind than the mid they came on.
    pub misattributed: u64,
    last_counter: Option<u64>,
    /// Packets per simulcast layer.
    pub per_layer: [u64; 3],
    /// The layer of the latest packet.
    pub layer: Option<u8>,
    /// When a packet of each layer last arrived.
    pub layer_at: [Option<Instant>; 3],
    /// Changes of layer, and those whose first packet was not a keyframe's first.
    pub switches: u64,
    pub bad_switches: u64,
    /// Switches right after a hole in the sequence, which may have held the keyframe's start.
    pub unjudged_switches: u64,
    /// Keyframes received (their first packets).
    pub keyframes: u64,
    /// Packets whose (rewritten) sequence number was not one more than the previous one.
    pub seq_gaps: u64,
    last_seq: Option<u64>,
    /// Frames whose (rewritten) VP8 picture id was not one more than the previous frame's.
    pub picture_id_jumps: u64,
    last_picture_id: Option<u16>,
    /// When the latest packet arrived.
    pub last_at: Option<Instant>,
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
    /// Keyframe requests per simulcast layer of the camera.
    pub keyframe_requests_by_layer: [u64; 3],
    /// Layers whose next frame is a keyframe (the first, and after a request).
    keyframe_due: [[bool; 3]; 3],
    /// When each slot last honoured a keyframe request. Like libwebrtc's sender, a slot
    /// honours one request per [`KEYFRAME_REQUEST_INTERVAL`] for all its layers together and
    /// drops the others.
    keyframe_honoured: [Option<Instant>; 3],
    /// Requests dropped that way.
    pub keyframe_requests_dropped: u64,
    pub sending: bool,
    /// The camera layers encoded: all until the server's `layers_wanted` says otherwise.
    pub camera_layers: [bool; 3],
    pub sharing_screen: bool,
    /// The RFC 6464 level its audio packets carry, in dBov (0 loudest, -127 silence); none
    /// when `None`.
    pub audio_level: Option<i8>,
    /// Its microphone hears silence and its Opus encoder is in DTX: a small packet every
    /// 400 ms instead of one every 20 ms.
    pub silent: bool,
    answered_first_offer: bool,
    /// Per slot and layer: packets sent (the RTP sequence number and payload counter).
    counters: [[u64; 3]; 3],
    /// Per slot: frames sent (timestamps and picture ids).
    frames: [u64; 3],
    next_audio: Instant,
    next_video: Instant,
    next_timeout: Instant,
    outbox: Vec<ClientMessage>,
    pub connected: bool,
    /// A capped downlink: datagrams to this client leave a bottleneck queue at this rate.
    pub downlink: Option<Downlink>,
}

/// A bottleneck in front of one client, like `tc tbf`: datagrams queue behind each other at
/// `bits_per_second`, and one that would wait longer than `max_queue` is dropped.
#[derive(Debug, Clone, Copy)]
pub struct Downlink {
    pub bits_per_second: u64,
    pub max_queue: Duration,
    /// Bytes that pass at once after the link was idle (a tbf bucket's `burst`): a short
    /// burst of packets gets through at the sender's rate, however far over the link's.
    pub burst_bytes: u64,
    /// When the queue is empty again.
    free_at: Instant,
    pub dropped: u64,
    /// Bytes (with IP and UDP headers) the bottleneck has let through.
    pub passed_bytes: u64,
}

impl Downlink {
    pub fn new(bits_per_second: u64, now: Instant) -> Downlink {
        Downlink {
            bits_per_second,
            max_queue: Duration::from_millis(200),
            burst_bytes: 0,
            free_at: now,
            dropped: 0,
            passed_bytes: 0,
        }
    }

    /// When a datagram of `len` bytes sent `now` arrives, or `None` if the queue drops it.
    fn pass(&mut self, now: Instant, len: usize) -> Option<Instant> {
        // The bucket's tokens are time the link was idle, up to the burst's worth: the
        // packet's turn may come that long before `now`.
        let credit = Duration::from_micros(self.burst_bytes * 8 * 1_000_000 / self.bits_per_second);
        let start = self.free_at.max(now.checked_sub(credit).unwrap_or(now));
        if start.saturating_duration_since(now) > self.max_queue {
            self.dropped += 1;
            return None;
        }
        // 28 bytes of IPv4 and UDP headers.
        let wire = Duration::from_micros((len as u64 + 28) * 8 * 1_000_000 / self.bits_per_second);
        self.free_at = start + wire;
        self.passed_bytes += len as u64 + 28;
        Some(self.free_at.max(now) + LATENCY)
    }
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

    /// Asks the SFU for a keyframe of `from`'s `kind` track, as a browser does when its
    /// decoder cannot go on (a PLI). Returns false when that track does not arrive here.
    pub fn request_keyframe(&mut self, from: ParticipantId, kind: TrackKind) -> bool {
        let Some(mid) = self
            .mids
            .iter()
            .find(|(_, track)| **track == (from, kind))
            .map(|(mid, _)| *mid)
        else {
            return false;
        };
        let mut api = self.rtc.direct_api();
        let Some(rx) = api.stream_rx_by_mid(mid, None) else {
            return false;
        };
        rx.request_keyframe(KeyframeRequestKind::Pli);
        true
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
            ServerMessage::LayersWanted {
                kind: TrackKind::Video,
                rids,
            } => {
                for (layer, rid) in RIDS.iter().enumerate() {
                    let on = rids.iter().any(|r| r == rid);
                    // A layer turned back on starts with a keyframe, as an encoder does.
                    if on && !self.camera_layers[layer] {
                        self.keyframe_due[kind_index(TrackKind::Video)][layer] = true;
                    }
                    self.camera_layers[layer] = on;
                }
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
            self.next_audio = now + if self.silent { DTX_EVERY } else { AUDIO_EVERY };
            self.write(now, TrackKind::Audio, 0, 1);
        }
        if now >= self.next_video {
            self.next_video = now + VIDEO_EVERY;
            // The camera in every simulcast layer the answer set up (one stream without).
            for (layer, packets) in LAYER_PACKETS.into_iter().enumerate() {
                if self.camera_layers[layer] {
                    self.write(now, TrackKind::Video, layer, packets);
                }
            }
            if self.sharing_screen {
                self.write(now, TrackKind::Screen, 0, 2);
            }
            self.frames[kind_index(TrackKind::Video)] += 1;
            self.frames[kind_index(TrackKind::Screen)] += 1;
        }
    }

    /// The send stream of `layer` of our `kind` slot: the RID's stream when the answer set
    /// up simulcast, else the one stream (layer 0 only).
    fn stream(&mut self, mid: Mid, kind: TrackKind, layer: usize) -> Option<Ssrc> {
        let mut api = self.rtc.direct_api();
        if kind == TrackKind::Video
            && let Some(tx) = api.stream_tx_by_mid(mid, Some(Rid::from(RIDS[layer])))
        {
            return Some(tx.ssrc());
        }
        if layer > 0 {
            return None;
        }
        api.stream_tx_by_mid(mid, None).map(|tx| tx.ssrc())
    }

    fn write(&mut self, now: Instant, kind: TrackKind, layer: usize, packets: usize) {
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
        let Some(ssrc) = self.stream(mid, kind, layer) else {
            return;
        };
        let slot = kind_index(kind);
        let frame = self.frames[slot];
        let keyframe = kind.is_video() && std::mem::take(&mut self.keyframe_due[slot][layer]);
        // Each layer numbers its pictures and times its frames from its own origin, as
        // separate encoders do.
        let picture_id = ((frame + 1000 * layer as u64) & 0x7fff) as u16;
        let rtp_time = if kind == TrackKind::Audio {
            (self.counters[slot][0] * 960) as u32
        } else {
            (frame * 3000 + 777_000 * layer as u64) as u32
        };
        for i in 0..packets {
            self.counters[slot][layer] += 1;
            let counter = self.counters[slot][layer];
            let mut payload = vec![0u8; PREFIX];
            if kind.is_video() {
                payload[0] = if i == 0 { 0x90 } else { 0x80 };
                payload[1] = 0x80;
                payload[2] = 0x80 | (picture_id >> 8) as u8;
                payload[3] = picture_id as u8;
                // VP8 payload header: P = 0 on a keyframe.
                payload[4] = if keyframe { 0x00 } else { 0x01 };
                if keyframe && i == 0 {
                    let (w, h) = LAYER_SIZE[layer];
                    payload[7..10].copy_from_slice(&[0x9d, 0x01, 0x2a]);
                    payload[10..12].copy_from_slice(&w.to_le_bytes());
                    payload[12..14].copy_from_slice(&h.to_le_bytes());
                }
            }
            payload.extend_from_slice(&self.id.to_le_bytes());
            payload.push(slot as u8);
            payload.extend_from_slice(&counter.to_le_bytes());
            payload.push(layer as u8);
            let size = match kind {
                // A DTX packet: nothing beyond the fields the receiving test reads.
                TrackKind::Audio if self.silent => payload.len(),
                TrackKind::Audio => 60,
                TrackKind::Video => LAYER_PAYLOAD[layer],
                TrackKind::Screen => 900,
            };
            payload.resize(size, 0xab);
            let mut api = self.rtc.direct_api();
            let Some(tx) = api.stream_tx(&ssrc) else {
                return;
            };
            let mut ext_vals = ExtensionValues::default();
            if kind == TrackKind::Audio {
                // str0m writes the RFC 6464 extension only with both fields set.
                ext_vals.audio_level = self.audio_level;
                ext_vals.voice_activity = self.audio_level.map(|level| level > -60);
            }
            tx.write_rtp(
                RtpWrite::new(pt, counter.into(), rtp_time, now, payload)
                    .marker(i + 1 == packets)
                    .nackable(kind.is_video())
                    .ext_vals(ext_vals),
            );
        }
    }

    fn on_rtp(&mut self, now: Instant, mid: Option<Mid>, seq: u64, payload: &[u8]) {
        let Some(mid) = mid else { return };
        let Some(&(from, kind)) = self.mids.get(&mid) else {
            return;
        };
        let stats = self.received.entry((from, kind)).or_default();
        stats.packets += 1;
        stats.last_at = Some(now);
        let in_sequence = stats.last_seq.is_none_or(|last| seq == last + 1);
        if !in_sequence {
            stats.seq_gaps += 1;
        }
        stats.last_seq = Some(seq);
        if payload.len() < PREFIX + 18 {
            stats.misattributed += 1;
            return;
        }
        let starts_frame = payload[0] & 0x10 != 0;
        let starts_keyframe = kind.is_video() && starts_frame && payload[4] & 0x01 == 0;
        let picture_id = u16::from_be_bytes([payload[2] & 0x7f, payload[3]]);
        let fields = &payload[PREFIX..];
        let sender = u64::from_le_bytes(fields[0..8].try_into().unwrap());
        let slot = fields[8] as usize;
        let counter = u64::from_le_bytes(fields[9..17].try_into().unwrap());
        let layer = fields[17];
        if sender != from || slot != kind_index(kind) {
            stats.misattributed += 1;
        }
        if starts_keyframe {
            stats.keyframes += 1;
        }
        if let Some(l) = stats.per_layer.get_mut(layer as usize) {
            *l += 1;
            stats.layer_at[layer as usize] = Some(now);
        }
        if stats.layer.is_some_and(|l| l != layer) {
            stats.switches += 1;
            stats.last_counter = None;
            // After a hole the keyframe's first packet may be the one lost (its resend comes
            // later): such a switch cannot be judged from what arrived.
            if !starts_keyframe && in_sequence {
                stats.bad_switches += 1;
            } else if !starts_keyframe {
                stats.unjudged_switches += 1;
            }
        }
        stats.layer = Some(layer);
        if let Some(last) = stats.last_counter
            && counter != last + 1
        {
            stats.out_of_order += 1;
        }
        stats.last_counter = Some(counter);
        if kind.is_video() && starts_frame {
            if let Some(last) = stats.last_picture_id
                && picture_id != (last + 1) & 0x7fff
            {
                stats.picture_id_jumps += 1;
            }
            stats.last_picture_id = Some(picture_id);
        }
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
    /// How many of `events` [`Sim::store_snapshots`] has reported stored.
    stored: usize,
}

impl Sim {
    pub fn new(limits: Limits) -> Sim {
        let now = Instant::now();
        let config = SfuConfig {
            media_bind: server_addr(),
            ice_tcp_port: None,
            public_ips: vec![LOCALHOST],
            limits,
            resume_key: veche_sfu::ResumeKey::random(),
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
            stored: 0,
        }
    }

    /// Adds a client and sends its join. Returns its index in `clients`.
    pub fn join(&mut self, room: &str, name: &str) -> usize {
        self.join_e2ee(room, name, false, false)
    }

    /// Adds a client that says whether it can encrypt (`e2ee`) and asks for an encrypted
    /// room (`require_e2ee`), and sends its join.
    pub fn join_e2ee(&mut self, room: &str, name: &str, e2ee: bool, require_e2ee: bool) -> usize {
        let idx = self.add_client(name);
        self.send(
            idx,
            ClientMessage::Join {
                version: PROTOCOL_VERSION,
                room: room.into(),
                name: name.into(),
                passcode: None,
                resume: None,
                e2ee,
                require_e2ee,
            },
        );
        idx
    }

    /// Adds a client whose join the server authorised with `grant`.
    pub fn join_with(&mut self, room: &str, name: &str, grant: JoinGrant) -> usize {
        self.join_resuming(room, name, grant, None)
    }

    /// [`Sim::join_with`], presenting the resume token of an earlier `joined`.
    pub fn join_resuming(
        &mut self,
        room: &str,
        name: &str,
        grant: JoinGrant,
        resume: Option<String>,
    ) -> usize {
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
                resume,
                e2ee: false,
                require_e2ee: false,
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
            keyframe_requests_by_layer: [0; 3],
            keyframe_due: [[true; 3]; 3],
            keyframe_honoured: [None; 3],
            keyframe_requests_dropped: 0,
            sending: false,
            camera_layers: [true; 3],
            sharing_screen: false,
            audio_level: None,
            silent: false,
            answered_first_offer: false,
            counters: [[0; 3]; 3],
            frames: [0; 3],
            next_audio: self.now,
            next_video: self.now,
            next_timeout: self.now,
            outbox: Vec::new(),
            connected: false,
            downlink: None,
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

    /// Caps client `idx`'s downlink at `bits_per_second` (`None` lifts the cap).
    pub fn cap_downlink(&mut self, idx: usize, bits_per_second: Option<u64>) {
        let now = self.now;
        self.clients[idx].downlink = bits_per_second.map(|b| Downlink::new(b, now));
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
            c.write(now, TrackKind::Video, 2, 1);
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

    /// Delivers datagrams from client `idx` to the SFU in batches of `batch`, draining the
    /// SFU after each batch and sending what it sends on through the network as usual.
    pub fn deliver_to_sfu(&mut self, idx: usize, datagrams: &[Vec<u8>], batch: usize) {
        let from = self.clients[idx].addr;
        for chunk in datagrams.chunks(batch.max(1)) {
            for d in chunk {
                self.sfu.handle_datagram(self.now, from, server_addr(), d);
            }
            self.settle();
        }
    }

    /// The client's signalling connection drops.
    pub fn disconnect(&mut self, idx: usize) {
        let id = self.clients[idx].id;
        self.clients[idx].sending = false;
        self.sfu.handle_disconnect(self.now, id);
        self.settle();
    }

    /// Reports every meeting snapshot (and end of a meeting) the core gave out so far as
    /// stored, as the server does once its write commits; returns how many.
    pub fn store_snapshots(&mut self) -> usize {
        let saved: Vec<(String, u64)> = self.events[self.stored..]
            .iter()
            .filter_map(|e| match e {
                SfuEvent::MeetingSaved { snapshot, seq } => Some((snapshot.room.clone(), *seq)),
                SfuEvent::MeetingClosed { room, seq } => Some((room.clone(), *seq)),
                _ => None,
            })
            .collect();
        self.stored = self.events.len();
        for (room, seq) in &saved {
            self.sfu.handle_saved(self.now, room, *seq);
        }
        self.settle();
        saved.len()
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
                    Output::Transmit(d) => {
                        let now = self.now;
                        let at = match self
                            .clients
                            .iter_mut()
                            .find(|c| c.addr == d.destination)
                            .and_then(|c| c.downlink.as_mut())
                        {
                            Some(link) => link.pass(now, d.contents.len()),
                            None => Some(now + LATENCY),
                        };
                        if let Some(at) = at {
                            self.in_flight.push((
                                at,
                                Hop::ToClient {
                                    to: d.destination,
                                    data: d.contents,
                                },
                            ));
                        }
                    }
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
                    c.on_rtp(now, mid, *p.seq_no, &p.payload);
                }
                Event::KeyframeRequest(req) => {
                    c.keyframe_requests += 1;
                    let kind = c
                        .publish
                        .iter()
                        .find(|(_, m)| *m == req.mid)
                        .map(|(k, _)| *k);
                    let layer = req
                        .rid
                        .and_then(|rid| RIDS.iter().position(|r| **r == *rid))
                        .unwrap_or(0);
                    if let Some(kind) = kind {
                        if kind == TrackKind::Video {
                            c.keyframe_requests_by_layer[layer] += 1;
                        }
                        let slot = kind_index(kind);
                        if c.keyframe_honoured[slot]
                            .is_some_and(|t| now < t + KEYFRAME_REQUEST_INTERVAL)
                        {
                            c.keyframe_requests_dropped += 1;
                        } else {
                            c.keyframe_honoured[slot] = Some(now);
                            c.keyframe_due[slot][layer] = true;
                        }
                    }
                }
                _ => {}
            },
        }
    }
}
