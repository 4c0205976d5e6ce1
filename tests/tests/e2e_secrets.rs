//! D7 and the outbound policy (issue 10). A stored directory secret is sent only to the connection
//! it was entered for. The real `roster` binary on SQLite and PostgreSQL,
//! driven over HTTP, with loopback listeners that record every byte as the
//! LDAP server and as Entra ID's token endpoint. Every combination of
//! changed connection fields without the secret, on save and on test, is
//! refused with 400 `secret_required` and delivers nothing anywhere; the
//! same settings with the secret, or unchanged ones, do connect (so the
//! listeners would have seen a leak). Every test made is in the audit
//! trail. Without the operator's allowance (`ROSTER_ALLOW_OUTBOUND`),
//! loopback, private, link-local and metadata addresses, plain http and
//! Entra endpoints off Microsoft's clouds are refused; a test result never
//! carries a foreign server's answer.

use reqwest::{Method, StatusCode};
use roster_tests::e2e::{Db, RosterEnv};
use roster_tests::recorder::Recorder;
use serde_json::{json, Value};
use std::time::Duration;

fn with(mut base: Value, patch: &[(&str, Value)]) -> Value {
    let o = base.as_object_mut().unwrap();
    for (k, v) in patch {
        if v.is_null() {
            o.remove(*k);
        } else {
            o.insert(k.to_string(), v.clone());
        }
    }
    base
}

fn canary(what: &str) -> String {
    format!("{what}Canary{}", uuid::Uuid::new_v4().simple())
}

async fn test_raw(env: &RosterEnv, c: &str, body: Option<Value>) -> (StatusCode, Value) {
    env.api
        .call(
            Method::POST,
            &format!("/v1/customers/{c}/directory/test"),
            body,
        )
        .await
}

/// Every non-empty subset of `changes` applied to `saved` (which has no
/// secret): refused on save and on test. Returns how many requests were made.
async fn every_change_is_refused(
    env: &RosterEnv,
    c: &str,
    saved: &Value,
    changes: &[(&str, Value)],
) -> usize {
    let mut requests = 0;
    for mask in 1u32..(1 << changes.len()) {
        let picked: Vec<(&str, Value)> = changes
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, (k, v))| (*k, v.clone()))
            .collect();
        let names: Vec<&str> = picked.iter().map(|(k, _)| *k).collect();
        let body = with(saved.clone(), &picked);
        // SSL and StartTLS together are refused as invalid before anything else.
        let expected = if names.contains(&"ssl") && names.contains(&"starttls") {
            "invalid_request"
        } else {
            "secret_required"
        };
        for (what, (s, v)) in [
            ("save", env.put_directory_raw(c, body.clone()).await),
            ("test", test_raw(env, c, Some(body.clone())).await),
        ] {
            requests += 1;
            assert_eq!(
                (s, v["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some(expected)),
                "{what} with {names:?} changed and no secret: {v}"
            );
            if expected == "secret_required" {
                let m = v["message"].as_str().unwrap();
                assert!(
                    names.iter().any(|n| m.starts_with(n)),
                    "{what}: the message names the changed field ({names:?}): {m}"
                );
            }
        }
    }
    requests
}

