//! Meetings in the core: joins, host controls, time limits, snapshots and restores go to the
//! room's [`Meeting`] (`policy.rs`), and the [`Effect`]s it returns are carried out here —
//! the one place where policy turns into media connections, signals and events. No rule of
//! who may do what lives in this file.

use std::time::Instant;

use str0m::Rtc;
use tracing::{info, warn};
use veche_proto::{
    EndReason, ErrorCode, PROTOCOL_VERSION, ParticipantId, ServerMessage, TrackKind,
};

use super::outbox::Hold;
use super::policy::{Actor, Effect, Entered, Entrant, Meeting, Now};
use super::resume;
use super::{
    HostControl, INITIAL_ESTIMATE, Output, RoomKey, STATS_INTERVAL, Sfu, validate_name,
    validate_room,
};
use crate::meeting::{
    ControlError, JoinGrant, JoinRequest, LiveMeeting, MeetingSnapshot, RemoteActor, SfuEvent,
};
use crate::participant::{Participant, slot};

impl Sfu {
    /// A host control from outside the meeting (the REST API), on the running meeting in
    /// `room`. Its effects go out like a participant's; a refusal comes back as the error.
    pub fn handle_control(
        &mut self,
        now: Instant,
        unix_ms: u64,
        room: &str,
        actor: RemoteActor,
        action: HostControl,
    ) -> Result<(), ControlError> {
        self.clock = (now, unix_ms);
        self.last_now = self.last_now.max(now);
        let Some(key) = self.rooms.key_of(room) else {
            return Err(ControlError {
                code: ErrorCode::MeetingNotFound,
                message: "the meeting is not in progress".into(),
            });
        };
        let actor = Actor::Remote {
            role: actor.role,
            user: actor.user,
            ip: actor.ip,
        };
        self.refusal = None;
        self.control(now, key, &actor, action);
        self.run_queues(now, true);
        match self.refusal.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The running meeting in `room`, if any.
    pub fn live_meeting(&self, room: &str) -> Option<LiveMeeting> {
        let key = self.rooms.key_of(room)?;
        let room = self.rooms.get(&key)?;
        Some(LiveMeeting {
            meeting: room.meeting.state(),
            participants: room
                .members
                .iter()
                .filter_map(|m| self.participants.get(m))
                .map(|p| p.info.clone())
                .collect(),
            waiting: room.meeting.waiting_list(),
        })
    }

    /// Brings back a meeting a restart interrupted, from its latest snapshot: its people
    /// are recognised when they join again (see `docs/protocol.md`, "Coming back"). It lasts
    /// [`crate::Limits::resume_window`] for the first of them. `false` when the snapshot is
    /// not usable (bad room name, or the room already runs).
    pub fn restore(&mut self, now: Instant, unix_ms: u64, snapshot: &MeetingSnapshot) -> bool {
        self.clock = (now, unix_ms);
        self.last_now = self.last_now.max(now);
        let limits = &self.config.limits;
        if validate_room(&snapshot.room, limits.max_room_chars).is_err()
            || self.rooms.key_of(&snapshot.room).is_some()
        {
            return false;
        }
        let meeting = Meeting::restore(
            snapshot,
            Now { at: now, unix_ms },
            limits.max_participants_per_room,
            limits.resume_window,
        );
        info!(room = %snapshot.room, people = snapshot.people.len(), "meeting restored");
        self.rooms
            .create(&snapshot.room, meeting, self.config.limits.e2ee);
        true
    }

    pub(super) fn join(&mut self, now: Instant, id: ParticipantId, req: JoinRequest) {
        let JoinRequest {
            version,
            room,
            name,
            grant,
            resume,
            e2ee,
            require_e2ee,
        } = req;
        if self.participants.contains_key(&id) || self.waiting.contains_key(&id) {
            return self.error(id, ErrorCode::AlreadyJoined, "already joined a room");
        }
        if version != PROTOCOL_VERSION {
            return self.error(
                id,
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}"
                ),
            );
        }
        let limits = &self.config.limits;
        if let Err(why) = validate_room(&room, limits.max_room_chars) {
            return self.error(id, ErrorCode::InvalidRoom, why);
        }
        let name = name.trim().to_owned();
        if let Err(why) = validate_name(&name, limits.max_name_chars) {
            return self.error(id, ErrorCode::InvalidName, why);
        }
        let key = self.room_for(&room, &grant, require_e2ee);
        let Some(r) = self.rooms.get(&key) else {
            return;
        };
        let identity = self.identity(&r.meeting, &room, &grant, resume.as_deref());
        let entrant = Entrant {
            id,
            name,
            grant,
            key: identity,
            e2ee,
        };
        let now_ = self.now_at(now);
        let Some(r) = self.rooms.get_mut(&key) else {
            return;
        };
        let fx = r.meeting.join(now_, entrant);
        if r.meeting.is_waiting(id) {
            self.waiting.insert(id, key);
        }
        self.apply(now, key, &Actor::Member(id), fx);
        self.drop_room_if_over(key);
    }

    /// Who a joiner is across connections: their account, or the guest their resume token
    /// names. A guest with no valid token (or whose token is in use by someone present) is a
    /// new guest; one whose address is unknown cannot be given a token at all.
    fn identity(
        &self,
        meeting: &Meeting,
        room: &str,
        grant: &JoinGrant,
        token: Option<&str>,
    ) -> Option<String> {
        if let Some(u) = &grant.user {
            return Some(format!("user:{}", u.id));
        }
        let ip = grant.ip?;
        let now_s = self.unix_ms_at(self.last_now) / 1000;
        let known = token.zip(meeting.started_ms()).and_then(|(t, started)| {
            resume::verify(&self.config.resume_key, room, started, t, ip, now_s)
        });
        if let Some(guest) = known {
            let key = format!("guest:{guest}");
            if !meeting.is_present(&key) {
                return Some(key);
            }
            warn!(
                room,
                "a resume token already in use was presented; treated as a new guest"
            );
        }
        Some(format!("guest:{}", resume::new_guest_id()))
    }

    /// The room for `name`, created on first use; end-to-end encrypted when the grant says
    /// so, or when `require_e2ee` creates an instant guest room.
    fn room_for(&mut self, name: &str, grant: &JoinGrant, require_e2ee: bool) -> RoomKey {
        let server_cap = self.config.limits.max_participants_per_room;
        let limits = self.config.limits.e2ee;
        if let Some(key) = self.rooms.key_of(name)
            && let Some(room) = self.rooms.get_mut(&key)
        {
            room.meeting.update_from(grant, server_cap);
            room.follow_e2ee(limits);
            return key;
        }
        let mut meeting = Meeting::new(name, grant.meeting.clone(), server_cap, server_cap);
        meeting.update_from(grant, server_cap);
        if require_e2ee && grant.meeting.is_none() {
            meeting.require_e2ee();
        }
        self.rooms.create(name, meeting, limits)
    }

    pub(super) fn control(
        &mut self,
        now: Instant,
        key: RoomKey,
        actor: &Actor,
        control: HostControl,
    ) {
        let now_ = self.now_at(now);
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        let fx = room.meeting.control(now_, actor, control);
        self.apply(now, key, actor, fx);
    }

    /// A waiting connection left or was turned away.
    pub(super) fn remove_waiter(&mut self, id: ParticipantId) {
        let Some(key) = self.waiting.remove(&id) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        let fx = room.meeting.withdraw(id);
        let now = self.last_now;
        self.apply(now, key, &Actor::Member(id), fx);
        self.drop_room_if_over(key);
    }

    /// The meeting's side of a member leaving (after the core has taken them out of the
    /// room's media): remembered, and the host role passed on.
    pub(super) fn leave_meeting(&mut self, key: RoomKey, id: ParticipantId) {
        let now = self.last_now;
        let now_ = self.now_at(now);
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        let fx = room.meeting.leave(now_, id);
        self.apply(now, key, &Actor::Member(id), fx);
    }

    /// A member raised or lowered their hand.
    pub(super) fn raise_hand(&mut self, now: Instant, id: ParticipantId, raised: bool) {
        let Some(key) = self.participants.get(&id).map(|p| p.room_key()) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        let fx = room.meeting.raise_hand(id, raised);
        self.apply(now, key, &Actor::Member(id), fx);
    }

    /// The server stored the snapshots of `room` up to sequence number `seq` (those of
    /// [`SfuEvent::MeetingSaved`]): the news of the changes in them goes out.
    pub fn handle_saved(&mut self, now: Instant, room: &str, seq: u64) {
        self.last_now = self.last_now.max(now);
        if self.rooms.saved(room, seq) {
            self.out.recheck();
        }
    }

    /// The next snapshot sequence number.
    fn next_seq(&mut self) -> u64 {
        self.last_snapshot += 1;
        self.last_snapshot
    }

    /// The hold for news of a change just made to room `key`'s meeting: until the snapshot
    /// that will hold it is stored. `None` when nothing changed, or nothing is stored.
    pub(super) fn news_hold(&mut self, key: RoomKey) -> Option<Hold> {
        let room = self.rooms.get_mut(&key)?;
        if !room.meeting.is_dirty() {
            return None;
        }
        let last = &mut self.last_snapshot;
        let seq = *room.next_snapshot.get_or_insert_with(|| {
            *last += 1;
            *last
        });
        if !self.unsaved.contains(&key) {
            self.unsaved.push(key);
        }
        let wait = self.config.limits.news_wait?;
        let deadline = self.last_now + wait;
        self.earliest = self.earliest.min(deadline);
        Some(Hold {
            room: key,
            seq,
            deadline,
        })
    }

    /// Sends on the held news whose changes are stored (or have waited long enough).
    pub(super) fn release_news(&mut self, now: Instant) {
        let rooms = &self.rooms;
        let late = self.out.release(now, |key, seq| rooms.is_stored(key, seq));
        self.rooms.expire_endings(now);
        if late > 0 {
            warn!(
                messages = late,
                "news of meeting changes sent before the changes were stored (the database is \
                 slow or failing)"
            );
        }
    }

    /// Carries out the meeting policy's effects in room `key`, in order. `actor` is whoever
    /// caused them (refusals go to them). When they changed the meeting's live state, the
    /// messages they send are held until it is stored.
    fn apply(&mut self, now: Instant, key: RoomKey, actor: &Actor, effects: Vec<Effect>) {
        let outer = self.out.holding();
        if let Some(hold) = self.news_hold(key) {
            self.out.hold_with(hold);
        }
        self.carry_out(now, key, actor, effects);
        self.out.end_hold(outer);
    }

    fn carry_out(&mut self, now: Instant, key: RoomKey, actor: &Actor, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Signal(id, msg) => self.out.push_back(Output::Signal(id, msg)),
                Effect::Broadcast(msg) => self.broadcast(key, None, msg),
                Effect::Error(id, code, why) => self.error(id, code, why),
                Effect::Refuse(e) => match actor {
                    Actor::Member(id) => self.error(*id, e.code, e.message),
                    Actor::Remote { .. } => {
                        self.refusal.get_or_insert(e);
                    }
                },
                Effect::Enter(entered) => {
                    self.waiting.remove(&entered.id);
                    self.admit_now(now, key, *entered);
                }
                Effect::RemoveMember(id) => self.remove(id),
                Effect::Dismissed(id) => {
                    self.waiting.remove(&id);
                }
                Effect::StopTrack(id, kind) => self.set_media(id, kind, false),
                Effect::Gate(id, gate) => {
                    if let Some(p) = self.participants.get_mut(&id) {
                        p.host_muted = gate;
                    }
                }
                Effect::Role(id, role) => {
                    if let Some(p) = self.participants.get_mut(&id) {
                        p.info.role = role;
                    }
                }
                Effect::Hand(id, raised) => {
                    if let Some(p) = self.participants.get_mut(&id) {
                        p.info.hand_raised = raised;
                    }
                }
                Effect::Audit(a) => self.out.push_back(Output::Event(SfuEvent::Audit(a))),
                Effect::Report(event) => self.out.push_back(Output::Event(event)),
                Effect::End(reason) => return self.end_meeting(now, key, reason),
            }
        }
    }

    /// Lets someone the meeting admitted into room `key`: creates their media connection,
    /// tells everyone, and offers them the room's tracks.
    fn admit_now(&mut self, now: Instant, key: RoomKey, e: Entered) {
        let Some(room) = self.rooms.get(&key) else {
            return;
        };
        let members = room.members.clone();
        let room_name = room.name.clone();
        let encrypted = room.e2ee.is_some();
        let resume = match (&e.key, e.ip, room.meeting.started_ms()) {
            (Some(k), Some(ip), Some(started)) if e.is_guest => {
                k.strip_prefix("guest:").map(|guest| {
                    let expires = (self.unix_ms_at(now) / 1000)
                        .saturating_add(self.config.limits.resume_token_ttl.as_secs());
                    resume::mint(
                        &self.config.resume_key,
                        &room_name,
                        started,
                        guest,
                        ip,
                        expires,
                    )
                })
            }
            _ => None,
        };
        let mut rtc = Rtc::builder()
            .set_crypto_provider(self.crypto.clone())
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs()
            // RED offered with Opus, for redundancy towards lossy subscribers (`Redundancy`
            // in subscription.rs). Chromium then sends its voice in RED too, which the core
            // unwraps. Not in an end-to-end encrypted meeting: there the browser would
            // encrypt the RED payload whole, the SFU could neither unwrap it for a subscriber
            // without RED nor add to it, and the receiving browser decrypts before it splits.
            .enable_opus(true, !encrypted)
            .enable_vp8(true)
            .enable_h264(true)
            .enable_bwe(Some(INITIAL_ESTIMATE))
            .set_stats_interval(Some(STATS_INTERVAL))
            .build(now);
        let ufrag = self.unique_ufrag(&mut rtc);
        self.demux.add(e.id, ufrag.clone());
        let id = e.id;
        let mut p = Participant::new(id, key, e.name, rtc, ufrag, &self.candidates, now);
        p.estimate = Some(INITIAL_ESTIMATE.as_u64());
        p.info.role = e.role;
        p.info.hand_raised = e.hand_raised;
        p.info.e2ee = e.e2ee;
        p.host_muted = e.host_muted;
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
        info!(participant = id, room = %room_name, name = %p.info.name, role = ?e.role, "joined");
        self.out.push_back(Output::Signal(
            id,
            ServerMessage::Joined {
                version: PROTOCOL_VERSION,
                participant_id: id,
                room: room_name,
                participants: others,
                role: e.role,
                meeting: e.meeting,
                waiting: e.waiting,
                resume,
                host_muted: TrackKind::ALL
                    .into_iter()
                    .filter(|k| e.host_muted[slot(*k)])
                    .collect(),
                // Filled in by the signalling layer, which holds the TURN secret and the
                // connections.
                ice_servers: Vec::new(),
                reconnect: None,
            },
        ));
        if e.hand_raised {
            // Back with the hand they had up: their own client learns it too.
            self.out.push_back(Output::Signal(
                id,
                ServerMessage::Hand {
                    participant_id: id,
                    raised: true,
                },
            ));
        }
        self.broadcast(
            key,
            None,
            ServerMessage::ParticipantJoined {
                participant: p.info.clone(),
            },
        );
        // The speaker is announced only when it changes: a newcomer learns the current one now.
        if let Some(speaker) = self.rooms.get(&key).and_then(|r| r.speaker.current()) {
            self.out.push_back(Output::Signal(
                id,
                ServerMessage::ActiveSpeaker {
                    participant_id: Some(speaker),
                },
            ));
        }
        self.participants.insert(id, p);
        if let Some(r) = self.rooms.get_mut(&key) {
            r.members.push(id);
        }
        self.negotiate(id);
        self.mark_poll(id);
    }

    /// Ends the meeting for everyone in it and everyone waiting, and records its usage.
    pub(super) fn end_meeting(&mut self, now: Instant, key: RoomKey, reason: EndReason) {
        let now_ = self.now_at(now);
        let Some(room) = self.rooms.remove(&key) else {
            return;
        };
        info!(room = %room.name, ?reason, "meeting ended");
        // Told it is over only once that is stored: a crash must not bring it back.
        let seq = self.next_seq();
        let outer = self.out.holding();
        if let Some(wait) = self.config.limits.news_wait {
            let until = now + wait;
            self.rooms.ending(key, &room.name, seq, until);
            self.earliest = self.earliest.min(until);
            self.out.hold_with(Hold {
                room: key,
                seq,
                deadline: until,
            });
        }
        let waiting: Vec<_> = room.meeting.waiting_list().iter().map(|w| w.id).collect();
        for id in room.members.iter().chain(waiting.iter()) {
            self.take_participant(*id);
            self.waiting.remove(id);
            self.out
                .push_back(Output::Signal(*id, ServerMessage::MeetingEnded { reason }));
            self.out.push_back(Output::Close(*id));
        }
        self.out.end_hold(outer);
        self.finish(&room.name, &room.meeting, now_, seq);
    }

    /// Forgets a room nobody is in, waiting for or coming back to, recording its usage.
    pub(super) fn drop_room_if_over(&mut self, key: RoomKey) {
        let now = self.last_now;
        if self.rooms.get(&key).is_some_and(|r| r.is_over(now))
            && let Some(r) = self.rooms.remove(&key)
        {
            let now_ = self.now_at(now);
            let seq = self.next_seq();
            self.finish(&r.name, &r.meeting, now_, seq);
        }
    }

    /// A meeting is over: its snapshot must not come back (the deletion is `seq`), and its
    /// usage is recorded.
    fn finish(&mut self, room: &str, meeting: &Meeting, now: Now, seq: u64) {
        // News held for it goes out, once its end is stored if that is awaited.
        self.out.recheck();
        self.out.push_back(Output::Event(SfuEvent::MeetingClosed {
            room: room.to_owned(),
            seq,
        }));
        if let Some(usage) = meeting.usage(now) {
            self.out
                .push_back(Output::Event(SfuEvent::MeetingFinished(usage)));
        }
    }

    /// Time limits, and restored meetings nobody came back to.
    pub(super) fn enforce_time_limits(&mut self, now: Instant) {
        let minute = self.config.limits.minute;
        for key in self.rooms.keys() {
            let Some(room) = self.rooms.get_mut(&key) else {
                continue;
            };
            let fx = room.meeting.tick(now, minute);
            // The clock's own doing: refusals cannot happen, and nobody acts.
            self.apply(now, key, &Actor::Member(0), fx);
            self.drop_room_if_over(key);
        }
    }

    /// A snapshot of every meeting that changed since the last call (all of them with
    /// `all`), for the server to store.
    pub(super) fn save_meetings(&mut self, now: Instant, all: bool) {
        for key in self.rooms.keys() {
            self.save_meeting(now, key, all);
        }
    }

    /// A snapshot of each room with news held for a change (see [`Sfu::news_hold`]).
    pub(super) fn save_unsaved(&mut self, now: Instant) {
        let mut keys = std::mem::take(&mut self.unsaved);
        for key in keys.drain(..) {
            self.save_meeting(now, key, false);
        }
        self.unsaved = keys;
    }

    /// A snapshot of room `key`'s meeting if it changed since the last (or with `always`).
    fn save_meeting(&mut self, now: Instant, key: RoomKey, always: bool) {
        let now_ = self.now_at(now);
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        if !(room.meeting.take_dirty() || always) {
            return;
        }
        let last = &mut self.last_snapshot;
        let seq = room.next_snapshot.take().unwrap_or_else(|| {
            *last += 1;
            *last
        });
        let snapshot = Box::new(room.meeting.snapshot(now_));
        self.out
            .push_back(Output::Event(SfuEvent::MeetingSaved { snapshot, seq }));
    }

    /// The policy's view of `now`.
    fn now_at(&self, now: Instant) -> Now {
        Now {
            at: now,
            unix_ms: self.unix_ms_at(now),
        }
    }

    /// The wall clock at `t`, extrapolated from the latest input that carried it.
    pub(super) fn unix_ms_at(&self, t: Instant) -> u64 {
        let (at, unix) = self.clock;
        if t >= at {
            unix + t.duration_since(at).as_millis() as u64
        } else {
            unix.saturating_sub(at.duration_since(t).as_millis() as u64)
        }
    }
}
