//! Veche's SFU.
//!
//! [`Sfu`] is the sans-IO core: rooms, participants, their str0m `Rtc` instances and the
//! forwarding decisions. Time and packets come in as values; datagrams, signalling messages and
//! the next wake-up time come out of [`Sfu::poll_output`]. The [`driver`] module owns the UDP
//! socket, the clock and the channels to the signalling layer, and nothing else.

mod allocator;
mod config;
mod core;
pub mod driver;
mod id_map;
mod meeting;
mod participant;
mod quality;
mod rfc4571;
mod simulcast;
mod stun;
mod subscription;
mod udp_batch;

pub use crate::core::{
    Command, Counters, Datagram, E2eeLimits, HostControl, Output, ResumeKey, Sfu,
};
pub use config::{IceTcpLimits, Limits, SfuConfig};
pub use driver::{Connection, SfuHandle, SfuMetrics, ShardStats};
pub use meeting::{
    AuditEvent, ControlError, JoinGrant, JoinRequest, LiveMeeting, MeetingRef, MeetingSnapshot,
    MeetingStart, MeetingUsage, Presence, Remembered, RemoteActor, SfuEvent, UserRef,
};
pub use subscription::MungerState;

/// Internal parsers reachable by the fuzz targets (`crates/veche-fuzz`, `fuzz/`). Not part of
/// the API.
#[doc(hidden)]
pub mod fuzzing {
    /// See `stun::local_ufrag`: the routing peek at a STUN request from an unknown address.
    pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
        crate::stun::local_ufrag(datagram)
    }

    /// See `stun::is_stun`.
    pub fn is_stun(datagram: &[u8]) -> bool {
        crate::stun::is_stun(datagram)
    }
}
