//! The RabbitMQ transport: the bus across machines, through one broker.
//!
//! Every [`Channel`] is a queue of the same name (`kraken.sysinfo`,
//! `kraken.deployment`, `kraken.log`, `kraken.work.<node>`) reached through
//! the default exchange. The work and deployment queues are durable and their
//! messages persistent: losing one would lose work or a status change. The
//! sysinfo and log queues are durable too but bounded (oldest messages dropped
//! first), so a consumer that is gone cannot fill the broker; sysinfo messages
//! also expire, since each heartbeat replaces the last one.
//!
//! Publishing waits for the broker's confirm. Consuming acknowledges by hand:
//! a message is removed only once [`Delivery::ack`] ran, and the broker
//! redelivers what was not acknowledged when a consumer goes away. With a
//! node key ([`AmqpBus::sign_with`]) every message is signed ([`super::wire`]),
//! and received signatures are checked before anything else; payloads that
//! are not an envelope, or whose signature does not verify, are logged and
//! acknowledged (dropped). Several
//! subscriptions to one channel, from one bus or from many, are competing
//! consumers: each message goes to one of them.
//!
//! The bus survives broker restarts: a background task reconnects with a
//! jittered back-off (100 ms doubling to 5 s, for as long as the bus lives),
//! and every subscription re-declares its queue and consumes again, so its
//! stream only pauses. A publish during an outage waits for the connection up
//! to [`AmqpOptions::publish_timeout`]. A message published around a
//! disconnection may arrive twice; the handlers are idempotent.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use crate::retry::Backoff;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Connection, ConnectionProperties, Consumer};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info, warn};

use super::{wire, Acker, Bus, BusError, Channel, Delivery, Envelope, Subscription};
use crate::auth::NodeKey;

/// The first pause before reconnecting; it doubles after each failed attempt.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest pause between two reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the connection's state is checked, besides its error callback.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);
/// How long one attempt to connect may take (TCP, TLS and the AMQP handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the bus uses the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpOptions {
    /// How long a publish waits for the broker while it is unreachable before
    /// it gives up with [`BusError::Unavailable`] (default 30 s).
    pub publish_timeout: Duration,
    /// How many unacknowledged messages the broker sends each consumer ahead
    /// (default 32).
    pub prefetch: u16,
    /// The connection name the broker's management tools show (default `kraken`).
    pub connection_name: String,
    /// The most messages the sysinfo queue keeps; older ones are dropped
    /// (default 1000).
    pub sysinfo_max_length: u32,
    /// How long a sysinfo message stays in its queue (default 30 s).
    pub sysinfo_ttl: Duration,
    /// The most messages the log queue keeps; older ones are dropped
    /// (default 100 000).
    pub log_max_length: u32,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        Self {
            publish_timeout: Duration::from_secs(30),
            prefetch: 32,
            connection_name: "kraken".to_string(),
            sysinfo_max_length: 1000,
            sysinfo_ttl: Duration::from_secs(30),
            log_max_length: 100_000,
        }
    }
}

/// How one channel's queue is declared and its messages sent.
struct QueueSpec {
    name: String,
    arguments: FieldTable,
    properties: BasicProperties,
}

impl AmqpOptions {
    /// The queue behind `channel`. Publishers and consumers declare it alike,
    /// since the broker refuses a declaration whose arguments differ.
    fn queue_spec(&self, channel: &Channel) -> QueueSpec {
        let mut arguments = FieldTable::default();
        let json = BasicProperties::default().with_content_type("application/json".into());
        let properties = match channel {
            Channel::Work(_) | Channel::Deployment => json.with_delivery_mode(2),
            Channel::Log => {
                bounded(&mut arguments, self.log_max_length);
                json.with_delivery_mode(2)
            }
            Channel::Sysinfo => {
                bounded(&mut arguments, self.sysinfo_max_length);
                json.with_delivery_mode(1).with_expiration(self.sysinfo_ttl.as_millis().to_string().into())
            }
        };
        QueueSpec { name: channel.to_string(), arguments, properties }
    }
}

fn bounded(arguments: &mut FieldTable, max_length: u32) {
    let max = i64::from(max_length);
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(max));
    arguments.insert("x-overflow".into(), AMQPValue::LongString("drop-head".into()));
}

/// `url` with its user information hidden, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}***{}", &url[..scheme + 3], &url[at..]),
        _ => url.to_string(),
    }
}

