//! Guessing attacks against the real binary, made as an attacker would: many requests at
//! once, from several source addresses (client sockets bound to other 127.x addresses). The
//! limits must hold under the race — no more verifications than the limit allows — and must
//! not become a weapon: the account's owner still gets in from their usual address, or with
//! their session, while an attacker elsewhere hammers the account. The races run on SQLite
//! and on PostgreSQL.

use crate::common;
use crate::from_address;
use crate::postgres;

use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::Server;
use from_address::{Reply, call, post_json, sign_up, tally};
use serde_json::json;

const VERIFICATIONS: &str = "veche_password_verifications_total";
/// The server's default `--lockout-failures`.
const LIMIT: u64 = 10;
const ALICE_PASSWORD: &str = "alice's long password";

fn addr(c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, c, d)
}

/// Runs `n` requests at once (each on its own task and connection).
async fn at_once<F, Fut>(n: usize, make: F) -> anyhow::Result<Vec<Reply>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<Reply>> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(make(i))).collect();
    let mut replies = Vec::with_capacity(n);
    for t in tasks {
        replies.push(t.await??);
    }
    Ok(replies)
}

fn login_body(email: &str, password: &str) -> serde_json::Value {
    json!({"email": email, "password": password})
}

/// Every refusal says when to come back.
fn check_refusals(replies: &[Reply]) -> anyhow::Result<()> {
    for r in replies.iter().filter(|r| r.status == 429) {
        ensure!(r.code() == "locked_out", "429 with {}", r.body);
        ensure!(r.header("retry-after").is_some(), "429 without Retry-After");
    }
    Ok(())
}

