//! The server's smaller defences, through the real binary: HSTS under TLS, database files
//! only the server's user can read, 413 in the API's JSON error format, the per-address
//! WebSocket cap, a restricted `/metrics`, and audit rows that survive a `kill -9` with the
//! actions they record.

use crate::common;
use crate::peer;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::Server;
use peer::{Peer, api, signup};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;

/// One raw HTTP/1.1 request over a fresh connection: status, head and body.
async fn raw(addr: SocketAddr, request: String) -> anyhow::Result<(u16, String, String)> {
    raw_with_body(addr, request, 0).await
}

/// [`raw`], then `extra` body bytes written alongside reading the answer (the server may
/// answer, and stop reading, before they are all sent).
async fn raw_with_body(
    addr: SocketAddr,
    request: String,
    extra: usize,
) -> anyhow::Result<(u16, String, String)> {
    let (mut stream, mut writer) = TcpStream::connect(addr).await?.into_split();
    writer.write_all(request.as_bytes()).await?;
    let writer_task = tokio::spawn(async move {
        let chunk = vec![b' '; 64 * 1024];
        let mut left = extra;
        while left > 0 {
            let n = left.min(chunk.len());
            if writer.write_all(&chunk[..n]).await.is_err() {
                break;
            }
            left -= n;
        }
        // Kept open until the reader is done.
        std::future::pending::<()>().await;
    });
    // Read the head and `Content-Length` bytes of body: a server that refused a body it
    // was promised may keep the connection open waiting for it.
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .context("reading the HTTP response")??;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    writer_task.abort();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {text:?}"))?;
    Ok((status, head.to_ascii_lowercase(), body.to_owned()))
}

