//! Shared harness for the integration tests: the real `veche` binary on free loopback ports,
//! synthetic participants, and checks on the media they exchange.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs::File;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use veche_load::{ParticipantOptions, Stats, SyntheticParticipant};
use veche_proto::{ParticipantId, ServerMessage, TrackKind};

/// Generous: the test machine has two cores shared with other builds.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The `veche` binary, started on free ports with its own data directory; killed on drop,
/// and its log printed if the test is failing.
pub(crate) struct Server {
    child: Child,
    pub(crate) http: SocketAddr,
    pub(crate) media_port: u16,
    dir: PathBuf,
    log: PathBuf,
    /// The flags after the standard ones, for [`Server::kill_9_and_restart`].
    extra: Vec<String>,
    /// Set by [`Server::pass`]; a server dropped without it prints its log.
    passed: bool,
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

impl Server {
    pub(crate) async fn start() -> anyhow::Result<Server> {
        Server::start_with(&[]).await
    }

    /// Starts the server with `extra` flags after the standard ones.
    pub(crate) async fn start_with(extra: &[&str]) -> anyhow::Result<Server> {
        init_client_tracing();
        let http = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()?));
        let media_port = free_udp_port()?;
        let dir = std::env::temp_dir().join(format!(
            "veche-test-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).context("creating the data dir")?;
        let log = dir.join("veche.log");
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let child = spawn(http, media_port, &dir, &log, &extra)?;
        let mut server = Server {
            child,
            http,
            media_port,
            dir,
            log,
            extra,
            passed: false,
        };
        server.wait_healthy().await?;
        Ok(server)
    }

    /// SIGKILL (no shutdown, no goodbye), then the binary again on the same ports, data
    /// directory and flags; returns once it is healthy.
    pub(crate) async fn kill_9_and_restart(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        self.child = spawn(
            self.http,
            self.media_port,
            &self.dir,
            &self.log,
            &self.extra,
        )?;
        self.wait_healthy().await
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "veche exited with {status} before becoming healthy:\n{}",
                    self.log()
                );
            }
            if let Ok(200) = self.healthz().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("veche not healthy after 30 s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }

    /// The status code of `GET /healthz`.
    pub(crate) async fn healthz(&self) -> anyhow::Result<u16> {
        let (status, _) = self.get("/healthz").await?;
        Ok(status)
    }

    /// A plain HTTP/1.1 GET: status code and body.
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        self.request("GET", path, None, None).await
    }

