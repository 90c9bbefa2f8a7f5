//! The REST API under `/api/v1`: accounts, organisations, plans, meetings, usage, audit,
//! webhooks, calendar invitations and feeds.
//!
//! Authentication: a session cookie (`veche_session`, HttpOnly, SameSite=Lax, Secure over
//! TLS) for the browser, or `Authorization: Bearer TOKEN` for API clients — the same token.
//! Cookie-authenticated requests that change state must carry `X-CSRF-Token` equal to the
//! session's CSRF token (returned by login and `GET /auth/me`); bearer requests are exempt
//! because a browser never adds that header on its own.

mod accounts;
mod admin;
mod calendar;
mod dashboard;
mod directory;
mod error;
mod meetings;
pub mod openapi;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;
use veche_sfu::SfuHandle;

pub use error::ApiError;

use crate::auth::constant_time_eq;
use crate::directory::Directory;
use crate::sockets::LiveSockets;
use crate::store::{Actor, LockoutPolicy, NewAuditEntry, Session, Store, User};

pub(crate) const SESSION_COOKIE: &str = "veche_session";
/// Sessions last 30 days; logout or a password change ends them sooner.
pub(crate) const SESSION_TTL_SECS: i64 = 30 * 24 * 3600;

/// Where time comes from: the system clock in production, a settable one in tests (lockout
/// expiry is tested without waiting 15 minutes).
pub trait Clock: Send + Sync + 'static {
    /// Unix time in seconds.
    fn now(&self) -> i64;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// The operator's account settings (from `veche serve` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSettings {
    /// Anyone may create an account with `POST /auth/signup`.
    pub signup_open: bool,
    /// Instant meetings at `/m/{room}` without an account (enforced by the live meeting).
    pub guest_rooms: bool,
    /// Every meeting and guest room is end-to-end encrypted, whatever its setting.
    pub force_e2ee: bool,
    pub lockout: LockoutPolicy,
    /// Mark the session cookie `Secure` (the server speaks HTTPS).
    pub secure_cookies: bool,
    /// Largest request body the API reads, in bytes.
    pub max_body_bytes: usize,
}

/// Default of [`AccountSettings::max_body_bytes`]: far above any real request (a meeting
/// with every field at its limit is a few kilobytes), far below the 2 MB axum allows.
pub const DEFAULT_MAX_API_BODY_BYTES: usize = 64 * 1024;

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            signup_open: true,
            guest_rooms: true,
            force_e2ee: false,
            lockout: LockoutPolicy::DEFAULT,
            secure_cookies: false,
            max_body_bytes: DEFAULT_MAX_API_BODY_BYTES,
        }
    }
}

#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub settings: AccountSettings,
    pub clock: Arc<dyn Clock>,
    /// The media server, for the live-meeting endpoints (`None`: they answer 503).
    pub sfu: Option<SfuHandle>,
    /// The live signalling connections, to end those of a session that ends.
    pub sockets: Arc<LiveSockets>,
    /// Directory sign-in (LDAP, OpenID Connect), as configured; empty by default.
    pub directory: Arc<Directory>,
    /// Webhook settings, and the worker to wake for a test delivery.
    pub webhooks: crate::webhooks::Webhooks,
    /// Dashboard limits, live participants and forwarding rates.
    pub dashboard: crate::dashboard::Dashboard,
    /// Calendar settings (public URL, SMTP relay, limits) and the mailer to wake.
    pub calendar: crate::calendar::Calendar,
}

impl ApiState {
    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Appends to the audit log on its own, for what is not a change of stored state (a
    /// lockout, a request); a failure to log is reported but does not undo the action.
    /// Changes write their entry with them ([`crate::store::Store::audited`]).
    pub(crate) async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        org: Option<&str>,
        detail: String,
    ) {
        let entry = audit_entry(caller, action, target, org, detail);
        if let Err(e) = self.store.audit(entry, self.now()).await {
            tracing::error!(error = %e, action, "writing the audit log failed");
        }
    }
}

/// The audit entry of `caller`'s `action` on `target`.
pub(crate) fn audit_entry(
    caller: &Caller,
    action: &str,
    target: &str,
    org: Option<&str>,
    detail: String,
) -> NewAuditEntry {
    NewAuditEntry {
        actor_id: caller.user.as_ref().map(|u| u.id.clone()),
        actor_email: caller.user.as_ref().map(|u| u.email.clone()),
        ip: caller.ip.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        org_id: org.map(str::to_owned),
        detail,
    }
}

