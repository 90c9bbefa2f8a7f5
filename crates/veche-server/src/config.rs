//! The operator's configuration: command-line flags, `VECHE_*` environment variables and an
//! optional TOML file, merged in one place into a [`Config`] that is handed down explicitly.
//!
//! Precedence is flag > environment > TOML file > built-in default. clap already resolves flag
//! over environment, so every value it parses is an `Option` and the TOML file and defaults fill
//! in what is still missing. The defaults are therefore written in the help text, not as clap
//! defaults (a clap default would hide the TOML value).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use veche_sfu::{E2eeLimits, IceTcpLimits, Limits};

use crate::api::{AccountSettings, DEFAULT_MAX_API_BODY_BYTES};
use crate::auth::{DEFAULT_HASH_WAIT, default_hash_concurrency};
use crate::calendar::{CalendarArgs, CalendarSettings};
use crate::cidr::Cidr;
use crate::dashboard::{DEFAULT_MAX_USAGE_BUCKETS, DashboardSettings};
use crate::directory::config::{DirectoryArgs, DirectorySettings};
use crate::state::MetricsAccess;
use crate::store::{LockoutPolicy, sqlite_url_in};
use crate::turn::TurnRest;
use crate::turn_server::{self, BuiltinTurn, RelayLimits};
use crate::webhooks::{WebhookArgs, WebhookSettings};

pub(crate) const DEFAULT_HTTP: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 8080);
pub(crate) const DEFAULT_MEDIA_PORT: u16 = 7882;
pub(crate) const DEFAULT_DATA_DIR: &str = "./veche-data";
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
pub(crate) const DEFAULT_MAX_MESSAGES_PER_SEC: u32 = 50;
pub(crate) const DEFAULT_MESSAGE_BURST: u32 = 100;
pub(crate) const DEFAULT_LOCKOUT_FAILURES: u32 = 10;
pub(crate) const DEFAULT_LOCKOUT_MINUTES: u32 = 15;
pub(crate) const DEFAULT_MAX_WS_PER_IP: usize = 100;
/// How long a dropped connection's place is kept for a reattach, in milliseconds.
pub(crate) const DEFAULT_REATTACH_GRACE_MS: u64 = 30_000;
/// What a kept place remembers of the messages sent, for a reattach to resend.
pub(crate) const DEFAULT_REATTACH_REPLAY_BYTES: usize = 1024 * 1024;
/// One year: long enough that browsers keep using HTTPS between visits.
pub(crate) const DEFAULT_HSTS_MAX_AGE: u64 = 365 * 24 * 3600;
/// The longest news of a change to a running meeting waits for the change to be stored, in
/// milliseconds.
pub(crate) const DEFAULT_LIVE_SAVE_MS: u64 = 1000;
pub(crate) const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 365;
/// Twelve hours: longer than any meeting a plan allows.
pub(crate) const DEFAULT_TURN_TTL_SECS: u64 = 12 * 3600;

