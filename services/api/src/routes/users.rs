//! Users of a customer (M1, U1-U6) and their rules (U5).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use roster_domain::UserCommand;
use roster_events::{Address, Domain, Kind, RuleId, RuleKind, Source, Status};
use roster_projections::queries::{self, UserFilter};

use crate::dto::*;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Scoped};
use crate::AppState;
use roster_app::users::{self as app, Edit, NewUser};

pub(crate) fn parse_time(field: &str, v: &str) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(v.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| {
            ApiError::invalid(format!(
                "{field} must be an RFC 3339 time such as 2026-11-27T09:00:00Z"
            ))
        })
}

async fn current(
    state: &AppState,
    customer: roster_events::CustomerId,
    address: &Address,
) -> ApiResult<UserView> {
    queries::user_by_address(&state.store, customer, address.as_str())
        .await?
        .map(UserView::from)
        .ok_or_else(|| ApiError::not_found(format!("{address} is not a user of this customer")))
}

/// The user list: aliases grouped under their primary, searchable by address
/// or name, filtered by status and source, paged; or as it was at `as_of`.
/// With `?format=csv` or `Accept: text/csv`, the whole filtered list as a
/// CSV download in the import columns (M2), every cell formula-safe.
#[utoipa::path(get, path = "/v1/customers/{c}/users", tag = "users",
    params(("c" = String, Path, description = "customer id"), UserListQuery),
    responses((status = 200, description = "a page of users (JSON), or the whole filtered list as CSV (`format=csv` or `Accept: text/csv`; UTF-8 with BOM, CRLF)",
            content((UserList = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Scoped { customer, .. }: Scoped,
    headers: axum::http::HeaderMap,
    ApiQuery(query): ApiQuery<UserListQuery>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::invalid("status must be active, pending_deletion, deactivated or deleted")
        })?),
        None => None,
    };
    let source =
        match query.source.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(Source::parse(s).ok_or_else(|| {
                ApiError::invalid("source must be ldap, entra, manual, csv or smtp")
            })?),
            None => None,
        };
    let filter = UserFilter {
        q: query.q.map(|q| search_form(&q)),
        status,
        source,
        kind: None,
    };
    if crate::export::wants_csv(&headers, query.format.as_deref())? {
        let as_of = match query.as_of.as_deref() {
            Some(t) => Some(parse_time("as_of", t)?),
            None => None,
        };
        return Ok(crate::export::user_list_csv(state, customer, filter, as_of));
    }
    let limit = query.page_size.unwrap_or(100);
    if !(1..=queries::MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("page_size must be between 1 and 1000"));
    }
    let page = match query.as_of.as_deref() {
        Some(t) => {
            let at = parse_time("as_of", t)?;
            roster_projections::timetravel::users_as_of(
                &state.store,
                customer,
                at,
                &filter,
                query.page.as_deref(),
                limit,
            )
            .await?
        }
        None => {
            queries::list_users(
                &state.store,
                customer,
                &filter,
                query.page.as_deref(),
                limit,
            )
            .await?
        }
    };
    Ok(Json(UserList {
        users: page.items.into_iter().map(UserView::from).collect(),
        next_page: page.next_page,
    })
    .into_response())
}

/// Adds a user by hand (M1): a primary address in a managed domain, and
/// optionally names, phones, notes and aliases. Refused beyond the seat limit (T3).
#[utoipa::path(post, path = "/v1/customers/{c}/users", tag = "users", request_body = CreateUser,
    params(("c" = String, Path, description = "customer id")),
    responses((status = 201, body = UserView),
        (status = 400, description = "invalid_address", body = ErrorBody),
        (status = 409, description = "address_taken", body = ErrorBody),
        (status = 422, description = "unmanaged_domain or over_seat_limit", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    let address = Address::parse(&body.address)?;
    let aliases = body
        .aliases
        .iter()
        .map(|a| Address::parse(a))
        .collect::<Result<Vec<_>, _>>()?;
    let kind = match body.kind.as_deref() {
        None => Kind::User,
        Some(k) => Kind::parse(k).ok_or_else(|| {
            ApiError::invalid("kind must be user, distribution_list or public_folder")
        })?,
    };
    let user = NewUser {
        address: address.clone(),
        kind,
        profile: body.profile.into(),
        aliases,
    };
    state
        .written(app::add_user(
            &state,
            caller.meta(customer, &state),
            user,
            Source::Manual,
        ))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(current(&state, customer, &address).await?),
    ))
}

/// One user, with aliases, flag and rules; or as it was at `as_of` (B7).
#[utoipa::path(get, path = "/v1/customers/{c}/users/{address}", tag = "users",
    params(("c" = String, Path, description = "customer id"), ("address" = String, Path, description = "primary address, URL-encoded"), UserQuery),
    responses((status = 200, body = UserView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Scoped { customer, .. }: Scoped,
    ApiPath((_c, address)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<UserQuery>,
) -> ApiResult<Json<UserView>> {
    let at = match query.as_of.as_deref() {
        Some(t) => Some(parse_time("as_of", t)?),
        None => None,
    };
    let address = Address::parse(&address)
        .map_err(|_| ApiError::not_found(format!("{address} is not a user of this customer")))?;
    let Some(at) = at else {
        return Ok(Json(current(&state, customer, &address).await?));
    };
    let mut then = roster_projections::timetravel::users_at(&state.store, customer, at)
        .await?
        .into_values()
        .find(|r| r.address == address.as_str() && r.status != Status::Deleted)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "{address} was not a user of this customer at {}",
                at.to_rfc3339()
            ))
        })?;
    then.aliases.sort();
    Ok(Json(UserView::from(then)))
}

