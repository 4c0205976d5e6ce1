//! Prometheus metrics (issue 16): the recorder with real histograms (fixed
//! buckets, so replicas aggregate), a HELP line for every metric, build
//! info, and the gauges read from the database and the process: lag of
//! the projections and the relay measured from the log's head (in events
//! and seconds), the pool's connections, sync runs in flight and held, and
//! the process's CPU, memory and file descriptors.

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use roster_projections::{LagLimits, Projector};
use roster_store::{with_db, Store};

/// Histogram buckets in seconds: from a fast request (1 ms) to a long sync
/// run or import (1 h).
pub const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 900.0, 1800.0, 3600.0,
];

/// Buckets of `roster_append_group_size`: appends per group commit.
pub const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// How often [`collect`] should run (the roles' collectors use it).
pub const COLLECT_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process's Prometheus recorder: histograms with
/// [`BUCKETS`] (group sizes with [`GROUP_BUCKETS`]), every metric described, `roster_build_info` set.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .map_err(|e| format!("Prometheus buckets: {e}"))?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("roster_append_group_size".into()),
            GROUP_BUCKETS,
        )
        .map_err(|e| format!("Prometheus buckets: {e}"))?
        .install_recorder()
        .map_err(|e| format!("installing the Prometheus recorder: {e}"))?;
    describe();
    metrics::gauge!(
        "roster_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "profile" => if cfg!(debug_assertions) { "debug" } else { "release" }
    )
    .set(1.0);
    process();
    Ok(handle)
}

