//! Roster's read models, built from the log by a checkpointed projector
//! (E3): the user list, customers and domains, licence usage and the audit
//! trail. Every table carries a version suffix; a changed projection is
//! rebuilt by replay, never migrated in place.
#![forbid(unsafe_code)]

use std::sync::Arc;

use async_trait::async_trait;
use roster_store::{StoreError, Tx};

pub mod audit;
pub mod customers;
mod decode;
pub mod directory;
pub mod projector;
pub mod queries;
pub mod rebuild;
pub mod reports;
pub mod timetravel;
pub mod users;

pub use decode::{decode, AnyEvent, Decoded};
pub use projector::Projector;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
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
    /// Applies events (in log order) inside the projector's transaction.
    async fn apply(
        &self,
        tx: &mut Tx,
        prefix: &str,
        events: &[&Decoded],
    ) -> Result<(), ProjectionError>;
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
