//! The sync service: settings, test connection, runs, held runs, conflicts,
//! exceptions and additions.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use roster_app::retry::{retrying, Attempt};
use roster_app::seats::Seats;
use roster_app::users::{check_managed, stage_new, NewUser};
use roster_domain::reconcile::{
    self, staged_steps, Addition, CurrentUser, Plan, PlanChange, Step, Target,
};
use roster_domain::snapshot::{
    DirectoryObject, IncrementalRead, ObjectId, ObjectKind, ReadError, ReadState, Snapshot,
};
use roster_domain::{
    AddUser, Customer, Directory, DirectoryCommand, DirectoryError, DirectoryObjects, User,
    UserCommand, UserError, UserServices,
};
use roster_events::*;
use roster_projections::Projector;
use roster_store::{Appended, Batch, Clock, Loaded, Secret, SecretKey, Store, StoreError};
use serde::Serialize;
use uuid::Uuid;

use crate::queue::{RunConfig, RunQueue};
use crate::readers::ReaderFactory;

mod additions;
mod conflicts;
mod connection_test;
mod exceptions;
mod held;
mod kept;
mod leases;
mod progress;
mod reaper;
mod runs;
mod scheduler;
mod settings;

pub use conflicts::ConflictAction;
pub use settings::{changed_connection_field, secret_target, validate};

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
    /// How long a run may take before another may supersede it in the log
    /// (30 minutes): the last resort. A stopped replica's runs are taken
    /// over long before, when their heartbeat lease (`queue`) expires.
    pub lease: chrono::Duration,
    /// Where directory connections may go: the operator's decision
    /// (`ROSTER_ALLOW_OUTBOUND`); the default refuses loopback, private,
    /// link-local and metadata addresses, plain http, and Entra endpoints
    /// off Microsoft's clouds.
    pub outbound: Arc<roster_directory::OutboundPolicy>,
    /// This replica's runs: how many at once, their leases (issue 18).
    pub queue: Arc<RunQueue>,
    /// Plans that changed nothing, for the next run of the same customer
    /// to reuse when its read and inputs are the same (issue 17).
    pub(crate) kept: Arc<kept::KeptPlans>,
    /// Each customer's last report recorded in full, for a run whose report
    /// is the same to refer to (issue 17).
    pub(crate) reports: Arc<crate::report::LastReports>,
}

/// The state a run plans from.
struct Current {
    users: Vec<CurrentUser>,
    managed: BTreeSet<Domain>,
    /// With its version: a run that finds it changed plans again.
    dir: Loaded<Directory>,
    /// The log position whose events (and every earlier one) the users
    /// and the directory above show; `None` when the read models did not
    /// catch up in time (the plan is then not kept).
    inputs_at: Option<i64>,
}

struct Prefetched {
    current: Current,
    objects: HashMap<String, ObjectSummary>,
}

/// What a run's first attempt plans from: loaded while the directory was
/// read, or the previous run's plan kept for a read and inputs that are
/// the same (issue 17), with the directory as loaded when it was checked.
enum Inputs {
    Loaded(Prefetched),
    Kept(Arc<kept::KeptPlan>, Loaded<Directory>),
}

impl SyncService {
    pub fn new(
        store: Store,
        projector: Arc<Projector>,
        clock: Arc<dyn Clock>,
        key: SecretKey,
        readers: Arc<dyn ReaderFactory>,
        runs: RunConfig,
    ) -> Self {
        SyncService {
            store,
            projector,
            clock,
            key,
            readers,
            lease: chrono::Duration::minutes(30),
            outbound: Arc::default(),
            queue: Arc::new(RunQueue::new(runs)),
            kept: Arc::default(),
            reports: Arc::default(),
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

    /// Waits until the read models show `position`; false when they did
    /// not within 60 s.
    async fn settle(&self, position: i64) -> bool {
        self.settle_within(position, Duration::from_secs(60)).await
    }

    /// [`SyncService::settle`] with its own time limit.
    async fn settle_within(&self, position: i64, limit: Duration) -> bool {
        if position > 0 && !self.projector.wait_for(position, limit).await {
            tracing::warn!(
                position,
                seconds = limit.as_secs(),
                "projections did not catch up within the time allowed"
            );
            return false;
        }
        true
    }
}

/// How long a run waits for the read models to show its append before it
/// records its end anyway: 60 s, plus a second for every 5,000 events. A
/// 1,000,000-user initial sync projects for about 100 s on two cores
/// (docs/performance.md); with 60 s alone its end was recorded before its
/// users could be read (issue 17).
fn settle_limit(events: usize) -> Duration {
    Duration::from_secs(60 + (events / 5_000) as u64)
}

#[cfg(test)]
mod settle_tests {
    use super::*;

    #[test]
    fn a_run_waits_for_its_projection_in_proportion_to_its_events() {
        assert_eq!(settle_limit(0), Duration::from_secs(60));
        assert_eq!(settle_limit(1_005), Duration::from_secs(60));
        assert_eq!(settle_limit(900_248), Duration::from_secs(240));
    }
}
