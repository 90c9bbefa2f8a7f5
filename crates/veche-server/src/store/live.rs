//! Running meetings across restarts: the SFU's latest snapshot of each, written behind the
//! media path (see `gate::store_events`), and the key that signs guests' resume tokens.

use rand::RngCore;
use sqlx::Row;

use super::{Store, StoreError, StoreResult};

/// A stored snapshot of a running meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRow {
    pub room: String,
    /// JSON of `veche_sfu::MeetingSnapshot`.
    pub snapshot: String,
    /// Unix seconds.
    pub saved_at: i64,
}

/// A change to the stored snapshots: the latest snapshot of a room, or its meeting is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveChange {
    Save { snapshot: String, saved_at: i64 },
    Delete,
}

const RESUME_KEY: &str = "resume_key";

impl Store {
    /// Applies `changes` (by room) in one transaction.
    pub async fn write_live_meetings(&self, changes: &[(String, LiveChange)]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for (room, change) in changes {
            match change {
                LiveChange::Save { snapshot, saved_at } => {
                    sqlx::query(
                        "INSERT INTO live_meetings (room, snapshot, saved_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (room) DO UPDATE SET snapshot = excluded.snapshot, \
                         saved_at = excluded.saved_at",
                    )
                    .bind(room)
                    .bind(snapshot)
                    .bind(*saved_at)
                    .execute(&mut *tx)
                    .await?;
                }
                LiveChange::Delete => {
                    sqlx::query("DELETE FROM live_meetings WHERE room = $1")
                        .bind(room)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every stored snapshot.
    pub async fn live_meetings(&self) -> StoreResult<Vec<LiveRow>> {
        let rows = sqlx::query("SELECT room, snapshot, saved_at FROM live_meetings ORDER BY room")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LiveRow {
                    room: r.try_get("room")?,
                    snapshot: r.try_get("snapshot")?,
                    saved_at: r.try_get("saved_at")?,
                })
            })
            .collect()
    }

    /// The key that signs guests' resume tokens, made on first use. Two processes starting
    /// at once agree on one: the first insert wins and both read it back.
    pub async fn resume_key(&self) -> StoreResult<[u8; 32]> {
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
        sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(RESUME_KEY)
        .bind(&hex)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM server_secrets WHERE name = $1")
            .bind(RESUME_KEY)
            .fetch_one(&self.pool)
            .await?;
        let value: String = row.try_get("value")?;
        let bad = || StoreError::Invalid {
            field: "server_secrets.resume_key",
            message: "not 64 hex digits".into(),
        };
        if value.len() != 64 {
            return Err(bad());
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = value
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(bad)?;
        }
        Ok(key)
    }
}
