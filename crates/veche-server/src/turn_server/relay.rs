//! The built-in TURN server without sockets: the protocol of `turn-server-proto` (one instance
//! per listener) wrapped in Veche's relay policy. Time comes in as a value.
//!
//! Driving contract: after every input ([`RelayCore::recv_from_client`],
//! [`RelayCore::recv_from_peer`], [`RelayCore::relay_bound`], [`RelayCore::client_closed`])
//! and when the instant returned by [`RelayCore::poll`] is reached, call `poll` and then drain
//! [`RelayCore::poll_output`] until it returns `None`.
//!
//! What the wrapper adds to the protocol crate:
//! - credentials: a request's `USERNAME` is checked against the TURN REST scheme (expiry not
//!   past, password minted from the secret) before the crate sees it, which then checks the
//!   message integrity with that password; expired credentials get 401;
//! - not an open relay: CreatePermission and ChannelBind for a peer that is not one of
//!   Veche's media addresses get 403, Send indications to one are dropped, and every packet
//!   the crate would relay is checked again on its way out (so a permission for Veche's IP
//!   does not open its other ports) and on its way in;
//! - limits: allocations in all, per user and per client IP (508 past them), and a byte
//!   rate per allocation and direction past which packets are dropped;
//! - only UDP relays (RFC 6062 TCP allocations are refused: media is UDP).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tracing::{debug, info, warn};
use turn_server_proto::api::{
    SocketAllocateError, TcpConnectError, Transmit, TurnServerApi, TurnServerPollRet,
};
use turn_server_proto::server::TurnServer;
use turn_server_proto::types::attribute::XorPeerAddress;
use turn_server_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, SEND};
use turn_server_proto::types::prelude::DelayedTransmitBuild;
use turn_server_proto::types::stun::attribute::{ErrorCode, Username};
use turn_server_proto::types::stun::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageIntegrityCredentials,
    MessageWriteVec,
};
use turn_server_proto::types::stun::prelude::{MessageWrite, MessageWriteExt};
use turn_server_proto::types::transmit::TransmitBuild;
use turn_server_proto::types::{AddressFamily, Instant, TransportType};

use crate::turn::TurnRest;

/// The realm of the long-term credentials (RFC 8489 §9.2).
pub(crate) const REALM: &str = "veche";

/// The shortest nonce expiry the protocol crate accepts (it panics below).
pub(crate) const MIN_NONCE_EXPIRY: Duration = Duration::from_secs(30);

/// The limits of the built-in TURN server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RelayLimits {
    pub(crate) max_allocations: usize,
    pub(crate) max_allocations_per_user: usize,
    pub(crate) max_allocations_per_ip: usize,
    /// Per allocation and direction; packets past it are dropped.
    pub(crate) max_kbit_per_sec: u32,
    /// Client addresses each listener keeps a nonce for (anyone's requests get one, so this
    /// bounds what unauthenticated traffic can make the server remember).
    pub(crate) max_nonces: usize,
    /// How long a nonce is valid; at least [`MIN_NONCE_EXPIRY`].
    pub(crate) nonce_expiry: Duration,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_allocations: 1000,
            // A browser makes one allocation per TURN URL (two here) and ICE restart.
            max_allocations_per_user: 10,
            // Offices behind one NAT address.
            max_allocations_per_ip: 200,
            max_kbit_per_sec: 20_000,
            // A few tens of MB per listener when full; a flood from this many addresses then
            // cycles the table no faster than clients answer a 438.
            max_nonces: 100_000,
            nonce_expiry: Duration::from_secs(3600),
        }
    }
}

/// Which listener a client reached the server on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Listener {
    Udp,
    /// TLS over TCP: the driver decrypts and frames, the core sees whole messages.
    Tls,
}

