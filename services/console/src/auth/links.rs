//! `/invite/{token}` and `/reset/{token}`: one-time links that set a
//! password (the first one of an invited administrator, or a new one).
//! The link is checked when the page opens and used up when the form is
//! sent; then every session of the administrator ends.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use roster_store::admins::LinkKind;
use serde::Deserialize;

use crate::error::{PageError, PageResult};
use crate::layout::{render, Flash, Layout};
use crate::session::Requester;
use crate::ConsoleState;

#[derive(Template)]
#[template(path = "auth/link.html")]
struct LinkPage {
    layout: Layout,
    heading: &'static str,
    intro: String,
    action: String,
    email: String,
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

fn gone() -> PageError {
    PageError::Gone(
        "This link has expired or was already used. Ask an administrator for a new one (or your operator to run `roster admin reset`).".into(),
    )
}

fn texts(kind: LinkKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        LinkKind::Invite => (
            "Welcome to Roster",
            "invite",
            "Choose a password to finish setting up your administrator account",
        ),
        LinkKind::Reset => (
            "Choose a new password",
            "reset",
            "Choose a new password for",
        ),
    }
}

async fn show(
    state: &ConsoleState,
    kind: LinkKind,
    token: &str,
    flash: Option<Flash>,
) -> PageResult<Response> {
    let now = state.now();
    let db = state.app.store.db();
    let admin = db.peek_link(token, kind, now).await?.ok_or_else(gone)?;
    let admin = db.admin(admin).await?.ok_or_else(gone)?;
    let (heading, path, intro) = texts(kind);
    let mut layout = Layout::anonymous(heading);
    if let Some(f) = flash {
        layout = layout.flash(f);
    }
    Ok(render(&LinkPage {
        layout,
        heading,
        intro: format!("{intro} ({}).", admin.email),
        action: format!("/{path}/{token}"),
        email: admin.email,
    }))
}

async fn redeem(
    state: &ConsoleState,
    kind: LinkKind,
    token: &str,
    addr: &str,
    f: PasswordForm,
) -> PageResult<Response> {
    if f.password != f.confirm {
        let mut res = show(
            state,
            kind,
            token,
            Some(Flash::error(
                "The two passwords are not the same: type the same password twice.",
            )),
        )
        .await?;
        *res.status_mut() = axum::http::StatusCode::BAD_REQUEST;
        return Ok(res);
    }
    match state
        .admins
        .redeem_link(token, kind, &f.password, addr, state.now())
        .await
    {
        Ok(_) => Ok(crate::layout::redirect_with(
            "/signin",
            Flash::success("Your password is set. Sign in with it now."),
            state.config.secure(),
        )),
        Err(roster_app::AppError::Invalid { message, .. }) => {
            let mut res = show(state, kind, token, Some(Flash::error(message))).await?;
            *res.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(res)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn invite_form(
    State(state): State<ConsoleState>,
    Path(token): Path<String>,
) -> PageResult<Response> {
    show(&state, LinkKind::Invite, &token, None).await
}

pub async fn invite_submit(
    State(state): State<ConsoleState>,
    Path(token): Path<String>,
    Requester(client): Requester,
    Form(f): Form<PasswordForm>,
) -> PageResult<Response> {
    redeem(&state, LinkKind::Invite, &token, &client.addr, f).await
}

pub async fn reset_form(
    State(state): State<ConsoleState>,
    Path(token): Path<String>,
) -> PageResult<Response> {
    show(&state, LinkKind::Reset, &token, None).await
}

pub async fn reset_submit(
    State(state): State<ConsoleState>,
    Path(token): Path<String>,
    Requester(client): Requester,
    Form(f): Form<PasswordForm>,
) -> PageResult<Response> {
    redeem(&state, LinkKind::Reset, &token, &client.addr, f).await
}
