//! Who may join which room, and with what grant: the bridge between the stored meetings
//! (passcodes, roles, plans) and the SFU's live meetings. Also stores what the SFU reports
//! back (host actions for the audit log, usage of finished meetings).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use tokio::sync::mpsc;
use tracing::{error, info, warn};
use veche_proto::{E2eeMode, ErrorCode, Role, ServerMessage};

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn into_message(self) -> ServerMessage {
        ServerMessage::error(self.code, self.message)
    }
}
use veche_sfu::{
    JoinGrant, MeetingRef, MeetingSnapshot, MeetingUsage, SfuEvent, SfuHandle, UserRef,
};

use crate::api::{AccountSettings, Clock, session_token};
use crate::dashboard::Dashboard;
use crate::live_save::LiveSaver;
use crate::store::{
    ALL_ORGS, JoinError, JoinRole, LiveChange, NewAuditEntry, Store, UsageRecord, User,
};
use crate::webhooks::Webhooks;

/// Who opened a signalling connection.
#[derive(Clone, Default)]
pub(crate) struct Identity {
    pub(crate) user: Option<User>,
    pub(crate) ip: Option<IpAddr>,
    /// The session token `user` was found by, to check it again at each join.
    pub(crate) token: Option<String>,
}

/// Without the token: it is a credential and must not reach a log.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("user", &self.user.as_ref().map(|u| &u.id))
            .field("ip", &self.ip)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Decides joins. Without a store (web-layer tests) every room is an instant guest room.
pub(crate) struct JoinGate {
    store: Option<Store>,
    settings: AccountSettings,
    clock: Arc<dyn Clock>,
    /// The length of a plan minute (shortened in tests).
    minute: Duration,
}

impl JoinGate {
    pub(crate) fn new(
        store: Store,
        settings: AccountSettings,
        clock: Arc<dyn Clock>,
        minute: Duration,
    ) -> JoinGate {
        JoinGate {
            store: Some(store),
            settings,
            clock,
            minute,
        }
    }

    /// The store, for counters on `/metrics` (`None` in web-layer tests).
    pub(crate) fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    #[cfg(test)]
    pub(crate) fn guest_rooms_only() -> JoinGate {
        JoinGate {
            store: None,
            settings: AccountSettings::default(),
            clock: Arc::new(crate::api::SystemClock),
            minute: Duration::from_secs(60),
        }
    }

    /// The account behind the upgrade request: a bearer token, or the session cookie when the
    /// request comes from our own pages. A cookie on a cross-site upgrade is ignored — the
    /// browser would attach it to any site's WebSocket (cross-site WebSocket hijacking).
    pub(crate) async fn identify(&self, headers: &HeaderMap, peer: SocketAddr) -> Identity {
        let ip = Some(peer.ip());
        let Some(store) = &self.store else {
            return Identity {
                user: None,
                ip,
                token: None,
            };
        };
        let Some((token, via_cookie)) = session_token(headers) else {
            return Identity {
                user: None,
                ip,
                token: None,
            };
        };
        if via_cookie && !same_origin(headers) {
            warn!(%peer, "ignoring the session cookie of a cross-origin WebSocket");
            return Identity {
                user: None,
                ip,
                token: None,
            };
        }
        match store.session(&token, self.clock.now()).await {
            Ok(Some((user, _))) => Identity {
                user: Some(user),
                ip,
                token: Some(token),
            },
            Ok(None) => Identity {
                user: None,
                ip,
                token: None,
            },
            Err(e) => {
                error!("session lookup failed: {e}");
                Identity {
                    user: None,
                    ip,
                    token: None,
                }
            }
        }
    }

    /// `who` as they are now: a connection opened with an account session joins only while
    /// that session lasts, with the account's current roles. A session that ended since the
    /// upgrade (signed out, password changed, expired) is refused with the fatal
    /// `session_ended` rather than let in as a guest: the client asked to join as someone.
    pub(crate) async fn recheck(&self, who: &Identity) -> Result<Identity, Refusal> {
        let (Some(store), Some(token)) = (&self.store, &who.token) else {
            return Ok(who.clone());
        };
        match store.session(token, self.clock.now()).await {
            Ok(Some((user, _))) => Ok(Identity {
                user: Some(user),
                ip: who.ip,
                token: who.token.clone(),
            }),
            Ok(None) => Err(Refusal::new(
                ErrorCode::SessionEnded,
                "your session has ended (signed out, expired or changed); sign in again to join",
            )),
            Err(e) => {
                error!("session lookup failed: {e}");
                Err(Refusal::new(
                    ErrorCode::Internal,
                    "the server could not check your session; try again",
                ))
            }
        }
    }

