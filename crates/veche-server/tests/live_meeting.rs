//! Live meetings through the real binary: accounts and meetings made over the REST API,
//! joins over the WebSocket with bearer tokens (the browser sends its session cookie the
//! same way). Every host control is tried by each kind of caller — guest, member, co-host,
//! host, organisation admin, operator admin and someone from another organisation — and only
//! the right ones take effect (and reach the audit log). Then: passcodes over the WebSocket
//! with their lockout, the plan's participant cap, and a plan time limit that warns and ends
//! the meeting, with its usage recorded.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::Server;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use veche_proto::{
    ClientMessage, EndReason, ErrorCode, PROTOCOL_VERSION, ParticipantId, Role, ServerMessage,
    TrackKind, WaitReason,
};

const WAIT: Duration = Duration::from_secs(10);

/// One signalling connection that keeps everything it received.
struct Peer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    inbox: Vec<ServerMessage>,
    closed: bool,
    id: Option<ParticipantId>,
}

impl Peer {
    async fn connect(server: &Server, token: Option<&str>) -> anyhow::Result<Peer> {
        let mut request = server.ws_url().into_client_request()?;
        if let Some(t) = token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {t}").parse()?);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Peer {
            ws,
            inbox: Vec::new(),
            closed: false,
            id: None,
        })
    }

    async fn send(&mut self, msg: &ClientMessage) -> anyhow::Result<()> {
        self.ws.send(Message::Text(msg.to_json().into())).await?;
        Ok(())
    }

    async fn join(&mut self, room: &str, name: &str, passcode: Option<&str>) -> anyhow::Result<()> {
        self.send(&ClientMessage::Join {
            version: PROTOCOL_VERSION,
            room: room.into(),
            name: name.into(),
            passcode: passcode.map(str::to_owned),
            resume: None,
            e2ee: false,
            require_e2ee: false,
        })
        .await
    }

    /// Reads until a message matches (returning it) or `timeout` passes (`None`).
    async fn wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&ServerMessage) -> bool,
    ) -> anyhow::Result<Option<ServerMessage>> {
        if let Some(m) = self.inbox.iter().find(|m| pred(m)) {
            return Ok(Some(m.clone()));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.closed {
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(None) | Ok(Some(Err(_))) => {
                    self.closed = true;
                    break;
                }
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                Message::Text(text) => {
                    let msg = ServerMessage::parse(text.as_str())
                        .with_context(|| format!("unparsable server message {text}"))?;
                    if let ServerMessage::Joined { participant_id, .. } = &msg {
                        self.id = Some(*participant_id);
                    }
                    self.inbox.push(msg.clone());
                    if pred(&msg) {
                        return Ok(Some(msg));
                    }
                }
                Message::Close(_) => self.closed = true,
                _ => {}
            }
        }
        Ok(None)
    }

    async fn expect(
        &mut self,
        what: &str,
        pred: impl Fn(&ServerMessage) -> bool,
    ) -> anyhow::Result<ServerMessage> {
        match self.wait_for(WAIT, pred).await? {
            Some(m) => Ok(m),
            None => bail!("no {what}; got {:?}", self.inbox),
        }
    }

    async fn expect_error(&mut self, code: ErrorCode) -> anyhow::Result<()> {
        self.expect(
            &format!("{code:?} error"),
            |m| matches!(m, ServerMessage::Error { code: c, .. } if *c == code),
        )
        .await
        .map(|_| ())
    }

    async fn joined(&mut self) -> anyhow::Result<(ParticipantId, Role)> {
        match self
            .expect("joined", |m| matches!(m, ServerMessage::Joined { .. }))
            .await?
        {
            ServerMessage::Joined {
                participant_id,
                role,
                ..
            } => Ok((participant_id, role)),
            _ => unreachable!("matched above"),
        }
    }

    async fn waiting_id(&mut self, host: &mut Peer) -> anyhow::Result<ParticipantId> {
        self.expect("waiting", |m| matches!(m, ServerMessage::Waiting { .. }))
            .await?;
        // The host learns the waiter's id.
        match host
            .expect("waiting_added", |m| {
                matches!(m, ServerMessage::WaitingAdded { .. })
            })
            .await?
        {
            ServerMessage::WaitingAdded { participant } => {
                // Consume it so the next waiter is found next time.
                host.inbox
                    .retain(|m| !matches!(m, ServerMessage::WaitingAdded { participant: p } if p.id == participant.id));
                Ok(participant.id)
            }
            _ => unreachable!("matched above"),
        }
    }
}

