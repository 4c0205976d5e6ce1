//! The partner's customer list (search, seats used / limit, directory
//! status) with "create a customer", and a customer's dashboard.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use roster_app::customers;
use roster_events::{CustomerId, Domain};
use roster_projections::console::{self as reads, CustomerSummary};
use serde::Deserialize;

use super::view::{self, directory_label, run_status_label, when};
use super::CustomerPage;
use crate::error::PageError;
use crate::layout::{render, section, Flash, Layout};
use crate::session::CurrentAdmin;
use crate::ConsoleState;
use roster_store::auth::Scope;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub q: String,
}

pub struct CustomerItem {
    pub href: String,
    pub name: String,
    pub seats_used: i64,
    pub seat_limit: i64,
    pub over_limit: bool,
    pub directory: String,
    pub last_run: String,
}

impl CustomerItem {
    fn of(c: CustomerSummary) -> Self {
        CustomerItem {
            href: view::customer_href(&c.customer_id),
            over_limit: c.over_limit(),
            directory: c
                .directory
                .map(|d| format!("{} sync on", directory_label(d)))
                .unwrap_or_else(|| "Manual (no sync)".into()),
            last_run: match (&c.last_run_status, c.last_run_at) {
                (Some(s), Some(at)) => format!("{}, {}", run_status_label(*s), when(at)),
                _ => "Never".into(),
            },
            name: c.name,
            seats_used: c.seats_used,
            seat_limit: c.seat_limit,
        }
    }
}

#[derive(Default, Deserialize)]
pub struct NewCustomer {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub seat_limit: String,
    #[serde(default)]
    pub domains: String,
}

#[derive(Template)]
#[template(path = "pages/customers.html")]
struct CustomersPage {
    layout: Layout,
    csrf: String,
    q: String,
    customers: Vec<CustomerItem>,
    form: NewCustomer,
}

/// GET /customers: a partner administrator's customers; a customer
/// administrator goes straight to its own customer.
pub async fn list(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    let partner = match admin.scope {
        Scope::Partner(p) => p,
        Scope::Customer(c) => {
            return Ok(Redirect::to(&view::customer_href(&c.to_string())).into_response())
        }
    };
    page(
        &state,
        &admin,
        partner,
        query.q,
        NewCustomer::default(),
        None,
    )
    .await
}

async fn page(
    state: &ConsoleState,
    admin: &CurrentAdmin,
    partner: roster_events::PartnerId,
    q: String,
    form: NewCustomer,
    error: Option<String>,
) -> Result<Response, PageError> {
    let q = q.trim().to_string();
    let rows = reads::customer_summaries(&state.app.store, partner, Some(q.as_str())).await?;
    let mut layout = Layout::new(admin, "Customers", section::CUSTOMERS);
    if let Some(e) = error {
        layout = layout.flash(Flash::error(e));
    }
    Ok(render(&CustomersPage {
        layout,
        csrf: admin.csrf.clone(),
        q,
        customers: rows.into_iter().map(CustomerItem::of).collect(),
        form,
    }))
}

/// What is wrong with a new customer's form, said so it can be fixed.
fn parse_new(form: &NewCustomer) -> Result<(String, u64, Vec<Domain>), String> {
    let name = form.name.trim();
    if name.is_empty() {
        return Err("Give the customer a name.".into());
    }
    let seat_limit: u64 =
        form.seat_limit.trim().parse().map_err(|_| {
            "The seat limit must be a whole number of users, 0 or more.".to_string()
        })?;
    let mut domains = Vec::new();
    for line in form
        .domains
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let d = Domain::parse(line).map_err(|e| format!("“{line}” is not a domain name: {e}"))?;
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    Ok((name.to_string(), seat_limit, domains))
}

