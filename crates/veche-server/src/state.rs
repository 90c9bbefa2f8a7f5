//! What the HTTP handlers share: the SFU (behind a trait, so handlers are tested with a fake),
//! the signalling limits, connection counters and the shutdown signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use veche_proto::{ClientMessage, ParticipantId};
use veche_sfu::{Connection, JoinRequest, SfuHandle, SfuMetrics};

use axum::http::HeaderValue;

use crate::cidr::Cidr;
use crate::config::WsLimits;
use crate::gate::JoinGate;
use crate::sockets::LiveSockets;

/// The part of [`SfuHandle`] the web layer uses.
pub(crate) trait SfuApi: Send + Sync + 'static {
    fn connect(&self) -> Connection;
    fn send(&self, id: ParticipantId, msg: ClientMessage);
    /// A join the gate authorised.
    fn join(&self, id: ParticipantId, request: JoinRequest);
    fn disconnect(&self, id: ParticipantId);
    fn metrics(&self) -> SfuMetrics;
}

impl SfuApi for SfuHandle {
    fn connect(&self) -> Connection {
        SfuHandle::connect(self)
    }
    fn send(&self, id: ParticipantId, msg: ClientMessage) {
        SfuHandle::send(self, id, msg)
    }
    fn join(&self, id: ParticipantId, request: JoinRequest) {
        SfuHandle::join(self, id, request)
    }
    fn disconnect(&self, id: ParticipantId) {
        SfuHandle::disconnect(self, id)
    }
    fn metrics(&self) -> SfuMetrics {
        SfuHandle::metrics(self)
    }
}

/// Counters kept by the WebSocket layer, exported on `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct WsStats {
    /// Open signalling connections.
    pub(crate) connections: AtomicU64,
    /// Client messages refused by the WebSocket layer (size, rate, binary, parse errors).
    pub(crate) rejected_messages: AtomicU64,
}

impl WsStats {
    /// Counts a connection as open until the returned guard is dropped, however the session
    /// ends.
    pub(crate) fn open_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(Arc::clone(self))
    }

    pub(crate) fn reject(&self) {
        self.rejected_messages.fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) struct ConnectionGuard(Arc<WsStats>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) sfu: Arc<dyn SfuApi>,
    pub(crate) limits: WsLimits,
    /// Decides who joins which meeting with which role.
    pub(crate) gate: Arc<JoinGate>,
    pub(crate) stats: Arc<WsStats>,
    /// Becomes `true` once the SFU has told every participant it is shutting down.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The live signalling connections (per address and per account session); the API
    /// shares it to end the connections of a session.
    pub(crate) sockets: Arc<LiveSockets>,
    pub(crate) http: Arc<HttpPolicy>,
    /// TURN servers and their credentials for `joined` (`--turn-url`, `--turn-secret`).
    pub(crate) turn: Option<Arc<crate::turn::TurnRest>>,
    /// The per-address budget of the connectivity check (`/check/ws`, `/check/download`).
    pub(crate) checks: Arc<crate::check::CheckLimiter>,
    /// The places kept for participants whose signalling connection dropped.
    pub(crate) places: Arc<crate::reattach::Places>,
    /// The webhook counters, for `/metrics`.
    pub(crate) webhooks: Arc<crate::webhooks::WebhookStats>,
}

/// Site-wide HTTP settings.
#[derive(Debug, Default)]
pub(crate) struct HttpPolicy {
    /// The `Strict-Transport-Security` header, when the server speaks HTTPS.
    pub(crate) hsts: Option<HeaderValue>,
    pub(crate) metrics: MetricsAccess,
}

/// Who may read `/metrics`. With neither set, anyone who reaches the HTTP port; with both,
/// a request must pass both.
#[derive(Clone, Default)]
pub(crate) struct MetricsAccess {
    /// The peer's address must be in one of these (`--metrics-allow`).
    pub(crate) allow: Vec<Cidr>,
    /// `Authorization: Bearer` must carry this (`--metrics-token`).
    pub(crate) token: Option<String>,
}

/// Without the token: it is a credential and must not reach a log.
impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsAccess")
            .field("allow", &self.allow)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
