//! Roster's aggregates, built on cqrs-es. Each module holds one aggregate
//! with its commands and errors; the rules of SPEC.md are given/when/then
//! tests named after them.
#![forbid(unsafe_code)]

pub mod customer;
pub mod directory;
pub mod import;
pub mod reconcile;
#[cfg(test)]
mod reconcile_props;
pub mod removal;
pub mod snapshot;
#[cfg(test)]
pub(crate) mod testing;
pub mod user;

pub use customer::{Customer, CustomerCommand, CustomerError};
pub use directory::{Directory, DirectoryCommand, DirectoryError, DirectoryObjects, SyncReport};
pub use import::{Import, ImportCommand, ImportError};
pub use user::{AddUser, SeatUsage, User, UserCommand, UserError, UserServices};