/// A GET of `path` over TLS trusting only `root` (DER), with `localhost` as the name.
fn https_get(addr: SocketAddr, root: &[u8], path: &str) -> anyhow::Result<(u16, String)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(root.to_vec()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let sock = std::net::TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    // A peer that closes without close_notify ends the read with an error after the data.
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {text:?}"))?;
    Ok((status, head))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_under_tls_only() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("veche-hsts-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    std::fs::write(dir.join("cert.pem"), certified.cert.pem())?;
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem())?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let media = UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
    let http = SocketAddr::from(([127, 0, 0, 1], port));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_veche"))
        .arg("serve")
        .args([
            "--http",
            &http.to_string(),
            "--media-port",
            &media.to_string(),
        ])
        .args(["--media-shards", "1", "--public-ip", "127.0.0.1"])
        .args(["--ice-tcp-port", "0"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--tls-cert")
        .arg(dir.join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.join("key.pem"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let root = certified.cert.der().to_vec();
    let deadline = Instant::now() + Duration::from_secs(30);
    let result = loop {
        let root = root.clone();
        let got = tokio::task::spawn_blocking(move || https_get(http, &root, "/healthz")).await?;
        match got {
            Ok(r) => break Ok(r),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => break Err(e),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let (status, head) = result?;
    ensure!(status == 200, "/healthz over TLS answered {status}");
    ensure!(
        head.contains("\r\nstrict-transport-security: max-age=31536000"),
        "no HSTS header under TLS:\n{head}"
    );

    // Plain HTTP on loopback: no HSTS (it would pin a host that has no HTTPS).
    let plain = Server::start().await?;
    let (_, head, _) = raw(
        plain.http,
        format!(
            "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            plain.http
        ),
    )
    .await?;
    ensure!(
        !head.contains("strict-transport-security"),
        "HSTS over plain HTTP:\n{head}"
    );
    plain.pass();
    Ok(())
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_files_are_private_and_oversized_bodies_get_json_413() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start().await?;
    signup(&server, "someone@a.example").await?;
    for name in ["veche.db", "veche.db-wal", "veche.db-shm"] {
        let path = server.data_dir().join(name);
        let mode = std::fs::metadata(&path)
            .with_context(|| format!("{} missing", path.display()))?
            .permissions()
            .mode();
        ensure!(mode & 0o777 == 0o600, "{name} has mode {:o}", mode & 0o777);
    }

    // Bodies over the limit, on a body-taking JSON endpoint and on a raw-body one.
    for path in ["/api/v1/auth/login", "/api/v1/meetings/abc/join"] {
        const SIZE: usize = 3 * 1024 * 1024;
        let (status, head, body) = raw_with_body(
            server.http,
            format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                 Content-Length: {SIZE}\r\nConnection: close\r\n\r\n",
                server.http,
            ),
            SIZE,
        )
        .await?;
        ensure!(status == 413, "{path}: {status} {body}");
        ensure!(
            head.contains("content-type: application/json"),
            "{path}:\n{head}"
        );
        let v: Value = serde_json::from_str(&body).with_context(|| format!("{path}: {body}"))?;
        ensure!(v["error"]["code"] == "payload_too_large", "{path}: {body}");
    }
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connections_per_address_are_capped() -> anyhow::Result<()> {
    let server = Server::start_with(&["--max-ws-per-ip", "3"]).await?;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(Peer::connect(&server, None).await?);
    }
    // The fourth from the same address, in parallel with nothing: refused before upgrade.
    let refused = tokio_tungstenite::connect_async(server.ws_url()).await;
    match refused {
        Err(tungstenite::Error::Http(response)) => {
            ensure!(
                response.status() == 429,
                "fourth socket: {}",
                response.status()
            );
        }
        Err(e) => bail!("fourth socket failed unexpectedly: {e}"),
        Ok(_) => bail!("a fourth socket from one address was accepted"),
    }
    // A place frees once a socket closes.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Peer::connect(&server, None).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => bail!("no place after a socket closed: {e}"),
        }
    }
    server.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_restricted() -> anyhow::Result<()> {
    // Only from 10.0.0.0/8: the test connects from 127.0.0.1.
    let outside = Server::start_with(&["--metrics-allow", "10.0.0.0/8"]).await?;
    let (status, body) = outside.get("/metrics").await?;
    ensure!(
        status == 403,
        "/metrics from outside the range: {status} {body}"
    );
    ensure!(!body.contains("veche_rooms"), "metrics leaked: {body}");
    outside.pass();

    const TOKEN: &str = "metrics-token-0123456789";
    let tokened =
        Server::start_with(&["--metrics-allow", "127.0.0.0/8", "--metrics-token", TOKEN]).await?;
    let (status, _) = tokened.get("/metrics").await?;
    ensure!(status == 401, "/metrics without the token: {status}");
    let (status, _) = tokened
        .request("GET", "/metrics", Some("metrics-token-0123456788"), None)
        .await?;
    ensure!(status == 401, "/metrics with a wrong token: {status}");
    let (status, body) = tokened
        .request("GET", "/metrics", Some(TOKEN), None)
        .await?;
    ensure!(
        status == 200 && body.contains("veche_rooms"),
        "{status} {body}"
    );
    tokened.pass();
    Ok(())
}

/// `POST /api/v1/meetings` on a fresh connection: the new meeting's id on 201.
async fn create(addr: SocketAddr, token: &str, n: usize) -> anyhow::Result<Option<String>> {
    let body = json!({"title": format!("m{n}")}).to_string();
    let (status, _, text) = raw(
        addr,
        format!(
            "POST /api/v1/meetings HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await?;
    if status != 201 {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(&text)?;
    Ok(v["id"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_rows_survive_kill_9_with_their_actions() -> anyhow::Result<()> {
    let mut server = Server::start().await?;
    let (token, v) = signup(&server, "boss@a.example").await?;
    let org = v["org"]["id"].as_str().context("org id")?.to_owned();

    // Meetings created as fast as four clients can, and the binary killed in the middle:
    // some request is caught between its writes. Every meeting that exists afterwards must
    // have its audit row, and so must every one whose 201 arrived.
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (stop, created, token, addr) = (
            Arc::clone(&stop),
            Arc::clone(&created),
            token.clone(),
            server.http,
        );
        writers.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            let mut n = w * 100_000;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match create(addr, &token, n).await {
                    Ok(Some(id)) => {
                        answered.push(id);
                        created.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
            answered
        }));
    }
    // Killed once a couple of hundred are in (well inside one audit page).
    let deadline = Instant::now() + Duration::from_secs(30);
    while created.load(Ordering::Relaxed) < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill_9_and_restart().await?;
    stop.store(true, Ordering::Relaxed);
    let mut answered = Vec::new();
    for w in writers {
        answered.extend(w.await?);
    }
    ensure!(
        !answered.is_empty(),
        "no meeting was created before the kill"
    );

    let meetings = api(&server, "GET", "/meetings", Some(&token), Value::Null).await?;
    let stored: Vec<String> = meetings["meetings"]
        .as_array()
        .context("meetings")?
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    let audit = api(
        &server,
        "GET",
        &format!("/orgs/{org}/audit?limit=1000"),
        Some(&token),
        Value::Null,
    )
    .await?;
    let audited: Vec<String> = audit["entries"]
        .as_array()
        .context("entries")?
        .iter()
        .filter(|e| e["action"] == "meeting.create")
        .filter_map(|e| e["target"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        stored.len() < 1000,
        "too many meetings for one audit page: {}",
        stored.len()
    );
    for id in &answered {
        ensure!(stored.contains(id), "answered meeting {id} lost");
    }
    let missing: Vec<&String> = stored.iter().filter(|id| !audited.contains(id)).collect();
    ensure!(
        missing.is_empty(),
        "{} of {} meetings have no audit row after kill -9: {missing:?}",
        missing.len(),
        stored.len()
    );
    eprintln!(
        "{} meetings answered, {} stored, all audited, after kill -9",
        answered.len(),
        stored.len()
    );
    server.pass();
    Ok(())
}