/// POST /customers: creates a customer of the partner, with its domains.
pub async fn create(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Form(form): Form<NewCustomer>,
) -> Result<Response, PageError> {
    let Scope::Partner(partner) = admin.scope else {
        return Err(PageError::NotFound);
    };
    let (name, seat_limit, domains) = match parse_new(&form) {
        Ok(v) => v,
        Err(e) => return page(&state, &admin, partner, String::new(), form, Some(e)).await,
    };
    let id = CustomerId::new();
    let meta = admin.meta(id, &state);
    let app = &state.app;
    let done = app
        .written(customers::create_customer(
            app, meta, partner, name, seat_limit, domains,
        ))
        .await;
    match done {
        Ok(_) => Ok(Redirect::to(&view::customer_href(&id.to_string())).into_response()),
        Err(e) => {
            let message = view::message(&PageError::from(e));
            page(&state, &admin, partner, String::new(), form, Some(message)).await
        }
    }
}

pub struct HeldItem {
    pub started: String,
    /// The run's page, with Confirm and Discard (issue 15).
    pub href: String,
    pub would_flag: i64,
    pub directory_users: i64,
}

pub struct DirectoryCard {
    pub source: &'static str,
    pub interval: String,
    pub last_run: String,
    pub next_run: String,
}

pub struct ActivityItem {
    pub when: String,
    pub what: String,
    pub subject: String,
    pub href: String,
    pub actor: String,
}

#[derive(Template)]
#[template(path = "pages/dashboard.html")]
struct DashboardPage {
    layout: Layout,
    name: String,
    licence: roster_projections::queries::Licence,
    directory: Option<DirectoryCard>,
    last_run: String,
    held: Vec<HeldItem>,
    conflicts: i64,
    conflicts_href: String,
    recent: Vec<ActivityItem>,
}

fn run_line(run: Option<&roster_projections::directory::RunRow>) -> String {
    match run {
        Some(r) => format!("{}, {}", run_status_label(r.status), when(r.started_at)),
        None => "Never".into(),
    }
}

/// GET /customers/{c}: the customer's dashboard.
pub async fn dashboard(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let store = &state.app.store;
    let d = reads::dashboard(store, customer, 10).await?;
    let directory = d.directory.enabled.map(|kind| DirectoryCard {
        source: directory_label(kind),
        interval: d.directory.interval.clone().unwrap_or_default(),
        last_run: run_line(d.directory.last_run.as_ref()),
        next_run: match d.directory.next_run_at {
            Some(at) => when(at),
            None => "At the next check (within a minute)".into(),
        },
    });
    let c_str = customer.to_string();
    Ok(render(&DashboardPage {
        layout: super::layout(
            &admin,
            &row,
            format!("{}: dashboard", row.name),
            section::DASHBOARD,
        ),
        name: row.name.clone(),
        licence: d.licence,
        last_run: d
            .directory
            .last_run
            .as_ref()
            .map(|r| run_line(Some(r)))
            .unwrap_or_default(),
        directory,
        held: d
            .held_runs
            .iter()
            .map(|r| HeldItem {
                started: when(r.started_at),
                href: format!("{}/runs/{}", view::customer_href(&c_str), r.run_id),
                would_flag: r.would_flag.unwrap_or(0),
                directory_users: r.directory_users.unwrap_or(0),
            })
            .collect(),
        conflicts: d.conflicts,
        conflicts_href: format!("{}/conflicts", view::customer_href(&c_str)),
        recent: d
            .recent
            .iter()
            .map(|e| ActivityItem {
                when: when(e.recorded_at),
                what: super::history::event_label(&e.event_type).to_string(),
                href: match (e.aggregate_type.as_str(), &e.address) {
                    ("User", Some(a)) if !a.is_empty() => view::user_href(&c_str, a),
                    _ => String::new(),
                },
                subject: e
                    .address
                    .as_deref()
                    .or(e.subject.as_deref())
                    .map(view::address)
                    .unwrap_or_default(),
                actor: super::history::actor_label(&e.actor),
            })
            .collect(),
    }))
}
