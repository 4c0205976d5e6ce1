//! Roster's OpenID Connect relying party (issue 14): a partner's
//! administrators sign in through the partner's identity provider.
//!
//! - [`Provider::discover`] reads the provider's discovery document (its
//!   `issuer` must be exactly the configured one) and its keys (JWKS).
//! - [`Provider::begin`] answers the authorization URL (response type
//!   `code`, scope `openid email profile`, PKCE S256, a random `state` and
//!   `nonce`) and the [`PendingLogin`] to keep in the browser's session.
//! - [`Provider::finish`] checks `state`, exchanges the code (with the PKCE
//!   verifier; client_secret_basic, or client_secret_post when that is all
//!   the provider offers) and checks the ID token: its signature against the
//!   JWKS (fetched again once when a key id is unknown: key rotation), `iss`,
//!   `aud` (and `azp`), `exp`/`iat`/`nbf` with a minute of leeway, and
//!   `nonce`. Email comes from the ID token, else from the userinfo endpoint.
//!
//! ID tokens signed with `none` or with the client secret (HS256/384/512)
//! are refused: only keys the provider publishes in its JWKS prove who
//! issued a token, and every provider Roster targets signs with one.

#![forbid(unsafe_code)]

mod error;
mod id_token;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;

pub use error::OidcError;
pub use id_token::IdClaims;

/// How long a sign-in may take between [`Provider::begin`] and
/// [`Provider::finish`].
pub const LOGIN_TTL: Duration = Duration::from_secs(10 * 60);

/// The scopes Roster asks for.
pub const SCOPE: &str = "openid email profile";

/// A partner's single sign-on settings.
#[derive(Clone)]
pub struct OidcConfig {
    /// The issuer identifier, such as `https://login.example.com/tenant`
    /// (the discovery document is read below it).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Roster's callback URL, registered at the provider.
    pub redirect_uri: String,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<sealed>")
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

/// What a sign-in in progress must remember between the redirect to the
/// provider and its answer (kept server-side in the browser's session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Who signed in, as the provider vouches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
}

/// The parts of the discovery document Roster uses.
#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    Basic,
    Post,
}

/// A discovered provider: its metadata and a cache of its keys.
pub struct Provider {
    cfg: OidcConfig,
    http: reqwest::Client,
    meta: Metadata,
    authorize: reqwest::Url,
    auth: ClientAuth,
    keys: RwLock<id_token::KeyCache>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Equality that takes as long for every pair of equal-length values.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// GET `url` as JSON, with the errors named after `what`.
async fn get_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    what: &'static str,
) -> Result<T, OidcError> {
    get_json_as(http.get(url), url, what).await
}

