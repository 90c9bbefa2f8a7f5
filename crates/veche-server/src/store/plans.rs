//! Plans, organisations, upgrade requests, usage records and the audit log.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, StoreResult, flag, row_id};

/// A service level. `None` limits mean "no cap".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub max_participants: Option<i64>,
    pub max_duration_minutes: Option<i64>,
    pub recording: bool,
    pub breakout_rooms: bool,
    pub e2ee_required: bool,
    pub large_meetings: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub plan_id: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Approved,
    Declined,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Declined => "declined",
        }
    }
    pub fn parse(s: &str) -> Option<RequestStatus> {
        match s {
            "pending" => Some(RequestStatus::Pending),
            "approved" => Some(RequestStatus::Approved),
            "declined" => Some(RequestStatus::Declined),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpgradeRequest {
    pub id: String,
    pub org_id: String,
    pub requested_by: String,
    pub plan_id: String,
    pub note: String,
    pub status: RequestStatus,
    pub created_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
}

/// One finished meeting's usage, written by the live meeting when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    pub org_id: String,
    pub meeting_id: String,
    pub started_at: i64,
    pub ended_at: i64,
    pub peak_participants: i64,
    pub participant_minutes: i64,
}

/// Usage of one organisation over a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageSummary {
    pub org_id: String,
    pub meetings: i64,
    pub participant_minutes: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: i64,
    pub actor_id: Option<String>,
    pub actor_email: Option<String>,
    pub ip: Option<String>,
    pub action: String,
    pub target: String,
    pub org_id: Option<String>,
    pub detail: String,
}

/// An audit entry to append: who (actor), from where (ip), what (action on target).
#[derive(Debug, Clone, Default)]
pub struct NewAuditEntry {
    pub actor_id: Option<String>,
    pub actor_email: Option<String>,
    pub ip: Option<String>,
    pub action: String,
    pub target: String,
    pub org_id: Option<String>,
    pub detail: String,
}

/// Who did something, for the audit row written in the same transaction as the change.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub id: Option<String>,
    pub email: Option<String>,
    pub ip: Option<String>,
}

impl Actor {
    pub(crate) fn entry(
        &self,
        action: &str,
        target: &str,
        org_id: Option<&str>,
        detail: String,
    ) -> NewAuditEntry {
        NewAuditEntry {
            actor_id: self.id.clone(),
            actor_email: self.email.clone(),
            ip: self.ip.clone(),
            action: action.to_owned(),
            target: target.to_owned(),
            org_id: org_id.map(str::to_owned),
            detail,
        }
    }
}

/// Appends to the audit log on `conn`: a pooled connection, or the transaction of the
/// change the entry records, so a crash never keeps one without the other.
pub(crate) async fn insert_audit(
    conn: &mut sqlx::AnyConnection,
    entry: NewAuditEntry,
    now: i64,
) -> StoreResult<()> {
    // Free-text fields are cut so no request can make an entry large.
    let entry = NewAuditEntry {
        actor_email: entry.actor_email.map(|s| clip(s, MAX_AUDIT_FIELD_CHARS)),
        ip: entry.ip.map(|s| clip(s, MAX_AUDIT_FIELD_CHARS)),
        action: clip(entry.action, MAX_AUDIT_FIELD_CHARS),
        target: clip(entry.target, MAX_AUDIT_FIELD_CHARS),
        detail: clip(entry.detail, MAX_AUDIT_FIELD_CHARS),
        ..entry
    };
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, actor_email, ip, action, target, org_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(now)
    .bind(entry.actor_id)
    .bind(entry.actor_email)
    .bind(entry.ip)
    .bind(entry.action)
    .bind(entry.target)
    .bind(entry.org_id)
    .bind(entry.detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// [`Store::update_plan`] on `conn`.
pub(crate) async fn update_plan_on(conn: &mut sqlx::AnyConnection, plan: &Plan) -> StoreResult<()> {
    for (field, v) in [
        ("max_participants", plan.max_participants),
        ("max_duration_minutes", plan.max_duration_minutes),
    ] {
        if v.is_some_and(|v| v < 1) {
            return Err(StoreError::Invalid {
                field,
                message: "must be at least 1, or null for no cap".into(),
            });
        }
    }
    if plan.name.trim().is_empty() {
        return Err(StoreError::Invalid {
            field: "name",
            message: "must not be empty".into(),
        });
    }
    let done = sqlx::query(
        "UPDATE plans SET name = $2, max_participants = $3, max_duration_minutes = $4, \
             recording = $5, breakout_rooms = $6, e2ee_required = $7, large_meetings = $8 \
             WHERE id = $1",
    )
    .bind(&plan.id)
    .bind(plan.name.trim())
    .bind(plan.max_participants)
    .bind(plan.max_duration_minutes)
    .bind(flag(plan.recording))
    .bind(flag(plan.breakout_rooms))
    .bind(flag(plan.e2ee_required))
    .bind(flag(plan.large_meetings))
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("plan"));
    }
    Ok(())
}

