//! The MLS delivery service wired into the sans-IO core: an encrypted room made by
//! `require_e2ee`, key packages and commits from its members, removals when someone drops
//! or is removed by a host, the committer's timeout on the core's own clock, and the order
//! of what each participant is sent.

use crate::common;

use std::time::Duration;

use common::Sim;
use veche_proto::{ClientMessage, E2eeMode, ErrorCode, MlsBlob, ParticipantId, ServerMessage};
use veche_sfu::{E2eeLimits, Limits};

const TIMEOUT: Duration = Duration::from_millis(1000);

fn sim() -> Sim {
    Sim::new(Limits {
        e2ee: E2eeLimits {
            commit_timeout: TIMEOUT,
            ..E2eeLimits::default()
        },
        ..Limits::default()
    })
}

/// A key package (an `MLSMessage` of wire format 5) as far as the delivery service reads it:
/// its basic credential names participant `id` signed in as `account` ("" for a guest), as
/// the web client's do; `tag` tells packages apart.
fn key_package_bytes(id: ParticipantId, account: &str, tag: u8) -> Vec<u8> {
    let identity = format!(r#"{{"p":"{id}","a":"{account}"}}"#);
    // MLS 1.0, key package; KeyPackage version 1.0, cipher suite 1.
    let mut b = vec![0, 1, 0, 5, 0, 1, 0, 1];
    // The init, encryption and signature keys.
    for key in [[tag; 32], [0xaa; 32], [0xbb; 32]] {
        b.push(32);
        b.extend_from_slice(&key);
    }
    b.extend_from_slice(&[0, 1]); // a basic credential
    let len = u16::try_from(identity.len()).expect("a short identity");
    assert!(len < 0x4000);
    b.extend_from_slice(&(0x4000 | len).to_be_bytes());
    b.extend_from_slice(identity.as_bytes());
    b
}

/// Participant `id`'s key package, as a guest.
fn key_package(id: ParticipantId) -> ClientMessage {
    ClientMessage::MlsKeyPackage {
        key_package: MlsBlob(key_package_bytes(id, "", id as u8)),
    }
}

fn commit(
    group: &str,
    epoch: u64,
    added: &[ParticipantId],
    removed: &[ParticipantId],
) -> ClientMessage {
    let mut c = vec![0, 1, 0, 2, group.len() as u8];
    c.extend_from_slice(group.as_bytes());
    c.extend_from_slice(&epoch.to_be_bytes());
    ClientMessage::MlsCommit {
        epoch,
        commit: MlsBlob(c),
        welcome: (!added.is_empty()).then(|| MlsBlob(vec![0, 1, 0, 3])),
        added: added.to_vec(),
        removed: removed.to_vec(),
    }
}

fn is_mls(m: &ServerMessage) -> bool {
    matches!(
        m,
        ServerMessage::MlsCreate { .. }
            | ServerMessage::MlsPropose { .. }
            | ServerMessage::MlsCommit { .. }
            | ServerMessage::MlsCommitAccepted { .. }
            | ServerMessage::MlsWelcome { .. }
    )
}

/// The delivery-service messages client `idx` got, in order, and forgets them.
fn take_mls(sim: &mut Sim, idx: usize) -> Vec<ServerMessage> {
    let inbox = &mut sim.clients[idx].inbox;
    let mls = inbox.iter().filter(|m| is_mls(m)).cloned().collect();
    inbox.retain(|m| !is_mls(m));
    mls
}

fn removals(msgs: &[ServerMessage]) -> Vec<(u64, Vec<ParticipantId>)> {
    msgs.iter()
        .filter_map(|m| match m {
            ServerMessage::MlsPropose { epoch, remove, .. } => Some((*epoch, remove.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn an_encrypted_room_runs_its_group_through_joins_leaves_and_a_silent_committer() {
    let mut sim = sim();
    let a = sim.join_e2ee("vault", "A", true, true);
    let joined_mode = sim.clients[a].inbox.iter().find_map(|m| match m {
        ServerMessage::Joined { meeting, .. } => Some(meeting.e2ee),
        _ => None,
    });
    assert_eq!(joined_mode, Some(E2eeMode::Required));
    let b = sim.join_e2ee("vault", "B", true, false);
    let c = sim.join_e2ee("vault", "C", true, false);
    let [idb, idc] = [b, c].map(|i| sim.clients[i].id);
    for i in [a, b, c] {
        sim.send(i, key_package(sim.clients[i].id));
    }
    // Joined came first for everyone, and nothing of MLS reached those not yet in the group.
    for i in [a, b, c] {
        let inbox = &sim.clients[i].inbox;
        let joined = inbox
            .iter()
            .position(|m| matches!(m, ServerMessage::Joined { .. }));
        let mls = inbox.iter().position(is_mls);
        assert!(
            mls.is_none_or(|m| joined.is_some_and(|j| j < m)),
            "{inbox:?}"
        );
    }
    assert!(take_mls(&mut sim, b).is_empty() && take_mls(&mut sim, c).is_empty());
    let got = take_mls(&mut sim, a);
    assert_eq!(
        got[0],
        ServerMessage::MlsCreate {
            group_id: "vault#1".into()
        }
    );
    let ServerMessage::MlsPropose { epoch: 0, add, .. } = got.last().unwrap() else {
        panic!("{got:?}");
    };
    assert_eq!(
        add.iter().map(|x| x.participant_id).collect::<Vec<_>>(),
        [idb, idc]
    );

    sim.send(a, commit("vault#1", 0, &[idb, idc], &[]));
    assert_eq!(
        take_mls(&mut sim, a),
        [ServerMessage::MlsCommitAccepted { epoch: 0 }]
    );
    for i in [b, c] {
        assert!(matches!(
            take_mls(&mut sim, i)[..],
            [ServerMessage::MlsWelcome { epoch: 1, .. }]
        ));
    }

    // C's connection drops: the committer is asked to remove it.
    sim.disconnect(c);
    assert_eq!(removals(&take_mls(&mut sim, a)), [(1, vec![idc])]);
    // A never answers: just before the timeout nobody else is asked; just after, B is.
    sim.run_for(TIMEOUT - Duration::from_millis(200));
    assert!(take_mls(&mut sim, b).is_empty());
    sim.run_for(Duration::from_millis(400));
    assert_eq!(removals(&take_mls(&mut sim, b)), [(1, vec![idc])]);
    sim.send(b, commit("vault#1", 1, &[], &[idc]));
    assert_eq!(
        take_mls(&mut sim, b),
        [ServerMessage::MlsCommitAccepted { epoch: 1 }]
    );
    assert!(matches!(
        take_mls(&mut sim, a)[..],
        [ServerMessage::MlsCommit { epoch: 1, .. }]
    ));

    // A browser that cannot encrypt is turned away, and the group does not hear of it.
    let d = sim.join_e2ee("vault", "D", false, false);
    assert!(sim.clients[d].saw(|m| matches!(
        m,
        ServerMessage::Error {
            code: ErrorCode::E2eeUnsupported,
            ..
        }
    )));
    assert!(take_mls(&mut sim, a).is_empty() && take_mls(&mut sim, b).is_empty());

    // The host removes B: A, the only member left, is asked to remove it, though it let the
    // last request time out.
    sim.send(
        a,
        ClientMessage::Remove {
            participant_id: idb,
            bar: false,
        },
    );
    assert_eq!(removals(&take_mls(&mut sim, a)), [(2, vec![idb])]);
}

#[test]
fn mls_messages_in_an_ordinary_room_are_refused() {
    let mut sim = sim();
    let a = sim.join("plain", "A");
    sim.send(a, key_package(1));
    sim.send(a, commit("plain#1", 0, &[], &[]));
    let refusals = sim.clients[a]
        .inbox
        .iter()
        .filter(|m| {
            matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::InvalidMls,
                    ..
                }
            )
        })
        .count();
    assert_eq!(refusals, 2);
}

/// The error `code` messages client `idx` got, in order.
fn errors(sim: &Sim, idx: usize, code: ErrorCode) -> Vec<String> {
    sim.clients[idx]
        .inbox
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Error { code: c, message } if *c == code => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_encrypted_room_relays_only_sealed_chat_and_a_plain_room_only_plain() {
    let mut sim = sim();
    let a = sim.join_e2ee("vault", "A", true, true);
    let b = sim.join_e2ee("vault", "B", true, false);
    let ida = sim.clients[a].id;
    // The server must not see what an encrypted meeting says: plain chat there is refused
    // and reaches nobody.
    sim.send(
        a,
        ClientMessage::Chat {
            text: "in the clear".into(),
        },
    );
    assert_eq!(
        errors(&sim, a, ErrorCode::InvalidMessage),
        ["chat in an end-to-end encrypted meeting is sealed (sealed_chat)"]
    );
    assert!(!sim.clients[b].saw(|m| matches!(m, ServerMessage::Chat { .. })));
    // Sealed chat goes to everyone (its sender included) byte for byte, from its sender.
    let sealed: Vec<u8> = (0..=255).collect();
    sim.send(
        a,
        ClientMessage::SealedChat {
            sealed: MlsBlob(sealed.clone()),
        },
    );
    for i in [a, b] {
        assert!(
            sim.clients[i].saw(
                |m| matches!(m, ServerMessage::SealedChat { from, sealed: s, .. }
                if *from == ida && s.0 == sealed)
            ),
            "{:?}",
            sim.clients[i].inbox
        );
    }
    // Within the size a plain message of the limit would seal to, and not empty.
    let max = veche_proto::sealed_chat_max_bytes(Limits::default().max_chat_chars);
    sim.send(
        a,
        ClientMessage::SealedChat {
            sealed: MlsBlob(vec![1; max + 1]),
        },
    );
    sim.send(
        a,
        ClientMessage::SealedChat {
            sealed: MlsBlob(Vec::new()),
        },
    );
    assert_eq!(errors(&sim, a, ErrorCode::ChatTooLong).len(), 2);
    let relayed = |sim: &Sim| {
        sim.clients[b]
            .inbox
            .iter()
            .filter(|m| matches!(m, ServerMessage::SealedChat { .. }))
            .count()
    };
    assert_eq!(relayed(&sim), 1);
    sim.send(
        a,
        ClientMessage::SealedChat {
            sealed: MlsBlob(vec![1; max]),
        },
    );
    assert_eq!(relayed(&sim), 2);

    // In an ordinary room it is the other way round.
    let p = sim.join("plain", "P");
    sim.send(
        p,
        ClientMessage::SealedChat {
            sealed: MlsBlob(sealed),
        },
    );
    assert_eq!(
        errors(&sim, p, ErrorCode::InvalidMessage),
        ["sealed chat outside an end-to-end encrypted meeting"]
    );
    sim.send(
        p,
        ClientMessage::Chat {
            text: "hello".into(),
        },
    );
    assert!(
        sim.clients[p].saw(|m| matches!(m, ServerMessage::Chat { text, .. } if text == "hello"))
    );
}