/// The accounts of the matrix, with their API tokens.
struct Accounts {
    host: String,
    member: String,
    cohost: String,
    cohost_email: String,
    org_admin: String,
    operator: String,
    other_org: String,
    org_id: String,
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

async fn login(server: &Server, email: &str, password: &str) -> anyhow::Result<String> {
    let v = api(
        server,
        "POST",
        "/auth/login",
        None,
        json!({"email": email, "password": password}),
    )
    .await?;
    v["token"].as_str().map(str::to_owned).context("no token")
}

async fn accounts(server: &Server) -> anyhow::Result<Accounts> {
    const PW: &str = "correct horse battery";
    let boss = api(
        server,
        "POST",
        "/auth/signup",
        None,
        json!({"email": "boss@a.example", "password": PW, "name": "Boss", "org_name": "A"}),
    )
    .await?;
    let org_admin = boss["token"].as_str().context("token")?.to_owned();
    let org_id = boss["org"]["id"].as_str().context("org id")?.to_owned();
    for who in ["host", "member", "cohost"] {
        api(
            server,
            "POST",
            &format!("/orgs/{org_id}/members"),
            Some(&org_admin),
            json!({"email": format!("{who}@a.example"), "name": who, "password": PW}),
        )
        .await?;
    }
    let other = api(
        server,
        "POST",
        "/auth/signup",
        None,
        json!({"email": "admin@b.example", "password": PW, "name": "Other", "org_name": "B"}),
    )
    .await?;
    // The operator comes from the shell, as in the README.
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
    Ok(Accounts {
        host: login(server, "host@a.example", PW).await?,
        member: login(server, "member@a.example", PW).await?,
        cohost: login(server, "cohost@a.example", PW).await?,
        cohost_email: "cohost@a.example".into(),
        org_admin,
        operator: login(server, "op@veche.example", PW).await?,
        other_org: other["token"].as_str().context("token")?.to_owned(),
        org_id,
    })
}

async fn create_meeting(server: &Server, token: &str, body: Value) -> anyhow::Result<String> {
    let m = api(server, "POST", "/meetings", Some(token), body).await?;
    m["id"].as_str().map(str::to_owned).context("meeting id")
}

/// A host control, what it is aimed at, and how its effect shows.
#[derive(Clone, Copy, Debug)]
enum Action {
    Admit,
    Deny,
    Mute,
    MuteAll,
    AskUnmute,
    Lock,
    Remove,
    MakeCoHost,
    TransferHost,
    EndMeeting,
}

impl Action {
    const ALL: [Action; 10] = [
        Action::Admit,
        Action::Deny,
        Action::Mute,
        Action::MuteAll,
        Action::AskUnmute,
        Action::Lock,
        Action::Remove,
        Action::MakeCoHost,
        Action::TransferHost,
        Action::EndMeeting,
    ];

    fn host_only(self) -> bool {
        matches!(
            self,
            Action::MakeCoHost | Action::TransferHost | Action::EndMeeting
        )
    }

    fn message(self, target: ParticipantId, waiter: ParticipantId) -> ClientMessage {
        match self {
            Action::Admit => ClientMessage::Admit {
                participant_id: waiter,
            },
            Action::Deny => ClientMessage::Deny {
                participant_id: waiter,
            },
            Action::Mute => ClientMessage::Mute {
                participant_id: target,
                kind: TrackKind::Audio,
            },
            Action::MuteAll => ClientMessage::MuteAll {
                allow_self_unmute: false,
            },
            Action::AskUnmute => ClientMessage::AskUnmute {
                participant_id: target,
                kind: TrackKind::Audio,
            },
            Action::Lock => ClientMessage::SetMeeting {
                locked: Some(true),
                allow_self_unmute: None,
            },
            Action::Remove => ClientMessage::Remove {
                participant_id: target,
                bar: true,
            },
            Action::MakeCoHost => ClientMessage::SetRole {
                participant_id: target,
                role: Role::CoHost,
            },
            Action::TransferHost => ClientMessage::TransferHost {
                participant_id: target,
            },
            Action::EndMeeting => ClientMessage::EndMeeting,
        }
    }

