//! The typed client of Kraken's HTTP API, used by the `kraken` CLI, by a node
//! joining a platform, by the rollover candidate's replica follower and
//! watcher, and by discovery's probes. Its bodies are the server's own
//! ([`dto`]), and every address goes through one normaliser
//! ([`normalize_address`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), kraken_lib::client::ClientError> {
//! use kraken_lib::client::{Client, SourceRequest};
//!
//! let client = Client::new("pi4:8000")?.with_token("the platform token");
//! let accepted = client
//!     .create(&SourceRequest { url: "https://example.invalid/app.git".into(), branch: "main".into() })
//!     .await?;
//! println!("{} is {}", accepted.id, accepted.status);
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use crate::deployment::{Deployment, DeploymentSummary};
use crate::state::{LogLine, NodeRecord};

mod address;
pub mod dto;
pub mod sse;

pub use address::{normalize_address, AddressError, DEFAULT_PORT};
pub use dto::{
    Accepted, ApiEvent, DeploymentPage, Drained, ErrorBody, Health, JoinAnswer, JoinRequest, LogPage,
    PingAnswer, ReplicaAck, Snapshot, SourceRequest, Validation,
};
pub use sse::{SseDecoder, SseMessage};

/// The largest `/ping` answer read; anything larger is not a Kraken agent's.
pub const MAX_PING_BYTES: usize = 16 * 1024;

/// The header carrying a rollover candidate's proof (see [`crate::auth::proof`]).
const PROOF_HEADER: &str = crate::auth::proof::HEADER;

/// What went wrong talking to an agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The address is not an agent address.
    #[error(transparent)]
    BadAddress(#[from] AddressError),
    /// The HTTP client could not be set up.
    #[error("could not set up the HTTP client: {0}")]
    Setup(#[source] reqwest::Error),
    /// Nothing accepted the connection (refused, no route, bad host name).
    #[error("nothing answered at {address}: {source}")]
    Unreachable {
        /// The agent's address.
        address: String,
        /// The connection error.
        #[source]
        source: reqwest::Error,
    },
    /// The connection or the answer took longer than allowed.
    #[error("{address} did not answer in time: {source}")]
    TimedOut {
        /// The agent's address.
        address: String,
        /// The timeout error.
        #[source]
        source: reqwest::Error,
    },
    /// The agent answered with an error status.
    #[error("the platform refused ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// The agent's message (from its `{"error": …}` body).
        message: String,
    },
    /// The answer is not what this call answers.
    #[error("{address} gave an answer that is not {expected}: {reason}")]
    BadAnswer {
        /// The agent's address.
        address: String,
        /// What was expected.
        expected: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The connection broke while the answer was read.
    #[error("the connection to {address} broke off: {source}")]
    Broken {
        /// The agent's address.
        address: String,
        /// The error.
        #[source]
        source: reqwest::Error,
    },
}

impl ClientError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client of one agent's API.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    address: String,
    token: Option<String>,
    timeout: Option<Duration>,
}

