//! Collections: paging, $select, $filter, advanced queries, $count,
//! $search, members.

mod common;

use std::collections::HashSet;

use common::{get, get_all, token};
use roster_graph_emulator::{GenerateUsers, GraphEmulator, Group, Permission, User};

const EVENTUAL: (&str, &str) = ("ConsistencyLevel", "eventual");

#[tokio::test]
async fn pages_through_2500_users_with_opaque_absolute_next_links() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let ids = fx
        .tenant
        .generate_users(GenerateUsers::new(2_500, "contoso.com"));
    let tok = token(&emu, &fx).await;

    // Default page size: 100.
    let first = get(&format!("{}/users", emu.graph_base()), &tok, &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.value().len(), 100);
    assert_eq!(
        first.body["@odata.context"],
        format!("{}/$metadata#users", emu.graph_base())
    );
    let next = first.body["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{}/users?", emu.graph_base())),
        "{next}"
    );
    assert!(next.contains("$skiptoken="));
    assert!(first
        .header("content-type")
        .unwrap()
        .starts_with("application/json;odata.metadata=minimal"));
    assert!(first.header("request-id").is_some());

    // $top=999: three pages, the nextLink repeats $top and $select.
    let url = format!("{}/users?$top=999&$select=id,mail", emu.graph_base());
    let (items, pages) = get_all(&url, &tok, &[]).await;
    assert_eq!(pages, 3);
    assert_eq!(items.len(), 2_500);
    let seen: HashSet<&str> = items.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(seen.len(), 2_500);
    assert_eq!(seen, ids.iter().map(String::as_str).collect());
    let second = emu.graph_requests()[2].clone();
    assert_eq!(second.param("$top"), Some("999"));
    assert_eq!(second.param("$select"), Some("id,mail"));
    assert!(second.param("$skiptoken").is_some());

    // A tampered skiptoken.
    let a = get(
        &format!("{}/users?$skiptoken=bm9wZQ", emu.graph_base()),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), "Directory_ExpiredPageToken");
}

#[tokio::test]
async fn page_size_limits() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let tok = token(&emu, &fx).await;
    for top in ["0", "1000"] {
        let a = get(&format!("{}/users?$top={top}", emu.graph_base()), &tok, &[]).await;
        assert_eq!(a.status, 400);
        assert_eq!(a.error_code(), "Request_UnsupportedQuery");
        assert_eq!(
            a.error_message(),
            format!("Invalid page size specified: '{top}'. Must be between 1 and 999 inclusive.")
        );
    }
    let a = get(&format!("{}/users?$skip=10", emu.graph_base()), &tok, &[]).await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn default_properties_and_select() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let mut u = User::new("alice@contoso.com").named("Alice", "Smith");
    u.business_phones = vec!["+1 425 555 0100".into()];
    u.company_name = Some("Contoso".into());
    u.department = Some("Sales".into());
    u.proxy_addresses.push("smtp:a.smith@contoso.com".into());
    let id = fx.tenant.add_user(u);
    let tok = token(&emu, &fx).await;

    let a = get(&format!("{}/users", emu.graph_base()), &tok, &[]).await;
    let user = &a.value()[0];
    let keys: HashSet<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: HashSet<&str> = [
        "businessPhones",
        "displayName",
        "givenName",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
        "id",
    ]
    .into();
    assert_eq!(keys, expected);
    assert_eq!(
        user["businessPhones"],
        serde_json::json!(["+1 425 555 0100"])
    );
    assert_eq!(user["jobTitle"], serde_json::Value::Null);

    // $select: exactly what was asked (names case-insensitive).
    let a = get(
        &format!(
            "{}/users?$select=id,mail,ProxyAddresses,accountEnabled,companyName,department,onPremisesImmutableId",
            emu.graph_base()
        ),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let user = &a.value()[0];
    assert_eq!(user.as_object().unwrap().len(), 7);
    assert_eq!(user["id"], id);
    assert_eq!(user["accountEnabled"], true);
    assert_eq!(
        user["proxyAddresses"],
        serde_json::json!(["SMTP:alice@contoso.com", "smtp:a.smith@contoso.com"])
    );
    assert_eq!(user["onPremisesImmutableId"], serde_json::Value::Null);
    assert_eq!(
        a.body["@odata.context"],
        format!(
            "{}/$metadata#users(id,mail,proxyAddresses,accountEnabled,companyName,department,onPremisesImmutableId)",
            emu.graph_base()
        )
    );

    // No id unless selected.
    let a = get(
        &format!("{}/users?$select=displayName", emu.graph_base()),
        &tok,
        &[],
    )
    .await;
    assert_eq!(
        a.value()[0],
        serde_json::json!({"displayName": "Alice Smith"})
    );

    // Unknown property.
    let a = get(
        &format!("{}/users?$select=id,nope", emu.graph_base()),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), "BadRequest");
    assert_eq!(
        a.error_message(),
        "Parsing OData Select and Expand failed: Could not find a property named 'nope' on type 'microsoft.graph.user'."
    );
    // Single-object-only property on a collection.
    let a = get(
        &format!("{}/users?$select=aboutMe", emu.graph_base()),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.status, 501);
    // ... fine on a single user.
    let a = get(
        &format!("{}/users/{id}?$select=id,aboutMe", emu.graph_base()),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["id"], id);
    // By userPrincipalName, and 404 for unknown objects.
    let a = get(
        &format!("{}/users/alice@contoso.com", emu.graph_base()),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.body["id"], id);
    let a = get(
        &format!(
            "{}/users/00000000-0000-4000-8000-000000000000",
            emu.graph_base()
        ),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error_code(), "Request_ResourceNotFound");
    // Unknown segment.
    let a = get(&format!("{}/contacts", emu.graph_base()), &tok, &[]).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.error_message(),
        "Resource not found for the segment 'contacts'."
    );
}