/// What the driver must do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// Send to a client through the listener it came on.
    ToClient {
        listener: Listener,
        client: SocketAddr,
        data: Vec<u8>,
    },
    /// Send from a relay socket to a peer (always one of Veche's media addresses).
    ToPeer {
        relayed: SocketAddr,
        peer: SocketAddr,
        data: Vec<u8>,
    },
    /// Bind a UDP relay socket for a client's allocation and report it with
    /// [`RelayCore::relay_bound`].
    BindRelay {
        listener: Listener,
        client: SocketAddr,
        family: AddressFamily,
    },
    /// The allocation ended: close its relay socket.
    CloseRelay { relayed: SocketAddr },
    /// Close a client's TLS connection.
    CloseClient { client: SocketAddr },
}

/// Counters, logged as allocations end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RelayStats {
    pub(crate) refused_peers: u64,
    pub(crate) refused_credentials: u64,
    pub(crate) refused_allocations: u64,
    pub(crate) dropped_over_rate: u64,
}

/// A token bucket of bytes.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(now: Instant, burst: f64) -> Self {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    fn take(&mut self, now: Instant, bytes: usize, rate: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        // One second of the rate as burst.
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Relay {
    listener: Listener,
    client: SocketAddr,
    user: Option<String>,
    up: Bucket,
    down: Bucket,
    warned: bool,
}

struct Server {
    listener: Listener,
    proto: TurnServer,
    /// Nonce evictions already logged, and when the next log line may be written.
    evictions_logged: u64,
    next_eviction_log: Option<Instant>,
}

/// How often a full nonce table is logged, at most.
const EVICTION_LOG_INTERVAL: Duration = Duration::from_secs(60);

impl Server {
    /// Logs, at most once a minute, that the nonce table was full and nonces were evicted.
    fn log_evictions(&mut self, now: Instant) {
        let evicted = self.proto.evicted_nonce_count();
        if evicted == self.evictions_logged || self.next_eviction_log.is_some_and(|at| now < at) {
            return;
        }
        warn!(
            listener = ?self.listener,
            evicted = evicted - self.evictions_logged,
            kept = self.proto.nonce_count(),
            "TURN nonce table full: the oldest nonces were dropped (requests from very many \
             addresses); their clients get 438 and retry"
        );
        self.evictions_logged = evicted;
        self.next_eviction_log = Some(now + EVICTION_LOG_INTERVAL);
    }
}

/// The protocol state of every listener plus the relay policy; see the module docs.
pub(crate) struct RelayCore {
    servers: Vec<Server>,
    rest: TurnRest,
    peers: HashSet<SocketAddr>,
    limits: RelayLimits,
    /// The username of each client's latest Allocate request, for the per-user limit.
    allocating: HashMap<(Listener, SocketAddr), String>,
    relays: HashMap<SocketAddr, Relay>,
    per_user: HashMap<String, usize>,
    per_ip: HashMap<IpAddr, usize>,
    /// Relays asked of the driver and not yet bound.
    binding: usize,
    out: VecDeque<Output>,
    stats: RelayStats,
}

