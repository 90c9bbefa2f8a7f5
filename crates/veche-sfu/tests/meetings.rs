//! Meetings on the sans-IO core: waiting room, join-before-host, host controls enforced on
//! the media path, roles and their hand-over, locks, bars, the plan's cap and time limit,
//! and the audit and usage events the server stores.

use crate::common;

use std::net::IpAddr;
use std::time::Duration;

use common::Sim;
use veche_proto::{
    ClientMessage, EndReason, ErrorCode, ParticipantId, Role, ServerMessage, TrackKind, WaitReason,
};
use veche_sfu::{JoinGrant, Limits, MeetingRef, SfuEvent, UserRef};

const ROOM: &str = "k3mzq8w2xr5tb7ne9dpa";

fn meeting() -> Option<MeetingRef> {
    Some(MeetingRef {
        id: ROOM.into(),
        org_id: "org1".into(),
        title: "Weekly sync".into(),
    })
}

fn user(n: u8) -> Option<UserRef> {
    Some(UserRef {
        id: format!("user{n}"),
        email: format!("user{n}@example.org"),
    })
}

fn ip(n: u8) -> Option<IpAddr> {
    Some(IpAddr::from([10, 0, 0, n]))
}

fn host() -> JoinGrant {
    JoinGrant {
        role: Role::Host,
        user: user(1),
        ip: ip(1),
        meeting: meeting(),
        ..JoinGrant::default()
    }
}

fn grant(role: Role, n: u8) -> JoinGrant {
    JoinGrant {
        role,
        user: if role == Role::Guest { None } else { user(n) },
        ip: ip(n),
        meeting: meeting(),
        ..JoinGrant::default()
    }
}

fn waiting_guest(n: u8) -> JoinGrant {
    JoinGrant {
        waiting_room: true,
        ..grant(Role::Guest, n)
    }
}

fn id(sim: &Sim, idx: usize) -> ParticipantId {
    sim.clients[idx].id
}

fn last_error(sim: &Sim, idx: usize) -> Option<ErrorCode> {
    sim.clients[idx].inbox.iter().rev().find_map(|m| match m {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    })
}

fn joined_role(sim: &Sim, idx: usize) -> Option<Role> {
    sim.clients[idx].inbox.iter().find_map(|m| match m {
        ServerMessage::Joined { role, .. } => Some(*role),
        _ => None,
    })
}

fn resume_token(sim: &Sim, idx: usize) -> Option<String> {
    sim.clients[idx].inbox.iter().find_map(|m| match m {
        ServerMessage::Joined { resume, .. } => resume.clone(),
        _ => None,
    })
}

fn packets(sim: &Sim, rx: usize, tx: usize, kind: TrackKind) -> u64 {
    sim.clients[rx].stats(id(sim, tx), kind).packets
}

fn audit_actions(sim: &Sim) -> Vec<&'static str> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            SfuEvent::Audit(a) => Some(a.action),
            _ => None,
        })
        .collect()
}

