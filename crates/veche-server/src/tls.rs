//! HTTPS: the operator's certificate, or a self-signed one kept in the data directory.
//!
//! Browsers grant camera and microphone only to secure contexts (https, or http on
//! localhost), so a server reachable from other machines needs TLS even before the operator
//! has a real certificate. The self-signed one is generated once and reused, so browsers that
//! accepted it keep accepting it after a restart.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

use crate::config::Tls;

const SELF_SIGNED_CERT: &str = "self-signed-cert.pem";
const SELF_SIGNED_KEY: &str = "self-signed-key.pem";

/// The certificate and key files to serve, generating the self-signed pair if needed.
/// `None` means plain HTTP.
pub(crate) fn resolve(
    tls: &Tls,
    data_dir: &Path,
    http: SocketAddr,
    public_ips: &[IpAddr],
) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    match tls {
        Tls::Off => Ok(None),
        Tls::Files { cert, key } => Ok(Some((cert.clone(), key.clone()))),
        Tls::SelfSigned => {
            let dir = data_dir.join("tls");
            let cert = dir.join(SELF_SIGNED_CERT);
            let key = dir.join(SELF_SIGNED_KEY);
            if cert.exists() && key.exists() {
                info!(cert = %cert.display(), "reusing the self-signed TLS certificate");
            } else {
                let names = subject_names(http, public_ips);
                generate_self_signed(&cert, &key, names.clone())?;
                info!(cert = %cert.display(), ?names, "generated a self-signed TLS certificate");
            }
            warn!(
                "serving HTTPS with a self-signed certificate: browsers will warn once per \
                 device; pass --tls-cert and --tls-key to use a real one"
            );
            Ok(Some((cert, key)))
        }
    }
}

/// A rustls server config for the pair, with the crypto provider named explicitly rather than
/// taken from process-wide state.
pub(crate) fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing TLS certificate {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("no certificate found in {}", cert.display());
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading TLS private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .context("TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `localhost` plus every address the server may be reached at.
fn subject_names(http: SocketAddr, public_ips: &[IpAddr]) -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    let ips = std::iter::once(http.ip())
        .chain(public_ips.iter().copied())
        .filter(|ip| !ip.is_unspecified());
    for ip in ips {
        let name = ip.to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

fn generate_self_signed(cert: &Path, key: &Path, names: Vec<String>) -> anyhow::Result<()> {
    let certified =
        rcgen::generate_simple_self_signed(names).context("generating a self-signed cert")?;
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // The key first and private to the owner; the certificate is public anyway.
    write_file(key, certified.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_file(cert, certified.cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("veche-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn self_signed_is_generated_once_and_loads() {
        let dir = temp_dir("gen");
        let http: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        let ips = ["192.0.2.7".parse().unwrap()];
        let (cert, key) = resolve(&Tls::SelfSigned, &dir, http, &ips)
            .unwrap()
            .unwrap();
        let first = std::fs::read(&cert).unwrap();
        server_config(&cert, &key).unwrap();

        let again = resolve(&Tls::SelfSigned, &dir, http, &ips)
            .unwrap()
            .unwrap();
        assert_eq!(again, (cert.clone(), key));
        assert_eq!(
            std::fs::read(&cert).unwrap(),
            first,
            "reused, not regenerated"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn plain_http_needs_nothing() {
        let http: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(
            resolve(&Tls::Off, Path::new("/nonexistent"), http, &[])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn names_skip_unspecified_and_duplicates() {
        let names = subject_names(
            "0.0.0.0:1".parse().unwrap(),
            &["10.1.2.3".parse().unwrap(), "10.1.2.3".parse().unwrap()],
        );
        assert_eq!(names, vec!["localhost", "10.1.2.3"]);
    }

    #[test]
    fn missing_files_are_a_clear_error() {
        let err = server_config(Path::new("/no/cert.pem"), Path::new("/no/key.pem")).unwrap_err();
        assert!(format!("{err:#}").contains("/no/cert.pem"));
    }
}