    /// The grant for joining `room`: a stored meeting's (passcode, role, waiting room, plan,
    /// end-to-end encryption), or an instant guest room's when no meeting has that id and the
    /// operator allows them. With `--force-e2ee` every meeting and guest room is encrypted.
    /// An `Err` says why not (fatal or not, by its code).
    pub(crate) async fn authorise(
        &self,
        who: &Identity,
        room: &str,
        passcode: Option<&str>,
    ) -> Result<JoinGrant, Refusal> {
        // The connectivity check's private rooms are joined only by `/check/ws`.
        if room.starts_with(crate::check::ROOM_PREFIX) {
            return Err(Refusal::new(
                ErrorCode::InvalidRoom,
                format!(
                    "room names starting with {:?} are reserved for the connectivity check",
                    crate::check::ROOM_PREFIX
                ),
            ));
        }
        let forced = if self.settings.force_e2ee {
            E2eeMode::Required
        } else {
            E2eeMode::Off
        };
        let guest_room = || {
            if self.settings.guest_rooms {
                Ok(JoinGrant {
                    role: if who.user.is_some() {
                        Role::Participant
                    } else {
                        Role::Guest
                    },
                    user: who.user.as_ref().map(user_ref),
                    ip: who.ip,
                    e2ee: forced,
                    ..JoinGrant::default()
                })
            } else {
                Err(Refusal::new(
                    ErrorCode::MeetingNotFound,
                    "no meeting has this id (instant guest rooms are turned off on this server)",
                ))
            }
        };
        let Some(store) = &self.store else {
            return guest_room();
        };
        // A name no meeting id can have is not worth a database query; the SFU tells the
        // client what is wrong with it.
        if room.is_empty() || room.len() > 64 || !room.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return guest_room();
        }
        let ip = who.ip.map(|ip| ip.to_string());
        let decision = store
            .meeting_for_join(
                room,
                who.user.as_ref(),
                passcode,
                self.clock.now(),
                self.settings.lockout,
                ip.as_deref(),
            )
            .await;
        let d = match decision {
            Ok(d) => d,
            Err(JoinError::NotFound) => {
                return match store.meeting_deleted(room).await {
                    Ok(false) => guest_room(),
                    Ok(true) => Err(Refusal::new(
                        ErrorCode::MeetingNotFound,
                        "this meeting was deleted",
                    )),
                    Err(e) => {
                        error!("checking for a deleted meeting failed: {e}");
                        Err(Refusal::new(
                            ErrorCode::Internal,
                            "the server could not check this meeting; try again",
                        ))
                    }
                };
            }
            Err(JoinError::PasscodeRequired) => {
                return Err(Refusal::new(
                    ErrorCode::PasscodeRequired,
                    "this meeting needs a passcode",
                ));
            }
            Err(JoinError::WrongPasscode) => {
                return Err(Refusal::new(ErrorCode::WrongPasscode, "wrong passcode"));
            }
            Err(JoinError::LockedOut(secs)) => {
                return Err(Refusal::new(
                    ErrorCode::LockedOut,
                    format!(
                        "too many wrong passcodes; try again in {} minutes",
                        (secs + 59) / 60
                    ),
                ));
            }
            Err(JoinError::Store(e)) => {
                error!("join decision failed: {e}");
                return Err(Refusal::new(
                    ErrorCode::Internal,
                    "the server could not check this meeting; try again",
                ));
            }
        };
        let minutes = |m: i64| {
            self.minute
                .saturating_mul(u32::try_from(m).unwrap_or(u32::MAX))
        };
        Ok(JoinGrant {
            role: match d.role {
                JoinRole::Host => Role::Host,
                JoinRole::CoHost => Role::CoHost,
                JoinRole::Participant => Role::Participant,
                JoinRole::Guest => Role::Guest,
            },
            user: who.user.as_ref().map(user_ref),
            ip: who.ip,
            meeting: Some(MeetingRef {
                id: d.meeting_id,
                org_id: d.org_id,
                title: d.title,
            }),
            waiting_room: d.waiting_room,
            wait_for_host: d.wait_for_host,
            max_participants: d.max_participants.map(|n| usize::try_from(n).unwrap_or(0)),
            max_duration: d.max_duration_minutes.map(minutes),
            e2ee: if forced == E2eeMode::Required {
                forced
            } else {
                d.e2ee
            },
        })
    }
}

fn user_ref(u: &User) -> UserRef {
    UserRef {
        id: u.id.clone(),
        email: u.email.clone(),
    }
}

/// Whether the page that opened the WebSocket is ours: its `Origin` names the host it
/// connected to. Browsers always send `Origin` on WebSocket upgrades; other clients use
/// bearer tokens.
fn same_origin(headers: &HeaderMap) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

