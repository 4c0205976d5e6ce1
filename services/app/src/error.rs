//! The one error every application command answers with: a kind a door
//! maps to its own terms (an HTTP status, an exit code, a SCIM error), a
//! stable machine-readable `code`, and a message that says what to fix.
//!
//! The codes are the API's: invalid_address, invalid_domain,
//! unmanaged_domain, address_taken, domain_taken, over_seat_limit,
//! unknown_customer, bad_token, forbidden, not_found, invalid_request,
//! invalid_state, conflict, review_stale, review_expired, file_too_large,
//! the roster-csv file codes, the directory-sync codes
//! (roster_sync::codes) and internal.

use roster_domain::{CustomerError, UserError};
use roster_events::IdError;
use roster_projections::ProjectionError;
use roster_store::StoreError;

/// Why a command did not do what was asked, by kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The request itself is wrong (a field, a file, a query): fix it and
    /// send it again.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// The caller could not be authenticated (`bad_token`).
    #[error("{message}")]
    Unauthenticated { message: String },
    /// The caller is known but may not do this (`forbidden`).
    #[error("{message}")]
    Forbidden { message: String },
    /// What the request names does not exist, or is outside the caller's
    /// scope, which looks the same (T1).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The current state does not allow it (taken, running, changed).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request was valid but is no longer (an expired review).
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    /// The input is larger than accepted.
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    /// A business rule refuses it (an unmanaged domain, the seat limit).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// The database cannot be reached right now: try again shortly
    /// (`unavailable`; issue 16).
    #[error("{message}")]
    Unavailable { message: String },
    /// Something failed that the caller cannot fix; it has been logged.
    #[error("an internal error occurred; it has been logged")]
    Internal,
}

pub type AppResult<T> = Result<T, AppError>;

/// The stable code of every error kind without codes of its own.
pub const INVALID_REQUEST: &str = "invalid_request";
pub const NOT_FOUND: &str = "not_found";
pub const UNKNOWN_CUSTOMER: &str = "unknown_customer";
pub const CONFLICT: &str = "conflict";
pub const INVALID_STATE: &str = "invalid_state";
pub const ADDRESS_TAKEN: &str = "address_taken";
pub const OVER_SEAT_LIMIT: &str = "over_seat_limit";

impl AppError {
    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Invalid { code, .. }
            | AppError::NotFound { code, .. }
            | AppError::Conflict { code, .. }
            | AppError::Gone { code, .. }
            | AppError::TooLarge { code, .. }
            | AppError::Refused { code, .. } => code,
            AppError::Unauthenticated { .. } => "bad_token",
            AppError::Forbidden { .. } => "forbidden",
            AppError::Unavailable { .. } => "unavailable",
            AppError::Internal => "internal",
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        AppError::Invalid {
            code: INVALID_REQUEST,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        AppError::NotFound {
            code: NOT_FOUND,
            message: message.into(),
        }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Conflict {
            code,
            message: message.into(),
        }
    }
    pub fn refused(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Refused {
            code,
            message: message.into(),
        }
    }
    /// T1: a customer outside the caller's scope looks exactly like one that does not exist.
    pub fn unknown_customer() -> Self {
        AppError::NotFound {
            code: UNKNOWN_CUSTOMER,
            message: "no such customer (or not one you manage)".into(),
        }
    }
    pub fn bad_token(message: impl Into<String>) -> Self {
        AppError::Unauthenticated {
            message: message.into(),
        }
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::Forbidden {
            message: message.into(),
        }
    }
    /// The database is unreachable (counted and logged as a warning).
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "database unavailable");
        metrics::counter!("roster_db_unavailable_total").increment(1);
        AppError::Unavailable {
            message: "the database is unavailable; try again shortly".into(),
        }
    }
    /// Logs what went wrong; the caller only learns that something did.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        AppError::Internal
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Conflict => AppError::conflict(
                CONFLICT,
                "the same data was changed concurrently too many times; try again",
            ),
            StoreError::AddressTaken { address } => AppError::conflict(
                ADDRESS_TAKEN,
                format!("{address} is already in use by another user, alias or list"),
            ),
            StoreError::DomainTaken { domain } => AppError::conflict(
                "domain_taken",
                format!("{domain} is already managed by another customer"),
            ),
            StoreError::UnmanagedDomain { domain } => AppError::refused(
                "unmanaged_domain",
                format!("{domain} is not a managed domain of this customer: add the domain first"),
            ),
            StoreError::DomainInUse { .. } => AppError::conflict(
                CONFLICT,
                "users were added to the domain while it was being removed; try again",
            ),
            StoreError::OverSeatLimit { used, limit } => AppError::refused(
                OVER_SEAT_LIMIT,
                format!(
                    "the customer has {limit} seats and this would use {used}: raise the seat limit or remove users first"
                ),
            ),
            StoreError::UnknownCustomer => AppError::unknown_customer(),
            _ if e.is_unavailable() => AppError::unavailable(&e),
            _ => AppError::internal(e),
        }
    }
}

