//! A running sync's live progress (issue 15): its phase and counts, kept in
//! the store at each phase change and at most once a second in between, so
//! that any replica can show it. Best effort: a write that fails is logged
//! and the run goes on.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use roster_projections::directory::{RunPhase, RunProgress};

use super::*;

/// The least time between two writes within one phase.
const EVERY: Duration = Duration::from_secs(1);

/// The progress of one run, and when it was last written.
pub(super) struct Progress {
    customer: CustomerId,
    run_id: Uuid,
    state: Mutex<(RunProgress, Option<Instant>)>,
}

impl Progress {
    pub(super) fn new(customer: CustomerId, run_id: Uuid) -> Self {
        Progress {
            customer,
            run_id,
            state: Mutex::new((RunProgress::new(RunPhase::Read), None)),
        }
    }

    /// Changes the progress with `f` and writes it when the phase changed,
    /// when `force`, or when the last write is a second old.
    pub(super) async fn update(
        &self,
        sync: &SyncService,
        force: bool,
        f: impl FnOnce(&mut RunProgress),
    ) {
        let json = {
            let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let (progress, last) = &mut *guard;
            let phase = progress.phase;
            f(progress);
            let due = force
                || phase != progress.phase
                || last.is_none_or(|t: Instant| t.elapsed() >= EVERY);
            if !due {
                return;
            }
            *last = Some(Instant::now());
            match serde_json::to_string(progress) {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        if let Err(e) = sync
            .store
            .db()
            .put_run_progress(self.customer, self.run_id, &json, sync.clock.now())
            .await
        {
            tracing::warn!(customer = %self.customer, run = %self.run_id, error = %e, "the run's progress could not be recorded");
        }
    }

    /// Enters a phase (always written).
    pub(super) async fn phase(
        &self,
        sync: &SyncService,
        phase: RunPhase,
        f: impl FnOnce(&mut RunProgress),
    ) {
        self.update(sync, true, |p| {
            p.phase = phase;
            f(p)
        })
        .await
    }
}
