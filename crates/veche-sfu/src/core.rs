//! The sans-IO SFU core.

mod command;
mod demux;
mod host;
mod room;

pub use command::{Command, HostControl};

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::config::CryptoProvider;
use str0m::media::KeyframeRequestKind;
use str0m::net::{DatagramRecv, Protocol, Receive, TcpType};
use str0m::rtp::{ExtensionValues, RtpPacket, Vp8Descriptor};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output as RtcOutput, Rtc};
use tracing::{debug, info, warn};
use veche_proto::{ErrorCode, PROTOCOL_VERSION, ParticipantId, ServerMessage, TrackKind};

use self::demux::{Demux, Route};
use crate::SfuConfig;
use crate::id_map::IdMap;
use crate::meeting::{JoinGrant, JoinRequest, MeetingLive, SfuEvent};
use crate::participant::{AnswerError, Participant, slot};

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

/// How often deferred keyframe requests and similar housekeeping run.
const TICK: Duration = Duration::from_millis(100);
/// How often the active speaker is re-evaluated.
const SPEAKER_WINDOW: Duration = Duration::from_millis(400);
/// Mean `127 - level` (RFC 6464, -dBov) above which a participant counts as speaking:
/// louder than -60 dBov.
const SPEAKING_LOUDNESS: u32 = 67;
/// Trickled candidates accepted per participant; more is abuse.
const MAX_REMOTE_CANDIDATES: usize = 32;

use self::room::{RoomKey, Rooms};

/// A connection held in a room's waiting room: not a participant yet (no media).
struct Waiter {
    room: RoomKey,
    name: String,
    grant: JoinGrant,
    reason: veche_proto::WaitReason,
}

