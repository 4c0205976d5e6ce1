//! The admin console's part 2 pages about what happened (issue 15): User
//! Conflicts, the sync history with a run's page, held runs and the dry
//! run, the audit, and time travel; in a real browser (Chromium through
//! chromedriver) against the real `roster serve` and a real OpenLDAP
//! (slapd with an Active Directory-like schema), on SQLite and on
//! PostgreSQL. The directory is set up through the REST API (the directory
//! pages are another task); the console is where the administrator looks
//! and decides. Every page is screenshotted (ROSTER_SCREENSHOTS_DIR) and
//! checked with axe-core.
//!
//! The servers run without the worker (`ROSTER_NO_WORKER`, [`RosterEnv`]),
//! so that no scheduled run changes what a step counts; [`RosterEnv`] on
//! each back-end plays the part of `on_both`.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use fantoccini::Locator;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::StatusCode;
use roster_testkit::{
    deterministic_guid, organizational_unit, DirectoryData, Slapd, SlapdConfig, Style,
    User as DirUser,
};
use roster_tests::browser::Browser;
use roster_tests::console::{
    add_admin, click, csrf_of, fill, href_of, http_sign_in, no_redirects, page, sign_in, text,
    wait_for,
};
use roster_tests::e2e::{ldap_settings, with, Db, RosterEnv};
use roster_tests::process::enc;
use serde_json::{json, Value};

const BASE: &str = "dc=example,dc=com";
const DOMAIN: &str = "example.org";
const MANUAL: &str = "kept@example.org";

/// The directory, the customer and what the test needs of them.
struct World {
    env: RosterEnv,
    slapd: Slapd,
    data: DirectoryData,
    c: String,
    settings: Value,
    /// Before the first sync: only the manual user existed.
    before_sync: DateTime<Utc>,
    /// After the first sync, before anything was flagged.
    after_first: DateTime<Utc>,
}

fn mail(data: &DirectoryData, i: usize) -> String {
    data.user(i).mail.unwrap()
}

