// NOT YET COMPILED OR RUN (issue 14, helper B2 ran out of time): the per-page
// bench at 100,000 users. Move it to tests/benches/console.rs and add a
// [[bench]] name = "console", harness = false entry to tests/Cargo.toml.
//! Benchmark of the admin console's pages (issue 14): the time `roster
//! serve` takes to answer each page for a customer with 100,000 users
//! (target: at most 100 ms each), on SQLite and on PostgreSQL.
//!
//!   cargo bench -p roster-tests --bench console
//!
//! ROSTER_BENCH_USERS changes the size (default 100000); ROSTER_BENCH_BACKENDS
//! picks back-ends (default "sqlite,postgres"); ROSTER_BENCH_REPEAT the
//! requests per page (default 20). The users come in through the API's
//! import (a third with two aliases);
//! the pages are fetched signed in as a partner administrator, over
//! loopback, and the median and worst times are printed per page (the
//! loopback round trip is part of them, well under a millisecond).

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use roster_tests::process::{roster_binary, RosterProcess, TEST_SECRET_KEY};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DOMAIN: &str = "bench.example";
const PASSWORD: &str = "bench password for the console";

fn var(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn file(rows: usize) -> String {
    let mut out = String::with_capacity(rows * 100);
    out.push_str("email,first_name,last_name,aliases,department\r\n");
    for i in 0..rows {
        let aliases = if i % 3 == 0 {
            format!("u{i}.alt@{DOMAIN};u{i}.x@{DOMAIN}")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "user{i:06}@{DOMAIN},First{i},Last{},\"{aliases}\",Sales\r\n",
            i % 977
        ));
    }
    out
}

fn add_admin(p: &RosterProcess) {
    let mut cmd = std::process::Command::new(roster_binary());
    cmd.args([
        "admin",
        "add",
        "--email",
        "bench@roster.example",
        "--name",
        "Bench",
        "--password-stdin",
    ])
    .env("ROSTER_SECRET_KEY", TEST_SECRET_KEY)
    .env("ROSTER_DATA_DIR", &p.data_dir)
    .env_remove("DATABASE_URL")
    .stdin(Stdio::piped())
    .stdout(Stdio::null());
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
    assert!(child.wait().unwrap().success(), "roster admin add failed");
}

async fn load(p: &RosterProcess, rows: usize) -> String {
    let api = p.admin();
    let c = api.customer("Bench Co", (rows * 2) as u64, &[DOMAIN]).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v1/customers/{c}/imports?page_size=1", p.base))
        .bearer_auth(&p.bootstrap_token)
        .header("content-type", "text/csv")
        .body(file(rows))
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "review: {}",
        r.text().await.unwrap()
    );
    let v: serde_json::Value = r.json().await.unwrap();
    let id = v["id"].as_str().expect("import id").to_string();
    let r = client
        .post(format!("{}/v1/customers/{c}/imports/{id}/commit", p.base))
        .bearer_auth(&p.bootstrap_token)
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "commit: {}",
        r.text().await.unwrap()
    );
    c
}

/// A client and the session cookie of a partner administrator.
async fn signed_in(p: &RosterProcess) -> (reqwest::Client, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .post(format!("{}/signin", p.base))
        .header("origin", &p.base)
        .form(&[
            ("email", "bench@roster.example"),
            ("password", PASSWORD),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "sign-in: {}", r.status());
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(!cookie.is_empty(), "sign-in set no session cookie");
    (client, cookie)
}

async fn time_page(session: &(reqwest::Client, String), url: &str, repeat: usize) -> (f64, f64) {
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let started = Instant::now();
        let r = session
            .0
            .get(url)
            .header("cookie", &session.1)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let _ = r.bytes().await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, StatusCode::OK, "{url}");
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() - 1])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = var("ROSTER_BENCH_USERS", 100_000);
    let repeat = var("ROSTER_BENCH_REPEAT", 20).max(1);
    let backends =
        std::env::var("ROSTER_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    println!("| back-end | page | median (ms) | worst (ms) |");
    println!("|---|---|---|---|");
    for backend in backends.split(',').map(str::trim) {
        let dir = tempfile::tempdir().unwrap();
        let pg = match backend {
            "postgres" => Some(roster_testkit::PgDb::create().await.unwrap()),
            "sqlite" => None,
            _ => continue,
        };
        let p = RosterProcess::start_with(
            &dir.path().join("data"),
            pg.as_ref().map(|d| d.url()),
            &[("ROSTER_NO_WORKER", "true")],
        )
        .await;
        let started = Instant::now();
        let c = load(&p, rows).await;
        eprintln!(
            "{backend}: {rows} users loaded in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        add_admin(&p);
        let session = signed_in(&p).await;
        let base = &p.base;
        let mid = format!("user{:06}%40{DOMAIN}", rows / 2);
        let pages = [
            ("customer list", format!("{base}/customers")),
            ("dashboard", format!("{base}/customers/{c}")),
            ("domains", format!("{base}/customers/{c}/domains")),
            ("users, first page", format!("{base}/customers/{c}/users")),
            (
                "users, search by name",
                format!("{base}/customers/{c}/users?q=last42"),
            ),
            (
                "users, search by address",
                format!("{base}/customers/{c}/users?q=user05"),
            ),
            (
                "users, pending deletion",
                format!("{base}/customers/{c}/users?status=pending_deletion"),
            ),
            ("user page", format!("{base}/customers/{c}/users/{mid}")),
            (
                "user edit form",
                format!("{base}/customers/{c}/users/{mid}/edit"),
            ),
            (
                "domain removal preview",
                format!("{base}/customers/{c}/domains/{DOMAIN}/remove"),
            ),
            ("import form", format!("{base}/customers/{c}/import")),
        ];
        for (name, url) in pages {
            let (median, worst) = time_page(&session, &url, repeat).await;
            println!("| {backend} | {name} | {median:.1} | {worst:.1} |");
        }
        p.stop().await;
        drop(pg);
    }
}
