//! Three participants publish audio and video; each receives the other two, in order. One
//! leaves; the others are told and keep receiving each other.

use crate::common;

use std::time::Duration;

use common::Sim;
use veche_proto::{ServerMessage, TrackKind};
use veche_sfu::Limits;

#[test]
fn three_party_call_and_leave() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("standup", "Ann");
    let b = sim.join("standup", "Bob");
    let c = sim.join("standup", "Cid");
    sim.run_for(Duration::from_secs(3));

    for &(rx, txs) in &[(a, [b, c]), (b, [a, c]), (c, [a, b])] {
        assert!(sim.clients[rx].connected, "client {rx} ICE/DTLS connected");
        for tx in txs {
            let from = sim.clients[tx].id;
            for kind in [TrackKind::Audio, TrackKind::Video] {
                let s = sim.clients[rx].stats(from, kind);
                assert!(
                    s.packets > 50,
                    "{rx} got {} {kind:?} packets from {tx}",
                    s.packets
                );
                assert_eq!(s.out_of_order, 0, "{rx} <- {tx} {kind:?} in order");
                assert_eq!(s.misattributed, 0, "{rx} <- {tx} {kind:?} attributed");
            }
        }
    }

    let before_a = sim.clients[a]
        .stats(sim.clients[b].id, TrackKind::Video)
        .packets;
    let before_b = sim.clients[b]
        .stats(sim.clients[a].id, TrackKind::Audio)
        .packets;
    let left = sim.clients[c].id;
    sim.disconnect(c);
    sim.run_for(Duration::from_secs(2));

    for rx in [a, b] {
        assert!(
            sim.clients[rx].saw(|m| matches!(m, ServerMessage::ParticipantLeft { participant_id } if *participant_id == left)),
            "client {rx} told that {left} left"
        );
        assert!(
            sim.clients[rx].saw(|m| matches!(m, ServerMessage::TrackUnpublished { participant_id, .. } if *participant_id == left)),
            "client {rx} told that {left}'s tracks ended"
        );
    }
    let after_a = sim.clients[a].stats(sim.clients[b].id, TrackKind::Video);
    let after_b = sim.clients[b].stats(sim.clients[a].id, TrackKind::Audio);
    assert!(
        after_a.packets > before_a + 100,
        "a keeps receiving b's video"
    );
    assert!(
        after_b.packets > before_b + 50,
        "b keeps receiving a's audio"
    );
    assert_eq!(after_a.out_of_order + after_b.out_of_order, 0);
    assert_eq!(sim.sfu.participant_count(), 2);
}
