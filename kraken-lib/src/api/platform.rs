//! The platform at a glance, the builders it has, and the OpenAPI document
//! of this API.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::client::dto::{BuilderInfo, OrchestratorInfo, PlatformInfo};

use super::replication::replication_status;
use super::ApiContext;

/// The orchestrator, the node and deployment counts, and replication.
#[utoipa::path(
    get,
    path = "/api/v1/platform",
    tag = "platform",
    operation_id = "platform",
    responses((status = 200, description = "orchestrator, node and deployment counts, replication", body = PlatformInfo))
)]
pub(super) async fn platform(AxumState(ctx): AxumState<ApiContext>) -> Json<PlatformInfo> {
    let nodes = ctx.state.nodes();
    let (_, deployments) = ctx.state.versioned_summaries();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for d in &deployments {
        *by_status.entry(d.status.as_str().to_string()).or_default() += 1;
    }
    Json(PlatformInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        epoch: ctx.node.epoch(),
        orchestrator: OrchestratorInfo {
            node_id: ctx.node.id.clone(),
            name: ctx.node.name.clone(),
            address: ctx.node.api_address(),
        },
        node_count: nodes.len(),
        nodes_up: nodes.iter().filter(|n| n.up).count(),
        deployment_count: deployments.len(),
        deployments_by_status: by_status,
        replication: replication_status(&ctx),
    })
}

/// The languages this platform builds, with an example manifest each.
#[utoipa::path(
    get,
    path = "/api/v1/builders",
    tag = "platform",
    operation_id = "builders",
    responses((status = 200, description = "the builders", body = Vec<BuilderInfo>))
)]
pub(super) async fn builders(AxumState(ctx): AxumState<ApiContext>) -> Json<Vec<BuilderInfo>> {
    let list = ctx
        .registry
        .builders()
        .map(|b| BuilderInfo {
            name: b.name().to_string(),
            description: b.description().to_string(),
            example: b.example_manifest(),
        })
        .collect();
    Json(list)
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "platform",
    operation_id = "openapi",
    responses((status = 200, description = "the OpenAPI 3.1 document of this API", body = Object))
)]
pub(super) async fn openapi() -> Response {
    static ENCODED: OnceLock<Bytes> = OnceLock::new();
    let body = ENCODED.get_or_init(|| Bytes::from(crate::openapi::document().to_string())).clone();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
