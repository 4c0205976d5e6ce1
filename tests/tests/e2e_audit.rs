//! End-to-end audit queries (E4) and time travel (B7) through the real
//! `roster` binary over HTTP, on SQLite and on PostgreSQL.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use roster_testkit::PgDb;
use roster_tests::process::enc;
use roster_tests::{Api, RosterProcess};
use serde_json::{json, Value};

async fn on_both<F, Fut>(f: F)
where
    F: Fn(RosterProcess) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    f(RosterProcess::start(&dir.path().join("sqlite"), None).await).await;
    let pg = PgDb::create().await.unwrap();
    f(RosterProcess::start(&dir.path().join("pg"), Some(pg.url())).await).await;
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An instant strictly between what was written before and after it.
async fn instant() -> String {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    t
}

async fn ok(api: &Api, path: &str) -> Value {
    let (s, v) = api.get(path).await;
    assert_eq!(s, StatusCode::OK, "{path}: {v}");
    v
}

/// Every audit entry of a query, following `next_page`.
async fn all_pages(api: &Api, path: &str, page_size: usize) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut out = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut p = format!("{path}{sep}page_size={page_size}");
        if let Some(t) = &page {
            p.push_str(&format!("&page={}", enc(t)));
        }
        let v = ok(api, &p).await;
        let events = v["events"].as_array().unwrap();
        assert!(events.len() <= page_size);
        out.extend(events.iter().cloned());
        match v["next_page"].as_str() {
            Some(n) => page = Some(n.to_string()),
            None => return out,
        }
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect()
}

fn positions(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect()
}

