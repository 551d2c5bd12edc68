//! The HTTP API: JSON under `/api/v1`, server-sent events for live logs and
//! changes, `/ping` for discovery and health, and the OpenAPI document at
//! `/api/v1/openapi.json`, generated from the handlers and the types they
//! take and give (see [`crate::openapi`]).
//!
//! Calls that change anything need `Authorization: Bearer <token>`. Errors are
//! JSON objects `{"error": "…"}` with a message a person can act on; internal
//! details go to the log, not to the client. Bad JSON, unknown ids and
//! oversized bodies get a 4xx.
//!
//! One file per resource: `deployments` (list, read, create, update,
//! destroy), `logs`, `validate`, `nodes`, `join`, `platform` (platform,
//! builders, the document), `health` (`/ping`, `/health`, the worker's
//! router), `events`, `replica` and `replication`; `auth`, `error` and
//! `context` hold what they all share, `page` the list's query and
//! cursor, `list_cache` the encoded list of deployments, `detail_cache` each
//! deployment's encoded record. This file only assembles the router.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod auth;
mod context;
mod deployments;
mod detail_cache;
mod error;
mod events;
mod health;
mod join;
mod list_cache;
mod logs;
mod nodes;
mod page;
mod platform;
mod replica;
mod replication;
mod validate;

pub use crate::client::dto::{JoinAnswer, JoinRequest, ReplicaAck, Snapshot, SourceRequest};
pub use crate::client::sse::{SseDecoder, SseMessage};
pub use context::{ApiContext, JoinInfo};
pub use error::ApiError;
pub use health::worker_router;
pub use logs::LogQuery;
pub use page::{ListQuery, DEFAULT_PAGE, MAX_PAGE};
pub use replica::ReplicaQuery;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route of the orchestrator's API with its OpenAPI description: the
/// router and the document come from the same list, so neither can have an
/// endpoint the other lacks.
pub(crate) fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(health::ping))
        .routes(routes!(health::health))
        .routes(routes!(platform::openapi))
        .routes(routes!(platform::platform))
        .routes(routes!(platform::builders))
        .routes(routes!(nodes::nodes))
        .routes(routes!(nodes::drain_node))
        .routes(routes!(nodes::undrain_node))
        .routes(routes!(join::join))
        .routes(routes!(replica::replica))
        .routes(routes!(replica::replica_ack))
        .routes(routes!(validate::validate))
        .routes(routes!(deployments::list_deployments, deployments::create_deployment))
        .routes(routes!(deployments::get_deployment, deployments::destroy_deployment))
        .routes(routes!(deployments::update_deployment))
        .routes(routes!(logs::logs))
        .routes(routes!(events::events))
}

/// The API's routes, ready to be served (merge the UI's router beside it).
pub fn router(ctx: ApiContext) -> Router {
    let (router, _document) = routes().split_for_parts();
    router
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such endpoint; see /api/v1/openapi.json for the API")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

/// The OpenAPI 3.1 description of this API (see [`crate::openapi`]).
pub fn openapi_document() -> serde_json::Value {
    crate::openapi::document()
}
