//! `/security`: the sign-in log of the administrator's scope (issue 14):
//! sign-ins and failures, sign-outs, invitations and links, password and
//! two-step changes, administrators disabled, API tokens, the sign-in
//! policy and single sign-on. A partner administrator sees its partner's
//! and its customers' administrators; a customer administrator its
//! customer's. Newest first, 100 rows a page.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use crate::error::PageResult;
use crate::layout::{render, section, Layout};
use crate::session::CurrentAdmin;
use crate::ConsoleState;

pub struct SecurityRow {
    pub time: String,
    pub what: &'static str,
    pub who: String,
    pub by: String,
    pub from: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "auth/security.html")]
struct SecurityPage {
    layout: Layout,
    rows: Vec<SecurityRow>,
    /// The `?after=` of the next (older) page.
    older: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct SecurityQuery {
    #[serde(default)]
    after: Option<String>,
}

/// What people read for an event type.
fn label(kind: roster_store::security_log::SecurityKind) -> &'static str {
    use roster_store::security_log::SecurityKind as K;
    match kind {
        K::SignedIn => "Signed in",
        K::SignInFailed => "Sign-in failed",
        K::SignedOut => "Signed out",
        K::SessionEnded => "Session ended",
        K::SignedOutEverywhere => "Signed out everywhere",
        K::AdminAdded => "Administrator added",
        K::AdminInvited => "Administrator invited",
        K::LinkIssued => "Sign-in link issued",
        K::PasswordSet => "Password set",
        K::PasswordChanged => "Password changed",
        K::TotpEnabled => "Two-step verification on",
        K::TotpDisabled => "Two-step verification off",
        K::AdminDisabled => "Administrator disabled",
        K::TokenCreated => "API token created",
        K::TokenRevoked => "API token revoked",
        K::TotpPolicyChanged => "Sign-in policy changed",
        K::SsoConfigured => "Single sign-on set up",
        K::SsoRemoved => "Single sign-on turned off",
    }
}

pub async fn list(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Query(q): Query<SecurityQuery>,
) -> PageResult<Response> {
    let page = state
        .admins
        .security_log(Some(admin.scope), q.after.as_deref(), 100)
        .await?;
    // Administrators who acted, by their email rather than their id.
    let emails: std::collections::HashMap<_, _> = state
        .app
        .store
        .db()
        .list_admins()
        .await?
        .into_iter()
        .map(|a| (a.admin_id, a.email))
        .collect();
    let rows = page
        .events
        .into_iter()
        .map(|e| SecurityRow {
            time: e.recorded_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            what: label(e.kind),
            who: e.email.unwrap_or_default(),
            by: match e.actor {
                Some(roster_events::Actor::Admin(id)) if Some(id) == e.admin_id => {
                    "themselves".into()
                }
                Some(roster_events::Actor::Admin(id)) => emails
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| format!("admin:{id}")),
                Some(roster_events::Actor::System(s)) if s == "cli" => "the command line".into(),
                Some(a) => a.to_string(),
                None => "not signed in".into(),
            },
            from: e.client_addr,
            detail: e.detail,
        })
        .collect();
    Ok(render(&SecurityPage {
        layout: Layout::new(&admin, "Sign-in log", section::SECURITY),
        rows,
        older: page.next,
    }))
}