/// Stores what the SFU reports until it stops: host actions in the audit log, finished
/// meetings in the usage records, peak concurrency (kept live in `dashboard`), and snapshots
/// of running meetings (so a restart carries them on). Every event is first offered to the
/// webhooks — the one place they learn of meetings starting and ending and participants
/// coming and going; the offer never waits. Snapshots go to the group-commit writer
/// (`live_save.rs`), which tells `sfu` once each is stored; a meeting that ends is deleted
/// before anything else of it is stored. A failed write is logged and retried after `retry`;
/// it never stops a meeting.
pub(crate) async fn store_events(
    store: Store,
    clock: Arc<dyn Clock>,
    mut events: mpsc::UnboundedReceiver<SfuEvent>,
    sfu: Option<SfuHandle>,
    retry: Duration,
    webhooks: Webhooks,
    dashboard: Dashboard,
) {
    let saver = LiveSaver::start(store.clone(), sfu.clone(), retry);
    let mut peaks = tokio::time::interval(PEAK_EVERY);
    peaks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = peaks.tick() => {
                record_current_peaks(&store, &dashboard, clock.now()).await;
                continue;
            }
        };
        let Some(event) = event else {
            break;
        };
        batch.push(event);
        while batch.len() < EVENT_BATCH {
            match events.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        for event in &batch {
            webhooks.offer(event);
        }
        // Snapshots go to their writer before the audit log and the rest are written, so the
        // news they hold back waits for one write, not for those too. Not past a meeting's
        // end: the next meeting of its room must not be stored before that one is deleted.
        let ended = batch
            .iter()
            .position(|e| matches!(e, SfuEvent::MeetingClosed { .. }))
            .unwrap_or(batch.len());
        let mut rest = Vec::with_capacity(batch.len());
        for (i, event) in batch.drain(..).enumerate() {
            match event {
                SfuEvent::MeetingSaved { snapshot, seq } if i < ended => {
                    save_snapshot(&saver, sfu.as_ref(), &snapshot, seq);
                }
                other => rest.push(other),
            }
        }
        for event in rest {
            store_event(&store, &*clock, &saver, sfu.as_ref(), &dashboard, event).await;
        }
    }
    saver.finish().await;
}

/// Events taken off the SFU's channel at a time.
const EVENT_BATCH: usize = 256;

/// Hands a running meeting's snapshot to the writer. A connectivity check's room lives for
/// seconds and must not come back after a restart: nothing of it is stored, and its news
/// goes out at once.
fn save_snapshot(saver: &LiveSaver, sfu: Option<&SfuHandle>, snapshot: &MeetingSnapshot, seq: u64) {
    let room = snapshot.room.clone();
    if room.starts_with(crate::check::ROOM_PREFIX) {
        if let Some(sfu) = sfu {
            sfu.saved(room, seq);
        }
        return;
    }
    match serde_json::to_string(snapshot) {
        Ok(json) => {
            let change = LiveChange::Save {
                snapshot: json,
                saved_at: (snapshot.saved_at_ms / 1000) as i64,
            };
            saver.save(room, change, seq);
        }
        Err(e) => {
            error!(%room, "a meeting snapshot did not serialise: {e}");
            // Nothing will be stored: its news need not wait.
            if let Some(sfu) = sfu {
                sfu.saved(room, seq);
            }
        }
    }
}

/// Stores one event of the SFU (see [`store_events`]).
async fn store_event(
    store: &Store,
    clock: &dyn Clock,
    saver: &LiveSaver,
    sfu: Option<&SfuHandle>,
    dashboard: &Dashboard,
    event: SfuEvent,
) {
    let result = match event {
        SfuEvent::MeetingSaved { snapshot, seq } => {
            save_snapshot(saver, sfu, &snapshot, seq);
            return;
        }
        SfuEvent::MeetingClosed { room, seq } => {
            if room.starts_with(crate::check::ROOM_PREFIX) {
                if let Some(sfu) = sfu {
                    sfu.saved(room, seq);
                }
            } else {
                // Before its usage is recorded, so a crash cannot bring an ended meeting
                // back and count it twice.
                saver.save_now(room, LiveChange::Delete, seq).await;
            }
            return;
        }
        SfuEvent::Audit(a) => store.audit(audit_entry(a), clock.now()).await,
        SfuEvent::MeetingFinished(u) => {
            dashboard.live().finished(&u.meeting_id);
            store.record_usage(&usage_record(&u)).await
        }
        SfuEvent::ParticipantJoined(p) => {
            let now = dashboard
                .live()
                .joined(&p.meeting.id, &p.meeting.org_id, p.participant_id);
            let at = (p.at_ms / 1000) as i64;
            match store
                .record_peak(&p.meeting.org_id, at, now.org as i64)
                .await
            {
                Ok(()) => store.record_peak(ALL_ORGS, at, now.total as i64).await,
                Err(e) => Err(e),
            }
        }
        SfuEvent::ParticipantLeft(p) => {
            dashboard.live().left(&p.meeting.id, p.participant_id);
            return;
        }
        // For the webhooks alone.
        SfuEvent::MeetingStarted(_) => return,
    };
    if let Err(e) = result {
        error!("storing a meeting event failed: {e}");
    }
}

