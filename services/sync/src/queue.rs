//! The per-replica run queue (issue 18): how many runs this replica works
//! at once, which runs it holds, and how long their leases last.
//!
//! The queue itself is the database's set of due customers, oldest due
//! first: the scheduler claims a customer's due slot (in the log, so once
//! across replicas) only when it has a free slot to run it in. One large
//! customer takes one slot; the others keep running beside it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roster_events::CustomerId;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use uuid::Uuid;

/// What an operator sets (docs/operations.md, "Capacity planning").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// `ROSTER_SYNC_CONCURRENCY`: runs a replica works at once (default
    /// twice the cores).
    pub concurrency: usize,
    /// `ROSTER_SYNC_LEASE_SECS`: how long a run's lease lasts without a
    /// heartbeat (renewed every third of it); a stopped replica's runs are
    /// taken over this long after it stopped (default 30 s).
    pub lease_ttl: Duration,
    /// `ROSTER_SYNC_SHUTDOWN_GRACE_SECS`: on SIGTERM, how long the replica
    /// lets its runs finish before it hands the rest back (default 20 s).
    pub shutdown_grace: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        RunConfig {
            concurrency: 2 * cores,
            lease_ttl: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

impl RunConfig {
    /// The configuration from the environment; a value that cannot be used
    /// is refused with what to set instead.
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut c = RunConfig::default();
        let number = |name: &str, min: u64, max: u64, what: &str| -> Result<Option<u64>, String> {
            match var(name) {
                None => Ok(None),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                    _ => Err(format!(
                        "{name} must be {what} from {min} to {max}, not {v:?}"
                    )),
                },
            }
        };
        if let Some(n) = number("ROSTER_SYNC_CONCURRENCY", 1, 1024, "a number of runs")? {
            c.concurrency = n as usize;
        }
        if let Some(n) = number("ROSTER_SYNC_LEASE_SECS", 3, 600, "a number of seconds")? {
            c.lease_ttl = Duration::from_secs(n);
        }
        if let Some(n) = number(
            "ROSTER_SYNC_SHUTDOWN_GRACE_SECS",
            0,
            3600,
            "a number of seconds",
        )? {
            c.shutdown_grace = Duration::from_secs(n);
        }
        Ok(c)
    }
}

struct InFlight {
    customer: CustomerId,
    heartbeat: Option<AbortHandle>,
    task: Option<AbortHandle>,
}

/// One replica's runs. Shared by every clone of the service.
pub struct RunQueue {
    pub config: RunConfig,
    /// This replica's name on the leases it holds: host, process, and a
    /// random part (a restarted process is another holder).
    pub holder: String,
    slots: Arc<Semaphore>,
    in_flight: Mutex<HashMap<Uuid, InFlight>>,
    draining: AtomicBool,
    /// Woken when a run ends (a slot is free) or a run is handed over.
    pub changed: Notify,
}

impl std::fmt::Debug for RunQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunQueue")
            .field("config", &self.config)
            .field("holder", &self.holder)
            .finish()
    }
}

impl RunQueue {
    pub fn new(config: RunConfig) -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "roster".into());
        let random = Uuid::new_v4().simple().to_string();
        RunQueue {
            holder: format!("{host}/{}/{}", std::process::id(), &random[..8]),
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            config,
            in_flight: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    /// A free slot now, if there is one.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// A slot, waiting for one.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, InFlight>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn track(&self, customer: CustomerId, run: Uuid, heartbeat: AbortHandle) {
        self.lock().insert(
            run,
            InFlight {
                customer,
                heartbeat: Some(heartbeat),
                task: None,
            },
        );
        self.gauge();
    }

    pub(crate) fn set_task(&self, run: Uuid, task: AbortHandle) {
        if let Some(r) = self.lock().get_mut(&run) {
            r.task = Some(task);
        }
    }

    /// Forgets a run (it ended): stops its heartbeat.
    pub(crate) fn untrack(&self, run: Uuid) {
        if let Some(r) = self.lock().remove(&run) {
            if let Some(h) = r.heartbeat {
                h.abort();
            }
        }
        self.gauge();
        self.changed.notify_one();
    }

    /// Stops a run's work and heartbeat (its lease was lost, or it is
    /// handed back on shutdown). Returns its customer.
    pub(crate) fn abort(&self, run: Uuid) -> Option<CustomerId> {
        let r = self.lock().remove(&run)?;
        for h in [r.heartbeat, r.task].into_iter().flatten() {
            h.abort();
        }
        self.gauge();
        self.changed.notify_one();
        Some(r.customer)
    }

    /// The runs this replica holds.
    pub fn runs(&self) -> Vec<(Uuid, CustomerId)> {
        self.lock().iter().map(|(r, f)| (*r, f.customer)).collect()
    }

    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }

    fn gauge(&self) {
        metrics::gauge!("roster_sync_runs_in_flight").set(self.in_flight() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue18_run_settings_come_from_the_environment_and_bad_ones_say_what_to_fix() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = RunConfig::from_vars(vars(&[
            ("ROSTER_SYNC_CONCURRENCY", "7"),
            ("ROSTER_SYNC_LEASE_SECS", "45"),
        ]))
        .unwrap();
        assert_eq!(c.concurrency, 7);
        assert_eq!(c.lease_ttl, Duration::from_secs(45));
        assert_eq!(c.shutdown_grace, RunConfig::default().shutdown_grace);
        let e = RunConfig::from_vars(vars(&[("ROSTER_SYNC_LEASE_SECS", "0")])).unwrap_err();
        assert!(
            e.contains("ROSTER_SYNC_LEASE_SECS must be a number of seconds from 3 to 600"),
            "{e}"
        );
        let e = RunConfig::from_vars(vars(&[("ROSTER_SYNC_CONCURRENCY", "many")])).unwrap_err();
        assert!(e.contains("ROSTER_SYNC_CONCURRENCY"), "{e}");
        assert!(RunConfig::default().concurrency >= 2);
    }
}
