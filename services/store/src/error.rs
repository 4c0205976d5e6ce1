use roster_events::{Address, Domain};

/// Errors of the store. Claim violations are typed so that the API can say
/// exactly what is taken or missing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer changed one of the aggregates first (optimistic
    /// concurrency); the operation may be retried from a fresh load.
    #[error("a concurrent change to the same data won; try again")]
    Conflict,
    #[error("{address} already belongs to another user or list")]
    AddressTaken { address: Address },
    #[error("{domain} is already managed by another customer")]
    DomainTaken { domain: Domain },
    #[error("{domain} is not a managed domain of this customer")]
    UnmanagedDomain { domain: Domain },
    #[error(
        "{domain} still has addresses of this customer ({address}); they must be removed with it"
    )]
    DomainInUse { domain: Domain, address: Address },
    #[error("the customer has {limit} seats and this change would use {used}")]
    OverSeatLimit { used: u64, limit: u64 },
    #[error("no such customer")]
    UnknownCustomer,
    #[error("the claims are out of step with the log: {0}")]
    Inconsistent(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict)
    }

    pub(crate) fn from_insert(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                StoreError::Conflict
            }
            _ => StoreError::Database(e),
        }
    }
}
