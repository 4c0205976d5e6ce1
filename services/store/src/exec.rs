//! Command execution on top of the log: load aggregates (one through the
//! postgres-es / sqlite-es repositories, many in one query), run commands
//! through cqrs-es's `Aggregate::handle`, and stage the resulting events with
//! the claims they imply for one atomic append.

use std::collections::HashMap;
use std::sync::Arc;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventStore, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent, EventStore};
use postgres_es::PostgresEventRepository;
use roster_events::{ClaimsOf, CustomerId, EventMeta, Guard};
use sqlite_es::SqliteEventRepository;

use crate::log::{Appended, PendingEvent, StoredEvent};
use crate::{Db, Store, StoreError};

/// An aggregate as loaded, with the sequence of its last event.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub id: String,
    pub version: i64,
    pub state: A,
}

impl<A: Aggregate> Loaded<A> {
    pub fn new(id: impl Into<String>) -> Self {
        Loaded {
            id: id.into(),
            version: 0,
            state: A::default(),
        }
    }
}

/// Events staged by commands, appended together by [`Store::commit`].
#[derive(Default)]
pub struct Batch {
    events: Vec<PendingEvent>,
    /// The payload bytes of `events`.
    bytes: usize,
    guards: Vec<(CustomerId, Guard)>,
    meta_cache: Option<(EventMeta, Option<String>, Arc<str>)>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The bytes of the staged events' payloads (JSON text).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes what is staged so far (a streamed append writes it); the
    /// aggregates staged against keep their versions.
    pub(crate) fn take(&mut self) -> (Vec<PendingEvent>, Vec<(CustomerId, Guard)>) {
        self.bytes = 0;
        (
            std::mem::take(&mut self.events),
            std::mem::take(&mut self.guards),
        )
    }

    /// Adds a check the append transaction makes (T3 seat limit).
    pub fn guard(&mut self, customer: CustomerId, guard: Guard) {
        if !self.guards.contains(&(customer, guard.clone())) {
            self.guards.push((customer, guard));
        }
    }

    /// The events of a batch share their metadata text (one copy for a
    /// whole sync, not one per event).
    fn metadata_json(&mut self, meta: &EventMeta) -> Arc<str> {
        let trace = crate::tracecontext::current();
        if let Some((m, t, s)) = &self.meta_cache {
            if m == meta && *t == trace {
                return s.clone();
            }
        }
        let mut map = meta.to_map();
        if let Some(t) = &trace {
            map.insert(crate::tracecontext::META_TRACEPARENT.to_string(), t.clone());
        }
        let s: Arc<str> = serde_json::to_string(&map)
            .expect("a string map serialises")
            .into();
        self.meta_cache = Some((meta.clone(), trace, s.clone()));
        s
    }

    /// Runs a command against a loaded aggregate and stages its events. The
    /// aggregate and its version move on, so several commands on one
    /// aggregate can share a batch. Returns the number of events.
    pub async fn execute<A>(
        &mut self,
        target: &mut Loaded<A>,
        command: A::Command,
        services: &A::Services,
        meta: &EventMeta,
    ) -> Result<usize, A::Error>
    where
        A: ClaimsOf + Clone,
    {
        let before = target.state.clone();
        let sink: EventSink<A> = EventSink::default();
        target.state.handle(command, services, &sink).await?;
        let events = sink.collect().await;
        let n = events.len();
        if n == 0 {
            return Ok(0);
        }
        let metadata = self.metadata_json(meta);
        let recorded_at = meta.time.timestamp_micros();
        let mut state = before;
        for event in events {
            let claims = state.claims(&target.id, &event);
            target.version += 1;
            let payload = serde_json::to_string(&event).expect("events serialise");
            self.bytes += payload.len();
            self.events.push(PendingEvent {
                aggregate_type: A::TYPE,
                aggregate_id: target.id.clone(),
                sequence: target.version,
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload,
                metadata: metadata.clone(),
                customer_id: meta.customer_id,
                recorded_at,
                claims,
            });
            state.apply(event);
        }
        Ok(n)
    }
}

/// The stored event as cqrs-es's upcasters take it (a generic value).
fn to_serialized(e: StoredEvent) -> Result<SerializedEvent, StoreError> {
    let corrupt = |err: serde_json::Error| {
        StoreError::Corrupt(format!("event at position {}: {err}", e.position))
    };
    let payload = e.payload.value().map_err(corrupt)?;
    let metadata = e.metadata.value().map_err(corrupt)?;
    Ok(SerializedEvent::new(
        e.aggregate_id,
        e.sequence as usize,
        e.aggregate_type,
        e.event_type,
        e.event_version,
        payload,
        metadata,
    ))
}