    /// Whether the effect reached the target (or the waiter).
    fn took_effect(self, m: &ServerMessage, target: ParticipantId) -> bool {
        match self {
            Action::Admit => matches!(m, ServerMessage::Joined { .. }),
            Action::Deny => matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::Denied,
                    ..
                }
            ),
            Action::Mute | Action::MuteAll => matches!(
                m,
                ServerMessage::MutedByHost {
                    kind: TrackKind::Audio,
                    ..
                }
            ),
            Action::AskUnmute => matches!(m, ServerMessage::UnmuteRequested { .. }),
            Action::Lock => {
                matches!(m, ServerMessage::MeetingUpdated { meeting } if meeting.locked)
            }
            Action::Remove => matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::Barred,
                    ..
                }
            ),
            Action::MakeCoHost => matches!(
                m,
                ServerMessage::RoleChanged { participant_id, role: Role::CoHost } if *participant_id == target
            ),
            Action::TransferHost => matches!(
                m,
                ServerMessage::RoleChanged { participant_id, role: Role::Host } if *participant_id == target
            ),
            Action::EndMeeting => matches!(m, ServerMessage::MeetingEnded { .. }),
        }
    }

    /// The stable audit name, see docs/accounts.md.
    fn audit_name(self) -> &'static str {
        match self {
            Action::Admit => "meeting.admit",
            Action::Deny => "meeting.deny",
            Action::Mute => "meeting.mute",
            Action::MuteAll => "meeting.mute_all",
            Action::AskUnmute => "meeting.ask_unmute",
            Action::Lock => "meeting.lock",
            Action::Remove => "meeting.remove",
            Action::MakeCoHost => "meeting.make_cohost",
            Action::TransferHost => "meeting.transfer_host",
            Action::EndMeeting => "meeting.end",
        }
    }
}

