//! End-to-end audit queries (E4) and time travel (B7) through the real
//! `roster` binary over HTTP, on SQLite and on PostgreSQL.

use roster_tests::process::on_both;
use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use roster_tests::process::enc;
use roster_tests::{Api, RosterProcess};
use serde_json::{json, Value};

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
            "actor=nobody",
            "actor=token%3Anot-a-uuid",
            "actor=system%3A",
        ] {
            let (s, v) = admin.get(&format!("{audit}?{bad}")).await;
            assert_eq!(
                (s, v["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_request")),
                "{bad}: {v}"
            );
            // E2: an actor that is none of the recorded forms is named as such.
            if bad.starts_with("actor=") {
                let message = v["message"].as_str().unwrap();
                for form in ["token:<id>", "admin:<id>", "sync:<run>", "system:<name>"] {
                    assert!(message.contains(form), "{bad}: {message}");
                }
            }
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

/// E4 (issue 9): `audit?address=<alias>` finds an alias wherever it came
/// from (with the user at creation: by hand, by CSV import, by directory
/// sync) and where it left (inside the user's deletion); the primary of a
/// deleted user too.
async fn e4_audit_by_alias(db: roster_tests::e2e::Db, slapd: &roster_testkit::Slapd) {
    let env = roster_tests::e2e::RosterEnv::launch(db, None, &[]).await;
    let api = &env.api;
    let c = api.customer("Acme", 100, &["example.org"]).await;
    let users = format!("/v1/customers/{c}/users");
    let audit = format!("/v1/customers/{c}/audit");

    // By hand, with an alias.
    let (s, v) = api
        .post(
            &users,
            json!({"address": "ann@example.org", "aliases": ["ann.alias@example.org"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // By CSV import.
    let (s, review) = api
        .post(
            &format!("/v1/customers/{c}/imports"),
            json!({"text": "email,first_name,aliases\ncee@example.org,Cee,cee.alias@example.org\n"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{review}");
    let (s, done) = api
        .call(
            reqwest::Method::POST,
            &format!(
                "/v1/customers/{c}/imports/{}/commit",
                review["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    // By directory sync.
    let (s, v) = api
        .call(
            reqwest::Method::PUT,
            &format!("/v1/customers/{c}/directory"),
            Some(ldap_settings(slapd)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let run = env.start_sync_answer(&c).await["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let detail = env.run_detail(&c, &run).await;
    assert_eq!(detail["run"]["status"], "completed", "{detail}");
    // Deletion releases ann's alias.
    let (s, v) = api
        .delete(&format!("{users}/{}", enc("ann@example.org")))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");

    let by = |address: &'static str| {
        let path = format!("{audit}?address={}", enc(address));
        async move {
            let mut t: Vec<String> = all_pages(api, &path, 10)
                .await
                .iter()
                .map(|e| e["event_type"].as_str().unwrap().to_string())
                .collect();
            t.sort();
            t.dedup();
            t
        }
    };
    assert_eq!(
        by("ann.alias@example.org").await,
        ["UserAdded", "UserDeleted"]
    );
    assert_eq!(
        by("ANN.Alias@example.org").await,
        ["UserAdded", "UserDeleted"]
    );
    assert_eq!(by("ann@example.org").await, ["UserAdded", "UserDeleted"]);
    assert_eq!(by("cee.alias@example.org").await, ["UserAdded"]);
    assert_eq!(by("syd.alias@example.org").await, ["UserAdded"]);
    let synced = all_pages(
        api,
        &format!("{audit}?address={}", enc("syd.alias@example.org")),
        10,
    )
    .await;
    assert_eq!(synced[0]["actor"], format!("sync:{run}"), "{synced:?}");
    assert_eq!(synced[0]["address"], "syd@example.org");
    assert!(by("nobody@example.org").await.is_empty());
}

/// An AD-like slapd holding one user, syd@example.org, with the alias
/// syd.alias@example.org.
async fn slapd_with_syd() -> roster_testkit::Slapd {
    use roster_testkit::{deterministic_guid, DirectoryData, Slapd, SlapdConfig, Style};
    let data = DirectoryData::new(Style::AdLike, "dc=example,dc=com", "example.org")
        .users(0)
        .groups(0, 5);
    let slapd = Slapd::start(SlapdConfig::ad_like().data(data))
        .await
        .expect("slapd");
    let mut syd = roster_testkit::User::new(
        "ou=People,dc=example,dc=com",
        "syd",
        "Syd",
        "Sync",
        "example.org",
    );
    syd.mail = Some("syd@example.org".into());
    syd.proxy_addresses = vec![
        "SMTP:syd@example.org".into(),
        "smtp:syd.alias@example.org".into(),
    ];
    syd.object_guid = Some(deterministic_guid(91, 9, 1));
    slapd
        .admin()
        .await
        .unwrap()
        .add(&syd.entry(Style::AdLike))
        .await
        .unwrap();
    slapd
}

fn ldap_settings(slapd: &roster_testkit::Slapd) -> Value {
    json!({
        "kind": "ldap",
        "host": slapd.host(),
        "port": slapd.port(),
        "ssl": false,
        "bind_user": slapd.root_dn(),
        "password": slapd.root_password(),
        "base_dn": "dc=example,dc=com",
        "preset": "active_directory",
        "timeout_secs": 20,
        "enabled": true,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e4_audit_by_alias_finds_it_added_by_hand_by_import_by_sync_and_released_by_deletion() {
    let slapd = slapd_with_syd().await;
    for db in [
        roster_tests::e2e::Db::Sqlite,
        roster_tests::e2e::Db::Postgres,
    ] {
        e4_audit_by_alias(db, &slapd).await;
    }
}

/// B4 (issue 9): runs that share a start time (a fixed clock) are all
/// reachable through the sync history's pages, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b4_sync_history_pages_reach_every_run_sharing_a_start_time() {
    let slapd = slapd_with_syd().await;
    let fixed = "2026-11-27T09:00:00Z"
        .parse::<chrono::DateTime<Utc>>()
        .unwrap();
    for db in [
        roster_tests::e2e::Db::Sqlite,
        roster_tests::e2e::Db::Postgres,
    ] {
        let env = roster_tests::e2e::RosterEnv::launch(db, Some(fixed), &[]).await;
        let api = &env.api;
        let c = api.customer("Acme", 100, &["example.org"]).await;
        let (s, v) = api
            .call(
                reqwest::Method::PUT,
                &format!("/v1/customers/{c}/directory"),
                Some(ldap_settings(&slapd)),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for _ in 0..3 {
            let run = env.start_sync_answer(&c).await["run_id"]
                .as_str()
                .unwrap()
                .to_string();
            env.run_detail(&c, &run).await;
        }
        let syncs = format!("/v1/customers/{c}/directory/syncs");
        let all = ok(api, &format!("{syncs}?page_size=1000")).await["runs"]
            .as_array()
            .unwrap()
            .clone();
        assert!(all.len() >= 3, "{all:?}");
        let starts: BTreeSet<String> = all.iter().map(|r| r["started_at"].to_string()).collect();
        assert_eq!(starts.len(), 1, "one start time: {all:?}");
        let mut paged = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut path = format!("{syncs}?page_size=1");
            if let Some(t) = &page {
                path.push_str(&format!("&page={}", enc(t)));
            }
            let v = ok(api, &path).await;
            let runs = v["runs"].as_array().unwrap();
            assert!(runs.len() <= 1);
            paged.extend(
                runs.iter()
                    .map(|r| r["run_id"].as_str().unwrap().to_string()),
            );
            match v["next_page"].as_str() {
                Some(n) => page = Some(n.to_string()),
                None => break,
            }
        }
        let ids: Vec<String> = all
            .iter()
            .map(|r| r["run_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(paged, ids, "every run once, in the same order");
        let (s, v) = api.get(&format!("{syncs}?page=12345")).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{v}"
        );
    }
}

/// B7 (issue 9): `recorded_at` is stamped under the append lock, so it never
/// decreases in log order, and `as_of=T` taken while several writers add and
/// delete users is the state after a prefix of the log (never a user
/// deleted before another was added, both after T). One user honours
/// `as_of` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn b7_as_of_taken_during_concurrent_writes_is_the_state_after_a_prefix_of_the_log() {
    on_both(|p| async move {
        let api = p.admin();
        let c = api.customer("Acme", 1_000, &["acme.example"]).await;
        let users = format!("/v1/customers/{c}/users");
        let done = std::sync::atomic::AtomicUsize::new(0);
        let writer = |w: usize| {
            let (api, users, done) = (p.admin(), users.clone(), &done);
            async move {
                for i in 0..12 {
                    let a = format!("w{w}-{i}@acme.example");
                    let (s, v) = api.post(&users, json!({"address": a})).await;
                    assert_eq!(s, StatusCode::CREATED, "{v}");
                    if i % 3 == 2 {
                        let gone = format!("w{w}-{}@acme.example", i - 1);
                        let (s, v) = api.delete(&format!("{users}/{}", enc(&gone))).await;
                        assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
                    }
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        };
        let sampler = async {
            let mut instants = Vec::new();
            while done.load(std::sync::atomic::Ordering::SeqCst) < 4 {
                instants.push(now());
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            instants
        };
        let (_, _, _, _, instants) =
            tokio::join!(writer(0), writer(1), writer(2), writer(3), sampler);
        assert!(instants.len() >= 3, "instants taken during the run");

        // The log in order: commit times never go back.
        let mut events = all_pages(&api, &format!("/v1/customers/{c}/audit"), 1000).await;
        events.reverse();
        let times: Vec<chrono::DateTime<Utc>> = events
            .iter()
            .map(|e| e["time"].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "recorded_at is non-decreasing in position order"
        );
        // The live user set after each prefix of the log.
        let mut state: BTreeSet<String> = BTreeSet::new();
        let mut prefixes = vec![state.clone()];
        for e in &events {
            let a = e["address"].as_str().unwrap_or_default().to_string();
            match e["event_type"].as_str().unwrap() {
                "UserAdded" => {
                    state.insert(a);
                }
                "UserDeleted" => {
                    state.remove(&a);
                }
                _ => continue,
            }
            prefixes.push(state.clone());
        }
        for t in &instants {
            let v = ok(&api, &format!("{users}?page_size=1000&as_of={}", enc(t))).await;
            let then = addresses(v["users"].as_array().unwrap());
            assert!(
                prefixes.contains(&then),
                "as_of={t} is the state after a prefix of the log: {then:?}"
            );
        }

        // One user honours as_of: a user deleted during the run was there before.
        let deleted = "w0-1@acme.example";
        let path = format!("{users}/{}", enc(deleted));
        let (s, _) = api.get(&path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "deleted now");
        let added_at = events
            .iter()
            .find(|e| e["event_type"] == "UserAdded" && e["address"] == deleted)
            .unwrap()["time"]
            .as_str()
            .unwrap()
            .to_string();
        let (s, v) = api.get(&format!("{path}?as_of={}", enc(&added_at))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["address"], deleted);
        let (s, v) = api.get(&format!("{path}?as_of=2000-01-01T00:00:00Z")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        let (s, v) = api.get(&format!("{path}?as_of=yesterday")).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{v}"
        );
        p.stop().await;
    })
    .await;
}
