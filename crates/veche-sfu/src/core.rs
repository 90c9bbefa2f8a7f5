//! The sans-IO SFU core.

mod command;
mod demux;
mod e2ee;
mod meetings;
mod mls;
mod outbox;
mod policy;
mod resume;
mod room;
mod speaker;

pub use command::{Command, HostControl};
pub use e2ee::E2eeLimits;
pub use resume::ResumeKey;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::config::CryptoProvider;
use str0m::media::KeyframeRequestKind;
use str0m::net::{DatagramRecv, Protocol, Receive, TcpType};
use str0m::rtp::{ExtensionValues, RtpPacket, Vp8Descriptor};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output as RtcOutput, Rtc};
use tracing::{debug, info, warn};
use veche_proto::{
    E2eeMode, ErrorCode, MlsBlob, ParticipantId, ParticipantQuality, ServerMessage, TrackKind,
    VideoSize, sealed_chat_max_bytes,
};

use self::demux::{Demux, Route};
use self::outbox::Outbox;
use crate::SfuConfig;
use crate::allocator::{
    CARRIED_LOSS, LayerOffer, Link, Track, allocate, audio_bps, covers, proving_rate,
};
use crate::id_map::IdMap;
use crate::meeting::{JoinRequest, SfuEvent};
use crate::participant::{
    AnswerError, PROOF_MEMORY, Participant, QUEUE_MEMORY, loudness, red_levels, slot,
};
use crate::quality::LinkStats;
use crate::simulcast::{
    Keyframe, LAYERS, Layer, RIDS, h264_keyframe, vp8_frame_start, vp8_keyframe, vp8_temporal,
};
use crate::subscription::{Packet, Tile, unwrap_red};

/// A datagram to send: over UDP, or as one RFC 4571 frame on the ICE-TCP connection from
/// `destination` to `source` (`proto` is `Tcp`).
#[derive(Debug)]
pub struct Datagram {
    pub proto: Protocol,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// What the core asks its driver to do.
#[derive(Debug)]
pub enum Output {
    Transmit(Datagram),
    /// Send a signalling message to this participant's connection.
    Signal(ParticipantId, ServerMessage),
    /// Close this participant's signalling connection (after the signals queued before it).
    Close(ParticipantId),
    /// Something for the server to store (audit log, usage).
    Event(SfuEvent),
    /// Nothing more to do until this instant (or until the next input).
    Timeout(Instant),
}

/// Counters the driver publishes as metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
}

/// How often str0m reports each connection's statistics: the link figures of the quality
/// grade, and the unsmoothed bandwidth estimate the allocator steps down on.
pub(crate) const STATS_INTERVAL: Duration = Duration::from_millis(500);

/// How often deferred keyframe requests and similar housekeeping run.
const TICK: Duration = Duration::from_millis(100);
/// How often the active speaker is re-evaluated.
const SPEAKER_WINDOW: Duration = Duration::from_millis(400);
/// Trickled candidates accepted per participant; more is abuse.
const MAX_REMOTE_CANDIDATES: usize = 32;
/// The bandwidth estimate each subscriber's connection starts from, before TWCC feedback
/// (libwebrtc's start rate). Starting higher made str0m's first probes overshoot and the
/// estimate collapse before it climbed again.
const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(300);
/// How often link statistics are gathered and connection quality may be re-announced.
const QUALITY_INTERVAL: Duration = Duration::from_secs(2);
/// What a forwarded packet costs a subscriber's link beyond its payload: IPv4 and UDP
/// headers (28 bytes), the RTP header with our extensions (about 24) and the SRTP tag (10),
/// rounded up. Layer rates are measured with it, since the bandwidth estimate they are shared
/// out of counts whole packets.
const WIRE_OVERHEAD_BYTES: usize = 64;

/// A subscription still waiting for its target layer's keyframe asks again this often.
const KEYFRAME_RETRY: Duration = Duration::from_millis(1000);

/// The share of a subscriber's estimate (percent) its voices may take with their redundant
/// audio: two speaking voices with two levels of redundancy fit in 630 kbit/s, with one in
/// 460, and under 460 there is none: on so narrow a link the loss is its own congestion and
/// the cameras' floors need what redundancy would take.
const RED_SHARE_PERCENT: u64 = 40;

/// A received media packet waiting to be fanned out, with what every subscription needs to
/// know of it, worked out once.
struct Received {
    publisher: ParticipantId,
    kind: TrackKind,
    layer: Layer,
    keyframe: Keyframe,
    vp8: Option<Vp8Descriptor>,
    /// VP8 temporal layer, when the stream has them, and whether the packet starts a frame.
    tid: Option<u8>,
    frame_start: bool,
    packet: RtpPacket,
}

use self::room::{RoomKey, Rooms};

