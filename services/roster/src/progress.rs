//! Progress of long command-line work (issue 16: `rebuild --verify` was
//! silent for its whole run): a progress bar on a terminal, a log line
//! every `ROSTER_PROGRESS_SECS` otherwise. Progress is read from the
//! projection checkpoints the replay commits as it goes, against the log's
//! head, so the replay itself needs no hook.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use roster_store::{with_db, Store};
use tokio::sync::watch;

/// Which checkpoints a phase advances.
#[derive(Clone, Copy)]
pub enum Checkpoints {
    /// The live projections (`roster rebuild --verify` catching up first).
    Live,
    /// The fresh tables a rebuild replays into.
    Rebuild,
}

pub struct Progress {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Shows the progress of `label` until [`Progress::finish`].
    pub fn start(store: &Store, label: &'static str, which: Checkpoints, every: Duration) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let store = store.clone();
        let task = tokio::spawn(async move {
            let total = store.head_position().await.unwrap_or(0).max(0) as u64;
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:40}] {pos}/{len} events ({per_sec}, {eta} left)",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_message(label);
                bar
            });
            tracing::info!(events = total, "{label}: started");
            let started = Instant::now();
            let mut logged = Instant::now();
            let tick = every.clamp(Duration::from_millis(20), Duration::from_millis(250));
            loop {
                let done = tokio::select! {
                    _ = tokio::time::sleep(tick) => false,
                    _ = stopped.wait_for(|s| *s) => true,
                };
                let at = position(&store, which).await.unwrap_or(0).max(0) as u64;
                match &bar {
                    Some(bar) => bar.set_position(at.min(total)),
                    None if !done && logged.elapsed() >= every => {
                        logged = Instant::now();
                        let pct = if total == 0 {
                            100.0
                        } else {
                            at as f64 * 100.0 / total as f64
                        };
                        tracing::info!(
                            events = at,
                            of = total,
                            percent = (pct * 10.0).round() / 10.0,
                            seconds = started.elapsed().as_secs(),
                            "{label}: {at} of {total} events ({pct:.1}%)"
                        );
                    }
                    None => {}
                }
                if done {
                    if let Some(bar) = bar {
                        bar.finish_and_clear();
                    }
                    tracing::info!(seconds = started.elapsed().as_secs_f64(), "{label}: done");
                    return;
                }
            }
        });
        Progress { stop, task }
    }

    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The position the slowest projection of a phase has reached.
async fn position(store: &Store, which: Checkpoints) -> Option<i64> {
    let sql = match which {
        Checkpoints::Live => {
            "SELECT COALESCE(MIN(position), 0) FROM projection_checkpoints WHERE name NOT LIKE 'rebuild%'"
        }
        Checkpoints::Rebuild => {
            "SELECT COALESCE(MIN(position), 0) FROM projection_checkpoints WHERE name LIKE 'rebuild%'"
        }
    };
    let r: Result<i64, sqlx::Error> =
        with_db!(store.db(), |p| sqlx::query_scalar(sql).fetch_one(p).await);
    r.ok()
}

/// A spinner (on a terminal) or log lines for the phases of `roster migrate`.
pub struct Phases {
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Phases {
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Phases {
            bar,
            started: Instant::now(),
        }
    }

    pub fn phase(&self, what: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(what.to_string()),
            None => tracing::info!(
                seconds = self.started.elapsed().as_secs_f64(),
                "migrate: {what}"
            ),
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
