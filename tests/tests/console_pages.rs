//! The admin console's pages (issue 14) in a real browser: Debian's
//! Chromium through chromedriver, against the real `roster serve`, on
//! SQLite and on PostgreSQL. The guide's tasks: pick a customer, create one
//! with its domains, add a user with aliases, edit and delete it, remove a
//! domain after seeing its consequences (D3.n), import a CSV by drag and
//! drop with an error row shown at its line, commit it and see the users;
//! names and notes shown as text, never run (XSS); a customer
//! administrator who types another customer's address gets not-found (T1).
//! Every page is screenshotted (ROSTER_SCREENSHOTS_DIR=docs/console for the
//! docs) and checked with axe-core (no serious or critical violation).

use fantoccini::Client;
use roster_tests::browser::Browser;
use roster_tests::console::{add_admin, click, fill, page, sign_in, text, wait_for};
use roster_tests::process::{on_both, RosterProcess};
const XSS_NAME: &str = "<img src=x onerror=alert(1)>";
const XSS_NOTES: &str = "<script>window.__xss = 1; alert(2)</script>";

/// No alert opened and no injected script ran (XSS).
async fn no_script_ran(c: &Client) {
    assert!(
        c.get_alert_text().await.is_err(),
        "an alert dialog is open: a string ran as script"
    );
    let ran = c
        .execute("return typeof window.__xss;", vec![])
        .await
        .unwrap();
    assert_eq!(ran, serde_json::json!("undefined"), "injected script ran");
}

fn customer_of(url: &str) -> String {
    url.split("/customers/")
        .nth(1)
        .and_then(|r| r.split(['/', '?']).next())
        .expect("a customer's page")
        .to_string()
}

async fn create_customer_with_domains(b: &Browser, base: &str) -> String {
    let c = &b.client;
    b.goto(&format!("{base}/customers")).await.unwrap();
    wait_for(c, "Create a customer").await;
    fill(c, "#name", "Acme Dental").await;
    fill(c, "#seat_limit", "25").await;
    fill(c, "#domains", "acme.example\nold-acme.example").await;
    page(b, "customers").await;
    click(
        c,
        "form[action='/customers'][method=post] button[type=submit]",
    )
    .await;
    wait_for(c, "Licence").await;
    let id = customer_of(c.current_url().await.unwrap().as_str());
    page(b, "dashboard").await;
    b.goto(&format!("{base}/customers/{id}/domains"))
        .await
        .unwrap();
    let t = wait_for(c, "managed domain").await;
    assert!(
        t.contains("acme.example") && t.contains("old-acme.example"),
        "{t}"
    );
    fill(c, "#domain", "extra.example").await;
    click(c, "form.inline button[type=submit]").await;
    wait_for(c, "extra.example is now managed").await;
    page(b, "domains").await;
    id
}

/// M1: a user with aliases, the XSS strings shown as text; edit; U3.
async fn add_and_edit_user(b: &Browser, base: &str, id: &str) {
    let c = &b.client;
    b.goto(&format!("{base}/customers/{id}/users/new"))
        .await
        .unwrap();
    fill(c, "#address", "ann@acme.example").await;
    fill(c, "#first_name", XSS_NAME).await;
    fill(c, "#last_name", "Lee").await;
    fill(c, "#notes", XSS_NOTES).await;
    fill(c, "#aliases", "a.lee@acme.example\nann@old-acme.example").await;
    page(b, "user-add").await;
    click(c, "form.stack button[type=submit]").await;
    wait_for(c, "History").await;
    no_script_ran(c).await;
    let facts = text(c, "dl.facts").await;
    assert!(facts.contains(&format!("{XSS_NAME} Lee")), "{facts}");
    assert!(facts.contains(XSS_NOTES), "{facts}");
    let main = text(c, "main").await;
    assert!(main.contains("a.lee@acme.example") && main.contains("ann@old-acme.example"));
    page(b, "user").await;

    click(c, "a.button[href$='/edit']").await;
    wait_for(c, "Department").await;
    fill(c, "#department", "Sales").await;
    click(c, "form.stack button[type=submit]").await;
    let t = wait_for(c, "Details changed").await;
    assert!(t.contains("Sales"), "{t}");
    no_script_ran(c).await;

    // U3: aliases under their primary in the list; the name as text.
    b.goto(&format!("{base}/customers/{id}/users?q=ann"))
        .await
        .unwrap();
    let row = text(c, "table.users tbody tr").await;
    assert!(
        row.contains("ann@acme.example") && row.contains("a.lee@acme.example"),
        "{row}"
    );
    assert!(row.contains(XSS_NAME), "{row}");
    no_script_ran(c).await;
}

