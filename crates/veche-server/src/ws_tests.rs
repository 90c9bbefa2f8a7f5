//! Session tests over in-memory channels and a fake SFU, under tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, close_code};
use futures_channel::mpsc as fmpsc;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use veche_proto::{ClientMessage, ErrorCode, ParticipantId, ServerMessage};
use veche_sfu::{Connection, SfuMetrics};

use super::{End, Session, Timers};
use crate::config::WsLimits;
use crate::reattach::Places;
use crate::sockets::SessionEnd;
use crate::state::{SfuApi, WsStats};

const ID: ParticipantId = 7;
/// A second connection's own participant (reattach tests).
const OTHER: ParticipantId = 8;

#[derive(Default)]
struct FakeSfu {
    sent: Mutex<Vec<ClientMessage>>,
    joined: Mutex<Vec<veche_sfu::JoinRequest>>,
    disconnected: Mutex<Vec<ParticipantId>>,
}

impl SfuApi for FakeSfu {
    fn connect(&self) -> Connection {
        unreachable!("the harness builds the connection itself")
    }
    fn send(&self, id: ParticipantId, msg: ClientMessage) {
        assert_eq!(id, ID);
        self.sent.lock().unwrap().push(msg);
    }
    fn join(&self, id: ParticipantId, request: veche_sfu::JoinRequest) {
        assert!(id == ID || id == OTHER, "join for {id}");
        self.joined.lock().unwrap().push(request);
    }
    fn disconnect(&self, id: ParticipantId) {
        self.disconnected.lock().unwrap().push(id);
    }
    fn metrics(&self) -> SfuMetrics {
        SfuMetrics::default()
    }
}

const LIMITS: WsLimits = WsLimits {
    max_message_bytes: 1024,
    max_messages_per_sec: 10,
    message_burst: 10,
    max_connections_per_ip: 100,
    reattach_grace: std::time::Duration::from_secs(30),
    reattach_replay_bytes: 1 << 20,
};

struct Harness {
    client_tx: fmpsc::UnboundedSender<Result<Message, axum::Error>>,
    client_rx: fmpsc::UnboundedReceiver<Message>,
    events: mpsc::Sender<ServerMessage>,
    sfu: Arc<FakeSfu>,
    stats: Arc<WsStats>,
    shutdown: watch::Sender<bool>,
    ended: watch::Sender<Option<SessionEnd>>,
    task: JoinHandle<End>,
}

impl Harness {
    fn start() -> Harness {
        Harness::start_with(Arc::default(), ID)
    }

    /// A session whose own (fresh) participant is `id`, sharing `places` with others.
    fn start_with(places: Arc<Places>, id: ParticipantId) -> Harness {
        let (client_tx, server_rx) = fmpsc::unbounded();
        let (server_tx, client_rx) = fmpsc::unbounded();
        let (events, events_rx) = mpsc::channel(16);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (ended, ended_rx) = watch::channel(None);
        let sfu = Arc::new(FakeSfu::default());
        let stats = Arc::new(WsStats::default());
        let conn = Connection {
            id,
            events: events_rx,
        };
        let task = {
            let sfu = Arc::clone(&sfu);
            let stats = Arc::clone(&stats);
            tokio::spawn(async move {
                let gate = crate::gate::JoinGate::guest_rooms_only();
                let session = Session {
                    sfu: sfu.as_ref(),
                    gate: &gate,
                    identity: crate::gate::Identity {
                        user: None,
                        ip: Some("192.0.2.9".parse().unwrap()),
                        token: None,
                    },
                    limits: LIMITS,
                    timers: Timers::default(),
                    stats: &stats,
                    ended: ended_rx,
                    turn: None,
                    places: places.as_ref(),
                };
                session
                    .run(server_tx, server_rx, conn, shutdown_rx, || {})
                    .await
            })
        };
        Harness {
            client_tx,
            client_rx,
            events,
            sfu,
            stats,
            shutdown,
            ended,
            task,
        }
    }

    fn send_text(&self, text: &str) {
        self.client_tx
            .unbounded_send(Ok(Message::Text(text.into())))
            .unwrap();
    }