/// An alias (`smtp:`) of directory user `i`, as Roster stores it.
fn alias(data: &DirectoryData, i: usize) -> String {
    data.user(i)
        .proxy_addresses
        .iter()
        .find_map(|p| p.strip_prefix("smtp:"))
        .expect("an alias")
        .to_lowercase()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn sync(env: &RosterEnv, c: &str) -> Value {
    let run = env.start_sync_answer(c).await["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    env.run_detail(c, &run).await["run"].clone()
}

/// A customer with a manual user, then LDAP (12 users, user 9 disabled,
/// and one in an unmanaged domain) and a first sync, all through the API.
async fn world(db: Db) -> World {
    let env = RosterEnv::launch(db, None, &[]).await;
    let data = DirectoryData::new(Style::AdLike, BASE, DOMAIN).users(12);
    let slapd = Slapd::start(SlapdConfig::ad_like().data(data.clone()))
        .await
        .expect("slapd");
    let admin = slapd.admin().await.unwrap();
    let mut una = DirUser::new(&data.people_dn(), "x00001", "Una", "Unmanaged", DOMAIN);
    una.mail = Some("una@unmanaged.example".into());
    una.proxy_addresses = vec!["SMTP:una@unmanaged.example".into()];
    una.object_guid = Some(deterministic_guid(77, 9, 1));
    admin.add(&una.entry(Style::AdLike)).await.unwrap();
    admin
        .add(&organizational_unit("ou=Empty,dc=example,dc=com"))
        .await
        .unwrap();
    let c = env.customer("Acme", &[DOMAIN]).await;
    let (s, v) = env
        .api
        .post(
            &format!("/v1/customers/{c}/users"),
            json!({"address": MANUAL, "first_name": "Kim", "last_name": "Kept"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before_sync = Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // At most 5 flags at once (D3.s): two removals pass, a base DN that
    // hides everyone is held.
    let settings = with(
        ldap_settings(&slapd, BASE),
        json!({"delete_after": "30d",
               "guard": {"max_flags": 5, "max_percent": 100, "min_flags_for_percent": 0}}),
    );
    env.put_directory(&c, settings.clone()).await;
    let first = sync(&env, &c).await;
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["counts"]["added"], 11, "{first}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after_first = Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    World {
        env,
        slapd,
        data,
        c,
        settings,
        before_sync,
        after_first,
    }
}

/// The text of a CSV download of the signed-in browser.
async fn download(b: &Browser, url: &str) -> String {
    let v = b
        .client
        .execute_async(
            "var done = arguments[arguments.length - 1];\
             fetch(arguments[0], {credentials: 'same-origin'})\
               .then(function (r) { return r.text(); }).then(done);",
            vec![json!(url)],
        )
        .await
        .unwrap();
    v.as_str().expect("the CSV text").to_string()
}

/// D3.h, D3.i, D3.m: two users removed from the directory are flagged;
/// the page shows why, since when and when; Ignore one; Export the rest.
async fn d3m_conflicts_ignore_and_export(b: &Browser, w: &World) {
    let c = &b.client;
    let admin = w.slapd.admin().await.unwrap();
    for i in [3, 4] {
        admin.delete(&w.data.user(i).dn).await.unwrap();
    }
    let run = sync(&w.env, &w.c).await;
    assert_eq!(run["counts"]["flagged"], 2, "{run}");
    let (gone, other) = (mail(&w.data, 3), mail(&w.data, 4));
    b.goto(&format!("{}/customers/{}/conflicts", w.env.p.base, w.c))
        .await
        .unwrap();
    let t = wait_for(c, "2 flagged users").await;
    assert!(t.contains(&gone) && t.contains(&other), "{t}");
    assert!(t.contains("no longer in the directory"), "{t}");
    let row = text(c, "table.conflicts tbody tr").await;
    assert!(row.contains("UTC"), "flagged and deletion dates: {row}");
    page(b, "conflicts").await;

    // Nothing ticked: the page says what to do.
    click(c, "button[name=action][value=ignore]").await;
    wait_for(c, "Tick at least one user").await;
    click(c, &format!("input[name=address][value='{gone}']")).await;
    click(c, "button[name=action][value=ignore]").await;
    let t = wait_for(c, "1 user ignored").await;
    assert!(t.contains("1 flagged user") && !t.contains(&gone), "{t}");
    assert_eq!(w.env.status_of(&w.c, &gone).await, "active");

    // Export: the API's formula-safe CSV of the remaining conflict.
    let csv = download(b, &format!("/customers/{}/conflicts.csv", w.c)).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0].trim_start_matches('\u{feff}'),
        "email,first_name,last_name,source,reason,flagged_at,delete_at,aliases"
    );
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].starts_with(&format!("{other},")), "{csv}");
    assert!(lines[1].contains(",LDAP,missing,"), "{csv}");
    let api = w
        .env
        .api
        .get(&format!("/v1/customers/{}/conflicts", w.c))
        .await
        .1;
    assert_eq!(api["users"].as_array().unwrap().len(), 1, "{api}");
}

/// B4, D3.t, D3.b: the history with its runs, the unmanaged domain's
/// advice; a dry run lists the plan and changes nothing.
async fn b4_history_and_d3t_dry_run(b: &Browser, w: &World) {
    let c = &b.client;
    let admin = w.slapd.admin().await.unwrap();
    admin.delete(&w.data.user(5).dn).await.unwrap();
    b.goto(&format!("{}/customers/{}/runs", w.env.p.base, w.c))
        .await
        .unwrap();
    let t = wait_for(c, "2 runs").await;
    assert!(t.contains("Completed") && t.contains("Sync Now"), "{t}");
    assert!(t.contains("11 added") && t.contains("2 flagged"), "{t}");
    assert!(
        t.contains("Managed domain"),
        "the unmanaged user's advice: {t}"
    );
    let domains = href_of(c, Locator::Css(".troubleshoot a")).await;
    assert_eq!(domains, format!("/customers/{}/domains", w.c));
    page(b, "runs").await;

    click(c, "form[action$='/runs/dry-run'] button").await;
    let t = wait_for(c, "Nothing was changed").await;
    assert!(t.contains(&mail(&w.data, 5)), "{t}");
    assert!(t.contains("Flag for deletion"), "{t}");
    assert!(t.contains("would flag 1 of"), "{t}");
    page(b, "dry-run").await;
    assert_eq!(
        w.env.status_of(&w.c, &mail(&w.data, 5)).await,
        "active",
        "D3.t: the dry run changed nothing"
    );
    let runs = w
        .env
        .api
        .get(&format!("/v1/customers/{}/directory/syncs", w.c))
        .await
        .1;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2, "no run: {runs}");
}