/// The callers of the matrix: name, token (`None`: guest), the role the meeting gives them,
/// and whether they may moderate.
fn callers(a: &Accounts) -> [(&'static str, Option<String>, Role); 7] {
    [
        ("guest", None, Role::Guest),
        ("member", Some(a.member.clone()), Role::Participant),
        ("co-host", Some(a.cohost.clone()), Role::CoHost),
        ("host", Some(a.host.clone()), Role::Host),
        ("org admin", Some(a.org_admin.clone()), Role::CoHost),
        ("operator", Some(a.operator.clone()), Role::CoHost),
        ("other org", Some(a.other_org.clone()), Role::Participant),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_controls_matrix_over_the_real_server() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let a = accounts(&server).await?;
    let started = Instant::now();
    let mut tried = 0;
    let mut allowed_count = std::collections::HashMap::<&str, usize>::new();
    for action in Action::ALL {
        for (caller, token, role) in callers(&a) {
            let meeting = create_meeting(
                &server,
                &a.host,
                json!({"title": "Matrix", "waiting_room": true, "co_hosts": [a.cohost_email]}),
            )
            .await?;
            let mut host = Peer::connect(&server, Some(&a.host)).await?;
            host.join(&meeting, "Hana", None).await?;
            let (_, host_role) = host.joined().await?;
            ensure!(host_role == Role::Host);

            let mut actor_peer = if role == Role::Host {
                None
            } else {
                let mut p = Peer::connect(&server, token.as_deref()).await?;
                p.join(&meeting, caller, None).await?;
                if !role.moderates() {
                    // Everyone but hosts and co-hosts goes through the waiting room.
                    let id = p.waiting_id(&mut host).await?;
                    host.send(&ClientMessage::Admit { participant_id: id })
                        .await?;
                }
                let (_, got) = p.joined().await?;
                ensure!(got == role, "{caller} joined as {got:?}, expected {role:?}");
                Some(p)
            };
            let mut target = Peer::connect(&server, None).await?;
            target.join(&meeting, "Tess", None).await?;
            let tid = target.waiting_id(&mut host).await?;
            host.send(&ClientMessage::Admit {
                participant_id: tid,
            })
            .await?;
            target.joined().await?;
            let mut waiter = Peer::connect(&server, None).await?;
            waiter.join(&meeting, "Wes", None).await?;
            let wid = waiter.waiting_id(&mut host).await?;

            let msg = action.message(tid, wid);
            let actor = actor_peer.as_mut().unwrap_or(&mut host);
            actor.send(&msg).await?;
            let allowed = role == Role::Host || (role.moderates() && !action.host_only());
            let affected = if matches!(action, Action::Admit | Action::Deny) {
                &mut waiter
            } else {
                &mut target
            };
            if allowed {
                affected
                    .expect(&format!("effect of {action:?} by {caller}"), |m| {
                        action.took_effect(m, tid)
                    })
                    .await?;
                *allowed_count.entry(action.audit_name()).or_default() += 1;
            } else {
                let actor = actor_peer.as_mut().unwrap_or(&mut host);
                actor.expect_error(ErrorCode::Forbidden).await?;
                // The refusal came back; an effect would have been sent before it.
                let effect = affected
                    .wait_for(Duration::from_millis(200), |m| action.took_effect(m, tid))
                    .await?;
                ensure!(
                    effect.is_none(),
                    "{action:?} by {caller} was refused but took effect: {effect:?}"
                );
            }
            tried += 1;
            for p in [
                Some(&mut host),
                actor_peer.as_mut(),
                Some(&mut target),
                Some(&mut waiter),
            ]
            .into_iter()
            .flatten()
            {
                let _ = p.ws.close(None).await;
            }
        }
    }
    assert_eq!(tried, 70, "10 host actions x 7 callers");
    println!(
        "host-control matrix: {tried} combinations in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Exactly the allowed actions are in the audit log, with the actor's account.
    let audit = api(
        &server,
        "GET",
        "/admin/audit?limit=1000",
        Some(&a.operator),
        Value::Null,
    )
    .await?;
    let entries = audit["entries"].as_array().context("audit list")?;
    for action in Action::ALL {
        let logged = entries
            .iter()
            .filter(|e| e["action"] == action.audit_name())
            .count();
        // The host's own admissions of the actor and target are audited as well.
        let expected = allowed_count.get(action.audit_name()).copied().unwrap_or(0);
        if matches!(action, Action::Admit) {
            ensure!(
                logged >= expected,
                "{}: {logged} logged < {expected}",
                action.audit_name()
            );
        } else {
            ensure!(
                logged == expected,
                "{}: {logged} logged, {expected} allowed",
                action.audit_name()
            );
        }
    }
    let org_audit = api(
        &server,
        "GET",
        &format!("/orgs/{}/audit", a.org_id),
        Some(&a.org_admin),
        Value::Null,
    )
    .await?;
    ensure!(
        org_audit.to_string().contains("meeting.end"),
        "host actions are visible to the organisation's admin"
    );
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passcodes_guest_rooms_and_the_plan_cap() -> anyhow::Result<()> {
    let server = Server::start_with(&["--lockout-failures", "3"]).await?;
    let a = accounts(&server).await?;
    let meeting = create_meeting(
        &server,
        &a.host,
        json!({"title": "Secret", "passcode": "4321"}),
    )
    .await?;

    // No passcode, then a wrong one: the same connection may try again.
    let mut guest = Peer::connect(&server, None).await?;
    guest.join(&meeting, "Gus", None).await?;
    guest.expect_error(ErrorCode::PasscodeRequired).await?;
    guest.join(&meeting, "Gus", Some("0000")).await?;
    guest.expect_error(ErrorCode::WrongPasscode).await?;
    guest.join(&meeting, "Gus", Some("4321")).await?;
    let (_, role) = guest.joined().await?;
    ensure!(role == Role::Guest);
    // The host needs no passcode.
    let mut host = Peer::connect(&server, Some(&a.host)).await?;
    host.join(&meeting, "Hana", None).await?;
    ensure!(host.joined().await?.1 == Role::Host);

    // Brute force: three wrong passcodes from one address (Gus's success cleared his) lock
    // that address out of the meeting, and the right passcode from it is refused while
    // locked, closing the connection. (Other addresses are only slowed down:
    // tests/abuse_guessing.rs.)
    for (attempt, code) in [
        ErrorCode::WrongPasscode,
        ErrorCode::WrongPasscode,
        ErrorCode::WrongPasscode,
        ErrorCode::LockedOut,
    ]
    .into_iter()
    .enumerate()
    {
        let mut p = Peer::connect(&server, None).await?;
        p.join(&meeting, "Mallory", Some(&format!("99{attempt}9")))
            .await?;
        p.expect_error(code).await?;
    }
    let mut late = Peer::connect(&server, None).await?;
    late.join(&meeting, "Late", Some("4321")).await?;
    late.expect_error(ErrorCode::LockedOut).await?;
    late.wait_for(Duration::from_secs(2), |_| false).await?;
    ensure!(late.closed, "a locked-out joiner is disconnected");

    // An instant guest room still works (guest_rooms defaults to on); its first joiner hosts.
    let mut g1 = Peer::connect(&server, None).await?;
    g1.join("coffee-break", "Ann", None).await?;
    ensure!(g1.joined().await?.1 == Role::Host);

    // The plan cap: the free plan allows 100; the operator lowers it to 2 and the third
    // joiner of a new meeting is refused.
    api(
        &server,
        "PUT",
        "/plans/free",
        Some(&a.operator),
        json!({"name": "Free", "max_participants": 2, "max_duration_minutes": 40,
               "recording": false, "breakout_rooms": false, "e2ee_required": false,
               "large_meetings": false}),
    )
    .await?;
    let capped = create_meeting(&server, &a.host, json!({"title": "Small"})).await?;
    let mut peers = Vec::new();
    for (i, token) in [Some(&a.host), Some(&a.member)].into_iter().enumerate() {
        let mut p = Peer::connect(&server, token.map(String::as_str)).await?;
        p.join(&capped, &format!("P{i}"), None).await?;
        p.joined().await?;
        peers.push(p);
    }
    let mut third = Peer::connect(&server, Some(&a.cohost)).await?;
    third.join(&capped, "Third", None).await?;
    third.expect_error(ErrorCode::RoomFull).await?;
    let message = third
        .inbox
        .iter()
        .find_map(|m| match m {
            ServerMessage::Error { message, .. } => Some(message.clone()),
            _ => None,
        })
        .unwrap_or_default();
    ensure!(message.contains('2'), "the refusal says the cap: {message}");
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_rooms_can_be_turned_off() -> anyhow::Result<()> {
    let server = Server::start_with(&["--guest-rooms", "false"]).await?;
    let mut g = Peer::connect(&server, None).await?;
    g.join("coffee-break", "Ann", None).await?;
    g.expect_error(ErrorCode::MeetingNotFound).await?;
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_time_limit_warns_then_ends_and_usage_is_recorded() -> anyhow::Result<()> {
    // A "minute" of 150 ms: the free plan's 40 minutes last 6 s.
    let server = Server::start_with(&["--meeting-minute-ms", "150"]).await?;
    let a = accounts(&server).await?;
    let meeting = create_meeting(
        &server,
        &a.host,
        json!({"title": "Short", "join_before_host": false}),
    )
    .await?;
    // Join-before-host is off: the member waits until the host arrives.
    let mut member = Peer::connect(&server, Some(&a.member)).await?;
    member.join(&meeting, "Mo", None).await?;
    member
        .expect("host_absent", |m| {
            matches!(
                m,
                ServerMessage::Waiting {
                    reason: WaitReason::HostAbsent,
                    ..
                }
            )
        })
        .await?;
    let mut host = Peer::connect(&server, Some(&a.host)).await?;
    host.join(&meeting, "Hana", None).await?;
    host.joined().await?;
    member.joined().await?;
    let started = Instant::now();
    let ends_at = host.inbox.iter().find_map(|m| match m {
        ServerMessage::Joined { meeting, .. } => meeting.ends_at_ms,
        _ => None,
    });
    ensure!(ends_at.is_some(), "the joiners learn when the meeting ends");

    let mut warned = Vec::new();
    for expected in [5, 1] {
        match member
            .expect("meeting_ending", |m| {
                matches!(m, ServerMessage::MeetingEnding { minutes_left, .. } if *minutes_left == expected)
            })
            .await?
        {
            ServerMessage::MeetingEnding { minutes_left, .. } => {
                warned.push((minutes_left, started.elapsed()))
            }
            _ => unreachable!("matched above"),
        }
    }
    for p in [&mut host, &mut member] {
        p.expect("meeting_ended", |m| {
            matches!(
                m,
                ServerMessage::MeetingEnded {
                    reason: EndReason::TimeLimit
                }
            )
        })
        .await?;
    }
    let ended = started.elapsed();
    println!("time limit: warnings {warned:?}, ended after {ended:?} (limit 6 s)");
    ensure!(
        ended >= Duration::from_millis(5500),
        "ended too early: {ended:?}"
    );
    ensure!(
        warned[0].1 >= Duration::from_millis(5 * 150 * 7) - Duration::from_millis(300),
        "5-minute warning at {:?}",
        warned[0].1
    );

    // The usage record reaches the organisation's usage (written as the meeting ends).
    let deadline = Instant::now() + WAIT;
    loop {
        let usage = api(
            &server,
            "GET",
            &format!("/orgs/{}/usage", a.org_id),
            Some(&a.org_admin),
            Value::Null,
        )
        .await?;
        if usage["usage"]["meetings"].as_i64() == Some(1) {
            ensure!(
                usage["usage"]["participant_minutes"].as_i64() == Some(1),
                "two people for 6 s is under a minute each, rounded up once: {usage}"
            );
            break;
        }
        if Instant::now() > deadline {
            bail!("usage not recorded: {usage}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.pass();
    Ok(())
}
