//! The security log of the console (T4, issue 14), written by every
//! [`Admins`] command that signs somebody in or out or changes an
//! administrator, a token or a sign-in policy; and those changes that had
//! no application command of their own (disabling an administrator, API
//! tokens, the TOTP policy), so that the console and the command line make
//! the same change the same way.

use chrono::{DateTime, Utc};
use roster_events::{Actor, AdminId, PartnerId, TokenId};
use roster_projections::Cursor;
use roster_store::admins::Admin;
use roster_store::auth::{IssuedToken, Scope, TokenInfo};
use roster_store::security_log::{SecurityEvent, SecurityKind, SecurityScope};
use roster_store::Db;
use uuid::Uuid;

use crate::admins::Admins;
use crate::{AppError, AppResult};

/// Who makes a change, and from where (the security log's actor and
/// client address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct By {
    pub actor: Actor,
    pub addr: String,
}

impl By {
    /// A signed-in administrator, from a client address.
    pub fn admin(id: AdminId, addr: &str) -> By {
        By {
            actor: Actor::Admin(id),
            addr: addr.to_string(),
        }
    }

    /// The operator at the command line (`roster admin ...`, `roster token ...`).
    pub fn cli() -> By {
        By {
            actor: Actor::System("cli".into()),
            addr: "cli".into(),
        }
    }
}

/// One row to append: what happened, about whom, in which scope.
pub(crate) struct Entry<'a> {
    pub kind: SecurityKind,
    /// The administrator it is about (its scope places the row).
    pub about: Option<&'a Admin>,
    /// The scope when no administrator is concerned (a token, a policy).
    pub scope: Option<Scope>,
    /// `None`: somebody not signed in.
    pub actor: Option<Actor>,
    pub addr: &'a str,
    /// The email typed at a failed sign-in for an unknown account.
    pub email: Option<&'a str>,
    pub detail: String,
}

impl<'a> Entry<'a> {
    pub fn about(kind: SecurityKind, admin: &'a Admin, by: &'a By) -> Entry<'a> {
        Entry {
            kind,
            about: Some(admin),
            scope: None,
            actor: Some(by.actor.clone()),
            addr: &by.addr,
            email: None,
            detail: String::new(),
        }
    }

    /// About a scope rather than one administrator (a token, a policy).
    pub fn scoped(kind: SecurityKind, scope: Scope, by: &'a By) -> Entry<'a> {
        Entry {
            kind,
            about: None,
            scope: Some(scope),
            actor: Some(by.actor.clone()),
            addr: &by.addr,
            email: None,
            detail: String::new(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Entry<'a> {
        self.detail = detail.into();
        self
    }
}

/// A page of the security log: its rows, newest first, and the cursor of
/// the next (older) page.
#[derive(Debug, Clone)]
pub struct SecurityPage {
    pub events: Vec<SecurityEvent>,
    pub next: Option<String>,
}

/// The largest page of the security log.
pub const SECURITY_PAGE_MAX: i64 = 200;

/// The page token after `e` (the one keyset cursor of every list).
fn encode_cursor(e: &SecurityEvent) -> String {
    Cursor::after(&[
        &e.recorded_at.timestamp_micros().to_string(),
        &e.event_id.to_string(),
    ])
    .into()
}

fn decode_cursor(raw: &str) -> AppResult<(DateTime<Utc>, Uuid)> {
    let bad = || {
        AppError::invalid("the page cursor is not one this log gave: follow the 'Older' link again")
    };
    let [at, id] = Cursor::read::<2>(raw).map_err(|_| bad())?;
    let at = Cursor::number(&at)
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    let id = Uuid::try_parse(&id).map_err(|_| bad())?;
    Ok((at, id))
}

/// Text for the log: control characters (NUL, which PostgreSQL refuses,
/// among them) escaped.
fn printable(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.escape_debug().to_string()
    } else {
        s.to_string()
    }
}

/// Appends one row to the security log, placed in the partner (and
/// customer) of the administrator or scope it is about.
pub(crate) async fn record(db: &Db, e: Entry<'_>, now: DateTime<Utc>) -> AppResult<()> {
    let scope = e.about.map(|a| a.scope).or(e.scope);
    let (partner_id, customer_id) = match scope {
        Some(Scope::Partner(p)) => (Some(p), None),
        Some(Scope::Customer(c)) => (db.customer_partner(c).await?, Some(c)),
        None => (None, None),
    };
    let row = SecurityEvent {
        event_id: Uuid::now_v7(),
        recorded_at: now,
        kind: e.kind,
        partner_id,
        customer_id,
        actor: e.actor,
        admin_id: e.about.map(|a| a.admin_id),
        email: e
            .about
            .map(|a| a.email.clone())
            .or_else(|| e.email.map(|m| printable(m).chars().take(254).collect())),
        client_addr: printable(e.addr),
        detail: printable(&e.detail),
    };
    db.record_security_event(&row).await?;
    tracing::info!(
        event = row.kind.as_str(),
        admin_id = ?row.admin_id,
        actor = ?row.actor.as_ref().map(ToString::to_string),
        client = %row.client_addr,
        "security event"
    );
    Ok(())
}

/// Creates an API token of `scope`, labelled; its secret is in the answer
/// only. (The command line calls this without the secrets key.)
pub async fn create_token(
    db: &Db,
    by: &By,
    scope: Scope,
    label: &str,
    now: DateTime<Utc>,
) -> AppResult<IssuedToken> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "give the token a label of 1 to 100 characters that says which machine uses it",
        ));
    }
    let issued = db.issue_token(scope, label, now).await?;
    let entry = Entry::scoped(SecurityKind::TokenCreated, scope, by)
        .detail(format!("token {} \"{label}\"", issued.token_id));
    record(db, entry, now).await?;
    Ok(issued)
}

