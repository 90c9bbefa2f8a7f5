//! ICE-TCP sockets of one shard (RFC 6544, passive side): the listener, its connections and
//! their buffers. Each connection has a reader task that splits RFC 4571 frames and hands
//! them to the shard's loop, and a writer task that sends what the core transmits to that
//! peer. The shard's loop owns the connection table; the tasks own nothing but their half of
//! the socket.
//!
//! Limits ([`IceTcpLimits`]): connections in total and per IP address (over all shards,
//! counted by the shared [`Gate`]) are refused on accept; bytes queued to send per connection
//! are capped, past which frames are dropped as a full UDP socket would drop them; a
//! connection whose frames no participant takes for `idle_timeout` is closed. A frame longer
//! than [`MAX_FRAME`] closes its connection. What one connection can hold is therefore its
//! read buffer, its share of the shard's inbound queue and `max_buffered_bytes` (plus a
//! kernel send buffer of the same size).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::IceTcpLimits;
use crate::rfc4571::{MAX_FRAME, split_frame, write_frame};

/// Frames from all of a shard's connections waiting for its loop. A reader that finds it full
/// waits, which stops reading its socket: TCP's own flow control then holds the sender back.
const INBOUND_QUEUE: usize = 256;
/// Bytes the writer gathers from its queue into one write.
const WRITE_BATCH: usize = 64 * 1024;
/// How often idle connections are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// After a failed accept (e.g. out of file descriptors), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Open ICE-TCP connections over all shards, in total and per address.
pub(crate) struct Gate {
    limits: IceTcpLimits,
    open: Mutex<GateCounts>,
    refused: AtomicU64,
}

#[derive(Default)]
struct GateCounts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection's place in the [`Gate`]; given back when dropped.
struct Permit {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Gate {
    pub(crate) fn new(limits: IceTcpLimits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            open: Mutex::new(GateCounts::default()),
            refused: AtomicU64::new(0),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, GateCounts> {
        // Every change is one increment or decrement; a panic elsewhere leaves them whole.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(self: &Arc<Gate>, ip: IpAddr) -> Option<Permit> {
        let mut c = self.counts();
        let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        if c.total >= self.limits.max_connections || from_ip >= self.limits.max_connections_per_ip {
            drop(c);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        c.total += 1;
        c.per_ip.insert(ip, from_ip + 1);
        Some(Permit {
            gate: self.clone(),
            ip,
        })
    }

    /// Connections open now, over all shards.
    pub(crate) fn open(&self) -> usize {
        self.counts().total
    }

    /// Connections refused on accept for a limit, since start.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.gate.counts();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// What a connection's reader tells the shard's loop.
enum Inbound {
    Frame {
        peer: SocketAddr,
        conn: u64,
        data: Vec<u8>,
    },
    Closed {
        peer: SocketAddr,
        conn: u64,
    },
}

/// A frame for the core: from `peer`, on our `local` address.
pub(crate) struct Frame {
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) data: Vec<u8>,
}

struct Conn {
    id: u64,
    local: SocketAddr,
    /// Framed bytes handed to the writer and not yet written.
    queued: Arc<AtomicUsize>,
    out: mpsc::UnboundedSender<Vec<u8>>,
    /// When a participant last took a frame from here (or when it was accepted).
    last_taken: Instant,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    _permit: Permit,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping both halves closes the socket.
        self.reader.abort();
        self.writer.abort();
    }
}

/// A shard's ICE-TCP listener and connections.
pub(crate) struct IceTcp {
    listener: TcpListener,
    limits: IceTcpLimits,
    gate: Arc<Gate>,
    /// By the peer's address: what the core names as a transmit's destination.
    conns: HashMap<SocketAddr, Conn>,
    next_id: u64,
    inbound_tx: mpsc::Sender<Inbound>,
    inbound_rx: mpsc::Receiver<Inbound>,
    next_sweep: Instant,
    /// Frames not sent because their connection's queue was full or it was gone.
    pub(crate) dropped: u64,
}

impl IceTcp {
    pub(crate) fn new(listener: TcpListener, gate: Arc<Gate>, now: Instant) -> IceTcp {
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        IceTcp {
            listener,
            limits: gate.limits,
            gate,
            conns: HashMap::new(),
            next_id: 0,
            inbound_tx,
            inbound_rx,
            next_sweep: now + SWEEP_EVERY,
            dropped: 0,
        }
    }

    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next frame from any connection; accepts connections meanwhile. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Frame {
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => self.accept(stream, peer),
                    Err(e) => {
                        warn!("ICE-TCP accept: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(msg) = self.inbound_rx.recv() => {
                    if let Some(frame) = self.take(msg) {
                        return frame;
                    }
                }
            }
        }
    }

    /// A frame that is already waiting, without waiting for one.
    pub(crate) fn try_next(&mut self) -> Option<Frame> {
        while let Ok(msg) = self.inbound_rx.try_recv() {
            if let Some(frame) = self.take(msg) {
                return Some(frame);
            }
        }
        None
    }