async fn d7_secrets_go_only_to_their_target(db: Db) {
    let env = RosterEnv::launch(db, None, &[]).await;
    let c = env.customer("Acme", &["example.org"]).await;

    // LDAP: saved against listener A; the changed settings would reach A or B.
    let (ldap_a, ldap_b) = (Recorder::start().await, Recorder::start().await);
    let ldap_secret = canary("Ldap");
    let ldap = json!({
        "kind": "ldap",
        "host": "127.0.0.1",
        "port": ldap_a.port(),
        "ssl": false,
        "starttls": false,
        "verify_tls": true,
        "bind_user": "cn=reader,dc=example,dc=com",
        "password": ldap_secret,
        "base_dn": "dc=example,dc=com",
        "timeout_secs": 2,
        "enabled": false,
    });
    env.put_directory(&c, ldap.clone()).await;
    let ldap_saved = with(ldap.clone(), &[("password", Value::Null)]);
    let other_ca = roster_testkit::TestCa::new("another CA").unwrap();
    let ldap_changes = [
        ("host", json!("localhost")),
        ("port", json!(ldap_b.port())),
        ("ssl", json!(true)),
        ("starttls", json!(true)),
        ("verify_tls", json!(false)),
        // A real CA certificate: an unusable one is refused on save before
        // the secret question (issue 11).
        ("ca_pem", json!(other_ca.cert_pem())),
        ("bind_user", json!("cn=admin,dc=example,dc=com")),
    ];

    // Entra ID: the token endpoint is listener A; changes point at B.
    let (entra_a, entra_b) = (Recorder::start().await, Recorder::start().await);
    let entra_secret = canary("Entra");
    let base_a = format!("http://127.0.0.1:{}", entra_a.port());
    let base_b = format!("http://127.0.0.1:{}", entra_b.port());
    let entra = json!({
        "kind": "entra",
        "tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "client_id": "00001111-aaaa-2222-bbbb-3333cccc4444",
        "client_secret": entra_secret,
        "login_endpoint": base_a,
        "graph_endpoint": format!("{base_a}/v1.0"),
        "enabled": false,
    });
    env.put_directory(&c, entra.clone()).await;
    let entra_saved = with(entra.clone(), &[("client_secret", Value::Null)]);
    let entra_changes = [
        ("tenant", json!("contoso.onmicrosoft.com")),
        ("client_id", json!("99998888-aaaa-2222-bbbb-3333cccc4444")),
        ("login_endpoint", json!(base_b)),
        ("graph_endpoint", json!(format!("{base_b}/v1.0"))),
    ];

    let refused = every_change_is_refused(&env, &c, &ldap_saved, &ldap_changes).await
        + every_change_is_refused(&env, &c, &entra_saved, &entra_changes).await;
    assert_eq!(refused, 2 * (127 + 15));
    for (name, r) in [
        ("ldap A", &ldap_a),
        ("ldap B", &ldap_b),
        ("entra A", &entra_a),
        ("entra B", &entra_b),
    ] {
        assert_eq!(
            (r.connections(), r.bytes().len()),
            (0, 0),
            "{name}: nothing is delivered"
        );
    }
    // Nothing was saved by the refused saves.
    let (_, view) = env.api.get(&format!("/v1/customers/{c}/directory")).await;
    assert_eq!(
        (&view["ldap"]["host"], &view["ldap"]["port"]),
        (&json!("127.0.0.1"), &json!(ldap_a.port())),
        "{view}"
    );
    assert_eq!(view["entra"]["login_endpoint"], json!(base_a), "{view}");
    let (_, audit) = env
        .api
        .get(&format!(
            "/v1/customers/{c}/audit?type=DirectoryTested&page_size=1000"
        ))
        .await;
    assert_eq!(audit["events"], json!([]), "refused tests connect nowhere");

    // A change that is not a connection field needs no secret.
    env.put_directory(
        &c,
        with(
            ldap_saved.clone(),
            &[("base_dn", json!("ou=Staff,dc=example,dc=com"))],
        ),
    )
    .await;
    let ldap_saved = with(
        ldap_saved,
        &[("base_dn", json!("ou=Staff,dc=example,dc=com"))],
    );

    // The listeners do see secrets: unchanged settings use the stored one,
    // at the target it was entered for ...
    let (s, t) = test_raw(&env, &c, Some(ldap_saved.clone())).await;
    assert_eq!((s, &t["ok"]), (StatusCode::OK, &json!(false)), "{t}");
    assert!(
        ldap_a.wait_for(&ldap_secret, Duration::from_secs(5)).await,
        "the stored bind password goes to its own server"
    );
    let (s, t) = test_raw(&env, &c, Some(entra_saved.clone())).await;
    assert_eq!((s, &t["ok"]), (StatusCode::OK, &json!(false)), "{t}");
    assert!(
        entra_a
            .wait_for(&entra_secret, Duration::from_secs(5))
            .await,
        "the stored client secret goes to its own token endpoint"
    );
    // ... and changed settings with a secret given carry that secret only.
    let fresh = canary("Fresh");
    let body = with(
        ldap_saved.clone(),
        &[("port", json!(ldap_b.port())), ("password", json!(fresh))],
    );
    let (s, t) = test_raw(&env, &c, Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert!(ldap_b.wait_for(&fresh, Duration::from_secs(5)).await);
    let fresh_entra = canary("FreshEntra");
    let body = with(
        entra_saved.clone(),
        &[
            ("login_endpoint", json!(base_b)),
            ("client_secret", json!(fresh_entra)),
        ],
    );
    let (s, t) = test_raw(&env, &c, Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert!(entra_b.wait_for(&fresh_entra, Duration::from_secs(5)).await);
    assert!(!ldap_b.received(&ldap_secret) && !entra_b.received(&entra_secret));
    // Test results are Roster's words, never the other side's answer.
    assert!(!t.to_string().contains(&fresh_entra), "{t}");

    // Saving new connection settings with a new secret moves both; the old
    // target no longer gets the stored secret without it.
    let moved_secret = canary("Moved");
    env.put_directory(
        &c,
        with(
            ldap_saved.clone(),
            &[
                ("port", json!(ldap_b.port())),
                ("password", json!(moved_secret)),
            ],
        ),
    )
    .await;
    let (s, v) = test_raw(&env, &c, Some(ldap_saved.clone())).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("secret_required")),
        "{v}"
    );
    assert!(!ldap_a.received(&moved_secret));

    // Every test made is in the audit trail: saved or not, secret given or not.
    let (_, audit) = env
        .api
        .get(&format!(
            "/v1/customers/{c}/audit?type=DirectoryTested&page_size=1000"
        ))
        .await;
    let events = audit["events"].as_array().unwrap();
    let seen: Vec<(bool, bool, String)> = events
        .iter()
        .map(|e| {
            let p = &e["payload"]["DirectoryTested"];
            (
                p["saved"].as_bool().unwrap(),
                p["secret_given"].as_bool().unwrap(),
                p["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(seen.len(), 4, "{audit}");
    for expected in [
        (false, false, "ldap".to_string()),
        (false, false, "entra".to_string()),
        (false, true, "ldap".to_string()),
        (false, true, "entra".to_string()),
    ] {
        assert!(seen.contains(&expected), "{expected:?} in {seen:?}");
    }
    let text = audit.to_string();
    for secret in [
        &ldap_secret,
        &entra_secret,
        &fresh,
        &fresh_entra,
        &moved_secret,
    ] {
        assert!(
            !text.contains(secret.as_str()),
            "no secret in the audit trail"
        );
    }
    // The saved settings, tested without a body, are recorded as saved.
    let (s, t) = test_raw(&env, &c, None).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert!(ldap_b.wait_for(&moved_secret, Duration::from_secs(5)).await);
    let (_, audit) = env
        .api
        .get(&format!(
            "/v1/customers/{c}/audit?type=DirectoryTested&page_size=1000"
        ))
        .await;
    let saved_tests = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["payload"]["DirectoryTested"]["saved"] == json!(true))
        .count();
    assert_eq!(saved_tests, 1, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d7_a_stored_secret_goes_only_to_its_target_on_save_and_test_sqlite() {
    d7_secrets_go_only_to_their_target(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d7_a_stored_secret_goes_only_to_its_target_on_save_and_test_postgres() {
    d7_secrets_go_only_to_their_target(Db::Postgres).await;
}

// ---------------------------------------------------------------------------
// Outbound targets are the operator's decision (issue 10).

/// A one-shot HTTP server on loopback that answers every request with
/// `status` and `body` (a foreign server whose words must not come back).
async fn answering_server(
    status: &'static str,
    body: String,
) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read the request until the client goes quiet.
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await
                {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (port, task)
}

async fn outbound_is_the_operators_decision(db: Db) {
    // The operator allows nothing beyond the defaults.
    let env = RosterEnv::launch(db, None, &[("ROSTER_ALLOW_OUTBOUND", "")]).await;
    let c = env.customer("Acme", &["example.org"]).await;
    let rec = Recorder::start().await;
    let ldap = json!({
        "kind": "ldap",
        "host": "127.0.0.1",
        "port": rec.port(),
        "ssl": false,
        "bind_user": "cn=reader,dc=example,dc=com",
        "password": canary("Ldap"),
        "base_dn": "dc=example,dc=com",
        "timeout_secs": 2,
        "enabled": false,
    });
    for host in [
        "127.0.0.1",
        "localhost",
        "::1",
        "0.0.0.0",
        "169.254.169.254",
        "fd00:ec2::254",
        "169.254.1.1",
        "10.0.0.1",
        "192.168.0.10",
    ] {
        let body = with(ldap.clone(), &[("host", json!(host))]);
        for (what, (s, v)) in [
            ("save", env.put_directory_raw(&c, body.clone()).await),
            ("test", test_raw(&env, &c, Some(body.clone())).await),
        ] {
            assert_eq!(
                (s, v["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_request")),
                "{what} {host}: {v}"
            );
            let m = v["message"].as_str().unwrap();
            assert!(
                m.starts_with("host leads to") && m.contains("ROSTER_ALLOW_OUTBOUND")
                    || m.contains("not a server"),
                "{what} {host}: {m}"
            );
        }
    }
    let entra = json!({
        "kind": "entra",
        "tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "client_id": "00001111-aaaa-2222-bbbb-3333cccc4444",
        "client_secret": canary("Entra"),
        "enabled": false,
    });
    let loopback = format!("http://127.0.0.1:{}", rec.port());
    for (patch, words) in [
        (json!({"login_endpoint": loopback}), "https"),
        (
            json!({"graph_endpoint": format!("{loopback}/v1.0")}),
            "https",
        ),
        (
            json!({"login_endpoint": "https://login.evil.example"}),
            "login_endpoint must be on one of Microsoft's documented hosts",
        ),
        (
            json!({"graph_endpoint": "https://graph.evil.example/v1.0"}),
            "graph_endpoint must be on one of Microsoft's documented hosts",
        ),
        (
            json!({"login_endpoint": "https://169.254.169.254"}),
            "documented hosts",
        ),
    ] {
        let fields: Vec<(&str, Value)> = patch
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let body = with(entra.clone(), &fields);
        for (what, (s, v)) in [
            ("save", env.put_directory_raw(&c, body.clone()).await),
            ("test", test_raw(&env, &c, Some(body.clone())).await),
        ] {
            assert_eq!(
                (s, v["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_request")),
                "{what} {patch}: {v}"
            );
            assert!(
                v["message"].as_str().unwrap().contains(words),
                "{what} {patch}: {v}"
            );
        }
    }
    assert_eq!(rec.connections(), 0, "nothing refused was connected to");
    let (_, view) = env.api.get(&format!("/v1/customers/{c}/directory")).await;
    assert_eq!(
        (&view["ldap"], &view["entra"]),
        (&json!(null), &json!(null)),
        "{view}"
    );
    // The national clouds' documented endpoints are accepted (saving connects nowhere).
    for (login, graph) in [
        (
            "https://login.microsoftonline.us",
            "https://graph.microsoft.us/v1.0",
        ),
        (
            "https://login.microsoftonline.us",
            "https://dod-graph.microsoft.us/v1.0",
        ),
        (
            "https://login.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn/v1.0",
        ),
        (
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com/v1.0",
        ),
    ] {
        env.put_directory(
            &c,
            with(
                entra.clone(),
                &[
                    ("login_endpoint", json!(login)),
                    ("graph_endpoint", json!(graph)),
                ],
            ),
        )
        .await;
    }
    drop(env);

    // With the operator's allowance (the tests' emulator setting), a foreign
    // token endpoint's answer never comes back in the test result.
    let env = RosterEnv::launch(db, None, &[]).await;
    let c = env.customer("Acme", &["example.org"]).await;
    let foreign = canary("ForeignBody");
    let (port, _server) = answering_server(
        "400 Bad Request",
        json!({"error": "invalid_client", "error_description": format!("AADSTS7000215: {foreign}"), "error_codes": [7000215]}).to_string(),
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let body = with(
        entra,
        &[
            ("login_endpoint", json!(base)),
            ("graph_endpoint", json!(format!("{base}/v1.0"))),
        ],
    );
    let (s, t) = test_raw(&env, &c, Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(
        (&t["ok"], t["code"].as_str()),
        (&json!(false), Some("secret_rejected")),
        "{t}"
    );
    assert!(!t.to_string().contains(&foreign), "no foreign text: {t}");
    assert!(!t["message"].as_str().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_d6_outbound_targets_are_the_operators_decision_sqlite() {
    outbound_is_the_operators_decision(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_d6_outbound_targets_are_the_operators_decision_postgres() {
    outbound_is_the_operators_decision(Db::Postgres).await;
}
