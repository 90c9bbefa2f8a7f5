//! The operator's dashboard through the real binary: two people join a meeting over the
//! WebSocket, the live figures count them, the host ends it, and the usage series (JSON and
//! CSV, of the service and of the organisation) shows the meeting, its participant-minutes
//! and its peak of two; the audit log's filters find the host's `meeting.end`.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::Server;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use veche_proto::{ClientMessage, PROTOCOL_VERSION, ServerMessage};

const WAIT: Duration = Duration::from_secs(10);
const PW: &str = "correct horse battery";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn api(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let json = (!body.is_null()).then(|| body.to_string());
    let (status, text) = server
        .request(
            method,
            &format!("/api/v1{path}"),
            Some(token),
            json.as_deref(),
        )
        .await?;
    ensure!(
        (200..300).contains(&status),
        "{method} {path} answered {status}: {text}"
    );
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A GET with the whole response (status line and headers included), for the CSV export.
async fn raw_get(server: &Server, path: &str, token: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(server.http).await?;
    let request = format!(
        "GET /api/v1{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n",
        server.http
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response)).await??;
    Ok(String::from_utf8(response)?)
}

async fn join(server: &Server, token: &str, room: &str, name: &str) -> anyhow::Result<Ws> {
    let mut request = server.ws_url().into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    let join = ClientMessage::Join {
        version: PROTOCOL_VERSION,
        room: room.into(),
        name: name.into(),
        passcode: None,
        resume: None,
        e2ee: false,
        require_e2ee: false,
    };
    ws.send(Message::Text(join.to_json().into())).await?;
    wait_for(&mut ws, "joined", |m| {
        matches!(m, ServerMessage::Joined { .. })
    })
    .await?;
    Ok(ws)
}

async fn wait_for(
    ws: &mut Ws,
    what: &str,
    pred: impl Fn(&ServerMessage) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .with_context(|| format!("no {what} in {WAIT:?}"))?;
        match frame {
            Some(Ok(Message::Text(text))) => {
                if pred(&ServerMessage::parse(text.as_str())?) {
                    return Ok(());
                }
            }
            Some(Ok(_)) => {}
            _ => bail!("the connection closed before {what}"),
        }
    }
}

