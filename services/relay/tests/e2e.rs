//! End-to-end (E5): the real `roster` binary (`serve`, `relay`), a real
//! nats-server (>= 2.10, from the testkit), stopped and killed mid-way, and
//! the example subscriber.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use roster_events::CustomerId;
use roster_testkit::{NatsServer, PgDb};
use roster_tests::process::{enc, roster_binary};
use roster_tests::{Api, RosterProcess};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const LONG: Duration = Duration::from_secs(90);
const GRACE: Duration = Duration::from_secs(1);

async fn jetstream(nats: &NatsServer) -> async_nats::jetstream::Context {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    async_nats::jetstream::new(client)
}

async fn log_head(p: &RosterProcess) -> i64 {
    let (_, v) = p.admin().get("/readyz").await;
    v["log_head"].as_i64().expect("log_head")
}

async fn add(api: &Api, c: &str, body: Value) {
    let (s, v) = api.post(&format!("/v1/customers/{c}/users"), body).await;
    assert_eq!(s.as_u16(), 201, "{v}");
}

/// Messages in the stream, by its own count.
async fn stream_messages(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e5_serve_publishes_every_change_to_jetstream_as_cloudevents() {
    let nats = NatsServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = RosterProcess::start_with(dir.path(), None, &[("NATS_URL", &nats.url())]).await;
    let api = p.admin();
    let c = api.customer("Acme", 10, &["acme.example"]).await;
    add(
        &api,
        &c,
        json!({"address": "ann@acme.example", "aliases": ["a@acme.example"]}),
    )
    .await;
    let (s, _) = api
        .patch(
            &format!("/v1/customers/{c}/users/{}", enc("ann@acme.example")),
            json!({"department": "Sales"}),
        )
        .await;
    assert_eq!(s.as_u16(), 200);
    let head = log_head(&p).await;
    let js = jetstream(&nats).await;
    let got = consume(
        &js,
        "ROSTER_EVENTS",
        "roster.events.>",
        head as usize,
        GRACE,
        LONG,
    )
    .await;
    assert_once_in_order(&got, 1..=head);
    let types: Vec<&str> = got.iter().map(|r| r.event.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "com.roster.CustomerCreated.v1",
            "com.roster.DomainAdded.v1",
            "com.roster.UserAdded.v1",
            "com.roster.ProfileUpdated.v1"
        ]
    );
    let added = &got[2];
    assert_eq!(added.subject, format!("roster.events.{c}.UserAdded"));
    assert_eq!(added.event.subject.as_deref(), Some("ann@acme.example"));
    assert_eq!(added.event.data["aliases"], json!(["a@acme.example"]));
    assert!(
        added.event.actor.as_deref().unwrap().starts_with("token:"),
        "E2: who"
    );
    assert!(p.log_text().contains("relay publishes to NATS JetStream"));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e5_nats_outage_writes_commit_and_every_event_arrives_once_in_order() {
    let mut nats = NatsServer::start().await.unwrap();
    let pg = PgDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p =
        RosterProcess::start_with(dir.path(), Some(pg.url()), &[("NATS_URL", &nats.url())]).await;
    let api = p.admin();
    let c = api.customer("Acme", 100, &["acme.example"]).await;
    for i in 0..5 {
        add(
            &api,
            &c,
            json!({"address": format!("before{i}@acme.example")}),
        )
        .await;
    }
    let js = jetstream(&nats).await;
    let before = log_head(&p).await as u64;
    eventually(LONG, "published before the outage", || async {
        stream_messages(&js, "ROSTER_EVENTS").await == before
    })
    .await;

    nats.stop().await;
    // Writes still commit while NATS is down.
    for i in 0..10 {
        add(&api, &c, json!({"address": format!("during{i}@acme.example"), "aliases": [format!("d{i}@acme.example")]})).await;
    }
    for i in 0..5 {
        let user = format!(
            "/v1/customers/{c}/users/{}",
            enc(&format!("before{i}@acme.example"))
        );
        let (s, v) = api
            .patch(&user, json!({"notes": "edited during the outage"}))
            .await;
        assert_eq!(s.as_u16(), 200, "{v}");
    }
    let (s, _) = api
        .delete(&format!(
            "/v1/customers/{c}/users/{}",
            enc("during0@acme.example")
        ))
        .await;
    assert_eq!(s.as_u16(), 204);
    let head = log_head(&p).await;
    assert_eq!(
        head as u64,
        before + 16,
        "10 additions, 5 edits, 1 deletion"
    );

    nats.start_again().await.unwrap();
    let js = jetstream(&nats).await;
    let got = consume(
        &js,
        "ROSTER_EVENTS",
        "roster.events.>",
        head as usize,
        GRACE,
        LONG,
    )
    .await;
    assert_once_in_order(&got, 1..=head);
    p.stop().await;
}

static EXAMPLE: Mutex<bool> = Mutex::new(false);

/// The example subscriber, built once per test process.
fn example_binary() -> PathBuf {
    let roster = roster_binary();
    let dir = roster.parent().expect("profile dir").to_path_buf();
    let bin = dir.join("examples").join("recipients");
    let mut built = EXAMPLE.lock().unwrap_or_else(|e| e.into_inner());
    // The test script builds every target first and names the binary it built.
    if std::env::var_os("ROSTER_BIN").is_some() && bin.exists() {
        *built = true;
    }
    if !*built {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args([
            "build",
            "-q",
            "-p",
            "roster-relay",
            "--example",
            "recipients",
        ]);
        if dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().expect("cargo build").success(),
            "building the example failed"
        );
        *built = true;
    }
    bin
}

