//! Sync's errors in the application's terms: the stable codes of
//! [`crate::codes`], by kind, for every door.

use roster_app::retry::is_conflict;
use roster_app::{AppError, Attempt, Written};
use roster_domain::DirectoryError as D;

use crate::codes;
use crate::SyncError as E;

impl From<E> for AppError {
    fn from(e: E) -> Self {
        match e {
            E::Invalid(message) | E::InvalidFilter(message) => AppError::Invalid {
                code: codes::INVALID_REQUEST,
                message,
            },
            E::SecretRequired(message) => AppError::Invalid {
                code: "secret_required",
                message,
            },
            E::Store(s) => s.into(),
            E::User(u) => u.into(),
            E::NoSuchUser(m) => AppError::not_found(m),
            E::Projection(m) => AppError::internal(m),
            E::Directory(d) => directory(d),
        }
    }
}

/// The directory aggregate's refusals, by code.
fn directory(d: D) -> AppError {
    let m = d.to_string();
    match d {
        D::NotConfigured(_) => AppError::conflict(codes::NOT_CONFIGURED, m),
        D::NotEnabled => AppError::conflict(codes::SYNC_NOT_ENABLED, m),
        D::SwitchNeedsConfirmation { .. } => AppError::conflict(
            codes::CONFIRM_SWITCH,
            format!("{m} (send confirm_switch: true)"),
        ),
        D::AlreadyRunning(_) => AppError::conflict(codes::SYNC_RUNNING, m),
        D::Superseded { .. } => AppError::conflict(codes::RUN_SUPERSEDED, m),
        D::NotRunning(_) | D::NotHeld(_) | D::NotFinished(_) | D::RunHeld(_) => {
            AppError::conflict(codes::INVALID_STATE, m)
        }
        D::ExceptionExists | D::AdditionExists(_) => AppError::conflict(codes::ALREADY_LISTED, m),
        D::NoSuchException | D::NoSuchAddition(_) => AppError::not_found(m),
    }
}

/// A conflict is tried again (with the application's one backoff policy);
/// any other error is the answer.
impl From<E> for Attempt<E> {
    fn from(e: E) -> Self {
        match e {
            E::Store(s) if is_conflict(&s) => Attempt::Retry(s),
            other => Attempt::Fail(other),
        }
    }
}

impl Written for crate::TestOutcome {
    fn position(&self) -> i64 {
        self.position
    }
}
