//! Single sign-on (issue 14): `/sso/{partner}/start` sends the browser to
//! the partner's OpenID provider, `/sso/callback` takes it back. The
//! application layer ([`roster_app::sso`]) keeps the state, nonce and PKCE
//! verifier and checks the ID token; here the state is also bound to the
//! browser by a short-lived cookie, so that a callback URL made in another
//! browser (login CSRF) signs nobody in.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use roster_app::sso::SsoSignIn;
use roster_events::PartnerId;
use serde::Deserialize;

use crate::error::{PageError, PageResult};
use crate::layout::Flash;
use crate::session::{cookie, set_cookie, Requester};
use crate::ConsoleState;

/// The cookie that binds a sign-in under way to this browser (10 minutes).
pub const SSO_COOKIE: &str = "roster_sso";

#[derive(Deserialize, Default)]
pub struct StartQuery {
    #[serde(default)]
    next: Option<String>,
}

/// The callback URL registered at the provider.
pub fn redirect_uri(state: &ConsoleState, headers: &HeaderMap) -> String {
    format!("{}/sso/callback", state.base_url(headers))
}

pub async fn start(
    State(state): State<ConsoleState>,
    Path(partner): Path<String>,
    Query(q): Query<StartQuery>,
    headers: HeaderMap,
) -> PageResult<Response> {
    let partner = PartnerId::parse(&partner).map_err(|_| PageError::NotFound)?;
    let next = crate::auth::safe_next(q.next.as_deref().unwrap_or("/"));
    let (url, sso_state) = state
        .admins
        .sso_begin(
            &state.http,
            partner,
            &redirect_uri(&state, &headers),
            &next,
            state.now(),
        )
        .await?;
    let mut res = Redirect::to(&url).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SSO_COOKIE, &sso_state, Some(600), state.config.secure()),
    );
    Ok(res)
}

#[derive(Deserialize, Default)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    /// The provider's refusal (RFC 6749 section 4.1.2.1).
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// The sign-in page again with a message, and the binding cookie gone.
async fn refused(state: &ConsoleState, message: String) -> PageResult<Response> {
    let mut res = crate::auth::signin::page(
        state,
        String::new(),
        "/".into(),
        vec![Flash::error(message)],
    )
    .await?;
    *res.status_mut() = StatusCode::UNAUTHORIZED;
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SSO_COOKIE, "", Some(0), state.config.secure()),
    );
    Ok(res)
}

pub async fn callback(
    State(state): State<ConsoleState>,
    Query(q): Query<CallbackQuery>,
    Requester(client): Requester,
    headers: HeaderMap,
) -> PageResult<Response> {
    if let Some(error) = q.error {
        let detail = q
            .error_description
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        let text: String = format!("{error}{detail}").chars().take(300).collect();
        return refused(
            &state,
            format!("Your organisation's sign-in did not complete ({text}). Try again, or sign in with your password."),
        )
        .await;
    }
    let (Some(code), Some(sso_state)) = (q.code, q.state) else {
        return refused(
            &state,
            "This sign-in link is incomplete. Start the sign-in again.".into(),
        )
        .await;
    };
    let bound = cookie(&headers, SSO_COOKIE).is_some_and(|c| c == sso_state);
    if !bound {
        return refused(
            &state,
            "This sign-in was started in another browser or has expired. Start it again here."
                .into(),
        )
        .await;
    }
    let outcome = state
        .admins
        .sso_finish(
            &state.http,
            &code,
            &sso_state,
            &redirect_uri(&state, &headers),
            &client,
            state.now(),
        )
        .await?;
    match outcome {
        SsoSignIn::Done { secret, next, .. } => {
            let mut res = crate::auth::signin::signed_in(&state, &secret, &next);
            res.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(SSO_COOKIE, "", Some(0), state.config.secure()),
            );
            Ok(res)
        }
        SsoSignIn::Refused { message } => refused(&state, message).await,
    }
}
