//! Usage over time for the operator's dashboard: finished meetings and participant-minutes
//! per time bucket (from `usage_records`), peak concurrency per bucket (from `usage_peaks`),
//! and how much space the database takes.

use serde::Serialize;
use sqlx::Row;

use super::{Backend, Store, StoreError, StoreResult};

/// The organisation id under which `usage_peaks` keeps the peak of the whole service.
pub const ALL_ORGS: &str = "";

/// Seconds in one hour: the resolution of the stored peaks.
pub const HOUR_SECS: i64 = 3600;

/// One time bucket of a usage series. A meeting counts in the bucket it started in, with
/// all its participant-minutes; `peak_participants` is the most participants in meetings at
/// once at any time in the bucket (hour resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UsageBucket {
    /// Unix seconds at the start of the bucket.
    pub start: i64,
    pub meetings: i64,
    pub participant_minutes: i64,
    pub peak_participants: i64,
}

/// A usage series: `count` buckets of `bucket_secs` from `start` (a multiple of
/// `bucket_secs`, so buckets line up with UTC hours and days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesRange {
    pub start: i64,
    pub bucket_secs: i64,
    pub count: i64,
}

impl SeriesRange {
    /// Unix seconds just past the last bucket.
    pub fn end(&self) -> i64 {
        self.start + self.bucket_secs * self.count
    }
}

impl Store {
    /// Raises the stored peak of `org_id` ([`ALL_ORGS`]: the whole service) in the hour that
    /// holds `at` to `participants`, if that is higher.
    pub async fn record_peak(&self, org_id: &str, at: i64, participants: i64) -> StoreResult<()> {
        let hour = at.div_euclid(HOUR_SECS) * HOUR_SECS;
        sqlx::query(
            "INSERT INTO usage_peaks (org_id, hour, participants) VALUES ($1, $2, $3) \
             ON CONFLICT (org_id, hour) DO UPDATE SET participants = excluded.participants \
             WHERE excluded.participants > usage_peaks.participants",
        )
        .bind(org_id)
        .bind(hour)
        .bind(participants)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The usage of one organisation (or of all, with `None`) in every bucket of `range`,
    /// empty buckets included.
    pub async fn usage_series(
        &self,
        org_id: Option<&str>,
        range: SeriesRange,
    ) -> StoreResult<Vec<UsageBucket>> {
        if range.bucket_secs <= 0 || range.bucket_secs % HOUR_SECS != 0 || range.count < 0 {
            return Err(StoreError::Invalid {
                field: "range",
                message: format!(
                    "buckets of {} s (a positive number of hours), {} of them",
                    range.bucket_secs, range.count
                ),
            });
        }
        let count = usize::try_from(range.count).unwrap_or(0);
        let mut buckets: Vec<UsageBucket> = (0..range.count)
            .map(|i| UsageBucket {
                start: range.start + i * range.bucket_secs,
                meetings: 0,
                participant_minutes: 0,
                peak_participants: 0,
            })
            .collect();
        let index = |b: i64| usize::try_from(b).ok().filter(|&b| b < count);
        let finished = sqlx::query(
            "SELECT CAST((started_at - $1) / $3 AS BIGINT) AS b, \
             CAST(COUNT(*) AS BIGINT) AS meetings, \
             CAST(COALESCE(SUM(participant_minutes), 0) AS BIGINT) AS minutes \
             FROM usage_records \
             WHERE started_at >= $1 AND started_at < $2 AND ($4 IS NULL OR org_id = $4) \
             GROUP BY b",
        )
        .bind(range.start)
        .bind(range.end())
        .bind(range.bucket_secs)
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        for row in &finished {
            if let Some(i) = index(row.try_get("b")?) {
                buckets[i].meetings = row.try_get("meetings")?;
                buckets[i].participant_minutes = row.try_get("minutes")?;
            }
        }
        let peaks = sqlx::query(
            "SELECT CAST((hour - $1) / $3 AS BIGINT) AS b, \
             CAST(MAX(participants) AS BIGINT) AS peak \
             FROM usage_peaks WHERE org_id = $4 AND hour >= $1 AND hour < $2 GROUP BY b",
        )
        .bind(range.start)
        .bind(range.end())
        .bind(range.bucket_secs)
        .bind(org_id.unwrap_or(ALL_ORGS))
        .fetch_all(&self.pool)
        .await?;
        for row in &peaks {
            if let Some(i) = index(row.try_get("b")?) {
                buckets[i].peak_participants = row.try_get("peak")?;
            }
        }
        Ok(buckets)
    }

    /// Bytes the database takes: the SQLite file with its write-ahead log, or
    /// `pg_database_size` on PostgreSQL.
    pub async fn database_bytes(&self) -> StoreResult<u64> {
        match self.backend {
            Backend::Postgres => {
                let row =
                    sqlx::query("SELECT CAST(pg_database_size(current_database()) AS BIGINT) AS n")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
            }
            Backend::Sqlite => {
                let row = sqlx::query("SELECT file FROM pragma_database_list WHERE name = 'main'")
                    .fetch_one(&self.pool)
                    .await?;
                let file: String = row.try_get("file")?;
                // An in-memory database has no file: it takes no disk.
                let size = |path: String| std::fs::metadata(path).map_or(0, |m| m.len());
                Ok(size(file.clone()) + size(format!("{file}-wal")) + size(format!("{file}-shm")))
            }
        }
    }
}
