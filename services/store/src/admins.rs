//! Administrators of the console (T4, issue 14): accounts, server-side
//! sessions, one-time links (invitations, resets), sign-in throttling and a
//! partner's sign-in policy. Secrets never rest in plaintext: session ids
//! and link tokens are stored as SHA-256, passwords as argon2id PHC strings
//! (hashed by the application layer), TOTP and OpenID Connect client
//! secrets sealed under the [`SecretKey`].

use chrono::{DateTime, Utc};
use roster_events::{AdminId, CustomerId, PartnerId};

use crate::auth::{hash_token, Scope};
use crate::{from_micros, micros, with_db, Db, Secret, SecretKey, StoreError};

/// An administrator, as stored (never with its secrets in clear).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub admin_id: AdminId,
    pub email: String,
    pub display_name: String,
    pub scope: Scope,
    /// The argon2id PHC string; `None` until the invitation is accepted.
    pub password_hash: Option<String>,
    pub totp_enabled: bool,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// How far a session has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Signed in.
    Full,
    /// The password was right; the TOTP code is still to come.
    Totp,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Full => "full",
            Stage::Totp => "totp",
        }
    }
}

/// A session, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// A public id (for the profile's list and its revoke button), not the cookie's secret.
    pub session_id: String,
    pub admin_id: AdminId,
    pub stage: Stage,
    pub csrf: String,
    /// How the administrator signed in: `password`, `totp` or `sso`.
    pub method: String,
    pub client_addr: String,
    pub user_agent: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a new session records.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub admin_id: AdminId,
    pub stage: Stage,
    pub method: &'a str,
    pub client_addr: &'a str,
    pub user_agent: &'a str,
}

/// The kinds of one-time link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// Sets the first password of an invited administrator.
    Invite,
    /// Sets a new password.
    Reset,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Invite => "invite",
            LinkKind::Reset => "reset",
        }
    }
}

/// A throttle's state for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttle {
    pub failures: i64,
    pub blocked_until: Option<DateTime<Utc>>,
}

/// A partner's sign-in policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SigninPolicy {
    pub require_totp: bool,
    pub oidc_issuer: Option<String>,
    pub oidc_client_id: Option<String>,
    pub oidc_has_secret: bool,
}

type AdminRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    i64,
    Option<i64>,
);

/// A sealed secret's (nonce, ciphertext), either absent.
type SealedRow = (Option<Vec<u8>>, Option<Vec<u8>>);
/// require_totp, oidc_issuer, oidc_client_id, oidc_sealed.
type PolicyRow = (bool, Option<String>, Option<String>, Option<Vec<u8>>);

const ADMIN_COLUMNS: &str = "admin_id, email, display_name, partner_id, customer_id, password_hash, totp_sealed, created_at, disabled_at";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn admin_from_row(row: AdminRow) -> Result<Admin, StoreError> {
    let (id, email, name, partner, customer, hash, totp, created, disabled) = row;
    let scope = match (partner, customer) {
        (Some(p), None) => Scope::Partner(PartnerId::parse(&p).map_err(corrupt)?),
        (None, Some(c)) => Scope::Customer(CustomerId::parse(&c).map_err(corrupt)?),
        _ => return Err(corrupt("an administrator has no scope")),
    };
    Ok(Admin {
        admin_id: AdminId::parse(&id).map_err(corrupt)?,
        email,
        display_name: name,
        scope,
        password_hash: hash,
        totp_enabled: totp.is_some(),
        created_at: from_micros(created),
        disabled_at: disabled.map(from_micros),
    })
}

/// Emails compare case-insensitively, as addresses do (U1).
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A random secret of 256 bits, URL-safe.
pub fn random_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn totp_aad(admin: AdminId) -> String {
    format!("admin-totp:{admin}")
}

/// The sealed client secret is bound to its partner, issuer and client id:
/// changing the issuer or the client id cannot send the stored secret
/// anywhere else, the secret must be typed again (D7's rule for directory
/// secrets, applied to single sign-on).
fn oidc_aad(partner: PartnerId, issuer: &str, client_id: &str) -> String {
    format!("partner-oidc:{partner}\n{issuer}\n{client_id}")
}

