//! A bulk append written piece by piece in one transaction (issue 17).
//!
//! A sync of 100,000 users stages 100,000 events with their claims. Staged
//! whole and then appended, every event's text is held at once (a hundred
//! megabytes at that size, a gigabyte at a million). A [`StreamedAppend`]
//! takes the append lock first and then writes what its caller has staged
//! so far, as often as the caller likes, so the caller holds one piece at
//! a time. It is still one append: every event with its claims and guards,
//! or none (nothing is visible before [`StreamedAppend::commit`]; an error
//! or a drop rolls everything back), with gapless positions from the head
//! and one `recorded_at` (E6), as [`Store::append`] gives.
//!
//! While it is open it holds the append lock (PostgreSQL) or the write
//! transaction (SQLite): other appends wait for it, as they wait for a
//! bulk append. Its caller must therefore not write to the database
//! through the pool, nor wait for anything that does, until it commits.
//! A failed write rolls it back at once, and so does dropping it (on a
//! task of its own), rather than leaving the rollback, and with it the
//! append lock, to the pool's handling of a dropped transaction.
//!
//! A [`Tap`] sees every piece once it is written, as the log will hold it
//! (positions, commit time, the JSON text): the projector applies a run's
//! pieces while the append is still open and commits them after it
//! (`roster_projections::Beside`).

use std::sync::Arc;

use roster_events::{CustomerId, Domain, Guard};

use crate::log::{notify, write_piece};
use crate::{claims, Appended, Batch, PendingEvent, RawJson, Store, StoreError, StoredEvent, Tx};

/// Takes each piece of a streamed append once it is written (not yet
/// committed: nothing of it may be shown before the append commits), with
/// the position of its first event and `recorded_at` stamped ([`stored`]
/// gives them as the log will); false when it wants no more pieces.
pub type Tap = Box<dyn FnMut(i64, Vec<PendingEvent>) -> bool + Send>;

/// An append being written in pieces; see the module documentation.
pub struct StreamedAppend {
    /// `None` once committed or rolled back.
    tx: Option<Tx>,
    first: i64,
    next: i64,
    at: i64,
    released: Vec<(CustomerId, Domain)>,
    guards: Vec<(CustomerId, Guard)>,
    started: std::time::Instant,
    tap: Option<Tap>,
}

impl Store {
    /// Begins a streamed append: takes the append lock and reads the head.
    pub async fn begin_streamed(&self) -> Result<StreamedAppend, StoreError> {
        let started = std::time::Instant::now();
        let (tx, head, at) = self.begin_append().await?;
        Ok(StreamedAppend {
            tx: Some(tx),
            first: head + 1,
            next: head + 1,
            at,
            released: Vec::new(),
            guards: Vec::new(),
            started,
            tap: None,
        })
    }
}

impl StreamedAppend {
    /// How many events are written so far.
    pub fn count(&self) -> usize {
        (self.next - self.first) as usize
    }

    /// The position of the first event it appends.
    pub fn first(&self) -> i64 {
        self.first
    }

    /// Hands every piece written from now on to `tap`, until it declines.
    pub fn tap(&mut self, tap: Tap) {
        self.tap = Some(tap);
    }

    /// Writes what `batch` has staged so far, with its claims, and empties
    /// it (its guards are checked at the commit). The aggregates the batch
    /// staged against keep their versions: the caller stages on. An error
    /// rolls the whole append back.
    pub async fn write(&mut self, batch: &mut Batch) -> Result<(), StoreError> {
        let written = self.write_open(batch).await;
        if written.is_err() {
            self.abort().await;
        }
        written
    }

    async fn write_open(&mut self, batch: &mut Batch) -> Result<(), StoreError> {
        let tx = self.tx.as_mut().ok_or_else(ended)?;
        let (mut events, guards) = batch.take();
        for g in guards {
            if !self.guards.contains(&g) {
                self.guards.push(g);
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        write_piece(tx, &mut events, self.next, self.at, &mut self.released).await?;
        let first = self.next;
        self.next += events.len() as i64;
        if let Some(tap) = self.tap.as_mut() {
            if !tap(first, events) {
                self.tap = None;
            }
        }
        Ok(())
    }

    /// Writes what `batch` still holds, checks the deferred conditions and
    /// the guards, and commits. An append that wrote nothing is rolled
    /// back and appends nothing.
    pub async fn commit(
        mut self,
        store: &Store,
        batch: &mut Batch,
    ) -> Result<Appended, StoreError> {
        self.write(batch).await?;
        let count = self.count();
        if count == 0 {
            self.abort().await;
            return Ok(Appended::default());
        }
        let last = self.next - 1;
        let written_s = self.started.elapsed().as_secs_f64();
        let checked = match self.tx.as_mut() {
            Some(tx) => match claims::check(tx, &self.released, &self.guards).await {
                Ok(()) => notify(tx, last).await,
                Err(e) => Err(e),
            },
            None => Err(ended()),
        };
        if let Err(e) = checked {
            self.abort().await;
            return Err(e);
        }
        self.tx.take().ok_or_else(ended)?.commit().await?;
        tracing::debug!(
            events = count,
            write_s = written_s,
            commit_s = self.started.elapsed().as_secs_f64() - written_s,
            "streamed append"
        );
        metrics::histogram!("roster_append_seconds").record(self.started.elapsed().as_secs_f64());
        store.advance_head(last, count);
        Ok(Appended {
            first: self.first,
            last,
            count,
        })
    }

    /// Rolls the append back: nothing of it is appended.
    pub async fn rollback(mut self) {
        self.abort().await;
    }

    async fn abort(&mut self) {
        if let Some(tx) = self.tx.take() {
            tx.rollback().await;
        }
    }
}

impl Drop for StreamedAppend {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(tx.rollback());
            }
        }
    }
}

/// Events a streamed append wrote, as a read of the log will give them
/// (`first`: the first's position; `recorded_at` as stamped). `None` if a
/// text is not JSON, which the database would have refused.
pub fn stored(events: Vec<PendingEvent>, first: i64) -> Option<Vec<StoredEvent>> {
    let mut shared: Option<(Arc<str>, RawJson)> = None;
    let mut out = Vec::with_capacity(events.len());
    for (position, e) in (first..).zip(events) {
        let metadata = match &shared {
            Some((text, raw)) if Arc::ptr_eq(text, &e.metadata) => raw.clone(),
            _ => {
                let raw = RawJson::from_text(e.metadata.to_string()).ok()?;
                shared = Some((e.metadata.clone(), raw.clone()));
                raw
            }
        };
        out.push(StoredEvent {
            position,
            aggregate_type: e.aggregate_type.to_string(),
            aggregate_id: e.aggregate_id,
            sequence: e.sequence,
            event_type: e.event_type,
            event_version: e.event_version,
            payload: RawJson::from_text(e.payload).ok()?,
            metadata,
            customer_id: Some(e.customer_id.to_string()),
            recorded_at: e.recorded_at,
        });
    }
    Some(out)
}

fn ended() -> StoreError {
    StoreError::Inconsistent("the streamed append has already ended".into())
}
