//! The deployment calls: list, read, create, update and destroy. Creating,
//! updating and destroying only store the request; the orchestrator acts on
//! it and the event stream tells how it goes.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;

use crate::client::dto::{Accepted, DeploymentPage, ErrorBody, SourceRequest};
use crate::deployment::{Deployment, Desired, Status};
use crate::retrieval::check_request;

use super::auth::Authorized;
use super::error::{ApiError, ApiResult, BodyErrors};
use super::page::ListQuery;
use super::replication::replicated;
use super::ApiContext;

/// A page of the deployments, oldest request first, in their short form:
/// `?limit=` of them (default 100, at most 1000) after the deployment that
/// `?after=` names (the `next` of the previous page). Each summary is encoded
/// once per change of the state and served from that copy.
#[utoipa::path(
    get,
    path = "/api/v1/deployments",
    tag = "deployments",
    operation_id = "listDeployments",
    params(ListQuery),
    responses(
        (status = 200, description = "a page of deployments, oldest request first; `next` is the cursor of the next page, or null on the last", body = DeploymentPage),
        (status = 400, description = "`limit` is not a whole number from 1 to 1000, or `after` is not a cursor of this list", body = ErrorBody),
    )
)]
pub(super) async fn list_deployments(
    AxumState(ctx): AxumState<ApiContext>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{}; expected ?limit=<1 to 1000>&after=<the `next` of the previous page>", e.body_text()),
        )
    })?;
    let page = query.check()?;
    let body: Bytes = ctx.list.page(&ctx.state, &page);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// One deployment with its status history and resource use. Its encoding
/// is kept until the record changes (or a resource sample comes in).
#[utoipa::path(
    get,
    path = "/api/v1/deployments/{id}",
    tag = "deployments",
    operation_id = "getDeployment",
    params(("id" = String, Path, description = "the deployment's id")),
    responses(
        (status = 200, description = "the deployment", body = Deployment),
        (status = 404, description = "no such deployment", body = ErrorBody),
    )
)]
pub(super) async fn get_deployment(
    AxumState(ctx): AxumState<ApiContext>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let body = ctx.details.body(&ctx.state, &id).ok_or_else(|| ApiError::not_found(&id))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Deploys a branch of a git repository: stores the request and answers at
/// once (202); the orchestrator fetches, builds and starts it.
#[utoipa::path(
    post,
    path = "/api/v1/deployments",
    tag = "deployments",
    operation_id = "createDeployment",
    security(("token" = [])),
    request_body = SourceRequest,
    responses(
        (status = 202, description = "accepted", body = Accepted),
        (status = 401, description = "the platform token is missing or wrong", body = ErrorBody),
        (status = 422, description = "the URL or the branch cannot be deployed; the message says why", body = ErrorBody),
        (status = 500, description = "the request could not be stored", body = ErrorBody),
        BodyErrors,
    )
)]
pub(super) async fn create_deployment(
    _: Authorized,
    AxumState(ctx): AxumState<ApiContext>,
    body: Result<Json<SourceRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let Json(req) = body?;
    check_request(&req.url, &req.branch, ctx.node.config.allow_local_sources)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let d = ctx
        .state
        .create_deployment(req.url.trim(), req.branch.trim())
        .map_err(|e| ApiError::internal("the request could not be stored", e))?;
    let replicated = replicated(&ctx).await;
    Ok((StatusCode::ACCEPTED, Json(Accepted { id: d.id, status: d.status, replicated })))
}

/// Redeploys the newest commit of the branch.
#[utoipa::path(
    post,
    path = "/api/v1/deployments/{id}/update",
    tag = "deployments",
    operation_id = "updateDeployment",
    security(("token" = [])),
    params(("id" = String, Path, description = "the deployment's id")),
    responses(
        (status = 202, description = "update requested", body = Accepted),
        (status = 401, description = "the platform token is missing or wrong", body = ErrorBody),
        (status = 404, description = "no such deployment", body = ErrorBody),
        (status = 409, description = "the deployment cannot be updated in its status (only Running or Errored ones can)", body = ErrorBody),
        (status = 500, description = "the request could not be stored", body = ErrorBody),
    )
)]
pub(super) async fn update_deployment(
    _: Authorized,
    AxumState(ctx): AxumState<ApiContext>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let mut refusal = None;
    let d = ctx
        .state
        .update_deployment(&id, |d| {
            if d.desired == Desired::Destroyed {
                refusal = Some("it was destroyed; create a new deployment instead".to_string());
                return false;
            }
            if !matches!(d.status, Status::Running | Status::Errored) {
                refusal = Some(format!("it is {}; ask again once it is Running or Errored", d.status));
                return false;
            }
            d.transition(
                Status::UpdateRequested,
                "update requested: deploying the newest commit of the branch",
                Utc::now(),
            );
            true
        })
        .map_err(|e| ApiError::internal("the request could not be stored", e))?
        .ok_or_else(|| ApiError::not_found(&id))?;
    if let Some(why) = refusal {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("cannot update deployment `{id}`: {why}")));
    }
    ctx.state.notify();
    let replicated = replicated(&ctx).await;
    Ok((StatusCode::ACCEPTED, Json(Accepted { id: d.id, status: d.status, replicated })))
}

/// Destroys a deployment; it stays listed, Destroyed, with its history.
#[utoipa::path(
    delete,
    path = "/api/v1/deployments/{id}",
    tag = "deployments",
    operation_id = "destroyDeployment",
    security(("token" = [])),
    params(("id" = String, Path, description = "the deployment's id")),
    responses(
        (status = 202, description = "destruction requested", body = Accepted),
        (status = 401, description = "the platform token is missing or wrong", body = ErrorBody),
        (status = 404, description = "no such deployment", body = ErrorBody),
        (status = 500, description = "the request could not be stored", body = ErrorBody),
    )
)]
pub(super) async fn destroy_deployment(
    _: Authorized,
    AxumState(ctx): AxumState<ApiContext>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let d = ctx
        .state
        .update_deployment(&id, |d| {
            if d.desired == Desired::Destroyed {
                return false;
            }
            d.desired = Desired::Destroyed;
            d.transition(Status::DestructionRequested, "destruction requested", Utc::now());
            true
        })
        .map_err(|e| ApiError::internal("the request could not be stored", e))?
        .ok_or_else(|| ApiError::not_found(&id))?;
    ctx.state.notify();
    let replicated = replicated(&ctx).await;
    Ok((StatusCode::ACCEPTED, Json(Accepted { id: d.id, status: d.status, replicated })))
}
