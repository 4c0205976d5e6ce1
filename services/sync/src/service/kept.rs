//! Plans kept between runs (issue 17): a run whose read holds the same
//! objects as the previous run's, and whose customer had no event since
//! that run loaded its inputs other than runs' own bookkeeping, would plan
//! exactly what the previous run planned (the plan is a pure function of
//! the read, the users, the managed domains and the directory's settings,
//! exceptions and additions, all of which are events of the customer). A
//! kept plan is one that changed nothing: applied again it changes nothing,
//! and the run reuses its counts and report instead of loading 100,000
//! users and planning over every object. Kept in this process's memory
//! only: a restart or another replica plans as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use roster_domain::reconcile::Plan;
use roster_domain::snapshot::FingerprintKeys;
use roster_events::{CustomerId, DirectoryKind, DIRECTORY_AGGREGATE, SYNC_REPORT_AGGREGATE};
use roster_store::{Store, StoreError};

/// Events that may follow a kept plan's inputs without changing what a
/// plan would be: runs starting, completing without changes (a run that
/// changes anything appends user or object events beside), reporting,
/// finishing, and connection tests.
const BOOKKEEPING: &[(&str, &str)] = &[
    (DIRECTORY_AGGREGATE, "SyncStarted"),
    (DIRECTORY_AGGREGATE, "SyncCompleted"),
    (DIRECTORY_AGGREGATE, "SyncFinished"),
    (DIRECTORY_AGGREGATE, "DirectoryTested"),
    (SYNC_REPORT_AGGREGATE, "SyncReported"),
];

/// More events than this since the plan's inputs: plan again.
const SCAN_LIMIT: i64 = 64;

/// Customers whose plans are kept at once; beyond it the oldest is dropped.
const CAPACITY: usize = 1_024;

/// One customer's kept plan.
pub(crate) struct KeptPlan {
    /// The directory the plan was made for.
    pub kind: DirectoryKind,
    /// [`roster_domain::snapshot::Snapshot::fingerprint`] of the read.
    pub fingerprint: u128,
    /// The log position the plan's inputs showed every event up to.
    pub inputs_at: i64,
    pub plan: Arc<Plan>,
    /// When it was kept, for eviction.
    kept: u64,
}

#[derive(Default)]
pub(crate) struct KeptPlans {
    keys: FingerprintKeys,
    reused: AtomicU64,
    plans: Mutex<(u64, HashMap<CustomerId, Arc<KeptPlan>>)>,
}

impl KeptPlans {
    pub(crate) fn fingerprint(&self, snapshot: &roster_domain::snapshot::Snapshot) -> u128 {
        snapshot.fingerprint(&self.keys)
    }

    /// Keeps `plan` for `customer` if it changes nothing; forgets the
    /// customer's kept plan otherwise.
    pub(crate) fn keep(
        &self,
        customer: CustomerId,
        kind: DirectoryKind,
        fingerprint: u128,
        inputs_at: i64,
        plan: Arc<Plan>,
    ) {
        let mut guard = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        let (clock, plans) = &mut *guard;
        if !plan.steps.is_empty() || plan.flags > 0 {
            plans.remove(&customer);
            return;
        }
        *clock += 1;
        if plans.len() >= CAPACITY && !plans.contains_key(&customer) {
            if let Some(oldest) = plans.iter().min_by_key(|(_, k)| k.kept).map(|(c, _)| *c) {
                plans.remove(&oldest);
            }
        }
        plans.insert(
            customer,
            Arc::new(KeptPlan {
                kind,
                fingerprint,
                inputs_at,
                plan,
                kept: *clock,
            }),
        );
    }

    /// Counts a run that reused a kept plan.
    pub(crate) fn reused(&self) {
        self.reused.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("roster_sync_plans_reused_total").increment(1);
    }

    pub(crate) fn reused_total(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    pub(crate) fn forget(&self, customer: CustomerId) {
        let mut guard = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        guard.1.remove(&customer);
    }

    /// The customer's kept plan if the log shows nothing since its inputs
    /// but bookkeeping; forgets it otherwise.
    pub(crate) async fn valid(
        &self,
        store: &Store,
        customer: CustomerId,
    ) -> Result<Option<Arc<KeptPlan>>, StoreError> {
        let kept = {
            let guard = self.plans.lock().unwrap_or_else(|p| p.into_inner());
            guard.1.get(&customer).cloned()
        };
        let Some(kept) = kept else { return Ok(None) };
        let since = store
            .customer_events_since(customer, kept.inputs_at, SCAN_LIMIT)
            .await?;
        let unchanged = (since.len() as i64) < SCAN_LIMIT
            && since.iter().all(|(aggregate, event)| {
                BOOKKEEPING
                    .iter()
                    .any(|(a, e)| a == aggregate && e == event)
            });
        if !unchanged {
            self.forget(customer);
            return Ok(None);
        }
        Ok(Some(kept))
    }
}