/// How often the number of participants in meetings is written as the current hour's
/// peak while anyone is in one, so an hour a meeting runs through without joins has one.
const PEAK_EVERY: Duration = Duration::from_secs(60);

async fn record_current_peaks(store: &Store, dashboard: &Dashboard, now: i64) {
    let per_org = dashboard.live().per_org();
    if per_org.is_empty() {
        return;
    }
    let total: usize = per_org.values().sum();
    let writes = per_org
        .iter()
        .map(|(org, n)| (org.as_str(), *n))
        .chain([(ALL_ORGS, total)]);
    for (org, n) in writes {
        if let Err(e) = store.record_peak(org, now, n as i64).await {
            error!("recording peak concurrency failed: {e}");
        }
    }
}

fn audit_entry(a: veche_sfu::AuditEvent) -> NewAuditEntry {
    NewAuditEntry {
        actor_id: a.actor.as_ref().map(|u| u.id.clone()),
        actor_email: a.actor.as_ref().map(|u| u.email.clone()),
        ip: a.ip.map(|ip| ip.to_string()),
        action: a.action.to_owned(),
        target: format!("{} in meeting {}", a.target, a.meeting_id),
        org_id: a.org_id,
        detail: if a.detail.is_empty() {
            format!("by {}", a.actor_name)
        } else {
            format!("by {}: {}", a.actor_name, a.detail)
        },
    }
}

pub(crate) fn usage_record(u: &MeetingUsage) -> UsageRecord {
    UsageRecord {
        org_id: u.org_id.clone(),
        meeting_id: u.meeting_id.clone(),
        started_at: (u.started_at_ms / 1000) as i64,
        ended_at: (u.ended_at_ms / 1000) as i64,
        peak_participants: u.peak_participants as i64,
        participant_minutes: u.participant_ms.div_ceil(60_000) as i64,
    }
}

/// The meetings a restart interrupted, read back for the SFU: those saved within `window`
/// come back; older ones are over (nobody could have come back in time) — their usage is
/// recorded and they are deleted, as are snapshots that no longer parse.
pub(crate) async fn live_meetings_to_restore(
    store: &Store,
    now_s: i64,
    window: Duration,
) -> Vec<MeetingSnapshot> {
    let rows = match store.live_meetings().await {
        Ok(rows) => rows,
        Err(e) => {
            error!("reading running meetings failed; none are restored: {e}");
            return Vec::new();
        }
    };
    let mut restore = Vec::new();
    let mut over = Vec::new();
    for row in rows {
        let snapshot: MeetingSnapshot = match serde_json::from_str(&row.snapshot) {
            Ok(s) => s,
            Err(e) => {
                warn!(room = %row.room, "dropping a meeting snapshot that does not parse: {e}");
                over.push((row.room, LiveChange::Delete));
                continue;
            }
        };
        if snapshot.room != row.room || now_s - row.saved_at > window.as_secs() as i64 {
            if let (Some(m), Some(started)) = (&snapshot.meeting, snapshot.started_at_ms) {
                let usage = MeetingUsage {
                    meeting_id: m.id.clone(),
                    org_id: m.org_id.clone(),
                    started_at_ms: started,
                    ended_at_ms: snapshot.saved_at_ms,
                    peak_participants: snapshot.peak_participants,
                    participant_ms: snapshot.participant_ms,
                };
                if let Err(e) = store.record_usage(&usage_record(&usage)).await {
                    error!(room = %row.room, "recording usage of an interrupted meeting failed: {e}");
                }
            }
            info!(room = %row.room, "a meeting interrupted too long ago is over");
            over.push((row.room, LiveChange::Delete));
            continue;
        }
        restore.push(snapshot);
    }
    if let Err(e) = store.write_live_meetings(&over).await {
        error!("deleting stale meeting snapshots failed: {e}");
    }
    restore
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn origin_must_name_the_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("meet.example.org"));
        assert!(!same_origin(&h), "no Origin: not a page of ours");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://meet.example.org"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://meet.example.org.evil.example"),
        );
        assert!(!same_origin(&h));
    }
}
