//! Asking an orchestrator to let this node join its platform: the request a
//! worker sends to `POST /api/v1/join` with its join token and key, and the
//! answer (the broker to use, the epoch, the orchestrator's key).

use std::time::Duration;

use crate::auth::PublicKey;
use crate::client::{Client, ClientError, JoinAnswer, JoinRequest};
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
    /// The orchestrator could not be reached, refused, or gave an answer
    /// that is not a join answer (the source says which, with the
    /// orchestrator's own reason when it refused).
    #[error("joining the platform at {address} failed: {source}{hint}", hint = unreachable_hint(source))]
    Request {
        /// The orchestrator asked.
        address: String,
        /// What the client saw.
        #[source]
        source: ClientError,
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
    let fail = |source| JoinError::Request { address: address.clone(), source };
    let client = Client::new(&address).map_err(fail)?.with_timeout(JOIN_TIMEOUT);
    client.join(&request).await.map_err(fail)
}

/// A hint for a platform that does not answer at all.
fn unreachable_hint(e: &ClientError) -> &'static str {
    match e {
        ClientError::Unreachable { .. } | ClientError::TimedOut { .. } => {
            "; is the orchestrator running there?"
        }
        _ => "",
    }
}
