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

    /// The database could not be reached or is shutting down (issue 16):
    /// the pool found no connection within its acquire timeout, the
    /// connection broke, or the server refuses sessions. The API answers
    /// 503 `unavailable`; retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => sqlx_unavailable(e),
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => sqlx_unavailable(e),
            _ => false,
        }
    }

    /// The same error again, for each caller of a transaction that failed
    /// as a whole (group commit): typed refusals as they are, a database
    /// error as one of the same kind (unreachable stays unreachable).
    pub(crate) fn replicate(&self) -> StoreError {
        match self {
            StoreError::Conflict => StoreError::Conflict,
            StoreError::AddressTaken { address } => StoreError::AddressTaken {
                address: address.clone(),
            },
            StoreError::DomainTaken { domain } => StoreError::DomainTaken {
                domain: domain.clone(),
            },
            StoreError::UnmanagedDomain { domain } => StoreError::UnmanagedDomain {
                domain: domain.clone(),
            },
            StoreError::DomainInUse { domain, address } => StoreError::DomainInUse {
                domain: domain.clone(),
                address: address.clone(),
            },
            StoreError::OverSeatLimit { used, limit } => StoreError::OverSeatLimit {
                used: *used,
                limit: *limit,
            },
            StoreError::UnknownCustomer => StoreError::UnknownCustomer,
            StoreError::Inconsistent(s) => StoreError::Inconsistent(s.clone()),
            StoreError::Config(s) => StoreError::Config(s.clone()),
            StoreError::Corrupt(s) => StoreError::Corrupt(s.clone()),
            StoreError::Database(e) => StoreError::Database(copy_sqlx(e)),
            StoreError::Migrate(e) => StoreError::Inconsistent(e.to_string()),
        }
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

/// Whether a sqlx error means the database is unreachable rather than that
/// the statement was wrong.
pub fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exception; 57P01-57P03: admin shutdown, crash
            // shutdown, cannot connect now; 53300: too many connections;
            // 55000 on a database with ALLOW_CONNECTIONS false.
            c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03" | "53300" | "55000")
        }),
        _ => false,
    }
}

/// A sqlx error of the same kind, for [`StoreError::replicate`].
fn copy_sqlx(e: &sqlx::Error) -> sqlx::Error {
    match e {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::WorkerCrashed => sqlx::Error::WorkerCrashed,
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        sqlx::Error::Tls(t) => sqlx::Error::Tls(t.to_string().into()),
        other if sqlx_unavailable(other) => sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            other.to_string(),
        )),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}
