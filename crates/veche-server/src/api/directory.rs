//! Directory sign-in endpoints: `POST /auth/ldap` (username and password checked by the
//! directory) and the OpenID Connect pair `GET /auth/oidc/start` → provider →
//! `GET /auth/oidc/callback`. Each ends in an ordinary session of the linked local account.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::warn;

use super::accounts::{check_secret_length, limited, session_cookie, start_session};
use super::{ApiError, ApiResult, ApiState, ClientIp, Json, Query, SESSION_TTL_SECS, cookie_value};
use crate::auth::constant_time_eq;
use crate::directory::SignInError;
use crate::directory::ldap::{MAX_USERNAME_CHARS, Outcome, normalise_dn};
use crate::store::{ExternalIdentity, User};

/// The cookie holding the state of this browser's OpenID Connect sign-in.
const OIDC_COOKIE: &str = "veche_oidc";
/// The path both OpenID Connect endpoints live under (the cookie is sent only there).
const OIDC_PATH: &str = "/api/v1/auth/oidc";
/// Where a browser goes after signing in when it did not say.
const DEFAULT_NEXT: &str = "/meetings";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LdapBody {
    username: String,
    password: String,
}

/// Sign-in with the directory. Counted like a local login under the same keys (the
/// username in place of the email), so wrong passwords lock out and slow down alike; a
/// directory that cannot be reached answers 503 `directory_unavailable` and counts nothing.
pub(super) async fn ldap_login(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LdapBody>,
) -> ApiResult<Response> {
    let Some(ldap) = state.directory.ldap.clone() else {
        return Err(SignInError::NotConfigured("LDAP").into());
    };
    let username = body.username.trim();
    if username.is_empty()
        || username.chars().count() > MAX_USERNAME_CHARS
        || username.chars().any(char::is_control)
    {
        return Err(ApiError::InvalidField {
            field: "username",
            message: format!("must have 1 to {MAX_USERNAME_CHARS} printable characters"),
        });
    }
    check_secret_length("password", &body.password)?;
    let login_name = username.to_lowercase();
    let source = ip.as_deref().unwrap_or("-");
    let familiar = state
        .store
        .is_known_directory_source("ldap", &login_name, source)
        .await?;
    let found = limited(&state, ip.as_deref(), &login_name, familiar, async {
        match ldap.authenticate(username, &body.password).await {
            Ok(Outcome::Authenticated(user)) => Ok(Some(user)),
            Ok(Outcome::Refused) => Ok(None),
            Err(e) => {
                warn!(error = %e, "the directory could not check a sign-in");
                Err(SignInError::DirectoryUnavailable.into())
            }
        }
    })
    .await?;
    let email = found.email.ok_or(SignInError::NoEmail)?;
    let (org_admin, operator) = ldap.roles().grant(found.groups.iter().map(String::as_str));
    let who = ExternalIdentity {
        provider: "ldap",
        subject: normalise_dn(&found.dn),
        login_name: Some(login_name),
        email,
        name: found.name.unwrap_or_default(),
        org_admin,
        operator,
    };
    let user = directory_account(&state, ip, &who).await?;
    start_session(&state, user, StatusCode::OK).await
}

/// The local account of `who` (linked or made, and audited so), with the sign-in's address
/// remembered.
async fn directory_account(
    state: &ApiState,
    ip: Option<String>,
    who: &ExternalIdentity,
) -> ApiResult<User> {
    let now = state.now();
    let (user, _) = state
        .store
        .directory_sign_in(who, &state.directory.org_name, now, ip.as_deref())
        .await?;
    state
        .store
        .remember_source(&user.id, ip.as_deref().unwrap_or("-"), now)
        .await?;
    Ok(user)
}

#[derive(Debug, Deserialize)]
pub(super) struct StartQuery {
    next: Option<String>,
}

