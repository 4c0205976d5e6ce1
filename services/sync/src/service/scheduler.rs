//! The scheduler (D4): starts the runs that are due.

use super::*;

impl SyncService {
    /// D4: starts the runs that are due. Returns the started run ids.
    pub async fn schedule(&self, wait: bool) -> Result<Vec<Uuid>, SyncError> {
        let due = roster_projections::directory::due(&self.store, self.clock.now()).await?;
        let mut started = Vec::new();
        for (customer, _) in due {
            let result = if wait {
                self.run_now(
                    customer,
                    SyncTrigger::Scheduled,
                    Actor::System("scheduler".into()),
                )
                .await
                .map(|o| o.run_id())
            } else {
                self.spawn(
                    customer,
                    SyncTrigger::Scheduled,
                    Actor::System("scheduler".into()),
                )
                .await
            };
            match result {
                Ok(run) => started.push(run),
                Err(SyncError::Directory(DirectoryError::AlreadyRunning(_))) => {}
                // D3.s: a held run waits for an administrator's decision.
                Err(SyncError::Directory(DirectoryError::RunHeld(_))) => {}
                Err(SyncError::Directory(DirectoryError::NotEnabled)) => {}
                Err(e) => {
                    tracing::error!(customer = %customer, error = %e, "scheduled sync could not start")
                }
            }
        }
        Ok(started)
    }
}
