//! The two tasks behind [`Webhooks`]: the outbox writer (queued events → pending deliveries
//! in the store) and the delivery worker (due deliveries → signed POSTs, results back into
//! the store).
//!
//! The worker's contract with the store: it claims due deliveries with a lease of the
//! timeout plus [`LEASE_SLACK`], so a delivery is never attempted twice at once, and one whose
//! attempt a crash or shutdown cut short becomes due again when its lease runs out. Delivery is
//! therefore at least once: a receiver can see a repeat (same `Veche-Delivery` id) when the
//! server died between its answer and the log's update.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::target::{PublicOnly, check_url};
use super::{Event, WebhookSettings, WebhookStats, Webhooks, signature};
use crate::store::{AttemptResult, DueDelivery, NextStep, Store};

/// Added to the timeout for a claimed delivery's lease.
const LEASE_SLACK: Duration = Duration::from_secs(10);
/// The longest the worker sleeps with nothing due (a delivery written by another process,
/// `veche admin` say, is found at the latest then).
const IDLE_POLL: Duration = Duration::from_secs(30);
/// How long the worker waits after the store failed before it tries again.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// How often finished deliveries past their retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// The running tasks; [`WebhookWorker::stop`] ends them.
pub(crate) struct WebhookWorker {
    stop: watch::Sender<bool>,
    outbox: tokio::task::JoinHandle<()>,
    deliverer: tokio::task::JoinHandle<()>,
}

impl WebhookWorker {
    /// Writes what is still queued to the outbox (briefly), then stops both tasks.
    /// Attempts under way are cut short; they are attempted again after the next start.
    pub(crate) async fn stop(self, drain: Duration) {
        self.stop.send_replace(true);
        if tokio::time::timeout(drain, self.outbox).await.is_err() {
            warn!("gave up writing the last webhook events");
        }
        self.deliverer.abort();
    }
}

/// Starts the outbox writer and the delivery worker; returns the handle events are offered
/// to.
pub(crate) fn start(
    store: Store,
    settings: WebhookSettings,
) -> anyhow::Result<(Webhooks, WebhookWorker)> {
    let client = http_client(&settings)?;
    let (queue, events) = mpsc::channel(settings.queue);
    let wake = Arc::new(Notify::new());
    let stats = Arc::new(WebhookStats::default());
    let (stop, stopped) = watch::channel(false);
    let outbox = tokio::spawn(write_outbox(
        store.clone(),
        events,
        Arc::clone(&wake),
        Arc::clone(&stats),
        stopped,
    ));
    let deliverer = tokio::spawn(deliver(
        store,
        client,
        settings.clone(),
        Arc::clone(&wake),
        Arc::clone(&stats),
    ));
    Ok((
        Webhooks {
            settings,
            queue: Some(queue),
            wake,
            stats,
        },
        WebhookWorker {
            stop,
            outbox,
            deliverer,
        },
    ))
}

/// No redirects (a receiver could point the signed body elsewhere), the timeout on the
/// whole exchange, and with private addresses refused, a resolver that drops them.
fn http_client(settings: &WebhookSettings) -> anyhow::Result<reqwest::Client> {
    let tls = crate::directory::tls_client_config(None).context("webhook TLS settings")?;
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .user_agent(concat!("veche-webhooks/", env!("CARGO_PKG_VERSION")));
    if !settings.private_addresses {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder.build().context("building the webhook HTTP client")
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

async fn write_outbox(
    store: Store,
    mut events: mpsc::Receiver<Event>,
    wake: Arc<Notify>,
    stats: Arc<WebhookStats>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = stop.changed() => {
                while let Ok(event) = events.try_recv() {
                    write_event(&store, &event, &wake, &stats).await;
                }
                return;
            }
        };
        let Some(event) = event else { return };
        write_event(&store, &event, &wake, &stats).await;
    }
}

async fn write_event(store: &Store, event: &Event, wake: &Notify, stats: &WebhookStats) {
    match store
        .enqueue_webhook(
            &event.org_id,
            &event.id,
            event.kind.as_str(),
            &event.body,
            None,
            unix_ms(),
        )
        .await
    {
        Ok(0) => {}
        Ok(n) => {
            debug!(
                event = event.kind.as_str(),
                endpoints = n,
                "webhook deliveries queued"
            );
            wake.notify_one();
        }
        Err(e) => {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            error!(event = event.kind.as_str(), org = %event.org_id, "writing webhook deliveries failed; event dropped: {e}");
        }
    }
}