/// Every metric Roster records, with its type and help (a metric recorded
/// without a line here shows no HELP: the /metrics test fails on it).
pub const METRICS: &[(&str, Kind, &str)] = &[
    ("roster_build_info", Kind::Gauge, "Always 1; the labels say which build runs (version, profile)"),
    // HTTP
    ("roster_http_requests_total", Kind::Counter, "HTTP requests answered, by method, route template and status"),
    ("roster_http_request_seconds", Kind::Histogram, "HTTP request latency in seconds, by method, route template and status"),
    ("roster_http_connections_refused_total", Kind::Counter, "Connections closed at once because ROSTER_HTTP_MAX_CONNECTIONS were open"),
    ("roster_db_unavailable_total", Kind::Counter, "Requests answered 503 unavailable because the database could not be reached"),
    // Log and commands
    ("roster_events_appended_total", Kind::Counter, "Events appended to the log by this process"),
    ("roster_append_seconds", Kind::Histogram, "Time to append one batch of events, in seconds"),
    ("roster_append_group_size", Kind::Histogram, "Appends committed together in one transaction (group commit)"),
    ("roster_command_conflicts_total", Kind::Counter, "Commands retried because another writer changed the same aggregate first"),
    ("roster_log_head_position", Kind::Gauge, "The log's head: the position of the newest committed event"),
    // Projections
    ("roster_events_projected_total", Kind::Counter, "Events applied to the read models by this process"),
    ("roster_projection_position", Kind::Gauge, "The position each projection has applied up to"),
    ("roster_projection_lag_events", Kind::Gauge, "Events committed to the log that a projection has not applied (log head minus its checkpoint)"),
    ("roster_projection_lag_seconds", Kind::Gauge, "Age of the oldest event a projection has not applied, in seconds (0 when caught up)"),
    ("roster_projection_failures_total", Kind::Counter, "Attempts at applying an event that failed deterministically, by projection"),
    ("roster_projection_skipped_total", Kind::Counter, "Events a projection skipped after 3 failed attempts (alert on it)"),
    ("roster_projection_transient_errors_total", Kind::Counter, "Transient database errors of the projector (retried with backoff)"),
    // Database pool
    ("roster_db_pool_connections", Kind::Gauge, "Database connections of this process's pool, by state (in_use, idle)"),
    ("roster_db_pool_max_connections", Kind::Gauge, "The pool's maximum size"),
    // Directory sync
    ("roster_sync_runs_started_total", Kind::Counter, "Directory sync runs started"),
    ("roster_sync_runs_total", Kind::Counter, "Directory sync runs finished, by status (completed, failed, held)"),
    ("roster_sync_run_seconds", Kind::Histogram, "Directory sync run duration in seconds, by status"),
    ("roster_sync_phase_seconds", Kind::Histogram, "Duration of a sync run's phases in seconds: read, plan, stage, append, project"),
    ("roster_sync_runs_running", Kind::Gauge, "Directory sync runs running now (all replicas, from the database)"),
    ("roster_sync_runs_held", Kind::Gauge, "Directory sync runs held by the mass-deletion guard, awaiting confirmation"),
    ("roster_directory_reads_total", Kind::Counter, "Directory reads, by kind (ldap, entra) and mode (full, delta)"),
    ("roster_entra_retries_total", Kind::Counter, "Waits after Microsoft Graph throttled (429/503)"),
    ("roster_entra_delta_link_rejected_total", Kind::Counter, "Graph delta links rejected (the next read is full)"),
    ("roster_reaper_deleted_total", Kind::Counter, "Users deleted by the deletion reaper after their delay"),
    ("roster_worker_errors_total", Kind::Counter, "Failed passes of the worker, by task (reaper, scheduler, lease_sweeper); retried next tick"),
    ("roster_sync_queue_depth", Kind::Gauge, "Due customers waiting for a free run slot at this replica's last scheduling pass"),
    ("roster_sync_runs_in_flight", Kind::Gauge, "Directory sync runs this replica holds"),
    ("roster_sync_oldest_due_seconds", Kind::Gauge, "How long the oldest waiting customer has been due, in seconds"),
    ("roster_sync_lease_takeovers_total", Kind::Counter, "Runs of a stopped replica taken over (marked interrupted and started again)"),
    // Imports
    ("roster_import_reviews_total", Kind::Counter, "CSV import reviews made"),
    ("roster_import_rows_reviewed_total", Kind::Counter, "Rows of CSV import reviews"),
    ("roster_import_review_seconds", Kind::Histogram, "CSV import review duration in seconds, by outcome (ok or the error code)"),
    ("roster_import_commits_total", Kind::Counter, "CSV import commits"),
    ("roster_import_rows_committed_total", Kind::Counter, "Rows applied by CSV import commits"),
    ("roster_import_commit_seconds", Kind::Histogram, "CSV import commit duration in seconds, by outcome (ok or the error code)"),
    // Relay
    ("roster_relay_published_total", Kind::Counter, "Events the bus acknowledged, by bus"),
    ("roster_relay_unheard_total", Kind::Counter, "Events passed over unread while an in-process bus had no subscriber, by bus"),
    ("roster_relay_duplicates_total", Kind::Counter, "Events the bus already held (republished after a restart), by bus"),
    ("roster_relay_duplicate_mismatches_total", Kind::Counter, "Republished events whose stored copy differs from the bus's, by bus"),
    ("roster_relay_failures_total", Kind::Counter, "Relay sessions that failed (the relay retries with backoff)"),
    ("roster_relay_lease_lost_total", Kind::Counter, "Times this relay lost its publishing lease"),
    ("roster_relay_commit_to_ack_seconds", Kind::Histogram, "From an event's commit to the bus's acknowledgement, in seconds"),
    ("roster_relay_position", Kind::Gauge, "The relay's checkpoint: the last position the bus acknowledged"),
    ("roster_relay_lag", Kind::Gauge, "Events behind the log's head at the relay's last checkpoint save, by bus"),
    ("roster_relay_lag_events", Kind::Gauge, "Events committed to the log that the relay has not published (log head minus its checkpoint)"),
    ("roster_relay_lag_seconds", Kind::Gauge, "Age of the oldest event the relay has not published, in seconds (0 when caught up)"),
    ("roster_relay_active", Kind::Gauge, "1 while this relay holds the lease and publishes, 0 on standby"),
    ("roster_relay_halted", Kind::Gauge, "1 while publishing is halted (see docs/events.md)"),
    // Process
    ("process_cpu_seconds_total", Kind::Counter, "User and system CPU time of the process, in seconds"),
    ("process_resident_memory_bytes", Kind::Gauge, "Resident memory of the process, in bytes"),
    ("process_virtual_memory_bytes", Kind::Gauge, "Virtual memory of the process, in bytes"),
    ("process_open_fds", Kind::Gauge, "Open file descriptors of the process"),
    ("process_max_fds", Kind::Gauge, "The process's limit of open file descriptors"),
    ("process_start_time_seconds", Kind::Gauge, "When the process started, in seconds since the Unix epoch"),
    ("process_threads", Kind::Gauge, "Threads of the process"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

fn describe() {
    for (name, kind, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(*name, *help),
            Kind::Gauge => metrics::describe_gauge!(*name, *help),
            Kind::Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
}

/// Reads the gauges that come from the database and the process. Each
/// part is bounded in time; one that fails (the database is down) leaves
/// its gauges as they were.
pub async fn collect(
    store: &Store,
    projector: Option<&Projector>,
    relay_checkpoint: Option<i64>,
    now_micros: i64,
) {
    process();
    let (in_use, idle) = store.db().pool_connections();
    metrics::gauge!("roster_db_pool_connections", "state" => "in_use").set(in_use as f64);
    metrics::gauge!("roster_db_pool_connections", "state" => "idle").set(idle as f64);
    metrics::gauge!("roster_db_pool_max_connections").set(store.db().pool_max() as f64);
    let limit = Duration::from_secs(2);
    let Ok(Ok(head)) = tokio::time::timeout(limit, store.head_position()).await else {
        return;
    };
    metrics::gauge!("roster_log_head_position").set(head as f64);
    if let Some(projector) = projector {
        // Sets roster_projection_lag_events itself, from the log's head.
        if let Ok(Ok((_, lags))) =
            tokio::time::timeout(limit, projector.lag(now_micros, LagLimits::default())).await
        {
            for l in lags {
                metrics::gauge!("roster_projection_lag_seconds", "projection" => l.name)
                    .set(l.behind_seconds);
            }
        }
    }
    if let Some(checkpoint) = relay_checkpoint {
        let behind = (head - checkpoint).max(0);
        metrics::gauge!("roster_relay_lag_events").set(behind as f64);
        let seconds = if behind == 0 {
            Some(0.0)
        } else {
            match tokio::time::timeout(limit, store.read_from(checkpoint, 1)).await {
                Ok(Ok(events)) => events
                    .first()
                    .map(|e| (now_micros - e.recorded_at).max(0) as f64 / 1e6),
                _ => None,
            }
        };
        if let Some(s) = seconds {
            metrics::gauge!("roster_relay_lag_seconds").set(s);
        }
    }
    let runs = tokio::time::timeout(limit, async {
        let sql = format!(
            "SELECT status, COUNT(*) FROM {} WHERE status IN ('running', 'held') GROUP BY status",
            roster_projections::directory::RUNS
        );
        let rows: Result<Vec<(String, i64)>, sqlx::Error> =
            with_db!(store.db(), |p| sqlx::query_as(&sql).fetch_all(p).await);
        rows
    })
    .await;
    if let Ok(Ok(rows)) = runs {
        let count = |s: &str| rows.iter().find(|r| r.0 == s).map(|r| r.1).unwrap_or(0);
        metrics::gauge!("roster_sync_runs_running").set(count("running") as f64);
        metrics::gauge!("roster_sync_runs_held").set(count("held") as f64);
    }
}

/// The process's gauges, from /proc where there is one (Linux).
pub fn process() {
    #[cfg(target_os = "linux")]
    {
        // Linux reports CPU times in clock ticks of 1/100 s (USER_HZ).
        const TICKS: f64 = 100.0;
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // After the command name in parentheses: state is field 3.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
            if let (Some(user), Some(system)) = (field(14), field(15)) {
                metrics::counter!("process_cpu_seconds_total")
                    .absolute(((user + system) / TICKS) as u64);
            }
            if let Some(threads) = field(20) {
                metrics::gauge!("process_threads").set(threads);
            }
            if let Some(vsize) = field(23) {
                metrics::gauge!("process_virtual_memory_bytes").set(vsize);
            }
            let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            });
            if let (Some(boot), Some(start)) = (boot, field(22)) {
                metrics::gauge!("process_start_time_seconds").set(boot + start / TICKS);
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let rss_kb = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
            if let Some(kb) = rss_kb {
                metrics::gauge!("process_resident_memory_bytes").set(kb * 1024.0);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            metrics::gauge!("process_open_fds").set(dir.count() as f64);
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            let max = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok());
            if let Some(max) = max {
                metrics::gauge!("process_max_fds").set(max);
            }
        }
    }
}
