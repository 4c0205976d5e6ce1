//! The schema of Roster's append-only log: identifiers, events, metadata and
//! the claims each event implies.
#![forbid(unsafe_code)]

pub mod claims;
pub mod customer;
pub mod ids;
pub mod meta;
pub mod user;

pub use claims::{ClaimChange, Guard};
pub use customer::*;
pub use ids::*;
pub use meta::*;
pub use user::*;

/// Aggregate type names as stored in the log. Stable.
pub const USER_AGGREGATE: &str = "User";
pub const CUSTOMER_AGGREGATE: &str = "Customer";

pub(crate) fn version_of(types: &[(&str, &'static str)], name: &str) -> &'static str {
    types
        .iter()
        .find(|(t, _)| *t == name)
        .map(|(_, v)| *v)
        .unwrap_or("1.0")
}
