//! The console's error pages: one place that turns an error into a page
//! that says what happened and what to do.

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use roster_app::AppError;

use crate::layout::Layout;

/// Every error a console handler answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// Nothing here, or outside the administrator's scope (T1: the same page).
    NotFound,
    /// Known, but not allowed (a CSRF refusal, a foreign Origin).
    Forbidden(String),
    /// The request is wrong: the message says what to fix.
    BadRequest(String),
    /// The current state does not allow it (taken, changed, running).
    Conflict(String),
    /// A link that expired or was used.
    Gone(String),
    /// The database is unavailable: try again shortly.
    Unavailable,
    /// Something failed that the administrator cannot fix (logged).
    Internal,
    /// Not signed in: to the sign-in page, then back to `next`.
    SignIn { next: String },
    /// Somewhere else first (such as TOTP enrolment a partner requires).
    Redirect(String),
}

pub type PageResult<T> = Result<T, PageError>;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    heading: &'static str,
    message: String,
}

impl PageError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        use StatusCode as S;
        match self {
            PageError::NotFound => (
                S::NOT_FOUND,
                "Page not found",
                "There is nothing here, or it is not something you manage. Check the address, or go back to the customer list.".into(),
            ),
            PageError::Forbidden(m) => (S::FORBIDDEN, "Not allowed", m.clone()),
            PageError::BadRequest(m) => (S::BAD_REQUEST, "Please check what you sent", m.clone()),
            PageError::Conflict(m) => (S::CONFLICT, "This cannot be done now", m.clone()),
            PageError::Gone(m) => (S::GONE, "This link no longer works", m.clone()),
            PageError::Unavailable => (
                S::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "The database cannot be reached right now. Try again in a moment.".into(),
            ),
            PageError::Internal | PageError::SignIn { .. } | PageError::Redirect(_) => (
                S::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "An internal error occurred and has been logged. Try again; if it persists, tell your operator.".into(),
            ),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn { next } => {
                let q: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", &crate::auth::safe_next(&next))
                    .finish();
                Redirect::to(&format!("/signin?{q}")).into_response()
            }
            PageError::Redirect(to) => Redirect::to(&to).into_response(),
            other => {
                let (status, heading, message) = other.parts();
                let page = ErrorPage {
                    layout: Layout::anonymous(heading),
                    heading,
                    message,
                };
                let mut res = crate::layout::render(&page);
                *res.status_mut() = status;
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    res.headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                }
                res
            }
        }
    }
}

impl From<AppError> for PageError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Invalid { message, .. }
            | AppError::TooLarge { message, .. }
            | AppError::Refused { message, .. } => PageError::BadRequest(message),
            AppError::NotFound { .. } => PageError::NotFound,
            AppError::Unauthenticated { .. } => PageError::SignIn { next: "/".into() },
            AppError::Forbidden { message } => PageError::Forbidden(message),
            AppError::Conflict { message, .. } => PageError::Conflict(message),
            AppError::Gone { message, .. } => PageError::Gone(message),
            AppError::Unavailable { .. } => PageError::Unavailable,
            AppError::Internal => PageError::Internal,
        }
    }
}

impl From<roster_store::StoreError> for PageError {
    fn from(e: roster_store::StoreError) -> Self {
        AppError::from(e).into()
    }
}

impl From<roster_projections::ProjectionError> for PageError {
    fn from(e: roster_projections::ProjectionError) -> Self {
        AppError::from(e).into()
    }
}

impl From<roster_sync::SyncError> for PageError {
    fn from(e: roster_sync::SyncError) -> Self {
        AppError::from(e).into()
    }
}
