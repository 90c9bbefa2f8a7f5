//! An organisation's webhook endpoints and their delivery log, for its admins (and the
//! operator): register (the secret is shown once, in the answer), list, edit, roll the
//! secret (the new one shown once; the old one signs beside it for a while), delete, send a
//! test event, read the deliveries.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::accounts::check_administers;
use super::{ApiError, ApiResult, ApiState, Caller, Json, Path, Query};
use crate::store::{NewWebhookEndpoint, WebhookPatch};
use crate::webhooks::{Event, EventType, check_url};

const DELIVERIES_LIMIT_DEFAULT: i64 = 50;
const DELIVERIES_LIMIT_MAX: i64 = 500;
/// How long a rolled secret goes on signing unless the request says: a day, time for a
/// receiver's operator to deploy the new one.
const KEEP_OLD_HOURS_DEFAULT: i64 = 24;
/// The longest it may: a week.
const KEEP_OLD_HOURS_MAX: i64 = 7 * 24;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointBody {
    url: String,
    events: Vec<String>,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchBody {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RollBody {
    /// Hours the previous secret goes on signing beside the new one (0: it stops at once).
    #[serde(default)]
    keep_old_hours: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveriesQuery {
    #[serde(default)]
    limit: Option<i64>,
}

/// The subscribed types, each once, in a fixed order; unknown names are refused.
fn event_types(names: &[String]) -> ApiResult<Vec<String>> {
    // More names than there are types can only be repeats or unknown ones.
    if names.is_empty() || names.len() > EventType::SUBSCRIBABLE.len() {
        return Err(ApiError::InvalidField {
            field: "events",
            message: format!(
                "give between 1 and {} of {}",
                EventType::SUBSCRIBABLE.len(),
                known_types()
            ),
        });
    }
    let mut types = Vec::with_capacity(names.len());
    for name in names {
        let t = EventType::parse_subscribable(name).ok_or_else(|| ApiError::InvalidField {
            field: "events",
            message: format!(
                "{:?} is not one of {}",
                name.chars().take(64).collect::<String>(),
                known_types()
            ),
        })?;
        types.push(t);
    }
    types.sort();
    types.dedup();
    Ok(types.into_iter().map(|t| t.as_str().to_owned()).collect())
}

fn known_types() -> String {
    EventType::SUBSCRIBABLE
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<Response> {
    check_administers(caller.user()?, &org_id)?;
    let endpoints = state.store.webhook_endpoints(&org_id).await?;
    Ok(axum::Json(json!({
        "endpoints": endpoints,
        "event_types": EventType::SUBSCRIBABLE.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        "max_endpoints": state.webhooks.settings().max_endpoints,
    }))
    .into_response())
}

pub(super) async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Json(body): Json<EndpointBody>,
) -> ApiResult<Response> {
    let user = caller.user()?;
    check_administers(user, &org_id)?;
    if state.store.org(&org_id).await?.is_none() {
        return Err(ApiError::NotFound("organisation"));
    }
    let settings = state.webhooks.settings();
    let new = NewWebhookEndpoint {
        org_id: org_id.clone(),
        url: endpoint_url(&state, &body.url)?,
        events: event_types(&body.events)?,
        description: body.description.trim().to_owned(),
        created_by: Some(user.id.clone()),
    };
    let (endpoint, secret) = state
        .store
        .create_webhook_endpoint(
            &new,
            settings.max_endpoints,
            state.now(),
            Some(&caller.actor()),
        )
        .await?;
    let mut answer =
        serde_json::to_value(&endpoint).map_err(|e| ApiError::Internal(e.to_string()))?;
    answer["secret"] = json!(secret);
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// A URL an endpoint may have, as it is stored.
fn endpoint_url(state: &ApiState, url: &str) -> ApiResult<String> {
    let settings = state.webhooks.settings();
    check_url(
        url.trim(),
        settings.max_url_bytes,
        settings.private_addresses,
    )
    .map(|u| u.to_string())
    .map_err(|e| ApiError::InvalidField {
        field: "url",
        message: e.to_string(),
    })
}

/// Changes an endpoint's URL, events or description, checked as at registration; its
/// secret and delivery log stay.
pub(super) async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path((org_id, id)): Path<(String, String)>,
    Json(body): Json<PatchBody>,
) -> ApiResult<Response> {
    check_administers(caller.user()?, &org_id)?;
    let patch = WebhookPatch {
        url: body
            .url
            .as_deref()
            .map(|u| endpoint_url(&state, u))
            .transpose()?,
        events: body.events.as_deref().map(event_types).transpose()?,
        description: body.description.map(|d| d.trim().to_owned()),
    };
    let endpoint = state
        .store
        .update_webhook_endpoint(&org_id, &id, &patch, state.now(), Some(&caller.actor()))
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))?;
    Ok(axum::Json(endpoint).into_response())
}

/// Gives an endpoint a new secret, shown once in the answer; the previous one signs every
/// delivery beside it for `keep_old_hours` (default a day), so the receiver can switch
/// without refusing one.
pub(super) async fn roll_secret(
    State(state): State<ApiState>,
    caller: Caller,
    Path((org_id, id)): Path<(String, String)>,
    Json(body): Json<RollBody>,
) -> ApiResult<Response> {
    check_administers(caller.user()?, &org_id)?;
    let hours = body.keep_old_hours.unwrap_or(KEEP_OLD_HOURS_DEFAULT);
    if !(0..=KEEP_OLD_HOURS_MAX).contains(&hours) {
        return Err(ApiError::InvalidField {
            field: "keep_old_hours",
            message: format!("{hours} is not between 0 and {KEEP_OLD_HOURS_MAX}"),
        });
    }
    let now = state.now();
    let until = now + hours * 3600;
    let secret = state
        .store
        .roll_webhook_secret(&org_id, &id, until, now, Some(&caller.actor()))
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))?;
    Ok(axum::Json(json!({
        "secret": secret,
        "previous_valid_until": (hours > 0).then_some(until),
    }))
    .into_response())
}

