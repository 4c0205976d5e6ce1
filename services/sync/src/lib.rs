//! Directory sync (SPEC section 3): the application layer between the
//! directory readers, the pure reconciler and the log.
//!
//! A run: start it on the directory aggregate (one per customer at a time,
//! D4) -> read a complete snapshot (or fail, flagging nothing, D3.r) ->
//! reconcile against the customer's current users -> hold it if it would
//! flag too many (D3.s) -> otherwise append every change, the directory
//! objects that changed and the run's completion in one transaction.
#![forbid(unsafe_code)]
// No production function over 120 lines (clippy.toml; issue 13).
#![warn(clippy::too_many_lines)]

mod app_error;
pub mod codes;
pub mod queue;
pub mod readers;
mod report;
pub mod service;
pub mod worker;

pub use queue::{RunConfig, RunQueue};
pub use readers::{DefaultReaders, ReaderFactory};
pub use roster_directory::ldap::{check_filter, FilterError};
pub use roster_directory::OutboundPolicy;
pub use service::{
    ConflictAction, DryRun, RunOutcome, SettingsChange, SyncError, SyncService, TestOutcome,
};

/// Reads the sync settings of the environment once, at startup: the run
/// queue's ([`RunConfig`], passed to [`SyncService::new`]) and the
/// directory read pool's; a value that cannot be used is refused with what
/// to set (see docs/operations.md).
pub fn check_env() -> Result<RunConfig, String> {
    let runs = RunConfig::from_env()?;
    roster_directory::read_threads()?;
    Ok(runs)
}
