//! End-to-end Microsoft Entra ID sync (issue 4; SPEC D1, D2, D3, D6, D7,
//! B1): the real `roster` binary, driven over HTTP only, reading a tenant
//! served by the Graph emulator (`roster-graph-emulator`) through the real
//! Graph client. Each D3 rule that the Entra path feeds has its check
//! (named in the test names), plus throttling, an expired and a revoked
//! secret, an expired delta link and the switch between LDAP and Entra ID in
//! both directions. PostgreSQL for most; the core flow on SQLite too.
//!
//! The binary runs without its worker (`ROSTER_NO_WORKER`): only the tests
//! start syncs.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use roster_graph_emulator::{Fault, GenerateUsers, GraphEmulator, Group, TenantFixture, User};
use roster_testkit::{DirectoryData, Slapd, SlapdConfig, Style};
use roster_tests::e2e::{Db, RosterEnv};
use roster_tests::process::enc;
use serde_json::{json, Value};

/// One running `roster serve` (see [`RosterEnv`]) with this file's helpers.
struct Env(RosterEnv);

impl std::ops::Deref for Env {
    type Target = RosterEnv;
    fn deref(&self) -> &RosterEnv {
        &self.0
    }
}

impl Env {
    async fn start(db: Db) -> Env {
        Env(RosterEnv::launch(db, None, &[]).await)
    }

    /// With the worker (scheduler and reaper) every second, reading "now"
    /// from a file the test moves ([`RosterEnv::set_clock`]).
    async fn start_clocked(db: Db, now: DateTime<Utc>) -> Env {
        Env(RosterEnv::launch(db, Some(now), &[]).await)
    }

    async fn put_raw(&self, c: &str, body: Value) -> (StatusCode, Value) {
        self.put_directory_raw(c, body).await
    }

    async fn put(&self, c: &str, body: Value) -> Value {
        self.put_directory(c, body).await
    }

    /// Sync Now: the run id and the answer.
    async fn start_sync(&self, c: &str) -> (String, Value) {
        let v = self.start_sync_answer(c).await;
        (v["run_id"].as_str().unwrap().to_string(), v)
    }

    async fn wait_run(&self, c: &str, run: &str) -> Value {
        self.run_detail(c, run).await["run"].clone()
    }

    /// Sync Now and wait: the run.
    async fn sync(&self, c: &str) -> Value {
        let (run, _) = self.start_sync(c).await;
        self.wait_run(c, &run).await
    }

    /// Sync Now, wait, and the counts of the completed run.
    async fn sync_ok(&self, c: &str) -> Value {
        let r = self.sync(c).await;
        assert_eq!(r["status"], "completed", "{r}");
        r["counts"].clone()
    }

    async fn history_types(&self, c: &str, address: &str) -> Vec<String> {
        let (s, v) = self
            .api
            .get(&format!("/v1/customers/{c}/users/{}/history", enc(address)))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_type"].as_str().unwrap().to_string())
            .collect()
    }

    async fn conflicts(&self, c: &str) -> Vec<String> {
        let (s, v) = self
            .api
            .get(&format!("/v1/customers/{c}/conflicts?page_size=1000"))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let mut out: Vec<String> = v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["address"].as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    }

    async fn directory(&self, c: &str) -> Value {
        let (s, v) = self.api.get(&format!("/v1/customers/{c}/directory")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

fn with(mut base: Value, patch: Value) -> Value {
    let o = base.as_object_mut().unwrap();
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            o.remove(k);
        } else {
            o.insert(k.clone(), v.clone());
        }
    }
    base
}

fn no_guard() -> Value {
    json!({"max_flags": 100000, "max_percent": 100, "min_flags_for_percent": 100000})
}

/// Entra ID settings for the emulator's tenant, sync enabled.
fn entra_settings(emu: &GraphEmulator, fx: &TenantFixture) -> Value {
    json!({
        "kind": "entra",
        "tenant": fx.tenant_id,
        "client_id": fx.client_id,
        "client_secret": fx.client_secret,
        "login_endpoint": emu.login_base(),
        "graph_endpoint": emu.graph_base(),
        "enabled": true,
        "guard": no_guard(),
    })
}

/// Graph requests to `path` (relative to /v1.0) since the last clear.
fn calls(emu: &GraphEmulator, suffix: &str) -> usize {
    emu.graph_requests()
        .iter()
        .filter(|r| r.path.ends_with(suffix))
        .count()
}

fn person(upn: &str, given: &str, surname: &str) -> User {
    User::new(upn).named(given, surname)
}

// ---------------------------------------------------------------------------
// D6, D7: settings, Test connection, Sync Now.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d6_d7_entra_settings_are_checked_secret_never_returned_test_names_the_failure() {
    let env = Env::start(Db::Postgres).await;
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("settings");
    fx.tenant.generate_users(GenerateUsers::new(5, &fx.domain));
    fx.tenant
        .add_group(Group::distribution("All", &format!("all@{}", fx.domain)));
    let c = env.customer("Settings", &[&fx.domain]).await;
    let good = entra_settings(&emu, &fx);

