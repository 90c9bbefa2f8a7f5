use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Everything the SFU needs to know from the operator.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Where the one media UDP socket binds, e.g. `0.0.0.0:7882`.
    pub media_bind: SocketAddr,
    /// Addresses advertised as ICE host candidates (with `media_bind`'s port).
    pub public_ips: Vec<IpAddr>,
    pub limits: Limits,
}

/// Explicit, configurable limits on what one participant or room may use.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_participants_per_room: usize,
    /// Longest room name, in characters.
    pub max_room_chars: usize,
    /// Longest display name, in characters.
    pub max_name_chars: usize,
    /// Longest chat message, in characters.
    pub max_chat_chars: usize,
    /// Signalling messages queued for one slow client before it is disconnected.
    pub event_queue: usize,
    /// Kernel receive and send buffer of the media socket, in bytes. One socket carries every
    /// participant's media, so the default (~200 KiB) overflows under a burst of publisher
    /// packets and each packet lost there is lost for every subscriber.
    pub socket_buffer_bytes: usize,
    /// The length of a minute for meeting time limits and their warnings. Always 60 s in
    /// service; tests shorten it to see a 40-minute limit end a meeting in seconds.
    pub minute: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_participants_per_room: 100,
            max_room_chars: 64,
            max_name_chars: 64,
            max_chat_chars: 4000,
            event_queue: 1024,
            socket_buffer_bytes: 8 * 1024 * 1024,
            minute: Duration::from_secs(60),
        }
    }
}
