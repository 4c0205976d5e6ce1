//! Runs (D3, D4): start, read the directory, plan, apply or hold, and
//! record the outcome.

use super::*;

use std::sync::OnceLock;

use super::kept::Keep;
use super::progress::Progress;
use crate::readers::{EntriesHook, ReadNews};
use roster_projections::directory::RunPhase;
use roster_store::read_state::Packing;

/// A run's plan and what goes with it.
struct Planned {
    plan: Arc<Plan>,
    /// The read against the directory objects as last read, when known.
    diff: Option<ObjectsDiff>,
    /// The directory's version the plan's inputs showed: the run commits
    /// against it.
    inputs_version: i64,
    keep: Keep,
}

/// The run whose append [`SyncService::append_run`] writes.
struct RunAppend<'a> {
    meta: &'a EventMeta,
    run_id: Uuid,
    kind: DirectoryKind,
    now: chrono::DateTime<chrono::Utc>,
    /// When the run began to apply (the stage phase's start).
    started: std::time::Instant,
}

/// What [`SyncService::apply`] leaves: a held run is finished; a committed
/// one still waits for the read models ([`SyncService::settled`]), which
/// its caller starts once it has let the read go (issue 17: the read was
/// held through the projection of its own events, about 70 MB at 100,000
/// users).
enum Applied {
    Done(RunOutcome),
    Committed(Committed),
}

/// A run whose append is committed, with what its end reports.
struct Committed {
    customer: CustomerId,
    run_id: Uuid,
    counts: SyncCounts,
    over_seat_limit: bool,
    /// The position and the number of the events appended.
    last: i64,
    events: usize,
    plan_s: f64,
    stage_s: f64,
    append_s: f64,
}

/// Which run [`SyncService::apply`] applies, and where it reports.
#[derive(Clone, Copy)]
struct RunContext<'a> {
    run_id: Uuid,
    confirmed_limit: Option<u64>,
    progress: &'a Progress,
    /// The read's fingerprint, computed once for the run (a tenth of a
    /// second at 100,000 objects): the kept plan's check and the plan that
    /// is kept both need it.
    fingerprint: &'a OnceLock<u128>,
}

impl SyncService {
    /// Starts a run if none is running (D4). Returns its id; the caller runs
    /// [`SyncService::execute`] (in the background for Sync Now). The run
    /// holds a lease from now until it ends (issue 18); a run whose lease
    /// expired (its replica stopped) is marked interrupted and replaced at
    /// once.
    pub async fn start(
        &self,
        customer: CustomerId,
        trigger: SyncTrigger,
        by: Actor,
    ) -> Result<Uuid, SyncError> {
        match self.start_leased(customer, trigger, by.clone()).await {
            Err(SyncError::Directory(DirectoryError::AlreadyRunning(running)))
                if self.store.db().run_lease_expired(running).await? =>
            {
                let lease = roster_store::ExpiredLease {
                    run_id: running,
                    customer_id: customer,
                    holder: String::new(),
                };
                self.interrupt(&lease, false).await?;
                metrics::counter!("roster_sync_lease_takeovers_total").increment(1);
                self.start_leased(customer, trigger, by).await
            }
            other => other,
        }
    }

    async fn start_leased(
        &self,
        customer: CustomerId,
        trigger: SyncTrigger,
        by: Actor,
    ) -> Result<Uuid, SyncError> {
        let run_id = Uuid::now_v7();
        let meta = self.meta(customer, by, CorrelationId(run_id));
        self.take_lease(customer, run_id).await?;
        let started = self
            .directory_commands(
                &meta,
                &[DirectoryCommand::StartSync {
                    run_id,
                    trigger,
                    at: self.clock.now(),
                    lease: self.lease,
                }],
            )
            .await;
        let a = match started {
            Ok(a) => a,
            Err(e) => {
                self.end_lease(run_id).await;
                return Err(e);
            }
        };
        // The caller's next read (GET .../syncs/{run}) must see the run.
        self.settle(a.last).await;
        metrics::counter!("roster_sync_runs_started_total").increment(1);
        Ok(run_id)
    }

    /// How many runs of this process reused the previous run's plan because
    /// their read and the customer's state were the same (issue 17; also
    /// the `roster_sync_plans_reused_total` metric).
    pub fn plans_reused(&self) -> u64 {
        self.kept.reused_total()
    }

    /// How many runs of this process held a kept plan and, their delta
    /// read saying objects changed, loaded the plan's inputs beside the
    /// rest of the read (issue 17; also the
    /// `roster_sync_inputs_loaded_early_total` metric).
    pub fn inputs_loaded_early(&self) -> u64 {
        self.kept.loaded_early_total()
    }

    /// Starts a run and waits for it (the scheduler and tests).
    pub async fn run_now(
        &self,
        customer: CustomerId,
        trigger: SyncTrigger,
        by: Actor,
    ) -> Result<RunOutcome, SyncError> {
        let run = self.start(customer, trigger, by).await?;
        self.execute(customer, run, None).await
    }

    /// Starts a run and returns at once; the run goes on in the background.
    pub async fn spawn(
        &self,
        customer: CustomerId,
        trigger: SyncTrigger,
        by: Actor,
    ) -> Result<Uuid, SyncError> {
        let run = self.start(customer, trigger, by).await?;
        // In the replica's next free slot (issue 18); the lease is renewed
        // while it waits.
        self.run_in_background(customer, run, None);
        Ok(run)
    }