#[test]
fn waiting_room_admit_and_deny() {
    let mut sim = Sim::new(Limits::default());
    let h = sim.join_with(ROOM, "Hana", host());
    let g = sim.join_with(ROOM, "Gus", waiting_guest(2));
    assert!(
        sim.clients[g].saw(|m| matches!(m, ServerMessage::Waiting { reason: WaitReason::WaitingRoom, title, .. } if title == "Weekly sync")),
        "the guest is told they wait"
    );
    assert_eq!(joined_role(&sim, g), None, "not in the meeting yet");
    let gid = id(&sim, g);
    assert!(
        sim.clients[h].saw(|m| matches!(m, ServerMessage::WaitingAdded { participant } if participant.id == gid && participant.name == "Gus")),
        "the host sees who waits"
    );
    // While waiting, nothing but leave is accepted.
    sim.send(g, ClientMessage::Chat { text: "hi".into() });
    assert_eq!(last_error(&sim, g), Some(ErrorCode::NotJoined));

    sim.send(
        h,
        ClientMessage::Admit {
            participant_id: gid,
        },
    );
    assert_eq!(joined_role(&sim, g), Some(Role::Guest));
    assert!(sim.clients[h].saw(
        |m| matches!(m, ServerMessage::WaitingRemoved { participant_id } if *participant_id == gid)
    ));
    sim.run_for(Duration::from_secs(3));
    assert!(
        packets(&sim, h, g, TrackKind::Video) > 30,
        "host receives the admitted guest"
    );
    assert!(
        packets(&sim, g, h, TrackKind::Video) > 30,
        "guest receives the host"
    );

    let d = sim.join_with(ROOM, "Dee", waiting_guest(3));
    let did = id(&sim, d);
    sim.send(
        h,
        ClientMessage::Deny {
            participant_id: did,
        },
    );
    assert_eq!(last_error(&sim, d), Some(ErrorCode::Denied));
    assert!(sim.closed.contains(&did), "a denied joiner is disconnected");
    assert_eq!(joined_role(&sim, d), None);
    // Admitting someone who is not waiting says so.
    sim.send(
        h,
        ClientMessage::Admit {
            participant_id: did,
        },
    );
    assert_eq!(last_error(&sim, h), Some(ErrorCode::UnknownParticipant));
    assert_eq!(audit_actions(&sim), ["meeting.admit", "meeting.deny"]);
    match sim.events.iter().find(|e| matches!(e, SfuEvent::Audit(_))) {
        Some(SfuEvent::Audit(a)) => {
            assert_eq!(a.actor, user(1));
            assert_eq!(a.ip, ip(1));
            assert_eq!(a.meeting_id, ROOM);
            assert!(a.target.contains("Gus"), "{}", a.target);
        }
        other => panic!("expected an audit event, got {other:?}"),
    }
}

#[test]
fn join_before_host_off_holds_everyone_until_a_host_arrives() {
    let mut sim = Sim::new(Limits::default());
    let early = JoinGrant {
        wait_for_host: true,
        ..grant(Role::Participant, 2)
    };
    let early_with_lobby = JoinGrant {
        waiting_room: true,
        ..early.clone()
    };
    let p = sim.join_with(ROOM, "Pat", early);
    let q = sim.join_with(ROOM, "Quinn", early_with_lobby);
    for idx in [p, q] {
        assert!(sim.clients[idx].saw(|m| matches!(
            m,
            ServerMessage::Waiting {
                reason: WaitReason::HostAbsent,
                ..
            }
        )));
    }
    let h = sim.join_with(ROOM, "Hana", host());
    assert_eq!(
        joined_role(&sim, p),
        Some(Role::Participant),
        "let in when the host came"
    );
    // The one whose meeting also has a waiting room now waits for the host's decision.
    assert_eq!(joined_role(&sim, q), None);
    assert!(sim.clients[q].saw(|m| matches!(
        m,
        ServerMessage::Waiting {
            reason: WaitReason::WaitingRoom,
            ..
        }
    )));
    let qid = id(&sim, q);
    assert!(sim.clients[h].inbox.iter().any(|m| matches!(m, ServerMessage::Joined { waiting, .. } if waiting.iter().any(|w| w.id == qid))));
}