    // Checked when saved, with what to fix.
    for (patch, words) in [
        (json!({"tenant": "not a tenant"}), "tenant"),
        (json!({"tenant": "common"}), "multi-tenant"),
        (json!({"client_id": "my-app"}), "client_id"),
        (json!({"filter": "  "}), "filter"),
        (
            json!({"filter": "startsWith(department,'Sales'"}),
            "not closed",
        ),
        (
            json!({"graph_endpoint": "https://graph.example.com/v1.0"}),
            "documented hosts",
        ),
        (json!({"host": "dc.example.com"}), "LDAP setting"),
        (json!({"client_secret": null}), "client secret is required"),
    ] {
        let (s, v) = env.put_raw(&c, with(good.clone(), patch.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{patch}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(words),
            "{patch}: {v}"
        );
    }

    // D6 defaults; D7: the secret is never returned.
    let view = env.put(&c, good.clone()).await;
    assert_eq!(view["enabled"], "entra", "{view}");
    let e = &view["entra"];
    assert_eq!(e["client_secret_set"], true);
    assert_eq!(e["poll_interval"], "6h");
    assert_eq!(e["delete_after"], "7d");
    assert_eq!(e["include_disabled"], false);
    let secret = fx.client_secret.clone();
    assert!(!view.to_string().contains(&secret), "D7: {view}");
    assert!(!env.directory(&c).await.to_string().contains(&secret));

    // Test connection: passed, or the specific reason.
    let t = env.test_connection(&c, None).await;
    assert_eq!(t["ok"], true, "{t}");
    assert_eq!(t["message"], "Azure connection test passed");
    assert_eq!((n(&t, "users"), n(&t, "groups")), (5, 1), "{t}");
    let failing = |patch: Value| with(good.clone(), patch);
    let other = fx.tenant.register_app("No permissions");
    other.add_secret("no-perm-secret", Duration::from_secs(3600));
    for (body, code) in [
        (
            failing(json!({"tenant": "nowhere.onmicrosoft.com"})),
            "tenant_not_found",
        ),
        (
            failing(json!({"client_id": "00001111-aaaa-2222-bbbb-3333cccc4444"})),
            "client_id_not_found",
        ),
        (
            failing(json!({"client_secret": "not-the-secret"})),
            "secret_rejected",
        ),
        (
            failing(json!({"client_id": other.client_id(), "client_secret": "no-perm-secret"})),
            "permission",
        ),
        (
            failing(json!({"filter": "nosuchproperty eq 'x'"})),
            "invalid_filter",
        ),
    ] {
        let t = env.test_connection(&c, Some(body.clone())).await;
        assert_eq!(t["ok"], false, "{body}: {t}");
        assert_eq!(t["code"], code, "{body}: {t}");
        assert!(!t.to_string().contains("not-the-secret"), "D7: {t}");
    }
    let expiring = fx
        .app
        .add_secret("expiring-secret", Duration::from_secs(60));
    fx.app.expire_secret(expiring);
    let t = env
        .test_connection(
            &c,
            Some(failing(json!({"client_secret": "expiring-secret"}))),
        )
        .await;
    assert_eq!(t["code"], "secret_expired", "{t}");

    // Sync Now answers that the sync has started.
    let (run, v) = env.start_sync(&c).await;
    assert_eq!(v["message"], "the sync has started", "{v}");
    let r = env.wait_run(&c, &run).await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["kind"], "entra", "{r}");
    // D7: the secret is in no log line.
    assert!(
        !env.p.log_text().contains(&secret),
        "D7: the log holds the secret"
    );
}

// ---------------------------------------------------------------------------
// The core flow: D3.a-f, D3.h, D3.j, U4, B1, on both back-ends.

