//! The console's security log (T4, issue 14): who signed in, who failed,
//! who signed out, and every change to administrators, their passwords and
//! second factors, API tokens and a partner's sign-in policy. Append-only
//! (`migrations/*/0650_security_events.sql`: triggers refuse updates and
//! deletes).
//!
//! These facts are about people's accounts, not about the users of a
//! customer, and most belong to a partner rather than to one customer, so
//! they live here and not in the customer-keyed event log; the console's
//! changes to customers, domains and users are events of the log with the
//! administrator as actor (E2).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use roster_events::{Actor, AdminId, CustomerId, PartnerId};
use uuid::Uuid;

use crate::{from_micros, micros, with_db, Db, StoreError};

/// What happened. The stored names are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityKind {
    SignedIn,
    SignInFailed,
    SignedOut,
    SessionEnded,
    SignedOutEverywhere,
    AdminAdded,
    AdminInvited,
    LinkIssued,
    PasswordSet,
    PasswordChanged,
    TotpEnabled,
    TotpDisabled,
    AdminDisabled,
    TokenCreated,
    TokenRevoked,
    TotpPolicyChanged,
    SsoConfigured,
    SsoRemoved,
}

impl SecurityKind {
    pub const ALL: [SecurityKind; 18] = [
        SecurityKind::SignedIn,
        SecurityKind::SignInFailed,
        SecurityKind::SignedOut,
        SecurityKind::SessionEnded,
        SecurityKind::SignedOutEverywhere,
        SecurityKind::AdminAdded,
        SecurityKind::AdminInvited,
        SecurityKind::LinkIssued,
        SecurityKind::PasswordSet,
        SecurityKind::PasswordChanged,
        SecurityKind::TotpEnabled,
        SecurityKind::TotpDisabled,
        SecurityKind::AdminDisabled,
        SecurityKind::TokenCreated,
        SecurityKind::TokenRevoked,
        SecurityKind::TotpPolicyChanged,
        SecurityKind::SsoConfigured,
        SecurityKind::SsoRemoved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SecurityKind::SignedIn => "AdminSignedIn",
            SecurityKind::SignInFailed => "AdminSignInFailed",
            SecurityKind::SignedOut => "AdminSignedOut",
            SecurityKind::SessionEnded => "AdminSessionEnded",
            SecurityKind::SignedOutEverywhere => "AdminSignedOutEverywhere",
            SecurityKind::AdminAdded => "AdminAdded",
            SecurityKind::AdminInvited => "AdminInvited",
            SecurityKind::LinkIssued => "AdminLinkIssued",
            SecurityKind::PasswordSet => "AdminPasswordSet",
            SecurityKind::PasswordChanged => "AdminPasswordChanged",
            SecurityKind::TotpEnabled => "AdminTotpEnabled",
            SecurityKind::TotpDisabled => "AdminTotpDisabled",
            SecurityKind::AdminDisabled => "AdminDisabled",
            SecurityKind::TokenCreated => "ApiTokenCreated",
            SecurityKind::TokenRevoked => "ApiTokenRevoked",
            SecurityKind::TotpPolicyChanged => "SignInPolicyChanged",
            SecurityKind::SsoConfigured => "SingleSignOnConfigured",
            SecurityKind::SsoRemoved => "SingleSignOnRemoved",
        }
    }
}

impl fmt::Display for SecurityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SecurityKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecurityKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("'{s}' is not a security event type"))
    }
}

/// One row of the security log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    pub event_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub kind: SecurityKind,
    /// The partner whose administrators see it (`None`: a failed sign-in
    /// for an email no administrator has).
    pub partner_id: Option<PartnerId>,
    /// Set when the administrator concerned is a customer administrator.
    pub customer_id: Option<CustomerId>,
    /// Who did it (`None`: somebody not signed in, such as a failed sign-in).
    pub actor: Option<Actor>,
    /// The administrator it is about.
    pub admin_id: Option<AdminId>,
    /// The email it is about (also the one typed at a failed sign-in).
    pub email: Option<String>,
    /// The client address of the request, or `cli`.
    pub client_addr: String,
    /// What else there is to say: a method, a reason, a token's label.
    pub detail: String,
}

