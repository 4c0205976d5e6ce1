//! Benchmark of Entra ID sync (issue 4, B1): the real `roster serve` binary
//! (release build) reading a 100,000-user tenant served by the Graph
//! emulator, on PostgreSQL and on SQLite.
//!
//!   cargo bench -p roster-tests --bench entra
//!
//! ROSTER_BENCH_USERS changes the size (default 100000); ROSTER_BENCH_BACKENDS
//! picks back-ends (default "postgres,sqlite"); ROSTER_BENCH_GRAPH_LATENCY_MS
//! adds that latency to every emulated request (default 0: the emulator
//! answers at once, which flatters full reads; Graph takes tens to hundreds
//! of milliseconds a page).
//!
//! Phases: the initial sync (a full read), a no-change resync by delta (the
//! default after a full read), a delta resync after 1% of the users
//! changed, and a no-change resync as a full read (`full_sync_hours: 0`).
//! Each phase is timed from Sync Now to the run reading as completed (a run
//! completes once the read models show its changes). Peak memory is the
//! server process's high-water mark (VmHWM), reset before each phase; the
//! emulator lives in the bench process, not in the server's.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use roster_graph_emulator::{GenerateUsers, GraphEmulator, Group, TenantFixture};
use roster_tests::bench::{
    bench_server, head, peak_mib, reset_peak, run_log, settled_head, split_from_log, sync_and_wait,
    BenchServer,
};
use roster_tests::process::{Api, RosterProcess};
use serde_json::{json, Value};

const GROUPS: usize = 200;
const MEMBERS: usize = 50;

struct Phase {
    name: &'static str,
    seconds: f64,
    events: i64,
    peak_mib: u64,
    graph_requests: usize,
    counts: String,
    split: String,
}

async fn phase(
    p: &RosterProcess,
    api: &Api,
    emu: &GraphEmulator,
    c: &str,
    name: &'static str,
) -> Phase {
    let pid = p.pid().expect("server pid");
    let before = head(api, c).await;
    emu.clear_requests();
    reset_peak(Some(pid));
    let started = Instant::now();
    let (run, done) = sync_and_wait(api, c).await;
    let seconds = started.elapsed().as_secs_f64();
    let peak_mib = peak_mib(Some(pid));
    let k = &done["run"]["counts"];
    let counts = format!(
        "read {} added {} updated {} flagged {} unchanged {}",
        k["read"], k["added"], k["updated"], k["flagged"], k["unchanged"]
    );
    Phase {
        name,
        seconds,
        events: settled_head(api, c).await - before,
        peak_mib,
        graph_requests: emu.graph_requests().len(),
        counts,
        split: split_from_log(&run_log(p, &run).await, &run),
    }
}

fn settings(emu: &GraphEmulator, fx: &TenantFixture, full_sync_hours: Option<u32>) -> Value {
    let mut v = json!({
        "kind": "entra",
        "tenant": fx.tenant_id,
        "client_id": fx.client_id,
        "client_secret": fx.client_secret,
        "login_endpoint": emu.login_base(),
        "graph_endpoint": emu.graph_base(),
        "enabled": true,
    });
    if let Some(h) = full_sync_hours {
        v["full_sync_hours"] = json!(h);
    }
    v
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
    let latency_ms: u64 = std::env::var("ROSTER_BENCH_GRAPH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let t = Instant::now();
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("benchcorp");
    let ids = fx.tenant.generate_users(GenerateUsers {
        alias_domain: Some(fx.domain.clone()),
        ..GenerateUsers::new(users, &fx.domain)
    });
    for g in 0..GROUPS {
        let id = fx.tenant.add_group(Group::distribution(
            &format!("List {g}"),
            &format!("list{g:04}@{}", fx.domain),
        ));
        let members: Vec<&str> = ids
            .iter()
            .skip(g * MEMBERS % users.max(1))
            .take(MEMBERS)
            .map(String::as_str)
            .collect();
        fx.tenant.set_group_members(&id, &members);
    }
    emu.set_latency(Duration::from_millis(latency_ms));
    eprintln!(
        "emulated tenant with {users} users and {GROUPS} lists ready in {:.1} s; Graph latency {latency_ms} ms",
        t.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    for backend in backends.split(',').map(str::trim) {
        let Some(server) = bench_server(backend, "info,sqlx=warn").await else {
            continue;
        };
        let BenchServer { process: p, .. } = server;
        let api = p.admin();
        let c = api.customer("Bench", 1_000_000, &[&fx.domain]).await;
        let put = |body: Value| {
            let api = &api;
            let c = &c;
            async move {
                let (s, v) = api
                    .call(
                        Method::PUT,
                        &format!("/v1/customers/{c}/directory"),
                        Some(body),
                    )
                    .await;
                assert_eq!(s, StatusCode::OK, "{v}");
            }
        };
        put(settings(&emu, &fx, None)).await;
        let initial = phase(&p, &api, &emu, &c, "initial sync (full read)").await;
        let delta = phase(&p, &api, &emu, &c, "resync, no change (delta)").await;
        // 1% of the users change a field.
        let changed_ids: Vec<(&String, Option<String>)> = ids
            .iter()
            .step_by(100)
            .map(|id| (id, fx.tenant.user(id).and_then(|u| u.mobile_phone)))
            .collect();
        for (k, (id, _)) in changed_ids.iter().enumerate() {
            fx.tenant
                .update_user(id, |u| u.mobile_phone = Some(format!("+44 20 {k:08}")));
        }
        let changed = phase(&p, &api, &emu, &c, "resync, 1% changed (delta)").await;
        // Every run a full read from now on.
        put(settings(&emu, &fx, Some(0))).await;
        let full = phase(&p, &api, &emu, &c, "resync, no change (full read)").await;
        for ph in [initial, delta, changed, full] {
            rows.push(format!(
                "| {backend} | {} | {:.2} | {} | {} | {} | {} | {} |",
                ph.name, ph.seconds, ph.events, ph.peak_mib, ph.graph_requests, ph.counts, ph.split
            ));
        }
        // Put the tenant back for the next back-end.
        for (id, mobile) in &changed_ids {
            fx.tenant
                .update_user(id, |u| u.mobile_phone = mobile.clone());
        }
        p.stop().await;
    }
    println!("| back-end | phase | seconds (to read models caught up) | events appended | server peak RSS (MiB) | Graph requests | counts | split (s) |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
