//! The sockets of the built-in TURN server: the UDP listener, the TLS listener and its
//! connections, and one UDP relay socket per allocation. One task owns the [`RelayCore`];
//! the others only read and forward. Sockets, TLS and framing only: every decision is the
//! core's.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};
use turn_server_proto::api::SocketAllocateError;
use turn_server_proto::types::{AddressFamily, Instant};

use super::framing::{Framer, pad_for_stream};
use super::relay::{Listener, Output, RelayCore};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS connection silent this long is closed: a live one carries media, or at least a
/// permission refresh every five minutes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Frames queued for one TLS client; past it, more are dropped as a full UDP buffer would.
const CLIENT_QUEUE: usize = 1024;
/// Events queued for the core from readers; relay datagrams past it are dropped.
const EVENT_QUEUE: usize = 8192;

enum Event {
    Peer {
        relayed: SocketAddr,
        from: SocketAddr,
        data: Vec<u8>,
    },
    TlsOpened {
        client: SocketAddr,
        tx: mpsc::Sender<Vec<u8>>,
    },
    TlsFrame {
        client: SocketAddr,
        frame: Vec<u8>,
    },
    TlsClosed {
        client: SocketAddr,
    },
}

/// Limits on TLS connections, checked on accept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub(crate) max: usize,
    pub(crate) max_per_ip: usize,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs the server until the returned future is dropped (its tasks end with it).
pub(crate) async fn run(
    mut core: RelayCore,
    udp: UdpSocket,
    tls: TcpListener,
    acceptor: TlsAcceptor,
    relay_ip: IpAddr,
    limits: ConnectionLimits,
) {
    let base = std::time::Instant::now();
    let now = move || Instant::from_std(base);
    let (tx, mut rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    let mut tasks = JoinSet::new();
    tasks.spawn(accept_loop(tls, acceptor, tx.clone(), limits));
    let mut relays: HashMap<SocketAddr, (Arc<UdpSocket>, AbortHandle)> = HashMap::new();
    let mut clients: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let mut next = core.poll(now());
    loop {
        let deadline = tokio::time::Instant::from_std(next.to_std(base));
        tokio::select! {
            received = udp.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    core.recv_from_client(Listener::Udp, from, &buf[..n], now(), unix_now());
                }
                // E.g. an ICMP error surfacing on the socket: nothing to do.
                Err(e) => debug!(error = %e, "TURN UDP receive failed"),
            },
            event = rx.recv() => match event {
                Some(Event::Peer { relayed, from, data }) => {
                    core.recv_from_peer(relayed, from, &data, now());
                }
                Some(Event::TlsOpened { client, tx }) => {
                    clients.insert(client, tx);
                }
                Some(Event::TlsFrame { client, frame }) => {
                    core.recv_from_client(Listener::Tls, client, &frame, now(), unix_now());
                }
                Some(Event::TlsClosed { client }) => {
                    clients.remove(&client);
                    core.client_closed(Listener::Tls, client, now());
                }
                // This task holds a sender itself: the channel cannot close.
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => {}
        }
        next = core.poll(now());
        while let Some(output) = core.poll_output() {
            match output {
                Output::ToClient {
                    listener: Listener::Udp,
                    client,
                    data,
                } => {
                    let _ = udp.try_send_to(&data, client);
                }
                Output::ToClient {
                    listener: Listener::Tls,
                    client,
                    data,
                } => {
                    if let Some(tx) = clients.get(&client) {
                        let _ = tx.try_send(pad_for_stream(data));
                    }
                }
                Output::ToPeer {
                    relayed,
                    peer,
                    data,
                } => {
                    if let Some((socket, _)) = relays.get(&relayed) {
                        let _ = socket.try_send_to(&data, peer);
                    }
                }
                Output::BindRelay {
                    listener,
                    client,
                    family,
                } => {
                    let bound = bind_relay(relay_ip, family);
                    let result = match bound {
                        Ok(socket) => {
                            let socket = Arc::new(socket);
                            match socket.local_addr() {
                                Ok(addr) => {
                                    let reader =
                                        tasks.spawn(read_relay(socket.clone(), addr, tx.clone()));
                                    relays.insert(addr, (socket, reader));
                                    Ok(addr)
                                }
                                Err(_) => Err(SocketAllocateError::InsufficientCapacity),
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "TURN could not bind a relay socket");
                            Err(e.into_allocate_error())
                        }
                    };
                    core.relay_bound(listener, client, family, result, now());
                }
                Output::CloseRelay { relayed } => {
                    if let Some((_, reader)) = relays.remove(&relayed) {
                        reader.abort();
                    }
                }
                Output::CloseClient { client } => {
                    // Dropping the sender ends the connection's writer, and so the connection.
                    clients.remove(&client);
                }
            }
        }
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
}

enum BindError {
    Family,
    Io(std::io::Error),
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::Family => f.write_str("address family of the relay address not served"),
            BindError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl BindError {
    fn into_allocate_error(self) -> SocketAllocateError {
        match self {
            BindError::Family => SocketAllocateError::AddressFamilyNotSupported,
            BindError::Io(_) => SocketAllocateError::InsufficientCapacity,
        }
    }
}

fn bind_relay(ip: IpAddr, family: AddressFamily) -> Result<UdpSocket, BindError> {
    if ip.is_ipv4() != (family == AddressFamily::IPV4) {
        return Err(BindError::Family);
    }
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(BindError::Io)?;
    socket.set_nonblocking(true).map_err(BindError::Io)?;
    UdpSocket::from_std(socket).map_err(BindError::Io)
}

async fn read_relay(socket: Arc<UdpSocket>, relayed: SocketAddr, tx: mpsc::Sender<Event>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            // An ICMP error surfacing on the socket; do not spin on a persistent one.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let event = Event::Peer {
            relayed,
            from,
            data: buf[..n].to_vec(),
        };
        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(event) {
            return;
        }
    }
}

