//! The driving contract allows many datagrams to be fed before the output is drained (the
//! driver feeds what one socket wake-up reads, then drains): nothing is lost by that,
//! whatever the batch size (each subscriber's pacer then spreads what it sends over time).

use crate::common;

use std::time::Duration;

use common::Sim;
use veche_proto::TrackKind;
use veche_sfu::Limits;

#[test]
fn a_batch_of_datagrams_is_forwarded_whole_when_drained_once() {
    let mut sim = Sim::new(Limits::default());
    let publisher = sim.join("batch", "Pub");
    sim.join("batch", "Sub1");
    sim.join("batch", "Sub2");
    sim.run_for(Duration::from_secs(6));
    assert!(
        sim.clients.iter().all(|c| c.connected),
        "everyone connected"
    );
    sim.quiet();
    sim.run_for(Duration::from_millis(200));

    let publisher_id = sim.clients[publisher].id;
    let top = |sim: &Sim, c: usize| {
        sim.clients[c]
            .stats(publisher_id, TrackKind::Video)
            .per_layer[2]
    };
    for batch in [1, 7, 64] {
        let before = [top(&sim, 1), top(&sim, 2)];
        let packets = sim.capture_video(publisher, 64);
        assert!(packets.len() >= 64, "captured {}", packets.len());
        sim.deliver_to_sfu(publisher, &packets, batch);
        // The subscribers' pacers release what was queued.
        sim.run_for(Duration::from_millis(500));
        for (i, c) in [1, 2].into_iter().enumerate() {
            let got = top(&sim, c) - before[i];
            assert_eq!(
                got, 64,
                "batch {batch}: subscriber {c} got {got} of 64 packets"
            );
        }
    }
}