/// The SFU's rooms, participants and forwarding, with no I/O.
///
/// # Driving contract
/// Inputs are [`Sfu::handle_command`], [`Sfu::handle_join`], [`Sfu::handle_control`],
/// [`Sfu::handle_disconnect`], [`Sfu::handle_datagram`], [`Sfu::handle_timeout`],
/// [`Sfu::handle_saved`] and [`Sfu::restore`]; outputs come out of [`Sfu::poll_output`].
///
/// - After an input, drain [`Sfu::poll_output`] until it returns [`Output::Timeout`] before
///   waiting for anything. Datagrams may be fed in a batch first: any number of
///   `handle_datagram` calls in a row, then one drain (the driver feeds what one socket
///   wake-up reads). Forwarding into subscribers' connections is deferred to that drain, so a
///   batch costs one str0m poll per subscriber instead of one per packet; nothing is lost or
///   reordered by batching (`tests/batched_datagrams.rs`). Other inputs may also come between
///   drains; outputs queue up in order.
/// - Call `handle_timeout` no later than the instant of the last [`Output::Timeout`].
/// - With [`crate::Limits::news_wait`] set, report each stored [`SfuEvent::MeetingSaved`]
///   back through [`Sfu::handle_saved`]: the signals announcing a change of a meeting's
///   live state are held until then (or until the wait is up), see `core/outbox.rs`.
/// - Time only moves through the `now` arguments, which must not go backwards.
///
/// # Parts
/// The core owns typed parts, each with one job: the `Demux` routes datagrams to
/// participants; a `Participant` owns its str0m `Rtc` — the one place that drives str0m —
/// and its m-lines; each subscription line owns a `Subscription`
/// (rewriting of what it forwards, exportable so it can move); a room holds its members and
/// its `Meeting` — the meeting policy, which answers each request with effects and never
/// touches str0m (`policy.rs`; `meetings.rs` carries the effects out); the `Outbox` holds
/// the news of a change to a meeting until the change is stored (`outbox.rs`). See
/// `docs/architecture.md`.
pub struct Sfu {
    config: SfuConfig,
    crypto: Arc<CryptoProvider>,
    /// Our host candidates: UDP on the media port, and TCP passive (lower priority) on the
    /// ICE-TCP port when there is one.
    candidates: Vec<Candidate>,
    /// The ICE-TCP listener's port, once known.
    ice_tcp_port: Option<u16>,
    participants: IdMap<ParticipantId, Participant>,
    /// Connections in a waiting room, and which (the meeting holds the rest about them).
    waiting: HashMap<ParticipantId, RoomKey>,
    rooms: Rooms,
    /// Which participant a datagram is for.
    demux: Demux,
    /// Outputs on their way out, with news of changes held until they are stored.
    out: Outbox,
    /// The sequence number of the latest meeting snapshot issued (over all rooms, so a
    /// room's numbers never repeat another's).
    last_snapshot: u64,
    /// Rooms with a change whose news is held: their snapshot goes out before the next
    /// output.
    unsaved: Vec<RoomKey>,
    earliest: Instant,
    next_tick: Instant,
    next_speaker_eval: Instant,
    next_quality: Instant,
    /// Incoming packets waiting to be fanned out.
    to_forward: VecDeque<Received>,
    /// Keyframe requests waiting to reach publishers: (publisher, slot, layer).
    to_request_keyframe: Vec<(ParticipantId, TrackKind, Layer)>,
    /// Scratch for the bandwidth allocation of one subscriber, reused across ticks.
    alloc_tracks: Vec<Track>,
    alloc_order: Vec<usize>,
    /// Participants whose `Rtc` has new input and must be polled.
    to_poll: Vec<ParticipantId>,
    /// Scratch for participants whose timer is due, reused across ticks.
    due: Vec<ParticipantId>,
    /// Scratch for draining `to_poll` without allocating.
    polling: Vec<ParticipantId>,
    /// The latest `now` given, for work deferred to `poll_output`.
    last_now: Instant,
    to_remove: Vec<(ParticipantId, ErrorCode, String)>,
    signals: Vec<ServerMessage>,
    counters: Counters,
    /// The wall clock at an instant, from the latest input that carried it: turns instants
    /// into Unix times for clients and the usage record.
    clock: (Instant, u64),
    /// Set by a host control refused to an API caller (see [`Sfu::handle_control`]).
    refusal: Option<crate::meeting::ControlError>,
}

