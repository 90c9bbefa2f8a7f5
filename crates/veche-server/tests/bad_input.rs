//! Bad input on one signalling connection gets a specific error on that connection only; the
//! server does not fall over and two participants in a call keep exchanging media throughout.

use crate::common;

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use common::{Server, assert_clean, assert_no_gap, join_connected, summary, wait_mesh};
use veche_load::{ParticipantOptions, SignalClient};
use veche_proto::{ClientMessage, ErrorCode, PROTOCOL_VERSION, ServerMessage, TrackKind};

const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads until an error message arrives and checks its code, compared by its name on the wire.
async fn expect_error(client: &mut SignalClient, code: ErrorCode) -> anyhow::Result<()> {
    let want = serde_json::to_value(code)?;
    let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    loop {
        let text = tokio::time::timeout_at(deadline, client.recv_text())
            .await
            .with_context(|| format!("no {want} error within {REPLY_TIMEOUT:?}"))??
            .with_context(|| format!("connection closed while waiting for {want}"))?;
        let msg: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("server sent non-JSON {text:?}"))?;
        if msg["type"] == "error" {
            ensure!(msg["code"] == want, "expected {want}, got {text}");
            ensure!(
                msg["message"].as_str().is_some_and(|m| !m.is_empty()),
                "error without a message: {text}"
            );
            return Ok(());
        }
    }
}

/// Reads until a message of type `kind` arrives.
async fn expect_type(client: &mut SignalClient, kind: &str) -> anyhow::Result<ServerMessage> {
    let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    loop {
        let text = tokio::time::timeout_at(deadline, client.recv_text())
            .await
            .with_context(|| format!("no {kind} within {REPLY_TIMEOUT:?}"))??
            .with_context(|| format!("connection closed while waiting for {kind}"))?;
        let msg: serde_json::Value = serde_json::from_str(&text)?;
        if msg["type"] == "error" {
            bail!("expected {kind}, got {text}");
        }
        if msg["type"] == kind {
            return Ok(ServerMessage::parse(&text)?);
        }
    }
}

/// Waits for the server to close the connection (skipping anything it still sends).
async fn expect_closed(client: &mut SignalClient) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, client.recv_text()).await {
            Err(_) => bail!("connection still open after {REPLY_TIMEOUT:?}"),
            Ok(Ok(Some(_))) => continue,
            // Closed cleanly, or reset: either way the server hung up.
            Ok(Ok(None) | Err(_)) => return Ok(()),
        }
    }
}

fn join(version: u32, room: &str, name: &str) -> String {
    ClientMessage::Join {
        version,
        room: room.into(),
        name: name.into(),
        passcode: None,
        resume: None,
        e2ee: false,
        require_e2ee: false,
    }
    .to_json()
}

