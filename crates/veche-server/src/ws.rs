//! The signalling WebSocket at `/ws`: one session per connection, relaying JSON messages
//! between the browser and the SFU.
//!
//! The session enforces the per-connection limits (message size, message rate, text frames
//! only), answers bad input with a specific [`ServerMessage::Error`] on that connection only,
//! and keeps the connection alive with pings. It is generic over the socket's two halves so it
//! is tested with in-memory channels.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{Instrument, debug, info, info_span};
use veche_proto::{ClientMessage, ErrorCode, ServerMessage};
use veche_sfu::{Connection, JoinRequest};

use crate::api::ApiError;
use crate::auth::token_digest;
use crate::config::WsLimits;
use crate::gate::{Identity, JoinGate};
use crate::ratelimit::{RateLimiter, Verdict};
use crate::reattach::{Holder, Link, Places, Takeover};
use crate::sockets::{Admission, SessionEnd};
use crate::state::{AppState, SfuApi, WsStats};

/// Timers of a session; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timers {
    /// How often the server pings an idle client.
    pub(crate) ping_interval: Duration,
    /// A client silent (no frame, not even a pong) for this long is dropped.
    pub(crate) idle_timeout: Duration,
    /// After a `leave`, how long to wait for the SFU to finish with the participant.
    pub(crate) leave_grace: Duration,
    /// A client that does not read what we send for this long is dropped, so a stalled
    /// socket cannot hold its session (and the SFU participant) forever.
    pub(crate) write_timeout: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            leave_grace: Duration::from_secs(2),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// The size the WebSocket codec itself refuses (closing the connection). It is well above
/// our own limit so an oversized message normally reaches the session and gets a polite
/// `message_too_large` error instead; only a grossly oversized one hits this.
pub(crate) fn codec_limit(limits: &WsLimits) -> usize {
    limits.max_message_bytes.saturating_mul(4)
}

/// `GET /ws`.
pub(crate) async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Response {
    // Counted before anything else (and before the database is asked about the session),
    // so a flood from one address costs one map lookup per attempt.
    let max = state.limits.max_connections_per_ip;
    let Some(admission) = state.sockets.admit(peer.ip(), max) else {
        debug!(%peer, max, "WebSocket refused: too many connections from this address");
        return ApiError::TooManyConnections(max).into_response();
    };
    let hard = codec_limit(&state.limits);
    // The account is looked up at the upgrade, where the cookie or token is, and again at
    // every join (the session may have ended since).
    let identity = state.gate.identify(&headers, peer).await;
    if let (Some(user), Some(token)) = (&identity.user, &identity.token) {
        admission.set_owner(user.id.clone(), token_digest(token));
    }
    ws.max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| serve_socket(socket, peer, identity, admission, state))
}

async fn serve_socket(
    socket: WebSocket,
    peer: SocketAddr,
    identity: Identity,
    admission: Admission,
    state: AppState,
) {
    let conn = state.sfu.connect();
    let user = identity.user.as_ref().map(|u| u.id.clone());
    let span = info_span!("ws", participant = conn.id, %peer, user);
    let (tx, rx) = socket.split();
    let session = Session {
        sfu: state.sfu.as_ref(),
        gate: &state.gate,
        identity,
        limits: state.limits,
        timers: Timers::default(),
        stats: &state.stats,
        ended: admission.ended.clone(),
        turn: state.turn.as_deref(),
        places: &state.places,
    };
    let shutdown = state.shutdown.clone();
    // The connection's count is released once its socket is gone (a kept place is counted
    // on its own).
    session
        .run(tx, rx, conn, shutdown, move || drop(admission))
        .instrument(span)
        .await;
}

/// Why a session ended, for the log and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// The client closed the socket (a close frame): it is done.
    ClientClosed,
    /// The socket ended without a close frame.
    ClientGone,
    /// Reading or writing the socket failed.
    SocketError(String),
    /// The SFU dropped the participant, or sent a fatal error.
    SfuClosed,
    RateLimitAbuse,
    IdleTimeout,
    Left,
    Shutdown,
    /// The account session the connection was opened with ended.
    SessionEnded(SessionEnd),
    /// A new connection took this one's place (`reattach`).
    Replaced,
}

impl End {
    /// Whether the client may come back for its place: its socket went away without a
    /// goodbye, as when its network changes.
    fn keeps_place(&self) -> bool {
        matches!(
            self,
            End::ClientGone | End::SocketError(_) | End::IdleTimeout
        )
    }
}

