//! A throwaway SMTP server for tests: aiosmtpd (Python's RFC 5321 server, the one its
//! standard library points to since `smtpd` was removed) on a free loopback port, storing
//! every message it accepts in a Maildir in a temporary directory, with the envelope's
//! sender and recipients as `X-MailFrom` / `X-RcptTo` headers (its `Mailbox` handler).
//! Killed and deleted on drop.
//!
//! Needs `python3` and the `aiosmtpd` package (`./scripts/test.sh` installs them): without
//! them the test fails rather than skips.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub(crate) struct Smtpd {
    dir: PathBuf,
    child: Child,
    pub(crate) addr: SocketAddr,
}

/// One message the server accepted.
#[derive(Debug, Clone)]
pub(crate) struct Mail {
    /// The envelope's `MAIL FROM`.
    pub(crate) from: String,
    /// The envelope's `RCPT TO`s.
    pub(crate) to: Vec<String>,
    /// The message as stored (the server's `X-` headers first).
    pub(crate) data: Vec<u8>,
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

impl Smtpd {
    /// Starts the server; returns once it accepts connections.
    pub(crate) fn start() -> anyhow::Result<Smtpd> {
        let dir = std::env::temp_dir().join(format!(
            "veche-smtpd-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = std::fs::File::create(dir.join("smtpd.log"))?;
        // `-n`: do not switch to `nobody` (the tests may run as root, and the Maildir is ours).
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(addr.to_string())
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.join("maildir"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting python3 -m aiosmtpd (scripts/test.sh installs it)")?;
        let mut server = Smtpd { dir, child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "aiosmtpd exited with {status} (is it installed? `pip install aiosmtpd`):\n{}",
                    server.log()
                );
            }
            if Instant::now() > deadline {
                bail!("aiosmtpd not listening after 20 s:\n{}", server.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("smtpd.log")).unwrap_or_default()
    }

    /// Every message delivered so far, oldest first.
    pub(crate) fn mails(&self) -> anyhow::Result<Vec<Mail>> {
        let new = self.dir.join("maildir").join("new");
        let mut files: Vec<_> = match std::fs::read_dir(&new) {
            Ok(entries) => entries
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        // Maildir names start with the delivery time in seconds, then finer parts.
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let data = std::fs::read(&path)?;
                let text = String::from_utf8_lossy(&data);
                let header = |name: &str| {
                    text.lines()
                        .take_while(|l| !l.is_empty())
                        .find_map(|l| l.strip_prefix(name).map(str::trim))
                        .map(str::to_owned)
                        .with_context(|| format!("no {name} in {}", path.display()))
                };
                let from = header("X-MailFrom:")?;
                let to = header("X-RcptTo:")?
                    .split(", ")
                    .map(str::to_owned)
                    .collect();
                Ok(Mail { from, to, data })
            })
            .collect()
    }

    /// Waits (20 s at most) until `n` messages have been delivered; returns them.
    pub(crate) async fn wait_for(&self, n: usize) -> anyhow::Result<Vec<Mail>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mails = self.mails()?;
            if mails.len() >= n {
                return Ok(mails);
            }
            if Instant::now() > deadline {
                bail!(
                    "the SMTP server got {} messages, not {n}:\n{}",
                    mails.len(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
