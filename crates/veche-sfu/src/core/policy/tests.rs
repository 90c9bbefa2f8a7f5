//! The meeting policy on its own: meetings of accounts and guests driven through `Meeting`
//! with no media, no str0m and no clock but the values passed in.

use super::*;
use crate::core::HostControl;

const T0: u64 = 1_700_000_000_000;

struct Clock(Instant);

impl Clock {
    fn at(&self, ms: u64) -> Now {
        Now {
            at: self.0 + Duration::from_millis(ms),
            unix_ms: T0 + ms,
        }
    }
}

fn record() -> Option<MeetingRef> {
    Some(MeetingRef {
        id: "m1".into(),
        org_id: "o1".into(),
        title: "Standup".into(),
    })
}

fn account(id: ParticipantId, name: &str, role: Role) -> Entrant {
    Entrant {
        id,
        name: name.into(),
        grant: JoinGrant {
            role,
            user: Some(UserRef {
                id: format!("u-{name}"),
                email: format!("{name}@example.org"),
            }),
            ip: Some("10.0.0.1".parse().unwrap()),
            meeting: record(),
            ..JoinGrant::default()
        },
        key: Some(format!("user:u-{name}")),
        e2ee: false,
    }
}

fn guest(id: ParticipantId, name: &str, key: &str) -> Entrant {
    Entrant {
        id,
        name: name.into(),
        grant: JoinGrant {
            role: Role::Guest,
            ip: Some("10.0.0.9".parse().unwrap()),
            meeting: record(),
            ..JoinGrant::default()
        },
        key: Some(format!("guest:{key}")),
        e2ee: false,
    }
}

fn entered(fx: &[Effect]) -> Option<&Entered> {
    fx.iter().find_map(|e| match e {
        Effect::Enter(e) => Some(&**e),
        _ => None,
    })
}

fn error(fx: &[Effect]) -> Option<ErrorCode> {
    fx.iter().find_map(|e| match e {
        Effect::Error(_, code, _) => Some(*code),
        Effect::Refuse(e) => Some(e.code),
        _ => None,
    })
}

/// A stored meeting with its host (1), a co-host made in the meeting (2) and a guest (3).
fn meeting_of_three(c: &Clock) -> Meeting {
    let mut m = Meeting::new("m1", record(), 10, 10);
    assert!(entered(&m.join(c.at(0), account(1, "hana", Role::Host))).is_some());
    assert!(entered(&m.join(c.at(1), account(2, "cora", Role::Participant))).is_some());
    assert!(entered(&m.join(c.at(2), guest(3, "gus", "g3"))).is_some());
    let host = Actor::Member(1);
    let fx = m.control(
        c.at(3),
        &host,
        HostControl::SetRole {
            participant_id: 2,
            role: Role::CoHost,
        },
    );
    assert!(fx.contains(&Effect::Role(2, Role::CoHost)));
    m
}

#[test]
fn only_moderators_use_host_controls() {
    let c = Clock(Instant::now());
    let mut m = meeting_of_three(&c);
    let fx = m.control(
        c.at(10),
        &Actor::Member(3),
        HostControl::SetMeeting {
            locked: Some(true),
            allow_self_unmute: None,
        },
    );
    assert_eq!(error(&fx), Some(ErrorCode::Forbidden));
    assert!(!m.state().locked);
    // A co-host may lock, but not hand the host role on.
    let fx = m.control(
        c.at(11),
        &Actor::Member(2),
        HostControl::TransferHost { participant_id: 3 },
    );
    assert_eq!(error(&fx), Some(ErrorCode::Forbidden));
    let fx = m.control(
        c.at(12),
        &Actor::Member(2),
        HostControl::SetMeeting {
            locked: Some(true),
            allow_self_unmute: None,
        },
    );
    assert_eq!(error(&fx), None);
    assert!(m.state().locked);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Audit(a) if a.action == "meeting.lock"))
    );
}

