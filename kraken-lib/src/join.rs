//! Asking an orchestrator to let this node join its platform: the request a
//! worker sends to `POST /api/v1/join` with its join token and key, and the
//! answer (the broker to use, the epoch, the orchestrator's key).

use std::time::Duration;

use crate::api::{JoinAnswer, JoinRequest};
use crate::auth::PublicKey;
use crate::node::{NodeConfig, NodeIdentity};

/// How long one join request may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why joining a platform failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// No join token was given.
    #[error(
        "joining the platform at {address} failed: no join token given; the orchestrator printed it when it started (pass it with --join-token)"
    )]
    NoToken {
        /// The orchestrator asked.
        address: String,
    },
    /// The address given does not lead to an orchestrator.
    #[error("joining the platform at {address} failed: {source}")]
    Discovery {
        /// The address given.
        address: String,
        /// Why no orchestrator was found there.
        #[source]
        source: crate::discovery::DiscoveryError,
    },
    /// No HTTP client could be made (no TLS backend).
    #[error("could not make an HTTP client to join with: {0}")]
    Client(#[source] reqwest::Error),
    /// The orchestrator did not answer.
    #[error(
        "joining the platform at {address} failed: no answer ({source}); is the orchestrator running there?"
    )]
    Unreachable {
        /// The orchestrator asked.
        address: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The orchestrator refused.
    #[error("joining the platform at {address} failed: refused ({status}): {message}")]
    Refused {
        /// The orchestrator asked.
        address: String,
        /// The HTTP status of the answer.
        status: u16,
        /// The orchestrator's reason.
        message: String,
    },
    /// The answer was not a join answer.
    #[error("joining the platform at {address} failed: an answer that is not a join answer: {source}")]
    BadAnswer {
        /// The orchestrator asked.
        address: String,
        /// Why it could not be read.
        #[source]
        source: reqwest::Error,
    },
    /// The orchestrator sent no key to check its work with.
    #[error(
        "joining the platform at {address} failed: the orchestrator sent no key to check its work with; it runs an older Kraken: upgrade it first"
    )]
    NoOrchestratorKey {
        /// The orchestrator asked.
        address: String,
    },
}

/// Asks the orchestrator at `address` to let the node `identity` (reached at
/// `config`'s API address, signing with `key`) join with `join_token`.
///
/// # Errors
/// [`JoinError`] saying why the node could not join.
///
/// # Examples
/// ```no_run
/// # async fn run(
/// #     identity: kraken_lib::node::NodeIdentity,
/// #     config: kraken_lib::node::NodeConfig,
/// #     key: kraken_lib::auth::PublicKey,
/// # ) -> Result<(), kraken_lib::join::JoinError> {
/// let answer =
///     kraken_lib::join::request("http://10.0.0.2:8000", &identity, &config, Some("the join token"), key)
///         .await?;
/// println!("the platform's broker: {}", answer.amqp_url);
/// # Ok(())
/// # }
/// ```
pub async fn request(
    address: &str,
    identity: &NodeIdentity,
    config: &NodeConfig,
    join_token: Option<&str>,
    key: PublicKey,
) -> Result<JoinAnswer, JoinError> {
    let address = address.trim_end_matches('/').to_string();
    let Some(join_token) = join_token.filter(|t| !t.trim().is_empty()) else {
        return Err(JoinError::NoToken { address });
    };
    let request = JoinRequest {
        node_id: identity.id.clone(),
        name: identity.name.clone(),
        address: config.api_address(),
        join_token: join_token.to_string(),
        public_key: key.to_string(),
    };
    let client = match reqwest::Client::builder().timeout(JOIN_TIMEOUT).build() {
        Ok(c) => c,
        Err(source) => return Err(JoinError::Client(source)),
    };
    let response = client.post(format!("{address}/api/v1/join")).json(&request).send().await;
    let response = match response {
        Ok(r) => r,
        Err(source) => return Err(JoinError::Unreachable { address, source }),
    };
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        let message = body.get("error").and_then(|v| v.as_str()).unwrap_or("no details").to_string();
        return Err(JoinError::Refused { address, status, message });
    }
    match response.json::<JoinAnswer>().await {
        Ok(answer) => Ok(answer),
        Err(source) => Err(JoinError::BadAnswer { address, source }),
    }
}
