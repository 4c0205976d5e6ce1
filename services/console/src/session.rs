//! The signed-in administrator, the session cookie and CSRF (issue 14).
//!
//! [`authenticate`] runs before every console handler: it reads the session
//! cookie once (the session must be signed in, unrevoked and within its idle
//! and absolute timeouts), and refuses a state-changing request (any method
//! but GET and HEAD) whose `Origin` (or `Referer`) is not the console's, or
//! that comes with a session but without its CSRF token (form field `_csrf`
//! or header `X-CSRF-Token`). Handlers take [`CurrentAdmin`]; without a
//! session it redirects to `/signin?next=...`.

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use roster_app::admins::Client;
use roster_events::{Actor, AdminId, CorrelationId, CustomerId, EventMeta};
use roster_store::admins::{Admin, Session};
use roster_store::auth::Scope;

use crate::error::PageError;
use crate::layout::Flash;
use crate::ConsoleState;

/// The session cookie's name; `__Host-` (Secure, path `/`, no domain) when
/// the console is served over https.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-roster_session"
    } else {
        "roster_session"
    }
}

/// The cookie of a TOTP step under way (5 minutes).
pub const PENDING_COOKIE: &str = "roster_pending";
/// The cookie of a flash message shown by the next page.
pub const FLASH_COOKIE: &str = "roster_flash";
/// The form field and header that carry the CSRF token.
pub const CSRF_FIELD: &str = "_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest body read for the CSRF token (uploads to the import page included).
const CSRF_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Secure on https; `max_age`
/// in seconds (0 deletes it; `None` lasts the browser session).
pub fn set_cookie(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Where a request comes from (for throttling and the sessions list).
pub fn client(
    parts_headers: &HeaderMap,
    connect: Option<&ConnectInfo<std::net::SocketAddr>>,
) -> Client {
    Client {
        addr: connect
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into()),
        user_agent: parts_headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(256)
            .collect(),
    }
}

/// Where a request comes from, as a handler argument: the client address
/// (the TCP peer) and browser of [`client`].
pub struct Requester(pub Client);

impl<S: Send + Sync> FromRequestParts<S> for Requester {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Requester(client(
            &parts.headers,
            parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>(),
        )))
    }
}

/// The session a request's cookie stands for (set by [`authenticate`]).
#[derive(Clone)]
pub(crate) struct Authenticated {
    pub session: Session,
    pub admin: Admin,
    pub secret: String,
}

/// Flash messages read from the request's cookie.
#[derive(Clone, Default)]
pub struct Flashes(pub Vec<Flash>);

/// Reads the session, checks CSRF on state changes, and clears a flash
/// message once a page has shown it.
pub async fn authenticate(
    State(state): State<ConsoleState>,
    mut req: Request,
    next: Next,
) -> Response {
    let secure = state.config.secure();
    let now = state.now();
    let mut found = None;
    if let Some(secret) = cookie(req.headers(), cookie_name(secure)) {
        match state.admins.current(&secret, now).await {
            Ok(Some((session, admin))) => {
                found = Some(Authenticated {
                    session,
                    admin,
                    secret,
                })
            }
            Ok(None) => {}
            Err(e) => return PageError::from(e).into_response(),
        }
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        if !same_origin(req.headers(), &state) {
            return PageError::Forbidden(
                "this form was sent from another site (its Origin is not this console's); open the console and send it again".into(),
            )
            .into_response();
        }
        if let Some(auth) = &found {
            req = match check_csrf(req, &auth.session.csrf).await {
                Ok(r) => r,
                Err(e) => return e.into_response(),
            };
        }
    }
    let flash = cookie(req.headers(), FLASH_COOKIE).map(|v| crate::layout::decode_flash(&v));
    if let Some(auth) = found {
        req.extensions_mut().insert(auth);
    }
    let had_flash = flash.is_some();
    req.extensions_mut()
        .insert(Flashes(flash.into_iter().flatten().collect()));
    let mut res = next.run(req).await;
    // A page that showed the message (not a redirect that set a new one).
    if had_flash && res.status().is_success() {
        res.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(FLASH_COOKIE, "", Some(0), secure),
        );
    }
    res
}

/// Whether the request's `Origin` (or, without one, `Referer`) is the
/// console's: the public URL's origin, or without one `http://<Host>`.
fn same_origin(headers: &HeaderMap, state: &ConsoleState) -> bool {
    let expected = match state.config.origin() {
        Some(o) => o,
        None => match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
            Some(host) => format!("http://{}", host.to_ascii_lowercase()),
            None => return false,
        },
    };
    let sent = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| *o != "null")
        .map(crate::origin_of)
        .or_else(|| {
            headers
                .get(header::REFERER)
                .and_then(|v| v.to_str().ok())
                .map(crate::origin_of)
        });
    sent.is_some_and(|s| s == expected)
}

fn csrf_refused() -> PageError {
    PageError::Forbidden(
        "this form has expired or did not come from the console (its security token is missing or wrong); reload the page and send it again".into(),
    )
}