/// Polls `path` until `ok` holds for its answer.
async fn poll(
    server: &Server,
    token: &str,
    path: &str,
    ok: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = api(server, "GET", path, token, Value::Null).await?;
        if ok(&v) {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{path} never showed what was expected: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn create_operator(server: &Server) -> anyhow::Result<()> {
    let mut cli = Command::new(env!("CARGO_BIN_EXE_veche"))
        .args(["admin", "create-user", "--email", "op@veche.example"])
        .args(["--password-stdin", "--role", "admin"])
        .arg("--data-dir")
        .arg(server.data_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    cli.stdin
        .take()
        .context("stdin")?
        .write_all(PW.as_bytes())?;
    ensure!(cli.wait()?.success(), "veche admin create-user failed");
    Ok(())
}

/// The one bucket of `series` with a meeting in it.
fn busy_bucket(series: &Value) -> Option<&Value> {
    series["buckets"]
        .as_array()?
        .iter()
        .find(|b| b["meetings"].as_i64() != Some(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_meeting_that_just_ended() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let boss = api(
        &server,
        "POST",
        "/auth/signup",
        "",
        json!({"email": "boss@a.example", "password": PW, "name": "Boss", "org_name": "A"}),
    )
    .await?;
    let host = boss["token"].as_str().context("token")?.to_owned();
    let org = boss["org"]["id"].as_str().context("org id")?.to_owned();
    api(
        &server,
        "POST",
        &format!("/orgs/{org}/members"),
        &host,
        json!({"email": "mo@a.example", "name": "Mo", "password": PW}),
    )
    .await?;
    let member = api(
        &server,
        "POST",
        "/auth/login",
        "",
        json!({"email": "mo@a.example", "password": PW}),
    )
    .await?["token"]
        .as_str()
        .context("token")?
        .to_owned();
    create_operator(&server)?;
    let op = api(
        &server,
        "POST",
        "/auth/login",
        "",
        json!({"email": "op@veche.example", "password": PW}),
    )
    .await?["token"]
        .as_str()
        .context("token")?
        .to_owned();
    let meeting = api(
        &server,
        "POST",
        "/meetings",
        &host,
        json!({"title": "Weekly"}),
    )
    .await?;
    let meeting = meeting["id"].as_str().context("meeting id")?.to_owned();

    let mut hana = join(&server, &host, &meeting, "Hana").await?;
    let mut mo = join(&server, &member, &meeting, "Mo").await?;

    // Live: the node's one shard has the room and both, and so does the organisation.
    let live = poll(&server, &op, "/admin/dashboard", |v| {
        v["nodes"][0]["participants"].as_u64() == Some(2)
            && v["orgs"][0]["participants"].as_u64() == Some(2)
    })
    .await?;
    ensure!(
        live["nodes"][0]["shards"].as_array().map(Vec::len) >= Some(1),
        "{live}"
    );
    ensure!(live["orgs"][0]["org_id"] == org.as_str(), "{live}");
    ensure!(live["orgs"][0]["meetings"] == 1, "{live}");
    ensure!(live["storage"]["backend"] == "sqlite", "{live}");
    ensure!(
        live["storage"]["database_bytes"].as_u64() > Some(10_000),
        "the SQLite file has the schema at least: {live}"
    );
    ensure!(live["forwarding"]["packets_total"].is_u64(), "{live}");
    ensure!(live["quality"]["graded"].is_u64(), "{live}");

    hana.send(Message::Text(ClientMessage::EndMeeting.to_json().into()))
        .await?;
    for ws in [&mut hana, &mut mo] {
        wait_for(ws, "meeting_ended", |m| {
            matches!(m, ServerMessage::MeetingEnded { .. })
        })
        .await?;
    }

    // The usage series of the service, by hour: one meeting, two people, a minute.
    let all = poll(&server, &op, "/admin/usage/series?bucket=hour", |v| {
        busy_bucket(v).is_some()
    })
    .await?;
    let b = busy_bucket(&all).context("a busy bucket")?;
    ensure!(b["meetings"] == 1, "{all}");
    ensure!(
        b["participant_minutes"] == 1,
        "two people for seconds is under a minute each, rounded up once: {all}"
    );
    ensure!(b["peak_participants"] == 2, "{all}");
    ensure!(
        all["buckets"].as_array().map(Vec::len) == Some(48),
        "48 hours by default: {all}"
    );

    // By day, for the organisation: the same, from its admin and from the operator.
    for (token, path) in [
        (&host, format!("/orgs/{org}/usage/series?bucket=day")),
        (&op, format!("/admin/usage/series?bucket=day&org={org}")),
    ] {
        let v = api(&server, "GET", &path, token, Value::Null).await?;
        let b = busy_bucket(&v).with_context(|| format!("{path}: {v}"))?;
        ensure!(
            b["meetings"] == 1 && b["peak_participants"] == 2,
            "{path}: {v}"
        );
        ensure!(
            v["buckets"].as_array().map(Vec::len) == Some(30),
            "{path}: {v}"
        );
    }
    // Another organisation's series is empty.
    let other = api(
        &server,
        "POST",
        "/auth/signup",
        "",
        json!({"email": "admin@b.example", "password": PW, "name": "B", "org_name": "B"}),
    )
    .await?;
    let other_org = other["org"]["id"].as_str().context("org id")?;
    let v = api(
        &server,
        "GET",
        &format!("/admin/usage/series?bucket=hour&org={other_org}"),
        &op,
        Value::Null,
    )
    .await?;
    ensure!(busy_bucket(&v).is_none(), "{v}");

    // The CSV export: a download with a header row and the meeting's row.
    let csv = raw_get(&server, "/admin/usage/series?bucket=hour&format=csv", &op).await?;
    let (head, body) = csv.split_once("\r\n\r\n").context("headers")?;
    let head = head.to_ascii_lowercase();
    ensure!(head.starts_with("http/1.1 200"), "{head}");
    ensure!(head.contains("content-type: text/csv"), "{head}");
    ensure!(
        head.contains("content-disposition: attachment; filename=\"veche-usage-all-hour-"),
        "{head}"
    );
    let mut lines = body.split("\r\n").filter(|l| !l.is_empty());
    ensure!(
        lines.next() == Some("start_unix,start_utc,meetings,participant_minutes,peak_participants"),
        "{body}"
    );
    let rows: Vec<&str> = lines.collect();
    ensure!(rows.len() == 48, "{body}");
    ensure!(
        rows.iter().filter(|r| r.ends_with(",1,1,2")).count() == 1,
        "{body}"
    );

    // Limits are explicit: more buckets than allowed, or a bucket we do not know, are refused.
    for bad in [
        "/admin/usage/series?bucket=hour&from=0",
        "/admin/usage/series?bucket=week",
        "/admin/usage/series?format=xml",
    ] {
        let (status, text) = server
            .request("GET", &format!("/api/v1{bad}"), Some(&op), None)
            .await?;
        ensure!(
            status == 400 && text.contains("invalid_field"),
            "{bad}: {status} {text}"
        );
    }

    // The audit log's filters: the host's `meeting.end` by action, actor and organisation.
    let ended = api(
        &server,
        "GET",
        &format!("/admin/audit?action=meeting.&actor=BOSS@a&org={org}"),
        &op,
        Value::Null,
    )
    .await?;
    let entries = ended["entries"].as_array().context("entries")?;
    // The boss created the meeting and ended it: both, newest first, and nothing else.
    let actions: Vec<_> = entries.iter().map(|e| e["action"].as_str()).collect();
    ensure!(
        actions == [Some("meeting.end"), Some("meeting.create")],
        "{ended}"
    );
    let none = api(
        &server,
        "GET",
        &format!("/orgs/{org}/audit?action=meeting.&since=0&until=1"),
        &host,
        Value::Null,
    )
    .await?;
    ensure!(
        none["entries"].as_array().is_some_and(Vec::is_empty),
        "{none}"
    );
    server.pass();
    Ok(())
}
