//! The one error shape of the REST API: `{"error": {"code": "...", "message": "..."}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use crdt_store::{InvalidRoomId, JoinError, RestoreError, StorageError};
use serde::Serialize;
use tracing::error;

/// A REST failure: a status, a stable machine-readable code and a human message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
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
        HttpResponse::build(self.status).json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        })
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
        Self::internal(&err)
    }
}

impl From<RestoreError> for ApiError {
    fn from(err: RestoreError) -> Self {
        Self::internal(&err)
    }
}
