//! The worker: the scheduler (D4) and the deletion reaper (D3.i) on a tick.

use std::time::Duration;

use tokio::sync::watch;

use crate::SyncService;

/// Runs the scheduler and the reaper every `tick` until `shutdown`.
pub async fn run(svc: SyncService, tick: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = svc.reap().await {
            tracing::error!(error = %e, "the deletion reaper failed; retrying next tick");
        }
        if let Err(e) = svc.schedule(false).await {
            tracing::error!(error = %e, "the scheduler failed; retrying next tick");
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => {}
        }
    }
}