/// D3.s: a base DN that hides everyone is held; the run page shows what it
/// would flag and Confirm applies it.
async fn d3s_held_run_confirmed_from_its_page(b: &Browser, w: &World) {
    let c = &b.client;
    let typo = with(
        w.settings.clone(),
        json!({"base_dn": "ou=Empty,dc=example,dc=com", "password": null}),
    );
    w.env.put_directory(&w.c, typo).await;
    let held = sync(&w.env, &w.c).await;
    assert_eq!(held["status"], "held", "{held}");
    let held_id = held["run_id"].as_str().unwrap().to_string();
    b.goto(&format!("{}/customers/{}/runs", w.env.p.base, w.c))
        .await
        .unwrap();
    wait_for(c, "Held: waiting for a decision").await;
    // The dashboard's "Needs attention" leads to the run's page.
    b.goto(&format!("{}/customers/{}", w.env.p.base, w.c))
        .await
        .unwrap();
    wait_for(c, "Needs attention").await;
    click(c, &format!("a[href$='/runs/{held_id}']")).await;
    let t = wait_for(c, "held by the mass-deletion guard").await;
    assert!(t.contains(&held_id), "{t}");
    let would = held["would_flag"].as_u64().unwrap();
    let of = held["directory_users"].as_u64().unwrap();
    assert!(would > 5, "{held}");
    assert!(
        t.contains(&format!("would flag {would} of {of} directory users")),
        "{t}"
    );
    assert!(t.contains("None: a held run changes nothing"), "{t}");
    // What it would flag, user by user.
    assert!(
        t.contains(&format!("{would} users would be flagged for deletion")),
        "{t}"
    );
    assert!(t.contains(&mail(&w.data, 0)), "{t}");
    page(b, "run-held").await;
    click(c, "form[action$='/confirm'] button").await;
    c.accept_alert().await.unwrap();
    let t = wait_for(c, "Held run confirmed and applied").await;
    assert!(t.contains(&format!("{would} flagged")), "{t}");
    assert!(
        t.contains("Flagged for deletion"),
        "the per-user changes: {t}"
    );
    page(b, "run").await;
    let old = w
        .env
        .api
        .get(&format!("/v1/customers/{}/directory/syncs/{held_id}", w.c))
        .await
        .1;
    assert_eq!(old["run"]["status"], "confirmed", "{old}");
    // The base DN fixed: everyone comes back.
    w.env
        .put_directory(&w.c, with(w.settings.clone(), json!({"password": null})))
        .await;
    assert_eq!(sync(&w.env, &w.c).await["status"], "completed");
}

/// E4: the audit filtered by an alias finds its user's events; a bad
/// filter says what to fix.
async fn e4_audit_by_alias(b: &Browser, w: &World) {
    let c = &b.client;
    let a = alias(&w.data, 1);
    b.goto(&format!("{}/customers/{}/audit", w.env.p.base, w.c))
        .await
        .unwrap();
    wait_for(c, "Audit of Acme").await;
    fill(c, "#address", &a).await;
    click(c, "form.filters button[type=submit]").await;
    let t = wait_for(c, &mail(&w.data, 1)).await;
    assert!(t.contains("Added"), "{t}");
    assert!(!t.contains(&mail(&w.data, 2)), "only its user: {t}");
    assert!(!t.contains(MANUAL), "{t}");
    let run_link = href_of(c, Locator::LinkText("Sync run")).await;
    assert!(run_link.starts_with(&format!("/customers/{}/runs/", w.c)));
    page(b, "audit").await;
    // A directory event links to its run too (E2).
    b.goto(&format!(
        "{}/customers/{}/audit?event_type=SyncHeld",
        w.env.p.base, w.c
    ))
    .await
    .unwrap();
    let t = wait_for(c, "Sync held by the mass-deletion guard").await;
    assert!(t.contains("1 event"), "{t}");
    let held = href_of(c, Locator::LinkText("Sync run")).await;
    let runs = w
        .env
        .api
        .get(&format!("/v1/customers/{}/directory/syncs", w.c))
        .await
        .1;
    let held_run = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "confirmed")
        .expect("the confirmed held run")["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(held, format!("/customers/{}/runs/{held_run}", w.c));
    b.goto(&format!(
        "{}/customers/{}/audit?actor=bob",
        w.env.p.base, w.c
    ))
    .await
    .unwrap();
    wait_for(c, "Actor “bob” is not one Roster records").await;
}