/// Edits a user (M1): fields (`null` clears), the whole set of aliases, or
/// the status (`active` / `deactivated`).
#[utoipa::path(patch, path = "/v1/customers/{c}/users/{address}", tag = "users", request_body = UpdateUser,
    params(("c" = String, Path, description = "customer id"), ("address" = String, Path, description = "primary address, URL-encoded")),
    responses((status = 200, body = UserView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "address_taken", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiPath((_c, address)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> ApiResult<Json<UserView>> {
    let address = Address::parse(&address)
        .map_err(|_| ApiError::not_found(format!("{address} is not a user of this customer")))?;
    let aliases = match &body.aliases {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|a| Address::parse(a))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let status = match body.status.as_deref() {
        None => None,
        Some("active") => Some(Status::Active),
        Some("deactivated") => Some(Status::Deactivated),
        Some(_) => {
            return Err(ApiError::invalid(
                "status can be set to active or deactivated",
            ))
        }
    };
    let edit = Edit {
        profile: body.profile,
        aliases,
        status,
    };
    state
        .written(app::edit_user(
            &state,
            caller.meta(customer, &state),
            address.clone(),
            edit,
        ))
        .await?;
    Ok(Json(current(&state, customer, &address).await?))
}

/// Deletes a user now, with its rules (M1, U5).
#[utoipa::path(delete, path = "/v1/customers/{c}/users/{address}", tag = "users",
    params(("c" = String, Path, description = "customer id"), ("address" = String, Path, description = "primary address, URL-encoded")),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiPath((_c, address)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let address = Address::parse(&address)
        .map_err(|_| ApiError::not_found(format!("{address} is not a user of this customer")))?;
    let meta = caller.meta(customer, &state);
    let at = meta.time;
    state
        .written(app::user_command(&state, meta, &address, || {
            UserCommand::Delete {
                reason: roster_events::DeletionReason::Manual,
                at,
            }
        }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The user's sender rules (U5).
#[utoipa::path(get, path = "/v1/customers/{c}/users/{address}/rules", tag = "rules",
    params(("c" = String, Path, description = "customer id"), ("address" = String, Path, description = "primary address, URL-encoded")),
    responses((status = 200, body = RuleList), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rules(
    State(state): State<AppState>,
    Scoped { customer, .. }: Scoped,
    ApiPath((_c, address)): ApiPath<(String, String)>,
) -> ApiResult<Json<RuleList>> {
    let address = Address::parse(&address)
        .map_err(|_| ApiError::not_found(format!("{address} is not a user of this customer")))?;
    let user = current(&state, customer, &address).await?;
    Ok(Json(RuleList { rules: user.rules }))
}

/// Adds an allow or deny rule for a sender address or domain (U5).
#[utoipa::path(post, path = "/v1/customers/{c}/users/{address}/rules", tag = "rules", request_body = CreateRule,
    params(("c" = String, Path, description = "customer id"), ("address" = String, Path, description = "primary address, URL-encoded")),
    responses((status = 201, body = RuleView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_rule(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiPath((_c, address)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<CreateRule>,
) -> ApiResult<(StatusCode, Json<RuleView>)> {
    let address = Address::parse(&address)
        .map_err(|_| ApiError::not_found(format!("{address} is not a user of this customer")))?;
    let kind = match body.kind.trim().to_ascii_lowercase().as_str() {
        "allow" => RuleKind::Allow,
        "deny" => RuleKind::Deny,
        _ => return Err(ApiError::invalid("kind must be allow or deny")),
    };
    let rule_id = RuleId::new();
    let value = body.value.clone();
    state
        .written(app::user_command(
            &state,
            caller.meta(customer, &state),
            &address,
            || UserCommand::AddRule {
                rule_id,
                kind,
                value: value.clone(),
            },
        ))
        .await?;
    let user = current(&state, customer, &address).await?;
    let rule = user
        .rules
        .into_iter()
        .find(|r| r.id == rule_id)
        .ok_or_else(|| ApiError::internal("the new rule is not in the user list"))?;
    Ok((StatusCode::CREATED, Json(rule)))
}

/// Removes a rule.
#[utoipa::path(delete, path = "/v1/customers/{c}/users/{address}/rules", tag = "rules",
    params(("c" = String, Path, description = "customer id"), ("address" = String, Path, description = "primary address, URL-encoded"), RuleQuery),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_rule(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiPath((_c, address)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<RuleQuery>,
) -> ApiResult<StatusCode> {
    let address = Address::parse(&address)
        .map_err(|_| ApiError::not_found(format!("{address} is not a user of this customer")))?;
    let rule_id = RuleId::parse(&q.rule_id).map_err(|_| ApiError::not_found("no such rule"))?;
    state
        .written(app::user_command(
            &state,
            caller.meta(customer, &state),
            &address,
            || UserCommand::RemoveRule { rule_id },
        ))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Addresses and domains are stored as A-labels and shown as U-labels, so a
/// search typed with U-labels (`bücher.example`, `ann@bücher.example`) is
/// turned into the stored form; anything else (a name, a part of an address)
/// is searched as typed.
fn search_form(q: &str) -> String {
    if q.is_ascii() {
        return q.to_string();
    }
    let t = q.trim();
    if let Ok(a) = Address::parse(t) {
        return a.as_str().to_string();
    }
    let (at, bare) = match t.strip_prefix('@') {
        Some(rest) => ("@", rest),
        None => ("", t),
    };
    if let Ok(d) = Domain::parse(bare) {
        return format!("{at}{}", d.as_str());
    }
    q.to_string()
}
