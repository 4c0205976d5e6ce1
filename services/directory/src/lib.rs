//! Roster's directory readers: each turns a customer's directory into one
//! complete, typed [`Snapshot`](roster_domain::snapshot::Snapshot), or a
//! [`ReadError`](roster_domain::snapshot::ReadError) that says why it could
//! not (D3.r: never a partial list).
//!
//! - [`entra`]: Microsoft Entra ID over Microsoft Graph ([`EntraReader`],
//!   D6), with delta sync (B1).
//! - [`ldap`]: LDAP and Active Directory ([`LdapReader`], D5), with the
//!   vendor presets of D3.d and [`validate_filter`] for the custom filter.
//!
//! See `README.md` beside this crate for the choices made where the
//! specification is silent.

#![forbid(unsafe_code)]
// No production function over 120 lines (clippy.toml; issue 13).
#![warn(clippy::too_many_lines)]
#![warn(missing_docs)]

pub mod entra;
pub mod ldap;
pub mod outbound;

pub use entra::{
    check_outbound as check_entra_outbound, validate_settings as validate_entra_settings,
    EntraOptions, EntraReader,
};
pub use outbound::OutboundPolicy;

pub use ldap::{
    check_ca_pem, normalize_dn, read_threads, validate_dn, validate_filter, DeltaHook, LdapReader,
    Mapping, PageEvent, PageHook, ReaderOptions, SearchKind, MAX_PAGE_SIZE,
};
