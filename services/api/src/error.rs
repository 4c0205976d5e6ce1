//! The one place that maps errors to HTTP: a JSON body `{code, message}`
//! with the stable code of the application's [`AppError`], and the status
//! of its kind.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use roster_app::AppError;
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
        AppError::invalid(message).into()
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        AppError::not_found(message).into()
    }
    /// T1: a customer outside the caller's scope looks exactly like one that does not exist.
    pub fn unknown_customer() -> Self {
        AppError::unknown_customer().into()
    }
    pub fn bad_token(message: impl Into<String>) -> Self {
        AppError::bad_token(message).into()
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::forbidden(message).into()
    }
    pub fn internal(e: impl std::fmt::Display) -> Self {
        AppError::internal(e).into()
    }
    /// The database cannot be reached: 503 `unavailable` (issue 16).
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        AppError::unavailable(e).into()
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

pub type ApiResult<T> = Result<T, ApiError>;

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        use StatusCode as S;
        let status = match &e {
            AppError::Invalid { .. } => S::BAD_REQUEST,
            AppError::Unauthenticated { .. } => S::UNAUTHORIZED,
            AppError::Forbidden { .. } => S::FORBIDDEN,
            AppError::NotFound { .. } => S::NOT_FOUND,
            AppError::Conflict { .. } => S::CONFLICT,
            AppError::Gone { .. } => S::GONE,
            AppError::TooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            AppError::Refused { .. } => S::UNPROCESSABLE_ENTITY,
            AppError::Unavailable { .. } => S::SERVICE_UNAVAILABLE,
            AppError::Internal => S::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// Errors of the layers below arrive through the application's codes.
macro_rules! through_app {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                AppError::from(e).into()
            }
        }
    )*};
}
through_app!(
    StoreError,
    ProjectionError,
    UserError,
    CustomerError,
    roster_events::IdError,
    roster_csv::FileError,
    roster_sync::SyncError
);