impl Sfu {
    pub fn new(config: SfuConfig, now: Instant) -> Sfu {
        // A configured port 0 is not known until the driver has bound it.
        let ice_tcp_port = config.ice_tcp_port.filter(|p| *p != 0);
        let candidates = host_candidates(&config, ice_tcp_port);
        Sfu {
            config,
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
            candidates,
            ice_tcp_port,
            participants: IdMap::default(),
            waiting: HashMap::new(),
            rooms: Rooms::default(),
            demux: Demux::default(),
            out: Outbox::default(),
            last_snapshot: 0,
            unsaved: Vec::new(),
            earliest: now,
            next_tick: now,
            next_speaker_eval: now + SPEAKER_WINDOW,
            next_quality: now + QUALITY_INTERVAL,
            to_forward: VecDeque::new(),
            to_request_keyframe: Vec::new(),
            alloc_tracks: Vec::new(),
            alloc_order: Vec::new(),
            to_poll: Vec::new(),
            due: Vec::new(),
            polling: Vec::new(),
            last_now: now,
            to_remove: Vec::new(),
            signals: Vec::new(),
            counters: Counters::default(),
            clock: (now, 0),
            refusal: None,
        }
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Whether `id` is in a room or its waiting room.
    pub fn has_participant(&self, id: ParticipantId) -> bool {
        self.participants.contains_key(&id) || self.waiting.contains_key(&id)
    }

    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// How many participants have a graded connection quality, and how many of those are
    /// graded [`ConnectionQuality::Poor`](veche_proto::ConnectionQuality::Poor).
    pub fn quality_counts(&self) -> (usize, usize) {
        self.participants
            .values()
            .filter_map(|p| p.quality)
            .fold((0, 0), |(graded, poor), q| {
                (
                    graded + 1,
                    poor + usize::from(q == veche_proto::ConnectionQuality::Poor),
                )
            })
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Set a port after binding (when the configured one was 0).
    pub fn set_media_port(&mut self, port: u16) {
        self.config.media_bind.set_port(port);
        self.candidates = host_candidates(&self.config, self.ice_tcp_port);
    }

    /// Set the ICE-TCP listener's port after binding: participants joining from now on get
    /// TCP passive candidates on it.
    pub fn set_ice_tcp_port(&mut self, port: u16) {
        self.ice_tcp_port = Some(port);
        self.candidates = host_candidates(&self.config, self.ice_tcp_port);
    }

    pub fn poll_output(&mut self) -> Output {
        if !self.to_poll.is_empty() {
            self.run_queues(self.last_now, true);
        }
        if !self.unsaved.is_empty() {
            self.save_unsaved(self.last_now);
        }
        if self.out.needs_release() {
            self.release_news(self.last_now);
        }
        self.out
            .pop_front()
            .unwrap_or(Output::Timeout(self.earliest))
    }

    /// A request from participant `id`'s signalling connection. `unix_ms` is the wall
    /// clock, used to stamp chat messages.
    pub fn handle_command(&mut self, now: Instant, unix_ms: u64, id: ParticipantId, cmd: Command) {
        self.clock = (now, unix_ms);
        self.last_now = self.last_now.max(now);
        match cmd {
            Command::Join(req) => self.join(now, id, *req),
            // Connections are the signalling layer's: the bare core keeps no places.
            Command::Reattach => self.error(
                id,
                ErrorCode::ReattachFailed,
                "this server does not keep places for dropped connections",
            ),
            Command::Leave if self.waiting.contains_key(&id) => {
                self.remove_waiter(id);
                self.out.push_back(Output::Close(id));
            }
            _ if self.waiting.contains_key(&id) => {
                self.error(id, ErrorCode::NotJoined, "waiting to be admitted by a host")
            }
            _ if !self.participants.contains_key(&id) => self.error(
                id,
                ErrorCode::NotJoined,
                "send a join message before anything else",
            ),
            Command::Answer { sdp } => self.answer(id, &sdp),
            Command::IceRestart => {
                if let Some(p) = self.participants.get_mut(&id) {
                    debug!(participant = id, "ICE restart asked for");
                    p.restart_wanted = true;
                    self.negotiate(id);
                    self.mark_poll(id);
                }
            }
            Command::Candidate { candidate } => self.candidate(id, &candidate),
            Command::SetMedia { kind, enabled } => self.set_media(id, kind, enabled),
            Command::Chat { text } => self.chat(id, unix_ms, text),
            Command::SealedChat { sealed } => self.sealed_chat(id, unix_ms, sealed),
            Command::RaiseHand { raised } => self.raise_hand(now, id, raised),
            Command::Leave => {
                self.remove(id);
                self.out.push_back(Output::Close(id));
            }
            Command::VideoSizes { sizes } => self.video_sizes(now, id, sizes),
            Command::MlsKeyPackage { key_package } => self.mls_key_package(now, id, key_package),
            Command::MlsCommit {
                epoch,
                commit,
                welcome,
                added,
                removed,
            } => self.mls_commit(
                now,
                id,
                e2ee::Commit {
                    epoch,
                    commit,
                    welcome,
                    added,
                    removed,
                },
            ),
            Command::Host(control) => {
                if let Some(key) = self.participants.get(&id).map(|p| p.room_key()) {
                    self.control(now, key, &policy::Actor::Member(id), control);
                }
            }
        }
        self.run_queues(now, true);
    }

    /// A join the server has authorised (its grant says the role, waiting room and limits).
    /// `unix_ms` is the wall clock.
    pub fn handle_join(&mut self, now: Instant, unix_ms: u64, id: ParticipantId, req: JoinRequest) {
        self.clock = (now, unix_ms);
        self.last_now = self.last_now.max(now);
        self.join(now, id, req);
        self.run_queues(now, true);
    }

    /// The signalling connection of `id` is gone.
    pub fn handle_disconnect(&mut self, now: Instant, id: ParticipantId) {
        self.last_now = self.last_now.max(now);
        self.out.forget(id);
        self.remove_waiter(id);
        self.remove(id);
        self.run_queues(now, true);
    }

    /// A datagram arrived on the media socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.receive(now, Protocol::Udp, source, destination, data);
    }

    /// A frame arrived on the ICE-TCP connection from `source` to our `destination` (as our
    /// candidate names it). Returns whether a participant took it: a connection whose frames
    /// nobody takes is junk, and the driver closes it when idle.
    pub fn handle_tcp_frame(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        self.receive(now, Protocol::Tcp, source, destination, data)
    }

    /// Routes what arrived to its participant's `Rtc`; whether one took it.
    fn receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        let Some(route) = self.demux.route(proto, source, data) else {
            debug!(%source, ?proto, len = data.len(), "dropping datagram from unknown address");
            return false;
        };
        let Ok(contents) = DatagramRecv::try_from(data) else {
            debug!(%source, len = data.len(), "dropping unrecognised datagram");
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination,
                contents,
            },
        );
        let (Route::Known(id) | Route::New(id)) = route;
        let Some(p) = self.participants.get_mut(&id) else {
            // The demux forgets a participant together with the participant.
            debug_assert!(false, "datagram routed to unknown participant {id}");
            warn!(
                participant = id,
                "datagram routed to a participant that is gone"
            );
            return false;
        };
        if matches!(route, Route::New(_)) {
            if !p.rtc.accepts(&input) {
                debug!(%source, participant = id, "participant's ICE agent refuses datagram");
                return false;
            }
            self.demux.learn(id, proto, source);
        }
        if let Err(e) = p.rtc.handle_input(input) {
            debug!(participant = id, "bad media input: {e}");
        }
        self.drive(now, id);
        self.run_queues(now, false);
        true
    }

    /// Time has reached (at least) the last [`Output::Timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            for p in self.participants.values_mut() {
                for layers in &mut p.layers {
                    layers.roll(now);
                }
            }
            self.allocate_all(now);
            self.dynacast(now);
            if now >= self.next_quality {
                self.next_quality = now + QUALITY_INTERVAL;
                self.announce_quality();
            }
            self.flush_deferred_keyframes(now);
            self.enforce_time_limits(now);
            self.mls_timeouts(now);
            self.save_meetings(now, false);
        }
        if now >= self.next_speaker_eval {
            self.next_speaker_eval = now + SPEAKER_WINDOW;
            self.evaluate_speakers();
        }
        let mut due = std::mem::take(&mut self.due);
        due.extend(
            self.participants
                .values()
                .filter(|p| p.next_timeout <= now)
                .map(|p| p.id),
        );
        for id in due.drain(..) {
            if let Some(p) = self.participants.get_mut(&id)
                && let Err(e) = p.rtc.handle_input(Input::Timeout(now))
            {
                debug!(participant = id, "timeout input failed: {e}");
            }
            self.drive(now, id);
        }
        self.due = due;
        if self.out.next_deadline().is_some_and(|d| d <= now) {
            self.release_news(now);
        }
        self.run_queues(now, true);
        let news = self.out.next_deadline().unwrap_or(self.next_tick);
        self.earliest = self.participants.values().map(|p| p.next_timeout).fold(
            self.next_tick.min(self.next_speaker_eval).min(news),
            Instant::min,
        );
    }

    /// Tells everyone the server is going away and forgets them. Their meetings are not over:
    /// a snapshot of each goes out for the server to keep, so they carry on after the
    /// restart (usage is recorded when they end).
    pub fn shutdown(&mut self) {
        let ids: Vec<_> = self
            .participants
            .keys()
            .chain(self.waiting.keys())
            .copied()
            .collect();
        // What was held goes first: the goodbye must not overtake it.
        self.out.release_all();
        for id in ids {
            self.error(id, ErrorCode::ShuttingDown, "the server is shutting down");
            self.out.push_back(Output::Close(id));
        }
        let now = self.last_now;
        self.save_meetings(now, true);
        self.participants.clear();
        self.waiting.clear();
        self.rooms.clear();
        self.demux.clear();
    }

    /// The local ICE ufrag of a new `rtc`, made unique among our participants: it is how a
    /// STUN check from a new address finds its participant. str0m's are random (16
    /// characters), so a clash is near impossible but would misroute, so it is checked.
    fn unique_ufrag(&self, rtc: &mut Rtc) -> String {
        let mut api = rtc.direct_api();
        loop {
            let creds = api.local_ice_credentials();
            if !self.demux.has_ufrag(&creds.ufrag) {
                return creds.ufrag;
            }
            api.set_local_ice_credentials(IceCreds::new());
        }
    }

    fn error(&mut self, id: ParticipantId, code: ErrorCode, message: impl Into<String>) {
        let message = message.into();
        debug!(participant = id, ?code, "{message}");
        self.out
            .push_back(Output::Signal(id, ServerMessage::error(code, message)));
        if code.is_fatal() {
            self.out.push_back(Output::Close(id));
        }
    }

    fn answer(&mut self, id: ParticipantId, sdp: &str) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let mut opened = Vec::new();
        let mut retired = None;
        let result = p.accept_answer(sdp, &mut opened, &mut retired);
        if let Some(ufrag) = retired {
            self.demux.remove_ufrag(&ufrag);
            if result.is_ok() {
                // An ICE restart: the packets lost while the path was down left every
                // decoder on either side of it waiting for a keyframe; ask at once rather
                // than wait for each decoder's own request.
                for (publisher, kind, s) in p.open_subscriptions_mut() {
                    if let (true, Some(layer)) = (kind.is_video(), s.choice.current) {
                        self.to_request_keyframe.push((publisher, kind, layer));
                    }
                }
                for kind in [TrackKind::Video, TrackKind::Screen] {
                    for layer in 0..LAYERS as Layer {
                        self.to_request_keyframe.push((id, kind, layer));
                    }
                }
            }
        }
        match result {
            // New subscriptions get their layers (and their first keyframe requests).
            Ok(()) if !opened.is_empty() => self.allocate(self.last_now, id),
            Ok(()) => {}
            Err(AnswerError::NoOffer) => {
                return self.error(id, ErrorCode::UnexpectedAnswer, "no offer is outstanding");
            }
            Err(e) => self.error(id, ErrorCode::InvalidSdp, e.to_string()),
        }
        self.negotiate(id);
        self.mark_poll(id);
    }

    fn candidate(&mut self, id: ParticipantId, candidate: &str) {
        let candidate = candidate.trim();
        let candidate = candidate.strip_prefix("a=").unwrap_or(candidate);
        // Browsers that have no camera/mic permission hide their addresses behind mDNS
        // names (RFC 8828 / draft-ietf-mmusic-mdns-ice-candidates). We do not resolve them; an
        // ICE-lite server learns the address from the client's checks anyway.
        let mdns = candidate
            .split_whitespace()
            .nth(4)
            .is_some_and(|host| host.ends_with(".local"));
        if candidate.is_empty() || mdns {
            return;
        }
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if p.remote_candidates >= MAX_REMOTE_CANDIDATES {
            return self.error(
                id,
                ErrorCode::InvalidCandidate,
                format!("more than {MAX_REMOTE_CANDIDATES} candidates"),
            );
        }
        match Candidate::from_sdp_string(candidate) {
            Ok(c) => {
                p.remote_candidates += 1;
                p.rtc.add_remote_candidate(c);
                self.mark_poll(id);
            }
            Err(e) => self.error(
                id,
                ErrorCode::InvalidCandidate,
                format!("invalid ICE candidate: {e}"),
            ),
        }
    }

    fn set_media(&mut self, id: ParticipantId, kind: TrackKind, enabled: bool) {
        let outer = self.out.holding();
        self.switch_media(id, kind, enabled);
        self.out.end_hold(outer);
    }

    /// [`Sfu::set_media`], which puts back the hold in force before it: lifting a host mute
    /// holds the news of it from then on.
    fn switch_media(&mut self, id: ParticipantId, kind: TrackKind, enabled: bool) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let room = p.room_key();
        let lifted = enabled && p.host_muted[slot(kind)];
        if lifted {
            let Some(r) = self.rooms.get_mut(&room) else {
                return;
            };
            match r.meeting.unmute(id, kind) {
                Err((code, why)) => return self.error(id, code, why),
                Ok(gate) => {
                    if let Some(gate) = gate {
                        p.host_muted = gate;
                    }
                }
            }
            if kind.is_video() {
                // Subscribers' decoders lost the packets dropped while muted.
                for layer in 0..LAYERS as Layer {
                    self.to_request_keyframe.push((id, kind, layer));
                }
            }
        }
        let flag = match kind {
            TrackKind::Audio => &mut p.info.audio,
            TrackKind::Video => &mut p.info.video,
            TrackKind::Screen => &mut p.info.screen,
        };
        if *flag == enabled {
            return;
        }
        *flag = enabled;
        let was_published = p.published[slot(kind)];
        // Audio and video keep their m-lines while muted; a screen share ends with its track.
        let now_published = enabled || (kind != TrackKind::Screen && was_published);
        p.published[slot(kind)] = now_published;
        if lifted && let Some(hold) = self.news_hold(room) {
            self.out.hold_with(hold);
        }
        self.broadcast(
            room,
            None,
            ServerMessage::MediaState {
                participant_id: id,
                kind,
                enabled,
            },
        );
        if now_published == was_published {
            return;
        }
        let members = self.members(room);
        for m in members.iter().filter(|m| **m != id) {
            if let Some(sub) = self.participants.get_mut(m) {
                if now_published {
                    sub.subscribe(id, kind);
                } else {
                    sub.unsubscribe(|p, k| p == id && k == kind);
                }
            }
            self.negotiate(*m);
        }
    }

    /// The client's report of what it renders: subscriptions not listed pause, the others
    /// get layers for their tile at once (so a shown tile resumes without waiting for the
    /// tick).
    fn video_sizes(&mut self, now: Instant, id: ParticipantId, sizes: Vec<VideoSize>) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let tiles = sizes
            .into_iter()
            .map(|s| {
                let tile = if s.width == 0 || s.height == 0 {
                    Tile::Hidden
                } else {
                    Tile::Size {
                        width: s.width,
                        height: s.height,
                    }
                };
                ((s.participant_id, s.kind), tile)
            })
            .collect();
        p.set_tiles(tiles);
        self.allocate(now, id);
    }

    fn chat(&mut self, id: ParticipantId, unix_ms: u64, text: String) {
        let max = self.config.limits.max_chat_chars;
        let text = text.trim();
        if text.is_empty() {
            return self.error(id, ErrorCode::InvalidMessage, "chat message is empty");
        }
        if text.chars().count() > max {
            return self.error(
                id,
                ErrorCode::ChatTooLong,
                format!("chat message longer than {max} characters"),
            );
        }
        let Some(p) = self.participants.get(&id) else {
            return;
        };
        if self.is_sealed(p.room_key()) {
            // The server must not see what an encrypted meeting says.
            return self.error(
                id,
                ErrorCode::InvalidMessage,
                "chat in an end-to-end encrypted meeting is sealed (sealed_chat)",
            );
        }
        let msg = ServerMessage::Chat {
            from: id,
            name: p.info.name.clone(),
            text: text.to_owned(),
            sent_at_ms: unix_ms,
        };
        self.broadcast(p.room_key(), None, msg);
    }

    /// Relays a chat message sealed under the group's keys, which the server cannot read.
    fn sealed_chat(&mut self, id: ParticipantId, unix_ms: u64, sealed: Vec<u8>) {
        let max = sealed_chat_max_bytes(self.config.limits.max_chat_chars);
        let Some(p) = self.participants.get(&id) else {
            return;
        };
        if !self.is_encrypted(p.room_key()) {
            return self.error(
                id,
                ErrorCode::InvalidMessage,
                "sealed chat outside an end-to-end encrypted meeting",
            );
        }
        if sealed.is_empty() || sealed.len() > max {
            return self.error(
                id,
                ErrorCode::ChatTooLong,
                format!("sealed chat message of {} bytes (1 to {max})", sealed.len()),
            );
        }
        let msg = ServerMessage::SealedChat {
            from: id,
            name: p.info.name.clone(),
            sealed: MlsBlob(sealed),
            sent_at_ms: unix_ms,
        };
        self.broadcast(p.room_key(), None, msg);
    }

    /// Whether `room`'s meeting has an MLS group (its members may seal chat).
    fn is_encrypted(&self, room: RoomKey) -> bool {
        self.rooms.get(&room).is_some_and(|r| r.e2ee.is_some())
    }

    /// Whether everything said in `room` must be sealed: its meeting requires end-to-end
    /// encryption, or it is optional and everyone in it can encrypt (so every client
    /// encrypts). Plain chat is refused there.
    fn is_sealed(&self, room: RoomKey) -> bool {
        let Some(r) = self.rooms.get(&room) else {
            return false;
        };
        match r.meeting.e2ee() {
            E2eeMode::Off => false,
            E2eeMode::Required => true,
            E2eeMode::Optional => r
                .members
                .iter()
                .all(|m| self.participants.get(m).is_none_or(|p| p.info.e2ee)),
        }
    }

    fn members(&self, room: RoomKey) -> Vec<ParticipantId> {
        self.rooms
            .get(&room)
            .map(|r| r.members.clone())
            .unwrap_or_default()
    }

    fn broadcast(&mut self, room: RoomKey, except: Option<ParticipantId>, msg: ServerMessage) {
        let Some(r) = self.rooms.get(&room) else {
            return;
        };
        for m in &r.members {
            if Some(*m) != except {
                self.out.push_back(Output::Signal(*m, msg.clone()));
            }
        }
    }

    fn negotiate(&mut self, id: ParticipantId) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let demux = &self.demux;
        let restart_ufrag = p.negotiate(&mut self.signals, &|u| demux.has_ufrag(u));
        if let Some(ufrag) = restart_ufrag {
            self.demux.add(id, ufrag);
        }
        for msg in self.signals.drain(..) {
            self.out.push_back(Output::Signal(id, msg));
        }
    }

    /// Forgets a participant and the addresses and ICE ufrag that routed datagrams to it.
    fn take_participant(&mut self, id: ParticipantId) -> Option<Participant> {
        let p = self.participants.remove(&id)?;
        self.demux.remove(id, &p.ufrag);
        if let Some(ufrag) = &p.restart_ufrag {
            self.demux.remove_ufrag(ufrag);
        }
        Some(p)
    }

    /// Removes a participant from its room, telling the others.
    fn remove(&mut self, id: ParticipantId) {
        let Some(p) = self.take_participant(id) else {
            return;
        };
        info!(participant = id, name = %p.info.name, "left");
        let key = p.room_key();
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        room.remove_member(id);
        let members = room.members.clone();
        self.broadcast(
            key,
            None,
            ServerMessage::ParticipantLeft { participant_id: id },
        );
        for m in members {
            if let Some(sub) = self.participants.get_mut(&m) {
                sub.unsubscribe(|p, _| p == id);
            }
            self.negotiate(m);
        }
        self.mls_leave(self.last_now, key, id);
        self.leave_meeting(key, id);
        self.drop_room_if_over(key);
    }

    /// Polls one participant's `Rtc` until it has nothing more to say.
    fn drive(&mut self, now: Instant, id: ParticipantId) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        loop {
            if !p.rtc.is_alive() {
                self.to_remove
                    .push((id, ErrorCode::MediaFailed, "media connection closed".into()));
                return;
            }
            let output = match p.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    warn!(participant = id, "media connection failed: {e}");
                    self.to_remove.push((
                        id,
                        ErrorCode::MediaFailed,
                        format!("media connection failed: {e}"),
                    ));
                    return;
                }
            };
            match output {
                RtcOutput::Timeout(t) => {
                    p.next_timeout = t;
                    self.earliest = self.earliest.min(t);
                    return;
                }
                RtcOutput::Transmit(t) => self.out.push_back(Output::Transmit(Datagram {
                    proto: t.proto,
                    source: t.source,
                    destination: t.destination,
                    contents: t.contents.into(),
                })),
                RtcOutput::Event(event) => match event {
                    Event::Connected => {
                        info!(
                            participant = id,
                            ms = now.duration_since(p.joined_at).as_millis() as u64,
                            "media connected"
                        );
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        self.to_remove.push((
                            id,
                            ErrorCode::MediaFailed,
                            "ICE connection lost".into(),
                        ));
                    }
                    Event::RtpPacket(mut packet) => {
                        let Some((kind, layer)) = p.slot_of(packet.header.ssrc) else {
                            continue;
                        };
                        // Chromium sends its voice in RED wherever RED is negotiated (it is
                        // not in encrypted meetings, see `admit_now`): every subscription
                        // forwards the primary.
                        if kind == TrackKind::Audio
                            && p.is_red(packet.header.payload_type)
                            && let Err(e) = unwrap_red(&p.rtc, &mut packet)
                        {
                            debug!(participant = id, "dropping audio packet: {e}");
                            continue;
                        }
                        if kind == TrackKind::Audio
                            && let Some(level) = packet.header.ext_vals.audio_level
                        {
                            p.loudness.0 += loudness(level);
                            p.loudness.1 += 1;
                        }
                        let (vp8, keyframe, size) = inspect(p, kind, &packet);
                        let (tid, frame_start) = match vp8 {
                            Some(_) => (
                                vp8_temporal(&packet.payload),
                                vp8_frame_start(&packet.payload),
                            ),
                            None => (None, false),
                        };
                        // Every kind is measured: the allocator counts voices at their
                        // rate too (silence costs little with Opus DTX).
                        p.layers[slot(kind)].on_packet(
                            now,
                            layer,
                            packet.payload.len() + WIRE_OVERHEAD_BYTES,
                            tid,
                            size,
                        );
                        self.to_forward.push_back(Received {
                            publisher: id,
                            kind,
                            layer,
                            keyframe,
                            vp8,
                            tid,
                            frame_start,
                            packet,
                        });
                    }
                    Event::KeyframeRequest(req) => {
                        let Some((publisher, kind, choice)) = p.subscription_on(req.mid) else {
                            continue;
                        };
                        // A paused subscription has nothing to decode, and one waiting to
                        // switch has its target's keyframe asked for already (and again
                        // after KEYFRAME_RETRY): passing these on would make the publisher's
                        // encoder send a keyframe on all its layers, to everyone.
                        if choice.switching() || choice.target.is_none() {
                            debug!(
                                subscriber = id,
                                publisher,
                                ?kind,
                                ?choice,
                                "keyframe request not passed on"
                            );
                            continue;
                        }
                        debug!(subscriber = id, publisher, ?kind, layer = ?choice.current, "subscriber asks for a keyframe");
                        self.to_request_keyframe.push((
                            publisher,
                            kind,
                            choice.current.unwrap_or(0),
                        ));
                    }
                    // Until the first estimate, the initial one holds (`Participant::new`).
                    Event::PeerStats(stats) => {
                        p.link.ingress_loss = stats.ingress_loss_fraction.unwrap_or(0.0);
                        p.link.egress_loss = stats.egress_loss_fraction.unwrap_or(0.0);
                        // The share of the estimate it may take is applied at the next
                        // allocation.
                        p.red_wanted = red_levels(p.link.egress_loss, p.red_wanted);
                        p.link.rtt = stats.rtt;
                        if let Some(rtt) = stats.rtt {
                            let queueing = p.rtt_floor.sample(now, rtt);
                            if queueing {
                                p.queued_at = Some(now);
                            }
                            if queueing != p.queueing {
                                debug!(participant = id, queueing, ?rtt, "queueing towards it");
                                p.queueing = queueing;
                            }
                        }
                        p.raw_estimate = stats.bwe_tx.map(|b| b.as_u64());
                        p.delivered = stats.bwe_acked_tx.map(|b| b.as_u64());
                    }
                    Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                        let estimate = estimate.as_u64();
                        if p.estimate.is_none_or(|e| e.abs_diff(estimate) > e / 5) {
                            debug!(
                                participant = id,
                                kbps = estimate / 1000,
                                "bandwidth estimate"
                            );
                        }
                        p.estimate = Some(estimate);
                    }
                    Event::Closed => {
                        self.to_remove.push((
                            id,
                            ErrorCode::MediaFailed,
                            "media connection closed".into(),
                        ));
                    }
                    _ => {}
                },
            }
        }
    }

    /// Runs the work that one input caused: fan-out, keyframe requests, removals, and — when
    /// `poll` — polling the participants that got new data. Each step can cause more of the
    /// others.
    ///
    /// Datagram input runs with `poll == false`: subscribers' `Rtc`s are then advanced and
    /// polled once per batch of datagrams (at the next [`Sfu::poll_output`]) instead of once
    /// per forwarded packet, which is most of str0m's per-packet overhead.
    fn run_queues(&mut self, now: Instant, poll: bool) {
        self.last_now = self.last_now.max(now);
        loop {
            while let Some(received) = self.to_forward.pop_front() {
                self.fan_out(&received);
            }
            while let Some((publisher, kind, layer)) = self.to_request_keyframe.pop() {
                self.request_keyframe(now, publisher, kind, layer);
            }
            if poll {
                let mut polls = std::mem::take(&mut self.polling);
                std::mem::swap(&mut polls, &mut self.to_poll);
                for id in polls.drain(..) {
                    if let Some(p) = self.participants.get_mut(&id) {
                        p.queued_poll = false;
                        // Queued writes only leave str0m once time is advanced.
                        let _ = p.rtc.handle_input(Input::Timeout(now));
                    }
                    self.drive(now, id);
                }
                self.polling = polls;
            }
            while let Some((id, code, why)) = self.to_remove.pop() {
                if self.participants.contains_key(&id) {
                    warn!(participant = id, "removing: {why}");
                    self.error(id, code, why);
                    self.remove(id);
                }
            }
            if self.to_forward.is_empty()
                && self.to_request_keyframe.is_empty()
                && (!poll || self.to_poll.is_empty())
                && self.to_remove.is_empty()
            {
                return;
            }
        }
    }

    fn mark_poll(&mut self, id: ParticipantId) {
        if let Some(p) = self.participants.get_mut(&id)
            && !p.queued_poll
        {
            p.queued_poll = true;
            self.to_poll.push(id);
        }
    }

    fn fan_out(&mut self, received: &Received) {
        let Received {
            publisher, kind, ..
        } = *received;
        let packet = &received.packet;
        // A track a host muted is not forwarded, whatever the publisher's client keeps sending.
        let Some(p) = self
            .participants
            .get(&publisher)
            .filter(|p| !p.host_muted[slot(kind)])
        else {
            return;
        };
        let key = p.room_key();
        let single_layer = !(kind.is_video() && p.layers[slot(kind)].simulcast);
        let Some(room) = self.rooms.get(&key) else {
            return;
        };
        let ext_vals = ExtensionValues {
            audio_level: packet.header.ext_vals.audio_level,
            voice_activity: packet.header.ext_vals.voice_activity,
            video_orientation: packet.header.ext_vals.video_orientation,
            ..Default::default()
        };
        let packet = Packet {
            rtp: packet,
            vp8: received.vp8.as_ref(),
            layer: received.layer,
            keyframe: received.keyframe,
            tid: received.tid,
            frame_start: received.frame_start,
            single_layer,
            ext_vals: &ext_vals,
        };
        for sub_id in &room.members {
            if *sub_id == publisher {
                continue;
            }
            let Some(sub) = self.participants.get_mut(sub_id) else {
                continue;
            };
            if !sub.forward(publisher, kind, &packet) {
                continue;
            }
            self.counters.forwarded_packets += 1;
            self.counters.forwarded_bytes += packet.rtp.payload.len() as u64;
            if !sub.queued_poll {
                sub.queued_poll = true;
                self.to_poll.push(*sub_id);
            }
        }
    }

    /// Asks `publisher` for a keyframe of `layer` of its `kind` track, throttled per track
    /// (see [`crate::participant::KeyframeThrottle`]): however many subscribers ask within
    /// [`crate::participant::KEYFRAME_INTERVAL`], the publisher gets one request now and the
    /// layers asked for meanwhile one by one after it.
    fn request_keyframe(
        &mut self,
        now: Instant,
        publisher: ParticipantId,
        kind: TrackKind,
        layer: Layer,
    ) {
        let Some(p) = self.participants.get_mut(&publisher) else {
            return;
        };
        if !p.keyframes[slot(kind)].request(now, layer) {
            self.earliest = self.earliest.min(self.next_tick);
            return;
        }
        send_keyframe_request(p, kind, layer);
        self.mark_poll(publisher);
    }

    fn flush_deferred_keyframes(&mut self, now: Instant) {
        let mut sent = Vec::new();
        for p in self.participants.values_mut() {
            for kind in [TrackKind::Video, TrackKind::Screen] {
                if let Some(layer) = p.keyframes[slot(kind)].take_due(now) {
                    send_keyframe_request(p, kind, layer);
                    sent.push(p.id);
                }
            }
        }
        for id in sent {
            self.mark_poll(id);
        }
    }

    /// Runs the bandwidth allocation of every participant (on the tick).
    fn allocate_all(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        due.extend(self.participants.keys().copied());
        for id in due.drain(..) {
            self.allocate(now, id);
        }
        self.due = due;
    }

    /// Tells each room the quality of its members' links when one has changed.
    fn announce_quality(&mut self) {
        let mut changed = Vec::new();
        for p in self.participants.values_mut() {
            let grade = crate::quality::grade(LinkStats {
                estimate: p.estimate,
                ..p.link
            });
            if p.quality != Some(grade) {
                p.quality = Some(grade);
                changed.push(p.room_key());
            }
        }
        changed.sort_unstable();
        changed.dedup();
        for key in changed {
            let participants = self
                .members(key)
                .iter()
                .filter_map(|m| self.participants.get(m))
                .filter_map(|p| {
                    Some(ParticipantQuality {
                        participant_id: p.id,
                        quality: p.quality?,
                    })
                })
                .collect();
            self.broadcast(key, None, ServerMessage::ConnectionQuality { participants });
        }
    }

    /// Tells each simulcast publisher which camera layers its subscribers' tiles need, so
    /// its browser stops encoding the others (the lowest always stays, for subscribers whose
    /// bandwidth falls).
    fn dynacast(&mut self, now: Instant) {
        let kind = TrackKind::Video;
        let mut ids = std::mem::take(&mut self.due);
        ids.clear();
        ids.extend(
            self.participants
                .values()
                .filter(|p| p.published[slot(kind)] && p.layers[slot(kind)].simulcast)
                .map(|p| p.id),
        );
        for id in ids.drain(..) {
            let Some(p) = self.participants.get(&id) else {
                continue;
            };
            let layers = &p.layers[slot(kind)];
            let mut needed = [false; LAYERS];
            needed[0] = true;
            for m in self
                .rooms
                .get(&p.room_key())
                .map_or(&[][..], |r| &r.members)
            {
                let Some(sub) = self
                    .participants
                    .get(m)
                    .and_then(|s| s.subscription(id, kind))
                else {
                    continue;
                };
                if sub.tile == Tile::Hidden {
                    continue;
                }
                let cap = (0..LAYERS as Layer)
                    .find(|&l| {
                        covers(
                            sub.tile,
                            u32::from(layers.width(l)),
                            u32::from(layers.height(l)),
                        )
                    })
                    .unwrap_or(LAYERS as Layer - 1);
                for n in needed.iter_mut().take(cap as usize + 1) {
                    *n = true;
                }
            }
            let Some(p) = self.participants.get_mut(&id) else {
                continue;
            };
            if let Some(active) = p.dynacast.update(now, needed) {
                let rids = RIDS
                    .iter()
                    .zip(active)
                    .filter(|(_, on)| *on)
                    .map(|(r, _)| (*r).to_owned())
                    .collect();
                debug!(participant = id, ?rids, "layers wanted");
                self.out.push_back(Output::Signal(
                    id,
                    ServerMessage::LayersWanted { kind, rids },
                ));
            }
        }
        self.due = ids;
    }

    /// Shares subscriber `id`'s bandwidth estimate between its subscriptions (see
    /// `allocator.rs`) and sets each one's target layer, asking publishers for the keyframes
    /// that switches and resumes wait for.
    fn allocate(&mut self, now: Instant, id: ParticipantId) {
        let Some(sub) = self.participants.get(&id) else {
            return;
        };
        let speaker = self
            .rooms
            .get(&sub.room_key())
            .and_then(|r| r.speaker.current());
        // Redundant audio, as far as its loss asks for it and within its share of the
        // estimate: where the loss is the link's own congestion, more audio would only
        // crowd out the cameras' floors and lose more.
        let voices = || {
            sub.open_subscriptions()
                .filter(|(_, kind, _)| !kind.is_video())
                .map(|(publisher, kind, _)| {
                    let measured = self
                        .participants
                        .get(&publisher)
                        .and_then(|p| offers(p, kind, now)[0])
                        .map_or(0, |o| o.bitrate);
                    (measured, speaker == Some(publisher))
                })
        };
        // The raw value only when it is well under the average: a narrowed link, not the
        // estimator's usual swing (on a busy machine even loopback swings).
        let fast = sub
            .raw_estimate
            .filter(|raw| sub.estimate.is_none_or(|avg| *raw < avg / 4 * 3));
        // The share holds only where packets queue towards it, or did in the last
        // QUEUE_MEMORY: random loss on a link with room gets all the redundancy it asks for
        // (audio first, whatever video loses).
        let narrow = sub
            .queued_at
            .is_some_and(|at| now.saturating_duration_since(at) < QUEUE_MEMORY);
        let red_bound = if narrow { fast.or(sub.estimate) } else { None };
        let red = (0..=sub.red_wanted)
            .rev()
            .find(|&levels| {
                red_bound.is_none_or(|e| {
                    voices()
                        .map(|(m, speaking)| audio_bps(levels, m, speaking))
                        .sum::<u64>()
                        <= e / 100 * RED_SHARE_PERCENT
                })
            })
            .unwrap_or(0);
        let mut tracks = std::mem::take(&mut self.alloc_tracks);
        tracks.clear();
        for (publisher, kind, s) in sub.open_subscriptions() {
            let mut layers = self
                .participants
                .get(&publisher)
                .map_or([None; LAYERS], |p| offers(p, kind, now));
            if !kind.is_video()
                && let Some(voice) = layers[0].as_mut()
            {
                voice.bitrate = audio_bps(red, voice.bitrate, speaker == Some(publisher));
            }
            let mut t = Track::new(kind, s.tile, layers);
            t.speaker = speaker == Some(publisher);
            t.current = s.choice.current;
            t.at_base = s.temporal.target.is_some();
            t.limited_at = s.limited_at;
            t.paused = kind.is_video() && s.choice.target.is_none();
            tracks.push(t);
        }
        let link = Link {
            estimate: sub.estimate,
            raise_cap: fast,
            carried: sub.link.rtt.is_some() && !sub.queueing && sub.link.egress_loss < CARRIED_LOSS,
            // Where packets queued lately, steps up wait for the link to deliver them.
            delivered: sub
                .queued_at
                .filter(|at| now.saturating_duration_since(*at) < PROOF_MEMORY)
                .and(sub.delivered),
        };
        let totals = allocate(now, link, &mut tracks, &mut self.alloc_order);
        let Some(sub) = self.participants.get_mut(&id) else {
            return;
        };
        // Without RED negotiated (as in encrypted meetings) nothing is wrapped, whatever
        // the level.
        if red != sub.red_levels {
            info!(
                participant = id,
                levels = red,
                wanted = sub.red_wanted,
                loss = sub.link.egress_loss,
                "redundant audio towards it"
            );
            sub.red_levels = red;
        }
        let (estimate, raw) = (sub.estimate, sub.raw_estimate);
        if totals.unproven != sub.unproven {
            sub.unproven = totals.unproven;
            debug!(subscriber = id, waiting = totals.unproven, ?estimate, delivered = ?sub.delivered,
                sent = totals.sent, "steps up wait for the link to deliver them");
        }
        for ((publisher, kind, s), t) in sub.open_subscriptions_mut().zip(&tracks) {
            if !kind.is_video() {
                continue;
            }
            s.limited_at = t.limited_at;
            s.allocated = t.bitrate;
            if s.temporal.target != t.temporal {
                debug!(subscriber = id, publisher, ?kind, temporal = ?t.temporal, "temporal cap");
                s.temporal.target = t.temporal;
            }
            let before = s.choice.target;
            s.choice.set_target(t.chosen);
            if before != t.chosen {
                debug!(subscriber = id, publisher, ?kind, from = ?before, to = ?t.chosen,
                    ?estimate, ?raw, given = t.bitrate, sent = totals.sent, "target layer");
            }
            if let Some(target) = t.chosen
                && s.choice.switching()
                && s.choice
                    .asked_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= KEYFRAME_RETRY)
            {
                s.choice.asked_at = Some(now);
                self.to_request_keyframe.push((publisher, kind, target));
            }
        }
        // Let the estimator probe for what the tiles would take, and pad up to the next
        // layer held back so the estimate can grow to it (str0m's `Bwe::set_bitrate`).
        let minimum = totals
            .next_step
            .map_or(0, |step| totals.sent + step)
            .min(totals.wanted);
        // No padding into a standing queue: with an estimate over the link's rate (a probe
        // that fitted its burst allowance) padding up to the estimate keeps the queue full,
        // and media is dropped with the padding. (Loss alone may be random, and says
        // nothing of room.)
        let minimum = if sub.queueing {
            0
        } else if link.delivered.is_some() {
            // Where steps up must be proven, as far over the next step as raising leaves
            // free: a link that delivers that has room for the step.
            proving_rate(minimum)
        } else {
            minimum
        };
        let wanted = (minimum, totals.wanted.max(minimum));
        if wanted != sub.bwe_asked {
            sub.bwe_asked = wanted;
            sub.rtc
                .bwe()
                .set_bitrate(Bitrate::bps(wanted.0), Bitrate::bps(wanted.1));
            self.mark_poll(id);
        }
        self.alloc_tracks = tracks;
    }

    fn evaluate_speakers(&mut self) {
        let mut changes = Vec::new();
        for (key, room) in self.rooms.iter_mut() {
            let levels = room
                .members
                .iter()
                .filter_map(|m| self.participants.get(m))
                .filter(|p| p.info.audio && p.loudness.1 > 0)
                .map(|p| (p.id, p.loudness.0 / p.loudness.1));
            if let Some(id) = room.speaker.judge(levels) {
                changes.push((*key, id));
            }
        }
        for p in self.participants.values_mut() {
            p.loudness = (0, 0);
        }
        for (key, id) in changes {
            self.broadcast(
                key,
                None,
                ServerMessage::ActiveSpeaker {
                    participant_id: Some(id),
                },
            );
        }
    }
}

