//! What `templates/base.html` needs on every page: the signed-in
//! administrator (header, sign-out form), the navigation (Customers, and
//! within a customer its sections), and flash messages. A page's template
//! struct holds a `layout: Layout` field and `{% extends "base.html" %}`.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::session::CurrentAdmin;

/// A one-time message shown at the top of the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// `success`, `error` or `info` (the CSS class and the role).
    pub kind: String,
    pub message: String,
}

impl Flash {
    pub fn success(message: impl Into<String>) -> Self {
        Flash {
            kind: "success".into(),
            message: message.into(),
        }
    }
    pub fn error(message: impl Into<String>) -> Self {
        Flash {
            kind: "error".into(),
            message: message.into(),
        }
    }
    pub fn info(message: impl Into<String>) -> Self {
        Flash {
            kind: "info".into(),
            message: message.into(),
        }
    }
    /// `role="alert"` for errors (read out at once), `status` otherwise.
    pub fn role(&self) -> &'static str {
        if self.kind == "error" {
            "alert"
        } else {
            "status"
        }
    }
}

/// The flash cookie's value (URL-encoded `kind=message`).
pub fn encode_flash(flash: &Flash) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair(&flash.kind, &flash.message)
        .finish()
}

pub fn decode_flash(value: &str) -> Vec<Flash> {
    form_urlencoded::parse(value.as_bytes())
        .filter(|(k, _)| matches!(k.as_ref(), "success" | "error" | "info"))
        .map(|(k, v)| Flash {
            kind: k.into_owned(),
            message: v.chars().take(500).collect(),
        })
        .collect()
}

/// A redirect (303 See Other) that shows `flash` on the page it leads to.
pub fn redirect_with(to: &str, flash: Flash, secure: bool) -> Response {
    let mut res = axum::response::Redirect::to(to).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        crate::session::set_cookie(
            crate::session::FLASH_COOKIE,
            &encode_flash(&flash),
            Some(60),
            secure,
        ),
    );
    res
}

/// The signed-in administrator as the header shows it.
#[derive(Debug, Clone)]
pub struct AdminBar {
    pub display_name: String,
    pub email: String,
    pub csrf: String,
    pub is_partner: bool,
}

/// The customer a page is about (its sub-navigation).
#[derive(Debug, Clone)]
pub struct CustomerNav {
    pub id: String,
    pub name: String,
}

/// The sections of the navigation; `section` names the current one.
pub mod section {
    pub const CUSTOMERS: &str = "customers";
    pub const DASHBOARD: &str = "dashboard";
    pub const DOMAINS: &str = "domains";
    pub const USERS: &str = "users";
    pub const IMPORT: &str = "import";
    pub const DIRECTORY: &str = "directory";
    pub const CONFLICTS: &str = "conflicts";
    pub const RUNS: &str = "runs";
    pub const AUDIT: &str = "audit";
    pub const API: &str = "api";
    pub const PROFILE: &str = "profile";
    pub const TOKENS: &str = "tokens";
    pub const ADMINS: &str = "admins";
    pub const SECURITY: &str = "security";
    pub const NONE: &str = "";
}

/// What the base template shows around a page.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The page's title (also the `<title>`, after "Roster").
    pub title: String,
    pub admin: Option<AdminBar>,
    pub customer: Option<CustomerNav>,
    /// The current navigation section ([`section`]).
    pub section: &'static str,
    pub flashes: Vec<Flash>,
    /// The stylesheet and script URLs (content-hashed).
    pub css_url: String,
    pub js_url: String,
}

impl Layout {
    /// A page of a signed-in administrator.
    pub fn new(admin: &CurrentAdmin, title: impl Into<String>, section: &'static str) -> Self {
        Layout {
            title: title.into(),
            admin: Some(AdminBar {
                display_name: admin.display_name.clone(),
                email: admin.email.clone(),
                csrf: admin.csrf.clone(),
                is_partner: admin.is_partner(),
            }),
            customer: None,
            section,
            flashes: admin.flashes.clone(),
            css_url: crate::assets::url("console.css"),
            js_url: crate::assets::url("console.js"),
        }
    }

    /// A page about one customer: its sections appear in the navigation.
    pub fn with_customer(mut self, id: impl ToString, name: impl Into<String>) -> Self {
        self.customer = Some(CustomerNav {
            id: id.to_string(),
            name: name.into(),
        });
        self
    }

    /// Adds a message shown on this page.
    pub fn flash(mut self, flash: Flash) -> Self {
        self.flashes.push(flash);
        self
    }

    /// A page without a signed-in administrator (sign-in, errors).
    pub fn anonymous(title: impl Into<String>) -> Self {
        Layout {
            title: title.into(),
            admin: None,
            customer: None,
            section: section::NONE,
            flashes: Vec::new(),
            css_url: crate::assets::url("console.css"),
            js_url: crate::assets::url("console.js"),
        }
    }

    /// Whether `s` is the current section (for `aria-current`).
    pub fn is(&self, s: &str) -> bool {
        self.section == s
    }
}

/// Renders a template as an HTML response (500 page if rendering fails).
pub fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => {
            let mut res = html.into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "a console template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A page template as a response: `Html(page)` in a handler.
pub struct Html<T>(pub T);

impl<T: Template> IntoResponse for Html<T> {
    fn into_response(self) -> Response {
        render(&self.0)
    }
}
