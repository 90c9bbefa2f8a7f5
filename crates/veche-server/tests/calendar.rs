//! Calendar invitations through the real binary: the `.ics` of a scheduled meeting parsed
//! by a real iCalendar parser (Python's `icalendar`, run by the test), with the join link,
//! the recurrence, the passcode only when its owner puts it there, and SEQUENCE bumped by a
//! change; the private feed (its token works, a wrong one is 404, a reset retires the old
//! one); and invitations by email handed to a real SMTP server the test runs on loopback,
//! (aiosmtpd, started by the test) whose received messages are parsed the same way. Python and `icalendar` must be there
//! (scripts/test.sh installs them): without them the test fails rather than skips.

use crate::{common, smtpd};

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::Server;
use serde_json::{Value, json};
use smtpd::Smtpd;

const PW: &str = "correct horse battery";
const WAIT: Duration = Duration::from_secs(20);
/// 2030-01-07 09:30 UTC, a Monday: far enough ahead to stay upcoming.
const STARTS_AT: i64 = 1_894_008_600;

/// Parses an `.ics` file (`ics`) or a whole email carrying one (`eml`) with Python's
/// email and icalendar packages, and prints what the test checks as JSON.
const PARSER: &str = r#"
import email, json, sys
from email import policy
import icalendar

mode, path = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read()
out = {}
if mode == "eml":
    msg = email.message_from_bytes(raw, policy=policy.default)
    out["subject"] = str(msg["subject"])
    out["to"] = str(msg["to"])
    out["from"] = str(msg["from"])
    raw = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "text/plain" and "body" not in out:
            out["body"] = part.get_content()
        if ctype == "text/calendar":
            out["calendar_method"] = part.get_param("method")
            out["filename"] = part.get_filename()
            raw = part.get_payload(decode=True)
cal = icalendar.Calendar.from_ical(raw)
out["method"] = str(cal.get("method"))
out["calname"] = str(cal["x-wr-calname"]) if "x-wr-calname" in cal else None
out["events"] = []
for ev in cal.walk("VEVENT"):
    rrule = ev.get("rrule")
    out["events"].append({
        "uid": str(ev["uid"]),
        "summary": str(ev["summary"]),
        "description": str(ev["description"]),
        "url": str(ev["url"]),
        "dtstart": int(ev.decoded("dtstart").timestamp()),
        "dtend": int(ev.decoded("dtend").timestamp()),
        "sequence": int(ev["sequence"]),
        "rrule": rrule.to_ical().decode() if rrule else None,
        "organizer": str(ev["organizer"]) if "organizer" in ev else None,
    })
print(json.dumps(out))
"#;