async fn sample(emu: &GraphEmulator) -> (String, Vec<String>) {
    let fx = emu.standard_tenant("contoso");
    let mut ids = Vec::new();
    for (i, (given, company, enabled)) in [
        ("Alice", Some("Contoso"), true),
        ("Bob", Some("Fabrikam"), false),
        ("Carol", None, true),
        ("Dave", Some("Contoso"), true),
    ]
    .into_iter()
    .enumerate()
    {
        let mut u =
            User::new(&format!("{}@contoso.com", given.to_lowercase())).named(given, "Test");
        u.company_name = company.map(str::to_string);
        u.account_enabled = enabled;
        if i % 2 == 0 {
            u.proxy_addresses
                .push(format!("smtp:{}@contoso.net", given.to_lowercase()));
        }
        ids.push(fx.tenant.add_user(u));
    }
    (token(emu, &fx).await, ids)
}

async fn names(
    emu: &GraphEmulator,
    tok: &str,
    query: &str,
    headers: &[(&str, &str)],
) -> Vec<String> {
    let (items, _) = get_all(&format!("{}/users?{query}", emu.graph_base()), tok, headers).await;
    let mut v: Vec<String> = items
        .iter()
        .map(|u| u["givenName"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn filters_that_work_by_default() {
    let emu = GraphEmulator::start().await;
    let (tok, _) = sample(&emu).await;
    assert_eq!(
        names(&emu, &tok, "$filter=accountEnabled eq false", &[]).await,
        ["Bob"]
    );
    assert_eq!(
        names(
            &emu,
            &tok,
            "$filter=startsWith(givenName,'a') or givenName eq 'DAVE'",
            &[]
        )
        .await,
        ["Alice", "Dave"]
    );
    assert_eq!(
        names(
            &emu,
            &tok,
            "$filter=proxyAddresses/any(p:startsWith(p,'smtp:')) and accountEnabled eq true",
            &[]
        )
        .await,
        ["Alice", "Carol", "Dave"]
    );
    assert_eq!(
        names(
            &emu,
            &tok,
            "$filter=proxyAddresses/any(p:p eq 'smtp:carol@contoso.net')",
            &[]
        )
        .await,
        ["Carol"]
    );
    assert_eq!(
        names(
            &emu,
            &tok,
            "$filter=mail in ('bob@contoso.com','dave@contoso.com')",
            &[]
        )
        .await,
        ["Bob", "Dave"]
    );
}

#[tokio::test]
async fn advanced_query_rules() {
    let emu = GraphEmulator::start().await;
    let (tok, _) = sample(&emu).await;
    let base = emu.graph_base();

    // ne, endsWith, not, $count in filters, companyName: advanced only.
    for filter in [
        "accountEnabled ne true",
        "endsWith(mail,'@contoso.com')",
        "NOT startsWith(givenName,'A')",
        "proxyAddresses/$count eq 1",
        "companyName eq 'Contoso'",
    ] {
        for headers in [&[][..], &[EVENTUAL][..]] {
            // Without both the header and $count=true.
            let url = if headers.is_empty() {
                format!("{base}/users?$filter={filter}&$count=true")
            } else {
                format!("{base}/users?$filter={filter}")
            };
            let a = get(&url, &tok, headers).await;
            assert_eq!(a.status, 400, "{url}");
            assert_eq!(a.error_code(), "Request_UnsupportedQuery", "{url}");
        }
        let a = get(
            &format!("{base}/users?$filter={filter}&$count=true"),
            &tok,
            &[EVENTUAL],
        )
        .await;
        assert_eq!(a.status, 200, "{filter}: {}", a.body);
        assert!(a.body["@odata.count"].is_u64());
    }
    let a = get(
        &format!("{base}/users?$filter=endsWith(mail,'x')"),
        &tok,
        &[],
    )
    .await;
    assert_eq!(
        a.error_message(),
        "Operator 'endsWith' is not supported because the required parameters might be missing. \
         Try adding $count=true query parameter and ConsistencyLevel:eventual header. \
         Refer to https://aka.ms/graph-docs/advanced-queries for more information"
    );

    // Results of advanced queries.
    assert_eq!(
        names(
            &emu,
            &tok,
            "$filter=companyName ne null and NOT(companyName eq 'Fabrikam')&$count=true",
            &[EVENTUAL]
        )
        .await,
        ["Alice", "Dave"]
    );
    assert_eq!(
        names(
            &emu,
            &tok,
            "$filter=accountEnabled ne true&$count=true",
            &[EVENTUAL]
        )
        .await,
        ["Bob"]
    );
    assert_eq!(
        names(
            &emu,
            &tok,
            "$filter=proxyAddresses/any(p:endsWith(p,'@contoso.net'))&$count=true",
            &[EVENTUAL]
        )
        .await,
        ["Alice", "Carol"]
    );

    // $count=true without the header is silently ignored.
    let a = get(&format!("{base}/users?$count=true"), &tok, &[]).await;
    assert_eq!(a.status, 200);
    assert!(a.body.get("@odata.count").is_none());
    // With it, @odata.count on the first page only.
    let a = get(
        &format!("{base}/users?$count=true&$top=2"),
        &tok,
        &[EVENTUAL],
    )
    .await;
    assert_eq!(a.body["@odata.count"], 4);
    let next = a.body["@odata.nextLink"].as_str().unwrap();
    let b = get(next, &tok, &[EVENTUAL]).await;
    assert!(b.body.get("@odata.count").is_none());
    assert_eq!(b.value().len(), 2);

    // $count segment.
    let a = get(&format!("{base}/users/$count"), &tok, &[]).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), "Request_BadRequest");
    assert_eq!(a.error_message(), "$count is not currently supported.");
    let a = get(
        &format!("{base}/users/$count?$filter=accountEnabled eq true"),
        &tok,
        &[EVENTUAL],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, serde_json::json!(3));

    // Filter errors.
    let a = get(&format!("{base}/users?$filter=shoeSize eq '42'"), &tok, &[]).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), "BadRequest");
    assert!(a
        .error_message()
        .contains("Could not find a property named 'shoeSize'"));
    let a = get(&format!("{base}/users?$filter=givenName eq"), &tok, &[]).await;
    assert_eq!(a.status, 400);
    assert!(a.error_message().contains("Syntax error"));
    let a = get(
        &format!("{base}/users?$filter=createdDateTime ge 'x'"),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.error_code(), "Request_UnsupportedQuery");
}

