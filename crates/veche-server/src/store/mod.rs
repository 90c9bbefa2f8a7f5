//! Persistent state: accounts, organisations, plans, meetings, usage, the audit log, login
//! lockouts, webhooks, calendar feeds and email invitations, in SQLite (the embedded default) or PostgreSQL.
//!
//! One [`Store`] over sqlx's `Any` pool: every query is written once in the SQL both dialects
//! accept (`$1` placeholders work in SQLite too), with only the schema split in two migration
//! directories. Times are Unix seconds passed in by the caller, so expiry and lockout logic is
//! tested without sleeping. Flags are stored as 0/1 integers: `Any` has no portable boolean.

mod accounts;
mod attempts;
mod calendar;
mod directory;
mod live;
mod meetings;
mod plans;
mod usage;
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::auth::{HashError, Hasher};

pub(crate) use accounts::{MAX_PASSWORD_CHARS, check_new_user, check_password, normalize_email};
// Changes made on one connection, for [`Store::audited`].
pub use accounts::{HashedNewUser, NewUser, OrgRole, Session, User, UserRole};
pub(crate) use accounts::{create_user_on, set_org_role_on, set_password_on, set_user_role_on};
pub use attempts::{Attempt, LockoutPolicy, Refused};
pub use calendar::{DueInvite, InviteOutcome, InviteRecord, InviteStatus};
pub use directory::{ExternalIdentity, PendingOidcLogin, Provisioned};
pub use live::{LiveChange, LiveRow};
pub use meetings::{
    JoinDecision, JoinError, JoinRole, Meeting, MeetingPatch, NewMeeting, Recurrence,
};
pub use plans::{
    Actor, AuditEntry, AuditFilter, NewAuditEntry, Org, Plan, RequestStatus, UpgradeRequest,
    UsageRecord, UsageSummary,
};
pub(crate) use plans::{rename_org_on, set_org_plan_on, update_plan_on};
pub use usage::{ALL_ORGS, HOUR_SECS, SeriesRange, UsageBucket};
pub use webhooks::{
    AttemptResult, DeliveryStatus, DueDelivery, NewWebhookEndpoint, NextStep, WebhookDelivery,
    WebhookEndpoint, WebhookPatch,
};

/// What a storage call can fail with. Callers map these to API errors; `Db` is a server error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("database file: {0}")]
    Io(String),
    /// Too many password verifications at once; retry shortly.
    #[error("busy: {0}")]
    Busy(String),
}

impl From<HashError> for StoreError {
    fn from(e: HashError) -> StoreError {
        match e {
            HashError::Busy { .. } => StoreError::Busy(e.to_string()),
            HashError::Failed(msg) => StoreError::Hash(msg),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which database the pool talks to; decides the migration directory and connection pragmas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The storage handle: cheap to clone (a pool inside).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Every password and passcode hash or verification goes through this bound.
    hasher: Hasher,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a writer waits for another process's lock (the admin CLI next to a running server)
/// before SQLite gives up with "database is locked".
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

/// Retries of the migrations after a failure (see [`Store::open`]).
const MIGRATION_ATTEMPTS: u32 = 5;

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`), creating a SQLite file if missing,
    /// and runs the migrations. Safe to call from several processes at once: SQLite runs in WAL
    /// mode with a busy timeout, and sqlx takes a lock around migrations.
    pub async fn open(url: &str) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Invalid {
                field: "database",
                message: format!("{url:?} is neither sqlite:// nor postgres://"),
            });
        };
        let url = match backend {
            // mode=rwc: create the file on first start.
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        if backend == Backend::Sqlite {
            restrict_sqlite_files(&url)?;
        }
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets the admin CLI write while the server reads and writes;
                        // foreign keys are off by default in SQLite.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute(
                            format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str(),
                        )
                        .await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        // Two processes starting on a fresh SQLite file (the server and `veche admin`) may
        // both try to apply a migration; sqlx takes no lock on SQLite, so the loser's
        // transaction fails and rolls back. Running again then finds it applied.
        let mut attempt = 0;
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                Err(e) if attempt < MIGRATION_ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "migration raced another process; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let hasher = Hasher::new(
            crate::auth::default_hash_concurrency(),
            crate::auth::DEFAULT_HASH_WAIT,
        )?;
        Ok(Store {
            pool,
            backend,
            hasher,
        })
    }

    /// The same store with another hashing bound (`veche serve`'s `--hash-concurrency`).
    pub fn with_hasher(mut self, hasher: Hasher) -> Store {
        self.hasher = hasher;
        self
    }

    /// The hashing bound and its counters.
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections to be returned (SQLite checkpoints the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The database file of a `sqlite://PATH?…` URL (`None` for an in-memory database).
fn sqlite_path(url: &str) -> Option<&std::path::Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| std::path::Path::new(path))
}

/// Accounts, password hashes and session digests live in the SQLite file: it is created
/// readable by the server's user only (SQLite gives its `-wal` and `-shm` files the mode of
/// the database file), and an existing file (or journal) readable by others is narrowed to
/// that, with a warning.
fn restrict_sqlite_files(url: &str) -> StoreResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let Some(path) = sqlite_path(url) else {
            return Ok(());
        };
        let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", path.display()));
        if !path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .or_else(|e| match e.kind() {
                    // Another process (`veche admin`) created it first.
                    std::io::ErrorKind::AlreadyExists => Ok(std::fs::File::open(path)?),
                    _ => Err(e),
                })
                .map_err(io)?;
        }
        let mut name = path.as_os_str().to_owned();
        let base = name.clone();
        for suffix in ["", "-wal", "-shm"] {
            name.clone_from(&base);
            name.push(suffix);
            let file = std::path::Path::new(&name);
            let Ok(meta) = std::fs::metadata(file) else {
                continue;
            };
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %file.display(), "database file was readable by other users; restricting it to 0600");
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = url;
    Ok(())
}

/// The default database URL: a SQLite file in the data directory.
pub fn sqlite_url_in(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("veche.db").display())
}

/// Lower-case letters and digits without the look-alikes 0, 1, l, o: 32 symbols, 5 bits each.
const ID_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A random identifier of `len` symbols (5 bits each) from the OS-seeded thread RNG.
pub(crate) fn random_id(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())]))
        .collect()
}

/// Meeting IDs: 20 symbols = 100 bits, far beyond guessing (the brief asks for ≥ 80), and
/// URL-safe without escaping.
pub(crate) fn meeting_id() -> String {
    random_id(20)
}

/// Row IDs for users, orgs and requests: 16 symbols = 80 bits; unguessable too, so an ID
/// seen in one place grants nothing elsewhere.
pub(crate) fn row_id() -> String {
    random_id(16)
}

pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}
