//! The webhook settings of `veche serve`: flags, `VECHE_*` variables and the `[webhooks]`
//! table of the config file, merged (flag > environment > file > default) into
//! [`WebhookSettings`].

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde::Deserialize;

const DEFAULT_MAX_ENDPOINTS: usize = 10;
const DEFAULT_TIMEOUT_MS: u64 = 5000;
const DEFAULT_MAX_ATTEMPTS: u32 = 8;
const DEFAULT_RETRY_BASE_MS: u64 = 30_000;
const DEFAULT_RETRY_MAX_MS: u64 = 3_600_000;
const DEFAULT_QUEUE: usize = 10_000;
const DEFAULT_CONCURRENCY: usize = 8;
const DEFAULT_LOG_DAYS: u32 = 30;
/// Longest endpoint URL, in bytes.
const DEFAULT_MAX_URL_BYTES: usize = 2048;

/// Signed webhooks of organisations (see docs/webhooks.md).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct WebhookArgs {
    /// Webhook endpoints one organisation may register [default: 10].
    #[arg(long, env = "VECHE_WEBHOOK_MAX_ENDPOINTS", value_name = "N")]
    pub(crate) webhook_max_endpoints: Option<usize>,

    /// Longest webhook endpoint URL, in bytes [default: 2048].
    #[arg(long, env = "VECHE_WEBHOOK_MAX_URL_BYTES", value_name = "BYTES")]
    pub(crate) webhook_max_url_bytes: Option<usize>,

    /// How long one delivery may take (connect, send, the receiver's answer) before it
    /// counts as failed, in milliseconds [default: 5000].
    #[arg(long, env = "VECHE_WEBHOOK_TIMEOUT_MS", value_name = "MS")]
    pub(crate) webhook_timeout_ms: Option<u64>,

    /// Attempts of one delivery before it is marked failed [default: 8].
    #[arg(long, env = "VECHE_WEBHOOK_MAX_ATTEMPTS", value_name = "N")]
    pub(crate) webhook_max_attempts: Option<u32>,

    /// Wait before the first retry of a failed delivery, doubled for each further one, in
    /// milliseconds [default: 30000].
    #[arg(long, env = "VECHE_WEBHOOK_RETRY_BASE_MS", value_name = "MS")]
    pub(crate) webhook_retry_base_ms: Option<u64>,

    /// Longest wait between two attempts of a delivery, in milliseconds
    /// [default: 3600000].
    #[arg(long, env = "VECHE_WEBHOOK_RETRY_MAX_MS", value_name = "MS")]
    pub(crate) webhook_retry_max_ms: Option<u64>,

    /// Meeting events waiting to be written to the delivery log; when it is full, events
    /// are dropped (logged and counted on /metrics) rather than slow down meetings
    /// [default: 10000].
    #[arg(long, env = "VECHE_WEBHOOK_QUEUE", value_name = "N")]
    pub(crate) webhook_queue: Option<usize>,

    /// Deliveries in flight at once over all endpoints [default: 8].
    #[arg(long, env = "VECHE_WEBHOOK_CONCURRENCY", value_name = "N")]
    pub(crate) webhook_concurrency: Option<usize>,

    /// Whether endpoints may be on loopback, private (RFC 1918, fc00::/7), link-local or
    /// other non-public addresses; `false` refuses such URLs and any host name that
    /// resolves to one [default: true].
    #[arg(long, env = "VECHE_WEBHOOK_PRIVATE_ADDRESSES", value_name = "BOOL")]
    pub(crate) webhook_private_addresses: Option<bool>,

    /// Days finished deliveries stay in the delivery log; 0 keeps them for ever
    /// [default: 30].
    #[arg(long, env = "VECHE_WEBHOOK_LOG_DAYS", value_name = "DAYS")]
    pub(crate) webhook_log_days: Option<u32>,
}

