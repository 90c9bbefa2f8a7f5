use std::time::Duration;

use veche_proto::ErrorCode;

/// Why a synthetic participant could not join or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("udp socket: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered with an error message where we expected progress.
    #[error("server refused with {code:?}: {message}")]
    Refused { code: ErrorCode, message: String },
    #[error("server closed the signalling connection")]
    Closed,
    #[error("unexpected message from server: {0}")]
    Unexpected(String),
    /// The server's SDP offer is unusable for a participant.
    #[error("bad offer: {0}")]
    BadOffer(String),
    #[error("webrtc: {0}")]
    Rtc(#[from] str0m::RtcError),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A video clip fixture that cannot be used.
    #[error("bad clip: {0}")]
    Clip(String),
    /// Janus answered a request with an error.
    #[error("janus error {code}: {reason}")]
    Janus { code: i64, reason: String },
    #[error("participant task has ended: {0}")]
    Ended(String),
}