/// Veche: self-hosted video meetings in the browser, through our own SFU, in one binary.
#[derive(Debug, Parser)]
#[command(
    name = "veche",
    version,
    arg_required_else_help = true,
    after_help = "Start a server with `veche serve`, then open http://127.0.0.1:8080.\n\
                  `veche serve --help` lists every setting."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the meeting server: web client, WebSocket signalling and the media SFU.
    ///
    /// Every flag can also be set as an environment variable (shown in brackets) or as a key
    /// of the same name in the --config TOML file, e.g. `media-port = 7882`. A flag wins over
    /// the environment, which wins over the file.
    Serve(Box<ServeArgs>),
    /// Manage accounts from a shell (e.g. make the first operator admin). Uses the same
    /// database as `serve` (--data-dir / --database / --config) and is safe to run while the
    /// server runs.
    Admin(AdminArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// TOML file of `veche serve`; only data-dir and database are read from it.
    #[arg(long, env = "VECHE_CONFIG", value_name = "FILE", global = true)]
    pub(crate) config: Option<PathBuf>,

    /// The server's data directory [default: ./veche-data].
    #[arg(long, env = "VECHE_DATA_DIR", value_name = "DIR", global = true)]
    pub(crate) data_dir: Option<PathBuf>,

    /// The server's database URL [default: sqlite://DATA_DIR/veche.db].
    #[arg(long, env = "VECHE_DATABASE", value_name = "URL", global = true)]
    pub(crate) database: Option<String>,

    #[command(subcommand)]
    pub(crate) command: AdminCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RoleArg {
    /// Operator admin: plans, every organisation, upgrade requests, the whole audit log.
    Admin,
    User,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Create an account (in a new organisation of its own unless --org is given).
    CreateUser {
        #[arg(long)]
        email: String,
        /// Display name [default: the part of the email before @].
        #[arg(long)]
        name: Option<String>,
        /// Read the password from the first line of standard input (never from the command
        /// line, where other users of the machine could see it).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long, value_enum, default_value_t = RoleArg::User)]
        role: RoleArg,
        /// Join this existing organisation (its id) as a member instead.
        #[arg(long, value_name = "ORG_ID")]
        org: Option<String>,
    },
    /// List every account: email, role, organisation.
    ListUsers,
    /// Make an account operator admin or a plain user.
    SetRole {
        #[arg(long)]
        email: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Move an organisation to a plan (free, pro, business, …) without an upgrade request.
    SetPlan {
        /// The organisation's id (see list-users).
        #[arg(long, value_name = "ORG_ID")]
        org: String,
        #[arg(long, value_name = "PLAN_ID")]
        plan: String,
    },
    /// Set a new password (read from standard input); ends the account's sessions.
    SetPassword {
        #[arg(long)]
        email: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Signup {
    Open,
    Closed,
}

#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ServeArgs {
    /// TOML file with any of the settings below, keyed by flag name (`http = "0.0.0.0:8080"`).
    #[arg(long, env = "VECHE_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Address for HTTP(S) and the signalling WebSocket [default: 127.0.0.1:8080].
    #[arg(long, env = "VECHE_HTTP", value_name = "ADDR")]
    pub(crate) http: Option<SocketAddr>,

    /// The first media UDP port: shard i of `media-shards` uses this + i; 0 lets each shard
    /// pick a free port [default: 7882].
    #[arg(long, env = "VECHE_MEDIA_PORT", value_name = "PORT")]
    pub(crate) media_port: Option<u16>,

    /// IP the media socket binds to [default: the IP of --http, so media is reachable where
    /// the page is, in the same address family; pass 0.0.0.0 or :: behind a reverse proxy
    /// that listens on another interface].
    #[arg(long, env = "VECHE_MEDIA_BIND", value_name = "IP")]
    pub(crate) media_bind: Option<IpAddr>,

    /// Address advertised to browsers in ICE candidates; repeat for several (comma-separated
    /// in the environment) [default: every interface address of the media socket's IP family,
    /// loopback included, link-local IPv6 skipped].
    #[arg(
        long,
        env = "VECHE_PUBLIC_IP",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub(crate) public_ip: Vec<IpAddr>,

    /// Directory for state such as the generated TLS certificate; created if missing
    /// [default: ./veche-data].
    #[arg(long, env = "VECHE_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,

    /// PEM certificate chain: serve HTTPS. Browsers allow camera and microphone only on
    /// https or localhost, so without this a non-loopback --http gets a self-signed
    /// certificate generated in the data directory.
    #[arg(
        long,
        env = "VECHE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub(crate) tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(
        long,
        env = "VECHE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub(crate) tls_key: Option<PathBuf>,

    /// Largest signalling message accepted, in bytes; larger ones get a
    /// `message_too_large` error [default: 65536].
    #[arg(long, env = "VECHE_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    pub(crate) max_message_bytes: Option<usize>,

    /// Signalling messages per second allowed on one connection; extra ones get a
    /// `rate_limited` error and are dropped [default: 50].
    #[arg(long, env = "VECHE_MAX_MESSAGES_PER_SEC", value_name = "N")]
    pub(crate) max_messages_per_sec: Option<u32>,

    /// Messages a connection may send at once before the per-second rate applies
    /// [default: 100].
    #[arg(long, env = "VECHE_MESSAGE_BURST", value_name = "N")]
    pub(crate) message_burst: Option<u32>,

    /// Signalling WebSocket connections open at once from one IP address; more get 429
    /// [default: 100].
    #[arg(long, env = "VECHE_MAX_WS_PER_IP", value_name = "N")]
    pub(crate) max_ws_per_ip: Option<usize>,

    /// How long a participant whose signalling connection dropped keeps its place (role,
    /// mutes, media session) for a new connection to take back; it counts as a connection
    /// from its address meanwhile. 0: no places are kept, a dropped connection leaves
    /// [default: 30000].
    #[arg(long, env = "VECHE_REATTACH_GRACE_MS", value_name = "MS")]
    pub(crate) reattach_grace_ms: Option<u64>,

    /// Bytes of its latest signalling messages a participant's place keeps, to send again
    /// to a client that reattaches; a client that missed more joins anew [default: 1048576].
    #[arg(long, env = "VECHE_REATTACH_REPLAY_BYTES", value_name = "BYTES")]
    pub(crate) reattach_replay_bytes: Option<usize>,

    /// Serve /metrics only to peers in this range (`10.0.0.0/8`, `::1`); repeat for several
    /// (comma-separated in the environment) [default: any address].
    #[arg(
        long,
        env = "VECHE_METRICS_ALLOW",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub(crate) metrics_allow: Vec<Cidr>,

    /// Serve /metrics only with `Authorization: Bearer TOKEN` (prefer the environment or the
    /// config file: a command line is visible to other users) [default: no token].
    #[arg(long, env = "VECHE_METRICS_TOKEN", value_name = "TOKEN")]
    pub(crate) metrics_token: Option<String>,

    /// `Strict-Transport-Security` max-age in seconds when serving HTTPS; 0 sends no header
    /// [default: 31536000].
    #[arg(long, env = "VECHE_HSTS_MAX_AGE", value_name = "SECS")]
    pub(crate) hsts_max_age: Option<u64>,

    /// Participants allowed in one room [default: 100].
    #[arg(long, env = "VECHE_MAX_PARTICIPANTS", value_name = "N")]
    pub(crate) max_participants: Option<usize>,

    /// Longest chat message, in characters [default: 4000].
    #[arg(long, env = "VECHE_MAX_CHAT_CHARS", value_name = "N")]
    pub(crate) max_chat_chars: Option<usize>,

    /// Kernel receive/send buffer of the media UDP socket, in bytes [default: 8388608].
    /// Each shard's one socket carries all media of its rooms; too small a buffer drops
    /// bursts for everyone there.
    #[arg(long, env = "VECHE_MEDIA_SOCKET_BUFFER", value_name = "BYTES")]
    pub(crate) media_socket_buffer: Option<usize>,

    /// Media threads ("shards"), each with its own UDP port (`media-port`, `media-port`+1,
    /// …) and its own rooms [default: one per CPU the process may run on].
    #[arg(long, env = "VECHE_MEDIA_SHARDS", value_name = "N")]
    pub(crate) media_shards: Option<usize>,

    /// ICE-TCP (RFC 6544): media over TCP for networks that block UDP, offered to browsers
    /// as a lower-priority candidate [default: true].
    #[arg(long, env = "VECHE_ICE_TCP", value_name = "BOOL")]
    pub(crate) ice_tcp: Option<bool>,

    /// The first ICE-TCP port: shard i listens on this + i over TCP; 0 lets each shard pick a
    /// free port [default: media-port, so shard i uses the same number over UDP and TCP].
    #[arg(long, env = "VECHE_ICE_TCP_PORT", value_name = "PORT")]
    pub(crate) ice_tcp_port: Option<u16>,

    /// ICE-TCP connections open at once, over all shards; more are closed on accept
    /// [default: 2000].
    #[arg(long, env = "VECHE_ICE_TCP_MAX_CONNECTIONS", value_name = "N")]
    pub(crate) ice_tcp_max_connections: Option<usize>,

    /// ICE-TCP connections open at once from one IP address [default: 200].
    #[arg(long, env = "VECHE_ICE_TCP_MAX_PER_IP", value_name = "N")]
    pub(crate) ice_tcp_max_per_ip: Option<usize>,

    /// Bytes queued to send on one ICE-TCP connection; past it, media for that connection
    /// is dropped as a full UDP buffer would drop it [default: 262144].
    #[arg(long, env = "VECHE_ICE_TCP_BUFFER_BYTES", value_name = "BYTES")]
    pub(crate) ice_tcp_buffer_bytes: Option<usize>,

    /// Seconds an ICE-TCP connection may go without a frame a participant accepts before it
    /// is closed [default: 30].
    #[arg(long, env = "VECHE_ICE_TCP_IDLE_SECS", value_name = "SECS")]
    pub(crate) ice_tcp_idle_secs: Option<u64>,

    /// A TURN server handed to browsers in `joined`, e.g.
    /// `turn:turn.example.org:443?transport=tcp` or `turns:turn.example.org:443?transport=tcp`;
    /// repeat for several (comma-separated in the environment). Needs --turn-secret.
    #[arg(
        long,
        env = "VECHE_TURN_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub(crate) turn_url: Vec<String>,

    /// The secret shared with the TURN server (coturn's `static-auth-secret`): each
    /// participant gets credentials minted from it (prefer the environment or the config
    /// file: a command line is visible to other users).
    #[arg(long, env = "VECHE_TURN_SECRET", value_name = "SECRET")]
    pub(crate) turn_secret: Option<String>,

    /// How long minted TURN credentials stay valid, in seconds; a relayed call refreshes its
    /// allocation with them, so this must outlast a meeting [default: 43200].
    #[arg(long, env = "VECHE_TURN_TTL_SECS", value_name = "SECS")]
    pub(crate) turn_ttl_secs: Option<u64>,

    /// Run the built-in TURN server (UDP and TLS over TCP), relaying to this server's media
    /// only, and hand it to browsers in `joined`; --turn-secret is then optional (one is
    /// generated in the data directory) [default: false].
    #[arg(long, env = "VECHE_TURN_BUILTIN", value_name = "BOOL")]
    pub(crate) turn_builtin: Option<bool>,

    /// The built-in TURN server's UDP listener [default: the IP of --http, port 3478].
    #[arg(long, env = "VECHE_TURN_UDP", value_name = "ADDR")]
    pub(crate) turn_udp: Option<SocketAddr>,

    /// The built-in TURN server's TLS-over-TCP listener, with the HTTPS certificate; use
    /// 443 of an address whose 443 is free for networks that allow nothing else
    /// [default: the IP of --http, port 5349].
    #[arg(long, env = "VECHE_TURN_TLS", value_name = "ADDR")]
    pub(crate) turn_tls: Option<SocketAddr>,

    /// Host name in the built-in server's turn:/turns: URLs; for TLS it must match the
    /// certificate [default: the listener's IP].
    #[arg(long, env = "VECHE_TURN_HOST", value_name = "NAME")]
    pub(crate) turn_host: Option<String>,

    /// Built-in TURN: allocations (relays) at once, over all users [default: 1000].
    #[arg(long, env = "VECHE_TURN_MAX_ALLOCATIONS", value_name = "N")]
    pub(crate) turn_max_allocations: Option<usize>,

    /// Built-in TURN: allocations at once under one participant's credentials [default: 10].
    #[arg(long, env = "VECHE_TURN_MAX_ALLOCATIONS_PER_USER", value_name = "N")]
    pub(crate) turn_max_allocations_per_user: Option<usize>,

    /// Built-in TURN: allocations (and TLS connections) at once from one IP address
    /// [default: 200].
    #[arg(long, env = "VECHE_TURN_MAX_ALLOCATIONS_PER_IP", value_name = "N")]
    pub(crate) turn_max_allocations_per_ip: Option<usize>,

    /// Built-in TURN: kbit/s one allocation may relay in each direction; packets past it
    /// are dropped [default: 20000].
    #[arg(long, env = "VECHE_TURN_MAX_KBIT_PER_SEC", value_name = "KBITS")]
    pub(crate) turn_max_kbit_per_sec: Option<u32>,

    /// Built-in TURN: client addresses a nonce is kept for, per listener. Any request, even
    /// unauthenticated, gets one; past this many the oldest is dropped and its client,
    /// answered 438 (Stale Nonce), retries with a new one [default: 100000].
    #[arg(long, env = "VECHE_TURN_MAX_NONCES", value_name = "N")]
    pub(crate) turn_max_nonces: Option<usize>,

    /// Built-in TURN: how long a nonce is valid, in seconds (at least 30); a client then gets
    /// 438 (Stale Nonce) and retries with a new one [default: 3600].
    #[arg(long, env = "VECHE_TURN_NONCE_EXPIRY_SECS", value_name = "SECS")]
    pub(crate) turn_nonce_expiry_secs: Option<u64>,

    /// Length of a "minute" of plan time limits and their warnings, in milliseconds
    /// [default: 60000]. For tests and demonstrations only: a 40-minute plan limit then ends
    /// a meeting after 40 × this.
    #[arg(long, env = "VECHE_MEETING_MINUTE_MS", value_name = "MS", hide = true)]
    pub(crate) meeting_minute_ms: Option<u64>,

    /// How long a meeting interrupted by a restart waits for the first of its people to come
    /// back before it is over, in seconds [default: 600].
    #[arg(long, env = "VECHE_RESUME_WINDOW_SECS", value_name = "SECS")]
    pub(crate) resume_window_secs: Option<u64>,

    /// How long a guest's resume token (how they are recognised when their connection comes
    /// back) is good for, in seconds [default: 86400].
    #[arg(long, env = "VECHE_RESUME_TOKEN_TTL_SECS", value_name = "SECS")]
    pub(crate) resume_token_ttl_secs: Option<u64>,

    /// The longest a change to a running meeting (a host mute, the lock, a role, an
    /// admission, a raised hand) waits to be stored before its participants are told of it
    /// anyway, in milliseconds [default: 1000]. Changes are written as soon as the previous
    /// write is done, so they normally wait one write: what a participant was told survives
    /// a `kill -9`. Only a slow or failing database makes news wait this long (it is logged);
    /// a failed write is tried again after this long. 0: news does not wait for the write.
    #[arg(long, env = "VECHE_LIVE_SAVE_MS", value_name = "MS")]
    pub(crate) live_save_ms: Option<u64>,

    /// Database URL: `sqlite://FILE` or `postgres://USER@HOST/DB`
    /// [default: sqlite://DATA_DIR/veche.db].
    #[arg(long, env = "VECHE_DATABASE", value_name = "URL")]
    pub(crate) database: Option<String>,

    /// Whether anyone may create an account from the site; `closed` leaves account creation
    /// to admins [default: open].
    #[arg(long, env = "VECHE_SIGNUP", value_name = "MODE")]
    pub(crate) signup: Option<Signup>,

    /// Instant meetings at /m/{room} without an account [default: true].
    #[arg(long, env = "VECHE_GUEST_ROOMS", value_name = "BOOL")]
    pub(crate) guest_rooms: Option<bool>,

    /// Make every meeting and instant guest room end-to-end encrypted, whatever its own
    /// setting; browsers that cannot encrypt are refused [default: false].
    #[arg(long, env = "VECHE_FORCE_E2EE", value_name = "BOOL")]
    pub(crate) force_e2ee: Option<bool>,

    /// How long the member asked to commit an MLS membership change has to answer before
    /// the next member is asked, in milliseconds [default: 5000].
    #[arg(long, env = "VECHE_MLS_COMMIT_TIMEOUT_MS", value_name = "MS")]
    pub(crate) mls_commit_timeout_ms: Option<u64>,

    /// Largest MLS key package, commit or Welcome the server relays, in bytes (decoded;
    /// the message size limit applies as well) [default: 49152].
    #[arg(long, env = "VECHE_MLS_MAX_BLOB_BYTES", value_name = "BYTES")]
    pub(crate) mls_max_blob_bytes: Option<usize>,

    /// Failed logins or passcodes (per account, meeting or IP) before a lockout
    /// [default: 10].
    #[arg(long, env = "VECHE_LOCKOUT_FAILURES", value_name = "N")]
    pub(crate) lockout_failures: Option<u32>,

    /// How long a lockout lasts, in minutes [default: 15].
    #[arg(long, env = "VECHE_LOCKOUT_MINUTES", value_name = "MIN")]
    pub(crate) lockout_minutes: Option<u32>,

    /// Failed logins, or failed passcodes, from one address over all accounts or meetings
    /// before that address is locked out [default: 50].
    #[arg(long, env = "VECHE_LOCKOUT_SOURCE_FAILURES", value_name = "N")]
    pub(crate) lockout_source_failures: Option<u32>,

    /// Attempts on one account or meeting from unfamiliar addresses within the lockout
    /// window before each further one waits a second longer than the last; familiar
    /// addresses and signed-in members are not slowed [default: 10].
    #[arg(long, env = "VECHE_SLOWDOWN_AFTER", value_name = "N")]
    pub(crate) slowdown_after: Option<u32>,

    /// The longest slow-down a request waits out, in seconds; one that would wait longer
    /// gets 429 with Retry-After [default: 10].
    #[arg(long, env = "VECHE_SLOWDOWN_MAX_WAIT", value_name = "SECS")]
    pub(crate) slowdown_max_wait: Option<u32>,

    /// Password hashes or verifications computed at once, each holding 19 MiB
    /// [default: one per CPU the process may run on].
    #[arg(long, env = "VECHE_HASH_CONCURRENCY", value_name = "N")]
    pub(crate) hash_concurrency: Option<usize>,

    /// How long a login waits for a free hashing slot before it gets 503 with Retry-After,
    /// in milliseconds [default: 2000].
    #[arg(long, env = "VECHE_HASH_WAIT_MS", value_name = "MS")]
    pub(crate) hash_wait_ms: Option<u64>,

    /// Largest REST API request body, in bytes [default: 65536].
    #[arg(long, env = "VECHE_MAX_API_BODY_BYTES", value_name = "BYTES")]
    pub(crate) max_api_body_bytes: Option<usize>,

    /// Days audit-log entries are kept; older ones are deleted hourly; 0 keeps them for
    /// ever [default: 365].
    #[arg(long, env = "VECHE_AUDIT_RETENTION_DAYS", value_name = "DAYS")]
    pub(crate) audit_retention_days: Option<u32>,

    /// Most time buckets one usage series or CSV export of the dashboard may have
    /// [default: 1000].
    #[arg(long, env = "VECHE_USAGE_MAX_BUCKETS", value_name = "N")]
    pub(crate) usage_max_buckets: Option<i64>,

    /// Log output format; the level comes from RUST_LOG (e.g. `info`, `veche=debug`)
    /// [default: text].
    #[arg(long, env = "VECHE_LOG_FORMAT", value_name = "FORMAT")]
    pub(crate) log_format: Option<LogFormat>,

    #[command(flatten)]
    pub(crate) directory: DirectoryArgs,

    #[command(flatten)]
    pub(crate) webhooks: WebhookArgs,

    #[command(flatten)]
    pub(crate) calendar: CalendarArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The `--config` file: the same settings as the flags, keyed by flag name.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    http: Option<SocketAddr>,
    media_port: Option<u16>,
    media_bind: Option<IpAddr>,
    public_ip: Option<Vec<IpAddr>>,
    data_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_message_bytes: Option<usize>,
    max_messages_per_sec: Option<u32>,
    message_burst: Option<u32>,
    max_ws_per_ip: Option<usize>,
    reattach_grace_ms: Option<u64>,
    reattach_replay_bytes: Option<usize>,
    metrics_allow: Option<Vec<Cidr>>,
    metrics_token: Option<String>,
    hsts_max_age: Option<u64>,
    max_participants: Option<usize>,
    max_chat_chars: Option<usize>,
    media_socket_buffer: Option<usize>,
    media_shards: Option<usize>,
    ice_tcp: Option<bool>,
    ice_tcp_port: Option<u16>,
    ice_tcp_max_connections: Option<usize>,
    ice_tcp_max_per_ip: Option<usize>,
    ice_tcp_buffer_bytes: Option<usize>,
    ice_tcp_idle_secs: Option<u64>,
    turn_url: Option<Vec<String>>,
    turn_secret: Option<String>,
    turn_ttl_secs: Option<u64>,
    turn_builtin: Option<bool>,
    turn_udp: Option<SocketAddr>,
    turn_tls: Option<SocketAddr>,
    turn_host: Option<String>,
    turn_max_allocations: Option<usize>,
    turn_max_allocations_per_user: Option<usize>,
    turn_max_allocations_per_ip: Option<usize>,
    turn_max_kbit_per_sec: Option<u32>,
    turn_max_nonces: Option<usize>,
    turn_nonce_expiry_secs: Option<u64>,
    meeting_minute_ms: Option<u64>,
    resume_window_secs: Option<u64>,
    resume_token_ttl_secs: Option<u64>,
    live_save_ms: Option<u64>,
    log_format: Option<LogFormat>,
    database: Option<String>,
    signup: Option<Signup>,
    guest_rooms: Option<bool>,
    force_e2ee: Option<bool>,
    mls_commit_timeout_ms: Option<u64>,
    mls_max_blob_bytes: Option<usize>,
    lockout_failures: Option<u32>,
    lockout_minutes: Option<u32>,
    lockout_source_failures: Option<u32>,
    slowdown_after: Option<u32>,
    slowdown_max_wait: Option<u32>,
    hash_concurrency: Option<usize>,
    hash_wait_ms: Option<u64>,
    max_api_body_bytes: Option<usize>,
    audit_retention_days: Option<u32>,
    usage_max_buckets: Option<i64>,
    /// Directory sign-in, as a `[directory]` table keyed by flag name.
    directory: Option<DirectoryArgs>,
    /// Webhooks, as a `[webhooks]` table keyed by flag name.
    webhooks: Option<WebhookArgs>,
    /// Calendar invitations and SMTP, as a `[calendar]` table keyed by flag name.
    calendar: Option<CalendarArgs>,
}

/// Where HTTPS gets its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tls {
    /// Plain HTTP: only for loopback addresses, where browsers treat the page as secure.
    Off,
    /// The operator's certificate and key.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate kept in the data directory.
    SelfSigned,
}

/// Signalling limits enforced by the WebSocket layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WsLimits {
    pub(crate) max_message_bytes: usize,
    pub(crate) max_messages_per_sec: u32,
    pub(crate) message_burst: u32,
    /// Connections open at once from one address.
    pub(crate) max_connections_per_ip: usize,
    /// How long a dropped connection's place is kept (zero: not at all).
    pub(crate) reattach_grace: Duration,
    /// Bytes of sent messages a place keeps for a reattach.
    pub(crate) reattach_replay_bytes: usize,
}

/// The resolved configuration of `veche serve`.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) http: SocketAddr,
    pub(crate) media_bind: SocketAddr,
    /// The first ICE-TCP port (shard i: + i; 0: free ports); `None`: no ICE-TCP.
    pub(crate) ice_tcp_port: Option<u16>,
    /// External TURN servers for `joined`, with how their credentials are minted.
    pub(crate) turn: Option<TurnRest>,
    /// The built-in TURN server, if on.
    pub(crate) turn_builtin: Option<BuiltinTurn>,
    /// The TURN REST secret given by the operator (needed for `turn`; the built-in server
    /// falls back to one kept in the data directory).
    pub(crate) turn_secret: Option<String>,
    pub(crate) turn_ttl: Duration,
    /// Empty means "discover the interface addresses at start-up".
    pub(crate) public_ips: Vec<IpAddr>,
    pub(crate) data_dir: PathBuf,
    pub(crate) tls: Tls,
    pub(crate) ws: WsLimits,
    pub(crate) sfu_limits: Limits,
    pub(crate) log_format: LogFormat,
    /// The database URL, defaulted to a SQLite file in the data directory.
    pub(crate) database: String,
    /// Account settings; `secure_cookies` is set once TLS is known.
    pub(crate) accounts: AccountSettings,
    pub(crate) metrics: MetricsAccess,
    /// `Strict-Transport-Security` max-age under TLS; 0: no header.
    pub(crate) hsts_max_age: u64,
    /// Password hashes computed at once, and how long a request waits for its turn.
    pub(crate) hash_concurrency: usize,
    pub(crate) hash_wait: Duration,
    /// How long audit entries are kept, in seconds (`None`: for ever).
    pub(crate) audit_retention_secs: Option<i64>,
    /// The longest news of a change to a running meeting waits for its write (and how
    /// long a failed write waits before it is tried again).
    pub(crate) live_save: Duration,
    /// LDAP and OpenID Connect sign-in.
    pub(crate) directory: DirectorySettings,
    pub(crate) webhooks: WebhookSettings,
    pub(crate) dashboard: DashboardSettings,
    pub(crate) calendar: CalendarSettings,
}

