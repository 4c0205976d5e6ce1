//! Issue 18: the scale-out benchmark. Three `roster serve` replicas (by
//! default) on one PostgreSQL and one NATS JetStream,
//! `ROSTER_BENCH_CUSTOMERS` customers of `ROSTER_BENCH_USERS` users each
//! (each its own naming context and domain, 16 contexts per slapd), all due
//! on one tick, one replica SIGKILLed while it holds runs; then Sync Now for
//! every customer again (nothing changed).
//!
//! ROSTER_BENCH_CUSTOMERS=200 ROSTER_BENCH_USERS=1000 \
//!   cargo bench -p roster-tests --bench scale
//!
//! Prints a Markdown table for docs/performance.md.

use std::time::Duration;

use roster_tests::scale::{run, ScaleConfig};

fn var(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let cfg = ScaleConfig {
        customers: var("ROSTER_BENCH_CUSTOMERS", 1_000),
        users: var("ROSTER_BENCH_USERS", 1_000),
        replicas: var("ROSTER_BENCH_REPLICAS", 3),
        concurrency: var("ROSTER_BENCH_CONCURRENCY", 4),
        lease_secs: var("ROSTER_BENCH_LEASE_SECS", 30) as u64,
        kill: var("ROSTER_BENCH_KILL", 1) == 1,
        resync: true,
        deadline: Duration::from_secs(var("ROSTER_BENCH_DEADLINE_SECS", 3_600) as u64),
    };
    let r = run(&cfg).await;
    eprintln!("{r:#?}");
    println!("| measure | value |");
    println!("|---|---|");
    let rows = [
        (
            "customers x users",
            format!("{} x {}", cfg.customers, cfg.users),
        ),
        (
            "replicas (concurrency each)",
            format!("{} ({})", cfg.replicas, cfg.concurrency),
        ),
        ("slapd load (s)", format!("{:.1}", r.load_seconds)),
        (
            "every first run completed (s)",
            format!("{:.1}", r.complete_seconds),
        ),
        (
            "completed runs per customer (runs: customers)",
            format!("{:?}", r.completed_runs),
        ),
        (
            "started runs per customer (runs: customers)",
            format!("{:?}", r.started_runs),
        ),
        (
            "runs held by the killed replica / marked interrupted",
            format!("{} / {}", r.killed_runs.len(), r.interrupted_killed),
        ),
        (
            "kill to every run completed (s)",
            format!("{:.1}", r.recovery_seconds.unwrap_or(f64::NAN)),
        ),
        (
            "kill to the interrupted runs' customers completed (s)",
            format!("{:.1}", r.interrupted_completed_seconds.unwrap_or(f64::NAN)),
        ),
        ("lease takeovers", r.takeovers.to_string()),
        (
            "events per user (events: users)",
            format!("{:?}", r.events_per_user),
        ),
        (
            "events per user, one replica alone",
            format!("{:?}", r.control_events_per_user),
        ),
        ("users", r.users_total.to_string()),
        ("users flagged", r.flagged.to_string()),
        (
            "events in the log / messages on the stream",
            format!("{} / {}", r.log_events, r.stream_messages),
        ),
        ("peak RSS per replica (MiB)", format!("{:?}", r.peak_mib)),
        (
            "Sync Now for every customer, nothing changed (s)",
            format!("{:.1}", r.resync_seconds.unwrap_or(f64::NAN)),
        ),
    ];
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
}
