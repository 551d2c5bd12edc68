//! The platform's own RabbitMQ broker: starting it as a container, the
//! credentials made for it, the URLs it is reached by, and connecting to a
//! broker that is still starting.
//!
//! An orchestrator that is given no broker URL but a broker image starts the
//! broker itself ([`start`]); its credentials are made once
//! ([`generated_credentials`]) and kept in the platform's state, so a new
//! orchestrator that takes over with the replica can start the same broker
//! again with the same credentials.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::bus::amqp::{AmqpBus, AmqpOptions};
use crate::bus::BusError;
use crate::node::NodeConfig;
use crate::runtime::{ContainerSpec, LogRotation, Runtime, RuntimeError};
use crate::state::{State, StateError};

/// The name of the broker container a node starts.
pub const BROKER_CONTAINER: &str = "kraken-broker";

/// How long [`connect_patiently`] waits for a broker that is starting.
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// Why the platform's broker could not be started or reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker's credentials or settings could not be read or kept in the state.
    #[error("the broker's settings in the state: {0}")]
    State(#[from] StateError),
    /// The operating system gave no randomness for new credentials.
    #[error("could not generate broker credentials: {0}")]
    Randomness(#[source] std::io::Error),
    /// The container engine failed while looking for, removing or starting
    /// the broker's container.
    #[error("could not {action} the broker container: {source}")]
    Container {
        /// What was being done (`list`, `remove`, `start from image …`, …).
        action: String,
        /// The engine's error.
        #[source]
        source: RuntimeError,
    },
    /// No broker accepted a connection within the time allowed.
    #[error("the broker did not accept a connection within {waited:?}: {source}")]
    Unreachable {
        /// How long it was tried.
        waited: Duration,
        /// The last connection error.
        #[source]
        source: BusError,
    },
}

/// The URLs of a started broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrls {
    /// The URL this machine connects with.
    pub local: String,
    /// The URL the other machines are given when they join.
    pub advertised: String,
}

/// Random credentials for a broker the platform administers itself: a user
/// `kraken-<16 hex digits>` and a password of 32 hex digits (128 bits).
///
/// # Errors
/// [`BrokerError::Randomness`] when the operating system has no randomness to give.
///
/// # Examples
/// ```
/// let (user, password) = kraken_lib::broker::generated_credentials()?;
/// assert!(user.starts_with("kraken-"));
/// assert_eq!(password.len(), 32);
/// # Ok::<(), kraken_lib::broker::BrokerError>(())
/// ```
pub fn generated_credentials() -> Result<(String, String), BrokerError> {
    let mut user = [0u8; 8];
    let mut password = [0u8; 16];
    getrandom::getrandom(&mut user)
        .and_then(|()| getrandom::getrandom(&mut password))
        .map_err(|e| BrokerError::Randomness(std::io::Error::other(e.to_string())))?;
    Ok((format!("kraken-{}", hex::encode(user)), hex::encode(password)))
}

/// The `amqp://` URL of the broker at `host:port` for `user`, on the default
/// virtual host `/`. The user and password are percent-encoded.
///
/// # Examples
/// ```
/// let url = kraken_lib::broker::broker_url("10.0.0.2", 5672, "kraken-1", "p@ss");
/// assert_eq!(url, "amqp://kraken-1:p%40ss@10.0.0.2:5672/%2f");
/// ```
pub fn broker_url(host: &str, port: u16, user: &str, password: &str) -> String {
    format!("amqp://{}:{}@{host}:{port}/%2f", percent_encode(user), percent_encode(password))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Connects to the broker at `url`, waiting up to [`CONNECT_PATIENCE`] for
/// one that is starting.
///
/// # Errors
/// [`BrokerError::Unreachable`] with the last connection error.
///
/// # Examples
/// ```no_run
/// # async fn run() -> Result<(), kraken_lib::broker::BrokerError> {
/// let bus = kraken_lib::broker::connect_patiently("amqp://user:pass@127.0.0.1:5672/%2f").await?;
/// # let _ = bus;
/// # Ok(())
/// # }
/// ```
pub async fn connect_patiently(url: &str) -> Result<AmqpBus, BrokerError> {
    crate::retry::until_deadline(CONNECT_PATIENCE, || AmqpBus::connect(url, AmqpOptions::default()))
        .await
        .map_err(|source| BrokerError::Unreachable { waited: CONNECT_PATIENCE, source })
}

/// Starts (or finds running) the platform's RabbitMQ container with
/// credentials made for this platform and kept in its state, publishing the
/// broker's port `port` on the node's `publish_ip`. Returns the URL for this
/// machine and the URL for the others.
///
/// # Errors
/// [`BrokerError`] saying which step failed.
///
/// # Examples
/// ```no_run
/// # use std::sync::Arc;
/// # async fn run(state: kraken_lib::state::State, config: kraken_lib::node::NodeConfig)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// let docker = kraken_lib::runtime::DockerRuntime::connect().await?;
/// let urls = kraken_lib::broker::start(&state, &docker, "rabbitmq:3", 5672, "node-1", &config).await?;
/// println!("workers join with {}", urls.advertised);
/// # Ok(())
/// # }
/// ```
pub async fn start(
    state: &State,
    runtime: &dyn Runtime,
    image: &str,
    port: u16,
    node_id: &str,
    config: &NodeConfig,
) -> Result<BrokerUrls, BrokerError> {
    let (user, password) = match (state.meta("broker_user")?, state.meta("broker_password")?) {
        (Some(u), Some(p)) => (u, p),
        _ => {
            let (u, p) = generated_credentials()?;
            state.set_meta("broker_user", &u)?;
            state.set_meta("broker_password", &p)?;
            (u, p)
        }
    };
    let container = |action: &str| {
        let action = action.to_string();
        move |source| BrokerError::Container { action, source }
    };
    let running = runtime
        .list_managed(None)
        .await
        .map_err(container("list"))?
        .into_iter()
        .find(|c| c.name == BROKER_CONTAINER);
    match running {
        Some(c) if c.running => tracing::info!(container = %c.id, "the platform's broker is running"),
        other => {
            if let Some(c) = other {
                runtime.remove_container(&c.id).await.map_err(container("remove the stopped"))?;
            }
            let spec = container_spec(image, port, node_id, &user, &password, config);
            let (id, _) = runtime
                .run_container(&spec)
                .await
                .map_err(container(&format!("start from image {image}")))?;
            runtime.keep_restarting(&id).await.map_err(container("set the restart policy of"))?;
            state.set_meta("broker_image", image)?;
            state.set_meta("broker_port", &port.to_string())?;
            tracing::info!(container = %id, %image, port, "started the platform's broker");
        }
    }
    let local_host = match config.publish_ip.parse::<std::net::IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ip.to_string(),
        _ => "127.0.0.1".to_string(),
    };
    Ok(BrokerUrls {
        local: broker_url(&local_host, port, &user, &password),
        advertised: broker_url(&config.advertise_host, port, &user, &password),
    })
}