/// [`Store::rename_org`] on `conn`.
pub(crate) async fn rename_org_on(
    conn: &mut sqlx::AnyConnection,
    org_id: &str,
    name: &str,
) -> StoreResult<()> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(StoreError::Invalid {
            field: "name",
            message: "must have 1 to 100 characters".into(),
        });
    }
    let done = sqlx::query("UPDATE orgs SET name = $1 WHERE id = $2")
        .bind(name)
        .bind(org_id)
        .execute(conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("organisation"));
    }
    Ok(())
}

/// [`Store::set_org_plan`] on `conn`.
pub(crate) async fn set_org_plan_on(
    conn: &mut sqlx::AnyConnection,
    org_id: &str,
    plan_id: &str,
) -> StoreResult<()> {
    // No existence check of the plan first: in a transaction, a read before the write would
    // make SQLite upgrade its lock, which fails at once when another connection writes. The
    // foreign key tells a missing plan.
    let done = match sqlx::query("UPDATE orgs SET plan_id = $1 WHERE id = $2")
        .bind(plan_id)
        .bind(org_id)
        .execute(conn)
        .await
    {
        Ok(done) => done,
        Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
            return Err(StoreError::NotFound("plan"));
        }
        Err(e) => return Err(e.into()),
    };
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("organisation"));
    }
    Ok(())
}

fn plan_from_row(row: &AnyRow) -> StoreResult<Plan> {
    let get_flag = |c: &str| -> StoreResult<bool> { Ok(row.try_get::<i64, _>(c)? != 0) };
    Ok(Plan {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        max_participants: row.try_get("max_participants")?,
        max_duration_minutes: row.try_get("max_duration_minutes")?,
        recording: get_flag("recording")?,
        breakout_rooms: get_flag("breakout_rooms")?,
        e2ee_required: get_flag("e2ee_required")?,
        large_meetings: get_flag("large_meetings")?,
    })
}

fn org_from_row(row: &AnyRow) -> StoreResult<Org> {
    Ok(Org {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        plan_id: row.try_get("plan_id")?,
        created_at: row.try_get("created_at")?,
    })
}

fn request_from_row(row: &AnyRow) -> StoreResult<UpgradeRequest> {
    let status: String = row.try_get("status")?;
    Ok(UpgradeRequest {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        requested_by: row.try_get("requested_by")?,
        plan_id: row.try_get("plan_id")?,
        note: row.try_get("note")?,
        status: RequestStatus::parse(&status).ok_or(StoreError::Invalid {
            field: "status",
            message: format!("stored status {status:?}"),
        })?,
        created_at: row.try_get("created_at")?,
        decided_by: row.try_get("decided_by")?,
        decided_at: row.try_get("decided_at")?,
    })
}

const PLAN_COLUMNS: &str = "id, name, max_participants, max_duration_minutes, recording, \
                            breakout_rooms, e2ee_required, large_meetings";
const REQUEST_COLUMNS: &str =
    "id, org_id, requested_by, plan_id, note, status, created_at, decided_by, decided_at";