/// Starts an OpenID Connect sign-in: 303 to the provider, the state in a cookie.
pub(super) async fn oidc_start(
    State(state): State<ApiState>,
    Query(query): Query<StartQuery>,
) -> Response {
    match begin(&state, query.next).await {
        Ok((url, state_token, ttl)) => {
            let mut response = redirect(&url);
            let cookie = oidc_cookie(&state_token, ttl, state.settings.secure_cookies);
            if let Some(cookie) = cookie {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(e) => failed(e),
    }
}

async fn begin(state: &ApiState, next: Option<String>) -> ApiResult<(String, String, i64)> {
    let Some(oidc) = state.directory.oidc.clone() else {
        return Err(SignInError::NotConfigured("OpenID Connect").into());
    };
    let next = next
        .filter(|n| is_local_path(n))
        .unwrap_or_else(|| DEFAULT_NEXT.to_owned());
    let (url, state_token, login) = oidc.start(next, state.now()).await?;
    let ttl = oidc.login_ttl_secs();
    if !state
        .store
        .begin_oidc_login(&state_token, &login, ttl, oidc.max_pending())
        .await?
    {
        return Err(SignInError::TooManyPending.into());
    }
    Ok((url, state_token, ttl))
}

#[derive(Debug, Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The provider sends the browser back here: 303 to where the sign-in started, signed in,
/// or to `/login?sso_error=CODE`. The state cookie is cleared either way.
pub(super) async fn oidc_callback(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let mut response = match finish(&state, ip, &headers, query).await {
        Ok((user, next)) => match session_redirect(&state, user, &next).await {
            Ok(r) => r,
            Err(e) => failed(e),
        },
        Err(e) => failed(e),
    };
    if let Some(clear) = oidc_cookie("", 0, state.settings.secure_cookies) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

async fn finish(
    state: &ApiState,
    ip: Option<String>,
    headers: &HeaderMap,
    query: CallbackQuery,
) -> ApiResult<(User, String)> {
    let Some(oidc) = state.directory.oidc.clone() else {
        return Err(SignInError::NotConfigured("OpenID Connect").into());
    };
    let given = query.state.unwrap_or_default();
    let ours = cookie_value(headers, OIDC_COOKIE).unwrap_or_default();
    if given.is_empty() || !constant_time_eq(given.as_bytes(), ours.as_bytes()) {
        return Err(SignInError::StateMismatch.into());
    }
    let login = state
        .store
        .take_oidc_login(&given, state.now(), oidc.login_ttl_secs())
        .await?
        .ok_or(SignInError::StateUnknown)?;
    if let Some(error) = query.error {
        // The provider's text is not shown; its error code only, cut to a safe form.
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(SignInError::ProviderRefused(code).into());
    }
    let code = query
        .code
        .filter(|c| !c.is_empty() && c.len() <= 4096)
        .ok_or_else(|| ApiError::BadRequest("the callback has no authorisation code".into()))?;
    let who = oidc.finish(&code, &login).await?;
    let user = directory_account(state, ip, &who).await?;
    Ok((user, login.next))
}

/// A new session for `user` and a 303 to `next` carrying its cookie.
async fn session_redirect(state: &ApiState, user: User, next: &str) -> ApiResult<Response> {
    let (token, _) = state
        .store
        .create_session(&user.id, state.now(), SESSION_TTL_SECS)
        .await?;
    let mut response = redirect(next);
    if let Some(cookie) = session_cookie(&token, SESSION_TTL_SECS, state.settings.secure_cookies) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// A browser-facing failure: back to the sign-in page, which explains the code.
fn failed(e: ApiError) -> Response {
    if let ApiError::Internal(detail) = &e {
        tracing::error!(%detail, "OpenID Connect sign-in failed");
    }
    redirect(&format!("/login?sso_error={}", e.code()))
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => ApiError::Internal(format!("unusable redirect {location:?}")).into_response(),
    }
}

fn oidc_cookie(value: &str, max_age: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{OIDC_COOKIE}={value}; Path={OIDC_PATH}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// A path on this site (`/x`), not another site (`//host`, `/\host`) or a scheme.
fn is_local_path(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= 512
        && next.chars().all(|c| c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert!(is_local_path("/meetings"));
        assert!(is_local_path("/j/abc?pwd=1"));
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "",
            "/a b",
        ] {
            assert!(!is_local_path(bad), "{bad}");
        }
    }
}
