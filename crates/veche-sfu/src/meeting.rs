//! What the server tells the SFU about a joiner (their grant), and what the SFU reports back
//! for the server to store: audit entries, usage, and snapshots of running meetings. The
//! meeting policy itself is `core/policy.rs`.

use std::net::IpAddr;
use std::time::Duration;

use veche_proto::{
    E2eeMode, ErrorCode, MeetingState, ParticipantId, ParticipantInfo, Role, WaitingInfo,
};

/// A join the signalling layer has already authorised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub version: u32,
    pub room: String,
    pub name: String,
    pub grant: JoinGrant,
    /// The resume token a guest was given in an earlier `joined` of this meeting.
    pub resume: Option<String>,
    /// The client can encrypt media end to end (`join`'s `e2ee`).
    pub e2ee: bool,
    /// The join asks for an end-to-end encrypted room (`join`'s `require_e2ee`): honoured
    /// only when it creates an instant guest room.
    pub require_e2ee: bool,
}

/// What the joiner may do in the meeting, decided by the server from the meeting's settings,
/// the joiner's account and the organisation's plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinGrant {
    /// The role the joiner starts with. In an instant guest room (no `meeting`) the first
    /// joiner becomes host whatever this says.
    pub role: Role,
    /// The joiner's account, when signed in.
    pub user: Option<UserRef>,
    /// The joiner's address (audit log; barring guests).
    pub ip: Option<IpAddr>,
    /// The stored meeting behind the room; `None` for an instant guest room.
    pub meeting: Option<MeetingRef>,
    /// Hold the joiner until a host or co-host admits them.
    pub waiting_room: bool,
    /// Hold the joiner until a host or co-host is present (join-before-host off).
    pub wait_for_host: bool,
    /// The plan's participant cap (the server-wide cap applies as well).
    pub max_participants: Option<usize>,
    /// The plan's longest meeting.
    pub max_duration: Option<Duration>,
    /// The meeting must be end-to-end encrypted (its setting, its plan's or the
    /// operator's). Takes effect when the meeting starts; a running meeting keeps its mode.
    pub e2ee: E2eeMode,
}

impl JoinGrant {
    /// An instant guest room with no account: what a bare `join` message gets.
    pub fn guest_room() -> JoinGrant {
        JoinGrant {
            role: Role::Guest,
            ..JoinGrant::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub id: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MeetingRef {
    pub id: String,
    pub org_id: String,
    pub title: String,
}

/// Someone using the host controls from outside the meeting (the REST API), with the
/// authority the server found for them on the stored meeting.
#[derive(Debug, Clone)]
pub struct RemoteActor {
    pub role: Role,
    pub user: Option<UserRef>,
    pub ip: Option<IpAddr>,
}

/// Why a host control from the API was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    pub code: ErrorCode,
    pub message: String,
}

/// A running meeting as the API shows it to its hosts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LiveMeeting {
    pub meeting: MeetingState,
    pub participants: Vec<ParticipantInfo>,
    pub waiting: Vec<WaitingInfo>,
}

/// Something the server should store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuEvent {
    /// A host action, for the audit log.
    Audit(AuditEvent),
    /// A meeting with a stored record finished (ended, or its last participant left).
    MeetingFinished(MeetingUsage),
    /// A running meeting changed what a restart needs (the latest replaces earlier ones).
    /// `seq` grows with each snapshot of the core: once it is stored, the server says so
    /// through [`crate::Sfu::handle_saved`] ([`crate::SfuHandle::saved`]), and the news of
    /// the changes in it goes out to the meeting's clients.
    MeetingSaved {
        snapshot: Box<MeetingSnapshot>,
        seq: u64,
    },
    /// The meeting in this room is over: a restart must not bring it back. Once that is
    /// stored, the server reports `seq` like a snapshot's ([`crate::SfuHandle::saved`]): the
    /// news of the end waits for it.
    MeetingClosed { room: String, seq: u64 },
    /// A meeting with a stored record started: its first participant was let in. Not sent
    /// again when a restored meeting carries on after a restart.
    MeetingStarted(MeetingStart),
    /// Someone was let into a meeting with a stored record (each connection that comes in,
    /// a dropped one coming back included).
    ParticipantJoined(Presence),
    /// A member left a meeting with a stored record, or was removed. Members still in it
    /// when the meeting ends get no event of their own: [`SfuEvent::MeetingFinished`] says
    /// it ended for everyone.
    ParticipantLeft(Presence),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingStart {
    pub meeting: MeetingRef,
    pub room: String,
    pub started_at_ms: u64,
}

/// One participant of a meeting with a stored record, as they came in or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub meeting: MeetingRef,
    pub participant_id: ParticipantId,
    /// Their display name in the meeting.
    pub name: String,
    /// Their account, when signed in.
    pub user: Option<UserRef>,
    pub role: Role,
    /// When they came in or went, Unix milliseconds.
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub meeting_id: String,
    pub org_id: Option<String>,
    pub actor: Option<UserRef>,
    /// The actor's display name in the meeting (guests have nothing else).
    pub actor_name: String,
    pub ip: Option<IpAddr>,
    /// `meeting.admit`, `meeting.mute`, … (stable names, listed in docs/accounts.md).
    pub action: &'static str,
    /// Who the action was aimed at (name and account id when known), or the meeting.
    pub target: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingUsage {
    pub meeting_id: String,
    pub org_id: String,
    pub started_at_ms: u64,
    pub ended_at_ms: u64,
    pub peak_participants: usize,
    pub participant_ms: u64,
}

/// What a restart needs to carry a running meeting on: its host policy and everyone who is
/// (or was) in it, by identity. The core emits one through [`SfuEvent::MeetingSaved`] when
/// any of it changes; the server stores it and hands it back through
/// [`crate::Sfu::restore`] after a restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MeetingSnapshot {
    pub room: String,
    pub meeting: Option<MeetingRef>,
    pub locked: bool,
    pub allow_self_unmute: bool,
    /// Absent in snapshots stored before it existed: `off`.
    #[serde(default)]
    pub e2ee: E2eeMode,
    pub barred_users: Vec<String>,
    pub barred_ips: Vec<IpAddr>,
    /// Everyone in the meeting and everyone who left and may come back.
    pub people: Vec<Remembered>,
    pub max_participants: usize,
    pub started_at_ms: Option<u64>,
    pub ends_at_ms: Option<u64>,
    pub warnings_sent: u8,
    pub peak_participants: usize,
    pub participant_ms: u64,
    /// Wall clock when it was taken.
    pub saved_at_ms: u64,
}

/// Someone a meeting recognises when they come back: the role, host mutes and hand they had.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Remembered {
    /// `user:<account id>` or `guest:<id from their resume token>`.
    pub key: String,
    pub role: Role,
    /// Host mutes of audio, video, screen.
    pub host_muted: [bool; 3],
    /// Absent in snapshots stored before it existed: down.
    #[serde(default)]
    pub hand_raised: bool,
}
