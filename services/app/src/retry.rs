//! Load, decide, append, and on an optimistic conflict do it all again:
//! the one retry helper and the one backoff policy of every command.
//!
//! A conflict means someone appended to the same aggregate (or took a
//! claim) between our load and our append; a fresh attempt decides again
//! on fresh state. Attempts are bounded ([`ATTEMPTS`]) and spaced by a
//! growing delay with full random jitter ([`Backoff`]), so that writers
//! that collided do not collide again in step.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use roster_domain::{CustomerError, DirectoryError, UserError};
use roster_events::IdError;
use roster_projections::ProjectionError;
use roster_store::StoreError;

use crate::error::AppError;

/// How many times a command is attempted before the conflict is answered.
pub const ATTEMPTS: u32 = 8;
/// The first delay's upper bound; each further attempt doubles it.
const BASE: Duration = Duration::from_millis(2);
/// No delay is longer than this.
const CAP: Duration = Duration::from_millis(100);

/// Why one attempt failed: a conflict that a fresh attempt may avoid, or a
/// final answer.
#[derive(Debug)]
pub enum Attempt<E = AppError> {
    Retry(StoreError),
    Fail(E),
}

impl<E> Attempt<E> {
    /// A final answer.
    pub fn fail(e: impl Into<E>) -> Self {
        Attempt::Fail(e.into())
    }
}

/// Whether a store error is worth another attempt: an optimistic conflict,
/// or a domain being removed while a claim in it was taken.
pub fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict | StoreError::DomainInUse { .. })
}

impl<E: From<StoreError>> From<StoreError> for Attempt<E> {
    fn from(e: StoreError) -> Self {
        if is_conflict(&e) {
            Attempt::Retry(e)
        } else {
            Attempt::Fail(e.into())
        }
    }
}

/// The domain's refusals are final answers.
macro_rules! final_answer {
    ($($t:ty),*) => {$(
        impl<E: From<$t>> From<$t> for Attempt<E> {
            fn from(e: $t) -> Self {
                Attempt::Fail(e.into())
            }
        }
    )*};
}
final_answer!(
    UserError,
    CustomerError,
    DirectoryError,
    IdError,
    ProjectionError
);

impl From<AppError> for Attempt<AppError> {
    fn from(e: AppError) -> Self {
        Attempt::Fail(e)
    }
}

/// The backoff policy: bounded attempts, each after a random delay below a
/// bound that doubles from [`BASE`] up to [`CAP`].
#[derive(Debug, Default)]
pub struct Backoff {
    conflicts: u32,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff::default()
    }

    /// Whether another attempt may be made (the first always may).
    pub fn may_attempt(&self) -> bool {
        self.conflicts < ATTEMPTS
    }

    /// Records a conflict and waits before the next attempt; false (without
    /// waiting) when the attempts are used up.
    pub async fn conflicted(&mut self) -> bool {
        metrics::counter!("roster_command_conflicts_total").increment(1);
        self.conflicts += 1;
        if !self.may_attempt() {
            return false;
        }
        tokio::time::sleep(self.delay()).await;
        true
    }

    /// The delay before the next attempt: uniformly random below the bound.
    fn delay(&self) -> Duration {
        let bound = BASE
            .saturating_mul(1 << self.conflicts.saturating_sub(1).min(16))
            .min(CAP);
        let micros = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::thread_rng().gen_range(0..=micros))
    }
}

/// Runs `op` until it succeeds, fails for good, or conflicts
/// [`ATTEMPTS`] times (then the last conflict is the answer).
pub async fn retrying<T, E, F, Fut>(mut op: F) -> Result<T, E>
where
    E: From<StoreError>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt<E>>>,
{
    let mut backoff = Backoff::new();
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(Attempt::Fail(e)) => return Err(e),
            Err(Attempt::Retry(e)) => {
                if !backoff.conflicted().await {
                    return Err(e.into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_delays_are_bounded_and_grow() {
        let mut b = Backoff::new();
        for conflicts in 1..=ATTEMPTS + 4 {
            b.conflicts = conflicts;
            let bound = BASE * (1 << (conflicts - 1).min(16));
            assert!(b.delay() <= bound.min(CAP));
        }
    }

    #[tokio::test]
    async fn retrying_stops_after_the_attempts_with_the_conflict() {
        let mut calls = 0;
        let r: Result<(), AppError> = retrying(|| {
            calls += 1;
            async { Err(Attempt::Retry(StoreError::Conflict)) }
        })
        .await;
        assert_eq!(calls, ATTEMPTS);
        assert_eq!(r.unwrap_err().code(), "conflict");
    }

    #[tokio::test]
    async fn retrying_answers_a_refusal_at_once() {
        let mut calls = 0;
        let r: Result<(), AppError> = retrying(|| {
            calls += 1;
            async { Err(StoreError::UnknownCustomer.into()) }
        })
        .await;
        assert_eq!(calls, 1);
        assert_eq!(r.unwrap_err().code(), "unknown_customer");
    }
}
