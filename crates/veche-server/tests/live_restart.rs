//! A running meeting survives `kill -9` of the real binary: a host, a co-host appointed in
//! the meeting and a guest, with the lock on, self-unmute forbidden and the guest muted by the
//! host; the server is killed and started again on the same data directory; all three join
//! again (accounts by their session, the guest by the resume token of their `joined`) and
//! find their roles, the mute and the lock as they were. Forged, stolen and foreign tokens
//! get nobody in, and a meeting that ended does not come back. On SQLite and PostgreSQL.
//! And the waiting room holds across the restart: who was admitted comes straight back in,
//! who was waiting waits again (the host sees them) and gets in only when admitted.
//!
//! And what a client was told survives `kill -9`: a host admits a guest from the waiting
//! room, makes a member co-host, mutes the guest and locks the meeting, and the guest raises a
//! hand — each step waits only for its announcement — and the binary is killed the moment the
//! last announcement arrives. Started again, everyone comes back to the meeting they were told
//! of: the guest straight in (admitted), muted, hand up; the co-host a co-host; the lock on.

use crate::common;
use crate::peer;
use crate::postgres;

use std::time::Instant;

use anyhow::{Context, ensure};
use common::Server;
use peer::{PASSWORD, Peer, api, login, signup};
use serde_json::json;
use veche_proto::{
    ClientMessage, ErrorCode, ParticipantId, ParticipantInfo, Role, ServerMessage, TrackKind,
};

/// What a `joined` said.
struct Joined {
    waiting: Vec<ParticipantId>,
    id: ParticipantId,
    role: Role,
    locked: bool,
    allow_self_unmute: bool,
    resume: Option<String>,
    host_muted: Vec<TrackKind>,
    participants: Vec<ParticipantInfo>,
}

async fn joined(peer: &mut Peer) -> anyhow::Result<Joined> {
    match peer
        .expect("joined", |m| matches!(m, ServerMessage::Joined { .. }))
        .await?
    {
        ServerMessage::Joined {
            participant_id,
            role,
            meeting,
            resume,
            host_muted,
            waiting,
            participants,
            ..
        } => Ok(Joined {
            waiting: waiting.iter().map(|w| w.id).collect(),
            id: participant_id,
            role,
            locked: meeting.locked,
            allow_self_unmute: meeting.allow_self_unmute,
            resume,
            host_muted,
            participants,
        }),
        _ => unreachable!("matched above"),
    }
}

async fn enter(
    server: &Server,
    token: Option<&str>,
    room: &str,
    name: &str,
) -> anyhow::Result<(Peer, Joined)> {
    let mut peer = Peer::connect(server, token).await?;
    peer.join(room, name, None).await?;
    let j = joined(&mut peer).await?;
    Ok((peer, j))
}

/// Hana's account and organisation, Cora a member of it, and a meeting of Hana's made with
/// `settings`: their session tokens and the meeting's room.
async fn hana_and_cora(
    server: &Server,
    settings: serde_json::Value,
) -> anyhow::Result<(String, String, String)> {
    let (host_token, signed_up) = signup(server, "hana@live.example").await?;
    let org = signed_up["org"]["id"].as_str().context("org id")?;
    api(
        server,
        "POST",
        &format!("/orgs/{org}/members"),
        Some(&host_token),
        json!({"email": "cora@live.example", "name": "Cora", "password": PASSWORD}),
    )
    .await?;
    let cora_token = login(server, "cora@live.example", PASSWORD).await?;
    let m = api(server, "POST", "/meetings", Some(&host_token), settings).await?;
    let room = m["id"].as_str().context("meeting id")?.to_owned();
    Ok((host_token, cora_token, room))
}

/// The host makes Cora co-host and mutes Gus's microphone; Cora locks the meeting and
/// forbids unmuting. Each step waits for its announcement (and nothing more).
async fn promote_mute_lock(
    host: &mut Peer,
    cora: &mut Peer,
    gus: &mut Peer,
    cora_id: ParticipantId,
    gus_id: ParticipantId,
) -> anyhow::Result<()> {
    host.send(&ClientMessage::SetRole {
        participant_id: cora_id,
        role: Role::CoHost,
    })
    .await?;
    cora.expect("co-host", |m| {
        matches!(m, ServerMessage::RoleChanged { role: Role::CoHost, participant_id } if *participant_id == cora_id)
    })
    .await?;
    host.send(&ClientMessage::Mute {
        participant_id: gus_id,
        kind: TrackKind::Audio,
    })
    .await?;
    gus.expect("host mute", |m| {
        matches!(m, ServerMessage::MutedByHost { .. })
    })
    .await?;
    cora.send(&ClientMessage::SetMeeting {
        locked: Some(true),
        allow_self_unmute: Some(false),
    })
    .await?;
    gus.expect("locked", |m| {
        matches!(m, ServerMessage::MeetingUpdated { meeting } if meeting.locked && !meeting.allow_self_unmute)
    })
    .await?;
    Ok(())
}

