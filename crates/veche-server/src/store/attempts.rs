//! Limits on guesses: logins, password changes and meeting passcodes.
//!
//! Every attempt is *reserved* before its secret is verified, in one atomic statement per
//! key that both checks the limit and counts the attempt, so attempts still being verified
//! count against the limit: a hundred requests sent at once get at most `max_failures`
//! verifications, not a hundred. A success hands its reservation back; a failure keeps it.
//!
//! Two kinds of key, both rows of the `lockouts` table (so they survive a restart, and all
//! processes on one database share them):
//!
//! - **hard** keys lock for `lockout_secs` once their limit is reached within a window of
//!   the same length: (account or meeting, source address), and the source address alone;
//! - a **slow** key per account or meeting counts attempts from every address that is not
//!   the account's familiar one; past `slowdown_after` each further attempt waits one
//!   second longer than the one before (a queue of slots in `locked_until`), and one that
//!   would wait more than `slowdown_max_wait_secs` is refused. It never locks, and familiar
//!   sources skip it, so an attacker elsewhere can slow but not deny the account's owner.

use std::time::Duration;

use sqlx::Row;

use super::{Store, StoreResult};

/// The limits, from `veche serve`'s lockout flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failed attempts per (account or meeting, source address) before that pair locks.
    pub max_failures: u32,
    /// Failed attempts per source address, over all accounts or meetings, before it locks.
    pub source_failures: u32,
    /// The counting window and the length of a lockout, in seconds.
    pub lockout_secs: i64,
    /// Attempts on one account or meeting from unfamiliar addresses before each further
    /// one is delayed (by 1 s more each time).
    pub slowdown_after: u32,
    /// The longest delay a request waits out; one that would wait longer is refused.
    pub slowdown_max_wait_secs: i64,
}

impl LockoutPolicy {
    pub const DEFAULT: LockoutPolicy = LockoutPolicy {
        max_failures: 10,
        source_failures: 50,
        lockout_secs: 15 * 60,
        slowdown_after: 10,
        slowdown_max_wait_secs: 10,
    };
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy::DEFAULT
    }
}

/// An attempt that may go ahead: its reservations, to be settled with
/// [`Store::attempt_succeeded`], [`Store::attempt_failed`] or [`Store::attempt_abandoned`].
/// Dropping it unsettled counts it as a failure (the safe side).
#[derive(Debug)]
#[must_use = "settle the attempt once the secret is verified"]
pub struct Attempt {
    /// Hard keys reserved, with their limits.
    hard: Vec<(String, u32)>,
    /// Hard keys this attempt brought to their limit: a failure locks them.
    filled: Vec<String>,
    /// Seconds this attempt waited for its slow-down slot.
    pub waited_secs: i64,
}

/// The attempt may not go ahead for this many seconds (`Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after_secs: i64,
}

/// Familiar addresses remembered per account (the most recent successful logins).
pub(crate) const KNOWN_SOURCES_PER_ACCOUNT: i64 = 10;

