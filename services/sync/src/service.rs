//! The sync service: settings, test connection, runs, held runs, conflicts,
//! exceptions and additions.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use roster_app::retry::retrying;
use roster_app::seats::Seats;
use roster_app::users::{check_managed, stage_new, NewUser};
use roster_domain::reconcile::{self, CurrentUser, Plan, PlanChange, Target};
use roster_domain::snapshot::{DirectoryObject, ObjectId, ObjectKind, ReadError, Snapshot};
use roster_domain::{
    AddUser, Customer, Directory, DirectoryCommand, DirectoryError, DirectoryObjects, User,
    UserCommand, UserError, UserServices,
};
use roster_events::*;
use roster_projections::Projector;
use roster_store::{Appended, Batch, Clock, Loaded, Secret, SecretKey, Store, StoreError};
use serde::Serialize;
use uuid::Uuid;

use crate::readers::ReaderFactory;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Invalid(String),
    /// A filter in the settings is not a valid LDAP filter (RFC 4515):
    /// refused on save, `invalid_filter` from Test Connection.
    #[error("{0}")]
    InvalidFilter(String),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Projection(String),
    #[error("no such user: {0}")]
    NoSuchUser(String),
    /// D7: a connection field changed and the secret was not given again.
    #[error("{0}")]
    SecretRequired(String),
}

impl From<roster_projections::ProjectionError> for SyncError {
    fn from(e: roster_projections::ProjectionError) -> Self {
        match e {
            roster_projections::ProjectionError::Store(s) => SyncError::Store(s),
            other => SyncError::Projection(other.to_string()),
        }
    }
}

/// What saving settings does besides storing them.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    /// A new bind password / client secret; `None` keeps the stored one.
    pub secret: Option<Secret>,
    /// Enable (true) or disable (false) sync with this save.
    pub enable: Option<bool>,
    /// Confirms disabling the other directory (D1).
    pub confirm_switch: bool,
}

/// The answer to "Test connection".
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TestOutcome {
    pub ok: bool,
    /// On failure: name_resolution, refused, timeout, tls, bind_rejected,
    /// base_dn_not_found, permission, invalid_filter, ...
    pub code: Option<String>,
    pub message: String,
    pub users: Option<u64>,
    pub groups: Option<u64>,
    /// Where the test's audit event went in the log (read-your-writes).
    #[serde(skip)]
    pub position: i64,
}

/// How a run ended.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunOutcome {
    Completed {
        run_id: Uuid,
        counts: SyncCounts,
        over_seat_limit: bool,
    },
    Failed {
        run_id: Uuid,
        code: String,
        reason: String,
    },
    Held {
        run_id: Uuid,
        would_flag: u64,
        directory_users: u64,
    },
}

impl RunOutcome {
    pub fn run_id(&self) -> Uuid {
        match self {
            RunOutcome::Completed { run_id, .. }
            | RunOutcome::Failed { run_id, .. }
            | RunOutcome::Held { run_id, .. } => *run_id,
        }
    }
}

/// A dry run's answer (D3.t): everything the run would do.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub counts: SyncCounts,
    pub would_flag: u64,
    pub directory_users: u64,
    /// Whether a real run would be held by the mass-deletion guard.
    pub would_hold: bool,
    pub changes: Vec<PlanChange>,
    /// Addresses several directory objects claim, with every claimant (D3.u).
    pub contested: Vec<ContestedAddress>,
}

#[derive(Clone)]
pub struct SyncService {
    pub store: Store,
    pub projector: Arc<Projector>,
    pub clock: Arc<dyn Clock>,
    pub key: SecretKey,
    pub readers: Arc<dyn ReaderFactory>,
    /// How long a run may take before another may supersede it.
    pub lease: chrono::Duration,
    /// Where directory connections may go: the operator's decision
    /// (`ROSTER_ALLOW_OUTBOUND`); the default refuses loopback, private,
    /// link-local and metadata addresses, plain http, and Entra endpoints
    /// off Microsoft's clouds.
    pub outbound: Arc<roster_directory::OutboundPolicy>,
}

/// The state a run plans from.
struct Current {
    users: Vec<CurrentUser>,
    managed: BTreeSet<Domain>,
    /// With its version: a run that finds it changed plans again.
    dir: Loaded<Directory>,
}

struct Prefetched {
    current: Current,
    objects: HashMap<String, ObjectSummary>,
}

impl SyncService {
    pub fn new(
        store: Store,
        projector: Arc<Projector>,
        clock: Arc<dyn Clock>,
        key: SecretKey,
        readers: Arc<dyn ReaderFactory>,
    ) -> Self {
        SyncService {
            store,
            projector,
            clock,
            key,
            readers,
            lease: chrono::Duration::minutes(30),
            outbound: Arc::default(),
        }
    }

    fn meta(&self, customer: CustomerId, actor: Actor, correlation: CorrelationId) -> EventMeta {
        EventMeta {
            customer_id: customer,
            actor,
            correlation_id: correlation,
            time: self.clock.now(),
        }
    }

    pub async fn directory(&self, customer: CustomerId) -> Result<Directory, SyncError> {
        Ok(self
            .store
            .load::<Directory>(&customer.to_string())
            .await?
            .state)
    }

