//! Roster's aggregates, built on cqrs-es. Each module holds one aggregate
//! with its commands and errors; the rules of SPEC.md are given/when/then
//! tests named after them.
#![forbid(unsafe_code)]
// No production function over 120 lines (clippy.toml; issue 13).
#![warn(clippy::too_many_lines)]

/// The `handle` of an aggregate whose commands are decided by a pure
/// `decide(&self, command[, services])`: every event it returns is
/// written in order. One definition instead of one copy per aggregate.
macro_rules! handle_by_decide {
    () => {
        handle_by_decide!(|aggregate, command, _services| aggregate.decide(command));
    };
    (|$aggregate:ident, $command:ident, $services:ident| $decide:expr) => {
        async fn handle(
            &mut self,
            $command: Self::Command,
            $services: &Self::Services,
            sink: &cqrs_es::event_sink::EventSink<Self>,
        ) -> Result<(), Self::Error> {
            let $aggregate = &*self;
            for event in $decide? {
                sink.write(event, self).await;
            }
            Ok(())
        }
    };
}

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