fn chat(text: &str) -> String {
    ClientMessage::Chat { text: text.into() }.to_json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_specific_errors_while_media_keeps_flowing() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let url = server.ws_url();
    let a = join_connected(&server, "call", "Ann", ParticipantOptions::default()).await?;
    let b = join_connected(&server, "call", "Bob", ParticipantOptions::default()).await?;
    wait_mesh(&[&a, &b], 50, 50, Duration::from_secs(20)).await?;

    // Before joining: garbage of every shape.
    let mut bad = SignalClient::connect(&url).await?;
    bad.send_text("{not json").await?;
    expect_error(&mut bad, ErrorCode::MalformedMessage)
        .await
        .context("malformed JSON")?;
    bad.send_text("[1,2,3]").await?;
    expect_error(&mut bad, ErrorCode::MalformedMessage)
        .await
        .context("JSON array")?;
    bad.send_text(r#"{"type":"dance"}"#).await?;
    expect_error(&mut bad, ErrorCode::UnknownType)
        .await
        .context("unknown type")?;
    bad.send_text(r#"{"type":"join","version":1}"#).await?;
    expect_error(&mut bad, ErrorCode::InvalidMessage)
        .await
        .context("missing fields")?;
    bad.send_text(r#"{"type":"chat","text":7}"#).await?;
    expect_error(&mut bad, ErrorCode::InvalidMessage)
        .await
        .context("wrong field type")?;
    let oversized = chat(&"x".repeat(70 * 1024));
    bad.send_text(oversized).await?;
    expect_error(&mut bad, ErrorCode::MessageTooLarge)
        .await
        .context("oversized")?;
    bad.send_binary(vec![0xde, 0xad, 0xbe, 0xef]).await?;
    expect_error(&mut bad, ErrorCode::BinaryNotSupported)
        .await
        .context("binary frame")?;
    bad.send_text(chat("hello?")).await?;
    expect_error(&mut bad, ErrorCode::NotJoined)
        .await
        .context("chat before join")?;
    bad.send(&ClientMessage::Answer { sdp: "v=0".into() })
        .await?;
    expect_error(&mut bad, ErrorCode::NotJoined)
        .await
        .context("answer before join")?;
    // A wrong protocol version is fatal: error, then the server hangs up.
    bad.send_text(join(PROTOCOL_VERSION + 99, "call", "Eve"))
        .await?;
    expect_error(&mut bad, ErrorCode::UnsupportedVersion)
        .await
        .context("wrong version")?;
    expect_closed(&mut bad)
        .await
        .context("close after unsupported_version")?;

    // Bad joins, then a good one, then bad input as a member of the call.
    let mut bad = SignalClient::connect(&url).await?;
    for (room, name, code, what) in [
        ("", "Eve", ErrorCode::InvalidRoom, "empty room"),
        (&*"r".repeat(65), "Eve", ErrorCode::InvalidRoom, "long room"),
        (
            "no/slashes",
            "Eve",
            ErrorCode::InvalidRoom,
            "room with a slash",
        ),
        ("call", "", ErrorCode::InvalidName, "empty name"),
        ("call", "   ", ErrorCode::InvalidName, "blank name"),
        (
            "call",
            &*"n".repeat(65),
            ErrorCode::InvalidName,
            "long name",
        ),
    ] {
        bad.send_text(join(PROTOCOL_VERSION, room, name)).await?;
        expect_error(&mut bad, code).await.context(what)?;
    }
    bad.send_text(join(PROTOCOL_VERSION, "call", "Eve")).await?;
    expect_type(&mut bad, "joined")
        .await
        .context("good join after bad ones")?;
    expect_type(&mut bad, "offer")
        .await
        .context("offer after joining")?;
    bad.send_text(join(PROTOCOL_VERSION, "call", "Eve")).await?;
    expect_error(&mut bad, ErrorCode::AlreadyJoined)
        .await
        .context("second join")?;
    bad.send(&ClientMessage::Answer {
        sdp: "v=0\r\nthis is not sdp\r\n".into(),
    })
    .await?;
    expect_error(&mut bad, ErrorCode::InvalidSdp)
        .await
        .context("garbage SDP answer")?;
    bad.send(&ClientMessage::Candidate {
        candidate: "candidate:garbage".into(),
    })
    .await?;
    expect_error(&mut bad, ErrorCode::InvalidCandidate)
        .await
        .context("bad candidate")?;
    bad.send_text(chat(&"c".repeat(4001))).await?;
    expect_error(&mut bad, ErrorCode::ChatTooLong)
        .await
        .context("chat too long")?;
    // A flood far past the rate limit (50/s, burst 100). End-of-candidates messages are
    // otherwise ignored, so nothing reaches the other participants.
    let noop = ClientMessage::Candidate {
        candidate: String::new(),
    }
    .to_json();
    for _ in 0..250 {
        bad.send_text(noop.clone()).await?;
    }
    expect_error(&mut bad, ErrorCode::RateLimited)
        .await
        .context("flood")?;

    // An answer when no offer is outstanding, from a member whose negotiation is complete.
    let m = join_connected(&server, "call", "Max", ParticipantOptions::receive_only()).await?;
    let stale = m.last_answer().context("Max answered")?;
    m.send(ClientMessage::Answer { sdp: stale })?;
    let (_, err) = m
        .wait_for_event(REPLY_TIMEOUT, |e| matches!(e, ServerMessage::Error { .. }))
        .await
        .context("error for an unexpected answer")?;
    ensure!(
        matches!(
            err,
            ServerMessage::Error {
                code: ErrorCode::UnexpectedAnswer,
                ..
            }
        ),
        "expected unexpected_answer, got {err:?}"
    );

    // Media kept flowing during all of that, and keeps flowing after it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_no_gap(&a, &[&b])?;
    assert_no_gap(&b, &[&a])?;
    assert_clean(&a)?;
    assert_clean(&b)?;
    for p in [&a, &b] {
        ensure!(
            p.stats().ended.is_none(),
            "{} stopped: {}",
            p.id(),
            summary(&p.stats())
        );
    }

    // The server is healthy and still lets people in.
    ensure!(server.healthz().await? == 200, "healthz after bad input");
    let n = join_connected(&server, "call", "Nia", ParticipantOptions::default()).await?;
    wait_mesh(&[&a, &n], 25, 25, Duration::from_secs(20))
        .await
        .context("a newcomer exchanging media after the bad input")?;
    ensure!(
        n.stats().packets_from(b.id(), TrackKind::Audio) > 0,
        "newcomer hears Bob"
    );
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_refuses_the_next_joiner_and_the_call_goes_on() -> anyhow::Result<()> {
    let server = Server::start_with(&["--max-participants", "2"]).await?;
    let a = join_connected(&server, "small", "Ann", ParticipantOptions::default()).await?;
    let b = join_connected(&server, "small", "Bob", ParticipantOptions::default()).await?;
    wait_mesh(&[&a, &b], 25, 25, Duration::from_secs(20)).await?;

    let mut third = SignalClient::connect(&server.ws_url()).await?;
    third
        .send_text(join(PROTOCOL_VERSION, "small", "Cid"))
        .await?;
    expect_error(&mut third, ErrorCode::RoomFull).await?;
    expect_closed(&mut third)
        .await
        .context("close after room_full")?;
    // Another room is not affected by this one being full.
    join_connected(&server, "other", "Dan", ParticipantOptions::receive_only()).await?;

    let before = (a.stats(), b.stats());
    tokio::time::sleep(Duration::from_secs(1)).await;
    for kind in [TrackKind::Audio, TrackKind::Video] {
        ensure!(
            a.stats().packets_from(b.id(), kind) > before.0.packets_from(b.id(), kind) + 20
                && b.stats().packets_from(a.id(), kind) > before.1.packets_from(a.id(), kind) + 20,
            "{kind:?} in the full room slowed"
        );
    }
    assert_clean(&a)?;
    assert_clean(&b)?;
    server.pass();
    Ok(())
}
