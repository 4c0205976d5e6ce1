//! The real `roster` binary, started on a free port, and a small client.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::process::{Child, Command};

static BUILD: Mutex<bool> = Mutex::new(false);

/// The operator's outbound allowance every test binary runs with: the
/// directory servers and the Graph emulator of the tests listen on loopback
/// (127.0.0.1) over plain http / LDAP, Samba AD in a network namespace on a
/// private address (10.231.0.0/16). Tests of the policy itself override it.
pub const TEST_ALLOW_OUTBOUND: &str = "http,loopback,private,127.0.0.1,localhost";

/// The secrets key the tests' servers use (32 bytes, hex): a test may give
/// its own with the `ROSTER_SECRET_KEY` entry of `start_with`.
pub const TEST_SECRET_KEY: &str =
    "4b6f1d0e9a2c7b3e5f8a1c4d7e0b3a6f9c2e5d8b1a4f7e0c3b6a9d2f5e8c1b4a";

/// The `roster` binary: `ROSTER_BIN` when set (the test script builds it
/// first), otherwise the one next to the test executable, built once per
/// test process so that a stale binary is never tested.
pub fn roster_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ROSTER_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile dir")
        .to_path_buf();
    let bin = dir.join("roster");
    let mut built = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !*built {
        // Build (or confirm up to date) once per test process, so a stale binary is never tested.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let mut cmd = std::process::Command::new(cargo);
        // With roster-tests in the same build, roster-store's `test-clock`
        // feature (ROSTER_CLOCK_FILE) is in the binary, as in a workspace build.
        cmd.args(["build", "-q", "-p", "roster", "-p", "roster-tests"]);
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build -p roster");
        assert!(status.success(), "cargo build -p roster failed");
        *built = true;
    }
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

/// A free local port, away from the kernel's ephemeral range
/// ([`roster_testkit::free_port`]).
pub fn free_port() -> u16 {
    roster_testkit::free_port().expect("free port")
}

/// A running `roster serve`.
pub struct RosterProcess {
    child: Child,
    pub base: String,
    pub bootstrap_token: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub log: PathBuf,
}

impl RosterProcess {
    /// Starts `roster serve` on SQLite in `data_dir`, or on PostgreSQL when
    /// `database_url` is given, with a fresh bootstrap token.
    pub async fn start(data_dir: &std::path::Path, database_url: Option<&str>) -> RosterProcess {
        Self::start_with(data_dir, database_url, &[]).await
    }

    pub async fn start_with(
        data_dir: &std::path::Path,
        database_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> RosterProcess {
        let p = Self::spawn_with(data_dir, database_url, env);
        p.wait_ready().await;
        p
    }

    /// Starts `roster serve` like [`RosterProcess::start_with`] without
    /// waiting for it to be ready ([`RosterProcess::wait_ready`]).
    pub fn spawn_with(
        data_dir: &std::path::Path,
        database_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> RosterProcess {
        let port = free_port();
        let token = format!("bootstrap-{}", uuid::Uuid::new_v4().simple());
        let log = data_dir.join(format!("roster-{port}.log"));
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(roster_binary());
        cmd.arg("serve")
            .env("ROSTER_LISTEN", format!("127.0.0.1:{port}"))
            .env("ROSTER_DATA_DIR", data_dir)
            .env("ROSTER_BOOTSTRAP_TOKEN", &token)
            .env("RUST_LOG", "info,sqlx=warn")
            .env("ROSTER_SECRET_KEY", TEST_SECRET_KEY)
            .env("ROSTER_ALLOW_OUTBOUND", TEST_ALLOW_OUTBOUND)
            .env_remove("DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        if let Some(url) = database_url {
            cmd.env("DATABASE_URL", url);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start roster");
        RosterProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            bootstrap_token: token,
            data_dir: data_dir.to_path_buf(),
            database_url: database_url.map(str::to_string),
            log,
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "roster did not become ready; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// The server's process id (benchmarks read its memory from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn api(&self, token: &str) -> Api {
        Api {
            base: self.base.clone(),
            token: token.to_string(),
            client: reqwest::Client::new(),
        }
    }

    pub fn admin(&self) -> Api {
        self.api(&self.bootstrap_token)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs another `roster` subcommand against the same storage.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        run_on(&self.data_dir, self.database_url.as_deref(), args)
    }

    /// Stops the server with SIGTERM and waits.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Runs a `roster` subcommand against the storage of `data_dir`, or the
/// PostgreSQL database of `database_url` when given, with the test key
/// (also once the server on that storage is stopped).
pub fn run_on(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = std::process::Command::new(roster_binary());
    cmd.args(args)
        .env("ROSTER_SECRET_KEY", TEST_SECRET_KEY)
        .env("ROSTER_DATA_DIR", data_dir)
        .env("ROSTER_LOG_FORMAT", "text")
        .env_remove("DATABASE_URL");
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.output().expect("run roster")
}

/// A JSON client with one bearer token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
}

/// Percent-encodes a path segment (addresses hold '@' and '+').
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Api {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates a customer and returns its id.
    pub async fn customer(&self, name: &str, seat_limit: u64, domains: &[&str]) -> String {
        let (s, v) = self
            .post(
                "/v1/customers",
                serde_json::json!({"name": name, "seat_limit": seat_limit, "domains": domains}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().expect("id").to_string()
    }

    /// Sync Now for customer `c`: asserts 202 and returns the run's id.
    pub async fn start_sync(&self, c: &str) -> String {
        let (s, v) = self
            .call(
                Method::POST,
                &format!("/v1/customers/{c}/directory/sync"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        v["run_id"].as_str().expect("run_id").to_string()
    }
}

/// Runs `f` against a fresh `roster serve` on SQLite, then on PostgreSQL.
pub async fn on_both<F, Fut>(f: F)
where
    F: Fn(RosterProcess) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    f(RosterProcess::start(&dir.path().join("sqlite"), None).await).await;
    let pg = roster_testkit::PgDb::create().await.unwrap();
    f(RosterProcess::start(&dir.path().join("pg"), Some(pg.url())).await).await;
}
