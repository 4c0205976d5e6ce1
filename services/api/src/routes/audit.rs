//! The audit trail and one user's history (E4).

use axum::extract::State;
use axum::Json;
use roster_events::{Actor, Address};
use roster_projections::queries::{self, AuditFilter};

use crate::dto::*;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiPath, ApiQuery, Scoped};
use crate::routes::users::parse_time;
use crate::AppState;

/// The customer's audit trail, newest first: filter by address, actor, event
/// type and time range.
#[utoipa::path(get, path = "/v1/customers/{c}/audit", tag = "audit",
    params(("c" = String, Path, description = "customer id"), AuditQuery),
    responses((status = 200, body = AuditList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Scoped { customer, .. }: Scoped,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditList>> {
    let address = match q.address.as_deref().filter(|a| !a.trim().is_empty()) {
        None => None,
        Some(a) => Some(match Address::parse(a) {
            Ok(addr) => addr.to_string(),
            // A domain (DomainAdded / DomainRemoved are about one).
            Err(_) => roster_events::Domain::parse(a)
                .map(|d| d.to_string())
                .map_err(|_| ApiError::invalid("address must be an email address or a domain"))?,
        }),
    };
    let filter = AuditFilter {
        address,
        actor: q
            .actor
            .as_deref()
            .filter(|a| !a.trim().is_empty())
            .map(parse_actor)
            .transpose()?,
        event_type: q.event_type.filter(|t| !t.is_empty()),
        from: q
            .from
            .as_deref()
            .map(|t| parse_time("from", t))
            .transpose()?
            .map(|t| t.timestamp_micros()),
        to: q
            .to
            .as_deref()
            .map(|t| parse_time("to", t))
            .transpose()?
            .map(|t| t.timestamp_micros()),
        ..AuditFilter::default()
    };
    let limit = q.page_size.unwrap_or(100);
    if !(1..=queries::MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("page_size must be between 1 and 1000"));
    }
    let page = queries::audit(&state.store, customer, &filter, q.page.as_deref(), limit).await?;
    Ok(Json(AuditList {
        events: page.items.into_iter().map(AuditView::from).collect(),
        next_page: page.next_page,
    }))
}

/// The `actor` filter: one of the forms events record (E2).
fn parse_actor(actor: &str) -> ApiResult<Actor> {
    actor.trim().parse().map_err(|_| {
        ApiError::invalid(
            "actor must be token:<id>, admin:<id>, sync:<run> (ids and runs are UUIDs) \
             or system:<name>",
        )
    })
}

/// Every event of the user (or users) that had this primary address,
/// oldest first, including events before a rename or deletion.
#[utoipa::path(get, path = "/v1/customers/{c}/users/{address}/history", tag = "audit",
    params(("c" = String, Path, description = "customer id"), ("address" = String, Path, description = "primary address, URL-encoded")),
    responses((status = 200, body = History), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    Scoped { customer, .. }: Scoped,
    ApiPath((_c, address)): ApiPath<(String, String)>,
) -> ApiResult<Json<History>> {
    let address = Address::parse(&address)
        .map_err(|_| ApiError::not_found(format!("{address} never was a user of this customer")))?;
    let events = queries::history(&state.store, customer, address.as_str()).await?;
    if events.is_empty() {
        return Err(ApiError::not_found(format!(
            "{address} never was a user of this customer"
        )));
    }
    Ok(Json(History {
        address: roster_events::ids::display_address(address.as_str()),
        events: events.into_iter().map(AuditView::from).collect(),
    }))
}
