//! Projecting a bulk append's pieces while the append is still open
//! (issue 17).
//!
//! A sync run's events are one append in one transaction (D3.r: a run
//! changes all it found or nothing), so the projector could not start on
//! them before the commit: an initial sync of 100,000 users appended for
//! about 2.7 s and only then projected, for about 4.5 s, with most of a
//! core idle while it appended. A [`Beside`] takes each piece the append
//! has written (a [`roster_store::Tap`]: the events as the log will hold
//! them), decodes it once and hands it to the projector's lanes. Each lane
//! works through its own queue, in a transaction of its own that holds its
//! projections' locks and stays open; a lane is handed only the pieces
//! holding events its projections read ([`crate::Projection::reads`]), so
//! the directory objects' lane takes a run's objects while the user list's
//! lane is still on the run's users. Once the append has committed and
//! every lane has applied what it was handed, every lane moves its
//! checkpoints to the last piece taken and commits. The read models
//! therefore never show an event the log does not hold:
//!
//! - the append fails, rolls back or is dropped: the lanes roll back;
//! - the process stops before the lanes commit: their transactions end
//!   with their connections, and the projector projects the run from the
//!   log, as it does without a `Beside`;
//! - a lane fails, or the projections are not where the append begins
//!   (behind, or moved by another process): everything every lane applied
//!   rolls back and the projector projects the run from the log;
//! - a lane falls behind the append by more than the projector's
//!   `beside_bytes` of the JSON text of the events it reads, or the pieces
//!   not yet applied by every lane reach twice that (a million users): it
//!   stops taking pieces, commits what it took once the append has
//!   committed, and the projector projects the rest from the log.
//!
//! The append is never slowed to wait for the lanes: it holds the append
//! lock, which every other write of every customer waits for.
//!
//! While the lanes are open they hold the projections' locks: this
//! process's projector waits at its gate (without a connection), another
//! process's waits on the locks, as it waits for any batch. PostgreSQL
//! only: on SQLite the append holds the one writer.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_store::{PendingEvent, Tap, Tx};
use tokio::sync::{mpsc, oneshot, OwnedMutexGuard};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{Batch, Projector};
use crate::{Decoded, ProjectionError};

/// How much JSON text of an open append a lane of a [`Beside`] may have
/// been handed and not yet applied, counting only the events it reads,
/// before the `Beside` stops taking pieces: 16 MiB (the 100,000 users of
/// the sync bench are about 62 MB). The pieces not yet applied by every
/// lane are held to twice as much.
pub const DEFAULT_BESIDE_BYTES: i64 = 16 << 20;

/// How long a [`Beside`] waits for this process's projections to reach
/// the append's start before it leaves the append to the log.
const CATCH_UP: Duration = Duration::from_secs(5);

/// With fewer connections than this the lanes stay away from an open
/// append: held for the whole append, they would take what the rest of
/// the process needs.
const MIN_POOL: u32 = 8;

enum Msg {
    /// A written piece, its first position, and what it costs.
    Piece(i64, Vec<PendingEvent>, Charge),
    /// The append committed through this position.
    Commit(i64, oneshot::Sender<Option<i64>>),
}

/// What a lane is handed.
enum Work {
    /// A decoded piece holding events the lane reads, and their JSON text's
    /// length.
    Apply(Arc<Piece>, i64),
    /// A piece holding none of them: its first and last positions.
    Skip(i64, i64),
}

/// A decoded piece, shared by the lanes that read it; its JSON text is
/// counted as held until the last of them has applied it.
struct Piece {
    first: i64,
    batch: Batch,
    _charge: Charge,
}

/// The accounting shared by the tap, the pieces and the lanes.
struct Shared {
    /// Per lane: JSON text of the events it reads, taken and not yet
    /// applied by it.
    lag: Vec<AtomicI64>,
    /// JSON text of the pieces taken and not yet applied by every lane.
    held: AtomicI64,
    /// No more pieces are taken (a lane failed, the lanes did not open, or
    /// a piece could not be decoded).
    stopped: AtomicBool,
    /// The lanes will roll back: what they still hold is not applied.
    abandoned: AtomicBool,
    budget: i64,
}

