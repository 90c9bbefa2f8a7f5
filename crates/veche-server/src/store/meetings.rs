//! Meetings (instant and scheduled), co-hosts, and the join decision the live meeting asks
//! for when someone wants in.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use veche_proto::E2eeMode;

use super::plans::insert_audit;
use super::{Actor, LockoutPolicy, Plan, Store, StoreError, StoreResult, User, flag, meeting_id};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Recurrence {
    #[default]
    None,
    Weekly,
}

impl Recurrence {
    fn as_str(self) -> &'static str {
        match self {
            Recurrence::None => "none",
            Recurrence::Weekly => "weekly",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Meeting {
    pub id: String,
    pub org_id: String,
    pub owner_id: String,
    pub title: String,
    /// `None` for an instant meeting.
    pub starts_at: Option<i64>,
    pub duration_minutes: i64,
    pub recurrence: Recurrence,
    /// The passcode itself is never stored, only its Argon2id hash.
    pub has_passcode: bool,
    pub waiting_room: bool,
    pub join_before_host: bool,
    /// User ids of the co-hosts.
    pub co_hosts: Vec<String>,
    /// End-to-end encryption of the meeting's media (its plan may require it anyway).
    pub e2ee: E2eeMode,
    pub created_at: i64,
    /// Bumped by every change: the iCalendar SEQUENCE of the meeting's event.
    pub sequence: i64,
}

#[derive(Debug, Clone, Default)]
pub struct NewMeeting {
    pub title: String,
    pub starts_at: Option<i64>,
    pub duration_minutes: i64,
    pub recurrence: Recurrence,
    pub passcode: Option<String>,
    pub waiting_room: bool,
    pub join_before_host: bool,
    pub co_hosts: Vec<String>,
    pub e2ee: E2eeMode,
}

/// Changes to a meeting; `None` leaves a field as it is. `passcode: Some(None)` removes it.
#[derive(Debug, Clone, Default)]
pub struct MeetingPatch {
    pub title: Option<String>,
    pub starts_at: Option<Option<i64>>,
    pub duration_minutes: Option<i64>,
    pub recurrence: Option<Recurrence>,
    pub passcode: Option<Option<String>>,
    pub waiting_room: Option<bool>,
    pub join_before_host: Option<bool>,
    pub co_hosts: Option<Vec<String>>,
    pub e2ee: Option<E2eeMode>,
}

/// Who someone is in a meeting they join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinRole {
    /// The meeting's owner.
    Host,
    /// Named co-host, an admin of the meeting's organisation, or the operator.
    CoHost,
    /// Signed in, no special rights.
    Participant,
    /// Not signed in.
    Guest,
}

impl JoinRole {
    pub fn is_host(self) -> bool {
        matches!(self, JoinRole::Host | JoinRole::CoHost)
    }
}

/// What the live meeting must do with a joiner: their role, whether they wait for admission
/// or for the host, and the plan's limits that apply to the whole meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JoinDecision {
    pub meeting_id: String,
    pub org_id: String,
    pub title: String,
    pub role: JoinRole,
    /// Hold in the waiting room until a host or co-host admits them.
    pub waiting_room: bool,
    /// Hold until a host or co-host is present (join-before-host is off).
    pub wait_for_host: bool,
    /// Participant cap of the organisation's plan; `None` = no cap.
    pub max_participants: Option<i64>,
    /// Longest meeting the plan allows, in minutes; `None` = no cap.
    pub max_duration_minutes: Option<i64>,
    /// End-to-end encryption: the meeting's setting, or `required` when its plan requires it.
    pub e2ee: E2eeMode,
    pub plan: Plan,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    #[error("meeting not found")]
    NotFound,
    #[error("passcode required")]
    PasscodeRequired,
    #[error("wrong passcode")]
    WrongPasscode,
    #[error("too many wrong passcodes; try again in {0} s")]
    LockedOut(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

const MEETING_COLUMNS: &str = "id, org_id, owner_id, title, starts_at, duration_minutes, \
                               recurrence, passcode_hash, waiting_room, join_before_host, created_at, e2ee, sequence";

fn e2ee_str(mode: E2eeMode) -> &'static str {
    match mode {
        E2eeMode::Off => "off",
        E2eeMode::Required => "required",
        E2eeMode::Optional => "optional",
    }
}

pub(crate) const MAX_DURATION_MINUTES: i64 = 24 * 60;

fn invalid(field: &'static str, message: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field,
        message: message.into(),
    }
}

