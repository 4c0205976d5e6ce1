//! Signing in to the console (issue 14, T4) in a real browser, against the
//! real `roster serve` on SQLite and on PostgreSQL: wrong passwords are
//! throttled with a clear message; TOTP enrolment from the profile, then a
//! sign-in with password and code; single sign-on set up by a partner
//! administrator and used through a real OpenID provider (npm
//! `oidc-provider`), with a person the provider knows but Roster does not
//! refused; the sign-in log shows all of it. Every page is screenshotted
//! and checked with axe-core.

use std::time::Duration;

use fantoccini::Locator;
use roster_tests::browser::Browser;
use roster_tests::console::{
    add_admin, click, fill, no_redirects, page, sign_in, text, wait_for, PASSWORD,
};
use roster_tests::oidc::{OidcAccount, OidcProvider};
use roster_tests::process::{on_both, RosterProcess};

const EMAIL: &str = "pat@msp.example";
const IDP_PASSWORD: &str = "provider password 14";

async fn sign_out(b: &Browser) {
    click(&b.client, "form[action='/signout'] button[type=submit]").await;
    wait_for(&b.client, "You have signed out").await;
}

/// A wrong password posted over HTTP (no browser: milliseconds, so the
/// growing waits below are not raced by a slow page).
async fn wrong_password_over_http(base: &str) {
    let base = base.trim_end_matches('/');
    let html = no_redirects()
        .post(format!("{base}/signin"))
        .header(reqwest::header::ORIGIN, base)
        .form(&[
            ("email", EMAIL),
            ("password", "not the password at all"),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("The email or password is not right"),
        "{html}"
    );
}

/// T4: wrong passwords get one message; after three the account waits,
/// longer after each further failure (2, 4, 8 s), and the page says how
/// long, even to the right password.
async fn wrong_passwords_are_throttled(b: &Browser, base: &str) {
    let c = &b.client;
    b.goto(&format!("{base}/signin")).await.unwrap();
    page(b, "signin").await;
    for _ in 0..3 {
        fill(c, "#email", EMAIL).await;
        fill(c, "#password", "not the password at all").await;
        click(c, "form[action='/signin'] button[type=submit]").await;
        wait_for(c, "The email or password is not right").await;
    }
    // The 4th and 5th failures each wait out the block they cause; the
    // 6th blocks the account for 8 s, ample time for a browser under load.
    for wait_ms in [2_100, 4_100, 0] {
        wrong_password_over_http(base).await;
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    }
    // Blocked now, even with the right password.
    fill(c, "#email", EMAIL).await;
    fill(c, "#password", PASSWORD).await;
    click(c, "form[action='/signin'] button[type=submit]").await;
    let t = wait_for(c, "Too many failed sign-ins").await;
    let seconds: u64 = t
        .split("Wait ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("says how long to wait: {t}"));
    assert!((1..=8).contains(&seconds), "{t}");
    page(b, "signin-throttled").await;
    tokio::time::sleep(Duration::from_millis(seconds * 1000 + 500)).await;
}

/// T4: TOTP set up from the profile (QR code and key), then a sign-in
/// asks for the code; the enrolment's code cannot be used again.
async fn totp_enrolment_then_sign_in(b: &Browser, base: &str) {
    let c = &b.client;
    sign_in(b, base, EMAIL).await;
    wait_for(c, "Customers").await;
    b.goto(&format!("{base}/profile")).await.unwrap();
    click(c, "form[action='/profile/totp/start'] button[type=submit]").await;
    wait_for(c, "authenticator").await;
    let secret = text(c, "#totp-secret").await;
    let qr = c
        .find(Locator::Css("img[src^='data:image/']"))
        .await
        .expect("the QR code");
    assert!(qr.attr("alt").await.unwrap().is_some_and(|a| !a.is_empty()));
    page(b, "profile-totp").await;
    let now = chrono::Utc::now();
    let code = roster_app::admins::totp_code(&secret, now).unwrap();
    fill(c, "#code", &code).await;
    click(c, "form[action='/profile/totp/enable'] button[type=submit]").await;
    wait_for(c, "Two-step verification is on").await;
    sign_out(b).await;
    sign_in(b, base, EMAIL).await;
    wait_for(c, "type the 6-digit code").await;
    page(b, "signin-totp").await;
    // The enrolment's code is used up (RFC 6238 section 5.2).
    fill(c, "#code", &code).await;
    click(c, "form[action='/signin/totp'] button[type=submit]").await;
    wait_for(c, "That code is not right").await;
    let next = roster_app::admins::totp_code(&secret, now + chrono::Duration::seconds(30)).unwrap();
    fill(c, "#code", &next).await;
    click(c, "form[action='/signin/totp'] button[type=submit]").await;
    wait_for(c, "Customers").await;
}

/// Signs in at the provider's own login page.
async fn at_provider(b: &Browser, email: &str) {
    let c = &b.client;
    if c.wait()
        .for_element(Locator::Css("form#login"))
        .await
        .is_err()
    {
        panic!(
            "not the provider's login page: {}\n{}",
            c.current_url().await.unwrap(),
            text(c, "body").await
        );
    }
    fill(c, "#email", email).await;
    fill(c, "#password", IDP_PASSWORD).await;
    click(c, "#submit").await;
}

/// T4: a partner administrator sets up single sign-on; the sign-in page
/// offers it; the provider's person signs in as the administrator with
/// that email; a person without an administrator account is refused.
async fn single_sign_on(b: &Browser, p: &RosterProcess) {
    let c = &b.client;
    let provider = OidcProvider::start(
        &[format!("{}/sso/callback", p.base)],
        &[
            OidcAccount::new("pat-at-idp", EMAIL, IDP_PASSWORD),
            OidcAccount::new("stranger", "stranger@msp.example", IDP_PASSWORD),
        ],
    )
    .await
    .unwrap();
    b.goto(&format!("{}/administrators", p.base)).await.unwrap();
    wait_for(c, "Single sign-on").await;
    let redirect = text(c, "#sso-redirect").await;
    assert_eq!(redirect, format!("{}/sso/callback", p.base));
    // An issuer that is not the provider's is refused when saved, saying why.
    fill(c, "#sso-issuer", &format!("{}/nope", provider.issuer)).await;
    fill(c, "#sso-client", &provider.client_id).await;
    fill(c, "#sso-secret", &provider.client_secret).await;
    click(c, "button[name=action][value=save]").await;
    wait_for(c, "Single sign-on was not saved").await;
    fill(c, "#sso-issuer", &provider.issuer).await;
    fill(c, "#sso-client", &provider.client_id).await;
    fill(c, "#sso-secret", &provider.client_secret).await;
    click(c, "button[name=action][value=save]").await;
    wait_for(c, "Single sign-on through").await;
    let status = text(c, "#sso-status").await;
    assert!(status.contains(&provider.issuer), "{status}");
    page(b, "administrators-sso").await;
    let html = c.source().await.unwrap();
    assert!(
        !html.contains(&provider.client_secret),
        "the client secret is never shown again"
    );
    sign_out(b).await;

    // The person the provider knows as pat@ signs in as that administrator.
    click(c, "a[href^='/sso/']").await;
    at_provider(b, EMAIL).await;
    wait_for(c, "Customers").await;
    sign_out(b).await;

    // A person the provider knows but Roster does not: refused, nobody
    // created. (The provider's own session ends first: its cookies go.)
    c.delete_all_cookies().await.unwrap();
    b.goto(&format!("{}/signin", p.base)).await.unwrap();
    click(c, "a[href^='/sso/']").await;
    at_provider(b, "stranger@msp.example").await;
    wait_for(c, "no active Roster administrator").await;
    page(b, "signin-sso-refused").await;
    let listed = p.run(&["admin", "list"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("stranger"));
}

/// T4: the sign-in log of the partner shows what happened, in its words.
async fn sign_in_log(b: &Browser, base: &str) {
    let c = &b.client;
    sign_in(b, base, "second@msp.example").await;
    wait_for(c, "Customers").await;
    b.goto(&format!("{base}/security")).await.unwrap();
    let t = wait_for(c, "Sign-in log").await;
    for needle in [
        "Sign-in failed",
        "wrong password",
        "Two-step verification on",
        "a TOTP code used before",
        "password and TOTP",
        "Single sign-on set up",
        "single sign-on: no administrator has this email",
        "sso",
        "Signed out",
    ] {
        assert!(t.contains(needle), "the log lacks {needle:?}:\n{t}");
    }
    page(b, "security-log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t4_throttling_totp_and_single_sign_on_in_a_browser_on_both_backends() {
    on_both(|p| async move {
        p.admin().customer("Acme", 5, &["acme.example"]).await;
        add_admin(&p, EMAIL, &[]);
        add_admin(&p, "second@msp.example", &[]);
        let b = Browser::start_sized(1024, 900).await.unwrap();
        wrong_passwords_are_throttled(&b, &p.base).await;
        totp_enrolment_then_sign_in(&b, &p.base).await;
        single_sign_on(&b, &p).await;
        sign_in_log(&b, &p.base).await;
        b.close().await.unwrap();
        // The operator's view, failed sign-ins included.
        let log = p.run(&["admin", "log", "--limit", "500"]);
        let log = String::from_utf8_lossy(&log.stdout);
        assert!(
            log.contains("AdminSignInFailed\tstranger@msp.example"),
            "{log}"
        );
        assert!(log.contains("SingleSignOnConfigured"), "{log}");
        p.stop().await;
    })
    .await;
}
