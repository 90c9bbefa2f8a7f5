//! The storage suite: the same checks against SQLite (a real file) and PostgreSQL (a real
//! server started for the test). Each check gets a fresh, migrated database.

use crate::postgres;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};

use veche_proto::E2eeMode;
use veche_server::store::{
    ExternalIdentity, JoinError, JoinRole, LockoutPolicy, MeetingPatch, NewAuditEntry, NewMeeting,
    NewUser, OrgRole, PendingOidcLogin, Plan, Provisioned, Recurrence, RequestStatus, Store,
    StoreError, UsageRecord, User, UserRole,
};

const T0: i64 = 1_800_000_000;
/// The default limits, except that a slowed-down attempt is refused at once instead of
/// waiting (the store would sleep for real).
const POLICY: LockoutPolicy = LockoutPolicy {
    max_failures: 10,
    source_failures: 20,
    lockout_secs: 15 * 60,
    slowdown_after: 10,
    slowdown_max_wait_secs: 0,
};

type Check = fn(String) -> Pin<Box<dyn Future<Output = ()>>>;

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), |url| Box::pin($name(url)) as Pin<Box<dyn Future<Output = ()>>>)),*]
    };
}

const SUITE: &[(&str, Check)] = checks![
    users_and_organisations,
    login_and_sessions,
    lockouts_count_lock_and_expire,
    built_in_plans_and_editing,
    upgrade_requests,
    meetings_crud,
    join_decision_roles_and_limits,
    passcode_lockout,
    usage_per_organisation,
    audit_log,
    data_survives_reopen,
    two_processes_write_at_once,
    simultaneous_first_start,
    directory_accounts,
];

static NEXT: AtomicU32 = AtomicU32::new(0);

