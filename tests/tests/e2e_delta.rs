//! B1 end to end: the sync service reads an OpenLDAP directory with delta
//! reads (content synchronisation) and its runs give the same events as
//! runs that read everything (`full_sync_hours: 0`), after renames, a move
//! between OUs, a deletion, a disabled and re-enabled account, and group
//! membership changes.

use reqwest::StatusCode;
use roster_testkit::{DirectoryData, LdapAdmin, Slapd, SlapdConfig, Style};
use roster_tests::e2e::{ldap_settings, with, Db, RosterEnv};
use serde_json::{json, Value};

const BASE: &str = "dc=example,dc=com";
const MOVED: &str = "ou=Moved,dc=example,dc=com";

fn data(domain: &str) -> DirectoryData {
    DirectoryData::new(Style::InetOrgPerson, BASE, domain)
        .users(40)
        .groups(6, 6)
        .comma_every(9)
}

async fn server(domain: &str) -> Slapd {
    Slapd::start(
        SlapdConfig::inet_org_person()
            .ppolicy(true)
            .syncprov(None)
            .ldif(format!(
                "dn: {MOVED}\nobjectClass: organizationalUnit\nou: Moved\n"
            ))
            .data(data(domain)),
    )
    .await
    .unwrap()
}

/// Sync Now and wait: the completed run's counts and its changes.
async fn sync(env: &RosterEnv, c: &str) -> (Value, Vec<Value>) {
    let v = env.start_sync_answer(c).await;
    let run = v["run_id"].as_str().unwrap().to_string();
    let d = env.run_detail(c, &run).await;
    assert_eq!(d["run"]["status"], "completed", "{}", d["run"]);
    let changes = d["changes"].as_array().cloned().unwrap_or_default();
    (d["run"]["counts"].clone(), changes)
}

/// A value without what differs between the two customers and servers:
/// the mail domain, ids (entryUUID, customer, run), times, sequences.
fn neutral(v: &Value, domain: &str) -> Value {
    match v {
        Value::String(s) => {
            let s = s.replace(domain, "DOMAIN");
            if uuid::Uuid::parse_str(&s).is_ok() || s.starts_with("sync:") {
                json!("ID")
            } else {
                json!(s)
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| neutral(x, domain)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| {
                    !k.ends_with("_at") && !["position", "time", "sequence"].contains(&k.as_str())
                })
                .map(|(k, x)| (k.clone(), neutral(x, domain)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A run's changes, neutral and sorted: what happened to whom.
fn events(changes: &[Value], domain: &str) -> Vec<String> {
    let mut out: Vec<String> = changes
        .iter()
        .map(|c| neutral(c, domain).to_string())
        .collect();
    out.sort();
    out
}

fn users(list: &[Value], domain: &str) -> Vec<String> {
    let mut out: Vec<String> = list
        .iter()
        .map(|u| {
            format!(
                "{} {}",
                u["address"].as_str().unwrap().replace(domain, "DOMAIN"),
                u["status"]
            )
        })
        .collect();
    out.sort();
    out
}

async fn first_changes(admin: &LdapAdmin, d: &DirectoryData) -> String {
    let dn = |i: usize| d.user(i).dn;
    admin.rename(&dn(1), "cn=Renamed One", None).await.unwrap();
    let moved = admin.move_to(&dn(2), MOVED).await.unwrap();
    admin.delete(&dn(3)).await.unwrap();
    admin
        .add_values(&dn(4), "pwdAccountLockedTime", &["000001010000Z"])
        .await
        .unwrap();
    admin.add_member(&d.group(0).dn, &dn(30)).await.unwrap();
    admin
        .remove_member(&d.group(1).dn, &d.group(1).members[0])
        .await
        .unwrap();
    admin
        .add(&d.user(50).entry(Style::InetOrgPerson))
        .await
        .unwrap();
    moved
}

async fn second_changes(admin: &LdapAdmin, d: &DirectoryData, moved: &str) {
    admin
        .delete_values(&d.user(4).dn, "pwdAccountLockedTime", &[] as &[&str])
        .await
        .unwrap();
    admin.move_to(moved, &d.people_dn()).await.unwrap();
    admin
        .replace(&d.user(6).dn, "displayName", &["Six"])
        .await
        .unwrap();
    admin.delete(&d.group(0).dn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_delta_runs_give_the_events_of_full_runs() {
    let env = RosterEnv::launch(Db::Sqlite, None, &[]).await;
    let (da, db) = ("delta.example.org", "full.example.org");
    let (sa, sb) = (server(da).await, server(db).await);
    let (ca, cb) = (
        env.customer("Delta", &[da]).await,
        env.customer("Full", &[db]).await,
    );
    let guard = json!({"max_flags": 100000, "max_percent": 100, "min_flags_for_percent": 100000});
    env.put_directory(&ca, with(ldap_settings(&sa, BASE), json!({"guard": guard})))
        .await;
    env.put_directory(
        &cb,
        with(
            ldap_settings(&sb, BASE),
            json!({"guard": guard, "full_sync_hours": 0}),
        ),
    )
    .await;
    let (_, view) = env.api.get(&format!("/v1/customers/{cb}/directory")).await;
    assert_eq!(view["ldap"]["full_sync_hours"], 0, "{view}");
    let (s, v) = env
        .put_directory_raw(
            &ca,
            with(ldap_settings(&sa, BASE), json!({"full_sync_hours": 721})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    let compare = |what: &'static str| {
        let env = &env;
        let (ca, cb) = (ca.clone(), cb.clone());
        async move {
            let (a, ea) = sync(env, &ca).await;
            let (b, eb) = sync(env, &cb).await;
            assert_eq!(a, b, "{what}: the same counts");
            assert_eq!(events(&ea, da), events(&eb, db), "{what}: the same events");
            assert_eq!(
                users(&env.users(&ca, "").await, da),
                users(&env.users(&cb, "").await, db),
                "{what}: the same users"
            );
            a
        }
    };
    let counts = compare("first runs").await;
    assert!(counts["added"].as_u64().unwrap() > 0, "{counts}");
    compare("nothing changed").await;

    let (aa, ab) = (sa.admin().await.unwrap(), sb.admin().await.unwrap());
    let (moved_a, moved_b) = (
        first_changes(&aa, &data(da)).await,
        first_changes(&ab, &data(db)).await,
    );
    let counts = compare("first changes").await;
    assert!(counts["flagged"].as_u64().unwrap() > 0, "{counts}");
    second_changes(&aa, &data(da), &moved_a).await;
    second_changes(&ab, &data(db), &moved_b).await;
    compare("second changes").await;

    // The delta customer's reads after the first were delta reads; the
    // other's all full.
    let log = env.p.log_text();
    let reads: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("directory read complete"))
        .collect();
    let delta = reads
        .iter()
        .filter(|l| l.contains(r#""mode":"delta""#) || l.contains(r#"mode="delta""#))
        .count();
    assert_eq!(delta, 3, "three delta reads:\n{}", reads.join("\n"));
}
