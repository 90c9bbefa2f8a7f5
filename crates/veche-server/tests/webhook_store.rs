//! The webhook tables on SQLite (a real file) and PostgreSQL (a real server started for the
//! test): endpoints per organisation with their cap, the outbox (deliveries written before
//! they are attempted, claimed with a lease, retried, finished), the delivery log, and what
//! a reopened store still has; edits of an endpoint and the roll of its secret.

use crate::postgres;

use veche_server::store::{
    AttemptResult, NewUser, NewWebhookEndpoint, NextStep, OrgRole, Store, StoreError, UserRole,
    WebhookPatch,
};

const T0: i64 = 1_800_000_000;
const T0_MS: i64 = T0 * 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_store_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("veche-webhook-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    outbox(veche_server::store::sqlite_url_in(&dir)).await;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    edits_and_rolls(veche_server::store::sqlite_url_in(&dir)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_store_on_postgres() {
    let pg = tokio::task::spawn_blocking(postgres::Postgres::start)
        .await
        .unwrap()
        .expect("starting PostgreSQL");
    outbox(pg.new_database().expect("createdb")).await;
    edits_and_rolls(pg.new_database().expect("createdb")).await;
}

fn endpoint(org: &str, events: &[&str]) -> NewWebhookEndpoint {
    NewWebhookEndpoint {
        org_id: org.to_owned(),
        url: "https://hooks.example.org/in".into(),
        events: events.iter().map(|s| (*s).to_owned()).collect(),
        description: "ops".into(),
        created_by: None,
    }
}

/// Two organisations, each with an admin.
async fn two_orgs(store: &Store) -> Vec<String> {
    let mut orgs = Vec::new();
    for email in ["a@a.example", "b@b.example"] {
        let u = store
            .create_user(
                NewUser {
                    email: email.into(),
                    name: "Admin".into(),
                    password: "a fine password".into(),
                    role: UserRole::User,
                    org_id: None,
                    org_name: None,
                    org_role: OrgRole::Admin,
                },
                T0,
            )
            .await
            .unwrap();
        orgs.push(u.org_id);
    }
    orgs
}

