//! A camera published in three simulcast layers reaches each subscriber in the smallest
//! layer that covers the tile it renders, as one continuous stream.

use crate::common;

use std::time::Duration;

use common::{Sim, camera_tile};
use veche_proto::TrackKind;
use veche_sfu::Limits;

#[test]
fn each_subscriber_gets_the_layer_its_tile_needs() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("r", "Ann");
    let small = sim.join("r", "Bob");
    let large = sim.join("r", "Cid");
    let unreported = sim.join("r", "Dee");
    sim.run_for(Duration::from_millis(500));
    let ann = sim.clients[a].id;
    sim.send(small, camera_tile(ann, 320, 200));
    sim.send(large, camera_tile(ann, 1280, 720));
    sim.run_for(Duration::from_secs(15));

    let before: Vec<_> = [small, large, unreported]
        .iter()
        .map(|&c| sim.clients[c].stats(ann, TrackKind::Video))
        .collect();
    sim.run_for(Duration::from_secs(2));
    for (&c, want) in [small, large, unreported].iter().zip([0, 2, 2]) {
        let s = sim.clients[c].stats(ann, TrackKind::Video);
        let b = &before[[small, large, unreported]
            .iter()
            .position(|x| *x == c)
            .unwrap()];
        let got: Vec<u64> = (0..3).map(|l| s.per_layer[l] - b.per_layer[l]).collect();
        assert!(got[want] > 50, "client {c} receives layer {want}: {got:?}");
        for (l, n) in got.iter().enumerate() {
            if l != want {
                assert_eq!(*n, 0, "client {c} receives only layer {want}: {got:?}");
            }
        }
        assert_eq!(s.bad_switches, 0, "client {c}: switches only at keyframes");
        assert_eq!(s.seq_gaps, 0, "client {c}: sequence numbers continue");
        assert_eq!(s.picture_id_jumps, 0, "client {c}: picture ids continue");
        assert_eq!(s.out_of_order + s.misattributed, 0);
    }
    // Audio is untouched by any of it.
    for c in [small, large, unreported] {
        assert!(sim.clients[c].stats(ann, TrackKind::Audio).packets > 200);
    }
}
