//! Delta queries: users and groups, changes, deletions, members@delta,
//! expired tokens.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{delta_round, get, token};
use roster_graph_emulator::{GenerateUsers, GraphEmulator, Group, User};
use serde_json::{json, Value};

fn by_id(items: &[Value]) -> HashMap<String, Value> {
    items
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_string(), i.clone()))
        .collect()
}

#[tokio::test]
async fn user_delta_reports_changes_and_deletions() {
    let emu = GraphEmulator::start().await;
    emu.set_delta_page_size(100);
    let fx = emu.standard_tenant("contoso");
    let t = &fx.tenant;
    let ids = t.generate_users(GenerateUsers::new(250, "contoso.com"));
    let tok = token(&emu, &fx).await;
    let url = format!(
        "{}/users/delta?$select=displayName,mail,accountEnabled,department",
        emu.graph_base()
    );

    // Initial round: every user, 3 pages, then a deltaLink.
    let first = get(&url, &tok, &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.value().len(), 100);
    let next = first.body["@odata.nextLink"].as_str().unwrap();
    assert!(next.starts_with(&format!("{}/users/delta?$skiptoken=", emu.graph_base())));
    assert!(!next.contains("$select"), "query options live in the token");
    let (items, delta_link) = delta_round(&url, &tok, &[]).await;
    assert_eq!(items.len(), 250);
    assert!(delta_link.starts_with(&format!("{}/users/delta?$deltatoken=", emu.graph_base())));
    let u0 = &by_id(&items)[&ids[0]];
    assert_eq!(u0["accountEnabled"], true);
    assert!(u0.get("givenName").is_none(), "only selected properties");

    // Nothing changed: empty page, a new deltaLink.
    let (items, delta_link) = delta_round(&delta_link, &tok, &[]).await;
    assert!(items.is_empty());

    // Changes.
    t.update_user(&ids[1], |u| u.department = Some("Legal".into()));
    t.set_account_enabled(&ids[2], false);
    t.update_user(&ids[3], |u| u.job_title = Some("CFO".into())); // not selected
    t.delete_user(&ids[4]);
    t.delete_user_permanently(&ids[5]);
    let new_id = t.add_user(User::new("newbie@contoso.com").named("New", "Bie"));

    let (items, delta_link) = delta_round(&delta_link, &tok, &[]).await;
    let got = by_id(&items);
    assert_eq!(
        got.keys().cloned().collect::<HashSet<_>>(),
        [&ids[1], &ids[2], &ids[4], &ids[5], &new_id]
            .into_iter()
            .cloned()
            .collect::<HashSet<_>>()
    );
    // Default: changed objects with all selected properties.
    assert_eq!(got[&ids[1]]["department"], "Legal");
    assert!(got[&ids[1]]["mail"].is_string());
    assert_eq!(got[&ids[2]]["accountEnabled"], false);
    assert_eq!(
        got[&ids[4]],
        json!({"id": ids[4], "@removed": {"reason": "changed"}})
    );
    assert_eq!(
        got[&ids[5]],
        json!({"id": ids[5], "@removed": {"reason": "deleted"}})
    );
    assert_eq!(got[&new_id]["mail"], "newbie@contoso.com");

    // Restore and a minimal-response round.
    t.restore_user(&ids[4]);
    t.update_user(&ids[6], |u| u.display_name = Some("Renamed".into()));
    let (items, _) = delta_round(&delta_link, &tok, &[("Prefer", "return=minimal")]).await;
    let got = by_id(&items);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[&ids[6]],
        json!({"displayName": "Renamed", "id": ids[6]})
    );
    assert_eq!(
        got[&ids[4]]["accountEnabled"], true,
        "restored: full object"
    );
}

#[tokio::test]
async fn user_delta_without_select_uses_default_properties() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let id = fx
        .tenant
        .add_user(User::new("a@contoso.com").named("A", "B"));
    let tok = token(&emu, &fx).await;
    let (items, link) = delta_round(&format!("{}/users/delta", emu.graph_base()), &tok, &[]).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["userPrincipalName"], "a@contoso.com");
    assert!(items[0].get("accountEnabled").is_none());
    // Any property change shows the user.
    fx.tenant.set_account_enabled(&id, false);
    let (items, _) = delta_round(&link, &tok, &[]).await;
    assert_eq!(items.len(), 1);
}

#[tokio::test]
async fn delta_scoped_by_id_and_sync_from_now() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let ids = fx
        .tenant
        .generate_users(GenerateUsers::new(10, "contoso.com"));
    let tok = token(&emu, &fx).await;
    let url = format!(
        "{}/users/delta?$filter=id eq '{}' or id eq '{}'&$select=displayName",
        emu.graph_base(),
        ids[0],
        ids[1]
    );
    let (items, link) = delta_round(&url, &tok, &[]).await;
    assert_eq!(items.len(), 2);
    fx.tenant
        .update_user(&ids[1], |u| u.display_name = Some("x".into()));
    fx.tenant
        .update_user(&ids[2], |u| u.display_name = Some("y".into()));
    let (items, _) = delta_round(&link, &tok, &[]).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], ids[1]);

    // Other filters are refused on delta.
    let a = get(
        &format!(
            "{}/users/delta?$filter=accountEnabled eq true",
            emu.graph_base()
        ),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.status, 400);

    // $deltatoken=latest: no data, a deltaLink from now.
    let a = get(
        &format!("{}/users/delta?$deltatoken=latest", emu.graph_base()),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(a.value().is_empty());
    let link = a.body["@odata.deltaLink"].as_str().unwrap().to_string();
    fx.tenant
        .update_user(&ids[9], |u| u.department = Some("Ops".into()));
    let (items, _) = delta_round(&link, &tok, &[]).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], ids[9]);
}

