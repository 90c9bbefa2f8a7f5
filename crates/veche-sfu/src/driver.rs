//! The I/O shell around the sans-IO core: one UDP socket, a clock, and channels to the
//! signalling layer. Runs the core on a thread of its own with a single-threaded runtime, so
//! the core is never shared and needs no locks.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};
use veche_proto::{ClientMessage, ErrorCode, ParticipantId, ServerMessage};

use crate::SfuConfig;
use crate::core::{Output, Sfu};
use crate::meeting::{ControlError, JoinRequest, LiveMeeting, RemoteActor, SfuEvent};
use crate::udp_batch::SendBatch;

/// A cheap, cloneable handle to the running SFU.
#[derive(Clone)]
pub struct SfuHandle {
    inner: Arc<Shared>,
}

struct Shared {
    local_media_addr: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
    next_id: AtomicU64,
    event_queue: usize,
    counters: Counters,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Counters {
    rooms: AtomicU64,
    participants: AtomicU64,
    forwarded_packets: AtomicU64,
    forwarded_bytes: AtomicU64,
    send_dropped: AtomicU64,
}

enum Command {
    Connect(ParticipantId, mpsc::Sender<ServerMessage>),
    Message(ParticipantId, ClientMessage),
    Join(ParticipantId, Box<JoinRequest>),
    Control(Box<ControlRequest>),
    Live(String, oneshot::Sender<Option<LiveMeeting>>),
    Disconnect(ParticipantId),
    Shutdown,
}

struct ControlRequest {
    room: String,
    actor: RemoteActor,
    action: ClientMessage,
    reply: oneshot::Sender<Result<(), ControlError>>,
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
    /// Datagrams dropped because the socket buffer was full or the kernel refused them.
    pub send_dropped: u64,
}

impl SfuHandle {
    /// Binds the media socket and starts the SFU thread, discarding its [`SfuEvent`]s.
    pub fn spawn(config: SfuConfig) -> std::io::Result<SfuHandle> {
        SfuHandle::spawn_with_events(config, mpsc::unbounded_channel().0)
    }