/// Sends a GET (built by the caller: with a bearer token for userinfo) and
/// reads its JSON answer, with the errors named after `what`.
async fn get_json_as<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
    url: &str,
    what: &'static str,
) -> Result<T, OidcError> {
    let resp = request
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| unreachable(url, &e))?;
    if !resp.status().is_success() {
        return Err(OidcError::BadStatus {
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    let body = resp.bytes().await.map_err(|e| unreachable(url, &e))?;
    serde_json::from_slice(&body).map_err(|e| OidcError::BadDocument {
        url: url.to_string(),
        what,
        reason: e.to_string(),
    })
}

fn unreachable(url: &str, e: &reqwest::Error) -> OidcError {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    OidcError::Unreachable {
        url: url.to_string(),
        reason,
    }
}

fn choose_client_auth(meta: &Metadata) -> Result<ClientAuth, OidcError> {
    // Absent means client_secret_basic (OpenID Connect Discovery 1.0, 3).
    let Some(methods) = &meta.token_endpoint_auth_methods_supported else {
        return Ok(ClientAuth::Basic);
    };
    if methods.iter().any(|m| m == "client_secret_basic") {
        Ok(ClientAuth::Basic)
    } else if methods.iter().any(|m| m == "client_secret_post") {
        Ok(ClientAuth::Post)
    } else {
        Err(OidcError::Unsupported {
            what: format!(
                "client_secret_basic or client_secret_post at its token endpoint (it offers {})",
                methods.join(", ")
            ),
        })
    }
}

/// The token endpoint's answer.
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// An OAuth error answer (RFC 6749, 5.2).
#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The userinfo endpoint's answer, as far as Roster reads it.
#[derive(Deserialize)]
struct Userinfo {
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<id_token::Flexible>,
}

impl Provider {
    /// Reads the provider's discovery document and keys. Fails, saying what
    /// to fix, when the provider cannot be reached, announces another
    /// issuer, or lacks what Roster needs (code flow with PKCE S256).
    pub async fn discover(cfg: OidcConfig, http: reqwest::Client) -> Result<Provider, OidcError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            cfg.issuer.trim_end_matches('/')
        );
        let meta: Metadata = get_json(&http, &url, "discovery document").await?;
        if meta.issuer != cfg.issuer {
            return Err(OidcError::WrongIssuer {
                configured: cfg.issuer.clone(),
                announced: meta.issuer,
            });
        }
        if let Some(methods) = &meta.code_challenge_methods_supported {
            if !methods.iter().any(|m| m == "S256") {
                return Err(OidcError::Unsupported {
                    what: "PKCE with S256 (code_challenge_methods_supported)".to_string(),
                });
            }
        }
        let auth = choose_client_auth(&meta)?;
        let authorize = reqwest::Url::parse(&meta.authorization_endpoint).map_err(|e| {
            OidcError::BadDocument {
                url: url.clone(),
                what: "discovery document",
                reason: format!("authorization_endpoint: {e}"),
            }
        })?;
        let keys = id_token::KeyCache::fetch(&http, &meta.jwks_uri).await?;
        Ok(Provider {
            cfg,
            http,
            meta,
            authorize,
            auth,
            keys: RwLock::new(keys),
        })
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.cfg.issuer
    }

    /// Starts a sign-in: the URL to send the browser to, and what to keep
    /// until the provider sends it back.
    pub fn begin(&self) -> (String, PendingLogin) {
        let pending = PendingLogin {
            state: random_token(),
            nonce: random_token(),
            pkce_verifier: random_token(),
            created_at: now_secs(),
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.pkce_verifier.as_bytes()));
        let mut url = self.authorize.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", &self.cfg.redirect_uri)
            .append_pair("scope", SCOPE)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        (url.into(), pending)
    }

    /// Finishes a sign-in with the `code` and `state` the provider sent the
    /// browser back with: answers who signed in once every check passed.
    pub async fn finish(
        &self,
        pending: &PendingLogin,
        code: &str,
        state: &str,
    ) -> Result<Identity, OidcError> {
        if !same(state, &pending.state) {
            return Err(OidcError::StateMismatch);
        }
        let age = now_secs().saturating_sub(pending.created_at);
        if age < 0 || age as u64 > LOGIN_TTL.as_secs() {
            return Err(OidcError::LoginExpired {
                minutes: LOGIN_TTL.as_secs() / 60,
            });
        }
        let tokens = self.exchange(code, &pending.pkce_verifier).await?;
        let id_token = tokens.id_token.ok_or(OidcError::NoIdToken)?;
        let claims = self.verify_id_token(&id_token, &pending.nonce).await?;
        let mut identity = Identity {
            issuer: claims.iss.clone(),
            subject: claims.sub.clone(),
            email: claims.email.clone(),
            email_verified: claims.email_verified,
        };
        if identity.email.is_none() {
            if let (Some(endpoint), Some(access)) =
                (&self.meta.userinfo_endpoint, &tokens.access_token)
            {
                let info = self.userinfo(endpoint, access).await?;
                if info.sub != identity.subject {
                    return Err(OidcError::UserinfoSubject);
                }
                identity.email = info.email;
                identity.email_verified = info.email_verified.map(id_token::Flexible::into_bool);
            }
        }
        Ok(identity)
    }

    async fn exchange(&self, code: &str, verifier: &str) -> Result<TokenResponse, OidcError> {
        let url = &self.meta.token_endpoint;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.cfg.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ];
        let mut request = self.http.post(url);
        match self.auth {
            ClientAuth::Basic => {
                // RFC 6749, 2.3.1: both form-urlencoded before Basic.
                let id = form_encode(&self.cfg.client_id);
                let secret = form_encode(&self.cfg.client_secret);
                request = request.basic_auth(id, Some(secret));
            }
            ClientAuth::Post => {
                form.push(("client_id", self.cfg.client_id.as_str()));
                form.push(("client_secret", self.cfg.client_secret.as_str()));
            }
        }
        let resp = request
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| unreachable(url, &e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| unreachable(url, &e))?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorResponse>(&body) {
                Ok(e) if e.error == "invalid_client" || status.as_u16() == 401 => {
                    OidcError::ClientRefused { error: e.error }
                }
                Ok(e) => OidcError::CodeRefused {
                    error: e.error,
                    description: e.error_description,
                },
                Err(_) => OidcError::BadStatus {
                    url: url.clone(),
                    status: status.as_u16(),
                },
            });
        }
        serde_json::from_slice(&body).map_err(|e| OidcError::BadDocument {
            url: url.clone(),
            what: "token response",
            reason: e.to_string(),
        })
    }

    async fn userinfo(&self, url: &str, access_token: &str) -> Result<Userinfo, OidcError> {
        get_json_as(
            self.http.get(url).bearer_auth(access_token),
            url,
            "userinfo answer (JSON; signed userinfo is not supported)",
        )
        .await
    }

    /// Checks an ID token as [`Provider::finish`] does: signature (JWKS),
    /// issuer, audience and authorized party, times, and `nonce`.
    pub async fn verify_id_token(&self, token: &str, nonce: &str) -> Result<IdClaims, OidcError> {
        let claims = id_token::verify(self, token).await?;
        match &claims.nonce {
            Some(n) if same(n, nonce) => Ok(claims),
            _ => Err(OidcError::NonceMismatch),
        }
    }
}

/// `application/x-www-form-urlencoded` of one value.
fn form_encode(value: &str) -> String {
    reqwest::Url::parse_with_params("x:", [("v", value)])
        .ok()
        .and_then(|u| u.query().map(|q| q.trim_start_matches("v=").to_string()))
        .unwrap_or_else(|| value.to_string())
}
