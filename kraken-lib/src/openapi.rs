//! The OpenAPI 3.1 document of the HTTP API, served at
//! `/api/v1/openapi.json`. It is generated with `utoipa` from the API's
//! router ([`crate::api`]): each handler's `#[utoipa::path]` names its
//! parameters, body and answers, and the bodies' schemas come from the
//! types the server sends and [`crate::client`] reads. The tests check real
//! answers against it, and the running API with schemathesis.

use std::sync::OnceLock;

use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

use crate::client::dto::{ErrorBody, Lagged, Snapshot};
use crate::deployment::DeploymentSummary;
use crate::rollover::replication::ReplicationStatus;
use crate::state::{LogLine, NodeRecord};

/// What the document says besides its paths: the title, the security
/// schemes, and the schemas of the event streams' data (the paths bring
/// every other schema they use).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kraken API",
        description = "Deploy apps from git to the machines of a LAN. Calls that change anything, and checking a repository, need `Authorization: Bearer <platform token>`. Errors are JSON objects `{\"error\": \"…\"}` (ErrorBody).",
    ),
    components(schemas(ErrorBody, Lagged, Snapshot, DeploymentSummary, NodeRecord, ReplicationStatus, LogLine)),
    modifiers(&Security),
    tags(
        (name = "deployments", description = "Deploy, read, update and destroy apps, their logs, and checking a repository"),
        (name = "nodes", description = "The machines of the platform"),
        (name = "platform", description = "The platform at a glance, health and the event stream"),
        (name = "replication", description = "The copy of the state on the rollover candidate"),
    )
)]
struct Base;

/// The security schemes: the platform token, the join token and a node's
/// signed proof.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        components.add_security_scheme("token", bearer());
        components.add_security_scheme("join_token", bearer());
        components.add_security_scheme(
            "node_proof",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                crate::auth::proof::HEADER,
                "the rollover candidate's proof, signed with its node key, that it is the node named",
            ))),
        );
    }
}

/// The parts of the document that are not paths (the router adds those).
pub(crate) fn base() -> Document {
    let mut doc = Base::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The document, as JSON.
///
/// ```
/// let doc = kraken_lib::openapi::document();
/// assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
/// assert!(doc["paths"]["/api/v1/deployments"]["post"].is_object());
/// ```
pub fn document() -> Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            let (_, doc) = crate::api::routes().split_for_parts();
            let mut value = serde_json::to_value(&doc).unwrap_or_default();
            add_links(&mut value);
            value
        })
        .clone()
}

/// Says, on the answer of a create, which calls take the new deployment's
/// id (so tools can chain them).
fn add_links(doc: &mut Value) {
    let links: serde_json::Map<String, Value> =
        ["getDeployment", "getDeploymentLogs", "updateDeployment", "destroyDeployment"]
            .into_iter()
            .map(|op| {
                let name = format!("{}{}", op[..1].to_ascii_uppercase(), &op[1..]);
                (name, serde_json::json!({ "operationId": op, "parameters": { "id": "$response.body#/id" } }))
            })
            .collect();
    if let Some(answer) = doc.pointer_mut("/paths/~1api~1v1~1deployments/post/responses/202") {
        answer["links"] = Value::Object(links);
    }
}
