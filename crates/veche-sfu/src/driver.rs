//! The I/O shell around the sans-IO core: UDP sockets, ICE-TCP listeners ([`ice_tcp`]), a
//! clock, and channels to the signalling layer. Media runs on `media_shards` threads ("shards"), each with its own core,
//! socket and single-threaded runtime: a core is never shared and needs no locks, and shards
//! share nothing on the forwarding path. A room lives on one shard, picked from its name
//! (see [`shards`] for how connections are routed there).

mod ice_tcp;
mod shards;

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use str0m::net::Protocol;
use tokio::io::Interest;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};
use veche_proto::{ClientMessage, ErrorCode, ParticipantId, ServerMessage};

use crate::SfuConfig;
use crate::core::{HostControl, Output, Sfu};
use crate::meeting::{
    ControlError, JoinRequest, LiveMeeting, MeetingSnapshot, RemoteActor, SfuEvent,
};
use crate::udp_batch::SendBatch;
use ice_tcp::{Gate, IceTcp};
use shards::{Route, ShardLinks, shard_of};

/// A cheap, cloneable handle to the running SFU.
#[derive(Clone)]
pub struct SfuHandle {
    inner: Arc<Shared>,
}

struct Shared {
    shards: Vec<Shard>,
    /// Where each signalling connection's commands go: held here until its first join
    /// names a room (and so a shard), then that shard. Signalling only; the forwarding path
    /// never touches it.
    routes: Mutex<HashMap<ParticipantId, Route>>,
    next_id: AtomicU64,
    event_queue: usize,
    /// ICE-TCP connections of all shards; `None` without ICE-TCP.
    ice_tcp: Option<Arc<Gate>>,
}

struct Shard {
    local_media_addr: SocketAddr,
    local_ice_tcp_addr: Option<SocketAddr>,
    commands: mpsc::UnboundedSender<Command>,
    /// Written by this shard's thread only, so shards never contend for a cache line.
    counters: Arc<Counters>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Counters {
    rooms: AtomicU64,
    participants: AtomicU64,
    forwarded_packets: AtomicU64,
    forwarded_bytes: AtomicU64,
    send_dropped: AtomicU64,
    ice_tcp_dropped: AtomicU64,
    /// Participants whose link has been graded, and those graded poor.
    graded: AtomicU64,
    poor: AtomicU64,
}

enum Command {
    Connect(ParticipantId, mpsc::Sender<ServerMessage>),
    Message(ParticipantId, ClientMessage),
    Join(ParticipantId, Box<JoinRequest>),
    Control(Box<ControlRequest>),
    Live(String, oneshot::Sender<Option<LiveMeeting>>),
    Restore(Box<MeetingSnapshot>),
    Saved { room: String, seq: u64 },
    Disconnect(ParticipantId),
    Shutdown,
}

struct ControlRequest {
    room: String,
    actor: RemoteActor,
    action: HostControl,
    reply: oneshot::Sender<Result<(), ControlError>>,
}

/// A signalling connection's end of the SFU: its participant id and the messages the SFU sends
/// it. When `events` yields `None` the SFU has dropped the participant (after sending it an
/// [`ServerMessage::Error`] saying why) and the WebSocket should be closed.
pub struct Connection {
    pub id: ParticipantId,
    pub events: mpsc::Receiver<ServerMessage>,
}

/// Point-in-time numbers of one shard, for the operator's dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShardStats {
    pub shard: usize,
    pub rooms: u64,
    pub participants: u64,
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    /// Participants whose connection quality has been graded (after their first few
    /// seconds), and how many of them are graded poor.
    pub graded_participants: u64,
    pub poor_participants: u64,
}

/// Point-in-time numbers for `/metrics`, summed over shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SfuMetrics {
    pub rooms: u64,
    pub participants: u64,
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    /// Datagrams dropped because the socket buffer was full or the kernel refused them.
    pub send_dropped: u64,
    /// ICE-TCP connections open now.
    pub ice_tcp_connections: u64,
    /// ICE-TCP connections refused on accept for a limit (in total or per address).
    pub ice_tcp_refused: u64,
    /// Frames not sent on ICE-TCP because the connection's send queue was full or it had
    /// closed.
    pub ice_tcp_dropped: u64,
}

