//! One signalling connection over the real WebSocket, keeping everything it received, and
//! small REST helpers for the tests that drive accounts and meetings through the binary.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use veche_proto::{ClientMessage, ErrorCode, PROTOCOL_VERSION, ParticipantId, Role, ServerMessage};

use crate::common::Server;

pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Peer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub(crate) inbox: Vec<ServerMessage>,
    pub(crate) closed: bool,
    /// The close frame the server sent, if any.
    pub(crate) close: Option<CloseFrame>,
}

impl Peer {
    /// Opens `/ws`, with `Authorization: Bearer` when a token is given.
    pub(crate) async fn connect(server: &Server, token: Option<&str>) -> anyhow::Result<Peer> {
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
            close: None,
        })
    }

    /// Opens a WebSocket at `url` (e.g. the connectivity check's `/check/ws`).
    pub(crate) async fn connect_url(url: &str) -> anyhow::Result<Peer> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Peer {
            ws,
            inbox: Vec::new(),
            closed: false,
            close: None,
        })
    }

    pub(crate) async fn join(
        &mut self,
        room: &str,
        name: &str,
        passcode: Option<&str>,
    ) -> anyhow::Result<()> {
        self.send_join(room, name, passcode, None, (false, false))
            .await
    }

    /// Joins with the end-to-end encryption flags: `e2ee` (this client can encrypt) and
    /// `require_e2ee` (the join URL asked for an encrypted room).
    pub(crate) async fn join_e2ee(
        &mut self,
        room: &str,
        name: &str,
        e2ee: bool,
        require_e2ee: bool,
    ) -> anyhow::Result<()> {
        self.send_join(room, name, None, None, (e2ee, require_e2ee))
            .await
    }

    /// Joins with the resume token of an earlier `joined` (how a guest comes back).
    pub(crate) async fn join_resuming(
        &mut self,
        room: &str,
        name: &str,
        resume: &str,
    ) -> anyhow::Result<()> {
        self.send_join(room, name, None, Some(resume), (false, false))
            .await
    }

    async fn send_join(
        &mut self,
        room: &str,
        name: &str,
        passcode: Option<&str>,
        resume: Option<&str>,
        (e2ee, require_e2ee): (bool, bool),
    ) -> anyhow::Result<()> {
        self.send(&ClientMessage::Join {
            version: PROTOCOL_VERSION,
            room: room.into(),
            name: name.into(),
            passcode: passcode.map(str::to_owned),
            resume: resume.map(str::to_owned),
            e2ee,
            require_e2ee,
        })
        .await
    }

    /// Sends a raw text frame (for input the typed messages cannot express).
    pub(crate) async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.send(Message::Text(text.to_owned().into())).await?;
        Ok(())
    }

    /// [`Peer::expect`], then takes the message out of the inbox, so that waiting for the
    /// next one of its kind finds the next.
    pub(crate) async fn take(
        &mut self,
        what: &str,
        pred: impl Fn(&ServerMessage) -> bool,
    ) -> anyhow::Result<ServerMessage> {
        let m = self.expect(what, &pred).await?;
        if let Some(i) = self.inbox.iter().position(|x| *x == m) {
            self.inbox.remove(i);
        }
        Ok(m)
    }

    pub(crate) async fn send(&mut self, msg: &ClientMessage) -> anyhow::Result<()> {
        self.ws.send(Message::Text(msg.to_json().into())).await?;
        Ok(())
    }

    /// Reads until a message matches (returning it), the socket closes or `timeout`
    /// passes (`None`).
    pub(crate) async fn wait_for(
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
                    self.inbox.push(msg.clone());
                    if pred(&msg) {
                        return Ok(Some(msg));
                    }
                }
                Message::Close(frame) => {
                    self.close = frame;
                    self.closed = true;
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Told it waits in the waiting room; returns its id as `host` learns it (and takes that
    /// `waiting_added` out of the host's inbox, so the next waiter is found next time).
    pub(crate) async fn waiting_id(&mut self, host: &mut Peer) -> anyhow::Result<ParticipantId> {
        self.expect("waiting", |m| matches!(m, ServerMessage::Waiting { .. }))
            .await?;
        match host
            .expect("waiting_added", |m| {
                matches!(m, ServerMessage::WaitingAdded { .. })
            })
            .await?
        {
            ServerMessage::WaitingAdded { participant } => {
                host.inbox.retain(|m| {
                    !matches!(m, ServerMessage::WaitingAdded { participant: p } if p.id == participant.id)
                });
                Ok(participant.id)
            }
            _ => unreachable!("matched above"),
        }
    }

    pub(crate) async fn expect(
        &mut self,
        what: &str,
        pred: impl Fn(&ServerMessage) -> bool,
    ) -> anyhow::Result<ServerMessage> {
        match self.wait_for(WAIT, pred).await? {
            Some(m) => Ok(m),
            None => bail!("no {what}; got {:?} (closed: {})", self.inbox, self.closed),
        }
    }

    pub(crate) async fn expect_error(&mut self, code: ErrorCode) -> anyhow::Result<()> {
        self.expect(
            &format!("{code:?} error"),
            |m| matches!(m, ServerMessage::Error { code: c, .. } if *c == code),
        )
        .await
        .map(|_| ())
    }

    pub(crate) async fn joined(&mut self) -> anyhow::Result<Role> {
        match self
            .expect("joined", |m| matches!(m, ServerMessage::Joined { .. }))
            .await?
        {
            ServerMessage::Joined { role, .. } => Ok(role),
            _ => unreachable!("matched above"),
        }
    }

    /// Waits for the server to close the socket.
    pub(crate) async fn expect_closed(&mut self) -> anyhow::Result<()> {
        self.wait_for(WAIT, |_| false).await?;
        ensure!(
            self.closed,
            "the server did not close the socket; got {:?}",
            self.inbox
        );
        Ok(())
    }
}

/// A REST call that must succeed (2xx); its JSON body (`Null` when empty).
pub(crate) async fn api(
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

pub(crate) const PASSWORD: &str = "correct horse battery";

/// Signs up `email` in a new organisation: its token and the signup answer.
pub(crate) async fn signup(server: &Server, email: &str) -> anyhow::Result<(String, Value)> {
    let v = api(
        server,
        "POST",
        "/auth/signup",
        None,
        json!({"email": email, "password": PASSWORD, "name": email.split('@').next()}),
    )
    .await?;
    let token = v["token"].as_str().context("no token")?.to_owned();
    Ok((token, v))
}

pub(crate) async fn login(server: &Server, email: &str, password: &str) -> anyhow::Result<String> {
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
