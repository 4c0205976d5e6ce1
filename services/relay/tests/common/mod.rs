//! Shared by the relay's tests: raw events in the log, a JetStream
//! consumer that collects CloudEvents, and order checks.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::Context;
use futures::StreamExt;
use roster_events::{Actor, CorrelationId, CustomerId, EventMeta, UserId};
use roster_relay::CloudEvent;
use roster_store::{PendingEvent, Store};
use serde_json::json;

/// `users` users with `per_user` events each (UserAdded, then
/// ProfileUpdated), interleaved round-robin so that per-user order is
/// something to check. No claims: the relay does not look at them.
pub fn raw_events(customer: CustomerId, users: usize, per_user: usize) -> Vec<PendingEvent> {
    let meta = EventMeta {
        customer_id: customer,
        actor: Actor::System("test".into()),
        correlation_id: CorrelationId::new(),
        time: chrono::Utc::now(),
    };
    let metadata: std::sync::Arc<str> = serde_json::to_string(&meta.to_map()).unwrap().into();
    let ids: Vec<UserId> = (0..users).map(|_| UserId::new()).collect();
    let now = chrono::Utc::now().timestamp_micros();
    let mut out = Vec::with_capacity(users * per_user);
    for seq in 1..=per_user {
        for (i, id) in ids.iter().enumerate() {
            let address = format!("u{i}@relay.example");
            let (event_type, payload) = if seq == 1 {
                (
                    "UserAdded",
                    json!({"UserAdded": {"user_id": id, "customer_id": customer, "address": address,
                        "kind": "user", "source": "manual", "profile": {"first_name": "U"}}}),
                )
            } else {
                (
                    "ProfileUpdated",
                    json!({"ProfileUpdated": {"address": address,
                        "profile": {"first_name": format!("U{seq}")}, "changed": ["first_name"]}}),
                )
            };
            out.push(PendingEvent {
                aggregate_type: roster_events::USER_AGGREGATE,
                aggregate_id: id.to_string(),
                sequence: seq as i64,
                event_type: event_type.into(),
                event_version: "1.0".into(),
                payload: payload.to_string(),
                metadata: metadata.clone(),
                customer_id: customer,
                recorded_at: now,
                claims: vec![],
            });
        }
    }
    out
}

/// One raw event of any aggregate (the relay publishes what is stored,
/// without decoding it).
pub fn raw_event(
    customer: CustomerId,
    aggregate_type: &'static str,
    aggregate_id: &str,
    sequence: i64,
    event_type: &str,
    data: serde_json::Value,
) -> PendingEvent {
    let meta = EventMeta {
        customer_id: customer,
        actor: Actor::System("test".into()),
        correlation_id: CorrelationId::new(),
        time: chrono::Utc::now(),
    };
    PendingEvent {
        aggregate_type,
        aggregate_id: aggregate_id.to_string(),
        sequence,
        event_type: event_type.into(),
        event_version: "1.0".into(),
        payload: json!({ event_type: data }).to_string(),
        metadata: serde_json::to_string(&meta.to_map()).unwrap().into(),
        customer_id: customer,
        recorded_at: chrono::Utc::now().timestamp_micros(),
        claims: vec![],
    }
}

/// Appends `events` in chunks (as bulk work does).
pub async fn append(store: &Store, events: Vec<PendingEvent>, chunk: usize) -> i64 {
    let mut last = 0;
    let mut events = events;
    while !events.is_empty() {
        let rest = events.split_off(chunk.min(events.len()));
        last = store.append(events, vec![]).await.expect("append").last;
        events = rest;
    }
    last
}

/// One message as a subscriber sees it.
#[derive(Debug, Clone)]
pub struct Received {
    pub subject: String,
    pub msg_id: Option<String>,
    pub content_type: Option<String>,
    pub stream_sequence: u64,
    pub event: CloudEvent,
}

/// Reads the stream with a new durable pull consumer (one filter subject)
/// until `want` messages arrived, then keeps listening for `grace` so that
/// a duplicate would be seen too. Panics after `timeout` without progress.
pub async fn consume(
    js: &Context,
    stream: &str,
    filter: &str,
    want: usize,
    grace: Duration,
    timeout: Duration,
) -> Vec<Received> {
    // The relay creates the stream; it may not be there yet.
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = loop {
        match js.get_stream(stream).await {
            Ok(s) => break s,
            Err(e) if tokio::time::Instant::now() >= deadline => panic!("no stream {stream}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let name = format!("test-{}", uuid::Uuid::new_v4().simple());
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(name),
            filter_subject: filter.to_string(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut out = Vec::new();
    loop {
        let wait = if out.len() >= want { grace } else { timeout };
        match tokio::time::timeout(wait, messages.next()).await {
            Ok(Some(Ok(m))) => {
                let info = m.info().expect("jetstream message");
                let stream_sequence = info.stream_sequence;
                let header = |k: &str| {
                    m.headers
                        .as_ref()
                        .and_then(|h| h.get(k))
                        .map(|v| v.as_str().to_string())
                };
                let received = Received {
                    subject: m.subject.to_string(),
                    msg_id: header("Nats-Msg-Id"),
                    content_type: header("Content-Type"),
                    stream_sequence,
                    event: serde_json::from_slice(&m.payload).expect("a CloudEvent"),
                };
                m.ack().await.expect("ack");
                out.push(received);
            }
            Ok(Some(Err(e))) => panic!("consumer error: {e}"),
            Ok(None) => break,
            Err(_) if out.len() >= want => break,
            Err(_) => panic!(
                "only {} of {want} messages arrived within {timeout:?}",
                out.len()
            ),
        }
    }
    out
}

/// Each event once, the log's global order, and per aggregate the
/// sequences 1, 2, 3, ... without gap.
pub fn assert_once_in_order(received: &[Received], positions: std::ops::RangeInclusive<i64>) {
    let got: Vec<i64> = received.iter().map(|r| r.event.position).collect();
    let want: Vec<i64> = positions.collect();
    assert_eq!(got.len(), want.len(), "each event exactly once");
    assert_eq!(got, want, "every event, once, in the log's order");
    let mut last: HashMap<(&str, &str), i64> = HashMap::new();
    for r in received {
        let prev = last.insert(
            (&r.event.aggregatetype, &r.event.aggregateid),
            r.event.aggregatesequence,
        );
        assert_eq!(
            r.event.aggregatesequence,
            prev.unwrap_or(0) + 1,
            "per-aggregate order of {}",
            r.event.aggregateid
        );
        assert_eq!(r.msg_id.as_deref(), Some(r.event.id.as_str()));
    }
}

/// Waits until `f` is true, polling; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