/// The `/api/v1` routes.
pub fn router(state: ApiState) -> Router {
    let body_limit = axum::extract::DefaultBodyLimit::max(state.settings.max_body_bytes);
    Router::new()
        .route("/openapi.json", get(openapi::document))
        .route("/config", get(accounts::config))
        .route("/auth/signup", post(accounts::signup))
        .route("/auth/login", post(accounts::login))
        .route("/auth/logout", post(accounts::logout))
        .route("/auth/me", get(accounts::me))
        .route("/auth/password", post(accounts::change_password))
        .route(
            "/auth/calendar",
            get(calendar::feed_status)
                .post(calendar::reset_feed)
                .delete(calendar::delete_feed),
        )
        .route("/auth/ldap", post(directory::ldap_login))
        .route("/auth/oidc/start", get(directory::oidc_start))
        .route("/auth/oidc/callback", get(directory::oidc_callback))
        .route("/plans", get(admin::list_plans))
        .route("/plans/{plan}", put(admin::update_plan))
        .route("/meetings", get(meetings::list).post(meetings::create))
        .route(
            "/meetings/{meeting}",
            get(meetings::get_one)
                .patch(meetings::update)
                .delete(meetings::delete),
        )
        .route("/meetings/{meeting}/join", post(meetings::join))
        .route("/meetings/{meeting}/invite.ics", get(calendar::invite_ics))
        .route(
            "/meetings/{meeting}/invites",
            get(calendar::list_invites).post(calendar::send_invites),
        )
        .route(
            "/meetings/{meeting}/live",
            get(meetings::live).post(meetings::control),
        )
        .route("/orgs/{org}", get(accounts::get_org))
        .route(
            "/orgs/{org}/members",
            get(accounts::list_members).post(accounts::add_member),
        )
        .route("/orgs/{org}/usage", get(admin::org_usage))
        .route("/orgs/{org}/usage/series", get(dashboard::org_series))
        .route("/orgs/{org}/audit", get(admin::org_audit))
        .route(
            "/orgs/{org}/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/orgs/{org}/webhooks/{webhook}",
            axum::routing::delete(webhooks::delete).patch(webhooks::update),
        )
        .route("/orgs/{org}/webhooks/{webhook}/test", post(webhooks::test))
        .route(
            "/orgs/{org}/webhooks/{webhook}/secret",
            post(webhooks::roll_secret),
        )
        .route(
            "/orgs/{org}/webhooks/{webhook}/deliveries",
            get(webhooks::deliveries),
        )
        .route(
            "/orgs/{org}/upgrade-requests",
            get(admin::org_upgrade_requests).post(admin::request_upgrade),
        )
        .route("/admin/users", get(admin::list_users))
        .route(
            "/admin/users/{user}",
            axum::routing::patch(admin::update_user),
        )
        .route("/admin/orgs", get(admin::list_orgs))
        .route("/admin/orgs/{org}", axum::routing::patch(admin::update_org))
        .route("/admin/usage", get(admin::all_usage))
        .route("/admin/usage/series", get(dashboard::all_series))
        .route("/admin/dashboard", get(dashboard::live))
        .route("/admin/audit", get(admin::all_audit))
        .route("/admin/upgrade-requests", get(admin::all_upgrade_requests))
        .route(
            "/admin/upgrade-requests/{request}/approve",
            post(admin::approve_upgrade),
        )
        .route(
            "/admin/upgrade-requests/{request}/decline",
            post(admin::decline_upgrade),
        )
        .fallback(|| async { ApiError::NotFound("endpoint") })
        .layer(body_limit)
        .with_state(state)
}

/// The private calendar feeds, `/calendar/{token}.ics`, outside `/api/v1`: calendar apps
/// subscribe to them with the token in the URL and no session.
pub fn feed_router(state: ApiState) -> Router {
    Router::new()
        .route("/calendar/{file}", get(calendar::feed))
        .with_state(state)
}

/// The peer's IP address, when the server runs with connect info (tests without a socket
/// have none).
pub struct ClientIp(pub Option<String>);

fn peer_ip(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(peer_ip(parts)))
    }
}

/// Who is calling: the signed-in user (if any), how they authenticated, and their address.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: Option<User>,
    pub session: Option<Session>,
    /// The raw session token, for logout.
    token: Option<String>,
    pub ip: Option<String>,
}

impl Caller {
    /// The signed-in user, or 401.
    pub fn user(&self) -> Result<&User, ApiError> {
        self.user.as_ref().ok_or(ApiError::Unauthenticated)
    }

    /// The caller as the actor of an audit entry the store writes with the change.
    pub(crate) fn actor(&self) -> Actor {
        Actor {
            id: self.user.as_ref().map(|u| u.id.clone()),
            email: self.user.as_ref().map(|u| u.email.clone()),
            ip: self.ip.clone(),
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    cookie_value(headers, SESSION_COOKIE)
}

/// The session token of a request and whether it came in the cookie (`false`: a bearer
/// token). Empty tokens count as none.
pub(crate) fn session_token(headers: &HeaderMap) -> Option<(String, bool)> {
    let (token, via_cookie) = match bearer_token(headers) {
        Some(t) => (t, false),
        None => (cookie_token(headers)?, true),
    };
    (!token.is_empty()).then(|| (token.to_owned(), via_cookie))
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let ip = peer_ip(parts);
        let Some((token, via_cookie)) = session_token(&parts.headers) else {
            return Ok(Caller {
                user: None,
                session: None,
                token: None,
                ip,
            });
        };
        // An unknown or expired token is treated as no token: public endpoints still work, and
        // protected ones answer 401.
        let Some((user, session)) = state.store.session(&token, state.now()).await? else {
            return Ok(Caller {
                user: None,
                session: None,
                token: None,
                ip,
            });
        };
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if via_cookie && !safe {
            let given = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !constant_time_eq(given.as_bytes(), session.csrf_token.as_bytes()) {
                return Err(ApiError::CsrfFailed);
            }
        }
        Ok(Caller {
            user: Some(user),
            session: Some(session),
            token: Some(token),
            ip,
        })
    }
}

/// `axum::Json` with its rejections turned into our 400 `bad_request` errors.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(value))
    }
}

/// The raw body with rejections (a body over `--max-api-body-bytes`) as API errors.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(RawBody(Bytes::from_request(req, state).await?))
    }
}

/// Path parameters with rejections as API errors.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(v) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(v))
    }
}

/// Query strings with rejections as API errors.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(v))
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