#[test]
fn host_mute_stops_forwarding_and_self_unmute_follows_the_policy() {
    let mut sim = Sim::new(Limits::default());
    let h = sim.join_with(ROOM, "Hana", host());
    let g = sim.join_with(ROOM, "Gus", grant(Role::Guest, 2));
    sim.run_for(Duration::from_secs(2));
    let gid = id(&sim, g);
    assert!(packets(&sim, h, g, TrackKind::Audio) > 20);

    // The guest's client ignores the mute and keeps sending; the server drops it anyway.
    sim.send(
        h,
        ClientMessage::Mute {
            participant_id: gid,
            kind: TrackKind::Audio,
        },
    );
    assert!(sim.clients[g].saw(|m| matches!(
        m,
        ServerMessage::MutedByHost {
            kind: TrackKind::Audio,
            ..
        }
    )));
    assert!(sim.clients[h].saw(|m| matches!(m, ServerMessage::MediaState { participant_id, kind: TrackKind::Audio, enabled: false } if *participant_id == gid)));
    sim.run_for(Duration::from_millis(200));
    let muted_at = packets(&sim, h, g, TrackKind::Audio);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(
        packets(&sim, h, g, TrackKind::Audio),
        muted_at,
        "no audio from a host-muted participant"
    );
    assert!(
        packets(&sim, h, g, TrackKind::Video) > muted_at,
        "video still flows"
    );

    // Self-unmute is allowed by default.
    sim.send(
        g,
        ClientMessage::SetMedia {
            kind: TrackKind::Audio,
            enabled: true,
        },
    );
    sim.run_for(Duration::from_secs(1));
    assert!(
        packets(&sim, h, g, TrackKind::Audio) > muted_at + 20,
        "audio back"
    );

    // Mute all without self-unmute: the guest may not unmute until asked.
    sim.send(
        h,
        ClientMessage::MuteAll {
            allow_self_unmute: false,
        },
    );
    assert!(sim.clients[g].saw(
        |m| matches!(m, ServerMessage::MeetingUpdated { meeting } if !meeting.allow_self_unmute)
    ));
    sim.send(
        g,
        ClientMessage::SetMedia {
            kind: TrackKind::Audio,
            enabled: true,
        },
    );
    assert_eq!(last_error(&sim, g), Some(ErrorCode::UnmuteNotAllowed));
    sim.run_for(Duration::from_millis(200));
    let before_ask = packets(&sim, h, g, TrackKind::Audio);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(packets(&sim, h, g, TrackKind::Audio), before_ask);
    // The host's own microphone is not muted by mute-all.
    let host_audio = packets(&sim, g, h, TrackKind::Audio);
    sim.run_for(Duration::from_secs(1));
    assert!(packets(&sim, g, h, TrackKind::Audio) > host_audio + 20);

    sim.send(
        h,
        ClientMessage::AskUnmute {
            participant_id: gid,
            kind: TrackKind::Audio,
        },
    );
    assert!(sim.clients[g].saw(|m| matches!(
        m,
        ServerMessage::UnmuteRequested {
            kind: TrackKind::Audio,
            ..
        }
    )));
    let errors_before = sim.clients[g]
        .inbox
        .iter()
        .filter(|m| matches!(m, ServerMessage::Error { .. }))
        .count();
    sim.send(
        g,
        ClientMessage::SetMedia {
            kind: TrackKind::Audio,
            enabled: true,
        },
    );
    let errors_after = sim.clients[g]
        .inbox
        .iter()
        .filter(|m| matches!(m, ServerMessage::Error { .. }))
        .count();
    assert_eq!(
        errors_before, errors_after,
        "unmute after the ask is accepted"
    );
    sim.run_for(Duration::from_secs(1));
    assert!(packets(&sim, h, g, TrackKind::Audio) > before_ask + 20);
    assert_eq!(
        audit_actions(&sim),
        ["meeting.mute", "meeting.mute_all", "meeting.ask_unmute"],
        "mutes are audited"
    );
}

