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

use roster_events::{CustomerId, Domain, Guard};

use crate::log::{notify, write_piece};
use crate::{claims, Appended, Batch, Store, StoreError, Tx};

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
        })
    }
}

impl StreamedAppend {
    /// How many events are written so far.
    pub fn count(&self) -> usize {
        (self.next - self.first) as usize
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
        self.next += events.len() as i64;
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

fn ended() -> StoreError {
    StoreError::Inconsistent("the streamed append has already ended".into())
}
