//! State shared by the HTTP handlers and the test-facing API: tenants,
//! applications, issued tokens, programmed faults, recorded requests, the
//! emulator clock and settings.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::Permission;
use crate::store::Directory;

/// Locks a mutex, ignoring poisoning (a panicking test must not cascade).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// Emulator-wide settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub token_lifetime: Duration,
    pub delta_page_size: usize,
    pub delta_token_max_age: chrono::Duration,
    pub latency: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            // A fresh token from the v2.0 endpoint says "expires_in": 3599.
            token_lifetime: Duration::from_secs(3599),
            delta_page_size: 100,
            // "For directory objects, the limit is seven days."
            delta_token_max_age: chrono::Duration::days(7),
            latency: Duration::ZERO,
        }
    }
}

/// A client secret of an application.
#[derive(Debug, Clone)]
pub(crate) struct SecretState {
    pub id: u64,
    pub value: String,
    pub expires: DateTime<Utc>,
}

/// An application registration (and its service principal) in a tenant.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub client_id: String,
    pub display_name: String,
    pub secrets: Vec<SecretState>,
    pub permissions: BTreeSet<Permission>,
    pub service_principal_id: String,
}

/// What a `410 Gone` for an invalidated delta token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GoneKind {
    SyncStateNotFound,
    ResyncRequired,
}

/// One tenant.
#[derive(Debug)]
pub(crate) struct TenantState {
    pub id: String,
    pub display_name: String,
    pub domains: RwLock<Vec<String>>,
    pub apps: Mutex<Vec<AppState>>,
    pub dir: RwLock<Directory>,
    /// Delta tokens issued under an older epoch answer 410.
    pub delta_epoch: Mutex<(u64, GoneKind)>,
}

/// An access token the emulator issued.
#[derive(Debug, Clone)]
pub(crate) struct TokenInfo {
    pub tenant_id: String,
    pub roles: BTreeSet<Permission>,
    pub expires: DateTime<Utc>,
}

/// Which endpoint a request addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST {login_base}/{tenant}/oauth2/v2.0/token`.
    Token,
    /// Anything under `{graph_base}`.
    Graph,
    /// Any other path (answered 404).
    Other,
}

/// A request the emulator received, as recorded for assertions.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Endpoint addressed.
    pub endpoint: Endpoint,
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/v1.0/users` or `/contoso.com/oauth2/v2.0/token`.
    pub path: String,
    /// Raw (still percent-encoded) query string, if any.
    pub query: Option<String>,
    /// Decoded query parameters in order.
    pub query_params: Vec<(String, String)>,
    /// All request headers (lower-case names). `Authorization` is kept
    /// as sent so tests can check which token was used.
    pub headers: Vec<(String, String)>,
    /// Whether an `Authorization` header was present.
    pub has_authorization: bool,
    /// The `ConsistencyLevel` header, if sent.
    pub consistency_level: Option<String>,
    /// The `client-request-id` header, if sent.
    pub client_request_id: Option<String>,
    /// The `request-id` the emulator answered with.
    pub request_id: String,
    /// Form fields of a token request, with `client_secret` redacted.
    pub form: Vec<(String, String)>,
    /// Status answered.
    pub status: u16,
    /// Description of the programmed fault that answered it, if any.
    pub fault: Option<String>,
}

impl RecordedRequest {
    /// The first decoded query parameter named `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query_params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path and query as sent.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{}", self.path, q),
            None => self.path.clone(),
        }
    }
}

/// What a programmed fault does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FaultAction {
    Throttle(u64),
    Unavailable(Option<u64>),
    Status {
        status: u16,
        code: String,
        message: String,
    },
    DropConnection,
    Delay(Duration),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FaultTarget {
    AnyGraph,
    GraphPath(String),
    GraphPrefix(String),
    Token,
}

/// A fault to inject into the responses of the next matching requests.
///
/// By default a fault answers the next single Graph request (any path).
/// Narrow it with [`Fault::on_path`], [`Fault::on_path_prefix`] or
/// [`Fault::on_token_endpoint`], let requests through first with
/// [`Fault::after`], and repeat it with [`Fault::times`].
///
/// ```
/// use roster_graph_emulator::Fault;
/// // The third page of /users fails with 500 once.
/// let f = Fault::internal_error().on_path("/users").after(2);
/// # let _ = f;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub(crate) action: FaultAction,
    pub(crate) target: FaultTarget,
    pub(crate) skip: u32,
    pub(crate) times: u32,
}

impl Fault {
    fn new(action: FaultAction) -> Self {
        Fault {
            action,
            target: FaultTarget::AnyGraph,
            skip: 0,
            times: 1,
        }
    }

    /// `429 Too Many Requests` with `Retry-After: <secs>` and the body of
    /// the throttling guidance's sample (`TooManyRequests`).
    pub fn throttle(retry_after_secs: u64) -> Self {
        Fault::new(FaultAction::Throttle(retry_after_secs))
    }

    /// `503 Service Unavailable` (`serviceNotAvailable`) with
    /// `Retry-After: <secs>`.
    pub fn unavailable(retry_after_secs: u64) -> Self {
        Fault::new(FaultAction::Unavailable(Some(retry_after_secs)))
    }

    /// `503 Service Unavailable` without a `Retry-After` header.
    pub fn unavailable_without_retry_after() -> Self {
        Fault::new(FaultAction::Unavailable(None))
    }

