//! The event stream: server-sent `deployment` (a summary), `node` (the whole
//! record), `replication` (the replication status) and `lagged` events, for
//! the UI and the CLI to follow the platform without polling.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State as AxumState;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tracing::warn;

use crate::client::dto::Lagged;
use crate::state::Event;

use super::replication::replication_status;
use super::ApiContext;

/// A stream that stays open: `deployment` events carry a DeploymentSummary,
/// `node` events a NodeRecord, `replication` events a ReplicationStatus and
/// `lagged` events a Lagged (read the records again).
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "platform",
    operation_id = "events",
    responses((status = 200, description = "server-sent `deployment`, `node`, `replication` and `lagged` events",
        content((String = "text/event-stream"))))
)]
pub(super) async fn events(AxumState(ctx): AxumState<ApiContext>) -> Response {
    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(256);
    let mut events = ctx.state.subscribe();
    let mut replication = ctx.replication.watch();
    tokio::spawn(async move {
        let mut shown = replication_status(&ctx);
        loop {
            let event = tokio::select! {
                changed = replication.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = replication_status(&ctx);
                    if now == shown {
                        continue;
                    }
                    shown = now;
                    SseEvent::default().event("replication").json_data(&shown)
                }
                next = events.recv() => match next {
                    Ok(Event::Deployment(d)) => SseEvent::default().event("deployment").json_data(&d),
                    Ok(Event::Node(n)) => {
                        // A node coming or going can change the replication status too.
                        let now = replication_status(&ctx);
                        if now != shown {
                            shown = now;
                            if let Ok(e) = SseEvent::default().event("replication").json_data(&shown) {
                                if tx.send(Ok(e)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        SseEvent::default().event("node").json_data(&n)
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(missed, "an event stream fell behind");
                        SseEvent::default().event("lagged").json_data(Lagged { missed })
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            let Ok(event) = event else { continue };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
