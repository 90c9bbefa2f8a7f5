//! Calendar feeds (one private token per user, kept as its SHA-256) and the log of email
//! invitations, which is also their outbox (docs/calendar.md).

use serde::Serialize;
use sqlx::Row;

use super::accounts::{USER_COLUMNS, user_from_row};
use super::plans::insert_audit;
use super::{NewAuditEntry, Store, StoreError, StoreResult, User, row_id};
use crate::auth::token_digest;

/// Where an email invitation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteStatus {
    Pending,
    Sent,
    Failed,
}

impl InviteStatus {
    fn as_str(self) -> &'static str {
        match self {
            InviteStatus::Pending => "pending",
            InviteStatus::Sent => "sent",
            InviteStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> InviteStatus {
        match s {
            "sent" => InviteStatus::Sent,
            "failed" => InviteStatus::Failed,
            _ => InviteStatus::Pending,
        }
    }
}

/// One invitation as its log shows it (never the message, which may hold the passcode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InviteRecord {
    pub id: String,
    pub meeting_id: String,
    pub sender_id: String,
    pub email: String,
    pub status: InviteStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub sent_at_ms: Option<i64>,
}

/// An invitation the mailer has claimed: its recipient and the message to hand over.
#[derive(Debug, Clone)]
pub struct DueInvite {
    pub id: String,
    pub email: String,
    pub message: String,
    pub attempts: i64,
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteOutcome {
    Sent,
    /// Try again at this time (Unix ms).
    Retry {
        error: String,
        at_ms: i64,
    },
    Failed {
        error: String,
    },
}

const INVITE_COLUMNS: &str = "id, meeting_id, sender_id, email, status, attempts, last_error, \
                              created_at_ms, sent_at_ms";

impl Store {
    /// When the user's feed token was made, if they have one.
    pub async fn calendar_feed_created(&self, user_id: &str) -> StoreResult<Option<i64>> {
        let row = sqlx::query("SELECT created_at FROM calendar_feeds WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("created_at")?),
            None => None,
        })
    }