/// Runs [`PARSER`] over `data`; fails (never skips) when Python or icalendar is missing.
fn parse_with_python(mode: &str, data: &[u8]) -> anyhow::Result<Value> {
    let dir = std::env::temp_dir().join(format!("veche-ics-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{mode}-{}.txt", rand_suffix()));
    std::fs::write(&path, data)?;
    let out = Command::new("python3")
        .args(["-c", PARSER, mode])
        .arg(&path)
        .output()
        .context("running python3 (scripts/test.sh installs it and icalendar)")?;
    let _ = std::fs::remove_file(&path);
    ensure!(
        out.status.success(),
        "the iCalendar parser failed (is `icalendar` installed? `pip install icalendar`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// RFC 5545's framing, checked on the octets: CRLF line ends, at most 75 octets a line.
fn check_framing(ics: &str) -> anyhow::Result<()> {
    ensure!(ics.ends_with("\r\n"), "no CRLF at the end");
    for line in ics.split("\r\n") {
        ensure!(!line.contains('\n'), "a bare LF in {line:?}");
        ensure!(line.len() <= 75, "{} octets in {line:?}", line.len());
    }
    Ok(())
}

async fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<(u16, String)> {
    let json = (!body.is_null()).then(|| body.to_string());
    server.request(method, path, token, json.as_deref()).await
}

async fn api(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let (status, text) = call(server, method, &format!("/api/v1{path}"), token, body).await?;
    ensure!(
        (200..300).contains(&status),
        "{method} {path} answered {status}: {text}"
    );
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A new account and its token; and its scheduled weekly meeting with a passcode.
async fn owner_and_meeting(server: &Server) -> anyhow::Result<(String, Value)> {
    let signup = api(
        server,
        "POST",
        "/auth/signup",
        None,
        json!({"email": "olga@a.example", "password": PW, "name": "Olga Petrova", "org_name": "A"}),
    )
    .await?;
    let token = signup["token"].as_str().context("token")?.to_owned();
    let meeting = api(
        server,
        "POST",
        "/meetings",
        Some(&token),
        json!({"title": "Планёрка, weekly; sync", "starts_at": STARTS_AT, "duration_minutes": 45,
               "recurrence": "weekly", "passcode": "secret 42"}),
    )
    .await?;
    Ok((token, meeting))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_invite_ics_and_private_feed() -> anyhow::Result<()> {
    let server = Server::start_with(&["--public-url", "https://meet.example.org/"]).await?;
    let (token, meeting) = owner_and_meeting(&server).await?;
    let id = meeting["id"].as_str().context("id")?;
    let link = format!("https://meet.example.org/j/{id}");

    // The invitation without the passcode.
    let (status, ics) = call(
        &server,
        "GET",
        &format!("/api/v1/meetings/{id}/invite.ics"),
        Some(&token),
        Value::Null,
    )
    .await?;
    ensure!(status == 200, "invite.ics answered {status}: {ics}");
    check_framing(&ics)?;
    let parsed = parse_with_python("ics", ics.as_bytes())?;
    let ev = &parsed["events"][0];
    assert_eq!(parsed["method"], "PUBLISH");
    assert_eq!(parsed["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(ev["summary"], "Планёрка, weekly; sync");
    assert_eq!(ev["url"], link.as_str());
    assert!(ev["description"].as_str().unwrap().contains(&link));
    assert_eq!(ev["dtstart"], STARTS_AT);
    assert_eq!(ev["dtend"], STARTS_AT + 45 * 60);
    assert_eq!(ev["rrule"], "FREQ=WEEKLY");
    assert_eq!(ev["uid"], format!("{id}@veche"));
    assert_eq!(ev["sequence"], 0);
    assert_eq!(ev["organizer"], "mailto:olga@a.example");
    assert!(
        !ics.contains("secret"),
        "the passcode is only there when asked for"
    );
    assert!(ev["description"].as_str().unwrap().contains("passcode"));

    // With the passcode (the owner's choice), in Russian.
    let (status, ics) = call(
        &server,
        "GET",
        &format!("/api/v1/meetings/{id}/invite.ics?passcode=secret%2042&lang=ru"),
        Some(&token),
        Value::Null,
    )
    .await?;
    ensure!(
        status == 200,
        "invite.ics with passcode answered {status}: {ics}"
    );
    check_framing(&ics)?;
    let ev = parse_with_python("ics", ics.as_bytes())?["events"][0].clone();
    let description = ev["description"].as_str().unwrap();
    assert!(
        description.contains("Код доступа: secret 42"),
        "{description}"
    );
    assert!(
        description.contains("Подключиться к встрече"),
        "{description}"
    );
    assert_eq!(ev["url"], format!("{link}?pwd=secret+42"));

    // A wrong passcode is not put in an invitation.
    let (status, body) = call(
        &server,
        "GET",
        &format!("/api/v1/meetings/{id}/invite.ics?passcode=guess"),
        Some(&token),
        Value::Null,
    )
    .await?;
    assert_eq!(status, 400, "{body}");

    // A change bumps SEQUENCE, so calendars replace the event.
    api(
        &server,
        "PATCH",
        &format!("/meetings/{id}"),
        Some(&token),
        json!({"duration_minutes": 60}),
    )
    .await?;
    let (_, ics) = call(
        &server,
        "GET",
        &format!("/api/v1/meetings/{id}/invite.ics"),
        Some(&token),
        Value::Null,
    )
    .await?;
    let ev = parse_with_python("ics", ics.as_bytes())?["events"][0].clone();
    assert_eq!(ev["sequence"], 1);
    assert_eq!(ev["dtend"], STARTS_AT + 60 * 60);

    // An instant meeting has no invitation, and stays out of the feed.
    let instant = api(
        &server,
        "POST",
        "/meetings",
        Some(&token),
        json!({"title": "Right now"}),
    )
    .await?;
    let (status, _) = call(
        &server,
        "GET",
        &format!(
            "/api/v1/meetings/{}/invite.ics",
            instant["id"].as_str().unwrap()
        ),
        Some(&token),
        Value::Null,
    )
    .await?;
    assert_eq!(status, 400);

    // No SMTP relay on this server: email invitations say so.
    let (status, body) = call(
        &server,
        "POST",
        &format!("/api/v1/meetings/{id}/invites"),
        Some(&token),
        json!({"emails": ["ann@b.example"]}),
    )
    .await?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("smtp_not_configured"), "{body}");

    // The private feed.
    let status = api(&server, "GET", "/auth/calendar", Some(&token), Value::Null).await?;
    assert_eq!(status["active"], false);
    let feed = api(
        &server,
        "POST",
        "/auth/calendar",
        Some(&token),
        json!({"lang": "ru"}),
    )
    .await?;
    let url = feed["url"].as_str().context("feed url")?;
    let feed_token = feed["token"].as_str().context("feed token")?;
    assert_eq!(feed_token.len(), 43, "256 bits in URL-safe base64");
    let path = url
        .strip_prefix("https://meet.example.org")
        .context("the feed URL is under the public URL")?;
    let (status, ics) = call(&server, "GET", path, None, Value::Null).await?;
    ensure!(status == 200, "the feed answered {status}: {ics}");
    check_framing(&ics)?;
    let parsed = parse_with_python("ics", ics.as_bytes())?;
    assert_eq!(parsed["calname"], "Встречи Veche");
    let events = parsed["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "only the scheduled meeting: {events:?}");
    assert_eq!(events[0]["uid"], format!("{id}@veche"));
    assert!(!ics.contains("secret"), "a feed never carries a passcode");
    let status = api(&server, "GET", "/auth/calendar", Some(&token), Value::Null).await?;
    assert_eq!(status["active"], true);

    // A wrong token, one of the wrong shape, and after a reset the old one: 404.
    let (status, _) = call(
        &server,
        "GET",
        &format!("/calendar/{}.ics", "A".repeat(43)),
        None,
        Value::Null,
    )
    .await?;
    assert_eq!(status, 404);
    let (status, _) = call(&server, "GET", "/calendar/short.ics", None, Value::Null).await?;
    assert_eq!(status, 404);
    let again = api(&server, "POST", "/auth/calendar", Some(&token), Value::Null).await?;
    let (status, _) = call(&server, "GET", path, None, Value::Null).await?;
    assert_eq!(status, 404, "a reset retires the old URL");
    let new_path = again["url"]
        .as_str()
        .and_then(|u| u.strip_prefix("https://meet.example.org"))
        .context("new feed url")?;
    let (status, _) = call(&server, "GET", new_path, None, Value::Null).await?;
    assert_eq!(status, 200);
    let (status, _) = call(
        &server,
        "DELETE",
        "/api/v1/auth/calendar",
        Some(&token),
        Value::Null,
    )
    .await?;
    assert_eq!(status, 204);
    let (status, _) = call(&server, "GET", new_path, None, Value::Null).await?;
    assert_eq!(status, 404, "a feed turned off is gone");
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_email_invites_reach_a_real_smtp_server() -> anyhow::Result<()> {
    let smtpd = Smtpd::start()?;
    let smtp_url = format!("smtp://{}", smtpd.addr);
    let server = Server::start_with(&[
        "--public-url",
        "https://meet.example.org",
        "--smtp-url",
        &smtp_url,
        "--smtp-from",
        "Veche <meet@veche.test>",
        "--invite-max-per-hour",
        "3",
    ])
    .await?;
    let (token, meeting) = owner_and_meeting(&server).await?;
    let id = meeting["id"].as_str().context("id")?;

    // Refused before anything is queued: a bad address.
    let (status, body) = call(
        &server,
        "POST",
        &format!("/api/v1/meetings/{id}/invites"),
        Some(&token),
        json!({"emails": ["ann@b.example", "not an address"]}),
    )
    .await?;
    assert_eq!(status, 400, "{body}");

    let queued = api(
        &server,
        "POST",
        &format!("/meetings/{id}/invites"),
        Some(&token),
        json!({"emails": ["Ann@B.example", "bob@b.example", "ann@b.example"],
               "passcode": "secret 42", "lang": "ru"}),
    )
    .await?;
    let invites = queued["invites"].as_array().context("invites")?;
    assert_eq!(invites.len(), 2, "one per distinct address: {invites:?}");
    assert!(invites.iter().all(|i| i["status"] == "pending"));

    let mails = smtpd.wait_for(2).await?;
    let mut rcpts: Vec<&str> = mails
        .iter()
        .flat_map(|m| m.to.iter().map(String::as_str))
        .collect();
    rcpts.sort();
    assert_eq!(rcpts, ["ann@b.example", "bob@b.example"]);
    for mail in &mails {
        assert_eq!(mail.from, "meet@veche.test");
        let parsed = parse_with_python("eml", &mail.data)?;
        assert_eq!(parsed["subject"], "Приглашение: Планёрка, weekly; sync");
        assert!(parsed["from"].as_str().unwrap().contains("meet@veche.test"));
        assert_eq!(parsed["calendar_method"], "REQUEST");
        assert_eq!(parsed["filename"], "invite.ics");
        assert_eq!(parsed["method"], "REQUEST");
        let body = parsed["body"].as_str().context("a text part")?;
        let link = format!("https://meet.example.org/j/{id}?pwd=secret+42");
        assert!(body.contains(&link), "{body}");
        assert!(body.contains("Olga Petrova приглашает вас"), "{body}");
        assert!(
            body.contains("каждую неделю с 2030-01-07 09:30 UTC"),
            "{body}"
        );
        let ev = &parsed["events"][0];
        assert_eq!(ev["url"], link.as_str());
        assert_eq!(ev["dtstart"], STARTS_AT);
        assert_eq!(ev["rrule"], "FREQ=WEEKLY");
        assert_eq!(ev["organizer"], "mailto:olga@a.example");
    }

    // The log shows them sent, without their messages.
    let deadline = Instant::now() + WAIT;
    loop {
        let log = api(
            &server,
            "GET",
            &format!("/meetings/{id}/invites"),
            Some(&token),
            Value::Null,
        )
        .await?;
        let list = log["invites"].as_array().context("invites")?;
        if list.len() == 2 && list.iter().all(|i| i["status"] == "sent") {
            assert!(list.iter().all(|i| i.get("message").is_none()));
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "invitations not marked sent: {log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Eight at once, one address each, with one left of the hourly allowance of 3: the
    // count and the queueing are one step, so exactly one gets through.
    let paths = format!("/api/v1/meetings/{id}/invites");
    let racers = (0..8).map(|i| {
        let body = json!({"emails": [format!("racer{i}@b.example")]});
        call(&server, "POST", &paths, Some(&token), body)
    });
    let answers = futures_util::future::join_all(racers).await;
    let mut statuses = answers
        .into_iter()
        .map(|a| a.map(|(status, _)| status))
        .collect::<anyhow::Result<Vec<_>>>()?;
    statuses.sort();
    assert_eq!(statuses, [202, 429, 429, 429, 429, 429, 429, 429]);
    let mails = smtpd.wait_for(3).await?;
    assert_eq!(mails.len(), 3, "{mails:?}");

    // Two more would pass the hourly allowance of 3.
    let (status, body) = call(
        &server,
        "POST",
        &format!("/api/v1/meetings/{id}/invites"),
        Some(&token),
        json!({"emails": ["cat@b.example", "dan@b.example"]}),
    )
    .await?;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too_many_invites"), "{body}");
    server.pass();
    Ok(())
}
