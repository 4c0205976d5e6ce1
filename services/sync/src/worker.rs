//! The worker: on every tick (and whenever one of its runs ends), takes
//! over runs whose replica stopped, runs the deletion reaper (D3.i) and the
//! scheduler (D4). On shutdown it takes no more runs, lets the ones it holds
//! finish for a grace period and hands the rest back (issue 18).

use std::time::Duration;

use tokio::sync::watch;

use crate::SyncService;

/// Runs the lease sweeper, the reaper and the scheduler every `tick` until
/// `shutdown`, then drains.
pub async fn run(svc: SyncService, tick: Duration, mut shutdown: watch::Receiver<bool>) {
    // The series the alerts read exist from the start, at zero (issue 16).
    for task in ["lease_sweeper", "reaper", "scheduler"] {
        metrics::counter!("roster_worker_errors_total", "task" => task).increment(0);
    }
    for status in ["completed", "failed", "held"] {
        metrics::counter!("roster_sync_runs_total", "status" => status).increment(0);
    }
    metrics::counter!("roster_reaper_deleted_total").increment(0);
    loop {
        if *shutdown.borrow() {
            svc.drain().await;
            return;
        }
        if let Err(e) = svc.sweep_leases().await {
            metrics::counter!("roster_worker_errors_total", "task" => "lease_sweeper").increment(1);
            tracing::error!(error = %e, "the run lease sweeper failed; retrying next tick");
        }
        if let Err(e) = svc.reap().await {
            metrics::counter!("roster_worker_errors_total", "task" => "reaper").increment(1);
            tracing::error!(error = %e, "the deletion reaper failed; retrying next tick");
        }
        if let Err(e) = svc.schedule(false).await {
            metrics::counter!("roster_worker_errors_total", "task" => "scheduler").increment(1);
            tracing::error!(error = %e, "the scheduler failed; retrying next tick");
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => {}
            // A run ended: a slot is free for the next due customer.
            _ = svc.queue.changed.notified() => {}
        }
    }
}
