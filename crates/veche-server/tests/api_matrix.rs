//! The authorisation matrix: every endpoint of the OpenAPI document, tried as each kind of
//! caller — guest, member, co-host, host, organisation admin, operator admin, and an admin
//! of another organisation. Only the expected ones succeed; the others get the expected
//! 401/403/404. An endpoint added to the document without a row here fails the test.

use crate::api as support;

use serde_json::{Value, json};
use support::{App, Auth, password_of};
use veche_proto::{PROTOCOL_VERSION, Role, ServerMessage};
use veche_server::api::AccountSettings;
use veche_server::api::openapi::ROUTES;
use veche_server::store::{NewMeeting, NewWebhookEndpoint, OrgRole, RequestStatus, User, UserRole};
use veche_sfu::{Connection, JoinGrant, JoinRequest, MeetingRef, UserRef};

const ROLES: [&str; 7] = [
    "guest",
    "member",
    "co-host",
    "host",
    "org admin",
    "operator",
    "other org",
];

/// Expected status per role, in the order of [`ROLES`].
fn expected(method: &str, path: &str) -> Option<[u16; 7]> {
    const ALL_OK: [u16; 7] = [200; 7];
    const USER_OK: [u16; 7] = [401, 200, 200, 200, 200, 200, 200];
    const ORG_ADMIN: [u16; 7] = [401, 403, 403, 403, 200, 200, 404];
    const ORG_ADMIN_CREATE: [u16; 7] = [401, 403, 403, 403, 201, 201, 404];
    const OPERATOR: [u16; 7] = [401, 403, 403, 403, 403, 200, 403];
    Some(match (method, path) {
        ("get", "/openapi.json") | ("get", "/config") | ("get", "/plans") => ALL_OK,
        ("post", "/auth/signup") => [201; 7],
        ("post", "/auth/login") => ALL_OK,
        // Directory sign-in is not configured in this fixture (tests/directory_ldap.rs and
        // e2e/oidc.test.mjs test it against real servers).
        ("post", "/auth/ldap") => [404; 7],
        ("get", "/auth/oidc/start") | ("get", "/auth/oidc/callback") => [303; 7],
        ("post", "/auth/logout") => [401, 204, 204, 204, 204, 204, 204],
        ("get", "/auth/me") | ("post", "/auth/password") | ("get", "/meetings") => USER_OK,
        ("post", "/meetings") => [401, 201, 201, 201, 201, 201, 201],
        ("put", "/plans/{plan}") => OPERATOR,
        ("get", "/meetings/{meeting}") => [401, 404, 200, 200, 200, 200, 404],
        ("patch", "/meetings/{meeting}") => [401, 404, 403, 200, 200, 200, 404],
        ("delete", "/meetings/{meeting}") => [401, 404, 403, 204, 204, 204, 404],
        // Anyone with the link may ask; the role in the answer is checked separately.
        ("post", "/meetings/{meeting}/join") => ALL_OK,
        ("get", "/meetings/{meeting}/invite.ics") | ("get", "/meetings/{meeting}/invites") => {
            [401, 404, 200, 200, 200, 200, 404]
        }
        // No SMTP relay in this fixture: whoever may send learns that it is not set up
        // (tests/calendar.rs sends through a real SMTP server).
        ("post", "/meetings/{meeting}/invites") => [401, 404, 403, 503, 503, 503, 404],
        ("get", "/auth/calendar") | ("post", "/auth/calendar") => USER_OK,
        ("delete", "/auth/calendar") => [401, 204, 204, 204, 204, 204, 204],
        // The fixture's meeting is running (its host is in it).
        ("get", "/meetings/{meeting}/live") => [401, 404, 200, 200, 200, 200, 404],
        ("post", "/meetings/{meeting}/live") => [401, 404, 204, 204, 204, 204, 404],
        ("get", "/orgs/{org}") => [401, 200, 200, 200, 200, 200, 404],
        ("get", "/orgs/{org}/members")
        | ("get", "/orgs/{org}/usage")
        | ("get", "/orgs/{org}/usage/series")
        | ("get", "/orgs/{org}/audit")
        | ("get", "/orgs/{org}/upgrade-requests") => ORG_ADMIN,
        ("post", "/orgs/{org}/members")
        | ("post", "/orgs/{org}/upgrade-requests")
        | ("post", "/orgs/{org}/webhooks") => ORG_ADMIN_CREATE,
        ("get", "/orgs/{org}/webhooks") | ("get", "/orgs/{org}/webhooks/{webhook}/deliveries") => {
            ORG_ADMIN
        }
        ("delete", "/orgs/{org}/webhooks/{webhook}") => [401, 403, 403, 403, 204, 204, 404],
        ("patch", "/orgs/{org}/webhooks/{webhook}")
        | ("post", "/orgs/{org}/webhooks/{webhook}/secret") => [401, 403, 403, 403, 200, 200, 404],
        ("post", "/orgs/{org}/webhooks/{webhook}/test") => [401, 403, 403, 403, 202, 202, 404],
        ("get", "/admin/users")
        | ("patch", "/admin/users/{user}")
        | ("get", "/admin/orgs")
        | ("patch", "/admin/orgs/{org}")
        | ("get", "/admin/usage")
        | ("get", "/admin/usage/series")
        | ("get", "/admin/dashboard")
        | ("get", "/admin/audit")
        | ("get", "/admin/upgrade-requests")
        | ("post", "/admin/upgrade-requests/{request}/approve")
        | ("post", "/admin/upgrade-requests/{request}/decline") => OPERATOR,
        _ => return None,
    })
}