/// One live connection and the channel publishes go through.
struct Link {
    /// Counts connections, so a task can tell a new one from the one that failed it.
    generation: u64,
    connection: Connection,
    /// The confirm-mode channel of publishes, made on first use and again
    /// after the broker closed it.
    publisher: tokio::sync::Mutex<Option<lapin::Channel>>,
    /// The queues declared on this connection. A plain mutex: it guards a set
    /// lookup and is never held across an await.
    declared: Mutex<HashSet<String>>,
}

impl Link {
    fn new(generation: u64, connection: Connection) -> Self {
        Self { generation, connection, publisher: tokio::sync::Mutex::new(None), declared: Mutex::default() }
    }

    fn connected(&self) -> bool {
        self.connection.status().connected()
    }

    async fn publisher(&self) -> Result<lapin::Channel, lapin::Error> {
        let mut slot = self.publisher.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let channel = self.connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        // The declarations made through the old channel still hold on the
        // broker; only a new connection needs them again.
        *slot = Some(channel.clone());
        Ok(channel)
    }

    async fn publish(&self, spec: &QueueSpec, payload: &[u8]) -> Result<Confirmation, lapin::Error> {
        let channel = self.publisher().await?;
        let known = self.declared.lock().unwrap_or_else(|p| p.into_inner()).contains(&spec.name);
        if !known {
            declare(&channel, spec).await?;
            self.declared.lock().unwrap_or_else(|p| p.into_inner()).insert(spec.name.clone());
        }
        channel
            .basic_publish("", &spec.name, BasicPublishOptions::default(), payload, spec.properties.clone())
            .await?
            .await
    }
}

async fn declare(channel: &lapin::Channel, spec: &QueueSpec) -> Result<(), lapin::Error> {
    let options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(&spec.name, options, spec.arguments.clone()).await.map(drop)
}

/// What the bus handles and its background tasks share.
struct Shared {
    /// Where to connect; replaced by `AmqpBus::redirect`.
    uri: std::sync::RwLock<AMQPUri>,
    /// The URL without credentials, for messages.
    shown: std::sync::RwLock<String>,
    options: AmqpOptions,
    /// The current connection; `None` while reconnecting.
    link: watch::Sender<Option<Arc<Link>>>,
    /// Cancelled when the last handle is dropped.
    stop: CancellationToken,
    /// The key messages are signed with; none: they go unsigned.
    signer: std::sync::RwLock<Option<Arc<NodeKey>>>,
}

