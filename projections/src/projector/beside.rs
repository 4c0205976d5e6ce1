//! Projecting a bulk append's pieces while the append is still open
//! (issue 17).
//!
//! A sync run's events are one append in one transaction (D3.r: a run
//! changes all it found or nothing), so the projector could not start on
//! them before the commit: an initial sync of 100,000 users appended for
//! about 2.7 s and only then projected, for about 4.5 s, with most of a
//! core idle while it appended. A [`Beside`] takes each piece the append has written
//! (a [`roster_store::Tap`]: the events as the log will hold them) and
//! applies it in the projector's lanes, each lane in a transaction of its
//! own that holds its projections' locks and stays open. Once the append
//! has committed, every lane moves its checkpoints to the last piece it
//! applied and commits. The read models therefore never show an event the
//! log does not hold:
//!
//! - the append fails, rolls back or is dropped: the lanes roll back;
//! - the process stops before the lanes commit: their transactions end
//!   with their connections, and the projector projects the run from the
//!   log, as it does without a `Beside`;
//! - a lane fails, or the projections are not where the append begins
//!   (behind, or moved by another process): everything it applied rolls
//!   back and the projector projects the run from the log;
//! - the lanes fall behind the append by more than the projector's
//!   `beside_bytes` of JSON text (a million users): it stops taking
//!   pieces, commits what it applied once the append has committed, and
//!   the projector projects the rest from the log.
//!
//! The append is never slowed to wait for the lanes: it holds the append
//! lock, which every other write of every customer waits for.
//!
//! While the lanes are open they hold the projections' locks: this
//! process's projector waits at its gate (without a connection), another
//! process's waits on the locks, as it waits for any batch. PostgreSQL
//! only: on SQLite the append holds the one writer.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use roster_store::{PendingEvent, Tap, Tx};
use tokio::sync::{mpsc, oneshot, OwnedMutexGuard};
use tracing::Instrument;

use super::{Batch, Projector};
use crate::{Decoded, ProjectionError};

/// How much JSON text of an open append a [`Beside`] holds, written but
/// not yet applied, before it stops taking pieces: 16 MiB (the 100,000
/// users of the sync bench are about 62 MB; their lanes take all of the
/// run's events but its last few).
pub const DEFAULT_BESIDE_BYTES: i64 = 16 << 20;

/// How long a [`Beside`] waits for this process's projections to reach
/// the append's start before it leaves the append to the log.
const CATCH_UP: Duration = Duration::from_secs(5);

/// With fewer connections than this the lanes stay away from an open
/// append: held for the whole append, they would take what the rest of
/// the process needs.
const MIN_POOL: u32 = 8;

enum Msg {
    /// A written piece, its first position and its JSON text's length.
    Piece(i64, Vec<PendingEvent>, i64),
    /// The append committed through this position.
    Commit(i64, oneshot::Sender<Option<i64>>),
}

/// The projection of an open append; see the module documentation.
/// Dropped before [`Beside::commit`], it rolls back.
pub struct Beside {
    sender: mpsc::UnboundedSender<Msg>,
    queued: Arc<AtomicI64>,
    budget: i64,
    after: i64,
}

/// The lanes' open transactions, under this process's gate.
struct Lanes {
    _gate: OwnedMutexGuard<()>,
    /// Each lane's projections, transaction and checkpoints as opened.
    lanes: Vec<(Vec<usize>, Tx, Vec<i64>)>,
}

impl Beside {
    /// What the append hands its written pieces to: it takes them in
    /// order from the append's first position, within the budget, and
    /// declines once one is out of order or over the budget.
    pub fn tap(&self) -> Tap {
        let sender = self.sender.clone();
        let queued = self.queued.clone();
        let budget = self.budget;
        let mut next = self.after + 1;
        Box::new(move |first: i64, mut piece: Vec<PendingEvent>| {
            if piece.is_empty() {
                return true;
            }
            if first != next {
                return false;
            }
            let bytes: i64 = piece.iter().map(|e| e.payload.len() as i64).sum();
            if queued.load(Ordering::Acquire) + bytes > budget {
                return false;
            }
            next = first + piece.len() as i64;
            // The claims were the append's; no projection reads them.
            for e in &mut piece {
                e.claims = Vec::new();
            }
            queued.fetch_add(bytes, Ordering::AcqRel);
            sender.send(Msg::Piece(first, piece, bytes)).is_ok()
        })
    }

    /// The append committed through `last`: applies what it took, moves the
    /// checkpoints there and commits. The position the projections reached
    /// this way, or `None` when the log is left to project the append
    /// (from where the projections are).
    pub async fn commit(self, last: i64) -> Option<i64> {
        let (reply, answer) = oneshot::channel();
        self.sender.send(Msg::Commit(last, reply)).ok()?;
        answer.await.ok().flatten()
    }
}