fn scope_columns(scope: Scope) -> (Option<String>, Option<String>) {
    match scope {
        Scope::Partner(p) => (Some(p.to_string()), None),
        Scope::Customer(c) => (None, Some(c.to_string())),
    }
}

impl Db {
    /// Adds an administrator; an email already in use is a
    /// [`StoreError::Conflict`].
    pub async fn create_admin(
        &self,
        email: &str,
        display_name: &str,
        scope: Scope,
        password_hash: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<AdminId, StoreError> {
        let id = AdminId::new();
        let (partner, customer) = scope_columns(scope);
        with_db!(self, |p| {
            sqlx::query(
            "INSERT INTO administrators (admin_id, email, display_name, partner_id, customer_id, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(id.to_string())
        .bind(normalise_email(email))
        .bind(display_name.trim())
        .bind(partner)
        .bind(customer)
        .bind(password_hash)
        .bind(micros(now))
        .execute(p)
        .await
        .map(|_| ())
        .map_err(StoreError::from_insert)?
        });
        Ok(id)
    }

    /// Every partner: (id, name), by name.
    pub async fn list_partners(&self) -> Result<Vec<(PartnerId, String)>, StoreError> {
        let rows: Vec<(String, String)> = with_db!(self, |p| sqlx::query_as(
            "SELECT partner_id, name FROM partners ORDER BY name, partner_id"
        )
        .fetch_all(p)
        .await?);
        rows.into_iter()
            .map(|(id, name)| Ok((PartnerId::parse(&id).map_err(corrupt)?, name)))
            .collect()
    }

    pub async fn admin_count(&self) -> Result<i64, StoreError> {
        Ok(with_db!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM administrators"
        )
        .fetch_one(p)
        .await?))
    }

    pub async fn admin(&self, id: AdminId) -> Result<Option<Admin>, StoreError> {
        let sql = format!("SELECT {ADMIN_COLUMNS} FROM administrators WHERE admin_id = $1");
        let row: Option<AdminRow> = with_db!(self, |p| sqlx::query_as(&sql)
            .bind(id.to_string())
            .fetch_optional(p)
            .await?);
        row.map(admin_from_row).transpose()
    }

    pub async fn admin_by_email(&self, email: &str) -> Result<Option<Admin>, StoreError> {
        let sql = format!("SELECT {ADMIN_COLUMNS} FROM administrators WHERE email = $1");
        let row: Option<AdminRow> = with_db!(self, |p| sqlx::query_as(&sql)
            .bind(normalise_email(email))
            .fetch_optional(p)
            .await?);
        row.map(admin_from_row).transpose()
    }

    /// Every administrator, by email.
    pub async fn list_admins(&self) -> Result<Vec<Admin>, StoreError> {
        let sql = format!("SELECT {ADMIN_COLUMNS} FROM administrators ORDER BY email");
        let rows: Vec<AdminRow> = with_db!(self, |p| sqlx::query_as(&sql).fetch_all(p).await?);
        rows.into_iter().map(admin_from_row).collect()
    }

    pub async fn set_admin_password(&self, id: AdminId, hash: &str) -> Result<bool, StoreError> {
        let n = with_db!(self, |p| sqlx::query(
            "UPDATE administrators SET password_hash = $2 WHERE admin_id = $1"
        )
        .bind(id.to_string())
        .bind(hash)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n > 0)
    }

    /// Disables an administrator and revokes its sessions; false when it
    /// was already disabled or does not exist.
    pub async fn disable_admin(&self, id: AdminId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = with_db!(self, |p| {
            sqlx::query(
            "UPDATE administrators SET disabled_at = $2 WHERE admin_id = $1 AND disabled_at IS NULL"
        )
        .bind(id.to_string())
        .bind(micros(now))
        .execute(p)
        .await?
        .rows_affected()
        });
        self.revoke_admin_sessions(id, None, now).await?;
        Ok(n > 0)
    }

