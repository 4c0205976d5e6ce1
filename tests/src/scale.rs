//! Scale-out (issue 18), shared by the CI test (`tests/tests/scale.rs`) and
//! the benchmark (`tests/benches/scale.rs`): several `roster serve`
//! replicas on one PostgreSQL and one NATS JetStream, many customers each
//! with its own naming context (16 per slapd) and domain, all due on one
//! tick, and one replica SIGKILLed while it holds runs.
//!
//! A control customer, synced alone by a single replica before the others
//! start, gives the events per user a single replica makes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use roster_testkit::{
    DirectoryData, NatsServer, PgDb, Slapd, SlapdConfig, Style, MAX_NAMING_CONTEXTS,
};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::bench::peak_mib;
use crate::process::{Api, RosterProcess};

#[derive(Debug, Clone)]
pub struct ScaleConfig {
    pub customers: usize,
    pub users: usize,
    pub replicas: usize,
    /// `ROSTER_SYNC_CONCURRENCY` of each replica.
    pub concurrency: usize,
    /// `ROSTER_SYNC_LEASE_SECS`.
    pub lease_secs: u64,
    /// SIGKILL one replica while it holds runs.
    pub kill: bool,
    /// After the first runs, Sync Now every customer again (nothing changed).
    pub resync: bool,
    /// How long every run may take to complete.
    pub deadline: Duration,
}

/// What a scale run measured.
#[derive(Debug, Default)]
pub struct ScaleReport {
    pub load_seconds: f64,
    /// From the replicas' start until every customer's run completed.
    pub complete_seconds: f64,
    /// Completed runs per customer: how many customers had each count.
    pub completed_runs: BTreeMap<usize, usize>,
    /// Started runs per customer: how many customers had each count.
    pub started_runs: BTreeMap<usize, usize>,
    /// The runs the killed replica held when it was killed.
    pub killed_runs: BTreeSet<String>,
    /// Of those, the ones the log shows `interrupted`.
    pub interrupted_killed: usize,
    /// Of those, the ones that completed after all (between the look and
    /// the kill).
    pub killed_completed: usize,
    /// Of those, the ones it was still claiming (never started).
    pub killed_unstarted: usize,
    /// All runs marked interrupted.
    pub interrupted: usize,
    /// From the kill until every customer's run completed.
    pub recovery_seconds: Option<f64>,
    /// From the kill until each customer whose run was marked interrupted
    /// had a completed run (seconds, the slowest).
    pub interrupted_completed_seconds: Option<f64>,
    /// Events per user of the scaled customers: how many users had each.
    pub events_per_user: BTreeMap<i64, usize>,
    /// Events per user of the control customer (one replica, alone).
    pub control_events_per_user: BTreeMap<i64, usize>,
    pub users_total: usize,
    /// Users of each scaled customer: how many customers had each count.
    pub users_per_customer: BTreeMap<usize, usize>,
    /// Flags for deletion raised (none should be: nobody left).
    pub flagged: i64,
    /// Events in the log and messages on the stream.
    pub log_events: i64,
    pub stream_messages: u64,
    /// Peak RSS per replica (MiB); the killed one as of its kill.
    pub peak_mib: Vec<u64>,
    /// Sync Now for every customer again, nothing changed: seconds.
    pub resync_seconds: Option<f64>,
    /// Lease takeovers the replicas' logs report.
    pub takeovers: usize,
}

/// Writes every customer's directory (and the control customer's) as an
/// LDIF file of its own, for its own naming context; returns the suffixes
/// and files.
fn write_ldif(cfg: &ScaleConfig, dir: &std::path::Path) -> Vec<(String, std::path::PathBuf)> {
    use std::io::Write;
    (0..=cfg.customers)
        .map(|i| {
            let path = dir.join(format!("c{i:04}.ldif"));
            let mut w = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            data(cfg, i).write_ldif(&mut w).unwrap();
            w.flush().unwrap();
            (customer_base(i), path)
        })
        .collect()
}

/// Each customer's directory is a naming context of its own, as each real
/// customer has its own directory server: under one shared suffix, slapd
/// walks every customer's entries for each customer's search (a 1,000-user
/// OU search took 0.23-0.5 s in a 200,000-entry DIT, against the whole
/// search's 1,000 entries), which measured slapd, not Roster.
fn customer_base(i: usize) -> String {
    format!("o=c{i:04}")
}

pub fn customer_domain(i: usize) -> String {
    format!("c{i:04}.example.org")
}

