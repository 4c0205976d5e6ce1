//! Partners and API tokens (T1). Tokens are random 256-bit secrets shown
//! once; only their SHA-256 is stored.

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use roster_events::{CustomerId, PartnerId, TokenId};
use sha2::{Digest, Sha256};

use crate::{micros, with_db, Db, StoreError};

/// What a token may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A partner administrator: every customer of the partner.
    Partner(PartnerId),
    /// A customer administrator: one customer.
    Customer(CustomerId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: TokenId,
    pub scope: Scope,
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub token_id: TokenId,
    pub scope: Scope,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A freshly issued token; `secret` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token_id: TokenId,
    pub secret: String,
}

pub const MIN_TOKEN_LEN: usize = 24;

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "rst_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn scope_columns(scope: Scope) -> (Option<String>, Option<String>) {
    match scope {
        Scope::Partner(p) => (Some(p.to_string()), None),
        Scope::Customer(c) => (None, Some(c.to_string())),
    }
}

fn parse_scope(partner: Option<String>, customer: Option<String>) -> Result<Scope, StoreError> {
    let bad = |e: roster_events::IdError| StoreError::Corrupt(e.to_string());
    match (partner, customer) {
        (Some(p), None) => Ok(Scope::Partner(PartnerId::parse(&p).map_err(bad)?)),
        (None, Some(c)) => Ok(Scope::Customer(CustomerId::parse(&c).map_err(bad)?)),
        _ => Err(StoreError::Corrupt("a token has no scope".into())),
    }
}

/// The principal of a token's row `(token_id, partner_id, customer_id, label)`.
fn principal_of(
    id: String,
    partner: Option<String>,
    customer: Option<String>,
    label: String,
) -> Result<Principal, StoreError> {
    Ok(Principal {
        token_id: TokenId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        scope: parse_scope(partner, customer)?,
        label,
    })
}

type TokenRow = (
    String,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<i64>,
);

impl Db {
    pub async fn create_partner(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<PartnerId, StoreError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(StoreError::Config("a partner needs a name".into()));
        }
        let id = PartnerId::new();
        with_db!(self, |p| sqlx::query(
            "INSERT INTO partners (partner_id, name, created_at) VALUES ($1, $2, $3)"
        )
        .bind(id.to_string())
        .bind(name)
        .bind(micros(now))
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(id)
    }