    /// Binds the media socket and starts the SFU thread. Audit entries and usage records go
    /// to `events` (unbounded: they are few — one per host action or finished meeting — and
    /// must not be lost).
    pub fn spawn_with_events(
        config: SfuConfig,
        events: mpsc::UnboundedSender<SfuEvent>,
    ) -> std::io::Result<SfuHandle> {
        let std_socket = std::net::UdpSocket::bind(config.media_bind)?;
        std_socket.set_nonblocking(true)?;
        let (rcvbuf, sndbuf) =
            crate::udp_batch::set_buffer_sizes(&std_socket, config.limits.socket_buffer_bytes);
        if rcvbuf < config.limits.socket_buffer_bytes {
            warn!(
                wanted = config.limits.socket_buffer_bytes,
                got = rcvbuf,
                "media socket receive buffer is smaller than configured (raise net.core.rmem_max)"
            );
        }
        let local_media_addr = std_socket.local_addr()?;
        let (commands, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            local_media_addr,
            commands,
            next_id: AtomicU64::new(1),
            event_queue: config.limits.event_queue,
            counters: Counters::default(),
            thread: std::sync::Mutex::new(None),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("veche-sfu".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let socket = match UdpSocket::from_std(std_socket) {
                        Ok(s) => s,
                        Err(e) => return error!("media socket: {e}"),
                    };
                    if let Err(e) = run(socket, config, rx, events, &thread_shared).await {
                        error!("SFU stopped: {e}");
                    }
                })
            })?;
        *shared.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        info!(%local_media_addr, rcvbuf, sndbuf, "media socket bound");
        Ok(SfuHandle { inner: shared })
    }

    /// The address the media socket is bound to.
    pub fn local_media_addr(&self) -> SocketAddr {
        self.inner.local_media_addr
    }

    /// Registers a new signalling connection. Nothing is joined until a
    /// [`ClientMessage::Join`] is sent for it.
    pub fn connect(&self) -> Connection {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, events) = mpsc::channel(self.inner.event_queue.max(1));
        let _ = self.inner.commands.send(Command::Connect(id, tx));
        Connection { id, events }
    }

    /// Hands a parsed client message to the SFU. Validation of its content (room name,
    /// protocol version, SDP...) happens there and errors come back on the events channel.
    pub fn send(&self, id: ParticipantId, msg: ClientMessage) {
        let _ = self.inner.commands.send(Command::Message(id, msg));
    }

    /// A join the server has authorised: the grant carries the role, waiting room and plan
    /// limits. (A [`ClientMessage::Join`] sent with [`SfuHandle::send`] joins an instant
    /// guest room.)
    pub fn join(&self, id: ParticipantId, request: JoinRequest) {
        let _ = self
            .inner
            .commands
            .send(Command::Join(id, Box::new(request)));
    }

    /// A host control on the running meeting in `room` from outside it (the REST API).
    pub async fn control(
        &self,
        room: String,
        actor: RemoteActor,
        action: ClientMessage,
    ) -> Result<(), ControlError> {
        let (reply, answer) = oneshot::channel();
        let request = ControlRequest {
            room,
            actor,
            action,
            reply,
        };
        let _ = self
            .inner
            .commands
            .send(Command::Control(Box::new(request)));
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
        let _ = self.inner.commands.send(Command::Live(room, reply));
        answer.await.ok().flatten()
    }

    /// The signalling connection is gone: the participant leaves its room.
    pub fn disconnect(&self, id: ParticipantId) {
        let _ = self.inner.commands.send(Command::Disconnect(id));
    }

    pub fn metrics(&self) -> SfuMetrics {
        let c = &self.inner.counters;
        SfuMetrics {
            rooms: c.rooms.load(Ordering::Relaxed),
            participants: c.participants.load(Ordering::Relaxed),
            forwarded_packets: c.forwarded_packets.load(Ordering::Relaxed),
            forwarded_bytes: c.forwarded_bytes.load(Ordering::Relaxed),
            send_dropped: c.send_dropped.load(Ordering::Relaxed),
        }
    }

    /// Tells every participant the server is shutting down, stops the SFU thread and waits
    /// for it. Blocks: call it from a blocking context.
    pub fn shutdown(&self) {
        let _ = self.inner.commands.send(Command::Shutdown);
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// Largest datagram we accept; WebRTC keeps under ~1200 bytes, GRO may coalesce several.
const RECV_BUF: usize = 64 * 1024;
/// Datagrams handled per wake-up before outputs are flushed.
const RECV_BATCH: usize = 64;

async fn run(
    socket: UdpSocket,
    config: SfuConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<SfuEvent>,
    shared: &Shared,
) -> std::io::Result<()> {
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
        publish_counters(&sfu, &shared.counters);
        shared
            .counters
            .send_dropped
            .store(batch.dropped, Ordering::Relaxed);

        let sleep = tokio::time::sleep_until(next_timeout.max(Instant::now()).into());
        tokio::select! {
            biased;
            cmd = commands.recv() => {
                let now = Instant::now();
                match cmd {
                    Some(Command::Connect(id, tx)) => {
                        connections.insert(id, tx);
                    }
                    Some(Command::Message(id, msg)) => {
                        if connections.contains_key(&id) {
                            sfu.handle_message(now, unix_ms(), id, msg);
                        }
                    }
                    Some(Command::Join(id, request)) => {
                        if connections.contains_key(&id) {
                            sfu.handle_join(now, unix_ms(), id, *request);
                        }
                    }
                    Some(Command::Control(request)) => {
                        let ControlRequest { room, actor, action, reply } = *request;
                        let result = sfu.handle_control(now, unix_ms(), &room, actor, action);
                        let _ = reply.send(result);
                    }
                    Some(Command::Live(room, reply)) => {
                        let _ = reply.send(sfu.live_meeting(&room));
                    }
                    Some(Command::Disconnect(id)) => {
                        connections.remove(&id);
                        sfu.handle_disconnect(now, id);
                    }
                    Some(Command::Shutdown) | None => {
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
                        publish_counters(&sfu, &shared.counters);
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
            _ = sleep => {
                sfu.handle_timeout(Instant::now());
            }
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
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}
