//! A real browser for the console's tests (issue 14): Debian's Chromium,
//! headless, driven through chromium-driver (WebDriver) with fantoccini.
//!
//! Each [`Browser`] starts its own chromedriver on a free port and its own
//! Chromium with a fresh profile, so tests run in parallel and share no
//! cookies. Screenshots go to `$ROSTER_SCREENSHOTS_DIR` (else
//! `target/screenshots/`); [`Browser::axe`] runs axe-core (npm, pinned in
//! tests/browser/package.json, installed by deploy/test-deps.sh) in the page.
//!
//! Settings (environment): `ROSTER_CHROMIUM` (default `/usr/bin/chromium`),
//! `ROSTER_CHROMEDRIVER` (default `chromedriver` from `PATH`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use fantoccini::wd::Capabilities;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// The window of [`Browser::start`]: a laptop screen.
pub const DEFAULT_SIZE: (u32, u32) = (1280, 900);

/// How long chromedriver may take to answer its status endpoint.
const DRIVER_READY: Duration = Duration::from_secs(30);

/// One headless Chromium session and the chromedriver that drives it.
pub struct Browser {
    /// The WebDriver session: find elements, click, type, run scripts.
    pub client: fantoccini::Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// Installed in every document before its own scripts (through the DevTools
/// protocol, so the page's CSP does not apply to it): records the page's
/// Content-Security-Policy violations for [`Browser::csp_violations`].
const CSP_RECORDER_JS: &str = r#"
window.__rosterCspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__rosterCspViolations.push(
    e.effectiveDirective + ' blocked ' + (e.blockedURI || 'inline') +
    (e.sourceFile ? ' (' + e.sourceFile + ':' + e.lineNumber + ')' : '') +
    (e.sample ? ': ' + e.sample : ''));
});
"#;

/// One rule axe-core found broken on the page.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxeViolation {
    /// The rule, such as `color-contrast` or `label`.
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: Option<String>,
    pub description: String,
    pub help: String,
    pub help_url: String,
    pub nodes: Vec<AxeNode>,
}

/// An element that breaks an [`AxeViolation`]'s rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AxeNode {
    /// CSS selectors of the element (one per frame level).
    pub target: Vec<Value>,
    pub html: String,
    pub failure_summary: Option<String>,
}

impl AxeViolation {
    /// True for the impacts the console must never have (issue 14).
    pub fn is_serious(&self) -> bool {
        matches!(self.impact.as_deref(), Some("serious" | "critical"))
    }
}

impl std::fmt::Display for AxeViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let impact = self.impact.as_deref().unwrap_or("unknown");
        writeln!(
            f,
            "[{impact}] {}: {} ({})",
            self.id, self.help, self.help_url
        )?;
        for node in &self.nodes {
            let target: Vec<String> = node.target.iter().map(|t| t.to_string()).collect();
            writeln!(f, "    at {}: {}", target.join(" > "), node.html)?;
            if let Some(summary) = &node.failure_summary {
                for line in summary.lines() {
                    writeln!(f, "      {line}")?;
                }
            }
        }
        Ok(())
    }
}

fn chromium_binary() -> String {
    std::env::var("ROSTER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string())
}

fn chromedriver_binary() -> String {
    std::env::var("ROSTER_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_string())
}

/// The workspace's root (this crate is `tests/`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where screenshots go: `$ROSTER_SCREENSHOTS_DIR`, else the workspace's
/// `target/screenshots/` (or `$CARGO_TARGET_DIR/screenshots/`).
pub fn screenshots_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ROSTER_SCREENSHOTS_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("screenshots")
}

/// The axe-core script that npm installed (tests/browser/node_modules).
fn axe_source() -> anyhow::Result<String> {
    let path = workspace_root().join("tests/browser/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: install the browser suite's npm packages with \
             deploy/test-deps.sh (or `npm ci` in tests/browser)",
            path.display()
        )
    })
}

fn free_port() -> anyhow::Result<u16> {
    roster_testkit::free_port().context("finding a free port")
}

