//! Benchmark of directory sync (issues 3 and 17): the real `roster serve`
//! binary (release build, its own allocator and configuration) against a
//! directory shaped like a real customer's, on PostgreSQL and on SQLite,
//! with the floor of this machine measured in the same run.
//!
//!   cargo bench -p roster-tests --bench sync
//!
//! ROSTER_BENCH_USERS changes the size (default 100000); ROSTER_BENCH_BACKENDS
//! picks back-ends (default "postgres,sqlite"); ROSTER_BENCH_RUST_LOG sets
//! the server's log filter and ROSTER_BENCH_LOG_DIR a folder to keep each
//! server's log in (`server-<back-end>-<reads>.log`); ROSTER_BENCH_READS
//! picks the series (default "full,delta"): "full" reads with the Active
//! Directory preset as configured (this slapd offers no `uSNChanged`, so
//! every read is a full one), "delta" the same entries with `entryUUID` as
//! the id, so that resyncs use content synchronisation (RFC 4533, B1)
//! against the slapd's syncprov overlay.
//!
//! Each series: the initial sync, a resync with no change, a second one
//! (the steady state of a scheduled sync: the previous run changed
//! nothing, so its plan is reused), and a resync after 1% of the users
//! changed department.
//!
//! The directory is an AD-like slapd with Active Directory's 1,000-entry
//! page cap, read as an ordinary account: every user with a primary
//! `SMTP:` address, every 5th with an alias in a second managed domain,
//! every 7th with an `X500:` address, phones, company, department and
//! notes, names with accents; 34 groups of 10 and a 1,600-member
//! distribution list (`DirectoryData::customer_shape`).
//!
//! Each phase is timed from Sync Now (POST .../directory/sync) to the moment
//! the run reads as completed (GET .../syncs/{run}): a run completes once
//! the read models show its changes, so this is "projections caught up".
//! Peak memory is the server process's high-water mark (VmHWM), reset
//! before each phase through /proc/<pid>/clear_refs. The CPU time each
//! phase cost the server, every PostgreSQL process and slapd (from
//! /proc/<pid>/stat; on a quiet machine) is printed in core-seconds: on
//! two cores a phase cannot take less than half their sum. The split of each run
//! (read, plan, stage, append, project) comes from the server's log.
//!
//! ROSTER_BENCH_NEIGHBOUR=1 runs the initial sync with a neighbour: another
//! customer of the same server adds users through the API, one at a time
//! with 50 ms between them, from Sync Now until the run completes; each
//! addition's time (request to `201 Created`, which the API answers once
//! the read models show the user) is printed as a distribution. The other
//! phases follow as usual; compare the initial sync with a run without it.
//!
//! The floors, measured beside it: a paged `ldapsearch` of the same
//! entries and attributes as the same account (what reading the directory
//! costs at the least), and on PostgreSQL a `COPY` of the initial sync's
//! own events into a copy of the log table with its indexes (what storing
//! them costs at the least).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use roster_testkit::{DirectoryData, Slapd, SlapdConfig, Style};
use roster_tests::bench::{
    bench_server, cpu_seconds, head, peak_mib, reset_peak, run_log, settled_head, split_from_log,
    sync_and_wait, BenchServer,
};
use roster_tests::process::RosterProcess;
use serde_json::json;

const DOMAIN: &str = "example.org";
const ALIAS_DOMAIN: &str = "example.net";
const BASE: &str = "dc=example,dc=com";
/// What the Active Directory preset reads (services/directory's schema).
const FILTER: &str =
    "(|(&(objectClass=user)(userAccountControl:1.2.840.113556.1.4.803:=512))(objectClass=group))";
const ATTRS: [&str; 15] = [
    "objectGUID",
    "mail",
    "proxyAddresses",
    "displayName",
    "cn",
    "givenName",
    "sn",
    "homePhone",
    "mobile",
    "company",
    "department",
    "info",
    "member",
    "userAccountControl",
    "objectClass",
];

struct Phase {
    name: &'static str,
    seconds: f64,
    events: i64,
    peak_mib: u64,
    /// Core-seconds of the server, the database and the directory.
    cpu: String,
    counts: String,
    split: String,
}

