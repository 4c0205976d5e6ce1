//! Child processes, free ports, program lookup, and the per-process
//! watchdog that cleans up after a test process that did not (a panic with
//! `panic = "abort"`, a SIGKILL from a test runner's timeout, statics that
//! are never dropped).

use std::ffi::OsStr;
use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The hint every "not installed" error carries.
pub(crate) const INSTALL_HINT: &str =
    "run deploy/test-deps.sh (as root) to install the test servers";

/// A port that was free on 127.0.0.1 a moment ago (bound, read back,
/// released); servers that lose the race are restarted on new ports. It is
/// drawn below the kernel's ephemeral range: a port `bind(0)` hands out is
/// in that range, and the kernel may give it to another process's outgoing
/// connection (a test's database client, say) before the server binds it
/// ("Address already in use" in CI). Falls back to `bind(0)` where the
/// range leaves no room below it.
pub fn free_port() -> Result<u16> {
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low);
    if high > low + 1_000 {
        for _ in 0..200 {
            let draw = (uuid::Uuid::new_v4().as_u128() % u128::from(high - low)) as u16;
            if let Ok(l) = TcpListener::bind(("127.0.0.1", low + draw)) {
                if let Ok(a) = l.local_addr() {
                    return Ok(a.port());
                }
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("binding 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("reading the free port", e))?
        .port();
    Ok(port)
}

/// Finds `name`: in `$env_var` when set, then on `PATH`, then in the
/// system's sbin/bin folders (which a non-login PATH may lack).
pub(crate) fn find_program(name: &str, env_var: Option<&str>) -> Result<PathBuf> {
    if let Some(var) = env_var {
        if let Some(path) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let path = PathBuf::from(path);
            if is_executable(&path) {
                return Ok(path);
            }
            return Err(Error::NotInstalled {
                program: name.to_string(),
                hint: format!("{var}={} is not an executable file", path.display()),
            });
        }
    }
    candidates_on_path(name)
        .into_iter()
        .find(|p| is_executable(p))
        .ok_or_else(|| Error::NotInstalled {
            program: name.to_string(),
            hint: INSTALL_HINT.to_string(),
        })
}

/// Every place `name` could be: each `PATH` entry, then the usual system
/// folders. May contain duplicates and missing files.
pub(crate) fn candidates_on_path(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        out.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        out.push(Path::new(dir).join(name));
    }
    out
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs a helper command to completion (async), failing with its output
/// when it exits non-zero.
pub(crate) async fn run(program: &Path, args: &[&OsStr], stdin: Option<Vec<u8>>) -> Result<String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    let shown = show_command(program, args);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("starting `{shown}`"), e))?;
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().expect("stdin was piped");
        // A program that fails early closes its stdin; its exit status and
        // output tell more than the broken pipe does.
        let _ = pipe.write_all(&input).await;
        drop(pipe);
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| Error::io(format!("waiting for `{shown}`"), e))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(Error::Command {
        command: shown,
        status: output.status.to_string(),
        output: tail_lines(&format!("{stderr}\n{stdout}"), 30),
    })
}

/// Synchronous variant of [`run`] for `Drop` implementations and cleanup.
pub(crate) fn run_sync(program: &str, args: &[&str]) -> Result<String> {
    let shown = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("running `{shown}`"), e))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(Error::Command {
        command: shown,
        status: output.status.to_string(),
        output: tail_lines(&String::from_utf8_lossy(&output.stderr), 30),
    })
}

fn show_command(program: &Path, args: &[&OsStr]) -> String {
    let mut s = program.display().to_string();
    for a in args {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.len() > 200 {
            s.push_str(&a[..200]);
            s.push_str("...");
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// The last `n` lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// The last `n` lines of a log file, or a note that it cannot be read.
pub(crate) fn tail_file(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => tail_lines(&String::from_utf8_lossy(&bytes), n),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Whether a TCP connection to `addr` succeeds within `timeout`.
pub(crate) fn tcp_accepts(addr: SocketAddr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&addr, timeout).is_ok()
}

// ---------------------------------------------------------------------------
// Watchdog

/// A shell that outlives nothing: it reads cleanup commands on its stdin
/// (`add ID COMMAND`, `del ID`) and runs the ones still registered, last
/// registered first, when its stdin reaches end of file, which happens when
/// this process exits, however it exits. It runs in its own session so that a test runner killing the
/// test's process group does not take it along.
const WATCHDOG_SCRIPT: &str = r#"
trap '' INT TERM HUP PIPE
cmds=""
while IFS= read -r line; do
  verb=${line%% *}; rest=${line#* }
  id=${rest%% *}; cmd=${rest#* }
  case "$verb" in
    add) cmds="$cmds
$id $cmd" ;;
    del) cmds=$(printf '%s\n' "$cmds" | grep -v "^$id ") ;;
  esac
done
printf '%s\n' "$cmds" | tac | while IFS= read -r l; do
  [ -n "$l" ] && sh -c "${l#* }" >/dev/null 2>&1 </dev/null
done
exit 0
"#;

struct Watchdog {
    stdin: Mutex<ChildStdin>,
}

static WATCHDOG: OnceLock<std::result::Result<Watchdog, String>> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn watchdog() -> Option<&'static Watchdog> {
    WATCHDOG
        .get_or_init(|| {
            let mut child = Command::new("setsid")
                .arg("sh")
                .arg("-c")
                .arg(WATCHDOG_SCRIPT)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("starting the cleanup watchdog: {e}"))?;
            let stdin = child.stdin.take().expect("stdin was piped");
            // Reap `setsid` (it exits at once if it had to fork) so that it
            // does not stay a zombie.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            Ok(Watchdog {
                stdin: Mutex::new(stdin),
            })
        })
        .as_ref()
        .ok()
}