/// Revokes an API token; false when it was already revoked.
pub async fn revoke_token(
    db: &Db,
    by: &By,
    token: &TokenInfo,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let done = db.revoke_token(token.token_id, now).await?;
    if done {
        let entry = Entry::scoped(SecurityKind::TokenRevoked, token.scope, by)
            .detail(format!("token {} \"{}\"", token.token_id, token.label));
        record(db, entry, now).await?;
    }
    Ok(done)
}

impl Admins {
    pub(crate) async fn record(&self, e: Entry<'_>, now: DateTime<Utc>) -> AppResult<()> {
        record(&self.db, e, now).await
    }

    /// The security log of a scope, newest first: a partner administrator
    /// sees the partner's and its customers' administrators; a customer
    /// administrator its customer's. `None` reads everything (the operator).
    pub async fn security_log(
        &self,
        scope: Option<Scope>,
        cursor: Option<&str>,
        limit: i64,
    ) -> AppResult<SecurityPage> {
        let before = cursor.map(decode_cursor).transpose()?;
        let limit = limit.clamp(1, SECURITY_PAGE_MAX);
        let scope = match scope {
            Some(Scope::Partner(p)) => SecurityScope::Partner(p),
            Some(Scope::Customer(c)) => SecurityScope::Customer(c),
            None => SecurityScope::All,
        };
        let mut events = self.db.security_events(scope, before, limit + 1).await?;
        let next = if events.len() as i64 > limit {
            events.truncate(limit as usize);
            events.last().map(encode_cursor)
        } else {
            None
        };
        Ok(SecurityPage { events, next })
    }

    /// Disables an administrator and ends its sessions. Nobody disables
    /// themselves (another administrator must).
    pub async fn disable(&self, by: &By, target: &Admin, now: DateTime<Utc>) -> AppResult<bool> {
        if by.actor == Actor::Admin(target.admin_id) {
            return Err(AppError::invalid(
                "you cannot disable yourself; ask another administrator",
            ));
        }
        let changed = self.db.disable_admin(target.admin_id, now).await?;
        if changed {
            self.record(Entry::about(SecurityKind::AdminDisabled, target, by), now)
                .await?;
        }
        Ok(changed)
    }

    /// Creates an API token of `scope` ([`create_token`]).
    pub async fn create_token(
        &self,
        by: &By,
        scope: Scope,
        label: &str,
        now: DateTime<Utc>,
    ) -> AppResult<IssuedToken> {
        create_token(&self.db, by, scope, label, now).await
    }

    /// Revokes an API token ([`revoke_token`]).
    pub async fn revoke_token(
        &self,
        by: &By,
        token: &TokenInfo,
        now: DateTime<Utc>,
    ) -> AppResult<bool> {
        revoke_token(&self.db, by, token, now).await
    }

    /// The tokens of a scope (a partner's includes its customers' tokens).
    pub async fn tokens(&self, scope: Scope) -> AppResult<Vec<TokenInfo>> {
        let mut out = Vec::new();
        for t in self.db.list_tokens().await? {
            if self.reaches(scope, t.scope).await? {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// One token of a scope, or not found (also for a token outside it, T1).
    pub async fn token(&self, scope: Scope, id: TokenId) -> AppResult<TokenInfo> {
        let t = self
            .db
            .list_tokens()
            .await?
            .into_iter()
            .find(|t| t.token_id == id);
        match t {
            Some(t) if self.reaches(scope, t.scope).await? => Ok(t),
            _ => Err(AppError::not_found(format!("no token {id}"))),
        }
    }

    /// Whether `scope` reaches `target` (T1): a partner reaches itself and
    /// its customers, a customer only itself.
    pub async fn reaches(&self, scope: Scope, target: Scope) -> AppResult<bool> {
        Ok(match (scope, target) {
            (Scope::Partner(p), Scope::Partner(q)) => p == q,
            (Scope::Partner(p), Scope::Customer(c)) => {
                self.db.customer_partner(c).await? == Some(p)
            }
            (Scope::Customer(c), Scope::Customer(d)) => c == d,
            (Scope::Customer(_), Scope::Partner(_)) => false,
        })
    }

    /// Requires (or not) TOTP of every administrator of a partner and its
    /// customers.
    pub async fn set_require_totp(
        &self,
        by: &By,
        partner: PartnerId,
        require: bool,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        self.db.set_require_totp(partner, require, now).await?;
        let entry = Entry::scoped(SecurityKind::TotpPolicyChanged, Scope::Partner(partner), by)
            .detail(if require {
                "two-step verification required"
            } else {
                "two-step verification optional"
            });
        self.record(entry, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t4_security_log_cursor_round_trips_and_refuses_garbage() {
        let e = SecurityEvent {
            event_id: Uuid::now_v7(),
            recorded_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            kind: SecurityKind::SignedIn,
            partner_id: None,
            customer_id: None,
            actor: None,
            admin_id: None,
            email: None,
            client_addr: "127.0.0.1".into(),
            detail: String::new(),
        };
        let (at, id) = decode_cursor(&encode_cursor(&e)).unwrap();
        assert_eq!((at, id), (e.recorded_at, e.event_id));
        for bad in ["", "x", "1.2", "abc.0190a5a8-7b1e-7c3e-8f4a-1234567890ab"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
