//! The in-process transport: channels between the executors of one process.
//!
//! A combined node (orchestrator and worker in one agent) needs no broker: each
//! channel is an unbounded queue with one consumer. Messages published before
//! the consumer subscribes wait in the queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{Bus, BusError, Channel, Delivery, Envelope, Origin, Subscription};

struct Slot {
    tx: mpsc::UnboundedSender<Envelope>,
    rx: Option<mpsc::UnboundedReceiver<Envelope>>,
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
        let slot = map.entry(channel.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            Slot { tx, rx: Some(rx) }
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
        if self.with_slot(channel, |slot| slot.tx.send(envelope.clone()).is_ok()) {
            Ok(())
        } else {
            Err(BusError::Unavailable(format!("channel {channel} is closed")))
        }
    }

    async fn subscribe(&self, channel: &Channel) -> Result<Subscription, BusError> {
        let rx = self
            .with_slot(channel, |slot| slot.rx.take())
            .ok_or_else(|| BusError::AlreadySubscribed(channel.to_string()))?;
        Ok(UnboundedReceiverStream::new(rx)
            .map(|envelope| Delivery::new(envelope, None).with_origin(Origin::InProcess))
            .boxed())
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