/// A cleanup command that runs when this process ends, unless the guard is
/// dropped first (the owner has cleaned up by itself by then).
#[derive(Debug)]
pub(crate) struct ExitCleanup {
    id: u64,
}

impl ExitCleanup {
    /// Registers `command` (one line of `sh`) to run at process exit.
    pub(crate) fn register(command: &str) -> ExitCleanup {
        debug_assert!(!command.contains('\n'));
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if let Some(w) = watchdog() {
            let mut stdin = w.stdin.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(stdin, "add c{id} {command}");
            let _ = stdin.flush();
        }
        ExitCleanup { id }
    }
}

impl Drop for ExitCleanup {
    fn drop(&mut self) {
        if let Some(w) = watchdog() {
            let mut stdin = w.stdin.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(stdin, "del c{}", self.id);
            let _ = stdin.flush();
        }
    }
}

/// Quotes `s` for `sh`.
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------
// Server processes

/// A long-running server child: output goes to a log file, it is killed on
/// drop, and the watchdog kills it if this process dies first.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    name: String,
    child: Child,
    log: PathBuf,
    /// Kept open for servers that exit when their stdin closes (samba -i).
    _stdin: Option<ChildStdin>,
    _cleanup: ExitCleanup,
}

impl ServerProcess {
    /// Spawns `cmd`. `marker` is a string on the server's command line
    /// (its private folder): the exit-time kill checks it, so that a reused
    /// process id is never killed.
    pub(crate) fn spawn(
        name: &str,
        mut cmd: Command,
        log: &Path,
        marker: &str,
        keep_stdin: bool,
    ) -> Result<ServerProcess> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(format!("opening {}", log.display()), e))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| Error::io("duplicating a log file handle", e))?;
        cmd.stdout(log_file).stderr(log_err).stdin(if keep_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotInstalled {
                    program: format!("{:?}", cmd.get_program()),
                    hint: INSTALL_HINT.to_string(),
                }
            } else {
                Error::io(format!("starting {name}"), e)
            }
        })?;
        let pid = child.id();
        let cleanup = ExitCleanup::register(&format!(
            "tr '\\0' ' ' </proc/{pid}/cmdline | grep -qF -- {} && kill -9 {pid}",
            sh_quote(marker)
        ));
        let stdin = child.stdin.take();
        Ok(ServerProcess {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            _stdin: stdin,
            _cleanup: cleanup,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// SIGTERM, wait up to `grace` for the exit, then SIGKILL.
    pub(crate) async fn terminate(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
    }

    /// The error to report when the server exited while being waited for.
    pub(crate) fn exited_error(&self, status: ExitStatus) -> Error {
        Error::Exited {
            server: self.name.clone(),
            status: status.to_string(),
            log: self.log.display().to_string(),
            tail: tail_file(&self.log, 40),
        }
    }

    /// Waits until `ready` says yes, failing when the process exits first
    /// or `timeout` passes.
    pub(crate) async fn wait_ready<F>(&mut self, timeout: Duration, mut ready: F) -> Result<()>
    where
        F: AsyncFnMut() -> bool,
    {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(self.exited_error(status));
            }
            if ready().await {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(Error::NotReady {
                    server: self.name.clone(),
                    waited: timeout,
                    log: self.log.display().to_string(),
                    tail: tail_file(&self.log, 40),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Whether the log says the server could not bind its port (then the
    /// caller retries with other ports).
    pub(crate) fn lost_port_race(&self) -> bool {
        std::fs::File::open(&self.log)
            .map(|f| {
                std::io::BufReader::new(f)
                    .lines()
                    .map_while(|l| l.ok())
                    .any(|l| {
                        l.contains("Address already in use") || l.contains("address already in use")
                    })
            })
            .unwrap_or(false)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
