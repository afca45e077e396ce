//! The one error shape of the REST API: `{"error": {"code": "...", "message": "..."}}`.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use crdt_store::document::{StoredDocumentError, TooDeep};
use crdt_store::{ApplyError, InvalidRoomId, JoinError, RestoreError, StorageError};
use serde::Serialize;
use tracing::error;

use crate::accounts::AuthError;

/// A REST failure: a status, a stable machine-readable code and a human message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Per-field messages for validation failures.
    fields: BTreeMap<&'static str, String>,
    /// Sent as `Retry-After` (and `retry_after_seconds` in the body).
    retry_after: Option<Duration>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    fields: &'a BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u64>,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: BTreeMap::new(),
            retry_after: None,
        }
    }

    /// 422 with `code: "validation_failed"` and one message per invalid field.
    pub fn validation(fields: BTreeMap<&'static str, String>) -> Self {
        let mut error = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "some fields are invalid",
        );
        error.fields = fields;
        error
    }

    /// 401 with `code: "unauthenticated"`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 with `code: "forbidden"`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 409 with the given code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// Adds a `Retry-After`.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// 404 with `code: "not_found"`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400 with `code: "invalid_request"`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 500 with an opaque message; the cause is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let retry_after_seconds = self.retry_after.map(|d| d.as_secs().max(1));
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = retry_after_seconds {
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                fields: &self.fields,
                retry_after_seconds,
            },
        })
    }
}

impl From<crdt_store::files::FileError> for ApiError {
    fn from(err: crdt_store::files::FileError) -> Self {
        use crdt_store::files::FileError;
        match &err {
            FileError::NotFound(_) => Self::not_found(err.to_string()),
            FileError::Exists(_) => Self::conflict("file_exists", err.to_string()),
            FileError::RootText(_) => Self::conflict("root_text", err.to_string()),
        }
    }
}

impl From<InvalidRoomId> for ApiError {
    fn from(err: InvalidRoomId) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_room", err.to_string())
    }
}

impl From<JoinError> for ApiError {
    fn from(err: JoinError) -> Self {
        match err {
            JoinError::Load(StorageError::TooDeep { cause, .. }) => cause.into(),
            JoinError::Load(cause) => {
                error!(error = %cause, "room load failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "room_unavailable",
                    "the room could not be loaded; try again",
                )
            }
            JoinError::TooManyRooms => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_rooms",
                "the server holds its maximum number of rooms",
            ),
            JoinError::RoomFull => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "room_full",
                "the room has its maximum number of connections",
            ),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::TooDeep { cause, .. } => cause.into(),
            StorageError::RoomDeleted => Self::not_found("the room was deleted"),
            other => Self::internal(&other),
        }
    }
}

impl From<ApplyError> for ApiError {
    fn from(err: ApplyError) -> Self {
        match err {
            ApplyError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                err.to_string(),
            ),
            ApplyError::RoomDeleted => Self::not_found("the room was deleted"),
            ApplyError::NotPersisted(_) => {
                error!(error = %err, "an edit could not be stored");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "not_persisted",
                    "the database refused to store this change; nothing was changed for others",
                )
            }
            other => Self::internal(&other),
        }
    }
}

impl From<RestoreError> for ApiError {
    fn from(err: RestoreError) -> Self {
        match err {
            RestoreError::Version(cause) => cause.into(),
            other => Self::internal(&other),
        }
    }
}

impl From<TooDeep> for ApiError {
    fn from(err: TooDeep) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "document_too_deep",
            format!(
                "{err}: it was stored before the limit existed and cannot be read; \
                 a server with a higher limit can open it"
            ),
        )
    }
}

impl From<StoredDocumentError> for ApiError {
    fn from(err: StoredDocumentError) -> Self {
        match err {
            StoredDocumentError::TooDeep(cause) => cause.into(),
            corrupt => Self::internal(&corrupt),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Missing => Self::unauthenticated(err.to_string()),
            AuthError::InvalidToken => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_token", err.to_string())
            }
            AuthError::Expired => {
                Self::new(StatusCode::UNAUTHORIZED, "token_expired", err.to_string())
            }
            AuthError::InvalidCredentials => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                err.to_string(),
            ),
            AuthError::Locked { retry_after } => {
                let mut error = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "login_locked",
                    err.to_string(),
                );
                error.retry_after = Some(retry_after);
                error
            }
            AuthError::EmailTaken => Self::conflict("email_taken", err.to_string()),
            AuthError::Busy { retry_after } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_busy",
                err.to_string(),
            )
            .with_retry_after(retry_after),
            AuthError::Database(_) | AuthError::Hashing(_) => Self::internal(&err),
        }
    }
}

impl From<crate::http::limits::LimitError> for ApiError {
    fn from(err: crate::http::limits::LimitError) -> Self {
        use crate::http::limits::LimitError;
        match err {
            LimitError::RateLimited { retry_after } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                err.to_string(),
            )
            .with_retry_after(retry_after),
            LimitError::TooManyConnections { .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections",
                err.to_string(),
            ),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::internal(&err)
    }
}
