//! The I/O shell around the sans-IO core: one UDP socket, a clock, and channels to the
//! signalling layer. Runs on its own thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use veche_proto::{ClientMessage, ParticipantId, ServerMessage};

use crate::SfuConfig;

/// A cheap, cloneable handle to the running SFU.
#[derive(Clone)]
pub struct SfuHandle {
    inner: Arc<Shared>,
}

struct Shared {
    local_media_addr: SocketAddr,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    rooms: AtomicU64,
    participants: AtomicU64,
    forwarded_packets: AtomicU64,
    forwarded_bytes: AtomicU64,
}

/// A signalling connection's end of the SFU: its participant id and the messages the SFU sends
/// it. When `events` yields `None` the SFU has dropped the participant (after sending it an
/// [`ServerMessage::Error`] saying why) and the WebSocket should be closed.
pub struct Connection {
    pub id: ParticipantId,
    pub events: mpsc::Receiver<ServerMessage>,
}

/// Point-in-time numbers for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SfuMetrics {
    pub rooms: u64,
    pub participants: u64,
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
}

impl SfuHandle {
    /// Binds the media socket and starts the SFU thread.
    pub fn spawn(config: SfuConfig) -> std::io::Result<SfuHandle> {
        let _ = config;
        todo!("driver")
    }

    /// The address the media socket is bound to.
    pub fn local_media_addr(&self) -> SocketAddr {
        self.inner.local_media_addr
    }

    /// Registers a new signalling connection. Nothing is joined until a
    /// [`ClientMessage::Join`] is sent for it.
    pub fn connect(&self) -> Connection {
        todo!("driver")
    }

    /// Hands a parsed client message to the SFU. Validation of its content (room name,
    /// protocol version, SDP...) happens there and errors come back on the events channel.
    pub fn send(&self, id: ParticipantId, msg: ClientMessage) {
        let _ = (id, msg);
        todo!("driver")
    }

    /// The signalling connection is gone: the participant leaves its room.
    pub fn disconnect(&self, id: ParticipantId) {
        let _ = id;
        todo!("driver")
    }

    pub fn metrics(&self) -> SfuMetrics {
        let c = &self.inner.counters;
        SfuMetrics {
            rooms: c.rooms.load(Ordering::Relaxed),
            participants: c.participants.load(Ordering::Relaxed),
            forwarded_packets: c.forwarded_packets.load(Ordering::Relaxed),
            forwarded_bytes: c.forwarded_bytes.load(Ordering::Relaxed),
        }
    }

    /// Tells every participant the server is shutting down, stops the SFU thread and waits
    /// for it.
    pub fn shutdown(&self) {
        todo!("driver")
    }
}
