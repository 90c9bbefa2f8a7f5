//! Synthetic WebRTC participants for Veche.
//!
//! A [`SyntheticParticipant`] joins a room over the real signalling WebSocket and connects
//! media over real ICE, DTLS and SRTP with str0m (client side, RTP mode). It publishes
//! Opus-like audio and VP8-like video RTP whose payloads end in a [`Tag`] naming the sender,
//! answers keyframe requests with a key frame, and counts what it receives per remote
//! participant and kind: packets, reordering, gaps, key frames and latency ([`Stats`]).
//!
//! Each participant is one tokio task with its own UDP socket, so one process can run many:
//! the integration tests use a handful, the load tool many more.
//!
//! [`SignalClient`] is the bare signalling connection, for tests that need to send what no
//! well-behaved client would.

mod driver;
mod error;
mod participant;
mod payload;
mod signal;
mod source;
mod stats;

pub use error::Error;
pub use participant::{ParticipantOptions, SyntheticParticipant};
pub use payload::{TAG_LEN, Tag, vp8_starts_keyframe};
pub use signal::SignalClient;
pub use stats::{SentStats, Stats, TrackStats};