impl From<ProjectionError> for AppError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::Invalid(m) => AppError::invalid(m),
            ProjectionError::Store(s) => s.into(),
            ProjectionError::Database(d) if roster_store::error::sqlx_unavailable(&d) => {
                AppError::unavailable(d)
            }
            other => AppError::internal(other),
        }
    }
}

impl From<UserError> for AppError {
    fn from(e: UserError) -> Self {
        let m = e.to_string();
        match e {
            UserError::AlreadyExists(_) => AppError::conflict(ADDRESS_TAKEN, m),
            UserError::NotFound | UserError::Deleted | UserError::RuleNotFound => {
                AppError::not_found(m)
            }
            UserError::OverSeatLimit { .. } => AppError::refused(OVER_SEAT_LIMIT, m),
            UserError::AliasIsPrimary(_) | UserError::AliasAlreadyMapped(_) => {
                AppError::conflict(ADDRESS_TAKEN, m)
            }
            UserError::InvalidRuleValue(_) => AppError::invalid(m),
            UserError::InvalidField { .. } => AppError::invalid(m),
            UserError::AliasNotMapped(_)
            | UserError::NotFlagged
            | UserError::AlreadyDeactivated
            | UserError::NotDeactivated
            | UserError::RuleExists { .. }
            | UserError::NotDue
            | UserError::NotAList
            | UserError::InTransit => AppError::conflict(INVALID_STATE, m),
        }
    }
}

impl From<CustomerError> for AppError {
    fn from(e: CustomerError) -> Self {
        let m = e.to_string();
        match e {
            CustomerError::AlreadyExists => AppError::conflict(CONFLICT, m),
            CustomerError::Unknown => AppError::unknown_customer(),
            CustomerError::EmptyName
            | CustomerError::NameTooLong
            | CustomerError::NameControlCharacter(_)
            | CustomerError::SeatLimitOutOfRange(_) => AppError::invalid(m),
            CustomerError::DomainAlreadyManaged(_) => AppError::conflict("domain_taken", m),
            CustomerError::DomainNotManaged(_) => AppError::not_found(m),
        }
    }
}

impl From<IdError> for AppError {
    fn from(e: IdError) -> Self {
        let message = e.to_string();
        match e {
            IdError::InvalidAddress { .. } => AppError::Invalid {
                code: "invalid_address",
                message,
            },
            IdError::InvalidDomain { .. } => AppError::Invalid {
                code: "invalid_domain",
                message,
            },
            IdError::InvalidId { .. } => AppError::not_found(message),
        }
    }
}

impl From<roster_csv::FileError> for AppError {
    fn from(e: roster_csv::FileError) -> Self {
        use roster_csv::FileError;
        let message = e.to_string();
        match e {
            FileError::TooLarge { .. } => AppError::TooLarge {
                code: "file_too_large",
                message,
            },
            FileError::TooManyRows { .. } => AppError::TooLarge {
                code: e.code(),
                message,
            },
            _ => AppError::Invalid {
                code: e.code(),
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC 7: errors carry a stable `code`; the kinds keep the API's codes.
    #[test]
    fn errors_keep_the_apis_stable_codes() {
        assert_eq!(
            AppError::from(StoreError::Conflict).code(),
            "conflict",
            "a conflict that retries could not resolve"
        );
        assert_eq!(AppError::unknown_customer().code(), "unknown_customer");
        assert_eq!(AppError::bad_token("x").code(), "bad_token");
        assert!(matches!(
            AppError::from(StoreError::OverSeatLimit { used: 3, limit: 2 }),
            AppError::Refused {
                code: "over_seat_limit",
                ..
            }
        ));
        assert_eq!(
            AppError::internal("boom").to_string(),
            "an internal error occurred; it has been logged"
        );
    }
}
