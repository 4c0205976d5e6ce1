//! HTTP and start-up hardening (issue 10), against the real `roster` binary:
//! header, body and idle timeouts and the connection limit (a slow-loris
//! client is cut off), `WWW-Authenticate: Bearer` on 401 and a
//! case-insensitive scheme, a client's `X-Request-Id` namespaced so it can
//! never be a sync run's id, the embedded database private to its owner,
//! and placeholder bootstrap tokens refused at start.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use roster_tests::e2e::{Db, RosterEnv};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn host(env: &RosterEnv) -> String {
    env.p.base.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or `within` passes):
/// what was read, and whether it closed.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_slow_loris_headers_slow_bodies_and_idle_connections_are_cut_off() {
    let env = RosterEnv::launch(
        Db::Sqlite,
        None,
        &[
            ("ROSTER_HTTP_HEADER_TIMEOUT_SECS", "1"),
            ("ROSTER_HTTP_BODY_TIMEOUT_SECS", "1"),
            ("ROSTER_HTTP_IDLE_TIMEOUT_SECS", "2"),
        ],
    )
    .await;
    let addr = host(&env);

    // Slow loris: a header byte every 100 ms never completes the request.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: roster\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    for b in b"X-Slow: ".iter().cycle().take(200) {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    assert!(closed, "the slow-loris connection is closed");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed after the header timeout, not at the client's pace ({:?})",
        started.elapsed()
    );

    // A connection that sends nothing is closed too.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "a silent connection is closed");
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));

    // A body that trickles in is refused (never a 5xx) and the connection closed.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/customers HTTP/1.1\r\nHost: roster\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{{\"name\": \"",
        env.p.bootstrap_token
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    for _ in 0..100 {
        if s.write_all(b"a").await.is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("an answer to the slow body: {text:?}"));
    assert!((400..500).contains(&status), "{text}");
    let (_, v) = env.api.get("/v1/customers").await;
    assert_eq!(v["customers"], json!([]), "nothing was created: {v}");

    // A kept-alive connection is closed once idle.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: roster\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(closed, "an idle kept-alive connection is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_beyond_the_limit_are_closed_at_once() {
    let env = RosterEnv::launch(
        Db::Sqlite,
        None,
        &[
            ("ROSTER_HTTP_MAX_CONNECTIONS", "3"),
            ("ROSTER_HTTP_HEADER_TIMEOUT_SECS", "60"),
            ("ROSTER_HTTP_IDLE_TIMEOUT_SECS", "60"),
        ],
    )
    .await;
    let addr = host(&env);
    // Let the readiness probe's connection go.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: roster\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let _ = extra.write_all(request).await;
    let (got, closed) = read_until_closed(&mut extra, Duration::from_secs(10)).await;
    assert!(
        closed && got.is_empty(),
        "the fourth connection is closed unanswered"
    );
    // A freed slot serves again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let _ = s.write_all(request).await;
        let mut buf = [0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "a freed slot is used again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_names_the_bearer_scheme_which_is_case_insensitive() {
    let env = RosterEnv::launch(Db::Sqlite, None, &[]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/customers", env.p.base);
    let token = &env.p.bootstrap_token;
    for auth in [
        None,
        Some("Basic dXNlcjpwYXNz".to_string()),
        Some("Bearer wrong-token-0123456789abcdef".to_string()),
    ] {
        let mut req = client.get(&url);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let h = r
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(h.starts_with("Bearer"), "{auth:?}: {h:?}");
    }
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = client
            .get(&url)
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{scheme}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2_a_client_request_id_is_namespaced_and_can_never_be_a_run_id() {
    let env = RosterEnv::launch(Db::Sqlite, None, &[]).await;
    let client = reqwest::Client::new();
    // A sync run's id is a UUIDv7: the kind a client would copy.
    let chosen = uuid::Uuid::now_v7().to_string();
    let create = |name: &'static str| {
        client
            .post(format!("{}/v1/customers", env.p.base))
            .bearer_auth(&env.p.bootstrap_token)
            .header("x-request-id", chosen.as_str())
            .json(&json!({"name": name, "seat_limit": 10, "domains": [format!("{}.example", name.to_lowercase())]}))
            .send()
    };
    let r = create("Acme").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let c = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(id, chosen, "the client's value is not used as is");
    let parsed = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(parsed.get_version_num(), 8, "{id}: never a v4 / v7 run id");
    let (_, audit) = env.api.get(&format!("/v1/customers/{c}/audit")).await;
    let events = audit["events"].as_array().unwrap();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e["correlation_id"] == json!(id)),
        "the events carry the namespaced id: {audit}"
    );
    // The same client value always gives the same id.
    let r = create("Bravo").await.unwrap();
    assert_eq!(
        r.headers().get("x-request-id").unwrap().to_str().unwrap(),
        id
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_database_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let env = RosterEnv::launch(Db::Sqlite, None, &[]).await;
    env.api.customer("Acme", 10, &["acme.example"]).await;
    let dir = &env.p.data_dir;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir), 0o700, "the data dir");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("roster.db") {
            assert_eq!(mode(&path), 0o600, "{name}");
            checked += 1;
        }
    }
    assert!(checked >= 2, "roster.db and its WAL: {checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placeholder_or_short_bootstrap_token_stops_the_start() {
    for token in ["CHANGE-ME-to-at-least-24-random-characters", "short-0123"] {
        let dir = tempfile::tempdir().unwrap();
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(roster_tests::process::roster_binary())
                .arg("serve")
                .env(
                    "ROSTER_LISTEN",
                    format!("127.0.0.1:{}", roster_tests::process::free_port()),
                )
                .env("ROSTER_DATA_DIR", dir.path())
                .env("ROSTER_BOOTSTRAP_TOKEN", token)
                .env("ROSTER_SECRET_KEY", roster_tests::process::TEST_SECRET_KEY)
                .env("ROSTER_LOG_FORMAT", "text")
                .env_remove("DATABASE_URL")
                .output(),
        )
        .await
        .expect("roster stops at once")
        .unwrap();
        assert!(!out.status.success(), "{token}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("ROSTER_BOOTSTRAP_TOKEN") && err.contains("openssl rand"),
            "{token}: {err}"
        );
    }
}
