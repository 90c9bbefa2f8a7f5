//! Bad signalling requests get specific errors; the sender's and everyone else's media
//! keeps flowing.

use crate::common;

use std::time::Duration;

use common::Sim;
use veche_proto::{ClientMessage, ErrorCode, ServerMessage, TrackKind};
use veche_sfu::Limits;

fn got_error(sim: &Sim, idx: usize, code: ErrorCode) -> bool {
    sim.clients[idx].saw(|m| matches!(m, ServerMessage::Error { code: c, .. } if *c == code))
}

#[test]
fn bad_requests_get_specific_errors() {
    let mut sim = Sim::new(Limits {
        max_chat_chars: 10,
        ..Limits::default()
    });
    let a = sim.join("r", "Ann");
    let b = sim.join("r", "Bob");
    sim.run_for(Duration::from_secs(1));

    sim.send(
        a,
        ClientMessage::Chat {
            text: "far too long for the limit".into(),
        },
    );
    assert!(got_error(&sim, a, ErrorCode::ChatTooLong));
    sim.send(
        a,
        ClientMessage::Answer {
            sdp: "v=0 garbage".into(),
        },
    );
    assert!(
        got_error(&sim, a, ErrorCode::UnexpectedAnswer)
            || got_error(&sim, a, ErrorCode::InvalidSdp)
    );
    sim.send(
        a,
        ClientMessage::Candidate {
            candidate: "candidate:nonsense".into(),
        },
    );
    assert!(got_error(&sim, a, ErrorCode::InvalidCandidate));
    // An mDNS-hidden candidate is not an error, just useless to an ICE-lite server.
    let errors_before = sim.clients[a].inbox.len();
    sim.send(
        a,
        ClientMessage::Candidate {
            candidate: "candidate:1 1 udp 2122260223 0b2c4d9e-1f.local 54321 typ host".into(),
        },
    );
    assert_eq!(sim.clients[a].inbox.len(), errors_before);
    let late = sim.join("bad room!", "Eve");
    assert!(got_error(&sim, late, ErrorCode::InvalidRoom));

    let before = sim.clients[b]
        .stats(sim.clients[a].id, TrackKind::Video)
        .packets;
    sim.run_for(Duration::from_secs(1));
    let after = sim.clients[b]
        .stats(sim.clients[a].id, TrackKind::Video)
        .packets;
    assert!(
        after > before + 50,
        "media kept flowing after the bad input ({before} -> {after})"
    );

    sim.send(b, ClientMessage::Chat { text: "hi".into() });
    assert!(sim.clients[a].saw(|m| matches!(m, ServerMessage::Chat { text, .. } if text == "hi")));
}
