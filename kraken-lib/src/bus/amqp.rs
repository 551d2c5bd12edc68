//! RabbitMQ transport (placeholder).
use super::{Bus, BusError, Channel, Envelope, Subscription};
/// Options.
#[derive(Debug, Clone, Default)]
pub struct AmqpOptions {}
/// The bus.
#[derive(Clone, Debug)]
pub struct AmqpBus {}
impl AmqpBus {
    /// Connects.
    ///
    /// # Errors
    /// Always, for now.
    pub async fn connect(url: &str, options: AmqpOptions) -> Result<AmqpBus, BusError> {
        let _ = (url, options);
        Err(BusError::Unavailable("not yet".into()))
    }
}
#[async_trait::async_trait]
impl Bus for AmqpBus {
    async fn publish(&self, channel: &Channel, envelope: &Envelope) -> Result<(), BusError> {
        let _ = (channel, envelope);
        Err(BusError::Unavailable("not yet".into()))
    }
    async fn subscribe(&self, channel: &Channel) -> Result<Subscription, BusError> {
        let _ = channel;
        Err(BusError::Unavailable("not yet".into()))
    }
}
