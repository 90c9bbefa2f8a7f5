//! The connectivity check behind the `/check` page: `GET /check/ws` is a signalling
//! connection that the server joins at once to a private room of its own (an unguessable
//! name, room for one, a short time limit), so the page can open a real peer connection to
//! this server's media ports, one network path at a time; `GET /check/download` sends a
//! fixed number of incompressible bytes for a download-speed measurement.
//!
//! Both are open to anyone who can load the page, so both are counted per address
//! ([`CheckBudget`]): a page run costs one unit per probe and one for the download.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use tracing::{Instrument, info, info_span, warn};
use veche_proto::{PROTOCOL_VERSION, Role};
use veche_sfu::{JoinGrant, JoinRequest};

use crate::api::ApiError;
use crate::state::AppState;
use crate::ws::{Session, Timers, codec_limit};

/// Bytes `GET /check/download` sends.
pub(crate) const DOWNLOAD_BYTES: usize = 2 * 1024 * 1024;
/// How long a check session may last: the SFU ends its room after this.
pub(crate) const SESSION_MAX: Duration = Duration::from_secs(90);
/// The start of every check room's name; a `join` to such a room is refused.
pub(crate) const ROOM_PREFIX: &str = "check.";
/// The display name of a check participant (no one else sees it).
const CHECK_NAME: &str = "check";

/// How many check units (probe sessions and downloads) one address may spend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckLimits {
    /// Units per address per window.
    pub(crate) per_window: u32,
    pub(crate) window: Duration,
    /// Addresses tracked at once; when full (and none has expired) new addresses are refused,
    /// so a spread of sources cannot grow the table without bound.
    pub(crate) max_addresses: usize,
}

impl Default for CheckLimits {
    fn default() -> Self {
        // A page run spends five units (four probes and a download): six runs a minute.
        CheckLimits {
            per_window: 30,
            window: Duration::from_secs(60),
            max_addresses: 10_000,
        }
    }
}

/// Why a check was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// This address spent its units for the window.
    AddressOverBudget,
    /// The table of addresses is full.
    TooManyAddresses,
}

/// A fixed-window counter per address. Time comes in as a value.
#[derive(Debug)]
pub(crate) struct CheckBudget {
    limits: CheckLimits,
    /// Window start and units spent in it, per address.
    spent: HashMap<IpAddr, (Instant, u32)>,
}

impl CheckBudget {
    pub(crate) fn new(limits: CheckLimits) -> CheckBudget {
        CheckBudget {
            limits,
            spent: HashMap::new(),
        }
    }

    /// Spends one unit for `ip` at `now`, or says why not.
    pub(crate) fn spend(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refused> {
        let window = self.limits.window;
        let expired = |start: Instant| now.saturating_duration_since(start) >= window;
        if !self.spent.contains_key(&ip) && self.spent.len() >= self.limits.max_addresses {
            self.spent.retain(|_, (start, _)| !expired(*start));
            if self.spent.len() >= self.limits.max_addresses {
                return Err(Refused::TooManyAddresses);
            }
        }
        let (start, used) = self.spent.entry(ip).or_insert((now, 0));
        if expired(*start) {
            *start = now;
            *used = 0;
        }
        if *used >= self.limits.per_window {
            return Err(Refused::AddressOverBudget);
        }
        *used += 1;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn addresses(&self) -> usize {
        self.spent.len()
    }
}

/// The shared [`CheckBudget`] of the server.
#[derive(Debug)]
pub(crate) struct CheckLimiter(Mutex<CheckBudget>);

impl CheckLimiter {
    pub(crate) fn new(limits: CheckLimits) -> CheckLimiter {
        CheckLimiter(Mutex::new(CheckBudget::new(limits)))
    }

    fn spend(&self, ip: IpAddr) -> Result<(), Refused> {
        // A poisoned lock means a panic while holding it, in code that cannot panic; the
        // budget is still a valid table, so carry on with it.
        let mut budget = self.0.lock().unwrap_or_else(|p| p.into_inner());
        budget.spend(ip, Instant::now())
    }
}

impl Default for CheckLimiter {
    fn default() -> Self {
        CheckLimiter::new(CheckLimits::default())
    }
}

fn refusal(peer: SocketAddr, why: Refused, what: &'static str) -> Response {
    match why {
        Refused::AddressOverBudget => {
            info!(%peer, what, "connectivity check refused: over the per-address budget")
        }
        Refused::TooManyAddresses => {
            warn!(%peer, what, "connectivity check refused: too many addresses checking at once")
        }
    }
    ApiError::TooManyChecks.into_response()
}

/// The join a check session makes: a room no one can guess, with room for one participant
/// and a short time limit.
fn check_join(ip: IpAddr) -> JoinRequest {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let room = bytes.iter().fold(String::from(ROOM_PREFIX), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    });
    JoinRequest {
        version: PROTOCOL_VERSION,
        room,
        name: CHECK_NAME.into(),
        grant: JoinGrant {
            role: Role::Guest,
            ip: Some(ip),
            max_participants: Some(1),
            max_duration: Some(SESSION_MAX),
            ..JoinGrant::default()
        },
        resume: None,
        e2ee: false,
        require_e2ee: false,
    }
}

/// `GET /check/ws`: a signalling connection already joined to a private check room. The
/// client answers the server's offer and trickles candidates as in a meeting; a `join` on it
/// is refused as "already joined".
pub(crate) async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
) -> Response {
    let max = state.limits.max_connections_per_ip;
    let Some(admission) = state.sockets.admit(peer.ip(), max) else {
        info!(%peer, max, "check WebSocket refused: too many connections from this address");
        return ApiError::TooManyConnections(max).into_response();
    };
    if let Err(why) = state.checks.spend(peer.ip()) {
        return refusal(peer, why, "session");
    }
    let hard = codec_limit(&state.limits);
    ws.max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| async move {
            use futures_util::StreamExt;
            let conn = state.sfu.connect();
            let span = info_span!("check", participant = conn.id, %peer);
            let (tx, rx) = socket.split();
            let session = Session {
                sfu: state.sfu.as_ref(),
                gate: &state.gate,
                identity: crate::gate::Identity::default(),
                // A check is over when its socket is: it keeps no place.
                limits: crate::config::WsLimits {
                    reattach_grace: std::time::Duration::ZERO,
                    ..state.limits
                },
                timers: Timers::default(),
                stats: &state.stats,
                ended: admission.ended.clone(),
                turn: state.turn.as_deref(),
                places: &state.places,
            };
            state.sfu.join(conn.id, check_join(peer.ip()));
            session
                .run(tx, rx, conn, state.shutdown.clone(), || {})
                .instrument(span)
                .await;
            drop(admission);
        })
}

