use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::core::{E2eeLimits, ResumeKey};

/// Everything the SFU needs to know from the operator.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Where the media UDP sockets bind, e.g. `0.0.0.0:7882`: shard *i* binds this port + *i*
    /// (with port 0, each shard gets a free port of its own).
    pub media_bind: SocketAddr,
    /// ICE-TCP (RFC 6544 passive candidates, RFC 4571 framing): shard *i* listens for TCP on
    /// the IP of `media_bind` and this port + *i* (with 0, each shard gets a free port of its
    /// own). `None`: no ICE-TCP, UDP only.
    pub ice_tcp_port: Option<u16>,
    /// Addresses advertised as ICE host candidates (with the port of the participant's
    /// shard).
    pub public_ips: Vec<IpAddr>,
    pub limits: Limits,
    /// Signs guests' resume tokens; the same key must come back after a restart for them to
    /// be recognised.
    pub resume_key: ResumeKey,
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
    /// Kernel receive and send buffer of each media socket, in bytes. One socket carries all
    /// media of a shard's rooms, so the default (~200 KiB) overflows under a burst of publisher
    /// packets and each packet lost there is lost for every subscriber.
    pub socket_buffer_bytes: usize,
    /// Media shards: threads that each run their own core, socket and rooms (all
    /// participants of a room are on one shard). One per CPU by default, so a machine's cores
    /// all forward media without sharing any state on the forwarding path.
    pub media_shards: usize,
    /// The length of a minute for meeting time limits and their warnings. Always 60 s in
    /// service; tests shorten it to see a 40-minute limit end a meeting in seconds.
    pub minute: Duration,
    /// How long a meeting brought back after a restart waits for the first of its people to
    /// come back before it is over.
    pub resume_window: Duration,
    /// How long a guest's resume token is good for.
    pub resume_token_ttl: Duration,
    pub ice_tcp: IceTcpLimits,
    /// The MLS delivery service of end-to-end encrypted meetings.
    pub e2ee: E2eeLimits,
    /// When meetings' snapshots are stored (the server reports each stored one through
    /// [`crate::SfuHandle::saved`]): the longest the news of a change to a meeting's live
    /// state — a host mute, the lock, a role, an admission, a raised hand — waits for its
    /// snapshot to be stored before it goes out anyway. `None`: nothing is stored, news goes
    /// out at once.
    pub news_wait: Option<Duration>,
}

/// What ICE-TCP connections may hold, so that a flood of them cannot exhaust the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IceTcpLimits {
    /// Open ICE-TCP connections over all shards; further ones are closed on accept.
    pub max_connections: usize,
    /// Open ICE-TCP connections from one IP address (a browser opens one or two; many
    /// participants behind one NAT share an address).
    pub max_connections_per_ip: usize,
    /// Bytes queued to send on one connection; past it, frames are dropped as UDP would
    /// drop datagrams (a reader that stops reading holds no more than this).
    pub max_buffered_bytes: usize,
    /// A connection that brings no frame a participant accepts for this long is closed:
    /// junk, a stalled handshake, or a participant gone without a word. Browsers send
    /// consent checks every few seconds, so a live one never reaches it.
    pub idle_timeout: Duration,
}

impl Default for IceTcpLimits {
    fn default() -> Self {
        IceTcpLimits {
            max_connections: 2000,
            max_connections_per_ip: 200,
            max_buffered_bytes: 256 * 1024,
            idle_timeout: Duration::from_secs(30),
        }
    }
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
            // The CPUs this process may run on (`taskset` included).
            media_shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            minute: Duration::from_secs(60),
            resume_window: Duration::from_secs(10 * 60),
            resume_token_ttl: Duration::from_secs(24 * 3600),
            ice_tcp: IceTcpLimits::default(),
            e2ee: E2eeLimits::default(),
            news_wait: None,
        }
    }
}