impl Config {
    /// Reads the `--config` file, if any, and merges it under the flags and environment.
    pub(crate) fn load(args: ServeArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        Config::merge(args, file)
    }

    fn merge(args: ServeArgs, file: FileConfig) -> anyhow::Result<Config> {
        let http = args.http.or(file.http).unwrap_or(DEFAULT_HTTP);
        let media_port = args
            .media_port
            .or(file.media_port)
            .unwrap_or(DEFAULT_MEDIA_PORT);
        // Media goes where the page is: the same interface and address family as HTTP, so a
        // loopback-only server does not expose its UDP port to the network, and an IPv6
        // --http gets an IPv6 media socket.
        let media_ip = args.media_bind.or(file.media_bind).unwrap_or(http.ip());
        let public_ips = if args.public_ip.is_empty() {
            file.public_ip.unwrap_or_default()
        } else {
            args.public_ip
        };
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

        // The certificate and key come as a pair from one source: mixing a flag's cert with
        // the file's key would be a confusing way to misconfigure TLS.
        let tls = match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Tls::Files { cert, key },
            (None, None) => match (file.tls_cert, file.tls_key) {
                (Some(cert), Some(key)) => Tls::Files { cert, key },
                (None, None) => default_tls(http),
                _ => bail!("the config file must set both tls-cert and tls-key, or neither"),
            },
            _ => bail!("--tls-cert and --tls-key must be given together"),
        };