/// Which rows to read, newest first.
#[derive(Debug, Clone, Copy)]
pub enum SecurityScope {
    Partner(PartnerId),
    Customer(CustomerId),
    /// Everything (the operator's `roster admin log`).
    All,
}

type Row = (
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
);

fn corrupt(e: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("security_events: {e}"))
}

fn from_row(r: Row) -> Result<SecurityEvent, StoreError> {
    let (id, at, kind, partner, customer, actor, admin, email, addr, detail) = r;
    Ok(SecurityEvent {
        event_id: Uuid::parse_str(&id).map_err(corrupt)?,
        recorded_at: from_micros(at),
        kind: kind.parse().map_err(corrupt)?,
        partner_id: partner
            .map(|p| PartnerId::parse(&p))
            .transpose()
            .map_err(corrupt)?,
        customer_id: customer
            .map(|c| CustomerId::parse(&c))
            .transpose()
            .map_err(corrupt)?,
        actor: actor.map(|a| a.parse()).transpose().map_err(corrupt)?,
        admin_id: admin
            .map(|a| AdminId::parse(&a))
            .transpose()
            .map_err(corrupt)?,
        email,
        client_addr: addr,
        detail,
    })
}

impl Db {
    /// Appends one row to the security log.
    pub async fn record_security_event(&self, e: &SecurityEvent) -> Result<(), StoreError> {
        with_db!(self, |p| {
            sqlx::query(
            "INSERT INTO security_events (event_id, recorded_at, event_type, partner_id, customer_id,
               actor, admin_id, email, client_addr, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )
        .bind(e.event_id.to_string())
        .bind(micros(e.recorded_at))
        .bind(e.kind.as_str())
        .bind(e.partner_id.map(|p| p.to_string()))
        .bind(e.customer_id.map(|c| c.to_string()))
        .bind(e.actor.as_ref().map(ToString::to_string))
        .bind(e.admin_id.map(|a| a.to_string()))
        .bind(e.email.as_deref())
        .bind(&e.client_addr)
        .bind(&e.detail)
        .execute(p)
        .await
        .map(|_| ())?
        });
        Ok(())
    }

    /// The newest `limit` rows of a scope recorded before `before` (a page
    /// cursor: the `(recorded_at, event_id)` of the last row of the
    /// previous page), newest first.
    pub async fn security_events(
        &self,
        scope: SecurityScope,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        let (filter, key) = match scope {
            SecurityScope::Partner(p) => ("partner_id = $1", p.to_string()),
            SecurityScope::Customer(c) => ("customer_id = $1", c.to_string()),
            SecurityScope::All => ("$1 = $1", String::new()),
        };
        let (at, id) = before
            .map(|(t, id)| (micros(t), id.to_string()))
            .unwrap_or((i64::MAX, String::new()));
        let sql = format!(
            "SELECT event_id, recorded_at, event_type, partner_id, customer_id, actor, admin_id,
               email, client_addr, detail FROM security_events
             WHERE {filter} AND (recorded_at < $2 OR (recorded_at = $2 AND ($3 = '' OR event_id < $3)))
             ORDER BY recorded_at DESC, event_id DESC LIMIT $4"
        );
        let rows: Vec<Row> = with_db!(self, |p| sqlx::query_as(&sql)
            .bind(key)
            .bind(at)
            .bind(id)
            .bind(limit)
            .fetch_all(p)
            .await?);
        rows.into_iter().map(from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::SecurityKind;

    #[test]
    fn t4_security_event_names_round_trip() {
        for k in SecurityKind::ALL {
            assert_eq!(k.as_str().parse::<SecurityKind>().unwrap(), k);
        }
        assert!("Nope".parse::<SecurityKind>().is_err());
    }
}
