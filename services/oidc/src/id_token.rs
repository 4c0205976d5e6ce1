//! The ID token's checks and the cache of the provider's keys.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::{get_json, now_secs, OidcError, Provider, LOGIN_TTL};

/// Clock skew allowed between Roster and the provider.
pub const LEEWAY_SECS: u64 = 60;

/// The keys are fetched again on an unknown key id at most this often, so a
/// stream of forged tokens cannot make Roster hammer the provider.
const REFETCH_EVERY: Duration = Duration::from_secs(10);

/// The claims of an ID token that Roster reads.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    #[serde(default)]
    pub azp: Option<String>,
    pub exp: i64,
    pub iat: i64,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "flexible_bool")]
    pub email_verified: Option<bool>,
}

/// `aud`: one string or several (OpenID Connect Core 1.0, 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn values(&self) -> Vec<&str> {
        match self {
            Audience::One(a) => vec![a.as_str()],
            Audience::Many(a) => a.iter().map(String::as_str).collect(),
        }
    }
}

/// A boolean claim some providers send as the string "true".
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Flexible {
    Bool(bool),
    Text(String),
}

impl Flexible {
    pub(crate) fn into_bool(self) -> bool {
        match self {
            Flexible::Bool(b) => b,
            Flexible::Text(t) => t.eq_ignore_ascii_case("true"),
        }
    }
}

fn flexible_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(Option::<Flexible>::deserialize(d)?.map(Flexible::into_bool))
}

/// The provider's published keys.
pub(crate) struct KeyCache {
    keys: Vec<Jwk>,
    refetched: Option<Instant>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<Value>,
}

impl KeyCache {
    pub(crate) async fn fetch(http: &reqwest::Client, url: &str) -> Result<KeyCache, OidcError> {
        let raw: RawSet = get_json(http, url, "key set (JWKS)").await?;
        // A key of a type Roster cannot read is skipped, not fatal.
        let keys = raw
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
            .collect();
        Ok(KeyCache {
            keys,
            refetched: None,
        })
    }

    /// The key for a token's `kid` and `alg`: with a kid, the key of that id;
    /// without one, the only signing key of the algorithm's type.
    fn pick(&self, kid: Option<&str>, alg: Algorithm) -> Result<Option<DecodingKey>, OidcError> {
        let usable: Vec<&Jwk> = self
            .keys
            .iter()
            .filter(|k| fits(k, alg))
            .filter(|k| kid.is_none() || k.common.key_id.as_deref() == kid)
            .collect();
        let key = match (kid, usable.as_slice()) {
            (_, [one]) => *one,
            (Some(_), [first, ..]) => *first,
            _ => return Ok(None),
        };
        DecodingKey::from_jwk(key)
            .map(Some)
            .map_err(|e| OidcError::BadSignature {
                reason: format!("the provider's key cannot be read: {e}"),
            })
    }
}

/// True when `key` can verify a signature of `alg`.
fn fits(key: &Jwk, alg: Algorithm) -> bool {
    if matches!(
        key.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return false;
    }
    if let Some(declared) = &key.common.key_algorithm {
        if declared.to_string() != format!("{alg:?}") {
            return false;
        }
    }
    use Algorithm::*;
    match &key.algorithm {
        AlgorithmParameters::RSA(_) => {
            matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
        }
        AlgorithmParameters::EllipticCurve(_) => matches!(alg, ES256 | ES384),
        AlgorithmParameters::OctetKeyPair(_) => alg == EdDSA,
        // A symmetric key is never a provider's proof.
        AlgorithmParameters::OctetKey(_) => false,
    }
}

/// One part of a compact JWT, decoded as JSON (for the messages and the
/// algorithm check; nothing is trusted from it before the signature is).
fn part(token: &str, index: usize) -> Option<Value> {
    let segment = token.split('.').nth(index)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).ok()?).ok()
}

/// The token's algorithm, refused unless it is asymmetric.
fn algorithm(token: &str) -> Result<(Algorithm, Option<String>), OidcError> {
    let header = part(token, 0).ok_or_else(|| OidcError::BadIdToken {
        reason: "it is not a compact JWT".to_string(),
    })?;
    let alg = header["alg"].as_str().unwrap_or("(none given)").to_string();
    let parsed: Option<Algorithm> = alg.parse().ok();
    match parsed {
        Some(a) if !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => {
            Ok((a, header["kid"].as_str().map(str::to_string)))
        }
        _ => Err(OidcError::AlgorithmRefused { alg }),
    }
}

