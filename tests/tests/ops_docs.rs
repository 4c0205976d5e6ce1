//! Issue 16: what the README and docs/operations.md tell a newcomer to type
//! works as written. Their `sh` blocks are run verbatim with bash; only what
//! the docs say the reader has (a running Roster, `DATABASE_URL`) is set up
//! by the test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use roster_testkit::{DirectoryData, Slapd, SlapdConfig, Style};
use roster_tests::process::{roster_binary, RosterProcess, TEST_SECRET_KEY};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The fenced `sh` blocks of a markdown text, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The part of `markdown` under the heading `title` (up to the next heading
/// of the same or a higher level).
fn section<'a>(markdown: &'a str, title: &str) -> &'a str {
    let start = markdown
        .find(title)
        .unwrap_or_else(|| panic!("no section {title:?}"));
    let level = title.chars().take_while(|c| *c == '#').count();
    let rest = &markdown[start + title.len()..];
    // The next heading outside a fenced block (a `#` comment in a shell
    // block is not a heading).
    let mut fenced = false;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            let hashes = line.chars().take_while(|c| *c == '#').count();
            if hashes <= level && offset > 0 {
                return &rest[..offset];
            }
        }
        offset += line.len();
    }
    rest
}

/// Runs `script` with `bash -euo pipefail` in `dir`; returns stdout.
fn bash(dir: &Path, env: &[(&str, &str)], script: &str) -> String {
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run bash");
    assert!(
        out.status.success(),
        "{script}\nfailed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Issue 16 (defect 7): the README's first command starts Roster on its
/// embedded default (`roster serve`, what `cargo run --release -p roster --
/// serve` runs) and its quick start, typed verbatim in a second terminal,
/// creates a customer and users and lists them. The whole runs in a network
/// namespace of its own, so `localhost:8080` is the README's and nobody
/// else's.
#[test]
fn ops_the_readme_quick_start_runs_verbatim_and_lists_users() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let blocks = sh_blocks(&readme);
    let first: Vec<&str> = blocks[0].lines().collect();
    assert!(
        first[0].starts_with("cargo run --release -p roster -- serve "),
        "the README's first command runs Roster: {first:?}"
    );
    assert!(first[1].starts_with("deploy/test.sh "), "{first:?}");
    let quick = sh_blocks(section(&readme, "## Quick start"));
    assert!(quick.len() >= 2, "the quick start has its commands");
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        r#"ip link set lo up
"$ROSTER_BIN" serve >serve.log 2>&1 &
serve=$!
trap 'kill $serve 2>/dev/null; wait $serve 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  [ -s roster-data/initial-token ] && curl -sf localhost:8080/readyz >/dev/null && break
  sleep 0.1
done
# --- the README's quick start, verbatim ---
{}"#,
        quick.join("\n")
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--net", "--", "bash", "-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("ROSTER_BIN", roster_binary())
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .expect("run unshare (needs root and util-linux)");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "the quick start failed: {}\n{}\nserve.log:\n{log}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.contains(&"ann@acme.example\tAnn\tsales@acme.example"),
        "the list shows Ann with her alias:\n{stdout}"
    );
    assert!(lines.contains(&"bob@acme.example\tBob\t"), "{stdout}");
    assert!(
        lines.iter().any(|l| l
            .trim_start_matches('\u{feff}')
            .starts_with("email,first_name")),
        "the CSV export has its header:\n{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("ann@acme.example,Ann,")),
        "{stdout}"
    );
}

const BASE: &str = "dc=example,dc=com";
const DOMAIN: &str = "example.org";