fn capabilities(profile: &Path, width: u32, height: u32) -> Capabilities {
    let args = [
        "--headless".to_string(),
        "--no-sandbox".to_string(),
        "--disable-gpu".to_string(),
        "--disable-quic".to_string(),
        "--no-first-run".to_string(),
        "--no-default-browser-check".to_string(),
        "--disable-background-networking".to_string(),
        "--disable-component-update".to_string(),
        "--disable-sync".to_string(),
        "--disable-dev-shm-usage".to_string(),
        "--hide-scrollbars".to_string(),
        format!("--user-data-dir={}", profile.display()),
        format!("--window-size={width},{height}"),
    ];
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium_binary(), "args": args },
    });
    match caps {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// Starts chromedriver on a free port and waits until it is ready.
async fn start_driver() -> anyhow::Result<(Child, u16)> {
    let mut last_error = None;
    // Another process may take the port between our probe and the bind.
    for _ in 0..3 {
        let port = free_port()?;
        let mut child = Command::new(chromedriver_binary())
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: Chromium and its helpers, which
            // chromedriver starts, go with it (see `Drop`).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start `{}`: install chromium-driver (deploy/test-deps.sh) \
                     or set ROSTER_CHROMEDRIVER",
                    chromedriver_binary()
                )
            })?;
        match wait_ready(&mut child, port).await {
            Ok(()) => return Ok((child, port)),
            Err(e) => {
                let _ = child.kill().await;
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("chromedriver did not start")))
}