    /// What the previous read of the enabled directory left (B1: delta
    /// links and the directory as read), or `None`: a reader then reads
    /// everything. A run loads it before it loads the plan's inputs beside
    /// the read: loaded alone it takes a twentieth of the time it takes
    /// beside that load (0.02 s against 0.54 s for 100,000 users, issue 17).
    async fn previous_read(&self, customer: CustomerId, dir: &Directory) -> Option<Vec<u8>> {
        let kind = dir.enabled?;
        let t = std::time::Instant::now();
        let previous = match self
            .store
            .db()
            .get_read_state(customer, kind.as_str())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(customer = %customer, error = %e, "the previous read's state could not be loaded; reading everything");
                None
            }
        };
        tracing::debug!(
            customer = %customer,
            state_bytes = previous.as_ref().map_or(0, Vec::len),
            seconds = t.elapsed().as_secs_f64(),
            "read state loaded"
        );
        previous
    }

    /// Reads the enabled directory, from what the previous read left
    /// ([`SyncService::previous_read`]): a complete snapshot or why not.
    #[tracing::instrument(name = "sync.read", skip_all)]
    async fn read(
        &self,
        customer: CustomerId,
        dir: &Directory,
        on_entries: Option<EntriesHook>,
        previous: Option<Vec<u8>>,
    ) -> Result<(DirectoryConfig, IncrementalRead), ReadError> {
        let kind = dir
            .enabled
            .ok_or_else(|| ReadError::Settings("directory sync is not enabled".into()))?;
        let config = dir
            .configs
            .get(&kind)
            .cloned()
            .ok_or_else(|| ReadError::Settings(format!("no {} settings", kind.as_str())))?;
        let secret = self
            .secret_for(customer, &config.connection)
            .await
            .map_err(|e| ReadError::Settings(e.to_string()))?;
        if secret.is_none() && dir.secret_set.contains(&kind) {
            return Err(ReadError::Settings(
                "the stored password / client secret was entered for other connection settings (D7): save the settings with it again".into(),
            ));
        }
        let reader = match on_entries {
            Some(hook) => self
                .readers
                .reader_watched(&config.connection, secret.as_ref(), hook)?,
            None => self.readers.reader(&config.connection, secret.as_ref())?,
        };
        let t = std::time::Instant::now();
        let read = reader.read_incremental(previous.as_deref()).await?;
        drop(previous);
        metrics::counter!("roster_directory_reads_total", "kind" => kind.as_str(), "mode" => read.mode.as_str())
            .increment(1);
        tracing::debug!(customer = %customer, seconds = t.elapsed().as_secs_f64(), mode = read.mode.as_str(), "directory read alone");
        Ok((config, read))
    }

    /// Keeps what a read left for the next one (B1). The stored state is
    /// always a complete directory and the delta link that continues from
    /// it, whatever the run then does with the snapshot; losing it only
    /// costs a full read. A run keeps it while it plans and applies: it
    /// was a tenth of a second of every resync at 100,000 users (issue 17).
    async fn keep_read_state(&self, customer: CustomerId, kind: &str, state: Option<ReadState>) {
        let Some(state) = state else { return };
        let t = std::time::Instant::now();
        let state_bytes = state.bytes().len();
        let (state, packing) = match state {
            ReadState::Plain(s) => (s, Packing::ByStore),
            ReadState::Compressed(s) => (s, Packing::ByReader),
        };
        if let Err(e) = self
            .store
            .db()
            .put_read_state(customer, kind, state, packing, self.clock.now())
            .await
        {
            tracing::warn!(customer = %customer, error = %e, "the read's state could not be kept; the next read is a full one");
        }
        tracing::debug!(customer = %customer, state_bytes, seconds = t.elapsed().as_secs_f64(), "read state kept");
    }

    /// Runs a started run to its end and records the outcome. A read that
    /// does not complete fails the run and changes nothing (D3.r).
    #[tracing::instrument(name = "sync.run", skip_all, fields(customer = %customer, run = %run_id))]
    pub async fn execute(
        &self,
        customer: CustomerId,
        run_id: Uuid,
        confirmed_limit: Option<u64>,
    ) -> Result<RunOutcome, SyncError> {
        let outcome = self.execute_run(customer, run_id, confirmed_limit).await;
        self.end_lease(run_id).await;
        outcome
    }

    async fn execute_run(
        &self,
        customer: CustomerId,
        run_id: Uuid,
        confirmed_limit: Option<u64>,
    ) -> Result<RunOutcome, SyncError> {
        let started = std::time::Instant::now();
        let meta = self.meta(customer, Actor::Sync(run_id), CorrelationId(run_id));
        let dir = self.directory(customer).await?;
        let progress = Progress::new(customer, run_id);
        progress.phase(self, RunPhase::Read, |_| {}).await;
        // The directory is read on its own thread; what the plan needs from
        // the database is loaded meanwhile.
        let fingerprint = OnceLock::new();
        let (read, inputs) = self
            .read_watched(
                customer,
                &dir,
                &progress,
                confirmed_limit.is_none(),
                &fingerprint,
            )
            .await;
        let mode = read.as_ref().ok().map(|(_, r)| r.mode.as_str());
        tracing::info!(customer = %customer, run = %run_id, seconds = started.elapsed().as_secs_f64(), ok = read.is_ok(), mode, "directory read");
        metrics::histogram!("roster_sync_phase_seconds", "phase" => "read")
            .record(started.elapsed().as_secs_f64());
        let mut inputs = inputs.ok();
        let outcome = match read {
            Err(e) => {
                tracing::warn!(customer = %customer, run = %run_id, code = e.code(), error = %e, "directory read failed; nothing flagged or deleted");
                self.fail(&meta, run_id, e.code(), &e.to_string()).await?
            }
            Ok((
                config,
                IncrementalRead {
                    snapshot, state, ..
                },
            )) => {
                // Kept on its own task while the run plans (on this one) and
                // applies; the run ends once it is kept.
                let keeping = dir.enabled.map(|kind| {
                    let svc = self.clone();
                    tokio::spawn(async move {
                        svc.keep_read_state(customer, kind.as_str(), state).await
                    })
                });
                let read = snapshot.objects.len() as u64;
                progress
                    .phase(self, RunPhase::Plan, |p| p.read = Some(read))
                    .await;
                let result = retrying(|| {
                    // A retry (something changed meanwhile) loads afresh.
                    let inputs = inputs.take();
                    let (meta, config, snapshot) = (&meta, &config, &snapshot);
                    let run = RunContext {
                        run_id,
                        confirmed_limit,
                        progress: &progress,
                        fingerprint: &fingerprint,
                    };
                    async move { Ok(self.apply(meta, run, config, snapshot, inputs).await?) }
                })
                .await;
                if let Some(Err(e)) = match keeping {
                    Some(k) => Some(k.await),
                    None => None,
                } {
                    tracing::warn!(customer = %customer, error = %e, "keeping the read's state stopped; the next read is a full one");
                }
                // The run no longer needs the read: it goes before the wait
                // for the read models.
                drop(snapshot);
                match result {
                    Ok(Applied::Done(o)) => o,
                    Ok(Applied::Committed(c)) => self.settled(c).await,
                    Err(e) => {
                        self.kept.forget(customer);
                        tracing::error!(customer = %customer, run = %run_id, error = %e, "sync run could not be applied");
                        self.fail(
                            &meta,
                            run_id,
                            crate::codes::INTERNAL,
                            &format!("the changes could not be applied: {e}"),
                        )
                        .await?
                    }
                }
            }
        };
        let status = match &outcome {
            RunOutcome::Completed { .. } => "completed",
            RunOutcome::Failed { .. } => "failed",
            RunOutcome::Held { .. } => "held",
        };
        metrics::histogram!("roster_sync_run_seconds", "status" => status)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("roster_sync_runs_total", "status" => status).increment(1);
        tracing::info!(customer = %customer, run = %run_id, status, seconds = started.elapsed().as_secs_f64(), "sync run finished");
        Ok(outcome)
    }

    /// Reads the directory and prefetches what the plan needs, recording
    /// the objects received so far (where the reader reports them) at most
    /// once a second while the read goes on. When `may_reuse` and the read
    /// holds what the previous run's kept plan was made from, that plan is
    /// reused and nothing is loaded (issue 17).
    async fn read_watched(
        &self,
        customer: CustomerId,
        dir: &Directory,
        progress: &Progress,
        may_reuse: bool,
        fingerprint: &OnceLock<u128>,
    ) -> (
        Result<(DirectoryConfig, IncrementalRead), ReadError>,
        Result<Inputs, SyncError>,
    ) {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        let received = Arc::new(AtomicU64::new(0));
        let changed = Arc::new(tokio::sync::Notify::new());
        let hook: EntriesHook = {
            let (received, changed) = (received.clone(), changed.clone());
            Arc::new(move |news| match news {
                ReadNews::Entries(n) => {
                    received.fetch_add(n, Relaxed);
                }
                ReadNews::DeltaApplied(n) if n > 0 => changed.notify_one(),
                ReadNews::DeltaApplied(_) => {}
            })
        };
        let reading = async {
            // Without a kept plan the log still allows, the read and the
            // load of the plan's inputs run at once. With one, the read
            // alone decides whether it is reused: it runs alone (on two
            // cores the load slows it by half) and the inputs are loaded
            // after it only if the directory changed, or from the moment a
            // delta read says it did, beside the rest of the read (issue 17).
            let expect = may_reuse
                && self
                    .kept
                    .valid(&self.store, customer)
                    .await
                    .is_ok_and(|k| k.is_some());
            let previous = self.previous_read(customer, dir).await;
            if !expect {
                let (read, prefetched) = tokio::join!(
                    self.read(customer, dir, Some(hook), previous),
                    self.prefetch(customer)
                );
                return (read, prefetched.map(Inputs::Loaded));
            }
            let read = self.read(customer, dir, Some(hook), previous);
            tokio::pin!(read);
            let (read, prefetched) = tokio::select! {
                biased;
                read = &mut read => (read, None),
                () = changed.notified() => {
                    tracing::debug!(customer = %customer, "the delta read changed objects: the plan's inputs load beside the rest of the read");
                    self.kept.loaded_early();
                    let (read, prefetched) = tokio::join!(&mut read, self.prefetch(customer));
                    (read, Some(prefetched))
                }
            };
            let inputs = match &read {
                // A failed read plans nothing.
                Err(_) => Err(SyncError::Invalid("the read failed".into())),
                Ok((config, r)) => match self
                    .reusable(customer, config, &r.snapshot, fingerprint)
                    .await
                {
                    Some((kept, dir)) => Ok(Inputs::Kept(kept, dir)),
                    None => match prefetched {
                        Some(p) => p.map(Inputs::Loaded),
                        None => self.prefetch(customer).await.map(Inputs::Loaded),
                    },
                },
            };
            (read, inputs)
        };
        let ticking = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let n = received.load(Relaxed);
                if n > 0 {
                    progress.update(self, false, |p| p.read = Some(n)).await;
                }
            }
        };
        tokio::select! {
            done = reading => done,
            never = ticking => never,
        }
    }

    /// The customer's kept plan (issue 17) if `snapshot` holds the objects
    /// it was made from and the log shows nothing since its inputs but
    /// runs' bookkeeping, with the directory as loaded before that check
    /// (the run commits against its version). The log is checked again
    /// here, after the read, although `read_watched` checked it before:
    /// a user edited while the directory was read must plan afresh.
    async fn reusable(
        &self,
        customer: CustomerId,
        config: &DirectoryConfig,
        snapshot: &Snapshot,
        fingerprint: &OnceLock<u128>,
    ) -> Option<(Arc<kept::KeptPlan>, Loaded<Directory>)> {
        let dir: Loaded<Directory> = self.store.load(&customer.to_string()).await.ok()?;
        let kept = match self.kept.valid(&self.store, customer).await {
            Ok(k) => k?,
            Err(e) => {
                tracing::warn!(customer = %customer, error = %e, "the kept plan could not be checked; planning afresh");
                return None;
            }
        };
        if kept.kind != config.connection.kind()
            || kept.fingerprint != *fingerprint.get_or_init(|| self.kept.fingerprint(snapshot))
        {
            return None;
        }
        tracing::info!(customer = %customer, inputs_at = kept.inputs_at, "the read and the customer are as the previous run left them: its plan is reused");
        self.kept.reused();
        Some((kept, dir))
    }

    async fn fail(
        &self,
        meta: &EventMeta,
        run_id: Uuid,
        code: &str,
        reason: &str,
    ) -> Result<RunOutcome, SyncError> {
        let a = self
            .directory_commands(
                meta,
                &[DirectoryCommand::FailSync {
                    run_id,
                    code: code.to_string(),
                    reason: reason.to_string(),
                    at: self.clock.now(),
                }],
            )
            .await?;
        self.settle(a.last).await;
        Ok(RunOutcome::Failed {
            run_id,
            code: code.into(),
            reason: reason.into(),
        })
    }

    /// Records the end of a completed or held run once its append is
    /// projected: its changes (or its report) can be read from then on, and
    /// that is its `finished_at` (issue 11). Best effort: when this fails
    /// the run keeps the time its outcome was committed.
    async fn finished(&self, customer: CustomerId, run_id: Uuid) {
        let meta = self.meta(customer, Actor::Sync(run_id), CorrelationId(run_id));
        let command = DirectoryCommand::FinishSync {
            run_id,
            at: self.clock.now(),
        };
        match self.directory_commands(&meta, &[command]).await {
            Ok(a) => {
                self.settle(a.last).await;
            }
            Err(e) => {
                tracing::warn!(customer = %customer, run = %run_id, error = %e, "the run's end could not be recorded; it keeps the time its outcome was committed")
            }
        }
    }
    /// Everything the reconciler needs about the customer now.
    async fn current(&self, customer: CustomerId) -> Result<Current, SyncError> {
        // The read models must show every earlier write before we plan from them.
        let head = self.store.head_position().await?;
        let settled = self.settle(head).await;
        self.load_current(customer, settled.then_some(head)).await
    }

    /// [`SyncService::current`] once the read models have settled.
    async fn load_current(
        &self,
        customer: CustomerId,
        inputs_at: Option<i64>,
    ) -> Result<Current, SyncError> {
        let t = std::time::Instant::now();
        let rows = roster_projections::queries::current_users(&self.store, customer).await?;
        let rows_s = t.elapsed().as_secs_f64();
        let users: Vec<CurrentUser> = rows.into_iter().filter_map(current_user).collect();
        let typed_s = t.elapsed().as_secs_f64() - rows_s;
        let cust: Loaded<Customer> = self.store.load(&customer.to_string()).await?;
        let dir: Loaded<Directory> = self.store.load(&customer.to_string()).await?;
        tracing::debug!(customer = %customer, users = users.len(), rows_s, typed_s, aggregates_s = t.elapsed().as_secs_f64() - rows_s - typed_s, "current users loaded");
        Ok(Current {
            users,
            managed: cust.state.domains,
            dir,
            inputs_at,
        })
    }

    /// What a run plans from, loaded while the directory is being read: the
    /// current users and the directory objects as last read. The first
    /// attempt of a run uses it; a retry loads afresh.
    async fn prefetch(&self, customer: CustomerId) -> Result<Prefetched, SyncError> {
        // The read models show every earlier write first, then both
        // loads run at once on two connections: on a delta read that
        // finds little, this load is what the read waits for (issue 17).
        let t = std::time::Instant::now();
        let head = self.store.head_position().await?;
        let inputs_at = self.settle(head).await.then_some(head);
        let settled_s = t.elapsed().as_secs_f64();
        // The objects on a task of their own: decoding their 100,000 rows
        // is CPU work, which on the users' task waited for the users' own
        // (and theirs for it), one core for both (issue 17). Stopped when
        // the prefetch is dropped; in the run's span, as it was.
        let objects = AbortOnDrop({
            let store = self.store.clone();
            tokio::spawn(
                async move {
                    let t = std::time::Instant::now();
                    let out =
                        roster_projections::directory::object_summaries(&store, customer).await;
                    (out, t.elapsed().as_secs_f64())
                }
                .in_current_span(),
            )
        });
        let users_t = std::time::Instant::now();
        let current = self.load_current(customer, inputs_at).await;
        let users_s = users_t.elapsed().as_secs_f64();
        let (objects, objects_s) = objects.join().await.map_err(|e| {
            SyncError::Projection(format!("loading the directory objects stopped: {e}"))
        })?;
        tracing::debug!(customer = %customer, settled_s, users_s, objects_s, seconds = t.elapsed().as_secs_f64(), "plan inputs loaded");
        Ok(Prefetched {
            current: current?,
            objects: objects?,
        })
    }

    /// The run's plan: the kept one when the inputs say so, else planned
    /// from the inputs loaded during the read (or afresh on a retry).
    async fn planned(
        &self,
        customer: CustomerId,
        config: &DirectoryConfig,
        snapshot: &Snapshot,
        inputs: Option<Inputs>,
        confirmed_limit: Option<u64>,
        fingerprint: &OnceLock<u128>,
    ) -> Result<Planned, SyncError> {
        let (current, objects) = match inputs {
            // The same read and inputs as the kept plan's: the same plan,
            // which changes nothing, and objects as the last read left them.
            Some(Inputs::Kept(kept, dir)) => {
                return Ok(Planned {
                    plan: kept.plan.clone(),
                    diff: Some((vec![], vec![])),
                    inputs_version: dir.version,
                    keep: Keep::AsIs,
                })
            }
            Some(Inputs::Loaded(p)) => (p.current, Some(p.objects)),
            None => (self.current(customer).await?, None),
        };
        // A run's plan lists no changes: that list is what a dry run shows
        // (D3.t), and a run applies the steps (issue 17: a tenth of the
        // plan's memory at 100,000 users).
        let (plan, diff) = self.plan_with_diff(customer, config, snapshot, &current, objects);
        let keep = match (confirmed_limit, current.inputs_at) {
            (None, Some(at)) => Keep::Plan(
                *fingerprint.get_or_init(|| self.kept.fingerprint(snapshot)),
                at,
            ),
            _ => Keep::Forget,
        };
        Ok(Planned {
            plan: Arc::new(plan),
            diff,
            inputs_version: current.dir.version,
            keep,
        })
    }

    /// Plans a run against the current state and, given the directory
    /// objects as last read, diffs the read against them: the diff needs
    /// neither the plan nor the database, so it runs on a second thread
    /// while the plan runs on this one (issue 17).
    fn plan_with_diff(
        &self,
        customer: CustomerId,
        config: &DirectoryConfig,
        snapshot: &Snapshot,
        current: &Current,
        objects: Option<HashMap<String, ObjectSummary>>,
    ) -> (Plan, Option<ObjectsDiff>) {
        let span = tracing::info_span!("sync.plan");
        std::thread::scope(|scope| {
            let diff = objects
                .as_ref()
                .map(|before| scope.spawn(|| objects_diff(snapshot, before)));
            let plan = span.in_scope(|| self.plan(customer, config, snapshot, current, false));
            let diff = diff.map(|d| d.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            (plan, diff)
        })
    }

    /// Plans a run against the current state; a dry run's plan lists its
    /// changes.
    fn plan(
        &self,
        customer: CustomerId,
        config: &DirectoryConfig,
        snapshot: &Snapshot,
        current: &Current,
        list_changes: bool,
    ) -> Plan {
        let Current {
            users,
            managed,
            dir,
            ..
        } = current;
        let (kind, include_disabled) = match &config.connection {
            Connection::Ldap(s) => (DirectoryKind::Ldap, s.include_disabled),
            Connection::Entra(s) => (DirectoryKind::Entra, s.include_disabled),
        };
        let settings = reconcile::Settings {
            kind,
            customer_id: customer,
            include_disabled,
            delete_after: config.delete_after,
            managed,
            exceptions: &dir.state.exceptions,
            additions: &dir.state.additions,
            now: self.clock.now(),
            list_changes,
        };
        reconcile::reconcile(snapshot, users, &settings)
    }

    /// D3.t: what a run would do, changing nothing.
    pub async fn dry_run(
        &self,
        customer: CustomerId,
    ) -> Result<Result<DryRun, ReadError>, SyncError> {
        let dir = self.directory(customer).await?;
        let (
            config,
            IncrementalRead {
                snapshot, state, ..
            },
        ) = match self
            .read(
                customer,
                &dir,
                None,
                self.previous_read(customer, &dir).await,
            )
            .await
        {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(kind) = dir.enabled {
            self.keep_read_state(customer, kind.as_str(), state).await;
        }
        let current = self.current(customer).await?;
        let plan = self.plan(customer, &config, &snapshot, &current, true);
        Ok(Ok(DryRun {
            counts: plan.counts,
            would_flag: plan.flags,
            directory_users: plan.directory_users,
            would_hold: config.guard.holds(plan.flags, plan.directory_users),
            changes: plan.changes,
            contested: plan.report.contested,
        }))
    }

    /// Plans and applies one run in one append: users, directory objects
    /// and the run's outcome, or holds it (D3.s).
    async fn apply(
        &self,
        meta: &EventMeta,
        run: RunContext<'_>,
        config: &DirectoryConfig,
        snapshot: &Snapshot,
        inputs: Option<Inputs>,
    ) -> Result<Applied, SyncError> {
        let RunContext {
            run_id,
            confirmed_limit,
            progress,
            fingerprint,
        } = run;
        let customer = meta.customer_id;
        let t = std::time::Instant::now();
        let Planned {
            mut plan,
            diff,
            inputs_version,
            mut keep,
        } = self
            .planned(
                customer,
                config,
                snapshot,
                inputs,
                confirmed_limit,
                fingerprint,
            )
            .await?;
        let plan_s = t.elapsed().as_secs_f64();
        metrics::histogram!("roster_sync_phase_seconds", "phase" => "plan").record(plan_s);
        let hold = match confirmed_limit {
            Some(limit) => plan.flags > limit,
            None => config.guard.holds(plan.flags, plan.directory_users),
        };
        let steps = (plan.steps.len() + plan.additions.len()) as u64;
        progress
            .update(self, true, |p| {
                p.planned = Some(plan.counts);
                p.steps = steps;
                p.applied = 0;
            })
            .await;
        let mut dir: Loaded<Directory> = self.store.load(&customer.to_string()).await?;
        if dir.version != inputs_version {
            // Exceptions, additions or settings changed since the plan's
            // state was loaded: plan again from fresh state.
            return Err(SyncError::Store(StoreError::Conflict));
        }
        let now = self.clock.now();
        if hold {
            self.kept.forget(customer);
            return Ok(Applied::Done(
                self.hold(&mut dir, meta, run_id, &plan, now).await?,
            ));
        }

        progress.phase(self, RunPhase::Apply, |_| {}).await;
        let t = std::time::Instant::now();
        let mut counts = plan.counts;
        // The steps are staged by value: each step's command becomes its
        // event and is dropped, rather than the plan and the staged events
        // being held side by side until the append (issue 17). A plan with
        // steps is never kept for reuse (`kept`), so nothing needs them
        // after this run; a plan still shared (a kept one, which has no
        // steps) is left as it is.
        let steps = match Arc::get_mut(&mut plan) {
            Some(p) => (
                std::mem::take(&mut p.steps),
                std::mem::take(&mut p.additions),
            ),
            None => (plan.steps.clone(), plan.additions.clone()),
        };
        if !steps.0.is_empty() || !steps.1.is_empty() {
            keep = Keep::Forget;
        }
        let kind = config.connection.kind();
        let run = RunAppend {
            meta,
            run_id,
            kind,
            now,
            started: t,
        };
        let (a, report, over_seat_limit, stage_s, append_s) = self
            .append_run(run, &mut dir, &plan, steps, diff, snapshot, &mut counts)
            .await?;
        self.kept.after_commit(customer, kind, keep, &plan);
        self.reports.committed(customer, run_id, report);
        progress.update(self, true, |p| p.applied = p.steps).await;
        Ok(Applied::Committed(Committed {
            customer,
            run_id,
            counts,
            over_seat_limit,
            last: a.last,
            events: a.count,
            plan_s,
            stage_s,
            append_s,
        }))
    }

    /// Waits for the read models to show a committed run's events, records
    /// its end, and reports its phases.
    async fn settled(&self, c: Committed) -> RunOutcome {
        let Committed {
            customer,
            run_id,
            counts,
            over_seat_limit,
            last,
            events,
            plan_s,
            stage_s,
            append_s,
        } = c;
        let t = std::time::Instant::now();
        self.settle_within(last, settle_limit(events))
            .instrument(tracing::info_span!("sync.project"))
            .await;
        self.finished(customer, run_id).await;
        for (phase, seconds) in [
            ("stage", stage_s),
            ("append", append_s),
            ("project", t.elapsed().as_secs_f64()),
        ] {
            metrics::histogram!("roster_sync_phase_seconds", "phase" => phase).record(seconds);
        }
        tracing::info!(
            customer = %customer,
            run = %run_id,
            plan_s,
            stage_s,
            append_s,
            project_s = t.elapsed().as_secs_f64(),
            events,
            "sync run applied"
        );
        if over_seat_limit {
            tracing::warn!(customer = %customer, run = %run_id, "directory users take the customer beyond its seat limit (T3)");
        }
        RunOutcome::Completed {
            run_id,
            counts,
            over_seat_limit,
        }
    }

    /// Stages a run's steps, changed objects, report and end into one
    /// streamed append and commits it (issue 17). Returns the append, how
    /// the report was recorded, whether the run goes beyond the seat limit,
    /// and the seconds spent staging and writing.
    #[allow(clippy::too_many_arguments)] // the run's parts, each used once
    async fn append_run(
        &self,
        run: RunAppend<'_>,
        dir: &mut Loaded<Directory>,
        plan: &Plan,
        (steps, additions): (Vec<Step>, Vec<Addition>),
        diff: Option<ObjectsDiff>,
        snapshot: &Snapshot,
        counts: &mut SyncCounts,
    ) -> Result<(Appended, crate::report::Recording, bool, f64, f64), SyncError> {
        let RunAppend {
            meta,
            run_id,
            kind,
            now,
            started: t,
        } = run;
        let customer = meta.customer_id;
        let stage = tracing::info_span!("sync.stage");
        // What staging reads comes first: the append lock is held from
        // the start of the streamed append to its commit.
        let targets = self
            .load_targets(customer, &steps, &additions)
            .instrument(stage.clone())
            .await?;
        let objects = self
            .objects_change(customer, snapshot, diff)
            .instrument(stage.clone())
            .await?;
        let seats = Seats::of(&self.store, customer).await?;
        let mut w = Writing {
            append: self.store.begin_streamed().await?,
            batch: Batch::new(),
            written_s: 0.0,
            projector: Some(self.projector.clone()),
            beside: None,
        };
        let staged = async {
            let n_steps = steps.len() + additions.len();
            let mut objects = ObjectsStaging::new((run_id, kind), snapshot, objects, n_steps);
            let steps = staged_steps(steps, additions, snapshot, customer, kind.source());
            let seats_added = self
                .stage_plan(&mut w, targets, steps, &mut objects, meta, counts)
                .await?;
            if let Some(objects) = objects.as_mut() {
                while objects.stage_next(&mut w, meta).await? {}
            }
            let report = self
                .reports
                .stage(&mut w.batch, customer, run_id, &plan.report, meta)
                .await;
            // T3: directory users do not wait for a seat; the run reports
            // going beyond.
            let over_seat_limit = !seats.fits(seats_added);
            w.batch
                .execute(
                    dir,
                    DirectoryCommand::CompleteSync {
                        run_id,
                        counts: *counts,
                        over_seat_limit,
                        at: now,
                    },
                    &(),
                    meta,
                )
                .await?;
            Ok::<_, SyncError>((report, over_seat_limit))
        }
        .instrument(stage)
        .await;
        let Writing {
            append,
            mut batch,
            written_s,
            beside,
            ..
        } = w;
        let (report, over_seat_limit) = match staged {
            Ok(staged) => staged,
            Err(e) => {
                append.rollback().await;
                return Err(e);
            }
        };
        let stage_s = t.elapsed().as_secs_f64() - written_s;
        let t = std::time::Instant::now();
        let a = append
            .commit(&self.store, &mut batch)
            .instrument(tracing::info_span!("sync.append"))
            .await?;
        let append_s = written_s + t.elapsed().as_secs_f64();
        if let Some(b) = beside {
            // The run waits for its projection in `settled`, as without.
            let last = a.last;
            tokio::spawn(
                async move {
                    let reached = b.commit(last).await;
                    tracing::debug!(last, ?reached, "the run's projection beside its append");
                }
                .in_current_span(),
            );
        }
        Ok((a, report, over_seat_limit, stage_s, append_s))
    }

    /// D3.g: the mass-deletion guard holds the run; nothing is flagged or
    /// deleted until an administrator confirms it.
    async fn hold(
        &self,
        dir: &mut Loaded<Directory>,
        meta: &EventMeta,
        run_id: Uuid,
        plan: &Plan,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<RunOutcome, SyncError> {
        let customer = meta.customer_id;
        let mut batch = Batch::new();
        batch
            .execute(
                dir,
                DirectoryCommand::HoldSync {
                    run_id,
                    would_flag: plan.flags,
                    directory_users: plan.directory_users,
                    counts: plan.counts,
                    at: now,
                },
                &(),
                meta,
            )
            .await?;
        let report = self
            .reports
            .stage(&mut batch, customer, run_id, &plan.report, meta)
            .await;
        let a = self.store.commit(batch).await?;
        self.reports.committed(customer, run_id, report);
        self.settle(a.last).await;
        self.finished(customer, run_id).await;
        tracing::warn!(customer = %customer, run = %run_id, would_flag = plan.flags, "sync held by the mass-deletion guard");
        Ok(RunOutcome::Held {
            run_id,
            would_flag: plan.flags,
            directory_users: plan.directory_users,
        })
    }

    /// The users a plan's steps touch: the tombstones of addresses it
    /// adds (U6) and the aggregates of the users it changes.
    async fn load_targets(
        &self,
        customer: CustomerId,
        steps: &[Step],
        additions: &[Addition],
    ) -> Result<Targets, SyncError> {
        let new_addresses: Vec<Address> = additions.iter().map(|a| a.address.clone()).collect();
        let tombstones = self
            .store
            .db()
            .tombstones_bulk(customer, &new_addresses)
            .await?;
        let mut ids: Vec<String> = steps
            .iter()
            .filter_map(|s| match s.target {
                Target::Existing(id) => Some(id.to_string()),
                Target::New => None,
            })
            .chain(tombstones.values().map(|id| id.to_string()))
            .collect();
        ids.sort();
        ids.dedup();
        let loaded = self.store.load_many::<User>(&ids).await?;
        Ok(Targets { tombstones, loaded })
    }

    /// Stages a plan's steps into the run's append, written a piece at a
    /// time, with the changed objects' events spread among them. Returns
    /// the seats the new users take.
    async fn stage_plan(
        &self,
        w: &mut Writing,
        targets: Targets,
        steps: impl Iterator<Item = Step>,
        objects: &mut Option<ObjectsStaging<'_>>,
        meta: &EventMeta,
        counts: &mut SyncCounts,
    ) -> Result<u64, SyncError> {
        let Targets {
            tombstones,
            mut loaded,
        } = targets;
        let services = UserServices::default();
        let mut seats = 0;
        for (i, step) in steps.enumerate() {
            if let Some(objects) = objects.as_mut().filter(|o| (i + 1) % o.every == 0) {
                objects.stage_next(w, meta).await?;
            }
            let (id, command, fresh_id) = match (step.target, step.command) {
                (Target::Existing(id), c) => (id, c, false),
                (Target::New, UserCommand::Add(add)) => {
                    let tombstone = tombstones.get(&add.address).copied();
                    if tombstone.is_some() {
                        counts.returned += 1;
                        counts.added = counts.added.saturating_sub(1);
                    }
                    if add.kind.counts_against_licence() {
                        seats += 1;
                    }
                    let id = tombstone.unwrap_or_default();
                    let add = UserCommand::Add(AddUser { user_id: id, ..add });
                    (id, add, tombstone.is_none())
                }
                (Target::New, _) => continue,
            };
            // A new user with a fresh id has this one step: its state is
            // not kept once the step is staged.
            let mut fresh;
            let target = if fresh_id {
                fresh = Loaded::new(id.to_string());
                &mut fresh
            } else {
                loaded
                    .entry(id.to_string())
                    .or_insert_with(|| Loaded::new(id.to_string()))
            };
            if let Err(e) = w.batch.execute(target, command, &services, meta).await {
                // The aggregate is the truth: a step the user's current state
                // refuses (changed since it was read) is skipped, not forced.
                tracing::info!(user = %id, error = %e, "sync step skipped");
                counts.skipped += 1;
            }
            w.write_if_full().await?;
        }
        Ok(seats)
    }

    /// The directory objects that changed since the last read (D3.o) and
    /// the version of the customer's objects aggregate; `None` when none
    /// changed.
    async fn objects_change(
        &self,
        customer: CustomerId,
        snapshot: &Snapshot,
        diff: Option<ObjectsDiff>,
    ) -> Result<Option<(ObjectsDiff, Loaded<DirectoryObjects>)>, SyncError> {
        let (upserted, removed) = match diff {
            Some(d) => d,
            None => {
                let before =
                    roster_projections::directory::object_summaries(&self.store, customer).await?;
                objects_diff(snapshot, &before)
            }
        };
        if upserted.is_empty() && removed.is_empty() {
            return Ok(None);
        }
        let id = customer.to_string();
        let target = Loaded::<DirectoryObjects> {
            version: self
                .store
                .version_of(DIRECTORY_OBJECTS_AGGREGATE, &id)
                .await?,
            id,
            state: DirectoryObjects,
        };
        Ok(Some(((upserted, removed), target)))
    }
}

/// The directory objects that changed since the last read (D3.o), staged
/// in the run's append 5,000 objects an event, spread evenly among the
/// plan's steps (issue 17): beside the append, the directory objects'
/// projection lane then works while the user list's lane works through
/// the users, instead of after it. Their order in the append changes
/// nothing else: they are an aggregate of their own, and the run is one
/// append.
struct ObjectsStaging<'a> {
    run: (Uuid, DirectoryKind),
    snapshot: &'a Snapshot,
    upserted: std::iter::Peekable<std::vec::IntoIter<usize>>,
    removed: std::iter::Peekable<std::vec::IntoIter<String>>,
    target: Loaded<DirectoryObjects>,
    /// One event is staged before every this many steps.
    every: usize,
}

impl<'a> ObjectsStaging<'a> {
    const CHUNK: usize = 5_000;

    /// `None` when no object changed.
    fn new(
        run: (Uuid, DirectoryKind),
        snapshot: &'a Snapshot,
        change: Option<(ObjectsDiff, Loaded<DirectoryObjects>)>,
        steps: usize,
    ) -> Option<Self> {
        let ((upserted, removed), target) = change?;
        let events = upserted.len().max(removed.len()).div_ceil(Self::CHUNK);
        Some(ObjectsStaging {
            run,
            snapshot,
            upserted: upserted.into_iter().peekable(),
            removed: removed.into_iter().peekable(),
            target,
            every: (steps / (events + 1)).max(1),
        })
    }

    /// Stages the next event and writes the append's piece if full; false
    /// when none was left.
    async fn stage_next(&mut self, w: &mut Writing, meta: &EventMeta) -> Result<bool, SyncError> {
        if self.upserted.peek().is_none() && self.removed.peek().is_none() {
            return Ok(false);
        }
        let (run_id, kind) = self.run;
        let change = DirectoryObjectsChanged {
            run_id,
            kind,
            upserted: self
                .upserted
                .by_ref()
                .take(Self::CHUNK)
                .map(|i| summary(&self.snapshot.objects[i]))
                .collect(),
            removed: self.removed.by_ref().take(Self::CHUNK).collect(),
        };
        if let Err(never) = w.batch.execute(&mut self.target, change, &(), meta).await {
            match never {}
        }
        w.write_if_full().await?;
        Ok(true)
    }
}

/// The users a plan's steps touch ([`SyncService::load_targets`]).
struct Targets {
    tombstones: HashMap<Address, UserId>,
    loaded: HashMap<String, Loaded<User>>,
}

/// A run's append, written as it is staged (issue 17): the staged events
/// are written every [`Writing::PIECE`] events or [`Writing::PIECE_BYTES`]
/// bytes of payload (a directory objects event holds 5,000 objects, about
/// 2 MB), so a run holds one piece of its events at a time, not all of
/// them. A piece is held three times while it is written (the staged
/// payloads, the statement's arguments, the connection's buffer), beside
/// the read: at 8 MB a piece that was the initial sync's peak. It holds
/// the append lock
/// until it commits: nothing is written to the database through the pool
/// meanwhile (the run's progress is recorded after the commit).
struct Writing {
    append: roster_store::StreamedAppend,
    batch: Batch,
    /// The time spent writing pieces so far.
    written_s: f64,
    /// The projector, until the first full piece.
    projector: Option<Arc<Projector>>,
    /// The projection beside the append (issue 17), opened at the first
    /// full piece: a run whose events fit in one piece is written at its
    /// commit and projected from the log, as a small batch costs less in
    /// one transaction than in lanes held open.
    beside: Option<roster_projections::Beside>,
}

impl Writing {
    const PIECE: usize = 2_500;
    const PIECE_BYTES: usize = 2 << 20;

    async fn write_if_full(&mut self) -> Result<(), SyncError> {
        if self.batch.len() >= Self::PIECE || self.batch.bytes() >= Self::PIECE_BYTES {
            if let Some(projector) = self.projector.take() {
                self.beside = projector.beside(self.append.first() - 1);
                if let Some(b) = &self.beside {
                    self.append.tap(b.tap());
                }
            }
            let t = std::time::Instant::now();
            self.append.write(&mut self.batch).await?;
            self.written_s += t.elapsed().as_secs_f64();
        }
        Ok(())
    }
}

/// The objects of a read that are new or differ from the last read, as
/// their indexes in the read in the order of their ids, and the ids of
/// those it no longer has, sorted. Their summaries are built as they are
/// staged, 5,000 at a time: at an initial sync the summaries of every
/// object were 25 MB at the run's memory peak (issue 17).
type ObjectsDiff = (Vec<usize>, Vec<String>);

/// A spawned load that stops when its owner is dropped (a run given up
/// while it prefetched leaves no query behind it).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The objects of `snapshot` that are new or differ from the last read
/// (`before`), and the ids of those it no longer has; both sorted.
fn objects_diff(snapshot: &Snapshot, before: &HashMap<String, ObjectSummary>) -> ObjectsDiff {
    // A hash set of borrowed ids, not a tree of copies: this runs over
    // every object of every run (issue 17).
    let mut seen: std::collections::HashSet<&str> =
        std::collections::HashSet::with_capacity(snapshot.objects.len());
    // At least the objects beyond the last read's count are new: an
    // initial sync's diff is sized once (issue 17).
    let mut upserted = Vec::with_capacity(snapshot.objects.len().saturating_sub(before.len()));
    for (i, o) in snapshot.objects.iter().enumerate() {
        seen.insert(o.id.as_str());
        // Compared in place; a summary is built only for an object that
        // changed (issue 17: six strings per object, every run).
        match before.get(o.id.as_str()) {
            Some(b) if same_summary(o, b) => {}
            _ => upserted.push(i),
        }
    }
    // The summaries' order: by id, then (two objects with one id) by the
    // rest of the summary.
    let objects = &snapshot.objects;
    upserted.sort_by(|&a, &b| {
        (objects[a].id.as_str().cmp(objects[b].id.as_str()))
            .then_with(|| summary(&objects[a]).cmp(&summary(&objects[b])))
    });
    let mut removed: Vec<String> = before
        .keys()
        .filter(|k| !seen.contains(k.as_str()))
        .cloned()
        .collect();
    removed.sort();
    (upserted, removed)
}

/// A row of the user list as the reconciler's input (its ids and statuses
/// are typed when the row is read).
fn current_user(r: roster_projections::users::UserRow) -> Option<CurrentUser> {
    Some(CurrentUser {
        id: r.user_id,
        address: Address::parse(&r.address).ok()?,
        aliases: r
            .aliases
            .iter()
            .filter_map(|a| Address::parse(a).ok())
            .collect(),
        kind: r.kind,
        source: r.source,
        status: r.status,
        profile: r.profile,
        directory_id: r.directory_id.map(|d| ObjectId::new(d.as_str())),
        flag: r.flag_reason,
        ignored: r.ignored_reason,
        members: r
            .members
            .iter()
            .filter_map(|a| Address::parse(a).ok())
            .collect(),
    })
}

/// The primary address of a summary, as the directory has it: the
/// `SMTP:` entry, else `mail`.
fn summary_mail(o: &DirectoryObject) -> Option<&str> {
    o.proxy_addresses
        .iter()
        .find_map(|p| p.strip_prefix("SMTP:"))
        .or(o.mail.as_deref())
}

/// A summary's aliases: the `smtp:` entries, lower case, sorted, once each.
fn summary_aliases(o: &DirectoryObject) -> Vec<String> {
    let mut aliases: Vec<String> = o
        .proxy_addresses
        .iter()
        .filter_map(|p| smtp_alias(p).map(str::to_lowercase))
        .collect();
    aliases.sort();
    aliases.dedup();
    aliases
}

/// The address of an `smtp:` entry of proxyAddresses (an alias; `SMTP:`
/// is the primary).
fn smtp_alias(p: &str) -> Option<&str> {
    let (prefix, rest) = p.split_once(':')?;
    (prefix.eq_ignore_ascii_case("smtp") && prefix != "SMTP").then_some(rest)
}

fn kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::User => "user",
        ObjectKind::Group => "group",
        ObjectKind::PublicFolder => "public_folder",
    }
}