async fn outbox(url: String) {
    let store = Store::open(&url).await.unwrap();
    let orgs = two_orgs(&store).await;
    let (a, b) = (&orgs[0], &orgs[1]);

    // Endpoints, capped per organisation.
    let (all, secret) = store
        .create_webhook_endpoint(
            &endpoint(a, &["meeting.started", "meeting.ended"]),
            2,
            T0,
            None,
        )
        .await
        .unwrap();
    assert!(secret.starts_with("vwhsec_") && secret.len() == 7 + 64);
    let (ended_only, secret2) = store
        .create_webhook_endpoint(&endpoint(a, &["meeting.ended"]), 2, T0 + 1, None)
        .await
        .unwrap();
    assert_ne!(secret, secret2);
    match store
        .create_webhook_endpoint(&endpoint(a, &["meeting.ended"]), 2, T0, None)
        .await
    {
        Err(StoreError::Invalid { field: "url", .. }) => {}
        other => panic!("a third endpoint over the cap of 2: {other:?}"),
    }
    let (other_org, _) = store
        .create_webhook_endpoint(&endpoint(b, &["meeting.started"]), 2, T0, None)
        .await
        .unwrap();
    let listed = store.webhook_endpoints(a).await.unwrap();
    assert_eq!(listed, [all.clone(), ended_only.clone()]);
    assert_eq!(listed[0].events, ["meeting.started", "meeting.ended"]);
    assert!(
        store
            .webhook_endpoint(a, &other_org.id)
            .await
            .unwrap()
            .is_none(),
        "another organisation's endpoint is not found through this one"
    );
    assert!(
        !store
            .delete_webhook_endpoint(a, &other_org.id, 0, None)
            .await
            .unwrap()
    );

    // The outbox: only subscribed endpoints of the event's organisation get a delivery.
    let n = store
        .enqueue_webhook(a, "evt_1", "meeting.started", "{\"n\":1}", None, T0_MS)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let n = store
        .enqueue_webhook(a, "evt_2", "meeting.ended", "{\"n\":2}", None, T0_MS + 1)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let n = store
        .enqueue_webhook(
            a,
            "evt_3",
            "webhook.test",
            "{}",
            Some(&ended_only.id),
            T0_MS + 2,
        )
        .await
        .unwrap();
    assert_eq!(
        n, 1,
        "a test goes to the one endpoint whatever it subscribes to"
    );
    assert_eq!(store.next_webhook_due_ms().await.unwrap(), Some(T0_MS));

    // Claimed with a lease: not due again until it runs out.
    let lease = T0_MS + 60_000;
    let due = store.claim_due_webhooks(T0_MS + 5, lease, 1).await.unwrap();
    assert_eq!(due.len(), 1);
    let first = &due[0];
    assert_eq!(first.event_id, "evt_1");
    assert_eq!(first.secret, secret);
    assert_eq!(first.payload, "{\"n\":1}");
    assert_eq!(first.attempts, 0);
    let rest = store
        .claim_due_webhooks(T0_MS + 5, lease, 10)
        .await
        .unwrap();
    let events: Vec<&str> = rest.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(
        events,
        ["evt_2", "evt_2", "evt_3"],
        "the rest, oldest first"
    );
    assert!(
        store
            .claim_due_webhooks(T0_MS + 10, lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "every pending delivery is leased"
    );

    // A failed attempt, retried; a success; a failure for good.
    store
        .record_webhook_attempt(
            &first.id,
            &AttemptResult {
                at_ms: T0_MS + 20,
                status: Some(500),
                error: Some("the receiver answered 500".into()),
                next: NextStep::RetryAt(T0_MS + 1000),
            },
        )
        .await
        .unwrap();
    let again = store
        .claim_due_webhooks(T0_MS + 1000, lease, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first.id);
    assert_eq!(again[0].attempts, 1);
    store
        .record_webhook_attempt(
            &first.id,
            &AttemptResult {
                at_ms: T0_MS + 1010,
                status: Some(204),
                error: None,
                next: NextStep::Delivered,
            },
        )
        .await
        .unwrap();
    let test = &rest[2];
    store
        .record_webhook_attempt(
            &test.id,
            &AttemptResult {
                at_ms: T0_MS + 30,
                status: None,
                error: Some("x".repeat(5000)),
                next: NextStep::Failed,
            },
        )
        .await
        .unwrap();
    let log = store.webhook_deliveries(&all.id, 10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].event_id, "evt_2", "newest first");
    assert_eq!(log[0].next_attempt_ms, Some(lease));
    let delivered = &log[1];
    assert_eq!(delivered.id, first.id);
    assert_eq!(
        (
            delivered.attempts,
            delivered.last_status,
            delivered.delivered_at_ms
        ),
        (2, Some(204), Some(T0_MS + 1010))
    );
    assert_eq!(delivered.next_attempt_ms, None);
    assert_eq!(delivered.last_error, None);
    let log = store.webhook_deliveries(&ended_only.id, 10).await.unwrap();
    let failed = log.iter().find(|d| d.id == test.id).unwrap();
    assert_eq!(serde_json::to_value(failed.status).unwrap(), "failed");
    assert_eq!(failed.event_type, "webhook.test");
    assert!(failed.last_error.as_ref().unwrap().chars().count() <= 300);

    // Survives a reopen: the leased ones are still pending, due when the lease ends.
    store.close().await;
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.next_webhook_due_ms().await.unwrap(), Some(lease));
    let after = store
        .claim_due_webhooks(lease, lease + 1, 10)
        .await
        .unwrap();
    assert_eq!(after.len(), 2);

    // Finished deliveries are purged by age, pending ones never; deleting an endpoint
    // takes its log with it.
    assert_eq!(
        store
            .purge_webhook_deliveries(T0_MS + 1_000_000)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.webhook_deliveries(&all.id, 10).await.unwrap().len(),
        1
    );
    assert!(
        store
            .delete_webhook_endpoint(a, &ended_only.id, 0, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .webhook_endpoint(a, &ended_only.id)
            .await
            .unwrap()
            .is_none()
    );
    let left = store
        .claim_due_webhooks(i64::MAX, i64::MAX, 10)
        .await
        .unwrap();
    assert_eq!(
        left.len(),
        1,
        "the deleted endpoint's pending delivery is gone"
    );
    assert_eq!(left[0].event_id, "evt_2");
    store.close().await;
}

