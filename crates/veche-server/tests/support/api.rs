//! The API under test without sockets: the real `/api/v1` router over a real SQLite file,
//! with a clock the test sets.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use veche_server::api::{AccountSettings, ApiState, Clock};
use veche_server::store::{NewUser, OrgRole, Store, User, UserRole};
use veche_sfu::{Limits, SfuConfig, SfuHandle};

pub(crate) const T0: i64 = 1_800_000_000;

#[derive(Debug)]
pub(crate) struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub(crate) struct App {
    pub(crate) store: Store,
    pub(crate) clock: Arc<ManualClock>,
    router: axum::Router,
    dir: std::path::PathBuf,
    pub(crate) sfu: SfuHandle,
}

impl Drop for App {
    fn drop(&mut self) {
        // Each App has its own SFU threads and sockets; a test binary makes dozens of Apps.
        self.sfu.shutdown();
        // The pool may still hold the file open; unlinking it is fine on Unix.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One response, with its body parsed as JSON (`Null` when empty).
#[derive(Debug)]
pub(crate) struct Res {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl Res {
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Auth<'a> {
    None,
    Bearer(&'a str),
    /// Session cookie, with an optional X-CSRF-Token header.
    Cookie(&'a str, Option<&'a str>),
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl App {
    pub(crate) async fn new(settings: AccountSettings) -> App {
        let dir = std::env::temp_dir().join(format!(
            "veche-api-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&veche_server::store::sqlite_url_in(&dir))
            .await
            .unwrap();
        let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
        // A real SFU on a loopback port: the live-meeting endpoints talk to it.
        let sfu = SfuHandle::spawn(SfuConfig {
            media_bind: "127.0.0.1:0".parse().unwrap(),
            ice_tcp_port: None,
            public_ips: vec!["127.0.0.1".parse().unwrap()],
            limits: Limits::default(),
            resume_key: veche_sfu::ResumeKey::random(),
        })
        .unwrap();
        let router = veche_server::api::router(ApiState {
            store: store.clone(),
            settings,
            clock: clock.clone(),
            sfu: Some(sfu.clone()),
            sockets: Arc::default(),
            directory: Arc::default(),
            webhooks: Default::default(),
            dashboard: Default::default(),
            calendar: Default::default(),
        });
        App {
            store,
            clock,
            router,
            dir,
            sfu,
        }
    }

    pub(crate) fn advance(&self, secs: i64) {
        self.clock.0.fetch_add(secs, Ordering::Relaxed);
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }

    /// A request from `ip` (as the server's connect info would give it).
    pub(crate) async fn call_from(
        &self,
        ip: Option<&str>,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        body: Option<Body>,
        content_type: Option<&str>,
    ) -> Res {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
            .uri(path)
            // As every HTTP/1.1 client sends; links in calendar files are built from it.
            .header(header::HOST, "veche.test");
        match auth {
            Auth::None => {}
            Auth::Bearer(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
            Auth::Cookie(t, csrf) => {
                req = req.header(header::COOKIE, format!("theme=dark; veche_session={t}"));
                if let Some(c) = csrf {
                    req = req.header("x-csrf-token", c);
                }
            }
        }
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let mut req = req.body(body.unwrap_or_else(Body::empty)).unwrap();
        if let Some(ip) = ip {
            let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
            req.extensions_mut().insert(ConnectInfo(addr));
        }
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| ct.starts_with("application/json"));
        let body = if bytes.is_empty() {
            Value::Null
        } else if !json {
            // A calendar file or a CSV download: its text, for the test to read.
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{method} {path}: body is not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Res {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> Res {
        let (body, ct) = match body {
            Some(v) => (Some(Body::from(v.to_string())), Some("application/json")),
            None => (None, None),
        };
        self.call_from(
            None,
            method,
            &format!("/{}", path.trim_start_matches('/')),
            auth,
            body,
            ct,
        )
        .await
    }

    /// Creates an account directly in the store.
    pub(crate) async fn user(
        &self,
        email: &str,
        org: Option<&str>,
        org_role: OrgRole,
        role: UserRole,
    ) -> User {
        let user = self
            .store
            .create_user(
                NewUser {
                    email: email.into(),
                    name: email.split('@').next().unwrap().into(),
                    password: password_of(email),
                    role: UserRole::User,
                    org_id: org.map(str::to_owned),
                    org_name: None,
                    org_role,
                },
                T0,
            )
            .await
            .unwrap();
        if role == UserRole::Admin {
            self.store.set_user_role(&user.id, role).await.unwrap();
        }
        self.store.user(&user.id).await.unwrap().unwrap()
    }

    /// Runs one SQL statement on the app's database file, behind the store's back (a test
    /// that breaks the database on purpose).
    pub(crate) async fn sql(&self, statement: &str) {
        use sqlx::Connection as _;
        let mut c = sqlx::SqliteConnection::connect(&veche_server::store::sqlite_url_in(&self.dir))
            .await
            .unwrap();
        sqlx::raw_sql(statement).execute(&mut c).await.unwrap();
    }

    /// A bearer token for `user`, without going through login (no password hashing).
    pub(crate) async fn token(&self, user: &User) -> String {
        self.store
            .create_session(&user.id, self.now(), 3600)
            .await
            .unwrap()
            .0
    }
}

pub(crate) fn password_of(email: &str) -> String {
    format!("pw-{email}")
}
