//! The RabbitMQ bus against a real broker: ordering and confirms, manual
//! acknowledgement and redelivery, durable work, undecodable payloads,
//! competing consumers and refused credentials.
//!
//! Each test uses its own `kraken.work.<unique node>` queues and deletes them
//! at the end, so the tests can share one broker and run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/rabbit.rs"]
mod rabbit;

use std::time::{Duration, Instant};

use futures::StreamExt;
use kraken_lib::bus::amqp::{AmqpBus, AmqpOptions};
use kraken_lib::bus::{Body, Bus, BusError, Channel, Envelope, Subscription, WorkRequest};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::BasicProperties;

/// How long a message may take to arrive.
const ARRIVAL: Duration = Duration::from_secs(10);

fn cancel(id: &str) -> Envelope {
    Envelope {
        epoch: 7,
        from: "orchestrator".into(),
        body: Body::Work(WorkRequest::Cancel { deployment: id.into() }),
    }
}

async fn bus() -> AmqpBus {
    rabbit::ensure_broker();
    AmqpBus::connect(&rabbit::url(), AmqpOptions::default()).await.expect("connect to RabbitMQ")
}

async fn next(sub: &mut Subscription) -> kraken_lib::bus::Delivery {
    tokio::time::timeout(ARRIVAL, sub.next())
        .await
        .expect("a message within the deadline")
        .expect("stream open")
}

/// Nothing arrives on `sub` for a while.
async fn quiet(sub: &mut Subscription) -> bool {
    tokio::time::timeout(Duration::from_millis(700), sub.next()).await.is_err()
}

#[tokio::test]
async fn published_messages_arrive_in_order_and_acked_ones_are_not_redelivered() {
    let node = rabbit::unique_node("order");
    let channel = Channel::Work(node.clone());
    let queue = channel.to_string();
    let publisher = bus().await;

    // Publish 200 messages, each waiting for its confirm, timing them.
    let mut latencies = Vec::new();
    for i in 0..200 {
        let started = Instant::now();
        publisher.publish(&channel, &cancel(&format!("d{i}"))).await.expect("publish");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    eprintln!(
        "publish with confirm: median {:?}, p90 {:?}, max {:?} over {} messages",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 9 / 10],
        latencies[latencies.len() - 1],
        latencies.len()
    );
    assert_eq!(rabbit::message_count(&queue).await, 200, "every confirmed message is in the queue");

    let consumer = bus().await;
    let mut sub = consumer.subscribe(&channel).await.expect("subscribe");
    for i in 0..200 {
        let delivery = next(&mut sub).await;
        assert_eq!(delivery.envelope, cancel(&format!("d{i}")));
        delivery.ack().await;
    }
    assert!(quiet(&mut sub).await, "nothing beyond the 200 messages arrives");
    drop(sub);
    drop(consumer);

    // Acked messages are gone: a new consumer gets nothing, the queue is empty.
    rabbit::eventually(ARRIVAL, "the queue empties", || async { rabbit::message_count(&queue).await == 0 })
        .await;
    let again = bus().await;
    let mut sub = again.subscribe(&channel).await.expect("subscribe again");
    assert!(quiet(&mut sub).await, "acknowledged messages are not redelivered");
    drop(sub);
    rabbit::delete_queues(&[queue]).await;
}

#[tokio::test]
async fn an_unacked_message_is_redelivered_to_the_next_subscriber() {
    let channel = Channel::Work(rabbit::unique_node("unacked"));
    let queue = channel.to_string();
    let publisher = bus().await;
    publisher.publish(&channel, &cancel("first")).await.expect("publish");
    publisher.publish(&channel, &cancel("second")).await.expect("publish");

    let consumer = bus().await;
    let mut sub = consumer.subscribe(&channel).await.expect("subscribe");
    let first = next(&mut sub).await;
    assert_eq!(first.envelope, cancel("first"));
    first.ack().await;
    let second = next(&mut sub).await;
    assert_eq!(second.envelope, cancel("second"));
    // Not acknowledged: the consumer goes away with it.
    drop(second);
    drop(sub);
    drop(consumer);

    let consumer = bus().await;
    let mut sub = consumer.subscribe(&channel).await.expect("subscribe");
    let again = next(&mut sub).await;
    assert_eq!(
        again.envelope,
        cancel("second"),
        "the unacknowledged message comes back, the acknowledged one does not"
    );
    again.ack().await;
    assert!(quiet(&mut sub).await);
    drop(sub);
    rabbit::delete_queues(&[queue]).await;
}

#[tokio::test]
async fn work_published_without_a_consumer_survives_the_publisher() {
    let channel = Channel::Work(rabbit::unique_node("durable"));
    let queue = channel.to_string();
    let publisher = bus().await;
    publisher.publish(&channel, &cancel("kept")).await.expect("publish");
    drop(publisher);

    let consumer = bus().await;
    let mut sub = consumer.subscribe(&channel).await.expect("subscribe");
    let delivery = next(&mut sub).await;
    assert_eq!(delivery.envelope, cancel("kept"));
    delivery.ack().await;
    drop(sub);
    rabbit::delete_queues(&[queue]).await;
}

