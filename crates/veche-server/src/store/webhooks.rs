//! Webhook endpoints of organisations and their delivery log, which is also the outbox: a
//! delivery is written before it is attempted, so one still pending when the server is
//! killed is attempted after the restart (see `crate::webhooks`). Delivery times are Unix
//! milliseconds (retries are seconds apart or less), endpoint times Unix seconds like the
//! rest of the store.

use rand::RngCore;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::plans::{Actor, insert_audit};
use super::{Store, StoreError, StoreResult, random_id, row_id};

/// A registered endpoint. Its secret is not part of it: it is shown once, when created,
/// and read back only by the delivery worker ([`DueDelivery`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookEndpoint {
    pub id: String,
    pub org_id: String,
    pub url: String,
    /// The event types it subscribes to (`meeting.started`, …).
    pub events: Vec<String>,
    pub description: String,
    pub created_by: Option<String>,
    pub created_at: i64,
}

/// What an edit of an endpoint changes (`None`: left as it is).
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewWebhookEndpoint {
    pub org_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub created_by: Option<String>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet accepted: an attempt is due, under way, or waiting for its retry.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed.
    Failed,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One event for one endpoint, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookDelivery {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// The HTTP status of the latest attempt, if the receiver answered.
    pub last_status: Option<i64>,
    /// Why the latest attempt failed, when it did.
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub last_attempt_ms: Option<i64>,
    /// When the next attempt is due (pending only).
    pub next_attempt_ms: Option<i64>,
    pub delivered_at_ms: Option<i64>,
    /// The body sent.
    pub payload: String,
}

/// A delivery the worker is to attempt now, with what it needs to sign and send it.
#[derive(Clone)]
pub struct DueDelivery {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub url: String,
    pub secret: String,
    /// The secret before the latest roll, while it still signs (beside `secret`).
    pub previous_secret: Option<String>,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// Without the secret.
impl std::fmt::Debug for DueDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DueDelivery")
            .field("id", &self.id)
            .field("event_type", &self.event_type)
            .field("url", &self.url)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// How an attempt went and what comes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub at_ms: i64,
    pub status: Option<i64>,
    pub error: Option<String>,
    pub next: NextStep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    RetryAt(i64),
    Failed,
}

/// Longest stored error text of an attempt, in characters.
const MAX_ERROR_CHARS: usize = 300;
/// Longest endpoint description, in characters.
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 200;

const ENDPOINT_COLUMNS: &str = "id, org_id, url, events, description, created_by, created_at";
const DELIVERY_COLUMNS: &str = "id, endpoint_id, event_id, event_type, status, attempts, \
     last_status, last_error, created_at_ms, last_attempt_ms, next_attempt_ms, \
     delivered_at_ms, payload";

/// A new endpoint secret: 256 random bits in hex behind a recognisable prefix (so one
/// pasted into the wrong place is easy to spot and to scan for).
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("vwhsec_{hex}")
}