fn data(cfg: &ScaleConfig, i: usize) -> DirectoryData {
    DirectoryData::new(Style::InetOrgPerson, &customer_base(i), &customer_domain(i))
        .users(cfg.users)
        .seed(i as u64 + 1)
}

async fn put_directory(api: &Api, slapd: &Slapd, c: &str, i: usize) {
    let (s, v) = api
        .call(
            Method::PUT,
            &format!("/v1/customers/{c}/directory"),
            Some(crate::e2e::ldap_settings(slapd, &customer_base(i))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

fn replica(
    dir: &std::path::Path,
    n: usize,
    pg: &PgDb,
    nats: &NatsServer,
    cfg: &ScaleConfig,
    worker: bool,
) -> RosterProcess {
    let concurrency = cfg.concurrency.to_string();
    let lease = cfg.lease_secs.to_string();
    let nats_url = nats.url();
    let mut env = vec![
        ("NATS_URL", nats_url.as_str()),
        ("ROSTER_SYNC_CONCURRENCY", concurrency.as_str()),
        ("ROSTER_SYNC_LEASE_SECS", lease.as_str()),
        ("ROSTER_LOG_FORMAT", "json"),
        ("RUST_LOG", "info,sqlx=warn"),
    ];
    if worker {
        env.push(("ROSTER_WORKER_TICK_SECS", "1"));
    } else {
        env.push(("ROSTER_NO_WORKER", "true"));
    }
    RosterProcess::spawn_with(&dir.join(format!("replica-{n}")), Some(pg.url()), &env)
}

/// Per customer id: (started, completed, interrupted) runs, from the log.
async fn runs(pool: &PgPool) -> BTreeMap<String, (usize, usize, usize)> {
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT aggregate_id, event_type, payload->'SyncFailed'->>'code' FROM events
         WHERE aggregate_type = $1 AND event_type IN ('SyncStarted', 'SyncCompleted', 'SyncFailed')",
    )
    .bind(roster_events::DIRECTORY_AGGREGATE)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for (c, t, code) in rows {
        let e = out.entry(c).or_default();
        match t.as_str() {
            "SyncStarted" => e.0 += 1,
            "SyncCompleted" => e.1 += 1,
            _ if code.as_deref() == Some("interrupted") => e.2 += 1,
            _ => {}
        }
    }
    out
}

/// The run ids the log shows ended so: `SyncCompleted`, or `SyncFailed`
/// as interrupted.
async fn runs_ended(pool: &PgPool, event_type: &str) -> BTreeSet<String> {
    let rows: Vec<(Option<String>,)> = sqlx::query_as(
        "SELECT payload->event_type->>'run_id' FROM events
         WHERE aggregate_type = $1 AND event_type = $2
         AND ($2 <> 'SyncFailed' OR payload->'SyncFailed'->>'code' = 'interrupted')",
    )
    .bind(roster_events::DIRECTORY_AGGREGATE)
    .bind(event_type)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().filter_map(|r| r.0).collect()
}

fn histogram<K: Ord>(values: impl IntoIterator<Item = K>) -> BTreeMap<K, usize> {
    let mut h = BTreeMap::new();
    for v in values {
        *h.entry(v).or_insert(0) += 1;
    }
    h
}

async fn events_per_user(pool: &PgPool, customers: &[String]) -> (BTreeMap<i64, usize>, usize) {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, count(*) FROM events WHERE aggregate_type = $1
         AND customer_id = ANY($2) GROUP BY aggregate_id",
    )
    .bind(roster_events::USER_AGGREGATE)
    .bind(customers)
    .fetch_all(pool)
    .await
    .unwrap();
    let n = rows.len();
    (histogram(rows.into_iter().map(|r| r.1)), n)
}

/// The last lines of each live replica's log.
fn log_tails(replicas: &[Option<RosterProcess>]) -> String {
    let mut out = String::new();
    for (n, p) in replicas.iter().enumerate() {
        if let Some(p) = p {
            let log = p.log_text();
            let lines: Vec<&str> = log.lines().collect();
            out.push_str(&format!(
                "--- replica {n}:\n{}\n",
                lines[lines.len().saturating_sub(15)..].join("\n")
            ));
        }
    }
    out
}

/// Runs the scenario and measures it; the caller asserts.
pub async fn run(cfg: &ScaleConfig) -> ScaleReport {
    let mut report = ScaleReport::default();
    let t = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let contexts = write_ldif(cfg, tmp.path());
    let total = contexts.len();
    // Customer i's directory is in slapds[i / MAX_NAMING_CONTEXTS].
    let mut slapds = Vec::new();
    for group in contexts.chunks(MAX_NAMING_CONTEXTS) {
        let config = group
            .iter()
            .fold(SlapdConfig::inet_org_person(), |c, (suffix, path)| {
                c.naming_context(suffix, path)
            });
        slapds.push(Slapd::start(config).await.expect("slapd"));
    }
    let pg = PgDb::create().await.expect("PostgreSQL");
    let nats = NatsServer::start().await.expect("nats-server");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(pg.url())
        .await
        .unwrap();
    report.load_seconds = t.elapsed().as_secs_f64();
    eprintln!(
        "{} slapds with {total} customers loaded in {:.1} s",
        slapds.len(),
        report.load_seconds
    );

    // One replica without a worker configures every customer (all due at
    // once from then on) and syncs the control customer alone.
    let setup = replica(tmp.path(), 99, &pg, &nats, cfg, false);
    setup.wait_ready().await;
    let api = setup.admin();
    let mut ids = Vec::new();
    for i in 0..total {
        let c = api
            .customer(&format!("Scale {i}"), 1_000_000, &[&customer_domain(i)])
            .await;
        put_directory(&api, &slapds[i / MAX_NAMING_CONTEXTS], &c, i).await;
        ids.push(c);
    }
    let control = ids.pop().unwrap();
    crate::bench::sync_and_wait(&api, &control).await;
    // Only the first replica's bootstrap token became a token.
    let token = setup.bootstrap_token.clone();
    setup.stop().await;
    eprintln!("{} customers configured", ids.len());

    let t0 = Instant::now();
    // Started together, so that no replica has the tick to itself; they
    // take runs before they are ready (their projections catch up).
    let mut replicas: Vec<Option<RosterProcess>> = (0..cfg.replicas)
        .map(|n| Some(replica(tmp.path(), n, &pg, &nats, cfg, true)))
        .collect();
    let mut peaks = vec![0; cfg.replicas];
    let mut killed_at = None;
    if cfg.kill {
        // A replica that holds runs: its pid is in its leases' holder.
        let deadline = Instant::now() + Duration::from_secs(120);
        'kill: loop {
            // Runs started and not ended, by holder.
            let holders: Vec<(String, String)> = sqlx::query_as(
                "SELECT l.holder, l.run_id FROM sync_leases l
                 WHERE EXISTS (SELECT 1 FROM events e WHERE e.aggregate_type = $1
                   AND e.event_type = 'SyncStarted'
                   AND e.payload->'SyncStarted'->>'run_id' = l.run_id)
                 AND NOT EXISTS (SELECT 1 FROM events e WHERE e.aggregate_type = $1
                   AND e.event_type IN ('SyncCompleted', 'SyncFailed', 'SyncHeld')
                   AND e.payload->e.event_type->>'run_id' = l.run_id)",
            )
            .bind(roster_events::DIRECTORY_AGGREGATE)
            .fetch_all(&pool)
            .await
            .unwrap();
            for (n, r) in replicas.iter_mut().enumerate().rev() {
                let p = r.as_ref().unwrap();
                let pid = p.pid().unwrap();
                let held: BTreeSet<String> = holders
                    .iter()
                    .filter(|(h, _)| h.split('/').nth(1) == Some(&pid.to_string()))
                    .map(|(_, run)| run.clone())
                    .collect();
                if !held.is_empty() {
                    peaks[n] = peak_mib(Some(pid));
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                    killed_at = Some((Instant::now(), chrono::Utc::now()));
                    // Every lease it held when it died (a run may have
                    // started since the look, or been mid-claim).
                    let all: Vec<(String,)> = sqlx::query_as(
                        "SELECT run_id FROM sync_leases WHERE split_part(holder, '/', 2) = $1",
                    )
                    .bind(pid.to_string())
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                    let held: BTreeSet<String> = held
                        .into_iter()
                        .chain(all.into_iter().map(|r| r.0))
                        .collect();
                    eprintln!(
                        "replica {n} killed at {:.1} s holding {} runs",
                        t0.elapsed().as_secs_f64(),
                        held.len()
                    );
                    report.killed_runs = held;
                    *r = None;
                    break 'kill;
                }
            }
            if Instant::now() >= deadline {
                let leases: Vec<(String, String)> =
                    sqlx::query_as("SELECT holder, run_id FROM sync_leases")
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                panic!(
                    "no replica ever held a run in progress; leases {leases:?}, runs {:?}\n{}",
                    runs(&pool).await,
                    log_tails(&replicas)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    for p in replicas.iter().flatten() {
        p.wait_ready().await;
    }

    // Every customer's run completed.
    let deadline = Instant::now() + cfg.deadline;
    loop {
        let r = runs(&pool).await;
        let done = ids
            .iter()
            .filter(|c| r.get(*c).is_some_and(|x| x.1 >= 1))
            .count();
        if done == ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} customers completed within {:?}\n{}",
            ids.len(),
            cfg.deadline,
            log_tails(&replicas)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.complete_seconds = t0.elapsed().as_secs_f64();
    report.recovery_seconds = killed_at.map(|(k, _)| k.elapsed().as_secs_f64());
    eprintln!("every run completed at {:.1} s", report.complete_seconds);
    // Let any run that should not happen show itself.
    tokio::time::sleep(Duration::from_secs(cfg.lease_secs + 3)).await;
    let r = runs(&pool).await;
    report.completed_runs = histogram(ids.iter().map(|c| r.get(c).map_or(0, |x| x.1)));
    report.started_runs = histogram(ids.iter().map(|c| r.get(c).map_or(0, |x| x.0)));
    let interrupted = runs_ended(&pool, "SyncFailed").await;
    report.interrupted = interrupted.len();
    if let Some((_, killed_wall)) = killed_at {
        // The last completion of each customer whose run was interrupted.
        let done: Option<i64> = sqlx::query_scalar(
            "SELECT max(c.recorded_at) FROM events f
             JOIN events c ON c.customer_id = f.customer_id AND c.aggregate_type = $1
               AND c.event_type = 'SyncCompleted'
             WHERE f.aggregate_type = $1 AND f.event_type = 'SyncFailed'
               AND f.payload->'SyncFailed'->>'code' = 'interrupted'",
        )
        .bind(roster_events::DIRECTORY_AGGREGATE)
        .fetch_one(&pool)
        .await
        .unwrap();
        report.interrupted_completed_seconds =
            done.map(|d| (d - killed_wall.timestamp_micros()) as f64 / 1e6);
    }
    report.interrupted_killed = report
        .killed_runs
        .iter()
        .filter(|r| interrupted.contains(*r))
        .count();
    let started = runs_ended(&pool, "SyncStarted").await;
    report.killed_unstarted = report
        .killed_runs
        .iter()
        .filter(|r| !started.contains(*r))
        .count();
    let completed = runs_ended(&pool, "SyncCompleted").await;
    report.killed_completed = report
        .killed_runs
        .iter()
        .filter(|r| completed.contains(*r))
        .count();

    let (h, n) = events_per_user(&pool, &ids).await;
    report.events_per_user = h;
    report.users_total = n;
    report.control_events_per_user = events_per_user(&pool, std::slice::from_ref(&control))
        .await
        .0;
    let per_customer: Vec<(String, i64)> = sqlx::query_as(
        "SELECT customer_id, count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = $1
         AND customer_id = ANY($2) GROUP BY customer_id",
    )
    .bind(roster_events::USER_AGGREGATE)
    .bind(&ids)
    .fetch_all(&pool)
    .await
    .unwrap();
    report.users_per_customer = histogram(per_customer.into_iter().map(|r| r.1 as usize));
    report.flagged = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = $1 AND event_type = 'FlaggedForDeletion'",
    )
    .bind(roster_events::USER_AGGREGATE)
    .fetch_one(&pool)
    .await
    .unwrap();

    if cfg.resync {
        let t = Instant::now();
        // Through the live replicas in turn, as the Service in front of
        // them spreads requests: a Sync Now runs on the replica it reaches.
        let live: Vec<Api> = replicas.iter().flatten().map(|p| p.api(&token)).collect();
        let mut tasks = Vec::new();
        for (n, chunk) in ids.chunks(ids.len().div_ceil(16).max(1)).enumerate() {
            let api = live[n % live.len()].clone();
            let chunk = chunk.to_vec();
            tasks.push(tokio::spawn(async move {
                for c in chunk {
                    crate::bench::sync_and_wait(&api, &c).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        report.resync_seconds = Some(t.elapsed().as_secs_f64());
    }

    // Every event on the stream once: the relay caught up with the log.
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        report.log_events = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap();
        report.stream_messages = match js.get_stream("ROSTER_EVENTS").await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        };
        if report.stream_messages >= report.log_events as u64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for (n, r) in replicas.into_iter().enumerate() {
        if let Some(p) = r {
            peaks[n] = peak_mib(p.pid());
            report.takeovers += p
                .log_text()
                .lines()
                .filter(|l| l.contains("took over an expired run lease"))
                .count();
            p.stop().await;
        }
    }
    report.peak_mib = peaks;
    for mut slapd in slapds {
        slapd.stop().await;
    }
    report
}