fn send_keyframe_request(p: &mut Participant, kind: TrackKind, layer: Layer) {
    let Some(mid) = p.publish_mid(kind) else {
        return;
    };
    let rid = p.rid_of(kind, layer);
    let mut api = p.rtc.direct_api();
    if let Some(rx) = api.stream_rx_by_mid(mid, rid.map(Into::into)) {
        debug!(participant = p.id, ?kind, layer, "requesting keyframe");
        rx.request_keyframe(KeyframeRequestKind::Pli);
    }
}

/// What a packet of `kind` from `p` is: its VP8 descriptor when VP8, whether it starts a
/// keyframe, and the frame size a VP8 keyframe carries. Worked out once per packet.
fn inspect(
    p: &Participant,
    kind: TrackKind,
    packet: &RtpPacket,
) -> (Option<Vp8Descriptor>, Keyframe, Option<(u16, u16)>) {
    let pt = packet.header.payload_type;
    if !kind.is_video() {
        return (None, Keyframe::Unknown, None);
    }
    if p.is_vp8(pt) {
        return match Vp8Descriptor::parse(&packet.payload) {
            Ok(d) => {
                let (keyframe, size) = vp8_keyframe(&d, &packet.payload);
                (Some(d), keyframe, size)
            }
            Err(_) => (None, Keyframe::No, None),
        };
    }
    if p.is_h264(pt) {
        return (None, h264_keyframe(&packet.payload), None);
    }
    (None, Keyframe::Unknown, None)
}

