//! Sign-in and the administrator's own pages (issue 14): sign in with a
//! password and TOTP, single sign-on, sign out, invitation and reset links,
//! the profile (password, TOTP enrolment, sessions), API tokens and the
//! administrators of a scope.

use axum::routing::{get, post};
use axum::Router;

use crate::ConsoleState;

pub mod admins;
pub mod links;
pub mod profile;
pub mod security;
pub mod signin;
pub mod sso;
pub mod tokens;

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/signin", get(signin::form).post(signin::submit))
        .route(
            "/signin/totp",
            get(signin::totp_form).post(signin::totp_submit),
        )
        .route("/signout", post(signin::sign_out))
        .route("/sso/{partner}/start", get(sso::start))
        .route("/sso/callback", get(sso::callback))
        .route("/security", get(security::list))
        .route("/profile", get(profile::show))
        .route("/profile/password", post(profile::change_password))
        .route("/profile/totp/start", post(profile::totp_start))
        .route("/profile/totp/enable", post(profile::totp_enable))
        .route("/profile/totp/disable", post(profile::totp_disable))
        .route("/profile/sessions/{id}/end", post(profile::end_session))
        .route(
            "/profile/signout-everywhere",
            post(profile::sign_out_everywhere),
        )
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}/revoke", post(tokens::revoke))
        .route("/administrators", get(admins::list).post(admins::invite))
        .route("/administrators/policy", post(admins::policy))
        .route("/administrators/sso", post(admins::sso))
        .route("/administrators/{id}/reset", post(admins::reset))
        .route("/administrators/{id}/disable", post(admins::disable))
        .route(
            "/invite/{token}",
            get(links::invite_form).post(links::invite_submit),
        )
        .route(
            "/reset/{token}",
            get(links::reset_form).post(links::reset_submit),
        )
}

/// Where to go after signing in: a path of this console only (never
/// another site: `//host`, `/\host` and absolute URLs become `/`).
pub fn safe_next(next: &str) -> String {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\')
        && !next.starts_with("/signin")
        && !next.starts_with("/signout");
    if ok {
        next.to_string()
    } else {
        "/".into()
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn i14_next_stays_on_this_console() {
        assert_eq!(safe_next("/customers/x?q=1"), "/customers/x?q=1");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "evil",
            "/signout",
            "/a\nb",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad}");
        }
    }
}
