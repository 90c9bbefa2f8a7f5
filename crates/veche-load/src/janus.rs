//! Signalling for Janus's VideoRoom plugin over Janus's WebSocket API (`janus-protocol`
//! subprotocol), so the same synthetic media can load Janus and Veche alike.
//!
//! Janus's model differs from Veche's: a participant publishes on one handle (we offer, Janus
//! answers: `join` as publisher, then `configure` with the offer) and receives on another
//! (`join` as subscriber naming the feeds; Janus offers, we answer with `start`). Each handle
//! here is its own session on its own WebSocket, which Janus handles like separate browsers.
//! Sessions expire after 60 s of silence, hence the keepalive. Janus puts its ICE candidates in
//! its SDP (half trickle) and reads ours from our SDP, so no trickle messages are needed beyond
//! "completed".

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::debug;

use crate::Error;

/// Well under Janus's default 60 s session timeout.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// How long a request may take before we give up on it (Janus answers in milliseconds
/// unless overloaded).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One Janus session with one VideoRoom handle.
pub(crate) struct JanusSignal {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: u64,
    handle: u64,
    next_transaction: u64,
    keepalive_at: Instant,
}

/// What Janus said on a handle outside of a request we are waiting for.
#[derive(Debug)]
pub(crate) enum JanusEvent {
    /// A new SDP offer (subscriber renegotiation).
    Offer(String),
    /// Anything else (`webrtcup`, `media`, `slowlink`, plugin events): logged only.
    Other,
}

