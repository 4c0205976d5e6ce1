//! The console's directory services pages (issue 15, first half) against
//! the real `roster serve`, a real slapd and the Graph emulator, on SQLite
//! and on PostgreSQL. In a browser (Debian's Chromium through chromedriver):
//! the guide's LDAP steps (a wrong password shows the bind-rejected step and
//! what to check, a good one passes; Save; Sync Now and its live progress
//! until the run completes; the users with source LDAP), an exception from
//! the directory view, an addition, a failed run with what to check (D3.r),
//! and the switch to Entra ID with the confirmation prompt (D1) whose sync
//! makes LDAP's users conflicts (D2). Over HTTP: the filter check's error position,
//! the write-only password asked again for a new host (D7),
//! the tenant scope of every new route (T1) and CSRF.

use std::time::Duration;

use fantoccini::{Client, Locator};
use reqwest::header::{COOKIE, ORIGIN};
use reqwest::StatusCode;
use roster_graph_emulator::{GenerateUsers, GraphEmulator};
use roster_testkit::{DirectoryData, PgDb, Slapd, SlapdConfig, Style};
use roster_tests::browser::Browser;
use roster_tests::console::{
    add_admin, click, csrf_of, fill, href_of, http_sign_in, no_redirects, page, sign_in, text,
    wait_for,
};
use roster_tests::process::RosterProcess;

const BASE: &str = "dc=example,dc=com";
const DOMAIN: &str = "example.org";

/// Runs `f` against a fresh `roster serve` without its worker (no scheduled
/// run interferes with Sync Now) on SQLite, then on PostgreSQL.
async fn on_both_quiet<F, Fut>(f: F)
where
    F: Fn(RosterProcess) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let env = [("ROSTER_NO_WORKER", "true")];
    let dir = tempfile::tempdir().unwrap();
    f(RosterProcess::start_with(&dir.path().join("sqlite"), None, &env).await).await;
    let pg = PgDb::create().await.unwrap();
    f(RosterProcess::start_with(&dir.path().join("pg"), Some(pg.url()), &env).await).await;
}

