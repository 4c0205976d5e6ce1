//! Roster's store: the append-only log on PostgreSQL or embedded SQLite,
//! the claims that keep cross-aggregate rules true, command execution on
//! cqrs-es aggregates, and API tokens.
#![forbid(unsafe_code)]
// No production function over 120 lines (clippy.toml; issue 13).
#![warn(clippy::too_many_lines)]

pub mod admins;
pub mod auth;
pub mod claims;
pub mod clock;
pub mod db;
pub mod error;
pub mod exec;
mod group;
pub mod imports;
pub mod log;
pub mod read_state;
pub mod run_progress;
pub mod secrets;
pub mod security_log;
pub mod sqlite_bulk;
mod streamed;
pub mod sync_leases;
pub mod tracecontext;

pub use claims::{AdditionFacts, AddressOwner, Seats};
#[cfg(feature = "test-clock")]
pub use clock::FileClock;
pub use clock::{file_clock, Clock, ManualClock, SystemClock};
pub use db::{Backend, Db, PoolSettings, StartupLock, Tx};
pub use error::StoreError;
pub use exec::{decode, history, Batch, Loaded};
pub use imports::{ImportRecord, ImportRowRecord, ImportWriter};
pub use log::{Appended, PendingEvent, RawJson, Store, StoredEvent};
pub use secrets::{Secret, SecretKey};
pub use streamed::{stored, StreamedAppend, Tap};
pub use sync_leases::ExpiredLease;

/// Microseconds since the Unix epoch, the time unit of every stored column.
pub fn micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

/// The inverse of [`micros`].
pub fn from_micros(us: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or_default()
}
