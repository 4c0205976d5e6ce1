//! The relay: tails the log in its global order and publishes every event
//! on the bus, pipelined (many messages in flight, acknowledgements taken
//! in order); its checkpoint moves only to the highest position up to which
//! every event was acknowledged.
//!
//! Failure handling: any error (connection lost, ack timeout, a refused
//! message) ends the session; the relay waits (exponential backoff), asks
//! the bus again where its tail is, and republishes from the checkpoint.
//! Events committed meanwhile simply wait in the log (E5). With
//! `exclusive`, one relay per checkpoint holds a lease (a row in
//! `relay_leases` on PostgreSQL) that it renews by heartbeat; the others
//! stand by. A relay that stops renewing it (hung, SIGSTOPped,
//! partitioned from the database) loses it when it expires and a standby
//! takes over; before publishing, a relay makes sure its lease is fresh.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use roster_store::{with_db, Db, Store, StoreError};
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::watch;

use crate::bus::{Ack, BusError, EventBus};
use crate::envelope::bus_message;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("the relay lease expired or was taken over by another relay")]
    LeaseLost,
}

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The checkpoint's row in `projection_checkpoints`, e.g.
    /// `relay:jetstream:ROSTER_EVENTS`. `None`: no stored checkpoint; start
    /// at the log's head and keep the position in memory (the in-process
    /// bus, whose subscribers live and die with the process).
    pub checkpoint: Option<String>,
    /// Subjects are `<prefix>.<customer>.<EventType>`.
    pub subject_prefix: String,
    /// Events read from the log at a time.
    pub batch_size: i64,
    /// Payload bytes read from the log at a time: a read ends with the
    /// event that reaches this many (at least one event); by default the
    /// projector's ([`roster_store::log::READ_BUDGET_BYTES`], issue 17).
    pub batch_bytes: i64,
    /// Most messages awaiting an acknowledgement.
    pub window: usize,
    /// How often to look for events appended by other processes when no
    /// notification arrives (PostgreSQL notifies; SQLite is polled).
    pub poll: Duration,
    /// Most time between checkpoint writes while publishing.
    pub flush_interval: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// On PostgreSQL, hold an advisory lock so that one relay per
    /// checkpoint publishes and the others stand by.
    pub exclusive: bool,
    /// How often a standby relay tries to take the lease.
    pub standby_retry: Duration,
    /// How long a lease lasts without a heartbeat; renewed every third of it.
    pub lease_ttl: Duration,
}

impl RelayConfig {
    /// A relay with a stored checkpoint named `name`.
    pub fn durable(name: impl Into<String>, subject_prefix: impl Into<String>) -> Self {
        RelayConfig {
            checkpoint: Some(name.into()),
            subject_prefix: subject_prefix.into(),
            batch_size: 2_000,
            batch_bytes: roster_store::log::READ_BUDGET_BYTES,
            window: 10_000,
            poll: Duration::from_millis(200),
            flush_interval: Duration::from_millis(100),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            exclusive: true,
            standby_retry: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(5),
        }
    }

    /// A live relay for the in-process bus: from the head, nothing stored.
    pub fn live(subject_prefix: impl Into<String>) -> Self {
        RelayConfig {
            checkpoint: None,
            exclusive: false,
            ..Self::durable("", subject_prefix)
        }
    }
}

type AckFuture = Pin<Box<dyn Future<Output = (i64, i64, Result<Ack, BusError>)> + Send>>;

