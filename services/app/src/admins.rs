//! Administrators and their sign-in (T4, issue 14): passwords (argon2id),
//! TOTP (RFC 6238), throttling, sessions with idle and absolute timeouts,
//! one-time links. Every door (the console, the command line) goes through
//! here; the rows live in `roster_store::admins`.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use roster_events::{AdminId, PartnerId};
use roster_store::admins::{Admin, LinkKind, NewSession, Session, Stage};
use roster_store::auth::Scope;
use roster_store::security_log::SecurityKind;
use roster_store::{Db, Secret, SecretKey, StoreError};

use crate::security::{By, Entry};
use crate::{AppError, AppResult};

/// The sign-in settings (`ROSTER_CONSOLE_*`, see docs/admins.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// A session unused this long is over (default 30 minutes).
    pub idle: Duration,
    /// A session is over this long after sign-in, used or not (default 12 hours).
    pub absolute: Duration,
    /// How long an invitation link works (default 7 days).
    pub invite_ttl: Duration,
    /// How long a password-reset link works (default 1 hour).
    pub reset_ttl: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle: Duration::minutes(30),
            absolute: Duration::hours(12),
            invite_ttl: Duration::days(7),
            reset_ttl: Duration::hours(1),
        }
    }
}

/// The shortest and longest password accepted.
pub const PASSWORD_MIN: usize = 12;
pub const PASSWORD_MAX: usize = 1024;
/// How long the TOTP step of a sign-in may take after the password.
const TOTP_STEP_TTL: i64 = 5;

/// argon2id with OWASP's current parameters: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (argon2id, random salt).
pub fn hash_password(password: &str) -> AppResult<String> {
    check_password(password)?;
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(AppError::internal)?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(AppError::internal)
}

/// Whether `password` matches a PHC string (parameters read from it).
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash no password matches in practice: unknown emails are checked
/// against it, so that they take as long as known ones (no enumeration).
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("a 16-byte salt encodes");
    argon2()
        .hash_password(crate::admins::random_text().as_bytes(), &salt)
        .expect("argon2 hashes")
        .to_string()
});

fn random_text() -> String {
    roster_store::admins::random_secret()
}

/// The rules a new password must follow; the message says what to fix.
pub fn check_password(password: &str) -> AppResult<()> {
    let n = password.chars().count();
    if n < PASSWORD_MIN {
        return Err(AppError::invalid(format!(
            "the password must be at least {PASSWORD_MIN} characters long (it has {n})"
        )));
    }
    if n > PASSWORD_MAX {
        return Err(AppError::invalid(format!(
            "the password must be at most {PASSWORD_MAX} characters long"
        )));
    }
    Ok(())
}

/// A new TOTP secret: 160 random bits in base32 (RFC 4226's recommendation).
pub fn new_totp_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut bytes);
    totp_rs::Secret::Raw(bytes.to_vec())
        .to_encoded()
        .to_string()
}

fn totp(secret_b32: &str) -> Option<totp_rs::TOTP> {
    let bytes = totp_rs::Secret::Encoded(secret_b32.to_string())
        .to_bytes()
        .ok()?;
    // SHA-1, 6 digits, 30-second steps, one step of clock skew either way.
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes).ok()
}

/// Whether `code` is the TOTP of `secret` at `now`, give or take one
/// 30-second step (RFC 6238 section 5.2).
pub fn verify_totp(secret_b32: &str, code: &str, now: DateTime<Utc>) -> bool {
    totp_step(secret_b32, code, now).is_some()
}

