//! Calendar: a meeting's `.ics` invitation, invitations by email (queued in the outbox the
//! mailer task sends from), and each user's private feed at `/calendar/{token}.ics` with
//! the token's management under `/auth/calendar`. See docs/calendar.md.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::meetings::{Access, load};
use super::{ApiError, ApiResult, ApiState, Caller, Json, Path, Query, RawBody, audit_entry};
use crate::calendar::ics::{self, Method};
use crate::calendar::text::{Lang, Msg, text};
use crate::calendar::{self as cal};
use crate::store::{Meeting, User, normalize_email};

/// Most invitations one meeting's log shows.
const MAX_LISTED_INVITES: i64 = 500;

/// The language of what the server writes for this request: `lang` if it names one of
/// ours, else the `Accept-Language` header, else English.
fn language(lang: Option<&str>, headers: &HeaderMap) -> Lang {
    lang.and_then(Lang::from_tag)
        .or_else(|| {
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::from_accept_language)
        })
        .unwrap_or_default()
}

/// Where links point: `--public-url`, else this request's host — its `Host` header, or the
/// authority of an HTTP/2 request (a download is for the caller, who reached the server by
/// it).
fn base_url(state: &ApiState, headers: &HeaderMap, uri: &Uri) -> ApiResult<String> {
    if let Some(base) = &state.calendar.settings().public_url {
        return Ok(base.clone());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .ok_or_else(|| ApiError::BadRequest("no usable Host header".into()))?;
    let scheme = if state.settings.secure_cookies {
        "https"
    } else {
        "http"
    };
    Ok(format!("{scheme}://{host}"))
}

fn calendar_response(body: String, filename: Option<&str>) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "private, no-cache"),
        ],
        body,
    )
        .into_response();
    if let Some(name) = filename
        && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
    {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// Checks a passcode the caller wants in the invitation: only the meeting's managers may
/// put it there (co-hosts never learn it), and it must be the meeting's.
async fn included_passcode(
    state: &ApiState,
    user: &User,
    meeting: &Meeting,
    passcode: Option<String>,
) -> ApiResult<Option<String>> {
    let Some(p) = passcode.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    if load(state, user, &meeting.id, Access::Manage)
        .await
        .is_err()
    {
        return Err(ApiError::Forbidden);
    }
    if !state.store.meeting_passcode_is(&meeting.id, &p).await? {
        return Err(ApiError::InvalidField {
            field: "passcode",
            message: "is not this meeting's passcode".into(),
        });
    }
    Ok(Some(p))
}

fn scheduled(meeting: &Meeting) -> ApiResult<i64> {
    meeting.starts_at.ok_or(ApiError::InvalidField {
        field: "starts_at",
        message: "an instant meeting has no time to put in a calendar".into(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InviteQuery {
    #[serde(default)]
    passcode: Option<String>,
    #[serde(default)]
    lang: Option<String>,
}

/// `GET /meetings/{id}/invite.ics`: the meeting as an iCalendar file (METHOD:PUBLISH).
pub(super) async fn invite_ics(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<InviteQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let user = caller.user()?;
    let meeting = load(&state, user, &id, Access::Read).await?;
    scheduled(&meeting)?;
    let passcode = included_passcode(&state, user, &meeting, q.passcode).await?;
    let lang = language(q.lang.as_deref(), &headers);
    let base = base_url(&state, &headers, &uri)?;
    let owner = state.store.user(&meeting.owner_id).await?;
    let inv = cal::invite(&meeting, &base, passcode.as_deref(), lang);
    let events: Vec<_> = cal::event(&meeting, &inv, owner.as_ref(), state.now())
        .into_iter()
        .collect();
    let body = ics::calendar(Method::Publish, None, &events);
    Ok(calendar_response(body, Some("invite.ics")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InvitesBody {
    emails: Vec<String>,
    #[serde(default)]
    passcode: Option<String>,
    #[serde(default)]
    lang: Option<String>,
}

/// `POST /meetings/{id}/invites`: queues one email per address; 202 with their log rows.
pub(super) async fn send_invites(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<InvitesBody>,
) -> ApiResult<Response> {
    let user = caller.user()?;
    let meeting = load(&state, user, &id, Access::Manage).await?;
    let settings = state.calendar.settings();
    let (Some(smtp), Some(base)) = (&settings.smtp, &settings.public_url) else {
        return Err(ApiError::SmtpNotConfigured);
    };
    scheduled(&meeting)?;
    let max = settings.invite_max_recipients;
    if body.emails.is_empty() || body.emails.len() > max {
        return Err(ApiError::InvalidField {
            field: "emails",
            message: format!("give 1 to {max} addresses"),
        });
    }
    let mut addresses = Vec::with_capacity(body.emails.len());
    for raw in &body.emails {
        let invalid = || ApiError::InvalidField {
            field: "emails",
            message: format!("{raw:?} is not an email address"),
        };
        let email = normalize_email(raw).map_err(|_| invalid())?;
        let address: lettre::Address = email.parse().map_err(|_| invalid())?;
        if !addresses.iter().any(|(e, _)| *e == email) {
            addresses.push((email, address));
        }
    }
    let now_ms = state.now().saturating_mul(1000);
    let passcode = included_passcode(&state, user, &meeting, body.passcode).await?;
    let lang = language(body.lang.as_deref(), &headers);
    let owner = state.store.user(&meeting.owner_id).await?;
    let inv = cal::invite(&meeting, base, passcode.as_deref(), lang);
    let events: Vec<_> = cal::event(&meeting, &inv, owner.as_ref(), state.now())
        .into_iter()
        .collect();
    let calendar_text = ics::calendar(Method::Request, None, &events);
    let mut messages = Vec::with_capacity(addresses.len());
    for (email, address) in addresses {
        let message = cal::email(smtp, &address, user, &meeting, &inv, &calendar_text, lang)
            .map_err(ApiError::Internal)?;
        messages.push((email, message));
    }
    let queued = state
        .store
        .queue_invites(
            &meeting.id,
            &user.id,
            &messages,
            now_ms,
            settings.invite_max_per_hour,
            audit_entry(
                &caller,
                "meeting.invite",
                &meeting.id,
                Some(&meeting.org_id),
                format!("{} addresses", messages.len()),
            ),
        )
        .await?
        .ok_or(ApiError::TooManyInvites(settings.invite_max_per_hour))?;
    state.calendar.wake();
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"invites": queued}))).into_response())
}

/// `GET /meetings/{id}/invites`: the meeting's email invitations, newest first.
pub(super) async fn list_invites(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let meeting = load(&state, caller.user()?, &id, Access::Read).await?;
    let invites = state
        .store
        .meeting_invites(&meeting.id, MAX_LISTED_INVITES)
        .await?;
    Ok(axum::Json(json!({"invites": invites})).into_response())
}

/// `GET /auth/calendar`: whether the caller has a feed (its token is shown only when made).
pub(super) async fn feed_status(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Response> {
    let user = caller.user()?;
    let created = state.store.calendar_feed_created(&user.id).await?;
    Ok(axum::Json(json!({"active": created.is_some(), "created_at": created})).into_response())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedBody {
    #[serde(default)]
    lang: Option<String>,
}

/// `POST /auth/calendar`: a new feed token (the old one stops working); the answer is the
/// only place the token and the URL are shown.
pub(super) async fn reset_feed(
    State(state): State<ApiState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    RawBody(raw): RawBody,
) -> ApiResult<Response> {
    let user = caller.user()?;
    // The body is optional: none at all asks for the request's language.
    let body: FeedBody = if raw.is_empty() {
        FeedBody::default()
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))?
    };
    let token = crate::auth::new_token();
    let now = state.now();
    state
        .store
        .reset_calendar_feed(
            &user.id,
            &token,
            now,
            audit_entry(
                &caller,
                "calendar.feed_reset",
                &user.id,
                Some(&user.org_id),
                String::new(),
            ),
        )
        .await?;
    let lang = language(body.lang.as_deref(), &headers);
    let url = format!(
        "{}/calendar/{token}.ics?lang={}",
        base_url(&state, &headers, &uri)?,
        lang.tag()
    );
    Ok(
        axum::Json(json!({"active": true, "created_at": now, "token": token, "url": url}))
            .into_response(),
    )
}

/// `DELETE /auth/calendar`: no feed any more.
pub(super) async fn delete_feed(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Response> {
    let user = caller.user()?;
    let entry = audit_entry(
        &caller,
        "calendar.feed_delete",
        &user.id,
        Some(&user.org_id),
        String::new(),
    );
    state
        .store
        .delete_calendar_feed(&user.id, state.now(), entry)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct FeedQuery {
    #[serde(default)]
    lang: Option<String>,
}

/// `GET /calendar/{token}.ics`: the token owner's scheduled meetings — those they own or
/// co-host — that are recurring or ended at most `calendar-feed-past-days` ago, the
/// soonest `calendar-feed-max-events`. Never a passcode. An unknown token is 404.
pub(crate) async fn feed(
    State(state): State<ApiState>,
    Path(file): Path<String>,
    Query(q): Query<FeedQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let token = file
        .strip_suffix(".ics")
        .filter(|t| {
            t.len() == 43
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .ok_or(ApiError::NotFound("calendar"))?;
    let user = state
        .store
        .user_by_calendar_token(token)
        .await?
        .ok_or(ApiError::NotFound("calendar"))?;
    let settings = state.calendar.settings();
    let now = state.now();
    let past = i64::try_from(settings.feed_past.as_secs()).unwrap_or(i64::MAX);
    let lang = language(q.lang.as_deref(), &headers);
    let base = base_url(&state, &headers, &uri)?;
    let meetings: Vec<Meeting> = state
        .store
        .meetings_of(&user.id)
        .await?
        .into_iter()
        .filter(|m| {
            m.starts_at.is_some_and(|start| {
                m.recurrence == crate::store::Recurrence::Weekly
                    || start + m.duration_minutes * 60 >= now.saturating_sub(past)
            })
        })
        .take(settings.feed_max_events)
        .collect();
    let mut owners: HashMap<String, Option<User>> = HashMap::new();
    owners.insert(user.id.clone(), Some(user.clone()));
    for m in &meetings {
        if !owners.contains_key(&m.owner_id) {
            let owner = state.store.user(&m.owner_id).await?;
            owners.insert(m.owner_id.clone(), owner);
        }
    }
    let invites: Vec<_> = meetings
        .iter()
        .map(|m| cal::invite(m, &base, None, lang))
        .collect();
    let events: Vec<_> = meetings
        .iter()
        .zip(&invites)
        .filter_map(|(m, inv)| {
            let owner = owners.get(&m.owner_id).and_then(Option::as_ref);
            cal::event(m, inv, owner, now)
        })
        .collect();
    let body = ics::calendar(Method::Publish, Some(text(lang, Msg::FeedName)), &events);
    Ok(calendar_response(body, None))
}
