//! Signed webhooks: organisation admins register endpoints (`/api/v1/orgs/{org}/webhooks`)
//! for meetings starting and ending and participants joining and leaving; each event is
//! POSTed to them as JSON, signed with the endpoint's secret (`signature.rs`), and retried
//! with exponential backoff until the receiver answers 2xx or the attempts run out. See
//! docs/webhooks.md.
//!
//! Nothing here is on the media or request path. [`Webhooks::offer`] is called by the task
//! that stores the SFU's events (`gate::store_events`) and only puts the event in a bounded
//! queue — when the queue is full the event is dropped, logged and counted, never waited
//! for. Two tasks do the rest (`worker.rs`): one writes each queued event to the delivery log
//! of every endpoint subscribed to it (the log is the outbox: what is pending there survives
//! a crash), the other attempts due deliveries, a bounded number at once, each within
//! `--webhook-timeout-ms`.

mod config;
mod event;
pub mod signature;
mod target;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, mpsc};
use tracing::warn;
use veche_sfu::SfuEvent;

pub(crate) use config::WebhookArgs;
pub use config::WebhookSettings;
pub use event::{Event, EventType};
pub use target::{UrlError, check_url, is_public};
pub(crate) use worker::start;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Events dropped because the queue was full (or the outbox could not be written).
    pub dropped: AtomicU64,
    /// Deliveries the receiver accepted.
    pub delivered: AtomicU64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: AtomicU64,
    /// Deliveries given up after their last attempt.
    pub failed: AtomicU64,
}

/// The webhooks as the rest of the server sees them: the settings, the queue events are
/// offered to, and a way to wake the delivery worker. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Webhooks {
    settings: WebhookSettings,
    /// `None`: no worker runs (API tests); events are not queued.
    queue: Option<mpsc::Sender<Event>>,
    wake: Arc<Notify>,
    stats: Arc<WebhookStats>,
}

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks::without_worker(WebhookSettings::default())
    }
}

impl Webhooks {
    /// Endpoints can be managed and deliveries written, but nothing is sent: for tests of
    /// the API alone.
    pub fn without_worker(settings: WebhookSettings) -> Webhooks {
        Webhooks {
            settings,
            queue: None,
            wake: Arc::default(),
            stats: Arc::default(),
        }
    }

    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    pub fn stats(&self) -> &Arc<WebhookStats> {
        &self.stats
    }

    /// Queues the webhook event of `e`, if it has one, without waiting: with the queue
    /// full, the event is dropped with a warning and counted.
    pub(crate) fn offer(&self, e: &SfuEvent) {
        let Some(queue) = &self.queue else { return };
        let Some(event) = Event::from_sfu(e) else {
            return;
        };
        if let Err(e) = queue.try_send(event) {
            let (mpsc::error::TrySendError::Full(event) | mpsc::error::TrySendError::Closed(event)) =
                e;
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(
                event = event.kind.as_str(),
                org = %event.org_id,
                capacity = self.settings.queue,
                "webhook queue full or stopped; event dropped"
            );
        }
    }

    /// Tells the delivery worker that a delivery was written outside the queue (a test).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use veche_sfu::{MeetingRef, MeetingStart};

    fn started() -> SfuEvent {
        SfuEvent::MeetingStarted(MeetingStart {
            meeting: MeetingRef {
                id: "m".into(),
                org_id: "o".into(),
                title: "T".into(),
            },
            room: "m".into(),
            started_at_ms: 1,
        })
    }

    /// A full queue drops and counts; it never waits (this test would hang if it did).
    #[test]
    fn a_full_queue_drops_instead_of_waiting() {
        let (tx, mut rx) = mpsc::channel(1);
        let hooks = Webhooks {
            queue: Some(tx),
            ..Webhooks::default()
        };
        hooks.offer(&started());
        hooks.offer(&started());
        hooks.offer(&SfuEvent::MeetingClosed {
            room: "m".into(),
            seq: 1,
        });
        assert_eq!(hooks.stats().dropped.load(Ordering::Relaxed), 1);
        let queued = rx.try_recv().unwrap();
        assert_eq!(queued.kind, EventType::MeetingStarted);
        assert!(
            rx.try_recv().is_err(),
            "events without a webhook are not queued"
        );
    }
}
