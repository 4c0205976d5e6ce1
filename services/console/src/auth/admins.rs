//! `/administrators`: the administrators of the signed-in administrator's
//! scope (a partner administrator sees the partner's and its customers'
//! administrators; a customer administrator its customer's). Invite one
//! (the one-time link is shown to the inviting administrator: no mail
//! server is needed), issue a reset link, disable one. A partner
//! administrator also sets whether TOTP is required for the partner.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use roster_events::{AdminId, CustomerId};
use roster_store::admins::{Admin, LinkKind};
use roster_store::auth::Scope;
use serde::Deserialize;

use crate::error::{PageError, PageResult};
use crate::layout::{redirect_with, render, section, Flash, Layout};
use crate::session::CurrentAdmin;
use crate::ConsoleState;

pub struct AdminRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub scope: String,
    pub status: &'static str,
    pub totp: bool,
    pub me: bool,
}

/// A one-time link just issued, shown this once.
pub struct IssuedLink {
    pub what: String,
    pub url: String,
}

#[derive(Template)]
#[template(path = "auth/admins.html")]
struct AdminsPage {
    layout: Layout,
    csrf: String,
    admins: Vec<AdminRow>,
    is_partner: bool,
    require_totp: bool,
    link: Option<IssuedLink>,
}

/// Whether `target` is within `admin`'s scope (T1).
async fn in_scope(state: &ConsoleState, admin: &CurrentAdmin, target: &Admin) -> PageResult<bool> {
    Ok(match (admin.scope, target.scope) {
        (Scope::Partner(p), Scope::Partner(q)) => p == q,
        (Scope::Partner(p), Scope::Customer(c)) => {
            state.app.store.db().customer_partner(c).await? == Some(p)
        }
        (Scope::Customer(c), Scope::Customer(d)) => c == d,
        (Scope::Customer(_), Scope::Partner(_)) => false,
    })
}

async fn page(
    state: &ConsoleState,
    admin: &CurrentAdmin,
    link: Option<IssuedLink>,
    flash: Option<Flash>,
) -> PageResult<Response> {
    let db = state.app.store.db();
    let mut admins = Vec::new();
    for a in db.list_admins().await? {
        if !in_scope(state, admin, &a).await? {
            continue;
        }
        admins.push(AdminRow {
            id: a.admin_id.to_string(),
            me: a.admin_id == admin.admin_id,
            email: a.email,
            name: a.display_name,
            scope: match a.scope {
                Scope::Partner(_) => "Partner (all customers)".into(),
                Scope::Customer(c) => format!("Customer {c}"),
            },
            status: match (a.disabled_at, a.password_hash) {
                (Some(_), _) => "Disabled",
                (None, None) => "Invited",
                (None, Some(_)) => "Active",
            },
            totp: a.totp_enabled,
        });
    }
    let require_totp = match admin.scope {
        Scope::Partner(p) => db.signin_policy(p).await?.require_totp,
        Scope::Customer(_) => false,
    };
    let mut layout = Layout::new(admin, "Administrators", section::ADMINS);
    if let Some(f) = flash {
        layout = layout.flash(f);
    }
    Ok(render(&AdminsPage {
        layout,
        csrf: admin.csrf.clone(),
        admins,
        is_partner: admin.is_partner(),
        require_totp,
        link,
    }))
}

pub async fn list(State(state): State<ConsoleState>, admin: CurrentAdmin) -> PageResult<Response> {
    page(&state, &admin, None, None).await
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    /// Empty: the inviting administrator's own scope; else a customer id
    /// (a partner administrator inviting a customer administrator).
    #[serde(default)]
    customer: String,
}

fn link_url(state: &ConsoleState, host: Option<&str>, kind: LinkKind, secret: &str) -> String {
    let base = state
        .config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", host.unwrap_or("127.0.0.1:8080")));
    format!("{}/{}/{secret}", base.trim_end_matches('/'), kind.as_str())
}

pub async fn invite(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    headers: axum::http::HeaderMap,
    Form(f): Form<InviteForm>,
) -> PageResult<Response> {
    let scope = match f.customer.trim() {
        "" => admin.scope,
        raw => {
            let c: CustomerId = admin.customer(&state, raw).await.map_err(|_| {
                PageError::BadRequest("that customer id is not one of your customers".into())
            })?;
            Scope::Customer(c)
        }
    };
    let now = state.now();
    let id = state
        .admins
        .add(&f.email, &f.name, scope, None, now)
        .await?;
    let secret = state.admins.issue_link(id, LinkKind::Invite, now).await?;
    tracing::info!(admin_id = %id, by = %admin.admin_id, "an administrator invited an administrator");
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let link = IssuedLink {
        what: format!("Invitation for {}", f.email.trim()),
        url: link_url(&state, host, LinkKind::Invite, &secret),
    };
    page(
        &state,
        &admin,
        Some(link),
        Some(Flash::success(
            "Administrator invited: send them the link below. It works once.",
        )),
    )
    .await
}

async fn target(state: &ConsoleState, admin: &CurrentAdmin, raw: &str) -> PageResult<Admin> {
    let id = AdminId::parse(raw).map_err(|_| PageError::NotFound)?;
    let a = state
        .app
        .store
        .db()
        .admin(id)
        .await?
        .ok_or(PageError::NotFound)?;
    if in_scope(state, admin, &a).await? {
        Ok(a)
    } else {
        Err(PageError::NotFound)
    }
}

pub async fn reset(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let a = target(&state, &admin, &id).await?;
    let kind = if a.password_hash.is_some() {
        LinkKind::Reset
    } else {
        LinkKind::Invite
    };
    let secret = state
        .admins
        .issue_link(a.admin_id, kind, state.now())
        .await?;
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let link = IssuedLink {
        what: format!(
            "{} link for {}",
            if kind == LinkKind::Reset {
                "Password reset"
            } else {
                "Invitation"
            },
            a.email
        ),
        url: link_url(&state, host, kind, &secret),
    };
    page(
        &state,
        &admin,
        Some(link),
        Some(Flash::success(
            "Send them the link below. It works once; earlier links stop working.",
        )),
    )
    .await
}

pub async fn disable(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let a = target(&state, &admin, &id).await?;
    if a.admin_id == admin.admin_id {
        return Err(PageError::BadRequest(
            "you cannot disable yourself; ask another administrator".into(),
        ));
    }
    state
        .app
        .store
        .db()
        .disable_admin(a.admin_id, state.now())
        .await?;
    tracing::info!(admin_id = %a.admin_id, by = %admin.admin_id, "an administrator disabled an administrator");
    Ok(redirect_with(
        "/administrators",
        Flash::success(format!(
            "{} is disabled and signed out everywhere.",
            a.email
        )),
        state.config.secure(),
    ))
}

#[derive(Deserialize)]
pub struct PolicyForm {
    #[serde(default)]
    require_totp: Option<String>,
}

pub async fn policy(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Form(f): Form<PolicyForm>,
) -> PageResult<Response> {
    let Scope::Partner(p) = admin.scope else {
        return Err(PageError::Forbidden(
            "only a partner administrator sets the sign-in policy".into(),
        ));
    };
    let require = f.require_totp.is_some();
    state
        .app
        .store
        .db()
        .set_require_totp(p, require, state.now())
        .await?;
    Ok(redirect_with(
        "/administrators",
        Flash::success(if require {
            "Two-step verification is now required for every administrator of this partner and its customers."
        } else {
            "Two-step verification is now optional."
        }),
        state.config.secure(),
    ))
}
