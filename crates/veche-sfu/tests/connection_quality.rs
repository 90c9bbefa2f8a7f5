//! Everyone is told the quality of each participant's link as the server sees it: a
//! participant behind a narrow link turns poor, the others stay good.

use crate::common;

use std::time::Duration;

use common::Sim;
use veche_proto::{ConnectionQuality, ParticipantId, ServerMessage};
use veche_sfu::Limits;

fn quality_of(sim: &Sim, rx: usize, of: ParticipantId) -> Option<ConnectionQuality> {
    sim.clients[rx].inbox.iter().rev().find_map(|m| match m {
        ServerMessage::ConnectionQuality { participants } => participants
            .iter()
            .find(|p| p.participant_id == of)
            .map(|p| p.quality),
        _ => None,
    })
}

#[test]
fn a_narrow_link_is_reported_poor_to_everyone() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("r", "Ann");
    let b = sim.join("r", "Bob");
    let c = sim.join("r", "Cid");
    sim.run_for(Duration::from_secs(5));
    let (ann, bob) = (sim.clients[a].id, sim.clients[b].id);
    for rx in [a, b, c] {
        assert_eq!(quality_of(&sim, rx, ann), Some(ConnectionQuality::Good));
        assert_eq!(quality_of(&sim, rx, bob), Some(ConnectionQuality::Good));
    }
    let messages = |sim: &Sim| {
        sim.clients[c]
            .inbox
            .iter()
            .filter(|m| matches!(m, ServerMessage::ConnectionQuality { .. }))
            .count()
    };
    let before = messages(&sim);

    sim.cap_downlink(b, Some(100_000));
    sim.run_for(Duration::from_secs(10));
    for rx in [a, c] {
        assert_eq!(quality_of(&sim, rx, bob), Some(ConnectionQuality::Poor));
        assert_eq!(quality_of(&sim, rx, ann), Some(ConnectionQuality::Good));
    }
    // Sent on change only, and never more often than every 2 s.
    let sent = messages(&sim) - before;
    assert!(
        (1..=5).contains(&sent),
        "{sent} connection_quality messages in 10 s"
    );
}
