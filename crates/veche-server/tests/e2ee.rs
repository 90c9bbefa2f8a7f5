//! The MLS delivery service through the real binary, over real WebSockets: encrypted guest
//! rooms made by `require_e2ee`, the refusal of clients that cannot encrypt, and the group's
//! life — creation, adds with Welcomes, one commit per epoch, removals after a host removes
//! someone, a committer that never answers passed over, and bad input refused without harm.
//!
//! The clients here hold no MLS state: the server reads nothing of a blob but its header
//! (version, wire format, group id, epoch), so hand-made headers stand for real messages.

use crate::common;
use crate::peer;

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::Server;
use peer::Peer;
use serde_json::json;
use veche_proto::{
    ClientMessage, E2eeMode, ErrorCode, MlsAdd, MlsBlob, ParticipantId, ServerMessage,
};

/// Short, so that passing the committer over is quick to see.
const COMMIT_TIMEOUT_MS: u64 = 600;
/// Small, so that a blob over it still fits in one signalling message.
const MAX_BLOB: usize = 2048;

async fn server() -> anyhow::Result<Server> {
    Server::start_with(&[
        "--mls-commit-timeout-ms",
        &COMMIT_TIMEOUT_MS.to_string(),
        "--mls-max-blob-bytes",
        &MAX_BLOB.to_string(),
    ])
    .await
}

