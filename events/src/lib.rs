//! The schema of Roster's append-only log: identifiers, events, metadata and
//! the claims each event implies.
#![forbid(unsafe_code)]
// No production function over 120 lines (clippy.toml; issue 13).
#![warn(clippy::too_many_lines)]

pub mod claims;
pub mod customer;
pub mod directory;
pub mod ids;
pub mod import;
pub mod meta;
pub mod schema;
pub mod user;

pub use claims::{ClaimChange, ClaimsOf, Guard};
pub use customer::*;
pub use directory::*;
pub use ids::*;
pub use import::*;
pub use meta::*;
pub use user::*;

/// Aggregate type names as stored in the log. Stable.
pub const USER_AGGREGATE: &str = "User";
pub const CUSTOMER_AGGREGATE: &str = "Customer";
pub const DIRECTORY_AGGREGATE: &str = "Directory";
pub const DIRECTORY_OBJECTS_AGGREGATE: &str = "DirectoryObjects";
pub const IMPORT_AGGREGATE: &str = "Import";
/// One sync run's report of skipped objects and contested addresses (id = run id).
pub const SYNC_REPORT_AGGREGATE: &str = "SyncReport";

pub(crate) fn version_of(types: &[(&str, &'static str)], name: &str) -> &'static str {
    types
        .iter()
        .find(|(t, _)| *t == name)
        .map(|(_, v)| *v)
        .unwrap_or("1.0")
}

/// The upcasters that bring stored events of older shapes to the current
/// ones. Every read path (aggregate loads, bulk loads, projectors, relay)
/// applies them. Add one here whenever an event's version changes.
pub fn upcasters() -> Vec<Box<dyn cqrs_es::persist::EventUpcaster>> {
    Vec::new()
}

/// Applies [`upcasters`] to one stored event.
pub fn upcast(
    mut event: cqrs_es::persist::SerializedEvent,
    upcasters: &[Box<dyn cqrs_es::persist::EventUpcaster>],
) -> cqrs_es::persist::SerializedEvent {
    for u in upcasters {
        if u.can_upcast(&event.event_type, &event.event_version) {
            event = u.upcast(event);
        }
    }
    event
}
