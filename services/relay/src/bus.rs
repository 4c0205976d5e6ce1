//! The capability the relay publishes through: a small trait with a NATS
//! JetStream implementation and an in-process one.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;

/// One event, ready for the bus: a structured-mode CloudEvent.
#[derive(Debug, Clone, PartialEq)]
pub struct BusMessage {
    /// `<prefix>.<customer>.<EventType>`.
    pub subject: String,
    /// `<aggregate_type>:<aggregate_id>:<sequence>`: the CloudEvent id and JetStream's `Nats-Msg-Id`.
    pub msg_id: String,
    /// The event's position in the log's global order.
    pub position: i64,
    /// The event's type name (`UserAdded`), for metrics.
    pub event_type: String,
    /// When the event was committed (microseconds since the epoch).
    pub recorded_at: i64,
    /// The CloudEvent in the JSON event format.
    pub payload: Bytes,
}

/// What the bus said about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The bus already held this message (JetStream de-duplication).
    pub duplicate: bool,
}

/// Resolves when the bus has acknowledged (stored) one message.
pub type PendingAck = Pin<Box<dyn Future<Output = Result<Ack, BusError>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Not reachable now (connection lost, timeout): retried with backoff.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The bus refused a message (for JetStream: the stream's last sequence
    /// is not what this relay expected, so another publisher got there
    /// first or a message went missing). The relay re-reads the stream's
    /// tail and goes on from there.
    #[error("bus refused the message: {0}")]
    Rejected(String),
    /// The bus acknowledged a message as a duplicate, but what it holds under
    /// that id is not this event (or cannot be read back to check): the
    /// event was NOT published. The relay stops publishing (never moving its
    /// checkpoint past the event), logs an error and raises
    /// `roster_relay_halted` until an operator resolves it.
    #[error("duplicate acknowledgement for a different event: {0}")]
    Mismatch(String),
    /// A setting is wrong (bad URL, stream that does not take our subjects):
    /// retrying does not help.
    #[error("bus configuration: {0}")]
    Config(String),
}

/// Where the relay publishes events.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// `jetstream` or `in-process`, for logs and metrics.
    fn kind(&self) -> &'static str;

    /// Makes the bus ready to publish (connection, stream), and says up to
    /// which log position it already holds every event, when it can tell
    /// (the stream's last message). Called at the start of every relay
    /// session, so also after each failure.
    async fn prepare(&self) -> Result<Option<i64>, BusError>;

    /// Sends one message. Messages are stored in the order of the calls;
    /// the returned future resolves once the bus has acknowledged it.
    async fn publish(&self, message: BusMessage) -> Result<PendingAck, BusError>;

    /// Whether anyone receives what is published now. A bus that keeps
    /// messages (JetStream) always does; a live feed without a subscriber
    /// does not, and the relay then leaves the log unread up to its head
    /// instead of reading and wrapping every event for no one.
    fn listening(&self) -> bool {
        true
    }
}
