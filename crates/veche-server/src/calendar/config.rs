//! The calendar and invitation settings of `veche serve`: flags, `VECHE_*` variables and the
//! `[calendar]` table of the config file, merged (flag > environment > file > default) into
//! [`CalendarSettings`].

use std::fmt;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use lettre::message::Mailbox;
use serde::Deserialize;

const DEFAULT_SMTP_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_SMTP_MAX_ATTEMPTS: u32 = 5;
const DEFAULT_SMTP_RETRY_BASE_MS: u64 = 60_000;
/// The longest wait between two attempts of one invitation.
pub(super) const SMTP_RETRY_MAX: Duration = Duration::from_secs(3600);
const DEFAULT_INVITE_MAX_RECIPIENTS: usize = 50;
const DEFAULT_INVITE_MAX_PER_HOUR: usize = 200;
const DEFAULT_FEED_MAX_EVENTS: usize = 500;
const DEFAULT_FEED_PAST_DAYS: u32 = 30;

/// Calendar invitations and feeds, and email through an SMTP relay (see docs/calendar.md).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct CalendarArgs {
    /// The address people reach this server at, e.g. `https://meet.example.org`: the base of
    /// the join links in invitations and calendar feeds (needed for email invitations;
    /// without it downloads use the request's Host).
    #[arg(long, env = "VECHE_PUBLIC_URL", value_name = "URL")]
    pub(crate) public_url: Option<String>,

    /// SMTP relay for email invitations: `smtp://host:port` (plain, for a relay on the same
    /// machine), `smtp://host:587?tls=required` (STARTTLS) or `smtps://host:465`, with
    /// optional `user:password@`; without it invitations cannot be emailed.
    #[arg(long, env = "VECHE_SMTP_URL", value_name = "URL")]
    pub(crate) smtp_url: Option<String>,

    /// Sender of email invitations, e.g. `Veche <meet@example.org>` (needed with smtp-url).
    #[arg(long, env = "VECHE_SMTP_FROM", value_name = "MAILBOX")]
    pub(crate) smtp_from: Option<String>,

    /// How long one SMTP delivery may take, connect to the relay's answer, in milliseconds
    /// [default: 10000].
    #[arg(long, env = "VECHE_SMTP_TIMEOUT_MS", value_name = "MS")]
    pub(crate) smtp_timeout_ms: Option<u64>,

    /// Attempts to hand one invitation to the relay before it is marked failed; a permanent
    /// refusal (5xx) fails it at once [default: 5].
    #[arg(long, env = "VECHE_SMTP_MAX_ATTEMPTS", value_name = "N")]
    pub(crate) smtp_max_attempts: Option<u32>,

    /// Wait before retrying an invitation the relay did not take, doubled for each further
    /// attempt (at most an hour), in milliseconds [default: 60000].
    #[arg(long, env = "VECHE_SMTP_RETRY_BASE_MS", value_name = "MS")]
    pub(crate) smtp_retry_base_ms: Option<u64>,

    /// Addresses one request may invite by email [default: 50].
    #[arg(long, env = "VECHE_INVITE_MAX_RECIPIENTS", value_name = "N")]
    pub(crate) invite_max_recipients: Option<usize>,

    /// Email invitations one user may send in an hour [default: 200].
    #[arg(long, env = "VECHE_INVITE_MAX_PER_HOUR", value_name = "N")]
    pub(crate) invite_max_per_hour: Option<usize>,

    /// Most meetings in one calendar feed (the soonest) [default: 500].
    #[arg(long, env = "VECHE_CALENDAR_FEED_MAX_EVENTS", value_name = "N")]
    pub(crate) calendar_feed_max_events: Option<usize>,

    /// Days a past (non-recurring) meeting stays in calendar feeds [default: 30].
    #[arg(long, env = "VECHE_CALENDAR_FEED_PAST_DAYS", value_name = "DAYS")]
    pub(crate) calendar_feed_past_days: Option<u32>,
}

/// The relay and the sender. `Debug` leaves out the URL, which may hold a password.
#[derive(Clone)]
pub struct SmtpSettings {
    pub(crate) url: String,
    pub(crate) from: Mailbox,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("url", &"(hidden)")
            .field("from", &self.from.to_string())
            .finish()
    }
}

/// The resolved calendar settings.
#[derive(Debug, Clone)]
pub struct CalendarSettings {
    /// `https://host[:port][/prefix]` without a trailing slash.
    pub public_url: Option<String>,
    /// `None`: email invitations answer 503 `smtp_not_configured`.
    pub smtp: Option<SmtpSettings>,
    pub smtp_timeout: Duration,
    pub smtp_max_attempts: u32,
    pub smtp_retry_base: Duration,
    pub invite_max_recipients: usize,
    pub invite_max_per_hour: usize,
    pub feed_max_events: usize,
    pub feed_past: Duration,
}

impl Default for CalendarSettings {
    fn default() -> Self {
        CalendarSettings {
            public_url: None,
            smtp: None,
            smtp_timeout: Duration::from_millis(DEFAULT_SMTP_TIMEOUT_MS),
            smtp_max_attempts: DEFAULT_SMTP_MAX_ATTEMPTS,
            smtp_retry_base: Duration::from_millis(DEFAULT_SMTP_RETRY_BASE_MS),
            invite_max_recipients: DEFAULT_INVITE_MAX_RECIPIENTS,
            invite_max_per_hour: DEFAULT_INVITE_MAX_PER_HOUR,
            feed_max_events: DEFAULT_FEED_MAX_EVENTS,
            feed_past: Duration::from_secs(u64::from(DEFAULT_FEED_PAST_DAYS) * 24 * 3600),
        }
    }
}