fn check_title(title: &str) -> StoreResult<String> {
    let t = title.trim();
    if t.is_empty() || t.chars().count() > 200 {
        return Err(invalid("title", "must have 1 to 200 characters"));
    }
    Ok(t.to_owned())
}

fn check_duration(minutes: i64) -> StoreResult<()> {
    if !(1..=MAX_DURATION_MINUTES).contains(&minutes) {
        return Err(invalid(
            "duration_minutes",
            format!("{minutes} is not between 1 and {MAX_DURATION_MINUTES}"),
        ));
    }
    Ok(())
}

/// The shortest and longest passcode a meeting may have.
pub(crate) const MIN_PASSCODE_CHARS: usize = 4;
pub(crate) const MAX_PASSCODE_CHARS: usize = 64;

impl Store {
    async fn hash_passcode(&self, passcode: &str) -> StoreResult<String> {
        let n = passcode.chars().count();
        if !(MIN_PASSCODE_CHARS..=MAX_PASSCODE_CHARS).contains(&n) {
            return Err(invalid(
                "passcode",
                format!("must have {MIN_PASSCODE_CHARS} to {MAX_PASSCODE_CHARS} characters"),
            ));
        }
        Ok(self.hasher.hash(passcode).await?)
    }
}

/// A meeting row plus its passcode hash, which never leaves this module.
struct MeetingRow {
    meeting: Meeting,
    passcode_hash: Option<String>,
}

fn meeting_from_row(row: &AnyRow) -> StoreResult<MeetingRow> {
    let recurrence: String = row.try_get("recurrence")?;
    let passcode_hash: Option<String> = row.try_get("passcode_hash")?;
    let e2ee: String = row.try_get("e2ee")?;
    Ok(MeetingRow {
        meeting: Meeting {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            owner_id: row.try_get("owner_id")?,
            title: row.try_get("title")?,
            starts_at: row.try_get("starts_at")?,
            duration_minutes: row.try_get("duration_minutes")?,
            recurrence: if recurrence == "weekly" {
                Recurrence::Weekly
            } else {
                Recurrence::None
            },
            has_passcode: passcode_hash.is_some(),
            waiting_room: row.try_get::<i64, _>("waiting_room")? != 0,
            join_before_host: row.try_get::<i64, _>("join_before_host")? != 0,
            co_hosts: Vec::new(),
            e2ee: match e2ee.as_str() {
                "required" => E2eeMode::Required,
                "optional" => E2eeMode::Optional,
                _ => E2eeMode::Off,
            },
            created_at: row.try_get("created_at")?,
            sequence: row.try_get("sequence")?,
        },
        passcode_hash,
    })
}

impl Store {
    /// Creates a meeting owned by `owner` in the owner's organisation, with a fresh
    /// unguessable id.
    pub async fn create_meeting(
        &self,
        owner: &User,
        new: NewMeeting,
        now: i64,
    ) -> StoreResult<Meeting> {
        self.create_meeting_inner(owner, new, now, None).await
    }

    /// [`Store::create_meeting`] with its `meeting.create` audit entry by `actor`, in one
    /// transaction.
    pub async fn create_meeting_by(
        &self,
        actor: &Actor,
        owner: &User,
        new: NewMeeting,
        now: i64,
    ) -> StoreResult<Meeting> {
        self.create_meeting_inner(owner, new, now, Some(actor))
            .await
    }