async fn core_flow(db: Db) {
    let env = Env::start(db).await;
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("coreflow");
    let d = fx.domain.clone();
    fx.tenant.add_domain("unmanaged.example");
    let mut ann = person(&format!("ann@{d}"), "Ann", "Lee");
    ann.proxy_addresses = vec![
        format!("SMTP:ann@{d}"),
        format!("smtp:ann.lee@{d}"),
        "smtp:ann@unmanaged.example".into(),
        "X500:/o=Contoso/ou=Exchange/cn=ann".into(),
    ];
    ann.mobile_phone = Some("+1 555 0100".into());
    ann.business_phones = vec!["+1 555 0101".into()];
    ann.company_name = Some("Contoso".into());
    ann.department = Some("Sales".into());
    let ann = fx.tenant.add_user(ann);
    let bob = fx
        .tenant
        .add_user(person(&format!("bob@{d}"), "Bob", "Ray"));
    let dave = fx
        .tenant
        .add_user(person(&format!("dave@{d}"), "Dave", "Kim"));
    let mut carl = person(&format!("carl@{d}"), "Carl", "Ng");
    carl.account_enabled = false;
    fx.tenant.add_user(carl);
    fx.tenant
        .add_user(person("olga@unmanaged.example", "Olga", "Unmanaged"));
    let mut nomail = person(&format!("nomail@{d}"), "No", "Mail");
    nomail.mail = None;
    nomail.proxy_addresses.clear();
    fx.tenant.add_user(nomail);
    let sales = fx
        .tenant
        .add_group(Group::distribution("Sales", &format!("sales@{d}")));
    fx.tenant.set_group_members(&sales, &[&ann, &bob]);
    fx.tenant.add_group(Group::security("Security only"));
    let c = env.customer("Contoso", &[&d]).await;
    env.put(&c, entra_settings(&emu, &fx)).await;

    // D3.e: added with the directory (Azure) as source; B1: a full read first.
    emu.clear_requests();
    let counts = env.sync_ok(&c).await;
    assert!(calls(&emu, "/users") >= 1, "a full read lists /users");
    assert_eq!(
        calls(&emu, "/users/delta"),
        1,
        "the delta link is taken ($deltatoken=latest)"
    );
    assert_eq!(
        n(&counts, "read"),
        7,
        "6 users and 1 mail-enabled group: {counts}"
    );
    assert_eq!(n(&counts, "added"), 4, "ann, bob, dave, sales: {counts}");
    let users = env.users(&c, "").await;
    assert_eq!(users.len(), 4, "{users:?}");
    assert!(users.iter().all(|u| u["source"] == "entra"
        && u["source_label"] == "Azure"
        && u["status"] == "active"));
    // D3.b: olga's domain is not managed, carl is disabled, nomail has none.
    assert_eq!(env.status_of(&c, "olga@unmanaged.example").await, "absent");
    assert_eq!(env.status_of(&c, &format!("carl@{d}")).await, "absent");
    // D3.c, D3.d: smtp: aliases in managed domains only; the attributes.
    let a = env.user(&c, &format!("ann@{d}")).await;
    assert_eq!(a["aliases"], json!([format!("ann.lee@{d}")]), "{a}");
    assert_eq!(a["first_name"], "Ann");
    assert_eq!(a["last_name"], "Lee");
    assert_eq!(a["mobile"], "+1 555 0100");
    assert_eq!(a["home_phone"], "+1 555 0101", "businessPhones");
    assert_eq!(a["company"], "Contoso");
    assert_eq!(a["department"], "Sales");
    // U4: the mail-enabled group is a distribution list with its members.
    let list = env.user(&c, &format!("sales@{d}")).await;
    assert_eq!(list["kind"], "distribution_list", "{list}");

    // D3.f unchanged: a second run changes nothing, and is a delta round.
    emu.clear_requests();
    let counts = env.sync_ok(&c).await;
    assert_eq!(calls(&emu, "/users"), 0, "B1: no full list on a delta run");
    assert_eq!(calls(&emu, "/users/delta"), 1);
    assert_eq!(
        n(&counts, "added") + n(&counts, "updated") + n(&counts, "flagged"),
        0,
        "{counts}"
    );
    assert_eq!(n(&counts, "read"), 7, "the complete directory: {counts}");

    // Changes in the tenant, seen by delta.
    fx.tenant
        .update_user(&bob, |u| u.department = Some("Finance".into()));
    fx.tenant.delete_user(&dave);
    fx.tenant.set_account_enabled(&ann, false);
    let eve = fx.tenant.add_user(person(&format!("eve@{d}"), "Eve", "Ho"));
    fx.tenant.add_group_member(&sales, &eve);
    emu.clear_requests();
    let counts = env.sync_ok(&c).await;
    assert_eq!(calls(&emu, "/users"), 0, "B1: delta");
    assert!(n(&counts, "added") >= 1, "{counts}");
    // D3.f
    assert_eq!(
        env.user(&c, &format!("bob@{d}")).await["department"],
        "Finance"
    );
    // D3.e
    assert_eq!(env.status_of(&c, &format!("eve@{d}")).await, "active");
    // D3.h: deleted -> missing; disabled -> disabled.
    let dv = env.user(&c, &format!("dave@{d}")).await;
    assert_eq!(
        (dv["status"].as_str(), dv["flag"]["reason"].as_str()),
        (Some("pending_deletion"), Some("missing")),
        "{dv}"
    );
    let av = env.user(&c, &format!("ann@{d}")).await;
    assert_eq!(
        (av["status"].as_str(), av["flag"]["reason"].as_str()),
        (Some("pending_deletion"), Some("disabled")),
        "{av}"
    );
    // D3.m: both are conflicts.
    assert_eq!(
        env.conflicts(&c).await,
        vec![format!("ann@{d}"), format!("dave@{d}")]
    );

    // D3.j: back in the directory, enabled: unflagged.
    fx.tenant.restore_user(&dave);
    fx.tenant.set_account_enabled(&ann, true);
    let counts = env.sync_ok(&c).await;
    assert_eq!(n(&counts, "unflagged"), 2, "{counts}");
    assert_eq!(env.status_of(&c, &format!("dave@{d}")).await, "active");
    assert_eq!(env.status_of(&c, &format!("ann@{d}")).await, "active");
    assert!(env.conflicts(&c).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d3a_to_d3f_d3h_d3j_u4_b1_entra_core_flow_postgres() {
    core_flow(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d3a_to_d3f_d3h_d3j_u4_b1_entra_core_flow_sqlite() {
    core_flow(Db::Sqlite).await;
}

// ---------------------------------------------------------------------------
// D3.g, D3.h (include disabled), D3.l, D3.o, D3.p, D3.s, D3.t

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d3g_d3h_d3l_d3o_d3p_d3s_d3t_entra_rules_through_delta_runs() {
    let env = Env::start(Db::Postgres).await;
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("rules");
    let d = fx.domain.clone();
    let ids = fx.tenant.generate_users(GenerateUsers::new(20, &d));
    let mails: Vec<String> = ids
        .iter()
        .map(|id| fx.tenant.user(id).unwrap().mail.unwrap())
        .collect();
    let mail = |i: usize| mails[i].clone();
    let c = env.customer("Rules", &[&d]).await;
    // D3.g: a manual user the directory also has.
    let (s, v) = env
        .api
        .post(
            &format!("/v1/customers/{c}/users"),
            json!({"address": mail(0), "notes": "added by hand"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // D3.o: user 1 is an exception (by object id).
    let (s, v) = env
        .api
        .post(
            &format!("/v1/customers/{c}/directory/exceptions"),
            json!({"kind": "user", "object_id": ids[1]}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    // D3.t: a dry run changes nothing.
    env.put(&c, entra_settings(&emu, &fx)).await;
    let (s, plan) = env
        .api
        .call(
            Method::POST,
            &format!("/v1/customers/{c}/directory/sync?dry_run=true"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{plan}");
    assert_eq!(n(&plan["counts"], "added"), 18, "{plan}");
    assert_eq!(env.users(&c, "").await.len(), 1, "D3.t: nothing changed");

    env.sync_ok(&c).await;
    let u0 = env.user(&c, &mail(0)).await;
    assert_eq!(u0["source"], "manual", "D3.g: source kept: {u0}");
    assert!(u0["first_name"].is_string(), "D3.g: supplemented: {u0}");
    assert_eq!(env.status_of(&c, &mail(1)).await, "absent", "D3.o");

    // D3.p: an addition is created at once and not flagged while listed.
    let extra = format!("shared-mailbox@{d}");
    let (s, v) = env
        .api
        .post(
            &format!("/v1/customers/{c}/directory/additions"),
            json!({"address": extra}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    assert_eq!(env.user(&c, &extra).await["source"], "entra");

    // D3.l: deleted by hand while sync is on -> added again (delta run).
    let (s, v) = env
        .api
        .delete(&format!("/v1/customers/{c}/users/{}", enc(&mail(2))))
        .await;
    assert!(s.is_success(), "{v}");
    // D3.g / D3.o: the manual user and the exception are never flagged.
    fx.tenant.delete_user(&ids[0]);
    fx.tenant.delete_user(&ids[1]);
    emu.clear_requests();
    env.sync_ok(&c).await;
    assert_eq!(calls(&emu, "/users"), 0, "a delta run");
    assert_eq!(env.status_of(&c, &mail(2)).await, "active", "D3.l");
    assert_eq!(env.status_of(&c, &mail(0)).await, "active", "D3.g");
    assert_eq!(env.status_of(&c, &extra).await, "active", "D3.p");

    // D3.h: with include disabled, a disabled user is not flagged.
    env.put(
        &c,
        with(
            entra_settings(&emu, &fx),
            json!({"include_disabled": true, "client_secret": null}),
        ),
    )
    .await;
    fx.tenant.set_account_enabled(&ids[3], false);
    env.sync_ok(&c).await;
    assert_eq!(env.status_of(&c, &mail(3)).await, "active");

    // D3.s: the default guard holds a run that would flag 8 of 18.
    env.put(
        &c,
        with(
            entra_settings(&emu, &fx),
            json!({"include_disabled": true, "client_secret": null, "guard": null}),
        ),
    )
    .await;
    for id in &ids[4..12] {
        fx.tenant.delete_user(id);
    }
    let r = env.sync(&c).await;
    assert_eq!(r["status"], "held", "{r}");
    assert_eq!(r["would_flag"], 8, "{r}");
    assert!(env.conflicts(&c).await.is_empty(), "held: nobody flagged");
}

// ---------------------------------------------------------------------------
// D3.r: throttling (retried; given up), a dropped page.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d3r_entra_throttling_is_retried_and_a_read_given_up_flags_nobody() {
    let env = Env::start(Db::Postgres).await;
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("throttled");
    let d = fx.domain.clone();
    let ids = fx.tenant.generate_users(GenerateUsers::new(10, &d));
    let mails: Vec<String> = ids
        .iter()
        .map(|id| fx.tenant.user(id).unwrap().mail.unwrap())
        .collect();
    let mail = |i: usize| mails[i].clone();
    let c = env.customer("Throttled", &[&d]).await;
    env.put(&c, entra_settings(&emu, &fx)).await;
    // Throttled twice (Retry-After: 1) on the first page: waited, retried.
    emu.inject(Fault::throttle(1).on_path("/users").times(2));
    emu.inject(Fault::unavailable(1).on_path_prefix("/groups").times(1));
    let started = Instant::now();
    assert_eq!(n(&env.sync_ok(&c).await, "added"), 10);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After honoured"
    );
    let throttled = emu
        .graph_requests()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert_eq!(throttled, 2);

    // Throttled beyond the retries: failed, nobody flagged (D3.r).
    fx.tenant.delete_user(&ids[0]);
    emu.inject(Fault::throttle(0).on_path("/users/delta").times(100));
    let r = env.sync(&c).await;
    assert_eq!(
        (r["status"].as_str(), r["code"].as_str()),
        (Some("failed"), Some("throttled")),
        "{r}"
    );
    assert_eq!(env.status_of(&c, &mail(0)).await, "active");
    emu.clear_faults();

    // A page cut off mid-body: failed as incomplete, nobody flagged.
    emu.inject(Fault::drop_connection().on_path("/users/delta").times(100));
    let r = env.sync(&c).await;
    assert_eq!(
        (r["status"].as_str(), r["code"].as_str()),
        (Some("failed"), Some("incomplete")),
        "{r}"
    );
    assert_eq!(env.status_of(&c, &mail(0)).await, "active");
    emu.clear_faults();

    // Once Graph answers again: flagged.
    env.sync_ok(&c).await;
    assert_eq!(env.status_of(&c, &mail(0)).await, "pending_deletion");
}

// ---------------------------------------------------------------------------
// Expired and revoked secrets.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d6_d3r_entra_expired_or_revoked_secret_fails_the_run_and_flags_nobody() {
    let env = Env::start(Db::Postgres).await;
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("secrets");
    let d = fx.domain.clone();
    let ids = fx.tenant.generate_users(GenerateUsers::new(6, &d));
    let mails: Vec<String> = ids
        .iter()
        .map(|id| fx.tenant.user(id).unwrap().mail.unwrap())
        .collect();
    let mail = |i: usize| mails[i].clone();
    let c = env.customer("Secrets", &[&d]).await;
    let first = fx
        .app
        .add_secret("first-secret", Duration::from_secs(86_400));
    env.put(
        &c,
        with(
            entra_settings(&emu, &fx),
            json!({"client_secret": "first-secret"}),
        ),
    )
    .await;
    env.sync_ok(&c).await;

    // The secret expires; the cached token outlives it until it expires too.
    fx.app.expire_secret(first);
    emu.expire_access_tokens();
    fx.tenant.delete_user(&ids[0]);
    let r = env.sync(&c).await;
    assert_eq!(
        (r["status"].as_str(), r["code"].as_str()),
        (Some("failed"), Some("secret_expired")),
        "{r}"
    );
    assert!(
        r["reason"].as_str().unwrap().contains("AADSTS7000222"),
        "{r}"
    );
    assert_eq!(env.status_of(&c, &mail(0)).await, "active", "D3.r");

    // A new secret is saved: the run works again.
    let second = fx
        .app
        .add_secret("second-secret", Duration::from_secs(86_400));
    env.put(
        &c,
        with(
            entra_settings(&emu, &fx),
            json!({"client_secret": "second-secret"}),
        ),
    )
    .await;
    env.sync_ok(&c).await;
    assert_eq!(env.status_of(&c, &mail(0)).await, "pending_deletion");

    // It is revoked (removed from the app registration).
    fx.app.remove_secret(second);
    emu.expire_access_tokens();
    fx.tenant.delete_user(&ids[1]);
    let r = env.sync(&c).await;
    assert_eq!(
        (r["status"].as_str(), r["code"].as_str()),
        (Some("failed"), Some("secret_rejected")),
        "{r}"
    );
    assert_eq!(env.status_of(&c, &mail(1)).await, "active", "D3.r");
    let log = env.p.log_text();
    assert!(
        !log.contains("first-secret") && !log.contains("second-secret"),
        "D7"
    );
}

// ---------------------------------------------------------------------------
// B1: an expired delta link, the backstop.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_entra_expired_delta_link_falls_back_to_a_full_read() {
    let env = Env::start(Db::Sqlite).await;
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("deltalink");
    let d = fx.domain.clone();
    let ids = fx.tenant.generate_users(GenerateUsers::new(8, &d));
    let mails: Vec<String> = ids
        .iter()
        .map(|id| fx.tenant.user(id).unwrap().mail.unwrap())
        .collect();
    let mail = |i: usize| mails[i].clone();
    let c = env.customer("Delta", &[&d]).await;
    env.put(&c, entra_settings(&emu, &fx)).await;
    env.sync_ok(&c).await;

    fx.tenant.delete_user_permanently(&ids[0]);
    fx.tenant
        .update_user(&ids[1], |u| u.surname = Some("Renamed".into()));
    fx.tenant.expire_delta_tokens();
    emu.clear_requests();
    env.sync_ok(&c).await;
    let gone = emu
        .graph_requests()
        .iter()
        .filter(|r| r.status == 410)
        .count();
    assert_eq!(gone, 1, "the delta link was rejected once");
    assert!(calls(&emu, "/users") >= 1, "then a full read");
    assert_eq!(env.status_of(&c, &mail(0)).await, "pending_deletion");
    assert_eq!(env.user(&c, &mail(1)).await["last_name"], "Renamed");

    // The full read left a new link: the next run is a delta round again.
    emu.clear_requests();
    env.sync_ok(&c).await;
    assert_eq!(calls(&emu, "/users"), 0);

    // full_sync_hours 0: every run reads everything.
    env.put(
        &c,
        with(
            entra_settings(&emu, &fx),
            json!({"client_secret": null, "full_sync_hours": 0}),
        ),
    )
    .await;
    emu.clear_requests();
    env.sync_ok(&c).await;
    assert!(calls(&emu, "/users") >= 1);
    assert_eq!(calls(&emu, "/users/delta"), 0);
}

// ---------------------------------------------------------------------------
// D3.i, D3.k, D3.m, D3.n, D3.q: the deletion delay and what follows, with
// the worker's reaper and a clock the test moves.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d3i_d3k_d3m_d3n_d3q_entra_delay_return_conflict_actions_domain_removal_and_disable() {
    let t0: DateTime<Utc> = "2031-03-02T09:00:00Z".parse().unwrap();
    let env = Env::start_clocked(Db::Postgres, t0).await;
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("delay");
    let d = fx.domain.clone();
    let second = "second.example";
    fx.tenant.add_domain(second);
    let ids = fx.tenant.generate_users(GenerateUsers::new(8, &d));
    let mails: Vec<String> = ids
        .iter()
        .map(|id| fx.tenant.user(id).unwrap().mail.unwrap())
        .collect();
    let mail = |i: usize| mails[i].clone();
    fx.tenant.update_user(&ids[0], |u| {
        u.proxy_addresses.push(format!("smtp:zero@{second}"))
    });
    let s0 = format!("s0@{second}");
    fx.tenant.add_user(person(&s0, "Second", "Domain"));
    let c = env.customer("Delay", &[&d, second]).await;
    env.put(
        &c,
        with(
            entra_settings(&emu, &fx),
            json!({"delete_after": "7d", "poll_interval": "7d"}),
        ),
    )
    .await;
    env.sync_ok(&c).await;
    assert_eq!(
        env.user(&c, &mail(0)).await["aliases"],
        json!([format!("zero@{second}")])
    );
    let u1_id = env.user(&c, &mail(1)).await["id"].clone();

    // D3.i: flagged at T0, deleted by the reaper once 7 days have passed.
    fx.tenant.delete_user(&ids[1]);
    env.sync_ok(&c).await;
    let f = env.user(&c, &mail(1)).await;
    assert_eq!(f["status"], "pending_deletion");
    let delete_at: DateTime<Utc> = f["flag"]["delete_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(delete_at, t0 + chrono::Duration::days(7), "{f}");
    env.set_clock(t0 + chrono::Duration::days(8));
    env.wait_status(&c, &mail(1), "deleted").await;

    // D3.k: back in the directory: added again as the same user (U6).
    fx.tenant.restore_user(&ids[1]);
    env.sync_ok(&c).await;
    let back = env.user(&c, &mail(1)).await;
    assert_eq!(
        (back["status"].as_str(), &back["id"]),
        (Some("active"), &u1_id),
        "{back}"
    );
    assert!(env
        .history_types(&c, &mail(1))
        .await
        .contains(&"UserReturned".to_string()));

    // D3.m: conflicts, and Delete, Ignore, Deactivate.
    for i in [2, 3, 4] {
        fx.tenant.delete_user(&ids[i]);
    }
    env.sync_ok(&c).await;
    assert_eq!(env.conflicts(&c).await, vec![mail(2), mail(3), mail(4)]);
    assert_eq!(
        env.conflict_action(&c, "delete", &[&mail(2)]).await[0]["ok"],
        true
    );
    assert_eq!(
        env.conflict_action(&c, "ignore", &[&mail(3)]).await[0]["ok"],
        true
    );
    assert_eq!(
        env.conflict_action(&c, "deactivate", &[&mail(4)]).await[0]["ok"],
        true
    );
    assert_eq!(env.status_of(&c, &mail(2)).await, "deleted");
    assert_eq!(env.status_of(&c, &mail(3)).await, "active");
    assert_eq!(env.status_of(&c, &mail(4)).await, "deactivated");
    let counts = env.sync_ok(&c).await;
    assert_eq!(
        n(&counts, "flagged"),
        0,
        "ignored: not flagged again: {counts}"
    );
    assert!(env.conflicts(&c).await.is_empty());

    // D3.n: removing a domain deletes its users at once and unmaps its aliases.
    let (s, v) = env
        .api
        .delete(&format!("/v1/customers/{c}/domains/{second}"))
        .await;
    assert!(s.is_success(), "{v}");
    assert_eq!(env.status_of(&c, &s0).await, "deleted");
    assert_eq!(env.user(&c, &mail(0)).await["aliases"], json!([]));

    // D3.q: disabled, every user is kept, no new flag; existing flags expire.
    fx.tenant.delete_user(&ids[5]);
    env.sync_ok(&c).await;
    assert_eq!(env.status_of(&c, &mail(5)).await, "pending_deletion");
    let (s, v) = env
        .api
        .call(
            Method::POST,
            &format!("/v1/customers/{c}/directory/disable"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    fx.tenant.delete_user(&ids[6]);
    env.set_clock(t0 + chrono::Duration::days(30));
    env.wait_status(&c, &mail(5), "deleted").await;
    let (s, v) = env
        .api
        .call(
            Method::POST,
            &format!("/v1/customers/{c}/directory/sync"),
            None,
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("sync_not_enabled")),
        "{v}"
    );
    assert_eq!(
        env.status_of(&c, &mail(6)).await,
        "active",
        "no new flag while disabled"
    );
}

// ---------------------------------------------------------------------------
// D1, D2: one source at a time, the switch both ways.

const LDAP_BASE: &str = "dc=example,dc=com";
const LDAP_DOMAIN: &str = "example.org";

fn ldap_settings(slapd: &Slapd) -> Value {
    json!({
        "kind": "ldap",
        "host": slapd.host(),
        "port": slapd.port(),
        "ssl": false,
        "bind_user": slapd.root_dn(),
        "password": slapd.root_password(),
        "base_dn": LDAP_BASE,
        "preset": "active_directory",
        "timeout_secs": 20,
        "enabled": true,
        "guard": no_guard(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_d2_switching_between_ldap_and_entra_both_ways_needs_confirmation_and_flags_the_rest() {
    let env = Env::start(Db::Postgres).await;
    let data = DirectoryData::new(Style::AdLike, LDAP_BASE, LDAP_DOMAIN).users(4);
    let slapd = Slapd::start(SlapdConfig::ad_like().data(data.clone()))
        .await
        .expect("slapd");
    let lmail = |i: usize| data.user(i).mail.unwrap();
    let emu = GraphEmulator::start().await;
    let fx = emu.standard_tenant("switch");
    fx.tenant.add_domain(LDAP_DOMAIN);
    // Entra has LDAP users 0 and 1, and one of its own.
    for i in 0..2 {
        fx.tenant
            .add_user(person(&lmail(i), "Same", &format!("Person{i}")));
    }
    let newcomer = format!("newcomer@{LDAP_DOMAIN}");
    fx.tenant.add_user(person(&newcomer, "New", "Comer"));
    let c = env.customer("Switch", &[LDAP_DOMAIN]).await;

    env.put(&c, ldap_settings(&slapd)).await;
    assert_eq!(n(&env.sync_ok(&c).await, "added"), 4);

    // D1: enabling Entra ID while LDAP is enabled needs a confirmation.
    let (s, v) = env.put_raw(&c, entra_settings(&emu, &fx)).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("confirm_switch")),
        "{v}"
    );
    assert_eq!(env.directory(&c).await["enabled"], "ldap");
    let v = env
        .put(
            &c,
            with(entra_settings(&emu, &fx), json!({"confirm_switch": true})),
        )
        .await;
    assert_eq!(v["enabled"], "entra", "{v}");
    assert!(v["ldap"].is_object(), "LDAP settings are kept: {v}");

    // D2: users the new source returns move to it; the others are flagged.
    let r = env.sync(&c).await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["kind"], "entra");
    for i in 0..2 {
        let u = env.user(&c, &lmail(i)).await;
        assert_eq!(
            (u["source"].as_str(), u["status"].as_str()),
            (Some("entra"), Some("active")),
            "{u}"
        );
    }
    assert_eq!(env.user(&c, &newcomer).await["source"], "entra");
    for i in 2..4 {
        let u = env.user(&c, &lmail(i)).await;
        assert_eq!(u["status"], "pending_deletion", "{u}");
        assert_eq!(u["flag"]["reason"], "missing");
        assert!(u["flag"]["delete_at"].is_string(), "per delete-after: {u}");
    }

    // And back: enabling LDAP needs a confirmation too.
    let enable = format!("/v1/customers/{c}/directory/enable");
    let (s, v) = env
        .api
        .call(Method::POST, &enable, Some(json!({"kind": "ldap"})))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("confirm_switch")),
        "{v}"
    );
    let (s, v) = env
        .api
        .call(
            Method::POST,
            &enable,
            Some(json!({"kind": "ldap", "confirm_switch": true})),
        )
        .await;
    assert_eq!((s, &v["enabled"]), (StatusCode::OK, &json!("ldap")), "{v}");
    let r = env.sync(&c).await;
    assert_eq!(
        (r["status"].as_str(), r["kind"].as_str()),
        (Some("completed"), Some("ldap")),
        "{r}"
    );
    for i in 0..4 {
        let u = env.user(&c, &lmail(i)).await;
        assert_eq!(
            (u["source"].as_str(), u["status"].as_str()),
            (Some("ldap"), Some("active")),
            "{u}"
        );
    }
    let nc = env.user(&c, &newcomer).await;
    assert_eq!(
        (nc["status"].as_str(), nc["flag"]["reason"].as_str()),
        (Some("pending_deletion"), Some("missing")),
        "{nc}"
    );
}
