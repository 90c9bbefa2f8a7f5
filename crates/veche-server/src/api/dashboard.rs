//! The operator's dashboard: live figures of this node and its shards, and usage over time
//! (JSON, or CSV to download) for the service or one organisation.

use std::fmt::Write as _;
use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::accounts::check_administers;
use super::admin::check_operator;
use super::{ApiError, ApiResult, ApiState, Caller, Path, Query};
use crate::store::{Backend, HOUR_SECS, SeriesRange, UsageBucket};

const DAY_SECS: i64 = 24 * HOUR_SECS;
/// Without `from`: the last 30 days (of days), or the last 48 hours (of hours).
const DEFAULT_DAYS: i64 = 30;
const DEFAULT_HOURS: i64 = 48;

/// `?from=&to=&bucket=hour|day&org=&format=json|csv`; times in Unix seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SeriesQuery {
    #[serde(default)]
    from: Option<i64>,
    #[serde(default)]
    to: Option<i64>,
    #[serde(default)]
    bucket: Option<String>,
    /// On the operator's route only: one organisation instead of the whole service.
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

/// The buckets `q` asks for: aligned to whole hours or days (UTC), `from` rounded down and
/// `to` up, at most `max_buckets` of them.
fn series_range(q: &SeriesQuery, now: i64, max_buckets: i64) -> ApiResult<(SeriesRange, Format)> {
    let (bucket_secs, default_span) = match q.bucket.as_deref().unwrap_or("day") {
        "hour" => (HOUR_SECS, DEFAULT_HOURS * HOUR_SECS),
        "day" => (DAY_SECS, DEFAULT_DAYS * DAY_SECS),
        other => {
            return Err(ApiError::InvalidField {
                field: "bucket",
                message: format!("{other:?} is not hour or day"),
            });
        }
    };
    let format = match q.format.as_deref().unwrap_or("json") {
        "json" => Format::Json,
        "csv" => Format::Csv,
        other => {
            return Err(ApiError::InvalidField {
                field: "format",
                message: format!("{other:?} is not json or csv"),
            });
        }
    };
    // Far enough for any real use, near enough that no arithmetic below overflows.
    const LIMIT: i64 = 1 << 40;
    let to = q.to.unwrap_or(now);
    let from = q.from.unwrap_or(to - default_span + bucket_secs);
    for (field, v) in [("from", from), ("to", to)] {
        if !(0..LIMIT).contains(&v) {
            return Err(ApiError::InvalidField {
                field,
                message: format!("{v} is not a Unix time in seconds from 0 to {LIMIT}"),
            });
        }
    }
    if to < from {
        return Err(ApiError::InvalidField {
            field: "to",
            message: format!("{to} is before from {from}"),
        });
    }
    let start = from.div_euclid(bucket_secs) * bucket_secs;
    // `to` rounded up: the bucket it falls in is the last one, unless it is where one starts.
    let end = (to + bucket_secs - 1).div_euclid(bucket_secs) * bucket_secs;
    let count = (end - start) / bucket_secs;
    if count > max_buckets {
        return Err(ApiError::InvalidField {
            field: "from",
            message: format!(
                "{from} to {to} is {count} buckets of a {}; at most {max_buckets}",
                q.bucket.as_deref().unwrap_or("day")
            ),
        });
    }
    Ok((
        SeriesRange {
            start,
            bucket_secs,
            count,
        },
        format,
    ))
}

async fn series(state: &ApiState, org: Option<&str>, q: &SeriesQuery) -> ApiResult<Response> {
    let (range, format) = series_range(q, state.now(), state.dashboard.settings.max_buckets)?;
    if let Some(org) = org
        && state.store.org(org).await?.is_none()
    {
        return Err(ApiError::NotFound("organisation"));
    }
    let buckets = state.store.usage_series(org, range).await?;
    let bucket = if range.bucket_secs == HOUR_SECS {
        "hour"
    } else {
        "day"
    };
    Ok(match format {
        Format::Json => axum::Json(json!({
            "org_id": org,
            "bucket": bucket,
            "from": range.start,
            "to": range.end(),
            "buckets": buckets,
        }))
        .into_response(),
        Format::Csv => {
            // Org ids are our own random lower-case letters and digits; anything else would
            // not reach here, but the file name is kept to safe characters regardless.
            let who: String = org
                .unwrap_or("all")
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect();
            let name = format!(
                "veche-usage-{who}-{bucket}-{}.csv",
                utc_date(range.start).replace(['-', ':'], "")
            );
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                csv(&buckets),
            )
                .into_response()
        }
    })
}

/// The series as CSV (RFC 4180: CRLF line ends, a header row).
fn csv(buckets: &[UsageBucket]) -> String {
    let mut out =
        String::from("start_unix,start_utc,meetings,participant_minutes,peak_participants\r\n");
    for b in buckets {
        let _ = write!(
            out,
            "{},{},{},{},{}\r\n",
            b.start,
            utc_date(b.start),
            b.meetings,
            b.participant_minutes,
            b.peak_participants
        );
    }
    out
}

