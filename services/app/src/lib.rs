//! Roster's application layer: the commands every door goes through.
//!
//! A door (the HTTP API in `roster-api`, the directory sync in
//! `roster-sync`, a future console or SCIM endpoint) turns its input into
//! a call here; this crate loads aggregates from the store, has them
//! decide (the rules live in `roster-domain`), appends with claims, and
//! retries on optimistic conflicts with one policy ([`retry`]). Every
//! command answers with [`AppError`], whose stable codes a door maps to
//! its own terms. Read models live in `roster-projections`.
//!
//! - [`users`]: add (the one add-user path), edit, one command on a user.
//! - [`customers`]: create, customer commands, domain removal (D3.n).
//! - [`imports`]: CSV import with review (M2): plan, review, commit, view.
//! - [`seats`]: the seat-limit policy (T3).
//! - [`admins`]: administrators, sign-in, sessions, one-time links (T4).
//! - [`security`]: the console's security log, tokens, the TOTP policy (T4).
//! - [`sso`]: single sign-on through a partner's OpenID provider (T4).
#![forbid(unsafe_code)]
// No production function over 120 lines (clippy.toml; issue 13).
#![warn(clippy::too_many_lines)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use roster_projections::Projector;
use roster_store::{Appended, Clock, Store};

pub mod admins;
pub mod customers;
pub mod error;
pub mod imports;
pub mod retry;
pub mod seats;
pub mod security;
pub mod sso;
pub mod users;

pub use error::{AppError, AppResult};
pub use retry::{retrying, Attempt};

/// What the application commands work with: the log and its claims, the
/// read models to wait for, and the clock.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub projector: Arc<Projector>,
    pub clock: Arc<dyn Clock>,
    /// How long a write waits for the projections to show it (read-your-writes).
    pub consistency_timeout: Duration,
}

impl App {
    pub fn new(store: Store, projector: Arc<Projector>, clock: Arc<dyn Clock>) -> Self {
        App {
            store,
            projector,
            clock,
            consistency_timeout: Duration::from_secs(10),
        }
    }

    /// Runs a write and waits until the read models show it
    /// (read-your-writes): a door answers after this, so that a read that
    /// follows the answer sees the write.
    pub async fn written<T: Written, E>(
        &self,
        write: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let done = write.await?;
        self.settle(done.position()).await;
        Ok(done)
    }

    /// Waits until the read models show everything up to `position`.
    pub async fn settle(&self, position: i64) {
        if position <= 0 {
            return;
        }
        if !self
            .projector
            .wait_for(position, self.consistency_timeout)
            .await
        {
            tracing::warn!(
                position,
                "the projections did not catch up within the consistency timeout; a read may not show this write yet"
            );
        }
    }
}

/// What a write answers with: where in the log its last event is (0 when
/// it appended nothing), for [`App::written`].
pub trait Written {
    fn position(&self) -> i64;
}

impl Written for i64 {
    fn position(&self) -> i64 {
        *self
    }
}

impl<T> Written for (T, i64) {
    fn position(&self) -> i64 {
        self.1
    }
}

impl Written for Appended {
    fn position(&self) -> i64 {
        self.last
    }
}

impl Written for customers::Removal {
    fn position(&self) -> i64 {
        self.position
    }
}

impl Written for imports::Committed {
    fn position(&self) -> i64 {
        self.position
    }
}