/// 100 wrong logins, 40 wrong passcodes and 15 wrong current passwords, each batch sent at
/// once from one attacking address.
async fn parallel_guesses(extra: &[&str]) -> anyhow::Result<()> {
    let server = Server::start_with(extra).await?;
    let http = server.http;
    let home = addr(0, 2);
    let token = sign_up(http, home, "alice@example.org", ALICE_PASSWORD).await?;

    // Logins: at most LIMIT of the 100 are verified; every verified one answers 401 and
    // every other one 429 — none slipped past while the first ones were being verified.
    let attacker = addr(0, 66);
    let before = server.metric(VERIFICATIONS).await?;
    let replies = at_once(100, |i| async move {
        post_json(
            http,
            attacker,
            "/api/v1/auth/login",
            None,
            &login_body("alice@example.org", &format!("guess-{i}")),
        )
        .await
    })
    .await?;
    let verified = server.metric(VERIFICATIONS).await? - before;
    let counts = tally(&replies);
    eprintln!("100 parallel wrong logins: {verified} verified; answers {counts:?}");
    ensure!(
        (1..=LIMIT).contains(&verified),
        "{verified} logins verified"
    );
    ensure!(counts.get(&401).copied().unwrap_or(0) as u64 == verified);
    ensure!(counts.get(&401).unwrap_or(&0) + counts.get(&429).unwrap_or(&0) == 100);
    check_refusals(&replies)?;
    // The right password from the attacker's address is refused while it is locked...
    let r = post_json(
        http,
        attacker,
        "/api/v1/auth/login",
        None,
        &login_body("alice@example.org", ALICE_PASSWORD),
    )
    .await?;
    ensure!(
        r.status == 429,
        "right password while locked: {} {}",
        r.status,
        r.body
    );
    // ...and accepted from the owner's own address.
    let r = post_json(
        http,
        home,
        "/api/v1/auth/login",
        None,
        &login_body("alice@example.org", ALICE_PASSWORD),
    )
    .await?;
    ensure!(r.status == 200, "owner at home: {} {}", r.status, r.body);

    // Passcodes: the same for 40 guesses at a meeting's passcode.
    let meeting = post_json(
        http,
        home,
        "/api/v1/meetings",
        Some(&token),
        &json!({"title": "Board", "passcode": "246810"}),
    )
    .await?;
    ensure!(meeting.status == 201, "{}", meeting.body);
    let join = format!(
        "/api/v1/meetings/{}/join",
        meeting.body["id"].as_str().context("meeting id")?
    );
    let guesser = addr(0, 77);
    let before = server.metric(VERIFICATIONS).await?;
    let replies = at_once(40, |i| {
        let join = join.clone();
        async move {
            post_json(
                http,
                guesser,
                &join,
                None,
                &json!({"passcode": format!("{:06}", 100_000 + i)}),
            )
            .await
        }
    })
    .await?;
    let verified = server.metric(VERIFICATIONS).await? - before;
    let counts = tally(&replies);
    eprintln!("40 parallel wrong passcodes: {verified} verified; answers {counts:?}");
    ensure!(
        (1..=LIMIT).contains(&verified),
        "{verified} passcodes verified"
    );
    ensure!(counts.get(&401).copied().unwrap_or(0) as u64 == verified);
    ensure!(counts.get(&401).unwrap_or(&0) + counts.get(&429).unwrap_or(&0) == 40);
    check_refusals(&replies)?;
    let right = json!({"passcode": "246810"});
    let r = post_json(http, guesser, &join, None, &right).await?;
    ensure!(r.status == 429, "right passcode while locked: {}", r.status);
    // The meeting is not locked for everyone: a guest elsewhere with the passcode gets in
    // (after at most the slow-down's first second).
    let r = post_json(http, addr(0, 78), &join, None, &right).await?;
    ensure!(r.status == 200, "guest elsewhere: {} {}", r.status, r.body);

    // Password change with a stolen session: the same limits as login.
    let bob_home = addr(0, 3);
    let stolen = sign_up(http, bob_home, "bob@example.org", "bob's long password").await?;
    let thief = addr(0, 99);
    let before = server.metric(VERIFICATIONS).await?;
    let replies = at_once(15, |i| {
        let stolen = stolen.clone();
        async move {
            post_json(
                http,
                thief,
                "/api/v1/auth/password",
                Some(&stolen),
                &json!({"current_password": format!("guess-{i}"), "new_password": "mine now, all mine"}),
            )
            .await
        }
    })
    .await?;
    let verified = server.metric(VERIFICATIONS).await? - before;
    let counts = tally(&replies);
    eprintln!("15 parallel wrong current passwords: {verified} verified; answers {counts:?}");
    ensure!(verified <= LIMIT, "{verified} current passwords verified");
    ensure!(counts.get(&429).copied().unwrap_or(0) >= 5, "{counts:?}");
    check_refusals(&replies)?;
    let r = post_json(
        http,
        thief,
        "/api/v1/auth/password",
        Some(&stolen),
        &json!({"current_password": "bob's long password", "new_password": "mine now, all mine"}),
    )
    .await?;
    ensure!(
        r.status == 429,
        "right current password from the thief: {}",
        r.status
    );
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_are_limited_on_sqlite() -> anyhow::Result<()> {
    parallel_guesses(&[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_are_limited_on_postgres() -> anyhow::Result<()> {
    let pg = tokio::task::spawn_blocking(postgres::Postgres::start).await??;
    let url = pg.new_database()?;
    parallel_guesses(&["--database", &url]).await
}

/// An attacker on twenty addresses hammers Alice's account with wrong passwords; meanwhile
/// Alice signs in from her usual address, and with her session from a new one, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_gets_in_while_an_attacker_hammers() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let http = server.http;
    let home = addr(0, 2);
    let session = sign_up(http, home, "alice@example.org", ALICE_PASSWORD).await?;

    // Forty attackers, two on each of twenty addresses, each guessing as fast as it is
    // answered until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..40u8)
        .map(|i| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let from = addr(1, i % 20 + 1);
                let mut replies = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let guess = login_body("alice@example.org", &format!("guess-{i}-{n}"));
                    replies.push(post_json(http, from, "/api/v1/auth/login", None, &guess).await?);
                    n += 1;
                }
                anyhow::Ok(replies)
            })
        })
        .collect();
    // Let the attack exhaust the account's allowance first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for attempt in 0..3 {
        let started = Instant::now();
        let r = post_json(
            http,
            home,
            "/api/v1/auth/login",
            None,
            &login_body("alice@example.org", ALICE_PASSWORD),
        )
        .await?;
        eprintln!(
            "owner at home, attempt {attempt}: {} in {:?}",
            r.status,
            started.elapsed()
        );
        ensure!(
            r.status == 200,
            "owner at home refused: {} {}",
            r.status,
            r.body
        );
        ensure!(
            started.elapsed() < Duration::from_secs(5),
            "owner at home delayed"
        );
        // With her session, from an address the account has never used.
        let started = Instant::now();
        let r = post_json(
            http,
            addr(0, 30 + attempt),
            "/api/v1/auth/login",
            Some(&session),
            &login_body("alice@example.org", ALICE_PASSWORD),
        )
        .await?;
        ensure!(
            r.status == 200,
            "owner with session refused: {} {}",
            r.status,
            r.body
        );
        ensure!(
            started.elapsed() < Duration::from_secs(5),
            "owner with session delayed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut replies = Vec::new();
    for a in attackers {
        replies.extend(a.await??);
    }
    let counts = tally(&replies);
    let verified = server.metric(VERIFICATIONS).await?;
    eprintln!(
        "attack: {} requests, answers {counts:?}; {verified} verifications in all",
        replies.len()
    );
    ensure!(!counts.contains_key(&200), "the attacker got in");
    ensure!(
        counts.get(&429).copied().unwrap_or(0) > replies.len() / 2,
        "{counts:?}"
    );
    check_refusals(&replies)?;
    server.pass();
    Ok(())
}

