//! End-to-end: the real `roster` binary, driven over HTTP, on SQLite (its
//! embedded default) and on PostgreSQL.

use reqwest::StatusCode;
use roster_tests::process::enc;
use roster_tests::process::on_both;
use roster_tests::RosterProcess;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m1_manual_users_end_to_end_with_stable_error_codes() {
    on_both(|p| async move {
        let api = p.admin();
        let c = api.customer("Acme", 3, &["acme.example"]).await;
        let users = format!("/v1/customers/{c}/users");

        // M1: add, and the same client's next read sees it.
        let (s, v) = api
            .post(&users, json!({"address": "Ann.Lee@ACME.example", "first_name": "Ann", "notes": "line 1\nline 2", "aliases": ["ann@acme.example"]}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["address"], "ann.lee@acme.example");
        assert_eq!(v["source"], "manual");
        let (s, v) = api.get(&format!("{users}/{}", enc("ann.lee@acme.example"))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["aliases"], json!(["ann@acme.example"]));
        let (_, list) = api.get(&users).await;
        assert_eq!(list["users"].as_array().unwrap().len(), 1);

        // Errors with stable codes; nothing half-applied.
        for (body, status, code) in [
            (json!({"address": "not an address"}), StatusCode::BAD_REQUEST, "invalid_address"),
            (json!({"address": "x@elsewhere.example"}), StatusCode::UNPROCESSABLE_ENTITY, "unmanaged_domain"),
            (json!({"address": "ANN@acme.example"}), StatusCode::CONFLICT, "address_taken"),
            (json!({"address": "new@acme.example", "aliases": ["ann@acme.example"]}), StatusCode::CONFLICT, "address_taken"),
            (json!({"address": "new@acme.example", "bogus": 1}), StatusCode::BAD_REQUEST, "invalid_request"),
        ] {
            let (s, v) = api.post(&users, body.clone()).await;
            assert_eq!((s, v["code"].as_str().unwrap_or_default()), (status, code), "{body} -> {v}");
            assert!(!v["message"].as_str().unwrap().is_empty());
        }
        api.post(&users, json!({"address": "b@acme.example"})).await;
        api.post(&users, json!({"address": "c@acme.example"})).await;
        let (s, v) = api.post(&users, json!({"address": "d@acme.example"})).await;
        assert_eq!((s, v["code"].as_str().unwrap()), (StatusCode::UNPROCESSABLE_ENTITY, "over_seat_limit"), "{v}");
        let (s, v) = api.post(&users, json!({"address": "list@acme.example", "kind": "distribution_list"})).await;
        assert_eq!(s, StatusCode::CREATED, "lists never count (T3): {v}");
        let (s, v) = api.get(&format!("/v1/customers/{c}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["licence"]["seats_used"], 3);
        assert_eq!(v["licence"]["distribution_lists"], 1);

        let other = api.customer("Other", 3, &[]).await;
        let (s, v) = api.post(&format!("/v1/customers/{other}/domains"), json!({"domain": "ACME.example"})).await;
        assert_eq!((s, v["code"].as_str().unwrap()), (StatusCode::CONFLICT, "domain_taken"), "{v}");
        let (s, v) = api.post(&format!("/v1/customers/{other}/domains"), json!({"domain": "-bad-"})).await;
        assert_eq!((s, v["code"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "invalid_domain"), "{v}");
        let (s, v) = api.get("/v1/customers/6f1d7c1e-0000-4000-8000-000000000000").await;
        assert_eq!((s, v["code"].as_str().unwrap()), (StatusCode::NOT_FOUND, "unknown_customer"));
        let (s, v) = p.api("rst_wrong").get("/v1/customers").await;
        assert_eq!((s, v["code"].as_str().unwrap()), (StatusCode::UNAUTHORIZED, "bad_token"));

        // Edit: clear a field, set another, replace aliases, deactivate.
        let ann = format!("{users}/{}", enc("ann.lee@acme.example"));
        let (s, v) = api
            .patch(&ann, json!({"first_name": null, "department": "Sales", "aliases": ["a.lee@acme.example"], "status": "deactivated"}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["first_name"], json!(null));
        assert_eq!(v["notes"], "line 1\nline 2", "untouched fields stay");
        assert_eq!(v["aliases"], json!(["a.lee@acme.example"]));
        assert_eq!(v["status"], "deactivated");
        let (s, _) = api.post(&users, json!({"address": "ann@acme.example"})).await;
        assert_eq!(s, StatusCode::CREATED, "the unmapped alias is free again");

        // Rules (U5).
        let (s, rule) = api.post(&format!("{ann}/rules"), json!({"kind": "deny", "value": "Spam.example"})).await;
        assert_eq!(s, StatusCode::CREATED, "{rule}");
        assert_eq!(rule["value"], "spam.example");
        let (_, rules) = api.get(&format!("{ann}/rules")).await;
        assert_eq!(rules["rules"].as_array().unwrap().len(), 1);
        let (s, _) = api.delete(&format!("{ann}/rules?rule_id={}", rule["id"].as_str().unwrap())).await;
        assert_eq!(s, StatusCode::NO_CONTENT);

        // Delete, then the history still shows the user's life.
        let (s, _) = api.delete(&ann).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, _) = api.get(&ann).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, h) = api.get(&format!("{ann}/history")).await;
        assert_eq!(s, StatusCode::OK, "{h}");
        let types: Vec<&str> = h["events"].as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
        assert_eq!(types.first(), Some(&"UserAdded"));
        assert_eq!(types.last(), Some(&"UserDeleted"));
        assert!(h["events"][0]["actor"].as_str().unwrap().starts_with("token:"));

        // Audit queries.
        let (s, a) = api.get(&format!("/v1/customers/{c}/audit?type=UserDeleted")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(a["events"].as_array().unwrap().len(), 1);
        let (s, a) = api.get(&format!("/v1/customers/{c}/audit?from=not-a-time")).await;
        assert_eq!((s, a["code"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "invalid_request"));

        // D3.n over HTTP.
        let (s, v) = api.delete(&format!("/v1/customers/{c}/domains/acme.example")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["users_deleted"].as_array().unwrap().len(), 4);
        let (_, list) = api.get(&users).await;
        assert!(list["users"].as_array().unwrap().is_empty());

        // Operability.
        let (s, doc) = api.get("/openapi.json").await;
        assert_eq!(s, StatusCode::OK);
        assert!(doc["paths"]["/v1/customers/{c}/users/{address}"]["patch"].is_object());
        let (s, m) = api.get("/metrics").await;
        assert_eq!(s, StatusCode::OK);
        assert!(m.as_str().unwrap().contains("roster_http_requests_total"));
        let (s, r) = api.get("/readyz").await;
        assert_eq!((s, r["status"].as_str().unwrap()), (StatusCode::OK, "ready"));
        let log = p.log_text();
        assert!(!log.contains(&p.bootstrap_token), "D7: no secret in the logs");
        p.stop().await;
    })
    .await;
}

/// The CLI roles: tokens, migrate and rebuild against the same storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_token_migrate_and_rebuild_commands() {
    let dir = tempfile::tempdir().unwrap();
    let p = RosterProcess::start(dir.path(), None).await;
    let api = p.admin();
    let c = api.customer("Cli", 10, &["cli.example"]).await;
    api.post(
        &format!("/v1/customers/{c}/users"),
        json!({"address": "u@cli.example"}),
    )
    .await;

    let out = p.run(&["token", "issue", "--customer", &c, "--label", "helpdesk"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("rst_"));
    let customer_admin = p.api(&token);
    let (s, v) = customer_admin.get("/v1/customers").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["customers"].as_array().unwrap().len(), 1);
    let (s, v) = customer_admin
        .post("/v1/customers", json!({"name": "x", "seat_limit": 1}))
        .await;
    assert_eq!(
        (s, v["code"].as_str().unwrap()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let (s, v) = customer_admin
        .patch(&format!("/v1/customers/{c}"), json!({"seat_limit": 1000}))
        .await;
    assert_eq!(
        (s, v["code"].as_str().unwrap()),
        (StatusCode::FORBIDDEN, "forbidden"),
        "a customer cannot raise its own limit"
    );

    let listing = p.run(&["token", "list"]);
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(listing.contains("helpdesk") && listing.contains("bootstrap"));
    assert!(!listing.contains(&token), "secrets are never listed");
    let id = listing
        .lines()
        .find(|l| l.contains("helpdesk"))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_string();
    assert!(p.run(&["token", "revoke", &id]).status.success());
    let (s, _) = customer_admin.get("/v1/customers").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let out = p.run(&["token", "issue", "--new-partner", "Second MSP"]);
    assert!(out.status.success());
    let partner2 = p.api(String::from_utf8(out.stdout).unwrap().trim());
    let (_, v) = partner2.get("/v1/customers").await;
    assert!(
        v["customers"].as_array().unwrap().is_empty(),
        "a new partner sees none of the others' customers"
    );

    assert!(p.run(&["migrate"]).status.success());
    let out = p.run(&["rebuild", "--verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.stop().await;
    // Rebuild with the server stopped swaps fresh tables in; the data is all there after a restart.
    let out = std::process::Command::new(roster_tests::process::roster_binary())
        .args(["rebuild"])
        .env("ROSTER_DATA_DIR", dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = RosterProcess::start(dir.path(), None).await;
    let (s, v) = api_with(&p, &token_of_bootstrap(&p))
        .get(&format!("/v1/customers/{c}/users"))
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a new bootstrap token is ignored once tokens exist: {v}"
    );
    p.stop().await;
}

fn token_of_bootstrap(p: &RosterProcess) -> String {
    p.bootstrap_token.clone()
}

fn api_with(p: &RosterProcess, token: &str) -> roster_tests::Api {
    p.api(token)
}

/// The embedded default on a fresh machine: no database, no broker, and the
/// first token handed over in a file only its owner can read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_embedded_start_writes_the_first_token_to_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = roster_tests::process::free_port();
    let mut child = tokio::process::Command::new(roster_tests::process::roster_binary())
        .arg("serve")
        .env("ROSTER_LISTEN", format!("127.0.0.1:{port}"))
        .env("ROSTER_DATA_DIR", dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("ROSTER_BOOTSTRAP_TOKEN")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let file = dir.path().join("initial-token");
    for _ in 0..200 {
        if file.exists()
            && reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
                .await
                .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let api = roster_tests::Api {
        base: format!("http://127.0.0.1:{port}"),
        token: token.clone(),
        client: reqwest::Client::new(),
    };
    let (s, _) = api.get("/v1/customers").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        dir.path().join("roster.db").exists(),
        "embedded SQLite in the data dir"
    );
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("initial-token"),
        "the log says where the token is"
    );
    assert!(!log.contains(&token), "but never the token itself");
}
