//! The HTTP side of the Entra ID reader: the client-credentials token
//! (cached until shortly before it expires, shared by every reader of the
//! same tenant, client id and secret), Graph GETs with bounded retries on
//! 429 / 503 honouring `Retry-After`, and the mapping of the identity
//! platform's and Graph's errors to specific [`ReadError`]s.
//!
//! The client secret never appears in an error, a log line or `Debug`
//! output (D7): errors quote the identity platform's own descriptions,
//! which name the application but never the secret.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use reqwest::header;
use roster_domain::snapshot::ReadError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::EntraOptions;

/// Microsoft Graph's resource, for the `.default` scope.
const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

/// A token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(120);

#[derive(Clone)]
struct CachedToken {
    access_token: String,
    expires_at: Instant,
}

/// Tokens by (token URL, client id, SHA-256 of the secret): shared across
/// runs and readers so a token is requested once per lifetime, not per
/// run. The key never holds the secret itself.
type TokenKey = (String, String, String);

static TOKENS: LazyLock<Mutex<HashMap<TokenKey, CachedToken>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// One page of a Graph collection or delta round.
#[derive(Debug, Deserialize)]
pub(crate) struct Page<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    pub delta_link: Option<String>,
}

/// Graph's error body: `{"error": {"code", "message"}}`.
#[derive(Debug, Deserialize, Default)]
struct GraphErrorBody {
    #[serde(default)]
    error: GraphErrorInner,
}

