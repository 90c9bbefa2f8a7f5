//! A throwaway PostgreSQL server for tests: `initdb` into a temporary directory, `pg_ctl
//! start` on a free loopback port (and a unix socket in the same directory), one database per
//! test, stopped and deleted on drop.
//!
//! Needs Debian's `postgresql` package (`./scripts/test.sh` installs it). When the tests run
//! as root, the server runs as the `postgres` user, since PostgreSQL refuses to run as root.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail, ensure};

pub(crate) struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
    next_db: AtomicU32,
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// The newest installed server's bin directory (`/usr/lib/postgresql/N/bin`), or the one
/// named by `VECHE_PG_BIN`.
fn find_bin() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("VECHE_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (apt-get install postgresql)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no /usr/lib/postgresql/N/bin/initdb (apt-get install postgresql)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    pub(crate) fn start() -> anyhow::Result<Postgres> {
        let bin = find_bin()?;
        let dir = std::env::temp_dir().join(format!(
            "veche-pg-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let as_postgres_user = is_root();
        if as_postgres_user {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let pg = Postgres {
            dir,
            bin,
            port,
            as_postgres_user,
            next_db: AtomicU32::new(0),
        };
        let data = pg.dir.join("data");
        pg.run_pg(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        // fsync off: a test database need not survive a power cut, and it makes the suite fast.
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            path_str(&pg.dir)?
        );
        pg.run_pg(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-o",
                &options,
                "-l",
                path_str(&pg.dir.join("server.log"))?,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        Ok(pg)
    }

    fn run_pg(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir(&self.dir);
        run(&mut cmd).with_context(|| format!("{tool} failed; log in {}", self.dir.display()))
    }

    /// A fresh, empty database; its URL.
    pub(crate) fn new_database(&self) -> anyhow::Result<String> {
        let name = format!("veche_{}", self.next_db.fetch_add(1, Ordering::Relaxed));
        let port = self.port.to_string();
        self.run_pg(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", &name],
        )?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if let Some(data) = data.to_str() {
            let _ = self.run_pg("pg_ctl", &["-D", data, "-m", "immediate", "-w", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("non-UTF-8 temporary path")
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} exited with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ensure!(out.status.success());
    Ok(())
}
