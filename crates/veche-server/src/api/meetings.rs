//! Meetings: create (instant or scheduled), list mine, read, change, delete, and the join
//! check (passcode, role, waiting room, plan limits).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use veche_proto::{ClientMessage, E2eeMode, ErrorCode, Role};
use veche_sfu::{ControlError, RemoteActor, UserRef};

use super::{ApiError, ApiResult, ApiState, Caller, Json, Path, RawBody};
use crate::store::{Meeting, MeetingPatch, NewMeeting, Recurrence, User, normalize_email};

/// Default length of a meeting created without one (an instant meeting).
const DEFAULT_DURATION_MINUTES: i64 = 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    title: String,
    #[serde(default)]
    starts_at: Option<i64>,
    #[serde(default)]
    duration_minutes: Option<i64>,
    #[serde(default)]
    recurrence: Recurrence,
    #[serde(default)]
    passcode: Option<String>,
    #[serde(default)]
    waiting_room: bool,
    #[serde(default = "yes")]
    join_before_host: bool,
    /// Emails of registered users who co-host.
    #[serde(default)]
    co_hosts: Vec<String>,
    #[serde(default)]
    e2ee: E2eeMode,
}

fn yes() -> bool {
    true
}

/// `Option<Option<T>>` that tells "absent" (outer `None`) from `null` (`Some(None)`).
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchBody {
    #[serde(default)]
    title: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    starts_at: Option<Option<i64>>,
    #[serde(default)]
    duration_minutes: Option<i64>,
    #[serde(default)]
    recurrence: Option<Recurrence>,
    #[serde(default, deserialize_with = "nullable")]
    passcode: Option<Option<String>>,
    #[serde(default)]
    waiting_room: Option<bool>,
    #[serde(default)]
    join_before_host: Option<bool>,
    #[serde(default)]
    co_hosts: Option<Vec<String>>,
    #[serde(default)]
    e2ee: Option<E2eeMode>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct JoinBody {
    #[serde(default)]
    passcode: Option<String>,
}

/// Most co-hosts one meeting may name.
pub(crate) const MAX_CO_HOSTS: usize = 20;

/// The user ids of `emails`, which must all be members of `org_id` (the meeting's
/// organisation). An address with no account and one of another organisation get the same
/// answer, so the field cannot tell who has an account elsewhere; and a request naming
/// someone who is not a member counts against the caller's allowance of such misses (the
/// lockout policy's per-pair number), so colleagues cannot be enumerated at speed either.
async fn co_host_ids(
    state: &ApiState,
    caller: &User,
    org_id: &str,
    emails: &[String],
) -> ApiResult<Vec<String>> {
    if emails.is_empty() {
        return Ok(Vec::new());
    }
    if emails.len() > MAX_CO_HOSTS {
        return Err(ApiError::InvalidField {
            field: "co_hosts",
            message: format!("at most {MAX_CO_HOSTS} co-hosts"),
        });
    }
    let emails = emails
        .iter()
        .map(|e| normalize_email(e))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = state.settings.lockout;
    let key = format!("co-hosts:{}", caller.id);
    let attempt = state
        .store
        .begin_attempt(&[(&key, policy.max_failures)], None, state.now(), policy)
        .await?
        .map_err(|r| ApiError::LockedOut(r.retry_after_secs))?;
    let mut ids = Vec::with_capacity(emails.len());
    for email in &emails {
        match state.store.user_by_email(email).await {
            Ok(Some(user)) if user.org_id == org_id => ids.push(user.id),
            Ok(_) => {
                let _locked = state.store.attempt_failed(attempt).await?;
                return Err(ApiError::InvalidField {
                    field: "co_hosts",
                    message: format!("{email:?} is not a member of this organisation"),
                });
            }
            Err(e) => {
                state.store.attempt_abandoned(attempt).await?;
                return Err(e.into());
            }
        }
    }
    state.store.attempt_succeeded(attempt, &[]).await?;
    Ok(ids)
}

/// How much of a meeting the caller may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Access {
    /// Knows nothing about it: 404, as if it did not exist.
    None,
    /// Co-host: may read its details.
    Read,
    /// Owner, organisation admin, operator: may change and delete it.
    Manage,
}

fn access(user: &User, meeting: &Meeting) -> Access {
    if user.id == meeting.owner_id || user.administers(&meeting.org_id) {
        Access::Manage
    } else if meeting.co_hosts.contains(&user.id) {
        Access::Read
    } else {
        Access::None
    }
}

pub(super) async fn load(
    state: &ApiState,
    user: &User,
    id: &str,
    need: Access,
) -> ApiResult<Meeting> {
    let meeting = state
        .store
        .meeting(id)
        .await?
        .ok_or(ApiError::NotFound("meeting"))?;
    let have = access(user, &meeting);
    if have == Access::None {
        return Err(ApiError::NotFound("meeting"));
    }
    if have < need {
        return Err(ApiError::Forbidden);
    }
    Ok(meeting)
}

pub(super) async fn list(State(state): State<ApiState>, caller: Caller) -> ApiResult<Response> {
    let user = caller.user()?;
    let meetings = state.store.meetings_of(&user.id).await?;
    Ok(axum::Json(json!({"meetings": meetings})).into_response())
}

