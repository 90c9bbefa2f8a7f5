//! HTTP/1.1 requests to the real binary from a chosen loopback address: the client socket
//! is bound to `127.x.y.z` before connecting, so the server sees that address as the
//! request's source (all of 127.0.0.0/8 is loopback on Linux).

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Long enough for the slow-down's longest wait (10 s by default) on a loaded machine.
const REPLY_TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    /// The raw header block, lower-cased.
    headers: String,
    pub(crate) body: Value,
}

impl Reply {
    /// The API error code (`{"error": {"code": ...}}`), or "".
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The value of header `name` (lower-case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            (n.trim() == name).then(|| v.trim())
        })
    }
}

/// One request to `http` from `from`: optional bearer token, content type and body.
pub(crate) async fn call(
    http: SocketAddr,
    from: Ipv4Addr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> anyhow::Result<Reply> {
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::from((from, 0)))
        .with_context(|| format!("binding to {from}"))?;
    let mut stream = socket.connect(http).await.context("connecting")?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(ct) = content_type {
        request.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    // The server may answer (and close) before reading all of an oversized body; the
    // answer is what counts, so a failed write is not an error by itself.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(REPLY_TIMEOUT, stream.read_to_end(&mut response))
        .await
        .context("no answer in time")?;
    if let Err(e) = read {
        ensure!(!response.is_empty(), "reading the answer: {e}");
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {head:?}"))?;
    let body = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).with_context(|| format!("not JSON: {body:?}"))?
    };
    Ok(Reply {
        status,
        headers: head.to_lowercase(),
        body,
    })
}

/// `call` with a JSON body.
pub(crate) async fn post_json(
    http: SocketAddr,
    from: Ipv4Addr,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> anyhow::Result<Reply> {
    call(
        http,
        from,
        "POST",
        path,
        token,
        Some("application/json"),
        &body.to_string(),
    )
    .await
}

/// Signs up `email` from `from`; its session token.
pub(crate) async fn sign_up(
    http: SocketAddr,
    from: Ipv4Addr,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let r = post_json(
        http,
        from,
        "/api/v1/auth/signup",
        None,
        &serde_json::json!({"email": email, "password": password, "name": "Tester"}),
    )
    .await?;
    ensure!(r.status == 201, "signup answered {}: {}", r.status, r.body);
    r.body["token"]
        .as_str()
        .map(str::to_owned)
        .context("no token in the signup answer")
}

/// How many answers had each status code.
pub(crate) fn tally(replies: &[Reply]) -> std::collections::BTreeMap<u16, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for r in replies {
        *counts.entry(r.status).or_insert(0) += 1;
    }
    counts
}
