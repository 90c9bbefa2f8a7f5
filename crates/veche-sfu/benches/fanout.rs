//! Forwarding throughput of the sans-IO core: one publisher's SRTP video packet in, fanned out
//! to N subscribers, encrypted and handed out as datagrams. No sockets: this measures our code
//! and str0m's, not the kernel.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Sim;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use veche_sfu::Limits;

fn call_with(subscribers: usize) -> Sim {
    let mut sim = Sim::new(Limits {
        max_participants_per_room: subscribers + 1,
        ..Limits::default()
    });
    sim.join("bench", "publisher");
    for i in 0..subscribers {
        sim.join("bench", &format!("s{i}"));
    }
    sim.run_for(Duration::from_secs(2));
    assert!(
        sim.clients.iter().all(|c| c.connected),
        "all peers connected"
    );
    sim.quiet();
    sim
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    // Batch 1: every datagram handled alone (an idle server). Batch 32: what one socket
    // wake-up reads under load; subscribers are then polled once per batch.
    for (n, batch) in [(10usize, 1usize), (10, 32), (50, 1), (50, 32), (150, 32)] {
        let mut sim = call_with(n);
        group.throughput(Throughput::Elements(n as u64));
        let id = BenchmarkId::new(format!("batch{batch}"), n);
        group.bench_with_input(id, &n, |b, &n| {
            b.iter_custom(|iters| {
                // Packets are made in chunks so memory stays flat however many iterations
                // criterion asks for; only feeding them to the SFU is timed.
                let mut elapsed = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let chunk = left.min(500);
                    left -= chunk;
                    // Let time pass (~10k packets/s) with everyone polled, so ICE consent,
                    // RTCP and timers behave as in a live call.
                    sim.run_for(Duration::from_millis(chunk as u64 / 10));
                    let packets = sim.capture_video(0, chunk);
                    let start = Instant::now();
                    let sent = sim.feed_sfu(0, &packets, batch);
                    elapsed += start.elapsed();
                    // Every packet reaches every subscriber.
                    assert!(sent >= chunk * n, "sent {sent} for {chunk} packets to {n}");
                }
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