struct Fixture {
    app: App,
    /// `None` for the guest.
    users: Vec<Option<User>>,
    meeting: String,
    org: String,
    host: User,
    cohost: User,
    /// The host's signalling connection into the running meeting.
    live: Connection,
}

async fn fixture() -> Fixture {
    let app = App::new(AccountSettings::default()).await;
    let boss = app
        .user("boss@a.example", None, OrgRole::Admin, UserRole::User)
        .await;
    let org = boss.org_id.clone();
    let member = app
        .user(
            "member@a.example",
            Some(&org),
            OrgRole::Member,
            UserRole::User,
        )
        .await;
    let cohost = app
        .user(
            "cohost@a.example",
            Some(&org),
            OrgRole::Member,
            UserRole::User,
        )
        .await;
    let host = app
        .user(
            "host@a.example",
            Some(&org),
            OrgRole::Member,
            UserRole::User,
        )
        .await;
    let op = app
        .user("op@veche.example", None, OrgRole::Admin, UserRole::Admin)
        .await;
    let other = app
        .user("admin@b.example", None, OrgRole::Admin, UserRole::User)
        .await;
    let meeting = new_meeting(&app, &host, &cohost).await;
    let live = start_meeting(&app, &meeting, &host).await;
    Fixture {
        live,
        users: vec![
            None,
            Some(member),
            Some(cohost.clone()),
            Some(host.clone()),
            Some(boss),
            Some(op),
            Some(other),
        ],
        app,
        meeting,
        org,
        host,
        cohost,
    }
}

/// The host joins `meeting` in the SFU, as the WebSocket would make them.
async fn start_meeting(app: &App, meeting: &str, host: &User) -> Connection {
    let mut conn = app.sfu.connect();
    app.sfu.join(
        conn.id,
        JoinRequest {
            version: PROTOCOL_VERSION,
            room: meeting.to_owned(),
            name: "Hana".into(),
            grant: JoinGrant {
                role: Role::Host,
                user: Some(UserRef {
                    id: host.id.clone(),
                    email: host.email.clone(),
                }),
                meeting: Some(MeetingRef {
                    id: meeting.to_owned(),
                    org_id: host.org_id.clone(),
                    title: "Matrix".into(),
                }),
                ..JoinGrant::default()
            },
            resume: None,
            e2ee: false,
            require_e2ee: false,
        },
    );
    loop {
        match conn.events.recv().await {
            Some(ServerMessage::Joined { .. }) => return conn,
            Some(_) => continue,
            None => panic!("the SFU dropped the host"),
        }
    }
}