fn sqlite_url() -> String {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "veche-store-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    veche_server::store::sqlite_url_in(&dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_suite_on_sqlite() {
    for (name, check) in SUITE {
        eprintln!("sqlite: {name}");
        let url = sqlite_url();
        check(url.clone()).await;
        if let Some(dir) = url
            .strip_prefix("sqlite://")
            .and_then(|f| std::path::Path::new(f).parent())
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_suite_on_postgres() {
    let pg = tokio::task::spawn_blocking(postgres::Postgres::start)
        .await
        .unwrap()
        .expect("starting PostgreSQL");
    for (name, check) in SUITE {
        eprintln!("postgres: {name}");
        check(pg.new_database().expect("createdb")).await;
    }
}

async fn user(store: &Store, email: &str, org: Option<&str>, org_role: OrgRole) -> User {
    store
        .create_user(
            NewUser {
                email: email.into(),
                name: email.split('@').next().unwrap().into(),
                password: "password-of-".to_owned() + email,
                role: UserRole::User,
                org_id: org.map(str::to_owned),
                org_name: None,
                org_role,
            },
            T0,
        )
        .await
        .unwrap()
}

fn assert_invalid<T: std::fmt::Debug>(r: Result<T, StoreError>, field: &str) {
    match r {
        Err(StoreError::Invalid { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected invalid {field}, got {other:?}"),
    }
}

async fn users_and_organisations(url: String) {
    let store = Store::open(&url).await.unwrap();
    let alice = user(&store, "Alice@Example.org", None, OrgRole::Member).await;
    // Sign-up style: a new organisation with its creator as admin, on the free plan.
    assert_eq!(alice.email, "alice@example.org");
    assert_eq!(alice.org_role, OrgRole::Admin);
    assert_eq!(alice.role, UserRole::User);
    let org = store.org(&alice.org_id).await.unwrap().unwrap();
    assert_eq!(org.plan_id, "free");
    assert_eq!(org.name, "Alice's organisation");

    let bob = user(
        &store,
        "bob@example.org",
        Some(&alice.org_id),
        OrgRole::Member,
    )
    .await;
    assert_eq!(bob.org_id, alice.org_id);
    assert_eq!(bob.org_role, OrgRole::Member);
    let carol = user(&store, "carol@example.org", None, OrgRole::Member).await;
    assert_ne!(carol.org_id, alice.org_id);

    // Emails are unique regardless of case.
    let dup = store
        .create_user(
            NewUser {
                email: "ALICE@example.org".into(),
                name: "Other".into(),
                password: "another-password".into(),
                role: UserRole::User,
                org_id: None,
                org_name: None,
                org_role: OrgRole::Admin,
            },
            T0,
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let mut bad = NewUser {
        email: "not-an-email".into(),
        name: "X".into(),
        password: "long enough".into(),
        role: UserRole::User,
        org_id: None,
        org_name: None,
        org_role: OrgRole::Admin,
    };
    assert_invalid(store.create_user(bad.clone(), T0).await, "email");
    bad.email = "x@example.org".into();
    bad.password = "short".into();
    assert_invalid(store.create_user(bad.clone(), T0).await, "password");
    bad.password = "long enough".into();
    bad.org_id = Some("no-such-org".into());
    assert!(matches!(
        store.create_user(bad, T0).await,
        Err(StoreError::NotFound(_))
    ));

    let members = store.list_users(Some(&alice.org_id)).await.unwrap();
    let emails: Vec<&str> = members.iter().map(|u| u.email.as_str()).collect();
    assert_eq!(emails, ["alice@example.org", "bob@example.org"]);
    assert_eq!(store.list_users(None).await.unwrap().len(), 3);
    assert_eq!(
        store.user_by_email(" BOB@example.org ").await.unwrap(),
        Some(bob.clone())
    );
    assert_eq!(store.user(&carol.id).await.unwrap(), Some(carol.clone()));
    assert_eq!(store.user("nobody").await.unwrap(), None);

    store.set_user_role(&bob.id, UserRole::Admin).await.unwrap();
    store.set_org_role(&bob.id, OrgRole::Admin).await.unwrap();
    let bob = store.user(&bob.id).await.unwrap().unwrap();
    assert!(bob.is_operator());
    assert!(
        bob.administers(&carol.org_id),
        "the operator administers every org"
    );
    assert!(!carol.administers(&alice.org_id));
    assert!(matches!(
        store.set_user_role("nobody", UserRole::Admin).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.orgs().await.unwrap().len(), 2);
    store
        .rename_org(&carol.org_id, "  Carol Ltd ")
        .await
        .unwrap();
    assert_eq!(
        store.org(&carol.org_id).await.unwrap().unwrap().name,
        "Carol Ltd"
    );
    assert_invalid(store.rename_org(&carol.org_id, " ").await, "name");
    assert!(matches!(
        store.rename_org("nope", "X").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn login_and_sessions(url: String) {
    let store = Store::open(&url).await.unwrap();
    let alice = user(&store, "alice@example.org", None, OrgRole::Admin).await;
    let pw = "password-of-alice@example.org";
    assert_eq!(
        store.check_login("ALICE@example.org", pw).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .check_login("alice@example.org", "wrong")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.check_login("nobody@example.org", pw).await.unwrap(),
        None
    );
    assert_eq!(store.check_login("garbage", pw).await.unwrap(), None);

    let (token, session) = store.create_session(&alice.id, T0, 3600).await.unwrap();
    assert_eq!(session.expires_at, T0 + 3600);
    let (u, s) = store.session(&token, T0 + 10).await.unwrap().unwrap();
    assert_eq!(u, alice);
    assert_eq!(s.csrf_token, session.csrf_token);
    assert!(store.session("not-a-token", T0).await.unwrap().is_none());
    // Expired: gone, and stays gone even if the clock were turned back.
    assert!(store.session(&token, T0 + 3600).await.unwrap().is_none());
    assert!(store.session(&token, T0).await.unwrap().is_none());

    let (t1, _) = store.create_session(&alice.id, T0, 3600).await.unwrap();
    let (t2, _) = store.create_session(&alice.id, T0, 3600).await.unwrap();
    store.delete_session(&t1).await.unwrap();
    assert!(store.session(&t1, T0).await.unwrap().is_none());
    assert!(store.session(&t2, T0).await.unwrap().is_some());
    // A new password ends every session and replaces the old one.
    store
        .set_password(&alice.id, "a brand new password")
        .await
        .unwrap();
    assert!(store.session(&t2, T0).await.unwrap().is_none());
    assert_eq!(
        store.check_login("alice@example.org", pw).await.unwrap(),
        None
    );
    assert!(
        store
            .check_login("alice@example.org", "a brand new password")
            .await
            .unwrap()
            .is_some()
    );
    assert_invalid(store.set_password(&alice.id, "short").await, "password");
}

async fn lockouts_count_lock_and_expire(url: String) {
    let store = Store::open(&url).await.unwrap();
    let key = "login:alice@example.org|10.0.0.1";
    let hard = [(key, POLICY.max_failures)];
    let begin = |now: i64| store.begin_attempt(&hard, None, now, POLICY);
    // Ten attempts in flight at once are all reserved; the eleventh is refused before any
    // of them has failed: in-flight attempts count.
    let mut held = Vec::new();
    for _ in 0..POLICY.max_failures {
        held.push(begin(T0).await.unwrap().expect("within the limit"));
    }
    assert_eq!(begin(T0).await.unwrap().unwrap_err().retry_after_secs, 900);
    // One of them is abandoned (nothing verified): its place is free again.
    store.attempt_abandoned(held.pop().unwrap()).await.unwrap();
    let last = begin(T0 + 1).await.unwrap().expect("the freed place");
    // The attempt that filled the limit reports the key it locks when it fails.
    assert_eq!(
        store.attempt_failed(last).await.unwrap(),
        vec![key.to_owned()]
    );
    for a in held {
        assert!(store.attempt_failed(a).await.unwrap().is_empty());
    }
    assert_eq!(
        begin(T0 + 900).await.unwrap().unwrap_err().retry_after_secs,
        1
    );
    // Other keys are untouched.
    let other = store
        .begin_attempt(&[("login:other|10.0.0.1", 10)], None, T0 + 10, POLICY)
        .await
        .unwrap()
        .expect("another key");
    store.attempt_succeeded(other, &[]).await.unwrap();
    // Once the lockout is over a new window starts.
    let a = begin(T0 + 901).await.unwrap().expect("lockout over");
    store.attempt_succeeded(a, &[key]).await.unwrap();

    // Failures spread wider than the window never add up to a lockout.
    let slow = [("login:slow@example.org|10.0.0.1", POLICY.max_failures)];
    for i in 0..30 {
        let a = store
            .begin_attempt(&slow, None, T0 + i * 100, POLICY)
            .await
            .unwrap()
            .expect("spread out");
        store.attempt_failed(a).await.unwrap();
    }
    // A success clears the keys it names and hands its own place back on the others.
    let k2 = "login:bob@example.org|10.0.0.2";
    let ip = "login-ip:10.0.0.2";
    let both = [(k2, 10), (ip, 10)];
    for _ in 1..10 {
        let a = store.begin_attempt(&both, None, T0, POLICY).await.unwrap();
        store.attempt_failed(a.unwrap()).await.unwrap();
    }
    let a = store.begin_attempt(&both, None, T0, POLICY).await.unwrap();
    store.attempt_succeeded(a.unwrap(), &[k2]).await.unwrap();
    // The address still has its nine failures: one more place, then locked...
    let a = store
        .begin_attempt(&[(ip, 10)], None, T0, POLICY)
        .await
        .unwrap();
    store.attempt_failed(a.unwrap()).await.unwrap();
    assert!(
        store
            .begin_attempt(&[(ip, 10)], None, T0, POLICY)
            .await
            .unwrap()
            .is_err()
    );
    // ...and a refusal on a later key hands back what was reserved before it.
    for _ in 0..3 {
        let r = store.begin_attempt(&both, None, T0, POLICY).await.unwrap();
        assert!(r.is_err());
    }
    for _ in 0..10 {
        let a = store
            .begin_attempt(&[(k2, 10)], None, T0, POLICY)
            .await
            .unwrap();
        store
            .attempt_failed(a.expect("k2 was cleared"))
            .await
            .unwrap();
    }

    // The slow-down: past `slowdown_after` attempts, each needs a slot one second further
    // away than the last; a slot beyond the allowed wait is refused, and nothing is taken.
    let slow_key = "login-account:carol@example.org";
    let p = LockoutPolicy {
        slowdown_after: 3,
        ..POLICY
    };
    for _ in 0..3 {
        let a = store
            .begin_attempt(&[], Some(slow_key), T0, p)
            .await
            .unwrap();
        assert_eq!(a.expect("not slowed yet").waited_secs, 0);
    }
    let r = store
        .begin_attempt(&[], Some(slow_key), T0, p)
        .await
        .unwrap();
    assert_eq!(r.unwrap_err().retry_after_secs, 1);
    let waiting = LockoutPolicy {
        slowdown_max_wait_secs: 2,
        ..p
    };
    let started = std::time::Instant::now();
    let a = store
        .begin_attempt(&[], Some(slow_key), T0, waiting)
        .await
        .unwrap()
        .expect("a slot within 2 s");
    assert_eq!(a.waited_secs, 1);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    // The next slot would be 1 + 2 s away.
    let r = store
        .begin_attempt(&[], Some(slow_key), T0, waiting)
        .await
        .unwrap();
    assert!(r.is_err());
    // It never locks: later, the queue has drained.
    let a = store
        .begin_attempt(&[], Some(slow_key), T0 + 5, waiting)
        .await
        .unwrap();
    assert_eq!(a.expect("drained").waited_secs, 2);

    // Familiar addresses: the last few successful logins of each account.
    let dave = user(&store, "dave@example.org", None, OrgRole::Admin).await;
    assert!(
        !store
            .is_known_source("dave@example.org", "10.1.0.0")
            .await
            .unwrap()
    );
    for i in 0..12 {
        store
            .remember_source(&dave.id, &format!("10.1.0.{i}"), T0 + i)
            .await
            .unwrap();
    }
    assert!(
        store
            .is_known_source("dave@example.org", "10.1.0.11")
            .await
            .unwrap()
    );
    assert!(
        store
            .is_known_source("dave@example.org", "10.1.0.2")
            .await
            .unwrap()
    );
    assert!(
        !store
            .is_known_source("dave@example.org", "10.1.0.1")
            .await
            .unwrap()
    );
    assert!(
        !store
            .is_known_source("eve@example.org", "10.1.0.11")
            .await
            .unwrap()
    );

    // Purging keeps what still counts: the live lockout and open windows go only once
    // both are over.
    let (token, _) = {
        let u = user(&store, "carl@example.org", None, OrgRole::Admin).await;
        store.create_session(&u.id, T0, 60).await.unwrap()
    };
    store.purge_expired(T0 + 30, POLICY, None).await.unwrap();
    assert!(store.session(&token, T0 + 30).await.unwrap().is_some());
    assert!(
        store
            .begin_attempt(&[(ip, 10)], None, T0 + 30, POLICY)
            .await
            .unwrap()
            .is_err()
    );
    assert!(store.purge_expired(T0 + 3000, POLICY, None).await.unwrap() >= 3);
    assert!(
        store.session(&token, T0).await.unwrap().is_none(),
        "expired session purged"
    );
}

async fn built_in_plans_and_editing(url: String) {
    let store = Store::open(&url).await.unwrap();
    let plans = store.plans().await.unwrap();
    let ids: Vec<&str> = plans.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["free", "pro", "business"]);
    let free = &plans[0];
    assert_eq!(free.max_participants, Some(100));
    assert_eq!(free.max_duration_minutes, Some(40));
    assert!(!free.recording);
    let business = &plans[2];
    assert_eq!(business.max_participants, None);
    assert_eq!(business.max_duration_minutes, None);
    assert!(business.recording && business.breakout_rooms && business.large_meetings);
    assert_eq!(plans[1].max_duration_minutes, None);

    let edited = Plan {
        name: "Free (trial)".into(),
        max_participants: Some(50),
        max_duration_minutes: Some(30),
        e2ee_required: true,
        ..free.clone()
    };
    store.update_plan(&edited).await.unwrap();
    assert_eq!(store.plan("free").await.unwrap(), Some(edited.clone()));
    assert_invalid(
        store
            .update_plan(&Plan {
                max_participants: Some(0),
                ..edited.clone()
            })
            .await,
        "max_participants",
    );
    assert!(matches!(
        store
            .update_plan(&Plan {
                id: "platinum".into(),
                ..edited
            })
            .await,
        Err(StoreError::NotFound(_))
    ));
}

async fn upgrade_requests(url: String) {
    let store = Store::open(&url).await.unwrap();
    let alice = user(&store, "alice@example.org", None, OrgRole::Admin).await;
    let carol = user(&store, "carol@example.org", None, OrgRole::Admin).await;
    let op = user(&store, "op@example.org", None, OrgRole::Admin).await;

    let req = store
        .request_upgrade(&alice.org_id, &alice.id, "pro", "we grew", T0, None)
        .await
        .unwrap();
    assert_eq!(req.status, RequestStatus::Pending);
    // One pending request per organisation.
    assert!(matches!(
        store
            .request_upgrade(&alice.org_id, &alice.id, "business", "", T0, None)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .request_upgrade(&carol.org_id, &carol.id, "platinum", "", T0, None)
            .await,
        Err(StoreError::NotFound(_))
    ));
    // Ten requests at once for one organisation: exactly one wins.
    let dave = user(&store, "dave@example.org", None, OrgRole::Admin).await;
    let racers: Vec<_> = (0..10)
        .map(|_| {
            let (store, dave) = (store.clone(), dave.clone());
            tokio::spawn(async move {
                store
                    .request_upgrade(&dave.org_id, &dave.id, "pro", "", T0, None)
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);
    let creq = store
        .request_upgrade(&carol.org_id, &carol.id, "business", "", T0 + 1, None)
        .await
        .unwrap();

    let pending = store
        .upgrade_requests(None, Some(RequestStatus::Pending))
        .await
        .unwrap();
    assert_eq!(pending.len(), 3);
    assert_eq!(pending[0].id, creq.id, "newest first");
    let alices = store
        .upgrade_requests(Some(&alice.org_id), None)
        .await
        .unwrap();
    assert_eq!(alices, vec![req.clone()]);

    let approved = store
        .decide_upgrade(&req.id, true, &op.id, T0 + 5, None)
        .await
        .unwrap();
    assert_eq!(approved.status, RequestStatus::Approved);
    assert_eq!(approved.decided_by.as_deref(), Some(op.id.as_str()));
    assert_eq!(approved.decided_at, Some(T0 + 5));
    assert_eq!(
        store.org(&alice.org_id).await.unwrap().unwrap().plan_id,
        "pro"
    );
    // Deciding twice is a conflict; an unknown request is not found.
    assert!(matches!(
        store.decide_upgrade(&req.id, false, &op.id, T0, None).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.decide_upgrade("nope", true, &op.id, T0, None).await,
        Err(StoreError::NotFound(_))
    ));
    let declined = store
        .decide_upgrade(&creq.id, false, &op.id, T0, None)
        .await
        .unwrap();
    assert_eq!(declined.status, RequestStatus::Declined);
    assert_eq!(
        store.org(&carol.org_id).await.unwrap().unwrap().plan_id,
        "free"
    );
    // After a decision the organisation may ask again.
    store
        .request_upgrade(&carol.org_id, &carol.id, "pro", "", T0 + 9, None)
        .await
        .unwrap();
    store.set_org_plan(&carol.org_id, "business").await.unwrap();
    assert_eq!(
        store.org(&carol.org_id).await.unwrap().unwrap().plan_id,
        "business"
    );
}

fn scheduled(title: &str) -> NewMeeting {
    NewMeeting {
        title: title.into(),
        starts_at: Some(T0 + 86_400),
        duration_minutes: 45,
        recurrence: Recurrence::Weekly,
        passcode: Some("123456".into()),
        waiting_room: true,
        join_before_host: false,
        co_hosts: vec![],
        e2ee: E2eeMode::Required,
    }
}

async fn meetings_crud(url: String) {
    let store = Store::open(&url).await.unwrap();
    let alice = user(&store, "alice@example.org", None, OrgRole::Admin).await;
    let bob = user(
        &store,
        "bob@example.org",
        Some(&alice.org_id),
        OrgRole::Member,
    )
    .await;
    let carol = user(&store, "carol@example.org", None, OrgRole::Admin).await;

    let m = store
        .create_meeting(
            &alice,
            NewMeeting {
                co_hosts: vec![bob.id.clone()],
                ..scheduled("  Weekly sync ")
            },
            T0,
        )
        .await
        .unwrap();
    assert_eq!(m.title, "Weekly sync");
    assert_eq!(m.org_id, alice.org_id);
    assert_eq!(m.owner_id, alice.id);
    assert!(m.has_passcode);
    assert!(m.waiting_room && !m.join_before_host);
    assert_eq!(m.recurrence, Recurrence::Weekly);
    assert_eq!(m.co_hosts, vec![bob.id.clone()]);
    assert_eq!(m.e2ee, E2eeMode::Required);
    // 20 symbols of a 32-letter alphabet: 100 bits, URL-safe.
    assert_eq!(m.id.len(), 20);
    assert!(
        m.id.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );

    let instant = store
        .create_meeting(
            &alice,
            NewMeeting {
                title: "Quick call".into(),
                duration_minutes: 60,
                join_before_host: true,
                ..NewMeeting::default()
            },
            T0 + 1,
        )
        .await
        .unwrap();
    assert_ne!(instant.id, m.id);
    assert!(!instant.has_passcode && instant.starts_at.is_none());
    assert_eq!(instant.e2ee, E2eeMode::Off, "off unless asked for");

    // Bad values are refused with the field named; an unknown co-host creates nothing.
    assert_invalid(
        store.create_meeting(&alice, scheduled(""), T0).await,
        "title",
    );
    assert_invalid(
        store
            .create_meeting(
                &alice,
                NewMeeting {
                    duration_minutes: 0,
                    ..scheduled("x")
                },
                T0,
            )
            .await,
        "duration_minutes",
    );
    assert_invalid(
        store
            .create_meeting(
                &alice,
                NewMeeting {
                    passcode: Some("12".into()),
                    ..scheduled("x")
                },
                T0,
            )
            .await,
        "passcode",
    );
    assert_invalid(
        store
            .create_meeting(
                &alice,
                NewMeeting {
                    co_hosts: vec!["ghost".into()],
                    ..scheduled("ghost meeting")
                },
                T0,
            )
            .await,
        "co_hosts",
    );

    // "My meetings": owned and co-hosted; scheduled first, then instant.
    let mine: Vec<String> = store
        .meetings_of(&alice.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(mine, vec![m.id.clone(), instant.id.clone()]);
    let bobs = store.meetings_of(&bob.id).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].id, m.id);
    assert!(store.meetings_of(&carol.id).await.unwrap().is_empty());

    let updated = store
        .update_meeting(
            &m.id,
            MeetingPatch {
                title: Some("Renamed".into()),
                starts_at: Some(None),
                passcode: Some(None),
                waiting_room: Some(false),
                co_hosts: Some(vec![carol.id.clone()]),
                e2ee: Some(E2eeMode::Off),
                ..MeetingPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.title, "Renamed");
    assert_eq!(updated.e2ee, E2eeMode::Off);
    assert_eq!(updated.starts_at, None);
    assert!(!updated.has_passcode && !updated.waiting_room);
    assert_eq!(updated.duration_minutes, 45, "untouched fields stay");
    assert_eq!(updated.co_hosts, vec![carol.id.clone()]);
    assert_eq!(store.meeting(&m.id).await.unwrap(), Some(updated.clone()));
    assert_invalid(
        store
            .update_meeting(
                &m.id,
                MeetingPatch {
                    title: Some("Should not stick".into()),
                    co_hosts: Some(vec!["ghost".into()]),
                    ..MeetingPatch::default()
                },
            )
            .await,
        "co_hosts",
    );
    assert_eq!(store.meeting(&m.id).await.unwrap(), Some(updated));

    assert!(!store.meeting_deleted(&m.id).await.unwrap());
    store.delete_meeting(&m.id, T0, None).await.unwrap();
    assert_eq!(store.meeting(&m.id).await.unwrap(), None);
    // The id is remembered, so it never becomes an instant guest room.
    assert!(store.meeting_deleted(&m.id).await.unwrap());
    assert!(matches!(
        store.delete_meeting(&m.id, T0, None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.meetings_of(&carol.id).await.unwrap().is_empty());
}

async fn join_decision_roles_and_limits(url: String) {
    let store = Store::open(&url).await.unwrap();
    let host = user(&store, "host@example.org", None, OrgRole::Admin).await;
    // The organisation's admin is a separate person from the host here.
    store.set_org_role(&host.id, OrgRole::Member).await.unwrap();
    let host = store.user(&host.id).await.unwrap().unwrap();
    let org_admin = user(
        &store,
        "boss@example.org",
        Some(&host.org_id),
        OrgRole::Admin,
    )
    .await;
    let cohost = user(
        &store,
        "co@example.org",
        Some(&host.org_id),
        OrgRole::Member,
    )
    .await;
    let member = user(
        &store,
        "member@example.org",
        Some(&host.org_id),
        OrgRole::Member,
    )
    .await;
    let outsider = user(&store, "out@example.org", None, OrgRole::Admin).await;
    let op = user(&store, "op@example.org", None, OrgRole::Admin).await;
    store.set_user_role(&op.id, UserRole::Admin).await.unwrap();
    let op = store.user(&op.id).await.unwrap().unwrap();

    let m = store
        .create_meeting(
            &host,
            NewMeeting {
                co_hosts: vec![cohost.id.clone()],
                ..scheduled("Board")
            },
            T0,
        )
        .await
        .unwrap();
    let join = |u: Option<&User>, pass: Option<&str>| {
        let store = store.clone();
        let id = m.id.clone();
        let u = u.cloned();
        let pass = pass.map(str::to_owned);
        async move {
            store
                .meeting_for_join(&id, u.as_ref(), pass.as_deref(), T0, POLICY, None)
                .await
        }
    };

    // Hosts need no passcode and never wait.
    for (who, role) in [
        (&host, JoinRole::Host),
        (&cohost, JoinRole::CoHost),
        (&org_admin, JoinRole::CoHost),
        (&op, JoinRole::CoHost),
    ] {
        let d = join(Some(who), None).await.unwrap();
        assert_eq!(d.role, role, "{}", who.email);
        assert!(!d.waiting_room && !d.wait_for_host, "{}", who.email);
        assert_eq!(d.max_participants, Some(100));
        assert_eq!(d.max_duration_minutes, Some(40));
        assert_eq!(d.org_id, host.org_id);
        assert_eq!(d.e2ee, E2eeMode::Required, "the meeting's own setting");
    }
    // Everyone else needs the passcode and waits (waiting room on, join-before-host off).
    for (who, role) in [
        (Some(&member), JoinRole::Participant),
        (Some(&outsider), JoinRole::Participant),
        (None, JoinRole::Guest),
    ] {
        assert!(matches!(
            join(who, None).await,
            Err(JoinError::PasscodeRequired)
        ));
        assert!(matches!(
            join(who, Some("654321")).await,
            Err(JoinError::WrongPasscode)
        ));
        let d = join(who, Some("123456")).await.unwrap();
        assert_eq!(d.role, role);
        assert!(d.waiting_room && d.wait_for_host);
        assert_eq!(d.title, "Board");
    }
    assert!(matches!(
        store
            .meeting_for_join("nosuchmeeting", None, None, T0, POLICY, None)
            .await,
        Err(JoinError::NotFound)
    ));

    // Limits follow the organisation's plan.
    store.set_org_plan(&host.org_id, "business").await.unwrap();
    let d = join(None, Some("123456")).await.unwrap();
    assert_eq!(d.max_participants, None);
    assert_eq!(d.max_duration_minutes, None);
    assert!(d.plan.recording);

    // A plan that requires end-to-end encryption overrides a meeting that has it off.
    store
        .update_meeting(
            &m.id,
            MeetingPatch {
                e2ee: Some(E2eeMode::Off),
                ..MeetingPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(join(Some(&host), None).await.unwrap().e2ee, E2eeMode::Off);
    let plan = store.plan("business").await.unwrap().unwrap();
    store
        .update_plan(&Plan {
            e2ee_required: true,
            ..plan
        })
        .await
        .unwrap();
    assert_eq!(
        join(Some(&host), None).await.unwrap().e2ee,
        E2eeMode::Required
    );

    // Without waiting room and with join-before-host, guests walk straight in.
    store
        .update_meeting(
            &m.id,
            MeetingPatch {
                waiting_room: Some(false),
                join_before_host: Some(true),
                passcode: Some(None),
                ..MeetingPatch::default()
            },
        )
        .await
        .unwrap();
    let d = join(None, None).await.unwrap();
    assert_eq!(d.role, JoinRole::Guest);
    assert!(!d.waiting_room && !d.wait_for_host);
}

async fn passcode_lockout(url: String) {
    let store = Store::open(&url).await.unwrap();
    let host = user(&store, "host@example.org", None, OrgRole::Admin).await;
    let m = store
        .create_meeting(&host, scheduled("Locked"), T0)
        .await
        .unwrap();
    let other = store
        .create_meeting(&host, scheduled("Other"), T0)
        .await
        .unwrap();
    let try_join = |id: &str, pass: &str, ip: &str, now: i64| {
        let store = store.clone();
        let (id, pass, ip) = (id.to_owned(), pass.to_owned(), ip.to_owned());
        async move {
            store
                .meeting_for_join(&id, None, Some(&pass), now, POLICY, Some(&ip))
                .await
        }
    };
    // Ten wrong guesses from different addresses: each only "wrong".
    for i in 0..POLICY.max_failures {
        let r = try_join(&m.id, "000000", &format!("10.0.0.{i}"), T0).await;
        assert!(matches!(r, Err(JoinError::WrongPasscode)), "{i}: {r:?}");
    }
    // Past the meeting's slow-down allowance a stranger is refused for now (this policy
    // allows no wait)...
    let r = try_join(&m.id, "123456", "10.9.9.9", T0 + 60).await;
    assert!(matches!(r, Err(JoinError::LockedOut(_))), "{r:?}");
    // ...but nobody is locked out: the host, and a signed-in member of the organisation
    // with the passcode, still get in.
    let d = store
        .meeting_for_join(&m.id, Some(&host), None, T0 + 60, POLICY, Some("10.0.0.1"))
        .await
        .unwrap();
    assert_eq!(d.role, JoinRole::Host);
    let member = user(
        &store,
        "member@example.org",
        Some(&host.org_id),
        OrgRole::Member,
    )
    .await;
    let d = store
        .meeting_for_join(
            &m.id,
            Some(&member),
            Some("123456"),
            T0 + 60,
            POLICY,
            Some("10.9.9.9"),
        )
        .await
        .unwrap();
    assert_eq!(d.role, JoinRole::Participant);
    // After the window the stranger's right passcode works again.
    try_join(&m.id, "123456", "10.9.9.9", T0 + 900)
        .await
        .unwrap();

    // Per (meeting, address): ten wrong guesses from one address lock that address out
    // of that meeting, the right passcode included.
    let third = store
        .create_meeting(&host, scheduled("Third"), T0)
        .await
        .unwrap();
    for _ in 0..POLICY.max_failures {
        let r = try_join(&third.id, "999999", "192.0.2.50", T0 + 1000).await;
        assert!(matches!(r, Err(JoinError::WrongPasscode)), "{r:?}");
    }
    let r = try_join(&third.id, "123456", "192.0.2.50", T0 + 1001).await;
    assert!(matches!(r, Err(JoinError::LockedOut(899))), "{r:?}");
    // A passcode longer than any can be costs no verification.
    let r = try_join(&third.id, &"9".repeat(65), "192.0.2.51", T0 + 1001).await;
    assert!(
        matches!(r, Err(JoinError::Store(StoreError::Invalid { .. }))),
        "{r:?}"
    );

    // Per address: one IP guessing across meetings (under each meeting's own limits) is
    // locked out of all of them after `source_failures`.
    let mut meetings = Vec::new();
    for i in 0..4 {
        let m = store
            .create_meeting(&host, scheduled(&format!("Spray {i}")), T0)
            .await
            .unwrap();
        meetings.push(m.id);
    }
    for i in 0..POLICY.source_failures {
        let id = &meetings[usize::try_from(i).unwrap() % 3];
        let r = try_join(id, "999999", "192.0.2.1", T0 + 2000).await;
        assert!(matches!(r, Err(JoinError::WrongPasscode)), "{i}: {r:?}");
    }
    let r = try_join(&meetings[3], "123456", "192.0.2.1", T0 + 2001).await;
    assert!(matches!(r, Err(JoinError::LockedOut(_))), "{r:?}");
    try_join(&other.id, "123456", "192.0.2.2", T0 + 1001)
        .await
        .unwrap();
}

async fn usage_per_organisation(url: String) {
    let store = Store::open(&url).await.unwrap();
    let alice = user(&store, "alice@example.org", None, OrgRole::Admin).await;
    let carol = user(&store, "carol@example.org", None, OrgRole::Admin).await;
    let record = |start: i64, minutes: i64| UsageRecord {
        org_id: alice.org_id.clone(),
        meeting_id: "m".into(),
        started_at: start,
        ended_at: start + 600,
        peak_participants: 3,
        participant_minutes: minutes,
    };
    store.record_usage(&record(T0, 30)).await.unwrap();
    store.record_usage(&record(T0 + 3600, 12)).await.unwrap();
    store.record_usage(&record(T0 + 7200, 100)).await.unwrap();
    let bad = UsageRecord {
        ended_at: T0 - 1,
        ..record(T0, 1)
    };
    assert!(matches!(
        store.record_usage(&bad).await,
        Err(StoreError::Invalid { .. })
    ));

    let all = store.usage(Some(&alice.org_id), 0, i64::MAX).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].meetings, all[0].participant_minutes), (3, 142));
    let window = store
        .usage(Some(&alice.org_id), T0 + 1, T0 + 7200)
        .await
        .unwrap();
    assert_eq!((window[0].meetings, window[0].participant_minutes), (1, 12));
    // Every organisation, the idle one with zeros.
    let every = store.usage(None, 0, i64::MAX).await.unwrap();
    assert_eq!(every.len(), 2);
    let c = every.iter().find(|u| u.org_id == carol.org_id).unwrap();
    assert_eq!((c.meetings, c.participant_minutes), (0, 0));
}

async fn audit_log(url: String) {
    let store = Store::open(&url).await.unwrap();
    let alice = user(&store, "alice@example.org", None, OrgRole::Admin).await;
    for (i, action) in ["meeting.create", "meeting.update", "plan.update"]
        .iter()
        .enumerate()
    {
        store
            .audit(
                NewAuditEntry {
                    actor_id: Some(alice.id.clone()),
                    actor_email: Some(alice.email.clone()),
                    ip: Some("192.0.2.7".into()),
                    action: (*action).into(),
                    target: format!("t{i}"),
                    org_id: (i < 2).then(|| alice.org_id.clone()),
                    detail: String::new(),
                },
                T0,
            )
            .await
            .unwrap();
    }
    let all = store.audit_log(None, 10).await.unwrap();
    let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
    // Newest first, even within the same second.
    assert_eq!(actions, ["plan.update", "meeting.update", "meeting.create"]);
    assert_eq!(all[0].ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(all[0].actor_email.as_deref(), Some("alice@example.org"));
    assert_eq!(all[0].at, T0);
    let org = store.audit_log(Some(&alice.org_id), 10).await.unwrap();
    assert_eq!(org.len(), 2);
    assert_eq!(store.audit_log(None, 1).await.unwrap().len(), 1);
    // Oversized free text is cut, so no caller can make an entry large.
    store
        .audit(
            NewAuditEntry {
                actor_id: None,
                actor_email: None,
                ip: None,
                action: "auth.lockout".into(),
                target: "x".repeat(1 << 20),
                org_id: None,
                detail: "é".repeat(10_000),
            },
            T0 + 10,
        )
        .await
        .unwrap();
    let newest = &store.audit_log(None, 1).await.unwrap()[0];
    assert_eq!(newest.target.chars().count(), 512);
    assert_eq!(newest.detail.chars().count(), 512);
    assert!(newest.detail.ends_with('…'));
    // Retention: entries older than it go at the next purge, newer ones stay; `None`
    // keeps everything.
    store.purge_expired(T0 + 100, POLICY, None).await.unwrap();
    assert_eq!(store.audit_log(None, 10).await.unwrap().len(), 4);
    store
        .purge_expired(T0 + 100, POLICY, Some(95))
        .await
        .unwrap();
    let kept = store.audit_log(None, 10).await.unwrap();
    assert_eq!(kept.len(), 1, "only the entry of T0 + 10 is within 95 s");
    assert_eq!(kept[0].action, "auth.lockout");
}

async fn data_survives_reopen(url: String) {
    let store = Store::open(&url).await.unwrap();
    let alice = user(&store, "alice@example.org", None, OrgRole::Admin).await;
    let m = store
        .create_meeting(&alice, scheduled("Persistent"), T0)
        .await
        .unwrap();
    let (token, _) = store.create_session(&alice.id, T0, 3600).await.unwrap();
    store.close().await;

    // Reopening runs the migrations again: a no-op that keeps every row.
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.meeting(&m.id).await.unwrap(), Some(m));
    assert_eq!(store.session(&token, T0).await.unwrap().unwrap().0, alice);
    assert!(
        store
            .check_login("alice@example.org", "password-of-alice@example.org")
            .await
            .unwrap()
            .is_some()
    );
}

/// The admin CLI and the server are two processes on one database: two pools writing at the
/// same moment both succeed (SQLite: WAL plus busy timeout).
async fn two_processes_write_at_once(url: String) {
    let a = Store::open(&url).await.unwrap();
    let b = Store::open(&url).await.unwrap();
    let alice = user(&a, "alice@example.org", None, OrgRole::Admin).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let alice = alice.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create_meeting(
                    &alice,
                    NewMeeting {
                        title: format!("m{i}"),
                        duration_minutes: 30,
                        ..NewMeeting::default()
                    },
                    T0,
                )
                .await
                .unwrap();
            store
                .begin_attempt(&[("login:x", 10)], None, T0, POLICY)
                .await
                .unwrap()
                .is_ok()
        }));
    }
    // Accounts too: each joins Alice's organisation from either pool.
    let mut joins = Vec::new();
    for i in 0..6 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let org = alice.org_id.clone();
        joins.push(tokio::spawn(async move {
            user(
                &store,
                &format!("m{i}@example.org"),
                Some(&org),
                OrgRole::Member,
            )
            .await
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    assert_eq!(a.list_users(Some(&alice.org_id)).await.unwrap().len(), 7);
    let mut reserved = 0;
    for t in tasks {
        reserved += usize::from(t.await.unwrap());
    }
    assert_eq!(b.meetings_of(&alice.id).await.unwrap().len(), 20);
    // Twenty concurrent attempts against a limit of ten, from two pools: exactly ten got
    // their place.
    assert_eq!(reserved, 10);
}

/// The server and the admin CLI started at the same moment on a fresh database: both run
/// the migrations, neither fails.
async fn simultaneous_first_start(url: String) {
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Store::open(&url).await })
        })
        .collect();
    for o in opens {
        let store = o.await.unwrap().expect("concurrent first open");
        assert_eq!(store.plans().await.unwrap().len(), 3);
    }
}

fn external(subject: &str, email: &str, org_admin: Option<bool>) -> ExternalIdentity {
    ExternalIdentity {
        provider: "ldap",
        subject: subject.into(),
        login_name: Some(subject.into()),
        email: email.into(),
        name: " Alice\u{7} Directory ".into(),
        org_admin,
        operator: None,
    }
}

/// Directory sign-in's linking rules, roles, local passwords, familiar addresses, and the
/// one-time OpenID Connect sign-ins.
async fn directory_accounts(url: String) {
    let store = Store::open(&url).await.unwrap();
    let local = user(&store, "bob@example.org", None, OrgRole::Member).await;
    // A new identity: a new account in the directory organisation, admin by its group.
    let (alice, how) = store
        .directory_sign_in(
            &external("alice", "Alice@Example.org", Some(true)),
            "Example",
            T0,
            None,
        )
        .await
        .unwrap();
    assert_eq!(how, Provisioned::Created);
    assert_eq!(alice.email, "alice@example.org");
    assert_eq!(
        alice.name, "Alice Directory",
        "trimmed, control characters dropped"
    );
    assert_eq!(alice.org_role, OrgRole::Admin);
    let org = store.org(&alice.org_id).await.unwrap().unwrap();
    assert_eq!(org.name, "Example");
    assert_eq!(
        store
            .check_login("alice@example.org", "!directory")
            .await
            .unwrap(),
        None
    );
    // Signed in again, no longer in the admin group: the same account, a member now.
    let (again, how) = store
        .directory_sign_in(
            &external("alice", "alice@example.org", Some(false)),
            "Other",
            T0 + 1,
            None,
        )
        .await
        .unwrap();
    assert_eq!((how, &again.id), (Provisioned::Existing, &alice.id));
    assert_eq!(again.org_role, OrgRole::Member);
    // Another directory user joins the same organisation.
    let (carol, _) = store
        .directory_sign_in(
            &external("carol", "carol@example.org", None),
            "Other",
            T0,
            None,
        )
        .await
        .unwrap();
    assert_eq!(carol.org_id, alice.org_id);
    // An existing account is linked by email and keeps its organisation and role there.
    let (bob, how) = store
        .directory_sign_in(
            &external("bob", "BOB@example.org", Some(false)),
            "Other",
            T0,
            None,
        )
        .await
        .unwrap();
    assert_eq!((how, &bob.id), (Provisioned::Linked, &local.id));
    assert_eq!(
        (bob.org_id.as_str(), bob.org_role),
        (local.org_id.as_str(), OrgRole::Admin)
    );
    assert!(store.is_directory_linked(&bob.id).await.unwrap());
    assert!(!store.is_directory_linked(&org.id).await.unwrap());
    let pw = "password-of-bob@example.org";
    assert!(
        store
            .check_local_login("bob@example.org", pw, true)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .check_local_login("bob@example.org", pw, false)
            .await
            .unwrap()
            .is_none()
    );
    store
        .remember_source(&bob.id, "10.0.0.1", T0)
        .await
        .unwrap();
    assert!(
        store
            .is_known_directory_source("ldap", "bob", "10.0.0.1")
            .await
            .unwrap()
    );
    assert!(
        !store
            .is_known_directory_source("ldap", "bob", "10.0.0.2")
            .await
            .unwrap()
    );
    assert!(
        !store
            .is_known_directory_source("oidc", "bob", "10.0.0.1")
            .await
            .unwrap()
    );

    let login = PendingOidcLogin {
        nonce: "nonce".into(),
        pkce_verifier: "verifier".into(),
        next: "/meetings".into(),
        created_at: T0,
    };
    assert!(
        store
            .begin_oidc_login("state-1", &login, 600, 2)
            .await
            .unwrap()
    );
    assert!(
        store
            .begin_oidc_login("state-2", &login, 600, 2)
            .await
            .unwrap()
    );
    assert!(
        !store
            .begin_oidc_login("state-3", &login, 600, 2)
            .await
            .unwrap(),
        "bounded"
    );
    let taken = store
        .take_oidc_login("state-1", T0 + 10, 600)
        .await
        .unwrap();
    assert_eq!(taken, Some(login.clone()));
    assert_eq!(
        store
            .take_oidc_login("state-1", T0 + 10, 600)
            .await
            .unwrap(),
        None,
        "once"
    );
    assert_eq!(
        store
            .take_oidc_login("state-2", T0 + 600, 600)
            .await
            .unwrap(),
        None,
        "expired"
    );
    assert!(
        store
            .begin_oidc_login("state-4", &login, 600, 2)
            .await
            .unwrap()
    );
    assert_eq!(store.purge_oidc_logins(T0 + 600, 600).await.unwrap(), 1);
}