/// The resolved webhook settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    pub max_endpoints: usize,
    pub max_url_bytes: usize,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub queue: usize,
    pub concurrency: usize,
    pub private_addresses: bool,
    /// How long finished deliveries are kept (`None`: for ever).
    pub log_retention: Option<Duration>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            max_endpoints: DEFAULT_MAX_ENDPOINTS,
            max_url_bytes: DEFAULT_MAX_URL_BYTES,
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_base: Duration::from_millis(DEFAULT_RETRY_BASE_MS),
            retry_max: Duration::from_millis(DEFAULT_RETRY_MAX_MS),
            queue: DEFAULT_QUEUE,
            concurrency: DEFAULT_CONCURRENCY,
            private_addresses: true,
            log_retention: Some(Duration::from_secs(u64::from(DEFAULT_LOG_DAYS) * 24 * 3600)),
        }
    }
}

impl WebhookSettings {
    pub(crate) fn merge(a: WebhookArgs, f: WebhookArgs) -> anyhow::Result<WebhookSettings> {
        let d = WebhookSettings::default();
        let ms = Duration::from_millis;
        let s = WebhookSettings {
            max_endpoints: a
                .webhook_max_endpoints
                .or(f.webhook_max_endpoints)
                .unwrap_or(d.max_endpoints),
            max_url_bytes: a
                .webhook_max_url_bytes
                .or(f.webhook_max_url_bytes)
                .unwrap_or(d.max_url_bytes),
            timeout: a
                .webhook_timeout_ms
                .or(f.webhook_timeout_ms)
                .map_or(d.timeout, ms),
            max_attempts: a
                .webhook_max_attempts
                .or(f.webhook_max_attempts)
                .unwrap_or(d.max_attempts),
            retry_base: a
                .webhook_retry_base_ms
                .or(f.webhook_retry_base_ms)
                .map_or(d.retry_base, ms),
            retry_max: a
                .webhook_retry_max_ms
                .or(f.webhook_retry_max_ms)
                .map_or(d.retry_max, ms),
            queue: a.webhook_queue.or(f.webhook_queue).unwrap_or(d.queue),
            concurrency: a
                .webhook_concurrency
                .or(f.webhook_concurrency)
                .unwrap_or(d.concurrency),
            private_addresses: a
                .webhook_private_addresses
                .or(f.webhook_private_addresses)
                .unwrap_or(d.private_addresses),
            log_retention: match a.webhook_log_days.or(f.webhook_log_days) {
                None => d.log_retention,
                Some(0) => None,
                Some(days) => Some(Duration::from_secs(u64::from(days) * 24 * 3600)),
            },
        };
        if s.timeout.is_zero() {
            bail!("webhook-timeout-ms must be at least 1");
        }
        if s.max_attempts == 0 {
            bail!("webhook-max-attempts must be at least 1");
        }
        if s.retry_base.is_zero() || s.retry_max < s.retry_base {
            bail!("webhook-retry-base-ms must be at least 1 and at most webhook-retry-max-ms");
        }
        if s.queue == 0 || s.concurrency == 0 {
            bail!("webhook-queue and webhook-concurrency must be at least 1");
        }
        // `http://a.b/` is the shortest URL worth registering.
        if s.max_url_bytes < 16 {
            bail!(
                "webhook-max-url-bytes {} is too small (minimum 16)",
                s.max_url_bytes
            );
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_bad_values_are_refused() {
        let file = WebhookArgs {
            webhook_timeout_ms: Some(100),
            webhook_max_endpoints: Some(3),
            ..WebhookArgs::default()
        };
        let flags = WebhookArgs {
            webhook_timeout_ms: Some(200),
            webhook_log_days: Some(0),
            ..WebhookArgs::default()
        };
        let s = WebhookSettings::merge(flags, file).unwrap();
        assert_eq!(s.timeout, Duration::from_millis(200));
        assert_eq!(s.max_endpoints, 3);
        assert_eq!(s.log_retention, None);
        assert_eq!(s.max_attempts, DEFAULT_MAX_ATTEMPTS);
        for bad in [
            WebhookArgs {
                webhook_max_attempts: Some(0),
                ..WebhookArgs::default()
            },
            WebhookArgs {
                webhook_retry_base_ms: Some(10),
                webhook_retry_max_ms: Some(5),
                ..WebhookArgs::default()
            },
            WebhookArgs {
                webhook_queue: Some(0),
                ..WebhookArgs::default()
            },
        ] {
            assert!(WebhookSettings::merge(bad, WebhookArgs::default()).is_err());
        }
    }
}
