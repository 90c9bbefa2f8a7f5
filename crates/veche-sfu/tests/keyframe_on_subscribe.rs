//! A new subscriber to a video track makes the SFU ask the publisher for a keyframe, so the
//! picture appears at once instead of at the publisher's next periodic keyframe.

use crate::common;

use std::time::Duration;

use common::Sim;
use veche_proto::TrackKind;
use veche_sfu::Limits;

#[test]
fn subscribing_requests_a_keyframe_from_the_publisher() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("r", "Ann");
    sim.run_for(Duration::from_secs(2));
    let before = sim.clients[a].keyframe_requests;

    let b = sim.join("r", "Bob");
    sim.run_for(Duration::from_millis(800));

    assert!(
        sim.clients[a].keyframe_requests > before,
        "publisher got a keyframe request after a subscriber joined"
    );
    let got = sim.clients[b]
        .stats(sim.clients[a].id, TrackKind::Video)
        .packets;
    assert!(got > 0, "new subscriber receives video ({got} packets)");
}