impl Store {
    /// Registers an endpoint, unless its organisation already has `max_per_org`; returns it
    /// with its secret.
    pub async fn create_webhook_endpoint(
        &self,
        new: &NewWebhookEndpoint,
        max_per_org: usize,
        now: i64,
        actor: Option<&Actor>,
    ) -> StoreResult<(WebhookEndpoint, String)> {
        check_description(&new.description)?;
        let mut tx = self.pool.begin().await?;
        // A write first, so that the count and the insert are one step under concurrency:
        // PostgreSQL locks the organisation's row until commit, SQLite takes its write lock
        // (a read first would have to upgrade it, which fails at once under a writer).
        sqlx::query("UPDATE orgs SET name = name WHERE id = $1")
            .bind(&new.org_id)
            .execute(&mut *tx)
            .await?;
        let count: i64 = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM webhook_endpoints WHERE org_id = $1",
        )
        .bind(&new.org_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= max_per_org {
            return Err(StoreError::Invalid {
                field: "url",
                message: format!(
                    "the organisation already has {count} endpoints, the most allowed \
                     (--webhook-max-endpoints {max_per_org})"
                ),
            });
        }
        let endpoint = WebhookEndpoint {
            id: row_id(),
            org_id: new.org_id.clone(),
            url: new.url.clone(),
            events: new.events.clone(),
            description: new.description.clone(),
            created_by: new.created_by.clone(),
            created_at: now,
        };
        let secret = new_secret();
        sqlx::query(
            "INSERT INTO webhook_endpoints \
             (id, org_id, url, events, description, secret, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&endpoint.id)
        .bind(&endpoint.org_id)
        .bind(&endpoint.url)
        .bind(endpoint.events.join(","))
        .bind(&endpoint.description)
        .bind(&secret)
        .bind(&endpoint.created_by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some(actor) = actor {
            let detail = format!("{} for {}", endpoint.url, endpoint.events.join(", "));
            let entry = actor.entry("webhook.create", &endpoint.id, Some(&new.org_id), detail);
            insert_audit(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        Ok((endpoint, secret))
    }

    /// The endpoints of `org_id`, oldest first.
    pub async fn webhook_endpoints(&self, org_id: &str) -> StoreResult<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE org_id = $1 \
             ORDER BY created_at, id"
        ))
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    /// Endpoint `id` of `org_id` (`None` when it is another organisation's).
    pub async fn webhook_endpoint(
        &self,
        org_id: &str,
        id: &str,
    ) -> StoreResult<Option<WebhookEndpoint>> {
        endpoint_in(&self.pool, org_id, id).await
    }

    /// Changes what `patch` gives of endpoint `id` of `org_id`; the endpoint as it is now,
    /// `None` if there is none. Deliveries already written keep going to the URL they were
    /// written for only until their next attempt: every attempt reads the endpoint afresh.
    pub async fn update_webhook_endpoint(
        &self,
        org_id: &str,
        id: &str,
        patch: &WebhookPatch,
        now: i64,
        actor: Option<&Actor>,
    ) -> StoreResult<Option<WebhookEndpoint>> {
        if let Some(d) = &patch.description {
            check_description(d)?;
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE webhook_endpoints SET url = COALESCE($1, url), \
             events = COALESCE($2, events), description = COALESCE($3, description) \
             WHERE org_id = $4 AND id = $5",
        )
        .bind(patch.url.as_deref())
        .bind(patch.events.as_ref().map(|e| e.join(",")))
        .bind(patch.description.as_deref())
        .bind(org_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // Not found, in this organisation: nothing was changed (the transaction is dropped).
        let Some(endpoint) = endpoint_in(&mut *tx, org_id, id).await? else {
            return Ok(None);
        };
        if let Some(actor) = actor {
            let detail = format!("{} for {}", endpoint.url, endpoint.events.join(", "));
            let entry = actor.entry("webhook.update", id, Some(org_id), detail);
            insert_audit(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        Ok(Some(endpoint))
    }

    /// Gives endpoint `id` of `org_id` a new secret; the one it had goes on signing beside it
    /// until `keep_old_until` (Unix seconds; `now` or earlier: not at all). A secret rolled
    /// before the previous one expired replaces that one: only the latest two sign. Returns
    /// the new secret, `None` if there is no such endpoint.
    pub async fn roll_webhook_secret(
        &self,
        org_id: &str,
        id: &str,
        keep_old_until: i64,
        now: i64,
        actor: Option<&Actor>,
    ) -> StoreResult<Option<String>> {
        let secret = new_secret();
        let keep = keep_old_until > now;
        let mut tx = self.pool.begin().await?;
        // The old secret is kept only while it would sign; `keep_old_until` in the past
        // drops it at once.
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET \
             previous_secret = CASE WHEN $1 > $2 THEN secret END, \
             previous_secret_until = $1, secret = $3 WHERE org_id = $4 AND id = $5",
        )
        .bind(keep_old_until)
        .bind(now)
        .bind(&secret)
        .bind(org_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        if let Some(actor) = actor {
            let detail = if keep {
                format!("the previous secret signs too until {keep_old_until}")
            } else {
                "the previous secret no longer signs".to_owned()
            };
            let entry = actor.entry("webhook.roll_secret", id, Some(org_id), detail);
            insert_audit(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        Ok(Some(secret))
    }

    /// Deletes endpoint `id` of `org_id` with its delivery log; `false` if there was none.
    pub async fn delete_webhook_endpoint(
        &self,
        org_id: &str,
        id: &str,
        now: i64,
        actor: Option<&Actor>,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        // Explicitly, not only by the foreign key's cascade: the log goes with it whatever
        // the database's foreign-key setting.
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE endpoint_id IN \
             (SELECT id FROM webhook_endpoints WHERE org_id = $1 AND id = $2)",
        )
        .bind(org_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted = done.rows_affected() > 0;
        if let Some(actor) = actor.filter(|_| deleted) {
            let entry = actor.entry("webhook.delete", id, Some(org_id), String::new());
            insert_audit(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// Writes one pending delivery of an event for each endpoint of `org_id` subscribed to
    /// `event_type` (or for endpoint `only` alone, whatever it subscribes to: a test), due
    /// at once. Returns how many were written.
    pub async fn enqueue_webhook(
        &self,
        org_id: &str,
        event_id: &str,
        event_type: &str,
        payload: &str,
        only: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<usize> {
        let endpoints: Vec<String> = self
            .webhook_endpoints(org_id)
            .await?
            .into_iter()
            .filter(|e| match only {
                Some(id) => e.id == id,
                None => e.events.iter().any(|t| t == event_type),
            })
            .map(|e| e.id)
            .collect();
        if endpoints.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        for endpoint in &endpoints {
            sqlx::query(
                "INSERT INTO webhook_deliveries \
                 (id, endpoint_id, org_id, event_id, event_type, payload, status, attempts, \
                  next_attempt_ms, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7)",
            )
            .bind(format!("dlv_{}", random_id(20)))
            .bind(endpoint)
            .bind(org_id)
            .bind(event_id)
            .bind(event_type)
            .bind(payload)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(endpoints.len())
    }

    /// Up to `limit` pending deliveries due at `now_ms`, oldest first, each leased until
    /// `lease_until_ms`: it is not due again before then, so it is not attempted twice at
    /// once, and one whose attempt a crash cut short is attempted again after the lease.
    pub async fn claim_due_webhooks(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<DueDelivery>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT d.id, d.event_id, d.event_type, d.payload, d.attempts, e.url, e.secret, \
             CASE WHEN e.previous_secret_until > $3 THEN e.previous_secret END AS previous \
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             WHERE d.status = 'pending' AND d.next_attempt_ms <= $1 \
             ORDER BY d.next_attempt_ms, d.id LIMIT $2",
        )
        .bind(now_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(now_ms / 1000)
        .fetch_all(&mut *tx)
        .await?;
        let due: Vec<DueDelivery> = rows
            .iter()
            .map(|r| {
                Ok(DueDelivery {
                    id: r.try_get("id")?,
                    event_id: r.try_get("event_id")?,
                    event_type: r.try_get("event_type")?,
                    url: r.try_get("url")?,
                    secret: r.try_get("secret")?,
                    previous_secret: r.try_get("previous")?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect::<StoreResult<_>>()?;
        // Each lease is taken only if the delivery is still due: another process on the same
        // database that claimed it meanwhile moved it on, and it is left to that one.
        let mut claimed = Vec::with_capacity(due.len());
        for d in due {
            let taken = sqlx::query(
                "UPDATE webhook_deliveries SET next_attempt_ms = $1 \
                 WHERE id = $2 AND status = 'pending' AND next_attempt_ms <= $3",
            )
            .bind(lease_until_ms)
            .bind(&d.id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            if taken.rows_affected() == 1 {
                claimed.push(d);
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Records an attempt of delivery `id`.
    pub async fn record_webhook_attempt(&self, id: &str, r: &AttemptResult) -> StoreResult<()> {
        let (status, next, delivered) = match r.next {
            NextStep::Delivered => (DeliveryStatus::Delivered, None, Some(r.at_ms)),
            NextStep::RetryAt(at) => (DeliveryStatus::Pending, Some(at), None),
            NextStep::Failed => (DeliveryStatus::Failed, None, None),
        };
        let error = r
            .error
            .as_deref()
            .map(|e| super::plans::clip(e.to_owned(), MAX_ERROR_CHARS));
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
             last_status = $2, last_error = $3, last_attempt_ms = $4, \
             next_attempt_ms = COALESCE($5, next_attempt_ms), delivered_at_ms = $6 \
             WHERE id = $7",
        )
        .bind(status.as_str())
        .bind(r.status)
        .bind(error)
        .bind(r.at_ms)
        .bind(next)
        .bind(delivered)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When the next pending delivery is due (leased ones included), if any is.
    pub async fn next_webhook_due_ms(&self) -> StoreResult<Option<i64>> {
        // Joined like the claim, so a delivery the claim cannot see never looks due.
        let row = sqlx::query(
            "SELECT MIN(d.next_attempt_ms) AS due FROM webhook_deliveries d \
             JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("due")?)
    }

    /// The newest `limit` deliveries to endpoint `endpoint_id`, newest first.
    pub async fn webhook_deliveries(
        &self,
        endpoint_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1 \
             ORDER BY created_at_ms DESC, id DESC LIMIT $2"
        ))
        .bind(endpoint_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Deletes finished (delivered or failed) deliveries made before `before_ms`.
    pub async fn purge_webhook_deliveries(&self, before_ms: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at_ms < $1",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// Endpoint `id` of `org_id`, read through `db` (the pool, or a transaction that changed it).
async fn endpoint_in<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    org_id: &str,
    id: &str,
) -> StoreResult<Option<WebhookEndpoint>> {
    let row = sqlx::query(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE org_id = $1 AND id = $2"
    ))
    .bind(org_id)
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(endpoint_from_row).transpose()
}

fn check_description(d: &str) -> StoreResult<()> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(StoreError::Invalid {
            field: "description",
            message: format!("must have at most {MAX_DESCRIPTION_CHARS} characters"),
        });
    }
    Ok(())
}

fn endpoint_from_row(r: &AnyRow) -> StoreResult<WebhookEndpoint> {
    let events: String = r.try_get("events")?;
    Ok(WebhookEndpoint {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        url: r.try_get("url")?,
        events: events
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        description: r.try_get("description")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

fn delivery_from_row(r: &AnyRow) -> StoreResult<WebhookDelivery> {
    let status: String = r.try_get("status")?;
    let status = DeliveryStatus::parse(&status).ok_or_else(|| StoreError::Invalid {
        field: "webhook_deliveries.status",
        message: format!("stored status {status:?}"),
    })?;
    Ok(WebhookDelivery {
        id: r.try_get("id")?,
        endpoint_id: r.try_get("endpoint_id")?,
        event_id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        status,
        attempts: r.try_get("attempts")?,
        last_status: r.try_get("last_status")?,
        last_error: r.try_get("last_error")?,
        created_at_ms: r.try_get("created_at_ms")?,
        last_attempt_ms: r.try_get("last_attempt_ms")?,
        next_attempt_ms: if status == DeliveryStatus::Pending {
            r.try_get("next_attempt_ms")?
        } else {
            None
        },
        delivered_at_ms: r.try_get("delivered_at_ms")?,
        payload: r.try_get("payload")?,
    })
}