/// Every host control, tried by a participant, a guest and a co-host: only the roles allowed
/// to use it get through. Host-only actions are refused to co-hosts.
#[test]
fn host_controls_need_the_right_role() {
    type Make = fn(ParticipantId) -> ClientMessage;
    let actions: [(&str, bool, Make); 9] = [
        ("mute", false, |t| ClientMessage::Mute {
            participant_id: t,
            kind: TrackKind::Video,
        }),
        ("mute_all", false, |_| ClientMessage::MuteAll {
            allow_self_unmute: true,
        }),
        ("ask_unmute", false, |t| ClientMessage::AskUnmute {
            participant_id: t,
            kind: TrackKind::Audio,
        }),
        ("lock", false, |_| ClientMessage::SetMeeting {
            locked: Some(true),
            allow_self_unmute: None,
        }),
        ("remove", false, |t| ClientMessage::Remove {
            participant_id: t,
            bar: false,
        }),
        ("admit", false, |t| ClientMessage::Admit {
            participant_id: t,
        }),
        ("make_cohost", true, |t| ClientMessage::SetRole {
            participant_id: t,
            role: Role::CoHost,
        }),
        ("transfer_host", true, |t| ClientMessage::TransferHost {
            participant_id: t,
        }),
        ("end_meeting", true, |_| ClientMessage::EndMeeting),
    ];
    let mut tried = 0;
    for (name, host_only, make) in actions {
        for actor_role in [Role::Participant, Role::Guest, Role::CoHost, Role::Host] {
            let mut sim = Sim::new(Limits::default());
            let h = sim.join_with(ROOM, "Hana", host());
            let actor = if actor_role == Role::Host {
                h
            } else {
                sim.join_with(ROOM, "Actor", grant(actor_role, 2))
            };
            let target = sim.join_with(ROOM, "Tess", grant(Role::Participant, 3));
            let waiter = sim.join_with(ROOM, "Wes", waiting_guest(4));
            let target_id = if name == "admit" {
                id(&sim, waiter)
            } else {
                id(&sim, target)
            };
            sim.send(actor, make(target_id));
            let allowed = match actor_role {
                Role::Host => true,
                Role::CoHost => !host_only,
                _ => false,
            };
            let refused = last_error(&sim, actor) == Some(ErrorCode::Forbidden);
            assert_eq!(
                refused, !allowed,
                "{name} by {actor_role:?}: refused={refused}, expected allowed={allowed}"
            );
            // A refused action has no effect; an allowed one is audited.
            assert_eq!(
                !audit_actions(&sim).is_empty(),
                allowed,
                "{name} by {actor_role:?}: audit {:?}",
                audit_actions(&sim)
            );
            tried += 1;
        }
    }
    assert_eq!(tried, 36);
}

#[test]
fn remove_bar_lock_and_cap() {
    let mut sim = Sim::new(Limits::default());
    let h = sim.join_with(ROOM, "Hana", host());
    let a = sim.join_with(ROOM, "Al", grant(Role::Guest, 2));
    let b = sim.join_with(ROOM, "Bea", grant(Role::Participant, 3));
    let (aid, bid) = (id(&sim, a), id(&sim, b));

    sim.send(
        h,
        ClientMessage::Remove {
            participant_id: aid,
            bar: false,
        },
    );
    assert_eq!(last_error(&sim, a), Some(ErrorCode::Removed));
    assert!(sim.closed.contains(&aid));
    assert!(sim.clients[h].saw(
        |m| matches!(m, ServerMessage::ParticipantLeft { participant_id } if *participant_id == aid)
    ));
    // Removed without a bar: may come back.
    let a2 = sim.join_with(ROOM, "Al", grant(Role::Guest, 2));
    assert_eq!(joined_role(&sim, a2), Some(Role::Guest));

    sim.send(
        h,
        ClientMessage::Remove {
            participant_id: bid,
            bar: true,
        },
    );
    assert_eq!(last_error(&sim, b), Some(ErrorCode::Barred));
    // The account is barred, from any address.
    let b2 = sim.join_with(
        ROOM,
        "Bea again",
        JoinGrant {
            ip: ip(99),
            ..grant(Role::Participant, 3)
        },
    );
    assert_eq!(last_error(&sim, b2), Some(ErrorCode::Barred));
    assert_eq!(joined_role(&sim, b2), None);

    // A barred guest is recognised by address.
    let a2id = id(&sim, a2);
    sim.send(
        h,
        ClientMessage::Remove {
            participant_id: a2id,
            bar: true,
        },
    );
    let a3 = sim.join_with(ROOM, "Not Al", grant(Role::Guest, 2));
    assert_eq!(last_error(&sim, a3), Some(ErrorCode::Barred));

    // Nobody removes the host; nobody removes themselves.
    let c = sim.join_with(ROOM, "Cy", grant(Role::CoHost, 5));
    let hid = id(&sim, h);
    sim.send(
        c,
        ClientMessage::Remove {
            participant_id: hid,
            bar: false,
        },
    );
    assert_eq!(last_error(&sim, c), Some(ErrorCode::Forbidden));

    // Locked: new joiners are refused, hosts and co-hosts of the meeting still get in.
    sim.send(
        h,
        ClientMessage::SetMeeting {
            locked: Some(true),
            allow_self_unmute: None,
        },
    );
    assert!(
        sim.clients[c]
            .saw(|m| matches!(m, ServerMessage::MeetingUpdated { meeting } if meeting.locked))
    );
    let late = sim.join_with(ROOM, "Late", grant(Role::Participant, 6));
    assert_eq!(last_error(&sim, late), Some(ErrorCode::MeetingLocked));
    let admin = sim.join_with(ROOM, "Org admin", grant(Role::CoHost, 7));
    assert_eq!(joined_role(&sim, admin), Some(Role::CoHost));
    sim.send(
        h,
        ClientMessage::SetMeeting {
            locked: Some(false),
            allow_self_unmute: None,
        },
    );

    // The plan's cap (4 here: host, co-host, admin, one more) refuses the next joiner, and a
    // host admitting from the waiting room is told the meeting is full.
    let capped = |n| JoinGrant {
        max_participants: Some(4),
        ..grant(Role::Participant, n)
    };
    let d = sim.join_with(ROOM, "Dot", capped(8));
    assert_eq!(joined_role(&sim, d), Some(Role::Participant));
    let e = sim.join_with(ROOM, "Eve", capped(9));
    assert_eq!(last_error(&sim, e), Some(ErrorCode::RoomFull));
    assert!(sim.closed.contains(&id(&sim, e)));
    let w = sim.join_with(
        ROOM,
        "Wes",
        JoinGrant {
            max_participants: Some(4),
            ..waiting_guest(10)
        },
    );
    let wid = id(&sim, w);
    sim.send(
        h,
        ClientMessage::Admit {
            participant_id: wid,
        },
    );
    assert_eq!(last_error(&sim, h), Some(ErrorCode::MeetingFull));
    assert!(!sim.closed.contains(&wid), "the waiter keeps waiting");
}