async fn key_for(
    p: &Provider,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<DecodingKey, OidcError> {
    if let Some(key) = p.keys.read().await.pick(kid, alg)? {
        return Ok(key);
    }
    let mut cache = p.keys.write().await;
    if let Some(key) = cache.pick(kid, alg)? {
        return Ok(key);
    }
    if cache.refetched.is_none_or(|t| t.elapsed() >= REFETCH_EVERY) {
        // The provider may have rotated its keys.
        tracing::info!(issuer = %p.cfg.issuer, kid, "unknown signing key: fetching the provider's keys again");
        let mut fresh = KeyCache::fetch(&p.http, &p.meta.jwks_uri).await?;
        fresh.refetched = Some(Instant::now());
        *cache = fresh;
        if let Some(key) = cache.pick(kid, alg)? {
            return Ok(key);
        }
    }
    Err(OidcError::UnknownKey {
        kid: kid.unwrap_or("(none given)").to_string(),
    })
}

/// Signature, issuer, audience and authorized party, and times; the nonce
/// is the caller's.
pub(crate) async fn verify(p: &Provider, token: &str) -> Result<IdClaims, OidcError> {
    let (alg, kid) = algorithm(token)?;
    let key = key_for(p, kid.as_deref(), alg).await?;
    let mut v = Validation::new(alg);
    v.set_issuer(&[&p.cfg.issuer]);
    v.set_audience(&[&p.cfg.client_id]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    v.leeway = LEEWAY_SECS;
    v.validate_nbf = true;
    let claims = match jsonwebtoken::decode::<IdClaims>(token, &key, &v) {
        Ok(data) => data.claims,
        Err(e) => return Err(explain(p, token, e)),
    };
    let audiences = claims.aud.values();
    // OpenID Connect Core 1.0, 3.1.3.7: with several audiences, the
    // authorized party must be this client; when given, it always must.
    if (audiences.len() > 1 || claims.azp.is_some())
        && claims.azp.as_deref() != Some(p.cfg.client_id.as_str())
    {
        return Err(OidcError::WrongAudience {
            expected: p.cfg.client_id.clone(),
            found: format!(
                "{} (authorized party {})",
                audiences.join(", "),
                claims.azp.as_deref().unwrap_or("none")
            ),
        });
    }
    let now = now_secs();
    let leeway = LEEWAY_SECS as i64;
    if claims.iat > now + leeway {
        return Err(OidcError::Expired {
            reason: format!("issued {}s in the future", claims.iat - now),
        });
    }
    if claims.iat < now - LOGIN_TTL.as_secs() as i64 - leeway {
        return Err(OidcError::Expired {
            reason: format!("issued {}s ago", now - claims.iat),
        });
    }
    Ok(claims)
}

fn explain(p: &Provider, token: &str, e: jsonwebtoken::errors::Error) -> OidcError {
    use jsonwebtoken::errors::ErrorKind;
    let claims = part(token, 1).unwrap_or(Value::Null);
    match e.kind() {
        ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => OidcError::BadSignature {
            reason: e.to_string(),
        },
        ErrorKind::InvalidIssuer => OidcError::TokenIssuer {
            expected: p.cfg.issuer.clone(),
            found: claims["iss"].to_string(),
        },
        ErrorKind::InvalidAudience => OidcError::WrongAudience {
            expected: p.cfg.client_id.clone(),
            found: claims["aud"].to_string(),
        },
        ErrorKind::ExpiredSignature => OidcError::Expired {
            reason: "expired".to_string(),
        },
        ErrorKind::ImmatureSignature => OidcError::Expired {
            reason: "not valid before its nbf".to_string(),
        },
        ErrorKind::MissingRequiredClaim(c) => OidcError::BadIdToken {
            reason: format!("it has no `{c}` claim"),
        },
        _ => OidcError::BadIdToken {
            reason: e.to_string(),
        },
    }
}
