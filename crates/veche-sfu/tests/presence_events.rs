//! What the core reports of a stored meeting's course, for the server's webhooks: the
//! meeting starting (once, not again when a restart carries it on), each participant let
//! in (not while held in the waiting room) and each one leaving, then the meeting
//! finishing. Instant guest rooms report none of it.

use crate::common;

use common::Sim;
use veche_proto::{ClientMessage, Role};
use veche_sfu::{JoinGrant, Limits, MeetingRef, SfuEvent, UserRef};

const ROOM: &str = "p4tq8w2xr5tb7ne9dpaz";

fn record() -> MeetingRef {
    MeetingRef {
        id: ROOM.into(),
        org_id: "org1".into(),
        title: "Standup".into(),
    }
}

fn grant(role: Role, user: Option<&str>) -> JoinGrant {
    JoinGrant {
        role,
        user: user.map(|u| UserRef {
            id: u.into(),
            email: format!("{u}@example.org"),
        }),
        ip: Some([10, 0, 0, 1].into()),
        meeting: Some(record()),
        ..JoinGrant::default()
    }
}

/// The course of the meeting as short labels, in order.
fn course(sim: &Sim) -> Vec<String> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            SfuEvent::MeetingStarted(s) => Some(format!("started {}", s.meeting.id)),
            SfuEvent::ParticipantJoined(p) => Some(format!("joined {} {:?}", p.name, p.role)),
            SfuEvent::ParticipantLeft(p) => Some(format!("left {}", p.name)),
            SfuEvent::MeetingFinished(u) => Some(format!("finished {}", u.meeting_id)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_stored_meeting_reports_its_course() {
    let mut sim = Sim::new(Limits::default());
    let start_ms = sim.unix_ms();
    let h = sim.join_with(ROOM, "Hana", grant(Role::Host, Some("u1")));
    let waiting = JoinGrant {
        waiting_room: true,
        ..grant(Role::Guest, None)
    };
    let g = sim.join_with(ROOM, "Gus", waiting);
    assert_eq!(
        course(&sim),
        [format!("started {ROOM}"), "joined Hana Host".into()],
        "nobody joins while waiting"
    );
    let gus = sim.clients[g].id;
    sim.send(
        h,
        ClientMessage::Admit {
            participant_id: gus,
        },
    );
    sim.disconnect(g);
    sim.disconnect(h);
    assert_eq!(
        course(&sim),
        [
            format!("started {ROOM}"),
            "joined Hana Host".into(),
            "joined Gus Guest".into(),
            "left Gus".into(),
            "left Hana".into(),
            format!("finished {ROOM}"),
        ]
    );
    let joined: Vec<_> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            SfuEvent::ParticipantJoined(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(joined[0].user.as_ref().map(|u| u.id.as_str()), Some("u1"));
    assert_eq!(joined[0].meeting, record());
    assert_eq!(joined[0].participant_id, sim.clients[h].id);
    assert!(joined[0].at_ms >= start_ms);
    assert_eq!(joined[1].user, None, "a guest has no account");
}

#[test]
fn a_restored_meeting_does_not_start_again() {
    let mut sim = Sim::new(Limits::default());
    sim.join_with(ROOM, "Hana", grant(Role::Host, Some("u1")));
    sim.run_for(std::time::Duration::from_millis(300));
    let snapshot = sim
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            SfuEvent::MeetingSaved { snapshot, .. } => Some(snapshot.clone()),
            _ => None,
        })
        .expect("a snapshot of the running meeting");

    let mut after = Sim::new(Limits::default());
    let (now, unix_ms) = (after.now, after.unix_ms());
    assert!(after.sfu.restore(now, unix_ms, &snapshot));
    after.join_with(ROOM, "Hana", grant(Role::Host, Some("u1")));
    assert_eq!(course(&after), ["joined Hana Host"]);
}

#[test]
fn instant_guest_rooms_report_nothing() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("coffee", "Ann");
    sim.disconnect(a);
    assert!(course(&sim).is_empty(), "{:?}", sim.events);
}