/// B7: the list as of before the sync holds the manual user only; a user's
/// page as of after the first sync shows it active, before its flag.
async fn b7_time_travel(b: &Browser, w: &World) {
    let c = &b.client;
    let base = format!("{}/customers/{}/users", w.env.p.base, w.c);
    // The field of the live list: a date long ago, nobody.
    b.goto(&base).await.unwrap();
    wait_for(c, "Show as of").await;
    c.execute(
        "document.getElementById('at').value = '2020-01-01T00:00';",
        vec![],
    )
    .await
    .unwrap();
    click(c, "form.asof button[type=submit]").await;
    let t = wait_for(c, "No user then").await;
    assert!(t.contains("Past view"), "{t}");

    b.goto(&format!("{base}?at={}", enc(&rfc3339(w.before_sync))))
        .await
        .unwrap();
    let t = wait_for(c, "Past view").await;
    assert!(t.contains("1 user on"), "{t}");
    assert!(t.contains(MANUAL) && !t.contains(&mail(&w.data, 1)), "{t}");
    assert!(
        !t.contains("Add user") && !t.contains("Import users"),
        "{t}"
    );
    page(b, "users-as-of").await;
    // Its Export: the list as it was then (the API's CSV, B7).
    let href = href_of(c, Locator::Css("a.button[href*='users.csv']")).await;
    let csv = download(b, &href).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].starts_with(&format!("{MANUAL},Kim,Kept")), "{csv}");

    let flagged = mail(&w.data, 4);
    b.goto(&format!(
        "{base}/{}?at={}",
        enc(&flagged),
        enc(&rfc3339(w.after_first))
    ))
    .await
    .unwrap();
    let t = wait_for(c, "History up to").await;
    assert!(t.contains("Past view") && t.contains("Active"), "{t}");
    assert!(
        t.contains("Added") && !t.contains("Flagged for deletion"),
        "{t}"
    );
    assert!(!t.contains("Delete user") && !t.contains("Edit"), "{t}");
    page(b, "user-as-of").await;
    // Today it is pending deletion.
    assert_eq!(w.env.status_of(&w.c, &flagged).await, "pending_deletion");
}

