//! Meetings on top of rooms: who gets in (waiting room, locks, bars, caps), roles, the host
//! controls, and the plan's time limit. Every check happens here, on the server: a client
//! that skips its own UI checks gains nothing.

use std::time::{Duration, Instant};

use tracing::info;
use veche_proto::{
    EndReason, ErrorCode, MeetingState, PROTOCOL_VERSION, ParticipantId, Role, ServerMessage,
    TrackKind, WaitReason, WaitingInfo,
};

use super::{HostControl, Output, RoomKey, Sfu, Waiter, now_since, validate_name, validate_room};
use crate::meeting::{
    AuditEvent, ControlError, JoinGrant, JoinRequest, LiveMeeting, MeetingLive, RemoteActor,
    SfuEvent, Started, UserRef,
};
use crate::participant::slot;

/// Time-limit warnings go out when this many minutes are left.
const WARN_AT_MINUTES: [u32; 2] = [5, 1];

/// Who is using a host control.
#[derive(Debug)]
pub(super) enum Actor {
    /// A participant of the meeting, over its signalling connection.
    Member(ParticipantId),
    /// An API caller, acting on room `room`.
    Remote(Remote),
}

#[derive(Debug)]
pub(super) struct Remote {
    room: RoomKey,
    role: Role,
    user: Option<UserRef>,
    ip: Option<std::net::IpAddr>,
}

impl Actor {
    /// The participant id shown as `by` to those affected; 0 for the API.
    fn id(&self) -> ParticipantId {
        match self {
            Actor::Member(id) => *id,
            Actor::Remote(_) => 0,
        }
    }

    fn is(&self, participant: ParticipantId) -> bool {
        matches!(self, Actor::Member(id) if *id == participant)
    }
}

