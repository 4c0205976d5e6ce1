//! Held runs (D3.s): confirm or discard a run the mass-deletion guard held.

use super::*;

impl SyncService {
    /// Why a run an administrator wants to confirm or discard is not held:
    /// superseded by a newer run (issue 11), or simply not held.
    async fn not_held(&self, customer: CustomerId, run_id: Uuid) -> SyncError {
        if let Ok(Some(row)) =
            roster_projections::directory::run(&self.store, customer, &run_id.to_string()).await
        {
            if row.status == roster_projections::directory::RunStatus::Superseded {
                if let Some(by_run) = row.decided_by_run {
                    return DirectoryError::Superseded {
                        run_id,
                        by_run: by_run.0,
                    }
                    .into();
                }
            }
        }
        DirectoryError::NotHeld(run_id).into()
    }
    /// D3.s: applies a held run after an administrator's confirmation: a new
    /// run reads the directory again and is allowed as many flags as the
    /// held one would have raised (more are held again).
    pub async fn confirm(
        &self,
        customer: CustomerId,
        held: Uuid,
        by: Actor,
    ) -> Result<Uuid, SyncError> {
        let dir = self.directory(customer).await?;
        let limit = match &dir.held {
            Some(h) if h.run_id == held => h.would_flag,
            _ => return Err(self.not_held(customer, held).await),
        };
        let run_id = Uuid::now_v7();
        let meta = self.meta(customer, by, CorrelationId(run_id));
        self.take_lease(customer, run_id).await?;
        let started = self
            .directory_commands(
                &meta,
                &[
                    DirectoryCommand::ConfirmHeld {
                        run_id: held,
                        by_run: run_id,
                    },
                    DirectoryCommand::StartSync {
                        run_id,
                        trigger: SyncTrigger::Confirmed,
                        at: self.clock.now(),
                        lease: self.lease,
                    },
                ],
            )
            .await;
        if let Err(e) = started {
            self.end_lease(run_id).await;
            return Err(e);
        }
        let svc = self.clone();
        let outcome = svc.execute(customer, run_id, Some(limit)).await?;
        Ok(outcome.run_id())
    }

    pub async fn discard(&self, meta: &EventMeta, held: Uuid) -> Result<Appended, SyncError> {
        match self
            .directory_commands(meta, &[DirectoryCommand::DiscardHeld { run_id: held }])
            .await
        {
            Err(SyncError::Directory(DirectoryError::NotHeld(_))) => {
                Err(self.not_held(meta.customer_id, held).await)
            }
            other => other,
        }
    }
}
