//! Benchmark of the admin console's pages (issue 14: "each page answers in
//! at most 100 ms of server time for a customer with 100,000 users"), on
//! PostgreSQL and on SQLite.
//!
//!   cargo bench -p roster-tests --bench console
//!
//! ROSTER_BENCH_USERS changes the number of users (default 100000);
//! ROSTER_BENCH_BACKENDS picks back-ends (default "postgres,sqlite");
//! ROSTER_BENCH_REQUESTS the requests per page (default 25, at least 20).
//!
//! The customer is seeded through the aggregates and bulk appends (as the
//! foundation bench does; 5,000 users an append), shaped like a real one:
//! four domains (one internationalised), names drawn from common first and
//! last names, a third of the users with 1-3 aliases, sources LDAP (half),
//! CSV (three tenths) and manual, about 1% deactivated and 1% flagged for
//! deletion, 500 distribution lists of 20 members and 50 public folders,
//! one user with a history of edits and rules, and 30 other customers of
//! the same partner. Then the real `roster serve` starts on that database,
//! a partner administrator signs in over HTTP, and every page of the
//! console's part 1 about that customer is requested in turn on one warm
//! connection. *Server* is the request's duration in the server's access
//! log (`roster::access`, from the first middleware to the last byte of
//! the handler's answer); *round trip* is the client's, on localhost.
//! Pages over 100 ms (server, p95) are flagged. The user export is a
//! download, not a page: its time is reported separately.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::{redirect, StatusCode};
use roster_domain::{AddUser, User, UserCommand, UserServices};
use roster_events::*;
use roster_store::{Batch, Loaded};
use roster_tests::process::{enc, roster_binary, TEST_SECRET_KEY};
use roster_tests::{Backend, RosterProcess, TestStore};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DOMAINS: [&str; 4] = [
    "acme.example",
    "acme-eu.example",
    "acme-labs.example",
    "bücher.example",
];
const FIRST: [&str; 40] = [
    "anna", "ben", "carla", "david", "emma", "felix", "greta", "hugo", "ida", "jonas", "klara",
    "leon", "mia", "noah", "olga", "paul", "quinn", "rosa", "sven", "tina", "uwe", "vera",
    "walter", "xenia", "yusuf", "zoe", "maria", "peter", "sofia", "lukas", "elena", "tom", "julia",
    "max", "laura", "jan", "nina", "erik", "lea", "omar",
];
const LAST: [&str; 60] = [
    "schmidt",
    "mueller",
    "schneider",
    "fischer",
    "weber",
    "meyer",
    "wagner",
    "becker",
    "schulz",
    "hoffmann",
    "koch",
    "richter",
    "klein",
    "wolf",
    "schroeder",
    "neumann",
    "schwarz",
    "braun",
    "zimmermann",
    "krueger",
    "hartmann",
    "lange",
    "werner",
    "krause",
    "lehmann",
    "koehler",
    "maier",
    "huber",
    "kaiser",
    "fuchs",
    "peters",
    "lang",
    "scholz",
    "moeller",
    "weiss",
    "jung",
    "hahn",
    "vogel",
    "friedrich",
    "keller",
    "guenther",
    "frank",
    "berger",
    "winkler",
    "roth",
    "beck",
    "lorenz",
    "baumann",
    "franke",
    "albrecht",
    "garcia",
    "martin",
    "dubois",
    "rossi",
    "smith",
    "jones",
    "brown",
    "taylor",
    "wilson",
    "evans",
];
const PASSWORD: &str = "a long enough bench password";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The i-th user of the customer: address, profile, source, aliases.
fn user_of(i: usize) -> (Address, Profile, Source, Vec<Address>) {
    let (first, last) = (FIRST[i % FIRST.len()], LAST[(i / 7) % LAST.len()]);
    let domain = DOMAINS[if i % 20 == 0 { 3 } else { i % 3 }];
    let local = format!("{first}.{last}{i}");
    let address = Address::parse(&format!("{local}@{domain}")).expect("address");
    let aliases = if i % 3 == 0 {
        (0..1 + (i / 3) % 3)
            .map(|k| Address::parse(&format!("{local}.alt{k}@{domain}")).expect("alias"))
            .collect()
    } else {
        vec![]
    };
    let source = match i % 10 {
        0..=4 => Source::Ldap,
        5..=7 => Source::Csv,
        _ => Source::Manual,
    };
    let profile = Profile {
        first_name: Some(cap(first)),
        last_name: Some(cap(last)),
        mobile: Some(format!("+49 151 {i:07}")),
        company: Some("Acme".into()),
        department: Some(["Sales", "Finance", "Engineering", "Support"][i % 4].into()),
        ..Profile::default()
    };
    (address, profile, source, aliases)
}

struct Seeded {
    partner: PartnerId,
    customer: CustomerId,
    /// The user with a history of edits and rules.
    detailed: String,
}

