//! The in-process bus: the embedded default when `NATS_URL` is not set, so
//! that `roster serve` needs no broker. Subscribers in the same process get
//! every event relayed after they subscribed, in log order; it keeps
//! nothing across restarts (the durable feed is JetStream).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::bus::{Ack, BusError, BusMessage, EventBus, PendingAck};

/// A broadcast channel of relayed events.
#[derive(Clone)]
pub struct InProcessBus {
    tx: broadcast::Sender<Arc<BusMessage>>,
}

impl InProcessBus {
    /// A bus that keeps up to `capacity` messages for slow subscribers; a
    /// subscriber that falls further behind is told how many it missed
    /// (`RecvError::Lagged`).
    pub fn new(capacity: usize) -> Self {
        InProcessBus {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Every message published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusMessage>> {
        self.tx.subscribe()
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new(65_536)
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    fn kind(&self) -> &'static str {
        "in-process"
    }

    async fn prepare(&self) -> Result<Option<i64>, BusError> {
        Ok(None)
    }

    async fn publish(&self, message: BusMessage) -> Result<PendingAck, BusError> {
        // No subscriber is not an error: the event is simply not wanted here.
        let _ = self.tx.send(Arc::new(message));
        Ok(Box::pin(async { Ok(Ack { duplicate: false }) }))
    }

    /// Only while someone subscribes: the embedded default has no
    /// subscriber of its own, so its relay reads nothing.
    fn listening(&self) -> bool {
        self.tx.receiver_count() > 0
    }
}