#[test]
fn a_host_mute_stops_the_track_and_holds_when_self_unmute_is_off() {
    let c = Clock(Instant::now());
    let mut m = meeting_of_three(&c);
    let fx = m.control(
        c.at(10),
        &Actor::Member(1),
        HostControl::MuteAll {
            allow_self_unmute: false,
        },
    );
    // The guest is muted; the co-host (a moderator) is not.
    assert!(fx.contains(&Effect::Gate(3, [true, false, false])));
    assert!(fx.contains(&Effect::StopTrack(3, TrackKind::Audio)));
    assert!(!fx.iter().any(|e| matches!(e, Effect::StopTrack(2, _))));
    assert_eq!(
        m.unmute(3, TrackKind::Audio).map_err(|(code, _)| code),
        Err(ErrorCode::UnmuteNotAllowed)
    );
    // Asked to unmute, they may.
    m.control(
        c.at(11),
        &Actor::Member(2),
        HostControl::AskUnmute {
            participant_id: 3,
            kind: TrackKind::Audio,
        },
    );
    assert_eq!(m.unmute(3, TrackKind::Audio), Ok(None), "already lifted");
}

#[test]
fn the_lock_stops_newcomers_but_not_moderators_or_those_coming_back() {
    let c = Clock(Instant::now());
    let mut m = meeting_of_three(&c);
    m.control(
        c.at(10),
        &Actor::Member(1),
        HostControl::SetMeeting {
            locked: Some(true),
            allow_self_unmute: None,
        },
    );
    let fx = m.join(c.at(11), guest(4, "zed", "g4"));
    assert_eq!(error(&fx), Some(ErrorCode::MeetingLocked));
    // The guest's connection drops and comes back (same identity).
    m.leave(c.at(12), 3);
    let fx = m.join(c.at(13), guest(5, "gus", "g3"));
    assert_eq!(entered(&fx).map(|e| e.role), Some(Role::Guest));
    let fx = m.join(c.at(14), account(6, "owen", Role::CoHost));
    assert_eq!(entered(&fx).map(|e| e.role), Some(Role::CoHost));
}

#[test]
fn a_host_back_takes_the_role_from_the_one_standing_in() {
    let c = Clock(Instant::now());
    let mut m = meeting_of_three(&c);
    // The host hands over to the guest, then the guest's connection drops: the co-host
    // stands in until the guest is back.
    m.control(
        c.at(10),
        &Actor::Member(1),
        HostControl::TransferHost { participant_id: 3 },
    );
    let fx = m.leave(c.at(11), 3);
    assert!(fx.contains(&Effect::Role(1, Role::Host)), "{fx:?}");
    let fx = m.join(c.at(12), guest(7, "gus", "g3"));
    assert_eq!(entered(&fx).map(|e| e.role), Some(Role::Host));
    // The stand-in goes back to what they were (co-host, since the transfer).
    assert!(fx.contains(&Effect::Role(1, Role::CoHost)), "{fx:?}");
    // The owner's connection drops and comes back: they take the host role back.
    m.leave(c.at(13), 1);
    let fx = m.join(c.at(14), account(8, "hana", Role::Host));
    assert_eq!(entered(&fx).map(|e| e.role), Some(Role::Host));
    assert!(fx.contains(&Effect::Role(7, Role::CoHost)), "{fx:?}");
}