async fn meeting_survives_kill_9(extra: &[&str]) -> anyhow::Result<()> {
    let mut server = Server::start_with(extra).await?;
    let (host_token, cora_token, room) =
        hana_and_cora(&server, json!({"title": "Standup"})).await?;

    let (mut host, h) = enter(&server, Some(&host_token), &room, "Hana").await?;
    ensure!(h.role == Role::Host, "the owner hosts: {:?}", h.role);
    let (mut cora, c) = enter(&server, Some(&cora_token), &room, "Cora").await?;
    ensure!(c.role == Role::Participant);
    let (mut gus, g) = enter(&server, None, &room, "Gus").await?;
    ensure!(g.role == Role::Guest);
    let token = g.resume.context("a guest gets a resume token")?;
    ensure!(
        c.resume.is_none(),
        "accounts are recognised by their session"
    );

    promote_mute_lock(&mut host, &mut cora, &mut gus, c.id, g.id).await?;
    // Told of the lock, so it is stored: no waiting before the kill.

    let killed = Instant::now();
    server.kill_9_and_restart().await?;
    let restart_ms = killed.elapsed().as_millis();

    // Everyone comes back, in another order than they came.
    let mut gus = Peer::connect(&server, None).await?;
    gus.join_resuming(&room, "Gus", &token).await?;
    let g2 = joined(&mut gus).await?;
    ensure!(g2.role == Role::Guest, "guest back as {:?}", g2.role);
    ensure!(
        g2.locked && !g2.allow_self_unmute,
        "the lock and the unmute rule hold"
    );
    ensure!(
        g2.host_muted == [TrackKind::Audio],
        "still muted: {:?}",
        g2.host_muted
    );
    let (_cora, c2) = enter(&server, Some(&cora_token), &room, "Cora").await?;
    ensure!(c2.role == Role::CoHost, "co-host back as {:?}", c2.role);
    let (mut host, h2) = enter(&server, Some(&host_token), &room, "Hana").await?;
    ensure!(h2.role == Role::Host, "host back as {:?}", h2.role);
    let back_ms = killed.elapsed().as_millis();
    println!("kill -9 to healthy: {restart_ms} ms; to all three joined again: {back_ms} ms");

    // The mute holds on the server, whatever the guest's client asks.
    gus.send(&ClientMessage::SetMedia {
        kind: TrackKind::Audio,
        enabled: true,
    })
    .await?;
    gus.expect_error(ErrorCode::UnmuteNotAllowed).await?;

    // Nobody else gets in: not a newcomer, not a forged token, not the guest's token used
    // by someone else while the guest is in.
    let mut forged = token.clone();
    let last = forged.pop().context("empty token")?;
    forged.push(if last == '0' { '1' } else { '0' });
    for (name, resume) in [
        ("Zed", None),
        ("Gus", Some(forged)),
        ("Gus", Some(token.clone())),
    ] {
        let mut other = Peer::connect(&server, None).await?;
        match &resume {
            Some(t) => other.join_resuming(&room, name, t).await?,
            None => other.join(&room, name, None).await?,
        }
        other.expect_error(ErrorCode::MeetingLocked).await?;
    }

    // The host ends the meeting: after another crash it does not come back.
    host.send(&ClientMessage::EndMeeting).await?;
    host.expect("meeting ended", |m| {
        matches!(m, ServerMessage::MeetingEnded { .. })
    })
    .await?;
    // Told it ended, so that is stored: no waiting before the kill.
    server.kill_9_and_restart().await?;
    let (_host, h3) = enter(&server, Some(&host_token), &room, "Hana").await?;
    ensure!(
        h3.role == Role::Host && !h3.locked,
        "a fresh meeting: locked {}",
        h3.locked
    );
    let mut gus = Peer::connect(&server, None).await?;
    gus.join_resuming(&room, "Gus", &token).await?;
    let g3 = joined(&mut gus).await?;
    ensure!(g3.host_muted.is_empty(), "the old meeting's mute is gone");
    ensure!(g3.resume.as_deref() != Some(token.as_str()));
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_survives_kill_9_on_sqlite() -> anyhow::Result<()> {
    meeting_survives_kill_9(&[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_survives_kill_9_on_postgres() -> anyhow::Result<()> {
    let (_pg, url) = fresh_postgres().await?;
    meeting_survives_kill_9(&["--database", &url]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_room_survives_kill_9() -> anyhow::Result<()> {
    let mut server = Server::start_with(&[]).await?;
    let (host_token, _) = signup(&server, "wanda@live.example").await?;
    let m = api(
        &server,
        "POST",
        "/meetings",
        Some(&host_token),
        json!({"title": "Office hours", "waiting_room": true}),
    )
    .await?;
    let room = m["id"].as_str().context("meeting id")?.to_owned();
    let (mut host, h) = enter(&server, Some(&host_token), &room, "Wanda").await?;
    ensure!(h.role == Role::Host);

    // Ada waits and is admitted; Wes waits.
    let mut ada = Peer::connect(&server, None).await?;
    ada.join(&room, "Ada", None).await?;
    let ada_id = ada.waiting_id(&mut host).await?;
    host.send(&ClientMessage::Admit {
        participant_id: ada_id,
    })
    .await?;
    let a = joined(&mut ada).await?;
    let ada_token = a.resume.context("an admitted guest gets a resume token")?;
    let mut wes = Peer::connect(&server, None).await?;
    wes.join(&room, "Wes", None).await?;
    wes.waiting_id(&mut host).await?;
    // Ada was told she is in, so that is stored; who waits is not stored at all.

    server.kill_9_and_restart().await?;

    // Wes is back first, before the host: he waits.
    let mut wes = Peer::connect(&server, None).await?;
    wes.join(&room, "Wes", None).await?;
    wes.expect("waiting again", |m| {
        matches!(m, ServerMessage::Waiting { .. })
    })
    .await?;
    // The host is back and sees him waiting.
    let (mut host, h2) = enter(&server, Some(&host_token), &room, "Wanda").await?;
    ensure!(h2.role == Role::Host, "host back as {:?}", h2.role);
    ensure!(
        h2.waiting.len() == 1,
        "the host sees one waiting: {:?}",
        h2.waiting
    );
    // Ada, admitted before, comes straight in.
    let mut ada = Peer::connect(&server, None).await?;
    ada.join_resuming(&room, "Ada", &ada_token).await?;
    let a2 = joined(&mut ada).await?;
    ensure!(a2.role == Role::Guest);
    ensure!(
        !wes.inbox
            .iter()
            .any(|m| matches!(m, ServerMessage::Joined { .. })),
        "Wes is not in until admitted"
    );
    // A newcomer waits too.
    let mut zoe = Peer::connect(&server, None).await?;
    zoe.join(&room, "Zoe", None).await?;
    zoe.expect("a newcomer waits", |m| {
        matches!(m, ServerMessage::Waiting { .. })
    })
    .await?;
    // Admitted, Wes gets in.
    host.send(&ClientMessage::Admit {
        participant_id: h2.waiting[0],
    })
    .await?;
    let w = joined(&mut wes).await?;
    ensure!(w.role == Role::Guest);
    server.pass();
    Ok(())
}

async fn told_survives_kill_9(extra: &[&str]) -> anyhow::Result<()> {
    let mut server = Server::start_with(extra).await?;
    let (host_token, cora_token, room) =
        hana_and_cora(&server, json!({"title": "Told", "waiting_room": true})).await?;

    let mut host = Peer::connect(&server, Some(&host_token)).await?;
    host.join(&room, "Hana", None).await?;
    ensure!(joined(&mut host).await?.role == Role::Host);
    // Members of the organisation wait too.
    let mut cora = Peer::connect(&server, Some(&cora_token)).await?;
    cora.join(&room, "Cora", None).await?;
    let waiting = cora.waiting_id(&mut host).await?;
    host.send(&ClientMessage::Admit {
        participant_id: waiting,
    })
    .await?;
    let c = joined(&mut cora).await?;

    // Each change, once its announcement is in: the guest is admitted ...
    let mut gus = Peer::connect(&server, None).await?;
    gus.join(&room, "Gus", None).await?;
    let waiting = gus.waiting_id(&mut host).await?;
    host.send(&ClientMessage::Admit {
        participant_id: waiting,
    })
    .await?;
    let g = joined(&mut gus).await?;
    let token = g.resume.context("an admitted guest gets a resume token")?;
    // ... Cora made co-host, the guest muted, the meeting locked ...
    let asked = Instant::now();
    promote_mute_lock(&mut host, &mut cora, &mut gus, c.id, g.id).await?;
    println!(
        "three changes, each announced once stored: {} ms",
        asked.elapsed().as_millis()
    );
    // ... and the guest's hand up. The host sees it: kill -9 at once.
    gus.send(&ClientMessage::RaiseHand { raised: true }).await?;
    host.expect("the hand", |m| {
        matches!(m, ServerMessage::Hand { raised: true, participant_id } if *participant_id == g.id)
    })
    .await?;
    server.kill_9_and_restart().await?;

    // The guest first: admitted before, so straight in through the lock, muted, hand up.
    let mut gus = Peer::connect(&server, None).await?;
    gus.join_resuming(&room, "Gus", &token).await?;
    let g2 = joined(&mut gus)
        .await
        .context("the admitted guest is let in again")?;
    ensure!(
        g2.locked && !g2.allow_self_unmute,
        "the lock and the unmute rule hold"
    );
    ensure!(
        g2.host_muted == [TrackKind::Audio],
        "still muted: {:?}",
        g2.host_muted
    );
    let g2_id = g2.id;
    gus.expect("own hand", |m| {
        matches!(m, ServerMessage::Hand { raised: true, participant_id } if *participant_id == g2_id)
    })
    .await
    .context("the guest's hand is still up")?;
    let (_cora, c2) = enter(&server, Some(&cora_token), &room, "Cora").await?;
    ensure!(c2.role == Role::CoHost, "co-host back as {:?}", c2.role);
    let (_host, h2) = enter(&server, Some(&host_token), &room, "Hana").await?;
    ensure!(h2.role == Role::Host, "host back as {:?}", h2.role);
    let gus_seen = h2
        .participants
        .iter()
        .find(|p| p.id == g2.id)
        .context("the host sees the guest")?;
    ensure!(gus_seen.hand_raised, "the host sees the guest's hand up");
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_client_was_told_survives_kill_9_on_sqlite() -> anyhow::Result<()> {
    told_survives_kill_9(&[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_client_was_told_survives_kill_9_on_postgres() -> anyhow::Result<()> {
    let (_pg, url) = fresh_postgres().await?;
    told_survives_kill_9(&["--database", &url]).await
}

/// The database goes away under a running meeting: news of a change waits at most
/// `--live-save-ms` for its write, then goes out anyway, and the server says so in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_database_does_not_hang_a_meeting() -> anyhow::Result<()> {
    const WAIT_MS: u128 = 500;
    let (pg, url) = fresh_postgres().await?;
    let server = Server::start_with(&["--database", &url, "--live-save-ms", "500"]).await?;
    let room = "no-database-room";
    let mut ann = Peer::connect(&server, None).await?;
    ann.join(room, "Ann", None).await?;
    let a = joined(&mut ann).await?;
    ensure!(a.role == Role::Host, "the first in an instant room hosts");
    let mut bob = Peer::connect(&server, None).await?;
    bob.join(room, "Bob", None).await?;
    let b = joined(&mut bob).await?;

    tokio::task::spawn_blocking(move || drop(pg)).await?;
    let asked = Instant::now();
    ann.send(&ClientMessage::Mute {
        participant_id: b.id,
        kind: TrackKind::Audio,
    })
    .await?;
    bob.expect("host mute", |m| {
        matches!(m, ServerMessage::MutedByHost { .. })
    })
    .await
    .context("the news goes out without its write")?;
    let waited = asked.elapsed().as_millis();
    println!("news of a mute with the database gone: {waited} ms");
    ensure!(
        waited >= WAIT_MS,
        "told after {waited} ms, before the wait was up"
    );
    // The meeting goes on: what changes nothing stored is not held at all.
    bob.send(&ClientMessage::Chat {
        text: "still here".into(),
    })
    .await?;
    ann.expect("chat", |m| matches!(m, ServerMessage::Chat { .. }))
        .await?;
    let log = server.log();
    ensure!(
        log.contains("sent before the changes were stored"),
        "the log says the news went out unstored:\n{log}"
    );
    server.pass();
    Ok(())
}

/// A throwaway PostgreSQL server and a new database on it; the server lives as long as the
/// first value.
async fn fresh_postgres() -> anyhow::Result<(postgres::Postgres, String)> {
    let pg = tokio::task::spawn_blocking(postgres::Postgres::start).await??;
    let url = pg.new_database()?;
    Ok((pg, url))
}
