//! The API reference for people (issue 14): `/openapi.json` rendered by
//! Swagger UI at `/api/docs/`. The Swagger UI files come from the crate
//! `utoipa-swagger-ui` (its `vendored` feature: the release bundled in
//! `utoipa-swagger-ui-vendored`, nothing downloaded at build time) and are
//! compiled into the binary. The page loads only its own files and
//! `/openapi.json`: no inline script, no request to another origin, served
//! under the console's strict Content-Security-Policy.
//!
//! These are pages, not API operations, so they are not in the OpenAPI
//! document and the input checks ([`crate::inputs`]) leave their query
//! strings alone.

use std::sync::{Arc, LazyLock};

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use utoipa_swagger_ui::Config;

use crate::error::ApiError;

/// Where the reference lives.
pub const PATH: &str = "/api/docs/";

/// The policy of every page Roster renders for people (the console's too):
/// its own scripts, styles and images only, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

static CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::new(["/openapi.json"])
            // The default validator badge would call swagger.io.
            .validator_url("none")
            .deep_linking(true)
            .display_request_duration(true),
    )
});

/// `/api/docs` (redirects to `/api/docs/`), `/api/docs/` and its files.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/api/docs", get(|| async { Redirect::permanent(PATH) }))
        .route("/api/docs/", get(index))
        .route("/api/docs/{*file}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers)
}

fn serve(file: &str, request: &HeaderMap) -> Response {
    let found = match utoipa_swagger_ui::serve(file, CONFIG.clone()) {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(file, error = %e, "the API reference cannot be served");
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the API reference cannot be served; /openapi.json still can",
            )
            .into_response();
        }
    };
    let Some(found) = found else {
        return ApiError::not_found("no such file of the API reference; see /api/docs/")
            .into_response();
    };
    // Revalidated on each use, answered 304 while the binary is the same.
    let etag = format!("\"{}\"", hex(&Sha256::digest(&found.bytes)[..16]));
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = found.bytes.into_owned().into_response();
        if let Ok(v) = HeaderValue::from_str(&found.content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page is Swagger UI's own, loads only same-origin scripts (no
    /// inline script, so the CSP holds), and is configured to read
    /// /openapi.json without the swagger.io validator.
    #[test]
    fn i14_api_reference_has_no_inline_script_and_no_external_request() {
        let index = utoipa_swagger_ui::serve("index.html", CONFIG.clone())
            .unwrap()
            .expect("index.html is bundled");
        let html = String::from_utf8(index.bytes.into_owned()).unwrap();
        assert!(html.contains("swagger-ui-bundle.js"), "{html}");
        let mut rest = html.as_str();
        while let Some(i) = rest.find("<script") {
            let tag_end = rest[i..].find('>').unwrap() + i;
            let close = rest[tag_end..].find("</script>").unwrap() + tag_end;
            assert!(rest[i..tag_end].contains("src="), "an inline script: {html}");
            assert!(
                rest[tag_end + 1..close].trim().is_empty(),
                "an inline script body: {html}"
            );
            rest = &rest[close..];
        }
        assert!(!html.contains("http://") && !html.contains("https://"), "{html}");
        let init = utoipa_swagger_ui::serve("swagger-initializer.js", CONFIG.clone())
            .unwrap()
            .expect("the initializer is bundled");
        let init = String::from_utf8(init.bytes.into_owned()).unwrap();
        assert!(init.contains("\"/openapi.json\""), "{init}");
        assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");
        assert!(utoipa_swagger_ui::serve("no-such-file.js", CONFIG.clone())
            .unwrap()
            .is_none());
    }
}
