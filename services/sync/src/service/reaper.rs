//! The deletion reaper (D3.i): deletes flagged users whose delay passed.

use super::*;

impl SyncService {
    /// Deletes flagged users whose delay has passed, with their rules.
    /// Returns how many were deleted. Several replicas may run it: each
    /// deletion is decided by the user aggregate, once.
    pub async fn reap(&self) -> Result<u64, SyncError> {
        let now = self.clock.now();
        // Runs' live progress is kept for 30 days (issue 15); best effort.
        if let Err(e) = self
            .store
            .db()
            .prune_run_progress(now - chrono::Duration::days(30))
            .await
        {
            tracing::warn!(error = %e, "old runs' progress could not be pruned");
        }
        let due = roster_projections::queries::due_for_deletion(
            &self.store,
            now.timestamp_micros(),
            1_000,
        )
        .await?;
        let mut by_customer: HashMap<CustomerId, Vec<String>> = HashMap::new();
        for (c, u) in due {
            by_customer.entry(c).or_default().push(u.to_string());
        }
        let mut deleted = 0;
        for (customer, ids) in by_customer {
            let meta = self.meta(
                customer,
                Actor::System("reaper".into()),
                CorrelationId::new(),
            );
            let mut users = self.store.load_many::<User>(&ids).await?;
            let mut batch = Batch::new();
            let mut n = 0;
            for id in &ids {
                let Some(u) = users.get_mut(id) else { continue };
                let cmd = UserCommand::Delete {
                    reason: DeletionReason::DelayExpired,
                    at: now,
                };
                if batch
                    .execute(u, cmd, &UserServices::default(), &meta)
                    .await
                    .is_ok()
                {
                    n += 1;
                }
            }
            match self.store.commit(batch).await {
                Ok(a) => {
                    deleted += n;
                    self.settle(a.last).await;
                }
                // Someone changed one of them first; the next pass decides again.
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if deleted > 0 {
            metrics::counter!("roster_reaper_deleted_total").increment(deleted);
            tracing::info!(deleted, "deleted flagged users whose delay had passed");
        }
        Ok(deleted)
    }
}
