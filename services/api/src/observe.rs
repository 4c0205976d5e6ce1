//! What every request leaves behind (issue 16): a span named by its route
//! template that continues the caller's W3C trace (`traceparent`), one
//! access-log line at the default level (4xx and 5xx included), and the
//! request counter and latency histogram by route and status.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Who the request authenticated as, filled in by the `Caller` extractor
/// (a request without a valid token has none).
#[derive(Clone, Default)]
pub struct RequestActor(Arc<OnceLock<String>>);

impl RequestActor {
    pub fn set(&self, actor: String) {
        let _ = self.0.set(actor);
    }
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// The route template of a request (`/v1/customers/{c}/users`), never its
/// concrete path: bounded label values, no addresses in metrics.
pub fn route(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into())
}

/// The customer a request names in its path (`/v1/customers/{c}/...`).
fn customer(route: &str, path: &str) -> Option<String> {
    if !route.starts_with("/v1/customers/{c}") {
        return None;
    }
    path.split('/')
        .nth(3)
        .filter(|c| !c.is_empty() && c.len() <= 64)
        .map(str::to_string)
}

struct Headers<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The request's span (for `TraceLayer::make_span_with`): named
/// `METHOD /route/{template}`, a child of the caller's trace when the
/// request carries `traceparent`.
pub fn make_span(req: &Request) -> tracing::Span {
    let route = route(req);
    let id = req
        .headers()
        .get(crate::extract::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{} {route}", req.method()),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %req.method(),
        http.route = %route,
        http.response.status_code = Empty,
        request_id = %id,
        customer = Empty,
        actor = Empty,
    );
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(req.headers())));
    let _ = span.set_parent(parent);
    span
}

/// The access log, the request metrics and the span's outcome.
pub async fn access(mut req: Request, next: Next) -> Response {
    let route = route(&req);
    let method = req.method().clone();
    let customer = customer(&route, req.uri().path());
    let request_id = req
        .headers()
        .get(crate::extract::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let actor = RequestActor::default();
    req.extensions_mut().insert(actor.clone());
    let started = Instant::now();
    let response = next.run(req).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    let span = tracing::Span::current();
    span.record("http.response.status_code", status);
    if let Some(c) = &customer {
        span.record("customer", c.as_str());
    }
    if let Some(a) = actor.get() {
        span.record("actor", a);
    }
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    tracing::info!(
        target: "roster::access",
        method = %method,
        route = %route,
        status,
        duration_ms = (seconds * 1e6).round() / 1e3,
        request_id = %request_id,
        customer = customer.as_deref().unwrap_or("-"),
        actor = actor.get().unwrap_or("-"),
        "request"
    );
    let status = status.to_string();
    metrics::counter!("roster_http_requests_total", "method" => method.to_string(), "route" => route.clone(), "status" => status.clone()).increment(1);
    metrics::histogram!("roster_http_request_seconds", "method" => method.to_string(), "route" => route, "status" => status)
        .record(seconds);
    response
}

#[cfg(test)]
mod tests {
    use super::customer;

    #[test]
    fn the_customer_comes_from_customer_routes_only() {
        assert_eq!(
            customer("/v1/customers/{c}/users", "/v1/customers/abc/users").as_deref(),
            Some("abc")
        );
        assert_eq!(customer("/v1/customers", "/v1/customers"), None);
        assert_eq!(customer("unmatched", "/v1/customers/abc/x/y"), None);
    }
}
