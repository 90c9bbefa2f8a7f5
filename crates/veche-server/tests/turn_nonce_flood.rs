//! The built-in TURN server under a flood of unsigned Allocate requests from thousands of
//! source addresses (127.1.x.y, all loopback), with --turn-max-nonces 64: the nonces it keeps
//! stay at 64 (its log says so as the first is evicted), a client allocated before the flood
//! finds its nonce evicted, gets 438 (Stale Nonce) and succeeds with the new one, and clients
//! with valid credentials allocate during and after the flood.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use turn_server_proto::types::message::ALLOCATE;
use turn_server_proto::types::stun::attribute::ErrorCode;
use turn_server_proto::types::stun::message::{
    Message, MessageClass, MessageType, MessageWriteVec, TransactionId,
};
use turn_server_proto::types::stun::prelude::MessageWrite;

use crate::common::Server;
use crate::turn_client::{Client, WAIT, ice_servers, url_addr};

const SECRET: &str = "test-secret-0123456789";
const MAX_NONCES: usize = 64;
/// Source addresses of the flood, sent in batches of concurrent requests.
const FLOOD: u32 = 3000;
const BATCH: u32 = 100;

/// The `n`th flood address: 127.1.x.y, each its own IP so no two requests share an address.
fn flood_address(n: u32) -> SocketAddr {
    SocketAddr::from(([127, 1, (n >> 8) as u8, n as u8], 0))
}

/// `text` without its ANSI colour sequences (`ESC [ … m`).
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// One unsigned Allocate from `local`; its answer must be 401.
async fn unsigned_allocate(local: SocketAddr, server: SocketAddr) -> anyhow::Result<()> {
    let socket = UdpSocket::bind(local).await?;
    let request = Message::builder(
        MessageType::from_class_method(MessageClass::Request, ALLOCATE),
        TransactionId::generate(),
        MessageWriteVec::new(),
    )
    .finish();
    socket.send_to(&request, server).await?;
    let mut buf = [0u8; 1024];
    let (n, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .with_context(|| format!("no answer to {local}"))??;
    let reply = Message::from_bytes(&buf[..n]).context("unparsable reply")?;
    let code = reply.attribute::<ErrorCode>().ok().map(|e| e.code());
    ensure!(
        code == Some(401),
        "unsigned Allocate from {local}: {code:?}"
    );
    Ok(())
}

/// Every flood address once, `BATCH` at a time (waiting for each answer, so none is lost
/// to a full socket buffer).
async fn flood(server: SocketAddr) -> anyhow::Result<()> {
    for start in (0..FLOOD).step_by(BATCH as usize) {
        let mut batch = JoinSet::new();
        for n in start..(start + BATCH).min(FLOOD) {
            batch.spawn(unsigned_allocate(flood_address(n), server));
        }
        while let Some(done) = batch.join_next().await {
            done??;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unsigned_allocates_keeps_the_nonce_table_at_its_bound() -> anyhow::Result<()> {
    let max = MAX_NONCES.to_string();
    let server = Server::start_with(&[
        "--media-shards",
        "1",
        "--turn-builtin",
        "true",
        "--turn-udp",
        "127.0.0.1:0",
        "--turn-tls",
        "127.0.0.1:0",
        "--turn-secret",
        SECRET,
        "--turn-max-nonces",
        &max,
    ])
    .await?;
    let flood_took = tokio::time::timeout(Duration::from_secs(60), async {
        let ice = ice_servers(&server).await?;
        let udp = url_addr(&ice.urls, "turn:")?;

        // Allocated before the flood, with the nonce of its first 401.
        let mut early = Client::udp(udp, &ice.username, &ice.credential).await?;
        let reply = early.allocate().await?;
        ensure!(reply.class == MessageClass::Success, "allocate: {reply:?}");
        ensure!(!reply.stale_nonce, "no 438 before the flood: {reply:?}");
        let early_nonce = early.nonce().to_owned();

        // Flood, and meanwhile a client with valid credentials allocates.
        let started = Instant::now();
        let mut during = Client::udp(udp, &ice.username, &ice.credential).await?;
        let (flooded, reply) = tokio::join!(flood(udp), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            during.allocate().await
        });
        let took = started.elapsed();
        flooded?;
        let reply = reply?;
        ensure!(
            reply.class == MessageClass::Success,
            "allocate during the flood: {reply:?}"
        );

        // The early client's nonce was evicted: its next request gets 438 and a new nonce,
        // and the retry succeeds on its allocation.
        let media = SocketAddr::from(([127, 0, 0, 1], server.media_port));
        let reply = early.permission(media).await?;
        ensure!(
            reply.stale_nonce,
            "the early nonce was not evicted: {reply:?}"
        );
        ensure!(
            reply.class == MessageClass::Success,
            "permission after 438: {reply:?}"
        );
        ensure!(early.nonce() != early_nonce, "438 brought the old nonce");

        // And a new client with valid credentials, after the flood.
        let mut after = Client::udp(udp, &ice.username, &ice.credential).await?;
        let reply = after.allocate().await?;
        ensure!(
            reply.class == MessageClass::Success,
            "allocate after the flood: {reply:?}"
        );
        anyhow::Ok(took)
    })
    .await
    .context("the nonce flood test did not finish in 60 s")??;
    let log = without_colours(&server.log());
    let full = log
        .lines()
        .find(|l| l.contains("TURN nonce table full"))
        .context("the full nonce table is logged")?;
    ensure!(
        full.contains(&format!("kept={MAX_NONCES}")),
        "the table holds {MAX_NONCES} nonces when the first is evicted: {full}"
    );
    eprintln!("{FLOOD} source addresses flooded in {flood_took:?}");
    server.pass();
    Ok(())
}