    async fn recv(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(5), self.client_rx.next())
            .await
            .expect("server replied in time")
            .expect("server stream open")
    }

    async fn recv_error(&mut self) -> ErrorCode {
        match self.recv().await {
            Message::Text(t) => match ServerMessage::parse(t.as_str()).unwrap() {
                ServerMessage::Error { code, .. } => code,
                other => panic!("expected an error, got {other:?}"),
            },
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    async fn recv_msg(&mut self) -> ServerMessage {
        match self.recv().await {
            Message::Text(t) => ServerMessage::parse(t.as_str()).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    async fn recv_close(&mut self) -> u16 {
        match self.recv().await {
            Message::Close(Some(frame)) => frame.code,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    async fn end(self) -> (End, Arc<FakeSfu>) {
        let end = tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("session ended")
            .expect("session did not panic");
        (end, self.sfu)
    }
}

const CHAT: &str = r#"{"type":"chat","text":"hi"}"#;

#[tokio::test(start_paused = true)]
async fn forwards_valid_messages_and_events() {
    let mut h = Harness::start();
    h.send_text(CHAT);
    h.events
        .send(ServerMessage::Hand {
            participant_id: 1,
            raised: true,
        })
        .await
        .unwrap();
    let Message::Text(t) = h.recv().await else {
        panic!("expected text")
    };
    assert_eq!(
        t.as_str(),
        r#"{"type":"hand","participant_id":1,"raised":true}"#
    );
    h.client_tx.close_channel();
    let (end, sfu) = h.end().await;
    assert_eq!(end, End::ClientGone);
    assert_eq!(
        *sfu.sent.lock().unwrap(),
        vec![ClientMessage::Chat { text: "hi".into() }]
    );
    assert_eq!(*sfu.disconnected.lock().unwrap(), vec![ID]);
}

#[tokio::test(start_paused = true)]
async fn bad_input_gets_specific_errors_and_the_connection_stays() {
    let mut h = Harness::start();
    h.send_text("{not json");
    assert_eq!(h.recv_error().await, ErrorCode::MalformedMessage);
    h.send_text(r#"{"type":"dance"}"#);
    assert_eq!(h.recv_error().await, ErrorCode::UnknownType);
    h.send_text(r#"{"type":"chat"}"#);
    assert_eq!(h.recv_error().await, ErrorCode::InvalidMessage);
    h.client_tx
        .unbounded_send(Ok(Message::Binary(vec![1, 2, 3].into())))
        .unwrap();
    assert_eq!(h.recv_error().await, ErrorCode::BinaryNotSupported);
    h.send_text(&format!(
        r#"{{"type":"chat","text":"{}"}}"#,
        "x".repeat(LIMITS.max_message_bytes)
    ));
    assert_eq!(h.recv_error().await, ErrorCode::MessageTooLarge);

    // Still connected: a good message gets through.
    h.send_text(CHAT);
    h.client_tx.close_channel();
    assert_eq!(
        h.stats
            .rejected_messages
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );
    let (end, sfu) = h.end().await;
    assert_eq!(end, End::ClientGone);
    assert_eq!(sfu.sent.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_drops_with_one_error_then_recovers() {
    let mut h = Harness::start();
    for _ in 0..15 {
        h.send_text(CHAT);
    }
    assert_eq!(h.recv_error().await, ErrorCode::RateLimited);
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.send_text(CHAT);
    h.client_tx.close_channel();
    let (end, sfu) = h.end().await;
    assert_eq!(end, End::ClientGone);
    // The burst of 10, then one after the refill; the other 5 were dropped.
    assert_eq!(sfu.sent.lock().unwrap().len(), 11);
}

#[tokio::test(start_paused = true)]
async fn a_flood_is_closed() {
    let mut h = Harness::start();
    for _ in 0..200 {
        h.send_text(CHAT);
    }
    assert_eq!(h.recv_error().await, ErrorCode::RateLimited);
    assert_eq!(h.recv_error().await, ErrorCode::RateLimited);
    assert_eq!(h.recv_close().await, close_code::POLICY);
    let (end, sfu) = h.end().await;
    assert_eq!(end, End::RateLimitAbuse);
    assert_eq!(*sfu.disconnected.lock().unwrap(), vec![ID]);
}

#[tokio::test(start_paused = true)]
async fn fatal_error_from_the_sfu_closes() {
    let mut h = Harness::start();
    h.events
        .send(ServerMessage::error(ErrorCode::RoomFull, "room is full"))
        .await
        .unwrap();
    assert_eq!(h.recv_error().await, ErrorCode::RoomFull);
    assert_eq!(h.recv_close().await, close_code::NORMAL);
    assert_eq!(h.end().await.0, End::SfuClosed);
}

#[tokio::test(start_paused = true)]
async fn non_fatal_error_from_the_sfu_keeps_the_connection() {
    let mut h = Harness::start();
    h.events
        .send(ServerMessage::error(ErrorCode::NotJoined, "join first"))
        .await
        .unwrap();
    assert_eq!(h.recv_error().await, ErrorCode::NotJoined);
    h.client_tx.close_channel();
    assert_eq!(h.end().await.0, End::ClientGone);
}

#[tokio::test(start_paused = true)]
async fn sfu_dropping_the_participant_closes() {
    let mut h = Harness::start();
    // Dropping the only sender is what the SFU does when it drops a participant.
    h.events = mpsc::channel(1).0;
    assert_eq!(h.recv_close().await, close_code::NORMAL);
    assert_eq!(h.end().await.0, End::SfuClosed);
}

#[tokio::test(start_paused = true)]
async fn pings_and_drops_a_silent_client() {
    let mut h = Harness::start();
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert!(matches!(h.recv().await, Message::Ping(_)));
    // Answering keeps it alive past the idle timeout.
    h.client_tx
        .unbounded_send(Ok(Message::Pong(Default::default())))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert!(matches!(h.recv().await, Message::Ping(_)));
    assert!(matches!(h.recv().await, Message::Ping(_)));
    // Then silence: dropped once 45 s pass without a frame.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(matches!(h.recv().await, Message::Ping(_)));
    assert_eq!(h.recv_close().await, close_code::AWAY);
    assert_eq!(h.end().await.0, End::IdleTimeout);
}

#[tokio::test(start_paused = true)]
async fn leave_is_forwarded_and_the_socket_closes() {
    let mut h = Harness::start();
    h.send_text(r#"{"type":"leave"}"#);
    // The fake SFU never drops the participant; the grace period ends the session.
    assert_eq!(h.recv_close().await, close_code::NORMAL);
    let (end, sfu) = h.end().await;
    assert_eq!(end, End::Left);
    assert_eq!(*sfu.sent.lock().unwrap(), vec![ClientMessage::Leave]);
}

#[tokio::test(start_paused = true)]
async fn leave_confirmed_by_the_sfu_closes_at_once() {
    let mut h = Harness::start();
    h.send_text(r#"{"type":"leave"}"#);
    tokio::time::sleep(Duration::from_millis(10)).await;
    h.events = mpsc::channel(1).0;
    let start = tokio::time::Instant::now();
    assert_eq!(h.recv_close().await, close_code::NORMAL);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "did not wait for the grace period"
    );
    assert_eq!(h.end().await.0, End::Left);
}

#[tokio::test(start_paused = true)]
async fn shutdown_sends_the_sfu_goodbye_first() {
    let mut h = Harness::start();
    h.events
        .send(ServerMessage::error(ErrorCode::ShuttingDown, "bye"))
        .await
        .unwrap();
    h.shutdown.send(true).unwrap();
    assert_eq!(h.recv_error().await, ErrorCode::ShuttingDown);
    assert!(matches!(h.recv().await, Message::Close(_)));
    assert_eq!(h.end().await.0, End::SfuClosed);
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_even_if_the_sfu_is_silent() {
    let mut h = Harness::start();
    h.shutdown.send(true).unwrap();
    assert_eq!(h.recv_close().await, close_code::AWAY);
    assert_eq!(h.end().await.0, End::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn an_ended_account_session_closes_the_connection_with_its_reason() {
    let mut h = Harness::start();
    h.ended.send_replace(Some(SessionEnd::SignedOut));
    assert_eq!(h.recv_error().await, ErrorCode::SessionEnded);
    assert_eq!(h.recv_close().await, close_code::POLICY);
    let (end, sfu) = h.end().await;
    assert_eq!(end, End::SessionEnded(SessionEnd::SignedOut));
    assert_eq!(*sfu.disconnected.lock().unwrap(), vec![ID]);
}

#[tokio::test(start_paused = true)]
async fn a_socket_error_ends_the_session_quietly() {
    let h = Harness::start();
    h.client_tx
        .unbounded_send(Err(axum::Error::new(std::io::Error::other("reset"))))
        .unwrap();
    let (end, sfu) = h.end().await;
    assert!(matches!(end, End::SocketError(_)));
    assert_eq!(*sfu.disconnected.lock().unwrap(), vec![ID]);
}

#[tokio::test(start_paused = true)]
async fn counts_open_connections() {
    let h = Harness::start();
    tokio::task::yield_now().await;
    assert_eq!(
        h.stats
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    h.client_tx.close_channel();
    let stats = Arc::clone(&h.stats);
    h.end().await;
    assert_eq!(
        stats.connections.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn join_goes_through_the_gate_with_the_callers_address() {
    let h = Harness::start();
    h.send_text(r#"{"type":"join","version":1,"room":"standup","name":"Ann","passcode":"x"}"#);
    h.send_text(r#"{"type":"chat","text":"hi"}"#);
    // The chat is relayed after the join was decided, so once it arrives the join is there.
    tokio::time::timeout(Duration::from_secs(5), async {
        while h.sfu.sent.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("chat relayed");
    let joined = h.sfu.joined.lock().unwrap().clone();
    assert_eq!(joined.len(), 1);
    let j = &joined[0];
    assert_eq!(
        (j.room.as_str(), j.name.as_str(), j.version),
        ("standup", "Ann", 1)
    );
    // No store behind this gate: an instant guest room, as a guest, from the peer's address.
    assert_eq!(j.grant.role, veche_proto::Role::Guest);
    assert!(j.grant.meeting.is_none());
    assert_eq!(j.grant.ip, Some("192.0.2.9".parse().unwrap()));
    assert!(
        h.sfu
            .sent
            .lock()
            .unwrap()
            .iter()
            .all(|m| !matches!(m, ClientMessage::Join { .. })),
        "joins never bypass the gate"
    );
}

fn joined() -> ServerMessage {
    ServerMessage::Joined {
        version: 1,
        participant_id: ID,
        room: "r".into(),
        participants: vec![],
        role: veche_proto::Role::Guest,
        meeting: veche_proto::MeetingState {
            title: String::new(),
            locked: false,
            allow_self_unmute: true,
            ends_at_ms: None,
            e2ee: Default::default(),
        },
        waiting: vec![],
        resume: None,
        host_muted: vec![],
        ice_servers: vec![],
        reconnect: None,
    }
}

fn hand(raised: bool) -> ServerMessage {
    ServerMessage::Hand {
        participant_id: 1,
        raised,
    }
}

/// Joins (as far as the fake SFU goes) and returns the place's token.
async fn joined_token(h: &mut Harness) -> String {
    h.events.send(joined()).await.unwrap();
    match h.recv_msg().await {
        ServerMessage::Joined {
            reconnect: Some(token),
            ..
        } => token,
        other => panic!("expected joined with a token, got {other:?}"),
    }
}

fn reattach(token: &str, received: u64) -> String {
    format!(r#"{{"type":"reattach","token":"{token}","received":{received}}}"#)
}

#[tokio::test(start_paused = true)]
async fn a_dropped_connection_keeps_its_place_for_a_reattach_that_gets_what_it_missed() {
    let places = Arc::new(Places::default());
    let mut h1 = Harness::start_with(Arc::clone(&places), ID);
    let events = h1.events.clone();
    let token = joined_token(&mut h1).await;
    h1.send_text(CHAT);
    events.send(hand(true)).await.unwrap();
    let _ = h1.recv().await;
    // The socket drops without a goodbye; the SFU goes on talking meanwhile.
    h1.client_tx.close_channel();
    events.send(hand(false)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        h1.sfu.disconnected.lock().unwrap().is_empty(),
        "the place is kept"
    );

    // A new connection takes it, having read only `joined`: it gets the two hands again.
    let mut h2 = Harness::start_with(Arc::clone(&places), OTHER);
    h2.send_text(&reattach(&token, 1));
    assert_eq!(
        h2.recv_msg().await,
        ServerMessage::Reattached {
            participant_id: ID,
            received: 1
        },
        "the server read the client's one chat"
    );
    assert_eq!(h2.recv_msg().await, hand(true));
    assert_eq!(h2.recv_msg().await, hand(false));
    // From now on the place's SFU end talks on the new socket, and the client's messages go
    // to the place's participant.
    events.send(hand(true)).await.unwrap();
    assert_eq!(h2.recv_msg().await, hand(true));
    h2.send_text(CHAT);
    tokio::time::timeout(Duration::from_secs(5), async {
        while h2.sfu.sent.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("chat relayed for the place's participant");

    let (end, sfu1) = h1.end().await;
    assert_eq!(end, End::ClientGone);
    assert!(
        sfu1.disconnected.lock().unwrap().is_empty(),
        "the participant lives on"
    );
    // The new connection's own participant, which never joined, is let go.
    assert_eq!(*h2.sfu.disconnected.lock().unwrap(), vec![OTHER]);
}

#[tokio::test(start_paused = true)]
async fn a_live_connection_hands_its_place_over_and_closes() {
    let places = Arc::new(Places::default());
    let mut h1 = Harness::start_with(Arc::clone(&places), ID);
    let token = joined_token(&mut h1).await;
    let mut h2 = Harness::start_with(Arc::clone(&places), OTHER);
    h2.send_text(&reattach(&token, 1));
    assert!(matches!(
        h2.recv_msg().await,
        ServerMessage::Reattached {
            participant_id: ID,
            received: 0
        }
    ));
    assert_eq!(h1.recv_close().await, close_code::NORMAL);
    let (end, sfu1) = h1.end().await;
    assert_eq!(end, End::Replaced);
    assert!(sfu1.disconnected.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_place_nobody_comes_back_for_is_given_up_after_the_grace_period() {
    let places = Arc::new(Places::default());
    let mut h1 = Harness::start_with(Arc::clone(&places), ID);
    let token = joined_token(&mut h1).await;
    h1.client_tx.close_channel();
    let (end, sfu1) = h1.end().await;
    assert_eq!(end, End::ClientGone);
    assert_eq!(*sfu1.disconnected.lock().unwrap(), vec![ID]);

    // Too late: refused, and the connection may join instead.
    let mut h2 = Harness::start_with(Arc::clone(&places), OTHER);
    h2.send_text(&reattach(&token, 1));
    assert_eq!(h2.recv_error().await, ErrorCode::ReattachFailed);
    h2.send_text(&reattach("0123", 0));
    assert_eq!(
        h2.recv_error().await,
        ErrorCode::ReattachFailed,
        "an unknown token"
    );
    h2.send_text(r#"{"type":"join","version":1,"room":"standup","name":"Ann"}"#);
    tokio::time::timeout(Duration::from_secs(5), async {
        while h2.sfu.joined.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("joined instead");
}

#[tokio::test(start_paused = true)]
async fn leaving_gives_the_place_up_at_once() {
    let places = Arc::new(Places::default());
    let mut h1 = Harness::start_with(Arc::clone(&places), ID);
    let token = joined_token(&mut h1).await;
    h1.send_text(r#"{"type":"leave"}"#);
    let (end, sfu1) = h1.end().await;
    assert_eq!(end, End::Left);
    assert_eq!(*sfu1.disconnected.lock().unwrap(), vec![ID]);
    let mut h2 = Harness::start_with(places, OTHER);
    h2.send_text(&reattach(&token, 1));
    assert_eq!(h2.recv_error().await, ErrorCode::ReattachFailed);
}
