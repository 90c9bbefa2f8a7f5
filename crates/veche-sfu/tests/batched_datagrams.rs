//! The driving contract allows many datagrams to be fed before the output is drained (the
//! driver feeds what one socket wake-up reads, then drains): nothing is lost or held back by
//! that, whatever the batch size.

mod common;

use std::time::Duration;

use common::Sim;
use veche_sfu::Limits;

#[test]
fn a_batch_of_datagrams_is_forwarded_whole_when_drained_once() {
    let mut sim = Sim::new(Limits::default());
    let publisher = sim.join("batch", "Pub");
    sim.join("batch", "Sub1");
    sim.join("batch", "Sub2");
    sim.run_for(Duration::from_secs(3));
    assert!(
        sim.clients.iter().all(|c| c.connected),
        "everyone connected"
    );
    sim.quiet();
    sim.run_for(Duration::from_millis(200));

    for batch in [1, 7, 64] {
        let packets = sim.capture_video(publisher, 64);
        assert!(packets.len() >= 64, "captured {}", packets.len());
        let sent = sim.feed_sfu(publisher, &packets, batch);
        // Each of the two subscribers gets every packet (RTCP may come on top).
        assert!(
            sent >= 2 * packets.len(),
            "batch {batch}: {sent} datagrams out for {} in to 2 subscribers",
            packets.len()
        );
        sim.run_for(Duration::from_millis(50));
    }
}
