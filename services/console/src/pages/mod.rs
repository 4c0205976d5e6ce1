//! The pages of a customer's administration (issue 14): the partner's
//! customer list, a customer's dashboard, domains, users, a user's page,
//! import and export. Every handler takes the signed-in administrator,
//! checks the customer is in its scope (T1: not-found otherwise), and calls
//! the application layer ([`roster_app`]) or its read models.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::Router;
use roster_events::CustomerId;
use roster_projections::queries::{self, CustomerRow};

use crate::error::PageError;
use crate::layout::Layout;
use crate::session::CurrentAdmin;
use crate::ConsoleState;

pub mod audit;
pub mod conflicts;
pub mod customers;
pub mod directory;
pub mod domains;
pub mod history;
pub mod imports;
pub mod runs;
pub mod timetravel;
pub mod troubleshoot;
pub mod users;
pub mod view;

/// The routes of the pages, merged into the console's router.
pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/customers", get(customers::list).post(customers::create))
        .route("/customers/{c}", get(customers::dashboard))
        .route(
            "/customers/{c}/domains",
            get(domains::list).post(domains::add),
        )
        .route(
            "/customers/{c}/domains/{domain}/remove",
            get(domains::confirm).post(domains::remove),
        )
        .route("/customers/{c}/users", get(users::list))
        .route("/customers/{c}/users.csv", get(imports::export))
        .route(
            "/customers/{c}/users/new",
            get(users::new_form).post(users::create),
        )
        .route("/customers/{c}/users/{address}", get(users::show))
        .route(
            "/customers/{c}/users/{address}/edit",
            get(users::edit_form).post(users::update),
        )
        .route("/customers/{c}/users/{address}/delete", post(users::delete))
        .route("/customers/{c}/audit", get(audit::list))
        .merge(imports::routes())
        .merge(directory::routes())
        .merge(conflicts::routes())
        .merge(runs::routes())
}

/// The customer a page is about, or the not-found page.
/// A page about one customer: the signed-in administrator, the customer of
/// the path's `{c}` checked against the administrator's scope (T1: outside
/// it, the not-found page), and its row. Taking this in a handler is the
/// scope check, so no page can forget it.
pub struct CustomerPage {
    pub admin: CurrentAdmin,
    pub customer: CustomerId,
    pub row: CustomerRow,
}

impl FromRequestParts<ConsoleState> for CustomerPage {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let admin = CurrentAdmin::from_request_parts(parts, state).await?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| PageError::NotFound)?;
        let raw = params
            .iter()
            .find_map(|(name, value)| (name == "c").then(|| value.to_string()))
            .ok_or(PageError::NotFound)?;
        let customer = admin.customer(state, &raw).await?;
        let row = customer_row(state, customer).await?;
        Ok(CustomerPage {
            admin,
            customer,
            row,
        })
    }
}

pub async fn customer_row(
    state: &ConsoleState,
    customer: CustomerId,
) -> Result<CustomerRow, PageError> {
    queries::customer(&state.app.store, customer)
        .await?
        .ok_or(PageError::NotFound)
}

/// The layout of a page about one customer.
pub fn layout(
    admin: &CurrentAdmin,
    row: &CustomerRow,
    title: impl Into<String>,
    section: &'static str,
) -> Layout {
    Layout::new(admin, title, section).with_customer(row.customer_id, row.name.clone())
}