/// Publishes the log on a bus.
pub struct Relay {
    store: Store,
    bus: Arc<dyn EventBus>,
    config: RelayConfig,
    reached: watch::Sender<i64>,
    /// This relay's name as a lease holder.
    holder: String,
    /// Publishing now (holds the lease, or needs none), as opposed to
    /// standing by or waiting out a failure.
    active: watch::Sender<bool>,
    /// Why publishing stopped, while it is stopped (see [`BusError::Mismatch`]).
    halted: watch::Sender<Option<String>>,
    /// Since when, and why, every session has failed before it could
    /// publish (the bus unreachable, a stream it cannot create); `None`
    /// once a session is up. Readiness turns on it (issue 16).
    failing: watch::Sender<Option<(Instant, String)>>,
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The lease: a row naming its holder and when it expires (the database's
/// clock). The holder renews it every third of its TTL; a relay that does
/// not (hung, stopped, cut off) loses it at expiry and a standby takes it.
struct Lease {
    pool: PgPool,
    name: String,
    holder: String,
    ttl: Duration,
    /// When the last renewal was sent that the database confirmed.
    renewed: Instant,
}

impl Lease {
    /// Takes the lease if it is free, expired, or already ours.
    async fn take(
        pool: &PgPool,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, sqlx::Error> {
        let sent = Instant::now();
        let got: Option<String> = sqlx::query_scalar(
            "INSERT INTO relay_leases (name, holder, expires_at)
             VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE relay_leases.expires_at < clock_timestamp() OR relay_leases.holder = excluded.holder
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(ttl.as_secs_f64())
        .fetch_optional(pool)
        .await?;
        Ok(got.map(|_| Lease {
            pool: pool.clone(),
            name: name.to_string(),
            holder: holder.to_string(),
            ttl,
            renewed: sent,
        }))
    }

    /// Renews the lease when a third of its TTL has passed. Lost when
    /// another relay holds it now, or when it could not be renewed before
    /// it expired. Called before every publish.
    async fn check(&mut self) -> Result<(), RelayError> {
        let heartbeat = self.ttl / 3;
        if self.renewed.elapsed() < heartbeat {
            return Ok(());
        }
        let sent = Instant::now();
        let renewed = tokio::time::timeout(
            heartbeat,
            sqlx::query(
                "UPDATE relay_leases SET expires_at = clock_timestamp() + make_interval(secs => $3)
                 WHERE name = $1 AND holder = $2 AND expires_at >= clock_timestamp()",
            )
            .bind(&self.name)
            .bind(&self.holder)
            .bind(self.ttl.as_secs_f64())
            .execute(&self.pool),
        )
        .await;
        match renewed {
            Ok(Ok(r)) if r.rows_affected() == 1 => {
                self.renewed = sent;
                Ok(())
            }
            Ok(Ok(_)) => Err(RelayError::LeaseLost),
            // Not renewed (database unreachable): still ours until it expires.
            _ if self.renewed.elapsed() < self.ttl => Ok(()),
            _ => Err(RelayError::LeaseLost),
        }
    }

    /// Gives the lease up (on shutdown), so a standby takes over at once.
    async fn release(&self) {
        let _ = sqlx::query("DELETE FROM relay_leases WHERE name = $1 AND holder = $2")
            .bind(&self.name)
            .bind(&self.holder)
            .execute(&self.pool)
            .await;
    }
}

/// What wakes an idle relay: this process's appends, PostgreSQL's
/// notifications of other processes' appends, or the poll interval.
struct Wake {
    head: watch::Receiver<i64>,
    listener: Option<PgListener>,
}

impl Wake {
    async fn new(store: &Store) -> Wake {
        let listener = match store.db() {
            Db::Pg(pool) => match PgListener::connect_with(pool).await {
                Ok(mut l) => match l.listen("roster_log").await {
                    Ok(()) => Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot LISTEN roster_log; polling instead");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN roster_log; polling instead");
                    None
                }
            },
            Db::Sqlite(_) => None,
        };
        Wake {
            head: store.watch_head(),
            listener,
        }
    }

    async fn wait(&mut self, poll: Duration, shutdown: &mut watch::Receiver<bool>) {
        let notified = async {
            match self.listener.as_mut() {
                Some(l) => l.recv().await.map(|_| ()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.head.changed() => {}
            r = notified => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "LISTEN roster_log failed; polling instead");
                    self.listener = None;
                }
            }
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => {}
        }
    }
}

impl Relay {
    pub fn new(store: Store, bus: Arc<dyn EventBus>, config: RelayConfig) -> Relay {
        Relay {
            store,
            bus,
            config,
            reached: watch::channel(0).0,
            holder: format!("{}:{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            active: watch::channel(false).0,
            halted: watch::channel(None).0,
            failing: watch::channel(None).0,
        }
    }

    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    /// Follows the highest position up to which every event was acknowledged.
    pub fn reached(&self) -> watch::Receiver<i64> {
        self.reached.subscribe()
    }

    /// Whether this relay publishes now (holds the lease, or needs none and
    /// its session is up), rather than standing by or retrying.
    pub fn active(&self) -> watch::Receiver<bool> {
        self.active.subscribe()
    }

    /// Since when, and why, the relay has failed to start publishing (for
    /// health endpoints); `None` while sessions come up.
    pub fn failing(&self) -> watch::Receiver<Option<(Instant, String)>> {
        self.failing.subscribe()
    }

    /// The log's head (for health endpoints).
    pub async fn log_head(&self) -> Result<i64, RelayError> {
        Ok(self.store.head_position().await?)
    }

    /// Why the relay stopped publishing, while it is stopped: a duplicate
    /// acknowledgement for an event the stream does not hold (E5).
    pub fn halted(&self) -> watch::Receiver<Option<String>> {
        self.halted.subscribe()
    }

    /// The stored checkpoint (0 when none).
    pub async fn checkpoint(&self) -> Result<i64, RelayError> {
        let Some(name) = &self.config.checkpoint else {
            return Ok(*self.reached.borrow());
        };
        let pos: Option<i64> = with_db!(self.store.db(), |p| sqlx::query_scalar(
            "SELECT position FROM projection_checkpoints WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(p)
        .await?);
        Ok(pos.unwrap_or(0))
    }

    async fn save(&self, position: i64) -> Result<(), RelayError> {
        if let Some(name) = &self.config.checkpoint {
            with_db!(self.store.db(), |p| {
                sqlx::query(
                "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at"
            )
            .bind(name)
            .bind(position)
            .bind(now_micros())
            .execute(p)
            .await
            .map(|_| ())?
            });
        }
        let bus = self.bus.kind();
        metrics::gauge!("roster_relay_position", "bus" => bus).set(position as f64);
        if let Ok(head) = self.store.head_position().await {
            metrics::gauge!("roster_relay_lag", "bus" => bus).set((head - position).max(0) as f64);
        }
        let moved = self.reached.send_if_modified(|r| {
            if *r != position {
                *r = position;
                true
            } else {
                false
            }
        });
        if moved && self.halted.borrow().is_some() {
            self.halted.send_replace(None);
            metrics::gauge!("roster_relay_halted", "bus" => bus).set(0.0);
            tracing::info!(bus, position, "relay publishes again");
        }
        Ok(())
    }

    /// Takes the lease, waiting as a standby while another relay holds it.
    /// `None` when shut down first.
    async fn acquire(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Lease> {
        let (Db::Pg(pool), true, Some(name)) = (
            self.store.db(),
            self.config.exclusive,
            &self.config.checkpoint,
        ) else {
            return None;
        };
        let mut told = false;
        loop {
            if *shutdown.borrow() {
                return None;
            }
            match Lease::take(pool, name, &self.holder, self.config.lease_ttl).await {
                Ok(Some(lease)) => {
                    tracing::info!(checkpoint = %name, holder = %self.holder, "relay holds the lease and publishes");
                    metrics::gauge!("roster_relay_active", "bus" => self.bus.kind()).set(1.0);
                    return Some(lease);
                }
                Ok(None) => {
                    if !told {
                        tracing::info!(checkpoint = %name, "another relay holds the lease; standing by");
                        told = true;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot take the relay lease; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.standby_retry) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    fn needs_lease(&self) -> bool {
        matches!(self.store.db(), Db::Pg(_))
            && self.config.exclusive
            && self.config.checkpoint.is_some()
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let bus = self.bus.kind();
        // The series the alerts read exist from the start (issue 16).
        metrics::gauge!("roster_relay_active", "bus" => bus).set(0.0);
        metrics::gauge!("roster_relay_halted", "bus" => bus).set(0.0);
        let mut wake = Wake::new(&self.store).await;
        let mut backoff = self.config.backoff_min;
        let mut position: Option<i64> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let mut lease = if self.needs_lease() {
                match self.acquire(&mut shutdown).await {
                    Some(l) => Some(l),
                    None => return,
                }
            } else {
                None
            };
            loop {
                if *shutdown.borrow() {
                    if let Some(l) = &lease {
                        l.release().await;
                    }
                    return;
                }
                let result = self
                    .session(
                        lease.as_mut(),
                        &mut wake,
                        &mut position,
                        &mut backoff,
                        &mut shutdown,
                    )
                    .await;
                let error = match result {
                    Ok(()) => {
                        if let Some(l) = &lease {
                            l.release().await;
                        }
                        return;
                    }
                    Err(e) => e,
                };
                if matches!(error, RelayError::LeaseLost) {
                    metrics::gauge!("roster_relay_active", "bus" => bus).set(0.0);
                    metrics::counter!("roster_relay_lease_lost_total", "bus" => bus).increment(1);
                }
                metrics::counter!("roster_relay_failures_total", "bus" => bus).increment(1);
                self.active.send_replace(false);
                if !matches!(error, RelayError::LeaseLost) {
                    let why = error.to_string();
                    self.failing.send_modify(|f| match f {
                        Some((_, message)) => *message = why,
                        None => *f = Some((Instant::now(), why)),
                    });
                }
                if let RelayError::Bus(BusError::Mismatch(why)) = &error {
                    // Never counted as published: the checkpoint stays before
                    // the event, and every retry checks it again.
                    metrics::counter!("roster_relay_duplicate_mismatches_total", "bus" => bus)
                        .increment(1);
                    metrics::gauge!("roster_relay_halted", "bus" => bus).set(1.0);
                    backoff = self.config.backoff_max;
                    tracing::error!(
                        bus,
                        error = %why,
                        retry_in_ms = backoff.as_millis() as u64,
                        "RELAY HALTED: the stream claims to hold an event it does not hold; \
                         publishing stopped before it (is the stream shared with another \
                         deployment, or was the database restored?)"
                    );
                    self.halted.send_replace(Some(why.clone()));
                } else {
                    tracing::warn!(
                        bus,
                        error = %error,
                        retry_in_ms = backoff.as_millis() as u64,
                        "relay interrupted; events stay in the log and are published when it resumes"
                    );
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(self.config.backoff_max);
                if matches!(error, RelayError::LeaseLost) {
                    break;
                }
            }
        }
    }

    /// Where a session starts: the checkpoint (or, without one, where the
    /// last session stopped, else the log's head), moved up to the
    /// stream's tail when the stream already holds those events (E5).
    async fn starting_point(&self, position: Option<i64>) -> Result<i64, RelayError> {
        let bus = self.bus.kind();
        // The checkpoint is read before the bus says where its stream ends.
        // Another relay on the same checkpoint (no lease) only saves what the
        // stream already holds, so read in this order the checkpoint is never
        // ahead of the tail. Read the other way round, a checkpoint saved in
        // between would start this session past the tail while the bus still
        // expects the message after it: the session's messages would then be
        // stored one run of positions early, leaving a gap in the stream.
        let mut acked = match (&self.config.checkpoint, position) {
            (Some(_), _) => self.checkpoint().await?,
            (None, Some(p)) => p,
            (None, None) => self.store.head_position().await?,
        };
        let tail = self.bus.prepare().await?;
        if let Some(tail) = tail.filter(|t| *t > acked) {
            let head = self.store.head_position().await?;
            if tail <= head {
                tracing::info!(
                    bus,
                    checkpoint = acked,
                    stream_tail = tail,
                    "the stream already holds the events up to its tail; the checkpoint moves there"
                );
                acked = tail;
            } else {
                tracing::warn!(
                    bus,
                    checkpoint = acked,
                    stream_tail = tail,
                    log_head = head,
                    "the stream holds positions beyond this log's head (another deployment's stream, or a restored database?); publishing from the checkpoint"
                );
            }
        }
        Ok(acked)
    }

    /// One session: from the checkpoint (or the bus's tail) until an error
    /// or shutdown.
    async fn session(
        &self,
        mut lease: Option<&mut Lease>,
        wake: &mut Wake,
        position: &mut Option<i64>,
        backoff: &mut Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), RelayError> {
        let bus = self.bus.kind();
        let mut acked = self.starting_point(*position).await?;
        self.save(acked).await?;
        *position = Some(acked);
        self.active.send_replace(true);
        self.failing.send_replace(None);
        let upcasters = roster_events::upcasters();
        let mut flushed = acked;
        let mut last_flush = Instant::now();
        let mut next = acked;
        let mut inflight: FuturesOrdered<AckFuture> = FuturesOrdered::new();
        // Once an acknowledgement failed, the ones after it prove nothing.
        let mut ack_failed = false;
        let handle = |done, acked: &mut i64| record_ack(bus, done, acked);
        let outcome: Result<(), RelayError> = 'session: loop {
            if *shutdown.borrow() {
                break Ok(());
            }
            if let Some(l) = lease.as_deref_mut() {
                if let Err(e) = l.check().await {
                    break Err(e);
                }
            }
            let room = self.config.window.saturating_sub(inflight.len());
            let mut read = 0;
            if inflight.is_empty() && !self.bus.listening() {
                // Nobody receives (the in-process bus without a subscriber):
                // the events up to the head are for no one and are not read
                // (issue 17: reading and wrapping every event of a 100,000
                // user sync cost a tenth of the machine's work). The head is
                // read before the bus is asked again, so a subscriber that
                // comes meanwhile still gets every event appended after it.
                let head = match self.store.head_position().await {
                    Ok(h) => h,
                    Err(e) => break Err(e.into()),
                };
                if head > next && !self.bus.listening() {
                    metrics::counter!("roster_relay_unheard_total", "bus" => bus)
                        .increment((head - next) as u64);
                    next = head;
                    acked = head;
                }
            } else if room > 0 {
                let limit = self.config.batch_size.min(room as i64).max(1);
                let within = self.config.batch_bytes.max(1);
                let events = match self.store.read_from_within(next, limit, within).await {
                    Ok(e) => e,
                    Err(e) => break Err(e.into()),
                };
                read = events.len();
                let span = publish_span(bus, &events, next);
                for e in events {
                    let message = bus_message(e, &upcasters, &self.config.subject_prefix);
                    let (pos, recorded_at) = (message.position, message.recorded_at);
                    let publish = self.bus.publish(message);
                    let published = match &span {
                        Some(span) => publish.instrument(span.clone()).await,
                        None => publish.await,
                    };
                    let pending = match published {
                        Ok(p) => p,
                        Err(e) => break 'session Err(e.into()),
                    };
                    inflight.push_back(Box::pin(async move { (pos, recorded_at, pending.await) }));
                    next = pos;
                }
            }
            // Take every acknowledgement that has arrived, in order.
            while let Some(Some(done)) = inflight.next().now_or_never() {
                if let Err(e) = handle(done, &mut acked) {
                    ack_failed = true;
                    break 'session Err(e.into());
                }
                *backoff = self.config.backoff_min;
            }
            let idle = read == 0;
            if acked != flushed && (idle || last_flush.elapsed() >= self.config.flush_interval) {
                if let Err(e) = self.save(acked).await {
                    break Err(e);
                }
                *position = Some(acked);
                flushed = acked;
                last_flush = Instant::now();
            }
            if idle || inflight.len() >= self.config.window {
                if inflight.is_empty() {
                    wake.wait(self.config.poll, shutdown).await;
                } else {
                    tokio::select! {
                        done = inflight.next() => {
                            if let Some(done) = done {
                                if let Err(e) = handle(done, &mut acked) {
                                    ack_failed = true;
                                    break 'session Err(e.into());
                                }
                                *backoff = self.config.backoff_min;
                            }
                        }
                        _ = shutdown.changed() => {}
                    }
                }
            }
        };
        // Whatever is still in flight may have landed: take the
        // acknowledgements in order, up to the first failure, so that the
        // checkpoint ends as far as it truthfully can.
        let drain = async {
            while let Some(done) = inflight.next().await {
                if ack_failed {
                    break;
                }
                if handle(done, &mut acked).is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
        if acked != flushed {
            self.save(acked).await?;
        }
        *position = Some(acked);
        outcome
    }
}

/// Counts one acknowledgement in order and moves `acked` to its position;
/// a failed one ends the session.
fn record_ack(
    bus: &'static str,
    done: (i64, i64, Result<Ack, BusError>),
    acked: &mut i64,
) -> Result<(), BusError> {
    let (pos, recorded_at, result) = done;
    let ack = result?;
    *acked = pos;
    metrics::counter!("roster_relay_published_total", "bus" => bus).increment(1);
    if ack.duplicate {
        metrics::counter!("roster_relay_duplicates_total", "bus" => bus).increment(1);
    }
    metrics::histogram!("roster_relay_commit_to_ack_seconds", "bus" => bus)
        .record((now_micros() - recorded_at).max(0) as f64 / 1e6);
    Ok(())
}

/// One span per batch published (issue 16); none for an empty read.
fn publish_span(
    bus: &'static str,
    events: &[roster_store::StoredEvent],
    next: i64,
) -> Option<tracing::Span> {
    let last = events.last()?;
    Some(tracing::info_span!(
        "relay.publish",
        bus,
        events = events.len(),
        from = next + 1,
        to = last.position
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e5_a_lease_is_renewed_well_before_it_expires() {
        let c = RelayConfig::durable("relay:x", "p");
        assert!(c.lease_ttl + c.standby_retry < Duration::from_secs(10));
    }
}