    /// `500 Internal Server Error` (`generalException`).
    pub fn internal_error() -> Self {
        Fault::status(
            500,
            "generalException",
            "An unspecified error has occurred.",
        )
    }

    /// `403 Authorization_RequestDenied` "Insufficient privileges to
    /// complete the operation.".
    pub fn forbidden() -> Self {
        Fault::status(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    /// Any status with a Graph error body of the given code and message.
    pub fn status(status: u16, code: &str, message: &str) -> Self {
        Fault::new(FaultAction::Status {
            status,
            code: code.to_string(),
            message: message.to_string(),
        })
    }

    /// Answers `200` headers and part of a JSON body, then drops the
    /// connection: the client sees a transfer that did not complete.
    pub fn drop_connection() -> Self {
        Fault::new(FaultAction::DropConnection)
    }

    /// Delays the matching requests, then answers them normally.
    pub fn delay(d: Duration) -> Self {
        Fault::new(FaultAction::Delay(d))
    }

    /// Applies to `n` matching requests (default 1). `u32::MAX` is
    /// "until cleared".
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }

    /// Lets the first `n` matching requests through unharmed.
    pub fn after(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    /// Matches Graph requests whose path, relative to the graph base and
    /// without the query, equals `path` (e.g. `/users`, `/users/delta`).
    pub fn on_path(mut self, path: &str) -> Self {
        self.target = FaultTarget::GraphPath(normalise(path));
        self
    }

    /// Matches Graph requests whose relative path starts with `prefix`.
    pub fn on_path_prefix(mut self, prefix: &str) -> Self {
        self.target = FaultTarget::GraphPrefix(normalise(prefix));
        self
    }

    /// Matches token requests instead of Graph requests. Error faults then
    /// answer with the token endpoint's OAuth error body.
    pub fn on_token_endpoint(mut self) -> Self {
        self.target = FaultTarget::Token;
        self
    }

    fn matches(&self, endpoint: Endpoint, rel_path: &str) -> bool {
        match (&self.target, endpoint) {
            (FaultTarget::Token, Endpoint::Token) => true,
            (FaultTarget::AnyGraph, Endpoint::Graph) => true,
            (FaultTarget::GraphPath(p), Endpoint::Graph) => {
                rel_path.trim_end_matches('/').eq_ignore_ascii_case(p)
            }
            (FaultTarget::GraphPrefix(p), Endpoint::Graph) => rel_path
                .to_ascii_lowercase()
                .starts_with(&p.to_ascii_lowercase()),
            _ => false,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match &self.action {
            FaultAction::Throttle(s) => format!("429 Retry-After {s}"),
            FaultAction::Unavailable(s) => format!("503 Retry-After {s:?}"),
            FaultAction::Status { status, code, .. } => format!("{status} {code}"),
            FaultAction::DropConnection => "connection dropped".into(),
            FaultAction::Delay(d) => format!("delayed {d:?}"),
        }
    }
}

fn normalise(p: &str) -> String {
    let p = p.trim_end_matches('/');
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// Everything the emulator shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub base: String,
    pub clock_offset: Mutex<chrono::Duration>,
    pub settings: Mutex<Settings>,
    pub tenants: RwLock<Vec<Arc<TenantState>>>,
    pub tokens: Mutex<HashMap<String, TokenInfo>>,
    pub faults: Mutex<Vec<Fault>>,
    pub requests: Mutex<Vec<RecordedRequest>>,
    pub token_requests: AtomicU64,
    pub tokens_issued: AtomicU64,
}

impl Shared {
    pub fn new(base: String) -> Self {
        Shared {
            base,
            clock_offset: Mutex::new(chrono::Duration::zero()),
            settings: Mutex::new(Settings::default()),
            tenants: RwLock::new(Vec::new()),
            tokens: Mutex::new(HashMap::new()),
            faults: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            token_requests: AtomicU64::new(0),
            tokens_issued: AtomicU64::new(0),
        }
    }

    pub fn graph_base(&self) -> String {
        format!("{}/v1.0", self.base)
    }

    /// The emulator clock: wall time plus whatever the test advanced.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + *lock(&self.clock_offset)
    }

    pub fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    /// Finds a tenant by id or by one of its domains (case-insensitive).
    pub fn tenant(&self, id_or_domain: &str) -> Option<Arc<TenantState>> {
        let tenants = read(&self.tenants);
        tenants
            .iter()
            .find(|t| {
                t.id.eq_ignore_ascii_case(id_or_domain)
                    || read(&t.domains)
                        .iter()
                        .any(|d| d.eq_ignore_ascii_case(id_or_domain))
            })
            .cloned()
    }

    pub fn count_token_request(&self) {
        self.token_requests.fetch_add(1, Ordering::SeqCst);
    }

    /// Consumes the faults matching this request: returns the total delay
    /// and the answering fault, if any.
    pub fn take_fault(&self, endpoint: Endpoint, rel_path: &str) -> (Duration, Option<Fault>) {
        let mut faults = lock(&self.faults);
        let mut delay = Duration::ZERO;
        let mut answer = None;
        for f in faults.iter_mut() {
            if f.times == 0 || !f.matches(endpoint, rel_path) {
                continue;
            }
            if f.skip > 0 {
                f.skip -= 1;
                continue;
            }
            if let FaultAction::Delay(d) = f.action {
                f.times -= 1;
                delay += d;
                continue;
            }
            f.times -= 1;
            answer = Some(f.clone());
            break;
        }
        faults.retain(|f| f.times > 0);
        (delay, answer)
    }
}