async fn add(
    batch: &mut Batch,
    c: CustomerId,
    meta: &EventMeta,
    add: AddUser,
    then: Vec<UserCommand>,
) {
    let mut target: Loaded<User> = Loaded::new(add.user_id.to_string());
    let none = UserServices::default();
    batch
        .execute(&mut target, UserCommand::Add(add), &none, meta)
        .await
        .unwrap_or_else(|e| panic!("add to {c}: {e}"));
    for command in then {
        batch
            .execute(&mut target, command, &none, meta)
            .await
            .unwrap_or_else(|e| panic!("command: {e}"));
    }
}

/// What a seeded user goes through after it is added: about 1% are
/// deactivated, 1% of the directory's are flagged (D3.h), and user 42 has
/// a history of edits and rules for its page.
fn follow_ups(i: usize, source: Source, profile: &Profile) -> Vec<UserCommand> {
    let now = Utc::now();
    if i == 42 {
        let mut edits = Vec::new();
        for d in ["Legal", "Board", "Sales"] {
            edits.push(UserCommand::UpdateProfile {
                profile: Profile {
                    department: Some(d.into()),
                    ..profile.clone()
                },
            });
        }
        for (k, v) in [
            (RuleKind::Allow, "partner.example"),
            (RuleKind::Deny, "spam.example"),
        ] {
            edits.push(UserCommand::AddRule {
                rule_id: RuleId::new(),
                kind: k,
                value: v.into(),
            });
        }
        return edits;
    }
    if i % 97 == 5 {
        return vec![UserCommand::Deactivate];
    }
    if source == Source::Ldap && i % 89 == 1 {
        return vec![UserCommand::FlagForDeletion {
            reason: FlagReason::Missing,
            at: now,
            delete_at: Some(now + chrono::Duration::days(14)),
        }];
    }
    vec![]
}

async fn seed(s: &TestStore, partner: PartnerId, users: usize) -> Seeded {
    let customer = CustomerId::new();
    let app = s.app();
    let domains = DOMAINS.iter().map(|d| Domain::parse(d).unwrap()).collect();
    roster_app::customers::create_customer(
        &app,
        s.meta(customer),
        partner,
        "Acme Holding".into(),
        (users as u64) * 2,
        domains,
    )
    .await
    .expect("create customer");
    for k in 0..30 {
        let other = CustomerId::new();
        roster_app::customers::create_customer(
            &app,
            s.meta(other),
            partner,
            format!("Customer {k:02}"),
            100,
            vec![Domain::parse(&format!("c{k}.example")).unwrap()],
        )
        .await
        .expect("create customer");
    }
    let meta = s.meta(customer);
    let started = Instant::now();
    let mut batch = Batch::new();
    let mut staged = 0;
    let mut detailed = String::new();
    for i in 0..users {
        let (address, profile, source, aliases) = user_of(i);
        if i == 42 {
            detailed = address.to_string();
        }
        let then = follow_ups(i, source, &profile);
        let directory_id = (source == Source::Ldap).then(|| ObjectId(format!("obj-{i}")));
        let user = AddUser {
            user_id: UserId::new(),
            customer_id: customer,
            address,
            kind: Kind::User,
            source,
            profile,
            aliases,
            directory_id,
            members: vec![],
        };
        add(&mut batch, customer, &meta, user, then).await;
        staged += 1;
        if staged == 5_000 {
            s.store.commit(std::mem::take(&mut batch)).await.unwrap();
            staged = 0;
        }
    }
    for j in 0..550 {
        let (kind, local) = if j < 500 {
            (Kind::DistributionList, format!("list{j}"))
        } else {
            (Kind::PublicFolder, format!("folder{j}"))
        };
        let members = if kind == Kind::DistributionList {
            (0..20).map(|m| user_of((j * 20 + m) % users).0).collect()
        } else {
            vec![]
        };
        let source = if j % 2 == 0 {
            Source::Ldap
        } else {
            Source::Manual
        };
        let list = AddUser {
            user_id: UserId::new(),
            customer_id: customer,
            address: Address::parse(&format!("{local}@{}", DOMAINS[0])).unwrap(),
            kind,
            source,
            profile: Profile {
                last_name: Some(format!("Team {j}")),
                ..Profile::default()
            },
            aliases: vec![],
            directory_id: (source == Source::Ldap).then(|| ObjectId(format!("grp-{j}"))),
            members,
        };
        add(&mut batch, customer, &meta, list, vec![]).await;
    }
    s.store.commit(batch).await.unwrap();
    let appended = started.elapsed().as_secs_f64();
    s.project().await;
    eprintln!(
        "{:?}: seeded {users} users and 550 lists and folders: appended in {appended:.1} s, projected in {:.1} s more",
        s.backend,
        started.elapsed().as_secs_f64() - appended
    );
    Seeded {
        partner,
        customer,
        detailed,
    }
}