/// The 30-second time step whose code `code` is, within one step either
/// way of `now` (RFC 6238 section 5.2): a sign-in claims it, so that the
/// same code cannot be used twice.
pub fn totp_step(secret_b32: &str, code: &str, now: DateTime<Utc>) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret_b32)?;
    let step = now.timestamp().div_euclid(30);
    [step, step - 1, step + 1].into_iter().find(|s| {
        u64::try_from(s * 30).is_ok_and(|time| {
            let want = t.generate(time);
            // Constant time: the comparison does not tell how much matched.
            want.len() == code.len()
                && want
                    .bytes()
                    .zip(code.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
    })
}

/// The TOTP code of `secret` at `now` (for tests and the enrolment check).
pub fn totp_code(secret_b32: &str, now: DateTime<Utc>) -> Option<String> {
    let time = u64::try_from(now.timestamp()).ok()?;
    totp(secret_b32).map(|t| t.generate(time))
}

/// The `otpauth://` URI an authenticator app reads from the QR code.
pub fn totp_uri(secret_b32: &str, email: &str, issuer: &str) -> String {
    let enc = |s: &str| {
        form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(email),
        enc(issuer)
    )
}

/// How long an account is blocked after its n-th failure in a row: the
/// first 3 are free, then 2, 4, 8, ... seconds, at most 15 minutes.
pub fn account_delay(failures: i64) -> Duration {
    growing(failures, 3)
}

/// The same per client address, which may serve several people: the
/// first 10 are free.
pub fn address_delay(failures: i64) -> Duration {
    growing(failures, 10)
}

fn growing(failures: i64, free: i64) -> Duration {
    if failures <= free {
        return Duration::zero();
    }
    let exp = (failures - free).min(10) as u32;
    Duration::seconds(2i64.pow(exp).min(900))
}

/// Failures older than this start the count anew.
const FORGET_AFTER: i64 = 60;

fn account_key(email: &str) -> String {
    format!("account:{}", roster_store::admins::normalise_email(email))
}

fn address_key(addr: &str) -> String {
    format!("address:{addr}")
}

/// Where a sign-in request comes from.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub addr: String,
    pub user_agent: String,
}

/// The outcome of a password sign-in.
#[derive(Debug)]
pub enum SignIn {
    /// Signed in: the cookie's secret and the session.
    Done {
        secret: String,
        session: Box<Session>,
        admin: Box<Admin>,
    },
    /// The password was right; the TOTP code comes next (a pending session).
    NeedTotp { secret: String },
    /// Wrong email or password (one message for both: no enumeration).
    Refused,
    /// Too many failures: try again after this many seconds.
    Throttled { retry_after: i64 },
}

/// The message people see for a refused sign-in.
pub const REFUSED: &str = "The email or password is not right.";

/// The administrators' side of the application.
#[derive(Clone)]
pub struct Admins {
    pub db: Db,
    pub key: SecretKey,
    pub settings: SessionSettings,
}

impl Admins {
    pub fn new(db: Db, key: SecretKey, settings: SessionSettings) -> Self {
        Admins { db, key, settings }
    }

    async fn throttled(&self, keys: &[String], now: DateTime<Utc>) -> AppResult<Option<i64>> {
        let mut wait = 0i64;
        for k in keys {
            if let Some(until) = self
                .db
                .throttle(k)
                .await?
                .blocked_until
                .filter(|u| *u > now)
            {
                // Whole seconds, rounded up.
                let ms = (until - now).num_milliseconds();
                wait = wait.max((ms + 999) / 1000);
            }
        }
        Ok((wait > 0).then_some(wait))
    }

    async fn fail(
        &self,
        email: &str,
        admin: Option<&Admin>,
        client: &Client,
        reason: &str,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        self.record(
            Entry {
                kind: SecurityKind::SignInFailed,
                about: admin,
                scope: None,
                actor: None,
                addr: &client.addr,
                email: Some(email.trim()),
                detail: reason.to_string(),
            },
            now,
        )
        .await?;
        let forget = Duration::minutes(FORGET_AFTER);
        self.db
            .record_failure(&account_key(email), now, forget, account_delay)
            .await?;
        self.db
            .record_failure(&address_key(&client.addr), now, forget, address_delay)
            .await?;
        metrics::counter!("roster_console_signin_failures_total").increment(1);
        tracing::info!(client = %client.addr, "a console sign-in failed");
        Ok(())
    }

    /// Signs in with email and password (step one).
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: &Client,
        now: DateTime<Utc>,
    ) -> AppResult<SignIn> {
        // No administrator's email holds a control character (check_email),
        // and PostgreSQL refuses NUL in text: such an email is refused as an
        // unknown one (the same answer, the same argon2 time), shown escaped.
        let escaped;
        let (email, lookup) = if email.chars().any(char::is_control) {
            escaped = email.escape_debug().to_string();
            (escaped.as_str(), false)
        } else {
            (email, true)
        };
        let keys = [account_key(email), address_key(&client.addr)];
        if let Some(retry_after) = self.throttled(&keys, now).await? {
            return Ok(SignIn::Throttled { retry_after });
        }
        let admin = if lookup {
            self.db.admin_by_email(email).await?
        } else {
            None
        };
        let usable = admin
            .as_ref()
            .filter(|a| a.disabled_at.is_none())
            .and_then(|a| a.password_hash.clone());
        let hash = usable.clone().unwrap_or_else(|| DUMMY_HASH.clone());
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &pw))
            .await
            .map_err(AppError::internal)?;
        let admin = match admin {
            Some(a) if ok && usable.is_some() => a,
            _ => {
                let reason = match &admin {
                    None => "no administrator has this email",
                    Some(a) if a.disabled_at.is_some() => "the administrator is disabled",
                    Some(a) if a.password_hash.is_none() => "the invitation is not accepted yet",
                    Some(_) => "wrong password",
                };
                self.fail(email, admin.as_ref(), client, reason, now)
                    .await?;
                return Ok(SignIn::Refused);
            }
        };
        self.db.clear_throttle(&keys[0]).await?;
        if admin.totp_enabled {
            let (secret, _) = self
                .start(&admin, Stage::Totp, "password", client, now)
                .await?;
            return Ok(SignIn::NeedTotp { secret });
        }
        let (secret, session) = self
            .start(&admin, Stage::Full, "password", client, now)
            .await?;
        self.signed_in(&admin, "password", client, now).await?;
        Ok(SignIn::Done {
            secret,
            session: Box::new(session),
            admin: Box::new(admin),
        })
    }

    async fn signed_in(
        &self,
        admin: &Admin,
        method: &str,
        client: &Client,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let by = By::admin(admin.admin_id, &client.addr);
        self.record(
            Entry::about(SecurityKind::SignedIn, admin, &by).detail(method),
            now,
        )
        .await
    }

    async fn start(
        &self,
        admin: &Admin,
        stage: Stage,
        method: &str,
        client: &Client,
        now: DateTime<Utc>,
    ) -> AppResult<(String, Session)> {
        Ok(self
            .db
            .create_session(
                NewSession {
                    admin_id: admin.admin_id,
                    stage,
                    method,
                    client_addr: &client.addr,
                    user_agent: &client.user_agent,
                },
                now,
            )
            .await?)
    }

    /// A session for an administrator signed in by single sign-on (the
    /// provider did the authentication; a disabled administrator is refused).
    pub async fn sign_in_sso(
        &self,
        admin: &Admin,
        client: &Client,
        now: DateTime<Utc>,
    ) -> AppResult<(String, Session)> {
        if admin.disabled_at.is_some() {
            return Err(AppError::forbidden("this administrator is disabled"));
        }
        let started = self.start(admin, Stage::Full, "sso", client, now).await?;
        self.signed_in(admin, "sso", client, now).await?;
        Ok(started)
    }

    /// Step two: the TOTP code of a pending session. On success the
    /// pending session ends and a new one starts (a new cookie).
    pub async fn sign_in_totp(
        &self,
        pending: &str,
        code: &str,
        client: &Client,
        now: DateTime<Utc>,
    ) -> AppResult<SignIn> {
        let Some(session) = self.db.session(pending).await? else {
            return Ok(SignIn::Refused);
        };
        let fresh = now - session.created_at < Duration::minutes(TOTP_STEP_TTL);
        if session.stage != Stage::Totp || session.revoked_at.is_some() || !fresh {
            return Ok(SignIn::Refused);
        }
        let Some(admin) = self.db.admin(session.admin_id).await? else {
            return Ok(SignIn::Refused);
        };
        let keys = [account_key(&admin.email), address_key(&client.addr)];
        if let Some(retry_after) = self.throttled(&keys, now).await? {
            return Ok(SignIn::Throttled { retry_after });
        }
        let secret = self.db.admin_totp(&self.key, admin.admin_id).await?;
        let step = secret.and_then(|s| totp_step(s.expose(), code, now));
        // A code is good once: its step must be later than the last one
        // accepted (RFC 6238 section 5.2).
        let fresh = match step {
            Some(step) if admin.disabled_at.is_none() => {
                self.db.claim_totp_step(admin.admin_id, step).await?
            }
            _ => false,
        };
        if !fresh {
            let reason = if step.is_some() {
                "a TOTP code used before"
            } else {
                "wrong TOTP code"
            };
            self.fail(&admin.email, Some(&admin), client, reason, now)
                .await?;
            return Ok(SignIn::Refused);
        }
        self.db.clear_throttle(&keys[0]).await?;
        self.db.revoke_session(pending, now).await?;
        let (secret, session) = self.start(&admin, Stage::Full, "totp", client, now).await?;
        self.signed_in(&admin, "password and TOTP", client, now)
            .await?;
        Ok(SignIn::Done {
            secret,
            session: Box::new(session),
            admin: Box::new(admin),
        })
    }

    /// The signed-in administrator of a cookie's secret: the session must
    /// be complete, not revoked, used within the idle timeout and younger
    /// than the absolute one, its administrator not disabled. Notes the use.
    pub async fn current(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> AppResult<Option<(Session, Admin)>> {
        let Some(session) = self.db.session(secret).await? else {
            return Ok(None);
        };
        if !self.live(&session, now) {
            return Ok(None);
        }
        let Some(admin) = self.db.admin(session.admin_id).await? else {
            return Ok(None);
        };
        if admin.disabled_at.is_some() {
            return Ok(None);
        }
        // One write a minute at most per session.
        if now - session.last_seen_at > Duration::seconds(60) {
            self.db.touch_session(secret, now).await?;
        }
        Ok(Some((session, admin)))
    }

    /// Whether a session is signed in and within both timeouts at `now`.
    pub fn live(&self, session: &Session, now: DateTime<Utc>) -> bool {
        session.stage == Stage::Full
            && session.revoked_at.is_none()
            && now - session.last_seen_at < self.settings.idle
            && now - session.created_at < self.settings.absolute
    }

    /// Ends the session of a cookie's secret (sign out).
    pub async fn sign_out(&self, secret: &str, addr: &str, now: DateTime<Utc>) -> AppResult<()> {
        let Some(session) = self.db.session(secret).await? else {
            return Ok(());
        };
        self.db.revoke_session(secret, now).await?;
        if session.revoked_at.is_none() {
            if let Some(admin) = self.db.admin(session.admin_id).await? {
                let by = By::admin(admin.admin_id, addr);
                self.record(Entry::about(SecurityKind::SignedOut, &admin, &by), now)
                    .await?;
            }
        }
        Ok(())
    }

    /// "Sign out everywhere": every session of the administrator.
    pub async fn sign_out_everywhere(
        &self,
        admin: &Admin,
        by: &By,
        now: DateTime<Utc>,
    ) -> AppResult<u64> {
        let n = self
            .db
            .revoke_admin_sessions(admin.admin_id, None, now)
            .await?;
        self.record(
            Entry::about(SecurityKind::SignedOutEverywhere, admin, by)
                .detail(format!("{n} sessions ended")),
            now,
        )
        .await?;
        Ok(n)
    }

    /// Ends one session of the administrator (by its public id).
    pub async fn end_session(
        &self,
        admin: &Admin,
        session_id: &str,
        by: &By,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let n = self
            .db
            .revoke_admin_sessions(admin.admin_id, Some(session_id), now)
            .await?;
        if n > 0 {
            self.record(
                Entry::about(SecurityKind::SessionEnded, admin, by)
                    .detail(format!("session {session_id}")),
                now,
            )
            .await?;
        }
        Ok(())
    }

    /// The administrator's sessions still within their timeouts.
    pub async fn sessions(&self, admin: AdminId, now: DateTime<Utc>) -> AppResult<Vec<Session>> {
        let all = self.db.admin_sessions(admin).await?;
        Ok(all.into_iter().filter(|s| self.live(s, now)).collect())
    }

    /// Adds an administrator, without a password when `password` is `None`
    /// (an invitation link sets it). The email must be new.
    pub async fn add(
        &self,
        email: &str,
        display_name: &str,
        scope: Scope,
        password: Option<&str>,
        by: &By,
        now: DateTime<Utc>,
    ) -> AppResult<AdminId> {
        let email = check_email(email)?;
        let name = display_name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(AppError::invalid(
                "the display name must be 1 to 200 characters, without control characters",
            ));
        }
        self.check_scope(scope).await?;
        let hash = match password {
            Some(p) => Some(hash_password(p)?),
            None => None,
        };
        let id = match self
            .db
            .create_admin(&email, name, scope, hash.as_deref(), now)
            .await
        {
            Err(StoreError::Conflict) => {
                return Err(AppError::conflict(
                    "admin_exists",
                    format!("an administrator with the email {email} already exists"),
                ))
            }
            other => other?,
        };
        let admin = self.stored(id).await?;
        let kind = if password.is_some() {
            SecurityKind::AdminAdded
        } else {
            SecurityKind::AdminInvited
        };
        self.record(Entry::about(kind, &admin, by), now).await?;
        Ok(id)
    }

    /// An administrator by id (an internal error when it is gone: callers
    /// hold an id they have just read or written).
    async fn stored(&self, id: AdminId) -> AppResult<Admin> {
        self.db
            .admin(id)
            .await?
            .ok_or_else(|| AppError::not_found(format!("no administrator {id}")))
    }

    async fn check_scope(&self, scope: Scope) -> AppResult<()> {
        let exists = match scope {
            Scope::Partner(p) => self.db.partner_exists(p).await?,
            Scope::Customer(c) => self.db.customer_partner(c).await?.is_some(),
        };
        if exists {
            Ok(())
        } else {
            Err(AppError::not_found(match scope {
                Scope::Partner(p) => format!("no partner {p}"),
                Scope::Customer(c) => format!("no customer {c}"),
            }))
        }
    }

    /// A one-time link for an administrator (an invitation sets the first
    /// password, a reset a new one): the secret, shown once.
    pub async fn issue_link(
        &self,
        admin: AdminId,
        kind: LinkKind,
        by: &By,
        now: DateTime<Utc>,
    ) -> AppResult<String> {
        let ttl = match kind {
            LinkKind::Invite => self.settings.invite_ttl,
            LinkKind::Reset => self.settings.reset_ttl,
        };
        let target = self.stored(admin).await?;
        let secret = self.db.issue_link(admin, kind, ttl, now).await?;
        self.record(
            Entry::about(SecurityKind::LinkIssued, &target, by).detail(match kind {
                LinkKind::Invite => "invitation link",
                LinkKind::Reset => "password reset link",
            }),
            now,
        )
        .await?;
        Ok(secret)
    }

    /// Sets a password through a one-time link; the link is used up and
    /// every session of the administrator ends.
    pub async fn redeem_link(
        &self,
        secret: &str,
        kind: LinkKind,
        password: &str,
        addr: &str,
        now: DateTime<Utc>,
    ) -> AppResult<Admin> {
        let hash = hash_password(password)?;
        let admin = self
            .db
            .consume_link(secret, kind, now)
            .await?
            .ok_or_else(link_gone)?;
        self.db.set_admin_password(admin, &hash).await?;
        self.db.revoke_admin_sessions(admin, None, now).await?;
        let admin = self.db.admin(admin).await?.ok_or_else(link_gone)?;
        let by = By::admin(admin.admin_id, addr);
        self.record(
            Entry::about(SecurityKind::PasswordSet, &admin, &by).detail(match kind {
                LinkKind::Invite => "by invitation link",
                LinkKind::Reset => "by password reset link",
            }),
            now,
        )
        .await?;
        Ok(admin)
    }

    /// Changes a signed-in administrator's password (the current one first).
    pub async fn change_password(
        &self,
        admin: &Admin,
        current: &str,
        new: &str,
        by: &By,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let ok = admin
            .password_hash
            .as_deref()
            .is_some_and(|h| verify_password(h, current));
        if !ok {
            return Err(AppError::invalid("the current password is not right"));
        }
        let hash = hash_password(new)?;
        self.db.set_admin_password(admin.admin_id, &hash).await?;
        self.record(Entry::about(SecurityKind::PasswordChanged, admin, by), now)
            .await
    }

    /// Turns TOTP on once the administrator has typed a code of the new
    /// secret (proof the app has it).
    pub async fn enable_totp(
        &self,
        admin: &Admin,
        secret_b32: &str,
        code: &str,
        by: &By,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let Some(step) = totp_step(secret_b32, code, now) else {
            return Err(AppError::invalid(
                "that code does not match: type the 6-digit code your authenticator app shows now",
            ));
        };
        self.db
            .set_admin_totp(&self.key, admin.admin_id, Some(&Secret::new(secret_b32)))
            .await?;
        // The code typed to enrol is used up too.
        self.db.claim_totp_step(admin.admin_id, step).await?;
        self.record(Entry::about(SecurityKind::TotpEnabled, admin, by), now)
            .await
    }

    pub async fn disable_totp(&self, admin: &Admin, by: &By, now: DateTime<Utc>) -> AppResult<()> {
        self.db
            .set_admin_totp(&self.key, admin.admin_id, None)
            .await?;
        self.record(Entry::about(SecurityKind::TotpDisabled, admin, by), now)
            .await
    }

    /// Whether the administrator's partner requires TOTP (customer
    /// administrators follow their customer's partner).
    pub async fn totp_required(&self, admin: &Admin) -> AppResult<bool> {
        let partner = self.partner_of(admin.scope).await?;
        Ok(match partner {
            Some(p) => self.db.signin_policy(p).await?.require_totp,
            None => false,
        })
    }

    /// The partner a scope belongs to.
    pub async fn partner_of(&self, scope: Scope) -> AppResult<Option<PartnerId>> {
        Ok(match scope {
            Scope::Partner(p) => Some(p),
            Scope::Customer(c) => self.db.customer_partner(c).await?,
        })
    }
}