#[derive(Debug, Deserialize, Default)]
struct GraphErrorInner {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The identity platform's OAuth error body.
#[derive(Debug, Deserialize, Default)]
struct OAuthError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u64>,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// A Graph error that is not a transport failure: the HTTP status (as a
/// number: the door's status types stay in the HTTP crate), code and message.
#[derive(Debug, Clone)]
pub(crate) struct GraphFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// What a GET can end in besides a page.
#[derive(Debug)]
pub(crate) enum GetError {
    /// Graph answered with an error status (after retries where retrying
    /// made sense).
    Graph(GraphFailure),
    /// Anything else, already specific.
    Read(ReadError),
}

impl From<ReadError> for GetError {
    fn from(e: ReadError) -> Self {
        GetError::Read(e)
    }
}

impl GetError {
    /// The read error this ends a read with.
    pub fn into_read(self) -> ReadError {
        match self {
            GetError::Read(e) => e,
            GetError::Graph(f) => graph_failure_to_read(&f),
        }
    }
}

/// Maps a Graph error answer to a read error that says what to do.
pub(crate) fn graph_failure_to_read(f: &GraphFailure) -> ReadError {
    let text = format!("{} {}: {}", f.status, f.code, f.message);
    match f.status {
        403 => ReadError::Permission(format!(
            "Microsoft Graph refused the request ({text}); grant the application the \
             User.Read.All and GroupMember.Read.All application permissions (or \
             Directory.Read.All) with admin consent"
        )),
        401 => {
            ReadError::BindRejected(format!("Microsoft Graph refused the access token ({text})"))
        }
        400 if f.code == "Request_UnsupportedQuery"
            || f.code == "BadRequest"
            || f.message.contains("filter") =>
        {
            ReadError::InvalidFilter(format!("Microsoft Graph rejected the query ({text})"))
        }
        429 => ReadError::Throttled(format!("Microsoft Graph kept throttling the read ({text})")),
        502..=504 => ReadError::Throttled(format!(
            "Microsoft Graph stayed unavailable through every retry ({text})"
        )),
        _ => ReadError::Incomplete(format!("Microsoft Graph answered {text}")),
    }
}

/// The Graph client of one reader.
pub(crate) struct Graph {
    http: reqwest::Client,
    token_url: String,
    scope: String,
    graph_base: String,
    client_id: String,
    secret: String,
    secret_hash: String,
    opts: EntraOptions,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("token_url", &self.token_url)
            .field("graph_base", &self.graph_base)
            .field("client_id", &self.client_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn transport_error(what: &str, e: &reqwest::Error) -> ReadError {
    let mut chain = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    let lower = chain.to_ascii_lowercase();
    if e.is_timeout() {
        ReadError::Timeout(format!("{what}: {chain}"))
    } else if lower.contains("dns")
        || lower.contains("failed to lookup")
        || lower.contains("name or service not known")
        || lower.contains("no such host")
    {
        ReadError::NameResolution(format!("{what}: {chain}"))
    } else if lower.contains("connection refused") {
        ReadError::Refused(format!("{what}: {chain}"))
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        ReadError::Tls(format!("{what}: {chain}"))
    } else {
        ReadError::Incomplete(format!("{what}: {chain}"))
    }
}

/// `Retry-After` in seconds (Graph sends delta-seconds).
fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn first_line(description: &str) -> &str {
    description
        .split(['\r', '\n'])
        .next()
        .unwrap_or(description)
        .trim()
}

/// Maps the identity platform's error answer to the specific failure (D6,
/// issue 4: bad tenant, bad client id, bad or expired secret).
/// `status` is shown as the endpoint answered it (`400 Bad Request`).
fn token_error(status: impl std::fmt::Display, body: &[u8]) -> ReadError {
    let e: OAuthError = serde_json::from_slice(body).unwrap_or_default();
    let what = if e.error_description.is_empty() {
        format!("the token endpoint answered {status}")
    } else {
        first_line(&e.error_description).to_string()
    };
    let code = e.error_codes.first().copied().or_else(|| {
        let d = e.error_description.strip_prefix("AADSTS")?;
        d.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    });
    match code {
        Some(90002) | Some(900023) | Some(90013) | Some(90027) => ReadError::TenantNotFound(
            format!("{what} (check the tenant: its directory id or a verified domain)"),
        ),
        Some(700016) => ReadError::ClientIdNotFound(format!(
            "{what} (check the application (client) id, and that it is registered in this tenant)"
        )),
        Some(7000222) => ReadError::SecretExpired(format!(
            "{what} (create a new client secret in the app registration and save it here)"
        )),
        Some(7000215) | Some(7000218) => ReadError::SecretRejected(format!(
            "{what} (use the secret's value, not its id; it may have been removed)"
        )),
        Some(70011) | Some(1002012) => ReadError::Settings(what),
        _ => match e.error.as_str() {
            "invalid_tenant" => ReadError::TenantNotFound(what),
            "unauthorized_client" => ReadError::ClientIdNotFound(what),
            "invalid_client" => ReadError::SecretRejected(what),
            _ => ReadError::Other(format!("token request failed: {what}")),
        },
    }
}

/// Whether a Graph URL names a national cloud whose own `.default` scope applies.
fn scope_for(graph_base: &str) -> String {
    let origin = graph_base
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("");
    let national = [
        "graph.microsoft.us",
        "dod-graph.microsoft.us",
        "microsoftgraph.chinacloudapi.cn",
    ];
    if national.contains(&origin) {
        format!("https://{origin}/.default")
    } else {
        format!("{GRAPH_RESOURCE}/.default")
    }
}

impl Graph {
    pub fn new(
        login_base: &str,
        graph_base: &str,
        tenant: &str,
        client_id: &str,
        secret: &str,
        opts: EntraOptions,
    ) -> Result<Graph, ReadError> {
        let http = reqwest::Client::builder()
            .connect_timeout(opts.timeout.min(Duration::from_secs(30)))
            .timeout(opts.timeout)
            .user_agent(concat!("roster/", env!("CARGO_PKG_VERSION")))
            .https_only(false)
            // The token request carries the client secret: never re-sent
            // to wherever a redirect points.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(crate::outbound::PolicyResolver(
                opts.outbound.clone(),
            )))
            .build()
            .map_err(|e| ReadError::Other(format!("HTTP client: {e}")))?;
        let login_base = login_base.trim_end_matches('/');
        let graph_base = graph_base.trim_end_matches('/').to_string();
        Ok(Graph {
            http,
            token_url: format!("{login_base}/{}/oauth2/v2.0/token", tenant.trim()),
            scope: scope_for(&graph_base),
            graph_base,
            client_id: client_id.trim().to_string(),
            secret: secret.to_string(),
            secret_hash: hex::encode(Sha256::digest(secret.as_bytes())),
            opts,
        })
    }

