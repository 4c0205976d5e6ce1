//! Benchmark of directory sync (issue 3): the real `roster serve` binary
//! (release build, its own allocator and configuration) against a
//! 100,000-user slapd directory, on PostgreSQL and on SQLite.
//!
//!   cargo bench -p roster-tests --bench sync
//!
//! ROSTER_BENCH_USERS changes the size (default 100000); ROSTER_BENCH_BACKENDS
//! picks back-ends (default "postgres,sqlite").
//!
//! Each phase is timed from Sync Now (POST .../directory/sync) to the moment
//! the run reads as completed (GET .../syncs/{run}): a run completes once
//! the read models show its changes, so this is "projections caught up".
//! Peak memory is the server process's high-water mark (VmHWM), reset
//! before each phase through /proc/<pid>/clear_refs. The split of each run
//! (read, plan, stage, append, project) comes from the server's log.

use std::time::Instant;

use reqwest::{Method, StatusCode};
use roster_testkit::{DirectoryData, PgDb, Slapd, SlapdConfig, Style};
use roster_tests::bench::{head, peak_mib, reset_peak, split_from_log, sync_and_wait};
use roster_tests::process::RosterProcess;
use serde_json::json;

const DOMAIN: &str = "example.org";

struct Phase {
    name: &'static str,
    seconds: f64,
    events: i64,
    peak_mib: u64,
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
    let started = Instant::now();
    let (run, done) = sync_and_wait(api, c).await;
    let seconds = started.elapsed().as_secs_f64();
    let peak_mib = peak_mib(Some(pid));
    let k = &done["run"]["counts"];
    let counts = format!(
        "added {} updated {} flagged {} unchanged {}",
        k["added"], k["updated"], k["flagged"], k["unchanged"]
    );
    let events = head(api, c).await - before;
    Phase {
        name,
        seconds,
        events,
        peak_mib,
        counts,
        split: split_from_log(&p.log_text(), &run),
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
    let base = "dc=example,dc=com";
    let data = DirectoryData::new(Style::InetOrgPerson, base, DOMAIN).users(users);
    let t = Instant::now();
    let mut slapd = Slapd::start(SlapdConfig::inet_org_person().data(data.clone()))
        .await
        .unwrap();
    eprintln!(
        "slapd with {users} users ready in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    for backend in backends.split(',').map(str::trim) {
        let dir = tempfile::tempdir().unwrap();
        let pg = match backend {
            "postgres" => Some(PgDb::create().await.expect("PostgreSQL")),
            "sqlite" => None,
            _ => continue,
        };
        let p = RosterProcess::start_with(
            &dir.path().join("data"),
            pg.as_ref().map(|d| d.url()),
            &[
                ("ROSTER_NO_WORKER", "true"),
                ("RUST_LOG", "info,sqlx=warn"),
                ("ROSTER_LOG_FORMAT", "json"),
            ],
        )
        .await;
        let api = p.admin();
        let c = api.customer("Bench", 1_000_000, &[DOMAIN]).await;
        let (s, v) = api
            .call(
                Method::PUT,
                &format!("/v1/customers/{c}/directory"),
                Some(json!({
                    "kind": "ldap",
                    "host": slapd.host(),
                    "port": slapd.port(),
                    "ssl": false,
                    "bind_user": slapd.root_dn(),
                    "password": slapd.root_password(),
                    "base_dn": base,
                    "preset": "openldap",
                    "enabled": true,
                })),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let initial = phase(&p, &api, &c, "initial sync").await;
        let resync = phase(&p, &api, &c, "resync, no change").await;
        // 1% of the users change a field.
        let admin = slapd.admin().await.unwrap();
        for i in (0..users).step_by(100) {
            admin
                .replace(&data.user(i).dn, "mobile", &[format!("+44 20 {i:08}")])
                .await
                .unwrap();
        }
        let changed = phase(&p, &api, &c, "resync, 1% changed").await;
        for ph in [initial, resync, changed] {
            rows.push(format!(
                "| {backend} | {} | {:.2} | {} | {} | {} | {} |",
                ph.name, ph.seconds, ph.events, ph.peak_mib, ph.counts, ph.split
            ));
        }
        // Put the directory back for the next back-end.
        for i in (0..users).step_by(100) {
            let mobile = data.user(i).mobile.unwrap();
            admin
                .replace(&data.user(i).dn, "mobile", &[mobile])
                .await
                .unwrap();
        }
        p.stop().await;
    }
    println!("| back-end | phase | seconds (to read models caught up) | events appended | server peak RSS (MiB) | counts | split (s) |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    slapd.stop().await;
}
