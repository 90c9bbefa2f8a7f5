//! Sessions, CSRF, brute-force lockouts, uniform errors and bad bodies, through the real API
//! router over a real SQLite file.

use crate::api as support;

use axum::body::Body;
use axum::http::header;
use serde_json::json;
use support::{App, Auth, password_of};
use veche_server::api::AccountSettings;
use veche_server::api::openapi::ROUTES;
use veche_server::store::{LockoutPolicy, NewMeeting, OrgRole, UserRole};

fn login_body(email: &str, password: &str) -> Option<serde_json::Value> {
    Some(json!({"email": email, "password": password}))
}

#[tokio::test]
async fn login_sets_a_safe_cookie_and_returns_a_bearer_token() {
    let app = App::new(AccountSettings::default()).await;
    app.user("alice@example.org", None, OrgRole::Admin, UserRole::User)
        .await;
    let res = app
        .call(
            "post",
            "/auth/login",
            Auth::None,
            login_body("Alice@Example.org", &password_of("alice@example.org")),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let token = res.body["token"].as_str().unwrap().to_owned();
    let csrf = res.body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43, "256 random bits, base64url");
    assert_eq!(res.body["user"]["email"], "alice@example.org");
    let cookie = res.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.starts_with(&format!("veche_session={token};")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: no Secure flag"
    );

    // The bearer token and the cookie both authenticate.
    let me = app
        .call("get", "/auth/me", Auth::Bearer(&token), None)
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["csrf_token"], csrf.as_str());
    let me = app
        .call("get", "/auth/me", Auth::Cookie(&token, None), None)
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(
        app.call("get", "/auth/me", Auth::Bearer("forged"), None)
            .await
            .code(),
        "unauthenticated"
    );

    // Logout ends the session and clears the cookie.
    let out = app
        .call("post", "/auth/logout", Auth::Bearer(&token), None)
        .await;
    assert_eq!(out.status, 204);
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let me = app
        .call("get", "/auth/me", Auth::Bearer(&token), None)
        .await;
    assert_eq!(me.status, 401);
}

