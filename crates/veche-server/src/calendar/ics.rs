//! iCalendar ([RFC 5545](https://www.rfc-editor.org/rfc/rfc5545)) text of meetings: one
//! `VEVENT` per meeting, times in UTC, lines ended by CRLF and folded at 75 octets, TEXT
//! values escaped. Pure: what goes in is values (the time included), what comes out a
//! string; nothing here reads a clock or the database.
//!
//! The `METHOD` ([RFC 5546](https://www.rfc-editor.org/rfc/rfc5546)) is `REQUEST` for an
//! invitation sent by email (an organizer inviting attendees), `PUBLISH` for a download or
//! a feed.

use std::fmt::Write as _;

/// Longest line, in octets, without its CRLF (RFC 5545, 3.1).
const MAX_LINE_OCTETS: usize = 75;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Publish,
    Request,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Publish => "PUBLISH",
            Method::Request => "REQUEST",
        }
    }
}

/// How an event repeats: the subset of RRULE meetings have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    Once,
    /// Every week on the start's weekday, without end.
    Weekly,
}

/// One meeting as a calendar event.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// Stable for the meeting: its updates replace the event in a calendar.
    pub uid: &'a str,
    /// Bumped by every change of the meeting.
    pub sequence: i64,
    /// When this text was made (DTSTAMP), Unix seconds.
    pub stamp: i64,
    /// Unix seconds.
    pub start: i64,
    pub duration_minutes: i64,
    pub repeat: Repeat,
    pub summary: &'a str,
    pub description: &'a str,
    /// The join link (URL and LOCATION).
    pub url: &'a str,
    /// The meeting's owner: (name, email).
    pub organizer: Option<(&'a str, &'a str)>,
}

/// A calendar with `events`; `name` becomes `X-WR-CALNAME` (a feed's title in most apps).
pub fn calendar(method: Method, name: Option<&str>, events: &[Event<'_>]) -> String {
    let mut w = Writer::default();
    w.line("BEGIN:VCALENDAR");
    w.line("VERSION:2.0");
    w.line(&format!(
        "PRODID:-//Veche//Veche {}//EN",
        env!("CARGO_PKG_VERSION")
    ));
    w.line("CALSCALE:GREGORIAN");
    w.line(&format!("METHOD:{}", method.as_str()));
    if let Some(name) = name {
        w.line(&format!("X-WR-CALNAME:{}", escape_text(name)));
    }
    for e in events {
        w.line("BEGIN:VEVENT");
        w.line(&format!("UID:{}", escape_text(e.uid)));
        w.line(&format!("SEQUENCE:{}", e.sequence.max(0)));
        w.line(&format!("DTSTAMP:{}", utc(e.stamp)));
        w.line(&format!("DTSTART:{}", utc(e.start)));
        w.line(&format!(
            "DTEND:{}",
            utc(e
                .start
                .saturating_add(e.duration_minutes.saturating_mul(60)))
        ));
        if e.repeat == Repeat::Weekly {
            w.line("RRULE:FREQ=WEEKLY");
        }
        w.line(&format!("SUMMARY:{}", escape_text(e.summary)));
        w.line(&format!("DESCRIPTION:{}", escape_text(e.description)));
        w.line(&format!("LOCATION:{}", escape_text(e.url)));
        w.line(&format!("URL:{}", single_line(e.url)));
        if let Some((name, email)) = e.organizer {
            w.line(&format!(
                "ORGANIZER;CN={}:mailto:{}",
                param_value(name),
                single_line(email)
            ));
        }
        w.line("STATUS:CONFIRMED");
        w.line("TRANSP:OPAQUE");
        w.line("END:VEVENT");
    }
    w.line("END:VCALENDAR");
    w.out
}

#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    /// Appends one content line, folded: after every 75 octets (74 on continuation lines,
    /// which start with a space) a CRLF and a space, never inside a UTF-8 character.
    fn line(&mut self, content: &str) {
        let mut used = 0;
        for ch in content.chars() {
            let len = ch.len_utf8();
            if used + len > MAX_LINE_OCTETS {
                self.out.push_str("\r\n ");
                used = 1;
            }
            self.out.push(ch);
            used += len;
        }
        self.out.push_str("\r\n");
    }
}