impl Shared {
    /// Whether a piece of `total` bytes, of which each lane reads
    /// `per_lane`, fits: no lane would lag by more than the budget, and
    /// the pieces held would stay within twice the budget.
    fn admits(&self, total: i64, per_lane: &[i64]) -> bool {
        !self.stopped.load(Ordering::Acquire)
            && self.held.load(Ordering::Acquire) + total <= 2 * self.budget
            && per_lane
                .iter()
                .zip(&self.lag)
                .all(|(&b, lag)| b == 0 || lag.load(Ordering::Acquire) + b <= self.budget)
    }

    /// Counts a piece taken; what it holds is released as it is applied.
    fn take(self: &Arc<Self>, total: i64, per_lane: &[i64]) -> Charge {
        self.held.fetch_add(total, Ordering::AcqRel);
        for (&b, lag) in per_lane.iter().zip(&self.lag) {
            lag.fetch_add(b, Ordering::AcqRel);
        }
        Charge {
            shared: self.clone(),
            total,
            per_lane: per_lane.to_vec(),
        }
    }

    /// Nothing more is taken, and the lanes roll back.
    fn abandon(&self) {
        self.stopped.store(true, Ordering::Release);
        self.abandoned.store(true, Ordering::Release);
    }

    /// Lane `l` has applied (or will never apply) `bytes` of what it was
    /// handed.
    fn applied(&self, l: usize, bytes: i64) {
        self.lag[l].fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// A piece's bytes, released from `held` when it is dropped.
struct Charge {
    shared: Arc<Shared>,
    total: i64,
    per_lane: Vec<i64>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.shared.held.fetch_sub(self.total, Ordering::AcqRel);
    }
}

/// The aggregates a lane reads, for the tap's accounting: `None` for
/// every one (the lane itself filters by [`crate::Projection::reads`]).
type LaneReads = Option<Vec<&'static str>>;

fn lane_reads(reads: &LaneReads, aggregate_type: &str) -> bool {
    reads.as_ref().is_none_or(|r| r.contains(&aggregate_type))
}

/// The projection of an open append; see the module documentation.
/// Dropped before [`Beside::commit`], it rolls back.
pub struct Beside {
    sender: mpsc::UnboundedSender<Msg>,
    shared: Arc<Shared>,
    reads: Arc<Vec<LaneReads>>,
    after: i64,
}

/// A lane working through its queue, on a task of its own.
struct Lane {
    projections: Vec<usize>,
    checkpoints: Vec<i64>,
    work: mpsc::UnboundedSender<Work>,
    task: JoinHandle<Result<(Tx, i64), ProjectionError>>,
}

/// The lanes' open transactions, under this process's gate.
struct Lanes {
    _gate: OwnedMutexGuard<()>,
    lanes: Vec<Lane>,
}

impl Beside {
    /// What the append hands its written pieces to: it takes them in
    /// order from the append's first position, within the budget, and
    /// declines once one is out of order or over the budget.
    pub fn tap(&self) -> Tap {
        let sender = self.sender.clone();
        let shared = self.shared.clone();
        let reads = self.reads.clone();
        let mut next = self.after + 1;
        Box::new(move |first: i64, mut piece: Vec<PendingEvent>| {
            if piece.is_empty() {
                return true;
            }
            if first != next {
                return false;
            }
            let mut total = 0;
            let mut per_lane = vec![0i64; reads.len()];
            for e in &piece {
                let bytes = e.payload.len() as i64;
                total += bytes;
                for (l, r) in reads.iter().enumerate() {
                    if lane_reads(r, e.aggregate_type) {
                        per_lane[l] += bytes;
                    }
                }
            }
            if !shared.admits(total, &per_lane) {
                return false;
            }
            next = first + piece.len() as i64;
            // The claims were the append's; no projection reads them.
            for e in &mut piece {
                e.claims = Vec::new();
            }
            let charge = shared.take(total, &per_lane);
            sender.send(Msg::Piece(first, piece, charge)).is_ok()
        })
    }

