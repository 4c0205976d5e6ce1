//! `/profile`: the administrator's password, TOTP enrolment (a QR code
//! rendered here as SVG), and sessions (each can be ended; "sign out
//! everywhere" ends them all).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use axum::Form;
use base64::Engine;
use serde::Deserialize;

use crate::error::{PageError, PageResult};
use crate::layout::{redirect_with, render, section, Flash, Layout};
use crate::session::{cookie_name, set_cookie, CurrentAdmin};
use crate::ConsoleState;

pub struct SessionRow {
    pub id: String,
    pub method: String,
    pub client: String,
    pub agent: String,
    pub started: String,
    pub last_seen: String,
    pub current: bool,
}

/// A TOTP enrolment under way: the secret, its QR code and URI.
pub struct Enrolment {
    pub secret: String,
    pub qr_data_uri: String,
}

#[derive(Template)]
#[template(path = "auth/profile.html")]
struct ProfilePage {
    layout: Layout,
    csrf: String,
    email: String,
    display_name: String,
    totp_enabled: bool,
    totp_required: bool,
    enrolment: Option<Enrolment>,
    sessions: Vec<SessionRow>,
}

#[derive(Deserialize, Default)]
pub struct ProfileQuery {
    #[serde(default)]
    totp: Option<String>,
}

fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The QR code of an `otpauth://` URI as an SVG `data:` URI (CSP allows
/// `img-src data:`); nothing leaves the server.
pub fn qr_data_uri(uri: &str) -> PageResult<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| {
        tracing::error!(error = %e, "cannot make a QR code");
        PageError::Internal
    })?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    ))
}

async fn page(
    state: &ConsoleState,
    admin: &CurrentAdmin,
    enrolment: Option<Enrolment>,
    flashes: Vec<Flash>,
) -> PageResult<Response> {
    let now = state.now();
    let stored = admin.stored(state).await?;
    let sessions = state
        .admins
        .sessions(admin.admin_id, now)
        .await?
        .into_iter()
        .map(|s| SessionRow {
            current: s.session_id == admin.session_id,
            id: s.session_id,
            method: s.method,
            client: s.client_addr,
            agent: s.user_agent,
            started: when(s.created_at),
            last_seen: when(s.last_seen_at),
        })
        .collect();
    let mut layout = Layout::new(admin, "Your profile", section::PROFILE);
    layout.flashes.extend(flashes);
    Ok(render(&ProfilePage {
        layout,
        csrf: admin.csrf.clone(),
        email: stored.email.clone(),
        display_name: stored.display_name.clone(),
        totp_enabled: stored.totp_enabled,
        totp_required: state.admins.totp_required(&stored).await?,
        enrolment,
        sessions,
    }))
}

pub async fn show(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Query(q): Query<ProfileQuery>,
) -> PageResult<Response> {
    let mut flashes = Vec::new();
    if q.totp.as_deref() == Some("required") {
        flashes.push(Flash::info(
            "Your organisation requires two-step verification: set it up below to continue.",
        ));
    }
    page(&state, &admin, None, flashes).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn change_password(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Form(f): Form<PasswordForm>,
) -> PageResult<Response> {
    let secure = state.config.secure();
    if f.password != f.confirm {
        return Ok(redirect_with(
            "/profile",
            Flash::error("The two new passwords are not the same: type the same password twice."),
            secure,
        ));
    }
    let stored = admin.stored(&state).await?;
    match state
        .admins
        .change_password(&stored, &f.current, &f.password, &admin.by(), state.now())
        .await
    {
        Ok(()) => Ok(redirect_with(
            "/profile",
            Flash::success("Your password has been changed."),
            secure,
        )),
        Err(roster_app::AppError::Invalid { message, .. }) => {
            Ok(redirect_with("/profile", Flash::error(message), secure))
        }
        Err(e) => Err(e.into()),
    }
}

/// Starts TOTP enrolment: a new secret, shown as a QR code and as text.
pub async fn totp_start(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
) -> PageResult<Response> {
    let secret = roster_app::admins::new_totp_secret();
    enrolment_page(&state, &admin, secret, Vec::new()).await
}

async fn enrolment_page(
    state: &ConsoleState,
    admin: &CurrentAdmin,
    secret: String,
    flashes: Vec<Flash>,
) -> PageResult<Response> {
    let uri = roster_app::admins::totp_uri(&secret, &admin.email, "Roster");
    let enrolment = Enrolment {
        qr_data_uri: qr_data_uri(&uri)?,
        secret,
    };
    page(state, admin, Some(enrolment), flashes).await
}

#[derive(Deserialize)]
pub struct EnableForm {
    #[serde(default)]
    secret: String,
    #[serde(default)]
    code: String,
}

pub async fn totp_enable(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Form(f): Form<EnableForm>,
) -> PageResult<Response> {
    let secret: String = f
        .secret
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    if secret.len() < 26 {
        return Err(PageError::BadRequest(
            "the enrolment form is incomplete: start the set-up again".into(),
        ));
    }
    let stored = admin.stored(&state).await?;
    match state
        .admins
        .enable_totp(&stored, &secret, &f.code, &admin.by(), state.now())
        .await
    {
        Ok(()) => Ok(redirect_with(
            "/profile",
            Flash::success(
                "Two-step verification is on. You will be asked for a code at every sign-in.",
            ),
            state.config.secure(),
        )),
        Err(roster_app::AppError::Invalid { message, .. }) => {
            let mut res =
                enrolment_page(&state, &admin, secret, vec![Flash::error(message)]).await?;
            *res.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(res)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn totp_disable(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
) -> PageResult<Response> {
    let stored = admin.stored(&state).await?;
    if state.admins.totp_required(&stored).await? {
        return Ok(redirect_with(
            "/profile",
            Flash::error(
                "Your organisation requires two-step verification: it cannot be turned off.",
            ),
            state.config.secure(),
        ));
    }
    state
        .admins
        .disable_totp(&stored, &admin.by(), state.now())
        .await?;
    Ok(redirect_with(
        "/profile",
        Flash::success("Two-step verification is off."),
        state.config.secure(),
    ))
}

/// Ends one of the administrator's sessions.
pub async fn end_session(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let stored = admin.stored(&state).await?;
    state
        .admins
        .end_session(&stored, &id, &admin.by(), state.now())
        .await?;
    Ok(redirect_with(
        "/profile",
        Flash::success("The session has ended."),
        state.config.secure(),
    ))
}

/// "Sign out everywhere": every session, this one too.
pub async fn sign_out_everywhere(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
) -> PageResult<Response> {
    let stored = admin.stored(&state).await?;
    let n = state
        .admins
        .sign_out_everywhere(&stored, &admin.by(), state.now())
        .await?;
    let secure = state.config.secure();
    let mut res = redirect_with(
        "/signin",
        Flash::success(format!(
            "You have signed out everywhere ({n} sessions ended)."
        )),
        secure,
    );
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(cookie_name(secure), "", Some(0), secure),
    );
    Ok(res)
}