pub(super) async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<CreateBody>,
) -> ApiResult<Response> {
    let user = caller.user()?;
    let co_hosts = co_host_ids(&state, user, &user.org_id, &body.co_hosts).await?;
    let meeting = state
        .store
        .create_meeting_by(
            &caller.actor(),
            user,
            NewMeeting {
                title: body.title,
                starts_at: body.starts_at,
                duration_minutes: body.duration_minutes.unwrap_or(DEFAULT_DURATION_MINUTES),
                recurrence: body.recurrence,
                passcode: body.passcode.filter(|p| !p.is_empty()),
                waiting_room: body.waiting_room,
                join_before_host: body.join_before_host,
                co_hosts,
                e2ee: body.e2ee,
            },
            state.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(meeting)).into_response())
}

pub(super) async fn get_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let meeting = load(&state, caller.user()?, &id, Access::Read).await?;
    Ok(axum::Json(meeting).into_response())
}

pub(super) async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<PatchBody>,
) -> ApiResult<Response> {
    let user = caller.user()?;
    let meeting = load(&state, user, &id, Access::Manage).await?;
    let co_hosts = match &body.co_hosts {
        Some(emails) => Some(co_host_ids(&state, user, &meeting.org_id, emails).await?),
        None => None,
    };
    let updated = state
        .store
        .update_meeting_by(
            &caller.actor(),
            &meeting.id,
            MeetingPatch {
                title: body.title,
                starts_at: body.starts_at,
                duration_minutes: body.duration_minutes,
                recurrence: body.recurrence,
                passcode: body.passcode.map(|p| p.filter(|p| !p.is_empty())),
                waiting_room: body.waiting_room,
                join_before_host: body.join_before_host,
                co_hosts,
                e2ee: body.e2ee,
            },
            state.now(),
        )
        .await?;
    Ok(axum::Json(updated).into_response())
}

pub(super) async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let user = caller.user()?;
    let meeting = load(&state, user, &id, Access::Manage).await?;
    // The tombstone is written first: from here on no join gets in (not even as an instant
    // guest room of the same name), so ending the live meeting below leaves nobody inside.
    state
        .store
        .delete_meeting(&meeting.id, state.now(), Some(&caller.actor()))
        .await?;
    if let Some(sfu) = &state.sfu {
        let actor = RemoteActor {
            role: Role::Host,
            user: Some(UserRef {
                id: user.id.clone(),
                email: user.email.clone(),
            }),
            ip: caller.ip.as_deref().and_then(|ip| ip.parse().ok()),
        };
        match sfu
            .control(meeting.id.clone(), actor, ClientMessage::EndMeeting)
            .await
        {
            // Not running: nothing to end.
            Ok(())
            | Err(ControlError {
                code: ErrorCode::MeetingNotFound,
                ..
            }) => {}
            // The meeting is deleted either way; whoever is still in it is refused on
            // their next join, and the operator learns why it did not end.
            Err(e) => {
                tracing::warn!(meeting = %meeting.id, error = %e.message, "ending a deleted meeting failed")
            }
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Anyone with the link may ask to join — guests included — and learns their role, whether
/// they will wait, and the plan's limits. The passcode is checked here under the attempt
/// limits of [`crate::store::Store::meeting_for_join`].
///
/// A body must be declared as JSON (or come with `X-CSRF-Token`): both make a browser ask
/// before sending it cross-site, so another site cannot make its visitors' browsers guess
/// passcodes as `text/plain` form posts.
pub(super) async fn join(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    if !body.is_empty() && !is_json(&headers) && !headers.contains_key("x-csrf-token") {
        return Err(ApiError::UnsupportedMediaType);
    }
    // An empty body is a join without passcode; anything else must be a JoinBody.
    let body: JoinBody = if body.is_empty() {
        JoinBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))?
    };
    let ip = caller.ip.clone();
    let decision = state
        .store
        .meeting_for_join(
            &id,
            caller.user.as_ref(),
            body.passcode.as_deref(),
            state.now(),
            state.settings.lockout,
            ip.as_deref(),
        )
        .await?;
    Ok(axum::Json(decision).into_response())
}

/// The request declares a JSON body (`application/json`, parameters allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// The running meeting: participants (with roles and media state), the waiting room and its
/// settings; `{"live": false}` when nobody is in it. Hosts, co-hosts and admins.
pub(super) async fn live(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let meeting = load(&state, caller.user()?, &id, Access::Read).await?;
    let sfu = state.sfu.as_ref().ok_or(ApiError::Unavailable)?;
    let body = match sfu.live_meeting(meeting.id).await {
        Some(live) => json!({
            "live": true,
            "meeting": live.meeting,
            "participants": live.participants,
            "waiting": live.waiting,
        }),
        None => json!({"live": false}),
    };
    Ok(axum::Json(body).into_response())
}

/// A host control on the running meeting, from outside it: the body is the same JSON as the
/// signalling message (`{"type": "mute", "participant_id": 7, "kind": "audio"}`, …). The
/// meeting's owner, the admins of its organisation and the operator act with the host's
/// authority (an admin can end a meeting nobody minds); named co-hosts as co-host.
pub(super) async fn control(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let user = caller.user()?;
    let meeting = load(&state, user, &id, Access::Read).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8".into()))?;
    let action = ClientMessage::parse(text)
        .map_err(|e| ApiError::BadRequest(format!("not a host control: {e}")))?;
    let role = match access(user, &meeting) {
        Access::Manage => Role::Host,
        _ => Role::CoHost,
    };
    let sfu = state.sfu.as_ref().ok_or(ApiError::Unavailable)?;
    let actor = RemoteActor {
        role,
        user: Some(UserRef {
            id: user.id.clone(),
            email: user.email.clone(),
        }),
        ip: caller.ip.as_deref().and_then(|ip| ip.parse().ok()),
    };
    sfu.control(meeting.id, actor, action).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
