//! `/tokens`: API tokens for machines (issue 14). An administrator creates
//! one with its own scope, or a partner administrator with one of its
//! customers' scope (shown once, only its SHA-256 is kept), and revokes
//! tokens of its scope; a partner administrator also sees and revokes the
//! tokens of its customers.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use roster_events::TokenId;
use roster_store::auth::Scope;
use serde::Deserialize;

use crate::error::{PageError, PageResult};
use crate::layout::{redirect_with, render, section, Flash, Layout};
use crate::session::CurrentAdmin;
use crate::ConsoleState;

pub struct TokenRow {
    pub id: String,
    pub label: String,
    pub scope: String,
    pub created: String,
    pub revoked: Option<String>,
}

#[derive(Template)]
#[template(path = "auth/tokens.html")]
struct TokensPage {
    layout: Layout,
    csrf: String,
    tokens: Vec<TokenRow>,
    /// A token just created: shown this once.
    new_secret: Option<String>,
    /// A partner administrator's customers, for a token of one customer:
    /// (id, name).
    customers: Vec<(String, String)>,
}

async fn rows(state: &ConsoleState, admin: &CurrentAdmin) -> PageResult<Vec<TokenRow>> {
    let mut out = Vec::new();
    for t in state.admins.tokens(admin.scope).await? {
        out.push(TokenRow {
            id: t.token_id.to_string(),
            label: t.label.clone(),
            scope: match t.scope {
                Scope::Partner(_) => "All customers".into(),
                Scope::Customer(c) => format!("Customer {c}"),
            },
            created: t.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            revoked: t
                .revoked_at
                .map(|r| r.format("%Y-%m-%d %H:%M UTC").to_string()),
        });
    }
    out.reverse();
    Ok(out)
}

async fn page(
    state: &ConsoleState,
    admin: &CurrentAdmin,
    new_secret: Option<String>,
    flash: Option<Flash>,
) -> PageResult<Response> {
    let mut layout = Layout::new(admin, "API tokens", section::TOKENS);
    if let Some(f) = flash {
        layout = layout.flash(f);
    }
    let customers = match admin.scope {
        Scope::Partner(p) => roster_projections::queries::customers_of_partner(&state.app.store, p)
            .await?
            .into_iter()
            .map(|c| (c.customer_id.to_string(), c.name))
            .collect(),
        Scope::Customer(_) => Vec::new(),
    };
    Ok(render(&TokensPage {
        layout,
        csrf: admin.csrf.clone(),
        tokens: rows(state, admin).await?,
        new_secret,
        customers,
    }))
}

pub async fn list(State(state): State<ConsoleState>, admin: CurrentAdmin) -> PageResult<Response> {
    page(&state, &admin, None, None).await
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    label: String,
    /// Empty: the administrator's own scope; else one of a partner
    /// administrator's customers.
    #[serde(default)]
    customer: String,
}

pub async fn create(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Form(f): Form<CreateForm>,
) -> PageResult<Response> {
    let scope = match f.customer.trim() {
        "" => admin.scope,
        raw => Scope::Customer(admin.customer(&state, raw).await.map_err(|_| {
            PageError::BadRequest("that customer is not one of your customers".into())
        })?),
    };
    let label = f.label.trim();
    let issued = match state
        .admins
        .create_token(&admin.by(), scope, label, state.now())
        .await
    {
        Ok(issued) => issued,
        Err(roster_app::AppError::Invalid { message, .. }) => {
            return Err(PageError::BadRequest(message))
        }
        Err(e) => return Err(e.into()),
    };
    // The secret is shown on this answer only (not a redirect: it must not
    // travel in a cookie or a URL).
    let mut res = page(
        &state,
        &admin,
        Some(issued.secret),
        Some(Flash::success(format!(
            "Token \"{label}\" created. Copy it now: it is shown only once."
        ))),
    )
    .await?;
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

pub async fn revoke(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let id = TokenId::parse(&id).map_err(|_| PageError::NotFound)?;
    let token = state.admins.token(admin.scope, id).await?;
    state
        .admins
        .revoke_token(&admin.by(), &token, state.now())
        .await?;
    Ok(redirect_with(
        "/tokens",
        Flash::success(format!("Token \"{}\" revoked.", token.label)),
        state.config.secure(),
    ))
}
