//! The API's error taxonomy: every failure has a stable `code` and an HTTP status, and is
//! sent as `{"error": {"code": "...", "message": "..."}}`. Client errors are not logged as
//! server errors; only `Internal` is.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use veche_proto::ErrorCode;
use veche_sfu::ControlError;

use crate::directory::SignInError;
use crate::store::{JoinError, StoreError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not JSON, has the wrong shape, or a query string is malformed.
    #[error("{0}")]
    BadRequest(String),
    #[error("invalid {field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("sign in first")]
    Unauthenticated,
    /// The same message whether the account does not exist or the password is wrong.
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("you may not do this")]
    Forbidden,
    #[error("missing or wrong X-CSRF-Token header")]
    CsrfFailed,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("sign-up is closed on this server; ask its operator for an account")]
    SignupClosed,
    #[error("this meeting needs a passcode")]
    PasscodeRequired,
    #[error("wrong passcode")]
    WrongPasscode,
    #[error("too many failed attempts; try again in {0} seconds")]
    LockedOut(i64),
    /// The meeting is not running (live controls).
    #[error("the meeting is not in progress")]
    NotInProgress,
    /// A host control the live meeting refused, with its signalling error code.
    #[error("{message}")]
    Live {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// Too many password verifications at once: retry after this many seconds.
    #[error("the server is busy checking passwords; try again in {0} seconds")]
    Busy(i64),
    /// A body that is not declared as JSON where a cross-site form could send one.
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    /// No media server behind this API (or it stopped).
    #[error("live meetings are not available")]
    Unavailable,
    /// The request body is larger than the server accepts.
    #[error("the request body exceeds the server's limit (--max-api-body-bytes)")]
    PayloadTooLarge,
    /// A WebSocket upgrade over the per-address cap.
    #[error("too many signalling connections from this address (at most {0})")]
    TooManyConnections(usize),
    /// A connectivity check (`/check/ws`, `/check/download`) over the per-address budget.
    #[error("too many connectivity checks from this address; try again in a minute")]
    TooManyChecks,
    /// `/metrics` from an address outside `--metrics-allow`.
    #[error("metrics are not available to this address")]
    MetricsForbidden,
    /// `/metrics` without the `--metrics-token` bearer token.
    #[error("metrics need the bearer token the server was started with")]
    MetricsToken,
    /// Directory or OpenID Connect sign-in failed for a reason of its own.
    #[error("{0}")]
    SignIn(#[from] SignInError),
    /// Email invitations without an SMTP relay configured.
    #[error("email invitations are not set up on this server (--smtp-url)")]
    SmtpNotConfigured,
    /// Over the hourly allowance of email invitations.
    #[error("at most {0} email invitations an hour; try again later")]
    TooManyInvites(usize),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::Forbidden => "forbidden",
            ApiError::CsrfFailed => "csrf_failed",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::SignupClosed => "signup_closed",
            ApiError::PasscodeRequired => "passcode_required",
            ApiError::WrongPasscode => "wrong_passcode",
            ApiError::LockedOut(_) => "locked_out",
            ApiError::NotInProgress => "not_in_progress",
            ApiError::Live { code, .. } => code,
            ApiError::Unavailable => "unavailable",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::TooManyConnections(_) => "too_many_connections",
            ApiError::TooManyChecks => "too_many_checks",
            ApiError::MetricsForbidden => "forbidden",
            ApiError::MetricsToken => "unauthenticated",
            ApiError::Busy(_) => "busy",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::SignIn(e) => e.code(),
            ApiError::SmtpNotConfigured => "smtp_not_configured",
            ApiError::TooManyInvites(_) => "too_many_invites",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidField { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated
            | ApiError::InvalidCredentials
            | ApiError::PasscodeRequired
            | ApiError::WrongPasscode => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::CsrfFailed | ApiError::SignupClosed => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::LockedOut(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotInProgress => StatusCode::CONFLICT,
            ApiError::Live { status, .. } => *status,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyConnections(_) | ApiError::TooManyChecks => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::MetricsForbidden => StatusCode::FORBIDDEN,
            ApiError::MetricsToken => StatusCode::UNAUTHORIZED,
            ApiError::Unavailable | ApiError::Busy(_) | ApiError::SmtpNotConfigured => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::TooManyInvites(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::SignIn(e) => e.status(),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "API request failed");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut body = json!({"code": self.code(), "message": message});
        // What the error names, for clients that word the message themselves (in the
        // user's language) from the code.
        match &self {
            ApiError::InvalidField { field, .. } => body["field"] = json!(field),
            ApiError::NotFound(what) | ApiError::Conflict(what) => body["what"] = json!(what),
            _ => {}
        }
        let mut response = (self.status(), Json(json!({ "error": body }))).into_response();

        if let ApiError::LockedOut(secs) | ApiError::Busy(secs) = self
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let ApiError::MetricsToken = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// `Retry-After` of a [`ApiError::Busy`]: a verification takes tens of milliseconds, so a
/// full queue drains within a second or two.
const BUSY_RETRY_AFTER_SECS: i64 = 2;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Conflict(what) => ApiError::Conflict(what),
            StoreError::Invalid { field, message } => ApiError::InvalidField { field, message },
            StoreError::Busy(_) => ApiError::Busy(BUSY_RETRY_AFTER_SECS),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<JoinError> for ApiError {
    fn from(e: JoinError) -> ApiError {
        match e {
            JoinError::NotFound => ApiError::NotFound("meeting"),
            JoinError::PasscodeRequired => ApiError::PasscodeRequired,
            JoinError::WrongPasscode => ApiError::WrongPasscode,
            JoinError::LockedOut(secs) => ApiError::LockedOut(secs),
            JoinError::Store(e) => e.into(),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let (status, code) = match e.code {
            ErrorCode::MeetingNotFound => return ApiError::NotInProgress,
            ErrorCode::ShuttingDown => return ApiError::Unavailable,
            ErrorCode::Forbidden => return ApiError::Forbidden,
            ErrorCode::UnknownParticipant => (StatusCode::NOT_FOUND, "unknown_participant"),
            ErrorCode::MeetingFull => (StatusCode::CONFLICT, "meeting_full"),
            _ => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        ApiError::Live {
            status,
            code,
            message: e.message,
        }
    }
}

/// axum's own rejection texts are specific ("missing field `email`") and safe to show; they
/// become our 400 instead of axum's plain-text 415/422.
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge;
        }
        ApiError::BadRequest(r.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge;
        }
        ApiError::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::BadRequest(r.body_text())
    }
}
