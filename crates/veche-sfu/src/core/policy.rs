//! The policy of one live meeting: who gets in (waiting room, lock, bars, caps), roles, the
//! host controls, the plan's time limit, and whom it remembers across dropped connections and
//! restarts. Every check happens here, on the server: a client that skips its own UI checks
//! gains nothing.
//!
//! A [`Meeting`] never touches str0m, sockets or clocks: each method takes a request (and the
//! time as a value) and returns the [`Effect`]s the core carries out — messages to send, people
//! to let in or turn away, tracks to stop, audit entries. The tests at the bottom drive it on
//! its own.

mod controls;
#[cfg(test)]
mod tests;

use controls::describe;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::info;
use veche_proto::{
    E2eeMode, EndReason, ErrorCode, MeetingState, ParticipantId, Role, ServerMessage, TrackKind,
    WaitReason, WaitingInfo,
};

use crate::meeting::{
    AuditEvent, ControlError, JoinGrant, MeetingRef, MeetingSnapshot, MeetingStart, MeetingUsage,
    Presence, Remembered, SfuEvent, UserRef,
};
use crate::participant::slot;

/// Time-limit warnings go out when this many minutes are left.
const WARN_AT_MINUTES: [u32; 2] = [5, 1];
/// People remembered by one meeting (those who left and may come back). Past the bound (churn
/// of many different guests) newcomers are simply not remembered.
const MAX_KNOWN: usize = 1024;

/// What the core is asked to do by the meeting policy, in order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Effect {
    /// A message for one connection (a member, or someone waiting).
    Signal(ParticipantId, ServerMessage),
    /// A message for every member.
    Broadcast(ServerMessage),
    /// An error for one connection (closed after it when the code is fatal).
    Error(ParticipantId, ErrorCode, String),
    /// The actor's request was refused: a member hears it as an error, an API caller gets it
    /// as the result of its call.
    Refuse(ControlError),
    /// Let someone in now: the core gives them a media connection and tells everyone.
    Enter(Box<Entered>),
    /// A member leaves (the policy has already told them why, if anyone).
    RemoveMember(ParticipantId),
    /// Someone waiting was turned away or left; they are out of the waiting room.
    Dismissed(ParticipantId),
    /// Turn off one of a member's tracks, as if they had muted it.
    StopTrack(ParticipantId, TrackKind),
    /// Which of a member's tracks the host muted: the forwarding gate.
    Gate(ParticipantId, [bool; 3]),
    /// A member's role changed (what the others are shown of them).
    Role(ParticipantId, Role),
    /// A member raised (`true`) or lowered their hand.
    Hand(ParticipantId, bool),
    Audit(AuditEvent),
    /// A change of the meeting's course for the server to report (started, someone came
    /// in or went): an [`SfuEvent`] passed on as it is.
    Report(SfuEvent),
    /// The meeting is over for everyone in it and everyone waiting.
    End(EndReason),
}

/// Someone asking to be let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entrant {
    pub(super) id: ParticipantId,
    pub(super) name: String,
    pub(super) grant: JoinGrant,
    /// Who they are across connections: `user:<account id>`, or `guest:<id>` from a resume
    /// token (see `resume.rs`). `None`: nobody to recognise.
    pub(super) key: Option<String>,
    /// Their client can encrypt media end to end.
    pub(super) e2ee: bool,
}

/// Someone let in, as the core needs them to build the media connection and `joined`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entered {
    pub(super) id: ParticipantId,
    pub(super) name: String,
    pub(super) key: Option<String>,
    pub(super) is_guest: bool,
    /// Their address (a guest's resume token is bound to it).
    pub(super) ip: Option<IpAddr>,
    pub(super) role: Role,
    pub(super) host_muted: [bool; 3],
    pub(super) hand_raised: bool,
    /// Their client can encrypt media end to end.
    pub(super) e2ee: bool,
    /// The meeting and its waiting room as they were when they came in.
    pub(super) meeting: MeetingState,
    pub(super) waiting: Vec<WaitingInfo>,
}