        let ws = WsLimits {
            max_message_bytes: args
                .max_message_bytes
                .or(file.max_message_bytes)
                .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
            max_messages_per_sec: args
                .max_messages_per_sec
                .or(file.max_messages_per_sec)
                .unwrap_or(DEFAULT_MAX_MESSAGES_PER_SEC),
            message_burst: args
                .message_burst
                .or(file.message_burst)
                .unwrap_or(DEFAULT_MESSAGE_BURST),
            max_connections_per_ip: args
                .max_ws_per_ip
                .or(file.max_ws_per_ip)
                .unwrap_or(DEFAULT_MAX_WS_PER_IP),
            reattach_grace: Duration::from_millis(
                args.reattach_grace_ms
                    .or(file.reattach_grace_ms)
                    .unwrap_or(DEFAULT_REATTACH_GRACE_MS),
            ),
            reattach_replay_bytes: args
                .reattach_replay_bytes
                .or(file.reattach_replay_bytes)
                .unwrap_or(DEFAULT_REATTACH_REPLAY_BYTES),
        };
        if ws.max_connections_per_ip == 0 {
            bail!("max-ws-per-ip must be at least 1");
        }
        let metrics = MetricsAccess {
            allow: if args.metrics_allow.is_empty() {
                file.metrics_allow.unwrap_or_default()
            } else {
                args.metrics_allow
            },
            token: args.metrics_token.or(file.metrics_token),
        };
        if metrics.token.as_deref().is_some_and(|t| t.len() < 16) {
            bail!("metrics-token must have at least 16 characters");
        }
        if ws.max_message_bytes < 1024 {
            bail!(
                "max-message-bytes {} is too small to carry an SDP answer (minimum 1024)",
                ws.max_message_bytes
            );
        }
        if ws.max_messages_per_sec == 0 {
            bail!("max-messages-per-sec must be at least 1");
        }