    pub fn base(&self) -> &str {
        &self.graph_base
    }

    pub fn page_size(&self) -> u32 {
        self.opts.page_size
    }

    pub fn member_concurrency(&self) -> usize {
        self.opts.member_concurrency
    }

    fn cache_key(&self) -> TokenKey {
        (
            self.token_url.clone(),
            self.client_id.clone(),
            self.secret_hash.clone(),
        )
    }

    fn forget_token(&self) {
        if let Ok(mut t) = TOKENS.lock() {
            t.remove(&self.cache_key());
        }
    }

    /// A valid access token: the cached one, or a new one from the token
    /// endpoint (client-credentials grant).
    pub async fn token(&self) -> Result<String, ReadError> {
        let key = self.cache_key();
        if let Some(t) = TOKENS.lock().ok().and_then(|t| t.get(&key).cloned()) {
            if t.expires_at > Instant::now() + TOKEN_MARGIN {
                return Ok(t.access_token);
            }
        }
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.as_str()),
            ("grant_type", "client_credentials"),
            ("scope", self.scope.as_str()),
        ];
        let mut attempt = 0;
        loop {
            let sent = Instant::now();
            let resp = self
                .http
                .post(&self.token_url)
                .header("client-request-id", uuid::Uuid::new_v4().to_string())
                .form(&form)
                .send()
                .await
                .map_err(|e| transport_error("the token endpoint could not be reached", &e))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp
                .bytes()
                .await
                .map_err(|e| transport_error("the token answer was cut off", &e))?;
            if status.is_success() {
                let t: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
                    ReadError::Other(format!(
                        "the token endpoint's answer is not understood: {e}"
                    ))
                })?;
                let lifetime = t
                    .expires_in
                    .as_ref()
                    .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                    .unwrap_or(3599);
                let cached = CachedToken {
                    access_token: t.access_token.clone(),
                    expires_at: sent + Duration::from_secs(lifetime),
                };
                if let Ok(mut map) = TOKENS.lock() {
                    map.insert(key, cached);
                }
                tracing::debug!(lifetime, "obtained a Microsoft Graph access token");
                return Ok(t.access_token);
            }
            if matches!(status.as_u16(), 429 | 502..=504) && attempt < self.opts.max_retries {
                attempt += 1;
                self.wait(retry_after(&headers), attempt, "token endpoint")
                    .await?;
                continue;
            }
            return Err(token_error(status, &body));
        }
    }

    async fn wait(
        &self,
        told: Option<Duration>,
        attempt: u32,
        what: &str,
    ) -> Result<(), ReadError> {
        let wait = match told {
            Some(d) if d > self.opts.max_retry_after => {
                return Err(ReadError::Throttled(format!(
                    "the {what} asked to wait {} s, longer than the {} s this read accepts",
                    d.as_secs(),
                    self.opts.max_retry_after.as_secs()
                )))
            }
            Some(d) => d,
            None => self.opts.backoff * 2u32.saturating_pow(attempt.saturating_sub(1)),
        };
        tracing::info!(
            attempt,
            wait_ms = wait.as_millis() as u64,
            "Microsoft Graph throttled or unavailable; waiting before retrying"
        );
        metrics::counter!("roster_entra_retries_total").increment(1);
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// GETs one page (a URL relative to the Graph base, or an absolute
    /// `@odata.nextLink` / delta link), with `ConsistencyLevel: eventual`
    /// when `advanced`. Retries 429 and 503 (and 502 / 504) per
    /// `Retry-After`, a bounded number of times, and an expired access
    /// token once.
    pub async fn get<T: DeserializeOwned>(&self, url: &str, advanced: bool) -> Result<T, GetError> {
        let url = if url.starts_with("http://") || url.starts_with("https://") {
            // A next or delta link gets the access token: only on Graph's
            // own origin, never wherever an answer points.
            let origin = |u: &str| {
                reqwest::Url::parse(u)
                    .ok()
                    .map(|p| p.origin().ascii_serialization())
            };
            if origin(url).is_none() || origin(url) != origin(&self.graph_base) {
                return Err(GetError::Read(ReadError::Incomplete(
                    "Microsoft Graph returned a link to another host; it was not followed".into(),
                )));
            }
            url.to_string()
        } else {
            format!("{}{}", self.graph_base, url)
        };
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            let token = self.token().await?;
            let mut req = self
                .http
                .get(&url)
                .bearer_auth(&token)
                .header(header::ACCEPT, "application/json")
                .header("client-request-id", uuid::Uuid::new_v4().to_string());
            if advanced {
                req = req.header("ConsistencyLevel", "eventual");
            }
            let resp = req
                .send()
                .await
                .map_err(|e| transport_error("Microsoft Graph could not be reached", &e))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(|e| {
                ReadError::Incomplete(format!(
                    "a Microsoft Graph page was cut off: {}",
                    transport_error("", &e)
                ))
            })?;
            if status.is_success() {
                return serde_json::from_slice(&body).map_err(|e| {
                    GetError::Read(ReadError::Incomplete(format!(
                        "a Microsoft Graph page could not be parsed: {e}"
                    )))
                });
            }
            let err: GraphErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            let failure = GraphFailure {
                status: status.as_u16(),
                code: err.error.code,
                message: err.error.message,
            };
            match failure.status {
                429 | 502..=504 if attempt < self.opts.max_retries => {
                    attempt += 1;
                    self.wait(retry_after(&headers), attempt, "Microsoft Graph")
                        .await?;
                }
                401 if !renewed => {
                    // The cached token expired early or was revoked: one new token.
                    renewed = true;
                    self.forget_token();
                }
                _ => return Err(GetError::Graph(failure)),
            }
        }
    }

    /// GETs a `$count` segment (a plain-text number; needs the advanced
    /// header).
    pub async fn count(&self, path: &str) -> Result<u64, GetError> {
        let n: serde_json::Value = self.get(path, true).await?;
        n.as_u64().ok_or_else(|| {
            GetError::Read(ReadError::Other(format!(
                "Microsoft Graph's count of {path} is not a number"
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d6_token_errors_name_the_setting_to_fix() {
        let body = |code: u64, error: &str| {
            serde_json::to_vec(&serde_json::json!({
                "error": error,
                "error_description": format!("AADSTS{code}: something.\r\nTrace ID: x"),
                "error_codes": [code],
            }))
            .unwrap()
        };
        let s = 400;
        assert_eq!(
            token_error(s, &body(90002, "invalid_request")).code(),
            "tenant_not_found"
        );
        assert_eq!(
            token_error(s, &body(700016, "unauthorized_client")).code(),
            "client_id_not_found"
        );
        let u = 401;
        assert_eq!(
            token_error(u, &body(7000215, "invalid_client")).code(),
            "secret_rejected"
        );
        assert_eq!(
            token_error(u, &body(7000222, "invalid_client")).code(),
            "secret_expired"
        );
        let e = token_error(u, &body(7000222, "invalid_client")).to_string();
        assert!(!e.contains("Trace ID"), "{e}");
    }

    #[test]
    fn d6_scope_is_graphs_default_unless_a_national_cloud() {
        assert_eq!(
            scope_for("http://127.0.0.1:1/v1.0"),
            "https://graph.microsoft.com/.default"
        );
        assert_eq!(
            scope_for("https://graph.microsoft.us/v1.0"),
            "https://graph.microsoft.us/.default"
        );
    }
}