/// Who is using a host control.
#[derive(Debug, Clone)]
pub(super) enum Actor {
    /// A participant of the meeting, over its signalling connection.
    Member(ParticipantId),
    /// An API caller, with the authority the server found for them.
    Remote {
        role: Role,
        user: Option<UserRef>,
        ip: Option<IpAddr>,
    },
}

impl Actor {
    /// The participant id shown as `by` to those affected; 0 for the API.
    fn id(&self) -> ParticipantId {
        match self {
            Actor::Member(id) => *id,
            Actor::Remote { .. } => 0,
        }
    }

    fn is(&self, participant: ParticipantId) -> bool {
        matches!(self, Actor::Member(id) if *id == participant)
    }
}

/// The time of a request: a monotonic instant and the wall clock at that instant.
#[derive(Debug, Clone, Copy)]
pub(super) struct Now {
    pub(super) at: Instant,
    pub(super) unix_ms: u64,
}

#[derive(Debug, Clone)]
struct Member {
    id: ParticipantId,
    name: String,
    grant: JoinGrant,
    key: Option<String>,
    role: Role,
    host_muted: [bool; 3],
    hand_raised: bool,
    joined_at: Instant,
    /// Holds the host role only until the one it was passed on from comes back; then goes
    /// back to this role.
    standing_in: Option<Role>,
    /// Removed by a host: not remembered, so back through the waiting room.
    forget_on_leave: bool,
}

#[derive(Debug, Clone)]
struct Waiter {
    entrant: Entrant,
    reason: WaitReason,
}

#[derive(Debug, Clone, Copy)]
struct Started {
    at: Instant,
    unix_ms: u64,
}

/// The live state of one meeting and the rules it runs by.
#[derive(Debug)]
pub(super) struct Meeting {
    /// The room's name, as clients know it.
    room: String,
    record: Option<MeetingRef>,
    locked: bool,
    allow_self_unmute: bool,
    /// Fixed when the meeting starts (see [`Meeting::require_e2ee`]).
    e2ee: E2eeMode,
    /// In the order they came in (host hand-over picks the earliest).
    members: Vec<Member>,
    /// In arrival order.
    waiting: Vec<Waiter>,
    barred_users: HashSet<String>,
    barred_ips: HashSet<IpAddr>,
    /// Everyone let in since the meeting started who is not in it now, by identity key: a
    /// dropped connection that comes back (or everyone, after a restart) skips the waiting
    /// room and the lock, with the role and host mutes it had.
    known: HashMap<String, Remembered>,
    /// Those of `known` who were in the meeting when the server stopped: they come back as
    /// exactly what they were, as if it had not.
    resumed: HashSet<String>,
    /// Participant cap: the server's, lowered by the plan's.
    max_participants: usize,
    /// Waiting-room cap (the server's participant cap).
    max_waiting: usize,
    /// Set when the first participant is let in.
    started: Option<Started>,
    /// When the plan's time limit ends the meeting (and that as a Unix time).
    ends_at: Option<(Instant, u64)>,
    /// How many time-limit warnings have gone out (at 5 and at 1 minute left).
    warnings_sent: u8,
    peak: usize,
    /// Participant time of those who already left.
    participant_ms: u64,
    /// A restored meeting that nobody has come back to yet lasts until then.
    resume_until: Option<Instant>,
    /// Something a snapshot holds changed since the last [`Meeting::take_dirty`].
    dirty: bool,
}

impl Meeting {
    pub(super) fn new(
        room: &str,
        record: Option<MeetingRef>,
        max_participants: usize,
        max_waiting: usize,
    ) -> Meeting {
        Meeting {
            room: room.to_owned(),
            record,
            locked: false,
            allow_self_unmute: true,
            e2ee: E2eeMode::Off,
            members: Vec::new(),
            waiting: Vec::new(),
            barred_users: HashSet::new(),
            barred_ips: HashSet::new(),
            known: HashMap::new(),
            resumed: HashSet::new(),
            max_participants,
            max_waiting,
            started: None,
            ends_at: None,
            warnings_sent: 0,
            peak: 0,
            participant_ms: 0,
            resume_until: None,
            dirty: false,
        }
    }