        let defaults = Limits::default();
        let ice_tcp_defaults = IceTcpLimits::default();
        let ice_tcp = IceTcpLimits {
            max_connections: args
                .ice_tcp_max_connections
                .or(file.ice_tcp_max_connections)
                .unwrap_or(ice_tcp_defaults.max_connections),
            max_connections_per_ip: args
                .ice_tcp_max_per_ip
                .or(file.ice_tcp_max_per_ip)
                .unwrap_or(ice_tcp_defaults.max_connections_per_ip),
            max_buffered_bytes: args
                .ice_tcp_buffer_bytes
                .or(file.ice_tcp_buffer_bytes)
                .unwrap_or(ice_tcp_defaults.max_buffered_bytes),
            idle_timeout: args
                .ice_tcp_idle_secs
                .or(file.ice_tcp_idle_secs)
                .map_or(ice_tcp_defaults.idle_timeout, Duration::from_secs),
        };
        if ice_tcp.max_connections == 0 || ice_tcp.max_connections_per_ip == 0 {
            bail!("ice-tcp-max-connections and ice-tcp-max-per-ip must be at least 1");
        }
        // A frame is at most 4 KiB; a queue that cannot hold a few of them drops media.
        if ice_tcp.max_buffered_bytes < 16 * 1024 {
            bail!(
                "ice-tcp-buffer-bytes {} is too small (minimum 16384)",
                ice_tcp.max_buffered_bytes
            );
        }
        if ice_tcp.idle_timeout.is_zero() {
            bail!("ice-tcp-idle-secs must be at least 1");
        }
        let ice_tcp_port = args.ice_tcp.or(file.ice_tcp).unwrap_or(true).then(|| {
            args.ice_tcp_port
                .or(file.ice_tcp_port)
                .unwrap_or(media_port)
        });
        let turn_urls = if args.turn_url.is_empty() {
            file.turn_url.unwrap_or_default()
        } else {
            args.turn_url
        };
        let builtin_on = args.turn_builtin.or(file.turn_builtin).unwrap_or(false);
        let turn_secret = args.turn_secret.or(file.turn_secret);
        if turn_secret.as_ref().is_some_and(|s| s.len() < 16) {
            bail!("turn-secret must have at least 16 characters");
        }
        let ttl = args
            .turn_ttl_secs
            .or(file.turn_ttl_secs)
            .unwrap_or(DEFAULT_TURN_TTL_SECS);
        if ttl == 0 {
            bail!("turn-ttl-secs must be at least 1");
        }
        let turn_ttl = Duration::from_secs(ttl);
        let turn = match (turn_urls.is_empty(), &turn_secret) {
            (true, None) => None,
            (true, Some(_)) if builtin_on => None,
            (false, Some(secret)) => {
                if let Some(bad) = turn_urls
                    .iter()
                    .find(|u| !(u.starts_with("turn:") || u.starts_with("turns:")))
                {
                    bail!("turn-url {bad:?} must start with turn: or turns:");
                }
                Some(TurnRest {
                    urls: turn_urls,
                    secret: secret.clone(),
                    ttl: turn_ttl,
                })
            }
            _ => bail!("turn-url and turn-secret must be given together"),
        };
        let relay_defaults = RelayLimits::default();
        let turn_builtin = if builtin_on {
            let limits = RelayLimits {
                max_allocations: args
                    .turn_max_allocations
                    .or(file.turn_max_allocations)
                    .unwrap_or(relay_defaults.max_allocations),
                max_allocations_per_user: args
                    .turn_max_allocations_per_user
                    .or(file.turn_max_allocations_per_user)
                    .unwrap_or(relay_defaults.max_allocations_per_user),
                max_allocations_per_ip: args
                    .turn_max_allocations_per_ip
                    .or(file.turn_max_allocations_per_ip)
                    .unwrap_or(relay_defaults.max_allocations_per_ip),
                max_kbit_per_sec: args
                    .turn_max_kbit_per_sec
                    .or(file.turn_max_kbit_per_sec)
                    .unwrap_or(relay_defaults.max_kbit_per_sec),
                max_nonces: args
                    .turn_max_nonces
                    .or(file.turn_max_nonces)
                    .unwrap_or(relay_defaults.max_nonces),
                nonce_expiry: args
                    .turn_nonce_expiry_secs
                    .or(file.turn_nonce_expiry_secs)
                    .map_or(relay_defaults.nonce_expiry, Duration::from_secs),
            };
            if limits.max_allocations == 0
                || limits.max_allocations_per_user == 0
                || limits.max_allocations_per_ip == 0
            {
                bail!("turn-max-allocations, -per-user and -per-ip must be at least 1");
            }
            if limits.max_nonces == 0 {
                bail!("turn-max-nonces must be at least 1");
            }
            // The protocol crate's minimum (RFC 8489 leaves it to the server).
            if limits.nonce_expiry < turn_server::MIN_NONCE_EXPIRY {
                bail!(
                    "turn-nonce-expiry-secs {} is below the minimum of {}",
                    limits.nonce_expiry.as_secs(),
                    turn_server::MIN_NONCE_EXPIRY.as_secs()
                );
            }
            // Below one video stream the relay is of no use.
            if limits.max_kbit_per_sec < 500 {
                bail!(
                    "turn-max-kbit-per-sec {} is too small for video (minimum 500)",
                    limits.max_kbit_per_sec
                );
            }
            Some(BuiltinTurn {
                udp: args
                    .turn_udp
                    .or(file.turn_udp)
                    .unwrap_or(SocketAddr::new(http.ip(), turn_server::DEFAULT_UDP_PORT)),
                tls: args
                    .turn_tls
                    .or(file.turn_tls)
                    .unwrap_or(SocketAddr::new(http.ip(), turn_server::DEFAULT_TLS_PORT)),
                host: args.turn_host.or(file.turn_host),
                limits,
            })
        } else {
            None
        };
        let mut sfu_limits = Limits {
            max_participants_per_room: args
                .max_participants
                .or(file.max_participants)
                .unwrap_or(defaults.max_participants_per_room),
            max_chat_chars: args
                .max_chat_chars
                .or(file.max_chat_chars)
                .unwrap_or(defaults.max_chat_chars),
            socket_buffer_bytes: args
                .media_socket_buffer
                .or(file.media_socket_buffer)
                .unwrap_or(defaults.socket_buffer_bytes),
            media_shards: args
                .media_shards
                .or(file.media_shards)
                .unwrap_or(defaults.media_shards),
            minute: args
                .meeting_minute_ms
                .or(file.meeting_minute_ms)
                .map_or(defaults.minute, std::time::Duration::from_millis),
            resume_window: args
                .resume_window_secs
                .or(file.resume_window_secs)
                .map_or(defaults.resume_window, Duration::from_secs),
            resume_token_ttl: args
                .resume_token_ttl_secs
                .or(file.resume_token_ttl_secs)
                .map_or(defaults.resume_token_ttl, Duration::from_secs),
            ice_tcp,
            e2ee: E2eeLimits {
                max_blob_bytes: args
                    .mls_max_blob_bytes
                    .or(file.mls_max_blob_bytes)
                    .unwrap_or(defaults.e2ee.max_blob_bytes),
                commit_timeout: args
                    .mls_commit_timeout_ms
                    .or(file.mls_commit_timeout_ms)
                    .map_or(defaults.e2ee.commit_timeout, Duration::from_millis),
            },
            ..defaults
        };
        if sfu_limits.e2ee.commit_timeout.is_zero() {
            bail!("mls-commit-timeout-ms must be at least 1");
        }
        if sfu_limits.e2ee.max_blob_bytes < 1024 {
            bail!(
                "mls-max-blob-bytes {} is too small for any MLS message (minimum 1024)",
                sfu_limits.e2ee.max_blob_bytes
            );
        }
        if sfu_limits.resume_token_ttl.is_zero() {
            bail!("resume-token-ttl-secs must be at least 1");
        }
        let live_save = Duration::from_millis(
            args.live_save_ms
                .or(file.live_save_ms)
                .unwrap_or(DEFAULT_LIVE_SAVE_MS),
        );
        sfu_limits.news_wait = Some(live_save);
        if sfu_limits.media_shards == 0 {
            bail!("media-shards must be at least 1");
        }
        if media_port != 0 && usize::from(media_port) + sfu_limits.media_shards - 1 > 65535 {
            bail!(
                "media-port {media_port} + {} shards runs past port 65535",
                sfu_limits.media_shards
            );
        }
        if let Some(port) = ice_tcp_port
            && port != 0
            && usize::from(port) + sfu_limits.media_shards - 1 > 65535
        {
            bail!(
                "ice-tcp-port {port} + {} shards runs past port 65535",
                sfu_limits.media_shards
            );
        }
        if sfu_limits.max_participants_per_room == 0 {
            bail!("max-participants must be at least 1");
        }
        if sfu_limits.minute.is_zero() {
            bail!("meeting-minute-ms must be at least 1");
        }

