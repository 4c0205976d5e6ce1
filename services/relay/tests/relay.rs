//! The relay as a library against a real nats-server (>= 2.10, from the
//! testkit) and both storage back-ends (E5).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use roster_events::CustomerId;
use roster_relay::*;
use roster_testkit::NatsServer;
use roster_tests::{both_backends, TestStore};
use serde_json::json;
use tokio::sync::watch;

const LONG: Duration = Duration::from_secs(60);

fn settings(nats: &NatsServer, stream: &str) -> JetStreamSettings {
    let mut s = JetStreamSettings::new(nats.url());
    s.stream = stream.into();
    s.subject_prefix = format!("t.{}", stream.to_lowercase());
    s.duplicate_window = Duration::from_secs(30);
    s
}

async fn start(relay: Relay) -> (Arc<Relay>, watch::Sender<bool>) {
    let relay = Arc::new(relay);
    let (tx, rx) = watch::channel(false);
    tokio::spawn(relay.clone().run(rx));
    (relay, tx)
}

async fn wait_reached(relay: &Relay, position: i64) {
    let mut rx = relay.reached();
    tokio::time::timeout(LONG, rx.wait_for(|p| *p >= position))
        .await
        .expect("relay caught up in time")
        .expect("relay alive");
}

async fn e5_relay_creates_the_stream_and_publishes_every_event_once_in_order(s: TestStore) {
    let nats = NatsServer::start().await.unwrap();
    let settings = settings(&nats, "CREATE");
    let customer = CustomerId::new();
    let head = append(&s.store, raw_events(customer, 40, 5), 70).await;
    let bus = JetStreamBus::connect(settings.clone()).await.unwrap();
    let js = bus.context().clone();
    let config = RelayConfig::durable("relay:jetstream:CREATE", &settings.subject_prefix);
    let (relay, stop) = start(Relay::new(s.store.clone(), Arc::new(bus), config)).await;
    wait_reached(&relay, head).await;
    assert_eq!(relay.checkpoint().await.unwrap(), head, "checkpoint stored");

    // The stream and its duplicate window were created by the relay.
    let mut stream = js.get_stream("CREATE").await.unwrap();
    let info = stream.info().await.unwrap().clone();
    assert_eq!(info.config.duplicate_window, Duration::from_secs(30));
    assert_eq!(info.config.subjects, vec!["t.create.>".to_string()]);
    assert_eq!(info.state.messages, head as u64);

    let got = consume(
        &js,
        "CREATE",
        "t.create.>",
        head as usize,
        Duration::from_millis(500),
        LONG,
    )
    .await;
    assert_once_in_order(&got, 1..=head);
    let first = &got[0];
    assert_eq!(first.subject, format!("t.create.{customer}.UserAdded"));
    assert_eq!(
        first.content_type.as_deref(),
        Some("application/cloudevents+json; charset=utf-8")
    );
    assert_eq!(first.event.specversion, "1.0");
    assert_eq!(first.event.event_type, "com.roster.UserAdded.v1");
    assert_eq!(first.event.dataschema, "urn:roster:schema:UserAdded:v1");
    assert_eq!(first.event.source, format!("roster/customers/{customer}"));
    assert_eq!(first.event.subject.as_deref(), Some("u0@relay.example"));
    assert_eq!(first.event.actor.as_deref(), Some("system:test"));
    assert!(first.event.correlationid.is_some());
    assert_eq!(first.event.data["address"], "u0@relay.example");

    // JetStream drops a republished event within the duplicate window.
    let again = js
        .send_publish(
            first.subject.clone(),
            async_nats::jetstream::message::PublishMessage::build()
                .payload("{}".into())
                .message_id(first.event.id.as_str()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(again.duplicate, "same Nats-Msg-Id is a duplicate");

    // More events later: published as they come, still in order.
    let more = append(&s.store, raw_events(customer, 3, 2), 10).await;
    wait_reached(&relay, more).await;
    let _ = stop.send(true);
}

/// The next `n` messages of an in-process bus, each within [`LONG`].
async fn receive(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<BusMessage>>,
    n: usize,
) -> Vec<Arc<BusMessage>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(
            tokio::time::timeout(LONG, rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    out
}

async fn e5_in_process_bus_delivers_every_later_event_in_log_order(s: TestStore) {
    let customer = CustomerId::new();
    let before = append(&s.store, raw_events(customer, 5, 1), 10).await;
    let bus = InProcessBus::new(1024);
    let mut rx = bus.subscribe();
    let (relay, stop) = start(Relay::new(
        s.store.clone(),
        Arc::new(bus.clone()),
        RelayConfig::live("roster.events"),
    ))
    .await;
    // It starts at the head: what was there before is not replayed.
    wait_reached(&relay, before).await;
    let head = append(&s.store, raw_events(customer, 7, 3), 5).await;
    let mut positions = Vec::new();
    for m in receive(&mut rx, (head - before) as usize).await {
        let ce: CloudEvent = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(ce.position, m.position);
        assert!(m.subject.starts_with(&format!("roster.events.{customer}.")));
        positions.push(ce.position);
    }
    assert_eq!(positions, (before + 1..=head).collect::<Vec<_>>());
    let _ = stop.send(true);
}

/// A customer's Customer, Directory and DirectoryObjects aggregates share
/// the customer's id: their first events, committed within the duplicate
/// window, must all arrive (issue 9: the later two were dropped as
/// duplicates of `<customer>:1`).
async fn e5_customer_directory_and_objects_events_of_one_customer_all_arrive(s: TestStore) {
    let nats = NatsServer::start().await.unwrap();
    let settings = settings(&nats, "SHARED");
    let customer = CustomerId::new();
    let id = customer.to_string();
    let events = vec![
        raw_event(
            customer,
            roster_events::CUSTOMER_AGGREGATE,
            &id,
            1,
            "CustomerCreated",
            json!({"partner_id": uuid::Uuid::new_v4(), "name": "Acme", "seat_limit": 10}),
        ),
        raw_event(
            customer,
            roster_events::DIRECTORY_AGGREGATE,
            &id,
            1,
            "DirectoryConfigured",
            json!({}),
        ),
        raw_event(
            customer,
            roster_events::DIRECTORY_OBJECTS_AGGREGATE,
            &id,
            1,
            "DirectoryObjectsChanged",
            json!({}),
        ),
        raw_event(
            customer,
            roster_events::CUSTOMER_AGGREGATE,
            &id,
            2,
            "SeatLimitChanged",
            json!({"seat_limit": 20}),
        ),
    ];
    // One event per transaction, as the API commits them.
    let head = append(&s.store, events, 1).await;
    let bus = JetStreamBus::connect(settings.clone()).await.unwrap();
    let js = bus.context().clone();
    let config = RelayConfig::durable("relay:jetstream:SHARED", &settings.subject_prefix);
    let (relay, stop) = start(Relay::new(s.store.clone(), Arc::new(bus), config)).await;
    wait_reached(&relay, head).await;
    let got = consume(
        &js,
        "SHARED",
        "t.shared.>",
        head as usize,
        Duration::from_millis(500),
        LONG,
    )
    .await;
    assert_once_in_order(&got, 1..=head);
    let ids: Vec<&str> = got.iter().map(|r| r.event.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            format!("Customer:{id}:1"),
            format!("Directory:{id}:1"),
            format!("DirectoryObjects:{id}:1"),
            format!("Customer:{id}:2"),
        ]
    );
    let mut stream = js.get_stream("SHARED").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, head as u64);
    assert_eq!(*relay.halted().borrow(), None);
    let _ = stop.send(true);
}

/// Every aggregate type, ids shared between them, 10,000 events: every
/// CloudEvent id (and `Nats-Msg-Id`) is distinct.
async fn e5_every_event_id_of_a_mixed_10000_event_log_is_unique(s: TestStore) {
    let customers: Vec<CustomerId> = (0..10).map(|_| CustomerId::new()).collect();
    let types = [
        (roster_events::CUSTOMER_AGGREGATE, "SeatLimitChanged"),
        (roster_events::DIRECTORY_AGGREGATE, "DirectoryConfigured"),
        (
            roster_events::DIRECTORY_OBJECTS_AGGREGATE,
            "DirectoryObjectsChanged",
        ),
        (roster_events::IMPORT_AGGREGATE, "ImportStarted"),
        (roster_events::SYNC_REPORT_AGGREGATE, "SyncReported"),
    ];
    let mut events = Vec::new();
    // 10 customers x 5 aggregate types sharing the customer's id x 100 sequences.
    for seq in 1..=100 {
        for c in &customers {
            for (aggregate, event_type) in types {
                events.push(raw_event(
                    *c,
                    aggregate,
                    &c.to_string(),
                    seq,
                    event_type,
                    json!({}),
                ));
            }
        }
    }
    // And 5,000 user events of 10 customers.
    for c in &customers {
        events.extend(raw_events(*c, 100, 5));
    }
    assert_eq!(events.len(), 10_000);
    let head = append(&s.store, events, 2_500).await;
    assert_eq!(head, 10_000);
    let upcasters = roster_events::upcasters();
    let mut ids = std::collections::HashSet::new();
    let mut after = 0;
    loop {
        let batch = s.store.read_from(after, 5_000).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        for e in batch {
            let m = roster_relay::envelope::bus_message(e, &upcasters, "p");
            let ce: CloudEvent = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(ce.id, m.msg_id, "the CloudEvent id is the Nats-Msg-Id");
            ids.insert(m.msg_id);
        }
    }
    assert_eq!(ids.len(), 10_000, "10,000 events, 10,000 distinct ids");
}

/// A duplicate acknowledgement for a message that is not this event (an
/// impostor under the same `Nats-Msg-Id`): the relay stops before it,
/// loudly, and does not move its checkpoint past it.
async fn e5_a_duplicate_ack_for_another_event_halts_the_relay_before_it(s: TestStore) {
    let nats = NatsServer::start().await.unwrap();
    let settings = settings(&nats, "IMPOSTOR");
    let customer = CustomerId::new();
    let head = append(&s.store, raw_events(customer, 3, 1), 10).await;
    let first = s.store.read_from(0, 1).await.unwrap().remove(0);
    let bus = JetStreamBus::connect(settings.clone()).await.unwrap();
    let js = bus.context().clone();
    bus.ensure_stream().await.unwrap();
    let impostor = js
        .send_publish(
            format!("{}.{customer}.UserAdded", settings.subject_prefix),
            async_nats::jetstream::message::PublishMessage::build()
                .payload("{\"not\": \"this event\"}".into())
                .message_id(format!("User:{}:1", first.aggregate_id).as_str()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(!impostor.duplicate);
    let mut config = RelayConfig::durable("relay:jetstream:IMPOSTOR", &settings.subject_prefix);
    config.backoff_min = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(200);
    let (relay, stop) = start(Relay::new(s.store.clone(), Arc::new(bus), config)).await;
    let mut halted = relay.halted();
    let why = tokio::time::timeout(LONG, halted.wait_for(|h| h.is_some()))
        .await
        .expect("the relay halts")
        .unwrap()
        .clone()
        .unwrap();
    assert!(why.contains("position 1"), "{why}");
    assert_eq!(relay.checkpoint().await.unwrap(), 0, "never moved past it");
    assert_eq!(*relay.reached().borrow(), 0);
    let mut stream = js.get_stream("IMPOSTOR").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        1,
        "nothing published after it"
    );
    assert!(head > 1);
    let _ = stop.send(true);
}

/// Issue 17 (E5): while nobody listens to a live feed (the embedded
/// in-process bus has no subscriber of its own), the relay moves to the
/// log's head without reading or publishing anything; once someone
/// listens, every event appended after that is published, once, in order.
async fn e5_a_feed_nobody_listens_to_is_not_read_and_a_listener_gets_every_later_event(
    s: TestStore,
) {
    let customer = CustomerId::new();
    let bus = Arc::new(RecordingBus::default());
    bus.deaf.store(true, Ordering::SeqCst);
    let (relay, stop) = start(Relay::new(
        s.store.clone(),
        bus.clone(),
        RelayConfig::live("roster.events"),
    ))
    .await;
    let unheard = append(&s.store, raw_events(customer, 20, 3), 7).await;
    wait_reached(&relay, unheard).await;
    assert!(
        bus.positions.lock().unwrap().is_empty(),
        "nothing is published while nobody listens"
    );
    bus.deaf.store(false, Ordering::SeqCst);
    let heard = append(&s.store, raw_events(customer, 4, 2), 3).await;
    wait_reached(&relay, heard).await;
    assert_eq!(
        *bus.positions.lock().unwrap(),
        (unheard + 1..=heard).collect::<Vec<_>>()
    );
    let _ = stop.send(true);
}

/// The same with the in-process bus itself: its subscribers are what it
/// listens with. Events appended before the first subscriber are not
/// delivered to it; every one after it is, in log order.
async fn e5_in_process_bus_without_a_subscriber_skips_and_a_subscriber_gets_every_later_event(
    s: TestStore,
) {
    let customer = CustomerId::new();
    let bus = InProcessBus::new(1024);
    let (relay, stop) = start(Relay::new(
        s.store.clone(),
        Arc::new(bus.clone()),
        RelayConfig::live("roster.events"),
    ))
    .await;
    let before = append(&s.store, raw_events(customer, 6, 2), 5).await;
    wait_reached(&relay, before).await;
    let mut rx = bus.subscribe();
    let head = append(&s.store, raw_events(customer, 5, 3), 4).await;
    let positions: Vec<i64> = receive(&mut rx, (head - before) as usize)
        .await
        .iter()
        .map(|m| m.position)
        .collect();
    assert_eq!(positions, (before + 1..=head).collect::<Vec<_>>());
    wait_reached(&relay, head).await;
    assert!(rx.try_recv().is_err(), "nothing more, nothing twice");
    let _ = stop.send(true);
}

both_backends!(
    e5_relay_creates_the_stream_and_publishes_every_event_once_in_order,
    e5_in_process_bus_delivers_every_later_event_in_log_order,
    e5_a_feed_nobody_listens_to_is_not_read_and_a_listener_gets_every_later_event,
    e5_in_process_bus_without_a_subscriber_skips_and_a_subscriber_gets_every_later_event,
    e5_customer_directory_and_objects_events_of_one_customer_all_arrive,
    e5_every_event_id_of_a_mixed_10000_event_log_is_unique,
    e5_a_duplicate_ack_for_another_event_halts_the_relay_before_it,
    e5_a_relay_reads_the_log_within_its_byte_budget_and_still_publishes_every_event,
);

/// Two relays on one checkpoint and stream, without the lease: the
/// expected-last-sequence guard alone keeps every event once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e5_two_relays_racing_still_publish_each_event_once_in_order() {
    let s = TestStore::new(roster_tests::Backend::Postgres).await;
    let nats = NatsServer::start().await.unwrap();
    let settings = settings(&nats, "RACE");
    let customer = CustomerId::new();
    let mut relays = Vec::new();
    for _ in 0..2 {
        let bus = JetStreamBus::connect(settings.clone()).await.unwrap();
        let mut config = RelayConfig::durable("relay:jetstream:RACE", &settings.subject_prefix);
        config.exclusive = false;
        config.batch_size = 50;
        config.backoff_min = Duration::from_millis(10);
        relays.push(start(Relay::new(s.store.clone(), Arc::new(bus), config)).await);
    }
    let mut head = 0;
    for _ in 0..10 {
        head = append(&s.store, raw_events(customer, 20, 3), 25).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for (r, _) in &relays {
        wait_reached(r, head).await;
    }
    let js = JetStreamBus::connect(settings)
        .await
        .unwrap()
        .context()
        .clone();
    let got = consume(
        &js,
        "RACE",
        "t.race.>",
        head as usize,
        Duration::from_secs(1),
        LONG,
    )
    .await;
    assert_once_in_order(&got, 1..=head);
}

/// A JetStream bus whose first `prepare` lets "another relay" publish the
/// first `ahead` events and save the shared checkpoint right after this
/// relay learnt where the stream ends: the moment two relays without the
/// lease can interleave.
struct RacedBus {
    inner: JetStreamBus,
    other: JetStreamBus,
    store: roster_store::Store,
    checkpoint: String,
    ahead: i64,
    raced: AtomicBool,
}

#[async_trait]
impl EventBus for RacedBus {
    fn kind(&self) -> &'static str {
        "jetstream"
    }
    async fn prepare(&self) -> Result<Option<i64>, BusError> {
        let tail = self.inner.prepare().await?;
        if !self.raced.swap(true, Ordering::SeqCst) {
            self.other.prepare().await?;
            let upcasters = roster_events::upcasters();
            let prefix = self.other.settings().subject_prefix.clone();
            for e in self.store.read_from(0, self.ahead).await.unwrap() {
                let ack = self
                    .other
                    .publish(roster_relay::envelope::bus_message(e, &upcasters, &prefix))
                    .await?;
                ack.await?;
            }
            roster_store::with_db!(self.store.db(), |p| {
                sqlx::query(
                "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES ($1, $2, 0) \
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position"
            )
            .bind(&self.checkpoint)
            .bind(self.ahead)
            .execute(p)
            .await
            .map(|_| ())
            .unwrap()
            });
        }
        Ok(tail)
    }
    async fn publish(&self, m: BusMessage) -> Result<PendingAck, BusError> {
        self.inner.publish(m).await
    }
}

/// E5: a relay that starts while another relay on the same checkpoint
/// publishes and saves never leaves a gap in the stream. (Found in CI: with
/// the checkpoint read after the stream's tail, the second relay started
/// past the tail while JetStream still expected the message after it, and
/// 10 of 600 events were never published.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e5_a_relay_starting_while_another_saves_the_checkpoint_leaves_no_gap() {
    let s = TestStore::new(roster_tests::Backend::Postgres).await;
    let nats = NatsServer::start().await.unwrap();
    let settings = settings(&nats, "RACED");
    let head = append(&s.store, raw_events(CustomerId::new(), 30, 2), 60).await;
    let name = "relay:jetstream:RACED";
    let bus = RacedBus {
        inner: JetStreamBus::connect(settings.clone()).await.unwrap(),
        other: JetStreamBus::connect(settings.clone()).await.unwrap(),
        store: s.store.clone(),
        checkpoint: name.into(),
        ahead: 10,
        raced: AtomicBool::new(false),
    };
    let mut config = RelayConfig::durable(name, &settings.subject_prefix);
    config.exclusive = false;
    config.backoff_min = Duration::from_millis(10);
    let (relay, stop) = start(Relay::new(s.store.clone(), Arc::new(bus), config)).await;
    wait_reached(&relay, head).await;
    let _ = stop.send(true);
    let js = JetStreamBus::connect(settings)
        .await
        .unwrap()
        .context()
        .clone();
    let mut stream = js.get_stream("RACED").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        head as u64,
        "every event in the stream"
    );
    let got = consume(
        &js,
        "RACED",
        "t.raced.>",
        head as usize,
        Duration::from_secs(1),
        LONG,
    )
    .await;
    assert_once_in_order(&got, 1..=head);
}