#[tokio::test]
async fn search_and_orderby() {
    let emu = GraphEmulator::start().await;
    let (tok, _) = sample(&emu).await;
    let base = emu.graph_base();
    let a = get(
        &format!("{base}/users?$search=\"displayName:car\""),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), "Request_UnsupportedQuery");
    assert_eq!(
        names(
            &emu,
            &tok,
            "$search=\"displayName:car\" OR \"displayName:bo\"",
            &[EVENTUAL]
        )
        .await,
        ["Bob", "Carol"]
    );

    let (items, pages) = get_all(
        &format!("{base}/users?$orderby=displayName desc&$top=3&$select=displayName"),
        &tok,
        &[],
    )
    .await;
    assert_eq!(pages, 2);
    let got: Vec<&str> = items
        .iter()
        .map(|u| u["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["Dave Test", "Carol Test", "Bob Test", "Alice Test"]);
    let a = get(
        &format!("{base}/users?$orderby=displayName&$filter=accountEnabled eq true"),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.error_message(),
        "Sorting not supported for current query."
    );
}

#[tokio::test]
async fn groups_and_members() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let t = &fx.tenant;
    let alice = t.add_user(User::new("alice@contoso.com").named("Alice", "A"));
    let bob = t.add_user(User::new("bob@contoso.com").named("Bob", "B"));
    let carol = t.add_user(User::new("carol@contoso.com").named("Carol", "C"));
    let sales = t.add_group(Group::distribution("Sales", "sales@contoso.com"));
    let all = t.add_group(Group::unified("All Staff", "all@contoso.com"));
    let sec = t.add_group(Group::security("Admins"));
    t.set_group_members(&sales, &[&alice, &bob]);
    t.set_group_members(&all, &[&sales, &carol]);
    let tok = token(&emu, &fx).await;
    let base = emu.graph_base();

    // Mail-enabled groups.
    let (groups, _) = get_all(
        &format!("{base}/groups?$filter=mailEnabled eq true&$select=id,displayName,mail,mailEnabled,securityEnabled,groupTypes,proxyAddresses"),
        &tok,
        &[],
    )
    .await;
    assert_eq!(groups.len(), 2);
    let unified = groups.iter().find(|g| g["id"] == all).unwrap();
    assert_eq!(unified["groupTypes"], serde_json::json!(["Unified"]));
    assert_eq!(
        unified["proxyAddresses"],
        serde_json::json!(["SMTP:all@contoso.com"])
    );
    assert!(groups.iter().all(|g| g["id"] != sec));

    // Direct members with @odata.type.
    let a = get(&format!("{base}/groups/{all}/members"), &tok, &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body["@odata.context"],
        format!("{base}/$metadata#directoryObjects")
    );
    let types: HashSet<(String, String)> = a
        .value()
        .iter()
        .map(|m| {
            (
                m["@odata.type"].as_str().unwrap().to_string(),
                m["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            ("#microsoft.graph.group".to_string(), sales.clone()),
            ("#microsoft.graph.user".to_string(), carol.clone())
        ]
        .into()
    );
    let user_member = a.value().iter().find(|m| m["id"] == carol).unwrap();
    assert_eq!(user_member["mail"], "carol@contoso.com");

    // Transitive members: nested users and the nested group.
    let a = get(
        &format!("{base}/groups/{all}/transitiveMembers?$select=id"),
        &tok,
        &[],
    )
    .await;
    let ids: HashSet<&str> = a
        .value()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [alice.as_str(), bob.as_str(), carol.as_str(), sales.as_str()].into()
    );

    // Paging members.
    let (members, pages) =
        get_all(&format!("{base}/groups/{sales}/members?$top=1"), &tok, &[]).await;
    assert_eq!((members.len(), pages), (2, 2));

    // Filters and casts on members need the advanced parameters.
    let a = get(
        &format!("{base}/groups/{all}/members?$filter=startsWith(displayName,'c')"),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.status, 400);
    let a = get(
        &format!("{base}/groups/{all}/members/microsoft.graph.user?$count=true&$select=id"),
        &tok,
        &[EVENTUAL],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["@odata.count"], 1);
    let a = get(
        &format!("{base}/groups/{all}/members/$count"),
        &tok,
        &[EVENTUAL],
    )
    .await;
    assert_eq!(a.body, serde_json::json!(2));

    // Unknown group.
    let a = get(
        &format!("{base}/groups/00000000-0000-4000-8000-000000000000/members"),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error_code(), "Request_ResourceNotFound");
}

#[tokio::test]
async fn members_without_user_permission_are_limited() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let alice = fx.tenant.add_user(User::new("alice@contoso.com"));
    let g = fx
        .tenant
        .add_group(Group::distribution("G", "g@contoso.com"));
    fx.tenant.add_group_member(&g, &alice);
    fx.app.revoke(Permission::UserReadAll);
    fx.app.revoke(Permission::GroupReadAll);
    let tok = token(&emu, &fx).await;
    let a = get(
        &format!("{}/groups/{g}/members", emu.graph_base()),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.status, 200);
    let m = &a.value()[0];
    assert_eq!(m["@odata.type"], "#microsoft.graph.user");
    assert_eq!(m["id"], alice);
    assert_eq!(m["mail"], serde_json::Value::Null);
    assert_eq!(m["userPrincipalName"], serde_json::Value::Null);
}