async fn console_history(db: Db) {
    let w = world(db).await;
    add_admin(&w.env.p, "partner@roster.example", &[]);
    let b = Browser::start_sized(1024, 900).await.unwrap();
    sign_in(&b, &w.env.p.base, "partner@roster.example").await;
    wait_for(&b.client, "Customers").await;
    d3m_conflicts_ignore_and_export(&b, &w).await;
    b4_history_and_d3t_dry_run(&b, &w).await;
    d3s_held_run_confirmed_from_its_page(&b, &w).await;
    e4_audit_by_alias(&b, &w).await;
    b7_time_travel(&b, &w).await;
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i15_conflicts_history_audit_and_time_travel_in_a_browser_sqlite() {
    console_history(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i15_conflicts_history_audit_and_time_travel_in_a_browser_postgres() {
    console_history(Db::Postgres).await;
}

// ---------------------------------------------------------------------------
// Over HTTP: tenant scope (T1) and CSRF on every new route.

/// Signs in over HTTP: the session cookie.
async fn session(env: &RosterEnv, email: &str) -> String {
    http_sign_in(&env.p.base, email).await
}

async fn get(env: &RosterEnv, cookie: &str, path: &str) -> (StatusCode, String) {
    let res = no_redirects()
        .get(format!("{}{path}", env.p.base))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn post(
    env: &RosterEnv,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    no_redirects()
        .post(format!("{}{path}", env.p.base))
        .header(COOKIE, cookie)
        .header(ORIGIN, &env.p.base)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// A server, an AD-like slapd of `users` users (user 9 disabled when
/// there are ten or more) and the customer "Acme" of its domain, without
/// directory settings yet.
async fn acme_and_slapd(db: Db, users: usize) -> (RosterEnv, DirectoryData, Slapd, String) {
    let env = RosterEnv::launch(db, None, &[]).await;
    let data = DirectoryData::new(Style::AdLike, BASE, DOMAIN).users(users);
    let slapd = Slapd::start(SlapdConfig::ad_like().data(data.clone()))
        .await
        .expect("slapd");
    let c = env.customer("Acme", &[DOMAIN]).await;
    (env, data, slapd, c)
}

/// T1: another customer's administrator gets not-found on every page of
/// part 2 (GET and POST, with a valid CSRF token); T4: the POSTs are
/// refused without the token; the owner's POSTs work.
async fn t1_scope_and_csrf(db: Db) {
    let (env, data, slapd, c) = acme_and_slapd(db, 3).await;
    let other = env.customer("Other", &["other.example"]).await;
    env.put_directory(&c, ldap_settings(&slapd, BASE)).await;
    let run = sync(&env, &c).await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let user = enc(&mail(&data, 0));
    add_admin(&env.p, "owner@acme.example", &["--customer", &c]);
    add_admin(&env.p, "stranger@other.example", &["--customer", &other]);
    let owner = session(&env, "owner@acme.example").await;
    let stranger = session(&env, "stranger@other.example").await;
    let (_, html) = get(&env, &stranger, &format!("/customers/{other}/conflicts")).await;
    let stranger_csrf = csrf_of(&html);
    let gets = [
        format!("/customers/{c}/runs/dry-run"),
        format!("/customers/{c}/conflicts"),
        format!("/customers/{c}/conflicts.csv"),
        format!("/customers/{c}/runs"),
        format!("/customers/{c}/runs/{run_id}"),
        format!("/customers/{c}/audit"),
        format!("/customers/{c}/users?at=2030-01-01T00:00"),
        format!("/customers/{c}/users/{user}?at=2030-01-01T00:00"),
    ];
    for path in &gets {
        let (s, body) = get(&env, &stranger, path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert!(!body.contains("Acme") && !body.contains(DOMAIN), "{path}");
        let (s, body) = get(&env, &owner, path).await;
        if path.ends_with("/dry-run") {
            // A reload of the plan goes back to the history.
            assert_eq!(s, StatusCode::SEE_OTHER, "{path}");
        } else {
            assert_eq!(s, StatusCode::OK, "{path}: {body}");
        }
    }
    let posts: [(String, Vec<(&str, &str)>); 4] = [
        (
            format!("/customers/{c}/conflicts/actions"),
            vec![("action", "ignore"), ("address", "x@example.org")],
        ),
        (format!("/customers/{c}/runs/dry-run"), vec![]),
        (format!("/customers/{c}/runs/{run_id}/confirm"), vec![]),
        (format!("/customers/{c}/runs/{run_id}/discard"), vec![]),
    ];
    let (_, html) = get(&env, &owner, &format!("/customers/{c}/runs")).await;
    let owner_csrf = csrf_of(&html);
    for (path, form) in &posts {
        let r = post(
            &env,
            &stranger,
            path,
            &[form.as_slice(), &[("_csrf", stranger_csrf.as_str())]].concat(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "T1: {path}");
        let r = post(&env, &owner, path, form).await;
        assert_eq!(
            r.status(),
            StatusCode::FORBIDDEN,
            "T4, no CSRF token: {path}"
        );
    }
    // With the token the owner's actions answer: the conflict action and
    // the decisions on a run that is not held say why on the next page.
    let r = post(
        &env,
        &owner,
        &posts[0].0,
        &[posts[0].1.as_slice(), &[("_csrf", owner_csrf.as_str())]].concat(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], format!("/customers/{c}/conflicts"));
    let flash = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("roster_flash="))
        .unwrap_or_default()
        .to_string();
    assert!(
        flash.contains("not+changed") || flash.contains("not%20changed"),
        "{flash}"
    );
    let r = post(&env, &owner, &posts[3].0, &[("_csrf", owner_csrf.as_str())]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "a refusal is a flash");
    assert_eq!(run["status"], "completed");
    assert_eq!(
        env.api
            .get(&format!("/v1/customers/{c}/directory/syncs/{run_id}"))
            .await
            .1["run"]["status"],
        "completed",
        "discarding a completed run changes nothing"
    );
    // A page token that is not ours says so, on every paged list.
    for path in [
        format!("/customers/{c}/runs?page=garbage"),
        format!("/customers/{c}/runs/{run_id}?skipped_page=garbage"),
        format!("/customers/{c}/audit?page=garbage"),
        format!("/customers/{c}/users?at=2030-01-01T00:00&page=garbage"),
    ] {
        let (s, body) = get(&env, &owner, &path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}");
        assert!(body.contains("not valid any more"), "{path}: {body}");
    }
    // A bad time-travel instant says what to type.
    let (s, body) = get(&env, &owner, &format!("/customers/{c}/users?at=soon")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("is not a date and time"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_part2_pages_are_scoped_and_csrf_protected_sqlite() {
    t1_scope_and_csrf(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_part2_pages_are_scoped_and_csrf_protected_postgres() {
    t1_scope_and_csrf(Db::Postgres).await;
}

/// D5 and the guide's troubleshooting: a run that failed on a rejected
/// bind shows *Account credentials* next to it, one that could not reach
/// the directory *Firewall settings*; a dry run that cannot read the
/// directory says why on the history page and changes nothing.
async fn d5_failed_runs_show_the_guides_troubleshooting(db: Db) {
    let (env, _data, slapd, c) = acme_and_slapd(db, 2).await;
    let good = ldap_settings(&slapd, BASE);
    env.put_directory(&c, with(good.clone(), json!({"password": "wrong"})))
        .await;
    let failed = sync(&env, &c).await;
    assert_eq!(
        (&failed["status"], &failed["code"]),
        (&json!("failed"), &json!("bind_rejected")),
        "{failed}"
    );
    add_admin(&env.p, "owner@acme.example", &["--customer", &c]);
    let owner = session(&env, "owner@acme.example").await;
    let (s, html) = get(&env, &owner, &format!("/customers/{c}/runs")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Account credentials"), "{html}");
    assert!(!html.contains("Firewall settings"), "{html}");
    let run = failed["run_id"].as_str().unwrap();
    let (_, page_html) = get(&env, &owner, &format!("/customers/{c}/runs/{run}")).await;
    assert!(page_html.contains("Account credentials"), "{page_html}");

    // The dry run: the same failure, said on the history page.
    let r = post(
        &env,
        &owner,
        &format!("/customers/{c}/runs/dry-run"),
        &[("_csrf", csrf_of(&html).as_str())],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let flash = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("roster_flash="))
        .unwrap_or_default()
        .to_string();
    assert!(flash.contains("bind_rejected"), "{flash}");
    let runs = env
        .api
        .get(&format!("/v1/customers/{c}/directory/syncs"))
        .await
        .1;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "no run: {runs}");

    // Nobody listens on the port: the firewall advice.
    let closed = roster_tests::process::free_port();
    env.put_directory(&c, with(good, json!({"host": "127.0.0.1", "port": closed})))
        .await;
    let refused = sync(&env, &c).await;
    assert_eq!(refused["code"], "refused", "{refused}");
    let (_, html) = get(&env, &owner, &format!("/customers/{c}/runs")).await;
    assert!(html.contains("Firewall settings"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_failed_runs_show_the_guides_troubleshooting_sqlite() {
    d5_failed_runs_show_the_guides_troubleshooting(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_failed_runs_show_the_guides_troubleshooting_postgres() {
    d5_failed_runs_show_the_guides_troubleshooting(Db::Postgres).await;
}

/// B4, issue 17: a run whose report repeats an earlier run's says so on
/// its page, links that run, and lists the same objects.
async fn b4_a_repeated_report_names_the_run_recorded_in_full(db: Db) {
    let (env, data, slapd, c) = acme_and_slapd(db, 10).await;
    env.put_directory(&c, ldap_settings(&slapd, BASE)).await;
    let first = sync(&env, &c).await;
    let first_id = first["run_id"].as_str().unwrap().to_string();
    let second = sync(&env, &c).await;
    let second_id = second["run_id"].as_str().unwrap().to_string();
    add_admin(&env.p, "owner@acme.example", &["--customer", &c]);
    let owner = session(&env, "owner@acme.example").await;
    let disabled = mail(&data, 9);
    let (s, html) = get(&env, &owner, &format!("/customers/{c}/runs/{first_id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains(&disabled),
        "the disabled user is not synced: {html}"
    );
    assert!(!html.contains("this run's report repeats"), "{html}");
    let (s, html) = get(&env, &owner, &format!("/customers/{c}/runs/{second_id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("this run's report repeats"), "{html}");
    assert!(
        html.contains(&format!("href=\"/customers/{c}/runs/{first_id}\"")),
        "{html}"
    );
    assert!(html.contains(&disabled), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b4_a_repeated_report_names_the_run_recorded_in_full_sqlite() {
    b4_a_repeated_report_names_the_run_recorded_in_full(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b4_a_repeated_report_names_the_run_recorded_in_full_postgres() {
    b4_a_repeated_report_names_the_run_recorded_in_full(Db::Postgres).await;
}
