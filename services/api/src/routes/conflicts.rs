//! The conflicts view (D3.m): users flagged by the directory, with reason,
//! flagged-at and delete-at; Delete, Ignore, Deactivate; CSV export.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use roster_events::{Address, Status};
use roster_projections::queries::{self, UserFilter};
use roster_sync::ConflictAction;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::dto::{UserList, UserView};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Scoped};
use crate::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConflictQuery {
    /// `csv` for the Export (also chosen by `Accept: text/csv`).
    pub format: Option<String>,
    pub q: Option<String>,
    pub page: Option<String>,
    pub page_size: Option<i64>,
}

fn wants_csv(headers: &HeaderMap, format: Option<&str>) -> bool {
    format.is_some_and(|f| f.eq_ignore_ascii_case("csv"))
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv"))
}

/// The flagged users (JSON, paged), or all of them as CSV for Export: no
/// cell can start a formula.
#[utoipa::path(get, path = "/v1/customers/{c}/conflicts", tag = "conflicts",
    params(("c" = String, Path, description = "customer id"), ConflictQuery),
    responses((status = 200, description = "a page of flagged users (JSON), or all of them as CSV (`format=csv` or `Accept: text/csv`; UTF-8 with BOM, CRLF)",
            content((UserList = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Scoped { customer, .. }: Scoped,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ConflictQuery>,
) -> ApiResult<Response> {
    let filter = UserFilter {
        q: q.q.clone(),
        status: Some(Status::PendingDeletion),
        source: None,
        kind: None,
    };
    if wants_csv(&headers, q.format.as_deref()) {
        // Streamed page by page, every cell formula-safe (M2).
        return Ok(crate::export::conflicts_csv(state, customer, filter));
    }
    let limit = q.page_size.unwrap_or(100);
    if !(1..=queries::MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("page_size must be between 1 and 1000"));
    }
    let p = queries::list_users(&state.store, customer, &filter, q.page.as_deref(), limit).await?;
    Ok(Json(UserList {
        users: p.items.into_iter().map(UserView::from).collect(),
        next_page: p.next_page,
    })
    .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionInput {
    /// `delete` (now, with the user's rules), `ignore` (keep the user; it is
    /// not flagged again for the same absence until the directory returns
    /// it) or `deactivate`.
    pub action: String,
    pub addresses: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActionResult {
    pub address: String,
    pub ok: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActionResults {
    pub results: Vec<ActionResult>,
}

/// Delete, Ignore or Deactivate flagged users (D3.m). Each address gets its
/// own result; the successful ones are applied together.
#[utoipa::path(post, path = "/v1/customers/{c}/conflicts/actions", tag = "conflicts", request_body = ActionInput,
    params(("c" = String, Path, description = "customer id")),
    responses((status = 200, body = ActionResults), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn act(
    State(state): State<AppState>,
    Scoped { caller, customer }: Scoped,
    ApiJson(body): ApiJson<ActionInput>,
) -> ApiResult<(StatusCode, Json<ActionResults>)> {
    let action = match body.action.trim().to_ascii_lowercase().as_str() {
        "delete" => ConflictAction::Delete,
        "ignore" => ConflictAction::Ignore,
        "deactivate" => ConflictAction::Deactivate,
        _ => {
            return Err(ApiError::invalid(
                "action must be delete, ignore or deactivate",
            ))
        }
    };
    if body.addresses.is_empty() || body.addresses.len() > 10_000 {
        return Err(ApiError::invalid(
            "addresses must list 1 to 10000 addresses",
        ));
    }
    let mut results = Vec::new();
    let mut valid = Vec::new();
    for a in &body.addresses {
        match Address::parse(a) {
            Ok(addr) => valid.push(addr),
            Err(e) => results.push(ActionResult {
                address: a.clone(),
                ok: false,
                error: Some(e.to_string()),
            }),
        }
    }
    let (done, _) = state
        .written(
            state
                .sync
                .conflict_action(&caller.meta(customer, &state), action, &valid),
        )
        .await?;
    results.extend(done.into_iter().map(|(a, r)| ActionResult {
        address: roster_events::ids::display_address(a.as_str()),
        ok: r.is_ok(),
        error: r.err(),
    }));
    Ok((StatusCode::OK, Json(ActionResults { results })))
}