        let database = args
            .database
            .or(file.database)
            .unwrap_or_else(|| sqlite_url_in(&data_dir));
        let lockout_failures = args
            .lockout_failures
            .or(file.lockout_failures)
            .unwrap_or(DEFAULT_LOCKOUT_FAILURES);
        let lockout_minutes = args
            .lockout_minutes
            .or(file.lockout_minutes)
            .unwrap_or(DEFAULT_LOCKOUT_MINUTES);
        if lockout_failures == 0 || lockout_minutes == 0 {
            bail!("lockout-failures and lockout-minutes must be at least 1");
        }
        let defaults = LockoutPolicy::DEFAULT;
        let lockout = LockoutPolicy {
            max_failures: lockout_failures,
            source_failures: args
                .lockout_source_failures
                .or(file.lockout_source_failures)
                .unwrap_or(defaults.source_failures),
            lockout_secs: i64::from(lockout_minutes) * 60,
            slowdown_after: args
                .slowdown_after
                .or(file.slowdown_after)
                .unwrap_or(defaults.slowdown_after),
            slowdown_max_wait_secs: args
                .slowdown_max_wait
                .or(file.slowdown_max_wait)
                .map_or(defaults.slowdown_max_wait_secs, i64::from),
        };
        if lockout.source_failures == 0 {
            bail!("lockout-source-failures must be at least 1");
        }
        let max_body_bytes = args
            .max_api_body_bytes
            .or(file.max_api_body_bytes)
            .unwrap_or(DEFAULT_MAX_API_BODY_BYTES);
        if max_body_bytes < 1024 {
            bail!("max-api-body-bytes {max_body_bytes} is too small for a meeting (minimum 1024)");
        }
        let hash_concurrency = args
            .hash_concurrency
            .or(file.hash_concurrency)
            .unwrap_or_else(default_hash_concurrency);
        if hash_concurrency == 0 {
            bail!("hash-concurrency must be at least 1");
        }
        let hash_wait = args
            .hash_wait_ms
            .or(file.hash_wait_ms)
            .map_or(DEFAULT_HASH_WAIT, Duration::from_millis);
        let audit_retention_secs = match args
            .audit_retention_days
            .or(file.audit_retention_days)
            .unwrap_or(DEFAULT_AUDIT_RETENTION_DAYS)
        {
            0 => None,
            days => Some(i64::from(days) * 24 * 3600),
        };
        let max_buckets = args
            .usage_max_buckets
            .or(file.usage_max_buckets)
            .unwrap_or(DEFAULT_MAX_USAGE_BUCKETS);
        if !(1..=100_000).contains(&max_buckets) {
            bail!("usage-max-buckets {max_buckets} is not between 1 and 100000");
        }
        let accounts = AccountSettings {
            signup_open: args.signup.or(file.signup).unwrap_or(Signup::Open) == Signup::Open,
            guest_rooms: args.guest_rooms.or(file.guest_rooms).unwrap_or(true),
            force_e2ee: args.force_e2ee.or(file.force_e2ee).unwrap_or(false),
            lockout,
            secure_cookies: tls != Tls::Off,
            max_body_bytes,
        };

        Ok(Config {
            http,
            media_bind: SocketAddr::new(media_ip, media_port),
            ice_tcp_port,
            turn,
            turn_builtin,
            turn_secret,
            turn_ttl,
            public_ips,
            data_dir,
            tls,
            ws,
            sfu_limits,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            database,
            accounts,
            metrics,
            hsts_max_age: args
                .hsts_max_age
                .or(file.hsts_max_age)
                .unwrap_or(DEFAULT_HSTS_MAX_AGE),
            hash_concurrency,
            hash_wait,
            audit_retention_secs,
            live_save,
            directory: DirectorySettings::merge(
                args.directory,
                file.directory.unwrap_or_default(),
            )?,
            webhooks: WebhookSettings::merge(args.webhooks, file.webhooks.unwrap_or_default())?,
            dashboard: DashboardSettings { max_buckets },
            calendar: CalendarSettings::merge(args.calendar, file.calendar.unwrap_or_default())?,
        })
    }
}