/// With the lease (PostgreSQL), one relay publishes and the other stands
/// by; when the first stops, the second takes over from the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e5_one_relay_holds_the_lease_and_a_standby_takes_over() {
    let s = TestStore::new(roster_tests::Backend::Postgres).await;
    let nats = NatsServer::start().await.unwrap();
    let settings = settings(&nats, "LEASE");
    let customer = CustomerId::new();
    let mk = |settings: JetStreamSettings, store: roster_store::Store| async move {
        let bus = JetStreamBus::connect(settings.clone()).await.unwrap();
        let mut config = RelayConfig::durable("relay:jetstream:LEASE", &settings.subject_prefix);
        config.standby_retry = Duration::from_millis(100);
        Relay::new(store, Arc::new(bus), config)
    };
    let (first, stop_first) = start(mk(settings.clone(), s.store.clone()).await).await;
    let head = append(&s.store, raw_events(customer, 10, 2), 20).await;
    wait_reached(&first, head).await;
    let (second, _stop_second) = start(mk(settings.clone(), s.store.clone()).await).await;
    let more = append(&s.store, raw_events(customer, 10, 1), 20).await;
    wait_reached(&first, more).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        *second.reached().borrow(),
        0,
        "the standby published nothing"
    );
    let _ = stop_first.send(true);
    let last = append(&s.store, raw_events(customer, 5, 1), 20).await;
    wait_reached(&second, last).await;
    let js = JetStreamBus::connect(settings)
        .await
        .unwrap()
        .context()
        .clone();
    let got = consume(
        &js,
        "LEASE",
        "t.lease.>",
        last as usize,
        Duration::from_millis(500),
        LONG,
    )
    .await;
    assert_once_in_order(&got, 1..=last);
}

