//! A screen share is a track of its own: published to everyone while it lasts, then stopped.

use crate::common;

use std::time::Duration;

use common::Sim;
use veche_proto::{ServerMessage, TrackKind};
use veche_sfu::Limits;

#[test]
fn screen_share_reaches_everyone_and_ends() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("r", "Ann");
    let b = sim.join("r", "Bob");
    let c = sim.join("r", "Cid");
    sim.run_for(Duration::from_secs(1));

    sim.share_screen(a, true);
    sim.run_for(Duration::from_secs(2));
    let sharer = sim.clients[a].id;
    for rx in [b, c] {
        let s = sim.clients[rx].stats(sharer, TrackKind::Screen);
        assert!(
            s.packets > 60,
            "client {rx} receives the screen ({} packets)",
            s.packets
        );
        assert_eq!(s.out_of_order + s.misattributed, 0);
    }

    sim.share_screen(a, false);
    sim.run_for(Duration::from_secs(1));
    for rx in [b, c] {
        assert!(sim.clients[rx].saw(|m| matches!(m,
            ServerMessage::TrackUnpublished { participant_id, kind: TrackKind::Screen, .. }
                if *participant_id == sharer)));
        // Camera and microphone are untouched by the end of the share.
        let before = sim.clients[rx].stats(sharer, TrackKind::Video).packets;
        sim.run_for(Duration::from_millis(500));
        assert!(sim.clients[rx].stats(sharer, TrackKind::Video).packets > before + 20);
    }
}

#[test]
fn screen_share_restarted_at_once_keeps_flowing() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("r", "Ann");
    let b = sim.join("r", "Bob");
    sim.run_for(Duration::from_secs(1));
    sim.share_screen(a, true);
    sim.run_for(Duration::from_secs(1));
    // Picking another window: the browser ends the share and starts a new one at once,
    // while the stop is still being negotiated with the viewer.
    sim.share_screen(a, false);
    sim.share_screen(a, true);
    let before = sim.clients[b]
        .stats(sim.clients[a].id, TrackKind::Screen)
        .packets;
    sim.run_for(Duration::from_secs(1));
    let after = sim.clients[b]
        .stats(sim.clients[a].id, TrackKind::Screen)
        .packets;
    assert!(
        after > before + 40,
        "screen keeps flowing ({before} -> {after})"
    );
}
