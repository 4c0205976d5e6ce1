//! Benchmark of Entra ID sync (issue 4, B1): a 100,000-user tenant served
//! by the Graph emulator, on PostgreSQL and on SQLite.
//!
//!   cargo bench -p roster-tests --bench entra
//!
//! ROSTER_BENCH_USERS changes the size (default 100000); ROSTER_BENCH_BACKENDS
//! picks back-ends (default "postgres,sqlite"); ROSTER_BENCH_GRAPH_LATENCY_MS
//! adds that latency to every emulated request (default 0: the emulator
//! answers at once, which flatters full reads; Graph answers a page in tens
//! to hundreds of milliseconds).
//!
//! Phases: the initial sync (a full read), a no-change resync by delta (the
//! default after a full read), the same no-change resync as a full read
//! (`full_sync_hours: 0`), and a delta resync after 1% of the users changed.
//! Each phase is timed from the start of the run to the moment its changes
//! are visible in the read models (the run waits for the projector). Peak
//! memory is the process's high-water mark (VmHWM), reset before each
//! phase; it includes the emulator, which holds the tenant in this same
//! process (its resident size before the first phase is printed).

use std::time::Instant;

use roster_events::*;
use roster_graph_emulator::{GenerateUsers, GraphEmulator, Group, TenantFixture};
use roster_store::Secret;
use roster_sync::{RunOutcome, SettingsChange};
use roster_tests::{Backend, TestStore};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GROUPS: usize = 200;
const MEMBERS: usize = 50;

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
    graph_requests: usize,
    outcome: String,
}

async fn phase<F, Fut>(s: &TestStore, emu: &GraphEmulator, name: &'static str, f: F) -> Phase
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<RunOutcome, roster_sync::SyncError>>,
{
    let head = s.store.head_position().await.unwrap();
    emu.clear_requests();
    reset_peak();
    let started = Instant::now();
    let outcome = f().await.expect("sync run");
    // run_now returns once the read models have caught up with its append.
    let seconds = started.elapsed().as_secs_f64();
    let peak_mib = vm("VmHWM:");
    let events = s.store.head_position().await.unwrap() - head;
    let outcome = match outcome {
        RunOutcome::Completed { counts, .. } => format!(
            "read {} added {} updated {} flagged {} unchanged {}",
            counts.read, counts.added, counts.updated, counts.flagged, counts.unchanged
        ),
        other => format!("{other:?}"),
    };
    Phase {
        name,
        seconds,
        events,
        peak_mib,
        graph_requests: emu.graph_requests().len(),
        outcome,
    }
}

fn config(
    emu: &GraphEmulator,
    fx: &TenantFixture,
    full_sync_hours: Option<u32>,
) -> DirectoryConfig {
    DirectoryConfig {
        connection: Connection::Entra(EntraSettings {
            tenant: fx.tenant_id.clone(),
            client_id: fx.client_id.clone(),
            include_disabled: false,
            filter: None,
            login_endpoint: Some(emu.login_base()),
            graph_endpoint: Some(emu.graph_base()),
            full_sync_hours,
        }),
        poll_interval: PollInterval::Hours6,
        delete_after: DeleteAfter::Days7,
        guard: GuardSettings::default(),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "roster_sync=info,roster_directory=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let users: usize = std::env::var("ROSTER_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let backends =
        std::env::var("ROSTER_BENCH_BACKENDS").unwrap_or_else(|_| "postgres,sqlite".into());
    let t = Instant::now();
    let emu = GraphEmulator::start().await;
    let latency_ms: u64 = std::env::var("ROSTER_BENCH_GRAPH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fx = emu.standard_tenant("benchcorp");
    let ids = fx.tenant.generate_users(GenerateUsers {
        alias_domain: Some(fx.domain.clone()),
        ..GenerateUsers::new(users, &fx.domain)
    });
    for g in 0..GROUPS {
        let id = fx.tenant.add_group(Group::distribution(
            &format!("List {g}"),
            &format!("list{g:04}@{}", fx.domain),
        ));
        let members: Vec<&str> = ids
            .iter()
            .skip(g * MEMBERS % users.max(1))
            .take(MEMBERS)
            .map(String::as_str)
            .collect();
        fx.tenant.set_group_members(&id, &members);
    }
    eprintln!(
        "emulated tenant with {users} users and {GROUPS} lists ready in {:.1} s; resident {} MiB",
        t.elapsed().as_secs_f64(),
        vm("VmRSS:")
    );
    emu.set_latency(std::time::Duration::from_millis(latency_ms));
    eprintln!("Graph latency {latency_ms} ms per request");
    println!("| back-end | phase | seconds (to read models caught up) | events appended | peak RSS (MiB) | Graph requests | outcome |");
    println!("|---|---|---|---|---|---|---|");
    for backend in backends.split(',') {
        let backend = match backend.trim() {
            "postgres" => Backend::Postgres,
            "sqlite" => Backend::Sqlite,
            _ => continue,
        };
        let s = TestStore::new(backend).await;
        s.spawn_projector();
        let c = s.customer(1_000_000, &[&fx.domain]).await;
        let app = s.app();
        app.sync
            .save_settings(
                &s.meta(c),
                config(&emu, &fx, None),
                SettingsChange {
                    secret: Some(Secret::new(fx.client_secret.clone())),
                    enable: Some(true),
                    confirm_switch: false,
                },
            )
            .await
            .unwrap();
        let by = Actor::System("bench".into());
        let run = || app.sync.run_now(c, SyncTrigger::Manual, by.clone());
        let initial = phase(&s, &emu, "initial sync (full read)", run).await;
        let delta = phase(&s, &emu, "resync, no change (delta)", run).await;
        // 1% of the users change a field.
        let changed_ids: Vec<(&String, Option<String>)> = ids
            .iter()
            .step_by(100)
            .map(|id| (id, fx.tenant.user(id).and_then(|u| u.mobile_phone)))
            .collect();
        for (k, (id, _)) in changed_ids.iter().enumerate() {
            fx.tenant
                .update_user(id, |u| u.mobile_phone = Some(format!("+44 20 {k:08}")));
        }
        let changed = phase(&s, &emu, "resync, 1% changed (delta)", run).await;
        // Every run a full read from now on.
        app.sync
            .save_settings(
                &s.meta(c),
                config(&emu, &fx, Some(0)),
                SettingsChange::default(),
            )
            .await
            .unwrap();
        let full = phase(&s, &emu, "resync, no change (full read)", run).await;
        for p in [initial, delta, changed, full] {
            println!(
                "| {:?} | {} | {:.2} | {} | {} | {} | {} |",
                backend, p.name, p.seconds, p.events, p.peak_mib, p.graph_requests, p.outcome
            );
        }
        // Put the tenant back for the next back-end.
        for (id, mobile) in &changed_ids {
            fx.tenant
                .update_user(id, |u| u.mobile_phone = mobile.clone());
        }
    }
}
