//! The router over a real loopback socket, with a fake SFU: checks what only a real
//! WebSocket handshake and codec exercise (upgrade, size limits, connect info).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use veche_proto::{ClientMessage, ErrorCode, ParticipantId, ServerMessage};
use veche_sfu::{Connection, SfuMetrics};

use crate::config::WsLimits;
use crate::http::router;
use crate::state::{AppState, SfuApi, WsStats};

/// Answers every `chat` with a `hand` event so a test can see its message got through.
#[derive(Default)]
struct EchoSfu {
    peers: Mutex<Vec<(ParticipantId, mpsc::Sender<ServerMessage>)>>,
}

impl SfuApi for EchoSfu {
    fn connect(&self) -> Connection {
        let (tx, events) = mpsc::channel(16);
        let mut peers = self.peers.lock().unwrap();
        let id = peers.len() as ParticipantId + 1;
        peers.push((id, tx));
        Connection { id, events }
    }
    fn send(&self, id: ParticipantId, msg: ClientMessage) {
        if let ClientMessage::Chat { .. } = msg {
            let peers = self.peers.lock().unwrap();
            let tx = &peers.iter().find(|(p, _)| *p == id).unwrap().1;
            let _ = tx.try_send(ServerMessage::Hand {
                participant_id: id,
                raised: true,
            });
        }
    }
    fn join(&self, _: ParticipantId, _: veche_sfu::JoinRequest) {}
    fn disconnect(&self, _: ParticipantId) {}
    fn metrics(&self) -> SfuMetrics {
        SfuMetrics::default()
    }
}

const LIMITS: WsLimits = WsLimits {
    max_message_bytes: 4096,
    max_messages_per_sec: 50,
    message_burst: 100,
    max_connections_per_ip: 100,
    reattach_grace: std::time::Duration::from_secs(30),
    reattach_replay_bytes: 1 << 20,
};

async fn serve() -> SocketAddr {
    let (shutdown_tx, shutdown) = watch::channel(false);
    // The server lives for the rest of the test process.
    std::mem::forget(shutdown_tx);
    let app = router(AppState {
        sfu: Arc::new(EchoSfu::default()),
        limits: LIMITS,
        gate: Arc::new(crate::gate::JoinGate::guest_rooms_only()),
        stats: Arc::new(WsStats::default()),
        shutdown,
        sockets: Arc::default(),
        http: Arc::default(),
        turn: None,
        checks: Arc::default(),
        places: Arc::default(),
        webhooks: Arc::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

async fn next_json<S>(ws: &mut S) -> ServerMessage
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("reply in time")
        .expect("socket open")
        .expect("frame");
    ServerMessage::parse(frame.to_text().unwrap()).unwrap()
}

fn chat(len: usize) -> Message {
    let text = "x".repeat(len);
    Message::text(ClientMessage::Chat { text }.to_json())
}

#[tokio::test]
async fn oversized_messages_get_an_error_over_a_real_socket() {
    let addr = serve().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();

    // Over our limit but under the codec's: a polite error, and the connection stays.
    ws.send(chat(LIMITS.max_message_bytes * 2)).await.unwrap();
    assert!(matches!(
        next_json(&mut ws).await,
        ServerMessage::Error {
            code: ErrorCode::MessageTooLarge,
            ..
        }
    ));
    ws.send(chat(10)).await.unwrap();
    assert!(matches!(
        next_json(&mut ws).await,
        ServerMessage::Hand { .. }
    ));

    // Far over both: the codec refuses it and the connection ends.
    ws.send(chat(LIMITS.max_message_bytes * 5)).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "connection closed");
}

#[tokio::test]
async fn plain_get_on_ws_is_refused() {
    let addr = serve().await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 4"), "{response}");
}