#[test]
fn a_snapshot_brings_the_meeting_back_as_it_was() {
    let c = Clock(Instant::now());
    let mut m = meeting_of_three(&c);
    let host = Actor::Member(1);
    m.control(
        c.at(10),
        &host,
        HostControl::Mute {
            participant_id: 3,
            kind: TrackKind::Audio,
        },
    );
    m.control(
        c.at(11),
        &host,
        HostControl::SetMeeting {
            locked: Some(true),
            allow_self_unmute: Some(false),
        },
    );
    let barred = guest(4, "eve", "g4");
    let mut eve_grant = barred.grant.clone();
    eve_grant.ip = Some("192.0.2.66".parse().unwrap());
    m.locked = false;
    m.join(
        c.at(12),
        Entrant {
            grant: eve_grant.clone(),
            ..barred
        },
    );
    m.locked = true;
    m.control(
        c.at(13),
        &host,
        HostControl::Remove {
            participant_id: 4,
            bar: true,
        },
    );
    m.leave(c.at(14), 4);
    assert!(m.take_dirty());
    m.raise_hand(2, true);
    assert!(m.take_dirty(), "a raised hand is in the snapshot");
    let snap = m.snapshot(c.at(20));
    // Through JSON, as the server stores it.
    let json = serde_json_roundtrip(&snap);
    assert_eq!(json, snap);

    // After the restart: nobody is back yet, and the meeting waits for them.
    let c2 = Clock(Instant::now() + Duration::from_secs(5));
    let mut r = Meeting::restore(&snap, c2.at(0), 10, Duration::from_secs(60));
    assert!(!r.is_over(c2.at(30_000).at));
    assert!(
        r.is_over(c2.at(60_000).at),
        "nobody came back in the window"
    );
    let st = r.state();
    assert!(st.locked && !st.allow_self_unmute);
    // Everyone comes back, in another order, with their roles and mutes.
    let fx = r.join(c2.at(1), guest(13, "gus", "g3"));
    let gus = entered(&fx).expect("the guest is back through the lock");
    assert_eq!(
        (gus.role, gus.host_muted),
        (Role::Guest, [true, false, false])
    );
    assert!(!gus.hand_raised);
    let fx = r.join(c2.at(2), account(12, "cora", Role::Participant));
    assert_eq!(
        entered(&fx).map(|e| (e.role, e.hand_raised)),
        Some((Role::CoHost, true)),
        "back with her hand up"
    );
    let fx = r.join(c2.at(3), account(11, "hana", Role::Host));
    assert_eq!(entered(&fx).map(|e| e.role), Some(Role::Host));
    assert_eq!(
        r.unmute(13, TrackKind::Audio).map_err(|(code, _)| code),
        Err(ErrorCode::UnmuteNotAllowed)
    );
    // The barred guest stays out; a newcomer meets the lock.
    let fx = r.join(
        c2.at(4),
        Entrant {
            id: 14,
            name: "eve".into(),
            grant: eve_grant,
            key: Some("guest:other".into()),
            e2ee: false,
        },
    );
    assert_eq!(error(&fx), Some(ErrorCode::Barred));
    let fx = r.join(c2.at(5), guest(15, "zed", "g5"));
    assert_eq!(error(&fx), Some(ErrorCode::MeetingLocked));
    // Usage carries on from before the restart.
    let usage = r.usage(c2.at(6)).unwrap();
    assert_eq!(usage.started_at_ms, T0);
    assert!(usage.participant_ms >= snap.participant_ms);
}

#[test]
fn an_instant_room_restored_waits_for_its_host() {
    let c = Clock(Instant::now());
    let mut m = Meeting::new("room", None, 10, 10);
    let fx = m.join(c.at(0), guest(1, "ann", "a"));
    assert_eq!(entered(&fx).map(|e| e.role), Some(Role::Host));
    m.join(c.at(1), guest(2, "bob", "b"));
    let snap = m.snapshot(c.at(2));
    let mut r = Meeting::restore(&snap, c.at(10), 10, Duration::from_secs(60));
    // Bob is back first and stands in; Ann takes the room back and Bob is a guest again.
    let fx = r.join(c.at(11), guest(12, "bob", "b"));
    assert_eq!(entered(&fx).map(|e| e.role), Some(Role::Host));
    let fx = r.join(c.at(12), guest(11, "ann", "a"));
    assert_eq!(entered(&fx).map(|e| e.role), Some(Role::Host));
    assert!(fx.contains(&Effect::Role(12, Role::Guest)), "{fx:?}");
}

#[test]
fn bars_accounts_by_id_and_guests_by_address() {
    let mut m = Meeting::new("room", None, 10, 10);
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    let user = UserRef {
        id: "u1".into(),
        email: "a@example.org".into(),
    };
    m.bar(Some(&user), Some(ip));
    let same_user_elsewhere = JoinGrant {
        user: Some(user.clone()),
        ip: Some("10.0.0.8".parse().unwrap()),
        ..JoinGrant::default()
    };
    assert!(m.is_barred(&same_user_elsewhere));
    // The account was barred, not the address it used.
    let guest_same_ip = JoinGrant {
        ip: Some(ip),
        ..JoinGrant::default()
    };
    assert!(!m.is_barred(&guest_same_ip));
    m.bar(None, Some(ip));
    assert!(m.is_barred(&guest_same_ip));
}

