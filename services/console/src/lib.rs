//! Roster's admin console (issue 14): a door like the HTTP API. Pages are
//! rendered on the server from askama templates (checked at compile time,
//! every value escaped), call only the application layer
//! ([`roster_app::App`], [`roster_sync::SyncService`], the read models of
//! [`roster_projections`]), and are served by `roster serve` at `/`.
//!
//! - [`session`]: the signed-in administrator ([`session::CurrentAdmin`]),
//!   the session cookie, CSRF (token and Origin) on every state change.
//! - [`error`]: [`PageError`], the error pages.
//! - [`layout`]: what the base template needs (header, nav, flash messages).
//! - [`assets`]: CSS and JavaScript compiled into the binary.
//! - [`auth`]: sign-in, TOTP, invitations and resets, profile, API tokens, SSO.
//! - [`pages`]: the customer, domain, user and import pages.
#![forbid(unsafe_code)]

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use roster_app::admins::Admins;
use roster_app::App;
use roster_sync::SyncService;

pub mod assets;
pub mod auth;
pub mod error;
pub mod layout;
pub mod pages;
pub mod session;

pub use error::{PageError, PageResult};
pub use session::CurrentAdmin;

/// The console's settings (`ROSTER_PUBLIC_URL`, `ROSTER_CONSOLE_*`; see
/// docs/admins.md).
#[derive(Debug, Clone, Default)]
pub struct ConsoleConfig {
    /// The URL people open, such as `https://roster.example.com`; its
    /// origin is the only one a state-changing request may come from.
    /// Unset: the request's own `Host` over http.
    pub public_url: Option<String>,
}

impl ConsoleConfig {
    /// The origin (`scheme://host[:port]`) of the public URL.
    pub fn origin(&self) -> Option<String> {
        self.public_url.as_deref().map(origin_of)
    }

    /// Cookies are `Secure` when the public URL is https.
    pub fn secure(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.trim().to_ascii_lowercase().starts_with("https://"))
    }
}

/// `scheme://host[:port]` of a URL (no path, no trailing slash).
pub fn origin_of(url: &str) -> String {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    )
}

/// What every page can reach.
#[derive(Clone)]
pub struct ConsoleState {
    /// The application layer (store, read models, clock).
    pub app: App,
    /// Directory sync (settings, runs, conflicts).
    pub sync: SyncService,
    /// Administrators, sign-in and sessions.
    pub admins: Admins,
    pub config: Arc<ConsoleConfig>,
    /// For single sign-on (discovery, tokens, keys).
    pub http: reqwest::Client,
}

impl ConsoleState {
    pub fn new(app: App, sync: SyncService, admins: Admins, config: ConsoleConfig) -> Self {
        ConsoleState {
            app,
            sync,
            admins,
            config: Arc::new(config),
            http: reqwest::Client::new(),
        }
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.app.clock.now()
    }

    /// The console's base URL (no trailing slash): the public URL, or
    /// without one the request's own `Host` over http. Links shown to
    /// people and the single sign-on callback start with it.
    pub fn base_url(&self, headers: &axum::http::HeaderMap) -> String {
        match &self.config.public_url {
            Some(u) => u.trim().trim_end_matches('/').to_string(),
            None => format!(
                "http://{}",
                headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("127.0.0.1:8080")
            ),
        }
    }
}

/// The console's routes: `/` and the pages below it, the sign-in pages and
/// the assets. Unknown paths answer the not-found page.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(home))
        .merge(auth::routes())
        .merge(pages::routes())
        .route("/assets/{name}", get(assets::serve))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            session::authenticate,
        ))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// `/`: a partner administrator's customer list, or a customer
/// administrator's own customer.
async fn home(admin: CurrentAdmin) -> Redirect {
    match admin.scope {
        roster_store::auth::Scope::Partner(_) => Redirect::to("/customers"),
        roster_store::auth::Scope::Customer(c) => Redirect::to(&format!("/customers/{c}")),
    }
}

async fn not_found() -> PageError {
    PageError::NotFound
}

/// The Content-Security-Policy of every console response: scripts, styles
/// and images from the console only (images also as `data:`, the TOTP QR
/// code), no framing, no inline script or style.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        // Pages hold customer data: never kept by a browser or proxy.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res.into_response()
}