/// Checks the CSRF token of a state-changing request: the header, or the
/// `_csrf` field of a form (URL-encoded or multipart). The body is read and
/// handed on unchanged.
async fn check_csrf(req: Request, expected: &str) -> Result<Request, PageError> {
    if let Some(sent) = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        return if constant_eq(sent, expected) {
            Ok(req)
        } else {
            Err(csrf_refused())
        };
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, CSRF_BODY_LIMIT)
        .await
        .map_err(|_| PageError::BadRequest("the form is too large or was cut off".into()))?;
    let sent = if content_type.starts_with("application/x-www-form-urlencoded") {
        form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.into_owned())
    } else if content_type.starts_with("multipart/form-data") {
        multipart_field(&parts.headers, bytes.clone(), CSRF_FIELD).await
    } else {
        None
    };
    match sent {
        Some(s) if constant_eq(&s, expected) => Ok(Request::from_parts(parts, Body::from(bytes))),
        _ => Err(csrf_refused()),
    }
}

async fn multipart_field(headers: &HeaderMap, bytes: Bytes, name: &str) -> Option<String> {
    let mut probe = Request::new(Body::from(bytes));
    *probe.headers_mut() = headers.clone();
    let mut mp =
        <axum::extract::Multipart as axum::extract::FromRequest<()>>::from_request(probe, &())
            .await
            .ok()?;
    while let Ok(Some(field)) = mp.next_field().await {
        if field.name() == Some(name) {
            return field.text().await.ok();
        }
    }
    None
}

/// Compares two tokens in time that does not depend on where they differ.
fn constant_eq(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// The signed-in administrator of a request. Taking it in a handler makes
/// the page need a session: without one the browser goes to
/// `/signin?next=<this page>`.
#[derive(Debug, Clone)]
pub struct CurrentAdmin {
    pub admin_id: AdminId,
    pub email: String,
    pub display_name: String,
    /// T1: every customer of a partner, or one customer.
    pub scope: Scope,
    /// The session's CSRF token, for the forms of the page (`_csrf`).
    pub csrf: String,
    /// The session's public id (the profile marks "this session").
    pub session_id: String,
    /// Messages to show once (after a redirect).
    pub flashes: Vec<Flash>,
    /// The request's correlation id (E2): what the page writes carries it.
    pub correlation_id: CorrelationId,
    /// The client address of the request (the security log's).
    pub client_addr: String,
}

impl FromRequestParts<ConsoleState> for CurrentAdmin {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let Some(auth) = parts.extensions.get::<Authenticated>().cloned() else {
            return Err(PageError::SignIn { next });
        };
        let path = parts.uri.path();
        // A single sign-on leaves the second factor to the provider.
        if !path.starts_with("/profile")
            && !path.starts_with("/signout")
            && auth.session.method != "sso"
            && !auth.admin.totp_enabled
            && state.admins.totp_required(&auth.admin).await?
        {
            return Err(PageError::Redirect("/profile?totp=required".into()));
        }
        let flashes = parts
            .extensions
            .get::<Flashes>()
            .map(|f| f.0.clone())
            .unwrap_or_default();
        let correlation_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| CorrelationId::parse(v).ok())
            .unwrap_or_default();
        Ok(CurrentAdmin {
            admin_id: auth.admin.admin_id,
            email: auth.admin.email,
            display_name: auth.admin.display_name,
            scope: auth.admin.scope,
            csrf: auth.session.csrf,
            session_id: auth.session.session_id,
            flashes,
            correlation_id,
            client_addr: client(
                &parts.headers,
                parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>(),
            )
            .addr,
        })
    }
}

impl CurrentAdmin {
    /// The actor of what this administrator does (E2): `admin:<id>`.
    pub fn actor(&self) -> Actor {
        Actor::Admin(self.admin_id)
    }

    /// The metadata of an event this administrator causes for `customer`.
    pub fn meta(&self, customer: CustomerId, state: &ConsoleState) -> EventMeta {
        EventMeta {
            customer_id: customer,
            actor: self.actor(),
            correlation_id: self.correlation_id,
            time: state.now(),
        }
    }

    /// This administrator as stored now (with its password hash and TOTP
    /// state, for the profile's changes).
    pub async fn stored(&self, state: &ConsoleState) -> Result<Admin, PageError> {
        state
            .app
            .store
            .db()
            .admin(self.admin_id)
            .await
            .map_err(roster_app::AppError::from)?
            .ok_or(PageError::NotFound)
    }

    /// Who does a change, for the security log.
    pub fn by(&self) -> roster_app::security::By {
        roster_app::security::By::admin(self.admin_id, &self.client_addr)
    }

    pub fn is_partner(&self) -> bool {
        matches!(self.scope, Scope::Partner(_))
    }

    /// The customer of a path, if this administrator may reach it;
    /// otherwise the not-found page (T1: never 403, never data).
    pub async fn customer(&self, state: &ConsoleState, raw: &str) -> Result<CustomerId, PageError> {
        let id = CustomerId::parse(raw).map_err(|_| PageError::NotFound)?;
        let allowed = match self.scope {
            Scope::Customer(c) => c == id,
            Scope::Partner(p) => {
                state
                    .app
                    .store
                    .db()
                    .customer_partner(id)
                    .await
                    .map_err(roster_app::AppError::from)?
                    == Some(p)
            }
        };
        if allowed {
            Ok(id)
        } else {
            Err(PageError::NotFound)
        }
    }
}

/// The session secret of the request, when signed in (sign-out).
pub(crate) fn session_secret(parts: &axum::http::Extensions) -> Option<String> {
    parts.get::<Authenticated>().map(|a| a.secret.clone())
}
