//! What the benchmarks share: a process's memory and CPU time from /proc,
//! the split of a sync run from the server's log, and the log's head as the
//! audit shows it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::process::Api;

/// A `/proc/<pid>/status` field in KiB (`VmHWM:`, `VmRSS:`); `pid` None is
/// this process. 0 when it cannot be read.
pub fn proc_kib(pid: Option<u32>, field: &str) -> u64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user and system, seconds) used so far by the server (`pid`),
/// by every PostgreSQL process and by every slapd on this machine: a
/// phase's difference of two readings is the work it cost each of them,
/// which on a machine of N cores bounds the phase from below at work / N.
/// A process that ends between the readings drops out of the sum.
pub fn cpu_seconds(pid: u32) -> CpuSeconds {
    // /proc reports clock ticks of USER_HZ, which is 100 on Linux.
    const TICKS: f64 = 100.0;
    let mut out = CpuSeconds::default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(p) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime: fields 14 and 15 of the line; the first field
        // after the command name (the state) is field 3.
        let used = (ticks(11) + ticks(12)) / TICKS;
        if p == pid {
            out.server += used;
        } else if comm.starts_with("postgres") {
            out.database += used;
        } else if comm == "slapd" {
            out.directory += used;
        }
    }
    out
}

/// CPU seconds of the server, the database and the directory
/// ([`cpu_seconds`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSeconds {
    pub server: f64,
    pub database: f64,
    pub directory: f64,
}

impl CpuSeconds {
    /// What was used between `before` and this reading.
    pub fn since(&self, before: &CpuSeconds) -> CpuSeconds {
        CpuSeconds {
            server: self.server - before.server,
            database: self.database - before.database,
            directory: self.directory - before.directory,
        }
    }

    /// "server 5.4, database 8.5, directory 0.8 (14.7)".
    pub fn summary(&self) -> String {
        format!(
            "server {:.1}, database {:.1}, directory {:.1} ({:.1})",
            self.server,
            self.database,
            self.directory,
            self.server + self.database + self.directory
        )
    }
}

/// A process's peak RSS in MiB.
pub fn peak_mib(pid: Option<u32>) -> u64 {
    proc_kib(pid, "VmHWM:") / 1024
}

/// Resets a process's peak RSS to its current RSS (Linux `clear_refs` 5).
pub fn reset_peak(pid: Option<u32>) {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/clear_refs"),
        None => "/proc/self/clear_refs".to_string(),
    };
    let _ = std::fs::write(path, "5");
}

/// The split of one sync run from the server's JSON log: its `directory
/// read` and `sync run applied` lines.
pub fn split_from_log(log: &str, run: &str) -> String {
    let mut read = String::new();
    let mut applied = String::new();
    for line in log.lines().filter(|l| l.contains(run)) {
        let field = |name: &str| -> Option<f64> {
            let i = line.find(&format!("\"{name}\":"))? + name.len() + 3;
            line[i..].split([',', '}']).next()?.trim().parse().ok()
        };
        if line.contains("directory read") {
            if let Some(s) = field("seconds") {
                // `"mode":"full"` or `"mode":"delta"` (B1), when logged.
                let mode = line
                    .find("\"mode\":\"")
                    .and_then(|i| line[i + 8..].split('"').next())
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default();
                read = format!("read {s:.2}{mode}");
            }
        }
        if line.contains("sync run applied") {
            applied = format!(
                "plan {:.2}, stage {:.2}, append {:.2}, project {:.2}",
                field("plan_s").unwrap_or(f64::NAN),
                field("stage_s").unwrap_or(f64::NAN),
                field("append_s").unwrap_or(f64::NAN),
                field("project_s").unwrap_or(f64::NAN)
            );
        }
    }
    format!("{read}; {applied}")
}

/// The server's log once it holds the run's "sync run applied" line: a
/// run reads as completed as soon as the read models show it, a moment
/// before the line is written, so reading the log at once missed the
/// split. Waits at most 10 s (a run that applied nothing has no such
/// line), then returns the log as it is.
pub async fn run_log(p: &crate::process::RosterProcess, run: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = p.log_text();
        let applied = log
            .lines()
            .any(|l| l.contains(run) && l.contains("sync run applied"));
        if applied || std::time::Instant::now() >= deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The position of the customer's latest event (its audit trail is newest
/// first), so that a phase can count the events it appended.
pub async fn head(api: &Api, c: &str) -> i64 {
    let (s, v) = api
        .get(&format!("/v1/customers/{c}/audit?page_size=1"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["events"][0]["position"].as_i64().unwrap_or(0)
}

/// [`head`] once the audit trail has caught up (unchanged over 300 ms): a
/// run completes when the user list shows it, and the audit lane may
/// still be projecting its events.
pub async fn settled_head(api: &Api, c: &str) -> i64 {
    let mut last = head(api, c).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = head(api, c).await;
        if now == last {
            return last;
        }
        last = now;
    }
}

/// Sync Now over HTTP, then polls until the run is no longer running (a
/// run completes once the read models show it). Returns the run id and
/// its detail; asserts it completed.
///
/// The run's page is polled every 100 ms (`ROSTER_BENCH_POLL_MS`), as a
/// console open on the run would, more often: each poll is a request with
/// five queries, and polling every 10 ms took a measurable share of the
/// two cores from the run being measured. A figure is late by at most
/// one interval.
pub async fn sync_and_wait(api: &Api, c: &str) -> (String, Value) {
    let run = api.start_sync(c).await;
    let every = Duration::from_millis(
        std::env::var("ROSTER_BENCH_POLL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100),
    );
    loop {
        let (s, v) = api
            .get(&format!(
                "/v1/customers/{c}/directory/syncs/{run}?page_size=1"
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if v["run"]["status"] != "running" {
            assert_eq!(v["run"]["status"], "completed", "{}", v["run"]);
            return (run, v);
        }
        tokio::time::sleep(every).await;
    }
}

/// A `roster serve` for a bench, on a back-end and its own data folder,
/// kept alive as long as this is.
pub struct BenchServer {
    pub process: crate::process::RosterProcess,
    /// The fresh database of a "postgres" server.
    pub pg: Option<roster_testkit::PgDb>,
    _dir: tempfile::TempDir,
}

/// Starts a server for a bench on `backend` ("postgres": a fresh database;
/// "sqlite": the embedded default), without the background worker, its
/// log in JSON filtered by `log_filter`. `None` for another name.
pub async fn bench_server(backend: &str, log_filter: &str) -> Option<BenchServer> {
    let dir = tempfile::tempdir().unwrap();
    let pg = match backend {
        "postgres" => Some(roster_testkit::PgDb::create().await.expect("PostgreSQL")),
        "sqlite" => None,
        _ => return None,
    };
    let process = crate::process::RosterProcess::start_with(
        &dir.path().join("data"),
        pg.as_ref().map(|d| d.url()),
        &[
            ("ROSTER_NO_WORKER", "true"),
            ("RUST_LOG", log_filter),
            ("ROSTER_LOG_FORMAT", "json"),
        ],
    )
    .await;
    Some(BenchServer {
        process,
        pg,
        _dir: dir,
    })
}
