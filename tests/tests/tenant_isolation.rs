//! T1: every route below /v1/customers/{c}, called with a token that does
//! not reach customer c, answers 404 (not 403), whatever the method.

use reqwest::{Method, StatusCode};
use roster_tests::process::enc;
use roster_tests::RosterProcess;
use serde_json::json;

/// Every customer-scoped route of the API, with a body where it takes one.
fn routes(c: &str, address: &str) -> Vec<(Method, String, Option<serde_json::Value>)> {
    let u = format!("/v1/customers/{c}/users/{}", enc(address));
    vec![
        (Method::GET, format!("/v1/customers/{c}"), None),
        (
            Method::PATCH,
            format!("/v1/customers/{c}"),
            Some(json!({"seat_limit": 99})),
        ),
        (Method::GET, format!("/v1/customers/{c}/domains"), None),
        (
            Method::POST,
            format!("/v1/customers/{c}/domains"),
            Some(json!({"domain": "stolen.example"})),
        ),
        (
            Method::DELETE,
            format!("/v1/customers/{c}/domains/victim.example"),
            None,
        ),
        (Method::GET, format!("/v1/customers/{c}/users"), None),
        (
            Method::GET,
            format!("/v1/customers/{c}/users?as_of=2030-01-01T00:00:00Z"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/customers/{c}/users"),
            Some(json!({"address": "evil@victim.example"})),
        ),
        (Method::GET, u.clone(), None),
        (
            Method::PATCH,
            u.clone(),
            Some(json!({"first_name": "Pwned"})),
        ),
        (Method::DELETE, u.clone(), None),
        (Method::GET, format!("{u}/history"), None),
        (Method::GET, format!("{u}/rules"), None),
        (
            Method::POST,
            format!("{u}/rules"),
            Some(json!({"kind": "allow", "value": "evil.example"})),
        ),
        (
            Method::DELETE,
            format!("{u}/rules?rule_id=00000000-0000-0000-0000-000000000000"),
            None,
        ),
        (Method::GET, format!("/v1/customers/{c}/audit"), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_every_route_answers_404_to_a_token_of_another_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let p = RosterProcess::start(dir.path(), None).await;
    let partner_a = p.admin();
    let victim = partner_a.customer("Victim", 10, &["victim.example"]).await;
    let sibling = partner_a
        .customer("Sibling", 10, &["sibling.example"])
        .await;
    let (s, _) = partner_a
        .post(
            &format!("/v1/customers/{victim}/users"),
            json!({"address": "ceo@victim.example"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let issue = |args: &[&str]| {
        let out = p.run(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let partner_b = p.api(&issue(&["token", "issue", "--new-partner", "Other MSP"]));
    let sibling_admin = p.api(&issue(&["token", "issue", "--customer", &sibling]));

    for (who, api) in [
        ("another partner", &partner_b),
        ("another customer's admin", &sibling_admin),
    ] {
        for (method, path, body) in routes(&victim, "ceo@victim.example") {
            let (s, v) = api.call(method.clone(), &path, body).await;
            assert_eq!(
                s,
                StatusCode::NOT_FOUND,
                "{who}: {method} {path} -> {s} {v}"
            );
            assert_eq!(
                v["code"], "unknown_customer",
                "{who}: {method} {path} -> {v}"
            );
        }
    }
    // Nothing changed for the victim.
    let (_, users) = partner_a
        .get(&format!("/v1/customers/{victim}/users"))
        .await;
    let users = users["users"].as_array().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["first_name"], json!(null));
    let (_, c) = partner_a.get(&format!("/v1/customers/{victim}")).await;
    assert_eq!(c["seat_limit"], 10);
    assert_eq!(c["domains"].as_array().unwrap().len(), 1);
    // And the same routes do answer the owner (so the 404s above are about scope).
    for (method, path, _) in routes(&victim, "ceo@victim.example") {
        if method == Method::GET {
            let (s, v) = partner_a.get(&path).await;
            assert_eq!(s, StatusCode::OK, "{path}: {v}");
        }
    }
    // The token and the customer are checked in one query (issue 17); the
    // answers keep their order: an unknown token is 401 whatever the path,
    // then a customer nobody owns or a malformed id is 404.
    let victim_admin = p.api(&issue(&["token", "issue", "--customer", &victim]));
    let (s, v) = victim_admin
        .get(&format!("/v1/customers/{victim}/users"))
        .await;
    assert_eq!(s, StatusCode::OK, "the customer's own admin: {v}");
    let stranger = p.api("rst_not-a-token-anyone-was-ever-given");
    let nobody = uuid::Uuid::new_v4().to_string();
    for c in [victim.as_str(), nobody.as_str(), "not-a-customer"] {
        let (s, v) = stranger.get(&format!("/v1/customers/{c}/users")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{c}: {v}");
    }
    for c in [nobody.as_str(), "not-a-customer"] {
        for api in [&partner_a, &victim_admin] {
            let (s, v) = api.get(&format!("/v1/customers/{c}/users")).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{c}: {v}");
            assert_eq!(v["code"], "unknown_customer", "{c}: {v}");
        }
    }
    let (_, listed) = partner_b.get("/v1/customers").await;
    assert!(listed["customers"].as_array().unwrap().is_empty());
    let (_, listed) = sibling_admin.get("/v1/customers").await;
    assert_eq!(listed["customers"].as_array().unwrap().len(), 1);
    assert_eq!(listed["customers"][0]["id"], sibling.as_str());
    p.stop().await;
}