/// The broker's container: RabbitMQ with the platform's credentials, its
/// AMQP port published, its output rotated like an app's.
fn container_spec(
    image: &str,
    port: u16,
    node_id: &str,
    user: &str,
    password: &str,
    config: &NodeConfig,
) -> ContainerSpec {
    let env = BTreeMap::from([
        ("RABBITMQ_DEFAULT_USER".to_string(), user.to_string()),
        ("RABBITMQ_DEFAULT_PASS".to_string(), password.to_string()),
    ]);
    let labels = BTreeMap::from([
        ("kraken.broker".to_string(), node_id.to_string()),
        (crate::runtime::LABEL_ROLE.to_string(), crate::runtime::ROLE_BROKER.to_string()),
    ]);
    ContainerSpec {
        name: BROKER_CONTAINER.to_string(),
        image: image.to_string(),
        labels,
        env,
        container_port: 5672,
        publish: true,
        host_port: port,
        host_ip: config.publish_ip.clone(),
        memory_limit: 0,
        // RabbitMQ runs many threads.
        pids_limit: 0,
        log_rotation: Some(LogRotation::default()),
        // RabbitMQ handles SIGTERM itself and may need the engine's 10 s to stop.
        init: false,
        stop_timeout: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_url_encodes_credentials() {
        assert_eq!(broker_url("h", 5672, "a b", "p@ss/"), "amqp://a%20b:p%40ss%2F@h:5672/%2f");
        let url = broker_url("h", 1, "us:er", "p@ss");
        let uri: lapin::uri::AMQPUri = url.parse().expect("parses");
        assert_eq!(uri.authority.userinfo.username, "us:er");
        assert_eq!(uri.authority.userinfo.password, "p@ss");
    }

    #[test]
    fn generated_credentials_differ_and_are_url_safe() {
        let (u1, p1) = generated_credentials().expect("credentials");
        let (u2, p2) = generated_credentials().expect("credentials");
        assert_ne!((&u1, &p1), (&u2, &p2));
        assert!(u1.starts_with("kraken-") && u1.len() == 23);
        assert_eq!(p1.len(), 32);
        assert_eq!(percent_encode(&p1), p1);
    }

    #[test]
    fn the_container_carries_the_credentials_and_publishes_the_port() {
        let config = NodeConfig::new("/tmp/k", "127.0.0.1:8000".parse().expect("address"));
        let spec = container_spec("rabbitmq:3", 5673, "n1", "u", "p", &config);
        assert_eq!(spec.name, BROKER_CONTAINER);
        assert_eq!(spec.host_port, 5673);
        assert_eq!(spec.container_port, 5672);
        assert_eq!(spec.env.get("RABBITMQ_DEFAULT_USER").map(String::as_str), Some("u"));
        assert_eq!(spec.env.get("RABBITMQ_DEFAULT_PASS").map(String::as_str), Some("p"));
        assert_eq!(spec.labels.get(crate::runtime::LABEL_ROLE).map(String::as_str), Some("broker"));
    }
}