/// The layers of publisher `p`'s `kind` track that arrive now, as the allocator sees them.
fn offers(p: &Participant, kind: TrackKind, now: Instant) -> [Option<LayerOffer>; LAYERS] {
    let mut out = [None; LAYERS];
    if !p.published[slot(kind)] {
        return out;
    }
    if !kind.is_video() {
        out[0] = Some(LayerOffer {
            // As measured; `allocate` turns it into what the voice costs a subscriber.
            bitrate: p.layers[slot(kind)].layers[0].bitrate,
            base_bitrate: 0,
            width: 0,
            height: 0,
        });
        return out;
    }
    let layers = &p.layers[slot(kind)];
    for (i, o) in out.iter_mut().enumerate() {
        let layer = i as Layer;
        if layers.is_active(now, layer) {
            *o = Some(LayerOffer {
                bitrate: layers.layers[i].bitrate,
                base_bitrate: layers.layers[i].base_bitrate,
                width: u32::from(layers.width(layer)),
                height: u32::from(layers.height(layer)),
            });
        }
    }
    out
}

fn validate_room(room: &str, max: usize) -> Result<(), String> {
    if room.is_empty() {
        return Err("room name is empty".into());
    }
    if room.chars().count() > max {
        return Err(format!("room name longer than {max} characters"));
    }
    if let Some(c) = room
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "room name may only contain letters, digits, '-', '_' and '.', not {c:?}"
        ));
    }
    Ok(())
}