/// A `roster relay` process.
fn start_relay(data_dir: &Path, database_url: &str, nats_url: &str, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(roster_binary())
        .arg("relay")
        .env("ROSTER_DATA_DIR", data_dir)
        .env("DATABASE_URL", database_url)
        .env("NATS_URL", nats_url)
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start roster relay")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e5_relay_killed_mid_stream_republishes_from_its_checkpoint_and_a_consumer_sees_each_event_once(
) {
    let nats = NatsServer::start().await.unwrap();
    let pg = PgDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A log of 30,000 events (a large sync's worth), written before the relay runs.
    let db = roster_store::Db::connect_postgres(pg.url(), 4)
        .await
        .unwrap();
    let store = roster_store::Store::open(db).await.unwrap();
    let head = append(&store, raw_events(CustomerId::new(), 10_000, 3), 5_000).await;
    let js = jetstream(&nats).await;
    let log = dir.path().join("relay.log");

    // Kill -9 at a point where part of the log is published.
    let mut relay = start_relay(dir.path(), pg.url(), &nats.url(), &log);
    eventually(LONG, "the relay started publishing", || async {
        stream_messages(&js, "ROSTER_EVENTS").await >= 2_000
    })
    .await;
    relay.start_kill().unwrap();
    relay.wait().await.unwrap();
    let at_kill = stream_messages(&js, "ROSTER_EVENTS").await;
    assert!(
        at_kill < head as u64,
        "killed mid-stream ({at_kill} of {head})"
    );

    // Killed again right after restarting, then left to finish.
    let mut relay = start_relay(dir.path(), pg.url(), &nats.url(), &log);
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.start_kill().unwrap();
    relay.wait().await.unwrap();
    let mut relay = start_relay(dir.path(), pg.url(), &nats.url(), &log);
    let got = consume(
        &js,
        "ROSTER_EVENTS",
        "roster.events.>",
        head as usize,
        GRACE,
        LONG,
    )
    .await;
    assert_once_in_order(&got, 1..=head);
    // The stream itself holds each event once (not only this consumer's view).
    assert_eq!(stream_messages(&js, "ROSTER_EVENTS").await, head as u64);
    relay.start_kill().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("relay publishes to NATS JetStream"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e5_in_process_bus_when_nats_url_is_unset() {
    let dir = tempfile::tempdir().unwrap();
    let p = RosterProcess::start_with(dir.path(), None, &[("NATS_URL", "")]).await;
    assert!(
        p.log_text()
            .contains("relay publishes to the in-process bus"),
        "{}",
        p.log_text()
    );
    let api = p.admin();
    let c = api.customer("Acme", 10, &["acme.example"]).await;
    for i in 0..3 {
        add(&api, &c, json!({"address": format!("u{i}@acme.example")})).await;
    }
    let head = log_head(&p).await;
    let metrics_url = format!("{}/metrics", p.base);
    let counter = |name: &'static str| {
        let metrics_url = metrics_url.clone();
        async move {
            let text = reqwest::get(&metrics_url)
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let prefix = format!("{name}{{bus=\"in-process\"}}");
            text.lines()
                .find(|l| l.starts_with(&prefix))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0) as i64
        }
    };
    // Nothing in the process subscribes: every event is passed over
    // unread (issue 17), none is wrapped and published for no one.
    eventually(LONG, "every event passed over in process", || async {
        counter("roster_relay_unheard_total").await == head
    })
    .await;
    assert_eq!(counter("roster_relay_unheard_total").await, head);
    assert_eq!(counter("roster_relay_published_total").await, 0);
    p.stop().await;
}

/// The valid recipients by the API: primary addresses and aliases of the
/// users, lists and folders that are active or pending deletion.
async fn recipients_from_api(api: &Api, c: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut page: Option<String> = None;
    loop {
        let mut path = format!("/v1/customers/{c}/users?page_size=1000");
        if let Some(p) = &page {
            path.push_str(&format!("&page={}", enc(p)));
        }
        let (s, v) = api.get(&path).await;
        assert_eq!(s.as_u16(), 200, "{v}");
        for u in v["users"].as_array().unwrap() {
            let status = u["status"].as_str().unwrap();
            if status == "active" || status == "pending_deletion" {
                out.insert(u["address"].as_str().unwrap().to_string());
                for a in u["aliases"].as_array().unwrap() {
                    out.insert(a.as_str().unwrap().to_string());
                }
            }
        }
        match v["next_page"].as_str() {
            Some(n) => page = Some(n.to_string()),
            None => return out,
        }
    }
}

fn snapshot(path: &Path) -> BTreeSet<String> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .map(|v| {
            v["recipients"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e5_example_subscriber_keeps_the_valid_recipients_equal_to_the_user_list() {
    let example = example_binary();
    let nats = NatsServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = RosterProcess::start_with(dir.path(), None, &[("NATS_URL", &nats.url())]).await;
    let api = p.admin();
    let c = api
        .customer("Acme", 50, &["acme.example", "old.example"])
        .await;
    let other = api.customer("Other", 50, &["other.example"]).await;
    add(&api, &other, json!({"address": "someone@other.example"})).await;
    let user = |a: &str| format!("/v1/customers/{c}/users/{}", enc(a));
    add(&api, &c, json!({"address": "ann@acme.example", "aliases": ["ann.lee@acme.example", "a@old.example"]})).await;
    add(&api, &c, json!({"address": "bob@acme.example"})).await;
    add(
        &api,
        &c,
        json!({"address": "sales@acme.example", "kind": "distribution_list"}),
    )
    .await;
    add(&api, &c, json!({"address": "carl@old.example"})).await;
    add(
        &api,
        &c,
        json!({"address": "dora@acme.example", "aliases": ["d@acme.example"]}),
    )
    .await;

    let snap = dir.path().join("recipients.json");
    let mut sub = Command::new(&example)
        .args(["--nats-url", &nats.url(), "--customer", &c])
        .arg("--snapshot")
        .arg(&snap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the example subscriber");

    // Changes after the subscriber started: aliases replaced, a user
    // deactivated (no longer a valid recipient), one deleted and added
    // again (a return, U6), a managed domain removed (D3.n).
    let (s, v) = api
        .patch(
            &user("bob@acme.example"),
            json!({"aliases": ["robert@acme.example"]}),
        )
        .await;
    assert_eq!(s.as_u16(), 200, "{v}");
    let (s, v) = api
        .patch(&user("dora@acme.example"), json!({"status": "deactivated"}))
        .await;
    assert_eq!(s.as_u16(), 200, "{v}");
    let (s, _) = api.delete(&user("bob@acme.example")).await;
    assert_eq!(s.as_u16(), 204);
    add(
        &api,
        &c,
        json!({"address": "bob@acme.example", "aliases": ["bobby@acme.example"]}),
    )
    .await;
    let (s, v) = api
        .delete(&format!("/v1/customers/{c}/domains/old.example"))
        .await;
    assert!(s.is_success(), "{s} {v}");

    let want = recipients_from_api(&api, &c).await;
    assert_eq!(
        want,
        [
            "ann@acme.example",
            "ann.lee@acme.example",
            "bob@acme.example",
            "bobby@acme.example",
            "sales@acme.example"
        ]
        .into_iter()
        .map(String::from)
        .collect::<BTreeSet<_>>(),
        "the user list itself"
    );
    eventually(LONG, "the subscriber caught up", || async {
        snapshot(&snap) == want
    })
    .await;

    // Restarted, it resumes from its durable consumer and snapshot.
    sub.start_kill().unwrap();
    sub.wait().await.unwrap();
    add(&api, &c, json!({"address": "eve@acme.example"})).await;
    let mut sub = Command::new(&example)
        .args(["--nats-url", &nats.url(), "--customer", &c])
        .arg("--snapshot")
        .arg(&snap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let want = recipients_from_api(&api, &c).await;
    assert!(want.contains("eve@acme.example"));
    eventually(LONG, "the restarted subscriber caught up", || async {
        snapshot(&snap) == want
    })
    .await;
    assert_eq!(snapshot(&snap), want);
    sub.start_kill().unwrap();
    p.stop().await;
}

/// A `roster relay` process serving /healthz, /readyz and /metrics on `port`.
fn start_relay_listening(
    data_dir: &Path,
    database_url: &str,
    nats_url: &str,
    log: &Path,
    port: u16,
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(roster_binary())
        .args(["relay", "--listen", &format!("127.0.0.1:{port}")])
        .env("ROSTER_DATA_DIR", data_dir)
        .env("DATABASE_URL", database_url)
        .env("NATS_URL", nats_url)
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start roster relay")
}

/// The relay's /readyz: its status (`active`, `standby`, `halted`), once it answers.
async fn relay_status(port: u16) -> Option<String> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .ok()?;
    let v: Value = r.json().await.ok()?;
    v["status"].as_str().map(str::to_string)
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Issue 9: the active relay hangs (SIGSTOP): its lease expires without a
/// heartbeat and the standby publishes within 10 s; when the hung one
/// resumes it stands by. Nothing is lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e5_a_hung_relay_loses_its_lease_and_the_standby_publishes_within_10_s() {
    let nats = NatsServer::start().await.unwrap();
    let pg = PgDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = roster_store::Db::connect_postgres(pg.url(), 4)
        .await
        .unwrap();
    let store = roster_store::Store::open(db).await.unwrap();
    let customer = CustomerId::new();
    let first = append(&store, raw_events(customer, 50, 2), 50).await;
    let js = jetstream(&nats).await;
    let log = dir.path().join("relays.log");
    let (port_a, port_b) = (
        roster_tests::process::free_port(),
        roster_tests::process::free_port(),
    );
    let a = start_relay_listening(dir.path(), pg.url(), &nats.url(), &log, port_a);
    eventually(LONG, "relay A publishes the log", || async {
        stream_messages(&js, "ROSTER_EVENTS").await >= first as u64
    })
    .await;
    assert_eq!(relay_status(port_a).await.as_deref(), Some("active"));
    let _b = start_relay_listening(dir.path(), pg.url(), &nats.url(), &log, port_b);
    eventually(LONG, "relay B stands by", || async {
        relay_status(port_b).await.as_deref() == Some("standby")
    })
    .await;

    signal(&a, "-STOP");
    let second = append(&store, raw_events(customer, 20, 1), 20).await;
    eventually(
        Duration::from_secs(10),
        "the standby publishes within 10 s",
        || async { stream_messages(&js, "ROSTER_EVENTS").await >= second as u64 },
    )
    .await;
    assert_eq!(relay_status(port_b).await.as_deref(), Some("active"));

    signal(&a, "-CONT");
    let last = append(&store, raw_events(customer, 20, 1), 20).await;
    eventually(LONG, "relay A stands by after resuming", || async {
        relay_status(port_a).await.as_deref() == Some("standby")
    })
    .await;
    let got = consume(
        &js,
        "ROSTER_EVENTS",
        "roster.events.>",
        last as usize,
        GRACE,
        LONG,
    )
    .await;
    assert_once_in_order(&got, 1..=last);
    assert_eq!(stream_messages(&js, "ROSTER_EVENTS").await, last as u64);
    let metrics = reqwest::get(format!("http://127.0.0.1:{port_b}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("roster_relay_published_total"),
        "{metrics}"
    );
    let healthz = reqwest::get(format!("http://127.0.0.1:{port_a}/healthz"))
        .await
        .unwrap();
    assert_eq!(healthz.status().as_u16(), 200);
}
