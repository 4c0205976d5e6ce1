//! What the end-to-end directory tests (LDAP and Entra ID) share: one
//! running `roster serve` on SQLite or PostgreSQL, optionally on a clock the
//! test moves, and the HTTP calls every directory test makes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use roster_testkit::{Flavour, PgDb, Slapd};
use serde_json::{json, Value};

use crate::process::{enc, Api, RosterProcess};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// One running `roster serve` and what it needs. Fields drop in order: the
/// process first, then its database, then the folder.
pub struct RosterEnv {
    pub p: RosterProcess,
    pub api: Api,
    /// The PostgreSQL database, when on PostgreSQL.
    pub pg: Option<PgDb>,
    /// The file the binary reads "now" from, when started on a clock.
    pub clock: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

/// Writes "now" for a clocked binary, atomically: it never reads half a time.
pub fn write_clock(path: &Path, now: DateTime<Utc>) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, now.to_rfc3339()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl RosterEnv {
    /// Without a clock the binary runs without its worker
    /// (`ROSTER_NO_WORKER`), so that no scheduled run interferes with what a
    /// test counts; with one, the worker runs every second on the time the
    /// test sets ([`RosterEnv::set_clock`]).
    pub async fn launch(db: Db, now: Option<DateTime<Utc>>, extra: &[(&str, &str)]) -> RosterEnv {
        let dir = tempfile::tempdir().unwrap();
        let pg = match db {
            Db::Postgres => Some(PgDb::create().await.expect("PostgreSQL test database")),
            Db::Sqlite => None,
        };
        let clock = dir.path().join("now.txt");
        let clock_s = clock.display().to_string();
        let mut env: Vec<(&str, &str)> = Vec::new();
        match now {
            Some(now) => {
                write_clock(&clock, now);
                env.push(("ROSTER_CLOCK_FILE", &clock_s));
                env.push(("ROSTER_WORKER_TICK_SECS", "1"));
            }
            None => env.push(("ROSTER_NO_WORKER", "true")),
        }
        env.extend(extra.iter().copied());
        let p =
            RosterProcess::start_with(&dir.path().join("data"), pg.as_ref().map(|d| d.url()), &env)
                .await;
        let api = p.admin();
        RosterEnv {
            p,
            api,
            pg,
            clock: now.map(|_| clock),
            _dir: dir,
        }
    }

    pub fn set_clock(&self, now: DateTime<Utc>) {
        write_clock(self.clock.as_ref().expect("a clocked binary"), now);
    }

    /// A customer with room for every test's users.
    pub async fn customer(&self, name: &str, domains: &[&str]) -> String {
        self.api.customer(name, 100_000, domains).await
    }

    pub async fn put_directory_raw(&self, c: &str, body: Value) -> (StatusCode, Value) {
        self.api
            .call(
                Method::PUT,
                &format!("/v1/customers/{c}/directory"),
                Some(body),
            )
            .await
    }

    pub async fn put_directory(&self, c: &str, body: Value) -> Value {
        let (s, v) = self.put_directory_raw(c, body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// Test connection: the settings given, or the stored ones.
    pub async fn test_connection(&self, c: &str, body: Option<Value>) -> Value {
        let (s, v) = self
            .api
            .call(
                Method::POST,
                &format!("/v1/customers/{c}/directory/test"),
                body,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// Sync Now: 202 and its answer. With the worker on, a scheduled run
    /// may be going: wait for it and ask again.
    pub async fn start_sync_answer(&self, c: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (s, v) = self
                .api
                .call(
                    Method::POST,
                    &format!("/v1/customers/{c}/directory/sync"),
                    None,
                )
                .await;
            if s == StatusCode::ACCEPTED {
                return v;
            }
            assert!(
                self.clock.is_some()
                    && s == StatusCode::CONFLICT
                    && v["code"] == "sync_running"
                    && Instant::now() < deadline,
                "Sync Now: {s} {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GET .../syncs/{run} once the run is no longer `running`.
    pub async fn run_detail(&self, c: &str, run: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (s, v) = self
                .api
                .get(&format!(
                    "/v1/customers/{c}/directory/syncs/{run}?page_size=1000"
                ))
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            if v["run"]["status"] != "running" {
                return v;
            }
            assert!(Instant::now() < deadline, "run {run} still running: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every user of a list query (all pages).
    pub async fn users(&self, c: &str, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut path = format!("/v1/customers/{c}/users?page_size=1000&{query}");
            if let Some(p) = &page {
                path.push_str(&format!("&page={}", enc(p)));
            }
            let (s, v) = self.api.get(&path).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            out.extend(v["users"].as_array().unwrap().iter().cloned());
            match v["next_page"].as_str() {
                Some(p) => page = Some(p.to_string()),
                None => return out,
            }
        }
    }

    pub async fn user(&self, c: &str, address: &str) -> Value {
        let (s, v) = self
            .api
            .get(&format!("/v1/customers/{c}/users/{}", enc(address)))
            .await;
        assert_eq!(s, StatusCode::OK, "{address}: {v}");
        v
    }

    /// The user at `address`, if there is one (not deleted).
    pub async fn maybe_user(&self, c: &str, address: &str) -> Option<Value> {
        let (s, v) = self
            .api
            .get(&format!("/v1/customers/{c}/users/{}", enc(address)))
            .await;
        if s == StatusCode::OK {
            return Some(v);
        }
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        None
    }

    /// A user's status; `deleted` for a deleted one, `absent` if it never was.
    pub async fn status_of(&self, c: &str, address: &str) -> String {
        if let Some(u) = self.maybe_user(c, address).await {
            return u["status"].as_str().unwrap().to_string();
        }
        let deleted = self
            .users(c, &format!("status=deleted&q={}", enc(address)))
            .await;
        if deleted.iter().any(|u| u["address"] == address) {
            "deleted".into()
        } else {
            "absent".into()
        }
    }

    /// Polls until `address` has `status` (the worker acts on its own); on
    /// timeout the message ends with the server's last log lines.
    pub async fn wait_status(&self, c: &str, address: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.status_of(c, address).await;
            if now == status {
                return;
            }
            if Instant::now() >= deadline {
                let log = self.p.log_text();
                let lines: Vec<&str> = log.lines().collect();
                panic!(
                    "{address} is still {now}, not {status}; log:\n{}",
                    lines[lines.len().saturating_sub(40)..].join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Delete, ignore or deactivate conflicts (D3.m): the per-address results.
    pub async fn conflict_action(&self, c: &str, action: &str, addresses: &[&str]) -> Vec<Value> {
        let (s, v) = self
            .api
            .post(
                &format!("/v1/customers/{c}/conflicts/actions"),
                json!({"action": action, "addresses": addresses}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["results"].as_array().unwrap().clone()
    }
}

/// Plain LDAP settings that reach `slapd` as its root account, sync
/// enabled, with the preset of its flavour.
pub fn ldap_settings(slapd: &Slapd, base_dn: &str) -> Value {
    json!({
        "kind": "ldap",
        "host": slapd.host(),
        "port": slapd.port(),
        "ssl": false,
        "bind_user": slapd.root_dn(),
        "password": slapd.root_password(),
        "base_dn": base_dn,
        "preset": match slapd.flavour() {
            Flavour::AdLike => "active_directory",
            Flavour::InetOrgPerson => "openldap",
        },
        "timeout_secs": 20,
        "enabled": true,
    })
}

/// `base` with the fields of `patch` set (a `null` removes the field).
pub fn with(mut base: Value, patch: Value) -> Value {
    let o = base.as_object_mut().expect("an object");
    for (k, v) in patch.as_object().expect("an object") {
        if v.is_null() {
            o.remove(k);
        } else {
            o.insert(k.clone(), v.clone());
        }
    }
    base
}