    /// The data directory (for `veche admin`).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A plain HTTP/1.1 request with an optional bearer token and JSON body: status code
    /// and body.
    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        json: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        let mut stream = TcpStream::connect(self.http).await?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.http
        );
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        match json {
            Some(body) => request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )),
            None => request.push_str("\r\n"),
        }
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
            .await
            .context("reading the HTTP response")??;
        let response = String::from_utf8_lossy(&response);
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no status line in {response:?}"))?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// One value from `GET /metrics` (Prometheus text format).
    pub(crate) async fn metric(&self, name: &str) -> anyhow::Result<u64> {
        let (status, body) = self.get("/metrics").await?;
        ensure!(status == 200, "/metrics answered {status}");
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .with_context(|| format!("no {name} in /metrics:\n{body}"))?
            .trim()
            .parse()
            .with_context(|| format!("{name} is not a number"))
    }

    /// The server's process id (for `/proc/PID/status`).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Marks the test as passed: the log is not printed on drop (unless `VECHE_TEST_LOG` is
    /// set). A test that returns an error early never gets here and so shows the log.
    pub(crate) fn pass(mut self) {
        self.passed = true;
    }

    /// Everything the server has logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.passed || std::thread::panicking() || std::env::var_os("VECHE_TEST_LOG").is_some()
        {
            eprintln!(
                "===== veche log =====\n{}\n===== end of veche log =====",
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `veche serve` with the standard flags and `extra`, logging to `log` (appended, so
/// a restart keeps the first run's log).
fn spawn(
    http: SocketAddr,
    media_port: u16,
    dir: &std::path::Path,
    log: &std::path::Path,
    extra: &[String],
) -> anyhow::Result<Child> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .context("opening the log file")?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_veche"));
    cmd.arg("serve")
        .args(["--http", &http.to_string()])
        .args(["--media-port", &media_port.to_string()])
        .args(["--public-ip", "127.0.0.1"]);
    // The TCP ports of the media port's numbers may be taken (by another test's HTTP port):
    // free ICE-TCP ports unless the test picks them.
    if !extra.iter().any(|a| a == "--ice-tcp-port") {
        cmd.args(["--ice-tcp-port", "0"]);
    }
    cmd.arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .context("starting veche")
}

/// Client-side (synthetic participant, str0m) logs on the test's output, filtered by
/// `VECHE_CLIENT_LOG` (e.g. `veche_load=debug,str0m=debug`); off when unset.
fn init_client_tracing() {
    if let Ok(filter) = std::env::var("VECHE_CLIENT_LOG") {
        // Fails only if another test in this binary installed it first, which is fine.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A free UDP port followed by enough free ones for every media shard (one per CPU by
/// default, each on the next port).
fn free_udp_port() -> anyhow::Result<u16> {
    let shards = std::thread::available_parallelism().map_or(1, |n| n.get()) as u16;
    for _ in 0..100 {
        let first = UdpSocket::bind("127.0.0.1:0")?;
        let port = first.local_addr()?.port();
        let rest: Result<Vec<_>, _> = (1..shards)
            .map(|i| UdpSocket::bind(("127.0.0.1", port.wrapping_add(i))))
            .collect();
        if rest.is_ok() && port.checked_add(shards).is_some() {
            return Ok(port);
        }
    }
    bail!("no run of {shards} free UDP ports found")
}

/// A `kB` field of `/proc/PID/status`, in MiB.
pub(crate) fn proc_status_mib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb / 1024)
}

/// Joins `room` as `name` and waits for media to connect.
pub(crate) async fn join_connected(
    server: &Server,
    room: &str,
    name: &str,
    opts: ParticipantOptions,
) -> anyhow::Result<SyntheticParticipant> {
    let p = SyntheticParticipant::join(&server.ws_url(), room, name, opts)
        .await
        .with_context(|| format!("{name} joining {room}"))?;
    p.wait_connected(CONNECT_TIMEOUT)
        .await
        .with_context(|| format!("{name} connecting media"))?;
    Ok(p)
}

/// Waits until every participant has received at least `audio` audio and `video` video
/// packets from every other one.
pub(crate) async fn wait_mesh(
    ps: &[&SyntheticParticipant],
    audio: u64,
    video: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    for p in ps {
        let others: Vec<ParticipantId> =
            ps.iter().map(|o| o.id()).filter(|o| *o != p.id()).collect();
        p.wait_for(timeout, |s| {
            others.iter().all(|o| {
                s.packets_from(*o, TrackKind::Audio) >= audio
                    && s.packets_from(*o, TrackKind::Video) >= video
            })
        })
        .await
        .with_context(|| {
            format!(
                "participant {} receiving {audio} audio and {video} video packets from each of \
                 {others:?}; has {}",
                p.id(),
                summary(&p.stats())
            )
        })?;
    }
    Ok(())
}

/// Checks that nothing `p` received was reordered, misattributed or untagged, and that every
/// track arrived on the mid `track_published` announced for it.
pub(crate) fn assert_clean(p: &SyntheticParticipant) -> anyhow::Result<()> {
    let s = p.stats();
    ensure!(
        s.untagged == 0,
        "{} untagged packets at {}",
        s.untagged,
        p.id()
    );
    ensure!(
        s.unknown_mid == 0,
        "{} packets at {} on a mid no track_published announced",
        s.unknown_mid,
        p.id()
    );
    for ((origin, kind), t) in &s.received {
        ensure!(
            t.disorder() == 0,
            "participant {} got disordered media from {origin} {kind:?}: {t:?}",
            p.id()
        );
    }
    Ok(())
}

/// Longest silence tolerated on a flowing track. Audio comes every 20 ms and video every
/// 33 ms; an interruption by renegotiation or a stuck server shows as seconds, while a busy
/// two-core test machine can delay a packet by a few hundred milliseconds.
pub(crate) const MAX_GAP: Duration = Duration::from_millis(500);

/// Checks that `receiver`'s audio and video from each of `senders` never paused longer than
/// [`MAX_GAP`] since they started, up to now: media never stopped, not even for a moment.
pub(crate) fn assert_no_gap(
    receiver: &SyntheticParticipant,
    senders: &[&SyntheticParticipant],
) -> anyhow::Result<()> {
    let stats = receiver.stats();
    let mut worst = Duration::ZERO;
    for sender in senders {
        for kind in [TrackKind::Audio, TrackKind::Video] {
            let track = stats.from(sender.id(), kind);
            let since_last = track.last_at.map_or(Duration::MAX, |t| t.elapsed());
            let gap = track.max_gap.max(since_last);
            worst = worst.max(gap);
            ensure!(
                gap <= MAX_GAP,
                "{}'s {kind:?} from {} paused for {gap:?}",
                receiver.id(),
                sender.id()
            );
        }
    }
    eprintln!(
        "longest pause in what {} received: {worst:?}",
        receiver.id()
    );
    Ok(())
}

/// The track a participant was told about, as `(publisher, kind)`.
pub(crate) fn published_tracks(p: &SyntheticParticipant) -> Vec<(ParticipantId, TrackKind)> {
    p.events()
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::TrackPublished {
                participant_id,
                kind,
                ..
            } => Some((participant_id, kind)),
            _ => None,
        })
        .collect()
}

/// A one-line view of received counts, for failure messages.
pub(crate) fn summary(s: &Stats) -> String {
    let mut parts: Vec<String> = s
        .received
        .iter()
        .map(|((o, k), t)| format!("{o}/{k:?}: {} pkts, {} kf", t.packets, t.keyframes))
        .collect();
    parts.sort();
    format!(
        "[{}] sent a{} v{} kf{} (requests {}), ended {:?}",
        parts.join("; "),
        s.sent.audio_packets,
        s.sent.video_packets,
        s.sent.keyframes,
        s.sent.keyframe_request_count,
        s.ended
    )
}