async fn new_meeting(app: &App, host: &User, cohost: &User) -> String {
    app.store
        .create_meeting(
            host,
            NewMeeting {
                title: "Matrix".into(),
                // Scheduled, so that it has an invitation (`invite.ics`).
                starts_at: Some(app.now() + 3600),
                duration_minutes: 30,
                join_before_host: true,
                co_hosts: vec![cohost.id.clone()],
                ..NewMeeting::default()
            },
            app.now(),
        )
        .await
        .unwrap()
        .id
}

/// Fills the path's parameters, creating what a destructive call would use up, and picks a
/// valid body, so the only reason for a refusal is who is asking.
async fn prepare(
    f: &Fixture,
    case: usize,
    method: &str,
    path: &str,
    caller: Option<&User>,
) -> (String, Option<Value>) {
    let mut p = path.to_owned();
    if p.contains("{meeting}") {
        let id = if method == "post" || method == "get" {
            f.meeting.clone()
        } else {
            new_meeting(&f.app, &f.host, &f.cohost).await
        };
        p = p.replace("{meeting}", &id);
    }
    p = p.replace("{org}", &f.org).replace("{plan}", "pro");
    if p.contains("{user}") {
        let target = f
            .app
            .user(
                &format!("target{case}@b.example"),
                None,
                OrgRole::Admin,
                UserRole::User,
            )
            .await;
        p = p.replace("{user}", &target.id);
    }
    let needs_request =
        p.contains("{request}") || (method == "post" && path == "/orgs/{org}/upgrade-requests");
    if needs_request {
        // At most one pending request per organisation: clear the way.
        let op = f.users[5].as_ref().unwrap();
        for r in f
            .app
            .store
            .upgrade_requests(Some(&f.org), Some(RequestStatus::Pending))
            .await
            .unwrap()
        {
            f.app
                .store
                .decide_upgrade(&r.id, false, &op.id, f.app.now(), None)
                .await
                .unwrap();
        }
    }
    if method == "post" && path == "/orgs/{org}/webhooks" {
        // Under the cap on endpoints per organisation: clear the way.
        for e in f.app.store.webhook_endpoints(&f.org).await.unwrap() {
            f.app
                .store
                .delete_webhook_endpoint(&f.org, &e.id, 0, None)
                .await
                .unwrap();
        }
    }
    if p.contains("{webhook}") {
        let boss = f.users[4].as_ref().unwrap();
        let (endpoint, _) = f
            .app
            .store
            .create_webhook_endpoint(
                &NewWebhookEndpoint {
                    org_id: f.org.clone(),
                    url: "http://127.0.0.1:9/hook".into(),
                    events: vec!["meeting.started".into()],
                    description: String::new(),
                    created_by: Some(boss.id.clone()),
                },
                usize::MAX,
                f.app.now(),
                None,
            )
            .await
            .unwrap();
        p = p.replace("{webhook}", &endpoint.id);
    }
    if p.contains("{request}") {
        let boss = f.users[4].as_ref().unwrap();
        let req = f
            .app
            .store
            .request_upgrade(&f.org, &boss.id, "business", "", f.app.now(), None)
            .await
            .unwrap();
        p = p.replace("{request}", &req.id);
    }
    let own_email = caller.map_or("member@a.example".to_owned(), |u| u.email.clone());
    let body = match (method, path) {
        ("post", "/auth/signup") => Some(json!({
            "email": format!("new{case}@c.example"), "password": "a fine password", "name": "New"
        })),
        ("post", "/auth/login") => {
            Some(json!({"email": own_email, "password": password_of(&own_email)}))
        }
        ("post", "/auth/ldap") => Some(json!({"username": "member", "password": "whatever"})),
        ("post", "/auth/password") => Some(json!({
            "current_password": password_of(&own_email), "new_password": password_of(&own_email)
        })),
        ("put", "/plans/{plan}") => Some(json!({
            "name": "Pro", "max_participants": 300, "max_duration_minutes": null,
            "recording": true, "breakout_rooms": true, "e2ee_required": false, "large_meetings": false
        })),
        ("post", "/meetings") => {
            Some(json!({"title": "Mine", "starts_at": 1_900_000_000, "duration_minutes": 30}))
        }
        ("patch", "/meetings/{meeting}") => Some(json!({"title": "Renamed", "waiting_room": true})),
        ("post", "/meetings/{meeting}/join") => Some(json!({})),
        ("post", "/meetings/{meeting}/invites") => Some(json!({"emails": ["guest@b.example"]})),
        // A real change that leaves the meeting as it was for the next caller.
        ("post", "/meetings/{meeting}/live") => {
            Some(json!({"type": "set_meeting", "allow_self_unmute": true}))
        }
        ("post", "/orgs/{org}/members") => Some(json!({
            "email": format!("added{case}@a.example"), "name": "Added", "password": "a fine password"
        })),
        ("post", "/orgs/{org}/upgrade-requests") => {
            Some(json!({"plan_id": "pro", "note": "please"}))
        }
        ("patch", "/admin/users/{user}") => Some(json!({"org_role": "member"})),
        ("patch", "/admin/orgs/{org}") => Some(json!({"plan_id": "free"})),
        ("post", "/orgs/{org}/webhooks") => Some(json!({
            "url": "https://hooks.example.org/veche", "events": ["meeting.started", "meeting.ended"]
        })),
        ("patch", "/orgs/{org}/webhooks/{webhook}") => Some(json!({"events": ["meeting.ended"]})),
        ("post", "/orgs/{org}/webhooks/{webhook}/secret") => Some(json!({"keep_old_hours": 1})),
        _ => None,
    };
    (p, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_as_every_role() {
    let f = fixture().await;
    let mut failures = Vec::new();
    let mut tried = 0;
    for (case_no, route) in ROUTES.iter().enumerate() {
        let Some(want) = expected(route.method, route.path) else {
            failures.push(format!(
                "{} {}: no row in the matrix",
                route.method, route.path
            ));
            continue;
        };
        for (r, role) in ROLES.iter().enumerate() {
            let caller = f.users[r].as_ref();
            let case = case_no * 10 + r;
            let (path, body) = prepare(&f, case, route.method, route.path, caller).await;
            // A fresh session per case: logout and password change end sessions.
            let token = match caller {
                Some(u) => Some(f.app.token(u).await),
                None => None,
            };
            let auth = token.as_deref().map_or(Auth::None, Auth::Bearer);
            let res = f.app.call(route.method, &path, auth, body).await;
            tried += 1;
            if res.status.as_u16() != want[r] {
                failures.push(format!(
                    "{} {} as {role}: got {} {}, want {}",
                    route.method, route.path, res.status, res.body, want[r]
                ));
            }
        }
    }
    eprintln!(
        "authorisation matrix: {} endpoints x {} roles = {tried} requests",
        ROUTES.len(),
        ROLES.len()
    );
    assert!(
        failures.is_empty(),
        "matrix mismatches:\n{}",
        failures.join("\n")
    );
    assert_eq!(tried, ROUTES.len() * ROLES.len());
}

/// The join check gives each caller the right role in the meeting.
#[tokio::test]
async fn join_roles_per_caller() {
    let f = fixture().await;
    let want = [
        "guest",
        "participant",
        "co_host",
        "host",
        "co_host",
        "co_host",
        "participant",
    ];
    for (r, role) in ROLES.iter().enumerate() {
        let token = match &f.users[r] {
            Some(u) => Some(f.app.token(u).await),
            None => None,
        };
        let auth = token.as_deref().map_or(Auth::None, Auth::Bearer);
        let res = f
            .app
            .call("post", &format!("/meetings/{}/join", f.meeting), auth, None)
            .await;
        assert_eq!(res.status, 200, "{role}: {}", res.body);
        assert_eq!(res.body["role"], want[r], "{role}");
        assert_eq!(res.body["max_participants"], 100, "free plan cap");
        assert_eq!(res.body["max_duration_minutes"], 40, "free plan limit");
    }
}

/// Refused calls change nothing: a member's failed delete leaves the meeting, a non-operator's
/// plan edit leaves the plan.
#[tokio::test]
async fn refused_calls_change_nothing() {
    let f = fixture().await;
    let member = f.users[1].as_ref().unwrap();
    let t = f.app.token(member).await;
    let res = f
        .app
        .call(
            "delete",
            &format!("/meetings/{}", f.meeting),
            Auth::Bearer(&t),
            None,
        )
        .await;
    assert_eq!(res.status, 404);
    assert!(f.app.store.meeting(&f.meeting).await.unwrap().is_some());
    let boss = f.users[4].as_ref().unwrap();
    let t = f.app.token(boss).await;
    let res = f
        .app
        .call(
            "put",
            "/plans/free",
            Auth::Bearer(&t),
            Some(json!({"name": "Free", "max_participants": null, "max_duration_minutes": null,
                "recording": true, "breakout_rooms": true, "e2ee_required": false, "large_meetings": true})),
        )
        .await;
    assert_eq!(res.status, 403);
    assert_eq!(res.code(), "forbidden");
    let free = f.app.store.plan("free").await.unwrap().unwrap();
    assert_eq!(free.max_participants, Some(100));
}

/// Live controls over the API: the owner sees who is in the meeting, a co-host may not end
/// it, bad bodies and unknown participants get specific errors, and once ended the meeting
/// is no longer live.
#[tokio::test]
async fn live_meeting_controls_over_the_api() {
    let mut f = fixture().await;
    let path = format!("/meetings/{}/live", f.meeting);
    let host_token = f.app.token(&f.host).await;
    let cohost_token = f.app.token(&f.cohost).await;
    let host = Auth::Bearer(&host_token);
    let cohost = Auth::Bearer(&cohost_token);

    let res = f.app.call("get", &path, host, None).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["live"], true);
    assert_eq!(res.body["participants"][0]["name"], "Hana");
    assert_eq!(res.body["participants"][0]["role"], "host");
    let host_id = res.body["participants"][0]["id"].as_u64().unwrap();

    for (body, status, code) in [
        (json!({"type": "dance"}), 400, "bad_request"),
        (json!({"type": "chat", "text": "hi"}), 400, "bad_request"),
        (
            json!({"type": "mute", "participant_id": 9999, "kind": "audio"}),
            404,
            "unknown_participant",
        ),
    ] {
        let res = f.app.call("post", &path, host, Some(body.clone())).await;
        assert_eq!(res.status, status, "{body}: {}", res.body);
        assert_eq!(res.code(), code, "{body}");
    }
    // A co-host may lock but not end the meeting.
    let res = f
        .app
        .call(
            "post",
            &path,
            cohost,
            Some(json!({"type": "set_meeting", "locked": true})),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.body);
    let res = f
        .app
        .call("post", &path, cohost, Some(json!({"type": "end_meeting"})))
        .await;
    assert_eq!(res.status, 403, "{}", res.body);

    // The owner mutes the host's own camera from outside, then ends the meeting.
    let res = f
        .app
        .call(
            "post",
            &path,
            host,
            Some(json!({"type": "mute", "participant_id": host_id, "kind": "video"})),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.body);
    let res = f
        .app
        .call("post", &path, host, Some(json!({"type": "end_meeting"})))
        .await;
    assert_eq!(res.status, 204, "{}", res.body);
    let mut seen = Vec::new();
    while let Some(m) = f.live.events.recv().await {
        seen.push(m);
    }
    assert!(
        seen.iter()
            .any(|m| matches!(m, ServerMessage::MutedByHost { by: 0, .. })),
        "the muted participant is told (by the API): {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|m| matches!(m, ServerMessage::MeetingEnded { .. })),
        "{seen:?}"
    );
    let res = f.app.call("get", &path, host, None).await;
    assert_eq!(res.body["live"], false);
    let res = f
        .app
        .call("post", &path, host, Some(json!({"type": "end_meeting"})))
        .await;
    assert_eq!(res.status, 409);
    assert_eq!(res.code(), "not_in_progress");
}
