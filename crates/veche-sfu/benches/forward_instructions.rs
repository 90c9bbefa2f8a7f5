//! A fixed amount of forwarding work for `valgrind --tool=callgrind`, whose instruction counts
//! repeat to a fraction of a percent on a shared machine where criterion's timings do not:
//!
//! ```sh
//! cargo bench -p veche-sfu --bench forward_instructions --no-run
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*Sim*feed_sfu*' \
//!     target/release/deps/forward_instructions-HASH 50 32 200
//! ```
//!
//! Arguments: subscribers (each also publishing, as in a meeting), datagrams per batch, and
//! packets. Only `Sim::feed_sfu` is counted: Ir divided by the forwarded packets it prints is
//! the core's (and str0m's) instructions per forwarded packet.
//!
//! `forward_instructions strangers N K` instead times K STUN checks naming unknown ufrags,
//! from unknown addresses, against a call of N: the cost of an abusive stranger.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Sim, server_addr};
use veche_sfu::Limits;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("strangers") {
        return strangers();
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("numeric argument"))
        .collect();
    let (subscribers, batch, packets) = match args[..] {
        [n, b, p] => (n, b, p),
        [] => (50, 32, 200),
        _ => panic!("usage: forward_instructions SUBSCRIBERS BATCH PACKETS"),
    };
    let mut sim = Sim::new(Limits {
        max_participants_per_room: subscribers + 1,
        ..Limits::default()
    });
    sim.join("bench", "publisher");
    for i in 0..subscribers {
        sim.join("bench", &format!("s{i}"));
    }
    // Only until everyone is connected and subscribed (the criterion bench runs 2 s of a
    // live call first; under valgrind that would take most of an hour at 50).
    for _ in 0..40 {
        sim.run_for(Duration::from_millis(50));
        if sim.clients.iter().all(|c| c.connected) {
            break;
        }
    }
    sim.run_for(Duration::from_millis(200));
    assert!(sim.clients.iter().all(|c| c.connected), "all connected");
    sim.quiet();
    let (mut sent, mut forwarded, mut elapsed) = (0, 0, Duration::ZERO);
    // Two rounds with time passing between them, so timers run as in a live call.
    for _ in 0..2 {
        sim.run_for(Duration::from_millis(20));
        let datagrams = sim.capture_video(0, packets / 2);
        let before = sim.sfu.counters().forwarded_packets;
        let start = Instant::now();
        sent += sim.feed_sfu(0, &datagrams, batch);
        elapsed += start.elapsed();
        forwarded += sim.sfu.counters().forwarded_packets - before;
    }
    println!(
        "forwarded {forwarded} packets, sent {sent} datagrams ({subscribers} subscribers, batch {batch}), {} ns per forwarded packet (wall time, without valgrind)",
        elapsed.as_nanos() / forwarded.max(1) as u128
    );
}

fn strangers() {
    let args: Vec<usize> = std::env::args()
        .skip(2)
        .map(|a| a.parse().expect("numeric argument"))
        .collect();
    let [n, k] = args[..] else {
        panic!("usage: forward_instructions strangers PARTICIPANTS CHECKS");
    };
    let mut sim = Sim::new(Limits {
        max_participants_per_room: n,
        ..Limits::default()
    });
    for i in 0..n {
        sim.join("bench", &format!("p{i}"));
    }
    sim.run_for(Duration::from_secs(1));
    sim.quiet();
    let checks: Vec<(SocketAddr, Vec<u8>)> = (0..k)
        .map(|i| {
            let ip = IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8));
            (SocketAddr::new(ip, 5000), stun_check(&format!("u{i:07}:x")))
        })
        .collect();
    let start = Instant::now();
    feed_strangers(&mut sim, &checks);
    let ns = start.elapsed().as_nanos() / k.max(1) as u128;
    println!("{ns} ns per stranger's STUN check ({n} participants)");
}

#[inline(never)]
fn feed_strangers(sim: &mut Sim, checks: &[(SocketAddr, Vec<u8>)]) {
    for (from, d) in checks {
        sim.sfu.handle_datagram(sim.now, *from, server_addr(), d);
    }
}

/// A STUN binding request with this USERNAME and a MESSAGE-INTEGRITY that is all wrong.
fn stun_check(username: &str) -> Vec<u8> {
    // PRIORITY, USERNAME, MESSAGE-INTEGRITY: what str0m's parser requires of a request.
    let mut attrs = vec![0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x1e, 0xff];
    attrs.extend_from_slice(&0x0006u16.to_be_bytes());
    attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attrs.extend_from_slice(username.as_bytes());
    attrs.resize(attrs.len().div_ceil(4) * 4, 0);
    attrs.extend_from_slice(&0x0008u16.to_be_bytes());
    attrs.extend_from_slice(&20u16.to_be_bytes());
    attrs.extend_from_slice(&[0x5a; 20]);
    let mut d = vec![0x00, 0x01];
    d.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    d.extend_from_slice(&0x2112_a442u32.to_be_bytes());
    d.extend_from_slice(&[3; 12]);
    d.extend_from_slice(&attrs);
    d
}
