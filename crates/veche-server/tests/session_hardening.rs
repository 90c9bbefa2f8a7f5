//! Sessions and meetings that end, through the real binary: a meeting deleted while it runs
//! ends for everyone and its id never opens again (not as an instant guest room either, not
//! after a `kill -9` and restart); a signalling connection opened while signed in loses its
//! account when the session ends — signed out, password changed, role changed — both at once
//! (the socket is closed) and at its next join (the session is checked again).

use crate::common;
use crate::peer;

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};
use common::Server;
use peer::{PASSWORD, Peer, api, login, signup};
use serde_json::json;
use veche_proto::{EndReason, ErrorCode, Role, ServerMessage};

async fn create_meeting(
    server: &Server,
    token: &str,
    body: serde_json::Value,
) -> anyhow::Result<String> {
    let m = api(server, "POST", "/meetings", Some(token), body).await?;
    Ok(m["id"].as_str().context("meeting id")?.to_owned())
}

/// `veche admin` against the server's data directory, with `stdin` piped in.
fn admin(server: &Server, args: &[&str], stdin: &str) -> anyhow::Result<()> {
    let mut cli = Command::new(env!("CARGO_BIN_EXE_veche"))
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(server.data_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    cli.stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes())?;
    ensure!(cli.wait()?.success(), "veche admin {args:?} failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_live_meeting_ends_and_its_id_never_opens_again() -> anyhow::Result<()> {
    let mut server = Server::start().await?;
    let (host_token, _) = signup(&server, "host@a.example").await?;
    let (other_token, _) = signup(&server, "someone@b.example").await?;
    let meeting = create_meeting(
        &server,
        &host_token,
        json!({"title": "Board", "passcode": "4321", "waiting_room": false}),
    )
    .await?;

    let mut host = Peer::connect(&server, Some(&host_token)).await?;
    host.join(&meeting, "Host", None).await?;
    ensure!(host.joined().await? == Role::Host);
    let mut guest = Peer::connect(&server, None).await?;
    guest.join(&meeting, "Guest", Some("4321")).await?;
    ensure!(guest.joined().await? == Role::Guest);

    api(
        &server,
        "DELETE",
        &format!("/meetings/{meeting}"),
        Some(&host_token),
        serde_json::Value::Null,
    )
    .await?;
    for p in [&mut host, &mut guest] {
        p.expect("meeting_ended", |m| {
            matches!(
                m,
                ServerMessage::MeetingEnded {
                    reason: EndReason::Host
                }
            )
        })
        .await?;
        p.expect_closed().await?;
    }

    // The attack: the id, no passcode. Before, this fell back to an instant guest room of
    // the same name — inside what was left of the meeting, with no passcode and no waiting
    // room. Now the id is dead, for guests and for signed-in users alike.
    let mut intruder = Peer::connect(&server, None).await?;
    intruder.join(&meeting, "Intruder", None).await?;
    intruder.expect_error(ErrorCode::MeetingNotFound).await?;
    intruder.expect_closed().await?;
    let mut member = Peer::connect(&server, Some(&other_token)).await?;
    member.join(&meeting, "Member", None).await?;
    member.expect_error(ErrorCode::MeetingNotFound).await?;

    // The tombstone is in the database, not in memory.
    server.kill_9_and_restart().await?;
    let mut later = Peer::connect(&server, None).await?;
    later.join(&meeting, "Later", None).await?;
    later.expect_error(ErrorCode::MeetingNotFound).await?;
    ensure!(
        !later
            .inbox
            .iter()
            .any(|m| matches!(m, ServerMessage::Joined { .. })),
        "joined a deleted meeting after a restart: {:?}",
        later.inbox
    );
    // Instant guest rooms still work under other names.
    let mut fine = Peer::connect(&server, None).await?;
    fine.join("someotherroom", "Fine", None).await?;
    fine.joined().await?;
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_loses_its_account_when_the_session_ends() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let (first, v) = signup(&server, "owner@a.example").await?;
    let user_id = v["user"]["id"].as_str().context("user id")?.to_owned();
    let meeting = create_meeting(&server, &first, json!({"title": "Mine"})).await?;

    // Signed out: a socket upgraded while signed in is closed at once with the reason.
    let mut before_logout = Peer::connect(&server, Some(&first)).await?;
    api(
        &server,
        "POST",
        "/auth/logout",
        Some(&first),
        serde_json::Value::Null,
    )
    .await?;
    before_logout.expect_error(ErrorCode::SessionEnded).await?;
    before_logout.expect_closed().await?;
    let reason = before_logout.close.as_ref().map(|f| f.reason.to_string());
    ensure!(
        reason.as_deref() == Some("session ended"),
        "close reason {reason:?}"
    );
    // The old token now opens a socket with no account: the join is a guest's, not the
    // host's.
    let mut replay = Peer::connect(&server, Some(&first)).await?;
    replay.join(&meeting, "Replay", None).await?;
    let role = replay.joined().await?;
    ensure!(
        role == Role::Guest,
        "the logged-out token joined as {role:?}"
    );
    drop(replay);

    // Password changed: every session of the account ends, and so do its live sockets,
    // the one already in the meeting as host included.
    let second = login(&server, "owner@a.example", PASSWORD).await?;
    let third = login(&server, "owner@a.example", PASSWORD).await?;
    let mut in_meeting = Peer::connect(&server, Some(&third)).await?;
    in_meeting.join(&meeting, "Owner", None).await?;
    ensure!(in_meeting.joined().await? == Role::Host);
    let new_password = "a brand new password";
    let changed = api(
        &server,
        "POST",
        "/auth/password",
        Some(&second),
        json!({"current_password": PASSWORD, "new_password": new_password}),
    )
    .await?;
    in_meeting.expect_error(ErrorCode::SessionEnded).await?;
    in_meeting.expect_closed().await?;
    let mut again = Peer::connect(&server, Some(&third)).await?;
    again.join(&meeting, "Owner", None).await?;
    let role = again.joined().await?;
    ensure!(role == Role::Guest, "a pre-change token joined as {role:?}");
    drop(again);

    // Role changed by the operator: the account's live sockets end.
    admin(
        &server,
        &[
            "create-user",
            "--email",
            "op@veche.example",
            "--password-stdin",
            "--role",
            "admin",
        ],
        PASSWORD,
    )?;
    let operator = login(&server, "op@veche.example", PASSWORD).await?;
    let current = changed["token"].as_str().context("token")?.to_owned();
    let mut live = Peer::connect(&server, Some(&current)).await?;
    live.join(&meeting, "Owner", None).await?;
    ensure!(live.joined().await? == Role::Host);
    api(
        &server,
        "PATCH",
        &format!("/admin/users/{user_id}"),
        Some(&operator),
        json!({"org_role": "member"}),
    )
    .await?;
    live.expect_error(ErrorCode::SessionEnded).await?;
    live.expect_closed().await?;

    // A change made from the shell reaches no live socket (another process), but the join
    // checks the session again: a socket opened before `veche admin set-password` cannot
    // join with the account it was opened with.
    let mut opened_before = Peer::connect(&server, Some(&current)).await?;
    admin(
        &server,
        &[
            "set-password",
            "--email",
            "owner@a.example",
            "--password-stdin",
        ],
        "yet another password",
    )?;
    opened_before.join(&meeting, "Owner", None).await?;
    opened_before.expect_error(ErrorCode::SessionEnded).await?;
    opened_before.expect_closed().await?;
    ensure!(
        !opened_before
            .inbox
            .iter()
            .any(|m| matches!(m, ServerMessage::Joined { .. })),
        "joined after the session ended: {:?}",
        opened_before.inbox
    );
    server.pass();
    Ok(())
}