    /// Stores (sealed) or removes an administrator's TOTP secret.
    pub async fn set_admin_totp(
        &self,
        key: &SecretKey,
        id: AdminId,
        secret: Option<&Secret>,
    ) -> Result<(), StoreError> {
        let (nonce, sealed) = match secret {
            Some(s) => {
                let (n, c) = key.seal(s, &totp_aad(id));
                (Some(n), Some(c))
            }
            None => (None, None),
        };
        with_db!(self, |p| sqlx::query(
            "UPDATE administrators SET totp_nonce = $2, totp_sealed = $3 WHERE admin_id = $1"
        )
        .bind(id.to_string())
        .bind(nonce)
        .bind(sealed)
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// An administrator's TOTP secret, opened; `None` when not enrolled.
    pub async fn admin_totp(
        &self,
        key: &SecretKey,
        id: AdminId,
    ) -> Result<Option<Secret>, StoreError> {
        let row: Option<SealedRow> = with_db!(self, |p| {
            sqlx::query_as("SELECT totp_nonce, totp_sealed FROM administrators WHERE admin_id = $1")
                .bind(id.to_string())
                .fetch_optional(p)
                .await?
        });
        match row {
            Some((Some(n), Some(c))) => Ok(Some(key.open(&n, &c, &totp_aad(id))?)),
            _ => Ok(None),
        }
    }

    /// Starts a session; returns its secret (for the cookie) and its
    /// public id.
    pub async fn create_session(
        &self,
        new: NewSession<'_>,
        now: DateTime<Utc>,
    ) -> Result<(String, Session), StoreError> {
        let secret = random_secret();
        let session = Session {
            session_id: uuid::Uuid::new_v4().to_string(),
            admin_id: new.admin_id,
            stage: new.stage,
            csrf: random_secret(),
            method: new.method.to_string(),
            client_addr: new.client_addr.chars().take(64).collect(),
            user_agent: new.user_agent.chars().take(256).collect(),
            created_at: now,
            last_seen_at: now,
            revoked_at: None,
        };
        with_db!(self, |p| {
            sqlx::query(
            "INSERT INTO admin_sessions (session_hash, session_id, admin_id, stage, csrf, method, client_addr, user_agent, created_at, last_seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)"
        )
        .bind(hash_token(&secret))
        .bind(&session.session_id)
        .bind(session.admin_id.to_string())
        .bind(session.stage.as_str())
        .bind(&session.csrf)
        .bind(&session.method)
        .bind(&session.client_addr)
        .bind(&session.user_agent)
        .bind(micros(now))
        .execute(p)
        .await
        .map(|_| ())?
        });
        Ok((secret, session))
    }

    /// The session of a cookie's secret, revoked or not (the caller checks
    /// expiry and revocation with its own timeouts).
    pub async fn session(&self, secret: &str) -> Result<Option<Session>, StoreError> {
        let row: Option<SessionRow> = with_db!(self, |p| sqlx::query_as(&format!(
            "SELECT {SESSION_COLUMNS} FROM admin_sessions WHERE session_hash = $1"
        ))
        .bind(hash_token(secret))
        .fetch_optional(p)
        .await?);
        row.map(session_from_row).transpose()
    }

    /// An administrator's sessions that are not revoked, newest first.
    pub async fn admin_sessions(&self, id: AdminId) -> Result<Vec<Session>, StoreError> {
        let rows: Vec<SessionRow> = with_db!(self, |p| sqlx::query_as(&format!(
            "SELECT {SESSION_COLUMNS} FROM admin_sessions
             WHERE admin_id = $1 AND revoked_at IS NULL AND stage = 'full'
             ORDER BY last_seen_at DESC"
        ))
        .bind(id.to_string())
        .fetch_all(p)
        .await?);
        rows.into_iter().map(session_from_row).collect()
    }

    /// Notes a session's use (the idle timeout counts from here).
    pub async fn touch_session(&self, secret: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        with_db!(self, |p| sqlx::query(
            "UPDATE admin_sessions SET last_seen_at = $2 WHERE session_hash = $1"
        )
        .bind(hash_token(secret))
        .bind(micros(now))
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// Revokes the session of a cookie's secret.
    pub async fn revoke_session(&self, secret: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        with_db!(self, |p| {
            sqlx::query(
            "UPDATE admin_sessions SET revoked_at = $2 WHERE session_hash = $1 AND revoked_at IS NULL"
        )
        .bind(hash_token(secret))
        .bind(micros(now))
        .execute(p)
        .await
        .map(|_| ())?
        });
        Ok(())
    }

    /// Revokes one of an administrator's sessions by its public id, or all
    /// of them (`None`): "sign out everywhere". Returns how many.
    pub async fn revoke_admin_sessions(
        &self,
        admin: AdminId,
        session_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let n = with_db!(self, |p| sqlx::query(
            "UPDATE admin_sessions SET revoked_at = $3
             WHERE admin_id = $1 AND ($2 IS NULL OR session_id = $2) AND revoked_at IS NULL"
        )
        .bind(admin.to_string())
        .bind(session_id)
        .bind(micros(now))
        .execute(p)
        .await?
        .rows_affected());
        Ok(n)
    }

    /// Issues a one-time link for an administrator; returns its secret
    /// (shown once; only its hash is kept). Earlier unused links of the
    /// same kind stop working.
    pub async fn issue_link(
        &self,
        admin: AdminId,
        kind: LinkKind,
        ttl: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let secret = random_secret();
        with_db!(self, |p| {
            sqlx::query(
            "UPDATE admin_links SET used_at = $3 WHERE admin_id = $1 AND kind = $2 AND used_at IS NULL"
        )
        .bind(admin.to_string())
        .bind(kind.as_str())
        .bind(micros(now))
        .execute(p)
        .await
        .map(|_| ())?
        });
        with_db!(self, |p| {
            sqlx::query(
            "INSERT INTO admin_links (link_hash, admin_id, kind, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(hash_token(&secret))
        .bind(admin.to_string())
        .bind(kind.as_str())
        .bind(micros(now))
        .bind(micros(now + ttl))
        .execute(p)
        .await
        .map(|_| ())?
        });
        Ok(secret)
    }

    /// The administrator a link is for, if it is of this kind, unused and
    /// not expired (nothing is changed).
    pub async fn peek_link(
        &self,
        secret: &str,
        kind: LinkKind,
        now: DateTime<Utc>,
    ) -> Result<Option<AdminId>, StoreError> {
        let id: Option<String> = with_db!(self, |p| sqlx::query_scalar(
            "SELECT admin_id FROM admin_links
             WHERE link_hash = $1 AND kind = $2 AND used_at IS NULL AND expires_at > $3"
        )
        .bind(hash_token(secret))
        .bind(kind.as_str())
        .bind(micros(now))
        .fetch_optional(p)
        .await?);
        id.map(|i| AdminId::parse(&i).map_err(corrupt)).transpose()
    }

    /// Uses a link up: answers its administrator once; a second use, an
    /// expired or an unknown link answer `None`.
    pub async fn consume_link(
        &self,
        secret: &str,
        kind: LinkKind,
        now: DateTime<Utc>,
    ) -> Result<Option<AdminId>, StoreError> {
        let id: Option<String> = with_db!(self, |p| sqlx::query_scalar(
            "UPDATE admin_links SET used_at = $3
             WHERE link_hash = $1 AND kind = $2 AND used_at IS NULL AND expires_at > $3
             RETURNING admin_id"
        )
        .bind(hash_token(secret))
        .bind(kind.as_str())
        .bind(micros(now))
        .fetch_optional(p)
        .await?);
        id.map(|i| AdminId::parse(&i).map_err(corrupt)).transpose()
    }

    pub async fn throttle(&self, key: &str) -> Result<Throttle, StoreError> {
        let row: Option<(i64, i64)> = with_db!(self, |p| sqlx::query_as(
            "SELECT failures, blocked_until FROM signin_throttle WHERE throttle_key = $1"
        )
        .bind(key)
        .fetch_optional(p)
        .await?);
        Ok(row
            .map(|(failures, until)| Throttle {
                failures,
                blocked_until: (until > 0).then(|| from_micros(until)),
            })
            .unwrap_or_default())
    }

    /// Records a failure under `key`; `delay` turns the new failure count
    /// into how long the key is blocked. Failures older than `forget`
    /// start the count anew.
    pub async fn record_failure(
        &self,
        key: &str,
        now: DateTime<Utc>,
        forget: chrono::Duration,
        delay: impl Fn(i64) -> chrono::Duration,
    ) -> Result<Throttle, StoreError> {
        let current: Option<(i64, i64)> = with_db!(self, |p| sqlx::query_as(
            "SELECT failures, last_failure_at FROM signin_throttle WHERE throttle_key = $1"
        )
        .bind(key)
        .fetch_optional(p)
        .await?);
        let failures = match current {
            Some((n, last)) if from_micros(last) + forget > now => n + 1,
            _ => 1,
        };
        let until = now + delay(failures);
        with_db!(self, |p| {
            sqlx::query(
            "INSERT INTO signin_throttle (throttle_key, failures, last_failure_at, blocked_until)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (throttle_key) DO UPDATE SET failures = $2, last_failure_at = $3, blocked_until = $4"
        )
        .bind(key)
        .bind(failures)
        .bind(micros(now))
        .bind(micros(until))
        .execute(p)
        .await
        .map(|_| ())?
        });
        Ok(Throttle {
            failures,
            blocked_until: Some(until),
        })
    }

    pub async fn clear_throttle(&self, key: &str) -> Result<(), StoreError> {
        with_db!(self, |p| sqlx::query(
            "DELETE FROM signin_throttle WHERE throttle_key = $1"
        )
        .bind(key)
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(())
    }

    pub async fn signin_policy(&self, partner: PartnerId) -> Result<SigninPolicy, StoreError> {
        let row: Option<PolicyRow> = with_db!(self, |p| {
            sqlx::query_as(
                "SELECT require_totp, oidc_issuer, oidc_client_id, oidc_sealed FROM partner_signin WHERE partner_id = $1"
            )
            .bind(partner.to_string())
            .fetch_optional(p)
            .await?
        });
        Ok(row
            .map(|(require_totp, issuer, client, sealed)| SigninPolicy {
                require_totp,
                oidc_issuer: issuer,
                oidc_client_id: client,
                oidc_has_secret: sealed.is_some(),
            })
            .unwrap_or_default())
    }

    pub async fn set_require_totp(
        &self,
        partner: PartnerId,
        require: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        with_db!(self, |p| sqlx::query(
            "INSERT INTO partner_signin (partner_id, require_totp, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (partner_id) DO UPDATE SET require_totp = $2, updated_at = $3"
        )
        .bind(partner.to_string())
        .bind(require)
        .bind(micros(now))
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// Sets (or with `None`, removes) a partner's single sign-on; the
    /// client secret is sealed to the partner.
    pub async fn set_partner_oidc(
        &self,
        key: &SecretKey,
        partner: PartnerId,
        oidc: Option<(&str, &str, &Secret)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (issuer, client, nonce, sealed) = match oidc {
            Some((issuer, client, secret)) => {
                let (n, c) = key.seal(secret, &oidc_aad(partner, issuer, client));
                (Some(issuer), Some(client), Some(n), Some(c))
            }
            None => (None, None, None, None),
        };
        with_db!(self, |p| {
            sqlx::query(
            "INSERT INTO partner_signin (partner_id, oidc_issuer, oidc_client_id, oidc_nonce, oidc_sealed, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (partner_id) DO UPDATE SET oidc_issuer = $2, oidc_client_id = $3,
               oidc_nonce = $4, oidc_sealed = $5, updated_at = $6"
        )
        .bind(partner.to_string())
        .bind(issuer)
        .bind(client)
        .bind(nonce)
        .bind(sealed)
        .bind(micros(now))
        .execute(p)
        .await
        .map(|_| ())?
        });
        Ok(())
    }

    /// A partner's single sign-on: (issuer, client id, client secret
    /// opened). The secret only opens for the issuer and client id it was
    /// sealed with.
    pub async fn partner_oidc(
        &self,
        key: &SecretKey,
        partner: PartnerId,
    ) -> Result<Option<(String, String, Secret)>, StoreError> {
        type OidcRow = (
            Option<String>,
            Option<String>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
        );
        let row: Option<OidcRow> = with_db!(self, |p| {
            sqlx::query_as(
                "SELECT oidc_issuer, oidc_client_id, oidc_nonce, oidc_sealed FROM partner_signin WHERE partner_id = $1",
            )
            .bind(partner.to_string())
            .fetch_optional(p)
            .await?
        });
        match row {
            Some((Some(issuer), Some(client), Some(n), Some(c))) => {
                let secret = key.open(&n, &c, &oidc_aad(partner, &issuer, &client))?;
                Ok(Some((issuer, client, secret)))
            }
            _ => Ok(None),
        }
    }

    /// Claims a TOTP time step for an administrator: true when it is later
    /// than every step accepted before (a code is good once, RFC 6238
    /// section 5.2), false for a replay.
    pub async fn claim_totp_step(&self, id: AdminId, step: i64) -> Result<bool, StoreError> {
        let done = with_db!(self, |p| sqlx::query(
            "UPDATE administrators SET totp_last_step = $2
             WHERE admin_id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)"
        )
        .bind(id.to_string())
        .bind(step)
        .execute(p)
        .await?
        .rows_affected());
        Ok(done == 1)
    }

    /// Partners with single sign-on set up: (partner id, name, issuer).
    pub async fn sso_partners(&self) -> Result<Vec<(PartnerId, String, String)>, StoreError> {
        let rows: Vec<(String, String, String)> = with_db!(self, |p| sqlx::query_as(
            "SELECT s.partner_id, p.name, s.oidc_issuer FROM partner_signin s
             JOIN partners p ON p.partner_id = s.partner_id
             WHERE s.oidc_issuer IS NOT NULL ORDER BY p.name"
        )
        .fetch_all(p)
        .await?);
        rows.into_iter()
            .map(|(id, name, issuer)| Ok((PartnerId::parse(&id).map_err(corrupt)?, name, issuer)))
            .collect()
    }

    /// Keeps a single sign-on login under way, by the hash of its state.
    pub async fn put_sso_pending(
        &self,
        state: &str,
        partner: PartnerId,
        pending: &str,
        next: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        with_db!(self, |p| {
            sqlx::query(
            "INSERT INTO sso_pending (state_hash, partner_id, pending, next_path, created_at) VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(hash_token(state))
        .bind(partner.to_string())
        .bind(pending)
        .bind(next)
        .bind(micros(now))
        .execute(p)
        .await
        .map(|_| ())?
        });
        Ok(())
    }

    /// Takes (once) a login under way no older than `max_age`:
    /// (partner, pending, next path).
    pub async fn take_sso_pending(
        &self,
        state: &str,
        max_age: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<(PartnerId, String, String)>, StoreError> {
        let row: Option<(String, String, String, i64)> = with_db!(self, |p| {
            sqlx::query_as(
            "DELETE FROM sso_pending WHERE state_hash = $1 RETURNING partner_id, pending, next_path, created_at"
        )
        .bind(hash_token(state))
        .fetch_optional(p)
        .await?
        });
        match row {
            Some((partner, pending, next, created)) if from_micros(created) + max_age > now => Ok(
                Some((PartnerId::parse(&partner).map_err(corrupt)?, pending, next)),
            ),
            _ => Ok(None),
        }
    }
}

type SessionRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
);

const SESSION_COLUMNS: &str = "session_id, admin_id, stage, csrf, method, client_addr, user_agent, created_at, last_seen_at, revoked_at";

fn session_from_row(row: SessionRow) -> Result<Session, StoreError> {
    let (id, admin, stage, csrf, method, addr, ua, created, seen, revoked) = row;
    Ok(Session {
        session_id: id,
        admin_id: AdminId::parse(&admin).map_err(corrupt)?,
        stage: match stage.as_str() {
            "full" => Stage::Full,
            "totp" => Stage::Totp,
            other => return Err(corrupt(format!("a session has stage '{other}'"))),
        },
        csrf,
        method,
        client_addr: addr,
        user_agent: ua,
        created_at: from_micros(created),
        last_seen_at: from_micros(seen),
        revoked_at: revoked.map(from_micros),
    })
}