/// `url` as a base for links: http(s), a host, no query, fragment or credentials; without
/// its trailing slash.
fn check_public_url(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("public-url {url:?}"))?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        bail!(
            "public-url {url:?} must be http:// or https:// with a host and no query, fragment or credentials"
        );
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

impl CalendarSettings {
    pub(crate) fn merge(a: CalendarArgs, f: CalendarArgs) -> anyhow::Result<CalendarSettings> {
        let d = CalendarSettings::default();
        let public_url = match a.public_url.or(f.public_url) {
            Some(u) => Some(check_public_url(&u)?),
            None => None,
        };
        let smtp = match (a.smtp_url.or(f.smtp_url), a.smtp_from.or(f.smtp_from)) {
            (None, None) => None,
            (Some(url), Some(from)) => {
                // Parsed here so that a bad URL stops the start, not the first invitation.
                lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&url)
                    .map_err(|e| anyhow::anyhow!("smtp-url is not usable: {e}"))?;
                let from: Mailbox = from
                    .parse()
                    .map_err(|e| anyhow::anyhow!("smtp-from {from:?}: {e}"))?;
                if public_url.is_none() {
                    bail!("smtp-url needs public-url: emailed join links must name this server");
                }
                Some(SmtpSettings { url, from })
            }
            (Some(_), None) => bail!("smtp-url needs smtp-from"),
            (None, Some(_)) => bail!("smtp-from is set but smtp-url is not"),
        };
        let ms = Duration::from_millis;
        let s = CalendarSettings {
            public_url,
            smtp,
            smtp_timeout: a
                .smtp_timeout_ms
                .or(f.smtp_timeout_ms)
                .map_or(d.smtp_timeout, ms),
            smtp_max_attempts: a
                .smtp_max_attempts
                .or(f.smtp_max_attempts)
                .unwrap_or(d.smtp_max_attempts),
            smtp_retry_base: a
                .smtp_retry_base_ms
                .or(f.smtp_retry_base_ms)
                .map_or(d.smtp_retry_base, ms),
            invite_max_recipients: a
                .invite_max_recipients
                .or(f.invite_max_recipients)
                .unwrap_or(d.invite_max_recipients),
            invite_max_per_hour: a
                .invite_max_per_hour
                .or(f.invite_max_per_hour)
                .unwrap_or(d.invite_max_per_hour),
            feed_max_events: a
                .calendar_feed_max_events
                .or(f.calendar_feed_max_events)
                .unwrap_or(d.feed_max_events),
            feed_past: a
                .calendar_feed_past_days
                .or(f.calendar_feed_past_days)
                .map_or(d.feed_past, |days| {
                    Duration::from_secs(u64::from(days) * 24 * 3600)
                }),
        };
        if s.smtp_timeout.is_zero() || s.smtp_retry_base.is_zero() {
            bail!("smtp-timeout-ms and smtp-retry-base-ms must be at least 1");
        }
        if s.smtp_max_attempts == 0 {
            bail!("smtp-max-attempts must be at least 1");
        }
        if s.invite_max_recipients == 0 || s.feed_max_events == 0 {
            bail!("invite-max-recipients and calendar-feed-max-events must be at least 1");
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_needs_a_sender_and_a_public_url_and_bad_values_are_refused() {
        let ok = CalendarArgs {
            public_url: Some("https://meet.example.org/".into()),
            smtp_url: Some("smtp://127.0.0.1:2525".into()),
            smtp_from: Some("Veche <meet@example.org>".into()),
            ..CalendarArgs::default()
        };
        let s = CalendarSettings::merge(ok.clone(), CalendarArgs::default()).unwrap();
        assert_eq!(s.public_url.as_deref(), Some("https://meet.example.org"));
        assert_eq!(
            s.smtp.as_ref().unwrap().from.email.to_string(),
            "meet@example.org"
        );
        assert!(
            !format!("{s:?}").contains("2525"),
            "the URL stays out of logs"
        );
        for bad in [
            CalendarArgs {
                smtp_from: None,
                ..ok.clone()
            },
            CalendarArgs {
                public_url: None,
                ..ok.clone()
            },
            CalendarArgs {
                smtp_from: Some("not an address".into()),
                ..ok.clone()
            },
            CalendarArgs {
                smtp_url: Some("ftp://x".into()),
                ..ok.clone()
            },
            CalendarArgs {
                public_url: Some("https://meet.example.org/?a=b".into()),
                ..CalendarArgs::default()
            },
            CalendarArgs {
                smtp_max_attempts: Some(0),
                ..CalendarArgs::default()
            },
        ] {
            assert!(
                CalendarSettings::merge(bad.clone(), CalendarArgs::default()).is_err(),
                "{bad:?}"
            );
        }
        let none =
            CalendarSettings::merge(CalendarArgs::default(), CalendarArgs::default()).unwrap();
        assert!(none.smtp.is_none() && none.public_url.is_none());
    }
}
