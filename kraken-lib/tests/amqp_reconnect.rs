//! The RabbitMQ bus across broker outages: a subscription keeps yielding and
//! publishes succeed after the broker application restarts and after the
//! broker drops every connection; a publish during a long outage gives up
//! after its timeout.
//!
//! This file restarts the shared broker, so it is a test binary of its own
//! (cargo runs test binaries one after another) with one test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/rabbit.rs"]
mod rabbit;

use std::time::{Duration, Instant};

use futures::StreamExt;
use kraken_lib::bus::amqp::{AmqpBus, AmqpOptions};
use kraken_lib::bus::{Body, Bus, BusError, Channel, Delivery, Envelope, Subscription, WorkRequest};

fn cancel(id: &str) -> Envelope {
    Envelope {
        epoch: 3,
        from: "orchestrator".into(),
        body: Body::Work(WorkRequest::Cancel { deployment: id.into() }),
    }
}

/// The next message that is not a redelivery of one in `seen` (unacked
/// messages in flight during an outage come back; that is expected).
async fn next_new(sub: &mut Subscription, seen: &[Envelope], within: Duration) -> Delivery {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let delivery = tokio::time::timeout_at(deadline, sub.next())
            .await
            .expect("a new message within the deadline")
            .expect("the subscription stays open");
        if !seen.contains(&delivery.envelope) {
            return delivery;
        }
        delivery.ack().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_carries_on_after_the_broker_restarts() {
    rabbit::ensure_broker();
    if rabbit::external() {
        eprintln!("KRAKEN_TEST_AMQP_URL is set: the broker is not this test's to restart");
        return;
    }
    let channel = Channel::Work(rabbit::unique_node("restart"));
    let queue = channel.to_string();
    let bus = AmqpBus::connect(&rabbit::url(), AmqpOptions::default()).await.expect("connect");
    let impatient = AmqpBus::connect(
        &rabbit::url(),
        AmqpOptions { publish_timeout: Duration::from_millis(800), ..AmqpOptions::default() },
    )
    .await
    .expect("connect");
    let mut sub = bus.subscribe(&channel).await.expect("subscribe");
    let mut seen = Vec::new();

    bus.publish(&channel, &cancel("before")).await.expect("publish before the restart");
    let delivery = next_new(&mut sub, &seen, Duration::from_secs(10)).await;
    assert_eq!(delivery.envelope, cancel("before"));
    seen.push(delivery.envelope.clone());
    delivery.ack().await;

    // 1. The broker application stops and starts again.
    let stopped = Instant::now();
    tokio::task::spawn_blocking(rabbit::stop_app).await.expect("stop_app");
    eprintln!("stop_app took {:?}", stopped.elapsed());
    rabbit::eventually(Duration::from_secs(10), "the bus noticing the outage", || async {
        !bus.is_connected()
    })
    .await;

    // A publish with a short timeout gives up while the broker is down.
    let started = Instant::now();
    let err = impatient.publish(&channel, &cancel("lost")).await.expect_err("no broker, no confirm");
    assert!(matches!(err, BusError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "waited for its timeout: {:?}",
        started.elapsed()
    );
    eprintln!("publish during the outage: {err}");

    // A publish with the default timeout waits for the broker to return.
    let publisher = bus.clone();
    let waiting = tokio::spawn({
        let channel = channel.clone();
        async move { publisher.publish(&channel, &cancel("during")).await }
    });
    let restart = Instant::now();
    tokio::task::spawn_blocking(rabbit::start_app).await.expect("start_app");
    let app_up = restart.elapsed();
    waiting.await.expect("publish task").expect("the publish made during the outage succeeds");
    let published = restart.elapsed();
    let delivery = next_new(&mut sub, &seen, Duration::from_secs(30)).await;
    let delivered = restart.elapsed();
    assert_eq!(delivery.envelope, cancel("during"));
    seen.push(delivery.envelope.clone());
    delivery.ack().await;
    eprintln!(
        "after start_app: broker up in {app_up:?}, publish confirmed at {published:?}, \
         subscription yielded it at {delivered:?} ({:?} after the broker was up); total outage {:?}",
        delivered - app_up,
        stopped.elapsed()
    );

    bus.publish(&channel, &cancel("after")).await.expect("publish after the restart");
    let delivery = next_new(&mut sub, &seen, Duration::from_secs(10)).await;
    assert_eq!(delivery.envelope, cancel("after"));
    seen.push(delivery.envelope.clone());
    delivery.ack().await;
    // The impatient bus reconnects by itself too (its back-off may be longer
    // than its publish timeout, hence the wait).
    rabbit::eventually(Duration::from_secs(15), "the second bus reconnecting", || async {
        impatient.is_connected()
    })
    .await;
    impatient.publish(&channel, &cancel("impatient")).await.expect("the other bus reconnected");
    let delivery = next_new(&mut sub, &seen, Duration::from_secs(10)).await;
    assert_eq!(delivery.envelope, cancel("impatient"));
    seen.push(delivery.envelope.clone());
    delivery.ack().await;

    // 2. The broker drops every connection.
    let dropped = Instant::now();
    tokio::task::spawn_blocking(rabbit::close_all_connections).await.expect("close connections");
    bus.publish(&channel, &cancel("reconnected")).await.expect("publish after the connections were closed");
    let delivery = next_new(&mut sub, &seen, Duration::from_secs(30)).await;
    assert_eq!(delivery.envelope, cancel("reconnected"));
    delivery.ack().await;
    eprintln!(
        "after close_all_connections: the subscription yielded a new message in {:?}",
        dropped.elapsed()
    );

    drop(sub);
    rabbit::delete_queues(&[queue]).await;
}