/// `secs` (Unix, non-negative) as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_date(secs: i64) -> String {
    let days = secs.div_euclid(DAY_SECS);
    let rest = secs.rem_euclid(DAY_SECS);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

pub(super) async fn all_series(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<SeriesQuery>,
) -> ApiResult<Response> {
    check_operator(&caller)?;
    series(&state, q.org.as_deref(), &q).await
}

pub(super) async fn org_series(
    State(state): State<ApiState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Query(q): Query<SeriesQuery>,
) -> ApiResult<Response> {
    check_administers(caller.user()?, &org_id)?;
    if q.org.is_some() {
        return Err(ApiError::InvalidField {
            field: "org",
            message: "the organisation is in the path".into(),
        });
    }
    series(&state, Some(&org_id), &q).await
}

/// This machine's name, for the node row (the kernel's, or `veche` where it cannot be read).
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "veche".to_owned())
}

/// Live figures: meetings and participants per shard of this node and per organisation,
/// forwarding totals and rates, the share of participants with a poor connection, and the
/// database size.
pub(super) async fn live(State(state): State<ApiState>, caller: Caller) -> ApiResult<Response> {
    check_operator(&caller)?;
    let shards = state
        .sfu
        .as_ref()
        .map(|sfu| sfu.shard_stats())
        .unwrap_or_default();
    let sum = |f: fn(&veche_sfu::ShardStats) -> u64| shards.iter().map(f).sum::<u64>();
    let (rooms, participants) = (sum(|s| s.rooms), sum(|s| s.participants));
    let (packets, bytes) = (sum(|s| s.forwarded_packets), sum(|s| s.forwarded_bytes));
    let (graded, poor) = (sum(|s| s.graded_participants), sum(|s| s.poor_participants));
    let rate = state
        .dashboard
        .rates()
        .observe(Instant::now(), packets, bytes);
    let orgs = {
        let live = state.dashboard.live();
        let meetings = live.meetings_per_org();
        let mut orgs: Vec<_> = live
            .per_org()
            .into_iter()
            .map(|(org, n)| {
                let m = meetings.get(&org).copied().unwrap_or(0);
                json!({"org_id": org, "meetings": m, "participants": n})
            })
            .collect();
        orgs.sort_by(|a, b| a["org_id"].as_str().cmp(&b["org_id"].as_str()));
        orgs
    };
    let database_bytes = state.store.database_bytes().await?;
    Ok(axum::Json(json!({
        "at": state.now(),
        "nodes": [{
            "name": node_name(),
            "rooms": rooms,
            "participants": participants,
            "shards": shards,
        }],
        "orgs": orgs,
        "forwarding": {
            "packets_total": packets,
            "bytes_total": bytes,
            "packets_per_sec": rate.map(|r| r.packets_per_sec),
            "bytes_per_sec": rate.map(|r| r.bytes_per_sec),
            "window_secs": rate.map(|r| r.window_secs),
        },
        "quality": {
            "graded": graded,
            "poor": poor,
            "poor_share": (graded > 0).then(|| poor as f64 / graded as f64),
        },
        "storage": {
            "backend": match state.store.backend() {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgres",
            },
            "database_bytes": database_bytes,
        },
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(from: Option<i64>, to: Option<i64>, bucket: &str) -> SeriesQuery {
        SeriesQuery {
            from,
            to,
            bucket: Some(bucket.into()),
            org: None,
            format: None,
        }
    }

    #[test]
    fn ranges_are_aligned_and_capped() {
        let (r, f) = series_range(&q(Some(3601), Some(7200), "hour"), 0, 10).unwrap();
        assert_eq!((r.start, r.count, f), (3600, 1, Format::Json));
        // The default: the last 30 days, today's included.
        let (r, _) = series_range(&q(None, Some(100 * DAY_SECS + 5), "day"), 0, 1000).unwrap();
        assert_eq!((r.start, r.count), (71 * DAY_SECS, 30));
        assert!(series_range(&q(Some(0), Some(11 * HOUR_SECS), "hour"), 0, 10).is_err());
        assert!(series_range(&q(Some(0), Some(9 * HOUR_SECS), "hour"), 0, 10).is_ok());
        assert!(series_range(&q(Some(5), Some(4), "hour"), 0, 10).is_err());
        assert!(series_range(&q(Some(-1), Some(4), "hour"), 0, 10).is_err());
        assert!(series_range(&q(Some(0), Some(4), "week"), 0, 10).is_err());
    }

    #[test]
    fn dates_are_utc_iso() {
        assert_eq!(utc_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_date(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_date(1_800_000_000), "2027-01-15T08:00:00Z");
    }

    #[test]
    fn csv_has_a_header_and_a_row_per_bucket() {
        let text = csv(&[UsageBucket {
            start: 3600,
            meetings: 2,
            participant_minutes: 7,
            peak_participants: 3,
        }]);
        assert_eq!(
            text,
            "start_unix,start_utc,meetings,participant_minutes,peak_participants\r\n\
             3600,1970-01-01T01:00:00Z,2,7,3\r\n"
        );
    }
}
