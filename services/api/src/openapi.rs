//! The OpenAPI document, generated from the handlers and types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto::*;
use crate::error::ErrorBody;
use crate::routes::{audit, conflicts, customers, directory, system, users};

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token issued by `roster token` (or ROSTER_BOOTSTRAP_TOKEN).",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Roster",
        description = "User management of a multi-tenant email-security cloud: customers, domains, users, aliases, rules, audit. Every route below /v1/customers/{c} is scoped to that customer; a customer outside the caller's scope answers 404. Errors are JSON {code, message} with a stable code.",
        license(name = "Apache-2.0")
    ),
    paths(
        customers::list, customers::create, customers::get, customers::update,
        customers::domains, customers::add_domain, customers::remove_domain,
        users::list, users::create, users::get, users::update, users::remove,
        users::rules, users::add_rule, users::remove_rule,
        audit::list, audit::history,
        directory::get, directory::put, directory::test, directory::sync, directory::enable, directory::disable,
        directory::runs, directory::run, directory::confirm, directory::discard, directory::objects,
        directory::exceptions, directory::add_exception, directory::remove_exception,
        directory::additions, directory::add_addition, directory::remove_addition,
        conflicts::list, conflicts::act,
        system::healthz, system::readyz, system::metrics, system::openapi,
    ),
    components(schemas(
        ErrorBody, CreateCustomer, UpdateCustomer, CustomerView, CustomerList, LicenceView,
        AddDomain, DomainView, DomainList, DomainRemoval,
        CreateUser, UpdateUser, UserView, UserList, FlagView, RuleView, RuleList, CreateRule,
        AuditView, AuditList, History, Health, ProjectionReadiness,
        directory::DirectorySettingsInput, directory::DirectoryView, directory::LdapView, directory::EntraView, directory::RunningView,
        directory::HeldView, directory::TestView, directory::SyncStarted, directory::EnableInput, directory::RunView,
        directory::RunList, directory::RunDetail, directory::RunReport, directory::ObjectList, directory::ExceptionInput,
        directory::ExceptionList, directory::AdditionInput, directory::AdditionList,
        conflicts::ActionInput, conflicts::ActionResult, conflicts::ActionResults,
    )),
    modifiers(&Bearer),
    tags(
        (name = "customers", description = "Customers of a partner (T1)"),
        (name = "domains", description = "Managed domains (T2, D3.n)"),
        (name = "users", description = "Users, aliases and lists (M1, U1-U6)"),
        (name = "rules", description = "User-level sender rules (U5)"),
        (name = "audit", description = "Audit trail and history (E4)"),
        (name = "directory", description = "Directory sync: settings, test, runs, exceptions, additions (D1-D7, B4)"),
        (name = "conflicts", description = "Users flagged by the directory (D3.m)"),
        (name = "system", description = "Health, metrics, this document"),
    )
)]
pub struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::routes::imports::ImportsApi::openapi());
    doc
}
