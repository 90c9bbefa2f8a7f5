//! The REST API (`/api/v1`) as a client reaches it: the real router over a real SQLite store
//! and a real SFU on loopback, one request per input, through `tower::ServiceExt::oneshot`.
//! What is fuzzed is everything a caller controls besides the URL's shape: the JSON bodies
//! (every request type in `veche-server/src/api/*.rs` and the validation after it), query
//! strings, path segments, the content type, how the caller authenticates.
//!
//! # Input format
//! `route: u8, auth: u8, content_type: u8, ip: u8, rest...`: `route % ROUTES.len()` picks the
//! endpoint; `rest` is its body, or its query string or path segment (percent-encoded) for
//! the routes that take one.
//!
//! # What must hold
//! No answer is a server error (5xx): every input here is the client's fault or fine, and a
//! 5xx would mean a handler let bad input reach the store or panicked. Every error answer is
//! the JSON error format (`{"error": {"code": ...}}`).
//!
//! The store and the SFU live as long as the process (setting them up costs a database
//! migration and four Argon2 hashes), so an input can see the effects of earlier ones: a
//! crash found by libFuzzer may need the inputs before it (`-runs` over the corpus
//! reproduces it in order).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use veche_server::api::{AccountSettings, ApiState, Clock, SystemClock};
use veche_server::store::{NewUser, OrgRole, Store, UserRole};
use veche_sfu::{Limits, SfuConfig, SfuHandle};

/// How the body bytes are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rest {
    Body,
    Query,
    Segment,
}

/// `(method, path, how rest is used)`; `{m}` is a meeting of the member, `{org}` the member's
/// organisation, `{user}` the member, `{}` the percent-encoded input.
const ROUTES: [(&str, &str, Rest); 18] = [
    ("POST", "/auth/signup", Rest::Body),
    ("POST", "/auth/login", Rest::Body),
    ("POST", "/auth/password", Rest::Body),
    ("PUT", "/plans/free", Rest::Body),
    ("POST", "/meetings", Rest::Body),
    ("PATCH", "/meetings/{m}", Rest::Body),
    ("POST", "/meetings/{m}/join", Rest::Body),
    ("POST", "/meetings/{m}/live", Rest::Body),
    ("POST", "/orgs/{org}/members", Rest::Body),
    ("POST", "/orgs/{org}/upgrade-requests", Rest::Body),
    ("PATCH", "/admin/users/{user}", Rest::Body),
    ("PATCH", "/admin/orgs/{org}", Rest::Body),
    ("GET", "/orgs/{org}/usage?{}", Rest::Query),
    ("GET", "/admin/audit?{}", Rest::Query),
    ("GET", "/admin/upgrade-requests?{}", Rest::Query),
    ("GET", "/orgs/{org}/audit?{}", Rest::Query),
    ("GET", "/meetings/{}", Rest::Segment),
    ("POST", "/admin/upgrade-requests/{}/approve", Rest::Segment),
];

const CONTENT_TYPES: [Option<&str>; 5] = [
    Some("application/json"),
    None,
    Some("text/plain"),
    Some("application/json; charset=utf-8"),
    Some("application/x-www-form-urlencoded"),
];

struct Harness {
    rt: tokio::runtime::Runtime,
    app: App,
}

/// The router and the ids the routes are filled in with.
struct App {
    router: axum::Router,
    meeting: String,
    org: String,
    user: String,
    /// Bearer tokens: the operator's, the member's.
    operator: String,
    member: String,
    member_csrf: String,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

fn harness() -> &'static Harness {
    HARNESS.get_or_init(Harness::new)
}

