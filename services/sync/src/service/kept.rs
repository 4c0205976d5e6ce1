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
    (SYNC_REPORT_AGGREGATE, "SyncReportRepeated"),
];

/// More events than this since the plan's inputs: plan again.
const SCAN_LIMIT: i64 = 64;

/// Customers whose plans are kept at once; beyond it the oldest is dropped.
const CAPACITY: usize = 1_024;

/// Report items (skipped objects, contested addresses: a few hundred bytes
/// each) kept across all customers: about 50 MB. Beyond it the oldest
/// plans are dropped; a plan whose report alone exceeds it is not kept.
const REPORT_ITEMS: usize = 200_000;

fn report_items(plan: &Plan) -> usize {
    plan.report.skipped.len() + plan.report.contested.len()
}

/// What a committed run leaves for the next one (issue 17).
pub(crate) enum Keep {
    /// Its plan, the read's fingerprint and the log position its inputs
    /// showed (kept only if the plan changed nothing).
    Plan(u128, i64),
    /// Nothing: its inputs may not have shown every earlier event, or it
    /// applied a confirmed hold.
    Forget,
    /// It reused the kept plan, which stays.
    AsIs,
}

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
    early: AtomicU64,
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
        plans.remove(&customer);
        let items = report_items(&plan);
        if !plan.steps.is_empty()
            || !plan.additions.is_empty()
            || plan.flags > 0
            || items > REPORT_ITEMS
        {
            return;
        }
        *clock += 1;
        let mut total: usize = plans.values().map(|k| report_items(&k.plan)).sum();
        while plans.len() >= CAPACITY || (total + items > REPORT_ITEMS && !plans.is_empty()) {
            let Some(oldest) = plans.iter().min_by_key(|(_, k)| k.kept).map(|(c, _)| *c) else {
                break;
            };
            if let Some(k) = plans.remove(&oldest) {
                total -= report_items(&k.plan);
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

    /// Counts a run that held a kept plan and loaded its inputs beside the
    /// rest of its read, on its delta read's word that objects changed.
    pub(crate) fn loaded_early(&self) {
        self.early.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("roster_sync_inputs_loaded_early_total").increment(1);
    }

    pub(crate) fn loaded_early_total(&self) -> u64 {
        self.early.load(Ordering::Relaxed)
    }

    /// Applies what a committed run leaves (`keep`) for `customer`.
    pub(crate) fn after_commit(
        &self,
        customer: CustomerId,
        kind: DirectoryKind,
        keep: Keep,
        plan: &Arc<Plan>,
    ) {
        match keep {
            Keep::Plan(fingerprint, inputs_at) => {
                self.keep(customer, kind, fingerprint, inputs_at, plan.clone())
            }
            Keep::Forget => self.forget(customer),
            Keep::AsIs => {}
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use roster_events::{Address, ContestedAddress};

    fn customers(n: usize) -> Vec<CustomerId> {
        (0..n).map(|_| CustomerId::new()).collect()
    }

    fn kept(k: &KeptPlans) -> usize {
        k.plans.lock().unwrap().1.len()
    }

    fn has(k: &KeptPlans, c: CustomerId) -> bool {
        k.plans.lock().unwrap().1.contains_key(&c)
    }

    fn with_report(items: usize) -> Arc<Plan> {
        let mut plan = Plan::default();
        let contested = ContestedAddress {
            address: Address::parse("a@example.org").unwrap(),
            claimants: vec![],
            kept_by: None,
        };
        plan.report.contested = vec![contested; items];
        Arc::new(plan)
    }

    /// Issue 17: only a plan that changes nothing is kept; one that flags
    /// forgets the customer's kept plan.
    #[test]
    fn d3f_only_a_plan_that_changes_nothing_is_kept() {
        let k = KeptPlans::default();
        let c = CustomerId::new();
        k.keep(c, DirectoryKind::Ldap, 1, 10, Arc::new(Plan::default()));
        assert!(has(&k, c));
        let flags = Plan {
            flags: 1,
            ..Plan::default()
        };
        k.keep(c, DirectoryKind::Ldap, 1, 11, Arc::new(flags));
        assert!(
            !has(&k, c),
            "a plan that flags is not kept, nor the older one"
        );
    }

    /// Memory stays bounded: at most CAPACITY customers and REPORT_ITEMS
    /// report items, the oldest dropped first.
    #[test]
    fn kept_plans_stay_within_their_bounds_dropping_the_oldest() {
        let k = KeptPlans::default();
        let cs = customers(CAPACITY + 1);
        for c in &cs {
            k.keep(*c, DirectoryKind::Ldap, 1, 1, Arc::new(Plan::default()));
        }
        assert_eq!(kept(&k), CAPACITY);
        assert!(!has(&k, cs[0]) && has(&k, cs[1]) && has(&k, cs[CAPACITY]));

        let k = KeptPlans::default();
        let cs = customers(3);
        k.keep(
            cs[0],
            DirectoryKind::Ldap,
            1,
            1,
            with_report(REPORT_ITEMS / 2),
        );
        k.keep(
            cs[1],
            DirectoryKind::Ldap,
            1,
            1,
            with_report(REPORT_ITEMS / 2),
        );
        k.keep(cs[2], DirectoryKind::Ldap, 1, 1, with_report(1));
        assert!(!has(&k, cs[0]) && has(&k, cs[1]) && has(&k, cs[2]));
        k.keep(
            cs[2],
            DirectoryKind::Ldap,
            1,
            1,
            with_report(REPORT_ITEMS + 1),
        );
        assert!(!has(&k, cs[2]), "a report beyond the budget is not kept");
        assert!(has(&k, cs[1]));
    }
}
