//! Issue 18 in CI: three `roster serve` replicas on one PostgreSQL and one
//! NATS JetStream, 50 customers of 200 users (each its own naming context
//! and domain, 16 contexts per slapd), all due on one tick, one replica
//! SIGKILLed while it holds runs. See `roster_tests::scale`; the benchmark
//! (`benches/scale.rs`) runs the same at a larger size.

use std::collections::BTreeMap;
use std::time::Duration;

use roster_tests::scale::{run, ScaleConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d4_three_replicas_one_killed_every_customer_synced_exactly_once() {
    let cfg = ScaleConfig {
        customers: 50,
        users: 200,
        replicas: 3,
        // Few slots, so that the runs spread over the replicas and the
        // killed one holds some.
        concurrency: 2,
        lease_secs: 5,
        kill: true,
        resync: false,
        deadline: Duration::from_secs(240),
    };
    let r = run(&cfg).await;
    eprintln!("{r:#?}");
    // Every customer's run completed exactly once.
    assert_eq!(r.completed_runs, BTreeMap::from([(1, 50)]), "{r:#?}");
    // The killed replica held runs; each is marked interrupted and its
    // customer's run completed by another replica within 2 minutes.
    assert!(!r.killed_runs.is_empty());
    assert!(r.interrupted_killed >= 1, "{r:#?}");
    assert_eq!(
        r.interrupted_killed + r.killed_completed + r.killed_unstarted,
        r.killed_runs.len(),
        "every run the killed replica held is interrupted (or had just completed, or was never started): {r:#?}"
    );
    assert_eq!(
        r.interrupted, r.interrupted_killed,
        "only the killed replica's runs are interrupted"
    );
    assert!(r.recovery_seconds.unwrap() < 120.0, "{r:#?}");
    assert!(r.takeovers >= r.killed_runs.len());
    // No run but those: one start per customer, two for an interrupted one.
    let started: usize = r.started_runs.iter().map(|(k, v)| k * v).sum();
    assert_eq!(started, 50 + r.interrupted);
    // Events per user exactly as a single replica makes (the control
    // customer), every user once, nobody flagged.
    assert_eq!(r.control_events_per_user.len(), 1, "{r:#?}");
    let (per_user, _) = r.control_events_per_user.iter().next().unwrap();
    assert_eq!(r.events_per_user, BTreeMap::from([(*per_user, 50 * 200)]));
    assert_eq!(r.users_total, 50 * 200);
    assert_eq!(r.users_per_customer, BTreeMap::from([(200, 50)]));
    assert_eq!(r.flagged, 0);
    // Every event on the stream once.
    assert_eq!(r.stream_messages, r.log_events as u64, "{r:#?}");
}
