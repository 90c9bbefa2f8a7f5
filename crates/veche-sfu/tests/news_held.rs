//! News of a change to a meeting's live state is held until the snapshot holding the change
//! is stored (`Limits::news_wait`, `Sfu::handle_saved`): the change takes effect at once,
//! its announcement waits; what comes after it to the same connection waits behind it; the
//! end of a meeting is announced once it is stored as over; and without a store answering,
//! news goes out anyway when the wait is up.

use crate::common;

use std::net::IpAddr;
use std::time::Duration;

use common::Sim;
use veche_proto::{ClientMessage, ErrorCode, ParticipantId, Role, ServerMessage, TrackKind};
use veche_sfu::{JoinGrant, Limits, MeetingRef, SfuEvent, UserRef};

const ROOM: &str = "n7q2w9e4r1t6y3u8i5o0";
const WAIT: Duration = Duration::from_millis(1000);

fn grant(role: Role, n: u8) -> JoinGrant {
    JoinGrant {
        role,
        user: (role != Role::Guest).then(|| UserRef {
            id: format!("user{n}"),
            email: format!("user{n}@example.org"),
        }),
        ip: Some(IpAddr::from([10, 0, 0, n])),
        meeting: Some(MeetingRef {
            id: ROOM.into(),
            org_id: "org1".into(),
            title: "Held news".into(),
        }),
        ..JoinGrant::default()
    }
}

fn sim() -> Sim {
    Sim::new(Limits {
        news_wait: Some(WAIT),
        ..Limits::default()
    })
}

fn id(sim: &Sim, idx: usize) -> ParticipantId {
    sim.clients[idx].id
}

fn joined(sim: &Sim, idx: usize) -> bool {
    sim.clients[idx].saw(|m| matches!(m, ServerMessage::Joined { .. }))
}

/// The latest stored snapshot's host mutes of participant key `key`.
fn stored_mutes(sim: &Sim, key: &str) -> Option<[bool; 3]> {
    sim.events.iter().rev().find_map(|e| match e {
        SfuEvent::MeetingSaved { snapshot, .. } => snapshot
            .people
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.host_muted),
        _ => None,
    })
}

#[test]
fn told_once_stored() {
    let mut sim = sim();
    let h = sim.join_with(ROOM, "Hana", grant(Role::Host, 1));
    assert!(!joined(&sim, h), "let in, but not told before it is stored");
    assert!(sim.store_snapshots() >= 1);
    assert!(joined(&sim, h));
    let g = sim.join_with(ROOM, "Gus", grant(Role::Participant, 2));
    sim.store_snapshots();
    assert!(joined(&sim, g));
    sim.run_for(Duration::from_millis(500));
    sim.store_snapshots();

    // The host mutes Gus: in force at once, announced once stored.
    let gid = id(&sim, g);
    sim.send(
        h,
        ClientMessage::Mute {
            participant_id: gid,
            kind: TrackKind::Audio,
        },
    );
    let muted = |m: &ServerMessage| matches!(m, ServerMessage::MutedByHost { .. });
    assert!(!sim.clients[g].saw(muted), "told before it was stored");
    assert_eq!(stored_mutes(&sim, "user:user2"), Some([true, false, false]));
    sim.send(
        h,
        ClientMessage::SetMeeting {
            locked: None,
            allow_self_unmute: Some(false),
        },
    );
    sim.send(
        g,
        ClientMessage::SetMedia {
            kind: TrackKind::Audio,
            enabled: true,
        },
    );
    let refused = |m: &ServerMessage| {
        matches!(
            m,
            ServerMessage::Error {
                code: ErrorCode::UnmuteNotAllowed,
                ..
            }
        )
    };
    assert!(
        !sim.clients[g].saw(refused),
        "the answer waits behind the news"
    );
    sim.store_snapshots();
    let inbox = &sim.clients[g].inbox;
    let at = |f: &dyn Fn(&ServerMessage) -> bool| inbox.iter().position(f);
    let (muted_at, refused_at) = (at(&muted), at(&refused));
    assert!(
        muted_at.is_some() && muted_at < refused_at,
        "the mute, then the refusal: {inbox:?}"
    );

    // The co-host role: the others hear of it once stored.
    sim.send(
        h,
        ClientMessage::SetRole {
            participant_id: gid,
            role: Role::CoHost,
        },
    );
    let promoted = |m: &ServerMessage| {
        matches!(
            m,
            ServerMessage::RoleChanged {
                role: Role::CoHost,
                ..
            }
        )
    };
    assert!(!sim.clients[h].saw(promoted));
    sim.store_snapshots();
    assert!(sim.clients[h].saw(promoted));

    // A raised hand is part of the snapshot.
    sim.send(g, ClientMessage::RaiseHand { raised: true });
    let hand = |m: &ServerMessage| matches!(m, ServerMessage::Hand { raised: true, .. });
    assert!(!sim.clients[h].saw(hand));
    let stored_hand = sim.events.iter().rev().find_map(|e| match e {
        SfuEvent::MeetingSaved { snapshot, .. } => snapshot
            .people
            .iter()
            .find(|p| p.key == "user:user2")
            .map(|p| p.hand_raised),
        _ => None,
    });
    assert_eq!(stored_hand, Some(true));
    sim.store_snapshots();
    assert!(sim.clients[h].saw(hand));

    // The end: over at once (media gone), announced once that is stored.
    sim.send(h, ClientMessage::EndMeeting);
    let ended = |m: &ServerMessage| matches!(m, ServerMessage::MeetingEnded { .. });
    assert_eq!(sim.sfu.room_count(), 0);
    assert!(!sim.clients[g].saw(ended) && sim.closed.is_empty());
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, SfuEvent::MeetingClosed { room, .. } if room == ROOM))
    );
    sim.store_snapshots();
    assert!(sim.clients[g].saw(ended) && sim.clients[h].saw(ended));
    assert_eq!(sim.closed.len(), 2, "and then closed");
}

#[test]
fn news_goes_out_unstored_when_the_wait_is_up() {
    let mut sim = sim();
    let h = sim.join_with(ROOM, "Hana", grant(Role::Host, 1));
    sim.store_snapshots();
    let g = sim.join_with(ROOM, "Gus", grant(Role::Participant, 2));
    sim.store_snapshots();
    // The store stops answering: the lock is announced when the wait is up, no sooner.
    sim.send(
        h,
        ClientMessage::SetMeeting {
            locked: Some(true),
            allow_self_unmute: None,
        },
    );
    let locked = |m: &ServerMessage| matches!(m, ServerMessage::MeetingUpdated { meeting } if meeting.locked);
    sim.run_for(WAIT - Duration::from_millis(100));
    assert!(!sim.clients[g].saw(locked));
    sim.run_for(Duration::from_millis(200));
    assert!(sim.clients[g].saw(locked), "the meeting never hangs");
    // Chat, which changes nothing stored, is never held.
    sim.send(g, ClientMessage::Chat { text: "hi".into() });
    assert!(
        sim.clients[h].saw(|m| matches!(m, ServerMessage::Chat { .. })),
        "chat went out at once"
    );
}
