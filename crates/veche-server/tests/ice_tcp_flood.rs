//! ICE-TCP under a flood, against the real binary: connections past the per-address and the
//! total limit are closed on accept, junk and oversized frames get their connection closed,
//! a participant that stops reading holds no more than its send queue, the process's memory
//! stays bounded — and the participants of the same shard, over UDP and over TCP, keep
//! receiving each other throughout.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, ensure};
use common::{Server, join_connected, proc_status_mib, summary, wait_mesh};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use veche_load::{ParticipantOptions, SyntheticParticipant};
use veche_proto::{ServerMessage, TrackKind};

const MAX_CONNECTIONS: usize = 48;
const MAX_PER_IP: usize = 8;
const BUFFER_BYTES: usize = 32 * 1024;
const IDLE_SECS: u64 = 3;
/// What the flood's connections, their tasks and buffers may add to the peak RSS: 48
/// connections × (8 KiB read buffer + 32 KiB queue), the shard's inbound queue, allocator
/// slack.
const FLOOD_SLACK_MIB: u64 = 48;

/// The server's TCP passive candidate in the offers `p` got.
fn tcp_candidate(p: &SyntheticParticipant) -> Option<SocketAddr> {
    p.events().into_iter().find_map(|m| match m {
        ServerMessage::Offer { sdp } => sdp.lines().find_map(|l| {
            // a=candidate:FOUNDATION 1 tcp PRIO IP PORT typ host tcptype passive …
            let f: Vec<&str> = l.strip_prefix("a=candidate:")?.split(' ').collect();
            (f.get(2)?.eq_ignore_ascii_case("tcp") && l.contains(" tcptype passive")).then(
                || {
                    Some(SocketAddr::new(
                        f.get(4)?.parse().ok()?,
                        f.get(5)?.parse().ok()?,
                    ))
                },
            )?
        }),
        _ => None,
    })
}

/// A TCP connection to `to` from loopback address `from`.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    Ok(socket.connect(to).await?)
}

/// Whether the server closed `stream` within `wait` (EOF or reset), reading away anything it
/// sent.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Splits `streams` into those still open after `wait` and the number the server closed,
/// waiting on all at once.
async fn still_open(
    streams: Vec<TcpStream>,
    wait: Duration,
) -> anyhow::Result<(Vec<TcpStream>, usize)> {
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut s| tokio::spawn(async move { (closed_within(&mut s, wait).await, s) }))
        .collect();
    let (mut open, mut closed) = (Vec::new(), 0);
    for t in tasks {
        match t.await? {
            (true, _) => closed += 1,
            (false, s) => open.push(s),
        }
    }
    Ok((open, closed))
}