/// What the server does with a snapshot: JSON out and back.
fn serde_json_roundtrip(snap: &MeetingSnapshot) -> MeetingSnapshot {
    serde_json::from_str(&serde_json::to_string(snap).unwrap()).unwrap()
}

#[test]
fn an_encrypted_meeting_refuses_every_browser_that_cannot_encrypt_hosts_included() {
    let c = Clock(Instant::now());
    let mut m = Meeting::new("m1", record(), 10, 10);
    m.require_e2ee();
    assert_eq!(m.state().e2ee, E2eeMode::Required);
    let fx = m.join(c.at(0), account(1, "hana", Role::Host));
    assert_eq!(error(&fx), Some(ErrorCode::E2eeUnsupported));
    assert!(ErrorCode::E2eeUnsupported.is_fatal());
    let fx = m.join(
        c.at(1),
        Entrant {
            e2ee: true,
            ..account(1, "hana", Role::Host)
        },
    );
    assert!(entered(&fx).is_some_and(|e| e.meeting.e2ee == E2eeMode::Required));
    // Refused before any other check (here the lock, elsewhere the waiting room).
    m.control(
        c.at(2),
        &Actor::Member(1),
        HostControl::SetMeeting {
            locked: Some(true),
            allow_self_unmute: None,
        },
    );
    let fx = m.join(c.at(3), guest(2, "gus", "g2"));
    assert_eq!(error(&fx), Some(ErrorCode::E2eeUnsupported));
    // Once someone is in, the mode no longer changes, and a snapshot keeps it.
    let mut off = Meeting::new("m2", record(), 10, 10);
    let _ = off.join(c.at(0), account(3, "ann", Role::Host));
    off.require_e2ee();
    assert_eq!(off.e2ee(), E2eeMode::Off);
    let snap = serde_json_roundtrip(&m.snapshot(c.at(4)));
    assert_eq!(snap.e2ee, E2eeMode::Required);
    let back = Meeting::restore(&snap, c.at(5), 10, Duration::from_secs(60));
    assert_eq!(back.e2ee(), E2eeMode::Required);
}

#[test]
fn an_optional_meeting_lets_in_browsers_that_cannot_encrypt_and_required_wins() {
    let c = Clock(Instant::now());
    let optional = JoinGrant {
        e2ee: E2eeMode::Optional,
        ..account(1, "hana", Role::Host).grant
    };
    let mut m = Meeting::new("m1", record(), 10, 10);
    m.update_from(&optional, 10);
    assert_eq!(m.e2ee(), E2eeMode::Optional);
    // Those who cannot encrypt are let in, and the meeting says which they are.
    let fx = m.join(c.at(0), account(1, "hana", Role::Host));
    let e = entered(&fx).expect("the host is in");
    assert!(!e.e2ee);
    assert_eq!(e.meeting.e2ee, E2eeMode::Optional);
    let fx = m.join(
        c.at(1),
        Entrant {
            e2ee: true,
            ..guest(2, "gus", "g2")
        },
    );
    assert!(entered(&fx).is_some_and(|e| e.e2ee));
    // A grant that requires it no longer changes a meeting someone is in; nothing lowers it.
    m.require_e2ee();
    assert_eq!(m.e2ee(), E2eeMode::Optional);
    let snap = serde_json_roundtrip(&m.snapshot(c.at(2)));
    assert_eq!(snap.e2ee, E2eeMode::Optional);

    // Before anyone is in, a plan's `required` beats the meeting's `optional`, and a later
    // `optional` or `off` grant does not lower it.
    let mut r = Meeting::new("m2", record(), 10, 10);
    r.update_from(&optional, 10);
    r.require_e2ee();
    r.update_from(&optional, 10);
    r.update_from(&JoinGrant::default(), 10);
    assert_eq!(r.e2ee(), E2eeMode::Required);
    let fx = r.join(c.at(3), guest(3, "old", "g3"));
    assert_eq!(error(&fx), Some(ErrorCode::E2eeUnsupported));
}
