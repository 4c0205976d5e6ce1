//! The checkpointed projector: tails the log in its global order and keeps
//! each projection's tables and checkpoint in one transaction per batch:
//! one transaction for every projection, or on PostgreSQL for a bulk batch
//! one per lane of projections, applied at once (`Projector::lanes`).
//!
//! A projection's batches are serialised across processes (a PostgreSQL
//! transaction-level advisory lock per projection, SQLite's single writer)
//! and its checkpoint is re-read inside the lock, so several `roster serve`
//! replicas can run projectors without applying an event twice.
//!
//! Failures (issue 9): a transient database error (connection, deadlock,
//! lock or statement timeout, SQLite busy) is retried with backoff for as
//! long as it lasts and never recorded or skipped. Only a deterministic
//! failure (an event that cannot be decoded or applied) is recorded in
//! `projection_failures` with a count of attempts; after [`MAX_ATTEMPTS`] the
//! event is skipped for that projection (`roster_projection_skipped_total`),
//! so one bad event cannot stop the rest.

use std::sync::Arc;
use std::time::Duration;

use roster_store::{with_tx, Store, StoreError, StoredEvent, Tx};
use tokio::sync::watch;

use crate::{decode, Decoded, MetaCache, Projection, ProjectionError};

mod beside;
pub use beside::{Beside, DEFAULT_BESIDE_BYTES};

const PROJECT_LOCK: i64 = 0x526f_7374_6572_5072; // "RosterPr"

/// The advisory lock of one projection's checkpoint (by its name, with
/// prefix): FNV-1a, stable across builds and processes.
fn lock_key(checkpoint: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "roster projector ".bytes().chain(checkpoint.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

/// A batch of at least this many events is applied in parallel lanes on
/// PostgreSQL ([`Projector::lanes`]); below it, one transaction costs less
/// than several.
pub const DEFAULT_PARALLEL_FROM: usize = 1_000;

pub const DEFAULT_BATCH: i64 = 5_000;
/// Attempts at an event a projection fails on deterministically before it
/// is skipped for that projection.
pub const MAX_ATTEMPTS: i64 = 3;
/// How long a projector transaction waits for a row lock (PostgreSQL)
/// before giving up and retrying later.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// After this many events projected in one go (an initial sync, an
/// import, a replay), the projection tables are vacuumed and analysed on
/// PostgreSQL once the projector has caught up (planner statistics and the
/// visibility map index-only scans need), instead of
/// waiting for autovacuum: until then PostgreSQL plans the console's
/// pages on empty-table statistics (issue 14: 64-165 ms a page right
/// after a bulk load, 26-65 ms once analysed, at 100,000 users).
pub const DEFAULT_ANALYZE_AFTER: i64 = 20_000;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How far behind the log's head a projection may be and still count as
/// ready (`/readyz`): within `max_events` events, or with its oldest
/// unprojected event committed at most `max_age` ago (a burst being worked
/// off, not a replay).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LagLimits {
    pub max_events: i64,
    pub max_age: Duration,
}

impl Default for LagLimits {
    fn default() -> Self {
        LagLimits {
            max_events: 1_000,
            max_age: Duration::from_secs(5),
        }
    }
}

/// How far one projection is behind the log's head.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProjectionLag {
    /// The projection (its checkpoint's name, with version).
    pub name: String,
    /// The position it has applied up to.
    pub position: i64,
    /// Events committed but not yet applied.
    pub behind_events: i64,
    /// How long ago the oldest event it has not applied was committed.
    pub behind_seconds: f64,
    /// Within the limits.
    pub ready: bool,
}

/// From this many events a batch is decoded on a blocking thread.
const DECODE_APART_FROM: usize = 256;

/// A batch of the log, decoded once for every projection.
struct Batch {
    /// Events read.
    n: usize,
    /// Whether the batch was cut by its size in events or in bytes: the log
    /// may go on after it.
    full: bool,
    /// The position of the last one.
    last: i64,
    decoded: Vec<Decoded>,
    /// Events that could not be decoded: (position, why).
    undecodable: Vec<(i64, String)>,
}