/// Packets `p` has received from `from`, audio and video.
fn received_from(p: &SyntheticParticipant, from: &SyntheticParticipant) -> u64 {
    let s = p.stats();
    s.packets_from(from.id(), TrackKind::Audio) + s.packets_from(from.id(), TrackKind::Video)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_tcp_flood_hits_the_limits_and_media_keeps_flowing() -> anyhow::Result<()> {
    let server = Server::start_with(&[
        // One shard: the flood lands on the shard that forwards the media.
        "--media-shards",
        "1",
        "--ice-tcp-max-connections",
        &MAX_CONNECTIONS.to_string(),
        "--ice-tcp-max-per-ip",
        &MAX_PER_IP.to_string(),
        "--ice-tcp-buffer-bytes",
        &BUFFER_BYTES.to_string(),
        "--ice-tcp-idle-secs",
        &IDLE_SECS.to_string(),
    ])
    .await?;
    let room = "flood";
    // ~300 KB/s of video from each publisher, so the stalled reader's buffers fill in a
    // second or two.
    let heavy = ParticipantOptions {
        video_packets_per_frame: 10,
        ..ParticipantOptions::default()
    };
    let a = join_connected(&server, room, "UdpA", heavy.clone()).await?;
    let over_tcp = ParticipantOptions {
        ice_tcp: true,
        ..heavy
    };
    let b = join_connected(&server, room, "TcpB", over_tcp.clone()).await?;
    let slow = join_connected(&server, room, "TcpSlow", over_tcp).await?;
    wait_mesh(&[&a, &b, &slow], 50, 50, Duration::from_secs(20)).await?;
    let target = tcp_candidate(&a).context("no TCP passive candidate offered")?;
    ensure!(
        server.metric("veche_ice_tcp_connections").await? == 2,
        "B's and the slow reader's connections"
    );
    let rss_before = proc_status_mib(server.pid(), "VmHWM")?;

    // The slow reader stops reading: what it is sent piles up in the kernel, then in its
    // server-side queue, which drops past BUFFER_BYTES.
    slow.stall_reading(true)?;
    let (a_from_b, b_from_a) = (received_from(&a, &b), received_from(&b, &a));

    // Past the per-address limit, from one address: the extra connections close at once.
    let one = Ipv4Addr::new(127, 0, 3, 1);
    let mut same_ip = Vec::new();
    for _ in 0..MAX_PER_IP + 6 {
        same_ip.push(connect_from(one, target).await?);
    }
    let (mut open, refused) = still_open(same_ip, Duration::from_millis(300)).await?;
    ensure!(
        open.len() == MAX_PER_IP && refused == 6,
        "{} of {} connections from one address stayed open, want {MAX_PER_IP}",
        open.len(),
        MAX_PER_IP + 6
    );

    // Past the total, from many addresses (each under its own limit).
    let mut many = Vec::new();
    for i in 0..8u8 {
        for _ in 0..MAX_PER_IP {
            many.push(connect_from(Ipv4Addr::new(127, 0, 4, i + 1), target).await?);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let total = server.metric("veche_ice_tcp_connections").await?;
    ensure!(
        total == MAX_CONNECTIONS as u64,
        "{total} ICE-TCP connections open, want the limit {MAX_CONNECTIONS}"
    );
    let refused_total = server.metric("veche_ice_tcp_refused_total").await?;
    // 6 from one address, and 8 × 8 + 8 + 2 − 48 = 26 over the total.
    ensure!(
        refused_total == 6 + 26,
        "{refused_total} connections refused, want 32"
    );
    open.extend(many);

    // Junk on every open connection: frames of random bytes, and on some a length past the
    // frame limit, which closes the connection at once.
    for (i, s) in open.iter_mut().enumerate() {
        let mut junk = Vec::new();
        for k in 0..20u16 {
            let len = 100 + k * 37;
            junk.extend_from_slice(&len.to_be_bytes());
            junk.extend((0..len).map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8)));
        }
        if i % 4 == 0 {
            junk.extend_from_slice(&[0xff, 0xff]);
        }
        // A connection the server already closed may refuse the write; that is fine.
        let _ = s.write_all(&junk).await;
    }
    // Nothing a participant takes comes on them: all are closed once idle.
    let (left_open, _) = still_open(open, Duration::from_secs(IDLE_SECS + 3)).await?;
    ensure!(
        left_open.is_empty(),
        "{} junk connections still open",
        left_open.len()
    );
    // B's connection at least (the stalled reader's own ICE may give up on it by now).
    let left = server.metric("veche_ice_tcp_connections").await?;
    ensure!(
        (1..=2).contains(&left),
        "{left} ICE-TCP connections left, want B's and perhaps the slow reader's"
    );

    // The slow reader's queue overflowed into drops instead of memory.
    let dropped = server.metric("veche_ice_tcp_dropped_total").await?;
    ensure!(dropped > 0, "nothing dropped for the stalled reader");
    let rss_peak = proc_status_mib(server.pid(), "VmHWM")?;
    eprintln!(
        "ICE-TCP flood: peak RSS {rss_before} → {rss_peak} MiB, {refused_total} refused, \
         {dropped} frames dropped for the stalled reader"
    );
    ensure!(
        rss_peak <= rss_before + FLOOD_SLACK_MIB,
        "peak RSS grew from {rss_before} to {rss_peak} MiB"
    );

    // A (UDP) and B (TCP) kept receiving each other all along, and still do.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (a_now, b_now) = (received_from(&a, &b), received_from(&b, &a));
    ensure!(
        a_now > a_from_b + 100 && b_now > b_from_a + 100,
        "media stalled during the flood: A got {a_from_b} → {a_now} from B, B got {b_from_a} → \
         {b_now} from A; A {}, B {}",
        summary(&a.stats()),
        summary(&b.stats())
    );
    server.pass();
    Ok(())
}
