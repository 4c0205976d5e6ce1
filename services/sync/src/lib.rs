//! Directory sync (SPEC section 3): the application layer between the
//! directory readers, the pure reconciler and the log.
//!
//! A run: start it on the directory aggregate (one per customer at a time,
//! D4) -> read a complete snapshot (or fail, flagging nothing, D3.r) ->
//! reconcile against the customer's current users -> hold it if it would
//! flag too many (D3.s) -> otherwise append every change, the directory
//! objects that changed and the run's completion in one transaction.
#![forbid(unsafe_code)]

mod app_error;
pub mod codes;
pub mod readers;
mod report;
pub mod service;
pub mod worker;

pub use readers::{DefaultReaders, ReaderFactory};
pub use roster_directory::OutboundPolicy;
pub use service::{
    ConflictAction, DryRun, RunOutcome, SettingsChange, SyncError, SyncService, TestOutcome,
};
