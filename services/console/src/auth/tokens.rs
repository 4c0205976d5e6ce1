//! `/tokens`: API tokens for machines (issue 14). An administrator creates
//! one with its own scope (shown once, only its SHA-256 is kept) and
//! revokes tokens of its scope; a partner administrator also sees and
//! revokes the tokens of its customers.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use roster_events::TokenId;
use roster_store::auth::{Scope, TokenInfo};
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
}

/// Whether a token is within the administrator's scope (T1).
async fn in_scope(state: &ConsoleState, admin: &CurrentAdmin, t: &TokenInfo) -> PageResult<bool> {
    Ok(match (admin.scope, t.scope) {
        (Scope::Partner(p), Scope::Partner(q)) => p == q,
        (Scope::Partner(p), Scope::Customer(c)) => {
            state.app.store.db().customer_partner(c).await? == Some(p)
        }
        (Scope::Customer(c), Scope::Customer(d)) => c == d,
        (Scope::Customer(_), Scope::Partner(_)) => false,
    })
}

async fn rows(state: &ConsoleState, admin: &CurrentAdmin) -> PageResult<Vec<TokenRow>> {
    let mut out = Vec::new();
    for t in state.app.store.db().list_tokens().await? {
        if !in_scope(state, admin, &t).await? {
            continue;
        }
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
    Ok(render(&TokensPage {
        layout,
        csrf: admin.csrf.clone(),
        tokens: rows(state, admin).await?,
        new_secret,
    }))
}

pub async fn list(State(state): State<ConsoleState>, admin: CurrentAdmin) -> PageResult<Response> {
    page(&state, &admin, None, None).await
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    label: String,
}

pub async fn create(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Form(f): Form<CreateForm>,
) -> PageResult<Response> {
    let label = f.label.trim();
    if label.is_empty() || label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(PageError::BadRequest(
            "give the token a label of 1 to 100 characters that says which machine uses it".into(),
        ));
    }
    let issued = state
        .app
        .store
        .db()
        .issue_token(admin.scope, label, state.now())
        .await?;
    tracing::info!(token_id = %issued.token_id, admin_id = %admin.admin_id, "an administrator created an API token");
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
    let db = state.app.store.db();
    let token = db
        .list_tokens()
        .await?
        .into_iter()
        .find(|t| t.token_id == id)
        .ok_or(PageError::NotFound)?;
    if !in_scope(&state, &admin, &token).await? {
        return Err(PageError::NotFound);
    }
    db.revoke_token(id, state.now()).await?;
    tracing::info!(token_id = %id, admin_id = %admin.admin_id, "an administrator revoked an API token");
    Ok(redirect_with(
        "/tokens",
        Flash::success(format!("Token \"{}\" revoked.", token.label)),
        state.config.secure(),
    ))
}
