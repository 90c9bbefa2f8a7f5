//! A thin WebSocket signalling client. The synthetic participant uses it, and tests use it
//! directly to send input no well-behaved client would.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use veche_proto::{ClientMessage, ServerMessage};

use crate::Error;

/// One signalling WebSocket connection.
pub struct SignalClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl SignalClient {
    /// Connects to `url`, e.g. `ws://127.0.0.1:8080/ws`.
    pub async fn connect(url: &str) -> Result<SignalClient, Error> {
        let (ws, _response) = tokio_tungstenite::connect_async(url).await?;
        Ok(SignalClient { ws })
    }

    pub async fn send(&mut self, msg: &ClientMessage) -> Result<(), Error> {
        self.send_text(msg.to_json()).await
    }

    /// Sends any text frame, well-formed or not.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), Error> {
        self.ws.send(Message::text(text.into())).await?;
        Ok(())
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) -> Result<(), Error> {
        self.ws.send(Message::binary(data)).await?;
        Ok(())
    }

    /// The next text frame, or `None` once the server has closed the connection. Binary
    /// frames are skipped. Cancel-safe: nothing is consumed unless it returns.
    pub async fn recv_text(&mut self) -> Result<Option<String>, Error> {
        loop {
            match self.ws.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Text(text))) => return Ok(Some(text.as_str().to_owned())),
                // tungstenite answers pings itself; binary is not part of the protocol.
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// The next server message, or `None` once the connection is closed. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<ServerMessage>, Error> {
        let Some(text) = self.recv_text().await? else {
            return Ok(None);
        };
        ServerMessage::parse(&text)
            .map(Some)
            .map_err(|e| Error::Unexpected(format!("{e}: {text}")))
    }

    /// Starts a clean close; the server's close frame is not awaited.
    pub async fn close(&mut self) -> Result<(), Error> {
        self.ws.close(None).await?;
        Ok(())
    }
}
