//! Every change made through the API is stored with its audit row in one transaction: when
//! the audit row cannot be written (here a trigger refuses it, as a full disk or a `kill -9`
//! between two writes would), the change is not made either.

use crate::api as support;

use serde_json::json;
use support::{App, Auth, password_of};
use veche_server::api::AccountSettings;
use veche_server::store::{OrgRole, UserRole};

#[tokio::test]
async fn a_change_whose_audit_row_fails_is_not_made() {
    let app = App::new(AccountSettings::default()).await;
    let operator = app
        .user("op@example.org", None, OrgRole::Admin, UserRole::Admin)
        .await;
    let op = app.token(&operator).await;
    let member = app
        .user(
            "mia@example.org",
            Some(&operator.org_id),
            OrgRole::Member,
            UserRole::User,
        )
        .await;
    let mia = app.token(&member).await;
    let plan = app
        .call("get", "/plans", Auth::Bearer(&op), None)
        .await
        .body["plans"][0]
        .clone();
    let org_name = app.store.org(&operator.org_id).await.unwrap().unwrap().name;
    let org_id = &operator.org_id;
    let org_plan = org_now_plan(&app, org_id).await;
    // Made before the audit log breaks, to be deleted and decided after.
    let hook = app
        .call(
            "post",
            &format!("/orgs/{org_id}/webhooks"),
            Auth::Bearer(&op),
            Some(json!({"url": "https://hooks.example.org/veche", "events": ["meeting.started"]})),
        )
        .await;
    assert_eq!(hook.status, 201, "{:?}", hook.body);
    let hook_secret = hook.body["secret"].as_str().unwrap().to_owned();
    let hook = hook.body["id"].as_str().unwrap().to_owned();
    let request = app
        .call(
            "post",
            &format!("/orgs/{org_id}/upgrade-requests"),
            Auth::Bearer(&op),
            Some(json!({"plan_id": "business", "note": ""})),
        )
        .await;
    assert_eq!(request.status, 201, "{:?}", request.body);
    let request = request.body["id"].as_str().unwrap().to_owned();

    app.sql(
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log \
         BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END",
    )
    .await;
    let refused = [
        (
            "patch",
            format!("/admin/users/{}", member.id),
            json!({"role": "admin", "org_role": "admin"}),
        ),
        (
            "put",
            format!("/plans/{}", plan["id"].as_str().unwrap()),
            json!({"name": "Renamed", "max_participants": 3, "max_duration_minutes": null,
                "recording": false, "breakout_rooms": false, "e2ee_required": true,
                "large_meetings": false}),
        ),
        (
            "patch",
            format!("/admin/orgs/{}", operator.org_id),
            json!({"name": "Renamed org"}),
        ),
        (
            "post",
            format!("/orgs/{}/members", operator.org_id),
            json!({"email": "new@example.org", "name": "New", "password": "a long new password"}),
        ),
        (
            "post",
            format!("/orgs/{org_id}/webhooks"),
            json!({"url": "https://hooks.example.org/second", "events": ["meeting.ended"]}),
        ),
        (
            "patch",
            format!("/orgs/{org_id}/webhooks/{hook}"),
            json!({"events": ["meeting.ended"], "description": "changed"}),
        ),
        (
            "post",
            format!("/orgs/{org_id}/webhooks/{hook}/secret"),
            json!({"keep_old_hours": 0}),
        ),
        (
            "delete",
            format!("/orgs/{org_id}/webhooks/{hook}"),
            json!({}),
        ),
        (
            "post",
            format!("/admin/upgrade-requests/{request}/approve"),
            json!({}),
        ),
        ("post", "/auth/calendar".into(), json!({})),
    ];
    for (method, path, body) in &refused {
        let res = app
            .call(method, path, Auth::Bearer(&op), Some(body.clone()))
            .await;
        assert_eq!(res.status, 500, "{method} {path}: {:?}", res.body);
    }
    let signup = app
        .call(
            "post",
            "/auth/signup",
            Auth::None,
            Some(json!({"email": "sam@example.org", "name": "Sam", "password": "sam's long password"})),
        )
        .await;
    assert_eq!(signup.status, 500, "{:?}", signup.body);
    let password = app
        .call(
            "post",
            "/auth/password",
            Auth::Bearer(&mia),
            Some(json!({"current_password": password_of("mia@example.org"),
                "new_password": "another long password"})),
        )
        .await;
    assert_eq!(password.status, 500, "{:?}", password.body);

    // Nothing of it was made.
    let mia_now = app.store.user(&member.id).await.unwrap().unwrap();
    assert_eq!(
        (mia_now.role, mia_now.org_role),
        (UserRole::User, OrgRole::Member)
    );
    let plans = app
        .call("get", "/plans", Auth::Bearer(&op), None)
        .await
        .body;
    assert_eq!(plans["plans"][0], plan, "the plan is unchanged");
    let org = app.store.org(&operator.org_id).await.unwrap().unwrap();
    assert_eq!(org.name, org_name);
    for email in ["new@example.org", "sam@example.org"] {
        assert!(
            app.store.user_by_email(email).await.unwrap().is_none(),
            "{email} made"
        );
    }
    let still = app
        .store
        .check_login("mia@example.org", &password_of("mia@example.org"))
        .await
        .unwrap();
    assert!(still.is_some(), "the old password still works");
    assert!(
        app.call("get", "/auth/me", Auth::Bearer(&mia), None)
            .await
            .status
            == 200,
        "the session the password change would have ended still works"
    );

    let hooks = app.store.webhook_endpoints(org_id).await.unwrap();
    assert_eq!(
        hooks.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        [hook.as_str()],
        "the endpoint is neither deleted nor joined by a second"
    );
    assert_eq!(
        (hooks[0].events.as_slice(), hooks[0].description.as_str()),
        (&["meeting.started".to_owned()][..], ""),
        "the endpoint is not edited"
    );
    // The secret is the one it was made with: a delivery is signed with it alone.
    app.store
        .enqueue_webhook(org_id, "evt_check", "webhook.test", "{}", Some(&hook), 0)
        .await
        .unwrap();
    let due = app.store.claim_due_webhooks(0, 1, 1).await.unwrap();
    assert_eq!(
        (due[0].secret.as_str(), due[0].previous_secret.as_deref()),
        (hook_secret.as_str(), None),
        "the secret was not rolled"
    );
    let pending = app.store.upgrade_request(&request).await.unwrap().unwrap();
    assert_eq!(pending.status.as_str(), "pending");
    assert_eq!(org_now_plan(&app, org_id).await, org_plan);
    assert!(
        app.store
            .calendar_feed_created(&operator.id)
            .await
            .unwrap()
            .is_none(),
        "no calendar feed was made"
    );

    // With the audit log writable again, the same change is made and recorded.
    app.sql("DROP TRIGGER no_audit").await;
    let (method, path, body) = &refused[0];
    let res = app
        .call(method, path, Auth::Bearer(&op), Some(body.clone()))
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let log = app.store.audit_log(None, 10).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "user.update" && e.target == member.id),
        "{log:?}"
    );
}

async fn org_now_plan(app: &App, org: &str) -> String {
    app.store.org(org).await.unwrap().unwrap().plan_id
}
