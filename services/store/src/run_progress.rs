//! A running sync's live progress (issue 15), one row per run beside the
//! log (see `migrations/*/0700_run_progress.sql`): the replica running it
//! writes, any replica reads. The value is the sync's JSON; this module
//! only keeps it.

use roster_events::CustomerId;
use uuid::Uuid;

use crate::{micros, with_db, Db, StoreError};

impl Db {
    /// Replaces a run's progress.
    pub async fn put_run_progress(
        &self,
        customer: CustomerId,
        run_id: Uuid,
        progress: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        with_db!(self, |p| {
            sqlx::query(
                "INSERT INTO sync_run_progress (run_id, customer_id, progress, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (run_id) DO UPDATE SET progress = excluded.progress,
                   updated_at = excluded.updated_at",
            )
            .bind(run_id.to_string())
            .bind(customer.to_string())
            .bind(progress)
            .bind(micros(now))
            .execute(p)
            .await
            .map(|_| ())?
        });
        Ok(())
    }

    /// A run's progress (its JSON and when it was written), if recorded;
    /// only within the run's customer (T1).
    pub async fn get_run_progress(
        &self,
        customer: CustomerId,
        run_id: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let row: Option<(String, i64)> = with_db!(self, |p| {
            sqlx::query_as(
                "SELECT progress, updated_at FROM sync_run_progress
                 WHERE customer_id = $1 AND run_id = $2",
            )
            .bind(customer.to_string())
            .bind(run_id)
            .fetch_optional(p)
            .await?
        });
        Ok(row)
    }
}

impl Db {
    /// Forgets the progress written before `before`: a run's live view is
    /// of use while it runs and shortly after (its outcome is in the log).
    pub async fn prune_run_progress(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        let n = with_db!(self, |p| {
            sqlx::query("DELETE FROM sync_run_progress WHERE updated_at < $1")
                .bind(micros(before))
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}
