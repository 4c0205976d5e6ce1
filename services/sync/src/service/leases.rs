//! Run leases with heartbeats (issue 18): a run's lease is renewed while it
//! works; once its replica stops, another replica takes the expired lease
//! over, marks the run `interrupted` and starts the customer's run again.
//! On shutdown a replica lets its runs finish for a grace period and hands
//! the rest back.

use roster_store::ExpiredLease;

use super::*;

impl SyncService {
    /// Takes the lease of a run about to start and keeps it renewed until
    /// [`SyncService::end_lease`].
    pub(super) async fn take_lease(
        &self,
        customer: CustomerId,
        run_id: Uuid,
    ) -> Result<(), SyncError> {
        let q = &self.queue;
        self.store
            .db()
            .lease_run(run_id, customer, &q.holder, q.config.lease_ttl)
            .await?;
        q.track(customer, run_id, self.heartbeat(run_id));
        Ok(())
    }

    /// The run ended (or never started): stops its heartbeat and releases
    /// its lease.
    pub(super) async fn end_lease(&self, run_id: Uuid) {
        self.queue.untrack(run_id);
        if let Err(e) = self
            .store
            .db()
            .release_run_lease(run_id, &self.queue.holder)
            .await
        {
            tracing::warn!(run = %run_id, error = %e, "the run's lease could not be released; it expires by itself");
        }
    }

    fn heartbeat(&self, run_id: Uuid) -> tokio::task::AbortHandle {
        let svc = self.clone();
        let every = self.queue.config.lease_ttl / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let q = &svc.queue;
                match svc
                    .store
                    .db()
                    .renew_run_lease(run_id, &q.holder, q.config.lease_ttl)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        // Another replica took it over: this run's work
                        // would be refused by the log anyway.
                        tracing::warn!(run = %run_id, "the run's lease was taken over; stopping it");
                        q.abort(run_id);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(run = %run_id, error = %e, "the run's lease could not be renewed; retrying")
                    }
                }
            }
        })
        .abort_handle()
    }

    /// Runs a started run on this replica in the background, in a slot of
    /// its own (`slot`, or the next one free).
    pub(super) fn run_in_background(
        &self,
        customer: CustomerId,
        run_id: Uuid,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let svc = self.clone();
        // The run's trace continues the request's that started it (issue 16).
        let task = tokio::spawn(
            async move {
                let _slot = match slot {
                    Some(s) => s,
                    None => match svc.queue.slot().await {
                        Some(s) => s,
                        None => return,
                    },
                };
                if let Err(e) = svc.execute(customer, run_id, None).await {
                    tracing::error!(customer = %customer, run = %run_id, error = %e, "sync run failed to record its outcome");
                }
            }
            .in_current_span(),
        );
        self.queue.set_task(run_id, task.abort_handle());
    }

    /// Takes over the runs whose replica stopped renewing their lease: each
    /// is marked `interrupted` and its customer's run starts again here.
    /// Several replicas may sweep at once: each lease goes to one of them.
    /// Returns how many runs were taken over.
    pub async fn sweep_leases(&self) -> Result<u64, SyncError> {
        if self.queue.draining() {
            return Ok(0);
        }
        let q = &self.queue;
        let expired = self
            .store
            .db()
            .take_expired_run_leases(&q.holder, q.config.lease_ttl, 100)
            .await?;
        let mut taken = 0;
        for lease in expired {
            match self.interrupt(&lease, true).await {
                Ok(resumed) => {
                    taken += 1;
                    metrics::counter!("roster_sync_lease_takeovers_total").increment(1);
                    tracing::warn!(customer = %lease.customer_id, run = %lease.run_id, holder = %lease.holder, resumed = ?resumed, "took over an expired run lease: the run is interrupted and starts again");
                    if let Some(run) = resumed {
                        self.run_in_background(lease.customer_id, run, None);
                    }
                }
                Err(e) => {
                    tracing::error!(customer = %lease.customer_id, run = %lease.run_id, error = %e, "an expired run could not be marked interrupted; retrying when its lease expires again")
                }
            }
        }
        Ok(taken)
    }

    /// Marks a run whose lease expired `interrupted` and, with `resume`,
    /// starts the customer's run again in the same append (it is due at
    /// once). Returns the new run, leased by this replica.
    pub(super) async fn interrupt(
        &self,
        lease: &ExpiredLease,
        resume: bool,
    ) -> Result<Option<Uuid>, SyncError> {
        let customer = lease.customer_id;
        let holder = if lease.holder.is_empty() {
            "a replica that stopped".to_string()
        } else {
            lease.holder.clone()
        };
        let reason = format!(
            "the replica running it ({holder}) stopped renewing its lease before the run finished; nothing it had not committed was applied, and the customer's run started again"
        );
        retrying(|| async {
            let mut dir: Loaded<Directory> = self.store.load(&customer.to_string()).await?;
            let running = dir.state.running.as_ref().map(|r| r.run_id);
            if running != Some(lease.run_id) {
                // It ended after all (or was interrupted by another replica).
                self.store.db().drop_run_lease(lease.run_id).await?;
                return Ok(None);
            }
            let meta = self.meta(
                customer,
                Actor::System("lease-sweeper".into()),
                CorrelationId(lease.run_id),
            );
            let now = self.clock.now();
            let mut batch = Batch::new();
            batch
                .execute(
                    &mut dir,
                    DirectoryCommand::FailSync {
                        run_id: lease.run_id,
                        code: crate::codes::INTERRUPTED.into(),
                        reason: reason.clone(),
                        at: now,
                    },
                    &(),
                    &meta,
                )
                .await?;
            let mut next = None;
            if resume {
                let run_id = Uuid::now_v7();
                let start = DirectoryCommand::StartSync {
                    run_id,
                    trigger: SyncTrigger::Scheduled,
                    at: now,
                    lease: self.lease,
                };
                if batch.execute(&mut dir, start, &(), &meta).await.is_ok() {
                    self.take_lease(customer, run_id).await?;
                    next = Some(run_id);
                }
            }
            match self.store.commit(batch).await {
                Ok(a) => {
                    self.store.db().drop_run_lease(lease.run_id).await?;
                    self.settle(a.last).await;
                    if next.is_some() {
                        metrics::counter!("roster_sync_runs_started_total").increment(1);
                    }
                    Ok(next)
                }
                Err(e) => {
                    if let Some(run) = next {
                        self.end_lease(run).await;
                    }
                    // A conflict is tried again by the helper.
                    Err(e.into())
                }
            }
        })
        .await
    }

    /// On shutdown: takes no more runs, lets the ones it holds finish for
    /// the grace period, then hands the rest back (their leases expire now,
    /// so another replica takes them over on its next tick).
    pub async fn drain(&self) {
        let q = &self.queue;
        q.start_draining();
        let deadline = tokio::time::Instant::now() + q.config.shutdown_grace;
        while q.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            let _ = tokio::time::timeout_at(deadline, q.changed.notified()).await;
        }
        for (run, customer) in q.runs() {
            q.abort(run);
            match self.store.db().expire_run_lease(run, &q.holder).await {
                Ok(()) => {
                    tracing::warn!(customer = %customer, run = %run, "shutting down: the run did not finish in time and is handed back to another replica")
                }
                Err(e) => {
                    tracing::error!(customer = %customer, run = %run, error = %e, "shutting down: the run's lease could not be handed back; it expires by itself")
                }
            }
        }
    }
}
