//! Operations (issue 16), against the real `roster` binary: concurrent
//! migrations and first starts on a fresh database, a database outage
//! answered with 503 quickly and recovered from without a restart, and the
//! start-up checks that stop a misconfigured process before it writes.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use roster_testkit::PgDb;
use roster_tests::process::{free_port, roster_binary, TEST_SECRET_KEY};
use roster_tests::RosterProcess;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Runs `roster <args>` with `env` (and a test secret key unless given),
/// without a terminal.
fn roster_cmd(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(roster_binary());
    cmd.args(args)
        .env("ROSTER_SECRET_KEY", TEST_SECRET_KEY)
        .env("ROSTER_LOG_FORMAT", "text")
        .env("RUST_LOG", "info,sqlx=warn")
        .env_remove("DATABASE_URL")
        .env_remove("ROSTER_BOOTSTRAP_TOKEN")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::time::timeout(Duration::from_secs(60), roster_cmd(args, env).output())
        .await
        .expect("roster finished within 60 s")
        .expect("run roster")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn scalar(pg: &PgDb, sql: &str) -> i64 {
    let pool = pg.pool().await.expect("pool");
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
    n
}

async fn table_exists(pg: &PgDb, table: &str) -> bool {
    scalar(
        pg,
        &format!("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = '{table}'"),
    )
    .await
        > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_three_concurrent_migrates_on_a_fresh_postgres_database_all_succeed() {
    // Before the startup lock, two of three failed with a duplicate key in
    // pg_type in 4 of 4 trials: three trials here.
    for trial in 0..3 {
        let pg = PgDb::create().await.expect("database");
        let env = [("DATABASE_URL", pg.url())];
        let runs = futures::future::join_all((0..3).map(|_| run(&["migrate"], &env))).await;
        for (i, o) in runs.iter().enumerate() {
            assert!(
                o.status.success(),
                "trial {trial}, migrate {i} failed:\n{}",
                stderr(o)
            );
        }
        assert!(table_exists(&pg, "events").await);
        assert!(
            table_exists(&pg, roster_projections::users::USERS).await,
            "projection tables created"
        );
        pg.drop_now().await.expect("drop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_three_concurrent_migrates_on_a_fresh_sqlite_data_dir_all_succeed() {
    for trial in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data = data.to_str().unwrap();
        let env = [("ROSTER_DATA_DIR", data)];
        let runs = futures::future::join_all((0..3).map(|_| run(&["migrate"], &env))).await;
        for (i, o) in runs.iter().enumerate() {
            assert!(
                o.status.success(),
                "trial {trial}, migrate {i} failed:\n{}",
                stderr(o)
            );
        }
    }
}

/// Three `roster serve` started together on one fresh database, each with
/// its own data dir and `extra` settings.
/// The dirs are removed when the returned handles drop.
async fn three_first_starts(
    pg: &PgDb,
    extra: &[(&str, &str)],
) -> (Vec<RosterProcess>, Vec<tempfile::TempDir>) {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let started = futures::future::join_all(
        dirs.iter()
            .map(|d| RosterProcess::start_with(d.path(), Some(pg.url()), extra)),
    )
    .await;
    (started, dirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_three_concurrent_first_starts_create_one_partner_and_one_token() {
    // Without a bootstrap token: exactly one replica creates the "default"
    // partner and writes the initial token (two partners in 1 of 3 trials
    // before the startup lock).
    for _ in 0..2 {
        let pg = PgDb::create().await.expect("database");
        let (ps, _dirs) = three_first_starts(&pg, &[("ROSTER_BOOTSTRAP_TOKEN", "")]).await;
        assert_eq!(scalar(&pg, "SELECT COUNT(*) FROM partners").await, 1);
        assert_eq!(scalar(&pg, "SELECT COUNT(*) FROM api_tokens").await, 1);
        let files: Vec<_> = ps
            .iter()
            .filter_map(|p| std::fs::read_to_string(p.data_dir.join("initial-token")).ok())
            .collect();
        assert_eq!(files.len(), 1, "one replica wrote the initial token");
        let token = files[0].trim();
        let (s, v) = ps[2].api(token).get("/v1/customers").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for p in ps {
            p.stop().await;
        }
        pg.drop_now().await.expect("drop");
    }
    // With one bootstrap token for all: one partner, one token, and it works
    // on every replica.
    let pg = PgDb::create().await.expect("database");
    let token = format!("bootstrap-{}", uuid::Uuid::new_v4().simple());
    let (ps, _dirs) = three_first_starts(&pg, &[("ROSTER_BOOTSTRAP_TOKEN", &token)]).await;
    assert_eq!(scalar(&pg, "SELECT COUNT(*) FROM partners").await, 1);
    assert_eq!(scalar(&pg, "SELECT COUNT(*) FROM api_tokens").await, 1);
    for p in &ps {
        let (s, _) = p.api(&token).get("/v1/customers").await;
        assert_eq!(s, StatusCode::OK);
    }
    for p in ps {
        p.stop().await;
    }
}

/// A TCP proxy in front of PostgreSQL that the test can cut (connections
/// reset, new ones refused: the database is down) and restore.
struct PgProxy {
    port: u16,
    up: watch::Sender<bool>,
}

impl PgProxy {
    async fn start(target: String) -> PgProxy {
        let port = free_port();
        let (up, _) = watch::channel(true);
        let rx = up.subscribe();
        tokio::spawn(async move {
            let mut rx = rx;
            loop {
                // While up: accept and pipe; cut everything when it goes down.
                let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((mut client, _)) = accepted else { continue };
                            let target = target.clone();
                            conns.spawn(async move {
                                if let Ok(mut server) = TcpStream::connect(&target).await {
                                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                                }
                            });
                        }
                        _ = rx.changed() => {
                            if !*rx.borrow() { break; }
                        }
                    }
                }
                drop(listener);
                conns.abort_all();
                while conns.join_next().await.is_some() {}
                if rx.wait_for(|up| *up).await.is_err() {
                    return;
                }
            }
        });
        PgProxy { port, up }
    }

    fn url(&self, pg: &PgDb) -> String {
        pg.url().replacen(":5432/", &format!(":{}/", self.port), 1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_database_outage_answers_503_quickly_and_recovers_without_restart() {
    let pg = PgDb::create().await.expect("database");
    assert!(pg.url().contains(":5432/"), "the proxy expects port 5432");
    let proxy = PgProxy::start("127.0.0.1:5432".into()).await;
    let url = proxy.url(&pg);
    let dir = tempfile::tempdir().unwrap();
    let p = RosterProcess::start_with(dir.path(), Some(&url), &[]).await;
    let admin = p.admin();
    let c = admin.customer("Outage", 10, &["outage.test"]).await;
    let client = reqwest::Client::new();

    proxy.up.send_replace(false);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // An API call: 503 `unavailable` within 2 s (it waited 10 s and
    // answered 500 `internal` before).
    for _ in 0..3 {
        let t = Instant::now();
        let (s, v) = admin.get(&format!("/v1/customers/{c}/users")).await;
        let took = t.elapsed();
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        assert_eq!(v["code"], "unavailable", "{v}");
        assert!(took < Duration::from_secs(2), "answered after {took:?}");
        eprintln!("outage: API answered 503 after {took:?}");
    }
    // A write as well.
    let t = Instant::now();
    let (s, v) = admin
        .post(
            &format!("/v1/customers/{c}/users"),
            serde_json::json!({"address": "a@outage.test"}),
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // /readyz: 503 within 3 s (30 s before).
    let t = Instant::now();
    let r = client
        .get(format!("{}/readyz", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    eprintln!("outage: /readyz answered 503 after {:?}", t.elapsed());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "database unavailable", "{body}");

    // The database comes back: ready again and serving, same process.
    proxy.up.send_replace(true);
    let t = Instant::now();
    loop {
        let r = client.get(format!("{}/readyz", p.base)).send().await;
        if r.is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "not ready again after 20 s; log:\n{}",
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "outage: ready again {:?} after the database came back",
        t.elapsed()
    );
    let (s, v) = admin
        .post(
            &format!("/v1/customers/{c}/users"),
            serde_json::json!({"address": "b@outage.test"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = admin.get(&format!("/v1/customers/{c}/users")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_start_refused_when_the_listen_port_is_taken_before_any_write() {
    let pg = PgDb::create().await.expect("database");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &["serve"],
        &[
            ("DATABASE_URL", pg.url()),
            ("ROSTER_LISTEN", &addr),
            ("ROSTER_DATA_DIR", dir.path().to_str().unwrap()),
        ],
    )
    .await;
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains(&format!("cannot listen on {addr}")), "{e}");
    assert!(e.contains("ROSTER_LISTEN"), "{e}");
    // Nothing was written: no schema, no token, no initial-token file.
    assert!(!table_exists(&pg, "events").await, "no migration ran");
    assert!(!dir.path().join("initial-token").exists());
    // The same for a role's --listen.
    let o = run(
        &["project", "--listen", &addr],
        &[("DATABASE_URL", pg.url())],
    )
    .await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot listen on"), "{}", stderr(&o));
    assert!(!table_exists(&pg, "events").await, "no migration ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_start_refused_when_the_data_dir_is_not_writable_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // A path below a regular file cannot be a directory (even for root).
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let bad = file.join("data");
    let bad_s = bad.to_str().unwrap();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");

    // SQLite.
    let o = run(
        &["serve"],
        &[("ROSTER_DATA_DIR", bad_s), ("ROSTER_LISTEN", &listen)],
    )
    .await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains(bad_s), "{}", stderr(&o));

    // PostgreSQL without a bootstrap token: the initial token would be
    // written to the data dir. No token is created when it cannot be
    // (before, the token was made, not written, and the next start issued none).
    let pg = PgDb::create().await.expect("database");
    let o = run(
        &["serve"],
        &[
            ("DATABASE_URL", pg.url()),
            ("ROSTER_DATA_DIR", bad_s),
            ("ROSTER_LISTEN", &listen),
        ],
    )
    .await;
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains(bad_s) && e.contains("ROSTER_DATA_DIR"), "{e}");
    assert_eq!(scalar(&pg, "SELECT COUNT(*) FROM api_tokens").await, 0);
    // Fixed: the next start issues the token.
    let good = dir.path().join("good");
    let p =
        RosterProcess::start_with(&good, Some(pg.url()), &[("ROSTER_BOOTSTRAP_TOKEN", "")]).await;
    let token = std::fs::read_to_string(good.join("initial-token")).expect("initial token");
    let (s, _) = p.api(token.trim()).get("/v1/customers").await;
    assert_eq!(s, StatusCode::OK);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_d7_start_refused_when_the_secrets_key_does_not_open_the_stored_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let o = run(&["migrate"], &[("ROSTER_DATA_DIR", data_s)]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    // A secret sealed with the test key, as a directory setting stores it.
    let db = roster_store::Db::open_sqlite(&data).await.unwrap();
    let key = roster_store::SecretKey::parse(TEST_SECRET_KEY).unwrap();
    db.put_secret(
        &key,
        roster_events::CustomerId::new(),
        "bind_password",
        "target",
        &roster_store::Secret::new("hunter2"),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    db.close().await;

    let other = "00".repeat(32);
    let listen = format!("127.0.0.1:{}", free_port());
    let o = run(
        &["serve"],
        &[
            ("ROSTER_DATA_DIR", data_s),
            ("ROSTER_SECRET_KEY", &other),
            ("ROSTER_LISTEN", &listen),
        ],
    )
    .await;
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("ROSTER_SECRET_KEY") && e.contains("secret.key"),
        "{e}"
    );
    assert!(!data.join("initial-token").exists(), "no token was made");
    // The worker checks it too.
    let o = run(
        &["worker"],
        &[("ROSTER_DATA_DIR", data_s), ("ROSTER_SECRET_KEY", &other)],
    )
    .await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("ROSTER_SECRET_KEY"), "{}", stderr(&o));
    // Without any key on the embedded store, a new secret.key would be
    // made: it cannot open them either, and is not left behind.
    let o = run(
        &["worker"],
        &[("ROSTER_DATA_DIR", data_s), ("ROSTER_SECRET_KEY", "")],
    )
    .await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("secret.key"), "{}", stderr(&o));
    assert!(!data.join("secret.key").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_an_unknown_log_format_is_refused_listing_the_accepted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = run(
        &["migrate"],
        &[
            ("ROSTER_DATA_DIR", data.to_str().unwrap()),
            ("ROSTER_LOG_FORMAT", "yaml"),
        ],
    )
    .await;
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("ROSTER_LOG_FORMAT") && e.contains("\"yaml\"") && e.contains("json, text"),
        "{e}"
    );
    assert!(!Path::new(&data).exists(), "nothing was written");
}

/// Issue 16: a relay that holds the lease but cannot start publishing (here:
/// a stream with 3 replicas asked of a single-node NATS) is not ready after
/// ROSTER_RELAY_READY_FAILING_SECS, and /readyz says why; before, it
/// answered 200 while publishing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e5_a_relay_that_cannot_publish_is_not_ready_and_says_why() {
    let pg = PgDb::create().await.unwrap();
    let nats = roster_testkit::NatsServer::start().await.unwrap();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let data_dir = dir.path().display().to_string();
    let nats_url = nats.url();
    let _relay = roster_cmd(
        &["relay"],
        &[
            ("DATABASE_URL", pg.url()),
            ("NATS_URL", &nats_url),
            ("ROSTER_NATS_REPLICAS", "3"),
            ("ROSTER_LISTEN", &listen),
            ("ROSTER_DATA_DIR", &data_dir),
            ("ROSTER_RELAY_READY_FAILING_SECS", "1"),
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    loop {
        if let Ok(r) = http.get(format!("http://{listen}/readyz")).send().await {
            let status = r.status();
            let v: Value = r.json().await.unwrap_or_default();
            last = format!("{status} {v}");
            if status == StatusCode::SERVICE_UNAVAILABLE && v["status"] == "cannot publish" {
                let error = v["failing"]["error"].as_str().unwrap_or_default();
                assert!(error.contains("replicas"), "{v}");
                break;
            }
        }
        assert!(Instant::now() < deadline, "never unready: {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `THP_enabled` line of a process's `/proc/<pid>/status` (Linux 6.x):
/// 0 once the process turned transparent huge pages off for itself.
fn thp_enabled(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:").map(|v| v.trim().to_string()))
}

/// Issue 17: the server, started as an operator starts it, runs with
/// transparent huge pages off for its own process and says so; with
/// mimalloc's `MIMALLOC_ALLOW_THP=1` it keeps the kernel's setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i17_the_server_runs_without_transparent_huge_pages_unless_the_operator_allows_them() {
    for (allow, expected) in [(None, "off"), (Some("1"), "kernel")] {
        let dir = tempfile::tempdir().unwrap();
        let env: Vec<(&str, &str)> = allow
            .map(|v| ("MIMALLOC_ALLOW_THP", v))
            .into_iter()
            .collect();
        let p = RosterProcess::start_with(dir.path(), None, &env).await;
        let pid = p.pid().expect("the server's pid");
        // Off, or as this test's own process has it (a child inherits it).
        let want = match expected {
            "off" => Some("0".to_string()),
            _ => thp_enabled(std::process::id()),
        };
        if let Some(flag) = thp_enabled(pid) {
            assert_eq!(Some(flag), want, "THP_enabled ({allow:?})");
        }
        let log = p.log_text();
        let serving = log
            .lines()
            .find(|l| l.contains("roster is serving"))
            .unwrap_or_else(|| panic!("no start line in {log}"));
        assert!(
            serving.contains(&format!("\"transparent_huge_pages\":\"{expected}\"")),
            "{serving}"
        );
        p.stop().await;
    }
}
