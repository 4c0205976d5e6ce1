//! Claims: the cross-aggregate facts the log's append transaction keeps
//! consistent, because cqrs-es has none across aggregates.
//!
//! Each event implies a list of claim changes (computed by the aggregate that
//! wrote it); the store applies them in the same transaction as the events,
//! so an address (U1) or a domain (T2) has exactly one owner whatever the
//! interleaving, and the seat limit (T3) cannot be overrun by concurrent
//! additions.

use crate::ids::{Address, Domain, PartnerId, UserId};

/// Implemented by every aggregate: the claim changes an event implies,
/// given the aggregate as it was just before the event.
pub trait ClaimsOf: cqrs_es::Aggregate {
    fn claims(&self, aggregate_id: &str, event: &Self::Event) -> Vec<ClaimChange>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimChange {
    /// A customer exists, under a partner, with a seat limit.
    RegisterCustomer {
        partner_id: PartnerId,
        seat_limit: u64,
    },
    SetSeatLimit {
        seat_limit: u64,
    },
    /// The customer manages this domain (T2).
    ClaimDomain {
        domain: Domain,
    },
    /// The customer stops managing this domain; no address in it may remain claimed.
    ReleaseDomain {
        domain: Domain,
    },
    /// The address belongs to this user from now on (U1). Its domain must be
    /// managed by the same customer.
    ClaimAddress {
        address: Address,
        owner: UserId,
        primary: bool,
        /// Whether the address takes a seat (T3).
        seat: bool,
    },
    /// The address is free again. With `tombstone`, a later return of the
    /// same address finds its earlier owner (U6).
    ReleaseAddress {
        address: Address,
        owner: UserId,
        tombstone: bool,
    },
    /// The user starts or stops taking a seat (deactivation, reactivation).
    SetSeat {
        address: Address,
        owner: UserId,
        seat: bool,
    },
}

/// A check the append transaction makes after applying the claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// Manual and CSV additions may not take the customer beyond its seat
    /// limit (T3). Directory sync does not carry this guard.
    SeatLimit,
}