#[tokio::test]
async fn cookie_requests_that_change_state_need_the_csrf_token() {
    let app = App::new(AccountSettings {
        secure_cookies: true,
        ..AccountSettings::default()
    })
    .await;
    let res = app
        .call(
            "post",
            "/auth/signup",
            Auth::None,
            Some(json!({"email": "a@example.org", "password": "long password", "name": "A"})),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    assert!(
        res.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
    let token = res.body["token"].as_str().unwrap().to_owned();
    let csrf = res.body["csrf_token"].as_str().unwrap().to_owned();
    let meeting = Some(json!({"title": "Standup"}));

    let no_header = app
        .call(
            "post",
            "/meetings",
            Auth::Cookie(&token, None),
            meeting.clone(),
        )
        .await;
    assert_eq!(no_header.status, 403);
    assert_eq!(no_header.code(), "csrf_failed");
    let wrong = app
        .call(
            "post",
            "/meetings",
            Auth::Cookie(&token, Some("not-the-token")),
            meeting.clone(),
        )
        .await;
    assert_eq!(wrong.code(), "csrf_failed");
    assert!(
        app.store
            .meetings_of(res.body["user"]["id"].as_str().unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    let ok = app
        .call(
            "post",
            "/meetings",
            Auth::Cookie(&token, Some(&csrf)),
            meeting.clone(),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.body["e2ee"], "off", "not encrypted unless asked for");
    // Reads need no CSRF token, and bearer clients are exempt.
    let list = app
        .call("get", "/meetings", Auth::Cookie(&token, None), None)
        .await;
    assert_eq!(list.body["meetings"].as_array().unwrap().len(), 1);
    let bearer = app
        .call("post", "/meetings", Auth::Bearer(&token), meeting)
        .await;
    assert_eq!(bearer.status, 201);
}

#[tokio::test]
async fn login_brute_force_locks_the_account_without_revealing_it() {
    let app = App::new(AccountSettings::default()).await;
    app.user("alice@example.org", None, OrgRole::Admin, UserRole::User)
        .await;
    let right = password_of("alice@example.org");
    // Wrong password and unknown account: the same status, code and message.
    let wrong = app
        .call(
            "post",
            "/auth/login",
            Auth::None,
            login_body("alice@example.org", "guess-0"),
        )
        .await;
    let unknown = app
        .call(
            "post",
            "/auth/login",
            Auth::None,
            login_body("nobody@example.org", "guess-0"),
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.code(), "invalid_credentials");

    for i in 1..9 {
        let r = app
            .call(
                "post",
                "/auth/login",
                Auth::None,
                login_body("alice@example.org", &format!("guess-{i}")),
            )
            .await;
        assert_eq!(r.code(), "invalid_credentials", "attempt {i}");
    }
    // The tenth failure locks; then even the right password is refused until it expires.
    let r = app
        .call(
            "post",
            "/auth/login",
            Auth::None,
            login_body("ALICE@example.org", "guess-9"),
        )
        .await;
    assert_eq!(r.code(), "invalid_credentials");
    let r = app
        .call(
            "post",
            "/auth/login",
            Auth::None,
            login_body("alice@example.org", "guess-10"),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.code(), "locked_out");
    assert_eq!(r.headers[header::RETRY_AFTER], "900");
    app.advance(60);
    let r = app
        .call(
            "post",
            "/auth/login",
            Auth::None,
            login_body("alice@example.org", &right),
        )
        .await;
    assert_eq!(r.code(), "locked_out");
    assert_eq!(r.headers[header::RETRY_AFTER], "840");
    // Unknown accounts lock the same way, so a lockout reveals nothing either.
    for i in 0..10 {
        app.call(
            "post",
            "/auth/login",
            Auth::None,
            login_body("nobody@example.org", &format!("g{i}")),
        )
        .await;
    }
    let r = app
        .call(
            "post",
            "/auth/login",
            Auth::None,
            login_body("nobody@example.org", "g"),
        )
        .await;
    assert_eq!(r.code(), "locked_out");

    app.advance(15 * 60);
    let r = app
        .call(
            "post",
            "/auth/login",
            Auth::None,
            login_body("alice@example.org", &right),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The lockout was logged for the admins.
    let log = app.store.audit_log(None, 10).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "auth.lockout" && e.target == "login:alice@example.org|-")
    );
}

#[tokio::test]
async fn login_failures_are_also_limited_per_address() {
    let app = App::new(AccountSettings {
        lockout: LockoutPolicy {
            max_failures: 3,
            source_failures: 3,
            lockout_secs: 60,
            ..LockoutPolicy::DEFAULT
        },
        ..AccountSettings::default()
    })
    .await;
    app.user("alice@example.org", None, OrgRole::Admin, UserRole::User)
        .await;
    let login = |ip: &'static str, email: String, pw: String| {
        let body = json!({"email": email, "password": pw}).to_string();
        let app = &app;
        async move {
            app.call_from(
                Some(ip),
                "post",
                "/auth/login",
                Auth::None,
                Some(Body::from(body)),
                Some("application/json"),
            )
            .await
        }
    };
    // One address spraying guesses over many accounts is stopped after 3 failures...
    for i in 0..3 {
        let r = login("203.0.113.9", format!("user{i}@example.org"), "x".into()).await;
        assert_ne!(r.status, 200);
    }
    let r = login(
        "203.0.113.9",
        "alice@example.org".into(),
        password_of("alice@example.org"),
    )
    .await;
    assert_eq!(r.code(), "locked_out");
    // ...while the real owner elsewhere still gets in.
    let r = login(
        "198.51.100.1",
        "alice@example.org".into(),
        password_of("alice@example.org"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn signups_per_address_are_limited() {
    let app = App::new(AccountSettings {
        lockout: LockoutPolicy {
            max_failures: 3,
            source_failures: 3,
            lockout_secs: 60,
            ..LockoutPolicy::DEFAULT
        },
        ..AccountSettings::default()
    })
    .await;
    let signup = |ip: &'static str, n: u32| {
        let body =
            json!({"email": format!("u{n}@example.org"), "password": "long password", "name": "U"});
        let app = &app;
        async move {
            app.call_from(
                Some(ip),
                "post",
                "/auth/signup",
                Auth::None,
                Some(Body::from(body.to_string())),
                Some("application/json"),
            )
            .await
        }
    };
    for n in 0..3 {
        assert_eq!(signup("203.0.113.5", n).await.status, 201);
    }
    let r = signup("203.0.113.5", 3).await;
    assert_eq!(r.code(), "locked_out");
    assert!(
        app.store
            .user_by_email("u3@example.org")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(signup("203.0.113.6", 4).await.status, 201);
    app.advance(60);
    assert_eq!(signup("203.0.113.5", 5).await.status, 201);
}

#[tokio::test]
async fn passcode_brute_force_hits_the_lockout() {
    let app = App::new(AccountSettings::default()).await;
    let host = app
        .user("host@example.org", None, OrgRole::Admin, UserRole::User)
        .await;
    let t = app.token(&host).await;
    let created = app
        .call(
            "post",
            "/meetings",
            Auth::Bearer(&t),
            Some(json!({"title": "Secret", "passcode": "246810", "waiting_room": true})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["has_passcode"], true);
    assert!(
        created.body.get("passcode").is_none(),
        "the passcode is never echoed"
    );
    let id = created.body["id"].as_str().unwrap().to_owned();
    let join = format!("/meetings/{id}/join");

    let r = app.call("post", &join, Auth::None, None).await;
    assert_eq!(r.code(), "passcode_required");
    for i in 0..10 {
        let r = app
            .call(
                "post",
                &join,
                Auth::None,
                Some(json!({"passcode": format!("00000{i}")})),
            )
            .await;
        assert_eq!(r.code(), "wrong_passcode", "guess {i}");
    }
    let r = app
        .call(
            "post",
            &join,
            Auth::None,
            Some(json!({"passcode": "000010"})),
        )
        .await;
    assert_eq!(r.status, 429);
    let r = app
        .call(
            "post",
            &join,
            Auth::None,
            Some(json!({"passcode": "246810"})),
        )
        .await;
    assert_eq!(
        r.code(),
        "locked_out",
        "the right passcode waits out the lockout too"
    );
    // The host still gets in, and after the lockout the guest does.
    let r = app.call("post", &join, Auth::Bearer(&t), None).await;
    assert_eq!(r.body["role"], "host");
    app.advance(15 * 60);
    let r = app
        .call(
            "post",
            &join,
            Auth::None,
            Some(json!({"passcode": "246810"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["role"], "guest");
    assert_eq!(r.body["waiting_room"], true);
}

#[tokio::test]
async fn bad_bodies_get_specific_400s_never_500() {
    let app = App::new(AccountSettings::default()).await;
    let host = app
        .user("host@example.org", None, OrgRole::Admin, UserRole::User)
        .await;
    let t = app.token(&host).await;
    let cases: &[(&str, &str, Option<&str>, &str, &str)] = &[
        (
            "/meetings",
            "{not json",
            Some("application/json"),
            "bad_request",
            "",
        ),
        (
            "/meetings",
            "{}",
            Some("application/json"),
            "bad_request",
            "title",
        ),
        (
            "/meetings",
            r#"{"title": 5}"#,
            Some("application/json"),
            "bad_request",
            "title",
        ),
        (
            "/meetings",
            r#"{"title": "x", "bogus": 1}"#,
            Some("application/json"),
            "bad_request",
            "bogus",
        ),
        (
            "/meetings",
            r#"{"title": "x", "e2ee": "sometimes"}"#,
            Some("application/json"),
            "bad_request",
            "sometimes",
        ),
        (
            "/meetings",
            r#"{"title": "x"}"#,
            None,
            "bad_request",
            "Content-Type",
        ),
        (
            "/meetings",
            r#"{"title": "x"}"#,
            Some("text/plain"),
            "bad_request",
            "Content-Type",
        ),
        (
            "/meetings",
            r#"{"title": ""}"#,
            Some("application/json"),
            "invalid_field",
            "title",
        ),
        (
            "/meetings",
            r#"{"title": "x", "duration_minutes": -5}"#,
            Some("application/json"),
            "invalid_field",
            "duration",
        ),
        (
            "/meetings",
            r#"{"title": "x", "recurrence": "daily"}"#,
            Some("application/json"),
            "bad_request",
            "recurrence",
        ),
        (
            "/meetings",
            r#"{"title": "x", "co_hosts": ["ghost@example.org"]}"#,
            Some("application/json"),
            "invalid_field",
            "ghost",
        ),
        (
            "/auth/signup",
            r#"{"email": "nope", "password": "long password", "name": "N"}"#,
            Some("application/json"),
            "invalid_field",
            "email",
        ),
        (
            "/auth/signup",
            r#"{"email": "n@example.org", "password": "short", "name": "N"}"#,
            Some("application/json"),
            "invalid_field",
            "password",
        ),
        (
            "/auth/login",
            "[]",
            Some("application/json"),
            "bad_request",
            "",
        ),
    ];
    for (path, body, ct, code, mentions) in cases {
        let r = app
            .call_from(
                None,
                "post",
                path,
                Auth::Bearer(&t),
                Some(Body::from(*body)),
                *ct,
            )
            .await;
        assert_eq!(r.status, 400, "{path} {body}: {}", r.body);
        assert_eq!(r.code(), *code, "{path} {body}: {}", r.body);
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(mentions),
            "{path} {body}: {msg:?} should mention {mentions:?}"
        );
        // Clients word the message themselves from the code and the field it names.
        if *code == "invalid_field" {
            let field = r.body["error"]["field"].as_str().unwrap_or("");
            assert!(!field.is_empty(), "{path} {body}: no field in {}", r.body);
        }
    }
    let r = app
        .call("get", "/admin/audit?limit=0", Auth::Bearer(&t), None)
        .await;
    assert_eq!(r.status, 403, "not the operator, whatever the query");
    let r = app.call("get", "/no/such/endpoint", Auth::None, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "not_found");
    assert_eq!(r.body["error"]["what"], "endpoint", "{}", r.body);
}

#[tokio::test]
async fn closed_signup_and_password_change() {
    let app = App::new(AccountSettings {
        signup_open: false,
        guest_rooms: false,
        ..AccountSettings::default()
    })
    .await;
    let cfg = app.call("get", "/config", Auth::None, None).await;
    assert_eq!(
        cfg.body,
        json!({
            "signup_open": false,
            "guest_rooms": false,
            "directory": {"ldap": null, "oidc": null},
        })
    );
    let r = app
        .call(
            "post",
            "/auth/signup",
            Auth::None,
            Some(json!({"email": "a@example.org", "password": "long password", "name": "A"})),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "signup_closed");
    assert!(
        app.store
            .user_by_email("a@example.org")
            .await
            .unwrap()
            .is_none()
    );

    let alice = app
        .user("alice@example.org", None, OrgRole::Admin, UserRole::User)
        .await;
    let other_session = app.token(&alice).await;
    let t = app.token(&alice).await;
    let r = app
        .call(
            "post",
            "/auth/password",
            Auth::Bearer(&t),
            Some(json!({"current_password": "wrong", "new_password": "new password!"})),
        )
        .await;
    assert_eq!(r.code(), "invalid_credentials");
    let r = app
        .call(
            "post",
            "/auth/password",
            Auth::Bearer(&t),
            Some(json!({"current_password": password_of("alice@example.org"), "new_password": "new password!"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let fresh = r.body["token"].as_str().unwrap();
    assert_eq!(
        app.call("get", "/auth/me", Auth::Bearer(&other_session), None)
            .await
            .status,
        401
    );
    assert_eq!(
        app.call("get", "/auth/me", Auth::Bearer(fresh), None)
            .await
            .status,
        200
    );
    let r = app
        .call(
            "post",
            "/auth/login",
            Auth::None,
            login_body("alice@example.org", "new password!"),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn upgrade_request_flow_usage_and_audit() {
    let app = App::new(AccountSettings::default()).await;
    let boss = app
        .user("boss@a.example", None, OrgRole::Admin, UserRole::User)
        .await;
    let op = app
        .user("op@veche.example", None, OrgRole::Admin, UserRole::Admin)
        .await;
    let (tb, to) = (app.token(&boss).await, app.token(&op).await);
    let org = boss.org_id.clone();

    let r = app
        .call(
            "post",
            &format!("/orgs/{org}/upgrade-requests"),
            Auth::Bearer(&tb),
            Some(json!({"plan_id": "business", "note": "100 staff"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let req = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .call(
            "post",
            &format!("/orgs/{org}/upgrade-requests"),
            Auth::Bearer(&tb),
            Some(json!({"plan_id": "pro"})),
        )
        .await;
    assert_eq!(r.status, 409, "one pending request at a time");
    let pending = app
        .call(
            "get",
            "/admin/upgrade-requests?status=pending",
            Auth::Bearer(&to),
            None,
        )
        .await;
    assert_eq!(pending.body["requests"][0]["id"], req.as_str());
    let r = app
        .call(
            "get",
            "/admin/upgrade-requests?status=maybe",
            Auth::Bearer(&to),
            None,
        )
        .await;
    assert_eq!(r.code(), "invalid_field");

    let r = app
        .call(
            "post",
            &format!("/admin/upgrade-requests/{req}/approve"),
            Auth::Bearer(&to),
            None,
        )
        .await;
    assert_eq!(r.body["status"], "approved");
    let r = app
        .call(
            "post",
            &format!("/admin/upgrade-requests/{req}/decline"),
            Auth::Bearer(&to),
            None,
        )
        .await;
    assert_eq!(r.status, 409, "already decided");
    let r = app
        .call("get", &format!("/orgs/{org}"), Auth::Bearer(&tb), None)
        .await;
    assert_eq!(r.body["org"]["plan_id"], "business");
    // The operator may also move an organisation directly; unknown plans are refused.
    let org_path = format!("/admin/orgs/{org}");
    let patch_org =
        |body: serde_json::Value| app.call("patch", &org_path, Auth::Bearer(&to), Some(body));
    let r = patch_org(json!({"plan_id": "gold"})).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = patch_org(json!({"name": "Boss Inc"})).await;
    assert_eq!(r.body["name"], "Boss Inc");
    assert_eq!(r.body["plan_id"], "business");
    assert_eq!(r.body["plan"]["max_participants"], serde_json::Value::Null);

    // Usage recorded by the live meeting shows per organisation.
    let m = app
        .store
        .create_meeting(
            &boss,
            NewMeeting {
                title: "All hands".into(),
                duration_minutes: 60,
                ..NewMeeting::default()
            },
            app.now(),
        )
        .await
        .unwrap();
    app.store
        .record_usage(&veche_server::store::UsageRecord {
            org_id: org.clone(),
            meeting_id: m.id,
            started_at: app.now(),
            ended_at: app.now() + 1800,
            peak_participants: 12,
            participant_minutes: 300,
        })
        .await
        .unwrap();
    let r = app
        .call(
            "get",
            &format!("/orgs/{org}/usage"),
            Auth::Bearer(&tb),
            None,
        )
        .await;
    assert_eq!(r.body["usage"]["meetings"], 1, "{}", r.body);
    assert_eq!(r.body["usage"]["participant_minutes"], 300);
    let r = app
        .call(
            "get",
            &format!("/orgs/{org}/usage?since={}", app.now() + 1),
            Auth::Bearer(&tb),
            None,
        )
        .await;
    assert_eq!(r.body["usage"]["meetings"], 0);
    let r = app
        .call("get", "/admin/usage", Auth::Bearer(&to), None)
        .await;
    assert_eq!(r.body["usage"].as_array().unwrap().len(), 2);

    // The operator's plan edit and decision are in the audit log, with who and when.
    let plan = json!({"name": "Free", "max_participants": 50, "max_duration_minutes": 30,
        "recording": false, "breakout_rooms": false, "e2ee_required": false, "large_meetings": false});
    let r = app
        .call("put", "/plans/free", Auth::Bearer(&to), Some(plan))
        .await;
    assert_eq!(r.body["max_participants"], 50);
    let log = app
        .call("get", "/admin/audit", Auth::Bearer(&to), None)
        .await;
    let actions: Vec<&str> = log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "plan.update",
            "org.update",
            "upgrade.approve",
            "upgrade.request"
        ]
    );
    assert_eq!(log.body["entries"][2]["actor_email"], "op@veche.example");
    assert_eq!(log.body["entries"][2]["at"], app.now());
    let org_log = app
        .call(
            "get",
            &format!("/orgs/{org}/audit"),
            Auth::Bearer(&tb),
            None,
        )
        .await;
    assert_eq!(
        org_log.body["entries"].as_array().unwrap().len(),
        3,
        "no plan edits in an org's log"
    );
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let app = App::new(AccountSettings::default()).await;
    let doc = app.call("get", "/openapi.json", Auth::None, None).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    for route in ROUTES {
        let op = &doc.body["paths"][route.path][route.method];
        assert!(op.is_object(), "{} {} missing", route.method, route.path);
        // Every documented route reaches a handler: not the router's 404 or 405.
        let path = route.path.replace(['{', '}'], "");
        let r = app.call(route.method, &path, Auth::None, None).await;
        assert_ne!(r.status, 405, "{} {}", route.method, route.path);
        assert_ne!(
            r.body["error"]["message"], "endpoint not found",
            "{} {}",
            route.method, route.path
        );
    }
    for required in ["/auth/login", "/meetings", "/meetings/{meeting}"] {
        assert!(doc.body["paths"][required].is_object(), "{required}");
    }
    // The documented answers match real ones, field for field.
    let host = app
        .user("host@example.org", None, OrgRole::Admin, UserRole::User)
        .await;
    let t = app.token(&host).await;
    let meeting = app
        .call(
            "post",
            "/meetings",
            Auth::Bearer(&t),
            Some(json!({"title": "Doc"})),
        )
        .await;
    let id = meeting.body["id"].as_str().unwrap().to_owned();
    let join = app
        .call("post", &format!("/meetings/{id}/join"), Auth::None, None)
        .await;
    let login = app
        .call(
            "post",
            "/auth/login",
            Auth::None,
            login_body("host@example.org", &password_of("host@example.org")),
        )
        .await;
    for (schema, actual) in [
        ("Meeting", &meeting.body),
        ("JoinDecision", &join.body),
        ("Session", &login.body),
        ("User", &login.body["user"]),
        ("Org", &login.body["org"]),
    ] {
        let props = doc.body["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap();
        let mut documented: Vec<&String> = props.keys().collect();
        let mut real: Vec<&String> = actual.as_object().unwrap().keys().collect();
        documented.sort();
        real.sort();
        assert_eq!(documented, real, "{schema}");
    }
}

/// Garbage and mutated bodies at every endpoint that takes one, as the operator: always a
/// JSON error or success, never a 5xx. A cheap fuzz of the body parsers.
#[tokio::test]
async fn garbage_bodies_never_get_a_server_error() {
    use rand::{Rng, SeedableRng};
    let app = App::new(AccountSettings::default()).await;
    let op = app
        .user("op@veche.example", None, OrgRole::Admin, UserRole::Admin)
        .await;
    let t = app.token(&op).await;
    let meeting = app
        .store
        .create_meeting(
            &op,
            NewMeeting {
                title: "Fuzz".into(),
                duration_minutes: 30,
                ..NewMeeting::default()
            },
            app.now(),
        )
        .await
        .unwrap();
    let seeds = [
        r#"{"title": "x", "starts_at": 1900000000, "duration_minutes": 30, "passcode": "1234"}"#,
        r#"{"email": "a@b.c", "password": "long password", "name": "N", "plan_id": "pro"}"#,
        r#"{"name": "P", "max_participants": 5, "max_duration_minutes": null, "recording": true}"#,
        r#"{"role": "admin", "org_role": "member", "co_hosts": ["op@veche.example"]}"#,
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut tried = 0;
    for route in ROUTES
        .iter()
        .filter(|r| matches!(r.method, "post" | "put" | "patch"))
    {
        let path = route
            .path
            .replace("{meeting}", &meeting.id)
            .replace("{org}", &op.org_id)
            .replace("{plan}", "pro")
            .replace("{user}", &op.id)
            .replace("{request}", "nope");
        for i in 0..40 {
            let mut body = seeds[i % seeds.len()].as_bytes().to_vec();
            // Flip, drop or insert a few bytes; some rounds send pure noise or huge numbers.
            match i % 5 {
                0 => body = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
                1 => {
                    body = br#"{"title": 1e999, "duration_minutes": 99999999999999999999}"#.to_vec()
                }
                _ => {
                    for _ in 0..rng.random_range(1..4) {
                        let at = rng.random_range(0..body.len());
                        match rng.random_range(0..3) {
                            0 => body[at] = rng.random(),
                            1 => {
                                body.remove(at);
                            }
                            _ => body.insert(at, b"{}[]\",:\\0"[rng.random_range(0..9)]),
                        }
                    }
                }
            }
            let r = app
                .call_from(
                    None,
                    route.method,
                    &path,
                    Auth::Bearer(&t),
                    Some(Body::from(body.clone())),
                    Some("application/json"),
                )
                .await;
            tried += 1;
            assert!(
                r.status.as_u16() < 500,
                "{} {path} with {:?}: {} {}",
                route.method,
                String::from_utf8_lossy(&body),
                r.status,
                r.body
            );
        }
    }
    assert!(tried >= 400, "{tried}");
}