impl Store {
    /// Reserves one attempt on every `hard` key (each with its limit) and, if `slow` is
    /// given, a slot on that slow-down key — waiting out the slot's delay here, before the
    /// caller verifies anything. Refused if any hard key is locked (or this reservation
    /// would pass its limit) or the slot is too far away; nothing stays reserved then.
    pub async fn begin_attempt(
        &self,
        hard: &[(&str, u32)],
        slow: Option<&str>,
        now: i64,
        policy: LockoutPolicy,
    ) -> StoreResult<Result<Attempt, Refused>> {
        let mut attempt = Attempt {
            hard: Vec::with_capacity(hard.len()),
            filled: Vec::new(),
            waited_secs: 0,
        };
        for &(key, limit) in hard {
            let limit = limit.max(1);
            match self.reserve(key, limit, now, policy).await? {
                Some(count) => {
                    if count >= i64::from(limit) {
                        attempt.filled.push(key.to_owned());
                    }
                    attempt.hard.push((key.to_owned(), limit));
                }
                None => {
                    let retry_after_secs = self.locked_secs(key, now).await?;
                    self.attempt_abandoned(attempt).await?;
                    return Ok(Err(Refused { retry_after_secs }));
                }
            }
        }
        if let Some(key) = slow {
            match self.reserve_slot(key, now, policy).await? {
                Some(wait) => attempt.waited_secs = wait,
                None => {
                    let retry_after_secs = self.locked_secs(key, now).await?;
                    self.attempt_abandoned(attempt).await?;
                    return Ok(Err(Refused { retry_after_secs }));
                }
            }
        }
        if attempt.waited_secs > 0 {
            // The slow-down: the one place the store waits. Its reservations are held
            // meanwhile, so waiting does not let more guesses through.
            let secs = u64::try_from(attempt.waited_secs).unwrap_or(0);
            tokio::time::sleep(Duration::from_secs(secs)).await;
        }
        Ok(Ok(attempt))
    }

    /// The secret was right: the hard keys in `clear` forget every failure (the account's
    /// own counter after a login), the others get this attempt back.
    pub async fn attempt_succeeded(&self, attempt: Attempt, clear: &[&str]) -> StoreResult<()> {
        for (key, limit) in &attempt.hard {
            if clear.contains(&key.as_str()) {
                sqlx::query("DELETE FROM lockouts WHERE key = $1")
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
            } else {
                self.refund(key, *limit).await?;
            }
        }
        Ok(())
    }

    /// The secret was wrong: the reservations stay as failures. Returns the keys this
    /// failure locked (for the audit log).
    pub async fn attempt_failed(&self, attempt: Attempt) -> StoreResult<Vec<String>> {
        Ok(attempt.filled)
    }

    /// Nothing was verified (the hashing bound was busy, the input was refused): every
    /// reservation is handed back.
    pub async fn attempt_abandoned(&self, attempt: Attempt) -> StoreResult<()> {
        for (key, limit) in &attempt.hard {
            self.refund(key, *limit).await?;
        }
        Ok(())
    }