/// A TEXT value (RFC 5545, 3.3.11): backslash, semicolon and comma escaped, line breaks as
/// `\n`, other control characters dropped.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let s = s.replace("\r\n", "\n");
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' | '\r' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A URI or address value: control characters dropped, so it cannot end the line.
fn single_line(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// A parameter value (RFC 5545, 3.2): quoted, without the quotes and control characters it
/// cannot hold.
fn param_value(s: &str) -> String {
    let inner: String = s.chars().filter(|c| !c.is_control() && *c != '"').collect();
    format!("\"{inner}\"")
}

/// `YYYYMMDDTHHMMSSZ` of Unix seconds (negative ones clamp to 1970).
pub fn utc(secs: i64) -> String {
    let secs = secs.max(0);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let mut s = String::with_capacity(16);
    let _ = write!(
        s,
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    s
}

/// (year, month, day) of the day `z` days after 1970-01-01, in the proleptic Gregorian
/// calendar (H. Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both in range by construction: day 1..=31, month 1..=12.
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(summary: &'a str, description: &'a str) -> Event<'a> {
        Event {
            uid: "abc@veche",
            sequence: 2,
            stamp: 1_800_000_000,
            start: 1_800_003_600,
            duration_minutes: 90,
            repeat: Repeat::Weekly,
            summary,
            description,
            url: "https://meet.example.org/j/abc",
            organizer: Some(("Mia \"M\"", "mia@example.org")),
        }
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "19700101T000000Z");
        assert_eq!(utc(1_800_000_000), "20270115T080000Z");
        // 2024-02-29 12:34:56 UTC, a leap day.
        assert_eq!(utc(1_709_210_096), "20240229T123456Z");
    }

    #[test]
    fn lines_end_with_crlf_and_fold_at_75_octets_between_characters() {
        let long = "Встреча, очень длинная; ".repeat(10);
        let text = calendar(Method::Request, Some("Feed"), &[event(&long, "a\nb")]);
        assert!(text.ends_with("END:VCALENDAR\r\n"));
        for line in text.split("\r\n") {
            assert!(line.len() <= MAX_LINE_OCTETS, "{line:?} is too long");
            assert!(!line.contains('\n') && !line.contains('\r'));
        }
        // Unfolding gives back the escaped value.
        let unfolded = text.replace("\r\n ", "");
        assert!(unfolded.contains(&format!("SUMMARY:{}", escape_text(&long))));
        assert!(unfolded.contains("DESCRIPTION:a\\nb\r\n"));
        assert!(unfolded.contains("RRULE:FREQ=WEEKLY\r\n"));
        assert!(unfolded.contains("DTSTART:20270115T090000Z\r\n"));
        assert!(unfolded.contains("DTEND:20270115T103000Z\r\n"));
        assert!(unfolded.contains("SEQUENCE:2\r\n"));
        assert!(unfolded.contains("ORGANIZER;CN=\"Mia M\":mailto:mia@example.org\r\n"));
        assert!(unfolded.contains("METHOD:REQUEST\r\n"));
    }

    #[test]
    fn text_is_escaped_and_cannot_break_out_of_its_line() {
        assert_eq!(escape_text("a,b;c\\d\r\ne\u{7}"), "a\\,b\\;c\\\\d\\ne");
        let text = calendar(
            Method::Publish,
            None,
            &[event("x\r\nEND:VEVENT", "y\nBEGIN:VALARM")],
        );
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines.iter().filter(|l| **l == "END:VEVENT").count(), 1);
        assert!(!lines.iter().any(|l| l.starts_with("BEGIN:VALARM")));
    }
}