/// Issues a customer-administrator token through the CLI: (token id, secret).
fn customer_token(p: &RosterProcess, customer: &str) -> (String, String) {
    let out = p.run(&[
        "token",
        "issue",
        "--customer",
        customer,
        "--label",
        "audit-test",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let err = String::from_utf8(out.stderr).unwrap();
    let id = err
        .split_whitespace()
        .skip_while(|w| *w != "token")
        .nth(1)
        .expect("token id in the CLI's message")
        .to_string();
    (id, secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e4_audit_filters_by_address_actor_type_and_time_with_paging() {
    on_both(|p| async move {
        let admin = p.admin();
        let c = admin.customer("Acme", 20, &["acme.example"]).await;
        let users = format!("/v1/customers/{c}/users");
        let audit = format!("/v1/customers/{c}/audit");
        for a in ["ann", "bob", "cid"] {
            let (s, v) = admin
                .post(&users, json!({"address": format!("{a}@acme.example")}))
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
        }
        let t1 = instant().await;
        let (cust_token_id, cust_secret) = customer_token(&p, &c);
        let customer_admin = p.api(&cust_secret);
        let ann = format!("{users}/{}", enc("ann@acme.example"));
        let (s, v) = customer_admin
            .patch(
                &ann,
                json!({"aliases": ["a@acme.example"], "department": "Sales"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, _) = customer_admin
            .delete(&format!("{users}/{}", enc("bob@acme.example")))
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let t2 = instant().await;
        let (s, _) = admin
            .patch(
                &format!("{users}/{}", enc("cid@acme.example")),
                json!({"mobile": "+1 555 0100"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);

        // Everything, newest first, and paging returns exactly the same list.
        let everything = ok(&admin, &format!("{audit}?page_size=1000")).await["events"]
            .as_array()
            .unwrap()
            .clone();
        let pos = positions(&everything);
        assert!(pos.windows(2).all(|w| w[0] > w[1]), "newest first: {pos:?}");
        assert_eq!(types(&everything).last(), Some(&"CustomerCreated"));
        let paged = all_pages(&admin, &audit, 2).await;
        assert_eq!(
            positions(&paged),
            pos,
            "pages of 2 give the same events, none twice"
        );
        assert!(everything.len() >= 8);

        // By event type.
        let deleted = all_pages(&admin, &format!("{audit}?type=UserDeleted"), 10).await;
        assert_eq!(types(&deleted), ["UserDeleted"]);
        assert_eq!(deleted[0]["address"], "bob@acme.example");

        // By address: the user's events, and those about its alias.
        let by_ann = all_pages(
            &admin,
            &format!("{audit}?address={}", enc("ann@acme.example")),
            10,
        )
        .await;
        let mut t: Vec<&str> = types(&by_ann);
        t.sort();
        assert_eq!(t, ["AliasMapped", "ProfileUpdated", "UserAdded"]);
        let by_alias = all_pages(
            &admin,
            &format!("{audit}?address={}", enc("A@Acme.example")),
            10,
        )
        .await;
        assert_eq!(types(&by_alias), ["AliasMapped"]);

        // By actor: what the customer administrator's token did.
        let actor = format!("token:{cust_token_id}");
        let by_actor = all_pages(&admin, &format!("{audit}?actor={}", enc(&actor)), 1).await;
        assert!(!by_actor.is_empty());
        assert!(
            by_actor.iter().all(|e| e["actor"] == actor.as_str()),
            "{by_actor:?}"
        );
        let mut t: Vec<&str> = types(&by_actor);
        t.sort();
        assert_eq!(t, ["AliasMapped", "ProfileUpdated", "UserDeleted"]);

        // By time range: [t1, t2] is exactly what happened between them.
        let window = all_pages(
            &admin,
            &format!("{audit}?from={}&to={}", enc(&t1), enc(&t2)),
            2,
        )
        .await;
        assert_eq!(positions(&window), positions(&by_actor));
        let before = all_pages(&admin, &format!("{audit}?to={}", enc(&t1)), 100).await;
        assert!(types(&before)
            .iter()
            .all(|t| ["CustomerCreated", "DomainAdded", "UserAdded"].contains(t)));
        let after = all_pages(&admin, &format!("{audit}?from={}", enc(&t2)), 100).await;
        assert_eq!(types(&after), ["ProfileUpdated"]);
        assert_eq!(after[0]["address"], "cid@acme.example");
        assert_eq!(before.len() + window.len() + after.len(), everything.len());

        // Filters combine; bad input is a 400 with a stable code.
        let combined = all_pages(
            &admin,
            &format!(
                "{audit}?actor={}&type=ProfileUpdated&address={}",
                enc(&actor),
                enc("ann@acme.example")
            ),
            10,
        )
        .await;
        assert_eq!(types(&combined), ["ProfileUpdated"]);
        for bad in [
            "from=yesterday",
            "page_size=0",
            "address=not%20an%20address",
        ] {
            let (s, v) = admin.get(&format!("{audit}?{bad}")).await;
            assert_eq!(
                (s, v["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_request")),
                "{bad}: {v}"
            );
        }
        p.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e4_u6_history_spans_a_deletion_and_the_return_carries_the_earlier_identity() {
    on_both(|p| async move {
        let api = p.admin();
        let c = api.customer("Acme", 20, &["acme.example"]).await;
        let users = format!("/v1/customers/{c}/users");
        let ann = format!("{users}/{}", enc("ann@acme.example"));
        let (s, v) = api
            .post(
                &users,
                json!({"address": "ann@acme.example", "aliases": ["a@acme.example"]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let first_id = v["id"].as_str().unwrap().to_string();
        let (s, _) = api
            .post(
                &format!("{ann}/rules"),
                json!({"kind": "deny", "value": "spam.example"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, _) = api.delete(&ann).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, v) = api
            .post(
                &users,
                json!({"address": "Ann@acme.example", "first_name": "Ann"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["id"], first_id.as_str(), "U6: the same user comes back");

        let h = ok(&api, &format!("{ann}/history")).await;
        assert_eq!(h["address"], "ann@acme.example");
        let events = h["events"].as_array().unwrap();
        assert_eq!(
            types(events),
            ["UserAdded", "RuleAdded", "UserDeleted", "UserReturned"]
        );
        let pos = positions(events);
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "oldest first");
        assert!(events
            .iter()
            .all(|e| e["aggregate_id"] == first_id.as_str()));
        let deleted = &events[2]["payload"];
        assert_eq!(deleted["UserDeleted"]["aliases"], json!(["a@acme.example"]));
        assert_eq!(
            deleted["UserDeleted"]["rules_removed"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "U5"
        );
        let returned = &events[3]["payload"]["UserReturned"];
        assert_eq!(returned["earlier"]["user_id"], first_id.as_str());
        assert_eq!(returned["earlier"]["address"], "ann@acme.example");
        assert_eq!(returned["earlier"]["source"], "manual");
        assert_eq!(returned["earlier"]["deletion_reason"], "manual");
        assert!(returned["earlier"]["deleted_at"].is_string());

        let (s, v) = api
            .get(&format!("{users}/{}/history", enc("never@acme.example")))
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        p.stop().await;
    })
    .await;
}

/// The whole list (every page) as the API gives it, with `query` added.
async fn list(api: &Api, c: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut path = format!("/v1/customers/{c}/users?page_size=2{query}");
        if let Some(t) = &page {
            path.push_str(&format!("&page={}", enc(t)));
        }
        let v = ok(api, &path).await;
        out.extend(v["users"].as_array().unwrap().iter().cloned());
        match v["next_page"].as_str() {
            Some(n) => page = Some(n.to_string()),
            None => return out,
        }
    }
}

fn addresses(users: &[Value]) -> BTreeSet<String> {
    users
        .iter()
        .map(|u| u["address"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b7_users_as_of_an_instant_equal_the_list_as_it_was_fetched_then() {
    on_both(|p| async move {
        let api = p.admin();
        let c = api
            .customer("Acme", 20, &["acme.example", "old.example"])
            .await;
        let users = format!("/v1/customers/{c}/users");
        let user = |a: &str| format!("{users}/{}", enc(a));
        for (a, aliases) in [
            ("ann@acme.example", vec!["a@acme.example"]),
            ("bob@acme.example", vec![]),
            ("cid@old.example", vec![]),
            ("dan@acme.example", vec!["d@old.example"]),
        ] {
            let (s, v) = api
                .post(
                    &users,
                    json!({"address": a, "aliases": aliases, "first_name": "F"}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
        }
        let (s, _) = api
            .patch(&user("bob@acme.example"), json!({"status": "deactivated"}))
            .await;
        assert_eq!(s, StatusCode::OK);

        // Fetch the list, note the instant.
        let then = list(&api, &c, "").await;
        let deactivated_then = list(&api, &c, "&status=deactivated").await;
        let t = instant().await;

        // Change a lot afterwards.
        let (s, _) = api
            .patch(
                &user("ann@acme.example"),
                json!({"aliases": ["ann.x@acme.example"], "last_name": "New"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = api
            .patch(&user("bob@acme.example"), json!({"status": "active"}))
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = api.delete(&user("dan@acme.example")).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, v) = api
            .delete(&format!("/v1/customers/{c}/domains/old.example"))
            .await;
        assert!(s.is_success(), "{v}");
        let (s, _) = api
            .post(&users, json!({"address": "eve@acme.example"}))
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let now_list = list(&api, &c, "").await;
        assert_ne!(
            addresses(&now_list),
            addresses(&then),
            "the list did change"
        );

        // As of t: exactly the list as it was fetched then, user by user.
        let as_of = list(&api, &c, &format!("&as_of={}", enc(&t))).await;
        assert_eq!(addresses(&as_of), addresses(&then));
        assert_eq!(as_of, then, "every field of every user as it was");
        let as_of_deactivated =
            list(&api, &c, &format!("&status=deactivated&as_of={}", enc(&t))).await;
        assert_eq!(as_of_deactivated, deactivated_then);
        // And as of now, the list as it is now.
        let as_of_now = list(&api, &c, &format!("&as_of={}", enc(&now()))).await;
        assert_eq!(as_of_now, now_list);
        // Before the customer existed: empty.
        let before = list(&api, &c, "&as_of=2000-01-01T00:00:00Z").await;
        assert!(before.is_empty());
        let (s, v) = api.get(&format!("{users}?as_of=last%20week")).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request"))
        );
        p.stop().await;
    })
    .await;
}
