//! A run's report (issue 11): the objects it did not sync and the addresses
//! several objects claimed, appended with the run's outcome (completed or
//! held) as `SyncReported` events of the run's own report aggregate; or,
//! when it equals the report of the customer's last run this process
//! recorded in full, as one `SyncReportRepeated` naming that run (issue 17:
//! a scheduled run over an unchanged directory would otherwise write its
//! 10,000 skipped objects to the log, the report rows and the audit trail
//! again every time).

use std::collections::HashMap;
use std::sync::Mutex;

use roster_domain::reconcile::Report;
use roster_domain::snapshot::FingerprintKeys;
use roster_domain::SyncReport;
use roster_events::{CustomerId, EventMeta, SyncReportEvent, SyncReportRepeated, SyncReported};
use roster_store::{Batch, Loaded};
use uuid::Uuid;

/// Items per `SyncReported` event.
const PART: usize = 5_000;

/// Customers whose last full report a process remembers (48 bytes each);
/// beyond it one is forgotten, and its next run records its report in full.
const CAPACITY: usize = 100_000;

/// How a run records its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recording {
    /// [`LastReports::fingerprint`] of the report.
    fingerprint: u128,
    /// Nothing to record, nor to refer to later.
    empty: bool,
    /// The earlier run whose equal report this one refers to; `None`:
    /// recorded in full.
    pub of_run: Option<Uuid>,
}

/// Per customer, the last run whose report this process recorded in full,
/// with a keyed fingerprint of that report: two independently keyed 64-bit
/// hashes of all its items in order (a report is sorted), under random
/// keys of this process, so that a directory cannot be shaped to make a
/// different report look equal. Memory only: after a restart, or on another replica,
/// a run records its report in full once.
#[derive(Default)]
pub(crate) struct LastReports {
    keys: FingerprintKeys,
    last: Mutex<HashMap<CustomerId, (Uuid, u128)>>,
}

impl LastReports {
    fn fingerprint(&self, report: &Report) -> u128 {
        self.keys.of(&(&report.skipped, &report.contested))
    }

    /// How `customer`'s run records `report`: by reference when it equals
    /// the customer's last report recorded in full (an empty report records
    /// nothing, and refers to nothing).
    pub(crate) fn recording(&self, customer: CustomerId, report: &Report) -> Recording {
        let fingerprint = self.fingerprint(report);
        let empty = report.skipped.is_empty() && report.contested.is_empty();
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let of_run = last
            .get(&customer)
            .filter(|(_, f)| !empty && *f == fingerprint)
            .map(|(run, _)| *run);
        Recording {
            fingerprint,
            empty,
            of_run,
        }
    }

    /// Stages `customer`'s run `run_id`'s report in `batch` (see [`stage`]),
    /// by reference when it repeats the last report recorded in full. Pass
    /// what it returns to [`LastReports::committed`] once the batch is.
    pub(crate) async fn stage(
        &self,
        batch: &mut Batch,
        customer: CustomerId,
        run_id: Uuid,
        report: &Report,
        meta: &EventMeta,
    ) -> Recording {
        let how = self.recording(customer, report);
        stage(batch, run_id, report, how, meta).await;
        how
    }

    /// Remembers what run `run_id` committed: a report recorded in full is
    /// the one later runs may refer to; an empty report is never referred
    /// to (nothing is recorded for it).
    pub(crate) fn committed(&self, customer: CustomerId, run_id: Uuid, how: Recording) {
        if how.of_run.is_some() {
            metrics::counter!("roster_sync_reports_repeated_total").increment(1);
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if how.empty {
            last.remove(&customer);
            return;
        }
        if last.len() >= CAPACITY && !last.contains_key(&customer) {
            if let Some(any) = last.keys().next().copied() {
                last.remove(&any);
            }
        }
        last.insert(customer, (run_id, how.fingerprint));
    }
}

/// Stages the report of run `run_id` in `batch`: nothing when it is empty,
/// one reference when `how` says it repeats an earlier run's.
async fn stage(batch: &mut Batch, run_id: Uuid, report: &Report, how: Recording, meta: &EventMeta) {
    let mut target = Loaded::<SyncReport>::new(run_id.to_string());
    if let Some(of_run) = how.of_run {
        let command = SyncReportEvent::SyncReportRepeated(SyncReportRepeated { run_id, of_run });
        if let Err(never) = batch.execute(&mut target, command, &(), meta).await {
            match never {}
        }
        return;
    }
    let mut skipped = report.skipped.chunks(PART);
    let mut contested = report.contested.chunks(PART);
    for part in 0u32.. {
        let (s, c) = (skipped.next(), contested.next());
        if s.is_none() && c.is_none() {
            break;
        }
        let command = SyncReportEvent::SyncReported(SyncReported {
            run_id,
            part,
            skipped: s.map(<[_]>::to_vec).unwrap_or_default(),
            contested: c.map(<[_]>::to_vec).unwrap_or_default(),
        });
        if let Err(never) = batch.execute(&mut target, command, &(), meta).await {
            match never {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_events::{ObjectId, SkipReason, SkipScope, SkippedObject};

    fn report(n: usize) -> Report {
        Report {
            skipped: (0..n)
                .map(|i| SkippedObject {
                    object_id: ObjectId::new(format!("o{i}")),
                    kind: "user".into(),
                    dn: None,
                    address: Some(format!("u{i}@elsewhere.example")),
                    scope: SkipScope::Object,
                    reason: SkipReason::UnmanagedDomain,
                    detail: "elsewhere.example is not managed".into(),
                })
                .collect(),
            contested: vec![],
        }
    }

    #[test]
    fn b4_a_report_equal_to_the_last_full_one_refers_to_it_never_to_a_repeat() {
        let reports = LastReports::default();
        let (c, other) = (CustomerId::new(), CustomerId::new());
        let (r1, r2, r3, r4) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let how = reports.recording(c, &report(3));
        assert_eq!(how.of_run, None, "nothing recorded yet: in full");
        reports.committed(c, r1, how);
        let how = reports.recording(c, &report(3));
        assert_eq!(how.of_run, Some(r1));
        reports.committed(c, r2, how);
        assert_eq!(
            reports.recording(c, &report(3)).of_run,
            Some(r1),
            "a repeat refers to the run recorded in full"
        );
        assert_eq!(
            reports.recording(other, &report(3)).of_run,
            None,
            "per customer"
        );
        let changed = report(4);
        let how = reports.recording(c, &changed);
        assert_eq!(how.of_run, None, "a changed report is recorded in full");
        reports.committed(c, r3, how);
        assert_eq!(reports.recording(c, &report(3)).of_run, None);
        assert_eq!(reports.recording(c, &changed).of_run, Some(r3));
        let empty = report(0);
        let how = reports.recording(c, &empty);
        reports.committed(c, r4, how);
        assert_eq!(reports.recording(c, &changed).of_run, None);
        assert_eq!(
            reports.recording(c, &empty).of_run,
            None,
            "empty: nothing to refer to"
        );
    }
}
