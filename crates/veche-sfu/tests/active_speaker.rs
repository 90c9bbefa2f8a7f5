//! The active speaker is the participant whose audio is loudest (RFC 6464 levels in the audio
//! packets), whatever the order they joined in; silence never takes it; and while the speaker
//! still speaks, only someone clearly louder takes over.

use crate::common;

use std::time::Duration;

use common::Sim;
use veche_proto::ServerMessage;
use veche_sfu::Limits;

/// The participant the last `active_speaker` that client `idx` got names.
fn last_speaker(sim: &Sim, idx: usize) -> Option<u64> {
    sim.clients[idx].inbox.iter().rev().find_map(|m| match m {
        ServerMessage::ActiveSpeaker { participant_id } => *participant_id,
        _ => None,
    })
}

#[test]
fn the_loudest_participant_is_the_active_speaker() {
    let mut sim = Sim::new(Limits::default());
    let loud = sim.join("standup", "Ann");
    let quiet = sim.join("standup", "Bob");
    let silent = sim.join("standup", "Cid");
    // Ann joined first (lowest id): ties or a misread level would pick someone else.
    sim.clients[loud].audio_level = Some(-20);
    sim.clients[quiet].audio_level = Some(-50);
    sim.clients[silent].audio_level = Some(-127);
    sim.run_for(Duration::from_secs(3));

    let ann = sim.clients[loud].id;
    for idx in [loud, quiet, silent] {
        assert_eq!(
            last_speaker(&sim, idx),
            Some(ann),
            "client {idx} hears Ann as the speaker"
        );
    }

    // Ann stops; Bob, quiet but above the speaking threshold, takes over; Cid never does.
    sim.clients[loud].audio_level = Some(-127);
    sim.run_for(Duration::from_secs(2));
    let bob = sim.clients[quiet].id;
    assert_eq!(last_speaker(&sim, silent), Some(bob));
    let cid = sim.clients[silent].id;
    assert!(
        !sim.clients[loud].saw(|m| matches!(m, ServerMessage::ActiveSpeaker { participant_id } if *participant_id == Some(cid))),
        "silence is never the active speaker"
    );

    // Cid starts at about Bob's level, a little louder: Bob keeps it (no turn-taking between
    // two people at the same level); clearly louder, Cid takes it.
    sim.clients[silent].audio_level = Some(-47);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(
        last_speaker(&sim, loud),
        Some(bob),
        "3 dB louder is not enough to take over"
    );
    sim.clients[silent].audio_level = Some(-35);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        last_speaker(&sim, loud),
        Some(cid),
        "15 dB louder takes over"
    );
}

#[test]
fn a_newcomer_learns_who_is_speaking() {
    let mut sim = Sim::new(Limits::default());
    let loud = sim.join("standup", "Ann");
    sim.clients[loud].audio_level = Some(-20);
    sim.run_for(Duration::from_secs(2));
    let ann = sim.clients[loud].id;
    assert_eq!(last_speaker(&sim, loud), Some(ann));

    // Ann keeps speaking, so the speaker does not change and is not announced again: Bob,
    // who joins now, must be told in joining.
    let late = sim.join("standup", "Bob");
    sim.run_for(Duration::from_millis(200));
    assert_eq!(
        last_speaker(&sim, late),
        Some(ann),
        "the newcomer knows Ann speaks"
    );
}