pub(crate) struct Session<'a> {
    pub(crate) sfu: &'a dyn SfuApi,
    pub(crate) gate: &'a JoinGate,
    pub(crate) identity: Identity,
    pub(crate) limits: WsLimits,
    pub(crate) timers: Timers,
    pub(crate) stats: &'a std::sync::Arc<WsStats>,
    /// Mints the TURN credentials that `joined` carries.
    pub(crate) turn: Option<&'a crate::turn::TurnRest>,
    /// Becomes `Some` when the API ends the account session of this connection.
    pub(crate) ended: watch::Receiver<Option<SessionEnd>>,
    /// The places kept for dropped connections.
    pub(crate) places: &'a Places,
}

/// What to do after one client frame.
enum Step {
    Continue,
    /// Send this error and carry on.
    Reply(ServerMessage),
    /// Ask the gate, then join or refuse.
    Join(Box<ClientMessage>),
    /// Take an earlier connection's place.
    Reattach {
        token: String,
        received: u64,
    },
    Leave,
    End(End),
}

impl Session<'_> {
    /// Runs one connection until either side ends it, then tells the SFU the participant is
    /// gone — or, when the socket went away without a goodbye, keeps the participant's place
    /// for the grace period, for a new connection to take (`reattach`). Never panics on
    /// anything the client or the socket does.
    pub(crate) async fn run<W, R>(
        &self,
        mut tx: W,
        mut rx: R,
        conn: Connection,
        mut shutdown: watch::Receiver<bool>,
        socket_gone: impl FnOnce(),
    ) -> End
    where
        W: Sink<Message> + Unpin,
        W::Error: Display,
        R: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        let _open = self.stats.open_connection();
        info!("connected");
        let mut limiter = RateLimiter::new(
            self.limits.max_messages_per_sec,
            self.limits.message_burst,
            Instant::now().into_std(),
        );
        let mut last_heard = Instant::now();
        let mut next_ping = Instant::now() + self.timers.ping_interval;
        // Set once the client has sent `leave`: we stop reading and wait for the SFU.
        let mut leave_deadline: Option<Instant> = None;
        let mut ended = self.ended.clone();
        let mut link = Link::new(conn);
        // Set once joined: this task holds the participant's place.
        let mut holder: Option<Holder> = None;
        let mut takeover: Option<Takeover> = None;

        let end = loop {
            tokio::select! {
                // Biased: the SFU's messages go out before a client flood is read, and a
                // shutting-down SFU's last message goes out before the shutdown close.
                biased;
                event = link.conn.events.recv() => {
                    let Some(mut msg) = event else {
                        // After a `leave` this is the SFU confirming it, not dropping us.
                        let end = if leave_deadline.is_some() { End::Left } else { End::SfuClosed };
                        break self.close(&mut tx, close_code::NORMAL, "", end).await;
                    };
                    if let ServerMessage::Joined { participant_id, ice_servers, reconnect, .. } = &mut msg {
                        if let Some(turn) = self.turn {
                            *ice_servers = turn.ice_servers(*participant_id, unix_secs());
                        }
                        if !self.limits.reattach_grace.is_zero() && link.token.is_none() {
                            let token = Places::new_token();
                            holder = Some(self.places.hold(&token, self.user_id()));
                            *reconnect = Some(token.clone());
                            link.token = Some(token);
                        }
                    }
                    let fatal = matches!(&msg, ServerMessage::Error { code, .. } if code.is_fatal());
                    if let Err(e) = self.send(&mut tx, &mut link, &msg).await {
                        break e;
                    }
                    if fatal {
                        break self.close(&mut tx, close_code::NORMAL, "", End::SfuClosed).await;
                    }
                }
                request = next_takeover(&mut holder) => {
                    // A requester that gave up meanwhile is not answered.
                    if !request.is_closed() {
                        takeover = Some(request);
                        break self.close(&mut tx, close_code::NORMAL, "replaced", End::Replaced).await;
                    }
                }
                frame = rx.next(), if leave_deadline.is_none() => {
                    last_heard = Instant::now();
                    let text = matches!(frame, Some(Ok(Message::Text(_))));
                    let step = match frame {
                        None => Step::End(End::ClientGone),
                        Some(Err(e)) => Step::End(End::SocketError(e.to_string())),
                        Some(Ok(frame)) => self.on_frame(frame, &mut limiter, link.conn.id),
                    };
                    // Counted for the other side's resend after a reattach; the reattach
                    // itself is not.
                    if text && !matches!(step, Step::Reattach { .. }) {
                        link.received += 1;
                    }
                    match step {
                        Step::Continue => {}
                        Step::Reply(err) => {
                            if let Err(e) = self.send(&mut tx, &mut link, &err).await {
                                break e;
                            }
                        }
                        Step::Reattach { token, received } => {
                            match self.reattach(&mut tx, &mut link, &token, received).await {
                                Ok(Some(h)) => holder = Some(h),
                                Ok(None) => {}
                                Err(e) => break e,
                            }
                        }
                        Step::Join(join) => {
                            let ClientMessage::Join { version, room, name, passcode, resume, e2ee, require_e2ee } = *join else {
                                continue;
                            };
                            // The session may have ended since the upgrade: the join is
                            // decided on who the caller is now.
                            let authorised = match self.gate.recheck(&self.identity).await {
                                Ok(identity) => self.gate.authorise(&identity, &room, passcode.as_deref()).await,
                                Err(refusal) => Err(refusal),
                            };
                            match authorised {
                                Ok(grant) => self.sfu.join(link.conn.id, JoinRequest { version, room, name, grant, resume, e2ee, require_e2ee }),
                                Err(refusal) => {
                                    let fatal = refusal.code.is_fatal();
                                    info!(?refusal, "join refused");
                                    if let Err(e) = self.send(&mut tx, &mut link, &refusal.into_message()).await {
                                        break e;
                                    }
                                    if fatal {
                                        break self.close(&mut tx, close_code::NORMAL, "", End::SfuClosed).await;
                                    }
                                }
                            }
                        }
                        Step::Leave => leave_deadline = Some(Instant::now() + self.timers.leave_grace),
                        Step::End(End::RateLimitAbuse) => {
                            let err = ServerMessage::error(
                                ErrorCode::RateLimited,
                                "far over the message rate limit; closing",
                            );
                            // The connection is closing anyway; a failed send changes nothing.
                            let _ = self.send(&mut tx, &mut link, &err).await;
                            break self.close(&mut tx, close_code::POLICY, "rate limit", End::RateLimitAbuse).await;
                        }
                        Step::End(end) => break end,
                    }
                }
                () = sleep_until(leave_deadline.unwrap_or(next_ping)), if leave_deadline.is_some() => {
                    break self.close(&mut tx, close_code::NORMAL, "", End::Left).await;
                }
                () = sleep_until(next_ping), if leave_deadline.is_none() => {
                    if last_heard.elapsed() >= self.timers.idle_timeout {
                        break self.close(&mut tx, close_code::AWAY, "idle", End::IdleTimeout).await;
                    }
                    next_ping = Instant::now() + self.timers.ping_interval;
                    if let Err(e) = self.write(&mut tx, Message::Ping(Default::default())).await {
                        break e;
                    }
                }
                why = session_ended(&mut ended) => {
                    info!(?why, "account session ended; closing");
                    let err = ServerMessage::error(ErrorCode::SessionEnded, why.message());
                    // The connection is closing anyway; a failed send changes nothing.
                    let _ = self.send(&mut tx, &mut link, &err).await;
                    break self.close(&mut tx, close_code::POLICY, "session ended", End::SessionEnded(why)).await;
                }
                () = shutting_down(&mut shutdown) => {
                    break self.close(&mut tx, close_code::AWAY, "server shutting down", End::Shutdown).await;
                }
            }
        };

        match &end {
            End::SocketError(e) => info!(error = %e, "disconnected"),
            end => info!(reason = ?end, "disconnected"),
        }
        drop(rx);
        drop(tx);
        // A kept place is not a connection: it is counted on its own.
        socket_gone();
        if let (true, Some(h)) = (end.keeps_place(), holder.as_mut()) {
            let id = link.conn.id;
            match self
                .places
                .keep(self.identity.ip, self.limits.max_connections_per_ip)
            {
                Some(_kept) => {
                    info!(
                        participant = id,
                        grace_ms = self.limits.reattach_grace.as_millis() as u64,
                        "keeping the place"
                    );
                    takeover = self
                        .keep_place(&mut link, h, &mut ended, &mut shutdown)
                        .await;
                }
                None => info!(
                    participant = id,
                    "not keeping the place: this address keeps too many"
                ),
            }
        }
        if let Some(request) = takeover {
            // The new connection has the place now; if it gave up meanwhile, so do we.
            match request.send(link) {
                Ok(()) => return end,
                Err(l) => link = l,
            }
        }
        if let Some(h) = &holder {
            self.places.release(h);
        }
        self.sfu.disconnect(link.conn.id);
        end
    }

    /// The account that opened this connection, if any.
    fn user_id(&self) -> Option<String> {
        self.identity.user.as_ref().map(|u| u.id.clone())
    }

    /// Waits, socket gone, for a new connection to take the place (returned), keeping what
    /// the SFU says meanwhile for it; `None` once the grace period is over or the place ends.
    async fn keep_place(
        &self,
        link: &mut Link,
        holder: &mut Holder,
        ended: &mut watch::Receiver<Option<SessionEnd>>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Takeover> {
        let deadline = Instant::now() + self.limits.reattach_grace;
        loop {
            tokio::select! {
                biased;
                request = holder.requests.recv() => match request {
                    Some(request) if !request.is_closed() => return Some(request),
                    Some(_) => {}
                    None => return None,
                },
                event = link.conn.events.recv() => {
                    let msg = event?;
                    let fatal = matches!(&msg, ServerMessage::Error { code, .. } if code.is_fatal());
                    link.record(&msg.to_json().into(), self.limits.reattach_replay_bytes);
                    if fatal {
                        info!(?msg, "the place ended while its connection was away");
                        return None;
                    }
                }
                () = sleep_until(deadline) => {
                    info!("nobody came back for the place");
                    return None;
                }
                _ = session_ended(ended) => return None,
                () = shutting_down(shutdown) => return None,
            }
        }
    }

    /// Takes the place `token` names for this connection (it must not have joined). On
    /// success the link is that place's and the returned holder registered; on failure the
    /// client is told, and may join.
    async fn reattach<W>(
        &self,
        tx: &mut W,
        link: &mut Link,
        token: &str,
        read: u64,
    ) -> Result<Option<Holder>, End>
    where
        W: Sink<Message> + Unpin,
        W::Error: Display,
    {
        let refuse = |why: &str| {
            let msg = ServerMessage::error(ErrorCode::ReattachFailed, why);
            Message::Text(msg.to_json().into())
        };
        if !link.is_fresh() {
            self.write(
                tx,
                refuse("reattach must be the first message on a connection"),
            )
            .await?;
            return Ok(None);
        }
        let user = self.user_id();
        let mut old = match self
            .places
            .take(token, user.as_deref(), REATTACH_WAIT)
            .await
        {
            Ok(old) => old,
            Err(e) => {
                info!(error = e.message(), "reattach refused");
                self.write(tx, refuse(e.message())).await?;
                return Ok(None);
            }
        };
        let Some(missed) = old.missed(read) else {
            // The place cannot be restored faithfully: it ends, and the client joins anew.
            info!(
                participant = old.conn.id,
                read, "reattach refused: the messages missed are no longer kept"
            );
            self.sfu.disconnect(old.conn.id);
            self.write(tx, refuse("the messages missed are no longer kept"))
                .await?;
            return Ok(None);
        };
        // This connection's own participant never joined; the place's replaces it.
        std::mem::swap(link, &mut old);
        self.sfu.disconnect(old.conn.id);
        let id = link.conn.id;
        info!(participant = id, missed = missed.len(), "reattached");
        let reply = ServerMessage::Reattached {
            participant_id: id,
            received: link.received,
        };
        self.write(tx, Message::Text(reply.to_json().into()))
            .await?;
        for text in missed {
            self.write(tx, Message::Text(text)).await?;
        }
        Ok(Some(self.places.hold(token, user)))
    }

    /// Writes one frame; a failure or a stall means the client is gone.
    async fn write<W>(&self, tx: &mut W, frame: Message) -> Result<(), End>
    where
        W: Sink<Message> + Unpin,
        W::Error: Display,
    {
        match timeout(self.timers.write_timeout, tx.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::SocketError(e.to_string())),
            Err(_) => Err(End::SocketError("write timed out".into())),
        }
    }

    /// Sends a message, counted and kept for a resend after a reattach.
    async fn send<W>(&self, tx: &mut W, link: &mut Link, msg: &ServerMessage) -> Result<(), End>
    where
        W: Sink<Message> + Unpin,
        W::Error: Display,
    {
        let text = Utf8Bytes::from(msg.to_json());
        link.record(&text, self.limits.reattach_replay_bytes);
        self.write(tx, Message::Text(text)).await
    }

    /// Sends a close frame (best effort: the peer may already be gone) and returns `end`.
    async fn close<W>(&self, tx: &mut W, code: u16, reason: &'static str, end: End) -> End
    where
        W: Sink<Message> + Unpin,
        W::Error: Display,
    {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = self.write(tx, Message::Close(Some(frame))).await;
        end
    }

    fn on_frame(&self, frame: Message, limiter: &mut RateLimiter, id: u64) -> Step {
        let counted = matches!(
            frame,
            Message::Text(_) | Message::Binary(_) | Message::Ping(_)
        );
        if counted {
            match limiter.check(Instant::now().into_std()) {
                Verdict::Allow => {}
                Verdict::Drop { notify } => {
                    self.stats.reject();
                    debug!("message dropped: rate limited");
                    return if notify {
                        Step::Reply(ServerMessage::error(
                            ErrorCode::RateLimited,
                            format!(
                                "more than {} messages per second; messages are being dropped",
                                self.limits.max_messages_per_sec
                            ),
                        ))
                    } else {
                        Step::Continue
                    };
                }
                Verdict::Close => return Step::End(End::RateLimitAbuse),
            }
        }
        match frame {
            Message::Text(text) => self.on_text(text, id),
            Message::Binary(_) => {
                self.stats.reject();
                Step::Reply(ServerMessage::error(
                    ErrorCode::BinaryNotSupported,
                    "binary frames are not part of the protocol; send JSON text",
                ))
            }
            // Pongs answer our pings; the codec answers pings by itself. Both only prove
            // the client is alive, which the caller already noted.
            Message::Ping(_) | Message::Pong(_) => Step::Continue,
            Message::Close(_) => Step::End(End::ClientClosed),
        }
    }

    fn on_text(&self, text: Utf8Bytes, id: u64) -> Step {
        let len = text.len();
        if len > self.limits.max_message_bytes {
            self.stats.reject();
            debug!(len, "message too large");
            return Step::Reply(ServerMessage::error(
                ErrorCode::MessageTooLarge,
                format!(
                    "message of {len} bytes exceeds the limit of {} bytes",
                    self.limits.max_message_bytes
                ),
            ));
        }
        match ClientMessage::parse(text.as_str()) {
            Ok(msg @ ClientMessage::Join { .. }) => Step::Join(Box::new(msg)),
            Ok(ClientMessage::Reattach { token, received }) => Step::Reattach { token, received },
            Ok(msg) => {
                let leave = matches!(msg, ClientMessage::Leave);
                self.sfu.send(id, msg);
                if leave { Step::Leave } else { Step::Continue }
            }
            Err(err) => {
                self.stats.reject();
                // Bad input is the client's problem, not the server's: debug, not error.
                debug!(error = %err, "bad message");
                Step::Reply(ServerMessage::error(err.code(), err.to_string()))
            }
        }
    }
}

/// How long a reattach waits for the place's holder to hand it over.
const REATTACH_WAIT: Duration = Duration::from_secs(2);

/// The next takeover request for the place this connection holds; never if it holds none.
async fn next_takeover(holder: &mut Option<Holder>) -> Takeover {
    let request = match holder {
        Some(h) => h.requests.recv().await,
        None => None,
    };
    match request {
        Some(request) => request,
        None => std::future::pending().await,
    }
}

/// Resolves once the connection's account session is ended; never if it is not (or if the
/// registry's sender is gone, which only happens once the connection is released).
async fn session_ended(ended: &mut watch::Receiver<Option<SessionEnd>>) -> SessionEnd {
    // The guard `wait_for` returns is not `Send`; copy the value out and drop it here.
    let why = ended.wait_for(Option::is_some).await.map_or(None, |r| *r);
    match why {
        Some(why) => why,
        None => std::future::pending().await,
    }
}

/// Resolves once shutdown is signalled, or if the signal's sender is gone.
async fn shutting_down(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here, before the caller awaits.
    let _ = shutdown.wait_for(|down| *down).await.map(|_| ());
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