    /// A meeting as a snapshot saved it, before anyone is back: everyone who was in it is
    /// remembered. It waits `window` for the first of them.
    pub(super) fn restore(
        snap: &MeetingSnapshot,
        now: Now,
        max_waiting: usize,
        window: Duration,
    ) -> Meeting {
        let ago = |unix_ms: u64| Duration::from_millis(now.unix_ms.saturating_sub(unix_ms));
        let ahead = |unix_ms: u64| Duration::from_millis(unix_ms.saturating_sub(now.unix_ms));
        let mut m = Meeting::new(
            &snap.room,
            snap.meeting.clone(),
            snap.max_participants,
            max_waiting,
        );
        m.locked = snap.locked;
        m.allow_self_unmute = snap.allow_self_unmute;
        m.e2ee = snap.e2ee;
        m.barred_users = snap.barred_users.iter().cloned().collect();
        m.barred_ips = snap.barred_ips.iter().copied().collect();
        m.known = snap
            .people
            .iter()
            .take(MAX_KNOWN)
            .map(|p| (p.key.clone(), p.clone()))
            .collect();
        m.resumed = m.known.keys().cloned().collect();
        m.started = snap.started_at_ms.map(|unix_ms| Started {
            at: now.at.checked_sub(ago(unix_ms)).unwrap_or(now.at),
            unix_ms,
        });
        m.ends_at = snap
            .ends_at_ms
            .map(|unix_ms| (now.at + ahead(unix_ms), unix_ms));
        m.warnings_sent = snap.warnings_sent;
        m.peak = snap.peak_participants;
        m.participant_ms = snap.participant_ms;
        m.resume_until = Some(now.at + window);
        m
    }

    /// What a restart needs to carry this meeting on (see [`MeetingSnapshot`]).
    pub(super) fn snapshot(&self, now: Now) -> MeetingSnapshot {
        let mut people: Vec<Remembered> = self
            .members
            .iter()
            .filter(|m| !m.forget_on_leave)
            .filter_map(|m| {
                Some(Remembered {
                    key: m.key.clone()?,
                    role: m.lasting_role(),
                    host_muted: m.host_muted,
                    hand_raised: m.hand_raised,
                })
            })
            .collect();
        let present: HashSet<&str> = people.iter().map(|p| p.key.as_str()).collect();
        let absent: Vec<Remembered> = self
            .known
            .values()
            .filter(|k| !present.contains(k.key.as_str()))
            .cloned()
            .collect();
        people.extend(absent);
        people.truncate(MAX_KNOWN);
        MeetingSnapshot {
            room: self.room.clone(),
            meeting: self.record.clone(),
            locked: self.locked,
            allow_self_unmute: self.allow_self_unmute,
            e2ee: self.e2ee,
            barred_users: self.barred_users.iter().cloned().collect(),
            barred_ips: self.barred_ips.iter().copied().collect(),
            people,
            max_participants: self.max_participants,
            started_at_ms: self.started.map(|s| s.unix_ms),
            ends_at_ms: self.ends_at.map(|(_, unix)| unix),
            warnings_sent: self.warnings_sent,
            peak_participants: self.peak,
            participant_ms: self.participant_ms + self.present_ms(now.at),
            saved_at_ms: now.unix_ms,
        }
    }

    /// Makes the meeting end-to-end encrypted. Only before anyone is in it: those already
    /// in were never asked whether they can encrypt.
    pub(super) fn require_e2ee(&mut self) {
        self.raise_e2ee(E2eeMode::Required);
    }

    /// Raises the meeting's encryption to `mode` (`optional` over `off`, `required` over
    /// both), never lowers it; only while nobody is in it.
    fn raise_e2ee(&mut self, mode: E2eeMode) {
        let rank = |m| match m {
            E2eeMode::Off => 0,
            E2eeMode::Optional => 1,
            E2eeMode::Required => 2,
        };
        if self.members.is_empty() && rank(mode) > rank(self.e2ee) {
            self.e2ee = mode;
            self.dirty = true;
        }
    }

