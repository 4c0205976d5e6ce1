//! Extractors whose rejections are the API's JSON errors, and the caller.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use roster_events::{Actor, CorrelationId, CustomerId, EventMeta};
use roster_store::auth::{Principal, Scope};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// A JSON body whose every text field was checked by [`crate::inputs`]
/// before it is read as `T`.
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state).await?;
        crate::inputs::from_value(value).map(ApiJson)
    }
}

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::invalid(format!("the request body is not valid: {}", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::invalid(format!("the path is not valid: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::invalid(format!("the query string is not valid: {}", r.body_text()))
    }
}

/// The authenticated caller of a request, and its correlation id (E2).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub correlation_id: CorrelationId,
}

pub const REQUEST_ID: &str = "x-request-id";

/// The bearer token of a request, or the 401 that says how to send one.
fn bearer(parts: &Parts) -> ApiResult<&str> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::bad_token("send an API token as `Authorization: Bearer <token>`")
        })?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::bad_token("the Authorization header is not readable text"))?;
    // The scheme is case-insensitive (RFC 9110 section 11.1).
    value
        .trim_start()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_token("the Authorization header must be `Bearer <token>`"))
}

fn unknown_token() -> ApiError {
    ApiError::bad_token("the token is unknown or has been revoked")
}

impl Caller {
    /// The caller of an authenticated principal: its actor noted for the
    /// request log, its correlation id taken from the request id.
    fn of(parts: &Parts, principal: Principal) -> Caller {
        if let Some(actor) = parts.extensions.get::<crate::observe::RequestActor>() {
            actor.set(format!("token:{}", principal.token_id));
        }
        let correlation_id = parts
            .headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| CorrelationId::parse(v).ok())
            .unwrap_or_default();
        Caller {
            principal,
            correlation_id,
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        let principal = state
            .store
            .db()
            .authenticate(token)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(unknown_token)?;
        Ok(Caller::of(parts, principal))
    }
}

/// A client-chosen `X-Request-Id` is namespaced: the request's id (and the
/// correlation id of what it writes, E2) is a UUID version 8 derived from
/// the client's value, so a client can never pick the id of a sync run or
/// an import (UUID versions 4 and 7) and join its report. The same value
/// always gives the same id; the answer's `X-Request-Id` is that id.
pub async fn namespace_request_id(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(v) = req.headers().get(REQUEST_ID) {
        let id = client_request_id(v.as_bytes());
        if let Ok(h) = axum::http::HeaderValue::from_str(&id.to_string()) {
            req.headers_mut().insert(REQUEST_ID, h);
        }
    }
    next.run(req).await
}

/// The request id a client's `X-Request-Id` value stands for.
pub fn client_request_id(value: &[u8]) -> uuid::Uuid {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"roster:client-request-id:");
    h.update(value);
    let digest = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8 (RFC 9562: custom)
    b[8] = (b[8] & 0x3f) | 0x80; // the RFC variant
    uuid::Uuid::from_bytes(b)
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor::Token(self.principal.token_id)
    }

    pub fn meta(&self, customer: CustomerId, state: &AppState) -> EventMeta {
        EventMeta {
            customer_id: customer,
            actor: self.actor(),
            correlation_id: self.correlation_id,
            time: state.clock.now(),
        }
    }

    pub fn is_partner(&self) -> bool {
        matches!(self.principal.scope, Scope::Partner(_))
    }
}

/// The authenticated caller and the customer of the path's `{c}`, which
/// the caller may reach (otherwise 404 `unknown_customer`, T1). Every
/// route below `/v1/customers/{c}` takes this, so no handler can forget to
/// scope the customer.
#[derive(Debug, Clone)]
pub struct Scoped {
    pub caller: Caller,
    pub customer: CustomerId,
}

impl FromRequestParts<AppState> for Scoped {
    type Rejection = ApiError;

    /// The token and the customer's partner are read in one round trip
    /// (issue 17). The order of the answers is kept: a bad token is 401
    /// before a bad path is 400 or a customer out of reach is 404.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?.to_string();
        let params = axum::extract::RawPathParams::from_request_parts(parts, state).await;
        let raw = params.as_ref().ok().and_then(|params| {
            params
                .iter()
                .find(|(name, _)| *name == "c")
                .map(|(_, value)| value.to_string())
        });
        let db = state.store.db();
        let Some(id) = raw.as_deref().and_then(|r| CustomerId::parse(r).ok()) else {
            // A bad token is 401 before the path is refused; the actor is
            // noted for the request log either way.
            Caller::from_request_parts(parts, state).await?;
            let params = params.map_err(|r| {
                ApiError::invalid(format!("the path is not valid: {}", r.body_text()))
            })?;
            return Err(match params.iter().any(|(name, _)| name == "c") {
                true => ApiError::unknown_customer(),
                false => ApiError::internal("a customer-scoped route without {c}"),
            });
        };
        let (principal, owner) = db
            .authenticate_for(&token, id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(unknown_token)?;
        let caller = Caller::of(parts, principal);
        let allowed = match caller.principal.scope {
            Scope::Customer(c) => c == id,
            Scope::Partner(p) => owner == Some(p),
        };
        if allowed {
            Ok(Scoped {
                caller,
                customer: id,
            })
        } else {
            Err(ApiError::unknown_customer())
        }
    }
}
