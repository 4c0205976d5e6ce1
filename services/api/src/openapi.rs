//! The OpenAPI document, generated from the handlers and types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto::*;
use crate::error::ErrorBody;
use crate::routes::{audit, conflicts, customers, directory, system, users};

struct Bearer;

/// The responses every operation of a kind can give, added where an
/// annotation leaves them out, so the document lists every status the
/// router can answer (issue 10):
/// - 400 `invalid_request` everywhere: a query parameter the operation does
///   not take, or a parameter or body field holding a control character or
///   oversized text, is refused before the handler runs ([`crate::inputs`]);
/// - 401 `bad_token` on every secured operation;
/// - 404 `unknown_customer` on every customer-scoped operation (T1);
/// - 413 `request_too_large` on every operation that takes a body;
/// - 503 `unavailable` on every secured operation: the database cannot be
///   reached (issue 16).
struct EveryResponse;

fn error_response(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

impl Modify for EveryResponse {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(description).into());
                };
                add(
                    "400",
                    "invalid_request: an unknown query parameter, or a parameter or field that holds a control character or is too long",
                );
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add("401", "bad_token: no token, or an unknown or revoked one");
                    add(
                        "503",
                        "unavailable: the database cannot be reached; retry after the Retry-After seconds",
                    );
                }
                if path.starts_with("/v1/customers/{c}") {
                    add(
                        "404",
                        "unknown_customer: no such customer, or not one the caller manages",
                    );
                }
                if operation.request_body.is_some() {
                    add(
                        "413",
                        "request_too_large (file_too_large for an import): the body is over the size limit",
                    );
                }
            }
        }
    }
}

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
        description = "User management of a multi-tenant email-security cloud: customers, domains, users, aliases, rules, audit. Every route below /v1/customers/{c} is scoped to that customer; a customer outside the caller's scope answers 404. Errors are JSON {code, message} with a stable code. This document is rendered for people at /api/docs/.",
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
        directory::HeldView, directory::TestView, directory::SyncStarted, directory::EnableInput, directory::RunView, directory::RunProgressView,
        directory::RunList, directory::RunDetail, directory::RunReport, directory::ObjectList, directory::ExceptionInput,
        directory::ExceptionList, directory::AdditionInput, directory::AdditionList,
        conflicts::ActionInput, conflicts::ActionResult, conflicts::ActionResults,
    )),
    modifiers(&Bearer, &EveryResponse),
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
    // The imports' operations were merged after the modifiers ran.
    EveryResponse.modify(&mut doc);
    doc
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The (method, path) of every `.route(...)` in a router's source.
    fn routes_in(source: &str) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        let mut rest = source;
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let start = rest.find('"').expect("a path literal");
            let len = rest[start + 1..].find('"').expect("its end");
            let path = &rest[start + 1..start + 1 + len];
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find_map(|(k, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    (depth == 0).then_some(k)
                })
                .expect("the end of the route");
            let methods = &rest[start + 1 + len..end];
            for (k, _) in methods.match_indices('(') {
                let before = &methods[..k];
                let name_start = before
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(0, |p| p + 1);
                let name = &before[name_start..];
                if ["get", "post", "put", "delete", "patch"].contains(&name) {
                    out.insert((name.to_string(), path.to_string()));
                }
            }
            rest = &rest[end..];
        }
        out
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc = document();
        let mut out = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("get", &item.get),
                ("post", &item.post),
                ("put", &item.put),
                ("delete", &item.delete),
                ("patch", &item.patch),
            ] {
                if op.is_some() {
                    out.insert((method.to_string(), path.clone()));
                }
            }
        }
        out
    }

    /// Issue 10: the document and the router list the same operations, so
    /// no route is undocumented and no documented operation is missing.
    #[test]
    fn every_route_of_the_router_is_documented_and_every_documented_operation_is_routed() {
        let mut routed = routes_in(include_str!("routes/mod.rs"));
        routed.extend(routes_in(include_str!("routes/imports.rs")));
        assert!(routed.len() > 40, "the route parser found {routed:?}");
        let documented = documented();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from /openapi.json: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "documented but not routed: {unrouted:?}"
        );
    }

    /// Issue 10: every operation documents the responses it can give: 400
    /// (inputs are checked before every handler), 401 when secured, 404
    /// when customer-scoped, 413 when it takes a body, and a success.
    #[test]
    fn every_operation_documents_its_error_responses() {
        let doc = document();
        let mut missing = Vec::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("get", &item.get),
                ("post", &item.post),
                ("put", &item.put),
                ("delete", &item.delete),
                ("patch", &item.patch),
            ] {
                let Some(op) = op else { continue };
                let has = |s: &str| op.responses.responses.contains_key(s);
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                if !op.responses.responses.keys().any(|k| k.starts_with('2')) {
                    missing.push(format!("{method} {path}: 2xx"));
                }
                if !has("400") {
                    missing.push(format!("{method} {path}: 400"));
                }
                if path.starts_with("/v1/") && !secured {
                    missing.push(format!("{method} {path}: security"));
                }
                if secured && !has("401") {
                    missing.push(format!("{method} {path}: 401"));
                }
                if path.starts_with("/v1/customers/{c}") && !has("404") {
                    missing.push(format!("{method} {path}: 404"));
                }
                if op.request_body.is_some() && !has("413") {
                    missing.push(format!("{method} {path}: 413"));
                }
            }
        }
        assert!(missing.is_empty(), "undocumented responses: {missing:#?}");
    }

    /// Issue 8 of the report: the JSON bodies of the user and conflict lists
    /// are documented next to their CSV exports.
    #[test]
    fn list_operations_document_json_and_csv_bodies() {
        let json = serde_json::to_value(document()).unwrap();
        for path in ["/v1/customers/{c}/users", "/v1/customers/{c}/conflicts"] {
            let content = &json["paths"][path]["get"]["responses"]["200"]["content"];
            assert_eq!(
                content["application/json"]["schema"]["$ref"], "#/components/schemas/UserList",
                "{path}: {content}"
            );
            assert!(content["text/csv"].is_object(), "{path}: {content}");
        }
    }

    /// The properties a component schema documents, through `allOf` and
    /// `$ref` (a flattened struct is an `allOf` item).
    fn properties(json: &serde_json::Value, schema: &serde_json::Value) -> BTreeSet<String> {
        let schema = match schema["$ref"].as_str() {
            Some(r) => {
                let name = r.trim_start_matches("#/components/schemas/");
                &json["components"]["schemas"][name]
            }
            None => schema,
        };
        let mut out: BTreeSet<String> = schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        for item in schema["allOf"].as_array().into_iter().flatten() {
            out.extend(properties(json, item));
        }
        out
    }

    /// U2, issue 13: the seven profile fields, written once per shape and
    /// flattened into the user bodies, are still documented as properties
    /// of each; the no-other-fields guard is not.
    #[test]
    fn u2_user_bodies_document_every_profile_field() {
        let json = serde_json::to_value(document()).unwrap();
        let profile = [
            "first_name",
            "last_name",
            "home_phone",
            "mobile",
            "company",
            "department",
            "notes",
        ];
        for (name, others) in [
            ("CreateUser", &["address", "aliases", "kind"][..]),
            ("UpdateUser", &["aliases", "status"][..]),
            (
                "UserView",
                &["id", "address", "status", "aliases", "rules"][..],
            ),
        ] {
            let schema = &json["components"]["schemas"][name];
            let props = properties(&json, schema);
            for field in profile.iter().chain(others) {
                assert!(props.contains(*field), "{name} lacks {field}: {schema}");
            }
            assert!(!props.contains("no_other_fields"), "{name}: {schema}");
        }
        let create = &json["components"]["schemas"]["CreateUser"];
        let required: Vec<&serde_json::Value> = create["allOf"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["required"].as_array().into_iter().flatten())
            .collect();
        assert_eq!(required, [&serde_json::json!("address")], "{create}");
    }

    /// The directory settings schema requires only what the server requires.
    #[test]
    fn directory_settings_require_only_the_kind() {
        let json = serde_json::to_value(document()).unwrap();
        let schema = &json["components"]["schemas"]["DirectorySettingsInput"];
        assert_eq!(schema["required"], serde_json::json!(["kind"]), "{schema}");
    }
}
