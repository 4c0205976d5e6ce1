//! Group commit (issue 17): concurrent appends of one process share one
//! transaction, one append lock and one commit.
//!
//! Every [`Store::append`] queues its events here. The first caller that
//! finds the committer idle starts a committer task, which takes every
//! append waiting, appends them in one transaction and answers each caller;
//! then takes what queued meanwhile, until nothing is left. So the appends
//! that arrive while one transaction is being committed are committed
//! together by the next, with one fsync.
//!
//! One caller's refusal never takes the others down: a group is first
//! written as a whole (one INSERT for every event, set-wise claims, every
//! guard checked once at the end); if anything refuses, it is rolled back
//! and written again with each append in its own SAVEPOINT, so that a stale
//! version (E1), an address already claimed (U1), an unmanaged domain (T2)
//! or a full seat limit (T3) rolls back only the append that caused it, and
//! that caller gets the error it would have had alone.
//!
//! What stays true:
//! - positions are gapless and in commit order: the group holds the append
//!   lock, numbers its appends one after the other from the head, and a
//!   refused append takes no positions;
//! - `recorded_at` is one time for the group, never before the head's (E6);
//! - claims are applied in the same order as one by one; the whole-group
//!   attempt is used only when checking guards and released domains once at
//!   the end is the same as checking them after each append (see
//!   [`shareable`]).
//!
//! A bulk append (a sync or an import, [`PG_COPY_FROM`] events or more) is
//! committed alone, as before.

use std::collections::VecDeque;
use std::sync::Mutex;

use roster_events::{ClaimChange, CustomerId, Guard};
use tokio::sync::oneshot;

use crate::log::{notify, write_append, write_events, PendingEvent, PG_COPY_FROM};
use crate::{claims, Appended, Store, StoreError, Tx};

/// At most this many appends are committed together.
const MAX_GROUP: usize = 256;
/// A group stops growing at this many events (it stays an INSERT, not a COPY).
const MAX_GROUP_EVENTS: usize = PG_COPY_FROM;

type Answer = oneshot::Sender<Result<Appended, StoreError>>;

/// One caller's append, waiting to be committed.
struct Request {
    events: Vec<PendingEvent>,
    guards: Vec<(CustomerId, Guard)>,
    answer: Answer,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Request>,
    /// A committer task is running (it takes what is waiting).
    running: bool,
}

/// The appends of this process waiting to be committed.
#[derive(Default)]
pub(crate) struct Committer {
    queue: Mutex<Queue>,
}

impl Committer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an append; the answer comes when it is committed or refused.
    pub(crate) fn submit(
        &self,
        store: &Store,
        events: Vec<PendingEvent>,
        guards: Vec<(CustomerId, Guard)>,
    ) -> oneshot::Receiver<Result<Appended, StoreError>> {
        let (answer, receiver) = oneshot::channel();
        let start = {
            let mut q = self.lock();
            q.waiting.push_back(Request {
                events,
                guards,
                answer,
            });
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            tokio::spawn(run(store.clone()));
        }
        receiver
    }

    /// The next group: what is waiting, up to the limits; a bulk append
    /// alone. `None` (and the committer idle) when nothing is waiting.
    fn next_group(&self) -> Option<Vec<Request>> {
        let mut q = self.lock();
        // A caller that is gone (its request was cancelled) is not appended.
        q.waiting.retain(|r| !r.answer.is_closed());
        let Some(first) = q.waiting.pop_front() else {
            q.running = false;
            return None;
        };
        let mut events = first.events.len();
        let mut group = vec![first];
        while events < MAX_GROUP_EVENTS && group.len() < MAX_GROUP {
            match q.waiting.front() {
                Some(r) if events + r.events.len() <= MAX_GROUP_EVENTS => {
                    events += r.events.len();
                    group.extend(q.waiting.pop_front());
                }
                _ => break,
            }
        }
        Some(group)
    }
}

/// Marks the committer idle if its task ends early (its runtime shuts
/// down, or it panics): the next append starts a new one.
struct Running {
    committer: std::sync::Arc<Committer>,
    done: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            self.committer.lock().running = false;
        }
    }
}

/// The committer task: commits groups until nothing is waiting.
async fn run(store: Store) {
    let mut running = Running {
        committer: store.committer.clone(),
        done: false,
    };
    while let Some(group) = running.committer.next_group() {
        commit_group(&store, group).await;
    }
    running.done = true;
}

/// One append as the group writes it.
struct Staged {
    events: Vec<PendingEvent>,
    guards: Vec<(CustomerId, Guard)>,
}

/// Commits one group and answers its callers.
async fn commit_group(store: &Store, group: Vec<Request>) {
    metrics::histogram!("roster_append_group_size").record(group.len() as f64);
    let (mut staged, answers): (Vec<Staged>, Vec<Answer>) = group
        .into_iter()
        .map(|r| {
            let staged = Staged {
                events: r.events,
                guards: r.guards,
            };
            (staged, r.answer)
        })
        .unzip();
    let results = if staged.len() == 1 {
        let one = staged.pop().expect("one append");
        vec![store.append_alone(one.events, &one.guards).await]
    } else {
        append_group(store, &mut staged).await
    };
    for (answer, result) in answers.into_iter().zip(results) {
        let _ = answer.send(result);
    }
}

/// How the whole-group attempt ended.
enum Together {
    Committed(Vec<Appended>),
    /// Something refused before the commit: rolled back, nothing written.
    Refused,
    /// The commit itself failed: its outcome is unknown to the callers.
    CommitFailed(StoreError),
}

