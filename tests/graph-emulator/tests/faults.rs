//! Programmed faults, throttling, latency and request recording.

mod common;

use std::time::{Duration, Instant};

use common::{get, token, token_request};
use roster_graph_emulator::{Endpoint, Fault, GenerateUsers, GraphEmulator};

#[tokio::test]
async fn throttling_answers_429_with_retry_after_and_documented_body() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    fx.tenant
        .generate_users(GenerateUsers::new(10, "contoso.com"));
    let tok = token(&emu, &fx).await;
    emu.inject(Fault::throttle(7).times(2).on_path("/users"));
    let url = format!("{}/users", emu.graph_base());

    for _ in 0..2 {
        let a = get(&url, &tok, &[("client-request-id", "abc-123")]).await;
        assert_eq!(a.status, 429);
        assert_eq!(a.header("retry-after"), Some("7"));
        assert_eq!(a.error_code(), "TooManyRequests");
        assert_eq!(a.error_message(), "Please retry again later.");
        let inner = &a.body["error"]["innerError"];
        assert_eq!(inner["code"], "429");
        assert_eq!(inner["status"], "429");
        assert_eq!(inner["client-request-id"], "abc-123");
        assert!(inner["request-id"].is_string());
        assert!(inner["date"].is_string());
        assert_eq!(a.header("client-request-id"), Some("abc-123"));
    }
    assert_eq!(get(&url, &tok, &[]).await.status, 200);
    assert_eq!(emu.pending_faults(), 0);
    // Other paths were never affected.
    let statuses: Vec<(u16, Option<String>)> = emu
        .graph_requests()
        .iter()
        .map(|r| (r.status, r.fault.clone()))
        .collect();
    assert_eq!(statuses[0], (429, Some("429 Retry-After 7".into())));
    assert_eq!(statuses[2], (200, None));
}

#[tokio::test]
async fn service_unavailable_with_and_without_retry_after() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let tok = token(&emu, &fx).await;
    emu.inject(Fault::unavailable(3));
    emu.inject(Fault::unavailable_without_retry_after());
    let url = format!("{}/groups", emu.graph_base());
    let a = get(&url, &tok, &[]).await;
    assert_eq!((a.status, a.header("retry-after")), (503, Some("3")));
    assert_eq!(a.error_code(), "serviceNotAvailable");
    let a = get(&url, &tok, &[]).await;
    assert_eq!((a.status, a.header("retry-after")), (503, None));
    assert_eq!(get(&url, &tok, &[]).await.status, 200);
}

#[tokio::test]
async fn a_page_fails_mid_pagination() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    fx.tenant
        .generate_users(GenerateUsers::new(500, "contoso.com"));
    let tok = token(&emu, &fx).await;
    // Pages 1 and 2 pass, page 3 answers 500.
    emu.inject(Fault::internal_error().on_path("/users").after(2));
    let mut url = format!("{}/users?$top=100&$select=id", emu.graph_base());
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let a = get(&url, &tok, &[]).await;
        statuses.push(a.status);
        if a.status != 200 {
            assert_eq!(a.error_code(), "generalException");
            break;
        }
        url = a.body["@odata.nextLink"].as_str().unwrap().to_string();
    }
    assert_eq!(statuses, [200, 200, 500]);
    // The same nextLink works on retry.
    assert_eq!(get(&url, &tok, &[]).await.status, 200);
}

#[tokio::test]
async fn a_dropped_connection_leaves_an_incomplete_body() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    fx.tenant
        .generate_users(GenerateUsers::new(300, "contoso.com"));
    let tok = token(&emu, &fx).await;
    emu.inject(Fault::drop_connection().on_path_prefix("/users").after(1));
    let url = format!("{}/users?$top=100", emu.graph_base());
    let first = get(&url, &tok, &[]).await;
    let next = first.body["@odata.nextLink"].as_str().unwrap().to_string();
    let resp = common::http().get(&next).bearer_auth(&tok).send().await;
    let failed = match resp {
        Err(_) => true,
        Ok(r) => r.text().await.is_err(),
    };
    assert!(failed, "reading the body must fail");
    assert_eq!(get(&next, &tok, &[]).await.status, 200);
}

#[tokio::test]
async fn custom_status_forbidden_and_delays() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let tok = token(&emu, &fx).await;
    let url = format!("{}/users", emu.graph_base());
    emu.inject(Fault::forbidden());
    let a = get(&url, &tok, &[]).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.error_code(), "Authorization_RequestDenied");

    emu.inject(Fault::status(504, "UnknownError", "Gateway timeout"));
    assert_eq!(get(&url, &tok, &[]).await.status, 504);

    emu.inject(Fault::delay(Duration::from_millis(150)));
    let t0 = Instant::now();
    assert_eq!(get(&url, &tok, &[]).await.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(150));

    emu.set_latency(Duration::from_millis(50));
    let t0 = Instant::now();
    assert_eq!(get(&url, &tok, &[]).await.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn token_endpoint_faults_use_the_oauth_error_shape() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    emu.inject(Fault::unavailable(2).on_token_endpoint());
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", fx.client_id.as_str()),
        ("client_secret", fx.client_secret.as_str()),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let a = token_request(&emu, &fx.tenant_id, &form).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.header("retry-after"), Some("2"));
    assert_eq!(a.body["error"], "temporarily_unavailable");
    assert!(a.body["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS90033:"));
    assert_eq!(token_request(&emu, &fx.tenant_id, &form).await.status, 200);
    assert_eq!(emu.token_request_count(), 2);
    assert_eq!(emu.tokens_issued(), 1);
}

#[tokio::test]
async fn requests_are_recorded() {
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("contoso");
    let tok = token(&emu, &fx).await;
    let url = format!(
        "{}/users?$filter=endsWith(mail,'@contoso.com')&$count=true",
        emu.graph_base()
    );
    let a = get(
        &url,
        &tok,
        &[
            ("ConsistencyLevel", "eventual"),
            ("client-request-id", "7f0c2c1e-0000-4000-8000-000000000001"),
        ],
    )
    .await;
    assert_eq!(a.status, 200);
    let all = emu.requests();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].endpoint, Endpoint::Token);
    assert_eq!(all[0].method, "POST");
    assert!(!all[0].has_authorization);
    let r = &all[1];
    assert_eq!(r.endpoint, Endpoint::Graph);
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/v1.0/users");
    assert_eq!(r.param("$filter"), Some("endsWith(mail,'@contoso.com')"));
    assert_eq!(r.param("$count"), Some("true"));
    assert!(r.path_and_query().starts_with("/v1.0/users?"));
    assert!(r.has_authorization);
    assert_eq!(r.consistency_level.as_deref(), Some("eventual"));
    assert_eq!(
        r.client_request_id.as_deref(),
        Some("7f0c2c1e-0000-4000-8000-000000000001")
    );
    assert_eq!(r.status, 200);
    assert_eq!(a.header("request-id"), Some(r.request_id.as_str()));
    emu.clear_requests();
    assert!(emu.requests().is_empty());
    assert_eq!(emu.token_request_count(), 1);
}
