//! Benchmark of directory sync (issue 3): a 100,000-user slapd directory,
//! on PostgreSQL and on SQLite.
//!
//!   cargo bench -p roster-tests --bench sync
//!
//! ROSTER_BENCH_USERS changes the size (default 100000); ROSTER_BENCH_BACKENDS
//! picks back-ends (default "postgres,sqlite").
//!
//! Each phase is timed from the start of the run to the moment its changes
//! are visible in the read models (the run waits for the projector). Peak
//! memory is the process's high-water mark (VmHWM), reset before each phase.

use std::time::Instant;

use roster_events::*;
use roster_store::Secret;
use roster_sync::{RunOutcome, SettingsChange};
use roster_testkit::{DirectoryData, Slapd, SlapdConfig, Style};
use roster_tests::sync::{config, settings_for, DOMAIN};
use roster_tests::{Backend, TestStore};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn vm(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Phase {
    name: &'static str,
    seconds: f64,
    events: i64,
    peak_mib: u64,
    outcome: String,
}

async fn phase<F, Fut>(s: &TestStore, name: &'static str, f: F) -> Phase
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<RunOutcome, roster_sync::SyncError>>,
{
    let head = s.store.head_position().await.unwrap();
    reset_peak();
    let started = Instant::now();
    let outcome = f().await.expect("sync run");
    // run_now returns once the read models have caught up with its append.
    let seconds = started.elapsed().as_secs_f64();
    let peak_mib = vm("VmHWM:");
    let events = s.store.head_position().await.unwrap() - head;
    let outcome = match outcome {
        RunOutcome::Completed { counts, .. } => format!(
            "added {} updated {} flagged {} unchanged {}",
            counts.added, counts.updated, counts.flagged, counts.unchanged
        ),
        other => format!("{other:?}"),
    };
    Phase {
        name,
        seconds,
        events,
        peak_mib,
        outcome,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Phase splits (read, plan, stage, append, project) from the service's logs.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "roster_sync=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let users: usize = std::env::var("ROSTER_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let backends =
        std::env::var("ROSTER_BENCH_BACKENDS").unwrap_or_else(|_| "postgres,sqlite".into());
    let base = "dc=example,dc=com";
    let data = DirectoryData::new(Style::InetOrgPerson, base, DOMAIN).users(users);
    let t = Instant::now();
    let mut slapd = Slapd::start(SlapdConfig::inet_org_person().data(data.clone()))
        .await
        .unwrap();
    eprintln!(
        "slapd with {users} users ready in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    println!("| back-end | phase | seconds (to read models caught up) | events appended | peak RSS (MiB) | outcome |");
    println!("|---|---|---|---|---|---|");
    for backend in backends.split(',') {
        let backend = match backend.trim() {
            "postgres" => Backend::Postgres,
            "sqlite" => Backend::Sqlite,
            _ => continue,
        };
        let s = TestStore::new(backend).await;
        s.spawn_projector();
        let c = s.customer(1_000_000, &[DOMAIN]).await;
        let app = s.app();
        app.sync
            .save_settings(
                &s.meta(c),
                config(settings_for(&slapd, base), DeleteAfter::Days7),
                SettingsChange {
                    secret: Some(Secret::new(slapd.root_password())),
                    enable: Some(true),
                    confirm_switch: false,
                },
            )
            .await
            .unwrap();
        let by = Actor::System("bench".into());
        let run = || app.sync.run_now(c, SyncTrigger::Manual, by.clone());
        let initial = phase(&s, "initial sync", run).await;
        let resync = phase(&s, "resync, no change", run).await;
        // 1% of the users change a field.
        let admin = slapd.admin().await.unwrap();
        for i in (0..users).step_by(100) {
            admin
                .replace(&data.user(i).dn, "mobile", &[format!("+44 20 {i:08}")])
                .await
                .unwrap();
        }
        let changed = phase(&s, "resync, 1% changed", run).await;
        for p in [initial, resync, changed] {
            println!(
                "| {:?} | {} | {:.2} | {} | {} | {} |",
                backend, p.name, p.seconds, p.events, p.peak_mib, p.outcome
            );
        }
        // Put the directory back for the next back-end.
        for i in (0..users).step_by(100) {
            let mobile = data.user(i).mobile.unwrap();
            admin
                .replace(&data.user(i).dn, "mobile", &[mobile])
                .await
                .unwrap();
        }
    }
    slapd.stop().await;
}
