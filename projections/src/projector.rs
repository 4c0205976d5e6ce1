//! The checkpointed projector: tails the log in its global order and keeps
//! every projection's tables and checkpoint in one transaction per batch.
//!
//! Batches are serialised across processes (PostgreSQL transaction-level
//! advisory lock, SQLite's single writer) and re-read the checkpoints inside
//! the lock, so several `roster serve` replicas can run projectors without
//! applying an event twice. An event a projection fails on is recorded in
//! `projection_failures` and skipped, so one bad event cannot stop the rest.

use std::sync::Arc;
use std::time::Duration;

use roster_store::{with_tx, Store, StoreError, StoredEvent, Tx};
use tokio::sync::watch;

use crate::{decode, Decoded, Projection, ProjectionError};

const PROJECT_LOCK: i64 = 0x526f_7374_6572_5072; // "RosterPr"

pub const DEFAULT_BATCH: i64 = 5_000;

pub struct Projector {
    store: Store,
    projections: Vec<Arc<dyn Projection>>,
    prefix: String,
    batch_size: i64,
    reached: watch::Sender<i64>,
    /// The next batch, read while the previous one was being applied:
    /// (the position it follows, its events).
    ahead: tokio::sync::Mutex<Option<(i64, Vec<StoredEvent>)>>,
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Projector {
    /// A projector over the standard projections, writing tables named with
    /// `prefix` (empty for the live tables).
    pub fn new(store: Store, prefix: &str) -> Self {
        Self::with_projections(store, prefix, crate::all_projections())
    }

    pub fn with_projections(
        store: Store,
        prefix: &str,
        projections: Vec<Arc<dyn Projection>>,
    ) -> Self {
        Projector {
            store,
            projections,
            prefix: prefix.to_string(),
            batch_size: DEFAULT_BATCH,
            reached: watch::channel(0).0,
            ahead: tokio::sync::Mutex::new(None),
        }
    }

    pub fn with_batch_size(mut self, n: i64) -> Self {
        self.batch_size = n.max(1);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn checkpoint_name(&self, p: &dyn Projection) -> String {
        format!("{}{}", self.prefix, p.name())
    }

    /// Creates the projection tables if they are missing. Idempotent.
    pub async fn ensure_tables(&self) -> Result<(), ProjectionError> {
        let mut tx = self.store.db().begin_write().await?;
        for p in &self.projections {
            for stmt in p.ddl(&self.prefix) {
                with_tx!(&mut tx, |c| sqlx::query(&stmt)
                    .execute(c)
                    .await
                    .map(|_| ())?);
            }
        }
        tx.commit().await?;
        let cp = self.checkpoint().await?;
        self.reached.send_replace(cp);
        Ok(())
    }

    async fn lock(&self, tx: &mut Tx) -> Result<(), ProjectionError> {
        if let Tx::Pg(t) = tx {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PROJECT_LOCK)
                .execute(&mut **t)
                .await?;
        }
        Ok(())
    }

    async fn read_checkpoints(&self, tx: &mut Tx) -> Result<Vec<i64>, ProjectionError> {
        let mut out = Vec::with_capacity(self.projections.len());
        for p in &self.projections {
            let name = self.checkpoint_name(p.as_ref());
            let pos: Option<i64> = with_tx!(tx, |c| sqlx::query_scalar(
                "SELECT position FROM projection_checkpoints WHERE name = $1"
            )
            .bind(&name)
            .fetch_optional(c)
            .await?);
            out.push(pos.unwrap_or(0));
        }
        Ok(out)
    }

    async fn write_checkpoint(
        tx: &mut Tx,
        name: &str,
        position: i64,
    ) -> Result<(), ProjectionError> {
        with_tx!(tx, |c| {
            sqlx::query(
            "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at"
        )
        .bind(name)
        .bind(position)
        .bind(now_micros())
        .execute(c)
        .await
        .map(|_| ())?
        });
        Ok(())
    }

    async fn record_failure(
        tx: &mut Tx,
        name: &str,
        position: i64,
        error: &str,
    ) -> Result<(), ProjectionError> {
        tracing::error!(
            projection = name,
            position,
            error,
            "projection failed on an event; recorded and skipped"
        );
        metrics::counter!("roster_projection_failures_total", "projection" => name.to_string())
            .increment(1);
        with_tx!(tx, |c| {
            sqlx::query(
            "INSERT INTO projection_failures (name, position, error, failed_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name, position) DO UPDATE SET error = excluded.error, failed_at = excluded.failed_at"
        )
        .bind(name)
        .bind(position)
        .bind(error)
        .bind(now_micros())
        .execute(c)
        .await
        .map(|_| ())?
        });
        Ok(())
    }

    /// The position every projection has reached (the smallest checkpoint).
    pub async fn checkpoint(&self) -> Result<i64, ProjectionError> {
        let mut min = i64::MAX;
        for p in &self.projections {
            let name = self.checkpoint_name(p.as_ref());
            let pos: Option<i64> = roster_store::with_db!(self.store.db(), |c| sqlx::query_scalar(
                "SELECT position FROM projection_checkpoints WHERE name = $1"
            )
            .bind(&name)
            .fetch_optional(c)
            .await
            .map_err(StoreError::from)?);
            min = min.min(pos.unwrap_or(0));
        }
        Ok(if min == i64::MAX { 0 } else { min })
    }

    /// Projects one batch. Returns the number of events read (0 when caught up).
    pub async fn step(&self) -> Result<usize, ProjectionError> {
        let mut tx = self.store.db().begin_write().await?;
        self.lock(&mut tx).await?;
        let checkpoints = self.read_checkpoints(&mut tx).await?;
        let from = checkpoints.iter().copied().min().unwrap_or(0);
        let started = std::time::Instant::now();
        // A batch read ahead is used only if it follows exactly where the
        // checkpoints are (another process may have moved them).
        let stored = match self.ahead.lock().await.take() {
            Some((after, events)) if after == from && !events.is_empty() => events,
            _ => self.store.read_from(from, self.batch_size).await?,
        };
        if stored.is_empty() {
            return Ok(0);
        }
        let read_s = started.elapsed().as_secs_f64();
        let n = stored.len();
        let last = stored.last().map(|e| e.position).unwrap_or(from);
        let upcasters = roster_events::upcasters();
        let mut decoded: Vec<Decoded> = Vec::with_capacity(n);
        let mut undecodable: Vec<(i64, String)> = Vec::new();
        for e in stored {
            let pos = e.position;
            match decode(e, &upcasters) {
                Ok(d) => decoded.push(d),
                Err(err) => undecodable.push((pos, err)),
            }
        }
        tracing::debug!(
            events = n,
            read_s,
            decode_s = started.elapsed().as_secs_f64() - read_s,
            "projector batch read"
        );
        // While this batch is applied, the next one is read (a full batch
        // suggests the log goes on): catching up is then bound by the
        // projections' writes, not by reading the log.
        let read_ahead = async {
            if n as i64 >= self.batch_size {
                self.store.read_from(last, self.batch_size).await.ok()
            } else {
                None
            }
        };
        let apply = async {
            for (p, cp) in self.projections.iter().zip(&checkpoints) {
                let mine: Vec<&Decoded> = decoded.iter().filter(|d| d.position > *cp).collect();
                if mine.is_empty() {
                    continue;
                }
                let t = std::time::Instant::now();
                let applied = p.apply(&mut tx, &self.prefix, &mine).await;
                tracing::debug!(
                    projection = p.name(),
                    events = mine.len(),
                    seconds = t.elapsed().as_secs_f64(),
                    "projected"
                );
                if let Err(e) = applied {
                    tracing::warn!(projection = p.name(), error = %e, "batch failed; retrying event by event");
                    return true;
                }
            }
            false
        };
        let (failed, next) = tokio::join!(apply, read_ahead);
        if failed {
            drop(tx);
            self.step_one_by_one(&decoded, &undecodable, &checkpoints, last)
                .await?;
        } else {
            for (p, cp) in self.projections.iter().zip(&checkpoints) {
                let name = self.checkpoint_name(p.as_ref());
                for (pos, err) in &undecodable {
                    if pos > cp {
                        Self::record_failure(&mut tx, &name, *pos, err).await?;
                    }
                }
                Self::write_checkpoint(&mut tx, &name, last).await?;
            }
            tx.commit().await?;
            if let Some(events) = next {
                *self.ahead.lock().await = Some((last, events));
            }
        }
        metrics::counter!("roster_events_projected_total").increment(n as u64);
        metrics::gauge!("roster_projection_position").set(last as f64);
        self.reached.send_replace(last);
        Ok(n)
    }

    async fn step_one_by_one(
        &self,
        decoded: &[Decoded],
        undecodable: &[(i64, String)],
        checkpoints: &[i64],
        last: i64,
    ) -> Result<(), ProjectionError> {
        for (p, cp) in self.projections.iter().zip(checkpoints) {
            let name = self.checkpoint_name(p.as_ref());
            for d in decoded.iter().filter(|d| d.position > *cp) {
                let mut tx = self.store.db().begin_write().await?;
                self.lock(&mut tx).await?;
                match p.apply(&mut tx, &self.prefix, &[d]).await {
                    Ok(()) => {
                        Self::write_checkpoint(&mut tx, &name, d.position).await?;
                        tx.commit().await?;
                    }
                    Err(e) => {
                        drop(tx);
                        let mut tx = self.store.db().begin_write().await?;
                        self.lock(&mut tx).await?;
                        Self::record_failure(&mut tx, &name, d.position, &e.to_string()).await?;
                        Self::write_checkpoint(&mut tx, &name, d.position).await?;
                        tx.commit().await?;
                    }
                }
            }
            let mut tx = self.store.db().begin_write().await?;
            self.lock(&mut tx).await?;
            for (pos, err) in undecodable {
                if pos > cp {
                    Self::record_failure(&mut tx, &name, *pos, err).await?;
                }
            }
            Self::write_checkpoint(&mut tx, &name, last).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Projects until the head of the log as it is now. Returns the position reached.
    pub async fn catch_up(&self) -> Result<i64, ProjectionError> {
        while self.step().await? > 0 {}
        let cp = self.checkpoint().await?;
        self.reached.send_replace(cp);
        Ok(cp)
    }

    /// Follows the position this projector has reached.
    pub fn reached(&self) -> watch::Receiver<i64> {
        self.reached.subscribe()
    }

    /// Waits until every projection has reached `position` (read-your-writes),
    /// by this process's projector or another's. False on timeout.
    pub async fn wait_for(&self, position: i64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.reached.subscribe();
        loop {
            if *rx.borrow_and_update() >= position {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let slice = (deadline - now).min(Duration::from_millis(50));
            if tokio::time::timeout(slice, rx.changed()).await.is_err() {
                // Another process may be the one projecting.
                if let Ok(cp) = self.checkpoint().await {
                    if cp >= position {
                        self.reached.send_if_modified(|r| {
                            if cp > *r {
                                *r = cp;
                                true
                            } else {
                                false
                            }
                        });
                        return true;
                    }
                }
            }
        }
    }

    /// Runs until `shutdown` turns true: projects whenever the log moves
    /// (in this process, or every `poll` for other writers).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, poll: Duration) {
        let mut head = self.store.watch_head();
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.step().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "projector step failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            tokio::select! {
                _ = head.changed() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
