//! Email invitations: the message (a text part and the `.ics` as a `text/calendar;
//! method=REQUEST` attachment, RFC 6047) and the task that hands pending ones to the SMTP
//! relay the operator configured — nothing else is ever connected to.
//!
//! The message is written whole when the invitation is asked for and stored in the
//! `meeting_invites` outbox; this task only claims due rows (each under a lease, so two
//! processes on one database never send the same row at once), sends them one after the
//! other, and records the outcome: sent, a retry after `smtp-retry-base-ms` × 2^(n−1) (at
//! most an hour), or failed after `smtp-max-attempts` or a permanent (5xx) refusal.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::config::{CalendarSettings, SMTP_RETRY_MAX, SmtpSettings};
use crate::store::{DueInvite, InviteOutcome, Store};

/// Invitations claimed per round.
const BATCH: i64 = 8;
/// Longest sleep between two looks at the outbox when nothing is due (another process may
/// have queued something).
const IDLE: Duration = Duration::from_secs(30);

/// The RFC 5322 message of one invitation to `to`.
pub(crate) fn compose(
    from: &Mailbox,
    to: &Address,
    subject: &str,
    body: &str,
    ics: &str,
) -> Result<String, String> {
    let calendar = ContentType::parse("text/calendar; charset=utf-8; method=REQUEST")
        .map_err(|e| e.to_string())?;
    let message = Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to.clone()))
        .subject(subject)
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(body.to_owned()))
                .singlepart(
                    Attachment::new("invite.ics".to_owned()).body(ics.to_owned(), calendar),
                ),
        )
        .map_err(|e| e.to_string())?;
    String::from_utf8(message.formatted()).map_err(|e| e.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The mailer task: runs until the process ends.
pub(super) async fn run(
    store: Store,
    settings: Arc<CalendarSettings>,
    smtp: SmtpSettings,
    wake: Arc<Notify>,
) {
    let transport = match AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp.url) {
        Ok(b) => b.timeout(Some(settings.smtp_timeout)).build(),
        Err(e) => {
            // Checked when the settings were read: only a broken invariant gets here.
            debug_assert!(false, "smtp-url was checked at start-up: {e}");
            tracing::error!(error = %e, "smtp-url is not usable; email invitations stay pending");
            return;
        }
    };
    // One attempt at a time, and the lease covers it with room to spare.
    let lease = ms(settings.smtp_timeout) + 10_000;
    loop {
        let now = now_ms();
        match store.claim_due_invites(now, now + lease, BATCH).await {
            Ok(due) => {
                for invite in due {
                    let outcome = attempt(&transport, &smtp, &settings, &invite).await;
                    match &outcome {
                        InviteOutcome::Sent => info!(invite = %invite.id, "invitation sent"),
                        InviteOutcome::Retry { error, .. } | InviteOutcome::Failed { error } => {
                            warn!(invite = %invite.id, %error, "invitation not sent")
                        }
                    }
                    if let Err(e) = store
                        .record_invite_attempt(&invite.id, &outcome, now_ms())
                        .await
                    {
                        warn!(error = %e, "recording an invitation attempt failed");
                    }
                }
            }
            Err(e) => warn!(error = %e, "reading the invitation outbox failed"),
        }
        let next = store.next_invite_due_ms().await.ok().flatten();
        let wait = next.map_or(IDLE, |due| {
            Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)).min(IDLE)
        });
        if !wait.is_zero() {
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

async fn attempt(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    smtp: &SmtpSettings,
    settings: &CalendarSettings,
    invite: &DueInvite,
) -> InviteOutcome {
    let failed = |error: String| InviteOutcome::Failed { error };
    let Ok(to) = invite.email.parse::<Address>() else {
        return failed(format!("{:?} is not an address", invite.email));
    };
    let envelope = match Envelope::new(Some(smtp.from.email.clone()), vec![to]) {
        Ok(e) => e,
        Err(e) => return failed(e.to_string()),
    };
    // lettre's timeout applies to each read and write; this one to the whole exchange.
    let whole = settings.smtp_timeout * 3;
    let result = tokio::time::timeout(
        whole,
        transport.send_raw(&envelope, invite.message.as_bytes()),
    )
    .await;
    let error = match result {
        Ok(Ok(_)) => return InviteOutcome::Sent,
        Ok(Err(e)) if e.is_permanent() => return failed(format!("the relay refused: {e}")),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} ms", whole.as_millis()),
    };
    let attempts = u32::try_from(invite.attempts).unwrap_or(u32::MAX) + 1;
    if attempts >= settings.smtp_max_attempts {
        return failed(error);
    }
    let wait = settings
        .smtp_retry_base
        .saturating_mul(1 << (attempts - 1).min(20))
        .min(SMTP_RETRY_MAX);
    InviteOutcome::Retry {
        error,
        at_ms: now_ms() + ms(wait),
    }
}