impl Client {
    /// A client of the agent at `address` (`host`, `host:port` or
    /// `http://host:port`, see [`normalize_address`]) with a plain HTTP
    /// client (connections time out after 5 s).
    ///
    /// # Errors
    ///
    /// [`ClientError::BadAddress`] for an unusable address,
    /// [`ClientError::Setup`] when no HTTP client can be made.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use kraken_lib::client::{Client, SourceRequest};
    ///
    /// # async fn run() -> Result<(), kraken_lib::client::ClientError> {
    /// let client = Client::new("192.168.1.20")?.with_token("the platform token");
    /// let source = SourceRequest { url: "https://example.org/app.git".into(), branch: "main".into() };
    /// let accepted = client.create(&source).await?;
    /// println!("deployment {} is {}", accepted.id, client.deployment(&accepted.id).await?.status);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(address: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(ClientError::Setup)?;
        Self::with_http(address, http)
    }

    /// A client of the agent at `address` using `http` (with its own
    /// timeouts, proxy and redirect rules).
    ///
    /// # Errors
    ///
    /// [`ClientError::BadAddress`] for an unusable address.
    pub fn with_http(address: &str, http: reqwest::Client) -> Result<Self, ClientError> {
        let address = normalize_address(address)?;
        let base = Url::parse(&address)
            .map_err(|e| AddressError { address: address.clone(), reason: e.to_string() })?;
        Ok(Self { http, base, address, token: None, timeout: None })
    }

    /// Sends `token` as the bearer token with every call.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Bounds every call (answer included, but not a stream's body) by `timeout`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The agent's address, as `http://host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether a bearer token is sent.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The URL of the path made of `segments` (each percent-encoded).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.clear().extend(segments);
        }
        url
    }

    fn request(&self, method: reqwest::Method, segments: &[&str]) -> RequestBuilder {
        let mut request = self.http.request(method, self.url(segments));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(timeout) = self.timeout {
            request = request.timeout(timeout);
        }
        request
    }

    fn transport(&self, source: reqwest::Error) -> ClientError {
        let address = self.address.clone();
        if source.is_timeout() {
            ClientError::TimedOut { address, source }
        } else if source.is_connect() || source.is_builder() || source.is_request() {
            ClientError::Unreachable { address, source }
        } else {
            ClientError::Broken { address, source }
        }
    }

    /// Sends `request`; an error status becomes [`ClientError::Refused`].
    async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let message = match response.json::<ErrorBody>().await {
            Ok(body) => body.error,
            Err(_) => "no details".to_string(),
        };
        Err(ClientError::Refused { status, message })
    }

    async fn read<T: DeserializeOwned>(
        &self,
        response: Response,
        expected: &'static str,
    ) -> Result<T, ClientError> {
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer {
            address: self.address.clone(),
            expected,
            reason: e.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        expected: &'static str,
    ) -> Result<T, ClientError> {
        let response = self.send(self.request(reqwest::Method::GET, segments)).await?;
        self.read(response, expected).await
    }

    /// Asks `GET /ping` who answers, reading at most [`MAX_PING_BYTES`].
    ///
    /// # Errors
    ///
    /// The transport errors, [`ClientError::Refused`] for an error status,
    /// [`ClientError::BadAnswer`] when the answer is not a Kraken agent's.
    pub async fn ping(&self) -> Result<PingAnswer, ClientError> {
        let mut response = self.send(self.request(reqwest::Method::GET, &["ping"])).await?;
        let bad = |reason: String| ClientError::BadAnswer {
            address: self.address.clone(),
            expected: "a Kraken `/ping` answer",
            reason,
        };
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_PING_BYTES {
                return Err(bad(format!("the `/ping` answer is larger than {MAX_PING_BYTES} bytes")));
            }
        }
        parse_ping(&body).map_err(bad)
    }

    /// `GET /api/v1/deployments`, page after page: every deployment, oldest
    /// request first. Pages of the largest size are asked for, each after
    /// the last deployment of the one before, so a deployment created or
    /// destroyed meanwhile neither hides another nor shows twice.
    ///
    /// # Errors
    ///
    /// The transport errors, [`ClientError::Refused`], [`ClientError::BadAnswer`]
    /// (also when the server hands out a page cursor it handed out before).
    pub async fn deployments(&self) -> Result<Vec<DeploymentSummary>, ClientError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.deployment_page(Some(crate::api::MAX_PAGE), after.as_deref()).await?;
            all.extend(page.items);
            match page.next {
                None => return Ok(all),
                Some(next) if after.as_deref() == Some(next.as_str()) => {
                    return Err(ClientError::BadAnswer {
                        address: self.address.clone(),
                        expected: "a list of deployments",
                        reason: format!("the page after `{next}` points to itself"),
                    })
                }
                Some(next) => after = Some(next),
            }
        }
    }

    /// `GET /api/v1/deployments?limit=&after=`: one page of the list, at most
    /// `limit` deployments (the server's default, 100, when `None`) after the
    /// one `after` names (a page's `next`; the first page when `None`).
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] with 400 for a limit out of 1 to 1000 or a
    /// cursor not made by the server, and the others.
    pub async fn deployment_page(
        &self,
        limit: Option<usize>,
        after: Option<&str>,
    ) -> Result<DeploymentPage, ClientError> {
        let mut request = self.request(reqwest::Method::GET, &["api", "v1", "deployments"]);
        if let Some(limit) = limit {
            request = request.query(&[("limit", limit.to_string())]);
        }
        if let Some(after) = after {
            request = request.query(&[("after", after)]);
        }
        let response = self.send(request).await?;
        self.read(response, "a page of deployments").await
    }

    /// `GET /api/v1/deployments/{id}`: one deployment with its history.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] with 404 for an unknown id, and the others.
    pub async fn deployment(&self, id: &str) -> Result<Deployment, ClientError> {
        self.get(&["api", "v1", "deployments", id], "a deployment").await
    }

    /// `GET /api/v1/nodes`: every node.
    ///
    /// # Errors
    ///
    /// The transport errors, [`ClientError::Refused`], [`ClientError::BadAnswer`].
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, ClientError> {
        self.get(&["api", "v1", "nodes"], "a list of nodes").await
    }

    /// `GET /health`.
    ///
    /// # Errors
    ///
    /// The transport errors, [`ClientError::Refused`], [`ClientError::BadAnswer`].
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get(&["health"], "a health answer").await
    }

    async fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: Option<&B>,
        expected: &'static str,
    ) -> Result<T, ClientError> {
        let mut request = self.request(reqwest::Method::POST, segments);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.send(request).await?;
        self.read(response, expected).await
    }

    /// `POST /api/v1/deployments`: deploys a branch (needs the platform token).
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] for a bad request or token, and the others.
    pub async fn create(&self, source: &SourceRequest) -> Result<Accepted, ClientError> {
        self.post(&["api", "v1", "deployments"], Some(source), "an accepted request").await
    }

    /// `POST /api/v1/validate`: checks a branch without deploying it.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] with what is wrong with the app, and the others.
    pub async fn validate(&self, source: &SourceRequest) -> Result<Validation, ClientError> {
        self.post(&["api", "v1", "validate"], Some(source), "a validation").await
    }

    /// `POST /api/v1/deployments/{id}/update`: deploys the branch's newest commit.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] (404, 409 while busy), and the others.
    pub async fn update(&self, id: &str) -> Result<Accepted, ClientError> {
        self.post(&["api", "v1", "deployments", id, "update"], None::<&()>, "an accepted request").await
    }

    /// `DELETE /api/v1/deployments/{id}`: destroys a deployment.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] (404), and the others.
    pub async fn destroy(&self, id: &str) -> Result<Accepted, ClientError> {
        let response =
            self.send(self.request(reqwest::Method::DELETE, &["api", "v1", "deployments", id])).await?;
        self.read(response, "an accepted request").await
    }

    /// `POST /api/v1/nodes/{id}/drain` (or `undrain` when `drained` is false).
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] (404), and the others.
    pub async fn drain(&self, node: &str, drained: bool) -> Result<Drained, ClientError> {
        let verb = if drained { "drain" } else { "undrain" };
        self.post(&["api", "v1", "nodes", node, verb], None::<&()>, "a drain answer").await
    }

    /// `GET /api/v1/deployments/{id}/logs`: up to `limit` lines from `offset`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] (404, 400 for a bad limit), and the others.
    pub async fn logs(&self, id: &str, offset: u64, limit: usize) -> Result<LogPage, ClientError> {
        let request = self
            .request(reqwest::Method::GET, &["api", "v1", "deployments", id, "logs"])
            .query(&[("offset", offset.to_string()), ("limit", limit.to_string())]);
        let response = self.send(request).await?;
        self.read(response, "a page of log lines").await
    }

    /// `GET /api/v1/deployments/{id}/logs?follow=true`: the lines from
    /// `offset` on, then every new one, until the connection ends.
    ///
    /// # Errors
    ///
    /// The stream cannot be opened; later errors come as stream items.
    pub async fn follow_logs(
        &self,
        id: &str,
        offset: u64,
    ) -> Result<BoxStream<'static, Result<LogLine, ClientError>>, ClientError> {
        let request = self
            .request(reqwest::Method::GET, &["api", "v1", "deployments", id, "logs"])
            .query(&[("follow", "true".to_string()), ("offset", offset.to_string())]);
        let messages = self.stream(request).await?;
        let address = self.address.clone();
        Ok(messages
            .try_filter_map(move |message| {
                let parsed = match message.event.as_str() {
                    "log" => serde_json::from_str::<LogLine>(&message.data).map(Some).map_err(|e| {
                        ClientError::BadAnswer {
                            address: address.clone(),
                            expected: "a log line",
                            reason: e.to_string(),
                        }
                    }),
                    _ => Ok(None),
                };
                async move { parsed }
            })
            .boxed())
    }

    /// `GET /api/v1/events`: every change of deployments, nodes and
    /// replication from now on, until the connection ends.
    ///
    /// # Errors
    ///
    /// The stream cannot be opened; later errors come as stream items.
    pub async fn events(&self) -> Result<BoxStream<'static, Result<ApiEvent, ClientError>>, ClientError> {
        let messages = self.stream(self.request(reqwest::Method::GET, &["api", "v1", "events"])).await?;
        let address = self.address.clone();
        Ok(messages
            .map(move |message| {
                let message = message?;
                decode_event(&message).map_err(|reason| ClientError::BadAnswer {
                    address: address.clone(),
                    expected: "an event",
                    reason,
                })
            })
            .boxed())
    }

    /// `POST /api/v1/join`: asks to join the platform (see [`JoinRequest`]).
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] with the reason (a wrong token, a key
    /// conflict, a platform without a broker), and the others.
    pub async fn join(&self, request: &JoinRequest) -> Result<JoinAnswer, ClientError> {
        self.post(&["api", "v1", "join"], Some(request), "a join answer").await
    }

    /// `GET /api/v1/replica?node=<node>`: the replica stream of a rollover
    /// candidate, which proves itself with `proof` (the client's token must
    /// be the join token).
    ///
    /// # Errors
    ///
    /// The stream cannot be opened; later errors come as stream items.
    pub async fn replica(
        &self,
        node: &str,
        proof: &str,
    ) -> Result<BoxStream<'static, Result<SseMessage, ClientError>>, ClientError> {
        let request = self
            .request(reqwest::Method::GET, &["api", "v1", "replica"])
            .query(&[("node", node)])
            .header(PROOF_HEADER, proof);
        self.stream(request).await
    }

    /// `POST /api/v1/replica/ack`: confirms the version of the replica stored.
    ///
    /// # Errors
    ///
    /// [`ClientError::Refused`] with 404 when the session is gone, and the others.
    pub async fn replica_ack(&self, proof: &str, ack: &ReplicaAck) -> Result<(), ClientError> {
        let request = self
            .request(reqwest::Method::POST, &["api", "v1", "replica", "ack"])
            .header(PROOF_HEADER, proof)
            .json(ack);
        self.send(request).await.map(drop)
    }

    /// Opens a server-sent event stream and splits it into messages.
    async fn stream(
        &self,
        request: RequestBuilder,
    ) -> Result<BoxStream<'static, Result<SseMessage, ClientError>>, ClientError> {
        let response = self.send(request).await?;
        let address = self.address.clone();
        let body = response.bytes_stream().boxed();
        let start = (body, SseDecoder::new(), VecDeque::<SseMessage>::new(), false);
        Ok(futures::stream::unfold(start, move |(mut body, mut decoder, mut ready, ended)| {
            let address = address.clone();
            async move {
                loop {
                    if let Some(message) = ready.pop_front() {
                        return Some((Ok(message), (body, decoder, ready, ended)));
                    }
                    if ended {
                        return None;
                    }
                    match body.next().await {
                        Some(Ok(chunk)) => ready.extend(decoder.push(&chunk)),
                        Some(Err(source)) => {
                            return Some((
                                Err(ClientError::Broken { address, source }),
                                (body, decoder, ready, true),
                            ))
                        }
                        None => return None,
                    }
                }
            }
        })
        .boxed())
    }
}