#[tokio::test]
async fn expired_delta_tokens_answer_410() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    fx.tenant
        .generate_users(GenerateUsers::new(5, "contoso.com"));
    let tok = token(&emu, &fx).await;
    let url = format!("{}/users/delta?$select=mail", emu.graph_base());
    let (_, link) = delta_round(&url, &tok, &[]).await;

    fx.tenant.expire_delta_tokens();
    let a = get(&link, &tok, &[]).await;
    assert_eq!(a.status, 410);
    assert_eq!(a.error_code(), "syncStateNotFound");
    let location = a.header("location").unwrap();
    assert_eq!(
        location,
        format!("{}/users/delta?$select=mail&$deltatoken=", emu.graph_base())
    );
    // Following Location starts a full round again.
    let (items, link) = delta_round(location, &tok, &[]).await;
    assert_eq!(items.len(), 5);

    // resyncRequired variant.
    fx.tenant.require_resync();
    let a = get(&link, &tok, &[]).await;
    assert_eq!(a.status, 410);
    assert_eq!(a.error_code(), "resyncRequired");

    // Tokens older than seven days.
    let (_, link) = delta_round(&url, &tok, &[]).await;
    emu.advance_time(Duration::from_secs(7 * 24 * 3600 + 60));
    let tok = token(&emu, &fx).await;
    let a = get(&link, &tok, &[]).await;
    assert_eq!(a.status, 410);
    assert_eq!(a.error_code(), "syncStateNotFound");

    // Garbage.
    let a = get(
        &format!("{}/users/delta?$deltatoken=garbage", emu.graph_base()),
        &tok,
        &[],
    )
    .await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn group_delta_with_members_delta() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let t = &fx.tenant;
    let a = t.add_user(User::new("a@contoso.com"));
    let b = t.add_user(User::new("b@contoso.com"));
    let c = t.add_user(User::new("c@contoso.com"));
    let sales = t.add_group(Group::distribution("Sales", "sales@contoso.com"));
    let empty = t.add_group(Group::distribution("Empty", "empty@contoso.com"));
    let nested = t.add_group(Group::security("Nested"));
    t.set_group_members(&sales, &[&a, &b, &nested]);
    let tok = token(&emu, &fx).await;

    let url = format!(
        "{}/groups/delta?$select=displayName,mail,mailEnabled,members",
        emu.graph_base()
    );
    let (items, link) = delta_round(&url, &tok, &[]).await;
    let got = by_id(&items);
    assert_eq!(got.len(), 3);
    let md = got[&sales]["members@delta"].as_array().unwrap();
    let members: HashSet<(&str, &str)> = md
        .iter()
        .map(|m| {
            (
                m["@odata.type"].as_str().unwrap(),
                m["id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        members,
        [
            ("#microsoft.graph.user", a.as_str()),
            ("#microsoft.graph.user", b.as_str()),
            ("#microsoft.graph.group", nested.as_str())
        ]
        .into()
    );
    assert!(
        got[&empty].get("members@delta").is_none(),
        "no members, no annotation"
    );

    // Membership changes only: the group appears with the delta.
    t.remove_group_member(&sales, &b);
    t.add_group_member(&sales, &c);
    t.delete_user(&a); // leaves its groups
    t.update_group(&empty, |g| g.display_name = Some("Renamed".into()));
    t.delete_group(&nested);
    let (items, _) = delta_round(&link, &tok, &[]).await;
    let got = by_id(&items);
    let md = got[&sales]["members@delta"].as_array().unwrap();
    let mut changes: Vec<(String, bool)> = md
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m.get("@removed").is_some(),
            )
        })
        .collect();
    changes.sort();
    let mut expected = vec![
        (a.clone(), true),
        (b.clone(), true),
        (c.clone(), false),
        (nested.clone(), true),
    ];
    expected.sort();
    assert_eq!(changes, expected);
    let removed_b = md.iter().find(|m| m["id"] == b).unwrap();
    assert_eq!(removed_b["@removed"], json!({"reason": "deleted"}));
    assert_eq!(got[&empty]["displayName"], "Renamed");
    assert_eq!(
        got[&nested],
        json!({"id": nested, "@removed": {"reason": "changed"}})
    );
}

#[tokio::test]
async fn group_delta_without_members_selected_ignores_membership() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let t = &fx.tenant;
    let a = t.add_user(User::new("a@contoso.com"));
    let g = t.add_group(Group::distribution("G", "g@contoso.com"));
    let tok = token(&emu, &fx).await;
    let url = format!("{}/groups/delta?$select=displayName", emu.graph_base());
    let (items, link) = delta_round(&url, &tok, &[]).await;
    assert!(items[0].get("members@delta").is_none());
    t.add_group_member(&g, &a);
    let (items, _) = delta_round(&link, &tok, &[]).await;
    assert!(items.is_empty());
}