async fn append_group(store: &Store, staged: &mut [Staged]) -> Vec<Result<Appended, StoreError>> {
    if shareable(staged) {
        match together(store, staged).await {
            Together::Committed(done) => return done.into_iter().map(Ok).collect(),
            Together::CommitFailed(e) => {
                return staged.iter().map(|_| Err(e.replicate())).collect()
            }
            Together::Refused => {}
        }
    }
    each_in_a_savepoint(store, staged).await
}

/// Whether checking the group's guards and released domains once, after
/// all of its claims, gives the same answer as checking them after each
/// append. Guards (the seat limit, T3) are exact at the end when, within
/// the group, seats are only taken and limits do not change; a released
/// domain's emptiness is checked after each append alone.
fn shareable(staged: &[Staged]) -> bool {
    let guarded = staged.iter().any(|s| !s.guards.is_empty());
    staged
        .iter()
        .flat_map(|s| &s.events)
        .flat_map(|e| &e.claims)
        .all(|c| match c {
            ClaimChange::ReleaseDomain { .. } => false,
            ClaimChange::ClaimAddress { .. } | ClaimChange::ClaimDomain { .. } => true,
            ClaimChange::RegisterCustomer { .. }
            | ClaimChange::SetSeatLimit { .. }
            | ClaimChange::ReleaseAddress { .. }
            | ClaimChange::SetSeat { .. } => !guarded,
        })
}

/// The whole group in one go: one INSERT, the claims set-wise, each
/// customer's guards once.
async fn together(store: &Store, staged: &mut [Staged]) -> Together {
    let (mut tx, head, at) = match store.begin_append().await {
        Ok(v) => v,
        Err(_) => return Together::Refused,
    };
    let mut done = Vec::with_capacity(staged.len());
    let mut next = head + 1;
    for s in staged.iter_mut() {
        for e in &mut s.events {
            e.recorded_at = at;
        }
        let count = s.events.len();
        done.push(Appended {
            first: next,
            last: next + count as i64 - 1,
            count,
        });
        next += count as i64;
    }
    let last = next - 1;
    let mut guards: Vec<(CustomerId, Guard)> = Vec::new();
    for g in staged.iter().flat_map(|s| &s.guards) {
        if !guards.contains(g) {
            guards.push(g.clone());
        }
    }
    let events: Vec<&PendingEvent> = staged.iter().flat_map(|s| &s.events).collect();
    if let Err(e) = write_together(&mut tx, &events, &guards, head + 1).await {
        tracing::debug!(error = %e, appends = staged.len(), "a grouped append was refused; appending each alone");
        tx.rollback().await;
        return Together::Refused;
    }
    match finish(tx, last).await {
        Ok(()) => {
            store.advance_head(last, events.len());
            Together::Committed(done)
        }
        Err(e) => Together::CommitFailed(e),
    }
}

async fn write_together(
    tx: &mut Tx,
    events: &[&PendingEvent],
    guards: &[(CustomerId, Guard)],
    first: i64,
) -> Result<(), StoreError> {
    write_events(tx, events, first).await?;
    claims::apply(tx, &crate::log::claim_items(events), guards).await
}

/// Notifies the new head and commits.
async fn finish(mut tx: Tx, last: i64) -> Result<(), StoreError> {
    notify(&mut tx, last).await?;
    tx.commit().await
}

/// Runs one SQL statement without parameters in the transaction.
async fn exec(tx: &mut Tx, sql: &'static str) -> Result<(), StoreError> {
    crate::with_tx!(tx, |c| sqlx::Executor::execute(c, sqlx::raw_sql(sql))
        .await
        .map(|_| ())?);
    Ok(())
}

/// The group in one transaction, each append in its own SAVEPOINT: a
/// refused append is rolled back alone and answered with its error.
async fn each_in_a_savepoint(
    store: &Store,
    staged: &mut [Staged],
) -> Vec<Result<Appended, StoreError>> {
    let n = staged.len();
    let all_fail = |e: StoreError| (0..n).map(|_| Err(e.replicate())).collect();
    let (mut tx, head, at) = match store.begin_append().await {
        Ok(v) => v,
        Err(e) => return all_fail(e),
    };
    let mut results = Vec::with_capacity(staged.len());
    let mut next = head + 1;
    for s in staged.iter_mut() {
        if let Err(e) = exec(&mut tx, "SAVEPOINT roster_append").await {
            return all_fail(e);
        }
        match write_append(&mut tx, &mut s.events, &s.guards, next, at).await {
            Ok(appended) => {
                if let Err(e) = exec(&mut tx, "RELEASE SAVEPOINT roster_append").await {
                    return all_fail(e);
                }
                next = appended.last + 1;
                results.push(Ok(appended));
            }
            Err(refused) => {
                let undo = "ROLLBACK TO SAVEPOINT roster_append; RELEASE SAVEPOINT roster_append";
                if let Err(e) = exec(&mut tx, undo).await {
                    return all_fail(e);
                }
                results.push(Err(refused));
            }
        }
    }
    let last = next - 1;
    if last == head {
        tx.rollback().await;
        return results;
    }
    match finish(tx, last).await {
        Ok(()) => {
            store.advance_head(last, (last - head) as usize);
            results
        }
        Err(e) => results
            .into_iter()
            .map(|r| r.and(Err(e.replicate())))
            .collect(),
    }
}