/// Adds a partner administrator with a password (`roster admin add
/// --password-stdin`) on the server's storage.
fn add_admin(p: &RosterProcess, partner: PartnerId) {
    let mut cmd = std::process::Command::new(roster_binary());
    cmd.args([
        "admin",
        "add",
        "--email",
        "bench@msp.example",
        "--name",
        "Bench Admin",
        "--partner",
        &partner.to_string(),
        "--password-stdin",
    ])
    .env("ROSTER_SECRET_KEY", TEST_SECRET_KEY)
    .env("ROSTER_DATA_DIR", &p.data_dir)
    .env("ROSTER_LOG_FORMAT", "text")
    .env_remove("DATABASE_URL")
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    if let Some(url) = &p.database_url {
        cmd.env("DATABASE_URL", url);
    }
    let mut child = cmd.spawn().expect("roster admin add");
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Signs in over HTTP and returns the session cookie.
async fn sign_in(http: &reqwest::Client, base: &str) -> String {
    let res = http
        .post(format!("{base}/signin"))
        .header(ORIGIN, base)
        .form(&[
            ("email", "bench@msp.example"),
            ("password", PASSWORD),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "sign-in");
    assert!(res.headers().contains_key(LOCATION));
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("roster_session=") && !v.starts_with("roster_session=;"))
        .map(|v| v.split(';').next().unwrap().to_string())
        .expect("a session cookie")
}

struct Timing {
    label: String,
    bytes: usize,
    round_trip: Vec<Duration>,
    request_ids: Vec<String>,
}

async fn get(http: &reqwest::Client, base: &str, cookie: &str, path: &str) -> (String, String) {
    let res = http
        .get(format!("{base}{path}"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = res.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    (id, body)
}

/// Requests a page `n` times after two warm-up requests.
async fn time_page(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    label: &str,
    path: &str,
    n: usize,
    expect: &str,
) -> Timing {
    for _ in 0..2 {
        let (_, body) = get(http, base, cookie, path).await;
        assert!(body.contains(expect), "{label} ({path}) shows {expect:?}");
    }
    let mut t = Timing {
        label: label.to_string(),
        bytes: 0,
        round_trip: Vec::new(),
        request_ids: Vec::new(),
    };
    for _ in 0..n {
        let started = Instant::now();
        let (id, body) = get(http, base, cookie, path).await;
        t.round_trip.push(started.elapsed());
        t.request_ids.push(id);
        t.bytes = body.len();
    }
    t
}

/// The `page=` link of a users page (its next page).
fn next_link(html: &str) -> String {
    let at = html.find("page=").expect("a next-page link");
    let start = html[..at].rfind('"').unwrap() + 1;
    let end = at + html[at..].find('"').unwrap();
    html[start..end].replace("&amp;", "&").replace("&#38;", "&")
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Request id -> server duration (ms) from the access log.
fn server_times(log: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in log.lines().filter(|l| l.contains("duration_ms")) {
        let field = |name: &str| -> Option<&str> {
            let i = line.find(&format!("\"{name}\":"))? + name.len() + 3;
            line[i..]
                .split([',', '}'])
                .next()
                .map(|v| v.trim().trim_matches('"'))
        };
        if let (Some(id), Some(ms)) = (field("request_id"), field("duration_ms")) {
            if let Ok(ms) = ms.parse() {
                out.insert(id.to_string(), ms);
            }
        }
    }
    out
}

async fn pages(p: &RosterProcess, seeded: &Seeded, n: usize) -> Vec<Timing> {
    let base = p.base.clone();
    let http = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let cookie = sign_in(&http, &base).await;
    let c = format!("/customers/{}", seeded.customer);
    let users = format!("{c}/users");
    // A page far into the list: follow the cursor 20 pages deep.
    let mut later = users.clone();
    for _ in 0..20 {
        let (_, html) = get(&http, &base, &cookie, &later).await;
        later = next_link(&html);
        if !later.starts_with('/') {
            later = format!("{users}{later}");
        }
    }
    let detailed = format!("{users}/{}", enc(&seeded.detailed));
    let list: Vec<(&str, String, &str)> = vec![
        ("customer list", "/customers".into(), "Acme Holding"),
        ("dashboard", c.clone(), "Acme Holding"),
        ("domains", format!("{c}/domains"), "acme-labs.example"),
        ("users: first page", users.clone(), "anna."),
        ("users: page 21 (cursor)", later, "@"),
        (
            "users: search name fragment 'schmi'",
            format!("{users}?q=schmi"),
            "schmidt",
        ),
        (
            "users: search address fragment '4217@'",
            format!("{users}?q=4217%40"),
            "4217@",
        ),
        (
            "users: search without a match 'zzqx'",
            format!("{users}?q=zzqx"),
            "Acme",
        ),
        (
            "users: filter source=csv",
            format!("{users}?source=csv"),
            "CSV",
        ),
        (
            "users: filter source=manual",
            format!("{users}?source=manual"),
            "Manual",
        ),
        (
            "users: filter status=deactivated",
            format!("{users}?status=deactivated"),
            "eactivated",
        ),
        (
            "users: filter status=pending_deletion",
            format!("{users}?status=pending_deletion"),
            "ending",
        ),
        (
            "users: filter kind=distribution_list",
            format!("{users}?kind=distribution_list"),
            "list1",
        ),
        (
            "users: filter kind=public_folder",
            format!("{users}?kind=public_folder"),
            "folder5",
        ),
        (
            "users: search + filter (q=mueller, source=ldap)",
            format!("{users}?q=mueller&source=ldap"),
            "mueller",
        ),
        ("user page with history", detailed, "spam.example"),
        ("import", format!("{c}/import"), "sample"),
        ("tokens", "/tokens".into(), "token"),
        (
            "administrators",
            "/administrators".into(),
            "bench@msp.example",
        ),
        ("profile", "/profile".into(), "Bench Admin"),
    ];
    let mut out = Vec::new();
    for (label, path, expect) in list {
        out.push(time_page(&http, &base, &cookie, label, &path, n, expect).await);
    }
    let export = format!("{c}/users.csv");
    let mut t = time_page(
        &http,
        &base,
        &cookie,
        "user export (CSV download)",
        &export,
        5,
        "@",
    )
    .await;
    t.label = format!("{} [download, not a page]", t.label);
    out.push(t);
    out
}

async fn serve(s: &TestStore) -> RosterProcess {
    let dir = match s.backend {
        Backend::Sqlite => s.data_dir.path().to_path_buf(),
        Backend::Postgres => s.data_dir.path().join("serve"),
    };
    RosterProcess::start_with(
        &dir,
        s.database_url.as_deref(),
        &[
            ("RUST_LOG", "warn,roster::access=info"),
            ("ROSTER_LOG_FORMAT", "json"),
        ],
    )
    .await
}

async fn run(backend: Backend, users: usize, n: usize) {
    let s = TestStore::new(backend).await;
    // The first start makes the partner (its first token); the customer
    // is seeded under it with the server stopped, then served.
    let p = serve(&s).await;
    p.stop().await;
    let partners = s.store.db().list_partners().await.unwrap();
    let seeded = seed(&s, partners[0].0, users).await;
    let p = serve(&s).await;
    add_admin(&p, seeded.partner);
    let timings = pages(&p, &seeded, n).await;
    report(&format!("{backend:?}"), &p, timings);
    if let roster_store::Db::Pg(pool) = s.store.db() {
        // PostgreSQL's autovacuum analyses and vacuums a bulk-loaded table
        // within about a minute (statistics for the planner, the
        // visibility map for index-only counts); the same pages again in
        // that steady state.
        sqlx::query("VACUUM ANALYZE").execute(pool).await.unwrap();
        let timings = pages(&p, &seeded, n).await;
        report(&format!("{backend:?}, after VACUUM ANALYZE"), &p, timings);
    }
    p.stop().await;
}

fn report(backend: &str, p: &RosterProcess, timings: Vec<Timing>) {
    let times = server_times(&p.log_text());
    for t in timings {
        let mut rt: Vec<f64> = t.round_trip.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        rt.sort_by(f64::total_cmp);
        let mut server: Vec<f64> = t
            .request_ids
            .iter()
            .filter_map(|id| times.get(id).copied())
            .collect();
        server.sort_by(f64::total_cmp);
        let over = if pct(&server, 0.95) > 100.0 {
            "**over**"
        } else {
            "ok"
        };
        println!(
            "| {backend} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {over} |",
            t.label,
            server.len(),
            pct(&server, 0.5),
            pct(&server, 0.95),
            pct(&rt, 0.5),
            pct(&rt, 0.95),
            t.bytes
        );
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks benches to list their tests
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let users = env_usize("ROSTER_BENCH_USERS", 100_000);
    let n = env_usize("ROSTER_BENCH_REQUESTS", 25).max(20);
    let backends =
        std::env::var("ROSTER_BENCH_BACKENDS").unwrap_or_else(|_| "postgres,sqlite".into());
    println!("Customer of {users} users; {n} requests per page after 2 warm-up requests, one warm connection.");
    println!();
    println!("| back-end | page | requests | server median (ms) | server p95 (ms) | round trip median (ms) | round trip p95 (ms) | bytes | <= 100 ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for backend in backends.split(',') {
        let backend = match backend.trim() {
            "postgres" => Backend::Postgres,
            "sqlite" => Backend::Sqlite,
            _ => continue,
        };
        run(backend, users, n).await;
    }
}
