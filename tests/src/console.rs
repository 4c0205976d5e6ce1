//! What the console's browser suites share (issue 14): administrators
//! added through `roster admin add`, and the few steps every page test
//! takes (fill, click, wait for text, screenshot and axe, sign in).

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::browser::Browser;
use crate::process::{roster_binary, RosterProcess, TEST_SECRET_KEY};

/// The password of every administrator [`add_admin`] adds.
pub const PASSWORD: &str = "correct horse battery staple 14";

/// Adds an administrator with a password through `roster admin add`.
/// `scope`: `--customer <id>`, or nothing for the only partner.
pub fn add_admin(p: &RosterProcess, email: &str, scope: &[&str]) {
    let mut cmd = std::process::Command::new(roster_binary());
    cmd.args([
        "admin",
        "add",
        "--email",
        email,
        "--name",
        "Pat Admin",
        "--password-stdin",
    ])
    .args(scope)
    .env("ROSTER_SECRET_KEY", TEST_SECRET_KEY)
    .env("ROSTER_DATA_DIR", &p.data_dir)
    .env("ROSTER_LOG_FORMAT", "text")
    .env_remove("DATABASE_URL")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(url) = &p.database_url {
        cmd.env("DATABASE_URL", url);
    }
    let mut child = cmd.spawn().expect("roster admin add");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "roster admin add: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

pub async fn fill(c: &Client, css: &str, value: &str) {
    let e = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Waits until the page's main content holds `needle`.
pub async fn wait_for(c: &Client, needle: &str) -> String {
    for _ in 0..100 {
        if let Ok(e) = c.find(Locator::Css("main")).await {
            if let Ok(t) = e.text().await {
                if t.contains(needle) {
                    return t;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the page never showed {needle:?}; it shows:\n{}",
        text(c, "body").await
    );
}

/// Screenshot and axe check of the current page.
pub async fn page(b: &Browser, name: &str) {
    b.screenshot(name).await.unwrap();
    b.assert_accessible().await.unwrap();
}

pub async fn sign_in(b: &Browser, base: &str, email: &str) {
    b.goto(&format!("{base}/signin")).await.unwrap();
    fill(&b.client, "#email", email).await;
    fill(&b.client, "#password", PASSWORD).await;
    click(&b.client, "form[action='/signin'] button[type=submit]").await;
}

// Over HTTP, without a browser: the console's session and CSRF token.

/// An HTTP client that does not follow redirects (a console answer's
/// `Location` is part of what tests check).
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `roster_session=...` pair a response sets, if it sets a session.
pub fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("roster_session=") && !v.starts_with("roster_session=;"))
        .map(|v| v.split(';').next().unwrap().to_string())
}

/// The CSRF token of the first form of a page.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"_csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 20;
    html[at..].split('"').next().unwrap().to_string()
}

/// Signs in over HTTP with [`PASSWORD`]: the session cookie.
pub async fn http_sign_in(base: &str, email: &str) -> String {
    let base = base.trim_end_matches('/');
    let res = no_redirects()
        .post(format!("{base}/signin"))
        .header(reqwest::header::ORIGIN, base)
        .form(&[("email", email), ("password", PASSWORD), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        reqwest::StatusCode::SEE_OTHER,
        "{email} signs in"
    );
    session_cookie(&res).expect("a session cookie")
}

/// The `href` of the first element `locator` finds (a link).
pub async fn href_of(c: &Client, locator: Locator<'_>) -> String {
    c.find(locator)
        .await
        .unwrap_or_else(|e| panic!("{locator:?}: {e}"))
        .attr("href")
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{locator:?} has no href"))
}