impl std::fmt::Debug for RelayCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayCore")
            .field("peers", &self.peers)
            .field("limits", &self.limits)
            .field("relays", &self.relays.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl RelayCore {
    /// `listeners`: each listener's own address; `peers`: Veche's media addresses, the only
    /// ones relayed to.
    pub(crate) fn new(
        listeners: &[(Listener, SocketAddr)],
        rest: TurnRest,
        peers: impl IntoIterator<Item = SocketAddr>,
        limits: RelayLimits,
    ) -> Self {
        let servers = listeners
            .iter()
            .map(|&(listener, addr)| {
                let mut proto = TurnServer::new(transport_of(listener), addr, REALM.to_owned());
                // Both checked when the configuration was read; the crate panics past them.
                proto.set_max_nonces(limits.max_nonces.max(1));
                proto.set_nonce_expiry_duration(limits.nonce_expiry.max(MIN_NONCE_EXPIRY));
                Server {
                    listener,
                    proto,
                    evictions_logged: 0,
                    next_eviction_log: None,
                }
            })
            .collect();
        RelayCore {
            servers,
            rest,
            peers: peers.into_iter().collect(),
            limits,
            allocating: HashMap::new(),
            relays: HashMap::new(),
            per_user: HashMap::new(),
            per_ip: HashMap::new(),
            binding: 0,
            out: VecDeque::new(),
            stats: RelayStats::default(),
        }
    }

    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn server_mut(&mut self, listener: Listener) -> Option<&mut TurnServer> {
        self.servers
            .iter_mut()
            .find(|s| s.listener == listener)
            .map(|s| &mut s.proto)
    }

    fn listen_addr(&self, listener: Listener) -> Option<SocketAddr> {
        self.servers
            .iter()
            .find(|s| s.listener == listener)
            .map(|s| s.proto.listen_address())
    }

    /// One whole STUN message or ChannelData frame from a client.
    pub(crate) fn recv_from_client(
        &mut self,
        listener: Listener,
        client: SocketAddr,
        frame: &[u8],
        now: Instant,
        unix_now: u64,
    ) {
        if frame.is_empty() {
            return;
        }
        if let Ok(msg) = Message::from_bytes(frame)
            && let Some(reply) = self.screen(listener, client, &msg, unix_now)
        {
            if let Some(data) = reply {
                self.out.push_back(Output::ToClient {
                    listener,
                    client,
                    data,
                });
            }
            return;
        }
        let Some(listen) = self.listen_addr(listener) else {
            debug_assert!(false, "a frame from a listener without a server");
            return;
        };
        let transmit = Transmit::new(frame, transport_of(listener), client, listen);
        let Some(server) = self.servers.iter_mut().find(|s| s.listener == listener) else {
            return;
        };
        let out = server.proto.recv(transmit, now);
        server.log_evictions(now);
        if let Some(out) = out {
            self.route(out, now);
        }
        self.drain_transmits(listener, now);
    }

    /// The policy's look at a client's STUN message before the protocol crate's.
    /// `None`: hand it on; `Some(reply)`: refused, with this answer (none for indications).
    fn screen(
        &mut self,
        listener: Listener,
        client: SocketAddr,
        msg: &Message<'_>,
        unix_now: u64,
    ) -> Option<Option<Vec<u8>>> {
        let class = msg.class();
        let method = msg.method();
        let mut credentials = None;
        if let Ok(username) = msg.attribute::<Username>() {
            let username = username.username().to_owned();
            match self.rest.password_for(&username, unix_now) {
                Ok(password) => {
                    // Only a request signed with the minted password makes its user known to
                    // the crate, which keeps every user it is given: usernames made up by
                    // anyone would otherwise fill its memory.
                    let key = MessageIntegrityCredentials::LongTerm(LongTermKeyCredentials::new(
                        username.clone(),
                        password.clone(),
                        REALM.into(),
                    ));
                    if msg.validate_integrity(&key).is_ok() {
                        for server in &mut self.servers {
                            server.proto.add_user(username.clone(), password.clone());
                        }
                        credentials = Some((username, password));
                    }
                }
                Err(e) => {
                    self.stats.refused_credentials += 1;
                    debug!(%client, error = %e, "TURN request refused");
                    return Some(
                        (class == MessageClass::Request).then(|| {
                            error_reply(msg, ErrorCode::UNAUTHORIZED, "Unauthorized", None)
                        }),
                    );
                }
            }
        }
        if class == MessageClass::Request
            && method == ALLOCATE
            && let Some((username, _)) = &credentials
        {
            if self.allocating.len() > 4 * self.limits.max_allocations {
                self.allocating.clear();
            }
            self.allocating.insert((listener, client), username.clone());
        }
        if method == CREATE_PERMISSION || method == CHANNEL_BIND || method == SEND {
            let refused = (0..)
                .map_while(|n| msg.nth_attribute::<XorPeerAddress>(n).ok())
                .map(|attr| attr.addr(msg.transaction_id()))
                .find(|peer| !self.peers.contains(peer));
            if let Some(peer) = refused {
                self.stats.refused_peers += 1;
                warn!(
                    %client,
                    %peer,
                    "TURN refused a peer that is not one of Veche's media addresses"
                );
                return Some((class == MessageClass::Request).then(|| {
                    let signer = credentials.as_ref().map(|(u, p)| {
                        LongTermKeyCredentials::new(u.clone(), p.clone(), REALM.into())
                    });
                    error_reply(msg, ErrorCode::FORBIDDEN, "Forbidden", signer)
                }));
            }
        }
        None
    }

    /// A datagram that reached the relay socket `relayed` from `peer`.
    pub(crate) fn recv_from_peer(
        &mut self,
        relayed: SocketAddr,
        peer: SocketAddr,
        data: &[u8],
        now: Instant,
    ) {
        if !self.peers.contains(&peer) {
            self.stats.refused_peers += 1;
            debug!(%relayed, %peer, "TURN dropped a datagram from a non-Veche address");
            return;
        }
        let rate = self.byte_rate();
        let Some(relay) = self.relays.get_mut(&relayed) else {
            return;
        };
        if !relay.down.take(now, data.len(), rate) {
            self.stats.dropped_over_rate += 1;
            return;
        }
        let listener = relay.listener;
        let Some(server) = self.server_mut(listener) else {
            return;
        };
        let transmit = Transmit::new(data, TransportType::Udp, peer, relayed);
        if let Some(out) = server.recv(transmit, now) {
            self.route(out, now);
        }
    }

    /// The driver's answer to [`Output::BindRelay`].
    pub(crate) fn relay_bound(
        &mut self,
        listener: Listener,
        client: SocketAddr,
        family: AddressFamily,
        relayed: Result<SocketAddr, SocketAllocateError>,
        now: Instant,
    ) {
        self.binding = self.binding.saturating_sub(1);
        let Some(listen) = self.listen_addr(listener) else {
            return;
        };
        let user = self.allocating.remove(&(listener, client));
        if let Ok(addr) = relayed {
            let rate = self.byte_rate();
            if let Some(u) = &user {
                *self.per_user.entry(u.clone()).or_default() += 1;
            }
            *self.per_ip.entry(client.ip()).or_default() += 1;
            info!(%client, relayed = %addr, user = ?user, "TURN allocation");
            self.relays.insert(
                addr,
                Relay {
                    listener,
                    client,
                    user,
                    up: Bucket::new(now, rate),
                    down: Bucket::new(now, rate),
                    warned: false,
                },
            );
        }
        let transport = transport_of(listener);
        if let Some(server) = self.server_mut(listener) {
            server.allocated_socket(
                transport,
                listen,
                client,
                TransportType::Udp,
                family,
                relayed,
                now,
            );
        }
        self.drain_transmits(listener, now);
    }

    /// A TLS client's connection ended.
    pub(crate) fn client_closed(&mut self, listener: Listener, client: SocketAddr, now: Instant) {
        self.allocating.remove(&(listener, client));
        let Some(listen) = self.listen_addr(listener) else {
            return;
        };
        if let Some(server) = self.server_mut(listener) {
            // An empty TCP read is how the crate hears of a closed connection.
            let _ = server.recv(
                Transmit::new(&[][..], transport_of(listener), client, listen),
                now,
            );
        }
    }

    /// Drives timers and allocation requests; returns when to call again.
    pub(crate) fn poll(&mut self, now: Instant) -> Instant {
        let mut next = now + Duration::from_secs(60);
        for i in 0..self.servers.len() {
            let listener = self.servers[i].listener;
            loop {
                let ret = self.servers[i].proto.poll(now);
                match ret {
                    TurnServerPollRet::WaitUntil(at) => {
                        next = next.min(at);
                        break;
                    }
                    TurnServerPollRet::AllocateSocket {
                        transport,
                        listen_addr,
                        client_addr,
                        allocation_transport,
                        family,
                    } => match self.admit(listener, client_addr, allocation_transport, family) {
                        Ok(()) => {
                            self.binding += 1;
                            self.out.push_back(Output::BindRelay {
                                listener,
                                client: client_addr,
                                family,
                            });
                        }
                        Err(e) => {
                            self.stats.refused_allocations += 1;
                            self.allocating.remove(&(listener, client_addr));
                            self.servers[i].proto.allocated_socket(
                                transport,
                                listen_addr,
                                client_addr,
                                allocation_transport,
                                family,
                                Err(e),
                                now,
                            );
                        }
                    },
                    TurnServerPollRet::TcpConnect {
                        relayed_addr,
                        peer_addr,
                        listen_addr,
                        client_addr,
                    } => {
                        // Unreachable while TCP allocations are refused; refuse anyway.
                        self.servers[i].proto.tcp_connected(
                            relayed_addr,
                            peer_addr,
                            listen_addr,
                            client_addr,
                            Err(TcpConnectError::Forbidden),
                            now,
                        );
                    }
                    TurnServerPollRet::TcpClose {
                        local_addr,
                        remote_addr,
                    } => {
                        if self.listen_addr(listener) == Some(local_addr) {
                            self.out.push_back(Output::CloseClient {
                                client: remote_addr,
                            });
                        }
                    }
                    TurnServerPollRet::SocketClose {
                        transport: _,
                        listen_addr,
                    } => self.release(listen_addr),
                }
            }
            self.drain_transmits(listener, now);
        }
        next
    }

    /// Whether a new allocation fits the limits.
    fn admit(
        &self,
        listener: Listener,
        client: SocketAddr,
        transport: TransportType,
        family: AddressFamily,
    ) -> Result<(), SocketAllocateError> {
        if transport != TransportType::Udp {
            info!(%client, "TURN refused a TCP allocation: only UDP relays to media");
            return Err(SocketAllocateError::InsufficientCapacity);
        }
        let wants_v4 = family == AddressFamily::IPV4;
        if !self.peers.iter().any(|p| p.is_ipv4() == wants_v4) {
            return Err(SocketAllocateError::AddressFamilyNotSupported);
        }
        let user = self.allocating.get(&(listener, client));
        let over = if self.relays.len() + self.binding >= self.limits.max_allocations {
            Some("allocations in all")
        } else if self.per_ip.get(&client.ip()).copied().unwrap_or(0)
            >= self.limits.max_allocations_per_ip
        {
            Some("allocations per address")
        } else if user.is_some_and(|u| {
            self.per_user.get(u).copied().unwrap_or(0) >= self.limits.max_allocations_per_user
        }) {
            Some("allocations per user")
        } else {
            None
        };
        if let Some(limit) = over {
            warn!(%client, user = ?user, limit, "TURN allocation refused: limit reached");
            return Err(SocketAllocateError::InsufficientCapacity);
        }
        Ok(())
    }

    fn release(&mut self, relayed: SocketAddr) {
        let Some(relay) = self.relays.remove(&relayed) else {
            return;
        };
        if let Some(u) = &relay.user
            && let Some(n) = self.per_user.get_mut(u)
        {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(u);
            }
        }
        if let Some(n) = self.per_ip.get_mut(&relay.client.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&relay.client.ip());
            }
        }
        info!(
            client = %relay.client,
            %relayed,
            open = self.relays.len(),
            refused_peers = self.stats.refused_peers,
            refused_credentials = self.stats.refused_credentials,
            refused_allocations = self.stats.refused_allocations,
            dropped_over_rate = self.stats.dropped_over_rate,
            "TURN allocation ended"
        );
        self.out.push_back(Output::CloseRelay { relayed });
    }

    fn byte_rate(&self) -> f64 {
        f64::from(self.limits.max_kbit_per_sec) * 125.0
    }

    fn drain_transmits(&mut self, listener: Listener, now: Instant) {
        loop {
            let Some(server) = self.server_mut(listener) else {
                return;
            };
            let Some(t) = server.poll_transmit(now) else {
                return;
            };
            self.route_built(t, now);
        }
    }

    fn route<T: DelayedTransmitBuild + std::fmt::Debug>(
        &mut self,
        out: TransmitBuild<T>,
        now: Instant,
    ) {
        let built = out.build();
        self.route_built(built, now);
    }

    /// Where a transmit of the protocol crate goes: a client (its source is a listener) or a
    /// peer (its source is a relay socket, and the peer must be Veche's).
    fn route_built(&mut self, t: Transmit<Vec<u8>>, now: Instant) {
        if let Some(server) = self
            .servers
            .iter()
            .find(|s| s.proto.listen_address() == t.from && transport_of(s.listener) == t.transport)
        {
            self.out.push_back(Output::ToClient {
                listener: server.listener,
                client: t.to,
                data: t.data,
            });
            return;
        }
        let rate = self.byte_rate();
        let allowed = self.peers.contains(&t.to);
        let Some(relay) = self.relays.get_mut(&t.from) else {
            debug!(from = %t.from, to = %t.to, "TURN transmit from an unknown address dropped");
            return;
        };
        if !allowed {
            self.stats.refused_peers += 1;
            if !relay.warned {
                relay.warned = true;
                warn!(
                    client = %relay.client,
                    peer = %t.to,
                    "TURN dropped data to a peer that is not one of Veche's media addresses"
                );
            }
            return;
        }
        if !relay.up.take(now, t.data.len(), rate) {
            self.stats.dropped_over_rate += 1;
            return;
        }
        self.out.push_back(Output::ToPeer {
            relayed: t.from,
            peer: t.to,
            data: t.data,
        });
    }
}

