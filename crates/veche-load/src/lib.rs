//! Synthetic WebRTC participants for Veche.
//!
//! A [`SyntheticParticipant`] joins a room over the real signalling WebSocket and connects
//! media over real ICE, DTLS and SRTP with str0m (client side, RTP mode). It publishes
//! Opus-like audio and VP8-like video RTP (and a screen share on demand) whose payloads end in
//! a [`Tag`] naming the sender, answers keyframe requests with a key frame at once and NACKs
//! with retransmissions (str0m's RTX cache), and counts what it receives per remote
//! participant and kind: packets, reordering, gaps and their recovery, pauses, key frames and
//! latency ([`Stats`]). It can drop incoming RTP on purpose to exercise NACK, send its
//! camera in three simulcast layers, report the tile size it shows videos at, and receive
//! through an emulated narrow downlink ([`DownlinkLimit`]).
//!
//! Module map: `participant` is the handle, `driver` the task that owns the sockets and the
//! `Rtc`, `source` the sans-IO media clock, `downlink` the sans-IO narrow link, `clip` the real VP8 fixtures and their RFC 7741
//! packetization, `payload` the packet formats, `stats` and `histogram` the bookkeeping,
//! `janus` the signalling for Janus's VideoRoom (the same media against another SFU).
//!
//! Each participant is one tokio task with its own UDP socket, so one process can run many:
//! the integration tests use a handful, the `veche-load` binary hundreds (see
//! `bench/README.md`).
//!
//! [`SignalClient`] is the bare signalling connection, for tests that need to send what no
//! well-behaved client would.

mod clip;
mod downlink;
mod driver;
mod error;
mod histogram;
mod janus;
mod participant;
mod payload;
mod signal;
mod source;
mod stats;
mod tcp_link;

pub use clip::{Clip, MAX_VP8_PAYLOAD, SIMULCAST_LAYERS};
pub use downlink::DownlinkLimit;
pub use error::Error;
pub use histogram::Histogram;
pub use participant::{ParticipantOptions, SyntheticParticipant, create_janus_room};
pub use payload::{TAG_LEN, Tag, vp8_keyframe_size, vp8_starts_keyframe};
pub use signal::SignalClient;
pub use stats::{CapturedPacket, SentStats, Stats, TrackStats};

/// For the binaries: logs to stderr, filtered by `VECHE_LOAD_LOG` (default `warn`), and a
/// single-threaded runtime — a tool's cost is then one core's worth, easy to pin and to
/// reason about; hundreds of participants are hundreds of small tasks on it.
pub fn tool_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VECHE_LOAD_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
