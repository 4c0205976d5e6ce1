//! Benchmark of the relay (issue 5): throughput from the log to JetStream,
//! and commit-to-consumer latency at a steady 1,000 events a second, on a
//! real nats-server (testkit) and PostgreSQL (and SQLite for throughput).
//!
//!   cargo bench -p roster-relay --bench relay
//!
//! ROSTER_BENCH_RELAY_EVENTS (default 100000) sets the pre-filled log,
//! ROSTER_BENCH_RELAY_SECONDS (default 20) the latency run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures::StreamExt;
use roster_events::CustomerId;
use roster_relay::{CloudEvent, JetStreamBus, JetStreamSettings, Relay, RelayConfig};
use roster_testkit::NatsServer;
use roster_tests::{Backend, TestStore};
use tokio::sync::watch;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn relay_on(store: roster_store::Store, nats: &NatsServer, stream: &str) -> Arc<Relay> {
    let mut settings = JetStreamSettings::new(nats.url());
    settings.stream = stream.into();
    settings.subject_prefix = format!("bench.{}", stream.to_lowercase());
    let bus = JetStreamBus::connect(settings.clone()).await.unwrap();
    let config = RelayConfig::durable(
        format!("relay:jetstream:{stream}"),
        &settings.subject_prefix,
    );
    Arc::new(Relay::new(store, Arc::new(bus), config))
}

/// Pre-fills `n` events, then times the relay from start until every one is acknowledged.
async fn throughput(backend: Backend, n: usize) -> f64 {
    let s = TestStore::new(backend).await;
    let nats = NatsServer::start().await.unwrap();
    let head = common::append(
        &s.store,
        common::raw_events(CustomerId::new(), n / 4, 4),
        5_000,
    )
    .await;
    let relay = relay_on(s.store.clone(), &nats, "THROUGHPUT").await;
    let (tx, rx) = watch::channel(false);
    let mut reached = relay.reached();
    let started = Instant::now();
    tokio::spawn(relay.clone().run(rx));
    reached.wait_for(|p| *p >= head).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    let _ = tx.send(true);
    head as f64 / secs
}

/// Appends one event every millisecond for `seconds`, with the relay and a
/// JetStream pull consumer running, and measures from each commit to its
/// arrival at the consumer.
async fn latency(seconds: u64) -> (usize, f64, Duration, Duration, Duration) {
    let s = TestStore::new(Backend::Postgres).await;
    let nats = NatsServer::start().await.unwrap();
    let relay = relay_on(s.store.clone(), &nats, "LATENCY").await;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(relay.clone().run(rx));
    // The stream exists once the relay has prepared.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = loop {
        match js.get_stream("LATENCY").await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("bench".into()),
            ack_policy: AckPolicy::None,
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .unwrap();
    let committed: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let total = (seconds * 1000) as usize;
    let receiver = {
        let committed = committed.clone();
        tokio::spawn(async move {
            let mut messages = consumer.messages().await.unwrap();
            let mut latencies = Vec::with_capacity(total);
            while latencies.len() < total {
                let m = messages.next().await.unwrap().unwrap();
                let arrived = Instant::now();
                let ce: CloudEvent = serde_json::from_slice(&m.payload).unwrap();
                // The writer records the commit instant right after the commit returns.
                let at = loop {
                    if let Some(t) = committed.lock().unwrap().get(&ce.position).copied() {
                        break t;
                    }
                    tokio::task::yield_now().await;
                };
                latencies.push(arrived.saturating_duration_since(at));
            }
            latencies
        })
    };
    let customer = CustomerId::new();
    let events = common::raw_events(customer, total, 1);
    // 1,000 events a second as 250 appends of 4 events (one append takes
    // about 1.2 ms here, so single-event appends top out near 830 a second;
    // see docs/performance.md). Each event's latency runs from the commit
    // of its append.
    const PER_APPEND: usize = 4;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000 * PER_APPEND as u64));
    let started = Instant::now();
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let chunk: Vec<_> = events.by_ref().take(PER_APPEND).collect();
        tick.tick().await;
        let appended = s.store.append(chunk, vec![]).await.unwrap();
        let at = Instant::now();
        let mut c = committed.lock().unwrap();
        for pos in appended.first..=appended.last {
            c.insert(pos, at);
        }
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let mut latencies = tokio::time::timeout(Duration::from_secs(60), receiver)
        .await
        .expect("every event arrived")
        .unwrap();
    let _ = tx.send(true);
    latencies.sort();
    (
        latencies.len(),
        rate,
        pct(&latencies, 0.5),
        pct(&latencies, 0.99),
        *latencies.last().unwrap(),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("ROSTER_BENCH_RELAY_EVENTS", 100_000);
    let seconds = env_usize("ROSTER_BENCH_RELAY_SECONDS", 20) as u64;
    let pg = throughput(Backend::Postgres, n).await;
    println!("relay throughput, PostgreSQL log -> JetStream: {n} events, {pg:.0} events/s");
    let lite = throughput(Backend::Sqlite, n).await;
    println!("relay throughput, SQLite log -> JetStream: {n} events, {lite:.0} events/s");
    let (count, rate, p50, p99, max) = latency(seconds).await;
    println!(
        "commit-to-consumer latency at {rate:.0} events/s ({count} events, PostgreSQL): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(p50),
        ms(p99),
        ms(max)
    );
    println!();
    println!("| Measure | Figure |");
    println!("|---|---|");
    println!("| Relay throughput, PostgreSQL log ({n} events pre-filled) | {pg:.0} events/s |");
    println!("| Relay throughput, SQLite log ({n} events pre-filled) | {lite:.0} events/s |");
    println!(
        "| Commit-to-consumer latency at {rate:.0} events/s, p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        ms(p50),
        ms(p99),
        ms(max)
    );
}
