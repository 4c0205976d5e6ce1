//! Single sign-on for a partner's administrators through the partner's
//! OpenID provider (T4, issue 14): the settings (issuer, client id, a
//! client secret sealed to both), and the sign-in (authorization code flow
//! with PKCE, state and nonce; [`roster_oidc`] checks the ID token). The
//! provider's email claim maps to an existing administrator of the
//! partner or of one of its customers: nobody is created by signing in.
//!
//! The provider authenticates the person, so a partner's "require TOTP"
//! policy does not add Roster's own second factor to a single sign-on (the
//! provider's policy decides it).

use chrono::{DateTime, Utc};
use roster_events::PartnerId;
use roster_oidc::{OidcConfig, OidcError, PendingLogin, Provider};
use roster_store::admins::{Admin, Session};
use roster_store::auth::Scope;
use roster_store::security_log::SecurityKind;
use roster_store::Secret;

use crate::admins::{Admins, Client};
use crate::security::{By, Entry};
use crate::{AppError, AppResult};

/// A partner's single sign-on as shown to its administrators (never the
/// secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoSettings {
    pub issuer: String,
    pub client_id: String,
}

/// The answer to a provider's redirect back to Roster.
#[derive(Debug)]
pub enum SsoSignIn {
    /// Signed in: the cookie's secret, the session, and where to go next.
    Done {
        secret: String,
        session: Box<Session>,
        next: String,
    },
    /// Not signed in; the message says why and what to do.
    Refused { message: String },
}

/// What people see when the provider vouched for somebody who is not an
/// administrator here (one message whatever the reason: no enumeration).
pub const SSO_NO_ADMIN: &str = "Your organisation's sign-in worked, but there is no active Roster administrator with your email address for this organisation. Ask one of your Roster administrators to invite you.";

/// An issuer must be https; plain http only on the loopback interface
/// (a provider on the same machine).
fn check_issuer(issuer: &str) -> AppResult<String> {
    let issuer = issuer.trim();
    let url = reqwest::Url::parse(issuer).map_err(|e| {
        AppError::invalid(format!(
            "the issuer '{issuer}' is not a URL ({e}): type it as the provider documents it, such as https://login.example.com/tenant"
        ))
    })?;
    let loopback = matches!(
        url.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    let ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !ok || url.query().is_some() || url.fragment().is_some() {
        return Err(AppError::invalid(format!(
            "the issuer '{issuer}' must be an https URL without query or fragment"
        )));
    }
    Ok(issuer.to_string())
}

fn check_client_id(client_id: &str) -> AppResult<String> {
    let c = client_id.trim();
    if c.is_empty() || c.len() > 255 || c.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "the client id must be 1 to 255 characters: copy it from the provider's app registration",
        ));
    }
    Ok(c.to_string())
}

fn provider_error(e: OidcError) -> AppError {
    AppError::invalid(e.to_string())
}

impl Admins {
    /// A partner's single sign-on settings, if set up.
    pub async fn sso_settings(&self, partner: PartnerId) -> AppResult<Option<SsoSettings>> {
        let p = self.db.signin_policy(partner).await?;
        Ok(match (p.oidc_issuer, p.oidc_client_id) {
            (Some(issuer), Some(client_id)) if p.oidc_has_secret => {
                Some(SsoSettings { issuer, client_id })
            }
            _ => None,
        })
    }

    /// The partners whose administrators can sign in by single sign-on:
    /// (partner, name) for the sign-in page's buttons.
    pub async fn sso_partners(&self) -> AppResult<Vec<(PartnerId, String)>> {
        Ok(self
            .db
            .sso_partners()
            .await?
            .into_iter()
            .map(|(id, name, _)| (id, name))
            .collect())
    }