/// The database of `veche admin`: resolved like `serve`'s (flag > env > file > default).
pub(crate) fn admin_database(args: &AdminArgs) -> anyhow::Result<String> {
    let file = match &args.config {
        Some(path) => read_file_config(path)?,
        None => FileConfig::default(),
    };
    if let Some(db) = args.database.clone().or(file.database) {
        return Ok(db);
    }
    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    Ok(sqlite_url_in(&data_dir))
}

/// Plain HTTP on loopback (browsers treat `localhost` as a secure context); a self-signed
/// certificate anywhere else, because camera and microphone need a secure context.
fn default_tls(http: SocketAddr) -> Tls {
    if http.ip().is_loopback() {
        Tls::Off
    } else {
        Tls::SelfSigned
    }
}

fn read_file_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// The machine's interface addresses usable with a media socket bound to `bind`: the same IP
/// family (a socket bound to 0.0.0.0 cannot answer on IPv6) and no link-local IPv6, which
/// needs a scope id that ICE candidates cannot carry.
pub(crate) fn discover_public_ips(bind: IpAddr) -> anyhow::Result<Vec<IpAddr>> {
    if !bind.is_unspecified() {
        return Ok(vec![bind]);
    }
    let interfaces = if_addrs::get_if_addrs().context("listing network interfaces")?;
    let mut ips: Vec<IpAddr> = interfaces
        .iter()
        .map(|i| i.ip())
        .filter(|ip| ip.is_ipv4() == bind.is_ipv4())
        .filter(|ip| match ip {
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
            IpAddr::V4(_) => true,
        })
        .collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        bail!("no usable interface address found; pass --public-ip");
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["veche", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)
            .expect("valid command line")
            .command
        {
            Command::Serve(args) => *args,
            Command::Admin(_) => unreachable!("parsed a serve command line"),
        }
    }

    fn file(toml_text: &str) -> FileConfig {
        toml::from_str(toml_text).expect("valid toml")
    }

    #[test]
    fn help_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let c = Config::merge(ServeArgs::default(), FileConfig::default()).unwrap();
        assert_eq!(c.http, DEFAULT_HTTP);
        // Media binds where HTTP does.
        assert_eq!(c.media_bind, "127.0.0.1:7882".parse().unwrap());
        assert_eq!(c.ws.max_connections_per_ip, 100);
        assert!(c.metrics.allow.is_empty() && c.metrics.token.is_none());
        assert_eq!(c.hsts_max_age, 31_536_000);
        assert!(c.public_ips.is_empty());
        assert_eq!(c.data_dir, PathBuf::from("./veche-data"));
        assert_eq!(c.tls, Tls::Off);
        assert_eq!(c.ws.max_message_bytes, 65536);
        assert_eq!(c.ws.max_messages_per_sec, 50);
        assert_eq!(c.sfu_limits.max_participants_per_room, 100);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.database, "sqlite://./veche-data/veche.db");
        assert!(c.accounts.signup_open);
        assert!(c.accounts.guest_rooms);
        assert_eq!(c.accounts.lockout.max_failures, 10);
        assert_eq!(c.accounts.lockout.lockout_secs, 900);
        assert_eq!(c.accounts.lockout.source_failures, 50);
        assert_eq!(c.accounts.lockout.slowdown_after, 10);
        assert_eq!(c.accounts.lockout.slowdown_max_wait_secs, 10);
        assert_eq!(c.accounts.max_body_bytes, 65536);
        assert_eq!(c.hash_concurrency, default_hash_concurrency());
        assert_eq!(c.hash_wait, Duration::from_secs(2));
        assert_eq!(c.audit_retention_secs, Some(365 * 24 * 3600));
        assert!(!c.accounts.secure_cookies);
    }

    #[test]
    fn account_settings_from_flags_and_file() {
        let args = parse(&[
            "--signup",
            "closed",
            "--guest-rooms",
            "false",
            "--lockout-failures",
            "3",
            "--database",
            "postgres://veche@127.0.0.1/veche",
        ]);
        let c = Config::merge(args, file("lockout-failures = 5\nlockout-minutes = 2")).unwrap();
        assert!(!c.accounts.signup_open);
        assert!(!c.accounts.guest_rooms);
        assert_eq!(c.accounts.lockout.max_failures, 3);
        assert_eq!(c.accounts.lockout.lockout_secs, 120);
        assert_eq!(c.database, "postgres://veche@127.0.0.1/veche");
        let c = Config::merge(
            ServeArgs::default(),
            file("signup = \"closed\"\ndata-dir = \"/x\""),
        )
        .unwrap();
        assert!(!c.accounts.signup_open);
        assert_eq!(c.database, "sqlite:///x/veche.db");
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let args = parse(&["--http", "127.0.0.1:9000", "--public-ip", "10.0.0.1"]);
        let f = file(
            r#"
            http = "127.0.0.1:7000"
            media-port = 9999
            public-ip = ["10.0.0.2"]
            max-participants = 3
            log-format = "json"
            "#,
        );
        let c = Config::merge(args, f).unwrap();
        assert_eq!(c.http, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.media_bind.port(), 9999);
        assert_eq!(c.public_ips, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.sfu_limits.max_participants_per_room, 3);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn media_follows_http_unless_told() {
        let c = Config::merge(parse(&["--http", "[::]:8443"]), FileConfig::default()).unwrap();
        assert_eq!(c.media_bind, "[::]:7882".parse().unwrap());
        let c = Config::merge(
            parse(&["--http", "0.0.0.0:8443", "--media-bind", "192.0.2.4"]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.media_bind, "192.0.2.4:7882".parse().unwrap());
    }

    #[test]
    fn metrics_access_from_flags_and_file() {
        let args = parse(&["--metrics-allow", "10.0.0.0/8", "--metrics-allow", "::1"]);
        let c = Config::merge(args, FileConfig::default()).unwrap();
        assert_eq!(c.metrics.allow.len(), 2);
        let c = Config::merge(
            ServeArgs::default(),
            file("metrics-allow = [\"127.0.0.1/32\"]\nmetrics-token = \"0123456789abcdef\""),
        )
        .unwrap();
        assert_eq!(c.metrics.allow, vec!["127.0.0.1/32".parse().unwrap()]);
        assert_eq!(c.metrics.token.as_deref(), Some("0123456789abcdef"));
        assert!(Cli::try_parse_from(["veche", "serve", "--metrics-allow", "10.0.0.0/40"]).is_err());
        assert!(
            Config::merge(parse(&["--metrics-token", "short"]), FileConfig::default()).is_err()
        );
        assert!(Config::merge(parse(&["--max-ws-per-ip", "0"]), FileConfig::default()).is_err());
    }

    #[test]
    fn abuse_limits_from_flags_and_file() {
        let args = parse(&[
            "--lockout-source-failures",
            "7",
            "--hash-concurrency",
            "3",
            "--audit-retention-days",
            "0",
        ]);
        let c = Config::merge(
            args,
            file("slowdown-after = 4\nslowdown-max-wait = 30\nhash-wait-ms = 50\nmax-api-body-bytes = 4096"),
        )
        .unwrap();
        assert_eq!(c.accounts.lockout.source_failures, 7);
        assert_eq!(c.accounts.lockout.slowdown_after, 4);
        assert_eq!(c.accounts.lockout.slowdown_max_wait_secs, 30);
        assert_eq!(c.hash_concurrency, 3);
        assert_eq!(c.hash_wait, Duration::from_millis(50));
        assert_eq!(c.accounts.max_body_bytes, 4096);
        assert_eq!(c.audit_retention_secs, None);
        for bad in [
            &["--hash-concurrency", "0"][..],
            &["--lockout-source-failures", "0"],
            &["--max-api-body-bytes", "10"],
        ] {
            assert!(
                Config::merge(parse(bad), FileConfig::default()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn repeatable_public_ip() {
        let args = parse(&["--public-ip", "10.0.0.1", "--public-ip", "::1"]);
        assert_eq!(args.public_ip.len(), 2);
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        assert!(toml::from_str::<FileConfig>("htpp = \"x\"").is_err());
    }

    #[test]
    fn ice_tcp_follows_the_media_port_unless_set_or_off() {
        let c = Config::merge(parse(&["--media-port", "9000"]), FileConfig::default()).unwrap();
        assert_eq!(c.ice_tcp_port, Some(9000));
        let c = Config::merge(parse(&["--ice-tcp-port", "0"]), FileConfig::default()).unwrap();
        assert_eq!(c.ice_tcp_port, Some(0));
        let c = Config::merge(parse(&[]), file("ice-tcp = false")).unwrap();
        assert_eq!(c.ice_tcp_port, None);
        let c = Config::merge(parse(&["--ice-tcp-max-per-ip", "3"]), FileConfig::default());
        assert_eq!(c.unwrap().sfu_limits.ice_tcp.max_connections_per_ip, 3);
        assert!(
            Config::merge(parse(&["--ice-tcp-idle-secs", "0"]), FileConfig::default()).is_err()
        );
    }

    #[test]
    fn turn_needs_url_and_secret_together() {
        let secret = "0123456789abcdef";
        let url = "turn:198.51.100.1:443?transport=tcp";
        let c = Config::merge(
            parse(&["--turn-url", url, "--turn-secret", secret]),
            FileConfig::default(),
        )
        .unwrap();
        let turn = c.turn.unwrap();
        assert_eq!(turn.urls, vec![url.to_owned()]);
        assert_eq!(turn.ttl, Duration::from_secs(DEFAULT_TURN_TTL_SECS));
        assert!(Config::merge(parse(&["--turn-url", url]), FileConfig::default()).is_err());
        assert!(Config::merge(parse(&["--turn-secret", secret]), FileConfig::default()).is_err());
        let bad = ["--turn-url", "https://x", "--turn-secret", secret];
        assert!(Config::merge(parse(&bad), FileConfig::default()).is_err());
        let short = ["--turn-url", url, "--turn-secret", "short"];
        assert!(Config::merge(parse(&short), FileConfig::default()).is_err());
    }

    #[test]
    fn builtin_turn_is_off_unless_asked_and_needs_no_secret() {
        let c = Config::merge(parse(&[]), FileConfig::default()).unwrap();
        assert!(c.turn_builtin.is_none() && c.turn.is_none());
        let c = Config::merge(
            parse(&["--http", "10.1.2.3:443", "--turn-builtin", "true"]),
            file("turn-max-allocations-per-user = 3"),
        )
        .unwrap();
        let builtin = c.turn_builtin.unwrap();
        assert_eq!(builtin.udp, "10.1.2.3:3478".parse().unwrap());
        assert_eq!(builtin.tls, "10.1.2.3:5349".parse().unwrap());
        assert_eq!(builtin.limits.max_allocations_per_user, 3);
        assert_eq!(builtin.limits.max_allocations, 1000);
        assert_eq!(builtin.limits.max_nonces, 100_000);
        assert_eq!(builtin.limits.nonce_expiry, Duration::from_secs(3600));
        assert!(c.turn.is_none() && c.turn_secret.is_none());
        let nonces = Config::merge(
            parse(&["--turn-builtin", "true", "--turn-max-nonces", "64"]),
            file("turn-nonce-expiry-secs = 60"),
        )
        .unwrap()
        .turn_builtin
        .unwrap();
        assert_eq!(nonces.limits.max_nonces, 64);
        assert_eq!(nonces.limits.nonce_expiry, Duration::from_secs(60));
        for bad in [
            ["--turn-max-nonces", "0"],
            ["--turn-nonce-expiry-secs", "29"],
        ] {
            let args = [&["--turn-builtin", "true"][..], &bad[..]].concat();
            assert!(
                Config::merge(parse(&args), FileConfig::default()).is_err(),
                "{bad:?}"
            );
        }
        let secret = [
            "--turn-builtin",
            "true",
            "--turn-secret",
            "0123456789abcdef",
        ];
        let c = Config::merge(parse(&secret), FileConfig::default()).unwrap();
        assert_eq!(c.turn_secret.as_deref(), Some("0123456789abcdef"));
        let slow = ["--turn-builtin", "true", "--turn-max-kbit-per-sec", "10"];
        assert!(Config::merge(parse(&slow), FileConfig::default()).is_err());
        // Without the built-in server a secret alone is still a mistake.
        let alone = ["--turn-secret", "0123456789abcdef"];
        assert!(Config::merge(parse(&alone), FileConfig::default()).is_err());
    }

    #[test]
    fn non_loopback_without_cert_is_self_signed() {
        let c = Config::merge(parse(&["--http", "0.0.0.0:8443"]), FileConfig::default()).unwrap();
        assert_eq!(c.tls, Tls::SelfSigned);
        let c = Config::merge(
            parse(&["--http", "[::1]:8080"]),
            file("tls-cert = \"c.pem\"\ntls-key = \"k.pem\""),
        )
        .unwrap();
        assert!(matches!(c.tls, Tls::Files { .. }));
    }

    #[test]
    fn half_a_tls_pair_is_an_error() {
        assert!(Cli::try_parse_from(["veche", "serve", "--tls-cert", "c.pem"]).is_err());
        assert!(Config::merge(ServeArgs::default(), file("tls-key = \"k.pem\"")).is_err());
    }

    #[test]
    fn rejects_useless_limits() {
        assert!(
            Config::merge(parse(&["--max-message-bytes", "10"]), FileConfig::default()).is_err()
        );
        assert!(
            Config::merge(
                parse(&["--max-messages-per-sec", "0"]),
                FileConfig::default()
            )
            .is_err()
        );
    }

    #[test]
    fn e2ee_settings_have_defaults_flags_and_floors() {
        let c = Config::merge(ServeArgs::default(), FileConfig::default()).unwrap();
        assert!(!c.accounts.force_e2ee);
        assert_eq!(c.sfu_limits.e2ee, E2eeLimits::default());
        assert_eq!(c.sfu_limits.e2ee.commit_timeout, Duration::from_secs(5));
        let c = Config::merge(
            parse(&[
                "--force-e2ee",
                "true",
                "--mls-commit-timeout-ms",
                "750",
                "--mls-max-blob-bytes",
                "4096",
            ]),
            FileConfig::default(),
        )
        .unwrap();
        assert!(c.accounts.force_e2ee);
        assert_eq!(c.sfu_limits.e2ee.commit_timeout, Duration::from_millis(750));
        assert_eq!(c.sfu_limits.e2ee.max_blob_bytes, 4096);
        let forced = Config::merge(ServeArgs::default(), file("force-e2ee = true")).unwrap();
        assert!(forced.accounts.force_e2ee);
        for bad in [
            ["--mls-commit-timeout-ms", "0"],
            ["--mls-max-blob-bytes", "100"],
        ] {
            assert!(
                Config::merge(parse(&bad), FileConfig::default()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn discovers_loopback() {
        let ips = discover_public_ips(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).unwrap();
        assert!(ips.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(ips.iter().all(|ip| ip.is_ipv4()));
    }
}

#[cfg(test)]
mod packaged_example_tests;