impl Shared {
    /// The broker as messages show it (no credentials).
    fn shown(&self) -> String {
        self.shown.read().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    fn uri(&self) -> AMQPUri {
        self.uri.read().map(|u| u.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Waits for a connection that is up; `None` once the bus is closed.
    async fn wait_link(&self) -> Option<Arc<Link>> {
        let mut rx = self.link.subscribe();
        tokio::select! {
            _ = self.stop.cancelled() => None,
            found = rx.wait_for(|link| link.as_ref().is_some_and(|l| l.connected())) => {
                found.ok().and_then(|link| link.clone())
            }
        }
    }

    /// Says a connection failed, so the supervisor replaces it without
    /// waiting for its next check.
    fn report_failure(&self, link: &Link, failures: &Notify) {
        if !link.connected() {
            failures.notify_one();
        }
    }

    fn unavailable(&self, what: &str, error: &dyn fmt::Display) -> BusError {
        let mut text = format!("{what} (RabbitMQ at {}): {error}", self.shown());
        if text.contains("ACCESS_REFUSED") || text.contains("ACCESS-REFUSED") {
            text.push_str("; check the user and password in the broker URL");
        } else if text.contains("IO error") {
            text.push_str("; is the broker running and reachable from here?");
        }
        let password = self.uri().authority.userinfo.password;
        if !password.is_empty() {
            text = text.replace(password.as_str(), "***");
        }
        BusError::Unavailable(text)
    }
}

/// State kept alive by the bus handles and the subscriptions.
struct Inner {
    shared: Arc<Shared>,
    failures: Arc<Notify>,
    /// Stops the background tasks when the last owner goes.
    _stop: DropGuard,
}

/// The RabbitMQ bus. Cloning gives another handle to the same connection.
///
/// A subscription keeps the bus alive; the connection closes once every
/// handle and every subscription is dropped.
#[derive(Clone)]
pub struct AmqpBus {
    inner: Arc<Inner>,
}

impl fmt::Debug for AmqpBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpBus").field("broker", &self.inner.shared.shown()).finish_non_exhaustive()
    }
}

impl AmqpBus {
    /// Connects to the broker at `url` (`amqp://user:password@host:port/vhost`,
    /// the vhost `/` spelled `%2f`) and keeps the connection up from then on.
    ///
    /// # Errors
    /// [`BusError::Unavailable`] when the URL is invalid, the broker cannot be
    /// reached or refuses the credentials (the message names the host, never
    /// the password), or when called outside a tokio runtime.
    pub async fn connect(url: &str, options: AmqpOptions) -> Result<AmqpBus, BusError> {
        let uri: AMQPUri = url.parse().map_err(|e: String| {
            BusError::Unavailable(format!(
                "invalid broker URL {}: {e}; expected amqp://user:password@host:port/vhost",
                redact(url)
            ))
        })?;
        let auth = &uri.authority;
        let shown =
            format!("{}:{} (vhost {:?}, user {:?})", auth.host, auth.port, uri.vhost, auth.userinfo.username);
        let (link, _) = watch::channel(None);
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            uri: std::sync::RwLock::new(uri),
            shown: std::sync::RwLock::new(shown),
            options,
            link,
            stop: stop.clone(),
            signer: std::sync::RwLock::new(None),
        });
        let failures = Arc::new(Notify::new());
        let connection =
            open(&shared, &failures).await.map_err(|e| shared.unavailable("could not connect", &e))?;
        info!(broker = %shared.shown(), "connected to RabbitMQ");
        shared.link.send_replace(Some(Arc::new(Link::new(0, connection))));
        tokio::spawn(supervise(shared.clone(), failures.clone()));
        Ok(AmqpBus { inner: Arc::new(Inner { shared, failures, _stop: stop.drop_guard() }) })
    }

    /// Points the bus at another broker (the platform's broker moved): the
    /// current connection is closed and every consumer resumes on the new one.
    ///
    /// # Errors
    /// [`BusError::Unavailable`] when `url` is not an AMQP URL.
    pub async fn redirect(&self, url: &str) -> Result<(), BusError> {
        let uri: AMQPUri = url.parse().map_err(|e: String| {
            BusError::Unavailable(format!("`{}` is not an AMQP URL: {e}", redact(url)))
        })?;
        let shared = &self.inner.shared;
        let auth = &uri.authority;
        let shown =
            format!("{}:{} (vhost {:?}, user {:?})", auth.host, auth.port, uri.vhost, auth.userinfo.username);
        match shared.uri.write() {
            Ok(mut u) => *u = uri,
            Err(p) => *p.into_inner() = uri,
        }
        match shared.shown.write() {
            Ok(mut s) => *s = shown.clone(),
            Err(p) => *p.into_inner() = shown.clone(),
        }
        info!(broker = %shown, "switching to another broker");
        let current = shared.link.borrow().clone();
        if let Some(link) = current {
            let _ = link.connection.close(200, "the platform's broker moved").await;
        }
        self.inner.failures.notify_one();
        Ok(())
    }

    /// Waits until the bus is connected to its broker; false once the bus is closed.
    pub async fn wait_connected(&self) -> bool {
        self.inner.shared.wait_link().await.is_some()
    }

    /// Signs every message published from now on with `key`, so receivers
    /// can tell who sent it.
    pub fn sign_with(&self, key: Arc<NodeKey>) {
        match self.inner.shared.signer.write() {
            Ok(mut g) => *g = Some(key),
            Err(p) => *p.into_inner() = Some(key),
        }
    }

    /// Whether the bus is connected to its broker right now.
    pub fn is_connected(&self) -> bool {
        self.inner.shared.link.borrow().as_ref().is_some_and(|l| l.connected())
    }
}

async fn open(shared: &Shared, failures: &Arc<Notify>) -> Result<Connection, lapin::Error> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
        lapin::Error::IOError(Arc::new(std::io::Error::other(format!(
            "no tokio runtime to run the connection: {e}"
        ))))
    })?;
    let properties = ConnectionProperties::default()
        .with_connection_name(shared.options.connection_name.clone().into())
        .with_executor(tokio_executor_trait::Tokio::default().with_handle(runtime))
        .with_reactor(tokio_reactor_trait::Tokio);
    let connecting = Connection::connect_uri(shared.uri(), properties);
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting).await.map_err(|_| {
        lapin::Error::IOError(Arc::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {CONNECT_TIMEOUT:?}"),
        )))
    })??;
    let failures = failures.clone();
    connection.on_error(move |error| {
        debug!(%error, "RabbitMQ connection failed");
        failures.notify_one();
    });
    Ok(connection)
}

