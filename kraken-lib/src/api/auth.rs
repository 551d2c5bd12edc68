//! Who may call what: calls that change the platform (and checking a
//! repository) take the platform token as `Authorization: Bearer <token>`,
//! checked by the [`Authorized`] extractor before anything else of the
//! request is read.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};

use super::error::ApiError;
use super::ApiContext;

/// The token of an `Authorization: Bearer <token>` header.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Proof that the request carries the platform token; a handler taking it
/// as its first argument answers 401 to anyone else.
pub(super) struct Authorized;

impl FromRequestParts<ApiContext> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> Result<Self, ApiError> {
        match bearer(&parts.headers) {
            Some(t) if ctx.token.matches(t) => Ok(Self),
            Some(_) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the platform token is wrong; `kraken up` printed the right one",
            )),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this call changes the platform and needs `Authorization: Bearer <platform token>`",
            )),
        }
    }
}
