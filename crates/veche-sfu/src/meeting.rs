//! What the server tells the SFU about a joiner (their grant), what a live meeting keeps
//! (waiting room, host policy, time limit, usage), and what the SFU reports back (audit
//! entries and usage) for the server to store.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use veche_proto::{ErrorCode, MeetingState, ParticipantId, ParticipantInfo, Role, WaitingInfo};

/// A join the signalling layer has already authorised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub version: u32,
    pub room: String,
    pub name: String,
    pub grant: JoinGrant,
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

#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The live state of a meeting beyond its members: host policy, waiting room, bars, clock
/// and usage.
#[derive(Debug)]
pub(crate) struct MeetingLive {
    pub(crate) meeting: Option<MeetingRef>,
    pub(crate) locked: bool,
    pub(crate) allow_self_unmute: bool,
    /// Waiting participants, in arrival order.
    pub(crate) waiting: Vec<ParticipantId>,
    pub(crate) barred_users: HashSet<String>,
    pub(crate) barred_ips: HashSet<IpAddr>,
    /// Everyone let in since the meeting started, so a dropped connection that comes back
    /// skips the waiting room (as in Zoom), with the host mutes it had.
    pub(crate) known: HashMap<String, [bool; 3]>,
    /// Participant cap: the server's, lowered by the plan's.
    pub(crate) max_participants: usize,
    /// Set when the first participant is let in.
    pub(crate) started: Option<Started>,
    /// When the plan's time limit ends the meeting.
    pub(crate) ends_at: Option<Instant>,
    /// How many time-limit warnings have gone out (at 5 and at 1 minute left).
    pub(crate) warnings_sent: u8,
    pub(crate) peak: usize,
    /// Participant time of those who already left.
    pub(crate) participant_ms: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    pub(crate) at: Instant,
    pub(crate) unix_ms: u64,
}

impl MeetingLive {
    pub(crate) fn new(meeting: Option<MeetingRef>, max_participants: usize) -> MeetingLive {
        MeetingLive {
            meeting,
            locked: false,
            allow_self_unmute: true,
            waiting: Vec::new(),
            barred_users: HashSet::new(),
            barred_ips: HashSet::new(),
            known: HashMap::new(),
            max_participants,
            started: None,
            ends_at: None,
            warnings_sent: 0,
            peak: 0,
            participant_ms: 0,
        }
    }

    /// How a returning participant is recognised: their account, or a guest's address and
    /// display name.
    pub(crate) fn returning_key(grant: &JoinGrant, name: &str) -> Option<String> {
        match (&grant.user, grant.ip) {
            (Some(u), _) => Some(format!("user:{}", u.id)),
            (None, Some(ip)) => Some(format!("guest:{ip}/{name}")),
            (None, None) => None,
        }
    }

    /// Remembers someone who was in the meeting. Bounded: past the bound (churn of many
    /// different guests) newcomers are simply not remembered.
    pub(crate) fn remember(&mut self, grant: &JoinGrant, name: &str, host_muted: [bool; 3]) {
        const MAX_KNOWN: usize = 1024;
        if let Some(k) = MeetingLive::returning_key(grant, name)
            && (self.known.len() < MAX_KNOWN || self.known.contains_key(&k))
        {
            self.known.insert(k, host_muted);
        }
    }

    pub(crate) fn forget(&mut self, grant: &JoinGrant, name: &str) {
        if let Some(k) = MeetingLive::returning_key(grant, name) {
            self.known.remove(&k);
        }
    }

    pub(crate) fn is_barred(&self, grant: &JoinGrant) -> bool {
        match (&grant.user, grant.ip) {
            (Some(u), _) => self.barred_users.contains(&u.id),
            (None, Some(ip)) => self.barred_ips.contains(&ip),
            (None, None) => false,
        }
    }

    /// Bars an account, or — for a guest, who has nothing else to recognise them by — their
    /// address.
    pub(crate) fn bar(&mut self, user: Option<&UserRef>, ip: Option<IpAddr>) {
        match (user, ip) {
            (Some(u), _) => {
                self.barred_users.insert(u.id.clone());
            }
            (None, Some(ip)) => {
                self.barred_ips.insert(ip);
            }
            (None, None) => {}
        }
    }

    pub(crate) fn title(&self) -> String {
        self.meeting
            .as_ref()
            .map(|m| m.title.clone())
            .unwrap_or_default()
    }

    /// Wall-clock time of `now`, from the start anchor.
    pub(crate) fn unix_ms_at(&self, now: Instant) -> Option<u64> {
        self.started
            .map(|s| s.unix_ms + now.saturating_duration_since(s.at).as_millis() as u64)
    }

    /// Usage to record, if this meeting has a stored record and ever started.
    pub(crate) fn usage(&self, now: Instant, remaining_ms: u64) -> Option<MeetingUsage> {
        let meeting = self.meeting.as_ref()?;
        let started = self.started?;
        Some(MeetingUsage {
            meeting_id: meeting.id.clone(),
            org_id: meeting.org_id.clone(),
            started_at_ms: started.unix_ms,
            ended_at_ms: self.unix_ms_at(now).unwrap_or(started.unix_ms),
            peak_participants: self.peak,
            participant_ms: self.participant_ms + remaining_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_accounts_by_id_and_guests_by_address() {
        let mut m = MeetingLive::new(None, 10);
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let user = UserRef {
            id: "u1".into(),
            email: "a@example.org".into(),
        };
        m.bar(Some(&user), Some(ip));
        let same_user_elsewhere = JoinGrant {
            user: Some(user.clone()),
            ip: Some("10.0.0.8".parse().unwrap()),
            ..JoinGrant::default()
        };
        assert!(m.is_barred(&same_user_elsewhere));
        // The account was barred, not the address it used.
        let guest_same_ip = JoinGrant {
            ip: Some(ip),
            ..JoinGrant::default()
        };
        assert!(!m.is_barred(&guest_same_ip));
        m.bar(None, Some(ip));
        assert!(m.is_barred(&guest_same_ip));
    }
}