    /// The append committed through `last`: lets every lane apply what it
    /// took, moves the checkpoints there and commits. The position the
    /// projections reached this way, or `None` when the log is left to
    /// project the append (from where the projections are).
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
        let lanes = self.lanes(usize::MAX);
        let reads: Vec<LaneReads> = lanes
            .iter()
            .map(|lane| {
                let mut all = Vec::new();
                for &i in lane {
                    all.extend(self.projections[i].reads()?.iter().copied());
                }
                Some(all)
            })
            .collect();
        let shared = Arc::new(Shared {
            lag: lanes.iter().map(|_| AtomicI64::new(0)).collect(),
            held: AtomicI64::new(0),
            stopped: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            budget: self.beside_bytes,
        });
        let reads = Arc::new(reads);
        let (sender, pieces) = mpsc::unbounded_channel();
        tokio::spawn(
            self.clone()
                .project_beside(after, lanes, pieces, shared.clone())
                .in_current_span(),
        );
        Some(Beside {
            sender,
            shared,
            reads,
            after,
        })
    }

    async fn project_beside(
        self: Arc<Self>,
        after: i64,
        lanes: Vec<Vec<usize>>,
        mut pieces: mpsc::UnboundedReceiver<Msg>,
        shared: Arc<Shared>,
    ) {
        let mut open = self.open_beside(after, lanes, &shared).await;
        if open.is_none() {
            shared.stopped.store(true, Ordering::Release);
        }
        let mut through = after;
        while let Some(msg) = pieces.recv().await {
            match msg {
                Msg::Piece(first, piece, charge) => {
                    if open.is_none()
                        || shared.stopped.load(Ordering::Acquire)
                        || first != through + 1
                    {
                        shared.stopped.store(true, Ordering::Release);
                        release(&shared, &charge);
                        continue;
                    }
                    match decode(piece, first).await {
                        Ok(Some(batch)) => {
                            through = batch.last;
                            if let Some(lanes) = &open {
                                hand_out(lanes, &shared, first, batch, charge);
                            }
                        }
                        // A piece it cannot decode: the log takes over from it.
                        Ok(None) => {
                            shared.stopped.store(true, Ordering::Release);
                            release(&shared, &charge);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, after, through,
                                "projecting beside an open append failed; rolled back, the log will be projected instead");
                            shared.stopped.store(true, Ordering::Release);
                            release(&shared, &charge);
                            roll_back(open.take(), &shared).await;
                        }
                    }
                }
                Msg::Commit(last, reply) => {
                    let reached = match open.take() {
                        Some(lanes) if through > after && through <= last => {
                            self.commit_beside(lanes, after, through, last).await
                        }
                        lanes => {
                            roll_back(lanes, &shared).await;
                            None
                        }
                    };
                    let _ = reply.send(reached);
                    return;
                }
            }
        }
        // The append ended without a commit.
        roll_back(open, &shared).await;
    }

    /// Waits for the projections to reach `after`, takes the gate and opens
    /// every lane with its locks, on a task of its own; `None` if a
    /// checkpoint is elsewhere.
    async fn open_beside(
        self: &Arc<Self>,
        after: i64,
        lanes: Vec<Vec<usize>>,
        shared: &Arc<Shared>,
    ) -> Option<Lanes> {
        if !self.wait_for(after, CATCH_UP).await {
            tracing::debug!(
                after,
                "projections behind an append's start; the log will be projected"
            );
            return None;
        }
        let gate = self.gate.clone().lock_owned().await;
        let mut opened = Vec::new();
        for lane in &lanes {
            match self.open_lane(lane).await {
                Ok((tx, checkpoints)) if checkpoints.iter().all(|&c| c == after) => {
                    opened.push((tx, checkpoints));
                }
                Ok((tx, checkpoints)) => {
                    tracing::debug!(
                        after,
                        ?checkpoints,
                        "projections not at an append's start; the log will be projected"
                    );
                    tx.rollback().await;
                    for (tx, _) in opened {
                        tx.rollback().await;
                    }
                    return None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "opening the projection beside an append failed; the log will be projected");
                    for (tx, _) in opened {
                        tx.rollback().await;
                    }
                    return None;
                }
            }
        }
        let lanes = lanes
            .into_iter()
            .zip(opened)
            .enumerate()
            .map(|(l, (projections, (tx, checkpoints)))| {
                let (work, queue) = mpsc::unbounded_channel();
                let task = tokio::spawn(
                    self.clone()
                        .run_lane(l, projections.clone(), tx, queue, shared.clone(), after)
                        .in_current_span(),
                );
                Lane {
                    projections,
                    checkpoints,
                    work,
                    task,
                }
            })
            .collect();
        Some(Lanes { _gate: gate, lanes })
    }

    /// One lane: applies what it is handed, in order, in its transaction;
    /// the transaction and the position it applied through once its queue
    /// is closed. On a failure it rolls back and stops the taking.
    async fn run_lane(
        self: Arc<Self>,
        l: usize,
        lane: Vec<usize>,
        mut tx: Tx,
        mut queue: mpsc::UnboundedReceiver<Work>,
        shared: Arc<Shared>,
        after: i64,
    ) -> Result<(Tx, i64), ProjectionError> {
        let mut through = after;
        let (mut pieces, mut events, mut busy) = (0usize, 0usize, 0f64);
        while let Some(work) = queue.recv().await {
            let (first, last) = match &work {
                Work::Apply(piece, _) => (piece.first, piece.batch.last),
                Work::Skip(first, last) => (*first, *last),
            };
            if first != through + 1 {
                shared.abandon();
                tx.rollback().await;
                return Err(ProjectionError::Invalid(format!(
                    "a lane beside an append was handed positions {first}-{last} after {through}"
                )));
            }
            if let Work::Apply(piece, bytes) = work {
                if shared.abandoned.load(Ordering::Acquire) {
                    shared.applied(l, bytes);
                    through = last;
                    continue;
                }
                let started = Instant::now();
                let mut applied = Ok(());
                for &i in &lane {
                    let p = &self.projections[i];
                    let theirs: Vec<&Decoded> = piece
                        .batch
                        .decoded
                        .iter()
                        .filter(|d| crate::reads(p.as_ref(), &d.aggregate_type))
                        .collect();
                    if theirs.is_empty() {
                        continue;
                    }
                    events += theirs.len();
                    applied = p.apply(&mut tx, &self.prefix, &theirs).await;
                    if applied.is_err() {
                        break;
                    }
                }
                shared.applied(l, bytes);
                if let Err(e) = applied {
                    shared.abandon();
                    tx.rollback().await;
                    return Err(e);
                }
                busy += started.elapsed().as_secs_f64();
                pieces += 1;
            }
            through = last;
        }
        tracing::debug!(
            lane = l,
            pieces,
            events,
            seconds = busy,
            through,
            "a lane beside the append applied what it was handed"
        );
        Ok((tx, through))
    }

    /// Waits for every lane to apply what it was handed, moves every
    /// lane's checkpoints to `through` and commits it; the position reached
    /// if every lane committed.
    async fn commit_beside(&self, open: Lanes, after: i64, through: i64, last: i64) -> Option<i64> {
        let Lanes { _gate, lanes } = open;
        let started = Instant::now();
        let finished = finish(lanes).await;
        let waited = started.elapsed().as_secs_f64();
        if !finished
            .iter()
            .all(|(_, _, done)| matches!(done, Ok((_, t)) if *t == through))
        {
            for (_, _, done) in &finished {
                if let Err(e) = done {
                    tracing::warn!(error = %e, after, through,
                        "projecting beside an open append failed; rolled back, the log will be projected instead");
                }
            }
            roll_back_finished(finished).await;
            return None;
        }
        let mut committed = true;
        for (lane, checkpoints, done) in finished {
            let Ok((tx, _)) = done else { continue };
            if let Err(e) = self.commit_lane(tx, &lane, &checkpoints, through).await {
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
            waited,
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

/// Decodes a piece that starts at `first`; `None` if it holds an event
/// that cannot be decoded (the projector's own handling of such events
/// then applies, from the log).
async fn decode(piece: Vec<PendingEvent>, first: i64) -> Result<Option<Batch>, ProjectionError> {
    let decoded = tokio::task::spawn_blocking(move || {
        roster_store::stored(piece, first).map(|s| Batch::decode(s, (i64::MAX, i64::MAX)))
    })
    .await
    .map_err(|e| ProjectionError::Invalid(format!("decoding a piece: {e}")))?;
    Ok(decoded.filter(|b| b.undecodable.is_empty()))
}

/// Hands a decoded piece to every lane: the piece itself to those that
/// read some of its events, its positions to the others.
fn hand_out(open: &Lanes, shared: &Arc<Shared>, first: i64, batch: Batch, charge: Charge) {
    let last = batch.last;
    let per_lane = charge.per_lane.clone();
    let piece = Arc::new(Piece {
        first,
        batch,
        _charge: charge,
    });
    for (l, lane) in open.lanes.iter().enumerate() {
        let bytes = per_lane[l];
        let work = if bytes > 0 {
            Work::Apply(piece.clone(), bytes)
        } else {
            Work::Skip(first, last)
        };
        // A lane that stopped has failed: the commit finds it.
        if lane.work.send(work).is_err() {
            shared.applied(l, bytes);
            shared.stopped.store(true, Ordering::Release);
        }
    }
}

/// A piece that will not be handed out: its lanes' lag is released (what it
/// holds goes with the charge).
fn release(shared: &Shared, charge: &Charge) {
    for (l, &b) in charge.per_lane.iter().enumerate() {
        shared.applied(l, b);
    }
}

type Finished = Vec<(Vec<usize>, Vec<i64>, Result<(Tx, i64), ProjectionError>)>;

/// Closes every lane's queue and waits for it to apply what it holds.
async fn finish(lanes: Vec<Lane>) -> Finished {
    let mut finished = Vec::with_capacity(lanes.len());
    for Lane {
        projections,
        checkpoints,
        work,
        task,
    } in lanes
    {
        drop(work);
        let done = task
            .await
            .map_err(|e| ProjectionError::Invalid(format!("a lane beside an append: {e}")))
            .and_then(|done| done);
        finished.push((projections, checkpoints, done));
    }
    finished
}

async fn roll_back_finished(finished: Finished) {
    for (_, _, done) in finished {
        if let Ok((tx, _)) = done {
            tx.rollback().await;
        }
    }
}

/// Rolls the lanes back, without applying what they still hold (and lets
/// this process's projector go on).
async fn roll_back(open: Option<Lanes>, shared: &Shared) {
    shared.abandon();
    if let Some(Lanes { _gate, lanes }) = open {
        roll_back_finished(finish(lanes).await).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(lanes: usize, budget: i64) -> Arc<Shared> {
        Arc::new(Shared {
            lag: (0..lanes).map(|_| AtomicI64::new(0)).collect(),
            held: AtomicI64::new(0),
            stopped: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            budget,
        })
    }

    #[test]
    fn i17_a_lane_at_its_budget_does_not_refuse_a_piece_it_does_not_read() {
        // Lanes: 0 the user list, 1 the directory objects.
        let s = shared(2, 100);
        let users = s.take(100, &[100, 0]);
        // The user list's lane is at its budget: more users are refused...
        assert!(!s.admits(10, &[10, 0]));
        // ...but not objects, which only the other lane reads.
        assert!(s.admits(60, &[0, 60]));
        let objects = s.take(60, &[0, 60]);
        // Held pieces stay within twice the budget.
        assert!(!s.admits(60, &[0, 30]));
        assert!(s.admits(40, &[0, 40]));
        // The user list's lane catching up lets users in again.
        s.applied(0, 100);
        drop(users);
        assert!(s.admits(10, &[10, 0]));
        drop(objects);
        assert_eq!(s.held.load(Ordering::Acquire), 0);
        s.abandon();
        assert!(!s.admits(1, &[1, 0]), "an abandoned Beside takes nothing");
    }
}