fn transport_of(listener: Listener) -> TransportType {
    match listener {
        Listener::Udp => TransportType::Udp,
        Listener::Tls => TransportType::Tcp,
    }
}

/// An error response to `msg`, signed when the credentials are known (clients may ignore an
/// unsigned error to an authenticated request, but a refusal is a refusal either way).
fn error_reply(
    msg: &Message<'_>,
    code: u16,
    reason: &str,
    signer: Option<LongTermKeyCredentials>,
) -> Vec<u8> {
    let mut reply = Message::builder_error(msg, MessageWriteVec::with_capacity(128));
    // The code is one of the constants and the reason short ASCII: building cannot fail.
    if let Ok(error) = ErrorCode::builder(code).reason(reason).build() {
        let _ = reply.add_attribute(&error);
    }
    if let Some(credentials) = signer {
        let _ = reply.add_message_integrity(
            &MessageIntegrityCredentials::LongTerm(credentials),
            IntegrityAlgorithm::Sha1,
        );
    }
    let _ = reply.add_fingerprint();
    reply.finish()
}

#[cfg(test)]
mod tests {
    use turn_server_proto::types::stun::message::{MessageType, TransactionId};

    use super::*;

    const LISTEN: &str = "127.0.0.1:3478";
    const MEDIA: &str = "127.0.0.1:7882";