    pub(super) fn e2ee(&self) -> E2eeMode {
        self.e2ee
    }

    /// Whether a snapshot would differ from the last one taken; clears the mark.
    pub(super) fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Whether a snapshot would differ from the last one taken.
    pub(super) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Member `id` raised or lowered their hand; everyone is told.
    pub(super) fn raise_hand(&mut self, id: ParticipantId, raised: bool) -> Vec<Effect> {
        let Some(m) = self.member_mut(id) else {
            return Vec::new();
        };
        if m.hand_raised != raised {
            m.hand_raised = raised;
            self.dirty = true;
        }
        vec![
            Effect::Hand(id, raised),
            Effect::Broadcast(ServerMessage::Hand {
                participant_id: id,
                raised,
            }),
        ]
    }

    /// Nobody is in it or waiting for it, and it is not a restored meeting still waiting for
    /// its people to come back.
    pub(super) fn is_over(&self, now: Instant) -> bool {
        self.members.is_empty()
            && self.waiting.is_empty()
            && self.resume_until.is_none_or(|until| now >= until)
    }

    /// When the meeting started (resume tokens are bound to it).
    pub(super) fn started_ms(&self) -> Option<u64> {
        self.started.map(|s| s.unix_ms)
    }

    /// Whether `key` is someone in the meeting now.
    pub(super) fn is_present(&self, key: &str) -> bool {
        self.members.iter().any(|m| m.key.as_deref() == Some(key))
            || self
                .waiting
                .iter()
                .any(|w| w.entrant.key.as_deref() == Some(key))
    }

    pub(super) fn is_waiting(&self, id: ParticipantId) -> bool {
        self.waiting.iter().any(|w| w.entrant.id == id)
    }

    /// The latest joiner's grant sets the cap (a meeting's plan can change between joins); a
    /// guest room that turns out to be a stored meeting takes its record.
    pub(super) fn update_from(&mut self, grant: &JoinGrant, server_cap: usize) {
        self.max_participants = grant
            .max_participants
            .map_or(server_cap, |plan| plan.min(server_cap));
        if self.record.is_none() && grant.meeting.is_some() {
            self.record = grant.meeting.clone();
            self.dirty = true;
        }
        self.raise_e2ee(grant.e2ee);
    }

    pub(super) fn state(&self) -> MeetingState {
        MeetingState {
            title: self.title(),
            locked: self.locked,
            allow_self_unmute: self.allow_self_unmute,
            ends_at_ms: self.ends_at.map(|(_, unix)| unix),
            e2ee: self.e2ee,
        }
    }

    pub(super) fn waiting_list(&self) -> Vec<WaitingInfo> {
        self.waiting
            .iter()
            .map(|w| WaitingInfo {
                id: w.entrant.id,
                name: w.entrant.name.clone(),
                role: w.entrant.grant.role,
            })
            .collect()
    }

    /// Usage to record, if this meeting has a stored record and ever started.
    pub(super) fn usage(&self, now: Now) -> Option<MeetingUsage> {
        let meeting = self.record.as_ref()?;
        let started = self.started?;
        Some(MeetingUsage {
            meeting_id: meeting.id.clone(),
            org_id: meeting.org_id.clone(),
            started_at_ms: started.unix_ms,
            ended_at_ms: started.unix_ms
                + now.at.saturating_duration_since(started.at).as_millis() as u64,
            peak_participants: self.peak,
            participant_ms: self.participant_ms + self.present_ms(now.at),
        })
    }

