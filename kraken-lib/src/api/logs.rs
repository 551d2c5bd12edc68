//! A deployment's log: a page of lines from an offset, or with `follow=true`
//! a stream of server-sent `log` events that catches up from the store and
//! then follows new lines.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::client::dto::{ErrorBody, LogPage};
use crate::state::LoggedLines;

use super::error::{ApiError, ApiResult};
use super::ApiContext;

/// The query of the logs call.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// First line to return (a `seq`).
    #[serde(default)]
    #[param(minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
    pub offset: u64,
    /// Most lines to return (default 1000, at most 5000).
    #[param(minimum = 1, maximum = 5000)]
    pub limit: Option<usize>,
    /// Stream new lines as server-sent events.
    #[serde(default)]
    pub follow: bool,
}

/// Log lines from an offset; with `follow=true` a stream of server-sent
/// `log` events, each one's data a `LogLine`.
#[utoipa::path(
    get,
    path = "/api/v1/deployments/{id}/logs",
    tag = "deployments",
    operation_id = "getDeploymentLogs",
    params(("id" = String, Path, description = "the deployment's id"), LogQuery),
    responses(
        (status = 200, description = "a page of lines, or (follow=true) a stream of `log` events whose data is a LogLine",
            content((LogPage = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "a query parameter is not of its type or out of range", body = ErrorBody),
        (status = 404, description = "no such deployment", body = ErrorBody),
        (status = 500, description = "the log could not be read", body = ErrorBody),
    )
)]
pub(super) async fn logs(
    AxumState(ctx): AxumState<ApiContext>,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{}; expected ?offset=<number>&limit=<number>&follow=true|false", e.body_text()),
        )
    })?;
    if ctx.state.deployment(&id).is_none() {
        return Err(ApiError::not_found(&id));
    }
    let limit = q.limit.unwrap_or(1000);
    if !(1..=5000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit={limit} is out of range; ask for 1 to 5000 lines"),
        ));
    }
    if !q.follow {
        let (lines, next) = ctx
            .state
            .logs(&id, q.offset, limit)
            .map_err(|e| ApiError::internal("the log could not be read", e))?;
        return Ok(Json(LogPage { lines, next_offset: next }).into_response());
    }
    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(256);
    let mut events = ctx.state.subscribe_logs();
    let state = ctx.state.clone();
    tokio::spawn(async move {
        let mut next = q.offset;
        // Catch up from the store, then follow the broadcast; after a lag, read
        // the store again from where we were.
        'catch_up: loop {
            loop {
                let Ok((lines, after)) = state.logs(&id, next, 500) else { return };
                if lines.is_empty() {
                    break;
                }
                for line in lines {
                    let Ok(event) = SseEvent::default().event("log").json_data(&line) else { continue };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                next = after;
            }
            loop {
                match events.recv().await {
                    Ok(LoggedLines { deployment, lines }) if deployment == id => {
                        for line in lines.iter() {
                            if line.seq < next {
                                continue;
                            }
                            next = line.seq + 1;
                            let Ok(event) = SseEvent::default().event("log").json_data(line) else {
                                continue;
                            };
                            if tx.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => continue 'catch_up,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
