//! Benchmark of the foundation (issue 2): manual additions per second
//! through the HTTP API of the real binary, and raw event appends per
//! second, on PostgreSQL and on SQLite.
//!
//!   cargo bench -p roster-tests --bench foundation
//!
//! Sizes can be changed with ROSTER_BENCH_USERS (default 2000) and
//! ROSTER_BENCH_CLIENTS (default 32). ROSTER_BENCH_BACKENDS picks back-ends
//! (default "postgres,sqlite"); ROSTER_BENCH_RUST_LOG sets the server's log
//! filter (default "warn") and ROSTER_BENCH_LOG_DIR a folder to keep each
//! server's log and its `/metrics` after the additions in
//! (`additions-<back-end>.log`, `additions-<back-end>.metrics`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use roster_domain::{AddUser, User, UserCommand, UserServices};
use roster_events::*;
use roster_store::{Batch, Loaded};
use roster_tests::{Backend, RosterProcess, TestStore};
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Stages `n` new users of one customer, one event each.
async fn stage_users(
    customer: CustomerId,
    domain: &str,
    from: usize,
    n: usize,
    meta: &EventMeta,
) -> Batch {
    let mut batch = Batch::new();
    for i in from..from + n {
        let id = UserId::new();
        let mut target: Loaded<User> = Loaded::new(id.to_string());
        batch
            .execute(
                &mut target,
                UserCommand::Add(AddUser {
                    user_id: id,
                    customer_id: customer,
                    address: Address::parse(&format!("u{i}@{domain}")).unwrap(),
                    kind: Kind::User,
                    source: Source::Ldap,
                    profile: Profile {
                        first_name: Some(format!("First{i}")),
                        last_name: Some("Bench".into()),
                        department: Some("Engineering".into()),
                        ..Profile::default()
                    },
                    aliases: vec![],
                    directory_id: None,
                    members: vec![],
                }),
                &UserServices::default(),
                meta,
            )
            .await
            .unwrap();
    }
    batch
}

struct Figures {
    single_seq: f64,
    single_conc: f64,
    bulk: f64,
    bulk_projected: f64,
}

async fn raw_appends(backend: Backend) -> Figures {
    let s = TestStore::new(backend).await;
    let c = s.customer(10_000_000, &["bench.example"]).await;
    let meta = EventMeta {
        customer_id: c,
        actor: Actor::System("bench".into()),
        correlation_id: CorrelationId::new(),
        time: Utc::now(),
    };
    // One event per append, one writer.
    let n = 1_000;
    let started = Instant::now();
    for i in 0..n {
        let batch = stage_users(c, "bench.example", i, 1, &meta).await;
        s.store.commit(batch).await.unwrap();
    }
    let single_seq = n as f64 / started.elapsed().as_secs_f64();
    // One event per append, 8 writers.
    let writers = 8;
    let per = 250;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = s.store.clone();
        let meta = meta.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let batch = stage_users(c, "bench.example", 100_000 + w * per + i, 1, &meta).await;
                store.commit(batch).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let single_conc = (writers * per) as f64 / started.elapsed().as_secs_f64();
    // Bulk: 10,000 events per append (how a sync or an import appends).
    let batches = 5;
    let size = 10_000;
    let mut staged = Vec::new();
    for b in 0..batches {
        staged.push(stage_users(c, "bench.example", 1_000_000 + b * size, size, &meta).await);
    }
    let started = Instant::now();
    for batch in staged {
        s.store.commit(batch).await.unwrap();
    }
    let bulk = (batches * size) as f64 / started.elapsed().as_secs_f64();
    let backlog = s.store.head_position().await.unwrap() - s.projector.checkpoint().await.unwrap();
    let started = Instant::now();
    s.project().await;
    let bulk_projected = backlog as f64 / started.elapsed().as_secs_f64();
    Figures {
        single_seq,
        single_conc,
        bulk,
        bulk_projected,
    }
}

async fn api_additions(
    backend: Backend,
    users: usize,
    clients: usize,
) -> (f64, Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let pg = match backend {
        Backend::Postgres => Some(roster_testkit::PgDb::create().await.unwrap()),
        Backend::Sqlite => None,
    };
    let log_filter = std::env::var("ROSTER_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into());
    let p = RosterProcess::start_with(
        dir.path(),
        pg.as_ref().map(|p| p.url()),
        &[("RUST_LOG", &log_filter)],
    )
    .await;
    let api = p.admin();
    let c = api.customer("Bench", 10_000_000, &["api.example"]).await;
    let path = Arc::new(format!("/v1/customers/{c}/users"));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let api = api.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (w..users).step_by(clients) {
                let t = Instant::now();
                let (s, v) = api
                    .post(&path, json!({"address": format!("user{i}@api.example"), "first_name": "Bench", "last_name": format!("{i}")}))
                    .await;
                assert_eq!(s.as_u16(), 201, "{v}");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let rate = users as f64 / started.elapsed().as_secs_f64();
    lat.sort();
    if let Ok(dir) = std::env::var("ROSTER_BENCH_LOG_DIR") {
        let (_, metrics) = api.get("/metrics").await;
        let metrics = metrics.as_str().map(str::to_string).unwrap_or_default();
        std::fs::write(format!("{dir}/additions-{backend:?}.metrics"), metrics).unwrap();
        std::fs::write(format!("{dir}/additions-{backend:?}.log"), p.log_text()).unwrap();
    }
    p.stop().await;
    (rate, pct(&lat, 0.5), pct(&lat, 0.99))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks benches to list their tests
    }
    let users = env_usize("ROSTER_BENCH_USERS", 2_000);
    let clients = env_usize("ROSTER_BENCH_CLIENTS", 32);
    println!("| back-end | API additions/s ({clients} clients, {users} users) | p50 | p99 | appends/s (1 event, 1 writer) | appends/s (1 event, 8 writers) | events/s (10k per append) | events/s projected |");
    println!("|---|---|---|---|---|---|---|---|");
    let backends =
        std::env::var("ROSTER_BENCH_BACKENDS").unwrap_or_else(|_| "postgres,sqlite".into());
    for backend in [Backend::Postgres, Backend::Sqlite] {
        if !backends.contains(&format!("{backend:?}").to_lowercase()) {
            continue;
        }
        let (rate, p50, p99) = api_additions(backend, users, clients).await;
        let f = raw_appends(backend).await;
        println!(
            "| {:?} | {:.0} | {:.1} ms | {:.1} ms | {:.0} | {:.0} | {:.0} | {:.0} |",
            backend,
            rate,
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            f.single_seq,
            f.single_conc,
            f.bulk,
            f.bulk_projected
        );
    }
}
