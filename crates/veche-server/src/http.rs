//! The HTTP surface: the embedded web client, `/healthz`, `/metrics`, the `/ws` upgrade and
//! the REST API under `/api/v1`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

use crate::api::{self, ApiError, ApiState};
use crate::auth::constant_time_eq;
use crate::check;
use crate::state::{AppState, HttpPolicy, MetricsAccess};
use crate::ws;

/// The browser client: plain files from `web/` at the repository root, compiled in (in debug
/// builds too, via rust-embed's `debug-embed`) so the binary is all an operator needs.
/// The client's developer files (notes, type-check config) stay out of the binary.
#[derive(RustEmbed)]
#[folder = "../../web/"]
#[exclude = "*.md"]
#[exclude = "tsconfig.json"]
#[exclude = "*.d.ts"]
#[exclude = "*.test.js"]
struct WebAssets;

/// The site without the API (the web-layer tests need no database).
#[cfg(test)]
pub(crate) fn router(state: AppState) -> Router {
    router_with_api(state, None)
}

/// The whole site; with `api`, the REST API is mounted at `/api/v1`.
pub(crate) fn router_with_api(state: AppState, api: Option<ApiState>) -> Router {
    let policy = Arc::clone(&state.http);
    let pages = Router::new()
        // The client is a single page that reads `location.pathname` to pick the screen, so
        // every page route serves the same entry point.
        .route("/", get(index))
        .route("/m/{room}", get(index))
        .route("/j/{meeting}", get(index))
        .route("/login", get(index))
        .route("/signup", get(index))
        .route("/meetings", get(index))
        .route("/account", get(index))
        .route("/admin", get(index))
        .route("/check", get(index))
        .route("/check/ws", get(check::upgrade))
        .route("/check/download", get(check::download))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/ws", get(ws::upgrade))
        .fallback(static_file)
        .with_state(state);
    let app = match api {
        Some(api_state) => pages
            .merge(api::feed_router(api_state.clone()))
            .nest("/api/v1", api::router(api_state)),
        None => pages,
    };
    app.layer(middleware::from_fn_with_state(policy, security_headers))
}

async fn index(headers: HeaderMap) -> Response {
    serve_asset("index.html", &headers)
}

async fn static_file(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    serve_asset(path, &headers)
}

fn serve_asset(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = WebAssets::get(path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    // The content hash makes a strong validator: browsers revalidate every time (no-cache)
    // and get a 304 while the binary is unchanged.
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let status = if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let body = if not_modified {
        Body::empty()
    } else {
        Body::from(file.data.into_owned())
    };
    (
        status,
        [
            (header::CONTENT_TYPE, content_type(path)),
            (header::CACHE_CONTROL, "no-cache"),
            (header::ETAG, etag.as_str()),
        ],
        body,
    )
        .into_response()
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, ext)| ext);
    match ext.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Prometheus text exposition format, rendered by hand: a handful of numbers do not need a
