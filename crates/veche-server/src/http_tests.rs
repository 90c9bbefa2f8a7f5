//! Router tests without sockets: requests go straight into the service.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tower::ServiceExt;
use veche_proto::{ClientMessage, ParticipantId};
use veche_sfu::{Connection, SfuMetrics};

use super::{WebAssets, content_security_policy, content_type, router};
use crate::config::WsLimits;
use crate::state::{AppState, SfuApi, WsStats};

struct StaticSfu;

impl SfuApi for StaticSfu {
    fn connect(&self) -> Connection {
        unreachable!("no WebSocket in these tests")
    }
    fn send(&self, _: ParticipantId, _: ClientMessage) {}
    fn join(&self, _: ParticipantId, _: veche_sfu::JoinRequest) {}
    fn disconnect(&self, _: ParticipantId) {}
    fn metrics(&self) -> SfuMetrics {
        SfuMetrics {
            rooms: 2,
            participants: 5,
            forwarded_packets: 1000,
            forwarded_bytes: 123_456,
            send_dropped: 7,
            ice_tcp_connections: 3,
            ice_tcp_refused: 4,
            ice_tcp_dropped: 5,
        }
    }
}

fn app() -> axum::Router {
    let (_tx, shutdown) = watch::channel(false);
    router(AppState {
        sfu: Arc::new(StaticSfu),
        limits: WsLimits {
            max_message_bytes: 65536,
            max_messages_per_sec: 50,
            message_burst: 100,
            max_connections_per_ip: 100,
            reattach_grace: std::time::Duration::from_secs(30),
            reattach_replay_bytes: 1 << 20,
        },
        gate: Arc::new(crate::gate::JoinGate::guest_rooms_only()),
        stats: Arc::new(WsStats::default()),
        shutdown,
        sockets: Arc::default(),
        http: Arc::default(),
        turn: None,
        checks: Arc::default(),
        places: Arc::default(),
        webhooks: Arc::default(),
    })
}

async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::get(path)
        .header(header::HOST, "127.0.0.1:8080")
        .body(Body::empty())
        .unwrap();
    let res = app().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn healthz() {
    let (status, _, body) = get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "ok\n");
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let (status, headers, body) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    for line in [
        "# TYPE veche_rooms gauge",
        "veche_rooms 2",
        "veche_participants 5",
        "# TYPE veche_forwarded_packets_total counter",
        "veche_forwarded_packets_total 1000",
        "veche_forwarded_bytes_total 123456",
        "# TYPE veche_media_send_dropped_total counter",
        "veche_media_send_dropped_total 7",
        "veche_ice_tcp_connections 3",
        "veche_ice_tcp_refused_total 4",
        "veche_ice_tcp_dropped_total 5",
        "veche_ws_connections 0",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
}

#[tokio::test]
async fn index_and_meeting_pages_are_the_same_entry_point() {
    let (status, headers, home) = get("/").await;
    if WebAssets::get("index.html").is_none() {
        // The web client has not been written yet; nothing more to check.
        assert_eq!(status, StatusCode::NOT_FOUND);
        return;
    }
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let (status, _, meeting) = get("/m/some-room").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(home, meeting);
}

#[tokio::test]
async fn every_embedded_file_is_served_at_its_path() {
    for path in WebAssets::iter() {
        let (status, headers, _) = get(&format!("/{path}")).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], content_type(&path), "{path}");
    }
}

#[tokio::test]
async fn unknown_paths_are_404_with_headers() {
    let (status, headers, _) = get("/no/such/file.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
    let (status, _, _) = get("/../Cargo.toml").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn csp_names_only_our_own_origin() {
    let (_, headers, _) = get("/healthz").await;
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;"));
    assert!(csp.contains("media-src 'self' blob: mediastream:"));
    assert!(!csp.contains("http"));
    // A hostile Host header is not echoed.
    assert!(!content_security_policy(None).contains("ws:"));
    assert!(!super::is_plain_host("a; script-src *"));
}

#[tokio::test]
async fn etag_revalidation() {
    let Some(path) = WebAssets::iter().next() else {
        return;
    };
    let (_, headers, _) = get(&format!("/{path}")).await;
    let etag = headers[header::ETAG].clone();
    let req = Request::get(format!("/{path}"))
        .header(header::IF_NONE_MATCH, etag)
        .body(Body::empty())
        .unwrap();
    let res = app().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
}

#[test]
fn content_types() {
    assert_eq!(content_type("js/app.js"), "text/javascript; charset=utf-8");
    assert_eq!(content_type("style.CSS"), "text/css; charset=utf-8");
    assert_eq!(content_type("noext"), "application/octet-stream");
}