fn validate_name(name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("name is empty".into());
    }
    if name.chars().count() > max {
        return Err(format!("name longer than {max} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("name contains control characters".into());
    }
    Ok(())
}

/// Our host candidates for `config`'s advertised addresses: UDP on the media port, and when
/// `ice_tcp_port` is known, TCP passive (RFC 6544) on it. str0m gives host TCP candidates a
/// lower type preference than host UDP (90 against 126), so browsers that reach both use UDP.
fn host_candidates(config: &SfuConfig, ice_tcp_port: Option<u16>) -> Vec<Candidate> {
    let mut out = Vec::new();
    for ip in &config.public_ips {
        let udp = SocketAddr::new(*ip, config.media_bind.port());
        match Candidate::host(udp, "udp") {
            Ok(c) => out.push(c),
            Err(e) => warn!(addr = %udp, "not advertising candidate: {e}"),
        }
        if let Some(port) = ice_tcp_port {
            let tcp = SocketAddr::new(*ip, port);
            match Candidate::builder()
                .tcp()
                .host(tcp)
                .tcptype(TcpType::Passive)
                .build()
            {
                Ok(c) => out.push(c),
                Err(e) => warn!(addr = %tcp, "not advertising TCP candidate: {e}"),
            }
        }
    }
    out
}