/// `summary(o) == *s`, without building the summary.
fn same_summary(o: &DirectoryObject, s: &ObjectSummary) -> bool {
    let lower_eq = |raw: &str, have: &str| {
        if raw.is_ascii() {
            raw.len() == have.len()
                && raw
                    .bytes()
                    .zip(have.bytes())
                    .all(|(a, b)| a.to_ascii_lowercase() == b)
        } else {
            raw.to_lowercase() == have
        }
    };
    let mail_same = match (summary_mail(o).map(str::trim), s.mail.as_deref()) {
        (None, None) => true,
        (Some(raw), Some(have)) => lower_eq(raw, have),
        _ => false,
    };
    let has_aliases = o.proxy_addresses.iter().any(|p| smtp_alias(p).is_some());
    s.id == o.id.as_str()
        && s.kind == kind_name(o.kind)
        && s.dn == o.dn
        && s.display_name == o.display_name
        && s.disabled == o.disabled
        && mail_same
        && if has_aliases {
            summary_aliases(o) == s.aliases
        } else {
            s.aliases.is_empty()
        }
}

fn summary(o: &DirectoryObject) -> ObjectSummary {
    let mail = summary_mail(o).map(str::to_string);
    let aliases = summary_aliases(o);
    ObjectSummary {
        id: o.id.to_string(),
        kind: kind_name(o.kind).into(),
        dn: o.dn.clone(),
        display_name: o.display_name.clone(),
        mail: mail.map(|m| m.trim().to_lowercase()),
        aliases,
        disabled: o.disabled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17: the objects' load runs on a task of its own; a run that
    /// gives up its prefetch (a failed read, a dropped run) stops it, and
    /// a joined one gives its value.
    #[tokio::test]
    async fn i17_a_dropped_prefetch_stops_its_objects_load() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&str>();
        let load = AbortOnDrop(tokio::spawn({
            let tx = tx.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = tx.send("finished");
            }
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(load);
        drop(tx);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(rx.recv().await, None, "the dropped load went on");
        let joined = AbortOnDrop(tokio::spawn(async { 7 }));
        assert_eq!(joined.join().await.unwrap(), 7);
    }

    fn object(id: &str, f: impl FnOnce(&mut DirectoryObject)) -> DirectoryObject {
        let mut o = DirectoryObject {
            id: ObjectId::new(id),
            kind: ObjectKind::User,
            dn: Some(format!("cn={id},dc=x")),
            display_name: Some(id.to_uppercase()),
            mail: Some(format!("{id}@example.org")),
            proxy_addresses: vec![],
            profile: Default::default(),
            disabled: false,
            members: vec![],
            member_addresses: Box::default(),
        };
        f(&mut o);
        o
    }

    /// Issue 17: the in-place comparison of the objects' diff says what
    /// comparing built summaries says, for every pair of objects that
    /// differ in one thing a summary holds (or in nothing it holds).
    #[test]
    fn d3o_an_object_compared_in_place_is_compared_as_its_summary() {
        let objects = [
            object("a", |_| {}),
            object("a", |o| o.kind = ObjectKind::Group),
            object("a", |o| o.dn = None),
            object("a", |o| o.dn = Some("cn=A,dc=x".into())),
            object("a", |o| o.display_name = None),
            object("a", |o| o.disabled = true),
            object("a", |o| o.mail = Some(" A@Example.org ".into())),
            object("a", |o| o.mail = Some("b@example.org".into())),
            object("a", |o| o.mail = None),
            object("a", |o| o.mail = Some("ΣΑΣ@example.org".into())),
            object("a", |o| o.mail = Some("σας@example.org".into())),
            object("a", |o| {
                o.proxy_addresses = vec!["SMTP:Other@Example.org".into()]
            }),
            object("a", |o| {
                o.proxy_addresses = vec!["smtp:X@Example.org".into(), "X500:/o=a".into()]
            }),
            object("a", |o| {
                o.proxy_addresses = vec![
                    "SMTP:a@example.org".into(),
                    "smtp:x@example.org".into(),
                    "Smtp:X@example.org".into(),
                ]
            }),
            object("a", |o| {
                o.proxy_addresses = vec!["smtp:y@example.org".into()]
            }),
            object("a", |o| o.profile.department = Some("Sales".into())),
            object("b", |_| {}),
        ];
        let mut equal = 0;
        for a in &objects {
            for b in &objects {
                let want = summary(a) == summary(b);
                assert_eq!(same_summary(a, &summary(b)), want, "{a:?}\n{b:?}");
                equal += usize::from(want);
            }
        }
        assert!(
            equal > objects.len(),
            "some pairs differ only outside the summary"
        );
    }

    /// Issue 17 (D3.o): the diff names the new and changed objects by
    /// their place in the read, in the order of their summaries (the order
    /// the run's `DirectoryObjectsChanged` events list them), two objects
    /// with one id included; unchanged ones are left out and gone ones are
    /// named by id.
    #[test]
    fn d3o_the_diff_names_changed_objects_in_the_order_of_their_summaries() {
        let snapshot = Snapshot {
            objects: vec![
                object("m", |_| {}),
                object("c", |o| o.display_name = Some("renamed".into())),
                object("z", |_| {}),
                object("a", |_| {}),
                object("k", |o| o.kind = ObjectKind::Group),
                object("k", |_| {}),
                object("b", |o| o.disabled = true),
            ],
        };
        let before: HashMap<String, ObjectSummary> = ["a", "b", "c", "m", "gone"]
            .iter()
            .map(|id| (id.to_string(), summary(&object(id, |_| {}))))
            .collect();
        let (upserted, removed) = objects_diff(&snapshot, &before);
        let got: Vec<ObjectSummary> = upserted
            .iter()
            .map(|&i| summary(&snapshot.objects[i]))
            .collect();
        let mut want: Vec<ObjectSummary> = snapshot
            .objects
            .iter()
            .filter(|o| before.get(o.id.as_str()) != Some(&summary(o)))
            .map(summary)
            .collect();
        want.sort();
        assert_eq!(got, want);
        let ids: Vec<&str> = got.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["b", "c", "k", "k", "z"]);
        assert_eq!(removed, ["gone"]);
    }
}