    async fn create_meeting_inner(
        &self,
        owner: &User,
        new: NewMeeting,
        now: i64,
        actor: Option<&Actor>,
    ) -> StoreResult<Meeting> {
        let title = check_title(&new.title)?;
        check_duration(new.duration_minutes)?;
        if new.starts_at.is_some_and(|t| t < 0) {
            return Err(invalid("starts_at", "must be a Unix time in seconds"));
        }
        let passcode_hash = match new.passcode.as_deref() {
            Some(p) => Some(self.hash_passcode(p).await?),
            None => None,
        };
        let meeting = Meeting {
            id: meeting_id(),
            org_id: owner.org_id.clone(),
            owner_id: owner.id.clone(),
            title,
            starts_at: new.starts_at,
            duration_minutes: new.duration_minutes,
            recurrence: new.recurrence,
            has_passcode: passcode_hash.is_some(),
            waiting_room: new.waiting_room,
            join_before_host: new.join_before_host,
            co_hosts: Vec::new(),
            e2ee: new.e2ee,
            created_at: now,
            sequence: 0,
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO meetings ({MEETING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0)"
        ))
        .bind(&meeting.id)
        .bind(&meeting.org_id)
        .bind(&meeting.owner_id)
        .bind(&meeting.title)
        .bind(meeting.starts_at)
        .bind(meeting.duration_minutes)
        .bind(meeting.recurrence.as_str())
        .bind(passcode_hash)
        .bind(flag(meeting.waiting_room))
        .bind(flag(meeting.join_before_host))
        .bind(now)
        .bind(e2ee_str(meeting.e2ee))
        .execute(&mut *tx)
        .await?;
        set_co_hosts(&mut tx, &meeting.id, &new.co_hosts).await?;
        if let Some(actor) = actor {
            let entry = actor.entry(
                "meeting.create",
                &meeting.id,
                Some(&meeting.org_id),
                meeting.title.clone(),
            );
            insert_audit(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        self.meeting(&meeting.id)
            .await?
            .ok_or(StoreError::NotFound("meeting"))
    }

    async fn meeting_row(&self, id: &str) -> StoreResult<Option<MeetingRow>> {
        let row = sqlx::query(&format!(
            "SELECT {MEETING_COLUMNS} FROM meetings WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut m = meeting_from_row(&row)?;
        m.meeting.co_hosts = self.co_hosts(id).await?;
        Ok(Some(m))
    }

    async fn co_hosts(&self, meeting_id: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT user_id FROM meeting_cohosts WHERE meeting_id = $1 ORDER BY user_id",
        )
        .bind(meeting_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("user_id").map_err(StoreError::from))
            .collect()
    }

    /// Whether `given` is the passcode of meeting `id` (`false` when it has none). For the
    /// meeting's managers, who could set it anyway: no attempt limits apply.
    pub async fn meeting_passcode_is(&self, id: &str, given: &str) -> StoreResult<bool> {
        let Some(MeetingRow { passcode_hash, .. }) = self.meeting_row(id).await? else {
            return Err(StoreError::NotFound("meeting"));
        };
        match passcode_hash {
            Some(hash) if given.chars().count() <= MAX_PASSCODE_CHARS => {
                Ok(self.hasher.verify(given, &hash).await?)
            }
            _ => Ok(false),
        }
    }

    pub async fn meeting(&self, id: &str) -> StoreResult<Option<Meeting>> {
        Ok(self.meeting_row(id).await?.map(|m| m.meeting))
    }

    /// Meetings `user_id` owns or co-hosts: scheduled ones by start time, then instant ones.
    pub async fn meetings_of(&self, user_id: &str) -> StoreResult<Vec<Meeting>> {
        let rows = sqlx::query(&format!(
            "SELECT {MEETING_COLUMNS} FROM meetings WHERE owner_id = $1 \
             OR id IN (SELECT meeting_id FROM meeting_cohosts WHERE user_id = $1) \
             ORDER BY CASE WHEN starts_at IS NULL THEN 1 ELSE 0 END, starts_at, created_at DESC, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut m = meeting_from_row(row)?.meeting;
            m.co_hosts = self.co_hosts(&m.id).await?;
            out.push(m);
        }
        Ok(out)
    }

    pub async fn update_meeting(&self, id: &str, patch: MeetingPatch) -> StoreResult<Meeting> {
        self.update_meeting_inner(id, patch, None).await
    }

    /// [`Store::update_meeting`] with its `meeting.update` audit entry by `actor` at `now`,
    /// in one transaction.
    pub async fn update_meeting_by(
        &self,
        actor: &Actor,
        id: &str,
        patch: MeetingPatch,
        now: i64,
    ) -> StoreResult<Meeting> {
        self.update_meeting_inner(id, patch, Some((actor, now)))
            .await
    }

    async fn update_meeting_inner(
        &self,
        id: &str,
        patch: MeetingPatch,
        audit: Option<(&Actor, i64)>,
    ) -> StoreResult<Meeting> {
        let Some(MeetingRow {
            meeting: mut m,
            mut passcode_hash,
        }) = self.meeting_row(id).await?
        else {
            return Err(StoreError::NotFound("meeting"));
        };
        if let Some(t) = patch.title {
            m.title = check_title(&t)?;
        }
        if let Some(s) = patch.starts_at {
            if s.is_some_and(|t| t < 0) {
                return Err(invalid("starts_at", "must be a Unix time in seconds"));
            }
            m.starts_at = s;
        }
        if let Some(d) = patch.duration_minutes {
            check_duration(d)?;
            m.duration_minutes = d;
        }
        if let Some(r) = patch.recurrence {
            m.recurrence = r;
        }
        if let Some(p) = patch.passcode {
            passcode_hash = match p.as_deref() {
                Some(p) => Some(self.hash_passcode(p).await?),
                None => None,
            };
        }
        if let Some(w) = patch.waiting_room {
            m.waiting_room = w;
        }
        if let Some(j) = patch.join_before_host {
            m.join_before_host = j;
        }
        if let Some(e) = patch.e2ee {
            m.e2ee = e;
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE meetings SET title = $2, starts_at = $3, duration_minutes = $4, recurrence = $5, \
             passcode_hash = $6, waiting_room = $7, join_before_host = $8, e2ee = $9, \
             sequence = sequence + 1 WHERE id = $1",
        )
        .bind(id)
        .bind(&m.title)
        .bind(m.starts_at)
        .bind(m.duration_minutes)
        .bind(m.recurrence.as_str())
        .bind(passcode_hash)
        .bind(flag(m.waiting_room))
        .bind(flag(m.join_before_host))
        .bind(e2ee_str(m.e2ee))
        .execute(&mut *tx)
        .await?;
        if let Some(c) = patch.co_hosts {
            set_co_hosts(&mut tx, id, &c).await?;
        }
        if let Some((actor, now)) = audit {
            let entry = actor.entry("meeting.update", id, Some(&m.org_id), String::new());
            insert_audit(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        self.meeting(id)
            .await?
            .ok_or(StoreError::NotFound("meeting"))
    }

    /// Deletes a meeting and leaves its tombstone (see [`Store::meeting_deleted`]), with a
    /// `meeting.delete` audit entry by `actor` if given, all in one transaction.
    pub async fn delete_meeting(
        &self,
        id: &str,
        now: i64,
        actor: Option<&Actor>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("DELETE FROM meetings WHERE id = $1 RETURNING org_id, title")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound("meeting"));
        };
        let org_id: String = row.try_get("org_id")?;
        let title: String = row.try_get("title")?;
        sqlx::query(
            "INSERT INTO deleted_meetings (id, org_id, deleted_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(&org_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // A deleted meeting is over: a restart must not bring it back.
        sqlx::query("DELETE FROM live_meetings WHERE room = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if let Some(actor) = actor {
            let entry = actor.entry("meeting.delete", id, Some(&org_id), title);
            insert_audit(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether `id` belonged to a meeting that was deleted. Such an id stays unusable: it is
    /// never an instant guest room.
    pub async fn meeting_deleted(&self, id: &str) -> StoreResult<bool> {
        let row = sqlx::query("SELECT id FROM deleted_meetings WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Decides whether and how `user` (`None` = a guest) joins `meeting_id`, checking the
    /// passcode with brute-force protection (see [`super::attempts`]): attempts are limited
    /// per (meeting, `ip`) and per `ip`, and slowed down per meeting for everyone but
    /// members of its organisation. Hosts and co-hosts need no passcode and are never
    /// locked out, so an attacker cannot keep the host out of their own meeting.
    pub async fn meeting_for_join(
        &self,
        meeting_id: &str,
        user: Option<&User>,
        passcode: Option<&str>,
        now: i64,
        policy: LockoutPolicy,
        ip: Option<&str>,
    ) -> Result<JoinDecision, JoinError> {
        let Some(MeetingRow {
            meeting,
            passcode_hash,
        }) = self.meeting_row(meeting_id).await?
        else {
            return Err(JoinError::NotFound);
        };
        let role = match user {
            Some(u) if u.id == meeting.owner_id => JoinRole::Host,
            Some(u) if meeting.co_hosts.contains(&u.id) || u.administers(&meeting.org_id) => {
                JoinRole::CoHost
            }
            Some(_) => JoinRole::Participant,
            None => JoinRole::Guest,
        };
        if let (Some(hash), false) = (&passcode_hash, role.is_host()) {
            let Some(given) = passcode.filter(|p| !p.is_empty()) else {
                return Err(JoinError::PasscodeRequired);
            };
            // Longer than any passcode can be: refused before it costs a verification.
            if given.chars().count() > MAX_PASSCODE_CHARS {
                return Err(invalid(
                    "passcode",
                    format!("must have at most {MAX_PASSCODE_CHARS} characters"),
                )
                .into());
            }
            let source = ip.unwrap_or("-");
            let pair_key = format!("passcode:{meeting_id}|{source}");
            let source_key = format!("passcode-ip:{source}");
            let slow_key = format!("passcode-meeting:{meeting_id}");
            // Members of the meeting's organisation are signed in: a slow-down an attacker
            // brought on the meeting does not touch them.
            let member = user.is_some_and(|u| u.org_id == meeting.org_id);
            let hard = [
                (pair_key.as_str(), policy.max_failures),
                (source_key.as_str(), policy.source_failures),
            ];
            let slow = (!member).then_some(slow_key.as_str());
            let attempt = match self.begin_attempt(&hard, slow, now, policy).await? {
                Ok(attempt) => attempt,
                Err(refused) => return Err(JoinError::LockedOut(refused.retry_after_secs)),
            };
            match self.hasher.verify(given, hash).await {
                Ok(true) => self.attempt_succeeded(attempt, &[&pair_key]).await?,
                Ok(false) => {
                    self.attempt_failed(attempt).await?;
                    return Err(JoinError::WrongPasscode);
                }
                Err(e) => {
                    self.attempt_abandoned(attempt).await?;
                    return Err(StoreError::from(e).into());
                }
            }
        }
        let org = self
            .org(&meeting.org_id)
            .await?
            .ok_or(StoreError::NotFound("organisation"))?;
        let plan = self
            .plan(&org.plan_id)
            .await?
            .ok_or(StoreError::NotFound("plan"))?;
        Ok(JoinDecision {
            meeting_id: meeting.id,
            org_id: meeting.org_id,
            title: meeting.title,
            role,
            waiting_room: meeting.waiting_room && !role.is_host(),
            wait_for_host: !meeting.join_before_host && !role.is_host(),
            max_participants: plan.max_participants,
            max_duration_minutes: plan.max_duration_minutes,
            e2ee: if plan.e2ee_required {
                E2eeMode::Required
            } else {
                meeting.e2ee
            },
            plan,
        })
    }
}

/// Replaces a meeting's co-hosts inside the caller's transaction, so an unknown user id
/// leaves the meeting unchanged.
async fn set_co_hosts(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    meeting_id: &str,
    user_ids: &[String],
) -> StoreResult<()> {
    sqlx::query("DELETE FROM meeting_cohosts WHERE meeting_id = $1")
        .bind(meeting_id)
        .execute(&mut **tx)
        .await?;
    let mut ids = user_ids.to_vec();
    ids.sort();
    ids.dedup();
    for id in ids {
        let exists = sqlx::query("SELECT id FROM users WHERE id = $1")
            .bind(&id)
            .fetch_optional(&mut **tx)
            .await?;
        if exists.is_none() {
            return Err(invalid("co_hosts", format!("no user {id:?}")));
        }
        sqlx::query("INSERT INTO meeting_cohosts (meeting_id, user_id) VALUES ($1, $2)")
            .bind(meeting_id)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