/// The download's bytes: made once, random so that no compression on the way shrinks them.
fn download_body() -> &'static Arc<[u8]> {
    static BODY: OnceLock<Arc<[u8]>> = OnceLock::new();
    BODY.get_or_init(|| {
        let mut bytes = vec![0u8; DOWNLOAD_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        bytes.into()
    })
}

/// `GET /check/download`: [`DOWNLOAD_BYTES`] bytes, never cached.
pub(crate) async fn download(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
) -> Response {
    if let Err(why) = state.checks.spend(peer.ip()) {
        return refusal(peer, why, "download");
    }
    let body = Arc::clone(download_body());
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from(axum::body::Bytes::from_owner(ArcBytes(body))),
    )
        .into_response()
}

/// Lets [`axum::body::Bytes`] borrow the shared download without copying it.
struct ArcBytes(Arc<[u8]>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn an_address_gets_its_units_per_window_and_then_again() {
        let limits = CheckLimits {
            per_window: 3,
            window: Duration::from_secs(60),
            max_addresses: 10,
        };
        let mut budget = CheckBudget::new(limits);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(budget.spend(ip(1), t0), Ok(()));
        }
        assert_eq!(budget.spend(ip(1), t0), Err(Refused::AddressOverBudget));
        // Another address has its own budget.
        assert_eq!(budget.spend(ip(2), t0), Ok(()));
        assert_eq!(
            budget.spend(ip(1), t0 + Duration::from_secs(59)),
            Err(Refused::AddressOverBudget)
        );
        assert_eq!(budget.spend(ip(1), t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn the_address_table_is_bounded_and_expired_entries_make_room() {
        let limits = CheckLimits {
            per_window: 5,
            window: Duration::from_secs(60),
            max_addresses: 3,
        };
        let mut budget = CheckBudget::new(limits);
        let t0 = Instant::now();
        for n in 1..=3 {
            assert_eq!(budget.spend(ip(n), t0), Ok(()));
        }
        assert_eq!(budget.spend(ip(4), t0), Err(Refused::TooManyAddresses));
        // Known addresses still spend.
        assert_eq!(budget.spend(ip(1), t0), Ok(()));
        assert_eq!(budget.addresses(), 3);
        // Once the windows are over, the table is pruned for a newcomer.
        assert_eq!(budget.spend(ip(4), t0 + Duration::from_secs(61)), Ok(()));
        assert_eq!(budget.addresses(), 1);
    }

    #[test]
    fn check_rooms_are_private_and_valid() {
        let a = check_join(ip(1));
        let b = check_join(ip(1));
        assert_ne!(a.room, b.room);
        assert_eq!(a.room.len(), ROOM_PREFIX.len() + 32);
        assert!(a.room.len() <= 64);
        assert_eq!(a.grant.max_participants, Some(1));
        assert_eq!(a.grant.max_duration, Some(SESSION_MAX));
        assert_eq!(a.grant.meeting, None);
    }
}