    /// Replaces the user's feed token with `token` (only its digest is kept): the old
    /// token stops working at once.
    pub async fn reset_calendar_feed(
        &self,
        user_id: &str,
        token: &str,
        now: i64,
        audit: NewAuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM calendar_feeds WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO calendar_feeds (user_id, token_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(user_id)
        .bind(token_digest(token))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Turns the user's feed off, with `audit`'s entry if there was one; whether there was.
    pub async fn delete_calendar_feed(
        &self,
        user_id: &str,
        now: i64,
        audit: NewAuditEntry,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM calendar_feeds WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let deleted = done.rows_affected() > 0;
        if deleted {
            insert_audit(&mut tx, audit, now).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// The owner of feed `token`. The lookup is by the token's digest, an indexed equality
    /// on a value the caller cannot steer: it tells nothing about other tokens.
    pub async fn user_by_calendar_token(&self, token: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!(
            "SELECT {cols} FROM users WHERE id = \
             (SELECT user_id FROM calendar_feeds WHERE token_hash = $1)",
            cols = USER_COLUMNS
        ))
        .bind(token_digest(token))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Writes one pending invitation per `(email, message)`, due now, and `audit`'s entry,
    /// in one transaction — unless that would make the sender's invitations of the last hour
    /// more than `max_per_hour` (`None`, nothing written). Concurrent requests of one
    /// sender queue behind each other on the sender's row, so the cap holds under a race.
    pub async fn queue_invites(
        &self,
        meeting_id: &str,
        sender_id: &str,
        messages: &[(String, String)],
        now_ms: i64,
        max_per_hour: usize,
        audit: NewAuditEntry,
    ) -> StoreResult<Option<Vec<InviteRecord>>> {
        let mut tx = self.pool.begin().await?;
        // A write first: PostgreSQL locks the sender's row until commit, SQLite takes its
        // write lock (a read first would have to upgrade it, which fails under a writer).
        sqlx::query("UPDATE users SET name = name WHERE id = $1")
            .bind(sender_id)
            .execute(&mut *tx)
            .await?;
        let used: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM meeting_invites WHERE sender_id = $1 AND created_at_ms >= $2",
        )
        .bind(sender_id)
        .bind(now_ms.saturating_sub(3_600_000))
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        let allowed = i64::try_from(max_per_hour).unwrap_or(i64::MAX);
        if used.saturating_add(messages.len() as i64) > allowed {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(messages.len());
        for (email, message) in messages {
            let record = InviteRecord {
                id: row_id(),
                meeting_id: meeting_id.to_owned(),
                sender_id: sender_id.to_owned(),
                email: email.clone(),
                status: InviteStatus::Pending,
                attempts: 0,
                last_error: None,
                created_at_ms: now_ms,
                sent_at_ms: None,
            };
            sqlx::query(
                "INSERT INTO meeting_invites (id, meeting_id, sender_id, email, message, status, \
                 attempts, next_attempt_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7)",
            )
            .bind(&record.id)
            .bind(meeting_id)
            .bind(sender_id)
            .bind(email)
            .bind(message)
            .bind(InviteStatus::Pending.as_str())
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            out.push(record);
        }
        insert_audit(&mut tx, audit, now_ms / 1000).await?;
        tx.commit().await?;
        Ok(Some(out))
    }

    /// The invitations of a meeting, newest first, at most `limit`.
    pub async fn meeting_invites(
        &self,
        meeting_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<InviteRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {INVITE_COLUMNS} FROM meeting_invites WHERE meeting_id = $1 \
             ORDER BY created_at_ms DESC, id LIMIT $2"
        ))
        .bind(meeting_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InviteRecord {
                    id: r.try_get("id")?,
                    meeting_id: r.try_get("meeting_id")?,
                    sender_id: r.try_get("sender_id")?,
                    email: r.try_get("email")?,
                    status: InviteStatus::parse(&r.try_get::<String, _>("status")?),
                    attempts: r.try_get("attempts")?,
                    last_error: r.try_get("last_error")?,
                    created_at_ms: r.try_get("created_at_ms")?,
                    sent_at_ms: r.try_get("sent_at_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Claims up to `limit` due invitations, oldest due first: each is leased until
    /// `lease_until_ms` (not claimed again before, by this process or another on the same
    /// database), which its attempt's outcome replaces.
    pub async fn claim_due_invites(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<DueInvite>> {
        let rows = sqlx::query(
            "SELECT id, email, message, attempts, next_attempt_ms FROM meeting_invites \
             WHERE status = 'pending' AND next_attempt_ms <= $1 ORDER BY next_attempt_ms, id LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let id: String = r.try_get("id")?;
            let due: i64 = r.try_get("next_attempt_ms")?;
            // Taken only if nobody took it since the SELECT.
            let taken = sqlx::query(
                "UPDATE meeting_invites SET next_attempt_ms = $3 \
                 WHERE id = $1 AND status = 'pending' AND next_attempt_ms = $2",
            )
            .bind(&id)
            .bind(due)
            .bind(lease_until_ms)
            .execute(&self.pool)
            .await?;
            let message: Option<String> = r.try_get("message")?;
            if taken.rows_affected() == 1
                && let Some(message) = message
            {
                out.push(DueInvite {
                    id,
                    email: r.try_get("email")?,
                    message,
                    attempts: r.try_get("attempts")?,
                });
            }
        }
        Ok(out)
    }

    /// Records an attempt. A finished invitation (sent or failed) loses its message.
    pub async fn record_invite_attempt(
        &self,
        id: &str,
        outcome: &InviteOutcome,
        now_ms: i64,
    ) -> StoreResult<()> {
        let q = match outcome {
            InviteOutcome::Sent => sqlx::query(
                "UPDATE meeting_invites SET status = 'sent', attempts = attempts + 1, message = NULL, \
                 last_error = NULL, sent_at_ms = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(now_ms),
            InviteOutcome::Retry { error, at_ms } => sqlx::query(
                "UPDATE meeting_invites SET attempts = attempts + 1, last_error = $2, \
                 next_attempt_ms = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(error)
            .bind(*at_ms),
            InviteOutcome::Failed { error } => sqlx::query(
                "UPDATE meeting_invites SET status = 'failed', attempts = attempts + 1, \
                 message = NULL, last_error = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(error),
        };
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// When the next pending invitation is due (Unix ms).
    pub async fn next_invite_due_ms(&self) -> StoreResult<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_ms) AS due FROM meeting_invites WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("due")?)
    }
}
