//! The OpenAPI 3.1 document of the HTTP API, served at
//! `/api/v1/openapi.json` (written by hand; the tests check the running API
//! against it with schemathesis).

use serde_json::{json, Value};

use crate::deployment::Status;

fn error(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The answers every call with a JSON body may give besides its own.
fn body_errors() -> [(&'static str, Value); 3] {
    [
        ("400", error("the body is not the JSON object expected")),
        ("413", error("the body is larger than 64 KiB")),
        ("415", error("the body is not sent as application/json")),
    ]
}

fn with(
    mut responses: serde_json::Map<String, Value>,
    extra: impl IntoIterator<Item = (&'static str, Value)>,
) -> Value {
    for (code, answer) in extra {
        responses.insert(code.to_string(), answer);
    }
    Value::Object(responses)
}

fn responses(list: Value) -> serde_json::Map<String, Value> {
    list.as_object().cloned().unwrap_or_default()
}

/// The document.
pub fn document() -> Value {
    let id_param = json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }]);
    let source_body = json!({ "required": true, "content": { "application/json": { "schema": reference("SourceRequest") } } });
    let token = json!([{ "token": [] }]);
    let unauthorised = error("the platform token is missing or wrong");
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let nullable_string = json!({ "type": ["string", "null"] });
    let deployment_links = json!({
        "GetDeployment": { "operationId": "getDeployment", "parameters": { "id": "$response.body#/id" } },
        "DeploymentLogs": { "operationId": "getDeploymentLogs", "parameters": { "id": "$response.body#/id" } },
        "UpdateDeployment": { "operationId": "updateDeployment", "parameters": { "id": "$response.body#/id" } },
        "DestroyDeployment": { "operationId": "destroyDeployment", "parameters": { "id": "$response.body#/id" } }
    });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Kraken API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Deploy apps from git to the machines of a LAN. Calls that change anything, and checking a repository, need `Authorization: Bearer <platform token>`." },
        "components": {
            "securitySchemes": { "token": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "SourceRequest": { "type": "object", "required": ["url"], "additionalProperties": false,
                    "properties": {
                        "url": { "type": "string", "minLength": 1, "maxLength": 2048,
                                 "pattern": "^(?:[Hh][Tt][Tt][Pp][Ss]?|[Gg][Ii][Tt])://[^/?#\\s]+",
                                 "description": "an https://, http:// or git:// URL (an agent started with --allow-local-sources also takes local paths and file:// URLs)" },
                        "branch": { "type": "string", "minLength": 1, "maxLength": 255, "default": "main" } } },
                "Status": { "type": "string", "enum": statuses },
                "Accepted": { "type": "object", "required": ["id", "status"],
                    "properties": { "id": { "type": "string" }, "status": reference("Status") } },
                "Manifest": { "type": "object", "required": ["app", "config"],
                    "properties": { "app": { "type": "object" }, "config": { "type": "object" } } },
                "Validation": { "type": "object", "required": ["manifest", "builder", "reason", "commit"],
                    "properties": { "manifest": reference("Manifest"), "builder": { "type": "string" },
                                    "reason": { "type": "string" }, "commit": { "type": "string" } } },
                "DeploymentSummary": { "type": "object",
                    "required": ["id", "url", "branch", "status", "created_at", "updated_at"],
                    "properties": {
                        "id": { "type": "string" }, "name": nullable_string, "url": { "type": "string" },
                        "branch": { "type": "string" }, "commit": nullable_string,
                        "status": reference("Status"), "node": nullable_string,
                        "address": nullable_string, "created_at": { "type": "string", "format": "date-time" },
                        "updated_at": { "type": "string", "format": "date-time" } } },
                "StatusChange": { "type": "object", "required": ["status", "at", "message"],
                    "properties": { "status": reference("Status"), "at": { "type": "string", "format": "date-time" },
                                    "message": { "type": "string" } } },
                "Deployment": { "type": "object",
                    "required": ["id", "url", "branch", "status", "status_history", "desired", "generation", "created_at", "updated_at"],
                    "properties": {
                        "id": { "type": "string" }, "name": nullable_string, "url": { "type": "string" },
                        "branch": { "type": "string" }, "commit": nullable_string, "status": reference("Status"),
                        "status_history": { "type": "array", "items": reference("StatusChange") },
                        "error": nullable_string, "desired": { "type": "string", "enum": ["Running", "Destroyed"] },
                        "generation": { "type": "integer", "minimum": 0 }, "node": nullable_string,
                        "address": nullable_string, "host_port": { "type": ["integer", "null"] },
                        "container_id": nullable_string, "builder": nullable_string, "builder_reason": nullable_string,
                        "manifest": { "oneOf": [reference("Manifest"), { "type": "null" }] },
                        "created_at": { "type": "string", "format": "date-time" },
                        "updated_at": { "type": "string", "format": "date-time" },
                        "stats": { "type": "object" }, "stats_history": { "type": "array" } } },
                "LogLine": { "type": "object", "required": ["seq", "at", "stream", "line"],
                    "properties": { "seq": { "type": "integer", "minimum": 0 }, "at": { "type": "string", "format": "date-time" },
                        "stream": { "type": "string", "enum": ["build", "stdout", "stderr", "platform"] }, "line": { "type": "string" } } },
                "LogPage": { "type": "object", "required": ["lines", "next_offset"],
                    "properties": { "lines": { "type": "array", "items": reference("LogLine") },
                                    "next_offset": { "type": "integer", "minimum": 0 } } },
                "Node": { "type": "object", "required": ["id", "name", "role", "address", "up", "rollover_priority"],
                    "properties": { "id": { "type": "string" }, "name": { "type": "string" },
                        "role": { "type": "string", "enum": ["orchestrator", "worker"] }, "address": { "type": "string" },
                        "up": { "type": "boolean" }, "last_heartbeat": { "type": ["string", "null"], "format": "date-time" },
                        "rollover_priority": { "type": "integer", "minimum": 0 }, "drained": { "type": "boolean" },
                        "runs_apps": { "type": "boolean" }, "deployments": { "type": "array", "items": { "type": "string" } },
                        "stats": { "type": "object" }, "history": { "type": "array" },
                        "public_key": nullable_string } },
                "Drained": { "type": "object", "required": ["id", "drained"],
                    "properties": { "id": { "type": "string" }, "drained": { "type": "boolean" } } },
                "Platform": { "type": "object", "required": ["version", "epoch", "orchestrator", "node_count", "nodes_up", "deployment_count"],
                    "properties": { "version": { "type": "string" }, "epoch": { "type": "integer" },
                        "orchestrator": { "type": "object" }, "node_count": { "type": "integer" }, "nodes_up": { "type": "integer" },
                        "deployment_count": { "type": "integer" }, "deployments_by_status": { "type": "object" } } },
                "Builder": { "type": "object", "required": ["name", "description", "example"],
                    "properties": { "name": { "type": "string" }, "description": { "type": "string" }, "example": { "type": "string" } } },
                "Ping": { "type": "object", "required": ["service", "version", "node_id", "role", "epoch"],
                    "properties": { "service": { "const": "kraken" }, "version": { "type": "string" }, "node_id": { "type": "string" },
                        "node_name": { "type": "string" }, "role": { "type": "string" }, "epoch": { "type": "integer" } } },
                "Health": { "type": "object", "required": ["ok", "node_id", "role", "epoch"],
                    "properties": { "ok": { "type": "boolean" }, "node_id": { "type": "string" }, "role": { "type": "string" },
                        "epoch": { "type": "integer" } } },
                "JoinRequest": { "type": "object", "required": ["node_id", "name", "address", "join_token", "public_key"],
                    "additionalProperties": false,
                    "properties": { "node_id": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" },
                        "name": { "type": "string", "minLength": 1, "maxLength": 64 },
                        "address": { "type": "string", "pattern": "^https?://[^\\s/?#]+" },
                        "join_token": { "type": "string" },
                        "public_key": { "type": "string", "pattern": "^[0-9a-f]{64}$", "description": "the node's ed25519 public key" } } },
                "JoinAnswer": { "type": "object", "required": ["amqp_url", "epoch", "orchestrator_id", "orchestrator_address"],
                    "properties": { "amqp_url": { "type": "string" }, "epoch": { "type": "integer" },
                        "orchestrator_id": { "type": "string" }, "orchestrator_address": { "type": "string" },
                        "orchestrator_key": nullable_string } }
            }
        },
        "paths": {
            "/ping": { "get": { "summary": "Health and discovery", "responses": { "200": ok("the node answers", reference("Ping")) } } },
            "/health": { "get": { "summary": "Liveness of this node", "responses": { "200": ok("alive", reference("Health")) } } },
            "/api/v1/platform": { "get": { "summary": "The platform at a glance",
                "responses": { "200": ok("orchestrator, node and deployment counts", reference("Platform")) } } },
            "/api/v1/builders": { "get": { "summary": "The languages this platform builds, with an example manifest each",
                "responses": { "200": ok("builders", json!({ "type": "array", "items": reference("Builder") })) } } },
            "/api/v1/nodes": { "get": { "summary": "Nodes with role, address, stats, history, deployments, heartbeat and rollover priority",
                "responses": { "200": ok("nodes", json!({ "type": "array", "items": reference("Node") })) } } },
            "/api/v1/validate": { "post": { "summary": "Fetch a repository and check its shipwreck.toml", "security": token, "requestBody": source_body,
                "responses": with(responses(json!({
                    "200": ok("the manifest, builder and commit", reference("Validation")),
                    "401": unauthorised,
                    "422": error("the URL, the branch, the repository or its manifest cannot be deployed; the message says why"),
                    "503": error("as many repositories are being fetched as the platform takes at once; try again (Retry-After)") })),
                    body_errors()) } },
            "/api/v1/deployments": {
                "get": { "summary": "All deployments", "responses": { "200": ok("a list", json!({ "type": "array", "items": reference("DeploymentSummary") })) } },
                "post": { "summary": "Deploy a branch of a git repository", "operationId": "createDeployment", "security": token, "requestBody": source_body,
                    "responses": with(responses(json!({
                        "202": { "description": "accepted", "content": { "application/json": { "schema": reference("Accepted") } }, "links": deployment_links },
                        "401": unauthorised,
                        "422": error("the URL or the branch cannot be deployed; the message says why") })),
                        body_errors()) } },
            "/api/v1/deployments/{id}": {
                "get": { "summary": "One deployment with its status history and resource use", "operationId": "getDeployment", "parameters": id_param,
                    "responses": { "200": ok("the deployment", reference("Deployment")), "404": error("no such deployment") } },
                "delete": { "summary": "Destroy a deployment (it stays listed, Destroyed, with its history)", "operationId": "destroyDeployment",
                    "security": token, "parameters": id_param,
                    "responses": { "202": ok("destruction requested", reference("Accepted")), "401": unauthorised, "404": error("no such deployment") } } },
            "/api/v1/deployments/{id}/update": { "post": { "summary": "Redeploy the newest commit of the branch", "operationId": "updateDeployment",
                "security": token, "parameters": id_param,
                "responses": { "202": ok("update requested", reference("Accepted")), "401": unauthorised, "404": error("no such deployment"),
                               "409": error("the deployment cannot be updated in its status") } } },
            "/api/v1/deployments/{id}/logs": { "get": { "summary": "Log lines from an offset; with follow=true a stream of server-sent `log` events",
                "operationId": "getDeploymentLogs",
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "offset", "in": "query", "schema": { "type": "integer", "minimum": 0, "maximum": u64::MAX } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 5000 } },
                    { "name": "follow", "in": "query", "schema": { "type": "boolean" } } ],
                "responses": { "200": { "description": "a page of lines, or (follow=true) a stream of `log` events",
                        "content": { "application/json": { "schema": reference("LogPage") }, "text/event-stream": { "schema": { "type": "string" } } } },
                    "400": error("a query parameter is not of its type"), "404": error("no such deployment") } } },
            "/api/v1/join": { "post": { "summary": "Join the platform as a worker (needs the join token in the body)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": reference("JoinRequest") } } },
                "responses": with(responses(json!({
                    "200": ok("the broker URL, the orchestrator and its key", reference("JoinAnswer")),
                    "401": error("the join token is wrong"),
                    "409": error("this platform cannot be joined, or the node id joined before with another key"),
                    "422": error("the node id, name or address is not acceptable") })),
                    body_errors()) } },
            "/api/v1/nodes/{id}/drain": { "post": { "summary": "Place nothing new on a node and move its deployments elsewhere", "security": token,
                "parameters": id_param, "responses": { "202": ok("drained", reference("Drained")), "401": unauthorised, "404": error("no such node") } } },
            "/api/v1/nodes/{id}/undrain": { "post": { "summary": "Let a drained node take deployments again", "security": token,
                "parameters": id_param, "responses": { "202": ok("undrained", reference("Drained")), "401": unauthorised, "404": error("no such node") } } },
            "/api/v1/events": { "get": { "summary": "Server-sent `deployment`, `node` and `lagged` events (a stream that stays open)",
                "responses": { "200": { "description": "text/event-stream", "content": { "text/event-stream": { "schema": { "type": "string" } } } } } } },
            "/api/v1/openapi.json": { "get": { "summary": "This document", "responses": { "200": ok("OpenAPI 3.1", json!({ "type": "object" })) } } }
        }
    })
}
