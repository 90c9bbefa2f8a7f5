//! Explicit limits refuse with specific errors and affect nobody else.

use crate::common;

use std::time::Duration;

use common::Sim;
use veche_proto::{ErrorCode, ServerMessage, TrackKind};
use veche_sfu::Limits;

fn got_error(sim: &Sim, idx: usize, code: ErrorCode) -> bool {
    sim.clients[idx].saw(|m| matches!(m, ServerMessage::Error { code: c, .. } if *c == code))
}

#[test]
fn full_room_refuses_the_extra_joiner() {
    let mut sim = Sim::new(Limits {
        max_participants_per_room: 2,
        ..Limits::default()
    });
    let a = sim.join("small", "Ann");
    let b = sim.join("small", "Bob");
    let c = sim.join("small", "Cid");
    // Another room is unaffected by the full one.
    let d = sim.join("other", "Dee");
    sim.run_for(Duration::from_secs(2));

    assert!(got_error(&sim, c, ErrorCode::RoomFull));
    assert!(!got_error(&sim, d, ErrorCode::RoomFull));
    assert!(sim.clients[d].connected);
    let ab = sim.clients[b].stats(sim.clients[a].id, TrackKind::Audio);
    assert!(ab.packets > 30, "the two inside still talk");
}