    /// Someone asks to join: turned away, held in the waiting room, or let in.
    pub(super) fn join(&mut self, now: Now, entrant: Entrant) -> Vec<Effect> {
        let mut fx = Vec::new();
        let id = entrant.id;
        // Before the waiting room: nobody waits to be turned away for their browser.
        if self.e2ee == E2eeMode::Required && !entrant.e2ee {
            fx.push(Effect::Error(
                id,
                ErrorCode::E2eeUnsupported,
                "This meeting is end-to-end encrypted and this browser cannot encrypt; \
                 use a current Chromium or Firefox"
                    .into(),
            ));
            return fx;
        }
        if self.is_barred(&entrant.grant) {
            fx.push(Effect::Error(
                id,
                ErrorCode::Barred,
                "a host removed you from this meeting and does not allow you back".into(),
            ));
            return fx;
        }
        let returning = entrant
            .key
            .as_ref()
            .is_some_and(|k| self.known.contains_key(k));
        let moderates = self.entry_role(&entrant).moderates();
        if self.locked && !moderates && !returning {
            fx.push(Effect::Error(
                id,
                ErrorCode::MeetingLocked,
                "the host locked this meeting; nobody new can join".into(),
            ));
            return fx;
        }
        let moderator_present = self.moderators().next().is_some();
        let hold = if moderates {
            None
        } else if entrant.grant.wait_for_host && !moderator_present {
            Some(WaitReason::HostAbsent)
        } else if returning {
            // Let in before, dropped and back: no second trip through the waiting room.
            None
        } else if entrant.grant.waiting_room {
            Some(WaitReason::WaitingRoom)
        } else {
            None
        };
        match hold {
            Some(reason) => self.hold(entrant, reason, &mut fx),
            None => self.admit(now, entrant, &mut fx),
        }
        fx
    }