/// Who may use a host control.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Host or co-host.
    Moderator,
    /// The host only.
    Host,
}

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
        let actor = Actor::Remote(Remote {
            room: key,
            role: actor.role,
            user: actor.user,
            ip: actor.ip,
        });
        self.refusal = None;
        self.host_action(now, &actor, action);
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
            meeting: self.meeting_state(key),
            participants: room
                .members
                .iter()
                .filter_map(|m| self.participants.get(m))
                .map(|p| p.info.clone())
                .collect(),
            waiting: self.waiting_list(key),
        })
    }

    pub(super) fn join(&mut self, now: Instant, id: ParticipantId, req: JoinRequest) {
        let JoinRequest {
            version,
            room,
            name,
            grant,
        } = req;
        if self.participants.contains_key(&id) || self.waiters.contains_key(&id) {
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
        let key = self.room_for(&room, &grant);
        let Some(r) = self.rooms.get(&key) else {
            return;
        };
        if r.live.is_barred(&grant) {
            self.drop_room_if_empty(key);
            return self.error(
                id,
                ErrorCode::Barred,
                "a host removed you from this meeting and does not allow you back",
            );
        }
        if r.live.locked && !grant.role.moderates() {
            self.drop_room_if_empty(key);
            return self.error(
                id,
                ErrorCode::MeetingLocked,
                "the host locked this meeting; nobody new can join",
            );
        }
        let moderator_present = self.moderators(key).next().is_some();
        let returning = MeetingLive::returning_key(&grant, &name)
            .is_some_and(|k| r.live.known.contains_key(&k));
        let hold = if grant.role.moderates() {
            None
        } else if returning && moderator_present {
            // Let in before, dropped and back: no second trip through the waiting room.
            None
        } else if grant.wait_for_host && !moderator_present {
            Some(WaitReason::HostAbsent)
        } else if grant.waiting_room {
            Some(WaitReason::WaitingRoom)
        } else {
            None
        };
        match hold {
            Some(reason) => self.hold(key, id, name, grant, reason),
            None => self.admit_now(now, key, id, name, grant),
        }
    }

    /// The room for `name`, created on first use. A meeting's plan can change between joins;
    /// the latest joiner's grant sets the cap.
    fn room_for(&mut self, name: &str, grant: &JoinGrant) -> RoomKey {
        let server_cap = self.config.limits.max_participants_per_room;
        let cap = grant
            .max_participants
            .map_or(server_cap, |plan| plan.min(server_cap));
        if let Some(key) = self.rooms.key_of(name)
            && let Some(room) = self.rooms.get_mut(&key)
        {
            room.live.max_participants = cap;
            if room.live.meeting.is_none() {
                room.live.meeting = grant.meeting.clone();
            }
            return key;
        }
        self.rooms.create(name, grant.meeting.clone(), cap)
    }

    /// Puts `id` in the waiting room of `key`.
    fn hold(
        &mut self,
        key: RoomKey,
        id: ParticipantId,
        name: String,
        grant: JoinGrant,
        reason: WaitReason,
    ) {
        let cap = self.config.limits.max_participants_per_room;
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        if room.live.waiting.len() >= cap {
            return self.error(
                id,
                ErrorCode::RoomFull,
                format!("the waiting room is full ({cap} people)"),
            );
        }
        room.live.waiting.push(id);
        let info = WaitingInfo {
            id,
            name: name.clone(),
            role: grant.role,
        };
        let signal = ServerMessage::Waiting {
            room: room.name.clone(),
            title: room.live.title(),
            reason,
        };
        info!(participant = id, room = %room.name, ?reason, "waiting");
        self.waiters.insert(
            id,
            Waiter {
                room: key,
                name,
                grant,
                reason,
            },
        );
        self.out.push_back(Output::Signal(id, signal));
        self.tell_moderators(key, ServerMessage::WaitingAdded { participant: info });
    }

    /// The role a joiner gets. An instant guest room's first joiner hosts it; the meeting's
    /// owner takes the host role back from whoever holds it.
    pub(super) fn role_on_entry(&mut self, key: RoomKey, grant: &JoinGrant) -> Role {
        let Some(room) = self.rooms.get(&key) else {
            return grant.role;
        };
        let current_host = room
            .members
            .iter()
            .copied()
            .find(|m| self.role_of(*m) == Some(Role::Host));
        if room.live.meeting.is_none() && current_host.is_none() {
            return Role::Host;
        }
        if grant.role == Role::Host
            && let Some(old) = current_host
        {
            self.set_role(key, old, Role::CoHost);
        }
        grant.role
    }

    fn role_of(&self, id: ParticipantId) -> Option<Role> {
        self.participants.get(&id).map(|p| p.info.role)
    }

    fn moderators(&self, key: RoomKey) -> impl Iterator<Item = ParticipantId> + '_ {
        self.rooms
            .get(&key)
            .into_iter()
            .flat_map(|r| r.members.iter().copied())
            .filter(|m| self.role_of(*m).is_some_and(Role::moderates))
    }

    fn tell_moderators(&mut self, key: RoomKey, msg: ServerMessage) {
        let moderators: Vec<_> = self.moderators(key).collect();
        for m in moderators {
            self.out.push_back(Output::Signal(m, msg.clone()));
        }
    }

    pub(super) fn waiting_list(&self, key: RoomKey) -> Vec<WaitingInfo> {
        self.rooms
            .get(&key)
            .into_iter()
            .flat_map(|r| r.live.waiting.iter())
            .filter_map(|id| {
                self.waiters.get(id).map(|w| WaitingInfo {
                    id: *id,
                    name: w.name.clone(),
                    role: w.grant.role,
                })
            })
            .collect()
    }

    pub(super) fn meeting_state(&self, key: RoomKey) -> MeetingState {
        let Some(room) = self.rooms.get(&key) else {
            return MeetingState {
                title: String::new(),
                locked: false,
                allow_self_unmute: true,
                ends_at_ms: None,
            };
        };
        MeetingState {
            title: room.live.title(),
            locked: room.live.locked,
            allow_self_unmute: room.live.allow_self_unmute,
            ends_at_ms: room.live.ends_at.map(|t| self.unix_ms_at(t)),
        }
    }

    /// The wall clock at `t`, extrapolated from the latest input that carried it.
    fn unix_ms_at(&self, t: Instant) -> u64 {
        let (at, unix) = self.clock;
        if t >= at {
            unix + t.duration_since(at).as_millis() as u64
        } else {
            unix.saturating_sub(at.duration_since(t).as_millis() as u64)
        }
    }

    /// The meeting starts (for usage and the plan's time limit) when the first participant
    /// is let in.
    pub(super) fn start_clock(&mut self, now: Instant, key: RoomKey, limit: Option<Duration>) {
        let unix_ms = self.unix_ms_at(now);
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        if room.live.started.is_none() {
            room.live.started = Some(Started { at: now, unix_ms });
        }
        if room.live.ends_at.is_none()
            && let Some(limit) = limit
        {
            let started = room.live.started.map_or(now, |s| s.at);
            room.live.ends_at = Some(started + limit);
        }
    }

    /// A host or co-host arrived: those waiting only for that come in (or move on to the
    /// waiting room proper, when the meeting has one).
    pub(super) fn release_host_absent(&mut self, now: Instant, key: RoomKey) {
        let Some(room) = self.rooms.get(&key) else {
            return;
        };
        let held: Vec<_> = room
            .live
            .waiting
            .iter()
            .copied()
            .filter(|w| {
                self.waiters
                    .get(w)
                    .is_some_and(|w| w.reason == WaitReason::HostAbsent)
            })
            .collect();
        let room_name = room.name.clone();
        let title = room.live.title();
        for id in held {
            let Some(w) = self.waiters.get_mut(&id) else {
                continue;
            };
            if w.grant.waiting_room {
                w.reason = WaitReason::WaitingRoom;
                self.out.push_back(Output::Signal(
                    id,
                    ServerMessage::Waiting {
                        room: room_name.clone(),
                        title: title.clone(),
                        reason: WaitReason::WaitingRoom,
                    },
                ));
            } else {
                self.let_in(now, id);
            }
        }
    }

    /// Moves a waiter into the meeting.
    fn let_in(&mut self, now: Instant, id: ParticipantId) {
        let Some(w) = self.take_waiter(id) else {
            return;
        };
        self.admit_now(now, w.room, id, w.name, w.grant);
    }

    /// Takes `id` out of its waiting room, telling the moderators.
    fn take_waiter(&mut self, id: ParticipantId) -> Option<Waiter> {
        let w = self.waiters.remove(&id)?;
        if let Some(room) = self.rooms.get_mut(&w.room) {
            room.live.waiting.retain(|x| *x != id);
        }
        self.tell_moderators(w.room, ServerMessage::WaitingRemoved { participant_id: id });
        Some(w)
    }

    /// A waiting connection left or was turned away.
    pub(super) fn remove_waiter(&mut self, id: ParticipantId) {
        if let Some(w) = self.take_waiter(id) {
            info!(participant = id, "left the waiting room");
            self.drop_room_if_empty(w.room);
        }
    }

    /// The host left: the earliest co-host, or failing that the earliest participant with an
    /// account, or anyone, takes over — a meeting is never left without someone to admit,
    /// mute or end it.
    pub(super) fn pass_on_host(&mut self, key: RoomKey) {
        let Some(room) = self.rooms.get(&key) else {
            return;
        };
        if room
            .members
            .iter()
            .any(|m| self.role_of(*m) == Some(Role::Host))
        {
            return;
        }
        let pick = |wanted: Role| {
            room.members
                .iter()
                .copied()
                .find(|m| self.role_of(*m) == Some(wanted))
        };
        let Some(next) = pick(Role::CoHost)
            .or_else(|| pick(Role::Participant))
            .or_else(|| room.members.first().copied())
        else {
            return;
        };
        self.set_role(key, next, Role::Host);
        let now = self.last_now;
        self.release_host_absent(now, key);
    }

    /// Changes a member's role, telling everyone; a new moderator learns who is waiting.
    fn set_role(&mut self, key: RoomKey, id: ParticipantId, role: Role) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let was_moderator = p.info.role.moderates();
        p.info.role = role;
        info!(participant = id, ?role, "role changed");
        self.broadcast(
            key,
            None,
            ServerMessage::RoleChanged {
                participant_id: id,
                role,
            },
        );
        if role.moderates() && !was_moderator {
            for participant in self.waiting_list(key) {
                self.out.push_back(Output::Signal(
                    id,
                    ServerMessage::WaitingAdded { participant },
                ));
            }
        }
    }

    /// The room of `actor` if their role allows `needs`; otherwise tells them why not.
    fn authorise(&mut self, actor: &Actor, needs: Needs) -> Option<RoomKey> {
        let (role, key) = match actor {
            Actor::Member(id) => {
                let p = self.participants.get(id)?;
                (p.info.role, p.room_key())
            }
            Actor::Remote(r) => (r.role, r.room),
        };
        let allowed = match needs {
            Needs::Moderator => role.moderates(),
            Needs::Host => role == Role::Host,
        };
        if allowed {
            return Some(key);
        }
        let why = match needs {
            Needs::Moderator => "only the host or a co-host can do that",
            Needs::Host => "only the host can do that",
        };
        self.refuse(actor, ErrorCode::Forbidden, why);
        None
    }

    /// Tells `actor` why their action was refused: a participant by signal, an API caller
    /// through [`Sfu::handle_control`]'s result.
    fn refuse(&mut self, actor: &Actor, code: ErrorCode, message: impl Into<String>) {
        match actor {
            Actor::Member(id) => self.error(*id, code, message),
            Actor::Remote(_) => {
                self.refusal.get_or_insert(ControlError {
                    code,
                    message: message.into(),
                });
            }
        }
    }

    /// `target` if it is a member of room `key`; otherwise tells `actor`.
    fn member(&mut self, actor: &Actor, key: RoomKey, target: ParticipantId) -> bool {
        if self
            .participants
            .get(&target)
            .is_some_and(|p| p.room_key() == key)
        {
            return true;
        }
        self.refuse(
            actor,
            ErrorCode::UnknownParticipant,
            format!("no participant {target} in this meeting"),
        );
        false
    }

    pub(super) fn host_action(&mut self, now: Instant, actor: &Actor, msg: HostControl) {
        match msg {
            HostControl::Admit { participant_id } => {
                let Some(key) = self.check_waiter(actor, participant_id) else {
                    return;
                };
                let Some(room) = self.rooms.get(&key) else {
                    return;
                };
                if room.members.len() >= room.live.max_participants {
                    let max = room.live.max_participants;
                    return self.refuse(
                        actor,
                        ErrorCode::MeetingFull,
                        format!(
                            "the meeting is full ({max} participants); nobody else can be admitted"
                        ),
                    );
                }
                let target = self.waiter_name(participant_id);
                self.audit(actor, "meeting.admit", target, String::new());
                self.let_in(now, participant_id);
            }
            HostControl::Deny { participant_id } => {
                if self.check_waiter(actor, participant_id).is_none() {
                    return;
                };
                let target = self.waiter_name(participant_id);
                self.audit(actor, "meeting.deny", target, String::new());
                self.error(
                    participant_id,
                    ErrorCode::Denied,
                    "the host did not let you into the meeting",
                );
                self.remove_waiter(participant_id);
            }
            HostControl::Mute {
                participant_id,
                kind,
            } => {
                if self
                    .check_member(actor, Needs::Moderator, participant_id)
                    .is_none()
                {
                    return;
                }
                self.audit_member(actor, "meeting.mute", participant_id, kind_name(kind));
                self.host_mute(actor, participant_id, kind);
            }
            HostControl::MuteAll { allow_self_unmute } => {
                let Some(key) = self.authorise(actor, Needs::Moderator) else {
                    return;
                };
                if let Some(room) = self.rooms.get_mut(&key) {
                    room.live.allow_self_unmute = allow_self_unmute;
                }
                let targets: Vec<_> = self
                    .rooms
                    .get(&key)
                    .into_iter()
                    .flat_map(|r| r.members.iter().copied())
                    .filter(|m| !self.role_of(*m).is_some_and(Role::moderates))
                    .collect();
                self.audit(
                    actor,
                    "meeting.mute_all",
                    "everyone".into(),
                    format!("allow_self_unmute={allow_self_unmute}"),
                );
                for t in targets {
                    self.host_mute(actor, t, TrackKind::Audio);
                }
                let meeting = self.meeting_state(key);
                self.broadcast(key, None, ServerMessage::MeetingUpdated { meeting });
            }
            HostControl::AskUnmute {
                participant_id,
                kind,
            } => {
                if self
                    .check_member(actor, Needs::Moderator, participant_id)
                    .is_none()
                {
                    return;
                }
                self.audit_member(actor, "meeting.ask_unmute", participant_id, kind_name(kind));
                if let Some(p) = self.participants.get_mut(&participant_id) {
                    p.host_muted[slot(kind)] = false;
                }
                self.out.push_back(Output::Signal(
                    participant_id,
                    ServerMessage::UnmuteRequested {
                        kind,
                        by: actor.id(),
                    },
                ));
            }
            HostControl::SetMeeting {
                locked,
                allow_self_unmute,
            } => {
                let Some(key) = self.authorise(actor, Needs::Moderator) else {
                    return;
                };
                let Some(room) = self.rooms.get_mut(&key) else {
                    return;
                };
                let mut changes = Vec::new();
                if let Some(l) = locked
                    && room.live.locked != l
                {
                    room.live.locked = l;
                    changes.push(if l { "meeting.lock" } else { "meeting.unlock" });
                }
                if let Some(a) = allow_self_unmute
                    && room.live.allow_self_unmute != a
                {
                    room.live.allow_self_unmute = a;
                    changes.push(if a {
                        "meeting.allow_self_unmute"
                    } else {
                        "meeting.forbid_self_unmute"
                    });
                }
                for action in changes {
                    self.audit(actor, action, "meeting".into(), String::new());
                }
                let meeting = self.meeting_state(key);
                self.broadcast(key, None, ServerMessage::MeetingUpdated { meeting });
            }
            HostControl::Remove {
                participant_id,
                bar,
            } => {
                let Some(key) = self.check_member(actor, Needs::Moderator, participant_id) else {
                    return;
                };
                if actor.is(participant_id) {
                    return self.refuse(
                        actor,
                        ErrorCode::InvalidMessage,
                        "to leave the meeting, send leave",
                    );
                }
                if self.role_of(participant_id) == Some(Role::Host) {
                    return self.refuse(actor, ErrorCode::Forbidden, "the host cannot be removed");
                }
                let target = self.member_name(participant_id);
                self.audit(
                    actor,
                    "meeting.remove",
                    target,
                    if bar { "barred".into() } else { String::new() },
                );
                if bar && let Some(p) = self.participants.get(&participant_id) {
                    let (user, ip) = (p.grant.user.clone(), p.grant.ip);
                    if let Some(room) = self.rooms.get_mut(&key) {
                        room.live.bar(user.as_ref(), ip);
                    }
                }
                let (code, why) = if bar {
                    (
                        ErrorCode::Barred,
                        "a host removed you from the meeting; you cannot rejoin it",
                    )
                } else {
                    (ErrorCode::Removed, "a host removed you from the meeting")
                };
                self.error(participant_id, code, why);
                let who = self
                    .participants
                    .get(&participant_id)
                    .map(|p| (p.grant.clone(), p.info.name.clone()));
                self.remove(participant_id);
                // Removed means back through the waiting room, if the meeting has one.
                if let (Some((grant, name)), Some(room)) = (who, self.rooms.get_mut(&key)) {
                    room.live.forget(&grant, &name);
                }
            }
            HostControl::SetRole {
                participant_id,
                role,
            } => {
                let Some(key) = self.check_member(actor, Needs::Host, participant_id) else {
                    return;
                };
                if actor.is(participant_id) {
                    return self.refuse(
                        actor,
                        ErrorCode::InvalidMessage,
                        "the host's role changes only by transfer_host",
                    );
                }
                let new_role = match role {
                    Role::CoHost => Role::CoHost,
                    Role::Participant | Role::Guest => self.base_role(participant_id),
                    Role::Host => {
                        return self.refuse(
                            actor,
                            ErrorCode::InvalidMessage,
                            "use transfer_host to make someone the host",
                        );
                    }
                };
                if self.role_of(participant_id) == Some(new_role) {
                    return;
                }
                let target = self.member_name(participant_id);
                let action = if new_role == Role::CoHost {
                    "meeting.make_cohost"
                } else {
                    "meeting.revoke_cohost"
                };
                self.audit(actor, action, target, String::new());
                self.set_role(key, participant_id, new_role);
            }
            HostControl::TransferHost { participant_id } => {
                let Some(key) = self.check_member(actor, Needs::Host, participant_id) else {
                    return;
                };
                if actor.is(participant_id) {
                    return;
                }
                let target = self.member_name(participant_id);
                self.audit(actor, "meeting.transfer_host", target, String::new());
                // The host stays unique: whoever held it (the actor, unless acting through
                // the API) becomes co-host.
                let current: Vec<_> = self
                    .rooms
                    .get(&key)
                    .into_iter()
                    .flat_map(|r| r.members.iter().copied())
                    .filter(|m| self.role_of(*m) == Some(Role::Host))
                    .collect();
                self.set_role(key, participant_id, Role::Host);
                for old in current {
                    self.set_role(key, old, Role::CoHost);
                }
            }
            HostControl::EndMeeting => {
                let Some(key) = self.authorise(actor, Needs::Host) else {
                    return;
                };
                self.audit(actor, "meeting.end", "meeting".into(), String::new());
                self.end_meeting(now, key, EndReason::Host);
            }
        }
    }

    /// The role a participant goes back to when co-host is taken away.
    fn base_role(&self, id: ParticipantId) -> Role {
        match self.participants.get(&id) {
            Some(p) if p.grant.user.is_none() => Role::Guest,
            _ => Role::Participant,
        }
    }

    /// The room of `actor` if their role allows `needs` and `target` is in it; otherwise
    /// tells them why not.
    fn check_member(
        &mut self,
        actor: &Actor,
        needs: Needs,
        target: ParticipantId,
    ) -> Option<RoomKey> {
        let key = self.authorise(actor, needs)?;
        self.member(actor, key, target).then_some(key)
    }

    /// The room of `actor` if they moderate it and `target` waits to get in.
    fn check_waiter(&mut self, actor: &Actor, target: ParticipantId) -> Option<RoomKey> {
        let key = self.authorise(actor, Needs::Moderator)?;
        self.waiting_in(actor, key, target).then_some(key)
    }

    fn audit_member(
        &mut self,
        actor: &Actor,
        action: &'static str,
        target: ParticipantId,
        detail: &str,
    ) {
        let name = self.member_name(target);
        self.audit(actor, action, name, detail.to_owned());
    }

    /// Whether `target` waits in room `key`; tells `actor` if not.
    fn waiting_in(&mut self, actor: &Actor, key: RoomKey, target: ParticipantId) -> bool {
        if self.waiters.get(&target).is_some_and(|w| w.room == key) {
            return true;
        }
        self.refuse(
            actor,
            ErrorCode::UnknownParticipant,
            format!("nobody with id {target} is in the waiting room"),
        );
        false
    }

    fn host_mute(&mut self, actor: &Actor, target: ParticipantId, kind: TrackKind) {
        let Some(p) = self.participants.get_mut(&target) else {
            return;
        };
        if kind != TrackKind::Screen {
            p.host_muted[slot(kind)] = true;
        }
        self.out.push_back(Output::Signal(
            target,
            ServerMessage::MutedByHost {
                kind,
                by: actor.id(),
            },
        ));
        self.set_media(target, kind, false);
    }

    fn member_name(&self, id: ParticipantId) -> String {
        self.participants
            .get(&id)
            .map(|p| describe(&p.info.name, p.grant.user.as_ref()))
            .unwrap_or_default()
    }

    fn waiter_name(&self, id: ParticipantId) -> String {
        self.waiters
            .get(&id)
            .map(|w| describe(&w.name, w.grant.user.as_ref()))
            .unwrap_or_default()
    }

    /// Records a host action of `actor` for the audit log. Instant guest rooms have no owner
    /// to show a log to, so only stored meetings are audited.
    fn audit(&mut self, actor: &Actor, action: &'static str, target: String, detail: String) {
        let (key, user, name, ip) = match actor {
            Actor::Member(id) => {
                let Some(p) = self.participants.get(id) else {
                    return;
                };
                (
                    p.room_key(),
                    p.grant.user.clone(),
                    p.info.name.clone(),
                    p.grant.ip,
                )
            }
            Actor::Remote(r) => (r.room, r.user.clone(), "the API".to_owned(), r.ip),
        };
        let Some(meeting) = self.rooms.get(&key).and_then(|r| r.live.meeting.as_ref()) else {
            return;
        };
        info!(?actor, action, %target, "host action");
        self.out
            .push_back(Output::Event(SfuEvent::Audit(AuditEvent {
                meeting_id: meeting.id.clone(),
                org_id: Some(meeting.org_id.clone()),
                actor: user,
                actor_name: name,
                ip,
                action,
                target,
                detail,
            })));
    }

    /// Ends the meeting for everyone in it and everyone waiting, and records its usage.
    pub(super) fn end_meeting(&mut self, now: Instant, key: RoomKey, reason: EndReason) {
        let Some(room) = self.rooms.remove(&key) else {
            return;
        };
        info!(room = %room.name, ?reason, "meeting ended");
        let mut remaining_ms = 0;
        for id in room.members.iter().chain(room.live.waiting.iter()) {
            if let Some(p) = self.take_participant(*id) {
                remaining_ms += now_since(&p, now);
            }
            self.waiters.remove(id);
            self.out
                .push_back(Output::Signal(*id, ServerMessage::MeetingEnded { reason }));
            self.out.push_back(Output::Close(*id));
        }
        if let Some(usage) = room.live.usage(now, remaining_ms) {
            self.out
                .push_back(Output::Event(SfuEvent::MeetingFinished(usage)));
        }
    }

    /// Warns at 5 and 1 minutes before a plan's time limit, then ends the meeting.
    pub(super) fn enforce_time_limits(&mut self, now: Instant) {
        let minute = self.config.limits.minute;
        let mut warnings = Vec::new();
        let mut over = Vec::new();
        for (key, room) in self.rooms.iter_mut() {
            let Some(ends_at) = room.live.ends_at else {
                continue;
            };
            if now >= ends_at {
                over.push(*key);
                continue;
            }
            let left = ends_at - now;
            let due = WARN_AT_MINUTES
                .iter()
                .skip(room.live.warnings_sent as usize)
                .take_while(|m| left <= minute * **m)
                .count();
            if due > 0 {
                room.live.warnings_sent += due as u8;
                let minutes_left = left.as_millis().div_ceil(minute.as_millis().max(1)) as u32;
                warnings.push((*key, minutes_left, ends_at));
            }
        }
        for (key, minutes_left, ends_at) in warnings {
            let ends_at_ms = self.unix_ms_at(ends_at);
            self.broadcast(
                key,
                None,
                ServerMessage::MeetingEnding {
                    minutes_left,
                    ends_at_ms,
                },
            );
        }
        for key in over {
            self.end_meeting(now, key, EndReason::TimeLimit);
        }
    }
}

fn kind_name(kind: TrackKind) -> &'static str {
    match kind {
        TrackKind::Audio => "audio",
        TrackKind::Video => "video",
        TrackKind::Screen => "screen",
    }
}

/// A participant as the audit log names them: display name, and account when signed in.
fn describe(name: &str, user: Option<&crate::meeting::UserRef>) -> String {
    match user {
        Some(u) => format!("{name} <{}>", u.email),
        None => format!("{name} (guest)"),
    }
}
