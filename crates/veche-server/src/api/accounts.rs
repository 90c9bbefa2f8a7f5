//! Sign-up, login, logout, password change, the caller's profile, and organisation members.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    ApiError, ApiResult, ApiState, Caller, ClientIp, Json, Path, SESSION_COOKIE, SESSION_TTL_SECS,
    audit_entry, session_token,
};
use crate::auth;
use crate::sockets::SessionEnd;
use crate::store::{
    MAX_PASSWORD_CHARS, NewAuditEntry, NewUser, Org, OrgRole, User, UserRole, check_new_user,
    check_password, create_user_on, normalize_email, set_password_on,
};

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
        "directory": state.directory.public_config(),
    }))
}

pub(super) fn session_cookie(token: &str, max_age: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// Starts a session and answers like login: the token in the body for API clients, the
/// cookie for the browser.
pub(super) async fn start_session(
    state: &ApiState,
    user: User,
    status: StatusCode,
) -> ApiResult<Response> {
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
    // Sign-ups per address are limited like failed logins (the lockout policy's number per
    // window), reserved before the account is made so parallel sign-ups cannot pass it.
    let now = state.now();
    let policy = state.settings.lockout;
    let ip_key = format!("signup-ip:{}", ip.as_deref().unwrap_or("-"));
    let new = NewUser {
        email: body.email,
        name: body.name,
        password: body.password,
        role: UserRole::User,
        org_id: None,
        org_name: body.org_name,
        org_role: OrgRole::Admin,
    };
    // A refused field costs nothing and writes nothing.
    check_new_user(&new)?;
    let attempt = state
        .store
        .begin_attempt(&[(&ip_key, policy.max_failures)], None, now, policy)
        .await?
        .map_err(|r| ApiError::LockedOut(r.retry_after_secs))?;
    let created = match state.store.hash_new_user(new).await {
        Ok(hashed) => {
            let ip = ip.clone();
            state
                .store
                .audited(
                    now,
                    async |c| create_user_on(c, hashed, now).await,
                    |user: &User| NewAuditEntry {
                        actor_id: Some(user.id.clone()),
                        actor_email: Some(user.email.clone()),
                        ip,
                        action: "user.signup".into(),
                        target: user.id.clone(),
                        org_id: Some(user.org_id.clone()),
                        detail: user.email.clone(),
                    },
                )
                .await
        }
        Err(e) => Err(e),
    };
    let user = match created {
        // The sign-up counts against the address's allowance.
        Ok(user) => {
            let _locked = state.store.attempt_failed(attempt).await?;
            user
        }
        Err(e) => {
            state.store.attempt_abandoned(attempt).await?;
            return Err(e.into());
        }
    };
    // The address an account was made from is its first familiar one.
    state
        .store
        .remember_source(&user.id, ip.as_deref().unwrap_or("-"), now)
        .await?;
    start_session(&state, user, StatusCode::CREATED).await
}

/// A password too long to be anyone's is refused before it costs a verification.
pub(super) fn check_secret_length(field: &'static str, secret: &str) -> ApiResult<()> {
    if secret.chars().count() > MAX_PASSWORD_CHARS {
        return Err(ApiError::InvalidField {
            field,
            message: format!("must have at most {MAX_PASSWORD_CHARS} characters"),
        });
    }
    Ok(())
}

/// Checks `password` for the (normalised) `email` under the attempt limits of [`limited`].
/// Login and password change share these keys, so a stolen session gets no more guesses
/// than a login form. Every failure answers the same `invalid_credentials`, and an unknown
/// email is counted like a real one.
async fn verify_limited(
    state: &ApiState,
    ip: Option<&str>,
    email: &str,
    password: &str,
    familiar: bool,
) -> ApiResult<User> {
    let local_passwords = state.directory.local_passwords;
    limited(state, ip, email, familiar, async {
        Ok(state
            .store
            .check_local_login(email, password, local_passwords)
            .await?)
    })
    .await
}

/// Runs `check` — a password check for the account `login` names — under the attempt
/// limits of [`crate::store::Store::begin_attempt`]: per (account, address) and per
/// address, each reserved before the check, and — unless the address is `familiar` — the
/// account's slow-down. `Ok(None)` from `check` is a wrong password (counted, and a
/// lockout it causes audited); an `Err` decided nothing and counts nothing. Local and
/// directory sign-in share these keys.
pub(super) async fn limited<T>(
    state: &ApiState,
    ip: Option<&str>,
    login: &str,
    familiar: bool,
    check: impl Future<Output = ApiResult<Option<T>>>,
) -> ApiResult<T> {
    let now = state.now();
    let policy = state.settings.lockout;
    let source = ip.unwrap_or("-");
    let pair_key = format!("login:{login}|{source}");
    let source_key = format!("login-ip:{source}");
    let account_key = format!("login-account:{login}");
    let hard = [
        (pair_key.as_str(), policy.max_failures),
        (source_key.as_str(), policy.source_failures),
    ];
    let slow = (!familiar).then_some(account_key.as_str());
    let attempt = state
        .store
        .begin_attempt(&hard, slow, now, policy)
        .await?
        .map_err(|r| ApiError::LockedOut(r.retry_after_secs))?;
    match check.await {
        Ok(Some(found)) => {
            // The pair's failures are forgotten; the address's are not, so one valid
            // account cannot be used to keep guessing others' passwords from it.
            state.store.attempt_succeeded(attempt, &[&pair_key]).await?;
            Ok(found)
        }
        Ok(None) => {
            let caller = Caller {
                user: None,
                session: None,
                token: None,
                ip: ip.map(str::to_owned),
            };
            for key in state.store.attempt_failed(attempt).await? {
                state
                    .audit(&caller, "auth.lockout", &key, None, "login".into())
                    .await;
            }
            Err(ApiError::InvalidCredentials)
        }
        Err(e) => {
            state.store.attempt_abandoned(attempt).await?;
            Err(e)
        }
    }
}

/// Login. The address is familiar — exempt from the account's slow-down — if the account
/// signed in from it before or the request carries a live session of that account.
pub(super) async fn login(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Json(body): Json<LoginBody>,
) -> ApiResult<Response> {
    // Validated before anything is stored or used as a key.
    let email = normalize_email(&body.email)?;
    check_secret_length("password", &body.password)?;
    let source = ip.as_deref().unwrap_or("-");
    // The session is only a hint here (it grants nothing), so no CSRF check is needed.
    let has_session = match session_token(&headers) {
        Some((token, _)) => state
            .store
            .session(&token, state.now())
            .await?
            .is_some_and(|(user, _)| user.email == email),
        None => false,
    };
    let familiar = has_session || state.store.is_known_source(&email, source).await?;
    let user = verify_limited(&state, ip.as_deref(), &email, &body.password, familiar).await?;
    state
        .store
        .remember_source(&user.id, source, state.now())
        .await?;
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
    check_secret_length("current_password", &body.current_password)?;
    // Checked first, so an unacceptable new password does not spend a guess.
    check_password(&body.new_password).map_err(|e| match ApiError::from(e) {
        ApiError::InvalidField { message, .. } => ApiError::InvalidField {
            field: "new_password",
            message,
        },
        other => other,
    })?;
    // Only a familiar address skips the slow-down: the session itself may be stolen.
    let source = caller.ip.as_deref().unwrap_or("-");
    let familiar = state.store.is_known_source(&user.email, source).await?;
    verify_limited(
        &state,
        caller.ip.as_deref(),
        &user.email,
        &body.current_password,
        familiar,
    )
    .await?;
    let hash = state.store.hash_password(&body.new_password).await?;
    state
        .store
        .audited(
            state.now(),
            async |c| set_password_on(c, &user.id, &hash).await,
            |_| {
                let org = Some(user.org_id.as_str());
                audit_entry(
                    &caller,
                    "user.password_change",
                    &user.id,
                    org,
                    String::new(),
                )
            },
        )
        .await?;
    // Every session of the account just ended; so do their connections.
    state
        .sockets
        .end_user(&user.id, SessionEnd::PasswordChanged);
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
    let hashed = state
        .store
        .hash_new_user(NewUser {
            email: body.email,
            name: body.name,
            password: body.password,
            role: UserRole::User,
            org_id: Some(org_id.clone()),
            org_name: None,
            org_role,
        })
        .await?;
    let now = state.now();
    let user = state
        .store
        .audited(
            now,
            async |c| create_user_on(c, hashed, now).await,
            |user: &User| {
                let detail = format!("{} as {}", user.email, org_role.as_str());
                audit_entry(&caller, "org.member_add", &user.id, Some(&org_id), detail)
            },
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(user)).into_response())
}