/// A customer with a synced directory whose bind password is stored sealed.
async fn customer_with_directory(p: &RosterProcess, slapd: &Slapd) -> String {
    let api = p.admin();
    let c = api.customer("Acme", 100, &[DOMAIN]).await;
    let (s, v) = api
        .call(
            reqwest::Method::PUT,
            &format!("/v1/customers/{c}/directory"),
            Some(roster_tests::e2e::ldap_settings(slapd, BASE)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api
        .call(
            reqwest::Method::POST,
            &format!("/v1/customers/{c}/directory/sync"),
            None,
        )
        .await;
    assert!(s.is_success(), "{v}");
    c
}

/// After a restore: the users are there and the stored bind password opens
/// (a connection test that sends none uses the stored one).
async fn assert_restored(p: &RosterProcess, token: &str, c: &str, users: usize) {
    let api = p.api(token);
    let mut listed = 0;
    for _ in 0..100 {
        let (s, v) = api.get(&format!("/v1/customers/{c}/users")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        listed = v["users"].as_array().unwrap().len();
        if listed == users {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed, users, "every user came back");
    let (s, v) = api
        .call(
            reqwest::Method::POST,
            &format!("/v1/customers/{c}/directory/test"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["ok"], true,
        "the stored secret opens after the restore: {v}"
    );
}

async fn synced_users(p: &RosterProcess, c: &str) -> usize {
    for _ in 0..200 {
        let (_, v) = p.admin().get(&format!("/v1/customers/{c}/users")).await;
        let n = v["users"].as_array().map_or(0, Vec::len);
        if n > 0 {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the sync added nobody");
}

/// Issue 16: backup and restore on PostgreSQL as docs/operations.md says
/// (pg_dump, pg_restore into an empty database, the same key): users and
/// the sealed directory secret come back; another key is refused at start
/// with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_backup_and_restore_on_postgresql_keep_users_and_directory_secrets() {
    let ops = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let blocks = sh_blocks(section(&ops, "## Backup and restore"));
    let dump = blocks
        .iter()
        .find(|b| b.contains("pg_dump"))
        .expect("pg_dump block");
    let restore = blocks
        .iter()
        .find(|b| b.contains("pg_restore"))
        .expect("pg_restore block");
    let slapd = Slapd::start(
        SlapdConfig::inet_org_person()
            .data(DirectoryData::new(Style::InetOrgPerson, BASE, DOMAIN).users(5)),
    )
    .await
    .unwrap();
    let live = roster_testkit::PgDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = RosterProcess::start(&dir.path().join("live"), Some(live.url())).await;
    let c = customer_with_directory(&p, &slapd).await;
    // The restored store has its tokens: the old one still opens it.
    let token = p.bootstrap_token.clone();
    let users = synced_users(&p, &c).await;
    // The backup, while Roster runs.
    bash(dir.path(), &[("DATABASE_URL", live.url())], dump);
    p.stop().await;
    // The restore into an empty database.
    let fresh = roster_testkit::PgDb::create().await.unwrap();
    bash(dir.path(), &[("RESTORE_URL", fresh.url())], restore);
    let restored = RosterProcess::start(&dir.path().join("restored"), Some(fresh.url())).await;
    assert_restored(&restored, &token, &c, users).await;
    restored.stop().await;
    // Another key does not open the stored secrets: refused at start.
    let other_key = "00".repeat(32);
    let child = tokio::process::Command::new(roster_binary())
        .arg("serve")
        .env("DATABASE_URL", fresh.url())
        .env("ROSTER_SECRET_KEY", &other_key)
        .env("ROSTER_LISTEN", "127.0.0.1:0")
        .env("ROSTER_DATA_DIR", dir.path().join("wrong-key"))
        .env(
            "ROSTER_BOOTSTRAP_TOKEN",
            format!("bootstrap-{}", uuid::Uuid::new_v4().simple()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("a wrong key is refused at start, not served")
        .unwrap();
    assert!(!out.status.success(), "a wrong key is refused at start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ROSTER_SECRET_KEY"),
        "the message names the key: {err}"
    );
    assert_ne!(other_key, TEST_SECRET_KEY);
}

/// Issue 16: backup and restore of the embedded default as
/// docs/operations.md says (sqlite3 .backup while running, secret.key
/// beside it, both restored into a new data directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_backup_and_restore_embedded_keep_users_and_directory_secrets() {
    let ops = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let blocks = sh_blocks(section(&ops, "## Backup and restore"));
    let backup = blocks
        .iter()
        .find(|b| b.contains(".backup"))
        .expect("sqlite backup block");
    let restore = blocks
        .iter()
        .find(|b| b.contains("cp roster-backup.db"))
        .expect("sqlite restore block");
    let slapd = Slapd::start(
        SlapdConfig::inet_org_person()
            .data(DirectoryData::new(Style::InetOrgPerson, BASE, DOMAIN).users(4)),
    )
    .await
    .unwrap();
    // The embedded default creates its own secret.key: no ROSTER_SECRET_KEY.
    let old = tempfile::tempdir().unwrap();
    let p = RosterProcess::start_with(
        &old.path().join("roster-data"),
        None,
        &[("ROSTER_SECRET_KEY", "")],
    )
    .await;
    assert!(
        old.path().join("roster-data/secret.key").exists(),
        "{}",
        p.log_text()
    );
    let c = customer_with_directory(&p, &slapd).await;
    // The restored store has its tokens: the old one still opens it.
    let token = p.bootstrap_token.clone();
    let users = synced_users(&p, &c).await;
    bash(old.path(), &[], backup);
    p.stop().await;
    // A new machine: the two backup files, then the restore block.
    let new = tempfile::tempdir().unwrap();
    for f in ["roster-backup.db", "roster-backup.key"] {
        std::fs::copy(old.path().join(f), new.path().join(f)).unwrap();
    }
    bash(new.path(), &[], restore);
    let restored = RosterProcess::start_with(
        &new.path().join("roster-data"),
        None,
        &[("ROSTER_SECRET_KEY", "")],
    )
    .await;
    assert_restored(&restored, &token, &c, users).await;
    restored.stop().await;
}