    fn core() -> RelayCore {
        core_with(RelayLimits::default())
    }

    fn core_with(limits: RelayLimits) -> RelayCore {
        let rest = TurnRest {
            urls: vec![],
            secret: "0123456789abcdef".into(),
            ttl: Duration::from_secs(60),
        };
        RelayCore::new(
            &[(Listener::Udp, LISTEN.parse().unwrap())],
            rest,
            [MEDIA.parse().unwrap()],
            limits,
        )
    }

    fn create_permission(username: &str, peer: SocketAddr) -> Vec<u8> {
        let mut msg = Message::builder(
            MessageType::from_class_method(MessageClass::Request, CREATE_PERMISSION),
            TransactionId::generate(),
            MessageWriteVec::new(),
        );
        let tid = msg.transaction_id();
        msg.add_attribute(&XorPeerAddress::new(peer, tid)).unwrap();
        msg.add_attribute(&Username::new(username).unwrap())
            .unwrap();
        msg.finish()
    }

    /// The error code of the one reply the core sent, if it sent one.
    fn reply_code(core: &mut RelayCore) -> Option<u16> {
        let Some(Output::ToClient { data, .. }) = core.poll_output() else {
            return None;
        };
        let msg = Message::from_bytes(&data).unwrap();
        msg.attribute::<ErrorCode>().ok().map(|e| e.code())
    }

