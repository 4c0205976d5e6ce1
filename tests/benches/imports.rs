//! Benchmark of CSV import (issue 6, M2): a 100,000-row file reviewed and
//! committed on PostgreSQL and on SQLite, then the same file again with 1%
//! of the rows changed.
//!
//!   cargo bench -p roster-tests --bench imports
//!
//! ROSTER_BENCH_ROWS changes the size (default 100000); ROSTER_BENCH_BACKENDS
//! picks back-ends (default "postgres,sqlite"); ROSTER_BENCH_CHUNK sets the
//! rows per commit chunk (default: the product's).
//!
//! Then a file of half as many new users, each with an alias that is
//! already another user's primary address, is reviewed (every row a
//! conflict naming its holder; not committed).
//!
//! Review is timed from the bytes to the stored plan (parse, bulk checks,
//! plan rows written). Commit is timed from the call to the moment the read
//! models show the last chunk (the projector runs in this process, as in
//! `roster serve`), split into "appended" (the commit call returned) and
//! "projected" (the projector caught up after that). Peak memory is the
//! process's high-water mark (VmHWM), reset before each phase; the two
//! generated files (10 MiB each) are held for the whole run. The review's
//! own split (parse, checks, store) and each chunk's (read, stage, append)
//! are logged with RUST_LOG=roster_app=debug,roster_store=debug.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use roster_app::imports::{self, ImportSettings, InputKind, ReviewInput, RowQuery};
use roster_csv::ImportOptions;
use roster_events::*;
use roster_tests::bench::{peak_mib, proc_kib, reset_peak};
use roster_tests::{Backend, TestStore};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DOMAIN: &str = "bench.example";

/// A file as an HR export would be: every column, a third of the users
/// with two aliases, every tenth with a quoted two-line note, mobiles with
/// a leading `+` as exports write them (`'+49 ...`). `changed_every`: every
/// n-th row gets another department (0 = none).
fn file(rows: usize, changed_every: usize) -> Vec<u8> {
    let mut out = String::with_capacity(rows * 140);
    out.push('\u{FEFF}');
    out.push_str(
        "email,first_name,last_name,aliases,home_phone,mobile,company,department,notes\r\n",
    );
    for i in 0..rows {
        let aliases = if i % 3 == 0 {
            format!("\"u{i}.alt@{DOMAIN}; u{i}.x@{DOMAIN}\"")
        } else {
            String::new()
        };
        let department = if changed_every > 0 && i % changed_every == 0 {
            "Operations"
        } else {
            ["Sales", "Finance", "Engineering", "Support"][i % 4]
        };
        let notes = if i % 10 == 0 {
            format!("\"Desk {i}\r\nBuilding \"\"B\"\"\"")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "user{i}@{DOMAIN},First{i},Last{},{aliases},,'+49 151 {i:07},\"Acme, Inc.\",{department},{notes}\r\n",
            i % 977
        ));
    }
    out.into_bytes()
}

/// A file of `rows` new users, each with an alias that is already the
/// primary address of a user the file does not name (`user{i}@`, from the
/// first file): every row conflicts with a holder outside the file (U1),
/// as an export with a shifted column would. The review names each
/// holder (session 26's tester question: does it stay interactive?).
fn conflicting_file(rows: usize) -> Vec<u8> {
    let mut out = String::with_capacity(rows * 60);
    out.push_str("email,first_name,last_name,aliases\r\n");
    for i in 0..rows {
        out.push_str(&format!("new{i}@{DOMAIN},New{i},Last,user{i}@{DOMAIN}\r\n"));
    }
    out.into_bytes()
}

struct Phase {
    name: &'static str,
    seconds: f64,
    split: String,
    peak_mib: u64,
    outcome: String,
}

