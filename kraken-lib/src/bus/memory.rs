//! The in-process transport: channels between the executors of one process.
//!
//! A combined node (orchestrator and worker in one agent) needs no broker.
//! Each channel is a queue with one consumer; messages published before the
//! consumer subscribes wait in the queue. The log channel holds at most
//! [`LOG_QUEUE`] batches: a publisher waits while it is full, so a flood of
//! log lines slows its sender (whose own queue then drops and counts lines,
//! see [`crate::log_sink`]) rather than growing without end. The other
//! channels carry a few messages per deployment and heartbeat and are not
//! bounded, so no publisher ever waits on them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};

use super::{Bus, BusError, Channel, Delivery, Envelope, Origin, Subscription};

/// How many log batches the in-process log channel holds.
pub const LOG_QUEUE: usize = 8;

#[derive(Clone)]
enum Sender {
    Bounded(mpsc::Sender<Envelope>),
    Unbounded(mpsc::UnboundedSender<Envelope>),
}

enum Receiver {
    Bounded(mpsc::Receiver<Envelope>),
    Unbounded(mpsc::UnboundedReceiver<Envelope>),
}

struct Slot {
    tx: Sender,
    rx: Option<Receiver>,
}

/// The in-process bus. Cloning gives another handle to the same channels.
#[derive(Clone, Default)]
pub struct MemoryBus {
    // A plain mutex: it guards a map lookup and is never held across an await.
    channels: Arc<Mutex<HashMap<Channel, Slot>>>,
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_slot<R>(&self, channel: &Channel, f: impl FnOnce(&mut Slot) -> R) -> R {
        let mut map = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = map.entry(channel.clone()).or_insert_with(|| match channel {
            Channel::Log => {
                let (tx, rx) = mpsc::channel(LOG_QUEUE);
                Slot { tx: Sender::Bounded(tx), rx: Some(Receiver::Bounded(rx)) }
            }
            _ => {
                let (tx, rx) = mpsc::unbounded_channel();
                Slot { tx: Sender::Unbounded(tx), rx: Some(Receiver::Unbounded(rx)) }
            }
        });
        f(slot)
    }
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, channel: &Channel, envelope: &Envelope) -> Result<(), BusError> {
        let sent = match self.with_slot(channel, |slot| slot.tx.clone()) {
            Sender::Bounded(tx) => tx.send(envelope.clone()).await.is_ok(),
            Sender::Unbounded(tx) => tx.send(envelope.clone()).is_ok(),
        };
        if sent {
            Ok(())
        } else {
            Err(BusError::Unavailable(format!("channel {channel} is closed")))
        }
    }

    async fn subscribe(&self, channel: &Channel) -> Result<Subscription, BusError> {
        let rx = self
            .with_slot(channel, |slot| slot.rx.take())
            .ok_or_else(|| BusError::AlreadySubscribed(channel.to_string()))?;
        let deliver = |envelope| Delivery::new(envelope, None).with_origin(Origin::InProcess);
        Ok(match rx {
            Receiver::Bounded(rx) => ReceiverStream::new(rx).map(deliver).boxed(),
            Receiver::Unbounded(rx) => UnboundedReceiverStream::new(rx).map(deliver).boxed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{Body, WorkRequest};

    fn cancel(id: &str) -> Envelope {
        Envelope {
            epoch: 1,
            from: "n1".into(),
            body: Body::Work(WorkRequest::Cancel { deployment: id.into() }),
        }
    }

    #[tokio::test]
    async fn messages_published_before_subscribing_are_delivered_in_order() {
        let bus = MemoryBus::new();
        let ch = Channel::Work("n1".into());
        bus.publish(&ch, &cancel("a")).await.expect("publish");
        bus.publish(&ch, &cancel("b")).await.expect("publish");
        let mut sub = bus.subscribe(&ch).await.expect("subscribe");
        let first = sub.next().await.expect("first");
        let second = sub.next().await.expect("second");
        assert_eq!(first.envelope, cancel("a"));
        assert_eq!(second.envelope, cancel("b"));
        first.ack().await;
    }

    #[tokio::test]
    async fn a_full_log_channel_makes_its_publisher_wait() {
        let bus = MemoryBus::new();
        let batch = Envelope {
            epoch: 1,
            from: "n1".into(),
            body: Body::Log(crate::bus::LogBatch {
                deployment: "d".into(),
                generation: 1,
                lines: Vec::new(),
            }),
        };
        for _ in 0..LOG_QUEUE {
            bus.publish(&Channel::Log, &batch).await.expect("room");
        }
        let full =
            tokio::time::timeout(std::time::Duration::from_millis(200), bus.publish(&Channel::Log, &batch));
        assert!(full.await.is_err(), "the publisher waits while the queue is full");
        let mut sub = bus.subscribe(&Channel::Log).await.expect("subscribe");
        sub.next().await.expect("a batch");
        bus.publish(&Channel::Log, &batch).await.expect("room again");
    }

    #[tokio::test]
    async fn a_channel_has_one_consumer_and_channels_are_separate() {
        let bus = MemoryBus::new();
        let _sub = bus.subscribe(&Channel::Log).await.expect("subscribe");
        assert!(matches!(bus.subscribe(&Channel::Log).await, Err(BusError::AlreadySubscribed(_))));
        let mut other = bus.subscribe(&Channel::Work("n2".into())).await.expect("subscribe");
        bus.publish(&Channel::Work("n1".into()), &cancel("x")).await.expect("publish");
        bus.publish(&Channel::Work("n2".into()), &cancel("y")).await.expect("publish");
        assert_eq!(other.next().await.map(|d| d.envelope), Some(cancel("y")));
    }
}
