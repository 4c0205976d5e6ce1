//! `/administrators`: the administrators of the signed-in administrator's
//! scope (a partner administrator sees the partner's and its customers'
//! administrators; a customer administrator its customer's). Invite one
//! (the one-time link is shown to the inviting administrator: no mail
//! server is needed), issue a reset link, disable one. A partner
//! administrator also sets whether TOTP is required for the partner, and
//! its single sign-on (issuer, client id, client secret).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Form;
use roster_app::sso::SsoSettings;
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
    sso: Option<SsoSettings>,
    /// The callback URL to register at the provider.
    sso_redirect_uri: String,
}

/// Whether `target` is within `admin`'s scope (T1).
async fn in_scope(state: &ConsoleState, admin: &CurrentAdmin, target: &Admin) -> PageResult<bool> {
    Ok(state.admins.reaches(admin.scope, target.scope).await?)
}

async fn page(
    state: &ConsoleState,
    admin: &CurrentAdmin,
    headers: &HeaderMap,
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
    let (require_totp, sso) = match admin.scope {
        Scope::Partner(p) => (
            db.signin_policy(p).await?.require_totp,
            state.admins.sso_settings(p).await?,
        ),
        Scope::Customer(_) => (false, None),
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
        sso,
        sso_redirect_uri: crate::auth::sso::redirect_uri(state, headers),
    }))
}

pub async fn list(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    headers: HeaderMap,
) -> PageResult<Response> {
    page(&state, &admin, &headers, None, None).await
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

fn link_url(state: &ConsoleState, headers: &HeaderMap, kind: LinkKind, secret: &str) -> String {
    format!("{}/{}/{secret}", state.base_url(headers), kind.as_str())
}

pub async fn invite(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    headers: HeaderMap,
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
    let by = admin.by();
    let id = state
        .admins
        .add(&f.email, &f.name, scope, None, &by, now)
        .await?;
    let secret = state
        .admins
        .issue_link(id, LinkKind::Invite, &by, now)
        .await?;
    let link = IssuedLink {
        what: format!("Invitation for {}", f.email.trim()),
        url: link_url(&state, &headers, LinkKind::Invite, &secret),
    };
    page(
        &state,
        &admin,
        &headers,
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
    headers: HeaderMap,
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
        .issue_link(a.admin_id, kind, &admin.by(), state.now())
        .await?;
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
        url: link_url(&state, &headers, kind, &secret),
    };
    page(
        &state,
        &admin,
        &headers,
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
    state.admins.disable(&admin.by(), &a, state.now()).await?;
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
        .admins
        .set_require_totp(&admin.by(), p, require, state.now())
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

#[derive(Deserialize)]
pub struct SsoForm {
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    /// `save` or `remove`.
    #[serde(default)]
    action: String,
}

/// A partner's single sign-on: save (after the provider answered as the
/// issuer) or remove.
pub async fn sso(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    headers: HeaderMap,
    Form(f): Form<SsoForm>,
) -> PageResult<Response> {
    let Scope::Partner(p) = admin.scope else {
        return Err(PageError::Forbidden(
            "only a partner administrator sets up single sign-on".into(),
        ));
    };
    let now = state.now();
    let secure = state.config.secure();
    if f.action == "remove" {
        state.admins.remove_sso(&admin.by(), p, now).await?;
        return Ok(redirect_with(
            "/administrators",
            Flash::success("Single sign-on is off: administrators sign in with their passwords."),
            secure,
        ));
    }
    let saved = state
        .admins
        .set_sso(
            &admin.by(),
            &state.http,
            p,
            &f.issuer,
            &f.client_id,
            &f.client_secret,
            &crate::auth::sso::redirect_uri(&state, &headers),
            now,
        )
        .await;
    match saved {
        Ok(s) => Ok(redirect_with(
            "/administrators",
            Flash::success(format!(
                "Single sign-on through {} is on. The sign-in page now offers it.",
                s.issuer
            )),
            secure,
        )),
        Err(roster_app::AppError::Invalid { message, .. }) => {
            let mut res = page(
                &state,
                &admin,
                &headers,
                None,
                Some(Flash::error(format!(
                    "Single sign-on was not saved: {message}"
                ))),
            )
            .await?;
            *res.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(res)
        }
        Err(e) => Err(e.into()),
    }
}