/// Open TLS connections by address, for the limits.
#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Takes one place in [`Open`] and gives it back on drop.
struct Slot {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // A poisoned lock means a panic elsewhere while counting; the count is then moot.
        if let Ok(mut open) = self.open.lock() {
            open.total -= 1;
            if let Some(n) = open.per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    open.per_ip.remove(&self.ip);
                }
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<Event>,
    limits: ConnectionLimits,
) {
    let open = Arc::new(Mutex::new(Open::default()));
    let mut conns = JoinSet::new();
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                warn!(error = %e, "TURN TLS accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = {
            let Ok(mut o) = open.lock() else { return };
            let here = o.per_ip.get(&client.ip()).copied().unwrap_or(0);
            if o.total >= limits.max || here >= limits.max_per_ip {
                debug!(%client, "TURN TLS connection refused: limit reached");
                continue;
            }
            o.total += 1;
            *o.per_ip.entry(client.ip()).or_default() += 1;
            Slot {
                open: open.clone(),
                ip: client.ip(),
            }
        };
        let _ = stream.set_nodelay(true);
        conns.spawn(serve_tls(
            stream,
            client,
            acceptor.clone(),
            tx.clone(),
            slot,
        ));
        while conns.try_join_next().is_some() {}
    }
}

async fn serve_tls(
    stream: TcpStream,
    client: SocketAddr,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<Event>,
    _slot: Slot,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            debug!(%client, error = %e, "TURN TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let (mut reader, mut writer) = tokio::io::split(tls);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(CLIENT_QUEUE);
    if tx
        .send(Event::TlsOpened { client, tx: out_tx })
        .await
        .is_err()
    {
        return;
    }
    let write = async {
        while let Some(data) = out_rx.recv().await {
            if writer.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    };
    let read = async {
        let mut framer = Framer::default();
        let mut buf = vec![0u8; 16384];
        loop {
            let n = match tokio::time::timeout(IDLE_TIMEOUT, reader.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) | Err(_) => return,
                Ok(Ok(n)) => n,
            };
            framer.push(&buf[..n]);
            loop {
                match framer.next_frame() {
                    Ok(Some(frame)) => {
                        // Waiting here pushes back on the client, as TCP should.
                        if tx.send(Event::TlsFrame { client, frame }).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        debug!(%client, error = %e, "TURN TLS connection closed");
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        () = write => {}
        () = read => {}
    }
    let _ = tx.send(Event::TlsClosed { client }).await;
}