/// Whether any of `upcasters` takes an event of this type and version.
pub fn upcasts(
    upcasters: &[Box<dyn cqrs_es::persist::EventUpcaster>],
    event_type: &str,
    event_version: &str,
) -> bool {
    upcasters
        .iter()
        .any(|u| u.can_upcast(event_type, event_version))
}

/// Deserialises a stored event into its typed payload `E`, applying the
/// upcasters. An event none of them takes (every event of the current
/// shapes) is decoded from its stored text directly, without a generic
/// value in between (issue 17).
pub fn decode<E: serde::de::DeserializeOwned>(
    e: StoredEvent,
    upcasters: &[Box<dyn cqrs_es::persist::EventUpcaster>],
) -> Result<E, StoreError> {
    let position = e.position;
    let corrupt = |event_type: &str, event_version: &str, err: serde_json::Error| {
        StoreError::Corrupt(format!(
            "event at position {position} ({event_type} {event_version}): {err}"
        ))
    };
    if !upcasts(upcasters, &e.event_type, &e.event_version) {
        return e
            .payload
            .decode()
            .map_err(|err| corrupt(&e.event_type, &e.event_version, err));
    }
    let s = roster_events::upcast(to_serialized(e)?, upcasters);
    serde_json::from_value(s.payload).map_err(|err| corrupt(&s.event_type, &s.event_version, err))
}

impl Store {
    /// Loads one aggregate through the cqrs-es event store backed by the
    /// postgres-es or sqlite-es repository.
    pub async fn load<A: Aggregate>(&self, id: &str) -> Result<Loaded<A>, StoreError> {
        let ctx = match self.db() {
            Db::Pg(p) => {
                PersistedEventStore::<_, A>::new_event_store(PostgresEventRepository::new(
                    p.clone(),
                ))
                .with_upcasters(roster_events::upcasters())
                .load_aggregate(id)
                .await
            }
            Db::Sqlite(p) => {
                PersistedEventStore::<_, A>::new_event_store(SqliteEventRepository::new(p.clone()))
                    .with_upcasters(roster_events::upcasters())
                    .load_aggregate(id)
                    .await
            }
        }
        .map_err(|e| StoreError::Corrupt(format!("loading {} {id}: {e}", A::TYPE)))?;
        Ok(Loaded {
            id: id.to_string(),
            version: ctx.current_sequence as i64,
            state: ctx.aggregate,
        })
    }

    /// Loads many aggregates of one type in a few queries (bulk paths).
    /// Ids without events come back as new, empty aggregates.
    pub async fn load_many<A: Aggregate>(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, Loaded<A>>, StoreError> {
        let upcasters = roster_events::upcasters();
        let mut out: HashMap<String, Loaded<A>> = ids
            .iter()
            .map(|id| (id.clone(), Loaded::new(id.clone())))
            .collect();
        for e in self.read_aggregates(A::TYPE, ids).await? {
            let id = e.aggregate_id.clone();
            let seq = e.sequence;
            let event = decode::<A::Event>(e, &upcasters)?;
            let loaded = out.entry(id.clone()).or_insert_with(|| Loaded::new(id));
            loaded.state.apply(event);
            loaded.version = seq;
        }
        Ok(out)
    }

    /// Appends a batch atomically. Returns the positions written.
    pub async fn commit(&self, batch: Batch) -> Result<Appended, StoreError> {
        self.append(batch.events, batch.guards).await
    }
}

/// All events of one aggregate, decoded, with their stored envelope.
pub async fn history<A: Aggregate>(
    store: &Store,
    id: &str,
) -> Result<Vec<(StoredEvent, A::Event)>, StoreError> {
    let upcasters = roster_events::upcasters();
    let mut out = Vec::new();
    for e in store.read_aggregates(A::TYPE, &[id.to_string()]).await? {
        let ev = decode::<A::Event>(e.clone(), &upcasters)?;
        out.push((e, ev));
    }
    Ok(out)
}

// Silence the unused-import lint for EventStore, which `load_aggregate` needs in scope.
#[allow(dead_code)]
fn _uses_event_store<A: Aggregate, S: EventStore<A>>() {}
