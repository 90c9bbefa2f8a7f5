//! The built-in TURN server (RFC 8656) of `veche serve`: a UDP listener and a TLS-over-TCP
//! listener, relaying to Veche's own media sockets only, with the TURN REST credentials of
//! [`crate::turn`]. The protocol is `turn-server-proto` (sans-IO); the relay policy is in
//! [`relay`], the sockets in [`io`]. See docs/deploy.md for how to run it.

mod framing;
mod io;
mod relay;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;
use tracing::info;

use self::io::ConnectionLimits;
use self::relay::{Listener, RelayCore};
pub(crate) use self::relay::{MIN_NONCE_EXPIRY, RelayLimits};
use crate::turn::TurnRest;

/// The default ports: IANA's for TURN and TURN over TLS (RFC 8656 §18).
pub(crate) const DEFAULT_UDP_PORT: u16 = 3478;
pub(crate) const DEFAULT_TLS_PORT: u16 = 5349;

const SECRET_FILE: &str = "turn-secret";

/// Settings of the built-in TURN server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuiltinTurn {
    pub(crate) udp: SocketAddr,
    pub(crate) tls: SocketAddr,
    /// The host name or IP put in the `turn:`/`turns:` URLs (for TLS, the certificate's
    /// name); `None`: the listener's IP, or the first public IP when it listens on all.
    pub(crate) host: Option<String>,
    pub(crate) limits: RelayLimits,
}

/// A running built-in TURN server; stops when dropped.
#[derive(Debug)]
pub(crate) struct RunningTurn {
    pub(crate) udp: SocketAddr,
    pub(crate) tls: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RunningTurn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BuiltinTurn {
    /// Binds both listeners and starts relaying to `media` (Veche's media addresses as
    /// browsers see them) from relay sockets on `relay_ip`.
    pub(crate) async fn start(
        &self,
        rest: TurnRest,
        tls_config: Arc<rustls::ServerConfig>,
        media: Vec<SocketAddr>,
        relay_ip: IpAddr,
    ) -> anyhow::Result<RunningTurn> {
        let udp = UdpSocket::bind(self.udp)
            .await
            .with_context(|| format!("binding the TURN UDP listener on {}", self.udp))?;
        let tls = TcpListener::bind(self.tls)
            .await
            .with_context(|| format!("binding the TURN TLS listener on {}", self.tls))?;
        let udp_addr = udp.local_addr()?;
        let tls_addr = tls.local_addr()?;
        // TURN is not HTTP: no ALPN, which a browser's TURN client does not offer anyway.
        let mut tls_config = (*tls_config).clone();
        tls_config.alpn_protocols.clear();
        let core = RelayCore::new(
            &[(Listener::Udp, udp_addr), (Listener::Tls, tls_addr)],
            rest,
            media.iter().copied(),
            self.limits,
        );
        let limits = ConnectionLimits {
            max: self.limits.max_allocations,
            max_per_ip: self.limits.max_allocations_per_ip,
        };
        let task = tokio::spawn(io::run(
            core,
            udp,
            tls,
            TlsAcceptor::from(Arc::new(tls_config)),
            relay_ip,
            limits,
        ));
        info!(udp = %udp_addr, tls = %tls_addr, relays_to = ?media, "built-in TURN server ready");
        Ok(RunningTurn {
            udp: udp_addr,
            tls: tls_addr,
            task,
        })
    }
}

impl RunningTurn {
    /// The URLs handed to browsers: TURN over UDP, then over TLS.
    pub(crate) fn urls(&self, host: Option<&str>, public_ips: &[IpAddr]) -> Vec<String> {
        let name = |addr: SocketAddr| match host {
            Some(h) => h.to_owned(),
            None => {
                let ip = if addr.ip().is_unspecified() {
                    public_ips
                        .iter()
                        .copied()
                        .find(|ip| ip.is_ipv4() == addr.is_ipv4())
                        .unwrap_or(addr.ip())
                } else {
                    addr.ip()
                };
                match ip {
                    IpAddr::V4(v4) => v4.to_string(),
                    IpAddr::V6(v6) => format!("[{v6}]"),
                }
            }
        };
        vec![
            format!("turn:{}:{}?transport=udp", name(self.udp), self.udp.port()),
            format!("turns:{}:{}?transport=tcp", name(self.tls), self.tls.port()),
        ]
    }
}

/// The TURN REST secret kept in the data directory, generated on first use.
pub(crate) fn stored_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 16 => return Ok(s.trim().to_owned()),
        Ok(_) => anyhow::bail!("{} holds no usable secret; delete it", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write as _;
    options
        .open(&path)
        .and_then(|mut f| f.write_all(secret.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    info!(path = %path.display(), "generated the TURN secret");
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_generated_once() {
        let dir = std::env::temp_dir().join(format!("veche-turn-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let first = stored_secret(&dir).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(stored_secret(&dir).unwrap(), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