impl Projector {
    /// Opens the projection of an append whose events follow position
    /// `after` (PostgreSQL, with at least [`MIN_POOL`] connections and a
    /// budget; `None` otherwise). The lanes open on a task of their own:
    /// the append goes on meanwhile.
    pub fn beside(self: &Arc<Self>, after: i64) -> Option<Beside> {
        let roster_store::Db::Pg(_) = self.store.db() else {
            return None;
        };
        if self.beside_bytes == 0 || self.store.db().pool_max() < MIN_POOL {
            return None;
        }
        let (sender, pieces) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicI64::new(0));
        tokio::spawn(
            self.clone()
                .project_beside(after, pieces, queued.clone())
                .in_current_span(),
        );
        Some(Beside {
            sender,
            queued,
            budget: self.beside_bytes,
            after,
        })
    }

    async fn project_beside(
        self: Arc<Self>,
        after: i64,
        mut pieces: mpsc::UnboundedReceiver<Msg>,
        queued: Arc<AtomicI64>,
    ) {
        let mut lanes = self.open_beside(after).await;
        let mut through = after;
        let mut taking = lanes.is_some();
        while let Some(msg) = pieces.recv().await {
            match msg {
                Msg::Piece(first, piece, bytes) => {
                    queued.fetch_sub(bytes, Ordering::AcqRel);
                    let Some(open) = lanes.as_mut().filter(|_| taking) else {
                        continue;
                    };
                    match self.apply_beside(open, first, piece, through).await {
                        Ok(Some(last)) => through = last,
                        // A piece it cannot decode: the log takes over from it.
                        Ok(None) => taking = false,
                        Err(e) => {
                            tracing::warn!(error = %e, after, through,
                                "projecting beside an open append failed; rolled back, the log will be projected instead");
                            roll_back(lanes.take()).await;
                        }
                    }
                }
                Msg::Commit(last, reply) => {
                    let reached = match lanes.take() {
                        Some(open) if through > after && through <= last => {
                            self.commit_beside(open, after, through, last).await
                        }
                        open => {
                            roll_back(open).await;
                            None
                        }
                    };
                    let _ = reply.send(reached);
                    return;
                }
            }
        }
        // The append ended without a commit.
        roll_back(lanes).await;
    }

    /// Waits for the projections to reach `after`, takes the gate and opens
    /// every lane with its locks; `None` if a checkpoint is elsewhere.
    async fn open_beside(&self, after: i64) -> Option<Lanes> {
        if !self.wait_for(after, CATCH_UP).await {
            tracing::debug!(
                after,
                "projections behind an append's start; the log will be projected"
            );
            return None;
        }
        let gate = self.gate.clone().lock_owned().await;
        let mut lanes = Vec::new();
        for lane in self.lanes(usize::MAX) {
            match self.open_lane(&lane).await {
                Ok((tx, checkpoints)) if checkpoints.iter().all(|&c| c == after) => {
                    lanes.push((lane, tx, checkpoints));
                }
                Ok((_, checkpoints)) => {
                    tracing::debug!(
                        after,
                        ?checkpoints,
                        "projections not at an append's start; the log will be projected"
                    );
                    return None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "opening the projection beside an append failed; the log will be projected");
                    return None;
                }
            }
        }
        Some(Lanes { _gate: gate, lanes })
    }

    /// Applies a piece that follows `through` in every lane at once; the
    /// position of its last event, or `None` if it does not follow or holds
    /// an event that cannot be decoded (the projector's own handling of
    /// such events then applies).
    async fn apply_beside(
        &self,
        open: &mut Lanes,
        first: i64,
        piece: Vec<PendingEvent>,
        through: i64,
    ) -> Result<Option<i64>, ProjectionError> {
        if first != through + 1 {
            return Ok(None);
        }
        let decoded = tokio::task::spawn_blocking(move || {
            roster_store::stored(piece, first).map(|s| Batch::decode(s, (i64::MAX, i64::MAX)))
        })
        .await
        .map_err(|e| ProjectionError::Invalid(format!("decoding a piece: {e}")))?;
        let Some(batch) = decoded.filter(|b| b.undecodable.is_empty()) else {
            return Ok(None);
        };
        let events: Vec<&Decoded> = batch.decoded.iter().collect();
        let applied = futures::future::join_all(open.lanes.iter_mut().map(|(lane, tx, _)| {
            let events = &events;
            async move {
                for &i in lane.iter() {
                    self.projections[i].apply(tx, &self.prefix, events).await?;
                }
                Ok::<(), ProjectionError>(())
            }
        }))
        .await;
        for outcome in applied {
            outcome?;
        }
        Ok(Some(batch.last))
    }

    /// Moves every lane's checkpoints to `through` and commits it; the
    /// position reached if every lane committed.
    async fn commit_beside(&self, open: Lanes, after: i64, through: i64, last: i64) -> Option<i64> {
        let Lanes { _gate, lanes } = open;
        let mut committed = true;
        for (lane, tx, checkpoints) in lanes {
            let done = self.commit_lane(tx, &lane, &checkpoints, through).await;
            if let Err(e) = done {
                tracing::warn!(error = %e, through,
                    "committing the projection beside an append failed; the log will be projected");
                committed = false;
            }
        }
        let n = through - after;
        tracing::debug!(
            events = n,
            through,
            last,
            committed,
            "projected beside the append"
        );
        if !committed {
            return None;
        }
        metrics::counter!("roster_events_projected_total").increment(n as u64);
        metrics::counter!("roster_events_projected_beside_total").increment(n as u64);
        self.projected_beside.fetch_add(n, Ordering::Relaxed);
        metrics::gauge!("roster_projection_position").set(through as f64);
        self.reached.send_replace(through);
        self.note_batch(n, through < last).await;
        Some(through)
    }
}

/// Rolls the lanes back (and lets this process's projector go on).
async fn roll_back(open: Option<Lanes>) {
    if let Some(Lanes { _gate, lanes }) = open {
        for (_, tx, _) in lanes {
            tx.rollback().await;
        }
    }
}
