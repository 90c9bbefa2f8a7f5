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

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::Sim;
use veche_sfu::Limits;

fn main() {
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
    sim.run_for(Duration::from_secs(2));
    assert!(sim.clients.iter().all(|c| c.connected), "all connected");
    sim.quiet();
    let (mut sent, mut forwarded) = (0, 0);
    // Two rounds with time passing between them, so timers run as in a live call.
    for _ in 0..2 {
        sim.run_for(Duration::from_millis(20));
        let datagrams = sim.capture_video(0, packets / 2);
        let before = sim.sfu.counters().forwarded_packets;
        sent += sim.feed_sfu(0, &datagrams, batch);
        forwarded += sim.sfu.counters().forwarded_packets - before;
    }
    println!(
        "forwarded {forwarded} packets, sent {sent} datagrams ({subscribers} subscribers, batch {batch})"
    );
}
