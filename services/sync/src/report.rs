//! A run's report (issue 11): the objects it did not sync and the addresses
//! several objects claimed, appended with the run's outcome (completed or
//! held) as `SyncReported` events of the run's own report aggregate.

use roster_domain::reconcile::Report;
use roster_domain::SyncReport;
use roster_events::{EventMeta, SyncReported};
use roster_store::{Batch, Loaded};
use uuid::Uuid;

/// Items per `SyncReported` event.
const PART: usize = 5_000;

/// Stages the report of run `run_id` in `batch`; nothing when it is empty.
pub(crate) async fn stage(batch: &mut Batch, run_id: Uuid, report: &Report, meta: &EventMeta) {
    let mut target = Loaded::<SyncReport>::new(run_id.to_string());
    let mut skipped = report.skipped.chunks(PART);
    let mut contested = report.contested.chunks(PART);
    for part in 0u32.. {
        let (s, c) = (skipped.next(), contested.next());
        if s.is_none() && c.is_none() {
            break;
        }
        let command = SyncReported {
            run_id,
            part,
            skipped: s.map(<[_]>::to_vec).unwrap_or_default(),
            contested: c.map(<[_]>::to_vec).unwrap_or_default(),
        };
        if let Err(never) = batch.execute(&mut target, command, &(), meta).await {
            match never {}
        }
    }
}
