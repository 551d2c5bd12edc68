//! The API's error answers: a status and a JSON body `{"error": "…"}` with a
//! message a person can act on ([`ErrorBody`] in the OpenAPI document), and
//! the answers every call with a JSON body may give besides its own.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tracing::error;

use crate::client::dto::ErrorBody;

use super::MAX_BODY_BYTES;

/// An error answer: a status and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong and what would be right.
    pub message: String,
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    /// A 500 whose details go to the log, not to the client.
    pub(super) fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        error!(error = %e, "{what}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{what}; the server log has the details"))
    }

    /// The answer about a deployment id that is not known.
    pub(super) fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("no deployment with id `{id}`; `GET /api/v1/deployments` lists them"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody { error: self.message })).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match r {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        let hint = match status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                "send the body as JSON with `Content-Type: application/json`".to_string()
            }
            StatusCode::PAYLOAD_TOO_LARGE => format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            _ => format!(
                "{}; expected a JSON object like {{\"url\": \"https://…/app.git\", \"branch\": \"main\"}}",
                r.body_text()
            ),
        };
        Self::new(status, hint)
    }
}

/// The answers every call that reads a JSON body may give besides its own
/// (documentation only: [`ApiError`] makes them).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(super) enum BodyErrors {
    /// The body is not the JSON object expected.
    #[response(status = 400, description = "the body is not the JSON object expected")]
    Malformed(ErrorBody),
    /// The body is too large.
    #[response(status = 413, description = "the body is larger than 64 KiB")]
    TooLarge(ErrorBody),
    /// The body is not sent as JSON.
    #[response(status = 415, description = "the body is not sent as application/json")]
    NotJson(ErrorBody),
}