    /// Runs directory commands in one batch, retrying on conflicts.
    async fn directory_commands(
        &self,
        meta: &EventMeta,
        commands: &[DirectoryCommand],
    ) -> Result<Appended, SyncError> {
        retrying(|| async {
            let mut dir: Loaded<Directory> = self.store.load(&meta.customer_id.to_string()).await?;
            let mut batch = Batch::new();
            for c in commands {
                batch.execute(&mut dir, c.clone(), &(), meta).await?;
            }
            Ok(self.store.commit(batch).await?)
        })
        .await
    }

    // ---- settings (D5, D6, D7) -------------------------------------------

    /// Validates and saves a directory's settings; the secret is sealed
    /// apart from the log (D7).
    pub async fn save_settings(
        &self,
        meta: &EventMeta,
        config: DirectoryConfig,
        change: SettingsChange,
    ) -> Result<Appended, SyncError> {
        validate(&config)?;
        self.check_outbound(&config.connection).await?;
        let kind = config.connection.kind();
        let current = self.directory(meta.customer_id).await?;
        if change.secret.is_none() && !current.secret_set.contains(&kind) {
            return Err(SyncError::Invalid(match kind {
                DirectoryKind::Ldap => {
                    "a bind password is required the first time LDAP settings are saved".into()
                }
                DirectoryKind::Entra => {
                    "a client secret is required the first time Entra ID settings are saved".into()
                }
            }));
        }
        match &change.secret {
            None => require_same_target(&current, &config.connection)?,
            Some(secret) => {
                if secret.expose().is_empty() {
                    return Err(SyncError::Invalid(
                        "the password / secret must not be empty".into(),
                    ));
                }
                self.store
                    .db()
                    .put_secret(
                        &self.key,
                        meta.customer_id,
                        kind.as_str(),
                        &secret_target(&config.connection),
                        secret,
                        self.clock.now(),
                    )
                    .await?;
            }
        }
        let mut commands = vec![DirectoryCommand::Configure {
            config,
            secret_changed: change.secret.is_some(),
        }];
        match change.enable {
            Some(true) => commands.push(DirectoryCommand::Enable {
                kind,
                confirm_switch: change.confirm_switch,
            }),
            Some(false) if current.enabled == Some(kind) => {
                commands.push(DirectoryCommand::Disable)
            }
            _ => {}
        }
        self.directory_commands(meta, &commands).await
    }

    pub async fn enable(
        &self,
        meta: &EventMeta,
        kind: DirectoryKind,
        confirm_switch: bool,
    ) -> Result<Appended, SyncError> {
        self.directory_commands(
            meta,
            &[DirectoryCommand::Enable {
                kind,
                confirm_switch,
            }],
        )
        .await
    }

    /// D3.q: disabling keeps every user; flags still expire; no new flags.
    pub async fn disable(&self, meta: &EventMeta) -> Result<Appended, SyncError> {
        self.directory_commands(meta, &[DirectoryCommand::Disable])
            .await
    }