/// Removes the stores of earlier fuzzing processes that are gone.
fn remove_stale_dirs(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(prefix)
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Harness {
    fn new() -> Harness {
        // Setup failures are the machine's, not the code under test's: say so and stop.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("harness: tokio runtime");
        remove_stale_dirs("veche-fuzz-api-");
        let dir = std::env::temp_dir().join(format!("veche-fuzz-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("harness: temp dir");
        let app = rt.block_on(async {
            let store = Store::open(&veche_server::store::sqlite_url_in(&dir))
                .await
                .expect("harness: store");
            let sfu = SfuHandle::spawn(SfuConfig {
                media_bind: "127.0.0.1:0".parse().expect("literal"),
                ice_tcp_port: None,
                public_ips: vec!["127.0.0.1".parse().expect("literal")],
                limits: Limits::default(),
                resume_key: veche_sfu::ResumeKey::random(),
            })
            .expect("harness: sfu");
            let now = SystemClock.now();
            let mut users = Vec::new();
            for (email, role) in [
                ("operator@fuzz.test", UserRole::Admin),
                ("member@fuzz.test", UserRole::User),
            ] {
                let user = store
                    .create_user(
                        NewUser {
                            email: email.into(),
                            name: "Fuzz".into(),
                            password: "fuzz-password-1".into(),
                            role: UserRole::User,
                            org_id: None,
                            org_name: None,
                            org_role: OrgRole::Admin,
                        },
                        now,
                    )
                    .await
                    .expect("harness: user");
                if role == UserRole::Admin {
                    store
                        .set_user_role(&user.id, role)
                        .await
                        .expect("harness: operator");
                }
                let (token, session) = store
                    .create_session(&user.id, now, 24 * 3600)
                    .await
                    .expect("harness: session");
                users.push((user, token, session.csrf_token));
            }
            let router = veche_server::api::router(ApiState {
                store,
                settings: AccountSettings::default(),
                clock: Arc::new(SystemClock),
                sfu: Some(sfu),
                sockets: Arc::default(),
                directory: Arc::default(),
                webhooks: Default::default(),
                dashboard: Default::default(),
                calendar: Default::default(),
            });
            let (member_user, member, member_csrf) = users.pop().expect("two users");
            let (_, operator, _) = users.pop().expect("two users");
            let (status, body) = request(
                &router,
                Method::POST,
                "/meetings".into(),
                Auth::Bearer(&member),
                Some("application/json"),
                None,
                br#"{"title":"fuzz"}"#.to_vec(),
            )
            .await;
            assert!(
                status < 300,
                "harness: creating a meeting got {status} {body}"
            );
            App {
                router,
                meeting: body["id"].as_str().expect("meeting id").to_owned(),
                org: member_user.org_id,
                user: member_user.id,
                operator,
                member,
                member_csrf,
            }
        });
        Harness { rt, app }
    }
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    /// Session cookie, with the CSRF header or without.
    Cookie(&'a str, Option<&'a str>),
}

async fn request(
    router: &axum::Router,
    method: Method,
    path: String,
    auth: Auth<'_>,
    content_type: Option<&str>,
    ip: Option<SocketAddr>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut req = Request::builder().method(method.clone()).uri(&path);
    match auth {
        Auth::None => {}
        Auth::Bearer(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
        Auth::Cookie(t, csrf) => {
            req = req.header(header::COOKIE, format!("veche_session={t}"));
            if let Some(c) = csrf {
                req = req.header("x-csrf-token", c);
            }
        }
    }
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    // Method, path (percent-encoded) and headers are built from valid parts: cannot fail.
    let mut req = req.body(Body::from(body)).expect("request parts are valid");
    if let Some(addr) = ip {
        req.extensions_mut().insert(ConnectInfo(addr));
    }
    let res = match router.clone().oneshot(req).await {
        Ok(res) => res,
        Err(e) => match e {},
    };
    let status = res.status().as_u16();
    let bytes = res
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: reading the answer failed: {e}"))
        .to_bytes();
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{method} {path}: {status} answer is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, body)
}

/// Percent-encodes everything but unreserved characters (and `=`/`&` in a query).
fn encode(bytes: &[u8], query: bool) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (query && b"=&".contains(&b)) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

pub fn run(data: &[u8]) {
    let _ = status(data);
}

/// Sends the request `data` describes and checks the answer; returns its status (`None`
/// for an input too short to name a request).
pub fn status(data: &[u8]) -> Option<u16> {
    let [route, auth, ctype, ip, rest @ ..] = data else {
        return None;
    };
    let h = harness();
    let app = &h.app;
    let (method, template, how) = ROUTES[usize::from(*route) % ROUTES.len()];
    let mut path = format!("/{}", template.trim_start_matches('/'))
        .replace("{m}", &app.meeting)
        .replace("{org}", &app.org)
        .replace("{user}", &app.user);
    let body = match how {
        Rest::Body => rest.to_vec(),
        Rest::Query => {
            path = path.replace("{}", &encode(rest, true));
            Vec::new()
        }
        Rest::Segment => {
            path = path.replace("{}", &encode(rest, false));
            Vec::new()
        }
    };
    let auth = match auth % 5 {
        0 => Auth::None,
        1 => Auth::Bearer(&app.operator),
        2 => Auth::Bearer(&app.member),
        3 => Auth::Cookie(&app.member, Some(&app.member_csrf)),
        _ => Auth::Cookie(&app.member, None),
    };
    let content_type = CONTENT_TYPES[usize::from(*ctype) % CONTENT_TYPES.len()];
    // Mostly one address (so lockouts engage), sometimes none, sometimes another.
    let ip = match ip % 8 {
        0 => None,
        n => Some(SocketAddr::from(([127, 0, 0, n], 40_000))),
    };
    // `Method::from_bytes` of these literals cannot fail.
    let method = Method::from_bytes(method.as_bytes()).expect("literal method");
    let (status, answer) = h.rt.block_on(request(
        &app.router,
        method.clone(),
        path.clone(),
        auth,
        content_type,
        ip,
        body,
    ));
    assert!(
        status < 500,
        "{method} {path} with {:?}: server error {status}: {answer}",
        String::from_utf8_lossy(rest)
    );
    if status >= 400 {
        assert!(
            answer["error"]["code"].is_string(),
            "{method} {path}: {status} answer is not the error format: {answer}"
        );
    }
    Some(status)
}
