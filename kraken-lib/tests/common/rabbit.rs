//! Helpers for tests against a real RabbitMQ broker: start the local one if
//! it is not running, the URL to reach it, unique node ids (hence queue
//! names), a plain lapin connection to inspect and clean up queues, and
//! waiting on a condition with a deadline.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

/// How long the broker may take to start.
const START_DEADLINE: Duration = Duration::from_secs(90);

/// The broker tests use: env `KRAKEN_TEST_AMQP_URL`, else the local broker as `guest`.
pub fn url() -> String {
    std::env::var("KRAKEN_TEST_AMQP_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

/// Whether the tests use a broker of their own choosing (then it is not
/// started, stopped or restarted here).
pub fn external() -> bool {
    std::env::var("KRAKEN_TEST_AMQP_URL").is_ok_and(|s| !s.is_empty())
}

fn rabbitmqctl(args: &[&str]) -> bool {
    Command::new("rabbitmqctl").args(args).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Starts the local RabbitMQ node unless it runs, and waits until its
/// application is up and accepts connections.
pub fn ensure_broker() {
    if external() {
        return;
    }
    if !rabbitmqctl(&["status"]) {
        // Fails harmlessly when the node already runs with its app stopped.
        let _ = Command::new("rabbitmq-server").arg("-detached").status();
        // A node that runs with the application stopped needs start_app.
        let _ = rabbitmqctl(&["start_app"]);
    }
    wait_app();
}

/// Waits until the broker's application runs and its AMQP port accepts connections.
pub fn wait_app() {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if rabbitmqctl(&["await_startup", "--timeout", "10"])
            && std::net::TcpStream::connect(("127.0.0.1", 5672)).is_ok()
        {
            return;
        }
        assert!(Instant::now() < deadline, "RabbitMQ did not start within {START_DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops the broker's application (the node keeps running); waits until it
/// no longer accepts connections.
pub fn stop_app() {
    assert!(rabbitmqctl(&["stop_app"]), "rabbitmqctl stop_app failed");
    let deadline = Instant::now() + START_DEADLINE;
    while std::net::TcpStream::connect(("127.0.0.1", 5672)).is_ok() {
        assert!(Instant::now() < deadline, "RabbitMQ still listens after stop_app");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the broker's application again and waits until it is up.
pub fn start_app() {
    assert!(rabbitmqctl(&["start_app"]), "rabbitmqctl start_app failed");
    wait_app();
}

/// Closes every client connection the broker has.
pub fn close_all_connections() {
    assert!(rabbitmqctl(&["close_all_connections", "test"]), "rabbitmqctl close_all_connections failed");
}

/// A node id no other test run uses, so `kraken.work.<id>` is a fresh queue.
pub fn unique_node(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("test-{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// A plain lapin connection, beside the bus under test.
pub async fn raw_connection() -> Connection {
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    Connection::connect(&url(), properties).await.expect("plain connection to RabbitMQ")
}

/// How many ready messages `queue` holds (a passive declaration).
pub async fn message_count(queue: &str) -> u32 {
    let connection = raw_connection().await;
    let channel = connection.create_channel().await.expect("channel");
    let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    let count = channel
        .queue_declare(queue, options, FieldTable::default())
        .await
        .expect("passive declare")
        .message_count();
    let _ = connection.close(200, "done").await;
    count
}

/// Deletes the queues a test made.
pub async fn delete_queues(queues: &[String]) {
    let connection = raw_connection().await;
    let channel = connection.create_channel().await.expect("channel");
    for queue in queues {
        channel.queue_delete(queue, QueueDeleteOptions::default()).await.expect("delete queue");
    }
    let _ = connection.close(200, "done").await;
}

/// Polls `check` until it is true; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A virtual host of its own on the local broker (the `guest` user may use
/// it), so a test's `kraken.sysinfo`, `kraken.deployment` and `kraken.log`
/// queues are not shared with any other test; deleted when dropped.
pub struct Vhost {
    name: String,
}

impl Vhost {
    /// Makes a fresh virtual host.
    pub fn new(prefix: &str) -> Self {
        ensure_broker();
        let name = unique_node(prefix);
        assert!(rabbitmqctl(&["add_vhost", &name]), "rabbitmqctl add_vhost {name} failed");
        assert!(
            rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]),
            "rabbitmqctl set_permissions on {name} failed"
        );
        Self { name }
    }

    /// The broker URL of this virtual host.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["delete_vhost", &self.name]);
    }
}