    /// Issue 10: the connection goes only where the operator allows: the
    /// endpoints' scheme and hosts, and every address a host name resolves
    /// to now (the readers check the addresses again when they connect).
    pub async fn check_outbound(&self, connection: &Connection) -> Result<(), SyncError> {
        let p = &*self.outbound;
        let bad = SyncError::Invalid;
        match connection {
            Connection::Ldap(s) => {
                p.check_host_literal("host", &s.host).map_err(bad)?;
                p.check_resolved("host", &s.host, s.port)
                    .await
                    .map_err(bad)?;
            }
            Connection::Entra(s) => {
                roster_directory::check_entra_outbound(s, p).map_err(bad)?;
                for (field, url) in [
                    (
                        "login_endpoint",
                        s.login_endpoint
                            .as_deref()
                            .unwrap_or(roster_directory::entra::DEFAULT_LOGIN_ENDPOINT),
                    ),
                    (
                        "graph_endpoint",
                        s.graph_endpoint
                            .as_deref()
                            .unwrap_or(roster_directory::entra::DEFAULT_GRAPH_ENDPOINT),
                    ),
                ] {
                    // Microsoft's own hosts are not looked up here.
                    if let Some((host, port)) =
                        roster_directory::outbound::url_host_port(url.trim())
                            .filter(|(h, _)| !roster_directory::outbound::is_microsoft_host(h))
                    {
                        p.check_resolved(field, &host, port).await.map_err(bad)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The stored secret, released only for the connection it was entered
    /// for (D7).
    async fn secret_for(
        &self,
        customer: CustomerId,
        connection: &Connection,
    ) -> Result<Option<Secret>, SyncError> {
        Ok(self
            .store
            .db()
            .get_secret(
                &self.key,
                customer,
                connection.kind().as_str(),
                &secret_target(connection),
            )
            .await?)
    }

    /// Test connection: the given settings (before saving them) or the
    /// stored ones. A secret left out is taken from the store only when
    /// every connection field is as saved (D7); otherwise the test is
    /// refused with [`SyncError::SecretRequired`] and connects nowhere.
    /// Every test made is recorded in the audit trail.
    pub async fn test(
        &self,
        meta: &EventMeta,
        candidate: Option<(DirectoryConfig, Option<Secret>)>,
    ) -> Result<TestOutcome, SyncError> {
        let customer = meta.customer_id;
        let saved = candidate.is_none();
        let (connection, secret, secret_given) = match candidate {
            Some((config, secret)) => {
                match validate(&config) {
                    // Test Connection answers a bad filter like a server
                    // would (docs/directory-sync.md).
                    Err(SyncError::InvalidFilter(message)) => {
                        return Ok(TestOutcome {
                            ok: false,
                            code: Some(crate::codes::INVALID_FILTER.to_string()),
                            message,
                            users: None,
                            groups: None,
                            // Refused before connecting anywhere: nothing
                            // was tested, nothing is recorded.
                            position: 0,
                        });
                    }
                    other => other?,
                }
                self.check_outbound(&config.connection).await?;
                match secret {
                    Some(s) => (config.connection, Some(s), true),
                    None => {
                        let dir = self.directory(customer).await?;
                        require_same_target(&dir, &config.connection)?;
                        let secret = self.secret_for(customer, &config.connection).await?;
                        (config.connection, secret, false)
                    }
                }
            }
            None => {
                let dir = self.directory(customer).await?;
                let kind = dir
                    .enabled
                    .or_else(|| dir.configs.keys().next().copied())
                    .ok_or_else(|| {
                        SyncError::Invalid(
                            "no directory is configured: send settings to test, or save them first"
                                .into(),
                        )
                    })?;
                let config = dir
                    .configs
                    .get(&kind)
                    .cloned()
                    .ok_or(DirectoryError::NotConfigured(kind))?;
                self.check_outbound(&config.connection).await?;
                let secret = self.secret_for(customer, &config.connection).await?;
                (config.connection, secret, false)
            }
        };
        let outcome = match self.readers.reader(&connection, secret.as_ref()) {
            Err(e) => Err(e),
            Ok(reader) => reader.test().await,
        };
        let mut outcome = match outcome {
            Ok(r) => TestOutcome {
                ok: true,
                code: None,
                message: match connection.kind() {
                    DirectoryKind::Ldap => format!("LDAP connection test passed: {}", r.details),
                    DirectoryKind::Entra => "Azure connection test passed".to_string(),
                },
                users: Some(r.users),
                groups: Some(r.groups),
                position: 0,
            },
            Err(e) => {
                // The detail can quote the server's own answer: it goes to
                // the operator's log, the caller gets the code and our text.
                tracing::info!(customer = %customer, code = e.code(), error = %e, "test connection failed");
                TestOutcome {
                    ok: false,
                    code: Some(e.code().to_string()),
                    message: test_failure_message(&e).to_string(),
                    users: None,
                    groups: None,
                    position: 0,
                }
            }
        };
        let appended = self
            .directory_commands(
                meta,
                &[DirectoryCommand::RecordTest(DirectoryTested {
                    kind: connection.kind(),
                    saved,
                    secret_given,
                    target: target_description(&connection),
                    ok: outcome.ok,
                    code: outcome.code.clone(),
                })],
            )
            .await?;
        outcome.position = appended.last;
        Ok(outcome)
    }

    // ---- runs (D3, D4) ---------------------------------------------------

    /// Starts a run if none is running (D4). Returns its id; the caller runs
    /// [`SyncService::execute`] (in the background for Sync Now).
    pub async fn start(
        &self,
        customer: CustomerId,
        trigger: SyncTrigger,
        by: Actor,
    ) -> Result<Uuid, SyncError> {
        let run_id = Uuid::now_v7();
        let meta = self.meta(customer, by, CorrelationId(run_id));
        let a = self
            .directory_commands(
                &meta,
                &[DirectoryCommand::StartSync {
                    run_id,
                    trigger,
                    at: self.clock.now(),
                    lease: self.lease,
                }],
            )
            .await?;
        // The caller's next read (GET .../syncs/{run}) must see the run.
        self.settle(a.last).await;
        metrics::counter!("roster_sync_runs_started_total").increment(1);
        Ok(run_id)
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
        let svc = self.clone();
        tokio::spawn(async move {
            if let Err(e) = svc.execute(customer, run, None).await {
                tracing::error!(customer = %customer, run = %run, error = %e, "sync run failed to record its outcome");
            }
        });
        Ok(run)
    }

    /// Reads the enabled directory: a complete snapshot or why not.
    async fn read(
        &self,
        customer: CustomerId,
        dir: &Directory,
    ) -> Result<(DirectoryConfig, Snapshot), ReadError> {
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
        let reader = self.readers.reader(&config.connection, secret.as_ref())?;
        // B1: what the previous read left (delta links and the directory as
        // read); a reader that keeps none reads everything.
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
        let read = reader.read_incremental(previous.as_deref()).await?;
        metrics::counter!("roster_directory_reads_total", "kind" => kind.as_str(), "mode" => read.mode.as_str())
            .increment(1);
        // The stored state is always a complete directory and the delta link
        // that continues from it, whatever the run then does with the
        // snapshot; losing it only costs a full read.
        if let Some(state) = &read.state {
            if let Err(e) = self
                .store
                .db()
                .put_read_state(customer, kind.as_str(), state, self.clock.now())
                .await
            {
                tracing::warn!(customer = %customer, error = %e, "the read's state could not be kept; the next read is a full one");
            }
        }
        Ok((config, read.snapshot))
    }

    /// Runs a started run to its end and records the outcome. A read that
    /// does not complete fails the run and changes nothing (D3.r).
    pub async fn execute(
        &self,
        customer: CustomerId,
        run_id: Uuid,
        confirmed_limit: Option<u64>,
    ) -> Result<RunOutcome, SyncError> {
        let started = std::time::Instant::now();
        let meta = self.meta(customer, Actor::Sync(run_id), CorrelationId(run_id));
        let dir = self.directory(customer).await?;
        // The directory is read on its own thread; what the plan needs from
        // the database is loaded meanwhile.
        let (read, prefetched) = tokio::join!(self.read(customer, &dir), self.prefetch(customer));
        tracing::info!(customer = %customer, run = %run_id, seconds = started.elapsed().as_secs_f64(), ok = read.is_ok(), "directory read");
        let mut prefetched = prefetched.ok();
        let outcome = match read {
            Err(e) => {
                tracing::warn!(customer = %customer, run = %run_id, code = e.code(), error = %e, "directory read failed; nothing flagged or deleted");
                self.fail(&meta, run_id, e.code(), &e.to_string()).await?
            }
            Ok((config, snapshot)) => {
                let result = retrying(|| {
                    let prefetched = prefetched.take();
                    let (meta, config, snapshot) = (&meta, &config, &snapshot);
                    async move {
                        Ok(self
                            .apply(meta, run_id, config, snapshot, confirmed_limit, prefetched)
                            .await?)
                    }
                })
                .await;
                match result {
                    Ok(o) => o,
                    Err(e) => {
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
        metrics::histogram!("roster_sync_run_seconds").record(started.elapsed().as_secs_f64());
        let status = match &outcome {
            RunOutcome::Completed { .. } => "completed",
            RunOutcome::Failed { .. } => "failed",
            RunOutcome::Held { .. } => "held",
        };
        metrics::counter!("roster_sync_runs_total", "status" => status).increment(1);
        tracing::info!(customer = %customer, run = %run_id, status, seconds = started.elapsed().as_secs_f64(), "sync run finished");
        Ok(outcome)
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
            Ok(a) => self.settle(a.last).await,
            Err(e) => {
                tracing::warn!(customer = %customer, run = %run_id, error = %e, "the run's end could not be recorded; it keeps the time its outcome was committed")
            }
        }
    }

    /// Why a run an administrator wants to confirm or discard is not held:
    /// superseded by a newer run (issue 11), or simply not held.
    async fn not_held(&self, customer: CustomerId, run_id: Uuid) -> SyncError {
        if let Ok(Some(row)) =
            roster_projections::directory::run(&self.store, customer, &run_id.to_string()).await
        {
            if row.status == "superseded" {
                if let Some(by_run) = row
                    .decided_by_run
                    .as_deref()
                    .and_then(|r| Uuid::parse_str(r).ok())
                {
                    return DirectoryError::Superseded { run_id, by_run }.into();
                }
            }
        }
        DirectoryError::NotHeld(run_id).into()
    }

    async fn settle(&self, position: i64) {
        if position > 0
            && !self
                .projector
                .wait_for(position, Duration::from_secs(60))
                .await
        {
            tracing::warn!(position, "projections did not catch up within 60 s");
        }
    }

    /// Everything the reconciler needs about the customer now.
    async fn current(&self, customer: CustomerId) -> Result<Current, SyncError> {
        // The read models must show every earlier write before we plan from them.
        let head = self.store.head_position().await?;
        self.settle(head).await;
        let rows = roster_projections::queries::current_users(&self.store, customer).await?;
        let users = rows.into_iter().filter_map(current_user).collect();
        let cust: Loaded<Customer> = self.store.load(&customer.to_string()).await?;
        let dir: Loaded<Directory> = self.store.load(&customer.to_string()).await?;
        Ok(Current {
            users,
            managed: cust.state.domains,
            dir,
        })
    }

    /// What a run plans from, loaded while the directory is being read: the
    /// current users and the directory objects as last read. The first
    /// attempt of a run uses it; a retry loads afresh.
    async fn prefetch(&self, customer: CustomerId) -> Result<Prefetched, SyncError> {
        let current = self.current(customer).await?;
        let objects =
            roster_projections::directory::object_summaries(&self.store, customer).await?;
        Ok(Prefetched { current, objects })
    }

    /// Plans a run against the current state.
    fn plan(
        &self,
        customer: CustomerId,
        config: &DirectoryConfig,
        snapshot: &Snapshot,
        current: &Current,
    ) -> Plan {
        let Current {
            users,
            managed,
            dir,
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
        };
        reconcile::reconcile(snapshot, users, &settings)
    }

    /// D3.t: what a run would do, changing nothing.
    pub async fn dry_run(
        &self,
        customer: CustomerId,
    ) -> Result<Result<DryRun, ReadError>, SyncError> {
        let dir = self.directory(customer).await?;
        let (config, snapshot) = match self.read(customer, &dir).await {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        let current = self.current(customer).await?;
        let plan = self.plan(customer, &config, &snapshot, &current);
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
        run_id: Uuid,
        config: &DirectoryConfig,
        snapshot: &Snapshot,
        confirmed_limit: Option<u64>,
        prefetched: Option<Prefetched>,
    ) -> Result<RunOutcome, SyncError> {
        let customer = meta.customer_id;
        let t = std::time::Instant::now();
        let (current, objects) = match prefetched {
            Some(p) => (p.current, Some(p.objects)),
            None => (self.current(customer).await?, None),
        };
        let plan = self.plan(customer, config, snapshot, &current);
        let plan_s = t.elapsed().as_secs_f64();
        let hold = match confirmed_limit {
            Some(limit) => plan.flags > limit,
            None => config.guard.holds(plan.flags, plan.directory_users),
        };
        let mut dir: Loaded<Directory> = self.store.load(&customer.to_string()).await?;
        if dir.version != current.dir.version {
            // Exceptions, additions or settings changed since the plan's
            // state was loaded: plan again from fresh state.
            return Err(SyncError::Store(StoreError::Conflict));
        }
        drop(current);
        let now = self.clock.now();
        if hold {
            let mut batch = Batch::new();
            batch
                .execute(
                    &mut dir,
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
            crate::report::stage(&mut batch, run_id, &plan.report, meta).await;
            let a = self.store.commit(batch).await?;
            self.settle(a.last).await;
            self.finished(customer, run_id).await;
            tracing::warn!(customer = %customer, run = %run_id, would_flag = plan.flags, "sync held by the mass-deletion guard");
            return Ok(RunOutcome::Held {
                run_id,
                would_flag: plan.flags,
                directory_users: plan.directory_users,
            });
        }

        let t = std::time::Instant::now();
        let mut batch = Batch::new();
        let mut counts = plan.counts;
        let seats_added = self
            .stage_plan(&mut batch, customer, &plan, meta, &mut counts)
            .await?;
        self.stage_objects(
            &mut batch,
            customer,
            run_id,
            config.connection.kind(),
            snapshot,
            objects,
            meta,
        )
        .await?;
        crate::report::stage(&mut batch, run_id, &plan.report, meta).await;
        // T3: directory users do not wait for a seat; the run reports going beyond.
        let over_seat_limit = !Seats::of(&self.store, customer).await?.fits(seats_added);
        batch
            .execute(
                &mut dir,
                DirectoryCommand::CompleteSync {
                    run_id,
                    counts,
                    over_seat_limit,
                    at: now,
                },
                &(),
                meta,
            )
            .await?;
        let stage_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let a = self.store.commit(batch).await?;
        let append_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        self.settle(a.last).await;
        self.finished(customer, run_id).await;
        tracing::info!(
            customer = %customer,
            run = %run_id,
            plan_s,
            stage_s,
            append_s,
            project_s = t.elapsed().as_secs_f64(),
            events = a.count,
            "sync run applied"
        );
        if over_seat_limit {
            tracing::warn!(customer = %customer, run = %run_id, "directory users take the customer beyond its seat limit (T3)");
        }
        Ok(RunOutcome::Completed {
            run_id,
            counts,
            over_seat_limit,
        })
    }

    /// Loads the users a plan touches and stages its steps. Returns the seats
    /// the new users take.
    async fn stage_plan(
        &self,
        batch: &mut Batch,
        customer: CustomerId,
        plan: &Plan,
        meta: &EventMeta,
        counts: &mut SyncCounts,
    ) -> Result<u64, SyncError> {
        let new_addresses: Vec<Address> = plan
            .steps
            .iter()
            .filter_map(|s| match (&s.target, &s.command) {
                (Target::New, UserCommand::Add(a)) => Some(a.address.clone()),
                _ => None,
            })
            .collect();
        let tombstones = self
            .store
            .db()
            .tombstones_bulk(customer, &new_addresses)
            .await?;
        let mut ids: Vec<String> = plan
            .steps
            .iter()
            .filter_map(|s| match s.target {
                Target::Existing(id) => Some(id.to_string()),
                Target::New => None,
            })
            .chain(tombstones.values().map(|id| id.to_string()))
            .collect();
        ids.sort();
        ids.dedup();
        let mut loaded = self.store.load_many::<User>(&ids).await?;
        let services = UserServices::default();
        let mut seats = 0;
        for step in &plan.steps {
            let (id, command) = match (&step.target, &step.command) {
                (Target::Existing(id), c) => (*id, c.clone()),
                (Target::New, UserCommand::Add(add)) => {
                    let id = tombstones.get(&add.address).copied().unwrap_or_default();
                    if tombstones.contains_key(&add.address) {
                        counts.returned += 1;
                        counts.added = counts.added.saturating_sub(1);
                    }
                    if add.kind.counts_against_licence() {
                        seats += 1;
                    }
                    (
                        id,
                        UserCommand::Add(AddUser {
                            user_id: id,
                            ..add.clone()
                        }),
                    )
                }
                (Target::New, _) => continue,
            };
            let target = loaded
                .entry(id.to_string())
                .or_insert_with(|| Loaded::new(id.to_string()));
            if let Err(e) = batch.execute(target, command, &services, meta).await {
                // The aggregate is the truth: a step the user's current state
                // refuses (changed since it was read) is skipped, not forced.
                tracing::info!(user = %id, error = %e, "sync step skipped");
                counts.skipped += 1;
            }
        }
        Ok(seats)
    }

    /// Records the directory objects that changed since the last read (D3.o).
    #[allow(clippy::too_many_arguments)] // the run's context, passed as is
    async fn stage_objects(
        &self,
        batch: &mut Batch,
        customer: CustomerId,
        run_id: Uuid,
        kind: DirectoryKind,
        snapshot: &Snapshot,
        before: Option<HashMap<String, ObjectSummary>>,
        meta: &EventMeta,
    ) -> Result<(), SyncError> {
        let before = match before {
            Some(b) => b,
            None => roster_projections::directory::object_summaries(&self.store, customer).await?,
        };
        let mut seen = BTreeSet::new();
        let mut upserted = Vec::new();
        for o in &snapshot.objects {
            let s = summary(o);
            seen.insert(s.id.clone());
            if before.get(&s.id) != Some(&s) {
                upserted.push(s);
            }
        }
        upserted.sort();
        let mut removed: Vec<String> = before
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        removed.sort();
        if upserted.is_empty() && removed.is_empty() {
            return Ok(());
        }
        let id = customer.to_string();
        let mut target = Loaded::<DirectoryObjects> {
            id: id.clone(),
            version: self
                .store
                .version_of(DIRECTORY_OBJECTS_AGGREGATE, &id)
                .await?,
            state: DirectoryObjects,
        };
        const CHUNK: usize = 5_000;
        let mut removed_chunks = removed.chunks(CHUNK);
        for chunk in upserted.chunks(CHUNK) {
            let change = DirectoryObjectsChanged {
                run_id,
                kind,
                upserted: chunk.to_vec(),
                removed: removed_chunks
                    .next()
                    .map(|c| c.to_vec())
                    .unwrap_or_default(),
            };
            if let Err(never) = batch.execute(&mut target, change, &(), meta).await {
                match never {}
            }
        }
        for chunk in removed_chunks {
            let change = DirectoryObjectsChanged {
                run_id,
                kind,
                upserted: vec![],
                removed: chunk.to_vec(),
            };
            if let Err(never) = batch.execute(&mut target, change, &(), meta).await {
                match never {}
            }
        }
        Ok(())
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
        self.directory_commands(
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
        .await?;
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

    // ---- deletion delay (D3.i) -------------------------------------------

    /// Deletes flagged users whose delay has passed, with their rules.
    /// Returns how many were deleted. Several replicas may run it: each
    /// deletion is decided by the user aggregate, once.
    pub async fn reap(&self) -> Result<u64, SyncError> {
        let now = self.clock.now();
        let due = roster_projections::queries::due_for_deletion(
            &self.store,
            now.timestamp_micros(),
            1_000,
        )
        .await?;
        let mut by_customer: HashMap<CustomerId, Vec<String>> = HashMap::new();
        for (c, u) in due {
            by_customer.entry(c).or_default().push(u);
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

    // ---- conflicts (D3.m) ------------------------------------------------

    /// Applies a conflict action to flagged users; each address gets its own
    /// answer, and the successful ones are appended together.
    pub async fn conflict_action(
        &self,
        meta: &EventMeta,
        action: ConflictAction,
        addresses: &[Address],
    ) -> Result<(Vec<(Address, Result<(), String>)>, i64), SyncError> {
        let mut results = Vec::new();
        let mut targets: Vec<(Address, UserId)> = Vec::new();
        let owners = self.store.db().address_owners(addresses).await?;
        for a in addresses {
            match owners.get(a) {
                Some(o) if o.customer_id == meta.customer_id && o.primary => {
                    targets.push((a.clone(), o.owner))
                }
                _ => results.push((
                    a.clone(),
                    Err(format!("{a} is not a user of this customer")),
                )),
            }
        }
        let ids: Vec<String> = targets.iter().map(|(_, id)| id.to_string()).collect();
        let mut users = self.store.load_many::<User>(&ids).await?;
        let mut batch = Batch::new();
        for (a, id) in &targets {
            let Some(u) = users.get_mut(&id.to_string()) else {
                continue;
            };
            if u.state.flag.is_none() {
                results.push((
                    a.clone(),
                    Err(format!("{a} is not a conflict (not flagged for deletion)")),
                ));
                continue;
            }
            let cmd = match action {
                ConflictAction::Delete => UserCommand::Delete {
                    reason: DeletionReason::ConflictDeleted,
                    at: meta.time,
                },
                ConflictAction::Ignore => UserCommand::IgnoreConflict,
                ConflictAction::Deactivate => UserCommand::Deactivate,
            };
            match batch.execute(u, cmd, &UserServices::default(), meta).await {
                Ok(_) => results.push((a.clone(), Ok(()))),
                Err(e) => results.push((a.clone(), Err(e.to_string()))),
            }
        }
        let a = self.store.commit(batch).await?;
        Ok((results, a.last))
    }

    // ---- exceptions and additions (D3.o, D3.p) -----------------------------

    pub async fn add_exception(
        &self,
        meta: &EventMeta,
        e: Exception,
    ) -> Result<Appended, SyncError> {
        self.directory_commands(meta, &[DirectoryCommand::AddException(e)])
            .await
    }

    pub async fn remove_exception(
        &self,
        meta: &EventMeta,
        e: Exception,
    ) -> Result<Appended, SyncError> {
        self.directory_commands(meta, &[DirectoryCommand::RemoveException(e)])
            .await
    }

    /// D3.p: the address is created at once with the directory as its
    /// source, and is not flagged while it stays on the list.
    pub async fn add_addition(
        &self,
        meta: &EventMeta,
        address: Address,
    ) -> Result<Appended, SyncError> {
        let customer = meta.customer_id;
        retrying(|| async {
            let mut dir: Loaded<Directory> = self.store.load(&customer.to_string()).await?;
            let kind = dir
                .state
                .enabled
                .or_else(|| dir.state.configs.keys().next().copied())
                .ok_or_else(|| {
                    SyncError::Invalid("configure a directory before adding additions".into())
                })?;
            check_managed(&self.store, customer, &[&address]).await?;
            let mut batch = Batch::new();
            let command = DirectoryCommand::AddAddition(address.clone());
            batch.execute(&mut dir, command, &(), meta).await?;
            match self.store.db().address_owner(&address).await? {
                Some(o) if o.customer_id == customer && o.primary => {} // already a user: kept from now on
                Some(_) => {
                    let address = address.clone();
                    return Err(StoreError::AddressTaken { address }.into());
                }
                // Additions are made by an administrator: they take a free seat (T3).
                None => {
                    let user = NewUser {
                        address: address.clone(),
                        kind: Kind::User,
                        profile: Profile::default(),
                        aliases: vec![],
                    };
                    stage_new(&self.store, &mut batch, meta, &user, kind.source()).await?;
                }
            }
            Ok(self.store.commit(batch).await?)
        })
        .await
    }

    /// Removes an address from the additions list; the user stays, and the
    /// next sync decides about it like any other.
    pub async fn remove_addition(
        &self,
        meta: &EventMeta,
        address: Address,
    ) -> Result<Appended, SyncError> {
        self.directory_commands(meta, &[DirectoryCommand::RemoveAddition(address)])
            .await
    }
}

/// A conflict action (D3.m).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictAction {
    Delete,
    Ignore,
    Deactivate,
}

fn current_user(r: roster_projections::users::UserRow) -> Option<CurrentUser> {
    let flag = r.flag_reason.as_deref().and_then(FlagReason::parse);
    let ignored = r.ignored_reason.as_deref().and_then(FlagReason::parse);
    Some(CurrentUser {
        id: UserId::parse(&r.user_id).ok()?,
        address: Address::parse(&r.address).ok()?,
        aliases: r
            .aliases
            .iter()
            .filter_map(|a| Address::parse(a).ok())
            .collect(),
        kind: Kind::parse(&r.kind)?,
        source: Source::parse(&r.source)?,
        status: Status::parse(&r.status)?,
        profile: r.profile,
        directory_id: r.directory_id.map(ObjectId::new),
        flag,
        ignored,
        members: r
            .members
            .iter()
            .filter_map(|a| Address::parse(a).ok())
            .collect(),
    })
}

fn summary(o: &DirectoryObject) -> ObjectSummary {
    let mail = o
        .proxy_addresses
        .iter()
        .find_map(|p| p.strip_prefix("SMTP:").map(str::to_string))
        .or_else(|| o.mail.clone());
    let mut aliases: Vec<String> = o
        .proxy_addresses
        .iter()
        .filter_map(|p| {
            let (prefix, rest) = p.split_once(':')?;
            (prefix.eq_ignore_ascii_case("smtp") && prefix != "SMTP").then(|| rest.to_lowercase())
        })
        .collect();
    aliases.sort();
    aliases.dedup();
    ObjectSummary {
        id: o.id.to_string(),
        kind: match o.kind {
            ObjectKind::User => "user",
            ObjectKind::Group => "group",
            ObjectKind::PublicFolder => "public_folder",
        }
        .into(),
        dn: o.dn.clone(),
        display_name: o.display_name.clone(),
        mail: mail.map(|m| m.trim().to_lowercase()),
        aliases,
        disabled: o.disabled,
    }
}

/// D5: settings that cannot work are refused when saved, with what to fix.
pub fn validate(config: &DirectoryConfig) -> Result<(), SyncError> {
    let bad = |m: &str| Err(SyncError::Invalid(m.to_string()));
    match &config.connection {
        Connection::Ldap(s) => {
            if s.host.trim().is_empty() {
                return bad("host is required: the LDAP server's name or IP address");
            }
            if s.host.contains('/') || s.host.contains(' ') {
                return bad("host must be a name or an IP address, without ldap:// or a path");
            }
            if s.port == 0 {
                return bad("port must be between 1 and 65535");
            }
            if s.ssl && s.starttls {
                return bad("ssl and starttls: choose SSL (LDAPS) or StartTLS, not both");
            }
            if s.base_dn.trim().is_empty() {
                return bad("base_dn is required, e.g. ou=Staff,dc=example,dc=com");
            }
            roster_directory::validate_dn(s.base_dn.trim()).map_err(|e| {
                SyncError::Invalid(format!(
                    "base_dn is not a valid DN (RFC 4514): {e}; e.g. ou=Staff,dc=example,dc=com"
                ))
            })?;
            if s.timeout_secs == 0 || s.timeout_secs > 600 {
                return bad("timeout_secs must be between 1 and 600 seconds");
            }
            if let Some(f) = s.filter.as_deref().filter(|f| !f.trim().is_empty()) {
                roster_directory::validate_filter(f).map_err(|e| {
                    SyncError::InvalidFilter(format!(
                        "filter: the custom filter is not a valid LDAP filter (RFC 4515): {e}"
                    ))
                })?;
            }
            // The preset, the attribute map and every filter combined must make sense.
            roster_directory::LdapReader::new(s.clone(), String::new())
                .mapping()
                .map_err(|e| match e {
                    ReadError::InvalidFilter(m) => SyncError::InvalidFilter(format!(
                        "attributes: not a valid LDAP filter (RFC 4515): {m}"
                    )),
                    other => SyncError::Invalid(format!(
                        "attributes: the attribute mapping is not usable: {other}"
                    )),
                })?;
            if let Some(pem) = &s.tls.ca_pem {
                roster_directory::check_ca_pem(pem).map_err(|e| {
                    SyncError::Invalid(format!("ca_pem: the CA certificate is not usable: {e}"))
                })?;
            }
            Ok(())
        }
        // D6: tenant (id or domain), client id (GUID), filter, endpoints.
        Connection::Entra(s) => roster_directory::validate_entra_settings(s)
            .map_err(|e| SyncError::Invalid(format!("Entra ID settings: {e}"))),
    }
}

/// The connection fields a directory secret is bound to (D7), by name:
/// where it is sent and as whom. Entra endpoints left out are the defaults.
fn connection_fields(c: &Connection) -> Vec<(&'static str, String)> {
    match c {
        Connection::Ldap(s) => vec![
            ("host", s.host.clone()),
            ("port", s.port.to_string()),
            ("ssl", s.ssl.to_string()),
            ("starttls", s.starttls.to_string()),
            ("verify_tls", s.tls.verify.to_string()),
            ("ca_pem", s.tls.ca_pem.clone().unwrap_or_default()),
            ("bind_user", s.bind_user.clone()),
        ],
        Connection::Entra(s) => vec![
            ("tenant", s.tenant.clone()),
            ("client_id", s.client_id.clone()),
            (
                "login_endpoint",
                s.login_endpoint
                    .clone()
                    .unwrap_or_else(|| roster_directory::entra::DEFAULT_LOGIN_ENDPOINT.into()),
            ),
            (
                "graph_endpoint",
                s.graph_endpoint
                    .clone()
                    .unwrap_or_else(|| roster_directory::entra::DEFAULT_GRAPH_ENDPOINT.into()),
            ),
        ],
    }
}

/// The digest a stored secret is bound to (D7): every connection field.
pub fn secret_target(c: &Connection) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(c.kind().as_str().as_bytes());
    for (name, value) in connection_fields(c) {
        h.update([0u8]);
        h.update(name.as_bytes());
        h.update([0u8]);
        h.update(value.as_bytes());
    }
    format!("v1:{}", hex::encode(h.finalize()))
}

/// The first connection field that differs between two settings.
pub fn changed_connection_field(old: &Connection, new: &Connection) -> Option<&'static str> {
    connection_fields(old)
        .into_iter()
        .zip(connection_fields(new))
        .find(|(a, b)| a != b)
        .map(|(a, _)| a.0)
}

/// D7: without a new secret, the connection must be the one the stored
/// secret was entered for; otherwise the secret must be given again.
fn require_same_target(dir: &Directory, new: &Connection) -> Result<(), SyncError> {
    let (what, verb) = match new.kind() {
        DirectoryKind::Ldap => ("password", "bind password"),
        DirectoryKind::Entra => ("client_secret", "client secret"),
    };
    let Some(old) = dir.configs.get(&new.kind()) else {
        return Ok(());
    };
    match changed_connection_field(&old.connection, new) {
        None => Ok(()),
        Some(field) => Err(SyncError::SecretRequired(format!(
            "{field} differs from the saved settings: the stored {verb} is sent only to the connection it was entered for, so give {what} again with the new {field}"
        ))),
    }
}

/// Where a connection goes, for the audit trail (never a secret).
fn target_description(c: &Connection) -> String {
    match c {
        Connection::Ldap(s) => {
            let scheme = if s.ssl { "ldaps" } else { "ldap" };
            let host = s.host.trim();
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_string()
            };
            let starttls = if !s.ssl && s.starttls {
                " (StartTLS)"
            } else {
                ""
            };
            format!(
                "{scheme}://{host}:{}{starttls} as {}",
                s.port,
                s.bind_user.trim()
            )
        }
        Connection::Entra(s) => format!(
            "tenant {} client {} at {}",
            s.tenant.trim(),
            s.client_id.trim(),
            s.login_endpoint
                .as_deref()
                .unwrap_or(roster_directory::entra::DEFAULT_LOGIN_ENDPOINT)
                .trim()
        ),
    }
}

/// What a failed test tells the caller: Roster's own words for the code,
/// never the other server's answer (a test must not read out a server that
/// the settings point at).
fn test_failure_message(e: &ReadError) -> &'static str {
    match e {
        ReadError::NameResolution(_) => "the host name could not be resolved: check the host (DNS)",
        ReadError::Refused(_) => "the connection was refused: check the port, the firewall and whether the server listens (636 for LDAPS)",
        ReadError::Timeout(_) => "the server did not answer in time: check the network path, or raise timeout_secs",
        ReadError::Tls(_) => "the TLS connection failed: check the certificate (its issuer, given as ca_pem for a private CA; its host name; its dates) and SSL / StartTLS against the port",
        ReadError::BindRejected(_) => "the server refused the credentials: check the bind user and the password",
        ReadError::BaseDnNotFound(_) => "the base DN was not found: check it for typos, and that the bind user can see it",
        ReadError::Permission(_) => "the account may not read the directory: grant the permissions the documentation lists",
        ReadError::InvalidFilter(_) => "the directory rejected the filter: check the custom filter",
        ReadError::Throttled(_) => "the directory is throttling or unavailable: try again later",
        ReadError::Incomplete(_) => "the directory's answer was cut off or not understood",
        ReadError::Settings(_) => "the settings cannot be used: check them",
        ReadError::TenantNotFound(_) => "the tenant was not found: check the directory (tenant) id or the verified domain",
        ReadError::ClientIdNotFound(_) => "the application was not found: check the application (client) id and that it is registered in this tenant",
        ReadError::SecretRejected(_) => "the client secret was rejected: use the secret's value (not its id), and check that it was not removed",
        ReadError::SecretExpired(_) => "the client secret has expired: create a new one in the app registration and save it here",
        ReadError::Other(_) => "the connection test failed",
    }
}
