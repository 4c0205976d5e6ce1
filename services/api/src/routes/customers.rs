//! Customers and their managed domains (T1, T2, D3.n).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use roster_domain::CustomerCommand;
use roster_events::{CustomerId, Domain};
use roster_projections::queries;
use roster_store::auth::Scope;

use crate::dto::*;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, Caller, Scoped};
use crate::AppState;
use roster_app::customers as app;

async fn view(state: &AppState, id: CustomerId) -> ApiResult<CustomerView> {
    let row = queries::customer(&state.store, id)
        .await?
        .ok_or_else(ApiError::unknown_customer)?;
    let licence = queries::licence(&state.store, id).await?;
    Ok(CustomerView::from_row(row, Some(licence)))
}

/// The customers the caller manages.
#[utoipa::path(get, path = "/v1/customers", tag = "customers",
    responses((status = 200, body = CustomerList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<CustomerList>> {
    let rows = match caller.principal.scope {
        Scope::Partner(p) => queries::customers_of_partner(&state.store, p).await?,
        Scope::Customer(c) => queries::customer(&state.store, c)
            .await?
            .into_iter()
            .collect(),
    };
    let mut customers = Vec::with_capacity(rows.len());
    for row in rows {
        let licence = queries::licence(&state.store, row.customer_id).await?;
        customers.push(CustomerView::from_row(row, Some(licence)));
    }
    Ok(Json(CustomerList { customers }))
}

/// Creates a customer of the caller's partner (partner administrators only).
#[utoipa::path(post, path = "/v1/customers", tag = "customers", request_body = CreateCustomer,
    responses((status = 201, body = CustomerView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "domain_taken", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateCustomer>,
) -> ApiResult<(StatusCode, Json<CustomerView>)> {
    let Scope::Partner(partner) = caller.principal.scope else {
        return Err(ApiError::forbidden(
            "only a partner administrator can create customers",
        ));
    };
    let domains = body
        .domains
        .iter()
        .map(|d| Domain::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let id = CustomerId::new();
    let meta = caller.meta(id, &state);
    state
        .written(app::create_customer(
            &state,
            meta,
            partner,
            body.name,
            body.seat_limit,
            domains,
        ))
        .await?;
    Ok((StatusCode::CREATED, Json(view(&state, id).await?)))
}

/// One customer, with its domains and licence usage.
#[utoipa::path(get, path = "/v1/customers/{c}", tag = "customers",
    params(("c" = String, Path, description = "customer id")),
    responses((status = 200, body = CustomerView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Scoped { customer: id, .. }: Scoped,
) -> ApiResult<Json<CustomerView>> {
    Ok(Json(view(&state, id).await?))
}

/// Changes the seat limit (partner administrators only).
#[utoipa::path(patch, path = "/v1/customers/{c}", tag = "customers", request_body = UpdateCustomer,
    params(("c" = String, Path, description = "customer id")),
    responses((status = 200, body = CustomerView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Scoped {
        caller,
        customer: id,
    }: Scoped,
    ApiJson(body): ApiJson<UpdateCustomer>,
) -> ApiResult<Json<CustomerView>> {
    if let Some(seat_limit) = body.seat_limit {
        if !caller.is_partner() {
            return Err(ApiError::forbidden(
                "only a partner administrator can change the seat limit",
            ));
        }
        state
            .written(app::customer_command(
                &state,
                caller.meta(id, &state),
                CustomerCommand::ChangeSeatLimit { seat_limit },
            ))
            .await?;
    }
    Ok(Json(view(&state, id).await?))
}

/// The customer's managed domains.
#[utoipa::path(get, path = "/v1/customers/{c}/domains", tag = "domains",
    params(("c" = String, Path, description = "customer id")),
    responses((status = 200, body = DomainList), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn domains(
    State(state): State<AppState>,
    Scoped { customer: id, .. }: Scoped,
) -> ApiResult<Json<DomainList>> {
    let domains = queries::domains(&state.store, id)
        .await?
        .into_iter()
        .map(|d| DomainView {
            domain: roster_events::ids::display_domain(&d.domain),
            added_at: roster_store::from_micros(d.added_at),
        })
        .collect();
    Ok(Json(DomainList { domains }))
}

/// Adds a managed domain (T2: a domain is managed by at most one customer).
#[utoipa::path(post, path = "/v1/customers/{c}/domains", tag = "domains", request_body = AddDomain,
    params(("c" = String, Path, description = "customer id")),
    responses((status = 201, body = DomainView), (status = 400, description = "invalid_domain", body = ErrorBody),
        (status = 409, description = "domain_taken", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_domain(
    State(state): State<AppState>,
    Scoped {
        caller,
        customer: id,
    }: Scoped,
    ApiJson(body): ApiJson<AddDomain>,
) -> ApiResult<(StatusCode, Json<DomainView>)> {
    let domain = Domain::parse(&body.domain)?;
    let meta = caller.meta(id, &state);
    let time = meta.time;
    state
        .written(app::customer_command(
            &state,
            meta,
            CustomerCommand::AddDomain {
                domain: domain.clone(),
            },
        ))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(DomainView {
            domain: domain.to_unicode(),
            added_at: time,
        }),
    ))
}

/// Removes a managed domain: users whose primary address is in it are
/// deleted at once (they do not become conflicts) and its aliases are
/// removed from the other users (D3.n).
#[utoipa::path(delete, path = "/v1/customers/{c}/domains/{domain}", tag = "domains",
    params(("c" = String, Path, description = "customer id"), ("domain" = String, Path, description = "domain name")),
    responses((status = 200, body = DomainRemoval), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_domain(
    State(state): State<AppState>,
    Scoped {
        caller,
        customer: id,
    }: Scoped,
    ApiPath((_c, domain)): ApiPath<(String, String)>,
) -> ApiResult<Json<DomainRemoval>> {
    let domain = Domain::parse(&domain)?;
    let removal = state
        .written(app::remove_domain(
            &state,
            caller.meta(id, &state),
            domain.clone(),
        ))
        .await?;
    Ok(Json(DomainRemoval {
        domain: domain.to_unicode(),
        users_deleted: removal
            .users_deleted
            .iter()
            .map(|a| roster_events::ids::display_address(a.as_str()))
            .collect(),
        aliases_removed: removal
            .aliases_removed
            .iter()
            .map(|a| roster_events::ids::display_address(a.as_str()))
            .collect(),
    }))
}