#[test]
fn roles_change_and_the_host_role_is_never_lost() {
    let mut sim = Sim::new(Limits::default());
    let h = sim.join_with(ROOM, "Hana", host());
    let p = sim.join_with(ROOM, "Pat", grant(Role::Participant, 2));
    let g = sim.join_with(ROOM, "Gus", grant(Role::Guest, 3));
    let w = sim.join_with(ROOM, "Wes", waiting_guest(4));
    let (pid, gid, wid) = (id(&sim, p), id(&sim, g), id(&sim, w));

    sim.send(
        h,
        ClientMessage::SetRole {
            participant_id: gid,
            role: Role::CoHost,
        },
    );
    assert!(sim.clients[p].saw(|m| matches!(m, ServerMessage::RoleChanged { participant_id, role: Role::CoHost } if *participant_id == gid)));
    assert!(
        sim.clients[g].saw(
            |m| matches!(m, ServerMessage::WaitingAdded { participant } if participant.id == wid)
        ),
        "a new co-host learns who is waiting"
    );
    // A co-host admits.
    sim.send(
        g,
        ClientMessage::Admit {
            participant_id: wid,
        },
    );
    assert!(joined_role(&sim, w).is_some());
    // Taking co-host back returns a guest to guest.
    sim.send(
        h,
        ClientMessage::SetRole {
            participant_id: gid,
            role: Role::Participant,
        },
    );
    assert!(sim.clients[p].saw(|m| matches!(m, ServerMessage::RoleChanged { participant_id, role: Role::Guest } if *participant_id == gid)));

    sim.send(
        h,
        ClientMessage::TransferHost {
            participant_id: pid,
        },
    );
    let hid = id(&sim, h);
    assert!(sim.clients[g].saw(|m| matches!(m, ServerMessage::RoleChanged { participant_id, role: Role::Host } if *participant_id == pid)));
    assert!(sim.clients[g].saw(|m| matches!(m, ServerMessage::RoleChanged { participant_id, role: Role::CoHost } if *participant_id == hid)));
    // The old host is no longer allowed to end the meeting.
    sim.send(h, ClientMessage::EndMeeting);
    assert_eq!(last_error(&sim, h), Some(ErrorCode::Forbidden));

    // The new host leaves: the co-host (the old host) takes over.
    sim.disconnect(p);
    assert!(sim.clients[g].saw(|m| matches!(m, ServerMessage::RoleChanged { participant_id, role: Role::Host } if *participant_id == hid)));
    // The host leaves with only a guest and a participant left: the participant gets it.
    sim.disconnect(h);
    let wrole = sim.clients[g].inbox.iter().rev().find_map(|m| match m {
        ServerMessage::RoleChanged {
            participant_id,
            role,
        } => Some((*participant_id, *role)),
        _ => None,
    });
    assert_eq!(wrole.map(|r| r.1), Some(Role::Host), "someone hosts");

    // The owner comes back and takes the host role back.
    let h2 = sim.join_with(ROOM, "Hana", host());
    assert_eq!(joined_role(&sim, h2), Some(Role::Host));
    let hosts = [g, w]
        .iter()
        .filter(|&&i| {
            let me = id(&sim, i);
            sim.clients[g].inbox.iter().rev().find_map(|m| match m {
                ServerMessage::RoleChanged {
                    participant_id,
                    role,
                } if *participant_id == me => Some(*role),
                _ => None,
            }) == Some(Role::Host)
        })
        .count();
    assert_eq!(hosts, 0, "the previous host was made co-host");
}