/// Reads a `/ping` body; the error says what was wrong with it.
pub(crate) fn parse_ping(body: &[u8]) -> Result<PingAnswer, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the `/ping` answer is not JSON".to_string())?;
    match value.get("service").and_then(|s| s.as_str()) {
        Some("kraken") => {}
        Some(other) => return Err(format!("`/ping` says it is the service `{other}`, not `kraken`")),
        None => return Err("the `/ping` answer has no `service` field".to_string()),
    }
    serde_json::from_value(value).map_err(|e| format!("the `/ping` answer lacks a field of Kraken's: {e}"))
}

/// Reads one message of the event stream.
fn decode_event(message: &SseMessage) -> Result<ApiEvent, String> {
    let data = message.data.as_str();
    Ok(match message.event.as_str() {
        "deployment" => {
            ApiEvent::Deployment(Box::new(serde_json::from_str(data).map_err(|e| e.to_string())?))
        }
        "node" => ApiEvent::Node(Box::new(serde_json::from_str(data).map_err(|e| e.to_string())?)),
        "replication" => ApiEvent::Replication(serde_json::from_str(data).map_err(|e| e.to_string())?),
        "lagged" => {
            let value: serde_json::Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
            ApiEvent::Lagged { missed: value["missed"].as_u64().unwrap_or(0) }
        }
        other => ApiEvent::Other { event: other.to_string(), data: message.data.clone() },
    })
}