    #[test]
    fn refuses_expired_credentials_and_foreign_peers_before_the_protocol() {
        let client: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let now = Instant::from_nanos(0);
        let mut c = core();
        let expired = create_permission("1000:1", MEDIA.parse().unwrap());
        c.recv_from_client(Listener::Udp, client, &expired, now, 2000);
        assert_eq!(reply_code(&mut c), Some(ErrorCode::UNAUTHORIZED));
        assert_eq!(c.stats.refused_credentials, 1);

        // Another port of Veche's IP: 403, whatever the credentials.
        let foreign = create_permission("3000:1", "127.0.0.1:9".parse().unwrap());
        c.recv_from_client(Listener::Udp, client, &foreign, now, 2000);
        assert_eq!(reply_code(&mut c), Some(ErrorCode::FORBIDDEN));
        assert_eq!(c.stats.refused_peers, 1);

        // Veche's media address goes on to the protocol, which wants its nonce first.
        let media = create_permission("3000:1", MEDIA.parse().unwrap());
        c.recv_from_client(Listener::Udp, client, &media, now, 2000);
        assert_ne!(reply_code(&mut c), Some(ErrorCode::FORBIDDEN));
        assert_eq!(c.stats.refused_peers, 1);
    }

    #[test]
    fn unsigned_requests_from_many_addresses_leave_at_most_max_nonces() {
        let limits = RelayLimits {
            max_nonces: 64,
            ..RelayLimits::default()
        };
        let mut c = core_with(limits);
        let now = Instant::from_nanos(0);
        let allocate = Message::builder(
            MessageType::from_class_method(MessageClass::Request, ALLOCATE),
            TransactionId::generate(),
            MessageWriteVec::new(),
        )
        .finish();
        for i in 0..1000u32 {
            let client = SocketAddr::new(std::net::Ipv4Addr::from(0x7f01_0000 + i).into(), 5000);
            c.recv_from_client(Listener::Udp, client, &allocate, now, 2000);
            assert_eq!(reply_code(&mut c), Some(ErrorCode::UNAUTHORIZED));
        }
        assert_eq!(c.servers[0].proto.nonce_count(), 64);
        assert_eq!(c.servers[0].proto.evicted_nonce_count(), 1000 - 64);
        assert_eq!(
            c.servers[0].evictions_logged, 1,
            "logged once, at the first"
        );
    }

    #[test]
    fn drops_datagrams_from_foreign_peers() {
        let mut c = core();
        let now = Instant::from_nanos(0);
        c.recv_from_peer(
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:9".parse().unwrap(),
            b"hello",
            now,
        );
        assert_eq!(c.poll_output(), None);
        assert_eq!(c.stats.refused_peers, 1);
    }

    #[test]
    fn the_bucket_holds_one_second_of_the_rate() {
        let start = Instant::from_nanos(0);
        let mut bucket = Bucket::new(start, 1000.0);
        assert!(bucket.take(start, 1000, 1000.0));
        assert!(!bucket.take(start, 1, 1000.0));
        let later = start + Duration::from_millis(500);
        assert!(bucket.take(later, 500, 1000.0));
        assert!(!bucket.take(later, 1, 1000.0));
    }
}