async fn wait_ready(child: &mut Child, port: u16) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/status");
    let deadline = Instant::now() + DRIVER_READY;
    loop {
        if let Some(status) = child.try_wait()? {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                use tokio::io::AsyncReadExt as _;
                let _ = err.read_to_string(&mut stderr).await;
            }
            bail!("chromedriver exited ({status}) before it was ready: {stderr}");
        }
        if let Ok(resp) = http.get(&url).send().await {
            if let Ok(body) = resp.json::<Value>().await {
                if body["value"]["ready"] == json!(true) {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("chromedriver on port {port} was not ready within {DRIVER_READY:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fires a real drag-and-drop of one file: dragenter, dragover and drop
/// events carrying a DataTransfer that holds a File, at the drop zone's
/// centre, on the element a pointer there would hit.
const DROP_FILE_JS: &str = r#"
const [selector, name, type, b64] = arguments;
const zone = document.querySelector(selector);
if (!zone) throw new Error('drop_file: no element matches ' + selector);
zone.scrollIntoView({block: 'center', inline: 'center'});
const rect = zone.getBoundingClientRect();
const x = rect.left + rect.width / 2, y = rect.top + rect.height / 2;
const hit = document.elementFromPoint(x, y);
if (!hit || !(zone === hit || zone.contains(hit))) {
  throw new Error('drop_file: ' + selector + ' is hidden or covered at its centre by ' + (hit ? hit.outerHTML.slice(0, 120) : 'nothing'));
}
const raw = atob(b64);
const bytes = new Uint8Array(raw.length);
for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, {type, lastModified: Date.now()}));
for (const kind of ['dragenter', 'dragover', 'drop']) {
  hit.dispatchEvent(new DragEvent(kind, {
    bubbles: true, cancelable: true, composed: true,
    clientX: x, clientY: y, dataTransfer: transfer,
  }));
}
return true;
"#;

/// Runs axe-core (already injected) and answers its violations as JSON.
const AXE_RUN_JS: &str = r#"
const done = arguments[arguments.length - 1];
window.axe.run(document, {resultTypes: ['violations']})
  .then((r) => done(JSON.stringify(r.violations)))
  .catch((e) => done(JSON.stringify({error: String(e)})));
"#;

fn mime_type(name: &str) -> &'static str {
    let lower = name.to_ascii_lowercase();
    match lower.rsplit_once('.').map(|(_, ext)| ext) {
        Some("csv") => "text/csv",
        Some("txt") => "text/plain",
        Some("json") => "application/json",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

impl Browser {
    /// Headless Chromium with a 1280x900 window.
    pub async fn start() -> anyhow::Result<Browser> {
        Browser::start_sized(DEFAULT_SIZE.0, DEFAULT_SIZE.1).await
    }

    /// Headless Chromium with a window of this size (such as 1024 wide, the
    /// narrowest the console must work at).
    pub async fn start_sized(width: u32, height: u32) -> anyhow::Result<Browser> {
        let profile = tempfile::Builder::new()
            .prefix("roster-chromium-")
            .tempdir()
            .context("creating the browser profile directory")?;
        let (driver, port) = start_driver().await?;
        let client = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(capabilities(profile.path(), width, height))
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .with_context(|| {
            format!(
                "chromedriver could not start {} (set ROSTER_CHROMIUM to another Chromium)",
                chromium_binary()
            )
        })?;
        let session = client
            .session_id()
            .await?
            .ok_or_else(|| anyhow!("chromedriver answered no session id"))?;
        let cdp = format!("http://127.0.0.1:{port}/session/{session}/goog/cdp/execute");
        let body = json!({
            "cmd": "Page.addScriptToEvaluateOnNewDocument",
            "params": { "source": CSP_RECORDER_JS },
        });
        reqwest::Client::new()
            .post(&cdp)
            .json(&body)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("installing the CSP violation recorder")?;
        Ok(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// Saves a PNG of the viewport as `<name>.png` in [`screenshots_dir`]
    /// and answers its path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let file: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let file = file.trim_end_matches(".png");
        if file.is_empty() {
            bail!("a screenshot needs a name");
        }
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let png = self
            .client
            .screenshot()
            .await
            .context("taking a screenshot")?;
        let path = dir.join(format!("{file}.png"));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// The Content-Security-Policy violations of the current page since it
    /// loaded, such as `script-src-elem blocked inline` for an inline
    /// script, or `style-src-attr blocked inline` for a style attribute.
    pub async fn csp_violations(&self) -> anyhow::Result<Vec<String>> {
        let out = self
            .client
            .execute("return window.__rosterCspViolations || null;", vec![])
            .await?;
        if out.is_null() {
            bail!("the CSP recorder is not installed in this page");
        }
        Ok(serde_json::from_value(out)?)
    }

    /// Runs axe-core on the current page and answers every violation.
    pub async fn axe(&self) -> anyhow::Result<Vec<AxeViolation>> {
        let loaded = self
            .client
            .execute("return typeof window.axe === 'object';", vec![])
            .await?;
        if loaded != json!(true) {
            // WebDriver scripts run outside the page's CSP, so a page
            // without inline scripts can still be checked.
            let inject = format!("{}\n;return typeof window.axe;", axe_source()?);
            let kind = self.client.execute(&inject, vec![]).await?;
            if kind != json!("object") {
                bail!("axe-core did not load in the page (window.axe is {kind})");
            }
        }
        let out = self.client.execute_async(AXE_RUN_JS, vec![]).await?;
        let text = out
            .as_str()
            .ok_or_else(|| anyhow!("axe.run answered {out}"))?;
        let value: Value = serde_json::from_str(text)?;
        if let Some(error) = value.get("error") {
            bail!("axe.run failed: {error}");
        }
        Ok(serde_json::from_value(value)?)
    }

    /// Fails, listing them, when axe-core finds a serious or critical
    /// violation on the current page (issue 14).
    pub async fn assert_accessible(&self) -> anyhow::Result<()> {
        let serious: Vec<AxeViolation> = self
            .axe()
            .await?
            .into_iter()
            .filter(AxeViolation::is_serious)
            .collect();
        if serious.is_empty() {
            return Ok(());
        }
        let url = self.client.current_url().await?;
        let list: String = serious.iter().map(|v| v.to_string()).collect();
        bail!(
            "{} serious or critical accessibility violation(s) on {url}:\n{list}",
            serious.len()
        )
    }

    /// Drops a file named `name` holding `bytes` on the element that
    /// `css_selector` matches, as a person dragging it from their desktop
    /// would: the page's own dragenter/dragover/drop handlers run and read
    /// the File from the event's DataTransfer.
    pub async fn drop_file(
        &self,
        css_selector: &str,
        name: &str,
        bytes: &[u8],
    ) -> anyhow::Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let args = vec![
            json!(css_selector),
            json!(name),
            json!(mime_type(name)),
            json!(b64),
        ];
        self.client
            .execute(DROP_FILE_JS, args)
            .await
            .with_context(|| format!("dropping {name} on {css_selector}"))?;
        Ok(())
    }

    /// Ends the session, then chromedriver; the profile is removed.
    pub async fn close(self) -> anyhow::Result<()> {
        let closed = self.client.clone().close().await;
        drop(self);
        closed.context("closing the browser session")
    }
}

impl Drop for Browser {
    /// A test that fails before [`Browser::close`] leaves no Chromium
    /// behind: the whole process group of its chromedriver is killed.
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let group = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.driver.start_kill();
    }
}
