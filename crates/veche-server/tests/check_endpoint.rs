//! The connectivity check's endpoints on the real binary, over real sockets: `/check/ws` is
//! joined at once to a private room (`joined` with a `check.` room, then an offer), a `join`
//! on it is refused as already joined, and a meeting `join` to that room from `/ws` is
//! refused; `/check/download` sends its 2 MiB uncached; past the per-address budget both
//! answer 429 `too_many_checks`, the page itself still loads and the server stays healthy;
//! a check room is not stored for a restart (a guest room beside it is).

use crate::common;
use crate::peer;

use std::time::Duration;

use anyhow::{Context, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use veche_proto::{ClientMessage, ErrorCode, PROTOCOL_VERSION, ServerMessage};

use common::Server;
use peer::Peer;

/// The per-address budget the server starts with (`check::CheckLimits::default`).
const BUDGET: usize = 30;
const DOWNLOAD_BYTES: usize = 2 * 1024 * 1024;

/// A raw GET: the status, the headers and the body as bytes.
async fn get_raw(server: &Server, path: &str) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let url = server.ws_url();
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .to_owned();
    let mut stream = TcpStream::connect(&addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .context("reading the response")??;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, head, response[split + 4..].to_vec()))
}

async fn check_session(server: &Server) -> anyhow::Result<Peer> {
    let url = server.ws_url().replace("/ws", "/check/ws");
    Peer::connect_url(&url).await
}

#[tokio::test]
async fn check_endpoints_join_a_private_room_send_the_download_and_hold_their_budget()
-> anyhow::Result<()> {
    let server = Server::start().await?;

    // A check session is joined at once to a room of its own and offered media.
    let mut check = check_session(&server).await?;
    let joined = check
        .expect("joined", |m| matches!(m, ServerMessage::Joined { .. }))
        .await?;
    let ServerMessage::Joined {
        room, participants, ..
    } = joined
    else {
        unreachable!("matched above");
    };
    ensure!(
        room.starts_with("check.") && room.len() == 38,
        "room {room}"
    );
    ensure!(participants.is_empty(), "{participants:?}");
    check
        .expect("offer", |m| matches!(m, ServerMessage::Offer { .. }))
        .await?;
    let offer_sdp = check
        .inbox
        .iter()
        .find_map(|m| match m {
            ServerMessage::Offer { sdp } => Some(sdp.clone()),
            _ => None,
        })
        .context("offer")?;
    ensure!(offer_sdp.contains("a=candidate"), "{offer_sdp}");

    // A join on the check connection is refused; so is a meeting join to its room.
    check
        .send(&ClientMessage::Join {
            version: PROTOCOL_VERSION,
            room: "elsewhere".into(),
            name: "x".into(),
            passcode: None,
            resume: None,
            e2ee: false,
            require_e2ee: false,
        })
        .await?;
    check.expect_error(ErrorCode::AlreadyJoined).await?;
    let mut intruder = Peer::connect(&server, None).await?;
    intruder.join(&room, "intruder", None).await?;
    intruder.expect_error(ErrorCode::InvalidRoom).await?;

    // The download: its size, never cached.
    let (status, head, body) = get_raw(&server, "/check/download").await?;
    ensure!(status == 200, "{head}");
    ensure!(body.len() == DOWNLOAD_BYTES, "{} bytes", body.len());
    ensure!(
        head.to_ascii_lowercase()
            .contains("cache-control: no-store"),
        "{head}"
    );
    // Random bytes: no run of zeros a compressor would shrink.
    ensure!(body.windows(64).all(|w| w.iter().any(|&b| b != 0)));

    // Two units spent; spend the rest, then both endpoints refuse.
    for _ in 2..BUDGET {
        let (status, head, _) = get_raw(&server, "/check/download").await?;
        ensure!(status == 200, "{head}");
    }
    let (status, head, body) = get_raw(&server, "/check/download").await?;
    ensure!(status == 429, "{head}");
    let body = String::from_utf8_lossy(&body);
    ensure!(body.contains("too_many_checks"), "{body}");
    let refused = check_session(&server).await;
    ensure!(
        refused.is_err(),
        "a check session over the budget was accepted"
    );
    let (status, _, page) = get_raw(&server, "/check").await?;
    ensure!(status == 200 && page.starts_with(b"<!doctype html>"));

    // The open check session still works, and the server is healthy.
    ensure!(server.healthz().await? == 200);
    check.send(&ClientMessage::Leave).await?;
    server.pass();
    Ok(())
}

/// Rooms in the `live_meetings` table (what a restart brings back).
async fn stored_rooms(server: &Server) -> anyhow::Result<Vec<String>> {
    use sqlx::Connection;
    let url = format!(
        "sqlite://{}?mode=ro",
        server.data_dir().join("veche.db").display()
    );
    let mut db = sqlx::SqliteConnection::connect(&url).await?;
    let rooms: Vec<(String,)> = sqlx::query_as("SELECT room FROM live_meetings")
        .fetch_all(&mut db)
        .await?;
    Ok(rooms.into_iter().map(|(r,)| r).collect())
}

#[tokio::test]
async fn a_check_room_is_not_stored_for_a_restart() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let mut check = check_session(&server).await?;
    let Some(ServerMessage::Joined {
        room: check_room, ..
    }) = check
        .wait_for(peer::WAIT, |m| matches!(m, ServerMessage::Joined { .. }))
        .await?
    else {
        anyhow::bail!("no joined on /check/ws");
    };
    // A guest room beside it is stored (the write-behind runs), the check room is not.
    let mut guest = Peer::connect(&server, None).await?;
    guest.join("stored-beside-check", "G", None).await?;
    guest.joined().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let rooms = loop {
        let rooms = stored_rooms(&server).await?;
        if rooms.iter().any(|r| r == "stored-beside-check") {
            break rooms;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the guest room was never stored: {rooms:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure!(
        !rooms
            .iter()
            .any(|r| r == &check_room || r.starts_with("check.")),
        "{rooms:?}"
    );
    server.pass();
    Ok(())
}
