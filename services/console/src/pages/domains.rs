//! Domains (T2, D3.n): the list, add, and remove with its consequences
//! shown before the administrator confirms.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use roster_app::customers;
use roster_domain::CustomerCommand;
use roster_events::Domain;
use serde::Deserialize;

use super::view::{self, when};
use super::CustomerPage;
use crate::error::PageError;
use crate::layout::{redirect_with, render, section, Flash};
use crate::session::CurrentAdmin;
use crate::ConsoleState;

/// Addresses listed on the confirmation page at most (the counts are whole).
const SHOWN: usize = 200;

pub struct DomainItem {
    pub name: String,
    pub added: String,
    pub remove_href: String,
}

#[derive(Template)]
#[template(path = "pages/domains.html")]
struct DomainsPage {
    layout: crate::layout::Layout,
    csrf: String,
    name: String,
    action: String,
    domain: String,
    domains: Vec<DomainItem>,
}

/// GET /customers/{c}/domains
pub async fn list(scoped: CustomerPage) -> Result<Response, PageError> {
    let CustomerPage { admin, row, .. } = scoped;
    page(&admin, &row, String::new(), None)
}

fn page(
    admin: &CurrentAdmin,
    row: &roster_projections::queries::CustomerRow,
    typed: String,
    error: Option<String>,
) -> Result<Response, PageError> {
    let base = format!("{}/domains", view::customer_href(&row.customer_id));
    let mut layout = super::layout(
        admin,
        row,
        format!("{}: domains", row.name),
        section::DOMAINS,
    );
    if let Some(e) = error {
        layout = layout.flash(Flash::error(e));
    }
    Ok(render(&DomainsPage {
        layout,
        csrf: admin.csrf.clone(),
        name: row.name.clone(),
        domains: row
            .domains
            .iter()
            .map(|d| DomainItem {
                name: view::domain(&d.domain),
                added: when(d.added_at),
                remove_href: format!("{base}/{}/remove", view::encode(&d.domain)),
            })
            .collect(),
        action: base,
        domain: typed,
    }))
}

#[derive(Deserialize)]
pub struct AddDomain {
    #[serde(default)]
    pub domain: String,
}

/// POST /customers/{c}/domains: T2, a domain is managed by one customer.
pub async fn add(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path(c): Path<String>,
    Form(form): Form<AddDomain>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let domain = match Domain::parse(form.domain.trim()) {
        Ok(d) => d,
        Err(e) => {
            let why = format!("“{}” is not a domain name: {e}", form.domain.trim());
            return page(&admin, &row, form.domain, Some(why));
        }
    };
    let app = &state.app;
    let command = CustomerCommand::AddDomain {
        domain: domain.clone(),
    };
    match app
        .written(customers::customer_command(
            app,
            admin.meta(customer, &state),
            command,
        ))
        .await
    {
        Ok(_) => Ok(redirect_with(
            &format!("{}/domains", view::customer_href(&c)),
            Flash::success(format!(
                "{} is now managed by {}.",
                view::domain(domain.as_str()),
                row.name
            )),
            state.config.secure(),
        )),
        Err(e) => page(
            &admin,
            &row,
            form.domain,
            Some(view::message(&PageError::from(e))),
        ),
    }
}

#[derive(Template)]
#[template(path = "pages/domain_remove.html")]
struct RemovePage {
    layout: crate::layout::Layout,
    csrf: String,
    domain: String,
    users_count: usize,
    aliases_count: usize,
    users_deleted: Vec<String>,
    aliases_removed: Vec<String>,
    more_users: usize,
    more_aliases: usize,
    action: String,
    back: String,
}

/// The managed domain of a path, or the not-found page.
fn managed(row: &roster_projections::queries::CustomerRow, raw: &str) -> Result<Domain, PageError> {
    let domain = Domain::parse(raw).map_err(|_| PageError::NotFound)?;
    if row.domains.iter().any(|d| d.domain == domain.as_str()) {
        Ok(domain)
    } else {
        Err(PageError::NotFound)
    }
}

/// GET /customers/{c}/domains/{domain}/remove: D3.n, what the removal
/// would delete and remove, before the administrator confirms.
pub async fn confirm(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path((c, d)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let domain = managed(&row, &d)?;
    let preview = customers::removal_preview(&state.app, customer, &domain).await?;
    let shown = |list: &[roster_events::Address]| -> Vec<String> {
        list.iter()
            .take(SHOWN)
            .map(|a| view::address(a.as_str()))
            .collect()
    };
    let base = format!("{}/domains", view::customer_href(&c));
    let name = view::domain(domain.as_str());
    Ok(render(&RemovePage {
        layout: super::layout(&admin, &row, format!("Remove {name}"), section::DOMAINS),
        csrf: admin.csrf.clone(),
        users_count: preview.users_deleted.len(),
        aliases_count: preview.aliases_removed.len(),
        users_deleted: shown(&preview.users_deleted),
        aliases_removed: shown(&preview.aliases_removed),
        more_users: preview.users_deleted.len().saturating_sub(SHOWN),
        more_aliases: preview.aliases_removed.len().saturating_sub(SHOWN),
        action: format!("{base}/{}/remove", view::encode(domain.as_str())),
        back: base,
        domain: name,
    }))
}

/// POST /customers/{c}/domains/{domain}/remove: D3.n, at once.
pub async fn remove(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path((c, d)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let domain = managed(&row, &d)?;
    let app = &state.app;
    let done = app
        .written(customers::remove_domain(
            app,
            admin.meta(customer, &state),
            domain.clone(),
        ))
        .await?;
    Ok(redirect_with(
        &format!("{}/domains", view::customer_href(&c)),
        Flash::success(format!(
            "{} removed: {} user(s) deleted, {} alias(es) removed.",
            view::domain(domain.as_str()),
            done.users_deleted.len(),
            done.aliases_removed.len()
        )),
        state.config.secure(),
    )
    .into_response())
}