/// The SFU's rooms, participants and forwarding, with no I/O.
///
/// # Driving contract
/// Inputs are [`Sfu::handle_command`], [`Sfu::handle_join`], [`Sfu::handle_control`],
/// [`Sfu::handle_disconnect`], [`Sfu::handle_datagram`] and [`Sfu::handle_timeout`]; outputs
/// come out of [`Sfu::poll_output`].
///
/// - After an input, drain [`Sfu::poll_output`] until it returns [`Output::Timeout`] before
///   waiting for anything. Datagrams may be fed in a batch first: any number of
///   `handle_datagram` calls in a row, then one drain (the driver feeds what one socket
///   wake-up reads). Forwarding into subscribers' connections is deferred to that drain, so a
///   batch costs one str0m poll per subscriber instead of one per packet; nothing is lost or
///   reordered by batching (`tests/batched_datagrams.rs`). Other inputs may also come between
///   drains; outputs queue up in order.
/// - Call `handle_timeout` no later than the instant of the last [`Output::Timeout`].
/// - Time only moves through the `now` arguments, which must not go backwards.
///
/// # Parts
/// The core owns typed parts, each with one job: the `Demux` routes datagrams to
/// participants; a `Participant` owns its str0m `Rtc` — the one place that drives str0m —
/// and its m-lines; each subscription line owns a `Subscription`
/// (rewriting of what it forwards, exportable so it can move); rooms hold members and the
/// live meeting (`host.rs` holds the meeting policy). See `docs/architecture.md`.
pub struct Sfu {
    config: SfuConfig,
    crypto: Arc<CryptoProvider>,
    /// Our host candidates: UDP on the media port, and TCP passive (lower priority) on the
    /// ICE-TCP port when there is one.
    candidates: Vec<Candidate>,
    /// The ICE-TCP listener's port, once known.
    ice_tcp_port: Option<u16>,
    participants: IdMap<ParticipantId, Participant>,
    waiters: HashMap<ParticipantId, Waiter>,
    rooms: Rooms,
    /// Which participant a datagram is for.
    demux: Demux,
    out: VecDeque<Output>,
    earliest: Instant,
    next_tick: Instant,
    next_speaker_eval: Instant,
    /// Incoming packets waiting to be fanned out: (publisher, slot, packet).
    to_forward: VecDeque<(ParticipantId, TrackKind, RtpPacket)>,
    /// Keyframe requests waiting to reach publishers.
    to_request_keyframe: Vec<(ParticipantId, TrackKind)>,
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
            waiters: HashMap::new(),
            rooms: Rooms::default(),
            demux: Demux::default(),
            out: VecDeque::new(),
            earliest: now,
            next_tick: now,
            next_speaker_eval: now + SPEAKER_WINDOW,
            to_forward: VecDeque::new(),
            to_request_keyframe: Vec::new(),
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
        self.participants.contains_key(&id) || self.waiters.contains_key(&id)
    }

    pub fn participant_count(&self) -> usize {
        self.participants.len()
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
            Command::Leave if self.waiters.contains_key(&id) => {
                self.remove_waiter(id);
                self.out.push_back(Output::Close(id));
            }
            _ if self.waiters.contains_key(&id) => {
                self.error(id, ErrorCode::NotJoined, "waiting to be admitted by a host")
            }
            _ if !self.participants.contains_key(&id) => self.error(
                id,
                ErrorCode::NotJoined,
                "send a join message before anything else",
            ),
            Command::Answer { sdp } => self.answer(id, &sdp),
            Command::Candidate { candidate } => self.candidate(id, &candidate),
            Command::SetMedia { kind, enabled } => self.set_media(id, kind, enabled),
            Command::Chat { text } => self.chat(id, unix_ms, text),
            Command::RaiseHand { raised } => {
                if let Some(p) = self.participants.get_mut(&id) {
                    p.info.hand_raised = raised;
                    let room = p.room_key();
                    self.broadcast(
                        room,
                        None,
                        ServerMessage::Hand {
                            participant_id: id,
                            raised,
                        },
                    );
                }
            }
            Command::Leave => {
                self.remove(id);
                self.out.push_back(Output::Close(id));
            }
            Command::Host(control) => self.host_action(now, &host::Actor::Member(id), control),
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
            self.flush_deferred_keyframes(now);
            self.enforce_time_limits(now);
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
        self.run_queues(now, true);
        self.earliest = self
            .participants
            .values()
            .map(|p| p.next_timeout)
            .fold(self.next_tick.min(self.next_speaker_eval), Instant::min);
    }

    /// Tells everyone the server is going away and forgets them.
    pub fn shutdown(&mut self) {
        let ids: Vec<_> = self
            .participants
            .keys()
            .chain(self.waiters.keys())
            .copied()
            .collect();
        for id in ids {
            self.error(id, ErrorCode::ShuttingDown, "the server is shutting down");
            self.out.push_back(Output::Close(id));
        }
        // Meetings cut short by the shutdown still count towards usage.
        let now = self.last_now;
        for room in self.rooms.values() {
            let remaining_ms = room
                .members
                .iter()
                .filter_map(|m| self.participants.get(m))
                .map(|p| now_since(p, now))
                .sum();
            if let Some(usage) = room.live.usage(now, remaining_ms) {
                self.out
                    .push_back(Output::Event(SfuEvent::MeetingFinished(usage)));
            }
        }
        self.participants.clear();
        self.waiters.clear();
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

    /// Lets `id` into room `key` now: creates its media connection, tells everyone, and
    /// offers it the room's tracks. The caller has checked the grant, bars and locks.
    fn admit_now(
        &mut self,
        now: Instant,
        key: RoomKey,
        id: ParticipantId,
        name: String,
        grant: JoinGrant,
    ) {
        let Some(room) = self.rooms.get(&key) else {
            return;
        };
        let members = room.members.clone();
        if members.len() >= room.live.max_participants {
            let max = room.live.max_participants;
            self.drop_room_if_empty(key);
            return self.error(
                id,
                ErrorCode::RoomFull,
                format!("the meeting is full ({max} participants)"),
            );
        }
        let room_name = room.name.clone();
        let role = self.role_on_entry(key, &grant);

        let mut rtc = Rtc::builder()
            .set_crypto_provider(self.crypto.clone())
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .build(now);
        let ufrag = self.unique_ufrag(&mut rtc);
        self.demux.add(id, ufrag.clone());
        let mut p = Participant::new(id, key, name, rtc, ufrag, &self.candidates, now);
        p.info.role = role;
        if let Some(known) = MeetingLive::returning_key(&grant, &p.info.name)
            .and_then(|k| self.rooms.get(&key)?.live.known.get(&k).copied())
        {
            p.host_muted = known;
        }
        p.grant = grant;
        let mut others = Vec::with_capacity(members.len());
        for m in &members {
            if let Some(other) = self.participants.get(m) {
                others.push(other.info.clone());
                for kind in TrackKind::ALL {
                    if other.published[slot(kind)] {
                        p.subscribe(*m, kind);
                    }
                }
            }
        }
        info!(participant = id, room = %room_name, name = %p.info.name, ?role, "joined");
        let waiting = if role.moderates() {
            self.waiting_list(key)
        } else {
            Vec::new()
        };
        self.start_clock(now, key, p.grant.max_duration);
        self.out.push_back(Output::Signal(
            id,
            ServerMessage::Joined {
                version: PROTOCOL_VERSION,
                participant_id: id,
                room: room_name,
                participants: others,
                role,
                meeting: self.meeting_state(key),
                waiting,
                // Filled in by the signalling layer, which holds the TURN secret.
                ice_servers: Vec::new(),
            },
        ));
        self.broadcast(
            key,
            None,
            ServerMessage::ParticipantJoined {
                participant: p.info.clone(),
            },
        );
        self.participants.insert(id, p);
        if let Some(r) = self.rooms.get_mut(&key) {
            r.members.push(id);
            r.live.peak = r.live.peak.max(r.members.len());
        }
        self.negotiate(id);
        self.mark_poll(id);
        if role.moderates() {
            self.release_host_absent(now, key);
        }
    }

    fn answer(&mut self, id: ParticipantId, sdp: &str) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let mut opened = Vec::new();
        let result = p.accept_answer(sdp, &mut opened);
        match result {
            Ok(()) => {
                for (publisher, kind) in opened {
                    if kind.is_video() {
                        self.to_request_keyframe.push((publisher, kind));
                    }
                }
            }
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
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let room = p.room_key();
        if enabled && p.host_muted[slot(kind)] {
            let allowed = p.info.role.moderates()
                || self
                    .rooms
                    .get(&room)
                    .is_some_and(|r| r.live.allow_self_unmute);
            if !allowed {
                return self.error(
                    id,
                    ErrorCode::UnmuteNotAllowed,
                    "a host muted you and participants may not unmute themselves; ask a host",
                );
            }
            p.host_muted[slot(kind)] = false;
            if kind.is_video() {
                // Subscribers' decoders lost the packets dropped while muted.
                self.to_request_keyframe.push((id, kind));
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
        let msg = ServerMessage::Chat {
            from: id,
            name: p.info.name.clone(),
            text: text.to_owned(),
            sent_at_ms: unix_ms,
        };
        self.broadcast(p.room_key(), None, msg);
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
        p.negotiate(&mut self.signals);
        for msg in self.signals.drain(..) {
            self.out.push_back(Output::Signal(id, msg));
        }
    }

    /// Forgets a participant and the addresses and ICE ufrag that routed datagrams to it.
    fn take_participant(&mut self, id: ParticipantId) -> Option<Participant> {
        let p = self.participants.remove(&id)?;
        self.demux.remove(id, &p.ufrag);
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
        room.live.participant_ms += now_since(&p, self.last_now);
        room.live.remember(&p.grant, &p.info.name, p.host_muted);
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
        if p.info.role == veche_proto::Role::Host {
            self.pass_on_host(key);
        }
        self.drop_room_if_empty(key);
    }

    /// Forgets a room nobody is in or waiting for, recording its usage.
    fn drop_room_if_empty(&mut self, key: RoomKey) {
        if self.rooms.get(&key).is_some_and(|r| r.is_empty())
            && let Some(r) = self.rooms.remove(&key)
            && let Some(usage) = r.live.usage(self.last_now, 0)
        {
            self.out
                .push_back(Output::Event(SfuEvent::MeetingFinished(usage)));
        }
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
                    Event::RtpPacket(packet) => {
                        let Some(kind) = p.slot_of(packet.header.ssrc) else {
                            continue;
                        };
                        if kind == TrackKind::Audio
                            && let Some(level) = packet.header.ext_vals.audio_level
                        {
                            p.loudness.0 += 127 - (level.clamp(0, 127) as u32);
                            p.loudness.1 += 1;
                        }
                        self.to_forward.push_back((id, kind, packet));
                    }
                    Event::KeyframeRequest(req) => {
                        if let Some(sub) = p.subscription_on(req.mid) {
                            self.to_request_keyframe.push(sub);
                        }
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
            while let Some((publisher, kind, packet)) = self.to_forward.pop_front() {
                self.fan_out(publisher, kind, &packet);
            }
            while let Some((publisher, kind)) = self.to_request_keyframe.pop() {
                self.request_keyframe(now, publisher, kind);
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

    fn fan_out(&mut self, publisher: ParticipantId, kind: TrackKind, packet: &RtpPacket) {
        // A track a host muted is not forwarded, whatever the publisher's client keeps sending.
        let Some(p) = self
            .participants
            .get(&publisher)
            .filter(|p| !p.host_muted[slot(kind)])
        else {
            return;
        };
        let key = p.room_key();
        // Parsed once per packet, not per subscriber.
        let vp8 = p
            .is_vp8(packet.header.payload_type)
            .then(|| Vp8Descriptor::parse(&packet.payload).ok())
            .flatten();
        let Some(room) = self.rooms.get(&key) else {
            return;
        };
        let ext_vals = ExtensionValues {
            audio_level: packet.header.ext_vals.audio_level,
            voice_activity: packet.header.ext_vals.voice_activity,
            video_orientation: packet.header.ext_vals.video_orientation,
            ..Default::default()
        };
        for sub_id in &room.members {
            if *sub_id == publisher {
                continue;
            }
            let Some(sub) = self.participants.get_mut(sub_id) else {
                continue;
            };
            if !sub.forward(publisher, kind, packet, vp8.as_ref(), &ext_vals) {
                continue;
            }
            self.counters.forwarded_packets += 1;
            self.counters.forwarded_bytes += packet.payload.len() as u64;
            if !sub.queued_poll {
                sub.queued_poll = true;
                self.to_poll.push(*sub_id);
            }
        }
    }

    fn request_keyframe(&mut self, now: Instant, publisher: ParticipantId, kind: TrackKind) {
        let Some(p) = self.participants.get_mut(&publisher) else {
            return;
        };
        if !p.keyframes[slot(kind)].request(now) {
            self.earliest = self.earliest.min(self.next_tick);
            return;
        }
        send_keyframe_request(p, kind);
        self.mark_poll(publisher);
    }

    fn flush_deferred_keyframes(&mut self, now: Instant) {
        let mut sent = Vec::new();
        for p in self.participants.values_mut() {
            for kind in [TrackKind::Video, TrackKind::Screen] {
                let due = p.keyframes[slot(kind)].deferred_due();
                if due.is_some_and(|t| t <= now) && p.keyframes[slot(kind)].request(now) {
                    send_keyframe_request(p, kind);
                    sent.push(p.id);
                }
            }
        }
        for id in sent {
            self.mark_poll(id);
        }
    }

    fn evaluate_speakers(&mut self) {
        let mut changes = Vec::new();
        for (key, room) in self.rooms.iter_mut() {
            let loudest = room
                .members
                .iter()
                .filter_map(|m| self.participants.get(m))
                .filter(|p| p.info.audio && p.loudness.1 > 0)
                .map(|p| (p.loudness.0 / p.loudness.1, p.id))
                .filter(|(loudness, _)| *loudness >= SPEAKING_LOUDNESS)
                .max();
            if let Some((_, id)) = loudest
                && room.speaker != Some(id)
            {
                room.speaker = Some(id);
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

/// How long `p` has been in its room, in milliseconds.
fn now_since(p: &Participant, now: Instant) -> u64 {
    now.saturating_duration_since(p.joined_at).as_millis() as u64
}

fn send_keyframe_request(p: &mut Participant, kind: TrackKind) {
    let Some(mid) = p.publish_mid(kind) else {
        return;
    };
    let mut api = p.rtc.direct_api();
    if let Some(rx) = api.stream_rx_by_mid(mid, None) {
        debug!(participant = p.id, ?kind, "requesting keyframe");
        rx.request_keyframe(KeyframeRequestKind::Pli);
    }
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
