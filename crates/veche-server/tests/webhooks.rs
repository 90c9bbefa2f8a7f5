//! Signed webhooks through the real binary, to a real HTTP receiver on loopback started by
//! the test: every event of a meeting arrives once, signed (checked here with the test's own
//! HMAC-SHA256), after the retries a receiver answering 500 causes; a receiver that never
//! answers does not slow joins, leaves or API calls, and its deliveries time out; a
//! pending delivery survives `kill -9`; with private addresses refused, neither a literal
//! loopback URL nor a name resolving to loopback is delivered to.

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::Server;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use veche_proto::{ClientMessage, PROTOCOL_VERSION, ServerMessage};

const WAIT: Duration = Duration::from_secs(20);
const PW: &str = "correct horse battery";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    delivery: String,
    event_id: String,
    event_type: String,
    attempt: u32,
    /// The signature matched the body under the endpoint's secret, within 5 minutes.
    signed: bool,
    answered: u16,
    body: Value,
    /// The `Veche-Signature` header and the body as they came, to check against other secrets.
    signature: String,
    raw: Vec<u8>,
}

/// A webhook receiver on a loopback port: answers 500 to the first `fail_first` attempts
/// of each delivery (or to all while `always_fail`), 200 after.
#[derive(Clone, Default)]
struct Receiver {
    secret: Arc<Mutex<String>>,
    got: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<AtomicUsize>,
    always_fail: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(fail_first: usize) -> anyhow::Result<(Receiver, SocketAddr)> {
        let r = Receiver::default();
        r.fail_first.store(fail_first, Ordering::Relaxed);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { state.receive(&headers, &body) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((r, addr))
    }

    fn receive(&self, headers: &HeaderMap, body: &[u8]) -> StatusCode {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let secret = self.secret.lock().unwrap().clone();
        let signed = signature_ok(&secret, &header("veche-signature"), body);
        let delivery = header("veche-delivery");
        let mut got = self.got.lock().unwrap();
        let before = got.iter().filter(|g| g.delivery == delivery).count();
        let fail = self.always_fail.load(Ordering::Relaxed)
            || before < self.fail_first.load(Ordering::Relaxed);
        let answered = if fail { 500 } else { 200 };
        got.push(Received {
            delivery,
            event_id: header("veche-event-id"),
            event_type: header("veche-event"),
            attempt: header("veche-attempt").parse().unwrap_or(0),
            signed,
            answered,
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
            signature: header("veche-signature"),
            raw: body.to_vec(),
        });
        StatusCode::from_u16(answered).unwrap()
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for what was received.
    async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&[Received]) -> bool,
    ) -> anyhow::Result<Vec<Received>> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.got();
            if pred(&got) {
                return Ok(got);
            }
            if Instant::now() > deadline {
                bail!("receiver: no {what}; got {got:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The receiver's own check, written from docs/webhooks.md: `t=` and every `v1=` from the
/// header, HMAC-SHA256 under the secret of `t`, `.` and the body, equal to one of the `v1`.
fn signature_ok(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value.to_owned()),
            Some(("v1", value)) => v1.push(value.to_owned()),
            _ => {}
        }
    }
    let Some(t) = t else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if t.parse::<i64>().map_or(true, |t| (now - t).abs() > 300) {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    v1.contains(&expected)
}

/// A receiver that accepts connections and never answers; counts them.
async fn hanging_receiver() -> anyhow::Result<(Arc<AtomicUsize>, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            held.push(stream);
        }
    });
    Ok((accepted, addr))
}