impl Batch {
    fn decode(stored: Vec<StoredEvent>, (limit, max_bytes): (i64, i64)) -> Batch {
        let n = stored.len();
        let bytes: usize = stored.iter().map(|e| e.payload.get().len()).sum();
        let full = n as i64 >= limit || bytes as i64 >= max_bytes;
        let last = stored.last().map(|e| e.position).unwrap_or(0);
        let upcasters = roster_events::upcasters();
        let mut decoded: Vec<Decoded> = Vec::with_capacity(n);
        let mut undecodable: Vec<(i64, String)> = Vec::new();
        let mut metas = MetaCache::default();
        for e in stored {
            let pos = e.position;
            match decode(e, &upcasters, &mut metas) {
                Ok(d) => decoded.push(d),
                Err(err) => undecodable.push((pos, err)),
            }
        }
        Batch {
            n,
            full,
            last,
            decoded,
            undecodable,
        }
    }
}

pub struct Projector {
    store: Store,
    projections: Vec<Arc<dyn Projection>>,
    prefix: String,
    batch_size: i64,
    /// A batch ends at the first event that brings its payloads' text to
    /// this many bytes ([`roster_store::log::READ_BUDGET_BYTES`]).
    batch_bytes: i64,
    lock_timeout: Duration,
    reached: watch::Sender<i64>,
    /// The next batch, read while the previous one was being applied:
    /// (the position it follows, its events).
    ahead: tokio::sync::Mutex<Option<(i64, Batch)>>,
    /// Events projected since the statistics were last refreshed.
    since_analyze: std::sync::atomic::AtomicI64,
    analyze_after: i64,
    /// A statistics refresh is running in the background.
    vacuuming: Arc<std::sync::atomic::AtomicBool>,
    /// Batches of at least this many events go in parallel lanes.
    parallel_from: usize,
    /// How many lanes at most; `None`: a quarter of the pool's connections.
    lanes: Option<usize>,
    /// Held by a step, and by a [`Beside`] from the moment it holds the
    /// projections' locks until it commits or gives up: this process's
    /// own steps wait for it here, not on the database's locks with a
    /// connection each.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// How much of an open append's text a [`Beside`] holds at most before
    /// it stops taking pieces.
    beside_bytes: i64,
    /// Events projected beside appends and committed, since start.
    projected_beside: std::sync::atomic::AtomicI64,
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
            batch_bytes: roster_store::log::READ_BUDGET_BYTES,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            reached: watch::channel(0).0,
            ahead: tokio::sync::Mutex::new(None),
            since_analyze: std::sync::atomic::AtomicI64::new(0),
            analyze_after: DEFAULT_ANALYZE_AFTER,
            vacuuming: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            parallel_from: DEFAULT_PARALLEL_FROM,
            lanes: None,
            gate: Arc::new(tokio::sync::Mutex::new(())),
            beside_bytes: DEFAULT_BESIDE_BYTES,
            projected_beside: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// How many events this projector has projected beside open appends
    /// (and committed after them) since it started.
    pub fn projected_beside(&self) -> i64 {
        self.projected_beside
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How much of an open append's JSON text a [`Beside`] holds at most
    /// ([`DEFAULT_BESIDE_BYTES`]); beyond it the rest of the append is
    /// projected from the log after its commit.
    pub fn with_beside_bytes(mut self, bytes: i64) -> Self {
        self.beside_bytes = bytes.max(0);
        self
    }

    /// Applies batches of at least `events` ([`DEFAULT_PARALLEL_FROM`]) in
    /// at most `lanes` parallel transactions on PostgreSQL (by default a
    /// quarter of the pool's connections); 1 lane: every batch in one.
    pub fn with_parallel_lanes(mut self, lanes: usize, events: usize) -> Self {
        self.lanes = Some(lanes.max(1));
        self.parallel_from = events.max(1);
        self
    }

    /// Refreshes the planner statistics after this many events in one go
    /// ([`DEFAULT_ANALYZE_AFTER`]).
    pub fn with_analyze_after(mut self, events: i64) -> Self {
        self.analyze_after = events.max(1);
        self
    }

    /// Counts a batch; at the end of a bulk (a batch that is not full after
    /// at least `analyze_after` events) refreshes the statistics of every
    /// projection table on PostgreSQL, in the background: the projector
    /// goes on with the next events meanwhile (after an initial sync of
    /// 100,000 users the vacuum takes seconds, and the run's own last
    /// event would otherwise wait for it; issue 17). One refresh at a time;
    /// a failure is logged, never fatal: autovacuum does the same later.
    async fn note_batch(&self, n: i64, full: bool) {
        use std::sync::atomic::Ordering;
        let total = self.since_analyze.fetch_add(n, Ordering::Relaxed) + n;
        if total < self.analyze_after || full {
            return;
        }
        let roster_store::Db::Pg(pool) = self.store.db() else {
            self.since_analyze.store(0, Ordering::Relaxed);
            return;
        };
        if self.vacuuming.swap(true, Ordering::AcqRel) {
            // The running refresh may have started before these events:
            // they count towards the next one.
            return;
        }
        self.since_analyze.store(0, Ordering::Relaxed);
        let pool = pool.clone();
        let busy = self.vacuuming.clone();
        let tables: Vec<String> = self
            .projections
            .iter()
            .flat_map(|p| p.tables().iter().map(|t| format!("{}{t}", self.prefix)))
            .collect();
        tokio::spawn(async move {
            let t = std::time::Instant::now();
            for table in &tables {
                // VACUUM too: without the visibility map it sets, the fresh
                // statistics choose index-only scans that read every heap
                // page (the customer list took 515 ms instead of 7 ms).
                let sql = format!("VACUUM (ANALYZE) {table}");
                if let Err(e) = sqlx::query(&sql).execute(&pool).await {
                    tracing::warn!(table, error = %e, "refreshing planner statistics failed; autovacuum will");
                }
            }
            tracing::info!(
                events = total,
                seconds = t.elapsed().as_secs_f64(),
                "planner statistics refreshed after a bulk of events"
            );
            busy.store(false, Ordering::Release);
        });
    }

    pub fn with_batch_size(mut self, n: i64) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Ends a batch at the first event that brings its payloads' text to
    /// `bytes` (at least one event a batch).
    pub fn with_batch_bytes(mut self, bytes: i64) -> Self {
        self.batch_bytes = bytes.max(1);
        self
    }

    /// How long a batch waits for a row lock before it is retried later
    /// (PostgreSQL `lock_timeout`).
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout.max(Duration::from_millis(1));
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
        let backend = self.store.db().backend();
        let mut tx = self.store.db().begin_write().await?;
        for p in &self.projections {
            let ddl = p.ddl(&self.prefix);
            for stmt in ddl.into_iter().chain(p.backend_ddl(&self.prefix, backend)) {
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

    /// Takes the locks of the projections of `lane` (indexes into the
    /// projections) for the transaction: a lock per projection, so that
    /// lanes of disjoint projections run at once in several processes and
    /// none applies a batch another is applying; taken in ascending order
    /// (no deadlock between lanes), under a shared hold of the projector
    /// lock that a swap of rebuilt tables (`rebuild`) takes exclusively.
    async fn lock(&self, tx: &mut Tx, lane: &[usize]) -> Result<(), ProjectionError> {
        if let Tx::Pg(t) = tx {
            let mut keys: Vec<i64> = lane
                .iter()
                .map(|&i| lock_key(&self.checkpoint_name(self.projections[i].as_ref())))
                .collect();
            keys.sort_unstable();
            let locks: String = keys
                .iter()
                .map(|k| format!(", pg_advisory_xact_lock({k})"))
                .collect();
            // One round trip: the locks, then a lock timeout for the
            // projection writes only (waiting for the projector locks
            // themselves is normal when several replicas project). The
            // commit does not wait for the WAL to reach the disk: a crash
            // can lose the last batches, but their rows and checkpoints
            // together, and they are projected again from the log.
            let sql = format!(
                "SELECT pg_advisory_xact_lock_shared({PROJECT_LOCK}){locks}; \
                 SET LOCAL lock_timeout = {}; SET LOCAL synchronous_commit = off",
                self.lock_timeout.as_millis().max(1)
            );
            sqlx::Executor::execute(&mut **t, sqlx::raw_sql(&sql)).await?;
        }
        Ok(())
    }

    /// The checkpoints of the projections of `lane`, in its order (one
    /// query).
    async fn read_checkpoints(
        &self,
        tx: &mut Tx,
        lane: &[usize],
    ) -> Result<Vec<i64>, ProjectionError> {
        let names: Vec<String> = lane
            .iter()
            .map(|&i| self.checkpoint_name(self.projections[i].as_ref()))
            .collect();
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT name, position FROM projection_checkpoints WHERE name IN ({})",
            marks.join(", ")
        );
        let rows: Vec<(String, i64)> = with_tx!(tx, |c| {
            let mut q = sqlx::query_as(&sql);
            for n in &names {
                q = q.bind(n);
            }
            q.fetch_all(c).await?
        });
        let found: std::collections::HashMap<String, i64> = rows.into_iter().collect();
        Ok(names
            .iter()
            .map(|n| found.get(n).copied().unwrap_or(0))
            .collect())
    }

    async fn write_checkpoint(
        tx: &mut Tx,
        name: &str,
        position: i64,
    ) -> Result<(), ProjectionError> {
        Self::write_checkpoints(tx, &[(name.to_string(), position)]).await
    }

    /// Sets several checkpoints in one statement.
    async fn write_checkpoints(
        tx: &mut Tx,
        checkpoints: &[(String, i64)],
    ) -> Result<(), ProjectionError> {
        if checkpoints.is_empty() {
            return Ok(());
        }
        let rows: Vec<String> = (0..checkpoints.len())
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect();
        let sql = format!(
            "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES {}
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
            rows.join(", ")
        );
        let now = now_micros();
        with_tx!(tx, |c| {
            let mut q = sqlx::query(&sql);
            for (name, position) in checkpoints {
                q = q.bind(name).bind(*position).bind(now);
            }
            q.execute(c).await.map(|_| ())?
        });
        Ok(())
    }

    /// Records one more failed attempt at an event; returns the attempts so far.
    async fn record_failure(
        tx: &mut Tx,
        name: &str,
        position: i64,
        error: &str,
    ) -> Result<i64, ProjectionError> {
        let attempts: i64 = with_tx!(tx, |c| {
            sqlx::query_scalar(
            "INSERT INTO projection_failures (name, position, error, failed_at, attempts) VALUES ($1, $2, $3, $4, 1)
             ON CONFLICT (name, position) DO UPDATE SET error = excluded.error,
               failed_at = excluded.failed_at, attempts = projection_failures.attempts + 1
             RETURNING attempts"
        )
        .bind(name)
        .bind(position)
        .bind(error)
        .bind(now_micros())
        .fetch_one(c)
        .await?
        });
        metrics::counter!("roster_projection_failures_total", "projection" => name.to_string())
            .increment(1);
        if attempts >= MAX_ATTEMPTS {
            metrics::counter!("roster_projection_skipped_total", "projection" => name.to_string())
                .increment(1);
            tracing::error!(
                projection = name,
                position,
                error,
                attempts,
                "projection failed on an event every time; recorded and SKIPPED for this projection"
            );
        } else {
            tracing::warn!(
                projection = name,
                position,
                error,
                attempts,
                "projection failed on an event; recorded, tried again later"
            );
        }
        Ok(attempts)
    }

    async fn clear_failure(tx: &mut Tx, name: &str, position: i64) -> Result<(), ProjectionError> {
        with_tx!(tx, |c| sqlx::query(
            "DELETE FROM projection_failures WHERE name = $1 AND position = $2"
        )
        .bind(name)
        .bind(position)
        .execute(c)
        .await
        .map(|_| ())?);
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

    /// The log's head and how far each projection is behind it, measured
    /// against `now` (microseconds since the epoch, the service's clock).
    pub async fn lag(
        &self,
        now_micros: i64,
        limits: LagLimits,
    ) -> Result<(i64, Vec<ProjectionLag>), ProjectionError> {
        let head = self.store.head_position().await?;
        let mut out = Vec::with_capacity(self.projections.len());
        for p in &self.projections {
            let name = self.checkpoint_name(p.as_ref());
            let position: i64 = roster_store::with_db!(self.store.db(), |c| sqlx::query_scalar(
                "SELECT position FROM projection_checkpoints WHERE name = $1"
            )
            .bind(&name)
            .fetch_optional(c)
            .await
            .map_err(StoreError::from)?)
            .unwrap_or(0);
            let behind_events = (head - position).max(0);
            let behind_seconds = if behind_events == 0 {
                0.0
            } else {
                match self.store.read_from(position, 1).await?.first() {
                    Some(e) => (now_micros - e.recorded_at).max(0) as f64 / 1e6,
                    None => 0.0,
                }
            };
            metrics::gauge!("roster_projection_lag_events", "projection" => name.clone())
                .set(behind_events as f64);
            let ready = behind_events <= limits.max_events
                || behind_seconds <= limits.max_age.as_secs_f64();
            out.push(ProjectionLag {
                name,
                position,
                behind_events,
                behind_seconds,
                ready,
            });
        }
        Ok((head, out))
    }

    /// How the projections are split into transactions for a batch of `n`
    /// events (indexes into the projections). On PostgreSQL a bulk batch
    /// is applied in several transactions at once, each on its own
    /// connection with its own checkpoints (issue 17: the user list, the
    /// audit trail and the directory objects of an initial sync were
    /// written one after the other, with the database using one core); a
    /// small batch, and every batch on SQLite (one writer), in one. By
    /// default at most a quarter of the pool's connections are taken.
    fn lanes(&self, n: usize) -> Vec<Vec<usize>> {
        let all: Vec<usize> = (0..self.projections.len()).collect();
        let parallel = match self.store.db() {
            roster_store::Db::Pg(_) if n >= self.parallel_from => self
                .lanes
                .unwrap_or(self.store.db().pool_max() as usize / 4)
                .clamp(1, all.len().max(1)),
            _ => 1,
        };
        if parallel <= 1 {
            return vec![all];
        }
        let mut lanes = vec![Vec::new(); parallel];
        for i in all {
            lanes[i % parallel].push(i);
        }
        lanes
    }

    /// Reads the batch of the log after `from` and decodes it. A bulk batch
    /// is decoded on a blocking thread: while the projector applies one
    /// batch it reads the next, and decoding 5,000 events inline would
    /// stall the lanes' statements polled in the same task (issue 17).
    async fn read_batch(&self, from: i64) -> Result<Batch, ProjectionError> {
        let started = std::time::Instant::now();
        let limit = (self.batch_size, self.batch_bytes);
        let stored = self.store.read_from_within(from, limit.0, limit.1).await?;
        let read_s = started.elapsed().as_secs_f64();
        let batch = if stored.len() >= DECODE_APART_FROM {
            tokio::task::spawn_blocking(move || Batch::decode(stored, limit))
                .await
                .map_err(|e| ProjectionError::Invalid(format!("decoding a batch: {e}")))?
        } else {
            Batch::decode(stored, limit)
        };
        if batch.n > 0 {
            tracing::debug!(
                events = batch.n,
                read_s,
                decode_s = started.elapsed().as_secs_f64() - read_s,
                "projector batch read"
            );
        }
        Ok(batch)
    }

    /// Projects one batch. Returns the number of events read (0 when caught up).
    pub async fn step(&self) -> Result<usize, ProjectionError> {
        let _gate = self.gate.lock().await;
        let all: Vec<usize> = (0..self.projections.len()).collect();
        // Where the batch starts: the smallest checkpoint, read under the
        // locks of every projection. A small batch is applied in this
        // transaction (as few round trips as one lane needs); a bulk one
        // lets it go and each lane takes its own locks and reads its own
        // checkpoints again (another process may move them meanwhile).
        let mut tx = self.store.db().begin_write().await?;
        self.lock(&mut tx, &all).await?;
        let checkpoints = self.read_checkpoints(&mut tx, &all).await?;
        let from = checkpoints.iter().copied().min().unwrap_or(0);
        // A batch read ahead is used only if it follows exactly where the
        // checkpoints are (another process may have moved them).
        let batch = match self.ahead.lock().await.take() {
            Some((after, batch)) if after == from && batch.n > 0 => batch,
            _ => self.read_batch(from).await?,
        };
        if batch.n == 0 {
            // Caught up: the end of a bulk that filled its last batch.
            self.note_batch(0, false).await;
            return Ok(0);
        }
        let Batch {
            n,
            full,
            last,
            decoded,
            undecodable,
        } = batch;
        // While this batch is applied, the next one is read and decoded (a
        // full batch suggests the log goes on): catching up is then bound
        // by the projections' writes, not by reading or decoding the log.
        let read_ahead = async {
            if full {
                self.read_batch(last).await.ok()
            } else {
                None
            }
        };
        let lanes = self.lanes(n);
        let mut opened = Some((tx, checkpoints));
        if lanes.len() > 1 {
            opened = None;
        }
        let apply =
            futures::future::join_all(lanes.iter().map(|lane| {
                self.apply_lane(lane, from, last, &decoded, &undecodable, opened.take())
            }));
        let (outcomes, next) = tokio::join!(apply, read_ahead);
        let mut applied = true;
        for outcome in outcomes {
            // Every lane has finished (committed or rolled back) by now:
            // the first error is returned, the others' work stays.
            applied &= outcome?;
        }
        if let Some(batch) = next {
            *self.ahead.lock().await = Some((last, batch));
        }
        metrics::counter!("roster_events_projected_total").increment(n as u64);
        if applied {
            metrics::gauge!("roster_projection_position").set(last as f64);
            self.reached.send_replace(last);
        }
        self.note_batch(n as i64, full).await;
        Ok(n)
    }

    /// Applies the batch to the projections of one lane in one transaction
    /// (`opened`: one already holding the lane's locks, with the lane's
    /// checkpoints read in it) and moves their checkpoints to `last`.
    /// False when a checkpoint of the lane was found behind `from` (moved
    /// back by a swap of rebuilt tables): nothing is applied, the next step
    /// starts from it. A deterministic failure, or an event that cannot be
    /// decoded, makes the lane go event by event ([`Self::step_one_by_one`]).
    async fn apply_lane(
        &self,
        lane: &[usize],
        from: i64,
        last: i64,
        decoded: &[Decoded],
        undecodable: &[(i64, String)],
        opened: Option<(Tx, Vec<i64>)>,
    ) -> Result<bool, ProjectionError> {
        let (mut tx, checkpoints) = match opened {
            Some(opened) => opened,
            None => self.open_lane(lane).await?,
        };
        if checkpoints.iter().any(|cp| *cp < from) {
            return Ok(false);
        }
        let mut failed = undecodable
            .iter()
            .any(|(pos, _)| checkpoints.iter().any(|cp| pos > cp));
        for (&i, cp) in lane.iter().zip(&checkpoints) {
            if failed {
                break;
            }
            let p = &self.projections[i];
            let mine: Vec<&Decoded> = decoded
                .iter()
                .filter(|d| d.position > *cp && crate::reads(p.as_ref(), &d.aggregate_type))
                .collect();
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
                if e.is_transient() {
                    return Err(e);
                }
                tracing::warn!(projection = p.name(), error = %e, "batch failed; retrying event by event");
                failed = true;
            }
        }
        if failed {
            drop(tx);
            self.step_one_by_one(lane, decoded, undecodable, &checkpoints, last)
                .await?;
            return Ok(true);
        }
        self.commit_lane(tx, lane, &checkpoints, last).await?;
        Ok(true)
    }

    /// A transaction holding the locks of the projections of `lane`, with
    /// their checkpoints as read inside them.
    async fn open_lane(&self, lane: &[usize]) -> Result<(Tx, Vec<i64>), ProjectionError> {
        let mut tx = self.store.db().begin_write().await?;
        self.lock(&mut tx, lane).await?;
        let checkpoints = self.read_checkpoints(&mut tx, lane).await?;
        Ok((tx, checkpoints))
    }

    /// Moves the checkpoints of `lane` (as read at its opening) to `last`
    /// and commits what the lane applied.
    async fn commit_lane(
        &self,
        mut tx: Tx,
        lane: &[usize],
        checkpoints: &[i64],
        last: i64,
    ) -> Result<(), ProjectionError> {
        // Never back: a projection ahead of the others (the others were
        // replayed after a version change) keeps its checkpoint.
        let moved: Vec<(String, i64)> = lane
            .iter()
            .zip(checkpoints)
            .map(|(&i, cp)| {
                (
                    self.checkpoint_name(self.projections[i].as_ref()),
                    last.max(*cp),
                )
            })
            .collect();
        Self::write_checkpoints(&mut tx, &moved).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The projections of `lane`, each event by itself: an event one fails
    /// on deterministically is recorded, tried again later and skipped after
    /// [`MAX_ATTEMPTS`].
    async fn step_one_by_one(
        &self,
        lane: &[usize],
        decoded: &[Decoded],
        undecodable: &[(i64, String)],
        checkpoints: &[i64],
        last: i64,
    ) -> Result<(), ProjectionError> {
        for (&i, cp) in lane.iter().zip(checkpoints) {
            let p = &self.projections[i];
            let name = self.checkpoint_name(p.as_ref());
            let mut items: Vec<(i64, Result<&Decoded, &str>)> = decoded
                .iter()
                .filter(|d| d.position > *cp)
                .map(|d| (d.position, Ok(d)))
                .chain(
                    undecodable
                        .iter()
                        .filter(|(pos, _)| pos > cp)
                        .map(|(pos, err)| (*pos, Err(err.as_str()))),
                )
                .collect();
            items.sort_by_key(|(pos, _)| *pos);
            for (position, item) in items {
                let mut tx = self.store.db().begin_write().await?;
                self.lock(&mut tx, &[i]).await?;
                let applied = match item {
                    Ok(d) => p.apply(&mut tx, &self.prefix, &[d]).await,
                    Err(why) => Err(ProjectionError::Invalid(why.to_string())),
                };
                match applied {
                    Ok(()) => {
                        Self::write_checkpoint(&mut tx, &name, position).await?;
                        Self::clear_failure(&mut tx, &name, position).await?;
                        tx.commit().await?;
                    }
                    // Nothing is known about the event: never recorded, never skipped.
                    Err(e) if e.is_transient() => return Err(e),
                    Err(e) => {
                        drop(tx);
                        let mut tx = self.store.db().begin_write().await?;
                        self.lock(&mut tx, &[i]).await?;
                        let attempts =
                            Self::record_failure(&mut tx, &name, position, &e.to_string()).await?;
                        if attempts < MAX_ATTEMPTS {
                            tx.commit().await?;
                            return Err(ProjectionError::Retrying {
                                projection: name,
                                position,
                                attempts,
                            });
                        }
                        Self::write_checkpoint(&mut tx, &name, position).await?;
                        tx.commit().await?;
                    }
                }
            }
            let mut tx = self.store.db().begin_write().await?;
            self.lock(&mut tx, &[i]).await?;
            Self::write_checkpoint(&mut tx, &name, last.max(*cp)).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Projects until the head of the log as it is now. Returns the position
    /// reached. An event a projection fails on deterministically is tried
    /// [`MAX_ATTEMPTS`] times, then skipped; a transient error is returned.
    pub async fn catch_up(&self) -> Result<i64, ProjectionError> {
        loop {
            match self.step().await {
                Ok(0) => break,
                Ok(_) | Err(ProjectionError::Retrying { .. }) => {}
                Err(e) => return Err(e),
            }
        }
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
        let mut backoff = BACKOFF_MIN;
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.step().await {
                Ok(n) if n > 0 => {
                    backoff = BACKOFF_MIN;
                    continue;
                }
                Ok(_) => backoff = BACKOFF_MIN,
                Err(e) => {
                    if e.is_transient() {
                        metrics::counter!("roster_projection_transient_errors_total").increment(1);
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                            "projector step failed on a transient database error; retrying, nothing skipped");
                    } else if matches!(e, ProjectionError::Retrying { .. }) {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "projector retries an event");
                    } else {
                        tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "projector step failed; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
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