async fn phase(
    p: &RosterProcess,
    api: &roster_tests::process::Api,
    c: &str,
    name: &'static str,
) -> Phase {
    let pid = p.pid().expect("server pid");
    let before = head(api, c).await;
    reset_peak(Some(pid));
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let (run, done) = sync_and_wait(api, c).await;
    let seconds = started.elapsed().as_secs_f64();
    let peak_mib = peak_mib(Some(pid));
    let cpu = cpu_seconds(pid).since(&cpu_before).summary();
    let k = &done["run"]["counts"];
    let counts = format!(
        "added {} updated {} flagged {} unchanged {}",
        k["added"], k["updated"], k["flagged"], k["unchanged"]
    );
    let events = settled_head(api, c).await - before;
    Phase {
        name,
        seconds,
        events,
        peak_mib,
        cpu,
        counts,
        split: split_from_log(&run_log(p, &run).await, &run),
    }
}

/// Another customer's manual additions, one at a time with 50 ms between
/// them, until `stop`: the seconds each took to its `201 Created`.
fn neighbour_adds(
    api: roster_tests::process::Api,
    customer: String,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Vec<f64>>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut times = Vec::new();
        let path = format!("/v1/customers/{customer}/users");
        for i in 0.. {
            if *stopped.borrow() {
                break;
            }
            let body = json!({"address": format!("n{i}@neighbour.example"), "first_name": "Nei"});
            let t = Instant::now();
            let (s, v) = api.post(&path, body).await;
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(s, StatusCode::CREATED, "{v}");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stopped.changed() => {}
            }
        }
        times
    });
    (stop, task)
}