impl SfuHandle {
    /// Binds the media sockets and starts the SFU threads, discarding their [`SfuEvent`]s.
    pub fn spawn(config: SfuConfig) -> std::io::Result<SfuHandle> {
        SfuHandle::spawn_with_events(config, mpsc::unbounded_channel().0)
    }

    /// Binds one media socket per shard (`media_bind`'s port + shard index, or a free port
    /// each when it is 0) and starts the shards' threads. Audit entries and usage records of
    /// every shard go to `events` (unbounded: they are few — one per host action or finished
    /// meeting — and must not be lost).
    pub fn spawn_with_events(
        config: SfuConfig,
        events: mpsc::UnboundedSender<SfuEvent>,
    ) -> std::io::Result<SfuHandle> {
        let count = config.limits.media_shards.max(1);
        // Bind every socket first: a taken port fails the whole start with nothing to undo.
        let mut sockets = Vec::with_capacity(count);
        let mut listeners = Vec::with_capacity(count);
        for index in 0..count {
            sockets.push(bind_media_socket(&config, index)?);
            listeners.push(bind_ice_tcp(&config, index)?);
        }
        let gate = config
            .ice_tcp_port
            .is_some()
            .then(|| Gate::new(config.limits.ice_tcp));
        let channels: Vec<_> = (0..count).map(|_| mpsc::unbounded_channel()).collect();
        let links = ShardLinks::new(channels.iter().map(|(tx, _)| tx));
        let mut shards = Vec::with_capacity(count);
        let bound = sockets.into_iter().zip(listeners).zip(channels);
        for (index, ((std_socket, std_listener), (commands, rx))) in bound.enumerate() {
            let local_media_addr = std_socket.local_addr()?;
            let local_ice_tcp_addr = std_listener.as_ref().map(|l| l.local_addr()).transpose()?;
            let gate = gate.clone();
            let mut shard_config = config.clone();
            shard_config.media_bind = local_media_addr;
            let counters = Arc::new(Counters::default());
            let thread_counters = counters.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let links = links.for_shard(index);
            let events = events.clone();
            let thread = std::thread::Builder::new()
                .name(format!("veche-sfu-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let socket = match UdpSocket::from_std(std_socket) {
                            Ok(s) => s,
                            Err(e) => return error!("media socket: {e}"),
                        };
                        let ice_tcp = match (std_listener, gate) {
                            (Some(l), Some(gate)) => match TcpListener::from_std(l) {
                                Ok(l) => Some(IceTcp::new(l, gate, Instant::now())),
                                Err(e) => return error!("ICE-TCP listener: {e}"),
                            },
                            _ => None,
                        };
                        let io = ShardIo { socket, ice_tcp };
                        if let Err(e) =
                            run(io, shard_config, rx, links, events, &thread_counters).await
                        {
                            error!(shard = index, "SFU stopped: {e}");
                        }
                    })
                })?;
            shards.push(Shard {
                local_media_addr,
                local_ice_tcp_addr,
                commands,
                counters,
                thread: Mutex::new(Some(thread)),
            });
        }
        Ok(SfuHandle {
            inner: Arc::new(Shared {
                shards,
                routes: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                event_queue: config.limits.event_queue,
                ice_tcp: gate,
            }),
        })
    }

    /// The address the first shard's media socket is bound to.
    pub fn local_media_addr(&self) -> SocketAddr {
        self.inner.shards[0].local_media_addr
    }

    /// Every shard's media socket address, in shard order.
    pub fn local_media_addrs(&self) -> Vec<SocketAddr> {
        self.inner
            .shards
            .iter()
            .map(|s| s.local_media_addr)
            .collect()
    }

    /// Every shard's ICE-TCP listener address, in shard order (empty without ICE-TCP).
    pub fn local_ice_tcp_addrs(&self) -> Vec<SocketAddr> {
        self.inner
            .shards
            .iter()
            .filter_map(|s| s.local_ice_tcp_addr)
            .collect()
    }

    /// Registers a new signalling connection. Nothing is joined until a
    /// [`ClientMessage::Join`] (or [`SfuHandle::join`]) is sent for it; that picks its shard.
    pub fn connect(&self) -> Connection {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, events) = mpsc::channel(self.inner.event_queue.max(1));
        self.routes().insert(id, Route::Unjoined(tx));
        Connection { id, events }
    }

    /// Hands a parsed client message to the SFU. Validation of its content (room name,
    /// protocol version, SDP...) happens there and errors come back on the events channel.
    pub fn send(&self, id: ParticipantId, msg: ClientMessage) {
        let room = match &msg {
            ClientMessage::Join { room, .. } => Some(room.clone()),
            _ => None,
        };
        self.route(id, room.as_deref(), Command::Message(id, msg));
    }

    /// A join the server has authorised: the grant carries the role, waiting room and plan
    /// limits. (A [`ClientMessage::Join`] sent with [`SfuHandle::send`] joins an instant
    /// guest room.)
    pub fn join(&self, id: ParticipantId, request: JoinRequest) {
        let room = request.room.clone();
        self.route(id, Some(&room), Command::Join(id, Box::new(request)));
    }

    /// A host control on the running meeting in `room` from outside it (the REST API).
    pub async fn control(
        &self,
        room: String,
        actor: RemoteActor,
        action: ClientMessage,
    ) -> Result<(), ControlError> {
        // Only host controls come this way; anything else is the caller's mistake.
        let action = HostControl::try_from(action).map_err(|other| ControlError {
            code: ErrorCode::InvalidMessage,
            message: format!("not a host control: {}", other.to_json()),
        })?;
        let (reply, answer) = oneshot::channel();
        let request = ControlRequest {
            room,
            actor,
            action,
            reply,
        };
        let shard = self.shard_of_room(&request.room);
        let _ = shard.commands.send(Command::Control(Box::new(request)));
        answer.await.unwrap_or_else(|_| {
            Err(ControlError {
                code: ErrorCode::ShuttingDown,
                message: "the media server is not running".into(),
            })
        })
    }

    /// The running meeting in `room`, if any.
    pub async fn live_meeting(&self, room: String) -> Option<LiveMeeting> {
        let (reply, answer) = oneshot::channel();
        let shard = self.shard_of_room(&room);
        let _ = shard.commands.send(Command::Live(room, reply));
        answer.await.ok().flatten()
    }

    /// Brings back meetings a restart interrupted (see [`Sfu::restore`]), each on the shard
    /// of its room. Call before anyone can join.
    pub fn restore(&self, snapshots: Vec<MeetingSnapshot>) {
        for snapshot in snapshots {
            let shard = self.shard_of_room(&snapshot.room);
            let _ = shard.commands.send(Command::Restore(Box::new(snapshot)));
        }
    }

    /// The server stored the snapshots of `room` up to `seq` (see [`SfuEvent::MeetingSaved`]
    /// and [`crate::Limits::news_wait`]): the news of the changes in them goes out.
    pub fn saved(&self, room: String, seq: u64) {
        let shard = self.shard_of_room(&room);
        let _ = shard.commands.send(Command::Saved { room, seq });
    }

    /// The signalling connection is gone: the participant leaves its room.
    pub fn disconnect(&self, id: ParticipantId) {
        let route = self.routes().remove(&id);
        if let Some(Route::Shard(i)) = route {
            let _ = self.inner.shards[i].commands.send(Command::Disconnect(id));
        }
        // An unjoined connection's sender is dropped with its route.
    }

    pub fn metrics(&self) -> SfuMetrics {
        let mut m = SfuMetrics::default();
        for shard in &self.inner.shards {
            let c = &shard.counters;
            m.rooms += c.rooms.load(Ordering::Relaxed);
            m.participants += c.participants.load(Ordering::Relaxed);
            m.forwarded_packets += c.forwarded_packets.load(Ordering::Relaxed);
            m.forwarded_bytes += c.forwarded_bytes.load(Ordering::Relaxed);
            m.send_dropped += c.send_dropped.load(Ordering::Relaxed);
            m.ice_tcp_dropped += c.ice_tcp_dropped.load(Ordering::Relaxed);
        }
        if let Some(gate) = &self.inner.ice_tcp {
            m.ice_tcp_connections = gate.open() as u64;
            m.ice_tcp_refused = gate.refused();
        }
        m
    }

    /// Each shard's numbers, in shard order.
    pub fn shard_stats(&self) -> Vec<ShardStats> {
        self.inner
            .shards
            .iter()
            .enumerate()
            .map(|(shard, s)| {
                let c = &s.counters;
                ShardStats {
                    shard,
                    rooms: c.rooms.load(Ordering::Relaxed),
                    participants: c.participants.load(Ordering::Relaxed),
                    forwarded_packets: c.forwarded_packets.load(Ordering::Relaxed),
                    forwarded_bytes: c.forwarded_bytes.load(Ordering::Relaxed),
                    graded_participants: c.graded.load(Ordering::Relaxed),
                    poor_participants: c.poor.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Tells every participant the server is shutting down, stops the SFU threads and waits
    /// for them. Blocks: call it from a blocking context.
    pub fn shutdown(&self) {
        // Connections that never joined are known only here.
        for (id, route) in self.routes().drain() {
            if let Route::Unjoined(tx) = route {
                let _ = tx.try_send(ServerMessage::error(
                    ErrorCode::ShuttingDown,
                    "the server is shutting down",
                ));
                debug!(participant = id, "closed for shutdown");
            }
        }
        for shard in &self.inner.shards {
            let _ = shard.commands.send(Command::Shutdown);
        }
        for shard in &self.inner.shards {
            let thread = shard
                .thread
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
    }

    /// The shard that has (or would have) the room.
    fn shard_of_room(&self, room: &str) -> &Shard {
        &self.inner.shards[shard_of(room, self.inner.shards.len())]
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<ParticipantId, Route>> {
        // The map stays consistent whatever panicked while holding it: every change is one
        // insert or remove.
        self.inner.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `cmd` for connection `id` to its shard. The first join (`room` is set) of an
    /// unjoined connection picks the shard of its room and hands the connection over to it;
    /// anything else before a join is answered here as the core would.
    fn route(&self, id: ParticipantId, room: Option<&str>, cmd: Command) {
        let shards = &self.inner.shards;
        let mut routes = self.routes();
        let Some(route) = routes.get_mut(&id) else {
            return;
        };
        match route {
            Route::Shard(i) => {
                let _ = shards[*i].commands.send(cmd);
            }
            Route::Unjoined(_) => {
                let Some(room) = room else {
                    if let Route::Unjoined(tx) = route {
                        let _ = tx.try_send(ServerMessage::error(
                            ErrorCode::NotJoined,
                            "send a join message before anything else",
                        ));
                    }
                    return;
                };
                let i = shard_of(room, shards.len());
                if let Route::Unjoined(tx) = std::mem::replace(route, Route::Shard(i)) {
                    let _ = shards[i].commands.send(Command::Connect(id, tx));
                }
                let _ = shards[i].commands.send(cmd);
            }
        }
    }
}

/// Shard `index`'s port: the configured first port + `index` (0 stays 0: any free port).
fn shard_port(base: u16, index: usize, what: &str) -> std::io::Result<u16> {
    if base == 0 {
        return Ok(0);
    }
    u16::try_from(usize::from(base) + index).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what} port {base} + shard {index} is past 65535"),
        )
    })
}

/// Binds shard `index`'s ICE-TCP listener on the media IP, if ICE-TCP is on.
fn bind_ice_tcp(
    config: &SfuConfig,
    index: usize,
) -> std::io::Result<Option<std::net::TcpListener>> {
    let Some(base) = config.ice_tcp_port else {
        return Ok(None);
    };
    let addr = SocketAddr::new(config.media_bind.ip(), shard_port(base, index, "ICE-TCP")?);
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    info!(shard = index, local = %listener.local_addr()?, "ICE-TCP listener bound");
    Ok(Some(listener))
}

/// Binds shard `index`'s media socket: the configured port + `index` (0 stays 0).
fn bind_media_socket(config: &SfuConfig, index: usize) -> std::io::Result<std::net::UdpSocket> {
    let port = shard_port(config.media_bind.port(), index, "media")?;
    let addr = SocketAddr::new(config.media_bind.ip(), port);
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    let wanted = config.limits.socket_buffer_bytes;
    let (rcvbuf, sndbuf) = crate::udp_batch::set_buffer_sizes(&socket, wanted);
    if rcvbuf < wanted {
        warn!(
            wanted,
            got = rcvbuf,
            "media socket receive buffer is smaller than configured (raise net.core.rmem_max)"
        );
    }
    info!(shard = index, local = %socket.local_addr()?, rcvbuf, sndbuf, "media socket bound");
    Ok(socket)
}

/// Largest datagram we accept; WebRTC keeps under ~1200 bytes, GRO may coalesce several.
const RECV_BUF: usize = 64 * 1024;
/// Datagrams handled per wake-up before outputs are flushed.
const RECV_BATCH: usize = 64;

/// A shard's sockets.
struct ShardIo {
    socket: UdpSocket,
    ice_tcp: Option<IceTcp>,
}

/// The next ICE-TCP frame, or never without ICE-TCP. Cancel-safe.
async fn next_tcp_frame(ice_tcp: &mut Option<IceTcp>) -> ice_tcp::Frame {
    match ice_tcp {
        Some(t) => t.next().await,
        None => std::future::pending().await,
    }
}

async fn run(
    io: ShardIo,
    config: SfuConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut links: ShardLinks,
    events: mpsc::UnboundedSender<SfuEvent>,
    counters: &Counters,
) -> std::io::Result<()> {
    let ShardIo {
        socket,
        mut ice_tcp,
    } = io;
    let state = UdpSocketState::new((&socket).into())?;
    let local = socket.local_addr()?;
    let advertised: Vec<IpAddr> = config.public_ips.clone();
    // Advertised addresses behind NAT are not ours to send from (the kernel picks the source
    // for those); an address we can bind is.
    let own_ips: Vec<IpAddr> = advertised
        .iter()
        .copied()
        .filter(|ip| std::net::UdpSocket::bind(SocketAddr::new(*ip, 0)).is_ok())
        .collect();
    // On a wildcard-bound socket the kernel picks each datagram's source address by route.
    // That is the candidate's address unless one family has several routable addresses of
    // ours; only then is the slower per-datagram send with an explicit source needed.
    let routable = |v4: bool| {
        own_ips
            .iter()
            .filter(|ip| ip.is_ipv4() == v4 && !ip.is_loopback())
            .count()
    };
    let pick_source = local.ip().is_unspecified() && (routable(true) > 1 || routable(false) > 1);
    let mut batch = SendBatch::new();
    let mut sfu = Sfu::new(config, Instant::now());
    sfu.set_media_port(local.port());
    if let Some(t) = &ice_tcp {
        sfu.set_ice_tcp_port(t.local_addr()?.port());
    }
    let mut connections: HashMap<ParticipantId, mpsc::Sender<ServerMessage>> = HashMap::new();
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        // Flush everything the last input produced.
        let next_timeout = loop {
            match sfu.poll_output() {
                Output::Timeout(t) => {
                    batch.flush(socket.as_raw_fd());
                    break t;
                }
                Output::Transmit(d) if d.proto == Protocol::Tcp => {
                    if let Some(t) = ice_tcp.as_mut() {
                        t.send(d.destination, &d.contents);
                    }
                }
                Output::Transmit(d) => {
                    if pick_source {
                        let transmit = Transmit {
                            destination: d.destination,
                            ecn: None,
                            contents: &d.contents,
                            segment_size: None,
                            src_ip: own_ips.contains(&d.source.ip()).then_some(d.source.ip()),
                        };
                        // A full socket buffer drops the datagram, as the network would;
                        // the forwarding loop never waits on one slow destination.
                        if let Err(e) = socket.try_io(Interest::WRITABLE, || {
                            state.try_send((&socket).into(), &transmit)
                        }) {
                            debug!(destination = %d.destination, "send failed: {e}");
                        }
                    } else {
                        batch.push(d.destination, d.contents);
                        if batch.is_full() {
                            batch.flush(socket.as_raw_fd());
                        }
                    }
                }
                Output::Signal(id, msg) => {
                    if let Some(tx) = connections.get(&id)
                        && tx.try_send(msg).is_err()
                    {
                        warn!(participant = id, "signalling queue full; disconnecting");
                        connections.remove(&id);
                        sfu.handle_disconnect(Instant::now(), id);
                    }
                }
                Output::Close(id) => {
                    connections.remove(&id);
                }
                Output::Event(e) => {
                    let _ = events.send(e);
                }
            }
        };
        publish_counters(&sfu, counters);
        counters
            .send_dropped
            .store(batch.dropped, Ordering::Relaxed);
        let mut wake = next_timeout;
        if let Some(t) = &ice_tcp {
            counters.ice_tcp_dropped.store(t.dropped, Ordering::Relaxed);
            wake = wake.min(t.next_sweep());
        }

        let sleep = tokio::time::sleep_until(wake.max(Instant::now()).into());
        tokio::select! {
            biased;
            cmd = commands.recv() => {
                let now = Instant::now();
                // A connection that joins a room of another shard moves there.
                let cmd = match cmd {
                    Some(cmd) => links.hand_over(cmd, &sfu, &mut connections),
                    None => Some(Command::Shutdown),
                };
                match cmd {
                    None => {}
                    Some(Command::Connect(id, tx)) => {
                        connections.insert(id, tx);
                    }
                    Some(Command::Message(id, msg)) if connections.contains_key(&id) => {
                        sfu.handle_command(now, unix_ms(), id, msg.into());
                    }
                    Some(Command::Join(id, request)) if connections.contains_key(&id) => {
                        sfu.handle_join(now, unix_ms(), id, *request);
                    }
                    Some(Command::Control(request)) => {
                        let ControlRequest { room, actor, action, reply } = *request;
                        let result = sfu.handle_control(now, unix_ms(), &room, actor, action);
                        let _ = reply.send(result);
                    }
                    Some(Command::Live(room, reply)) => {
                        let _ = reply.send(sfu.live_meeting(&room));
                    }
                    Some(Command::Restore(snapshot)) => {
                        let restored = sfu.restore(now, unix_ms(), &snapshot);
                        if !restored {
                            warn!(room = %snapshot.room, "snapshot not restored");
                        }
                    }
                    Some(Command::Saved { room, seq }) => sfu.handle_saved(now, &room, seq),
                    // A connection this shard has closed.
                    Some(Command::Message(..) | Command::Join(..)) => {}
                    Some(Command::Disconnect(id)) => {
                        connections.remove(&id);
                        sfu.handle_disconnect(now, id);
                    }
                    Some(Command::Shutdown) => {
                        sfu.shutdown();
                        // Joined participants get the core's goodbye; connections that never
                        // joined are unknown to the core and get the same error from here.
                        loop {
                            match sfu.poll_output() {
                                Output::Signal(id, msg) => {
                                    if let Some(tx) = connections.get(&id) {
                                        let _ = tx.try_send(msg);
                                    }
                                }
                                Output::Close(id) => {
                                    connections.remove(&id);
                                }
                                Output::Event(e) => {
                                    let _ = events.send(e);
                                }
                                Output::Transmit(_) => {}
                                Output::Timeout(_) => break,
                            }
                        }
                        // Dropping the senders ends each connection after what it has queued.
                        for (id, tx) in connections.drain() {
                            let _ = tx.try_send(ServerMessage::error(
                                veche_proto::ErrorCode::ShuttingDown,
                                "the server is shutting down",
                            ));
                            debug!(participant = id, "closed for shutdown");
                        }
                        publish_counters(&sfu, counters);
                        return Ok(());
                    }
                }
            }
            ready = socket.readable() => {
                ready?;
                for _ in 0..RECV_BATCH {
                    let mut meta = [RecvMeta::default()];
                    let mut bufs = [IoSliceMut::new(&mut buf)];
                    let received = socket.try_io(Interest::READABLE, || {
                        state.recv((&socket).into(), &mut bufs, &mut meta)
                    });
                    match received {
                        Ok(_) => {
                            let now = Instant::now();
                            let meta = &meta[0];
                            let destination = destination_of(local, meta.dst_ip, &advertised);
                            let stride = meta.stride.max(1);
                            for chunk in buf[..meta.len].chunks(stride) {
                                sfu.handle_datagram(now, meta.addr, destination, chunk);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            // ICMP errors from a vanished peer surface here; they concern
                            // that peer only.
                            debug!("recv: {e}");
                            break;
                        }
                    }
                }
            }
            frame = next_tcp_frame(&mut ice_tcp) => {
                let mut next = Some(frame);
                let mut handled = 0;
                while let Some(f) = next.take() {
                    let now = Instant::now();
                    let destination = destination_of(f.local, Some(f.local.ip()), &advertised);
                    if sfu.handle_tcp_frame(now, f.peer, destination, &f.data)
                        && let Some(t) = ice_tcp.as_mut()
                    {
                        t.taken(f.peer, now);
                    }
                    handled += 1;
                    if handled < RECV_BATCH {
                        next = ice_tcp.as_mut().and_then(IceTcp::try_next);
                    }
                }
            }
            _ = sleep => {
                if next_timeout <= Instant::now() {
                    sfu.handle_timeout(Instant::now());
                }
            }
        }
        if let Some(t) = ice_tcp.as_mut() {
            t.sweep(Instant::now());
        }
        // The timer may be overdue after a busy input; catch up before sleeping again.
        let now = Instant::now();
        if now >= next_timeout {
            sfu.handle_timeout(now);
        }
    }
}

/// The address a datagram was sent to, as our ICE candidates name it. When the socket is
/// bound to a wildcard address, the kernel tells us the real destination (IP_PKTINFO); behind
/// a 1:1 NAT that is a private address, so fall back to the advertised one of the same family.
fn destination_of(local: SocketAddr, dst_ip: Option<IpAddr>, advertised: &[IpAddr]) -> SocketAddr {
    let ip = match dst_ip {
        Some(ip) if advertised.contains(&ip) => ip,
        Some(ip) => advertised
            .iter()
            .find(|a| a.is_ipv4() == ip.is_ipv4())
            .copied()
            .unwrap_or(ip),
        None => local.ip(),
    };
    SocketAddr::new(ip, local.port())
}

fn publish_counters(sfu: &Sfu, counters: &Counters) {
    let c = sfu.counters();
    counters
        .rooms
        .store(sfu.room_count() as u64, Ordering::Relaxed);
    counters
        .participants
        .store(sfu.participant_count() as u64, Ordering::Relaxed);
    counters
        .forwarded_packets
        .store(c.forwarded_packets, Ordering::Relaxed);
    counters
        .forwarded_bytes
        .store(c.forwarded_bytes, Ordering::Relaxed);
    let (graded, poor) = sfu.quality_counts();
    counters.graded.store(graded as u64, Ordering::Relaxed);
    counters.poor.store(poor as u64, Ordering::Relaxed);
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}