/// A key package as ts-mls sends it: an `MLSMessage` of wire format `mls_key_package` (5).
/// A key package (an `MLSMessage` of wire format 5) as far as the delivery service reads it:
/// its basic credential names participant `id` signed in as `account` ("" for a guest), as
/// the web client's do; `tag` tells packages apart.
fn key_package_as(id: ParticipantId, account: &str, tag: u8) -> Vec<u8> {
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

/// A guest's key package.
fn key_package(id: ParticipantId, tag: u8) -> Vec<u8> {
    key_package_as(id, "", tag)
}

/// A public-message commit (wire format 1) of `group` on `epoch`.
fn commit(group: &str, epoch: u64) -> Vec<u8> {
    let mut b = vec![
        0,
        1,
        0,
        1,
        u8::try_from(group.len()).expect("short group id"),
    ];
    b.extend_from_slice(group.as_bytes());
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(b"framed content, signature, tag");
    b
}

/// A Welcome (wire format 3).
fn welcome() -> Vec<u8> {
    vec![0, 1, 0, 3, 0x77, 0x77]
}

fn commit_msg(
    group: &str,
    epoch: u64,
    added: &[ParticipantId],
    removed: &[ParticipantId],
) -> ClientMessage {
    ClientMessage::MlsCommit {
        epoch,
        commit: MlsBlob(commit(group, epoch)),
        welcome: (!added.is_empty()).then(|| MlsBlob(welcome())),
        added: added.to_vec(),
        removed: removed.to_vec(),
    }
}

/// A client that can encrypt joins `room` (asking for an encrypted room) and hands in its
/// key package; its id and the meeting's mode as `joined` said.
async fn member(
    server: &Server,
    room: &str,
    name: &str,
    tag: u8,
) -> anyhow::Result<(Peer, ParticipantId, E2eeMode)> {
    let mut p = Peer::connect(server, None).await?;
    p.join_e2ee(room, name, true, true).await?;
    let (id, mode) = match p
        .expect("joined", |m| matches!(m, ServerMessage::Joined { .. }))
        .await?
    {
        ServerMessage::Joined {
            participant_id,
            meeting,
            ..
        } => (participant_id, meeting.e2ee),
        _ => unreachable!("matched above"),
    };
    p.send(&ClientMessage::MlsKeyPackage {
        key_package: MlsBlob(key_package(id, tag)),
    })
    .await?;
    Ok((p, id, mode))
}

/// The group id of the `mls_create` the first member gets.
async fn created(p: &mut Peer) -> anyhow::Result<String> {
    match p
        .take("mls_create", |m| {
            matches!(m, ServerMessage::MlsCreate { .. })
        })
        .await?
    {
        ServerMessage::MlsCreate { group_id } => Ok(group_id),
        _ => unreachable!("matched above"),
    }
}

async fn propose(p: &mut Peer) -> anyhow::Result<(u64, Vec<MlsAdd>, Vec<ParticipantId>)> {
    match p
        .take("mls_propose", |m| {
            matches!(m, ServerMessage::MlsPropose { .. })
        })
        .await?
    {
        ServerMessage::MlsPropose { epoch, add, remove } => Ok((epoch, add, remove)),
        _ => unreachable!("matched above"),
    }
}

async fn error_of(p: &mut Peer, code: ErrorCode) -> anyhow::Result<String> {
    match p
        .take(
            &format!("{code:?}"),
            |m| matches!(m, ServerMessage::Error { code: c, .. } if *c == code),
        )
        .await?
    {
        ServerMessage::Error { message, .. } => Ok(message),
        _ => unreachable!("matched above"),
    }
}

/// Every delivery-service message a peer got came after its `joined`.
fn joined_first(p: &Peer) -> anyhow::Result<()> {
    let joined = p
        .inbox
        .iter()
        .position(|m| matches!(m, ServerMessage::Joined { .. }));
    let first_mls = p.inbox.iter().position(|m| {
        matches!(
            m,
            ServerMessage::MlsCreate { .. }
                | ServerMessage::MlsPropose { .. }
                | ServerMessage::MlsCommit { .. }
                | ServerMessage::MlsCommitAccepted { .. }
                | ServerMessage::MlsWelcome { .. }
        )
    });
    if let (Some(j), Some(m)) = (joined, first_mls) {
        ensure!(
            j < m,
            "a delivery-service message before joined: {:?}",
            p.inbox
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_guest_room_refuses_clients_that_cannot_encrypt() -> anyhow::Result<()> {
    let server = server().await?;
    let (mut ann, _, mode) = member(&server, "secret-room", "Ann", 1).await?;
    ensure!(mode == E2eeMode::Required, "require_e2ee made {mode:?}");
    ann.expect("mls_create", |m| {
        matches!(m, ServerMessage::MlsCreate { .. })
    })
    .await?;

    // A client without the capability is refused, fatally, with the documented message.
    let mut old = Peer::connect(&server, None).await?;
    old.join_e2ee("secret-room", "Old", false, false).await?;
    let why = error_of(&mut old, ErrorCode::E2eeUnsupported).await?;
    ensure!(why.contains("end-to-end encrypted"), "message: {why}");
    old.expect_closed().await?;

    // A later join that asks for encryption in a room that exists changes nothing, and one
    // that can encrypt but does not ask still gets in (the room is encrypted anyway).
    let (_bo, _, mode) = member(&server, "secret-room", "Bo", 2).await?;
    ensure!(mode == E2eeMode::Required);
    let mut cy = Peer::connect(&server, None).await?;
    cy.join_e2ee("secret-room", "Cy", true, false).await?;
    cy.joined().await?;

    // `require_e2ee` from a client that cannot encrypt: refused, and no room is left behind
    // (the next joiner makes an ordinary one).
    let mut odd = Peer::connect(&server, None).await?;
    odd.join_e2ee("other-room", "Odd", false, true).await?;
    error_of(&mut odd, ErrorCode::E2eeUnsupported).await?;
    let mut plain = Peer::connect(&server, None).await?;
    plain.join("other-room", "Pat", None).await?;
    match plain
        .expect("joined", |m| matches!(m, ServerMessage::Joined { .. }))
        .await?
    {
        ServerMessage::Joined { meeting, .. } => ensure!(meeting.e2ee == E2eeMode::Off),
        _ => unreachable!("matched above"),
    }

    // MLS in a room that is not encrypted is refused, and the connection stays.
    plain
        .send(&ClientMessage::MlsKeyPackage {
            key_package: MlsBlob(key_package(1, 9)),
        })
        .await?;
    let why = error_of(&mut plain, ErrorCode::InvalidMls).await?;
    ensure!(why.contains("not end-to-end encrypted"), "message: {why}");
    plain.send(&commit_msg("other-room#1", 0, &[], &[])).await?;
    error_of(&mut plain, ErrorCode::InvalidMls).await?;
    plain
        .send(&ClientMessage::Chat {
            text: "still here".into(),
        })
        .await?;
    plain
        .expect("own chat", |m| matches!(m, ServerMessage::Chat { .. }))
        .await?;
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_form_a_group_one_commit_per_epoch_and_removals_are_committed()
-> anyhow::Result<()> {
    let server = server().await?;
    let room = "mls-room";
    let (mut p1, id1, _) = member(&server, room, "One", 1).await?;
    let group = created(&mut p1).await?;
    ensure!(group.starts_with(room), "group id {group}");

    // Each joiner's key package goes to the committer (the first), all pending ones at once.
    let (mut p2, id2, _) = member(&server, room, "Two", 2).await?;
    let (epoch, add, remove) = propose(&mut p1).await?;
    ensure!(epoch == 0 && remove.is_empty());
    ensure!(
        add == [MlsAdd {
            participant_id: id2,
            key_package: MlsBlob(key_package(id2, 2))
        }],
        "{add:?}"
    );
    let (mut p3, id3, _) = member(&server, room, "Three", 3).await?;
    let (epoch, add, _) = propose(&mut p1).await?;
    let ids: Vec<_> = add.iter().map(|a| a.participant_id).collect();
    ensure!(epoch == 0 && ids == [id2, id3], "{ids:?}");
    ensure!(add[1].key_package == MlsBlob(key_package(id3, 3)));

    // The committer adds both: it is told its commit won, each added gets the Welcome.
    let sent = Instant::now();
    p1.send(&commit_msg(&group, 0, &[id2, id3], &[])).await?;
    p1.take("commit accepted", |m| {
        matches!(m, ServerMessage::MlsCommitAccepted { epoch: 0 })
    })
    .await?;
    for p in [&mut p2, &mut p3] {
        match p
            .take("mls_welcome", |m| {
                matches!(m, ServerMessage::MlsWelcome { .. })
            })
            .await?
        {
            ServerMessage::MlsWelcome { epoch, welcome: w } => {
                ensure!(epoch == 1 && w == MlsBlob(welcome()));
            }
            _ => unreachable!("matched above"),
        }
    }
    println!(
        "commit to both Welcomes delivered: {} ms",
        sent.elapsed().as_millis()
    );

    // Two commits on epoch 1: the first wins and reaches the other members; the second is
    // told it is stale.
    p2.send(&commit_msg(&group, 1, &[], &[])).await?;
    p2.take("commit accepted", |m| {
        matches!(m, ServerMessage::MlsCommitAccepted { epoch: 1 })
    })
    .await?;
    p3.send(&commit_msg(&group, 1, &[], &[])).await?;
    let why = error_of(&mut p3, ErrorCode::StaleEpoch).await?;
    ensure!(why.contains("epoch 1") && why.contains("epoch 2"), "{why}");
    for p in [&mut p1, &mut p3] {
        match p
            .take("relayed commit", |m| {
                matches!(m, ServerMessage::MlsCommit { .. })
            })
            .await?
        {
            ServerMessage::MlsCommit { epoch, commit: c } => {
                ensure!(epoch == 1 && c == MlsBlob(commit(&group, 1)));
            }
            _ => unreachable!("matched above"),
        }
    }
    ensure!(
        !p2.inbox
            .iter()
            .any(|m| matches!(m, ServerMessage::MlsCommit { .. })),
        "the winner got its own commit back"
    );

    // The host (the first, in a guest room) removes the third: the committer is asked to
    // remove it from the group.
    let removed_at = Instant::now();
    p1.send(&ClientMessage::Remove {
        participant_id: id3,
        bar: false,
    })
    .await?;
    p3.expect_error(ErrorCode::Removed).await?;
    let asked_at = Instant::now();
    let (epoch, add, remove) = propose(&mut p1).await?;
    println!(
        "host remove to the committer's mls_propose: {} ms",
        removed_at.elapsed().as_millis()
    );
    ensure!(
        epoch == 2 && add.is_empty() && remove == [id3],
        "{remove:?}"
    );

    // The committer never answers: after the timeout the next member is asked.
    let (epoch, _, remove) = propose(&mut p2).await?;
    let waited = asked_at.elapsed();
    ensure!(epoch == 2 && remove == [id3]);
    ensure!(
        waited >= Duration::from_millis(COMMIT_TIMEOUT_MS - 150),
        "passed over after {waited:?}, before the timeout"
    );
    ensure!(
        waited < Duration::from_millis(COMMIT_TIMEOUT_MS + 3000),
        "passed over only after {waited:?}"
    );
    println!("committer passed over after {} ms", waited.as_millis());
    p2.send(&commit_msg(&group, 2, &[], &[id3])).await?;
    p2.take("commit accepted", |m| {
        matches!(m, ServerMessage::MlsCommitAccepted { epoch: 2 })
    })
    .await?;
    p1.take("relayed removal", |m| {
        matches!(m, ServerMessage::MlsCommit { epoch: 2, .. })
    })
    .await?;
    // The old committer's late commit on the old epoch is stale now.
    p1.send(&commit_msg(&group, 2, &[], &[id3])).await?;
    error_of(&mut p1, ErrorCode::StaleEpoch).await?;

    // A member who leaves is removed the same way; the committer is the first again.
    p2.send(&ClientMessage::Leave).await?;
    p2.expect_closed().await?;
    let (epoch, _, remove) = propose(&mut p1).await?;
    ensure!(epoch == 3 && remove == [id2], "{remove:?}");
    for p in [&p1, &p2, &p3] {
        joined_first(p)?;
    }
    let _ = id1;
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mls_input_is_refused_without_harming_the_group() -> anyhow::Result<()> {
    let server = server().await?;
    let room = "mls-bad";
    let (mut p1, id1, _) = member(&server, room, "One", 1).await?;
    let group = created(&mut p1).await?;
    let (mut p2, id2, _) = member(&server, room, "Two", 2).await?;
    propose(&mut p1).await?;

    let mut big = key_package(id1, 7);
    let impostor = format!(
        "names participant {id2} (a guest), not this connection's participant {id1} (a guest)"
    );
    big.resize(MAX_BLOB + 1, 0);
    let refused: Vec<(ClientMessage, &str)> = vec![
        (
            ClientMessage::MlsKeyPackage {
                key_package: MlsBlob(big.clone()),
            },
            "over the limit",
        ),
        (
            ClientMessage::MlsKeyPackage {
                key_package: MlsBlob(welcome()),
            },
            "wire format",
        ),
        // Nobody joins the group under another's name or an account they did not sign in
        // with: the credential must name this connection's participant and account.
        (
            ClientMessage::MlsKeyPackage {
                key_package: MlsBlob(key_package(id2, 8)),
            },
            &impostor,
        ),
        (
            ClientMessage::MlsKeyPackage {
                key_package: MlsBlob(key_package_as(id1, "boss@example.org", 8)),
            },
            "(boss@example.org), not this connection's",
        ),
        (
            ClientMessage::MlsKeyPackage {
                key_package: MlsBlob(vec![0, 1, 0, 5, 0, 1, 0, 1, 1, 7]),
            },
            "malformed key package",
        ),
        (
            ClientMessage::MlsCommit {
                epoch: 0,
                commit: MlsBlob(big.clone()),
                welcome: None,
                added: vec![],
                removed: vec![],
            },
            "over the limit",
        ),
        (
            ClientMessage::MlsCommit {
                epoch: 0,
                commit: MlsBlob(vec![0, 1, 0, 1, 0x7f]),
                welcome: None,
                added: vec![],
                removed: vec![],
            },
            "malformed commit",
        ),
        (
            ClientMessage::MlsCommit {
                epoch: 0,
                commit: MlsBlob(vec![0, 9, 0, 1, 1, b'g', 0, 0, 0, 0, 0, 0, 0, 0]),
                welcome: None,
                added: vec![],
                removed: vec![],
            },
            "not MLS 1.0",
        ),
        (commit_msg(&group, 0, &[999], &[]), "without a key package"),
        (commit_msg(&group, 0, &[], &[id2]), "has not left"),
        (commit_msg("another#1", 0, &[], &[]), "another group"),
        (
            ClientMessage::MlsCommit {
                epoch: 0,
                commit: MlsBlob(commit(&group, 0)),
                welcome: None,
                added: vec![id2],
                removed: vec![],
            },
            "needs a welcome",
        ),
        (
            ClientMessage::MlsCommit {
                epoch: 5,
                commit: MlsBlob(commit(&group, 0)),
                welcome: None,
                added: vec![],
                removed: vec![],
            },
            "the message says 5",
        ),
    ];
    for (msg, why) in &refused {
        p1.send(msg).await?;
        let got = error_of(&mut p1, ErrorCode::InvalidMls).await?;
        ensure!(got.contains(why), "{msg:?}: {got:?}, expected {why:?}");
    }
    // One who is not in the group yet may not commit.
    p2.send(&commit_msg(&group, 0, &[], &[])).await?;
    let got = error_of(&mut p2, ErrorCode::InvalidMls).await?;
    ensure!(got.contains("not a member"), "{got}");
    // Nor hand in a second key package while the first waits.
    p2.send(&ClientMessage::MlsKeyPackage {
        key_package: MlsBlob(key_package(id2, 22)),
    })
    .await?;
    let got = error_of(&mut p2, ErrorCode::InvalidMls).await?;
    ensure!(got.contains("waits to be added"), "{got}");
    // Not base64: the message itself is invalid.
    p1.send_text(&json!({"type": "mls_key_package", "key_package": "not base64!"}).to_string())
        .await?;
    error_of(&mut p1, ErrorCode::InvalidMessage).await?;

    // None of it moved the group: the proposed add on epoch 0 still goes through.
    p1.send(&commit_msg(&group, 0, &[id2], &[])).await?;
    p1.take("commit accepted", |m| {
        matches!(m, ServerMessage::MlsCommitAccepted { epoch: 0 })
    })
    .await?;
    p2.take("mls_welcome", |m| {
        matches!(m, ServerMessage::MlsWelcome { epoch: 1, .. })
    })
    .await?;
    ensure!(!p1.closed && !p2.closed, "a refusal closed a connection");
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_e2ee_makes_every_guest_room_encrypted() -> anyhow::Result<()> {
    let server = Server::start_with(&["--force-e2ee", "true"]).await?;
    let mut plain = Peer::connect(&server, None).await?;
    plain.join("any-room", "Pat", None).await?;
    plain.expect_error(ErrorCode::E2eeUnsupported).await?;
    let (_p, _, mode) = member(&server, "any-room", "Ann", 1).await?;
    if mode != E2eeMode::Required {
        bail!("--force-e2ee gave {mode:?}");
    }
    server.pass();
    Ok(())
}

/// Schedules a meeting titled `title` with end-to-end encryption `mode` for the account of
/// `token`, checks that the answer and the stored meeting say `mode`, and returns its id.
async fn scheduled(
    server: &Server,
    token: &str,
    title: &str,
    mode: &str,
) -> anyhow::Result<String> {
    let created = peer::api(
        server,
        "POST",
        "/meetings",
        Some(token),
        json!({"title": title, "e2ee": mode}),
    )
    .await?;
    ensure!(created["e2ee"] == mode, "{created}");
    let id = created["id"].as_str().context("no id")?.to_owned();
    let got = peer::api(
        server,
        "GET",
        &format!("/meetings/{id}"),
        Some(token),
        json!(null),
    )
    .await?;
    ensure!(got["e2ee"] == mode, "stored: {got}");
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_meeting_stores_e2ee_and_refuses_its_host_without_it() -> anyhow::Result<()> {
    let server = server().await?;
    let (token, _) = peer::signup(&server, "host@example.org").await?;
    let id = scheduled(&server, &token, "Board", "required").await?;
    // The host too is refused from a browser that cannot encrypt.
    let mut host = Peer::connect(&server, Some(&token)).await?;
    host.join(&id, "Host", None).await?;
    host.expect_error(ErrorCode::E2eeUnsupported).await?;
    let mut host = Peer::connect(&server, Some(&token)).await?;
    host.join_e2ee(&id, "Host", true, false).await?;
    match host
        .expect("joined", |m| matches!(m, ServerMessage::Joined { .. }))
        .await?
    {
        ServerMessage::Joined { meeting, .. } => ensure!(meeting.e2ee == E2eeMode::Required),
        _ => unreachable!("matched above"),
    }
    let patched = peer::api(
        &server,
        "PATCH",
        &format!("/meetings/{id}"),
        Some(&token),
        json!({"e2ee": "off"}),
    )
    .await?;
    ensure!(patched["e2ee"] == "off", "{patched}");
    // Anything but the three modes is refused.
    let (status, _) = server
        .request(
            "PATCH",
            &format!("/api/v1/meetings/{id}"),
            Some(&token),
            Some(&json!({"e2ee": "sometimes"}).to_string()),
        )
        .await?;
    ensure!(
        status == 400 || status == 422,
        "sometimes answered {status}"
    );
    server.pass();
    Ok(())
}

/// Whether `p` got `participant_joined` for `name`, and what it said of its encryption.
async fn joined_can_encrypt(p: &mut Peer, name: &str) -> anyhow::Result<bool> {
    match p
        .take(&format!("participant_joined {name}"), |m| {
            matches!(m, ServerMessage::ParticipantJoined { participant } if participant.name == name)
        })
        .await?
    {
        ServerMessage::ParticipantJoined { participant } => Ok(participant.e2ee),
        _ => unreachable!("matched above"),
    }
}

/// An `optional` meeting: those who can encrypt form the group, a browser that cannot is
/// let in (and everyone learns who can), and chat must be sealed exactly while everyone in
/// the meeting can encrypt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_meeting_lets_in_browsers_that_cannot_encrypt() -> anyhow::Result<()> {
    let server = server().await?;
    let (token, _) = peer::signup(&server, "host@example.org").await?;
    let id = scheduled(&server, &token, "Town hall", "optional").await?;

    let mut host = Peer::connect(&server, Some(&token)).await?;
    host.join_e2ee(&id, "Host", true, false).await?;
    let host_id = match host
        .expect("joined", |m| matches!(m, ServerMessage::Joined { .. }))
        .await?
    {
        ServerMessage::Joined {
            participant_id,
            meeting,
            ..
        } => {
            ensure!(meeting.e2ee == E2eeMode::Optional, "{meeting:?}");
            participant_id
        }
        _ => unreachable!("matched above"),
    };
    host.send(&ClientMessage::MlsKeyPackage {
        key_package: MlsBlob(key_package_as(host_id, "host@example.org", 1)),
    })
    .await?;
    created(&mut host).await?;

    // Everyone in can encrypt: plain chat is refused, sealed chat goes through.
    host.send(&ClientMessage::Chat { text: "hi".into() })
        .await?;
    let why = error_of(&mut host, ErrorCode::InvalidMessage).await?;
    ensure!(why.contains("sealed"), "message: {why}");
    host.send(&ClientMessage::SealedChat {
        sealed: MlsBlob(vec![1; 40]),
    })
    .await?;
    host.expect("own sealed chat", |m| {
        matches!(m, ServerMessage::SealedChat { .. })
    })
    .await?;

    // A guest whose browser cannot encrypt gets in, and the host learns it cannot.
    let mut old = Peer::connect(&server, None).await?;
    old.join_e2ee(&id, "Old", false, false).await?;
    match old
        .expect("joined", |m| matches!(m, ServerMessage::Joined { .. }))
        .await?
    {
        ServerMessage::Joined {
            meeting,
            participants,
            ..
        } => {
            ensure!(meeting.e2ee == E2eeMode::Optional);
            ensure!(
                participants.iter().all(|p| p.e2ee),
                "the host can encrypt: {participants:?}"
            );
        }
        _ => unreachable!("matched above"),
    }
    ensure!(
        !joined_can_encrypt(&mut host, "Old").await?,
        "Old was announced as able to encrypt"
    );
    // A member that can encrypt comes in beside it, and is announced as able to.
    let mut cy = Peer::connect(&server, None).await?;
    cy.join_e2ee(&id, "Cy", true, false).await?;
    cy.joined().await?;
    ensure!(
        joined_can_encrypt(&mut host, "Cy").await?,
        "Cy was announced as unable to encrypt"
    );

    // While Old is in, chat in the clear is what everyone can read.
    host.send(&ClientMessage::Chat {
        text: "welcome".into(),
    })
    .await?;
    old.expect(
        "plain chat",
        |m| matches!(m, ServerMessage::Chat { text, .. } if text == "welcome"),
    )
    .await?;

    // Once Old has left, it is refused again.
    old.send(&ClientMessage::Leave).await?;
    host.expect("Old left", |m| {
        matches!(m, ServerMessage::ParticipantLeft { .. })
    })
    .await?;
    host.send(&ClientMessage::Chat {
        text: "anyone?".into(),
    })
    .await?;
    error_of(&mut host, ErrorCode::InvalidMessage).await?;
    ensure!(!host.closed, "a refused chat closed the host's connection");
    server.pass();
    Ok(())
}