    pub async fn partner_exists(&self, id: PartnerId) -> Result<bool, StoreError> {
        let n: i64 = with_db!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM partners WHERE partner_id = $1"
        )
        .bind(id.to_string())
        .fetch_one(p)
        .await?);
        Ok(n > 0)
    }

    /// Issues a new random token for a scope.
    pub async fn issue_token(
        &self,
        scope: Scope,
        label: &str,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, StoreError> {
        let secret = new_secret();
        let token_id = TokenId::new();
        self.insert_token(token_id, scope, label, &secret, now)
            .await?;
        Ok(IssuedToken { token_id, secret })
    }

    async fn insert_token(
        &self,
        token_id: TokenId,
        scope: Scope,
        label: &str,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (partner, customer) = scope_columns(scope);
        let n = with_db!(self, |p| {
            sqlx::query(
            "INSERT INTO api_tokens (token_id, token_hash, partner_id, customer_id, label, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
        )
        .bind(token_id.to_string())
        .bind(hash_token(secret))
        .bind(partner)
        .bind(customer)
        .bind(label.trim())
        .bind(micros(now))
        .execute(p)
        .await?
        .rows_affected()
        });
        Ok(n > 0)
    }

    /// On a data store without any token, makes `token` the first partner
    /// administrator token (of a partner named "default"). Returns the token
    /// id when it did. Several replicas may race here: ids are derived from
    /// the token, so they all write the same rows.
    pub async fn bootstrap(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenId>, StoreError> {
        if token.trim().len() < MIN_TOKEN_LEN {
            return Err(StoreError::Config(format!(
                "ROSTER_BOOTSTRAP_TOKEN must be at least {MIN_TOKEN_LEN} characters; generate one with `openssl rand -hex 32`"
            )));
        }
        let count: i64 = with_db!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_tokens"
        )
        .fetch_one(p)
        .await?);
        if count > 0 {
            return Ok(None);
        }
        let digest = Sha256::digest(format!("roster-bootstrap:{}", token.trim()).as_bytes());
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        a.copy_from_slice(&digest[..16]);
        b.copy_from_slice(&digest[16..]);
        let partner = PartnerId(uuid::Builder::from_random_bytes(a).into_uuid());
        let token_id = TokenId(uuid::Builder::from_random_bytes(b).into_uuid());
        with_db!(self, |p| sqlx::query(
            "INSERT INTO partners (partner_id, name, created_at) VALUES ($1, 'default', $2)
             ON CONFLICT (partner_id) DO NOTHING"
        )
        .bind(partner.to_string())
        .bind(micros(now))
        .execute(p)
        .await
        .map(|_| ())?);
        self.insert_token(
            token_id,
            Scope::Partner(partner),
            "bootstrap",
            token.trim(),
            now,
        )
        .await?;
        Ok(Some(token_id))
    }

    /// Whether any token exists (a store without one can only be reached
    /// through a bootstrap token).
    pub async fn has_tokens(&self) -> Result<bool, StoreError> {
        let count: i64 = with_db!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_tokens"
        )
        .fetch_one(p)
        .await?);
        Ok(count > 0)
    }

    /// On a store without any token, creates a partner named "default" and
    /// a random partner-administrator token for it; returns the secret.
    pub async fn initial_token(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<IssuedToken>, StoreError> {
        if self.has_tokens().await? {
            return Ok(None);
        }
        let partner = self.create_partner("default", now).await?;
        Ok(Some(
            self.issue_token(Scope::Partner(partner), "initial", now)
                .await?,
        ))
    }

    /// The principal of a bearer token, if it is known and not revoked.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        let row: Option<(String, Option<String>, Option<String>, String)> = with_db!(self, |p| {
            sqlx::query_as(
                "SELECT token_id, partner_id, customer_id, label FROM api_tokens
                 WHERE token_hash = $1 AND revoked_at IS NULL",
            )
            .bind(hash_token(token.trim()))
            .fetch_optional(p)
            .await?
        });
        row.map(|(id, partner, customer, label)| principal_of(id, partner, customer, label))
            .transpose()
    }

    /// [`Self::authenticate`] and the partner of `customer` (`None`: no
    /// such customer) in one round trip: every customer-scoped request
    /// needs both before it does anything else (T1; issue 17, manual
    /// additions).
    pub async fn authenticate_for(
        &self,
        token: &str,
        customer: CustomerId,
    ) -> Result<Option<(Principal, Option<PartnerId>)>, StoreError> {
        type Row = (
            String,
            Option<String>,
            Option<String>,
            String,
            Option<String>,
        );
        let row: Option<Row> = with_db!(self, |p| {
            sqlx::query_as(
                "SELECT t.token_id, t.partner_id, t.customer_id, t.label,
                        (SELECT c.partner_id FROM customer_claims c WHERE c.customer_id = $2)
                 FROM api_tokens t
                 WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
            )
            .bind(hash_token(token.trim()))
            .bind(customer.to_string())
            .fetch_optional(p)
            .await?
        });
        let bad = |e: roster_events::IdError| StoreError::Corrupt(e.to_string());
        row.map(|(id, partner, cust, label, owner)| {
            Ok((
                principal_of(id, partner, cust, label)?,
                owner
                    .map(|p| PartnerId::parse(&p).map_err(bad))
                    .transpose()?,
            ))
        })
        .transpose()
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows: Vec<TokenRow> = with_db!(self, |p| sqlx::query_as(
            "SELECT token_id, partner_id, customer_id, label, created_at, revoked_at
             FROM api_tokens ORDER BY created_at"
        )
        .fetch_all(p)
        .await?);
        rows.into_iter()
            .map(|(id, partner, customer, label, created, revoked)| {
                Ok(TokenInfo {
                    token_id: TokenId::parse(&id)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    scope: parse_scope(partner, customer)?,
                    label,
                    created_at: crate::from_micros(created),
                    revoked_at: revoked.map(crate::from_micros),
                })
            })
            .collect()
    }

    pub async fn revoke_token(&self, id: TokenId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = with_db!(self, |p| sqlx::query(
            "UPDATE api_tokens SET revoked_at = $2 WHERE token_id = $1 AND revoked_at IS NULL"
        )
        .bind(id.to_string())
        .bind(micros(now))
        .execute(p)
        .await?
        .rows_affected());
        Ok(n > 0)
    }
}
