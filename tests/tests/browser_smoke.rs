//! The browser harness (issue 14) against the real `roster` binary: headless
//! Chromium through chromium-driver opens the rendered API reference at
//! /api/docs/, which must run its scripts under the strict CSP (the
//! operations of /openapi.json appear), make no request to another origin,
//! have no serious or critical axe-core violation, and be screenshotted.
//! A drop zone's own JavaScript reads a file dropped with
//! [`Browser::drop_file`].

use std::time::Duration;

use fantoccini::Locator;
use roster_tests::browser::Browser;
use roster_tests::e2e::{Db, RosterEnv};
use serde_json::json;

/// Waits until `script` (a function body) answers true.
async fn wait_true(b: &Browser, script: &str, what: &str) {
    for _ in 0..100 {
        if b.client.execute(script, vec![]).await.unwrap() == json!(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i14_api_reference_renders_under_the_csp_and_is_accessible() {
    let env = RosterEnv::launch(Db::Sqlite, None, &[]).await;
    let browser = Browser::start_sized(1024, 900).await.unwrap();

    browser
        .goto(&format!("{}/api/docs", env.p.base))
        .await
        .unwrap();
    assert_eq!(
        browser.client.current_url().await.unwrap().path(),
        "/api/docs/",
        "/api/docs redirects to the page"
    );
    // Swagger UI's own scripts ran (no inline script, CSP script-src
    // 'self') and rendered the operations of /openapi.json.
    wait_true(
        &browser,
        "return document.querySelectorAll('.opblock').length > 40;",
        "the operations of /openapi.json",
    )
    .await;
    let text = browser
        .client
        .find(Locator::Css("#swagger-ui"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("/v1/customers/{c}/users"), "{text}");

    // Every resource the page loaded came from Roster itself.
    let origins = browser
        .client
        .execute(
            "return performance.getEntriesByType('resource').map((e) => new URL(e.name).origin);",
            vec![],
        )
        .await
        .unwrap();
    let origins: Vec<String> = serde_json::from_value(origins).unwrap();
    assert!(!origins.is_empty());
    for origin in &origins {
        assert_eq!(origin, &env.p.base, "a request to another origin");
    }

    let shot = browser.screenshot("api-reference").await.unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", shot.display());

    browser.assert_accessible().await.unwrap();
    browser.close().await.unwrap();
}

/// drop_file fires real dragenter/dragover/drop events whose DataTransfer
/// holds the File: a page's own drop handler reads its name, type and text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i14_drop_file_reaches_a_drop_handler_with_the_file() {
    let browser = Browser::start().await.unwrap();
    browser.goto("about:blank").await.unwrap();
    browser
        .client
        .execute(
            r#"
            document.body.innerHTML = '<div id="zone" style="width:300px;height:200px">Drop here</div>';
            const zone = document.getElementById('zone');
            window.seen = [];
            for (const kind of ['dragenter', 'dragover']) {
              zone.addEventListener(kind, (e) => { e.preventDefault(); window.seen.push(kind); });
            }
            zone.addEventListener('drop', async (e) => {
              e.preventDefault();
              const f = e.dataTransfer.files[0];
              window.dropped = {name: f.name, type: f.type, text: await f.text(), count: e.dataTransfer.files.length};
            });
            "#,
            vec![],
        )
        .await
        .unwrap();
    let csv = "address,first_name\nann@acme.example,Ann\n";
    browser
        .drop_file("#zone", "users.csv", csv.as_bytes())
        .await
        .unwrap();
    wait_true(&browser, "return !!window.dropped;", "the drop handler").await;
    let dropped = browser
        .client
        .execute("return [window.dropped, window.seen];", vec![])
        .await
        .unwrap();
    assert_eq!(
        dropped,
        json!([
            {"name": "users.csv", "type": "text/csv", "text": csv, "count": 1},
            ["dragenter", "dragover"]
        ])
    );
    let missing = browser.drop_file("#nowhere", "a.csv", b"x").await;
    assert!(
        format!("{:#}", missing.unwrap_err()).contains("no element matches #nowhere"),
        "a missing drop zone is named"
    );
    browser.close().await.unwrap();
}