impl JanusSignal {
    /// Connects to `url` (e.g. `ws://127.0.0.1:8188`), creates a session and attaches the
    /// VideoRoom plugin.
    pub(crate) async fn connect(url: &str) -> Result<JanusSignal, Error> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let (ws, _response) = tokio_tungstenite::connect_async(request).await?;
        let mut signal = JanusSignal {
            ws,
            session: 0,
            handle: 0,
            next_transaction: 1,
            keepalive_at: Instant::now() + KEEPALIVE,
        };
        let created = signal.request(json!({"janus": "create"})).await?;
        signal.session = id_of(&created)?;
        let attached = signal
            .request(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))
            .await?;
        signal.handle = id_of(&attached)?;
        Ok(signal)
    }

    /// Sends a VideoRoom request (with an SDP if given) and waits for its reply, skipping the
    /// `ack` of asynchronous requests. Returns the plugin's data and the reply's SDP if any.
    pub(crate) async fn message(
        &mut self,
        body: Value,
        jsep: Option<(&str, &str)>,
    ) -> Result<(Value, Option<String>), Error> {
        let mut msg = json!({"janus": "message", "handle_id": self.handle, "body": body});
        if let Some((kind, sdp)) = jsep {
            msg["jsep"] = json!({"type": kind, "sdp": sdp});
        }
        let reply = self.request(msg).await?;
        let data = reply["plugindata"]["data"].clone();
        if let Some(code) = data["error_code"].as_i64() {
            return Err(Error::Janus {
                code,
                reason: data["error"].as_str().unwrap_or_default().to_owned(),
            });
        }
        let sdp = reply["jsep"]["sdp"].as_str().map(str::to_owned);
        Ok((data, sdp))
    }

    /// Tells Janus our SDP held all our candidates.
    pub(crate) async fn trickle_completed(&mut self) -> Result<(), Error> {
        let tx = self.transaction();
        let msg = json!({
            "janus": "trickle", "session_id": self.session, "handle_id": self.handle,
            "transaction": tx, "candidate": {"completed": true}
        });
        self.send(msg).await
    }

    /// Sends a request stamped with session and transaction and waits for the reply with that
    /// transaction that is not an `ack`.
    async fn request(&mut self, mut msg: Value) -> Result<Value, Error> {
        let tx = self.transaction();
        msg["transaction"] = json!(tx);
        if self.session != 0 {
            msg["session_id"] = json!(self.session);
        }
        self.send(msg).await?;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let reply = tokio::time::timeout_at(deadline.into(), self.recv_json())
                .await
                .map_err(|_| Error::Timeout(REQUEST_TIMEOUT))??
                .ok_or(Error::Closed)?;
            if reply["transaction"].as_str() != Some(tx.as_str()) {
                debug!("janus (while waiting for {tx}): {reply}");
                continue;
            }
            match reply["janus"].as_str() {
                Some("ack") => continue,
                Some("error") => {
                    return Err(Error::Janus {
                        code: reply["error"]["code"].as_i64().unwrap_or(0),
                        reason: reply["error"]["reason"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    });
                }
                _ => {
                    debug!("janus reply: {reply}");
                    return Ok(reply);
                }
            }
        }
    }

    /// The next event on this handle, sending keepalives meanwhile; `None` once Janus has
    /// closed the connection. Cancel-safe between messages (a keepalive is a single small
    /// frame).
    pub(crate) async fn recv(&mut self) -> Result<Option<JanusEvent>, Error> {
        loop {
            let keepalive = tokio::time::sleep_until(self.keepalive_at.into());
            let msg = tokio::select! {
                msg = self.recv_json() => msg?,
                _ = keepalive => {
                    self.keepalive_at = Instant::now() + KEEPALIVE;
                    let tx = self.transaction();
                    let msg = json!({"janus": "keepalive", "session_id": self.session,
                                     "transaction": tx});
                    self.send(msg).await?;
                    continue;
                }
            };
            let Some(msg) = msg else { return Ok(None) };
            if msg["janus"] == "ack" {
                continue;
            }
            debug!("janus event: {msg}");
            if msg["jsep"]["type"] == "offer"
                && let Some(sdp) = msg["jsep"]["sdp"].as_str()
            {
                return Ok(Some(JanusEvent::Offer(sdp.to_owned())));
            }
            return Ok(Some(JanusEvent::Other));
        }
    }

    /// Answers a renegotiation offer on a subscriber handle.
    pub(crate) async fn send_answer(&mut self, sdp: &str) -> Result<(), Error> {
        let tx = self.transaction();
        let msg = json!({
            "janus": "message", "session_id": self.session, "handle_id": self.handle,
            "transaction": tx, "body": {"request": "start"},
            "jsep": {"type": "answer", "sdp": sdp}
        });
        self.send(msg).await
    }

    /// Ends the session (and with it the handle and its PeerConnection).
    pub(crate) async fn destroy(&mut self) -> Result<(), Error> {
        let tx = self.transaction();
        let msg = json!({"janus": "destroy", "session_id": self.session, "transaction": tx});
        self.send(msg).await?;
        self.ws.close(None).await?;
        Ok(())
    }

    fn transaction(&mut self) -> String {
        self.next_transaction += 1;
        format!("t{}", self.next_transaction)
    }

    async fn send(&mut self, msg: Value) -> Result<(), Error> {
        self.ws.send(Message::text(msg.to_string())).await?;
        Ok(())
    }

    /// The next JSON text frame; `None` once closed. Cancel-safe.
    async fn recv_json(&mut self) -> Result<Option<Value>, Error> {
        loop {
            match self.ws.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .map(Some)
                        .map_err(|e| Error::Unexpected(format!("janus sent bad JSON ({e})")));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }
}

/// `data.id` of a `success` reply (session or handle id).
fn id_of(reply: &Value) -> Result<u64, Error> {
    reply["data"]["id"]
        .as_u64()
        .ok_or_else(|| Error::Unexpected(format!("janus reply without data.id: {reply}")))
}

/// Creates VideoRoom `room` for up to `publishers` publishers, Opus and VP8 only, no bitrate
/// cap; a room that already exists is fine.
pub(crate) async fn create_room(url: &str, room: u64, publishers: u32) -> Result<(), Error> {
    let mut signal = JanusSignal::connect(url).await?;
    let body = json!({
        "request": "create", "room": room, "publishers": publishers,
        "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0, "fir_freq": 0,
        "notify_joining": false, "permanent": false
    });
    match signal.message(body, None).await {
        // 427: room already exists.
        Ok(_) | Err(Error::Janus { code: 427, .. }) => {}
        Err(e) => return Err(e),
    }
    signal.destroy().await
}
