//! Sign-up, login, logout, password change, the caller's profile, and organisation members.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    ApiError, ApiResult, ApiState, Caller, ClientIp, Json, Path, SESSION_COOKIE, SESSION_TTL_SECS,
};
use crate::auth;
use crate::sockets::SessionEnd;
use crate::store::{NewUser, Org, OrgRole, User, UserRole};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignupBody {
    email: String,
    password: String,
    name: String,
    #[serde(default)]
    org_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordBody {
    current_password: String,
    new_password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MemberBody {
    email: String,
    name: String,
    password: String,
    #[serde(default)]
    org_role: Option<String>,
}

#[derive(Debug, Serialize)]
struct Me {
    user: User,
    org: Option<Org>,
    csrf_token: String,
}

pub(super) async fn config(State(state): State<ApiState>) -> impl IntoResponse {
    axum::Json(json!({
        "signup_open": state.settings.signup_open,
        "guest_rooms": state.settings.guest_rooms,
    }))
}

fn session_cookie(token: &str, max_age: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// Starts a session and answers like login: the token in the body for API clients, the
/// cookie for the browser.
async fn start_session(state: &ApiState, user: User, status: StatusCode) -> ApiResult<Response> {
    let (token, session) = state
        .store
        .create_session(&user.id, state.now(), SESSION_TTL_SECS)
        .await?;
    let org = state.store.org(&user.org_id).await?;
    let mut response = (
        status,
        axum::Json(json!({
            "token": token,
            "csrf_token": session.csrf_token,
            "expires_at": session.expires_at,
            "user": user,
            "org": org,
        })),
    )
        .into_response();
    if let Some(cookie) = session_cookie(&token, SESSION_TTL_SECS, state.settings.secure_cookies) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

pub(super) async fn signup(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<SignupBody>,
) -> ApiResult<Response> {
    if !state.settings.signup_open {
        return Err(ApiError::SignupClosed);
    }
    // Sign-ups per address are counted like failed logins: the lockout policy's number of
    // accounts per window, so one address cannot mass-create accounts.
    let now = state.now();
    let ip_key = ip.as_ref().map(|ip| format!("signup-ip:{ip}"));
    if let Some(key) = &ip_key
        && let Some(secs) = state.store.locked_for(key, now).await?
    {
        return Err(ApiError::LockedOut(secs));
    }
    let user = state
        .store
        .create_user(
            NewUser {
                email: body.email,
                name: body.name,
                password: body.password,
                role: UserRole::User,
                org_id: None,
                org_name: body.org_name,
                org_role: OrgRole::Admin,
            },
            now,
        )
        .await?;
    if let Some(key) = &ip_key {
        state
            .store
            .record_failure(key, now, state.settings.lockout)
            .await?;
    }
    let caller = Caller {
        user: Some(user.clone()),
        session: None,
        token: None,
        ip,
    };
    state
        .audit(
            &caller,
            "user.signup",
            &user.id,
            Some(&user.org_id),
            user.email.clone(),
        )
        .await;
    start_session(&state, user, StatusCode::CREATED).await
}

/// Login with lockouts per account and per IP. Every failure — unknown email, wrong
/// password — answers the same `invalid_credentials`, and an unknown email is counted and
/// locked like a real one, so neither the message nor the lockout reveals which exist.
pub(super) async fn login(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginBody>,
) -> ApiResult<Response> {
    let now = state.now();
    let account_key = format!("login:{}", body.email.trim().to_lowercase());
    let ip_key = ip.as_ref().map(|ip| format!("login-ip:{ip}"));
    let keys: Vec<&String> = std::iter::once(&account_key)
        .chain(ip_key.as_ref())
        .collect();
    for key in &keys {
        if let Some(secs) = state.store.locked_for(key, now).await? {
            return Err(ApiError::LockedOut(secs));
        }
    }
    let Some(user) = state.store.check_login(&body.email, &body.password).await? else {
        let mut locked = false;
        for key in &keys {
            locked |= state
                .store
                .record_failure(key, now, state.settings.lockout)
                .await?;
        }
        if locked {
            let caller = Caller {
                user: None,
                session: None,
                token: None,
                ip,
            };
            state
                .audit(&caller, "auth.lockout", &account_key, None, "login".into())
                .await;
            return Err(ApiError::LockedOut(state.settings.lockout.lockout_secs));
        }
        return Err(ApiError::InvalidCredentials);
    };
    // The account's counter restarts after a success; the IP's does not, so one valid
    // account cannot be used to keep guessing others' passwords from the same address.
    state.store.clear_failures(&account_key).await?;
    start_session(&state, user, StatusCode::OK).await
}

pub(super) async fn logout(State(state): State<ApiState>, caller: Caller) -> ApiResult<Response> {
    caller.user()?;
    if let Some(token) = &caller.token {
        state.store.delete_session(token).await?;
        // Connections opened with this session end now, not at their next join.
        state
            .sockets
            .end_session(&auth::token_digest(token), SessionEnd::SignedOut);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(cookie) = session_cookie("", 0, state.settings.secure_cookies) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

pub(super) async fn me(State(state): State<ApiState>, caller: Caller) -> ApiResult<Response> {
    let user = caller.user()?.clone();
    let org = state.store.org(&user.org_id).await?;
    let csrf_token = caller
        .session
        .as_ref()
        .map(|s| s.csrf_token.clone())
        .unwrap_or_default();
    Ok(axum::Json(Me {
        user,
        org,
        csrf_token,
    })
    .into_response())
}

pub(super) async fn change_password(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<PasswordBody>,
) -> ApiResult<Response> {
    let user = caller.user()?;
    if state
        .store
        .check_login(&user.email, &body.current_password)
        .await?
        .is_none()
    {
        return Err(ApiError::InvalidCredentials);
    }
    state
        .store
        .set_password(&user.id, &body.new_password)
        .await?;
    // Every session of the account just ended; so do their connections.
    state
        .sockets
        .end_user(&user.id, SessionEnd::PasswordChanged);
    state
        .audit(
            &caller,
            "user.password_change",
            &user.id,
            Some(&user.org_id),
            String::new(),
        )
        .await;
    // Every session ended with the old password; this one continues with a fresh session.
    start_session(&state, user.clone(), StatusCode::OK).await
}

/// The caller may see `org_id` at all: a member of it, or the operator. Anyone else gets 404
/// so organisation ids cannot be probed.
fn check_sees_org(user: &User, org_id: &str) -> ApiResult<()> {
    if user.is_operator() || user.org_id == org_id {
        Ok(())
    } else {
        Err(ApiError::NotFound("organisation"))
    }
}

/// The caller administers `org_id`; a plain member gets 403, outsiders 404.
pub(super) fn check_administers(user: &User, org_id: &str) -> ApiResult<()> {
    check_sees_org(user, org_id)?;
    if user.administers(org_id) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

pub(super) async fn get_org(
    State(state): State<ApiState>,
    caller: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<Response> {
    check_sees_org(caller.user()?, &org_id)?;
    let org = state
        .store
        .org(&org_id)
        .await?
        .ok_or(ApiError::NotFound("organisation"))?;
    let plan = state.store.plan(&org.plan_id).await?;
    Ok(axum::Json(json!({"org": org, "plan": plan})).into_response())
}

pub(super) async fn list_members(
    State(state): State<ApiState>,
    caller: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<Response> {
    check_administers(caller.user()?, &org_id)?;
    let users = state.store.list_users(Some(&org_id)).await?;
    Ok(axum::Json(json!({"members": users})).into_response())
}

/// An organisation admin creates an account for a colleague inside the organisation.
pub(super) async fn add_member(
    State(state): State<ApiState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Json(body): Json<MemberBody>,
) -> ApiResult<Response> {
    check_administers(caller.user()?, &org_id)?;
    if state.store.org(&org_id).await?.is_none() {
        return Err(ApiError::NotFound("organisation"));
    }
    let org_role = match body.org_role.as_deref() {
        None => OrgRole::Member,
        Some(r) => OrgRole::parse(r).ok_or_else(|| ApiError::InvalidField {
            field: "org_role",
            message: format!("{r:?} is not admin or member"),
        })?,
    };
    let user = state
        .store
        .create_user(
            NewUser {
                email: body.email,
                name: body.name,
                password: body.password,
                role: UserRole::User,
                org_id: Some(org_id.clone()),
                org_name: None,
                org_role,
            },
            state.now(),
        )
        .await?;
    state
        .audit(
            &caller,
            "org.member_add",
            &user.id,
            Some(&org_id),
            format!("{} as {}", user.email, org_role.as_str()),
        )
        .await;
    Ok((StatusCode::CREATED, axum::Json(user)).into_response())
}
