//! The console's pages about customers (issue 14, part 1): customer list,
//! dashboard, domains, users, a user's page, import and export. Each page
//! module adds its routes in [`routes`]; customer pages live under
//! `/customers/{c}` and take the customer through
//! [`crate::CurrentAdmin::customer`] (T1: not-found outside the scope).

use axum::Router;

use crate::ConsoleState;

/// The pages' routes, merged into [`crate::router`].
pub fn routes() -> Router<ConsoleState> {
    Router::new()
}
