//! Plans, upgrade requests, usage and the audit log — per organisation for its admins, and
//! across the service for the operator.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::accounts::check_administers;
use super::{ApiError, ApiResult, ApiState, Caller, Json, Path, Query, audit_entry};
use crate::sockets::SessionEnd;
use crate::store::{
    AuditFilter, OrgRole, Plan, RequestStatus, User, UserRole, rename_org_on, set_org_plan_on,
    set_org_role_on, set_user_role_on, update_plan_on,
};

const AUDIT_LIMIT_DEFAULT: i64 = 100;
const AUDIT_LIMIT_MAX: i64 = 1000;
/// Longest text filter of an audit query, in characters.
const AUDIT_FILTER_MAX_CHARS: usize = 200;

pub(super) fn check_operator(caller: &Caller) -> ApiResult<&User> {
    let user = caller.user()?;
    if user.is_operator() {
        Ok(user)
    } else {
        Err(ApiError::Forbidden)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanBody {
    name: String,
    max_participants: Option<i64>,
    max_duration_minutes: Option<i64>,
    recording: bool,
    breakout_rooms: bool,
    e2ee_required: bool,
    large_meetings: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpgradeBody {
    plan_id: String,
    #[serde(default)]
    note: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OrgPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    plan_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserPatch {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    org_role: Option<String>,
}

/// `?since=&until=` in Unix seconds; the default is everything up to now.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Period {
    #[serde(default)]
    since: Option<i64>,
    #[serde(default)]
    until: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    #[serde(default)]
    limit: Option<i64>,
    /// Actions starting with this (`meeting.` for every host action).
    #[serde(default)]
    action: Option<String>,
    /// The actor's account id, or part of their email.
    #[serde(default)]
    actor: Option<String>,
    /// On the operator's route only: one organisation's entries.
    #[serde(default)]
    org: Option<String>,
    /// Unix seconds: entries at or after `since`, before `until`.
    #[serde(default)]
    since: Option<i64>,
    #[serde(default)]
    until: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequestQuery {
    #[serde(default)]
    status: Option<String>,
}

/// Public: the sign-up and upgrade pages show what each plan offers.
pub(super) async fn list_plans(State(state): State<ApiState>) -> ApiResult<Response> {
    Ok(axum::Json(json!({"plans": state.store.plans().await?})).into_response())
}

pub(super) async fn update_plan(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<PlanBody>,
) -> ApiResult<Response> {
    check_operator(&caller)?;
    let plan = Plan {
        id: id.clone(),
        name: body.name,
        max_participants: body.max_participants,
        max_duration_minutes: body.max_duration_minutes,
        recording: body.recording,
        breakout_rooms: body.breakout_rooms,
        e2ee_required: body.e2ee_required,
        large_meetings: body.large_meetings,
    };
    let detail = serde_json::to_string(&plan).unwrap_or_default();
    state
        .store
        .audited(
            state.now(),
            async |c| update_plan_on(c, &plan).await,
            |_| audit_entry(&caller, "plan.update", &id, None, detail),
        )
        .await?;
    let plan = state
        .store
        .plan(&id)
        .await?
        .ok_or(ApiError::NotFound("plan"))?;
    Ok(axum::Json(plan).into_response())
}

fn period(state: &ApiState, p: &Period) -> ApiResult<(i64, i64)> {
    let since = p.since.unwrap_or(0);
    let until = p.until.unwrap_or_else(|| state.now() + 1);
    if until < since {
        return Err(ApiError::InvalidField {
            field: "until",
            message: format!("{until} is before since {since}"),
        });
    }
    Ok((since, until))
}

pub(super) async fn org_usage(
    State(state): State<ApiState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Query(p): Query<Period>,
) -> ApiResult<Response> {
    check_administers(caller.user()?, &org_id)?;
    let (since, until) = period(&state, &p)?;
    let usage = state.store.usage(Some(&org_id), since, until).await?;
    let summary = usage
        .into_iter()
        .next()
        .ok_or(ApiError::NotFound("organisation"))?;
    Ok(axum::Json(json!({"since": since, "until": until, "usage": summary})).into_response())
}

pub(super) async fn all_usage(
    State(state): State<ApiState>,
    caller: Caller,
    Query(p): Query<Period>,
) -> ApiResult<Response> {
    check_operator(&caller)?;
    let (since, until) = period(&state, &p)?;
    let usage = state.store.usage(None, since, until).await?;
    Ok(axum::Json(json!({"since": since, "until": until, "usage": usage})).into_response())
}

/// The filter `q` asks for, scoped to `org` (the path's organisation, or the operator's
/// `?org=`). Empty strings mean no filter, as an empty form field does.
fn audit_filter(q: AuditQuery, org: Option<String>) -> ApiResult<AuditFilter> {
    let limit = q.limit.unwrap_or(AUDIT_LIMIT_DEFAULT);
    if !(1..=AUDIT_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::InvalidField {
            field: "limit",
            message: format!("{limit} is not between 1 and {AUDIT_LIMIT_MAX}"),
        });
    }
    let text = |field: &'static str, v: Option<String>| -> ApiResult<Option<String>> {
        match v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) {
            Some(s) if s.chars().count() > AUDIT_FILTER_MAX_CHARS => Err(ApiError::InvalidField {
                field,
                message: format!("longer than {AUDIT_FILTER_MAX_CHARS} characters"),
            }),
            other => Ok(other),
        }
    };
    if let (Some(since), Some(until)) = (q.since, q.until)
        && until < since
    {
        return Err(ApiError::InvalidField {
            field: "until",
            message: format!("{until} is before since {since}"),
        });
    }
    Ok(AuditFilter {
        org_id: text("org", org)?,
        action: text("action", q.action)?,
        actor: text("actor", q.actor)?,
        since: q.since,
        until: q.until,
        limit,
    })
}

pub(super) async fn org_audit(
    State(state): State<ApiState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Response> {
    check_administers(caller.user()?, &org_id)?;
    if q.org.is_some() {
        return Err(ApiError::InvalidField {
            field: "org",
            message: "the organisation is in the path".into(),
        });
    }
    let filter = audit_filter(q, Some(org_id))?;
    let entries = state.store.audit_log_filtered(&filter).await?;
    Ok(axum::Json(json!({"entries": entries})).into_response())
}

pub(super) async fn all_audit(
    State(state): State<ApiState>,
    caller: Caller,
    Query(mut q): Query<AuditQuery>,
) -> ApiResult<Response> {
    check_operator(&caller)?;
    let org = q.org.take();
    let entries = state
        .store
        .audit_log_filtered(&audit_filter(q, org)?)
        .await?;
    Ok(axum::Json(json!({"entries": entries})).into_response())
}

pub(super) async fn request_upgrade(
    State(state): State<ApiState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Json(body): Json<UpgradeBody>,
) -> ApiResult<Response> {
    let user = caller.user()?;
    check_administers(user, &org_id)?;
    if state.store.org(&org_id).await?.is_none() {
        return Err(ApiError::NotFound("organisation"));
    }
    let req = state
        .store
        .request_upgrade(
            &org_id,
            &user.id,
            &body.plan_id,
            &body.note,
            state.now(),
            Some(&caller.actor()),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(req)).into_response())
}

fn status_filter(q: &RequestQuery) -> ApiResult<Option<RequestStatus>> {
    q.status
        .as_deref()
        .map(|s| {
            RequestStatus::parse(s).ok_or_else(|| ApiError::InvalidField {
                field: "status",
                message: format!("{s:?} is not pending, approved or declined"),
            })
        })
        .transpose()
}

pub(super) async fn org_upgrade_requests(
    State(state): State<ApiState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Query(q): Query<RequestQuery>,
) -> ApiResult<Response> {
    check_administers(caller.user()?, &org_id)?;
    let reqs = state
        .store
        .upgrade_requests(Some(&org_id), status_filter(&q)?)
        .await?;
    Ok(axum::Json(json!({"requests": reqs})).into_response())
}

pub(super) async fn all_upgrade_requests(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<RequestQuery>,
) -> ApiResult<Response> {
    check_operator(&caller)?;
    let reqs = state
        .store
        .upgrade_requests(None, status_filter(&q)?)
        .await?;
    Ok(axum::Json(json!({"requests": reqs})).into_response())
}

async fn decide(state: &ApiState, caller: &Caller, id: &str, approve: bool) -> ApiResult<Response> {
    let user = check_operator(caller)?;
    let req = state
        .store
        .decide_upgrade(id, approve, &user.id, state.now(), Some(&caller.actor()))
        .await?;
    Ok(axum::Json(req).into_response())
}

pub(super) async fn approve_upgrade(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    decide(&state, &caller, &id, true).await
}

pub(super) async fn decline_upgrade(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    decide(&state, &caller, &id, false).await
}

pub(super) async fn list_users(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Response> {
    check_operator(&caller)?;
    Ok(axum::Json(json!({"users": state.store.list_users(None).await?})).into_response())
}

pub(super) async fn list_orgs(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Response> {
    check_operator(&caller)?;
    Ok(axum::Json(json!({"orgs": state.store.orgs().await?})).into_response())
}

pub(super) async fn update_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<UserPatch>,
) -> ApiResult<Response> {
    check_operator(&caller)?;
    let target = state
        .store
        .user(&id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    // Both values are checked before either is written, so a bad one changes nothing.
    let role = body
        .role
        .as_deref()
        .map(|r| {
            UserRole::parse(r).ok_or_else(|| ApiError::InvalidField {
                field: "role",
                message: format!("{r:?} is not admin or user"),
            })
        })
        .transpose()?;
    let org_role = body
        .org_role
        .as_deref()
        .map(|r| {
            OrgRole::parse(r).ok_or_else(|| ApiError::InvalidField {
                field: "org_role",
                message: format!("{r:?} is not admin or member"),
            })
        })
        .transpose()?;
    let detail = format!("role={:?} org_role={:?}", body.role, body.org_role);
    state
        .store
        .audited(
            state.now(),
            async |c| {
                if let Some(role) = role {
                    set_user_role_on(c, &id, role).await?;
                }
                if let Some(role) = org_role {
                    set_org_role_on(c, &id, role).await?;
                }
                Ok(())
            },
            |_| audit_entry(&caller, "user.update", &id, Some(&target.org_id), detail),
        )
        .await?;
    if role.is_some() || org_role.is_some() {
        // Live connections carry the roles they joined with; they end, and the next join
        // is decided on the new ones.
        state.sockets.end_user(&id, SessionEnd::RoleChanged);
    }
    let user = state
        .store
        .user(&id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    Ok(axum::Json(user).into_response())
}

/// The operator renames an organisation or sets its plan without a request (e.g. after a
/// contract signed elsewhere).
pub(super) async fn update_org(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<OrgPatch>,
) -> ApiResult<Response> {
    check_operator(&caller)?;
    if state.store.org(&id).await?.is_none() {
        return Err(ApiError::NotFound("organisation"));
    }
    let detail = format!("name={:?} plan={:?}", body.name, body.plan_id);
    state
        .store
        .audited(
            state.now(),
            async |c| {
                if let Some(name) = &body.name {
                    rename_org_on(c, &id, name).await?;
                }
                if let Some(plan) = &body.plan_id {
                    set_org_plan_on(c, &id, plan).await?;
                }
                Ok(())
            },
            |_| audit_entry(&caller, "org.update", &id, Some(&id), detail),
        )
        .await?;
    let org = state
        .store
        .org(&id)
        .await?
        .ok_or(ApiError::NotFound("organisation"))?;
    Ok(axum::Json(org).into_response())
}