impl Store {
    pub async fn plans(&self) -> StoreResult<Vec<Plan>> {
        let rows = sqlx::query(&format!(
            "SELECT {PLAN_COLUMNS} FROM plans ORDER BY position, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(plan_from_row).collect()
    }

    pub async fn plan(&self, id: &str) -> StoreResult<Option<Plan>> {
        let row = sqlx::query(&format!("SELECT {PLAN_COLUMNS} FROM plans WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(plan_from_row).transpose()
    }

    /// Replaces an existing plan's name, limits and features (the operator edits plans; the
    /// set of plan ids is fixed by the migrations).
    pub async fn update_plan(&self, plan: &Plan) -> StoreResult<()> {
        update_plan_on(&mut *self.pool.acquire().await?, plan).await
    }

    pub async fn org(&self, id: &str) -> StoreResult<Option<Org>> {
        let row = sqlx::query("SELECT id, name, plan_id, created_at FROM orgs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(org_from_row).transpose()
    }

    pub async fn orgs(&self) -> StoreResult<Vec<Org>> {
        let rows =
            sqlx::query("SELECT id, name, plan_id, created_at FROM orgs ORDER BY created_at, id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(org_from_row).collect()
    }

    pub async fn rename_org(&self, org_id: &str, name: &str) -> StoreResult<()> {
        rename_org_on(&mut *self.pool.acquire().await?, org_id, name).await
    }

    pub async fn set_org_plan(&self, org_id: &str, plan_id: &str) -> StoreResult<()> {
        set_org_plan_on(&mut *self.pool.acquire().await?, org_id, plan_id).await
    }

    /// Files a request to move `org_id` to `plan_id`. One pending request per organisation:
    /// a second one while the first waits is a conflict.
    pub async fn request_upgrade(
        &self,
        org_id: &str,
        requested_by: &str,
        plan_id: &str,
        note: &str,
        now: i64,
        actor: Option<&Actor>,
    ) -> StoreResult<UpgradeRequest> {
        if self.plan(plan_id).await?.is_none() {
            return Err(StoreError::NotFound("plan"));
        }
        if note.chars().count() > 2000 {
            return Err(StoreError::Invalid {
                field: "note",
                message: "must have at most 2000 characters".into(),
            });
        }
        let pending =
            sqlx::query("SELECT id FROM upgrade_requests WHERE org_id = $1 AND status = 'pending'")
                .bind(org_id)
                .fetch_optional(&self.pool)
                .await?;
        if pending.is_some() {
            return Err(StoreError::Conflict("pending upgrade request"));
        }
        let req = UpgradeRequest {
            id: row_id(),
            org_id: org_id.to_owned(),
            requested_by: requested_by.to_owned(),
            plan_id: plan_id.to_owned(),
            note: note.to_owned(),
            status: RequestStatus::Pending,
            created_at: now,
            decided_by: None,
            decided_at: None,
        };
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO upgrade_requests (id, org_id, requested_by, plan_id, note, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6)",
        )
        .bind(&req.id)
        .bind(&req.org_id)
        .bind(&req.requested_by)
        .bind(&req.plan_id)
        .bind(&req.note)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // Lost a race with a concurrent request (the partial unique index).
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(StoreError::Conflict("pending upgrade request"));
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(actor) = actor {
            let entry = actor.entry(
                "upgrade.request",
                &req.id,
                Some(org_id),
                req.plan_id.clone(),
            );
            insert_audit(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        Ok(req)
    }

    pub async fn upgrade_request(&self, id: &str) -> StoreResult<Option<UpgradeRequest>> {
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM upgrade_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    /// Requests, newest first; optionally only one organisation's or one status.
    pub async fn upgrade_requests(
        &self,
        org_id: Option<&str>,
        status: Option<RequestStatus>,
    ) -> StoreResult<Vec<UpgradeRequest>> {
        // NULL parameters switch a filter off, keeping one portable statement. (PostgreSQL
        // sums BIGINTs to NUMERIC, hence the casts elsewhere.)
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM upgrade_requests \
             WHERE ($1 IS NULL OR org_id = $1) AND ($2 IS NULL OR status = $2) \
             ORDER BY created_at DESC, id"
        ))
        .bind(org_id)
        .bind(status.map(RequestStatus::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// Approves (moving the organisation to the plan) or declines a pending request.
    pub async fn decide_upgrade(
        &self,
        id: &str,
        approve: bool,
        decided_by: &str,
        now: i64,
        actor: Option<&Actor>,
    ) -> StoreResult<UpgradeRequest> {
        let mut tx = self.pool.begin().await?;
        let status = if approve {
            RequestStatus::Approved
        } else {
            RequestStatus::Declined
        };
        // The status guard makes a double decision (two admins clicking) a conflict, not a
        // silent overwrite.
        let done = sqlx::query(
            "UPDATE upgrade_requests SET status = $2, decided_by = $3, decided_at = $4 \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(decided_by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            let exists = sqlx::query("SELECT id FROM upgrade_requests WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match exists {
                Some(_) => StoreError::Conflict("decision on this request"),
                None => StoreError::NotFound("upgrade request"),
            });
        }
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM upgrade_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let req = request_from_row(&row)?;
        if approve {
            sqlx::query("UPDATE orgs SET plan_id = $1 WHERE id = $2")
                .bind(&req.plan_id)
                .bind(&req.org_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(actor) = actor {
            let action = if approve {
                "upgrade.approve"
            } else {
                "upgrade.decline"
            };
            let entry = actor.entry(action, &req.id, Some(&req.org_id), req.plan_id.clone());
            insert_audit(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        Ok(req)
    }

    /// Records one finished meeting's usage. Called by the live meeting when it ends.
    pub async fn record_usage(&self, usage: &UsageRecord) -> StoreResult<()> {
        if usage.ended_at < usage.started_at || usage.participant_minutes < 0 {
            return Err(StoreError::Invalid {
                field: "usage",
                message: format!(
                    "ended {} before started {} or negative minutes {}",
                    usage.ended_at, usage.started_at, usage.participant_minutes
                ),
            });
        }
        sqlx::query(
            "INSERT INTO usage_records (id, org_id, meeting_id, started_at, ended_at, \
             peak_participants, participant_minutes) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(row_id())
        .bind(&usage.org_id)
        .bind(&usage.meeting_id)
        .bind(usage.started_at)
        .bind(usage.ended_at)
        .bind(usage.peak_participants)
        .bind(usage.participant_minutes)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Usage per organisation for meetings started in `[since, until)`; every organisation
    /// when `org_id` is `None` (organisations without meetings included, with zeros).
    pub async fn usage(
        &self,
        org_id: Option<&str>,
        since: i64,
        until: i64,
    ) -> StoreResult<Vec<UsageSummary>> {
        let rows = sqlx::query(
            "SELECT o.id AS org_id, CAST(COUNT(u.id) AS BIGINT) AS meetings, \
             CAST(COALESCE(SUM(u.participant_minutes), 0) AS BIGINT) AS minutes \
             FROM orgs o LEFT JOIN usage_records u \
               ON u.org_id = o.id AND u.started_at >= $2 AND u.started_at < $3 \
             WHERE ($1 IS NULL OR o.id = $1) \
             GROUP BY o.id ORDER BY o.id",
        )
        .bind(org_id)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageSummary {
                    org_id: r.try_get("org_id")?,
                    meetings: r.try_get("meetings")?,
                    participant_minutes: r.try_get("minutes")?,
                })
            })
            .collect()
    }

    /// Appends an entry; its free-text fields are cut to [`MAX_AUDIT_FIELD_CHARS`] so no
    /// request can make an entry large.
    pub async fn audit(&self, entry: NewAuditEntry, now: i64) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, entry, now).await
    }

    /// Makes `change` and appends the audit entry `entry` makes of its result, in one
    /// transaction: the change and the row that records it are stored together or not at
    /// all (a `kill -9` between two transactions would leave a change nobody can trace).
    pub async fn audited<T>(
        &self,
        now: i64,
        change: impl AsyncFnOnce(&mut sqlx::AnyConnection) -> StoreResult<T>,
        entry: impl FnOnce(&T) -> NewAuditEntry,
    ) -> StoreResult<T> {
        let mut tx = self.pool.begin().await?;
        let done = change(&mut tx).await?;
        insert_audit(&mut tx, entry(&done), now).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// The newest `limit` audit entries (of one organisation, or all), newest first.
    pub async fn audit_log(
        &self,
        org_id: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>> {
        self.audit_log_filtered(&AuditFilter {
            org_id: org_id.map(str::to_owned),
            limit,
            ..AuditFilter::default()
        })
        .await
    }

    /// The newest entries that pass `filter`, newest first.
    pub async fn audit_log_filtered(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        let actor = filter
            .actor
            .as_deref()
            .map(|a| format!("%{}%", like_escape(&a.to_lowercase())));
        let rows = sqlx::query(
            "SELECT seq, at, actor_id, actor_email, ip, action, target, org_id, detail \
             FROM audit_log WHERE ($1 IS NULL OR org_id = $1) \
             AND ($3 IS NULL OR substr(action, 1, length($3)) = $3) \
             AND ($4 IS NULL OR actor_id = $5 OR LOWER(actor_email) LIKE $4 ESCAPE '\\') \
             AND at >= $6 AND at < $7 \
             ORDER BY seq DESC LIMIT $2",
        )
        .bind(filter.org_id.as_deref())
        .bind(filter.limit)
        .bind(filter.action.as_deref())
        .bind(actor)
        .bind(filter.actor.as_deref())
        .bind(filter.since.unwrap_or(i64::MIN))
        .bind(filter.until.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    actor_id: r.try_get("actor_id")?,
                    actor_email: r.try_get("actor_email")?,
                    ip: r.try_get("ip")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    org_id: r.try_get("org_id")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}

/// Which audit entries to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// One organisation's entries; `None`: every entry.
    pub org_id: Option<String>,
    /// Actions that start with this (`meeting.` for every host action).
    pub action: Option<String>,
    /// The actor's account id, or part of their email (any case).
    pub actor: Option<String>,
    /// Unix seconds: entries at or after `since` and before `until`.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// At most this many, the newest.
    pub limit: i64,
}

/// `s` with LIKE's wildcards and the escape character escaped (for `ESCAPE '\'`).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Longest free-text field of an audit entry, in characters.
pub(crate) const MAX_AUDIT_FIELD_CHARS: usize = 512;

/// `s` cut to at most `max` characters (on a character boundary), marked with `…` if cut.
pub(super) fn clip(s: String, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s,
        Some((end, _)) => {
            let mut cut = s[..end].to_owned();
            cut.pop();
            cut.push('…');
            cut
        }
    }
}