/// "n additions: median, 99th percentile, slowest; how many over a second".
fn distribution(mut times: Vec<f64>) -> String {
    if times.is_empty() {
        return "none".into();
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    format!(
        "{} additions, median {:.3} s, 99th percentile {:.3} s, slowest {:.3} s, {} over 1 s",
        times.len(),
        at(0.5),
        at(0.99),
        times[times.len() - 1],
        times.iter().filter(|t| **t > 1.0).count()
    )
}

/// The floor of a read: a paged `ldapsearch` (1,000 a page) of the entries
/// and attributes the sync reads, as the same account, output discarded.
/// The best of two.
fn ldapsearch_floor(slapd: &Slapd) -> (f64, usize) {
    let mut best = f64::MAX;
    let mut entries = 0;
    for _ in 0..2 {
        let t = Instant::now();
        let out = std::process::Command::new("ldapsearch")
            .args(["-LLL", "-x", "-o", "ldif-wrap=no", "-H", &slapd.url(), "-D"])
            .arg(slapd.reader_dn())
            .args(["-w", slapd.reader_password(), "-b", BASE])
            .args(["-E", "pr=1000/noprompt", FILTER])
            .args(ATTRS)
            .output()
            .expect("ldapsearch (apt-get install ldap-utils)");
        best = best.min(t.elapsed().as_secs_f64());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        entries = out.stdout.windows(4).filter(|w| w == b"\ndn:").count() + 1;
    }
    (best, entries)
}

/// The floor of an append on PostgreSQL: the events of the initial sync
/// copied (`COPY ... FROM STDIN`, binary) into a table like the log, with
/// its indexes, in one transaction. The best of two.
async fn copy_floor(url: &str) -> (f64, u64) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.expect("PostgreSQL");
    let mut data = Vec::new();
    {
        let mut out = c
            .copy_out_raw("COPY events TO STDOUT (FORMAT binary)")
            .await
            .unwrap();
        use futures::StreamExt;
        while let Some(chunk) = out.next().await {
            data.extend_from_slice(&chunk.unwrap());
        }
    }
    let mut best = f64::MAX;
    let mut rows = 0;
    for _ in 0..2 {
        sqlx::query("DROP TABLE IF EXISTS bench_copy_floor")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE bench_copy_floor (LIKE events INCLUDING ALL)")
            .execute(&mut c)
            .await
            .unwrap();
        let t = Instant::now();
        let mut tx = c.begin().await.unwrap();
        let mut copy = tx
            .copy_in_raw("COPY bench_copy_floor FROM STDIN (FORMAT binary)")
            .await
            .unwrap();
        for chunk in data.chunks(1 << 20) {
            copy.send(chunk).await.unwrap();
        }
        rows = copy.finish().await.unwrap();
        tx.commit().await.unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    sqlx::query("DROP TABLE bench_copy_floor")
        .execute(&mut c)
        .await
        .unwrap();
    (best, rows)
}

/// Waits until PostgreSQL's maintenance of the initial sync's bulk is
/// done: the projector vacuums and analyses the tables a bulk wrote, in
/// the background, and on two cores that vacuum overlaps (and slows) the
/// first resync. A resync an operator schedules hours later never meets
/// it, so the bench waits until no `VACUUM` (the projector's or
/// autovacuum's) has run for two seconds
/// (five minutes at most) and reports how long that took. Returns the
/// seconds waited and whether a vacuum was seen.
async fn maintenance_settled(url: &str) -> (f64, bool) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.expect("PostgreSQL");
    let t = Instant::now();
    let mut last_seen: Option<Instant> = None;
    loop {
        let (running,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND state = 'active' \
             AND (query ILIKE 'VACUUM%' OR backend_type = 'autovacuum worker')",
        )
        .fetch_one(&mut c)
        .await
        .expect("pg_stat_activity");
        let now = Instant::now();
        if running > 0 {
            last_seen = Some(now);
        }
        let quiet_since = last_seen.unwrap_or(t);
        if now.duration_since(quiet_since) >= Duration::from_secs(2)
            || t.elapsed() >= Duration::from_secs(300)
        {
            return (
                last_seen.map_or(0.0, |l| l.duration_since(t).as_secs_f64()),
                last_seen.is_some(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let users: usize = std::env::var("ROSTER_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let backends =
        std::env::var("ROSTER_BENCH_BACKENDS").unwrap_or_else(|_| "postgres,sqlite".into());
    let data = DirectoryData::new(Style::AdLike, BASE, DOMAIN)
        .customer_shape(ALIAS_DOMAIN)
        .users(users)
        .groups(35, 10)
        .large_list(1_600);
    // ROSTER_BENCH_RUST_LOG: the server's log filter, for example
    // "info,sqlx=warn,roster_projections=debug,roster_store=debug" for the
    // time each projection and each bulk append takes.
    let log_filter =
        std::env::var("ROSTER_BENCH_RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn".into());
    let t = Instant::now();
    // syncprov with a session log (deletions reported, not a present
    // phase) serves the delta series; the full series does not use it.
    let mut slapd = Slapd::start(
        SlapdConfig::ad_like()
            .page_cap(true)
            .syncprov(Some(20_000))
            .data(data.clone()),
    )
    .await
    .unwrap();
    eprintln!(
        "slapd with {users} users ready in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (read_floor, entries) = ldapsearch_floor(&slapd);
    eprintln!("floor: ldapsearch of {entries} entries in {read_floor:.2} s");
    let mut rows = Vec::new();
    let mut floors = vec![format!(
        "paged ldapsearch of the same {entries} entries: {read_floor:.2} s"
    )];
    // ROSTER_BENCH_READS: "full" (the AD preset as is: the AD-like slapd
    // offers no uSNChanged, so every read is a full one), "delta" (the
    // same entries with entryUUID as the id, so content synchronisation
    // applies: B1), or both (the default).
    let reads = std::env::var("ROSTER_BENCH_READS").unwrap_or_else(|_| "full,delta".into());
    let admin = slapd.admin().await.unwrap();
    for backend in backends.split(',').map(str::trim) {
        for read in reads.split(',').map(str::trim) {
            let delta = match read {
                "full" => false,
                "delta" => true,
                _ => continue,
            };
            let Some(server) = bench_server(backend, &log_filter).await else {
                continue;
            };
            let BenchServer { process: p, pg, .. } = server;
            let api = p.admin();
            let c = api
                .customer("Bench", 10_000_000, &[DOMAIN, ALIAS_DOMAIN])
                .await;
            let mut settings = json!({
                "kind": "ldap",
                "host": slapd.host(),
                "port": slapd.port(),
                "ssl": false,
                "bind_user": slapd.reader_dn(),
                "password": slapd.reader_password(),
                "base_dn": BASE,
                "preset": "active_directory",
                "timeout_secs": 120,
                "enabled": true,
            });
            if delta {
                // Content synchronisation names entries by entryUUID.
                settings["attributes"] = json!({"id": "entryUUID"});
            }
            let (s, v) = api
                .call(
                    Method::PUT,
                    &format!("/v1/customers/{c}/directory"),
                    Some(settings),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let neighbour = std::env::var("ROSTER_BENCH_NEIGHBOUR").is_ok_and(|v| v == "1");
            let initial = if neighbour {
                let n = api
                    .customer("Neighbour", 10_000_000, &["neighbour.example"])
                    .await;
                let (stop, adds) = neighbour_adds(api.clone(), n);
                let initial = phase(&p, &api, &c, "initial sync, a neighbour adding").await;
                let _ = stop.send(true);
                let times = adds.await.unwrap();
                floors.push(format!(
                    "{backend} ({read}): the neighbour's additions during the initial sync: {}",
                    distribution(times)
                ));
                initial
            } else {
                phase(&p, &api, &c, "initial sync").await
            };
            let mut store_floor = None;
            if let (Some(pg), false) = (&pg, delta) {
                let (secs, n) = copy_floor(pg.url()).await;
                floors.push(format!(
                    "{backend}: COPY of the initial sync's {n} events into a copy of the log table: {secs:.2} s"
                ));
                store_floor = Some(secs);
            }
            if let Some(pg) = &pg {
                let (waited, seen) = maintenance_settled(pg.url()).await;
                floors.push(format!(
                    "{backend} ({read}): the initial sync's background VACUUM (ANALYZE) {}",
                    if seen {
                        format!("ran for {waited:.2} s after the run completed; the resyncs started after it")
                    } else {
                        "was not seen running before the resyncs".to_string()
                    }
                ));
            }
            let resync = phase(&p, &api, &c, "resync, no change").await;
            // A scheduled sync's steady state: nothing changed since a run
            // that changed nothing (its plan is reused).
            let again = phase(&p, &api, &c, "resync, no change again").await;
            // 1% of the users change department.
            for i in (0..users).step_by(100) {
                admin
                    .replace(&data.user(i).dn, "department", &[format!("Dept {i}")])
                    .await
                    .unwrap();
            }
            let changed = phase(&p, &api, &c, "resync, 1% changed").await;
            for ph in [initial, resync, again, changed] {
                let floor = read_floor
                    + if ph.name.starts_with("initial sync") {
                        store_floor.unwrap_or(0.0)
                    } else {
                        0.0
                    };
                rows.push(format!(
                    "| {backend} | {read} | {} | {:.2} | {floor:.2} | {:.1}x | {} | {} | {} | {} | {} |",
                    ph.name,
                    ph.seconds,
                    ph.seconds / floor,
                    ph.events,
                    ph.peak_mib,
                    ph.cpu,
                    ph.counts,
                    ph.split
                ));
            }
            // Put the directory back for the next series.
            for i in (0..users).step_by(100) {
                let d = data.user(i).department.unwrap();
                admin
                    .replace(&data.user(i).dn, "department", &[d])
                    .await
                    .unwrap();
            }
            if let Ok(dir) = std::env::var("ROSTER_BENCH_LOG_DIR") {
                std::fs::write(format!("{dir}/server-{backend}-{read}.log"), p.log_text()).unwrap();
            }
            p.stop().await;
        }
    }
    println!("Floors: {}.", floors.join("; "));
    println!();
    println!("| back-end | reads | phase | seconds (to read models caught up) | floor (s) | ratio | events appended | server peak RSS (MiB) | CPU core-seconds | counts | split (s) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    slapd.stop().await;
}