    /// One statement that counts an attempt against `key` unless it is locked, and locks
    /// it when the count reaches `limit`. `None`: locked, nothing counted. A window as
    /// long as the lockout starts with the first attempt; an expired one starts afresh.
    async fn reserve(
        &self,
        key: &str,
        limit: u32,
        now: i64,
        policy: LockoutPolicy,
    ) -> StoreResult<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO lockouts (key, failures, window_start, locked_until) \
             VALUES ($1, 1, $2, CASE WHEN $4 <= 1 THEN $2 + $3 ELSE 0 END) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN lockouts.window_start + $3 <= $2 THEN 1 ELSE lockouts.failures + 1 END, \
               window_start = CASE WHEN lockouts.window_start + $3 <= $2 THEN $2 ELSE lockouts.window_start END, \
               locked_until = CASE \
                 WHEN (CASE WHEN lockouts.window_start + $3 <= $2 THEN 1 ELSE lockouts.failures + 1 END) >= $4 \
                 THEN $2 + $3 ELSE 0 END \
             WHERE lockouts.locked_until <= $2 \
             RETURNING failures",
        )
        .bind(key)
        .bind(now)
        .bind(policy.lockout_secs)
        .bind(i64::from(limit))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get::<i64, _>("failures"))
            .transpose()
            .map_err(Into::into)
    }

    /// Hands one reserved attempt back; a key it had locked is unlocked.
    async fn refund(&self, key: &str, limit: u32) -> StoreResult<()> {
        sqlx::query(
            "UPDATE lockouts SET failures = failures - 1, \
               locked_until = CASE WHEN failures - 1 < $2 THEN 0 ELSE locked_until END \
             WHERE key = $1 AND failures > 0",
        )
        .bind(key)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes the next slow-down slot of `key` in one statement: the first `slowdown_after`
    /// attempts of a window go at once; the n-th after them waits until n seconds after the
    /// previous slot. `None`: the slot would be more than `slowdown_max_wait_secs` away,
    /// and nothing was taken. `Some(wait)`: seconds until the slot.
    async fn reserve_slot(
        &self,
        key: &str,
        now: i64,
        policy: LockoutPolicy,
    ) -> StoreResult<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO lockouts (key, failures, window_start, locked_until) VALUES ($1, 1, $2, $2) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN lockouts.window_start + $3 <= $2 THEN 1 ELSE lockouts.failures + 1 END, \
               window_start = CASE WHEN lockouts.window_start + $3 <= $2 THEN $2 ELSE lockouts.window_start END, \
               locked_until = CASE \
                 WHEN lockouts.window_start + $3 <= $2 OR lockouts.failures + 1 <= $4 THEN $2 \
                 ELSE (CASE WHEN lockouts.locked_until > $2 THEN lockouts.locked_until ELSE $2 END) \
                      + lockouts.failures + 1 - $4 END \
             WHERE lockouts.window_start + $3 <= $2 OR lockouts.failures + 1 <= $4 \
               OR (CASE WHEN lockouts.locked_until > $2 THEN lockouts.locked_until ELSE $2 END) \
                  + lockouts.failures + 1 - $4 <= $2 + $5 \
             RETURNING locked_until",
        )
        .bind(key)
        .bind(now)
        .bind(policy.lockout_secs)
        .bind(i64::from(policy.slowdown_after))
        .bind(policy.slowdown_max_wait_secs)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some((r.try_get::<i64, _>("locked_until")? - now).max(0))),
            None => Ok(None),
        }
    }

    /// Seconds until `key` frees up (at least 1: it was just found locked).
    async fn locked_secs(&self, key: &str, now: i64) -> StoreResult<i64> {
        let row = sqlx::query("SELECT locked_until FROM lockouts WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        let until = match row {
            Some(r) => r.try_get::<i64, _>("locked_until")?,
            None => now,
        };
        Ok((until - now).max(1))
    }

    /// Whether `ip` is one of the addresses `email` last signed in from.
    pub async fn is_known_source(&self, email: &str, ip: &str) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT s.last_success FROM login_sources s JOIN users u ON u.id = s.user_id \
             WHERE u.email = $1 AND s.ip = $2",
        )
        .bind(email)
        .bind(ip)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Remembers a successful login's address, keeping the most recent few per account.
    pub async fn remember_source(&self, user_id: &str, ip: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO login_sources (user_id, ip, last_success) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, ip) DO UPDATE SET last_success = $3",
        )
        .bind(user_id)
        .bind(ip)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM login_sources WHERE user_id = $1 AND ip NOT IN \
             (SELECT ip FROM login_sources WHERE user_id = $1 \
              ORDER BY last_success DESC, ip LIMIT $2)",
        )
        .bind(user_id)
        .bind(KNOWN_SOURCES_PER_ACCOUNT)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes expired sessions, lockout rows whose window and lockout are over, and audit
    /// entries older than `audit_retention_secs` (`None`: kept for ever), so no table grows
    /// without bound. Returns how many rows went.
    pub async fn purge_expired(
        &self,
        now: i64,
        policy: LockoutPolicy,
        audit_retention_secs: Option<i64>,
    ) -> StoreResult<u64> {
        let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let lockouts = sqlx::query(
            "DELETE FROM lockouts WHERE locked_until <= $1 AND window_start + $2 <= $1",
        )
        .bind(now)
        .bind(policy.lockout_secs)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let audit = match audit_retention_secs {
            Some(keep) => sqlx::query("DELETE FROM audit_log WHERE at < $1")
                .bind(now.saturating_sub(keep))
                .execute(&self.pool)
                .await?
                .rows_affected(),
            None => 0,
        };
        Ok(sessions + lockouts + audit)
    }
}
