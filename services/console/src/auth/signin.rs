//! `/signin` (password, then TOTP when enrolled; single sign-on buttons)
//! and `/signout`.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use roster_app::admins::SignIn;
use serde::Deserialize;

use crate::error::PageResult;
use crate::layout::{render, Flash, Layout};
use crate::session::{self, cookie, cookie_name, set_cookie, Requester, PENDING_COOKIE};
use crate::ConsoleState;

/// A single sign-on button: a partner whose administrators may sign in
/// through its OpenID provider.
pub struct SsoButton {
    pub partner_id: String,
    pub partner_name: String,
}

#[derive(Template)]
#[template(path = "auth/signin.html")]
struct SignInPage {
    layout: Layout,
    email: String,
    next: String,
    sso: Vec<SsoButton>,
}

#[derive(Template)]
#[template(path = "auth/totp.html")]
struct TotpPage {
    layout: Layout,
    next: String,
}

#[derive(Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct TotpForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: Option<String>,
}

async fn sso_buttons(state: &ConsoleState) -> PageResult<Vec<SsoButton>> {
    Ok(state
        .admins
        .sso_partners()
        .await?
        .into_iter()
        .map(|(id, name)| SsoButton {
            partner_id: id.to_string(),
            partner_name: name,
        })
        .collect())
}

fn next_of(next: Option<&str>) -> String {
    crate::auth::safe_next(next.unwrap_or("/"))
}

/// The sign-in page with its messages.
pub(crate) async fn page(
    state: &ConsoleState,
    email: String,
    next: String,
    flashes: Vec<Flash>,
) -> PageResult<Response> {
    let mut layout = Layout::anonymous("Sign in");
    layout.flashes = flashes;
    Ok(render(&SignInPage {
        layout,
        email,
        next,
        sso: sso_buttons(state).await?,
    }))
}

pub async fn form(
    State(state): State<ConsoleState>,
    Query(q): Query<NextQuery>,
    ext: axum::http::Extensions,
) -> PageResult<Response> {
    let flashes = ext
        .get::<session::Flashes>()
        .map(|f| f.0.clone())
        .unwrap_or_default();
    page(&state, String::new(), next_of(q.next.as_deref()), flashes).await
}

/// The answer to a finished sign-in: the session cookie, then `next`.
pub fn signed_in(state: &ConsoleState, secret: &str, next: &str) -> Response {
    let secure = state.config.secure();
    let mut res = Redirect::to(next).into_response();
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(cookie_name(secure), secret, None, secure),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(PENDING_COOKIE, "", Some(0), secure),
    );
    res
}

fn throttled_message(retry_after: i64) -> Flash {
    let wait = if retry_after >= 120 {
        format!("{} minutes", (retry_after + 59) / 60)
    } else if retry_after == 1 {
        "1 second".to_string()
    } else {
        format!("{retry_after} seconds")
    };
    Flash::error(format!(
        "Too many failed sign-ins from this account or this network. Wait {wait}, then try again."
    ))
}

pub async fn submit(
    State(state): State<ConsoleState>,
    Requester(client): Requester,
    Form(f): Form<SignInForm>,
) -> PageResult<Response> {
    let next = next_of(f.next.as_deref());
    let now = state.now();
    let outcome = state
        .admins
        .sign_in(&f.email, &f.password, &client, now)
        .await?;
    let flash = match outcome {
        SignIn::Done { secret, .. } => return Ok(signed_in(&state, &secret, &next)),
        SignIn::NeedTotp { secret } => {
            let secure = state.config.secure();
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("next", &next)
                .finish();
            let mut res = Redirect::to(&format!("/signin/totp?{q}")).into_response();
            res.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(PENDING_COOKIE, &secret, Some(300), secure),
            );
            return Ok(res);
        }
        SignIn::Refused => Flash::error(roster_app::admins::REFUSED),
        SignIn::Throttled { retry_after } => throttled_message(retry_after),
    };
    let mut res = page(&state, f.email, next, vec![flash]).await?;
    *res.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
    Ok(res)
}

pub async fn totp_form(Query(q): Query<NextQuery>) -> Response {
    render(&TotpPage {
        layout: Layout::anonymous("Two-step verification"),
        next: next_of(q.next.as_deref()),
    })
}

pub async fn totp_submit(
    State(state): State<ConsoleState>,
    Requester(client): Requester,
    headers: HeaderMap,
    Form(f): Form<TotpForm>,
) -> PageResult<Response> {
    let next = next_of(f.next.as_deref());
    let Some(pending) = cookie(&headers, PENDING_COOKIE) else {
        return Ok(crate::layout::redirect_with(
            "/signin",
            Flash::error("The sign-in took too long. Sign in again."),
            state.config.secure(),
        ));
    };
    let outcome = state
        .admins
        .sign_in_totp(&pending, &f.code, &client, state.now())
        .await?;
    let flash = match outcome {
        SignIn::Done { secret, .. } => return Ok(signed_in(&state, &secret, &next)),
        SignIn::Throttled { retry_after } => throttled_message(retry_after),
        _ => Flash::error(
            "That code is not right, or the sign-in took too long. Type the 6-digit code your authenticator app shows now.",
        ),
    };
    let mut res = render(&TotpPage {
        layout: Layout::anonymous("Two-step verification").flash(flash),
        next,
    });
    *res.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
    Ok(res)
}

/// Ends this session (the form in the header).
pub async fn sign_out(
    State(state): State<ConsoleState>,
    ext: axum::http::Extensions,
    Requester(client): Requester,
) -> PageResult<Response> {
    if let Some(secret) = session::session_secret(&ext) {
        state
            .admins
            .sign_out(&secret, &client.addr, state.now())
            .await?;
    }
    let secure = state.config.secure();
    let mut res =
        crate::layout::redirect_with("/signin", Flash::success("You have signed out."), secure);
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(cookie_name(secure), "", Some(0), secure),
    );
    Ok(res)
}