async fn review(
    s: &TestStore,
    c: CustomerId,
    bytes: &Bytes,
    settings: &ImportSettings,
) -> (ImportId, Phase) {
    reset_peak(None);
    let started = Instant::now();
    let id = imports::review(
        &s.app(),
        &Actor::System("bench".into()),
        c,
        ReviewInput {
            bytes: bytes.clone(),
            kind: InputKind::Upload,
            file_name: Some("users.csv".into()),
            options: ImportOptions::default(),
        },
        settings,
    )
    .await
    .unwrap_or_else(|e| panic!("review: {} {e}", e.code()));
    let seconds = started.elapsed().as_secs_f64();
    let peak_mib = peak_mib(None);
    // Only the totals are read (outside the timing).
    let v = imports::view(
        &s.app(),
        c,
        id,
        &RowQuery {
            page_size: Some(1),
            ..RowQuery::default()
        },
    )
    .await
    .unwrap();
    let t = v.totals;
    (
        id,
        Phase {
            name: "review",
            seconds,
            split: String::new(),
            peak_mib,
            outcome: format!(
                "add {} update {} unchanged {} error {} ({} chunks)",
                t.add, t.update, t.unchanged, t.error, v.progress.chunks
            ),
        },
    )
}

async fn commit(s: &TestStore, c: CustomerId, id: ImportId, settings: &ImportSettings) -> Phase {
    let head = s.store.head_position().await.unwrap();
    reset_peak(None);
    let started = Instant::now();
    let done = imports::commit(&s.app(), &Actor::System("bench".into()), c, id, settings)
        .await
        .unwrap_or_else(|e| panic!("commit: {} {e}", e.code()));
    let appended = started.elapsed().as_secs_f64();
    assert!(
        s.projector
            .wait_for(done.position, Duration::from_secs(900))
            .await,
        "the projector did not catch up"
    );
    let seconds = started.elapsed().as_secs_f64();
    let peak_mib = peak_mib(None);
    let events = s.store.head_position().await.unwrap() - head;
    let r = done.result;
    Phase {
        name: "commit",
        seconds,
        split: format!(
            "appended {appended:.2}, projected +{:.2}",
            seconds - appended
        ),
        peak_mib,
        outcome: format!(
            "added {} updated {} unchanged {} skipped {}; {events} events",
            r.added, r.updated, r.unchanged, r.skipped
        ),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rows: usize = std::env::var("ROSTER_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let backends =
        std::env::var("ROSTER_BENCH_BACKENDS").unwrap_or_else(|_| "postgres,sqlite".into());
    let mut settings = ImportSettings::default();
    if let Some(n) = std::env::var("ROSTER_BENCH_CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        settings.chunk_rows = n;
    }
    let first = Bytes::from(file(rows, 0));
    let second = Bytes::from(file(rows, 100));
    let conflicting = Bytes::from(conflicting_file(rows / 2));
    eprintln!(
        "{rows} rows, {:.1} MiB; RSS with both files generated {} MiB",
        first.len() as f64 / 1048576.0,
        proc_kib(None, "VmRSS:") / 1024
    );
    println!("| back-end | file | phase | seconds | split | peak RSS (MiB) | outcome |");
    println!("|---|---|---|---|---|---|---|");
    for backend in backends.split(',') {
        let backend = match backend.trim() {
            "postgres" => Backend::Postgres,
            "sqlite" => Backend::Sqlite,
            _ => continue,
        };
        let s = TestStore::new(backend).await;
        // The projector tails the log until this back-end is done.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let projector = tokio::spawn(s.projector.clone().run(stopped, Duration::from_millis(20)));
        let c = s.customer(10_000_000, &[DOMAIN]).await;
        eprintln!(
            "{backend:?}: RSS before the first phase {} MiB",
            proc_kib(None, "VmRSS:") / 1024
        );
        let mut phases = Vec::new();
        for (label, bytes) in [("new users", &first), ("1% changed", &second)] {
            let (id, r) = review(&s, c, bytes, &settings).await;
            phases.push((format!("{rows} rows, {label}"), r));
            phases.push((
                format!("{rows} rows, {label}"),
                commit(&s, c, id, &settings).await,
            ));
        }
        // Reviewed only: every row is an error, nothing to commit.
        let (_, r) = review(&s, c, &conflicting, &settings).await;
        phases.push((
            format!("{} rows, each alias another user's address", rows / 2),
            r,
        ));
        for (label, p) in phases {
            println!(
                "| {backend:?} | {label} | {} | {:.2} | {} | {} | {} |",
                p.name, p.seconds, p.split, p.peak_mib, p.outcome
            );
        }
        let _ = stop.send(true);
        let _ = projector.await;
    }
}