async fn deliver(
    store: Store,
    client: reqwest::Client,
    settings: WebhookSettings,
    wake: Arc<Notify>,
    stats: Arc<WebhookStats>,
) {
    let mut inflight = JoinSet::new();
    let lease = ms(settings.timeout.saturating_add(LEASE_SLACK));
    let mut purged_at: Option<Instant> = None;
    loop {
        if purged_at.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            purged_at = Some(Instant::now());
            purge(&store, &settings).await;
        }
        let free = settings.concurrency.saturating_sub(inflight.len());
        let mut wait = IDLE_POLL;
        if free > 0 {
            let now = unix_ms();
            match store.claim_due_webhooks(now, now + lease, free).await {
                Ok(due) => {
                    for d in due {
                        inflight.spawn(attempt(
                            store.clone(),
                            client.clone(),
                            settings.clone(),
                            Arc::clone(&stats),
                            d,
                        ));
                    }
                }
                Err(e) => {
                    error!("claiming due webhook deliveries failed: {e}");
                    wait = STORE_RETRY;
                }
            }
        }
        let full = inflight.len() >= settings.concurrency;
        if !full && wait == IDLE_POLL {
            match store.next_webhook_due_ms().await {
                Ok(Some(due)) => {
                    let until = u64::try_from(due - unix_ms()).unwrap_or(0);
                    wait = wait.min(Duration::from_millis(until));
                }
                Ok(None) => {}
                Err(e) => {
                    error!("reading the next webhook delivery failed: {e}");
                    wait = STORE_RETRY;
                }
            }
        }
        tokio::select! {
            () = wake.notified(), if !full => {}
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
            () = tokio::time::sleep(wait), if !full => {}
        }
    }
}

async fn purge(store: &Store, settings: &WebhookSettings) {
    let Some(keep) = settings.log_retention else {
        return;
    };
    match store.purge_webhook_deliveries(unix_ms() - ms(keep)).await {
        Ok(0) => {}
        Ok(n) => info!(rows = n, "purged old webhook deliveries"),
        Err(e) => warn!("purging old webhook deliveries failed: {e}"),
    }
}

/// One attempt of `d`, and its result written to the log.
async fn attempt(
    store: Store,
    client: reqwest::Client,
    settings: WebhookSettings,
    stats: Arc<WebhookStats>,
    d: DueDelivery,
) {
    let number = d.attempts + 1;
    let (status, error) = send(&client, &settings, &d, number).await;
    let accepted = status.is_some_and(|s| (200..300).contains(&s));
    let at_ms = unix_ms();
    let next = if accepted {
        stats.delivered.fetch_add(1, Ordering::Relaxed);
        NextStep::Delivered
    } else {
        stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
        if number >= i64::from(settings.max_attempts) {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            warn!(delivery = %d.id, url = %d.url, attempts = number, "webhook delivery failed for good");
            NextStep::Failed
        } else {
            NextStep::RetryAt(at_ms + ms(backoff(&settings, d.attempts)))
        }
    };
    let error = match (accepted, error, status) {
        (true, _, _) => None,
        (false, Some(e), _) => Some(e),
        (false, None, Some(s)) => Some(format!("the receiver answered {s}")),
        (false, None, None) => Some("no answer".to_owned()),
    };
    let result = AttemptResult {
        at_ms,
        status,
        error,
        next,
    };
    if let Err(e) = store.record_webhook_attempt(&d.id, &result).await {
        // The lease runs out and the delivery is attempted again.
        error!(delivery = %d.id, "recording a webhook attempt failed: {e}");
    }
}

/// The wait after the failure of attempt `before + 1`: the base, doubled for each attempt
/// made before, at most the maximum.
fn backoff(settings: &WebhookSettings, before: i64) -> Duration {
    let doublings = u32::try_from(before.clamp(0, 30)).unwrap_or(30);
    settings
        .retry_base
        .saturating_mul(1 << doublings)
        .min(settings.retry_max)
}

/// POSTs `d`, signed now: the receiver's status, or why there was none.
async fn send(
    client: &reqwest::Client,
    settings: &WebhookSettings,
    d: &DueDelivery,
    number: i64,
) -> (Option<i64>, Option<String>) {
    // The operator may have turned private addresses off since the endpoint was registered.
    if let Err(e) = check_url(&d.url, usize::MAX, settings.private_addresses) {
        return (None, Some(format!("not sent: the URL {e}")));
    }
    let timestamp = unix_ms() / 1000;
    let request = client
        .post(&d.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            signature::HEADER,
            signature::header_value(
                &d.secret,
                d.previous_secret.as_deref(),
                timestamp,
                d.payload.as_bytes(),
            ),
        )
        .header("veche-event", &d.event_type)
        .header("veche-event-id", &d.event_id)
        .header("veche-delivery", &d.id)
        .header("veche-attempt", number.to_string())
        .body(d.payload.clone());
    // reqwest's own timeout covers the exchange; this one also bounds anything around it.
    match tokio::time::timeout(
        settings.timeout.saturating_add(Duration::from_secs(1)),
        request.send(),
    )
    .await
    {
        Ok(Ok(response)) => (Some(i64::from(response.status().as_u16())), None),
        Ok(Err(e)) if e.is_timeout() => (
            None,
            Some(format!(
                "no answer within {} ms",
                settings.timeout.as_millis()
            )),
        ),
        Ok(Err(e)) => (None, Some(error_chain(&e))),
        Err(_) => (
            None,
            Some(format!(
                "no answer within {} ms",
                settings.timeout.as_millis()
            )),
        ),
    }
}

/// An error with its causes, for the log an admin reads.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let s = WebhookSettings {
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(600),
            ..WebhookSettings::default()
        };
        let waits: Vec<u64> = (0..8).map(|n| backoff(&s, n).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 600, 600, 600]);
        assert_eq!(backoff(&s, 1000), Duration::from_secs(600));
    }
}