/// An edit changes only what it names, in its own organisation; a rolled secret signs with
/// the previous one until the time given, and a second roll drops the oldest.
async fn edits_and_rolls(url: String) {
    let store = Store::open(&url).await.unwrap();
    let orgs = two_orgs(&store).await;
    let (a, b) = (&orgs[0], &orgs[1]);
    let (e, first) = store
        .create_webhook_endpoint(&endpoint(a, &["meeting.started"]), 5, T0, None)
        .await
        .unwrap();
    let patch = WebhookPatch {
        events: Some(vec!["participant.left".into(), "meeting.ended".into()]),
        description: Some("after".into()),
        ..WebhookPatch::default()
    };
    let edited = store
        .update_webhook_endpoint(a, &e.id, &patch, T0 + 1, None)
        .await
        .unwrap()
        .expect("the endpoint");
    assert_eq!(edited.events, ["participant.left", "meeting.ended"]);
    assert_eq!(edited.description, "after");
    assert_eq!(edited.url, e.url, "a URL the patch does not name stays");
    assert!(
        store
            .update_webhook_endpoint(b, &e.id, &patch, T0 + 1, None)
            .await
            .unwrap()
            .is_none(),
        "another organisation's endpoint is not edited through this one"
    );
    let long = WebhookPatch {
        description: Some("d".repeat(201)),
        ..WebhookPatch::default()
    };
    assert!(matches!(
        store
            .update_webhook_endpoint(a, &e.id, &long, T0, None)
            .await,
        Err(StoreError::Invalid {
            field: "description",
            ..
        })
    ));
    // The outbox follows the new subscription.
    assert_eq!(
        store
            .enqueue_webhook(a, "evt_s", "meeting.started", "{}", None, T0_MS)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .enqueue_webhook(a, "evt_l", "participant.left", "{}", None, T0_MS)
            .await
            .unwrap(),
        1
    );

    // Rolled, keeping the first secret for an hour: both sign within it, the new alone after.
    let second = store
        .roll_webhook_secret(a, &e.id, T0 + 3600, T0, None)
        .await
        .unwrap()
        .expect("rolled");
    assert!(second.starts_with("vwhsec_") && second != first);
    assert!(
        store
            .roll_webhook_secret(b, &e.id, T0 + 3600, T0, None)
            .await
            .unwrap()
            .is_none()
    );
    let due = store
        .claim_due_webhooks(T0_MS + 10, T0_MS + 20, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].secret, second);
    assert_eq!(due[0].previous_secret.as_deref(), Some(first.as_str()));
    let later = (T0 + 3600) * 1000;
    let due = store
        .claim_due_webhooks(later, later + 1, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].secret.as_str(), due[0].previous_secret.as_deref()),
        (second.as_str(), None)
    );
    // A roll that keeps nothing, over one that kept: only the newest signs.
    let third = store
        .roll_webhook_secret(a, &e.id, T0, T0, None)
        .await
        .unwrap()
        .expect("rolled");
    let due = store
        .claim_due_webhooks(later + 1, later + 2, 10)
        .await
        .unwrap();
    assert_eq!(
        (due[0].secret.as_str(), due[0].previous_secret.as_deref()),
        (third.as_str(), None)
    );
    store.close().await;
}