/// Waits until the element `css` holds `needle`.
async fn wait_text(c: &Client, css: &str, needle: &str) -> String {
    let mut last = String::new();
    for _ in 0..300 {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                if t.contains(needle) {
                    return t;
                }
                last = t;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never showed {needle:?}; it shows {last:?}");
}

async fn open_advanced(c: &Client) {
    click(c, "#advanced summary").await;
}

/// The guide's LDAP steps 4-13: the form, a wrong password, a good one, Save.
async fn connect_ldap(b: &Browser, base: &str, id: &str, slapd: &Slapd) {
    let c = &b.client;
    b.goto(&format!("{base}/customers/{id}/directory"))
        .await
        .unwrap();
    wait_for(c, "LDAP: Connect").await;
    click(c, "#enabled").await;
    fill(c, "#host", slapd.host()).await;
    click(c, "input[name=security][value=none]").await;
    fill(c, "#bind_user", &slapd.root_dn()).await;
    fill(c, "#password", "not the password").await;
    fill(c, "#base_dn", BASE).await;
    open_advanced(c).await;
    fill(c, "#port", &slapd.port().to_string()).await;
    // The custom filter is checked as it is typed, with the error's position.
    fill(c, "#filter", "(department=Sales").await;
    let status = wait_text(c, "#filter-status", "Position").await;
    assert!(status.contains("Position 18"), "{status}");
    page(b, "directory-ldap-filter").await;
    fill(c, "#filter", "(objectClass=*)").await;
    wait_text(c, "#filter-status", "A valid LDAP filter").await;
    click(c, "button[name=do][value=test]").await;
    let t = wait_text(c, "#test-result", "LDAP connection test failed").await;
    assert!(t.contains("Signing in (bind)"), "{t}");
    assert!(t.contains("bind_rejected"), "{t}");
    assert!(t.contains("Account credentials"), "{t}");
    assert!(t.contains("The server refused the credentials"), "{t}");
    page(b, "directory-ldap-test-failed").await;
    // The form comes back as typed, never with the password.
    let host = c
        .find(Locator::Css("#host"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(host.as_deref(), Some(slapd.host()));
    let pw = c
        .find(Locator::Css("#password"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(pw.as_deref(), Some(""), "the password is never sent back");
    fill(c, "#password", slapd.root_password()).await;
    click(c, "button[name=do][value=test]").await;
    let t = wait_text(c, "#test-result", "LDAP connection test passed").await;
    assert!(t.contains("6 user(s)"), "{t}");
    page(b, "directory-ldap-test-passed").await;
    fill(c, "#password", slapd.root_password()).await;
    click(c, "button[name=do][value=save]").await;
    wait_for(c, "LDAP settings saved: LDAP sync is enabled").await;
    let help = text(c, "#password-help").await;
    assert!(help.contains("A password is stored"), "{help}");
    page(b, "directory-ldap").await;
}

/// Step 3: Sync Now, its progress until the run ends, the users with
/// source LDAP.
async fn sync_now(b: &Browser, p: &RosterProcess, id: &str) {
    let base = p.base.as_str();
    let c = &b.client;
    click(c, "#sync-form button[type=submit]").await;
    wait_for(c, "LDAP sync has successfully started").await;
    let t = wait_text(c, "#sync-text", "The sync completed").await;
    assert!(t.contains("added"), "{t}");
    let value = c
        .execute("return document.getElementById('sync-bar').value;", vec![])
        .await
        .unwrap();
    assert_eq!(value, serde_json::json!(100));
    page(b, "directory-sync-progress").await;
    let run_href = href_of(c, Locator::Css("#sync-run")).await;
    assert!(
        run_href.contains(&format!("/customers/{id}/runs/")),
        "{run_href}"
    );
    // Every door sees the same progress: the API's run view.
    let run = run_href.rsplit('/').next().unwrap();
    let (s, v) = p
        .admin()
        .get(&format!("/v1/customers/{id}/directory/syncs/{run}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let progress = &v["run"]["progress"];
    assert_eq!(progress["phase"], "apply", "{v}");
    assert_eq!(progress["read"], v["run"]["counts"]["read"], "{v}");
    assert_eq!(progress["applied"], progress["steps"], "{v}");
    assert_eq!(
        progress["planned"]["added"], v["run"]["counts"]["added"],
        "{v}"
    );
    let (_, doc) = p.admin().get("/openapi.json").await;
    assert!(
        doc["components"]["schemas"]["RunView"]["properties"]["progress"].is_object(),
        "the OpenAPI document describes the run's progress"
    );
    b.goto(&format!("{base}/customers/{id}/users"))
        .await
        .unwrap();
    let t = wait_for(c, "@example.org").await;
    assert!(t.contains("LDAP"), "{t}");
    page(b, "directory-users").await;
}

/// D3.o, D3.p: an exception from the directory view, an addition.
async fn exceptions_and_additions(b: &Browser, p: &RosterProcess, id: &str) {
    let base = p.base.as_str();
    let c = &b.client;
    b.goto(&format!("{base}/customers/{id}/directory/exceptions"))
        .await
        .unwrap();
    wait_for(c, "The directory as last read").await;
    let list = text(c, "#exception-list").await;
    assert!(list.contains("No exception"), "{list}");
    let name = text(c, "#directory-objects tbody tr td:nth-child(2)").await;
    // The guide: click the blue arrow in the row, then click Save. The
    // arrow only stages the change: nothing is saved before Save.
    click(c, "#directory-objects tbody tr td:last-child a.arrow").await;
    wait_for(c, "not saved yet").await;
    let list = text(c, "#exception-list").await;
    assert!(list.contains(name.trim()), "{name} in {list}");
    assert!(list.contains("1 change not saved yet"), "{list}");
    page(b, "directory-exceptions-staged").await;
    let (_, v) = p
        .admin()
        .get(&format!("/v1/customers/{id}/directory/exceptions"))
        .await;
    assert_eq!(v["exceptions"], serde_json::json!([]), "not saved: {v}");
    click(c, "#exceptions-save button[type=submit]").await;
    wait_for(c, "Saved: 1 change to the exception list").await;
    let list = text(c, "#exception-list").await;
    assert!(list.contains("1 exception"), "{list}");
    assert!(
        list.contains(name.trim()) && !list.contains("not saved"),
        "{list}"
    );
    let row = text(c, "#directory-objects tbody tr td:last-child").await;
    assert!(row.contains("On the exception list"), "{row}");
    let (_, v) = p
        .admin()
        .get(&format!("/v1/customers/{id}/directory/exceptions"))
        .await;
    assert_eq!(v["exceptions"].as_array().map(Vec::len), Some(1), "{v}");
    page(b, "directory-exceptions").await;

    b.goto(&format!("{base}/customers/{id}/directory/additions"))
        .await
        .unwrap();
    wait_for(c, "Add a user").await;
    fill(c, "#address", "new.hire@example.org").await;
    click(c, "#addition-form button[type=submit]").await;
    wait_for(c, "new.hire@example.org added").await;
    let list = text(c, "#additions").await;
    assert!(list.contains("new.hire@example.org"), "{list}");
    page(b, "directory-additions").await;
    b.goto(&format!("{base}/customers/{id}/users?q=new.hire"))
        .await
        .unwrap();
    let row = wait_text(c, "table.users tbody", "new.hire@example.org").await;
    assert!(
        row.contains("LDAP"),
        "an addition has the directory as its source: {row}"
    );
}

/// D3.r: a run that fails reading changes nothing; the page shows the
/// step and what to check beside it, as for a failed test.
async fn failed_sync(b: &Browser, base: &str, id: &str) {
    let c = &b.client;
    b.goto(&format!("{base}/customers/{id}/directory?tab=ldap"))
        .await
        .unwrap();
    wait_for(c, "LDAP: Connect").await;
    fill(c, "#base_dn", "ou=Nowhere,dc=example,dc=com").await;
    click(c, "button[name=do][value=save]").await;
    wait_for(c, "LDAP settings saved").await;
    click(c, "#sync-form button[type=submit]").await;
    let t = wait_text(c, "#sync-progress", "Step that failed").await;
    assert!(t.contains("The sync failed and changed nothing"), "{t}");
    assert!(
        t.contains("Searching the base DN") && t.contains("Base DN"),
        "{t}"
    );
    page(b, "directory-sync-failed").await;
    b.goto(&format!("{base}/customers/{id}/users?q=example.org"))
        .await
        .unwrap();
    let t = wait_text(c, "table.users tbody", "@example.org").await;
    assert!(
        !t.contains("Pending deletion"),
        "a failed read flags nobody: {t}"
    );
}

/// D1: enabling Entra ID while LDAP is enabled asks first, saying what
/// happens to LDAP's users; the test shows the guide's green message.
async fn switch_to_entra(b: &Browser, base: &str, id: &str, emu: &GraphEmulator, fx: &Fixture) {
    let c = &b.client;
    b.goto(&format!("{base}/customers/{id}/directory?tab=entra"))
        .await
        .unwrap();
    wait_for(c, "Entra ID: Connect").await;
    let warning = text(c, "#switch-box").await;
    assert!(
        warning.contains("become user conflicts") && warning.contains("deleted after 7 days"),
        "{warning}"
    );
    click(c, "#enabled").await;
    fill(c, "#tenant", &fx.tenant).await;
    fill(c, "#client_id", &fx.client_id).await;
    fill(c, "#client_secret", &fx.secret).await;
    open_advanced(c).await;
    fill(c, "#login_endpoint", &emu.login_base()).await;
    fill(c, "#graph_endpoint", &emu.graph_base()).await;
    // The switch flags every LDAP user at once: past the guard's default.
    fill(c, "#guard_max_flags", "100000").await;
    fill(c, "#guard_max_percent", "100").await;
    click(c, "button[name=do][value=test]").await;
    wait_text(c, "#test-result", "Azure Connection test was passed").await;
    page(b, "directory-entra-test").await;
    fill(c, "#client_secret", &fx.secret).await;
    click(c, "button[name=do][value=save]").await;
    let mut prompt = None;
    for _ in 0..50 {
        if let Ok(t) = c.get_alert_text().await {
            prompt = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let prompt = prompt.expect("a confirmation prompt before the switch");
    assert!(
        prompt.contains("LDAP sync is enabled") && prompt.contains("user conflicts"),
        "{prompt}"
    );
    c.accept_alert().await.unwrap();
    wait_for(c, "Entra ID settings saved: Entra ID sync is enabled").await;
    let status = text(c, "p.lead").await;
    assert!(status.contains("Entra ID sync is enabled"), "{status}");
    page(b, "directory-entra").await;

    // The guide's step 14, and D2: LDAP's users become user conflicts.
    click(c, "#sync-form button[type=submit]").await;
    wait_for(c, "Azure sync has successfully started").await;
    wait_text(c, "#sync-text", "The sync completed").await;
    b.goto(&format!("{base}/customers/{id}/users?q={}", fx.domain))
        .await
        .unwrap();
    let t = wait_text(c, "table.users tbody", &fx.domain).await;
    assert!(t.contains("Entra ID (Azure)"), "{t}");
    b.goto(&format!("{base}/customers/{id}/users?q=example.org"))
        .await
        .unwrap();
    let t = wait_text(c, "table.users tbody", "@example.org").await;
    assert!(
        t.contains("Pending deletion"),
        "LDAP's users are conflicts now: {t}"
    );
}

struct Fixture {
    domain: String,
    tenant: String,
    client_id: String,
    secret: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i15_directory_services_pages_in_a_browser_on_both_backends() {
    let data = DirectoryData::new(Style::AdLike, BASE, DOMAIN)
        .users(6)
        .groups(1, 3);
    let slapd = Slapd::start(SlapdConfig::ad_like().data(data.clone()))
        .await
        .expect("slapd");
    let emu = GraphEmulator::start().await;
    let tenant = emu.standard_tenant("acmeentra");
    tenant
        .tenant
        .generate_users(GenerateUsers::new(3, &tenant.domain));
    let fx = Fixture {
        domain: tenant.domain.clone(),
        tenant: tenant.tenant_id.clone(),
        client_id: tenant.client_id.clone(),
        secret: tenant.client_secret.clone(),
    };
    on_both_quiet(|p| {
        let (slapd, emu, fx, domain) = (&slapd, &emu, &fx, tenant.domain.clone());
        async move {
            let id = p
                .admin()
                .customer("Acme Dental", 100, &[DOMAIN, &domain])
                .await;
            add_admin(&p, "partner@roster.example", &[]);
            let b = Browser::start_sized(1100, 900).await.unwrap();
            sign_in(&b, &p.base, "partner@roster.example").await;
            wait_for(&b.client, "Customers").await;
            connect_ldap(&b, &p.base, &id, slapd).await;
            sync_now(&b, &p, &id).await;
            exceptions_and_additions(&b, &p, &id).await;
            failed_sync(&b, &p.base, &id).await;
            switch_to_entra(&b, &p.base, &id, emu, fx).await;
            b.close().await.unwrap();
            p.stop().await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// Over HTTP: the filter check, T1, CSRF.

/// Signs in over HTTP: the session cookie and a CSRF token of its pages.
async fn session(p: &RosterProcess, email: &str, home: &str) -> (String, String) {
    let cookie = http_sign_in(&p.base, email).await;
    let html = no_redirects()
        .get(format!("{}{home}", p.base.trim_end_matches('/')))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (cookie, csrf_of(&html))
}

/// The filter check answers with the parser's verdict and the 1-based
/// position of an error, as typed (leading blanks count).
async fn filter_check(p: &RosterProcess, cookie: &str, c: &str, filter: &str) -> serde_json::Value {
    let res = no_redirects()
        .get(format!(
            "{}/customers/{c}/directory/filter-check",
            p.base.trim_end_matches('/')
        ))
        .query(&[("filter", filter)])
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_d5_d7_directory_routes_are_scoped_csrf_protected_check_filters_and_keep_the_secret() {
    on_both_quiet(|p| async move {
        let base = p.base.trim_end_matches('/').to_string();
        let mine = p.admin().customer("Mine", 10, &["mine.example"]).await;
        let theirs = p.admin().customer("Theirs", 10, &["theirs.example"]).await;
        add_admin(&p, "admin@mine.example", &["--customer", &mine]);
        let (cookie, csrf) = session(
            &p,
            "admin@mine.example",
            &format!("/customers/{mine}/directory"),
        )
        .await;

        // D5: the filter check of the console, by the sync's own parser.
        let ok = filter_check(
            &p,
            &cookie,
            &mine,
            "(&(objectClass=user)(department=Sales))",
        )
        .await;
        assert_eq!(ok["ok"], true, "{ok}");
        let bad = filter_check(&p, &cookie, &mine, "(&(objectClass=user)(department=Sales)").await;
        assert_eq!(bad["ok"], false, "{bad}");
        assert_eq!(bad["position"], 39, "{bad}");
        assert!(
            bad["message"]
                .as_str()
                .unwrap()
                .starts_with("Position 39: "),
            "{bad}"
        );
        let bad = filter_check(&p, &cookie, &mine, "  (cn=a)(sn=b)").await;
        assert_eq!(bad["position"], 9, "leading blanks count: {bad}");

        // D7: the password is write-only; a changed host needs it again,
        // with the app layer's message, and nothing is saved without it.
        let ldap = format!("{base}/customers/{mine}/directory/ldap");
        let secret = "s3cret-Value-never-shown";
        let form = |host: &'static str, password: &'static str| {
            vec![
                ("_csrf", csrf.clone()),
                ("enabled", "on".to_string()),
                ("host", host.to_string()),
                ("security", "none".to_string()),
                ("port", "3890".to_string()),
                ("bind_user", "cn=sync,dc=mine,dc=example".to_string()),
                ("password", password.to_string()),
                ("base_dn", "dc=mine,dc=example".to_string()),
                ("poll_interval", "12h".to_string()),
                ("delete_after", "14d".to_string()),
                ("preset", "openldap".to_string()),
                ("do", "save".to_string()),
            ]
        };
        let post = |f: Vec<(&'static str, String)>| {
            no_redirects()
                .post(&ldap)
                .header(COOKIE, &cookie)
                .header(ORIGIN, &base)
                .form(&f)
                .send()
        };
        let saved = post(form("127.0.0.1", secret)).await.unwrap();
        assert_eq!(saved.status(), StatusCode::SEE_OTHER);
        let page_html = no_redirects()
            .get(format!("{base}/customers/{mine}/directory?tab=ldap"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page_html.contains("A password is stored"), "{page_html}");
        assert!(!page_html.contains(secret), "the password is never shown");
        let moved = post(form("localhost", "")).await.unwrap();
        assert_eq!(moved.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = moved.text().await.unwrap();
        assert!(
            body.contains("Host differs from the saved settings")
                && body.contains("give password again"),
            "{body}"
        );
        let (_, v) = p
            .admin()
            .get(&format!("/v1/customers/{mine}/directory"))
            .await;
        assert_eq!(v["ldap"]["host"], "127.0.0.1", "nothing saved: {v}");
        assert_eq!(v["ldap"]["poll_interval"], "12h", "{v}");
        assert_eq!(v["ldap"]["delete_after"], "14d", "{v}");
        assert_eq!(v["enabled"], "ldap", "{v}");

        // T1: every new route of another customer is not found.
        let run = uuid::Uuid::now_v7();
        let gets = [
            format!("/customers/{theirs}/directory"),
            format!("/customers/{theirs}/directory?tab=entra"),
            format!("/customers/{theirs}/directory/exceptions"),
            format!("/customers/{theirs}/directory/additions"),
            format!("/customers/{theirs}/directory/filter-check?filter=(cn=a)"),
            format!("/customers/{theirs}/directory/syncs/{run}/progress"),
        ];
        for path in &gets {
            let res = no_redirects()
                .get(format!("{base}{path}"))
                .header(COOKIE, &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "GET {path}");
            let body = res.text().await.unwrap();
            assert!(!body.contains("Theirs"), "GET {path} shows the customer");
        }
        let posts: [(&str, &[(&str, &str)]); 7] = [
            ("ldap", &[("host", "ldap.theirs.example"), ("do", "save")]),
            ("entra", &[("tenant", "theirs.example"), ("do", "test")]),
            ("sync", &[("tab", "ldap")]),
            ("exceptions/save", &[("staged", "+u:x")]),
            ("exceptions/save", &[("staged", "-u:x")]),
            ("additions/add", &[("address", "a@theirs.example")]),
            ("additions/remove", &[("address", "a@theirs.example")]),
        ];
        for (route, fields) in posts {
            let mut form: Vec<(&str, &str)> = fields.to_vec();
            form.push(("_csrf", &csrf));
            let res = no_redirects()
                .post(format!("{base}/customers/{theirs}/directory/{route}"))
                .header(COOKIE, &cookie)
                .header(ORIGIN, &base)
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "POST {route}");
        }
        let (s, v) = p
            .admin()
            .get(&format!("/v1/customers/{theirs}/directory/additions"))
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["additions"], serde_json::json!([]), "nothing was added");

        // CSRF: without the session's token a change is refused and not made.
        let url = format!("{base}/customers/{mine}/directory/sync");
        let refused = no_redirects()
            .post(&url)
            .header(COOKIE, &cookie)
            .header(ORIGIN, &base)
            .form(&[("tab", "ldap")])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let url = format!("{base}/customers/{mine}/directory/exceptions/save");
        let refused = no_redirects()
            .post(&url)
            .header(COOKIE, &cookie)
            .header(ORIGIN, &base)
            .form(&[("staged", "+u:abc"), ("_csrf", "wrong")])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let (_, v) = p
            .admin()
            .get(&format!("/v1/customers/{mine}/directory/exceptions"))
            .await;
        assert_eq!(v["exceptions"], serde_json::json!([]), "{v}");
        let done = no_redirects()
            .post(&url)
            .header(COOKIE, &cookie)
            .header(ORIGIN, &base)
            .form(&[("staged", "+u:abc"), ("_csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(
            done.status(),
            StatusCode::SEE_OTHER,
            "with the token it is made"
        );
        let (_, v) = p
            .admin()
            .get(&format!("/v1/customers/{mine}/directory/exceptions"))
            .await;
        assert_eq!(v["exceptions"][0]["object_id"], "abc", "{v}");
        p.stop().await;
    })
    .await;
}