/// Replaces the connection whenever it fails, until the bus is dropped.
async fn supervise(shared: Arc<Shared>, failures: Arc<Notify>) {
    let mut generation = 0;
    loop {
        // Watch the current connection until it fails.
        let current = shared.link.borrow().clone();
        if let Some(link) = current {
            loop {
                tokio::select! {
                    _ = shared.stop.cancelled() => {
                        let _ = link.connection.close(200, "the bus was dropped").await;
                        return;
                    }
                    _ = failures.notified() => {}
                    _ = tokio::time::sleep(LIVENESS_CHECK) => {}
                }
                if !link.connected() {
                    break;
                }
            }
            warn!(broker = %shared.shown(), "lost the RabbitMQ connection; reconnecting");
            shared.link.send_replace(None);
        }
        // Reconnect with back-off.
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        let lost = Instant::now();
        let connection = loop {
            match open(&shared, &failures).await {
                Ok(connection) => break connection,
                Err(error) => {
                    debug!(broker = %shared.shown(), %error, backoff = ?backoff.peek(), "reconnecting to RabbitMQ failed");
                    tokio::select! {
                        _ = shared.stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_jittered()) => {}
                    }
                }
            }
        };
        if shared.stop.is_cancelled() {
            let _ = connection.close(200, "the bus was dropped").await;
            return;
        }
        generation += 1;
        info!(broker = %shared.shown(), after = ?lost.elapsed(), "reconnected to RabbitMQ");
        shared.link.send_replace(Some(Arc::new(Link::new(generation, connection))));
    }
}

#[async_trait::async_trait]
impl Bus for AmqpBus {
    /// Publishes to the channel's queue and waits for the broker's confirm.
    /// While the broker is unreachable, waits for the reconnection up to
    /// [`AmqpOptions::publish_timeout`].
    fn is_connected(&self) -> bool {
        AmqpBus::is_connected(self)
    }

    async fn publish(&self, channel: &Channel, envelope: &Envelope) -> Result<(), BusError> {
        let shared = &self.inner.shared;
        let signer = shared.signer.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone());
        let payload = wire::encode(envelope, signer.as_deref())?;
        let spec = shared.options.queue_spec(channel);
        let deadline = Instant::now() + shared.options.publish_timeout;
        let mut last_error = String::from("no connection");
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        loop {
            let link = match tokio::time::timeout_at(deadline, shared.wait_link()).await {
                Ok(Some(link)) => link,
                Ok(None) => {
                    return Err(BusError::Unavailable(format!("the bus to {} was closed", shared.shown())))
                }
                Err(_) => {
                    return Err(shared.unavailable(
                        &format!(
                            "could not publish to {} within {:?}",
                            spec.name, shared.options.publish_timeout
                        ),
                        &format!("the broker is unreachable (last error: {last_error})"),
                    ))
                }
            };
            let error = match tokio::time::timeout_at(deadline, link.publish(&spec, &payload)).await {
                Ok(Ok(Confirmation::Nack(_))) => {
                    return Err(shared.unavailable(
                        &format!("publishing to {}", spec.name),
                        &"the broker refused the message",
                    ))
                }
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(error @ lapin::Error::ProtocolError(_))) if link.connected() => {
                    // The connection is fine and the broker refused the
                    // operation (e.g. the queue exists with other arguments):
                    // trying again would not help.
                    return Err(shared.unavailable(&format!("publishing to {}", spec.name), &error));
                }
                Ok(Err(error)) => error,
                Err(_) => {
                    return Err(shared.unavailable(
                        &format!("publishing to {}", spec.name),
                        &format!("no confirm within {:?}", shared.options.publish_timeout),
                    ))
                }
            };
            // The connection or the channel failed: try again on the next one.
            debug!(queue = %spec.name, %error, "publish failed; trying again");
            last_error = error.to_string();
            shared.report_failure(&link, &self.inner.failures);
            if tokio::time::timeout_at(deadline, tokio::time::sleep(backoff.next_jittered())).await.is_err() {
                return Err(shared.unavailable(
                    &format!(
                        "could not publish to {} within {:?}",
                        spec.name, shared.options.publish_timeout
                    ),
                    &last_error,
                ));
            }
        }
    }

    /// Consumes the channel's queue. Another subscription to the same channel,
    /// from this bus or another, is allowed: the consumers compete, each
    /// message goes to one of them.
    async fn subscribe(&self, channel: &Channel) -> Result<Subscription, BusError> {
        let shared = self.inner.shared.clone();
        let spec = shared.options.queue_spec(channel);
        let link = match tokio::time::timeout(shared.options.publish_timeout, shared.wait_link()).await {
            Ok(Some(link)) => link,
            Ok(None) => {
                return Err(BusError::Unavailable(format!("the bus to {} was closed", shared.shown())))
            }
            Err(_) => {
                return Err(shared
                    .unavailable(&format!("could not consume {}", spec.name), &"the broker is unreachable"))
            }
        };
        let consumer = start_consumer(&link, &spec, shared.options.prefetch)
            .await
            .map_err(|e| shared.unavailable(&format!("could not consume {}", spec.name), &e))?;
        let (tx, rx) = mpsc::channel(usize::from(shared.options.prefetch.max(1)));
        tokio::spawn(feed(self.inner.clone(), spec, link, consumer, tx));
        Ok(ReceiverStream::new(rx).boxed())
    }
}