#[test]
fn instant_guest_room_first_joiner_hosts() {
    let mut sim = Sim::new(Limits::default());
    let a = sim.join("coffee", "Ann");
    let b = sim.join("coffee", "Bob");
    assert_eq!(joined_role(&sim, a), Some(Role::Host));
    assert_eq!(joined_role(&sim, b), Some(Role::Guest));
    let bid = id(&sim, b);
    sim.send(
        a,
        ClientMessage::Remove {
            participant_id: bid,
            bar: false,
        },
    );
    assert_eq!(last_error(&sim, b), Some(ErrorCode::Removed));
    // Guest rooms have no stored meeting: nothing to audit or bill (only their end, so a
    // restart does not bring them back).
    sim.disconnect(a);
    assert!(
        sim.events.iter().all(|e| matches!(
            e,
            SfuEvent::MeetingSaved { .. } | SfuEvent::MeetingClosed { .. }
        )),
        "{:?}",
        sim.events
    );
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, SfuEvent::MeetingClosed { room, .. } if room == "coffee"))
    );
}

#[test]
fn time_limit_warns_at_five_and_one_minutes_then_ends() {
    let minute = Duration::from_millis(500);
    let mut sim = Sim::new(Limits {
        minute,
        ..Limits::default()
    });
    let limited = |g: JoinGrant| JoinGrant {
        max_duration: Some(minute * 7),
        ..g
    };
    let h = sim.join_with(ROOM, "Hana", limited(host()));
    let g = sim.join_with(ROOM, "Gus", limited(grant(Role::Guest, 2)));
    let w = sim.join_with(ROOM, "Wes", limited(waiting_guest(3)));
    let ends_at_ms = sim.clients[h].inbox.iter().find_map(|m| match m {
        ServerMessage::Joined { meeting, .. } => meeting.ends_at_ms,
        _ => None,
    });
    let expected_end = sim.unix_ms() + 7 * 500;
    assert!(
        ends_at_ms.is_some_and(|t| t.abs_diff(expected_end) < 50),
        "{ends_at_ms:?} vs {expected_end}"
    );
    let warnings = |sim: &Sim, idx: usize| -> Vec<u32> {
        sim.clients[idx]
            .inbox
            .iter()
            .filter_map(|m| match m {
                ServerMessage::MeetingEnding { minutes_left, .. } => Some(*minutes_left),
                _ => None,
            })
            .collect()
    };
    sim.run_for(minute * 2 + Duration::from_millis(200));
    assert_eq!(warnings(&sim, g), [5], "warned with 5 minutes left");
    sim.run_for(minute * 4);
    assert_eq!(warnings(&sim, g), [5, 1], "and with 1 minute left");
    assert!(!sim.closed.contains(&id(&sim, g)));
    sim.run_for(minute);
    for idx in [h, g, w] {
        assert!(
            sim.clients[idx].saw(|m| matches!(
                m,
                ServerMessage::MeetingEnded {
                    reason: EndReason::TimeLimit
                }
            )),
            "client {idx} told the meeting ended"
        );
        assert!(sim.closed.contains(&id(&sim, idx)));
    }
    assert_eq!(sim.sfu.room_count(), 0);
    assert_eq!(sim.sfu.participant_count(), 0);
    let usage = sim
        .events
        .iter()
        .find_map(|e| match e {
            SfuEvent::MeetingFinished(u) => Some(u.clone()),
            _ => None,
        })
        .expect("usage recorded");
    assert_eq!(usage.meeting_id, ROOM);
    assert_eq!(usage.org_id, "org1");
    assert_eq!(usage.peak_participants, 2);
    let length = usage.ended_at_ms - usage.started_at_ms;
    assert!(length.abs_diff(3500) < 200, "meeting lasted {length} ms");
    // Two participants for the whole meeting.
    assert!(
        usage.participant_ms.abs_diff(7000) < 400,
        "{} participant-ms",
        usage.participant_ms
    );
}