/// A bus that stores what it acknowledges and fails the first attempt at
/// one position, like a lost acknowledgement.
struct FlakyBus {
    fail_at: i64,
    failed: AtomicBool,
    attempts: Mutex<Vec<i64>>,
    stored: Mutex<Vec<i64>>,
}

#[async_trait]
impl EventBus for FlakyBus {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    async fn prepare(&self) -> Result<Option<i64>, BusError> {
        Ok(None)
    }
    async fn publish(&self, m: BusMessage) -> Result<PendingAck, BusError> {
        self.attempts.lock().unwrap().push(m.position);
        if m.position == self.fail_at && !self.failed.swap(true, Ordering::SeqCst) {
            return Ok(Box::pin(async {
                Err(BusError::Unavailable("ack lost".into()))
            }));
        }
        self.stored.lock().unwrap().push(m.position);
        Ok(Box::pin(async { Ok(Ack { duplicate: false }) }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e5_checkpoint_moves_only_to_the_highest_contiguous_acknowledgement() {
    let s = TestStore::new(roster_tests::Backend::Sqlite).await;
    let head = append(&s.store, raw_events(CustomerId::new(), 50, 2), 100).await;
    let bus = Arc::new(FlakyBus {
        fail_at: 37,
        failed: AtomicBool::new(false),
        attempts: Mutex::new(vec![]),
        stored: Mutex::new(vec![]),
    });
    let mut config = RelayConfig::durable("relay:flaky", "p");
    config.backoff_min = Duration::from_millis(10);
    let (relay, stop) = start(Relay::new(s.store.clone(), bus.clone(), config)).await;
    wait_reached(&relay, head).await;
    let _ = stop.send(true);
    let attempts = bus.attempts.lock().unwrap().clone();
    // The first session published past 37, but its checkpoint stopped at
    // 36: the second session starts again at 37.
    let restart = attempts
        .iter()
        .enumerate()
        .skip(1)
        .find(|(i, p)| **p <= attempts[i - 1])
        .map(|(_, p)| *p);
    assert_eq!(
        restart,
        Some(37),
        "republished from the first unacknowledged event"
    );
    assert!(attempts.iter().filter(|p| **p == 37).count() == 2);
    assert_eq!(relay.checkpoint().await.unwrap(), head);
    let mut stored = bus.stored.lock().unwrap().clone();
    stored.sort();
    stored.dedup();
    assert_eq!(stored, (1..=head).collect::<Vec<_>>());
}

/// A bus that records what is published and sees how many events the
/// relay read at once: the relay publishes a read's events one after the
/// other and only then polls their acknowledgements, so at each publish the
/// messages published but not yet acknowledged are those of the current
/// read before it. While `deaf`, it says nobody listens (a live feed
/// without a subscriber).
#[derive(Default)]
struct RecordingBus {
    published: AtomicUsize,
    polled: Arc<AtomicUsize>,
    largest_read: AtomicUsize,
    positions: Mutex<Vec<i64>>,
    deaf: AtomicBool,
}

#[async_trait]
impl EventBus for RecordingBus {
    fn kind(&self) -> &'static str {
        "recording"
    }
    fn listening(&self) -> bool {
        !self.deaf.load(Ordering::SeqCst)
    }
    async fn prepare(&self) -> Result<Option<i64>, BusError> {
        Ok(None)
    }
    async fn publish(&self, m: BusMessage) -> Result<PendingAck, BusError> {
        let in_read =
            self.published.fetch_add(1, Ordering::SeqCst) + 1 - self.polled.load(Ordering::SeqCst);
        self.largest_read.fetch_max(in_read, Ordering::SeqCst);
        self.positions.lock().unwrap().push(m.position);
        let polled = self.polled.clone();
        Ok(Box::pin(async move {
            polled.fetch_add(1, Ordering::SeqCst);
            Ok(Ack { duplicate: false })
        }))
    }
}

/// Issue 17 (E5): the relay reads the log within a byte budget, as the
/// projector does, so that a run's large directory objects events are not
/// all held at once; a read cut short loses and repeats nothing.
async fn e5_a_relay_reads_the_log_within_its_byte_budget_and_still_publishes_every_event(
    s: TestStore,
) {
    let customer = CustomerId::new();
    let id = customer.to_string();
    let blob = "x".repeat(100_000);
    let events = (1..=30)
        .map(|n| {
            raw_event(
                customer,
                roster_events::DIRECTORY_OBJECTS_AGGREGATE,
                &id,
                n,
                "DirectoryObjectsChanged",
                json!({ "blob": blob }),
            )
        })
        .collect();
    let head = append(&s.store, events, 30).await;
    assert_eq!(head, 30);

    // 250,000 bytes: a read ends with the third event of about 100 KB.
    let bus = Arc::new(RecordingBus::default());
    let mut config = RelayConfig::durable("relay:budget:small", "p");
    config.batch_bytes = 250_000;
    let (relay, stop) = start(Relay::new(s.store.clone(), bus.clone(), config)).await;
    wait_reached(&relay, head).await;
    let _ = stop.send(true);
    assert_eq!(
        *bus.positions.lock().unwrap(),
        (1..=head).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert_eq!(bus.largest_read.load(Ordering::SeqCst), 3);

    // The default budget (8 MiB) takes the 3 MB at once: the reads above
    // were cut by their bytes, not by their count.
    let bus = Arc::new(RecordingBus::default());
    let config = RelayConfig::durable("relay:budget:default", "p");
    assert_eq!(config.batch_bytes, roster_store::log::READ_BUDGET_BYTES);
    let (relay, stop) = start(Relay::new(s.store.clone(), bus.clone(), config)).await;
    wait_reached(&relay, head).await;
    let _ = stop.send(true);
    assert_eq!(
        *bus.positions.lock().unwrap(),
        (1..=head).collect::<Vec<_>>()
    );
    assert_eq!(bus.largest_read.load(Ordering::SeqCst), 30);
}
