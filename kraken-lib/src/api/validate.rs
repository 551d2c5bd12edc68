//! Checking a repository before deploying it: fetch it, read its
//! `shipwreck.toml`, choose the builder and show the whole build plan.

use axum::extract::rejection::JsonRejection;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::Json;

use crate::client::dto::{ErrorBody, SourceRequest, Validation};
use crate::retrieval::{check_request, retrieve};

use super::auth::Authorized;
use super::error::{ApiError, ApiResult, BodyErrors};
use super::ApiContext;

/// Fetches a repository and checks its `shipwreck.toml`.
#[utoipa::path(
    post,
    path = "/api/v1/validate",
    tag = "deployments",
    operation_id = "validate",
    security(("token" = [])),
    request_body = SourceRequest,
    responses(
        (status = 200, description = "the manifest, builder, commit and build plan", body = Validation),
        (status = 401, description = "the platform token is missing or wrong", body = ErrorBody),
        (status = 422, description = "the URL, the branch, the repository or its manifest cannot be deployed; the message says why", body = ErrorBody),
        (status = 503, description = "as many repositories are being fetched as the platform takes at once; try again (Retry-After)", body = ErrorBody),
        BodyErrors,
    )
)]
pub(super) async fn validate(
    _: Authorized,
    AxumState(ctx): AxumState<ApiContext>,
    body: Result<Json<SourceRequest>, JsonRejection>,
) -> ApiResult<Json<Validation>> {
    let Json(req) = body?;
    check_request(&req.url, &req.branch, ctx.node.config.allow_local_sources)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let root = ctx.node.config.data_dir.join("validate");
    // A check waits in the fetch queue only while there is room; else it is
    // refused at once (503), so checks can never pile up.
    let found = retrieve(&ctx.node.fetcher, false, req.url.trim(), req.branch.trim(), &ctx.registry, &root)
        .await
        .map_err(|e| {
            let status =
                if e.is_busy() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::UNPROCESSABLE_ENTITY };
            ApiError::new(status, e.to_string())
        })?;
    Ok(Json(Validation {
        manifest: found.manifest,
        builder: found.detection.builder,
        reason: found.detection.reason,
        commit: found.commit,
        plan: *found.plan,
    }))
}
