//! A throwaway OpenLDAP server for tests: Debian's `slapd` with an MDB database in a
//! temporary directory, seeded from an LDIF with `slapadd`, listening on a free loopback
//! port with StartTLS (a certificate for 127.0.0.1 from a CA made here). Killed and deleted
//! on drop.
//!
//! Needs Debian's `slapd` package (`./scripts/test.sh` installs it).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub(crate) struct Slapd {
    dir: PathBuf,
    child: Child,
    /// `ldap://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// PEM of the CA that signed the server's certificate.
    pub(crate) ca_file: PathBuf,
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

const SCHEMAS: [&str; 4] = ["core", "cosine", "inetorgperson", "nis"];

impl Slapd {
    /// Starts slapd with suffix `suffix`, seeded with `ldif`; returns once it accepts
    /// connections.
    pub(crate) fn start(suffix: &str, ldif: &str) -> anyhow::Result<Slapd> {
        let slapd = Path::new("/usr/sbin/slapd");
        if !slapd.exists() {
            bail!("slapd is not installed (apt-get install slapd ldap-utils)");
        }
        let dir = std::env::temp_dir().join(format!(
            "veche-slapd-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("db"))?;
        let ca_file = write_certificates(&dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut conf = String::new();
        for schema in SCHEMAS {
            conf.push_str(&format!("include /etc/ldap/schema/{schema}.schema\n"));
        }
        conf.push_str(&format!(
            "pidfile {dir}/slapd.pid\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             TLSCACertificateFile {dir}/ca.pem\n\
             TLSCertificateFile {dir}/server.pem\n\
             TLSCertificateKeyFile {dir}/server-key.pem\n\
             database mdb\n\
             maxsize 16777216\n\
             suffix \"{suffix}\"\n\
             rootdn \"cn=root,{suffix}\"\n\
             rootpw root-password\n\
             directory {dir}/db\n\
             access to attrs=userPassword by anonymous auth by self read by * none\n\
             access to * by dn.exact=\"cn=reader,{suffix}\" read by self read by * none\n",
            dir = dir.display()
        ));
        let conf_path = dir.join("slapd.conf");
        std::fs::write(&conf_path, conf)?;
        let ldif_path = dir.join("seed.ldif");
        std::fs::write(&ldif_path, ldif)?;
        let out = Command::new("/usr/sbin/slapadd")
            .arg("-f")
            .arg(&conf_path)
            .arg("-l")
            .arg(&ldif_path)
            .output()
            .context("running slapadd")?;
        if !out.status.success() {
            bail!(
                "slapadd failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let url = format!("ldap://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("slapd.log"))?;
        // `-d 0`: stay in the foreground (so the child is slapd itself), logging nothing.
        let child = Command::new(slapd)
            .arg("-f")
            .arg(&conf_path)
            .arg("-h")
            .arg(format!("{url}/"))
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting slapd")?;
        let mut server = Slapd {
            dir,
            child,
            url,
            ca_file,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!("slapd exited with {status}:\n{}", server.log());
            }
            if Instant::now() > deadline {
                bail!("slapd not listening after 20 s:\n{}", server.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("slapd.log")).unwrap_or_default()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`; the
/// CA's path.
fn write_certificates(dir: &Path) -> anyhow::Result<PathBuf> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&key, &ca)?;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem())?;
    std::fs::write(dir.join("server.pem"), cert.pem())?;
    std::fs::write(dir.join("server-key.pem"), key.serialize_pem())?;
    Ok(ca_file)
}
