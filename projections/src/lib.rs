//! Roster's read models, built from the log by a checkpointed projector
//! (E3): the user list, customers and domains, licence usage and the audit
//! trail. Every table carries a version suffix; a changed projection is
//! rebuilt by replay, never migrated in place.
#![forbid(unsafe_code)]
// No production function over 120 lines (clippy.toml; issue 13).
#![warn(clippy::too_many_lines)]

use std::sync::Arc;

use async_trait::async_trait;
use roster_store::{StoreError, Tx};

pub mod audit;
pub mod console;
mod cursor;
pub mod customers;
mod decode;
pub mod directory;
pub mod projector;
pub mod queries;
pub mod rebuild;
pub mod reports;
pub mod timetravel;
pub mod users;

pub use cursor::Cursor;
pub use decode::{decode, AnyEvent, Decoded, MetaCache};
pub use projector::{Beside, LagLimits, ProjectionLag, Projector};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
    /// A projection failed on the event at `position` and will try it again
    /// (a deterministic failure, not yet tried often enough to be skipped).
    #[error(
        "{projection} failed on the event at position {position} (attempt {attempts}); retrying"
    )]
    Retrying {
        projection: String,
        position: i64,
        attempts: i64,
    },
}

impl ProjectionError {
    /// A failure that says nothing about the event: the database was
    /// unreachable, busy, or gave up waiting (connection lost, pool
    /// exhausted, deadlock, serialization failure, lock or statement
    /// timeout, SQLite busy). Retried with backoff for as long as it takes;
    /// never recorded against the event, never a reason to skip it.
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectionError::Store(StoreError::Database(e)) | ProjectionError::Database(e) => {
                transient_sqlx(e)
            }
            _ => false,
        }
    }
}

fn transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            // SQLite: (extended) result codes whose primary code is BUSY (5),
            // LOCKED (6), IOERR (10) or FULL (13).
            if let Ok(n) = code.parse::<i64>() {
                return matches!(n & 0xff, 5 | 6 | 10 | 13);
            }
            // PostgreSQL SQLSTATE: connection (08), transaction rollback
            // (40: serialization failure, deadlock), insufficient resources
            // (53), lock not available (55P03), operator intervention (57:
            // statement timeout, shutdown), system error (58).
            code.starts_with("08")
                || code.starts_with("40")
                || code.starts_with("53")
                || code == "55P03"
                || code.starts_with("57")
                || code.starts_with("58")
        }
        _ => false,
    }
}

/// One read model: its tables and how a batch of events changes them.
#[async_trait]
pub trait Projection: Send + Sync {
    /// Stable name with version suffix; also the checkpoint's name.
    fn name(&self) -> &'static str;
    /// The tables it owns (base names, without prefix).
    fn tables(&self) -> &'static [&'static str];
    /// Statements that create its tables and indexes with the given prefix.
    fn ddl(&self, prefix: &str) -> Vec<String>;
    /// Statements for one back-end only (indexes the other cannot build or
    /// does not need), run after [`Projection::ddl`] in the same transaction.
    fn backend_ddl(&self, _prefix: &str, _backend: roster_store::Backend) -> Vec<String> {
        Vec::new()
    }
    /// The aggregates whose events it applies, or `None` for every event.
    /// The projector hands it only these, from the log and beside an open
    /// append alike; beside an append, a lane is charged only for the
    /// events its projections read (issue 17: the user list's lane lagging
    /// behind a run's users does not hold back the directory objects).
    fn reads(&self) -> Option<&'static [&'static str]> {
        None
    }
    /// Applies events (in log order) inside the projector's transaction.
    async fn apply(
        &self,
        tx: &mut Tx,
        prefix: &str,
        events: &[&Decoded],
    ) -> Result<(), ProjectionError>;
}

/// Whether `p` reads events of `aggregate_type` ([`Projection::reads`]).
pub(crate) fn reads(p: &dyn Projection, aggregate_type: &str) -> bool {
    p.reads().is_none_or(|r| r.contains(&aggregate_type))
}

pub fn all_projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(customers::CustomersProjection),
        Arc::new(users::UsersProjection),
        Arc::new(audit::AuditProjection),
        Arc::new(directory::DirectoryProjection),
        Arc::new(reports::RunReportsProjection),
    ]
}