pub(super) async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((org_id, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    check_administers(caller.user()?, &org_id)?;
    let deleted = state
        .store
        .delete_webhook_endpoint(&org_id, &id, state.now(), Some(&caller.actor()))
        .await?;
    if !deleted {
        return Err(ApiError::NotFound("webhook endpoint"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Queues a `webhook.test` delivery to one endpoint, whatever it subscribes to.
pub(super) async fn test(
    State(state): State<ApiState>,
    caller: Caller,
    Path((org_id, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    check_administers(caller.user()?, &org_id)?;
    if state.store.webhook_endpoint(&org_id, &id).await?.is_none() {
        return Err(ApiError::NotFound("webhook endpoint"));
    }
    let now_ms = state.now().saturating_mul(1000);
    let event = Event::test(&org_id, u64::try_from(now_ms).unwrap_or(0));
    state
        .store
        .enqueue_webhook(
            &org_id,
            &event.id,
            event.kind.as_str(),
            &event.body,
            Some(&id),
            now_ms,
        )
        .await?;
    state.webhooks.wake();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"event_id": event.id})),
    )
        .into_response())
}

pub(super) async fn deliveries(
    State(state): State<ApiState>,
    caller: Caller,
    Path((org_id, id)): Path<(String, String)>,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Response> {
    check_administers(caller.user()?, &org_id)?;
    let limit = q.limit.unwrap_or(DELIVERIES_LIMIT_DEFAULT);
    if !(1..=DELIVERIES_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::InvalidField {
            field: "limit",
            message: format!("{limit} is not between 1 and {DELIVERIES_LIMIT_MAX}"),
        });
    }
    if state.store.webhook_endpoint(&org_id, &id).await?.is_none() {
        return Err(ApiError::NotFound("webhook endpoint"));
    }
    let deliveries = state.store.webhook_deliveries(&id, limit).await?;
    Ok(axum::Json(json!({"deliveries": deliveries})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_checked_sorted_and_deduplicated() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            event_types(&names(&[
                "participant.left",
                "meeting.started",
                "participant.left"
            ]))
            .unwrap(),
            ["meeting.started", "participant.left"]
        );
        assert!(event_types(&[]).is_err());
        assert!(event_types(&names(&["webhook.test"])).is_err());
        assert!(event_types(&names(&["a"; 5])).is_err());
    }
}