    /// Sets a partner's single sign-on after checking that the provider
    /// answers as the issuer it is said to be. An empty `secret` keeps the
    /// stored one, but only for the same issuer and client id: the secret
    /// is sealed to both and is never sent to another provider.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_sso(
        &self,
        by: &By,
        http: &reqwest::Client,
        partner: PartnerId,
        issuer: &str,
        client_id: &str,
        secret: &str,
        redirect_uri: &str,
        now: DateTime<Utc>,
    ) -> AppResult<SsoSettings> {
        let issuer = check_issuer(issuer)?;
        let client_id = check_client_id(client_id)?;
        let secret = if secret.is_empty() {
            match self.db.partner_oidc(&self.key, partner).await {
                Ok(Some((i, c, s))) if i == issuer && c == client_id => s,
                _ => {
                    return Err(AppError::invalid(
                        "type the client secret: a stored secret is kept only for the issuer and client id it was saved with",
                    ))
                }
            }
        } else {
            Secret::new(secret)
        };
        let cfg = OidcConfig {
            issuer: issuer.clone(),
            client_id: client_id.clone(),
            client_secret: secret.expose().to_string(),
            redirect_uri: redirect_uri.to_string(),
        };
        Provider::discover(cfg, http.clone())
            .await
            .map_err(provider_error)?;
        self.db
            .set_partner_oidc(
                &self.key,
                partner,
                Some((&issuer, &client_id, &secret)),
                now,
            )
            .await?;
        let entry = Entry::scoped(SecurityKind::SsoConfigured, Scope::Partner(partner), by)
            .detail(format!("issuer {issuer}, client id {client_id}"));
        self.record(entry, now).await?;
        Ok(SsoSettings { issuer, client_id })
    }

    /// Turns a partner's single sign-on off (the sealed secret is erased).
    pub async fn remove_sso(
        &self,
        by: &By,
        partner: PartnerId,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        self.db
            .set_partner_oidc(&self.key, partner, None, now)
            .await?;
        let entry = Entry::scoped(SecurityKind::SsoRemoved, Scope::Partner(partner), by);
        self.record(entry, now).await
    }

    async fn provider(
        &self,
        http: &reqwest::Client,
        partner: PartnerId,
        redirect_uri: &str,
    ) -> AppResult<Provider> {
        let (issuer, client_id, secret) = self
            .db
            .partner_oidc(&self.key, partner)
            .await?
            .ok_or_else(|| {
                AppError::not_found("single sign-on is not set up for this organisation")
            })?;
        let cfg = OidcConfig {
            issuer,
            client_id,
            client_secret: secret.expose().to_string(),
            redirect_uri: redirect_uri.to_string(),
        };
        Provider::discover(cfg, http.clone()).await.map_err(|e| {
            AppError::unavailable(format!(
                "single sign-on cannot start: {e}. Sign in with your password, or ask your Roster administrator to check the single sign-on settings"
            ))
        })
    }

    /// Starts a single sign-on: the provider's authorization URL to send
    /// the browser to, and the state (the door binds it to the browser, so
    /// that nobody can make another browser finish their sign-in). The
    /// state, nonce and PKCE verifier stay here, found again by the state
    /// the provider sends back.
    pub async fn sso_begin(
        &self,
        http: &reqwest::Client,
        partner: PartnerId,
        redirect_uri: &str,
        next: &str,
        now: DateTime<Utc>,
    ) -> AppResult<(String, String)> {
        let provider = self.provider(http, partner, redirect_uri).await?;
        let (url, pending) = provider.begin();
        let kept = serde_json::to_string(&pending).map_err(AppError::internal)?;
        self.db
            .put_sso_pending(&pending.state, partner, &kept, next, now)
            .await?;
        Ok((url, pending.state))
    }

    /// Finishes a single sign-on with the provider's `code` and `state`.
    pub async fn sso_finish(
        &self,
        http: &reqwest::Client,
        code: &str,
        state: &str,
        redirect_uri: &str,
        client: &Client,
        now: DateTime<Utc>,
    ) -> AppResult<SsoSignIn> {
        let ttl = chrono::Duration::from_std(roster_oidc::LOGIN_TTL).map_err(AppError::internal)?;
        let Some((partner, kept, next)) = self.db.take_sso_pending(state, ttl, now).await? else {
            return Ok(SsoSignIn::Refused {
                message: "This sign-in is not one Roster started, was already used, or took longer than 10 minutes. Start it again.".into(),
            });
        };
        let pending: PendingLogin = serde_json::from_str(&kept).map_err(AppError::internal)?;
        let provider = self.provider(http, partner, redirect_uri).await?;
        let identity = match provider.finish(&pending, code, state).await {
            Ok(identity) => identity,
            Err(e) => {
                return self
                    .sso_refused(partner, None, None, client, &e.to_string(), now)
                    .await
            }
        };
        let Some(email) = identity
            .email
            .filter(|e| identity.email_verified != Some(false) && !e.chars().any(char::is_control))
        else {
            let why = "the provider sent no verified email address for this person";
            return self
                .sso_refused(partner, None, None, client, why, now)
                .await;
        };
        let admin = self.db.admin_by_email(&email).await?;
        let usable = match &admin {
            Some(a) if a.disabled_at.is_none() => {
                self.reaches(Scope::Partner(partner), a.scope).await?
            }
            _ => false,
        };
        let admin = match admin {
            Some(a) if usable => a,
            other => {
                let why = match &other {
                    None => "no administrator has this email",
                    Some(a) if a.disabled_at.is_some() => "the administrator is disabled",
                    Some(_) => "the administrator belongs to another organisation",
                };
                return self
                    .sso_refused(partner, other.as_ref(), Some(&email), client, why, now)
                    .await;
            }
        };
        let (secret, session) = self.sign_in_sso(&admin, client, now).await?;
        Ok(SsoSignIn::Done {
            secret,
            session: Box::new(session),
            next,
        })
    }

    async fn sso_refused(
        &self,
        partner: PartnerId,
        admin: Option<&Admin>,
        email: Option<&str>,
        client: &Client,
        why: &str,
        now: DateTime<Utc>,
    ) -> AppResult<SsoSignIn> {
        // An administrator of another partner is logged in this partner's
        // log, which the attempt came through, not in the other one.
        let in_partner = admin.filter(|a| a.scope == Scope::Partner(partner));
        self.record(
            Entry {
                kind: SecurityKind::SignInFailed,
                about: in_partner,
                scope: Some(Scope::Partner(partner)),
                actor: None,
                addr: &client.addr,
                email: email.or(admin.map(|a| a.email.as_str())),
                detail: format!("single sign-on: {why}"),
            },
            now,
        )
        .await?;
        tracing::info!(client = %client.addr, reason = why, "a single sign-on was refused");
        let message = if email.is_some() {
            SSO_NO_ADMIN.to_string()
        } else {
            format!("Single sign-on did not complete: {why}.")
        };
        Ok(SsoSignIn::Refused { message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t4_sso_issuer_is_https_or_loopback_http() {
        assert!(check_issuer("https://login.example.com/tenant/v2.0").is_ok());
        assert!(check_issuer("http://127.0.0.1:4444").is_ok());
        assert!(check_issuer("http://localhost:4444").is_ok());
        for bad in [
            "http://login.example.com",
            "login.example.com",
            "https://login.example.com/?a=b",
            "ftp://x",
            "",
        ] {
            assert!(check_issuer(bad).is_err(), "{bad}");
        }
        assert!(check_client_id(" roster ").is_ok());
        assert!(check_client_id("").is_err());
    }
}