#[test]
fn host_ends_the_meeting_for_everyone_and_usage_is_recorded_once() {
    let mut sim = Sim::new(Limits::default());
    let h = sim.join_with(ROOM, "Hana", host());
    let g = sim.join_with(ROOM, "Gus", grant(Role::Guest, 2));
    sim.run_for(Duration::from_secs(1));
    sim.send(h, ClientMessage::EndMeeting);
    for idx in [h, g] {
        assert!(sim.clients[idx].saw(|m| matches!(
            m,
            ServerMessage::MeetingEnded {
                reason: EndReason::Host
            }
        )));
    }
    let finished = sim
        .events
        .iter()
        .filter(|e| matches!(e, SfuEvent::MeetingFinished(_)))
        .count();
    assert_eq!(finished, 1);
    assert_eq!(audit_actions(&sim), ["meeting.end"]);
    // The meeting can start again.
    let h2 = sim.join_with(ROOM, "Hana", host());
    assert_eq!(joined_role(&sim, h2), Some(Role::Host));
}

#[test]
fn a_dropped_participant_comes_back_without_waiting_and_stays_host_muted() {
    let mut sim = Sim::new(Limits::default());
    let h = sim.join_with(ROOM, "Hana", host());
    let g = sim.join_with(ROOM, "Gus", waiting_guest(2));
    let gid = id(&sim, g);
    sim.send(
        h,
        ClientMessage::Admit {
            participant_id: gid,
        },
    );
    sim.send(
        h,
        ClientMessage::MuteAll {
            allow_self_unmute: false,
        },
    );
    // The connection drops and the same guest comes back with the resume token of their
    // `joined`.
    let token = resume_token(&sim, g).expect("a guest gets a resume token");
    sim.disconnect(g);
    // The same address and name without the token is somebody else.
    let impostor = sim.join_with(ROOM, "Gus", waiting_guest(2));
    assert_eq!(joined_role(&sim, impostor), None, "no token: waits");
    let g2 = sim.join_resuming(ROOM, "Gus", waiting_guest(2), Some(token.clone()));
    assert_eq!(joined_role(&sim, g2), Some(Role::Guest), "straight back in");
    sim.send(
        g2,
        ClientMessage::SetMedia {
            kind: TrackKind::Audio,
            enabled: true,
        },
    );
    assert_eq!(
        last_error(&sim, g2),
        Some(ErrorCode::UnmuteNotAllowed),
        "a reconnect does not undo the host's mute"
    );
    // The token works from its own address only, and once: while its guest is in, it
    // makes nobody else that guest.
    let elsewhere = sim.join_resuming(ROOM, "Gus", waiting_guest(3), Some(token.clone()));
    assert_eq!(joined_role(&sim, elsewhere), None, "another address waits");
    let twice = sim.join_resuming(ROOM, "Gus", waiting_guest(2), Some(token));
    assert_eq!(
        joined_role(&sim, twice),
        None,
        "a token in use is not reused"
    );

    // Removed (not barred): back through the waiting room.
    let g2id = id(&sim, g2);
    sim.send(
        h,
        ClientMessage::Remove {
            participant_id: g2id,
            bar: false,
        },
    );
    let g2_token = resume_token(&sim, g2);
    let g3 = sim.join_resuming(ROOM, "Gus", waiting_guest(2), g2_token);
    assert_eq!(joined_role(&sim, g3), None);
    assert!(sim.clients[g3].saw(|m| matches!(m, ServerMessage::Waiting { .. })));
}
