//! A camera layer no subscriber's tile needs is turned off at the publisher (`layers_wanted`),
//! and turned back on at once when a tile needs it again.

use crate::common;

use std::time::Duration;

use common::{Sim, camera_tile};
use veche_proto::{ServerMessage, TrackKind};
use veche_sfu::Limits;

fn wanted(sim: &Sim, idx: usize) -> Option<Vec<String>> {
    sim.clients[idx].inbox.iter().rev().find_map(|m| match m {
        ServerMessage::LayersWanted {
            kind: TrackKind::Video,
            rids,
        } => Some(rids.clone()),
        _ => None,
    })
}

#[test]
fn layers_nobody_needs_are_turned_off_and_back_on() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("r", "Ann");
    let b = sim.join("r", "Bob");
    sim.run_for(Duration::from_secs(1));
    let ann = sim.clients[a].id;
    let tile = |height: u32| camera_tile(ann, height * 16 / 9, height);
    sim.send(b, tile(180));
    sim.run_for(Duration::from_secs(2));
    assert_eq!(wanted(&sim, a), None, "layers stay on for a while");
    sim.run_for(Duration::from_secs(2));
    assert_eq!(wanted(&sim, a), Some(vec!["q".to_owned()]));
    assert_eq!(sim.clients[a].camera_layers, [true, false, false]);
    let before = sim.clients[b].stats(ann, TrackKind::Video);
    sim.run_for(Duration::from_secs(1));
    let s = sim.clients[b].stats(ann, TrackKind::Video);
    assert!(
        s.per_layer[0] > before.per_layer[0] + 50,
        "the small tile keeps its layer"
    );

    // A large tile: every layer back on at once, and the subscriber moves up.
    sim.send(b, tile(720));
    sim.run_for(Duration::from_millis(200));
    assert_eq!(
        wanted(&sim, a),
        Some(vec!["q".to_owned(), "h".to_owned(), "f".to_owned()])
    );
    sim.run_for(Duration::from_secs(10));
    let s = sim.clients[b].stats(ann, TrackKind::Video);
    assert_eq!(s.layer, Some(2), "{s:?}");
    assert_eq!(s.bad_switches, 0);
}
