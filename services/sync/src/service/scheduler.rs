//! The scheduler (D4): claims the due runs, oldest due first, as many as
//! this replica has free slots for (issue 18).

use roster_domain::DirectoryError;

use super::*;

impl SyncService {
    /// D4: starts the runs that are due, oldest due first, as many as this
    /// replica has free slots for; the others wait for a slot here or on
    /// another replica. With `wait` each run is worked to its end before
    /// the next (tests). Returns the started run ids.
    pub async fn schedule(&self, wait: bool) -> Result<Vec<Uuid>, SyncError> {
        if self.queue.draining() {
            return Ok(vec![]);
        }
        let now = self.clock.now();
        let due = roster_projections::directory::due_since(&self.store, now).await?;
        let mut started = Vec::new();
        let mut waiting = 0;
        let mut oldest: Option<Option<chrono::DateTime<chrono::Utc>>> = None;
        for (i, (customer, _, due_at)) in due.iter().enumerate() {
            let slot = match wait {
                true => None,
                false => match self.queue.try_slot() {
                    Some(s) => Some(s),
                    None => {
                        // No free slot: the rest wait, oldest first.
                        waiting = due.len() - i;
                        oldest = Some(*due_at);
                        break;
                    }
                },
            };
            match self.claim(*customer).await {
                Ok(Some(run)) => {
                    started.push(run);
                    match wait {
                        true => {
                            self.execute(*customer, run, None).await?;
                        }
                        false => self.run_in_background(*customer, run, slot),
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(customer = %customer, error = %e, "scheduled sync could not start")
                }
            }
        }
        metrics::gauge!("roster_sync_queue_depth").set(waiting as f64);
        let age = match oldest {
            Some(Some(t)) => (now - t).num_milliseconds().max(0) as f64 / 1000.0,
            // Never run: waiting since it was enabled; counted from now.
            Some(None) | None => 0.0,
        };
        metrics::gauge!("roster_sync_oldest_due_seconds").set(age);
        Ok(started)
    }

    /// Claims a customer's due slot: starts its scheduled run if the log
    /// (not a read model, which may lag) shows it due and not running. The
    /// start is appended only if no other start came first, so of several
    /// replicas scheduling from a stale view, one starts the run and the
    /// others find it no longer due (issue 18). Returns the run, leased by
    /// this replica.
    pub(super) async fn claim(&self, customer: CustomerId) -> Result<Option<Uuid>, SyncError> {
        let actor = Actor::System("scheduler".into());
        let claimed = retrying(|| async {
            let now = self.clock.now();
            let mut dir: Loaded<Directory> = self.store.load(&customer.to_string()).await?;
            if !due_now(&dir.state, now) {
                return Ok(None);
            }
            let run_id = Uuid::now_v7();
            let meta = self.meta(customer, actor.clone(), CorrelationId(run_id));
            let start = DirectoryCommand::StartSync {
                run_id,
                trigger: SyncTrigger::Scheduled,
                at: now,
                lease: self.lease,
            };
            let mut batch = Batch::new();
            match batch.execute(&mut dir, start, &(), &meta).await {
                Ok(_) => {}
                Err(DirectoryError::AlreadyRunning(_))
                // D3.s: a held run waits for an administrator's decision.
                | Err(DirectoryError::RunHeld(_))
                | Err(DirectoryError::NotEnabled) => return Ok(None),
                Err(e) => return Err(Attempt::fail(e)),
            }
            self.take_lease(customer, run_id).await?;
            match self.store.commit(batch).await {
                Ok(a) => {
                    self.settle(a.last).await;
                    metrics::counter!("roster_sync_runs_started_total").increment(1);
                    Ok(Some(run_id))
                }
                Err(e) => {
                    self.end_lease(run_id).await;
                    // Another start (or change) came first: look again.
                    Err(e.into())
                }
            }
        })
        .await;
        match claimed {
            // Other replicas kept changing it: it is theirs this tick.
            Err(SyncError::Store(StoreError::Conflict)) => Ok(None),
            other => other,
        }
    }
}

/// Whether the log shows the customer's scheduled run due: sync enabled and
/// its poll interval passed since the last run started.
fn due_now(dir: &Directory, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Some(config) = dir.enabled.and_then(|k| dir.configs.get(&k)) else {
        return false;
    };
    dir.last_started_at
        .is_none_or(|t| t + config.poll_interval.duration() <= now)
}
