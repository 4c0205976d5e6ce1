//! The routes of SPEC section 7 that this service implements.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{delete, get, post};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::AppState;

pub mod audit;
pub mod conflicts;
pub mod customers;
pub mod directory;
pub mod imports;
pub mod system;
pub mod users;

pub fn router(state: AppState) -> Router {
    routes(state, Router::new().fallback(not_found))
}

/// The API with another door behind it: what no API route matches goes to
/// `console` (the admin console, served at `/`), except below `/v1/`, which
/// stays the API's JSON 404. The API's outer layers (request id, access log,
/// body limit, input checks) apply to both.
pub fn router_with_console(state: AppState, console: Router) -> Router {
    let rest = Router::new()
        .route("/v1", axum::routing::any(not_found))
        .route("/v1/{*rest}", axum::routing::any(not_found))
        .fallback_service(console);
    routes(state, rest)
}

// One route a line: the table reads better than rustfmt's layout of it.
#[rustfmt::skip]
fn routes(state: AppState, fallback: Router) -> Router {
    let request_id = axum::http::HeaderName::from_static(crate::extract::REQUEST_ID);
    Router::new()
        .route("/v1/customers", get(customers::list).post(customers::create))
        .route("/v1/customers/{c}", get(customers::get).patch(customers::update))
        .route("/v1/customers/{c}/domains", get(customers::domains).post(customers::add_domain))
        .route("/v1/customers/{c}/domains/{domain}", delete(customers::remove_domain))
        .route("/v1/customers/{c}/users", get(users::list).post(users::create))
        .route(
            "/v1/customers/{c}/users/{address}",
            get(users::get).patch(users::update).delete(users::remove),
        )
        .route("/v1/customers/{c}/users/{address}/history", get(audit::history))
        .route(
            "/v1/customers/{c}/users/{address}/rules",
            get(users::rules).post(users::add_rule).delete(users::remove_rule),
        )
        .route("/v1/customers/{c}/audit", get(audit::list))
        .route("/v1/customers/{c}/directory", get(directory::get).put(directory::put))
        .route("/v1/customers/{c}/directory/test", post(directory::test))
        .route("/v1/customers/{c}/directory/sync", post(directory::sync))
        .route("/v1/customers/{c}/directory/enable", post(directory::enable))
        .route("/v1/customers/{c}/directory/disable", post(directory::disable))
        .route("/v1/customers/{c}/directory/syncs", get(directory::runs))
        .route("/v1/customers/{c}/directory/syncs/{run}", get(directory::run))
        .route("/v1/customers/{c}/directory/syncs/{run}/confirm", post(directory::confirm))
        .route("/v1/customers/{c}/directory/syncs/{run}/discard", post(directory::discard))
        .route("/v1/customers/{c}/directory/objects", get(directory::objects))
        .route(
            "/v1/customers/{c}/directory/exceptions",
            get(directory::exceptions).post(directory::add_exception).delete(directory::remove_exception),
        )
        .route(
            "/v1/customers/{c}/directory/additions",
            get(directory::additions).post(directory::add_addition).delete(directory::remove_addition),
        )
        .route("/v1/customers/{c}/conflicts", get(conflicts::list))
        .route("/v1/customers/{c}/conflicts/actions", post(conflicts::act))
        .merge(imports::routes())
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        // Pages, not operations: the reference rendered for people (issue 14).
        .merge(crate::apidocs::routes())
        .fallback_service(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(crate::inputs::check_request))
        // Access log, request metrics and the request's span (issue 16).
        .layer(middleware::from_fn(crate::observe::access))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| crate::observe::make_span(req)))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(middleware::from_fn(crate::extract::namespace_request_id))
        .layer(middleware::from_fn(imports::body_limit))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed on this route; see /openapi.json",
    )
}