fn link_gone() -> AppError {
    AppError::Gone {
        code: "link_expired",
        message: "this link has expired or was already used: ask an administrator for a new one"
            .into(),
    }
}

/// An administrator's email: trimmed, lower case, one `@` with text on
/// both sides and a dot in the domain.
pub fn check_email(email: &str) -> AppResult<String> {
    let e = roster_store::admins::normalise_email(email);
    let ok = e.len() <= 254
        && !e.chars().any(|c| c.is_control() || c.is_whitespace())
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'));
    if ok {
        Ok(e)
    } else {
        Err(AppError::invalid(format!(
            "'{}' is not an email address",
            email.trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T4: passwords are argon2id with OWASP's parameters, and verify.
    #[test]
    fn t4_argon2id_hash_verifies_and_names_its_parameters() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse battery "));
        assert!(!verify_password("not a hash", "x"));
        assert!(hash_password("short").is_err());
    }

    /// T4: RFC 6238 codes verify within one step either way, not beyond.
    #[test]
    fn t4_totp_window_is_one_step_either_way() {
        let secret = new_totp_secret();
        let now = Utc::now();
        let code = totp_code(&secret, now).unwrap();
        assert!(verify_totp(&secret, &code, now));
        assert!(verify_totp(&secret, &code, now + Duration::seconds(30)));
        assert!(verify_totp(&secret, &code, now - Duration::seconds(30)));
        assert!(!verify_totp(&secret, &code, now + Duration::seconds(95)));
        assert!(!verify_totp(&secret, "12345", now));
        assert!(!verify_totp(&secret, "abcdef", now));
    }

    /// RFC 6238 appendix B: the SHA-1 test vector (secret "12345678901234567890").
    #[test]
    fn t4_totp_matches_rfc6238_test_vector() {
        let secret = totp_rs::Secret::Raw(b"12345678901234567890".to_vec())
            .to_encoded()
            .to_string();
        let t = DateTime::from_timestamp(59, 0).unwrap();
        // 94287082 in the RFC's 8 digits; six digits keep the last six.
        assert_eq!(totp_code(&secret, t).unwrap(), "287082");
    }

    /// T4: throttling delays grow with each failure and are capped.
    #[test]
    fn t4_throttle_delays_grow_and_are_capped() {
        assert_eq!(account_delay(1), Duration::zero());
        assert_eq!(account_delay(3), Duration::zero());
        assert_eq!(account_delay(4), Duration::seconds(2));
        assert_eq!(account_delay(5), Duration::seconds(4));
        assert!(account_delay(8) > account_delay(7));
        assert_eq!(account_delay(100), Duration::seconds(900));
        assert_eq!(address_delay(10), Duration::zero());
        assert_eq!(address_delay(11), Duration::seconds(2));
    }

    #[test]
    fn emails_are_checked_and_normalised() {
        assert_eq!(check_email(" Ann@Example.COM ").unwrap(), "ann@example.com");
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}