    fn take(&mut self, msg: Inbound) -> Option<Frame> {
        match msg {
            Inbound::Frame { peer, conn, data } => {
                let c = self.conns.get(&peer).filter(|c| c.id == conn)?;
                Some(Frame {
                    peer,
                    local: c.local,
                    data,
                })
            }
            Inbound::Closed { peer, conn } => {
                if self.conns.get(&peer).is_some_and(|c| c.id == conn) {
                    self.conns.remove(&peer);
                    debug!(%peer, "ICE-TCP connection closed");
                }
                None
            }
        }
    }

    fn accept(&mut self, stream: TcpStream, peer: SocketAddr) {
        let Some(permit) = self.gate.admit(peer.ip()) else {
            debug!(%peer, "ICE-TCP connection refused: too many connections");
            return;
        };
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(e) => return debug!(%peer, "ICE-TCP connection gone on accept: {e}"),
        };
        // Media is latency-bound: send each frame as it comes. The kernel's send buffer is
        // held to the queue limit too (Linux doubles it), or a reader that stops reading could
        // park megabytes of autotuned buffer on the server.
        let _ = stream.set_nodelay(true);
        let _ =
            socket2::SockRef::from(&stream).set_send_buffer_size(self.limits.max_buffered_bytes);
        let id = self.next_id;
        self.next_id += 1;
        let (read, write) = stream.into_split();
        let (out, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let reader = tokio::spawn(read_frames(read, peer, id, self.inbound_tx.clone()));
        let writer = tokio::spawn(write_frames(write, rx, queued.clone()));
        debug!(%peer, %local, "ICE-TCP connection accepted");
        // A peer reusing the address of a connection it closed replaces it.
        self.conns.insert(
            peer,
            Conn {
                id,
                local,
                queued,
                out,
                last_taken: Instant::now(),
                reader,
                writer,
                _permit: permit,
            },
        );
    }

    /// A participant took a frame from `peer`: its connection is not idle.
    pub(crate) fn taken(&mut self, peer: SocketAddr, now: Instant) {
        if let Some(c) = self.conns.get_mut(&peer) {
            c.last_taken = now;
        }
    }

    /// Queues `payload` as a frame to `peer`; dropped (and counted) when that connection's
    /// queue is full or there is no such connection.
    pub(crate) fn send(&mut self, peer: SocketAddr, payload: &[u8]) {
        let Some(c) = self.conns.get(&peer) else {
            self.dropped += 1;
            return;
        };
        let framed = 2 + payload.len();
        if c.queued.load(Ordering::Relaxed) + framed > self.limits.max_buffered_bytes {
            self.dropped += 1;
            return;
        }
        let mut frame = Vec::with_capacity(framed);
        if !write_frame(payload, &mut frame) {
            self.dropped += 1;
            return;
        }
        c.queued.fetch_add(framed, Ordering::Relaxed);
        if c.out.send(frame).is_err() {
            // The writer has stopped (the socket failed); its reader reports the close.
            c.queued.fetch_sub(framed, Ordering::Relaxed);
            self.dropped += 1;
        }
    }

    /// When [`IceTcp::sweep`] wants to run next.
    pub(crate) fn next_sweep(&self) -> Instant {
        self.next_sweep
    }

    /// Closes connections idle for longer than the limit, when a sweep is due.
    pub(crate) fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        let idle = self.limits.idle_timeout;
        self.conns.retain(|peer, c| {
            let keep = now.saturating_duration_since(c.last_taken) < idle;
            if !keep {
                debug!(%peer, "ICE-TCP connection idle; closing");
            }
            keep
        });
    }
}

/// Splits the peer's byte stream into frames for the shard's loop until the peer closes, the
/// socket fails or a frame is too long.
async fn read_frames(
    mut read: OwnedReadHalf,
    peer: SocketAddr,
    conn: u64,
    inbound: mpsc::Sender<Inbound>,
) {
    // Room for a whole frame after whatever is left of the previous read.
    let mut buf = vec![0u8; 2 * (MAX_FRAME + 2)];
    let mut filled = 0;
    loop {
        let n = match read.read(&mut buf[filled..]).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                debug!(%peer, "ICE-TCP read: {e}");
                break;
            }
        };
        filled += n;
        let mut start = 0;
        loop {
            match split_frame(&buf[start..filled]) {
                Ok(Some((payload, used))) => {
                    let data = payload.to_vec();
                    start += used;
                    if !data.is_empty()
                        && inbound
                            .send(Inbound::Frame { peer, conn, data })
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    debug!(%peer, "ICE-TCP: {e}; closing");
                    let _ = inbound.send(Inbound::Closed { peer, conn }).await;
                    return;
                }
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
    let _ = inbound.send(Inbound::Closed { peer, conn }).await;
}

/// Writes queued frames, several at a time, until the queue closes or the socket fails.
async fn write_frames(
    mut write: OwnedWriteHalf,
    mut frames: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while let Some(first) = frames.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH {
            match frames.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = write.write_all(&batch).await {
            debug!("ICE-TCP write: {e}");
            return;
        }
        queued.fetch_sub(batch.len(), Ordering::Relaxed);
    }
}
