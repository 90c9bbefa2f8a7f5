//! Calendar invitations and feeds: a scheduled meeting as an iCalendar event (`ics.rs`), the
//! texts around it in the reader's language (`text.rs`), and invitations by email through
//! the operator's SMTP relay (`mail.rs`). See docs/calendar.md.
//!
//! The REST handlers (`api/calendar.rs`) build the text from [`invite`]; email goes through
//! the `meeting_invites` outbox, so a request never waits for the relay.

mod config;
pub mod ics;
mod mail;
pub mod text;

use std::sync::Arc;

use lettre::Address;
use tokio::sync::Notify;

pub(crate) use config::CalendarArgs;
pub use config::{CalendarSettings, SmtpSettings};
use text::{Lang, Msg, fill};

use crate::store::{Meeting, Recurrence, Store, User};

/// The calendar settings and a way to wake the mailer, as the rest of the server sees them.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    settings: Arc<CalendarSettings>,
    wake: Arc<Notify>,
}

impl Calendar {
    /// Without a mailer task (API tests): invitations are queued but not sent.
    pub fn without_mailer(settings: CalendarSettings) -> Calendar {
        Calendar {
            settings: Arc::new(settings),
            wake: Arc::default(),
        }
    }

    pub fn settings(&self) -> &CalendarSettings {
        &self.settings
    }

    /// Tells the mailer that invitations were queued.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The calendar, with its mailer task running when an SMTP relay is configured.
pub(crate) fn start(store: Store, settings: CalendarSettings) -> Calendar {
    let calendar = Calendar::without_mailer(settings);
    if let Some(smtp) = calendar.settings.smtp.clone() {
        tokio::spawn(mail::run(
            store,
            Arc::clone(&calendar.settings),
            smtp,
            Arc::clone(&calendar.wake),
        ));
    }
    calendar
}

/// The join link of `meeting` under `base`, with the passcode as `?pwd=` when given.
pub(crate) fn join_link(base: &str, meeting_id: &str, passcode: Option<&str>) -> String {
    let mut link = format!("{base}/j/{meeting_id}");
    if let Some(p) = passcode {
        link.push_str("?pwd=");
        link.extend(url::form_urlencoded::byte_serialize(p.as_bytes()));
    }
    link
}

/// What an invitation to one meeting says, in one language.
pub(crate) struct Invite {
    pub(crate) link: String,
    pub(crate) summary: String,
    /// The event's description: the join link and the passcode line.
    pub(crate) description: String,
    pub(crate) uid: String,
}

/// The stable UID of a meeting's event.
fn uid(meeting_id: &str) -> String {
    format!("{meeting_id}@veche")
}

/// The invitation to `meeting` for links under `base`; `passcode` is included when given
/// (the owner's choice), else a meeting with one says that it asks for it.
pub(crate) fn invite(meeting: &Meeting, base: &str, passcode: Option<&str>, lang: Lang) -> Invite {
    let link = join_link(base, &meeting.id, passcode);
    let mut description = fill(lang, Msg::JoinLine, &[("link", &link)]);
    match passcode {
        Some(p) => {
            description.push('\n');
            description.push_str(&fill(lang, Msg::PasscodeLine, &[("passcode", p)]));
        }
        None if meeting.has_passcode => {
            description.push('\n');
            description.push_str(text::text(lang, Msg::PasscodeWithheld));
        }
        None => {}
    }
    Invite {
        link,
        summary: meeting.title.clone(),
        description,
        uid: uid(&meeting.id),
    }
}

/// `meeting`'s event in a calendar with `inv`'s texts; `None` for an instant meeting.
pub(crate) fn event<'a>(
    meeting: &Meeting,
    inv: &'a Invite,
    owner: Option<&'a User>,
    now: i64,
) -> Option<ics::Event<'a>> {
    Some(ics::Event {
        uid: &inv.uid,
        sequence: meeting.sequence,
        stamp: now,
        start: meeting.starts_at?,
        duration_minutes: meeting.duration_minutes,
        repeat: match meeting.recurrence {
            Recurrence::None => ics::Repeat::Once,
            Recurrence::Weekly => ics::Repeat::Weekly,
        },
        summary: &inv.summary,
        description: &inv.description,
        url: &inv.link,
        organizer: owner.map(|o| (o.name.as_str(), o.email.as_str())),
    })
}

/// `YYYY-MM-DD HH:MM UTC` of Unix seconds.
fn when_utc(secs: i64) -> String {
    let secs = secs.max(0);
    let (y, m, d) = ics::civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The email of an invitation to `to`: the text part and the `.ics` (METHOD:REQUEST).
pub(crate) fn email(
    smtp: &SmtpSettings,
    to: &Address,
    sender: &User,
    meeting: &Meeting,
    inv: &Invite,
    calendar_text: &str,
    lang: Lang,
) -> Result<String, String> {
    let start = meeting.starts_at.map_or_else(String::new, when_utc);
    let when = match meeting.recurrence {
        Recurrence::Weekly => fill(lang, Msg::EveryWeekFrom, &[("start", &start)]),
        Recurrence::None => start,
    };
    let subject = fill(lang, Msg::InviteSubject, &[("title", &meeting.title)]);
    let body = fill(
        lang,
        Msg::InviteBody,
        &[
            ("sender", &sender.name),
            ("title", &meeting.title),
            ("when", &when),
            ("details", &inv.description),
        ],
    );
    mail::compose(&smtp.from, to, &subject, &body, calendar_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passcodes_are_escaped_in_the_link() {
        assert_eq!(
            join_link("https://m.example", "abc", Some("a b&c")),
            "https://m.example/j/abc?pwd=a+b%26c"
        );
        assert_eq!(when_utc(1_800_000_000), "2027-01-15 08:00 UTC");
    }
}
