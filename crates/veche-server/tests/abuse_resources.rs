//! Resource attacks against the real binary: a flood of logins for unknown accounts (each
//! an Argon2 verification holding 19 MiB) must not grow the process without bound, and
//! oversized fields must be refused before they are stored or used as keys.

use crate::common;
use crate::from_address;

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::ensure;
use common::{Server, proc_status_mib};
use from_address::{Reply, post_json, sign_up, tally};
use serde_json::json;

/// Argon2id's memory per verification with the crate's default parameters.
const ARGON2_MIB: u64 = 19;
/// The hashing bound the flood runs against.
const HASH_CONCURRENCY: u64 = 2;
/// What 500 connections, their tasks and buffers may add besides the Argon2 memory.
const CONNECTIONS_SLACK_MIB: u64 = 64;

/// 500 logins for unknown emails at once, each from its own address (so no per-address
/// lockout helps): the peak RSS grows by at most the bound's Argon2 memory plus the
/// connections' own, and the requests beyond what the bound serves in time get 503 with
/// `Retry-After` in the API's error format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_keeps_memory_bounded() -> anyhow::Result<()> {
    let server = Server::start_with(&[
        "--hash-concurrency",
        &HASH_CONCURRENCY.to_string(),
        "--hash-wait-ms",
        "500",
    ])
    .await?;
    let http = server.http;
    // One verification first, so the peak includes what any login costs.
    let r = post_json(
        http,
        Ipv4Addr::new(127, 0, 0, 2),
        "/api/v1/auth/login",
        None,
        &json!({"email": "warm@example.org", "password": "warm up"}),
    )
    .await?;
    ensure!(r.status == 401, "{}", r.body);
    let before = proc_status_mib(server.pid(), "VmHWM")?;
    let tasks: Vec<_> = (0..500u32)
        .map(|i| {
            let from = Ipv4Addr::new(127, 0, 2 + (i / 250) as u8, (i % 250) as u8 + 1);
            let body = json!({"email": format!("nobody{i}@example.org"), "password": "guess"});
            tokio::spawn(
                async move { post_json(http, from, "/api/v1/auth/login", None, &body).await },
            )
        })
        .collect();
    let mut replies: Vec<Reply> = Vec::new();
    for t in tasks {
        replies.push(t.await??);
    }
    let peak = proc_status_mib(server.pid(), "VmHWM")?;
    let rss = proc_status_mib(server.pid(), "VmRSS")?;
    let counts = tally(&replies);
    let bound = HASH_CONCURRENCY * ARGON2_MIB + CONNECTIONS_SLACK_MIB;
    eprintln!(
        "500 unknown-email logins: answers {counts:?}; peak RSS {before} -> {peak} MiB \
         (bound +{bound} MiB), RSS now {rss} MiB"
    );
    ensure!(
        peak <= before + bound,
        "peak RSS grew by {} MiB",
        peak - before
    );
    ensure!(
        counts.get(&401).unwrap_or(&0) + counts.get(&503).unwrap_or(&0) == 500,
        "{counts:?}"
    );
    ensure!(
        counts.get(&503).copied().unwrap_or(0) > 0,
        "the bound never refused"
    );
    for r in replies.iter().filter(|r| r.status == 503) {
        ensure!(r.code() == "busy", "{}", r.body);
        ensure!(r.header("retry-after").is_some(), "503 without Retry-After");
    }
    let busy = server.metric("veche_password_hash_busy_total").await?;
    ensure!(
        busy as usize == counts[&503],
        "{busy} busy refusals counted"
    );
    server.pass();
    Ok(())
}

/// Bytes of the SQLite database and its WAL.
fn db_bytes(data: &Path) -> u64 {
    ["veche.db", "veche.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(data.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Logins with 1 MiB emails (the attack filled 44 MB of database and 46 MB of WAL with 20
/// of them) — a 413 in the API's error format, since such a body is over the body limit — and
/// fields just over their caps — each a 400 that says what is wrong; the database does not grow
/// by a byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_fields_are_refused_and_stored_nowhere() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let http = server.http;
    let home = Ipv4Addr::new(127, 0, 0, 2);
    let token = sign_up(http, home, "alice@example.org", "alice's long password").await?;
    let data = server.data_dir();
    let before = db_bytes(&data);
    let huge = format!("{}@example.org", "a".repeat(1 << 20));
    for _ in 0..20 {
        let r = post_json(
            http,
            home,
            "/api/v1/auth/login",
            None,
            &json!({"email": huge, "password": "x"}),
        )
        .await?;
        ensure!(r.status == 413, "1 MiB email: {} {}", r.status, r.body);
        let code = r.body["error"]["code"].as_str().unwrap_or("");
        ensure!(code == "payload_too_large", "unclear: {}", r.body);
    }
    // Under the body limit but over the field's: named and explained.
    let long = format!("{}@example.org", "a".repeat(300));
    let r = post_json(
        http,
        home,
        "/api/v1/auth/login",
        None,
        &json!({"email": long, "password": "x"}),
    )
    .await?;
    ensure!(r.status == 400, "{}", r.body);
    ensure!(
        r.body["error"]["message"] == "invalid email: must have at most 254 bytes",
        "{}",
        r.body
    );
    let cases = [
        (
            "/api/v1/auth/login",
            None,
            json!({"email": "a@example.org", "password": "p".repeat(1025)}),
        ),
        (
            "/api/v1/auth/signup",
            None,
            json!({"email": "b@example.org", "password": "long enough", "name": "n".repeat(101)}),
        ),
        (
            "/api/v1/auth/signup",
            None,
            json!({"email": "c@example.org", "password": "long enough", "name": "C", "org_name": "o".repeat(101)}),
        ),
        (
            "/api/v1/meetings",
            Some(&token),
            json!({"title": "t".repeat(201)}),
        ),
        (
            "/api/v1/meetings",
            Some(&token),
            json!({"title": "T", "passcode": "1".repeat(65)}),
        ),
        (
            "/api/v1/meetings",
            Some(&token),
            json!({"title": "T", "co_hosts": vec!["x@example.org"; 21]}),
        ),
    ];
    for (path, token, body) in cases {
        let r = post_json(http, home, path, token.map(String::as_str), &body).await?;
        ensure!(
            r.status == 400 && r.code() == "invalid_field",
            "{path}: {} {}",
            r.status,
            r.body
        );
    }
    let after = db_bytes(&data);
    eprintln!("database + WAL: {before} -> {after} bytes");
    ensure!(
        after == before,
        "the database grew by {} bytes",
        after - before
    );
    server.pass();
    Ok(())
}