async fn api(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let json = (!body.is_null()).then(|| body.to_string());
    let (status, text) = server
        .request(method, &format!("/api/v1{path}"), token, json.as_deref())
        .await?;
    ensure!(
        (200..300).contains(&status),
        "{method} {path} answered {status}: {text}"
    );
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// An organisation with its admin (who owns a meeting) and a member; their tokens.
struct Org {
    id: String,
    admin: String,
    member: String,
    meeting: String,
}

async fn org(server: &Server) -> anyhow::Result<Org> {
    let boss = api(
        server,
        "POST",
        "/auth/signup",
        None,
        json!({"email": "boss@a.example", "password": PW, "name": "Boss", "org_name": "A"}),
    )
    .await?;
    let admin = boss["token"].as_str().context("token")?.to_owned();
    let id = boss["org"]["id"].as_str().context("org id")?.to_owned();
    api(
        server,
        "POST",
        &format!("/orgs/{id}/members"),
        Some(&admin),
        json!({"email": "mia@a.example", "name": "Mia", "password": PW}),
    )
    .await?;
    let login = api(
        server,
        "POST",
        "/auth/login",
        None,
        json!({"email": "mia@a.example", "password": PW}),
    )
    .await?;
    let member = login["token"].as_str().context("token")?.to_owned();
    let m = api(
        server,
        "POST",
        "/meetings",
        Some(&admin),
        json!({"title": "Weekly"}),
    )
    .await?;
    Ok(Org {
        id,
        admin,
        member,
        meeting: m["id"].as_str().context("meeting id")?.to_owned(),
    })
}

/// Registers `url` for every event; returns the endpoint's id and secret.
async fn register(server: &Server, org: &Org, url: &str) -> anyhow::Result<(String, String)> {
    let e = api(
        server,
        "POST",
        &format!("/orgs/{}/webhooks", org.id),
        Some(&org.admin),
        json!({
            "url": url,
            "events": ["meeting.started", "meeting.ended", "participant.joined", "participant.left"],
            "description": "test receiver",
        }),
    )
    .await?;
    Ok((
        e["id"].as_str().context("id")?.to_owned(),
        e["secret"].as_str().context("secret")?.to_owned(),
    ))
}

/// A signalling connection that joins and leaves.
struct Peer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Peer {
    /// Connects with `token` and joins `room`; returns once `joined` arrived, with how long
    /// that took from the connection attempt.
    async fn join(server: &Server, token: &str, room: &str) -> anyhow::Result<(Peer, Duration)> {
        let started = Instant::now();
        let mut request = server.ws_url().into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        let mut peer = Peer { ws };
        let join = ClientMessage::Join {
            version: PROTOCOL_VERSION,
            room: room.into(),
            name: "Someone".into(),
            passcode: None,
            resume: None,
            e2ee: false,
            require_e2ee: false,
        };
        peer.ws.send(Message::Text(join.to_json().into())).await?;
        loop {
            let frame = tokio::time::timeout(WAIT, peer.ws.next())
                .await
                .context("waiting for joined")?
                .context("connection closed before joined")??;
            if let Message::Text(text) = frame {
                match ServerMessage::parse(text.as_str())? {
                    ServerMessage::Joined { .. } => return Ok((peer, started.elapsed())),
                    ServerMessage::Error { code, message, .. } => {
                        bail!("join refused: {code:?} {message}")
                    }
                    _ => {}
                }
            }
        }
    }

    /// Sends `leave` and waits for the server to close; returns how long that took.
    async fn leave(mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.ws
            .send(Message::Text(ClientMessage::Leave.to_json().into()))
            .await?;
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .context("waiting for the close after leave")?
            {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                    return Ok(started.elapsed());
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

async fn deliveries(server: &Server, org: &Org, endpoint: &str) -> anyhow::Result<Vec<Value>> {
    let log = api(
        server,
        "GET",
        &format!("/orgs/{}/webhooks/{endpoint}/deliveries?limit=500", org.id),
        Some(&org.admin),
        Value::Null,
    )
    .await?;
    log["deliveries"]
        .as_array()
        .cloned()
        .context("no deliveries array")
}

const FAST_RETRIES: [&str; 8] = [
    "--webhook-retry-base-ms",
    "100",
    "--webhook-retry-max-ms",
    "400",
    "--reattach-grace-ms",
    "0",
    "--webhook-timeout-ms",
    "2000",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_arrives_once_signed_after_retries() -> anyhow::Result<()> {
    const FAILURES: usize = 2;
    let (receiver, addr) = Receiver::start(FAILURES).await?;
    let mut flags = FAST_RETRIES.to_vec();
    flags.extend(["--webhook-max-attempts", "5"]);
    let server = Server::start_with(&flags).await?;
    let org = org(&server).await?;
    let (endpoint, secret) = register(&server, &org, &format!("http://{addr}/hook")).await?;
    ensure!(
        secret.starts_with("vwhsec_") && secret.len() > 60,
        "{secret}"
    );
    *receiver.secret.lock().unwrap() = secret;
    // The secret is shown once: the list does not carry it.
    let list = api(
        &server,
        "GET",
        &format!("/orgs/{}/webhooks", org.id),
        Some(&org.admin),
        Value::Null,
    )
    .await?;
    ensure!(list["endpoints"][0]["id"] == endpoint.as_str(), "{list}");
    ensure!(!list.to_string().contains("vwhsec_"), "{list}");
    // A member of the organisation may not see or add endpoints.
    let (status, _) = server
        .request(
            "GET",
            &format!("/api/v1/orgs/{}/webhooks", org.id),
            Some(&org.member),
            None,
        )
        .await?;
    ensure!(status == 403, "a member listing endpoints got {status}");

    let (host, _) = Peer::join(&server, &org.admin, &org.meeting).await?;
    let (mia, _) = Peer::join(&server, &org.member, &org.meeting).await?;
    mia.leave().await?;
    host.leave().await?;

    // Six events: started, two joins, two leaves, ended; each answered 500 twice first.
    let want = [
        ("meeting.started", 1),
        ("participant.joined", 2),
        ("participant.left", 2),
        ("meeting.ended", 1),
    ];
    let got = receiver
        .wait_for("six accepted deliveries", |g| {
            g.iter().filter(|r| r.answered == 200).count() >= 6
        })
        .await?;
    // Anything more would come now, so give it a moment.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = {
        let late = receiver.got();
        ensure!(
            late.len() == got.len(),
            "more requests after the last one: {late:#?}"
        );
        late
    };
    ensure!(got.iter().all(|r| r.signed), "a bad signature: {got:#?}");
    let mut by_delivery: HashMap<&str, Vec<&Received>> = HashMap::new();
    for r in &got {
        by_delivery.entry(&r.delivery).or_default().push(r);
    }
    ensure!(
        by_delivery.len() == 6,
        "{} deliveries: {got:#?}",
        by_delivery.len()
    );
    for (id, tries) in &by_delivery {
        let attempts: Vec<u32> = tries.iter().map(|r| r.attempt).collect();
        let answers: Vec<u16> = tries.iter().map(|r| r.answered).collect();
        ensure!(
            attempts == [1, 2, 3] && answers == [500, 500, 200],
            "delivery {id}: attempts {attempts:?}, answers {answers:?}"
        );
        ensure!(
            tries.iter().all(|r| r.event_id == tries[0].event_id
                && r.body == tries[0].body
                && r.body["id"] == r.event_id.as_str()),
            "a retry changed the event: {tries:#?}"
        );
    }
    for (kind, n) in want {
        let accepted: Vec<&Received> = got
            .iter()
            .filter(|r| r.answered == 200 && r.event_type == kind)
            .collect();
        ensure!(
            accepted.len() == n,
            "{kind}: {} accepted, want {n}",
            accepted.len()
        );
        for r in &accepted {
            ensure!(r.body["type"] == kind && r.body["org_id"] == org.id.as_str());
            ensure!(
                r.body["data"]["meeting"]["id"] == org.meeting.as_str(),
                "{}",
                r.body
            );
        }
    }
    // Each event id is accepted once.
    let mut ids: Vec<&str> = got
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.event_id.as_str())
        .collect();
    ids.sort();
    ids.dedup();
    ensure!(ids.len() == 6, "{ids:?}");
    let joined: Vec<&str> = got
        .iter()
        .filter(|r| r.answered == 200 && r.event_type == "participant.joined")
        .filter_map(|r| r.body["data"]["participant"]["email"].as_str())
        .collect();
    ensure!(
        joined.contains(&"boss@a.example") && joined.contains(&"mia@a.example"),
        "{joined:?}"
    );

    // The delivery log the admin sees says the same.
    let log = deliveries(&server, &org, &endpoint).await?;
    ensure!(log.len() == 6, "{log:#?}");
    for d in &log {
        ensure!(
            d["status"] == "delivered" && d["attempts"] == 3 && d["last_status"] == 200,
            "{d}"
        );
        ensure!(
            d["delivered_at_ms"].as_i64() >= d["created_at_ms"].as_i64(),
            "{d}"
        );
    }
    ensure!(server.metric("veche_webhook_deliveries_total").await? == 6);
    ensure!(server.metric("veche_webhook_failed_attempts_total").await? == 12);
    ensure!(server.metric("veche_webhook_events_dropped_total").await? == 0);
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_does_not_slow_meetings() -> anyhow::Result<()> {
    let (accepted, addr) = hanging_receiver().await?;
    let server = Server::start_with(&[
        "--webhook-timeout-ms",
        "1000",
        "--webhook-retry-base-ms",
        "100",
        "--webhook-max-attempts",
        "2",
        "--webhook-concurrency",
        "4",
        "--reattach-grace-ms",
        "0",
    ])
    .await?;
    let org = org(&server).await?;
    let (endpoint, _) = register(&server, &org, &format!("http://{addr}/hook")).await?;

    // Each round starts and ends the meeting: four events, every delivery of which hangs
    // for the whole timeout. Were a join, a leave or an API call waiting on one, it would
    // take at least the 1 s timeout.
    let limit = Duration::from_millis(500);
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let (peer, joined) = Peer::join(&server, &org.admin, &org.meeting).await?;
        let api_started = Instant::now();
        api(&server, "GET", "/meetings", Some(&org.admin), Value::Null).await?;
        deliveries(&server, &org, &endpoint).await?;
        let api_took = api_started.elapsed();
        let left = peer.leave().await?;
        eprintln!("round {round}: join {joined:?}, two API calls {api_took:?}, leave {left:?}");
        for took in [joined, api_took, left] {
            worst = worst.max(took);
        }
        ensure!(
            joined < limit && api_took < limit && left < limit,
            "round {round} was slow: join {joined:?}, API {api_took:?}, leave {left:?}"
        );
    }
    eprintln!("slowest join, leave or API pair with a hanging receiver: {worst:?}");
    ensure!(
        accepted.load(Ordering::Relaxed) > 0,
        "the receiver was never even connected to"
    );

    // The first deliveries time out twice and are given up (retries queue behind the
    // first attempts of older ones: 20 attempts, 4 at a time, 1 s each, then the retries).
    let deadline = Instant::now() + WAIT;
    let failed = loop {
        // The events are written to the log behind the meeting, so the last may still come.
        let log = deliveries(&server, &org, &endpoint).await?;
        ensure!(log.len() <= 20, "5 rounds x 4 events, got {}", log.len());
        let failed: Vec<Value> = log
            .iter()
            .filter(|d| d["status"] == "failed")
            .cloned()
            .collect();
        if log.len() == 20 && !failed.is_empty() {
            break failed;
        }
        ensure!(
            Instant::now() < deadline,
            "{} deliveries, none failed in time",
            log.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for d in &failed {
        ensure!(d["attempts"] == 2, "{d}");
        ensure!(d["last_status"].is_null(), "{d}");
        let error = d["last_error"].as_str().unwrap_or("");
        ensure!(error.contains("no answer within 1000 ms"), "{d}");
    }
    ensure!(
        server
            .metric("veche_webhook_deliveries_failed_total")
            .await?
            >= 1
    );
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delivery_survives_kill_9() -> anyhow::Result<()> {
    let (receiver, addr) = Receiver::start(0).await?;
    receiver.always_fail.store(true, Ordering::Relaxed);
    let mut flags = FAST_RETRIES.to_vec();
    flags.extend(["--webhook-max-attempts", "1000"]);
    let mut server = Server::start_with(&flags).await?;
    let org = org(&server).await?;
    let (endpoint, secret) = register(&server, &org, &format!("http://{addr}/hook")).await?;
    *receiver.secret.lock().unwrap() = secret;
    let test = api(
        &server,
        "POST",
        &format!("/orgs/{}/webhooks/{endpoint}/test", org.id),
        Some(&org.admin),
        Value::Null,
    )
    .await?;
    let event_id = test["event_id"].as_str().context("event id")?.to_owned();
    receiver
        .wait_for("two failed attempts", |g| g.len() >= 2)
        .await?;
    server.kill_9_and_restart().await?;
    let before = receiver.got().len();
    receiver.always_fail.store(false, Ordering::Relaxed);
    let got = receiver
        .wait_for("the test event accepted after the restart", |g| {
            g.iter().any(|r| r.answered == 200)
        })
        .await?;
    let accepted: Vec<&Received> = got.iter().filter(|r| r.answered == 200).collect();
    ensure!(accepted.len() == 1, "{accepted:#?}");
    let r = accepted[0];
    ensure!(
        r.event_type == "webhook.test" && r.event_id == event_id && r.signed,
        "{r:#?}"
    );
    ensure!(
        got.len() > before,
        "nothing was attempted after the restart"
    );
    // Counted across the restart (one cut short by the kill may be missing from the count).
    ensure!(
        r.attempt as usize >= before && r.attempt as usize <= got.len(),
        "attempt {} of {} requests, {before} before the restart",
        r.attempt,
        got.len()
    );
    let log = deliveries(&server, &org, &endpoint).await?;
    ensure!(
        log.len() == 1 && log[0]["status"] == "delivered" && log[0]["event_type"] == "webhook.test",
        "{log:#?}"
    );
    server.pass();
    Ok(())
}

/// With private addresses refused, a literal one is refused at registration, and a name
/// that resolves only to loopback is never connected to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_can_be_refused() -> anyhow::Result<()> {
    let (receiver, addr) = Receiver::start(0).await?;
    let mut flags = FAST_RETRIES.to_vec();
    flags.extend(["--webhook-private-addresses", "false"]);
    let server = Server::start_with(&flags).await?;
    let org = org(&server).await?;
    let body = json!({"url": format!("http://{addr}/hook"), "events": ["meeting.started"]});
    let (status, text) = server
        .request(
            "POST",
            &format!("/api/v1/orgs/{}/webhooks", org.id),
            Some(&org.admin),
            Some(&body.to_string()),
        )
        .await?;
    ensure!(
        status == 400 && text.contains("non-public address"),
        "{status} {text}"
    );
    let (endpoint, _) = register(
        &server,
        &org,
        &format!("http://localhost:{}/hook", addr.port()),
    )
    .await?;
    api(
        &server,
        "POST",
        &format!("/orgs/{}/webhooks/{endpoint}/test", org.id),
        Some(&org.admin),
        Value::Null,
    )
    .await?;
    let deadline = Instant::now() + WAIT;
    loop {
        let log = deliveries(&server, &org, &endpoint).await?;
        let error = log
            .first()
            .and_then(|d| d["last_error"].as_str())
            .unwrap_or("")
            .to_owned();
        if error.contains("no public address") {
            break;
        }
        ensure!(Instant::now() < deadline, "no refused attempt: {log:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(receiver.got().is_empty(), "{:#?}", receiver.got());
    server.pass();
    Ok(())
}

/// Sends a test delivery to `endpoint` and waits for the receiver to get it.
async fn test_delivery(
    server: &Server,
    org: &Org,
    endpoint: &str,
    receiver: &Receiver,
) -> anyhow::Result<Received> {
    let test = api(
        server,
        "POST",
        &format!("/orgs/{}/webhooks/{endpoint}/test", org.id),
        Some(&org.admin),
        Value::Null,
    )
    .await?;
    let id = test["event_id"].as_str().context("event id")?.to_owned();
    let got = receiver
        .wait_for("the test delivery", |g| g.iter().any(|r| r.event_id == id))
        .await?;
    Ok(got
        .into_iter()
        .find(|r| r.event_id == id)
        .expect("found above"))
}

/// An admin edits an endpoint (what it subscribes to takes effect at once) and rolls its
/// secret: for the overlap asked, deliveries are signed under the new and the previous
/// secret, so the receiver may switch when it likes; a roll without overlap signs with the
/// new one alone. Members cannot; both changes are in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_is_edited_and_its_secret_rolled_without_a_gap() -> anyhow::Result<()> {
    let (receiver, addr) = Receiver::start(0).await?;
    let server = Server::start_with(&FAST_RETRIES).await?;
    let org = org(&server).await?;
    let (endpoint, first) = register(&server, &org, &format!("http://{addr}/hook")).await?;
    *receiver.secret.lock().unwrap() = first.clone();
    let path = format!("/orgs/{}/webhooks/{endpoint}", org.id);

    // Edited: only participant.left from now on.
    let edited = api(
        &server,
        "PATCH",
        &path,
        Some(&org.admin),
        json!({"events": ["participant.left"], "description": "leavers"}),
    )
    .await?;
    ensure!(
        edited["events"] == json!(["participant.left"]) && edited["description"] == "leavers",
        "{edited}"
    );
    for (token, body, want) in [
        (&org.member, json!({"description": "x"}), 403),
        (&org.admin, json!({"events": ["meeting.exploded"]}), 400),
        (&org.admin, json!({"url": "ftp://hooks.example.org/"}), 400),
        (&org.admin, json!({"secret": "mine"}), 400),
    ] {
        let (status, text) = server
            .request(
                "PATCH",
                &format!("/api/v1{path}"),
                Some(token),
                Some(&body.to_string()),
            )
            .await?;
        ensure!(status == want, "PATCH {body}: {status} {text}, not {want}");
    }
    let (peer, _) = Peer::join(&server, &org.admin, &org.meeting).await?;
    peer.leave().await?;
    let got = receiver
        .wait_for("participant.left", |g| {
            g.iter().any(|r| r.event_type == "participant.left")
        })
        .await?;
    // Events reach the outbox in order: by the leave, the start and the join went by.
    let types: Vec<&str> = got.iter().map(|r| r.event_type.as_str()).collect();
    ensure!(
        types == ["participant.left"],
        "delivered after the edit: {types:?}"
    );
    ensure!(got[0].signed, "{:#?}", got[0]);

    // Rolled with an hour's overlap: signed under both.
    let (status, text) = server
        .request(
            "POST",
            &format!("/api/v1{path}/secret"),
            Some(&org.member),
            Some(r#"{"keep_old_hours": 1}"#),
        )
        .await?;
    ensure!(status == 403, "a member rolled the secret: {status} {text}");
    let rolled = api(
        &server,
        "POST",
        &format!("{path}/secret"),
        Some(&org.admin),
        json!({"keep_old_hours": 1}),
    )
    .await?;
    let second = rolled["secret"].as_str().context("secret")?.to_owned();
    ensure!(second.starts_with("vwhsec_") && second != first, "{rolled}");
    ensure!(
        rolled["previous_valid_until"].as_i64().is_some(),
        "{rolled}"
    );
    let r = test_delivery(&server, &org, &endpoint, &receiver).await?;
    ensure!(
        r.signature.matches("v1=").count() == 2
            && signature_ok(&first, &r.signature, &r.raw)
            && signature_ok(&second, &r.signature, &r.raw),
        "not signed under both secrets: {}",
        r.signature
    );

    // Rolled again without overlap: the newest alone signs.
    let rolled = api(
        &server,
        "POST",
        &format!("{path}/secret"),
        Some(&org.admin),
        json!({"keep_old_hours": 0}),
    )
    .await?;
    let third = rolled["secret"].as_str().context("secret")?.to_owned();
    ensure!(rolled["previous_valid_until"].is_null(), "{rolled}");
    let r = test_delivery(&server, &org, &endpoint, &receiver).await?;
    ensure!(
        signature_ok(&third, &r.signature, &r.raw)
            && !signature_ok(&second, &r.signature, &r.raw)
            && !signature_ok(&first, &r.signature, &r.raw),
        "signed with an old secret after a roll without overlap: {}",
        r.signature
    );
    let (status, _) = server
        .request(
            "POST",
            &format!("/api/v1{path}/secret"),
            Some(&org.admin),
            Some(r#"{"keep_old_hours": 1000}"#),
        )
        .await?;
    ensure!(status == 400, "an overlap over a week answered {status}");

    // Both kinds of change are in the audit log.
    for action in ["webhook.update", "webhook.roll_secret"] {
        let audit = api(
            &server,
            "GET",
            &format!("/orgs/{}/audit?action={action}", org.id),
            Some(&org.admin),
            Value::Null,
        )
        .await?;
        ensure!(audit.to_string().contains(&endpoint), "{action}: {audit}");
    }
    server.pass();
    Ok(())
}
