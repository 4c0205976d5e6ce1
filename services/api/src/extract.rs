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

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
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
        let token = value
            .trim_start()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::bad_token("the Authorization header must be `Bearer <token>`")
            })?;
        let principal = state
            .store
            .db()
            .authenticate(token)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::bad_token("the token is unknown or has been revoked"))?;
        if let Some(actor) = parts.extensions.get::<crate::observe::RequestActor>() {
            actor.set(format!("token:{}", principal.token_id));
        }
        let correlation_id = parts
            .headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| CorrelationId::parse(v).ok())
            .unwrap_or_default();
        Ok(Caller {
            principal,
            correlation_id,
        })
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

    /// The customer of a path, if the caller may reach it; otherwise 404 (T1).
    pub async fn customer(&self, state: &AppState, raw: &str) -> ApiResult<CustomerId> {
        let id = CustomerId::parse(raw).map_err(|_| ApiError::unknown_customer())?;
        let allowed = match self.principal.scope {
            Scope::Customer(c) => c == id,
            Scope::Partner(p) => {
                state
                    .store
                    .db()
                    .customer_partner(id)
                    .await
                    .map_err(ApiError::from)?
                    == Some(p)
            }
        };
        if allowed {
            Ok(id)
        } else {
            Err(ApiError::unknown_customer())
        }
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

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let params = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|r| ApiError::invalid(format!("the path is not valid: {}", r.body_text())))?;
        let raw = params
            .iter()
            .find(|(name, _)| *name == "c")
            .map(|(_, value)| value.to_string())
            .ok_or_else(|| ApiError::internal("a customer-scoped route without {c}"))?;
        let customer = caller.customer(state, &raw).await?;
        Ok(Scoped { caller, customer })
    }
}