/// D3.n: the consequences first, then the removal.
async fn remove_domain(b: &Browser, base: &str, id: &str) {
    let c = &b.client;
    b.goto(&format!(
        "{base}/customers/{id}/domains/old-acme.example/remove"
    ))
    .await
    .unwrap();
    let t = wait_for(c, "Remove the domain").await;
    assert!(t.contains("0 users whose primary address"), "{t}");
    assert!(t.contains("1 alias in old-acme.example"), "{t}");
    page(b, "domain-remove").await;
    click(c, "form.inline button.danger").await;
    let t = wait_for(c, "old-acme.example removed").await;
    assert!(t.contains("1 alias(es) removed"), "{t}");
}

/// M2: drop a file, an error row at its line, save, see the users.
async fn import_by_drag_and_drop(b: &Browser, base: &str, id: &str) {
    let c = &b.client;
    b.goto(&format!("{base}/customers/{id}/import"))
        .await
        .unwrap();
    wait_for(c, "Download the sample file").await;
    let csv = "email,first_name,last_name,department\r\n\
               bo@acme.example,Bo,Berg,Support\r\n\
               not-an-address,X,Y,Z\r\n\
               ,,,\r\n\
               cy@acme.example,Cy,Chu,Sales\r\n";
    b.drop_file("#dropzone", "team.csv", csv.as_bytes())
        .await
        .unwrap();
    let shown = wait_for(c, "Selected: team.csv").await;
    assert!(shown.contains("team.csv"));
    page(b, "import").await;
    click(c, "#import-form button[type=submit]").await;
    let t = wait_for(c, "Review of team.csv").await;
    let totals = text(c, "dl.totals").await;
    assert!(
        totals.contains("Adds\n2") || totals.contains("Adds 2"),
        "{totals}"
    );
    assert!(
        totals.contains("Blank rows ignored\n1") || totals.contains("Blank rows ignored 1"),
        "{totals}"
    );
    assert!(t.contains("Line 3, column “email”"), "{t}");
    page(b, "import-review").await;
    click(c, "#commit-form button[type=submit]").await;
    wait_for(c, "Import saved: 2 added").await;
    page(b, "import-saved").await;
    b.goto(&format!("{base}/customers/{id}/users"))
        .await
        .unwrap();
    let t = wait_for(c, "bo@acme.example").await;
    assert!(t.contains("cy@acme.example") && t.contains("CSV"), "{t}");
    page(b, "users").await;
}

async fn delete_user(b: &Browser, base: &str, id: &str) {
    let c = &b.client;
    b.goto(&format!("{base}/customers/{id}/users/bo%40acme.example"))
        .await
        .unwrap();
    wait_for(c, "Delete user").await;
    click(c, "input[name=confirm]").await;
    click(c, "form[action$='/delete'] button.danger").await;
    let t = wait_for(c, "Users of Acme Dental").await;
    assert!(!t.contains("bo@acme.example"), "{t}");
}

/// T1: a customer administrator typing another customer's address gets
/// the not-found page, with nothing of that customer.
async fn customer_admin_gets_not_found(p: &RosterProcess, id: &str, other: &str) {
    add_admin(p, "cadmin@acme.example", &["--customer", id]);
    let b = Browser::start_sized(1024, 768).await.unwrap();
    sign_in(&b, &p.base, "cadmin@acme.example").await;
    wait_for(&b.client, "Licence").await;
    b.goto(&format!("{}/customers/{other}/users", p.base))
        .await
        .unwrap();
    let t = wait_for(&b.client, "Page not found").await;
    assert!(!t.contains("Other Co"), "{t}");
    b.goto(&format!("{}/customers", p.base)).await.unwrap();
    wait_for(&b.client, "Acme Dental").await;
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i14_the_guides_tasks_in_a_browser_on_both_backends() {
    on_both(|p| async move {
        // The partner exists once it has a customer (the API's bootstrap).
        let other = p.admin().customer("Other Co", 5, &["other.example"]).await;
        add_admin(&p, "partner@roster.example", &[]);
        let b = Browser::start_sized(1024, 900).await.unwrap();
        sign_in(&b, &p.base, "partner@roster.example").await;
        wait_for(&b.client, "Customers").await;
        let id = create_customer_with_domains(&b, &p.base).await;
        add_and_edit_user(&b, &p.base, &id).await;
        remove_domain(&b, &p.base, &id).await;
        import_by_drag_and_drop(&b, &p.base, &id).await;
        delete_user(&b, &p.base, &id).await;
        b.close().await.unwrap();
        customer_admin_gets_not_found(&p, &id, &other).await;
        p.stop().await;
    })
    .await;
}