async fn start_consumer(link: &Link, spec: &QueueSpec, prefetch: u16) -> Result<Consumer, lapin::Error> {
    let channel = link.connection.create_channel().await?;
    channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
    declare(&channel, spec).await?;
    channel.basic_consume(&spec.name, "", BasicConsumeOptions::default(), FieldTable::default()).await
}

/// Feeds one subscription: passes on its queue's messages and consumes again
/// after every disconnection, until the subscription is dropped or the bus closes.
async fn feed(
    inner: Arc<Inner>,
    spec: QueueSpec,
    mut link: Arc<Link>,
    mut consumer: Consumer,
    tx: mpsc::Sender<Delivery>,
) {
    let shared = &inner.shared;
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        // Pass the messages on until the consumer ends.
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                _ = shared.stop.cancelled() => return,
                next = consumer.next() => next,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => {
                    debug!(queue = %spec.name, %error, "consumer failed");
                    break;
                }
                None => {
                    debug!(queue = %spec.name, "consumer cancelled by the broker");
                    break;
                }
            };
            backoff.reset();
            let (envelope, origin) = match wire::decode(&delivery.data) {
                Ok(decoded) => decoded,
                Err(error) => {
                    warn!(queue = %spec.name, %error, bytes = delivery.data.len(), "dropping a message that is not a valid envelope");
                    if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
                        debug!(queue = %spec.name, %error, "could not acknowledge the dropped message");
                    }
                    continue;
                }
            };
            let acker = delivery.acker;
            let queue = spec.name.clone();
            let ack: Acker = Box::new(move || {
                Box::pin(async move {
                    // A failed ack means the channel is gone: the broker
                    // redelivers the message, and handling it is idempotent.
                    if let Err(error) = acker.ack(BasicAckOptions::default()).await {
                        debug!(%queue, %error, "could not acknowledge a message");
                    }
                })
            });
            if tx.send(Delivery::new(envelope, Some(ack)).with_origin(origin)).await.is_err() {
                return;
            }
        }
        // Consume again, on this connection if it still stands, else on the next one.
        shared.report_failure(&link, &inner.failures);
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                next = shared.wait_link() => next,
            };
            let Some(next) = next else { return };
            match start_consumer(&next, &spec, shared.options.prefetch).await {
                Ok(started) => {
                    debug!(queue = %spec.name, generation = next.generation, "consuming again");
                    link = next;
                    consumer = started;
                    break;
                }
                Err(error) => {
                    debug!(queue = %spec.name, %error, backoff = ?backoff.peek(), "could not consume again");
                    shared.report_failure(&next, &inner.failures);
                    tokio::select! {
                        _ = tx.closed() => return,
                        _ = tokio::time::sleep(backoff.next_jittered()) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_user_information() {
        assert_eq!(redact("amqp://u:secret@host:5672/%2f"), "amqp://***@host:5672/%2f");
        assert_eq!(redact("amqp://host"), "amqp://host");
    }

    #[test]
    fn queues_are_bounded_only_where_loss_is_harmless() {
        let options = AmqpOptions::default();
        let work = options.queue_spec(&Channel::Work("n1".into()));
        assert_eq!(work.name, "kraken.work.n1");
        assert!(work.arguments.inner().is_empty());
        assert_eq!(work.properties.delivery_mode(), &Some(2));
        let sysinfo = options.queue_spec(&Channel::Sysinfo);
        assert_eq!(sysinfo.arguments.inner().get("x-max-length"), Some(&AMQPValue::LongLongInt(1000)));
        assert_eq!(sysinfo.properties.expiration().as_ref().map(|e| e.as_str()), Some("30000"));
        let log = options.queue_spec(&Channel::Log);
        assert_eq!(log.arguments.inner().get("x-max-length"), Some(&AMQPValue::LongLongInt(100_000)));
        assert_eq!(log.properties.delivery_mode(), &Some(2));
    }
}