/// `co_hosts` names only members of the caller's organisation; an address with no account
/// and one in another organisation get the same answer, and misses are rate-limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn co_hosts_do_not_reveal_accounts() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let http = server.http;
    let alice = sign_up(http, addr(0, 2), "alice@example.org", ALICE_PASSWORD).await?;
    sign_up(http, addr(0, 3), "bob@example.org", "bob's long password").await?;
    let me = call(
        http,
        addr(0, 2),
        "GET",
        "/api/v1/auth/me",
        Some(&alice),
        None,
        "",
    )
    .await?;
    let org = me.body["user"]["org_id"]
        .as_str()
        .context("org id")?
        .to_owned();
    let carol = post_json(
        http,
        addr(0, 2),
        &format!("/api/v1/orgs/{org}/members"),
        Some(&alice),
        &json!({"email": "carol@example.org", "name": "Carol", "password": "carol's long password"}),
    )
    .await?;
    ensure!(carol.status == 201, "{}", carol.body);
    let create = |co_host: &str| {
        let alice = alice.clone();
        let body = json!({"title": "Sync", "co_hosts": [co_host]});
        async move { post_json(http, addr(0, 2), "/api/v1/meetings", Some(&alice), &body).await }
    };
    let elsewhere = create("bob@example.org").await?;
    let nobody = create("nobody@example.org").await?;
    ensure!(elsewhere.status == 400 && nobody.status == 400);
    let normalised = |r: &Reply, email: &str| r.body.to_string().replace(email, "EMAIL");
    ensure!(
        normalised(&elsewhere, "bob@example.org") == normalised(&nobody, "nobody@example.org"),
        "different answers: {} / {}",
        elsewhere.body,
        nobody.body
    );
    let ok = create("carol@example.org").await?;
    ensure!(ok.status == 201, "{}", ok.body);
    ensure!(ok.body["co_hosts"] == json!([carol.body["id"]]));
    // Misses are limited: two so far, eight more, then refused — even a real colleague.
    for _ in 0..8 {
        ensure!(create("someone@example.org").await?.status == 400);
    }
    let r = create("carol@example.org").await?;
    ensure!(
        r.status == 429 && r.code() == "locked_out",
        "{} {}",
        r.status,
        r.body
    );
    server.pass();
    Ok(())
}

/// Another site can make a visitor's browser POST `text/plain` (no preflight): a join with
/// such a body is refused before any passcode is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_text_plain_join_is_refused() -> anyhow::Result<()> {
    let server = Server::start().await?;
    let http = server.http;
    let home = addr(0, 2);
    let token = sign_up(http, home, "alice@example.org", ALICE_PASSWORD).await?;
    let meeting = post_json(
        http,
        home,
        "/api/v1/meetings",
        Some(&token),
        &json!({"title": "Board", "passcode": "246810"}),
    )
    .await?;
    let join = format!(
        "/api/v1/meetings/{}/join",
        meeting.body["id"].as_str().context("meeting id")?
    );
    let before = server.metric(VERIFICATIONS).await?;
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        let r = call(
            http,
            addr(0, 9),
            "POST",
            &join,
            None,
            Some(ct),
            r#"{"passcode":"000000"}"#,
        )
        .await?;
        ensure!(r.status == 415, "{ct}: {} {}", r.status, r.body);
        ensure!(r.code() == "unsupported_media_type");
    }
    ensure!(
        server.metric(VERIFICATIONS).await? == before,
        "a passcode was checked"
    );
    // The same body as JSON is checked (and wrong).
    let r = post_json(
        http,
        addr(0, 9),
        &join,
        None,
        &json!({"passcode": "000000"}),
    )
    .await?;
    ensure!(
        r.status == 401 && r.code() == "wrong_passcode",
        "{}",
        r.body
    );
    server.pass();
    Ok(())
}