#[tokio::test]
async fn undecodable_payloads_are_dropped_and_acknowledged() {
    let channel = Channel::Work(rabbit::unique_node("garbage"));
    let queue = channel.to_string();
    let bus = bus().await;
    // Declare the queue as the bus does, then slip garbage in with plain lapin.
    bus.publish(&channel, &cancel("before")).await.expect("publish");
    let connection = rabbit::raw_connection().await;
    let raw = connection.create_channel().await.expect("channel");
    // Confirms, so the garbage is in the queue before the next valid message.
    raw.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm mode");
    for garbage in [&b"\x00\xffnot json at all"[..], b"{\"epoch\": \"seven\"}", b""] {
        raw.basic_publish("", &queue, BasicPublishOptions::default(), garbage, BasicProperties::default())
            .await
            .expect("publish garbage")
            .await
            .expect("garbage confirm");
    }
    bus.publish(&channel, &cancel("after")).await.expect("publish");

    let mut sub = bus.subscribe(&channel).await.expect("subscribe");
    let before = next(&mut sub).await;
    assert_eq!(before.envelope, cancel("before"));
    before.ack().await;
    let after = next(&mut sub).await;
    assert_eq!(after.envelope, cancel("after"), "the garbage in between is skipped");
    after.ack().await;
    assert!(quiet(&mut sub).await);
    drop(sub);
    rabbit::eventually(ARRIVAL, "the queue empties", || async { rabbit::message_count(&queue).await == 0 })
        .await;
    let _ = connection.close(200, "done").await;
    rabbit::delete_queues(&[queue]).await;
}

#[tokio::test]
async fn two_subscriptions_to_one_channel_share_its_messages() {
    let channel = Channel::Work(rabbit::unique_node("compete"));
    let queue = channel.to_string();
    let bus = bus().await;
    let mut a = bus.subscribe(&channel).await.expect("first subscription");
    let mut b = bus.subscribe(&channel).await.expect("second subscription");
    for i in 0..20 {
        bus.publish(&channel, &cancel(&format!("m{i}"))).await.expect("publish");
    }
    let mut seen = Vec::new();
    let mut from_a = 0;
    let mut from_b = 0;
    while seen.len() < 20 {
        tokio::select! {
            Some(d) = a.next() => { from_a += 1; seen.push(d.envelope.clone()); d.ack().await; }
            Some(d) = b.next() => { from_b += 1; seen.push(d.envelope.clone()); d.ack().await; }
            _ = tokio::time::sleep(ARRIVAL) => panic!("only {} of 20 messages arrived", seen.len()),
        }
    }
    let mut ids: Vec<String> = seen
        .iter()
        .map(|e| match &e.body {
            Body::Work(w) => w.deployment().to_string(),
            other => panic!("unexpected body {other:?}"),
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "each message arrives once");
    assert!(from_a > 0 && from_b > 0, "both consumers got messages (a: {from_a}, b: {from_b})");
    drop((a, b));
    rabbit::delete_queues(&[queue]).await;
}

#[tokio::test]
async fn bounded_channels_publish_and_deliver() {
    // The sysinfo and log queues are shared by the platform; this only checks
    // that their declarations (with bounds and expiry) are accepted and that
    // a message goes through, consuming until its own one shows up.
    let bus = bus().await;
    for channel in [Channel::Sysinfo, Channel::Log] {
        let marker = rabbit::unique_node("bounded");
        let mut sub = bus.subscribe(&channel).await.expect("subscribe");
        bus.publish(&channel, &cancel(&marker)).await.expect("publish");
        let deadline = Instant::now() + ARRIVAL;
        loop {
            assert!(Instant::now() < deadline, "the message on {channel} did not arrive");
            let delivery = next(&mut sub).await;
            let mine = delivery.envelope == cancel(&marker);
            delivery.ack().await;
            if mine {
                break;
            }
        }
    }
    rabbit::delete_queues(&[Channel::Sysinfo.to_string(), Channel::Log.to_string()]).await;
}

#[tokio::test]
async fn refused_credentials_are_unavailable_without_the_password() {
    rabbit::ensure_broker();
    let password = "wrong-pa55word-xyz";
    let url = format!("amqp://nobody:{password}@127.0.0.1:5672/%2f");
    let err = AmqpBus::connect(&url, AmqpOptions::default()).await.expect_err("refused");
    let BusError::Unavailable(message) = &err else { panic!("expected Unavailable, got {err:?}") };
    assert!(message.contains("127.0.0.1:5672"), "names the host: {message}");
    assert!(!message.contains(password), "hides the password: {message}");
    eprintln!("refused credentials: {err}");

    // An unreachable port and an invalid URL fail the same way.
    let err = AmqpBus::connect(&format!("amqp://u:{password}@127.0.0.1:1/%2f"), AmqpOptions::default())
        .await
        .expect_err("unreachable");
    let message = err.to_string();
    assert!(matches!(err, BusError::Unavailable(_)) && message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains(password), "{message}");
    let err = AmqpBus::connect(&format!("amqp://u:{password}@127.0.0.1:notaport/"), AmqpOptions::default())
        .await
        .expect_err("invalid");
    let message = err.to_string();
    assert!(matches!(err, BusError::Unavailable(_)) && message.contains("127.0.0.1"), "{message}");
    assert!(!message.contains(password), "{message}");
}