/// metrics registry.
async fn metrics(State(state): State<AppState>, parts: Parts) -> Response {
    if let Err(refused) = metrics_allowed(&state.http.metrics, &parts) {
        return refused.into_response();
    }
    let sfu = state.sfu.metrics();
    let ws_connections = state.stats.connections.load(Ordering::Relaxed);
    let rejected = state.stats.rejected_messages.load(Ordering::Relaxed);
    let hasher = state.gate.store().map(|s| s.hasher());
    let verifications = hasher.map_or(0, |h| h.verifications());
    let hash_busy = hasher.map_or(0, |h| h.busy_refusals());
    let hooks = &state.webhooks;
    let rows: [(&str, &str, &str, u64); 16] = [
        (
            "veche_rooms",
            "gauge",
            "Rooms with at least one participant.",
            sfu.rooms,
        ),
        (
            "veche_participants",
            "gauge",
            "Participants in all rooms.",
            sfu.participants,
        ),
        (
            "veche_forwarded_packets_total",
            "counter",
            "RTP packets forwarded to subscribers.",
            sfu.forwarded_packets,
        ),
        (
            "veche_forwarded_bytes_total",
            "counter",
            "RTP payload bytes forwarded to subscribers.",
            sfu.forwarded_bytes,
        ),
        (
            "veche_media_send_dropped_total",
            "counter",
            "Media datagrams dropped because the socket buffer was full or the kernel refused them.",
            sfu.send_dropped,
        ),
        (
            "veche_ice_tcp_connections",
            "gauge",
            "Open ICE-TCP media connections.",
            sfu.ice_tcp_connections,
        ),
        (
            "veche_ice_tcp_refused_total",
            "counter",
            "ICE-TCP connections refused on accept for a limit (in total or per address).",
            sfu.ice_tcp_refused,
        ),
        (
            "veche_ice_tcp_dropped_total",
            "counter",
            "Media frames not sent on ICE-TCP because the connection's send queue was full.",
            sfu.ice_tcp_dropped,
        ),
        (
            "veche_ws_connections",
            "gauge",
            "Open signalling WebSocket connections.",
            ws_connections,
        ),
        (
            "veche_ws_rejected_messages_total",
            "counter",
            "Signalling messages refused (too large, rate limited, binary, unparsable).",
            rejected,
        ),
        (
            "veche_password_verifications_total",
            "counter",
            "Password and passcode verifications computed (dummy ones for unknown accounts included).",
            verifications,
        ),
        (
            "veche_password_hash_busy_total",
            "counter",
            "Requests answered 503 because every password-hashing slot stayed busy.",
            hash_busy,
        ),
        (
            "veche_webhook_events_dropped_total",
            "counter",
            "Webhook events dropped because the queue was full or the delivery log could not be written.",
            hooks.dropped.load(Ordering::Relaxed),
        ),
        (
            "veche_webhook_deliveries_total",
            "counter",
            "Webhook deliveries the receiver accepted (2xx).",
            hooks.delivered.load(Ordering::Relaxed),
        ),
        (
            "veche_webhook_failed_attempts_total",
            "counter",
            "Webhook delivery attempts that failed (each retry counts).",
            hooks.failed_attempts.load(Ordering::Relaxed),
        ),
        (
            "veche_webhook_deliveries_failed_total",
            "counter",
            "Webhook deliveries given up after their last attempt.",
            hooks.failed.load(Ordering::Relaxed),
        ),
    ];
    let mut body = String::new();
    for (name, kind, help, value) in rows {
        let _ = writeln!(
            body,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Whether this request may read `/metrics`: its peer is in the allowed ranges (when there
/// are any) and it carries the token (when there is one). A request whose peer address is
/// unknown is outside every range.
fn metrics_allowed(access: &MetricsAccess, parts: &Parts) -> Result<(), ApiError> {
    if !access.allow.is_empty() {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        if !peer.is_some_and(|ip| access.allow.iter().any(|net| net.contains(ip))) {
            return Err(ApiError::MetricsForbidden);
        }
    }
    if let Some(token) = &access.token {
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
            return Err(ApiError::MetricsToken);
        }
    }
    Ok(())
}

/// Locks the page down to its own origin: no CDN, no inline script, no framing. The
/// signalling WebSocket is the only connection the page opens, to the host it came from.
/// Under TLS, HSTS tells browsers to use HTTPS only for this host.
async fn security_headers(
    State(policy): State<Arc<HttpPolicy>>,
    req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| is_plain_host(h))
        .map(str::to_owned);
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(host.as_deref())) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(self), microphone=(self), display-capture=(self)"),
    );
    if let Some(hsts) = &policy.hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    response
}

fn content_security_policy(host: Option<&str>) -> String {
    // 'self' covers same-origin WebSockets in CSP Level 3 browsers; naming the host's ws: and
    // wss: URLs covers older ones without opening connect-src to other hosts.
    let connect = match host {
        Some(h) => format!("'self' ws://{h} wss://{h}"),
        None => "'self'".to_owned(),
    };
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         media-src 'self' blob: mediastream:; connect-src {connect}; font-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// A `Host` header we are willing to echo into the CSP: a name or IP literal and a port,
/// nothing that could end the directive.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
