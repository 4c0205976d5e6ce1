//! The one place that maps errors to HTTP: a JSON body `{code, message}`
//! with a stable code per kind of error.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use roster_domain::{CustomerError, UserError};
use roster_projections::ProjectionError;
use roster_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// Every error the API returns.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: invalid_address, invalid_domain, unmanaged_domain,
    /// address_taken, domain_taken, over_seat_limit, unknown_customer, bad_token,
    /// forbidden, not_found, invalid_request, conflict, unavailable, internal.
    pub code: &'static str,
    /// What went wrong and what to fix, for people.
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// T1: a customer outside the caller's scope looks exactly like one that does not exist.
    pub fn unknown_customer() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_customer",
            "no such customer (or not one you manage)",
        )
    }
    pub fn bad_token(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "bad_token", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// The database cannot be reached (issue 16): 503, so that clients and
    /// load balancers retry instead of treating it as a bug.
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "database unavailable");
        metrics::counter!("roster_db_unavailable_total").increment(1);
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database is unavailable; try again shortly",
        )
    }
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code,
            message: self.message,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: a 401 names the scheme to authenticate with.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"roster\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        use StatusCode as S;
        match &e {
            StoreError::Conflict => ApiError::new(
                S::CONFLICT,
                "conflict",
                "the same data was changed concurrently too many times; try again",
            ),
            StoreError::AddressTaken { address } => ApiError::new(
                S::CONFLICT,
                "address_taken",
                format!("{address} is already in use by another user, alias or list"),
            ),
            StoreError::DomainTaken { domain } => ApiError::new(
                S::CONFLICT,
                "domain_taken",
                format!("{domain} is already managed by another customer"),
            ),
            StoreError::UnmanagedDomain { domain } => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "unmanaged_domain",
                format!("{domain} is not a managed domain of this customer: add the domain first"),
            ),
            StoreError::DomainInUse { .. } => ApiError::new(
                S::CONFLICT,
                "conflict",
                "users were added to the domain while it was being removed; try again",
            ),
            StoreError::OverSeatLimit { used, limit } => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "over_seat_limit",
                format!(
                    "the customer has {limit} seats and this would use {used}: raise the seat limit or remove users first"
                ),
            ),
            StoreError::UnknownCustomer => ApiError::unknown_customer(),
            _ if e.is_unavailable() => ApiError::unavailable(&e),
            _ => ApiError::internal(e),
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::Invalid(m) => ApiError::invalid(m),
            ProjectionError::Store(s) => s.into(),
            ProjectionError::Database(d) if roster_store::error::sqlx_unavailable(&d) => {
                ApiError::unavailable(d)
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        use StatusCode as S;
        let m = e.to_string();
        match e {
            UserError::AlreadyExists(_) => ApiError::new(S::CONFLICT, "address_taken", m),
            UserError::NotFound | UserError::Deleted | UserError::RuleNotFound => {
                ApiError::not_found(m)
            }
            UserError::OverSeatLimit { .. } => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "over_seat_limit", m)
            }
            UserError::AliasIsPrimary(_) | UserError::AliasAlreadyMapped(_) => {
                ApiError::new(S::CONFLICT, "address_taken", m)
            }
            UserError::InvalidRuleValue(_) => ApiError::invalid(m),
            UserError::InvalidField { .. } => ApiError::invalid(m),
            UserError::AliasNotMapped(_)
            | UserError::NotFlagged
            | UserError::AlreadyDeactivated
            | UserError::NotDeactivated
            | UserError::RuleExists { .. }
            | UserError::NotDue
            | UserError::NotAList
            | UserError::InTransit => ApiError::new(S::CONFLICT, "invalid_state", m),
        }
    }
}

impl From<CustomerError> for ApiError {
    fn from(e: CustomerError) -> Self {
        use StatusCode as S;
        let m = e.to_string();
        match e {
            CustomerError::AlreadyExists => ApiError::new(S::CONFLICT, "conflict", m),
            CustomerError::Unknown => ApiError::unknown_customer(),
            CustomerError::EmptyName
            | CustomerError::NameTooLong
            | CustomerError::NameControlCharacter(_)
            | CustomerError::SeatLimitOutOfRange(_) => ApiError::invalid(m),
            CustomerError::DomainAlreadyManaged(_) => ApiError::new(S::CONFLICT, "domain_taken", m),
            CustomerError::DomainNotManaged(_) => ApiError::not_found(m),
        }
    }
}

impl From<roster_events::IdError> for ApiError {
    fn from(e: roster_events::IdError) -> Self {
        let code = match e {
            roster_events::IdError::InvalidAddress { .. } => "invalid_address",
            roster_events::IdError::InvalidDomain { .. } => "invalid_domain",
            roster_events::IdError::InvalidId { .. } => "not_found",
        };
        let status = if code == "not_found" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, code, e.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<roster_sync::SyncError> for ApiError {
    fn from(e: roster_sync::SyncError) -> Self {
        use roster_domain::DirectoryError as D;
        use roster_sync::codes;
        use roster_sync::SyncError as E;
        use StatusCode as S;
        match e {
            E::Invalid(m) | E::InvalidFilter(m) => {
                ApiError::new(S::BAD_REQUEST, codes::INVALID_REQUEST, m)
            }
            E::SecretRequired(m) => ApiError::new(S::BAD_REQUEST, "secret_required", m),
            E::Store(s) => s.into(),
            E::User(u) => u.into(),
            E::NoSuchUser(m) => ApiError::not_found(m),
            E::Projection(m) => ApiError::internal(m),
            E::Directory(d) => {
                let m = d.to_string();
                match d {
                    D::NotConfigured(_) => ApiError::new(S::CONFLICT, codes::NOT_CONFIGURED, m),
                    D::NotEnabled => ApiError::new(S::CONFLICT, codes::SYNC_NOT_ENABLED, m),
                    D::SwitchNeedsConfirmation { .. } => ApiError::new(
                        S::CONFLICT,
                        codes::CONFIRM_SWITCH,
                        format!("{m} (send confirm_switch: true)"),
                    ),
                    D::AlreadyRunning(_) => ApiError::new(S::CONFLICT, codes::SYNC_RUNNING, m),
                    D::Superseded { .. } => ApiError::new(S::CONFLICT, codes::RUN_SUPERSEDED, m),
                    D::NotRunning(_) | D::NotHeld(_) | D::NotFinished(_) | D::RunHeld(_) => {
                        ApiError::new(S::CONFLICT, codes::INVALID_STATE, m)
                    }
                    D::ExceptionExists | D::AdditionExists(_) => {
                        ApiError::new(S::CONFLICT, codes::ALREADY_LISTED, m)
                    }
                    D::NoSuchException | D::NoSuchAddition(_) => ApiError::not_found(m),
                }
            }
        }
    }
}