    /// Someone waiting left (their connection closed, or they sent `leave`).
    pub(super) fn withdraw(&mut self, id: ParticipantId) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.take_waiter(id, &mut fx).is_some() {
            info!(participant = id, "left the waiting room");
            fx.push(Effect::Dismissed(id));
        }
        fx
    }

    /// A member left or was dropped. Remembered unless a host removed them; when the host
    /// goes, the role passes on.
    pub(super) fn leave(&mut self, now: Now, id: ParticipantId) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(i) = self.members.iter().position(|m| m.id == id) else {
            return fx;
        };
        let m = self.members.remove(i);
        self.dirty = true;
        self.participant_ms += now.at.saturating_duration_since(m.joined_at).as_millis() as u64;
        self.report_presence(&m, now, SfuEvent::ParticipantLeft, &mut fx);
        if !m.forget_on_leave
            && let Some(key) = &m.key
            && (self.known.len() < MAX_KNOWN || self.known.contains_key(key))
        {
            self.known.insert(
                key.clone(),
                Remembered {
                    key: key.clone(),
                    role: m.lasting_role(),
                    host_muted: m.host_muted,
                    hand_raised: m.hand_raised,
                },
            );
        }
        if m.role == Role::Host {
            self.pass_on_host(now, &mut fx);
        }
        fx
    }

    /// Whether member `id` may turn `kind` on. `Ok(Some(gate))`: they lift a host mute, and
    /// the forwarding gate becomes `gate`.
    pub(super) fn unmute(
        &mut self,
        id: ParticipantId,
        kind: TrackKind,
    ) -> Result<Option<[bool; 3]>, (ErrorCode, &'static str)> {
        let allow = self.allow_self_unmute;
        let Some(m) = self.member_mut(id) else {
            return Ok(None);
        };
        if !m.host_muted[slot(kind)] {
            return Ok(None);
        }
        if !(m.role.moderates() || allow) {
            return Err((
                ErrorCode::UnmuteNotAllowed,
                "a host muted you and participants may not unmute themselves; ask a host",
            ));
        }
        m.host_muted[slot(kind)] = false;
        let gate = m.host_muted;
        self.dirty = true;
        Ok(Some(gate))
    }

    /// Warns at 5 and 1 minutes before a plan's time limit, then ends the meeting.
    pub(super) fn tick(&mut self, now: Instant, minute: Duration) -> Vec<Effect> {
        let Some((ends_at, ends_at_ms)) = self.ends_at else {
            return Vec::new();
        };
        if now >= ends_at {
            return vec![Effect::End(EndReason::TimeLimit)];
        }
        let left = ends_at - now;
        let due = WARN_AT_MINUTES
            .iter()
            .skip(self.warnings_sent as usize)
            .take_while(|m| left <= minute * **m)
            .count();
        if due == 0 {
            return Vec::new();
        }
        self.warnings_sent += due as u8;
        self.dirty = true;
        let minutes_left = left.as_millis().div_ceil(minute.as_millis().max(1)) as u32;
        vec![Effect::Broadcast(ServerMessage::MeetingEnding {
            minutes_left,
            ends_at_ms,
        })]
    }

    /// Puts `entrant` in the waiting room.
    fn hold(&mut self, entrant: Entrant, reason: WaitReason, fx: &mut Vec<Effect>) {
        let id = entrant.id;
        if self.waiting.len() >= self.max_waiting {
            let cap = self.max_waiting;
            fx.push(Effect::Error(
                id,
                ErrorCode::RoomFull,
                format!("the waiting room is full ({cap} people)"),
            ));
            return;
        }
        let info = WaitingInfo {
            id,
            name: entrant.name.clone(),
            role: entrant.grant.role,
        };
        info!(participant = id, ?reason, "waiting");
        self.waiting.push(Waiter { entrant, reason });
        fx.push(Effect::Signal(
            id,
            ServerMessage::Waiting {
                room: self.room.clone(),
                title: self.title(),
                reason,
            },
        ));
        self.tell_moderators(ServerMessage::WaitingAdded { participant: info }, fx);
    }

    /// Lets `entrant` in now, if there is room.
    fn admit(&mut self, now: Now, entrant: Entrant, fx: &mut Vec<Effect>) {
        if self.members.len() >= self.max_participants {
            let max = self.max_participants;
            fx.push(Effect::Error(
                entrant.id,
                ErrorCode::RoomFull,
                format!("the meeting is full ({max} participants)"),
            ));
            return;
        }
        let wanted = self.entry_role(&entrant);
        let known = entrant.key.as_ref().and_then(|k| {
            self.resumed.remove(k);
            self.known.remove(k)
        });
        let current_host = self
            .members
            .iter()
            .find(|m| m.role == Role::Host)
            .map(|m| m.id);
        let (role, standing_in) =
            if self.record.is_none() && current_host.is_none() && wanted != Role::Host {
                // Nobody hosts an instant guest room: whoever comes in does. When its host is
                // expected back (they dropped, or the server restarted), only until then.
                let host_expected = self.known.values().any(|k| k.role == Role::Host);
                (Role::Host, host_expected.then_some(wanted))
            } else {
                (wanted, None)
            };
        if role == Role::Host
            && let Some(old) = current_host
        {
            // The meeting's owner (or the host, back) takes the role from whoever holds it.
            let back_to = self
                .member(old)
                .and_then(|m| m.standing_in)
                .unwrap_or(Role::CoHost);
            self.set_role(old, back_to, fx);
        }
        let (host_muted, hand_raised) =
            known.map_or(([false; 3], false), |k| (k.host_muted, k.hand_raised));
        let id = entrant.id;
        let starts = self.started.is_none();
        self.start_clock(now, entrant.grant.max_duration);
        if starts && let Some(meeting) = &self.record {
            fx.push(Effect::Report(SfuEvent::MeetingStarted(MeetingStart {
                meeting: meeting.clone(),
                room: self.room.clone(),
                started_at_ms: now.unix_ms,
            })));
        }
        self.resume_until = None;
        self.dirty = true;
        let moderates = role.moderates();
        fx.push(Effect::Enter(Box::new(Entered {
            id,
            name: entrant.name.clone(),
            key: entrant.key.clone(),
            is_guest: entrant.grant.user.is_none(),
            ip: entrant.grant.ip,
            role,
            host_muted,
            hand_raised,
            e2ee: entrant.e2ee,
            meeting: self.state(),
            waiting: if moderates {
                self.waiting_list()
            } else {
                Vec::new()
            },
        })));
        self.members.push(Member {
            id,
            name: entrant.name,
            grant: entrant.grant,
            key: entrant.key,
            role,
            host_muted,
            hand_raised,
            joined_at: now.at,
            standing_in,
            forget_on_leave: false,
        });
        self.peak = self.peak.max(self.members.len());
        if let Some(m) = self.members.last() {
            self.report_presence(m, now, SfuEvent::ParticipantJoined, fx);
        }
        if moderates {
            self.release_host_absent(now, fx);
        }
    }

    /// The role `entrant` comes in with. Back after a restart: what they had. Back after a
    /// dropped connection: the meeting's owner takes the host role back, and anyone else
    /// keeps a host or co-host role given in the meeting. Otherwise what the server granted.
    fn entry_role(&self, entrant: &Entrant) -> Role {
        let granted = entrant.grant.role;
        let Some((key, known)) = entrant
            .key
            .as_ref()
            .and_then(|k| Some((k, self.known.get(k)?)))
        else {
            return granted;
        };
        if self.resumed.contains(key) {
            known.role
        } else if granted == Role::Host || !known.role.moderates() {
            granted
        } else {
            known.role
        }
    }

    /// Reports `m` coming in or going (`kind`), in a meeting with a stored record.
    fn report_presence(
        &self,
        m: &Member,
        now: Now,
        kind: fn(Presence) -> SfuEvent,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(meeting) = &self.record {
            fx.push(Effect::Report(kind(Presence {
                meeting: meeting.clone(),
                participant_id: m.id,
                name: m.name.clone(),
                user: m.grant.user.clone(),
                role: m.role,
                at_ms: now.unix_ms,
            })));
        }
    }

    /// The meeting starts (for usage and the plan's time limit) when the first participant
    /// is let in.
    fn start_clock(&mut self, now: Now, limit: Option<Duration>) {
        let started = *self.started.get_or_insert(Started {
            at: now.at,
            unix_ms: now.unix_ms,
        });
        if self.ends_at.is_none()
            && let Some(limit) = limit
        {
            self.ends_at = Some((
                started.at + limit,
                started.unix_ms + limit.as_millis() as u64,
            ));
        }
    }

    /// A host or co-host arrived: those waiting only for that come in (or move on to the
    /// waiting room proper, when the meeting has one and they are new).
    fn release_host_absent(&mut self, now: Now, fx: &mut Vec<Effect>) {
        let held: Vec<_> = self
            .waiting
            .iter()
            .filter(|w| w.reason == WaitReason::HostAbsent)
            .map(|w| w.entrant.id)
            .collect();
        for id in held {
            let Some(i) = self.waiting.iter().position(|w| w.entrant.id == id) else {
                continue;
            };
            let w = &mut self.waiting[i];
            let returning = w
                .entrant
                .key
                .as_ref()
                .is_some_and(|k| self.known.contains_key(k));
            if w.entrant.grant.waiting_room && !returning {
                w.reason = WaitReason::WaitingRoom;
                fx.push(Effect::Signal(
                    id,
                    ServerMessage::Waiting {
                        room: self.room.clone(),
                        title: self.title(),
                        reason: WaitReason::WaitingRoom,
                    },
                ));
            } else if let Some(w) = self.take_waiter(id, fx) {
                self.admit(now, w.entrant, fx);
            }
        }
    }

    /// Takes `id` out of the waiting room, telling the moderators.
    fn take_waiter(&mut self, id: ParticipantId, fx: &mut Vec<Effect>) -> Option<Waiter> {
        let i = self.waiting.iter().position(|w| w.entrant.id == id)?;
        let w = self.waiting.remove(i);
        self.tell_moderators(ServerMessage::WaitingRemoved { participant_id: id }, fx);
        Some(w)
    }

    /// The host left: the earliest co-host, or failing that the earliest participant with an
    /// account, or anyone, takes over — a meeting is never left without someone to admit,
    /// mute or end it. They stand in until the host comes back.
    fn pass_on_host(&mut self, now: Now, fx: &mut Vec<Effect>) {
        if self.members.iter().any(|m| m.role == Role::Host) {
            return;
        }
        let pick = |wanted: Role| self.members.iter().find(|m| m.role == wanted);
        let Some(next) = pick(Role::CoHost)
            .or_else(|| pick(Role::Participant))
            .or_else(|| self.members.first())
        else {
            return;
        };
        let (id, was) = (next.id, next.role);
        self.set_role(id, Role::Host, fx);
        if let Some(m) = self.member_mut(id) {
            m.standing_in = Some(was);
        }
        self.release_host_absent(now, fx);
    }

    /// Changes a member's role, telling everyone; a new moderator learns who is waiting.
    fn set_role(&mut self, id: ParticipantId, role: Role, fx: &mut Vec<Effect>) {
        let waiting = self.waiting_list();
        let Some(m) = self.member_mut(id) else {
            return;
        };
        let was_moderator = m.role.moderates();
        m.role = role;
        // A role given or taken in the meeting is the member's own from now on.
        m.standing_in = None;
        self.dirty = true;
        info!(participant = id, ?role, "role changed");
        fx.push(Effect::Role(id, role));
        fx.push(Effect::Broadcast(ServerMessage::RoleChanged {
            participant_id: id,
            role,
        }));
        if role.moderates() && !was_moderator {
            for participant in waiting {
                fx.push(Effect::Signal(
                    id,
                    ServerMessage::WaitingAdded { participant },
                ));
            }
        }
    }

    fn is_barred(&self, grant: &JoinGrant) -> bool {
        match (&grant.user, grant.ip) {
            (Some(u), _) => self.barred_users.contains(&u.id),
            (None, Some(ip)) => self.barred_ips.contains(&ip),
            (None, None) => false,
        }
    }

    /// Bars an account, or — for a guest, who has nothing else to recognise them by — their
    /// address.
    fn bar(&mut self, user: Option<&UserRef>, ip: Option<IpAddr>) {
        match (user, ip) {
            (Some(u), _) => {
                self.barred_users.insert(u.id.clone());
            }
            (None, Some(ip)) => {
                self.barred_ips.insert(ip);
            }
            (None, None) => {}
        }
        self.dirty = true;
    }

    fn tell_moderators(&self, msg: ServerMessage, fx: &mut Vec<Effect>) {
        for m in self.moderators() {
            fx.push(Effect::Signal(m, msg.clone()));
        }
    }

    fn moderators(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.members
            .iter()
            .filter(|m| m.role.moderates())
            .map(|m| m.id)
    }

    fn member(&self, id: ParticipantId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The email of the account member `id` joined with; `None` for a guest (or no member).
    pub(crate) fn account_of(&self, id: ParticipantId) -> Option<&str> {
        self.member(id)?
            .grant
            .user
            .as_ref()
            .map(|u| u.email.as_str())
    }

    fn member_mut(&mut self, id: ParticipantId) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn role_of(&self, id: ParticipantId) -> Option<Role> {
        self.member(id).map(|m| m.role)
    }

    /// The role a participant goes back to when co-host is taken away.
    fn base_role(&self, id: ParticipantId) -> Role {
        match self.member(id) {
            Some(m) if m.grant.user.is_none() => Role::Guest,
            _ => Role::Participant,
        }
    }

    fn member_name(&self, id: ParticipantId) -> String {
        self.member(id)
            .map(|m| describe(&m.name, m.grant.user.as_ref()))
            .unwrap_or_default()
    }

    fn waiter_name(&self, id: ParticipantId) -> String {
        self.waiting
            .iter()
            .find(|w| w.entrant.id == id)
            .map(|w| describe(&w.entrant.name, w.entrant.grant.user.as_ref()))
            .unwrap_or_default()
    }

    fn title(&self) -> String {
        self.record
            .as_ref()
            .map(|m| m.title.clone())
            .unwrap_or_default()
    }

    /// Participant time of those in the meeting now.
    fn present_ms(&self, now: Instant) -> u64 {
        self.members
            .iter()
            .map(|m| now.saturating_duration_since(m.joined_at).as_millis() as u64)
            .sum()
    }
}

impl Member {
    /// The role to give back when they return: a stand-in host returns as what they were.
    fn lasting_role(&self) -> Role {
        self.standing_in.unwrap_or(self.role)
    }
}
